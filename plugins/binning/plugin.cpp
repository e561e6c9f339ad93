// The "binning" plugin: spatial binning of cubes (binning.voronoi).
#include "cubeflow/plugin.hpp"
#include "voronoi_node.hpp"

namespace cubeflow::binning {
namespace {
void RegisterNodes(Registry& r) { r.Add<VoronoiNode>(); }
}  // namespace
}  // namespace cubeflow::binning

CUBEFLOW_PLUGIN(binning, "0.1.0", cubeflow::binning::RegisterNodes)
