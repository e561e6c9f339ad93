#pragma once
/// \file loader.hpp
/// \brief Finding and loading plugin shared libraries (Boost.DLL).
///
/// Search order: the installed plugin directory (`<prefix>/lib/cubeflow/plugins`, found relative
/// to the running executable), then the directories in `CUBEFLOW_PLUGIN_PATH` (colon-separated),
/// then `plugins:` entries of the pipeline. A plugin name found twice is loaded once (the first
/// one wins; the other is reported as shadowed). A library with a wrong API version, a missing
/// entry point, or a registration that throws is reported with its file and the reason; the
/// other plugins stay usable.

#include <memory>
#include <string>
#include <vector>

#include "cubeflow/registry.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow {

/// \brief Outcome of trying one library.
struct PluginReport {
  std::string file;
  std::string name, version;  ///< empty if the entry point could not be read
  bool ok = false;
  std::string error;          ///< why it was rejected
  size_t node_count = 0;
};

/// \brief Owns the loaded libraries and the registry of their node types. Must outlive every
/// node created from it. Not thread-safe for concurrent loading.
class PluginManager {
 public:
  PluginManager();
  ~PluginManager();
  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  /// The default search directories: installed dir, then CUBEFLOW_PLUGIN_PATH entries.
  static std::vector<std::string> DefaultSearchPath();
  /// Loads every plugin library (*.so) in each directory; problems become reports, not errors.
  void LoadSearchPath(const std::vector<std::string>& dirs);
  /// Loads one library given as a path (absolute, or relative to `base_dir`) or a bare plugin
  /// name looked up as `<dir>/<name>.so` in the search path. Returns an error saying why not.
  Status Load(const std::string& name_or_path, const std::string& base_dir = "");

  Registry& registry() { return registry_; }
  const Registry& registry() const { return registry_; }
  const std::vector<PluginReport>& reports() const { return reports_; }
  /// Reports of libraries that failed to load.
  std::vector<PluginReport> Failures() const;

 private:
  Status LoadFile(const std::string& path);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Registry registry_;
  std::vector<PluginReport> reports_;
  std::vector<std::string> search_dirs_;
};

}  // namespace cubeflow
