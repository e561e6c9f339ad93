#include "cubeflow/pipeline.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixtures.hpp"

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

// A --set on a node whose type is unknown (e.g. its plugin failed to load) is reported through
// that node's type error only, not as "no node named 'out' ...; did you mean 'out'?".
TEST(PipelineValidator, SetOnANodeOfUnknownTypeReportsTheTypeNotAMissingNode) {
  const char* yaml = R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 5}
  out: {type: testkit.not_loaded, path: /tmp/x.txt}
edges: [src.items -> out.in]
)";
  std::vector<Diagnostic> diags;
  auto pl = LoadPipelineFromString(yaml, "mem.yaml", "/base", {"out.path=/tmp/y.txt"}, Fixtures(), diags);
  EXPECT_FALSE(pl.has_value());
  const std::string all = Render(diags);
  EXPECT_NE(all.find("unknown node type 'testkit.not_loaded'"), std::string::npos) << all;
  EXPECT_EQ(all.find("no node named"), std::string::npos) << all;
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

namespace cubeflow {
namespace {

/// A scratch directory with an input file `in.txt`, removed at the end.
struct ScratchDir {
  fs::path dir;
  ScratchDir() {
    dir = fs::temp_directory_path() / ("cubeflow_outputs_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir / "in.txt") << "input\n";
  }
  ~ScratchDir() { fs::remove_all(dir); }
};

std::string CopyPipeline(const std::string& from, const std::string& to, const std::string& to2 = "") {
  std::string y = "cubeflow: 1\nnodes:\n  copy: {type: checks.copy, from: " + from + ", to: " + to + "}\n";
  if (!to2.empty()) y += "  copy2: {type: checks.copy, from: " + from + ", to: " + to2 + "}\n";
  return y;
}

std::string Validate(const std::string& yaml, const fs::path& base, bool allow_special = false) {
  std::vector<Diagnostic> diags;
  LoadOptions lo;
  lo.allow_special_outputs = allow_special;
  auto pl = LoadPipelineFromString(yaml, "p.yaml", base.string(), {}, testing::Fixtures(), diags, lo);
  std::string all;
  for (const auto& d : diags) all += d.Format() + "\n";
  return pl ? "ok\n" + all : all;
}

TEST(PipelineValidator, RefusesAnOutputThatIsAnInput) {
  ScratchDir s;
  EXPECT_EQ(Validate(CopyPipeline("in.txt", "out.txt"), s.dir), "ok\n");
  const std::string same = Validate(CopyPipeline("in.txt", "in.txt"), s.dir);
  EXPECT_NE(same.find("p.yaml:3:47: error: nodes.copy.to: output '" + (s.dir / "in.txt").string() +
                      "' is the input of nodes.copy.from; writing it would destroy the input: choose another output path"),
            std::string::npos)
      << same;
  // The same file under another name: a relative detour, a symbolic link, a hard link.
  EXPECT_NE(Validate(CopyPipeline("in.txt", "./sub/../in.txt"), s.dir).find("is the input of nodes.copy.from"),
            std::string::npos);
  fs::create_symlink(s.dir / "in.txt", s.dir / "sym.txt");
  const std::string sym = Validate(CopyPipeline("in.txt", "sym.txt"), s.dir);
  EXPECT_NE(sym.find("is the input of nodes.copy.from (the same file through a link)"), std::string::npos) << sym;
  fs::create_hard_link(s.dir / "in.txt", s.dir / "hard.txt");
  const std::string hard = Validate(CopyPipeline("in.txt", "hard.txt"), s.dir);
  EXPECT_NE(hard.find("is the input of nodes.copy.from (the same file through a link)"), std::string::npos) << hard;
}

TEST(PipelineValidator, RefusesTwoNodesWritingOneFile) {
  ScratchDir s;
  const std::string r = Validate(CopyPipeline("in.txt", "out.txt", "out.txt"), s.dir);
  EXPECT_NE(r.find("nodes.copy2.to: output '" + (s.dir / "out.txt").string() + "' is also written by nodes.copy.to"),
            std::string::npos)
      << r;
}

TEST(PipelineValidator, RefusesDevicesAndDirectoriesAsOutputsUnlessAllowed) {
  ScratchDir s;
  const std::string dev = Validate(CopyPipeline("in.txt", "/dev/null"), s.dir);
  EXPECT_NE(dev.find("nodes.copy.to: output '/dev/null' is a character device; give the path of a regular file (or "
                     "run with --allow-special-outputs to write to it anyway)"),
            std::string::npos)
      << dev;
  EXPECT_EQ(Validate(CopyPipeline("in.txt", "/dev/null"), s.dir, true), "ok\n");
  const std::string dir = Validate(CopyPipeline("in.txt", "."), s.dir);
  EXPECT_NE(dir.find("is a directory"), std::string::npos) << dir;
  ::mkfifo((s.dir / "fifo").c_str(), 0600);
  EXPECT_NE(Validate(CopyPipeline("in.txt", "fifo"), s.dir).find("is a FIFO"), std::string::npos);
}

}  // namespace
}  // namespace cubeflow
