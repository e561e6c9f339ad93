#pragma once
/// \file levenberg_marquardt.hpp
/// \brief A small Levenberg-Marquardt minimiser of ||r(p)||^2 with box constraints and analytic
/// Jacobians, for the few nonlinear parameters of a kinematic fit (V, sigma, h3.., the
/// multiplicative polynomial). The linear parameters are solved inside the residual function
/// (variable projection), so the problem object keeps the state of its last evaluation.
///
/// Bounds: a step is computed on the parameters that are free (not at a bound with the
/// gradient pointing outwards), then clipped to the box. Convergence: the Gauss-Newton
/// decrease predicted at the current point, g^T (J^T J)^-1 g with g = J^T r, is below
/// `ftol` * max(1, chi2 / dof) (i.e. the point is within ~sqrt(ftol) standard errors of the
/// minimum), or two accepted steps in a row gained less than that each.
///
/// Thread-safety: Minimize touches only the problem object it is given.

#include <Eigen/Dense>

#include <string>
#include <vector>

namespace cubeflow::kinematics {

/// \brief A least-squares problem: residuals and their Jacobian.
class LeastSquaresProblem {
 public:
  virtual ~LeastSquaresProblem() = default;
  /// Residuals at p (any length >= 1). Returns false if p cannot be evaluated (the step is
  /// then rejected as if chi2 were infinite).
  virtual bool Residuals(const Eigen::VectorXd& p, Eigen::VectorXd& r) = 0;
  /// dr/dp at the point of the most recent successful Residuals call.
  virtual void Jacobian(Eigen::MatrixXd& jac) = 0;
};

struct LmOptions {
  int max_iterations = 60;     ///< accepted + rejected steps
  double ftol = 1e-3;          ///< predicted chi2 decrease at convergence (see the file comment)
  double lambda0 = 1e-3;       ///< initial damping (relative to diag(J^T J))
  bool backtrack = true;       ///< on a rejected step, try a quarter of it before damping more
};

struct LmResult {
  Eigen::VectorXd p;           ///< the solution
  Eigen::VectorXd r;           ///< residuals at p
  Eigen::MatrixXd jac;         ///< Jacobian at p
  double chi2 = 0;             ///< ||r||^2
  int iterations = 0;          ///< steps tried
  int evaluations = 0;         ///< calls of Residuals
  bool converged = false;
  std::vector<bool> at_bound;  ///< per parameter: on its lower or upper bound at the end
  std::string message;
};

/// Minimises ||r(p)||^2 for lower <= p <= upper from p0 (clipped into the box). The problem's
/// last evaluation is at the returned p when the function returns.
LmResult Minimize(LeastSquaresProblem& problem, const Eigen::VectorXd& p0, const Eigen::VectorXd& lower,
                  const Eigen::VectorXd& upper, const LmOptions& options = {});

/// Covariance (J^T J)^-1 of the parameters from a Jacobian of weighted residuals (a
/// pseudo-inverse if singular).
Eigen::MatrixXd CovarianceFromJacobian(const Eigen::MatrixXd& jac);

}  // namespace cubeflow::kinematics
