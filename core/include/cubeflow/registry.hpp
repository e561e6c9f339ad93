#pragma once
/// \file registry.hpp
/// \brief The set of known node types and the plugins they came from.

#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "cubeflow/node.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow {

/// True for a node type built from a bound options struct (T::Options, T(const Options&)).
template <typename T>
concept BindsOptions = requires { typename T::Options; } && std::is_constructible_v<T, const typename T::Options&>;

/// \brief Node types by name. Plugins add to it from their registration function.
class Registry {
 public:
  /// Adds a spec; throws cubeflow::Error on a duplicate or malformed name, or on a name that
  /// does not start with the registering plugin's name ("io." for plugin io).
  void Add(NodeSpec spec);
  /// Adds node type T, which provides `static NodeSpec Spec()` and either
  /// - `using Options = ...;` and a constructor from `const Options&`: the parameters declared
  ///   with NodeSpec::Param(&Options::field, ...) are bound into an Options and the spec's
  ///   checks run before T is built (a failed check throws cubeflow::Error); or
  /// - a constructor from `const Params&` (parameters read by name).
  template <typename T>
  void Add() {
    Add(WithFactory<T>(T::Spec()));
  }
  /// The spec of T with the factory Add<T>() would give it (for tests that build nodes).
  template <typename T>
  static NodeSpec WithFactory(NodeSpec s) {
    if (s.factory()) return s;
    if constexpr (BindsOptions<T>) {
      auto spec = std::make_shared<const NodeSpec>(s);  // a copy that owns the binders and checks
      s.Factory([spec](const Params& p) {
        CheckReport r = spec->RunChecks(p);
        if (r.has_errors()) throw Error(r.ErrorText());
        return std::unique_ptr<Node>(new T(spec->Bind<typename T::Options>(p)));
      });
    } else {
      s.Factory([](const Params& p) { return std::unique_ptr<Node>(new T(p)); });
    }
    return s;
  }
  const NodeSpec* Find(const std::string& name) const;
  /// Closest known name by edit distance ("" if nothing is close).
  std::string Closest(const std::string& name) const;
  std::vector<const NodeSpec*> All() const;
  /// Which plugin (name, version, file) registered a node type.
  struct Origin { std::string plugin, version, file; };
  const Origin* OriginOf(const std::string& node_type) const;

  /// Used by the loader: node types added from now on are attributed to this plugin.
  void SetCurrentOrigin(Origin o) { current_ = std::move(o); }

 private:
  std::map<std::string, NodeSpec> specs_;
  std::map<std::string, Origin> origins_;
  Origin current_;
};

/// \brief Levenshtein distance, used for "did you mean" suggestions.
size_t EditDistance(const std::string& a, const std::string& b);

}  // namespace cubeflow
