// inference.stellar_mass: the mass of a bin whose history and dust are known, failures flagged
// (never dropped), and errors that say what to connect.
#include <gtest/gtest.h>

#include <cmath>

#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/rng.hpp"
#include "cubeflow/sim/sfh.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/sim/stellar_mass.hpp"
#include "cubeflow/testing/fake_context.hpp"
#include "stellar_mass_node.hpp"

using namespace cubeflow;
using namespace cubeflow::inference;

namespace {

constexpr double kDistanceMpc = 10.0;
constexpr double kMass = 3.0e6;  // M_sun formed

/// cnn_builtin's training library: the built-in SSPs with dust and lines (its library_config).
std::shared_ptr<const sim::ForwardModel> BuiltinModel() {
  sim::SimConfig c;
  c.noise.enabled = false;
  return *sim::ForwardModel::Build(sim::BuiltinSsp(), c);
}

struct Bin {
  std::shared_ptr<Spectrum> spectrum;
  std::shared_ptr<Record> results;
};

/// A noiseless bin of kMass formed at kDistanceMpc, with its labels as a CNN record.
Bin MakeBin(const sim::ForwardModel& m, double tau_ism) {
  sim::Rng rng(5, 0, 0);
  const sim::Sfh sfh = sim::DrawSfh(m.config().sfh, sim::SfhKind::kNonParametric, rng);
  const sim::BinnedSfh binned = sim::IntegrateSfh(sfh, m.time_grid());
  const sim::SfhLabels labels = sim::ComputeLabels(sfh, m.time_grid(), binned);
  const double tau_bc = std::sqrt(m.config().dust.tau_bc_min * m.config().dust.tau_bc_max);
  sim::Rendered r;
  m.Render(binned, sim::DustParams{tau_bc, tau_ism}, 0.019, &r);
  const double d_cm = kDistanceMpc * 1e6 * sim::kParsecCm;
  const double window_cgs = kMass * r.norm * sim::kSolarLuminosityErg / (4 * M_PI * d_cm * d_cm);
  Bin b;
  b.spectrum = std::make_shared<Spectrum>();
  b.spectrum->rest_frame = true;
  b.spectrum->wave = m.config().obs.wave;
  for (float f : r.flux) b.spectrum->flux.push_back(f / r.norm);
  b.spectrum->variance.assign(r.flux.size(), 1e-4);
  b.spectrum->norm = window_cgs / 1e-20;  // the cube's BUNIT: 10**(-20) erg/s/cm**2/Angstrom
  b.spectrum->meta["bunit_scale"] = 1e-20;
  b.spectrum->meta["nspax"] = 4;
  b.results = std::make_shared<Record>();
  std::vector<double> mf(labels.mass_frac.begin(), labels.mass_frac.end()), zh(labels.zh.begin(), labels.zh.end());
  b.results->SetVector("mass_frac", mf);
  b.results->SetVector("zh", zh);
  return b;
}

std::unique_ptr<Node> MassNode() {
  return cubeflow::testing::MakeNode<StellarMassNode>(
      {{"model", std::string("cnn_builtin")}, {"distance_mpc", kDistanceMpc}, {"pixel_scale", 0.2}});
}

double Field(const Record& r, const std::string& k) { return r.fields.at(k).values.at(0); }

}  // namespace

TEST(StellarMassNode, RecoversTheMassOfAKnownBin) {
  auto m = BuiltinModel();
  auto node = MassNode();
  for (double tau : {0.1, 0.6}) {
    Bin b = MakeBin(*m, tau);
    cubeflow::testing::FakeContext ctx("mass", "inference.stellar_mass");
    ctx.AddItem(7, {{"spectra", b.spectrum}, {"results", b.results}});
    node->Process(ctx);
    auto out = ctx.Output<Record>("results");
    ASSERT_TRUE(out);
    EXPECT_EQ(out->id, 7);
    // The age-bin history spreads each bin's mass evenly: within 3 % of the truth, dust recovered.
    EXPECT_NEAR(Field(*out, "mass_formed") / kMass, 1.0, 0.03) << "tau " << tau;
    EXPECT_NEAR(Field(*out, "tau_ism_fit"), tau, 0.05);
    const double pc2 = std::pow(0.2 / 206264.80624709636 * kDistanceMpc * 1e6, 2) * 4;
    EXPECT_NEAR(Field(*out, "mstar_density") * pc2 / Field(*out, "mstar"), 1.0, 1e-9);
    EXPECT_NEAR(Field(*out, "mstar_density_kpc") / Field(*out, "mstar_density"), 1e6, 1e-3);
    EXPECT_LT(Field(*out, "mstar"), Field(*out, "mass_formed"));
    EXPECT_EQ(out->fields.at("mstar_density").unit, "solMass/pc**2");
    EXPECT_NEAR(Field(*out, "log_mstar_density_err"), 0.1, 0.01) << "ml_error_dex dominates a clean bin";
    EXPECT_EQ(out->quality & kQualInferenceFailed, 0u);
  }
}

TEST(StellarMassNode, AFailedFitIsFlaggedNotDropped) {
  auto m = BuiltinModel();
  auto node = MassNode();
  Bin b = MakeBin(*m, 0.3);
  auto bad = std::make_shared<Spectrum>(*b.spectrum);
  bad->flux.assign(bad->flux.size(), std::nan(""));
  cubeflow::testing::FakeContext ctx("mass", "inference.stellar_mass");
  ctx.AddItem(3, {{"spectra", bad}, {"results", b.results}});
  node->Process(ctx);
  auto out = ctx.Output<Record>("results");
  ASSERT_TRUE(out);
  EXPECT_NE(out->quality & kQualInferenceFailed, 0u);
  EXPECT_TRUE(std::isnan(Field(*out, "mass_formed")));
  EXPECT_TRUE(std::isnan(Field(*out, "mstar_density")));
  ASSERT_FALSE(ctx.logs().empty());
  EXPECT_NE(ctx.logs().back().second.find("bin 3"), std::string::npos) << ctx.logs().back().second;
}

TEST(StellarMassNode, ErrorsSayWhatToConnect) {
  auto m = BuiltinModel();
  auto node = MassNode();
  Bin b = MakeBin(*m, 0.3);
  auto no_unit = std::make_shared<Spectrum>(*b.spectrum);
  no_unit->meta.erase("bunit_scale");
  cubeflow::testing::FakeContext ctx("mass", "inference.stellar_mass");
  ctx.AddItem(1, {{"spectra", no_unit}, {"results", b.results}});
  try {
    node->Process(ctx);
    FAIL() << "no error without a flux unit";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BUNIT"), std::string::npos) << e.what();
  }
  cubeflow::testing::FakeContext ctx2("mass", "inference.stellar_mass");
  ctx2.AddItem(1, {{"spectra", b.spectrum}, {"results", std::make_shared<Record>()}});
  try {
    node->Process(ctx2);
    FAIL() << "no error for results without a history";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inference.cnn"), std::string::npos) << e.what();
  }
  // Without pixel_scale and without a binning there is no area.
  auto no_scale = cubeflow::testing::MakeNode<StellarMassNode>(
      {{"model", std::string("cnn_builtin")}, {"distance_mpc", kDistanceMpc}});
  cubeflow::testing::FakeContext ctx3("mass", "inference.stellar_mass");
  ctx3.AddItem(1, {{"spectra", b.spectrum}, {"results", b.results}});
  try {
    no_scale->Process(ctx3);
    FAIL() << "no error without a pixel scale";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pixel_scale"), std::string::npos) << e.what();
  }
}
