#pragma once
// Internal (not installed): the parts of CNN and SBI training that need no libtorch. The data
// split, the epoch loop of a stage with its learning-rate schedule, plateau decay, early stopping
// and progress reports, and the `cubeflow train` command around a training (arguments,
// configuration file, paths relative to it, Ctrl-C, messages). train.cpp (CNN) and
// sbi_train.cpp (SBI encoder and flow stages) supply the steps that do need libtorch.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cubeflow/nn/inputs.hpp"
#include "cubeflow/nn/training.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::nn {

// ---------------------------------------------------------------------------------------
// Messages and checks
// ---------------------------------------------------------------------------------------

/// h:mm:ss; "?" when `seconds` is negative or not finite.
std::string FormatDuration(double seconds);

/// The S/N of a library's objects: "20: 300, 50: 300" (count per rounded S/N), "continuous
/// 5-100" for more than 12 values, "unknown" without an SNR column.
std::string SnrMix(const sim::LibraryData& lib);

/// The line `cubeflow train` prints after an epoch ("[stage ]epoch 3/30  train ...").
std::string FormatEpochLine(const EpochReport& report);

/// Checks that the arrays of `lib` have n rows of the right width (spectra, mass fractions, [Z/H],
/// and when present photometry, light fractions, spectral errors; `need_t_mass`: T_MASS too).
/// `what` names the library in messages ("library lib.fits").
Status CheckLibraryShapes(const sim::LibraryData& lib, const std::string& what, bool need_t_mass);

/// The input conventions of a model trained on `lib`: its wavelength grid (rest frame), its
/// normalisation window and, with `photometry`, its bands and their pivots.
inputs::InputConventions LibraryConventions(const sim::LibraryData& lib, bool photometry);

/// Checks that a library can be evaluated with a model of `nwave` pixels and bands `model_bands`
/// (none: a spectrum-only model, any library bands).
Status CheckLibraryFitsModel(const sim::LibraryData& lib, int64_t nwave, const std::vector<std::string>& model_bands);

// ---------------------------------------------------------------------------------------
// Data split
// ---------------------------------------------------------------------------------------

/// 0, 1, ..., n - 1.
std::vector<int64_t> AllRows(int64_t n);

/// \brief Rows of a seeded train / validation / test split.
struct Split {
  std::vector<int64_t> train, val, test;
};

/// A permutation of rows 0..n-1 drawn from `seed` (std::mt19937_64), cut into
/// max(1, round(n * train_fraction)) training rows, max(1, round(n * val_fraction)) validation
/// rows and the rest for testing. Fails when the first two do not fit into n.
Result<Split> SplitRows(int64_t n, uint64_t seed, double train_fraction, double val_fraction);

// ---------------------------------------------------------------------------------------
// Epochs of a training stage
// ---------------------------------------------------------------------------------------

/// The generator that shuffles the rows in epoch `epoch` (0-based) of stage `stage` (0 when a
/// training has one stage): derived from the seed alone, so a resumed run shuffles as an
/// uninterrupted one.
std::mt19937_64 EpochRng(uint64_t seed, int64_t epoch, uint64_t stage = 0);

/// `rows` shuffled with EpochRng(seed, epoch, stage).
std::vector<int64_t> ShuffledRows(std::vector<int64_t> rows, uint64_t seed, int64_t epoch, uint64_t stage = 0);

/// One epoch's batches: calls `step(first, count)` for consecutive batches of `batch_size` of
/// `n` positions (at most `max_batches` when > 0); `step` trains on them and returns their mean
/// loss. Returns the mean loss per position, or nothing when `stop_flag` was raised before a batch.
std::optional<double> RunBatches(int64_t n, int64_t batch_size, int64_t max_batches, const volatile int* stop_flag,
                                 const std::function<double(size_t first, size_t count)>& step);

/// Learning rate of epoch `epoch` (0-based): lr0 * max(1 - epoch / epochs, 1e-3) * scale
/// (linear decay, times the plateau factor).
double ScheduledLr(double lr0, int64_t epoch, int64_t epochs, double scale);

/// \brief Best validation loss of a stage, with the counters of plateau decay and early stopping
/// (all of it is part of a checkpoint).
struct Plateau {
  int64_t best_epoch = 0;  ///< 1-based; 0: none yet
  int64_t since_best = 0;  ///< epochs since the best one
  int64_t since_lr = 0;    ///< epochs since the best one or the last decay
  double best_val = std::numeric_limits<double>::infinity();
  double lr_scale = 1.0;   ///< product of the decays so far

  /// Records the validation loss of epoch `epoch` (1-based). Returns true for a new best (the
  /// counters restart); else counts the epoch, and after `lr_patience` such epochs multiplies
  /// lr_scale by `lr_factor`.
  bool Update(double val, int64_t epoch, int64_t lr_patience, double lr_factor);
};

/// \brief Wall-clock time of a training run, including the seconds of the runs it resumes.
class RunClock {
 public:
  explicit RunClock(double prior_seconds = 0);
  /// Seconds since the first run started (prior runs' seconds plus this run's).
  double Elapsed() const;

 private:
  double prior_;
  std::chrono::steady_clock::time_point start_;
};

/// \brief Settings of one training stage.
struct StageOptions {
  std::string name;         ///< EpochReport::stage
  int64_t epochs = 1;       ///< maximum epochs
  double lr = 1e-3;         ///< initial learning rate (ScheduledLr)
  double lr_factor = 0.8;   ///< plateau decay factor
  int64_t lr_patience = 3;  ///< epochs without improvement before a decay
  int64_t stop_patience = 8;  ///< epochs without improvement before the stage stops
};

/// The settings of stage `name` from the fields of a training configuration with the same names
/// (epochs, lr, lr_factor, lr_patience, stop_patience): the CNN, the SBI encoder stage, the
/// diffusion prior and the DIGS NPE. (The SBI flow stage has flow_* fields of its own.)
template <typename Config>
StageOptions StageOptionsFrom(const Config& config, std::string name = "") {
  return {std::move(name), config.epochs, config.lr, config.lr_factor, config.lr_patience, config.stop_patience};
}

/// \brief The steps of one epoch, supplied by the network's training code.
struct StageSteps {
  /// Trains one epoch (0-based `epoch`) at learning rate `lr`; returns the mean training loss,
  /// or nothing when interrupted (the stop flag was raised).
  std::function<std::optional<double>(int64_t epoch, double lr)> train_epoch;
  /// Loss on the validation rows.
  std::function<double()> validate;
  /// Called when the epoch's validation loss is a new best: keep a copy of the weights.
  std::function<void()> keep_best;
  /// Writes a checkpoint after `epochs_done` epochs of the stage.
  std::function<void(int64_t epochs_done)> checkpoint;
};

/// \brief How a stage ended.
struct StageOutcome {
  int64_t epochs_run = 0;      ///< epochs completed, including those of resumed runs
  bool interrupted = false;    ///< stopped by the stop flag in the middle of an epoch
  bool stopped_early = false;  ///< no improvement for stop_patience epochs
};

/// Runs epochs `start_epoch` ... options.epochs - 1 of a stage: per epoch the scheduled learning
/// rate, one epoch of training, validation, the plateau update (and keep_best), a checkpoint and
/// a progress report; stops early after stop_patience epochs without improvement. Appends the
/// losses to `train_losses` / `val_losses`. An interrupted epoch is dropped (the checkpoint of
/// the last complete one stays).
StageOutcome RunStage(const StageOptions& options, int64_t start_epoch, Plateau& plateau,
                      std::vector<double>& train_losses, std::vector<double>& val_losses, const RunClock& clock,
                      const StageSteps& steps, const ProgressFn& progress);

// ---------------------------------------------------------------------------------------
// `cubeflow train CONFIG.yaml [--resume] [--threads N]`
// ---------------------------------------------------------------------------------------

/// \brief The command line and the configuration file of `cubeflow train`.
struct TrainInvocation {
  std::string config_path;
  std::string config_text;
  bool resume = false;   ///< --resume
  int threads = -1;      ///< --threads; <= 0: the configuration's
  std::filesystem::path base_dir;  ///< the configuration's directory

  /// Applies --resume and --threads to a training configuration.
  template <typename Config>
  void ApplyTo(Config& config) const {
    config.resume = resume;
    if (threads > 0) config.threads = threads;
  }
  /// A relative path of the configuration made relative to its directory (empty stays empty).
  void Resolve(std::string& path) const;
  /// Error when the configuration names no library.
  Status RequireLibrary(const std::string& library) const;
};

/// \brief How a training run ended, for the command's last lines.
struct TrainOutcome {
  bool interrupted = false;
  std::string message;                       ///< printed after "cubeflow train: "
  std::map<std::string, double> test_metrics;  ///< printed as "  test KEY = VALUE"
};

/// \brief A parsed configuration of one kind of model, ready to train.
struct TrainJob {
  std::string library;   ///< library FITS file (resolved); empty: none is read (`run` gets an empty one)
  int64_t max_rows = -1;
  bool photometry = true;
  std::string kind_note;  ///< e.g. "SBI model; " before the library's description
  /// Trains on the library (progress and stop flag from the command).
  std::function<Result<TrainOutcome>(const sim::LibraryData& lib, const ProgressFn& progress,
                                     const volatile int* stop_flag)>
      run;
};

/// `cubeflow train` for one kind of model: parses the arguments (usage: exit 2; --help prints
/// `help` after the usage: exit 0), reads the configuration file, asks `make_job` for the job,
/// reads the library, trains with Ctrl-C raising the stop flag and prints progress on stderr.
/// Returns the exit code: 0, 1 (error), 2 (usage) or 130 (interrupted, checkpoint written).
int RunTrainCommand(int argc, char** argv, const std::string& help,
                    const std::function<Result<TrainJob>(const TrainInvocation&)>& make_job);

}  // namespace cubeflow::nn
