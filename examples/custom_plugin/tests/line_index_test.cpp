// Tests of custom.line_index: a per-bin stream node (one item per call), driven with
// cubeflow's FakeContext, and of its measurement function MeasureIndex.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <cubeflow/data.hpp>
#include <cubeflow/spectral/spectral_ops.hpp>
#include <cubeflow/testing/fake_context.hpp>

#include "line_index.hpp"

namespace {

using namespace cubeflow;
using cubeflow::testing::FakeContext;
using cubeflow::testing::MakeNode;

constexpr double kSqrt2Pi = 2.5066282746310002;

/// A spectrum on start + step * i (i < n): continuum 100 (1 + slope (l - 5000)) times a Gaussian
/// absorption line of relative depth `depth` (equivalent width depth * sigma * sqrt(2 pi)).
std::shared_ptr<Spectrum> LineSpectrum(double centre, double sigma, double depth, double start = 4750.0,
                                       double step = 1.25, int64_t n = 480, double slope = 2e-4) {
  auto s = std::make_shared<Spectrum>();
  s->wave = WavelengthAxis::Linear(start, step, n);
  s->rest_frame = true;
  for (int64_t i = 0; i < n; ++i) {
    const double l = s->wave.At(i);
    const double g = std::exp(-0.5 * std::pow((l - centre) / sigma, 2));
    s->flux.push_back(100.0 * (1 + slope * (l - 5000)) * (1 - depth * g));
    s->variance.push_back(4.0);
  }
  return s;
}

double Field(const Record& r, const std::string& name) { return r.fields.at(name).values.at(0); }

TEST(LineIndex, MeasuresTheEquivalentWidthOfAGaussianLine) {
  FakeContext ctx("mgb", "custom.line_index");
  auto spectrum = LineSpectrum(5175.0, 3.0, 0.3);
  spectrum->quality = kQualBroaderThanTarget;
  ctx.AddItem(42, {{"spectra", spectrum}});  // one stream item: bin 42
  MakeNode<custom::LineIndexNode>()->Process(ctx);

  ASSERT_EQ(ctx.emissions().size(), 1u);
  EXPECT_EQ(ctx.emissions()[0].port, "records");
  EXPECT_EQ(ctx.emissions()[0].key, 42);
  const auto& rec = static_cast<const Record&>(*ctx.emissions()[0].data);
  EXPECT_EQ(rec.id, 42);
  EXPECT_EQ(rec.quality, kQualBroaderThanTarget);  // passed on
  EXPECT_NEAR(Field(rec, "mgb"), 0.3 * 3.0 * kSqrt2Pi, 2e-3);
  EXPECT_EQ(rec.fields.at("mgb").unit, "Angstrom");
  EXPECT_GT(Field(rec, "mgb_err"), 0.0);
  EXPECT_EQ(rec.fields.at("mgb_err").unit, "Angstrom");
}

TEST(LineIndex, ErrorAgreesWithTheScatterOfNoisyRealisations) {
  const custom::IndexBands& mgb = *custom::FindLickIndex("Mgb");
  const auto clean = LineSpectrum(5175.0, 3.0, 0.3);
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 2.0);  // variance 4, as declared
  const int runs = 1000;
  double sum = 0, sum2 = 0, reported = 0;
  for (int k = 0; k < runs; ++k) {
    Spectrum s = *clean;
    for (auto& f : s.flux) f += noise(rng);
    const custom::IndexMeasurement m = custom::MeasureIndex(s, mgb);
    sum += m.value;
    sum2 += m.value * m.value;
    reported += m.error / runs;
  }
  const double mean = sum / runs, scatter = std::sqrt(sum2 / runs - mean * mean);
  EXPECT_NEAR(scatter / reported, 1.0, 0.07) << "scatter " << scatter << ", reported error " << reported;
  EXPECT_NEAR(mean, 0.3 * 3.0 * kSqrt2Pi, 5 * reported / std::sqrt(runs));
}

TEST(LineIndex, MolecularIndexInMagnitudes) {
  // Mg2's red continuum band reaches 5366 Angstrom: a longer spectrum.
  auto s = LineSpectrum(5175.0, 3.0, 0.3, 4750.0, 1.25, 560);
  const custom::IndexMeasurement m = custom::MeasureIndex(*s, *custom::FindLickIndex("Mg2"));
  const double width = 5196.625 - 5154.125;
  EXPECT_NEAR(m.value, -2.5 * std::log10(1.0 - 0.3 * 3.0 * kSqrt2Pi / width), 1e-4);
  EXPECT_GT(m.error, 0.0);
}

TEST(LineIndex, ObservedFrameSpectraUseTheRedshift) {
  const double z = 0.01;
  auto observed = LineSpectrum(5175.0 * (1 + z), 3.0 * (1 + z), 0.3);
  observed->rest_frame = false;
  FakeContext ctx;
  ctx.AddItem(0, {{"spectra", observed}});
  MakeNode<custom::LineIndexNode>({{"z", z}})->Process(ctx);
  // The equivalent width is a rest-frame one: the observed line is (1 + z) wider.
  EXPECT_NEAR(Field(static_cast<const Record&>(*ctx.Emitted("records").at(0)), "mgb"), 0.3 * 3.0 * kSqrt2Pi, 2e-3);

  // Without z the bands miss the line.
  const custom::IndexMeasurement unshifted = custom::MeasureIndex(*observed, *custom::FindLickIndex("Mgb"), 0.0);
  EXPECT_LT(std::abs(unshifted.value), 0.5);

  // Rest-frame spectra ignore z.
  FakeContext rest;
  rest.AddItem(0, {{"spectra", LineSpectrum(5175.0, 3.0, 0.3)}});
  MakeNode<custom::LineIndexNode>({{"z", z}})->Process(rest);
  EXPECT_NEAR(Field(static_cast<const Record&>(*rest.Emitted("records").at(0)), "mgb"), 0.3 * 3.0 * kSqrt2Pi, 2e-3);
}

TEST(LineIndex, VacuumSpectraGetTheBandsInVacuum) {
  // A narrow custom band around a narrow line, on 0.1 Angstrom pixels: the 1.4 Angstrom
  // air-to-vacuum shift matters. Band +-3 sigma: EW = depth sigma sqrt(2 pi) erf(3 / sqrt 2).
  custom::IndexBands narrow{"narrow", 5172.0, 5178.0, 5140.0, 5150.0, 5200.0, 5210.0, false};
  auto vacuum = LineSpectrum(spectral::AirToVacuum(5175.0), 1.0, 0.3, 5100.0, 0.1, 1500);
  vacuum->wave.air = false;
  const double want = 0.3 * kSqrt2Pi * std::erf(3.0 / std::sqrt(2.0));
  EXPECT_NEAR(custom::MeasureIndex(*vacuum, narrow).value, want, 2e-3);
  // Read as air wavelengths, the same pixels put the line off-centre in the band.
  vacuum->wave.air = true;
  EXPECT_LT(custom::MeasureIndex(*vacuum, narrow).value, want - 0.03);
}

TEST(LineIndex, BadPixelsAreLeftOutAndTooFewGiveNaN) {
  // No line on a sloped continuum: EW 0 whatever is left out (the continuum goes through each
  // side band's mean at the mean wavelength of its good pixels).
  auto s = LineSpectrum(5175.0, 3.0, 0.0);
  s->mask.assign(s->flux.size(), 0);
  const int64_t centre = static_cast<int64_t>(std::lround(s->wave.PixelOf(5175.0)));
  s->flux[centre] = std::nan("");
  s->mask[centre + 2] = 1;
  for (int64_t i = 0; i < s->wave.n; ++i)
    if (s->wave.At(i) > 5193.0 && s->wave.At(i) < 5204.0) s->mask[i] = 1;  // most of the red band
  const custom::IndexMeasurement m = custom::MeasureIndex(*s, *custom::FindLickIndex("Mgb"));
  EXPECT_NEAR(m.value, 0.0, 1e-9);
  EXPECT_LT(m.good_fraction, 0.5);

  FakeContext ctx;
  ctx.AddItem(3, {{"spectra", s}});
  MakeNode<custom::LineIndexNode>()->Process(ctx);  // min_good_fraction 0.8
  const auto& rec = static_cast<const Record&>(*ctx.Emitted("records").at(0));
  EXPECT_TRUE(std::isnan(Field(rec, "mgb")));
  EXPECT_TRUE(std::isnan(Field(rec, "mgb_err")));

  FakeContext lenient;
  lenient.AddItem(3, {{"spectra", s}});
  MakeNode<custom::LineIndexNode>({{"min_good_fraction", 0.2}})->Process(lenient);
  EXPECT_NEAR(Field(static_cast<const Record&>(*lenient.Emitted("records").at(0)), "mgb"), 0.0, 1e-9);
}

TEST(LineIndex, BandOutsideTheSpectrumFailsNamingTheBand) {
  FakeContext ctx;
  ctx.AddItem(0, {{"spectra", LineSpectrum(5175.0, 3.0, 0.3)}});  // 4749.375-5349.375 Angstrom
  auto node = MakeNode<custom::LineIndexNode>({{"index", std::string("Fe5335")}});
  try {
    node->Process(ctx);
    FAIL() << "Fe5335 measured beyond the spectrum";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "the red continuum band of index Fe5335 (5353.375-5363.375 Angstrom rest frame, 5353.375-5363.375 in the "
              "spectrum's frame) is outside the spectrum (4749.375-5349.375 Angstrom); choose an index inside it");
  }
}

TEST(LineIndex, CustomBandsNeedBandsAndAName) {
  try {
    MakeNode<custom::LineIndexNode>({{"index", std::string("custom")}, {"blue", std::vector<double>{5140, 5150}}});
    FAIL() << "custom index without bands accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("band: give [lo, hi] with lo < hi"), std::string::npos) << msg;
    EXPECT_NE(msg.find("red: give [lo, hi]"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("blue:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("name: give the record field of a custom index"), std::string::npos) << msg;
  }

  FakeContext ctx;
  ctx.AddItem(1, {{"spectra", LineSpectrum(5175.0, 3.0, 0.3)}});
  MakeNode<custom::LineIndexNode>({{"index", std::string("custom")},
                                   {"band", std::vector<double>{5165, 5185}},
                                   {"blue", std::vector<double>{5140, 5150}},
                                   {"red", std::vector<double>{5200, 5210}},
                                   {"name", std::string("mg_narrow")}})
      ->Process(ctx);
  const auto& rec = static_cast<const Record&>(*ctx.Emitted("records").at(0));
  EXPECT_NEAR(Field(rec, "mg_narrow"), 0.3 * 3.0 * kSqrt2Pi * std::erf(10.0 / 3.0 / std::sqrt(2.0)), 2e-3);
  EXPECT_EQ(rec.fields.count("mg_narrow_err"), 1u);
}

TEST(LineIndex, CheckWarnsAboutBandsGivenWithALickIndex) {
  const NodeSpec spec = custom::LineIndexNode::Spec();
  const CheckReport report =
      spec.RunChecks(cubeflow::testing::DefaultParams(spec, {{"band", std::vector<double>{5160, 5190}}}));
  EXPECT_FALSE(report.has_errors());
  ASSERT_EQ(report.issues().size(), 1u);
  EXPECT_EQ(report.issues()[0].param, "band");
  EXPECT_EQ(report.issues()[0].message, "ignored: index is Mgb (use index: custom for your own bands)");
}

}  // namespace
