// The "custom" plugin: its entry point. Each node lives in its own file (node.hpp + node.cpp)
// and is registered here; node types are named "custom.<node>" after the plugin.
#include <cubeflow/plugin.hpp>

#include "continuum_norm.hpp"
#include "line_index.hpp"
#include "snr_mask.hpp"

namespace custom {
namespace {

void RegisterNodes(cubeflow::Registry& r) {
  r.Add<SnrMaskNode>();        // once per run: S/N map -> mask map
  r.Add<LineIndexNode>();      // per bin: spectrum -> record (index and error)
  r.Add<ContinuumNormNode>();  // per batch of bins: spectra -> normalised spectra
}

}  // namespace
}  // namespace custom

CUBEFLOW_PLUGIN(custom, "1.1.0", custom::RegisterNodes)
