// Spectral operations: resampling, Gaussian convolution, air/vacuum. See spectral_ops.hpp.

#include "cubeflow/spectral/spectral_ops.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "cubeflow/status.hpp"

namespace cubeflow::spectral {

namespace {

void Require(bool cond, const std::string& what) {
  if (!cond) throw Error("spectral_ops: " + what);
}

}  // namespace

std::vector<double> AxisCentres(const WavelengthAxis& axis) {
  std::vector<double> c(static_cast<size_t>(std::max<int64_t>(axis.n, 0)));
  for (size_t i = 0; i < c.size(); ++i) c[i] = axis.At(static_cast<int64_t>(i));
  return c;
}

std::vector<double> AxisEdges(const WavelengthAxis& axis) {
  const size_t n = static_cast<size_t>(std::max<int64_t>(axis.n, 0));
  std::vector<double> e(n + 1);
  for (size_t i = 0; i <= n; ++i) {
    const double v = axis.crval + (static_cast<double>(i) + 0.5 - axis.crpix) * axis.cdelt;
    e[i] = axis.log ? std::exp(v) : v;
  }
  return e;
}

std::vector<double> EdgesFromCentres(std::span<const double> c) {
  const size_t n = c.size();
  Require(n >= 2, "at least two pixel centres are needed to derive pixel edges");
  std::vector<double> e(n + 1);
  for (size_t i = 1; i < n; ++i) e[i] = 0.5 * (c[i - 1] + c[i]);
  e[0] = c[0] - (e[1] - c[0]);
  e[n] = c[n - 1] + (c[n - 1] - e[n - 1]);
  return e;
}

WavelengthAxis LogAxis(double lambda_min, double lambda_max, double velscale_kms, bool air) {
  Require(lambda_min > 0 && lambda_max > lambda_min && velscale_kms > 0,
          "LogAxis needs 0 < lambda_min < lambda_max and velscale > 0");
  WavelengthAxis a;
  a.log = true;
  a.air = air;
  a.cdelt = velscale_kms / kSpeedOfLightKms;
  a.crval = std::log(lambda_min);
  a.crpix = 1;
  a.n = static_cast<int64_t>(std::ceil((std::log(lambda_max) - a.crval) / a.cdelt)) + 1;
  return a;
}

namespace {

/// The overlap weights of flux-conserving rebinning, shared by ResampleEdges and
/// ResampleWeights: for each output pixel j, begin(j, covered), then, if it is covered,
/// add(j, k, w) for every input pixel k it overlaps (k increasing, w = overlap(k, j) / width(j))
/// and end(j). A pixel is covered if the input spans it (to 1e-9 of its width, for rounded edges).
template <class Begin, class Add, class End>
void ForEachOverlap(std::span<const double> in_edges, std::span<const double> out_edges, Begin&& begin, Add&& add,
                    End&& end) {
  const size_t n_in = in_edges.empty() ? 0 : in_edges.size() - 1;
  const size_t n_out = out_edges.empty() ? 0 : out_edges.size() - 1;
  const double lo = n_in ? in_edges.front() : 0.0;
  const double hi = n_in ? in_edges.back() : 0.0;
  size_t i = 0;
  for (size_t j = 0; j < n_out; ++j) {
    const double a = out_edges[j], b = out_edges[j + 1];
    const double width = b - a;
    const double tol = 1e-9 * std::abs(width);
    const bool covered = n_in > 0 && width > 0 && a >= lo - tol && b <= hi + tol;
    begin(j, covered);
    if (!covered) continue;
    while (i + 1 < n_in && in_edges[i + 1] <= a) ++i;
    for (size_t k = i; k < n_in && in_edges[k] < b; ++k) {
      const double overlap = std::min(b, in_edges[k + 1]) - std::max(a, in_edges[k]);
      if (overlap > 0) add(j, k, overlap / width);
    }
    end(j);
  }
}

}  // namespace

void ResampleEdges(std::span<const double> in_edges, std::span<const double> flux,
                   std::span<const double> variance, std::span<const double> out_edges,
                   std::span<double> out_flux, std::span<double> out_variance, double fill) {
  const size_t n_in = flux.size();
  Require(in_edges.size() == n_in + 1, "input edges must have one more element than the flux");
  Require(out_edges.size() >= 1 && out_flux.size() + 1 == out_edges.size(),
          "output edges must have one more element than the output flux");
  const bool with_var = !variance.empty();
  Require(!with_var || variance.size() == n_in, "variance and flux sizes differ");
  Require(!with_var || out_variance.size() == out_flux.size(),
          "output variance must have the size of the output flux");
  double sum = 0, sum_var = 0;  // in registers: the outputs might alias the inputs for all the compiler knows
  ForEachOverlap(
      in_edges, out_edges,
      [&](size_t j, bool covered) {
        sum = sum_var = 0;
        if (!covered) {
          out_flux[j] = fill;
          if (with_var) out_variance[j] = fill;
        }
      },
      [&](size_t, size_t k, double w) {
        sum += w * flux[k];
        if (with_var) sum_var += w * w * variance[k];
      },
      [&](size_t j) {
        out_flux[j] = sum;
        if (with_var) out_variance[j] = sum_var;
      });
}

SparseRows ResampleWeights(std::span<const double> in_edges, std::span<const double> out_edges) {
  Require(in_edges.size() >= 1 && out_edges.size() >= 1, "ResampleWeights: empty edges");
  const size_t n_out = out_edges.size() - 1;
  SparseRows r;
  r.first.assign(n_out, 0);
  r.length.assign(n_out, 0);
  r.offset.assign(n_out, 0);
  r.w.reserve(n_out * 3);
  ForEachOverlap(
      in_edges, out_edges, [&](size_t j, bool) { r.offset[j] = r.w.size(); },
      [&](size_t j, size_t k, double w) {
        if (r.length[j] == 0) r.first[j] = static_cast<uint32_t>(k);
        while (r.first[j] + r.length[j] < k) {  // keep the row contiguous (zero-width inputs)
          r.w.push_back(0.0);
          ++r.length[j];
        }
        r.w.push_back(w);
        ++r.length[j];
      },
      [](size_t) {});
  return r;
}

void SparseRows::Apply(std::span<const double> in, std::span<double> out, double fill, bool squared) const {
  Require(out.size() == rows(), "SparseRows::Apply: output size differs from the rows");
  for (size_t j = 0; j < rows(); ++j) {
    if (length[j] == 0) {
      out[j] = fill;
      continue;
    }
    Require(first[j] + length[j] <= in.size(), "SparseRows::Apply: input too short");
    const double* wj = w.data() + offset[j];
    double s = 0;
    for (uint32_t t = 0; t < length[j]; ++t) s += (squared ? wj[t] * wj[t] : wj[t]) * in[first[j] + t];
    out[j] = s;
  }
}

ResampledSpectrum Resample(std::span<const double> in_wave, std::span<const double> flux,
                           std::span<const double> out_wave, std::span<const double> variance,
                           double fill) {
  Require(in_wave.size() == flux.size(), "wavelength and flux sizes differ");
  const std::vector<double> in_edges = EdgesFromCentres(in_wave);
  const std::vector<double> out_edges = EdgesFromCentres(out_wave);
  ResampledSpectrum r;
  r.flux.resize(out_wave.size());
  if (!variance.empty()) r.variance.resize(out_wave.size());
  ResampleEdges(in_edges, flux, variance, out_edges, r.flux, r.variance, fill);
  return r;
}

ResampledSpectrum Resample(std::span<const double> in_wave, std::span<const double> flux,
                           const WavelengthAxis& out_axis, std::span<const double> variance,
                           double fill) {
  Require(in_wave.size() == flux.size(), "wavelength and flux sizes differ");
  const std::vector<double> in_edges = EdgesFromCentres(in_wave);
  const std::vector<double> out_edges = AxisEdges(out_axis);
  ResampledSpectrum r;
  r.flux.resize(static_cast<size_t>(out_axis.n));
  if (!variance.empty()) r.variance.resize(r.flux.size());
  ResampleEdges(in_edges, flux, variance, out_edges, r.flux, r.variance, fill);
  return r;
}

// ------------------------------------------------------------------------------------------

GaussianBroadener GaussianBroadener::FromSigma(std::span<const double> wave,
                                               const std::function<double(double)>& sigma_fn,
                                               double truncate) {
  const size_t n = wave.size();
  Require(n >= 2, "convolution needs at least two pixels");
  Require(truncate > 0, "truncate must be positive");
  for (size_t k = 1; k < n; ++k) Require(wave[k] > wave[k - 1], "wavelengths must increase");
  Require(n < (1ull << 32), "spectrum too long");
  const std::vector<double> edges = EdgesFromCentres(wave);
  GaussianBroadener g;
  g.start_.resize(n);
  g.length_.resize(n);
  g.offset_.resize(n);
  g.weights_.reserve(n * 8);
  for (size_t j = 0; j < n; ++j) {
    const double lj = wave[j];
    const double s = sigma_fn(lj);
    const double width_j = edges[j + 1] - edges[j];
    g.offset_[j] = g.weights_.size();
    if (!(s > 0.05 * width_j) || !std::isfinite(s)) {
      g.start_[j] = static_cast<uint32_t>(j);
      g.length_[j] = 1;
      g.weights_.push_back(1.0);
      continue;
    }
    const double reach = truncate * s;
    const size_t lo = static_cast<size_t>(
        std::lower_bound(wave.begin(), wave.end(), lj - reach) - wave.begin());
    const size_t hi = static_cast<size_t>(
        std::upper_bound(wave.begin(), wave.end(), lj + reach) - wave.begin());
    const double inv2s2 = 1.0 / (2.0 * s * s);
    double sum = 0;
    const size_t off = g.weights_.size();
    for (size_t i = lo; i < hi; ++i) {
      const double d = wave[i] - lj;
      const double w = std::exp(-d * d * inv2s2) * (edges[i + 1] - edges[i]);
      g.weights_.push_back(w);
      sum += w;
    }
    for (size_t i = off; i < g.weights_.size(); ++i) g.weights_[i] /= sum;
    g.start_[j] = static_cast<uint32_t>(lo);
    g.length_[j] = static_cast<uint32_t>(hi - lo);
  }
  return g;
}

GaussianBroadener GaussianBroadener::ConstantFwhm(std::span<const double> wave, double fwhm,
                                                  double truncate) {
  const double s = fwhm / kFwhmToSigma;
  return FromSigma(wave, [s](double) { return s; }, truncate);
}

GaussianBroadener GaussianBroadener::Velocity(std::span<const double> wave, double sigma_kms,
                                              double truncate) {
  const double f = sigma_kms / kSpeedOfLightKms;
  return FromSigma(wave, [f](double l) { return l * f; }, truncate);
}

GaussianBroadener GaussianBroadener::ToResolution(std::span<const double> wave,
                                                  const std::function<double(double)>& fwhm_in,
                                                  const std::function<double(double)>& fwhm_out,
                                                  double truncate) {
  return FromSigma(
      wave,
      [&](double l) {
        const double a = fwhm_in(l), b = fwhm_out(l);
        return std::sqrt(std::max(b * b - a * a, 0.0)) / kFwhmToSigma;
      },
      truncate);
}

namespace {

/// out_j = sum_k w[offset_j + k] * in[start_j + k] (sums in double).
template <typename T>
void ApplyRows(const std::vector<uint32_t>& start, const std::vector<uint32_t>& length,
               const std::vector<size_t>& offset, const std::vector<double>& weights, std::span<const T> in,
               std::span<T> out) {
  for (size_t j = 0; j < start.size(); ++j) {
    const double* w = weights.data() + offset[j];
    const T* x = in.data() + start[j];
    double s = 0;
    for (uint32_t k = 0; k < length[j]; ++k) s += w[k] * x[k];
    out[j] = static_cast<T>(s);
  }
}

}  // namespace

void GaussianBroadener::Apply(std::span<const double> in, std::span<double> out) const {
  Require(in.size() == size() && out.size() == size(), "Apply: size mismatch");
  ApplyRows(start_, length_, offset_, weights_, in, out);
}

void GaussianBroadener::Apply(std::span<const float> in, std::span<float> out) const {
  Require(in.size() == size() && out.size() == size(), "Apply: size mismatch");
  ApplyRows(start_, length_, offset_, weights_, in, out);
}

void GaussianBroadener::ApplyVariance(std::span<const double> in, std::span<double> out) const {
  Require(in.size() == size() && out.size() == size(), "ApplyVariance: size mismatch");
  for (size_t j = 0; j < start_.size(); ++j) {
    const double* w = weights_.data() + offset_[j];
    const double* x = in.data() + start_[j];
    double s = 0;
    for (uint32_t k = 0; k < length_[j]; ++k) s += w[k] * w[k] * x[k];
    out[j] = s;
  }
}

void GaussianBroadener::ApplyVarianceAfter(const SparseRows& pre, std::span<const double> pre_in_var,
                                           std::span<const double> fallback_var,
                                           std::span<double> out) const {
  Require(pre.rows() == size() && fallback_var.size() == size() && out.size() == size(),
          "ApplyVarianceAfter: size mismatch");
  std::vector<double> coef;  // coefficients on the inputs of `pre`, indices [lo, hi)
  for (size_t j = 0; j < start_.size(); ++j) {
    const double* w = weights_.data() + offset_[j];
    size_t lo = SIZE_MAX, hi = 0;
    for (uint32_t t = 0; t < length_[j]; ++t) {
      const size_t k = start_[j] + t;
      if (pre.length[k] == 0) continue;
      lo = std::min<size_t>(lo, pre.first[k]);
      hi = std::max<size_t>(hi, pre.first[k] + pre.length[k]);
    }
    double s = 0;
    if (lo < hi) {
      Require(hi <= pre_in_var.size(), "ApplyVarianceAfter: pre_in_var too short");
      coef.assign(hi - lo, 0.0);
      for (uint32_t t = 0; t < length_[j]; ++t) {
        const size_t k = start_[j] + t;
        const double* pw = pre.w.data() + pre.offset[k];
        for (uint32_t u = 0; u < pre.length[k]; ++u) coef[pre.first[k] + u - lo] += w[t] * pw[u];
      }
      for (size_t i = lo; i < hi; ++i) s += coef[i - lo] * coef[i - lo] * pre_in_var[i];
    }
    for (uint32_t t = 0; t < length_[j]; ++t) {
      const size_t k = start_[j] + t;
      if (pre.length[k] == 0) s += w[t] * w[t] * fallback_var[k];
    }
    out[j] = s;
  }
}

std::vector<double> GaussianBroadener::operator()(std::span<const double> in) const {
  std::vector<double> out(in.size());
  Apply(in, out);
  return out;
}

std::vector<double> ConvolveFwhm(std::span<const double> wave, std::span<const double> flux,
                                 double fwhm) {
  return GaussianBroadener::ConstantFwhm(wave, fwhm)(flux);
}

std::vector<double> ConvolveVelocity(std::span<const double> wave, std::span<const double> flux,
                                     double sigma_kms) {
  return GaussianBroadener::Velocity(wave, sigma_kms)(flux);
}

std::vector<double> ConvolveSigma(std::span<const double> wave, std::span<const double> flux,
                                  const std::function<double(double)>& sigma) {
  return GaussianBroadener::FromSigma(wave, sigma)(flux);
}

double MuseLsfFwhm(double lambda) {
  return 5.866e-8 * lambda * lambda - 9.187e-4 * lambda + 6.040;
}

// ------------------------------------------------------------------------------------------

double AirRefractiveIndex(double lambda_vac) {
  const double s = 1e4 / lambda_vac;
  const double s2 = s * s;
  return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2);
}

double VacuumToAir(double lambda_vac) {
  if (lambda_vac < 2000.0) return lambda_vac;
  return lambda_vac / AirRefractiveIndex(lambda_vac);
}

double AirToVacuum(double lambda_air) {
  if (lambda_air < 2000.0) return lambda_air;
  double v = lambda_air * AirRefractiveIndex(lambda_air);
  for (int it = 0; it < 20; ++it) {
    // f(v) = v / n(v) - air; f'(v) ~ 1 / n (the dn/dv term is ~1e-8 relative): Newton-like.
    const double n = AirRefractiveIndex(v);
    const double diff = v / n - lambda_air;
    v -= diff * n;
    if (std::abs(diff) < 1e-10) break;
  }
  return v;
}

}  // namespace cubeflow::spectral
