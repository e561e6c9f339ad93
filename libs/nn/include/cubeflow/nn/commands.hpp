#pragma once
/// \file commands.hpp
/// \brief Entry points of `cubeflow train` and `cubeflow evaluate` (the CLI forwards its
/// arguments after the sub-command name: argv[0] is the sub-command, e.g. "train").

namespace cubeflow::cnn {

/// `cubeflow train CONFIG.yaml [--resume] [--threads N]`: trains the CNN on a simulated
/// library as configured (docs/cnn.md lists the keys). Progress on stderr. Returns the exit
/// code (0 ok, 1 error, 2 usage, 130 interrupted after writing a checkpoint).
int TrainMain(int argc, char** argv);

/// `cubeflow evaluate MODEL LIBRARY [--rows N] [--first N] [--threads N] [--csv OUT]`: runs a
/// model on a library and prints metrics (log-cosh loss, MAE, eq. 6-7 bias and scatter,
/// throughput); --csv writes per-object true/predicted means; --out DIR writes CSV tables and
/// PNG figures (Figs. 4, 5 and, with --snr, 8 of the paper; docs/cnn.md).
int EvaluateMain(int argc, char** argv);

}  // namespace cubeflow::cnn

namespace cubeflow::nn {

/// `cubeflow train CONFIG.yaml ...`: a configuration with top-level `kind: sbi` goes to
/// sbi::TrainMain (docs/sbi.md), `kind: diffusion` to diffusion::TrainMain (docs/diffusion.md),
/// any other to cnn::TrainMain (docs/cnn.md).
int TrainCommand(int argc, char** argv);

/// `cubeflow evaluate MODEL LIBRARY ...`: a model whose metadata says `kind: sbi` goes to
/// sbi::EvaluateMain, `kind: diffusion` to diffusion::EvaluateMain (`cubeflow evaluate PRIOR.pt`,
/// no library), any other to cnn::EvaluateMain.
int EvaluateCommand(int argc, char** argv);

}  // namespace cubeflow::nn
