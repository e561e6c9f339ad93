#include "cubeflow/registry.hpp"

#include <algorithm>
#include <cctype>
#include <typeinfo>

namespace cubeflow {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

namespace {
bool ValidTypeName(const std::string& n) {
  auto dot = n.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == n.size()) return false;
  for (char c : n)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '.'))
      return false;
  return true;
}
}  // namespace

void Registry::Add(NodeSpec spec) {
  const std::string name = spec.name();
  if (!ValidTypeName(name))
    throw Error("node type name '" + name + "' must be 'plugin.node' in lower case (letters, digits, _)");
  if (!spec.factory()) throw Error("node type '" + name + "' has no factory");
  if (!current_.plugin.empty() && name.rfind(current_.plugin + ".", 0) != 0)
    throw Error("plugin '" + current_.plugin + "' registers node type '" + name + "': a plugin's node types are named '" +
                current_.plugin + ".<node>'; rename the node type or the plugin");
  const std::type_info* bound = nullptr;
  for (const auto& p : spec.params()) {
    if (p.is_output() && p.type() != ParamType::kPath)
      throw Error("node type '" + name + "': output parameter '" + p.name() + "' must be a path");
    if (!p.options_type()) continue;
    if (bound && *bound != *p.options_type())
      throw Error("node type '" + name + "': parameter '" + p.name() + "' is bound to another options struct");
    bound = p.options_type();
  }
  if (specs_.count(name)) {
    const auto& o = origins_[name];
    throw Error("node type '" + name + "' is already registered by plugin '" + o.plugin + "' (" + o.file + ")");
  }
  if (!spec.batch_param().empty()) {
    const ParamSpec* p = spec.FindParam(spec.batch_param());
    if (!p || p->type() != ParamType::kInt)
      throw Error("node type '" + name + "': batch parameter '" + spec.batch_param() + "' must be a declared int parameter");
  }
  origins_[name] = current_;
  specs_.emplace(name, std::move(spec));
}

const NodeSpec* Registry::Find(const std::string& name) const {
  auto it = specs_.find(name);
  return it == specs_.end() ? nullptr : &it->second;
}

std::string Registry::Closest(const std::string& name) const {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& [n, s] : specs_) {
    size_t d = EditDistance(name, n);
    // Also match on the part after the dot (e.g. "voronoi" -> "binning.voronoi").
    auto dot = n.find('.');
    if (dot != std::string::npos) d = std::min(d, EditDistance(name, n.substr(dot + 1)) + 1);
    if (d < best_d) { best_d = d; best = n; }
  }
  if (best_d == std::string::npos || best_d > std::max<size_t>(3, name.size() / 3)) return "";
  return best;
}

std::vector<const NodeSpec*> Registry::All() const {
  std::vector<const NodeSpec*> v;
  for (const auto& [n, s] : specs_) v.push_back(&s);
  return v;
}

const Registry::Origin* Registry::OriginOf(const std::string& node_type) const {
  auto it = origins_.find(node_type);
  return it == origins_.end() ? nullptr : &it->second;
}

}  // namespace cubeflow
