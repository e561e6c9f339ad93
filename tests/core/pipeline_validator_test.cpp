#include "cubeflow/pipeline.hpp"

#include <gtest/gtest.h>

#include "fixtures.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace cubeflow {
namespace {

namespace fs = std::filesystem;

using testing::Fixtures;

std::string Render(const std::vector<Diagnostic>& diags) {
  std::string s;
  for (const auto& d : diags) s += d.Format() + "\n";
  return s;
}

// Every file in tests/pipelines/invalid states the errors it must produce, one
// "# expect-error: [LINE:COL: ]message" line each; all must appear, in one validation pass.
class InvalidPipeline : public ::testing::TestWithParam<std::string> {};

TEST_P(InvalidPipeline, ReportsEveryExpectedError) {
  const std::string path = GetParam();
  std::ifstream in(path);
  std::vector<std::string> expected;
  std::string line;
  while (std::getline(in, line)) {
    const std::string tag = "# expect-error: ";
    if (line.rfind(tag, 0) == 0) expected.push_back(line.substr(tag.size()));
  }
  ASSERT_FALSE(expected.empty()) << path << " has no '# expect-error:' line";
  std::vector<Diagnostic> diags;
  auto pl = LoadPipeline(path, {}, Fixtures(), diags);
  EXPECT_FALSE(pl.has_value());
  const std::string all = Render(diags);
  for (const auto& e : expected) {
    // "LINE:COL: message" -> "path:LINE:COL: error: message"
    std::string want = e;
    auto c1 = e.find(':');
    auto c2 = c1 == std::string::npos ? c1 : e.find(':', c1 + 1);
    bool has_pos = c2 != std::string::npos && std::all_of(e.begin(), e.begin() + c1, ::isdigit) && c1 > 0;
    if (has_pos) want = path + ":" + e.substr(0, c2) + ": error: " + e.substr(c2 + 2);
    EXPECT_NE(all.find(want), std::string::npos) << "expected:\n  " << want << "\ngot:\n" << all;
  }
}

std::vector<std::string> InvalidFiles() {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(CUBEFLOW_INVALID_PIPELINE_DIR))
    if (e.path().extension() == ".yaml") v.push_back(e.path().string());
  std::sort(v.begin(), v.end());
  return v;
}

INSTANTIATE_TEST_SUITE_P(Files, InvalidPipeline, ::testing::ValuesIn(InvalidFiles()),
                         [](const auto& info) { return fs::path(info.param).stem().string(); });

TEST(PipelineValidator, AcceptsAValidPipelineAndSortsTopologically) {
  const char* yaml = R"(
cubeflow: 1
nodes:
  out: {type: testkit.collect, path: result.txt}
  sc: {type: testkit.scale, factor: 3}
  src: {type: testkit.numbers, count: 5}
edges:
  - sc.out -> out.in
  - src.items -> sc.in
)";
  std::vector<Diagnostic> diags;
  auto pl = LoadPipelineFromString(yaml, "mem.yaml", "/base", {}, Fixtures(), diags);
  ASSERT_TRUE(pl.has_value()) << Render(diags);
  ASSERT_EQ(pl->nodes.size(), 3u);
  EXPECT_EQ(pl->nodes[0].name, "src");
  EXPECT_EQ(pl->nodes[1].name, "sc");
  EXPECT_EQ(pl->nodes[2].name, "out");
  EXPECT_DOUBLE_EQ(pl->FindNode("sc")->params.GetDouble("factor"), 3.0);
  EXPECT_EQ(pl->FindNode("src")->params.GetInt("fail_at"), -1);  // default filled in
  EXPECT_EQ(pl->FindNode("out")->params.GetString("path"), "/base/result.txt");  // relative to the file
}

TEST(PipelineValidator, SetOverridesParametersAndIsValidated) {
  const char* yaml = R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 5}
  out: {type: testkit.collect, path: /tmp/x.txt}
edges: [src.items -> out.in]
)";
  std::vector<Diagnostic> diags;
  auto pl = LoadPipelineFromString(yaml, "mem.yaml", "/base", {"src.count=42", "src.mode=slow"}, Fixtures(), diags);
  ASSERT_TRUE(pl.has_value()) << Render(diags);
  EXPECT_EQ(pl->FindNode("src")->params.GetInt("count"), 42);
  EXPECT_EQ(pl->FindNode("src")->params.GetString("mode"), "slow");

  diags.clear();
  pl = LoadPipelineFromString(yaml, "mem.yaml", "/base", {"src.count=-3", "scr.count=1", "src.cont=2"}, Fixtures(),
                              diags);
  EXPECT_FALSE(pl.has_value());
  const std::string all = Render(diags);
  EXPECT_NE(all.find("--set src.count=-3: error: nodes.src.count: must be >= 0, got -3"), std::string::npos) << all;
  EXPECT_NE(all.find("no node named 'scr' in mem.yaml; did you mean 'src'?"), std::string::npos) << all;
  EXPECT_NE(all.find("unknown parameter 'cont' for testkit.numbers; did you mean 'count'?"), std::string::npos) << all;
  EXPECT_NE(all.find("parameters: count (int, default 10)"), std::string::npos) << all;
}

TEST(PipelineValidator, ExpandsEnvironmentVariablesInPaths) {
  setenv("CUBEFLOW_TEST_DIR_X", "/data/here", 1);
  const char* yaml = R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers}
  out: {type: testkit.collect, path: "${CUBEFLOW_TEST_DIR_X}/a.txt"}
  out2: {type: testkit.collect, path: "${CUBEFLOW_UNSET_VAR_Y:-/fallback}/b.txt"}
edges: [src.items -> out.in, src.items -> out2.in]
)";
  std::vector<Diagnostic> diags;
  auto pl = LoadPipelineFromString(yaml, "mem.yaml", "/base", {}, Fixtures(), diags);
  ASSERT_TRUE(pl.has_value()) << Render(diags);
  EXPECT_EQ(pl->FindNode("out")->params.GetString("path"), "/data/here/a.txt");
  EXPECT_EQ(pl->FindNode("out2")->params.GetString("path"), "/fallback/b.txt");
}

TEST(PipelineValidator, MissingFileAndMissingPlugin) {
  std::vector<Diagnostic> diags;
  PluginManager pm;
  EXPECT_FALSE(LoadPipeline("/no/such/pipeline.yaml", {}, pm, diags).has_value());
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_NE(diags[0].Format().find("/no/such/pipeline.yaml: error: cannot open"), std::string::npos);
  diags.clear();
  auto pl = LoadPipelineFromString("cubeflow: 1\nplugins: [not_a_plugin]\nnodes: {a: {type: x.y}}\n", "p.yaml", "/b", {},
                                   pm, diags);
  EXPECT_FALSE(pl.has_value());
  const std::string all = Render(diags);
  EXPECT_NE(all.find("p.yaml:2:11: error: plugin 'not_a_plugin' not found"), std::string::npos) << all;
  EXPECT_NE(all.find("unknown node type 'x.y'"), std::string::npos) << all;
}

}  // namespace
}  // namespace cubeflow
