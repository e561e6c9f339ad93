#pragma once
/// \file runner.hpp
/// \brief Executes a validated pipeline on a oneTBB flow graph.
///
/// Single messages (cubes, maps) flow once; stream items (bins) are pulled lazily from
/// StreamSources through a limiter so that at most `max_in_flight` items per source are alive,
/// are joined by key where a node has several stream inputs, are grouped into batches for
/// Batched nodes, and are collected by sinks. After the graph drains, nodes are finished in
/// pipeline order (flushing partial batches, letting sinks write).

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "cubeflow/loader.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/pipeline.hpp"

namespace cubeflow {

struct RunOptions {
  int threads = 0;               ///< 0: all cores
  int64_t max_in_flight = 0;     ///< overrides the pipeline setting when > 0
  bool progress = true;          ///< progress line on stderr (only if stderr is a terminal)
  /// If set, the run is stopped (as after an error: graph cancelled, sinks finish as aborted and
  /// write partial products) as soon as it becomes non-zero; its value names the signal.
  const std::atomic<int>* interrupt = nullptr;
  /// Where checkpointed nodes (NodeSpec::Checkpointed) keep their per-item results, one file per
  /// node ("" = no checkpoints). Without `resume` the files are started afresh.
  std::string checkpoint_dir;
  /// Take the results found in checkpoint_dir instead of computing them again.
  bool resume = false;
};

struct NodeStats {
  std::string name, type;
  int64_t calls = 0, items = 0, failed = 0;
  double busy_seconds = 0;       ///< summed over threads
  double active_seconds = 0;     ///< wall time during which at least one call ran
};

struct RunSummary {
  bool ok = false;
  std::string error;             ///< first error, naming node, type and item
  double wall_seconds = 0;
  int threads = 0;
  int64_t peak_rss_bytes = 0;
  std::vector<NodeStats> nodes;
  std::vector<ProductReport> products;  ///< what the sinks reported, in pipeline order
  int64_t items_resumed = 0;            ///< per-item results taken from checkpoints
  int64_t items_checkpointed = 0;       ///< per-item results written to checkpoints
  int interrupted_by = 0;               ///< the signal that stopped the run, 0 if none
  /// A table: node, type, calls, items, failed, busy s, items/s; then wall time and peak memory.
  std::string FormatTable() const;
};

/// \brief Runs the pipeline. Never throws for node failures: they end up in the summary.
RunSummary RunPipeline(const Pipeline& pipeline, const PluginManager& plugins, const RunOptions& options);

/// Peak resident set size of this process so far (VmHWM), bytes.
int64_t PeakRssBytes();

}  // namespace cubeflow
