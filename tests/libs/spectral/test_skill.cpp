// Skill figures (cubeflow/spectral/stats.hpp): R^2, Spearman's rank correlation and the best
// constant predictor's scatter, against hand-computed values and the trivial baselines that
// issue #15 says an accuracy check must tell apart from a model.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "cubeflow/spectral/stats.hpp"

namespace cubeflow::spectral {
namespace {

TEST(Skill, PerfectPredictionHasR2AndRankCorrelationOne) {
  const std::vector<double> t = {9.1, 9.5, 10.0, 8.2, 9.9};
  const Skill s = SkillOf(t, t);
  EXPECT_EQ(s.n, 5);
  EXPECT_DOUBLE_EQ(s.r2, 1.0);
  EXPECT_DOUBLE_EQ(s.spearman, 1.0);
  // sample standard deviation of the truths, by hand: mean 9.34, squared deviations sum to 2.132
  EXPECT_NEAR(s.constant_scatter, std::sqrt(2.132 / 4), 1e-12);
}

TEST(Skill, ConstantPredictionsHaveNoSkill) {
  const std::vector<double> t = {9.1, 9.5, 10.0, 8.2, 9.9};
  const Skill mean = SkillOf(t, std::vector<double>(5, 9.34));  // the mean truth
  EXPECT_NEAR(mean.r2, 0.0, 1e-12);
  EXPECT_TRUE(std::isnan(mean.spearman));                       // no ranking at all
  const Skill median = SkillOf(t, std::vector<double>(5, 9.5));  // the median truth
  EXPECT_LT(median.r2, 0.0);
  EXPECT_NEAR(median.r2, 1.0 - (0.16 + 0 + 0.25 + 1.69 + 0.16) / 2.132, 1e-12);
}

TEST(Skill, RanksIgnoreMonotonicDistortionAndAverageTies) {
  const std::vector<double> t = {1, 2, 3, 4, 5, 6};
  std::vector<double> p;
  for (double x : t) p.push_back(std::exp(x));  // monotonic: perfect ranks, imperfect values
  const Skill s = SkillOf(t, p);
  EXPECT_DOUBLE_EQ(s.spearman, 1.0);
  EXPECT_LT(s.r2, 0.0);
  std::vector<double> rev(t.rbegin(), t.rend());
  EXPECT_DOUBLE_EQ(SpearmanRho(t, rev), -1.0);
  // ties: a = 1 2 2 3 (ranks 1 2.5 2.5 4), b = 1 2 3 4 -> Pearson of the ranks by hand
  const double rho = SpearmanRho({1, 2, 2, 3}, {1, 2, 3, 4});
  const double ra[] = {1, 2.5, 2.5, 4}, rb[] = {1, 2, 3, 4};
  double sab = 0, saa = 0, sbb = 0;
  for (int i = 0; i < 4; ++i) {
    sab += (ra[i] - 2.5) * (rb[i] - 2.5);
    saa += (ra[i] - 2.5) * (ra[i] - 2.5);
    sbb += (rb[i] - 2.5) * (rb[i] - 2.5);
  }
  EXPECT_NEAR(rho, sab / std::sqrt(saa * sbb), 1e-12);
}

TEST(Skill, NonFinitePairsAreSkippedAndTooFewGiveNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Skill s = SkillOf({1, nan, 3, 4}, {1, 2, nan, 4});
  EXPECT_EQ(s.n, 2);
  EXPECT_DOUBLE_EQ(s.r2, 1.0);
  const Skill one = SkillOf({1}, {1});
  EXPECT_EQ(one.n, 1);
  EXPECT_TRUE(std::isnan(one.r2) && std::isnan(one.spearman) && std::isnan(one.constant_scatter));
  EXPECT_TRUE(std::isnan(SkillOf({2, 2, 2}, {1, 2, 3}).r2));  // truths that do not vary
}

}  // namespace
}  // namespace cubeflow::spectral
