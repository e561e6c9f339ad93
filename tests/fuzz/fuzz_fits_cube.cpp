// libFuzzer target: the FITS cube reader (cubeflow::fits::ReadCube) on the input as a file, then
// what io.read_cube's consumers do with a cube: its celestial WCS through wcslib and its BUNIT.
// Properties: an error names the file; a cube's arrays have the sizes its axes say.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/fits/units.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "fuzz_support.hpp"

namespace fits = cubeflow::fits;

namespace {

void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_fits_cube: %s\n", what.c_str());
  std::abort();
}

void Read(const std::string& path, const fits::ReadCubeOptions& opt) {
  auto r = fits::ReadCube(path, opt);
  if (!r.ok()) {
    if (r.status().message().find(path) == std::string::npos)
      Fail("an error that does not name the file: " + r.status().message());
    return;
  }
  const cubeflow::Cube& c = **r;
  const size_t n = static_cast<size_t>(c.nx * c.ny * c.nwave);
  if (c.nx <= 0 || c.ny <= 0 || c.nwave <= 0 || c.flux.size() != n || c.wave.n != c.nwave)
    Fail("a cube whose arrays do not match its axes");
  if ((!c.variance.empty() && c.variance.size() != n) || (!c.mask.empty() && c.mask.size() != n))
    Fail("a variance or mask that does not match the flux");
  (void)c.wave.At(0);
  (void)c.wave.At(c.nwave - 1);
  (void)fits::FluxDensityScale(c.bunit);
  if (c.wcs.empty()) return;
  auto w = fits::Wcs::FromCards(c.wcs);
  if (!w.ok()) return;
  if (auto sky = w->ToSky(0.5 * static_cast<double>(c.nx - 1), 0.5 * static_cast<double>(c.ny - 1)); sky.ok())
    (void)w->ToPixel(sky->ra, sky->dec);
  (void)w->PixelScaleArcsec();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cubeflow::fuzz::AsFile(data, size);
  Read(path, fits::ReadCubeOptions{});  // what io.read_cube does by default
  fits::ReadCubeOptions o;              // a window, the primary HDU, a required variance
  o.wave_min = 4800;
  o.wave_max = 9000;
  o.data_hdu = "";
  o.require_stat = true;
  Read(path, o);
  return 0;
}
