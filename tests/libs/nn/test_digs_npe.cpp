// The DIGS NPE (cubeflow/nn/digs_npe.hpp): the posterior check passes a calibrated, informative
// sampler and fails a sampler that returns the prior, an overconfident one and a biased one; the
// pipeline library -> `cubeflow train` (kind: digs) -> `cubeflow evaluate` runs end to end on a
// tiny library (one epoch: the figures of such a model mean nothing; docs/digs.md has the real run).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <yaml-cpp/yaml.h>

#include "cubeflow/nn/commands.hpp"
#include "cubeflow/nn/digs_npe.hpp"
#include "cubeflow/sim/digs_library.hpp"

using namespace cubeflow;

namespace {

constexpr int K = digs::kNumParams;
const std::array<double, K> kLo = {8, -2, 0.1, 0, 0.1}, kHi = {13, 0.2, 10, 4, 1};

struct Draws {
  int64_t n = 1000, s = 200;
  std::vector<double> truth;
  std::vector<float> samples;
};

double PriorDraw(int k, std::mt19937_64& g) {
  std::uniform_real_distribution<double> u(0, 1);
  return k == 4 ? kLo[k] * std::pow(kHi[k] / kLo[k], u(g)) : kLo[k] + u(g) * (kHi[k] - kLo[k]);
}

// kind: "oracle" (the exact posterior of a Gaussian measurement, sd 2 % of the prior range, flat
// prior), "prior" (prior draws whatever the data), "overconfident" (the oracle's widths / 3),
// "biased" (the oracle shifted by 2 sd).
Draws Make(const std::string& kind) {
  Draws d;
  std::mt19937_64 g(7);
  std::normal_distribution<double> z(0, 1);
  d.truth.resize(d.n * K);
  d.samples.resize(d.n * d.s * K);
  for (int64_t i = 0; i < d.n; ++i)
    for (int k = 0; k < K; ++k) {
      const double t = PriorDraw(k, g), sd = 0.02 * (kHi[k] - kLo[k]);
      d.truth[i * K + k] = t;
      const double obs = t + sd * z(g);
      for (int64_t j = 0; j < d.s; ++j) {
        double v;
        if (kind == "prior") v = PriorDraw(k, g);
        else if (kind == "overconfident") v = obs + sd / 3 * z(g);
        else if (kind == "biased") v = obs + 2 * sd + sd * z(g);
        else v = obs + sd * z(g);
        d.samples[(i * d.s + j) * K + k] = static_cast<float>(v);
      }
    }
  return d;
}

std::vector<digs::ParamCheck> Check(const Draws& d) {
  return digs::CheckPosteriors(d.samples, d.n, d.s, d.truth, kLo, kHi);
}

std::string Temp(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("cubeflow_digs_npe_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

}  // namespace

TEST(DigsNpeCheck, PassesACalibratedInformativeSampler) {
  const auto d = Make("oracle");
  const auto c = Check(d);
  const Status v = digs::Verdict(c, d.n);
  EXPECT_TRUE(v.ok()) << v.message();
  EXPECT_GT(c[0].r2, 0.99);
  EXPECT_NEAR(c[0].width_ratio, 0.04 / 0.68, 0.01);  // 2 sd / (q84 - q16 of a uniform prior)
}

TEST(DigsNpeCheck, FailsASamplerThatReturnsThePrior) {
  const auto d = Make("prior");
  const auto c = Check(d);
  // The prior is calibrated: coverage and SBC alone would pass it ...
  for (int k = 0; k < K; ++k) {
    EXPECT_NEAR(c[k].cov68, 0.68, 0.05) << k;
    EXPECT_LT(c[k].sbc_chi2, 43.8) << k;
    EXPECT_NEAR(c[k].width_ratio, 1.0, 0.1) << k;
    EXPECT_LT(c[k].r2, 0.05) << k;
  }
  // ... the verdict does not: it carries no information.
  const Status v = digs::Verdict(c, d.n);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.message().find("log_mass width / prior width"), std::string::npos) << v.message();
  EXPECT_NE(v.message().find("uninformative"), std::string::npos) << v.message();
}

TEST(DigsNpeCheck, FailsOverconfidentAndBiasedSamplers) {
  const auto over = Make("overconfident");
  const Status vo = digs::Verdict(Check(over), over.n);
  ASSERT_FALSE(vo.ok());
  EXPECT_NE(vo.message().find("cov68"), std::string::npos) << vo.message();
  EXPECT_NE(vo.message().find("SBC"), std::string::npos) << vo.message();
  const auto biased = Make("biased");
  const auto cb = Check(biased);
  EXPECT_NEAR(cb[0].bias, 2 * 0.02 * 5, 0.01);
  ASSERT_FALSE(digs::Verdict(cb, biased.n).ok());
}

TEST(DigsNpePipeline, LibraryTrainEvaluateRunEndToEnd) {
  auto model = sim::DigsModel::Build(sim::BuiltinSsp(), sim::DigsConfig());
  ASSERT_TRUE(model.ok());
  const std::string train_lib = Temp("train.fits"), test_lib = Temp("test.fits"), cfg = Temp("train.yaml");
  ASSERT_TRUE(sim::WriteDigsLibrary(**model, 901, 2000, "builtin", train_lib).ok());
  ASSERT_TRUE(sim::WriteDigsLibrary(**model, 902, 40, "builtin", test_lib).ok());
  {
    std::ofstream f(cfg);
    f << "kind: digs\nlibrary: train.fits\noutput: out/model.pt\nepochs: 1\nbatch_size: 256\nseed: 3\nthreads: 1\n"
         "arch: {hidden: [64, 64], summary: 16, flow: {layers: 2, hidden: 32, context_hidden: 32, bins: 4}}\n";
  }
  ASSERT_TRUE(digs::IsDigsYaml(cfg));
  const char* targv[] = {"train", cfg.c_str()};
  ASSERT_EQ(nn::TrainCommand(2, const_cast<char**>(targv)), 0);
  const std::string pt = Temp("out/model.pt");
  ASSERT_TRUE(std::filesystem::exists(pt));
  ASSERT_TRUE(digs::IsDigsYaml(pt + ".yaml"));
  testing::internal::CaptureStdout();
  const char* eargv[] = {"evaluate", pt.c_str(), test_lib.c_str(), "--samples", "50"};
  const int rc = nn::EvaluateCommand(5, const_cast<char**>(eargv));
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0) << out;
  for (const char* p : {"log_mass", "log_z", "dust", "t_age", "tau", "verdict:", "NPE wall time"})
    EXPECT_NE(out.find(p), std::string::npos) << p << "\n" << out;
  // Noise realisations of one parameter set (`cubeflow digs library --theta`): no R^2, no verdict.
  {
    const double values[] = {10.51, -0.41, 0.65, 1.63, 0.11};
    const auto fixed = sim::DigsTheta::FromArray(values);
    const std::string fix_lib = Temp("fixed.fits");
    ASSERT_TRUE(sim::WriteDigsLibrary(**model, 903, 12, "builtin", fix_lib, 65536, &fixed).ok());
    testing::internal::CaptureStdout();
    const char* fargv[] = {"evaluate", pt.c_str(), fix_lib.c_str(), "--samples", "50"};
    EXPECT_EQ(nn::EvaluateCommand(5, const_cast<char**>(fargv)), 0);
    const std::string fout = testing::internal::GetCapturedStdout();
    EXPECT_NE(fout.find("verdict: not made (one parameter set, 12 noise realisations"), std::string::npos) << fout;
    EXPECT_NE(fout.find("\nlog_mass      nan      nan"), std::string::npos) << fout;
  }
  // A bad configuration names the key.
  {
    std::ofstream f(cfg);
    f << "kind: digs\nlibrary: train.fits\noutput: out/model.pt\nepoch: 1\n";
  }
  testing::internal::CaptureStderr();
  EXPECT_EQ(nn::TrainCommand(2, const_cast<char**>(targv)), 1);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("unknown key 'epoch'"), std::string::npos);
  std::filesystem::remove_all(std::filesystem::path(cfg).parent_path());
}

TEST(DigsNpePipeline, ResumeTrainsExactlyAsAnUninterruptedRun) {
  auto model = sim::DigsModel::Build(sim::BuiltinSsp(), sim::DigsConfig());
  ASSERT_TRUE(model.ok());
  const std::string lib = Temp("r_train.fits"), test_lib = Temp("r_test.fits");
  ASSERT_TRUE(sim::WriteDigsLibrary(**model, 911, 1500, "builtin", lib).ok());
  ASSERT_TRUE(sim::WriteDigsLibrary(**model, 912, 20, "builtin", test_lib).ok());
  auto run = [&](const std::string& name, const std::string& extra, bool resume) {
    const std::string cfg = Temp(name + ".yaml");
    {
      std::ofstream f(cfg);
      f << "kind: digs\nlibrary: r_train.fits\noutput: " << name << "/model.pt\nepochs: 3\nbatch_size: 128\n"
           "seed: 5\nthreads: 1\narch: {hidden: [32], summary: 8, flow: {layers: 2, hidden: 16, context_hidden: 16, "
           "bins: 4}}\n" << extra;
    }
    std::vector<const char*> argv = {"train", cfg.c_str()};
    if (resume) argv.push_back("--resume");
    testing::internal::CaptureStderr();
    EXPECT_EQ(nn::TrainCommand(static_cast<int>(argv.size()), const_cast<char**>(argv.data())), 0);
    const std::string log = testing::internal::GetCapturedStderr();
    // The resumed run starts from the checkpoint (a run from scratch would also match `straight`).
    if (resume) EXPECT_NE(log.find("after epoch 1"), std::string::npos) << log;
    const std::string pt = Temp(name + "/model.pt");
    testing::internal::CaptureStdout();
    const char* eargv[] = {"evaluate", pt.c_str(), test_lib.c_str(), "--samples", "20"};
    EXPECT_EQ(nn::EvaluateCommand(5, const_cast<char**>(eargv)), 0);
    std::string out = testing::internal::GetCapturedStdout();
    out = out.substr(out.find("param"));  // the table, without the header naming the file
    return out.substr(0, out.find("NPE wall time"));
  };
  const std::string straight = run("a", "", false);
  const std::string first = run("b", "stop_after_epochs: 1\n", false);
  const std::string resumed = run("b", "", true);
  EXPECT_NE(first, straight);  // one epoch is not three
  EXPECT_EQ(resumed, straight);
  std::filesystem::remove_all(std::filesystem::path(lib).parent_path());
}

// arch.input: shape (the log10 flux less its mean over the pixels, and that mean beside it, also
// handed to the flow) against log_flux (per-pixel standardised log10 flux) on the same library,
// network and budget. With log_flux the mass sets every feature's spread (log M spans 5 dex) and
// the spectral shape that carries dust and age is a small part of it; the shape input learns dust
// and age from the start. The metadata records the mode and its nwave + 1 standardisation, and a
// wrong mode is refused naming the key.
TEST(DigsNpePipeline, ShapeInputLearnsDustAndAgeWhereLogFluxDoesNot) {
  auto model = sim::DigsModel::Build(sim::BuiltinSsp(), sim::DigsConfig());
  ASSERT_TRUE(model.ok());
  const std::string lib = Temp("s_train.fits"), test_lib = Temp("s_test.fits");
  ASSERT_TRUE(sim::WriteDigsLibrary(**model, 921, 40000, "builtin", lib).ok());
  ASSERT_TRUE(sim::WriteDigsLibrary(**model, 922, 400, "builtin", test_lib).ok());
  auto r2_of = [](const std::string& out, const std::string& name) {
    const size_t at = out.find("\n" + name + " ");
    return at == std::string::npos ? -99.0 : std::strtod(out.c_str() + at + 1 + name.size(), nullptr);
  };
  std::map<std::string, std::string> outs;
  for (const std::string mode : {"log_flux", "shape"}) {
    const std::string cfg = Temp(mode + ".yaml");
    {
      std::ofstream f(cfg);
      f << "kind: digs\nlibrary: s_train.fits\noutput: " << mode << "/model.pt\nepochs: 3\nbatch_size: 256\n"
           "seed: 5\nthreads: 1\narch: {input: " << mode << ", hidden: [128, 64], summary: 16, flow: {layers: 6, "
           "hidden: 64, context_hidden: 32, bins: 6}}\n";
    }
    const char* targv[] = {"train", cfg.c_str()};
    testing::internal::CaptureStderr();
    ASSERT_EQ(nn::TrainCommand(2, const_cast<char**>(targv)), 0) << testing::internal::GetCapturedStderr();
    testing::internal::GetCapturedStderr();
    const std::string pt = Temp(mode + "/model.pt");
    const YAML::Node meta = YAML::LoadFile(pt + ".yaml");
    EXPECT_EQ(meta["input"]["mode"].as<std::string>(), mode);
    EXPECT_EQ(meta["input"]["mean"].size(), mode == "shape" ? 139u : 138u);
    testing::internal::CaptureStdout();
    const char* eargv[] = {"evaluate", pt.c_str(), test_lib.c_str(), "--samples", "200", "--threads", "1"};
    EXPECT_EQ(nn::EvaluateCommand(7, const_cast<char**>(eargv)), 0);
    outs[mode] = testing::internal::GetCapturedStdout();
    std::printf("%s\n%s", mode.c_str(), outs[mode].c_str());
  }
  for (const std::string name : {"dust", "t_age"}) {
    const double shape = r2_of(outs["shape"], name), flux = r2_of(outs["log_flux"], name);
    EXPECT_GT(shape, flux + 0.2) << name << ": shape " << shape << ", log_flux " << flux;
  }
  EXPECT_GT(r2_of(outs["shape"], "log_mass"), 0.9);
  EXPECT_GT(r2_of(outs["shape"], "dust"), 0.8);
  {
    std::ofstream f(Temp("bad.yaml"));
    f << "kind: digs\nlibrary: s_train.fits\noutput: bad/model.pt\narch: {input: flux}\n";
  }
  const std::string bad = Temp("bad.yaml");
  const char* bargv[] = {"train", bad.c_str()};
  testing::internal::CaptureStderr();
  EXPECT_EQ(nn::TrainCommand(2, const_cast<char**>(bargv)), 1);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("arch.input must be log_flux or shape, not 'flux'"),
            std::string::npos);
  std::filesystem::remove_all(std::filesystem::path(lib).parent_path());
}

// The shipped DIGS NPE (models/digs_npe_builtin.pt, `INPUT=shape EPOCHS=12 MINUTES=0
// bench/digs_npe.sh`) on the bench's held-out test set (1000 spectra of library seed 20262011,
// used neither for training nor for choosing the model), 1000 posterior samples each: the figures
// docs/digs.md quotes. R^2 of the posterior medians are guarded within 0.02 and the verdict
// (calibrated AND informative; a prior-returning sampler fails it,
// DigsNpeCheck.FailsASamplerThatReturnsThePrior) must pass. The earlier log_flux model had log Z
// R^2 0.14; this guard keeps the 0.84 from getting worse unnoticed.
TEST(DigsNpeShipped, FiguresOnTheHeldOutTestSet) {
  auto model = sim::DigsModel::Build(sim::BuiltinSsp(), sim::DigsConfig());
  ASSERT_TRUE(model.ok());
  const std::string test_lib = Temp("shipped_test.fits");
  ASSERT_TRUE(sim::WriteDigsLibrary(**model, 20262011, 1000, "builtin", test_lib).ok());
  const std::string pt = std::string(CUBEFLOW_MODELS_DIR) + "/digs_npe_builtin.pt";
  testing::internal::CaptureStdout();
  const char* eargv[] = {"evaluate", pt.c_str(), test_lib.c_str(), "--samples", "1000"};
  const int rc = nn::EvaluateCommand(5, const_cast<char**>(eargv));
  const std::string out = testing::internal::GetCapturedStdout();
  std::printf("%s", out.c_str());
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verdict: PASS"), std::string::npos) << out;
  const std::pair<const char*, double> documented[] = {
      {"log_mass", 0.999}, {"log_z", 0.844}, {"dust", 0.996}, {"t_age", 0.838}, {"tau", 0.452}};
  for (const auto& [name, r2] : documented) {
    const size_t at = out.find(std::string("\n") + name + " ");
    ASSERT_NE(at, std::string::npos) << name << "\n" << out;
    const double measured = std::strtod(out.c_str() + at + 1 + std::string(name).size(), nullptr);
    EXPECT_NEAR(measured, r2, 0.02) << name;
  }
  std::filesystem::remove(test_lib);
}
