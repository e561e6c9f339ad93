// Lawson-Hanson bounded least squares: KKT conditions on random problems, free unknowns,
// warm starts, collinear columns.
#include <gtest/gtest.h>

#include <random>

#include "cubeflow/kinematics/nnls.hpp"

using namespace cubeflow::kinematics;

namespace {

Eigen::MatrixXd RandomMatrix(int m, int n, std::mt19937_64& rng) {
  std::normal_distribution<double> g(0, 1);
  Eigen::MatrixXd a(m, n);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) a(i, j) = g(rng);
  return a;
}

/// Checks the KKT conditions of min |A z - b|^2, z[nf:] >= 0.
void ExpectKkt(const Eigen::MatrixXd& a, const Eigen::VectorXd& b, int nf, const ActiveSetNnls& s) {
  const int nb = static_cast<int>(a.cols()) - nf;
  Eigen::VectorXd z(a.cols());
  z.head(nf) = s.free_solution();
  z.tail(nb) = s.BoundedSolution(nb);
  const Eigen::VectorXd r = b - a * z;
  EXPECT_NEAR((r - s.residual()).norm(), 0.0, 1e-9 * (1 + b.norm()));
  const Eigen::VectorXd g = a.transpose() * r;
  const double scale = 1e-7 * (1 + b.norm() * a.norm());
  for (int j = 0; j < nf; ++j) EXPECT_NEAR(g[j], 0.0, scale);
  for (int j = 0; j < nb; ++j) {
    EXPECT_GE(z[nf + j], 0.0);
    if (z[nf + j] > 0) EXPECT_NEAR(g[nf + j], 0.0, scale);
    else EXPECT_LE(g[nf + j], scale);
  }
}

}  // namespace

TEST(ActiveSetNnls, SatisfiesKktOnRandomProblems) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 30; ++trial) {
    const int m = 40 + trial, nf = trial % 4, nb = 5 + trial;
    Eigen::MatrixXd a = RandomMatrix(m, nf + nb, rng);
    Eigen::VectorXd b = RandomMatrix(m, 1, rng).col(0) * 3.0;
    DenseOracle o(a, nf);
    ActiveSetNnls s;
    ASSERT_TRUE(s.Solve(o, b, false));
    ExpectKkt(a, b, nf, s);
  }
}

TEST(ActiveSetNnls, WarmStartReachesTheSameSolutionWithFewerRounds) {
  std::mt19937_64 rng(7);
  Eigen::MatrixXd a = RandomMatrix(80, 3 + 60, rng).cwiseAbs();
  a.leftCols(3) = RandomMatrix(80, 3, rng);
  Eigen::VectorXd b = a.rightCols(60) * Eigen::VectorXd::LinSpaced(60, 0, 1).cwiseMax(0.5).array().matrix() - Eigen::VectorXd::Constant(80, 5);
  DenseOracle o(a, 3);
  ActiveSetNnls s;
  ASSERT_TRUE(s.Solve(o, b, false));
  const int cold = s.iterations();
  const Eigen::VectorXd w1 = s.BoundedSolution(60);
  // A slightly different right-hand side, warm.
  b *= 1.01;
  ASSERT_TRUE(s.Solve(o, b, true));
  ExpectKkt(a, b, 3, s);
  EXPECT_LE(s.iterations(), cold);
  ActiveSetNnls c;
  ASSERT_TRUE(c.Solve(o, b, false));
  EXPECT_NEAR((c.residual() - s.residual()).norm(), 0.0, 1e-8);
  (void)w1;
}

TEST(ActiveSetNnls, HandlesCollinearColumns) {
  std::mt19937_64 rng(3);
  Eigen::MatrixXd base = RandomMatrix(50, 4, rng).cwiseAbs();
  Eigen::MatrixXd a(50, 8);
  a << base, base;  // every column twice
  const Eigen::VectorXd b = base * Eigen::Vector4d(1.0, 0.5, 0.0, 2.0);
  DenseOracle o(a, 0);
  ActiveSetNnls s;
  ASSERT_TRUE(s.Solve(o, b, false));
  EXPECT_LT(s.residual().norm(), 1e-8 * b.norm());
  ExpectKkt(a, b, 0, s);
}

TEST(ActiveSetNnls, FreeUnknownsOnly) {
  std::mt19937_64 rng(5);
  const Eigen::MatrixXd a = RandomMatrix(30, 5, rng);
  const Eigen::VectorXd b = RandomMatrix(30, 1, rng).col(0);
  DenseOracle o(a, 5);
  ActiveSetNnls s;
  ASSERT_TRUE(s.Solve(o, b, false));
  const Eigen::VectorXd ls = a.colPivHouseholderQr().solve(b);
  EXPECT_NEAR((s.free_solution() - ls).norm(), 0.0, 1e-9);
}
