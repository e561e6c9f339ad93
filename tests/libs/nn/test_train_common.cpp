// The training scaffolding the CNN and SBI trainings share (libs/nn/src/train_common.hpp): the
// split, the epoch shuffles, the learning-rate schedule, plateau decay and early stopping, the
// stage loop with its interruptions and checkpoints, and the `cubeflow train` command around a
// training (arguments, configuration file, relative paths, exit codes, messages).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "train_common.hpp"
#include "train_torch.hpp"

using namespace cubeflow;
namespace fs = std::filesystem;

namespace {

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("cubeflow_test_train_common_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

int RunMain(const std::function<int(int, char**)>& main_fn, std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return main_fn(static_cast<int>(argv.size()), argv.data());
}

/// A small library file with every array the FITS layout has.
std::string WriteTinyLibrary(const fs::path& path, int64_t n) {
  sim::LibraryData lib;
  lib.wave = WavelengthAxis::Linear(4800.0, 5.0, 50);
  lib.n = n;
  lib.spectra.assign(n * 50, 1.0f);
  lib.spectra_err.assign(n * 50, 0.02f);
  lib.mass_frac.assign(n * sim::kNumAgeBins, 1.0f / sim::kNumAgeBins);
  lib.light_frac = lib.mass_frac;
  lib.zh.assign(n * sim::kNumAgeBins, 0.0f);
  lib.t_mass.assign(n * sim::kNumMassPercentiles, 5.0f);
  lib.snr.assign(n, 20.0f);
  lib.tau_bc.assign(n, 0.5f);
  lib.tau_ism.assign(n, 0.2f);
  lib.sfh_kind.assign(n, 0);
  lib.z_final.assign(n, 0.02f);
  lib.age_bin_edges.resize(sim::kNumAgeBins + 1);
  for (int j = 0; j <= sim::kNumAgeBins; ++j) lib.age_bin_edges[j] = 0.004 * std::pow(1.62, j);
  lib.age_bin_centres.resize(sim::kNumAgeBins);
  for (int j = 0; j < sim::kNumAgeBins; ++j) lib.age_bin_centres[j] = lib.age_bin_edges[j] * 1.3;
  Status st = sim::WriteLibrary(path.string(), lib);
  EXPECT_TRUE(st.ok()) << st.message();
  return path.string();
}

}  // namespace

TEST(TrainSplit, IsASeededPartitionOfTheRows) {
  auto s = nn::SplitRows(100, 42, 0.7, 0.2);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->train.size(), 70u);
  EXPECT_EQ(s->val.size(), 20u);
  EXPECT_EQ(s->test.size(), 10u);
  std::vector<int64_t> all = s->train;
  all.insert(all.end(), s->val.begin(), s->val.end());
  all.insert(all.end(), s->test.begin(), s->test.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, nn::AllRows(100));
  // The permutation is std::shuffle with std::mt19937_64(seed): the split of existing runs.
  std::vector<int64_t> perm = nn::AllRows(100);
  std::mt19937_64 rng(42);
  std::shuffle(perm.begin(), perm.end(), rng);
  EXPECT_EQ(s->train, std::vector<int64_t>(perm.begin(), perm.begin() + 70));
  auto again = nn::SplitRows(100, 42, 0.7, 0.2);
  EXPECT_EQ(again->val, s->val);
  EXPECT_NE(nn::SplitRows(100, 43, 0.7, 0.2)->train, s->train);
}

TEST(TrainSplit, TooFewRowsSaysWhatToDo) {
  auto s = nn::SplitRows(1, 1, 0.7, 0.2);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("too few rows (1)"), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find("larger library"), std::string::npos) << s.status().message();
}

TEST(TrainSchedule, EpochShufflesAndLearningRate) {
  // Stage 0 is the CNN's generator, stages 1 and 2 the SBI encoder's and flow's: all differ.
  std::mt19937_64 legacy(7 * 6364136223846793005ull + 1442695040888963407ull * 4);
  auto g0 = nn::EpochRng(7, 3);
  EXPECT_EQ(g0(), legacy());
  EXPECT_NE(nn::EpochRng(7, 3, 1)(), nn::EpochRng(7, 3)());
  EXPECT_NE(nn::EpochRng(7, 3, 1)(), nn::EpochRng(7, 3, 2)());
  EXPECT_EQ(nn::EpochRng(7, 3, 2)(), nn::EpochRng(7, 3, 2)());
  // Linear decay, floored at 1e-3 of the initial rate, times the plateau scale.
  EXPECT_DOUBLE_EQ(nn::ScheduledLr(1e-3, 0, 10, 1.0), 1e-3);
  EXPECT_DOUBLE_EQ(nn::ScheduledLr(1e-3, 5, 10, 0.5), 1e-3 * 0.5 * 0.5);
  EXPECT_DOUBLE_EQ(nn::ScheduledLr(1e-3, 10, 10, 1.0), 1e-6);
}

TEST(TrainPlateau, DecaysAfterPatienceAndRestartsOnImprovement) {
  nn::Plateau p;
  EXPECT_TRUE(p.Update(1.0, 1, 2, 0.5));
  EXPECT_EQ(p.best_epoch, 1);
  EXPECT_FALSE(p.Update(1.5, 2, 2, 0.5));
  EXPECT_DOUBLE_EQ(p.lr_scale, 1.0);
  EXPECT_FALSE(p.Update(1.0, 3, 2, 0.5));  // equal is no improvement
  EXPECT_DOUBLE_EQ(p.lr_scale, 0.5);
  EXPECT_EQ(p.since_best, 2);
  EXPECT_EQ(p.since_lr, 0);
  EXPECT_TRUE(p.Update(0.9, 4, 2, 0.5));
  EXPECT_EQ(p.best_epoch, 4);
  EXPECT_EQ(p.since_best, 0);
  EXPECT_DOUBLE_EQ(p.lr_scale, 0.5);  // the decay stays
}

TEST(TrainStage, RunsEpochsChecksPointsAndStopsEarly) {
  // Validation losses 3, 2, 2.5, 2.4, 2.6: best at epoch 2, stop_patience 3 ends it after epoch 5.
  const std::vector<double> val = {3, 2, 2.5, 2.4, 2.6, 1.0};
  std::vector<int64_t> trained, checkpoints, best;
  std::vector<double> lrs;
  nn::StageSteps steps;
  steps.train_epoch = [&](int64_t epoch, double lr) -> std::optional<double> {
    trained.push_back(epoch);
    lrs.push_back(lr);
    return 10.0 + epoch;
  };
  steps.validate = [&] { return val[trained.back()]; };
  steps.keep_best = [&] { best.push_back(trained.back() + 1); };
  steps.checkpoint = [&](int64_t done) { checkpoints.push_back(done); };
  std::vector<nn::EpochReport> reports;
  nn::Plateau plateau;
  std::vector<double> tl, vl;
  const nn::RunClock clock(100.0);
  auto out = nn::RunStage({"flow", 10, 1.0, 0.5, 2, 3}, 0, plateau, tl, vl, clock, steps,
                          [&](const nn::EpochReport& r) { reports.push_back(r); });
  EXPECT_EQ(out.epochs_run, 5);
  EXPECT_TRUE(out.stopped_early);
  EXPECT_FALSE(out.interrupted);
  EXPECT_EQ(trained, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(checkpoints, (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(best, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(vl, (std::vector<double>{3, 2, 2.5, 2.4, 2.6}));
  EXPECT_EQ(tl.front(), 10.0);
  // Epoch 5 (index 4) runs after one plateau decay (epochs 3 and 4 without improvement).
  EXPECT_DOUBLE_EQ(lrs[4], nn::ScheduledLr(1.0, 4, 10, 0.5));
  ASSERT_EQ(reports.size(), 5u);
  EXPECT_EQ(reports.back().stage, "flow");
  EXPECT_EQ(reports.back().epoch, 5);
  EXPECT_EQ(reports.back().best_epoch, 2);
  EXPECT_DOUBLE_EQ(reports.back().best_val, 2.0);
  EXPECT_TRUE(reports.back().stopped_early);
  EXPECT_GE(reports.back().elapsed_s, 100.0);  // includes the resumed runs' seconds
  EXPECT_EQ(nn::FormatEpochLine(reports.back()).rfind("flow epoch 5/10  train 14.000000  val 2.600000  best "
                                                      "2.000000 (epoch 2)",
                                                      0),
            0u)
      << nn::FormatEpochLine(reports.back());
  nn::EpochReport cnn_line = reports.back();
  cnn_line.stage.clear();
  EXPECT_EQ(nn::FormatEpochLine(cnn_line).rfind("epoch 5/10  train", 0), 0u);
  EXPECT_NE(nn::FormatEpochLine(cnn_line).find("(early stop)"), std::string::npos);
}

TEST(TrainStage, InterruptedEpochIsDroppedAndResumeContinues) {
  int calls = 0;
  nn::StageSteps steps;
  steps.train_epoch = [&](int64_t, double) -> std::optional<double> {
    if (++calls == 3) return std::nullopt;  // the stop flag was raised in the third epoch
    return 1.0;
  };
  steps.validate = [&] { return 1.0 / calls; };
  steps.keep_best = [] {};
  std::vector<int64_t> checkpoints;
  steps.checkpoint = [&](int64_t done) { checkpoints.push_back(done); };
  nn::Plateau plateau;
  std::vector<double> tl, vl;
  auto out = nn::RunStage({"", 5, 1.0, 0.8, 3, 8}, 0, plateau, tl, vl, nn::RunClock(), steps, {});
  EXPECT_TRUE(out.interrupted);
  EXPECT_EQ(out.epochs_run, 2);
  EXPECT_EQ(checkpoints, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(vl.size(), 2u);
  // Resumed at epoch 2 (0-based) with the saved counters: runs epochs 3..5.
  out = nn::RunStage({"", 5, 1.0, 0.8, 3, 8}, out.epochs_run, plateau, tl, vl, nn::RunClock(), steps, {});
  EXPECT_FALSE(out.interrupted);
  EXPECT_EQ(out.epochs_run, 5);
  EXPECT_EQ(checkpoints, (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(vl.size(), 5u);
}

TEST(TrainMessages, DurationsAndSnrMix) {
  EXPECT_EQ(nn::FormatDuration(3725.4), "1:02:05");
  EXPECT_EQ(nn::FormatDuration(-1), "?");
  EXPECT_EQ(nn::FormatDuration(NAN), "?");
  sim::LibraryData lib;
  EXPECT_EQ(nn::SnrMix(lib), "unknown");
  lib.snr = {20, 50, 50, 20.2f};
  EXPECT_EQ(nn::SnrMix(lib), "20: 2, 50: 2");
  lib.snr.clear();
  for (int i = 0; i < 20; ++i) lib.snr.push_back(5.0f + 5 * i);
  EXPECT_EQ(nn::SnrMix(lib), "continuous 5-100");
}

TEST(TrainMessages, LibraryShapesNameTheArray) {
  sim::LibraryData lib;
  auto st = nn::CheckLibraryShapes(lib, "library x.fits", false);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("library x.fits is empty"), std::string::npos) << st.message();
  lib.n = 2;
  lib.wave = WavelengthAxis::Linear(4800, 1, 10);
  lib.spectra.resize(20);
  lib.mass_frac.resize(32);
  lib.zh.resize(32);
  EXPECT_TRUE(nn::CheckLibraryShapes(lib, "library x.fits", false).ok());
  st = nn::CheckLibraryShapes(lib, "library x.fits", true);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("array T_MASS has 0 values, expected 18"), std::string::npos) << st.message();
  lib.bands = {"F555W"};
  st = nn::CheckLibraryShapes(lib, "library x.fits", false);
  EXPECT_NE(st.message().find("PHOT"), std::string::npos) << st.message();
  lib.photometry.resize(2);
  EXPECT_TRUE(nn::CheckLibraryShapes(lib, "library x.fits", false).ok());
  st = nn::CheckLibraryFitsModel(lib, 12, {"F438W"});
  EXPECT_NE(st.message().find("10 pixels, the model expects 12"), std::string::npos) << st.message();
  st = nn::CheckLibraryFitsModel(lib, 10, {"F438W"});
  EXPECT_NE(st.message().find("bands (F555W) differ from the model's (F438W)"), std::string::npos) << st.message();
  EXPECT_TRUE(nn::CheckLibraryFitsModel(lib, 10, {}).ok());
}

TEST(TrainCommand, ArgumentsPathsAndExitCodes) {
  auto dir = TempDir("cmd");
  std::ofstream(dir / "t.yaml") << "library: sub/lib.fits\noutput: out/m.pt\n";
  nn::TrainInvocation seen;
  bool ran = false;
  auto main_fn = [&](int argc, char** argv) {
    return nn::RunTrainCommand(argc, argv, "Trains a test model.", [&](const nn::TrainInvocation& inv) -> Result<nn::TrainJob> {
      seen = inv;
      std::string library = "sub/lib.fits";
      inv.Resolve(library);
      nn::TrainJob job;
      job.library = library;
      job.run = [&](const sim::LibraryData&, const nn::ProgressFn&, const volatile int*) -> Result<nn::TrainOutcome> {
        ran = true;
        return nn::TrainOutcome{};
      };
      return job;
    });
  };
  const std::string cfg = (dir / "t.yaml").string();
  testing::internal::CaptureStdout();
  EXPECT_EQ(RunMain(main_fn, {"train", "--help"}), 0);
  const std::string help = testing::internal::GetCapturedStdout();
  EXPECT_NE(help.find("usage: cubeflow train CONFIG.yaml [--resume] [--threads N]\nTrains a test model."),
            std::string::npos) << help;
  testing::internal::CaptureStderr();
  EXPECT_EQ(RunMain(main_fn, {"train"}), 2);
  EXPECT_EQ(RunMain(main_fn, {"train", cfg, "--bogus"}), 2);
  EXPECT_EQ(RunMain(main_fn, {"train", cfg, "--threads", "two"}), 2);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("unexpected argument '--bogus'"), std::string::npos) << err;
  EXPECT_NE(err.find("--threads takes a positive number, not 'two'"), std::string::npos) << err;
  testing::internal::CaptureStderr();
  EXPECT_EQ(RunMain(main_fn, {"train", (dir / "missing.yaml").string()}), 1);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("cubeflow train: cannot read"), std::string::npos) << err;
  // The library path is relative to the configuration's folder; reading it fails and says so.
  testing::internal::CaptureStderr();
  EXPECT_EQ(RunMain(main_fn, {"train", cfg, "--resume", "--threads", "3"}), 1);
  err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(seen.resume);
  EXPECT_EQ(seen.threads, 3);
  EXPECT_EQ(seen.config_text, "library: sub/lib.fits\noutput: out/m.pt\n");
  EXPECT_NE(err.find("reading " + (dir / "sub" / "lib.fits").string()), std::string::npos) << err;
  EXPECT_FALSE(ran);
  struct Config {
    bool resume = false;
    int threads = 5;
  } c;
  seen.threads = -1;
  seen.ApplyTo(c);
  EXPECT_EQ(c.threads, 5);  // no --threads: the configuration's
  EXPECT_TRUE(c.resume);
  EXPECT_NE(seen.RequireLibrary("").message().find("'library' (the simulated library FITS file) is required"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(TrainCommand, RunsTheJobOnTheLibraryAndReportsTheOutcome) {
  auto dir = TempDir("run");
  fs::create_directories(dir / "data");
  const std::string lib_path = WriteTinyLibrary(dir / "data" / "lib.fits", 5);
  std::ofstream(dir / "t.yaml") << "library: data/lib.fits\n";
  const std::string cfg = (dir / "t.yaml").string();
  nn::TrainOutcome outcome;
  Status run_status;
  int64_t rows_seen = 0;
  bool had_stop_flag = false;
  auto main_fn = [&](int argc, char** argv) {
    return nn::RunTrainCommand(argc, argv, "", [&](const nn::TrainInvocation& inv) -> Result<nn::TrainJob> {
      nn::TrainJob job;
      job.library = "data/lib.fits";
      inv.Resolve(job.library);
      job.max_rows = 3;
      job.kind_note = "test model; ";
      job.run = [&](const sim::LibraryData& lib, const nn::ProgressFn& progress,
                    const volatile int* stop_flag) -> Result<nn::TrainOutcome> {
        rows_seen = lib.n;
        had_stop_flag = stop_flag != nullptr && *stop_flag == 0;
        nn::EpochReport r;
        r.epoch = 1;
        r.epochs = 2;
        progress(r);
        if (!run_status.ok()) return run_status;
        return outcome;
      };
      return job;
    });
  };
  outcome.message = "wrote the model";
  outcome.test_metrics["loss"] = 0.25;
  testing::internal::CaptureStderr();
  EXPECT_EQ(RunMain(main_fn, {"train", cfg}), 0);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rows_seen, 3);  // max_rows
  EXPECT_TRUE(had_stop_flag);
  EXPECT_NE(err.find("cubeflow train: reading " + lib_path), std::string::npos) << err;
  EXPECT_NE(err.find("cubeflow train: test model; 3 objects, 50 pixels, 0 bands; S/N mix 20: 3"), std::string::npos)
      << err;
  EXPECT_NE(err.find("\nepoch 1/2  train"), std::string::npos) << err;
  EXPECT_NE(err.find("cubeflow train: wrote the model\n  test loss = 0.25\n"), std::string::npos) << err;
  outcome.interrupted = true;
  outcome.message = "interrupted; resume with --resume";
  testing::internal::CaptureStderr();
  EXPECT_EQ(RunMain(main_fn, {"train", cfg}), 130);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("cubeflow train: interrupted; resume with --resume"), std::string::npos) << err;
  EXPECT_EQ(err.find("test loss"), std::string::npos) << err;
  run_status = Status::Error("the network exploded");
  testing::internal::CaptureStderr();
  EXPECT_EQ(RunMain(main_fn, {"train", cfg}), 1);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("cubeflow train: the network exploded"), std::string::npos) << err;
  fs::remove_all(dir);
}

// augment_continuum: every spectrum gets its own smooth continuum, renormalised to mean 1 in the
// normalisation window; degree 1 is a straight line; the generator's seed reproduces it.
TEST(DistortContinuum, SmoothPerSpectrumAndMeanOneInTheWindow) {
  const auto wave = WavelengthAxis::Linear(4800, 1.25, 1761);
  const int64_t lo = 400, hi = 561;  // 5300-5500 A
  auto spec = torch::ones({256, 1761});
  auto gen = at::detail::createCPUGenerator(7);
  auto out = nn::DistortContinuum(spec, wave, 5300, 5500, 3, 0.05, gen);
  auto window_mean = out.narrow(1, lo, hi - lo).mean(1);
  EXPECT_LT((window_mean - 1).abs().max().item<double>(), 1e-5);
  // Across spectra the red end moves by ~ sigma * sqrt(3) (three unit-norm end values): 0.087.
  const double spread = out.select(1, 1760).std().item<double>();
  EXPECT_GT(spread, 0.05);
  EXPECT_LT(spread, 0.15);
  // Smooth: second differences are tiny compared with the distortion itself.
  auto d2 = out.narrow(1, 2, 1759) - 2 * out.narrow(1, 1, 1759) + out.narrow(1, 0, 1759);
  EXPECT_LT(d2.abs().max().item<double>(), 1e-4);
  // Degree 1: a straight line through the window mean.
  auto gen1 = at::detail::createCPUGenerator(7);
  auto line = nn::DistortContinuum(spec, wave, 5300, 5500, 1, 0.05, gen1);
  auto d2l = line.narrow(1, 2, 1759) - 2 * line.narrow(1, 1, 1759) + line.narrow(1, 0, 1759);
  EXPECT_LT(d2l.abs().max().item<double>(), 1e-5);
  // Same seed, same continua.
  auto gen2 = at::detail::createCPUGenerator(7);
  EXPECT_TRUE(torch::equal(out, nn::DistortContinuum(spec, wave, 5300, 5500, 3, 0.05, gen2)));
}
