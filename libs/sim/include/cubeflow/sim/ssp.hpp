#pragma once
/// \file ssp.hpp
/// \brief Simple-stellar-population (SSP) template libraries: the built-in synthetic model, real
/// libraries (MILES / E-MILES / MIUSCAT / BC03) read from a directory, Maraston (2005), and the
/// `emiles` set (E-MILES + a young extension); LoadSsp resolves an `ssp:` name.
///
/// Flux unit everywhere: L_sun / Angstrom per M_sun of initial SSP mass; wavelengths in
/// Angstrom (air).
///
/// Thread-safety: an SspGrid is a plain value; const methods may be called concurrently.
/// BuiltinSsp() is built once (thread-safe) and shared; the loaders are reentrant.

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
  /// Optional FWHM (Angstrom) per wavelength pixel, for libraries whose resolution changes with
  /// wavelength (E-MILES); empty: `fwhm` everywhere. FwhmAt() reads either.
  std::vector<double> fwhm_wave;
  std::vector<double> ml_v;        ///< optional V-band M/L per (im, ia); empty if not given
  std::vector<double> mass_star;   ///< optional surviving stellar mass fraction per (im, ia)
  bool synthetic = false;          ///< true for the built-in model (not for science)
  /// Optional number of hydrogen-ionising photons (lambda < 912 A) emitted per second per
  /// M_sun of initial mass, per (im, ia) (index im * n_age + ia); empty if unknown (real
  /// libraries here stop above 3300 A). Set by the built-in model.
  std::vector<double> q_h;
  /// Optional Q_H at ages younger than the youngest spectrum (spectra clamp there, ionising
  /// photons need not): ages `q_h_young_log_age` (increasing, below log_age.front()) and values
  /// `q_h_young` [im * n + k] (n = q_h_young_log_age.size()). Empty: Q_H clamps like the spectra.
  std::vector<double> q_h_young_log_age, q_h_young;
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
  /// Q_H (photons/s per M_sun formed) at (log age, [M/H]): `q_h` within the grid (as
  /// InterpolateScalar), `q_h_young` below it (interpolated in log Q and log age up to the grid's
  /// youngest age, clamped at its youngest age); NaN if `q_h` is empty.
  double QhAt(double log_age_yr, double mh) const;
  /// The templates' FWHM (Angstrom) at `lambda`: `fwhm_wave` interpolated linearly (clamped at
  /// the ends) when given, else `fwhm`.
  double FwhmAt(double lambda) const;
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

/// \brief V-band luminosity, in solar units, of a spectrum in L_sun/A: the photon-weighted mean flux
/// through the built-in V band relative to that of a 5772 K blackbody of 1 L_sun (the convention
/// of BuiltinSsp's ml_v). NaN if the spectrum does not cover V.
double LuminosityV(const std::vector<double>& wave, const std::vector<double>& flux);

/// \brief Reads the Maraston (2005) Kroupa-IMF SSPs of `dir` (the `maraston05_kroupa` set of
/// shared/data): the four red-horizontal-branch files with the full age grid, sed.krz0001 /
/// 001 / 002 / 004.rhb ([Z/H] = -1.35, -0.33, 0.00, +0.35; 67 ages, 1 kyr - 15 Gyr; 1221
/// wavelengths 91 A - 160 um at R ~ 200-500), and stellarmass.kroupa. Flux is converted from
/// erg/s/A to L_sun/A per M_sun of initial mass (L_sun = 3.828e33 erg/s); `mass_star` is M*_T
/// (living stars + remnants); `q_h` is the integral of L_lambda lambda / (h c) below 911.76 A;
/// `fwhm` = 0 (low resolution); `ml_v` = mass_star / LuminosityV. Errors name the file and line.
struct Maraston05Set {
  std::shared_ptr<SspGrid> grid;
  std::vector<double> turnoff_mass;  ///< M_TO (M_sun) of stellarmass.kroupa per (im, ia)
};
Result<Maraston05Set> LoadMaraston05(const std::string& dir);

/// \brief The two Kroupa (2001) IMFs in play, on 0.1-100 M_sun (dN/dm ~ m^-alpha, continuous):
/// kUniversal: alpha = 1.3 below 0.5 M_sun, 2.3 above (Maraston 2005 "Kroupa"); kRevised: the
/// IMF corrected for unresolved binaries, alpha = 1.8 / 2.7 / 2.3 below 0.5 / 0.5-1 / above
/// 1 M_sun (MILES / E-MILES "kb", "Kroupa revised").
enum class KroupaImf { kUniversal, kRevised };
/// \brief Stars + remnants per unit initial mass once the stars above `m_turnoff` (M_sun) have
/// evolved, with the remnant masses of Renzini & Ciotti (1993) as used by Maraston (1998, 2005):
/// white dwarfs 0.077 m + 0.48 below 8.5 M_sun, neutron stars 1.4 M_sun up to 40 M_sun, black
/// holes 0.5 m above.
double SurvivingMassFraction(KroupaImf imf, double m_turnoff);
/// dN/dm per unit initial mass of `imf` at mass `m` (M_sun) relative to kUniversal: for the
/// revised IMF 0.79 at every mass above 1 M_sun (both have alpha = 2.3 there), 0.79 m^-0.4 from
/// 0.5 to 1 M_sun (m is clamped to 0.1-100 M_sun).
double KroupaNumberRatio(KroupaImf imf, double m);

/// \brief The resolution of E-MILES (Vazdekis et al. 2016) at each wavelength: FWHM 5 A below
/// 3060 A, 3 A to 3540.5 A, 2.51 A to 8950 A, and sigma = 60 km/s beyond. The FITS headers do not
/// say; docs/forward_model.md gives the source and the check against MILES and MIUSCAT.
std::vector<double> EmilesFwhm(const std::vector<double>& wave);

/// \brief How the `emiles` SSP set is assembled (docs/forward_model.md, "The emiles SSP set").
struct EmilesSetOptions {
  std::string emiles_dir;               ///< E-MILES BaSTI Kroupa files (Ekb1.30Z...T..._iTp0.00_baseFe.fits)
  std::string maraston_dir;             ///< Maraston (2005) Kroupa set (LoadMaraston05)
  std::string name_contains = "Ekb1.30";  ///< file selection in emiles_dir
  double join_age_gyr = 0.03;           ///< E-MILES ages >= this are used as they are (an E-MILES age)
  double anchor_age_gyr = 0.025;        ///< age where Maraston's evolution is tied to E-MILES (<= join)
  double young_min_age_gyr = 0.0063;    ///< youngest age of the extension
  /// Window (A) below 8950 A where a zero-tailed E-MILES spectrum and Maraston are matched.
  double fill_window_lo = 8750, fill_window_hi = 8940;
};

/// \brief The `emiles` SSP set: E-MILES ages >= join_age (8 [M/H] x 53 ages, 1680-12000 A at
/// 0.9 A) plus a young extension at young_min_age, at Maraston's own ages in between and at
/// anchor_age (< join_age):
///   F(t, [M/H], lambda) = F_EM(anchor) x M05(t, [M/H], lambda) / M05(anchor, [M/H], lambda),
///   F_EM(anchor) = F_EM(join) (F_EM(join) / F_EM(next))^p, p = log(join/anchor) / log(next/join),
/// i.e. E-MILES carried back from the join to the anchor at its own log-age rate to the next
/// E-MILES age, times Maraston's evolution of the continuum below the anchor (M05 interpolated
/// linearly in log age and [Z/H], clamped to -1.35..+0.35). Young spectra keep E-MILES' line
/// structure and resolution. E-MILES spectra that are zero beyond 8950 A (ages up to 0.08-0.2 Gyr)
/// are filled there with Maraston's spectrum of the same age and [M/H], scaled to E-MILES' mean
/// flux in the fill window. mass_star = SurvivingMassFraction(kRevised, Maraston's turnoff mass);
/// q_h = Maraston's x KroupaNumberRatio(kRevised, 10), also below the youngest spectrum down to
/// 1 Myr (q_h_young); ml_v = mass_star / LuminosityV of the grid's spectra; fwhm = 2.51 and
/// fwhm_wave = EmilesFwhm(wave). Errors name the missing file or directory.
Result<std::shared_ptr<SspGrid>> LoadEmilesSet(const EmilesSetOptions& options);

/// \brief Gaussian sigma (Angstrom) by which spectrum `a` is broader (> 0) or sharper (< 0) than
/// `b`, both on `wave` (a uniform grid, a window of a few hundred Angstrom): the sigma which,
/// applied to the sharper one, best matches the other after both are divided by their running
/// mean over 121 pixels and the line depths are scaled by least squares; searched on 0-3 A in
/// 0.05 A steps (so |result| < 0.05 means "the same"). `chi2` (optional) gets the residual sum of
/// squares of the best match, to tell a poor match (different spectra) from a good one.
double RelativeBroadening(const std::vector<double>& wave, const std::vector<double>& a,
                          const std::vector<double>& b, double* chi2 = nullptr);

/// \brief Continuity of an SSP grid across one of its ages (the join of the `emiles` set).
///
/// Quantities: the four HST colours F275W-F336W, F336W-F438W, F438W-F555W, F555W-F814W (built-in
/// filter curves) and the mean flux per unit initial mass in wavelength windows, as magnitudes
/// (-2.5 log10). For each [M/H] three rates of change, in mag per 0.1 dex of age, between the grid
/// ages a0 < a1 < join < a3 around the join: young side (a0 -> a1), across the join (a1 -> join)
/// and old side (join -> a3). A join that adds no discontinuity changes the quantities no faster
/// than the libraries do on either side.
struct JoinContinuity {
  std::vector<std::string> quantities;
  std::vector<double> window_lo, window_hi;  ///< per quantity: the window (A), 0 for colours
  std::vector<double> metal;                 ///< [M/H] of each row
  double age_gyr[4] = {0, 0, 0, 0};          ///< a0, a1, join, a3
  /// [im * n_quantities + q], mag per 0.1 dex
  std::vector<double> rate_young, rate_join, rate_old;
  /// [im * n_quantities + q], mag: the change from a1 to the join age (for a window, the flux
  /// changes by 10^(-0.4 step) - 1).
  std::vector<double> step;
  /// [im * n_quantities + q], mag: `reference` minus the grid at the join age (what joining the
  /// reference directly would give); empty without a reference.
  std::vector<double> raw_offset;
  size_t n_quantities() const { return quantities.size(); }
  /// |rate_join| - max(|rate_young|, |rate_old|) of one row and quantity (> 0: the join is
  /// steeper than both sides).
  double Excess(size_t im, size_t q) const;
};
/// \brief Measures JoinContinuity of `grid` at `join_age_gyr` (which must be a grid age with two
/// ages before and one after it); `reference` (may be null) is interpolated to the grid's [M/H].
Result<JoinContinuity> MeasureJoinContinuity(const SspGrid& grid, double join_age_gyr,
                                             const SspGrid* reference = nullptr);

/// \brief Where an SSP grid comes from (SimConfig keys ssp, ssp_name_contains, ssp_emiles_dir,
/// ssp_maraston_dir; `cubeflow simulate --ssp ...`).
struct SspSource {
  std::string ssp = "builtin";  ///< "builtin", "emiles", or a directory of SSP FITS files
  std::string name_contains;    ///< for a directory: SspLoadOptions::name_contains
  /// For "emiles": the two directories; empty = $CUBEFLOW_DATA_DIR/ssp/emiles_basti_kb and
  /// $CUBEFLOW_DATA_DIR/ssp/maraston05_kroupa.
  std::string emiles_dir, maraston_dir;
  double young_min_age_gyr = 0.0063;  ///< for "emiles": EmilesSetOptions::young_min_age_gyr
};

/// \brief The E-MILES and Maraston directories of `source` (given, else under
/// $CUBEFLOW_DATA_DIR/ssp) and its young_min_age, in otherwise default EmilesSetOptions; an error
/// names each missing directory and how to set it.
Result<EmilesSetOptions> ResolveEmilesDirs(const SspSource& source);

/// \brief Loads the SSP grid named by `source`: BuiltinSsp(), LoadEmilesSet() with the directories
/// resolved as above (an error names each missing directory and how to set it), or
/// LoadSspDirectory().
Result<std::shared_ptr<const SspGrid>> LoadSsp(const SspSource& source);

}  // namespace cubeflow::sim
