#pragma once
/// \file observables.hpp
/// \brief The forward model of Galceran et al. (2026, secs. 2.2-2.3): composite spectra from SSPs,
/// Charlot & Fall (2000) two-component dust, nebular lines from young populations, MUSE-like
/// spectra (LSF + broadening to a common dispersion, flux-conserving rebinning, normalisation,
/// noise) and HST/WFC3 photometry.
///
/// A ForwardModel precomputes, once, every SSP averaged over each time step of a TimeGrid,
/// at every [M/H] of the SSP grid, already convolved and rebinned onto the output grid, plus the
/// band-pass integrals needed for photometry; simulating one object is then a weighted sum, two
/// dust curves, a handful of line profiles and the noise. A built ForwardModel is immutable and
/// its const methods may be called from many threads at once.
///
/// Units: wavelengths in Angstrom (air); un-normalised fluxes in L_sun / Angstrom per M_sun formed.

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/filters.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/sfh.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::sim {

/// \brief Two-component dust prior (Charlot & Fall 2000; paper eq. 1 and sec. 2.2).
/// tau(lambda) = tau_V (lambda / pivot)^(-slope); birth-cloud term only for ages < bc_age.
struct DustPrior {
  bool enabled = true;
  double tau_bc_min = 0.5, tau_bc_max = 4.0;     ///< log-uniform
  double tau_ism_mean = 0.3, tau_ism_sigma = 0.08;  ///< normal, truncated at >= 0
  double slope = 0.7;                             ///< n in eq. 1 (attenuation falls with lambda)
  double pivot = 5500;                            ///< Angstrom
  double bc_age_gyr = 0.010;                      ///< birth-cloud dispersal age
};

/// Attenuation optical depths of one object.
struct DustParams {
  double tau_bc = 0, tau_ism = 0;
};
DustParams DrawDust(const DustPrior& prior, Rng& rng);
/// exp(-tau (lambda / pivot)^(-slope)).
double DustTransmission(double lambda, double tau, double slope, double pivot = 5500);

/// Ionising photons /s per M_sun formed of an SSP of the given age (Gyr), for libraries that do
/// not give Q_H: a Starburst99-like plateau of 10^46.6 up to 3 Myr, then ~t^-5.
double FallbackQh(double age_gyr);

/// \brief Nebular emission from the ionising photons of young populations.
struct NebularConfig {
  bool enabled = true;
  double f_esc = 0.0;             ///< fraction of ionising photons escaping (no lines)
  double halpha_per_qh = 1.37e-12;  ///< erg/s of H-alpha per ionising photon/s (case B)
  double balmer_decrement = 2.86;   ///< intrinsic H-alpha / H-beta (case B, 10^4 K)
  double sii_ratio = 1.4;           ///< [SII]6717/6731 (low density)
};

/// \brief Line fluxes relative to H-alpha for gas of metallicity Z (z_sun = 0.019): H-beta by the
/// Balmer decrement; [NII]6584 from N2 and [OIII]5007 from O3N2 (Pettini & Pagel 2004 inverted,
/// 12 + log(O/H) = 8.69 + log10(Z / z_sun)); [SII] and [OI] from simple linear trends; the
/// doublet partners by their fixed atomic ratios. Order as NebularLineWavelengths().
std::vector<double> NebularLineRatios(double z_gas, const NebularConfig& cfg, double z_sun = 0.019);
/// Air wavelengths (Angstrom) of H-beta, [OIII]4959, [OIII]5007, [OI]6300, [NII]6548, H-alpha,
/// [NII]6584, [SII]6717, [SII]6731.
const std::vector<double>& NebularLineWavelengths();
const std::vector<std::string>& NebularLineNames();

/// \brief Output spectrum and photometry settings.
struct ObservablesConfig {
  WavelengthAxis wave = WavelengthAxis::Linear(4800.0, 1.25, 1761);  ///< model grid
  double sigma_kms = 150;          ///< total velocity dispersion after broadening (0 = none)
  /// "paper": FWHM 2.9 A at <= 4800 A, linear to 2.4 A at >= 6500 A (Galceran+26, sec. 2);
  /// "bacon2017": MuseLsfFwhm(); "none": keep the SSP resolution (no LSF).
  std::string lsf = "paper";
  double ssp_fwhm = 0;             ///< SSP FWHM (A) if the grid does not say; 0 -> 2.51
  /// Accept templates coarser (FWHM > 1.05x) than the target resolution somewhere on the grid
  /// (ForwardModel::resolution_note() says where); false: that is an error.
  bool allow_coarse_ssp = false;
  double norm_min = 5300, norm_max = 5500;  ///< normalisation window (A)
  std::vector<std::string> bands = {"F275W", "F336W", "F438W", "F555W", "F814W"};
  std::string filter_dir;          ///< if set, <dir>/<band>.dat (or *<band>*) overrides built-ins
  int substeps_per_bin = 6;        ///< time steps per age bin (bin 0: fixed 2 Myr steps)
  int ages_per_step = 4;           ///< SSP ages averaged per step (Gauss-Legendre in age); 1 = midpoint
  std::string mass_label = "formed";  ///< "formed" or "living" (needs SspGrid::mass_star)
};

/// \brief Noise settings.
struct NoiseConfig {
  bool enabled = true;
  std::vector<double> snr = {15, 20, 35, 50};  ///< per-pixel S/N at normalised flux 1, drawn uniformly
  std::vector<double> error_spectrum;  ///< optional per-pixel 1-sigma on the model grid (real noise)
  double phot_snr = 50;                ///< S/N of each band (<= 0: no photometric noise)
};

/// \brief Everything that defines a library.
struct SimConfig {
  std::string ssp = "builtin";     ///< "builtin", "emiles" or an SSP directory (LoadSsp)
  std::string ssp_name_contains;   ///< SspLoadOptions::name_contains
  std::string ssp_emiles_dir;      ///< for ssp: emiles; empty = $CUBEFLOW_DATA_DIR/ssp/emiles_basti_kb
  std::string ssp_maraston_dir;    ///< for ssp: emiles; empty = $CUBEFLOW_DATA_DIR/ssp/maraston05_kroupa
  double ssp_young_min_age = 0.0063;  ///< for ssp: emiles; youngest age (Gyr) of the young extension
  SfhPrior sfh;
  DustPrior dust;
  NebularConfig nebular;
  ObservablesConfig obs;
  NoiseConfig noise;
  std::string error_spectrum_path;  ///< where noise.error_spectrum came from (metadata)
};

/// The SspSource of a config (keys ssp, ssp_name_contains, ssp_emiles_dir, ssp_maraston_dir).
SspSource SspSourceOf(const SimConfig& config);

/// Reads a YAML config (keys documented in docs/forward_model.md); unknown keys are errors.
Result<SimConfig> LoadSimConfig(const std::string& path);
/// The same from YAML text (e.g. a model's `library_config`); `where` names it in messages.
/// Relative paths are left as they are.
Result<SimConfig> ParseSimConfig(const std::string& yaml_text, const std::string& where);
/// The YAML text of a config (all keys, as used), for provenance headers.
std::string SimConfigToYaml(const SimConfig& cfg);

/// \brief A noise-free rendering.
struct Rendered {
  std::vector<float> flux;          ///< model grid, L_sun/A per M_sun formed (or normalised)
  std::vector<double> phot;         ///< per band, same unit
  std::array<double, kNumAgeBins> light_v{};  ///< intrinsic V-band light per bin (fractions after Simulate)
  double q_h = 0;                   ///< ionising photons /s per M_sun formed
  double norm = 1;                  ///< mean flux in the normalisation window
};

/// \brief One simulated object (the row of a library).
struct SimulatedObject {
  SfhKind kind = SfhKind::kNonParametric;
  Sfh sfh;
  DustParams dust;
  SfhLabels labels;
  std::array<float, kNumAgeBins> light_frac{};
  float snr = 0;
  std::vector<float> spectrum, spectrum_err;  ///< normalised, noisy; 1-sigma
  std::vector<float> phot, phot_err;          ///< normalised like the spectrum, noisy
};

class ForwardModel {
 public:
  /// Precomputes templates; errors (bands not covered by the SSPs, bad grid) name the cause.
  static Result<std::shared_ptr<const ForwardModel>> Build(std::shared_ptr<const SspGrid> ssp,
                                                           const SimConfig& config);
  const SimConfig& config() const { return cfg_; }
  const SspGrid& ssp() const { return *ssp_; }
  const TimeGrid& time_grid() const { return grid_; }
  const std::vector<double>& wave() const { return wave_; }  ///< output pixel centres
  const std::vector<std::string>& bands() const { return band_names_; }
  const std::vector<double>& pivots() const { return pivots_; }
  /// Where the templates are coarser than the target resolution (spectrum.allow_coarse_ssp);
  /// empty when they are not.
  const std::string& resolution_note() const { return resolution_note_; }
  /// Stars + remnants per unit formed mass of a history (1 where the SSPs give no surviving mass;
  /// nearest [M/H] of the grid, as the "living" mass label).
  double LivingFraction(const BinnedSfh& binned) const;

  /// Noise-free spectrum and photometry of a binned history with dust (not normalised).
  /// `z_gas` sets the nebular line ratios. Thread-safe.
  void Render(const BinnedSfh& binned, const DustParams& dust, double z_gas, Rendered* out) const;
  /// Draws everything for object `index` of a run seeded with `seed` and fills `out`.
  /// Deterministic in (seed, index). Thread-safe.
  void Simulate(uint64_t seed, int64_t index, SimulatedObject* out) const;
  /// Same with a given history and dust (labels, normalisation and noise as in Simulate);
  /// `rng` supplies the S/N and noise draws.
  void SimulateFrom(const Sfh& sfh, const DustParams& dust, Rng& rng, SimulatedObject* out) const;
  /// The observation step of SimulateFrom: light fractions, normalisation, S/N draw and noise of
  /// a rendering (fills light_frac, snr, spectrum[_err], phot[_err] of `out`).
  void Observe(const Rendered& r, Rng& rng, SimulatedObject* out) const;

  /// \brief Read-only view of the precomputed tables Render sums, for copies of Render in other
  /// frameworks (the differentiable one of libs/nn/src/torch_forward.hpp). References into the
  /// model: valid while it lives. Index conventions as the members they name (below).
  struct Tables {
    size_t n_steps, n_metal, n_wave, n_coarse;
    size_t young_steps;                        ///< steps [0, young_steps) get birth-cloud dust
    const std::vector<float>& templates;       ///< [step][metal][pixel], L_sun/A per M_sun formed
    const std::vector<double>& q_h;            ///< [step][metal], ionising photons/s per M_sun
    const std::vector<double>& l_v;            ///< [step][metal], intrinsic V mean flux density
    const std::vector<double>& living;         ///< [step][metal], surviving mass fraction
    const std::vector<float>& dust_x;          ///< (lambda / pivot)^-slope per output pixel
    const std::vector<size_t>& coarse_first;   ///< per band: first coarse photometry pixel
    const std::vector<size_t>& coarse_len;     ///< per band: number of coarse pixels
    const std::vector<double>& coarse_x;       ///< dust x per coarse pixel
    const std::vector<double>& phot_templates; ///< [step][metal][coarse], band-weighted flux
    const std::vector<std::vector<double>>& line_band;     ///< [line][band] response per unit flux
    const std::vector<size_t>& line_first;                 ///< first output pixel of each profile
    const std::vector<std::vector<float>>& line_profiles;  ///< unit-flux profile per line (1/A)
    const std::vector<float>& line_x;                      ///< dust x per line
    size_t norm_first, norm_end;               ///< normalisation pixels [norm_first, norm_end)
  };
  Tables tables() const {
    return {n_steps_, n_metal_, n_wave_, n_coarse_, young_steps_, tmpl_, q_h_, l_v_, living_, dust_x_,
            coarse_first_, coarse_len_, coarse_x_, phot_tmpl_, line_band_, line_first_, line_prof_, line_x_,
            norm_pix_[0], norm_pix_[1]};
  }

 private:
  ForwardModel() = default;
  size_t NearestMetal(double mh) const;  ///< index of the grid [M/H] nearest to `mh`
  SimConfig cfg_;
  std::shared_ptr<const SspGrid> ssp_;
  std::string resolution_note_;
  TimeGrid grid_;
  std::vector<double> wave_;
  size_t n_wave_ = 0, n_metal_ = 0, n_steps_ = 0;
  std::vector<float> tmpl_;          // [j][m][iw]
  std::vector<double> q_h_;          // [j][m]
  std::vector<double> l_v_;          // [j][m] intrinsic V mean flux density
  std::vector<double> living_;       // [j][m] surviving mass fraction (1 if unknown)
  std::vector<float> dust_x_;        // (lambda/pivot)^-slope at output pixels
  // photometry
  std::vector<std::string> band_names_;
  std::vector<double> pivots_;
  std::vector<size_t> coarse_first_, coarse_len_;  // per band, into coarse pixel arrays
  std::vector<double> coarse_x_;     // dust x at each coarse pixel (all bands concatenated)
  std::vector<double> phot_tmpl_;    // [j][m][coarse concat]
  size_t n_coarse_ = 0;
  std::vector<std::vector<double>> line_band_;  // [line][band] response per unit line flux
  // lines on the output grid
  std::vector<size_t> line_first_;
  std::vector<std::vector<float>> line_prof_;  // unit-flux profile per line
  std::vector<float> line_x_;                  // dust x at each line
  std::vector<size_t> norm_pix_;               // pixel range [a, b) of the normalisation window
  size_t young_steps_ = 0;                     // steps [0, young_steps_) get birth-cloud dust
};

}  // namespace cubeflow::sim
