// libFuzzer target: model metadata files (`<model>.pt.yaml`): cnn::ReadMetadata,
// sbi::ReadMetadata and sbi::IsSbiMetadata on the input as a file in a private directory. The
// readers are libs/nn/src/model_metadata.cpp, which does not need libtorch; this target compiles
// it (tests/fuzz/CMakeLists.txt), so that the sanitizer build without libtorch fuzzes it too.
// Properties: an error names the file; metadata that was read is written back and read again.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/sbi.hpp"
#include "fuzz_support.hpp"

namespace {

std::string g_dir;

void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_model_metadata: %s\n", what.c_str());
  std::abort();
}

template <typename Metadata, typename Read, typename Write>
void RoundTrip(const std::string& path, Read read, Write write) {
  auto md = read(path);
  if (!md.ok()) {
    if (md.status().message().find(path) == std::string::npos)
      Fail("an error that does not name the file: " + md.status().message());
    return;
  }
  const std::string again = g_dir + "/again.pt.yaml";
  const cubeflow::Status st = write(again, *md);
  if (!st.ok()) return;  // e.g. a value the emitter cannot format: reported, not written
  auto md2 = read(again);
  if (!md2.ok()) Fail("metadata that was read could not be read back after writing it: " + md2.status().message());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_dir = cubeflow::fuzz::MakeTempDir();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = g_dir + "/model.pt.yaml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  (void)cubeflow::sbi::IsSbiMetadata(path);
  RoundTrip<cubeflow::cnn::CnnMetadata>(
      path, [](const std::string& p) { return cubeflow::cnn::ReadMetadata(p); },
      [](const std::string& p, const cubeflow::cnn::CnnMetadata& m) { return cubeflow::cnn::WriteMetadata(p, m); });
  RoundTrip<cubeflow::sbi::SbiMetadata>(
      path, [](const std::string& p) { return cubeflow::sbi::ReadMetadata(p); },
      [](const std::string& p, const cubeflow::sbi::SbiMetadata& m) { return cubeflow::sbi::WriteMetadata(p, m); });
  return 0;
}
