#pragma once
/// \file digs_fit.hpp
/// \brief The MCMC baseline of DIGS (papers 002/003, sec. 3.4): the posterior of the five
/// parameters of one spectrum under the DigsModel likelihood and the Table 1 priors, sampled
/// with the affine-invariant ensemble sampler of libs/sampling.
///
/// Sampling coordinates: log_mass, log_z, dust, t_age, log10 tau, in which the prior is uniform
/// on a box. Walkers start at the best of `n_init_draws` prior draws (no knowledge of the truth):
/// for each draw the mass is set to the mean flux ratio to the unit-mass model (the maximum of
/// the likelihood in mass up to O(noise_frac^2)), then the n_walkers draws of highest posterior
/// are kept. An annealed burn-in (the likelihood tempered, then cooled to 1) lets them spread
/// over every mode before the ordinary burn-in; the posteriors of this model are often bimodal
/// (a metal-rich and a metal-poor, older or dustier solution). Thread-safe (the model is immutable); one fit uses TBB threads over walkers.

#include <array>
#include <cstdint>

#include "cubeflow/sampling/ensemble.hpp"
#include "cubeflow/sim/digs.hpp"

namespace cubeflow::sim {

/// \brief Settings of one fit.
struct DigsFitOptions {
  int n_walkers = 40;
  int n_burn = 2000;
  int n_steps = 50000;  ///< integrated autocorrelation times are 100-1000 iterations
  int thin = 50;
  int n_init_draws = 4000;  ///< prior draws among which the walkers start
  double de_fraction = 0.5; ///< share of differential-evolution moves (EnsembleOptions::de_fraction)
  /// Annealed burn-in before n_burn: anneal_stages runs of anneal_iterations iterations on the
  /// likelihood raised to beta, beta geometric from anneal_beta0 to 1 (0 stages: none).
  int anneal_stages = 8, anneal_iterations = 300;
  double anneal_beta0 = 1e-3;
  /// After each of the two burn-in rounds (n_burn / 2 iterations each), walkers whose log
  /// posterior is more than stuck_gap below the best walker's are moved next to good walkers.
  /// 15: the log posterior of a 5-parameter Gaussian posterior's samples lies within 10.3 of
  /// its peak 99.9 % of the time.
  double stuck_gap = 15;
  uint64_t seed = 0;
  bool parallel = true;
};

/// \brief The marginal posteriors of one spectrum, per parameter in DigsTheta order (tau in Gyr).
struct DigsPosterior {
  std::array<double, kDigsNumParams> q025{}, q16{}, q50{}, q84{}, q975{};
  std::array<double, kDigsNumParams> autocorr{};  ///< integrated autocorrelation time, iterations
  double acceptance = 0;
  int n_reset = 0;      ///< walkers moved off stranded positions during burn-in
  int n_steps = 0;      ///< kept iterations (before thinning): compare with 50 x autocorr
  double seconds = 0;   ///< wall time of the fit
  sampling::EnsembleChain chain;  ///< in sampling coordinates (log10 tau)
};

/// log posterior (up to a constant) at sampling coordinates `c` (log_mass, log_z, dust, t_age,
/// log10 tau): LogLikelihood inside the prior box, -infinity outside.
double DigsLogPosterior(const DigsModel& model, std::span<const double> c, const double* flux);

/// Samples the posterior of `flux` (model.wave().size() values).
Result<DigsPosterior> FitDigsMcmc(const DigsModel& model, const double* flux, const DigsFitOptions& options);

}  // namespace cubeflow::sim
