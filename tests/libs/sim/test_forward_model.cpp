// Forward model: priors, dust, lines, single-SSP fidelity, photometry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>

#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/sfh.hpp"
#include "cubeflow/spectral/spectral_ops.hpp"
#include "test_data.hpp"

using namespace cubeflow;
using namespace cubeflow::sim;
using cubeflow::spectral::Resample;

namespace {

std::string DataDir() {
  if (const char* e = std::getenv("CUBEFLOW_DATA_DIR")) return e;
  return CUBEFLOW_TEST_DATA_DIR;
}

SimConfig QuietConfig() {
  SimConfig c;
  c.noise.enabled = false;
  c.dust.enabled = false;
  c.nebular.enabled = false;
  return c;
}

std::shared_ptr<const ForwardModel> Build(const SimConfig& c, std::shared_ptr<const SspGrid> ssp = nullptr) {
  auto r = ForwardModel::Build(ssp ? ssp : BuiltinSsp(), c);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : nullptr;
}

// All mass in time step j at metallicity Z.
BinnedSfh SingleStep(const TimeGrid& g, size_t j, double z) {
  BinnedSfh b;
  b.mass.assign(g.size(), 0.0);
  b.z.assign(g.size(), z);
  b.mass[j] = 1.0;
  return b;
}

double MeanIn(const std::vector<double>& w, const std::vector<float>& f, double a, double b) {
  double s = 0; int n = 0;
  for (size_t i = 0; i < w.size(); ++i) if (w[i] >= a && w[i] <= b) { s += f[i]; ++n; }
  return s / n;
}

}  // namespace

TEST(AgeBins, EdgesBracketPaperCentres) {
  const auto& c = AgeBinCentresGyr();
  const auto& e = AgeBinEdgesGyr();
  EXPECT_EQ(e.front(), 0.0);
  EXPECT_NEAR(e.back(), 17.8, 1e-9);
  for (int i = 0; i < kNumAgeBins; ++i) {
    EXPECT_LT(e[i], e[i + 1]);
    EXPECT_NEAR(0.5 * (e[i] + e[i + 1]), c[i], 1e-3) << "bin " << i;
    EXPECT_EQ(AgeBinOf(c[i]), i);
  }
  EXPECT_NEAR(CosmicTimeGyr(0.0), 13.47, 0.02);   // H0 = 70, Om = 0.3
  EXPECT_LT(CosmicTimeGyr(1.0), CosmicTimeGyr(0.0) / 2);
  const TimeGrid g = MakeTimeGrid(6);
  EXPECT_EQ(g.size(), 7u + 15u * 6u);
  bool has10 = false;
  for (double t : g.edges) has10 |= std::abs(t - 0.010) < 1e-12;
  EXPECT_TRUE(has10) << "10 Myr birth-cloud boundary must be a step edge";
}

TEST(SfhPrior, MassFractionsPercentilesAndMixture) {
  SfhPrior p;
  p.w_nonparametric = 1; p.w_skewnormal = 1; p.w_skewnormal_burst = 1;
  const TimeGrid g = MakeTimeGrid(6);
  int counts[3] = {0, 0, 0};
  const int n = 3000;
  for (int i = 0; i < n; ++i) {
    Rng rng(7, i);
    const SfhKind k = DrawSfhKind(p, rng);
    counts[static_cast<int>(k)]++;
    const Sfh s = DrawSfh(p, k, rng);
    const BinnedSfh b = IntegrateSfh(s, g);
    const SfhLabels l = ComputeLabels(s, g, b);
    double sum = 0;
    for (float v : l.mass_frac) { EXPECT_GE(v, 0.0f); sum += v; }
    ASSERT_NEAR(sum, 1.0, 1e-5) << "object " << i;
    for (int q = 1; q < kNumMassPercentiles; ++q) ASSERT_GE(l.t_mass[q], l.t_mass[q - 1] - 1e-5) << "object " << i;
    EXPECT_LE(l.t_mass[kNumMassPercentiles - 1], s.t_universe + 1e-6);
    for (float z : l.zh) {
      EXPECT_GE(z, std::log10(0.008 / 0.019) - 1e-4);
      EXPECT_LE(z, std::log10(0.030 / 0.019) + 1e-4);
    }
    // Z rises with cosmic time: the youngest populated bin is at least as rich as the oldest
    if (k == SfhKind::kNonParametric) {
      EXPECT_LE(l.t_mass[8], s.t_universe + 1e-6);
      EXPECT_GE(s.MetallicityAt(0.0), s.MetallicityAt(s.t_universe) - 1e-12);
    }
    if (k == SfhKind::kSkewNormalBurst) {
      // the burst puts >= 1 % of the mass below 1 Gyr
      double young = 0;
      for (int bin = 0; bin < kNumAgeBins; ++bin) if (AgeBinCentresGyr()[bin] < 1.0) young += l.mass_frac[bin];
      EXPECT_GT(young, 0.009);
    }
  }
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(counts[k] / double(n), 1.0 / 3, 0.04) << "kind " << k;
  // the paper's default proportions 150000 : 9000 : 6000
  SfhPrior d;
  int c2[3] = {0, 0, 0};
  for (int i = 0; i < 20000; ++i) { Rng rng(3, i); c2[static_cast<int>(DrawSfhKind(d, rng))]++; }
  EXPECT_NEAR(c2[0] / 20000.0, 150.0 / 165, 0.01);
  EXPECT_NEAR(c2[2] / 20000.0, 6.0 / 165, 0.006);
}

TEST(SfhPrior, NonParametricHitsQuartileTimes) {
  SfhPrior p;
  for (int i = 0; i < 200; ++i) {
    Rng rng(11, i);
    const Sfh s = DrawSfh(p, SfhKind::kNonParametric, rng);
    for (int q = 1; q <= 3; ++q) {
      const double lb = s.t_universe - s.knot_tau[q];
      EXPECT_NEAR(s.YoungFraction(lb), 1.0 - 0.25 * q, 1e-9);
    }
  }
}

TEST(ForwardModel, DustReddensSpectrumAndPhotometry) {
  SimConfig c = QuietConfig();
  c.dust.enabled = true;
  auto fm = Build(c);
  ASSERT_TRUE(fm);
  const BinnedSfh b = SingleStep(fm->time_grid(), 40, 0.019);
  Rendered r0, r1;
  fm->Render(b, DustParams{0.0, 0.0}, 0.019, &r0);
  fm->Render(b, DustParams{0.0, 1.0}, 0.019, &r1);
  const auto& w = fm->wave();
  const double blue0 = MeanIn(w, r0.flux, 4850, 4950), red0 = MeanIn(w, r0.flux, 6850, 6950);
  const double blue1 = MeanIn(w, r1.flux, 4850, 4950), red1 = MeanIn(w, r1.flux, 6850, 6950);
  EXPECT_LT(blue1 / red1, 0.95 * blue0 / red0);
  EXPECT_LT(red1, red0);
  // expected ratio from eq. 1 at the window centres
  const double expect = DustTransmission(4900, 1.0, 0.7) / DustTransmission(6900, 1.0, 0.7);
  EXPECT_NEAR((blue1 / red1) / (blue0 / red0), expect, 0.01);
  // photometry: F275W / F814W drops
  EXPECT_LT(r1.phot[0] / r1.phot[4], 0.5 * r0.phot[0] / r0.phot[4]);
  // birth-cloud dust acts only on young steps
  Rendered r2;
  fm->Render(b, DustParams{3.0, 0.0}, 0.019, &r2);
  EXPECT_NEAR(MeanIn(w, r2.flux, 4850, 4950), blue0, 1e-6 * blue0);
  const BinnedSfh y = SingleStep(fm->time_grid(), 2, 0.019);  // 4-6 Myr
  Rendered y0, y1;
  fm->Render(y, DustParams{0.0, 0.0}, 0.019, &y0);
  fm->Render(y, DustParams{3.0, 0.0}, 0.019, &y1);
  EXPECT_LT(MeanIn(w, y1.flux, 4850, 4950), 0.2 * MeanIn(w, y0.flux, 4850, 4950));
}

TEST(ForwardModel, NebularLinesFromYoungPopulationsScaleWithQh) {
  SimConfig c = QuietConfig();
  c.obs.sigma_kms = 50;  // narrow lines: a +-8 A window holds H-alpha but not [NII]
  c.nebular.enabled = true;
  auto fm = Build(c);
  SimConfig c_half = c;
  c_half.nebular.f_esc = 0.5;
  auto fm_half = Build(c_half);
  SimConfig c_off = QuietConfig();
  c_off.obs.sigma_kms = 50;
  auto fm_off = Build(c_off);
  ASSERT_TRUE(fm && fm_half && fm_off);
  const auto& w = fm->wave();
  auto line_flux = [&](const ForwardModel& m, const ForwardModel& off, const BinnedSfh& b, double lam) {
    Rendered r, r0;
    m.Render(b, DustParams{}, 0.019, &r);
    off.Render(b, DustParams{}, 0.019, &r0);
    double s = 0;
    for (size_t i = 0; i < w.size(); ++i) if (std::abs(w[i] - lam) < 8) s += (r.flux[i] - r0.flux[i]) * 1.25;
    return std::make_pair(s, r.q_h);
  };
  const BinnedSfh young = SingleStep(fm->time_grid(), 1, 0.019);  // 2-4 Myr
  const BinnedSfh old = SingleStep(fm->time_grid(), 60, 0.019);
  auto [ha_young, q_young] = line_flux(*fm, *fm_off, young, 6562.8);
  auto [ha_old, q_old] = line_flux(*fm, *fm_off, old, 6562.8);
  ASSERT_GT(q_young, 0);
  // H-alpha luminosity = 1.37e-12 Q_H erg/s, in L_sun per M_sun
  EXPECT_NEAR(ha_young, 1.37e-12 * q_young / 3.828e33, 0.03 * ha_young);
  EXPECT_LT(ha_old, 1e-3 * ha_young);
  auto [ha_half, q_half] = line_flux(*fm_half, *fm_off, young, 6562.8);
  EXPECT_NEAR(ha_half / ha_young, 0.5, 0.01);
  auto [hb_young, q2] = line_flux(*fm, *fm_off, young, 4861.33);
  EXPECT_NEAR(ha_young / hb_young, 2.86, 0.1);
  // metal-rich gas has stronger [NII]/Halpha
  const auto lo = NebularLineRatios(0.008, c.nebular), hi = NebularLineRatios(0.03, c.nebular);
  EXPECT_GT(hi[6], lo[6]);
  EXPECT_LT(hi[2], lo[2]);
  EXPECT_NEAR(lo[5], 1.0, 1e-12);
}

TEST(ForwardModel, SingleSspMatchesRebinnedTemplate) {
  std::shared_ptr<const SspGrid> ssp;
  SimConfig c = QuietConfig();
  const std::string miles = DataDir() + "/ssp/miles_padova_ppxf";
  if (cftest::HaveData(miles)) {
    auto r = LoadSspDirectory(miles);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ssp = *r;
    c.obs.bands = {"F438W", "F555W"};  // MILES covers 3540-7410 A only
  } else {
    ssp = BuiltinSsp();
  }
  c.obs.lsf = "none";
  c.obs.sigma_kms = 0;
  c.obs.ages_per_step = 1;
  auto fm = Build(c, ssp);
  ASSERT_TRUE(fm);
  const TimeGrid& g = fm->time_grid();
  for (size_t j : {size_t(50), size_t(80), g.size() - 3}) {
    for (size_t m : {size_t(0), ssp->n_metal() - 1}) {
      const double z = 0.019 * std::pow(10.0, ssp->metal[m]);
      Rendered r;
      fm->Render(SingleStep(g, j, z), DustParams{}, z, &r);
      std::vector<double> tmpl(ssp->n_wave());
      const double age = std::sqrt(g.Lo(j) * g.Hi(j));
      ssp->Interpolate(std::log10(age * 1e9), ssp->metal[m], tmpl.data());
      auto expect = Resample(ssp->wave, tmpl, c.obs.wave);
      double worst = 0;
      for (size_t i = 0; i < expect.flux.size(); ++i)
        worst = std::max(worst, std::abs(r.flux[i] / expect.flux[i] - 1.0));
      EXPECT_LT(worst, 1e-3) << "step " << j << " metal " << m << " ssp " << ssp->name;
    }
  }
}

TEST(ForwardModel, FlatSpectrumPhotometryEqualsConstant) {
  auto flat = std::make_shared<SspGrid>();
  flat->name = "flat";
  for (double l = 1000; l <= 12000; l += 2.0) flat->wave.push_back(l);
  flat->log_age = {6.0, 10.3};
  flat->metal = {-1.0, 0.3};
  flat->flux.assign(4 * flat->wave.size(), 2.5f);
  flat->fwhm = 2.5;
  SimConfig c = QuietConfig();
  auto fm = Build(c, flat);
  ASSERT_TRUE(fm);
  Rng rng(1, 1);
  const Sfh s = DrawSfh(c.sfh, SfhKind::kNonParametric, rng);
  SimulatedObject o;
  fm->SimulateFrom(s, DustParams{}, rng, &o);
  for (size_t b = 0; b < o.phot.size(); ++b) EXPECT_NEAR(o.phot[b], 1.0, 1e-5) << fm->bands()[b];
  for (float v : o.spectrum) ASSERT_NEAR(v, 1.0, 1e-5);
  Rendered r;
  fm->Render(IntegrateSfh(s, fm->time_grid()), DustParams{}, 0.02, &r);
  for (double p : r.phot) EXPECT_NEAR(p, 2.5, 1e-5);
  EXPECT_NEAR(fm->pivots()[3], 5308, 40);  // F555W
}

TEST(ForwardModel, NoiseMatchesRequestedSnr) {
  SimConfig c;
  c.noise.snr = {20};
  auto fm = Build(c);
  ASSERT_TRUE(fm);
  SimConfig cq = c;
  cq.noise.enabled = false;
  auto fq = Build(cq);
  double chi2 = 0; size_t n = 0;
  for (int i = 0; i < 20; ++i) {
    SimulatedObject a, b;
    fm->Simulate(5, i, &a);
    fq->Simulate(5, i, &b);
    EXPECT_EQ(a.snr, 20.0f);
    for (size_t k = 0; k < a.spectrum.size(); ++k) {
      const double d = (a.spectrum[k] - b.spectrum[k]) / a.spectrum_err[k];
      chi2 += d * d; ++n;
    }
    double lf = 0;
    for (float v : a.light_frac) lf += v;
    EXPECT_NEAR(lf, 1.0, 1e-5);
  }
  EXPECT_NEAR(chi2 / n, 1.0, 0.03);
}
