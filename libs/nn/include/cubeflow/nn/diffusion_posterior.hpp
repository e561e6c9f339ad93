#pragma once
/// \file diffusion_posterior.hpp
/// \brief Posterior sampling with the diffusion prior through the differentiable forward model
/// (issue #19 item 3, paper 001; docs/diffusion.md "Posterior sampling"). No libtorch here.
///
/// The state is the prior's z-scored history vector (32) plus two standardised dust
/// coordinates: v_bc = (ln tau_bc - mu) / s and v_ism = (tau_ism - mu) / s, whose prior is the
/// Gaussian approximation of the simulator's dust prior (log-uniform tau_bc: mean and sd of
/// ln tau_bc; normal tau_ism). Their noised score is analytic, -v / (1 + sigma^2).
///
/// The likelihood score at noise level sigma is that of the convolved likelihood approximation
/// (CLA) of paper 001, N(y | S(x_t), Sigma_y + sigma^2 A A^T) (A: Jacobian of the observed pixels
/// and bands with respect to the 34 state coordinates), in one of two forms (`cla`):
///  - "diagonal" (default; paper 001 appendix B.2): diag(A A^T) ~ Var S(a), a ~ N(0, I) in state
///    units, computed once per sampler; the score is one backward pass per level.
///  - "full": the whole A A^T by the Woodbury identity, (I + sigma^2 H)^-1 g with
///    g = A^T Sigma_y^-1 (y - S(x_t)) (one backward pass) and H = A^T Sigma_y^-1 A (34 x 34, from a
///    finite-difference Jacobian in float32 every `jacobian_every` levels). The score of a Gaussian
///    at least sigma wide in every direction; 34 extra renders per update. Not better than the
///    diagonal form in the measurements so far (docs/diffusion.md).
/// Both are capped (`clip`) at clip sqrt(34) / sigma, the scale of a noised score at level sigma:
/// without the cap, states in the nonlinear regime of the first levels (and a stale H) run away.
/// docs/diffusion.md ("Posterior sampling") gives the figures of both and what is not met.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/nn/diffusion.hpp"
#include "cubeflow/nn/history.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::diffusion {

/// State coordinates: the 32 of the history vector and the 2 dust coordinates.
constexpr int kPosteriorDim = kHistoryDim + 2;

/// \brief Settings of the posterior sampler.
struct PosteriorOptions {
  int64_t n_samples = 100;
  int64_t steps = 100;            ///< noise levels (geometric from the prior's sigma_max to sigma_min)
  int64_t corrector_steps = 1;    ///< Langevin steps per level
  double snr = 0.16;              ///< signal-to-noise ratio of the Langevin corrector
  /// How A A^T enters the CLA covariance Sigma_y + sigma^2 A A^T: "full" (Woodbury with H from a
  /// finite-difference Jacobian every `jacobian_every` levels), "diagonal" (paper 001 appendix
  /// B.2: diag(A A^T) ~ the variance of S over states drawn from N(0, I), computed once), or
  /// "none" (the plain likelihood score, clipped).
  std::string cla = "diagonal";
  int64_t jacobian_every = 4;     ///< noise levels between updates of H (finite-difference Jacobian)
  double likelihood_weight = 1;   ///< 0 returns the prior (the tests' baseline)
  /// The likelihood score's norm is capped at clip sqrt(34) / sigma (a noised score's scale at
  /// level sigma), against a stale H; 0: no cap.
  double clip = 1;
  /// Pixels closer than this (A) to a nebular line are left out of the likelihood (the 16-bin
  /// parametrisation cannot fit the lines: docs/diffusion.md); 0 keeps them. Only when the
  /// forward model has nebular lines.
  double line_mask = 15;
  /// Refinement after the reverse diffusion: this many steps of preconditioned Langevin dynamics
  /// on the exact likelihood (no CLA, no cap) times the prior at noise level `refine_sigma`, with
  /// the preconditioner (H + I / refine_scale^2)^-1 (H = A^T Sigma_y^-1 A from a finite-difference
  /// Jacobian, refreshed every `jacobian_every` steps). The reverse diffusion alone leaves samples
  /// that fit the data worse than the truth does (docs/diffusion.md, "chi^2 rank"); 0: none.
  int64_t refine_steps = 30;
  double refine_sigma = 0.1;   ///< prior noise level of the refinement (z units)
  double refine_step = 0.3;    ///< Langevin step in the preconditioned metric (0, 1]
  double refine_scale = 0.05;  ///< prior scale of the preconditioner (z units; keep it below refine_sigma)
  /// Then this many Metropolis-adjusted Langevin (MALA) steps on the same target p_sigma(x)
  /// p(y | x) (sigma = refine_sigma), each chain with the fixed preconditioner (H + P)^-1 of its
  /// starting state: H as above, P the prior's own curvature (finite differences of its score,
  /// eigenvalues clipped to [1, 1 / refine_scale^2]), so that the directions the data leave free
  /// move on the prior's scale, not refine_scale's. The accept/reject step keeps the target
  /// exact whatever the step. The prior's log-density difference between two states is the line
  /// integral of its score (4-point Gauss-Lobatto along the segment). The step size is adapted to
  /// `adjust_accept` during the first half of the steps (one size per spectrum, from the mean
  /// acceptance over the chains) and then held. 0: none (the figures before they existed).
  int64_t adjust_steps = 200;
  double adjust_accept = 0.574;  ///< target acceptance rate of the adaptation (optimal for MALA)
  /// Diagnostics: when not empty (kPosteriorDim values in state units), every chain starts the
  /// refinement and the adjusted steps here instead of at the reverse diffusion's output.
  std::vector<double> start;
  int threads = 1;                ///< libtorch threads (1: see SamplerOptions)
};

/// \brief What one Sample call did (diagnostics).
struct SampleStats {
  double acceptance = 0;   ///< mean acceptance of the Metropolis-adjusted steps after the adaptation
  double adjust_step = 0;  ///< their step size after the adaptation
};

/// \brief An observation on the forward model's output grid (ForwardModel::wave()), normalised
/// as the inference nodes see it (mean 1 over the normalisation window).
struct Observation {
  std::vector<double> flux;
  std::vector<double> variance;       ///< per pixel; non-finite or <= 0: the pixel is not used
  std::vector<double> phot;           ///< optional: normalised band fluxes in ForwardModel::bands() order
  std::vector<double> phot_variance;  ///< with phot; non-finite or <= 0: the band is not used
};

/// \brief One posterior sample.
struct PosteriorDraw {
  History x{};  ///< log10 formed-mass fraction (sum of 10^x is 1; empty bins at kLogMassFloor) and [Z/H] per bin
  double tau_bc = 0, tau_ism = 0;
  std::array<double, kNumBins> light_v{};  ///< intrinsic V-band light fractions per bin (sum 1)
};

/// \brief Quantities derived from one draw: mass- and V-light-weighted mean log10(age/yr) (age
/// bin centres, as inference.cnn's eq. 6) and [Z/H] (eq. 7), the mass fractions, and the cosmic
/// times t10..t90 (Gyr after the Big Bang; AssemblyTimes) of the parametrisation.
struct DerivedQuantities {
  double mw_logage = 0, lw_logage = 0, mw_zh = 0, lw_zh = 0;
  std::array<double, sim::kNumMassPercentiles> t{};
  std::array<double, kNumBins> mass_frac{};
};
DerivedQuantities Derive(const PosteriorDraw& d, double t_universe);

/// \brief Posterior sampler of one prior and one forward model. Sample is const and may be
/// called from several threads (libtorch's thread count is process-wide: set by each call).
class PosteriorSampler {
 public:
  /// The forward model of a prior: its metadata's `library_config` (the simulator config of its
  /// training set), noise off. The SSPs come from that config (built-in unless it names others).
  static Result<std::shared_ptr<const sim::ForwardModel>> ForwardModelOf(const PriorModel& prior);
  static Result<PosteriorSampler> Make(std::shared_ptr<const PriorModel> prior,
                                       std::shared_ptr<const sim::ForwardModel> forward_model);
  PosteriorSampler(PosteriorSampler&&) noexcept;
  PosteriorSampler& operator=(PosteriorSampler&&) noexcept;
  ~PosteriorSampler();

  /// n_samples draws of p(history, dust | obs). Errors: sizes that do not match the grid or
  /// bands, no usable pixel, a non-finite state (the message says at which noise level).
  Result<std::vector<PosteriorDraw>> Sample(const Observation& obs, const PosteriorOptions& options,
                                            uint64_t seed, SampleStats* stats = nullptr) const;
  /// The normalised model spectrum and band fluxes of a draw (posterior predictive checks), and
  /// the V-band light fractions per bin of its history; any pointer may be null.
  void Render(const PosteriorDraw& d, std::vector<double>* flux, std::vector<double>* phot,
              std::array<double, kNumBins>* light_v = nullptr) const;
  /// 1 for the pixels the likelihood uses when the variance allows (away from nebular lines).
  std::vector<char> LineMask(double line_mask) const;

  const sim::ForwardModel& forward_model() const;
  const PriorModel& prior() const;
  double t_universe() const;
  /// The Gaussian approximation of the dust prior: mean and sd of ln tau_bc and of tau_ism.
  std::array<double, 4> dust_prior() const;

 private:
  struct Impl;
  explicit PosteriorSampler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// \brief The posterior check on mock spectra (issue #19 item 4): `n_spectra` held-out histories
/// DrawPriorHistory(sfh, grid, seed, i) of the forward model's config with dust DrawDust
/// (Rng(seed, i, 7)), rendered by the forward model in the bin parametrisation (the space the
/// prior models), plus Gaussian noise of sd 1 / snr per pixel (stream 8; the bands get sd
/// phot / phot_snr when phot_snr > 0, else they are not used).
struct PosteriorCheckOptions {
  int64_t n_spectra = 50;
  uint64_t seed = 0;
  double snr = 50;
  double phot_snr = 0;
  /// The truths' histories: false, draws of the training prior (DrawPriorHistory); true, samples
  /// of the trained prior model itself (PriorModel::Sample, 300 levels, seed `seed`). With the
  /// model's own samples, the posterior the sampler targets is the Bayesian one for these truths,
  /// so a shortfall in the chi^2 rank is the sampler's, not the prior model's.
  bool truth_from_model = false;
  /// Every chain of the refinement and adjusted steps starts at the truth's state (sampler.start)
  /// instead of the reverse diffusion's output: with the right target the truth stays typical
  /// (chi^2 rank near 0.5), so a low rank from the diffusion's output is the chains' failure to
  /// move, not a wrong target.
  bool start_at_truth = false;
  PosteriorOptions sampler;
};

/// \brief Figures of the check. Quantities: mw_logage, lw_logage, mw_zh, lw_zh, t10 .. t90.
struct PosteriorCheck {
  static const std::vector<std::string>& Names();
  /// Per quantity: R^2 = 1 - SSE / SST of the posterior medians against the truths.
  std::vector<double> r2;
  /// Per quantity, per level 0.1 .. 0.9: fraction of spectra whose truth lies in the central
  /// credible interval of that level.
  std::vector<std::array<double, 9>> coverage;
  /// Per spectrum: rms of (y - S(posterior median state)) / sigma over the pixels the likelihood
  /// used (line-masked); their median.
  std::vector<double> residual_rms;
  double median_residual_rms = 0;
  /// Per spectrum: the median over its samples of each sample's rms of (y - S(sample)) / sigma on
  /// the same pixels (1 + O(34 / n_pixels) for samples of the posterior); their median.
  double median_sample_residual_rms = 0;
  /// The same rms for the truth's noise-free spectrum (1 up to the noise); their median. The truth
  /// is a prior draw, so given the data it is exchangeable with a posterior sample: a sampler of
  /// the posterior gives samples that fit as well as the truth.
  double median_truth_residual_rms = 0;
  /// Per spectrum: the fraction of samples whose chi^2 (same pixels) is below the truth's; their
  /// mean. For posterior samples the truth's rank is uniform, so this is 0.5 +- 0.29 / sqrt(n);
  /// well above 0.5, the samples fit better than the truth (the likelihood overweighted); well
  /// below, worse (the sampler does not reach the posterior's likelihood).
  double mean_chi2_rank = 0;
  /// With adjust_steps > 0: the mean over spectra of the acceptance after the adaptation and the
  /// median of the adapted step size.
  double mean_acceptance = 0, median_adjust_step = 0;
  double seconds_per_spectrum = 0;
  int64_t failed = 0;  ///< spectra whose sampling failed (left out of the figures)
  /// The largest |coverage - level| of quantity k over the 9 levels.
  double MaxCoverageError(size_t k) const;
};
Result<PosteriorCheck> CheckPosterior(const PosteriorSampler& sampler, const PosteriorCheckOptions& options);

/// `cubeflow evaluate PRIOR.pt --posterior N [--seed S] [--snr X] [--steps K] [--jacobian-every J]
/// [--samples M] [--line-mask A]`: prints the CheckPosterior figures of the prior's posterior
/// sampler next to those of the same sampler with likelihood weight 0 (the prior).
int PosteriorEvaluateMain(int argc, char** argv);

}  // namespace cubeflow::diffusion
