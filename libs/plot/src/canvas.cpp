// Raster canvas: pixels, lines, polygons, markers and bitmap text.
#include "cubeflow/plot/canvas.hpp"

#include <algorithm>
#include <cmath>

#include "font.hpp"

namespace cubeflow::plot {

Rgb Rgb::Mix(Rgb o, double t) const {
  t = std::clamp(t, 0.0, 1.0);
  auto m = [t](uint8_t from, uint8_t to) {
    return static_cast<uint8_t>(std::lround((1.0 - t) * from + t * to));
  };
  return Rgb(m(r, o.r), m(g, o.g), m(b, o.b));
}

const std::vector<Rgb>& colors::Cycle() {
  static const std::vector<Rgb> c = {Rgb::Hex(0x1f77b4), Rgb::Hex(0xff7f0e), Rgb::Hex(0x2ca02c), Rgb::Hex(0xd62728),
                                     Rgb::Hex(0x9467bd), Rgb::Hex(0x8c564b), Rgb::Hex(0xe377c2), Rgb::Hex(0x7f7f7f),
                                     Rgb::Hex(0xbcbd22), Rgb::Hex(0x17becf)};
  return c;
}

TextSize MeasureText(const std::string& text, int scale, bool markup, bool bold) {
  TextSize s;
  const int sc = std::max(1, scale);
  s.ascent = font::kAscent * sc;
  s.descent = font::kDescent * sc;
  const auto runs = font::Layout(text, sc, markup, bold);
  for (const auto& r : runs) {
    s.width = r.x + (r.glyph->width + 1) * r.scale + (bold ? 1 : 0);
    s.ascent = std::max(s.ascent, font::kAscent * r.scale - r.shift);
    s.descent = std::max(s.descent, font::kDescent * r.scale + r.shift);
  }
  if (!runs.empty()) s.width -= runs.back().scale;  // no spacing after the last glyph
  return s;
}

Canvas::Canvas(int width, int height, Rgb background) {
  image_.width = std::max(1, width);
  image_.height = std::max(1, height);
  image_.rgb.resize(static_cast<size_t>(image_.width) * image_.height * 3);
  ResetClip();
  Clear(background);
}

Rgb Canvas::Get(int x, int y) const {
  if (x < 0 || y < 0 || x >= image_.width || y >= image_.height) return colors::kBlack;
  const uint8_t* p = &image_.rgb[(static_cast<size_t>(y) * image_.width + x) * 3];
  return Rgb(p[0], p[1], p[2]);
}

void Canvas::Set(int x, int y, Rgb c) {
  if (!clip_.Contains(x, y)) return;
  uint8_t* p = &image_.rgb[(static_cast<size_t>(y) * image_.width + x) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

void Canvas::Blend(int x, int y, Rgb c, double alpha) {
  if (alpha >= 1.0) return Set(x, y, c);
  if (alpha <= 0.0 || !clip_.Contains(x, y)) return;
  Set(x, y, Get(x, y).Mix(c, alpha));
}

void Canvas::SetClip(const Rect& r) {
  const int x0 = std::max(0, r.x), y0 = std::max(0, r.y);
  const int x1 = std::min(image_.width, r.right()), y1 = std::min(image_.height, r.bottom());
  clip_ = Rect{x0, y0, std::max(0, x1 - x0), std::max(0, y1 - y0)};
}

void Canvas::ResetClip() { clip_ = Rect{0, 0, image_.width, image_.height}; }

void Canvas::Clear(Rgb c) {
  for (size_t i = 0; i < image_.rgb.size(); i += 3) {
    image_.rgb[i] = c.r;
    image_.rgb[i + 1] = c.g;
    image_.rgb[i + 2] = c.b;
  }
}

void Canvas::FillRect(const Rect& r, Rgb c, double alpha) {
  const int x0 = std::max(r.x, clip_.x), x1 = std::min(r.right(), clip_.right());
  const int y0 = std::max(r.y, clip_.y), y1 = std::min(r.bottom(), clip_.bottom());
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) Blend(x, y, c, alpha);
}

void Canvas::StrokeRect(const Rect& r, Rgb c, int width) {
  if (r.empty()) return;
  const int w = std::max(1, width);
  FillRect({r.x, r.y, r.w, std::min(w, r.h)}, c);
  FillRect({r.x, r.bottom() - std::min(w, r.h), r.w, std::min(w, r.h)}, c);
  FillRect({r.x, r.y, std::min(w, r.w), r.h}, c);
  FillRect({r.right() - std::min(w, r.w), r.y, std::min(w, r.w), r.h}, c);
}

void Canvas::Stamp(int x, int y, Rgb c, int width) {
  if (width <= 1) return Set(x, y, c);
  const int lo = -(width - 1) / 2, hi = width / 2;
  const bool round = width > 2;
  const double rr = (width / 2.0) * (width / 2.0);
  for (int dy = lo; dy <= hi; ++dy)
    for (int dx = lo; dx <= hi; ++dx) {
      if (round) {
        const double cx = dx - (lo + hi) / 2.0, cy = dy - (lo + hi) / 2.0;
        if (cx * cx + cy * cy > rr + 0.25) continue;
      }
      Set(x + dx, y + dy, c);
    }
}

namespace {

/// Walks the pixels of a Bresenham line, calling f(x, y, distance_from_start).
template <typename F>
void Bresenham(int x0, int y0, int x1, int y1, F&& f) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  double dist = 0;
  for (;;) {
    f(x0, y0, dist);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    bool mx = false, my = false;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
      mx = true;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
      my = true;
    }
    dist += (mx && my) ? M_SQRT2 : 1.0;
  }
}

bool DashOn(const std::vector<int>& dash, double d) {
  if (dash.empty()) return true;
  int period = 0;
  for (int v : dash) period += std::max(1, v);
  double t = std::fmod(d, static_cast<double>(period));
  for (size_t i = 0; i < dash.size(); ++i) {
    const int len = std::max(1, dash[i]);
    if (t < len) return i % 2 == 0;
    t -= len;
  }
  return true;
}

constexpr double kHuge = 1e7;  // coordinates beyond this are clamped before rasterising

}  // namespace

void Canvas::Line(double x0, double y0, double x1, double y1, Rgb c, double width, const std::vector<int>& dash) {
  Polyline({{x0, y0}, {x1, y1}}, c, width, dash);
}

void Canvas::Polyline(const std::vector<Point>& pts, Rgb c, double width, const std::vector<int>& dash) {
  const int w = std::max(1, static_cast<int>(std::lround(width)));
  double phase = 0;
  for (size_t i = 1; i < pts.size(); ++i) {
    Point a = pts[i - 1], b = pts[i];
    if (!std::isfinite(a.x) || !std::isfinite(a.y) || !std::isfinite(b.x) || !std::isfinite(b.y)) continue;
    // Clip the segment to a margin around the canvas (Liang-Barsky) so huge coordinates stay cheap.
    const double lo_x = clip_.x - 2.0 * w, hi_x = clip_.right() + 2.0 * w;
    const double lo_y = clip_.y - 2.0 * w, hi_y = clip_.bottom() + 2.0 * w;
    double t0 = 0, t1 = 1;
    const double ddx = b.x - a.x, ddy = b.y - a.y;
    const double p[4] = {-ddx, ddx, -ddy, ddy};
    const double q[4] = {a.x - lo_x, hi_x - a.x, a.y - lo_y, hi_y - a.y};
    bool visible = true;
    for (int k = 0; k < 4 && visible; ++k) {
      if (p[k] == 0) {
        if (q[k] < 0) visible = false;
      } else {
        const double t = q[k] / p[k];
        if (p[k] < 0) t0 = std::max(t0, t);
        else t1 = std::min(t1, t);
        if (t0 > t1) visible = false;
      }
    }
    const double seg_len = std::hypot(ddx, ddy);
    if (visible) {
      const double start = phase + t0 * seg_len;
      const int ax = static_cast<int>(std::lround(std::clamp(a.x + t0 * ddx, -kHuge, kHuge)));
      const int ay = static_cast<int>(std::lround(std::clamp(a.y + t0 * ddy, -kHuge, kHuge)));
      const int bx = static_cast<int>(std::lround(std::clamp(a.x + t1 * ddx, -kHuge, kHuge)));
      const int by = static_cast<int>(std::lround(std::clamp(a.y + t1 * ddy, -kHuge, kHuge)));
      Bresenham(ax, ay, bx, by, [&](int x, int y, double d) {
        if (DashOn(dash, start + d)) Stamp(x, y, c, w);
      });
    }
    phase += seg_len;
  }
}

void Canvas::FillPolygon(const std::vector<Point>& pts, Rgb c, double alpha) {
  if (pts.size() < 3) return;
  double ymin = kHuge, ymax = -kHuge;
  for (const auto& p : pts) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) return;
    ymin = std::min(ymin, p.y);
    ymax = std::max(ymax, p.y);
  }
  const int y0 = std::max(clip_.y, static_cast<int>(std::ceil(ymin)));
  const int y1 = std::min(clip_.bottom() - 1, static_cast<int>(std::floor(ymax)));
  std::vector<double> xs;
  for (int y = y0; y <= y1; ++y) {
    xs.clear();
    const double yc = y;
    for (size_t i = 0; i < pts.size(); ++i) {
      const Point& a = pts[i];
      const Point& b = pts[(i + 1) % pts.size()];
      // Half-open rule on y so shared vertices are counted once.
      if ((a.y <= yc && b.y > yc) || (b.y <= yc && a.y > yc))
        xs.push_back(a.x + (yc - a.y) * (b.x - a.x) / (b.y - a.y));
    }
    std::sort(xs.begin(), xs.end());
    for (size_t k = 0; k + 1 < xs.size(); k += 2) {
      const int xa = std::max(clip_.x, static_cast<int>(std::ceil(xs[k] - 1e-9)));
      const int xb = std::min(clip_.right() - 1, static_cast<int>(std::ceil(xs[k + 1] - 1e-9)) - 1);
      for (int x = xa; x <= xb; ++x) Blend(x, y, c, alpha);
    }
  }
}

void Canvas::DrawMarker(double x, double y, Marker m, int size, Rgb fill, Rgb edge, bool filled) {
  if (m == Marker::kNone || !std::isfinite(x) || !std::isfinite(y)) return;
  const int cx = static_cast<int>(std::lround(x)), cy = static_cast<int>(std::lround(y));
  const double r = std::max(1.0, size / 2.0);
  auto polygon = [&](const std::vector<Point>& pts) {
    if (filled) FillPolygon(pts, fill);
    std::vector<Point> closed = pts;
    closed.push_back(pts.front());
    Polyline(closed, filled ? edge : fill, 1.0);
  };
  switch (m) {
    case Marker::kCircle: {
      const int ir = static_cast<int>(std::ceil(r));
      for (int dy = -ir; dy <= ir; ++dy)
        for (int dx = -ir; dx <= ir; ++dx) {
          const double d2 = dx * dx + dy * dy;
          if (d2 > r * r + 0.3) continue;
          const bool rim = d2 > (r - 1.2) * (r - 1.2);
          if (rim) Set(cx + dx, cy + dy, filled ? edge : fill);
          else if (filled) Set(cx + dx, cy + dy, fill);
        }
      break;
    }
    case Marker::kSquare: {
      const double h = r * 0.85;
      polygon({{cx - h, cy - h}, {cx + h, cy - h}, {cx + h, cy + h}, {cx - h, cy + h}});
      break;
    }
    case Marker::kTriangle:
      polygon({{static_cast<double>(cx), cy - r}, {cx + r, cy + r * 0.75}, {cx - r, cy + r * 0.75}});
      break;
    case Marker::kDiamond:
      polygon({{static_cast<double>(cx), cy - r}, {cx + r, static_cast<double>(cy)},
               {static_cast<double>(cx), cy + r}, {cx - r, static_cast<double>(cy)}});
      break;
    case Marker::kCross: {
      const double h = r * 0.8;
      Line(cx - h, cy - h, cx + h, cy + h, fill, 2);
      Line(cx - h, cy + h, cx + h, cy - h, fill, 2);
      break;
    }
    case Marker::kPlus:
      Line(cx - r, cy, cx + r, cy, fill, 2);
      Line(cx, cy - r, cx, cy + r, fill, 2);
      break;
    case Marker::kNone:
      break;
  }
}

TextSize Canvas::Text(double x, double y, const std::string& text, const TextStyle& st) {
  const int sc = std::max(1, st.scale);
  const TextSize size = MeasureText(text, sc, st.markup, st.bold);
  // Offsets of the line's start and baseline from the anchor, in the text's own frame.
  double u0 = 0, v0 = 0;  // u along the text, v down from the baseline
  if (st.halign == HAlign::kCenter) u0 = -size.width / 2.0;
  if (st.halign == HAlign::kRight) u0 = -size.width;
  switch (st.valign) {
    case VAlign::kTop: v0 = size.ascent; break;
    case VAlign::kMiddle: v0 = (size.ascent - size.descent) / 2.0; break;
    case VAlign::kBaseline: v0 = 0; break;
    case VAlign::kBottom: v0 = -size.descent; break;
  }
  const int ax = static_cast<int>(std::lround(x)), ay = static_cast<int>(std::lround(y));
  const int iu0 = static_cast<int>(std::lround(u0)), iv0 = static_cast<int>(std::lround(v0));
  auto plot = [&](int u, int v) {  // u, v relative to the line start / baseline
    if (st.vertical) Set(ax + (v + iv0), ay - (u + iu0), st.color);
    else Set(ax + u + iu0, ay + v + iv0, st.color);
  };
  for (const auto& r : font::Layout(text, sc, st.markup, st.bold)) {
    const font::Glyph& g = *r.glyph;
    for (int row = 0; row < font::kRows; ++row) {
      const uint8_t bits = g.rows[static_cast<size_t>(row)];
      if (!bits) continue;
      for (int col = 0; col < font::kCols; ++col) {
        if (!(bits & (1u << col))) continue;
        const int pu = r.x + (col - g.left) * r.scale;
        const int pv = (row - font::kAscent) * r.scale + r.shift;
        for (int sy = 0; sy < r.scale; ++sy)
          for (int sx = 0; sx < r.scale + (st.bold ? 1 : 0); ++sx) plot(pu + sx, pv + sy);
      }
    }
  }
  return size;
}

}  // namespace cubeflow::plot
