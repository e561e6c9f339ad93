// Links `cubeflow train` / `cubeflow evaluate` into the CLI when libtorch is available: the
// CLI declares these entry points weak and reports "not available in this build" otherwise.
#include "cubeflow_torch/commands.hpp"

int TrainMain(int argc, char** argv) { return cubeflow::cnn::TrainMain(argc, argv); }
int EvaluateMain(int argc, char** argv) { return cubeflow::cnn::EvaluateMain(argc, argv); }
