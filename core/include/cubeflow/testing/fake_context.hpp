#pragma once
/// \file fake_context.hpp
/// \brief A ProcessContext for unit tests of nodes, without a pipeline or a runner.
///
/// \code
///   cubeflow::testing::FakeContext ctx("snr", "spectral.snr_map");
///   ctx.SetInput("cube", cube);                                  // a single input
///   auto node = cubeflow::testing::MakeNode(SnrMapNode::Spec(), {{"wave_min", 5000.0}});
///   node->Process(ctx);
///   auto snr = ctx.Output<Map>("snr");
/// \endcode
/// Per-item (stream) inputs: `ctx.AddItem(key, {{"spectra", s}})` once per item of the call
/// (a batch has several); what the node emits per item is in `ctx.Emitted(port)` with keys.
/// Header-only; not thread-safe (a test calls Process from one thread).

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/spec.hpp"

namespace cubeflow::testing {

class FakeContext : public ProcessContext {
 public:
  /// One emission: port, key (-1 for single outputs) and payload.
  struct Emission {
    std::string port;
    int64_t key = -1;
    std::shared_ptr<const Data> data;
  };

  explicit FakeContext(std::string node_name = "node", std::string node_type = "test.node")
      : name_(std::move(node_name)), type_(std::move(node_type)) {}

  // --- set up ------------------------------------------------------------------------
  /// A single input (delivered to every item of the call).
  void SetInput(const std::string& port, std::shared_ptr<const Data> d) { single_[port] = {std::move(d)}; }
  /// Several edges into one multi input.
  void SetInputs(const std::string& port, std::vector<std::shared_ptr<const Data>> ds) { single_[port] = std::move(ds); }
  /// One item of the call (stream inputs by port); returns its index.
  size_t AddItem(int64_t key, std::map<std::string, std::shared_ptr<const Data>> inputs = {}) {
    items_.push_back({key, std::move(inputs), ""});
    return items_.size() - 1;
  }
  /// One item that failed upstream with `why` (seen by nodes that AcceptsFailures()).
  size_t AddFailedItem(int64_t key, std::string why) {
    items_.push_back({key, {}, std::move(why)});
    return items_.size() - 1;
  }
  /// Forgets items and emissions (inputs stay), for the next call.
  void ClearItems() {
    items_.clear();
    emissions_.clear();
  }
  void SetAborted(bool a) { aborted_ = a; }
  void SetThreads(int n) { threads_ = n; }
  RunInfo& run_info() { return info_; }

  // --- what the node did --------------------------------------------------------------
  const std::vector<Emission>& emissions() const { return emissions_; }
  /// Payloads emitted on a port, in order.
  std::vector<std::shared_ptr<const Data>> Emitted(const std::string& port) const {
    std::vector<std::shared_ptr<const Data>> v;
    for (const auto& e : emissions_) if (e.port == port) v.push_back(e.data);
    return v;
  }
  /// The payload emitted on a single output, cast to T (null if none or of another type).
  template <typename T>
  std::shared_ptr<const T> Output(const std::string& port) const {
    for (const auto& e : emissions_)
      if (e.port == port && e.data && std::string(e.data->type()) == T::kType) return std::static_pointer_cast<const T>(e.data);
    return nullptr;
  }
  /// The lazy stream handed to a stream output (null if none).
  std::shared_ptr<StreamSource> Stream(const std::string& port) const {
    auto it = streams_.find(port);
    return it == streams_.end() ? nullptr : it->second;
  }
  const std::vector<std::pair<LogLevel, std::string>>& logs() const { return logs_; }
  /// True if some log message contains `needle`.
  bool Logged(const std::string& needle) const {
    return std::any_of(logs_.begin(), logs_.end(), [&](const auto& l) { return l.second.find(needle) != std::string::npos; });
  }

  // --- ProcessContext -----------------------------------------------------------------
  size_t size() const override { return items_.empty() ? 1 : items_.size(); }
  int64_t key(size_t item) const override { return item < items_.size() ? items_[item].key : -1; }
  bool failed(size_t item) const override { return item < items_.size() && !items_[item].failure.empty(); }
  std::string failure(size_t item) const override { return item < items_.size() ? items_[item].failure : ""; }
  std::shared_ptr<const Data> InputData(const std::string& port, size_t item = 0) const override {
    auto v = InputsOf(port, item);
    return v.empty() ? nullptr : v.front();
  }
  std::vector<std::shared_ptr<const Data>> InputsOf(const std::string& port, size_t item = 0) const override {
    if (item < items_.size()) {
      if (!items_[item].failure.empty()) return {};
      auto it = items_[item].inputs.find(port);
      if (it != items_[item].inputs.end()) return {it->second};
    }
    auto it = single_.find(port);
    return it == single_.end() ? std::vector<std::shared_ptr<const Data>>{} : it->second;
  }
  bool Connected(const std::string& port) const override {
    if (single_.count(port)) return true;
    return std::any_of(items_.begin(), items_.end(), [&](const Item& i) { return i.inputs.count(port) > 0; });
  }
  void Emit(const std::string& port, std::shared_ptr<const Data> data, size_t item = 0) override {
    emissions_.push_back({port, item < items_.size() ? items_[item].key : -1, std::move(data)});
  }
  void EmitItem(const std::string& port, int64_t key, std::shared_ptr<const Data> data) override {
    emissions_.push_back({port, key, std::move(data)});
  }
  void EmitStream(const std::string& port, std::shared_ptr<StreamSource> source) override {
    streams_[port] = std::move(source);
  }
  const std::string& node_name() const override { return name_; }
  const std::string& node_type() const override { return type_; }
  const RunInfo& run() const override { return info_; }
  bool aborted() const override { return aborted_; }
  int threads() const override { return threads_; }
  void Log(LogLevel level, const std::string& message) const override { logs_.emplace_back(level, message); }

 private:
  struct Item {
    int64_t key;
    std::map<std::string, std::shared_ptr<const Data>> inputs;
    std::string failure;
  };
  std::string name_, type_;
  std::map<std::string, std::vector<std::shared_ptr<const Data>>> single_;
  std::vector<Item> items_;
  std::vector<Emission> emissions_;
  std::map<std::string, std::shared_ptr<StreamSource>> streams_;
  mutable std::vector<std::pair<LogLevel, std::string>> logs_;
  RunInfo info_;
  bool aborted_ = false;
  int threads_ = 1;
};

/// Every declared parameter of `spec` at its default, then `given` on top (no validation:
/// use this to build nodes directly; a pipeline file goes through the validator instead).
inline Params DefaultParams(const NodeSpec& spec, const std::map<std::string, Value>& given = {}) {
  std::map<std::string, Value> v;
  for (const auto& p : spec.params()) v[p.name()] = p.default_value();
  for (const auto& [k, x] : given) {
    if (!spec.FindParam(k)) throw Error("test: node type '" + spec.name() + "' has no parameter '" + k + "'");
    v[k] = x;
  }
  return Params(std::move(v));
}

/// Builds node type T (as Registry::Add<T> would: options bound, checks run) with `given`
/// parameters over the defaults.
template <typename T>
std::unique_ptr<Node> MakeNode(const std::map<std::string, Value>& given = {}) {
  const NodeSpec spec = Registry::WithFactory<T>(T::Spec());
  return spec.factory()(DefaultParams(spec, given));
}

/// Builds a node from a spec that already has its factory.
inline std::unique_ptr<Node> MakeNode(const NodeSpec& spec, const std::map<std::string, Value>& given = {}) {
  if (!spec.factory()) throw Error("test: node type '" + spec.name() + "' has no factory");
  return spec.factory()(DefaultParams(spec, given));
}

}  // namespace cubeflow::testing
