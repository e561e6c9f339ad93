#pragma once
// The fixture plugins (tests/fixture_plugins), loaded once per test process and kept loaded.
#include "cubeflow/loader.hpp"

namespace cubeflow::testing {

inline PluginManager& Fixtures() {
  static PluginManager* pm = [] {
    auto* p = new PluginManager();
    p->LoadSearchPath({CUBEFLOW_FIXTURE_PLUGIN_DIR});
    return p;
  }();
  return *pm;
}

}  // namespace cubeflow::testing
