#pragma once
/// \file plugin.hpp
/// \brief What a plugin shared library exports.
///
/// \code
///   void Register(cubeflow::Registry& r) { r.Add<MyNode>(); }
///   CUBEFLOW_PLUGIN(myplugin, "1.0.0", Register)
/// \endcode
/// expands to one `extern "C"` function, `cubeflow_plugin_info`, returning a PluginInfo. The
/// loader checks `api_version` against its own kPluginApiVersion before calling anything else.

#include "cubeflow/registry.hpp"
#include "cubeflow/version.hpp"

namespace cubeflow {

/// \brief Plain struct returned by a plugin's entry point. Layout is part of the ABI: the
/// first member is always the API version so that any loader can read it.
struct PluginInfo {
  int api_version;
  const char* name;
  const char* version;
  void (*register_nodes)(Registry&);
};

/// Name of the exported entry point.
inline constexpr const char* kPluginEntryPoint = "cubeflow_plugin_info";

}  // namespace cubeflow

#define CUBEFLOW_PLUGIN(plugin_name, plugin_version, register_fn)                              \
  extern "C" __attribute__((visibility("default"))) ::cubeflow::PluginInfo cubeflow_plugin_info() { \
    return ::cubeflow::PluginInfo{::cubeflow::kPluginApiVersion, #plugin_name, plugin_version,    \
                                  &register_fn};                                                \
  }
