// Exact resume whatever OpenBLAS's thread pool was before a training (issue #17): OpenBLAS's
// kernels (e.g. OPENBLAS_CORETYPE=Haswell) sum in another order on another number of threads, and
// its pool is process-wide, set by OPENBLAS_NUM_THREADS or by an earlier call (SbiModel sets it).
// Training therefore sets the pool to its own thread count. CMakeLists.txt runs these tests once
// more with OPENBLAS_CORETYPE=Haswell, where an unpinned pool makes the resumed losses differ.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "cubeflow/nn/sbi_train.hpp"
#include "cubeflow/nn/train.hpp"

using namespace cubeflow;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kNWave = 400;

using SetFn = void (*)(int);
using GetFn = int (*)();
const SetFn kSetBlasThreads = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
const GetFn kGetBlasThreads = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));

/// Skips when libtorch does not use OpenBLAS, or when the Haswell kernels were asked for on a
/// processor without them.
bool SkipWithoutOpenBlas() {
  if (!kSetBlasThreads || !kGetBlasThreads) return true;
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  if (core && std::string(core) == "Haswell" && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
    return true;
  return false;
}

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("cubeflow_test_threads_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

/// A small noisy library whose spectra depend on the labels: the continuum slope on the median
/// formation time, a line on [M/H]; two bands follow the slope.
sim::LibraryData MakeLibrary(int64_t n) {
  sim::LibraryData lib;
  lib.wave = WavelengthAxis::Linear(4800.0, 5.5, kNWave);
  lib.meta["config"] = "cosmology: {h0: 70, omega_m: 0.3}\n";
  lib.bands = {"F438W", "F814W"};
  lib.pivots = {4326.0, 8040.0};
  const int K = sim::kNumAgeBins, Q = sim::kNumMassPercentiles;
  lib.n = n;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  for (int j = 0; j < K; ++j) lib.age_bin_centres.push_back(0.01 * std::pow(1.6, j));
  for (int64_t i = 0; i < n; ++i) {
    double m[sim::kNumAgeBins], sum = 0;
    for (double& x : m) sum += (x = std::exp(gauss(rng)));
    double cum = 0;
    for (int q = 0; q < Q; ++q) lib.t_mass.push_back(static_cast<float>(13.0 * (q + 1 + uni(rng)) / (Q + 2)));
    const double mh = -0.4 + 0.5 * uni(rng), t50 = lib.t_mass[i * Q + 4] / 13.0;
    for (int j = 0; j < K; ++j) {
      cum += m[j] / sum;
      lib.mass_frac.push_back(static_cast<float>(m[j] / sum));
      lib.light_frac.push_back(static_cast<float>(m[j] / sum));
      lib.zh.push_back(static_cast<float>(mh));
    }
    const double snr = (i % 2) ? 25.0 : 50.0;
    lib.snr.push_back(static_cast<float>(snr));
    for (int64_t k = 0; k < kNWave; ++k) {
      const double lam = lib.wave.At(k), x = (lam - 5500.0) / 500.0;
      const double f = 1.0 + 0.3 * (t50 - 0.5) * x - 0.2 * (1.0 + mh) * std::exp(-0.5 * std::pow((lam - 5175.0) / 10.0, 2));
      lib.spectra.push_back(static_cast<float>(f + gauss(rng) / snr));
      lib.spectra_err.push_back(static_cast<float>(1.0 / snr));
    }
    for (int b = 0; b < 2; ++b) lib.photometry.push_back(static_cast<float>(std::pow(10.0, 0.3 * (b - 0.5) * t50)));
  }
  return lib;
}

sbi::TrainConfig SbiConfig(const fs::path& dir) {
  sbi::TrainConfig c;
  c.output = (dir / "sbi.pt").string();
  c.epochs = 3;
  c.batch_size = 32;
  c.batches_per_epoch = 6;
  c.lr = 2e-3;
  c.flow_epochs = 4;
  c.flow_batch_size = 64;
  c.flow_batches_per_epoch = 8;
  c.flow_lr = 3e-3;
  c.seed = 3;
  c.threads = 1;
  c.eval_samples = 20;
  c.encoder.channels = {4, 8, 8};
  c.encoder.spec_hidden = 32;
  c.encoder.spec_features = 16;
  c.encoder.phot_hidden = 8;
  c.encoder.phot_features = 8;
  c.encoder.fusion_hidden = 32;
  c.encoder.summary_dim = 8;
  c.encoder.head_hidden = 16;
  c.flow.layers = 3;
  c.flow.hidden = 16;
  c.flow.context_hidden = 16;
  c.flow.bins = 4;
  return c;
}

cnn::TrainConfig CnnConfig(const fs::path& dir) {
  cnn::TrainConfig c;
  c.output = (dir / "cnn.pt").string();
  c.epochs = 3;
  c.batch_size = 32;
  c.batches_per_epoch = 4;
  c.lr = 1e-3;
  c.seed = 4;
  c.threads = 1;
  c.arch.channels = {4, 8, 8};
  c.arch.spec_hidden = 32;
  return c;
}

}  // namespace

TEST(TrainThreads, OpenBlasPoolFollowsTheConfiguration) {
  if (SkipWithoutOpenBlas()) GTEST_SKIP() << "libtorch does not use OpenBLAS here";
  const auto lib = MakeLibrary(200);
  auto dir = TempDir("pool");
  kSetBlasThreads(2);
  auto cfg = CnnConfig(dir);
  cfg.epochs = 1;
  ASSERT_TRUE(cnn::Train(cfg, lib).ok());
  EXPECT_EQ(kGetBlasThreads(), 1);
  // threads: 0 keeps libtorch's count (1 since the last run) and gives OpenBLAS as many.
  kSetBlasThreads(2);
  cfg.threads = 0;
  ASSERT_TRUE(cnn::Train(cfg, lib).ok());
  EXPECT_EQ(kGetBlasThreads(), 1);
  kSetBlasThreads(2);
  auto scfg = SbiConfig(dir);
  scfg.epochs = scfg.flow_epochs = 1;
  ASSERT_TRUE(sbi::Train(scfg, lib, nullptr).ok());
  EXPECT_EQ(kGetBlasThreads(), 1);
  fs::remove_all(dir);
}

TEST(TrainThreads, SbiResumeIsExactWhateverThePoolWasBefore) {
  if (SkipWithoutOpenBlas()) GTEST_SKIP() << "libtorch does not use OpenBLAS here";
  const auto lib = MakeLibrary(600);
  auto dir_a = TempDir("sbi_a"), dir_b = TempDir("sbi_b");
  kSetBlasThreads(2);  // as with OPENBLAS_NUM_THREADS=2, or after an SbiModel call with threads 2
  auto ra = sbi::Train(SbiConfig(dir_a), lib, nullptr);
  ASSERT_TRUE(ra.ok()) << ra.status().message();
  auto cfg_b = SbiConfig(dir_b);
  volatile int stop = 0;
  kSetBlasThreads(1);
  auto rb1 = sbi::Train(cfg_b, lib, nullptr, [&](const sbi::EpochReport& e) { if (e.stage == "flow") stop = 1; },
                        &stop);
  ASSERT_TRUE(rb1.ok()) << rb1.status().message();
  ASSERT_TRUE(rb1->interrupted);
  cfg_b.resume = true;
  stop = 0;
  kSetBlasThreads(2);
  auto rb2 = sbi::Train(cfg_b, lib, nullptr, {}, &stop);
  ASSERT_TRUE(rb2.ok()) << rb2.status().message();
  ASSERT_EQ(rb2->flow_train.size(), ra->flow_train.size());
  for (size_t e = 0; e < ra->encoder_val.size(); ++e)
    EXPECT_EQ(rb2->encoder_val[e], ra->encoder_val[e]) << "encoder epoch " << e + 1;
  for (size_t e = 0; e < ra->flow_train.size(); ++e) {
    EXPECT_EQ(rb2->flow_train[e], ra->flow_train[e]) << "flow epoch " << e + 1;
    EXPECT_EQ(rb2->flow_val[e], ra->flow_val[e]) << "flow epoch " << e + 1;
  }
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}

TEST(TrainThreads, CnnResumeIsExactWhateverThePoolWasBefore) {
  if (SkipWithoutOpenBlas()) GTEST_SKIP() << "libtorch does not use OpenBLAS here";
  const auto lib = MakeLibrary(300);
  auto dir_a = TempDir("cnn_a"), dir_b = TempDir("cnn_b");
  kSetBlasThreads(2);
  auto ra = cnn::Train(CnnConfig(dir_a), lib);
  ASSERT_TRUE(ra.ok()) << ra.status().message();
  auto cfg_b = CnnConfig(dir_b);
  volatile int stop = 0;
  kSetBlasThreads(1);
  auto rb1 = cnn::Train(cfg_b, lib, [&](const cnn::EpochReport& e) { if (e.epoch == 1) stop = 1; }, &stop);
  ASSERT_TRUE(rb1.ok() && rb1->interrupted);
  cfg_b.resume = true;
  kSetBlasThreads(2);
  auto rb2 = cnn::Train(cfg_b, lib);
  ASSERT_TRUE(rb2.ok()) << rb2.status().message();
  ASSERT_EQ(rb2->val_losses.size(), ra->val_losses.size());
  for (size_t e = 0; e < ra->val_losses.size(); ++e) {
    EXPECT_EQ(rb2->train_losses[e], ra->train_losses[e]) << "epoch " << e + 1;
    EXPECT_EQ(rb2->val_losses[e], ra->val_losses[e]) << "epoch " << e + 1;
  }
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}
