// AtomicFitsFile: the temporary file, checksums, close and rename shared by the FITS writers.
#include "cubeflow/fits/atomic_fits_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cubeflow/fits/maps.hpp"
#include "fits_test_util.hpp"

namespace cubeflow {
namespace {

using cftest::TempDir;

std::string TempOf(const std::string& path) { return path + ".tmp-" + std::to_string(::getpid()); }

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

/// Appends a small 2-D float image named `name`.
int AppendImage(fitsfile* f, const char* name) {
  int status = 0;
  long long naxes[2] = {3, 2};
  fits_create_imgll(f, FLOAT_IMG, 2, naxes, &status);
  fits_update_key(f, TSTRING, "EXTNAME", const_cast<char*>(name), nullptr, &status);
  float v[6] = {1, 2, 3, 4, 5, 6};
  long long fpix[2] = {1, 1};
  fits_write_pixll(f, TFLOAT, fpix, 6, v, &status);
  return status;
}

TEST(AtomicFitsFile, CommitWritesChecksumsOfEveryHduAndReplacesTheTarget) {
  TempDir dir;
  const std::string path = dir.File("out.fits");
  std::ofstream(path) << "previous";
  auto out = fits::AtomicFitsFile::Create(path, "test product");
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out->temp_path(), TempOf(path));
  EXPECT_TRUE(std::filesystem::exists(TempOf(path)));
  EXPECT_EQ(FirstLine(path), "previous");  // untouched until Commit
  int status = 0;
  fits_create_imgll(out->get(), BYTE_IMG, 0, nullptr, &status);
  ASSERT_TRUE(out->Check(status).ok());
  ASSERT_EQ(AppendImage(out->get(), "ONE"), 0);
  ASSERT_EQ(AppendImage(out->get(), "TWO"), 0);
  const Status st = out->Commit();
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_FALSE(std::filesystem::exists(TempOf(path)));
  EXPECT_EQ(out->get(), nullptr);

  fitsfile* f = nullptr;
  ASSERT_EQ(fits_open_diskfile(&f, path.c_str(), READONLY, &status), 0);
  int nhdu = 0;
  fits_get_num_hdus(f, &nhdu, &status);
  EXPECT_EQ(nhdu, 3);
  for (int i = 1; i <= nhdu; ++i) {
    int type = 0, datastatus = 0, hdustatus = 0;
    fits_movabs_hdu(f, i, &type, &status);
    fits_verify_chksum(f, &datastatus, &hdustatus, &status);
    EXPECT_EQ(datastatus, 1) << "HDU " << i;  // 1: present and correct
    EXPECT_EQ(hdustatus, 1) << "HDU " << i;
  }
  fits_close_file(f, &status);
  EXPECT_EQ(status, 0);
  // A second Commit is refused with a message, not a crash.
  EXPECT_NE(out->Commit().message().find("already committed"), std::string::npos);
}

TEST(AtomicFitsFile, NotCommittedRemovesTheTemporaryAndLeavesTheTarget) {
  TempDir dir;
  const std::string path = dir.File("out.fits");
  std::ofstream(path) << "previous";
  {
    auto out = fits::AtomicFitsFile::Create(path);
    ASSERT_TRUE(out.ok());
    ASSERT_EQ(AppendImage(out->get(), "DATA"), 0);
    fits::AtomicFitsFile moved = std::move(*out);  // ownership moves with the object
    EXPECT_EQ(out->get(), nullptr);
    EXPECT_NE(moved.get(), nullptr);
  }
  EXPECT_FALSE(std::filesystem::exists(TempOf(path)));
  EXPECT_EQ(FirstLine(path), "previous");
}

TEST(AtomicFitsFile, FailNamesTheFileAndTheHduAndCleansUp) {
  TempDir dir;
  const std::string path = dir.File("cube.fits");
  auto out = fits::AtomicFitsFile::Create(path, "cube");
  ASSERT_TRUE(out.ok());
  out->set_hdu("STAT");
  const Status st = out->Fail("disk on fire");
  EXPECT_EQ(st.message(), "cannot write cube '" + path + "' (HDU 'STAT'): disk on fire");
  EXPECT_EQ(out->get(), nullptr);
  EXPECT_FALSE(std::filesystem::exists(TempOf(path)));
  EXPECT_FALSE(std::filesystem::exists(path));
  // A CFITSIO status: its error text, same prefix.
  auto again = fits::AtomicFitsFile::Create(path, "cube");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->Check(0).ok());
  const Status bad = again->Check(BAD_DIMEN);
  EXPECT_NE(bad.message().find("cannot write cube '" + path + "' (HDU 'PRIMARY'): CFITSIO status"),
            std::string::npos)
      << bad.message();
  EXPECT_FALSE(std::filesystem::exists(TempOf(path)));
}

TEST(AtomicFitsFile, CreateInAMissingDirectorySaysWhatToCheck) {
  TempDir dir;
  const std::string path = dir.File("missing/out.fits");
  auto out = fits::AtomicFitsFile::Create(path);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("cannot write '" + path + "'"), std::string::npos)
      << out.status().message();
  EXPECT_NE(out.status().message().find("check that the directory exists and is writable"), std::string::npos)
      << out.status().message();
}

TEST(AtomicFitsFile, MapsPrimaryThenOwnExtensions) {
  // What io.write_spectra does: the MAPS provenance header, then its own HDUs, one commit.
  TempDir dir;
  const std::string path = dir.File("spectra.fits");
  auto out = fits::AtomicFitsFile::Create(path);
  ASSERT_TRUE(out.ok());
  fits::MapsProduct prim;
  prim.run.pipeline_file = "p.yaml";
  prim.primary["CFPROD"] = "SPECTRA";
  prim.partial = true;
  ASSERT_TRUE(fits::WriteMapsPrimary(*out, prim).ok());
  ASSERT_EQ(AppendImage(out->get(), "SPECTRA"), 0);
  ASSERT_TRUE(out->Commit().ok());
  fitsfile* f = nullptr;
  int status = 0;
  ASSERT_EQ(fits_open_diskfile(&f, path.c_str(), READONLY, &status), 0);
  char v[FLEN_VALUE] = {0};
  fits_read_key(f, TSTRING, "CFPROD", v, nullptr, &status);
  EXPECT_STREQ(v, "SPECTRA");
  int partial = 0;
  fits_read_key(f, TLOGICAL, "PARTIAL", &partial, nullptr, &status);
  EXPECT_EQ(partial, 1);
  int nhdu = 0;
  fits_get_num_hdus(f, &nhdu, &status);
  EXPECT_EQ(nhdu, 2);
  fits_close_file(f, &status);
  EXPECT_EQ(status, 0);
}

}  // namespace
}  // namespace cubeflow
