// Tests of the CNN library (cubeflow_torch) and the inference.cnn node.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <map>
#include <sstream>
#include <numeric>
#include <random>

#include "cnn_node.hpp"
#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/train.hpp"
#include "nn_test_util.hpp"
#include "test_data.hpp"

namespace fs = std::filesystem;
using namespace cubeflow;
using cubeflow::cnn::kNumBins;
using cubeflow::testing::FakeContext;
using nntest::kNWave;
using nntest::PhotometryFrom;
using nntest::SpectrumFrom;

namespace {

fs::path TempDir(const std::string& name) { return nntest::TempDir("cnn", name); }

/// Synthetic library where the spectra are learnable functions of the labels: each age bin has
/// a smooth basis spectrum (slope + two absorption lines whose depth grows with [Z/H]),
/// mixed by light weights; photometry integrates the same mixture in 3 bands.
sim::LibraryData MakeLibrary(int64_t n, uint64_t seed, bool with_phot = true) {
  sim::LibraryData lib = nntest::EmptyLibrary(n, with_phot);
  lib.age_bin_centres = cnn::DefaultAgeBinCentres();
  const int64_t nb = static_cast<int64_t>(lib.bands.size());
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  lib.mass_frac.resize(n * kNumBins);
  lib.light_frac.resize(n * kNumBins);
  lib.zh.resize(n * kNumBins);
  std::vector<double> flux(kNWave);
  for (int64_t i = 0; i < n; ++i) {
    double m[kNumBins], z[kNumBins], l[kNumBins], sum = 0;
    for (int j = 0; j < kNumBins; ++j) sum += (m[j] = std::exp(1.5 * gauss(rng)));
    for (int j = 0; j < kNumBins; ++j) m[j] /= sum;
    const double zfinal = -0.3 + 0.6 * uni(rng);
    double cum = 0, lsum = 0;
    for (int j = kNumBins - 1; j >= 0; --j) {  // oldest first
      cum += m[j];
      z[j] = -0.7 + (zfinal + 0.7) * cum;
    }
    for (int j = 0; j < kNumBins; ++j) lsum += (l[j] = m[j] * std::pow(10.0, -0.15 * j) * (1.0 - 0.3 * z[j]));
    std::fill(flux.begin(), flux.end(), 0.0);
    for (int j = 0; j < kNumBins; ++j) {
      const double w = l[j] / lsum, slope = -0.8 + 0.1 * j, depth = 0.02 * j * (1.0 + z[j]);
      for (int64_t k = 0; k < kNWave; ++k) {
        const double lam = lib.wave.At(k), x = (lam - 5900.0) / 1100.0;
        const double line = depth * (std::exp(-0.5 * std::pow((lam - 5175.0) / 15.0, 2)) +
                                     std::exp(-0.5 * std::pow((lam - 6563.0) / 20.0, 2)) * (0.5 - 0.05 * j));
        flux[k] += w * (1.0 + slope * x - line);
      }
    }
    const double norm = nntest::WindowMean(lib.wave, flux);
    const double snr = (i % 2) ? 35.0 : 50.0;
    lib.snr[i] = static_cast<float>(snr);
    for (int64_t k = 0; k < kNWave; ++k)
      lib.spectra[i * kNWave + k] = static_cast<float>(flux[k] / norm * (1.0 + gauss(rng) / snr));
    for (int64_t b = 0; b < nb; ++b) {
      double f = 0;
      for (int j = 0; j < kNumBins; ++j) f += l[j] / lsum * std::pow(10.0, (1 - b) * (0.05 * j - 0.3));
      lib.photometry[i * nb + b] = static_cast<float>(f / norm);
    }
    for (int j = 0; j < kNumBins; ++j) {
      lib.mass_frac[i * kNumBins + j] = static_cast<float>(m[j]);
      lib.light_frac[i * kNumBins + j] = static_cast<float>(l[j] / lsum);
      lib.zh[i * kNumBins + j] = static_cast<float>(z[j]);
    }
  }
  return lib;
}

cnn::TrainConfig TinyConfig(const fs::path& dir) {
  cnn::TrainConfig c;
  c.output = (dir / "model.pt").string();
  c.epochs = 4;
  c.batch_size = 32;
  c.batches_per_epoch = 8;
  c.lr = 1e-3;
  c.seed = 7;
  c.threads = 1;
  c.arch.channels = {8, 16, 16};
  c.arch.spec_hidden = 64;
  return c;
}

cnn::CnnMetadata SmallMetadata(int64_t nbands) {
  cnn::CnnMetadata md;
  md.arch.nwave = kNWave;
  md.arch.nbands = nbands;
  md.arch.channels = {8, 16, 16};
  md.wave = nntest::TestGrid();
  md.age_bin_centres = cnn::DefaultAgeBinCentres();
  const char* names[] = {"F438W", "F555W", "F814W", "F275W", "F336W"};
  const double piv[] = {4326.0, 5308.0, 8040.0, 2710.0, 3355.0};
  for (int64_t b = 0; b < nbands; ++b) {
    md.bands.push_back(names[b]);
    md.pivots.push_back(piv[b]);
    md.phot_mean.push_back(0.0);
    md.phot_std.push_back(1.0);
  }
  return md;
}

}  // namespace

TEST(CnnArch, PooledLengthAndValidation) {
  cnn::CnnArch a;
  EXPECT_EQ(a.PooledLength(), 1761 / 4 / 4 / 2);
  EXPECT_TRUE(a.Validate().ok());
  a.kernels = {7, 4, 3};
  EXPECT_FALSE(a.Validate().ok());
  a.kernels = {7, 5, 3};
  a.nwave = 20;
  EXPECT_NE(a.Validate().message().find("reduce"), std::string::npos);
}

TEST(CnnModel, SaveLoadRoundTripAndSimplexOutputs) {
  auto dir = TempDir("roundtrip");
  auto lib = MakeLibrary(40, 3);
  auto md = SmallMetadata(3);
  md.lm_zh_grid = {-1.0, 0.5};
  md.lm_v.assign(2 * kNumBins, 1.0);
  auto model = cnn::CnnModel::CreateRandom(md, 11);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const std::string path = (dir / "net.pt").string();
  ASSERT_TRUE((*model)->Save(path).ok());
  auto loaded = cnn::CnnModel::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ((*loaded)->metadata().bands, md.bands);
  EXPECT_EQ((*loaded)->metadata().lm_v.size(), md.lm_v.size());
  EXPECT_DOUBLE_EQ((*loaded)->metadata().wave.cdelt, 5.5);

  std::vector<float> mf1(40 * kNumBins), zh1(40 * kNumBins), mf2(40 * kNumBins), zh2(40 * kNumBins);
  ASSERT_TRUE((*model)->Predict(lib.spectra.data(), lib.photometry.data(), 40, mf1.data(), zh1.data(), 1).ok());
  ASSERT_TRUE((*loaded)->Predict(lib.spectra.data(), lib.photometry.data(), 40, mf2.data(), zh2.data(), 1).ok());
  EXPECT_EQ(mf1, mf2);  // bit-identical
  EXPECT_EQ(zh1, zh2);
  // Chunking (batch 16 instead of 256) changes results only by rounding.
  std::vector<float> mf3(40 * kNumBins), zh3(40 * kNumBins);
  ASSERT_TRUE((*loaded)->Predict(lib.spectra.data(), lib.photometry.data(), 40, mf3.data(), zh3.data(), 1, 16).ok());
  for (size_t k = 0; k < mf1.size(); ++k) {
    EXPECT_NEAR(mf1[k], mf3[k], 1e-5);
    EXPECT_NEAR(zh1[k], zh3[k], 1e-5);
  }
  for (int i = 0; i < 40; ++i) {
    double s = 0;
    for (int j = 0; j < kNumBins; ++j) {
      EXPECT_GE(mf1[i * kNumBins + j], 0.0f);
      s += mf1[i * kNumBins + j];
    }
    EXPECT_NEAR(s, 1.0, 1e-5);
  }
  // A different seed gives a different network.
  auto other = cnn::CnnModel::CreateRandom(md, 12);
  ASSERT_TRUE((*other)->Predict(lib.spectra.data(), lib.photometry.data(), 40, mf2.data(), zh2.data(), 1).ok());
  double diff = 0;
  for (size_t k = 0; k < zh1.size(); ++k) diff += std::abs(zh1[k] - zh2[k]);
  EXPECT_GT(diff, 1e-3);
  fs::remove_all(dir);
}

TEST(CnnModel, SpectrumOnlyModel) {
  auto lib = MakeLibrary(8, 4, /*with_phot=*/false);
  auto model = cnn::CnnModel::CreateRandom(SmallMetadata(0), 1);
  ASSERT_TRUE(model.ok());
  std::vector<float> mf(8 * kNumBins), zh(8 * kNumBins);
  ASSERT_TRUE((*model)->Predict(lib.spectra.data(), nullptr, 8, mf.data(), zh.data(), 1).ok());
  EXPECT_NEAR(std::accumulate(mf.begin(), mf.begin() + kNumBins, 0.0), 1.0, 1e-5);
  // A model with bands refuses to run without photometry.
  auto with = cnn::CnnModel::CreateRandom(SmallMetadata(3), 1);
  EXPECT_FALSE((*with)->Predict(lib.spectra.data(), nullptr, 8, mf.data(), zh.data(), 1).ok());
}

TEST(CnnModel, LoadErrorsNameTheProblem) {
  auto dir = TempDir("loaderr");
  auto r = cnn::CnnModel::Load((dir / "missing.pt").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not exist"), std::string::npos);
  auto model = cnn::CnnModel::CreateRandom(SmallMetadata(3), 1);
  const std::string path = (dir / "m.pt").string();
  ASSERT_TRUE((*model)->Save(path).ok());
  {  // corrupt a metadata key
    std::ifstream in(cnn::MetadataPath(path));
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    auto pos = text.find("nbands: 3");
    ASSERT_NE(pos, std::string::npos);
    text.replace(pos, 9, "nbands: 2");
    std::ofstream(cnn::MetadataPath(path)) << text;
  }
  r = cnn::CnnModel::Load(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nbands"), std::string::npos) << r.status().message();
  fs::remove_all(dir);
}

TEST(CnnWeightedMeans, Equations6And7) {
  auto md = SmallMetadata(0);
  std::vector<float> m(kNumBins, 0.0f), z(kNumBins, 0.1f);
  m[3] = 1.0f;
  auto w = cnn::ComputeWeightedMeans(md, m.data(), z.data());
  EXPECT_NEAR(w.mw_logage, std::log10(0.076e9), 1e-9);
  EXPECT_TRUE(std::isnan(w.lw_logage));  // no light-to-mass table
  // Two bins with equal mass, the young one 9x brighter per unit mass.
  std::fill(m.begin(), m.end(), 0.0f);
  m[0] = m[15] = 0.5f;
  z[0] = 0.2f;
  z[15] = -0.4f;
  md.lm_zh_grid = {0.0};
  md.lm_v.assign(kNumBins, 1.0);
  md.lm_v[0] = 9.0;
  w = cnn::ComputeWeightedMeans(md, m.data(), z.data());
  EXPECT_NEAR(w.mw_logage, 0.5 * (std::log10(0.007e9) + std::log10(14.2e9)), 1e-9);
  EXPECT_NEAR(w.lw_logage, 0.9 * std::log10(0.007e9) + 0.1 * std::log10(14.2e9), 1e-9);
  EXPECT_NEAR(w.mw_zh, -0.1, 1e-6);
  EXPECT_NEAR(w.lw_zh, 0.9 * 0.2 - 0.1 * 0.4, 1e-6);
}

TEST(CnnTrain, FitLightToMassRecoversRatios) {
  auto lib = MakeLibrary(300, 5);
  cnn::CnnMetadata md;
  ASSERT_TRUE(cnn::FitLightToMass(lib, md).ok());
  ASSERT_EQ(md.lm_v.size(), md.lm_zh_grid.size() * kNumBins);
  // Truth: LM_j(z) = 10^(-0.15 j) (1 - 0.3 z), up to a common factor. Compare at each bin's
  // median [Z/H] in the library (where the fit is constrained).
  auto median_zh = [&](int j) {
    std::vector<float> v;
    for (int64_t i = 0; i < lib.n; ++i) v.push_back(lib.zh[i * kNumBins + j]);
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return static_cast<double>(v[v.size() / 2]);
  };
  auto truth = [](int j, double z) { return std::pow(10.0, -0.15 * j) * (1.0 - 0.3 * z); };
  const double z0 = median_zh(0);
  for (int j = 1; j < kNumBins; ++j) {
    const double zj = median_zh(j);
    const double fit = md.LightToMass(j, zj) / md.LightToMass(0, z0);
    EXPECT_NEAR(fit / (truth(j, zj) / truth(0, z0)), 1.0, 0.05) << "bin " << j << " zh " << zj;
  }
  // Metallicity dependence of the youngest bin ([Z/H] in -0.3..0.3 there).
  EXPECT_NEAR(md.LightToMass(0, 0.25) / md.LightToMass(0, -0.25), truth(0, 0.25) / truth(0, -0.25), 0.03);
}

TEST(CnnTrain, ConfigParsing) {
  auto c = cnn::ParseTrainConfig(
      "library: lib.fits\noutput: m.pt\nepochs: 3\nphotometry: false\nsplit: [0.6, 0.3, 0.1]\n"
      "architecture: {channels: [4, 8, 8], latent: 20}\n", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->epochs, 3);
  EXPECT_FALSE(c->photometry);
  EXPECT_DOUBLE_EQ(c->train_fraction, 0.6);
  EXPECT_EQ(c->arch.channels, (std::vector<int64_t>{4, 8, 8}));
  EXPECT_EQ(c->arch.latent, 20);
  auto bad = cnn::ParseTrainConfig("output: m.pt\nepoch: 3\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'epoch'"), std::string::npos);
  bad = cnn::ParseTrainConfig("output: m.pt\narchitecture: {latent: abc}\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("architecture.latent"), std::string::npos) << bad.status().message();
  c = cnn::ParseTrainConfig("output: m.pt\nloss_weight_lw: 0.5\ninit_from: base.pt\n", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_DOUBLE_EQ(c->loss_weight_lw, 0.5);
  EXPECT_EQ(c->init_from, "base.pt");
  bad = cnn::ParseTrainConfig("output: m.pt\nloss_weight_lw: -1\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("loss_weight_lw"), std::string::npos);
}

TEST(CnnTrain, LossFallsAndModelIsWritten) {
  auto dir = TempDir("train");
  auto lib = MakeLibrary(400, 1);
  auto cfg = TinyConfig(dir);
  cfg.epochs = 5;
  std::vector<cnn::EpochReport> reports;
  auto r = cnn::Train(cfg, lib, [&](const cnn::EpochReport& e) { reports.push_back(e); });
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->train_losses.size(), 5u);
  ASSERT_EQ(reports.size(), 5u);
  EXPECT_EQ(reports.back().epoch, 5);
  EXPECT_LT(r->val_losses.back(), r->val_losses.front());
  EXPECT_LT(r->train_losses.back(), r->train_losses.front());
  EXPECT_TRUE(fs::exists(cfg.output + ".ckpt"));
  auto model = cnn::CnnModel::Load(cfg.output);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const auto& md = (*model)->metadata();
  EXPECT_EQ(md.bands, lib.bands);
  EXPECT_EQ(md.wave.n, kNWave);
  EXPECT_EQ(md.phot_mean.size(), 3u);
  EXPECT_FALSE(md.lm_v.empty());
  EXPECT_EQ(md.training.at("n_train"), "280");
  EXPECT_TRUE(md.metrics.count("mae_mass_frac"));
  EXPECT_NEAR(md.metrics.at("best_val_loss"), r->best_val, 1e-9);
  // The saved model is the best-validation one: its loss on the validation rows is best_val.
  // Cheaper check: the test loss of the trained model beats an untrained network of the same shape.
  auto untrained = cnn::CnnModel::CreateRandom(md, 99);
  auto m_trained = cnn::Evaluate(**model, lib, {}, 1);
  auto m_random = cnn::Evaluate(**untrained, lib, {}, 1);
  ASSERT_TRUE(m_trained.ok() && m_random.ok());
  EXPECT_LT(m_trained->at("loss"), m_random->at("loss"));
  fs::remove_all(dir);
}

TEST(CnnTrain, ResumeContinuesExactly) {
  auto lib = MakeLibrary(300, 2);
  auto dir_a = TempDir("resume_a"), dir_b = TempDir("resume_b");
  auto cfg_a = TinyConfig(dir_a);
  auto ra = cnn::Train(cfg_a, lib);
  ASSERT_TRUE(ra.ok()) << ra.status().message();

  auto cfg_b = TinyConfig(dir_b);
  volatile int stop = 0;
  auto rb1 = cnn::Train(cfg_b, lib, [&](const cnn::EpochReport& e) { if (e.epoch == 2) stop = 1; }, &stop);
  ASSERT_TRUE(rb1.ok()) << rb1.status().message();
  EXPECT_TRUE(rb1->interrupted);
  EXPECT_EQ(rb1->epochs_run, 2);
  EXPECT_FALSE(fs::exists(cfg_b.output));
  cfg_b.resume = true;
  std::vector<int64_t> epochs_seen;
  auto rb2 = cnn::Train(cfg_b, lib, [&](const cnn::EpochReport& e) { epochs_seen.push_back(e.epoch); });
  ASSERT_TRUE(rb2.ok()) << rb2.status().message();
  EXPECT_EQ(epochs_seen, (std::vector<int64_t>{3, 4}));
  ASSERT_EQ(rb2->train_losses.size(), ra->train_losses.size());
  for (size_t e = 0; e < ra->train_losses.size(); ++e) {
    EXPECT_DOUBLE_EQ(rb2->train_losses[e], ra->train_losses[e]) << "epoch " << e + 1;
    EXPECT_DOUBLE_EQ(rb2->val_losses[e], ra->val_losses[e]) << "epoch " << e + 1;
  }
  auto ma = cnn::CnnModel::Load(cfg_a.output), mb = cnn::CnnModel::Load(cfg_b.output);
  ASSERT_TRUE(ma.ok() && mb.ok());
  std::vector<float> mfa(20 * kNumBins), zha(20 * kNumBins), mfb(20 * kNumBins), zhb(20 * kNumBins);
  ASSERT_TRUE((*ma)->Predict(lib.spectra.data(), lib.photometry.data(), 20, mfa.data(), zha.data(), 1).ok());
  ASSERT_TRUE((*mb)->Predict(lib.spectra.data(), lib.photometry.data(), 20, mfb.data(), zhb.data(), 1).ok());
  EXPECT_EQ(mfa, mfb);
  EXPECT_EQ(zha, zhb);
  // A checkpoint from another seed is refused.
  cfg_b.seed = 8;
  auto bad = cnn::Train(cfg_b, lib);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("checkpoint"), std::string::npos);
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}

TEST(CnnTrain, FineTuneStartsFromTheGivenModelAndAddsTheLightWeightedTerm) {
  auto lib = MakeLibrary(300, 3);
  auto dir = TempDir("finetune");
  auto base_cfg = TinyConfig(dir / "base");
  auto base = cnn::Train(base_cfg, lib);
  ASSERT_TRUE(base.ok()) << base.status().message();

  // A fine-tune with a vanishing learning rate keeps the base weights: its first validation
  // loss is the base model's best one, so the weights were loaded, not re-initialised.
  auto ft_cfg = TinyConfig(dir / "ft");
  ft_cfg.epochs = 1;
  ft_cfg.lr = 1e-12;
  ft_cfg.init_from = base_cfg.output;
  auto ft = cnn::Train(ft_cfg, lib);
  ASSERT_TRUE(ft.ok()) << ft.status().message();
  EXPECT_NEAR(ft->val_losses[0], base->best_val, 1e-6 * base->best_val);
  auto scratch_cfg = TinyConfig(dir / "scratch");
  scratch_cfg.epochs = 1;
  auto scratch = cnn::Train(scratch_cfg, lib);
  ASSERT_TRUE(scratch.ok());
  EXPECT_LT(ft->val_losses[0], scratch->val_losses[0]);

  // The same weights with loss_weight_lw > 0: the loss grows by the Log-Cosh of the
  // light-weighted mean log age error, which is positive for an imperfect model.
  auto lw_cfg = ft_cfg;
  lw_cfg.output = (dir / "lw" / "model.pt").string();
  lw_cfg.loss_weight_lw = 1.0;
  auto lw = cnn::Train(lw_cfg, lib);
  ASSERT_TRUE(lw.ok()) << lw.status().message();
  EXPECT_GT(lw->val_losses[0], ft->val_losses[0] + 1e-5);
  EXPECT_LT(lw->val_losses[0], ft->val_losses[0] + 1.0);  // Log-Cosh of a dex-scale error

  // Another architecture, or a missing file, is refused by name.
  auto arch_cfg = TinyConfig(dir / "arch");
  arch_cfg.arch.channels = {4, 8, 8};
  arch_cfg.init_from = base_cfg.output;
  auto bad = cnn::Train(arch_cfg, lib);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("architecture"), std::string::npos) << bad.status().message();
  arch_cfg = TinyConfig(dir / "missing");
  arch_cfg.init_from = (dir / "nope.pt").string();
  bad = cnn::Train(arch_cfg, lib);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("init_from"), std::string::npos) << bad.status().message();
  fs::remove_all(dir);
}

TEST(CnnNode, SpecDeclaresPortsAndParams) {
  NodeSpec s = inference::CnnNode::Spec();
  EXPECT_EQ(s.name(), "inference.cnn");
  EXPECT_EQ(s.batch_param(), "batch_size");
  ASSERT_NE(s.FindInput("spectra"), nullptr);
  ASSERT_NE(s.FindInput("photometry"), nullptr);
  EXPECT_FALSE(s.FindInput("photometry")->required);
  ASSERT_NE(s.FindOutput("results"), nullptr);
  ASSERT_NE(s.FindParam("model"), nullptr);
  EXPECT_THROW(cubeflow::testing::MakeNode<inference::CnnNode>({{"model", std::string("")},
                                                                {"batch_size", int64_t{256}},
                                                                {"threads", int64_t{0}},
                                                                {"norm_tolerance", 0.05}}),
               Error);
}

TEST(CnnNode, ModelIsAShippedNameOrAPathNeverGuessed) {
  const fs::path dir = TempDir("modelref"), shipped = dir / "shipped";
  fs::create_directories(shipped);
  ASSERT_TRUE(cnn::CnnModel::CreateRandom(SmallMetadata(0), 1).ValueOrThrow()->Save((shipped / "tiny_cnn.pt").string()).ok());
  nntest::ScopedEnv env("CUBEFLOW_MODEL_DIR", shipped.string());
  const NodeSpec spec = inference::CnnNode::Spec();
  ASSERT_EQ(spec.FindParam("model")->type(), ParamType::kModel);
  EXPECT_EQ(std::get<std::string>(spec.FindParam("model")->default_value()), "cnn_builtin");
  // One default for norm_tolerance (the options struct's, from the plugin's constant).
  EXPECT_EQ(std::get<double>(spec.FindParam("norm_tolerance")->default_value()), inference::kDefaultNormTolerance);
  EXPECT_EQ(inference::CnnOptions{}.norm_tolerance, inference::kDefaultNormTolerance);

  // A shipped name ($CUBEFLOW_MODEL_DIR is searched first) is found and loaded.
  EXPECT_TRUE(nntest::ErrorsOn(spec, {{"model", std::string("tiny_cnn")}}, "model").empty());
  EXPECT_NO_THROW(cubeflow::testing::MakeNode<inference::CnnNode>({{"model", std::string("tiny_cnn")}}));
  // A mistyped name is reported as a name, with the closest shipped one.
  auto e = nntest::ErrorsOn(spec, {{"model", std::string("tiny_cnm")}}, "model");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("no shipped model named 'tiny_cnm' (did you mean 'tiny_cnn'?)"), std::string::npos) << e[0];
  EXPECT_EQ(e[0].find("does not exist"), std::string::npos) << e[0];
  try {
    cubeflow::testing::MakeNode<inference::CnnNode>({{"model", std::string("tiny_cnm")}});
    FAIL() << "expected an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("model: no shipped model named 'tiny_cnm'"), std::string::npos) << err.what();
  }
  // A path is never looked up as a shipped name, even when one of that name exists ...
  const std::string path = (dir / "tiny_cnn").string();
  e = nntest::ErrorsOn(spec, {{"model", path}}, "model");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("model file '" + path + "' does not exist"), std::string::npos) << e[0];
  EXPECT_EQ(e[0].find("no shipped model"), std::string::npos) << e[0];
  // ... and a name is never looked up as a file, even when one of that name exists elsewhere.
  fs::copy_file(shipped / "tiny_cnn.pt", dir / "local.pt");
  fs::copy_file(shipped / "tiny_cnn.pt.yaml", dir / "local.pt.yaml");
  e = nntest::ErrorsOn(spec, {{"model", std::string("local")}}, "model");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("no shipped model named 'local'"), std::string::npos) << e[0];
  EXPECT_TRUE(nntest::ErrorsOn(spec, {{"model", (dir / "local.pt").string()}}, "model").empty());
  // What can be known before the run: the metadata file, and that the model is a CNN.
  std::ofstream(dir / "nometa.pt") << "x";
  e = nntest::ErrorsOn(spec, {{"model", (dir / "nometa.pt").string()}}, "model");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("has no metadata file " + (dir / "nometa.pt.yaml").string()), std::string::npos) << e[0];
  std::ofstream(dir / "sbi_like.pt") << "x";
  std::ofstream(dir / "sbi_like.pt.yaml") << "kind: sbi\n";
  e = nntest::ErrorsOn(spec, {{"model", (dir / "sbi_like.pt").string()}}, "model");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("is an SBI model"), std::string::npos) << e[0];
  EXPECT_NE(e[0].find("inference.sbi"), std::string::npos) << e[0];
  e = nntest::ErrorsOn(spec, {{"model", std::string("")}}, "model");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("is empty"), std::string::npos) << e[0];
  EXPECT_NE(e[0].find("tiny_cnn"), std::string::npos) << e[0];  // the shipped models are listed
  fs::remove_all(dir);
}

TEST(CnnNode, ProcessEmitsRecords) {
  auto lib = MakeLibrary(6, 9);
  auto md = SmallMetadata(3);
  md.bands = lib.bands;
  md.pivots = lib.pivots;
  md.lm_zh_grid = {0.0};
  md.lm_v.assign(kNumBins, 1.0);
  auto model = cnn::CnnModel::CreateRandom(md, 3);
  ASSERT_TRUE(model.ok());
  inference::CnnNode node(std::move(model).ValueOrThrow(), "test.pt");  // 1 thread
  FakeContext ctx;
  for (int64_t i = 0; i < 6; ++i) {
    auto s = SpectrumFrom(lib, i);
    if (i == 2) { s->mask.assign(kNWave, 0); for (int k = 10; k < 30; ++k) s->mask[k] = 1; s->flux[12] = NAN; }
    if (i == 4) for (int k = 0; k < 300; ++k) s->flux[k] = NAN;  // mostly bad
    auto p = PhotometryFrom(lib, i);
    if (i == 1) { std::swap(p->bands[0], p->bands[2]); std::swap(p->flux[0], p->flux[2]); std::swap(p->pivot[0], p->pivot[2]); }
    ctx.AddItem(100 + i, {{"spectra", s}, {"photometry", p}});
  }
  ASSERT_NO_THROW(node.Process(ctx));
  const auto results = nntest::Results(ctx);
  ASSERT_EQ(results.size(), 6u);
  // Reference predictions straight from the model (band order restored, photometry / norm).
  std::vector<float> mf(6 * kNumBins), zh(6 * kNumBins);
  auto ref = cnn::CnnModel::CreateRandom(md, 3);
  ASSERT_TRUE((*ref)->Predict(lib.spectra.data(), lib.photometry.data(), 6, mf.data(), zh.data(), 1).ok());
  for (size_t e = 0; e < 6; ++e) {
    auto rec = results[e].second;
    ASSERT_TRUE(rec);
    const size_t i = static_cast<size_t>(results[e].first - 100);  // the item's key is 100 + item
    ASSERT_LT(i, 6u);
    EXPECT_EQ(rec->id, 100 + static_cast<int64_t>(i));
    const auto& m = rec->fields.at("mass_frac");
    ASSERT_EQ(m.values.size(), static_cast<size_t>(kNumBins));
    EXPECT_EQ(m.labels.front(), "0.007Gyr");
    EXPECT_EQ(m.labels.back(), "14.2Gyr");
    for (const char* f : {"zh", "mw_logage", "lw_logage", "mw_zh", "lw_zh"}) EXPECT_TRUE(rec->fields.count(f)) << f;
    if (i == 4) {
      EXPECT_TRUE(rec->quality & kQualInferenceFailed);
      EXPECT_TRUE(std::isnan(rec->fields.at("mw_logage").values[0]));
      continue;
    }
    EXPECT_NEAR(std::accumulate(m.values.begin(), m.values.end(), 0.0), 1.0, 1e-5);
    const double mw = rec->fields.at("mw_logage").values[0];
    EXPECT_GT(mw, std::log10(0.007e9));
    EXPECT_LT(mw, std::log10(14.2e9));
    if (i != 2)
      for (int j = 0; j < kNumBins; ++j) EXPECT_NEAR(m.values[j], mf[i * kNumBins + j], 1e-5) << "item " << i;
  }
}

TEST(CnnNode, MismatchErrorsNameTheField) {
  auto lib = MakeLibrary(2, 10);
  auto md = SmallMetadata(3);
  md.bands = lib.bands;
  md.pivots = lib.pivots;
  inference::CnnNode node(cnn::CnnModel::CreateRandom(md, 3).ValueOrThrow(), "model.pt");  // 1 thread
  auto good = SpectrumFrom(lib, 0);
  EXPECT_EQ(node.CheckSpectrum(*good), "");

  auto s = std::make_shared<Spectrum>(*good);
  s->wave.cdelt = 1.25;
  std::string msg = node.CheckSpectrum(*s);
  EXPECT_NE(msg.find("step = 1.25 A, model's is 5.5 A"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("start ="), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.pt.yaml"), std::string::npos) << msg;

  s = std::make_shared<Spectrum>(*good);
  s->wave.crval = 4750;
  msg = node.CheckSpectrum(*s);
  EXPECT_NE(msg.find("start = 4750 A, model's is 4800 A"), std::string::npos) << msg;

  s = std::make_shared<Spectrum>(*good);
  s->wave.n = 300;
  s->flux.resize(300);
  msg = node.CheckSpectrum(*s);
  EXPECT_NE(msg.find("n = 300 pixels, model has 400"), std::string::npos) << msg;

  s = std::make_shared<Spectrum>(*good);
  s->rest_frame = false;
  EXPECT_NE(node.CheckSpectrum(*s).find("rest_frame = false"), std::string::npos);

  s = std::make_shared<Spectrum>(*good);
  s->wave.air = false;
  EXPECT_NE(node.CheckSpectrum(*s).find("vacuum"), std::string::npos);

  s = std::make_shared<Spectrum>(*good);
  for (auto& f : s->flux) f *= 3.0;
  msg = node.CheckSpectrum(*s);
  EXPECT_NE(msg.find("normalisation window 5300-5500 A"), std::string::npos) << msg;

  std::vector<int> order;
  auto p = PhotometryFrom(lib, 0);
  EXPECT_EQ(node.CheckPhotometry(*p, order), "");
  p->bands[1] = "F606W";
  msg = node.CheckPhotometry(*p, order);
  EXPECT_NE(msg.find("lacks band(s) F555W"), std::string::npos) << msg;
  p = PhotometryFrom(lib, 0);
  p->pivot[2] = 8500;
  msg = node.CheckPhotometry(*p, order);
  EXPECT_NE(msg.find("band F814W has pivot 8500"), std::string::npos) << msg;

  // Through Process: the run stops with the message.
  FakeContext ctx;
  auto bad = std::make_shared<Spectrum>(*good);
  bad->wave.cdelt = 1.25;
  ctx.AddItem(100, {{"spectra", bad}, {"photometry", PhotometryFrom(lib, 0)}});
  try {
    node.Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step"), std::string::npos);
  }
  // Photometry missing although the model needs it.
  FakeContext ctx2;
  ctx2.AddItem(100, {{"spectra", good}});
  EXPECT_THROW(node.Process(ctx2), Error);
}

TEST(CnnModel, TorchScriptFromPython) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    CUBEFLOW_SKIP_WITHOUT("python3-torch") << "python3-torch is not available";
  auto dir = TempDir("jit");
  const std::string script = (dir / "export.py").string();
  std::ofstream(script) << R"PY(
import sys, torch
from typing import Dict
out = sys.argv[1]
class TupleNet(torch.nn.Module):
    def forward(self, spectra, phot):
        mass = torch.softmax(2.0 * spectra[:, :16], dim=1)
        zh = phot[:, 0:1].expand(-1, 16) + 0.01 * torch.arange(16, dtype=torch.float32)
        return mass, zh
class DictNet(torch.nn.Module):
    def forward(self, spectra) -> Dict[str, torch.Tensor]:
        mass = torch.softmax(-spectra[:, 10:26], dim=1)
        return {"mass_frac": mass, "zh": spectra[:, :16] - 1.0}
torch.jit.save(torch.jit.script(TupleNet()), out + "/tuple.pt")
torch.jit.save(torch.jit.script(DictNet()), out + "/dict.pt")
)PY";
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " " + dir.string()).c_str()), 0);
  const std::string meta_common =
      "format: torchscript\nwavelength: {start: 4800, step: 5.5, n: 400}\n";
  std::ofstream(dir / "tuple.pt.yaml") << meta_common
      << "architecture: {nwave: 400, nbands: 2}\nphotometry: {bands: [F555W, F814W], pivots: [5308, 8040], "
         "transform: none}\n";
  std::ofstream(dir / "dict.pt.yaml") << meta_common << "architecture: {nwave: 400, nbands: 0}\n";
  auto lib = MakeLibrary(5, 12);
  std::vector<float> phot(5 * 2);
  for (int i = 0; i < 5; ++i) { phot[i * 2] = 0.1f * i; phot[i * 2 + 1] = 7.0f; }
  std::vector<float> mf(5 * kNumBins), zh(5 * kNumBins);

  auto tup = cnn::CnnModel::Load((dir / "tuple.pt").string());
  ASSERT_TRUE(tup.ok()) << tup.status().message();
  ASSERT_TRUE((*tup)->Predict(lib.spectra.data(), phot.data(), 5, mf.data(), zh.data(), 1).ok());
  for (int i = 0; i < 5; ++i) {
    double den = 0;
    for (int j = 0; j < kNumBins; ++j) den += std::exp(2.0 * lib.spectra[i * kNWave + j]);
    for (int j = 0; j < kNumBins; ++j) {
      EXPECT_NEAR(mf[i * kNumBins + j], std::exp(2.0 * lib.spectra[i * kNWave + j]) / den, 1e-5);
      EXPECT_NEAR(zh[i * kNumBins + j], 0.1 * i + 0.01 * j, 1e-5);
    }
  }
  auto dict = cnn::CnnModel::Load((dir / "dict.pt").string());
  ASSERT_TRUE(dict.ok()) << dict.status().message();
  ASSERT_TRUE((*dict)->Predict(lib.spectra.data(), nullptr, 5, mf.data(), zh.data(), 1).ok());
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < kNumBins; ++j) EXPECT_NEAR(zh[i * kNumBins + j], lib.spectra[i * kNWave + j] - 1.0, 1e-5);
  // A TorchScript module whose forward takes photometry but the metadata lists no bands is
  // still loadable; one taking only spectra with bands in the metadata is refused.
  std::ofstream(dir / "dict.pt.yaml") << meta_common
      << "architecture: {nwave: 400, nbands: 1}\nphotometry: {bands: [F555W], pivots: [5308]}\n";
  auto refused = cnn::CnnModel::Load((dir / "dict.pt").string());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("forward(spectra)"), std::string::npos) << refused.status().message();
  fs::remove_all(dir);
}

#include "cubeflow/nn/commands.hpp"

TEST(CnnCommands, TrainAndEvaluateFromLibraryFile) {
  auto dir = TempDir("cmd");
  auto lib = MakeLibrary(200, 21);
  const int64_t n = lib.n;
  lib.spectra_err.assign(n * kNWave, 0.02f);
  lib.photometry_err.assign(n * lib.bands.size(), 0.01f);
  lib.t_mass.assign(n * sim::kNumMassPercentiles, 5.0f);
  lib.tau_bc.assign(n, 0.5f);
  lib.tau_ism.assign(n, 0.2f);
  lib.sfh_kind.assign(n, 0);
  lib.z_final.assign(n, 0.02f);
  lib.age_bin_edges.resize(kNumBins + 1);
  for (int j = 0; j <= kNumBins; ++j) lib.age_bin_edges[j] = 0.004 * std::pow(1.62, j);
  const std::string lib_path = (dir / "lib.fits").string();
  Status st = sim::WriteLibrary(lib_path, lib);
  ASSERT_TRUE(st.ok()) << st.message();
  std::ofstream(dir / "train.yaml") << "library: lib.fits\noutput: out/cnn.pt\nepochs: 2\nbatch_size: 32\n"
                                       "batches_per_epoch: 3\nlr: 1.0e-3\nseed: 3\nthreads: 1\n"
                                       "architecture: {channels: [4, 8, 8], spec_hidden: 32}\n";
  std::string cfg = (dir / "train.yaml").string();
  std::vector<std::string> args = {"train", cfg};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ASSERT_EQ(cnn::TrainMain(static_cast<int>(argv.size()), argv.data()), 0);
  const std::string model = (dir / "out" / "cnn.pt").string();
  auto m = cnn::CnnModel::Load(model);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ((*m)->metadata().bands, lib.bands);
  EXPECT_EQ((*m)->metadata().training.at("n_train"), "140");
  EXPECT_NE((*m)->metadata().config_yaml.find("batches_per_epoch: 3"), std::string::npos);
  // --resume after a finished run: starts from the last checkpoint (epoch 2 of 2) and rewrites the model.
  args = {"train", cfg, "--resume"};
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  EXPECT_EQ(cnn::TrainMain(static_cast<int>(argv.size()), argv.data()), 0);
  // Evaluate with a CSV of per-object means.
  const std::string csv = (dir / "eval.csv").string();
  args = {"evaluate", model, lib_path, "--rows", "20", "--csv", csv};
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  ASSERT_EQ(cnn::EvaluateMain(static_cast<int>(argv.size()), argv.data()), 0);
  std::ifstream in(csv);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) ++lines;
  EXPECT_EQ(lines, 21);
  // --json: the figures are truth minus prediction; the bias must equal the mean of the
  // per-object differences in the CSV.
  const std::string json = (dir / "eval.json").string();
  args = {"evaluate", model, lib_path, "--rows", "20", "--csv", csv, "--json", json, "--ablate", "band:" + lib.bands[0],
          "--ablate", "window:5000:5200"};
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  ASSERT_EQ(cnn::EvaluateMain(static_cast<int>(argv.size()), argv.data()), 0);
  std::stringstream js;
  js << std::ifstream(json).rdbuf();
  auto json_number = [&](const std::string& key) {
    const std::string text = js.str();
    const auto pos = text.find("\"" + key + "\": ");
    if (pos == std::string::npos) return std::nan("");
    return std::strtod(text.c_str() + pos + key.size() + 4, nullptr);
  };
  for (const char* key : {"lw_logage_bias", "lw_logage_scatter", "mw_logage_bias", "mw_logage_scatter", "lw_zh_bias",
                          "lw_zh_scatter", "mw_zh_bias", "mw_zh_scatter", "n"})
    EXPECT_TRUE(std::isfinite(json_number(key))) << key << " missing in " << js.str();
  EXPECT_EQ(json_number("n"), 20);
  {
    std::ifstream c(csv);
    std::getline(c, line);  // header: row,snr,lw_true,lw_pred,mw_true,mw_pred,...
    double sum = 0;
    int rows = 0;
    while (std::getline(c, line)) {
      std::vector<double> v;
      std::stringstream ls(line);
      std::string cell;
      while (std::getline(ls, cell, ',')) v.push_back(std::stod(cell));
      ASSERT_GE(v.size(), 6u);
      sum += v[4] - v[5];  // mw_logage true - predicted
      ++rows;
    }
    ASSERT_EQ(rows, 20);
    EXPECT_NEAR(json_number("mw_logage_bias"), sum / rows, 1e-4);
  }
  EXPECT_NE(js.str().find("\"ablation\": ["), std::string::npos);
  EXPECT_NE(js.str().find("5000-5200 A"), std::string::npos);
  // --snr needs a noise-free library; an unknown band in --ablate is named.
  args = {"evaluate", model, lib_path, "--rows", "20", "--snr", "10"};
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  EXPECT_EQ(cnn::EvaluateMain(static_cast<int>(argv.size()), argv.data()), 1);
  args = {"evaluate", model, lib_path, "--rows", "20", "--ablate", "band:NOPE"};
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  EXPECT_EQ(cnn::EvaluateMain(static_cast<int>(argv.size()), argv.data()), 1);
  // A noise-free library can be re-noised at several S/N (the tiny model barely depends on
  // its input, so only check that the noise reached the network).
  {
    auto nf = lib;
    nf.snr.assign(n, 0.0f);
    const std::string nf_path = (dir / "nf.fits").string();
    ASSERT_TRUE(sim::WriteLibrary(nf_path, nf).ok());
    const std::string out_dir = (dir / "ev").string();
    args = {"evaluate", model, nf_path, "--snr", "2,1000", "--out", out_dir};
    argv.clear();
    for (auto& a : args) argv.push_back(a.data());
    ASSERT_EQ(cnn::EvaluateMain(static_cast<int>(argv.size()), argv.data()), 0);
    std::ifstream snr_csv(out_dir + "/snr.csv");
    std::getline(snr_csv, line);
    std::map<std::pair<double, std::string>, double> scatter;
    while (std::getline(snr_csv, line)) {
      std::vector<std::string> v;
      std::stringstream ls(line);
      std::string cell;
      while (std::getline(ls, cell, ',')) v.push_back(cell);
      ASSERT_EQ(v.size(), 8u) << line;
      scatter[{std::stod(v[0]), v[1]}] = std::stod(v[4]);
    }
    ASSERT_EQ(scatter.size(), 8u);
    EXPECT_GT(std::abs(scatter[{2.0, "mw_logage"}] - scatter[{1000.0, "mw_logage"}]), 1e-7);
  }
  // A bad key names itself.
  std::ofstream(dir / "bad.yaml") << "library: lib.fits\noutput: x.pt\nlearning_rate: 1\n";
  args = {"train", (dir / "bad.yaml").string()};
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  EXPECT_EQ(cnn::TrainMain(static_cast<int>(argv.size()), argv.data()), 1);
  fs::remove_all(dir);
}
