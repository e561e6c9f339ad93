// Inputs the fuzzers (tests/fuzz) found to crash, leak or exhaust memory in cubeflow::fits and the
// libraries under it, each made readable: every one must now be a clear error (or work).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/fits/image_io.hpp"
#include "cubeflow/fits/maps.hpp"
#include "cubeflow/fits/maps_reader.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "fits_test_util.hpp"

using namespace cubeflow;
using cftest::TempDir;
using fits::FitsReal;
using fits::FitsString;
using fits::MakeCard;

namespace {

::testing::AssertionResult Mentions(const Status& st, std::initializer_list<std::string> words) {
  if (st.ok()) return ::testing::AssertionFailure() << "expected an error";
  for (const auto& w : words)
    if (st.message().find(w) == std::string::npos)
      return ::testing::AssertionFailure() << "message does not mention '" << w << "': " << st.message();
  return ::testing::AssertionSuccess();
}

/// A raw 80-character card (no quoting or formatting done for it).
std::string Raw(const std::string& text) {
  std::string c = text;
  c.resize(80, ' ');
  return c;
}

std::string TanCards() {
  return MakeCard("NAXIS", "2") + MakeCard("CTYPE1", FitsString("RA---TAN")) +
         MakeCard("CTYPE2", FitsString("DEC--TAN")) + MakeCard("CRVAL1", FitsReal(53.16)) +
         MakeCard("CRVAL2", FitsReal(-27.78)) + MakeCard("CDELT1", FitsReal(-5.5e-5)) +
         MakeCard("CDELT2", FitsReal(5.5e-5));
}

/// Rewrites the value of every `key` card in a FITS file (in place, same width).
void PatchCards(const std::string& path, const std::string& key, const std::string& value) {
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string k = key;
  k.resize(8, ' ');
  int patched = 0;
  for (size_t i = 0; i + 80 <= bytes.size(); i += 80) {
    if (bytes.compare(i, 8, k) != 0 || bytes.compare(i + 8, 2, "= ") != 0) continue;
    std::string v = value;
    v.insert(0, 20 - v.size(), ' ');
    bytes.replace(i + 10, 20, v);
    ++patched;
  }
  ASSERT_GT(patched, 0) << key << " not found in " << path;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace

// wcslib 7.12's wcspih reads a string value that is not closed on its card on into the next
// cards and overflows a buffer (regressions/wcs/unterminated_string_then_quote.cards).
TEST(WcsHostileCards, UnterminatedStringIsAnErrorNamingTheCard) {
  const std::string cards =
      TanCards() + Raw("CUNIT1  = 'deg     ") + MakeCard("CUNIT2", FitsString("deg"));
  auto w = fits::Wcs::FromCards(CelestialWcs{cards});
  EXPECT_TRUE(Mentions(w.status(), {"WCS card 8", "no closing quote", "CUNIT1  = 'deg"}));
  // Doubled quotes inside a closed string are fine.
  auto ok = fits::Wcs::FromCards(CelestialWcs{TanCards() + MakeCard("CNAME1", FitsString("it's RA"))});
  EXPECT_TRUE(ok.ok()) << ok.status().message();
}

// A value card with a blank value (FITS's undefined value) makes wcspih's lexer take its value
// from the next cards; a string found there overflows a buffer
// (regressions/wcs/blank_value_then_string_on_next_cards.cards, found by CI's fuzz run). Such a
// card is an error naming it, and so is a card whose keyword field is not a FITS keyword. Blank
// (commentary) keywords, HIERARCH cards and a comment after a value still pass.
TEST(WcsHostileCards, BlankValueOrInvalidKeywordIsAnErrorNamingTheCard) {
  auto blank = fits::Wcs::FromCards(CelestialWcs{TanCards() + Raw("CUNIT1  =") + Raw("'deg") + Raw(" '")});
  EXPECT_TRUE(Mentions(blank.status(), {"WCS card 8", "CUNIT1 has no value"}));
  auto comment_only = fits::Wcs::FromCards(CelestialWcs{TanCards() + Raw("CUNIT1  =   / degrees")});
  EXPECT_TRUE(Mentions(comment_only.status(), {"WCS card 8", "CUNIT1 has no value"}));
  for (const std::string& bad : {Raw("'DEC--TANIP.F"), Raw("cunit1  = 'deg'"), Raw(" CUNIT1 = 'deg'"),
                                 Raw("CUNIT1' = 'deg'"), Raw("CUNIT 1 = 'deg'")}) {
    auto w = fits::Wcs::FromCards(CelestialWcs{TanCards() + bad});
    EXPECT_TRUE(Mentions(w.status(), {"WCS card 8", "keyword (columns 1-8)", "upper-case"})) << bad;
  }
  auto ok = fits::Wcs::FromCards(CelestialWcs{TanCards() + Raw("") + Raw("COMMENT   a comment") +
                                              Raw("HIERARCH ESO INS MODE = 'WFM-NOAO-N'") +
                                              MakeCard("CUNIT1", FitsString("deg"), "degrees")});
  EXPECT_TRUE(ok.ok()) << ok.status().message();
}

// A first SIP coefficient whose value is not a FITS number makes wcspih read a null pointer
// (regressions/wcs/sip_coefficient_without_value.cards; NaN, INF and hexadecimal values, which
// strtod reads but wcspih's lexer does not: sip_coefficient_nan.cards, found by CI's fuzz run);
// a numeric one still works.
TEST(WcsHostileCards, SipCoefficientWithoutANumberIsAnError) {
  for (const std::string& bad : {Raw("A_0_2"), Raw("A_0_2   = 'x'"), Raw("B_1_1   = T"), Raw("AP_0_0  = 1.0   1"),
                                 Raw("A_0_2   =  NaN"), Raw("A_0_2   = INF"), Raw("B_0_2   = -infinity"),
                                 Raw("A_0_2   = 0x10"), Raw("A_0_2   = nan(1)"), Raw("A_0_2   = 1.5E"),
                                 Raw("A_0_2   = ."), Raw("A_0_2   = +")}) {
    auto w = fits::Wcs::FromCards(CelestialWcs{bad + TanCards()});
    EXPECT_TRUE(Mentions(w.status(), {"WCS card 1", "SIP coefficient"})) << bad;
  }
  std::string sip = MakeCard("NAXIS", "2") + MakeCard("CTYPE1", FitsString("RA---TAN-SIP")) +
                    MakeCard("CTYPE2", FitsString("DEC--TAN-SIP")) + MakeCard("CRVAL1", FitsReal(10.0)) +
                    MakeCard("CRVAL2", FitsReal(20.0)) + MakeCard("CD1_1", FitsReal(-1e-4)) +
                    MakeCard("CD2_2", FitsReal(1e-4)) + MakeCard("A_ORDER", "2") + MakeCard("A_0_2", "1.5D-6") +
                    MakeCard("B_ORDER", "2") + MakeCard("B_2_0", FitsReal(-2e-6), "a comment");
  auto w = fits::Wcs::FromCards(CelestialWcs{sip});
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_NEAR(w->PixelScaleArcsec(), 0.36, 1e-9);
}

// SIP A coefficients with a primary WCS of fewer than two axes made wcspih overflow its heap
// arrays (glibc aborted in the Release replay; ASan cannot see inside the uninstrumented wcslib):
// regressions/wcs/sip_a_with_one_axis*.cards. A second axis declared by an alternate WCS (CTYPE2A)
// does not count.
TEST(WcsHostileCards, SipCoefficientsInAWcsOfOneAxisAreAnError) {
  const std::string a02 = MakeCard("A_0_2", FitsReal(2e-6));
  const std::string one_axis = MakeCard("NAXIS", "1") + MakeCard("CTYPE1", FitsString("RA---TAN"));
  for (const std::string& cards : {one_axis + a02, a02, MakeCard("NAXIS", "1") + MakeCard("AP_1_0", FitsReal(2e-6)),
                                   MakeCard("NAXIS", "1") + MakeCard("CTYPE2A", FitsString("DEC--TAN")) + a02}) {
    auto w = fits::Wcs::FromCards(CelestialWcs{cards});
    EXPECT_TRUE(Mentions(w.status(), {"SIP distortion coefficient", "the primary WCS has", "correct NAXIS / WCSAXES"})) << cards;
  }
  EXPECT_TRUE(Mentions(fits::Wcs::FromCards(CelestialWcs{one_axis + a02}).status(),
                       {"'A_0_2' (card 3)", "the primary WCS has 1 axis"}));
  EXPECT_TRUE(Mentions(fits::Wcs::FromCards(CelestialWcs{a02}).status(), {"the primary WCS has 0 axes"}));
  // Two axes declared any way wcslib counts them: NAXIS, or the axis number of a keyword.
  for (const std::string& head : {MakeCard("NAXIS", "2"), MakeCard("NAXIS", "1") + MakeCard("CRPIX2", FitsReal(1.0)),
                                  MakeCard("WCSAXES", "1") + MakeCard("CTYPE2", FitsString("DEC--TAN"))}) {
    auto w = fits::Wcs::FromCards(CelestialWcs{head + a02});
    ASSERT_FALSE(w.ok());  // no celestial axes, but parsed without the SIP refusal
    EXPECT_EQ(w.status().message().find("SIP"), std::string::npos) << w.status().message();
  }
}

// wcspih allocates arrays for NAXIS / WCSAXES axes: NAXIS = 2147483647 asked for 17 GB
// (regressions/wcs/naxis_2147483647.cards). Control characters are not FITS either.
TEST(WcsHostileCards, AbsurdAxisCountOrControlCharacterIsAnError) {
  std::string cards = TanCards();
  cards.replace(10, 20, "          2147483647");
  EXPECT_TRUE(Mentions(fits::Wcs::FromCards(CelestialWcs{cards}).status(), {"WCS card 1", "0 to 99 axes"}));
  cards = TanCards() + MakeCard("WCSAXES", "-1");
  EXPECT_TRUE(Mentions(fits::Wcs::FromCards(CelestialWcs{cards}).status(), {"WCS card 8", "0 to 99 axes"}));
  cards = TanCards() + Raw(std::string("CUNIT1  = 'de\x01'"));
  EXPECT_TRUE(Mentions(fits::Wcs::FromCards(CelestialWcs{cards}).status(), {"WCS card 8", "not printable ASCII", "'de?'"}));
}

// A singular CD matrix: wcslib 7.12 leaked the matrices its failed linset() allocated
// (regressions/wcs/singular_cd_matrix.cards; the leak shows under LeakSanitizer).
TEST(WcsHostileCards, SingularMatrixIsAnError) {
  const std::string cards = MakeCard("NAXIS", "2") + MakeCard("CTYPE1", FitsString("RA---TAN")) +
                            MakeCard("CTYPE2", FitsString("DEC--TAN")) + MakeCard("CD1_1", FitsReal(-5.55e-5)) +
                            MakeCard("CD1_2", FitsReal(2000.0));
  EXPECT_TRUE(Mentions(fits::Wcs::FromCards(CelestialWcs{cards}).status(), {"invalid WCS", "singular"}));
}

// Cards may number up to 99 axes; the transforms used fixed arrays of 8 (a stack overflow inside
// wcslib and a read past the end, regressions/wcs/ten_axes.cards).
TEST(WcsHostileCards, TenAxesTransformWithoutOverflow) {
  std::string cards = MakeCard("WCSAXES", "10") + TanCards();
  for (int i = 3; i <= 10; ++i) cards += MakeCard("CTYPE" + std::to_string(i), FitsString("LINEAR"));
  auto w = fits::Wcs::FromCards(CelestialWcs{cards});
  ASSERT_TRUE(w.ok()) << w.status().message();
  double ra = 0, dec = 0, x = 0, y = 0;
  w->PixelToSky(3.0, 4.0, ra, dec);
  w->SkyToPixel(ra, dec, x, y);
  EXPECT_NEAR(x, 3.0, 1e-8);
  EXPECT_NEAR(y, 4.0, 1e-8);
  EXPECT_NEAR(w->PixelScaleArcsec(), 0.198, 1e-9);
  // Celestial axes 9 and 10: the sky position was read from world[8] and world[9] of an array of 8.
  cards = MakeCard("WCSAXES", "10") + MakeCard("CTYPE9", FitsString("RA---TAN")) +
          MakeCard("CTYPE10", FitsString("DEC--TAN")) + MakeCard("CRVAL9", FitsReal(53.16)) +
          MakeCard("CRVAL10", FitsReal(-27.78)) + MakeCard("CRPIX9", FitsReal(1.0)) +
          MakeCard("CRPIX10", FitsReal(1.0)) + MakeCard("CDELT9", FitsReal(-5.5e-5)) +
          MakeCard("CDELT10", FitsReal(5.5e-5));
  w = fits::Wcs::FromCards(CelestialWcs{cards});
  ASSERT_TRUE(w.ok()) << w.status().message();
  w->PixelToSky(0.0, 0.0, ra, dec);  // pixel axes 9 and 10 sit at 1.0 = CRPIX
  EXPECT_NEAR(ra, 53.16, 1e-9);
  EXPECT_NEAR(dec, -27.78, 1e-9);
}

// A header that declares far more data than the file holds was read by allocating it first
// (regressions/fits_cube/huge_naxis3.fits: 64 GB); now it is an error naming file and HDU.
TEST(CubeIoHostile, HeaderDeclaringMoreDataThanTheFileIsAnError) {
  TempDir dir;
  const std::string path = dir.File("cube.fits");
  ASSERT_TRUE(fits::WriteCube(path, *cftest::SyntheticCube(4, 3, 6)).ok());
  PatchCards(path, "NAXIS3", "2147483647");
  auto r = fits::ReadCube(path);
  EXPECT_TRUE(Mentions(r.status(), {path, "HDU 'DATA'", "4 x 3 x 2147483647", "truncated or its header (NAXISn) is wrong"}));
  PatchCards(path, "NAXIS1", "4611686018427387904");  // the pixel count overflows 64 bits
  r = fits::ReadCube(path);
  EXPECT_TRUE(Mentions(r.status(), {path, "more than 2^63 bytes"}));
}

// CFITSIO decompresses a gzip file into memory, allocating the size its trailer declares:
// regressions/fits_cube/gzip_magic_4_bytes_oom.fits (4 bytes) made it ask for 3.6 GB. Files too
// short for gzip, or declaring more than deflate can encode (1032:1), are refused before it.
TEST(CubeIoHostile, GzipFileDeclaringMoreThanGzipCanEncodeIsRefused) {
  TempDir dir;
  const std::string tiny = dir.File("tiny.fits");
  std::ofstream(tiny, std::ios::binary) << std::string("\x1f\x8b\xf8\xd7", 4);
  EXPECT_TRUE(Mentions(fits::ReadCube(tiny).status(), {tiny, "gzip-compressed", "only 4 bytes", "truncated"}));
  const std::string bomb = dir.File("bomb.fits");
  std::string bytes("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x01\x00\x00\xff\xff\x00\x00\x00\x00\xff\xff\xff\xd7", 23);
  std::ofstream(bomb, std::ios::binary) << bytes;
  EXPECT_TRUE(Mentions(fits::ReadCube(bomb).status(), {bomb, "declares 3623878655 bytes uncompressed (modulo 2^32) from 23",
                                                        "more than gzip can encode"}));
  EXPECT_TRUE(Mentions(fits::ImageReader::Open(bomb, "").status(), {bomb, "more than gzip can encode"}));
  // A declared size below the file's own: CFITSIO would allocate it + 4 GiB
  // (regressions/fits_cube/gzip_declares_less_than_its_size_oom.fits).
  const std::string wrapped = dir.File("wrapped.fits");
  std::string w("\x1f\x8b\x08\x00", 4);
  w.resize(64, '\xff');
  w.replace(60, 4, std::string(4, '\0'));
  std::ofstream(wrapped, std::ios::binary) << w;
  EXPECT_TRUE(Mentions(fits::ReadCube(wrapped).status(), {wrapped, "declares 0 bytes uncompressed", "allocate as 4294967296"}));
  // A real gzip-compressed cube still reads.
  const std::string path = dir.File("cube.fits");
  ASSERT_TRUE(fits::WriteCube(path, *cftest::SyntheticCube(4, 3, 6)).ok());
  if (std::system(("gzip -f '" + path + "'").c_str()) != 0) GTEST_SKIP() << "no gzip";
  auto r = fits::ReadCube(path + ".gz");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->nwave, 6);
}

TEST(ImageIoHostile, HeaderDeclaringMoreDataThanTheFileIsAnError) {
  TempDir dir;
  const std::string path = dir.File("maps.fits");
  auto m = std::make_shared<Map>();
  m->name = "FLUX";
  m->nx = 4;
  m->ny = 3;
  m->data.assign(12, 1.0);
  fits::MapsProduct p;
  p.maps = {m};
  ASSERT_TRUE(fits::WriteMapsFile(path, p).ok());
  PatchCards(path, "NAXIS2", "1000000000");
  auto r = fits::ReadMap(path, "FLUX");
  EXPECT_TRUE(Mentions(r.status(), {path, "HDU 'FLUX'", "4 x 1000000000", "truncated"}));
  auto maps = fits::MapsFile::Open(path);
  ASSERT_TRUE(maps.ok()) << maps.status().message();
  EXPECT_TRUE(Mentions(maps->Load("FLUX").status(), {path, "'FLUX'", "4 x 1000000000 x 1", "truncated"}));
}
