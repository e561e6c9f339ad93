// A plugin that claims another plugin API version: the loader must reject it.
#include "cubeflow/plugin.hpp"

namespace {
void Register(cubeflow::Registry&) {}
}  // namespace

extern "C" __attribute__((visibility("default"))) cubeflow::PluginInfo cubeflow_plugin_info() {
  return cubeflow::PluginInfo{cubeflow::kPluginApiVersion + 99, "bad_api", "0.0.1", &Register};
}
