#pragma once
/// \file png.hpp
/// \brief PNG encoding (8-bit RGB, zlib deflate, adaptive per-row filters) and a small decoder
/// for 8-bit non-interlaced PNGs (grey, grey+alpha, RGB, RGBA), used to check written files.
///
/// All functions are pure or touch only the named file; they are thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::plot {

/// \brief An 8-bit RGB raster, row-major from the top-left pixel: index = 3 * (y * width + x).
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

/// CRC-32 (ISO 3309 / PNG) of `n` bytes, continuing from `crc` (0 for a fresh CRC).
uint32_t Crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

/// Encodes an RGB image as a PNG byte stream (IHDR, one or more IDAT, IEND; colour type 2,
/// bit depth 8). `compression` is the zlib level 0..9. Fails on an empty or inconsistent image.
Result<std::string> EncodePng(const RgbImage& image, int compression = 6);

/// Writes a PNG atomically: to `path + ".tmp-<pid>"`, then rename(2) into place. On error the
/// temporary file is removed and an existing `path` is left untouched.
Status WritePng(const std::string& path, const RgbImage& image, int compression = 6);

/// Decodes an 8-bit, non-interlaced PNG of colour type 0, 2, 4 or 6 into RGB (alpha dropped,
/// grey replicated). Verifies the signature, every chunk CRC and the zlib stream.
Result<RgbImage> DecodePng(const std::string& bytes);
/// Reads and decodes a PNG file (see DecodePng).
Result<RgbImage> ReadPng(const std::string& path);

}  // namespace cubeflow::plot
