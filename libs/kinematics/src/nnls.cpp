// Lawson-Hanson active-set bounded least squares. See nnls.hpp.
#include "cubeflow/kinematics/nnls.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace cubeflow::kinematics {

DenseOracle::DenseOracle(const Eigen::MatrixXd& a, int num_free) : a_(a), num_free_(num_free) {
  free_ = a_.leftCols(num_free_);
}

Eigen::VectorXd ActiveSetNnls::BoundedSolution(int num_bounded) const {
  Eigen::VectorXd w = Eigen::VectorXd::Zero(num_bounded);
  for (size_t k = 0; k < passive_.size(); ++k) w[passive_[k]] = weights_[k];
  return w;
}

void ActiveSetNnls::AddColumn(ActiveSetOracle& oracle, int j) {
  const int np = static_cast<int>(passive_.size());
  if (cols_.cols() <= np) cols_.conservativeResize(rows_, std::max(8, 2 * np + 1));
  oracle.Column(j, cols_.col(np));
  ++columns_built_;
  const int n = nf_ + np + 1;
  if (gram_.rows() < n) gram_.conservativeResize(std::max(n, 2 * n), std::max(n, 2 * n));
  if (rhs_.size() < n) rhs_.conservativeResize(std::max(n, 2 * n));
  const auto c = cols_.col(np);
  const Eigen::MatrixXd& f = *free_;
  for (int i = 0; i < nf_; ++i) gram_(i, n - 1) = gram_(n - 1, i) = f.col(i).dot(c);
  for (int k = 0; k < np; ++k) gram_(nf_ + k, n - 1) = gram_(n - 1, nf_ + k) = cols_.col(k).dot(c);
  gram_(n - 1, n - 1) = c.squaredNorm();
  rhs_[n - 1] = c.dot(*b_);
  passive_.push_back(j);
  weights_.push_back(0.0);
}

void ActiveSetNnls::RemoveAt(size_t k) {
  const int np = static_cast<int>(passive_.size());
  const int kk = static_cast<int>(k);
  for (int c = kk; c + 1 < np; ++c) cols_.col(c) = cols_.col(c + 1);
  const int n = nf_ + np, at = nf_ + kk;
  for (int i = at; i + 1 < n; ++i) {
    gram_.row(i).head(n) = gram_.row(i + 1).head(n);
    rhs_[i] = rhs_[i + 1];
  }
  for (int i = at; i + 1 < n; ++i) gram_.col(i).head(n - 1) = gram_.col(i + 1).head(n - 1);
  passive_.erase(passive_.begin() + static_cast<std::ptrdiff_t>(k));
  weights_.erase(weights_.begin() + static_cast<std::ptrdiff_t>(k));
}

bool ActiveSetNnls::SolvePassive(const Eigen::VectorXd& b, Eigen::VectorXd& zf, Eigen::VectorXd& zp) {
  (void)b;
  const int np = static_cast<int>(passive_.size());
  const int n = nf_ + np;
  if (n == 0) {
    zf.resize(0);
    zp.resize(0);
    return true;
  }
  Eigen::MatrixXd g = gram_.topLeftCorner(n, n);
  // A tiny ridge keeps the solve defined when templates are (nearly) collinear.
  const double ridge = 1e-13 * std::max(g.diagonal().mean(), 1e-300);
  g.diagonal().array() += ridge;
  Eigen::LDLT<Eigen::MatrixXd> ldlt(g);
  const Eigen::VectorXd z = ldlt.solve(rhs_.head(n));
  if (!z.allFinite()) return false;
  zf = z.head(nf_);
  zp = z.tail(np);
  return true;
}

bool ActiveSetNnls::Solve(ActiveSetOracle& oracle, const Eigen::VectorXd& b, bool warm, const Options& options) {
  rows_ = oracle.rows();
  const Eigen::MatrixXd& f = oracle.FreeColumns();
  free_ = &f;
  b_ = &b;
  nf_ = static_cast<int>(f.cols());
  iterations_ = 0;
  columns_built_ = 0;
  const int nb = oracle.num_bounded();
  // Warm start: keep the previous passive set (positive weights), rebuild its columns.
  std::vector<int> keep;
  std::vector<double> keepw;
  if (warm)
    for (size_t k = 0; k < passive_.size(); ++k)
      if (weights_[k] > 0 && passive_[k] < nb) {
        keep.push_back(passive_[k]);
        keepw.push_back(weights_[k]);
      }
  passive_.clear();
  weights_.clear();
  const int cap = nf_ + static_cast<int>(keep.size()) + 16;
  gram_.resize(cap, cap);
  rhs_.resize(cap);
  if (nf_ > 0) {
    gram_.topLeftCorner(nf_, nf_).noalias() = f.transpose() * f;
    rhs_.head(nf_).noalias() = f.transpose() * b;
  }
  cols_.resize(rows_, std::max<int>(8, static_cast<int>(keep.size()) + 8));
  for (size_t k = 0; k < keep.size(); ++k) {
    AddColumn(oracle, keep[k]);
    weights_.back() = keepw[k];
  }
  std::vector<char> in_passive(static_cast<size_t>(nb), 0);
  for (int j : passive_) in_passive[static_cast<size_t>(j)] = 1;

  Eigen::VectorXd zf, zp;
  bool ok = true;
  for (;;) {
    // Inner loop: the least-squares solution over [free | passive], moved back into the
    // feasible region along the segment from the current feasible weights.
    for (int inner = 0;; ++inner) {
      if (!SolvePassive(b, zf, zp)) {
        ok = false;
        break;
      }
      const int np = static_cast<int>(passive_.size());
      double alpha = 1.0;
      int hit = -1;
      for (int k = 0; k < np; ++k) {
        if (zp[k] > 0) continue;
        const double w = weights_[static_cast<size_t>(k)];
        const double a = w <= 0 ? 0.0 : w / (w - zp[k]);
        if (a < alpha || hit < 0) {
          alpha = std::min(alpha, a);
          hit = k;
        }
      }
      if (hit < 0) {
        for (int k = 0; k < np; ++k) weights_[static_cast<size_t>(k)] = zp[k];
        break;
      }
      double wmax = 0;
      for (int k = 0; k < np; ++k) {
        double& w = weights_[static_cast<size_t>(k)];
        w += alpha * (zp[k] - w);
        wmax = std::max(wmax, w);
      }
      weights_[static_cast<size_t>(hit)] = 0.0;
      // Leave the passive set: unknowns now at zero whose least-squares value is not positive
      // (a freshly added unknown with a positive value stays, at zero, for the next solve).
      for (int k = np - 1; k >= 0; --k)
        if (weights_[static_cast<size_t>(k)] <= 1e-14 * wmax && (zp[k] <= 0 || k == hit)) {
          in_passive[static_cast<size_t>(passive_[static_cast<size_t>(k)])] = 0;
          RemoveAt(static_cast<size_t>(k));
        }
      if (inner > 4 * (nb + 4)) {
        ok = false;
        break;
      }
    }
    if (!ok) break;
    zf_ = zf;
    // Residual and pricing.
    const int np = static_cast<int>(passive_.size());
    r_ = b;
    if (nf_ > 0) r_.noalias() -= f * zf_;
    for (int k = 0; k < np; ++k) r_.noalias() -= weights_[static_cast<size_t>(k)] * cols_.col(k);
    if (++iterations_ > options.max_iterations) {
      ok = false;
      break;
    }
    oracle.Gradient(r_, g_);
    const double rn = r_.norm();
    std::vector<std::pair<double, int>> cand;
    for (int j = 0; j < nb; ++j) {
      if (in_passive[static_cast<size_t>(j)]) continue;
      const double s = oracle.ColumnScale(j);
      if (g_[j] > options.tolerance * rn * s) cand.emplace_back(g_[j] / std::max(s, 1e-300), j);
    }
    if (cand.empty()) break;
    const size_t nadd = std::min<size_t>(cand.size(), static_cast<size_t>(std::max(1, options.add_per_round)));
    std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(nadd), cand.end(),
                      [](const auto& a, const auto& b2) { return a.first > b2.first; });
    for (size_t k = 0; k < nadd; ++k) {
      AddColumn(oracle, cand[k].second);
      in_passive[static_cast<size_t>(cand[k].second)] = 1;
    }
  }
  // Drop zero weights from the reported solution.
  for (int k = static_cast<int>(passive_.size()) - 1; k >= 0; --k)
    if (!(weights_[static_cast<size_t>(k)] > 0)) RemoveAt(static_cast<size_t>(k));
  if (zf_.size() != nf_) zf_ = Eigen::VectorXd::Zero(nf_);
  if (r_.size() != rows_) {
    r_ = b;
    if (nf_ > 0) r_.noalias() -= f * zf_;
  }
  return ok;
}

}  // namespace cubeflow::kinematics
