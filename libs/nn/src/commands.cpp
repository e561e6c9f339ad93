// `cubeflow train` / `cubeflow evaluate` (tools/cubeflow registers them when libs/nn is built).
// Dispatch: a training configuration with top-level `kind: sbi`, or a model whose metadata
// (<model>.yaml) says `kind: sbi`, goes to the SBI commands (docs/sbi.md); `kind: diffusion` to the
// diffusion prior's (docs/diffusion.md); everything else to
// the CNN's (docs/cnn.md).
#include <string>

#include "cubeflow/nn/commands.hpp"
#include "cubeflow/nn/diffusion.hpp"
#include "cubeflow/nn/diffusion_posterior.hpp"
#include "cubeflow/nn/digs_npe.hpp"
#include "cubeflow/nn/sbi.hpp"
#include "cubeflow/nn/sbi_train.hpp"

namespace {

/// First argument after the sub-command that is not an option (or an option's value).
std::string FirstPositional(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" || a == "--rows" || a == "--first" || a == "--csv" || a == "--json" || a == "--samples" ||
        a == "--seed" || a == "--objects" || a == "--add-noise" || a == "--phot-snr" || a == "--out" || a == "--snr" ||
        a == "--ablate" || a == "--steps" || a == "--corrector" || a == "--mcmc" || a == "--mcmc-steps" ||
        a == "--mcmc-thin") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] != '-') return a;
  }
  return "";
}

}  // namespace

namespace cubeflow::nn {

int TrainCommand(int argc, char** argv) {
  const std::string cfg = FirstPositional(argc, argv);
  if (!cfg.empty() && cubeflow::sbi::IsSbiMetadata(cfg)) return cubeflow::sbi::TrainMain(argc, argv);
  if (!cfg.empty() && cubeflow::diffusion::IsDiffusionYaml(cfg)) return cubeflow::diffusion::TrainMain(argc, argv);
  if (!cfg.empty() && cubeflow::digs::IsDigsYaml(cfg)) return cubeflow::digs::TrainMain(argc, argv);
  return cubeflow::cnn::TrainMain(argc, argv);
}

int EvaluateCommand(int argc, char** argv) {
  const std::string model = FirstPositional(argc, argv);
  if (!model.empty() && cubeflow::sbi::IsSbiMetadata(cubeflow::sbi::MetadataPath(model)))
    return cubeflow::sbi::EvaluateMain(argc, argv);
  if (!model.empty() && cubeflow::diffusion::IsDiffusionYaml(model + ".yaml")) {
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "--posterior") return cubeflow::diffusion::PosteriorEvaluateMain(argc, argv);
    return cubeflow::diffusion::EvaluateMain(argc, argv);
  }
  if (!model.empty() && cubeflow::digs::IsDigsYaml(cubeflow::sbi::MetadataPath(model)))
    return cubeflow::digs::EvaluateMain(argc, argv);
  return cubeflow::cnn::EvaluateMain(argc, argv);
}

}  // namespace cubeflow::nn
