// `cubeflow run FILE` as a function (run_once.hpp), shared by `cubeflow` and `cubeflow-mpi`.
#include "run_once.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cubeflow/atomic_file.hpp"
#include "cubeflow/log.hpp"
#include "cubeflow/runner.hpp"

namespace cubeflow::tools {
namespace {

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

}  // namespace

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
    } else if (s == "--manifest") {
      const char* v = need("--manifest");
      if (!v) return false;
      a.manifest = v;
    } else if (s == "--jobs") {
      const char* v = need("--jobs");
      int64_t n = 0;
      if (!v || !ParseCount("--jobs", v, 1, 4096, n, err)) return false;
      a.jobs = static_cast<int>(n);
    } else if (s == "--summary") {
      const char* v = need("--summary");
      if (!v) return false;
      a.summary = v;
    } else if (s == "--allow-failed") {
      a.allow_failed = true;
    } else if (s == "--cube") {
      const char* v = need("--cube");
      if (!v) return false;
      a.cubes.push_back(v);
    } else if (s == "--only-row") {
      const char* v = need("--only-row");
      int64_t n = 0;
      if (!v || !ParseCount("--only-row", v, 1, int64_t{1} << 40, n, err)) return false;
      a.rows.push_back(n);
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

std::optional<Pipeline> LoadForRun(const Args& a, PluginManager& pm, std::ostream& err, std::string* first_error) {
  LoadDefaultPlugins(pm);
  std::vector<Diagnostic> diags;
  LoadOptions lo;
  lo.allow_special_outputs = a.allow_special_outputs;
  auto pl = LoadPipeline(a.positional[0], a.sets, pm, diags, lo);
  size_t errors = 0;
  for (const auto& d : diags) {
    err << d.Format() << "\n";
    if (!d.is_error) continue;
    if (errors == 0 && first_error) *first_error = d.Format();
    ++errors;
  }
  if (!pl) {
    err << a.positional[0] << ": " << errors << " error" << (errors == 1 ? "" : "s") << "\n";
    if (first_error && first_error->empty()) *first_error = a.positional[0] + ": invalid pipeline";
    return std::nullopt;
  }
  return pl;
}

void PipelinePaths(const Pipeline& pl, std::vector<PathUse>* outputs, std::vector<PathUse>* inputs) {
  for (const auto& n : pl.nodes)
    for (const auto& ps : n.spec->params()) {
      if ((ps.type() != ParamType::kPath && !ps.is_output()) || !n.params.Has(ps.name())) continue;
      const auto* v = std::get_if<std::string>(&n.params.values().at(ps.name()));
      if (!v || v->empty()) continue;
      auto* to = ps.is_output() ? outputs : inputs;
      if (to) to->push_back({"nodes." + n.name + "." + ps.name(), *v});
    }
}

std::string CheckpointDir(const Args& a, const Pipeline& pl) {
  if (!a.checkpoint_dir.empty())
    return a.checkpoint_leaf.empty() ? a.checkpoint_dir : (std::filesystem::path(a.checkpoint_dir) / a.checkpoint_leaf).string();
  std::filesystem::path base = std::filesystem::absolute(pl.file).parent_path();
  std::vector<PathUse> outputs;
  PipelinePaths(pl, &outputs, nullptr);
  if (!outputs.empty()) base = std::filesystem::absolute(outputs.front().path).parent_path();
  std::filesystem::path dir = base / ".cubeflow-checkpoints" / std::filesystem::path(pl.file).stem();
  if (!a.checkpoint_leaf.empty()) dir /= a.checkpoint_leaf;
  return dir.string();
}

RunOutcome RunOnce(const Args& a, std::ostream& err) {
  RunOutcome out;
  InterruptScope scope;  // from the start: a signal while plugins load stops the run at once
  PluginManager pm;
  auto pl = LoadForRun(a, pm, err, &out.error);
  if (!pl) {
    out.exit_code = g_interrupt ? 128 + g_interrupt.load() : 1;
    return out;
  }
  // Temporary files a killed run left beside this run's products (writers remove their own on
  // errors and signals; SIGKILL leaves them).
  std::vector<PathUse> outputs;
  PipelinePaths(*pl, &outputs, nullptr);
  for (const auto& o : outputs)
    for (const auto& f : RemoveStaleTemporaries(o.path))
      err << "cubeflow: removed " << f << ", a temporary file left by a killed run\n";
  RunOptions opt;
  opt.threads = a.threads;
  opt.max_in_flight = a.max_in_flight;
  opt.progress = a.progress;
  opt.interrupt = &g_interrupt;
  if (a.checkpoint) opt.checkpoint_dir = CheckpointDir(a, *pl);
  opt.resume = a.resume;
  if (a.resume && !a.checkpoint) {
    out.error = "--resume needs the checkpoints; drop --no-checkpoint";
    err << "cubeflow: error: " << out.error << "\n";
    out.exit_code = 2;
    return out;
  }
  if (a.resume) {
    std::error_code ec;
    if (!std::filesystem::is_directory(opt.checkpoint_dir, ec))
      err << "cubeflow: warning: no checkpoints in " << opt.checkpoint_dir << ": computing everything\n";
  }
  RunSummary s = RunPipeline(*pl, pm, opt);
  err << s.FormatTable();
  for (const auto& p : s.products) out.products.push_back(p.path);
  if (!s.products.empty()) {
    out.bins = s.products.front().items;
    out.usable = s.products.front().usable;
  }
  const bool have_checkpoints = s.items_checkpointed > 0 || s.items_resumed > 0;
  if (s.interrupted_by != 0 || !s.ok) {
    out.error = s.error;
    err << "cubeflow: error: " << s.error << "\n";
    if (have_checkpoints)
      err << "cubeflow: the results computed so far are kept in " << opt.checkpoint_dir
          << "; run again with --resume to compute only what is missing\n";
    out.exit_code = s.interrupted_by != 0 ? 128 + s.interrupted_by : 1;
    return out;
  }
  if (!opt.checkpoint_dir.empty()) {
    std::error_code ec;  // the products are complete: the checkpoints have served
    std::filesystem::remove_all(opt.checkpoint_dir, ec);
    std::filesystem::path up = std::filesystem::path(opt.checkpoint_dir).parent_path();
    std::filesystem::remove(up, ec);  // if empty
    if (!a.checkpoint_leaf.empty()) std::filesystem::remove(up.parent_path(), ec);
  }
  // A run that produced nothing usable is a failure (unless asked otherwise).
  bool any_usable = s.products.empty();
  for (const auto& p : s.products) any_usable = any_usable || p.usable > 0;
  if (!any_usable && !a.allow_empty) {
    out.error = "no product holds a usable result (every bin failed or is NaN); run with --allow-empty to accept it";
    err << "cubeflow: error: no product holds a usable result (every bin failed or is NaN); see the "
           "warnings above. Run with --allow-empty to accept an empty product.\n";
    out.exit_code = 1;
    return out;
  }
  out.exit_code = 0;
  return out;
}

}  // namespace cubeflow::tools
