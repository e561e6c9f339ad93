#pragma once
/// \file cube_blocks.hpp
/// \brief Cubes larger than memory (issue #18): a Cube whose pixels stay in the file
/// (LazyCube) and the one way consumers read pixels of any cube, in blocks of planes x rows
/// (ReadCubeBlock, ForEachRowBlock).
///
/// A LazyCube is a Cube (port type "cube") with nx, ny, nwave, wave, wcs, bunit, source and
/// header filled and flux, variance and mask empty; its CubeReader reads any block of the
/// cube's channels from the file. Nodes that stream (spectral.snr_map, binning.voronoi) work
/// on both kinds through the functions below and hold one block at a time; a node that needs
/// the whole cube in memory can call ReadCubeBlock over everything. io.read_cube emits a
/// LazyCube when the channels it would read exceed its `max_memory`.
///
/// Block layout: planes [k0, k1) x rows [y0, y1) x all nx columns, FITS order within the
/// block: index = ((k - k0) * (y1 - y0) + (y - y0)) * nx + x. MUSE cubes are stored plane by
/// plane, so a block of rows costs one contiguous read per plane, and a block of whole planes
/// (y0 = 0, y1 = ny) one read.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow {

/// Default size of the blocks a streaming consumer reads of a LazyCube: 64 MiB.
inline constexpr size_t kDefaultBlockBytes = size_t{64} << 20;

/// \brief Pixels of a block of a cube (see the file comment for the layout).
struct CubeBlock {
  int64_t k0 = 0, k1 = 0;  ///< planes [k0, k1), 0-based channels of the cube (not of the file)
  int64_t y0 = 0, y1 = 0;  ///< rows [y0, y1)
  int64_t nx = 0;
  std::vector<float> flux;       ///< NaN where undefined
  std::vector<float> variance;   ///< empty if the cube has no variance
  std::vector<uint8_t> mask;     ///< empty if the cube has no mask; nonzero = bad
  int64_t planes() const { return k1 - k0; }
  int64_t rows() const { return y1 - y0; }
  /// Pixels per plane of the block.
  size_t plane_size() const { return static_cast<size_t>(rows() * nx); }
  /// Index of pixel (x, y, k) in the cube's coordinates.
  size_t Index(int64_t x, int64_t y, int64_t k) const {
    return static_cast<size_t>(((k - k0) * rows() + (y - y0)) * nx + x);
  }
  /// Heap bytes held.
  size_t bytes() const { return (flux.capacity() + variance.capacity()) * sizeof(float) + mask.capacity(); }
};

/// \brief Reads blocks of a cube kept elsewhere (a FITS file). Implementations are
/// thread-safe: several nodes may read the same cube at once.
class CubeReader {
 public:
  virtual ~CubeReader();
  virtual bool has_variance() const = 0;
  virtual bool has_mask() const = 0;
  /// Reads planes [k0, k1) x rows [y0, y1) into `out` (resized; its buffers are reused).
  /// Errors name the file and the extension (truncated or corrupt file, I/O error).
  virtual Status Read(int64_t k0, int64_t k1, int64_t y0, int64_t y1, CubeBlock& out) const = 0;
  /// Bytes read from the file so far by this reader (pixels only), for benchmarks.
  virtual uint64_t bytes_read() const { return 0; }
};

/// \brief A cube whose pixels stay in the file: flux, variance and mask are empty, `reader`
/// reads them. Everything else (shape, wave, wcs, bunit, source, header) is filled.
class LazyCube : public Cube {
 public:
  ~LazyCube() override;
  size_t bytes() const override { return 0; }
  std::shared_ptr<const CubeReader> reader;
  /// Largest block the consumers read at a time (io.read_cube's block_size).
  size_t block_bytes = kDefaultBlockBytes;
};

/// The LazyCube behind `cube`, or null if its pixels are in memory.
const LazyCube* AsLazy(const Cube& cube);
/// The block size consumers of `cube` use: its block_bytes for a LazyCube, else kDefaultBlockBytes.
size_t BlockBytes(const Cube& cube);
/// True if the cube has a variance (in memory or in its file).
bool CubeHasVariance(const Cube& cube);
/// True if the cube has a data-quality mask (in memory or in its file).
bool CubeHasMask(const Cube& cube);

/// \brief Reads planes [k0, k1) x rows [y0, y1) of any cube into `out`: a copy for a cube in
/// memory, a read through the reader for a LazyCube. Errors: a block outside the cube, an
/// in-memory cube whose arrays do not match its shape, and the reader's errors.
Status ReadCubeBlock(const Cube& cube, int64_t k0, int64_t k1, int64_t y0, int64_t y1, CubeBlock& out);

/// Rows per block so that planes [k0, k1) x rows of the cube (flux, variance, mask) take at
/// most `max_bytes` (at least 1 row, at most ny).
int64_t RowsPerBlock(const Cube& cube, int64_t k0, int64_t k1, size_t max_bytes);

/// \brief Visits planes [k0, k1) of the cube in blocks of whole rows, top to bottom (y
/// increasing), each block at most `max_bytes` (RowsPerBlock); one block is held at a time.
/// Stops at the first error of the read or of `visit`.
Status ForEachRowBlock(const Cube& cube, int64_t k0, int64_t k1, size_t max_bytes,
                       const std::function<Status(const CubeBlock&)>& visit);

}  // namespace cubeflow
