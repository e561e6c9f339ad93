// Figures of `cubeflow evaluate` (libs/nn/src/eval_figures.cpp): the drawing
// functions on inputs with known answers (is each thing where its value says), and the CNN and
// SBI evaluate commands end to end on a small simulated library with the shipped models (the
// PNGs decode, have the documented size and show content).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cubeflow/plot/colormap.hpp"
#include "cubeflow/plot/png.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/nn/commands.hpp"
#include "cubeflow/nn/eval_figures.hpp"
#include "cubeflow/nn/sbi_train.hpp"
#include "test_data.hpp"


using namespace cubeflow;
using plot::Rect;
using plot::Rgb;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "cubeflow-evalfig-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Rgb At(const plot::RgbImage& im, int x, int y) {
  const size_t i = (static_cast<size_t>(y) * im.width + x) * 3;
  return Rgb(im.rgb[i], im.rgb[i + 1], im.rgb[i + 2]);
}

/// Pixel of a value on a linear XY axis (XYPanel: lo at the first pixel, hi at the last).
double Px(const Rect& p, double lo, double hi, double v) { return p.x + (v - lo) / (hi - lo) * (p.right() - 1 - p.x); }
double Py(const Rect& p, double lo, double hi, double v) {
  return p.bottom() - 1 + (v - lo) / (hi - lo) * (p.y - (p.bottom() - 1));
}

/// Whether a colour is on the viridis map (within a few levels of one of 256 samples).
bool IsViridis(Rgb c) {
  static const plot::Colormap cm = *plot::Colormap::Named("viridis");
  for (int i = 0; i <= 255; ++i) {
    const Rgb v = cm.At(i / 255.0);
    if (std::abs(v.r - c.r) + std::abs(v.g - c.g) + std::abs(v.b - c.b) <= 9) return true;
  }
  return false;
}

/// Whether `want` occurs within `r` pixels of (x, y).
bool Near(const plot::RgbImage& im, double x, double y, Rgb want, int r = 2) {
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx) {
      const int xx = static_cast<int>(std::lround(x)) + dx, yy = static_cast<int>(std::lround(y)) + dy;
      if (xx >= 0 && yy >= 0 && xx < im.width && yy < im.height && At(im, xx, yy) == want) return true;
    }
  return false;
}

struct Content {
  size_t colours = 0;       // distinct colours
  double non_white = 0;     // fraction of pixels that are not white
  size_t chromatic = 0;     // pixels that are not neutral (white, black, grey: axes and text)
  size_t viridis = 0;       // chromatic pixels on the viridis map
};

Content Inspect(const plot::RgbImage& im) {
  Content c;
  std::set<uint32_t> seen;
  size_t nw = 0;
  for (int y = 0; y < im.height; ++y)
    for (int x = 0; x < im.width; ++x) {
      const Rgb p = At(im, x, y);
      seen.insert((uint32_t{p.r} << 16) | (uint32_t{p.g} << 8) | p.b);
      if (p != plot::colors::kWhite) ++nw;
      if (p.r == p.g && p.g == p.b) continue;
      ++c.chromatic;
      if (IsViridis(p)) ++c.viridis;
    }
  c.colours = seen.size();
  c.non_white = static_cast<double>(nw) / (static_cast<double>(im.width) * im.height);
  return c;
}

/// Decodes a written PNG and checks its size: `cols` cells of `cell_w` wide, `rows` cells of
/// `cell_h` plus a title of 1-3 lines tall; then that it shows data.
plot::RgbImage CheckPng(const std::string& path, int cols, int rows, int cell_w, int cell_h) {
  auto im = plot::ReadPng(path);
  EXPECT_TRUE(im.ok()) << path << ": " << (im.ok() ? "" : im.status().message());
  if (!im.ok()) return {};
  EXPECT_EQ(im->width, cols * cell_w) << path;
  EXPECT_GT(im->height, rows * cell_h + 20) << path << " (no title?)";
  EXPECT_LE(im->height, rows * cell_h + 160) << path;
  // Not blank: besides the neutral axes and text, data drawn in colour; not a flood either.
  const Content c = Inspect(*im);
  EXPECT_GE(c.colours, 5u) << path;
  EXPECT_GT(c.chromatic, 1000u) << path << ": no data drawn?";
  EXPECT_GT(c.non_white, 0.015) << path;
  EXPECT_LT(c.non_white, 0.7) << path;
  return *im;
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}

int RunMain(int (*fn)(int, char**), std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return fn(static_cast<int>(argv.size()), argv.data());
}

const std::vector<double> kLevels = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99};

/// A library of the shipped models' configuration (built-in SSPs, default grid and bands).
std::string MakeLibraryFile(const std::string& path, int64_t n, uint64_t seed, bool noise) {
  sim::SimConfig cfg;
  cfg.noise.enabled = noise;
  auto fm = sim::ForwardModel::Build(sim::BuiltinSsp(), cfg);
  if (!fm.ok()) return fm.status().message();
  const Status st = sim::WriteLibrary(path, sim::SimulateLibrary(**fm, 0, n, seed, 0));
  return st.ok() ? "" : st.message();
}

}  // namespace

// ---------------------------------------------------------------- drawing functions

TEST(EvalFigures, TruthVsPredictionPutsTheDensityWhereThePairsAre) {
  TempDir dir;
  std::vector<evalfig::TruthPrediction> panels(3);
  for (int i = 0; i < 3000; ++i) {
    const double t = (i + 0.5) / 3000.0;
    panels[0].truth.push_back(t);
    panels[0].predicted.push_back(t);          // exact: on the 1:1 line
    panels[1].truth.push_back(t);
    panels[1].predicted.push_back(1.0 - t);    // anti-correlated
  }
  panels[0].title = "exact";
  panels[0].quantity = "x";
  panels[0].annotation = "bias = 0\nN = 3000";
  panels[1].title = "anti";
  panels[1].quantity = "x";
  panels[2].title = "empty";
  panels[2].truth = {std::nan("")};
  panels[2].predicted = {1};
  panels[2].empty_note = "no light fractions";
  const std::string path = dir.File("tp.png");
  auto w = evalfig::WriteTruthVsPrediction(path, "test\nsecond line", panels, 2);
  ASSERT_TRUE(w.ok()) << w.status().message();
  ASSERT_EQ(w->layout.size(), 3u);
  EXPECT_EQ(w->panels, (std::vector<std::string>{"exact", "anti", "empty"}));
  const plot::RgbImage im = CheckPng(path, 2, 2, evalfig::kPanelWidth, evalfig::kPanelHeight);
  ASSERT_EQ(im.width, w->width);
  ASSERT_EQ(im.height, w->height);
  // Equal axes over the data range (0..1) padded by 3 %, square data areas, a colour bar.
  const double lo = -0.03, hi = 1.03;
  for (int k = 0; k < 2; ++k) {
    const Rect p = w->layout[k].plot;
    EXPECT_LE(std::abs(p.w - p.h), 1);
    EXPECT_FALSE(w->layout[k].colorbar.empty());
  }
  const Rect p0 = w->layout[0].plot, p1 = w->layout[1].plot;
  const int nb = evalfig::DensityBins(3000);
  EXPECT_EQ(nb, 37);
  const double cell = (hi - lo) / nb;
  // Exact predictions: coloured in a diagonal cell beside the red line, white far from it.
  const double centre = lo + 21.5 * cell, a = centre + 0.3 * cell, b = centre - 0.3 * cell;
  EXPECT_TRUE(IsViridis(At(im, std::lround(Px(p0, lo, hi, a)), std::lround(Py(p0, lo, hi, b)))));
  EXPECT_EQ(At(im, std::lround(Px(p0, lo, hi, 0.8)), std::lround(Py(p0, lo, hi, 0.2))), plot::colors::kWhite);
  // The 1:1 line is red (0xd62728), on the diagonal.
  EXPECT_TRUE(Near(im, Px(p0, lo, hi, 0.3), Py(p0, lo, hi, 0.3), Rgb::Hex(0xd62728)) ||
              Near(im, Px(p0, lo, hi, 0.31), Py(p0, lo, hi, 0.31), Rgb::Hex(0xd62728)));
  // Anti-correlated: the cells with ix + iy = 36 are filled, e.g. (29, 7); (0.75, 0.9) is empty.
  EXPECT_TRUE(IsViridis(At(im, std::lround(Px(p1, lo, hi, lo + 29.5 * cell)), std::lround(Py(p1, lo, hi, lo + 7.5 * cell)))));
  EXPECT_EQ(At(im, std::lround(Px(p1, lo, hi, 0.75)), std::lround(Py(p1, lo, hi, 0.9))), plot::colors::kWhite);
  // The annotation box (upper left of the first panel): light, with the legend edge colour.
  const int bx = std::lround(p0.x + 0.03 * p0.w), by = std::lround(p0.bottom() - 0.97 * p0.h);
  EXPECT_TRUE(Near(im, bx - 6, by + 4, plot::Theme{}.legend_edge, 1));
  // The empty panel is a note, not an XY panel: no colour bar.
  EXPECT_TRUE(w->layout[2].colorbar.empty());
}

TEST(EvalFigures, CoverageCurvesAreWhereTheirValuesAre) {
  TempDir dir;
  std::vector<std::vector<double>> cov(2);
  for (double l : kLevels) {
    cov[0].push_back(l);        // calibrated
    cov[1].push_back(0.8 * l);  // over-confident
  }
  const std::string path = dir.File("coverage.png");
  auto w = evalfig::WriteCoverage(path, "coverage", {"t50", "mh"}, kLevels, cov, 400);
  ASSERT_TRUE(w.ok()) << w.status().message();
  const plot::RgbImage im = CheckPng(path, 2, 1, 600, 560);
  ASSERT_EQ(w->layout.size(), 2u);
  const Rgb blue = plot::colors::Cycle()[0], orange = plot::colors::Cycle()[1];
  const Rect l = w->layout[0].plot, r = w->layout[1].plot;
  // Left: fraction inside against the level on 0..1 axes; markers at the levels.
  EXPECT_TRUE(Near(im, Px(l, 0, 1, 0.5), Py(l, 0, 1, 0.5), blue));
  EXPECT_TRUE(Near(im, Px(l, 0, 1, 0.5), Py(l, 0, 1, 0.4), orange));
  EXPECT_TRUE(Near(im, Px(l, 0, 1, 0.9), Py(l, 0, 1, 0.72), orange));
  EXPECT_FALSE(Near(im, Px(l, 0, 1, 0.9), Py(l, 0, 1, 0.9), orange, 4));
  // Right: empirical - nominal; the axis spans +-1.15 x the largest deviation (0.198 at 0.99).
  const double lim = 1.15 * 0.2 * 0.99;
  EXPECT_TRUE(Near(im, Px(r, 0, 1, 0.5), Py(r, -lim, lim, 0.0), blue));
  EXPECT_TRUE(Near(im, Px(r, 0, 1, 0.5), Py(r, -lim, lim, -0.1), orange));
  EXPECT_TRUE(Near(im, Px(r, 0, 1, 0.8), Py(r, -lim, lim, -0.16), orange));
  // The binomial 95 % band around zero: grey-tinted at 0.5 just inside +-1.96 sqrt(0.25 / 400).
  const Rgb band = At(im, std::lround(Px(r, 0, 1, 0.45)), std::lround(Py(r, -lim, lim, 0.04)));
  EXPECT_TRUE(band.r == band.g && band.g == band.b && band.r < 250 && band.r > 150) << int(band.r);
  const Rgb outside = At(im, std::lround(Px(r, 0, 1, 0.45)), std::lround(Py(r, -lim, lim, 0.07)));
  EXPECT_EQ(outside, plot::colors::kWhite);
}

TEST(EvalFigures, SbcBarsHaveTheirCountsAndTheUniformRange) {
  TempDir dir;
  std::vector<std::vector<int64_t>> ranks(2, std::vector<int64_t>(20, 50));
  ranks[0][3] = 100;
  ranks[1][17] = 0;
  const std::string path = dir.File("sbc.png");
  auto w = evalfig::WriteSbcRanks(path, "ranks", {"t10", "mh"}, ranks, {35.0, 40.0});
  ASSERT_TRUE(w.ok()) << w.status().message();
  ASSERT_EQ(w->layout.size(), 2u);
  EXPECT_EQ(w->panels[0], "t_{10}:  chi^{2} = 35");
  EXPECT_EQ(w->panels[1], "[M/H]:  chi^{2} = 40");
  const plot::RgbImage im = CheckPng(path, 2, 1, evalfig::kGridPanelWidth, evalfig::kGridPanelHeight);
  auto bluish = [](Rgb c) { return c.b > c.r + 30; };
  // Panel 0: total 1050, expected 52.5 per bin; y from 0 to 1.12 x the highest bar (100).
  const Rect p = w->layout[0].plot;
  const double top = 112;
  auto bin_x = [&](int b) { return std::lround(Px(p, 0, 1, (b + 0.5) / 20.0)); };
  EXPECT_TRUE(bluish(At(im, bin_x(3), std::lround(Py(p, 0, top, 95)))));
  EXPECT_FALSE(bluish(At(im, bin_x(3), std::lround(Py(p, 0, top, 104)))));
  EXPECT_TRUE(bluish(At(im, bin_x(5), std::lround(Py(p, 0, top, 45)))));
  EXPECT_FALSE(bluish(At(im, bin_x(5), std::lround(Py(p, 0, top, 56)))));
  // 99 % range of uniform ranks: 52.5 +- 2.576 sqrt(1050 x 0.05 x 0.95) = 52.5 +- 18.3, grey.
  const Rgb in_band = At(im, bin_x(5), std::lround(Py(p, 0, top, 65)));
  EXPECT_TRUE(in_band.r == in_band.g && in_band.g == in_band.b && in_band.r < 245) << int(in_band.r);
  EXPECT_EQ(At(im, bin_x(5), std::lround(Py(p, 0, top, 76))), plot::colors::kWhite);
  // The expected count: a black dashed line at 52.5 (look along the row for the dashes).
  bool dash = false;
  for (int x = p.x + 2; x < p.right() - 2 && !dash; ++x) dash = At(im, x, std::lround(Py(p, 0, top, 52.5))) == plot::colors::kBlack;
  EXPECT_TRUE(dash);
  // Panel 1: the empty bin 17 shows no bar.
  const Rect q = w->layout[1].plot;
  const double top1 = std::max(50.0, 47.5 + 2.576 * std::sqrt(950 * 0.05 * 0.95)) * 1.12;
  EXPECT_FALSE(bluish(At(im, std::lround(Px(q, 0, 1, 17.5 / 20)), std::lround(Py(q, 0, top1, 10)))));
  EXPECT_TRUE(bluish(At(im, std::lround(Px(q, 0, 1, 16.5 / 20)), std::lround(Py(q, 0, top1, 10)))));
}

TEST(EvalFigures, SnrTrendsAndAgeBinsPlotTheirValues) {
  TempDir dir;
  const std::vector<double> snr = {5, 10, 50};
  std::vector<evalfig::SnrQuantity> qs = {{"LW", true, {0.1, 0.05, 0.0}, {0.3, 0.2, 0.1}},
                                          {"MW", true, {0.0, 0.0, 0.0}, {0.2, 0.1, 0.05}},
                                          {"LW", false, {0.01, 0.0, 0.0}, {0.05, 0.02, 0.01}}};
  const std::string path = dir.File("snr.png");
  auto w = evalfig::WriteSnrTrends(path, "snr", snr, qs);
  ASSERT_TRUE(w.ok()) << w.status().message();
  const plot::RgbImage im = CheckPng(path, 2, 2, evalfig::kPanelWidth, evalfig::kPanelHeight);
  ASSERT_EQ(w->layout.size(), 4u);
  // Top left (age bias): log x over 5..50 padded by 4 % per side in log10, y over -0.004..0.104.
  const Rect p = w->layout[0].plot;
  const double l0 = std::log10(5.0), l1 = std::log10(50.0), d = 0.04 * (l1 - l0);
  auto sx = [&](double v) { return p.x + (std::log10(v) - (l0 - d)) / ((l1 + d) - (l0 - d)) * (p.right() - 1 - p.x); };
  const double ylo = -0.004, yhi = 0.104;
  const Rgb blue = plot::colors::Cycle()[0];
  EXPECT_TRUE(Near(im, sx(10), Py(p, ylo, yhi, 0.05), blue));
  EXPECT_TRUE(Near(im, sx(5), Py(p, ylo, yhi, 0.1), blue));
  EXPECT_FALSE(Near(im, sx(10), Py(p, ylo, yhi, 0.09), blue, 3));
  // The [Z/H] column has only its own series: nothing orange (MW age's colour) in it.
  const Rect z = w->layout[1].plot;
  int orange = 0;
  for (int y = z.y; y < z.bottom(); ++y)
    for (int x = z.x; x < z.right(); ++x) orange += At(im, x, y) == plot::colors::Cycle()[1];
  EXPECT_EQ(orange, 0);

  evalfig::AgeBinErrors b;
  b.age_gyr = {0.01, 0.1, 1, 10};
  b.rel_error = {0.2, 0.1, std::nan(""), -0.1};
  b.rel_sd = {0.5, 0.3, std::nan(""), 0.2};
  b.mean_true = {0.01, 0.05, 0.2, 0.74};
  b.mean_pred = {0.012, 0.05, 0.19, 0.75};
  const std::string bp = dir.File("bins.png");
  auto wb = evalfig::WriteAgeBinErrors(bp, "bins", b);
  ASSERT_TRUE(wb.ok()) << wb.status().message();
  CheckPng(bp, 2, 1, evalfig::kPanelWidth, evalfig::kPanelHeight);
  EXPECT_FALSE(evalfig::WriteAgeBinErrors(dir.File("none.png"), "x", {}).ok());
}

TEST(EvalFigures, WriteErrorsNameThePathAndLeaveNoTemporaryFile) {
  TempDir dir;
  const std::string bad = dir.File("no_such_dir/coverage.png");
  auto w = evalfig::WriteCoverage(bad, "c", {"t50"}, kLevels, {kLevels}, 100);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("no_such_dir"), std::string::npos) << w.status().message();
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// ------------------------------------------------------------------------ end to end

TEST(EvalFigures, CnnEvaluateWritesFiguresBesideTheTables) {
  const std::string model = std::string(CUBEFLOW_MODELS_DIR) + "/cnn_builtin.pt";
  if (!fs::exists(model)) CUBEFLOW_SKIP_WITHOUT("a shipped model (models/)") << "shipped model " << model << " missing";
  TempDir dir;
  const std::string lib = dir.File("nf.fits");
  ASSERT_EQ(MakeLibraryFile(lib, 120, 5, /*noise=*/false), "");
  const std::string out = dir.File("eval");
  ASSERT_EQ(RunMain(cnn::EvaluateMain, {"evaluate", model, lib, "--snr", "10,50", "--out", out, "--threads", "1"}), 0);
  for (const char* f : {"summary.csv", "sfr_age_bins.csv", "snr.csv", "objects.csv"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  const auto pvt = CheckPng(out + "/pred_vs_true.png", 2, 2, evalfig::kPanelWidth, evalfig::kPanelHeight);
  EXPECT_GT(Inspect(pvt).viridis, 500u);  // the 2-D histograms
  CheckPng(out + "/sfr_age_bins.png", 2, 1, evalfig::kPanelWidth, evalfig::kPanelHeight);
  CheckPng(out + "/snr.png", 2, 2, evalfig::kPanelWidth, evalfig::kPanelHeight);
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  // Without --snr there is no S/N figure.
  const std::string out2 = dir.File("eval2");
  ASSERT_EQ(RunMain(cnn::EvaluateMain, {"evaluate", model, lib, "--rows", "40", "--out", out2}), 0);
  EXPECT_TRUE(fs::exists(out2 + "/pred_vs_true.png"));
  EXPECT_FALSE(fs::exists(out2 + "/snr.png"));
}

TEST(EvalFigures, SbiEvaluateWritesCoverageRanksAndMedians) {
  const std::string model = std::string(CUBEFLOW_MODELS_DIR) + "/sbi_builtin.pt";
  if (!fs::exists(model)) CUBEFLOW_SKIP_WITHOUT("a shipped model (models/)") << "shipped model " << model << " missing";
  TempDir dir;
  const std::string lib = dir.File("noisy.fits");
  ASSERT_EQ(MakeLibraryFile(lib, 80, 7, /*noise=*/true), "");
  const std::string out = dir.File("sbi_eval");
  // Through the CLI's dispatch, with --out before the model (it must not be taken for it).
  ASSERT_EQ(RunMain(nn::EvaluateCommand, {"evaluate", "--out", out, model, lib, "--rows", "80", "--samples", "60",
                                 "--threads", "1"}),
            0);
  const auto summary = Lines(out + "/summary.csv");
  ASSERT_GE(summary.size(), 2u);
  const int64_t D = static_cast<int64_t>(summary.size()) - 1;
  EXPECT_EQ(static_cast<int64_t>(Lines(out + "/coverage.csv").size()), 1 + D * static_cast<int64_t>(kLevels.size()));
  // Every parameter's rank histogram holds every object with a truth (80 here).
  const auto rk = Lines(out + "/sbc_ranks.csv");
  ASSERT_EQ(static_cast<int64_t>(rk.size()), 1 + D * 20);
  std::map<std::string, int64_t> per_param;
  for (size_t i = 1; i < rk.size(); ++i) {
    std::stringstream ss(rk[i]);
    std::string name, bin, lo, hi, count;
    std::getline(ss, name, ',');
    std::getline(ss, bin, ',');
    std::getline(ss, lo, ',');
    std::getline(ss, hi, ',');
    std::getline(ss, count, ',');
    per_param[name] += std::stoll(count);
  }
  for (const auto& [name, n] : per_param) EXPECT_EQ(n, 80) << name;
  EXPECT_EQ(static_cast<int64_t>(Lines(out + "/objects.csv").size()), 81);
  CheckPng(out + "/coverage.png", 2, 1, 600, 560);
  const int cols = static_cast<int>(std::min<int64_t>(D, 5)), rows = static_cast<int>((D + 4) / 5);
  CheckPng(out + "/sbc_ranks.png", cols, rows, evalfig::kGridPanelWidth, evalfig::kGridPanelHeight);
  const auto med = CheckPng(out + "/medians_vs_truth.png", cols, rows, 500, 380);
  EXPECT_GT(Inspect(med).viridis, 300u);
}
