#pragma once
// Building nodes in tests as the registry builds them (cubeflow::testing::MakeNode: parameters
// over the spec's defaults, options bound, checks run), keeping the node's own type for tests
// that call its extra members (Finish, received(), Assemble(), ...).
#include <map>
#include <memory>
#include <string>

#include "cubeflow/testing/fake_context.hpp"

namespace cftest {

/// Node type T built by testing::MakeNode<T>(given), as a T.
template <typename T>
std::unique_ptr<T> MakeTypedNode(const std::map<std::string, cubeflow::Value>& given = {}) {
  return std::unique_ptr<T>(static_cast<T*>(cubeflow::testing::MakeNode<T>(given).release()));
}

/// The message of the cubeflow::Error that building node type T with `given` throws ("" if
/// it builds).
template <typename T>
std::string BuildError(const std::map<std::string, cubeflow::Value>& given) {
  try {
    cubeflow::testing::MakeNode<T>(given);
  } catch (const cubeflow::Error& e) {
    return e.what();
  }
  return "";
}

/// The same for a spec that has its factory (node types registered by a function).
inline std::string BuildError(const cubeflow::NodeSpec& spec, const std::map<std::string, cubeflow::Value>& given) {
  try {
    cubeflow::testing::MakeNode(spec, given);
  } catch (const cubeflow::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace cftest
