// Spectral masks. See masks.hpp.
#include "cubeflow/kinematics/masks.hpp"

#include <fstream>
#include <sstream>

#include "cubeflow/spectral/spectral_ops.hpp"

namespace cubeflow::kinematics {

const std::vector<MaskLine>& DefaultEmissionLines() {
  // Air wavelengths (Angstrom): the GIST specMask_KIN list plus the usual MUSE lines.
  static const std::vector<MaskLine> lines = {
      {3726.03, "[OII]"},  {3728.82, "[OII]"},   {3868.76, "[NeIII]"}, {3889.05, "H8+HeI"}, {3967.47, "[NeIII]"},
      {3970.07, "Heps"},   {4101.74, "Hdelta"},  {4340.47, "Hgamma"},  {4363.21, "[OIII]"}, {4685.70, "HeII"},
      {4711.37, "[ArIV]"}, {4740.17, "[ArIV]"},  {4861.33, "Hbeta"},   {4958.91, "[OIII]"}, {5006.84, "[OIII]"},
      {5197.90, "[NI]"},   {5200.26, "[NI]"},    {5754.59, "[NII]"},   {5875.62, "HeI"},    {6300.30, "[OI]"},
      {6312.06, "[SIII]"}, {6363.78, "[OI]"},    {6548.05, "[NII]"},   {6562.80, "Halpha"}, {6583.45, "[NII]"},
      {6678.15, "HeI"},    {6716.44, "[SII]"},   {6730.82, "[SII]"},   {7065.19, "HeI"},    {7135.79, "[ArIII]"},
      {7319.99, "[OII]"},  {7330.73, "[OII]"},   {7751.06, "[ArIII]"}, {9068.60, "[SIII]"},
  };
  return lines;
}

const std::vector<MaskLine>& DefaultSkyLines() {
  static const std::vector<MaskLine> lines = {
      {5577.34, "[OI] sky"}, {5889.95, "NaD sky"}, {5895.92, "NaD sky"}, {6300.30, "[OI] sky"}, {6363.78, "[OI] sky"},
  };
  return lines;
}

std::vector<MaskRegion> EmissionLineRegions(double half_width_kms) {
  std::vector<MaskRegion> r;
  const double f = half_width_kms / spectral::kSpeedOfLightKms;
  for (const auto& l : DefaultEmissionLines()) r.push_back({l.wave * (1 - f), l.wave * (1 + f), false, l.name});
  return r;
}

std::vector<MaskRegion> SkyLineRegions(double half_width_angstrom) {
  std::vector<MaskRegion> r;
  for (const auto& l : DefaultSkyLines())
    r.push_back({l.wave - half_width_angstrom, l.wave + half_width_angstrom, true, l.name});
  return r;
}

Result<std::vector<MaskRegion>> RangeRegions(const std::vector<double>& lo_hi) {
  if (lo_hi.size() % 2 != 0)
    return Status::Error("mask ranges must come in pairs [lo, hi, lo, hi, ...] (Angstrom, rest frame); got " +
                         std::to_string(lo_hi.size()) + " numbers");
  std::vector<MaskRegion> r;
  for (size_t i = 0; i < lo_hi.size(); i += 2) {
    if (!(lo_hi[i + 1] > lo_hi[i]))
      return Status::Error("mask range " + std::to_string(i / 2 + 1) + " is empty: " + std::to_string(lo_hi[i]) +
                           " - " + std::to_string(lo_hi[i + 1]) + " Angstrom (give lo < hi)");
    r.push_back({lo_hi[i], lo_hi[i + 1], false, "user"});
  }
  return r;
}

Result<std::vector<MaskRegion>> ReadGistMaskFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot open the mask file " + path + " (GIST specMask format: wavelength, width, comment)");
  std::vector<MaskRegion> r;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
    std::istringstream ss(line);
    double w, width;
    if (!(ss >> w)) continue;
    if (!(ss >> width) || !(width > 0))
      return Status::Error(path + ":" + std::to_string(n) + ": expected 'wavelength width [comment]' with width > 0");
    std::string comment;
    ss >> comment;
    std::string lower;
    for (char c : comment) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.push_back({w - width / 2, w + width / 2, lower == "sky", comment});
  }
  return r;
}

}  // namespace cubeflow::kinematics
