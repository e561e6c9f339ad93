// ProcessBand on synthetic HST images with known WCS: flux conservation, astrometry, PSF
// matching against analytic PSFs, strip invariance, coverage, errors, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "hst_match.hpp"
#include "phot_test_util.hpp"

namespace {

using namespace cubeflow;
using namespace cubeflow::photometry;
using phottest::Hdu;
using phottest::TempDir;
using phottest::WcsSpec;

constexpr double kPhotflam = 2e-19;
constexpr double kRa = 150.0, kDec = 2.0;

struct Source {
  double mx, my;  ///< position in MUSE pixels (of the grid below)
  double flux;    ///< erg/s/cm2/A
  double sigma;   ///< HST pixels
};

MuseGrid Grid(int64_t n) {
  MuseGrid g;
  g.nx = g.ny = n;
  g.wcs = phottest::MakeWcs(n, n, WcsSpec{kRa, kDec, 0.5 * (n + 1), 0.5 * (n + 1), 0.2, 0.0});
  return g;
}

/// An HST image (0.04"/pix, rotated by rot_deg, centred on the grid centre plus `off` arcsec
/// east/north) holding Gaussian sources, a constant `level` (e-/s per pixel) and white noise.
Hdu HstImage(const MuseGrid& grid, int64_t n, double rot_deg, const std::vector<Source>& src, double level = 0,
             double noise = 0, uint32_t seed = 1, double off_deg = 0) {
  Hdu h;
  h.nx = h.ny = n;
  h.wcs = phottest::MakeWcs(n, n, WcsSpec{kRa + off_deg, kDec, 0.5 * (n + 1), 0.5 * (n + 1), 0.04, rot_deg});
  h.nums = {{"PHOTFLAM", kPhotflam}, {"PHOTPLAM", 5308.0}};
  h.strs = {{"BUNIT", "ELECTRONS/S"}};
  auto hw = fits::Wcs::FromCards(h.wcs);
  auto mw = fits::Wcs::FromCards(grid.wcs);
  EXPECT_TRUE(hw.ok() && mw.ok());
  h.data.assign(static_cast<size_t>(n * n), level);
  for (const Source& s : src) {
    double ra, dec, hx, hy;
    mw->PixelToSky(s.mx, s.my, ra, dec);
    hw->SkyToPixel(ra, dec, hx, hy);
    const double norm = s.flux / kPhotflam / (2 * M_PI * s.sigma * s.sigma);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i) {
        const double r2 = (i - hx) * (i - hx) + (j - hy) * (j - hy);
        if (r2 < 100 * s.sigma * s.sigma) h.data[static_cast<size_t>(j * n + i)] += norm * std::exp(-0.5 * r2 / (s.sigma * s.sigma));
      }
  }
  if (noise > 0) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> g;
    for (double& v : h.data) v += noise * g(rng);
  }
  return h;
}

BandOptions Opts(const std::string& path, double muse_fwhm = 0, double hst_fwhm = 0.08,
                 PsfShape shape = PsfShape::kGaussian, double beta = 2.5) {
  BandOptions o;
  o.band = "F555W";
  o.path = path;
  o.psf.muse_fwhm = muse_fwhm;
  o.psf.hst_fwhm = hst_fwhm;
  o.psf.shape = shape;
  o.psf.beta = beta;
  o.noise = NoiseMode::kNone;
  return o;
}

double Sum(const std::vector<double>& v, const std::vector<double>* w = nullptr) {
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i)
    if (std::isfinite(v[i])) s += w ? v[i] * (*w)[i] : v[i];
  return s;
}

TEST(PhotResample, RotatedImageConservesFluxAndPlacesPointSource) {
  TempDir d;
  const MuseGrid grid = Grid(60);  // 12" field; the 8" HST image rotated by 33 deg lies inside
  // A compact source (sigma 5 HST pixels = 1 spaxel) and a wide one, on a constant level.
  const Source ps{27.3, 31.8, 3e-16, 5.0};
  Hdu h = HstImage(grid, 200, 33.0, {ps, {35.0, 25.0, 8e-16, 12.0}}, 0.3);
  ASSERT_EQ(phottest::WriteFits(d.File("hst.fits"), {h}), "");
  double total_hst = 0;
  for (double v : h.data) total_hst += v * kPhotflam;
  auto r = ProcessBand(grid, Opts(d.File("hst.fits")));
  ASSERT_TRUE(r.ok()) << r.status().message();
  // Flux: every HST pixel lies on the grid, so the MUSE sum (covered flux) equals the image sum.
  const double total_muse = Sum(r->flux, &r->area);
  // Issue #4: flux conserved to 1e-12 (measured 5.3e-13, with 1 and 2 threads).
  EXPECT_NEAR(total_muse / total_hst, 1.0, 1e-12);
  // The HST footprint: 8" x 8" = 40 x 40 spaxels of area.
  EXPECT_NEAR(Sum(r->area), 1600.0, 1e-6);
  // The compact source alone (the same image without it is subtracted): each spaxel holds the
  // source's flux integrated over the spaxel, i.e. erf differences, with the variance of the
  // HST pixel (0.2 spaxel)^2 / 12 added by the area-weighted redistribution.
  Hdu h2 = HstImage(grid, 200, 33.0, {{35.0, 25.0, 8e-16, 12.0}}, 0.3);
  ASSERT_EQ(phottest::WriteFits(d.File("hst2.fits"), {h2}), "");
  auto r2 = ProcessBand(grid, Opts(d.File("hst2.fits")));
  ASSERT_TRUE(r2.ok());
  const double sg = std::sqrt(std::pow(ps.sigma * 0.2, 2) + 0.04 / 12);  // spaxels
  auto cell = [&](double c, double x0) {
    return 0.5 * (std::erf((c + 0.5 - x0) / (sg * std::sqrt(2.0))) - std::erf((c - 0.5 - x0) / (sg * std::sqrt(2.0))));
  };
  double s = 0, sx = 0, sy = 0, peak = 0, worst = 0;
  int64_t px = -1, py = -1;
  for (int64_t y = 22; y < 42; ++y)
    for (int64_t x = 17; x < 38; ++x) {
      const size_t i = static_cast<size_t>(y * 60 + x);
      const double v = r->flux[i] - r2->flux[i];
      const double e = ps.flux * cell(x, ps.mx) * cell(y, ps.my);
      worst = std::max(worst, std::abs(v - e));
      s += v;
      sx += v * x;
      sy += v * y;
      if (v > peak) { peak = v; px = x; py = y; }
    }
  // Measured: 1.45e-4 of the peak (the spaxel-box variance is the only approximation); 2x.
  EXPECT_LT(worst / peak, 3e-4);
  // Flux of the source: issue #4's 1e-12 (measured 2e-15). Centroid: measured 4e-7 spaxel; 2.5x.
  EXPECT_NEAR(s / ps.flux, 1.0, 1e-12);
  EXPECT_NEAR(sx / s, ps.mx, 1e-6);
  EXPECT_NEAR(sy / s, ps.my, 1e-6);
  EXPECT_EQ(px, 27);
  EXPECT_EQ(py, 32);
  std::printf("rotated resampling: flux ratio - 1 = %.2e; source flux ratio - 1 = %.2e, at (%+.2e, %+.2e) from "
              "its position; max |spaxel - analytic| %.2e of the peak\n", total_muse / total_hst - 1, s / ps.flux - 1,
              sx / s - ps.mx, sy / s - ps.my, worst / peak);
}

/// Effective MUSE PSF sampled at spaxel centres (per spaxel, unit flux).
double GaussPsf(double dx, double dy, double sigma) {
  return std::exp(-0.5 * (dx * dx + dy * dy) / (sigma * sigma)) / (2 * M_PI * sigma * sigma);
}
double MoffatPsf(double dx, double dy, double alpha, double beta) {
  return (beta - 1) / (M_PI * alpha * alpha) * std::pow(1 + (dx * dx + dy * dy) / (alpha * alpha), -beta);
}

TEST(PhotResample, PsfMatchedPointSourceIsTheMusePsf) {
  TempDir d;
  // 10" field inside a 28" HST image rotated by 33 deg, which also covers the reach of the
  // Moffat kernel beyond the field.
  const MuseGrid grid = Grid(50);
  const double sig_hst = 2.0;  // HST pixels: the HST PSF (FWHM 0.188")
  const Source ps{24.37, 25.81, 5e-16, sig_hst};
  Hdu h = HstImage(grid, 700, 33.0, {ps});
  ASSERT_EQ(phottest::WriteFits(d.File("hst.fits"), {h}), "");
  const double hst_fwhm = sig_hst * 0.04 * kFwhmToSigma;
  // tol: max |PSF-matched - analytic| / peak, 2x the measured 1.32e-4, 1.97e-3 (0.55" is
  // undersampled: 2.3 spaxels) and 1.02e-3 (Moffat: kernel truncated at its 1e-3 radius).
  struct Case { PsfShape shape; double fwhm, beta, tol; };
  for (const Case& c : {Case{PsfShape::kGaussian, 0.8, 0, 3e-4}, Case{PsfShape::kGaussian, 0.55, 0, 4e-3},
                        Case{PsfShape::kMoffat, 0.7, 2.8, 2e-3}}) {
    auto r = ProcessBand(grid, Opts(d.File("hst.fits"), c.fwhm, hst_fwhm, c.shape, c.beta));
    ASSERT_TRUE(r.ok()) << r.status().message();
    double worst = 0, peak = 0, total = 0;
    for (int64_t y = 0; y < 50; ++y)
      for (int64_t x = 0; x < 50; ++x) {
        const double dx = x - ps.mx, dy = y - ps.my;
        const double e = ps.flux * (c.shape == PsfShape::kGaussian
                                        ? GaussPsf(dx, dy, c.fwhm / kFwhmToSigma / 0.2)
                                        : MoffatPsf(dx, dy, MoffatAlpha(c.fwhm, c.beta) / 0.2, c.beta));
        const double v = r->flux[static_cast<size_t>(y * 50 + x)];
        worst = std::max(worst, std::abs(v - e));
        peak = std::max(peak, e);
        total += v;
        // The HST image covers the field; the Moffat wings reach a little beyond the image.
        EXPECT_GT(r->coverage[static_cast<size_t>(y * 50 + x)], 0.999);
      }
    EXPECT_LT(worst / peak, c.tol) << "FWHM " << c.fwhm << (c.shape == PsfShape::kMoffat ? " Moffat" : " Gaussian");
    // Flux: the kernel has unit sum, so issue #4's 1e-12 for the Gaussians (measured 3e-14); the
    // Moffat's wings reach beyond the 10" field (measured -1.65e-5): 2x.
    EXPECT_NEAR(total / ps.flux, 1.0, c.shape == PsfShape::kGaussian ? 1e-12 : 3.5e-5);
    std::printf("PSF %s %.2f\": max |PSF-matched - analytic| = %.2e of the peak, flux ratio - 1 = %.2e\n",
                c.shape == PsfShape::kGaussian ? "Gaussian" : "Moffat", c.fwhm, worst / peak, total / ps.flux - 1);
  }
}

TEST(PhotResample, StripSizeDoesNotChangeTheResult) {
  TempDir d;
  const MuseGrid grid = Grid(30);
  Hdu h = HstImage(grid, 200, 21.0, {{12.2, 14.7, 1e-16, 3.0}, {18.0, 10.0, 4e-16, 9.0}}, 0.1, 0.5, 4);
  h.data[5000] = NAN;
  ASSERT_EQ(phottest::WriteFits(d.File("hst.fits"), {h}), "");
  BandOptions a = Opts(d.File("hst.fits"), 0.8, 0.08), b = a;
  a.strip_rows = 7;
  b.strip_rows = 100000;
  a.noise = b.noise = NoiseMode::kEstimate;
  auto ra = ProcessBand(grid, a), rb = ProcessBand(grid, b);
  ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status().message();
  for (size_t i = 0; i < ra->flux.size(); ++i) {
    ASSERT_NEAR(ra->flux[i], rb->flux[i], 1e-12 * std::abs(rb->flux[i]) + 1e-30);
    ASSERT_NEAR(ra->var[i], rb->var[i], 1e-9 * rb->var[i] + 1e-60);
  }
  EXPECT_DOUBLE_EQ(ra->sigma_pix, rb->sigma_pix);
}

TEST(PhotResample, LargeMosaicIsCroppedAndUniformStaysUniform) {
  TempDir d;
  const MuseGrid grid = Grid(20);
  // A 1000 x 1000 mosaic (40") whose centre is 12" east of the MUSE field.
  Hdu h = HstImage(grid, 1000, 17.0, {}, 2.5, 0, 1, 12.0 / 3600.0 / std::cos(kDec * M_PI / 180));
  ASSERT_EQ(phottest::WriteFits(d.File("big.fits"), {h}), "");
  for (double fwhm : {0.0, 0.8}) {
    auto r = ProcessBand(grid, Opts(d.File("big.fits"), fwhm));
    ASSERT_TRUE(r.ok()) << r.status().message();
    // ~ (4" + 2 x kernel radius) / 0.04" x (cos 17 + sin 17) + margins, not 1000.
    const double span = (4.0 + 2 * r->kernel_radius * 0.2) / 0.04 * (std::cos(0.2967) + std::sin(0.2967)) + 4;
    EXPECT_LT(r->crop[1] - r->crop[0], span);
    EXPECT_LT(r->crop[3] - r->crop[2], span);
    EXPECT_GT(r->crop[1] - r->crop[0], span - 10);
    const double expect = 2.5 * kPhotflam * 25.0;  // (0.2 / 0.04)^2 HST pixels per spaxel
    for (size_t i = 0; i < r->flux.size(); ++i) {
      ASSERT_NEAR(r->flux[i] / expect, 1.0, 1e-7) << i;  // TAN pixel areas vary by ~1e-8 over 40"
      ASSERT_NEAR(r->area[i], 1.0, 1e-9);
    }
  }
}

TEST(PhotResample, PartialCoverageAndMinCoverage) {
  TempDir d;
  const MuseGrid grid = Grid(20);
  Hdu h = HstImage(grid, 200, 0.0, {}, 1.0);
  // NaN stripe: HST rows 82..121 = MUSE y 5.9 .. 13.9 (the grid is centred on the image):
  // row 6 is 40 % covered, rows 7-13 empty, row 14 60 % covered.
  for (int64_t y = 82; y < 122; ++y)
    for (int64_t x = 0; x < 200; ++x) h.data[static_cast<size_t>(y * 200 + x)] = NAN;
  ASSERT_EQ(phottest::WriteFits(d.File("hole.fits"), {h}), "");
  auto r = ProcessBand(grid, Opts(d.File("hole.fits")));
  ASSERT_TRUE(r.ok()) << r.status().message();
  const double expect = kPhotflam * 25.0;
  int partial = 0, empty = 0;
  for (int64_t i = 0; i < 400; ++i) {
    if (r->area[i] < 1e-9) {
      EXPECT_TRUE(std::isnan(r->flux[i]));
      ++empty;
    } else {
      EXPECT_NEAR(r->flux[i] / expect, 1.0, 1e-9);  // full-coverage estimate
      if (r->area[i] < 0.999) ++partial;
    }
  }
  EXPECT_GT(empty, 100);
  EXPECT_GT(partial, 10);
  // Bins: a row of the stripe is NaN, a row outside is exact.
  Binning b;
  b.nx = b.ny = 20;
  b.bins.resize(2);
  for (int32_t x = 0; x < 20; ++x) {
    b.bins[0].spaxels.push_back(9 * 20 + x);
    b.bins[1].spaxels.push_back(2 * 20 + x);
  }
  const BinSums s = SumBins(b, *r, 0.95, false);
  EXPECT_TRUE(std::isnan(s.flux[0]));
  EXPECT_NEAR(s.coverage[0], 0.0, 1e-9);
  EXPECT_NEAR(s.flux[1] / (20 * expect), 1.0, 1e-9);
  const BinSums m = SumBins(b, *r, 0.95, true);
  EXPECT_NEAR(m.flux[1] / expect, 1.0, 1e-9);
}

/// 2 x 2-spaxel bins over an n x n grid.
Binning Blocks(int64_t n) {
  Binning b;
  b.nx = b.ny = n;
  for (int64_t y = 0; y + 1 < n; y += 2)
    for (int64_t x = 0; x + 1 < n; x += 2) {
      Binning::Bin bin;
      for (int64_t dy = 0; dy < 2; ++dy)
        for (int64_t dx = 0; dx < 2; ++dx) bin.spaxels.push_back(static_cast<int32_t>((y + dy) * n + x + dx));
      b.bins.push_back(bin);
    }
  return b;
}

TEST(PhotResample, ErrorsFromErrExtensionAndFromTheImage) {
  TempDir d;
  const MuseGrid grid = Grid(50);
  const double sigma = 0.8;  // e-/s per HST pixel
  const std::vector<Source> gal = {{25.0, 25.0, 2e-14, 40.0}, {15.0, 30.0, 2e-15, 6.0}};
  Hdu clean = HstImage(grid, 400, 33.0, gal);
  clean.extname = "SCI";
  Hdu prim;
  ASSERT_EQ(phottest::WriteFits(d.File("clean.fits"), {prim, clean}), "");
  const Binning bins = Blocks(50);
  // The pulls of one realisation (625 bins) scatter too much to test the errors closely: their
  // rms has a standard deviation of 0.031 without PSF matching and 0.072 with it (neighbouring
  // bins covary; measured over 100 seeds), so kReal realisations are pooled.
  constexpr int kReal = 8;
  const double fwhms[2] = {0.0, 0.8};
  std::vector<BinSums> sc;
  for (double fwhm : fwhms) {
    auto rc = ProcessBand(grid, Opts(d.File("clean.fits"), fwhm));
    ASSERT_TRUE(rc.ok()) << rc.status().message();
    sc.push_back(SumBins(bins, *rc, 0.95, false));
  }
  double s2[2][2] = {{0, 0}, {0, 0}};  // [fwhm][mode]
  int n[2][2] = {{0, 0}, {0, 0}};
  for (int real = 0; real < kReal; ++real) {
    Hdu noisy = HstImage(grid, 400, 33.0, gal, 0.0, sigma, static_cast<uint32_t>(11 + real));
    Hdu err;
    err.extname = "ERR";
    err.nx = err.ny = 400;
    err.data.assign(400 * 400, sigma);
    err.wcs = noisy.wcs;
    noisy.extname = "SCI";
    ASSERT_EQ(phottest::WriteFits(d.File("noisy.fits"), {prim, noisy, err}), "");
    for (int f = 0; f < 2; ++f)
      for (int m = 0; m < 2; ++m) {
        BandOptions o = Opts(d.File("noisy.fits"), fwhms[f]);
        o.noise = m == 0 ? NoiseMode::kAuto : NoiseMode::kEstimate;
        auto rn = ProcessBand(grid, o);
        ASSERT_TRUE(rn.ok()) << rn.status().message();
        EXPECT_EQ(rn->noise_source, m == 0 ? "ERR" : "estimate");
        if (m == 1) {
          // Robust second differences of 400 x 400 pixels: sigma / injected has mean 1.0007 and
          // standard deviation 0.0036 (496 seeds, largest deviation 0.011); bound 4 sigma.
          std::printf("realisation %d, PSF %.1f\": estimated background sigma / injected = %.4f\n", real, fwhms[f],
                      rn->sigma_pix / (sigma * kPhotflam));
          EXPECT_NEAR(rn->sigma_pix / (sigma * kPhotflam), 1.0, 0.015);
        }
        const BinSums sn = SumBins(bins, *rn, 0.95, false);
        for (size_t k = 0; k < sn.flux.size(); ++k) {
          const double pull = (sn.flux[k] - sc[f].flux[k]) / std::sqrt(sn.var[k]);
          s2[f][m] += pull * pull;
          ++n[f][m];
        }
      }
  }
  for (int f = 0; f < 2; ++f)
    for (int m = 0; m < 2; ++m) {
      const double rms = std::sqrt(s2[f][m] / n[f][m]);
      std::printf("noise %s, PSF %.1f\": rms pull over %d bins x %d realisations = %.4f\n", m == 0 ? "ERR" : "estimate",
                  fwhms[f], n[f][m] / kReal, kReal, rms);
      // Fractional HST pixels count with weight f instead of f^2 (README, Errors): the errors are
      // a few % high, the rms below 1. Measured, pooled over 8 realisations (31 sets of seeds):
      // mean 0.966, standard deviation 0.009 without PSF matching; 0.982 and 0.020 with it (these
      // seeds: 0.977 / 0.980 and 0.989 / 0.992). Bounds: that mean +- 4 standard deviations.
      if (f == 0) {
        EXPECT_GT(rms, 0.93);
        EXPECT_LT(rms, 1.005);
      } else {
        EXPECT_GT(rms, 0.90);
        EXPECT_LT(rms, 1.065);
      }
    }
}

TEST(PhotResample, BadInputNamesTheFile) {
  TempDir d;
  const MuseGrid grid = Grid(20);
  // Far away: no overlap.
  Hdu far = HstImage(grid, 100, 0.0, {}, 1.0, 0, 1, 1.0);
  ASSERT_EQ(phottest::WriteFits(d.File("far.fits"), {far}), "");
  auto r = ProcessBand(grid, Opts(d.File("far.fits")));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(d.File("far.fits")), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("does not overlap"), std::string::npos) << r.status().message();
  // Overlapping footprint but NaN there.
  Hdu nan = HstImage(grid, 100, 0.0, {}, NAN);
  ASSERT_EQ(phottest::WriteFits(d.File("nan.fits"), {nan}), "");
  r = ProcessBand(grid, Opts(d.File("nan.fits")));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no valid pixel"), std::string::npos) << r.status().message();
  // Missing PHOTFLAM.
  Hdu nophot = HstImage(grid, 100, 0.0, {}, 1.0);
  nophot.nums.erase("PHOTFLAM");
  ASSERT_EQ(phottest::WriteFits(d.File("nophot.fits"), {nophot}), "");
  r = ProcessBand(grid, Opts(d.File("nophot.fits")));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(d.File("nophot.fits")), std::string::npos);
  EXPECT_NE(r.status().message().find("PHOTFLAM"), std::string::npos) << r.status().message();
  // A 3-D image.
  Hdu cube = HstImage(grid, 20, 0.0, {}, 1.0);
  cube.data.resize(20 * 20 * 3, 1.0);
  cube.extra_axes = {3};
  ASSERT_EQ(phottest::WriteFits(d.File("cube.fits"), {cube}), "");
  r = ProcessBand(grid, Opts(d.File("cube.fits")));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("3-D"), std::string::npos) << r.status().message();
  // No WCS.
  Hdu nowcs = HstImage(grid, 20, 0.0, {}, 1.0);
  nowcs.wcs = CelestialWcs{};
  ASSERT_EQ(phottest::WriteFits(d.File("nowcs.fits"), {nowcs}), "");
  r = ProcessBand(grid, Opts(d.File("nowcs.fits")));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no celestial WCS"), std::string::npos) << r.status().message();
  // Error extension asked for but absent.
  BandOptions o = Opts(d.File("nophot.fits"));
  o.noise = NoiseMode::kErr;
  o.calib.zeropoint = 25.0;
  r = ProcessBand(grid, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ERR"), std::string::npos) << r.status().message();
  // Missing file.
  r = ProcessBand(grid, Opts(d.File("none.fits")));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(d.File("none.fits")), std::string::npos);
}

}  // namespace
