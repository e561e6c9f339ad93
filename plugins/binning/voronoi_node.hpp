#pragma once
/// \file voronoi_node.hpp
/// \brief The `binning.voronoi` node, its options and the cube-side helpers it is made of (the
/// FITS mask reader, the lazy bin-spectrum stream). Declared here so the tests can reach them.
/// Per-spaxel signal and noise come from cubeflow/spectral/snr.hpp (SnrDefinition::kPixelMedian).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/binning/voronoi.hpp"

namespace cubeflow::binning {

/// \brief Reads a 2-D spatial mask (first image HDU) with CFITSIO: nonzero or NaN = excluded.
/// Throws cubeflow::Error if it cannot be read or its shape is not nx x ny.
std::vector<uint8_t> ReadMaskFits(const std::string& path, int64_t nx, int64_t ny);

/// \brief Lazy stream of bin spectra.
/// flux = sum over contributing spaxels * (nspax / ncontrib); variance = sum of variances *
/// (nspax / ncontrib)^2 * (1 + alpha log10 nspax)^2; a pixel is masked where no spaxel
/// contributes (NaN flux or variance, or cube mask). Holds shared_ptrs to the cube and binning.
///
/// A cube in memory: Next() sums the spectra of one bin when pulled. A cube in its file
/// (LazyCube): the cube is read in blocks of whole rows x all planes (at most `block_bytes`
/// each, 0: the cube's BlockBytes; top to bottom, one block held at a time) and every spaxel of
/// a block is added to its bin's sums; a bin is complete once its last row has been read. The
/// memory is one block, the sums of the bins open across a block's edge (at most about nx
/// bins), and completed bins waiting for their turn: up to `block_bytes` / 4 of them in memory,
/// the rest in an unlinked temporary file in $TMPDIR (or /tmp), so it does not grow with the
/// number of spaxels or bins. Either way the bins come in bin order and the spectra are the
/// same (the spaxels of a bin are added in increasing order, as binning.voronoi lists them).
class BinSpectraSource : public StreamSource {
 public:
  BinSpectraSource(std::shared_ptr<const Cube> cube, std::shared_ptr<const Binning> binning,
                   double covariance_alpha, std::vector<double> spaxel_noise,
                   size_t block_bytes = 0);
  ~BinSpectraSource() override;
  BinSpectraSource(const BinSpectraSource&) = delete;
  BinSpectraSource& operator=(const BinSpectraSource&) = delete;
  bool Next(int64_t& key, std::shared_ptr<const Data>& data) override;
  int64_t SizeHint() const override { return static_cast<int64_t>(binning_->bins.size()); }
  /// Builds the spectrum of bin `b` (used by Next for a cube in memory; a cube in its file is
  /// read for the rows the bin spans); thread-safe.
  std::shared_ptr<Spectrum> Make(size_t b) const;
  /// Streaming from the file (a LazyCube): rows per block, and bins with sums held now.
  int64_t rows_per_block() const { return rows_per_block_; }
  size_t open_bins() const;
  /// Bytes of the block of rows held now.
  size_t block_bytes_held() const { return block_.bytes(); }
  /// Completed bins waiting for their turn: bytes of those in memory; number written to the
  /// temporary file so far.
  size_t waiting_bytes() const { return waiting_bytes_; }
  size_t spilled() const { return spilled_; }

 private:
  struct Sums {
    explicit Sums(size_t nw);
    std::vector<double> flux, variance;
    std::vector<int32_t> count;
  };
  void Accumulate(Sums& sums, const float* flux, const float* variance, const uint8_t* mask, size_t stride,
                  double spaxel_noise2) const;
  double SpaxelNoise2(bool have_var, int32_t s) const;
  std::shared_ptr<Spectrum> Finish(size_t b, Sums sums) const;
  void SetMeta(size_t b, Spectrum& sp) const;
  void ReadRows();
  void Wait(size_t b, std::shared_ptr<Spectrum> sp);
  std::shared_ptr<Spectrum> TakeWaiting(size_t b);

  std::shared_ptr<const Cube> cube_;
  std::shared_ptr<const Binning> binning_;
  double alpha_;
  std::vector<double> spaxel_noise_;  ///< used only when the cube has no variance
  size_t next_ = 0;
  // Streaming from the file.
  bool streamed_ = false;
  size_t block_bytes_;
  int64_t rows_per_block_ = 0;
  int64_t next_row_ = 0;
  std::vector<int32_t> owner_;                             ///< bin of every spaxel, -1 none
  std::vector<std::pair<int64_t, int32_t>> by_last_row_;  ///< (last row, bin), sorted
  size_t next_complete_ = 0;
  std::vector<std::unique_ptr<Sums>> open_;  ///< sums of the bins started and not complete
  CubeBlock block_;
  std::map<size_t, std::shared_ptr<Spectrum>> waiting_;  ///< complete, not yet emitted
  size_t waiting_bytes_ = 0;
  int spill_fd_ = -1;                ///< the temporary file, -1 until needed
  std::string spill_path_;
  int64_t spill_end_ = 0;
  std::vector<int64_t> spilled_at_;  ///< offset of a bin's arrays in the file, -1 none
  size_t spilled_ = 0;
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
