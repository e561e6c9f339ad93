// The ensemble sampler against posteriors whose moments are known.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "cubeflow/sampling/ensemble.hpp"

using namespace cubeflow::sampling;

namespace {

// A correlated 3-d Gaussian: scales 0.1, 1, 5 and correlations 0.8, 0.2, -0.3.
struct Gaussian3 {
  double mean[3] = {1.0, -2.0, 0.5};
  double sd[3] = {0.1, 1.0, 5.0};
  double corr[3][3] = {{1, 0.8, 0.2}, {0.8, 1, -0.3}, {0.2, -0.3, 1}};
  double prec[3][3];
  Gaussian3() {
    double c[3][3];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) c[i][j] = corr[i][j] * sd[i] * sd[j];
    const double det = c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1]) -
                       c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0]) +
                       c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        const int i1 = (j + 1) % 3, i2 = (j + 2) % 3, j1 = (i + 1) % 3, j2 = (i + 2) % 3;
        prec[i][j] = (c[i1][j1] * c[i2][j2] - c[i1][j2] * c[i2][j1]) / det;  // adjugate / det
      }
  }
  double operator()(std::span<const double> x) const {
    double q = 0;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) q += (x[i] - mean[i]) * prec[i][j] * (x[j] - mean[j]);
    return -0.5 * q;
  }
};

// Walkers drawn from a broad "prior" N(0, 10^2) in each coordinate, far from the posterior.
std::vector<std::vector<double>> BroadStart(int n, int dim, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd(0.0, 10.0);
  std::vector<std::vector<double>> w(n, std::vector<double>(dim));
  for (auto& v : w)
    for (auto& x : v) x = nd(gen);
  return w;
}

}  // namespace

// A sampler that returns its starting ("prior") draws, or does not move, fails every check here:
// their means are ~0 (not 1, -2, 0.5 within 0.1 sd) and their variances ~100.
TEST(EnsembleSampler, RecoversMeanAndCovarianceOfACorrelatedGaussian) {
  for (double de : {0.0, 0.5}) {
  SCOPED_TRACE("de_fraction " + std::to_string(de));
  const Gaussian3 g;
  EnsembleOptions o;
  o.de_fraction = de;
  o.n_walkers = 32;
  o.n_burn = 1000;
  o.n_steps = 4000;
  o.seed = 3;
  auto r = RunEnsemble(std::cref(g), BroadStart(o.n_walkers, 3, 1), o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto m = r->Mean();
  const auto c = r->Covariance();
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(m[i], g.mean[i], 0.1 * g.sd[i]) << "mean " << i;
    EXPECT_NEAR(std::sqrt(c[i * 3 + i]) / g.sd[i], 1.0, 0.05) << "sd " << i;
    for (int j = 0; j < i; ++j)
      EXPECT_NEAR(c[i * 3 + j] / std::sqrt(c[i * 3 + i] * c[j * 3 + j]), g.corr[i][j], 0.05) << i << "," << j;
    // 16/84 % quantiles of a Gaussian: mean -/+ 1 sd.
    EXPECT_NEAR(r->Quantile(i, 0.8413), g.mean[i] + g.sd[i], 0.1 * g.sd[i]);
    EXPECT_NEAR(r->Quantile(i, 0.1587), g.mean[i] - g.sd[i], 0.1 * g.sd[i]);
    const double tau = r->AutocorrTime(i);
    EXPECT_GT(tau, 1.0);
    EXPECT_LT(tau, o.n_steps / 50.0) << "chain too short for its autocorrelation time";
  }
  // The stretch move with a = 2 accepts 20-50 % of moves on a 3-d Gaussian (DE moves ~30 %).
  EXPECT_GT(r->acceptance, 0.2);
  EXPECT_LT(r->acceptance, 0.7);
  }
}

TEST(EnsembleSampler, UniformOnABoxWithHardEdges) {
  auto box = [](std::span<const double> x) {
    return (x[0] >= 0 && x[0] <= 1 && x[1] >= 0 && x[1] <= 2) ? 0.0 : -std::numeric_limits<double>::infinity();
  };
  std::mt19937_64 gen(5);
  std::uniform_real_distribution<double> u(0.4, 0.6);
  std::vector<std::vector<double>> init(16, std::vector<double>(2));
  for (auto& v : init) v = {u(gen), 2 * u(gen)};  // a small cluster in the middle
  EnsembleOptions o;
  o.n_walkers = 16;
  o.n_burn = 500;
  o.n_steps = 4000;
  auto r = RunEnsemble(box, init, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto m = r->Mean();
  const auto c = r->Covariance();
  EXPECT_NEAR(m[0], 0.5, 0.03);
  EXPECT_NEAR(m[1], 1.0, 0.06);
  EXPECT_NEAR(c[0] / (1.0 / 12), 1.0, 0.1);   // var of U(0, 1)
  EXPECT_NEAR(c[3] / (4.0 / 12), 1.0, 0.1);   // var of U(0, 2)
  for (size_t i = 0; i < r->size(); ++i) {
    ASSERT_GE(r->samples[i * 2], 0.0);
    ASSERT_LE(r->samples[i * 2 + 1], 2.0);
  }
}

TEST(EnsembleSampler, DeterministicInSeedWithOrWithoutThreads) {
  const Gaussian3 g;
  EnsembleOptions o;
  o.n_walkers = 8;
  o.n_burn = 10;
  o.n_steps = 100;
  o.seed = 42;
  const auto init = BroadStart(8, 3, 2);
  auto a = RunEnsemble(std::cref(g), init, o);
  o.parallel = false;
  auto b = RunEnsemble(std::cref(g), init, o);
  o.seed = 43;
  auto c = RunEnsemble(std::cref(g), init, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->samples, b->samples);
  EXPECT_NE(a->samples, c->samples);
}

TEST(EnsembleSampler, RejectsBadStarts) {
  const Gaussian3 g;
  EnsembleOptions o;
  o.n_walkers = 4;  // < 2 x 3
  auto r = RunEnsemble(std::cref(g), BroadStart(4, 3, 1), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("even and >= 2 x dimension"), std::string::npos) << r.status().message();
  o.n_walkers = 8;
  auto init = BroadStart(8, 3, 1);
  auto outside = [](std::span<const double> x) { return x[0] > 0 ? 0.0 : -std::numeric_limits<double>::infinity(); };
  init[5][0] = -1;
  init[0][0] = 1;
  r = RunEnsemble(outside, init, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("walker"), std::string::npos) << r.status().message();
  std::vector<std::vector<double>> same(8, std::vector<double>{1, 2, 3});
  r = RunEnsemble(std::cref(g), same, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("same point"), std::string::npos) << r.status().message();
}
