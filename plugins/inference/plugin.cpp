// The "inference" plugin: neural inference of stellar populations per bin (inference.cnn,
// inference.sbi). The networks, model files and input checks are in libs/nn.
#include "cubeflow/plugin.hpp"
#include "cnn_node.hpp"
#include "sbi_node.hpp"

namespace cubeflow::inference {
namespace {
void RegisterNodes(Registry& r) {
  RegisterCnnNodes(r);
  RegisterSbiNodes(r);
}
}  // namespace
}  // namespace cubeflow::inference

CUBEFLOW_PLUGIN(inference, "0.2.0", cubeflow::inference::RegisterNodes)
