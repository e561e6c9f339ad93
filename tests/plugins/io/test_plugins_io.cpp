// Tests of the io plugin nodes (io.read_cube, io.write_maps) and spectral.snr_map, driven
// through a fake ProcessContext.
#include <fitsio.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "fits_test_util.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "io_nodes.hpp"

using namespace cubeflow;
using cftest::TempDir;

namespace cubeflow::spectral {
// Defined in plugins/spectral/snr_map.cpp.
NodeSpec SnrMapSpec();
struct SnrMaps {
  std::shared_ptr<Map> flux, snr;
  int64_t k0 = 0, k1 = -1;
};
SnrMaps ComputeSnrMaps(const Cube& cube, double wave_min, double wave_max, bool der_snr);
}  // namespace cubeflow::spectral

namespace {

/// Minimal ProcessContext: single inputs, per-item stream inputs, captured emissions.
class FakeContext : public ProcessContext {
 public:
  struct Item {
    int64_t key = -1;
    bool failed = false;
    std::string failure;
    std::map<std::string, std::vector<std::shared_ptr<const Data>>> inputs;
  };
  std::map<std::string, std::vector<std::shared_ptr<const Data>>> singles;
  std::vector<Item> items;  // the current call's items (empty: a call without stream items)
  std::map<std::string, std::shared_ptr<const Data>> emitted;
  std::vector<std::string> logs;
  RunInfo run_info;
  bool is_aborted = false;
  std::string name = "n", type = "t";

  size_t size() const override { return items.empty() ? 1 : items.size(); }
  int64_t key(size_t i) const override { return items.empty() ? -1 : items[i].key; }
  bool failed(size_t i) const override { return !items.empty() && items[i].failed; }
  std::string failure(size_t i) const override { return items.empty() ? "" : items[i].failure; }
  std::shared_ptr<const Data> InputData(const std::string& port, size_t i) const override {
    auto v = InputsOf(port, i);
    return v.empty() ? nullptr : v[0];
  }
  std::vector<std::shared_ptr<const Data>> InputsOf(const std::string& port, size_t i) const override {
    if (auto it = singles.find(port); it != singles.end()) return it->second;
    if (!items.empty() && !items[i].failed) {
      if (auto it = items[i].inputs.find(port); it != items[i].inputs.end()) return it->second;
    }
    return {};
  }
  bool Connected(const std::string& port) const override {
    if (singles.count(port)) return true;
    return connected_streams.count(port) > 0;
  }
  void Emit(const std::string& port, std::shared_ptr<const Data> data, size_t) override { emitted[port] = data; }
  void EmitItem(const std::string& port, int64_t, std::shared_ptr<const Data> data) override { emitted[port] = data; }
  void EmitStream(const std::string&, std::shared_ptr<StreamSource>) override {}
  const std::string& node_name() const override { return name; }
  const std::string& node_type() const override { return type; }
  const RunInfo& run() const override { return run_info; }
  bool aborted() const override { return is_aborted; }
  int threads() const override { return 2; }
  void Log(LogLevel, const std::string& m) const override { const_cast<FakeContext*>(this)->logs.push_back(m); }

  std::set<std::string> connected_streams;
};

Params DefaultParams(const NodeSpec& spec, std::map<std::string, Value> given) {
  std::map<std::string, Value> v;
  for (const auto& p : spec.params())
    if (!p.required()) v[p.name()] = p.default_value();
  for (auto& [k, x] : given) v[k] = x;
  return Params(v);
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// --- FITS reading helpers for checking products ----------------------------------------------

struct Fits {
  fitsfile* f = nullptr;
  explicit Fits(const std::string& path) {
    int st = 0;
    if (fits_open_diskfile(&f, path.c_str(), READONLY, &st)) f = nullptr;
  }
  ~Fits() {
    int st = 0;
    if (f) fits_close_file(f, &st);
  }
  bool Move(const std::string& ext) {
    int st = 0;
    return fits_movnam_hdu(f, ANY_HDU, const_cast<char*>(ext.c_str()), 0, &st) == 0;
  }
  std::string Key(const std::string& k) {
    char v[FLEN_VALUE] = {0};
    int st = 0;
    if (fits_read_key(f, TSTRING, k.c_str(), v, nullptr, &st)) return "<missing>";
    return v;
  }
  std::vector<double> Image(int64_t n) {
    std::vector<double> out(static_cast<size_t>(n));
    int st = 0, anynul = 0;
    double nul = kNaN;
    fits_read_img(f, TDOUBLE, 1, n, &nul, out.data(), &anynul, &st);
    return out;
  }
  int Bitpix() {
    int b = 0, st = 0;
    fits_get_img_type(f, &b, &st);
    return b;
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// io.read_cube

TEST(ReadCubeNode, EmitsCubeWithWindow) {
  TempDir dir;
  auto c = cftest::SyntheticCube();
  const std::string path = dir.File("cube.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  const NodeSpec spec = io::ReadCubeNode::Spec();
  EXPECT_EQ(spec.name(), "io.read_cube");
  ASSERT_NE(spec.FindOutput("cube"), nullptr);
  EXPECT_TRUE(spec.inputs().empty());
  io::ReadCubeNode node(DefaultParams(spec, {{"path", path}, {"wave_min", 4760.0}, {"wave_max", 4770.0}}));
  FakeContext ctx;
  node.Process(ctx);
  ASSERT_TRUE(ctx.emitted.count("cube"));
  auto cube = std::static_pointer_cast<const Cube>(ctx.emitted["cube"]);
  EXPECT_EQ(cube->nwave, 9);
  EXPECT_EQ(cube->flux[cube->Index(3, 2, 0)], c->flux[c->Index(3, 2, 8)]);
}

TEST(ReadCubeNode, ThrowsWithFileName) {
  const NodeSpec spec = io::ReadCubeNode::Spec();
  io::ReadCubeNode node(DefaultParams(spec, {{"path", std::string("/nonexistent/x.fits")}}));
  FakeContext ctx;
  try {
    node.Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.fits"), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// spectral.snr_map

namespace {

/// 3 x 2 spaxels, wavelengths 5280 + 10 k (k = 0..19); window 5300..5400 is k = 2..12.
std::shared_ptr<Cube> SnrCube() {
  auto c = std::make_shared<Cube>();
  c->nx = 3;
  c->ny = 2;
  c->nwave = 20;
  c->wave = WavelengthAxis::Linear(5280, 10, 20);
  c->flux.assign(120, 2.0f);
  c->variance.assign(120, 4.0f);
  c->wcs = cftest::RotatedWcs(3, 2);
  c->bunit = "1e-20 erg/s/cm2/A";
  // spaxel (1,0): a NaN flux in the window, a NaN outside, a zero and a negative variance.
  c->flux[c->Index(1, 0, 5)] = NAN;
  c->flux[c->Index(1, 0, 15)] = NAN;
  c->variance[c->Index(1, 0, 6)] = 0.0f;
  c->variance[c->Index(1, 0, 7)] = -1.0f;
  c->flux[c->Index(1, 0, 8)] = 5.0f;
  // spaxel (2,1): everything bad in the window.
  for (int k = 2; k <= 12; ++k) c->flux[c->Index(2, 1, k)] = NAN;
  // spaxel (0,1): flux = k, variance = k (k = 2..12), plus a huge value outside the window.
  for (int k = 0; k < 20; ++k) {
    c->flux[c->Index(0, 1, k)] = static_cast<float>(k);
    c->variance[c->Index(0, 1, k)] = static_cast<float>(k);
  }
  c->flux[c->Index(0, 1, 19)] = 1e6f;
  return c;
}

}  // namespace

TEST(SnrMap, VarianceMethodByHand) {
  auto c = SnrCube();
  auto m = spectral::ComputeSnrMaps(*c, 5300, 5400, false);
  EXPECT_EQ(m.k0, 2);
  EXPECT_EQ(m.k1, 12);
  const auto& f = m.flux->data;
  const auto& s = m.snr->data;
  // (0,0): 11 pixels of 2 +- 2.
  EXPECT_DOUBLE_EQ(f[0], 2.0);
  EXPECT_NEAR(s[0], 22.0 / std::sqrt(44.0), 1e-12);
  // (1,0): k=5 NaN, k=6 zero var, k=7 negative var -> 8 good pixels, one of them 5.
  EXPECT_NEAR(f[1], (7 * 2.0 + 5.0) / 8.0, 1e-12);
  EXPECT_NEAR(s[1], 19.0 / std::sqrt(32.0), 1e-12);
  // (0,1): sum k = 77 over k = 2..12, sum var = 77.
  EXPECT_NEAR(f[3], 7.0, 1e-12);
  EXPECT_NEAR(s[3], 77.0 / std::sqrt(77.0), 1e-12);
  // (2,1): no good pixel.
  EXPECT_TRUE(std::isnan(f[5]));
  EXPECT_TRUE(std::isnan(s[5]));
  EXPECT_EQ(m.flux->name, "FLUX");
  EXPECT_EQ(m.snr->name, "SNR");
  EXPECT_EQ(m.flux->bunit, c->bunit);
  EXPECT_EQ(m.snr->bunit, "");
  EXPECT_EQ(m.snr->wcs.cards, c->wcs.cards);
}

TEST(SnrMap, MaskedPixelsAreSkipped) {
  auto c = SnrCube();
  c->mask.assign(120, 0);
  c->mask[c->Index(0, 0, 4)] = 1;
  c->flux[c->Index(0, 0, 4)] = 100.0f;
  auto m = spectral::ComputeSnrMaps(*c, 5300, 5400, false);
  EXPECT_DOUBLE_EQ(m.flux->data[0], 2.0);
  EXPECT_NEAR(m.snr->data[0], 20.0 / std::sqrt(40.0), 1e-12);
}

TEST(SnrMap, DerSnrRecoversKnownNoise) {
  auto c = std::make_shared<Cube>();
  c->nx = 2;
  c->ny = 1;
  c->nwave = 4001;
  c->wave = WavelengthAxis::Linear(5000, 0.25, 4001);
  c->flux.resize(8002);
  std::mt19937 rng(12345);
  std::normal_distribution<double> g(0.0, 1.0);
  for (int64_t k = 0; k < c->nwave; ++k) {
    c->flux[c->Index(0, 0, k)] = static_cast<float>(10.0 + g(rng));     // S/N 10 per pixel
    c->flux[c->Index(1, 0, k)] = static_cast<float>(4.0 + 0.5 * k);  // noiseless ramp (exact in float)
  }
  auto m = spectral::ComputeSnrMaps(*c, 5000, 6000, true);
  const double n = 4001;
  EXPECT_NEAR(m.snr->data[0] / (10.0 * std::sqrt(n)), 1.0, 0.05);
  EXPECT_NEAR(m.flux->data[0], 10.0, 0.05);
  EXPECT_TRUE(std::isnan(m.snr->data[1]));  // zero noise: S/N undefined
}

TEST(SnrMap, NodeFallsBackToDerSnrWithoutVarianceAndRejectsBadWindow) {
  const NodeSpec spec = spectral::SnrMapSpec();
  EXPECT_EQ(spec.name(), "spectral.snr_map");
  ASSERT_NE(spec.FindOutput("flux"), nullptr);
  ASSERT_NE(spec.FindOutput("snr"), nullptr);
  auto c = SnrCube();
  c->variance.clear();
  auto node = spec.factory()(DefaultParams(spec, {}));
  FakeContext ctx;
  ctx.singles["cube"] = {c};
  node->Process(ctx);
  ASSERT_TRUE(ctx.emitted.count("snr"));
  auto snr = std::static_pointer_cast<const Map>(ctx.emitted["snr"]);
  EXPECT_EQ(snr->header.at("SNRMETH"), "der_snr");
  EXPECT_FALSE(ctx.logs.empty());
  auto node2 = spec.factory()(DefaultParams(spec, {{"wave_min", 8000.0}, {"wave_max", 9000.0}}));
  FakeContext ctx2;
  ctx2.singles["cube"] = {SnrCube()};
  EXPECT_THROW(node2->Process(ctx2), Error);
}

// ---------------------------------------------------------------------------------------------
// io.write_maps

namespace {

/// 4 x 3 spaxels; BINID row-major:
///   y=0: 0 0 1 -1
///   y=1: 0 1 1 -1
///   y=2: 2 2 1 -1
std::shared_ptr<Binning> TestBinning() {
  auto b = std::make_shared<Binning>();
  b->nx = 4;
  b->ny = 3;
  b->binid = {0, 0, 1, -1, 0, 1, 1, -1, 2, 2, 1, -1};
  b->bins.resize(3);
  for (int i = 0; i < 3; ++i) {
    b->bins[static_cast<size_t>(i)].x = i + 0.5;
    b->bins[static_cast<size_t>(i)].y = i * 0.25;
    b->bins[static_cast<size_t>(i)].snr = 30.0 + i;
  }
  b->bins[0].nspax = 3;
  b->bins[1].nspax = 4;
  b->bins[2].nspax = 2;
  b->wcs = cftest::RotatedWcs(4, 3);
  return b;
}

std::shared_ptr<Record> TestRecord(int64_t id, double age, uint32_t q) {
  auto r = std::make_shared<Record>();
  r->id = id;
  r->Set("age", age, "Gyr", "mass-weighted age");
  r->Set("age_err", age / 10, "Gyr");
  r->SetVector("sfh", {age, 2 * age, 3 * age}, "Msun", {"young", "mid", "old"});
  r->quality = q;
  return r;
}

/// Drives the node: singles, then records of bins 0 and 1 (and bin 2 failing if `fail2`).
void Drive(io::WriteMapsNode& node, FakeContext& ctx, bool fail2, bool send2) {
  ctx.singles["binning"] = {TestBinning()};
  auto snr = std::make_shared<Map>();
  snr->name = "SNR";
  snr->nx = 4;
  snr->ny = 3;
  snr->data.assign(12, 7.0);
  snr->wcs = cftest::RotatedWcs(4, 3);
  ctx.singles["maps"] = {snr};
  ctx.connected_streams.insert("records");
  FakeContext::Item a, b, c;
  a.key = 0;
  a.inputs["records"] = {TestRecord(0, 1.0, 0)};
  b.key = 1;
  b.inputs["records"] = {TestRecord(1, 5.0, kQualLowSnr)};
  ctx.items = {a, b};
  node.Process(ctx);
  if (send2) {
    c.key = 2;
    if (fail2) {
      c.failed = true;
      c.failure = "fit did not converge";
    } else {
      c.inputs["records"] = {TestRecord(2, 9.0, 0)};
    }
    ctx.items = {c};
    node.Process(ctx);
  }
  ctx.items.clear();
}

}  // namespace

TEST(WriteMapsNode, PaintsRecordsOntoBinsWithCompanionsAndQuality) {
  TempDir dir;
  const std::string path = dir.File("out_maps.fits");
  const NodeSpec spec = io::WriteMapsNode::Spec();
  EXPECT_EQ(spec.name(), "io.write_maps");
  EXPECT_TRUE(spec.accepts_failures());
  EXPECT_EQ(spec.concurrency(), Concurrency::kSerial);
  io::WriteMapsNode node(DefaultParams(spec, {{"path", path}}));
  FakeContext ctx;
  ctx.run_info.cubeflow_version = "0.1.0";
  Drive(node, ctx, /*fail2=*/true, /*send2=*/true);
  node.Finish(ctx);
  ASSERT_TRUE(std::filesystem::exists(path));

  Fits f(path);
  ASSERT_NE(f.f, nullptr);
  ASSERT_TRUE(f.Move("AGE"));
  EXPECT_EQ(f.Key("BUNIT"), "Gyr");
  EXPECT_EQ(f.Key("ERRDATA"), "AGE_ERR");
  EXPECT_EQ(f.Key("QUALDATA"), "QUALITY");
  auto age = f.Image(12);
  const std::vector<double> want = {1, 1, 5, kNaN, 1, 5, 5, kNaN, kNaN, kNaN, 5, kNaN};
  for (size_t i = 0; i < 12; ++i) {
    if (std::isnan(want[i]))
      EXPECT_TRUE(std::isnan(age[i])) << i;
    else
      EXPECT_DOUBLE_EQ(age[i], want[i]) << i;
  }
  ASSERT_TRUE(f.Move("AGE_ERR"));
  EXPECT_EQ(f.Key("DATA"), "AGE");
  EXPECT_DOUBLE_EQ(f.Image(12)[2], 0.5);
  ASSERT_TRUE(f.Move("QUALITY"));
  EXPECT_EQ(f.Bitpix(), LONG_IMG);
  auto q = f.Image(12);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[2], kQualLowSnr);
  EXPECT_EQ(q[3], kQualNoCoverage);
  EXPECT_EQ(q[8], kQualInferenceFailed);
  ASSERT_TRUE(f.Move("BINID"));
  EXPECT_EQ(f.Bitpix(), LONG_IMG);
  EXPECT_EQ(f.Image(12)[9], 2);
  ASSERT_TRUE(f.Move("SFH"));
  EXPECT_EQ(f.Key("C2"), "mid");
  auto sfh = f.Image(36);
  EXPECT_DOUBLE_EQ(sfh[12 + 2], 10.0);   // plane 1 of bin 1 = 2 * 5
  EXPECT_DOUBLE_EQ(sfh[24 + 0], 3.0);    // plane 2 of bin 0 = 3 * 1
  EXPECT_TRUE(std::isnan(sfh[24 + 8]));  // failed bin
  ASSERT_TRUE(f.Move("SNR"));  // the input map, unchanged
  EXPECT_DOUBLE_EQ(f.Image(12)[5], 7.0);
  EXPECT_NE(f.Key("CHECKSUM"), "<missing>");
  ASSERT_TRUE(f.Move("BINS"));
  long nrows = 0;
  int st = 0, col = 0;
  fits_get_num_rows(f.f, &nrows, &st);
  EXPECT_EQ(nrows, 3);
  fits_get_colnum(f.f, CASEINSEN, const_cast<char*>("QUALITY"), &col, &st);
  long long qual[3];
  fits_read_col(f.f, TLONGLONG, col, 1, 1, 3, nullptr, qual, nullptr, &st);
  EXPECT_EQ(qual[1], kQualLowSnr);
  EXPECT_EQ(qual[2], kQualInferenceFailed);
  fits_get_colnum(f.f, CASEINSEN, const_cast<char*>("AGE"), &col, &st);
  double ages[3];
  fits_read_col(f.f, TDOUBLE, col, 1, 1, 3, nullptr, ages, nullptr, &st);
  EXPECT_DOUBLE_EQ(ages[1], 5.0);
  EXPECT_TRUE(std::isnan(ages[2]));
  EXPECT_EQ(st, 0);
  int type = 0;
  fits_movabs_hdu(f.f, 1, &type, &st);
  EXPECT_EQ(f.Key("NFAILED"), "1");
  EXPECT_EQ(f.Key("PARTIAL"), "F");
}

TEST(WriteMapsNode, AbortedRunWritesPartialProduct) {
  TempDir dir;
  const std::string path = dir.File("partial.fits");
  const NodeSpec spec = io::WriteMapsNode::Spec();
  io::WriteMapsNode node(DefaultParams(spec, {{"path", path}}));
  FakeContext ctx;
  Drive(node, ctx, false, /*send2=*/false);
  ctx.is_aborted = true;
  node.Finish(ctx);
  Fits f(path);
  ASSERT_NE(f.f, nullptr);
  EXPECT_EQ(f.Key("PARTIAL"), "T");
  EXPECT_EQ(f.Key("NMISSING"), "1");
  EXPECT_EQ(f.Key("MISSING"), "2");
  ASSERT_TRUE(f.Move("QUALITY"));
  auto q = f.Image(12);
  EXPECT_EQ(q[8], kQualNoCoverage);  // bin 2 never arrived
  EXPECT_EQ(q[0], 0);
}

TEST(WriteMapsNode, FailedWriteThrowsAndKeepsTarget) {
  TempDir dir;
  const std::string path = dir.File("keep.fits");
  std::ofstream(path) << "old";
  const NodeSpec spec = io::WriteMapsNode::Spec();
  io::WriteMapsNode node(DefaultParams(spec, {{"path", path}, {"overwrite", false}}));
  FakeContext ctx;
  Drive(node, ctx, false, true);
  EXPECT_THROW(node.Finish(ctx), Error);
  std::ifstream in(path);
  std::string s;
  in >> s;
  EXPECT_EQ(s, "old");
  // Missing directories are created; a path below a regular file cannot be.
  io::WriteMapsNode node2(DefaultParams(spec, {{"path", path + "/sub/x.fits"}}));
  FakeContext ctx2;
  Drive(node2, ctx2, false, true);
  EXPECT_THROW(node2.Finish(ctx2), Error);
}
