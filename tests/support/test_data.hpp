#pragma once
// Tests that read the real data in ../shared/data (beside the clone, or $CUBEFLOW_DATA_DIR).
//
//   if (!std::filesystem::exists(path)) CUBEFLOW_SKIP_WITHOUT_DATA() << "MUSE sub-cube not found: " << path;
//
// skips the test on a developer's machine without the data, but fails it in CI (CI=true), where
// the data must be there: a check that silently stops running is not a check.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace cftest {

/// True when running in CI (the environment variable CI is "true" or "1").
inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci && (std::string(ci) == "true" || std::string(ci) == "1");
}

}  // namespace cftest

/// GTEST_SKIP() outside CI; a fatal failure in CI. Stream the reason into it (it returns from
/// the test, as GTEST_SKIP does).
#define CUBEFLOW_SKIP_WITHOUT_DATA()                                                                   \
  return GTEST_MESSAGE_(cftest::InCi() ? "CI=true, but the real test data (../shared/data) is missing" \
                                       : "Skipped",                                                    \
                        cftest::InCi() ? ::testing::TestPartResult::kFatalFailure                      \
                                       : ::testing::TestPartResult::kSkip)
