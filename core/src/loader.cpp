#include "cubeflow/loader.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include "cubeflow/log.hpp"
#include "cubeflow/plugin.hpp"

namespace fs = std::filesystem;

namespace cubeflow {

struct PluginManager::Impl {
  // Kept loaded for as long as the manager lives: node factories and specs point into them.
  std::vector<boost::dll::shared_library> libs;
  std::set<std::string> loaded_files;
  std::map<std::string, std::string> loaded_names;  // plugin name -> file
};

PluginManager::PluginManager() : impl_(std::make_unique<Impl>()) {}
PluginManager::~PluginManager() {
  // Drop node specs (their factories live in the libraries) before unloading.
  registry_ = Registry();
}

std::vector<std::string> PluginManager::DefaultSearchPath() {
  std::vector<std::string> dirs;
  boost::system::error_code ec;
  auto exe = boost::dll::program_location(ec);
  if (!ec) {
    fs::path installed = fs::path(exe.string()).parent_path().parent_path() / CUBEFLOW_PLUGIN_REL_DIR;
    std::error_code fe;
    if (fs::is_directory(installed, fe)) {
      const fs::path canon = fs::weakly_canonical(installed, fe);
      dirs.push_back(fe ? installed.string() : canon.string());
    }
  }
  if (const char* env = std::getenv("CUBEFLOW_PLUGIN_PATH")) {
    std::string s(env);
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find(':', start);
      if (end == std::string::npos) end = s.size();
      std::string d = s.substr(start, end - start);
      if (!d.empty()) dirs.push_back(d);
      start = end + 1;
    }
  }
  return dirs;
}

void PluginManager::LoadSearchPath(const std::vector<std::string>& dirs) {
  for (const auto& d : dirs) {
    search_dirs_.push_back(d);
    std::error_code ec;
    if (!fs::is_directory(d, ec)) {
      Log(LogLevel::kWarn, "", "plugin directory '" + d + "' does not exist (from CUBEFLOW_PLUGIN_PATH or the install)");
      continue;
    }
    std::vector<fs::path> files;
    for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code fe;
      if (it->is_regular_file(fe) && it->path().extension() == ".so") files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) (void)LoadFile(f.string());
  }
}

Status PluginManager::Load(const std::string& name_or_path, const std::string& base_dir) {
  const bool looks_like_path = name_or_path.find('/') != std::string::npos ||
                               (name_or_path.size() > 3 && name_or_path.ends_with(".so"));
  if (looks_like_path) {
    fs::path p(name_or_path);
    if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
    std::error_code fe;
    if (!fs::exists(p, fe))  // a name too long for the file system is not found either
      return Status::Error("plugin library '" + p.string() + "' not found" + (fe ? " (" + fe.message() + ")" : ""));
    return LoadFile(p.string());
  }
  if (auto it = impl_->loaded_names.find(name_or_path); it != impl_->loaded_names.end()) return Status::OK();
  std::string tried;
  for (const auto& d : search_dirs_.empty() ? DefaultSearchPath() : search_dirs_) {
    fs::path p = fs::path(d) / (name_or_path + ".so");
    std::error_code fe;
    if (fs::exists(p, fe)) return LoadFile(p.string());
    tried += (tried.empty() ? "" : ", ") + d;
  }
  return Status::Error("plugin '" + name_or_path + "' not found in the plugin search path (" +
                       (tried.empty() ? std::string("empty") : tried) +
                       "); give its path, or add its directory to CUBEFLOW_PLUGIN_PATH");
}

Status PluginManager::LoadFile(const std::string& path) {
  std::error_code fe;
  const fs::path canon_path = fs::weakly_canonical(path, fe);
  const std::string canon = fe ? path : canon_path.string();
  if (impl_->loaded_files.count(canon)) return Status::OK();
  PluginReport report;
  report.file = path;
  auto fail = [&](std::string why) {
    report.ok = false;
    report.error = why;
    reports_.push_back(report);
    Log(LogLevel::kDebug, "", "plugin " + path + " rejected: " + why);
    return Status::Error("plugin '" + path + "': " + why);
  };
  boost::dll::shared_library lib;
  try {
    lib.load(canon, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return fail(std::string("cannot be loaded: ") + e.what() + " (is it a shared library built for this system?)");
  }
  if (!lib.has(kPluginEntryPoint))
    return fail(std::string("missing entry point '") + kPluginEntryPoint +
                "' - not a cubeflow plugin, or built without CUBEFLOW_PLUGIN(...)");
  PluginInfo info{};
  try {
    info = lib.get<PluginInfo()>(kPluginEntryPoint)();
  } catch (const std::exception& e) {
    return fail(std::string("entry point failed: ") + e.what());
  }
  if (info.api_version != kPluginApiVersion)
    return fail("built against plugin API version " + std::to_string(info.api_version) +
                ", but this cubeflow (" + kVersion + ") uses API version " + std::to_string(kPluginApiVersion) +
                "; rebuild the plugin against the installed cubeflow headers");
  report.name = info.name ? info.name : "";
  report.version = info.version ? info.version : "";
  if (report.name.empty()) return fail("entry point returned no plugin name");
  if (auto it = impl_->loaded_names.find(report.name); it != impl_->loaded_names.end())
    return fail("plugin '" + report.name + "' is already loaded from " + it->second + " (this copy is shadowed)");
  if (!info.register_nodes) return fail("entry point returned no registration function");

  // Register into a scratch registry first so a throwing registration leaves nothing behind.
  Registry scratch;
  scratch.SetCurrentOrigin({report.name, report.version, path});
  try {
    info.register_nodes(scratch);
  } catch (const std::exception& e) {
    return fail("plugin '" + report.name + "' threw during registration: " + e.what());
  } catch (...) {
    return fail("plugin '" + report.name + "' threw an unknown exception during registration");
  }
  registry_.SetCurrentOrigin({report.name, report.version, path});
  size_t count = 0;
  for (const NodeSpec* s : scratch.All()) {
    if (registry_.Find(s->name())) {
      const auto* o = registry_.OriginOf(s->name());
      return fail("node type '" + s->name() + "' is already provided by plugin '" + (o ? o->plugin : "?") + "'");
    }
  }
  for (const NodeSpec* s : scratch.All()) {
    registry_.Add(*s);
    ++count;
  }
  report.ok = true;
  report.node_count = count;
  reports_.push_back(report);
  impl_->loaded_files.insert(canon);
  impl_->loaded_names[report.name] = path;
  impl_->libs.push_back(std::move(lib));
  Log(LogLevel::kDebug, "", "loaded plugin " + report.name + " " + report.version + " (" + path + ", " +
                                std::to_string(count) + " node types)");
  return Status::OK();
}

std::vector<PluginReport> PluginManager::Failures() const {
  std::vector<PluginReport> v;
  for (const auto& r : reports_) if (!r.ok) v.push_back(r);
  return v;
}

}  // namespace cubeflow
