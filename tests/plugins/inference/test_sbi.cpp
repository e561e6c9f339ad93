// Tests of the SBI model (encoder + conditional normalising flow), its training, calibration
// tests, the inference.sbi node and the `cubeflow train` / `evaluate` dispatch for SBI models.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include "cubeflow/nn/commands.hpp"
#include "cubeflow/nn/sbi.hpp"
#include "cubeflow/nn/sbi_train.hpp"
#include "nn_test_util.hpp"
#include "sbi_net.hpp"
#include "sbi_node.hpp"

namespace fs = std::filesystem;
using namespace cubeflow;
using cubeflow::testing::FakeContext;
using nntest::kNWave;
using nntest::PhotometryFrom;
using nntest::SpectrumFrom;

namespace {

constexpr double kTu = 13.47;

fs::path TempDir(const std::string& name) { return nntest::TempDir("sbi", name); }

/// Synthetic library whose spectra are learnable functions of the parameters: the mass-assembly
/// times come from a 10-part Dirichlet split of the age of the universe, [M/H] is uniform; the
/// continuum slope follows t50, a line at 6563 A deepens with t90, one at 5175 A with [M/H],
/// a feature at 5900 A with t10. Photometry (3 bands) is a colour driven by t50.
sim::LibraryData MakeLibrary(int64_t n, uint64_t seed, bool with_phot = true, bool noisy = true) {
  sim::LibraryData lib = nntest::EmptyLibrary(n, with_phot);
  lib.meta["config"] = "cosmology: {h0: 70, omega_m: 0.3}\n";
  const int64_t nb = static_cast<int64_t>(lib.bands.size());
  const int K = sim::kNumAgeBins, Q = sim::kNumMassPercentiles;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::exponential_distribution<double> expo(1.0);
  lib.spectra_err.resize(n * kNWave);
  lib.photometry_err.resize(n * nb);
  lib.mass_frac.assign(n * K, 1.0f / K);
  lib.light_frac.assign(n * K, 1.0f / K);
  lib.zh.resize(n * K);
  lib.t_mass.resize(n * Q);
  lib.tau_bc.assign(n, 0.5f);
  lib.tau_ism.assign(n, 0.2f);
  lib.sfh_kind.assign(n, 0);
  lib.z_final.assign(n, 0.02f);
  lib.age_bin_edges.resize(K + 1);
  for (int j = 0; j <= K; ++j) lib.age_bin_edges[j] = 0.004 * std::pow(1.62, j);
  lib.age_bin_centres.resize(K);
  for (int j = 0; j < K; ++j) lib.age_bin_centres[j] = 0.5 * (lib.age_bin_edges[j] + lib.age_bin_edges[j + 1]);
  std::vector<double> flux(kNWave);
  for (int64_t i = 0; i < n; ++i) {
    double w[10], sum = 0;
    for (double& x : w) sum += (x = expo(rng));
    double cum = 0, t[9];
    for (int q = 0; q < Q; ++q) {
      cum += w[q] / sum;
      t[q] = kTu * cum;
      lib.t_mass[i * Q + q] = static_cast<float>(t[q]);
    }
    const double mh = -0.3 + 0.3 * uni(rng);
    for (int j = 0; j < K; ++j) lib.zh[i * K + j] = static_cast<float>(mh);
    const double a = t[4] / kTu - 0.5, b = t[8] / kTu, c = t[0] / kTu;
    for (int64_t k = 0; k < kNWave; ++k) {
      const double lam = lib.wave.At(k), x = (lam - 5900.0) / 1100.0;
      flux[k] = 1.0 + 0.4 * a * x - 0.3 * (1.0 + mh) * std::exp(-0.5 * std::pow((lam - 5175.0) / 15.0, 2)) -
                0.4 * b * std::exp(-0.5 * std::pow((lam - 6563.0) / 20.0, 2)) -
                0.3 * c * std::exp(-0.5 * std::pow((lam - 5900.0) / 30.0, 2));
    }
    const double norm = nntest::WindowMean(lib.wave, flux);
    const double snr = (i % 2) ? 20.0 : 50.0;
    lib.snr[i] = noisy ? static_cast<float>(snr) : 0.0f;
    for (int64_t k = 0; k < kNWave; ++k) {
      lib.spectra[i * kNWave + k] = static_cast<float>(flux[k] / norm + (noisy ? gauss(rng) / snr : 0.0));
      lib.spectra_err[i * kNWave + k] = noisy ? static_cast<float>(1.0 / snr) : 0.0f;
    }
    for (int64_t bnd = 0; bnd < nb; ++bnd) {
      lib.photometry[i * nb + bnd] = static_cast<float>(std::pow(10.0, 0.3 * (bnd - 1) * a) * (1.0 + 0.01 * gauss(rng)));
      lib.photometry_err[i * nb + bnd] = 0.01f;
    }
  }
  return lib;
}

sbi::TrainConfig TinyConfig(const fs::path& dir) {
  sbi::TrainConfig c;
  c.output = (dir / "sbi.pt").string();
  c.epochs = 3;
  c.batch_size = 32;
  c.batches_per_epoch = 6;
  c.lr = 2e-3;
  c.flow_epochs = 4;
  c.flow_batch_size = 64;
  c.flow_batches_per_epoch = 8;
  c.flow_lr = 3e-3;
  c.seed = 5;
  c.threads = 1;
  c.eval_samples = 50;
  c.encoder.channels = {4, 8, 8};
  c.encoder.spec_hidden = 32;
  c.encoder.spec_features = 16;
  c.encoder.phot_hidden = 8;
  c.encoder.phot_features = 8;
  c.encoder.fusion_hidden = 32;
  c.encoder.summary_dim = 8;
  c.encoder.head_hidden = 16;
  c.flow.layers = 3;
  c.flow.hidden = 16;
  c.flow.context_hidden = 16;
  c.flow.bins = 4;
  return c;
}

/// Metadata of a small random model matching MakeLibrary's inputs.
sbi::SbiMetadata SmallMetadata(int64_t nbands) {
  sbi::SbiMetadata md;
  md.encoder.nwave = kNWave;
  md.encoder.nbands = nbands;
  md.encoder.channels = {4, 8, 8};
  md.encoder.spec_hidden = 32;
  md.encoder.spec_features = 16;
  md.encoder.fusion_hidden = 32;
  md.encoder.summary_dim = 8;
  md.encoder.head_hidden = 16;
  md.flow.layers = 3;
  md.flow.hidden = 16;
  md.flow.context_hidden = 16;
  md.flow.bins = 4;
  md.input.wave = nntest::TestGrid();
  const char* names[] = {"F438W", "F555W", "F814W"};
  const double piv[] = {4326.0, 5308.0, 8040.0};
  for (int64_t b = 0; b < nbands; ++b) {
    md.input.bands.push_back(names[b]);
    md.input.pivots.push_back(piv[b]);
  }
  md.theta = sbi::DefaultTheta();
  for (auto& p : md.theta) {
    p.mean = p.unit == "Gyr" ? 0.8 : -0.15;
    p.std = p.unit == "Gyr" ? 0.3 : 0.1;
  }
  md.lookback_reference = kTu;
  md.snr_log_mean = std::log10(30.0);
  md.snr_log_std = 0.2;
  md.snr_min = 20;
  md.snr_max = 50;
  return md;
}

/// Random non-trivial flow weights (the coupling outputs start at zero = identity).
void PerturbFlow(sbi::Flow& flow, double scale, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard g;
  for (auto& p : flow->parameters()) p.copy_(torch::randn_like(p) * scale);
}

double Field(const Record& r, const std::string& k) { return r.fields.at(k).values.at(0); }

int RunMain(int (*fn)(int, char**), std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return fn(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------------------

TEST(SbiFlow, SplineIsInvertibleWithCorrectJacobian) {
  torch::manual_seed(1);
  const int64_t K = 6, N = 500, d = 3;
  const double B = 3.0;
  auto x = torch::rand({N, d}, torch::kDouble) * 8.0 - 4.0;  // inside and outside [-B, B]
  auto params = torch::randn({N, d, 3 * K - 1}, torch::kDouble) * 1.5;
  auto [y, ld] = sbi::RationalQuadraticSpline(x, params, K, B, false);
  auto [xr, ldi] = sbi::RationalQuadraticSpline(y, params, K, B, true);
  EXPECT_LT((xr - x).abs().max().item<double>(), 1e-9);
  EXPECT_LT((ld + ldi).abs().max().item<double>(), 1e-9);
  // Identity outside the interval, a real transform inside.
  auto outside = (x.abs() > B);
  EXPECT_EQ((torch::where(outside, (y - x).abs(), torch::zeros_like(x))).max().item<double>(), 0.0);
  EXPECT_GT(torch::where(outside, torch::zeros_like(x), (y - x).abs()).max().item<double>(), 0.1);
  // Monotone, and log dy/dx equals the numerical derivative.
  const double h = 1e-6;
  auto [yp, l1] = sbi::RationalQuadraticSpline(x + h, params, K, B, false);
  auto [ym, l2] = sbi::RationalQuadraticSpline(x - h, params, K, B, false);
  auto num = torch::log((yp - ym) / (2 * h));
  auto inside = (x.abs() < B - 1e-3);
  EXPECT_LT(torch::where(inside, (num - ld).abs(), torch::zeros_like(x)).max().item<double>(), 1e-4);
  EXPECT_GT((yp - ym).min().item<double>(), 0.0);
  // The fused sampling kernel inverts like the tensor version (float, as used for sampling).
  auto yf = y.to(torch::kFloat), pf = params.to(torch::kFloat);
  auto xf = sbi::RationalQuadraticSplineInverseFused(yf, pf, K, B);
  auto xt = sbi::RationalQuadraticSpline(yf, pf, K, B, true, false).first;
  // Compared where it is well conditioned: mapped forward again (in double), both land on y.
  auto y_fused = sbi::RationalQuadraticSpline(xf.to(torch::kDouble), params, K, B, false).first;
  auto y_tensor = sbi::RationalQuadraticSpline(xt.to(torch::kDouble), params, K, B, false).first;
  EXPECT_LT((y_fused - y).abs().max().item<double>(), 1e-5);
  EXPECT_LT((y_tensor - y).abs().max().item<double>(), 1e-4);  // float tensor ops
  EXPECT_LT(torch::where(outside, (xf.to(torch::kDouble) - x).abs(), torch::zeros_like(x)).max().item<double>(), 1e-6);
}

TEST(SbiFlow, DensityIntegratesToOneAndInverseRoundTrips) {
  for (const char* transform : {"spline", "affine"}) {
    SCOPED_TRACE(transform);
    sbi::FlowArch a;
    a.dim = 2;
    a.layers = 4;
    a.hidden = 16;
    a.context_hidden = 8;
    a.bins = 5;
    a.tail_bound = 4.0;
    a.transform = transform;
    sbi::Flow flow(a, 3);
    PerturbFlow(flow, 0.25, 7);
    flow->to(torch::kDouble);
    torch::NoGradGuard g;
    auto ctx = torch::tensor({0.3, -1.2, 0.7}, torch::kDouble).view({1, 3});
    auto e = flow->Embed(ctx);
    // Numerical integral of q(y | s) over [-9, 9]^2.
    const int64_t G = 601;
    const double lo = -9.0, step = 18.0 / (G - 1);
    auto g1 = torch::arange(G, torch::kDouble) * step + lo;
    auto grid = torch::stack(torch::meshgrid({g1, g1}, "ij"), -1).view({G * G, 2});
    auto lp = flow->LogProb(grid, e.expand({G * G, e.size(1)}));
    const double integral = torch::exp(lp).sum().item<double>() * step * step;
    EXPECT_NEAR(integral, 1.0, 5e-3);
    // The density is not the base density (the flow does something).
    auto base = -0.5 * (grid * grid).sum(-1) - std::log(2 * M_PI);
    EXPECT_GT((lp - base).abs().max().item<double>(), 0.1);
    // Sampling inverts the density map: Forward(Inverse(z)) = z, and the sample mean and
    // variance agree with the density's moments (same numerical grid).
    auto z = torch::randn({1, 20000, 2}, torch::kDouble);
    auto ys = flow->Inverse(z, e);
    auto [zr, ld] = flow->Forward(ys, e.unsqueeze(1));
    EXPECT_LT((zr - z).abs().max().item<double>(), 1e-8);
    auto w = torch::exp(lp) * step * step;
    auto mean_grid = (w.unsqueeze(1) * grid).sum(0);
    auto var_grid = (w.unsqueeze(1) * (grid - mean_grid).pow(2)).sum(0);
    auto mean_samp = ys.view({-1, 2}).mean(0), var_samp = ys.view({-1, 2}).var(0);
    EXPECT_LT((mean_grid - mean_samp).abs().max().item<double>(), 0.03);
    EXPECT_LT(((var_samp / var_grid) - 1).abs().max().item<double>(), 0.05);
    // Float precision (as the model runs): the round trip still holds closely.
    flow->to(torch::kFloat);
    auto zf = z.to(torch::kFloat);
    auto ef = flow->Embed(ctx.to(torch::kFloat));
    auto [zrf, ldf] = flow->Forward(flow->Inverse(zf, ef), ef.unsqueeze(1));
    EXPECT_LT((zrf - zf).abs().max().item<double>(), 1e-3);
  }
}

TEST(SbiModel, PhysicalLogProbIncludesTheJacobian) {
  auto md = SmallMetadata(0);
  md.theta = {sbi::DefaultTheta()[4], sbi::DefaultTheta()[9]};  // t50 (log_lookback), mh (linear)
  md.theta[0].mean = 0.6;
  md.theta[0].std = 0.25;
  md.theta[1].mean = -0.15;
  md.theta[1].std = 0.08;
  md.flow.dim = 2;
  auto model = sbi::SbiModel::CreateRandom(md, 2);
  ASSERT_TRUE(model.ok()) << model.status().message();
  PerturbFlow((*model)->impl().net->flow, 0.3, 4);
  std::vector<float> summary(md.encoder.ContextDim(), 0.5f);
  // Integrate p(t50, mh) over mh (uniform grid) and u = log10(lookback) (dt = ln10 10^u du).
  const int G = 401;
  const double ulo = 0.6 - 8 * 0.25, uhi = 0.6 + 8 * 0.25, mlo = -0.15 - 8 * 0.08, mhi = -0.15 + 8 * 0.08;
  const double du = (uhi - ulo) / (G - 1), dm = (mhi - mlo) / (G - 1);
  std::vector<float> theta, summ;
  std::vector<double> jac;
  for (int i = 0; i < G; ++i)
    for (int j = 0; j < G; ++j) {
      const double u = ulo + i * du;
      theta.push_back(static_cast<float>(md.lookback_reference + md.lookback_offset - std::pow(10.0, u)));
      theta.push_back(static_cast<float>(mlo + j * dm));
      summ.insert(summ.end(), summary.begin(), summary.end());
      jac.push_back(std::log(10.0) * std::pow(10.0, u));
    }
  std::vector<double> lp(G * G);
  ASSERT_TRUE((*model)->LogProb(summ.data(), theta.data(), G * G, lp.data(), 1).ok());
  double integral = 0;
  for (int k = 0; k < G * G; ++k) integral += std::exp(lp[k]) * jac[k] * du * dm;
  EXPECT_NEAR(integral, 1.0, 0.01);
}

// ---------------------------------------------------------------------------------------
// Model files and sampling
// ---------------------------------------------------------------------------------------

TEST(SbiModel, SaveLoadRoundTripAndReproducibleSampling) {
  auto dir = TempDir("roundtrip");
  auto lib = MakeLibrary(12, 3);
  auto md = SmallMetadata(3);
  auto model = sbi::SbiModel::CreateRandom(md, 11);
  ASSERT_TRUE(model.ok()) << model.status().message();
  PerturbFlow((*model)->impl().net->flow, 0.2, 5);
  const std::string path = (dir / "m.pt").string();
  ASSERT_TRUE((*model)->Save(path).ok());
  auto loaded = sbi::SbiModel::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  const auto& lmd = (*loaded)->metadata();
  EXPECT_EQ(lmd.input.bands, md.input.bands);
  ASSERT_EQ(lmd.theta.size(), 10u);
  EXPECT_EQ(lmd.theta[4].name, "t50");
  EXPECT_EQ(lmd.theta[4].transform, "log_lookback");
  EXPECT_DOUBLE_EQ(lmd.theta[9].std, 0.1);
  EXPECT_TRUE(sbi::IsSbiMetadata(sbi::MetadataPath(path)));

  std::vector<float> spec, phot, snr;
  std::vector<int64_t> rows(12);
  std::iota(rows.begin(), rows.end(), 0);
  sbi::GatherSbiInputs(lib, rows, 3, 5300, 5500, spec, phot, snr);
  EXPECT_NEAR(snr[0], 50.0, 1e-3);
  EXPECT_NEAR(snr[1], 20.0, 1e-3);
  const int64_t SD = md.encoder.ContextDim(), S = 200, D = 10;
  std::vector<float> s1(12 * SD), s2(12 * SD);
  ASSERT_TRUE((*model)->Summarize(spec.data(), phot.data(), snr.data(), 12, s1.data(), 1).ok());
  ASSERT_TRUE((*loaded)->Summarize(spec.data(), phot.data(), snr.data(), 12, s2.data(), 1).ok());
  EXPECT_EQ(s1, s2);
  // The flow's context ends with the standardised log10(S/N) (rows 0 / 1: S/N 50 / 20).
  EXPECT_NEAR(s1[SD - 1], (std::log10(50.0) - md.snr_log_mean) / md.snr_log_std, 1e-4);
  EXPECT_NEAR(s1[2 * SD - 1], (std::log10(20.0) - md.snr_log_mean) / md.snr_log_std, 1e-4);
  std::vector<int64_t> keys = {5, 9, 100, 7, 3, 1, 2, 8, 11, 12, 13, 14};
  std::vector<float> a(12 * S * D), b(12 * S * D);
  ASSERT_TRUE((*model)->Sample(s1.data(), 12, S, keys.data(), 42, a.data(), 1).ok());
  ASSERT_TRUE((*loaded)->Sample(s1.data(), 12, S, keys.data(), 42, b.data(), 1).ok());
  EXPECT_EQ(a, b);
  // Object 3 alone (same key) gets the same samples as in the batch of 12.
  std::vector<float> c(S * D);
  ASSERT_TRUE((*loaded)->Sample(s1.data() + 3 * SD, 1, S, keys.data() + 3, 42, c.data(), 1).ok());
  for (int64_t j = 0; j < S * D; ++j) ASSERT_NEAR(c[j], a[3 * S * D + j], 1e-4 * (1 + std::abs(c[j])));
  // Another seed or another key gives other samples.
  ASSERT_TRUE((*loaded)->Sample(s1.data() + 3 * SD, 1, S, keys.data() + 4, 42, c.data(), 1).ok());
  double diff = 0;
  for (int64_t j = 0; j < S * D; ++j) diff += std::abs(c[j] - a[3 * S * D + j]);
  EXPECT_GT(diff / (S * D), 0.01);
  // Times never exceed the reference (age of the universe + offset) by construction.
  for (int64_t j = 0; j < 12 * S; ++j)
    for (int k = 0; k < 9; ++k) ASSERT_LT(a[j * D + k], md.lookback_reference + md.lookback_offset);
  // Many samples per object (chunked inside one object) still work and are finite.
  std::vector<float> big(20000 * D);
  ASSERT_TRUE((*loaded)->Sample(s1.data(), 1, 20000, keys.data(), 1, big.data(), 1).ok());
  for (float v : big) ASSERT_TRUE(std::isfinite(v));
  fs::remove_all(dir);
}

TEST(SbiModel, LoadErrorsNameTheProblem) {
  auto dir = TempDir("loaderr");
  auto r = sbi::SbiModel::Load((dir / "missing.pt").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not exist"), std::string::npos);
  auto model = sbi::SbiModel::CreateRandom(SmallMetadata(3), 1);
  const std::string path = (dir / "m.pt").string();
  ASSERT_TRUE((*model)->Save(path).ok());
  std::ifstream in(sbi::MetadataPath(path));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  {  // a CNN metadata file (no kind: sbi) is refused with the reason
    std::string t = text;
    t.replace(t.find("kind: sbi"), 9, "kind: cnn");
    std::ofstream(sbi::MetadataPath(path)) << t;
    r = sbi::SbiModel::Load(path);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("kind: sbi"), std::string::npos) << r.status().message();
  }
  {  // the flow's dimension does not match the parameters
    std::string t = text;
    auto pos = t.find("dim: 10");
    ASSERT_NE(pos, std::string::npos);
    t.replace(pos, 7, "dim: 9");
    std::ofstream(sbi::MetadataPath(path)) << t;
    r = sbi::SbiModel::Load(path);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("flow.dim"), std::string::npos) << r.status().message();
  }
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------
// Calibration
// ---------------------------------------------------------------------------------------

TEST(SbiCalibration, ExactPosteriorIsCalibratedAndOverconfidentIsNot) {
  // theta ~ N(0, 1), x = theta + N(0, 0.5^2): posterior N(x / 1.25, 0.2) known exactly.
  std::mt19937_64 rng(3);
  std::normal_distribution<double> g(0.0, 1.0);
  const int64_t n = 2000, S = 400;
  const double sd = std::sqrt(0.25 / 1.25);
  std::vector<float> truth(n * 2), exact(n * S * 2), narrow(n * S * 2);
  for (int64_t i = 0; i < n; ++i)
    for (int k = 0; k < 2; ++k) {
      const double th = g(rng), x = th + 0.5 * g(rng);
      truth[i * 2 + k] = static_cast<float>(th);
      for (int64_t s = 0; s < S; ++s) {
        const double e = g(rng);
        exact[(i * S + s) * 2 + k] = static_cast<float>(x / 1.25 + sd * e);
        narrow[(i * S + s) * 2 + k] = static_cast<float>(x / 1.25 + 0.5 * sd * e);
      }
    }
  auto good = sbi::CalibrationFromSamples({"a", "b"}, exact.data(), truth.data(), n, S, 2);
  auto bad = sbi::CalibrationFromSamples({"a", "b"}, narrow.data(), truth.data(), n, S, 2);
  ASSERT_EQ(good.levels.size(), 11u);
  // Bounds from the spread over 200 other draws (seeds 1000-1099, 2 parameters each), mean +- 4
  // standard deviations: this seed's values lie within them.
  for (int k = 0; k < 2; ++k) {
    EXPECT_LT(good.max_coverage_dev[k], 0.04) << k;  // 0.0157 +- 0.0056 (this seed 0.007, 0.020)
    // chi^2 with 19 dof (measured 19.3 +- 6.2; this seed 19.6, 19.4): 45 is its 99.93 % quantile.
    EXPECT_LT(good.rank_chi2[k], 45.0) << k;
    // Sample quantiles of 400 draws make the 68 % width 0.0087 narrow (+- 0.0010).
    EXPECT_NEAR(good.width68[k], 2 * sd, 0.013);
    EXPECT_NEAR(good.r2[k], 0.8, 0.032);  // 1 - posterior variance / prior variance; 0.799 +- 0.008
    // The overconfident sampler must fail by as much as it should: 0.326 +- 0.011 and 2246 +- 143
    // (this seed 0.323, 0.337 and 2240, 2475; the bounds were 0.2 and 200).
    EXPECT_GT(bad.max_coverage_dev[k], 0.28) << k;
    EXPECT_GT(bad.rank_chi2[k], 1650.0) << k;
    // Half-width sampler: -0.002 +- 0.010 from this value (4 standard deviations: 0.04).
    EXPECT_NEAR(bad.coverage[k][4], std::erf(0.5 * 0.6745 / std::sqrt(2.0)), 0.04);
  }
}

TEST(SbiCalibration, TrainedFlowRecoversAKnownPosterior) {
  // Train the conditional flow itself on the toy problem above and check its posteriors.
  at::set_num_threads(1);
  torch::manual_seed(3);
  sbi::FlowArch a;
  a.dim = 2;
  a.layers = 4;
  a.hidden = 32;
  a.context_hidden = 32;
  a.bins = 8;
  sbi::Flow flow(a, 2);
  const int64_t N = 16000;
  auto theta = torch::randn({N, 2});
  auto x = theta + 0.5 * torch::randn({N, 2});
  {
    torch::NoGradGuard ng;
    flow->ctx_std.fill_(std::sqrt(1.25));
  }
  torch::optim::Adam opt(flow->parameters(), torch::optim::AdamOptions(3e-3));
  std::mt19937_64 rng(1);
  std::vector<int64_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  double first = 0, last = 0;
  for (int epoch = 0; epoch < 20; ++epoch) {
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(3e-3 * (1.0 - epoch / 20.0));
    std::shuffle(order.begin(), order.end(), rng);
    double total = 0;
    int nb = 0;
    for (int64_t f = 0; f + 256 <= N; f += 256, ++nb) {
      auto idx = torch::from_blob(order.data() + f, {256}, torch::kLong);
      auto loss = -flow->LogProb(theta.index_select(0, idx), flow->Embed(x.index_select(0, idx))).mean();
      opt.zero_grad();
      loss.backward();
      opt.step();
      total += loss.item<double>();
    }
    (epoch == 0 ? first : last) = total / nb;
  }
  // Exact NLL of the true posterior: log(2 pi 0.2) + 1 = 1.228 for 2 dimensions; the mean over
  // 16000 draws scatters by 1 / sqrt(16000) = 0.008 (the NLL's variance is dim / 2). Measured
  // 1.219 (first epoch 1.759); bound 4 standard deviations above the exact value (was 1.37).
  EXPECT_LT(last, first);
  EXPECT_LT(last, 1.228 + 0.032);
  torch::NoGradGuard ng;
  const int64_t M = 1000, S = 400;
  auto th_t = torch::randn({M, 2});
  auto x_t = th_t + 0.5 * torch::randn({M, 2});
  auto samples = flow->Inverse(torch::randn({M, S, 2}), flow->Embed(x_t)).contiguous();
  auto truth = th_t.contiguous();
  auto cal = sbi::CalibrationFromSamples({"a", "b"}, samples.data_ptr<float>(), truth.data_ptr<float>(), M, S, 2);
  auto exact_mean = x_t / 1.25;
  auto mean = samples.mean(1), sdev = samples.std(1);
  for (int k = 0; k < 2; ++k) {
    // Measured 0.011, 0.015; an exact sampler on 1000 objects gives 0.022 +- 0.008 (the exact
    // case above scaled by sqrt(2)): 0.06 is that + 4.7 standard deviations.
    EXPECT_LT(cal.max_coverage_dev[k], 0.06) << k;
    // Measured 0.030, 0.024 (of which 0.018 is the Monte Carlo error of a 400-sample mean); 2x.
    EXPECT_LT((mean.select(1, k) - exact_mean.select(1, k)).abs().mean().item<double>(), 0.06);
    // Measured +0.0010, +0.0025; 2x (was 0.04).
    EXPECT_NEAR(sdev.select(1, k).mean().item<double>(), std::sqrt(0.2), 0.005);
  }
}

// ---------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------

TEST(SbiTrain, ConfigParsing) {
  auto c = sbi::ParseTrainConfig(
      "kind: sbi\nlibrary: lib.fits\noutput: m.pt\nepochs: 3\nflow_epochs: 7\nphotometry: false\n"
      "split: [0.7, 0.2, 0.1]\nencoder_fraction: 0.6\narchitecture: {channels: [4, 8, 8], summary_dim: 12}\n"
      "flow: {transform: affine, layers: 5}\n", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->epochs, 3);
  EXPECT_EQ(c->flow_epochs, 7);
  EXPECT_FALSE(c->photometry);
  EXPECT_DOUBLE_EQ(c->train_fraction, 0.7);
  EXPECT_DOUBLE_EQ(c->encoder_fraction, 0.6);
  EXPECT_EQ(c->encoder.summary_dim, 12);
  EXPECT_EQ(c->flow.transform, "affine");
  EXPECT_EQ(c->flow.layers, 5);
  auto bad = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\nflow: {bin: 3}\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("flow.bin"), std::string::npos) << bad.status().message();
  bad = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\nflow: {transform: maf}\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("spline"), std::string::npos);
  bad = sbi::ParseTrainConfig("output: m.pt\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("kind: sbi"), std::string::npos);
}

TEST(SbiTrain, TrueThetaFromLabels) {
  auto lib = MakeLibrary(5, 2);
  lib.mass_frac.assign(5 * 16, 0.0f);
  lib.mass_frac[0] = 0.25f;
  lib.mass_frac[15] = 0.75f;
  lib.zh[0] = 0.2f;
  lib.zh[15] = -0.2f;
  auto t = sbi::TrueTheta(lib, {0, 3}, sbi::DefaultTheta());
  ASSERT_EQ(t.size(), 20u);
  EXPECT_FLOAT_EQ(t[4], lib.t_mass[4]);            // t50 of row 0
  EXPECT_FLOAT_EQ(t[10 + 8], lib.t_mass[3 * 9 + 8]);  // t90 of row 3
  EXPECT_NEAR(t[9], 0.25 * 0.2 - 0.75 * 0.2, 1e-6);  // mass-weighted [M/H]
  EXPECT_TRUE(std::isnan(t[19]));                   // row 3 has no mass
}

TEST(SbiTrain, LossesFallModelIsWrittenAndResumeIsExact) {
  auto lib = MakeLibrary(600, 1);
  auto dir_a = TempDir("train_a"), dir_b = TempDir("train_b");
  auto cfg_a = TinyConfig(dir_a);
  std::vector<sbi::EpochReport> reports;
  auto ra = sbi::Train(cfg_a, lib, nullptr, [&](const sbi::EpochReport& e) { reports.push_back(e); });
  ASSERT_TRUE(ra.ok()) << ra.status().message();
  ASSERT_EQ(ra->encoder_train.size(), 3u);
  ASSERT_EQ(ra->flow_train.size(), 4u);
  ASSERT_EQ(reports.size(), 7u);
  EXPECT_EQ(reports[0].stage, "encoder");
  EXPECT_EQ(reports[3].stage, "flow");
  EXPECT_LT(ra->encoder_val.back(), ra->encoder_val.front());
  EXPECT_LT(ra->flow_val.back(), ra->flow_val.front());
  EXPECT_LT(ra->flow_train.back(), ra->flow_train.front());
  auto model = sbi::SbiModel::Load(cfg_a.output);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const auto& md = (*model)->metadata();
  EXPECT_EQ(md.input.bands, lib.bands);
  EXPECT_EQ(md.training.at("n_train"), "480");
  EXPECT_EQ(md.training.at("n_test"), "60");
  EXPECT_TRUE(md.metrics.count("r2_t50"));
  EXPECT_TRUE(md.metrics.count("coverage68_mh"));
  EXPECT_NEAR(md.metrics.at("flow_best_val_nll"), ra->flow_best_val, 1e-9);
  EXPECT_NEAR(md.lookback_reference, 13.47, 0.01);  // age of the universe of the library's cosmology
  EXPECT_NEAR(md.snr_min, 20.0, 1e-3);
  EXPECT_NEAR(md.snr_max, 50.0, 1e-3);
  EXPECT_EQ(md.phot_mean.size(), 3u);

  // Interrupted in the encoder stage, then in the flow stage, resumed twice: same result.
  auto cfg_b = TinyConfig(dir_b);
  volatile int stop = 0;
  auto rb1 = sbi::Train(cfg_b, lib, nullptr, [&](const sbi::EpochReport& e) { if (e.epoch == 2) stop = 1; }, &stop);
  ASSERT_TRUE(rb1.ok()) << rb1.status().message();
  EXPECT_TRUE(rb1->interrupted);
  EXPECT_FALSE(fs::exists(cfg_b.output));
  cfg_b.resume = true;
  stop = 0;
  std::vector<std::string> seen;
  auto rb2 = sbi::Train(cfg_b, lib, nullptr, [&](const sbi::EpochReport& e) {
    seen.push_back(e.stage + std::to_string(e.epoch));
    if (e.stage == "flow" && e.epoch == 1) stop = 1;
  }, &stop);
  ASSERT_TRUE(rb2.ok()) << rb2.status().message();
  EXPECT_TRUE(rb2->interrupted);
  EXPECT_EQ(seen, (std::vector<std::string>{"encoder3", "flow1"}));
  stop = 0;
  seen.clear();
  auto rb3 = sbi::Train(cfg_b, lib, nullptr, [&](const sbi::EpochReport& e) { seen.push_back(e.stage + std::to_string(e.epoch)); }, &stop);
  ASSERT_TRUE(rb3.ok()) << rb3.status().message();
  EXPECT_FALSE(rb3->interrupted);
  EXPECT_EQ(seen, (std::vector<std::string>{"flow2", "flow3", "flow4"}));
  ASSERT_EQ(rb3->encoder_train.size(), ra->encoder_train.size());
  ASSERT_EQ(rb3->flow_train.size(), ra->flow_train.size());
  for (size_t e = 0; e < ra->encoder_train.size(); ++e) {
    EXPECT_DOUBLE_EQ(rb3->encoder_train[e], ra->encoder_train[e]) << "encoder epoch " << e + 1;
    EXPECT_DOUBLE_EQ(rb3->encoder_val[e], ra->encoder_val[e]) << "encoder epoch " << e + 1;
  }
  for (size_t e = 0; e < ra->flow_train.size(); ++e) {
    EXPECT_DOUBLE_EQ(rb3->flow_train[e], ra->flow_train[e]) << "flow epoch " << e + 1;
    EXPECT_DOUBLE_EQ(rb3->flow_val[e], ra->flow_val[e]) << "flow epoch " << e + 1;
  }
  auto mb = sbi::SbiModel::Load(cfg_b.output);
  ASSERT_TRUE(mb.ok());
  std::vector<float> spec, phot, snr;
  std::vector<int64_t> rows = {0, 1, 2, 3};
  sbi::GatherSbiInputs(lib, rows, 3, 5300, 5500, spec, phot, snr);
  const int64_t SD = md.encoder.ContextDim();
  std::vector<float> sa(4 * SD), sb(4 * SD), xa(4 * 50 * 10), xb(4 * 50 * 10);
  ASSERT_TRUE((*model)->Summarize(spec.data(), phot.data(), snr.data(), 4, sa.data(), 1).ok());
  ASSERT_TRUE((*mb)->Summarize(spec.data(), phot.data(), snr.data(), 4, sb.data(), 1).ok());
  EXPECT_EQ(sa, sb);
  ASSERT_TRUE((*model)->Sample(sa.data(), 4, 50, rows.data(), 3, xa.data(), 1).ok());
  ASSERT_TRUE((*mb)->Sample(sb.data(), 4, 50, rows.data(), 3, xb.data(), 1).ok());
  EXPECT_EQ(xa, xb);
  // A checkpoint from another seed is refused.
  cfg_b.seed = 6;
  auto bad = sbi::Train(cfg_b, lib, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("checkpoint"), std::string::npos);
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}

TEST(SbiTrain, FlowOnHeldOutRowsOrSecondLibrary) {
  auto lib = MakeLibrary(300, 4, /*with_phot=*/false);
  auto flow_lib = MakeLibrary(200, 8, /*with_phot=*/false);
  auto dir = TempDir("flowrows");
  auto cfg = TinyConfig(dir);
  cfg.epochs = 1;
  cfg.flow_epochs = 1;
  cfg.encoder_fraction = 0.5;
  cfg.noise_input = false;
  auto r = sbi::Train(cfg, lib, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().message();
  auto m = sbi::SbiModel::Load(cfg.output);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->metadata().training.at("n_encoder"), "120");
  EXPECT_EQ((*m)->metadata().training.at("n_flow"), "120");
  EXPECT_EQ((*m)->metadata().encoder.nbands, 0);
  EXPECT_FALSE((*m)->metadata().encoder.noise_input);
  cfg.encoder_fraction = 1.0;
  cfg.flow_library = "second.fits";
  fs::remove(cfg.output + ".ckpt");
  r = sbi::Train(cfg, lib, &flow_lib);
  ASSERT_TRUE(r.ok()) << r.status().message();
  m = sbi::SbiModel::Load(cfg.output);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->metadata().training.at("n_flow"), "200");
  EXPECT_EQ((*m)->metadata().training.at("flow_library"), "second.fits");
  fs::remove_all(dir);
}

TEST(SbiTrain, NoiseAugmentationOnANoiseFreeLibrary) {
  auto clean = MakeLibrary(300, 6, true, /*noisy=*/false);
  sbi::NoiseAugment noise;
  noise.snr = {20, 50};
  noise.phot_snr = 50;
  // Noise is reproducible per (seed, row, stream), differs between streams, and has the model's
  // amplitude; the S/N is that of the added noise.
  std::vector<float> s1, p1, n1, s2, p2, n2, s3, p3, n3, s0, p0, n0;
  std::vector<int64_t> rows = {0, 1, 2, 3, 4, 5, 6, 7};
  sbi::GatherSbiInputs(clean, rows, 3, 5300, 5500, s0, p0, n0);
  sbi::GatherSbiInputs(clean, rows, 3, 5300, 5500, s1, p1, n1, &noise, 9, 4);
  sbi::GatherSbiInputs(clean, rows, 3, 5300, 5500, s2, p2, n2, &noise, 9, 4);
  sbi::GatherSbiInputs(clean, rows, 3, 5300, 5500, s3, p3, n3, &noise, 9, 5);
  EXPECT_EQ(s1, s2);
  EXPECT_EQ(p1, p2);
  EXPECT_NE(s1, s3);
  for (float v : n0) EXPECT_TRUE(std::isnan(v));  // a noise-free library has no S/N
  for (size_t r = 0; r < rows.size(); ++r) {
    const double snr = n1[r];
    EXPECT_TRUE(std::abs(snr - 20) < 2 || std::abs(snr - 50) < 5) << snr;
    double ss = 0;
    for (int64_t k = 0; k < kNWave; ++k) {
      const double sigma = std::sqrt(std::max<double>(s0[r * kNWave + k], 1e-4)) / (snr < 35 ? 20.0 : 50.0);
      ss += std::pow((s1[r * kNWave + k] - s0[r * kNWave + k]) / sigma, 2);
    }
    EXPECT_NEAR(std::sqrt(ss / kNWave), 1.0, 0.12);
    EXPECT_NE(p1[r * 3], p0[r * 3]);
  }
  auto dir = TempDir("augment");
  auto cfg = TinyConfig(dir);
  cfg.augment_noise = noise;
  cfg.flow_noise_draws = 2;
  std::vector<sbi::EpochReport> reps;
  auto r = sbi::Train(cfg, clean, nullptr, [&](const sbi::EpochReport& e) { reps.push_back(e); });
  ASSERT_TRUE(r.ok()) << r.status().message();
  auto m = sbi::SbiModel::Load(cfg.output);
  ASSERT_TRUE(m.ok());
  const auto& md = (*m)->metadata();
  EXPECT_NEAR(md.snr_min, 20.0, 2.0);
  EXPECT_NEAR(md.snr_max, 50.0, 5.0);
  EXPECT_NE(md.training.at("snr_mix").find("augmented"), std::string::npos);
  EXPECT_EQ(md.training.at("n_flow"), "480");  // 240 training rows x 2 noise draws
  EXPECT_TRUE(std::isfinite(md.metrics.at("r2_t50")));
  // Evaluating on the noise-free library needs noise for a noise-conditioned model.
  auto bad = sbi::EvaluateCalibration(**m, clean, {0, 1, 2}, 50, 1, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--add-noise"), std::string::npos);
  auto good = sbi::EvaluateCalibration(**m, clean, {0, 1, 2}, 50, 1, 1, false, &noise);
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_EQ(good->n, 3);
  // A library that already has noise is refused.
  auto noisy = MakeLibrary(100, 6);
  fs::remove(cfg.output + ".ckpt");
  auto refused = sbi::Train(cfg, noisy, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("already has noise"), std::string::npos);
  fs::remove_all(dir);
}

TEST(SbiTrain, FlowOnlyFromATrainedEncoder) {
  auto lib = MakeLibrary(300, 12);
  auto dir = TempDir("encfrom");
  auto cfg = TinyConfig(dir);
  cfg.epochs = 2;
  cfg.flow_epochs = 1;
  ASSERT_TRUE(sbi::Train(cfg, lib, nullptr).ok());
  const std::string first = cfg.output;
  auto cfg2 = TinyConfig(dir);
  cfg2.output = (dir / "flow_only.pt").string();
  cfg2.encoder_from = first;
  cfg2.flow_epochs = 2;
  std::vector<std::string> stages;
  auto r = sbi::Train(cfg2, lib, nullptr, [&](const sbi::EpochReport& e) { stages.push_back(e.stage); });
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(stages, (std::vector<std::string>{"flow", "flow"}));
  auto a = sbi::SbiModel::Load(first), b = sbi::SbiModel::Load(cfg2.output);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*b)->metadata().training.at("encoder_from"), first);
  EXPECT_DOUBLE_EQ((*b)->metadata().metrics.at("encoder_best_epoch"), (*a)->metadata().metrics.at("encoder_best_epoch"));
  std::vector<float> spec, phot, snr;
  std::vector<int64_t> rows = {0, 1, 2};
  sbi::GatherSbiInputs(lib, rows, 3, 5300, 5500, spec, phot, snr);
  const int64_t SD = (*a)->metadata().encoder.ContextDim();
  std::vector<float> sa(3 * SD), sb(3 * SD);
  ASSERT_TRUE((*a)->Summarize(spec.data(), phot.data(), snr.data(), 3, sa.data(), 1).ok());
  ASSERT_TRUE((*b)->Summarize(spec.data(), phot.data(), snr.data(), 3, sb.data(), 1).ok());
  EXPECT_EQ(sa, sb);  // the same encoder
  // An encoder trained on another split (seed) does not match this configuration.
  cfg2.seed = 99;
  fs::remove(cfg2.output + ".ckpt");
  auto bad = sbi::Train(cfg2, lib, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("encoder_from"), std::string::npos) << bad.status().message();
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------

TEST(SbiNode, SpecDeclaresPortsAndParams) {
  NodeSpec s = inference::SbiNode::Spec();
  EXPECT_EQ(s.name(), "inference.sbi");
  EXPECT_EQ(s.batch_param(), "batch_size");
  ASSERT_NE(s.FindInput("spectra"), nullptr);
  ASSERT_NE(s.FindInput("photometry"), nullptr);
  EXPECT_FALSE(s.FindInput("photometry")->required);
  for (const char* p : {"model", "n_samples", "seed", "threads", "emit_samples", "snr", "snr_source"})
    EXPECT_NE(s.FindParam(p), nullptr) << p;
}

TEST(SbiNode, EmitsOrderedPercentilesReproducibly) {
  auto lib = MakeLibrary(8, 9);
  auto md = SmallMetadata(3);
  md.input.bands = lib.bands;
  md.input.pivots = lib.pivots;
  auto make_node = [&](uint64_t seed, bool samples) {
    auto model = sbi::SbiModel::CreateRandom(md, 3).ValueOrThrow();
    PerturbFlow(model->impl().net->flow, 0.2, 8);
    inference::SbiNode::Options o;
    o.n_samples = 300;
    o.seed = seed;
    o.emit_samples = samples;
    return std::make_unique<inference::SbiNode>(std::move(model), "test.pt", o);
  };
  auto run = [&](inference::SbiNode& node, const std::vector<int64_t>& rows) {
    FakeContext ctx;
    for (int64_t i : rows) {
      auto s = SpectrumFrom(lib, i);
      if (i == 2) { s->mask.assign(kNWave, 0); for (int k = 10; k < 30; ++k) s->mask[k] = 1; s->flux[12] = NAN; }
      if (i == 4) for (int k = 0; k < 300; ++k) s->flux[k] = NAN;  // mostly bad
      if (i == 5) for (auto& v : s->variance) v = 1.0 / (400.0 * 400.0);  // S/N 400, far above training
      ctx.AddItem(1000 + i, {{"spectra", s}, {"photometry", PhotometryFrom(lib, i)}});
    }
    node.Process(ctx);
    std::map<int64_t, std::shared_ptr<const Record>> out;
    for (auto& [key, r] : nntest::Results(ctx)) out[r->id] = r;
    return out;
  };
  auto node = make_node(7, true);
  auto all = run(*node, {0, 1, 2, 3, 4, 5, 6, 7});
  ASSERT_EQ(all.size(), 8u);
  for (const auto& [id, r] : all) {
    SCOPED_TRACE(id);
    for (const char* p : {"t10", "t20", "t30", "t40", "t50", "t60", "t70", "t80", "t90", "mh"}) {
      const std::string k = p;
      ASSERT_TRUE(r->fields.count(k) && r->fields.count(k + "_p16") && r->fields.count(k + "_p84") &&
                  r->fields.count(k + "_err"));
      EXPECT_EQ(r->fields.at(k).unit, k == "mh" ? "dex" : "Gyr");
      if (id == 1004) {
        EXPECT_TRUE(std::isnan(Field(*r, k)));
        continue;
      }
      const double med = Field(*r, k), lo = Field(*r, k + "_p16"), hi = Field(*r, k + "_p84");
      EXPECT_LE(lo, med);
      EXPECT_LE(med, hi);
      EXPECT_LT(lo, hi);
      EXPECT_NEAR(Field(*r, k + "_err"), 0.5 * (hi - lo), 1e-9);
      const auto& smp = r->fields.at(k + "_samples").values;
      ASSERT_EQ(smp.size(), 300u);
      // The median is the median of the emitted samples.
      std::vector<double> sorted = smp;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_NEAR(med, 0.5 * (sorted[149] + sorted[150]), 1e-6);
    }
  }
  EXPECT_TRUE(all[1004]->quality & kQualInferenceFailed);
  EXPECT_FALSE(all[1003]->quality & kQualInferenceFailed);
  EXPECT_TRUE(all[1005]->quality & kQualOutsideTraining);
  EXPECT_FALSE(all[1000]->quality & kQualOutsideTraining);
  // Other batching (two calls, other order), same seed: the same posterior per bin.
  auto node2 = make_node(7, false);
  auto part1 = run(*node2, {6, 1, 3});
  auto part2 = run(*node2, {0, 7, 2, 5});
  part1.insert(part2.begin(), part2.end());
  for (const auto& [id, r] : part1) {
    EXPECT_FALSE(r->fields.count("t50_samples"));
    for (const char* p : {"t10", "t50_p16", "t90_p84", "mh", "mh_p84"})
      EXPECT_NEAR(Field(*r, p), Field(*all.at(id), p), 1e-4) << id << " " << p;
  }
  // Another seed: other draws (the medians move by Monte Carlo noise only).
  auto node3 = make_node(8, false);
  auto other = run(*node3, {0, 1});
  EXPECT_NE(Field(*other[1000], "t50"), Field(*all[1000], "t50"));
  EXPECT_NEAR(Field(*other[1000], "t50"), Field(*all[1000], "t50"),
              0.5 * (Field(*all[1000], "t50_p84") - Field(*all[1000], "t50_p16")));
}

TEST(SbiNode, InputErrorsNameTheFieldAndTheFix) {
  auto lib = MakeLibrary(2, 10);
  auto md = SmallMetadata(3);
  md.input.bands = lib.bands;
  md.input.pivots = lib.pivots;
  inference::SbiNode::Options o;
  o.n_samples = 50;
  inference::SbiNode node(sbi::SbiModel::CreateRandom(md, 3).ValueOrThrow(), "model.pt", o);
  auto good = SpectrumFrom(lib, 0);
  EXPECT_EQ(node.CheckSpectrum(*good), "");
  auto s = std::make_shared<Spectrum>(*good);
  s->wave.cdelt = 1.25;
  std::string msg = node.CheckSpectrum(*s);
  EXPECT_EQ(msg.rfind("spectrum of bin 0: ", 0), 0u) << msg;  // no node-type prefix: the runner adds it
  EXPECT_NE(msg.find("step = 1.25 A, model's is 5.5 A"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.pt.yaml"), std::string::npos) << msg;
  s = std::make_shared<Spectrum>(*good);
  s->rest_frame = false;
  EXPECT_NE(node.CheckSpectrum(*s).find("put spectral.restframe before inference.sbi"), std::string::npos);
  s = std::make_shared<Spectrum>(*good);
  for (auto& f : s->flux) f *= 3.0;
  EXPECT_NE(node.CheckSpectrum(*s).find("normalisation window 5300-5500 A"), std::string::npos);
  std::vector<int> order;
  auto p = PhotometryFrom(lib, 0);
  p->bands[1] = "F606W";
  EXPECT_NE(node.CheckPhotometry(*p, order).find("lacks band(s) F555W"), std::string::npos);

  // No variance: an error naming the fix, unless the parameter snr is set.
  FakeContext ctx;
  auto novar = std::make_shared<Spectrum>(*good);
  novar->variance.clear();
  ctx.AddItem(0, {{"spectra", novar}, {"photometry", PhotometryFrom(lib, 0)}});
  try {
    node.Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'snr'"), std::string::npos) << e.what();
  }
  o.snr = 30;
  inference::SbiNode node_snr(sbi::SbiModel::CreateRandom(md, 3).ValueOrThrow(), "model.pt", o);
  EXPECT_NO_THROW(node_snr.Process(ctx));
  EXPECT_EQ(nntest::Results(ctx).size(), 1u);
  // The binning's meta snr (per pixel, before broadening) is preferred to the variance: a
  // variance that says S/N 400 (outside the training range) does not flag the bin when meta says 30.
  o.snr = 0;
  auto run_one = [&](const std::string& source, double meta_snr) {
    o.snr_source = source;
    inference::SbiNode n2(sbi::SbiModel::CreateRandom(md, 3).ValueOrThrow(), "model.pt", o);
    FakeContext c;
    auto sp = std::make_shared<Spectrum>(*good);
    for (auto& v : sp->variance) v = 1.0 / (400.0 * 400.0);
    if (meta_snr > 0) sp->meta["snr"] = meta_snr;
    c.AddItem(0, {{"spectra", sp}, {"photometry", PhotometryFrom(lib, 0)}});
    n2.Process(c);
    return nntest::Results(c).at(0).second;
  };
  EXPECT_FALSE(run_one("auto", 30)->quality & kQualOutsideTraining);
  EXPECT_TRUE(run_one("variance", 30)->quality & kQualOutsideTraining);
  EXPECT_TRUE(run_one("auto", 0)->quality & kQualOutsideTraining);
  EXPECT_THROW(run_one("meta", 0), Error);
  // Photometry not connected although the model needs it.
  FakeContext ctx2;
  ctx2.AddItem(0, {{"spectra", good}});
  try {
    node.Process(ctx2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("connect the 'photometry' input"), std::string::npos) << e.what();
  }
}

TEST(SbiNode, ChecksTheModelAndTheSampleBudgetBeforeTheRun) {
  const fs::path dir = TempDir("checks");
  const std::string model = (dir / "tiny_sbi.pt").string();
  ASSERT_TRUE(sbi::SbiModel::CreateRandom(SmallMetadata(0), 3).ValueOrThrow()->Save(model).ok());
  const NodeSpec spec = inference::SbiNode::Spec();
  ASSERT_EQ(spec.FindParam("model")->type(), ParamType::kModel);
  EXPECT_EQ(std::get<std::string>(spec.FindParam("model")->default_value()), "sbi_builtin");
  EXPECT_EQ(std::get<double>(spec.FindParam("norm_tolerance")->default_value()), inference::kDefaultNormTolerance);
  EXPECT_EQ(inference::SbiOptions{}.norm_tolerance, inference::kDefaultNormTolerance);
  EXPECT_TRUE(nntest::ErrorsOn(spec, {{"model", model}}, "model").empty());
  // The node is built from its bound options and loads the model the path names.
  auto node = cubeflow::testing::MakeNode<inference::SbiNode>({{"model", model}, {"n_samples", int64_t{50}}});
  EXPECT_NE(dynamic_cast<inference::SbiNode*>(node.get()), nullptr);
  // A shipped name in $CUBEFLOW_MODEL_DIR, and a mistyped one.
  {
    nntest::ScopedEnv env("CUBEFLOW_MODEL_DIR", dir.string());
    EXPECT_TRUE(nntest::ErrorsOn(spec, {{"model", std::string("tiny_sbi")}}, "model").empty());
    auto e = nntest::ErrorsOn(spec, {{"model", std::string("tiny_sbj")}}, "model");
    ASSERT_EQ(e.size(), 1u);
    EXPECT_NE(e[0].find("no shipped model named 'tiny_sbj' (did you mean 'tiny_sbi'?)"), std::string::npos) << e[0];
  }
  // The posterior samples of one batch must fit in memory: reported on batch_size.
  auto e = nntest::ErrorsOn(spec, {{"model", model}, {"batch_size", int64_t{65536}}, {"n_samples", int64_t{100000}}},
                            "batch_size");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("GiB of posterior samples per call"), std::string::npos) << e[0];
  EXPECT_NE(e[0].find("lower batch_size"), std::string::npos) << e[0];
  // A CNN model is named as such.
  std::ofstream(dir / "cnn_like.pt") << "x";
  std::ofstream(dir / "cnn_like.pt.yaml") << "format: torchscript\nwavelength: {start: 4800, step: 5.5, n: 400}\n"
                                             "architecture: {nwave: 400, nbands: 0}\n";
  e = nntest::ErrorsOn(spec, {{"model", (dir / "cnn_like.pt").string()}}, "model");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("is a CNN model"), std::string::npos) << e[0];
  EXPECT_NE(e[0].find("inference.cnn"), std::string::npos) << e[0];
  // An assumed S/N outside the training range (20-50) is a warning on snr.
  const CheckReport r =
      spec.RunChecks(cubeflow::testing::DefaultParams(spec, {{"model", model}, {"snr", 500.0}}));
  EXPECT_FALSE(r.has_errors()) << r.ErrorText();
  ASSERT_EQ(r.issues().size(), 1u);
  EXPECT_EQ(r.issues()[0].param, "snr");
  EXPECT_NE(r.issues()[0].message.find("outside the training range 20-50"), std::string::npos) << r.issues()[0].message;
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

TEST(SbiCommands, TrainAndEvaluateDispatchAndJson) {
  auto dir = TempDir("cmd");
  auto lib = MakeLibrary(300, 21);
  const std::string lib_path = (dir / "lib.fits").string();
  Status st = sim::WriteLibrary(lib_path, lib);
  ASSERT_TRUE(st.ok()) << st.message();
  std::ofstream(dir / "sbi.yaml") << "kind: sbi\nlibrary: lib.fits\noutput: out/sbi.pt\nepochs: 2\nbatch_size: 32\n"
                                     "batches_per_epoch: 3\nflow_epochs: 2\nflow_batches_per_epoch: 3\nseed: 3\n"
                                     "threads: 1\neval_samples: 20\n"
                                     "architecture: {channels: [4, 8, 8], spec_hidden: 32, summary_dim: 8}\n"
                                     "flow: {layers: 2, hidden: 16, context_hidden: 16, bins: 4}\n";
  ASSERT_EQ(RunMain(nn::TrainCommand, {"train", (dir / "sbi.yaml").string()}), 0);
  const std::string model = (dir / "out" / "sbi.pt").string();
  auto m = sbi::SbiModel::Load(model);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_NE((*m)->metadata().config_yaml.find("kind: sbi"), std::string::npos);
  const std::string json = (dir / "eval.json").string(), csv = (dir / "eval.csv").string(),
                    objects = (dir / "objects.csv").string();
  ASSERT_EQ(RunMain(nn::EvaluateCommand, {"evaluate", model, lib_path, "--rows", "60", "--samples", "100", "--json", json,
                                   "--csv", csv, "--objects", objects}),
            0);
  YAML::Node j = YAML::LoadFile(json);  // JSON is YAML
  EXPECT_EQ(j["n"].as<int>(), 60);
  EXPECT_EQ(j["n_samples"].as<int>(), 100);
  ASSERT_TRUE(j["coverage"]["t50"].IsSequence());
  ASSERT_EQ(j["coverage"]["t50"].size(), 11u);
  EXPECT_DOUBLE_EQ(j["coverage"]["t50"][0][0].as<double>(), 0.1);
  for (const auto& pair : j["coverage"]["mh"]) {
    const double v = pair[1].as<double>();
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
  for (const char* p : {"t10", "t50", "t90", "mh"}) EXPECT_TRUE(j["r2"][p].IsScalar()) << p;
  EXPECT_LE(j["r2"]["t50"].as<double>(), 1.0);
  int total = 0;
  for (const auto& c : j["sbc"]["counts"]["t50"]) total += c.as<int>();
  EXPECT_EQ(total, 60);
  std::ifstream in(csv);
  std::string line;
  int lines = 0, cov = 0;
  while (std::getline(in, line)) {
    ++lines;
    if (line.rfind("coverage,", 0) == 0) ++cov;
  }
  EXPECT_EQ(cov, 10 * 11);
  EXPECT_EQ(lines, 1 + 10 * 11 + 10 * 20);
  std::ifstream ino(objects);
  lines = 0;
  while (std::getline(ino, line)) ++lines;
  EXPECT_EQ(lines, 61);
  // --resume after a finished run restarts from the last checkpoint and rewrites the model.
  EXPECT_EQ(RunMain(nn::TrainCommand, {"train", (dir / "sbi.yaml").string(), "--resume"}), 0);
  // A bad key names itself (and the SBI parser handled it: the message lists SBI keys).
  std::ofstream(dir / "bad.yaml") << "kind: sbi\nlibrary: lib.fits\noutput: x.pt\nflow_lr_rate: 1\n";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunMain(nn::TrainCommand, {"train", (dir / "bad.yaml").string()}), 1);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("unknown key 'flow_lr_rate'"), std::string::npos) << err;
  EXPECT_NE(err.find("flow_stop_patience"), std::string::npos) << err;
  // Without `kind: sbi` the configuration goes to the CNN's parser (its key list names its keys).
  std::ofstream(dir / "cnn.yaml") << "library: lib.fits\noutput: x.pt\nflow_epochs: 1\n";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunMain(nn::TrainCommand, {"train", (dir / "cnn.yaml").string()}), 1);
  const std::string cnn_err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(cnn_err.find("unknown key 'flow_epochs'"), std::string::npos) << cnn_err;
  EXPECT_NE(cnn_err.find("loss_weight_sfh"), std::string::npos) << cnn_err;
  fs::remove_all(dir);
}
