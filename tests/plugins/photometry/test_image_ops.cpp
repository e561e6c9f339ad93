// Unit tests of the pieces of photometry.hst_match: units and calibration, PSF transforms,
// smoothing, matching kernels, polygon overlap, pixel transforms.
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

// ---------------------------------------------------------------------------------------------
// Units

TEST(PhotUnits, ParseBunitSpellings) {
  struct Case { const char* s; PixelUnit u; double scale; bool e; };
  const Case cases[] = {
      {"ELECTRONS/S", PixelUnit::kCountRate, 1, true},
      {"electrons/s", PixelUnit::kCountRate, 1, true},
      {"e-/s", PixelUnit::kCountRate, 1, true},
      {"COUNTS/S", PixelUnit::kCountRate, 1, false},
      {"CPS", PixelUnit::kCountRate, 1, false},
      {"DN/S", PixelUnit::kCountRate, 1, false},
      {"electron s-1", PixelUnit::kCountRate, 1, true},
      {"ELECTRONS", PixelUnit::kCounts, 1, true},
      {"counts", PixelUnit::kCounts, 1, false},
      {"erg/s/cm2/Angstrom", PixelUnit::kFlam, 1, false},
      {"1e-20 erg/s/cm2/A", PixelUnit::kFlam, 1e-20, false},
      {"10**(-20)*erg/s/cm**2/Angstrom", PixelUnit::kFlam, 1e-20, false},
      {"10**-17 erg s-1 cm-2 A-1", PixelUnit::kFlam, 1e-17, false},
      {"erg s-1 cm-2 A-1 arcsec-2", PixelUnit::kFlamArcsec2, 1, false},
      {"Jy", PixelUnit::kJansky, 1, false},
      {"mJy", PixelUnit::kJansky, 1e-3, false},
      {"nJy", PixelUnit::kJansky, 1e-9, false},
      {"MJy/sr", PixelUnit::kMJySr, 1, false},
      {"erg/s/cm2/Hz", PixelUnit::kUnknown, 1, false},
      {"furlong", PixelUnit::kUnknown, 1, false},
      {"", PixelUnit::kUnknown, 1, false},
  };
  for (const Case& c : cases) {
    const UnitSpec u = ParseBunit(c.s);
    EXPECT_EQ(u.unit, c.u) << c.s;
    if (c.u != PixelUnit::kUnknown) {
      EXPECT_NEAR(u.scale / c.scale, 1.0, 1e-12) << c.s;
      EXPECT_EQ(u.electrons, c.e) << c.s;
    }
  }
}

TEST(PhotUnits, ZeropointMatchesPhotflam) {
  // STScI: ZP_AB = -2.5 log10(PHOTFLAM) - 21.10 - 5 log10(PHOTPLAM) + 18.6921.
  for (const auto& [flam, plam] : std::vector<std::pair<double, double>>{{1.9e-19, 5308.0}, {3.3e-18, 2704.0}, {1.5e-19, 8040.0}}) {
    const double zp = -2.5 * std::log10(flam) - 21.10 - 5 * std::log10(plam) + 18.6921;
    // Measured 4.4e-5 (the formula's constants are rounded); 2x.
    EXPECT_NEAR(ZeropointToFlam(zp, plam) / flam, 1.0, 1e-4) << plam;
  }
}

/// Writes an image with the given keys; returns the opened reader.
std::unique_ptr<fits::ImageReader> OpenWith(const TempDir& d, const std::string& name, std::map<std::string, double> nums,
                                            std::map<std::string, std::string> strs, bool sci_ext = false,
                                            std::map<std::string, double> primary_nums = {}) {
  Hdu img;
  img.nx = 4;
  img.ny = 3;
  img.data.assign(12, 1.0);
  img.wcs = phottest::MakeWcs(4, 3, WcsSpec{});
  img.nums = std::move(nums);
  img.strs = std::move(strs);
  std::vector<Hdu> hdus;
  if (sci_ext) {
    Hdu prim;
    prim.nums = std::move(primary_nums);
    img.extname = "SCI";
    hdus = {prim, img};
  } else {
    hdus = {img};
  }
  EXPECT_EQ(phottest::WriteFits(d.File(name), hdus), "");
  auto r = fits::ImageReader::Open(d.File(name), "auto", {"SCI"});
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : nullptr;
}

TEST(PhotUnits, CalibrateFromHeaders) {
  TempDir d;
  CalibrationOptions o;
  o.band = "F555W";
  {  // e-/s with PHOTFLAM / PHOTPLAM in the image HDU
    auto r = OpenWith(d, "a.fits", {{"PHOTFLAM", 1.9e-19}, {"PHOTPLAM", 5308.0}, {"EXPTIME", 500.0}}, {{"BUNIT", "ELECTRONS/S"}});
    auto c = Calibrate(*r, o);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_DOUBLE_EQ(c->factor, 1.9e-19);
    EXPECT_DOUBLE_EQ(c->pivot, 5308.0);
    EXPECT_TRUE(c->unit.electrons);
    EXPECT_DOUBLE_EQ(c->exptime, 500.0);
  }
  {  // keywords in the primary header, data in SCI; counts / EXPTIME
    auto r = OpenWith(d, "b.fits", {}, {{"BUNIT", "ELECTRONS"}}, true,
                      {{"PHOTFLAM", 2e-19}, {"PHOTPLAM", 8000.0}, {"EXPTIME", 400.0}});
    EXPECT_EQ(r->hdu_name(), "SCI");
    auto c = Calibrate(*r, o);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_DOUBLE_EQ(c->factor, 2e-19 / 400.0);
  }
  {  // a zero point instead of PHOTFLAM
    auto r = OpenWith(d, "c.fits", {{"PHOTPLAM", 5308.0}}, {{"BUNIT", "ELECTRONS/S"}});
    CalibrationOptions z = o;
    z.zeropoint = 25.0;
    auto c = Calibrate(*r, z);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_NEAR(c->factor / ZeropointToFlam(25.0, 5308.0), 1.0, 1e-12);
    // Without one: a clear error naming the file and the fix.
    auto bad = Calibrate(*r, o);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find(d.File("c.fits")), std::string::npos) << bad.status().message();
    EXPECT_NE(bad.status().message().find("PHOTFLAM"), std::string::npos);
    EXPECT_NE(bad.status().message().find("zeropoints"), std::string::npos);
  }
  {  // Jy per pixel -> f_lambda at the pivot; the pivot from the built-in filter (no PHOTPLAM)
    auto r = OpenWith(d, "e.fits", {}, {{"BUNIT", "uJy"}});
    auto c = Calibrate(*r, o);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_NEAR(c->pivot, 5308, 0.005 * 5308);
    EXPECT_NEAR(c->factor / (1e-6 * 1e-23 * 2.99792458e18 / (c->pivot * c->pivot)), 1.0, 1e-12);
  }
  {  // surface brightness x pixel area; 1e-20 prefix
    auto r = OpenWith(d, "f.fits", {{"PHOTPLAM", 5308.0}}, {{"BUNIT", "1e-20 erg/s/cm2/A/arcsec2"}});
    CalibrationOptions a = o;
    a.pixel_area_arcsec2 = 0.0016;
    auto c = Calibrate(*r, a);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_NEAR(c->factor, 1e-20 * 0.0016, 1e-35);
  }
  {  // unknown unit
    auto r = OpenWith(d, "g.fits", {{"PHOTFLAM", 1e-19}, {"PHOTPLAM", 5308.0}}, {{"BUNIT", "furlong/fortnight"}});
    auto c = Calibrate(*r, o);
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("furlong/fortnight"), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("`unit`"), std::string::npos);
  }
  {  // no pivot anywhere for an unknown band
    auto r = OpenWith(d, "h.fits", {{"PHOTFLAM", 1e-19}}, {{"BUNIT", "ELECTRONS/S"}});
    CalibrationOptions x = o;
    x.band = "F999X";
    auto c = Calibrate(*r, x);
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("pivots"), std::string::npos) << c.status().message();
  }
}

// ---------------------------------------------------------------------------------------------
// PSFs

TEST(PhotPsf, MoffatTransformMatchesNumericalHankel) {
  const double fwhm = 0.8, beta = 2.5, a = MoffatAlpha(fwhm, beta);
  // Half maximum at r = FWHM / 2.
  EXPECT_NEAR(std::pow(1 + std::pow(0.5 * fwhm / a, 2), -beta), 0.5, 1e-12);
  for (double q : {0.0, 0.2, 0.5, 1.0, 2.0}) {
    // F(q) = 2 pi int I(r) J0(2 pi q r) r dr, I = (b-1)/(pi a^2) (1 + r^2/a^2)^-b
    double s = 0;
    const double dr = 1e-3;
    for (double r = 0.5 * dr; r < 400; r += dr)
      s += (beta - 1) / (M_PI * a * a) * std::pow(1 + r * r / (a * a), -beta) * std::cyl_bessel_j(0.0, 2 * M_PI * q * r) * r;
    s *= 2 * M_PI * dr;
    EXPECT_NEAR(PsfTransform(PsfShape::kMoffat, fwhm, beta, q), s, 5e-7) << q;  // measured 2.5e-7 (the sum); 2x
  }
  EXPECT_NEAR(PsfTransform(PsfShape::kGaussian, 1.0, 0, 0.3), std::exp(-2 * M_PI * M_PI * std::pow(1 / kFwhmToSigma * 0.3, 2)), 1e-15);
  // Enclosed-energy radius of the Moffat.
  const double r = PsfRadius(PsfShape::kMoffat, fwhm, beta, 1e-3);
  EXPECT_NEAR(std::pow(1 + r * r / (a * a), 1 - beta), 1e-3, 1e-9);
}

TEST(PhotPsf, GaussianKernelNormalisedWithRightWidth) {
  for (double s : {0.7, 3.0, 8.5}) {
    auto k = GaussianKernel1D(s);
    double sum = 0, m2 = 0;
    const int h = static_cast<int>(k.size() / 2);
    for (int i = -h; i <= h; ++i) {
      sum += k[i + h];
      m2 += k[i + h] * i * i;
      EXPECT_DOUBLE_EQ(k[i + h], k[h - i]);
    }
    EXPECT_NEAR(sum, 1.0, 1e-14);
    EXPECT_NEAR(std::sqrt(m2), s, 2.5e-3 * s);  // measured 1.2e-3 (s = 0.7: the sampling), 2.6e-4, 4.3e-4; 2x
  }
}

TEST(PhotSmooth, ConservesFluxKeepsConstantsAndHonoursNaN) {
  const int64_t nr = 60, nc = 50;
  auto kx = GaussianKernel1D(2.5), ky = GaussianKernel1D(3.0);
  // A point source far from the edges: the sum is kept.
  std::vector<double> img(nr * nc, 0.0), out;
  img[30 * nc + 25] = 7.0;
  SmoothBlock(img, nr, nc, kx, ky, 0, nr, out);
  double s = 0;
  for (double v : out) s += v;
  EXPECT_NEAR(s, 7.0, 1e-12);
  EXPECT_GT(out[30 * nc + 25], out[30 * nc + 27]);
  // A constant image with NaN holes stays constant (normalised convolution); NaN stays NaN.
  std::vector<double> c(nr * nc, 3.0);
  for (int64_t x = 10; x < 20; ++x) c[40 * nc + x] = NAN;
  c[5 * nc + 5] = NAN;
  SmoothBlock(c, nr, nc, kx, ky, 0, nr, out);
  for (int64_t i = 0; i < nr * nc; ++i) {
    if (std::isnan(c[i])) EXPECT_TRUE(std::isnan(out[i]));
    else EXPECT_NEAR(out[i], 3.0, 1e-12);
  }
  // Smoothing rows [20, 30) from a block with enough overlap equals the whole-image result.
  std::mt19937 rng(3);
  std::normal_distribution<double> g;
  for (double& v : img) v = g(rng);
  std::vector<double> whole, part;
  SmoothBlock(img, nr, nc, kx, ky, 0, nr, whole);
  const int64_t hy = static_cast<int64_t>(ky.size() / 2);
  std::vector<double> sub(img.begin() + (20 - hy) * nc, img.begin() + (30 + hy) * nc);
  SmoothBlock(sub, 10 + 2 * hy, nc, kx, ky, hy, 10, part);
  for (int64_t i = 0; i < 10 * nc; ++i) EXPECT_NEAR(part[i], whole[20 * nc + i], 1e-13);
}

TEST(PhotKernel, GaussianKernelHasTheMissingWidth) {
  KernelGeometry g;  // MUSE 0.2" pixels, HST 0.04" pixels aligned
  PsfOptions p;
  p.muse_fwhm = 0.8;
  p.hst_fwhm = 0.08;
  const double spre = PreSmoothingSigma(p, 0.2);
  EXPECT_NEAR(spre, 0.12, 1e-12);
  auto k = BuildMatchingKernel(g, p, spre);
  ASSERT_TRUE(k.ok()) << k.status().message();
  double sum = 0, mxx = 0, myy = 0, mx = 0;
  for (int dy = -k->r; dy <= k->r; ++dy)
    for (int dx = -k->r; dx <= k->r; ++dx) {
      const double w = k->At(dx, dy);
      sum += w;
      mx += w * dx;
      mxx += w * dx * dx;
      myy += w * dy * dy;
    }
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_NEAR(mx, 0.0, 1e-12);
  // Variance (MUSE px^2): target - HST PSF - pre-smoothing - HST pixel box - MUSE pixel box.
  const double sm = 0.8 / kFwhmToSigma / 0.2, sh = 0.08 / kFwhmToSigma / 0.2, sp = 0.12 / 0.2;
  const double expect = sm * sm - sh * sh - sp * sp - 0.2 * 0.2 / 12 - 1.0 / 12;
  // Measured: variance 5.9e-6 relative, transfer at Nyquist 7.1e-6; 2x.
  EXPECT_NEAR(mxx, expect, 1.2e-5 * expect);
  EXPECT_NEAR(myy, expect, 1.2e-5 * expect);
  EXPECT_LT(k->nyquist_transfer, 1.5e-5);
  // A MUSE PSF narrower than the HST one cannot be reached.
  PsfOptions bad = p;
  bad.muse_fwhm = 0.1;
  bad.hst_fwhm = 0.3;
  auto kb = BuildMatchingKernel(g, bad, 0.0);
  ASSERT_FALSE(kb.ok());
  EXPECT_NE(kb.status().message().find("narrower"), std::string::npos);
}

TEST(PhotKernel, MoffatKernelReproducesTheMoffat) {
  // The kernel's transform times everything applied before it (HST PSF, pre-smoothing, HST
  // pixel, MUSE pixel) must equal the Moffat's transform.
  KernelGeometry g;
  PsfOptions p;
  p.shape = PsfShape::kMoffat;
  p.beta = 2.8;
  p.muse_fwhm = 0.7;
  p.hst_fwhm = 0.1;
  const double spre = PreSmoothingSigma(p, 0.2);
  auto k = BuildMatchingKernel(g, p, spre);
  ASSERT_TRUE(k.ok()) << k.status().message();
  for (double kx : {0.0, 0.05, 0.1, 0.2}) {
    double re = 0;
    for (int dy = -k->r; dy <= k->r; ++dy)
      for (int dx = -k->r; dx <= k->r; ++dx) re += k->At(dx, dy) * std::cos(2 * M_PI * kx * dx);
    const double q = kx / 0.2;  // cycles / arcsec
    auto sinc = [](double x) { return x == 0 ? 1.0 : std::sin(M_PI * x) / (M_PI * x); };
    const double applied = std::exp(-2 * M_PI * M_PI * (std::pow(0.1 / kFwhmToSigma, 2) + spre * spre) * q * q) *
                           sinc(0.2 * kx) * sinc(kx);
    // Truncation at the 1e-3 radius and renormalisation allow ~1e-3; measured 4.7e-4 (kx 0.05),
    // 2.6e-4, 3.4e-5, 1e-15 (kx 0); 2x.
    EXPECT_NEAR(re * applied, PsfTransform(PsfShape::kMoffat, 0.7, 2.8, q), 1e-3) << kx;
  }
}

// ---------------------------------------------------------------------------------------------
// Geometry

TEST(PhotGeometry, ClipPolygonAreaExactCases) {
  const double sx[4] = {0, 1, 1, 0}, sy[4] = {0, 0, 1, 1};
  EXPECT_NEAR(ClipPolygonArea(sx, sy, 4, -1, 2, -1, 2), 1.0, 1e-15);
  EXPECT_NEAR(ClipPolygonArea(sx, sy, 4, 0.5, 2, -1, 2), 0.5, 1e-15);
  EXPECT_NEAR(ClipPolygonArea(sx, sy, 4, 0.25, 0.75, 0.5, 3), 0.25, 1e-15);
  EXPECT_NEAR(ClipPolygonArea(sx, sy, 4, 2, 3, 0, 1), 0.0, 1e-15);
  // A unit square rotated by 45 deg about (0, 0): the quadrant x > 0, y > 0 holds a quarter.
  const double h = std::sqrt(0.5);
  const double dx[4] = {h, 0, -h, 0}, dy[4] = {0, h, 0, -h};
  EXPECT_NEAR(ClipPolygonArea(dx, dy, 4, 0, 5, 0, 5), 0.25, 1e-15);
  // Clockwise order gives the same.
  const double cx[4] = {0, 0, 1, 1}, cy[4] = {0, 1, 1, 0};
  EXPECT_NEAR(ClipPolygonArea(cx, cy, 4, 0.5, 2, -1, 2), 0.5, 1e-15);
}

TEST(PhotGeometry, DepositQuadSplitsFluxByArea) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(1.0, 8.0), ang(0, M_PI), sz(0.1, 0.9);
  for (int t = 0; t < 200; ++t) {
    GridSums g;
    g.Reset(10, 10);
    const double cx = u(rng), cy = u(rng), a = ang(rng), s = sz(rng), ca = std::cos(a), sa = std::sin(a);
    double qx[4], qy[4];
    const double ox[4] = {-0.5, 0.5, 0.5, -0.5}, oy[4] = {-0.5, -0.5, 0.5, 0.5};
    for (int i = 0; i < 4; ++i) {
      qx[i] = cx + s * (ca * ox[i] - sa * oy[i]);
      qy[i] = cy + s * (sa * ox[i] + ca * oy[i]);
    }
    DepositQuad(qx, qy, 5.0, 2.0, g);
    double f = 0, v = 0, n = 0, ar = 0, mx = 0;
    for (size_t i = 0; i < g.flux.size(); ++i) {
      f += g.flux[i];
      v += g.var[i];
      n += g.npix[i];
      ar += g.area[i];
      mx += g.flux[i] * static_cast<double>(i % 10);
    }
    EXPECT_NEAR(f, 5.0, 1e-11);
    EXPECT_NEAR(v, 2.0, 1e-11);
    EXPECT_NEAR(n, 1.0, 1e-11);
    EXPECT_NEAR(ar, s * s, 1e-12);
    EXPECT_NEAR(mx / f, cx, 0.5);
  }
  // Partly off the grid: only the part on it is kept.
  GridSums g;
  g.Reset(3, 3);
  const double qx[4] = {-1.0, 0.0, 0.0, -1.0}, qy[4] = {0.0, 0.0, 1.0, 1.0};  // half on pixel (0, ...)
  DepositQuad(qx, qy, 4.0, 0.0, g);
  double f = 0;
  for (double v : g.flux) f += v;
  EXPECT_NEAR(f, 2.0, 1e-12);
}

TEST(PhotGeometry, PixelTransformIsAccurateAcrossRotatedWcs) {
  auto from = fits::Wcs::FromCards(phottest::MakeWcs(500, 500, WcsSpec{150.0, 2.0, 250, 250, 0.04, 33.0}));
  auto to = fits::Wcs::FromCards(phottest::MakeWcs(100, 100, WcsSpec{150.001, 2.0005, 50, 50, 0.2, -10.0}));
  ASSERT_TRUE(from.ok() && to.ok());
  auto t = PixelTransform::Build(*from, *to, -0.5, -0.5, 499.5, 499.5, 1e-5);
  ASSERT_TRUE(t.ok()) << t.status().message();
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-0.5, 499.5);
  double worst = 0;
  for (int i = 0; i < 500; ++i) {
    const double x = u(rng), y = u(rng);
    double ra, dec, ex, ey, ix, iy;
    from->PixelToSky(x, y, ra, dec);
    to->SkyToPixel(ra, dec, ex, ey);
    t->Map(x, y, ix, iy);
    worst = std::max(worst, std::hypot(ex - ix, ey - iy));
  }
  EXPECT_LT(worst, 1e-5);  // the tolerance asked of Build (measured 1.05e-9)
}

TEST(PhotGeometry, SipDistortionReachesWcslib) {
  // A TAN-SIP image with A_2_0 = 1e-5: pixel offset u = 100 from CRPIX becomes u + 1e-5 u^2 = 100.1
  // before the linear transform; the same image without "-SIP" ignores the coefficient.
  TempDir d;
  using fits::FitsReal;
  using fits::FitsString;
  using fits::MakeCard;
  auto cards = [&](bool sip, bool coeffs = true) {
    std::string c;
    c += MakeCard("CTYPE1", FitsString(sip ? "RA---TAN-SIP" : "RA---TAN")) +
         MakeCard("CTYPE2", FitsString(sip ? "DEC--TAN-SIP" : "DEC--TAN"));
    c += MakeCard("CRVAL1", FitsReal(150.0)) + MakeCard("CRVAL2", FitsReal(2.0));
    c += MakeCard("CRPIX1", FitsReal(1.0)) + MakeCard("CRPIX2", FitsReal(1.0));
    c += MakeCard("CD1_1", FitsReal(-1e-5)) + MakeCard("CD1_2", FitsReal(0.0)) + MakeCard("CD2_1", FitsReal(0.0)) +
         MakeCard("CD2_2", FitsReal(1e-5));
    if (coeffs) c += MakeCard("A_ORDER", "2") + MakeCard("B_ORDER", "2") + MakeCard("A_2_0", FitsReal(1e-5));
    return CelestialWcs{c};
  };
  for (bool sip : {true, false}) {
    Hdu h;
    h.nx = h.ny = 4;
    h.data.assign(16, 1.0);
    h.wcs = cards(sip);
    const std::string path = d.File(sip ? "sip.fits" : "tan.fits");
    ASSERT_EQ(phottest::WriteFits(path, {h}), "");
    auto r = fits::ImageReader::Open(path, "auto");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ((*r)->wcs().cards.find("A_2_0") != std::string::npos, sip);
    auto w = fits::Wcs::FromCards((*r)->wcs());
    ASSERT_TRUE(w.ok()) << w.status().message();
    // (wcslib applies A_p_q even without "-SIP"; the reader drops them then, as the SIP
    // convention says.)
    auto plain = fits::Wcs::FromCards(cards(false, false));
    double ra1, dec1, ra2, dec2;
    w->PixelToSky(100.0, 0.0, ra1, dec1);
    plain->PixelToSky(sip ? 100.1 : 100.0, 0.0, ra2, dec2);
    EXPECT_NEAR(ra1, ra2, 1e-10) << (sip ? "SIP" : "TAN");
    EXPECT_NEAR(dec1, dec2, 1e-10);
  }
}

}  // namespace
