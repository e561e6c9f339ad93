#pragma once
/// \file ssp.hpp
/// \brief Simple-stellar-population (SSP) template libraries: the built-in synthetic model and
/// real libraries (MILES / E-MILES / MIUSCAT / BC03) read from a directory.
///
/// Flux unit everywhere: L_sun / Angstrom per M_sun of initial SSP mass; wavelengths in
/// Angstrom (air).

#include <memory>
#include <string>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::sim {

/// \brief A grid of SSP spectra over (log age, [M/H]) on one wavelength grid.
class SspGrid {
 public:
  std::string name;                ///< "builtin", or the directory/family it was read from
  std::vector<double> wave;        ///< Angstrom, strictly increasing (need not be uniform)
  std::vector<double> log_age;     ///< log10(age / yr), strictly increasing
  std::vector<double> metal;       ///< [M/H], strictly increasing
  std::vector<float> flux;         ///< [im][ia][iw]: (im * n_age + ia) * n_wave + iw
  double fwhm = 0;                 ///< instrumental FWHM of the templates, Angstrom (0 = unknown)
  std::vector<double> ml_v;        ///< optional V-band M/L per (im, ia); empty if not given
  std::vector<double> mass_star;   ///< optional surviving stellar mass fraction per (im, ia)
  bool synthetic = false;          ///< true for the built-in model (not for science)

  size_t n_wave() const { return wave.size(); }
  size_t n_age() const { return log_age.size(); }
  size_t n_metal() const { return metal.size(); }
  const float* Spectrum(size_t im, size_t ia) const { return flux.data() + (im * n_age() + ia) * n_wave(); }

  /// Bilinear interpolation in (log age, [M/H]), clamped to the grid edges; writes n_wave values.
  void Interpolate(double log_age_yr, double mh, double* out) const;
};

/// \brief The built-in semi-analytic SSP model (1500-10000 A, 6 Myr - 14 Gyr, [M/H] -1.5..+0.4).
/// Synthetic, documented in docs/builtin_ssp.md; built once and cached (thread-safe).
std::shared_ptr<const SspGrid> BuiltinSsp();

/// \brief Reads every SSP FITS file of a directory (MILES/E-MILES `Mun1.30Zp0.00T10.0000_...`,
/// `Mkb1.30Zm0.25T00.0300_...`, `Ech...`, MIUSCAT `Iun...`, BC03 `BC03_z0.02_a10.fits`), taking age and
/// [M/H] from file names or headers, and companion M/L tables where present.
Result<std::shared_ptr<SspGrid>> LoadSspDirectory(const std::string& dir);

}  // namespace cubeflow::sim
