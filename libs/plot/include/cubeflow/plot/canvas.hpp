#pragma once
/// \file canvas.hpp
/// \brief An 8-bit RGB raster with crisp (not anti-aliased) drawing primitives and text in
/// an embedded 5x7 bitmap font (printable ASCII plus ° ± ′ ″ × − ≤ ≥ α δ λ μ σ Δ ☉ Å),
/// scalable by integer factors and rotatable by 90 degrees.
///
/// Coordinates are in pixels, x to the right and y down; the centre of pixel (i, j) is at
/// (i, j). Everything drawn is clipped to the canvas and to the clip rectangle. A Canvas is a
/// plain value: not synchronised, use one per thread.

#include <cstdint>
#include <string>
#include <vector>

#include "cubeflow/plot/png.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::plot {

/// \brief An 8-bit sRGB colour.
struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  constexpr Rgb() = default;
  constexpr Rgb(uint8_t r_, uint8_t g_, uint8_t b_) : r(r_), g(g_), b(b_) {}
  /// From 0xRRGGBB.
  static constexpr Rgb Hex(uint32_t v) {
    return Rgb(static_cast<uint8_t>((v >> 16) & 0xff), static_cast<uint8_t>((v >> 8) & 0xff),
               static_cast<uint8_t>(v & 0xff));
  }
  /// Linear mix: (1 - t) * this + t * other.
  Rgb Mix(Rgb other, double t) const;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

namespace colors {
inline constexpr Rgb kBlack{0, 0, 0};
inline constexpr Rgb kWhite{255, 255, 255};
inline constexpr Rgb kGrey{128, 128, 128};
inline constexpr Rgb kLightGrey{211, 211, 211};
/// The ten colours of the "tab10" qualitative cycle (blue, orange, green, red, purple, ...).
const std::vector<Rgb>& Cycle();
}  // namespace colors

struct Point {
  double x = 0, y = 0;
};

/// \brief An integer pixel rectangle [x, x + w) x [y, y + h).
struct Rect {
  int x = 0, y = 0, w = 0, h = 0;
  int right() const { return x + w; }
  int bottom() const { return y + h; }
  bool Contains(int px, int py) const { return px >= x && px < x + w && py >= y && py < y + h; }
  bool empty() const { return w <= 0 || h <= 0; }
};

enum class Marker { kNone, kCircle, kSquare, kTriangle, kDiamond, kCross, kPlus };
enum class HAlign { kLeft, kCenter, kRight };
enum class VAlign { kTop, kMiddle, kBaseline, kBottom };

/// \brief How text is drawn. With `markup`, "^{...}" and "_{...}" set super- and subscripts
/// (one integer scale step smaller); a lone '^' or '_' is drawn as is.
struct TextStyle {
  int scale = 2;                ///< glyph pixel size (the font is 5x7: caps are 7 * scale tall)
  Rgb color = colors::kBlack;
  HAlign halign = HAlign::kLeft;
  VAlign valign = VAlign::kBaseline;
  bool vertical = false;        ///< rotated 90 degrees counter-clockwise (reads bottom to top)
  bool bold = false;            ///< each stroke doubled one pixel to the right
  bool markup = true;
};

/// \brief Extent of a text line in its own frame (before rotation), in pixels.
struct TextSize {
  int width = 0;    ///< advance of the whole line
  int ascent = 0;   ///< above the baseline (caps, raised superscripts)
  int descent = 0;  ///< below the baseline (descenders, lowered subscripts)
  int height() const { return ascent + descent; }
};

/// Measures a line of UTF-8 text (see TextStyle for the markup).
TextSize MeasureText(const std::string& text, int scale, bool markup = true, bool bold = false);

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = colors::kWhite);

  int width() const { return image_.width; }
  int height() const { return image_.height; }
  const RgbImage& image() const { return image_; }

  /// Colour of a pixel; black outside the canvas.
  Rgb Get(int x, int y) const;
  /// Sets a pixel (clipped).
  void Set(int x, int y, Rgb c);
  /// Blends `c` over a pixel with opacity `alpha` in [0, 1] (clipped).
  void Blend(int x, int y, Rgb c, double alpha);

  void SetClip(const Rect& r);
  void ResetClip();
  const Rect& clip() const { return clip_; }

  void Clear(Rgb c);
  void FillRect(const Rect& r, Rgb c, double alpha = 1.0);
  /// Outline drawn inside `r`, `width` pixels thick.
  void StrokeRect(const Rect& r, Rgb c, int width = 1);
  /// Straight line between pixel centres. `width` >= 1 (a square brush up to 2 pixels, a round
  /// one above). `dash` alternates on/off lengths in pixels (empty: solid).
  void Line(double x0, double y0, double x1, double y1, Rgb c, double width = 1.0,
            const std::vector<int>& dash = {});
  /// Connected line segments; the dash pattern continues across vertices. Non-finite points
  /// break the line.
  void Polyline(const std::vector<Point>& pts, Rgb c, double width = 1.0, const std::vector<int>& dash = {});
  /// Fills a simple or self-intersecting polygon (even-odd rule): pixels whose centre is inside.
  void FillPolygon(const std::vector<Point>& pts, Rgb c, double alpha = 1.0);
  /// A marker of about `size` pixels centred on (x, y); filled markers get an `edge` outline.
  void DrawMarker(double x, double y, Marker m, int size, Rgb fill, Rgb edge, bool filled = true);
  /// Draws one line of text anchored at (x, y) (see TextStyle). Returns its size.
  TextSize Text(double x, double y, const std::string& text, const TextStyle& style);

  /// Writes the canvas as a PNG file (atomically).
  Status SavePng(const std::string& path) const { return WritePng(path, image_); }

 private:
  void Stamp(int x, int y, Rgb c, int width);
  RgbImage image_;
  Rect clip_;
};

}  // namespace cubeflow::plot
