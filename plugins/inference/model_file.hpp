#pragma once
/// \file model_file.hpp
/// \brief What the inference nodes share about their `model` parameter: the file it names and
/// the checks run on it before the pipeline runs (`cubeflow validate`). Internal to the plugin.

#include <string>

#include "cubeflow/spec.hpp"
#include "cubeflow/status.hpp"
#include "cubeflow/value.hpp"

namespace cubeflow::inference {

/// Allowed |mean flux in the normalisation window - 1| of an input spectrum: the one default of
/// the `norm_tolerance` parameter of inference.cnn and inference.sbi.
inline constexpr double kDefaultNormTolerance = 0.05;

/// The file `model` names: the path itself, or NAME.pt in the first of ShippedModelDirs() that
/// has it. A name is never looked up as a path nor a path as a name (ModelRef). Errors say what
/// was looked for and what to give instead, in the words of `cubeflow validate`.
Result<std::string> ModelFile(const ModelRef& model);

/// The model file and its metadata file `metadata_path(file)` must exist: returns the model
/// file, or reports on parameter `model` what is missing and returns "".
std::string CheckModelFiles(const ModelRef& model, std::string (*metadata_path)(const std::string&),
                            CheckReport& report);

}  // namespace cubeflow::inference
