// libFuzzer target: the celestial WCS parser (cubeflow::fits::Wcs::FromCards, wcslib's wcspih +
// wcsfix + wcsset) on header cards (the input, split into 80-character cards as CelestialWcs
// holds them), then ToSky / ToPixel, the pixel scale and a deep copy.
#include <string>

#include "cubeflow/fits/wcs.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cubeflow::CelestialWcs cards{cubeflow::fuzz::AsText(data, size)};
  auto w = cubeflow::fits::Wcs::FromCards(cards);
  if (!w.ok()) return 0;
  if (auto sky = w->ToSky(0, 0); sky.ok()) (void)w->ToPixel(sky->ra, sky->dec);
  (void)w->ToPixel(0, 0);
  (void)w->PixelScaleArcsec();
  cubeflow::fits::Wcs copy(*w);  // throws only if wcslib cannot copy what it accepted
  (void)copy.ToSky(1, 1);
  return 0;
}
