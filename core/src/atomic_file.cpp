// WriteFileAtomic: temporary file + fsync + rename (cubeflow/atomic_file.hpp).
#include "cubeflow/atomic_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cubeflow {

Status WriteFileAtomic(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
  std::FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp)
    return Status::Error("cannot write '" + path + "': cannot create '" + tmp + "': " + std::strerror(errno) +
                         "; check that the directory exists and is writable");
  const size_t put = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), fp);
  const bool flushed = std::fflush(fp) == 0 && ::fsync(::fileno(fp)) == 0;
  const int err = errno;
  const bool closed = std::fclose(fp) == 0;
  if (put != bytes.size() || !flushed || !closed) {
    ::unlink(tmp.c_str());
    return Status::Error("cannot write '" + path + "': writing '" + tmp + "' failed: " + std::strerror(err) +
                         " (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string e = std::strerror(errno);
    ::unlink(tmp.c_str());
    return Status::Error("cannot write '" + path + "': rename from '" + tmp + "' failed: " + e);
  }
  return Status::OK();
}

}  // namespace cubeflow
