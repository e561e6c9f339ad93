#pragma once
/// \file registry.hpp
/// \brief The set of known node types and the plugins they came from.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/node.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow {

/// \brief Node types by name. Plugins add to it from their registration function.
class Registry {
 public:
  /// Adds a spec; throws cubeflow::Error on a duplicate or malformed name.
  void Add(NodeSpec spec);
  /// Adds node type T, which provides `static NodeSpec Spec()` and a constructor from Params.
  template <typename T>
  void Add() {
    NodeSpec s = T::Spec();
    if (!s.factory()) s.Factory([](const Params& p) { return std::unique_ptr<Node>(new T(p)); });
    Add(std::move(s));
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
