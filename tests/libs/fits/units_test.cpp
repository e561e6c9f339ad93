// FluxDensityScale: the BUNIT forms of MUSE cubes and HST images.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "cubeflow/fits/units.hpp"

namespace cubeflow::fits {
namespace {

/// The factor, or NaN with the error printed (so a failure shows why).
double Scale(const std::string& bunit) {
  auto r = FluxDensityScale(bunit);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : std::nan("");
}

/// The error message for a unit that must be refused ("" if it was accepted).
std::string Refusal(const std::string& bunit) {
  auto r = FluxDensityScale(bunit);
  return r.ok() ? std::string() : r.status().message();
}

TEST(Units, FluxDensityScaleReadsMuseAndHstForms) {
  EXPECT_DOUBLE_EQ(Scale("10**(-20)*erg/s/cm**2/Angstrom"), 1e-20);
  EXPECT_DOUBLE_EQ(Scale("10**(-20)*erg.s**(-1).cm**(-2).angstrom**(-1)"), 1e-20);
  EXPECT_DOUBLE_EQ(Scale("1e-20 erg/s/cm2/A"), 1e-20);
  EXPECT_DOUBLE_EQ(Scale("10^-17 erg s-1 cm-2 AA-1"), 1e-17);
  EXPECT_DOUBLE_EQ(Scale("erg/s/cm^2/A"), 1.0);
  EXPECT_DOUBLE_EQ(Scale("erg/s/cm**2/Angstrom"), 1.0);
  // Factors in any order, as the real UDF-MOSAIC cube writes them.
  EXPECT_DOUBLE_EQ(Scale("10**-20 Angstrom-1 cm-2 erg s-1"), 1e-20);
  EXPECT_DOUBLE_EQ(Scale("1e-17 erg/cm2/s/A"), 1e-17);
  EXPECT_DOUBLE_EQ(Scale("10**(-20) cm**(-2) erg angstrom**(-1) s**(-1)"), 1e-20);
}

TEST(Units, FluxDensityScaleRejectsOtherUnits) {
  const std::string electrons = Refusal("ELECTRONS/S");
  EXPECT_NE(electrons.find("ELECTRONS/S"), std::string::npos) << electrons;
  EXPECT_NE(electrons.find("is not a flux density"), std::string::npos) << electrons;
  EXPECT_NE(electrons.find("expected a flux density such as"), std::string::npos) << electrons;  // what to use
  EXPECT_NE(Refusal("erg/s/cm2/Hz"), "");
  EXPECT_NE(Refusal("").find("is empty"), std::string::npos);
  EXPECT_NE(Refusal("10**(-20*erg/s/cm**2/Angstrom").find("unbalanced parenthesis"), std::string::npos);
  EXPECT_NE(Refusal("-1e-20 erg/s/cm2/A"), "");
  // Wrong powers or extra factors.
  EXPECT_NE(Refusal("erg/s/cm/A"), "");
  EXPECT_NE(Refusal("erg s-1 cm-2"), "");
  EXPECT_NE(Refusal("erg/s/cm2/A/arcsec2").find("arcsec2"), std::string::npos);
  EXPECT_NE(Refusal("erg/s/cm**(2/A"), "");
}

}  // namespace
}  // namespace cubeflow::fits
