#pragma once
/// \file sbi_train.hpp
/// \brief Training and calibration tests of the SBI model, and the `cubeflow train` /
/// `cubeflow evaluate` entry points for SBI models (docs/sbi.md).
///
/// Training has two stages, both with per-epoch progress, atomic checkpoints and exact resume:
/// 1. the encoder with a Log-Cosh regression head on the standardised parameters (paper sec.
///    2.2.1), best-validation weights kept;
/// 2. the flow on the frozen encoder's summaries by maximum likelihood (paper sec. 2.2.2), with
///    early stopping on the validation negative log-likelihood.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cubeflow/sim/library.hpp"
#include "cubeflow/status.hpp"
#include "cubeflow/nn/sbi.hpp"
#include "cubeflow/nn/training.hpp"

namespace cubeflow::sbi {

/// \brief Noise added to a noise-free library: the simulator's model (pixel sigma
/// sqrt(max(f, 1e-4)) / S/N with S/N drawn uniformly from `snr`; photometry |F| / phot_snr, none
/// if phot_snr <= 0). Disabled when `snr` is empty.
struct NoiseAugment {
  std::vector<double> snr;
  double phot_snr = 50;
  bool enabled() const { return !snr.empty(); }
};

/// \brief Training configuration (`cubeflow train` YAML with `kind: sbi`; same key names).
struct TrainConfig {
  std::string library;            ///< library FITS file
  std::string flow_library;       ///< optional second library: the flow trains on all its rows
  std::string output;             ///< model file (metadata beside it)
  std::string checkpoint;         ///< default: output + ".ckpt"
  /// Optional SBI model whose encoder (and regression head) is taken as trained: the encoder
  /// stage is skipped and only the flow is trained. Its metadata must match this configuration
  /// (same library, split and standardisation).
  std::string encoder_from;
  // stage 1: encoder
  int64_t epochs = 30;            ///< maximum encoder epochs
  int64_t batch_size = 128;
  double lr = 1e-3;
  double lr_factor = 0.8;
  int64_t lr_patience = 3;
  int64_t stop_patience = 8;
  int64_t batches_per_epoch = 0;  ///< 0: the whole training set per epoch
  // stage 2: flow
  int64_t flow_epochs = 300;
  int64_t flow_batch_size = 256;
  double flow_lr = 1e-3;
  int64_t flow_lr_patience = 5;
  int64_t flow_stop_patience = 20;
  int64_t flow_batches_per_epoch = 0;
  // data
  uint64_t seed = 42;
  /// libtorch's intra-op threads and OpenBLAS's pool (process-wide); 0: libtorch's default, and
  /// OpenBLAS gets as many. An exact resume needs the same number as the interrupted run.
  int threads = 0;
  int64_t max_rows = -1;
  double train_fraction = 0.8, val_fraction = 0.1;  ///< the rest is the test set
  /// Fraction of the training rows that train the encoder; the flow then trains on the others
  /// (summaries the encoder has not seen). 1: both train on all training rows (the paper).
  double encoder_fraction = 1.0;
  bool photometry = true;
  bool noise_input = true;
  /// Fresh noise for every encoder batch (and one fresh realisation per flow row and draw): for
  /// noise-free libraries (`noise: {enabled: false}` in the simulator configuration).
  NoiseAugment augment_noise;
  int64_t flow_noise_draws = 1;   ///< noise realisations per flow training row (with augment_noise)
  double flow_jitter = 0.05;      ///< std of Gaussian noise added to the standardised parameters in flow training
  bool flow_jitter_anneal = true; ///< the jitter falls linearly to 0 over flow_epochs (epoch e: jitter (1 - e / flow_epochs))
  std::string time_transform = "log_lookback";  ///< or "linear" (for t10..t90)
  double lookback_offset = 0.01;                ///< Gyr
  int64_t eval_samples = 500;     ///< posterior samples per test object for the final metrics
  bool resume = false;
  EncoderArch encoder;            ///< nwave / nbands / noise_input come from the data
  FlowArch flow;                  ///< dim comes from the parameters
  std::string config_yaml;        ///< verbatim, stored in the metadata
};

/// Parses a configuration; errors name the file and the key.
Result<TrainConfig> ParseTrainConfig(const std::string& yaml_text, const std::string& file_name);

/// One line of progress after each epoch of either stage (`stage`: "encoder" or "flow").
using EpochReport = nn::EpochReport;

struct TrainResult {
  int64_t encoder_epochs = 0, flow_epochs = 0;  ///< completed (including resumed ones)
  int64_t encoder_best_epoch = 0, flow_best_epoch = 0;
  double encoder_best_val = 0, flow_best_val = 0;
  std::vector<double> encoder_train, encoder_val, flow_train, flow_val;  ///< losses per epoch
  std::map<std::string, double> test_metrics;
  double seconds = 0;
  bool interrupted = false;
};

/// Trains on `lib` (and the flow on `flow_lib` when given) and saves config.output.
Result<TrainResult> Train(const TrainConfig& config, const sim::LibraryData& lib, const sim::LibraryData* flow_lib,
                          const std::function<void(const EpochReport&)>& progress = {},
                          const volatile int* stop_flag = nullptr);

/// Physical parameter values of library rows (row-major rows x dim) for `theta` (t10..t90 from
/// T_MASS, mh = mass-weighted mean of ZH). NaN where the library lacks them.
std::vector<float> TrueTheta(const sim::LibraryData& lib, const std::vector<int64_t>& rows,
                             const std::vector<ThetaParam>& theta);

/// Model inputs of library rows: spectra (NaN -> 1), photometry (f / norm), S/N (from SPEC_ERR as
/// inputs::NoiseSnrFromSigma, else the SNR label). With `noise`, noise is added first (row r
/// draws from its own generator seeded by (noise_seed, row, stream)) and the S/N is that of the
/// added noise (same estimator).
void GatherSbiInputs(const sim::LibraryData& lib, const std::vector<int64_t>& rows, int64_t nbands, double norm_min,
                     double norm_max, std::vector<float>& spectra, std::vector<float>& phot, std::vector<float>& snr,
                     const NoiseAugment* noise = nullptr, uint64_t noise_seed = 0, uint64_t stream = 0);

/// \brief Calibration and accuracy of a model on a set of objects with known parameters.
struct Calibration {
  std::vector<std::string> names, units;
  int64_t n = 0, n_samples = 0, rank_bins = 20;
  std::vector<double> levels;                    ///< nominal central credible levels
  std::vector<std::vector<double>> coverage;     ///< [param][level]: fraction of truths inside
  std::vector<std::vector<int64_t>> ranks;       ///< [param][rank bin]: SBC rank histogram
  std::vector<double> rank_chi2;                 ///< chi^2 of each histogram vs uniform (rank_bins - 1 dof)
  std::vector<double> r2, bias, scatter, width68;  ///< of the posterior medians; mean 16-84 % width
  /// 16-84 % range of the truths themselves: the width of the prior on these objects, against
  /// which width68 says how much the data narrowed it (a sampler returning the prior: ratio 1).
  std::vector<double> prior_width68;
  /// Skill of the posterior medians beside R^2: Spearman's rank correlation with the truths, and
  /// the standard deviation of the truths (the scatter of the best constant predictor).
  std::vector<double> spearman, constant_scatter;
  std::vector<double> max_coverage_dev;          ///< max |empirical - nominal| over levels 0.1..0.9
  double seconds = 0, samples_per_s = 0;         ///< sampling throughput (flow only)
  /// Per object (when requested): truth, median, p16, p84, [object][param].
  std::vector<std::vector<float>> truth, median, p16, p84;
};

/// Draws `n_samples` posterior samples for each row (seeded by (seed, row)) and computes SBC
/// ranks, coverage at levels 0.1..0.9 (+ 0.95, 0.99), R^2/bias/scatter of the medians. With
/// `noise`, noise is added to the library rows first (seeded by `seed`).
Result<Calibration> EvaluateCalibration(const SbiModel& model, const sim::LibraryData& lib,
                                        const std::vector<int64_t>& rows, int64_t n_samples, uint64_t seed,
                                        int threads = 0, bool keep_objects = false,
                                        const NoiseAugment* noise = nullptr);

/// Calibration from given samples (n x n_samples x dim) and truths (n x dim): for any posterior
/// sampler (used by the toy-problem tests).
Calibration CalibrationFromSamples(const std::vector<std::string>& names, const float* samples, const float* truth,
                                   int64_t n, int64_t n_samples, int64_t dim, bool keep_objects = false);

/// `cubeflow train CONFIG.yaml [--resume] [--threads N]` for configurations with `kind: sbi`.
int TrainMain(int argc, char** argv);
/// `cubeflow evaluate MODEL LIBRARY [--rows N] [--first N] [--samples N] [--seed S] [--threads N]
/// [--json FILE] [--csv FILE] [--objects FILE] [--out DIR]` for SBI models; --out writes tables
/// and PNG figures (coverage curves, SBC rank histograms, medians versus truth; docs/sbi.md).
int EvaluateMain(int argc, char** argv);

}  // namespace cubeflow::sbi
