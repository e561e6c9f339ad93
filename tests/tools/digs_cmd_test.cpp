// `cubeflow digs mcmc|speed` in-process (tools/cubeflow/digs_cmd.cpp): output format, the TSV,
// and usage errors. Short chains: this checks the command, not the sampler (tests/libs/sampling)
// or the figures of docs/digs.md (bench/digs_mcmc.sh).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"

namespace {

int RunDigs(std::vector<std::string> args, std::string* out = nullptr, std::string* err = nullptr) {
  args.insert(args.begin(), "digs");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const int rc = cubeflow::tools::DigsCommand(static_cast<int>(argv.size()), argv.data());
  const std::string o = testing::internal::GetCapturedStdout(), e = testing::internal::GetCapturedStderr();
  if (out) *out = o;
  if (err) *err = e;
  return rc;
}

}  // namespace

TEST(DigsCommand, McmcPrintsTheSummaryAndWritesOneRowPerSpectrum) {
  const auto tsv = (std::filesystem::temp_directory_path() / "cubeflow_digs_cmd_test.tsv").string();
  std::string out, err;
  const int rc = RunDigs({"mcmc", "--n", "2", "--seed", "5", "--walkers", "16", "--burn", "200", "--steps", "400", "--thin",
                      "4", "--anneal-stages", "2", "--anneal-iterations", "50", "--init-draws", "200", "--out", tsv},
                     &out, &err);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_NE(out.find("summary over 2 spectra"), std::string::npos) << out;
  for (const char* p : {"log_mass ", "log_z ", "dust ", "t_age ", "tau "}) EXPECT_NE(out.find(p), std::string::npos) << p;
  EXPECT_NE(out.find("s per spectrum"), std::string::npos);
  std::ifstream in(tsv);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u);
  size_t tabs = 0;
  for (char c : lines[1]) tabs += (c == '\t');
  EXPECT_EQ(tabs, 1u + 5 * 4 + 4 - 1) << lines[1];  // index, 5 x (true q16 q50 q84), 4 diagnostics
  std::filesystem::remove(tsv);
}

TEST(DigsCommand, RefusesAThetaOutsideThePrior) {
  std::string err;
  EXPECT_EQ(RunDigs({"mcmc", "--theta", "14,0,1,1,0.3"}, nullptr, &err), 2);
  EXPECT_NE(err.find("outside the Table 1 prior"), std::string::npos) << err;
}

TEST(DigsCommand, LibraryRefusesAThetaOutsideThePrior) {
  std::string err;
  const auto out = (std::filesystem::temp_directory_path() / "cubeflow_digs_cmd_theta.fits").string();
  EXPECT_EQ(RunDigs({"library", "--n", "2", "--seed", "1", "--theta", "10,0,1,5,0.3", "--out", out}, nullptr, &err), 2);
  EXPECT_NE(err.find("cubeflow digs library: --theta lies outside the Table 1 prior"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(DigsCommand, NamesAMissingSspDirectory) {
  std::string err;
  EXPECT_EQ(RunDigs({"speed", "--ssp", "/nonexistent/ssp_dir", "--n", "10"}, nullptr, &err), 2);
  EXPECT_NE(err.find("/nonexistent/ssp_dir"), std::string::npos) << err;
}

TEST(DigsCommand, SpeedPrintsTheCostPerSpectrum) {
  std::string out;
  ASSERT_EQ(RunDigs({"speed", "--n", "200"}, &out), 0);
  EXPECT_NE(out.find("us per noise-free spectrum"), std::string::npos) << out;
}
