// libFuzzer target: the 2-D image reader (cubeflow::fits::ImageReader, ReadMap) on the input as a
// file: HDU selection by auto / number / EXTNAME, header look-ups, block reads and the celestial
// WCS it assembles. Properties: an error names the file; sizes agree with the axes.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cubeflow/fits/image_io.hpp"
#include "cubeflow/fits/units.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "fuzz_support.hpp"

namespace fits = cubeflow::fits;

namespace {

void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_fits_image: %s\n", what.c_str());
  std::abort();
}

void CheckError(const cubeflow::Status& st, const std::string& path) {
  if (st.message().find(path) == std::string::npos) Fail("an error that does not name the file: " + st.message());
}

void UseWcs(const cubeflow::CelestialWcs& cards) {
  if (cards.empty()) return;
  auto w = fits::Wcs::FromCards(cards);
  if (!w.ok()) return;
  if (auto sky = w->ToSky(0, 0); sky.ok()) (void)w->ToPixel(sky->ra, sky->dec);
  (void)w->PixelScaleArcsec();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cubeflow::fuzz::AsFile(data, size);
  for (const char* ext : {"auto", "1", "SCI"}) {
    auto r = fits::ImageReader::Open(path, ext, {"SCI"});
    if (!r.ok()) {
      CheckError(r.status(), path);
      continue;
    }
    fits::ImageReader& im = **r;
    if (im.nx() <= 0 || im.ny() <= 0) Fail("an image with an empty axis was opened");
    (void)im.Where();
    (void)im.Key("BUNIT");
    (void)im.KeyDouble("EXPTIME");
    (void)im.HasExtension("ERR");
    std::vector<double> rows;
    const int64_t n = std::min<int64_t>(im.ny(), 2);
    auto st = im.ReadBlock(0, n, rows);
    if (st.ok() && rows.size() != static_cast<size_t>(n * im.nx())) Fail("ReadBlock returned the wrong size");
    if (!st.ok()) CheckError(st, path);
    st = im.ReadBlock(im.ny() - 1, 1, rows, im.nx() - 1, 1);
    if (!st.ok()) CheckError(st, path);
    if (im.ReadBlock(im.ny(), 1, rows).ok()) Fail("ReadBlock outside the image succeeded");
    UseWcs(im.wcs());
  }
  auto m = fits::ReadMap(path, "");
  if (!m.ok()) {
    CheckError(m.status(), path);
    return 0;
  }
  if ((*m)->data.size() != static_cast<size_t>((*m)->nx * (*m)->ny)) Fail("a map whose data do not match its axes");
  (void)fits::FluxDensityScale((*m)->bunit);
  UseWcs((*m)->wcs);
  return 0;
}
