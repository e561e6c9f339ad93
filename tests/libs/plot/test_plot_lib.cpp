// Tests of cubeflow::plot: PNG encoding (checked with our decoder and independently with
// /usr/bin/python3), canvas primitives, text, colormaps, ticks and figure layout.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/plot/canvas.hpp"
#include "cubeflow/plot/colormap.hpp"
#include "cubeflow/plot/figure.hpp"
#include "cubeflow/plot/png.hpp"
#include "cubeflow/plot/ticks.hpp"
#include "plot_test_util.hpp"
#include "test_data.hpp"

using namespace cubeflow;
using namespace cubeflow::plot;
using plottest::TempDir;

namespace {

RgbImage RandomImage(int w, int h, unsigned seed) {
  RgbImage im;
  im.width = w;
  im.height = h;
  im.rgb.resize(static_cast<size_t>(w) * h * 3);
  std::mt19937 rng(seed);
  // Smooth gradients plus noise so every PNG filter type wins somewhere.
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < 3; ++k) {
        const int v = (k == 0 ? x * 3 : k == 1 ? y * 5 : (x + y) * 2) + ((y % 7 == 0) ? static_cast<int>(rng() % 256) : 0);
        im.rgb[(static_cast<size_t>(y) * w + x) * 3 + k] = static_cast<uint8_t>(v & 0xff);
      }
  return im;
}

int CountNot(const Canvas& c, Rgb bg, Rect* box = nullptr) {
  int n = 0, x0 = c.width(), y0 = c.height(), x1 = -1, y1 = -1;
  for (int y = 0; y < c.height(); ++y)
    for (int x = 0; x < c.width(); ++x)
      if (c.Get(x, y) != bg) {
        ++n;
        x0 = std::min(x0, x);
        y0 = std::min(y0, y);
        x1 = std::max(x1, x);
        y1 = std::max(y1, y);
      }
  if (box) *box = Rect{x0, y0, x1 - x0 + 1, y1 - y0 + 1};
  return n;
}

}  // namespace

// ----------------------------------------------------------------------------------- PNG

TEST(Png, Crc32MatchesTheStandardCheckValueAndZlib) {
  const std::string s = "123456789";
  EXPECT_EQ(Crc32(reinterpret_cast<const uint8_t*>(s.data()), s.size()), 0xCBF43926u);
  std::vector<uint8_t> buf(10007);
  std::mt19937 rng(3);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  EXPECT_EQ(Crc32(buf.data(), buf.size()), static_cast<uint32_t>(crc32(0L, buf.data(), static_cast<uInt>(buf.size()))));
  // Incremental use gives the same result.
  const uint32_t part = Crc32(buf.data(), 5000);
  EXPECT_EQ(Crc32(buf.data() + 5000, buf.size() - 5000, part), Crc32(buf.data(), buf.size()));
}

TEST(Png, RoundTripIsExact) {
  for (auto [w, h] : {std::pair{1, 1}, std::pair{37, 23}, std::pair{300, 211}}) {
    const RgbImage im = RandomImage(w, h, static_cast<unsigned>(w * 31 + h));
    auto bytes = EncodePng(im);
    ASSERT_TRUE(bytes.ok()) << bytes.status().message();
    auto back = DecodePng(*bytes);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->width, w);
    EXPECT_EQ(back->height, h);
    EXPECT_EQ(back->rgb, im.rgb);
  }
}

TEST(Png, RejectsBadInputAndCorruptFiles) {
  EXPECT_FALSE(EncodePng(RgbImage{}).ok());
  RgbImage bad;
  bad.width = 4;
  bad.height = 4;
  bad.rgb.resize(10);
  EXPECT_FALSE(EncodePng(bad).ok());
  auto bytes = EncodePng(RandomImage(20, 20, 1));
  ASSERT_TRUE(bytes.ok());
  std::string corrupt = *bytes;
  corrupt[45] = static_cast<char>(corrupt[45] ^ 0x40);  // inside the IDAT data
  auto r = DecodePng(corrupt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("CRC"), std::string::npos) << r.status().message();
  EXPECT_FALSE(DecodePng(bytes->substr(0, bytes->size() - 12)).ok());  // no IEND
  EXPECT_FALSE(DecodePng("GIF89a").ok());
}

TEST(Png, WriteIsAtomicAndErrorsNameThePath) {
  TempDir d;
  const std::string path = d.File("a.png");
  ASSERT_TRUE(WritePng(path, RandomImage(16, 9, 2)).ok());
  for (const auto& e : std::filesystem::directory_iterator(d.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  auto back = ReadPng(path);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->width, 16);
  const Status st = WritePng(d.File("missing/dir/b.png"), RandomImage(4, 4, 3));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("missing/dir/b.png"), std::string::npos) << st.message();
  EXPECT_FALSE(std::filesystem::exists(d.File("missing")));
}

TEST(Png, PythonDecodesWhatWeWrite) {
  if (!plottest::HavePython()) CUBEFLOW_SKIP_WITHOUT("/usr/bin/python3") << "/usr/bin/python3 not found";
  TempDir d;
  // Known layout: 5 x 3 pixels, colour (10 x, 20 y, 7) except a red pixel at (3, 1).
  RgbImage im;
  im.width = 5;
  im.height = 3;
  im.rgb.resize(45);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x) {
      uint8_t* p = &im.rgb[static_cast<size_t>(y * 5 + x) * 3];
      p[0] = static_cast<uint8_t>(10 * x);
      p[1] = static_cast<uint8_t>(20 * y);
      p[2] = 7;
    }
  im.rgb[(1 * 5 + 3) * 3 + 0] = 255;
  im.rgb[(1 * 5 + 3) * 3 + 1] = 0;
  im.rgb[(1 * 5 + 3) * 3 + 2] = 0;
  const std::string path = d.File("k.png");
  ASSERT_TRUE(WritePng(path, im).ok());
  auto j = plottest::PngCheck(path, {{3, 1}, {4, 2}, {0, 0}}, true, true);
  ASSERT_TRUE(j.ok) << j.raw;
  EXPECT_TRUE(j.crc_ok) << j.raw;
  EXPECT_EQ(j.width, 5);
  EXPECT_EQ(j.height, 3);
  EXPECT_EQ(j.colour_type, 2);
  EXPECT_EQ(j.bit_depth, 8);
  ASSERT_EQ(j.pure.size(), 3u) << j.raw;
  EXPECT_EQ(j.pure[0], (std::array<int, 3>{255, 0, 0}));
  EXPECT_EQ(j.pure[1], (std::array<int, 3>{40, 40, 7}));
  EXPECT_EQ(j.pure[2], (std::array<int, 3>{0, 0, 7}));
  if (j.have_mpl) {
    EXPECT_EQ(j.mpl, j.pure) << j.raw;
  }
  // A larger image with all filter types: the stdlib decoder agrees with ours everywhere sampled.
  const RgbImage big = RandomImage(64, 48, 9);
  ASSERT_TRUE(WritePng(path, big).ok());
  std::vector<std::pair<int, int>> pts = {{0, 0}, {63, 47}, {17, 7}, {40, 21}, {5, 35}};
  auto j2 = plottest::PngCheck(path, pts, true, false);
  ASSERT_TRUE(j2.ok && j2.crc_ok) << j2.raw;
  for (size_t i = 0; i < pts.size(); ++i)
    for (int k = 0; k < 3; ++k)
      EXPECT_EQ(j2.pure[i][static_cast<size_t>(k)],
                big.rgb[(static_cast<size_t>(pts[i].second) * 64 + pts[i].first) * 3 + k]);
}

// ----------------------------------------------------------------------------------- canvas

TEST(Canvas, RectsLinesAndClipping) {
  Canvas c(40, 30);
  const Rgb red{255, 0, 0}, blue{0, 0, 255};
  c.FillRect({5, 6, 4, 3}, red);
  Rect box;
  EXPECT_EQ(CountNot(c, colors::kWhite, &box), 12);
  EXPECT_EQ(box.x, 5);
  EXPECT_EQ(box.y, 6);
  EXPECT_EQ(box.w, 4);
  EXPECT_EQ(box.h, 3);
  c.Clear(colors::kWhite);
  c.Line(2, 10, 30, 10, blue);  // inclusive of both end pixels
  EXPECT_EQ(CountNot(c, colors::kWhite, &box), 29);
  EXPECT_EQ(c.Get(2, 10), blue);
  EXPECT_EQ(c.Get(30, 10), blue);
  c.Clear(colors::kWhite);
  c.Line(0, 0, 20, 20, blue, 1, {4, 4});  // dashed diagonal: about half the pixels
  const int n = CountNot(c, colors::kWhite);
  EXPECT_GT(n, 8);
  EXPECT_LT(n, 14);
  c.Clear(colors::kWhite);
  c.SetClip({10, 10, 5, 5});
  c.FillRect({0, 0, 40, 30}, red);
  EXPECT_EQ(CountNot(c, colors::kWhite, &box), 25);
  EXPECT_EQ(box.x, 10);
  c.ResetClip();
  c.Set(-1, 5, red);  // outside: ignored
  c.Set(40, 5, red);
  EXPECT_EQ(CountNot(c, colors::kWhite), 25);
  // Huge coordinates are clipped, not rasterised.
  c.Line(-1e9, 15, 1e9, 15, blue);
  EXPECT_EQ(c.Get(0, 15), blue);
  EXPECT_EQ(c.Get(39, 15), blue);
}

TEST(Canvas, PolygonsBlendingAndMarkers) {
  Canvas c(30, 30);
  // Square with corners at pixel centres (5,5)..(15,15): pixel centres inside a half-open
  // span -> 10 x 10 pixels.
  c.FillPolygon({{5, 5}, {15, 5}, {15, 15}, {5, 15}}, Rgb{0, 128, 0});
  Rect box;
  EXPECT_EQ(CountNot(c, colors::kWhite, &box), 100);
  EXPECT_EQ(box.x, 5);
  EXPECT_EQ(box.y, 5);
  c.Clear(colors::kWhite);
  c.FillRect({0, 0, 1, 1}, Rgb{0, 0, 0}, 0.25);
  EXPECT_EQ(c.Get(0, 0), Rgb(191, 191, 191));  // 0.75 * 255
  c.Clear(colors::kWhite);
  c.DrawMarker(15, 15, Marker::kCircle, 9, Rgb{255, 0, 0}, Rgb{0, 0, 0});
  EXPECT_EQ(c.Get(15, 15), Rgb(255, 0, 0));   // filled centre
  EXPECT_EQ(c.Get(15, 11), Rgb(0, 0, 0));     // edge ring
  EXPECT_EQ(c.Get(15, 9), colors::kWhite);    // outside
}

TEST(Canvas, TextStaysInsideItsMeasuredBox) {
  TextStyle st;
  for (int scale : {1, 2, 3}) {
    for (const std::string& s : {std::string("Age [Gyr] gjpqy"), std::string("log_{10}(M/M_{\u2609})"),
                                 std::string("10^{-3}"), std::string("+12\u00b059\u203230\u2033")}) {
      Canvas c(400, 100);
      st.scale = scale;
      const TextSize ts = c.Text(20, 60, s, st);
      EXPECT_EQ(ts.width, MeasureText(s, scale).width);
      Rect box;
      ASSERT_GT(CountNot(c, colors::kWhite, &box), 10) << s;
      EXPECT_GE(box.x, 20) << s;
      EXPECT_LE(box.right(), 20 + ts.width) << s;
      EXPECT_GE(box.y, 60 - ts.ascent) << s;
      EXPECT_LE(box.bottom(), 60 + ts.descent) << s;
    }
  }
  // Digits are tabular: "11" is twice "1" plus the gap, whatever the glyph.
  EXPECT_EQ(MeasureText("11", 2).width, MeasureText("88", 2).width);
  EXPECT_EQ(MeasureText("8", 2).width, 10);
  // Superscripts at scale 2 reach cap height; at scale 3 (superscript scale 2) above it.
  // Subscripts lower the descent.
  EXPECT_EQ(MeasureText("10^{5}", 2).ascent, MeasureText("105", 2).ascent);
  EXPECT_GT(MeasureText("10^{5}", 3).ascent, MeasureText("105", 3).ascent);
  EXPECT_GT(MeasureText("M_{x}", 2).descent, MeasureText("Mx", 2).descent);
  // Rotated text: its box is the transposed box, above the anchor.
  Canvas c(100, 200);
  st.scale = 2;
  st.vertical = true;
  const TextSize ts = c.Text(50, 180, "Dec (ICRS)", st);
  Rect box;
  CountNot(c, colors::kWhite, &box);
  EXPECT_LE(box.h, ts.width);
  EXPECT_GT(box.h, ts.width - 6);
  EXPECT_LE(box.bottom(), 181);
  EXPECT_LE(box.w, ts.ascent + ts.descent);
  // A character the font lacks is drawn as a box (never silently dropped).
  Canvas c2(40, 40);
  st.vertical = false;
  c2.Text(5, 20, "\u4e2d", st);
  EXPECT_GT(CountNot(c2, colors::kWhite), 20);
}

// ----------------------------------------------------------------------------------- colormaps

TEST(Colormap, EndpointsNanAndReversal) {
  auto v = Colormap::Named("viridis");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->At(0.0), Rgb::Hex(0x440154));
  EXPECT_EQ(v->At(1.0), Rgb::Hex(0xfde725));
  EXPECT_EQ(v->At(-3.0), Rgb::Hex(0x440154));  // clamped
  EXPECT_EQ(v->At(std::nan("")), Colormap::kDefaultNan);
  auto m = Colormap::Named("magma");
  EXPECT_EQ(m->At(0.0), Rgb::Hex(0x000004));
  EXPECT_EQ(m->At(1.0), Rgb::Hex(0xfcfdbf));
  auto r = Colormap::Named("viridis_r");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->At(0.0), Rgb::Hex(0xfde725));
  EXPECT_EQ(r->At(0.3), v->At(0.7));
  auto g = Colormap::Named("grey");
  EXPECT_EQ(g->At(0.5), Rgb(128, 128, 128));
  auto cw = Colormap::Named("coolwarm");
  EXPECT_GT(cw->At(0.0).b, cw->At(0.0).r);  // blue end
  EXPECT_GT(cw->At(1.0).r, cw->At(1.0).b);  // red end
  auto rb = Colormap::Named("RdBu");
  EXPECT_EQ(rb->At(0.0), Rgb::Hex(0x67001f));
  EXPECT_EQ(rb->At(1.0), Rgb::Hex(0x053061));
  // The NaN colour is not a colour of any built-in (non-grey) map.
  for (const auto& name : Colormap::Names()) {
    if (name == "grey") continue;
    auto cm = Colormap::Named(name);
    for (int i = 0; i <= 1000; ++i) EXPECT_NE(cm->At(i / 1000.0), Colormap::kDefaultNan) << name;
  }
  auto bad = Colormap::Named("jet");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("viridis"), std::string::npos);
}

TEST(Colormap, NormsAndPercentiles) {
  Norm lin{2, 6, Norm::Scale::kLinear};
  EXPECT_DOUBLE_EQ(lin(4), 0.5);
  EXPECT_DOUBLE_EQ(lin(10), 1.0);
  EXPECT_TRUE(std::isnan(lin(std::nan(""))));
  Norm lg{1, 100, Norm::Scale::kLog};
  EXPECT_NEAR(lg(10), 0.5, 1e-12);
  EXPECT_TRUE(std::isnan(lg(-1)));
  EXPECT_NEAR(lg.Inverse(0.5), 10, 1e-9);
  Norm as{-5, 50, Norm::Scale::kAsinh};
  for (double t : {0.0, 0.3, 0.8, 1.0}) EXPECT_NEAR(as(as.Inverse(t)), t, 1e-9);
  std::vector<double> v = {5, 1, std::nan(""), 3, 2, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 3);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 5);
  EXPECT_DOUBLE_EQ(Percentile(v, 25), 2);
}

// ----------------------------------------------------------------------------------- ticks

TEST(Ticks, LinearTicksAreNiceAndInRange) {
  const Ticks t = LinearTicks(0, 1, 6);
  ASSERT_EQ(t.major.size(), 6u);
  EXPECT_EQ(t.labels.front(), "0");
  EXPECT_EQ(t.labels[1], "0.2");
  EXPECT_EQ(t.labels.back(), "1.0");
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-1e3, 1e3), e(-6, 6);
  for (int i = 0; i < 500; ++i) {
    const double scale = std::pow(10.0, e(rng));
    double lo = u(rng) * scale, hi = u(rng) * scale;
    if (lo > hi) std::swap(lo, hi);
    if (hi - lo < 1e-9 * scale) continue;
    const int max_ticks = 2 + i % 8;
    const Ticks k = LinearTicks(lo, hi, max_ticks);
    ASSERT_GE(k.major.size(), 1u);
    EXPECT_LE(static_cast<int>(k.major.size()), max_ticks) << lo << " " << hi;
    const double mant = k.step / std::pow(10.0, std::floor(std::log10(k.step) + 1e-9));
    EXPECT_TRUE(std::fabs(mant - 1) < 1e-6 || std::fabs(mant - 2) < 1e-6 || std::fabs(mant - 2.5) < 1e-6 ||
                std::fabs(mant - 5) < 1e-6)
        << k.step;
    for (size_t j = 0; j < k.major.size(); ++j) {
      EXPECT_GE(k.major[j], lo - 1e-6 * (hi - lo));
      EXPECT_LE(k.major[j], hi + 1e-6 * (hi - lo));
      EXPECT_NE(k.labels[j], "-0");
      if (j) EXPECT_NE(k.labels[j], k.labels[j - 1]) << lo << " " << hi;  // distinct labels
    }
  }
  const Ticks z = LinearTicks(-0.83, 0.27, 5);
  EXPECT_NE(std::find(z.labels.begin(), z.labels.end(), "0"), z.labels.end());
  EXPECT_EQ(FormatTick(2.5e-6, 5e-7), "2.5\u00d710^{-6}");
  EXPECT_EQ(FormatTick(3e7, 1e7), "3\u00d710^{7}");
  EXPECT_EQ(FormatTick(0.75, 0.25), "0.75");
}

TEST(Ticks, LogTicksLabelDecades) {
  const Ticks t = LogTicks(0.004, 17.8, 6);
  EXPECT_EQ(t.labels, (std::vector<std::string>{"0.01", "0.1", "1", "10"}));
  EXPECT_NE(std::find_if(t.minor.begin(), t.minor.end(), [](double v) { return std::fabs(v - 0.05) < 1e-12; }),
            t.minor.end());
  const Ticks wide = LogTicks(1e-8, 1e8, 5);
  EXPECT_LE(wide.major.size(), 5u);
  EXPECT_EQ(wide.labels.front(), "10^{-8}");
  const Ticks narrow = LogTicks(1.5, 6, 6);  // less than a decade: 2, 5
  EXPECT_EQ(narrow.labels, (std::vector<std::string>{"2", "5"}));
}

TEST(Ticks, SexagesimalAndSkyTicks) {
  EXPECT_EQ(FormatSexagesimal(170.0625, true, 3, 0), "11^{h}20^{m}15^{s}");
  EXPECT_EQ(FormatSexagesimal(-27.8, false, 3, 0), "-27\u00b048\u203200\u2033");
  EXPECT_EQ(FormatSexagesimal(12.99999999, false, 3, 1), "+13\u00b000\u203200.0\u2033");  // rounding carries
  EXPECT_EQ(FormatSexagesimal(-0.5, false, 2, 0), "-00\u00b030\u2032");                  // sign of |dec| < 1
  EXPECT_EQ(FormatSexagesimal(360.0 - 1e-9, true, 3, 0), "00^{h}00^{m}00^{s}");           // wraps at 24 h
  // 12" of RA at Dec 13 deg (0.8 s of time): steps of 0.1 or 0.2 s, at most max_ticks.
  const double ra0 = 170.0625 - 6.0 / 3600, ra1 = 170.0625 + 6.0 / 3600;
  const Ticks t = SkyTicks(ra0, ra1, true, SkyFormat::kSexagesimal, 6);
  ASSERT_GE(t.major.size(), 3u);
  EXPECT_LE(t.major.size(), 6u);
  for (double v : t.major) {
    EXPECT_GE(v, ra0);
    EXPECT_LE(v, ra1);
    const double ts = v * 240.0;  // seconds of time
    EXPECT_NEAR(ts / (t.step * 240), std::round(ts / (t.step * 240)), 1e-6);
  }
  EXPECT_EQ(t.sex_fields, 3);
  EXPECT_EQ(t.sex_decimals, 1);
  const Ticks d = SkyTicks(-27.81, -27.79, false, SkyFormat::kSexagesimal, 5);  // 72"
  ASSERT_GE(d.major.size(), 2u);
  for (double v : d.major) EXPECT_NEAR(std::fmod(std::fabs(v) * 3600, d.step * 3600), 0, 1e-6);
  const Ticks deg = SkyTicks(53.10, 53.20, true, SkyFormat::kDegrees, 5);
  ASSERT_GE(deg.labels.size(), 2u);
  EXPECT_NE(deg.labels[0].find("\u00b0"), std::string::npos);
}

// ----------------------------------------------------------------------------------- figures

TEST(Figure, XYPanelPutsDataWhereTheAxesSay) {
  Figure fig(1, 2, 400, 300);
  auto& xy = fig.XY(0, 0);
  xy.x.lo = 0;
  xy.x.hi = 10;
  xy.y.lo = -1;
  xy.y.hi = 1;
  xy.legend = LegendPos::kNone;
  const Rgb red{220, 0, 0};
  xy.Line({0, 10}, {-1, 1}, {.color = red, .width = 1});
  xy.Points({2.5}, {0.5}, {.color = Rgb{0, 0, 200}, .marker = Marker::kSquare, .marker_size = 9});
  auto& lg = fig.XY(0, 1);
  lg.x.log = true;
  lg.Bars({0.01, 0.1, 1, 10}, {0.2, 0.5, 0.3}, {.color = Rgb{0, 150, 0}});
  std::vector<PanelLayout> lay;
  const Canvas c = fig.Render(&lay);
  ASSERT_EQ(lay.size(), 2u);
  const Rect p = lay[0].plot;
  auto sx = [&](double x) { return static_cast<int>(std::lround(p.x + x / 10.0 * (p.w - 1))); };
  auto sy = [&](double y) { return static_cast<int>(std::lround(p.bottom() - 1 - (y + 1) / 2.0 * (p.h - 1))); };
  bool on_line = false;  // the line's midpoint, within a pixel of rounding
  for (int dy = -1; dy <= 1; ++dy)
    for (int dx = -1; dx <= 1; ++dx) on_line = on_line || c.Get(sx(5) + dx, sy(0) + dy) == red;
  EXPECT_TRUE(on_line);
  EXPECT_EQ(c.Get(sx(2.5), sy(0.5)), Rgb(0, 0, 200));    // the marker
  EXPECT_EQ(c.Get(sx(7.5), sy(-0.5)), colors::kWhite);   // empty data area
  // Bars on a log x axis: the middle bar [0.1, 1] is filled up to 0.5 at its log centre.
  const Rect q = lay[1].plot;
  const int mid_x = q.x + q.w / 2;
  bool green = false;
  for (int y = q.y; y < q.bottom(); ++y) green = green || (c.Get(mid_x, y).g > c.Get(mid_x, y).r + 40);
  EXPECT_TRUE(green);
  EXPECT_EQ(c.width(), 800);
  EXPECT_EQ(c.height(), 300);
}

TEST(Figure, Hist2DHasAColourBarAndCountsWhereTheDataAre) {
  Figure fig(1, 1, 500, 400);
  auto& xy = fig.XY(0, 0);
  std::vector<double> x, y;
  for (int i = 0; i < 5000; ++i) {
    x.push_back(i % 2 ? 0.25 : 0.75);
    y.push_back(0.5);
  }
  x.push_back(0);
  y.push_back(0);
  x.push_back(1);
  y.push_back(1);
  xy.Hist2D(x, y, 20, 20);
  std::vector<PanelLayout> lay;
  const Canvas c = fig.Render(&lay);
  ASSERT_EQ(lay.size(), 1u);
  EXPECT_FALSE(lay[0].colorbar.empty());
  const Rect p = lay[0].plot;
  const Rgb hot = c.Get(p.x + p.w / 4 + 2, p.y + p.h / 2 - 2);
  auto top = *Colormap::Named("viridis");
  EXPECT_EQ(hot, top.At(1.0));                                  // the crowded cell: top of the scale
  EXPECT_EQ(c.Get(p.x + p.w / 2, p.y + p.h / 4), colors::kWhite);  // an empty cell
}

TEST(Figure, ImagePanelMapsEveryDataPixel) {
  const int64_t nx = 7, ny = 5;
  std::vector<double> v(nx * ny);
  for (int64_t i = 0; i < nx * ny; ++i) v[i] = static_cast<double>(i);
  v[3] = std::nan("");
  Figure fig(1, 2, 420, 340);
  auto& im = fig.Image(0, 0);
  im.SetData(nx, ny, v);
  im.colormap = *Colormap::Named("magma");
  im.vmin = 0;
  im.vmax = 34;
  im.colorbar_label = "value";
  auto& cat = fig.Image(0, 1);
  std::vector<double> ids(nx * ny);
  for (int64_t i = 0; i < nx * ny; ++i) ids[i] = i % 3 == 0 ? -1 : static_cast<double>(i / 2);
  cat.SetData(nx, ny, ids);
  cat.categorical = true;
  std::vector<uint8_t> ol(nx * ny, 0);
  ol[2 * nx + 3] = 1;
  cat.outline = ol;
  std::vector<PanelLayout> lay;
  const Canvas c = fig.Render(&lay);
  ASSERT_EQ(lay.size(), 2u);
  const Rect p = lay[0].plot;
  EXPECT_EQ(p.w * ny, p.h * nx);  // square data pixels (whole-pixel scale here)
  const Norm norm{0, 34};
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t x = 0; x < nx; ++x) {
      const int px = p.x + static_cast<int>((x + 0.5) * p.w / nx), py = p.bottom() - 1 - static_cast<int>((y + 0.5) * p.h / ny);
      const double d = v[y * nx + x];
      EXPECT_EQ(c.Get(px, py), std::isnan(d) ? Colormap::kDefaultNan : im.colormap.At(norm(d))) << x << "," << y;
    }
  EXPECT_FALSE(lay[0].colorbar.empty());
  EXPECT_TRUE(lay[1].colorbar.empty());  // categorical: no colour bar
  const Rect q = lay[1].plot;
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t x = 0; x < nx; ++x) {
      if (y == 2 && (x == 3 || x == 2 || x == 4)) continue;  // the outlined pixel and its edges
      const int px = q.x + static_cast<int>((x + 0.5) * q.w / nx), py = q.bottom() - 1 - static_cast<int>((y + 0.5) * q.h / ny);
      const double d = ids[y * nx + x];
      EXPECT_EQ(c.Get(px, py), d < 0 ? Colormap::kDefaultNan : CategoricalColor(static_cast<int64_t>(d)));
    }
  // The outline of pixel (3, 2): its left edge is drawn white over black.
  const int ex = q.x + static_cast<int>(std::round(3.0 * q.w / nx));
  const int ey = q.bottom() - static_cast<int>(std::round(2.5 * q.h / ny));
  EXPECT_EQ(c.Get(ex, ey), colors::kWhite);
  EXPECT_EQ(c.Get(ex - 1, ey), colors::kBlack);
  // Neighbouring labels get different colours.
  for (int64_t k = 0; k < 50; ++k) EXPECT_NE(CategoricalColor(k), CategoricalColor(k + 1));
}

TEST(Figure, ShrunkMapsAverageInsteadOfAliasing) {
  // A 400 x 400 checkerboard of 0 / 1 shown in ~200 pixels: every screen pixel is the mean.
  const int64_t n = 400;
  std::vector<double> v(n * n);
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) v[y * n + x] = (x + y) % 2;
  Figure fig(1, 1, 500, 420);
  auto& im = fig.Image(0, 0);
  im.SetData(n, n, v);
  im.colormap = *Colormap::Named("grey");
  im.vmin = 0;
  im.vmax = 1;
  std::vector<PanelLayout> lay;
  const Canvas c = fig.Render(&lay);
  const Rect p = lay[0].plot;
  ASSERT_LT(p.w, n);
  // A box of ~1.5 x 1.5 data pixels over a checkerboard averages to 0.5 +- 0.11; nearest-
  // neighbour sampling would give pure black or white.
  double mean = 0;
  int count = 0;
  for (int y = p.y + 1; y < p.bottom() - 1; y += 3)
    for (int x = p.x + 1; x < p.right() - 1; x += 3) {
      const Rgb g = c.Get(x, y);
      EXPECT_NEAR(g.r, 128, 32) << x << "," << y;
      mean += g.r;
      ++count;
    }
  EXPECT_NEAR(mean / count, 127.5, 3);
}

TEST(Figure, SkyAxesAndTitlesRenderWithRotatedWcs) {
  const int64_t nx = 40, ny = 30;
  auto w = fits::Wcs::FromCards(plottest::TestWcs(nx, ny, 30.0));
  ASSERT_TRUE(w.ok()) << w.status().message();
  std::vector<double> v(nx * ny, 1.0);
  Figure fig(1, 1, 520, 420);
  fig.title = "A long title line\nsecond line";
  auto& im = fig.Image(0, 0);
  im.SetData(nx, ny, v);
  im.wcs = *w;
  im.title = "panel";
  std::vector<PanelLayout> lay;
  const Canvas c = fig.Render(&lay);
  const Rect p = lay[0].plot;
  // Tick labels left of and below the map, and the compass inside it (rotated WCS).
  auto ink = [&](Rect r) {
    int n = 0;
    for (int y = r.y; y < r.bottom(); ++y)
      for (int x = r.x; x < r.right(); ++x) n += c.Get(x, y) == colors::kBlack;
    return n;
  };
  EXPECT_GT(ink({p.x - 120, p.y, 110, p.h}), 100);
  EXPECT_GT(ink({p.x, p.bottom() + 8, p.w, 30}), 100);
  EXPECT_GT(ink({p.right() - 90, p.bottom() - 90, 88, 88}), 20);
  // The same map without a WCS: north up, no compass.
  im.wcs.reset();
  std::vector<PanelLayout> lay2;
  const Canvas c2 = fig.Render(&lay2);
  const Rect p2 = lay2[0].plot;
  int n2 = 0;
  for (int y = p2.bottom() - 90; y < p2.bottom() - 2; ++y)
    for (int x = p2.right() - 90; x < p2.right() - 2; ++x) n2 += c2.Get(x, y) == colors::kBlack;
  EXPECT_EQ(n2, 0);
}

// ----------------------------------------------------------------------- XY panel options
namespace {
/// Pixel of a data value on a linear axis of a panel (as XYPanel maps it).
int PxX(const Rect& p, double lo, double hi, double v) {
  return static_cast<int>(std::lround(p.x + (v - lo) / (hi - lo) * (p.right() - 1 - p.x)));
}
int PxY(const Rect& p, double lo, double hi, double v) {
  return static_cast<int>(std::lround(p.bottom() - 1 + (v - lo) / (hi - lo) * (p.y - (p.bottom() - 1))));
}
bool IsLegendEdge(Rgb c) { return c == Theme{}.legend_edge; }
/// Legend-edge pixels in a rectangle.
int CountEdge(const Canvas& c, const Rect& r) {
  int n = 0;
  for (int y = r.y; y < r.bottom(); ++y)
    for (int x = r.x; x < r.right(); ++x) n += IsLegendEdge(c.Get(x, y));
  return n;
}
}  // namespace

TEST(Figure, BoxedMultiLineAnnotationSitsOnABoxOverTheDensity) {
  Figure fig(1, 1, 520, 420);
  auto& xy = fig.XY(0, 0);
  std::vector<double> x, y;
  for (int i = 0; i < 60; ++i)
    for (int j = 0; j < 60; ++j) {  // every cell of a 20 x 20 histogram filled
      x.push_back((i + 0.5) / 60.0);
      y.push_back((j + 0.5) / 60.0);
    }
  xy.x.lo = xy.y.lo = 0;
  xy.x.hi = xy.y.hi = 1;
  xy.Hist2D(x, y, 20, 20);
  xy.Annotate(0.05, 0.95, "first line\nsecond line", HAlign::kLeft, VAlign::kTop, std::nullopt, true);
  std::vector<PanelLayout> lay;
  const Canvas c = fig.Render(&lay);
  const Rect p = lay[0].plot;
  const int ax = static_cast<int>(std::lround(p.x + 0.05 * p.w)), ay = static_cast<int>(std::lround(p.bottom() - 0.95 * p.h));
  const int line_w = MeasureText("second line", 2).width;
  // The box: its edge colour just outside the text block, light background inside.
  const Theme th;
  EXPECT_TRUE(IsLegendEdge(c.Get(ax - th.pad, ay + 5)));
  const Rgb inside = c.Get(ax - th.pad + 2, ay + 3);
  EXPECT_GE(std::min({inside.r, inside.g, inside.b}), 200);
  // Two lines of black text: dark rows in two bands separated by a light gap.
  std::vector<int> dark_rows;
  for (int yy = ay - 2; yy < ay + 60; ++yy) {
    int n = 0;
    for (int xx = ax; xx < ax + line_w; ++xx) n += c.Get(xx, yy) == colors::kBlack;
    if (n > 0) dark_rows.push_back(yy);
  }
  ASSERT_FALSE(dark_rows.empty());
  int bands = 1;
  for (size_t i = 1; i < dark_rows.size(); ++i) bands += dark_rows[i] > dark_rows[i - 1] + 1;
  EXPECT_EQ(bands, 2);
  // Outside the box the density is drawn as before (dark viridis, not the light box).
  const Rgb far = c.Get(p.x + p.w - 10, p.y + p.h / 2);
  EXPECT_LT(std::min({far.r, far.g, far.b}), 200);
}

TEST(Figure, LegendAvoidsABoxedAnnotation) {
  auto render = [](bool annotate) {
    Figure fig(1, 1, 500, 400);
    auto& xy = fig.XY(0, 0);
    xy.y.lo = 0;
    xy.y.hi = 1;
    xy.Line({0, 1}, {0.02, 0.02}, {.label = "data"});
    if (annotate) xy.Annotate(0.97, 0.97, "N = 1000\nbias = 0.01", HAlign::kRight, VAlign::kTop, std::nullopt, true);
    std::vector<PanelLayout> lay;
    Canvas c = fig.Render(&lay);
    return std::make_pair(c, lay[0].plot);
  };
  const auto [plain, p0] = render(false);
  const auto [boxed, p1] = render(true);
  const Rect ul0{p0.x, p0.y, p0.w / 2, p0.h / 2}, ur0{p0.x + p0.w / 2, p0.y, p0.w / 2, p0.h / 2};
  const Rect ul1{p1.x, p1.y, p1.w / 2, p1.h / 2};
  // Without the box the legend takes the upper right; with it, the upper left.
  EXPECT_GT(CountEdge(plain, ur0), 50);
  EXPECT_EQ(CountEdge(plain, ul0), 0);
  EXPECT_GT(CountEdge(boxed, ul1), 50);
}

TEST(Figure, ExplicitTicksAreLabelledAndCollidingOnesDropped) {
  Figure fig(1, 1, 600, 400);
  auto& xy = fig.XY(0, 0);
  xy.x.log = true;
  xy.x.lo = 4;
  xy.x.hi = 120;
  xy.x.ticks = {5, 10, 10.4, 20, 35, 50, 100, 500};  // 10.4 collides with 10; 500 is out of range
  xy.legend = LegendPos::kNone;
  xy.Line({5, 100}, {0, 1});
  std::vector<PanelLayout> lay;
  const Canvas c = fig.Render(&lay);
  const Rect p = lay[0].plot;
  auto sx = [&](double v) {
    return static_cast<int>(std::lround(p.x + (std::log10(v) - std::log10(4.0)) / (std::log10(120.0) - std::log10(4.0)) *
                                                  (p.right() - 1 - p.x)));
  };
  const Theme th;
  auto major_tick = [&](double v) {  // the inward major tick reaches tick_length - 1 pixels up
    return c.Get(sx(v), p.bottom() - th.tick_length) == th.foreground;
  };
  auto label_below = [&](double v) {
    int n = 0;
    for (int yy = p.bottom() + th.pad; yy < p.bottom() + th.pad + 20; ++yy)
      for (int xx = sx(v) - 3; xx <= sx(v) + 3; ++xx) n += c.Get(xx, yy) == th.foreground;
    return n > 0;
  };
  for (double v : {5.0, 10.0, 20.0, 35.0, 50.0, 100.0}) {
    EXPECT_TRUE(major_tick(v)) << v;
    EXPECT_TRUE(label_below(v)) << v;
  }
  EXPECT_FALSE(major_tick(10.4));
  EXPECT_FALSE(major_tick(30));  // an automatic minor tick: shorter
  EXPECT_TRUE(c.Get(sx(30), p.bottom() - 2) == th.foreground);
}

TEST(Figure, AspectMakesTheDataAreaSquareAndRightLabelsStayInTheCell) {
  Figure fig(1, 2, 700, 360);
  auto& sq = fig.XY(0, 0);
  sq.aspect = 1;
  sq.Hist2D({0, 1, 0.5}, {0, 1, 0.5}, 10, 10);
  sq.y.label = "y";
  auto& wide = fig.XY(0, 1);
  wide.x.lo = 0;
  wide.x.hi = 1000;  // "1000" at the right end of the axis
  wide.Line({0, 1000}, {0, 1});
  std::vector<PanelLayout> lay;
  const Canvas c = fig.Render(&lay);
  ASSERT_EQ(lay.size(), 2u);
  EXPECT_LE(std::abs(lay[0].plot.w - lay[0].plot.h), 1);
  // Centred horizontally in the space left of the colour bar: the y label moved with it.
  EXPECT_GT(lay[0].plot.x, 100);
  EXPECT_FALSE(lay[0].colorbar.empty());
  EXPECT_EQ(lay[0].colorbar.h, lay[0].plot.h);
  const Rect w = lay[1].plot;
  const int half = MeasureText("1000", 2).width / 2;
  EXPECT_LE(w.right() - 1 + half, lay[1].cell.right());
  EXPECT_EQ(PxX(w, 0, 1000, 1000), w.right() - 1);
  // The label "1000" is drawn in full: dark pixels right of the last tick, inside the figure.
  int dark = 0;
  for (int yy = w.bottom(); yy < w.bottom() + 30; ++yy)
    for (int xx = w.right(); xx < c.width(); ++xx) dark += c.Get(xx, yy) == colors::kBlack;
  EXPECT_GT(dark, 5);
  (void)PxY;
}
