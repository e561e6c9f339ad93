// The "kinematics" plugin: stellar kinematics of bin spectra (kinematics.fit).
#include "cubeflow/plugin.hpp"

namespace cubeflow::kinematics {
void RegisterFit(Registry& r);

namespace {
void RegisterNodes(Registry& r) { RegisterFit(r); }
}  // namespace
}  // namespace cubeflow::kinematics

CUBEFLOW_PLUGIN(kinematics, "0.1.0", cubeflow::kinematics::RegisterNodes)
