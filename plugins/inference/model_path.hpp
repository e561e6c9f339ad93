#pragma once
/// \file model_path.hpp
/// \brief Where the inference nodes find models: a path, or the name of a shipped model.

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <boost/dll/runtime_symbol_info.hpp>

namespace cubeflow::inference {

/// Directories searched for shipped models, in order: $CUBEFLOW_MODEL_DIR, then
/// <prefix>/share/cubeflow/models where <prefix> is three levels above this plugin
/// (<prefix>/lib/cubeflow/plugins/inference.so; the build tree mirrors the install layout).
inline std::vector<std::filesystem::path> ModelSearchDirs() {
  std::vector<std::filesystem::path> dirs;
  if (const char* env = std::getenv("CUBEFLOW_MODEL_DIR"); env && *env) dirs.emplace_back(env);
  boost::system::error_code ec;
  const auto self = boost::dll::this_line_location(ec);
  if (!ec) {
    const std::filesystem::path plugin_dir = std::filesystem::path(self.string()).parent_path();
    dirs.push_back((plugin_dir / ".." / ".." / ".." / "share" / "cubeflow" / "models").lexically_normal());
  }
  return dirs;
}

/// Resolves the `model` parameter: an existing file, or anything with an extension, is a path
/// and returned unchanged; otherwise its last component names a shipped model (`builtin` ->
/// `<kind>_builtin.pt`, `X` -> `X.pt`; the pipeline reader may have made it absolute) looked up
/// in ModelSearchDirs(). On failure returns "" and fills `error` with what was searched.
inline std::string ResolveModel(const std::string& value, const std::string& kind, std::string* error) {
  std::error_code ec;
  const std::filesystem::path given(value);
  if (std::filesystem::exists(given, ec) || given.has_extension()) return value;
  const std::string name = given.filename().string();
  const std::string file = (name == "builtin" ? kind + "_builtin" : name) + ".pt";
  std::string searched;
  for (const auto& d : ModelSearchDirs()) {
    if (std::filesystem::is_regular_file(d / file, ec)) return (d / file).string();
    searched += (searched.empty() ? "" : ", ") + d.string();
  }
  *error = "no shipped model '" + name + "' (" + file + ") in " + (searched.empty() ? "(no directory)" : searched) +
           ": give the path of a model file, or set CUBEFLOW_MODEL_DIR to the directory holding " + file;
  return "";
}

}  // namespace cubeflow::inference
