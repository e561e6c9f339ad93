#pragma once
/// \file train.hpp
/// \brief Training of the CNN (Galceran et al. 2026, sec. 3.3-3.4) on an in-memory library.
///
/// Loss: 0.8 LogCosh(mass fractions) + 0.2 LogCosh([Z/H]); Adam, linear learning-rate decay
/// lr0 * (1 - epoch / epochs), times `lr_factor` after `lr_patience` epochs without validation
/// improvement; best-validation weights kept; early stop after `stop_patience` epochs.
/// A checkpoint (model, best model, optimizer, epoch, scheduler state) is written atomically
/// after every epoch and can be resumed; resuming gives the same result as an uninterrupted
/// run (the shuffles are derived from seed and epoch).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cubeflow/sim/library.hpp"
#include "cubeflow/status.hpp"
#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/training.hpp"

namespace cubeflow::cnn {

/// \brief Training configuration (YAML keys of `cubeflow train` have the same names).
struct TrainConfig {
  std::string library;         ///< library FITS file (TrainMain only)
  std::string output;          ///< final model file (metadata beside it)
  std::string checkpoint;      ///< default: output + ".ckpt"
  int64_t epochs = 250;        ///< maximum number of epochs
  int64_t batch_size = 128;
  double lr = 1e-4;
  double lr_factor = 0.8;
  int64_t lr_patience = 5;
  int64_t stop_patience = 20;
  double loss_weight_sfh = 0.8;  ///< the [Z/H] weight is 1 - this
  /// Weight of an extra Log-Cosh term on the V-light-weighted mean log age (eq. 6, dex), the
  /// light-to-mass ratios taken at each object's true per-bin [Z/H]; 0 = the paper's loss.
  double loss_weight_lw = 0;
  /// Start from the weights of this cubeflow model (same architecture and inputs) instead of
  /// Glorot initialisation: fine-tuning. Empty: train from scratch.
  std::string init_from;
  uint64_t seed = 42;
  /// libtorch's intra-op threads and OpenBLAS's pool (process-wide); 0: libtorch's default, and
  /// OpenBLAS gets as many. An exact resume needs the same number as the interrupted run.
  int threads = 0;
  int64_t max_rows = -1;       ///< use only the first rows of the library (-1: all)
  int64_t batches_per_epoch = 0;  ///< 0: whole training set per epoch (tests use a few)
  double train_fraction = 0.7, val_fraction = 0.2;  ///< the rest is the test set
  bool photometry = true;      ///< false: spectrum-only model (no photometric branch)
  /// Fresh noise for every batch (the simulator's noise model, S/N drawn from augment_snr);
  /// meant for a noise-free library (`noise: {enabled: false}`), to stop the network from
  /// memorising noise realisations.
  bool augment_noise = false;
  std::vector<double> augment_snr = {15, 20, 35, 50};
  double augment_phot_snr = 50;
  /// Random multiplicative continuum per spectrum and batch (issue #14 item 4: robustness to
  /// flux calibration and dust the prior does not cover): the spectrum is multiplied by
  /// 1 + sum_k c_k P_k(x), Legendre polynomials of degree 1..augment_continuum_degree in x in
  /// [-1, 1] over the model's wavelength range, c_k ~ N(0, augment_continuum_sigma), then
  /// renormalised to mean 1 in the normalisation window. Photometry is left as it is. 0: off.
  int augment_continuum_degree = 0;
  double augment_continuum_sigma = 0;
  bool resume = false;
  CnnArch arch;                ///< nwave and nbands are taken from the library
  std::string config_yaml;     ///< verbatim text, stored in the model metadata
};

/// Parses a training configuration; errors name the file and key.
Result<TrainConfig> ParseTrainConfig(const std::string& yaml_text, const std::string& file_name);

/// One line of progress, after each epoch (`stage` is empty: the CNN trains in one stage).
using EpochReport = nn::EpochReport;

/// \brief Result of a training run.
struct TrainResult {
  int64_t epochs_run = 0;      ///< completed epochs (including resumed ones)
  int64_t best_epoch = 0;
  double best_val = 0;
  std::vector<double> train_losses, val_losses;  ///< per epoch, this run and resumed ones
  std::map<std::string, double> test_metrics;
  double seconds = 0;
  bool interrupted = false;    ///< stopped by `stop_flag`; checkpoint written
};

/// \brief V-band light-to-mass table fitted from a library's mass and light fractions:
/// light_frac_ij / mass_frac_ij = LM_j(zh_ij) / C_i, solved by alternating least squares in
/// log space. Fills md.lm_zh_grid (n_grid nodes spanning the library's [Z/H]) and md.lm_v.
Status FitLightToMass(const sim::LibraryData& lib, CnnMetadata& md, int n_grid = 5);

/// Trains on `lib` and saves the best model to config.output (with metadata). `progress` is
/// called after each epoch (may be empty). `stop_flag`, if given, is polled between batches:
/// when it becomes nonzero the checkpoint is written and the run returns interrupted.
Result<TrainResult> Train(const TrainConfig& config, const sim::LibraryData& lib,
                          const std::function<void(const EpochReport&)>& progress = {},
                          const volatile int* stop_flag = nullptr);

/// \brief Metrics of a model on a library (rows with index in `rows`, or all if empty).
Result<std::map<std::string, double>> Evaluate(const CnnModel& model, const sim::LibraryData& lib,
                                               const std::vector<int64_t>& rows = {},
                                               int threads = 0);

/// True eq. 6-7 means of library row i: mass weights from MASS_FRAC, light weights from the
/// library's LIGHT_FRAC (lw_* NaN when the library has none); [Z/H] of empty bins counts as 0.
WeightedMeans TrueWeightedMeans(const CnnMetadata& md, const sim::LibraryData& lib, int64_t i);

/// A copy of library rows (all if `rows` is empty) with the simulator's noise added: per object an
/// S/N drawn from `snr` (pixel sigma sqrt(max(f, 1e-4)) / S/N), photometry |F| / phot_snr
/// (no photometric noise if phot_snr <= 0). Deterministic per (seed, source row).
sim::LibraryData NoisyCopy(const sim::LibraryData& lib, const std::vector<int64_t>& rows,
                           const std::vector<double>& snr, double phot_snr, uint64_t seed);

/// Builds the model inputs of library rows: spectra (rows x nwave) and photometry
/// (rows x nbands, or empty when the model has no bands).
void GatherInputs(const sim::LibraryData& lib, const std::vector<int64_t>& rows, int64_t nbands,
                  std::vector<float>& spectra, std::vector<float>& phot);

}  // namespace cubeflow::cnn
