#pragma once
/// \file atomic_file.hpp
/// \brief Writing a whole file atomically: readers see the old file or the new one, never a
/// partial one, and a failed write leaves the old file in place.

#include <string>
#include <string_view>

#include "cubeflow/status.hpp"

namespace cubeflow {

/// Writes `bytes` to a temporary file beside `path` (`path.tmp-<pid>`), flushes it to disk and
/// renames it over `path`. On failure the temporary file is removed and the error names `path`,
/// the step that failed and the system's reason. The directory must exist.
Status WriteFileAtomic(const std::string& path, std::string_view bytes);

}  // namespace cubeflow
