// Tests of spectral.snr_map: the maps by hand (variance and DER_SNR), masks, the node's fallback
// to DER_SNR, its validation hook, and the window-sum S/N it shares with binning.voronoi
// (cubeflow/spectral/snr.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/testing/fake_context.hpp"
#include "fits_test_util.hpp"
#include "node_test_util.hpp"
#include "temp_dir.hpp"
#include "spectral_nodes.hpp"

using namespace cubeflow;
using cubeflow::testing::FakeContext;

namespace {

/// The spec of spectral.snr_map, with its factory, as the plugin registers it.
NodeSpec SnrMapSpec() {
  Registry r;
  spectral::RegisterSnrMap(r);
  return *r.Find("spectral.snr_map");
}

}  // namespace


namespace {

/// 3 x 2 spaxels, wavelengths 5280 + 10 k (k = 0..19); window 5300..5400 is k = 2..12.
std::shared_ptr<Cube> SnrCube() {
  auto c = std::make_shared<Cube>();
  c->nx = 3;
  c->ny = 2;
  c->nwave = 20;
  c->wave = WavelengthAxis::Linear(5280, 10, 20);
  c->flux.assign(120, 2.0f);
  c->variance.assign(120, 4.0f);
  c->wcs = cftest::RotatedWcs(3, 2);
  c->bunit = "1e-20 erg/s/cm2/A";
  // spaxel (1,0): a NaN flux in the window, a NaN outside, a zero and a negative variance.
  c->flux[c->Index(1, 0, 5)] = NAN;
  c->flux[c->Index(1, 0, 15)] = NAN;
  c->variance[c->Index(1, 0, 6)] = 0.0f;
  c->variance[c->Index(1, 0, 7)] = -1.0f;
  c->flux[c->Index(1, 0, 8)] = 5.0f;
  // spaxel (2,1): everything bad in the window.
  for (int k = 2; k <= 12; ++k) c->flux[c->Index(2, 1, k)] = NAN;
  // spaxel (0,1): flux = k, variance = k (k = 2..12), plus a huge value outside the window.
  for (int k = 0; k < 20; ++k) {
    c->flux[c->Index(0, 1, k)] = static_cast<float>(k);
    c->variance[c->Index(0, 1, k)] = static_cast<float>(k);
  }
  c->flux[c->Index(0, 1, 19)] = 1e6f;
  return c;
}

}  // namespace

TEST(SnrMap, VarianceMethodByHand) {
  auto c = SnrCube();
  auto m = spectral::ComputeSnrMaps(*c, 5300, 5400, false);
  EXPECT_EQ(m.k0, 2);
  EXPECT_EQ(m.k1, 12);
  const auto& f = m.flux->data;
  const auto& s = m.snr->data;
  // (0,0): 11 pixels of 2 +- 2.
  EXPECT_DOUBLE_EQ(f[0], 2.0);
  EXPECT_NEAR(s[0], 22.0 / std::sqrt(44.0), 1e-12);
  // (1,0): k=5 NaN, k=6 zero var, k=7 negative var -> 8 good pixels, one of them 5.
  EXPECT_NEAR(f[1], (7 * 2.0 + 5.0) / 8.0, 1e-12);
  EXPECT_NEAR(s[1], 19.0 / std::sqrt(32.0), 1e-12);
  // (0,1): sum k = 77 over k = 2..12, sum var = 77.
  EXPECT_NEAR(f[3], 7.0, 1e-12);
  EXPECT_NEAR(s[3], 77.0 / std::sqrt(77.0), 1e-12);
  // (2,1): no good pixel.
  EXPECT_TRUE(std::isnan(f[5]));
  EXPECT_TRUE(std::isnan(s[5]));
  EXPECT_EQ(m.flux->name, "FLUX");
  EXPECT_EQ(m.snr->name, "SNR");
  EXPECT_EQ(m.flux->bunit, c->bunit);
  EXPECT_EQ(m.snr->bunit, "");
  EXPECT_EQ(m.snr->wcs.cards, c->wcs.cards);
}

TEST(SnrMap, MaskedPixelsAreSkipped) {
  auto c = SnrCube();
  c->mask.assign(120, 0);
  c->mask[c->Index(0, 0, 4)] = 1;
  c->flux[c->Index(0, 0, 4)] = 100.0f;
  auto m = spectral::ComputeSnrMaps(*c, 5300, 5400, false);
  EXPECT_DOUBLE_EQ(m.flux->data[0], 2.0);
  EXPECT_NEAR(m.snr->data[0], 20.0 / std::sqrt(40.0), 1e-12);
}

TEST(SnrMap, DerSnrRecoversKnownNoise) {
  auto c = std::make_shared<Cube>();
  c->nx = 2;
  c->ny = 1;
  c->nwave = 4001;
  c->wave = WavelengthAxis::Linear(5000, 0.25, 4001);
  c->flux.resize(8002);
  std::mt19937 rng(12345);
  std::normal_distribution<double> g(0.0, 1.0);
  for (int64_t k = 0; k < c->nwave; ++k) {
    c->flux[c->Index(0, 0, k)] = static_cast<float>(10.0 + g(rng));     // S/N 10 per pixel
    c->flux[c->Index(1, 0, k)] = static_cast<float>(4.0 + 0.5 * k);  // noiseless ramp (exact in float)
  }
  auto m = spectral::ComputeSnrMaps(*c, 5000, 6000, true);
  const double n = 4001;
  EXPECT_NEAR(m.snr->data[0] / (10.0 * std::sqrt(n)), 1.0, 0.05);
  EXPECT_NEAR(m.flux->data[0], 10.0, 0.05);
  EXPECT_TRUE(std::isnan(m.snr->data[1]));  // zero noise: S/N undefined
}

TEST(SnrMap, NodeFallsBackToDerSnrWithoutVarianceAndRejectsBadWindow) {
  const NodeSpec spec = SnrMapSpec();
  EXPECT_EQ(spec.name(), "spectral.snr_map");
  ASSERT_NE(spec.FindOutput("flux"), nullptr);
  ASSERT_NE(spec.FindOutput("snr"), nullptr);
  auto c = SnrCube();
  c->variance.clear();
  auto node = cubeflow::testing::MakeNode(spec);
  FakeContext ctx;
  ctx.SetInput("cube", c);
  node->Process(ctx);
  auto snr = ctx.Output<Map>("snr");
  ASSERT_TRUE(snr);
  EXPECT_EQ(snr->header.at("SNRMETH"), "der_snr");
  EXPECT_FALSE(ctx.logs().empty());
  auto node2 = cubeflow::testing::MakeNode(spec, {{"wave_min", 8000.0}, {"wave_max", 9000.0}});
  FakeContext ctx2;
  ctx2.SetInput("cube", SnrCube());
  EXPECT_THROW(node2->Process(ctx2), Error);
}

TEST(SnrMap, EmptyWindowIsReportedOnWaveMaxBeforeTheRun) {
  const NodeSpec spec = SnrMapSpec();
  const std::map<std::string, Value> given = {{"wave_min", 5500.0}, {"wave_max", 5300.0}};
  const CheckReport r = spec.RunChecks(cubeflow::testing::DefaultParams(spec, given));
  ASSERT_EQ(r.issues().size(), 1u);
  EXPECT_EQ(r.issues()[0].param, "wave_max");
  EXPECT_TRUE(r.has_errors());
  // The factory runs the same check: the node is never built.
  EXPECT_EQ(cftest::BuildError(spec, given),
            "wave_max: must be above wave_min (5500 Angstrom), got 5300: the window [wave_min, wave_max] is "
            "empty; set wave_min < wave_max");
  EXPECT_NE(cftest::BuildError(spec, {{"wave_min", 5300.0}, {"wave_max", 5300.0}}), "");
  EXPECT_EQ(cftest::BuildError(spec, {{"wave_min", 5300.0}, {"wave_max", 5300.5}}), "");
}

TEST(SnrMap, WindowOutsideTheCubeSaysWhatToDo) {
  try {
    spectral::ComputeSnrMaps(*SnrCube(), 8000, 9000, false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "the window 8000-9000 Angstrom lies outside the cube's wavelength range 5280-5470 Angstrom; move "
              "wave_min/wave_max into that range");
  }
}

// Issue #18: the node on a cube kept in its file (LazyCube, read in blocks of one row): the same
// maps and the same diagnostics as on the cube in memory.
TEST(SnrMap, LazyCubeGivesTheSameMapsAndWarnings) {
  cftest::TempDir dir;
  auto c = SnrCube();
  c->mask.assign(c->flux.size(), 0);
  c->mask[c->Index(0, 1, 4)] = 1;
  const std::string path = dir.File("c.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  auto mem = fits::ReadCube(path).ValueOrThrow();
  fits::ReadCubeOptions o;
  o.lazy_above_bytes = 0;
  auto lazy = fits::ReadCube(path, o).ValueOrThrow();
  dynamic_cast<LazyCube&>(*lazy).block_bytes = 1;
  const NodeSpec spec = SnrMapSpec();
  for (const std::string method : {"variance", "der_snr"}) {
    FakeContext a, b;
    a.SetInput("cube", mem);
    b.SetInput("cube", lazy);
    cubeflow::testing::MakeNode(spec, {{"wave_min", 5300.0}, {"wave_max", 5400.0}, {"method", method}})->Process(a);
    cubeflow::testing::MakeNode(spec, {{"wave_min", 5300.0}, {"wave_max", 5400.0}, {"method", method}})->Process(b);
    for (const char* port : {"flux", "snr"}) {
      auto x = a.Output<Map>(port), y = b.Output<Map>(port);
      ASSERT_TRUE(x && y);
      ASSERT_EQ(x->data.size(), y->data.size());
      EXPECT_EQ(std::memcmp(x->data.data(), y->data.data(), x->data.size() * sizeof(double)), 0) << method << " " << port;
      EXPECT_EQ(x->header, y->header);
    }
    EXPECT_EQ(a.logs(), b.logs()) << method;
    EXPECT_TRUE(b.Logged("spaxels have no S/N")) << method;
  }
}
