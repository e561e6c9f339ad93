#include "cubeflow/pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <regex>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "cubeflow/registry.hpp"

namespace fs = std::filesystem;

namespace cubeflow {

std::string Diagnostic::Format() const {
  std::string s = loc.file;
  if (loc.line > 0) s += ":" + std::to_string(loc.line) + ":" + std::to_string(loc.column);
  s += is_error ? ": error: " : ": warning: ";
  s += message;
  if (!note.empty()) s += "\n    " + note;
  return s;
}

const PipelineNode* Pipeline::FindNode(const std::string& name) const {
  for (const auto& n : nodes) if (n.name == name) return &n;
  return nullptr;
}

namespace {

const char* kTopLevelKeys[] = {"cubeflow", "plugins", "settings", "nodes", "edges", "description"};
const char* kSettingsKeys[] = {"max_in_flight", "on_error"};

struct Context {
  std::string file;
  std::string base_dir;
  std::vector<Diagnostic>* diags;
  bool errors = false;

  SourceLoc Loc(const YAML::Mark& m) const { return {file, m.line + 1, m.column + 1}; }
  SourceLoc Loc(const YAML::Node& n) const { return Loc(n.Mark()); }
  void Error(SourceLoc loc, std::string msg, std::string note = "") {
    diags->push_back({std::move(loc), true, std::move(msg), std::move(note)});
    errors = true;
  }
  void Warn(SourceLoc loc, std::string msg, std::string note = "") {
    diags->push_back({std::move(loc), false, std::move(msg), std::move(note)});
  }
};

std::string Closest(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& c : candidates) {
    size_t d = EditDistance(name, c);
    if (d < best_d) { best_d = d; best = c; }
  }
  if (best.empty() || best_d > std::max<size_t>(2, name.size() / 3)) return "";
  return best;
}

std::string Join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::string ValidParams(const NodeSpec& spec) {
  std::vector<std::string> v;
  for (const auto& p : spec.params()) v.push_back(p.Brief());
  return v.empty() ? std::string("this node takes no parameters") : "parameters: " + Join(v, ", ");
}

/// Expands ${VAR} and ${VAR:-default} in a string.
std::string ExpandEnv(const std::string& s) {
  static const std::regex re(R"(\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\})");
  std::string out;
  auto begin = std::sregex_iterator(s.begin(), s.end(), re);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    out += s.substr(last, it->position() - last);
    const char* v = std::getenv((*it)[1].str().c_str());
    out += (v && *v) ? std::string(v) : (*it)[3].str();
    last = it->position() + it->length();
  }
  return out + s.substr(last);
}

bool ParseBool(const std::string& s, bool& out) {
  if (s == "true" || s == "True" || s == "TRUE" || s == "yes" || s == "on") { out = true; return true; }
  if (s == "false" || s == "False" || s == "FALSE" || s == "no" || s == "off") { out = false; return true; }
  return false;
}
bool ParseInt(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno || *end) return false;
  out = v;
  return true;
}
bool ParseDouble(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (*end) {
    if (s == ".inf" || s == "inf") { out = INFINITY; return true; }
    if (s == "-.inf" || s == "-inf") { out = -INFINITY; return true; }
    return false;
  }
  out = v;
  return true;
}

std::string DescribeYaml(const YAML::Node& n) {
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "nothing";
}

/// Converts a YAML value to the parameter's type; returns an error string on failure.
std::string Convert(const ParamSpec& spec, const YAML::Node& n, const std::string& base_dir, Value& out) {
  const std::string want = ParamTypeName(spec.type());
  auto scalar_err = [&] { return "expected " + want + ", got " + DescribeYaml(n); };
  auto check_range = [&](double v) -> std::string {
    if (spec.min() && v < *spec.min()) {
      std::ostringstream os;
      os << "must be >= " << FormatValue(*spec.min()) << ", got " << FormatValue(v);
      return os.str();
    }
    if (spec.max() && v > *spec.max()) {
      std::ostringstream os;
      os << "must be <= " << FormatValue(*spec.max()) << ", got " << FormatValue(v);
      return os.str();
    }
    return "";
  };
  switch (spec.type()) {
    case ParamType::kBool: {
      bool b;
      if (!n.IsScalar() || !ParseBool(n.Scalar(), b)) return scalar_err();
      out = b;
      return "";
    }
    case ParamType::kInt: {
      int64_t i;
      if (!n.IsScalar() || !ParseInt(n.Scalar(), i)) return scalar_err();
      if (auto e = check_range(static_cast<double>(i)); !e.empty()) return e;
      out = i;
      return "";
    }
    case ParamType::kDouble: {
      double d;
      if (!n.IsScalar() || !ParseDouble(n.Scalar(), d)) return scalar_err();
      if (auto e = check_range(d); !e.empty()) return e;
      out = d;
      return "";
    }
    case ParamType::kString: {
      if (!n.IsScalar()) return scalar_err();
      std::string s = ExpandEnv(n.Scalar());
      if (!spec.choices().empty() &&
          std::find(spec.choices().begin(), spec.choices().end(), s) == spec.choices().end()) {
        std::string e = "must be one of " + Join(spec.choices(), ", ") + "; got '" + s + "'";
        if (auto c = Closest(s, spec.choices()); !c.empty()) e += " (did you mean '" + c + "'?)";
        return e;
      }
      out = s;
      return "";
    }
    case ParamType::kPath: {
      if (!n.IsScalar()) return scalar_err();
      std::string s = ExpandEnv(n.Scalar());
      if (!s.empty()) {
        fs::path p(s);
        if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
        s = p.lexically_normal().string();
      }
      out = s;
      return "";
    }
    case ParamType::kModel: {
      if (!n.IsScalar()) return scalar_err();
      std::string s = ExpandEnv(n.Scalar());
      if (ModelRef::IsName(s)) {
        if (!ModelRef::Parse(s).File().empty()) {
          out = s;
          return "";
        }
        const auto names = ShippedModelNames();
        std::string e = "no shipped model named '" + s + "'";
        if (auto c = Closest(s, names); !c.empty()) e += " (did you mean '" + c + "'?)";
        e += "; shipped models: " + (names.empty() ? std::string("none found") : Join(names, ", ")) +
             "; a model file is given by its path (e.g. ./" + s + ".pt)";
        return e;
      }
      fs::path p(s);
      if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
      p = p.lexically_normal();
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) return "model file '" + p.string() + "' does not exist";
      out = p.string();
      return "";
    }
    case ParamType::kDoubleList:
    case ParamType::kIntList:
    case ParamType::kStringList: {
      YAML::Node seq = n;
      if (n.IsScalar()) {  // a single value is a one-element list
        seq = YAML::Node(YAML::NodeType::Sequence);
        seq.push_back(n);
      }
      if (!seq.IsSequence()) return scalar_err();
      std::vector<double> dl;
      std::vector<int64_t> il;
      std::vector<std::string> sl;
      for (size_t i = 0; i < seq.size(); ++i) {
        const YAML::Node e = seq[i];
        if (!e.IsScalar()) return "element " + std::to_string(i) + ": expected a scalar, got " + DescribeYaml(e);
        if (spec.type() == ParamType::kDoubleList) {
          double d;
          if (!ParseDouble(e.Scalar(), d)) return "element " + std::to_string(i) + ": expected a number, got '" + e.Scalar() + "'";
          if (auto r = check_range(d); !r.empty()) return "element " + std::to_string(i) + ": " + r;
          dl.push_back(d);
        } else if (spec.type() == ParamType::kIntList) {
          int64_t v;
          if (!ParseInt(e.Scalar(), v)) return "element " + std::to_string(i) + ": expected an integer, got '" + e.Scalar() + "'";
          if (auto r = check_range(static_cast<double>(v)); !r.empty()) return "element " + std::to_string(i) + ": " + r;
          il.push_back(v);
        } else {
          std::string s = ExpandEnv(e.Scalar());
          if (!spec.choices().empty() &&
              std::find(spec.choices().begin(), spec.choices().end(), s) == spec.choices().end())
            return "element " + std::to_string(i) + ": must be one of " + Join(spec.choices(), ", ") + "; got '" + s + "'";
          sl.push_back(s);
        }
      }
      if (spec.type() == ParamType::kDoubleList) out = dl;
      else if (spec.type() == ParamType::kIntList) out = il;
      else out = sl;
      return "";
    }
  }
  return "unsupported parameter type";
}

/// Runs the node type's validation hooks on its bound parameters; each issue is reported at
/// the value of the parameter it names (or at the node when the parameter kept its default).
void RunNodeChecks(Context& ctx, const std::string& name, const PipelineNode& pn,
                   const std::map<std::string, SourceLoc>& value_locs) {
  if (pn.spec->checks().empty()) return;
  CheckReport report;
  try {
    report = pn.spec->RunChecks(pn.params);
  } catch (const std::exception& e) {
    ctx.Error(pn.loc, "nodes." + name + ": " + e.what());
    return;
  }
  for (const auto& issue : report.issues()) {
    SourceLoc loc = pn.loc;
    std::string where = "nodes." + name;
    std::string note;
    if (!issue.param.empty()) {
      where += "." + issue.param;
      if (auto it = value_locs.find(issue.param); it != value_locs.end()) {
        loc = it->second;
      } else if (const ParamSpec* ps = pn.spec->FindParam(issue.param)) {
        note = "'" + issue.param + "' has its default value (" + FormatValue(ps->default_value()) + ")";
      }
    }
    if (issue.is_error)
      ctx.Error(loc, where + ": " + issue.message, note);
    else
      ctx.Warn(loc, where + ": " + issue.message, note);
  }
}

struct RawNode {
  std::string name;
  YAML::Node body;
  SourceLoc loc;
};

struct Override {
  std::string node, param, value_text;
  YAML::Node value;
  SourceLoc loc;
  bool used = false;
};

bool ParseEdge(const std::string& text, PipelineEdge& e) {
  static const std::regex re(R"(^\s*([A-Za-z0-9_\-]+)\.([A-Za-z0-9_]+)\s*->\s*([A-Za-z0-9_\-]+)\.([A-Za-z0-9_]+)\s*$)");
  std::smatch m;
  if (!std::regex_match(text, m, re)) return false;
  e.from_node = m[1];
  e.from_port = m[2];
  e.to_node = m[3];
  e.to_port = m[4];
  return true;
}

std::optional<Pipeline> Build(const YAML::Node& root, Context& ctx, const std::vector<std::string>& overrides_text,
                              PluginManager& plugins) {
  Pipeline pl;
  pl.file = ctx.file;
  if (!root.IsMap()) {
    ctx.Error(ctx.Loc(root), "a pipeline file must be a mapping with keys cubeflow, nodes, edges");
    return std::nullopt;
  }
  std::vector<std::string> top_keys(std::begin(kTopLevelKeys), std::end(kTopLevelKeys));
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string k = it->first.as<std::string>("");
    if (std::find(top_keys.begin(), top_keys.end(), k) == top_keys.end()) {
      std::string c = Closest(k, top_keys);
      ctx.Error(ctx.Loc(it->first), "unknown top-level key '" + k + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"),
                "valid keys: " + Join(top_keys, ", "));
    }
  }
  // Version.
  if (!root["cubeflow"]) {
    ctx.Error(ctx.Loc(root), "missing version key 'cubeflow' (add 'cubeflow: 1' at the top)");
  } else {
    int64_t v = 0;
    if (!root["cubeflow"].IsScalar() || !ParseInt(root["cubeflow"].Scalar(), v) || v != 1)
      ctx.Error(ctx.Loc(root["cubeflow"]), "unsupported pipeline format version " + DescribeYaml(root["cubeflow"]) +
                                               "; this cubeflow reads version 1");
    pl.version = static_cast<int>(v);
  }
  // Plugins.
  if (const YAML::Node p = root["plugins"]) {
    if (!p.IsSequence()) {
      ctx.Error(ctx.Loc(p), "'plugins' must be a list of plugin names or paths");
    } else {
      for (const auto& e : p) {
        if (!e.IsScalar()) { ctx.Error(ctx.Loc(e), "plugin entries must be names or paths"); continue; }
        std::string name = ExpandEnv(e.Scalar());
        pl.plugins.push_back(name);
        Status st = plugins.Load(name, ctx.base_dir);
        if (!st.ok()) ctx.Error(ctx.Loc(e), st.message());
      }
    }
  }
  // Settings.
  if (const YAML::Node s = root["settings"]) {
    if (!s.IsMap()) {
      ctx.Error(ctx.Loc(s), "'settings' must be a mapping");
    } else {
      std::vector<std::string> keys(std::begin(kSettingsKeys), std::end(kSettingsKeys));
      for (auto it = s.begin(); it != s.end(); ++it) {
        const std::string k = it->first.as<std::string>("");
        const YAML::Node v = it->second;
        if (k == "max_in_flight") {
          int64_t n;
          if (!v.IsScalar() || !ParseInt(v.Scalar(), n) || n < 1)
            ctx.Error(ctx.Loc(v), "settings.max_in_flight: expected an integer >= 1, got " + DescribeYaml(v));
          else
            pl.settings.max_in_flight = n;
        } else if (k == "on_error") {
          if (!v.IsScalar() || (v.Scalar() != "stop" && v.Scalar() != "flag"))
            ctx.Error(ctx.Loc(v), "settings.on_error: must be 'stop' or 'flag', got " + DescribeYaml(v));
          else
            pl.settings.on_error = v.Scalar();
        } else {
          std::string c = Closest(k, keys);
          ctx.Error(ctx.Loc(it->first), "unknown setting '" + k + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"),
                    "valid settings: max_in_flight (int), on_error (stop|flag)");
        }
      }
    }
  }
  // Overrides from the command line.
  std::vector<Override> overrides;
  for (const auto& text : overrides_text) {
    Override o;
    o.loc = {"<command line>", 0, 0};
    o.loc.file = "--set " + text;
    auto eq = text.find('=');
    auto dot = text.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
      ctx.Error(o.loc, "expected --set node.param=value");
      continue;
    }
    o.node = text.substr(0, dot);
    o.param = text.substr(dot + 1, eq - dot - 1);
    o.value_text = text.substr(eq + 1);
    try {
      o.value = YAML::Load(o.value_text.empty() ? std::string("''") : o.value_text);
    } catch (const YAML::Exception&) {
      o.value = YAML::Node(o.value_text);
    }
    overrides.push_back(std::move(o));
  }
  // Nodes.
  std::vector<RawNode> raw;
  const YAML::Node nodes = root["nodes"];
  if (!nodes) {
    ctx.Error(ctx.Loc(root), "missing 'nodes' (a mapping from node names to {type: ..., parameters})");
  } else if (!nodes.IsMap()) {
    ctx.Error(ctx.Loc(nodes), "'nodes' must be a mapping from node names to {type: ..., parameters}");
  } else {
    static const std::regex name_re("^[A-Za-z][A-Za-z0-9_\\-]*$");
    for (auto it = nodes.begin(); it != nodes.end(); ++it) {
      RawNode r;
      r.name = it->first.as<std::string>("");
      r.body = it->second;
      r.loc = ctx.Loc(it->first);
      if (!std::regex_match(r.name, name_re)) {
        ctx.Error(r.loc, "invalid node name '" + r.name + "': use letters, digits, _ or -, starting with a letter");
        continue;
      }
      raw.push_back(r);
    }
  }
  std::vector<std::string> node_names;
  for (const auto& r : raw) node_names.push_back(r.name);

  for (auto& r : raw) {
    PipelineNode pn;
    pn.name = r.name;
    pn.loc = r.loc;
    if (!r.body.IsMap()) {
      ctx.Error(ctx.Loc(r.body), "node '" + r.name + "' must be a mapping with a 'type' key");
      continue;
    }
    const YAML::Node type = r.body["type"];
    if (!type || !type.IsScalar()) {
      ctx.Error(r.loc, "node '" + r.name + "' has no 'type' (e.g. type: io.read_cube)");
      continue;
    }
    pn.type = type.Scalar();
    pn.spec = plugins.registry().Find(pn.type);
    if (!pn.spec) {
      std::string c = plugins.registry().Closest(pn.type);
      std::string note;
      auto fails = plugins.Failures();
      if (!fails.empty()) {
        std::vector<std::string> f;
        for (const auto& rep : fails) f.push_back(rep.file + ": " + rep.error);
        note = "plugins that failed to load: " + Join(f, "; ");
      } else {
        note = "run 'cubeflow plugins' to list the node types";
      }
      ctx.Error(ctx.Loc(type), "unknown node type '" + pn.type + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"),
                note);
      continue;
    }
    const NodeSpec& spec = *pn.spec;
    std::map<std::string, Value> values;
    std::map<std::string, SourceLoc> value_locs;  // where each given parameter's value is
    bool node_ok = true;
    std::set<std::string> given;
    std::vector<std::string> param_names;
    for (const auto& p : spec.params()) param_names.push_back(p.name());
    auto bind = [&](const std::string& key, const YAML::Node& v, const SourceLoc& key_loc, const SourceLoc& val_loc,
                    const std::string& base) {
      const ParamSpec* ps = spec.FindParam(key);
      if (!ps) {
        std::string c = Closest(key, param_names);
        ctx.Error(key_loc, "nodes." + r.name + ": unknown parameter '" + key + "' for " + pn.type +
                               (c.empty() ? "" : "; did you mean '" + c + "'?"),
                  ValidParams(spec));
        node_ok = false;
        return;
      }
      Value out;
      std::string err = Convert(*ps, v, base, out);
      if (!err.empty()) {
        ctx.Error(val_loc, "nodes." + r.name + "." + key + ": " + err, ps->Brief() + (ps->doc().empty() ? "" : ": " + ps->doc()));
        node_ok = false;
        return;
      }
      values[key] = std::move(out);
      value_locs[key] = val_loc;
      given.insert(key);
    };
    for (auto it = r.body.begin(); it != r.body.end(); ++it) {
      const std::string key = it->first.as<std::string>("");
      if (key == "type") continue;
      bind(key, it->second, ctx.Loc(it->first), ctx.Loc(it->second), ctx.base_dir);
    }
    for (auto& o : overrides) {
      if (o.node != r.name) continue;
      o.used = true;
      // Paths given on the command line are relative to the working directory.
      bind(o.param, o.value, o.loc, o.loc, fs::current_path().string());
    }
    for (const auto& p : spec.params()) {
      if (given.count(p.name())) continue;
      if (p.required()) {
        ctx.Error(r.loc, "nodes." + r.name + ": missing required parameter '" + p.name() + "' for " + pn.type,
                  p.Brief() + (p.doc().empty() ? "" : ": " + p.doc()));
        node_ok = false;
        continue;
      }
      Value def = p.default_value();
      if (p.type() == ParamType::kPath) {
        if (auto* s = std::get_if<std::string>(&def); s && !s->empty()) *s = ExpandEnv(*s);
      }
      values[p.name()] = def;
    }
    pn.params = Params(std::move(values));
    if (node_ok) RunNodeChecks(ctx, r.name, pn, value_locs);
    pl.nodes.push_back(std::move(pn));
  }
  for (const auto& o : overrides) {
    if (o.used) continue;
    std::string c = Closest(o.node, node_names);
    ctx.Error(o.loc, "no node named '" + o.node + "' in " + ctx.file + (c.empty() ? "" : "; did you mean '" + c + "'?"),
              "nodes: " + Join(node_names, ", "));
  }

  // Edges.
  std::map<std::string, const PipelineNode*> by_name;
  for (const auto& n : pl.nodes) by_name[n.name] = &n;
  std::set<std::string> known_names(node_names.begin(), node_names.end());
  const YAML::Node edges = root["edges"];
  if (edges && !edges.IsSequence()) {
    ctx.Error(ctx.Loc(edges), "'edges' must be a list of 'from_node.port -> to_node.port'");
  } else if (edges) {
    for (const auto& e : edges) {
      PipelineEdge pe;
      pe.loc = ctx.Loc(e);
      if (!e.IsScalar() || !ParseEdge(e.Scalar(), pe)) {
        ctx.Error(pe.loc, "malformed edge " + DescribeYaml(e) + "; expected 'from_node.port -> to_node.port'");
        continue;
      }
      bool ok = true;
      const PortSpec* out = nullptr;
      const PortSpec* in = nullptr;
      for (int side = 0; side < 2; ++side) {
        const std::string& nn = side == 0 ? pe.from_node : pe.to_node;
        const std::string& port = side == 0 ? pe.from_port : pe.to_port;
        if (!known_names.count(nn)) {
          std::string c = Closest(nn, node_names);
          ctx.Error(pe.loc, "edge refers to unknown node '" + nn + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"));
          ok = false;
          continue;
        }
        auto it = by_name.find(nn);
        if (it == by_name.end()) { ok = false; continue; }  // node had its own error
        const NodeSpec& spec = *it->second->spec;
        const auto& ports = side == 0 ? spec.outputs() : spec.inputs();
        const PortSpec* ps = side == 0 ? spec.FindOutput(port) : spec.FindInput(port);
        if (!ps) {
          std::vector<std::string> names;
          for (const auto& p : ports) names.push_back(p.name + " (" + p.type + ")");
          std::vector<std::string> plain;
          for (const auto& p : ports) plain.push_back(p.name);
          std::string c = Closest(port, plain);
          ctx.Error(pe.loc, std::string("node '") + nn + "' (" + spec.name() + ") has no " +
                                (side == 0 ? "output" : "input") + " port '" + port + "'" +
                                (c.empty() ? "" : "; did you mean '" + c + "'?"),
                    std::string(side == 0 ? "outputs: " : "inputs: ") + (names.empty() ? "none" : Join(names, ", ")));
          ok = false;
          continue;
        }
        (side == 0 ? out : in) = ps;
      }
      if (!ok || !out || !in) continue;
      if (in->type != "any" && in->type != out->type) {
        ctx.Error(pe.loc, "type mismatch: " + pe.from_node + "." + pe.from_port + " produces '" + out->type + "' but " +
                              pe.to_node + "." + pe.to_port + " expects '" + in->type + "'");
        continue;
      }
      if (in->kind != out->kind) {
        auto kind = [](PortKind k) { return k == PortKind::kStream ? "a stream (one item per bin)" : "a single message"; };
        ctx.Error(pe.loc, "kind mismatch: " + pe.from_node + "." + pe.from_port + " produces " + kind(out->kind) + " but " +
                              pe.to_node + "." + pe.to_port + " expects " + kind(in->kind));
        continue;
      }
      if (pe.from_node == pe.to_node) {
        ctx.Error(pe.loc, "cycle: node '" + pe.from_node + "' feeds itself");
        continue;
      }
      pl.edges.push_back(pe);
    }
  }
  // Duplicate edges into a non-multi input; unconnected required inputs.
  for (const auto& n : pl.nodes) {
    for (const auto& in : n.spec->inputs()) {
      std::vector<const PipelineEdge*> feeding;
      for (const auto& e : pl.edges)
        if (e.to_node == n.name && e.to_port == in.name) feeding.push_back(&e);
      if (feeding.size() > 1 && !in.multi)
        ctx.Error(feeding[1]->loc, "input " + n.name + "." + in.name + " is already fed by " + feeding[0]->from_node +
                                       "." + feeding[0]->from_port + "; it accepts one edge");
      if (feeding.empty() && in.required)
        ctx.Error(n.loc, "unconnected required input '" + in.name + "' (" + in.type + ") of node '" + n.name + "' (" +
                             n.type + ")",
                  "add an edge 'some_node.port -> " + n.name + "." + in.name + "'");
    }
  }
  // Cycles (Kahn's algorithm) and topological order.
  {
    std::map<std::string, int> indeg;
    std::map<std::string, std::vector<std::string>> succ;
    for (const auto& n : pl.nodes) indeg[n.name] = 0;
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& e : pl.edges) {
      if (!seen.insert({e.from_node, e.to_node}).second) continue;
      succ[e.from_node].push_back(e.to_node);
      indeg[e.to_node]++;
    }
    std::vector<std::string> order;
    std::vector<std::string> ready;
    for (const auto& n : pl.nodes) if (indeg[n.name] == 0) ready.push_back(n.name);
    while (!ready.empty()) {
      std::string x = ready.front();
      ready.erase(ready.begin());
      order.push_back(x);
      for (const auto& y : succ[x]) if (--indeg[y] == 0) ready.push_back(y);
    }
    if (order.size() != pl.nodes.size()) {
      std::vector<std::string> in_cycle;
      const PipelineEdge* first = nullptr;
      for (const auto& n : pl.nodes) if (indeg[n.name] > 0) in_cycle.push_back(n.name);
      for (const auto& e : pl.edges)
        if (indeg[e.to_node] > 0 && indeg[e.from_node] > 0) { first = &e; break; }
      ctx.Error(first ? first->loc : SourceLoc{ctx.file, 0, 0},
                "cycle in the pipeline graph through nodes " + Join(in_cycle, ", "),
                "cubeflow pipelines must be acyclic");
    } else {
      std::vector<PipelineNode> sorted;
      for (const auto& name : order)
        for (auto& n : pl.nodes) if (n.name == name) sorted.push_back(std::move(n));
      pl.nodes = std::move(sorted);
    }
  }
  if (pl.nodes.empty() && !ctx.errors) ctx.Error(ctx.Loc(root), "the pipeline has no nodes");
  if (ctx.errors) return std::nullopt;
  return pl;
}

std::optional<Pipeline> LoadFromNode(const std::function<YAML::Node()>& parse, const std::string& name,
                                     const std::string& base_dir, const std::vector<std::string>& overrides,
                                     PluginManager& plugins, std::vector<Diagnostic>& diags) {
  Context ctx{name, base_dir, &diags};
  YAML::Node root;
  try {
    root = parse();
  } catch (const YAML::Exception& e) {
    ctx.Error(ctx.Loc(e.mark), "YAML syntax error: " + e.msg);
    return std::nullopt;
  }
  return Build(root, ctx, overrides, plugins);
}

}  // namespace

std::optional<Pipeline> LoadPipeline(const std::string& path, const std::vector<std::string>& overrides,
                                     PluginManager& plugins, std::vector<Diagnostic>& diags) {
  std::ifstream in(path);
  if (!in) {
    diags.push_back({{path, 0, 0}, true, "cannot open pipeline file (does it exist?)", ""});
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string base = fs::absolute(path).parent_path().string();
  return LoadPipelineFromString(ss.str(), path, base, overrides, plugins, diags);
}

std::optional<Pipeline> LoadPipelineFromString(const std::string& yaml_text, const std::string& name,
                                               const std::string& base_dir, const std::vector<std::string>& overrides,
                                               PluginManager& plugins, std::vector<Diagnostic>& diags) {
  return LoadFromNode([&] { return YAML::Load(yaml_text); }, name, base_dir, overrides, plugins, diags);
}

}  // namespace cubeflow
