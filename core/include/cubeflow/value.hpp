#pragma once
/// \file value.hpp
/// \brief Typed parameter values, as bound from YAML or `--set`.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace cubeflow {

/// \brief The types a node parameter can have.
enum class ParamType { kBool, kInt, kDouble, kString, kPath, kDoubleList, kIntList, kStringList };

/// \brief Human-readable name of a parameter type ("double", "list of int", ...).
const char* ParamTypeName(ParamType t);

/// \brief A bound parameter value. Paths are stored as strings (already resolved
/// relative to the pipeline file by the binder).
using Value = std::variant<std::monostate, bool, int64_t, double, std::string, std::vector<double>,
                           std::vector<int64_t>, std::vector<std::string>>;

/// \brief Formats a value the way it is written in YAML and in provenance headers.
std::string FormatValue(const Value& v);

}  // namespace cubeflow
