// `cubeflow run`, `validate`, `plugins` and `inspect`: the commands over the runtime (core).
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "cubeflow/atomic_file.hpp"
#include "cubeflow/loader.hpp"
#include "cubeflow/log.hpp"
#include "cubeflow/pipeline.hpp"
#include "cubeflow/runner.hpp"

namespace cubeflow::tools {
namespace {

struct Args {
  std::vector<std::string> positional;
  std::vector<std::string> sets;
  int threads = 0;
  int64_t max_in_flight = 0;
  bool progress = true;
  int verbose = 0;
  bool help = false;
  bool allow_empty = false;            ///< run: a product with no usable bin is not an error
  bool resume = false;                 ///< run: take per-item results from the checkpoints
  bool checkpoint = true;              ///< run: keep checkpoints of checkpointed nodes
  std::string checkpoint_dir;          ///< run: where ("" = beside the first product)
  bool allow_special_outputs = false;  ///< run/validate: outputs may be devices or FIFOs
};

/// Parses a whole decimal integer in [lo, hi]; false (with `err` set) for anything else.
bool ParseCount(const std::string& option, const char* text, int64_t lo, int64_t hi, int64_t& out, std::string& err) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    err = option + " expects a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got '" +
          text + "'";
    return false;
  }
  out = v;
  return true;
}

bool ParseArgs(int argc, char** argv, int start, Args& a, std::string& err) {
  for (int i = start; i < argc; ++i) {
    std::string s = argv[i];
    auto need = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        err = std::string(what) + " needs a value";
        return nullptr;
      }
      return argv[++i];
    };
    if (s == "--set") {
      const char* v = need("--set");
      if (!v) return false;
      a.sets.push_back(v);
    } else if (s.rfind("--set=", 0) == 0) {
      a.sets.push_back(s.substr(6));
    } else if (s == "--threads" || s == "-j") {
      const char* v = need("--threads");
      int64_t n = 0;
      if (!v || !ParseCount("--threads", v, 1, 4096, n, err)) return false;
      a.threads = static_cast<int>(n);
    } else if (s == "--max-in-flight") {
      const char* v = need("--max-in-flight");
      if (!v || !ParseCount("--max-in-flight", v, 1, int64_t{1} << 40, a.max_in_flight, err)) return false;
    } else if (s == "--allow-empty") {
      a.allow_empty = true;
    } else if (s == "--resume") {
      a.resume = true;
    } else if (s == "--no-checkpoint") {
      a.checkpoint = false;
    } else if (s == "--checkpoint-dir") {
      const char* v = need("--checkpoint-dir");
      if (!v) return false;
      a.checkpoint_dir = v;
    } else if (s == "--allow-special-outputs") {
      a.allow_special_outputs = true;
    } else if (s == "--no-progress") {
      a.progress = false;
    } else if (s == "-v" || s == "--verbose") {
      a.verbose = std::max(a.verbose, 1);
    } else if (s == "-vv") {
      a.verbose = 2;
    } else if (s == "-h" || s == "--help") {
      a.help = true;
    } else if (!s.empty() && s[0] == '-') {
      err = "unknown option '" + s + "'";
      return false;
    } else {
      a.positional.push_back(s);
    }
  }
  return true;
}

void LoadDefaultPlugins(PluginManager& pm) {
  pm.LoadSearchPath(PluginManager::DefaultSearchPath());
  for (const auto& f : pm.Failures())
    Log(LogLevel::kWarn, "", "plugin " + f.file + " not loaded: " + f.error);
}

std::string KindName(PortKind k) { return k == PortKind::kStream ? "stream" : "single"; }

int CmdPlugins(const Args& a) {
  PluginManager pm;
  pm.LoadSearchPath(PluginManager::DefaultSearchPath());
  if (pm.reports().empty()) {
    std::cout << "no plugins found (search path:";
    for (const auto& d : PluginManager::DefaultSearchPath()) std::cout << " " << d;
    std::cout << ")\n";
  }
  for (const auto& r : pm.reports()) {
    if (!r.ok) continue;
    std::cout << r.name << " " << r.version;
    if (a.verbose) std::cout << "  (" << r.file << ")";
    std::cout << "\n";
    for (const NodeSpec* s : pm.registry().All()) {
      const auto* o = pm.registry().OriginOf(s->name());
      if (!o || o->plugin != r.name) continue;
      char buf[512];
      std::snprintf(buf, sizeof buf, "  %-24s %s\n", s->name().c_str(), s->summary().c_str());
      std::cout << buf;
    }
  }
  for (const auto& r : pm.reports()) {
    if (!r.ok) std::cout << "failed: " << r.file << ": " << r.error << "\n";
  }
  return 0;
}

std::string Wrap(const std::string& text, size_t indent, size_t width = 92) {
  std::istringstream is(text);
  std::string word, line, out;
  while (is >> word) {
    if (!line.empty() && line.size() + 1 + word.size() > width - indent) {
      out += std::string(indent, ' ') + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) out += std::string(indent, ' ') + line + "\n";
  return out;
}

int CmdInspect(const Args& a) {
  if (a.positional.size() != 1) {
    std::cerr << "usage: cubeflow inspect NODE_TYPE   (e.g. cubeflow inspect spectral.snr_map)\n";
    return 2;
  }
  PluginManager pm;
  LoadDefaultPlugins(pm);
  const std::string& name = a.positional[0];
  const NodeSpec* s = pm.registry().Find(name);
  if (!s) {
    std::string c = pm.registry().Closest(name);
    std::cerr << "cubeflow: error: unknown node type '" << name << "'" << (c.empty() ? "" : "; did you mean '" + c + "'?")
              << "\n";
    return 1;
  }
  const auto* o = pm.registry().OriginOf(name);
  std::cout << s->name() << " - " << s->summary() << "\n";
  if (o) std::cout << "plugin: " << o->plugin << " " << o->version << " (" << o->file << ")\n";
  if (!s->description().empty()) std::cout << "\n" << Wrap(s->description(), 2);
  std::cout << "\nexecution: " << (s->concurrency() == Concurrency::kSerial ? "serial" : "parallel")
            << (s->IsPerItem() ? ", per item" : ", once per run");
  if (!s->batch_param().empty()) std::cout << ", batched by '" << s->batch_param() << "'";
  if (s->accepts_failures()) std::cout << ", records failed items";
  std::cout << "\n\ninputs:\n";
  if (s->inputs().empty()) std::cout << "  (none: a source)\n";
  for (const auto& p : s->inputs()) {
    std::cout << "  " << p.name << " : " << p.type << " (" << KindName(p.kind) << (p.required ? "" : ", optional")
              << (p.multi ? ", several edges" : "") << ")\n";
    if (!p.doc.empty()) std::cout << Wrap(p.doc, 6);
  }
  std::cout << "\noutputs:\n";
  if (s->outputs().empty()) std::cout << "  (none: a sink)\n";
  for (const auto& p : s->outputs()) {
    std::cout << "  " << p.name << " : " << p.type << " (" << KindName(p.kind) << ")\n";
    if (!p.doc.empty()) std::cout << Wrap(p.doc, 6);
  }
  std::cout << "\nparameters:\n";
  if (s->params().empty()) std::cout << "  (none)\n";
  for (const auto& p : s->params()) {
    std::cout << "  " << p.name() << " : " << ParamTypeName(p.type());
    if (!p.unit().empty()) std::cout << " [" << p.unit() << "]";
    if (p.required()) {
      std::cout << ", required";
    } else {
      std::string d = FormatValue(p.default_value());
      std::cout << ", default " << (d.empty() ? "\"\"" : d);
    }
    if (p.min() || p.max()) {
      std::cout << ", range " << (p.min() ? FormatValue(*p.min()) : "-inf") << " .. "
                << (p.max() ? FormatValue(*p.max()) : "inf");
    }
    if (!p.choices().empty()) {
      std::cout << ", one of {";
      for (size_t i = 0; i < p.choices().size(); ++i) std::cout << (i ? ", " : "") << p.choices()[i];
      std::cout << "}";
    }
    std::cout << "\n";
    if (!p.doc().empty()) std::cout << Wrap(p.doc(), 6);
  }
  return 0;
}

std::optional<Pipeline> Load(const Args& a, PluginManager& pm, bool print_ok) {
  LoadDefaultPlugins(pm);
  std::vector<Diagnostic> diags;
  LoadOptions lo;
  lo.allow_special_outputs = a.allow_special_outputs;
  auto pl = LoadPipeline(a.positional[0], a.sets, pm, diags, lo);
  size_t errors = 0;
  for (const auto& d : diags) {
    std::cerr << d.Format() << "\n";
    if (d.is_error) ++errors;
  }
  if (!pl) {
    std::cerr << a.positional[0] << ": " << errors << " error" << (errors == 1 ? "" : "s") << "\n";
    return std::nullopt;
  }
  if (print_ok)
    std::cout << a.positional[0] << ": ok (" << pl->nodes.size() << " nodes, " << pl->edges.size() << " edges)\n";
  return pl;
}

int CmdValidate(const Args& a) {
  if (a.positional.size() != 1) {
    std::cerr << "usage: cubeflow validate FILE [--set NODE.PARAM=VALUE ...]\n";
    return 2;
  }
  PluginManager pm;
  return Load(a, pm, true) ? 0 : 1;
}

/// The signal that interrupted `cubeflow run` (0: none). A second signal ends the process at once.
std::atomic<int> g_interrupt{0};

extern "C" void OnInterrupt(int sig) {
  if (g_interrupt.exchange(sig) != 0) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

/// Installs OnInterrupt for SIGINT and SIGTERM while alive; restores the previous handlers.
class InterruptScope {
 public:
  InterruptScope() {
    struct sigaction sa {};
    sa.sa_handler = OnInterrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~InterruptScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

/// Where a run keeps its checkpoints: --checkpoint-dir, else `.cubeflow-checkpoints/<pipeline>`
/// beside the first product the pipeline writes (beside the pipeline file if it writes none).
std::string CheckpointDir(const Args& a, const Pipeline& pl) {
  if (!a.checkpoint_dir.empty()) return a.checkpoint_dir;
  std::filesystem::path base = std::filesystem::absolute(pl.file).parent_path();
  for (const auto& n : pl.nodes) {
    bool found = false;
    for (const auto& ps : n.spec->params()) {
      if (!ps.is_output() || !n.params.Has(ps.name())) continue;
      const auto* v = std::get_if<std::string>(&n.params.values().at(ps.name()));
      if (!v || v->empty()) continue;
      base = std::filesystem::absolute(*v).parent_path();
      found = true;
      break;
    }
    if (found) break;
  }
  return (base / ".cubeflow-checkpoints" / std::filesystem::path(pl.file).stem()).string();
}

int CmdRun(const Args& a) {
  if (a.positional.size() != 1) {
    std::cerr << "usage: cubeflow run FILE [--set NODE.PARAM=VALUE ...] [--threads N] [--allow-empty] [-v]\n";
    return 2;
  }
  InterruptScope scope;  // from the start: a signal while plugins load stops the run at once
  PluginManager pm;
  auto pl = Load(a, pm, false);
  if (!pl) return g_interrupt ? 128 + g_interrupt.load() : 1;
  // Temporary files a killed run left beside this run's products (writers remove their own on
  // errors and signals; SIGKILL leaves them).
  for (const auto& n : pl->nodes)
    for (const auto& ps : n.spec->params()) {
      if (!ps.is_output() || !n.params.Has(ps.name())) continue;
      const auto* v = std::get_if<std::string>(&n.params.values().at(ps.name()));
      if (!v || v->empty()) continue;
      for (const auto& f : RemoveStaleTemporaries(*v))
        std::cerr << "cubeflow: removed " << f << ", a temporary file left by a killed run\n";
    }
  RunOptions opt;
  opt.threads = a.threads;
  opt.max_in_flight = a.max_in_flight;
  opt.progress = a.progress;
  opt.interrupt = &g_interrupt;
  if (a.checkpoint) opt.checkpoint_dir = CheckpointDir(a, *pl);
  opt.resume = a.resume;
  if (a.resume && !a.checkpoint) {
    std::cerr << "cubeflow: error: --resume needs the checkpoints; drop --no-checkpoint\n";
    return 2;
  }
  if (a.resume) {
    std::error_code ec;
    if (!std::filesystem::is_directory(opt.checkpoint_dir, ec))
      std::cerr << "cubeflow: warning: no checkpoints in " << opt.checkpoint_dir << ": computing everything\n";
  }
  RunSummary s = RunPipeline(*pl, pm, opt);
  std::cerr << s.FormatTable();
  const bool have_checkpoints = s.items_checkpointed > 0 || s.items_resumed > 0;
  if (s.interrupted_by != 0 || !s.ok) {
    std::cerr << "cubeflow: error: " << s.error << "\n";
    if (have_checkpoints)
      std::cerr << "cubeflow: the results computed so far are kept in " << opt.checkpoint_dir
                << "; run again with --resume to compute only what is missing\n";
    return s.interrupted_by != 0 ? 128 + s.interrupted_by : 1;
  }
  if (!opt.checkpoint_dir.empty()) {
    std::error_code ec;  // the products are complete: the checkpoints have served
    std::filesystem::remove_all(opt.checkpoint_dir, ec);
    std::filesystem::remove(std::filesystem::path(opt.checkpoint_dir).parent_path(), ec);  // if empty
  }
  // A run that produced nothing usable is a failure (unless asked otherwise).
  bool any_usable = s.products.empty();
  for (const auto& p : s.products) any_usable = any_usable || p.usable > 0;
  if (!any_usable && !a.allow_empty) {
    std::cerr << "cubeflow: error: no product holds a usable result (every bin failed or is NaN); see the "
                 "warnings above. Run with --allow-empty to accept an empty product.\n";
    return 1;
  }
  return 0;
}

/// Parses the options of run/validate/plugins/inspect (argv[0] is the command), sets the log
/// level and runs `body`; usage errors exit 2, failures 1.
int WithArgs(int argc, char** argv, int (*body)(const Args&)) {
  Args a;
  std::string err;
  if (!ParseArgs(argc, argv, 1, a, err)) {
    std::cerr << "cubeflow: error: " << err << "\n" << Usage();
    return 2;
  }
  if (a.help) {
    std::cout << Usage();
    return 0;
  }
  SetLogLevel(a.verbose >= 2 ? LogLevel::kDebug : a.verbose == 1 ? LogLevel::kInfo : LogLevel::kWarn);
  return body(a);
}

}  // namespace

int RunCommand(int argc, char** argv) { return WithArgs(argc, argv, CmdRun); }
int ValidateCommand(int argc, char** argv) { return WithArgs(argc, argv, CmdValidate); }
int PluginsCommand(int argc, char** argv) { return WithArgs(argc, argv, CmdPlugins); }
int InspectCommand(int argc, char** argv) { return WithArgs(argc, argv, CmdInspect); }

}  // namespace cubeflow::tools
