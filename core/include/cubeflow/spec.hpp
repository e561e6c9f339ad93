#pragma once
/// \file spec.hpp
/// \brief Declarations of node types as data: ports, parameters, concurrency.
///
/// A NodeSpec is everything the runtime knows about a node type before it runs. The
/// validator, `cubeflow plugins` and `cubeflow inspect` read nothing else, so the
/// documentation they print is always the one the code enforces.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cubeflow/value.hpp"

namespace cubeflow {

class Node;
class Params;

/// \brief How messages flow through a port.
enum class PortKind {
  kSingle,  ///< exactly one message per run (a cube, a map, a model)
  kStream,  ///< many messages, each keyed by an item id (bin id), processed independently
};

/// \brief One input or output port.
struct PortSpec {
  std::string name;
  std::string type;       ///< data type name, e.g. "cube", "map", "spectrum"; "any" accepts all
  PortKind kind = PortKind::kSingle;
  bool required = true;   ///< inputs only: validation fails if nothing is connected
  bool multi = false;     ///< inputs only: several edges may feed this port
  std::string doc;
};

/// \brief One typed parameter with default, unit, allowed range or choices and documentation.
class ParamSpec {
 public:
  ParamSpec() = default;
  ParamSpec(std::string name, ParamType type) : name_(std::move(name)), type_(type) {}

  static ParamSpec Bool(std::string name, bool def) { return ParamSpec(std::move(name), ParamType::kBool).Default(def); }
  static ParamSpec Int(std::string name, int64_t def) { return ParamSpec(std::move(name), ParamType::kInt).Default(def); }
  static ParamSpec Double(std::string name, double def) { return ParamSpec(std::move(name), ParamType::kDouble).Default(def); }
  static ParamSpec String(std::string name, std::string def) { return ParamSpec(std::move(name), ParamType::kString).Default(std::move(def)); }
  static ParamSpec Path(std::string name, std::string def) { return ParamSpec(std::move(name), ParamType::kPath).Default(std::move(def)); }
  static ParamSpec DoubleList(std::string name, std::vector<double> def) { return ParamSpec(std::move(name), ParamType::kDoubleList).Default(std::move(def)); }
  static ParamSpec IntList(std::string name, std::vector<int64_t> def) { return ParamSpec(std::move(name), ParamType::kIntList).Default(std::move(def)); }
  static ParamSpec StringList(std::string name, std::vector<std::string> def) { return ParamSpec(std::move(name), ParamType::kStringList).Default(std::move(def)); }
  /// A parameter with no default: the pipeline must give it.
  static ParamSpec Required(std::string name, ParamType type) { ParamSpec p(std::move(name), type); p.required_ = true; return p; }

  ParamSpec& Default(Value v) { default_ = std::move(v); return *this; }
  ParamSpec& Unit(std::string u) { unit_ = std::move(u); return *this; }
  ParamSpec& Doc(std::string d) { doc_ = std::move(d); return *this; }
  /// Inclusive numeric bounds; for lists they apply to every element.
  ParamSpec& Min(double v) { min_ = v; return *this; }
  ParamSpec& Max(double v) { max_ = v; return *this; }
  ParamSpec& Range(double lo, double hi) { min_ = lo; max_ = hi; return *this; }
  /// Allowed values for a string parameter.
  ParamSpec& Choices(std::vector<std::string> c) { choices_ = std::move(c); return *this; }

  const std::string& name() const { return name_; }
  ParamType type() const { return type_; }
  const Value& default_value() const { return default_; }
  bool required() const { return required_; }
  const std::string& unit() const { return unit_; }
  const std::string& doc() const { return doc_; }
  const std::optional<double>& min() const { return min_; }
  const std::optional<double>& max() const { return max_; }
  const std::vector<std::string>& choices() const { return choices_; }

  /// One-line description used in error messages: "target_snr (double, default 35)".
  std::string Brief() const;

 private:
  std::string name_;
  ParamType type_ = ParamType::kDouble;
  Value default_;
  bool required_ = false;
  std::string unit_, doc_;
  std::optional<double> min_, max_;
  std::vector<std::string> choices_;
};

/// \brief Whether the runtime may call a node's Process concurrently.
enum class Concurrency { kSerial, kParallel };

using NodeFactory = std::function<std::unique_ptr<Node>(const Params&)>;

/// \brief Everything declared about one node type.
class NodeSpec {
 public:
  NodeSpec() = default;
  NodeSpec(std::string name, std::string summary) : name_(std::move(name)), summary_(std::move(summary)) {}

  NodeSpec& Describe(std::string text) { description_ = std::move(text); return *this; }
  NodeSpec& Input(std::string name, std::string type, PortKind kind, std::string doc) {
    inputs_.push_back({std::move(name), std::move(type), kind, true, false, std::move(doc)});
    return *this;
  }
  NodeSpec& OptionalInput(std::string name, std::string type, PortKind kind, std::string doc) {
    inputs_.push_back({std::move(name), std::move(type), kind, false, false, std::move(doc)});
    return *this;
  }
  /// An input that accepts any number (>= 0, or >= 1 if required) of edges.
  NodeSpec& MultiInput(std::string name, std::string type, PortKind kind, bool required, std::string doc) {
    inputs_.push_back({std::move(name), std::move(type), kind, required, true, std::move(doc)});
    return *this;
  }
  NodeSpec& Output(std::string name, std::string type, PortKind kind, std::string doc) {
    outputs_.push_back({std::move(name), std::move(type), kind, false, false, std::move(doc)});
    return *this;
  }
  NodeSpec& Param(ParamSpec p) { params_.push_back(std::move(p)); return *this; }
  NodeSpec& Concurrent(Concurrency c) { concurrency_ = c; return *this; }
  /// The node processes stream items in batches whose size is the named Int parameter;
  /// its Process is then called once per batch (ProcessContext::batch_size() > 1).
  NodeSpec& Batched(std::string batch_param) { batch_param_ = std::move(batch_param); return *this; }
  /// The node wants to see stream items that failed upstream (sinks that flag them in a mask).
  NodeSpec& AcceptsFailures(bool v = true) { accepts_failures_ = v; return *this; }
  NodeSpec& Factory(NodeFactory f) { factory_ = std::move(f); return *this; }

  const std::string& name() const { return name_; }
  const std::string& summary() const { return summary_; }
  const std::string& description() const { return description_; }
  const std::vector<PortSpec>& inputs() const { return inputs_; }
  const std::vector<PortSpec>& outputs() const { return outputs_; }
  const std::vector<ParamSpec>& params() const { return params_; }
  Concurrency concurrency() const { return concurrency_; }
  const std::string& batch_param() const { return batch_param_; }
  bool accepts_failures() const { return accepts_failures_; }
  const NodeFactory& factory() const { return factory_; }

  const PortSpec* FindInput(const std::string& n) const;
  const PortSpec* FindOutput(const std::string& n) const;
  const ParamSpec* FindParam(const std::string& n) const;
  /// True if any input or output port is a stream.
  bool IsPerItem() const;

 private:
  std::string name_, summary_, description_;
  std::vector<PortSpec> inputs_, outputs_;
  std::vector<ParamSpec> params_;
  Concurrency concurrency_ = Concurrency::kParallel;
  std::string batch_param_;
  bool accepts_failures_ = false;
  NodeFactory factory_;
};

/// \brief Bound, validated parameter values of one node instance.
class Params {
 public:
  Params() = default;
  explicit Params(std::map<std::string, Value> values) : values_(std::move(values)) {}

  bool Has(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  int64_t GetInt(const std::string& name) const;
  double GetDouble(const std::string& name) const;
  /// Also for kPath parameters (absolute, or as given if empty).
  const std::string& GetString(const std::string& name) const;
  const std::vector<double>& GetDoubleList(const std::string& name) const;
  const std::vector<int64_t>& GetIntList(const std::string& name) const;
  const std::vector<std::string>& GetStringList(const std::string& name) const;
  const std::map<std::string, Value>& values() const { return values_; }
  void Set(const std::string& name, Value v) { values_[name] = std::move(v); }

 private:
  const Value& At(const std::string& name) const;
  std::map<std::string, Value> values_;
};

}  // namespace cubeflow
