#pragma once
/// \file training.hpp
/// \brief What the CNN and SBI trainings share in their interface: the per-epoch progress report.
/// No libtorch here.

#include <cstdint>
#include <functional>
#include <string>

namespace cubeflow::nn {

/// \brief One line of progress, after each epoch of a training stage.
struct EpochReport {
  std::string stage;          ///< "encoder" or "flow" (SBI); empty for the CNN's single stage
  int64_t epoch = 0;          ///< 1-based, completed
  int64_t epochs = 0;         ///< maximum epochs of the stage
  double train_loss = 0, val_loss = 0, best_val = 0, lr = 0;
  int64_t best_epoch = 0;     ///< 1-based epoch of best_val
  double elapsed_s = 0;       ///< wall-clock seconds of the whole run, resumed runs included
  double eta_s = 0;           ///< estimated seconds to the stage's last epoch
  bool stopped_early = false; ///< this epoch ended the stage (no improvement for stop_patience epochs)
};

/// Called after each epoch (may be empty).
using ProgressFn = std::function<void(const EpochReport&)>;

}  // namespace cubeflow::nn
