// PNG encoder / decoder (8-bit, non-interlaced) on top of zlib.
#include "cubeflow/plot/png.hpp"

#include "cubeflow/atomic_file.hpp"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace cubeflow::plot {

namespace {

constexpr uint8_t kSignature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
constexpr size_t kMaxIdat = 1 << 20;  // bytes of compressed data per IDAT chunk

const std::array<uint32_t, 256>& CrcTable() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table;
}

void PutU32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

uint32_t GetU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void PutChunk(std::string& out, const char type[4], const uint8_t* data, size_t n) {
  PutU32(out, static_cast<uint32_t>(n));
  const size_t start = out.size();
  out.append(type, 4);
  if (n) out.append(reinterpret_cast<const char*>(data), n);
  const uint32_t crc = Crc32(reinterpret_cast<const uint8_t*>(out.data() + start), n + 4);
  PutU32(out, crc);
}

inline uint8_t Paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return static_cast<uint8_t>(a);
  if (pb <= pc) return static_cast<uint8_t>(b);
  return static_cast<uint8_t>(c);
}

/// The value PNG filter `type` predicts for byte i of a raw row (bpp bytes per pixel) from the
/// bytes before it in the row and the previous raw row (nullptr for the first row).
inline int Predict(int type, const uint8_t* row, const uint8_t* prev, size_t i, int bpp) {
  const int a = i >= static_cast<size_t>(bpp) ? row[i - bpp] : 0;
  const int b = prev ? prev[i] : 0;
  const int c = (prev && i >= static_cast<size_t>(bpp)) ? prev[i - bpp] : 0;
  switch (type) {
    case 0: return 0;
    case 1: return a;
    case 2: return b;
    case 3: return (a + b) / 2;
    default: return Paeth(a, b, c);
  }
}

/// Applies PNG filter `type` to `row` (bpp bytes per pixel) given the previous raw row.
void FilterRow(int type, const uint8_t* row, const uint8_t* prev, size_t n, int bpp, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(row[i] - Predict(type, row, prev, i, bpp));
}

}  // namespace

uint32_t Crc32(const uint8_t* data, size_t n, uint32_t crc) {
  const auto& t = CrcTable();
  uint32_t c = crc ^ 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = t[(c ^ data[i]) & 0xffu] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

Result<std::string> EncodePng(const RgbImage& image, int compression) {
  if (image.width <= 0 || image.height <= 0)
    return Status::Error("cannot encode a PNG of " + std::to_string(image.width) + " x " +
                         std::to_string(image.height) + " pixels");
  const size_t stride = static_cast<size_t>(image.width) * 3;
  if (image.rgb.size() != stride * static_cast<size_t>(image.height))
    return Status::Error("cannot encode a PNG: " + std::to_string(image.rgb.size()) + " bytes for " +
                         std::to_string(image.width) + " x " + std::to_string(image.height) + " RGB pixels");
  // Filtered scanlines: per row the filter with the smallest sum of |signed residuals|.
  std::vector<uint8_t> raw((stride + 1) * static_cast<size_t>(image.height));
  std::vector<uint8_t> trial(stride);
  for (int y = 0; y < image.height; ++y) {
    const uint8_t* row = image.rgb.data() + static_cast<size_t>(y) * stride;
    const uint8_t* prev = y > 0 ? row - stride : nullptr;
    uint8_t* dst = raw.data() + static_cast<size_t>(y) * (stride + 1);
    uint64_t best = UINT64_MAX;
    for (int type = 0; type < 5; ++type) {
      FilterRow(type, row, prev, stride, 3, trial.data());
      uint64_t score = 0;
      for (uint8_t v : trial) score += v < 128 ? v : 256 - v;
      if (score < best) {
        best = score;
        dst[0] = static_cast<uint8_t>(type);
        std::memcpy(dst + 1, trial.data(), stride);
      }
    }
  }
  uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
  std::vector<uint8_t> z(zlen);
  const int zst = compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()),
                            std::clamp(compression, 0, 9));
  if (zst != Z_OK) return Status::Error("zlib compress2 failed with status " + std::to_string(zst));

  std::string out(reinterpret_cast<const char*>(kSignature), 8);
  uint8_t ihdr[13];
  for (int i = 0; i < 4; ++i) {
    ihdr[i] = static_cast<uint8_t>((static_cast<uint32_t>(image.width) >> (24 - 8 * i)) & 0xff);
    ihdr[4 + i] = static_cast<uint8_t>((static_cast<uint32_t>(image.height) >> (24 - 8 * i)) & 0xff);
  }
  ihdr[8] = 8;   // bit depth
  ihdr[9] = 2;   // colour type: truecolour
  ihdr[10] = 0;  // deflate
  ihdr[11] = 0;  // adaptive filtering
  ihdr[12] = 0;  // no interlace
  PutChunk(out, "IHDR", ihdr, sizeof ihdr);
  for (size_t off = 0; off < zlen; off += kMaxIdat)
    PutChunk(out, "IDAT", z.data() + off, std::min<size_t>(kMaxIdat, zlen - off));
  PutChunk(out, "IEND", nullptr, 0);
  return out;
}

Status WritePng(const std::string& path, const RgbImage& image, int compression) {
  auto bytes = EncodePng(image, compression);
  if (!bytes.ok()) return Status::Error("cannot write '" + path + "': " + bytes.status().message());
  return WriteFileAtomic(path, std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
}

Result<RgbImage> DecodePng(const std::string& bytes) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 8 || std::memcmp(p, kSignature, 8) != 0) return Status::Error("not a PNG file (bad signature)");
  size_t off = 8;
  int width = 0, height = 0, ctype = -1;
  std::string idat;
  bool seen_end = false;
  while (off + 12 <= n) {
    const uint32_t len = GetU32(p + off);
    if (off + 12 + static_cast<size_t>(len) > n) return Status::Error("truncated PNG chunk at byte " + std::to_string(off));
    const std::string type(reinterpret_cast<const char*>(p + off + 4), 4);
    const uint32_t crc = GetU32(p + off + 8 + len);
    if (Crc32(p + off + 4, len + 4) != crc) return Status::Error("CRC mismatch in PNG chunk '" + type + "'");
    const uint8_t* d = p + off + 8;
    if (type == "IHDR") {
      if (len != 13) return Status::Error("bad IHDR length");
      width = static_cast<int>(GetU32(d));
      height = static_cast<int>(GetU32(d + 4));
      if (d[8] != 8) return Status::Error("unsupported PNG bit depth " + std::to_string(d[8]) + " (only 8)");
      ctype = d[9];
      if (ctype != 0 && ctype != 2 && ctype != 4 && ctype != 6)
        return Status::Error("unsupported PNG colour type " + std::to_string(ctype));
      if (d[12] != 0) return Status::Error("interlaced PNGs are not supported");
    } else if (type == "IDAT") {
      idat.append(reinterpret_cast<const char*>(d), len);
    } else if (type == "IEND") {
      seen_end = true;
      break;
    }
    off += 12 + len;
  }
  if (ctype < 0 || width <= 0 || height <= 0) return Status::Error("PNG has no valid IHDR chunk");
  if (!seen_end) return Status::Error("PNG has no IEND chunk (truncated file?)");
  const int channels = ctype == 0 ? 1 : ctype == 2 ? 3 : ctype == 4 ? 2 : 4;
  const size_t stride = static_cast<size_t>(width) * channels;
  std::vector<uint8_t> raw((stride + 1) * static_cast<size_t>(height));
  uLongf rawlen = static_cast<uLongf>(raw.size());
  const int zst = uncompress(raw.data(), &rawlen, reinterpret_cast<const Bytef*>(idat.data()),
                             static_cast<uLong>(idat.size()));
  if (zst != Z_OK || rawlen != raw.size())
    return Status::Error("PNG image data do not inflate to " + std::to_string(raw.size()) + " bytes (zlib status " +
                         std::to_string(zst) + ")");
  std::vector<uint8_t> pix(stride * static_cast<size_t>(height));
  for (int y = 0; y < height; ++y) {
    const uint8_t* src = raw.data() + static_cast<size_t>(y) * (stride + 1);
    const int type = src[0];
    if (type > 4) return Status::Error("bad PNG filter type " + std::to_string(type) + " in row " + std::to_string(y));
    uint8_t* row = pix.data() + static_cast<size_t>(y) * stride;
    const uint8_t* prev = y > 0 ? row - stride : nullptr;
    for (size_t i = 0; i < stride; ++i)  // bytes before i are already reconstructed
      row[i] = static_cast<uint8_t>(src[1 + i] + Predict(type, row, prev, i, channels));
  }
  RgbImage img;
  img.width = width;
  img.height = height;
  img.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (size_t i = 0; i < static_cast<size_t>(width) * height; ++i) {
    const uint8_t* s = pix.data() + i * channels;
    uint8_t* o = img.rgb.data() + i * 3;
    if (channels <= 2) {
      o[0] = o[1] = o[2] = s[0];
    } else {
      o[0] = s[0];
      o[1] = s[1];
      o[2] = s[2];
    }
  }
  return img;
}

Result<RgbImage> ReadPng(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error("cannot open '" + path + "': " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  auto r = DecodePng(ss.str());
  if (!r.ok()) return Status::Error("'" + path + "': " + r.status().message());
  return r;
}

}  // namespace cubeflow::plot
