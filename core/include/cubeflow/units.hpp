#pragma once
/// \file units.hpp
/// \brief Flux-density units of cubes and images (FITS BUNIT strings).

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

namespace cubeflow {

/// Factor converting a flux density in `bunit` to erg/s/cm^2/Angstrom, for the forms MUSE and
/// HST products use: "10**(-20)*erg/s/cm**2/Angstrom", "1e-20 erg/s/cm2/A",
/// "10^-20 erg s-1 cm-2 AA-1", "erg/s/cm^2/A", "erg.s**(-1).cm**(-2).angstrom**(-1)".
/// Returns NaN (and an explanation in `why`, if given) for anything else, e.g. an empty string,
/// per-Hz units or counts.
inline double FluxDensityScale(const std::string& bunit, std::string* why = nullptr) {
  std::string s;
  for (char c : bunit)
    if (!std::isspace(static_cast<unsigned char>(c))) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto fail = [&](const std::string& m) {
    if (why) *why = "unit '" + bunit + "' " + m;
    return std::nan("");
  };
  if (s.empty()) return fail("is empty");
  double scale = 1.0;
  size_t pos = 0;
  if (s.rfind("10**", 0) == 0 || s.rfind("10^", 0) == 0) {
    pos = s[2] == '*' ? 4 : 3;
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
  } else if (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.') {
    char* end = nullptr;
    scale = std::strtod(s.c_str(), &end);
    pos = static_cast<size_t>(end - s.c_str());
  }
  if (pos < s.size() && (s[pos] == '*' || s[pos] == '.')) ++pos;
  const std::string rest = s.substr(pos);
  if (!(scale > 0) || !std::isfinite(scale)) return fail("has a non-positive scale factor");
  const bool erg = rest.rfind("erg", 0) == 0;
  const bool per_angstrom = rest.find("angstrom") != std::string::npos || rest.find("aa") != std::string::npos ||
                            (rest.size() >= 2 && rest.substr(rest.size() - 2) == "/a") ||
                            (rest.size() >= 3 && rest.substr(rest.size() - 3) == "a-1") ||
                            rest.find("a**(-1)") != std::string::npos || rest.find("a**-1") != std::string::npos;
  const bool per_cm2 = rest.find("cm") != std::string::npos;
  if (!erg || !per_angstrom || !per_cm2 || rest.find("hz") != std::string::npos)
    return fail("is not a flux density in (a multiple of) erg/s/cm2/Angstrom");
  return scale;
}

}  // namespace cubeflow
