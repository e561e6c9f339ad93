// The "photometry" plugin: photometry.hst_match (HST images -> per-bin flux densities).
#include "cubeflow/plugin.hpp"
#include "hst_match.hpp"

namespace cubeflow::photometry {
namespace {
void RegisterNodes(Registry& r) { r.Add<HstMatchNode>(); }
}  // namespace
}  // namespace cubeflow::photometry

CUBEFLOW_PLUGIN(photometry, "0.1.0", cubeflow::photometry::RegisterNodes)
