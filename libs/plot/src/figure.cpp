// Figures: grid layout, XY panels (lines, steps, bars, error bars, bands, 2-D histograms,
// legends) and image panels (maps with colour bars and sky-coordinate axes).
#include "cubeflow/plot/figure.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>

namespace cubeflow::plot {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TextStyle Txt(const Theme& th, HAlign h, VAlign v, bool vertical = false, bool bold = false, int scale = 0) {
  TextStyle s;
  s.scale = scale > 0 ? scale : th.font_scale;
  s.color = th.foreground;
  s.halign = h;
  s.valign = v;
  s.vertical = vertical;
  s.bold = bold;
  return s;
}

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> out;
  size_t a = 0;
  for (;;) {
    const size_t b = s.find('\n', a);
    out.push_back(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return out;
}

int TextH(const Theme& th, int scale = 0) {
  const int s = scale > 0 ? scale : th.font_scale;
  return 9 * s;  // ascent 7 + descent 2 glyph rows
}

/// Maps data values to pixels along one axis.
struct AxisMap {
  double lo = 0, hi = 1;
  bool log = false;
  double p0 = 0, p1 = 1;  // pixel of lo, of hi
  double T(double v) const { return log ? std::log10(v) : v; }
  double operator()(double v) const {
    if (log && !(v > 0)) return kNaN;
    const double a = T(lo), b = T(hi);
    if (b == a) return (p0 + p1) / 2;
    return p0 + (T(v) - a) / (b - a) * (p1 - p0);
  }
};

Ticks AxisTicks(double lo, double hi, bool log, int max_ticks) {
  return log ? LogTicks(lo, hi, max_ticks) : LinearTicks(lo, hi, max_ticks);
}

/// Chooses ticks whose labels do not overlap along an axis of `length_px` pixels.
/// horizontal: labels side by side (widths matter); otherwise stacked (heights matter).
Ticks FitTicks(double lo, double hi, bool log, int length_px, bool horizontal, const Theme& th,
               const std::function<double(double)>& to_px) {
  const int gap = horizontal ? 3 * th.font_scale * 5 / 2 : th.font_scale * 4;
  int max_ticks = std::clamp(length_px / (horizontal ? 40 : TextH(th) * 2), 2, 10);
  Ticks best;
  for (; max_ticks >= 2; --max_ticks) {
    Ticks t = AxisTicks(lo, hi, log, max_ticks);
    best = t;
    bool ok = true;
    for (size_t i = 1; i < t.major.size() && ok; ++i) {
      const double d = std::fabs(to_px(t.major[i]) - to_px(t.major[i - 1]));
      const double need = horizontal ? (MeasureText(t.labels[i - 1], th.font_scale).width +
                                        MeasureText(t.labels[i], th.font_scale).width) / 2.0 + gap
                                     : TextH(th) + gap;
      if (d < need) ok = false;
    }
    if (ok) return t;
  }
  return best;
}

/// Ticks of an XY axis: the automatic ones, or the axis's explicit ones (kept where they are in
/// range and their labels clear the previous kept label), with the automatic minor ticks.
Ticks AxisFitTicks(const AxisSpec& a, double lo, double hi, int length_px, bool horizontal, const Theme& th,
                   const std::function<double(double)>& to_px) {
  Ticks t = FitTicks(lo, hi, a.log, length_px, horizontal, th, to_px);
  if (a.ticks.empty()) return t;
  std::vector<double> vals = a.ticks;
  std::sort(vals.begin(), vals.end());
  Ticks e;
  e.minor = t.minor;
  e.step = t.step;
  const double mn = std::min(lo, hi), mx = std::max(lo, hi), tol = 1e-9 * (mx - mn);
  double last_px = std::numeric_limits<double>::quiet_NaN(), last_half = 0;
  for (double v : vals) {
    if (!std::isfinite(v) || v < mn - tol || v > mx + tol || (a.log && !(v > 0))) continue;
    const std::string label = FormatNumber(v, 3);
    const double p = to_px(v);
    const double half = horizontal ? MeasureText(label, th.font_scale).width / 2.0 + th.font_scale * 3
                                   : TextH(th) / 2.0 + th.font_scale * 2;
    if (std::isfinite(last_px) && std::fabs(p - last_px) < half + last_half) continue;
    e.major.push_back(v);
    e.labels.push_back(label);
    last_px = p;
    last_half = half;
  }
  // Minor ticks that fall on a labelled tick are dropped.
  e.minor.erase(std::remove_if(e.minor.begin(), e.minor.end(),
                               [&](double m) {
                                 for (double v : e.major)
                                   if (std::fabs(m - v) <= 1e-9 * std::max(1.0, std::fabs(v))) return true;
                                 return false;
                               }),
                e.minor.end());
  return e;
}

int MaxLabelWidth(const std::vector<std::string>& labels, int scale) {
  int w = 0;
  for (const auto& l : labels) w = std::max(w, MeasureText(l, scale).width);
  return w;
}

int LabelsHeight(const std::vector<std::string>& labels, const Theme& th) {
  int h = TextH(th);
  for (const auto& l : labels) h = std::max(h, MeasureText(l, th.font_scale).height());
  return h;
}

/// A vertical colour bar: gradient, frame, ticks and labels on the right, label rotated.
struct ColorbarSpec {
  Colormap cmap = Colormap("grey", {colors::kBlack, colors::kWhite});
  Norm norm;
  std::string label;
};

Ticks ColorbarTicks(const ColorbarSpec& cb, int height, const Theme& th) {
  const bool log = cb.norm.scale == Norm::Scale::kLog;
  const double lo = cb.norm.vmin, hi = cb.norm.vmax;
  auto to_px = [&](double v) { return cb.norm(v) * height; };
  if (cb.norm.scale == Norm::Scale::kAsinh) {
    // Ticks at nice values spread in the stretched coordinate.
    Ticks t = LinearTicks(lo, hi, 6);
    return t;
  }
  return FitTicks(lo, hi, log, height, false, th, to_px);
}

/// Width needed right of the image for a colour bar of the given height.
int ColorbarBand(const ColorbarSpec& cb, int height, const Theme& th) {
  const Ticks t = ColorbarTicks(cb, height, th);
  // At least the width of "-00.00" so panels with different ranges get the same layout.
  const int lw = std::max(MaxLabelWidth(t.labels, th.font_scale), MeasureText("-00.00", th.font_scale).width);
  int w = 2 * th.pad + th.colorbar_width + th.minor_tick_length + th.pad + lw;
  w += 2 * th.pad + MeasureText("Xg", th.font_scale).height();  // the label (reserved even without one)
  return w + th.pad;
}

void DrawColorbar(Canvas& c, const Rect& r, const ColorbarSpec& cb, const Theme& th) {
  for (int row = 0; row < r.h; ++row) {
    const double t = (r.h - row - 0.5) / r.h;
    c.FillRect({r.x, r.y + row, r.w, 1}, cb.cmap.At(t));
  }
  c.StrokeRect(r, th.foreground);
  const Ticks t = ColorbarTicks(cb, r.h, th);
  auto y_of = [&](double v) { return r.bottom() - 1 - cb.norm(v) * (r.h - 1); };
  int label_right = r.right();
  for (double v : t.minor) {
    if (cb.norm.scale == Norm::Scale::kLog && !(v > 0)) continue;
    if (v < std::min(cb.norm.vmin, cb.norm.vmax) || v > std::max(cb.norm.vmin, cb.norm.vmax)) continue;
    const double y = std::round(y_of(v));
    c.Line(r.right(), y, r.right() + th.minor_tick_length / 2, y, th.foreground);
  }
  for (size_t i = 0; i < t.major.size(); ++i) {
    const double v = t.major[i];
    if (v < std::min(cb.norm.vmin, cb.norm.vmax) - 1e-12 * std::fabs(v) ||
        v > std::max(cb.norm.vmin, cb.norm.vmax) + 1e-12 * std::fabs(v))
      continue;
    const double y = std::round(y_of(v));
    c.Line(r.right(), y, r.right() + th.minor_tick_length, y, th.foreground);
    c.Line(r.x, y, r.x + 2, y, th.foreground);
    const TextSize ts = c.Text(r.right() + th.minor_tick_length + th.pad, y, t.labels[i],
                               Txt(th, HAlign::kLeft, VAlign::kMiddle));
    label_right = std::max(label_right, r.right() + th.minor_tick_length + th.pad + ts.width);
  }
  if (!cb.label.empty()) {
    c.Text(label_right + 2 * th.pad, r.y + r.h / 2.0, cb.label, Txt(th, HAlign::kCenter, VAlign::kTop, true));
  }
}

Rgb HsvToRgb(double h, double s, double v) {
  h = std::fmod(h, 1.0) * 6.0;
  const int i = static_cast<int>(std::floor(h)) % 6;
  const double f = h - std::floor(h);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = 0, g = 0, b = 0;
  switch (i) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
  }
  auto u = [](double x) { return static_cast<uint8_t>(std::lround(std::clamp(x, 0.0, 1.0) * 255)); };
  return Rgb(u(r), u(g), u(b));
}

}  // namespace

Rgb CategoricalColor(int64_t label) {
  // Golden-ratio hue sequence: consecutive labels get well separated hues; saturation and
  // value cycle with other periods so labels far apart with similar hues still differ.
  const double h = std::fmod(static_cast<double>(label) * 0.6180339887498949 + 0.11, 1.0);
  const double s = 0.45 + 0.2 * static_cast<double>((label * 7) % 3) / 2.0;
  const double v = 0.78 + 0.17 * static_cast<double>((label * 5) % 4) / 3.0;
  return HsvToRgb(h < 0 ? h + 1 : h, s, v);
}

// ---------------------------------------------------------------------------------------------
// XYPanel

struct XYPanel::Item {
  enum class Kind { kLine, kPoints, kStep, kBars, kErrorBars, kBand, kHLine, kVLine, kHist2D, kText };
  Kind kind = Kind::kLine;
  std::vector<double> x, y, lo, hi;
  plot::Style style;
  int nbx = 60, nby = 60;
  std::string cmap, cbar_label;
  double fx = 0, fy = 0;
  std::string text;
  HAlign h = HAlign::kLeft;
  VAlign v = VAlign::kTop;
  bool box = false;
};

plot::Style XYPanel::Next(plot::Style s) {
  if (!s.color) {
    const auto& cyc = colors::Cycle();
    s.color = cyc[static_cast<size_t>(next_color_++) % cyc.size()];
  }
  return s;
}

namespace {

/// A data series: values `x`, `y` (or `lo`, `hi`) drawn with `style`.
std::shared_ptr<XYPanel::Item> Series(XYPanel::Item::Kind kind, std::vector<double> x, std::vector<double> y,
                                      plot::Style style, std::vector<double> lo = {}, std::vector<double> hi = {}) {
  auto it = std::make_shared<XYPanel::Item>();
  it->kind = kind;
  it->x = std::move(x);
  it->y = std::move(y);
  it->lo = std::move(lo);
  it->hi = std::move(hi);
  it->style = std::move(style);
  return it;
}

}  // namespace

XYPanel& XYPanel::Line(std::vector<double> xs, std::vector<double> ys, plot::Style style) {
  items_.push_back(Series(Item::Kind::kLine, std::move(xs), std::move(ys), Next(std::move(style))));
  return *this;
}

XYPanel& XYPanel::Points(std::vector<double> xs, std::vector<double> ys, plot::Style style) {
  if (style.marker == Marker::kNone) style.marker = Marker::kCircle;
  items_.push_back(Series(Item::Kind::kPoints, std::move(xs), std::move(ys), Next(std::move(style))));
  return *this;
}

XYPanel& XYPanel::Step(std::vector<double> edges, std::vector<double> values, plot::Style style) {
  items_.push_back(Series(Item::Kind::kStep, std::move(edges), std::move(values), Next(std::move(style))));
  return *this;
}

XYPanel& XYPanel::Bars(std::vector<double> edges, std::vector<double> values, plot::Style style) {
  items_.push_back(Series(Item::Kind::kBars, std::move(edges), std::move(values), Next(std::move(style))));
  return *this;
}

XYPanel& XYPanel::ErrorBars(std::vector<double> xs, std::vector<double> lo, std::vector<double> hi, plot::Style style) {
  items_.push_back(Series(Item::Kind::kErrorBars, std::move(xs), {}, Next(std::move(style)), std::move(lo), std::move(hi)));
  return *this;
}

XYPanel& XYPanel::Band(std::vector<double> xs, std::vector<double> lo, std::vector<double> hi, plot::Style style) {
  if (style.alpha >= 1.0) style.alpha = 0.25;
  items_.push_back(Series(Item::Kind::kBand, std::move(xs), {}, Next(std::move(style)), std::move(lo), std::move(hi)));
  return *this;
}

XYPanel& XYPanel::HLine(double yv, plot::Style style) {
  if (!style.color) style.color = colors::kGrey;  // reference lines do not take a cycle colour
  items_.push_back(Series(Item::Kind::kHLine, {}, {yv}, std::move(style)));
  return *this;
}

XYPanel& XYPanel::VLine(double xv, plot::Style style) {
  if (!style.color) style.color = colors::kGrey;
  items_.push_back(Series(Item::Kind::kVLine, {xv}, {}, std::move(style)));
  return *this;
}

XYPanel& XYPanel::Hist2D(std::vector<double> xs, std::vector<double> ys, int nx_bins, int ny_bins,
                         const std::string& colormap, const std::string& colorbar_label) {
  auto it = std::make_shared<Item>();
  it->kind = Item::Kind::kHist2D;
  it->x = std::move(xs);
  it->y = std::move(ys);
  it->nbx = std::max(1, nx_bins);
  it->nby = std::max(1, ny_bins);
  it->cmap = colormap;
  it->cbar_label = colorbar_label;
  items_.push_back(it);
  return *this;
}

XYPanel& XYPanel::Annotate(double fx, double fy, std::string text, HAlign h, VAlign v, std::optional<Rgb> color,
                           bool box) {
  auto it = std::make_shared<Item>();
  it->box = box;
  it->kind = Item::Kind::kText;
  it->fx = fx;
  it->fy = fy;
  it->text = std::move(text);
  it->h = h;
  it->v = v;
  it->style.color = color;
  items_.push_back(it);
  return *this;
}

namespace {

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void Add(double v, bool log) {
    if (!std::isfinite(v) || (log && !(v > 0))) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool valid() const { return lo <= hi; }
};

/// Final axis limits from the data range, the user's limits and padding.
void ResolveLimits(const AxisSpec& a, Range r, bool pad, double& lo, double& hi) {
  if (!r.valid()) {
    r.lo = a.log ? 1 : 0;
    r.hi = a.log ? 10 : 1;
  }
  if (r.hi == r.lo) {
    if (a.log) {
      r.lo /= 2;
      r.hi *= 2;
    } else {
      const double d = r.lo == 0 ? 1 : std::fabs(r.lo) * 0.1;
      r.lo -= d;
      r.hi += d;
    }
  }
  if (pad) {
    if (a.log) {
      const double l0 = std::log10(r.lo), l1 = std::log10(r.hi), d = 0.04 * (l1 - l0);
      r.lo = std::pow(10.0, l0 - d);
      r.hi = std::pow(10.0, l1 + d);
    } else {
      const double d = 0.04 * (r.hi - r.lo);
      r.lo -= d;
      r.hi += d;
    }
  }
  lo = std::isfinite(a.lo) ? a.lo : r.lo;
  hi = std::isfinite(a.hi) ? a.hi : r.hi;
  if (a.log) {
    if (!(lo > 0)) lo = r.lo > 0 ? r.lo : 1e-3;
    if (!(hi > lo)) hi = lo * 10;
  } else if (!(hi > lo)) {
    hi = lo + 1;
  }
}

using XYItems = std::vector<std::shared_ptr<XYPanel::Item>>;
using XYKind = XYPanel::Item::Kind;

/// Axis limits of an XY panel: the data ranges of its items resolved against the axes' own
/// limits (Step and Bars keep their edges, Bars start at 0, a 2-D histogram is not padded).
struct XYLimits {
  double xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  const XYPanel::Item* hist = nullptr;  ///< the panel's 2-D histogram, if any
};

XYLimits ResolveXYLimits(const XYItems& items, const AxisSpec& x, const AxisSpec& y) {
  using K = XYKind;
  Range rx, ry;
  bool sticky_x = false, bars_from_zero = false;
  XYLimits lim;
  for (const auto& it : items) {
    switch (it->kind) {
      case K::kLine:
      case K::kPoints:
        for (size_t i = 0; i < it->x.size() && i < it->y.size(); ++i) {
          if (!std::isfinite(it->x[i]) || !std::isfinite(it->y[i])) continue;
          rx.Add(it->x[i], x.log);
          ry.Add(it->y[i], y.log);
        }
        break;
      case K::kStep:
      case K::kBars:
        for (double v : it->x) rx.Add(v, x.log);
        for (double v : it->y) ry.Add(v, y.log);
        sticky_x = true;
        if (it->kind == K::kBars && !y.log) bars_from_zero = true;
        break;
      case K::kErrorBars:
      case K::kBand:
        for (size_t i = 0; i < it->x.size(); ++i) {
          if (!std::isfinite(it->x[i])) continue;
          rx.Add(it->x[i], x.log);
          if (i < it->lo.size()) ry.Add(it->lo[i], y.log);
          if (i < it->hi.size()) ry.Add(it->hi[i], y.log);
        }
        break;
      case K::kHist2D:
        lim.hist = it.get();
        for (size_t i = 0; i < it->x.size() && i < it->y.size(); ++i) {
          if (!std::isfinite(it->x[i]) || !std::isfinite(it->y[i])) continue;
          if ((x.log && !(it->x[i] > 0)) || (y.log && !(it->y[i] > 0))) continue;
          rx.Add(it->x[i], x.log);
          ry.Add(it->y[i], y.log);
        }
        break;
      case K::kHLine: ry.Add(it->y[0], y.log); break;
      case K::kVLine: rx.Add(it->x[0], x.log); break;
      case K::kText: break;
    }
  }
  if (bars_from_zero && ry.valid() && ry.lo >= 0) ry.Add(0.0, false);
  ResolveLimits(x, rx, !sticky_x && !lim.hist, lim.xlo, lim.xhi);
  ResolveLimits(y, ry, !lim.hist, lim.ylo, lim.yhi);
  if (bars_from_zero && !std::isfinite(y.lo) && ry.valid() && ry.lo >= 0) {
    lim.ylo = 0;
    lim.yhi = ry.hi + 0.06 * (ry.hi - ry.lo);
  }
  return lim;
}

/// A 2-D histogram binned in the (log) axis coordinates over the axis range, with the log
/// colour scale of its colour bar.
struct Hist2DGrid {
  std::vector<int> counts;  ///< ny_bins x nx_bins, row-major
  double hx0 = 0, hx1 = 1, hy0 = 0, hy1 = 1;
  ColorbarSpec cb;
};

Hist2DGrid BinHist2D(const XYPanel::Item& hist, const AxisSpec& x, const AxisSpec& y, const XYLimits& lim) {
  Hist2DGrid g;
  auto tx = [&](double v) { return x.log ? std::log10(v) : v; };
  auto ty = [&](double v) { return y.log ? std::log10(v) : v; };
  g.hx0 = tx(lim.xlo);
  g.hx1 = tx(lim.xhi);
  g.hy0 = ty(lim.ylo);
  g.hy1 = ty(lim.yhi);
  g.counts.assign(static_cast<size_t>(hist.nbx * hist.nby), 0);
  for (size_t i = 0; i < hist.x.size() && i < hist.y.size(); ++i) {
    const double a = hist.x[i], b = hist.y[i];
    if (!std::isfinite(a) || !std::isfinite(b) || (x.log && !(a > 0)) || (y.log && !(b > 0))) continue;
    const int ix = static_cast<int>(std::floor((tx(a) - g.hx0) / (g.hx1 - g.hx0) * hist.nbx));
    const int iy = static_cast<int>(std::floor((ty(b) - g.hy0) / (g.hy1 - g.hy0) * hist.nby));
    if (ix < 0 || iy < 0 || ix > hist.nbx || iy > hist.nby) continue;
    ++g.counts[static_cast<size_t>(std::min(iy, hist.nby - 1) * hist.nbx + std::min(ix, hist.nbx - 1))];
  }
  const int cmax = g.counts.empty() ? 1 : *std::max_element(g.counts.begin(), g.counts.end());
  auto cm = Colormap::Named(hist.cmap);
  g.cb.cmap = cm.ok() ? *cm : *Colormap::Named("viridis");
  g.cb.norm.vmin = 1;
  g.cb.norm.vmax = std::max(cmax, 2);
  g.cb.norm.scale = Norm::Scale::kLog;
  g.cb.label = hist.cbar_label;
  return g;
}

/// Where an XY panel's data area goes, how data map to its pixels, and the ticks of both axes.
struct XYFrame {
  Rect plot;
  AxisMap xm, ym;
  Ticks xt, yt;
  int shift = 0;  ///< horizontal offset of the data area (and the y-axis label) for `aspect`
};

/// Lays out the data area inside `cell`: room for the title, axis labels and tick labels, the
/// colour bar (`hist_cb`, if any), then `aspect`, then narrower if the last x tick label would
/// stick out of the cell.
XYFrame LayoutXY(const XYPanel& p, const XYLimits& lim, const ColorbarSpec* hist_cb, const Rect& cell,
                 const Theme& th) {
  const AxisSpec &x = p.x, &y = p.y;
  const int fs = th.font_scale;
  int top = cell.y + th.pad;
  if (!p.title.empty()) top += MeasureText(p.title, th.title_scale, true, true).height() + th.pad;
  int bottom = cell.bottom() - th.pad;
  if (!x.label.empty()) bottom -= MeasureText(x.label, fs).height() + th.pad;
  const int xlab_h = TextH(th) + th.font_scale * 2;  // superscripts in 10^{k} labels
  bottom -= xlab_h + th.pad;
  int left = cell.x + th.pad;
  if (!y.label.empty()) left += MeasureText(y.label, fs).height() + th.pad;
  const int plot_h = std::max(20, bottom - top);

  XYFrame fr;
  fr.ym = AxisMap{lim.ylo, lim.yhi, y.log, static_cast<double>(bottom - 1), static_cast<double>(top)};
  if (y.invert) std::swap(fr.ym.p0, fr.ym.p1);
  fr.yt = AxisFitTicks(y, lim.ylo, lim.yhi, plot_h, false, th, fr.ym);
  left += MaxLabelWidth(fr.yt.labels, fs) + th.pad;

  int right = cell.right() - 2 * th.pad;
  if (hist_cb) right -= ColorbarBand(*hist_cb, plot_h, th);
  Rect& plot = fr.plot;
  plot = Rect{left, top, std::max(20, right - left), plot_h};
  if (p.aspect > 0) {
    const int want_h = static_cast<int>(std::lround(plot.w * p.aspect));
    const int want_w = static_cast<int>(std::lround(plot.h / p.aspect));
    if (want_h < plot.h && want_h >= 20) {  // too tall: centred vertically
      plot.y += (plot.h - want_h) / 2;
      plot.h = want_h;
      fr.ym = AxisMap{lim.ylo, lim.yhi, y.log, static_cast<double>(plot.bottom() - 1), static_cast<double>(plot.y)};
      if (y.invert) std::swap(fr.ym.p0, fr.ym.p1);
      fr.yt = AxisFitTicks(y, lim.ylo, lim.yhi, plot.h, false, th, fr.ym);
    } else if (want_w < plot.w && want_w >= 20) {  // too wide: centred horizontally
      fr.shift = (plot.w - want_w) / 2;
      plot.x += fr.shift;
      plot.w = want_w;
    }
  }
  fr.xm = AxisMap{lim.xlo, lim.xhi, x.log, static_cast<double>(plot.x), static_cast<double>(plot.right() - 1)};
  if (x.invert) std::swap(fr.xm.p0, fr.xm.p1);
  fr.xt = AxisFitTicks(x, lim.xlo, lim.xhi, plot.w, true, th, fr.xm);
  if (!hist_cb) {
    // A tick label at the right end must not stick out of the cell (it would be cut at the
    // edge of the figure or run into the next panel): narrow the data area by the overhang.
    int over = 0;
    for (size_t i = 0; i < fr.xt.major.size(); ++i) {
      const double sx = std::round(fr.xm(fr.xt.major[i]));
      if (!std::isfinite(sx) || sx < plot.x || sx > plot.right() - 1) continue;
      over = std::max(over, static_cast<int>(std::ceil(sx + MeasureText(fr.xt.labels[i], fs).width / 2.0)) -
                                (cell.right() - th.pad));
    }
    if (over > 0 && plot.w - over >= 20) {
      plot.w -= over;
      fr.xm = AxisMap{lim.xlo, lim.xhi, x.log, static_cast<double>(plot.x), static_cast<double>(plot.right() - 1)};
      if (x.invert) std::swap(fr.xm.p0, fr.xm.p1);
      fr.xt = AxisFitTicks(x, lim.xlo, lim.xhi, plot.w, true, th, fr.xm);
    }
  }
  return fr;
}

/// Faint lines at the major ticks.
void DrawGrid(Canvas& c, const XYFrame& fr) {
  const Rgb gc{225, 225, 225};
  const Rect& plot = fr.plot;
  for (double v : fr.xt.major) c.Line(std::round(fr.xm(v)), plot.y, std::round(fr.xm(v)), plot.bottom() - 1, gc);
  for (double v : fr.yt.major) c.Line(plot.x, std::round(fr.ym(v)), plot.right() - 1, std::round(fr.ym(v)), gc);
}

/// The histogram's cells, coloured by count (empty cells left blank).
void DrawHist2D(Canvas& c, const XYPanel::Item& hist, const Hist2DGrid& g, const XYFrame& fr, const AxisSpec& x,
                const AxisSpec& y) {
  const Rect& plot = fr.plot;
  const double hx0 = g.hx0, hx1 = g.hx1, hy0 = g.hy0, hy1 = g.hy1;
  for (int iy = 0; iy < hist.nby; ++iy)
    for (int ix = 0; ix < hist.nbx; ++ix) {
      const int n = g.counts[static_cast<size_t>(iy * hist.nbx + ix)];
      if (n <= 0) continue;
      auto px = [&](double t) { return plot.x + (t - hx0) / (hx1 - hx0) * plot.w; };
      auto py = [&](double t) { return plot.bottom() - (t - hy0) / (hy1 - hy0) * plot.h; };
      const double a0 = hx0 + (hx1 - hx0) * ix / hist.nbx, a1 = hx0 + (hx1 - hx0) * (ix + 1) / hist.nbx;
      const double b0 = hy0 + (hy1 - hy0) * iy / hist.nby, b1 = hy0 + (hy1 - hy0) * (iy + 1) / hist.nby;
      int sx0 = static_cast<int>(std::lround(px(a0))), sx1 = static_cast<int>(std::lround(px(a1)));
      int sy0 = static_cast<int>(std::lround(py(b1))), sy1 = static_cast<int>(std::lround(py(b0)));
      if (x.invert) {
        sx0 = plot.x + plot.right() - sx1;
        sx1 = plot.x + plot.right() - static_cast<int>(std::lround(px(a0)));
      }
      if (y.invert) {
        const int t0 = plot.y + plot.bottom() - sy1, t1 = plot.y + plot.bottom() - sy0;
        sy0 = t0;
        sy1 = t1;
      }
      c.FillRect({sx0, sy0, std::max(1, sx1 - sx0), std::max(1, sy1 - sy0)}, g.cb.cmap.At(g.cb.norm(n)));
    }
}

/// Screen points covered by data, sampled every few pixels along lines and over filled areas,
/// so that the legend goes where it hides the least.
struct Coverage {
  static constexpr double kStepPx = 5.0;
  std::vector<Point> points;
  void Segment(Point a, Point b) {
    if (!std::isfinite(a.x) || !std::isfinite(a.y) || !std::isfinite(b.x) || !std::isfinite(b.y)) return;
    const int n = std::min(4000, static_cast<int>(std::hypot(b.x - a.x, b.y - a.y) / kStepPx) + 1);
    for (int k = 0; k <= n; ++k) points.push_back({a.x + (b.x - a.x) * k / n, a.y + (b.y - a.y) * k / n});
  }
  void Span(double px, double y0, double y1) { Segment({px, std::min(y0, y1)}, {px, std::max(y0, y1)}); }
};

/// A filled band between lo and hi; non-finite points split it.
void DrawBand(Canvas& c, const XYPanel::Item& it, const XYFrame& fr, Rgb col, Coverage& cov) {
  constexpr double kStepPx = Coverage::kStepPx;
  std::vector<Point> poly;
  std::vector<Point> upper, lower;
  auto flush = [&]() {
    if (upper.size() >= 2) {
      poly = upper;
      poly.insert(poly.end(), lower.rbegin(), lower.rend());
      c.FillPolygon(poly, col, it.style.alpha);
    }
    upper.clear();
    lower.clear();
  };
  for (size_t i = 0; i < it.x.size() && i < it.lo.size() && i < it.hi.size(); ++i) {
    const double sx = fr.xm(it.x[i]), s0 = fr.ym(it.lo[i]), s1 = fr.ym(it.hi[i]);
    if (!std::isfinite(sx) || !std::isfinite(s0) || !std::isfinite(s1)) {
      flush();
      continue;
    }
    if (!upper.empty()) {
      const Point pu = upper.back(), pl = lower.back();
      for (double xx = pu.x; (sx >= pu.x ? xx <= sx : xx >= sx); xx += (sx >= pu.x ? kStepPx : -kStepPx)) {
        const double f = sx == pu.x ? 0 : (xx - pu.x) / (sx - pu.x);
        cov.Span(xx, pl.y + f * (s0 - pl.y), pu.y + f * (s1 - pu.y));
      }
    }
    upper.push_back({sx, s1});
    lower.push_back({sx, s0});
  }
  flush();
}

/// Histogram steps, or filled bars from `ybase` (data units) with an outline.
void DrawStepsOrBars(Canvas& c, const XYPanel::Item& it, const XYFrame& fr, double ybase, Rgb col, Coverage& cov) {
  const plot::Style& st = it.style;
  const bool bars = it.kind == XYKind::kBars;
  std::vector<Point> outline;
  for (size_t i = 0; i < it.y.size() && i + 1 < it.x.size(); ++i) {
    const double a = fr.xm(it.x[i]), b = fr.xm(it.x[i + 1]), v = fr.ym(it.y[i]);
    if (!std::isfinite(a) || !std::isfinite(b) || !std::isfinite(v)) {
      c.Polyline(outline, col, st.width, st.dash);
      outline.clear();
      continue;
    }
    cov.Segment({a, v}, {b, v});
    if (bars) {
      const double base = fr.ym(ybase);
      for (double xx = std::min(a, b); xx <= std::max(a, b); xx += Coverage::kStepPx) cov.Span(xx, base, v);
      const double y0 = std::min(base, v), y1 = std::max(base, v);
      c.FillRect({static_cast<int>(std::lround(std::min(a, b))), static_cast<int>(std::lround(y0)),
                  std::max(1, static_cast<int>(std::lround(std::fabs(b - a)))),
                  std::max(1, static_cast<int>(std::lround(y1 - y0)))},
                 col, st.alpha < 1.0 ? st.alpha : 0.45);
      c.Polyline({{a, base}, {a, v}, {b, v}, {b, base}}, col, std::max(1.0, st.width - 1));
    } else {
      outline.push_back({a, v});
      outline.push_back({b, v});
    }
  }
  if (!bars) c.Polyline(outline, col, st.width, st.dash);
}

/// A polyline (kLine; non-finite points break it) and/or its markers.
void DrawLineOrPoints(Canvas& c, const XYPanel::Item& it, const XYFrame& fr, Rgb col, const Theme& th,
                      Coverage& cov) {
  const plot::Style& st = it.style;
  std::vector<Point> pts;
  for (size_t i = 0; i < it.x.size() && i < it.y.size(); ++i) {
    const Point p{fr.xm(it.x[i]), fr.ym(it.y[i])};
    pts.push_back(std::isfinite(p.x) && std::isfinite(p.y) ? p : Point{kNaN, kNaN});
    if (std::isfinite(p.x) && std::isfinite(p.y)) {
      // A marker covers about its size.
      for (int k = 0; k < 4; ++k) cov.points.push_back(p);
      if (it.kind == XYKind::kLine && pts.size() >= 2) cov.Segment(pts[pts.size() - 2], p);
    }
  }
  if (it.kind == XYKind::kLine) c.Polyline(pts, col, st.width, st.dash);
  if (st.marker != Marker::kNone)
    for (const auto& p : pts) c.DrawMarker(p.x, p.y, st.marker, st.marker_size, col, th.foreground);
}

/// Vertical error bars with caps; on a log axis a non-positive lower end runs to the axis.
void DrawErrorBars(Canvas& c, const XYPanel::Item& it, const XYFrame& fr, bool ylog, Rgb col, Coverage& cov) {
  const plot::Style& st = it.style;
  const int cap = std::max(3, st.marker_size / 2 + 1);
  for (size_t i = 0; i < it.x.size() && i < it.lo.size() && i < it.hi.size(); ++i) {
    const double sx = std::round(fr.xm(it.x[i]));
    double s0 = fr.ym(it.lo[i]), s1 = fr.ym(it.hi[i]);
    if (!std::isfinite(sx)) continue;
    if (ylog && !(it.lo[i] > 0) && it.hi[i] > 0) s0 = fr.plot.bottom() + 2.0;  // to the axis
    if (!std::isfinite(s0) || !std::isfinite(s1)) continue;
    c.Line(sx, s0, sx, s1, col, std::max(1.0, st.width - 1));
    c.Line(sx - cap, std::round(s0), sx + cap, std::round(s0), col, std::max(1.0, st.width - 1));
    c.Line(sx - cap, std::round(s1), sx + cap, std::round(s1), col, std::max(1.0, st.width - 1));
    cov.Span(sx, s0, s1);
  }
}

/// A horizontal (kHLine) or vertical (kVLine) line across the data area.
void DrawReferenceLine(Canvas& c, const XYPanel::Item& it, const XYFrame& fr, Rgb col, Coverage& cov) {
  const plot::Style& st = it.style;
  const Rect& plot = fr.plot;
  if (it.kind == XYKind::kHLine) {
    const double sy = std::round(fr.ym(it.y[0]));
    if (std::isfinite(sy)) c.Line(plot.x, sy, plot.right() - 1, sy, col, st.width, st.dash);
    if (std::isfinite(sy)) cov.Segment({static_cast<double>(plot.x), sy}, {static_cast<double>(plot.right()), sy});
  } else {
    const double sx = std::round(fr.xm(it.x[0]));
    if (std::isfinite(sx)) c.Line(sx, plot.y, sx, plot.bottom() - 1, col, st.width, st.dash);
    if (std::isfinite(sx)) cov.Segment({sx, static_cast<double>(plot.y)}, {sx, static_cast<double>(plot.bottom())});
  }
}

/// Draws the data series in the order they were added and returns what they cover.
Coverage DrawSeries(Canvas& c, const XYItems& items, const XYFrame& fr, const XYLimits& lim, const AxisSpec& y,
                    const Theme& th) {
  using K = XYKind;
  Coverage cov;
  const double ybase = y.log ? lim.ylo : std::clamp(0.0, lim.ylo, lim.yhi);
  for (const auto& it : items) {
    const Rgb col = it->style.color.value_or(th.foreground);
    switch (it->kind) {
      case K::kBand: DrawBand(c, *it, fr, col, cov); break;
      case K::kBars:
      case K::kStep: DrawStepsOrBars(c, *it, fr, ybase, col, cov); break;
      case K::kLine:
      case K::kPoints: DrawLineOrPoints(c, *it, fr, col, th, cov); break;
      case K::kErrorBars: DrawErrorBars(c, *it, fr, y.log, col, cov); break;
      case K::kHLine:
      case K::kVLine: DrawReferenceLine(c, *it, fr, col, cov); break;
      case K::kHist2D:
      case K::kText: break;
    }
  }
  return cov;
}

/// An annotation: its lines and where they go.
struct TextBlock {
  const XYPanel::Item* item = nullptr;
  std::vector<std::string> lines;
  Rect text;  // the lines' extent
  int line_h = 0;
};

/// Places the annotations (blocks of lines anchored in axes fractions); boxed blocks add their
/// area to `drawn` so that the legend avoids them.
std::vector<TextBlock> PlaceAnnotations(const XYItems& items, const Rect& plot, const Theme& th,
                                        std::vector<Point>& drawn) {
  const int fs = th.font_scale;
  std::vector<TextBlock> blocks;
  for (const auto& it : items) {
    if (it->kind != XYKind::kText) continue;
    TextBlock b;
    b.item = it.get();
    b.lines = SplitLines(it->text);
    int w = 0, lh = TextH(th);
    for (const auto& l : b.lines) {
      const TextSize ts = MeasureText(l, fs);
      w = std::max(w, ts.width);
      lh = std::max(lh, ts.height());
    }
    b.line_h = lh + fs;
    const int h = b.line_h * static_cast<int>(b.lines.size()) - fs;
    const double ax = plot.x + it->fx * plot.w, ay = plot.bottom() - it->fy * plot.h;
    const double x0 = it->h == HAlign::kLeft ? ax : it->h == HAlign::kCenter ? ax - w / 2.0 : ax - w;
    double y0 = ay;
    switch (it->v) {
      case VAlign::kTop: y0 = ay; break;
      case VAlign::kMiddle: y0 = ay - h / 2.0; break;
      case VAlign::kBottom: y0 = ay - h; break;
      case VAlign::kBaseline: y0 = ay - MeasureText(b.lines[0], fs).ascent; break;
    }
    b.text = Rect{static_cast<int>(std::lround(x0)), static_cast<int>(std::lround(y0)), w, h};
    if (it->box) {
      for (int yy = b.text.y - th.pad; yy <= b.text.bottom() + th.pad; yy += 3)
        for (int xx = b.text.x - th.pad; xx <= b.text.right() + th.pad; xx += 3)
          drawn.push_back({static_cast<double>(xx), static_cast<double>(yy)});
    }
    blocks.push_back(std::move(b));
  }
  return blocks;
}

/// The legend of the labelled series, in the requested corner or (kBest) in the corner that
/// covers the fewest `drawn` points.
void DrawLegend(Canvas& c, const XYItems& items, LegendPos legend, const Rect& plot, const Theme& th,
                const std::vector<Point>& drawn) {
  using K = XYKind;
  const int fs = th.font_scale;
  std::vector<const XYPanel::Item*> entries;
  for (const auto& it : items)
    if (!it->style.label.empty() && it->kind != K::kText && it->kind != K::kHist2D) entries.push_back(it.get());
  if (legend == LegendPos::kNone || entries.empty()) return;
  const int sample_w = 30, row_h = TextH(th) + 6;
  int text_w = 0;
  for (const XYPanel::Item* e : entries) text_w = std::max(text_w, MeasureText(e->style.label, fs).width);
  const int bw = th.pad + sample_w + th.pad + text_w + th.pad, bh = th.pad + row_h * static_cast<int>(entries.size()) + 2;
  const int m = 8;
  const Rect corners[4] = {{plot.right() - m - bw, plot.y + m, bw, bh},
                           {plot.x + m, plot.y + m, bw, bh},
                           {plot.x + m, plot.bottom() - m - bh, bw, bh},
                           {plot.right() - m - bw, plot.bottom() - m - bh, bw, bh}};
  int pick = 0;
  switch (legend) {
    case LegendPos::kUpperRight: pick = 0; break;
    case LegendPos::kUpperLeft: pick = 1; break;
    case LegendPos::kLowerLeft: pick = 2; break;
    case LegendPos::kLowerRight: pick = 3; break;
    default: {
      size_t best = SIZE_MAX;
      for (int k = 0; k < 4; ++k) {
        size_t n = 0;
        for (const auto& p : drawn)
          if (corners[k].Contains(static_cast<int>(p.x), static_cast<int>(p.y))) ++n;
        if (n < best) {
          best = n;
          pick = k;
        }
      }
    }
  }
  const Rect box = corners[pick];
  c.FillRect(box, th.background, 0.85);
  c.StrokeRect(box, th.legend_edge);
  int yy = box.y + th.pad / 2 + 1;
  for (const XYPanel::Item* e : entries) {
    const Rgb col = e->style.color.value_or(th.foreground);
    const int cy = yy + row_h / 2, sx0 = box.x + th.pad, sx1 = sx0 + sample_w;
    switch (e->kind) {
      case K::kBand:
      case K::kBars:
        c.FillRect({sx0, cy - 6, sample_w, 12}, col, e->kind == K::kBand ? e->style.alpha : 0.45);
        if (e->kind == K::kBars) c.StrokeRect({sx0, cy - 6, sample_w, 12}, col);
        break;
      case K::kErrorBars:
        c.Line((sx0 + sx1) / 2.0, cy - 7, (sx0 + sx1) / 2.0, cy + 7, col, std::max(1.0, e->style.width - 1));
        c.Line((sx0 + sx1) / 2.0 - 4, cy - 7, (sx0 + sx1) / 2.0 + 4, cy - 7, col);
        c.Line((sx0 + sx1) / 2.0 - 4, cy + 7, (sx0 + sx1) / 2.0 + 4, cy + 7, col);
        break;
      default:
        if (e->kind != K::kPoints) c.Line(sx0, cy, sx1, cy, col, e->style.width, e->style.dash);
        if (e->style.marker != Marker::kNone)
          c.DrawMarker((sx0 + sx1) / 2.0, cy, e->style.marker, e->style.marker_size, col, th.foreground);
    }
    c.Text(sx1 + th.pad, cy, e->style.label, Txt(th, HAlign::kLeft, VAlign::kMiddle));
    yy += row_h;
  }
}

/// Draws the annotations placed by PlaceAnnotations (boxed ones on their box).
void DrawAnnotations(Canvas& c, const std::vector<TextBlock>& blocks, const Rect& plot, const Theme& th) {
  for (const TextBlock& b : blocks) {
    const XYPanel::Item* it = b.item;
    if (b.lines.size() == 1 && !it->box) {  // one plain line: anchored exactly as given
      TextStyle ts = Txt(th, it->h, it->v);
      if (it->style.color) ts.color = *it->style.color;
      c.Text(plot.x + it->fx * plot.w, plot.bottom() - it->fy * plot.h, it->text, ts);
      continue;
    }
    if (it->box) {
      const Rect box{b.text.x - th.pad, b.text.y - th.pad, b.text.w + 2 * th.pad, b.text.h + 2 * th.pad};
      c.FillRect(box, th.background, 0.85);
      c.StrokeRect(box, th.legend_edge);
    }
    TextStyle ts = Txt(th, it->h, VAlign::kTop);
    if (it->style.color) ts.color = *it->style.color;
    const double lx = it->h == HAlign::kLeft ? b.text.x : it->h == HAlign::kCenter ? b.text.x + b.text.w / 2.0
                                                                                    : b.text.right();
    for (size_t i = 0; i < b.lines.size(); ++i) c.Text(lx, b.text.y + static_cast<int>(i) * b.line_h, b.lines[i], ts);
  }
}

/// The frame, ticks (inward, on all four sides), tick labels, axis labels and the title.
void DrawAxes(Canvas& c, const XYPanel& p, const XYFrame& fr, const Rect& cell, const Theme& th) {
  const Rect& plot = fr.plot;
  const AxisMap &xm = fr.xm, &ym = fr.ym;
  const Ticks &xt = fr.xt, &yt = fr.yt;
  c.StrokeRect(plot, th.foreground);
  auto xtick = [&](double v, int len) {
    const double sx = std::round(xm(v));
    if (!std::isfinite(sx) || sx < plot.x || sx > plot.right() - 1) return false;
    c.Line(sx, plot.bottom() - 1, sx, plot.bottom() - len, th.foreground);
    c.Line(sx, plot.y, sx, plot.y + len - 1, th.foreground);
    return true;
  };
  auto ytick = [&](double v, int len) {
    const double sy = std::round(ym(v));
    if (!std::isfinite(sy) || sy < plot.y || sy > plot.bottom() - 1) return false;
    c.Line(plot.x, sy, plot.x + len - 1, sy, th.foreground);
    c.Line(plot.right() - 1, sy, plot.right() - len, sy, th.foreground);
    return true;
  };
  for (double v : xt.minor) xtick(v, th.minor_tick_length);
  for (double v : yt.minor) ytick(v, th.minor_tick_length);
  for (size_t i = 0; i < xt.major.size(); ++i)
    if (xtick(xt.major[i], th.tick_length))
      c.Text(std::round(xm(xt.major[i])), plot.bottom() + th.pad, xt.labels[i], Txt(th, HAlign::kCenter, VAlign::kTop));
  for (size_t i = 0; i < yt.major.size(); ++i)
    if (ytick(yt.major[i], th.tick_length))
      c.Text(plot.x - th.pad, std::round(ym(yt.major[i])), yt.labels[i], Txt(th, HAlign::kRight, VAlign::kMiddle));
  if (!p.x.label.empty())
    c.Text(plot.x + plot.w / 2.0, plot.bottom() + th.pad + LabelsHeight(xt.labels, th) + th.pad, p.x.label,
           Txt(th, HAlign::kCenter, VAlign::kTop));
  if (!p.y.label.empty())
    c.Text(cell.x + th.pad + fr.shift, plot.y + plot.h / 2.0, p.y.label, Txt(th, HAlign::kCenter, VAlign::kTop, true));
  if (!p.title.empty())
    c.Text(plot.x + plot.w / 2.0, plot.y - th.pad, p.title,
           Txt(th, HAlign::kCenter, VAlign::kBottom, false, true, th.title_scale));
}

}  // namespace

void XYPanel::Draw(Canvas& c, const Rect& cell, const Theme& th, PanelLayout& out) const {
  const XYLimits lim = ResolveXYLimits(items_, x, y);
  std::optional<Hist2DGrid> hist;
  if (lim.hist) hist = BinHist2D(*lim.hist, x, y, lim);
  const XYFrame fr = LayoutXY(*this, lim, hist ? &hist->cb : nullptr, cell, th);
  out.plot = fr.plot;

  c.SetClip(fr.plot);
  if (grid) DrawGrid(c, fr);
  if (hist) DrawHist2D(c, *lim.hist, *hist, fr, x, y);
  std::vector<Point> drawn = DrawSeries(c, items_, fr, lim, y, th).points;
  const std::vector<TextBlock> blocks = PlaceAnnotations(items_, fr.plot, th, drawn);
  DrawLegend(c, items_, legend, fr.plot, th, drawn);
  DrawAnnotations(c, blocks, fr.plot, th);
  c.ResetClip();

  DrawAxes(c, *this, fr, cell, th);
  if (hist) {
    out.colorbar = Rect{fr.plot.right() + 2 * th.pad, fr.plot.y, th.colorbar_width, fr.plot.h};
    DrawColorbar(c, out.colorbar, hist->cb, th);
  }
}

// ---------------------------------------------------------------------------------------------
// ImagePanel

void ImagePanel::SetData(int64_t nx, int64_t ny, std::vector<double> values) {
  nx_ = std::max<int64_t>(0, nx);
  ny_ = std::max<int64_t>(0, ny);
  data_ = std::move(values);
  data_.resize(static_cast<size_t>(nx_ * ny_), kNaN);
}

Norm ImagePanel::ResolvedNorm() const {
  Norm n;
  n.scale = scale;
  double lo = vmin, hi = vmax;
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    std::vector<double> v;
    v.reserve(data_.size());
    for (double d : data_)
      if (std::isfinite(d) && (scale != Norm::Scale::kLog || d > 0)) v.push_back(d);
    if (!std::isfinite(lo)) lo = Percentile(v, lo_percentile);
    if (!std::isfinite(hi)) hi = Percentile(v, hi_percentile);
  }
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    lo = scale == Norm::Scale::kLog ? 1 : 0;
    hi = scale == Norm::Scale::kLog ? 10 : 1;
  }
  if (hi == lo) {
    const double d = lo == 0 ? 1 : std::fabs(lo) * 0.05;
    lo -= d;
    hi += d;
    if (scale == Norm::Scale::kLog && lo <= 0) lo = hi / 10;
  }
  n.vmin = lo;
  n.vmax = hi;
  return n;
}

namespace {

/// Tick positions (pixels along the edge) and labels of one image edge.
struct EdgeTicks {
  std::vector<double> major_px, minor_px;
  std::vector<std::string> labels;
};

/// Ticks where lines of constant RA or Dec cross one edge of the map. `edge_px(t)` maps the
/// fractional position along the edge (0..1) to a screen coordinate; `sky(t)` gives the sky
/// coordinate there (NaN if undefined).
EdgeTicks SkyEdge(const std::function<double(double)>& coord, const std::function<double(double)>& edge_px,
                  bool is_ra, SkyFormat fmt, int length_px, bool horizontal, const Theme& th) {
  constexpr int kSamples = 256;
  std::vector<double> t(kSamples + 1), v(kSamples + 1);
  double prev = kNaN;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int i = 0; i <= kSamples; ++i) {
    t[static_cast<size_t>(i)] = static_cast<double>(i) / kSamples;
    double c = coord(t[static_cast<size_t>(i)]);
    if (is_ra && std::isfinite(c) && std::isfinite(prev)) {
      while (c - prev > 180) c -= 360;
      while (c - prev < -180) c += 360;
    }
    v[static_cast<size_t>(i)] = c;
    if (std::isfinite(c)) {
      prev = c;
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
  }
  EdgeTicks out;
  if (!(lo < hi)) return out;
  auto crossings = [&](double value) {
    std::vector<double> px;
    for (int i = 0; i < kSamples; ++i) {
      const double a = v[static_cast<size_t>(i)], b = v[static_cast<size_t>(i + 1)];
      if (!std::isfinite(a) || !std::isfinite(b)) continue;
      if ((a - value) * (b - value) > 0 || a == b) continue;
      if (b == value && i + 1 < kSamples) continue;  // counted in the next interval
      const double f = (value - a) / (b - a);
      px.push_back(edge_px(t[static_cast<size_t>(i)] + f * (t[static_cast<size_t>(i + 1)] - t[static_cast<size_t>(i)])));
    }
    return px;
  };
  const int gap = horizontal ? 3 * th.font_scale * 5 / 2 : th.font_scale * 4;
  auto fits = [&](const EdgeTicks& e) {
    std::vector<size_t> shown;
    for (size_t i = 0; i < e.labels.size(); ++i)
      if (!e.labels[i].empty()) shown.push_back(i);
    for (size_t k = 1; k < shown.size(); ++k) {
      const size_t a = shown[k - 1], b = shown[k];
      const double d = std::fabs(e.major_px[b] - e.major_px[a]);
      const double need = horizontal ? (MeasureText(e.labels[a], th.font_scale).width +
                                        MeasureText(e.labels[b], th.font_scale).width) / 2.0 + gap
                                     : TextH(th) + gap;
      if (d < need) return false;
    }
    return true;
  };
  for (int max_ticks = std::clamp(length_px / (horizontal ? 35 : TextH(th) * 2), 2, 10); max_ticks >= 2; --max_ticks) {
    const Ticks tk = SkyTicks(lo, hi, is_ra, fmt, max_ticks);
    struct P {
      double px;
      double value;
    };
    std::vector<P> ps;
    for (double m : tk.major)
      for (double p : crossings(m)) ps.push_back({p, m});
    // Screen order: left to right, or bottom to top.
    std::sort(ps.begin(), ps.end(), [&](const P& a, const P& b) { return horizontal ? a.px < b.px : a.px > b.px; });
    // Label every tick, or (when the labels would collide) every other one; successive
    // sexagesimal labels drop the leading fields they share with the previous label.
    bool done = false;
    for (size_t stride = 1; stride <= 2 && !done; ++stride) {
      EdgeTicks e;
      std::vector<std::string> prev_fields;
      for (size_t i = 0; i < ps.size(); ++i) {
        const auto& p = ps[i];
        e.major_px.push_back(p.px);
        if (i % stride != 0) {
          e.labels.emplace_back();
          continue;
        }
        if (fmt == SkyFormat::kSexagesimal) {
          const auto f = SexagesimalFields(p.value, is_ra, tk.sex_fields, tk.sex_decimals);
          size_t drop = 0;
          while (!prev_fields.empty() && drop + 1 < f.size() && drop < prev_fields.size() &&
                 f[drop] == prev_fields[drop])
            ++drop;
          std::string s;
          for (size_t k = drop; k < f.size(); ++k) s += f[k];
          e.labels.push_back(s);
          prev_fields = f;
        } else {
          const std::string s =
              FormatTick(is_ra ? std::fmod(std::fmod(p.value, 360.0) + 360.0, 360.0) : p.value, tk.step);
          e.labels.push_back(s + "\u00b0");
        }
      }
      for (double m : tk.minor)
        for (double p : crossings(m)) e.minor_px.push_back(p);
      size_t nlabels = 0;
      for (const auto& l : e.labels) nlabels += l.empty() ? 0 : 1;
      if (out.major_px.empty()) out = e;  // fallback: the coarsest attempt
      if (fits(e) && (nlabels >= 2 || (max_ticks == 2 && stride == 2))) {
        out = e;
        done = true;
      }
    }
    if (done) break;
    if (max_ticks == 2) {
      // Nothing fitted: keep the coarsest ticks, labels thinned to what fits.
      out = EdgeTicks{};
      Ticks t2 = SkyTicks(lo, hi, is_ra, fmt, 2);
      for (double m : t2.major)
        for (double p : crossings(m)) {
          out.major_px.push_back(p);
          out.labels.push_back(fmt == SkyFormat::kSexagesimal
                                   ? FormatSexagesimal(m, is_ra, t2.sex_fields, t2.sex_decimals)
                                   : FormatTick(m, t2.step) + "\u00b0");
        }
    }
  }
  return out;
}

}  // namespace

void ImagePanel::Draw(Canvas& c, const Rect& cell, const Theme& th, PanelLayout& out) const {
  const int fs = th.font_scale;
  const Norm norm = ResolvedNorm();
  const bool have_data =
      nx_ > 0 && ny_ > 0 && std::any_of(data_.begin(), data_.end(), [](double v) { return std::isfinite(v); });
  const bool show_cb = colorbar && !categorical;
  const bool cb_band = show_cb || reserve_colorbar;

  // Which sky coordinate goes along the bottom edge.
  bool ra_bottom = true;
  auto sky_at = [&](double px, double py, int which) {
    const Result<fits::SkyCoord> sky = wcs->ToSky(px, py);
    if (!sky.ok()) return kNaN;
    return which == 0 ? sky->ra : sky->dec;
  };
  if (wcs && nx_ > 0 && ny_ > 0) {
    const double ra0 = sky_at(-0.5, -0.5, 0), ra1 = sky_at(nx_ - 0.5, -0.5, 0);
    const double de0 = sky_at(-0.5, -0.5, 1), de1 = sky_at(nx_ - 0.5, -0.5, 1);
    double dra = ra1 - ra0;
    while (dra > 180) dra -= 360;
    while (dra < -180) dra += 360;
    ra_bottom = std::fabs(dra * std::cos(de0 * M_PI / 180)) >= std::fabs(de1 - de0);
  }
  const std::string xl = wcs ? (ra_bottom ? ra_label : dec_label) : x_label;
  const std::string yl = wcs ? (ra_bottom ? dec_label : ra_label) : y_label;

  // Bands around the map.
  int top_band = th.pad;
  if (!title.empty()) top_band += MeasureText(title, th.title_scale, true, true).height() + th.pad;
  const int xtick_h = TextH(th) + fs * 2;
  int bottom_band = th.tick_length + th.pad + xtick_h + th.pad;
  if (!xl.empty()) bottom_band += MeasureText(xl, fs).height() + th.pad;
  const int ylabel_w = yl.empty() ? 0 : MeasureText(yl, fs).height() + th.pad;
  const std::string sample_y = wcs ? (ra_bottom ? "+00\u00b000\u203200\u2033" : "00^{h}00^{m}00^{s}")
                                   : std::string(std::to_string(std::max<int64_t>(ny_, 1)).size(), '0');
  int ytick_w = MeasureText(sample_y, fs).width;
  ColorbarSpec cb;
  cb.cmap = colormap;
  cb.norm = norm;
  cb.label = colorbar_label;

  Rect plot;
  for (int pass = 0; pass < 2; ++pass) {
    const int left_band = th.pad + ylabel_w + ytick_w + th.pad + th.tick_length;
    const int avail_h = std::max(16, cell.h - top_band - bottom_band);
    const int right_band = cb_band ? ColorbarBand(cb, avail_h, th) : 2 * th.pad;
    const int avail_w = std::max(16, cell.w - left_band - right_band);
    int pw = avail_w, ph = avail_h;
    if (nx_ > 0 && ny_ > 0) {
      const double s = std::min(static_cast<double>(avail_w) / nx_, static_cast<double>(avail_h) / ny_);
      const double si = std::floor(s);
      const double use = (si >= 1 && si / s >= 0.9) ? si : s;  // whole pixels when it costs < 10 %
      pw = std::max(1, static_cast<int>(std::floor(nx_ * use)));
      ph = std::max(1, static_cast<int>(std::floor(ny_ * use)));
    }
    const int rb = cb_band ? ColorbarBand(cb, ph, th) : 2 * th.pad;
    const int block_w = left_band + pw + rb;
    const int x0 = cell.x + std::max(0, (cell.w - block_w) / 2) + left_band;
    const int block_h = top_band + ph + bottom_band;
    const int y0 = cell.y + std::max(0, (cell.h - block_h) / 2) + top_band;
    plot = Rect{x0, y0, pw, ph};
    if (pass == 1) break;
    // Measure the real y tick labels and redo the layout with their width.
    if (wcs && nx_ > 0) {
      auto ycoord = [&](double t) { return sky_at(-0.5, -0.5 + t * ny_, ra_bottom ? 1 : 0); };
      auto ypx = [&](double t) { return plot.bottom() - t * plot.h; };
      const EdgeTicks e = SkyEdge(ycoord, ypx, !ra_bottom, sky_format, plot.h, false, th);
      ytick_w = std::max(MaxLabelWidth(e.labels, fs), MeasureText(sample_y, fs).width);
    } else {
      AxisMap ym{-0.5, ny_ - 0.5, false, static_cast<double>(plot.bottom()), static_cast<double>(plot.y)};
      const Ticks yt = FitTicks(0, std::max<double>(0, static_cast<double>(ny_ - 1)), false, plot.h, false, th, ym);
      ytick_w = std::max(MaxLabelWidth(yt.labels, fs), MeasureText("0", fs).width);
    }
  }
  out.plot = plot;

  // Map pixels, row 0 at the bottom: nearest data pixel when enlarging; when shrinking, the
  // area-weighted mean of the finite data pixels under each screen pixel (no aliasing of
  // pixel-scale structure). Categorical maps always take the nearest label.
  c.FillRect(plot, colormap.nan_color());
  if (nx_ > 0 && ny_ > 0 && have_data) {
    const bool shrink = !categorical && (plot.w < nx_ || plot.h < ny_);
    struct Span {
      int64_t first = 0;
      std::vector<double> w;
    };
    // Data pixels under screen pixel i of n along an axis of m data pixels, with overlaps.
    auto spans = [](int n, int64_t m) {
      std::vector<Span> res(static_cast<size_t>(n));
      const double f = static_cast<double>(m) / n;
      for (int i = 0; i < n; ++i) {
        const double a = i * f, b = (i + 1) * f;
        Span& sp = res[static_cast<size_t>(i)];
        sp.first = static_cast<int64_t>(std::floor(a));
        for (int64_t q = sp.first; q < m && q < b; ++q)
          sp.w.push_back(std::min<double>(b, q + 1) - std::max<double>(a, q));
      }
      return res;
    };
    std::vector<Span> xs, ys;
    if (shrink) {
      xs = spans(plot.w, nx_);
      ys = spans(plot.h, ny_);  // screen rows from the top: data rows counted from the top
    }
    for (int sy = 0; sy < plot.h; ++sy) {
      const int64_t dy = ny_ - 1 - std::min<int64_t>(ny_ - 1, static_cast<int64_t>((sy + 0.5) * ny_ / plot.h));
      for (int sx = 0; sx < plot.w; ++sx) {
        const int64_t dx = std::min<int64_t>(nx_ - 1, static_cast<int64_t>((sx + 0.5) * nx_ / plot.w));
        double v = data_[static_cast<size_t>(dy * nx_ + dx)];
        if (shrink) {
          const Span& spx = xs[static_cast<size_t>(sx)];
          const Span& spy = ys[static_cast<size_t>(sy)];
          double sum = 0, wsum = 0;
          for (size_t j = 0; j < spy.w.size(); ++j) {
            const int64_t row = ny_ - 1 - (spy.first + static_cast<int64_t>(j));
            for (size_t i = 0; i < spx.w.size(); ++i) {
              const double d = data_[static_cast<size_t>(row * nx_ + spx.first + static_cast<int64_t>(i))];
              if (!std::isfinite(d) || (scale == Norm::Scale::kLog && d <= 0)) continue;
              const double w = spx.w[i] * spy.w[j];
              sum += w * d;
              wsum += w;
            }
          }
          v = wsum > 0 ? sum / wsum : kNaN;
        }
        Rgb col;
        if (!std::isfinite(v) || (categorical && v < 0)) col = colormap.nan_color();
        else if (categorical) col = CategoricalColor(static_cast<int64_t>(std::llround(v)));
        else col = colormap.At(norm(v));
        c.Set(plot.x + sx, plot.y + sy, col);
      }
    }
  }
  auto sx_of = [&](double px) { return plot.x + (px + 0.5) * plot.w / static_cast<double>(std::max<int64_t>(nx_, 1)); };
  auto sy_of = [&](double py) {
    return plot.bottom() - (py + 0.5) * plot.h / static_cast<double>(std::max<int64_t>(ny_, 1));
  };
  // Outline of a region: pixel edges between inside and outside.
  if (!outline.empty() && outline.size() == static_cast<size_t>(nx_ * ny_)) {
    auto in = [&](int64_t x, int64_t y) {
      return x >= 0 && y >= 0 && x < nx_ && y < ny_ && outline[static_cast<size_t>(y * nx_ + x)] != 0;
    };
    std::vector<std::array<double, 4>> segs;
    auto ex = [&](int64_t x) { return std::round(plot.x + static_cast<double>(x) * plot.w / nx_); };
    auto ey = [&](int64_t y) { return std::round(plot.bottom() - static_cast<double>(y) * plot.h / ny_); };
    for (int64_t y = 0; y < ny_; ++y)
      for (int64_t x = 0; x < nx_; ++x) {
        if (!in(x, y)) continue;
        if (!in(x - 1, y)) segs.push_back({ex(x), ey(y), ex(x), ey(y + 1)});
        if (!in(x + 1, y)) segs.push_back({ex(x + 1), ey(y), ex(x + 1), ey(y + 1)});
        if (!in(x, y - 1)) segs.push_back({ex(x), ey(y), ex(x + 1), ey(y)});
        if (!in(x, y + 1)) segs.push_back({ex(x), ey(y + 1), ex(x + 1), ey(y + 1)});
      }
    c.SetClip({plot.x - 2, plot.y - 2, plot.w + 4, plot.h + 4});
    for (const auto& s : segs) c.Line(s[0], s[1], s[2], s[3], colors::kBlack, 3);
    for (const auto& s : segs) c.Line(s[0], s[1], s[2], s[3], colors::kWhite, 1);
    c.ResetClip();
  }
  // Markers: a white ring with black rims around the position (the pixel itself stays visible).
  for (const auto& m : markers) {
    for (int sz : {24, 28}) c.DrawMarker(sx_of(m.x), sy_of(m.y), Marker::kCircle, sz, colors::kBlack, colors::kBlack, false);
    c.DrawMarker(sx_of(m.x), sy_of(m.y), Marker::kCircle, 26, colors::kWhite, colors::kWhite, false);
  }
  // North / east arrows when the map is not north-up, east-left.
  if (wcs && have_data && nx_ > 1 && ny_ > 1) {
    const double cx = (nx_ - 1) / 2.0, cy = (ny_ - 1) / 2.0;
    // Pixel positions one pixel scale north and east of the centre (NaN where the WCS has none).
    double nxp = kNaN, nyp = kNaN, exp_ = kNaN, eyp = kNaN;
    if (const auto centre = wcs->ToSky(cx, cy); centre.ok()) {
      const double ra = centre->ra, dec = centre->dec, d = wcs->PixelScaleArcsec() / 3600.0;
      if (const auto north = wcs->ToPixel(ra, dec + d); north.ok()) {
        nxp = north->x;
        nyp = north->y;
        if (const auto east = wcs->ToPixel(ra + d / std::max(1e-6, std::cos(dec * M_PI / 180)), dec); east.ok()) {
          exp_ = east->x;
          eyp = east->y;
        }
      }
    }
    // Screen directions (y down).
    const double nvx = nxp - cx, nvy = -(nyp - cy), evx = exp_ - cx, evy = -(eyp - cy);
    const double nl = std::hypot(nvx, nvy), el = std::hypot(evx, evy);
    if (nl > 0 && el > 0 && std::isfinite(nl) && std::isfinite(el)) {
      const double rot = std::atan2(nvx / nl, -nvy / nl) * 180 / M_PI;  // 0 when north is up
      const bool flipped = (evx / el) > 0;                                 // east to the right
      if (std::fabs(rot) > 1.0 || flipped) {
        const double len = std::clamp(std::min(plot.w, plot.h) * 0.12, 18.0, 60.0);
        const double ox = plot.right() - len - 14, oy = plot.bottom() - len - 14;
        auto arrow = [&](double ux, double uy, const char* label) {
          const double tx = ox + ux * len, ty = oy + uy * len;
          for (int pass = 0; pass < 2; ++pass) {
            const Rgb col = pass == 0 ? colors::kWhite : colors::kBlack;
            const double w = pass == 0 ? 4 : 2;
            c.Line(ox, oy, tx, ty, col, w);
            const double hx = -ux * 7, hy = -uy * 7;
            c.Line(tx, ty, tx + hx * 0.9 - hy * 0.5, ty + hy * 0.9 + hx * 0.5, col, w);
            c.Line(tx, ty, tx + hx * 0.9 + hy * 0.5, ty + hy * 0.9 - hx * 0.5, col, w);
          }
          TextStyle ts = Txt(th, HAlign::kCenter, VAlign::kMiddle);
          const double lx = ox + ux * (len + 9), ly = oy + uy * (len + 9);
          TextStyle halo = ts;
          halo.color = colors::kWhite;
          for (int ddx = -1; ddx <= 1; ++ddx)
            for (int ddy = -1; ddy <= 1; ++ddy) c.Text(lx + ddx, ly + ddy, label, halo);
          c.Text(lx, ly, label, ts);
        };
        c.SetClip(plot);
        arrow(nvx / nl, nvy / nl, "N");
        arrow(evx / el, evy / el, "E");
        c.ResetClip();
      }
    }
  }
  if (!have_data) {
    const std::string msg = note.empty() ? "no data" : note;
    TextStyle ts = Txt(th, HAlign::kCenter, VAlign::kMiddle);
    if (MeasureText(msg, ts.scale).width > plot.w - 8 && ts.scale > 1) --ts.scale;
    c.Text(plot.x + plot.w / 2.0, plot.y + plot.h / 2.0, msg, ts);
  }
  c.StrokeRect({plot.x - 1, plot.y - 1, plot.w + 2, plot.h + 2}, th.foreground);

  // Axes: outward ticks on the bottom and left edges.
  const int frame_b = plot.bottom(), frame_l = plot.x - 1;
  int xlab_bottom = frame_b + th.tick_length + th.pad + TextH(th);
  if (wcs && nx_ > 0 && ny_ > 0) {
    auto xcoord = [&](double t) { return sky_at(-0.5 + t * nx_, -0.5, ra_bottom ? 0 : 1); };
    auto xpx = [&](double t) { return plot.x + t * plot.w; };
    auto ycoord = [&](double t) { return sky_at(-0.5, -0.5 + t * ny_, ra_bottom ? 1 : 0); };
    auto ypx = [&](double t) { return plot.bottom() - t * plot.h; };
    const EdgeTicks ex = SkyEdge(xcoord, xpx, ra_bottom, sky_format, plot.w, true, th);
    const EdgeTicks ey = SkyEdge(ycoord, ypx, !ra_bottom, sky_format, plot.h, false, th);
    for (double p : ex.minor_px) c.Line(std::round(p), frame_b, std::round(p), frame_b + th.minor_tick_length - 1, th.foreground);
    for (double p : ey.minor_px) c.Line(frame_l, std::round(p), frame_l - th.minor_tick_length + 1, std::round(p), th.foreground);
    for (size_t i = 0; i < ex.major_px.size(); ++i) {
      const double p = std::round(ex.major_px[i]);
      c.Line(p, frame_b, p, frame_b + th.tick_length - 1, th.foreground);
      const TextSize ts = c.Text(p, frame_b + th.tick_length + th.pad, ex.labels[i], Txt(th, HAlign::kCenter, VAlign::kTop));
      xlab_bottom = std::max(xlab_bottom, frame_b + th.tick_length + th.pad + ts.height());
    }
    for (size_t i = 0; i < ey.major_px.size(); ++i) {
      const double p = std::round(ey.major_px[i]);
      c.Line(frame_l, p, frame_l - th.tick_length + 1, p, th.foreground);
      c.Text(frame_l - th.tick_length - th.pad + 1, p, ey.labels[i], Txt(th, HAlign::kRight, VAlign::kMiddle));
    }
  } else if (nx_ > 0 && ny_ > 0) {
    AxisMap xm{0, 1, false, sx_of(0), sx_of(1)};
    AxisMap ym{0, 1, false, sy_of(0), sy_of(1)};
    const Ticks xt = FitTicks(0, static_cast<double>(nx_ - 1), false, plot.w, true, th, xm);
    const Ticks yt = FitTicks(0, static_cast<double>(ny_ - 1), false, plot.h, false, th, ym);
    for (size_t i = 0; i < xt.major.size(); ++i) {
      const double p = std::round(sx_of(xt.major[i]));
      c.Line(p, frame_b, p, frame_b + th.tick_length - 1, th.foreground);
      c.Text(p, frame_b + th.tick_length + th.pad, xt.labels[i], Txt(th, HAlign::kCenter, VAlign::kTop));
    }
    for (size_t i = 0; i < yt.major.size(); ++i) {
      const double p = std::round(sy_of(yt.major[i]));
      c.Line(frame_l, p, frame_l - th.tick_length + 1, p, th.foreground);
      c.Text(frame_l - th.tick_length - th.pad + 1, p, yt.labels[i], Txt(th, HAlign::kRight, VAlign::kMiddle));
    }
  }
  if (!xl.empty())
    c.Text(plot.x + plot.w / 2.0, xlab_bottom + th.pad, xl, Txt(th, HAlign::kCenter, VAlign::kTop));
  if (!yl.empty()) {
    const int lx = plot.x - th.tick_length - th.pad - ytick_w - th.pad - MeasureText(yl, fs).height();
    c.Text(lx, plot.y + plot.h / 2.0, yl, Txt(th, HAlign::kCenter, VAlign::kTop, true));
  }
  if (!title.empty())
    c.Text(plot.x + plot.w / 2.0, plot.y - 1 - th.pad, title,
           Txt(th, HAlign::kCenter, VAlign::kBottom, false, true, th.title_scale));
  if (show_cb && have_data) {
    out.colorbar = Rect{plot.right() + 2 * th.pad, plot.y, th.colorbar_width, plot.h};
    DrawColorbar(c, out.colorbar, cb, th);
  }
}

void NotePanel::Draw(Canvas& c, const Rect& cell, const Theme& th, PanelLayout& out) const {
  out.plot = Rect{cell.x + th.pad, cell.y + th.pad, cell.w - 2 * th.pad, cell.h - 2 * th.pad};
  int y = cell.y + cell.h / 2;
  if (!title.empty()) {
    c.Text(cell.x + cell.w / 2.0, y - TextH(th), title, Txt(th, HAlign::kCenter, VAlign::kBottom, false, true, th.title_scale));
  }
  TextStyle s = Txt(th, HAlign::kCenter, VAlign::kTop);
  s.color = colors::kGrey;
  c.Text(cell.x + cell.w / 2.0, y, text, s);
}

// ---------------------------------------------------------------------------------------------
// Figure

Figure::Figure(int rows, int cols, int cell_width, int cell_height)
    : rows_(std::max(1, rows)), cols_(std::max(1, cols)), cell_w_(std::max(40, cell_width)),
      cell_h_(std::max(40, cell_height)) {
  panels_.resize(static_cast<size_t>(rows_ * cols_));
}

template <typename T>
T& Figure::Put(int row, int col, std::unique_ptr<T> p) {
  if (row < 0 || row >= rows_ || col < 0 || col >= cols_)
    throw Error("figure cell (" + std::to_string(row) + ", " + std::to_string(col) + ") is outside the " +
                std::to_string(rows_) + " x " + std::to_string(cols_) + " grid");
  T& ref = *p;
  panels_[static_cast<size_t>(row * cols_ + col)] = std::move(p);
  return ref;
}

XYPanel& Figure::XY(int row, int col) { return Put(row, col, std::make_unique<XYPanel>()); }
ImagePanel& Figure::Image(int row, int col) { return Put(row, col, std::make_unique<ImagePanel>()); }
NotePanel& Figure::Note(int row, int col, std::string text) {
  auto& n = Put(row, col, std::make_unique<NotePanel>());
  n.text = std::move(text);
  return n;
}

namespace {
/// Text scale of each title line: the first at suptitle_scale (bold), the others at
/// font_scale; shrunk while a line is wider than the figure.
std::vector<int> TitleScales(const std::vector<std::string>& lines, const Theme& th, int width) {
  std::vector<int> sc;
  for (size_t i = 0; i < lines.size(); ++i) {
    int s = i == 0 ? th.suptitle_scale : th.font_scale;
    while (s > 1 && MeasureText(lines[i], s, true, i == 0).width > width - 2 * th.pad) --s;
    sc.push_back(s);
  }
  return sc;
}
}  // namespace

int Figure::TitleHeight() const {
  if (title.empty()) return 0;
  const auto lines = SplitLines(title);
  const auto sc = TitleScales(lines, theme, width());
  int h = theme.pad;
  for (size_t i = 0; i < lines.size(); ++i) h += MeasureText(lines[i], sc[i], true, i == 0).height() + theme.pad;
  return h + theme.pad;
}

int Figure::width() const { return cols_ * cell_w_; }
int Figure::height() const { return rows_ * cell_h_ + TitleHeight(); }

Canvas Figure::Render(std::vector<PanelLayout>* layout) const {
  Canvas c(width(), height(), theme.background);
  if (!title.empty()) {
    int y = theme.pad;
    const auto lines = SplitLines(title);
    const auto sc = TitleScales(lines, theme, width());
    for (size_t i = 0; i < lines.size(); ++i) {
      const TextStyle s = Txt(theme, HAlign::kCenter, VAlign::kTop, false, i == 0, sc[i]);
      y += c.Text(width() / 2.0, y, lines[i], s).height() + theme.pad;
    }
  }
  const int y0 = TitleHeight();
  for (int r = 0; r < rows_; ++r)
    for (int k = 0; k < cols_; ++k) {
      const auto& p = panels_[static_cast<size_t>(r * cols_ + k)];
      if (!p) continue;
      PanelLayout pl;
      pl.row = r;
      pl.col = k;
      pl.cell = Rect{k * cell_w_, y0 + r * cell_h_, cell_w_, cell_h_};
      p->Draw(c, pl.cell, theme, pl);
      c.ResetClip();
      if (layout) layout->push_back(pl);
    }
  return c;
}

Status Figure::Save(const std::string& path, std::vector<PanelLayout>* layout) const {
  return Render(layout).SavePng(path);
}

}  // namespace cubeflow::plot
