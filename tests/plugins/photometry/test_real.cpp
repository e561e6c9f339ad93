// io.read_map, and the real-data check of issue #4: the HST WFPC2 F606W image of the HDF-S,
// resampled and PSF-matched onto the MUSE white-light image of the same field, must
// cross-correlate with it at the offset between the two files' WCSs to better than 0.5 MUSE
// pixel (the files' WCSs themselves differ by 0.6 spaxel in Dec: shown below).
#include <fitsio.h>
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <utility>
#include <vector>

#include "cubeflow/fits/image_io.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "cubeflow/sim/galaxy.hpp"
#include "hst_match.hpp"
#include "io_nodes.hpp"
#include "phot_test_util.hpp"
#include "test_data.hpp"

namespace {

using namespace cubeflow;
using namespace cubeflow::photometry;
using cubeflow::testing::FakeContext;
using phottest::TempDir;

std::string HstPath() { return phottest::DataDir() + "/hst/mpdaf_HST-HDFS_WFPC2_F606W.fits"; }
std::string WhitePath() { return phottest::DataDir() + "/muse/mpdaf_IMAGE-HDFS-1.34_whitelight.fits"; }

// ---------------------------------------------------------------------------------------------
// io.read_map

struct SmallMock {
  TempDir dir;
  std::shared_ptr<Binning> grid;
  SmallMock() {
    sim::GalaxyConfig g;
    g.nx = 16;
    g.ny = 12;
    g.nwave = 800;
    g.noise = false;
    auto m = sim::MockGalaxy::Build(g);
    EXPECT_TRUE(m.ok());
    EXPECT_TRUE((*m)->Write(dir.path(), 1).ok());
    grid = std::make_shared<Binning>();
    grid->nx = 16;
    grid->ny = 12;
    auto v = fits::ReadMap(dir.File("kinematics.fits"), "V_STARS");
    grid->wcs = (*v)->wcs;
  }
};

TEST(ReadMap, ReadsKinematicsWithWcsAndChecksTheGrid) {
  SmallMock m;
  ASSERT_EQ(io::ReadMapNode::Spec().name(), "io.read_map");
  auto node = cubeflow::testing::MakeNode<io::ReadMapNode>(
      {{"path", m.dir.File("kinematics.fits")}, {"extension", std::string("V_STARS")}});
  FakeContext ctx;
  ctx.SetInput("grid", m.grid);
  node->Process(ctx);
  auto map = ctx.Output<Map>("map");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->name, "V_STARS");
  EXPECT_EQ(map->bunit, "km/s");
  ASSERT_EQ(map->nx, 16);
  ASSERT_EQ(map->ny, 12);
  auto truth = fits::ReadMap(m.dir.File("truth.fits"), "V_TRUE");
  ASSERT_TRUE(truth.ok());
  int finite = 0;
  for (size_t i = 0; i < map->data.size(); ++i) {
    if (std::isnan((*truth)->data[i])) {
      EXPECT_TRUE(std::isnan(map->data[i]));
      continue;
    }
    EXPECT_DOUBLE_EQ(map->data[i], (*truth)->data[i]);
    ++finite;
  }
  EXPECT_GT(finite, 50);
  auto w = fits::Wcs::FromCards(map->wcs);
  ASSERT_TRUE(w.ok()) << w.status().message();
  double ra, dec;
  w->PixelToSky(7.5, 5.5, ra, dec);  // the mock's reference point is the field centre
  EXPECT_NEAR(ra, 170.062611, 1e-9);
  EXPECT_NEAR(dec, 12.991528, 1e-9);
  // A grid of another size, or shifted on the sky: the node stops and says why.
  auto other = std::make_shared<Binning>(*m.grid);
  other->nx = 20;
  FakeContext c2;
  c2.SetInput("grid", other);
  try {
    node->Process(c2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16x12"), std::string::npos) << e.what();
  }
  auto shifted = std::make_shared<Binning>(*m.grid);
  shifted->wcs = phottest::MakeWcs(16, 12, phottest::WcsSpec{170.062611, 12.991528, 9.0, 6.5, 0.2, 0});
  FakeContext c3;
  c3.SetInput("grid", shifted);
  try {
    node->Process(c3);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not on the cube's spatial grid"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("kinematics.fits"), std::string::npos) << e.what();
  }
}

TEST(ReadMap, ClearErrors) {
  SmallMock m;
  auto r = fits::ReadMap(m.dir.File("kinematics.fits"), "V_GAS");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("V_GAS"), std::string::npos);
  EXPECT_NE(r.status().message().find("SIGMA_STARS"), std::string::npos) << r.status().message();  // HDUs listed
  r = fits::ReadMap(m.dir.File("truth.fits"), "SFH");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("3-D"), std::string::npos) << r.status().message();
  r = fits::ReadMap(m.dir.File("missing.fits"), "auto");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(m.dir.File("missing.fits")), std::string::npos);
  r = fits::ReadMap(m.dir.File("kinematics.fits"), "7");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no HDU number 7"), std::string::npos) << r.status().message();
  r = fits::ReadMap(m.dir.File("kinematics.fits"), "0");  // the primary holds no image
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected a 2-D image"), std::string::npos) << r.status().message();
  // auto picks the first 2-D image; a number selects by position.
  r = fits::ReadMap(m.dir.File("kinematics.fits"), "2");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->name, "SIGMA_STARS");
  r = fits::ReadMap(m.dir.File("kinematics.fits"), "auto", "m/s", "VEL");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->name, "VEL");
  EXPECT_EQ((*r)->bunit, "m/s");
}

TEST(ReadMap, RealMuseImageWcsAgreesBetweenCdAndPcConventions) {
  if (!std::filesystem::exists(WhitePath())) CUBEFLOW_SKIP_WITHOUT_DATA() << "real data not found: " << WhitePath();
  // DATA uses CD_ij, STAT uses PC_ij + CDELT: both must describe the same WCS.
  auto data = fits::ReadMap(WhitePath(), "DATA", "1e-20 erg/s/cm2/A");
  auto stat = fits::ReadMap(WhitePath(), "STAT");
  ASSERT_TRUE(data.ok() && stat.ok()) << data.status().message();
  EXPECT_EQ((*data)->nx, 326);
  EXPECT_EQ((*data)->ny, 331);
  EXPECT_EQ((*data)->bunit, "1e-20 erg/s/cm2/A");
  auto wd = fits::Wcs::FromCards((*data)->wcs), ws = fits::Wcs::FromCards((*stat)->wcs);
  ASSERT_TRUE(wd.ok() && ws.ok());
  EXPECT_NEAR(wd->PixelScaleArcsec(), 0.2, 1e-6);
  for (double x : {0.0, 100.5, 325.0}) {
    double r1, d1, r2, d2;
    wd->PixelToSky(x, 0.7 * x, r1, d1);
    ws->PixelToSky(x, 0.7 * x, r2, d2);
    EXPECT_NEAR(r1, r2, 1e-9);
    EXPECT_NEAR(d1, d2, 1e-9);
  }
  double ra, dec;
  wd->PixelToSky(167.401033093 - 1, 163.017401336 - 1, ra, dec);
  EXPECT_NEAR(ra, 338.23092027, 1e-9);
  EXPECT_NEAR(dec, -60.56375796, 1e-9);
}

// ---------------------------------------------------------------------------------------------
// HST onto MUSE: registration

/// Copies `src` to `dst` changing CRPIX1 / CRPIX2 of the DATA extension by `dx` / `dy` pixels.
bool CopyWithShift(const std::string& src, const std::string& dst, double dx, double dy = 0.0) {
  fitsfile *in = nullptr, *out = nullptr;
  int st = 0;
  fits_open_diskfile(&in, src.c_str(), READONLY, &st);
  fits_create_file(&out, ("!" + dst).c_str(), &st);
  fits_copy_file(in, out, 1, 1, 1, &st);
  fits_movnam_hdu(out, IMAGE_HDU, const_cast<char*>("DATA"), 0, &st);
  for (const auto& [key, d] : {std::pair{"CRPIX1", dx}, std::pair{"CRPIX2", dy}}) {
    double crpix = 0;
    fits_read_key(out, TDOUBLE, key, &crpix, nullptr, &st);
    crpix += d;
    fits_update_key(out, TDOUBLE, key, &crpix, nullptr, &st);
  }
  fits_close_file(out, &st);
  int s2 = 0;
  fits_close_file(in, &s2);
  return st == 0;
}

/// Where the content of the HST image moves on the MUSE grid (MUSE pixels) when its WCS is
/// replaced by `shifted`: the MUSE position of the image centre through each WCS. The
/// cross-correlation offset (MUSE minus HST) then changes by minus this.
std::pair<double, double> ContentShift(const std::string& hst, const std::string& shifted, const CelestialWcs& muse) {
  auto a = fits::ReadMap(hst, "DATA"), b = fits::ReadMap(shifted, "DATA");
  EXPECT_TRUE(a.ok() && b.ok());
  auto wa = fits::Wcs::FromCards((*a)->wcs), wb = fits::Wcs::FromCards((*b)->wcs), wm = fits::Wcs::FromCards(muse);
  EXPECT_TRUE(wa.ok() && wb.ok() && wm.ok());
  const double cx = 0.5 * ((*a)->nx - 1), cy = 0.5 * ((*a)->ny - 1);
  double ra, dec, xa, ya, xb, yb;
  wa->PixelToSky(cx, cy, ra, dec);
  wm->SkyToPixel(ra, dec, xa, ya);
  wb->PixelToSky(cx, cy, ra, dec);
  wm->SkyToPixel(ra, dec, xb, yb);
  return {xb - xa, yb - ya};
}

struct Offset {
  double dx = 0, dy = 0, peak = 0;
  int region = 0;
};

/// Normalised cross-correlation of the resampled HST image H with the MUSE image M over the
/// spaxels fully covered by HST (shrunk by the search radius), for integer shifts s:
/// C(s) = corr(H_j, M_{j+s}); the peak is refined by a least-squares quadratic on its 3 x 3.
Offset CrossCorrelate(const BandImage& h, const Map& m, int rad,
                      const std::function<bool(int64_t, int64_t)>& keep = [](int64_t, int64_t) { return true; }) {
  const int64_t nx = m.nx, ny = m.ny;
  std::vector<char> full(nx * ny, 0), reg(nx * ny, 0);
  for (int64_t i = 0; i < nx * ny; ++i)
    full[i] = h.area[i] > 0.999 && std::isfinite(h.flux[i]) && std::isfinite(m.data[i]);
  Offset o;
  for (int64_t y = rad; y < ny - rad; ++y)
    for (int64_t x = rad; x < nx - rad; ++x) {
      bool ok = true;
      for (int dy = -rad; dy <= rad && ok; ++dy)
        for (int dx = -rad; dx <= rad && ok; ++dx) ok = full[(y + dy) * nx + x + dx];
      ok = ok && keep(x, y);
      reg[y * nx + x] = ok;
      o.region += ok;
    }
  double hm = 0;
  for (int64_t i = 0; i < nx * ny; ++i)
    if (reg[i]) hm += h.flux[i];
  hm /= o.region;
  const int w = 2 * rad + 1;
  std::vector<double> c(w * w);
  for (int sy = -rad; sy <= rad; ++sy)
    for (int sx = -rad; sx <= rad; ++sx) {
      double mm = 0;
      for (int64_t y = 0; y < ny; ++y)
        for (int64_t x = 0; x < nx; ++x)
          if (reg[y * nx + x]) mm += m.data[(y + sy) * nx + x + sx];
      mm /= o.region;
      double hh = 0, mmm = 0, hmc = 0;
      for (int64_t y = 0; y < ny; ++y)
        for (int64_t x = 0; x < nx; ++x) {
          if (!reg[y * nx + x]) continue;
          const double a = h.flux[y * nx + x] - hm, b = m.data[(y + sy) * nx + x + sx] - mm;
          hh += a * a;
          mmm += b * b;
          hmc += a * b;
        }
      c[(sy + rad) * w + sx + rad] = hmc / std::sqrt(hh * mmm);
    }
  int bx = 0, by = 0;
  for (int sy = -rad; sy <= rad; ++sy)
    for (int sx = -rad; sx <= rad; ++sx)
      if (c[(sy + rad) * w + sx + rad] > c[(by + rad) * w + bx + rad]) {
        bx = sx;
        by = sy;
      }
  EXPECT_LT(std::abs(bx), rad) << "peak at the edge of the search";
  EXPECT_LT(std::abs(by), rad);
  // f = a + b x + c y + d x^2 + e x y + g y^2 on the 3 x 3 around the peak.
  Eigen::MatrixXd A(9, 6);
  Eigen::VectorXd f(9);
  int k = 0;
  for (int dy = -1; dy <= 1; ++dy)
    for (int dx = -1; dx <= 1; ++dx, ++k) {
      A.row(k) << 1, dx, dy, dx * dx, dx * dy, dy * dy;
      f(k) = c[(by + dy + rad) * w + bx + dx + rad];
    }
  const Eigen::VectorXd p = A.colPivHouseholderQr().solve(f);
  Eigen::Matrix2d H;
  H << 2 * p(3), p(4), p(4), 2 * p(5);
  const Eigen::Vector2d g(-p(1), -p(2));
  const Eigen::Vector2d sub = H.inverse() * g;
  o.dx = bx + sub(0);
  o.dy = by + sub(1);
  o.peak = c[(by + rad) * w + bx + rad];
  return o;
}

/// Median of the finite pixels of `m` in the ring r1 < r <= r2 around (x, y): the local sky.
double RingMedian(const Map& m, double x, double y, double r1, double r2) {
  std::vector<double> v;
  for (int64_t j = std::max<int64_t>(0, std::floor(y - r2)); j <= std::min<int64_t>(m.ny - 1, std::ceil(y + r2)); ++j)
    for (int64_t i = std::max<int64_t>(0, std::floor(x - r2)); i <= std::min<int64_t>(m.nx - 1, std::ceil(x + r2)); ++i) {
      const double r = std::hypot(i - x, j - y), d = m.data[j * m.nx + i];
      if (r > r1 && r <= r2 && std::isfinite(d)) v.push_back(d);
    }
  if (v.empty()) return NAN;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

/// Windowed centroid (SExtractor's XWIN/YWIN): iterates x += 2 sum w I (x_i - x) / sum w I with
/// a Gaussian window of `sigma` pixels, on the image minus the local sky `sky`. False if it
/// does not converge.
bool WindowedCentroid(const Map& m, double sigma, double sky, double& x, double& y) {
  for (int it = 0; it < 100; ++it) {
    double sw = 0, sx = 0, sy = 0;
    const double r = 4 * sigma;
    for (int64_t j = std::max<int64_t>(0, std::floor(y - r)); j <= std::min<int64_t>(m.ny - 1, std::ceil(y + r)); ++j)
      for (int64_t i = std::max<int64_t>(0, std::floor(x - r)); i <= std::min<int64_t>(m.nx - 1, std::ceil(x + r)); ++i) {
        const double d = m.data[j * m.nx + i];
        if (!std::isfinite(d)) continue;
        const double w = std::exp(-0.5 * ((i - x) * (i - x) + (j - y) * (j - y)) / (sigma * sigma)) * (d - sky);
        sw += w;
        sx += w * (i - x);
        sy += w * (j - y);
      }
    if (!(sw > 0)) return false;
    const double dx = 2 * sx / sw, dy = 2 * sy / sw;
    x += dx;
    y += dy;
    if (std::hypot(dx, dy) < 1e-6) return true;
  }
  return false;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// The offset (MUSE minus HST, MUSE pixels) between the two files' WCSs, measured without
/// cubeflow's resampling, PSF matching or cross-correlation: windowed centroids of the brightest
/// compact sources in the MUSE image and in the native HST image (a window of the same 0.3"
/// sigma), the HST ones taken to MUSE pixels through the two WCSs (wcslib). Sources: local
/// maxima (9 x 9) of the MUSE image > 10 robust sigma above its median, inside the HST image;
/// offsets more than 1 spaxel from the median (objects that differ between the 1998 WFPC2 and
/// 2014 MUSE images, blends) are dropped; the median of the rest, and its standard error
/// 1.2533 rms / sqrt(n) per axis.
struct WcsOffset {
  double dx = 0, dy = 0, err_x = 0, err_y = 0;
  int sources = 0, used = 0;
};
WcsOffset IndependentOffset(const Map& muse, const Map& hst) {
  auto wm = fits::Wcs::FromCards(muse.wcs), wh = fits::Wcs::FromCards(hst.wcs);
  EXPECT_TRUE(wm.ok() && wh.ok());
  const double f = 0.2 / wh->PixelScaleArcsec();  // HST pixels per MUSE pixel
  const double window = 1.5;                      // spaxels: the MUSE PSF's sigma (0.7" FWHM)
  auto to_hst = [&](double x, double y, double& hx, double& hy) {
    double ra, dec;
    wm->PixelToSky(x, y, ra, dec);
    wh->SkyToPixel(ra, dec, hx, hy);
  };
  const int64_t nx = muse.nx, ny = muse.ny;
  std::vector<char> inside(nx * ny, 0);
  std::vector<double> level;
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t x = 0; x < nx; ++x) {
      double hx, hy;
      to_hst(x, y, hx, hy);
      inside[y * nx + x] = hx > 10 && hy > 10 && hx < hst.nx - 11 && hy < hst.ny - 11 && std::isfinite(muse.data[y * nx + x]);
      if (inside[y * nx + x]) level.push_back(muse.data[y * nx + x]);
    }
  const double med = Median(level);
  for (double& v : level) v = std::abs(v - med);
  const double thresh = med + 10 * 1.4826 * Median(level);
  std::vector<std::pair<double, int64_t>> peaks;
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t x = 0; x < nx; ++x) {
      const double v = muse.data[y * nx + x];
      if (!inside[y * nx + x] || !(v > thresh)) continue;
      bool is_max = true;
      for (int64_t j = std::max<int64_t>(0, y - 4); j <= std::min(ny - 1, y + 4) && is_max; ++j)
        for (int64_t i = std::max<int64_t>(0, x - 4); i <= std::min(nx - 1, x + 4) && is_max; ++i)
          is_max = !(muse.data[j * nx + i] > v);
      if (is_max) peaks.push_back({v, y * nx + x});
    }
  std::vector<double> ox, oy;
  for (const auto& [v, idx] : peaks) {
    double mx = idx % nx, my = idx / nx;
    if (!WindowedCentroid(muse, window, RingMedian(muse, mx, my, 6, 10), mx, my)) continue;
    double hx, hy;
    to_hst(mx, my, hx, hy);
    if (!WindowedCentroid(hst, window * f, RingMedian(hst, hx, hy, 6 * f, 10 * f), hx, hy)) continue;
    double ra, dec, ex, ey;
    wh->PixelToSky(hx, hy, ra, dec);
    wm->SkyToPixel(ra, dec, ex, ey);
    ox.push_back(mx - ex);
    oy.push_back(my - ey);
  }
  WcsOffset o;
  o.sources = static_cast<int>(ox.size());
  if (ox.empty()) return o;
  const double cx = Median(ox), cy = Median(oy);
  std::vector<double> kx, ky;
  for (size_t i = 0; i < ox.size(); ++i)
    if (std::hypot(ox[i] - cx, oy[i] - cy) < 1.0) {
      kx.push_back(ox[i]);
      ky.push_back(oy[i]);
    }
  o.used = static_cast<int>(kx.size());
  if (kx.size() < 2) return o;
  o.dx = Median(kx);
  o.dy = Median(ky);
  auto rms = [](const std::vector<double>& v) {
    double m = 0, s = 0;
    for (double x : v) m += x / v.size();
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / (v.size() - 1));
  };
  o.err_x = 1.2533 * rms(kx) / std::sqrt(static_cast<double>(kx.size()));
  o.err_y = 1.2533 * rms(ky) / std::sqrt(static_cast<double>(ky.size()));
  return o;
}

TEST(PhotReal, HstF606WRegistersOnMuseWhiteLight) {
  if (!std::filesystem::exists(HstPath()) || !std::filesystem::exists(WhitePath()))
    CUBEFLOW_SKIP_WITHOUT_DATA() << "real HST/MUSE data not found under " << phottest::DataDir() << " (set CUBEFLOW_DATA_DIR)";
  auto white = fits::ReadMap(WhitePath(), "DATA");
  ASSERT_TRUE(white.ok()) << white.status().message();
  MuseGrid grid{(*white)->nx, (*white)->ny, (*white)->wcs};
  BandOptions o;
  o.band = "F606W";
  o.path = HstPath();
  o.noise = NoiseMode::kEstimate;
  // MUSE commissioning white light: ~0.7" seeing, Moffat; drizzled WFPC2 PSF ~0.12" FWHM.
  o.psf.muse_fwhm = 0.7;
  o.psf.shape = PsfShape::kMoffat;
  o.psf.beta = 2.5;
  o.psf.hst_fwhm = 0.12;
  std::vector<std::string> logs;
  const auto t0 = std::chrono::steady_clock::now();
  auto h = ProcessBand(grid, o, [&](LogLevel, const std::string& m) { logs.push_back(m); });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(h.ok()) << h.status().message();
  for (const auto& l : logs) std::printf("%s\n", l.c_str());
  EXPECT_NEAR(h->calib.factor, 1.89972e-18, 1e-23);  // PHOTFLAM (BUNIT empty: a count rate)
  EXPECT_NEAR(h->pivot, 6001.294, 1e-6);
  // The 20" x 20" HST cutout covers ~100 x 100 MUSE spaxels.
  double covered = 0;
  for (double a : h->area) covered += a;
  EXPECT_NEAR(covered, 500 * 500 * std::pow(h->hst_pix_arcsec / 0.2, 2), 1.0);
  const Offset off = CrossCorrelate(*h, **white, 6);
  std::printf("HST F606W -> MUSE white light: cross-correlation peak %.3f over %d spaxels at offset dx = %+.3f, "
              "dy = %+.3f MUSE pixels (%.2f s for the band)\n", off.peak, off.region, off.dx, off.dy, secs);
  EXPECT_GT(off.region, 3000);
  EXPECT_GT(off.peak, 0.95);  // measured 0.976
  // Issue #4 asks for registration to better than 0.5 MUSE spaxel: that is cubeflow's error
  // (resampling, PSF matching), so it is judged against the offset between the two files' WCSs
  // measured without them (windowed centroids of compact sources, IndependentOffset).
  auto hst_native = fits::ReadMap(HstPath(), "DATA");
  ASSERT_TRUE(hst_native.ok()) << hst_native.status().message();
  const WcsOffset wcs = IndependentOffset(**white, **hst_native);
  std::printf("the files' WCSs, from windowed centroids of %d of %d compact sources (MUSE minus HST): "
              "dx = %+.3f +- %.3f, dy = %+.3f +- %.3f MUSE pixels; cross-correlation minus that: %+.3f, %+.3f\n",
              wcs.used, wcs.sources, wcs.dx, wcs.err_x, wcs.dy, wcs.err_y, off.dx - wcs.dx, off.dy - wcs.dy);
  ASSERT_GE(wcs.used, 8);  // measured 9 of 10
  // The requirement: cubeflow's registration error below 0.5 spaxel.
  EXPECT_LT(std::abs(off.dx - wcs.dx), 0.5);
  EXPECT_LT(std::abs(off.dy - wcs.dy), 0.5);
  // How close they actually are: measured -0.007 / -0.051 spaxel, for standard errors of the
  // centroid median of 0.028 / 0.075; bound 3 standard errors (0.084 / 0.23).
  EXPECT_LT(std::abs(off.dx - wcs.dx), 3 * wcs.err_x);
  EXPECT_LT(std::abs(off.dy - wcs.dy), 3 * wcs.err_y);
  // The raw offset: dx = -0.16 meets 0.5 spaxel; dy = +0.59 does not, because the two files'
  // WCSs differ by ~0.12" in Dec (centroids: +0.63; an independent astropy re-implementation of
  // the resampling gives -0.18 / +0.60). Asserted, so that the reason stays visible and a
  // corrected WCS in either file is noticed (this bound then goes back to |dy| < 0.5).
  EXPECT_LT(std::abs(off.dx), 0.5);
  EXPECT_GT(off.dy, 0.5) << "the HST/MUSE WCS offset in Dec is gone: assert |dy| < 0.5 again";
  EXPECT_GT(wcs.dy, 0.5) << "the HST/MUSE WCS offset in Dec is gone: assert |dy| < 0.5 again";
  // The offset is the same in the quadrants where the images correlate well (>= 0.95): a rigid
  // WCS offset, not noise. (Measured: quadrants 0 and 3 correlate at 0.99/0.98 and differ from
  // the whole field by -0.03/+0.02 in x and -0.06/+0.08 in y (bound: 2x); quadrant 1 (0.86)
  // gives dy +0.73; quadrant 2 (0.94) gives -0.49/-0.76, dominated by a few objects that differ
  // between the 1998 WFPC2 and 2014 MUSE images or by the image edge.)
  int64_t cx = 0, cy = 0, nreg = 0;
  for (int64_t y = 0; y < grid.ny; ++y)
    for (int64_t x = 0; x < grid.nx; ++x)
      if (h->area[y * grid.nx + x] > 0.999) { cx += x; cy += y; ++nreg; }
  cx /= nreg;
  cy /= nreg;
  int used = 0;
  for (int q = 0; q < 4; ++q) {
    const Offset oq = CrossCorrelate(*h, **white, 6, [&](int64_t x, int64_t y) {
      return ((x < cx) == (q % 2 == 0)) && ((y < cy) == (q / 2 == 0));
    });
    std::printf("  quadrant %d: correlation %.3f over %d spaxels, dx = %+.3f, dy = %+.3f\n", q, oq.peak, oq.region,
                oq.dx, oq.dy);
    if (oq.peak < 0.95) continue;
    ++used;
    EXPECT_NEAR(oq.dx, off.dx, 0.15) << "quadrant " << q;
    EXPECT_NEAR(oq.dy, off.dy, 0.15) << "quadrant " << q;
  }
  EXPECT_GE(used, 2);
  // Controls where the truth is known exactly: the same HST image with its WCS shifted, by 10
  // HST pixels (0.4") along x, and by a sub-spaxel amount in both axes. The cross-correlation
  // offset must change by minus the shift of the image content on the MUSE grid (ContentShift:
  // through the two WCSs; the HST image is rotated by 0.5 deg, so a shift along x moves it by
  // 0.017 spaxel in y too).
  TempDir d;
  struct Shift { double crpix1, crpix2, tol; };
  // Measured errors: -0.0004 / -0.0045 spaxel for 10 pixels (~2 spaxels, so the bias of the
  // quadratic peak interpolation nearly cancels) and +0.018 / -0.010 for the sub-spaxel shift
  // (that bias; up to 0.051 for other sub-spaxel shifts tried); bounds ~2x: 0.01 and 0.04.
  for (const Shift& sh : {Shift{10.0, 0.0, 0.01}, Shift{2.3, -3.6, 0.04}}) {
    ASSERT_TRUE(CopyWithShift(HstPath(), d.File("shifted.fits"), sh.crpix1, sh.crpix2));
    o.path = d.File("shifted.fits");
    auto hs = ProcessBand(grid, o);
    ASSERT_TRUE(hs.ok()) << hs.status().message();
    const Offset os = CrossCorrelate(*hs, **white, 6);
    const auto [mx, my] = ContentShift(HstPath(), d.File("shifted.fits"), (*white)->wcs);
    std::printf("control, HST CRPIX + (%.1f, %.1f): content moves (%+.3f, %+.3f) spaxels; offset changes by "
                "(%+.4f, %+.4f): error (%+.4f, %+.4f)\n", sh.crpix1, sh.crpix2, mx, my, os.dx - off.dx, os.dy - off.dy,
                os.dx - off.dx + mx, os.dy - off.dy + my);
    EXPECT_NEAR(os.dx - off.dx, -mx, sh.tol);
    EXPECT_NEAR(os.dy - off.dy, -my, sh.tol);
  }
}

}  // namespace
