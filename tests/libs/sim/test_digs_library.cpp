// DIGS libraries (digs_library.hpp): rows are the simulator's objects of the seed, whatever the
// chunk size; the provenance is in the header; broken files are refused with the file named.
#include <gtest/gtest.h>
#include <fitsio.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>

#include "cubeflow/sim/digs_library.hpp"
#include "cubeflow/sim/rng.hpp"

using namespace cubeflow;
using namespace cubeflow::sim;

namespace {

std::shared_ptr<const DigsModel> Model() {
  auto r = DigsModel::Build(BuiltinSsp(), DigsConfig());
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : nullptr;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("cubeflow_digs_lib_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

}  // namespace

TEST(DigsLibrary, RowsAreTheSimulatorsObjectsWhateverTheChunk) {
  auto m = Model();
  ASSERT_TRUE(m);
  const std::string a = TempPath("a.fits"), b = TempPath("b.fits");
  ASSERT_TRUE(WriteDigsLibrary(*m, 77, 25, "builtin", a, 7).ok());
  ASSERT_TRUE(WriteDigsLibrary(*m, 77, 25, "builtin", b, 1000).ok());
  auto la = ReadDigsLibrary(a), lb = ReadDigsLibrary(b);
  ASSERT_TRUE(la.ok()) << la.status().message();
  ASSERT_TRUE(lb.ok()) << lb.status().message();
  ASSERT_EQ(la->n, 25);
  ASSERT_EQ(la->n_wave, 138);
  EXPECT_EQ(la->flux, lb->flux);
  EXPECT_EQ(la->theta, lb->theta);
  ASSERT_EQ(la->wave.size(), 138u);
  EXPECT_DOUBLE_EQ(la->wave[10], m->wave()[10]);
  for (int64_t i : {0, 13, 24}) {
    DigsObject o;
    m->Simulate(77, i, &o);
    for (int64_t w : {0, 70, 137}) EXPECT_EQ(la->flux[i * 138 + w], static_cast<float>(o.flux[w])) << i << " " << w;
    const auto t = o.theta.ToArray();
    for (int k = 0; k < 4; ++k) EXPECT_EQ(la->theta[i * 5 + k], t[k]);
    EXPECT_DOUBLE_EQ(la->theta[i * 5 + 4], std::log10(t[4]));  // LOG_TAU
  }
  EXPECT_EQ(la->header.at("DIGSSEED"), "77");
  EXPECT_EQ(la->header.at("DIGSSSP"), "builtin");
  EXPECT_DOUBLE_EQ(std::stod(la->header.at("PLO1")), 8.0);
  EXPECT_DOUBLE_EQ(std::stod(la->header.at("PHI5")), 1.0);
  EXPECT_DOUBLE_EQ(std::stod(la->header.at("NOISEFR")), 0.05);
  auto part = ReadDigsLibrary(a, 10);
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(part->n, 10);
  EXPECT_EQ(part->theta.size(), 50u);
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

// `cubeflow digs library --theta`: row i is noise realisation i of one parameter set, the
// spectrum `cubeflow digs mcmc --theta` fits with the same seed (Rng(seed, i, 1)).
TEST(DigsLibrary, FixedParametersGiveNoiseRealisationsOfThem) {
  auto m = Model();
  ASSERT_TRUE(m);
  const std::string a = TempPath("fixed.fits");
  const double values[] = {10.51, -0.41, 0.65, 1.63, 0.11};
  const DigsTheta fixed = DigsTheta::FromArray(values);
  ASSERT_TRUE(WriteDigsLibrary(*m, 20262003, 4, "builtin", a, 3, &fixed).ok());
  auto la = ReadDigsLibrary(a);
  ASSERT_TRUE(la.ok()) << la.status().message();
  EXPECT_EQ(la->header.at("DIGSFIX"), "T");
  for (int64_t i = 0; i < 4; ++i) {
    for (int k = 0; k < 4; ++k) EXPECT_EQ(la->theta[i * 5 + k], values[k]);
    EXPECT_DOUBLE_EQ(la->theta[i * 5 + 4], std::log10(0.11));
    DigsObject o;
    Rng noise(20262003, static_cast<uint64_t>(i), 1);
    m->SimulateFrom(fixed, noise, &o);
    for (int64_t w : {0, 70, 137}) EXPECT_EQ(la->flux[i * 138 + w], static_cast<float>(o.flux[w])) << i << " " << w;
  }
  EXPECT_NE(la->flux[0], la->flux[138]);  // different noise
  std::filesystem::remove(a);
}

// Paper 003's test set: the central 16-84 % of every prior (tau log-uniform: of log10 tau). A
// library of that prior records the narrower box and its rows fill it.
TEST(DigsLibrary, CentralPriorDrawsFromTheInnerRangeOfEveryParameter) {
  const DigsPrior full, c = full.Central(0.16, 0.84);
  EXPECT_DOUBLE_EQ(c.log_mass_min, 8.8);
  EXPECT_DOUBLE_EQ(c.log_mass_max, 12.2);
  EXPECT_NEAR(c.log_z_min, -2.0 + 0.16 * 2.2, 1e-12);
  EXPECT_NEAR(c.dust_max, 0.1 + 0.84 * 9.9, 1e-12);
  EXPECT_NEAR(c.t_age_min, 0.64, 1e-12);
  EXPECT_NEAR(std::log10(c.tau_min), -1 + 0.16, 1e-12);
  EXPECT_NEAR(std::log10(c.tau_max), -1 + 0.84, 1e-12);
  DigsConfig cfg;
  cfg.prior = c;
  auto m = DigsModel::Build(BuiltinSsp(), cfg);
  ASSERT_TRUE(m.ok());
  const std::string a = TempPath("central.fits");
  ASSERT_TRUE(WriteDigsLibrary(**m, 5, 400, "builtin", a).ok());
  auto la = ReadDigsLibrary(a);
  ASSERT_TRUE(la.ok());
  EXPECT_DOUBLE_EQ(std::stod(la->header.at("PLO1")), 8.8);
  const auto lo = c.Lo(), hi = c.Hi();
  std::array<double, 5> min_seen, max_seen;
  min_seen.fill(1e9);
  max_seen.fill(-1e9);
  for (int64_t i = 0; i < la->n; ++i)
    for (int k = 0; k < 5; ++k) {
      const double v = k == 4 ? std::pow(10.0, la->theta[i * 5 + k]) : la->theta[i * 5 + k];
      EXPECT_GE(v, lo[k] - 1e-12);
      EXPECT_LE(v, hi[k] + 1e-12);
      min_seen[k] = std::min(min_seen[k], v);
      max_seen[k] = std::max(max_seen[k], v);
    }
  for (int k = 0; k < 5; ++k) {  // 400 uniform draws reach within 3 % of both ends
    const double span = k == 4 ? std::log10(hi[k] / lo[k]) : hi[k] - lo[k];
    const double a0 = k == 4 ? std::log10(min_seen[k] / lo[k]) : min_seen[k] - lo[k];
    const double b0 = k == 4 ? std::log10(hi[k] / max_seen[k]) : hi[k] - max_seen[k];
    EXPECT_LT(a0, 0.03 * span) << k;
    EXPECT_LT(b0, 0.03 * span) << k;
  }
  std::filesystem::remove(a);
}

TEST(DigsLibrary, DifferentSeedsGiveDifferentObjects) {
  auto m = Model();
  ASSERT_TRUE(m);
  const std::string a = TempPath("s1.fits"), b = TempPath("s2.fits");
  ASSERT_TRUE(WriteDigsLibrary(*m, 1, 5, "builtin", a).ok());
  ASSERT_TRUE(WriteDigsLibrary(*m, 2, 5, "builtin", b).ok());
  auto la = ReadDigsLibrary(a), lb = ReadDigsLibrary(b);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_NE(la->theta, lb->theta);
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

TEST(DigsLibrary, RefusesFilesThatAreNotLibrariesNamingThem) {
  const std::string bad = TempPath("nolib.fits");
  {
    fitsfile* f = nullptr;
    int st = 0;
    std::filesystem::remove(bad);
    fits_create_file(&f, bad.c_str(), &st);
    fits_create_imgll(f, BYTE_IMG, 0, nullptr, &st);
    fits_close_file(f, &st);
    ASSERT_EQ(st, 0);
  }
  auto r = ReadDigsLibrary(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(bad), std::string::npos);
  EXPECT_NE(r.status().message().find("WAVE"), std::string::npos);
  auto missing = ReadDigsLibrary(TempPath("absent.fits"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot open"), std::string::npos);
  auto m = Model();
  ASSERT_TRUE(m);
  EXPECT_FALSE(WriteDigsLibrary(*m, 1, 0, "builtin", bad).ok());
  std::filesystem::remove(bad);
}
