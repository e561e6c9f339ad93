#pragma once
/// \file figure.hpp
/// \brief Figures made of panels on a grid: line / step / bar / error-band / scatter /
/// 2-D density panels with nice ticks and legends, and image panels (2-D maps) with colour
/// bars and sky-coordinate axes from a celestial WCS.
///
/// Usage:
/// \code
///   Figure fig(1, 2, 560, 460);
///   fig.title = "NGC 3627";
///   auto& img = fig.Image(0, 0);
///   img.SetData(nx, ny, values);          // index y * nx + x, y = 0 at the bottom (FITS order)
///   img.wcs = *fits::Wcs::FromCards(cards);
///   auto& xy = fig.XY(0, 1);
///   xy.x.log = true;
///   xy.Line(ages, frac, {.label = "SFH"});
///   fig.Save("out.png");
/// \endcode
/// Rendering is deterministic and single-threaded; a Figure is not synchronised.

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cubeflow/fits/wcs.hpp"
#include "cubeflow/plot/canvas.hpp"
#include "cubeflow/plot/colormap.hpp"
#include "cubeflow/plot/ticks.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::plot {

/// \brief Sizes and colours shared by all panels of a figure (pixels).
struct Theme {
  int font_scale = 2;      ///< tick labels, axis labels, legends, colour-bar labels
  int title_scale = 2;     ///< panel titles (bold)
  int suptitle_scale = 3;  ///< figure title (bold)
  int tick_length = 7;
  int minor_tick_length = 4;
  int pad = 6;             ///< generic gap
  int colorbar_width = 16;
  Rgb foreground = colors::kBlack;
  Rgb background = colors::kWhite;
  Rgb legend_edge{160, 160, 160};
};

/// \brief One axis of an XY panel. NaN limits are automatic (data range, 4 % padding).
struct AxisSpec {
  std::string label;
  bool log = false;
  double lo = std::numeric_limits<double>::quiet_NaN();
  double hi = std::numeric_limits<double>::quiet_NaN();
  bool invert = false;
  /// Explicit labelled ticks (e.g. the S/N levels of a sweep) instead of automatic ones; those
  /// outside the axis range, or whose labels would overlap the previous one, are left out.
  /// Minor ticks stay automatic.
  std::vector<double> ticks;
};

/// \brief How a series is drawn. A default colour takes the next one of colors::Cycle().
struct Style {
  std::optional<Rgb> color;
  double width = 2;            ///< line width (pixels)
  std::vector<int> dash;       ///< on/off pixel lengths; empty: solid
  Marker marker = Marker::kNone;
  int marker_size = 9;
  double alpha = 1.0;          ///< fills (bands, bars)
  std::string label;           ///< legend entry ("" = none)
};

enum class LegendPos { kNone, kBest, kUpperLeft, kUpperRight, kLowerLeft, kLowerRight };

/// \brief Where a panel was drawn (for callers and tests): canvas pixel rectangles.
struct PanelLayout {
  int row = 0, col = 0;
  Rect cell;      ///< the grid cell
  Rect plot;      ///< the data area (for an image: the map, data pixel (x, y) covers
                  ///< [plot.x + x * plot.w / nx, ...) with y = 0 at the bottom row)
  Rect colorbar;  ///< empty when there is none
};

/// \brief Base of all panels.
class Panel {
 public:
  virtual ~Panel() = default;
  std::string title;
  /// Draws the panel inside `cell`; fills `out` with where things went.
  virtual void Draw(Canvas& canvas, const Rect& cell, const Theme& theme, PanelLayout& out) const = 0;
};

/// \brief A panel with cartesian data axes.
class XYPanel : public Panel {
 public:
  AxisSpec x, y;
  LegendPos legend = LegendPos::kBest;
  bool grid = false;  ///< faint lines at the major ticks
  /// > 0: the data area's height / width in pixels (1: square, e.g. for equal axes of a 1:1
  /// plot); it is shrunk to that shape and centred in the space the cell leaves. 0: fill it.
  double aspect = 0;

  /// Polyline through (x, y); NaN points break the line. Markers if style.marker is set.
  XYPanel& Line(std::vector<double> x, std::vector<double> y, Style style = {});
  /// Markers only.
  XYPanel& Points(std::vector<double> x, std::vector<double> y, Style style = {});
  /// Histogram-style steps: values[i] spans [edges[i], edges[i + 1]].
  XYPanel& Step(std::vector<double> edges, std::vector<double> values, Style style = {});
  /// Filled bars from y = 0 (or the axis bottom on a log axis) with an outline.
  XYPanel& Bars(std::vector<double> edges, std::vector<double> values, Style style = {});
  /// Vertical error bars from lo[i] to hi[i] at x[i] with caps (absolute values, not offsets).
  XYPanel& ErrorBars(std::vector<double> x, std::vector<double> lo, std::vector<double> hi, Style style = {});
  /// Filled band between lo and hi (default alpha 0.25).
  XYPanel& Band(std::vector<double> x, std::vector<double> lo, std::vector<double> hi, Style style = {});
  XYPanel& HLine(double y, Style style = {});
  XYPanel& VLine(double x, Style style = {});
  /// 2-D histogram of (x, y) points with a log colour scale and a colour bar (one per panel).
  XYPanel& Hist2D(std::vector<double> x, std::vector<double> y, int nx_bins = 60, int ny_bins = 60,
                  const std::string& colormap = "viridis", const std::string& colorbar_label = "N");
  /// Text at a position in axes fractions (0, 0 bottom-left .. 1, 1 top-right); h / v align
  /// the whole block there. '\n' starts a new line (lines aligned by h). With `box`, the block
  /// sits on a translucent background-coloured box with the legend's edge (readable over
  /// 2-D histograms), and the legend (LegendPos::kBest) avoids it.
  XYPanel& Annotate(double fx, double fy, std::string text, HAlign h = HAlign::kLeft, VAlign v = VAlign::kTop,
                    std::optional<Rgb> color = {}, bool box = false);

  void Draw(Canvas& canvas, const Rect& cell, const Theme& theme, PanelLayout& out) const override;

  struct Item;  ///< (internal) one drawn element

 private:
  Style Next(Style s);
  std::vector<std::shared_ptr<Item>> items_;
  int next_color_ = 0;
};

/// \brief A 2-D map with a colour bar and pixel or sky axes.
class ImagePanel : public Panel {
 public:
  /// Values in FITS order: index y * nx + x, row y = 0 drawn at the bottom. NaN = undefined.
  void SetData(int64_t nx, int64_t ny, std::vector<double> values);
  int64_t nx() const { return nx_; }
  int64_t ny() const { return ny_; }
  const std::vector<double>& data() const { return data_; }

  Colormap colormap = Colormap("viridis", {Rgb::Hex(0x440154), Rgb::Hex(0xfde725)});
  Norm::Scale scale = Norm::Scale::kLinear;
  /// Colour limits; NaN = the percentiles below of the finite values.
  double vmin = std::numeric_limits<double>::quiet_NaN();
  double vmax = std::numeric_limits<double>::quiet_NaN();
  double lo_percentile = 1.0, hi_percentile = 99.0;
  /// Integer labels (e.g. BINID): each value gets a distinct colour, no colour bar.
  bool categorical = false;
  bool colorbar = true;
  /// Keep the colour bar's space even when none is drawn (same map size as its neighbours).
  bool reserve_colorbar = false;
  std::string colorbar_label;
  /// With a WCS, the axes show RA / Dec ticks where the coordinate lines cross the bottom and
  /// left edges (whichever of RA and Dec varies more along the bottom edge goes there), labelled
  /// ra_label / dec_label. Without one, pixel ticks labelled x_label / y_label.
  std::optional<fits::Wcs> wcs;
  SkyFormat sky_format = SkyFormat::kSexagesimal;
  std::string ra_label = "RA", dec_label = "Dec";
  std::string x_label = "x (pixel)", y_label = "y (pixel)";
  /// Optional region to outline (nx * ny, nonzero = inside), e.g. a selected bin.
  std::vector<uint8_t> outline;
  /// Optional markers (rings about 26 pixels across) around data-pixel positions.
  std::vector<Point> markers;
  /// Text shown instead of the map when there are no data (e.g. "no MW_AGE extension").
  std::string note;

  /// The colour limits used (after the automatic ones are resolved).
  Norm ResolvedNorm() const;
  void Draw(Canvas& canvas, const Rect& cell, const Theme& theme, PanelLayout& out) const override;

 private:
  int64_t nx_ = 0, ny_ = 0;
  std::vector<double> data_;
};

/// \brief A cell with only a centred message (e.g. "MW_LOGAGE missing").
class NotePanel : public Panel {
 public:
  std::string text;
  void Draw(Canvas& canvas, const Rect& cell, const Theme& theme, PanelLayout& out) const override;
};

/// \brief A grid of panels with an optional figure title.
class Figure {
 public:
  Figure(int rows, int cols, int cell_width, int cell_height);

  Theme theme;
  std::string title;

  /// The panel of cell (row, col), replacing what was there. A cell outside the grid is a
  /// programming error: cubeflow::Error.
  XYPanel& XY(int row, int col);
  ImagePanel& Image(int row, int col);
  NotePanel& Note(int row, int col, std::string text);

  int rows() const { return rows_; }
  int cols() const { return cols_; }
  /// Canvas size in pixels.
  int width() const;
  int height() const;

  /// Draws every panel; `layout` (optional) receives one entry per non-empty cell.
  Canvas Render(std::vector<PanelLayout>* layout = nullptr) const;
  /// Renders and writes a PNG atomically.
  Status Save(const std::string& path, std::vector<PanelLayout>* layout = nullptr) const;

 private:
  int TitleHeight() const;
  template <typename T>
  T& Put(int row, int col, std::unique_ptr<T> p);
  int rows_, cols_, cell_w_, cell_h_;
  std::vector<std::unique_ptr<Panel>> panels_;
};

/// Distinct colour for an integer label (categorical maps), stable across runs.
Rgb CategoricalColor(int64_t label);

}  // namespace cubeflow::plot
