// Training configurations of `cubeflow train`: the CNN's (docs/cnn.md) and the SBI model's
// (`kind: sbi`, docs/sbi.md), read by one set of helpers. No libtorch.
#include <yaml-cpp/yaml.h>

#include <set>
#include <string>
#include <vector>

#include "arch_fields.hpp"
#include "cubeflow/nn/diffusion.hpp"
#include "cubeflow/nn/sbi_train.hpp"
#include "cubeflow/nn/train.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow {

namespace nn {
namespace {

/// \brief Reads a training configuration's YAML mapping. Remembers the key being read, so that
/// the message of a yaml-cpp conversion error names it.
class ConfigReader {
 public:
  /// Parses the text, which must be a mapping whose keys are all in `known`; the error names the
  /// file.
  static Result<ConfigReader> Load(const std::string& yaml_text, const std::string& file,
                                   const std::set<std::string>& known) {
    YAML::Node root;
    try {
      root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& ex) {
      return Status::Error(file + ": not valid YAML: " + ex.what());
    }
    ConfigReader r(file, root);
    if (!root.IsMap()) return r.Error("a training configuration must be a YAML mapping");
    try {
      CUBEFLOW_RETURN_NOT_OK(r.CheckKeys(root, known));
    } catch (const YAML::Exception& ex) {
      return r.Error(ex);
    }
    return r;
  }

  const YAML::Node& root() const { return root_; }
  /// Sets the key that a conversion error names.
  void At(std::string key) { key_ = std::move(key); }
  /// Reads `map[key]` into `field` when present; `prefix` names the section ("architecture.").
  template <typename T>
  void Get(const YAML::Node& map, const char* key, T& field, const std::string& prefix = "") {
    key_ = prefix + key;
    if (map[key]) field = map[key].as<T>();
  }
  /// Reads a top-level key.
  template <typename T>
  void Get(const char* key, T& field) {
    Get(root_, key, field);
  }
  /// Error for the first key of `map` that is not in `known`, listing them.
  Status CheckKeys(const YAML::Node& map, const std::set<std::string>& known, const std::string& prefix = "") {
    for (const auto& kv : map) {
      key_ = prefix + kv.first.as<std::string>();
      if (!known.count(kv.first.as<std::string>()))
        return Error("unknown key '" + key_ + "' (known: " +
                     Join(std::vector<std::string>(known.begin(), known.end())) + ")");
    }
    return Status::OK();
  }
  /// Reads section `name` (a mapping) with the fields `for_each(arch, f)` lists, refusing others.
  template <typename Arch, typename ForEach>
  Status Section(const char* name, Arch& arch, ForEach for_each) {
    YAML::Node section = root_[name];
    if (!section) return Status::OK();
    std::set<std::string> known;
    for_each(arch, [&](const char* k, auto&) { known.insert(k); });
    const std::string prefix = std::string(name) + ".";
    CUBEFLOW_RETURN_NOT_OK(CheckKeys(section, known, prefix));
    for_each(arch, [&](const char* k, auto& field) { Get(section, k, field, prefix); });
    return Status::OK();
  }
  /// An error naming the file.
  Status Error(const std::string& message) const { return Status::Error(file_ + ": " + message); }
  /// The error of a yaml-cpp exception, naming the file and the key.
  Status Error(const YAML::Exception& ex) const {
    return Status::Error(file_ + ": key '" + key_ + "': " + ex.what());
  }

 private:
  ConfigReader(std::string file, YAML::Node root) : file_(std::move(file)), root_(std::move(root)) {}

  std::string file_;
  YAML::Node root_;
  std::string key_ = "(document)";
};

/// `split: [train, validation(, test)]` fractions.
Status ReadSplit(ConfigReader& r, double& train_fraction, double& val_fraction) {
  r.At("split");
  auto s = r.root()["split"];
  if (!s) return Status::OK();
  auto v = s.as<std::vector<double>>();
  if (v.size() < 2 || v.size() > 3 || v[0] <= 0 || v[1] <= 0 || v[0] + v[1] >= 1.0 + 1e-9)
    return r.Error("split must be [train, validation, test] fractions that add up to at most 1, e.g. [" +
                   Num(train_fraction) + ", " + Num(val_fraction) + ", " + Num(1.0 - train_fraction - val_fraction) +
                   "]");
  train_fraction = v[0];
  val_fraction = v[1];
  return Status::OK();
}

/// \brief `augment_noise: true | false | {enabled: B, snr: [...], phot_snr: X}`.
struct AugmentNoise {
  bool given = false;  ///< the key is present
  bool enabled = false;
  std::vector<double> snr = {15, 20, 35, 50};
  double phot_snr = 50;
};

Result<AugmentNoise> ReadAugmentNoise(ConfigReader& r) {
  AugmentNoise a;
  r.At("augment_noise");
  auto node = r.root()["augment_noise"];
  if (!node) return a;
  a.given = true;
  if (node.IsScalar()) {
    a.enabled = node.as<bool>();
  } else if (node.IsMap()) {
    a.enabled = true;
    CUBEFLOW_RETURN_NOT_OK(r.CheckKeys(node, {"enabled", "snr", "phot_snr"}, "augment_noise."));
    r.Get(node, "enabled", a.enabled, "augment_noise.");
    r.Get(node, "snr", a.snr, "augment_noise.");
    r.Get(node, "phot_snr", a.phot_snr, "augment_noise.");
  } else {
    return r.Error("augment_noise must be true/false or {snr: [...], phot_snr: X}");
  }
  if (a.enabled && a.snr.empty()) return r.Error("augment_noise.snr is empty: give the S/N values to draw from");
  for (double v : a.snr)
    if (!(v > 0)) return r.Error("augment_noise.snr values must be positive (got " + Num(v) + ")");
  return a;
}

/// Checks of settings both kinds of configuration have.
Status CheckCommon(const ConfigReader& r, int64_t epochs, int64_t batch_size, double lr, double lr_factor,
                   const std::string& output) {
  if (epochs <= 0) return r.Error("epochs must be > 0 (got " + std::to_string(epochs) + ")");
  if (batch_size <= 0) return r.Error("batch_size must be > 0 (got " + std::to_string(batch_size) + ")");
  if (!(lr > 0)) return r.Error("lr must be > 0 (got " + Num(lr) + ")");
  if (!(lr_factor > 0 && lr_factor <= 1)) return r.Error("lr_factor must be in (0, 1] (got " + Num(lr_factor) + ")");
  if (output.empty()) return r.Error("'output' (the model file to write) is required");
  return Status::OK();
}

}  // namespace
}  // namespace nn

// ---------------------------------------------------------------------------------------
// CNN
// ---------------------------------------------------------------------------------------

Result<cnn::TrainConfig> cnn::ParseTrainConfig(const std::string& yaml_text, const std::string& file_name) {
  TrainConfig c;
  c.config_yaml = yaml_text;
  CUBEFLOW_ASSIGN_OR_RETURN(
      nn::ConfigReader r,
      nn::ConfigReader::Load(yaml_text, file_name,
                             {"library", "output", "checkpoint", "epochs", "batch_size", "lr", "lr_factor",
                              "lr_patience", "stop_patience", "loss_weight_sfh", "seed", "threads", "max_rows",
                              "batches_per_epoch", "split", "photometry", "architecture", "augment_noise",
                              "augment_continuum", "loss_weight_lw", "init_from"}));
  try {
    r.Get("library", c.library);
    r.Get("output", c.output);
    r.Get("checkpoint", c.checkpoint);
    r.Get("epochs", c.epochs);
    r.Get("batch_size", c.batch_size);
    r.Get("lr", c.lr);
    r.Get("lr_factor", c.lr_factor);
    r.Get("lr_patience", c.lr_patience);
    r.Get("stop_patience", c.stop_patience);
    r.Get("loss_weight_sfh", c.loss_weight_sfh);
    r.Get("loss_weight_lw", c.loss_weight_lw);
    r.Get("init_from", c.init_from);
    r.Get("seed", c.seed);
    r.Get("threads", c.threads);
    r.Get("max_rows", c.max_rows);
    r.Get("batches_per_epoch", c.batches_per_epoch);
    r.Get("photometry", c.photometry);
    CUBEFLOW_ASSIGN_OR_RETURN(nn::AugmentNoise noise, nn::ReadAugmentNoise(r));
    if (noise.given) {
      c.augment_noise = noise.enabled;
      c.augment_snr = noise.snr;
      c.augment_phot_snr = noise.phot_snr;
    }
    if (auto node = r.root()["augment_continuum"]) {
      r.At("augment_continuum");
      if (!node.IsMap()) return r.Error("augment_continuum must be {degree: D, sigma: S}, e.g. {degree: 3, sigma: 0.05}");
      CUBEFLOW_RETURN_NOT_OK(r.CheckKeys(node, {"degree", "sigma"}, "augment_continuum."));
      r.Get(node, "degree", c.augment_continuum_degree, "augment_continuum.");
      r.Get(node, "sigma", c.augment_continuum_sigma, "augment_continuum.");
      if (c.augment_continuum_degree < 1 || c.augment_continuum_degree > 10)
        return r.Error("augment_continuum.degree must be 1-10 (got " + std::to_string(c.augment_continuum_degree) + ")");
      if (!(c.augment_continuum_sigma > 0 && c.augment_continuum_sigma < 0.5))
        return r.Error("augment_continuum.sigma must be in (0, 0.5) (got " + Num(c.augment_continuum_sigma) + ")");
    }
    CUBEFLOW_RETURN_NOT_OK(nn::ReadSplit(r, c.train_fraction, c.val_fraction));
    CUBEFLOW_RETURN_NOT_OK(r.Section("architecture", c.arch, [](auto& a, auto&& f) { nn::ForEachCnnArchField(a, f); }));
  } catch (const YAML::Exception& ex) {
    return r.Error(ex);
  }
  CUBEFLOW_RETURN_NOT_OK(nn::CheckCommon(r, c.epochs, c.batch_size, c.lr, c.lr_factor, c.output));
  if (!(c.loss_weight_sfh >= 0 && c.loss_weight_sfh <= 1))
    return r.Error("loss_weight_sfh must be in [0, 1] (got " + Num(c.loss_weight_sfh) + ")");
  if (!(c.loss_weight_lw >= 0)) return r.Error("loss_weight_lw must be >= 0 (got " + Num(c.loss_weight_lw) + ")");
  return c;
}

// ---------------------------------------------------------------------------------------
// SBI
// ---------------------------------------------------------------------------------------

Result<sbi::TrainConfig> sbi::ParseTrainConfig(const std::string& yaml_text, const std::string& file_name) {
  TrainConfig c;
  c.config_yaml = yaml_text;
  CUBEFLOW_ASSIGN_OR_RETURN(
      nn::ConfigReader r,
      nn::ConfigReader::Load(
          yaml_text, file_name,
          {"kind", "library", "flow_library", "output", "checkpoint", "epochs", "batch_size", "lr", "lr_factor",
           "lr_patience", "stop_patience", "batches_per_epoch", "flow_epochs", "flow_batch_size", "flow_lr",
           "flow_lr_patience", "flow_stop_patience", "flow_batches_per_epoch", "seed", "threads", "max_rows", "split",
           "encoder_fraction", "photometry", "noise_input", "time_transform", "lookback_offset", "eval_samples",
           "architecture", "flow", "augment_noise", "flow_noise_draws", "flow_jitter", "flow_jitter_anneal",
           "encoder_from"}));
  try {
    std::string kind;
    r.Get("kind", kind);
    if (kind != "sbi") return r.Error("an SBI training configuration needs 'kind: sbi'");
    r.Get("library", c.library);
    r.Get("flow_library", c.flow_library);
    r.Get("output", c.output);
    r.Get("checkpoint", c.checkpoint);
    r.Get("encoder_from", c.encoder_from);
    r.Get("epochs", c.epochs);
    r.Get("batch_size", c.batch_size);
    r.Get("lr", c.lr);
    r.Get("lr_factor", c.lr_factor);
    r.Get("lr_patience", c.lr_patience);
    r.Get("stop_patience", c.stop_patience);
    r.Get("batches_per_epoch", c.batches_per_epoch);
    r.Get("flow_epochs", c.flow_epochs);
    r.Get("flow_batch_size", c.flow_batch_size);
    r.Get("flow_lr", c.flow_lr);
    r.Get("flow_lr_patience", c.flow_lr_patience);
    r.Get("flow_stop_patience", c.flow_stop_patience);
    r.Get("flow_batches_per_epoch", c.flow_batches_per_epoch);
    r.Get("seed", c.seed);
    r.Get("threads", c.threads);
    r.Get("max_rows", c.max_rows);
    r.Get("encoder_fraction", c.encoder_fraction);
    r.Get("photometry", c.photometry);
    r.Get("noise_input", c.noise_input);
    r.Get("time_transform", c.time_transform);
    r.Get("lookback_offset", c.lookback_offset);
    r.Get("eval_samples", c.eval_samples);
    r.Get("flow_noise_draws", c.flow_noise_draws);
    r.Get("flow_jitter", c.flow_jitter);
    r.Get("flow_jitter_anneal", c.flow_jitter_anneal);
    CUBEFLOW_ASSIGN_OR_RETURN(nn::AugmentNoise noise, nn::ReadAugmentNoise(r));
    if (noise.given) {
      c.augment_noise.phot_snr = noise.phot_snr;
      if (noise.enabled) c.augment_noise.snr = noise.snr;
    }
    CUBEFLOW_RETURN_NOT_OK(nn::ReadSplit(r, c.train_fraction, c.val_fraction));
    CUBEFLOW_RETURN_NOT_OK(
        r.Section("architecture", c.encoder, [](auto& a, auto&& f) { nn::ForEachEncoderArchField(a, f); }));
    CUBEFLOW_RETURN_NOT_OK(r.Section("flow", c.flow, [](auto& a, auto&& f) { nn::ForEachFlowArchField(a, f); }));
  } catch (const YAML::Exception& ex) {
    return r.Error(ex);
  }
  CUBEFLOW_RETURN_NOT_OK(nn::CheckCommon(r, c.epochs, c.batch_size, c.lr, c.lr_factor, c.output));
  if (c.flow_epochs <= 0) return r.Error("flow_epochs must be > 0 (got " + std::to_string(c.flow_epochs) + ")");
  if (c.flow_batch_size <= 0)
    return r.Error("flow_batch_size must be > 0 (got " + std::to_string(c.flow_batch_size) + ")");
  if (c.eval_samples <= 0) return r.Error("eval_samples must be > 0 (got " + std::to_string(c.eval_samples) + ")");
  if (!(c.flow_lr > 0)) return r.Error("flow_lr must be > 0 (got " + Num(c.flow_lr) + ")");
  if (!(c.encoder_fraction > 0 && c.encoder_fraction <= 1))
    return r.Error("encoder_fraction must be in (0, 1] (got " + Num(c.encoder_fraction) + ")");
  if (c.time_transform != "log_lookback" && c.time_transform != "linear")
    return r.Error("time_transform must be 'log_lookback' or 'linear' (got '" + c.time_transform + "')");
  if (!(c.lookback_offset > 0)) return r.Error("lookback_offset must be > 0 (Gyr)");
  if (c.flow_noise_draws < 1) return r.Error("flow_noise_draws must be >= 1");
  if (!(c.flow_jitter >= 0 && c.flow_jitter < 1)) return r.Error("flow_jitter must be in [0, 1)");
  Status st = c.flow.Validate();
  if (!st.ok()) return r.Error(st.message());
  return c;
}

// ---------------------------------------------------------------------------------------
// Diffusion prior
// ---------------------------------------------------------------------------------------

Result<diffusion::TrainConfig> diffusion::ParseTrainConfig(const std::string& yaml_text, const std::string& file_name) {
  TrainConfig c;
  c.config_yaml = yaml_text;
  CUBEFLOW_ASSIGN_OR_RETURN(
      nn::ConfigReader r,
      nn::ConfigReader::Load(yaml_text, file_name,
                             {"kind", "output", "checkpoint", "library_config", "n", "seed", "epochs", "batch_size",
                              "lr", "lr_factor", "lr_patience", "stop_patience", "batches_per_epoch", "val_fraction",
                              "sigma_min", "sigma_max", "mass_scaling", "threads", "architecture"}));
  try {
    std::string kind;
    r.Get("kind", kind);
    if (kind != "diffusion") return r.Error("a diffusion-prior training configuration needs 'kind: diffusion'");
    r.Get("output", c.output);
    r.Get("checkpoint", c.checkpoint);
    r.Get("library_config", c.library_config);
    r.Get("n", c.n);
    r.Get("seed", c.seed);
    r.Get("epochs", c.epochs);
    r.Get("batch_size", c.batch_size);
    r.Get("lr", c.lr);
    r.Get("lr_factor", c.lr_factor);
    r.Get("lr_patience", c.lr_patience);
    r.Get("stop_patience", c.stop_patience);
    r.Get("batches_per_epoch", c.batches_per_epoch);
    r.Get("val_fraction", c.val_fraction);
    r.Get("sigma_min", c.sigma_min);
    r.Get("sigma_max", c.sigma_max);
    std::string mass_scaling = "all";
    r.Get("mass_scaling", mass_scaling);
    if (mass_scaling != "all" && mass_scaling != "nonempty")
      return r.Error("mass_scaling must be 'all' or 'nonempty' (got '" + mass_scaling + "')");
    c.scale_mass_by_nonempty = mass_scaling == "nonempty";
    r.Get("threads", c.threads);
    CUBEFLOW_RETURN_NOT_OK(r.Section("architecture", c.arch, [](auto& a, auto&& f) {
      f("hidden", a.hidden);
      f("blocks", a.blocks);
      f("embed", a.embed);
    }));
  } catch (const YAML::Exception& ex) {
    return r.Error(ex);
  }
  CUBEFLOW_RETURN_NOT_OK(nn::CheckCommon(r, c.epochs, c.batch_size, c.lr, c.lr_factor, c.output));
  if (c.n < 100) return r.Error("n must be >= 100 histories (got " + std::to_string(c.n) + ")");
  if (!(c.val_fraction > 0 && c.val_fraction < 0.5)) return r.Error("val_fraction must be in (0, 0.5)");
  if (!(c.sigma_min > 0)) return r.Error("sigma_min must be > 0 (got " + Num(c.sigma_min) + ")");
  if (c.sigma_max != 0 && !(c.sigma_max > c.sigma_min))
    return r.Error("sigma_max must be > sigma_min, or 0 for the largest pairwise distance of the training set");
  if (c.arch.hidden < 8 || c.arch.blocks < 1 || c.arch.embed < 2 || c.arch.embed % 2)
    return r.Error("architecture: hidden >= 8, blocks >= 1, embed even and >= 2");
  return c;
}

}  // namespace cubeflow
