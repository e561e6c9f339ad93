#pragma once
// Helpers for tests/plugins/photometry: temp dirs, synthetic FITS images with WCS, draining streams.
#include <fitsio.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/testing/fake_context.hpp"

namespace phottest {

using namespace cubeflow;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cubeflow-phot-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string DataDir() {
  if (const char* e = std::getenv("CUBEFLOW_DATA_DIR"); e && *e) return e;
  return CUBEFLOW_TEST_DATA_DIR;
}

/// TAN WCS: pixel scale `scale` arcsec, rotated by `rot_deg` (counter-clockwise from north),
/// reference pixel (crpix1, crpix2) (FITS 1-based) at (ra, dec).
struct WcsSpec {
  double ra = 150.0, dec = 2.0, crpix1 = 1, crpix2 = 1, scale = 0.2, rot_deg = 0;
};

inline CelestialWcs MakeWcs(int64_t nx, int64_t ny, const WcsSpec& w) {
  using fits::FitsReal;
  using fits::FitsString;
  using fits::MakeCard;
  const double s = w.scale / 3600.0, r = w.rot_deg * M_PI / 180.0;
  std::string c;
  c += MakeCard("NAXIS", "2") + MakeCard("NAXIS1", std::to_string(nx)) + MakeCard("NAXIS2", std::to_string(ny));
  c += MakeCard("CTYPE1", FitsString("RA---TAN")) + MakeCard("CTYPE2", FitsString("DEC--TAN"));
  c += MakeCard("CUNIT1", FitsString("deg")) + MakeCard("CUNIT2", FitsString("deg"));
  c += MakeCard("CRVAL1", FitsReal(w.ra)) + MakeCard("CRVAL2", FitsReal(w.dec));
  c += MakeCard("CRPIX1", FitsReal(w.crpix1)) + MakeCard("CRPIX2", FitsReal(w.crpix2));
  c += MakeCard("CD1_1", FitsReal(-s * std::cos(r))) + MakeCard("CD1_2", FitsReal(s * std::sin(r)));
  c += MakeCard("CD2_1", FitsReal(s * std::sin(r))) + MakeCard("CD2_2", FitsReal(s * std::cos(r)));
  c += MakeCard("RADESYS", FitsString("ICRS"));
  return CelestialWcs{c};
}

/// One image HDU to write.
struct Hdu {
  std::string extname;  ///< "" for the primary
  int64_t nx = 0, ny = 0;
  std::vector<double> data;  ///< empty: no data (NAXIS = 0)
  CelestialWcs wcs;
  std::map<std::string, double> nums;
  std::map<std::string, std::string> strs;
  std::vector<int64_t> extra_axes;  ///< e.g. {3} for a 3-D image (data must match)
};

/// Writes a FITS file; the first Hdu is the primary. Returns "" or a CFITSIO error.
inline std::string WriteFits(const std::string& path, const std::vector<Hdu>& hdus) {
  fitsfile* f = nullptr;
  int st = 0;
  fits_create_file(&f, ("!" + path).c_str(), &st);
  if (st) return "create failed";
  for (const Hdu& h : hdus) {
    std::vector<long> ax;
    if (!h.data.empty()) {
      ax = {static_cast<long>(h.nx), static_cast<long>(h.ny)};
      for (int64_t e : h.extra_axes) ax.push_back(static_cast<long>(e));
    }
    fits_create_img(f, DOUBLE_IMG, static_cast<int>(ax.size()), ax.data(), &st);
    if (!h.extname.empty()) fits_update_key_str(f, "EXTNAME", const_cast<char*>(h.extname.c_str()), nullptr, &st);
    for (const std::string& card : fits::SplitCards(h.wcs.cards)) {
      const std::string k = card.substr(0, 8);
      if (k.rfind("NAXIS", 0) == 0) continue;
      fits_write_record(f, card.c_str(), &st);
    }
    for (const auto& [k, v] : h.nums) fits_update_key_dbl(f, k.c_str(), v, -15, nullptr, &st);
    for (const auto& [k, v] : h.strs) fits_update_key_str(f, k.c_str(), const_cast<char*>(v.c_str()), nullptr, &st);
    if (!h.data.empty()) fits_write_img(f, TDOUBLE, 1, static_cast<LONGLONG>(h.data.size()), const_cast<double*>(h.data.data()), &st);
  }
  fits_close_file(f, &st);
  if (st) {
    char m[FLEN_STATUS];
    fits_get_errstatus(st, m);
    return m;
  }
  return "";
}

/// Everything a stream output of `ctx` yields, as (key, payload) in order (pulls the stream
/// the node handed to cubeflow::testing::FakeContext::EmitStream).
inline std::vector<std::pair<int64_t, std::shared_ptr<const Data>>> Drain(const cubeflow::testing::FakeContext& ctx,
                                                                            const std::string& port) {
  std::vector<std::pair<int64_t, std::shared_ptr<const Data>>> out;
  auto src = ctx.Stream(port);
  if (!src) return out;
  int64_t k;
  std::shared_ptr<const Data> d;
  while (src->Next(k, d)) out.push_back({k, d});
  return out;
}

}  // namespace phottest
