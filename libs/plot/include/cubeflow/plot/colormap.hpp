#pragma once
/// \file colormap.hpp
/// \brief Colormaps built from a few control points (linear interpolation in sRGB), a colour
/// for NaN, and value normalisation (linear, log, asinh).

#include <string>
#include <vector>

#include "cubeflow/plot/canvas.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::plot {

class Colormap {
 public:
  /// Evenly spaced control points from t = 0 to t = 1 (at least 2).
  Colormap(std::string name, std::vector<Rgb> points, Rgb nan_color = kDefaultNan);

  /// A named map: "viridis", "magma", "plasma", "coolwarm", "rdbu" (red at 0, blue at 1),
  /// "grey"/"gray" (black to white); a "_r" suffix reverses any of them.
  static Result<Colormap> Named(const std::string& name);
  static std::vector<std::string> Names();

  /// Colour at t in [0, 1] (clamped); NaN gives nan_color().
  Rgb At(double t) const;
  const std::string& name() const { return name_; }
  Rgb nan_color() const { return nan_; }
  void set_nan_color(Rgb c) { nan_ = c; }
  Colormap Reversed() const;

  /// Neutral grey used for undefined / masked pixels (not contained in any built-in map).
  static constexpr Rgb kDefaultNan{190, 190, 190};

 private:
  std::string name_;
  std::vector<Rgb> points_;
  Rgb nan_;
};

/// \brief Maps data values to [0, 1].
struct Norm {
  enum class Scale { kLinear, kLog, kAsinh };
  double vmin = 0, vmax = 1;
  Scale scale = Scale::kLinear;
  double asinh_width = 0;  ///< kAsinh: linear below about this value (0: (vmax - vmin) / 20)
  /// t in [0, 1] (clamped; NaN for NaN input, and for values <= 0 with kLog).
  double operator()(double v) const;
  /// Inverse of operator() for t in [0, 1].
  double Inverse(double t) const;
};

/// Percentile of the finite values of `v` (q in [0, 100], linear interpolation); NaN if none.
double Percentile(std::vector<double> v, double q);

}  // namespace cubeflow::plot
