// Model metadata files and training configurations (libs/nn/src/model_metadata.cpp,
// train_config.cpp): CNN and SBI files share one writer and reader of the input conventions and
// of the architecture fields, so both round-trip every field and both name the key and the fix in
// their messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/sbi.hpp"
#include "cubeflow/nn/sbi_train.hpp"
#include "cubeflow/nn/train.hpp"

using namespace cubeflow;
namespace fs = std::filesystem;

namespace {

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("cubeflow_test_metadata_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string ReadText(const fs::path& p) {
  std::stringstream s;
  s << std::ifstream(p).rdbuf();
  return s.str();
}

/// `text` with the first `from` replaced by `to`.
std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const auto pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

cnn::CnnMetadata CnnExample() {
  cnn::CnnMetadata md;
  md.arch.nwave = 400;
  md.arch.nbands = 2;
  md.arch.channels = {4, 8, 8};
  md.arch.kernels = {5, 3, 3};
  md.arch.attention = false;
  md.arch.latent = 24;
  md.arch.decoder_hidden = 48;
  md.wave = WavelengthAxis::Linear(4800.0, 5.5, 400, /*air=*/false);
  md.rest_frame = false;
  md.norm_min = 5250;
  md.norm_max = 5450;
  md.sigma_target = 120;
  md.bands = {"F438W", "F814W"};
  md.pivots = {4326.0, 8040.0};
  md.phot_transform = "none";
  md.phot_floor = 1e-5;
  md.phot_mean = {0.1, -0.2};
  md.phot_std = {0.3, 0.4};
  md.age_bin_centres = cnn::DefaultAgeBinCentres();
  md.age_bin_edges = {1, 2};
  md.ssp_name = "ssp-x";
  md.lm_zh_grid = {-0.5};
  md.lm_v.assign(cnn::kNumBins, 2.0);
  md.training["n_train"] = "280";
  md.metrics["loss"] = 0.125;
  md.config_yaml = "epochs: 3\n";
  return md;
}

sbi::SbiMetadata SbiExample() {
  sbi::SbiMetadata md;
  md.encoder.nwave = 400;
  md.encoder.nbands = 1;
  md.encoder.noise_input = false;
  md.encoder.channels = {4, 8, 8};
  md.encoder.summary_dim = 8;
  md.encoder.head_hidden = 16;
  md.flow.transform = "affine";
  md.flow.layers = 3;
  md.flow.tail_bound = 4.5;
  md.flow.permutation_seed = 99;
  md.input.wave = WavelengthAxis::Linear(4800.0, 5.5, 400);
  md.input.norm_min = 5300;
  md.input.norm_max = 5500;
  md.input.bands = {"F555W"};
  md.input.pivots = {5308.0};
  md.sigma_target = 140;
  md.phot_floor = 1e-7;
  md.phot_mean = {0.5};
  md.phot_std = {0.25};
  md.snr_log_mean = 1.3;
  md.snr_log_std = 0.15;
  md.snr_min = 20;
  md.snr_max = 50;
  md.theta = sbi::DefaultTheta();
  md.theta[4].mean = 0.7;
  md.theta[4].std = 0.2;
  md.flow.dim = static_cast<int64_t>(md.theta.size());
  md.lookback_reference = 13.5;
  md.ssp_name = "ssp-y";
  md.training["flow_rows"] = "all";
  md.metrics["r2_t50"] = 0.75;
  md.config_yaml = "kind: sbi\n";
  return md;
}

}  // namespace

TEST(ModelMetadata, CnnFileRoundTripsEveryField) {
  auto dir = TempDir("cnn");
  const cnn::CnnMetadata md = CnnExample();
  const std::string path = (dir / "m.pt.yaml").string();
  ASSERT_TRUE(cnn::WriteMetadata(path, md).ok());
  auto r = cnn::ReadMetadata(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->arch == md.arch);
  EXPECT_EQ(r->wave.n, 400);
  EXPECT_DOUBLE_EQ(r->wave.At(0), 4800.0);
  EXPECT_DOUBLE_EQ(r->wave.cdelt, 5.5);
  EXPECT_FALSE(r->wave.air);
  EXPECT_FALSE(r->rest_frame);
  EXPECT_EQ(r->norm_min, 5250);
  EXPECT_EQ(r->norm_max, 5450);
  EXPECT_EQ(r->sigma_target, 120);
  EXPECT_EQ(r->bands, md.bands);
  EXPECT_EQ(r->pivots, md.pivots);
  EXPECT_EQ(r->phot_transform, "none");
  EXPECT_EQ(r->phot_floor, 1e-5);
  EXPECT_EQ(r->phot_mean, md.phot_mean);
  EXPECT_EQ(r->phot_std, md.phot_std);
  EXPECT_EQ(r->age_bin_edges, md.age_bin_edges);
  EXPECT_EQ(r->ssp_name, "ssp-x");
  EXPECT_EQ(r->lm_v, md.lm_v);
  EXPECT_EQ(r->training, md.training);
  EXPECT_EQ(r->metrics, md.metrics);
  EXPECT_EQ(r->config_yaml, md.config_yaml);
  // The conventions the input checks use are the metadata's.
  const inputs::InputConventions c = r->Conventions();
  EXPECT_EQ(c.wave.n, 400);
  EXPECT_FALSE(c.rest_frame);
  EXPECT_EQ(c.norm_min, 5250);
  EXPECT_EQ(c.bands, md.bands);
  EXPECT_EQ(c.pivots, md.pivots);
  // Same key layout as before the shared writer.
  const std::string text = ReadText(path);
  EXPECT_NE(text.find("wavelength:\n  start: 4800\n  step: 5.5\n  n: 400\n  log: false\n  air: false\n"
                      "  rest_frame: false\nnormalisation:\n  window: [5250, 5450]\n  statistic: mean\n"
                      "sigma_target: 120\nphotometry:\n  bands: [F438W, F814W]\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  kernels: [5, 3, 3]\n  pools: [4, 4, 2]\n  attention: false\n"), std::string::npos) << text;
  fs::remove_all(dir);
}

TEST(ModelMetadata, SbiFileRoundTripsEveryField) {
  auto dir = TempDir("sbi");
  const sbi::SbiMetadata md = SbiExample();
  const std::string path = (dir / "m.pt.yaml").string();
  ASSERT_TRUE(sbi::WriteMetadata(path, md).ok());
  EXPECT_TRUE(sbi::IsSbiMetadata(path));
  auto r = sbi::ReadMetadata(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->encoder == md.encoder);
  EXPECT_EQ(r->flow.transform, "affine");
  EXPECT_EQ(r->flow.layers, 3);
  EXPECT_EQ(r->flow.tail_bound, 4.5);
  EXPECT_EQ(r->flow.permutation_seed, 99u);
  EXPECT_EQ(r->flow.dim, md.flow.dim);
  EXPECT_EQ(r->input.wave.n, 400);
  EXPECT_EQ(r->input.bands, md.input.bands);
  EXPECT_EQ(r->input.pivots, md.input.pivots);
  EXPECT_EQ(r->sigma_target, 140);
  EXPECT_EQ(r->phot_floor, 1e-7);
  EXPECT_EQ(r->phot_mean, md.phot_mean);
  EXPECT_EQ(r->phot_std, md.phot_std);
  EXPECT_EQ(r->snr_log_mean, 1.3);
  EXPECT_EQ(r->snr_log_std, 0.15);
  EXPECT_EQ(r->snr_max, 50);
  ASSERT_EQ(r->theta.size(), md.theta.size());
  EXPECT_EQ(r->theta[4].mean, 0.7);
  EXPECT_EQ(r->theta[4].transform, md.theta[4].transform);
  EXPECT_EQ(r->lookback_reference, 13.5);
  EXPECT_EQ(r->ssp_name, "ssp-y");
  EXPECT_EQ(r->training, md.training);
  EXPECT_EQ(r->metrics, md.metrics);
  EXPECT_EQ(r->config_yaml, md.config_yaml);
  fs::remove_all(dir);
}

TEST(ModelMetadata, InputConventionErrorsNameTheKey) {
  auto dir = TempDir("errors");
  const std::string cnn_path = (dir / "c.pt.yaml").string(), sbi_path = (dir / "s.pt.yaml").string();
  ASSERT_TRUE(cnn::WriteMetadata(cnn_path, CnnExample()).ok());
  ASSERT_TRUE(sbi::WriteMetadata(sbi_path, SbiExample()).ok());
  const std::string cnn_text = ReadText(cnn_path), sbi_text = ReadText(sbi_path);
  auto cnn_error = [&](const std::string& text) {
    std::ofstream(cnn_path) << text;
    auto r = cnn::ReadMetadata(cnn_path);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  auto sbi_error = [&](const std::string& text) {
    std::ofstream(sbi_path) << text;
    auto r = sbi::ReadMetadata(sbi_path);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  std::string msg = cnn_error(Replace(cnn_text, "  n: 400\n", "  n: 399\n"));
  EXPECT_NE(msg.find("model metadata " + cnn_path + ": wavelength.n = 399 but architecture.nwave = 400"),
            std::string::npos) << msg;
  msg = sbi_error(Replace(sbi_text, "  n: 400\n", "  n: 399\n"));
  EXPECT_NE(msg.find("SBI model metadata " + sbi_path + ": wavelength.n = 399 but encoder.nwave = 400"),
            std::string::npos) << msg;
  msg = cnn_error(Replace(cnn_text, "transform: none", "transform: asinh"));
  EXPECT_NE(msg.find("photometry.transform 'asinh' is not 'log10_standardise' or 'none'"), std::string::npos) << msg;
  // The SBI model has no "none" transform.
  msg = sbi_error(Replace(sbi_text, "transform: log10_standardise\n  floor", "transform: none\n  floor"));
  EXPECT_NE(msg.find("photometry.transform 'none' is not 'log10_standardise'"), std::string::npos) << msg;
  msg = cnn_error(Replace(cnn_text, "bands: [F438W, F814W]", "bands: [F438W]"));
  EXPECT_NE(msg.find("photometry.bands has 1 names but architecture.nbands = 2"), std::string::npos) << msg;
  msg = sbi_error(Replace(sbi_text, "mean: [0.5]", "mean: [0.5, 0.1]"));
  EXPECT_NE(msg.find("photometry.mean/std need one value per band (1)"), std::string::npos) << msg;
  msg = cnn_error(Replace(cnn_text, "window: [5250, 5450]", "window: [5250]"));
  EXPECT_NE(msg.find("normalisation.window needs 2 values"), std::string::npos) << msg;
  msg = sbi_error(Replace(sbi_text, "wavelength:\n  start: 4800\n", "wavelength:\n"));
  EXPECT_NE(msg.find("missing wavelength.start/step/n"), std::string::npos) << msg;
  msg = cnn_error(Replace(cnn_text, "latent: 24", "latent: many"));
  EXPECT_NE(msg.find("(architecture)"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(TrainConfigParsing, SharedSectionsOfBothKinds) {
  // Unknown architecture keys list the known ones (the CNN's and the encoder's differ).
  auto c = cnn::ParseTrainConfig("output: m.pt\narchitecture: {summary_dim: 3}\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("c.yaml: unknown key 'architecture.summary_dim' (known: attention, "),
            std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("latent"), std::string::npos);
  auto s = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\narchitecture: {latent: 3}\n", "s.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("unknown key 'architecture.latent'"), std::string::npos);
  EXPECT_NE(s.status().message().find("summary_dim"), std::string::npos) << s.status().message();
  s = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\nflow: {dim: 3}\n", "s.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("unknown key 'flow.dim' (known: bins, context_hidden, hidden, layers, "
                                      "tail_bound, transform)"),
            std::string::npos) << s.status().message();
  // The split example shows each kind's defaults.
  c = cnn::ParseTrainConfig("output: m.pt\nsplit: [0.9, 0.2]\n", "c.yaml");
  EXPECT_NE(c.status().message().find("e.g. [0.7, 0.2, 0.1]"), std::string::npos) << c.status().message();
  s = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\nsplit: [0.9, 0.2]\n", "s.yaml");
  EXPECT_NE(s.status().message().find("e.g. [0.8, 0.1, 0.1]"), std::string::npos) << s.status().message();
  // augment_noise: a mapping turns it on; disabled needs no S/N list; S/N values must be positive.
  c = cnn::ParseTrainConfig("output: m.pt\naugment_noise: {snr: [10, 20], phot_snr: 30}\n", "c.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->augment_noise);
  EXPECT_EQ(c->augment_snr, (std::vector<double>{10, 20}));
  EXPECT_EQ(c->augment_phot_snr, 30);
  s = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\naugment_noise: {snr: [10, 20]}\n", "s.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->augment_noise.snr, (std::vector<double>{10, 20}));
  s = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\naugment_noise: {enabled: false, snr: []}\n", "s.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_FALSE(s->augment_noise.enabled());
  c = cnn::ParseTrainConfig("output: m.pt\naugment_noise: {snr: [10, -5]}\n", "c.yaml");
  EXPECT_NE(c.status().message().find("augment_noise.snr values must be positive (got -5)"), std::string::npos)
      << c.status().message();
  c = cnn::ParseTrainConfig("output: m.pt\naugment_noise: {sn: [10]}\n", "c.yaml");
  EXPECT_NE(c.status().message().find("unknown key 'augment_noise.sn' (known: enabled, phot_snr, snr)"),
            std::string::npos) << c.status().message();
  // augment_continuum (CNN): degree and sigma, checked.
  c = cnn::ParseTrainConfig("output: m.pt\naugment_continuum: {degree: 3, sigma: 0.05}\n", "c.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->augment_continuum_degree, 3);
  EXPECT_EQ(c->augment_continuum_sigma, 0.05);
  c = cnn::ParseTrainConfig("output: m.pt\n", "c.yaml");
  EXPECT_EQ(c->augment_continuum_degree, 0) << "off unless asked for";
  c = cnn::ParseTrainConfig("output: m.pt\naugment_continuum: {degree: 0, sigma: 0.05}\n", "c.yaml");
  EXPECT_NE(c.status().message().find("augment_continuum.degree must be 1-10 (got 0)"), std::string::npos)
      << c.status().message();
  c = cnn::ParseTrainConfig("output: m.pt\naugment_continuum: {degree: 2, sigma: 0.7}\n", "c.yaml");
  EXPECT_NE(c.status().message().find("augment_continuum.sigma must be in (0, 0.5) (got 0.7)"), std::string::npos)
      << c.status().message();
  c = cnn::ParseTrainConfig("output: m.pt\naugment_continuum: true\n", "c.yaml");
  EXPECT_NE(c.status().message().find("augment_continuum must be {degree: D, sigma: S}"), std::string::npos)
      << c.status().message();
  // Conversion errors and range checks name the key and the value.
  c = cnn::ParseTrainConfig("output: m.pt\nepochs: 0\n", "c.yaml");
  EXPECT_NE(c.status().message().find("c.yaml: epochs must be > 0 (got 0)"), std::string::npos);
  s = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\nflow_lr: -1\n", "s.yaml");
  EXPECT_NE(s.status().message().find("flow_lr must be > 0 (got -1)"), std::string::npos) << s.status().message();
  s = sbi::ParseTrainConfig("kind: sbi\noutput: m.pt\nflow: {layers: x}\n", "s.yaml");
  EXPECT_NE(s.status().message().find("s.yaml: key 'flow.layers': "), std::string::npos) << s.status().message();
  c = cnn::ParseTrainConfig("output: [m.pt\n", "c.yaml");
  EXPECT_NE(c.status().message().find("c.yaml: not valid YAML"), std::string::npos) << c.status().message();
  c = cnn::ParseTrainConfig("epochs: 3\n", "c.yaml");
  EXPECT_NE(c.status().message().find("'output' (the model file to write) is required"), std::string::npos);
}
