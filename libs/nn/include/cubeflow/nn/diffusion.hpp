#pragma once
/// \file diffusion.hpp
/// \brief The score-based diffusion prior over the history vector (issue #19 item 1,
/// docs/diffusion.md): a noise-conditional score network for the variance-exploding SDE, its
/// training (`cubeflow train` with `kind: diffusion`), the model file and its metadata, and
/// sampling with a predictor-corrector sampler. No libtorch in this header.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/nn/history.hpp"
#include "cubeflow/nn/training.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::diffusion {

/// \brief Architecture of the score network: x (z-scored, 32) -> Linear(hidden), `blocks`
/// residual blocks (SiLU, Linear, + sigma embedding, SiLU, Linear), SiLU, Linear(32) = F. With
/// the preconditioning of Karras et al. (2022) for unit-variance data, the score is
/// -x / (1 + sigma^2) + F(x / sqrt(1 + sigma^2), sigma) / (sigma sqrt(1 + sigma^2)): an untrained
/// network is close to a standard normal in z-scored units. The noise level enters as Gaussian Fourier features of log(sigma) (`embed` of them,
/// scale 16, fixed random frequencies as Song et al. 2021), mapped by a 2-layer MLP.
struct ScoreArch {
  int64_t hidden = 192;
  int64_t blocks = 3;
  int64_t embed = 64;
};

/// \brief Training configuration (`kind: diffusion`; YAML keys have the same names).
struct TrainConfig {
  std::string output;           ///< the model file (metadata beside it, output + ".yaml")
  std::string checkpoint;       ///< default output + ".ckpt"
  /// Simulator config (SimConfig YAML) whose `sfh` prior gives the training histories; empty: the
  /// built-in recipe (sim::SimConfig defaults).
  std::string library_config;
  int64_t n = 100000;           ///< histories drawn (DrawPriorHistory 0..n-1 with `seed`)
  uint64_t seed = 42;           ///< of the training set, the split, the network and the noise
  int64_t epochs = 100;
  int64_t batch_size = 512;
  double lr = 1e-3;
  double lr_factor = 0.7;
  int64_t lr_patience = 4;
  int64_t stop_patience = 15;
  int64_t batches_per_epoch = 0;  ///< 0: the whole training set
  double val_fraction = 0.1;
  double sigma_min = 0.01;      ///< smallest noise level (z-scored units)
  double sigma_max = 0;         ///< 0: the largest pairwise distance of the training set
  /// `mass_scaling`: "all" z-scores every component over all rows; "nonempty" takes the log10
  /// masses' mean and sd from the non-empty bins only (HistoryScaler::Fit).
  bool scale_mass_by_nonempty = false;
  int threads = 0;
  bool resume = false;
  ScoreArch arch;
  std::string config_yaml;      ///< verbatim text, kept in the metadata
};

/// Parses a `kind: diffusion` training configuration; errors name the file and key.
Result<TrainConfig> ParseTrainConfig(const std::string& yaml_text, const std::string& file_name);

/// \brief Result of a training run.
struct TrainResult {
  int64_t epochs_run = 0, best_epoch = 0;
  double best_val = 0, seconds = 0, sigma_max = 0;
  std::vector<double> train_losses, val_losses;
  bool interrupted = false;
};

/// Draws the training set, trains, writes config.output (+ metadata). Progress after each epoch;
/// `stop_flag` polled between batches (checkpoint kept, resumable with config.resume).
Result<TrainResult> Train(const TrainConfig& config, const nn::ProgressFn& progress = {},
                          const volatile int* stop_flag = nullptr);

/// \brief Settings of the predictor-corrector sampler (reverse-diffusion predictor, Langevin
/// corrector, Song et al. 2021 Algorithm 2 for the VE SDE) over `steps` noise levels spaced
/// geometrically from sigma_max to sigma_min, then one denoising step (Tweedie's formula).
struct SamplerOptions {
  int64_t steps = 300;
  int64_t corrector_steps = 1;
  double snr = 0.16;            ///< signal-to-noise ratio of the Langevin corrector
  uint64_t seed = 1;
  int threads = 0;
};

/// \brief A trained prior (model file + metadata).
class PriorModel {
 public:
  static Result<PriorModel> Load(const std::string& path);
  /// A network with freshly initialised weights (seeded) and the given scaler and sigma range:
  /// the untrained baseline of the tests.
  static PriorModel Untrained(const ScoreArch& arch, const HistoryScaler& scaler, double sigma_min, double sigma_max,
                              uint64_t seed);
  PriorModel(PriorModel&&) noexcept;
  PriorModel& operator=(PriorModel&&) noexcept;
  ~PriorModel();

  /// `n` samples of the prior (restored to physical units; log10 masses at or below
  /// kLogMassFloor + 0.5 are set to the floor: such bins are empty, see docs/diffusion.md).
  Result<std::vector<History>> Sample(int64_t n, const SamplerOptions& options) const;
  /// The score of the z-scored vector at noise level sigma (rows of kHistoryDim).
  std::vector<double> Score(const std::vector<double>& z, double sigma) const;

  const HistoryScaler& scaler() const;
  double sigma_min() const;
  double sigma_max() const;
  /// The simulator config (YAML) of the training set, for fresh reference draws.
  const std::string& library_config() const;
  uint64_t training_seed() const;
  std::map<std::string, std::string> training() const;

 private:
  struct Impl;
  explicit PriorModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// True if the file at `path` is a YAML mapping with `kind: diffusion` (a training config or a
/// model's metadata).
bool IsDiffusionYaml(const std::string& path);

/// `cubeflow train CONFIG.yaml` for `kind: diffusion`.
int TrainMain(int argc, char** argv);
/// `cubeflow evaluate PRIOR.pt [--samples N] [--seed S] [--steps K] [--threads N]`: prints the
/// ComparePriorSamples figures of N prior samples against N fresh draws of the training prior
/// (seed S, default training seed + 1000: not used in training).
int EvaluateMain(int argc, char** argv);

}  // namespace cubeflow::diffusion
