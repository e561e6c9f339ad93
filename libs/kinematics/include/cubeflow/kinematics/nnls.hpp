#pragma once
/// \file nnls.hpp
/// \brief Bounded linear least squares: min ||A z - b||^2 with the first `num_free` unknowns
/// free and the others >= 0 (template weights >= 0, polynomial coefficients free), by the
/// active-set method of Lawson & Hanson (1974, ch. 23) with a warm start.
///
/// The columns of the constrained unknowns need not exist as a matrix: an ActiveSetOracle
/// supplies a column on request and the gradient A_c^T r of every constrained unknown at once
/// (the pricing step), so a problem with hundreds of LOSVD-convolved templates only ever builds
/// the few columns that enter the solution. DenseOracle wraps an explicit matrix.
///
/// Thread-safety: a solver object is a workspace; use one per thread.

#include <Eigen/Dense>

#include <cstdint>
#include <vector>

namespace cubeflow::kinematics {

/// \brief Supplies the columns of a bounded least-squares problem.
class ActiveSetOracle {
 public:
  virtual ~ActiveSetOracle() = default;
  virtual int rows() const = 0;
  /// Number of constrained (>= 0) unknowns.
  virtual int num_bounded() const = 0;
  /// The free columns (rows x num_free), fixed for the problem.
  virtual const Eigen::MatrixXd& FreeColumns() const = 0;
  /// Column `j` of the constrained unknowns (rows values).
  virtual void Column(int j, Eigen::Ref<Eigen::VectorXd> out) = 0;
  /// g_j = column_j . r for every constrained unknown.
  virtual void Gradient(const Eigen::VectorXd& r, Eigen::VectorXd& g) = 0;
  /// A scale for column j (its norm or an estimate), used for the pricing tolerance.
  virtual double ColumnScale(int j) const { (void)j; return 1.0; }
};

/// \brief An ActiveSetOracle over an explicit matrix [free | bounded].
class DenseOracle : public ActiveSetOracle {
 public:
  DenseOracle(const Eigen::MatrixXd& a, int num_free);
  int rows() const override { return static_cast<int>(a_.rows()); }
  int num_bounded() const override { return static_cast<int>(a_.cols()) - num_free_; }
  const Eigen::MatrixXd& FreeColumns() const override { return free_; }
  void Column(int j, Eigen::Ref<Eigen::VectorXd> out) override { out = a_.col(num_free_ + j); }
  void Gradient(const Eigen::VectorXd& r, Eigen::VectorXd& g) override { g.noalias() = a_.rightCols(num_bounded()).transpose() * r; }
  double ColumnScale(int j) const override { return a_.col(num_free_ + j).norm(); }

 private:
  const Eigen::MatrixXd& a_;
  int num_free_;
  Eigen::MatrixXd free_;
};

/// \brief Lawson-Hanson active-set solver with free unknowns and a warm start.
class ActiveSetNnls {
 public:
  struct Options {
    int max_iterations = 500;   ///< outer iterations (pricing rounds)
    int add_per_round = 3;      ///< unknowns moved into the passive set per pricing round
    double tolerance = 1e-9;    ///< pricing: add j only if g_j > tolerance * |r| * scale_j
  };
  ActiveSetNnls() = default;

  /// Solves from the passive set and weights of the previous call (if `warm`) or from zero.
  /// Returns false if the iteration limit was hit (the result is then the last feasible point).
  bool Solve(ActiveSetOracle& oracle, const Eigen::VectorXd& b, bool warm, const Options& options);
  bool Solve(ActiveSetOracle& oracle, const Eigen::VectorXd& b, bool warm) { return Solve(oracle, b, warm, Options{}); }

  /// Free unknowns.
  const Eigen::VectorXd& free_solution() const { return zf_; }
  /// Constrained unknowns with a nonzero value and their values (same order).
  const std::vector<int>& passive() const { return passive_; }
  const std::vector<double>& weights() const { return weights_; }
  /// The passive columns of the last solve (rows x passive().size()).
  const Eigen::MatrixXd& passive_columns() const { return cols_; }
  /// Residual b - A z at the solution.
  const Eigen::VectorXd& residual() const { return r_; }
  /// Dense solution of the constrained unknowns (num_bounded values).
  Eigen::VectorXd BoundedSolution(int num_bounded) const;
  /// Pricing rounds and column requests of the last call.
  int iterations() const { return iterations_; }
  int columns_built() const { return columns_built_; }
  /// Forgets the warm-start state.
  void Reset() { passive_.clear(); weights_.clear(); }

 private:
  bool SolvePassive(const Eigen::VectorXd& b, Eigen::VectorXd& zf, Eigen::VectorXd& zp);
  void AddColumn(ActiveSetOracle& oracle, int j);
  void RemoveAt(size_t k);

  std::vector<int> passive_;
  std::vector<double> weights_;
  Eigen::MatrixXd cols_;       // rows x capacity, first passive_.size() used
  Eigen::MatrixXd gram_;       // (nf + np) x (nf + np) Gram of [free | passive]
  Eigen::VectorXd rhs_;        // [free | passive]^T b
  Eigen::VectorXd zf_, r_, g_;
  const Eigen::MatrixXd* free_ = nullptr;  // the oracle's free columns (during Solve)
  const Eigen::VectorXd* b_ = nullptr;     // right-hand side (during Solve)
  int nf_ = 0, rows_ = 0;
  int iterations_ = 0, columns_built_ = 0;
};

}  // namespace cubeflow::kinematics
