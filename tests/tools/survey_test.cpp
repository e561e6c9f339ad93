// The survey manifest reader (tools/survey/survey.hpp): the format of docs/survey.md and its
// FILE:LINE messages; the encoding of a summary row sent between MPI ranks.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "survey.hpp"

namespace cubeflow::tools::survey {
namespace {

std::string Write(const std::string& name, const std::string& text) {
  const auto p = std::filesystem::temp_directory_path() / ("cubeflow_survey_test_" + name);
  std::ofstream(p) << text;
  return p.string();
}

TEST(SurveyManifest, ReadsVariablesOverridesCommentsAndEmptyFields) {
  const std::string p = Write("ok.tsv",
                              "# a survey\n"
                              "name\tCUBE\tOUT\trest.z_sys\r\n"
                              "\n"
                              "a\t/d/a.fits\t/o/a.fits\t0.005\r\n"
                              "# skipped\n"
                              "b\t /d/b.fits \t/o/b.fits\t\n");
  std::vector<std::string> errors;
  const Manifest m = ReadManifest(p, errors);
  ASSERT_TRUE(errors.empty()) << errors[0];
  ASSERT_EQ(m.cubes.size(), 2u);
  EXPECT_EQ(m.cubes[0].name, "a");
  EXPECT_EQ(m.cubes[0].line, 4);
  ASSERT_EQ(m.cubes[0].vars.size(), 2u);
  EXPECT_EQ(m.cubes[0].vars[0], (std::pair<std::string, std::string>{"CUBE", "/d/a.fits"}));
  EXPECT_EQ(m.cubes[0].sets, std::vector<std::string>{"rest.z_sys=0.005"});
  EXPECT_EQ(m.cubes[1].line, 6);
  EXPECT_EQ(m.cubes[1].vars[0].second, "/d/b.fits");  // fields are trimmed
  EXPECT_TRUE(m.cubes[1].sets.empty());               // empty: the pipeline's value
}

TEST(SurveyManifest, ReportsEveryFaultWithItsLine) {
  const std::string p = Write("bad.tsv",
                              "name\tCUBE\tOUT\n"
                              "a\t/d/a.fits\t/o/a.fits\n"
                              "b\t/d/b.fits\n"
                              "a\t/d/c.fits\t/o/c.fits\n"
                              "x y\t/d/d.fits\t/o/d.fits\n");
  std::vector<std::string> errors;
  ReadManifest(p, errors);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0], p + ":3: 2 fields, the header has 3 (fields are separated by tabs)");
  EXPECT_EQ(errors[1], p + ":4: cube 'a' is already named on line 2; give every cube its own name");
  EXPECT_NE(errors[2].find(p + ":5: cube name 'x y' is empty or has characters other than"), std::string::npos)
      << errors[2];
}

TEST(SurveyManifest, RefusesABadHeader) {
  std::vector<std::string> errors;
  ReadManifest(Write("header.tsv", "CUBE\tCUBE\tbad-col\n/d/a.fits\t/x\t1\n"), errors);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_NE(errors[0].find(":1: column 'CUBE' is named twice in the header"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find(":1: column 'bad-col' is neither a variable"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find(":1: the header has no column 'name'"), std::string::npos) << errors[2];
  errors.clear();
  ReadManifest(Write("empty.tsv", "# nothing\n\n"), errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("the manifest is empty (no header line)"), std::string::npos);
  errors.clear();
  ReadManifest(Write("nocubes.tsv", "name\tCUBE\n"), errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("the manifest lists no cubes"), std::string::npos);
  errors.clear();
  ReadManifest("/nonexistent/cubes.tsv", errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "/nonexistent/cubes.tsv: cannot open the manifest (no such file)");
}

TEST(SurveySummary, EncodesARowForAnotherRank) {
  Survey s;
  s.results.resize(3);
  CubeResult& r = s.results[2];
  r = {"g3", "failed", 12, 7, 1.5, 88.25, 1, "node1 rank 2 pid 77", "/o/g3.fits", "g3.log",
       "node 'read' (io.read_cube) failed:\ttruncated\nfile"};
  const std::string text = Encode(s, 2);
  Survey t;
  t.results.resize(3);
  ASSERT_EQ(Decode(t, text), 2);
  const CubeResult& u = t.results[2];
  EXPECT_EQ(u.status, "failed");
  EXPECT_EQ(u.bins, 12);
  EXPECT_EQ(u.usable, 7);
  EXPECT_DOUBLE_EQ(u.wall_seconds, 1.5);
  EXPECT_DOUBLE_EQ(u.peak_rss_mb, 88.25);
  EXPECT_EQ(u.exit_code, 1);
  EXPECT_EQ(u.host, "node1 rank 2 pid 77");
  EXPECT_EQ(u.products, "/o/g3.fits");
  EXPECT_EQ(u.error, "node 'read' (io.read_cube) failed: truncated file");  // one line
  EXPECT_EQ(Decode(t, "9\tok"), -1);  // no such cube
}

}  // namespace
}  // namespace cubeflow::tools::survey
