// inference.diffusion: fields and their order per bin, a bin whose sampling fails flagged (never
// dropped), spectra off the forward model's grid refused with a message that names the fix.
#include <gtest/gtest.h>

#include <cmath>

#include "cubeflow/nn/diffusion_posterior.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/testing/fake_context.hpp"
#include "diffusion_node.hpp"

using namespace cubeflow;
using namespace cubeflow::inference;

namespace {

std::shared_ptr<const sim::ForwardModel> BuiltinModel() {
  sim::SimConfig c;
  c.noise.enabled = false;
  return *sim::ForwardModel::Build(sim::BuiltinSsp(), c);
}

/// An untrained prior: the node's bookkeeping does not need skill (the posterior's skill is
/// test_diffusion_posterior's).
std::shared_ptr<const diffusion::PriorModel> Prior() {
  diffusion::HistoryScaler sc;
  sc.mean.fill(0);
  sc.sd.fill(1);
  for (int b = 0; b < diffusion::kNumBins; ++b) sc.mean[b] = -2;
  diffusion::ScoreArch arch;
  arch.hidden = 16;
  arch.blocks = 1;
  arch.embed = 8;
  return std::make_shared<const diffusion::PriorModel>(diffusion::PriorModel::Untrained(arch, sc, 0.01, 20, 1));
}

/// A noisy (S/N 50) spectrum of a prior draw, rendered by the forward model, as spectral.restframe
/// hands it on.
std::shared_ptr<Spectrum> MockSpectrum(const sim::ForwardModel& fm, int64_t id) {
  auto sampler = diffusion::PosteriorSampler::Make(Prior(), std::shared_ptr<const sim::ForwardModel>(&fm, [](auto*) {}));
  diffusion::PosteriorDraw d;
  d.x = diffusion::DrawPriorHistory(fm.config().sfh, fm.time_grid(), 99, id);
  d.tau_bc = 1.0;
  d.tau_ism = 0.3;
  auto s = std::make_shared<Spectrum>();
  s->id = id;
  s->wave = fm.config().obs.wave;
  s->rest_frame = true;
  s->norm = 3.0;
  sampler->Render(d, &s->flux, nullptr);
  s->variance.assign(s->flux.size(), 1.0 / 2500);
  return s;
}

DiffusionOptions Fast() {
  DiffusionOptions o;
  o.n_samples = 8;
  o.steps = 6;
  return o;
}

}  // namespace

TEST(DiffusionNode, EmitsOrderedPercentilesAndFlagsFailedBins) {
  auto fm = BuiltinModel();
  auto o = Fast();
  o.emit_samples = true;
  DiffusionNode node(Prior(), fm, "prior.pt", o);
  cubeflow::testing::FakeContext ctx;
  auto good = MockSpectrum(*fm, 0);
  auto bad = MockSpectrum(*fm, 1);
  bad->variance.assign(bad->flux.size(), 0.0);  // no usable pixel: the sampler refuses the bin
  bad->quality = kQualLowSnr;
  ctx.AddItem(10, {{"spectra", good}});
  ctx.AddItem(11, {{"spectra", bad}});
  node.Process(ctx);
  const auto out = ctx.Emitted("results");
  ASSERT_EQ(out.size(), 2u);  // the failed bin is emitted too
  auto r0 = std::static_pointer_cast<const Record>(out[0]);
  auto r1 = std::static_pointer_cast<const Record>(out[1]);
  EXPECT_EQ(r0->id, 10);
  EXPECT_EQ(r0->quality & kQualInferenceFailed, 0u);
  for (const char* q : {"mw_logage", "lw_logage", "mw_zh", "lw_zh", "t10", "t50", "t90", "tau_bc", "tau_ism"}) {
    const std::string n = q;
    ASSERT_TRUE(r0->fields.count(n) && r0->fields.count(n + "_p16") && r0->fields.count(n + "_p84") &&
                r0->fields.count(n + "_err") && r0->fields.count(n + "_samples"))
        << n;
    const double m = r0->fields.at(n).values[0];
    const double lo = r0->fields.at(n + "_p16").values[0];
    const double hi = r0->fields.at(n + "_p84").values[0];
    EXPECT_TRUE(std::isfinite(m) && lo <= m && m <= hi) << n << " " << lo << " " << m << " " << hi;
    EXPECT_EQ(r0->fields.at(n + "_samples").values.size(), 8u);
  }
  ASSERT_EQ(r0->fields.at("mass_frac").values.size(), 16u);
  ASSERT_EQ(r0->fields.at("zh").values.size(), 16u);
  EXPECT_TRUE(r0->fields.count("flux_norm"));
  EXPECT_EQ(r1->id, 11);
  EXPECT_NE(r1->quality & kQualInferenceFailed, 0u);
  EXPECT_NE(r1->quality & kQualLowSnr, 0u);  // the input's flags are kept
  EXPECT_TRUE(std::isnan(r1->fields.at("lw_logage").values[0]));
  EXPECT_TRUE(std::isnan(r1->fields.at("mass_frac").values[3]));
  EXPECT_TRUE(ctx.Logged("bin 1"));
}

TEST(DiffusionNode, RefusesSpectraOffTheForwardModelsGrid) {
  auto fm = BuiltinModel();
  DiffusionNode node(Prior(), fm, "prior.pt", Fast());
  cubeflow::testing::FakeContext ctx;
  auto s = MockSpectrum(*fm, 0);
  s->rest_frame = false;
  ctx.AddItem(0, {{"spectra", s}});
  try {
    node.Process(ctx);
    FAIL() << "an observed-frame spectrum was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("spectral.restframe"), std::string::npos) << e.what();
  }
  cubeflow::testing::FakeContext ctx2;
  auto t = MockSpectrum(*fm, 0);
  t->variance.clear();
  ctx2.AddItem(0, {{"spectra", t}});
  try {
    node.Process(ctx2);
    FAIL() << "a spectrum without variance was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("variance"), std::string::npos) << e.what();
  }
}
