// Per-spaxel signal, noise and S/N in a wavelength window. See snr.hpp.
#include "cubeflow/spectral/snr.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cubeflow/spectral/stats.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::spectral {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

/// Sums over the good pixels of spaxels [b, e), channel-major (the cube's memory order):
/// the window-sum definition with variances.
void WindowSumWithVariance(const Cube& c, const ChannelWindow& w, size_t b, size_t e, bool has_mask,
                           SpaxelSnr& out) {
  const size_t plane = static_cast<size_t>(c.nx * c.ny);
  std::vector<double> sv(e - b, 0.0);
  for (size_t s = b; s < e; ++s) out.signal[s] = 0.0;
  for (int64_t k = w.k0; k <= w.k1; ++k) {
    const size_t off = static_cast<size_t>(k) * plane;
    for (size_t s = b; s < e; ++s) {
      const float f = c.flux[off + s], v = c.variance[off + s];
      if (!std::isfinite(f) || !std::isfinite(v) || !(v > 0)) continue;
      if (has_mask && c.mask[off + s]) continue;
      out.signal[s] += f;
      sv[s - b] += v;
      ++out.ngood[s];
    }
  }
  for (size_t s = b; s < e; ++s) {
    if (out.ngood[s] == 0) {
      out.signal[s] = kNaN;
      continue;
    }
    out.mean[s] = out.signal[s] / static_cast<double>(out.ngood[s]);
    out.noise[s] = std::sqrt(sv[s - b]);
  }
}

/// Every other combination: the good pixels of one spaxel gathered in wavelength order.
void GatheredSpaxel(const Cube& c, const ChannelWindow& w, const SnrOptions& o, size_t s, bool has_mask,
                    std::vector<double>& f, std::vector<double>& v, SpaxelSnr& out) {
  const size_t plane = static_cast<size_t>(c.nx * c.ny);
  const bool use_var = o.noise == NoiseSource::kVariance;
  f.clear();
  v.clear();
  double sum = 0;
  for (int64_t k = w.k0; k <= w.k1; ++k) {
    const size_t i = static_cast<size_t>(k) * plane + s;
    const float fl = c.flux[i];
    if (!std::isfinite(fl) || (has_mask && c.mask[i])) continue;
    if (use_var) {
      const float va = c.variance[i];
      if (!std::isfinite(va) || !(va > 0)) continue;
      v.push_back(va);
    }
    f.push_back(fl);
    sum += fl;
  }
  const size_t n = f.size();
  out.ngood[s] = static_cast<int64_t>(n);
  if (n == 0) return;
  out.mean[s] = sum / static_cast<double>(n);
  if (o.definition == SnrDefinition::kWindowSum) {
    out.signal[s] = sum;
    if (use_var) {
      double sv = 0;
      for (double x : v) sv += x;
      out.noise[s] = std::sqrt(sv);
    } else {
      out.noise[s] = DerSnrNoise(f) * std::sqrt(static_cast<double>(n));
    }
  } else {
    out.noise[s] = use_var ? std::sqrt(Median(std::move(v))) : DerSnrNoise(f);
    out.signal[s] = Median(std::move(f));
  }
}

}  // namespace

Result<ChannelWindow> FindChannelWindow(const WavelengthAxis& axis, double wave_min, double wave_max) {
  if (axis.n <= 0) return Status::Error("the wavelength axis is empty");
  if (!std::isfinite(wave_min) || !std::isfinite(wave_max) || !(wave_max > wave_min))
    return Status::Error("wave_max (" + Num(wave_max) + ") must be above wave_min (" + Num(wave_min) + ") Angstrom");
  // Fractional pixel of a bound; a non-positive bound on a log axis lies before its start.
  auto pixel = [&](double w) {
    if (axis.log && !(w > 0)) return axis.cdelt > 0 ? -kInf : kInf;
    return axis.PixelOf(w);
  };
  const double p0 = pixel(wave_min), p1 = pixel(wave_max);
  double k0 = std::ceil(std::min(p0, p1) - 1e-9);
  double k1 = std::floor(std::max(p0, p1) + 1e-9);
  const double last = static_cast<double>(axis.n - 1);
  ChannelWindow w;
  w.clipped = k0 < 0 || k1 > last;
  k0 = std::max(k0, 0.0);
  k1 = std::min(k1, last);
  if (k1 < k0) {
    const double a = axis.At(0), b = axis.At(axis.n - 1);
    return Status::Error("the window " + Num(wave_min) + "-" + Num(wave_max) +
                         " Angstrom lies outside the cube's wavelength range " + Num(std::min(a, b)) + "-" +
                         Num(std::max(a, b)) + " Angstrom; move wave_min/wave_max into that range");
  }
  w.k0 = static_cast<int64_t>(k0);
  w.k1 = static_cast<int64_t>(k1);
  w.wave_lo = std::min(axis.At(w.k0), axis.At(w.k1));
  w.wave_hi = std::max(axis.At(w.k0), axis.At(w.k1));
  return w;
}

Result<SpaxelSnr> ComputeSpaxelSnr(const Cube& cube, const SnrOptions& o) {
  if (cube.nx <= 0 || cube.ny <= 0 || cube.nwave <= 0)
    return Status::Error("the cube is empty (" + std::to_string(cube.nx) + " x " + std::to_string(cube.ny) + " x " +
                         std::to_string(cube.nwave) + ")");
  const size_t nspax = static_cast<size_t>(cube.nx * cube.ny);
  const size_t nvox = nspax * static_cast<size_t>(cube.nwave);
  if (cube.flux.size() != nvox)
    return Status::Error("the cube's flux has " + std::to_string(cube.flux.size()) + " values for " +
                         std::to_string(nvox) + " voxels");
  if (!cube.variance.empty() && cube.variance.size() != nvox)
    return Status::Error("the cube's variance has " + std::to_string(cube.variance.size()) + " values for " +
                         std::to_string(nvox) + " voxels");
  if (!cube.mask.empty() && cube.mask.size() != nvox)
    return Status::Error("the cube's mask has " + std::to_string(cube.mask.size()) + " values for " +
                         std::to_string(nvox) + " voxels");
  if (o.noise == NoiseSource::kVariance && cube.variance.empty())
    return Status::Error("the cube has no variance; estimate the noise with DER_SNR instead");
  SpaxelSnr out;
  CUBEFLOW_ASSIGN_OR_RETURN(out.window, FindChannelWindow(cube.wave, o.wave_min, o.wave_max));
  out.ngood.assign(nspax, 0);
  out.mean.assign(nspax, kNaN);
  out.signal.assign(nspax, kNaN);
  out.noise.assign(nspax, kNaN);
  out.snr.assign(nspax, kNaN);
  const bool has_mask = !cube.mask.empty();
  const bool summed = o.definition == SnrDefinition::kWindowSum && o.noise == NoiseSource::kVariance;
  tbb::parallel_for(tbb::blocked_range<size_t>(0, nspax, 256), [&](const tbb::blocked_range<size_t>& r) {
    if (summed) {
      WindowSumWithVariance(cube, out.window, r.begin(), r.end(), has_mask, out);
    } else {
      std::vector<double> f, v;
      for (size_t s = r.begin(); s < r.end(); ++s) GatheredSpaxel(cube, out.window, o, s, has_mask, f, v, out);
    }
    for (size_t s = r.begin(); s < r.end(); ++s)
      if (std::isfinite(out.noise[s]) && out.noise[s] > 0) out.snr[s] = out.signal[s] / out.noise[s];
  });
  return out;
}

}  // namespace cubeflow::spectral
