#include "cubeflow/runner.hpp"

#include <gtest/gtest.h>

#include "fixtures.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <algorithm>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace cubeflow {
namespace {

namespace fs = std::filesystem;

using testing::Fixtures;

struct Collected {
  bool aborted = false;
  int64_t max_alive = 0;
  std::map<int64_t, std::string> lines;
};

Collected ReadCollected(const std::string& path) {
  Collected c;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line == "aborted") { c.aborted = true; continue; }
    std::istringstream is(line);
    std::string first;
    is >> first;
    if (first == "max_alive") { is >> c.max_alive; continue; }
    std::string rest;
    std::getline(is, rest);
    c.lines[std::stoll(first)] = rest.substr(rest.find_first_not_of(' '));
  }
  return c;
}

// Runs every graph test with one thread and with all cores.
class Runner : public ::testing::TestWithParam<int> {
 protected:
  RunSummary Run(const std::string& yaml, const std::vector<std::string>& sets = {}, int64_t max_in_flight = 0,
                 const std::atomic<int>* interrupt = nullptr) {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    out_ = (fs::temp_directory_path() / ("cubeflow_runner_" + std::to_string(::getpid()) + "_" + name)).string();
    fs::remove(out_);
    std::vector<std::string> all_sets = sets;
    all_sets.push_back("out.path=" + out_);
    std::vector<Diagnostic> diags;
    auto pl = LoadPipelineFromString(yaml, "test.yaml", "/", all_sets, Fixtures(), diags);
    if (!pl) {
      std::string s;
      for (const auto& d : diags) s += d.Format() + "\n";
      ADD_FAILURE() << s;
      return {};
    }
    RunOptions opt;
    opt.threads = GetParam();
    opt.progress = false;
    opt.max_in_flight = max_in_flight;
    opt.interrupt = interrupt;
    return RunPipeline(*pl, Fixtures(), opt);
  }
  Collected Result() { return ReadCollected(out_); }
  std::string out_;
};

TEST_P(Runner, StreamsItemsThroughAChain) {
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 500}
  sc: {type: testkit.scale, factor: 2}
  out: {type: testkit.collect}
edges: [src.items -> sc.in, sc.out -> out.in]
)");
  ASSERT_TRUE(s.ok) << s.error;
  auto c = Result();
  EXPECT_FALSE(c.aborted);
  ASSERT_EQ(c.lines.size(), 500u);
  for (int64_t k = 0; k < 500; ++k) EXPECT_DOUBLE_EQ(std::stod(c.lines[k]), 2.0 * k);
  if (GetParam() > 0) EXPECT_EQ(s.threads, GetParam()); else EXPECT_GE(s.threads, 1);
  ASSERT_EQ(s.nodes.size(), 3u);
  EXPECT_EQ(s.nodes[1].items, 500);
  EXPECT_NE(s.FormatTable().find("testkit.scale"), std::string::npos);
}

// Busy time sums a node's calls; active time is the wall time during which at least one ran, so
// overlapping calls of a parallel node count once there (the runner's items/s uses it).
TEST_P(Runner, ActiveTimeCountsOverlappingCallsOnce) {
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 8}
  sc: {type: testkit.scale, factor: 2, sleep_ms: 40}
  out: {type: testkit.collect}
edges: [src.items -> sc.in, sc.out -> out.in]
)");
  ASSERT_TRUE(s.ok) << s.error;
  const NodeStats& sc = s.nodes[1];
  ASSERT_EQ(sc.name, "sc");
  EXPECT_GE(sc.busy_seconds, 8 * 0.040);
  EXPECT_GT(sc.active_seconds, 0.0);
  EXPECT_LE(sc.active_seconds, sc.busy_seconds + 1e-3);
  if (s.threads == 1) {
    EXPECT_NEAR(sc.active_seconds, sc.busy_seconds, 0.01);
  } else {
    // Sleeping calls overlap whatever the load: with 2 or more workers the 8 calls cannot all be
    // serial.
    EXPECT_LE(sc.active_seconds, 0.8 * sc.busy_seconds) << "busy " << sc.busy_seconds << " s";
  }
}

TEST_P(Runner, JoinsTwoBranchesByKey) {
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 300}
  a: {type: testkit.scale, factor: 2}
  b: {type: testkit.scale, factor: 3}
  add: {type: testkit.add}
  out: {type: testkit.collect}
edges: [src.items -> a.in, src.items -> b.in, a.out -> add.a, b.out -> add.b, add.sum -> out.in]
)");
  ASSERT_TRUE(s.ok) << s.error;
  auto c = Result();
  ASSERT_EQ(c.lines.size(), 300u);
  for (int64_t k = 0; k < 300; ++k) EXPECT_DOUBLE_EQ(std::stod(c.lines[k]), 5.0 * k);
}

TEST_P(Runner, SingleInputsReachEveryItem) {
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 50}
  off: {type: testkit.offset}
  out: {type: testkit.collect}
edges: [src.meta -> off.offset, src.items -> off.in, off.out -> out.in]
)");
  ASSERT_TRUE(s.ok) << s.error;
  auto c = Result();
  ASSERT_EQ(c.lines.size(), 50u);
  for (int64_t k = 0; k < 50; ++k) EXPECT_DOUBLE_EQ(std::stod(c.lines[k]), 50.0 + k);
}

TEST_P(Runner, BatchesItemsAndFlushesTheRemainder) {
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 100}
  bs: {type: testkit.batch_size, batch_size: 7}
  out: {type: testkit.collect}
edges: [src.items -> bs.in, bs.out -> out.in]
)");
  ASSERT_TRUE(s.ok) << s.error;
  auto c = Result();
  ASSERT_EQ(c.lines.size(), 100u);
  std::map<int, int> sizes;
  for (const auto& [k, v] : c.lines) sizes[static_cast<int>(std::stod(v))]++;
  EXPECT_EQ(sizes[7], 98);  // 14 full batches
  EXPECT_EQ(sizes[2], 2);   // the remainder, flushed at the end
  EXPECT_EQ(sizes.size(), 2u);
  EXPECT_EQ(s.nodes[1].calls, 15);
}

TEST_P(Runner, BoundsItemsInFlight) {
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 5000}
  sc: {type: testkit.scale, factor: 1}
  out: {type: testkit.collect}
edges: [src.items -> sc.in, sc.out -> out.in]
)",
               {}, 16);
  ASSERT_TRUE(s.ok) << s.error;
  auto c = Result();
  EXPECT_EQ(c.lines.size(), 5000u);
  EXPECT_GT(c.max_alive, 0);
  // 16 tokens plus the one item an input node buffers while the limiter is closed.
  EXPECT_LE(c.max_alive, 17) << "source items alive at once";
}

TEST_P(Runner, NodeExceptionStopsTheRunNamingNodeTypeAndBin) {
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 200}
  sc: {type: testkit.scale, fail_on: 37}
  out: {type: testkit.collect}
edges: [src.items -> sc.in, sc.out -> out.in]
)");
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.error.find("node 'sc' (testkit.scale) failed on bin 37: asked to fail"), std::string::npos) << s.error;
  auto c = Result();
  EXPECT_TRUE(c.aborted) << "the sink is finished with aborted() so it can write what it has";
  EXPECT_EQ(c.lines.count(37), 0u);
  EXPECT_LT(c.lines.size(), 200u);
}

TEST_P(Runner, FlagModeRecordsFailedBinsAndGoesOn) {
  auto s = Run(R"(
cubeflow: 1
settings: {on_error: flag}
nodes:
  src: {type: testkit.numbers, count: 200}
  sc: {type: testkit.scale, fail_on: 37}
  sc2: {type: testkit.scale, factor: 10}
  out: {type: testkit.collect}
edges: [src.items -> sc.in, sc.out -> sc2.in, sc2.out -> out.in]
)");
  ASSERT_TRUE(s.ok) << s.error;
  auto c = Result();
  ASSERT_EQ(c.lines.size(), 200u);
  EXPECT_NE(c.lines[37].find("FAILED node 'sc' (testkit.scale) failed on bin 37"), std::string::npos) << c.lines[37];
  EXPECT_DOUBLE_EQ(std::stod(c.lines[36]), 360.0);
  EXPECT_EQ(s.nodes[1].failed, 1);
  EXPECT_EQ(s.nodes[2].failed, 1);  // forwarded, not processed
}

TEST_P(Runner, SourceExceptionIsReported) {
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 100, fail_at: 10}
  out: {type: testkit.collect}
edges: [src.items -> out.in]
)");
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.error.find("node 'src' (testkit.numbers) failed producing stream 'items'"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("source broke at item 10"), std::string::npos) << s.error;
}

TEST_P(Runner, MissingSingleInputIsAnError) {
  const char* yaml = R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 5}
  off: {type: testkit.offset}
  out: {type: testkit.collect}
edges: [src.meta -> off.offset, src.items -> off.in, off.out -> out.in]
)";
  auto control = Run(yaml, {});
  EXPECT_TRUE(control.ok) << control.error;  // control: meta is emitted
  auto s = Run(yaml, {"src.emit_meta=false"});
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.error.find("node 'off' (testkit.offset): input 'offset' never received data (src.meta emitted nothing)"),
            std::string::npos)
      << s.error;
  EXPECT_TRUE(Result().aborted) << "the sink still finishes, as aborted";
}

TEST_P(Runner, SinksReportTheirProducts) {
  auto s = Run(R"(
cubeflow: 1
settings: {on_error: flag}
nodes:
  src: {type: testkit.numbers, count: 20}
  sc: {type: testkit.scale, fail_on: 7}
  out: {type: testkit.collect}
edges: [src.items -> sc.in, sc.out -> out.in]
)");
  ASSERT_TRUE(s.ok) << s.error;
  ASSERT_EQ(s.products.size(), 1u);
  EXPECT_EQ(s.products[0].path, out_);
  EXPECT_EQ(s.products[0].items, 20);
  EXPECT_EQ(s.products[0].usable, 19);
  EXPECT_FALSE(s.products[0].partial);
  EXPECT_NE(s.FormatTable().find("product " + out_ + ": 19 of 20 usable"), std::string::npos) << s.FormatTable();
}

TEST_P(Runner, InterruptStopsTheRunAndSinksWriteAPartialProduct) {
  std::atomic<int> interrupt{0};
  std::thread signaller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    interrupt = 2;  // as the SIGINT handler of `cubeflow run` does
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto s = Run(R"(
cubeflow: 1
nodes:
  src: {type: testkit.numbers, count: 100000, delay_us: 1000}
  out: {type: testkit.collect}
edges: [src.items -> out.in]
)",
               {}, 0, &interrupt);
  signaller.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(s.ok);
  EXPECT_EQ(s.interrupted_by, 2);
  EXPECT_NE(s.error.find("interrupted by signal 2 (SIGINT); the run stopped and its products are partial"),
            std::string::npos)
      << s.error;
  EXPECT_LT(seconds, 30.0) << "the 100 s run should stop within a few items of the signal";
  auto c = Result();
  EXPECT_TRUE(c.aborted);
  EXPECT_LT(c.lines.size(), 100000u);
  ASSERT_EQ(s.products.size(), 1u);
  EXPECT_TRUE(s.products[0].partial);
}

INSTANTIATE_TEST_SUITE_P(Threads, Runner, ::testing::Values(1, 0),
                         [](const auto& info) { return info.param == 1 ? std::string("OneThread") : std::string("AllCores"); });

}  // namespace
}  // namespace cubeflow
