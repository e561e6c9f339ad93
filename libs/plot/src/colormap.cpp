// Colormaps and value normalisation.
#include "cubeflow/plot/colormap.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cubeflow::plot {

namespace {

std::vector<Rgb> Hexes(std::initializer_list<uint32_t> v) {
  std::vector<Rgb> out;
  for (uint32_t h : v) out.push_back(Rgb::Hex(h));
  return out;
}

// Control points sampled evenly from the published maps: viridis, magma and plasma (van der
// Walt & Smith, matplotlib), coolwarm (Moreland 2009), RdBu (ColorBrewer, Brewer 2002).
std::vector<Rgb> Points(const std::string& base) {
  if (base == "viridis")
    return Hexes({0x440154, 0x482878, 0x3e4989, 0x31688e, 0x26828e, 0x1f9e89, 0x35b779, 0x6ece58, 0xb5de2b, 0xfde725});
  if (base == "magma")
    return Hexes({0x000004, 0x180f3d, 0x440f76, 0x721f81, 0x9e2f7f, 0xcd4071, 0xf1605d, 0xfd9668, 0xfeca8d, 0xfcfdbf});
  if (base == "plasma")
    return Hexes({0x0d0887, 0x46039f, 0x7201a8, 0x9c179e, 0xbd3786, 0xd8576b, 0xed7953, 0xfb9f3a, 0xfdca26, 0xf0f921});
  if (base == "coolwarm")
    return Hexes({0x3b4cc0, 0x6282ea, 0x8db0fe, 0xb8d0f9, 0xdddcdc, 0xf5c4ad, 0xf49a7b, 0xdb5f4a, 0xb40426});
  if (base == "rdbu")
    return Hexes({0x67001f, 0xb2182b, 0xd6604d, 0xf4a582, 0xfddbc7, 0xf7f7f7, 0xd1e5f0, 0x92c5de, 0x4393c3, 0x2166ac,
                  0x053061});
  if (base == "grey" || base == "gray") return Hexes({0x000000, 0xffffff});
  return {};
}

}  // namespace

Colormap::Colormap(std::string name, std::vector<Rgb> points, Rgb nan_color)
    : name_(std::move(name)), points_(std::move(points)), nan_(nan_color) {
  if (points_.empty()) points_ = {colors::kBlack, colors::kWhite};
  if (points_.size() == 1) points_.push_back(points_.front());
}

std::vector<std::string> Colormap::Names() { return {"viridis", "magma", "plasma", "coolwarm", "rdbu", "grey"}; }

Result<Colormap> Colormap::Named(const std::string& name) {
  std::string base = name;
  for (auto& c : base) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  bool reversed = false;
  if (base.size() > 2 && base.compare(base.size() - 2, 2, "_r") == 0) {
    reversed = true;
    base.resize(base.size() - 2);
  }
  std::vector<Rgb> pts = Points(base);
  if (pts.empty()) {
    std::string all;
    for (const auto& n : Names()) all += (all.empty() ? "" : ", ") + n;
    return Status::Error("unknown colormap '" + name + "'; known: " + all + " (add _r to reverse)");
  }
  Colormap m(name, std::move(pts));
  return reversed ? m.Reversed() : m;
}

Colormap Colormap::Reversed() const {
  std::vector<Rgb> p(points_.rbegin(), points_.rend());
  std::string n = name_;
  if (n.size() > 2 && n.compare(n.size() - 2, 2, "_r") == 0) n.resize(n.size() - 2);
  else n += "_r";
  return Colormap(n, std::move(p), nan_);
}

Rgb Colormap::At(double t) const {
  if (std::isnan(t)) return nan_;
  t = std::clamp(t, 0.0, 1.0);
  const double f = t * static_cast<double>(points_.size() - 1);
  const size_t i = std::min(points_.size() - 2, static_cast<size_t>(f));
  return points_[i].Mix(points_[i + 1], f - static_cast<double>(i));
}

double Norm::operator()(double v) const {
  if (!std::isfinite(v)) return std::numeric_limits<double>::quiet_NaN();
  double a = vmin, b = vmax, x = v;
  switch (scale) {
    case Scale::kLinear: break;
    case Scale::kLog:
      if (v <= 0) return std::numeric_limits<double>::quiet_NaN();
      a = std::log10(std::max(vmin, 1e-300));
      b = std::log10(std::max(vmax, 1e-300));
      x = std::log10(v);
      break;
    case Scale::kAsinh: {
      const double w = asinh_width > 0 ? asinh_width : std::max(1e-300, (vmax - vmin) / 20.0);
      a = std::asinh(vmin / w);
      b = std::asinh(vmax / w);
      x = std::asinh(v / w);
      break;
    }
  }
  if (!(b != a)) return 0.5;
  return std::clamp((x - a) / (b - a), 0.0, 1.0);
}

double Norm::Inverse(double t) const {
  switch (scale) {
    case Scale::kLinear: return vmin + t * (vmax - vmin);
    case Scale::kLog: {
      const double a = std::log10(std::max(vmin, 1e-300)), b = std::log10(std::max(vmax, 1e-300));
      return std::pow(10.0, a + t * (b - a));
    }
    case Scale::kAsinh: {
      const double w = asinh_width > 0 ? asinh_width : std::max(1e-300, (vmax - vmin) / 20.0);
      const double a = std::asinh(vmin / w), b = std::asinh(vmax / w);
      return w * std::sinh(a + t * (b - a));
    }
  }
  return vmin;
}

double Percentile(std::vector<double> v, double q) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double pos = std::clamp(q, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  if (i + 1 >= v.size()) return v.back();
  return v[i] + (pos - static_cast<double>(i)) * (v[i + 1] - v[i]);
}

}  // namespace cubeflow::plot
