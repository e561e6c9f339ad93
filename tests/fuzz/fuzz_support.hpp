#pragma once
// Shared helpers of the libFuzzer targets in tests/fuzz (see README.md there).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace cubeflow::fuzz {

/// The input bytes as a file that the readers open by path, exactly as they open a file on disk:
/// an in-memory file (memfd) reached through /proc/self/fd/N. One file per process, rewritten for
/// every input (no disk traffic, nothing left behind).
inline std::string AsFile(const uint8_t* data, size_t size) {
  static const int fd = [] {
    const int f = ::memfd_create("cubeflow-fuzz-input", 0);
    if (f < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    return f;
  }();
  if (::ftruncate(fd, 0) != 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

/// A fresh private directory, in memory (/dev/shm) where there is one: the targets that read
/// files by path write each input there, and a disk would make syncing writes the bottleneck.
/// Removed at exit.
inline std::string MakeTempDir() {
  static std::vector<std::string> dirs;
  std::string tmpl = std::string(::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/cubeflow-fuzz-XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    std::abort();
  }
  if (dirs.empty())
    std::atexit([] {
      for (const auto& d : dirs) {
        std::error_code ec;
        std::filesystem::remove_all(d, ec);
      }
    });
  dirs.push_back(tmpl);
  return tmpl;
}

/// The input bytes as text.
inline std::string AsText(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace cubeflow::fuzz
