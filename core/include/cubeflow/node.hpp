#pragma once
/// \file node.hpp
/// \brief The interface a node implements, and the context the runtime hands it.
///
/// Threading: for a node declared Concurrency::kParallel, Process may run concurrently on
/// several items; keep per-call state in locals (members only for read-only configuration, or
/// guard them). Finish is called once, after all inputs are exhausted, never concurrently with
/// Process.

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow {

/// \brief A lazy stream of keyed items. The runtime pulls the next item only when fewer than
/// the pipeline's `max_in_flight` items are in flight, so a node can stream thousands of bins
/// out of a cube without materialising them all. Next() is never called concurrently.
class StreamSource {
 public:
  virtual ~StreamSource() = default;
  /// Produces the next item; returns false at the end of the stream.
  virtual bool Next(int64_t& key, std::shared_ptr<const Data>& data) = 0;
  /// Number of items, if known (-1 otherwise); used for progress display.
  virtual int64_t SizeHint() const { return -1; }
};

/// \brief What a run knows about itself; sinks write it into product headers.
struct RunInfo {
  struct NodeInfo {
    std::string name, type, plugin, plugin_version;
    std::map<std::string, std::string> params;  ///< every parameter, defaults included
  };
  std::string cubeflow_version;
  std::string pipeline_file;
  std::string started_utc;
  std::vector<NodeInfo> nodes;
  std::vector<std::string> input_files;  ///< existing files named by path parameters
};

/// \brief What a sink says about the product it wrote (Finish), for the run's summary and exit
/// status: a run whose every product has nothing usable exits non-zero (unless allowed).
struct ProductReport {
  std::string path;        ///< the file written (or, after a failure, the partial file beside it)
  int64_t items = 0;       ///< bins (or spaxels) the product covers
  int64_t usable = 0;      ///< of these, how many carry a valid result (not failed, not all NaN)
  bool partial = false;    ///< written after the run failed or was interrupted
  std::string note;        ///< e.g. "previous product kept; partial product written beside it"
};

/// \brief Severity for ProcessContext::Log.
enum class LogLevel { kDebug, kInfo, kWarn, kError };

/// \brief Inputs, outputs and services for one call of Node::Process or Node::Finish.
class ProcessContext {
 public:
  virtual ~ProcessContext() = default;

  /// Number of items in this call: 1, or up to the batch size for Batched nodes.
  virtual size_t size() const = 0;
  /// Key (bin id) of item i; -1 when the call is not per item.
  virtual int64_t key(size_t item = 0) const = 0;
  /// True if item i failed upstream (only seen by nodes that AcceptsFailures()).
  virtual bool failed(size_t item = 0) const = 0;
  /// Why item i failed upstream ("" if it did not).
  virtual std::string failure(size_t item = 0) const = 0;
  /// Payload on an input port for item i; null if the optional port is unconnected or the item failed.
  /// For multi ports, the first edge's payload (see InputsOf()).
  virtual std::shared_ptr<const Data> InputData(const std::string& port, size_t item = 0) const = 0;
  /// All payloads on a multi port, one per connected edge, in pipeline order.
  virtual std::vector<std::shared_ptr<const Data>> InputsOf(const std::string& port, size_t item = 0) const = 0;
  /// True if some edge feeds this input port.
  virtual bool Connected(const std::string& port) const = 0;

  /// Sends a payload on an output port. For stream outputs it is keyed like item i;
  /// for single outputs `item` is ignored. Each single output may be emitted once.
  virtual void Emit(const std::string& port, std::shared_ptr<const Data> data, size_t item = 0) = 0;
  /// Sends one stream item with an explicit key (e.g. from Finish). Not flow-limited.
  virtual void EmitItem(const std::string& port, int64_t key, std::shared_ptr<const Data> data) = 0;
  /// Hands a lazy stream to the runtime for a stream output; items are pulled as capacity allows.
  virtual void EmitStream(const std::string& port, std::shared_ptr<StreamSource> source) = 0;

  /// Instance name in the pipeline ("bin") and type ("binning.voronoi").
  virtual const std::string& node_name() const = 0;
  virtual const std::string& node_type() const = 0;
  virtual const RunInfo& run() const = 0;
  /// True in Finish when the run failed elsewhere: sinks should still write what they have.
  virtual bool aborted() const = 0;
  /// Number of threads the run may use.
  virtual int threads() const = 0;
  /// Logs a message tagged with the node name (debug messages only with -v).
  virtual void Log(LogLevel level, const std::string& message) const = 0;
  /// Sinks call this once per product they write (from Finish); the runner lists the products
  /// in its summary and the CLI fails a run whose products hold nothing usable.
  virtual void ReportProduct(const ProductReport& report) { (void)report; }

  /// Typed access: throws cubeflow::Error naming the port if absent or of another type.
  template <typename T>
  std::shared_ptr<const T> Input(const std::string& port, size_t item = 0) const {
    auto d = InputData(port, item);
    if (!d) throw Error("input '" + port + "' has no data");
    if (std::string(d->type()) != T::kType)
      throw Error("input '" + port + "' carries '" + d->type() + "', expected '" + T::kType + "'");
    return std::static_pointer_cast<const T>(d);
  }
  /// Like Input<T> but returns null when the optional port has no data.
  template <typename T>
  std::shared_ptr<const T> OptionalInput(const std::string& port, size_t item = 0) const {
    auto d = InputData(port, item);
    if (!d) return nullptr;
    return Input<T>(port, item);
  }
};

/// \brief A node instance. Constructed from validated Params by the spec's factory.
class Node {
 public:
  virtual ~Node() = default;
  /// Called once per item (stream inputs), once per batch (Batched nodes), or once per run
  /// when all inputs are single (sources are called once with no inputs).
  /// May throw: the runtime stops the run and reports node, type and item.
  virtual void Process(ProcessContext& ctx) = 0;
  /// Called once after every input is exhausted, in pipeline order; may emit.
  virtual void Finish(ProcessContext& ctx) { (void)ctx; }
};

}  // namespace cubeflow
