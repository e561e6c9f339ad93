// Tests of lazy cubes (issue #18): fits::ReadCube above ReadCubeOptions::lazy_above_bytes returns
// a LazyCube whose blocks (cubeflow/cube_blocks.hpp) are the in-memory cube's pixels bit for bit;
// the same checks at open; read errors that name the file, the extension and the plane.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "fits_test_util.hpp"
#include "temp_dir.hpp"

namespace {

using namespace cubeflow;
using cftest::TempDir;

/// The synthetic cube with a data-quality mask, written to `path`.
std::shared_ptr<Cube> WriteMaskedCube(const std::string& path, int64_t nx = 7, int64_t ny = 5, int64_t nw = 40) {
  auto c = cftest::SyntheticCube(nx, ny, nw);
  c->mask.assign(c->flux.size(), 0);
  c->mask[c->Index(2, 1, 10)] = 1;
  c->mask[c->Index(6, 4, 20)] = 1;
  EXPECT_TRUE(fits::WriteCube(path, *c).ok());
  return c;
}

template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

fits::ReadCubeOptions Lazy(fits::ReadCubeOptions o = {}) {
  o.lazy_above_bytes = 0;
  return o;
}

TEST(LazyCube, SameMetadataAndPixelsAsTheCubeInMemory) {
  TempDir dir;
  const std::string path = dir.File("c.fits");
  WriteMaskedCube(path);
  fits::ReadCubeOptions o;
  o.wave_min = 4760;
  o.wave_max = 4790;
  auto mem = fits::ReadCube(path, o).ValueOrThrow();
  auto lazy = fits::ReadCube(path, Lazy(o)).ValueOrThrow();
  ASSERT_EQ(AsLazy(*mem), nullptr);
  ASSERT_NE(AsLazy(*lazy), nullptr);
  EXPECT_TRUE(lazy->flux.empty());
  EXPECT_TRUE(lazy->variance.empty());
  EXPECT_TRUE(lazy->mask.empty());
  EXPECT_EQ(lazy->bytes(), 0u);
  EXPECT_TRUE(CubeHasVariance(*lazy));
  EXPECT_TRUE(CubeHasMask(*lazy));
  EXPECT_EQ(lazy->nx, mem->nx);
  EXPECT_EQ(lazy->ny, mem->ny);
  EXPECT_EQ(lazy->nwave, mem->nwave);
  EXPECT_EQ(lazy->nwave, 25);
  EXPECT_EQ(lazy->wave.crval, mem->wave.crval);
  EXPECT_EQ(lazy->wave.crpix, mem->wave.crpix);
  EXPECT_EQ(lazy->wave.cdelt, mem->wave.cdelt);
  EXPECT_EQ(lazy->wcs.cards, mem->wcs.cards);
  EXPECT_EQ(lazy->bunit, mem->bunit);
  EXPECT_EQ(lazy->header, mem->header);
  EXPECT_EQ(lazy->source, mem->source);
  // Blocks of rows, of whole planes (one read), single pixels' rows: the same bits.
  struct B { int64_t k0, k1, y0, y1; };
  for (const B& b : {B{0, 25, 0, 5}, B{3, 9, 0, 5}, B{0, 25, 1, 3}, B{24, 25, 4, 5}, B{5, 6, 2, 3}}) {
    CubeBlock x, y;
    ASSERT_TRUE(ReadCubeBlock(*mem, b.k0, b.k1, b.y0, b.y1, x).ok());
    ASSERT_TRUE(ReadCubeBlock(*lazy, b.k0, b.k1, b.y0, b.y1, y).ok());
    EXPECT_TRUE(SameBits(x.flux, y.flux)) << b.k0 << " " << b.k1 << " " << b.y0 << " " << b.y1;
    EXPECT_TRUE(SameBits(x.variance, y.variance));
    EXPECT_TRUE(SameBits(x.mask, y.mask));
    EXPECT_EQ(y.flux.size(), static_cast<size_t>((b.k1 - b.k0) * (b.y1 - b.y0) * 7));
    EXPECT_EQ(y.Index(3, b.y0, b.k0), 3u);
  }
  // The block layout against the cube's own indexing.
  CubeBlock blk;
  ASSERT_TRUE(ReadCubeBlock(*lazy, 2, 6, 1, 4, blk).ok());
  EXPECT_EQ(blk.flux[blk.Index(5, 3, 4)], mem->flux[mem->Index(5, 3, 4)]);
  EXPECT_GT(AsLazy(*lazy)->reader->bytes_read(), 0u);
  // Outside the cube.
  const Status outside = ReadCubeBlock(*lazy, 0, 26, 0, 5, blk);
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.message().find("outside the cube"), std::string::npos) << outside.message();
}

TEST(LazyCube, ChosenAboveTheThresholdOnly) {
  TempDir dir;
  const std::string path = dir.File("c.fits");
  WriteMaskedCube(path);
  fits::ReadCubeOptions o;
  const uint64_t need = 7 * 5 * 40 * 8;  // flux + variance, 4 bytes each
  o.lazy_above_bytes = need;
  EXPECT_EQ(AsLazy(*fits::ReadCube(path, o).ValueOrThrow()), nullptr);
  o.lazy_above_bytes = need - 1;
  EXPECT_NE(AsLazy(*fits::ReadCube(path, o).ValueOrThrow()), nullptr);
  o = {};
  EXPECT_EQ(AsLazy(*fits::ReadCube(path, o).ValueOrThrow()), nullptr) << "the library default is in memory";
}

TEST(LazyCube, WithoutVarianceOrMask) {
  TempDir dir;
  const std::string path = dir.File("c.fits");
  auto c = cftest::SyntheticCube();
  c->variance.clear();
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  auto lazy = fits::ReadCube(path, Lazy()).ValueOrThrow();
  EXPECT_FALSE(CubeHasVariance(*lazy));
  EXPECT_FALSE(CubeHasMask(*lazy));
  CubeBlock b;
  ASSERT_TRUE(ReadCubeBlock(*lazy, 0, 40, 0, 5, b).ok());
  EXPECT_TRUE(b.variance.empty());
  EXPECT_TRUE(b.mask.empty());
  EXPECT_TRUE(SameBits(b.flux, c->flux));
  fits::ReadCubeOptions o = Lazy();
  o.require_stat = true;
  auto r = fits::ReadCube(path, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no variance extension 'STAT' in '" + path + "'"), std::string::npos);
}

TEST(LazyCube, SameErrorsAtOpenAsInMemory) {
  TempDir dir;
  const std::string path = dir.File("c.fits");
  auto c = cftest::SyntheticCube();
  for (int64_t k = 10; k < 20; ++k)
    for (int64_t s = 0; s < 35; ++s) c->flux[static_cast<size_t>(k * 35 + s)] = NAN;
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  fits::ReadCubeOptions o;
  o.wave_min = 4750 + 1.25 * 10;
  o.wave_max = 4750 + 1.25 * 19;
  auto mem = fits::ReadCube(path, o);
  auto lazy = fits::ReadCube(path, Lazy(o));
  ASSERT_FALSE(mem.ok());
  ASSERT_FALSE(lazy.ok());
  EXPECT_EQ(lazy.status().message(), mem.status().message());
  EXPECT_NE(lazy.status().message().find("is NaN everywhere in channels 10..19"), std::string::npos);
}

TEST(LazyCube, TruncatedVarianceIsFoundAtOpen) {
  TempDir dir;
  const std::string path = dir.File("c.fits");
  WriteMaskedCube(path, 20, 20, 40);
  // Cut the file in the middle of STAT (DATA, then STAT, then DQ, each 2880-byte blocks).
  const auto size = std::filesystem::file_size(path);
  const auto data_bytes = static_cast<uintmax_t>(20 * 20 * 40 * 4);
  std::filesystem::resize_file(path, size - data_bytes / 4 - 20 * 20 * 40);
  auto r = fits::ReadCube(path, Lazy());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("HDU 'STAT' of '" + path + "'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("the file is truncated"), std::string::npos) << r.status().message();
}

TEST(LazyCube, ReadErrorNamesTheFileTheExtensionAndThePlane) {
  TempDir dir;
  const std::string path = dir.File("c.fits");
  WriteMaskedCube(path, 20, 20, 40);
  auto lazy = fits::ReadCube(path, Lazy()).ValueOrThrow();
  // The file changes under the run: only its first planes of DATA remain.
  std::filesystem::resize_file(path, 2880 * 2 + 20 * 20 * 4 * 10);
  CubeBlock b;
  const Status st = ReadCubeBlock(*lazy, 0, 40, 0, 20, b);
  ASSERT_FALSE(st.ok());
  const std::string& m = st.message();
  EXPECT_NE(m.find("'" + path + "'"), std::string::npos) << m;
  EXPECT_NE(m.find("HDU 'DATA'"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated or corrupt"), std::string::npos) << m;
  // A block of rows reads plane by plane: the message names the plane.
  const Status rows = ReadCubeBlock(*lazy, 0, 40, 0, 5, b);
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.message().find("failed at plane "), std::string::npos) << rows.message();
}

TEST(CubeBlocks, RowsPerBlockAndVisitingOrder) {
  auto c = cftest::SyntheticCube(7, 5, 40);  // flux + variance: 8 bytes per pixel
  EXPECT_EQ(RowsPerBlock(*c, 0, 40, 7 * 40 * 8 * 2), 2);
  EXPECT_EQ(RowsPerBlock(*c, 0, 40, 1), 1);
  EXPECT_EQ(RowsPerBlock(*c, 0, 40, size_t{1} << 30), 5);
  std::vector<int64_t> starts;
  size_t most = 0;
  ASSERT_TRUE(ForEachRowBlock(*c, 3, 13, 7 * 10 * 8 * 2, [&](const CubeBlock& b) {
                starts.push_back(b.y0);
                most = std::max(most, b.flux.size() + b.variance.size());
                EXPECT_EQ(b.planes(), 10);
                EXPECT_EQ(b.flux[b.Index(4, b.y0, 3)], c->flux[c->Index(4, b.y0, 3)]);
                return Status::OK();
              }).ok());
  EXPECT_EQ(starts, (std::vector<int64_t>{0, 2, 4}));
  EXPECT_LE(most * sizeof(float), size_t{7 * 10 * 8 * 2}) << "a block stays within its budget";
  const Status stop = ForEachRowBlock(*c, 0, 40, 1, [](const CubeBlock&) { return Status::Error("stop"); });
  EXPECT_EQ(stop.message(), "stop");
}

}  // namespace
