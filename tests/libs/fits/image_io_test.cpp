// ImageReader header look-ups: absent keys are std::nullopt, not errors.
#include "cubeflow/fits/image_io.hpp"

#include <fitsio.h>
#include <gtest/gtest.h>

#include <string>

#include "fits_test_util.hpp"

namespace cubeflow {
namespace {

/// Primary HDU (OBJECT, EXPTIME, no data) and a 4 x 3 image extension SCI with BUNIT, a
/// PHOTFLAM written with a FITS 'D' exponent and EXPTIME of its own.
void WriteImageFile(const std::string& path) {
  fitsfile* f = nullptr;
  int status = 0;
  fits_create_diskfile(&f, path.c_str(), &status);
  fits_create_img(f, BYTE_IMG, 0, nullptr, &status);
  fits_update_key(f, TSTRING, "OBJECT", const_cast<char*>("NGC 3627"), nullptr, &status);
  double t = 1200;
  fits_update_key(f, TDOUBLE, "EXPTIME", &t, nullptr, &status);
  long naxes[2] = {4, 3};
  fits_create_img(f, FLOAT_IMG, 2, naxes, &status);
  fits_update_key(f, TSTRING, "EXTNAME", const_cast<char*>("SCI"), nullptr, &status);
  fits_update_key(f, TSTRING, "BUNIT", const_cast<char*>("ELECTRONS/S"), nullptr, &status);
  fits_write_record(f, "PHOTFLAM=              1.5D-19 / inverse sensitivity", &status);
  t = 500;
  fits_update_key(f, TDOUBLE, "EXPTIME", &t, nullptr, &status);
  float v[12] = {0};
  fits_write_img(f, TFLOAT, 1, 12, v, &status);
  fits_close_file(f, &status);
  ASSERT_EQ(status, 0);
}

TEST(ImageReader, KeysAreOptionalWithPrimaryFallback) {
  cftest::TempDir dir;
  const std::string path = dir.File("hst.fits");
  WriteImageFile(path);
  auto r = fits::ImageReader::Open(path, "SCI");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const fits::ImageReader& img = **r;
  EXPECT_EQ(img.Key("BUNIT").value_or("<absent>"), "ELECTRONS/S");
  EXPECT_EQ(img.Key("bunit").value_or("<absent>"), "ELECTRONS/S");  // keys are case-insensitive
  EXPECT_EQ(img.Key("OBJECT").value_or("<absent>"), "NGC 3627");  // from the primary HDU
  EXPECT_FALSE(img.Key("OBJECT", /*primary_fallback=*/false).has_value());
  EXPECT_FALSE(img.Key("PHOTPLAM").has_value());
  EXPECT_DOUBLE_EQ(img.KeyDouble("PHOTFLAM").value_or(0), 1.5e-19);  // 'D' exponent
  EXPECT_DOUBLE_EQ(img.KeyDouble("EXPTIME").value_or(0), 500);       // the image HDU wins
  EXPECT_FALSE(img.KeyDouble("BUNIT").has_value());                   // not a number
  EXPECT_FALSE(img.KeyDouble("PHOTPLAM").has_value());
}

TEST(ImageReader, OpenErrorsNameTheFile) {
  cftest::TempDir dir;
  const std::string missing = dir.File("nope.fits");
  auto r = fits::ImageReader::Open(missing, "SCI");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cannot read image '" + missing + "'"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("check the path"), std::string::npos) << r.status().message();
  r = fits::ImageReader::Open(dir.path(), "SCI");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("it is a directory"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace cubeflow
