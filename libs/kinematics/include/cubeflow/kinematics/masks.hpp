#pragma once
/// \file masks.hpp
/// \brief Wavelength regions left out of a kinematic fit: nebular emission lines (galaxy rest
/// frame), sky-subtraction residuals (observed frame), user ranges and GIST/nGIST `specMask`
/// files.
///
/// Wavelengths are in air, Angstrom.

#include <string>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::kinematics {

/// \brief A masked interval [lo, hi] (Angstrom) in the galaxy's rest frame (at the systemic
/// redshift) or in the observed frame (sky lines).
struct MaskRegion {
  double lo = 0, hi = 0;
  bool observed = false;
  std::string name;
};

/// \brief A spectral line to mask, at its air wavelength.
struct MaskLine {
  double wave = 0;
  const char* name = "";
};

/// Nebular emission lines between 3700 and 9100 A (air): [O II], the Balmer series, He I,
/// He II, [Ne III], [O III], [Ar IV], [N I], [N II], [O I], [S II], [S III], [Ar III], ...
const std::vector<MaskLine>& DefaultEmissionLines();
/// Strong sky lines that leave subtraction residuals in MUSE cubes (observed frame, air):
/// [O I] 5577, 6300, 6364 and Na D 5890, 5896.
const std::vector<MaskLine>& DefaultSkyLines();

/// Regions of +-half_width_kms around each emission line (rest frame).
std::vector<MaskRegion> EmissionLineRegions(double half_width_kms);
/// Regions of +-half_width_angstrom around each sky line (observed frame).
std::vector<MaskRegion> SkyLineRegions(double half_width_angstrom);
/// Rest-frame regions from a flat list [lo1, hi1, lo2, hi2, ...] (Angstrom). The error says
/// which pair is malformed.
Result<std::vector<MaskRegion>> RangeRegions(const std::vector<double>& lo_hi);
/// Reads a GIST/nGIST `specMask` file: rows "wavelength  full_width  comment" (Angstrom),
/// '#' comments; rows whose comment is "sky" are in the observed frame, the others in the rest
/// frame, each masking wavelength +- width / 2.
Result<std::vector<MaskRegion>> ReadGistMaskFile(const std::string& path);

}  // namespace cubeflow::kinematics
