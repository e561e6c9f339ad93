// Axis tick generation and number formatting.
#include "cubeflow/plot/ticks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace cubeflow::plot {

namespace {

int StepDecimals(double step) {
  if (!(step > 0) || !std::isfinite(step)) return 0;
  for (int d = 0; d <= 12; ++d) {
    const double s = step * std::pow(10.0, d);
    if (std::fabs(s - std::round(s)) < 1e-6 * std::max(1.0, s)) return d;
  }
  return 12;
}

std::string Trimmed(std::string s) {
  if (s.find('.') != std::string::npos && s.find('e') == std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

/// "1.5e+07" -> "1.5×10^{7}".
std::string PrettyExponent(const std::string& s) {
  const size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = Trimmed(s.substr(0, e));
  const int exp = std::atoi(s.c_str() + e + 1);
  const std::string pow = "10^{" + std::to_string(exp) + "}";
  if (mant == "1") return pow;
  if (mant == "-1") return "-" + pow;
  return mant + "\u00d7" + pow;
}

double SnapToStep(double v, double step) { return std::round(v / step) * step; }

}  // namespace

double NiceStep(double span, int target) {
  if (!(span > 0) || !std::isfinite(span)) return 1.0;
  target = std::max(1, target);
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  for (double c : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (norm <= c * (1 + 1e-9)) return c * mag;
  return 10.0 * mag;
}

std::string FormatNumber(double v, int sig) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  if (v == 0) return "0";
  char buf[64];
  const double a = std::fabs(v);
  if (a >= 1e-3 && a < 1e5) {
    const int digits = static_cast<int>(std::floor(std::log10(a)));
    const int dec = std::max(0, sig - 1 - digits);
    std::snprintf(buf, sizeof buf, "%.*f", dec, v);
    return Trimmed(buf);
  }
  std::snprintf(buf, sizeof buf, "%.*e", std::max(0, sig - 1), v);
  return PrettyExponent(buf);
}

std::string FormatTick(double v, double step) {
  if (!std::isfinite(v)) return FormatNumber(v);
  if (!(step > 0)) return FormatNumber(v);
  if (std::fabs(v) < step * 1e-6) return "0";
  const double big = std::max(std::fabs(v), step);
  if (big >= 1e6 || step < 1e-4) {
    const int exp = static_cast<int>(std::floor(std::log10(big)));
    const double scale = std::pow(10.0, exp);
    const int dec = StepDecimals(step / scale);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", std::min(dec, 6), v / scale);
    std::string m = Trimmed(buf);
    if (m == "1") return "10^{" + std::to_string(exp) + "}";
    return m + "\u00d710^{" + std::to_string(exp) + "}";
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", StepDecimals(step), SnapToStep(v, step));
  std::string s = buf;
  if (s.find_first_not_of("-0.") == std::string::npos) return "0";
  return s;
}

Ticks LinearTicks(double lo, double hi, int max_ticks) {
  Ticks t;
  if (!std::isfinite(lo) || !std::isfinite(hi)) return t;
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {
    const double d = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  max_ticks = std::max(2, max_ticks);
  const double span = hi - lo;
  const double eps = span * 1e-9;
  double step = 0;
  long long k0 = 0, k1 = -1;
  for (int target = max_ticks; target >= 1; --target) {
    step = NiceStep(span, target);
    k0 = static_cast<long long>(std::ceil((lo - eps) / step));
    k1 = static_cast<long long>(std::floor((hi + eps) / step));
    if (k1 - k0 + 1 <= max_ticks) break;
  }
  t.step = step;
  for (long long k = k0; k <= k1; ++k) {
    double v = static_cast<double>(k) * step;
    if (std::fabs(v) < step * 1e-9) v = 0;
    t.major.push_back(v);
    t.labels.push_back(FormatTick(v, step));
  }
  const double m = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  const int nsub = (std::fabs(m - 2.0) < 1e-6) ? 4 : 5;
  const double ms = step / nsub;
  const long long j0 = static_cast<long long>(std::ceil((lo - eps) / ms));
  const long long j1 = static_cast<long long>(std::floor((hi + eps) / ms));
  for (long long j = j0; j <= j1 && j - j0 < 2000; ++j)
    if (j % nsub != 0) t.minor.push_back(static_cast<double>(j) * ms);
  return t;
}

Ticks LogTicks(double lo, double hi, int max_ticks) {
  Ticks t;
  if (hi < lo) std::swap(lo, hi);
  if (!(lo > 0) || !std::isfinite(hi)) return t;
  max_ticks = std::max(2, max_ticks);
  const double llo = std::log10(lo) - 1e-9, lhi = std::log10(hi) + 1e-9;
  const int d0 = static_cast<int>(std::floor(llo)), d1 = static_cast<int>(std::ceil(lhi));
  std::vector<int> decades;
  for (int d = d0; d <= d1; ++d)
    if (d >= llo && d <= lhi) decades.push_back(d);
  auto decade_label = [](int d) {
    if (d >= -3 && d <= 4) return FormatNumber(std::pow(10.0, d), 1);
    return "10^{" + std::to_string(d) + "}";
  };
  if (decades.size() >= 2) {
    const size_t every = (decades.size() + static_cast<size_t>(max_ticks) - 1) / static_cast<size_t>(max_ticks);
    for (size_t i = 0; i < decades.size(); ++i) {
      const double v = std::pow(10.0, decades[i]);
      if (i % every == 0) {
        t.major.push_back(v);
        t.labels.push_back(decade_label(decades[i]));
      } else {
        t.minor.push_back(v);
      }
    }
    if (d1 - d0 <= 8)
      for (int d = d0; d <= d1; ++d)
        for (int m = 2; m <= 9; ++m) {
          const double v = m * std::pow(10.0, d);
          if (std::log10(v) >= llo && std::log10(v) <= lhi) t.minor.push_back(v);
        }
    return t;
  }
  // Less than about a decade: 1, 2, 5 multiples.
  for (int d = d0; d <= d1; ++d)
    for (int m : {1, 2, 5}) {
      const double v = m * std::pow(10.0, d);
      if (std::log10(v) >= llo && std::log10(v) <= lhi) {
        t.major.push_back(v);
        t.labels.push_back(FormatNumber(v, 1));
      }
    }
  if (t.major.size() < 2 || static_cast<int>(t.major.size()) > max_ticks) {
    Ticks lin = LinearTicks(lo, hi, max_ticks);
    lin.minor.clear();
    return lin;
  }
  for (int d = d0; d <= d1; ++d)
    for (int m = 2; m <= 9; ++m) {
      if (m == 2 || m == 5) continue;
      const double v = m * std::pow(10.0, d);
      if (std::log10(v) >= llo && std::log10(v) <= lhi) t.minor.push_back(v);
    }
  return t;
}

std::vector<std::string> SexagesimalFields(double deg, bool is_ra, int fields, int decimals) {
  double v = is_ra ? std::fmod(std::fmod(deg, 360.0) + 360.0, 360.0) / 15.0 : deg;
  const bool neg = !is_ra && v < 0;
  v = std::fabs(v);
  // Work in integer units of the last field to avoid 60-rollover rounding.
  const double unit = std::pow(60.0, fields - 1) * std::pow(10.0, decimals);
  long long total = std::llround(v * unit);
  if (is_ra) total %= std::llround(24.0 * unit);
  const long long per_last = std::llround(std::pow(10.0, decimals));
  std::vector<long long> f(static_cast<size_t>(fields));
  long long rest = total;
  if (fields == 1) {
    f[0] = rest;
  } else {
    f[static_cast<size_t>(fields - 1)] = rest % (60 * per_last);
    rest /= 60 * per_last;
    if (fields == 3) {
      f[1] = rest % 60;
      rest /= 60;
    }
    f[0] = rest;
  }
  const char* units_ra[] = {"^{h}", "^{m}", "^{s}"};
  const char* units_dec[] = {"\u00b0", "\u2032", "\u2033"};
  std::vector<std::string> out;
  char buf[64];
  for (int i = 0; i < fields; ++i) {
    const long long val = f[static_cast<size_t>(i)];
    const bool is_last = i == fields - 1;
    std::string s;
    if (is_last && decimals > 0 && fields > 1) {
      std::snprintf(buf, sizeof buf, "%02lld.%0*lld", val / per_last, decimals, val % per_last);
      s = buf;
    } else if (is_last && decimals > 0) {
      std::snprintf(buf, sizeof buf, "%lld.%0*lld", val / per_last, decimals, val % per_last);
      s = buf;
    } else {
      std::snprintf(buf, sizeof buf, "%02lld", val);
      s = buf;
    }
    if (i == 0 && !is_ra) s = (neg && total != 0 ? "-" : "+") + s;
    s += (is_ra ? units_ra : units_dec)[i];
    out.push_back(s);
  }
  return out;
}

namespace {

struct SexStep {
  double seconds;  // step in seconds (of time for RA, of arc for Dec)
  int fields;
  int decimals;
};

const std::vector<SexStep>& SexSteps() {
  static const std::vector<SexStep> s = {
      {0.01, 3, 2}, {0.02, 3, 2}, {0.05, 3, 2}, {0.1, 3, 1},   {0.2, 3, 1},   {0.5, 3, 1},   {1, 3, 0},
      {2, 3, 0},    {5, 3, 0},    {10, 3, 0},   {15, 3, 0},    {20, 3, 0},    {30, 3, 0},    {60, 2, 0},
      {120, 2, 0},  {300, 2, 0},  {600, 2, 0},  {900, 2, 0},   {1200, 2, 0},  {1800, 2, 0},  {3600, 1, 0},
      {7200, 1, 0}, {10800, 1, 0}, {18000, 1, 0}, {36000, 1, 0}, {72000, 1, 0}, {108000, 1, 0}};
  return s;
}

}  // namespace

std::string FormatSexagesimal(double deg, bool is_ra, int fields, int decimals, int drop_leading) {
  const auto f = SexagesimalFields(deg, is_ra, std::clamp(fields, 1, 3), std::clamp(decimals, 0, 6));
  std::string s;
  for (size_t i = static_cast<size_t>(std::max(0, drop_leading)); i < f.size(); ++i) s += f[i];
  return s;
}

Ticks SkyTicks(double lo, double hi, bool is_ra, SkyFormat format, int max_ticks) {
  if (hi < lo) std::swap(lo, hi);
  max_ticks = std::max(2, max_ticks);
  if (format == SkyFormat::kDegrees) {
    Ticks t = LinearTicks(lo, hi, max_ticks);
    for (size_t i = 0; i < t.major.size(); ++i) {
      double v = t.major[i];
      if (is_ra) v = std::fmod(std::fmod(v, 360.0) + 360.0, 360.0);
      t.labels[i] = FormatTick(v, t.step) + "\u00b0";
    }
    return t;
  }
  // Work in seconds of time (RA) or arc (Dec).
  const double f = is_ra ? 240.0 : 3600.0;
  const double a = lo * f, b = hi * f;
  Ticks t;
  const SexStep* chosen = &SexSteps().back();
  for (const auto& s : SexSteps()) {
    const double n = std::floor(b / s.seconds + 1e-9) - std::ceil(a / s.seconds - 1e-9) + 1;
    if (n <= max_ticks) {
      chosen = &s;
      break;
    }
  }
  t.step = chosen->seconds / f;
  t.sex_fields = chosen->fields;
  t.sex_decimals = chosen->decimals;
  const long long k0 = static_cast<long long>(std::ceil(a / chosen->seconds - 1e-9));
  const long long k1 = static_cast<long long>(std::floor(b / chosen->seconds + 1e-9));
  for (long long k = k0; k <= k1; ++k) {
    const double v = static_cast<double>(k) * chosen->seconds / f;
    t.major.push_back(v);
    t.labels.push_back(FormatSexagesimal(v, is_ra, chosen->fields, chosen->decimals));
  }
  // Minor ticks: 5 per step, 4 for 2 x 10^k, 3 for 15 / 30 style steps.
  const double first_digit = chosen->seconds / std::pow(10.0, std::floor(std::log10(chosen->seconds) + 1e-9));
  int nsub = 5;
  if (std::fabs(first_digit - 2) < 1e-6) nsub = 4;
  if (std::fabs(first_digit - 1.5) < 1e-6 || std::fabs(first_digit - 3) < 1e-6) nsub = 3;
  const double ms = chosen->seconds / nsub;
  const long long j0 = static_cast<long long>(std::ceil(a / ms - 1e-9));
  const long long j1 = static_cast<long long>(std::floor(b / ms + 1e-9));
  for (long long j = j0; j <= j1 && j - j0 < 2000; ++j)
    if (j % nsub != 0) t.minor.push_back(static_cast<double>(j) * ms / f);
  return t;
}

}  // namespace cubeflow::plot
