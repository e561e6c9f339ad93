// Survey mode: one pipeline over a manifest of cubes (survey.hpp, docs/survey.md).
#include "survey.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "cubeflow/atomic_file.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::tools::survey {
namespace fs = std::filesystem;
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::string> SplitTabs(const std::string& line) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    out.push_back(Trim(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start)));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return out;
}

/// One line for a TSV cell or a message: tabs and newlines become spaces.
std::string OneLine(std::string s, size_t max = 2000) {
  for (char& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

/// Sets the cube's variables in the environment (the pipeline's ${VAR}); restores them when done.
class EnvScope {
 public:
  explicit EnvScope(const Cube& c) {
    for (const auto& [k, v] : c.vars) {
      const char* old = std::getenv(k.c_str());
      saved_.push_back({k, old ? std::optional<std::string>(old) : std::nullopt});
      ::setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~EnvScope() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else ::unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

/// The options of cube i's run: the survey's, plus the cube's overrides and its own checkpoints.
Args CubeArgs(const Survey& s, size_t i) {
  const Cube& c = s.manifest.cubes[s.selected[i]];
  Args a = s.args;
  a.manifest.clear();
  a.sets.insert(a.sets.end(), c.sets.begin(), c.sets.end());
  a.checkpoint_leaf = c.name;
  a.threads = s.threads_per_cube;
  a.progress = false;
  return a;
}

std::string Where(const Survey& s, size_t i) {
  return s.manifest.file + ":" + std::to_string(s.manifest.cubes[s.selected[i]].line);
}

}  // namespace

Manifest ReadManifest(const std::string& path, std::vector<std::string>& errors) {
  Manifest m;
  m.file = path;
  std::ifstream in(path);
  if (!in) {
    std::error_code ec;
    errors.push_back(path + ": cannot open the manifest (" +
                     (fs::exists(path, ec) ? std::string("permission denied") : std::string("no such file")) + ")");
    return m;
  }
  static const std::regex var_re(R"([A-Za-z_][A-Za-z0-9_]*)");
  static const std::regex set_re(R"([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)");
  static const std::regex name_re(R"([A-Za-z0-9_.+-]+)");
  std::string line;
  int lineno = 0;
  bool have_header = false;
  int name_col = -1;
  std::map<std::string, int> names;  // cube name -> line
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    if (Trim(line).empty() || Trim(line)[0] == '#') continue;
    std::vector<std::string> f = SplitTabs(line);
    if (!have_header) {
      have_header = true;
      m.columns = f;
      std::set<std::string> seen;
      for (size_t k = 0; k < f.size(); ++k) {
        const std::string& c = f[k];
        if (!seen.insert(c).second) errors.push_back(where + "column '" + c + "' is named twice in the header");
        if (c == "name") {
          name_col = static_cast<int>(k);
        } else if (!std::regex_match(c, var_re) && !std::regex_match(c, set_re)) {
          errors.push_back(where + "column '" + c +
                           "' is neither a variable (letters, digits, _: used as ${" + "NAME} in the pipeline) nor a "
                           "parameter override NODE.PARAM; columns are separated by tabs");
        }
      }
      if (name_col < 0)
        errors.push_back(where + "the header has no column 'name' (the header names the tab-separated columns: "
                                 "name, then ${VAR} variables and NODE.PARAM overrides)");
      continue;
    }
    if (f.size() != m.columns.size()) {
      errors.push_back(where + std::to_string(f.size()) + " field" + (f.size() == 1 ? "" : "s") + ", the header has " +
                       std::to_string(m.columns.size()) + " (fields are separated by tabs)");
      continue;
    }
    if (name_col < 0) continue;
    Cube c;
    c.line = lineno;
    c.name = f[name_col];
    if (!std::regex_match(c.name, name_re)) {
      errors.push_back(where + "cube name '" + c.name +
                       "' is empty or has characters other than letters, digits and . _ + - (it names the cube's log file)");
      continue;
    }
    if (auto it = names.find(c.name); it != names.end()) {
      errors.push_back(where + "cube '" + c.name + "' is already named on line " + std::to_string(it->second) +
                       "; give every cube its own name");
      continue;
    }
    names[c.name] = lineno;
    for (size_t k = 0; k < f.size(); ++k) {
      if (static_cast<int>(k) == name_col || f[k].empty()) continue;  // empty: the pipeline's value
      if (m.columns[k].find('.') != std::string::npos) c.sets.push_back(m.columns[k] + "=" + f[k]);
      else c.vars.push_back({m.columns[k], f[k]});
    }
    m.cubes.push_back(std::move(c));
  }
  if (!have_header) errors.push_back(path + ": the manifest is empty (no header line)");
  else if (m.cubes.empty() && errors.empty()) errors.push_back(path + ": the manifest lists no cubes");
  return m;
}

int Init(const Args& args, Survey& s, std::ostream& err) {
  s.args = args;
  if (args.positional.size() != 1) {
    err << "usage: cubeflow run PIPELINE --manifest CUBES.tsv [--jobs N] [--summary PATH] [--cube NAME] "
           "[--only-row K] [--allow-failed]\n";
    return 2;
  }
  std::vector<std::string> errors;
  s.manifest = ReadManifest(args.manifest, errors);
  for (const auto& e : errors) err << "cubeflow: error: " << e << "\n";
  if (!errors.empty()) return 2;
  // The selection: --cube NAME and --only-row K (1 = the first data line), else every cube.
  std::set<size_t> pick;
  for (const auto& name : args.cubes) {
    auto it = std::find_if(s.manifest.cubes.begin(), s.manifest.cubes.end(), [&](const Cube& c) { return c.name == name; });
    if (it == s.manifest.cubes.end()) {
      std::vector<std::string> all;
      for (const auto& c : s.manifest.cubes) all.push_back(c.name);
      err << "cubeflow: error: --cube " << name << ": no such cube in " << args.manifest << " (cubes: " << Join(all, ", ")
          << ")\n";
      return 2;
    }
    pick.insert(static_cast<size_t>(it - s.manifest.cubes.begin()));
  }
  for (int64_t r : args.rows) {
    if (r > static_cast<int64_t>(s.manifest.cubes.size())) {
      err << "cubeflow: error: --only-row " << r << ": " << args.manifest << " has " << s.manifest.cubes.size()
          << " cube" << (s.manifest.cubes.size() == 1 ? "" : "s") << " (rows 1 to " << s.manifest.cubes.size() << ")\n";
      return 2;
    }
    pick.insert(static_cast<size_t>(r - 1));
  }
  if (pick.empty())
    for (size_t i = 0; i < s.manifest.cubes.size(); ++i) pick.insert(i);
  s.selected.assign(pick.begin(), pick.end());
  s.results.resize(s.selected.size());
  s.children.resize(s.selected.size());
  for (size_t i = 0; i < s.selected.size(); ++i) s.results[i].name = s.manifest.cubes[s.selected[i]].name;
  // The summary (default: MANIFEST_STEM.summary.tsv in the current directory) and the logs beside it.
  s.summary_path = args.summary.empty() ? fs::path(args.manifest).stem().string() + ".summary.tsv" : args.summary;
  fs::path sp(s.summary_path);
  s.log_dir = (sp.parent_path() / (sp.stem().string() + ".logs")).string();
  for (size_t i = 0; i < s.selected.size(); ++i)
    s.results[i].log = (fs::path(s.log_dir) / (s.results[i].name + ".log")).string();
  if (args.threads > 0) {
    s.threads_per_cube = args.threads;
  } else if (args.jobs > 1) {
    s.threads_per_cube = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / args.jobs);
  }
  return 0;
}

int Validate(Survey& s, std::ostream& err, bool write_logs) {
  std::error_code ec;
  if (write_logs) fs::create_directories(s.log_dir, ec);
  if (ec) {
    err << "cubeflow: error: cannot create the log directory " << s.log_dir << ": " << ec.message() << "\n";
    return 2;
  }
  struct Use {
    size_t cube;
    std::string where, path;
  };
  std::map<fs::path, Use> outputs;  // canonical path -> the cube writing it
  std::vector<std::pair<fs::path, Use>> inputs;
  auto canon = [](const std::string& p) {
    std::error_code e;
    fs::path c = fs::weakly_canonical(p, e);
    return e ? fs::path(p).lexically_normal() : c;
  };
  int refused = 0;
  for (size_t i = 0; i < s.selected.size(); ++i) {
    const Cube& c = s.manifest.cubes[s.selected[i]];
    CubeResult& r = s.results[i];
    std::ostringstream log;
    PluginManager pm;  // the pipeline's node specs live in its registry
    std::optional<Pipeline> pl;
    {
      EnvScope env(c);
      pl = LoadForRun(CubeArgs(s, i), pm, log, &r.error);
    }
    if (!pl) {
      r.status = "failed";
      r.error = "the pipeline does not validate with this cube's values: " + OneLine(r.error);
      if (write_logs) std::ofstream(r.log) << log.str();
      continue;
    }
    std::vector<PathUse> outs, ins;
    PipelinePaths(*pl, &outs, &ins);
    for (const auto& in : ins) {
      if (fs::exists(in.path, ec)) continue;
      r.status = "failed";
      r.error = "input '" + in.path + "' (" + in.where + ") does not exist; check the manifest's value on line " +
                std::to_string(c.line);
      if (write_logs) std::ofstream(r.log) << "cubeflow: error: " << r.error << "\n";
      break;
    }
    if (r.status == "failed") continue;
    for (const auto& o : outs) {
      const fs::path k = canon(o.path);
      if (auto it = outputs.find(k); it != outputs.end()) {
        err << "cubeflow: error: " << Where(s, i) << ": cube '" << c.name << "' writes " << o.path << " (" << o.where
            << "), which cube '" << s.results[it->second.cube].name << "' (line "
            << s.manifest.cubes[s.selected[it->second.cube]].line
            << ") writes too; give each cube its own product path (a column such as OUT used as ${OUT})\n";
        ++refused;
        continue;
      }
      outputs[k] = {i, o.where, o.path};
    }
    for (const auto& in : ins) inputs.push_back({canon(in.path), {i, in.where, in.path}});
  }
  for (const auto& [k, in] : inputs) {
    auto it = outputs.find(k);
    if (it == outputs.end() || it->second.cube == in.cube) continue;  // its own input: the validator's check
    err << "cubeflow: error: " << Where(s, it->second.cube) << ": cube '" << s.results[it->second.cube].name
        << "' writes " << it->second.path << " (" << it->second.where << "), which is the input of cube '"
        << s.results[in.cube].name << "' (" << in.where << ", line " << s.manifest.cubes[s.selected[in.cube]].line
        << "); writing it would destroy that input: choose another output path\n";
    ++refused;
  }
  if (refused) {
    err << "cubeflow: error: " << s.manifest.file << ": " << refused << " product path" << (refused == 1 ? "" : "s")
        << " in conflict; nothing was run\n";
    return 2;
  }
  return 0;
}

pid_t StartCube(Survey& s, size_t i, const std::string& host) {
  CubeResult& r = s.results[i];
  const Cube& c = s.manifest.cubes[s.selected[i]];
  const Args a = CubeArgs(s, i);
  int fds[2];
  std::error_code ec;
  fs::create_directories(s.log_dir, ec);
  if (::pipe(fds) != 0) {
    r.status = "failed";
    r.error = std::string("cannot start the cube: pipe: ") + std::strerror(errno);
    return -1;
  }
  std::fflush(nullptr);
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    r.status = "failed";
    r.error = std::string("cannot start the cube: fork: ") + std::strerror(errno);
    return -1;
  }
  if (pid == 0) {  // the child: `cubeflow run` with the cube's values, output to its log
    ::close(fds[0]);
    const int log = ::open(r.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
      ::close(log);
    }
    for (const auto& [k, v] : c.vars) ::setenv(k.c_str(), v.c_str(), 1);
    RunOutcome o;
    try {
      o = RunOnce(a, std::cerr);
    } catch (const std::exception& e) {
      o.exit_code = 1;
      o.error = e.what();
      std::cerr << "cubeflow: error: " << e.what() << "\n";
    }
    std::string msg = std::to_string(o.exit_code) + "\t" + std::to_string(o.bins) + "\t" + std::to_string(o.usable) +
                      "\t" + OneLine(Join(o.products, ",")) + "\t" + OneLine(o.error) + "\n";
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    for (size_t off = 0; off < msg.size();) {
      const ssize_t n = ::write(fds[1], msg.data() + off, msg.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::_exit(o.exit_code);  // no atexit handlers, no MPI finaliser in a child of an MPI rank
  }
  ::close(fds[1]);
  ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  s.children[i] = {pid, fds[0], Now()};
  r.status = "running";
  r.host = host + " pid " + std::to_string(pid);
  return pid;
}

long WaitCube(Survey& s, bool nohang) {
  int status = 0;
  struct rusage ru {};
  const pid_t pid = ::wait4(-1, &status, nohang ? WNOHANG : 0, &ru);
  if (pid <= 0) return -1;
  size_t i = 0;
  while (i < s.children.size() && s.children[i].pid != pid) ++i;
  if (i == s.children.size()) return -1;  // not one of ours
  Survey::Child& ch = s.children[i];
  CubeResult& r = s.results[i];
  std::string msg;
  char buf[4096];
  for (ssize_t n; (n = ::read(ch.fd, buf, sizeof buf)) > 0;) msg.append(buf, static_cast<size_t>(n));
  ::close(ch.fd);
  r.wall_seconds = Now() - ch.start;
  r.peak_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;  // kB on Linux: this child's own peak
  ch = {};
  std::vector<std::string> f;
  if (!msg.empty()) {
    if (msg.back() == '\n') msg.pop_back();
    std::stringstream ss(msg);
    for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
  }
  if (f.size() >= 4) {
    r.bins = std::atoll(f[1].c_str());
    r.usable = std::atoll(f[2].c_str());
    r.products = f[3];
    r.error = f.size() >= 5 ? f[4] : "";
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    r.exit_code = 128 + sig;
    r.status = "failed";
    r.error = "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")" +
              (sig == SIGKILL ? ", perhaps by the out-of-memory killer" : "") +
              "; its products are written whole at the end of a run or not at all (an earlier file at the same path is kept); see " + r.log;
    return static_cast<long>(i);
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  if (r.exit_code != 0) {
    r.status = "failed";
    if (r.error.empty()) r.error = "exited with status " + std::to_string(r.exit_code) + "; see " + r.log;
  } else if (r.usable == r.bins) {
    r.status = "ok";
  } else {
    r.status = r.usable > 0 ? "usable-partial" : "empty";
  }
  return static_cast<long>(i);
}

void WriteSummary(const Survey& s, std::ostream& err) {
  std::string t = "name\tstatus\tbins\tusable\twall_s\tpeak_rss_mb\texit\thost\tproducts\tlog\terror\n";
  for (const auto& r : s.results) {
    const bool done = r.exit_code >= 0;  // ran and finished (not pending, running or refused)
    t += r.name + "\t" + r.status + "\t" + std::to_string(r.bins) + "\t" + std::to_string(r.usable) + "\t" +
         (done ? Fixed(r.wall_seconds, 2) : "") + "\t" + (done ? Fixed(r.peak_rss_mb, 1) : "") + "\t" +
         (r.exit_code >= 0 ? std::to_string(r.exit_code) : "") + "\t" + OneLine(r.host) + "\t" + OneLine(r.products) +
         "\t" + r.log + "\t" + OneLine(r.error) + "\n";
  }
  Status st = WriteFileAtomic(s.summary_path, t);
  if (!st.ok()) err << "cubeflow: warning: " << st.message() << "\n";
}

std::string FormatSummary(const Survey& s) {
  size_t w = 4;
  for (const auto& r : s.results) w = std::max(w, r.name.size());
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-*s  %-14s %6s %6s %8s %9s  %s\n", static_cast<int>(w), "cube", "status", "bins",
                "usable", "wall s", "peak MB", "product / error");
  std::string out = buf;
  for (const auto& r : s.results) {
    const bool done = r.exit_code >= 0;
    std::snprintf(buf, sizeof buf, "%-*s  %-14s %6lld %6lld %8s %9s  ", static_cast<int>(w), r.name.c_str(),
                  r.status.c_str(), static_cast<long long>(r.bins), static_cast<long long>(r.usable),
                  done ? Fixed(r.wall_seconds, 2).c_str() : "-", done ? Fixed(r.peak_rss_mb, 1).c_str() : "-");
    out += buf + (r.status == "failed" ? OneLine(r.error, 300) : r.products) + "\n";
  }
  return out;
}

std::string FormatProgress(const Survey& s, size_t i) {
  size_t done = 0;
  for (const auto& r : s.results) done += r.status != "pending" && r.status != "running";
  const CubeResult& r = s.results[i];
  std::string line = "[" + std::to_string(done) + "/" + std::to_string(s.results.size()) + "] " + r.name + ": " + r.status;
  if (r.status == "failed") return line + ": " + OneLine(r.error, 500) + "\n";
  return line + ", " + std::to_string(r.bins) + " bins (" + std::to_string(r.usable) + " usable), " +
         Fixed(r.wall_seconds, 2) + " s, " + Fixed(r.peak_rss_mb, 1) + " MB\n";
}

int ExitStatus(const Survey& s) {
  size_t usable = 0;
  for (const auto& r : s.results)
    usable += r.status == "ok" || r.status == "usable-partial" || r.status == "empty";
  if (usable == s.results.size()) return 0;
  return s.args.allow_failed && usable > 0 ? 0 : 1;
}

std::string Encode(const Survey& s, size_t i) {
  const CubeResult& r = s.results[i];
  return std::to_string(i) + "\t" + r.status + "\t" + std::to_string(r.bins) + "\t" + std::to_string(r.usable) + "\t" +
         Fixed(r.wall_seconds, 6) + "\t" + Fixed(r.peak_rss_mb, 3) + "\t" + std::to_string(r.exit_code) + "\t" +
         OneLine(r.host) + "\t" + OneLine(r.products) + "\t" + OneLine(r.error);
}

long Decode(Survey& s, const std::string& text) {
  std::vector<std::string> f;
  std::stringstream ss(text);
  for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
  while (f.size() < 10) f.emplace_back();
  const long i = std::atol(f[0].c_str());
  if (f[0].empty() || i < 0 || static_cast<size_t>(i) >= s.results.size()) return -1;
  CubeResult& r = s.results[static_cast<size_t>(i)];
  r.status = f[1];
  r.bins = std::atoll(f[2].c_str());
  r.usable = std::atoll(f[3].c_str());
  r.wall_seconds = std::atof(f[4].c_str());
  r.peak_rss_mb = std::atof(f[5].c_str());
  r.exit_code = std::atoi(f[6].c_str());
  r.host = f[7];
  r.products = f[8];
  r.error = f[9];
  return i;
}

namespace {
std::atomic<int> g_stop{0}, g_signals{0};
extern "C" void OnSurveySignal(int sig) {
  g_stop = sig;
  ++g_signals;
}
}  // namespace

int RunLocal(const Args& args) {
  Survey s;
  if (int rc = Init(args, s, std::cerr)) return rc;
  if (int rc = Validate(s, std::cerr)) return rc;
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  // SIGINT/SIGTERM: start no further cube, pass the signal to the running ones (they write
  // partial products as `cubeflow run` does; a second signal ends them at once, as it ends
  // `cubeflow run`), write the summary, exit 128+N.
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = OnSurveySignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  for (size_t i = 0; i < s.results.size(); ++i)
    if (s.results[i].status == "failed") std::cerr << FormatProgress(s, i);
  WriteSummary(s, std::cerr);
  size_t next = 0, running = 0;
  int forwarded = 0;
  while (true) {
    while (!g_stop && running < static_cast<size_t>(std::max(1, args.jobs)) && next < s.results.size()) {
      const size_t i = next++;
      if (s.results[i].status != "pending") continue;
      if (StartCube(s, i, host) > 0) ++running;
      else std::cerr << FormatProgress(s, i);
      WriteSummary(s, std::cerr);
    }
    if (running == 0) break;
    if (g_signals > forwarded) {
      forwarded = g_signals;
      for (const auto& c : s.children)
        if (c.pid > 0) ::kill(c.pid, g_stop.load());
    }
    const long i = WaitCube(s, false);
    if (i < 0) continue;  // a signal: loop to forward it
    --running;
    std::cerr << FormatProgress(s, static_cast<size_t>(i));
    WriteSummary(s, std::cerr);
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  std::cout << FormatSummary(s) << "summary: " << s.summary_path << "\n";
  if (g_stop) {
    std::cerr << "cubeflow: error: stopped by signal " << g_stop.load()
              << "; cubes not started are 'pending' in the summary\n";
    return 128 + g_stop.load();
  }
  const int rc = ExitStatus(s);
  if (rc != 0) std::cerr << "cubeflow: error: not every cube gave a usable product (see the summary)\n";
  return rc;
}

}  // namespace cubeflow::tools::survey
