// Box-constrained Levenberg-Marquardt on textbook problems.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cubeflow/kinematics/levenberg_marquardt.hpp"

using namespace cubeflow::kinematics;

namespace {

class Rosenbrock : public LeastSquaresProblem {
 public:
  bool Residuals(const Eigen::VectorXd& p, Eigen::VectorXd& r) override {
    p_ = p;
    r.resize(2);
    r << 10 * (p[1] - p[0] * p[0]), 1 - p[0];
    return true;
  }
  void Jacobian(Eigen::MatrixXd& j) override {
    j.resize(2, 2);
    j << -20 * p_[0], 10, -1, 0;
  }
  Eigen::VectorXd p_;
};

/// y = a exp(-b x) + c with noise sigma = 1 (weighted residuals).
class Exponential : public LeastSquaresProblem {
 public:
  Exponential(std::vector<double> x, std::vector<double> y) : x_(std::move(x)), y_(std::move(y)) {}
  bool Residuals(const Eigen::VectorXd& p, Eigen::VectorXd& r) override {
    p_ = p;
    r.resize(static_cast<Eigen::Index>(x_.size()));
    for (size_t i = 0; i < x_.size(); ++i) r[static_cast<Eigen::Index>(i)] = y_[i] - (p[0] * std::exp(-p[1] * x_[i]) + p[2]);
    return true;
  }
  void Jacobian(Eigen::MatrixXd& j) override {
    j.resize(static_cast<Eigen::Index>(x_.size()), 3);
    for (size_t i = 0; i < x_.size(); ++i) {
      const double e = std::exp(-p_[1] * x_[i]);
      j.row(static_cast<Eigen::Index>(i)) << -e, p_[0] * x_[i] * e, -1;
    }
  }
  std::vector<double> x_, y_;
  Eigen::VectorXd p_;
};

}  // namespace

TEST(LevenbergMarquardt, SolvesRosenbrock) {
  Rosenbrock f;
  const Eigen::Vector2d lo(-10, -10), hi(10, 10);
  LmOptions o;
  o.max_iterations = 200;
  o.ftol = 1e-12;
  const auto r = Minimize(f, Eigen::Vector2d(-1.2, 1.0), lo, hi, o);
  EXPECT_TRUE(r.converged) << r.message;
  EXPECT_NEAR(r.p[0], 1.0, 1e-5);
  EXPECT_NEAR(r.p[1], 1.0, 1e-5);
}

TEST(LevenbergMarquardt, StopsOnAnActiveBound) {
  Rosenbrock f;  // minimum at (1, 1); x <= 0.5 forces the constrained minimum onto the bound
  const auto r = Minimize(f, Eigen::Vector2d(-1.0, 2.0), Eigen::Vector2d(-5, -5), Eigen::Vector2d(0.5, 5));
  EXPECT_NEAR(r.p[0], 0.5, 1e-9);
  EXPECT_NEAR(r.p[1], 0.25, 1e-3);
  EXPECT_TRUE(r.at_bound[0]);
  EXPECT_FALSE(r.at_bound[1]);
}

TEST(LevenbergMarquardt, ErrorsOfANoisyFitAreCalibrated) {
  // Over many noisy data sets, (fit - truth) / formal error has unit standard deviation.
  std::mt19937_64 rng(11);
  std::normal_distribution<double> g(0, 1);
  const double a = 50, b = 0.3, c = 5;
  double s2 = 0;
  const int n = 300;
  for (int k = 0; k < n; ++k) {
    std::vector<double> x, y;
    for (int i = 0; i < 40; ++i) {
      x.push_back(0.25 * i);
      y.push_back(a * std::exp(-b * x.back()) + c + g(rng));
    }
    Exponential f(x, y);
    const auto r = Minimize(f, Eigen::Vector3d(30, 0.5, 0), Eigen::Vector3d(0, 0, -100), Eigen::Vector3d(1000, 10, 100));
    ASSERT_TRUE(r.converged) << r.message;
    const Eigen::MatrixXd cov = CovarianceFromJacobian(r.jac);
    const double pull = (r.p[1] - b) / std::sqrt(cov(1, 1));
    s2 += pull * pull;
  }
  EXPECT_NEAR(std::sqrt(s2 / n), 1.0, 0.12);
}
