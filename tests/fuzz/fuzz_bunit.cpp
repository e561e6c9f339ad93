// libFuzzer target: the BUNIT parser (cubeflow::fits::FluxDensityScale). Properties: the result
// is a finite positive factor, or an error that quotes the unit.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cubeflow/fits/units.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bunit = cubeflow::fuzz::AsText(data, size);
  auto f = cubeflow::fits::FluxDensityScale(bunit);
  if (!f.ok()) {
    if (f.status().message().find("unit '" + bunit + "'") != 0) {
      std::fprintf(stderr, "fuzz_bunit: an error that does not quote the unit: '%s'\n", f.status().message().c_str());
      std::abort();
    }
  } else if (!(*f > 0) || !std::isfinite(*f)) {
    std::fprintf(stderr, "fuzz_bunit: factor %g for '%s'\n", *f, bunit.c_str());
    std::abort();
  }
  return 0;
}
