#pragma once
/// \file spectral_ops.hpp
/// \brief Spectral operations shared by the forward model and the rest-framing node:
/// flux-conserving resampling (with variance propagation), Gaussian convolution to a target
/// resolution (constant FWHM, velocity dispersion, or any sigma(lambda)), and air/vacuum
/// wavelength conversion.
///
/// Conventions: wavelengths in Angstrom; fluxes are flux *densities* per Angstrom (f_lambda),
/// so "flux conserving" means that the integral of f_lambda d(lambda) over any union of output
/// pixels equals the integral of the piecewise-constant input over the same range.
/// All functions are pure (no shared state) and therefore thread-safe; the precomputed
/// operators (GaussianBroadener) are immutable after construction and may be applied from many
/// threads at once.
///
/// Errors (docs/errors.md): nothing here fails on data values (NaN propagates). Violated
/// preconditions (sizes that must agree, fewer than two pixels, grids that do not increase) are
/// programming errors and throw cubeflow::Error naming the check.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::spectral {

/// Speed of light, km/s.
inline constexpr double kSpeedOfLightKms = 299792.458;
/// FWHM / sigma of a Gaussian, 2 sqrt(2 ln 2).
inline constexpr double kFwhmToSigma = 2.3548200450309493;

// ------------------------------------------------------------------------------------------
// Wavelength grids
// ------------------------------------------------------------------------------------------

/// Pixel centres of an axis (Angstrom), n values.
std::vector<double> AxisCentres(const WavelengthAxis& axis);
/// Pixel edges of an axis (Angstrom), n + 1 values: halfway between centres in lambda for a
/// linear axis, in ln(lambda) for a log axis.
std::vector<double> AxisEdges(const WavelengthAxis& axis);
/// Pixel edges (n + 1) from strictly increasing pixel centres (n >= 2): midpoints inside, and
/// the first/last edges mirrored about the end centres. Throws cubeflow::Error if n < 2.
std::vector<double> EdgesFromCentres(std::span<const double> centres);
/// A log-lambda axis (natural log) from lambda_min to at least lambda_max with the given
/// velocity step per pixel (km/s).
WavelengthAxis LogAxis(double lambda_min, double lambda_max, double velscale_kms, bool air = true);

// ------------------------------------------------------------------------------------------
// Flux-conserving resampling
// ------------------------------------------------------------------------------------------

/// \brief Flux-conserving rebinning of a piecewise-constant spectrum.
///
/// `in_edges` (n_in + 1, increasing) bound the input pixels holding `flux` (n_in);
/// `out_edges` (n_out + 1, increasing) bound the output pixels. Each output value is the
/// overlap-weighted mean of the input pixels it covers: out_j = sum_i w_ij f_i with
/// w_ij = overlap(i, j) / width(j). An output pixel not fully covered by the input gets
/// `fill` (default NaN). If `variance` is non-empty it is propagated as
/// var_j = sum_i w_ij^2 var_i (input pixels assumed independent; the output pixels become
/// correlated when upsampling, which this ignores). NaN input pixels make the output NaN.
/// Cost O(n_in + n_out). Throws cubeflow::Error on inconsistent sizes.
void ResampleEdges(std::span<const double> in_edges, std::span<const double> flux,
                   std::span<const double> variance, std::span<const double> out_edges,
                   std::span<double> out_flux, std::span<double> out_variance,
                   double fill = std::numeric_limits<double>::quiet_NaN());

/// \brief Result of resampling onto an axis.
/// Sparse rows of a linear map on spectra: out_j = sum_t w[offset[j] + t] * in[first[j] + t]
/// for t < length[j]. A row of length 0 has no defined value (e.g. an uncovered pixel).
struct SparseRows {
  std::vector<uint32_t> first, length;
  std::vector<size_t> offset;
  std::vector<double> w;
  size_t rows() const { return first.size(); }
  /// out_j = sum_t w * in[first + t] (with `squared`, sum_t w^2 * in: the variance of
  /// independent inputs); rows of length 0 get `fill`.
  void Apply(std::span<const double> in, std::span<double> out, double fill, bool squared = false) const;
};

/// The weights ResampleEdges applies, as rows (one per output pixel; empty where the output
/// pixel is not fully covered), so that the noise of a later linear step can be propagated
/// exactly (GaussianBroadener::ApplyVarianceAfter).
SparseRows ResampleWeights(std::span<const double> in_edges, std::span<const double> out_edges);

struct ResampledSpectrum {
  std::vector<double> flux;
  std::vector<double> variance;  ///< empty unless a variance was given
};

/// \brief Resamples a spectrum given by pixel centres (any increasing, non-uniform grid) onto
/// a linear or log-lambda WavelengthAxis, conserving flux; see ResampleEdges.
ResampledSpectrum Resample(std::span<const double> in_wave, std::span<const double> flux,
                           const WavelengthAxis& out_axis,
                           std::span<const double> variance = {},
                           double fill = std::numeric_limits<double>::quiet_NaN());

/// \brief Same, onto arbitrary output pixel centres (increasing).
ResampledSpectrum Resample(std::span<const double> in_wave, std::span<const double> flux,
                           std::span<const double> out_wave,
                           std::span<const double> variance = {},
                           double fill = std::numeric_limits<double>::quiet_NaN());

// ------------------------------------------------------------------------------------------
// Gaussian convolution
// ------------------------------------------------------------------------------------------

/// \brief A precomputed, truncated Gaussian convolution operator on one wavelength grid.
///
/// out_j = sum_i K_ij f_i with K_ij proportional to exp(-(lambda_i - lambda_j)^2 / (2 s_j^2))
/// * dlambda_i, normalised so that sum_i K_ij = 1 (a flat spectrum stays flat; line fluxes are
/// conserved up to the variation of sigma across the line). The kernel is truncated at
/// `truncate` sigma (default 5) and renormalised, so edge pixels are averages over what is
/// available. Pixels whose sigma is below 0.05 of their width are copied unchanged.
/// Build: O(N * kernel); Apply: O(N * kernel). Immutable and thread-safe after construction.
class GaussianBroadener {
 public:
  GaussianBroadener() = default;

  /// sigma(lambda) in Angstrom, evaluated at each pixel centre of `wave` (increasing).
  static GaussianBroadener FromSigma(std::span<const double> wave,
                                     const std::function<double(double)>& sigma_angstrom,
                                     double truncate = 5.0);
  /// Constant FWHM in Angstrom.
  static GaussianBroadener ConstantFwhm(std::span<const double> wave, double fwhm_angstrom,
                                        double truncate = 5.0);
  /// Velocity dispersion in km/s: sigma_lambda = lambda * sigma_v / c (works on linear and
  /// log grids alike).
  static GaussianBroadener Velocity(std::span<const double> wave, double sigma_kms,
                                    double truncate = 5.0);
  /// From the current resolution FWHM_in(lambda) to the target FWHM_out(lambda) (both in
  /// Angstrom): sigma = sqrt(max(FWHM_out^2 - FWHM_in^2, 0)) / 2.3548.
  static GaussianBroadener ToResolution(std::span<const double> wave,
                                        const std::function<double(double)>& fwhm_in,
                                        const std::function<double(double)>& fwhm_out,
                                        double truncate = 5.0);

  size_t size() const { return start_.size(); }
  /// Convolves `in` (size()) into `out` (size(); must not alias `in`). Other sizes are a
  /// programming error: cubeflow::Error (as for ApplyVariance and ApplyVarianceAfter).
  void Apply(std::span<const double> in, std::span<double> out) const;
  void Apply(std::span<const float> in, std::span<float> out) const;
  /// Propagates independent per-pixel variances: var_j = sum_i K_ij^2 var_i.
  void ApplyVariance(std::span<const double> in_var, std::span<double> out_var) const;
  /// Variance of this broadening applied after the linear map `pre` (size() rows) of
  /// independent pixels with variances `pre_in_var`: var_j = sum_i (sum_k K_jk P_ki)^2 var_i,
  /// which counts the covariance `pre` gives its neighbouring outputs (a rebinning correlates
  /// them; ApplyVariance on its marginal variances would underestimate the noise by up to 2x).
  /// A row of `pre` that is empty contributes K_jk^2 fallback_var[k], as if independent.
  void ApplyVarianceAfter(const SparseRows& pre, std::span<const double> pre_in_var,
                          std::span<const double> fallback_var, std::span<double> out_var) const;
  /// Convenience: returns the convolved copy.
  std::vector<double> operator()(std::span<const double> in) const;

 private:
  std::vector<uint32_t> start_;   // first input index of each output pixel
  std::vector<uint32_t> length_;  // number of kernel taps
  std::vector<size_t> offset_;    // into weights_
  std::vector<double> weights_;
};

/// Convolves with a constant FWHM (Angstrom). One-shot convenience for GaussianBroadener.
std::vector<double> ConvolveFwhm(std::span<const double> wave, std::span<const double> flux,
                                 double fwhm_angstrom);
/// Convolves with a velocity dispersion (km/s). One-shot convenience.
std::vector<double> ConvolveVelocity(std::span<const double> wave, std::span<const double> flux,
                                     double sigma_kms);
/// Convolves with sigma(lambda) (Angstrom). One-shot convenience.
std::vector<double> ConvolveSigma(std::span<const double> wave, std::span<const double> flux,
                                  const std::function<double(double)>& sigma_angstrom);

/// MUSE WFM line-spread-function FWHM in Angstrom at `lambda` (Angstrom): the polynomial of
/// Bacon et al. (2017, A&A 608, A1, eq. 8), 5.866e-8 l^2 - 9.187e-4 l + 6.040, i.e. about
/// 2.98 A at 4800 A, 2.55 A at 6500 A, 2.48 A at 7000 A.
double MuseLsfFwhm(double lambda);

// ------------------------------------------------------------------------------------------
// Air / vacuum
// ------------------------------------------------------------------------------------------

/// Refractive index of standard air at a vacuum wavelength (Angstrom), Ciddor (1996) as
/// given by Morton (2000): n = 1 + 8.34254e-5 + 2.406147e-2 / (130 - s^2)
/// + 1.5998e-4 / (38.9 - s^2), s = 1e4 / lambda_vac. Valid above ~2000 A.
double AirRefractiveIndex(double lambda_vac);
/// Vacuum -> air (Angstrom). Below 2000 A the wavelength is returned unchanged (IAU convention).
double VacuumToAir(double lambda_vac);
/// Air -> vacuum (Angstrom), inverse of VacuumToAir to < 1e-8 A (Newton iteration).
double AirToVacuum(double lambda_air);

}  // namespace cubeflow::spectral
