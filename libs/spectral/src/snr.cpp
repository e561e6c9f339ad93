// Per-spaxel signal, noise and S/N in a wavelength window. See snr.hpp.
#include "cubeflow/spectral/snr.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/spectral/stats.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::spectral {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

/// The pixels ComputeSpaxelSnr reads: the window's channels [k0, k1] of `plane` spaxels, a
/// whole in-memory cube or one block of rows of a lazy one; pixel (spaxel s, channel k) at
/// k * plane + s (k relative to the arrays), result of local spaxel s at out index offset + s.
struct Pixels {
  const float* flux = nullptr;
  const float* variance = nullptr;  ///< null: none
  const uint8_t* mask = nullptr;    ///< null: none
  size_t plane = 0;
  int64_t k0 = 0, k1 = -1;
  size_t offset = 0;
};

/// Sums over the good pixels of local spaxels [b, e), channel-major (the cube's memory order):
/// the window-sum definition with variances.
void WindowSumWithVariance(const Pixels& p, size_t b, size_t e, SpaxelSnr& out) {
  std::vector<double> sv(e - b, 0.0);
  for (size_t s = b; s < e; ++s) out.signal[p.offset + s] = 0.0;
  for (int64_t k = p.k0; k <= p.k1; ++k) {
    const size_t off = static_cast<size_t>(k) * p.plane;
    for (size_t s = b; s < e; ++s) {
      const float f = p.flux[off + s], v = p.variance[off + s];
      if (!std::isfinite(f) || !std::isfinite(v) || !(v > 0)) continue;
      if (p.mask && p.mask[off + s]) continue;
      out.signal[p.offset + s] += f;
      sv[s - b] += v;
      ++out.ngood[p.offset + s];
    }
  }
  for (size_t s = b; s < e; ++s) {
    const size_t g = p.offset + s;
    if (out.ngood[g] == 0) {
      out.signal[g] = kNaN;
      continue;
    }
    out.mean[g] = out.signal[g] / static_cast<double>(out.ngood[g]);
    out.noise[g] = std::sqrt(sv[s - b]);
  }
}

/// Every other combination: the good pixels of one (local) spaxel gathered in wavelength order.
void GatheredSpaxel(const Pixels& p, const SnrOptions& o, size_t s, std::vector<double>& f, std::vector<double>& v,
                    SpaxelSnr& out) {
  const bool use_var = o.noise == NoiseSource::kVariance;
  const size_t g = p.offset + s;
  f.clear();
  v.clear();
  double sum = 0;
  for (int64_t k = p.k0; k <= p.k1; ++k) {
    const size_t i = static_cast<size_t>(k) * p.plane + s;
    const float fl = p.flux[i];
    if (!std::isfinite(fl) || (p.mask && p.mask[i])) continue;
    if (use_var) {
      const float va = p.variance[i];
      if (!std::isfinite(va) || !(va > 0)) continue;
      v.push_back(va);
    }
    f.push_back(fl);
    sum += fl;
  }
  const size_t n = f.size();
  out.ngood[g] = static_cast<int64_t>(n);
  if (n == 0) return;
  out.mean[g] = sum / static_cast<double>(n);
  if (o.definition == SnrDefinition::kWindowSum) {
    out.signal[g] = sum;
    if (use_var) {
      double sv = 0;
      for (double x : v) sv += x;
      out.noise[g] = std::sqrt(sv);
    } else {
      out.noise[g] = DerSnrNoise(f) * std::sqrt(static_cast<double>(n));
    }
  } else {
    out.noise[g] = use_var ? std::sqrt(Median(std::move(v))) : DerSnrNoise(f);
    out.signal[g] = Median(std::move(f));
  }
}

/// Signal, noise and S/N of the spaxels of `p` (in parallel).
void ComputePixels(const Pixels& p, const SnrOptions& o, SpaxelSnr& out) {
  const bool summed = o.definition == SnrDefinition::kWindowSum && o.noise == NoiseSource::kVariance;
  tbb::parallel_for(tbb::blocked_range<size_t>(0, p.plane, 256), [&](const tbb::blocked_range<size_t>& r) {
    if (summed) {
      WindowSumWithVariance(p, r.begin(), r.end(), out);
    } else {
      std::vector<double> f, v;
      for (size_t s = r.begin(); s < r.end(); ++s) GatheredSpaxel(p, o, s, f, v, out);
    }
    for (size_t s = r.begin(); s < r.end(); ++s) {
      const size_t g = p.offset + s;
      if (std::isfinite(out.noise[g]) && out.noise[g] > 0) out.snr[g] = out.signal[g] / out.noise[g];
    }
  });
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
  return ComputeSpaxelSnr(cube, o, BlockBytes(cube));
}

Result<SpaxelSnr> ComputeSpaxelSnr(const Cube& cube, const SnrOptions& o, size_t block_bytes) {
  if (cube.nx <= 0 || cube.ny <= 0 || cube.nwave <= 0)
    return Status::Error("the cube is empty (" + std::to_string(cube.nx) + " x " + std::to_string(cube.ny) + " x " +
                         std::to_string(cube.nwave) + ")");
  const size_t nspax = static_cast<size_t>(cube.nx * cube.ny);
  const size_t nvox = nspax * static_cast<size_t>(cube.nwave);
  const bool lazy = AsLazy(cube) != nullptr;
  if (!lazy) {
    if (cube.flux.size() != nvox)
      return Status::Error("the cube's flux has " + std::to_string(cube.flux.size()) + " values for " +
                           std::to_string(nvox) + " voxels");
    if (!cube.variance.empty() && cube.variance.size() != nvox)
      return Status::Error("the cube's variance has " + std::to_string(cube.variance.size()) + " values for " +
                           std::to_string(nvox) + " voxels");
    if (!cube.mask.empty() && cube.mask.size() != nvox)
      return Status::Error("the cube's mask has " + std::to_string(cube.mask.size()) + " values for " +
                           std::to_string(nvox) + " voxels");
  }
  if (o.noise == NoiseSource::kVariance && !CubeHasVariance(cube))
    return Status::Error("the cube has no variance; estimate the noise with DER_SNR instead");
  SpaxelSnr out;
  CUBEFLOW_ASSIGN_OR_RETURN(out.window, FindChannelWindow(cube.wave, o.wave_min, o.wave_max));
  out.ngood.assign(nspax, 0);
  out.mean.assign(nspax, kNaN);
  out.signal.assign(nspax, kNaN);
  out.noise.assign(nspax, kNaN);
  out.snr.assign(nspax, kNaN);
  if (!lazy) {
    Pixels p;
    p.flux = cube.flux.data();
    p.variance = cube.variance.empty() ? nullptr : cube.variance.data();
    p.mask = cube.mask.empty() ? nullptr : cube.mask.data();
    p.plane = nspax;
    p.k0 = out.window.k0;
    p.k1 = out.window.k1;
    ComputePixels(p, o, out);
    return out;
  }
  // A cube in its file: the window's planes, in blocks of rows.
  CUBEFLOW_RETURN_NOT_OK(ForEachRowBlock(cube, out.window.k0, out.window.k1 + 1, block_bytes, [&](const CubeBlock& b) {
    Pixels p;
    p.flux = b.flux.data();
    p.variance = b.variance.empty() ? nullptr : b.variance.data();
    p.mask = b.mask.empty() ? nullptr : b.mask.data();
    p.plane = b.plane_size();
    p.k0 = 0;
    p.k1 = b.planes() - 1;
    p.offset = static_cast<size_t>(b.y0 * b.nx);
    ComputePixels(p, o, out);
    return Status::OK();
  }));
  return out;
}

}  // namespace cubeflow::spectral
