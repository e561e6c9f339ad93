// The "io" plugin: io.read_cube, io.read_map (sources) and io.write_maps (sink).
#include "cubeflow/plugin.hpp"
#include "io_nodes.hpp"

namespace cubeflow::io {
namespace {
void RegisterNodes(Registry& r) {
  r.Add<ReadCubeNode>();
  r.Add<ReadMapNode>();
  r.Add<WriteMapsNode>();
}
}  // namespace
}  // namespace cubeflow::io

CUBEFLOW_PLUGIN(io, "0.1.0", cubeflow::io::RegisterNodes)
