// kinematics.fit through its NodeSpec factory with cubeflow::testing::FakeContext, and
// spectral.restframe taking kinematics.fit's records on its `kinematics` stream input.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>

#include "cubeflow/data.hpp"
#include "cubeflow/kinematics/mock.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/spectral/lsf.hpp"
#include "cubeflow/testing/fake_context.hpp"

#include <filesystem>

namespace cubeflow::kinematics {
NodeSpec FitNodeSpec();
}
namespace cubeflow::spectral {
void RegisterRestframe(Registry& r);
}

using namespace cubeflow;

namespace {

constexpr double kZ = 0.004;

/// An observed-frame bin spectrum (as binning.voronoi emits) with a known LOSVD.
/// Old and intermediate-age SSPs of the built-in grid (8 metallicities x 40 ages).
std::shared_ptr<Spectrum> FromMaker(const kinematics::MockMaker& maker, double v, double sigma, double snr, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto m = maker.Make({0.5, 0.3, 0.2}, v, sigma, 0, 0, snr, rng);
  auto s = std::make_shared<Spectrum>();
  s->id = 7;
  s->wave = WavelengthAxis::Linear(4750 + 0.625, 1.25, static_cast<int64_t>(m.flux.size()));
  s->flux = m.flux;
  s->variance = m.variance;
  s->mask.assign(m.flux.size(), 0);
  return s;
}

std::shared_ptr<Spectrum> BinSpectrum(double v, double sigma, double snr, uint64_t seed = 1) {
  static const auto grid = sim::BuiltinSsp();
  static const kinematics::MockMaker maker(*grid, spectral::Lsf::Bacon2017(), kZ, {5 * 40 + 38, 4 * 40 + 32, 3 * 40 + 36},
                                           4750, 5700, 1.25);
  return FromMaker(maker, v, sigma, snr, seed);
}

/// The mocks' LSF is the profile before pixelisation (lsf_pixel 0).
std::map<std::string, Value> BaseParams(std::map<std::string, Value> more = {}) {
  std::map<std::string, Value> p = {{"z_sys", kZ}, {"ssp", std::string("builtin")}, {"lsf_pixel", 0.0}};
  for (auto& [k, v] : more) p[k] = v;
  return p;
}

const Record& OnlyRecord(const cubeflow::testing::FakeContext& ctx) {
  auto out = ctx.Emitted("kinematics");
  if (out.size() != 1) throw Error("expected one record");
  return static_cast<const Record&>(*out[0]);
}

double Field(const Record& r, const std::string& k) {
  auto it = r.fields.find(k);
  if (it == r.fields.end()) throw Error("no field " + k);
  return it->second.values.at(0);
}

}  // namespace

TEST(KinematicsFitNode, FitsABinSpectrumIntoARecord) {
  const NodeSpec spec = kinematics::FitNodeSpec();
  auto node = cubeflow::testing::MakeNode(spec, BaseParams());
  cubeflow::testing::FakeContext ctx("kin", "kinematics.fit");
  ctx.AddItem(7, {{"spectra", BinSpectrum(85.0, 130.0, 40.0)}});
  node->Process(ctx);
  const Record& r = OnlyRecord(ctx);
  EXPECT_EQ(ctx.emissions().front().key, 7);
  const double v = Field(r, "v_stars"), ev = Field(r, "v_stars_err");
  const double s = Field(r, "sigma_stars"), es = Field(r, "sigma_stars_err");
  EXPECT_NEAR(v, 85.0, 4 * ev + 1);
  EXPECT_NEAR(s, 130.0, 4 * es + 1);
  EXPECT_GT(ev, 0.5);
  EXPECT_LT(ev, 20);
  EXPECT_EQ(Field(r, "kin_flags"), 0.0);
  EXPECT_NEAR(Field(r, "chi2_stars"), 1.0, 0.3);
  EXPECT_EQ(r.fields.at("v_stars").unit, "km/s");
  EXPECT_EQ(r.fields.count("h3_stars"), 0u);  // moments 2
}

TEST(KinematicsFitNode, FourMomentsAndMonteCarloErrorsAddFields) {
  auto node = cubeflow::testing::MakeNode(kinematics::FitNodeSpec(),
                                BaseParams({{"moments", int64_t{4}}, {"mc", int64_t{5}}}));
  cubeflow::testing::FakeContext ctx;
  ctx.AddItem(3, {{"spectra", BinSpectrum(-40.0, 160.0, 60.0)}});
  node->Process(ctx);
  const Record& r = OnlyRecord(ctx);
  for (const char* f : {"h3_stars", "h3_stars_err", "h4_stars", "h4_stars_err", "v_stars_mcerr", "sigma_stars_mcerr"})
    EXPECT_EQ(r.fields.count(f), 1u) << f;
  EXPECT_TRUE(std::isfinite(Field(r, "h4_stars")));
}

TEST(KinematicsFitNode, FlagsSigmaBelowTheInstrument) {
  auto node = cubeflow::testing::MakeNode(kinematics::FitNodeSpec(), BaseParams());
  cubeflow::testing::FakeContext ctx;
  ctx.AddItem(1, {{"spectra", BinSpectrum(10.0, 25.0, 50.0)}});
  node->Process(ctx);
  EXPECT_TRUE(static_cast<uint32_t>(Field(OnlyRecord(ctx), "kin_flags")) & 1u);
}

TEST(KinematicsFitNode, RefusesSpectraWithoutVarianceOrAlreadyRestFramed) {
  auto node = cubeflow::testing::MakeNode(kinematics::FitNodeSpec(), BaseParams());
  auto s = BinSpectrum(0, 100, 30);
  s->variance.clear();
  cubeflow::testing::FakeContext ctx;
  ctx.AddItem(4, {{"spectra", s}});
  try {
    node->Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bin 4: the spectrum has no variance"), std::string::npos) << e.what();
  }
  auto r = BinSpectrum(0, 100, 30);
  r->rest_frame = true;
  cubeflow::testing::FakeContext ctx2;
  ctx2.AddItem(5, {{"spectra", r}});
  EXPECT_THROW(node->Process(ctx2), Error);
}

TEST(KinematicsFitNode, ABinWithTooFewGoodPixelsFailsWithAdvice) {
  auto node = cubeflow::testing::MakeNode(kinematics::FitNodeSpec(), BaseParams());
  auto s = BinSpectrum(0, 100, 30);
  for (size_t i = 0; i < s->mask.size(); ++i) s->mask[i] = (i % 4) != 0;
  cubeflow::testing::FakeContext ctx;
  ctx.AddItem(9, {{"spectra", s}});
  try {
    node->Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("spectrum 9: only"), std::string::npos) << m;
    EXPECT_NE(m.find("min_good_fraction"), std::string::npos) << m;
  }
}

TEST(KinematicsFitNode, AWrongRedshiftIsReportedNotFitted) {
  // Templates said to be sharp enough for the blue-shifted LSF of the wrong frame: the window is the problem.
  auto node = cubeflow::testing::MakeNode(kinematics::FitNodeSpec(), BaseParams({{"z_sys", 0.2}, {"template_fwhm", 1.5}}));
  cubeflow::testing::FakeContext ctx;
  ctx.AddItem(2, {{"spectra", BinSpectrum(0, 100, 30)}});
  try {
    node->Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("check z_sys"), std::string::npos) << e.what();
  }
}

TEST(KinematicsFitNode, CoarserTemplatesAreRefusedOrFlagged) {
  // The built-in templates said to be at 3.5 A against MUSE's ~2.7 A.
  try {
    cubeflow::testing::MakeNode(kinematics::FitNodeSpec(), BaseParams({{"template_fwhm", 3.5}}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("coarser than the data's LSF"), std::string::npos) << m;
    EXPECT_NE(m.find("coarser_templates: flag"), std::string::npos) << m;
  }
  auto node = cubeflow::testing::MakeNode(kinematics::FitNodeSpec(),
                                BaseParams({{"template_fwhm", 3.5}, {"coarser_templates", std::string("flag")}}));
  cubeflow::testing::FakeContext ctx;
  ctx.AddItem(1, {{"spectra", BinSpectrum(0, 150, 40)}});
  node->Process(ctx);
  EXPECT_TRUE(static_cast<uint32_t>(Field(OnlyRecord(ctx), "kin_flags")) & 16u);
}

TEST(KinematicsFitNode, ValidationHookNamesTheParameter) {
  const NodeSpec spec = kinematics::FitNodeSpec();
  auto bad = cubeflow::testing::DefaultParams(spec, {{"wave_min", 5600.0},
                                           {"ssp", std::string("/no/such/ssp_dir")},
                                           {"lsf", std::string("file")},
                                           {"mask_ranges", std::vector<double>{5000, 4990, 6000}}});
  const CheckReport rep = spec.RunChecks(bad);
  std::map<std::string, std::string> errs;
  for (const auto& i : rep.issues())
    if (i.is_error) errs[i.param] += i.message + "; ";
  EXPECT_NE(errs["wave_max"].find("must be above wave_min"), std::string::npos);
  EXPECT_NE(errs["ssp"].find("is not a directory"), std::string::npos);
  EXPECT_NE(errs["lsf_file"].find("lsf: file needs lsf_file"), std::string::npos);
  EXPECT_NE(errs["mask_ranges"].find("pairs"), std::string::npos);
}

TEST(KinematicsFitNode, ReadsRealTemplateLibraries) {
  const std::string dir = std::string(CUBEFLOW_TEST_DATA_DIR) + "/ssp/miles_padova_ppxf";
  if (!std::filesystem::is_directory(dir)) GTEST_SKIP() << "no " << dir;
  auto node = cubeflow::testing::MakeNode(kinematics::FitNodeSpec(), BaseParams({{"ssp", dir}}));
  auto miles = sim::LoadSspDirectory(dir);
  ASSERT_TRUE(miles.ok()) << miles.status().message();
  const kinematics::MockMaker maker(**miles, spectral::Lsf::Bacon2017(), kZ, {140, 100, 60}, 4750, 5700, 1.25);
  cubeflow::testing::FakeContext ctx;
  ctx.AddItem(1, {{"spectra", FromMaker(maker, 50, 120, 60, 3)}});
  node->Process(ctx);
  const Record& r = OnlyRecord(ctx);
  EXPECT_NEAR(Field(r, "v_stars"), 50.0, 4 * Field(r, "v_stars_err") + 1);
  EXPECT_NEAR(Field(r, "sigma_stars"), 120.0, 4 * Field(r, "sigma_stars_err") + 1);
}

// ---- spectral.restframe with kinematics records -------------------------------------------

namespace {
std::unique_ptr<Node> Restframe(const std::map<std::string, Value>& p) {
  Registry reg;
  reg.SetCurrentOrigin({"spectral", "test", ""});
  spectral::RegisterRestframe(reg);
  return cubeflow::testing::MakeNode(*reg.Find("spectral.restframe"), p);
}
std::shared_ptr<Record> KinRecord(double v, double s) {
  auto r = std::make_shared<Record>();
  r->Set("v_stars", v, "km/s");
  r->Set("sigma_stars", s, "km/s");
  return r;
}
}  // namespace

TEST(RestframeWithKinematics, UsesTheStreamedRecordOfEachBin) {
  auto node = Restframe({{"z_sys", kZ}, {"sigma_target", 250.0}, {"lsf", std::string("bacon2017")}});
  cubeflow::testing::FakeContext ctx("rest", "spectral.restframe");
  ctx.AddItem(11, {{"spectra", BinSpectrum(120, 90, 40)}, {"kinematics", KinRecord(120.0, 90.0)}});
  ctx.AddItem(12, {{"spectra", BinSpectrum(-60, 140, 40)}, {"kinematics", KinRecord(-60.0, 140.0)}});
  node->Process(ctx);
  auto out = ctx.Emitted("spectra");
  ASSERT_EQ(out.size(), 2u);
  const auto& a = static_cast<const Spectrum&>(*out[0]);
  const auto& b = static_cast<const Spectrum&>(*out[1]);
  EXPECT_DOUBLE_EQ(a.meta.at("velocity"), 120.0);
  EXPECT_DOUBLE_EQ(a.meta.at("dispersion"), 90.0);
  EXPECT_DOUBLE_EQ(b.meta.at("velocity"), -60.0);
  EXPECT_DOUBLE_EQ(b.meta.at("dispersion"), 140.0);
  EXPECT_EQ(a.meta.at("kinematics_fallback"), 0.0);
}

TEST(RestframeWithKinematics, RefusesRecordsAndMapsTogetherAndIncompleteRecords) {
  auto node = Restframe({{"z_sys", kZ}});
  auto vmap = std::make_shared<Map>();
  vmap->nx = vmap->ny = 1;
  vmap->data = {0.0};
  cubeflow::testing::FakeContext ctx;
  ctx.SetInput("velocity", vmap);
  ctx.AddItem(1, {{"spectra", BinSpectrum(0, 100, 30)}, {"kinematics", KinRecord(0, 100)}});
  try {
    node->Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not both"), std::string::npos) << e.what();
  }
  auto partial = std::make_shared<Record>();
  partial->Set("v_stars", 10.0);
  cubeflow::testing::FakeContext ctx2;
  ctx2.AddItem(2, {{"spectra", BinSpectrum(0, 100, 30)}, {"kinematics", partial}});
  try {
    node->Process(ctx2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no field 'sigma_stars'"), std::string::npos) << e.what();
  }
}
