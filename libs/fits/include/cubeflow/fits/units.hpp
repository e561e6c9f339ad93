#pragma once
/// \file units.hpp
/// \brief Flux-density units of cubes and images (FITS BUNIT strings).

#include <string>

#include "cubeflow/status.hpp"

namespace cubeflow::fits {

/// Factor converting a flux density in `bunit` to erg/s/cm^2/Angstrom, for the forms MUSE and
/// HST products use: "10**(-20)*erg/s/cm**2/Angstrom", "1e-20 erg/s/cm2/A",
/// "10^-20 erg s-1 cm-2 AA-1", "erg/s/cm^2/A", "erg.s**(-1).cm**(-2).angstrom**(-1)", and the
/// same factors in any order ("10**-20 Angstrom-1 cm-2 erg s-1", as some MUSE cubes write it).
/// Factors are separated by blanks, '.', '*' or '/' (which divides by the next factor); each
/// may carry a power ("**2", "**(-1)", "^2", "-1", "2"). An error for anything else (an empty
/// string, per-Hz units, counts, per-arcsec^2), saying what is wrong with the unit and what is
/// expected; callers add where the unit came from (file, HDU, BUNIT).
Result<double> FluxDensityScale(const std::string& bunit);

}  // namespace cubeflow::fits
