#include "cubeflow/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

#include <unistd.h>

namespace cubeflow {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kWarn)};
std::mutex g_mutex;
}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

void Log(LogLevel level, const std::string& who, const std::string& message) {
  if (!LogEnabled(level)) return;
  const char* tag = level == LogLevel::kError ? "error: " : level == LogLevel::kWarn ? "warning: " : "";
  std::lock_guard<std::mutex> lock(g_mutex);
  // Clear a progress line that may be on the terminal.
  static const bool kTty = isatty(2) != 0;
  if (kTty) std::fprintf(stderr, "\r\033[K");
  if (who.empty())
    std::fprintf(stderr, "cubeflow: %s%s\n", tag, message.c_str());
  else
    std::fprintf(stderr, "cubeflow: [%s] %s%s\n", who.c_str(), tag, message.c_str());
  std::fflush(stderr);
}

}  // namespace cubeflow
