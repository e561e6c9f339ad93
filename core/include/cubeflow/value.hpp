#pragma once
/// \file value.hpp
/// \brief Typed parameter values, as bound from YAML or `--set`.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace cubeflow {

/// \brief The types a node parameter can have.
enum class ParamType { kBool, kInt, kDouble, kString, kPath, kModel, kDoubleList, kIntList, kStringList };

/// \brief Human-readable name of a parameter type ("double", "list of int", ...).
const char* ParamTypeName(ParamType t);

/// \brief A bound parameter value. Paths are stored as strings (already resolved
/// relative to the pipeline file by the binder).
using Value = std::variant<std::monostate, bool, int64_t, double, std::string, std::vector<double>,
                           std::vector<int64_t>, std::vector<std::string>>;

/// \brief A model named by a parameter: a shipped model, or a model file.
///
/// The kind follows from the text alone, never from what happens to exist: a bare name
/// (letters, digits, '_' and '-' only, e.g. `cnn_emiles`) names a shipped model, looked up as
/// NAME.pt in ShippedModelDirs(); anything else (`./my.pt`, `models/x.pt`, an absolute path) is
/// a path. The validator checks that either exists, so a mistyped path is an error, not a
/// shipped-model lookup, and a mistyped name lists the shipped models.
struct ModelRef {
  enum class Kind { kShipped, kPath };
  Kind kind = Kind::kShipped;
  std::string text;  ///< as bound: the name, or the path (absolute after validation)

  /// Classifies `text` (see above); an empty text is an empty shipped name.
  static ModelRef Parse(const std::string& text);
  /// True if `text` has the form of a shipped model's name.
  static bool IsName(const std::string& text);
  /// The model file: the path itself, or NAME.pt in the first of ShippedModelDirs() that has
  /// it ("" if none has).
  std::string File() const;
  bool operator==(const ModelRef&) const = default;
};

/// Directories searched for shipped models, in order: $CUBEFLOW_MODEL_DIR (if set), then
/// <prefix>/share/cubeflow/models where <prefix> is the directory above the one holding the
/// cubeflow core library (the build tree mirrors the install layout).
std::vector<std::string> ShippedModelDirs();
/// Names of the shipped models found in ShippedModelDirs() (NAME for each NAME.pt), sorted.
std::vector<std::string> ShippedModelNames();

/// \brief Formats a value the way it is written in YAML and in provenance headers.
std::string FormatValue(const Value& v);

}  // namespace cubeflow
