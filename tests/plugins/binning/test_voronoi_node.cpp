// Tests of the binning.voronoi node: synthetic cubes (NaN, zero-variance, masked and low-S/N
// spaxels; lazily streamed bin spectra), its options and validation hook, and the real MUSE
// sub-cube of the UDF mosaic. Driven through cubeflow::testing::FakeContext.

#include <fitsio.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/spectral/snr.hpp"
#include "cubeflow/testing/fake_context.hpp"
#include "fits_test_util.hpp"
#include "node_test_util.hpp"
#include "temp_dir.hpp"
#include "voronoi_node.hpp"
#include "test_data.hpp"

namespace {

using namespace cubeflow;
using namespace cubeflow::binning;

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

using cftest::DataDir;
using cubeflow::testing::FakeContext;

/// binning.voronoi built as the registry builds it, with `given` over the defaults.
std::unique_ptr<Node> MakeVoronoi(const std::map<std::string, Value>& given = {}) {
  return cubeflow::testing::MakeNode<VoronoiNode>(given);
}

/// 40 x 36 x 60 cube, 5250-5545 A: an exponential disc with S/N ~100 per pixel at the centre
/// and < 1 in the corners; variance = flux + sky.
std::shared_ptr<Cube> SyntheticCube() {
  auto c = std::make_shared<Cube>();
  c->nx = 40;
  c->ny = 36;
  c->nwave = 60;
  c->wave = WavelengthAxis::Linear(5250.0, 5.0, c->nwave);
  c->wcs.cards = "CTYPE1  = 'RA---TAN'";
  const size_t n = static_cast<size_t>(c->nx * c->ny * c->nwave);
  c->flux.resize(n);
  c->variance.resize(n);
  for (int64_t k = 0; k < c->nwave; ++k)
    for (int64_t y = 0; y < c->ny; ++y)
      for (int64_t x = 0; x < c->nx; ++x) {
        const double r = std::hypot(x - 20.0, (y - 17.0) / 0.8);
        const double f = 1e4 * std::exp(-r / 2.5) * (1.0 + 0.05 * std::sin(0.7 * k));
        c->flux[c->Index(x, y, k)] = static_cast<float>(f);
        c->variance[c->Index(x, y, k)] = static_cast<float>(f + 25.0);
      }
  return c;
}

/// Writes a 2-D double image to a new FITS file (primary HDU empty, image in extension 1, like
/// the nGIST mask files).
void WriteMask(const std::string& path, int64_t nx, int64_t ny, const std::vector<double>& data) {
  std::filesystem::remove(path);
  fitsfile* fp = nullptr;
  int st = 0;
  ASSERT_EQ(fits_create_file(&fp, path.c_str(), &st), 0);
  fits_create_img(fp, BYTE_IMG, 0, nullptr, &st);
  long naxes[2] = {static_cast<long>(nx), static_cast<long>(ny)};
  fits_create_img(fp, DOUBLE_IMG, 2, naxes, &st);
  long first[2] = {1, 1};
  fits_write_pix(fp, TDOUBLE, first, nx * ny, const_cast<double*>(data.data()), &st);
  fits_close_file(fp, &st);
  ASSERT_EQ(st, 0);
}

std::vector<std::shared_ptr<const Spectrum>> Drain(StreamSource& s) {
  std::vector<std::shared_ptr<const Spectrum>> out;
  int64_t key = -1;
  std::shared_ptr<const Data> d;
  while (s.Next(key, d)) {
    EXPECT_EQ(key, static_cast<int64_t>(out.size()));
    EXPECT_STREQ(d->type(), "spectrum");
    out.push_back(std::static_pointer_cast<const Spectrum>(d));
  }
  return out;
}

/// Checks binning/binid/spectra against each other and the cube; returns the binning.
std::shared_ptr<const Binning> CheckOutputs(FakeContext& ctx, const Cube& cube, double target, double alpha,
                                            const std::set<int32_t>& must_be_unbinned) {
  EXPECT_TRUE(ctx.Output<Binning>("binning") && ctx.Output<Map>("binid") && ctx.Stream("spectra"));
  EXPECT_EQ(ctx.Emitted("binning").size(), 1u);  // each single output emitted once
  EXPECT_EQ(ctx.Emitted("binid").size(), 1u);
  auto b = ctx.Output<Binning>("binning");
  auto m = ctx.Output<Map>("binid");
  EXPECT_EQ(m->name, "BINID");
  EXPECT_EQ(m->nx, cube.nx);
  EXPECT_EQ(m->ny, cube.ny);
  EXPECT_EQ(m->wcs.cards, cube.wcs.cards);
  EXPECT_EQ(b->wcs.cards, cube.wcs.cards);
  const size_t nspax = static_cast<size_t>(cube.nx * cube.ny);
  EXPECT_EQ(b->binid.size(), nspax);
  for (size_t s = 0; s < nspax; ++s) EXPECT_EQ(m->data[s], b->binid[s]);
  for (int32_t s : must_be_unbinned) EXPECT_EQ(b->binid[s], -1) << "spaxel " << s;
  // Every binned spaxel in exactly one bin, and lists consistent with BINID.
  std::vector<int> seen(nspax, 0);
  for (size_t k = 0; k < b->bins.size(); ++k) {
    const auto& bin = b->bins[k];
    EXPECT_EQ(bin.nspax, static_cast<int64_t>(bin.spaxels.size()));
    for (int32_t s : bin.spaxels) {
      ++seen[s];
      EXPECT_EQ(b->binid[s], static_cast<int32_t>(k));
    }
    EXPECT_GE(bin.snr, 0.8 * target) << "bin " << k;
    EXPECT_NEAR(bin.snr, bin.signal / bin.noise, 1e-9 * bin.snr);
    EXPECT_GE(bin.x, 0);
    EXPECT_LE(bin.x, cube.nx - 1);
  }
  for (size_t s = 0; s < nspax; ++s) EXPECT_EQ(seen[s], b->binid[s] >= 0 ? 1 : 0) << "spaxel " << s;

  auto spectra = Drain(*ctx.Stream("spectra"));
  EXPECT_EQ(spectra.size(), b->bins.size());
  EXPECT_EQ(ctx.Stream("spectra")->SizeHint(), static_cast<int64_t>(b->bins.size()));
  const size_t plane = nspax;
  for (size_t k = 0; k < spectra.size(); k += std::max<size_t>(1, spectra.size() / 7)) {
    const auto& sp = *spectra[k];
    const auto& bin = b->bins[k];
    EXPECT_EQ(sp.id, static_cast<int64_t>(k));
    EXPECT_EQ(sp.flux.size(), static_cast<size_t>(cube.nwave));
    if (sp.flux.size() != static_cast<size_t>(cube.nwave)) break;
    EXPECT_EQ(sp.meta.at("nspax"), static_cast<double>(bin.nspax));
    EXPECT_DOUBLE_EQ(sp.meta.at("snr"), bin.snr);
    EXPECT_DOUBLE_EQ(sp.meta.at("x"), bin.x);
    const double n = static_cast<double>(bin.nspax);
    const double cov = 1.0 + alpha * std::log10(n);
    for (int64_t w = 0; w < cube.nwave; ++w) {
      double f = 0, v = 0;
      int cnt = 0;
      for (int32_t s : bin.spaxels) {
        const size_t idx = static_cast<size_t>(w) * plane + s;
        if (!std::isfinite(cube.flux[idx]) || !std::isfinite(cube.variance[idx])) continue;
        f += cube.flux[idx];
        v += cube.variance[idx];
        ++cnt;
      }
      if (cnt == 0) {
        EXPECT_EQ(sp.mask[w], 1) << "bin " << k << " pixel " << w;
        continue;
      }
      EXPECT_EQ(sp.mask[w], 0);
      const double scale = n / cnt;
      EXPECT_NEAR(sp.flux[w], f * scale, 1e-6 * std::abs(f * scale) + 1e-9);
      EXPECT_NEAR(sp.variance[w], v * scale * scale * cov * cov, 1e-6 * v * scale * scale * cov * cov);
    }
  }
  return b;
}

TEST(VoronoiNode, SpecDeclaresPortsAndParams) {
  const NodeSpec s = VoronoiNode::Spec();
  EXPECT_EQ(s.name(), "binning.voronoi");
  ASSERT_NE(s.FindInput("cube"), nullptr);
  EXPECT_EQ(s.FindOutput("spectra")->kind, PortKind::kStream);
  EXPECT_EQ(s.FindOutput("binning")->type, "binning");
  EXPECT_EQ(s.FindOutput("binid")->type, "map");
  for (const char* p : {"target_snr", "min_snr", "wave_min", "wave_max", "mask", "covariance_alpha", "method", "max_iter"})
    EXPECT_NE(s.FindParam(p), nullptr) << p;
  EXPECT_DOUBLE_EQ(std::get<double>(s.FindParam("target_snr")->default_value()), 35.0);
  EXPECT_DOUBLE_EQ(std::get<double>(s.FindParam("covariance_alpha")->default_value()), 1.07);
}

// The node's signal and noise: spectral::ComputeSpaxelSnr with the per-pixel median definition.
Result<spectral::SpaxelSnr> MedianSnr(const Cube& c, double wave_min, double wave_max) {
  spectral::SnrOptions o;
  o.wave_min = wave_min;
  o.wave_max = wave_max;
  o.definition = spectral::SnrDefinition::kPixelMedian;
  o.noise = spectral::NoiseSource::kVariance;
  return spectral::ComputeSpaxelSnr(c, o);
}

TEST(VoronoiNode, SpaxelSnrFromWindow) {
  auto c = SyntheticCube();
  const auto r = MedianSnr(*c, 5300, 5500);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const spectral::SpaxelSnr& s = *r;
  EXPECT_EQ(s.window.k0, 10);  // 5250 + 5 * 10 = 5300
  EXPECT_EQ(s.window.k1, 50);
  EXPECT_FALSE(s.window.clipped);
  // Median by hand for one spaxel.
  std::vector<double> f;
  const size_t sp = 17 * 40 + 20;
  for (int k = 10; k <= 50; ++k) f.push_back(c->flux[c->Index(20, 17, k)]);
  std::sort(f.begin(), f.end());
  EXPECT_NEAR(s.signal[sp], f[20], 1e-3);
  EXPECT_GT(s.signal[sp] / s.noise[sp], 50);
  // Window partly outside: clipped; fully outside: error naming the ranges.
  EXPECT_TRUE(MedianSnr(*c, 5000, 5400)->window.clipped);
  const auto outside = MedianSnr(*c, 6000, 6100);
  ASSERT_FALSE(outside.ok()) << "no error for a window outside the cube";
  const std::string what = outside.status().message();
  EXPECT_NE(what.find("outside"), std::string::npos) << what;
  EXPECT_NE(what.find("5250"), std::string::npos) << what;
}

TEST(VoronoiNode, BinsSyntheticCubeLeavingBadSpaxelsOut) {
  auto cube = SyntheticCube();
  const int64_t nx = cube->nx, ny = cube->ny, nw = cube->nwave;
  std::set<int32_t> unbinned;
  // A NaN spaxel near the centre, a zero-variance spaxel, a 3x3 masked block.
  for (int64_t k = 0; k < nw; ++k) cube->flux[cube->Index(18, 17, k)] = kNaNf;
  unbinned.insert(17 * nx + 18);
  for (int64_t k = 0; k < nw; ++k) cube->variance[cube->Index(22, 16, k)] = 0.0f;
  unbinned.insert(16 * nx + 22);
  std::vector<double> mask(static_cast<size_t>(nx * ny), 0.0);
  for (int y = 5; y < 8; ++y)
    for (int x = 30; x < 33; ++x) mask[y * nx + x] = 1.0, unbinned.insert(static_cast<int32_t>(y * nx + x));
  // Corners are below S/N 1.
  unbinned.insert(0);
  unbinned.insert(static_cast<int32_t>(nx * ny - 1));
  // A wavelength plane with no data anywhere.
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t x = 0; x < nx; ++x) cube->flux[cube->Index(x, y, 3)] = kNaNf;

  const std::string mask_path = (std::filesystem::temp_directory_path() / "cubeflow_binning_test_mask.fits").string();
  WriteMask(mask_path, nx, ny, mask);

  FakeContext ctx;
  ctx.SetInput("cube", cube);
  auto node = MakeVoronoi({{"target_snr", 60.0}, {"mask", mask_path}});
  node->Process(ctx);
  auto b = CheckOutputs(ctx, *cube, 60.0, 1.07, unbinned);
  EXPECT_GT(b->bins.size(), 10u);
  // Spectra are built lazily from the shared cube: blank pixel 40 of one spaxel of a
  // multi-spaxel bin now; that bin's pixel 40 stays valid, rescaled by nspax / ncontrib.
  size_t id = 0;
  while (id < b->bins.size() && b->bins[id].nspax < 3) ++id;
  ASSERT_LT(id, b->bins.size());
  const auto& bin = b->bins[id];
  double others = 0;
  for (size_t j = 1; j < bin.spaxels.size(); ++j) others += cube->flux[40 * nx * ny + bin.spaxels[j]];
  cube->flux[40 * nx * ny + bin.spaxels[0]] = kNaNf;
  auto src = std::static_pointer_cast<BinSpectraSource>(ctx.Stream("spectra"));
  auto sp = src->Make(id);
  EXPECT_EQ(sp->mask[40], 0);
  EXPECT_NEAR(sp->flux[40], others * bin.nspax / (bin.nspax - 1.0), 1e-6 * std::abs(others) * 2);
  EXPECT_EQ(sp->mask[3], 1);  // no data anywhere in plane 3
  EXPECT_EQ(sp->mask[4], 0);
  EXPECT_TRUE(ctx.Logged("bins"));
  std::filesystem::remove(mask_path);
}

TEST(VoronoiNode, WvtAndNoVarianceFallback) {
  auto cube = SyntheticCube();
  // Add some noise so that DER_SNR has something to measure.
  uint32_t state = 12345;
  for (size_t i = 0; i < cube->flux.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    const double u = (state >> 8) / double(1 << 24) - 0.5;
    cube->flux[i] += static_cast<float>(u * 2.0 * std::sqrt(cube->variance[i]) * 1.7);
  }
  cube->variance.clear();
  FakeContext ctx;
  ctx.SetInput("cube", cube);
  auto node = MakeVoronoi({{"target_snr", 30.0}, {"method", std::string("wvt")}, {"covariance_alpha", 0.0}});
  node->Process(ctx);
  EXPECT_TRUE(ctx.Logged("DER_SNR"));
  auto b = ctx.Output<Binning>("binning");
  ASSERT_TRUE(b);
  ASSERT_GT(b->bins.size(), 3u);
  for (const auto& bin : b->bins) EXPECT_GE(bin.snr, 0.8 * 30.0);
  auto spectra = Drain(*ctx.Stream("spectra"));
  ASSERT_EQ(spectra.size(), b->bins.size());
  for (double v : spectra[0]->variance) EXPECT_GT(v, 0);
}

TEST(VoronoiNode, ClearErrors) {
  auto cube = SyntheticCube();
  {
    FakeContext ctx;
    ctx.SetInput("cube", cube);
    auto node = MakeVoronoi({{"wave_min", 6000.0}, {"wave_max", 6500.0}});
    EXPECT_THROW(node->Process(ctx), Error);
  }
  {
    FakeContext ctx;
    ctx.SetInput("cube", cube);
    auto node = MakeVoronoi({{"wave_min", 5000.0}});
    node->Process(ctx);
    EXPECT_TRUE(ctx.Logged("cut to the cube's range"));
  }
  {
    FakeContext ctx;
    ctx.SetInput("cube", cube);
    auto node = MakeVoronoi({{"mask", std::string("/nonexistent/mask.fits")}});
    EXPECT_THROW(node->Process(ctx), Error);
  }
  {
    const std::string p = (std::filesystem::temp_directory_path() / "cubeflow_binning_badmask.fits").string();
    WriteMask(p, 10, 10, std::vector<double>(100, 0.0));
    FakeContext ctx;
    ctx.SetInput("cube", cube);
    auto node = MakeVoronoi({{"mask", p}});
    try {
      node->Process(ctx);
      FAIL() << "no error for a mask of the wrong shape";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("does not match"), std::string::npos) << e.what();
    }
    std::filesystem::remove(p);
  }
  {
    FakeContext ctx;
    ctx.SetInput("cube", cube);
    auto node = MakeVoronoi({{"min_snr", 1e6}});
    try {
      node->Process(ctx);
      FAIL() << "no error without spaxels";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("min_snr"), std::string::npos) << e.what();
    }
  }
}

// --- real MUSE data --------------------------------------------------------------------------

std::shared_ptr<Cube> ReadMuseCube(const std::string& path) {
  fitsfile* fp = nullptr;
  int st = 0;
  if (fits_open_file(&fp, path.c_str(), READONLY, &st)) return nullptr;
  auto c = std::make_shared<Cube>();
  auto read = [&](const char* ext, std::vector<float>& out) {
    fits_movnam_hdu(fp, IMAGE_HDU, const_cast<char*>(ext), 0, &st);
    long dims[3] = {0, 0, 0};
    int naxis = 0;
    fits_get_img_dim(fp, &naxis, &st);
    fits_get_img_size(fp, 3, dims, &st);
    c->nx = dims[0];
    c->ny = dims[1];
    c->nwave = dims[2];
    out.resize(static_cast<size_t>(dims[0] * dims[1] * dims[2]));
    long first[3] = {1, 1, 1};
    float nul = kNaNf;
    int anynul = 0;
    fits_read_pix(fp, TFLOAT, first, static_cast<LONGLONG>(out.size()), &nul, out.data(), &anynul, &st);
  };
  read("DATA", c->flux);
  double crval = 0, cd = 0, crpix = 0;
  fits_read_key(fp, TDOUBLE, "CRVAL3", &crval, nullptr, &st);
  fits_read_key(fp, TDOUBLE, "CD3_3", &cd, nullptr, &st);
  fits_read_key(fp, TDOUBLE, "CRPIX3", &crpix, nullptr, &st);
  read("STAT", c->variance);
  fits_close_file(fp, &st);
  if (st) return nullptr;
  c->wave = WavelengthAxis::Linear(crval, cd, c->nwave);
  c->wave.crpix = crpix;
  c->source = path;
  return c;
}

TEST(VoronoiNode, BinsRealMuseSubcube) {
  const std::string path = DataDir() + "/muse/mpdaf_subcub_mosaic_UDF.fits";
  if (!std::filesystem::exists(path)) CUBEFLOW_SKIP_WITHOUT_DATA() << "MUSE sub-cube not found: " << path;
  auto cube = ReadMuseCube(path);
  ASSERT_TRUE(cube) << "cannot read " << path;
  ASSERT_EQ(cube->nx, 30);
  ASSERT_EQ(cube->ny, 30);
  ASSERT_EQ(cube->nwave, 500);
  EXPECT_NEAR(cube->wave.At(499), 5373.75, 1e-6);
  // NaN edges, as in full MUSE cubes: blank the first column and the last row.
  std::set<int32_t> unbinned;
  for (int64_t k = 0; k < cube->nwave; ++k)
    for (int64_t i = 0; i < 30; ++i) {
      cube->flux[cube->Index(0, i, k)] = kNaNf;
      cube->variance[cube->Index(i, 29, k)] = kNaNf;
    }
  for (int32_t i = 0; i < 30; ++i) unbinned.insert(i * 30), unbinned.insert(29 * 30 + i);

  // This deep-field patch is faint (median S/N per pixel ~0.15, 0.5 on the brightest source):
  // the whole field reaches S/N ~4.5 without, ~1.1 with the covariance term. Targets chosen to
  // give a handful of bins in both cases.
  for (auto [target, alpha] : {std::pair{1.5, 0.0}, std::pair{0.5, 1.07}}) {
    FakeContext ctx;
    ctx.SetInput("cube", cube);
    auto node = MakeVoronoi({{"target_snr", target}, {"covariance_alpha", alpha}, {"min_snr", 0.0},
                                 {"wave_min", 4750.0}, {"wave_max", 5370.0}});
    node->Process(ctx);
    auto b = CheckOutputs(ctx, *cube, target, alpha, unbinned);
    EXPECT_GE(b->bins.size(), 3u);
    int64_t binned = 0;
    for (int32_t id : b->binid) binned += id >= 0;
    EXPECT_GT(binned, 600);  // spaxels with S/N >= 0
    std::cout << "MUSE UDF sub-cube, target " << target << ", alpha " << alpha << ": " << binned
              << " spaxels in " << b->bins.size() << " bins\n";
  }
}

// --- options and validation -------------------------------------------------------------------

// One default per parameter: the node's binning parameters are those of VoronoiOptions.
TEST(VoronoiNode, BinningDefaultsAreTheLibrarys) {
  const NodeSpec s = VoronoiNode::Spec();
  const VoronoiOptions lib;
  EXPECT_DOUBLE_EQ(std::get<double>(s.FindParam("target_snr")->default_value()), lib.target_snr);
  EXPECT_DOUBLE_EQ(std::get<double>(s.FindParam("covariance_alpha")->default_value()), lib.covariance_alpha);
  EXPECT_DOUBLE_EQ(std::get<double>(s.FindParam("min_fraction")->default_value()), lib.min_fraction);
  EXPECT_EQ(std::get<int64_t>(s.FindParam("max_iter")->default_value()), lib.max_iter);
  EXPECT_EQ(std::get<std::string>(s.FindParam("method")->default_value()), "cvt");
  EXPECT_EQ(lib.method, VoronoiMethod::kCvt);
  const VoronoiOptions o = VoronoiNodeOptions{}.ToLibrary();
  EXPECT_EQ(o.covariance_alpha, lib.covariance_alpha);
  EXPECT_EQ(o.pixel_size, 1.0);  // the spaxel grid
  VoronoiNodeOptions w;
  w.method = "wvt";
  EXPECT_EQ(w.ToLibrary().method, VoronoiMethod::kWvt);
}

// wave_min >= wave_max is reported on wave_max before the run (`cubeflow validate`, the factory
// and the Params constructor), not when the cube arrives.
TEST(VoronoiNode, EmptyWindowIsReportedOnWaveMaxBeforeTheRun) {
  const NodeSpec s = VoronoiNode::Spec();
  const std::map<std::string, Value> given = {{"wave_min", 5500.0}, {"wave_max", 5300.0}};
  const CheckReport r = s.RunChecks(cubeflow::testing::DefaultParams(s, given));
  ASSERT_EQ(r.issues().size(), 1u);
  EXPECT_EQ(r.issues()[0].param, "wave_max");
  const std::string want =
      "wave_max: must be above wave_min (5500 Angstrom), got 5300: the S/N window [wave_min, wave_max] is empty; "
      "set wave_min < wave_max";
  EXPECT_EQ(cftest::BuildError<VoronoiNode>(given), want);
  EXPECT_NE(cftest::BuildError<VoronoiNode>({{"wave_min", 5500.0}}), "");  // above the default wave_max
  EXPECT_EQ(cftest::BuildError<VoronoiNode>({{"wave_min", 5000.0}}), "");
}

}  // namespace

// --- Issue #18: a cube kept in its file (LazyCube) -------------------------------------------

namespace {

/// The synthetic cube with NaN spaxels, a NaN plane part and a DQ mask, written to `path`; the
/// cube in memory and the lazy one read back, with blocks of `rows` rows.
struct TwoCubes {
  std::shared_ptr<Cube> mem, lazy;
};
TwoCubes WriteAndReadBoth(const std::string& path, int64_t rows) {
  auto c = SyntheticCube();
  c->mask.assign(c->flux.size(), 0);
  for (int64_t k = 0; k < c->nwave; ++k) {
    c->flux[c->Index(5, 5, k)] = kNaNf;                      // a spaxel without data
    if (k % 7 == 0) c->mask[c->Index(20, 17, k)] = 1;        // masked pixels in the centre
    if (k > 40) c->variance[c->Index(22, 18, k)] = kNaNf;    // bad variances
  }
  EXPECT_TRUE(fits::WriteCube(path, *c).ok());
  TwoCubes t;
  t.mem = fits::ReadCube(path).ValueOrThrow();
  fits::ReadCubeOptions o;
  o.lazy_above_bytes = 0;
  t.lazy = fits::ReadCube(path, o).ValueOrThrow();
  auto* lazy = dynamic_cast<LazyCube*>(t.lazy.get());
  EXPECT_NE(lazy, nullptr);
  if (lazy) lazy->block_bytes = static_cast<size_t>(rows * c->nx * c->nwave * 9);  // flux, variance, DQ
  return t;
}

void ExpectSameSpectrum(const Spectrum& a, const Spectrum& b) {
  EXPECT_EQ(a.id, b.id);
  ASSERT_EQ(a.flux.size(), b.flux.size());
  EXPECT_EQ(std::memcmp(a.flux.data(), b.flux.data(), a.flux.size() * sizeof(double)), 0) << "bin " << a.id;
  EXPECT_EQ(std::memcmp(a.variance.data(), b.variance.data(), a.variance.size() * sizeof(double)), 0) << "bin " << a.id;
  EXPECT_EQ(a.mask, b.mask) << "bin " << a.id;
  EXPECT_EQ(a.meta, b.meta);
  EXPECT_EQ(a.wave.crval, b.wave.crval);
  EXPECT_EQ(a.wave.crpix, b.wave.crpix);
  EXPECT_EQ(a.wave.n, b.wave.n);
}

}  // namespace

TEST(VoronoiNode, LazyCubeGivesTheSameBinningAndSpectraInBinOrder) {
  cftest::TempDir dir;
  const TwoCubes t = WriteAndReadBoth(dir.File("c.fits"), 3);
  const std::map<std::string, Value> params = {{"target_snr", 40.0}, {"wave_min", 5300.0}, {"wave_max", 5500.0},
                                               {"covariance_alpha", 1.07}};
  FakeContext a, b;
  a.SetInput("cube", t.mem);
  b.SetInput("cube", t.lazy);
  MakeVoronoi(params)->Process(a);
  MakeVoronoi(params)->Process(b);
  auto ba = a.Output<Binning>("binning"), bb = b.Output<Binning>("binning");
  ASSERT_TRUE(ba && bb);
  EXPECT_EQ(ba->binid, bb->binid);
  ASSERT_EQ(ba->bins.size(), bb->bins.size());
  ASSERT_GT(ba->bins.size(), 10u);
  for (size_t k = 0; k < ba->bins.size(); ++k) {
    EXPECT_EQ(ba->bins[k].spaxels, bb->bins[k].spaxels);
    EXPECT_EQ(ba->bins[k].snr, bb->bins[k].snr);
    EXPECT_EQ(ba->bins[k].x, bb->bins[k].x);
  }
  EXPECT_EQ(a.Output<Map>("binid")->data, b.Output<Map>("binid")->data);
  EXPECT_EQ(a.Output<Map>("binid")->header, b.Output<Map>("binid")->header);
  // The spectra: same bits, same (bin) order; the lazy stream holds one block of 3 rows.
  auto& src = dynamic_cast<BinSpectraSource&>(*b.Stream("spectra"));
  EXPECT_EQ(src.rows_per_block(), 3);
  const auto sa = Drain(*a.Stream("spectra"));
  std::vector<std::shared_ptr<const Spectrum>> sb;
  size_t most_open = 0, most_block = 0, most_waiting = 0;
  int64_t key = -1;
  std::shared_ptr<const Data> d;
  while (src.Next(key, d)) {
    EXPECT_EQ(key, static_cast<int64_t>(sb.size())) << "bins come in bin order";
    sb.push_back(std::static_pointer_cast<const Spectrum>(d));
    most_open = std::max(most_open, src.open_bins());
    most_block = std::max(most_block, src.block_bytes_held());
    most_waiting = std::max(most_waiting, src.waiting_bytes());
  }
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t k = 0; k < sa.size(); ++k) ExpectSameSpectrum(*sa[k], *sb[k]);
  const size_t budget = static_cast<size_t>(3 * 40 * 60 * 9);
  EXPECT_LE(most_block, budget) << "one block of rows at a time";
  EXPECT_GT(most_block, 0u);
  EXPECT_LE(most_waiting, budget / 4 + 60 * 17) << "waiting bins: at most a quarter of the block size in memory (plus the next one)";
  EXPECT_LT(most_open, ba->bins.size() / 2) << "only bins across a block's edge are open";
  EXPECT_EQ(src.open_bins(), 0u);
  EXPECT_EQ(src.block_bytes_held(), 0u) << "the last block is released";
  // Make(b) on the lazy cube (the rows the bin spans) gives the same too.
  for (size_t k = 0; k < sa.size(); k += 5) ExpectSameSpectrum(*sa[k], *src.Make(k));
  // A 1-byte budget: one row per block, and every bin that completes before its turn waits in
  // the temporary file; still the same spectra in bin order.
  BinSpectraSource tiny(t.lazy, bb, 1.07, {}, 1);
  EXPECT_EQ(tiny.rows_per_block(), 1);
  const auto st = Drain(tiny);
  ASSERT_EQ(st.size(), sa.size());
  for (size_t k = 0; k < sa.size(); ++k) ExpectSameSpectrum(*sa[k], *st[k]);
  EXPECT_GT(tiny.spilled(), sa.size() / 4) << "bins complete out of bin order here: many waited in the file";
  EXPECT_LE(tiny.waiting_bytes(), 0u);
}

TEST(VoronoiNode, LazyCubeWithoutVarianceGivesTheSameSpectra) {
  cftest::TempDir dir;
  auto c = SyntheticCube();
  c->variance.clear();
  const std::string path = dir.File("n.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  auto mem = fits::ReadCube(path).ValueOrThrow();
  fits::ReadCubeOptions o;
  o.lazy_above_bytes = 0;
  auto lazy = fits::ReadCube(path, o).ValueOrThrow();
  dynamic_cast<LazyCube&>(*lazy).block_bytes = 1;  // one row per block
  FakeContext a, b;
  a.SetInput("cube", mem);
  b.SetInput("cube", lazy);
  MakeVoronoi({{"target_snr", 30.0}})->Process(a);
  MakeVoronoi({{"target_snr", 30.0}})->Process(b);
  EXPECT_TRUE(b.Logged("DER_SNR"));
  EXPECT_EQ(a.Output<Binning>("binning")->binid, b.Output<Binning>("binning")->binid);
  const auto sa = Drain(*a.Stream("spectra"));
  const auto sb = Drain(*b.Stream("spectra"));
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t k = 0; k < sa.size(); ++k) ExpectSameSpectrum(*sa[k], *sb[k]);
}

TEST(VoronoiNode, LazyCubeReadErrorNamesTheFileAndExtension) {
  cftest::TempDir dir;
  const std::string path = dir.File("c.fits");
  const TwoCubes t = WriteAndReadBoth(path, 3);
  FakeContext ctx;
  ctx.SetInput("cube", t.lazy);
  MakeVoronoi({{"target_snr", 40.0}})->Process(ctx);
  // The file loses its end (STAT, DQ) after binning, before the spectra are read.
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  try {
    Drain(*ctx.Stream("spectra"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'" + path + "'"), std::string::npos) << m;
    EXPECT_NE(m.find("HDU 'STAT'"), std::string::npos) << m;
    EXPECT_NE(m.find("truncated or corrupt"), std::string::npos) << m;
  }
}
