#pragma once
/// \file galaxy.hpp
/// \brief A mock nearby spiral observed with MUSE (WFM) and HST/WFC3, with its truth maps, for
/// end-to-end tests of the pipeline: `cubeflow simulate galaxy`.
///
/// Every spaxel gets a history from a few smooth fields (bulge weight, disc, spiral-arm
/// strength): old and metal-rich in the centre, younger in the disc, recent star formation in
/// the arms, with metallicity rising towards the arms and the centre (see
/// GalaxyConfig::histories for the two ways the history is built). Spectra are rendered by a
/// ForwardModel on a rest-frame log-lambda grid with the MUSE LSF (Bacon et al. 2017), broadened
/// by the spaxel's stellar dispersion, shifted by systemic + rotation velocity and rebinned
/// (flux-conserving) onto the observed air-wavelength grid. Memory is bounded by writing the
/// cube in chunks of rows.

#include <cstdint>
#include <string>
#include <vector>

#include "cubeflow/sim/observables.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::sim {

struct GalaxyConfig {
  int64_t nx = 40, ny = 40;
  int64_t nwave = 3681;
  double wave_start = 4750.0, wave_step = 1.25;  ///< observed air wavelengths, Angstrom
  uint64_t seed = 1;
  double ra = 170.062611, dec = 12.991528;  ///< deg (NGC 3627-like)
  double redshift = 0.00243;                ///< systemic
  double pixscale = 0.2;                    ///< arcsec / MUSE spaxel
  double hst_pixscale = 0.04;               ///< arcsec / HST pixel
  double pa_deg = 173, incl_deg = 57;       ///< position angle and inclination of the disc
  double vrot_kms = 180;                    ///< flat rotation speed
  bool noise = true;                        ///< false: noise-free DATA (STAT still written)
  double sky_sigma = 0.02;                  ///< sky noise as a fraction of the central continuum
  int64_t nan_spaxels = 5;                  ///< random NaN spaxels (plus the ragged edge)
  std::vector<std::string> bands = {"F275W", "F336W", "F438W", "F555W", "F814W"};
  std::string ssp = "builtin";              ///< SSP library (must cover 3000-9400 A for the bands)
  /// How spaxel histories are made. "prior": one non-parametric history per spaxel, from the
  /// family that dominates the training prior, with parameters varying over the disc (tests the
  /// pipeline where the model's prior holds). "components": a mass-weighted mixture of three
  /// skew-normal components (old bulge, disc, young arm bursts) with separate enrichment
  /// histories, which no single prior history reproduces (tests robustness to prior mismatch).
  std::string histories = "prior";
};

/// \brief Truth of one spaxel.
struct SpaxelTruth {
  bool valid = true;
  double v_kms = 0, sigma_kms = 0;          ///< line-of-sight velocity (rel. systemic), dispersion
  double mass = 0;                          ///< M_sun in the spaxel
  BinnedSfh binned;                         ///< mass per time step and Z
  SfhLabels labels;
  std::array<double, kNumAgeBins> light{};  ///< V-band light fraction per bin
  DustParams dust;                          ///< dust of the spaxel (birth clouds, diffuse ISM)
  double z_gas = 0.02;                      ///< gas metallicity of the nebular lines
};

/// \brief The galaxy model: fields, forward model and rendering of any spaxel (thread-safe).
class MockGalaxy {
 public:
  /// Loads the SSP grid named by cfg.ssp (LoadSsp; "emiles" from $CUBEFLOW_DATA_DIR).
  static Result<std::shared_ptr<const MockGalaxy>> Build(const GalaxyConfig& cfg);
  /// With a loaded SSP grid (cfg.ssp is then only its label).
  static Result<std::shared_ptr<const MockGalaxy>> Build(const GalaxyConfig& cfg, std::shared_ptr<const SspGrid> ssp);
  const GalaxyConfig& config() const { return cfg_; }
  /// The rest-frame forward model the spaxels are rendered with (its resolution_note() says
  /// where the SSP templates are coarser than the MUSE LSF).
  const ForwardModel& forward_model() const { return *fm_; }
  SpaxelTruth Truth(int64_t x, int64_t y) const;
  /// Noise-free observed spectrum (1e-20 erg/s/cm^2/A, nwave values; NaN for invalid spaxels)
  /// and band mean flux densities (erg/s/cm^2/A).
  void RenderSpaxel(int64_t x, int64_t y, std::vector<float>* flux, std::vector<double>* phot) const;
  /// Writes DATA/STAT cube, HST images, kinematic and truth maps into `dir`:
  /// cube.fits, hst_<band>.fits, kinematics.fits (V_STARS, SIGMA_STARS), truth.fits (incl.
  /// PHOT_<band>: noise-free band flux density per spaxel, erg/s/cm^2/A).
  Status Write(const std::string& dir, int threads = 0) const;
  /// Renders every valid spaxel's history and dust through `library_model` (the forward model
  /// of a training library: its LSF, dispersion, rest-frame grid, normalisation, bands and noise)
  /// and writes the result as a library file (`WriteLibrary` layout) with the spaxels' truth
  /// labels, plus a SPAXEL table (X, Y, MASS, V, SIGMA). This is what the pipeline's rest-frame
  /// spectra of single spaxels should look like; `cubeflow evaluate MODEL FILE` on it measures
  /// a model on the galaxy's histories without any pipeline processing.
  Status WriteTruthLibrary(const std::string& path, const ForwardModel& library_model, uint64_t noise_seed,
                           int threads = 0) const;

 private:
  GalaxyConfig cfg_;
  std::shared_ptr<const ForwardModel> fm_;
  WavelengthAxis rest_axis_;
  std::vector<double> rest_edges_, obs_edges_;
  double dist_cm_ = 0;
};

}  // namespace cubeflow::sim
