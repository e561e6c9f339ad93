// The `model` parameter of the inference nodes: the file it names (see model_file.hpp).
#include "model_file.hpp"

#include <filesystem>
#include <limits>
#include <vector>

#include "cubeflow/registry.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::inference {

namespace {

/// The closest shipped name, if it is close enough to be a typing error ("" if none).
std::string Closest(const std::string& name, const std::vector<std::string>& names) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& n : names) {
    const size_t d = EditDistance(name, n);
    if (d < best_d) {
      best_d = d;
      best = n;
    }
  }
  return best_d <= std::max<size_t>(2, name.size() / 3) ? best : "";
}

}  // namespace

Result<std::string> ModelFile(const ModelRef& model) {
  const std::vector<std::string> names = ShippedModelNames();
  const std::string shipped = "shipped models: " + Join(names, ", ", "none found");
  if (model.text.empty())
    return Status::Error("is empty: give the name of a shipped model (" + shipped +
                         ") or the path of a model file written by `cubeflow train`");
  std::error_code ec;
  if (model.kind == ModelRef::Kind::kPath) {
    if (!std::filesystem::is_regular_file(model.text, ec))
      return Status::Error("model file '" + model.text + "' does not exist: give the path of a model file written by "
                           "`cubeflow train`, or the bare name of a shipped model (" + shipped + ")");
    return model.text;
  }
  const std::string file = model.File();
  if (!file.empty()) return file;
  std::string e = "no shipped model named '" + model.text + "'";
  if (const std::string c = Closest(model.text, names); !c.empty()) e += " (did you mean '" + c + "'?)";
  return Status::Error(e + "; " + shipped + " (in " + Join(ShippedModelDirs(), ", ", "no directory") +
                       "); a model file is given by its path (e.g. ./" + model.text +
                       ".pt), or set CUBEFLOW_MODEL_DIR to the directory holding " + model.text + ".pt");
}

std::string CheckModelFiles(const ModelRef& model, std::string (*metadata_path)(const std::string&),
                            CheckReport& report) {
  auto file = ModelFile(model);
  if (!file.ok()) {
    report.Error("model", file.status().message());
    return "";
  }
  const std::string md = metadata_path(*file);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(md, ec)) {
    report.Error("model", "model file '" + *file + "' has no metadata file " + md +
                              ": a model needs the metadata `cubeflow train` writes beside it (docs/cnn.md "
                              "describes it for TorchScript modules)");
    return "";
  }
  return *file;
}

}  // namespace cubeflow::inference
