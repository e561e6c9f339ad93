// Tests of custom.continuum_norm: a batched node. A FakeContext with several items is one
// batch (one Process call); what the node emits per item is in ctx.emissions(), with keys.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <cubeflow/data.hpp>
#include <cubeflow/registry.hpp>
#include <cubeflow/testing/fake_context.hpp>

#include "continuum_norm.hpp"

namespace {

using namespace cubeflow;
using cubeflow::testing::FakeContext;
using cubeflow::testing::MakeNode;

/// Flux c0 + c1 x + c2 x^2 (x = (l - 5000) / 100) times (1 - depth * Gaussian at 5175, sigma 3);
/// variance 4.
std::shared_ptr<Spectrum> Spectrum3(double c0, double c1, double c2, double depth = 0.0) {
  auto s = std::make_shared<Spectrum>();
  s->wave = WavelengthAxis::Linear(4750.0, 1.25, 480);
  for (int64_t i = 0; i < s->wave.n; ++i) {
    const double l = s->wave.At(i), x = (l - 5000.0) / 100.0;
    const double line = 1.0 - depth * std::exp(-0.5 * std::pow((l - 5175.0) / 3.0, 2));
    s->flux.push_back((c0 + c1 * x + c2 * x * x) * line);
    s->variance.push_back(4.0);
  }
  s->meta["snr"] = 20;
  return s;
}

const Spectrum& Emitted(const FakeContext& ctx, size_t k) {
  return static_cast<const Spectrum&>(*ctx.emissions().at(k).data);
}

TEST(ContinuumNorm, DeclaresItsBatchParameter) {
  const NodeSpec spec = custom::ContinuumNormNode::Spec();
  EXPECT_EQ(spec.batch_param(), "batch_size");
  Registry registry;
  registry.Add<custom::ContinuumNormNode>();  // the registry accepts the batch parameter
  EXPECT_NE(registry.Find("custom.continuum_norm"), nullptr);
}

TEST(ContinuumNorm, DividesEverySpectrumOfTheBatchByItsContinuum) {
  FakeContext ctx("norm", "custom.continuum_norm");
  // One call with three items: a batch of three bins.
  ctx.AddItem(5, {{"spectra", Spectrum3(100, 10, -3)}});
  ctx.AddItem(9, {{"spectra", Spectrum3(50, -4, 1)}});
  ctx.AddItem(2, {{"spectra", Spectrum3(80, 0, 0)}});
  MakeNode<custom::ContinuumNormNode>({{"degree", int64_t{2}}})->Process(ctx);

  ASSERT_EQ(ctx.emissions().size(), 3u);
  const int64_t keys[] = {5, 9, 2};
  const double c0[] = {100, 50, 80};
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(ctx.emissions()[k].port, "spectra");
    EXPECT_EQ(ctx.emissions()[k].key, keys[k]);  // emitted per item, keyed like the item
    const Spectrum& s = Emitted(ctx, k);
    EXPECT_EQ(s.quality, 0u);
    EXPECT_EQ(s.meta.at("continuum_degree"), 2.0);
    EXPECT_EQ(s.meta.at("snr"), 20.0);  // the input meta is kept
    for (size_t i = 0; i < s.flux.size(); ++i) ASSERT_NEAR(s.flux[i], 1.0, 1e-9) << "item " << k << " pixel " << i;
    // Variance divided by the square of the continuum: at 5000 Angstrom (x = 0) it is c0.
    const auto at5000 = static_cast<size_t>(std::lround(s.wave.PixelOf(5000.0)));
    EXPECT_NEAR(s.variance[at5000], 4.0 / (c0[k] * c0[k]), 1e-12);
  }
}

TEST(ContinuumNorm, ExcludedWindowsKeepTheirLines) {
  FakeContext ctx;
  ctx.AddItem(0, {{"spectra", Spectrum3(100, 10, -3, 0.3)}});
  MakeNode<custom::ContinuumNormNode>({{"degree", int64_t{2}}, {"exclude", std::vector<double>{5150, 5200}}})
      ->Process(ctx);
  const Spectrum& s = Emitted(ctx, 0);
  const auto core = static_cast<size_t>(std::lround(s.wave.PixelOf(5175.0)));
  EXPECT_NEAR(s.flux[core], 0.7, 1e-9);  // the line, relative to its continuum
  EXPECT_NEAR(s.flux[0], 1.0, 1e-9);
}

TEST(ContinuumNorm, SpectraOnOneGridWithTheSameFittedPixelsShareOneFit) {
  FakeContext ctx;
  auto masked = Spectrum3(60, 1, 1);
  masked->mask.assign(masked->flux.size(), 0);
  masked->mask[100] = 1;  // another set of fitted pixels: its own fit
  ctx.AddItem(0, {{"spectra", Spectrum3(100, 10, -3)}});
  ctx.AddItem(1, {{"spectra", masked}});
  ctx.AddItem(2, {{"spectra", Spectrum3(50, -4, 1)}});
  MakeNode<custom::ContinuumNormNode>({{"degree", int64_t{2}}})->Process(ctx);
  EXPECT_TRUE(ctx.Logged("3 spectra, 2 least-squares fits"));
  EXPECT_NEAR(Emitted(ctx, 1).flux[101], 1.0, 1e-9);
  EXPECT_EQ(Emitted(ctx, 1).mask[100], 1);
}

TEST(ContinuumNorm, ABinThatCannotBeFittedIsFlaggedAndTheBatchGoesOn) {
  FakeContext ctx;
  auto empty = Spectrum3(100, 0, 0);
  empty->mask.assign(empty->flux.size(), 1);  // nothing to fit
  auto negative = Spectrum3(-5, 1, 0);        // continuum below zero
  ctx.AddItem(10, {{"spectra", Spectrum3(100, 10, -3)}});
  ctx.AddItem(11, {{"spectra", empty}});
  ctx.AddItem(12, {{"spectra", negative}});
  MakeNode<custom::ContinuumNormNode>({{"degree", int64_t{2}}})->Process(ctx);

  ASSERT_EQ(ctx.emissions().size(), 3u);
  EXPECT_EQ(Emitted(ctx, 0).quality, 0u);
  EXPECT_NEAR(Emitted(ctx, 0).flux[7], 1.0, 1e-9);
  for (size_t k : {1u, 2u}) {
    const Spectrum& s = Emitted(ctx, k);
    EXPECT_EQ(ctx.emissions()[k].key, static_cast<int64_t>(10 + k));
    EXPECT_EQ(s.quality, kQualInferenceFailed);
    EXPECT_TRUE(std::isnan(s.flux[7]));
    EXPECT_EQ(s.mask[7], 1);
  }
  EXPECT_TRUE(ctx.Logged("bin 11: only 0 of 480 pixels to fit (need 240); passed on masked, quality FAILED"));
  EXPECT_TRUE(ctx.Logged("bin 12: the fitted continuum is not positive at"));
}

TEST(ContinuumNorm, CheckRejectsExcludeWindowsThatAreNotPairs) {
  try {
    MakeNode<custom::ContinuumNormNode>({{"exclude", std::vector<double>{5150, 5200, 5300}}});
    FAIL() << "an odd number of exclude values was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "exclude: needs pairs [lo, hi, ...]; got 3 values");
  }
  try {
    MakeNode<custom::ContinuumNormNode>({{"exclude", std::vector<double>{5200, 5150}}});
    FAIL() << "a reversed window was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "exclude: window 1 [5200, 5150] must have lo < hi");
  }
}

}  // namespace
