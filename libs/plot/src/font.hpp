#pragma once
// Private: the embedded 5x7 bitmap font and text layout (used by canvas.cpp).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cubeflow::plot::font {

constexpr int kCols = 5;
constexpr int kRows = 9;    // 7 above the baseline + 2 descender rows
constexpr int kAscent = 7;  // rows 0..6
constexpr int kDescent = 2;

struct Glyph {
  std::array<uint8_t, kRows> rows{};  ///< bit c = column c
  int left = 0;                       ///< first inked column (proportional spacing)
  int width = kCols;                  ///< inked columns (advance = width + 1)
};

/// The glyph of a code point (an open box for code points the font lacks).
const Glyph& Lookup(uint32_t cp);
/// True if the font has a glyph for the code point.
bool Has(uint32_t cp);
std::vector<uint32_t> DecodeUtf8(const std::string& s);

/// One positioned glyph of a laid-out line.
struct Run {
  const Glyph* glyph = nullptr;
  int x = 0;      ///< left edge, pixels from the start of the line
  int shift = 0;  ///< baseline offset in pixels (negative: raised)
  int scale = 1;
};
/// Lays out a line: positions, scales and baseline shifts of its glyphs.
std::vector<Run> Layout(const std::string& text, int scale, bool markup, bool bold);

}  // namespace cubeflow::plot::font
