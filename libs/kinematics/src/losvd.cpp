// Gauss-Hermite LOSVD and band-limited kernel tables. See losvd.hpp.
#include "cubeflow/kinematics/losvd.hpp"

#include <unsupported/Eigen/FFT>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>

namespace cubeflow::kinematics {

namespace {

constexpr double kSqrt2 = std::numbers::sqrt2;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
/// Below this dispersion (template pixels) the kernel is the band-limited one from the analytic
/// Fourier transform (a sampled Gaussian would alias); above it, the continuous Gauss-Hermite
/// function is used (its aliases are below 1e-4 of the band for sigma >= 1 pixel).
constexpr double kAnalyticMinSigma = 1.0;
/// The band-limiting taper starts at this fraction of the template grid's Nyquist frequency.
constexpr double kTaperStart = 0.6;
/// FFT period (pixels) of the band-limited path; its kernel decays to 1e-6 within ~45 pixels.
constexpr int kFftPeriod = 128;
/// Relative level below which the band-limited kernel's tails are cut.
constexpr double kTailLevel = 1e-6;

/// Monomial coefficients of the normalised Hermite polynomials H_0..H_6 (index [n][k] of y^k).
struct HermiteCoefficients {
  double c[kMaxMoments + 1][kMaxMoments + 1] = {};
  double mean[kMaxMoments + 1] = {};  ///< E[H_n(t)] for t ~ N(0, 1)
  HermiteCoefficients() {
    c[0][0] = 1;
    c[1][1] = kSqrt2;
    for (int n = 1; n < kMaxMoments; ++n) {
      for (int k = 0; k <= kMaxMoments; ++k) {
        double v = -std::sqrt(static_cast<double>(n)) * c[n - 1][k];
        if (k > 0) v += kSqrt2 * c[n][k - 1];
        c[n + 1][k] = v / std::sqrt(static_cast<double>(n + 1));
      }
    }
    // E[t^k] = (k-1)!! for even k
    double moment[kMaxMoments + 1] = {1, 0, 1, 0, 3, 0, 15};
    for (int n = 0; n <= kMaxMoments; ++n)
      for (int k = 0; k <= kMaxMoments; ++k) mean[n] += c[n][k] * moment[k];
  }
};
const HermiteCoefficients& Coeffs() {
  static const HermiteCoefficients h;
  return h;
}

/// I_k(y) = integral_{-inf}^{y} t^k phi(t) dt for k = 0..kMaxMoments.
void TruncatedMoments(double y, double phi, double* out) {
  out[0] = 0.5 * std::erfc(-y / kSqrt2);
  out[1] = -phi;
  double ypow = 1;  // y^{k-1}
  for (int k = 2; k <= kMaxMoments; ++k) {
    ypow *= y;
    out[k] = -ypow * phi + (k - 1) * out[k - 2];
  }
}

/// C-infinity taper: 1 below kTaperStart * pi, 0 at pi.
double Taper(double omega) {
  const double a = kTaperStart * std::numbers::pi;
  if (omega <= a) return 1.0;
  const double t = (omega - a) / (std::numbers::pi - a);
  if (t >= 1) return 0.0;
  const double e0 = std::exp(-1.0 / t), e1 = std::exp(-1.0 / (1.0 - t));
  return 1.0 - e0 / (e0 + e1);
}

/// Value, d/dsigma and d/dh_n of L^(w) for the LOSVD centred at v (pixels).
void FourierWithDerivatives(const LosvdParams& p, double v, double omega, std::complex<double>* val,
                            std::complex<double>* dsig, std::complex<double>* dh) {
  const double s = p.sigma;
  const double y = s * omega;
  const double g = std::exp(-0.5 * y * y);
  const std::complex<double> phase = std::polar(1.0, -omega * v);
  double H[kMaxMoments + 1];
  HermiteNormalised(y, std::max(p.moments, 2), H);
  // (-i)^n: n = 3 -> i, 4 -> 1, 5 -> -i, 6 -> -1
  static const std::complex<double> kPow[kMaxMoments + 1] = {{1, 0}, {0, -1}, {-1, 0}, {0, 1}, {1, 0}, {0, -1}, {-1, 0}};
  std::complex<double> poly = 1.0, dpoly = 0.0;
  for (int n = 3; n <= p.moments; ++n) {
    poly += kPow[n] * p.h[n - 3] * H[n];
    // d H_n(s w)/ds = w sqrt(2n) H_{n-1}(s w)
    dpoly += kPow[n] * p.h[n - 3] * omega * std::sqrt(2.0 * n) * H[n - 1];
  }
  *val = phase * g * poly;
  if (dsig) *dsig = phase * g * (-s * omega * omega * poly + dpoly);
  if (dh)
    for (int n = 3; n <= p.moments; ++n) dh[n - 3] = phase * g * kPow[n] * H[n];
}

}  // namespace

void HermiteNormalised(double y, int n, double* out) {
  out[0] = 1.0;
  if (n >= 1) out[1] = kSqrt2 * y;
  for (int k = 1; k < n; ++k)
    out[k + 1] = (kSqrt2 * y * out[k] - std::sqrt(static_cast<double>(k)) * out[k - 1]) / std::sqrt(static_cast<double>(k + 1));
}

double LosvdValue(const LosvdParams& p, double x) {
  const double y = (x - p.v) / p.sigma;
  double H[kMaxMoments + 1];
  HermiteNormalised(y, std::max(p.moments, 2), H);
  double poly = 1.0;
  for (int n = 3; n <= p.moments; ++n) poly += p.h[n - 3] * H[n];
  return std::exp(-0.5 * y * y) * kInvSqrt2Pi / p.sigma * poly;
}

std::complex<double> LosvdFourier(const LosvdParams& p, double omega) {
  std::complex<double> v;
  FourierWithDerivatives(p, p.v, omega, &v, nullptr, nullptr);
  return v;
}

struct KernelTable::Fft {
  Eigen::FFT<double> fft;
  Fft() { fft.SetFlag(Eigen::FFT<double>::HalfSpectrum); }
};

KernelTable::KernelTable() : fft_(new Fft()) {}
KernelTable::~KernelTable() { delete fft_; }

void KernelTable::Allocate(int period) {
  period_ = period;
  const size_t n = static_cast<size_t>((oversample_ + 1) * (period_ + 1));
  cum_.assign(n, 0.0);
  dens_.assign(n, 0.0);
  deriv_.resize(static_cast<size_t>(nderiv_));
  for (auto& d : deriv_) d.assign(n, 0.0);
}

void KernelTable::Build(const LosvdParams& p, bool derivatives) {
  const auto& hc = Coeffs();
  const int mom = std::clamp(p.moments, 2, kMaxMoments);
  shift_ = static_cast<int64_t>(std::llround(p.v));
  const double fv = p.v - static_cast<double>(shift_);
  nderiv_ = derivatives ? 1 + (mom - 2) : 0;
  const int S = oversample_;
  double plateau = 1.0;
  for (int n = 3; n <= mom; ++n) plateau += p.h[n - 3] * hc.mean[n];
  plateau_ = plateau;
  dplateau_.assign(static_cast<size_t>(nderiv_), 0.0);
  for (int n = 3; n <= mom && derivatives; ++n) dplateau_[static_cast<size_t>(n - 2)] = hc.mean[n];

  if (p.sigma >= kAnalyticMinSigma) {
    // Continuous Gauss-Hermite kernel, tabulated over [-H, H] around the shift.
    hs_ = static_cast<int>(std::ceil(std::abs(fv) + 6.5 * p.sigma)) + 1;
    const int H = hs_ + 1;
    Allocate(2 * H);
    const double s = p.sigma;
    for (int m = 0; m <= S; ++m) {
      for (int j = 0; j <= period_; ++j) {
        const double x = -H + j + static_cast<double>(m) / S;
        const double y = (x - fv) / s;
        const double phi = std::exp(-0.5 * y * y) * kInvSqrt2Pi;
        double Hn[kMaxMoments + 1];
        HermiteNormalised(y, mom, Hn);
        double I[kMaxMoments + 1];
        TruncatedMoments(y, phi, I);
        double poly = 1.0, cum = I[0];
        double jn[kMaxMoments + 1] = {};
        for (int n = 3; n <= mom; ++n) {
          poly += p.h[n - 3] * Hn[n];
          for (int k = 0; k <= n; ++k) jn[n] += hc.c[n][k] * I[k];
          cum += p.h[n - 3] * jn[n];
        }
        const size_t at = static_cast<size_t>(m * (period_ + 1) + j);
        const double dens = phi * poly / s;
        cum_[at] = cum;
        dens_[at] = dens;
        if (derivatives) {
          deriv_[0][at] = -y * dens;  // dK/dsigma = -((x - v) / sigma) k(x)
          for (int n = 3; n <= mom; ++n) deriv_[static_cast<size_t>(n - 2)][at] = jn[n];
        }
      }
    }
    return;
  }

  // Band-limited kernel from the analytic transform (sigma below one pixel).
  const int P = kFftPeriod;
  const int N = P * S;
  spec_.assign(static_cast<size_t>(N / 2 + 1), {0.0, 0.0});
  std::vector<std::complex<double>> sig(spec_.size()), hder[kMaxMoments - 2];
  for (int n = 3; n <= mom; ++n) hder[n - 3].assign(spec_.size(), {0.0, 0.0});
  for (int m = 0; m <= P / 2; ++m) {
    const double w = 2.0 * std::numbers::pi * m / P;
    const double t = Taper(w);
    std::complex<double> val, ds, dh[kMaxMoments - 2];
    FourierWithDerivatives(p, fv, w, &val, &ds, dh);
    spec_[static_cast<size_t>(m)] = val * t;
    sig[static_cast<size_t>(m)] = ds * t;
    for (int n = 3; n <= mom; ++n) hder[n - 3][static_cast<size_t>(m)] = dh[n - 3] * t;
  }
  // Density and running integral on the natural FFT grid (x_n = n / S, periodic in P).
  std::vector<double> dens_n, cum_n;
  Transform(spec_, false, dens_n);
  Transform(spec_, true, cum_n);
  // Support: the last point where |k| exceeds kTailLevel of its peak, on either side.
  double peak = 0;
  for (double v : dens_n) peak = std::max(peak, std::abs(v));
  int reach = 0;
  for (int n = 0; n < N; ++n) {
    if (std::abs(dens_n[static_cast<size_t>(n)]) < kTailLevel * peak) continue;
    const double x = n < N / 2 ? static_cast<double>(n) / S : static_cast<double>(n) / S - P;
    reach = std::max(reach, static_cast<int>(std::ceil(std::abs(x))));
  }
  hs_ = std::min(reach + 1, P / 2 - 2);
  const int H = hs_ + 1;
  Allocate(2 * H);
  auto natural = [&](int j, int m) {  // index of x = -H + j + m / S in the natural FFT order
    const int n = (j - H) * S + m;
    return static_cast<size_t>(((n % N) + N) % N);
  };
  // K(x) = G(x) - G(x_L) + X0 (x - x_L) / P with x_L = -H (a point outside the support).
  const double gl = cum_n[natural(0, 0)];
  for (int m = 0; m <= S; ++m)
    for (int j = 0; j <= period_; ++j) {
      const size_t at = static_cast<size_t>(m * (period_ + 1) + j);
      const double x = -H + j + static_cast<double>(m) / S;
      cum_[at] = cum_n[natural(j, m)] - gl + plateau * (x + H) / P;
      dens_[at] = dens_n[natural(j, m)];
    }
  if (derivatives) {
    std::vector<std::vector<std::complex<double>>*> specs = {&sig};
    for (int n = 3; n <= mom; ++n) specs.push_back(&hder[n - 3]);
    for (size_t d = 0; d < specs.size(); ++d) {
      std::vector<double> g;
      Transform(*specs[d], true, g);
      const double dplateau = d == 0 ? 0.0 : hc.mean[d + 2];
      const double g0 = g[natural(0, 0)];
      for (int m = 0; m <= S; ++m)
        for (int j = 0; j <= period_; ++j) {
          const double x = -H + j + static_cast<double>(m) / S;
          deriv_[d][static_cast<size_t>(m * (period_ + 1) + j)] = g[natural(j, m)] - g0 + dplateau * (x + H) / P;
        }
    }
  }
}

void KernelTable::Transform(const std::vector<std::complex<double>>& spectrum, bool cumulative,
                            std::vector<double>& out) {
  const int P = kFftPeriod, S = oversample_, N = P * S;
  std::vector<std::complex<double>> y(spectrum);
  if (cumulative) {
    y[0] = 0.0;
    for (size_t m = 1; m < y.size(); ++m) {
      const double w = 2.0 * std::numbers::pi * static_cast<double>(m) / P;
      y[m] = spectrum[m] / std::complex<double>(0.0, w);
    }
  }
  out.assign(static_cast<size_t>(N), 0.0);
  fft_->fft.inv(out.data(), y.data(), N);  // scaled by 1/N
  for (double& v : out) v *= S;           // Fourier-series coefficients are X_m / P
}

namespace {
inline void HermiteBasis(double f, double* b) {
  const double f2 = f * f, f3 = f2 * f;
  b[0] = 2 * f3 - 3 * f2 + 1;
  b[1] = f3 - 2 * f2 + f;
  b[2] = -2 * f3 + 3 * f2;
  b[3] = f3 - f2;
}
}  // namespace

double KernelTable::Cumulative(double x) const {
  const int H = hs_ + 1;
  const double pos = (x + H) * oversample_;
  if (pos <= 0) return 0.0;
  if (pos >= static_cast<double>(period_) * oversample_) return plateau_;
  const int ip = static_cast<int>(std::floor(pos));
  const int j = ip / oversample_, m = ip % oversample_;
  const double f = pos - ip;
  const size_t a = static_cast<size_t>(m * (period_ + 1) + j), b = static_cast<size_t>((m + 1) * (period_ + 1) + j);
  double w[4];
  HermiteBasis(f, w);
  const double h = 1.0 / oversample_;
  return w[0] * cum_[a] + w[1] * h * dens_[a] + w[2] * cum_[b] + w[3] * h * dens_[b];
}

double KernelTable::Density(double x) const {
  const int H = hs_ + 1;
  const double pos = (x + H) * oversample_;
  if (pos < 0 || pos >= static_cast<double>(period_) * oversample_) return 0.0;
  const int ip = static_cast<int>(std::floor(pos));
  const int j = ip / oversample_, m = ip % oversample_;
  const double f = pos - ip;
  return (1 - f) * dens_[static_cast<size_t>(m * (period_ + 1) + j)] + f * dens_[static_cast<size_t>((m + 1) * (period_ + 1) + j)];
}

double KernelTable::CumulativeDerivative(int param, double x) const {
  const int H = hs_ + 1;
  const auto& t = deriv_[static_cast<size_t>(param)];
  double pos = (x + H) * oversample_;
  if (pos < 0) return 0.0;
  if (pos >= static_cast<double>(period_) * oversample_) return dplateau_[static_cast<size_t>(param)];
  const int ip = static_cast<int>(std::floor(pos));
  const int j = ip / oversample_, m = ip % oversample_;
  const double f = pos - ip;
  return (1 - f) * t[static_cast<size_t>(m * (period_ + 1) + j)] + f * t[static_cast<size_t>((m + 1) * (period_ + 1) + j)];
}

void KernelTable::Row(int which, double phi, double* out) const {
  // x = phi + j - hs for j in [0, 2 hs]: table column jj = j + 1 (x = -H + jj + m / S).
  const double pos = phi * oversample_;
  int m = static_cast<int>(pos);
  if (m >= oversample_) m = oversample_ - 1;
  const double f = pos - m;
  const int n = 2 * hs_ + 1;
  const size_t ra = static_cast<size_t>(m * (period_ + 1) + 1), rb = static_cast<size_t>((m + 1) * (period_ + 1) + 1);
  if (which == -1) {
    double w[4];
    HermiteBasis(f, w);
    const double h = 1.0 / oversample_;
    const double w1 = w[1] * h, w3 = w[3] * h;
    const double* ca = cum_.data() + ra;
    const double* cb = cum_.data() + rb;
    const double* da = dens_.data() + ra;
    const double* db = dens_.data() + rb;
    for (int j = 0; j < n; ++j) out[j] = w[0] * ca[j] + w1 * da[j] + w[2] * cb[j] + w3 * db[j];
    return;
  }
  const double* t = which == -2 ? dens_.data() : deriv_[static_cast<size_t>(which)].data();
  const double* ta = t + ra;
  const double* tb = t + rb;
  const double g = 1 - f;
  for (int j = 0; j < n; ++j) out[j] = g * ta[j] + f * tb[j];
}

}  // namespace cubeflow::kinematics
