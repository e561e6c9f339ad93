// libFuzzer target: forward-model configurations (cubeflow::sim::LoadSimConfig) on the input as
// a YAML file in an otherwise empty private directory (relative paths in it resolve there).
// Property: an error names the configuration file.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cubeflow/sim/observables.hpp"
#include "fuzz_support.hpp"

namespace {
std::string g_dir;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_dir = cubeflow::fuzz::MakeTempDir();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = g_dir + "/sim.yaml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto r = cubeflow::sim::LoadSimConfig(path);
  if (!r.ok() && r.status().message().find(path) == std::string::npos) {
    std::fprintf(stderr, "fuzz_sim_config: an error that does not name the file: %s\n", r.status().message().c_str());
    std::abort();
  }
  return 0;
}
