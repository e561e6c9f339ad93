// PNG figures of `cubeflow evaluate` (CNN: Galceran et al. 2026 Figs. 4, 5, 8; SBI: coverage,
// SBC ranks, medians versus truth), drawn with cubeflow::plot. No libtorch here.
#include "cubeflow/nn/eval_figures.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include "cubeflow/plot/colormap.hpp"
#include "cubeflow/plot/ticks.hpp"

namespace cubeflow::evalfig {

namespace {

using plot::Figure;
using plot::Rgb;
using plot::XYPanel;
namespace colors = plot::colors;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const Rgb kOneToOne = Rgb::Hex(0xd62728);  // red: visible on every part of viridis

Result<Written> Save(const Figure& fig, const std::string& path, std::vector<std::string> panels) {
  Written w;
  w.path = path;
  w.width = fig.width();
  w.height = fig.height();
  CUBEFLOW_RETURN_NOT_OK(fig.Save(path, &w.layout));
  w.panels = std::move(panels);
  return w;
}

double Finite(const std::vector<double>& v, size_t i) { return i < v.size() ? v[i] : kNaN; }

}  // namespace

std::string DisplayName(const std::string& name) {
  if (name.size() >= 2 && name[0] == 't' &&
      std::all_of(name.begin() + 1, name.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return "t_{" + name.substr(1) + "}";
  if (name == "mh") return "[M/H]";
  if (name == "zh") return "[Z/H]";
  return name;
}

int DensityBins(int64_t n) {
  return std::clamp(static_cast<int>(std::lround(std::sqrt(static_cast<double>(std::max<int64_t>(n, 0))) / 1.5)),
                    12, 60);
}

Result<Written> WriteTruthVsPrediction(const std::string& path, const std::string& title,
                                       const std::vector<TruthPrediction>& panels, int cols,
                                       const std::string& predicted_word, int cell_width, int cell_height) {
  if (panels.empty()) return Status::Error(path + ": no panels to draw");
  cols = std::clamp(cols, 1, static_cast<int>(panels.size()));
  const int rows = (static_cast<int>(panels.size()) + cols - 1) / cols;
  Figure fig(rows, cols, cell_width, cell_height);
  fig.title = title;
  std::vector<std::string> names;
  for (size_t k = 0; k < panels.size(); ++k) {
    const TruthPrediction& p = panels[k];
    const int r = static_cast<int>(k) / cols, c = static_cast<int>(k) % cols;
    std::vector<double> t, y, all;
    for (size_t i = 0; i < p.truth.size() && i < p.predicted.size(); ++i) {
      if (!std::isfinite(p.truth[i]) || !std::isfinite(p.predicted[i])) continue;
      t.push_back(p.truth[i]);
      y.push_back(p.predicted[i]);
      all.push_back(p.truth[i]);
      all.push_back(p.predicted[i]);
    }
    names.push_back(p.title);
    if (t.empty()) {
      auto& note = fig.Note(r, c, p.empty_note.empty() ? "no finite values" : p.empty_note);
      note.title = p.title;
      continue;
    }
    // Equal axes over the 0.1-99.9 % range of truths and predictions together (a few wild
    // predictions do not squash the rest), padded by 3 %.
    double lo = plot::Percentile(all, 0.1), hi = plot::Percentile(all, 99.9);
    if (!(hi > lo)) {
      const double d = lo == 0 ? 0.5 : std::fabs(lo) * 0.05;
      lo -= d;
      hi += d;
    }
    const double pad = 0.03 * (hi - lo);
    lo -= pad;
    hi += pad;
    XYPanel& xy = fig.XY(r, c);
    xy.title = p.title;
    xy.x.label = "true " + p.quantity;
    xy.y.label = predicted_word + " " + p.quantity;
    xy.x.lo = xy.y.lo = lo;
    xy.x.hi = xy.y.hi = hi;
    xy.legend = plot::LegendPos::kNone;
    xy.aspect = 1;
    const int nb = DensityBins(static_cast<int64_t>(t.size()));
    xy.Hist2D(std::move(t), std::move(y), nb, nb, "viridis", "objects per cell");
    xy.Line({lo, hi}, {lo, hi}, {.color = kOneToOne, .width = 2, .dash = {8, 5}});
    if (!p.annotation.empty())
      xy.Annotate(0.03, 0.97, p.annotation, plot::HAlign::kLeft, plot::VAlign::kTop, std::nullopt, true);
  }
  return Save(fig, path, std::move(names));
}

Result<Written> WriteAgeBinErrors(const std::string& path, const std::string& title, const AgeBinErrors& b) {
  if (b.age_gyr.empty()) return Status::Error(path + ": no age bins to draw");
  Figure fig(1, 2, kPanelWidth, kPanelHeight);
  fig.title = title;
  std::vector<double> age, rel, lo, hi;
  for (size_t j = 0; j < b.age_gyr.size(); ++j) {
    if (!(b.age_gyr[j] > 0)) continue;
    age.push_back(b.age_gyr[j]);
    const double e = Finite(b.rel_error, j), s = Finite(b.rel_sd, j);
    rel.push_back(e);
    lo.push_back(std::isfinite(e) && std::isfinite(s) ? e - s : kNaN);
    hi.push_back(std::isfinite(e) && std::isfinite(s) ? e + s : kNaN);
  }
  XYPanel& left = fig.XY(0, 0);
  left.title = "Relative error per age bin";
  left.x.label = "age-bin centre (Gyr)";
  left.x.log = true;
  left.y.label = "⟨true − predicted⟩ / ⟨true⟩";
  const Rgb blue = colors::Cycle()[0], orange = colors::Cycle()[1];
  left.HLine(0, {.color = colors::kGrey, .width = 1, .dash = {6, 4}});
  left.Band(age, lo, hi, {.color = blue, .alpha = 0.22, .label = "±1σ over objects"});
  left.Line(age, rel, {.color = blue, .width = 2, .marker = plot::Marker::kCircle, .marker_size = 8,
                       .label = "mean relative error"});

  XYPanel& right = fig.XY(0, 1);
  right.title = "Mean mass fraction per age bin";
  right.x.label = "age-bin centre (Gyr)";
  right.x.log = true;
  right.y.label = "mean mass fraction";
  right.y.log = true;
  std::vector<double> mt, mp;
  for (size_t j = 0; j < b.age_gyr.size(); ++j)
    if (b.age_gyr[j] > 0) {
      mt.push_back(Finite(b.mean_true, j));
      mp.push_back(Finite(b.mean_pred, j));
    }
  right.Line(age, mt, {.color = colors::kBlack, .width = 2, .marker = plot::Marker::kCircle, .marker_size = 8,
                       .label = "true"});
  right.Line(age, mp, {.color = orange, .width = 2, .dash = {7, 4}, .marker = plot::Marker::kSquare,
                       .marker_size = 8, .label = "predicted"});
  return Save(fig, path, {left.title, right.title});
}

Result<Written> WriteSnrTrends(const std::string& path, const std::string& title, const std::vector<double>& snr,
                               const std::vector<SnrQuantity>& quantities, const std::string& bias_label) {
  if (snr.empty()) return Status::Error(path + ": no S/N levels to draw");
  Figure fig(2, 2, kPanelWidth, kPanelHeight);
  fig.title = title;
  const char* col_name[2] = {"log age", "[Z/H]"};
  std::vector<std::string> names;
  XYPanel* panel[2][2];
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 2; ++c) {
      XYPanel& xy = fig.XY(r, c);
      panel[r][c] = &xy;
      xy.title = std::string(r == 0 ? "Bias" : "Scatter") + " of " + col_name[c] + " versus S/N";
      xy.x.label = "S/N per pixel";
      xy.x.log = true;
      xy.x.ticks = snr;  // label the S/N levels of the sweep
      xy.y.label = r == 0 ? bias_label + " (dex)" : "scatter: standard deviation (dex)";
      xy.grid = true;
      if (r == 0) xy.HLine(0, {.color = colors::kGrey, .width = 1, .dash = {6, 4}});
      names.push_back(xy.title);
    }
  const plot::Marker markers[] = {plot::Marker::kCircle, plot::Marker::kSquare, plot::Marker::kTriangle,
                                  plot::Marker::kDiamond};
  int n_in_col[2] = {0, 0};
  for (const SnrQuantity& q : quantities) {
    const int c = q.age ? 0 : 1;
    const int k = n_in_col[c]++;
    const Rgb col = colors::Cycle()[static_cast<size_t>(k) % colors::Cycle().size()];
    std::vector<int> dash;
    if (k % 2 == 1) dash = {7, 4};
    for (int r = 0; r < 2; ++r)
      panel[r][c]->Line(snr, r == 0 ? q.bias : q.scatter,
                        {.color = col, .width = 2, .dash = dash, .marker = markers[k % 4], .marker_size = 9,
                         .label = q.label});
  }
  return Save(fig, path, std::move(names));
}

Result<Written> WriteCoverage(const std::string& path, const std::string& title, const std::vector<std::string>& names,
                              const std::vector<double>& levels, const std::vector<std::vector<double>>& coverage,
                              int64_t n_objects) {
  if (names.empty() || levels.empty()) return Status::Error(path + ": no coverage curves to draw");
  Figure fig(1, 2, 600, 560);
  fig.title = title + "\ndashed: calibrated; grey: 95 % range of a calibrated posterior's coverage with " +
              std::to_string(n_objects) + " truths (binomial)";
  // 95 % range of the empirical coverage of a calibrated posterior: binomial with n truths.
  std::vector<double> grid, lo, hi, dlo, dhi;
  double max_dev = 0;
  const double n = static_cast<double>(std::max<int64_t>(n_objects, 1));
  for (int i = 0; i <= 100; ++i) {
    const double l = i / 100.0, s = 1.96 * std::sqrt(l * (1 - l) / n);
    grid.push_back(l);
    lo.push_back(l - s);
    hi.push_back(l + s);
    dlo.push_back(-s);
    dhi.push_back(s);
    max_dev = std::max(max_dev, s);
  }
  XYPanel& left = fig.XY(0, 0);
  left.title = "Expected coverage";
  left.x.label = "credible level of the central interval";
  left.y.label = "fraction of truths inside";
  left.x.lo = left.y.lo = 0;
  left.x.hi = left.y.hi = 1;
  left.grid = true;
  left.legend = plot::LegendPos::kUpperLeft;  // above the diagonal, where calibrated curves never go
  left.Band(grid, lo, hi, {.color = colors::kGrey, .alpha = 0.3});
  left.Line({0, 1}, {0, 1}, {.color = colors::kBlack, .width = 1, .dash = {6, 4}});
  XYPanel& right = fig.XY(0, 1);
  right.title = "Coverage minus nominal level";
  right.x.label = "credible level of the central interval";
  right.y.label = "empirical − nominal";
  right.x.lo = 0;
  right.x.hi = 1;
  right.grid = true;
  right.legend = plot::LegendPos::kNone;  // same colours as the left panel
  right.Band(grid, dlo, dhi, {.color = colors::kGrey, .alpha = 0.3});
  right.HLine(0, {.color = colors::kBlack, .width = 1, .dash = {6, 4}});
  const auto& cyc = colors::Cycle();
  for (size_t k = 0; k < names.size(); ++k) {
    const std::vector<double> cov = k < coverage.size() ? coverage[k] : std::vector<double>{};
    std::vector<double> x, y, d;
    for (size_t l = 0; l < levels.size() && l < cov.size(); ++l) {
      x.push_back(levels[l]);
      y.push_back(cov[l]);
      d.push_back(cov[l] - levels[l]);
      if (std::isfinite(d.back())) max_dev = std::max(max_dev, std::fabs(d.back()));
    }
    const Rgb col = cyc[k % cyc.size()];
    // Beyond ten parameters the colours repeat with dashes.
    std::vector<int> dash;
    if (k >= cyc.size()) dash = {6, 3};
    left.Line(x, y, {.color = col, .width = 2, .dash = dash, .marker = plot::Marker::kCircle, .marker_size = 6,
                     .label = DisplayName(names[k])});
    right.Line(x, d, {.color = col, .width = 2, .dash = dash, .marker = plot::Marker::kCircle, .marker_size = 6});
  }
  const double ylim = std::max(0.02, 1.15 * max_dev);
  right.y.lo = -ylim;
  right.y.hi = ylim;
  return Save(fig, path, {left.title, right.title});
}

Result<Written> WriteSbcRanks(const std::string& path, const std::string& title, const std::vector<std::string>& names,
                              const std::vector<std::vector<int64_t>>& ranks, const std::vector<double>& chi2) {
  if (names.empty()) return Status::Error(path + ": no rank histograms to draw");
  const int np = static_cast<int>(names.size());
  const int cols = std::min(np, 5), rows = (np + cols - 1) / cols;
  Figure fig(rows, cols, kGridPanelWidth, kGridPanelHeight);
  fig.title = title;
  std::vector<std::string> titles;
  for (int k = 0; k < np; ++k) {
    const std::vector<int64_t> h = k < static_cast<int>(ranks.size()) ? ranks[k] : std::vector<int64_t>{};
    XYPanel& xy = fig.XY(k / cols, k % cols);
    xy.title = DisplayName(names[k]);
    if (k < static_cast<int>(chi2.size()) && std::isfinite(chi2[k]))
      xy.title += ":  chi^{2} = " + plot::FormatNumber(chi2[k], 3);
    titles.push_back(xy.title);
    xy.x.label = "normalised rank of the truth";
    xy.y.label = "objects per bin";
    xy.x.lo = 0;
    xy.x.hi = 1;
    xy.legend = plot::LegendPos::kNone;
    const size_t nb = h.size();
    if (nb == 0) continue;
    double total = 0, top = 0;
    std::vector<double> edges, counts;
    for (size_t b = 0; b <= nb; ++b) edges.push_back(static_cast<double>(b) / nb);
    for (int64_t v : h) {
      counts.push_back(static_cast<double>(v));
      total += static_cast<double>(v);
      top = std::max(top, static_cast<double>(v));
    }
    // Uniform ranks: each bin ~ Binomial(total, 1 / nb); pointwise 99 % range (normal approx.).
    const double p = 1.0 / nb, e = total * p, s = 2.576 * std::sqrt(total * p * (1 - p));
    xy.y.lo = 0;
    xy.y.hi = std::max({top, e + s, 1.0}) * 1.12;
    xy.Band({0, 1}, {std::max(0.0, e - s), std::max(0.0, e - s)}, {e + s, e + s},
            {.color = colors::kGrey, .alpha = 0.35});
    xy.Bars(edges, counts, {.color = colors::Cycle()[0], .width = 1.5});
    xy.HLine(e, {.color = colors::kBlack, .width = 1, .dash = {6, 4}});
  }
  return Save(fig, path, std::move(titles));
}

}  // namespace cubeflow::evalfig
