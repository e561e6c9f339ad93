// SBI training (the encoder, then the flow on its summaries) as a sequence of named steps, and
// `cubeflow train` for configurations with `kind: sbi`. The epochs of each stage run in the stage
// loop the CNN shares (train_common.hpp).
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <numeric>
#include <optional>
#include <sstream>

#include "cubeflow/nn/sbi_train.hpp"
#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/rng.hpp"
#include "sbi_net.hpp"
#include "sbi_streams.hpp"
#include "threads.hpp"
#include "train_common.hpp"
#include "train_torch.hpp"

namespace cubeflow::sbi {

namespace {

namespace fs = std::filesystem;

/// Age of the universe of the library's cosmology (Gyr), or NaN if unknown.
double UniverseAge(const sim::LibraryData& lib) {
  sim::Cosmology cosmo;
  auto it = lib.meta.find("config");
  if (it != lib.meta.end()) {
    try {
      YAML::Node c = YAML::Load(it->second);
      if (c.IsMap() && c["cosmology"]) {
        if (c["cosmology"]["h0"]) cosmo.h0 = c["cosmology"]["h0"].as<double>();
        if (c["cosmology"]["omega_m"]) cosmo.omega_m = c["cosmology"]["omega_m"].as<double>();
      }
    } catch (const std::exception&) {
    }
    return sim::CosmicTimeGyr(0.0, cosmo);
  }
  return std::numeric_limits<double>::quiet_NaN();
}

bool HasNoise(const sim::LibraryData& lib) {
  for (float s : lib.snr)
    if (s > 0) return true;
  return false;
}

/// Positions of the rows (of D values each) whose parameters are all finite.
std::vector<int64_t> FiniteRows(const std::vector<float>& y, int64_t D) {
  std::vector<int64_t> keep;
  for (size_t r = 0; r < y.size() / D; ++r) {
    bool ok = true;
    for (int64_t k = 0; k < D; ++k) ok = ok && std::isfinite(y[r * D + k]);
    if (ok) keep.push_back(static_cast<int64_t>(r));
  }
  return keep;
}

/// Physical parameter values (rows x dim, NaN where unknown) standardised as the flow models them.
std::vector<float> Standardise(const SbiMetadata& md, const std::vector<float>& phys) {
  const int64_t D = md.flow.dim, m = static_cast<int64_t>(phys.size()) / D;
  std::vector<float> y(phys.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t k = 0; k < D; ++k) {
      const double v = phys[i * D + k];
      y[i * D + k] = std::isfinite(v) ? static_cast<float>(md.FromPhysical(static_cast<int>(k), v)) : NAN;
    }
  return y;
}

/// \brief Network inputs of a batch of rows.
struct Inputs {
  torch::Tensor spec, phot, noise;
};

/// \brief Rows of an SBI training run.
struct SbiRows {
  int64_t n = 0;                  ///< library rows used (max_rows)
  nn::Split split;                ///< of rows 0..n-1
  std::vector<int64_t> enc;       ///< the encoder's: the first encoder_fraction of split.train
  std::vector<int64_t> flow;      ///< the flow's: of the flow library, or of the library
  std::string flow_source;        ///< where the flow's rows come from, for the metadata
};

/// \brief What a checkpoint holds besides the networks.
struct SbiState {
  int stage = 1;                  ///< 1: encoder, 2: flow
  int64_t epoch = 0;              ///< epochs completed in `stage`
  nn::Plateau plateau;            ///< of `stage`
  int64_t enc_best_epoch = 0;
  double enc_best_val = std::numeric_limits<double>::infinity();
  double seconds = 0;             ///< of the runs before this one
  std::vector<double> encoder_train, encoder_val, flow_train, flow_val;
  bool has_optimizer = false;     ///< `optimizer` holds the state of `stage`'s optimiser
  torch::serialize::InputArchive optimizer;
};

/// \brief One SBI training run; each step is a method, Run() calls them in order.
class SbiTraining {
 public:
  SbiTraining(const TrainConfig& cfg, const sim::LibraryData& lib, const sim::LibraryData* flow_lib,
              const nn::ProgressFn& progress, const volatile int* stop_flag)
      : cfg_(cfg),
        lib_(lib),
        flow_lib_(flow_lib),
        flib_(flow_lib ? *flow_lib : lib),
        noise_(cfg.augment_noise.enabled() ? &cfg.augment_noise : nullptr),
        progress_(progress),
        stop_flag_(stop_flag),
        ckpt_(cfg.checkpoint.empty() ? cfg.output + ".ckpt" : cfg.checkpoint) {}

  Result<TrainResult> Run();

 private:
  const SbiMetadata& md() const { return impl_->md; }
  // Preparation.
  Status CheckLibraries() const;
  Status SplitRows();
  Status BuildMetadata();
  Status StandardiseTheta(SbiMetadata& md);
  Status InputStatistics(SbiMetadata& md);
  Inputs MakeInputs(const sim::LibraryData& lib, const std::vector<int64_t>& rows, uint64_t stream);
  // Networks and checkpoints.
  void BuildNetworks();
  Result<bool> TakeEncoderFrom();
  Status LoadCheckpoint();
  std::vector<nn::CheckpointGuard> Guards() const;
  void SaveCheckpoint(int stage, int64_t epochs_done, torch::optim::Optimizer* opt);
  // The two stages and the model file.
  Status TrainEncoder();
  torch::Tensor Summarise(const sim::LibraryData& lib, const std::vector<int64_t>& rows, uint64_t stream);
  Status TrainFlow();
  TrainResult Snapshot() const;
  Status WriteFinalModel(TrainResult& result);

  const TrainConfig& cfg_;
  const sim::LibraryData& lib_;
  const sim::LibraryData* flow_lib_;
  const sim::LibraryData& flib_;  ///< the flow's library: flow_lib_ or lib_
  const NoiseAugment* noise_;     ///< augmentation, or null
  const nn::ProgressFn& progress_;
  const volatile int* stop_flag_;
  const std::string ckpt_;

  SbiRows rows_;
  std::unique_ptr<SbiModel::Impl> impl_;  ///< the metadata (impl_->md), at the end the network
  std::vector<float> theta_std_;          ///< standardised parameters of rows 0..n-1 (n x dim)
  std::vector<float> spec_buf_, phot_buf_, snr_buf_;
  SbiNet net_{nullptr}, best_{nullptr};
  SbiState state_;
  bool resuming_ = false;                 ///< --resume and the checkpoint exists
  std::map<std::string, double> encoder_from_metrics_;
  nn::RunClock clock_;
  int64_t encoder_epochs_ = 0, flow_epochs_ = 0, n_flow_ = 0;
  bool interrupted_ = false;
};

// ---- preparation ----

Status SbiTraining::CheckLibraries() const {
  CUBEFLOW_RETURN_NOT_OK(nn::CheckLibraryShapes(lib_, "library " + cfg_.library, /*need_t_mass=*/true));
  if (noise_ && HasNoise(lib_))
    return Status::Error("augment_noise adds noise, but library " + cfg_.library + " already has noise (SNR > 0): use a "
                         "noise-free library (simulator config noise: {enabled: false}) or drop augment_noise");
  if (!flow_lib_) return Status::OK();
  CUBEFLOW_RETURN_NOT_OK(nn::CheckLibraryShapes(*flow_lib_, "flow library " + cfg_.flow_library, true));
  if (flow_lib_->wave.n != lib_.wave.n || std::abs(flow_lib_->wave.At(0) - lib_.wave.At(0)) > 1e-6 ||
      std::abs(flow_lib_->wave.cdelt - lib_.wave.cdelt) > 1e-9)
    return Status::Error("flow library " + cfg_.flow_library + " has another wavelength grid than " + cfg_.library +
                         ": simulate both with the same grid");
  if (cfg_.photometry && flow_lib_->bands != lib_.bands)
    return Status::Error("flow library " + cfg_.flow_library + " has other bands than " + cfg_.library +
                         ": simulate both with the same bands, or set photometry: false");
  if (noise_ && HasNoise(*flow_lib_))
    return Status::Error("augment_noise adds noise, but flow library " + cfg_.flow_library +
                         " already has noise: use a noise-free flow library or drop augment_noise");
  return Status::OK();
}

/// Step 1: train / validation / test rows; the encoder uses the first encoder_fraction of the
/// training rows, the flow the rest, all of them, or the flow library.
Status SbiTraining::SplitRows() {
  rows_.n = cfg_.max_rows > 0 ? std::min(cfg_.max_rows, lib_.n) : lib_.n;
  CUBEFLOW_ASSIGN_OR_RETURN(rows_.split, nn::SplitRows(rows_.n, cfg_.seed, cfg_.train_fraction, cfg_.val_fraction));
  const auto& train = rows_.split.train;
  const int64_t n_train = static_cast<int64_t>(train.size());
  const int64_t n_enc = std::clamp<int64_t>(std::llround(n_train * cfg_.encoder_fraction), 1, n_train);
  rows_.enc.assign(train.begin(), train.begin() + n_enc);
  if (flow_lib_) {
    rows_.flow = nn::AllRows(flow_lib_->n);
    rows_.flow_source = "all " + std::to_string(flow_lib_->n) + " rows of " + cfg_.flow_library;
  } else if (n_enc < n_train) {
    rows_.flow.assign(train.begin() + n_enc, train.end());
    rows_.flow_source = std::to_string(rows_.flow.size()) + " training rows not used by the encoder";
  } else {
    rows_.flow = train;
    rows_.flow_source = "the encoder's " + std::to_string(n_train) + " training rows";
  }
  if (noise_) rows_.flow_source += ", " + std::to_string(cfg_.flow_noise_draws) + " fresh noise realisation(s) each";
  return Status::OK();
}

/// Step 2: the metadata of the model: input conventions, architecture, the parameters and their
/// standardisation, the photometry and noise-level statistics.
Status SbiTraining::BuildMetadata() {
  SbiMetadata md;
  const bool use_phot = cfg_.photometry && !lib_.bands.empty();
  md.input = nn::LibraryConventions(lib_, use_phot);
  md.sigma_target = lib_.sigma_target;
  md.ssp_name = lib_.ssp_name;
  md.theta = DefaultTheta();
  for (auto& p : md.theta)
    if (p.unit == "Gyr") p.transform = cfg_.time_transform;
  md.lookback_offset = cfg_.lookback_offset;
  md.encoder = cfg_.encoder;
  md.encoder.nwave = lib_.wave.n;
  md.encoder.nbands = use_phot ? static_cast<int64_t>(lib_.bands.size()) : 0;
  md.encoder.noise_input = cfg_.noise_input;
  CUBEFLOW_RETURN_NOT_OK(md.encoder.Validate());
  md.flow = cfg_.flow;
  md.flow.dim = static_cast<int64_t>(md.theta.size());
  md.flow.permutation_seed = cfg_.seed;
  CUBEFLOW_RETURN_NOT_OK(StandardiseTheta(md));
  CUBEFLOW_RETURN_NOT_OK(InputStatistics(md));
  impl_ = std::make_unique<SbiModel::Impl>();
  impl_->md = md;
  return Status::OK();
}

/// The lookback reference (the universe's age, at least the latest T_MASS) and each parameter's
/// mean and standard deviation on the encoder rows; fills theta_std_.
Status SbiTraining::StandardiseTheta(SbiMetadata& md) {
  const int64_t n = rows_.n, D = md.flow.dim;
  const std::vector<float> theta_phys = TrueTheta(lib_, nn::AllRows(n), md.theta);
  double tmax = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < D; ++k)
      if (md.theta[k].unit == "Gyr" && std::isfinite(theta_phys[i * D + k]))
        tmax = std::max<double>(tmax, theta_phys[i * D + k]);
  const double tu = UniverseAge(lib_);
  md.lookback_reference = std::isfinite(tu) ? std::max(tu, tmax) : tmax;
  if (!std::isfinite(md.lookback_reference))
    return Status::Error("library " + cfg_.library + " has no finite T_MASS values: simulate it again");
  for (int64_t k = 0; k < D; ++k) {
    double s = 0, s2 = 0;
    int64_t c = 0;
    md.theta[k].mean = 0;
    md.theta[k].std = 1;
    for (int64_t i : rows_.enc) {
      const double v = theta_phys[i * D + k];
      if (!std::isfinite(v)) continue;
      const double u = md.FromPhysical(static_cast<int>(k), v);  // mean 0, std 1 so far: u itself
      s += u;
      s2 += u * u;
      ++c;
    }
    if (c < 2)
      return Status::Error("parameter " + md.theta[k].name +
                           " has fewer than 2 finite training values: use a larger library");
    md.theta[k].mean = s / c;
    md.theta[k].std = std::max(1e-6, std::sqrt(std::max(0.0, s2 / c - (s / c) * (s / c))));
  }
  theta_std_ = Standardise(md, theta_phys);
  return Status::OK();
}

/// The mean and standard deviation of log10 photometry and of log10 S/N on the encoder rows
/// (with augment_noise: of the noise drawn for them), the S/N range.
Status SbiTraining::InputStatistics(SbiMetadata& md) {
  const int64_t nb = md.encoder.nbands;
  const auto& enc = rows_.enc;
  std::vector<double> lphot(static_cast<size_t>(nb), 0.0), lphot2(static_cast<size_t>(nb), 0.0);
  double s = 0, s2 = 0, mn = std::numeric_limits<double>::infinity(), mx = -mn;
  int64_t c = 0;
  for (size_t f = 0; f < enc.size(); f += 1024) {
    std::vector<int64_t> sub(enc.begin() + f, enc.begin() + std::min(enc.size(), f + 1024));
    GatherSbiInputs(lib_, sub, nb, md.input.norm_min, md.input.norm_max, spec_buf_, phot_buf_, snr_buf_, noise_,
                    cfg_.seed, kEncStream);
    for (size_t r = 0; r < sub.size(); ++r) {
      for (int64_t b = 0; b < nb; ++b) {
        const double l = std::log10(
            std::max<double>(std::isfinite(phot_buf_[r * nb + b]) ? phot_buf_[r * nb + b] : 0.0, md.phot_floor));
        lphot[b] += l;
        lphot2[b] += l * l;
      }
      const double v = snr_buf_[r];
      if (!(v > 0)) continue;
      const double l = std::log10(v);
      s += l;
      s2 += l * l;
      mn = std::min(mn, v);
      mx = std::max(mx, v);
      ++c;
    }
  }
  if (cfg_.noise_input && c == 0)
    return Status::Error("noise_input: library " + cfg_.library + " has no noise (neither SPEC_ERR nor SNR) to take "
                         "the S/N from: use a noisy library, augment_noise, or noise_input: false");
  if (c > 0) {
    md.snr_log_mean = s / c;
    md.snr_log_std = std::max(0.05, std::sqrt(std::max(0.0, s2 / c - (s / c) * (s / c))));
    md.snr_min = mn;
    md.snr_max = mx;
  }
  const double m = static_cast<double>(enc.size());
  for (int64_t b = 0; b < nb; ++b) {
    md.phot_mean.push_back(lphot[b] / m);
    md.phot_std.push_back(std::max(1e-6, std::sqrt(std::max(0.0, lphot2[b] / m - std::pow(lphot[b] / m, 2)))));
  }
  return Status::OK();
}

/// Network inputs of library rows (noise drawn from `stream` when augmenting).
Inputs SbiTraining::MakeInputs(const sim::LibraryData& lib, const std::vector<int64_t>& rows, uint64_t stream) {
  const int64_t nw = md().encoder.nwave, nb = md().encoder.nbands;
  GatherSbiInputs(lib, rows, nb, md().input.norm_min, md().input.norm_max, spec_buf_, phot_buf_, snr_buf_, noise_,
                  cfg_.seed, stream);
  const int64_t c = static_cast<int64_t>(rows.size());
  Inputs in;
  in.spec = torch::from_blob(spec_buf_.data(), {c, nw}, torch::kFloat).clone();
  in.phot = nb > 0 ? impl_->TransformPhot(torch::from_blob(phot_buf_.data(), {c, nb}, torch::kFloat)).clone()
                   : torch::zeros({c, 0});
  in.noise = impl_->NoiseFeature(torch::from_blob(snr_buf_.data(), {c}, torch::kFloat)).clone();
  return in;
}

// ---- networks and checkpoints ----

/// Step 3: the networks, Glorot-uniform encoder weights seeded by the configuration.
void SbiTraining::BuildNetworks() {
  torch::manual_seed(cfg_.seed);
  net_ = SbiNet(md().encoder, md().flow);
  best_ = SbiNet(md().encoder, md().flow);
  cnn::GlorotInit(*net_->encoder);
  cnn::CopyModuleState(*net_, *best_);
}

/// Step 4 (encoder_from, not resuming): the encoder and head of a trained model, which must have
/// seen the same inputs and targets; training then starts with the flow. Returns whether taken.
Result<bool> SbiTraining::TakeEncoderFrom() {
  if (cfg_.encoder_from.empty() || resuming_) return false;
  const std::string& src = cfg_.encoder_from;
  auto smd = ReadMetadata(MetadataPath(src));
  if (!smd.ok()) return Status::Error("encoder_from: " + smd.status().message());
  const SbiMetadata& md = this->md();
  auto same = [](double x, double y) { return std::abs(x - y) <= 1e-6 * (1.0 + std::abs(x)); };
  std::string diff;
  if (!(smd->encoder == md.encoder))
    diff = "encoder architecture";
  else if (smd->theta.size() != md.theta.size())
    diff = "parameters";
  for (size_t k = 0; diff.empty() && k < md.theta.size(); ++k)
    if (smd->theta[k].name != md.theta[k].name || smd->theta[k].transform != md.theta[k].transform ||
        !same(smd->theta[k].mean, md.theta[k].mean) || !same(smd->theta[k].std, md.theta[k].std))
      diff = "standardisation of " + md.theta[k].name;
  for (size_t k = 0; diff.empty() && k < md.phot_mean.size(); ++k)
    if (k >= smd->phot_mean.size() || !same(smd->phot_mean[k], md.phot_mean[k]) ||
        !same(smd->phot_std[k], md.phot_std[k]))
      diff = "photometry standardisation";
  if (diff.empty() && (!same(smd->snr_log_mean, md.snr_log_mean) || !same(smd->snr_log_std, md.snr_log_std)))
    diff = "S/N standardisation";
  if (!diff.empty())
    return Status::Error("encoder_from: " + src + " differs from this configuration in its " + diff +
                         " (it must come from the same library, split, seed and encoder settings)");
  nn::CheckpointReader(src).Module("encoder", *net_->encoder);
  cnn::CopyModuleState(*net_->encoder, *best_->encoder);
  for (const char* k : {"encoder_best_val_logcosh", "encoder_best_epoch", "encoder_epochs_run"})
    if (smd->metrics.count(k)) encoder_from_metrics_[k] = smd->metrics.at(k);
  auto metric = [&](const char* k, double otherwise) {
    return encoder_from_metrics_.count(k) ? encoder_from_metrics_.at(k) : otherwise;
  };
  state_.enc_best_val = metric("encoder_best_val_logcosh", NAN);
  state_.enc_best_epoch = static_cast<int64_t>(metric("encoder_best_epoch", 0));
  state_.stage = 2;
  std::cerr << "cubeflow train: encoder taken from " << src << "; training the flow only\n";
  return true;
}

std::vector<nn::CheckpointGuard> SbiTraining::Guards() const {
  return {{"seed", "seed", static_cast<double>(cfg_.seed % (1ull << 52))},
          {"n_rows", "number of library rows", static_cast<double>(rows_.n)},
          {"nwave", "number of spectral pixels", static_cast<double>(md().encoder.nwave)},
          {"nbands", "number of bands", static_cast<double>(md().encoder.nbands)},
          {"n_flow_rows", "number of flow rows (flow library, encoder_fraction)",
           static_cast<double>(rows_.flow.size())}};
}

/// Step (--resume): the networks and the state of the checkpoint, refused when it belongs to
/// another run.
Status SbiTraining::LoadCheckpoint() {
  if (cfg_.resume && !resuming_)
    std::cerr << "cubeflow train: no checkpoint " << ckpt_ << " to resume from; starting from the beginning\n";
  if (!resuming_) return Status::OK();
  nn::CheckpointReader r(ckpt_);
  CUBEFLOW_RETURN_NOT_OK(nn::CheckGuards(r, Guards(), ckpt_));
  r.Module("model", *net_);
  r.Module("best_model", *best_);
  state_.has_optimizer = r.Scalar("has_optimizer") > 0;
  if (state_.has_optimizer) r.Archive("optimizer", state_.optimizer);
  state_.stage = static_cast<int>(r.Scalar("stage"));
  state_.epoch = static_cast<int64_t>(r.Scalar("epoch"));
  state_.plateau = nn::ReadPlateau(r);
  state_.seconds = r.Scalar("seconds");
  state_.enc_best_epoch = static_cast<int64_t>(r.Scalar("enc_best_epoch"));
  state_.enc_best_val = r.Scalar("enc_best_val");
  state_.encoder_train = r.Vector("encoder_train");
  state_.encoder_val = r.Vector("encoder_val");
  state_.flow_train = r.Vector("flow_train");
  state_.flow_val = r.Vector("flow_val");
  std::cerr << "cubeflow train: resuming from " << ckpt_ << " (" << (state_.stage == 1 ? "encoder" : "flow")
            << " stage, after epoch " << state_.epoch << ")\n";
  return Status::OK();
}

/// Step: the checkpoint after `epochs_done` epochs of `stage` (written atomically); `opt`, the
/// stage's optimiser, may be null (at the start of the flow stage).
void SbiTraining::SaveCheckpoint(int stage, int64_t epochs_done, torch::optim::Optimizer* opt) {
  nn::CheckpointWriter w;
  w.Module("model", *net_);
  w.Module("best_model", *best_);
  if (opt) w.Optimizer("optimizer", *opt);
  w.Scalar("stage", stage);
  w.Scalar("has_optimizer", opt ? 1.0 : 0.0);
  w.Scalar("epoch", static_cast<double>(epochs_done));
  nn::WritePlateau(w, state_.plateau);
  w.Scalar("seconds", clock_.Elapsed());
  w.Scalar("enc_best_epoch", static_cast<double>(state_.enc_best_epoch));
  w.Scalar("enc_best_val", state_.enc_best_val);
  nn::WriteGuards(w, Guards());
  w.Vector("encoder_train", state_.encoder_train);
  w.Vector("encoder_val", state_.encoder_val);
  w.Vector("flow_train", state_.flow_train);
  w.Vector("flow_val", state_.flow_val);
  w.Save(ckpt_);
}

// ---- stage 1: the encoder with the Log-Cosh head ----

Status SbiTraining::TrainEncoder() {
  const int64_t D = md().flow.dim;
  torch::optim::Adam opt(net_->encoder->parameters(), torch::optim::AdamOptions(cfg_.lr));
  if (state_.has_optimizer) opt.load(state_.optimizer);
  const torch::Tensor theta_std = torch::from_blob(theta_std_.data(), {rows_.n, D}, torch::kFloat);
  // Validation inputs: one fixed noise realisation.
  const auto& val_rows = rows_.split.val;
  std::vector<Inputs> val_in;
  for (size_t f = 0; f < val_rows.size(); f += 256) {
    std::vector<int64_t> sub(val_rows.begin() + f, val_rows.begin() + std::min(val_rows.size(), f + 256));
    val_in.push_back(MakeInputs(lib_, sub, kValStream));
  }
  nn::StageSteps steps;
  steps.train_epoch = [&](int64_t epoch, double lr) -> std::optional<double> {
    nn::SetLearningRate(opt, lr);
    net_->encoder->train();
    const std::vector<int64_t> order = nn::ShuffledRows(rows_.enc, cfg_.seed, epoch, 1);
    return nn::RunBatches(static_cast<int64_t>(order.size()), cfg_.batch_size, cfg_.batches_per_epoch, stop_flag_,
                          [&](size_t first, size_t count) {
                            std::vector<int64_t> sub(order.begin() + first, order.begin() + first + count);
                            auto in = MakeInputs(lib_, sub, kEncStream + 1 + static_cast<uint64_t>(epoch));
                            auto y = theta_std.index_select(0, nn::RowsTensor(sub, 0, count));
                            return nn::Step(opt, nn::LogCosh(net_->encoder->Head(net_->encoder->forward(
                                                                 in.spec, in.phot, in.noise)),
                                                             y));
                          });
  };
  steps.validate = [&] {
    torch::NoGradGuard guard;
    Encoder& enc = net_->encoder;
    enc->eval();
    double total = 0;
    int64_t count = 0;
    for (size_t ci = 0; ci < val_in.size(); ++ci) {
      const auto& in = val_in[ci];
      const int64_t c = in.spec.size(0);
      auto y = theta_std.index_select(0, nn::RowsTensor(val_rows, ci * 256, c));
      total += nn::LogCosh(enc->Head(enc->forward(in.spec, in.phot, in.noise)), y).item<double>() * c;
      count += c;
    }
    enc->train();
    return total / std::max<int64_t>(count, 1);
  };
  steps.keep_best = [&] { cnn::CopyModuleState(*net_->encoder, *best_->encoder); };
  steps.checkpoint = [&](int64_t epochs_done) {
    state_.enc_best_val = state_.plateau.best_val;
    state_.enc_best_epoch = state_.plateau.best_epoch;
    SaveCheckpoint(1, epochs_done, &opt);
  };
  const nn::StageOutcome out =
      nn::RunStage(nn::StageOptionsFrom(cfg_, "encoder"), state_.epoch, state_.plateau, state_.encoder_train,
                   state_.encoder_val, clock_, steps, progress_);
  encoder_epochs_ = out.epochs_run;
  interrupted_ = out.interrupted;
  if (interrupted_) return Status::OK();
  // Switch to the flow stage: a checkpoint at flow epoch 0 with fresh counters.
  state_.stage = 2;
  state_.epoch = 0;
  state_.plateau = nn::Plateau{};
  state_.has_optimizer = false;
  SaveCheckpoint(2, 0, nullptr);
  return Status::OK();
}

// ---- stage 2: the flow on the frozen best encoder's summaries ----

/// Summaries (and the S/N feature) of the best encoder for library rows.
torch::Tensor SbiTraining::Summarise(const sim::LibraryData& lib, const std::vector<int64_t>& rows, uint64_t stream) {
  torch::NoGradGuard guard;
  best_->encoder->eval();
  torch::Tensor out = torch::empty({static_cast<int64_t>(rows.size()), md().encoder.ContextDim()});
  for (size_t f = 0; f < rows.size(); f += 256) {
    const size_t c = std::min<size_t>(256, rows.size() - f);
    std::vector<int64_t> sub(rows.begin() + f, rows.begin() + f + c);
    auto in = MakeInputs(lib, sub, stream);
    auto s = best_->encoder->forward(in.spec, in.phot, in.noise);
    if (md().encoder.noise_input) s = torch::cat({s, in.noise}, 1);
    out.narrow(0, static_cast<int64_t>(f), static_cast<int64_t>(c)).copy_(s);
  }
  return out;
}

Status SbiTraining::TrainFlow() {
  const int64_t D = md().flow.dim;
  const auto& val_rows = rows_.split.val;
  // Targets and summaries: the flow rows (once per noise draw) and the validation rows, those with
  // all parameters finite.
  const int64_t draws = noise_ ? std::max<int64_t>(1, cfg_.flow_noise_draws) : 1;
  std::vector<float> ftheta1 = Standardise(md(), TrueTheta(flib_, rows_.flow, md().theta)), ftheta;
  for (int64_t d = 0; d < draws; ++d) ftheta.insert(ftheta.end(), ftheta1.begin(), ftheta1.end());
  std::vector<float> vtheta = Standardise(md(), TrueTheta(lib_, val_rows, md().theta));
  const auto fkeep = FiniteRows(ftheta, D), vkeep = FiniteRows(vtheta, D);
  if (fkeep.empty() || vkeep.empty())
    return Status::Error("no flow training or validation rows with finite parameters: check the library's T_MASS, "
                         "MASS_FRAC and ZH");
  n_flow_ = static_cast<int64_t>(fkeep.size());
  auto fkeep_t = nn::RowsTensor(fkeep, 0, fkeep.size()), vkeep_t = nn::RowsTensor(vkeep, 0, vkeep.size());
  std::vector<torch::Tensor> fparts;
  for (int64_t d = 0; d < draws; ++d) fparts.push_back(Summarise(flib_, rows_.flow, kFlowStream + d));
  const auto fsum = torch::cat(fparts, 0).index_select(0, fkeep_t);
  const auto vsum = Summarise(lib_, val_rows, kValStream).index_select(0, vkeep_t);
  const auto fy = torch::from_blob(ftheta.data(), {static_cast<int64_t>(ftheta.size()) / D, D}, torch::kFloat)
                      .index_select(0, fkeep_t);
  const auto vy = torch::from_blob(vtheta.data(), {static_cast<int64_t>(val_rows.size()), D}, torch::kFloat)
                      .index_select(0, vkeep_t);
  {
    torch::NoGradGuard guard;
    auto m = fsum.mean(0), s = fsum.std(0).clamp_min(1e-6);
    for (auto* f : {&net_->flow, &best_->flow}) {
      (*f)->ctx_mean.copy_(m);
      (*f)->ctx_std.copy_(s);
    }
  }
  torch::optim::Adam opt(net_->flow->parameters(), torch::optim::AdamOptions(cfg_.flow_lr));
  if (state_.has_optimizer) opt.load(state_.optimizer);
  const int64_t m = fsum.size(0);
  std::vector<float> jitter;
  nn::StageSteps steps;
  steps.train_epoch = [&](int64_t epoch, double lr) -> std::optional<double> {
    nn::SetLearningRate(opt, lr);
    const std::vector<int64_t> order = nn::ShuffledRows(nn::AllRows(m), cfg_.seed, epoch, 2);
    // Gaussian jitter of the standardised targets, annealed to 0 over the stage.
    sim::Rng jrng(cfg_.seed, static_cast<uint64_t>(epoch), kJitterStream);
    const double jitter_sd =
        cfg_.flow_jitter * (cfg_.flow_jitter_anneal ? 1.0 - static_cast<double>(epoch) / cfg_.flow_epochs : 1.0);
    return nn::RunBatches(m, cfg_.flow_batch_size, cfg_.flow_batches_per_epoch, stop_flag_,
                          [&](size_t first, size_t count) {
                            auto idx = nn::RowsTensor(order, first, count);
                            auto y = fy.index_select(0, idx);
                            if (jitter_sd > 0) {
                              jitter.resize(count * D);
                              for (auto& v : jitter) v = static_cast<float>(jitter_sd * jrng.Normal());
                              y = y + torch::from_blob(jitter.data(), {static_cast<int64_t>(count), D}, torch::kFloat);
                            }
                            return nn::Step(
                                opt, -net_->flow->LogProb(y, net_->flow->Embed(fsum.index_select(0, idx))).mean());
                          });
  };
  steps.validate = [&] {
    torch::NoGradGuard guard;
    Flow& fl = net_->flow;
    double total = 0;
    const int64_t mv = vsum.size(0);
    for (int64_t f = 0; f < mv; f += 1024) {
      const int64_t c = std::min<int64_t>(1024, mv - f);
      total += -fl->LogProb(vy.narrow(0, f, c), fl->Embed(vsum.narrow(0, f, c))).sum().item<double>();
    }
    return total / std::max<int64_t>(mv, 1);
  };
  steps.keep_best = [&] { cnn::CopyModuleState(*net_->flow, *best_->flow); };
  steps.checkpoint = [&](int64_t epochs_done) { SaveCheckpoint(2, epochs_done, &opt); };
  const nn::StageOutcome out = nn::RunStage(
      {"flow", cfg_.flow_epochs, cfg_.flow_lr, cfg_.lr_factor, cfg_.flow_lr_patience, cfg_.flow_stop_patience},
      state_.epoch, state_.plateau, state_.flow_train, state_.flow_val, clock_, steps, progress_);
  flow_epochs_ = out.epochs_run;
  interrupted_ = out.interrupted;
  return Status::OK();
}

// ---- the result and the model file ----

TrainResult SbiTraining::Snapshot() const {
  TrainResult r;
  r.encoder_epochs = encoder_epochs_;
  r.flow_epochs = flow_epochs_;
  r.encoder_best_epoch = state_.enc_best_epoch;
  r.encoder_best_val = state_.enc_best_val;
  if (state_.stage == 2) {
    r.flow_best_epoch = state_.plateau.best_epoch;
    r.flow_best_val = state_.plateau.best_val;
  }
  r.encoder_train = state_.encoder_train;
  r.encoder_val = state_.encoder_val;
  r.flow_train = state_.flow_train;
  r.flow_val = state_.flow_val;
  r.seconds = clock_.Elapsed();
  r.interrupted = interrupted_;
  return r;
}

/// Step: the best encoder and flow as the model, with test metrics (posterior calibration on the
/// test rows) and the metadata.
Status SbiTraining::WriteFinalModel(TrainResult& result) {
  best_->eval();
  impl_->net = best_;
  SbiModel model(std::move(impl_));
  const auto& test_rows = rows_.split.test;
  if (!test_rows.empty()) {
    auto cal = EvaluateCalibration(model, lib_, test_rows, cfg_.eval_samples, cfg_.seed, cfg_.threads, false, noise_);
    if (cal.ok()) {
      for (size_t k = 0; k < cal->names.size(); ++k) {
        const std::string& nm = cal->names[k];
        result.test_metrics["r2_" + nm] = cal->r2[k];
        result.test_metrics["scatter_" + nm] = cal->scatter[k];
        result.test_metrics["max_coverage_dev_" + nm] = cal->max_coverage_dev[k];
        // Coverage of the central 68 % interval, interpolated between the levels 0.6 and 0.7.
        result.test_metrics["coverage68_" + nm] = cal->coverage[k][5] + 0.8 * (cal->coverage[k][6] - cal->coverage[k][5]);
      }
      result.test_metrics["test_n"] = static_cast<double>(cal->n);
      result.test_metrics["test_samples_per_object"] = static_cast<double>(cfg_.eval_samples);
    } else {
      std::cerr << "cubeflow train: warning: test metrics failed: " << cal.status().message() << "\n";
    }
  }
  auto& mmd = model.mutable_metadata();
  mmd.metrics = result.test_metrics;
  mmd.metrics["encoder_best_val_logcosh"] = result.encoder_best_val;
  mmd.metrics["encoder_best_epoch"] = static_cast<double>(result.encoder_best_epoch);
  mmd.metrics["flow_best_val_nll"] = result.flow_best_val;
  mmd.metrics["flow_best_epoch"] = static_cast<double>(result.flow_best_epoch);
  mmd.metrics["encoder_epochs_run"] = static_cast<double>(result.encoder_epochs);
  if (!cfg_.encoder_from.empty()) {
    for (const auto& [k, v] : encoder_from_metrics_) mmd.metrics[k] = v;
    mmd.training["encoder_from"] = cfg_.encoder_from;
  }
  mmd.metrics["flow_epochs_run"] = static_cast<double>(result.flow_epochs);
  mmd.training["library"] = cfg_.library;
  if (flow_lib_) mmd.training["flow_library"] = cfg_.flow_library;
  mmd.training["n_library"] = std::to_string(lib_.n);
  mmd.training["n_used"] = std::to_string(rows_.n);
  mmd.training["n_train"] = std::to_string(rows_.split.train.size());
  mmd.training["n_encoder"] = std::to_string(rows_.enc.size());
  mmd.training["n_flow"] = std::to_string(n_flow_);
  mmd.training["flow_rows"] = rows_.flow_source;
  mmd.training["n_val"] = std::to_string(rows_.split.val.size());
  mmd.training["n_test"] = std::to_string(test_rows.size());
  if (noise_) {
    std::ostringstream a;
    for (size_t i = 0; i < noise_->snr.size(); ++i) a << (i ? ", " : "") << noise_->snr[i];
    mmd.training["snr_mix"] = "augmented: S/N drawn from {" + a.str() + "}, photometry S/N " +
                              std::to_string(noise_->phot_snr) + "; noise-free library";
  } else {
    mmd.training["snr_mix"] = nn::SnrMix(lib_);
  }
  mmd.training["seconds"] = std::to_string(result.seconds);
  mmd.training["time"] = nn::FormatDuration(result.seconds);
  mmd.training["threads"] = std::to_string(nn::Threads());
  for (const auto& [k, v] : lib_.meta) mmd.training["library_" + k] = v;
  mmd.config_yaml = cfg_.config_yaml;
  return model.Save(cfg_.output);
}

Result<TrainResult> SbiTraining::Run() {
  CUBEFLOW_RETURN_NOT_OK(CheckLibraries());
  try {
    nn::SetTrainingThreads(cfg_.threads);
    CUBEFLOW_RETURN_NOT_OK(SplitRows());
    CUBEFLOW_RETURN_NOT_OK(BuildMetadata());
    BuildNetworks();
    resuming_ = cfg_.resume && fs::exists(ckpt_);
    CUBEFLOW_ASSIGN_OR_RETURN(const bool took_encoder, TakeEncoderFrom());
    CUBEFLOW_RETURN_NOT_OK(LoadCheckpoint());
    clock_ = nn::RunClock(state_.seconds);
    if (took_encoder) SaveCheckpoint(2, 0, nullptr);  // resumable from the flow stage
    if (state_.stage == 1) {
      CUBEFLOW_RETURN_NOT_OK(TrainEncoder());
      if (interrupted_) return Snapshot();
    } else {
      encoder_epochs_ = static_cast<int64_t>(state_.encoder_train.size());
    }
    CUBEFLOW_RETURN_NOT_OK(TrainFlow());
    TrainResult result = Snapshot();
    if (result.interrupted) return result;
    CUBEFLOW_RETURN_NOT_OK(WriteFinalModel(result));
    return result;
  } catch (const std::exception& ex) {
    return Status::Error(std::string("SBI training failed: ") + ex.what());
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------

Result<TrainResult> Train(const TrainConfig& cfg, const sim::LibraryData& lib, const sim::LibraryData* flow_lib,
                          const std::function<void(const EpochReport&)>& progress, const volatile int* stop_flag) {
  return SbiTraining(cfg, lib, flow_lib, progress, stop_flag).Run();
}

// ---------------------------------------------------------------------------------------
// Command
// ---------------------------------------------------------------------------------------

int TrainMain(int argc, char** argv) {
  return nn::RunTrainCommand(
      argc, argv, "Trains an SBI model (kind: sbi) on a simulated library; keys are in docs/sbi.md.",
      [](const nn::TrainInvocation& inv) -> Result<nn::TrainJob> {
        CUBEFLOW_ASSIGN_OR_RETURN(TrainConfig cfg, ParseTrainConfig(inv.config_text, inv.config_path));
        inv.ApplyTo(cfg);
        CUBEFLOW_RETURN_NOT_OK(inv.RequireLibrary(cfg.library));
        for (std::string* p : {&cfg.library, &cfg.flow_library, &cfg.output, &cfg.checkpoint, &cfg.encoder_from})
          inv.Resolve(*p);
        nn::TrainJob job;
        job.library = cfg.library;
        job.max_rows = cfg.max_rows;
        job.photometry = cfg.photometry;
        job.kind_note = "SBI model; ";
        job.run = [cfg](const sim::LibraryData& lib, const nn::ProgressFn& progress,
                        const volatile int* stop_flag) -> Result<nn::TrainOutcome> {
          std::optional<sim::LibraryData> flow_lib;
          if (!cfg.flow_library.empty()) {
            std::cerr << "cubeflow train: reading the flow library " << cfg.flow_library << "\n";
            CUBEFLOW_ASSIGN_OR_RETURN(flow_lib, sim::ReadLibrary(cfg.flow_library));
          }
          CUBEFLOW_ASSIGN_OR_RETURN(TrainResult r, Train(cfg, lib, flow_lib ? &*flow_lib : nullptr, progress, stop_flag));
          nn::TrainOutcome out;
          out.interrupted = r.interrupted;
          std::ostringstream msg;
          if (r.interrupted) {
            msg << "interrupted; resume with --resume";
          } else {
            msg << "wrote " << cfg.output << " (+ " << MetadataPath(cfg.output) << "); encoder best epoch "
                << r.encoder_best_epoch << " (val Log-Cosh " << r.encoder_best_val << "), flow best epoch "
                << r.flow_best_epoch << " (val NLL " << r.flow_best_val << ")";
            out.test_metrics = r.test_metrics;
          }
          out.message = msg.str();
          return out;
        };
        return job;
      });
}

}  // namespace cubeflow::sbi
