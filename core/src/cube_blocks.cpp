// Blocks of cubes in memory or in their file. See cube_blocks.hpp.
#include "cubeflow/cube_blocks.hpp"

#include <algorithm>
#include <string>

namespace cubeflow {

CubeReader::~CubeReader() = default;
LazyCube::~LazyCube() = default;

const LazyCube* AsLazy(const Cube& cube) {
  const auto* lazy = dynamic_cast<const LazyCube*>(&cube);
  return lazy && lazy->reader ? lazy : nullptr;
}

size_t BlockBytes(const Cube& cube) {
  const LazyCube* l = AsLazy(cube);
  return l ? l->block_bytes : kDefaultBlockBytes;
}

bool CubeHasVariance(const Cube& cube) {
  if (const LazyCube* l = AsLazy(cube)) return l->reader->has_variance();
  return !cube.variance.empty();
}

bool CubeHasMask(const Cube& cube) {
  if (const LazyCube* l = AsLazy(cube)) return l->reader->has_mask();
  return !cube.mask.empty();
}

Status ReadCubeBlock(const Cube& cube, int64_t k0, int64_t k1, int64_t y0, int64_t y1, CubeBlock& out) {
  if (k0 < 0 || k1 > cube.nwave || k0 >= k1 || y0 < 0 || y1 > cube.ny || y0 >= y1)
    return Status::Error("block of planes [" + std::to_string(k0) + ", " + std::to_string(k1) + ") x rows [" +
                         std::to_string(y0) + ", " + std::to_string(y1) + ") is outside the cube '" + cube.source +
                         "' (" + std::to_string(cube.nx) + " x " + std::to_string(cube.ny) + " x " +
                         std::to_string(cube.nwave) + ")");
  if (const LazyCube* l = AsLazy(cube)) return l->reader->Read(k0, k1, y0, y1, out);
  const size_t nvox = static_cast<size_t>(cube.nx * cube.ny * cube.nwave);
  if (cube.flux.size() != nvox || (!cube.variance.empty() && cube.variance.size() != nvox) ||
      (!cube.mask.empty() && cube.mask.size() != nvox))
    return Status::Error("the cube's arrays do not match its shape " + std::to_string(cube.nx) + " x " +
                         std::to_string(cube.ny) + " x " + std::to_string(cube.nwave));
  out.k0 = k0;
  out.k1 = k1;
  out.y0 = y0;
  out.y1 = y1;
  out.nx = cube.nx;
  const size_t n = static_cast<size_t>((k1 - k0) * (y1 - y0) * cube.nx);
  const size_t run = out.plane_size();
  auto copy = [&](const auto& src, auto& dst) {
    dst.resize(n);
    for (int64_t k = k0; k < k1; ++k)
      std::copy_n(src.begin() + static_cast<std::ptrdiff_t>(cube.Index(0, y0, k)), run,
                  dst.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(k - k0) * run));
  };
  copy(cube.flux, out.flux);
  if (cube.variance.empty()) out.variance.clear(); else copy(cube.variance, out.variance);
  if (cube.mask.empty()) out.mask.clear(); else copy(cube.mask, out.mask);
  return Status::OK();
}

int64_t RowsPerBlock(const Cube& cube, int64_t k0, int64_t k1, size_t max_bytes) {
  const size_t per_pixel = sizeof(float) * (CubeHasVariance(cube) ? 2 : 1) + (CubeHasMask(cube) ? 1 : 0);
  const size_t per_row = std::max<size_t>(1, static_cast<size_t>(std::max<int64_t>(k1 - k0, 1) * cube.nx) * per_pixel);
  return std::clamp<int64_t>(static_cast<int64_t>(max_bytes / per_row), 1, std::max<int64_t>(cube.ny, 1));
}

Status ForEachRowBlock(const Cube& cube, int64_t k0, int64_t k1, size_t max_bytes,
                       const std::function<Status(const CubeBlock&)>& visit) {
  const int64_t rows = RowsPerBlock(cube, k0, k1, max_bytes);
  CubeBlock block;
  for (int64_t y0 = 0; y0 < cube.ny; y0 += rows) {
    const int64_t y1 = std::min(cube.ny, y0 + rows);
    CUBEFLOW_RETURN_NOT_OK(ReadCubeBlock(cube, k0, k1, y0, y1, block));
    CUBEFLOW_RETURN_NOT_OK(visit(block));
  }
  return Status::OK();
}

}  // namespace cubeflow
