// Tests of the io plugin nodes (io.read_cube, io.write_maps), built as the registry builds them
// and driven through cubeflow::testing::FakeContext.
#include <fitsio.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/testing/fake_context.hpp"
#include "fits_reader.hpp"
#include "fits_test_util.hpp"
#include "io_nodes.hpp"
#include "node_test_util.hpp"

using namespace cubeflow;
using cftest::BuildError;
using cftest::MakeTypedNode;
using cftest::TempDir;
using Fits = cftest::FitsFile;
using cubeflow::testing::FakeContext;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
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
  auto node =
      cubeflow::testing::MakeNode<io::ReadCubeNode>({{"path", path}, {"wave_min", 4760.0}, {"wave_max", 4770.0}});
  FakeContext ctx;
  node->Process(ctx);
  auto cube = ctx.Output<Cube>("cube");
  ASSERT_TRUE(cube);
  EXPECT_EQ(cube->nwave, 9);
  EXPECT_EQ(cube->flux[cube->Index(3, 2, 0)], c->flux[c->Index(3, 2, 8)]);
}

// Issue #18: above max_memory the node emits a lazy cube (same shape, axis and WCS, pixels read
// on demand in blocks of block_size) and says so.
TEST(ReadCubeNode, EmitsLazyCubeAboveMaxMemory) {
  TempDir dir;
  auto c = cftest::SyntheticCube();
  const std::string path = dir.File("cube.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  auto node = cubeflow::testing::MakeNode<io::ReadCubeNode>(
      {{"path", path}, {"wave_min", 4760.0}, {"wave_max", 4770.0}, {"max_memory", int64_t{0}}, {"block_size", int64_t{3}}});
  FakeContext ctx;
  node->Process(ctx);
  auto cube = ctx.Output<Cube>("cube");
  ASSERT_TRUE(cube);
  const LazyCube* lazy = AsLazy(*cube);
  ASSERT_NE(lazy, nullptr);
  EXPECT_EQ(lazy->block_bytes, size_t{3} << 20);
  EXPECT_TRUE(cube->flux.empty());
  EXPECT_EQ(cube->nwave, 9);
  EXPECT_EQ(cube->wcs.cards, fits::ReadCube(path).ValueOrThrow()->wcs.cards);
  CubeBlock b;
  ASSERT_TRUE(ReadCubeBlock(*cube, 0, 1, 2, 3, b).ok());
  EXPECT_EQ(b.flux[b.Index(3, 2, 0)], c->flux[c->Index(3, 2, 8)]);
  EXPECT_TRUE(ctx.Logged("streamed from the file (above max_memory)"));
  // The default (16 MiB) keeps a tiny cube in memory.
  FakeContext ctx2;
  cubeflow::testing::MakeNode<io::ReadCubeNode>({{"path", path}})->Process(ctx2);
  EXPECT_EQ(AsLazy(*ctx2.Output<Cube>("cube")), nullptr);
}

TEST(ReadCubeNode, ThrowsWithFileName) {
  auto node = cubeflow::testing::MakeNode<io::ReadCubeNode>({{"path", std::string("/nonexistent/x.fits")}});
  FakeContext ctx;
  try {
    node->Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.fits"), std::string::npos);
  }
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
  ctx.SetInput("binning", TestBinning());
  auto snr = std::make_shared<Map>();
  snr->name = "SNR";
  snr->nx = 4;
  snr->ny = 3;
  snr->data.assign(12, 7.0);
  snr->wcs = cftest::RotatedWcs(4, 3);
  ctx.SetInputs("maps", {snr});
  ctx.SetInputs("records", {});  // connected: an edge feeds it; the records come per item
  ctx.AddItem(0, {{"records", TestRecord(0, 1.0, 0)}});
  ctx.AddItem(1, {{"records", TestRecord(1, 5.0, kQualLowSnr)}});
  node.Process(ctx);
  ctx.ClearItems();
  if (send2) {
    if (fail2)
      ctx.AddFailedItem(2, "fit did not converge");
    else
      ctx.AddItem(2, {{"records", TestRecord(2, 9.0, 0)}});
    node.Process(ctx);
  }
  ctx.ClearItems();
}

}  // namespace

TEST(WriteMapsNode, PaintsRecordsOntoBinsWithCompanionsAndQuality) {
  TempDir dir;
  const std::string path = dir.File("out_maps.fits");
  const NodeSpec spec = io::WriteMapsNode::Spec();
  EXPECT_EQ(spec.name(), "io.write_maps");
  EXPECT_TRUE(spec.accepts_failures());
  EXPECT_EQ(spec.concurrency(), Concurrency::kSerial);
  auto node = MakeTypedNode<io::WriteMapsNode>({{"path", path}});
  FakeContext ctx;
  ctx.run_info().cubeflow_version = "0.1.0";
  Drive(*node, ctx, /*fail2=*/true, /*send2=*/true);
  node->Finish(ctx);
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
  auto node = MakeTypedNode<io::WriteMapsNode>({{"path", path}});
  FakeContext ctx;
  Drive(*node, ctx, false, /*send2=*/false);
  ctx.SetAborted(true);
  node->Finish(ctx);
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
  auto node = MakeTypedNode<io::WriteMapsNode>({{"path", path}, {"overwrite", false}});
  FakeContext ctx;
  Drive(*node, ctx, false, true);
  EXPECT_THROW(node->Finish(ctx), Error);
  std::ifstream in(path);
  std::string s;
  in >> s;
  EXPECT_EQ(s, "old");
  // Missing directories are created; a path below a regular file cannot be.
  auto node2 = MakeTypedNode<io::WriteMapsNode>({{"path", path + "/sub/x.fits"}});
  FakeContext ctx2;
  Drive(*node2, ctx2, false, true);
  EXPECT_THROW(node2->Finish(ctx2), Error);
}

// ---------------------------------------------------------------------------------------------
// Validation hooks: what `cubeflow validate` reports (here through the factory, which runs them
// before building the node).

TEST(ReadCubeNode, EmptyWindowIsReportedOnWaveMax) {
  const std::map<std::string, Value> given = {
      {"path", std::string("c.fits")}, {"wave_min", 5500.0}, {"wave_max", 5300.0}};
  const NodeSpec spec = io::ReadCubeNode::Spec();
  const CheckReport r = spec.RunChecks(cubeflow::testing::DefaultParams(spec, given));
  ASSERT_EQ(r.issues().size(), 1u);
  EXPECT_EQ(r.issues()[0].param, "wave_max");
  EXPECT_EQ(BuildError<io::ReadCubeNode>(given),
            "wave_max: must be above wave_min (5500 Angstrom), got 5300: the window [wave_min, wave_max] is empty; "
            "set wave_min < wave_max (0 = no limit)");
  // 0 means "no limit": a lower bound alone is a valid window.
  EXPECT_EQ(BuildError<io::ReadCubeNode>({{"path", std::string("c.fits")}, {"wave_min", 5500.0}}), "");
}

TEST(WriteMapsNode, EmptyPathIsReported) {
  EXPECT_EQ(BuildError<io::WriteMapsNode>({{"path", std::string("")}}), "path: is empty; name the output FITS file");
  EXPECT_EQ(BuildError<io::WriteMapsNode>({{"path", std::string("out.fits")}}), "");
}

TEST(IoNodes, DefaultsOfReadCubeAreTheLibrarys) {
  const fits::ReadCubeOptions lib;
  const io::ReadCubeNodeOptions node;
  EXPECT_EQ(node.wave_min, lib.wave_min);
  EXPECT_EQ(node.wave_max, lib.wave_max);
  EXPECT_EQ(node.data_hdu, lib.data_hdu);
  EXPECT_EQ(node.stat_hdu, lib.stat_hdu);
  EXPECT_EQ(node.require_stat, lib.require_stat);
}
