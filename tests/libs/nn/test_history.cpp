// The history vector of the diffusion prior (cubeflow/nn/history.hpp): its training set is the
// simulator's prior, row for row; the mass-assembly times of the 16-bin parametrisation against
// the simulator's labels; floors, normalisation and z-scoring.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "cubeflow/nn/history.hpp"
#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/sfh.hpp"

using namespace cubeflow;
using diffusion::History;
using diffusion::kHistoryDim;
using diffusion::kNumBins;

namespace {

sim::SimConfig Config() {
  sim::SimConfig c;
  c.noise.enabled = false;
  c.sfh.w_dense_basis = 150000;  // paper 004's GP-SFH component beside the paper's mixture
  return c;
}

}  // namespace

// Object i of the training set is the history of library row i (same config and seed).
TEST(DiffusionHistory, PriorDrawsAreTheLibraryRowsHistories) {
  const auto cfg = Config();
  auto fm = sim::ForwardModel::Build(sim::BuiltinSsp(), cfg);
  ASSERT_TRUE(fm.ok()) << fm.status().message();
  for (int64_t i = 0; i < 12; ++i) {
    sim::SimulatedObject obj;
    (*fm)->Simulate(99, i, &obj);
    const History x = diffusion::DrawPriorHistory(cfg.sfh, (*fm)->time_grid(), 99, i);
    const History y = diffusion::HistoryFromLabels(obj.labels.mass_frac.data(), obj.labels.zh.data());
    for (int k = 0; k < kHistoryDim; ++k) EXPECT_EQ(x[k], y[k]) << "object " << i << ", component " << k;
  }
  // ...and a different seed gives different histories.
  EXPECT_NE(diffusion::DrawPriorHistory(cfg.sfh, (*fm)->time_grid(), 100, 0)[kNumBins],
            diffusion::DrawPriorHistory(cfg.sfh, (*fm)->time_grid(), 99, 0)[kNumBins]);
}

TEST(DiffusionHistory, LabelsToVectorAndBack) {
  float m[kNumBins] = {}, z[kNumBins] = {};
  for (int b = 0; b < kNumBins; ++b) {
    m[b] = b < 4 ? 0.0f : static_cast<float>(b);  // empty young bins; unnormalised
    z[b] = -0.1f * b;
  }
  const History x = diffusion::HistoryFromLabels(m, z);
  double tot = 0;
  for (int b = 4; b < kNumBins; ++b) tot += b;
  for (int b = 0; b < kNumBins; ++b) {
    EXPECT_DOUBLE_EQ(x[b], b < 4 ? diffusion::kLogMassFloor : std::log10(b / tot)) << b;
    EXPECT_FLOAT_EQ(static_cast<float>(x[kNumBins + b]), z[b]) << b;
  }
  const auto f = diffusion::MassFractions(x);
  double s = 0;
  for (int b = 0; b < kNumBins; ++b) {
    s += f[b];
    if (b >= 4) EXPECT_NEAR(f[b], b / tot, 1e-7) << b;  // the floors take 4e-8 of the mass
  }
  EXPECT_NEAR(s, 1.0, 1e-12);
}

// Constant SFR inside each bin: all mass in one bin forms linearly across it.
TEST(DiffusionHistory, AssemblyTimesOfOneBin) {
  std::array<double, kNumBins> m{};
  m[10] = 3.0;  // any scale
  const auto& e = sim::AgeBinEdgesGyr();
  const auto t = diffusion::AssemblyTimes(m, 13.47);
  for (int k = 0; k < sim::kNumMassPercentiles; ++k)
    EXPECT_NEAR(t[k], 13.47 - (e[11] - 0.1 * (k + 1) * (e[11] - e[10])), 1e-12) << k;
}

// The oldest bin (10.6-17.8 Gyr) forms its stars between its young edge and the Big Bang.
TEST(DiffusionHistory, OldestBinStartsAtTheBigBang) {
  const double t_u = 13.47;
  const auto& e = sim::AgeBinEdgesGyr();
  std::array<double, kNumBins> m{};
  m[kNumBins - 1] = 1.0;
  const auto t = diffusion::AssemblyTimes(m, t_u);
  for (int k = 0; k < sim::kNumMassPercentiles; ++k)
    EXPECT_NEAR(t[k], 0.1 * (k + 1) * (t_u - e[kNumBins - 1]), 1e-12) << k;
  const sim::TimeGrid grid = sim::MakeTimeGrid(6);
  const auto w = diffusion::BinToStepWeights(grid, t_u);
  for (int b = 0; b < kNumBins; ++b) {
    double s = 0, before_big_bang = 0;
    for (size_t j = 0; j < grid.size(); ++j) {
      const double v = w[b * grid.size() + j];
      if (v != 0) EXPECT_EQ(grid.bin[j], b);
      s += v;
      if (grid.Lo(j) >= t_u) before_big_bang += v;
    }
    EXPECT_NEAR(s, 1.0, 1e-12) << b;
    EXPECT_EQ(before_big_bang, 0.0) << b;
  }
}

// Against the simulator's labels T_MASS (exact, from the continuous history), on prior draws of
// every kind: the 16-bin times fall in the same age bin, so they differ by less than its width.
// How much skill the parametrisation keeps (R^2 against the spread of the labels) is printed, not
// bounded: issue #19 sets no bound, and it is what the old bins (2-7 Gyr wide) allow any 16-bin
// method (docs/diffusion.md).
TEST(DiffusionHistory, AssemblyTimesFollowTheSimulatorsLabels) {
  const auto cfg = Config();
  const sim::TimeGrid grid = sim::MakeTimeGrid(cfg.obs.substeps_per_bin);
  const double t_u = sim::CosmicTimeGyr(0.0, cfg.sfh.cosmology);
  const auto& e = sim::AgeBinEdgesGyr();
  const int n = 500;
  std::vector<double> err[sim::kNumMassPercentiles], truth[sim::kNumMassPercentiles];
  int big_by_kind[4] = {};  // differences > 2 Gyr, by kind of history
  for (int i = 0; i < n; ++i) {
    sim::Rng rng(7, static_cast<uint64_t>(i), 0);
    const sim::Sfh sfh = sim::DrawSfh(cfg.sfh, sim::DrawSfhKind(cfg.sfh, rng), rng);
    const sim::BinnedSfh binned = sim::IntegrateSfh(sfh, grid);
    const sim::SfhLabels l = sim::ComputeLabels(sfh, grid, binned);
    std::array<double, kNumBins> m{};
    for (int b = 0; b < kNumBins; ++b) m[b] = l.mass_frac[b];
    const auto t = diffusion::AssemblyTimes(m, t_u);
    for (int k = 0; k < sim::kNumMassPercentiles; ++k) {
      const int bin = sim::AgeBinOf(t_u - l.t_mass[k]);
      const double width = e[bin + 1] - e[bin];
      ASSERT_LE(std::abs(t[k] - l.t_mass[k]), width + 1e-4)
          << "object " << i << ", t" << 10 * (k + 1) << ": bins " << t[k] << ", label " << l.t_mass[k];
      if (std::abs(t[k] - l.t_mass[k]) > 2.0) ++big_by_kind[static_cast<int>(sfh.kind)];
      err[k].push_back(t[k] - l.t_mass[k]);
      truth[k].push_back(l.t_mass[k]);
    }
  }
  for (int k = 0; k < sim::kNumMassPercentiles; ++k) {
    double mean = 0, sst = 0, sse = 0;
    for (double v : truth[k]) mean += v / n;
    for (int i = 0; i < n; ++i) {
      sst += (truth[k][i] - mean) * (truth[k][i] - mean);
      sse += err[k][i] * err[k][i];
    }
    std::vector<double> a(err[k].size());
    std::transform(err[k].begin(), err[k].end(), a.begin(), [](double v) { return std::abs(v); });
    std::sort(a.begin(), a.end());
    const double r2 = 1.0 - sse / sst;
    std::printf("[ measured ] t%d from 16 bins vs the label: median |difference| %.3f Gyr, max %.3f Gyr, R^2 %.4f\n",
                10 * (k + 1), a[a.size() / 2], a.back(), r2);
  }
  std::printf("[ measured ] differences > 2 Gyr among %d times: PCHIP %d, skew-normal %d, with burst %d, Dense Basis %d\n",
              n * sim::kNumMassPercentiles, big_by_kind[0], big_by_kind[1], big_by_kind[2], big_by_kind[3]);
}

TEST(DiffusionHistory, ScalerStandardisesAndRestores) {
  const auto cfg = Config();
  const sim::TimeGrid grid = sim::MakeTimeGrid(cfg.obs.substeps_per_bin);
  std::vector<History> rows;
  for (int64_t i = 0; i < 300; ++i) rows.push_back(diffusion::DrawPriorHistory(cfg.sfh, grid, 5, i));
  auto s = diffusion::HistoryScaler::Fit(rows);
  ASSERT_TRUE(s.ok());
  History mean{}, var{};
  for (const auto& r : rows) {
    const History z = s->Standardise(r);
    const History back = s->Restore(z);
    for (int k = 0; k < kHistoryDim; ++k) {
      mean[k] += z[k] / rows.size();
      var[k] += z[k] * z[k] / rows.size();
      EXPECT_NEAR(back[k], r[k], 1e-9);
    }
  }
  for (int k = 0; k < kHistoryDim; ++k) {
    EXPECT_NEAR(mean[k], 0.0, 1e-9) << k;
    EXPECT_NEAR(var[k], 1.0, 1e-9) << k;
    EXPECT_GT(s->sd[k], 1e-3) << k << ": the prior does not vary this component";
  }
  auto empty = diffusion::HistoryScaler::Fit({});
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no histories"), std::string::npos);
}

// Scaling the log10 masses by their non-empty values: those get mean 0 and sd 1 (the atom of empty
// bins at the floor no longer sets the scale), [Z/H] is scaled as before, and a component with
// fewer than two non-empty values keeps its moments over all rows.
TEST(DiffusionHistory, ScalerCanIgnoreTheEmptyBinsOfTheLogMasses) {
  const auto cfg = Config();
  const sim::TimeGrid grid = sim::MakeTimeGrid(cfg.obs.substeps_per_bin);
  std::vector<History> rows;
  for (int64_t i = 0; i < 2000; ++i) rows.push_back(diffusion::DrawPriorHistory(cfg.sfh, grid, 5, i));
  for (auto& r : rows) r[7] = diffusion::kLogMassFloor;  // bin 7 always empty
  rows[3][7] = -2.0;                                     // but for one row
  const double empty = diffusion::kLogMassFloor + 0.5;
  auto all = diffusion::HistoryScaler::Fit(rows);
  auto ne = diffusion::HistoryScaler::Fit(rows, empty);
  ASSERT_TRUE(all.ok() && ne.ok());
  int with_empty_bins = 0;
  for (int k = 0; k < kHistoryDim; ++k) {
    double n = 0, mean = 0, var = 0;
    for (const auto& r : rows)
      if (k >= kNumBins || r[k] > empty) n += 1, mean += ne->Standardise(r)[k];
    mean /= n;
    for (const auto& r : rows)
      if (k >= kNumBins || r[k] > empty) var += std::pow(ne->Standardise(r)[k] - mean, 2) / n;
    if (k == 7) {
      EXPECT_EQ(ne->mean[k], all->mean[k]);
      EXPECT_EQ(ne->sd[k], all->sd[k]);
      continue;
    }
    EXPECT_NEAR(mean, 0.0, 1e-9) << k;
    EXPECT_NEAR(var, 1.0, 1e-9) << k;
    if (k >= kNumBins) {
      EXPECT_EQ(ne->sd[k], all->sd[k]) << k;
    } else if (n < 0.97 * rows.size()) {  // empty in > 3 % of the histories
      ++with_empty_bins;
      EXPECT_LT(ne->sd[k], 0.75 * all->sd[k]) << k << ": the empty bins should have dominated the sd over all rows";
    }
  }
  std::vector<double> sd_all, sd_ne;
  for (int k = 0; k < kNumBins; ++k)
    if (k != 7) sd_all.push_back(all->sd[k]), sd_ne.push_back(ne->sd[k]);
  std::sort(sd_all.begin(), sd_all.end());
  std::sort(sd_ne.begin(), sd_ne.end());
  std::printf("[ measured ] median sd of the log10 masses over the bins: %.2f dex over all rows, %.2f over the non-empty "
              "values\n", sd_all[sd_all.size() / 2], sd_ne[sd_ne.size() / 2]);
  EXPECT_GE(with_empty_bins, 8) << "the prior should leave most bins empty in some histories";
}

// The prior check of item 1 on known cases: two independent draws of the prior pass; a sampler
// with the right per-component mean and spread (Gaussian) fails; a sampler with exactly the right
// marginals but the joint destroyed (every component shuffled on its own) fails too, through the
// assembly times and the metallicity-history shapes.
TEST(DiffusionHistory, PriorComparisonPassesThePriorAndFailsWrongJoints) {
  const auto cfg = Config();
  const sim::TimeGrid grid = sim::MakeTimeGrid(cfg.obs.substeps_per_bin);
  const double t_u = sim::CosmicTimeGyr(0.0, cfg.sfh.cosmology);
  const int n = 1500;
  std::vector<History> a, b;
  for (int64_t i = 0; i < n; ++i) {
    a.push_back(diffusion::DrawPriorHistory(cfg.sfh, grid, 11, i));
    b.push_back(diffusion::DrawPriorHistory(cfg.sfh, grid, 12, i));
  }
  auto same = diffusion::ComparePriorSamples(a, b, t_u);
  ASSERT_TRUE(same.ok()) << same.status().message();
  std::printf("[ measured ] prior vs prior (2 x %d): max KS %.4f, critical %.4f\n", n, same->max_ks, same->critical);
  EXPECT_TRUE(same->pass());

  auto scaler = diffusion::HistoryScaler::Fit(a);
  ASSERT_TRUE(scaler.ok());
  sim::Rng rng(13, 0, 0);
  std::vector<History> gauss(n), shuffled = b;
  for (auto& g : gauss) {
    History z;
    for (double& v : z) v = rng.Normal();
    g = scaler->Restore(z);
  }
  for (int k = 0; k < kHistoryDim; ++k)
    for (int i = n - 1; i > 0; --i) std::swap(shuffled[i][k], shuffled[static_cast<int>(rng.Uniform() * (i + 1))][k]);
  auto g = diffusion::ComparePriorSamples(a, gauss, t_u);
  auto s = diffusion::ComparePriorSamples(b, shuffled, t_u);
  ASSERT_TRUE(g.ok() && s.ok());
  const double s_marg = *std::max_element(s->ks_component.begin(), s->ks_component.end());
  const double s_asm = *std::max_element(s->ks_assembly.begin(), s->ks_assembly.end());
  std::printf("[ measured ] Gaussian with the prior's mean and sd: max KS %.4f; shuffled components: marginals %.4f, "
              "assembly times %.4f, mass-weighted [Z/H] %.4f, enrichment %.4f (critical %.4f)\n",
              g->max_ks, s_marg, s_asm, s->ks_mw_zh, s->ks_enrichment, s->critical);
  EXPECT_FALSE(g->pass());
  EXPECT_FALSE(s->pass());
  EXPECT_EQ(s_marg, 0.0);  // the same values in each column
  EXPECT_FALSE(diffusion::ComparePriorSamples(a, {a[0]}, t_u).ok());
}

TEST(DiffusionHistory, KsStatisticOfKnownSamples) {
  EXPECT_DOUBLE_EQ(diffusion::KsStatistic({1, 2, 3, 4}, {1, 2, 3, 4}), 0.0);
  EXPECT_DOUBLE_EQ(diffusion::KsStatistic({1, 2}, {3, 4}), 1.0);
  EXPECT_DOUBLE_EQ(diffusion::KsStatistic({1, 2, 3, 4}, {3, 4, 5, 6}), 0.5);
  EXPECT_DOUBLE_EQ(diffusion::KsStatistic({1, 1, 1, 2}, {1, 2, 2, 2}), 0.5);  // ties
}
