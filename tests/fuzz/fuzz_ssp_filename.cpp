// libFuzzer target: SSP file names (cubeflow::sim::ParseSspFileName, MILES and BC03 styles).
// Properties: a parsed name has a positive finite age and finite [M/H].
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cubeflow/sim/ssp.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string name = cubeflow::fuzz::AsText(data, size);
  auto r = cubeflow::sim::ParseSspFileName(name);
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();
    return 0;
  }
  if (!(r->age_gyr > 0) || !std::isfinite(r->age_gyr) || !std::isfinite(r->mh)) {
    std::fprintf(stderr, "fuzz_ssp_filename: '%s' parsed to age %g Gyr, [M/H] %g\n", name.c_str(), r->age_gyr, r->mh);
    std::abort();
  }
  return 0;
}
