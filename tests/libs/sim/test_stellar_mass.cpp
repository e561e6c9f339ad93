// Stellar mass from an inferred history: histories from age bins and percentiles, the dust fit
// and the model flux per unit mass (libs/sim stellar_mass.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/rng.hpp"
#include "cubeflow/sim/sfh.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/sim/stellar_mass.hpp"

using namespace cubeflow;
using namespace cubeflow::sim;

namespace {

std::shared_ptr<const ForwardModel> DustyModel() {
  SimConfig c;
  c.noise.enabled = false;
  auto r = ForwardModel::Build(BuiltinSsp(), c);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : nullptr;
}

/// The normalised, noisy spectrum of `binned` with `dust` (per-pixel S/N `snr`).
void Observed(const ForwardModel& m, const BinnedSfh& binned, const DustParams& dust, double snr, uint64_t seed,
              std::vector<double>* flux, std::vector<double>* var, double* norm) {
  Rendered r;
  m.Render(binned, dust, 0.019, &r);
  *norm = r.norm;
  Rng rng(seed, 0, 0);
  flux->resize(r.flux.size());
  var->assign(r.flux.size(), 1.0 / (snr * snr));
  for (size_t i = 0; i < r.flux.size(); ++i) (*flux)[i] = r.flux[i] / r.norm + rng.Normal() / snr;
}

}  // namespace

TEST(StellarMass, HistoryFromAgeBinsSpreadsEachBinOverItsSteps) {
  const TimeGrid g = MakeTimeGrid(6);
  std::vector<double> mf(kNumAgeBins, 0.0), zh(kNumAgeBins, -0.3);
  mf[3] = 0.25;
  mf[12] = 0.75;
  zh[12] = 0.1;
  auto h = HistoryFromAgeBins(g, mf.data(), zh.data(), 0.019, 100.0);
  ASSERT_TRUE(h.ok()) << h.status().message();
  std::vector<double> per_bin(kNumAgeBins, 0.0);
  double rate12 = -1;
  for (size_t j = 0; j < g.size(); ++j) {
    per_bin[g.bin[j]] += h->mass[j];
    if (g.bin[j] == 12) {
      const double rate = h->mass[j] / (g.Hi(j) - g.Lo(j));
      if (rate12 < 0) rate12 = rate;
      EXPECT_NEAR(rate, rate12, 1e-12 * rate12) << "constant rate within a bin";
      EXPECT_NEAR(h->z[j], 0.019 * std::pow(10.0, 0.1), 1e-12);
    }
  }
  EXPECT_NEAR(per_bin[3], 0.25, 1e-12);
  EXPECT_NEAR(per_bin[12], 0.75, 1e-12);
  std::vector<double> none(kNumAgeBins, 0.0);
  EXPECT_FALSE(HistoryFromAgeBins(g, none.data(), zh.data(), 0.019, 100.0).ok());
  // The oldest bin (10.6-17.8 Gyr) forms only after the Big Bang, at 13.5 Gyr look-back.
  std::vector<double> old_only(kNumAgeBins, 0.0);
  old_only[kNumAgeBins - 1] = 1.0;
  h = HistoryFromAgeBins(g, old_only.data(), zh.data(), 0.019, 13.5);
  ASSERT_TRUE(h.ok());
  const double start = AgeBinEdgesGyr()[kNumAgeBins - 1];
  for (size_t j = 0; j < g.size(); ++j) {
    const double expect = g.bin[j] == kNumAgeBins - 1
                              ? std::max(0.0, std::min(g.Hi(j), 13.5) - g.Lo(j)) / (13.5 - start) : 0.0;
    EXPECT_NEAR(h->mass[j], expect, 1e-12) << "step " << j << " [" << g.Lo(j) << ", " << g.Hi(j) << "] Gyr";
  }
}

TEST(StellarMass, HistoryFromPercentilesOfAConstantRateIsConstant) {
  const TimeGrid g = MakeTimeGrid(6);
  const double tu = 13.0;
  std::vector<double> t(9);
  for (int k = 0; k < 9; ++k) t[k] = tu * (k + 1) / 10.0;
  auto h = HistoryFromMassPercentiles(g, t.data(), t.size(), tu, -0.2, 0.019);
  ASSERT_TRUE(h.ok()) << h.status().message();
  for (size_t j = 0; j < g.size(); ++j) {
    const double lo = g.Lo(j), hi = std::min(g.Hi(j), tu);
    const double expect = lo < tu ? (hi - lo) / tu : 0.0;
    EXPECT_NEAR(h->mass[j], expect, 1e-9) << "step " << j;
  }
  // Everything but the first and last 10 % formed between 2 and 4 Gyr of cosmic time: at each
  // step edge, the mass formed before it follows the piecewise-linear curve through the times.
  for (int k = 0; k < 9; ++k) t[k] = 2.0 + 2.0 * k / 8.0;
  h = HistoryFromMassPercentiles(g, t.data(), t.size(), tu, 0.0, 0.019);
  ASSERT_TRUE(h.ok());
  auto curve = [&](double time) {
    if (time <= 2.0) return 0.1 * time / 2.0;
    if (time <= 4.0) return 0.1 + 0.8 * (time - 2.0) / 2.0;
    return std::min(1.0, 0.9 + 0.1 * (time - 4.0) / (tu - 4.0));
  };
  for (size_t e = 0; e < g.size(); ++e) {
    const double lookback = g.Lo(e);
    if (lookback >= tu) break;
    double older = 0;
    for (size_t j = e; j < g.size(); ++j) older += h->mass[j];
    EXPECT_NEAR(older, curve(tu - lookback), 1e-9) << "look-back " << lookback;
  }
}

TEST(StellarMass, RecoversDustAndFluxPerMassOfTheTrueHistory) {
  auto m = DustyModel();
  ASSERT_TRUE(m);
  Rng draw(11, 0, 0);
  for (int trial = 0; trial < 4; ++trial) {
    const Sfh sfh = DrawSfh(m->config().sfh, trial % 2 ? SfhKind::kSkewNormalBurst : SfhKind::kNonParametric, draw);
    const BinnedSfh binned = IntegrateSfh(sfh, m->time_grid());
    const DustParams dust{1.4, 0.15 + 0.25 * trial};
    std::vector<double> flux, var;
    double norm = 0;
    Observed(*m, binned, dust, 50, 100 + trial, &flux, &var, &norm);
    LightToMassOptions opt;
    opt.tau_bc = dust.tau_bc;
    auto fit = FitLightToMass(*m, binned, 0.019, flux.data(), var.data(), nullptr, flux.size(), opt);
    ASSERT_TRUE(fit.ok()) << fit.status().message();
    EXPECT_NEAR(fit->tau_ism, dust.tau_ism, std::max(0.02, 3 * fit->tau_ism_err)) << "trial " << trial;
    EXPECT_LT(fit->tau_ism_err, 0.05);
    EXPECT_GT(fit->tau_ism_err, 0.0);
    // the mass follows from the window flux: within 1 % of the true model's
    EXPECT_NEAR(fit->window_flux / norm, 1.0, 0.01) << "trial " << trial;
    EXPECT_NEAR(fit->chi2_reduced, 1.0, 0.15);
    EXPECT_LT(fit->dlog10_window_dtau, 0.0);
    EXPECT_GT(fit->living_fraction, 0.4);
    EXPECT_LE(fit->living_fraction, 1.0);
    // Without the fit (no dust assumed) the flux per mass would be off by the attenuation.
    Rendered clear;
    m->Render(binned, DustParams{0, 0}, 0.019, &clear);
    EXPECT_GT(std::abs(clear.norm / norm - 1.0), 0.1) << "the test needs dust that matters";
  }
}

TEST(StellarMass, RefusesSpectraOffTheModelGrid) {
  auto m = DustyModel();
  ASSERT_TRUE(m);
  Rng draw(3, 0, 0);
  const BinnedSfh binned = IntegrateSfh(DrawSfh(m->config().sfh, SfhKind::kNonParametric, draw), m->time_grid());
  std::vector<double> flux(100, 1.0), var(100, 0.01);
  auto fit = FitLightToMass(*m, binned, 0.019, flux.data(), var.data(), nullptr, flux.size());
  ASSERT_FALSE(fit.ok());
  EXPECT_NE(fit.status().message().find("model grid"), std::string::npos) << fit.status().message();
  std::vector<double> f2(m->wave().size(), 1.0), v2(m->wave().size(), 0.0);
  fit = FitLightToMass(*m, binned, 0.019, f2.data(), v2.data(), nullptr, f2.size());
  ASSERT_FALSE(fit.ok());
  EXPECT_NE(fit.status().message().find("usable pixels"), std::string::npos) << fit.status().message();
}
