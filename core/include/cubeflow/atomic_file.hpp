#pragma once
/// \file atomic_file.hpp
/// \brief Writing a whole file atomically: readers see the old file or the new one, never a
/// partial one, and a failed write leaves the old file in place.

#include <string>
#include <string_view>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow {

/// Writes `bytes` to a temporary file beside `path` (`path.tmp-<pid>`), flushes it to disk and
/// renames it over `path`. On failure the temporary file is removed and the error names `path`,
/// the step that failed and the system's reason. The directory must exist.
Status WriteFileAtomic(const std::string& path, std::string_view bytes);

/// Temporary files that writers keep beside a product while they write it
/// (`<path>.tmp-<pid>`, `<path>.part-<pid>`, `<path>.scratch-<pid>-<n>`) and that a killed run
/// (SIGKILL, power loss) leaves behind. Removes those whose process no longer exists and returns
/// their paths, so the caller can say what it cleaned; files of a live process are left alone.
std::vector<std::string> RemoveStaleTemporaries(const std::string& path);

}  // namespace cubeflow
