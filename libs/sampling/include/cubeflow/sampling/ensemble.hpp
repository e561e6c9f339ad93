#pragma once
/// \file ensemble.hpp
/// \brief Affine-invariant ensemble MCMC (Goodman & Weare 2010, the stretch move of emcee,
/// Foreman-Mackey et al. 2013; optionally mixed with differential-evolution moves) for
/// posteriors given as a log density.
///
/// The ensemble is split in two halves; each half is moved in turn with the other as the
/// complementary set, so the walkers of one half can be updated in parallel (TBB) and the
/// result is still a valid MCMC. Every random number of walker k at iteration s comes from a
/// generator keyed on (seed, s, k): a run is bit-for-bit the same with or without threads.
///
/// Thread-safety: RunEnsemble calls `log_prob` from several threads at once when
/// EnsembleOptions::parallel is true; it must then be safe to call concurrently. Distinct runs are
/// independent.

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::sampling {

/// Log posterior density up to a constant; -infinity (or NaN) outside the support.
using LogDensity = std::function<double(std::span<const double>)>;

/// \brief Settings of a run.
struct EnsembleOptions {
  int n_walkers = 32;   ///< even, >= 2 x dimension
  int n_burn = 1000;    ///< iterations discarded
  int n_steps = 2000;   ///< iterations kept (before thinning)
  int thin = 1;         ///< keep every thin-th kept iteration
  double stretch = 2.0; ///< the scale a of the stretch move (z in [1/a, a], density ~ 1/sqrt(z))
  /// Probability that a walker update is a differential-evolution move (ter Braak 2006, emcee's
  /// DEMove) instead of a stretch: Y = X_k + g (X_a - X_b) + 1e-5 e, a != b from the other half,
  /// g = 2.38 / sqrt(2 dim) (g = 1 on every 10th iteration, for jumps between modes), e ~ N(0, 1)
  /// per coordinate scaled by |X_a - X_b|. Symmetric, so it is accepted with p(Y) / p(X_k).
  double de_fraction = 0.0;
  uint64_t seed = 0;
  bool parallel = true; ///< move the walkers of a half in parallel (TBB)
};

/// \brief The kept states of every walker.
struct EnsembleChain {
  int dim = 0, n_walkers = 0, n_kept = 0;  ///< n_kept iterations per walker
  std::vector<double> samples;   ///< [iteration][walker][dim]
  std::vector<double> log_prob;  ///< [iteration][walker]
  double acceptance = 0;         ///< accepted / proposed moves, burn-in included
  double At(int iteration, int walker, int d) const {
    return samples[(static_cast<size_t>(iteration) * n_walkers + walker) * dim + d];
  }
  size_t size() const { return static_cast<size_t>(n_kept) * n_walkers; }  ///< number of samples
  /// Posterior mean and covariance (row-major dim x dim) of all kept samples.
  std::vector<double> Mean() const;
  std::vector<double> Covariance() const;
  /// Quantile q (0..1, linear interpolation between order statistics) of coordinate d.
  double Quantile(int d, double q) const;
  /// Integrated autocorrelation time (iterations) of coordinate d: the normalised
  /// autocorrelation function averaged over walkers, summed with Sokal's automatic window
  /// (the smallest M >= 5 tau(M)), as emcee's estimator. Reliable when n_kept > 50 tau.
  double AutocorrTime(int d) const;
};

/// \brief Runs the sampler from `initial` (n_walkers points of equal dimension, each with a finite
/// log density, not all equal). Errors name the offending walker or setting.
Result<EnsembleChain> RunEnsemble(const LogDensity& log_prob, const std::vector<std::vector<double>>& initial,
                                  const EnsembleOptions& options);

}  // namespace cubeflow::sampling
