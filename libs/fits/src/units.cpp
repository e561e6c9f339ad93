// FluxDensityScale: BUNIT strings of cubes and images (cubeflow/fits/units.hpp).
#include "cubeflow/fits/units.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>

namespace cubeflow::fits {

Result<double> FluxDensityScale(const std::string& bunit) {
  std::string s;
  for (char c : bunit) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto fail = [&](const std::string& m) {
    return Status::Error("unit '" + bunit + "' " + m +
                         "; expected a flux density such as '10**(-20)*erg/s/cm**2/Angstrom'");
  };
  size_t pos = 0;
  auto skip_blanks = [&] {
    while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
  };
  skip_blanks();
  if (pos == s.size()) return fail("is empty");
  // --- leading scale factor: 10**(-20), 10**-20, 10^-20, 1e-20 ---------------------------
  double scale = 1.0;
  if (s.compare(pos, 4, "10**") == 0 || s.compare(pos, 3, "10^") == 0) {
    pos += s[pos + 2] == '*' ? 4 : 3;
    const bool paren = pos < s.size() && s[pos] == '(';
    if (paren) ++pos;
    char* end = nullptr;
    const double e = std::strtod(s.c_str() + pos, &end);
    if (end == s.c_str() + pos) return fail("has an unreadable power of ten");
    pos = static_cast<size_t>(end - s.c_str());
    if (paren) {
      if (pos >= s.size() || s[pos] != ')') return fail("has an unbalanced parenthesis");
      ++pos;
    }
    scale = std::pow(10.0, e);
  } else if (std::isdigit(static_cast<unsigned char>(s[pos])) || s[pos] == '.') {
    char* end = nullptr;
    scale = std::strtod(s.c_str() + pos, &end);
    pos = static_cast<size_t>(end - s.c_str());
  }
  if (!(scale > 0) || !std::isfinite(scale)) return fail("has a non-positive scale factor");
  // --- unit factors with powers, in any order ------------------------------------------------
  std::map<std::string, double> power;  // canonical unit name -> total power
  bool divide = false;
  while (true) {
    while (pos < s.size() && (std::isspace(static_cast<unsigned char>(s[pos])) || s[pos] == '.' || s[pos] == '*'))
      ++pos;
    if (pos >= s.size()) break;
    if (s[pos] == '/') {
      divide = true;
      ++pos;
      continue;
    }
    const size_t start = pos;
    while (pos < s.size() && std::isalpha(static_cast<unsigned char>(s[pos]))) ++pos;
    if (pos == start) return fail("has an unreadable factor at '" + bunit.substr(start) + "'");
    std::string name = s.substr(start, pos - start);
    if (name == "a" || name == "aa" || name == "ang" || name == "angstroem") name = "angstrom";
    double p = 1.0;
    const bool starred = s.compare(pos, 2, "**") == 0, caret = pos < s.size() && s[pos] == '^';
    if (starred || caret) pos += starred ? 2 : 1;
    const bool paren = (starred || caret) && pos < s.size() && s[pos] == '(';
    if (paren) ++pos;
    if (pos < s.size() && (std::isdigit(static_cast<unsigned char>(s[pos])) || s[pos] == '-' || s[pos] == '+')) {
      char* end = nullptr;
      p = std::strtod(s.c_str() + pos, &end);
      if (end == s.c_str() + pos) return fail("has an unreadable power after '" + name + "'");
      pos = static_cast<size_t>(end - s.c_str());
    } else if (starred || caret) {
      return fail("has an unreadable power after '" + name + "'");
    }
    if (paren) {
      if (pos >= s.size() || s[pos] != ')') return fail("has an unbalanced parenthesis");
      ++pos;
    }
    power[name] += divide ? -p : p;
    divide = false;
  }
  const std::map<std::string, double> want = {{"erg", 1}, {"s", -1}, {"cm", -2}, {"angstrom", -1}};
  bool ok = true;
  for (const auto& [k, v] : power)
    if (v != 0 && (!want.count(k) || want.at(k) != v)) ok = false;
  for (const auto& [k, v] : want)
    if (!power.count(k) || power.at(k) != v) ok = false;
  if (!ok) return fail("is not a flux density in (a multiple of) erg/s/cm2/Angstrom");
  return scale;
}

}  // namespace cubeflow::fits
