// spectral::Lsf: the line-spread-function models shared by spectral.restframe and kinematics.fit.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "cubeflow/spectral/lsf.hpp"
#include "cubeflow/spectral/spectral_ops.hpp"

using namespace cubeflow::spectral;

TEST(Lsf, ModelsGiveTheirFwhm) {
  EXPECT_DOUBLE_EQ(Lsf::Constant(2.51).Fwhm(5000), 2.51);
  auto lin = Lsf::Linear(4800, 2.9, 6500, 2.4);
  ASSERT_TRUE(lin.ok());
  EXPECT_DOUBLE_EQ(lin->Fwhm(4000), 2.9);
  EXPECT_DOUBLE_EQ(lin->Fwhm(7000), 2.4);
  EXPECT_NEAR(lin->Fwhm(5650), 2.65, 1e-12);
  for (double l : {4800.0, 5500.0, 7000.0}) EXPECT_DOUBLE_EQ(Lsf::Bacon2017().Fwhm(l), MuseLsfFwhm(l));
  EXPECT_NEAR(Lsf::Constant(2.5).SigmaKms(5000), 2.5 / kFwhmToSigma / 5000 * kSpeedOfLightKms, 1e-9);
  EXPECT_FALSE(Lsf::Linear(6500, 2.9, 4800, 2.4).ok());
}

TEST(Lsf, TablesInterpolateAndClamp) {
  auto t = Lsf::Table({4000, 5000, 6000}, {3.0, 2.0, 2.5});
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_DOUBLE_EQ(t->Fwhm(3000), 3.0);
  EXPECT_DOUBLE_EQ(t->Fwhm(4500), 2.5);
  EXPECT_DOUBLE_EQ(t->Fwhm(5500), 2.25);
  EXPECT_DOUBLE_EQ(t->Fwhm(9000), 2.5);
  auto bad = Lsf::Table({4000, 4000, 6000}, {3.0, 2.0, 2.5}, "x");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("increase strictly"), std::string::npos);
}

TEST(Lsf, ReadsGistLsfFilesAndNamesBadLines) {
  const std::string dir = (std::filesystem::temp_directory_path() / "cubeflow-lsf-test").string();
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir + "/lsf_ok") << "# Column 1: wavelength\n# Column 2: FWHM\n4000.0  2.51\n\n9000.0  2.51  # flat\n";
    std::ofstream(dir + "/lsf_bad") << "4000.0 2.5\n5000.0\n";
  }
  auto ok = Lsf::FromFile(dir + "/lsf_ok");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_DOUBLE_EQ(ok->Fwhm(6000), 2.51);
  EXPECT_NE(ok->description().find("lsf_ok (2 rows"), std::string::npos) << ok->description();
  auto bad = Lsf::FromFile(dir + "/lsf_bad");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("lsf_bad:2: expected two numbers"), std::string::npos) << bad.status().message();
  auto none = Lsf::FromFile(dir + "/missing");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("cannot open the LSF file"), std::string::npos);
  std::filesystem::remove_all(dir);
  // nGIST's MUSE LSF file: Bacon et al. (2017) eq. 8, floored at 2.54 A.
  const std::string ngist = std::string(CUBEFLOW_TEST_DATA_DIR) + "/reference/ngist_tutorial_NGC0000/configFiles/lsf_MUSE-WFM";
  if (!std::filesystem::exists(ngist)) GTEST_SKIP() << "no " << ngist;
  auto muse = Lsf::FromFile(ngist);
  ASSERT_TRUE(muse.ok()) << muse.status().message();
  EXPECT_NEAR(muse->Fwhm(5000), MuseLsfFwhm(5000), 0.01);
  EXPECT_NEAR(muse->Fwhm(8000), 2.54, 0.01);
}
