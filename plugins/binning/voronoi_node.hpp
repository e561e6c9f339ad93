#pragma once
/// \file voronoi_node.hpp
/// \brief The `binning.voronoi` node, its options and the cube-side helpers it is made of (the
/// FITS mask reader, the lazy bin-spectrum stream). Declared here so the tests can reach them.
/// Per-spaxel signal and noise come from cubeflow/spectral/snr.hpp (SnrDefinition::kPixelMedian).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/binning/voronoi.hpp"

namespace cubeflow::binning {

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

/// \brief Parameters of `binning.voronoi`. The binning parameters take their defaults from
/// binning::VoronoiOptions (one default each: covariance_alpha 1.07, the MUSE value).
struct VoronoiNodeOptions {
  double target_snr = VoronoiOptions{}.target_snr;
  double min_snr = 1.0;
  double wave_min = 5300.0;  ///< Angstrom, cube frame
  double wave_max = 5500.0;
  std::filesystem::path mask;  ///< "" = none
  double covariance_alpha = VoronoiOptions{}.covariance_alpha;
  std::string method = VoronoiOptions{}.method == VoronoiMethod::kWvt ? "wvt" : "cvt";
  int max_iter = VoronoiOptions{}.max_iter;
  double min_fraction = VoronoiOptions{}.min_fraction;

  /// The options of VoronoiBin these give, on the spaxel grid (pixel_size 1).
  VoronoiOptions ToLibrary() const;
};

/// \brief `binning.voronoi`: adaptive Voronoi binning of a cube to a target S/N.
/// Process runs once per run; it reads only its members (thread-safe).
class VoronoiNode : public Node {
 public:
  using Options = VoronoiNodeOptions;
  static NodeSpec Spec();
  explicit VoronoiNode(const Options& options);
  void Process(ProcessContext& ctx) override;

 private:
  Options options_;
};

}  // namespace cubeflow::binning
