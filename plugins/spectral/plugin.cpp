// The "spectral" plugin: per-spaxel and per-bin spectral operations.
#include "cubeflow/plugin.hpp"

namespace cubeflow::spectral {
void RegisterSnrMap(Registry& r);
void RegisterRestframe(Registry& r);

namespace {
void RegisterNodes(Registry& r) {
  RegisterSnrMap(r);
  RegisterRestframe(r);
}
}  // namespace
}  // namespace cubeflow::spectral

CUBEFLOW_PLUGIN(spectral, "0.1.0", cubeflow::spectral::RegisterNodes)
