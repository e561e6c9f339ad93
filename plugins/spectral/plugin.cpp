// The "spectral" plugin: per-spaxel and per-bin spectral operations.
#include "cubeflow/plugin.hpp"
#include "spectral_nodes.hpp"

namespace cubeflow::spectral {
namespace {
void RegisterNodes(Registry& r) {
  RegisterSnrMap(r);
  RegisterRestframe(r);
}
}  // namespace
}  // namespace cubeflow::spectral

CUBEFLOW_PLUGIN(spectral, "0.1.0", cubeflow::spectral::RegisterNodes)
