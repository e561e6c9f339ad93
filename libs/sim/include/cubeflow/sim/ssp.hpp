#pragma once
/// \file ssp.hpp
/// \brief Simple-stellar-population (SSP) template libraries: the built-in synthetic model and
/// real libraries (MILES / E-MILES / MIUSCAT / BC03) read from a directory.
///
/// Flux unit everywhere: L_sun / Angstrom per M_sun of initial SSP mass; wavelengths in
/// Angstrom (air).
///
/// Thread-safety: an SspGrid is a plain value; const methods may be called concurrently.
/// BuiltinSsp() is built once (thread-safe) and shared; LoadSspDirectory is reentrant.

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
  /// Optional number of hydrogen-ionising photons (lambda < 912 A) emitted per second per
  /// M_sun of initial mass, per (im, ia) (index im * n_age + ia); empty if unknown (real
  /// libraries here stop above 3300 A). Set by the built-in model.
  std::vector<double> q_h;
  std::string notes;               ///< provenance (family, IMF, isochrones, M/L source)

  size_t n_wave() const { return wave.size(); }
  size_t n_age() const { return log_age.size(); }
  size_t n_metal() const { return metal.size(); }
  const float* Spectrum(size_t im, size_t ia) const { return flux.data() + (im * n_age() + ia) * n_wave(); }

  /// Bilinear interpolation in (log age, [M/H]), clamped to the grid edges; writes n_wave values.
  void Interpolate(double log_age_yr, double mh, double* out) const;

  /// \brief The four grid corners and bilinear weights used by Interpolate.
  struct Weights {
    size_t index[4];   ///< flat (im * n_age + ia) indices
    double weight[4];  ///< sum to 1
  };
  /// Corner indices and weights for (log age, [M/H]), clamped like Interpolate.
  Weights InterpolationWeights(double log_age_yr, double mh) const;
  /// Bilinear interpolation of a per-(im, ia) quantity (ml_v, mass_star, q_h): size must be
  /// n_metal * n_age; returns NaN if it is empty.
  double InterpolateScalar(const std::vector<double>& per_grid, double log_age_yr,
                           double mh) const;
  /// Checks sizes and monotonicity; the message says what is inconsistent.
  Status Validate() const;
};

/// \brief Age and [M/H] decoded from an SSP file name (or header, for BC03).
struct SspFileInfo {
  std::string family;     ///< "Mun", "Mkb", "Ech", "Iun", ... (first 3 letters) or "BC03"
  std::string imf;        ///< "un", "bi", "kb", "ch", ... (lower case; "" for BC03)
  double imf_slope = 0;   ///< e.g. 1.30 (0 if not given)
  double mh = 0;          ///< [M/H]
  double age_gyr = 0;     ///< age in Gyr
  double fwhm = 0;        ///< FWHM in Angstrom from "FWHM_2.51" in the name, 0 if absent
};
/// Parses `Mun1.30Zp0.00T10.0000_...fits`, `Iun1.30Zm0.40T00.0631.fits`,
/// `BC03_z0.020_a10.000.fits` (Z -> [M/H] = log10(Z / 0.019)). Error if not recognised.
Result<SspFileInfo> ParseSspFileName(const std::string& file_name);

/// \brief Options for LoadSspDirectory.
struct SspLoadOptions {
  /// Only files whose name contains this substring (e.g. "Mun1.30"); empty = all SSP files.
  /// Needed when a directory mixes families or IMFs.
  std::string name_contains;
  /// Keep only wavelengths in [wave_min, wave_max] (Angstrom); 0 = no limit.
  double wave_min = 0, wave_max = 0;
};

/// \brief The built-in semi-analytic SSP model (1500-10000 A, 6 Myr - 14 Gyr, [M/H] -1.5..+0.4).
/// Synthetic, documented in docs/builtin_ssp.md; built once and cached (thread-safe).
std::shared_ptr<const SspGrid> BuiltinSsp();

/// \brief Reads every SSP FITS file of a directory (MILES/E-MILES `Mun1.30Zp0.00T10.0000_...`,
/// `Mkb1.30Zm0.25T00.0300_...`, `Ech...`, MIUSCAT `Iun...`, BC03 `BC03_z0.02_a10.fits`), taking age and
/// [M/H] from file names or headers, and companion M/L tables where present.
/// The grid must be regular (every age at every [M/H]) and all files must share one wavelength
/// grid; otherwise the error lists the missing combinations / the offending file. Files are read
/// with CFITSIO (float32 or float64 primary HDU, wavelength from CRVAL1/CDELT1 (or CD1_1)/CRPIX1;
/// a log10 or ln grid if the header says so). FWHM from the COMMENT cards ("Spectral resolution:
/// 2.51 (A) FWHM"), a FWHM key, the file name (`FWHM_2.51`), or the family default 2.51 A
/// (MILES/E-MILES/MIUSCAT; BC03: 3 A if no key). M/L_V and the surviving mass fraction
/// (M(*+remnants)) come from a `*ssp_mass*.txt` MILES table in the directory when it has
/// every grid point for the IMF of the files (ml_v = M(*+remn)/L_V in solar units).
Result<std::shared_ptr<SspGrid>> LoadSspDirectory(const std::string& dir);
Result<std::shared_ptr<SspGrid>> LoadSspDirectory(const std::string& dir,
                                                  const SspLoadOptions& options);

}  // namespace cubeflow::sim
