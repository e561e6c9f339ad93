// Placeholder until spectral.restframe lands (being written); registers nothing.
#include "cubeflow/registry.hpp"
namespace cubeflow::spectral {
void RegisterRestframe(Registry&) {}
}  // namespace cubeflow::spectral
