#pragma once
// Tests that read the real data in ../shared/data (beside the clone, or $CUBEFLOW_DATA_DIR), or
// need a tool CI installs (scripts/install_deps.sh: python3 with astropy, numpy, torch).
//
//   if (!std::filesystem::exists(path)) CUBEFLOW_SKIP_WITHOUT_DATA() << "MUSE sub-cube not found: " << path;
//   if (!cftest::HaveAstropy()) CUBEFLOW_SKIP_WITHOUT("astropy") << "/usr/bin/python3 with astropy not available";
//   if (cftest::HaveData(path)) { ...the real file... } else { ...a synthetic stand-in... }
//
// skip the test (or fall back) on a developer's machine without them, but fail it in CI
// (CI=true), where they must be there: a check that silently stops running is not a check.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace cftest {

/// True when running in CI (the environment variable CI is "true" or "1").
inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci && (std::string(ci) == "true" || std::string(ci) == "1");
}

/// For a test that falls back to a synthetic input when the real data at `path` is missing:
/// true if it exists; false if not, and in CI also a (non-fatal) failure naming the path.
inline bool HaveData(const std::string& path) {
  if (std::filesystem::exists(path)) return true;
  if (InCi()) ADD_FAILURE() << "CI=true, but the real test data is missing: " << path;
  return false;
}

}  // namespace cftest

/// GTEST_SKIP() outside CI; a fatal failure in CI, where `what` (a string literal naming the
/// missing prerequisite) must be there. Stream the reason into it (it returns from the test, as
/// GTEST_SKIP does).
#define CUBEFLOW_SKIP_WITHOUT(what)                                                                       \
  return GTEST_MESSAGE_(cftest::InCi() ? "CI=true, but " what " is missing" : "Skipped",                 \
                        cftest::InCi() ? ::testing::TestPartResult::kFatalFailure                       \
                                       : ::testing::TestPartResult::kSkip)

/// CUBEFLOW_SKIP_WITHOUT for the real test data.
#define CUBEFLOW_SKIP_WITHOUT_DATA() CUBEFLOW_SKIP_WITHOUT("the real test data (../shared/data)")
