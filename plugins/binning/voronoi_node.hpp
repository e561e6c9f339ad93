#pragma once
/// \file voronoi_node.hpp
/// \brief The `binning.voronoi` node and the cube-side helpers it is made of (per-spaxel
/// signal and noise in a wavelength window, the FITS mask reader, the lazy bin-spectrum
/// stream). Declared here so the tests can reach them.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/binning/voronoi.hpp"

namespace cubeflow::binning {

/// \brief Per-spaxel signal and noise of a cube in a wavelength window.
struct SpaxelSnr {
  int64_t k0 = 0, k1 = -1;          ///< window, inclusive 0-based wavelength pixels
  double wave_lo = 0, wave_hi = 0;  ///< the window actually used, Angstrom
  bool clipped = false;             ///< the requested window was cut to the cube's range
  bool noise_estimated = false;     ///< no variance in the cube: DER_SNR estimate used
  std::vector<double> signal;       ///< median flux over valid window pixels, NaN if none
  std::vector<double> noise;        ///< sqrt(median variance), NaN if none
};

/// \brief Signal and noise per spaxel (y * nx + x) over the pixels whose centre lies in
/// [wave_min, wave_max] (Angstrom, the cube's frame). Pixels with non-finite flux, non-finite
/// or non-positive variance or a set cube mask bit are ignored. Without a variance extension
/// the noise is the DER_SNR estimate (Stoehr et al. 2008) from the flux. Throws
/// cubeflow::Error if the window does not overlap the cube. Thread-safe (pure function).
SpaxelSnr ComputeSpaxelSnr(const Cube& cube, double wave_min, double wave_max);

/// \brief Reads a 2-D spatial mask (first image HDU) with CFITSIO: nonzero or NaN = excluded.
/// Throws cubeflow::Error if it cannot be read or its shape is not nx x ny.
std::vector<uint8_t> ReadMaskFits(const std::string& path, int64_t nx, int64_t ny);

/// \brief Lazy stream of bin spectra: Next() sums the spectra of one bin when pulled.
/// flux = sum over contributing spaxels * (nspax / ncontrib); variance = sum of variances *
/// (nspax / ncontrib)^2 * (1 + alpha log10 nspax)^2; a pixel is masked where no spaxel
/// contributes (NaN flux or variance, or cube mask). Holds shared_ptrs to the cube and binning.
class BinSpectraSource : public StreamSource {
 public:
  BinSpectraSource(std::shared_ptr<const Cube> cube, std::shared_ptr<const Binning> binning,
                   double covariance_alpha, std::vector<double> spaxel_noise);
  bool Next(int64_t& key, std::shared_ptr<const Data>& data) override;
  int64_t SizeHint() const override { return static_cast<int64_t>(binning_->bins.size()); }
  /// Builds the spectrum of bin `b` (also used by Next); thread-safe.
  std::shared_ptr<Spectrum> Make(size_t b) const;

 private:
  std::shared_ptr<const Cube> cube_;
  std::shared_ptr<const Binning> binning_;
  double alpha_;
  std::vector<double> spaxel_noise_;  ///< used only when the cube has no variance
  size_t next_ = 0;
};

/// \brief `binning.voronoi`: adaptive Voronoi binning of a cube to a target S/N.
/// Process runs once per run; it reads only its members (thread-safe).
class VoronoiNode : public Node {
 public:
  static NodeSpec Spec();
  explicit VoronoiNode(const Params& params);
  void Process(ProcessContext& ctx) override;

 private:
  double target_snr_, min_snr_, wave_min_, wave_max_, alpha_, min_fraction_;
  std::string mask_path_;
  VoronoiMethod method_;
  int max_iter_;
};

}  // namespace cubeflow::binning
