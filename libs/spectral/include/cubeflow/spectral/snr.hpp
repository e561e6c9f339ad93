#pragma once
/// \file snr.hpp
/// \brief Signal, noise and S/N of every spaxel of a cube in a wavelength window: the one
/// implementation behind spectral.snr_map and binning.voronoi, with the two definitions of
/// "S/N in a window" in use named explicitly (SnrDefinition).
///
/// Pure functions (no shared state): thread-safe. ComputeSpaxelSnr runs its spaxels in
/// parallel with TBB; its results do not depend on the number of threads.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::spectral {

/// \brief What "signal" and "noise" of a spaxel mean over the good pixels of the window.
enum class SnrDefinition {
  /// signal = sum of the good fluxes; noise = sqrt(sum of their variances), or with DER_SNR
  /// N * sqrt(n_good) (N the per-pixel DER_SNR noise): the S/N of the window-summed spectrum,
  /// which grows with the window's width (spectral.snr_map).
  kWindowSum,
  /// signal = median good flux; noise = sqrt(median good variance), or with DER_SNR the
  /// per-pixel DER_SNR noise: the typical S/N per pixel, independent of the window's width, as
  /// vorbin and nGIST define it (binning.voronoi).
  kPixelMedian,
};

/// \brief Where the noise comes from.
enum class NoiseSource {
  /// The cube's variance: a pixel is good only if its variance is finite and > 0.
  kVariance,
  /// DER_SNR (Stoehr et al. 2008) from the good fluxes themselves (see DerSnrNoise); the cube's
  /// variance, if any, is not used. Needs >= 5 good pixels.
  kDerSnr,
};

/// \brief A window of channels: [k0, k1], inclusive, 0-based.
struct ChannelWindow {
  int64_t k0 = 0, k1 = -1;
  double wave_lo = 0, wave_hi = 0;  ///< centres of the window's first and last channel (lo <= hi), Angstrom
  bool clipped = false;             ///< the requested window extended beyond the axis and was cut to it
};

/// \brief The channels of `axis` whose centre lies in [wave_min, wave_max] (Angstrom, the
/// axis's frame; a centre within 1e-9 pixel of a bound counts as inside), cut to the axis.
/// Errors: wave_max <= wave_min, an empty axis, or a window that misses the axis entirely
/// (the message gives both ranges).
Result<ChannelWindow> FindChannelWindow(const WavelengthAxis& axis, double wave_min, double wave_max);

/// \brief Window and definitions for ComputeSpaxelSnr.
struct SnrOptions {
  double wave_min = 0, wave_max = 0;  ///< Angstrom, see FindChannelWindow
  SnrDefinition definition = SnrDefinition::kWindowSum;
  NoiseSource noise = NoiseSource::kVariance;
};

/// \brief Per-spaxel figures (index y * nx + x) of ComputeSpaxelSnr.
struct SpaxelSnr {
  ChannelWindow window;
  std::vector<int64_t> ngood;  ///< good pixels in the window
  std::vector<double> mean;    ///< mean good flux (cube units); NaN without a good pixel
  std::vector<double> signal;  ///< per SnrDefinition; NaN without a good pixel
  std::vector<double> noise;   ///< per SnrDefinition; NaN where it cannot be estimated
  std::vector<double> snr;     ///< signal / noise where noise is finite and > 0, else NaN
};

/// \brief Signal, noise and S/N of every spaxel over the good pixels of the window
/// [options.wave_min, options.wave_max]. A pixel is good if its flux is finite, its mask bit
/// (if the cube has a mask) is not set and, for NoiseSource::kVariance, its variance is finite
/// and > 0. Errors (never throws): an empty or inconsistent cube, kVariance without a variance,
/// and the window errors of FindChannelWindow.
///
/// A LazyCube (cubeflow/cube_blocks.hpp) is read in blocks of rows of the window's planes of
/// at most `block_bytes` each (one block held at a time; the results are the same as in
/// memory); its read errors are returned.
Result<SpaxelSnr> ComputeSpaxelSnr(const Cube& cube, const SnrOptions& options, size_t block_bytes);
/// ComputeSpaxelSnr with the cube's block size (BlockBytes).
Result<SpaxelSnr> ComputeSpaxelSnr(const Cube& cube, const SnrOptions& options);

}  // namespace cubeflow::spectral
