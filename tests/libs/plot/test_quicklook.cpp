// Tests of `cubeflow plot` (tools::PlotCommand, from tools/cubeflow/plot_cmd.cpp) and of
// cubeflow::plot::WriteMapsQuicklooks on MAPS files written with the real writer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/fits/maps_reader.hpp"
#include "cubeflow/plot/png.hpp"
#include "cubeflow/plot/quicklook.hpp"
#include "commands.hpp"
#include "plot_test_util.hpp"
#include "test_data.hpp"



using namespace cubeflow;
using namespace cubeflow::plot;
using cubeflow::fits::MapsColumn;
using cubeflow::fits::MapsFile;
using cubeflow::fits::MapsImage;
using cubeflow::fits::MapsTable;
using plottest::TempDir;
namespace fs = std::filesystem;

namespace {

struct CliResult {
  int rc = 0;
  std::string out, err;
};

CliResult RunPlot(std::vector<std::string> args) {
  args.insert(args.begin(), "plot");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  CliResult r;
  r.rc = tools::PlotCommand(static_cast<int>(argv.size()), argv.data());
  r.out = testing::internal::GetCapturedStdout();
  r.err = testing::internal::GetCapturedStderr();
  return r;
}

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  std::string l;
  while (std::getline(is, l))
    if (!l.empty()) out.push_back(l);
  return out;
}

size_t CountFiles(const std::string& dir) {
  if (!fs::exists(dir)) return 0;
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

}  // namespace

TEST(MapsReader, ReadsWhatTheWriterWrote) {
  TempDir d;
  const std::string path = d.File("r_maps.fits");
  const auto truth = plottest::WriteMockMaps(path);
  auto f = MapsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const MapsImage* mf = f->Find("mass_frac");  // case-insensitive
  ASSERT_NE(mf, nullptr);
  EXPECT_EQ(mf->nplanes, 16);
  ASSERT_EQ(mf->plane_names.size(), 16u);
  EXPECT_EQ(mf->plane_names.front(), "0.007Gyr");
  EXPECT_EQ(mf->plane_names.back(), "14.2Gyr");
  EXPECT_FALSE(mf->wcs.empty());
  const MapsImage* lw = f->Find("LW_LOGAGE");
  ASSERT_NE(lw, nullptr);
  EXPECT_EQ(lw->errdata, "LW_LOGAGE_ERR");
  EXPECT_EQ(lw->qualdata, "QUALITY");
  auto binid = f->Load("BINID");
  ASSERT_TRUE(binid.ok());
  for (size_t s = 0; s < truth.binid.size(); ++s) ASSERT_EQ(binid->values[s], truth.binid[s]);
  auto lwl = f->Load("LW_LOGAGE");
  ASSERT_TRUE(lwl.ok());
  for (size_t s = 0; s < truth.binid.size(); ++s) {
    const int b = truth.binid[s];
    if (b < 0 || b == truth.failed_bin) EXPECT_TRUE(std::isnan(lwl->values[s]));
    else EXPECT_DOUBLE_EQ(lwl->values[s], truth.lw_age[static_cast<size_t>(b)]);
  }
  const MapsTable* t = f->bins();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->nrows, static_cast<int64_t>(truth.lw_age.size()));
  const MapsColumn* c = t->Find("MASS_FRAC");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->width, 16);
  const int64_t row = t->RowOf(5);
  ASSERT_GE(row, 0);
  for (int k = 0; k < 16; ++k) EXPECT_DOUBLE_EQ(c->At(row, k), truth.mass_frac[5][static_cast<size_t>(k)]);
  EXPECT_EQ(f->primary().at("OBJECT"), "MOCK-DISC");
  EXPECT_FALSE(f->Load("NOPE").ok());
}

TEST(Quicklook, MapsPanelShowsDataAndNanWhereBinidIsMinusOne) {
  TempDir d;
  const std::string path = d.File("ngc_maps.fits");
  const auto truth = plottest::WriteMockMaps(path);
  QuicklookOptions o;
  o.out_dir = d.File("out");
  auto r = WriteMapsQuicklooks(path, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->written.size(), 3u);  // maps, uncertainties, SFH of the best bin
  EXPECT_EQ(r->written[0], d.File("out/ngc_maps.png"));
  EXPECT_EQ(r->written[1], d.File("out/ngc_maps_err.png"));
  EXPECT_EQ(r->written[2], d.File("out/ngc_sfh_bin" + std::to_string(truth.best_bin) + ".png"));
  EXPECT_EQ(r->sfh_bins, (std::vector<int64_t>{truth.best_bin}));
  EXPECT_TRUE(r->missing.empty());
  auto png = ReadPng(r->written[0]);
  ASSERT_TRUE(png.ok()) << png.status().message();
  EXPECT_EQ(png->width, 3 * o.cell_width);  // 2 x 2 science panels + a column of S/N and bins
  ASSERT_EQ(r->maps_layout.size(), 6u);
  int max_bottom = 0;
  for (const auto& l : r->maps_layout) max_bottom = std::max(max_bottom, l.cell.bottom());
  EXPECT_EQ(png->height, max_bottom);
  const std::set<std::string> panels(r->maps_panels.begin(), r->maps_panels.end());
  EXPECT_EQ(panels, (std::set<std::string>{"LW_LOGAGE", "MW_LOGAGE", "LW_ZH", "MW_ZH", "SNR", "BINID"}));

  auto px = [&](int x, int y) {
    const uint8_t* p = &png->rgb[(static_cast<size_t>(y) * png->width + x) * 3];
    return Rgb(p[0], p[1], p[2]);
  };
  const int64_t nx = 60, ny = 50;
  for (size_t i = 0; i < r->maps_layout.size(); ++i) {
    const std::string& name = r->maps_panels[i];
    if (name != "LW_LOGAGE" && name != "MW_ZH") continue;
    const Rect p = r->maps_layout[i].plot;
    EXPECT_NEAR(static_cast<double>(p.w) / nx, static_cast<double>(p.h) / ny, 1.0 / ny) << name;  // square pixels
    // The colour scale: 2nd..98th percentile of the displayed (masked) values.
    std::vector<double> shown;
    for (size_t s = 0; s < truth.binid.size(); ++s) {
      const int b = truth.binid[s];
      if (b < 0 || b == truth.failed_bin) continue;
      shown.push_back(name == "LW_LOGAGE" ? truth.lw_age[static_cast<size_t>(b)] : truth.mw_zh[static_cast<size_t>(b)]);
    }
    const Norm norm{Percentile(shown, 2), Percentile(shown, 98)};
    const Colormap cm = *Colormap::Named(name == "LW_LOGAGE" ? "viridis" : "plasma");
    int n_nan = 0, n_data = 0;
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        const int sx = p.x + static_cast<int>((x + 0.5) * p.w / nx);
        const int sy = p.bottom() - 1 - static_cast<int>((y + 0.5) * p.h / ny);
        const int b = truth.binid[static_cast<size_t>(y * nx + x)];
        const Rgb got = px(sx, sy);
        if (b < 0 || b == truth.failed_bin) {
          EXPECT_EQ(got, Colormap::kDefaultNan) << name << " " << x << "," << y;
          ++n_nan;
        } else {
          const double v = name == "LW_LOGAGE" ? truth.lw_age[static_cast<size_t>(b)] : truth.mw_zh[static_cast<size_t>(b)];
          EXPECT_NE(got, Colormap::kDefaultNan) << name << " " << x << "," << y;
          EXPECT_NE(got, colors::kWhite);
          EXPECT_EQ(got, cm.At(norm(v))) << name << " " << x << "," << y;
          ++n_data;
        }
      }
    EXPECT_GT(n_nan, 100);
    EXPECT_GT(n_data, 1000);
  }
}

TEST(Quicklook, CliWritesThePngsItPrintsAndPythonReadsThem) {
  TempDir d;
  const std::string path = d.File("mock_maps.fits");
  const auto truth = plottest::WriteMockMaps(path, {.rot_deg = 25});
  // The bin at pixel (20, 12), and bin 3.
  const int64_t at = truth.binid[static_cast<size_t>(12 * 60 + 20)];
  ASSERT_GE(at, 0);
  // Options before the file: each --bin / --pos takes exactly one value.
  const auto r = RunPlot({"--bin", "3", "--pos", "20,12", path, "--out", d.File("ql"), "--prefix", "m"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto printed = Lines(r.out);
  std::set<std::string> want = {d.File("ql/m_maps.png"), d.File("ql/m_maps_err.png"), d.File("ql/m_sfh_bin3.png"),
                                d.File("ql/m_sfh_bin" + std::to_string(at) + ".png")};
  EXPECT_EQ(std::set<std::string>(printed.begin(), printed.end()), want) << r.out;
  EXPECT_EQ(CountFiles(d.File("ql")), want.size());  // nothing else (no temporary files)
  for (const auto& f : printed) {
    auto png = ReadPng(f);
    ASSERT_TRUE(png.ok()) << png.status().message();
    if (f.find("_sfh_") != std::string::npos) {
      EXPECT_EQ(png->width, 2 * (560 + 40)) << f;  // 2 x 2 panels of the default size
      EXPECT_GT(png->height, 2 * 440) << f;       // plus the three-line title
    } else {
      EXPECT_EQ(png->width, f.find("_err") != std::string::npos ? 2 * 560 : 3 * 560) << f;
    }
    if (!plottest::HavePython()) {
      if (cftest::InCi()) ADD_FAILURE() << "CI=true, but /usr/bin/python3 is missing: " << f << " not decoded";
      continue;
    }
    // Independent decode: CRCs, size and the same pixels.
    std::vector<std::pair<int, int>> pts = {{0, 0}, {png->width / 3, png->height / 2}, {png->width - 1, png->height - 1},
                                            {png->width / 2, png->height / 4}};
    auto j = plottest::PngCheck(f, pts, false, true);
    ASSERT_TRUE(j.ok) << j.raw;
    EXPECT_TRUE(j.crc_ok) << f;
    EXPECT_EQ(j.width, png->width);
    EXPECT_EQ(j.height, png->height);
    if (j.have_mpl) {
      ASSERT_EQ(j.mpl.size(), pts.size());
      for (size_t i = 0; i < pts.size(); ++i) {
        const uint8_t* p = &png->rgb[(static_cast<size_t>(pts[i].second) * png->width + pts[i].first) * 3];
        EXPECT_EQ(j.mpl[i], (std::array<int, 3>{p[0], p[1], p[2]})) << f;
      }
    }
  }
}

TEST(Quicklook, MissingExtensionsArePlottedAroundAndReported) {
  TempDir d;
  const std::string path = d.File("p_maps.fits");
  plottest::MockOptions mo;
  mo.omit = {"MW_LOGAGE", "MW_ZH", "MW_LOGAGE_ERR", "MW_ZH_ERR", "ZH", "ZH_ERR"};
  mo.table = false;  // SFH from the maps alone
  const auto truth = plottest::WriteMockMaps(path, mo);
  const auto r = RunPlot({path, "--out", d.path()});
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* m : {"MW_LOGAGE", "MW_ZH", "ZH", "BINS"})
    EXPECT_NE(r.err.find(m), std::string::npos) << m << " not reported in: " << r.err;
  EXPECT_NE(r.out.find("p_maps.png"), std::string::npos);
  EXPECT_NE(r.out.find("p_sfh_bin"), std::string::npos);  // from the MASS_FRAC cube alone
  // Without a BINS table the default bin is the spaxel with the highest S/N map value.
  auto q = WriteMapsQuicklooks(path, {.out_dir = d.path()});
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->sfh_bins.size(), 1u);
  EXPECT_GE(q->sfh_bins[0], 0);
  EXPECT_NE(q->sfh_bins[0], truth.failed_bin);
  // The missing panels are note cells (no map drawn), the others images.
  int notes = 0;
  auto png = ReadPng(q->written[0]);
  ASSERT_TRUE(png.ok());
  for (size_t i = 0; i < q->maps_layout.size(); ++i) {
    if (q->maps_panels[i] != "MW_LOGAGE" && q->maps_panels[i] != "MW_ZH") continue;
    ++notes;
    const Rect c = q->maps_layout[i].cell;
    int nan_px = 0;
    for (int y = c.y; y < c.bottom(); ++y)
      for (int x = c.x; x < c.right(); ++x) {
        const uint8_t* p = &png->rgb[(static_cast<size_t>(y) * png->width + x) * 3];
        nan_px += Rgb(p[0], p[1], p[2]) == Colormap::kDefaultNan;
      }
    EXPECT_EQ(nan_px, 0);
  }
  EXPECT_EQ(notes, 2);
}

TEST(Quicklook, PercentileUncertaintiesAndGyrAges) {
  TempDir d;
  const std::string path = d.File("sbi_maps.fits");
  const auto truth = plottest::WriteMockMaps(path, {.percentiles = true});
  auto q = WriteMapsQuicklooks(path, {.out_dir = d.path(), .bins = {7}, .age_gyr = true});
  ASSERT_TRUE(q.ok()) << q.status().message();
  ASSERT_EQ(q->written.size(), 3u);
  EXPECT_NE(q->written[1].find("_maps_err.png"), std::string::npos);
  EXPECT_EQ(q->sfh_bins, (std::vector<int64_t>{7}));
  // In Gyr the LW age panel's colour scale is 10^(log age - 9).
  auto png = ReadPng(q->written[0]);
  ASSERT_TRUE(png.ok());
  std::vector<double> shown;
  for (size_t s = 0; s < truth.binid.size(); ++s) {
    const int b = truth.binid[s];
    if (b >= 0 && b != truth.failed_bin) shown.push_back(std::pow(10.0, truth.lw_age[static_cast<size_t>(b)] - 9));
  }
  const Norm norm{Percentile(shown, 2), Percentile(shown, 98)};
  const Rect p = q->maps_layout[0].plot;
  ASSERT_EQ(q->maps_panels[0], "LW_LOGAGE");
  const int64_t x = static_cast<int64_t>(std::lround(truth.cx[7])), y = static_cast<int64_t>(std::lround(truth.cy[7]));
  const int b = truth.binid[static_cast<size_t>(y * 60 + x)];
  ASSERT_GE(b, 0);
  const uint8_t* px = &png->rgb[(static_cast<size_t>(p.bottom() - 1 - static_cast<int>((y + 0.5) * p.h / 50)) * png->width +
                                 p.x + static_cast<int>((x + 0.5) * p.w / 60)) * 3];
  EXPECT_EQ(Rgb(px[0], px[1], px[2]),
            Colormap::Named("viridis")->At(norm(std::pow(10.0, truth.lw_age[static_cast<size_t>(b)] - 9))));
}

TEST(Quicklook, ErrorsAreClearAndWriteNothing) {
  TempDir d;
  const std::string path = d.File("e_maps.fits");
  const auto truth = plottest::WriteMockMaps(path);
  const std::string out = d.File("none");
  auto r = RunPlot({path, "--out", out, "--bin", "99999"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("bin 99999 is not in"), std::string::npos) << r.err;
  r = RunPlot({path, "--out", out, "--pos", "0,0"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("not in any bin"), std::string::npos) << r.err;
  r = RunPlot({path, "--out", out, "--pos", "60,10"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("outside"), std::string::npos) << r.err;
  r = RunPlot({path, "--out", out, "--bin", std::to_string(truth.failed_bin)});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("FAILED"), std::string::npos) << r.err;
  r = RunPlot({path, "--out", out, "--pos", "3;4"});
  EXPECT_EQ(r.rc, 2);
  r = RunPlot({path, "--out", out, "--mask", "NOCOV,BOGUS"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("BOGUS"), std::string::npos);
  EXPECT_EQ(CountFiles(out), 0u);
  // A cube is not a MAPS product.
  auto cube = std::make_shared<Cube>();
  cube->nx = 4;
  cube->ny = 3;
  cube->nwave = 5;
  cube->flux.assign(60, 1.0f);
  cube->wave = WavelengthAxis::Linear(5000, 1.25, 5);
  ASSERT_TRUE(fits::WriteCube(d.File("cube.fits"), *cube).ok());
  r = RunPlot({d.File("cube.fits"), "--out", out});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("is not a MAPS product"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("DATA"), std::string::npos) << r.err;  // lists what the file has
  r = RunPlot({d.File("nope.fits")});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("no such file"), std::string::npos) << r.err;
  std::ofstream(d.File("text.fits")) << "not fits at all";
  r = RunPlot({d.File("text.fits"), "--out", out});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("text.fits"), std::string::npos) << r.err;
  EXPECT_EQ(CountFiles(out), 0u);
  auto mask = ParseQualityMask("nocov, outtrain,8");
  ASSERT_TRUE(mask.ok());
  EXPECT_EQ(*mask, kQualNoCoverage | kQualOutsideTraining | kQualNonPositivePhotometry);
}

TEST(Quicklook, MaskBitsHideFlaggedSpaxels) {
  TempDir d;
  const std::string path = d.File("m_maps.fits");
  const auto truth = plottest::WriteMockMaps(path);
  ASSERT_GE(truth.lowsnr_bin, 0);
  // The LOWSNR bin has values: shown by default, hidden when LOWSNR is masked.
  for (const std::string& m : {"default", "LOWSNR", "all", "none"}) {
    auto q = WriteMapsQuicklooks(path, {.out_dir = d.File(m), .sfh = false, .mask_bits = *ParseQualityMask(m)});
    ASSERT_TRUE(q.ok());
    auto png = ReadPng(q->written[0]);
    ASSERT_TRUE(png.ok());
    const Rect p = q->maps_layout[0].plot;
    const bool hide_low = m == "LOWSNR" || m == "all";
    int nan_px = 0, expect = 0;
    for (int64_t y = 0; y < 50; ++y)
      for (int64_t x = 0; x < 60; ++x) {
        const int b = truth.binid[static_cast<size_t>(y * 60 + x)];
        expect += (b < 0 || b == truth.failed_bin || (hide_low && b == truth.lowsnr_bin));
        const uint8_t* px = &png->rgb[(static_cast<size_t>(p.bottom() - 1 - static_cast<int>((y + 0.5) * p.h / 50)) *
                                           png->width + p.x + static_cast<int>((x + 0.5) * p.w / 60)) * 3];
        nan_px += Rgb(px[0], px[1], px[2]) == Colormap::kDefaultNan;
      }
    EXPECT_EQ(nan_px, expect) << m;
  }
}

TEST(Quicklook, TheCubeflowBinaryDispatchesPlot) {
  TempDir d;
  const std::string path = d.File("b_maps.fits");
  plottest::WriteMockMaps(path, {.errors = false});
  std::string out;
  int rc = plottest::Run(std::string(CUBEFLOW_BINARY) + " plot '" + path + "' --out '" + d.File("o") + "' --no-sfh", out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(d.File("o/b_maps.png")), std::string::npos) << out;
  EXPECT_EQ(out.find("_sfh_"), std::string::npos) << out;
  EXPECT_EQ(out.find("_err"), std::string::npos) << out;  // no uncertainty extensions
  rc = plottest::Run(std::string(CUBEFLOW_BINARY) + " plot", out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("MAPS"), std::string::npos) << out;
}
