#pragma once
/// \file fitter.hpp
/// \brief Penalised pixel fitting of the stellar line-of-sight velocity distribution of one
/// spectrum (Cappellari & Emsellem 2004; Cappellari 2017), written for speed.
///
/// Model of data pixel i (edges e_i, e_i+1 in the galaxy's rest frame at z_sys):
///   model_i = mpoly(x_i) * sum_j w_j <T_j * L>_i + sum_l a_l P_l(x_i),
/// where <.>_i is the mean over the pixel of the templates convolved with the Gauss-Hermite
/// LOSVD L(V, sigma, h3, h4, ...), w_j >= 0 (non-negative least squares), P_l Legendre
/// polynomials of x in [-1, 1] across the window (additive, free), mpoly = 1 + sum_k m_k P_k
/// (multiplicative, fitted with the LOSVD). The pixel mean is exact: the data are fitted on
/// their own pixels (e.g. the linear MUSE grid, observed frame), so their noise stays
/// independent and no log-rebinning of the data is needed. The kernel is the continuous
/// Gauss-Hermite function for sigma >= 1 template pixel, and the band-limited one from the
/// analytic Fourier transform below (see losvd.hpp).
///
/// Minimisation (variable projection): Levenberg-Marquardt on the nonlinear parameters
/// (V, sigma, h3.., m_k) with analytic Jacobians (Kaufman's approximation); at every trial point
/// the linear parameters come from an exact Lawson-Hanson NNLS over *all* templates, warm
/// started from the previous point, in which only the templates that enter the solution are
/// ever convolved (the others are priced through the adjoint of the convolution). The
/// penalty of Cappellari & Emsellem (2004, eqs. 8-9) biases h3.. towards 0:
/// chi2_p = chi2 (1 + bias^2 sum h_n^2). (pPXF's code adds bias * robust_sigma * D to every
/// residual, which is this up to a noise term; that term also puts a cone at h = 0.)
///
/// Outliers: after convergence, pixels whose residual exceeds clip_sigma times the rms
/// (scaled to chi2/dof = 1) are masked and the fit repeated (at most max_clip_iterations
/// times; a pixel can come back). Errors: formal, from the Jacobian at the solution with the
/// linear parameters profiled out, optionally scaled by sqrt(chi2/dof) (as GIST/nGIST do);
/// optional Monte-Carlo errors from refits of the best fit plus noise drawn from the variance.
///
/// Velocities: V in the pPXF convention, c ln(lambda_obs / lambda_sys) relative to z_sys
/// (for |V| < 500 km/s within 0.4 km/s of c (lambda_obs / lambda_sys - 1)).
///
/// Thread-safety: LosvdFitter is immutable; Fit() may run concurrently (each call has its own
/// workspace).

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cubeflow/kinematics/levenberg_marquardt.hpp"
#include "cubeflow/kinematics/losvd.hpp"
#include "cubeflow/kinematics/masks.hpp"
#include "cubeflow/kinematics/templates.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::kinematics {

/// \brief Per-bin flags of a kinematic fit (the KIN_FLAGS map; values never change once released).
enum KinematicsFlag : uint32_t {
  kKinSigmaBelowInstrument = 1u << 0,  ///< sigma below the instrumental dispersion: resolved only through the LSF model
  kKinAtBound = 1u << 1,               ///< V, sigma or an h_n ended on its bound (sigma at its floor: unresolved)
  kKinNotConverged = 1u << 2,          ///< the minimiser stopped at its iteration limit
  kKinManyClipped = 1u << 3,           ///< more than 10 % of the good pixels were clipped as outliers
  kKinCoarserTemplates = 1u << 4,      ///< templates coarser than the data: sigma corrected in quadrature
};

/// \brief Settings of a fit (shared by all bins).
struct FitOptions {
  double wave_min = 4800, wave_max = 5500;  ///< rest-frame window, Angstrom (within the templates' window)
  double z_sys = 0;          ///< systemic redshift (observed-frame masks)
  int moments = 4;           ///< 2 (V, sigma) .. 6 (h3 .. h6)
  int degree = 8;            ///< additive Legendre degree (-1: none)
  int mdegree = 0;           ///< multiplicative Legendre degree (0: none)
  double v_start = 0;        ///< km/s, relative to z_sys
  double sigma_start = 100;  ///< km/s
  double v_range = 1000;     ///< V within v_start +- v_range
  double sigma_min = 0;      ///< km/s; 0: 1 % of the template pixel (as pPXF)
  double sigma_max = 1000;   ///< km/s
  double h_max = 0.3;        ///< |h_n| bound
  double bias = -1;          ///< penalty; < 0: pPXF's default 0.7 sqrt(500 / n_good)
  double clip_sigma = 3;     ///< outlier threshold in rms; <= 0: no clipping
  int max_clip_iterations = 5;
  double min_good_fraction = 0.5;  ///< of the window's pixels, after masks and clipping
  int mc = 0;                ///< Monte-Carlo realisations for errors (0: none)
  uint64_t seed = 1;         ///< Monte-Carlo seed (combined with the spectrum id)
  bool scale_errors = true;  ///< multiply formal errors by sqrt(chi2/dof)
  std::vector<MaskRegion> masks;  ///< emission/sky/user regions
  LmOptions lm;
};

/// \brief One spectrum to fit. Pixel edges are in the galaxy's rest frame at z_sys (observed
/// edges / (1 + z_sys)), air, Angstrom, increasing; values in any unit.
struct SpectrumView {
  std::span<const double> edges;     ///< n + 1
  std::span<const double> flux;      ///< n
  std::span<const double> variance;  ///< n (> 0 where usable)
  std::span<const uint8_t> mask;     ///< n, nonzero = bad; may be empty
  std::span<const uint8_t> good;     ///< optional explicit good-pixel list (n, nonzero = fit); replaces the masks
  int64_t id = 0;                    ///< for messages and the Monte-Carlo seed
};

/// \brief Result of one fit.
struct FitResult {
  /// V, sigma (km/s), h3 .. h6; NaN beyond `moments`.
  std::array<double, kMaxMoments> params{};
  std::array<double, kMaxMoments> errors{};     ///< formal (scaled if scale_errors)
  std::array<double, kMaxMoments> mc_errors{};  ///< Monte-Carlo standard deviations (NaN if mc = 0)
  double sigma_fit = 0;     ///< sigma before a coarser-templates correction
  double chi2 = 0;          ///< chi2 / dof (no penalty)
  double bias = 0;          ///< penalty used
  int n_window = 0, n_good = 0, n_clipped = 0;
  int iterations = 0, evaluations = 0;
  uint32_t flags = 0;       ///< KinematicsFlag
  std::vector<double> weights;  ///< per template (light fractions in the window, sum ~ 1)
  std::vector<double> add_poly, mult_poly;
  int64_t first_pixel = 0;      ///< index of the first window pixel in the input
  std::vector<double> bestfit;  ///< model on the window pixels (input units)
  std::vector<uint8_t> good;    ///< window pixels used in the final fit
  double snr = 0;               ///< median signal / rms residual over the good pixels
};

/// \brief Fits LOSVDs with one template set and one set of options.
class LosvdFitter {
 public:
  /// Checks the options against the templates (window inside the templates' window, bounds,
  /// moments); the error says which setting to change.
  static Result<LosvdFitter> Make(std::shared_ptr<const TemplateSet> templates, const FitOptions& options);

  /// Fits one spectrum. Errors (not flags) for spectra that cannot be fitted: too few good
  /// pixels, no overlap with the window, inconsistent sizes; the message says what to do.
  Result<FitResult> Fit(const SpectrumView& spectrum) const;

  const TemplateSet& templates() const { return *templates_; }
  const FitOptions& options() const { return options_; }

 private:
  std::shared_ptr<const TemplateSet> templates_;
  FitOptions options_;
};

}  // namespace cubeflow::kinematics
