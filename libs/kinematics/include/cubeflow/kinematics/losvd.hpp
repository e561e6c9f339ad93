#pragma once
/// \file losvd.hpp
/// \brief The Gauss-Hermite line-of-sight velocity distribution (LOSVD) of penalised pixel
/// fitting (van der Marel & Franx 1993; Cappellari & Emsellem 2004), its analytic Fourier
/// transform (Cappellari 2017, eq. 38) and band-limited kernel tables for convolving templates
/// sampled on a log-lambda grid.
///
/// Units: velocities in template pixels (v / velscale, velscale = c * d ln(lambda) of the
/// template grid), frequencies in radians per template pixel. Convention: the kernel of a
/// positive velocity moves a template towards longer wavelengths (higher pixel index);
/// the Fourier transform is f^(w) = integral f(x) exp(-i w x) dx, so
///   L^(w) = exp(-i w v - (sigma w)^2 / 2) * [1 + sum_{n>=3} (-i)^n h_n H_n(sigma w)],
/// with H_n the normalised Hermite polynomials of van der Marel & Franx (1993).
///
/// Thread-safety: KernelTable is a per-call workspace (not shared); the free functions are pure.

#include <complex>
#include <cstdint>
#include <vector>

namespace cubeflow::kinematics {

/// Largest number of Gauss-Hermite moments supported (V, sigma, h3 .. h6).
inline constexpr int kMaxMoments = 6;

/// \brief Gauss-Hermite LOSVD in template-pixel units.
struct LosvdParams {
  double v = 0;          ///< mean velocity, pixels
  double sigma = 1;      ///< dispersion, pixels (> 0)
  double h[kMaxMoments - 2] = {0, 0, 0, 0};  ///< h3 .. h6
  int moments = 2;       ///< 2 (Gaussian) .. 6
};

/// Normalised Hermite polynomials H_0 .. H_n at y (van der Marel & Franx 1993, eq. A3):
/// H_0 = 1, H_1 = sqrt(2) y, H_{k+1} = (sqrt(2) y H_k - sqrt(k) H_{k-1}) / sqrt(k + 1).
void HermiteNormalised(double y, int n, double* out);

/// The LOSVD in velocity space at x (pixels): exp(-y^2/2) / (sqrt(2 pi) sigma) *
/// [1 + sum h_n H_n(y)], y = (x - v) / sigma. For tests and plots.
double LosvdValue(const LosvdParams& p, double x);

/// The analytic Fourier transform L^(w) (see the file comment).
std::complex<double> LosvdFourier(const LosvdParams& p, double omega);

/// \brief Band-limited convolution kernel of one LOSVD, tabulated for fast evaluation at
/// arbitrary (fractional) offsets.
///
/// Convolving a template T sampled at integer pixels t with the LOSVD gives the continuous
/// model m(x) = sum_t T_t k(x - t), where k is the inverse transform of L^(w) W(w) over
/// |w| <= pi (the template grid's band; W = 1 up to `taper_start` * pi, a raised cosine to 0 at
/// pi, so that k decays fast; templates matched to the data's resolution carry no power
/// there). The table holds, on a grid of 1/oversample pixel over one period:
///  - k(x), and its running integral K(x) (0 far left, 1 far right), relative to the integer
///    shift round(v); K is interpolated with cubic Hermite splines (K' = k), k linearly;
///  - on request, dK/dsigma and dK/dh_n (linearly interpolated); dK/dv = -k.
/// Beyond +-half_support() pixels from the shift, k and the derivatives are below ~1e-7 of
/// their peak and are treated as 0 (K as 0 or 1). Build: a few real FFTs of
/// period * oversample points.
class KernelTable {
 public:
  KernelTable();
  ~KernelTable();
  KernelTable(const KernelTable&) = delete;
  KernelTable& operator=(const KernelTable&) = delete;

  /// Tabulates the kernel of `p`; with `derivatives`, also dK/dsigma and dK/dh_n.
  void Build(const LosvdParams& p, bool derivatives);

  /// Integer shift round(v) the table is relative to.
  int64_t shift() const { return shift_; }
  /// Half-width (pixels) beyond which k is treated as 0.
  int half_support() const { return hs_; }
  int oversample() const { return oversample_; }
  /// Number of derivative tables: sigma, then h3 .. h_moments.
  int num_derivatives() const { return nderiv_; }
  /// K far right of the support: the kernel's integral, 1 + sum_n h_n E[H_n] (h4, h6 change it).
  double plateau() const { return plateau_; }
  /// dK/dparameter far right of the support.
  double derivative_plateau(int param) const { return dplateau_[static_cast<size_t>(param)]; }

  /// K(x), x in pixels relative to shift() (0 for x < -half_support(), 1 above).
  double Cumulative(double x) const;
  /// k(x) relative to shift().
  double Density(double x) const;
  /// d K(x) / d parameter (0: sigma, 1..: h3..), relative to shift().
  double CumulativeDerivative(int param, double x) const;

  /// \brief Fills out[j] = K(phi + j - half_support()) for j in [0, 2 * half_support() + 1),
  /// 0 <= phi < 1: the values one data-pixel edge needs (one fractional phase, consecutive
  /// integer offsets). `which` = -1 for K, -2 for k, >= 0 for a derivative table.
  void Row(int which, double phi, double* out) const;

 private:
  void Allocate(int period);
  void Transform(const std::vector<std::complex<double>>& spectrum, bool cumulative, std::vector<double>& phase_major);

  struct Fft;
  Fft* fft_ = nullptr;
  int64_t shift_ = 0;
  int hs_ = 0, period_ = 0, oversample_ = 4, nderiv_ = 0;
  double plateau_ = 1;
  std::vector<double> dplateau_;
  // Tables in phase-major order: value at x = -period/2 + j + m / oversample is
  // table[m * (period + 1) + j], m in [0, oversample], row `oversample` = row 0 shifted by one.
  std::vector<double> cum_, dens_;
  std::vector<std::vector<double>> deriv_;
  std::vector<std::complex<double>> spec_;
  std::vector<double> time_;
};

}  // namespace cubeflow::kinematics
