// A plugin whose registration throws: the loader must report it and carry on.
#include "cubeflow/plugin.hpp"

namespace {
void Register(cubeflow::Registry&) { throw cubeflow::Error("registration exploded on purpose"); }
}  // namespace

CUBEFLOW_PLUGIN(throws, "0.0.1", Register)
