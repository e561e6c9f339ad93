#pragma once
/// \file strings.hpp
/// \brief Small string helpers used across cubeflow (messages, FITS keywords, YAML values).
///
/// One implementation each, for the runtime, the libraries and the plugins alike.

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

namespace cubeflow {

/// ASCII upper case ("bunit" -> "BUNIT").
inline std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
/// ASCII lower case.
inline std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
/// Without leading and trailing white space.
inline std::string Trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}
/// The elements separated by `sep`; `empty` if there are none.
inline std::string Join(const std::vector<std::string>& v, const std::string& sep = ", ",
                        const std::string& empty = "") {
  if (v.empty()) return empty;
  std::string s = v.front();
  for (size_t i = 1; i < v.size(); ++i) s += sep + v[i];
  return s;
}
/// A number for a message: the shortest of %g with `digits` significant digits (default 6).
inline std::string Num(double v, int digits = 6) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

}  // namespace cubeflow
