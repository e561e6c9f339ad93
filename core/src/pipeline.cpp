#include "cubeflow/pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <regex>
#include <set>
#include <sstream>

#include <sys/stat.h>

#include <yaml-cpp/yaml.h>

#include "cubeflow/registry.hpp"
#include "cubeflow/strings.hpp"

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

std::string ValidParams(const NodeSpec& spec) {
  std::vector<std::string> v;
  for (const auto& p : spec.params()) v.push_back(p.Brief());
  return v.empty() ? std::string("this node takes no parameters") : "parameters: " + Join(v, ", ");
}

/// Expands ${VAR} and ${VAR:-default} in a string.
/// An unset variable without a default is an error (in `*err`, if given): it would silently
/// become "" and turn "${DATA}/cube.fits" into "/cube.fits".
std::string ExpandEnv(const std::string& s, std::string* err = nullptr) {
  static const std::regex re(R"(\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\})");
  std::string out;
  auto begin = std::sregex_iterator(s.begin(), s.end(), re);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    out += s.substr(last, it->position() - last);
    const std::string name = (*it)[1].str();
    const char* v = std::getenv(name.c_str());
    if (v && *v) {
      out += v;
    } else if ((*it)[2].matched) {
      out += (*it)[3].str();
    } else if (err && err->empty()) {
      *err = "environment variable " + name + " is not set; set it, or give a default as ${" + name + ":-value}";
    }
    last = it->position() + it->length();
  }
  return out + s.substr(last);
}

/// A scalar string parameter's text: ${VAR} expanded; refuses NUL characters and unset variables.
bool ExpandScalar(const std::string& in, std::string& out, std::string& err) {
  if (in.find('\0') != std::string::npos) {
    err = "contains a NUL character; remove it";
    return false;
  }
  out = ExpandEnv(in, &err);
  return err.empty();
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
      if (!std::isfinite(d)) return "expected a finite number, got '" + n.Scalar() + "'" + (std::isnan(d) ? "" : " (infinite, or too large for a double)");
      if (auto e = check_range(d); !e.empty()) return e;
      out = d;
      return "";
    }
    case ParamType::kString: {
      if (!n.IsScalar()) return scalar_err();
      std::string s, err;
      if (!ExpandScalar(n.Scalar(), s, err)) return err;
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
      std::string s, err;
      if (!ExpandScalar(n.Scalar(), s, err)) return err;
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
      std::string s, err;
      if (!ExpandScalar(n.Scalar(), s, err)) return err;
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
          if (!std::isfinite(d)) return "element " + std::to_string(i) + ": expected a finite number, got '" + e.Scalar() + "'";
          if (auto r = check_range(d); !r.empty()) return "element " + std::to_string(i) + ": " + r;
          dl.push_back(d);
        } else if (spec.type() == ParamType::kIntList) {
          int64_t v;
          if (!ParseInt(e.Scalar(), v)) return "element " + std::to_string(i) + ": expected an integer, got '" + e.Scalar() + "'";
          if (auto r = check_range(static_cast<double>(v)); !r.empty()) return "element " + std::to_string(i) + ": " + r;
          il.push_back(v);
        } else {
          std::string s, err;
          if (!ExpandScalar(e.Scalar(), s, err)) return "element " + std::to_string(i) + ": " + err;
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

/// Builds a Pipeline from the parsed YAML in named steps, reporting every problem in one pass.
/// Every step is linear in the number of nodes and edges (maps keyed by name, no nested scans).
class PipelineBuilder {
 public:
  PipelineBuilder(const YAML::Node& root, Context& ctx, PluginManager& plugins, const LoadOptions& options)
      : root_(root), ctx_(ctx), plugins_(plugins), options_(options) {
    pl_.file = ctx.file;
  }

  std::optional<Pipeline> Build(const std::vector<std::string>& overrides_text) {
    if (!root_.IsMap()) {
      ctx_.Error(ctx_.Loc(root_), "a pipeline file must be a mapping with keys cubeflow, nodes, edges");
      return std::nullopt;
    }
    CheckTopLevelKeys();
    ReadVersion();
    LoadPlugins();
    ReadSettings();
    ParseOverrides(overrides_text);
    CollectNodes();
    for (auto& r : raw_) BindNode(r);
    ReportUnusedOverrides();
    CheckOutputPaths();
    ConnectEdges();
    CheckInputs();
    SortTopologically();
    if (pl_.nodes.empty() && !ctx_.errors) ctx_.Error(ctx_.Loc(root_), "the pipeline has no nodes");
    if (ctx_.errors) return std::nullopt;
    return std::move(pl_);
  }

 private:
  void CheckTopLevelKeys() {
    std::vector<std::string> top_keys(std::begin(kTopLevelKeys), std::end(kTopLevelKeys));
    std::map<std::string, int> seen;
    for (auto it = root_.begin(); it != root_.end(); ++it) {
      const std::string k = it->first.as<std::string>("");
      if (auto [prev, fresh] = seen.emplace(k, ctx_.Loc(it->first).line); !fresh)
        ctx_.Error(ctx_.Loc(it->first), "top-level key '" + k + "' is given twice (also at line " +
                                            std::to_string(prev->second) + "); keep one");
      if (std::find(top_keys.begin(), top_keys.end(), k) == top_keys.end()) {
        std::string c = Closest(k, top_keys);
        ctx_.Error(ctx_.Loc(it->first), "unknown top-level key '" + k + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"),
                   "valid keys: " + Join(top_keys, ", "));
      }
    }
  }

  void ReadVersion() {
    if (!root_["cubeflow"]) {
      ctx_.Error(ctx_.Loc(root_), "missing version key 'cubeflow' (add 'cubeflow: 1' at the top)");
      return;
    }
    int64_t v = 0;
    if (!root_["cubeflow"].IsScalar() || !ParseInt(root_["cubeflow"].Scalar(), v) || v != 1)
      ctx_.Error(ctx_.Loc(root_["cubeflow"]), "unsupported pipeline format version " + DescribeYaml(root_["cubeflow"]) +
                                                  "; this cubeflow reads version 1");
    pl_.version = static_cast<int>(v);
  }

  void LoadPlugins() {
    const YAML::Node p = root_["plugins"];
    if (!p) return;
    if (!p.IsSequence()) {
      ctx_.Error(ctx_.Loc(p), "'plugins' must be a list of plugin names or paths");
      return;
    }
    for (const auto& e : p) {
      if (!e.IsScalar()) {
        ctx_.Error(ctx_.Loc(e), "plugin entries must be names or paths");
        continue;
      }
      std::string name, err;
      if (!ExpandScalar(e.Scalar(), name, err)) {
        ctx_.Error(ctx_.Loc(e), "plugins: " + err);
        continue;
      }
      pl_.plugins.push_back(name);
      Status st = plugins_.Load(name, ctx_.base_dir);
      if (!st.ok()) ctx_.Error(ctx_.Loc(e), st.message());
    }
  }

  void ReadSettings() {
    const YAML::Node s = root_["settings"];
    if (!s) return;
    if (!s.IsMap()) {
      ctx_.Error(ctx_.Loc(s), "'settings' must be a mapping");
      return;
    }
    std::vector<std::string> keys(std::begin(kSettingsKeys), std::end(kSettingsKeys));
    std::map<std::string, int> seen;
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string k = it->first.as<std::string>("");
      if (auto [prev, fresh] = seen.emplace(k, ctx_.Loc(it->first).line); !fresh)
        ctx_.Error(ctx_.Loc(it->first), "settings." + k + " is given twice (also at line " + std::to_string(prev->second) +
                                            "); keep one");
      const YAML::Node v = it->second;
      if (k == "max_in_flight") {
        int64_t n;
        if (!v.IsScalar() || !ParseInt(v.Scalar(), n) || n < 1)
          ctx_.Error(ctx_.Loc(v), "settings.max_in_flight: expected an integer >= 1, got " + DescribeYaml(v));
        else
          pl_.settings.max_in_flight = n;
      } else if (k == "on_error") {
        if (!v.IsScalar() || (v.Scalar() != "stop" && v.Scalar() != "flag"))
          ctx_.Error(ctx_.Loc(v), "settings.on_error: must be 'stop' or 'flag', got " + DescribeYaml(v));
        else
          pl_.settings.on_error = v.Scalar();
      } else {
        std::string c = Closest(k, keys);
        ctx_.Error(ctx_.Loc(it->first), "unknown setting '" + k + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"),
                   "valid settings: max_in_flight (int), on_error (stop|flag)");
      }
    }
  }

  /// `--set node.param=value` from the command line, parsed as YAML values.
  void ParseOverrides(const std::vector<std::string>& overrides_text) {
    for (const auto& text : overrides_text) {
      Override o;
      o.loc = {"--set " + text, 0, 0};
      auto eq = text.find('=');
      auto dot = text.find('.');
      if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
        ctx_.Error(o.loc, "expected --set node.param=value");
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
      overrides_.push_back(std::move(o));
    }
  }

  /// The `nodes:` mapping: names checked, bodies kept for BindNode.
  void CollectNodes() {
    const YAML::Node nodes = root_["nodes"];
    if (!nodes) {
      ctx_.Error(ctx_.Loc(root_), "missing 'nodes' (a mapping from node names to {type: ..., parameters})");
      return;
    }
    if (!nodes.IsMap()) {
      ctx_.Error(ctx_.Loc(nodes), "'nodes' must be a mapping from node names to {type: ..., parameters}");
      return;
    }
    static const std::regex name_re("^[A-Za-z][A-Za-z0-9_\\-]*$");
    for (auto it = nodes.begin(); it != nodes.end(); ++it) {
      RawNode r;
      r.name = it->first.as<std::string>("");
      r.body = it->second;
      r.loc = ctx_.Loc(it->first);
      if (!std::regex_match(r.name, name_re)) {
        ctx_.Error(r.loc, "invalid node name '" + r.name + "': use letters, digits, _ or -, starting with a letter");
        continue;
      }
      if (auto [prev, fresh] = first_loc_.emplace(r.name, r.loc); !fresh) {
        ctx_.Error(r.loc, "duplicate node name '" + r.name + "'",
                   "first defined at line " + std::to_string(prev->second.line) + "; node names must be unique");
        continue;
      }
      node_names_.push_back(r.name);
      raw_.push_back(r);
    }
  }

  /// Resolves the node's type and binds its parameters (file, then --set), defaults for the
  /// rest, then runs the type's validation hooks.
  void BindNode(const RawNode& r) {
    // The node exists, so its --set overrides are its own even when its body or type is refused
    // below (that error is reported there; "no node named" would name a node that is there).
    for (auto& o : overrides_)
      if (o.node == r.name) o.used = true;
    PipelineNode pn;
    pn.name = r.name;
    pn.loc = r.loc;
    if (!r.body.IsMap()) {
      ctx_.Error(ctx_.Loc(r.body), "node '" + r.name + "' must be a mapping with a 'type' key");
      return;
    }
    const YAML::Node type = r.body["type"];
    if (!type || !type.IsScalar()) {
      ctx_.Error(r.loc, "node '" + r.name + "' has no 'type' (e.g. type: io.read_cube)");
      return;
    }
    pn.type = type.Scalar();
    pn.spec = plugins_.registry().Find(pn.type);
    if (!pn.spec) {
      ReportUnknownType(pn.type, type);
      return;
    }
    ParamBinding b{pn, *pn.spec, r.name};
    std::map<std::string, int> key_line;
    for (auto it = r.body.begin(); it != r.body.end(); ++it) {
      const std::string key = it->first.as<std::string>("");
      if (auto [prev, fresh] = key_line.emplace(key, ctx_.Loc(it->first).line); !fresh) {
        ctx_.Error(ctx_.Loc(it->first), "nodes." + r.name + ": '" + key + "' is given twice (also at line " +
                                            std::to_string(prev->second) + "); keep one");
        b.ok = false;
        continue;
      }
      if (key == "type") continue;
      BindParam(b, key, it->second, ctx_.Loc(it->first), ctx_.Loc(it->second), ctx_.base_dir);
    }
    for (auto& o : overrides_) {
      if (o.node != r.name) continue;
      // Paths given on the command line are relative to the working directory.
      BindParam(b, o.param, o.value, o.loc, o.loc, fs::current_path().string());
    }
    FillDefaults(b, r.loc);
    pn.params = Params(std::move(b.values));
    if (b.ok) RunNodeChecks(ctx_, r.name, pn, b.value_locs);
    value_locs_[r.name] = b.value_locs;
    pl_.nodes.push_back(std::move(pn));
  }

  struct ParamBinding {
    PipelineNode& node;
    const NodeSpec& spec;
    std::string name;
    std::map<std::string, Value> values;
    std::map<std::string, SourceLoc> value_locs;  // where each given parameter's value is
    std::set<std::string> given;                   // given, whether or not its value was valid
    bool ok = true;
  };

  void BindParam(ParamBinding& b, const std::string& key, const YAML::Node& v, const SourceLoc& key_loc,
                 const SourceLoc& val_loc, const std::string& base) {
    const ParamSpec* ps = b.spec.FindParam(key);
    if (!ps) {
      std::vector<std::string> param_names;
      for (const auto& p : b.spec.params()) param_names.push_back(p.name());
      std::string c = Closest(key, param_names);
      ctx_.Error(key_loc, "nodes." + b.name + ": unknown parameter '" + key + "' for " + b.spec.name() +
                              (c.empty() ? "" : "; did you mean '" + c + "'?"),
                 ValidParams(b.spec));
      b.ok = false;
      return;
    }
    b.given.insert(key);
    Value out;
    std::string err = Convert(*ps, v, base, out);
    if (!err.empty()) {
      ctx_.Error(val_loc, "nodes." + b.name + "." + key + ": " + err, ps->Brief() + (ps->doc().empty() ? "" : ": " + ps->doc()));
      b.ok = false;
      return;
    }
    b.values[key] = std::move(out);
    b.value_locs[key] = val_loc;
  }

  void FillDefaults(ParamBinding& b, const SourceLoc& node_loc) {
    for (const auto& p : b.spec.params()) {
      if (b.value_locs.count(p.name()) || b.given.count(p.name())) continue;
      if (p.required()) {
        ctx_.Error(node_loc, "nodes." + b.name + ": missing required parameter '" + p.name() + "' for " + b.spec.name(),
                   p.Brief() + (p.doc().empty() ? "" : ": " + p.doc()));
        b.ok = false;
        continue;
      }
      Value def = p.default_value();
      if (p.type() == ParamType::kPath) {
        if (auto* s = std::get_if<std::string>(&def); s && !s->empty()) *s = ExpandEnv(*s);
      }
      b.values[p.name()] = def;
    }
  }

  /// Inputs are sacred: an output file (a path parameter marked as output) must not be any
  /// input of the pipeline (same path, symbolic or hard link), nor another node's output, nor an
  /// existing device, FIFO or directory (unless the run allows special outputs).
  void CheckOutputPaths() {
    struct PathParam {
      std::string where;  // "nodes.read.path"
      fs::path path, canonical;
      SourceLoc loc;
      bool exists = false;
      struct stat st {};
    };
    auto make = [&](const PipelineNode& n, const std::string& param, const std::string& value) {
      PathParam pp;
      pp.where = "nodes." + n.name + "." + param;
      pp.path = value;
      std::error_code ec;
      pp.canonical = fs::weakly_canonical(pp.path, ec);
      if (ec) pp.canonical = pp.path.lexically_normal();
      pp.exists = ::stat(value.c_str(), &pp.st) == 0;
      auto locs = value_locs_.find(n.name);
      pp.loc = n.loc;
      if (locs != value_locs_.end())
        if (auto it = locs->second.find(param); it != locs->second.end()) pp.loc = it->second;
      return pp;
    };
    std::vector<PathParam> inputs, outputs;
    for (const auto& n : pl_.nodes) {
      for (const auto& ps : n.spec->params()) {
        if (ps.type() != ParamType::kPath && ps.type() != ParamType::kModel) continue;
        if (!n.params.Has(ps.name())) continue;
        const auto* v = std::get_if<std::string>(&n.params.values().at(ps.name()));
        if (!v || v->empty()) continue;
        if (ps.type() == ParamType::kModel && ModelRef::IsName(*v)) continue;  // a shipped model
        (ps.is_output() ? outputs : inputs).push_back(make(n, ps.name(), *v));
      }
    }
    auto same_file = [](const PathParam& a, const PathParam& b) {
      if (a.canonical == b.canonical) return true;
      return a.exists && b.exists && a.st.st_dev == b.st.st_dev && a.st.st_ino == b.st.st_ino;
    };
    for (size_t i = 0; i < outputs.size(); ++i) {
      const PathParam& o = outputs[i];
      if (o.exists && !S_ISREG(o.st.st_mode) && !options_.allow_special_outputs) {
        const char* what = S_ISDIR(o.st.st_mode) ? "a directory" : S_ISCHR(o.st.st_mode) ? "a character device"
                           : S_ISBLK(o.st.st_mode) ? "a block device" : S_ISFIFO(o.st.st_mode) ? "a FIFO" : "not a regular file";
        ctx_.Error(o.loc, o.where + ": output '" + o.path.string() + "' is " + what +
                              "; give the path of a regular file (or run with --allow-special-outputs to write to it anyway)");
        continue;
      }
      for (const auto& in : inputs) {
        if (!same_file(o, in)) continue;
        ctx_.Error(o.loc, o.where + ": output '" + o.path.string() + "' is the input of " + in.where +
                              (o.path.lexically_normal() == in.path.lexically_normal() ? "" : " (the same file through a link)") +
                              "; writing it would destroy the input: choose another output path");
      }
      for (size_t j = 0; j < i; ++j) {
        if (!same_file(o, outputs[j])) continue;
        ctx_.Error(o.loc, o.where + ": output '" + o.path.string() + "' is also written by " + outputs[j].where +
                              "; give each product its own file");
      }
    }
  }

  void ReportUnknownType(const std::string& type_name, const YAML::Node& type) {
    std::string c = plugins_.registry().Closest(type_name);
    std::string note;
    auto fails = plugins_.Failures();
    if (!fails.empty()) {
      std::vector<std::string> f;
      for (const auto& rep : fails) f.push_back(rep.file + ": " + rep.error);
      note = "plugins that failed to load: " + Join(f, "; ");
    } else {
      note = "run 'cubeflow plugins' to list the node types";
    }
    ctx_.Error(ctx_.Loc(type), "unknown node type '" + type_name + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"),
               note);
  }

  void ReportUnusedOverrides() {
    for (const auto& o : overrides_) {
      if (o.used) continue;
      std::string c = Closest(o.node, node_names_);
      ctx_.Error(o.loc, "no node named '" + o.node + "' in " + ctx_.file + (c.empty() ? "" : "; did you mean '" + c + "'?"),
                 "nodes: " + Join(node_names_, ", "));
    }
  }

  /// The `edges:` list: both ends exist, types and kinds agree, no self-loop.
  void ConnectEdges() {
    for (const auto& n : pl_.nodes) by_name_[n.name] = &n;
    const YAML::Node edges = root_["edges"];
    if (!edges) return;
    if (!edges.IsSequence()) {
      ctx_.Error(ctx_.Loc(edges), "'edges' must be a list of 'from_node.port -> to_node.port'");
      return;
    }
    for (const auto& e : edges) {
      PipelineEdge pe;
      pe.loc = ctx_.Loc(e);
      if (!e.IsScalar() || !ParseEdge(e.Scalar(), pe)) {
        ctx_.Error(pe.loc, "malformed edge " + DescribeYaml(e) + "; expected 'from_node.port -> to_node.port'");
        continue;
      }
      const PortSpec* out = FindEdgePort(pe, pe.from_node, pe.from_port, true);
      const PortSpec* in = FindEdgePort(pe, pe.to_node, pe.to_port, false);
      if (!out || !in) continue;
      if (in->type != "any" && in->type != out->type) {
        ctx_.Error(pe.loc, "type mismatch: " + pe.from_node + "." + pe.from_port + " produces '" + out->type + "' but " +
                               pe.to_node + "." + pe.to_port + " expects '" + in->type + "'");
        continue;
      }
      if (in->kind != out->kind) {
        auto kind = [](PortKind k) { return k == PortKind::kStream ? "a stream (one item per bin)" : "a single message"; };
        ctx_.Error(pe.loc, "kind mismatch: " + pe.from_node + "." + pe.from_port + " produces " + kind(out->kind) + " but " +
                               pe.to_node + "." + pe.to_port + " expects " + kind(in->kind));
        continue;
      }
      if (pe.from_node == pe.to_node) {
        ctx_.Error(pe.loc, "cycle: node '" + pe.from_node + "' feeds itself");
        continue;
      }
      pl_.edges.push_back(pe);
    }
  }

  /// The port at one end of an edge, or null after reporting why not.
  const PortSpec* FindEdgePort(const PipelineEdge& pe, const std::string& nn, const std::string& port, bool output) {
    if (!first_loc_.count(nn)) {
      std::string c = Closest(nn, node_names_);
      ctx_.Error(pe.loc, "edge refers to unknown node '" + nn + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"));
      return nullptr;
    }
    auto it = by_name_.find(nn);
    if (it == by_name_.end()) return nullptr;  // the node had its own error
    const NodeSpec& spec = *it->second->spec;
    const auto& ports = output ? spec.outputs() : spec.inputs();
    const PortSpec* ps = output ? spec.FindOutput(port) : spec.FindInput(port);
    if (ps) return ps;
    std::vector<std::string> names, plain;
    for (const auto& p : ports) {
      names.push_back(p.name + " (" + p.type + ")");
      plain.push_back(p.name);
    }
    std::string c = Closest(port, plain);
    ctx_.Error(pe.loc, std::string("node '") + nn + "' (" + spec.name() + ") has no " + (output ? "output" : "input") +
                           " port '" + port + "'" + (c.empty() ? "" : "; did you mean '" + c + "'?"),
               std::string(output ? "outputs: " : "inputs: ") + (names.empty() ? "none" : Join(names, ", ")));
    return nullptr;
  }

  /// Several edges into a single-edge input; required inputs left unconnected.
  void CheckInputs() {
    std::map<std::pair<std::string, std::string>, std::vector<const PipelineEdge*>> feeding;
    for (const auto& e : pl_.edges) feeding[{e.to_node, e.to_port}].push_back(&e);
    for (const auto& n : pl_.nodes) {
      for (const auto& in : n.spec->inputs()) {
        auto it = feeding.find({n.name, in.name});
        const size_t count = it == feeding.end() ? 0 : it->second.size();
        if (count > 1 && !in.multi) {
          const auto& f = it->second;
          ctx_.Error(f[1]->loc, "input " + n.name + "." + in.name + " is already fed by " + f[0]->from_node + "." +
                                    f[0]->from_port + "; it accepts one edge");
        }
        if (count == 0 && in.required)
          ctx_.Error(n.loc, "unconnected required input '" + in.name + "' (" + in.type + ") of node '" + n.name + "' (" +
                                n.type + ")",
                     "add an edge 'some_node.port -> " + n.name + "." + in.name + "'");
      }
    }
  }

  /// Kahn's algorithm: nodes in an order where every edge points forward, or a cycle reported.
  void SortTopologically() {
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < pl_.nodes.size(); ++i) index[pl_.nodes[i].name] = i;
    std::vector<size_t> indeg(pl_.nodes.size(), 0);
    std::vector<std::vector<size_t>> succ(pl_.nodes.size());
    std::set<std::pair<size_t, size_t>> seen;
    for (const auto& e : pl_.edges) {
      const size_t a = index.at(e.from_node), b = index.at(e.to_node);
      if (!seen.insert({a, b}).second) continue;
      succ[a].push_back(b);
      ++indeg[b];
    }
    std::vector<size_t> order;
    order.reserve(pl_.nodes.size());
    std::deque<size_t> ready;
    for (size_t i = 0; i < pl_.nodes.size(); ++i) if (indeg[i] == 0) ready.push_back(i);
    while (!ready.empty()) {
      const size_t x = ready.front();
      ready.pop_front();
      order.push_back(x);
      for (size_t y : succ[x]) if (--indeg[y] == 0) ready.push_back(y);
    }
    if (order.size() != pl_.nodes.size()) {
      std::vector<std::string> in_cycle;
      for (size_t i = 0; i < pl_.nodes.size(); ++i) if (indeg[i] > 0) in_cycle.push_back(pl_.nodes[i].name);
      const PipelineEdge* first = nullptr;
      for (const auto& e : pl_.edges)
        if (indeg[index.at(e.to_node)] > 0 && indeg[index.at(e.from_node)] > 0) { first = &e; break; }
      ctx_.Error(first ? first->loc : SourceLoc{ctx_.file, 0, 0},
                 "cycle in the pipeline graph through nodes " + Join(in_cycle, ", "), "cubeflow pipelines must be acyclic");
      return;
    }
    std::vector<PipelineNode> sorted;
    sorted.reserve(order.size());
    for (size_t i : order) sorted.push_back(std::move(pl_.nodes[i]));
    pl_.nodes = std::move(sorted);
  }

  const YAML::Node& root_;
  Context& ctx_;
  PluginManager& plugins_;
  Pipeline pl_;
  std::vector<Override> overrides_;
  std::vector<RawNode> raw_;
  std::vector<std::string> node_names_;
  std::map<std::string, SourceLoc> first_loc_;  // node name -> where it is defined
  std::map<std::string, const PipelineNode*> by_name_;
  std::map<std::string, std::map<std::string, SourceLoc>> value_locs_;  // node -> param -> where its value is
  LoadOptions options_;
};

std::optional<Pipeline> Build(const YAML::Node& root, Context& ctx, const std::vector<std::string>& overrides_text,
                              PluginManager& plugins, const LoadOptions& options) {
  return PipelineBuilder(root, ctx, plugins, options).Build(overrides_text);
}

std::optional<Pipeline> LoadFromNode(const std::function<YAML::Node()>& parse, const std::string& name,
                                     const std::string& base_dir, const std::vector<std::string>& overrides,
                                     PluginManager& plugins, std::vector<Diagnostic>& diags, const LoadOptions& options) {
  Context ctx{name, base_dir, &diags};
  YAML::Node root;
  try {
    root = parse();
  } catch (const YAML::Exception& e) {
    ctx.Error(ctx.Loc(e.mark), "YAML syntax error: " + e.msg);
    return std::nullopt;
  }
  return Build(root, ctx, overrides, plugins, options);
}

}  // namespace

std::optional<Pipeline> LoadPipeline(const std::string& path, const std::vector<std::string>& overrides,
                                     PluginManager& plugins, std::vector<Diagnostic>& diags, const LoadOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    diags.push_back({{path, 0, 0}, true, "is a directory, not a pipeline file; give the .yaml file inside it", ""});
    return std::nullopt;
  }
  std::ifstream in(path);
  if (!in) {
    diags.push_back({{path, 0, 0}, true,
                     std::string("cannot open pipeline file: ") + (fs::exists(path, ec) ? "permission denied" : "no such file"),
                     ""});
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string base = fs::absolute(path).parent_path().string();
  return LoadPipelineFromString(ss.str(), path, base, overrides, plugins, diags, options);
}

std::optional<Pipeline> LoadPipelineFromString(const std::string& yaml_text, const std::string& name,
                                               const std::string& base_dir, const std::vector<std::string>& overrides,
                                               PluginManager& plugins, std::vector<Diagnostic>& diags,
                                               const LoadOptions& options) {
  return LoadFromNode([&] { return YAML::Load(yaml_text); }, name, base_dir, overrides, plugins, diags, options);
}

}  // namespace cubeflow
