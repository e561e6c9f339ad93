// The arguments of `cubeflow evaluate` for CNN and SBI models (libs/nn/src/command_args.hpp):
// --help prints the usage and succeeds, a bad value names the option and the value, and the
// usage follows every argument error (exit code 2). No model is loaded.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cubeflow/nn/commands.hpp"
#include "cubeflow/nn/sbi_train.hpp"

using namespace cubeflow;

namespace {

struct Outcome {
  int code;
  std::string out, err;
};

Outcome RunMain(int (*main_fn)(int, char**), std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const int code = main_fn(static_cast<int>(argv.size()), argv.data());
  Outcome o{code, testing::internal::GetCapturedStdout(), testing::internal::GetCapturedStderr()};
  return o;
}

}  // namespace

TEST(EvaluateArgs, HelpPrintsTheUsageAndSucceeds) {
  for (auto main_fn : {cnn::EvaluateMain, sbi::EvaluateMain}) {
    const Outcome o = RunMain(main_fn, {"evaluate", "--help"});
    EXPECT_EQ(o.code, 0);
    EXPECT_EQ(o.out.rfind("usage: cubeflow evaluate ", 0), 0u) << o.out;
    EXPECT_TRUE(o.err.empty()) << o.err;
  }
}

TEST(EvaluateArgs, BadValuesNameTheOptionAndTheValue) {
  Outcome o = RunMain(cnn::EvaluateMain, {"evaluate", "m.pt", "lib.fits", "--rows", "many"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("cubeflow evaluate: option --rows: 'many' is not a number\nusage: "), std::string::npos) << o.err;
  o = RunMain(cnn::EvaluateMain, {"evaluate", "m.pt", "lib.fits", "--first", "2.5"});
  EXPECT_NE(o.err.find("option --first: '2.5' is not a whole number"), std::string::npos) << o.err;
  o = RunMain(cnn::EvaluateMain, {"evaluate", "m.pt", "lib.fits", "--snr", "10,x"});
  EXPECT_NE(o.err.find("--snr: 'x' is not a positive number (give e.g. 5,10,20,35,50,100)"), std::string::npos) << o.err;
  o = RunMain(cnn::EvaluateMain, {"evaluate", "m.pt", "lib.fits", "--seed", "-3"});
  EXPECT_NE(o.err.find("option --seed: '-3' is not a non-negative whole number"), std::string::npos) << o.err;
  o = RunMain(cnn::EvaluateMain, {"evaluate", "m.pt", "lib.fits", "--json"});
  EXPECT_NE(o.err.find("option --json needs a value"), std::string::npos) << o.err;
  o = RunMain(cnn::EvaluateMain, {"evaluate", "m.pt"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("MODEL and LIBRARY are required"), std::string::npos) << o.err;
  o = RunMain(sbi::EvaluateMain, {"evaluate", "m.pt", "lib.fits", "--add-noise", "20,-5"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("--add-noise: '-5' is not a positive number (give e.g. 15,20,35,50)"), std::string::npos)
      << o.err;
  o = RunMain(sbi::EvaluateMain, {"evaluate", "m.pt", "lib.fits", "--samples", "1"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("--samples must be at least 2 (got 1)"), std::string::npos) << o.err;
  o = RunMain(sbi::EvaluateMain, {"evaluate", "m.pt", "lib.fits", "--bogus"});
  EXPECT_NE(o.err.find("unexpected argument '--bogus'"), std::string::npos) << o.err;
  // Arguments are fine, the model is missing: exit code 1 and the loader's message.
  o = RunMain(sbi::EvaluateMain, {"evaluate", "no_such_model.pt", "lib.fits"});
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("SBI model file no_such_model.pt does not exist"), std::string::npos) << o.err;
}
