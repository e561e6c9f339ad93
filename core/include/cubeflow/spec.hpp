#pragma once
/// \file spec.hpp
/// \brief Declarations of node types as data: ports, parameters, concurrency.
///
/// A NodeSpec is everything the runtime knows about a node type before it runs. The
/// validator, `cubeflow plugins` and `cubeflow inspect` read nothing else, so the
/// documentation they print is always the one the code enforces.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "cubeflow/status.hpp"
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

namespace detail {
/// The ParamType of an options-struct field of type M.
template <class M>
constexpr ParamType ParamTypeOf() {
  if constexpr (std::is_same_v<M, bool>) return ParamType::kBool;
  else if constexpr (std::is_integral_v<M>) return ParamType::kInt;
  else if constexpr (std::is_floating_point_v<M>) return ParamType::kDouble;
  else if constexpr (std::is_same_v<M, std::string>) return ParamType::kString;
  else if constexpr (std::is_same_v<M, std::filesystem::path>) return ParamType::kPath;
  else if constexpr (std::is_same_v<M, ModelRef>) return ParamType::kModel;
  else if constexpr (std::is_same_v<M, std::vector<double>>) return ParamType::kDoubleList;
  else if constexpr (std::is_same_v<M, std::vector<int64_t>>) return ParamType::kIntList;
  else if constexpr (std::is_same_v<M, std::vector<std::string>>) return ParamType::kStringList;
  else static_assert(sizeof(M) == 0, "unsupported parameter field type");
}
/// Field value -> Value (for defaults) and Value -> field (binding).
template <class M>
Value ToValue(const M& m) {
  if constexpr (std::is_same_v<M, bool>) return m;
  else if constexpr (std::is_integral_v<M>) return static_cast<int64_t>(m);
  else if constexpr (std::is_floating_point_v<M>) return static_cast<double>(m);
  else if constexpr (std::is_same_v<M, std::filesystem::path>) return m.string();
  else if constexpr (std::is_same_v<M, ModelRef>) return m.text;
  else return m;
}
template <class M>
void FromValue(const Value& v, M& m) {
  if constexpr (std::is_same_v<M, bool>) m = std::get<bool>(v);
  else if constexpr (std::is_integral_v<M>) m = static_cast<M>(std::get<int64_t>(v));
  else if constexpr (std::is_floating_point_v<M>) {
    if (const int64_t* i = std::get_if<int64_t>(&v)) m = static_cast<M>(*i);
    else m = static_cast<M>(std::get<double>(v));
  } else if constexpr (std::is_same_v<M, std::filesystem::path>) m = std::get<std::string>(v);
  else if constexpr (std::is_same_v<M, ModelRef>) m = ModelRef::Parse(std::get<std::string>(v));
  else m = std::get<M>(v);
}
}  // namespace detail

/// \brief One typed parameter with default, unit, allowed range or choices and documentation.
///
/// Parameters are declared once: ParamSpec::Of(&Options::field, "name") takes the type and the
/// default from the options struct (its member initialiser), and the node receives the bound
/// struct (see NodeSpec::Param and Registry::Add). The older by-name form (ParamSpec::Double
/// and Params::GetDouble) remains for nodes that keep their own Params.
class ParamSpec {
 public:
  /// Writes a bound Value into the field of an options struct (type-erased).
  using Binder = std::function<void(void* options, const Value& value)>;

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
  /// A parameter bound to `field` of options struct O: type and default come from O{}.
  template <class O, class M>
  static ParamSpec Of(M O::*field, std::string name) {
    ParamSpec p(std::move(name), detail::ParamTypeOf<M>());
    const O defaults{};
    p.default_ = detail::ToValue(defaults.*field);
    p.options_type_ = &typeid(O);
    p.binder_ = [field](void* o, const Value& v) { detail::FromValue(v, static_cast<O*>(o)->*field); };
    return p;
  }

  ParamSpec& Default(Value v) { default_ = std::move(v); return *this; }
  ParamSpec& Unit(std::string u) { unit_ = std::move(u); return *this; }
  ParamSpec& Doc(std::string d) { doc_ = std::move(d); return *this; }
  /// Inclusive numeric bounds; for lists they apply to every element.
  ParamSpec& Min(double v) { min_ = v; return *this; }
  ParamSpec& Max(double v) { max_ = v; return *this; }
  ParamSpec& Range(double lo, double hi) { min_ = lo; max_ = hi; return *this; }
  /// Allowed values for a string parameter.
  ParamSpec& Choices(std::vector<std::string> c) { choices_ = std::move(c); return *this; }
  /// The pipeline must give this parameter (its default is then not used).
  ParamSpec& MakeRequired() { required_ = true; return *this; }
  /// A path parameter naming a file the node writes (a product). The validator refuses an
  /// output that is one of the pipeline's inputs (same file by path, symbolic link or hard
  /// link), another node's output, or an existing non-regular file (a device, FIFO or
  /// directory) unless the run allows it.
  ParamSpec& MarkOutput() { output_ = true; return *this; }

  const std::string& name() const { return name_; }
  ParamType type() const { return type_; }
  const Value& default_value() const { return default_; }
  bool required() const { return required_; }
  const std::string& unit() const { return unit_; }
  const std::string& doc() const { return doc_; }
  const std::optional<double>& min() const { return min_; }
  const std::optional<double>& max() const { return max_; }
  const std::vector<std::string>& choices() const { return choices_; }
  bool is_output() const { return output_; }
  /// The options struct this parameter is bound to (null for by-name parameters).
  const std::type_info* options_type() const { return options_type_; }
  const Binder& binder() const { return binder_; }

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
  bool output_ = false;
  const std::type_info* options_type_ = nullptr;
  Binder binder_;
};

// Attributes for NodeSpec::Param(&Options::field, name, doc, attributes...).
/// Physical unit shown by `cubeflow inspect` ("Angstrom", "km/s").
struct Unit {
  std::string unit;
  void Apply(ParamSpec& p) const { p.Unit(unit); }
};
/// Inclusive lower bound (every element, for lists).
struct AtLeast {
  double min;
  void Apply(ParamSpec& p) const { p.Min(min); }
};
/// Inclusive upper bound (every element, for lists).
struct AtMost {
  double max;
  void Apply(ParamSpec& p) const { p.Max(max); }
};
/// Inclusive range.
struct InRange {
  double min, max;
  void Apply(ParamSpec& p) const { p.Range(min, max); }
};
/// Allowed values of a string (or each element of a string list).
struct OneOf {
  std::vector<std::string> choices;
  void Apply(ParamSpec& p) const { p.Choices(choices); }
};
/// The pipeline must give the parameter.
struct Required {
  void Apply(ParamSpec& p) const { p.MakeRequired(); }
};
/// A path the node writes (see ParamSpec::MarkOutput).
struct OutputFile {
  void Apply(ParamSpec& p) const { p.MarkOutput(); }
};

/// \brief Problems found by a node type's validation hook (NodeSpec::Check), each attached to
/// a parameter so that `cubeflow validate` can point at its line and column.
class CheckReport {
 public:
  struct Issue {
    std::string param;  ///< the parameter at fault ("" for the node as a whole)
    std::string message;
    bool is_error = true;
  };
  /// Reports an error about `param` (a declared parameter name, or "").
  void Error(std::string param, std::string message) { issues_.push_back({std::move(param), std::move(message), true}); }
  void Warn(std::string param, std::string message) { issues_.push_back({std::move(param), std::move(message), false}); }
  const std::vector<Issue>& issues() const { return issues_; }
  bool has_errors() const {
    for (const auto& i : issues_) if (i.is_error) return true;
    return false;
  }
  /// The errors as one message ("wave_min: must be below wave_max; ...").
  std::string ErrorText() const;

 private:
  std::vector<Issue> issues_;
};

/// \brief Whether the runtime may call a node's Process concurrently.
enum class Concurrency { kSerial, kParallel };

using NodeFactory = std::function<std::unique_ptr<Node>(const Params&)>;
class NodeSpec;
/// A node type's validation hook: cross-parameter checks and whatever can be known before the
/// run (a model file's grid, say). Runs in `cubeflow validate` and before a node is built.
using CheckFn = std::function<void(const NodeSpec& spec, const Params& params, CheckReport& report)>;

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
  /// A parameter bound to a field of the node's options struct, declared in one place:
  /// \code
  ///   .Param(&SnrOptions::wave_min, "wave_min", "start of the window", Unit{"Angstrom"}, AtLeast{0})
  /// \endcode
  template <class O, class M, class... Attrs>
  NodeSpec& Param(M O::*field, std::string name, std::string doc, const Attrs&... attrs) {
    ParamSpec p = ParamSpec::Of(field, std::move(name));
    p.Doc(std::move(doc));
    (attrs.Apply(p), ...);
    return Param(std::move(p));
  }
  /// A validation hook over the bound options struct O:
  /// \code
  ///   .Check<SnrOptions>([](const SnrOptions& o, CheckReport& r) {
  ///     if (o.wave_min >= o.wave_max) r.Error("wave_max", "must be above wave_min");
  ///   })
  /// \endcode
  template <class O>
  NodeSpec& Check(std::function<void(const O&, CheckReport&)> fn) {
    checks_.push_back([fn = std::move(fn)](const NodeSpec& spec, const Params& p, CheckReport& r) {
      fn(spec.Bind<O>(p), r);
    });
    return *this;
  }
  /// A validation hook over the raw Params (for nodes without an options struct).
  NodeSpec& CheckParams(CheckFn fn) { checks_.push_back(std::move(fn)); return *this; }
  NodeSpec& Concurrent(Concurrency c) { concurrency_ = c; return *this; }
  /// The node processes stream items in batches whose size is the named Int parameter;
  /// its Process is then called once per batch (ProcessContext::batch_size() > 1).
  NodeSpec& Batched(std::string batch_param) { batch_param_ = std::move(batch_param); return *this; }
  /// The node wants to see stream items that failed upstream (sinks that flag them in a mask).
  NodeSpec& AcceptsFailures(bool v = true) { accepts_failures_ = v; return *this; }
  /// The node's per-item results are worth keeping across runs (an expensive per-item node
  /// whose outputs are records, spectra or photometry): `cubeflow run` stores what it emits for
  /// each item under a key of everything the result depends on, and `--resume` takes results
  /// from there instead of computing them again. Its results must depend on nothing but its
  /// parameters, the files they name and the item's inputs.
  NodeSpec& Checkpointed(bool v = true) { checkpointed_ = v; return *this; }
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
  bool checkpointed() const { return checkpointed_; }
  const NodeFactory& factory() const { return factory_; }
  const std::vector<CheckFn>& checks() const { return checks_; }
  /// Runs every validation hook on bound parameters.
  CheckReport RunChecks(const Params& params) const;
  /// The options struct O with every parameter bound to it set from `params` (all declared
  /// parameters must be present, as they are after validation). Throws cubeflow::Error if a
  /// parameter is bound to another struct or not bound at all.
  template <class O>
  O Bind(const Params& params) const;

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
  bool checkpointed_ = false;
  NodeFactory factory_;
  std::vector<CheckFn> checks_;
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

template <class O>
O NodeSpec::Bind(const Params& params) const {
  O o{};
  for (const auto& p : params_) {
    if (p.options_type() == nullptr || !p.binder())
      throw Error("node type '" + name_ + "': parameter '" + p.name() + "' is not bound to an options field");
    if (*p.options_type() != typeid(O))
      throw Error("node type '" + name_ + "': parameter '" + p.name() + "' is bound to another options struct");
    if (!params.Has(p.name())) continue;  // an optional parameter without default keeps O's value
    p.binder()(&o, params.values().at(p.name()));
  }
  return o;
}

}  // namespace cubeflow
