// libFuzzer target: the MAPS product reader (cubeflow::fits::MapsFile) on the input as a file:
// every HDU header, the BINS table, and every image extension loaded with its pixels.
// Properties: an error names the file; loaded pixels and table columns have the sizes the
// headers say.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cubeflow/fits/maps_reader.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "fuzz_support.hpp"

namespace fits = cubeflow::fits;

namespace {

void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_fits_maps: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cubeflow::fuzz::AsFile(data, size);
  auto r = fits::MapsFile::Open(path);
  if (!r.ok()) {
    if (r.status().message().find(path) == std::string::npos)
      Fail("an error that does not name the file: " + r.status().message());
    return 0;
  }
  const fits::MapsFile& m = *r;
  if (const fits::MapsTable* t = m.bins()) {
    for (const auto& c : t->columns)
      if (c.values.size() != static_cast<size_t>(t->nrows * c.width)) Fail("a column of the wrong size");
    (void)t->Find("BINID");
    (void)t->RowOf(0);
  }
  for (const auto& hdr : m.images()) {
    if (m.Find(hdr.name) == nullptr) Fail("an image that Find does not find: " + hdr.name);
    auto im = m.Load(hdr.name);
    if (!im.ok()) {
      if (im.status().message().find(path) == std::string::npos)
        Fail("an error that does not name the file: " + im.status().message());
      continue;
    }
    if (im->values.size() != static_cast<size_t>(im->nx * im->ny * im->nplanes)) Fail("pixels of the wrong size");
    if (!im->values.empty()) (void)im->At(im->nx - 1, im->ny - 1, im->nplanes - 1);
    if (im->wcs.empty()) continue;
    auto w = fits::Wcs::FromCards(im->wcs);
    if (w.ok()) (void)w->PixelScaleArcsec();
  }
  return 0;
}
