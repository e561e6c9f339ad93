#include "cubeflow/loader.hpp"
#include "cubeflow/version.hpp"

#include <gtest/gtest.h>

#include <filesystem>

namespace cubeflow {
namespace {

const PluginReport* ReportFor(const PluginManager& pm, const std::string& stem) {
  for (const auto& r : pm.reports())
    if (std::filesystem::path(r.file).stem() == stem) return &r;
  return nullptr;
}

TEST(PluginLoader, LoadsGoodAndReportsBadOnesWithoutHidingOthers) {
  PluginManager pm;
  pm.LoadSearchPath({CUBEFLOW_FIXTURE_PLUGIN_DIR});
  const PluginReport* good = ReportFor(pm, "testkit");
  ASSERT_NE(good, nullptr);
  EXPECT_TRUE(good->ok) << good->error;
  EXPECT_EQ(good->name, "testkit");
  EXPECT_EQ(good->version, "1.2.3");
  EXPECT_EQ(good->node_count, 6u);
  EXPECT_NE(pm.registry().Find("testkit.scale"), nullptr);
  ASSERT_NE(pm.registry().OriginOf("testkit.scale"), nullptr);
  EXPECT_EQ(pm.registry().OriginOf("testkit.scale")->plugin, "testkit");

  const PluginReport* api = ReportFor(pm, "bad_api");
  ASSERT_NE(api, nullptr);
  EXPECT_FALSE(api->ok);
  EXPECT_NE(api->error.find("API version " + std::to_string(kPluginApiVersion + 99)), std::string::npos) << api->error;
  EXPECT_NE(api->error.find("rebuild"), std::string::npos) << api->error;

  const PluginReport* none = ReportFor(pm, "no_entry");
  ASSERT_NE(none, nullptr);
  EXPECT_FALSE(none->ok);
  EXPECT_NE(none->error.find("missing entry point 'cubeflow_plugin_info'"), std::string::npos) << none->error;

  const PluginReport* thr = ReportFor(pm, "throws");
  ASSERT_NE(thr, nullptr);
  EXPECT_FALSE(thr->ok);
  EXPECT_NE(thr->error.find("threw during registration: registration exploded on purpose"), std::string::npos)
      << thr->error;
  EXPECT_EQ(pm.Failures().size(), 3u);
}

TEST(PluginLoader, LoadByNameAndByPath) {
  PluginManager pm;
  pm.LoadSearchPath({CUBEFLOW_FIXTURE_PLUGIN_DIR});
  EXPECT_TRUE(pm.Load("testkit").ok());  // already loaded: fine
  Status missing = pm.Load("nonexistent_plugin");
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("not found in the plugin search path"), std::string::npos) << missing.message();
  Status bad_path = pm.Load("/no/such/dir/x.so");
  EXPECT_FALSE(bad_path.ok());
  EXPECT_NE(bad_path.message().find("/no/such/dir/x.so"), std::string::npos);
  // A name longer than the file system allows is not found, not an exception (found by fuzzing:
  // tests/fuzz/regressions/pipeline_yaml/plugin_name_too_long.yaml).
  Status too_long = pm.Load(std::string(5000, 'p'));
  EXPECT_FALSE(too_long.ok());
  EXPECT_NE(too_long.message().find("not found in the plugin search path"), std::string::npos) << too_long.message();
  Status too_long_path = pm.Load("/tmp/" + std::string(5000, 'p') + ".so");
  EXPECT_FALSE(too_long_path.ok());
  EXPECT_NE(too_long_path.message().find("not found"), std::string::npos) << too_long_path.message();

  PluginManager fresh;
  Status st = fresh.Load(std::string(CUBEFLOW_FIXTURE_PLUGIN_DIR) + "/testkit.so");
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_NE(fresh.registry().Find("testkit.collect"), nullptr);
  Status api = fresh.Load(std::string(CUBEFLOW_FIXTURE_PLUGIN_DIR) + "/bad_api.so");
  EXPECT_FALSE(api.ok());
  EXPECT_NE(api.message().find("bad_api.so"), std::string::npos) << api.message();
}

}  // namespace
}  // namespace cubeflow
