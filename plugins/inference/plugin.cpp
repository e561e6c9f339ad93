// The "inference" plugin: neural inference of stellar populations per bin (inference.cnn,
// inference.sbi, inference.diffusion) and the stellar mass it implies (inference.stellar_mass).
// The networks, model files and input checks are in libs/nn; the mass physics in libs/sim.
#include "cubeflow/plugin.hpp"
#include "cnn_node.hpp"
#include "diffusion_node.hpp"
#include "sbi_node.hpp"
#include "stellar_mass_node.hpp"

namespace cubeflow::inference {
namespace {
void RegisterNodes(Registry& r) {
  RegisterCnnNodes(r);
  RegisterSbiNodes(r);
  RegisterDiffusionNodes(r);
  RegisterStellarMassNodes(r);
}
}  // namespace
}  // namespace cubeflow::inference

CUBEFLOW_PLUGIN(inference, "0.2.0", cubeflow::inference::RegisterNodes)
