#pragma once
/// \file ticks.hpp
/// \brief Axis ticks: "nice" linear steps (1, 2, 2.5, 5 x 10^k), log decades, and sky
/// coordinates (RA in hours / Dec in degrees, sexagesimal or decimal degrees).

#include <string>
#include <vector>

namespace cubeflow::plot {

struct Ticks {
  std::vector<double> major;          ///< positions of labelled ticks (data units)
  std::vector<std::string> labels;    ///< one per major tick (may use ^{} markup)
  std::vector<double> minor;          ///< unlabelled ticks
  double step = 0;                    ///< linear: major step
  int sex_fields = 0;                 ///< SkyTicks, sexagesimal: fields per label (1..3)
  int sex_decimals = 0;               ///< SkyTicks, sexagesimal: decimals of the last field
};

/// Nice step for a range of `span` split into about `target` intervals: 1, 2, 2.5 or 5 x 10^k.
double NiceStep(double span, int target);

/// Labelled ticks in [lo, hi] with at most `max_ticks` majors (at least 2 when the range
/// allows) and 4 or 5 minor ticks per major interval.
Ticks LinearTicks(double lo, double hi, int max_ticks);

/// Log-axis ticks in [lo, hi] (lo > 0): decades labelled (0.01, 0.1, 1, 10 or 10^{k}),
/// 2..9 as minors; over less than about one decade also 2 and 5 (or the linear ticks).
Ticks LogTicks(double lo, double hi, int max_ticks);

/// Formats v with the number of decimals the step needs ("0" for values within step/1e6 of
/// zero; x10^{k} notation for very large or small steps).
std::string FormatTick(double v, double step);

/// Formats a value with `sig` significant digits, trimmed ("0.0312", "1.2e+05" -> "1.2×10^{5}").
std::string FormatNumber(double v, int sig = 3);

/// \brief How sky coordinates are labelled.
enum class SkyFormat {
  kSexagesimal,  ///< RA 11^{h}20^{m}15^{s}, Dec +12°59′30″ (later labels drop unchanged fields)
  kDegrees,      ///< decimal degrees
};

/// \brief Ticks of one sky coordinate (RA or Dec, in degrees) between two values. Chooses a
/// step that suits the format (RA: time seconds/minutes/hours; Dec: arcsec/arcmin/degrees).
/// `lo` and `hi` may wrap around 360 for RA (give hi > lo, unwrapped). Labels are in the
/// order of the positions.
Ticks SkyTicks(double lo, double hi, bool is_ra, SkyFormat format, int max_ticks);

/// The fields of a sexagesimal label ({"11^{h}", "20^{m}", "15^{s}"} or {"-27°", "46′", "30″"}),
/// rounded to `decimals` on the last of `fields` fields; RA is wrapped into [0, 24h).
std::vector<std::string> SexagesimalFields(double deg, bool is_ra, int fields, int decimals);

/// Sexagesimal label of one sky coordinate with `decimals` on the last field; `fields` = 3
/// (h m s / ° ′ ″), 2 (h m / ° ′) or 1 (h / °). `drop_leading` omits the first `drop_leading`
/// fields (for compact successive labels).
std::string FormatSexagesimal(double deg, bool is_ra, int fields, int decimals, int drop_leading = 0);

}  // namespace cubeflow::plot
