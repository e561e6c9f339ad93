// The diffusion prior (cubeflow/nn/diffusion.hpp): its configuration, exact resume of its
// training, and a small prior trained in the test whose samples must reproduce the marginals of
// held-out prior draws while an untrained network's samples must not (docs/diffusion.md).
#include "cubeflow/nn/diffusion.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cubeflow/sim/observables.hpp"

using namespace cubeflow;
using diffusion::History;
using diffusion::kHistoryDim;
using diffusion::kNumBins;

namespace {

std::string TempDir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("cubeflow_test_diffusion_" + name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

diffusion::TrainConfig Small(const std::string& dir, int64_t n, int64_t epochs) {
  diffusion::TrainConfig c;
  c.output = dir + "/prior.pt";
  c.n = n;
  c.seed = 3;
  c.epochs = epochs;
  c.batch_size = 128;
  c.lr = 2e-3;
  c.threads = 1;
  c.arch.hidden = 96;
  c.arch.blocks = 2;
  c.arch.embed = 16;
  return c;
}

std::vector<History> Draws(int64_t n, uint64_t seed) {
  const sim::SimConfig cfg;
  const sim::TimeGrid grid = sim::MakeTimeGrid(cfg.obs.substeps_per_bin);
  std::vector<History> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = diffusion::DrawPriorHistory(cfg.sfh, grid, seed, i);
  return v;
}

/// \brief How far samples are from reference draws in their first two moments.
struct MomentErrors {
  double mean = 0;  ///< largest |mean difference| / reference sd over the 32 components
  double sd_mass = 0;  ///< largest |log(sd ratio)| of the 16 log10 masses
  double sd_zh = 0;    ///< largest |log(sd ratio)| of the 16 [Z/H]
  double corr = 0;  ///< largest |correlation difference| over the 496 pairs
  bool Within(double m, double s_mass, double s_zh, double c) const {
    return mean < m && sd_mass < s_mass && sd_zh < s_zh && corr < c;
  }
};

MomentErrors Moments(const std::vector<History>& ref, const std::vector<History>& s) {
  auto stats = [](const std::vector<History>& v, History& m, History& sd, std::vector<double>& corr) {
    const double n = static_cast<double>(v.size());
    m.fill(0);
    for (const auto& x : v)
      for (int k = 0; k < kHistoryDim; ++k) m[k] += x[k] / n;
    corr.assign(kHistoryDim * kHistoryDim, 0);
    for (const auto& x : v)
      for (int a = 0; a < kHistoryDim; ++a)
        for (int b = 0; b < kHistoryDim; ++b) corr[a * kHistoryDim + b] += (x[a] - m[a]) * (x[b] - m[b]) / (n - 1);
    for (int k = 0; k < kHistoryDim; ++k) sd[k] = std::sqrt(corr[k * kHistoryDim + k]);
    for (int a = 0; a < kHistoryDim; ++a)
      for (int b = 0; b < kHistoryDim; ++b) corr[a * kHistoryDim + b] /= sd[a] * sd[b];
  };
  History mr, sr, ms, ss;
  std::vector<double> cr, cs;
  stats(ref, mr, sr, cr);
  stats(s, ms, ss, cs);
  MomentErrors e;
  for (int k = 0; k < kHistoryDim; ++k) {
    e.mean = std::max(e.mean, std::abs(ms[k] - mr[k]) / sr[k]);
    double& sd = k < kNumBins ? e.sd_mass : e.sd_zh;
    sd = std::max(sd, std::abs(std::log(ss[k] / sr[k])));
  }
  for (size_t i = 0; i < cr.size(); ++i) e.corr = std::max(e.corr, std::abs(cs[i] - cr[i]));
  return e;
}

}  // namespace

TEST(DiffusionPrior, ConfigurationNeedsItsKindAndNamesUnknownKeys) {
  auto bad = diffusion::ParseTrainConfig("output: a.pt\n", "x.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("kind: diffusion"), std::string::npos);
  auto unknown = diffusion::ParseTrainConfig("kind: diffusion\noutput: a.pt\nsigma_mni: 0.1\n", "x.yaml");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("sigma_mni"), std::string::npos);
  auto ok = diffusion::ParseTrainConfig(
      "kind: diffusion\noutput: a.pt\nn: 5000\narchitecture: {hidden: 64, blocks: 2}\n", "x.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->n, 5000);
  EXPECT_EQ(ok->arch.hidden, 64);
  EXPECT_FALSE(ok->scale_mass_by_nonempty);
  auto nonempty = diffusion::ParseTrainConfig("kind: diffusion\noutput: a.pt\nmass_scaling: nonempty\n", "x.yaml");
  ASSERT_TRUE(nonempty.ok()) << nonempty.status().message();
  EXPECT_TRUE(nonempty->scale_mass_by_nonempty);
  auto wrong = diffusion::ParseTrainConfig("kind: diffusion\noutput: a.pt\nmass_scaling: robust\n", "x.yaml");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("mass_scaling must be 'all' or 'nonempty' (got 'robust')"), std::string::npos)
      << wrong.status().message();
}

// An interrupted and resumed training gives the losses and weights of an uninterrupted one.
TEST(DiffusionPrior, ResumeIsExact) {
  const std::string d1 = TempDir("straight"), d2 = TempDir("resumed");
  auto c1 = Small(d1, 600, 4), c2 = Small(d2, 600, 4);
  c1.arch.hidden = c2.arch.hidden = 32;
  auto straight = diffusion::Train(c1);
  ASSERT_TRUE(straight.ok()) << straight.status().message();
  volatile int stop = 0;
  auto first = diffusion::Train(c2, [&](const nn::EpochReport& r) { stop = r.epoch == 2; }, &stop);
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(first->interrupted);
  EXPECT_FALSE(std::filesystem::exists(c2.output));
  c2.resume = true;
  auto resumed = diffusion::Train(c2);
  ASSERT_TRUE(resumed.ok()) << resumed.status().message();
  ASSERT_EQ(resumed->val_losses.size(), 4u);
  for (size_t e = 0; e < 4; ++e) EXPECT_EQ(resumed->val_losses[e], straight->val_losses[e]) << "epoch " << e + 1;
  auto m1 = diffusion::PriorModel::Load(c1.output);
  auto m2 = diffusion::PriorModel::Load(c2.output);
  ASSERT_TRUE(m1.ok() && m2.ok());
  std::vector<double> z(3 * kHistoryDim, 0.3);
  EXPECT_EQ(m1->Score(z, 0.5), m2->Score(z, 0.5));
  // Another seed must not resume this checkpoint.
  auto c3 = c2;
  c3.seed = 4;
  auto wrong = diffusion::Train(c3);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("seed"), std::string::npos);
}

// A small prior (8000 histories, seconds of training) against 1000 held-out draws (another
// seed). This is a check that training and sampling work, not the acceptance check of a prior:
// that is ComparePriorSamples (KS, family-wise 1 %) on the shipped prior (`cubeflow evaluate
// models/diffusion_builtin.pt`, docs/diffusion.md); it is printed here. Requirement: every
// component's mean within 0.25 reference sd; the sd of each [Z/H] within a factor exp(0.3) = 1.35;
// every correlation between two components within 0.3 of the reference's (the 16 [Z/H] form
// correlated enrichment histories); the largest KS statistic below 0.25. The log10 masses' sds
// are held only to a factor exp(0.7) = 2: a training this short under-produces empty bins (the
// atom at the floor), giving ~0.6 of the reference sd (printed); the longer training of the
// shipped prior is what reproduces them. The untrained network (close to a standard normal in
// z-scored units, see ScoreArch) must fail the same requirement and the KS check.
TEST(DiffusionPrior, SmallPriorReproducesTheMomentsAndAnUntrainedOneDoesNot) {
  const std::string dir = TempDir("small");
  auto cfg = Small(dir, 8000, 100);
  auto trained = diffusion::Train(cfg);
  ASSERT_TRUE(trained.ok()) << trained.status().message();
  auto model = diffusion::PriorModel::Load(cfg.output);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const auto ref = Draws(1000, 777);
  const double t_u = sim::CosmicTimeGyr(0.0, sim::SimConfig{}.sfh.cosmology);
  diffusion::SamplerOptions so;
  so.steps = 100;
  so.threads = 1;  // 2 threads were 30x slower on a loaded machine (OpenBLAS's spinning pool)
  auto samples = model->Sample(1000, so);
  ASSERT_TRUE(samples.ok());
  const MomentErrors e = Moments(ref, *samples);
  auto cmp = diffusion::ComparePriorSamples(ref, *samples, t_u);
  ASSERT_TRUE(cmp.ok());
  std::printf("small prior (best epoch %lld, val loss %.4f): worst mean offset %.3f sd, |log sd ratio| %.3f (log "
              "masses) %.3f ([Z/H]), correlation difference %.3f; max KS %.3f (critical %.3f)\n",
              static_cast<long long>(trained->best_epoch), trained->best_val, e.mean, e.sd_mass, e.sd_zh, e.corr,
              cmp->max_ks, cmp->critical);
  EXPECT_TRUE(e.Within(0.25, 0.7, 0.3, 0.3));
  EXPECT_LT(cmp->max_ks, 0.25);

  auto untrained = diffusion::PriorModel::Untrained(cfg.arch, model->scaler(), model->sigma_min(),
                                                    model->sigma_max(), 5);
  auto bad = untrained.Sample(1000, so);
  ASSERT_TRUE(bad.ok());
  const MomentErrors b = Moments(ref, *bad);
  auto bad_cmp = diffusion::ComparePriorSamples(ref, *bad, t_u);
  ASSERT_TRUE(bad_cmp.ok());
  std::printf("untrained: worst mean offset %.3f sd, |log sd ratio| %.3f (log masses) %.3f ([Z/H]), correlation "
              "difference %.3f; max KS %.3f\n",
              b.mean, b.sd_mass, b.sd_zh, b.corr, bad_cmp->max_ks);
  EXPECT_FALSE(b.Within(0.25, 0.7, 0.3, 0.3));
  EXPECT_GT(bad_cmp->max_ks, 0.25);
  EXPECT_FALSE(bad_cmp->pass());
}

// The shipped prior (models/diffusion_builtin.pt, trained by models/diffusion_builtin.train.yaml)
// passes the acceptance check of issue #19 item 1, with the figures docs/diffusion.md quotes from
// `cubeflow evaluate models/diffusion_builtin.pt` (2000 samples, 300 noise levels, against 2000
// draws of seed 1042, which neither trained it nor chose it). A regression of the model or the
// sampler fails here: the documented max KS is guarded within 0.01, and the check's own bound
// (the KS critical value at a family-wise 1 %) must hold.
TEST(DiffusionPrior, ShippedPriorPassesItsAcceptanceCheck) {
  auto model = diffusion::PriorModel::Load(std::string(CUBEFLOW_MODELS_DIR) + "/diffusion_builtin.pt");
  ASSERT_TRUE(model.ok()) << model.status().message();
  ASSERT_EQ(model->training_seed(), 42u);
  const uint64_t ref_seed = 1042;
  const auto ref = Draws(2000, ref_seed);
  diffusion::SamplerOptions so;
  so.steps = 300;
  so.threads = 1;
  so.seed = ref_seed + 1;  // as cubeflow evaluate
  auto samples = model->Sample(2000, so);
  ASSERT_TRUE(samples.ok()) << samples.status().message();
  auto cmp = diffusion::ComparePriorSamples(ref, *samples, sim::CosmicTimeGyr(0.0, sim::SimConfig{}.sfh.cosmology));
  ASSERT_TRUE(cmp.ok());
  std::printf("shipped prior: max KS %.4f (critical %.4f; documented 0.0485)\n", cmp->max_ks, cmp->critical);
  EXPECT_TRUE(cmp->pass());
  EXPECT_NEAR(cmp->max_ks, 0.0485, 0.01);
}
