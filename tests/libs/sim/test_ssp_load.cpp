// Tests of LoadSspDirectory on the four real SSP sets, file-name parsing and interpolation.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "cubeflow/sim/ssp.hpp"
#include "ssp_test_util.hpp"
#include "test_data.hpp"

namespace cubeflow::sim {
namespace {

namespace fs = std::filesystem;
using testing::DataDir;
using testing::HasDir;
using testing::Interp;

struct Expect {
  const char* dir;
  size_t n_metal, n_age;
  double f5500_10gyr_solar;  // PROVENANCE.md section 1, L_sun/A/M_sun
  double wave0, fwhm;
};

const Expect kSets[] = {
    {"miles_padova_ppxf", 6, 25, 1.7e-5, 3540.5, 2.51},
    {"miles_basti_kb_ngist", 12, 53, 1.8e-5, 3540.5, 2.51},
    {"bc03_mpajhu", 4, 10, 2.2e-5, 3326.0, 2.3},
    {"miuscat_thin", 3, 24, 1.7e-5, 3464.9, 2.51},
};

size_t Nearest(const std::vector<double>& v, double x) {
  size_t b = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (std::abs(v[i] - x) < std::abs(v[b] - x)) b = i;
  }
  return b;
}

TEST(SspFileName, ParsesMilesEmilesMiuscatAndBc03Names) {
  auto a = ParseSspFileName("Mun1.30Zp0.00T10.0000_iPp0.00_baseFe_linear_FWHM_2.51.fits");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->family, "Mun");
  EXPECT_EQ(a->imf, "un");
  EXPECT_DOUBLE_EQ(a->imf_slope, 1.30);
  EXPECT_DOUBLE_EQ(a->mh, 0.0);
  EXPECT_DOUBLE_EQ(a->age_gyr, 10.0);
  EXPECT_DOUBLE_EQ(a->fwhm, 2.51);
  auto b = ParseSspFileName("/x/y/Mkb1.30Zm0.25T00.0300_iTp0.00_Ep0.00.fits");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->imf, "kb");
  EXPECT_DOUBLE_EQ(b->mh, -0.25);
  EXPECT_DOUBLE_EQ(b->age_gyr, 0.03);
  EXPECT_EQ(b->fwhm, 0.0);
  auto c = ParseSspFileName("Ech1.30Zp0.22T00.0063_iPp0.00_baseFe.fits");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->family, "Ech");
  EXPECT_DOUBLE_EQ(c->age_gyr, 0.0063);
  auto d = ParseSspFileName("Iun1.30Zm0.40T00.0631.fits");
  ASSERT_TRUE(d.ok());
  EXPECT_DOUBLE_EQ(d->mh, -0.40);
  auto e = ParseSspFileName("BC03_z0.020_a10.000.fits");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->family, "BC03");
  EXPECT_NEAR(e->mh, std::log10(0.02 / 0.019), 1e-12);
  EXPECT_FALSE(ParseSspFileName("README").ok());
}

TEST(SspLoad, ReadsAllFourRealLibraries) {
  for (const Expect& e : kSets) {
    const std::string dir = DataDir() + "/ssp/" + e.dir;
    if (!HasDir(dir)) CUBEFLOW_SKIP_WITHOUT_DATA() << "no SSP directory " << dir << " (set CUBEFLOW_DATA_DIR)";
    auto r = LoadSspDirectory(dir);
    ASSERT_TRUE(r.ok()) << r.status().message();
    const SspGrid& g = **r;
    EXPECT_TRUE(g.Validate().ok()) << g.Validate().message();
    EXPECT_EQ(g.n_metal(), e.n_metal) << e.dir;
    EXPECT_EQ(g.n_age(), e.n_age) << e.dir;
    EXPECT_NEAR(g.wave.front(), e.wave0, 1e-6) << e.dir;
    EXPECT_NEAR(g.fwhm, e.fwhm, 1e-9) << e.dir;
    EXPECT_FALSE(g.synthetic);
    // 10 Gyr (or oldest <= 10 Gyr), nearest-solar [M/H] at 5500 A.
    const size_t im = Nearest(g.metal, 0.0), ia = Nearest(g.log_age, 10.0);
    std::vector<double> f(g.Spectrum(im, ia), g.Spectrum(im, ia) + g.n_wave());
    const double f5500 = Interp(g.wave, f, 5500.0);
    EXPECT_NEAR(f5500 / e.f5500_10gyr_solar, 1.0, 0.2) << e.dir;
    // Units are per M_sun: 10 Gyr solar at 5500 A is ~1.7e-5 L_sun/A/M_sun for all of them
    // to within 35 % (BC03 is the brightest).
    EXPECT_NEAR(f5500 / 1.7e-5, 1.0, 0.35) << e.dir;
    // Young SSPs are brighter per unit mass.
    std::vector<double> y(g.Spectrum(im, 0), g.Spectrum(im, 0) + g.n_wave());
    EXPECT_GT(Interp(g.wave, y, 5500.0), 3.0 * f5500) << e.dir;
  }
}

TEST(SspLoad, MilesPadovaHasMassToLightFromTheCompanionTable) {
  const std::string dir = DataDir() + "/ssp/miles_padova_ppxf";
  if (!HasDir(dir)) CUBEFLOW_SKIP_WITHOUT_DATA() << "no " << dir;
  auto r = LoadSspDirectory(dir);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const SspGrid& g = **r;
  ASSERT_EQ(g.ml_v.size(), g.n_age() * g.n_metal());
  ASSERT_EQ(g.mass_star.size(), g.ml_v.size());
  const size_t im = Nearest(g.metal, 0.0);
  // M/L_V rises monotonically with age; surviving mass falls.
  for (size_t ia = 1; ia < g.n_age(); ++ia) {
    EXPECT_GT(g.ml_v[im * g.n_age() + ia], g.ml_v[im * g.n_age() + ia - 1]);
    EXPECT_LT(g.mass_star[im * g.n_age() + ia], g.mass_star[im * g.n_age() + ia - 1]);
  }
  const double ml10 = g.InterpolateScalar(g.ml_v, 10.0, 0.0);
  EXPECT_GT(ml10, 3.0);
  EXPECT_LT(ml10, 8.0);
  EXPECT_GT(g.InterpolateScalar(g.mass_star, 10.0, 0.0), 0.5);
  EXPECT_LT(g.InterpolateScalar(g.mass_star, 10.0, 0.0), 0.9);
  // The other sets have no table: ml_v stays empty.
  const std::string basti = DataDir() + "/ssp/miles_basti_kb_ngist";
  if (cftest::HaveData(basti)) {
    auto b = LoadSspDirectory(basti);
    ASSERT_TRUE(b.ok());
    EXPECT_TRUE((*b)->ml_v.empty());
  }
}

TEST(SspLoad, ReportsMissingGridPointsAndBadDirectories) {
  const std::string src = DataDir() + "/ssp/miuscat_thin";
  if (!HasDir(src)) CUBEFLOW_SKIP_WITHOUT_DATA() << "no " << src;
  const fs::path tmp = fs::path(::testing::TempDir()) / "cubeflow_ssp_missing";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  int n = 0;
  for (const auto& e : fs::directory_iterator(src)) {
    const std::string name = e.path().filename().string();
    if (name.find(".fits") == std::string::npos) continue;
    if (name == "Iun1.30Zp0.22T01.0000.fits") continue;  // leave a hole
    fs::create_symlink(e.path(), tmp / name);
    ++n;
  }
  ASSERT_EQ(n, 71);
  auto r = LoadSspDirectory(tmp.string());
  ASSERT_FALSE(r.ok());
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("1 of 72"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0.22"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1.0000 Gyr"), std::string::npos) << msg;
  // Selecting one complete metallicity with name_contains works.
  SspLoadOptions opt;
  opt.name_contains = "Zm0.40";
  opt.wave_min = 4800;
  opt.wave_max = 7000;
  auto ok = LoadSspDirectory(tmp.string(), opt);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ((*ok)->n_metal(), 1u);
  EXPECT_EQ((*ok)->n_age(), 24u);
  EXPECT_GE((*ok)->wave.front(), 4800.0);
  EXPECT_LE((*ok)->wave.back(), 7000.0);
  EXPECT_LT((*ok)->wave.front(), 4801.0);
  fs::remove_all(tmp);

  auto bad = LoadSspDirectory("/nonexistent/ssp_dir");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("/nonexistent/ssp_dir"), std::string::npos);
}

TEST(SspGridInterpolate, BilinearAndClamped) {
  SspGrid g;
  g.name = "toy";
  g.wave = {1.0, 2.0};
  g.log_age = {8.0, 9.0, 10.0};
  g.metal = {-1.0, 0.0};
  // flux = log_age + 10 * metal, per wavelength (times the wavelength).
  for (double m : g.metal) {
    for (double a : g.log_age) {
      for (double w : g.wave) g.flux.push_back(static_cast<float>((a + 10 * m) * w));
    }
  }
  ASSERT_TRUE(g.Validate().ok());
  double out[2];
  g.Interpolate(9.0, 0.0, out);
  EXPECT_NEAR(out[1], 18.0, 1e-6);
  g.Interpolate(9.25, -0.5, out);
  EXPECT_NEAR(out[0], 9.25 - 5.0, 1e-6);
  EXPECT_NEAR(out[1], 2 * (9.25 - 5.0), 1e-6);
  g.Interpolate(12.0, 3.0, out);  // clamped to (10, 0)
  EXPECT_NEAR(out[0], 10.0, 1e-6);
  g.Interpolate(5.0, -9.0, out);  // clamped to (8, -1)
  EXPECT_NEAR(out[0], -2.0, 1e-6);
  const std::vector<double> s = {1, 2, 3, 4, 5, 6};
  EXPECT_NEAR(g.InterpolateScalar(s, 8.5, -0.5), 0.5 * (1.5 + 4.5), 1e-12);
  EXPECT_TRUE(std::isnan(g.InterpolateScalar({}, 8.5, 0.0)));
}

}  // namespace
}  // namespace cubeflow::sim
