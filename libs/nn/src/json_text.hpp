#pragma once
// Internal (not installed): JSON values for the --json output of `cubeflow evaluate`.

#include <cmath>
#include <cstdio>
#include <string>

namespace cubeflow::nn {

/// A JSON string literal (quotes, backslashes and control characters escaped).
inline std::string JsonString(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o + "\"";
}

/// A JSON number with 6 significant digits; null when not finite.
inline std::string JsonNum(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

}  // namespace cubeflow::nn
