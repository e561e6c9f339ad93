#pragma once
// Helpers for tests/libs/plot: the independent PNG check with /usr/bin/python3 (temp dirs and
// WCS cards come from tests/support).
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mock_maps.hpp"

namespace plottest {

using cftest::TempDir;

inline bool HavePython() { return ::access("/usr/bin/python3", X_OK) == 0; }

inline cubeflow::CelestialWcs TestWcs(int64_t nx, int64_t ny, double rot_deg) { return MockWcs(nx, ny, rot_deg); }

/// Runs a command, returns its exit status and captures stdout + stderr.
inline int Run(const std::string& cmd, std::string& out) {
  out.clear();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = ::pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/// What png_check.py reported.
struct PngReport {
  bool ok = false;  // the script ran and printed JSON
  std::string raw;
  bool crc_ok = false;
  int width = 0, height = 0, bit_depth = 0, colour_type = -1;
  std::vector<std::array<int, 3>> pure, mpl;
  bool have_mpl = false;
};

inline std::vector<std::array<int, 3>> ParseTriples(const std::string& json, const std::string& key) {
  std::vector<std::array<int, 3>> out;
  const size_t k = json.find("\"" + key + "\": [");
  if (k == std::string::npos) return out;
  const size_t end = json.find("]]", k);
  const std::string body = json.substr(k, end == std::string::npos ? std::string::npos : end - k + 2);
  static const std::regex tri(R"(\[(\d+), (\d+), (\d+)\])");
  for (auto it = std::sregex_iterator(body.begin(), body.end(), tri); it != std::sregex_iterator(); ++it)
    out.push_back({std::stoi((*it)[1]), std::stoi((*it)[2]), std::stoi((*it)[3])});
  return out;
}

inline int ParseInt(const std::string& json, const std::string& key) {
  std::smatch m;
  if (std::regex_search(json, m, std::regex("\"" + key + "\": (\\d+)"))) return std::stoi(m[1]);
  return -1;
}

/// Runs tests/plot/png_check.py on a PNG (pixel positions are x, y from the top-left).
inline PngReport PngCheck(const std::string& path, const std::vector<std::pair<int, int>>& points, bool pure,
                          bool mpl) {
  std::string cmd = std::string("/usr/bin/python3 ") + CUBEFLOW_PLOT_TEST_DIR + "/png_check.py";
  if (pure) cmd += " --pure";
  if (mpl) cmd += " --mpl";
  cmd += " '" + path + "'";
  for (const auto& [x, y] : points) cmd += " " + std::to_string(x) + "," + std::to_string(y);
  PngReport r;
  const int rc = Run(cmd, r.raw);
  if (rc != 0 || r.raw.find('{') == std::string::npos) return r;
  r.ok = true;
  r.crc_ok = r.raw.find("\"crc_ok\": true") != std::string::npos;
  r.width = ParseInt(r.raw, "width");
  r.height = ParseInt(r.raw, "height");
  r.bit_depth = ParseInt(r.raw, "bit_depth");
  r.colour_type = ParseInt(r.raw, "colour_type");
  r.pure = ParseTriples(r.raw, "pure");
  r.have_mpl = mpl && r.raw.find("\"mpl\": null") == std::string::npos && r.raw.find("\"mpl\":") != std::string::npos;
  if (r.have_mpl) r.mpl = ParseTriples(r.raw, "mpl");
  return r;
}

}  // namespace plottest
