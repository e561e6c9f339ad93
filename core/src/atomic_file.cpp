// WriteFileAtomic: temporary file + fsync + rename (cubeflow/atomic_file.hpp).
#include "cubeflow/atomic_file.hpp"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>

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

std::vector<std::string> RemoveStaleTemporaries(const std::string& path) {
  namespace fs = std::filesystem;
  std::vector<std::string> removed;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string base = target.filename().string();
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= base.size() + 1 || name.compare(0, base.size() + 1, base + ".") != 0) continue;
    const std::string rest = name.substr(base.size() + 1);  // "tmp-123", "part-123", "scratch-123-4"
    std::string digits;
    for (const char* prefix : {"tmp-", "part-", "scratch-"}) {
      const std::string pre(prefix);
      if (rest.compare(0, pre.size(), pre) != 0) continue;
      size_t i = pre.size();
      while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) digits += rest[i++];
      if (i != rest.size() && !(pre == "scratch-" && rest[i] == '-')) digits.clear();
      break;
    }
    if (digits.empty() || digits.size() > 9) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM)) continue;  // its writer is alive
    std::error_code rm;
    if (fs::remove(it->path(), rm)) removed.push_back(it->path().string());
  }
  return removed;
}

}  // namespace cubeflow
