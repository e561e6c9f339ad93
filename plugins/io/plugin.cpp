// The "io" plugin: io.read_cube, io.read_map (sources), io.write_maps and io.write_spectra (sinks).
#include "cubeflow/plugin.hpp"
#include "io_nodes.hpp"

namespace cubeflow::io {
namespace {
void RegisterNodes(Registry& r) {
  r.Add<ReadCubeNode>();
  r.Add<ReadMapNode>();
  r.Add<WriteMapsNode>();
  r.Add<WriteSpectraNode>();
}
}  // namespace
}  // namespace cubeflow::io

CUBEFLOW_PLUGIN(io, "0.1.0", cubeflow::io::RegisterNodes)
