#pragma once
// Node classes of the "io" plugin (internal header; tests compile the sources directly).

#include <cstdint>
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

/// io.read_cube: reads a FITS cube (source node, output `cube`).
class ReadCubeNode : public Node {
 public:
  static NodeSpec Spec();
  explicit ReadCubeNode(const Params& p);
  void Process(ProcessContext& ctx) override;

 private:
  std::string path_;
  fits::ReadCubeOptions options_;
};

/// io.read_map: reads one 2-D image extension into a Map (source node, output `map`; optional
/// `grid` input: a binning whose spatial grid the map must match).
class ReadMapNode : public Node {
 public:
  static NodeSpec Spec();
  explicit ReadMapNode(const Params& p);
  void Process(ProcessContext& ctx) override;

 private:
  std::string path_, extension_, bunit_, name_;
};

/// Checks that `map` lies on the spatial grid of `grid` (same nx, ny; same sky position of the
/// corner and centre pixels to `tol_pix` pixel when both have a WCS). Returns "" or the problem.
std::string CompareGrids(const Map& map, const Binning& grid, double tol_pix = 0.05);

/// io.write_maps: collects maps, a binning and per-bin records; writes one MAPS file in Finish.
/// Serial: Process is never called concurrently (declared Concurrency::kSerial).
class WriteMapsNode : public Node {
 public:
  static NodeSpec Spec();
  explicit WriteMapsNode(const Params& p);
  void Process(ProcessContext& ctx) override;
  void Finish(ProcessContext& ctx) override;

  /// Per-bin data kept between Process and Finish (no spectra).
  struct BinResult {
    std::map<std::string, Record::Field> fields;
    uint32_t quality = 0;
    bool failed = false;
    std::string failure;
  };
  /// Builds the product from what was collected (exposed for tests).
  fits::MapsProduct Assemble(const RunInfo& run, bool aborted) const;
  const std::map<int64_t, BinResult>& bins() const { return bins_; }

 private:
  void CaptureSingles(ProcessContext& ctx);

  std::string path_;
  bool overwrite_ = true;
  bool records_connected_ = false;
  bool maps_captured_ = false;
  std::vector<std::shared_ptr<const Map>> maps_;
  std::shared_ptr<const Binning> binning_;
  std::map<int64_t, BinResult> bins_;
};

}  // namespace cubeflow::io
