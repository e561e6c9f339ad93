// Dense Basis GP-SFH prior (SfhKind::kDenseBasis): the quartile times follow the Dirichlet prior,
// the history passes through them and is monotone, the sSFR tail holds, labels are consistent,
// the constant-[M/H] law, the mixture and reproducibility of libraries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/sfh.hpp"

using namespace cubeflow;
using namespace cubeflow::sim;

namespace {

/// Paper 000's prior (sec. 2.1): Dirichlet alpha = 1, log sSFR uniform in [-17, -7.5].
SfhPrior Paper000Prior() {
  SfhPrior p;
  p.w_nonparametric = p.w_skewnormal = p.w_skewnormal_burst = 0;
  p.w_dense_basis = 1;
  p.db_ssfr_min = 1e-17;
  p.db_ssfr_max = std::pow(10.0, -7.5);
  p.db_ssfr_log_uniform = true;
  p.constant_metallicity = true;
  return p;
}

/// Kolmogorov-Smirnov distance between a sample and a CDF.
template <typename Cdf>
double KsDistance(std::vector<double> x, Cdf cdf) {
  std::sort(x.begin(), x.end());
  const double n = static_cast<double>(x.size());
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double f = cdf(x[i]);
    d = std::max({d, std::abs(f - i / n), std::abs(f - (i + 1) / n)});
  }
  return d;
}

/// Cosmic time by which the fraction `formed` of the mass had formed.
double TimeOfFraction(const Sfh& s, double formed) { return s.t_universe - LookbackOfYoungFraction(s, 1.0 - formed); }

}  // namespace

TEST(DenseBasis, QuartileTimesFollowTheDirichletPrior) {
  // t_x / t_U are cumulative sums of a Dirichlet(alpha, alpha, alpha, alpha): marginally
  // t25 ~ Beta(a, 3a), t50 ~ Beta(2a, 2a), t75 ~ Beta(3a, a). For alpha = 1 the CDFs are
  // 1 - (1 - x)^3, 3x^2 - 2x^3 and x^3. K-S test on the realised histories (the times at which
  // the curve crosses 1/4, 1/2, 3/4), n = 4000: the 1 % critical distance is 1.63 / sqrt(n).
  const SfhPrior p = Paper000Prior();
  const int n = 4000;
  std::vector<double> t25, t50, t75;
  for (int i = 0; i < n; ++i) {
    Rng rng(101, i);
    const Sfh s = DrawSfh(p, SfhKind::kDenseBasis, rng);
    ASSERT_EQ(s.kind, SfhKind::kDenseBasis) << "object " << i << ": the Dense Basis curve was not built";
    t25.push_back(TimeOfFraction(s, 0.25) / s.t_universe);
    t50.push_back(TimeOfFraction(s, 0.50) / s.t_universe);
    t75.push_back(TimeOfFraction(s, 0.75) / s.t_universe);
  }
  const double crit = 1.63 / std::sqrt(static_cast<double>(n));
  EXPECT_LT(KsDistance(t25, [](double x) { return 1 - std::pow(1 - x, 3); }), crit);
  EXPECT_LT(KsDistance(t50, [](double x) { return 3 * x * x - 2 * x * x * x; }), crit);
  EXPECT_LT(KsDistance(t75, [](double x) { return x * x * x; }), crit);
  // A sampler that ignores the prior fails the same test (uniform t50 is not Beta(2, 2)).
  std::vector<double> uniform(n);
  for (int i = 0; i < n; ++i) uniform[i] = (i + 0.5) / n;
  EXPECT_GT(KsDistance(uniform, [](double x) { return 3 * x * x - 2 * x * x * x; }), crit);

  // alpha = 5 (Iyer et al.'s recommendation): moments of Beta(2a, 2a): mean 1/2, variance
  // 1 / (4 (4a + 1)) = 0.0119; 4-sigma tolerances for n = 4000.
  SfhPrior p5 = Paper000Prior();
  p5.db_dirichlet_alpha = 5;
  double m = 0, m2 = 0;
  for (int i = 0; i < n; ++i) {
    Rng rng(102, i);
    const double x = TimeOfFraction(DrawSfh(p5, SfhKind::kDenseBasis, rng), 0.5) / 13.47;
    m += x;
    m2 += x * x;
  }
  m /= n;
  const double var = m2 / n - m * m, var_exp = 1.0 / (4 * 21);
  EXPECT_NEAR(m, 0.5, 4 * std::sqrt(var_exp / n));
  EXPECT_NEAR(var, var_exp, 4 * var_exp * std::sqrt(2.0 / n));
}

TEST(DenseBasis, HistoryPassesThroughThePointsIsMonotoneAndEndsAtTheSsfr) {
  // Both sSFR priors (paper 000: log-uniform 1e-17 .. 10^-7.5; paper 004: uniform 1e-12 .. 1e-9).
  SfhPrior p004 = Paper000Prior();
  p004.db_ssfr_min = 1e-12;
  p004.db_ssfr_max = 1e-9;
  p004.db_ssfr_log_uniform = false;
  int built = 0;
  for (const SfhPrior& p : {Paper000Prior(), p004}) {
    for (int i = 0; i < 1500; ++i) {
      Rng rng(7, i);
      const double mh_draw = rng.Uniform(p.mh_min, p.mh_max);  // DrawSfh's first draw
      double g[4], sum = 0;
      for (double& v : g) sum += (v = rng.Gamma(p.db_dirichlet_alpha) + 1e-12);
      const double ssfr = p.db_ssfr_log_uniform ? rng.LogUniform(p.db_ssfr_min, p.db_ssfr_max)
                                                : rng.Uniform(p.db_ssfr_min, p.db_ssfr_max);
      Rng rng2(7, i);
      const Sfh s = DrawSfh(p, SfhKind::kDenseBasis, rng2);
      ASSERT_EQ(s.kind, SfhKind::kDenseBasis) << "object " << i;
      ASSERT_TRUE(s.curve);
      ++built;
      EXPECT_NEAR(std::log10(s.z_final / s.z_sun), mh_draw, 1e-12);
      EXPECT_DOUBLE_EQ(s.z_start, s.z_final);
      EXPECT_DOUBLE_EQ(s.ssfr, ssfr);
      const SfrCurve& c = *s.curve;
      // through the drawn points (those closer than 0.1 Myr are pulled apart, see sfh.hpp)
      double acc = 0;
      for (int q = 0; q < 3; ++q) {
        acc += g[q] / sum;
        const double tq = acc * s.t_universe;
        if (std::min(g[q], g[q + 1]) / sum * s.t_universe > 2e-4)
          EXPECT_NEAR(c.Cumulative(tq), 0.25 * (q + 1), 1e-8) << "object " << i << " quartile " << q;
      }
      // monotone: SFR >= 0 at the knots (piecewise linear between them), cumulative increasing
      for (size_t j = 1; j < c.sfr.size(); ++j) ASSERT_GT(c.sfr[j], 0.0) << "object " << i;
      for (size_t j = 1; c.tau[j] < c.tail_start; ++j) ASSERT_GE(c.sfr[j], 1e-3 / s.t_universe * (1 - 1e-9));
      for (size_t j = 1; j < c.cum.size(); ++j) ASSERT_GE(c.cum[j], c.cum[j - 1]) << "object " << i;
      double prev = 0;
      for (int k = 0; k <= 2000; ++k) {
        const double y = s.YoungFraction(s.t_universe * k / 2000.0);
        ASSERT_GE(y, prev - 1e-15) << "object " << i;
        prev = y;
      }
      EXPECT_DOUBLE_EQ(s.YoungFraction(0.0), 0.0);
      EXPECT_DOUBLE_EQ(s.YoungFraction(s.t_universe), 1.0);
      // SFR 0 at the Big Bang; the last tail_fraction of the mass (at most) forms at the sSFR
      EXPECT_EQ(c.sfr.front(), 0.0);
      const double sg = ssfr * 1e9, tail = s.t_universe - c.tail_start;
      EXPECT_NEAR(c.Rate(s.t_universe), sg, 1e-9 * std::max(1.0, sg));
      EXPECT_NEAR(1.0 - c.Cumulative(c.tail_start), sg * tail, 1e-8);
      EXPECT_LE(sg * tail, p.db_tail_fraction + 1e-9);
      EXPECT_LE(tail, p.db_tail_fraction * s.t_universe + 1e-9);
    }
  }
  EXPECT_EQ(built, 3000);
}

TEST(DenseBasis, LabelsAreConsistent) {
  const SfhPrior p = Paper000Prior();
  const TimeGrid g = MakeTimeGrid(6);
  for (int i = 0; i < 1000; ++i) {
    Rng rng(31, i);
    const Sfh s = DrawSfh(p, SfhKind::kDenseBasis, rng);
    const BinnedSfh b = IntegrateSfh(s, g);
    const SfhLabels l = ComputeLabels(s, g, b);
    double sum = 0;
    for (float v : l.mass_frac) {
      ASSERT_GE(v, 0.0f);
      sum += v;
    }
    ASSERT_NEAR(sum, 1.0, 1e-5) << "object " << i;
    for (int q = 1; q < kNumMassPercentiles; ++q) ASSERT_GE(l.t_mass[q], l.t_mass[q - 1]) << "object " << i;
    EXPECT_GE(l.t_mass[0], 0.0f);
    EXPECT_LE(l.t_mass[8], s.t_universe + 1e-5);
    // T_MASS[4] is the history's t50; the age bins hold the mass the curve puts there
    EXPECT_NEAR(l.t_mass[4], TimeOfFraction(s, 0.5), 1e-5);
    const auto& edges = AgeBinEdgesGyr();
    for (int k = 0; k < kNumAgeBins; ++k) {
      const double expect = s.YoungFraction(std::min(edges[k + 1], s.t_universe)) -
                            s.YoungFraction(std::min(edges[k], s.t_universe));
      EXPECT_NEAR(l.mass_frac[k], expect, 1e-6) << "object " << i << " bin " << k;
    }
    // one [M/H] per object: every bin has it
    const double mh = std::log10(s.z_final / s.z_sun);
    EXPECT_GE(mh, -2.3 - 1e-12);
    EXPECT_LE(mh, 0.4 + 1e-12);
    for (float z : l.zh) EXPECT_NEAR(z, mh, 1e-5);
  }
}

TEST(DenseBasis, MixtureAndDefaultPriorUnchanged) {
  // Paper 004's mix with the Dense Basis kind as its non-parametric component.
  SfhPrior p;
  p.w_dense_basis = p.w_nonparametric;
  p.w_nonparametric = 0;
  int counts[4] = {0, 0, 0, 0};
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    Rng rng(3, i);
    counts[static_cast<int>(DrawSfhKind(p, rng))]++;
  }
  EXPECT_EQ(counts[0], 0);
  EXPECT_NEAR(counts[3] / double(n), 150.0 / 165, 0.01);
  EXPECT_NEAR(counts[1] / double(n), 9.0 / 165, 0.006);
  EXPECT_NEAR(counts[2] / double(n), 6.0 / 165, 0.006);
  // Without a Dense Basis weight the kinds are drawn exactly as before (same uniform, same
  // thresholds), so existing library configurations give the same libraries.
  SfhPrior d;
  for (int i = 0; i < 2000; ++i) {
    Rng a(5, i), b(5, i);
    const double u = a.Uniform() * (d.w_nonparametric + d.w_skewnormal + d.w_skewnormal_burst);
    const SfhKind old = u < d.w_nonparametric ? SfhKind::kNonParametric
                        : u < d.w_nonparametric + d.w_skewnormal ? SfhKind::kSkewNormal
                                                                 : SfhKind::kSkewNormalBurst;
    ASSERT_EQ(DrawSfhKind(d, b), old) << i;
  }
}

TEST(DenseBasis, LibraryIsReproducibleAcrossThreadCounts) {
  SimConfig c;
  c.sfh = Paper000Prior();
  c.dust.enabled = false;
  c.nebular.enabled = false;
  c.noise.enabled = false;
  auto fm = ForwardModel::Build(BuiltinSsp(), c);
  ASSERT_TRUE(fm.ok()) << fm.status().message();
  const LibraryData a = SimulateLibrary(**fm, 0, 96, 77, 1);
  const LibraryData b = SimulateLibrary(**fm, 0, 96, 77, 2);
  EXPECT_EQ(a.spectra, b.spectra);
  EXPECT_EQ(a.t_mass, b.t_mass);
  EXPECT_EQ(a.mass_frac, b.mass_frac);
  EXPECT_EQ(a.zh, b.zh);
  for (int64_t i = 0; i < a.n; ++i) EXPECT_EQ(a.sfh_kind[i], static_cast<int32_t>(SfhKind::kDenseBasis));
  const LibraryData c2 = SimulateLibrary(**fm, 0, 96, 78, 2);
  EXPECT_NE(a.t_mass, c2.t_mass);
}
