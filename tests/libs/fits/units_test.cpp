// FluxDensityScale: the BUNIT forms of MUSE cubes and HST images.
#include <gtest/gtest.h>

#include <cmath>

#include "cubeflow/fits/units.hpp"

namespace cubeflow::fits {
namespace {

TEST(Units, FluxDensityScaleReadsMuseAndHstForms) {
  EXPECT_DOUBLE_EQ(FluxDensityScale("10**(-20)*erg/s/cm**2/Angstrom"), 1e-20);
  EXPECT_DOUBLE_EQ(FluxDensityScale("10**(-20)*erg.s**(-1).cm**(-2).angstrom**(-1)"), 1e-20);
  EXPECT_DOUBLE_EQ(FluxDensityScale("1e-20 erg/s/cm2/A"), 1e-20);
  EXPECT_DOUBLE_EQ(FluxDensityScale("10^-17 erg s-1 cm-2 AA-1"), 1e-17);
  EXPECT_DOUBLE_EQ(FluxDensityScale("erg/s/cm^2/A"), 1.0);
  EXPECT_DOUBLE_EQ(FluxDensityScale("erg/s/cm**2/Angstrom"), 1.0);
  // Factors in any order, as the real UDF-MOSAIC cube writes them.
  EXPECT_DOUBLE_EQ(FluxDensityScale("10**-20 Angstrom-1 cm-2 erg s-1"), 1e-20);
  EXPECT_DOUBLE_EQ(FluxDensityScale("1e-17 erg/cm2/s/A"), 1e-17);
  EXPECT_DOUBLE_EQ(FluxDensityScale("10**(-20) cm**(-2) erg angstrom**(-1) s**(-1)"), 1e-20);
}

TEST(Units, FluxDensityScaleRejectsOtherUnits) {
  std::string why;
  EXPECT_TRUE(std::isnan(FluxDensityScale("ELECTRONS/S", &why)));
  EXPECT_NE(why.find("ELECTRONS/S"), std::string::npos);
  EXPECT_TRUE(std::isnan(FluxDensityScale("erg/s/cm2/Hz")));
  EXPECT_TRUE(std::isnan(FluxDensityScale("")));
  EXPECT_TRUE(std::isnan(FluxDensityScale("10**(-20*erg/s/cm**2/Angstrom")));
  EXPECT_TRUE(std::isnan(FluxDensityScale("-1e-20 erg/s/cm2/A")));
  // Wrong powers or extra factors.
  EXPECT_TRUE(std::isnan(FluxDensityScale("erg/s/cm/A")));
  EXPECT_TRUE(std::isnan(FluxDensityScale("erg s-1 cm-2")));
  EXPECT_TRUE(std::isnan(FluxDensityScale("erg/s/cm2/A/arcsec2", &why)));
  EXPECT_NE(why.find("arcsec2"), std::string::npos);
  EXPECT_TRUE(std::isnan(FluxDensityScale("erg/s/cm**(2/A")));
}

}  // namespace
}  // namespace cubeflow::fits
