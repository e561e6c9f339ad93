#pragma once
/// \file lsf.hpp
/// \brief Instrumental line-spread-function (LSF) models: the FWHM of the instrument's
/// Gaussian profile as a function of wavelength, shared by spectral.restframe (broadening to a
/// common dispersion) and kinematics.fit (matching templates to the data's resolution).
///
/// Wavelengths and FWHM in Angstrom, in the frame the model was measured in (observed frame
/// for an instrument). An Lsf is an immutable value: copy it freely and call Fwhm() from any
/// number of threads.

#include <memory>
#include <string>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::spectral {

/// \brief FWHM(lambda) of an instrument or a template library.
class Lsf {
 public:
  /// A constant FWHM (Angstrom), e.g. 2.51 for MILES.
  static Lsf Constant(double fwhm);
  /// Linear in wavelength from `fwhm_blue` at `wave_blue` to `fwhm_red` at `wave_red`, constant
  /// outside (the MUSE values of spectral.restframe's default `lsf: linear`: 2.9 A at 4800 A to
  /// 2.4 A at 6500 A). Requires wave_red > wave_blue.
  static Result<Lsf> Linear(double wave_blue, double fwhm_blue, double wave_red, double fwhm_red);
  /// The MUSE WFM LSF of Bacon et al. (2017, A&A 608, A1, eq. 8): MuseLsfFwhm().
  static Lsf Bacon2017();
  /// Tabulated (wavelength, FWHM) pairs, wavelengths strictly increasing (>= 2 rows), FWHM > 0;
  /// linear interpolation inside, the end values outside.
  static Result<Lsf> Table(std::vector<double> wave, std::vector<double> fwhm, std::string source = "table");
  /// Reads a two-column text table (wavelength, FWHM; Angstrom), '#' starts a comment: the
  /// format of the GIST/nGIST `lsf_*` configuration files. Errors name the file and the line.
  static Result<Lsf> FromFile(const std::string& path);

  /// FWHM in Angstrom at `lambda` (Angstrom).
  double Fwhm(double lambda) const;
  /// Gaussian sigma in km/s at `lambda` (Angstrom): Fwhm / 2.3548 / lambda * c.
  double SigmaKms(double lambda) const;
  /// One line for logs and product headers: "bacon2017", "constant 2.51 A", "table lsf_MUSE (10004 rows)".
  const std::string& description() const { return description_; }

 private:
  enum class Kind { kConstant, kLinear, kBacon2017, kTable };
  Kind kind_ = Kind::kConstant;
  double a_ = 0, b_ = 0, c_ = 0, d_ = 0;  // constant: a; linear: (wave_blue, fwhm_blue, wave_red, fwhm_red)
  std::shared_ptr<const std::vector<double>> wave_, fwhm_;
  std::string description_;
};

}  // namespace cubeflow::spectral
