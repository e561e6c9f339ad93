// Box-constrained Levenberg-Marquardt. See levenberg_marquardt.hpp.
#include "cubeflow/kinematics/levenberg_marquardt.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cubeflow::kinematics {

namespace {

/// Free parameters: not on a bound with the descent direction (-g) pointing outwards.
std::vector<int> FreeSet(const Eigen::VectorXd& p, const Eigen::VectorXd& g, const Eigen::VectorXd& lo,
                         const Eigen::VectorXd& hi) {
  std::vector<int> f;
  for (int i = 0; i < p.size(); ++i) {
    const bool at_lo = p[i] <= lo[i] && g[i] > 0;  // chi2 decreases towards lower p
    const bool at_hi = p[i] >= hi[i] && g[i] < 0;
    if (!at_lo && !at_hi) f.push_back(i);
  }
  return f;
}

Eigen::VectorXd SolveSub(const Eigen::MatrixXd& h, const Eigen::VectorXd& g, const std::vector<int>& free, double lambda,
                         int n) {
  const int m = static_cast<int>(free.size());
  Eigen::VectorXd step = Eigen::VectorXd::Zero(n);
  if (m == 0) return step;
  Eigen::MatrixXd a(m, m);
  Eigen::VectorXd b(m);
  for (int i = 0; i < m; ++i) {
    b[i] = -g[free[static_cast<size_t>(i)]];
    for (int j = 0; j < m; ++j) a(i, j) = h(free[static_cast<size_t>(i)], free[static_cast<size_t>(j)]);
    a(i, i) += lambda * std::max(h(free[static_cast<size_t>(i)], free[static_cast<size_t>(i)]), 1e-30);
  }
  Eigen::VectorXd s = a.ldlt().solve(b);
  if (!s.allFinite()) s = a.completeOrthogonalDecomposition().solve(b);
  for (int i = 0; i < m; ++i) step[free[static_cast<size_t>(i)]] = s[i];
  return step;
}

}  // namespace

Eigen::MatrixXd CovarianceFromJacobian(const Eigen::MatrixXd& jac) {
  const Eigen::MatrixXd h = jac.transpose() * jac;
  Eigen::LDLT<Eigen::MatrixXd> ldlt(h);
  if (ldlt.info() == Eigen::Success && ldlt.isPositive()) {
    Eigen::MatrixXd c = ldlt.solve(Eigen::MatrixXd::Identity(h.rows(), h.cols()));
    if (c.allFinite()) return c;
  }
  return h.completeOrthogonalDecomposition().pseudoInverse();
}

LmResult Minimize(LeastSquaresProblem& problem, const Eigen::VectorXd& p0, const Eigen::VectorXd& lower,
                  const Eigen::VectorXd& upper, const LmOptions& options) {
  const int n = static_cast<int>(p0.size());
  LmResult res;
  res.p = p0.cwiseMax(lower).cwiseMin(upper);
  Eigen::VectorXd r, rt;
  ++res.evaluations;
  if (!problem.Residuals(res.p, r)) {
    res.message = "the starting point cannot be evaluated";
    return res;
  }
  double chi2 = r.squaredNorm();
  Eigen::MatrixXd jac;
  problem.Jacobian(jac);
  double lambda = options.lambda0;
  bool state_at_p = true;  // the problem's last evaluation is at res.p
  bool small_before = false;
  int rejected = 0;  // consecutive rejected steps
  const double dof = std::max<double>(1.0, static_cast<double>(r.size() - n));
  while (res.iterations < options.max_iterations) {
    const Eigen::MatrixXd h = jac.transpose() * jac;
    const Eigen::VectorXd g = jac.transpose() * r;  // half the gradient of chi2
    const std::vector<int> free = FreeSet(res.p, g, lower, upper);
    // Convergence: the Gauss-Newton decrease still to be had is negligible.
    const double tol = options.ftol * std::max(1.0, chi2 / dof);
    {
      const Eigen::VectorXd gn = SolveSub(h, g, free, 0.0, n);
      const double predicted = -gn.dot(g);
      if (predicted <= tol) {
        res.converged = true;
        break;
      }
      // Close to the minimum but no step helps: the residuals' rounding noise (single-precision
      // model rows) is as large as what is left to gain.
      if (rejected >= 3 && predicted <= 10 * tol) {
        res.converged = true;
        break;
      }
    }
    ++res.iterations;
    Eigen::VectorXd step = SolveSub(h, g, free, lambda, n);
    Eigen::VectorXd pt = (res.p + step).cwiseMax(lower).cwiseMin(upper);
    ++res.evaluations;
    bool ok = problem.Residuals(pt, rt);
    state_at_p = false;
    double chi2t = ok ? rt.squaredNorm() : std::numeric_limits<double>::infinity();
    if (!(ok && chi2t < chi2) && options.backtrack) {
      // Along a curved, nearly degenerate valley the Gauss-Newton step points the right way but
      // goes too far; a shorter step along it is often accepted where more damping (which turns
      // the step towards the gradient) would only creep.
      const Eigen::VectorXd ps = (res.p + 0.25 * step).cwiseMax(lower).cwiseMin(upper);
      Eigen::VectorXd rs;
      ++res.evaluations;
      if (problem.Residuals(ps, rs)) {
        const double c2 = rs.squaredNorm();
        if (c2 < chi2) {
          pt = ps;
          rt.swap(rs);
          chi2t = c2;
          ok = true;
          lambda *= 4.0;  // the step was too long: damp the next one a little
        }
      }
    }
    if (ok && chi2t < chi2) {
      const double gain = chi2 - chi2t;
      res.p = pt;
      r.swap(rt);
      chi2 = chi2t;
      problem.Jacobian(jac);
      state_at_p = true;
      lambda = std::max(lambda * 0.1, 1e-9);
      // Stagnation: two accepted steps in a row gained less than ftol each (a nearly degenerate
      // direction, e.g. sigma against h4 below the instrumental dispersion, where Gauss-Newton
      // predictions overshoot and the damping alternates).
      rejected = 0;
      const bool small = gain <= tol;
      if (small && small_before) {
        res.converged = true;
        break;
      }
      small_before = small;
    } else {
      ++rejected;
      lambda *= 10.0;
      if (lambda > 1e10) {
        res.message = "no step reduces chi2 (damping limit reached)";
        res.converged = true;  // at a (possibly constrained) minimum to machine precision
        break;
      }
    }
  }
  if (!res.converged && res.message.empty()) res.message = "iteration limit reached";
  if (!state_at_p) {
    ++res.evaluations;
    problem.Residuals(res.p, r);
    problem.Jacobian(jac);
  }
  res.r = r;
  res.jac = jac;
  res.chi2 = chi2;
  res.at_bound.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) res.at_bound[static_cast<size_t>(i)] = res.p[i] <= lower[i] || res.p[i] >= upper[i];
  return res;
}

}  // namespace cubeflow::kinematics
