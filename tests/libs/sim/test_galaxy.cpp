// Mock galaxy: cube consistent with truth, files readable by astropy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "cubeflow/fits/image_io.hpp"
#include "cubeflow/sim/galaxy.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "test_data.hpp"

using namespace cubeflow;
using namespace cubeflow::sim;

TEST(MockGalaxy, NoiseFreeCubeMatchesTruthAndAstropyReadsIt) {
  GalaxyConfig g;
  g.nx = 14; g.ny = 12; g.nwave = 800; g.noise = false; g.nan_spaxels = 2;
  auto m = MockGalaxy::Build(g);
  ASSERT_TRUE(m.ok()) << m.status().message();
  const auto dir = std::filesystem::temp_directory_path() / ("cubeflow_gal_" + std::to_string(::getpid()));
  ASSERT_TRUE((*m)->Write(dir.string(), 2).ok());
  // truth of a central spaxel
  const SpaxelTruth t = (*m)->Truth(7, 6);
  ASSERT_TRUE(t.valid);
  EXPECT_GE(t.sigma_kms, 30); EXPECT_LE(t.sigma_kms, 200);
  double s = 0;
  for (float v : t.labels.mass_frac) s += v;
  EXPECT_NEAR(s, 1.0, 1e-5);
  std::vector<float> flux;
  std::vector<double> phot;
  (*m)->RenderSpaxel(7, 6, &flux, &phot);
  {
    std::ofstream o(dir / "spaxel.txt");
    o.precision(9);
    for (float v : flux) o << v << "\n";
  }
  std::ofstream(dir / "check.py") << R"(import sys, numpy as np
from astropy.io import fits
from astropy.wcs import WCS
d = sys.argv[1]
c = fits.open(d + '/cube.fits')
data = c['DATA'].data
assert data.shape == (800, 12, 14), data.shape
assert c['STAT'].data.shape == data.shape
ref = np.loadtxt(d + '/spaxel.txt')
assert np.allclose(data[:, 6, 7], ref, rtol=1e-5, atol=0), np.nanmax(np.abs(data[:, 6, 7] / ref - 1))
assert np.isnan(data[:, 0, 0]).all()           # ragged edge
assert np.isfinite(data[:, 6, 7]).all()
w = WCS(c['DATA'].header)
assert w.naxis == 3 and c['DATA'].header['CTYPE3'] == 'AWAV'
ra, dec = w.celestial.wcs_pix2world([[6.5, 5.5]], 0)[0]
assert abs(ra - 170.062611) < 1e-6 and abs(dec - 12.991528) < 1e-6, (ra, dec)
t = fits.open(d + '/truth.fits')
sfh = t['SFH'].data
assert sfh.shape == (16, 12, 14)
ok = np.isfinite(sfh[0])
assert np.allclose(sfh[:, ok].sum(0), 1, atol=1e-5)
mw = t['MW_LOGAGE'].data
assert np.nanmin(mw) > 8 and np.nanmax(mw) < 10.3
k = fits.open(d + '/kinematics.fits')
v = k['V_STARS'].data; sg = k['SIGMA_STARS'].data
assert np.nanmax(sg) <= 200 and np.nanmin(sg) >= 30
assert np.nanmax(v) > 50 and np.nanmin(v) < -50    # rotation
h = fits.open(d + '/hst_F555W.fits')[0]
assert h.data.shape == (60, 70), h.data.shape
assert h.header['PHOTFLAM'] > 0 and 5000 < h.header['PHOTPLAM'] < 5600
print('OK')
)";
  if (std::system("/usr/bin/python3 -c 'import astropy' > /dev/null 2>&1") != 0) CUBEFLOW_SKIP_WITHOUT("astropy") << "no astropy";
  const std::string cmd = "/usr/bin/python3 " + (dir / "check.py").string() + " " + dir.string() + " > " +
                          (dir / "py.out").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(dir / "py.out");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << text;
}

// The truth library: one row per valid spaxel, rendered as a training library would render it,
// with the spaxel's own labels; and the two ways of making histories behave as documented.
TEST(MockGalaxy, TruthLibraryRowsAreTheSpaxelsRenderedLikeALibrary) {
  SimConfig lc;
  lc.noise.enabled = false;
  lc.obs.wave = WavelengthAxis::Linear(4800, 2.5, 300);  // small grid: fast
  auto fm = ForwardModel::Build(BuiltinSsp(), lc);
  ASSERT_TRUE(fm.ok()) << fm.status().message();
  for (const std::string histories : {"prior", "components"}) {
    SCOPED_TRACE(histories);
    GalaxyConfig g;
    g.layout = "classic";
    g.nx = 16; g.ny = 14; g.nwave = 640; g.nan_spaxels = 3; g.histories = histories;
    auto m = MockGalaxy::Build(g);
    ASSERT_TRUE(m.ok()) << m.status().message();
    const auto path = std::filesystem::temp_directory_path() /
                      ("cubeflow_truthlib_" + histories + std::to_string(::getpid()) + ".fits");
    ASSERT_TRUE((*m)->WriteTruthLibrary(path.string(), **fm, 5, 2).ok());
    auto lib = ReadLibrary(path.string());
    ASSERT_TRUE(lib.ok()) << lib.status().message();
    std::vector<std::pair<int, int>> valid;
    for (int y = 0; y < g.ny; ++y)
      for (int x = 0; x < g.nx; ++x)
        if ((*m)->Truth(x, y).valid) valid.emplace_back(x, y);
    ASSERT_EQ(lib->n, static_cast<int64_t>(valid.size()));
    ASSERT_EQ(lib->wave.n, 300);
    double centre_age = 0, edge_age = 0;
    for (size_t k = 0; k < valid.size(); ++k) {
      const SpaxelTruth t = (*m)->Truth(valid[k].first, valid[k].second);
      double mw = 0;
      for (int b = 0; b < kNumAgeBins; ++b) {
        ASSERT_FLOAT_EQ(lib->mass_frac[k * kNumAgeBins + b], t.labels.mass_frac[b]);
        ASSERT_FLOAT_EQ(lib->zh[k * kNumAgeBins + b], t.labels.zh[b]);
        mw += t.labels.mass_frac[b] * std::log10(AgeBinCentresGyr()[b]);
      }
      ASSERT_FLOAT_EQ(lib->tau_ism[k], static_cast<float>(t.dust.tau_ism));
      // the row is the forward model's rendering of this history and dust, normalised
      Rendered r;
      (*fm)->Render(t.binned, t.dust, t.z_gas, &r);
      for (int i = 0; i < 300; i += 37)
        ASSERT_NEAR(lib->spectra[k * 300 + i], r.flux[i] / r.norm, 1e-5 * std::abs(r.flux[i] / r.norm) + 1e-7);
      const double rad = std::hypot(valid[k].first - 7.5, valid[k].second - 6.5);
      if (rad < 1.5) centre_age = std::max(centre_age, mw);
      if (rad > 5.5) edge_age = std::max(edge_age, mw);  // the oldest edge spaxel
    }
    // old centre, younger disc in both kinds of history
    EXPECT_GT(centre_age, edge_age + 0.05);
    std::filesystem::remove(path);
  }
  GalaxyConfig bad;
  bad.histories = "spiral";
  auto b = MockGalaxy::Build(bad);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("histories"), std::string::npos);
}

namespace {

/// Central 90 % range (5th to 95th percentile) of the finite values of a truth map.
double Span90(const std::string& truth, const std::string& ext) {
  auto m = fits::ReadMap(truth, ext);
  EXPECT_TRUE(m.ok()) << m.status().message();
  if (!m.ok()) return 0;
  std::vector<double> v;
  for (double x : (*m)->data)
    if (std::isfinite(x)) v.push_back(x);
  std::sort(v.begin(), v.end());
  if (v.size() < 20) return 0;
  return v[v.size() * 95 / 100] - v[v.size() * 5 / 100];
}

}  // namespace

// Issue #15: the default ("spiral") mock is informative. Across the spaxels of a 40x40 galaxy,
// for every seed tried, the central 90 % of the light-weighted log ages spans >= 1 dex, of the
// mass-weighted log ages >= 0.5 dex and of [Z/H] (light- and mass-weighted) >= 0.5 dex, so a
// constant map is far from the truth; every galaxy has a bulge, arms, H II regions and an outer
// disc; different seeds give different galaxies.
TEST(MockGalaxy, SpiralLayoutSpansAgesAndMetallicitiesAndChangesWithTheSeed) {
  const auto dir = std::filesystem::temp_directory_path() / ("cubeflow_spiral_" + std::to_string(::getpid()));
  std::set<int> regions_seen;
  std::vector<std::vector<std::string>> described;
  std::vector<std::vector<double>> mw_maps;
  for (uint64_t seed : {1, 2, 3, 4}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    GalaxyConfig g;
    g.nx = g.ny = 40;
    g.wave_start = 5250;  // 5250-5550 A (the normalisation window and a margin): the truth maps do not
    g.nwave = 240;        // depend on the cube's grid
    g.noise = false;
    g.seed = seed;
    auto m = MockGalaxy::Build(g);
    ASSERT_TRUE(m.ok()) << m.status().message();
    const std::string out = (dir / std::to_string(seed)).string();
    ASSERT_TRUE((*m)->Write(out, 2).ok());
    const std::string truth = out + "/truth.fits";
    const double lw = Span90(truth, "LW_LOGAGE"), mws = Span90(truth, "MW_LOGAGE");
    const double lwz = Span90(truth, "LW_ZH"), mwz = Span90(truth, "MW_ZH");
    std::printf("seed %llu: central 90 %% of the spaxels spans LW log age %.2f, MW log age %.2f, LW [Z/H] %.2f, "
                "MW [Z/H] %.2f dex\n", static_cast<unsigned long long>(seed), lw, mws, lwz, mwz);
    EXPECT_GE(lw, 1.0);
    EXPECT_GE(mws, 0.5);
    EXPECT_GE(lwz, 0.5);
    EXPECT_GE(mwz, 0.5);
    auto region = fits::ReadMap(truth, "REGION");
    ASSERT_TRUE(region.ok()) << region.status().message();
    std::set<int> here;
    for (double r : (*region)->data)
      if (std::isfinite(r)) here.insert(static_cast<int>(r));
    for (int r : {kRegionBulge, kRegionArm, kRegionHii, kRegionOuterDisc}) EXPECT_TRUE(here.count(r)) << "region " << r;
    regions_seen.insert(here.begin(), here.end());
    described.push_back((*m)->Describe());
    auto mw = fits::ReadMap(truth, "MW_LOGAGE");
    ASSERT_TRUE(mw.ok());
    mw_maps.push_back((*mw)->data);
  }
  // a post-starburst or quenched patch, and a bar, in some of them
  EXPECT_TRUE(regions_seen.count(kRegionPostStarburst) || regions_seen.count(kRegionQuenched));
  EXPECT_TRUE(regions_seen.count(kRegionBar));
  // different seeds, different galaxies: drawn parameters and truth maps
  for (size_t a = 0; a < described.size(); ++a)
    for (size_t b = a + 1; b < described.size(); ++b) {
      EXPECT_NE(described[a], described[b]);
      double d = 0;
      int64_t n = 0;
      for (size_t i = 0; i < mw_maps[a].size(); ++i)
        if (std::isfinite(mw_maps[a][i]) && std::isfinite(mw_maps[b][i])) {
          d += std::abs(mw_maps[a][i] - mw_maps[b][i]);
          ++n;
        }
      EXPECT_GT(d / std::max<int64_t>(n, 1), 0.05) << "seeds " << a + 1 << " and " << b + 1;
    }
  // the same seed, the same galaxy
  GalaxyConfig g;
  g.nx = g.ny = 40;
  g.seed = 1;
  auto again = MockGalaxy::Build(g);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->Describe(), described[0]);
  const SpaxelTruth t1 = (*again)->Truth(12, 25);
  auto once_more = MockGalaxy::Build(g);
  ASSERT_TRUE(once_more.ok());
  const SpaxelTruth t2 = (*once_more)->Truth(12, 25);
  EXPECT_EQ(t1.labels.mass_frac, t2.labels.mass_frac);
  EXPECT_EQ(t1.labels.zh, t2.labels.zh);
  std::filesystem::remove_all(dir);
}

// Spaxel truths of the spiral layout are consistent: mass fractions sum to 1, the percentiles
// increase, metallicities stay inside the SSP grid, H II regions are young and the bulge old.
TEST(MockGalaxy, SpiralRegionsHaveTheirHistories) {
  GalaxyConfig g;
  g.nx = g.ny = 40;
  g.seed = 6;
  auto m = MockGalaxy::Build(g);
  ASSERT_TRUE(m.ok()) << m.status().message();
  const auto& cen = AgeBinCentresGyr();
  std::map<int, std::vector<double>> mw_age;  // by region
  for (int y = 0; y < g.ny; ++y)
    for (int x = 0; x < g.nx; ++x) {
      const SpaxelTruth t = (*m)->Truth(x, y);
      if (!t.valid) continue;
      double s = 0, a = 0;
      for (int b = 0; b < kNumAgeBins; ++b) {
        s += t.labels.mass_frac[b];
        a += t.labels.mass_frac[b] * std::log10(cen[b] * 1e9);
        ASSERT_GE(t.labels.zh[b], -1.5 - 1e-5);
        ASSERT_LE(t.labels.zh[b], 0.4 + 1e-5);
      }
      ASSERT_NEAR(s, 1.0, 1e-5);
      for (int k = 1; k < kNumMassPercentiles; ++k) ASSERT_GE(t.labels.t_mass[k], t.labels.t_mass[k - 1]);
      ASSERT_GE(t.sigma_kms, 30);
      ASSERT_LE(t.sigma_kms, 200);
      ASSERT_GT(t.mass, 0);
      mw_age[t.region].push_back(a);
    }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? NAN : v[v.size() / 2];
  };
  ASSERT_TRUE(mw_age.count(kRegionBulge) && mw_age.count(kRegionOuterDisc) && mw_age.count(kRegionHii));
  EXPECT_GT(median(mw_age[kRegionBulge]), 9.9);
  EXPECT_LT(median(mw_age[kRegionOuterDisc]), median(mw_age[kRegionBulge]) - 0.4);
  EXPECT_LT(median(mw_age[kRegionHii]), median(mw_age[kRegionBulge]));
  // the classic layout's options are refused by the spiral layout, with the fix named
  g.histories = "components";
  auto b = MockGalaxy::Build(g);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("layout classic"), std::string::npos) << b.status().message();
  g.histories = "";
  g.layout = "elliptical";
  b = MockGalaxy::Build(g);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("'spiral' or 'classic'"), std::string::npos) << b.status().message();
}
