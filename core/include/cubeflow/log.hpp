#pragma once
/// \file log.hpp
/// \brief Process-wide logging to stderr. Quiet by default (warnings and errors only);
/// `-v` enables info, `-vv` debug. Thread-safe.

#include <string>

#include "cubeflow/node.hpp"

namespace cubeflow {

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
inline bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= static_cast<int>(GetLogLevel()); }
/// Writes "cubeflow: [who] message" (who may be empty).
void Log(LogLevel level, const std::string& who, const std::string& message);

}  // namespace cubeflow
