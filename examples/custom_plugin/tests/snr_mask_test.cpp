// Tests of custom.snr_mask: a node called once per run, driven with cubeflow's FakeContext.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include <cubeflow/data.hpp>
#include <cubeflow/testing/fake_context.hpp>

#include "snr_mask.hpp"

namespace {

using namespace cubeflow;
using cubeflow::testing::FakeContext;
using cubeflow::testing::MakeNode;

std::shared_ptr<Map> SnrMap() {
  auto m = std::make_shared<Map>();
  m->name = "SNR";
  m->nx = 3;
  m->ny = 2;
  m->data = {10.0, 4.9, std::numeric_limits<double>::quiet_NaN(), 5.0, 0.0, std::numeric_limits<double>::infinity()};
  m->wcs.cards = "CTYPE1  = 'RA---TAN'";
  return m;
}

TEST(SnrMask, MasksLowAndMissingSnrWithQualityBits) {
  FakeContext ctx("mask", "custom.snr_mask");
  ctx.SetInput("snr", SnrMap());
  auto node = MakeNode<custom::SnrMaskNode>({{"threshold", 5.0}});
  node->Process(ctx);

  auto mask = ctx.Output<Map>("mask");
  ASSERT_NE(mask, nullptr);
  EXPECT_EQ(mask->name, "SNR_MASK");
  EXPECT_EQ(mask->kind, "mask");
  EXPECT_EQ(mask->companion_of, "SNR");
  EXPECT_EQ(mask->nx, 3);
  EXPECT_EQ(mask->ny, 2);
  EXPECT_EQ(mask->wcs.cards, "CTYPE1  = 'RA---TAN'");
  // S/N 5.0 is not below the threshold; NaN and inf have no S/N.
  const double want[] = {0, kQualLowSnr, kQualNoCoverage, 0, kQualLowSnr, kQualNoCoverage};
  ASSERT_EQ(mask->data.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(mask->data[i], want[i]) << "spaxel " << i;
  EXPECT_TRUE(ctx.Logged("2 of 6 spaxels below S/N 5, 2 without S/N"));
}

TEST(SnrMask, DefaultsComeFromTheOptionsStruct) {
  const NodeSpec spec = custom::SnrMaskNode::Spec();
  ASSERT_NE(spec.FindParam("threshold"), nullptr);
  EXPECT_EQ(std::get<double>(spec.FindParam("threshold")->default_value()), 3.0);
  EXPECT_EQ(std::get<std::string>(spec.FindParam("name")->default_value()), "SNR_MASK");

  FakeContext ctx;
  ctx.SetInput("snr", SnrMap());
  MakeNode<custom::SnrMaskNode>({{"name", std::string("LOWSNR")}})->Process(ctx);
  EXPECT_EQ(ctx.Output<Map>("mask")->name, "LOWSNR");
  EXPECT_EQ(ctx.Output<Map>("mask")->data[1], 0.0);          // S/N 4.9 passes the default threshold 3
  EXPECT_EQ(ctx.Output<Map>("mask")->data[4], kQualLowSnr);  // S/N 0 does not
}

TEST(SnrMask, CheckRejectsAnEmptyName) {
  try {
    MakeNode<custom::SnrMaskNode>({{"name", std::string("")}});
    FAIL() << "an empty name was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("name: must not be empty"), std::string::npos) << e.what();
  }
}

TEST(SnrMask, MissingInputNamesThePort) {
  FakeContext ctx;
  auto node = MakeNode<custom::SnrMaskNode>();
  try {
    node->Process(ctx);
    FAIL() << "no exception without input";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "input 'snr' has no data");
  }
}

}  // namespace
