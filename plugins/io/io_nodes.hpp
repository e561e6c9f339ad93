#pragma once
// Node classes of the "io" plugin and their options (internal header; the tests link the
// plugin's node library and include it).

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/fits/maps.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/spec.hpp"

namespace cubeflow::io {

/// Parameters of io.read_cube. The window and extension defaults are those of
/// fits::ReadCubeOptions (one default each, taken from the library).
struct ReadCubeNodeOptions {
  std::filesystem::path path;
  double wave_min = fits::ReadCubeOptions{}.wave_min;  ///< 0 = from the start
  double wave_max = fits::ReadCubeOptions{}.wave_max;  ///< 0 = to the end
  std::string data_hdu = fits::ReadCubeOptions{}.data_hdu;
  std::string stat_hdu = fits::ReadCubeOptions{}.stat_hdu;
  bool require_stat = fits::ReadCubeOptions{}.require_stat;
  /// MiB of flux + variance above which the cube stays in the file (a LazyCube, streamed by
  /// the nodes that read it); 0 = always. Node-only: the library reads in memory by default.
  /// Streaming is not slower (docs/runtime.md); only tiny cubes stay in memory, for consumers
  /// that read the pixels of the node's output directly.
  int64_t max_memory = 16;
  /// MiB: the largest block of a streamed cube its consumers read at a time.
  int64_t block_size = 64;
};

/// io.read_cube: reads a FITS cube (source node, output `cube`).
class ReadCubeNode : public Node {
 public:
  using Options = ReadCubeNodeOptions;
  static NodeSpec Spec();
  explicit ReadCubeNode(const Options& o);
  void Process(ProcessContext& ctx) override;

 private:
  std::string path_;
  fits::ReadCubeOptions options_;
  size_t block_bytes_;
};

/// Parameters of io.read_map.
struct ReadMapOptions {
  std::filesystem::path path;
  std::string extension = "auto";
  std::string bunit;  ///< "" = the file's BUNIT
  std::string name;   ///< "" = the HDU's EXTNAME
};

/// io.read_map: reads one 2-D image extension into a Map (source node, output `map`; optional
/// `grid` input: a binning whose spatial grid the map must match).
class ReadMapNode : public Node {
 public:
  using Options = ReadMapOptions;
  static NodeSpec Spec();
  explicit ReadMapNode(const Options& o);
  void Process(ProcessContext& ctx) override;

 private:
  std::string path_, extension_, bunit_, name_;
};

/// Checks that `map` lies on the spatial grid of `grid` (same nx, ny; same sky position of the
/// corner and centre pixels to `tol_pix` pixel when both have a WCS). Returns "" or the problem.
std::string CompareGrids(const Map& map, const Binning& grid, double tol_pix = 0.05);

/// Parameters of io.write_maps.
struct WriteMapsOptions {
  std::filesystem::path path;
  bool overwrite = true;
};

/// io.write_maps: collects maps, a binning and per-bin records; writes one MAPS file in Finish.
/// Serial: Process is never called concurrently (declared Concurrency::kSerial).
class WriteMapsNode : public Node {
 public:
  using Options = WriteMapsOptions;
  static NodeSpec Spec();
  explicit WriteMapsNode(const Options& o);
  void Process(ProcessContext& ctx) override;
  void Finish(ProcessContext& ctx) override;

  /// Per-bin data kept between Process and Finish (no spectra).
  /// Compact (thousands of bins): the values of its fields by field number (field_names()), in
  /// three arrays; a field's unit, labels and doc are kept once per field, not per bin.
  struct BinResult {
    std::vector<uint16_t> field;  ///< field numbers, increasing
    std::vector<uint32_t> start;  ///< values of field[i]: values[start[i] .. start[i + 1])
    std::vector<double> values;
    uint32_t quality = 0;
    bool failed = false;
    std::string failure;
    /// The values of field number `f` (null if the bin has none), their count in `n`.
    const double* Find(uint16_t f, size_t& n) const;
    /// Sets (or replaces) the values of field number `f`.
    void Set(uint16_t f, const std::vector<double>& v);
  };
  /// Builds the product from what was collected (exposed for tests).
  fits::MapsProduct Assemble(const RunInfo& run, bool aborted) const;
  /// How many bins (or, without per-bin records, spaxels) the product covers and how many of
  /// them carry a usable result: arrived, not failed, at least one finite value.
  std::pair<int64_t, int64_t> CountUsable() const;
  const std::map<int64_t, BinResult>& bins() const { return bins_; }
  /// Names of the fields, by field number.
  const std::vector<std::string>& field_names() const { return field_names_; }

 private:
  void CaptureSingles(ProcessContext& ctx);

  std::string path_;
  bool overwrite_ = true;
  bool records_connected_ = false;
  bool maps_captured_ = false;
  std::vector<std::shared_ptr<const Map>> maps_;
  std::shared_ptr<const Binning> binning_;
  std::map<int64_t, BinResult> bins_;
  /// Unit, labels and doc of every field, from the lowest bin id that gave a non-empty one;
  /// whether some bin gave labels.
  struct FieldMeta {
    std::string unit, doc;
    std::vector<std::string> labels;
    int64_t unit_id = INT64_MAX, doc_id = INT64_MAX, labels_id = INT64_MAX;
    bool any_labels = false;
  };
  std::map<std::string, FieldMeta> field_meta_;
  std::vector<std::string> field_names_;
  std::map<std::string, uint16_t> field_number_;
};

/// Where a failed or interrupted run writes its product: the product path itself if nothing is
/// there yet, else `<stem>.partial<ext>` beside it, so that an earlier, good product is never
/// replaced by a partial one.
inline std::string PartialProductPath(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return path;
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + ".partial" + p.extension().string())).string();
}

/// The MISSING keyword of MAPS and SPECTRA products: comma-separated bin ids, cut with ",..."
/// once the list passes ~2000 characters (CFITSIO continues long strings over several cards).
inline std::string MissingIdList(const std::vector<int64_t>& ids) {
  std::string list;
  for (int64_t id : ids) {
    if (list.size() > 2000) {
      list += ",...";
      break;
    }
    if (!list.empty()) list += ",";
    list += std::to_string(id);
  }
  return list;
}

/// Parameters of io.write_spectra.
struct WriteSpectraOptions {
  std::filesystem::path path;
  std::string error = "sigma";    ///< sigma, variance or ivar
  std::string dtype = "float32";  ///< float32 or float64
  std::string bunit;              ///< "" = from the spectra's bunit_scale meta
  bool overwrite = true;
};

/// io.write_spectra: writes the bin spectra of a stream (binning.voronoi's or
/// spectral.restframe's `spectra`) as one FITS product, row i of the images = bin i
/// (docs/products.md). Spectra go to an unlinked scratch file next to the output as they arrive
/// (memory stays O(bins), not O(bins x wavelengths)); Finish writes the product in bin order.
/// Serial: Process is never called concurrently (declared Concurrency::kSerial).
class WriteSpectraNode : public Node {
 public:
  using Options = WriteSpectraOptions;
  static NodeSpec Spec();
  explicit WriteSpectraNode(const Options& o);
  ~WriteSpectraNode() override;
  WriteSpectraNode(const WriteSpectraNode&) = delete;
  WriteSpectraNode& operator=(const WriteSpectraNode&) = delete;
  void Process(ProcessContext& ctx) override;
  void Finish(ProcessContext& ctx) override;

  /// Bits of the MASK extension (uint8; documented in docs/products.md and in the MASK header).
  enum MaskBit : uint8_t {
    kMaskBadPixel = 1u << 0,   ///< the spectrum's own mask flags the pixel
    kMaskNonFinite = 1u << 1,  ///< flux or variance not finite, or variance < 0
    kMaskNoError = 1u << 2,    ///< the spectrum carries no variance
    kMaskNoSpectrum = 1u << 3, ///< no spectrum for this row: the bin failed or never arrived
  };
  /// SPECSTAT column of the BINS table.
  enum SpecStatus : int16_t { kSpecWritten = 0, kSpecFailed = 1, kSpecMissing = 2 };

  /// Number of spectra and failures received so far (for tests).
  size_t received() const { return entries_.size(); }

 private:
  struct Entry {
    int64_t id = -1;
    int64_t scratch_row = -1;  ///< row in the scratch file; -1 = failed upstream
    uint32_t quality = 0;
    double norm = 1.0;
    int64_t ngood = 0;
    std::string failure;
  };
  void AddSpectrum(ProcessContext& ctx, int64_t id, const Spectrum& s);
  void AddFailure(int64_t id, const std::string& why);
  void OpenScratch();
  size_t NewEntry(int64_t id);

  /// The error extension's convention (parameter `error`).
  enum class ErrorKind { kSigma, kVariance, kIvar };

  std::string path_, bunit_param_;
  ErrorKind error_kind_ = ErrorKind::kSigma;
  bool overwrite_ = true;
  size_t elem_ = 4;  ///< bytes per value in SPECTRA/ERROR (4 or 8)
  std::shared_ptr<const Binning> binning_;
  // Common properties of every spectrum (from the first one).
  bool have_axis_ = false;
  WavelengthAxis axis_;
  bool rest_frame_ = false;
  double bunit_scale_ = 0;  ///< 0: none seen yet; NaN: the spectra carry none
  int64_t first_id_ = -1;
  // Per-bin state, in arrival order (small: no spectra).
  std::vector<Entry> entries_;
  std::map<int64_t, size_t> by_id_;
  std::map<std::string, std::vector<double>> meta_;  ///< meta key -> value per entry (NaN = absent)
  std::FILE* scratch_ = nullptr;
  int64_t scratch_rows_ = 0;
  std::string scratch_path_;
};

}  // namespace cubeflow::io
