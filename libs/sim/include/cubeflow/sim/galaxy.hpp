#pragma once
/// \file galaxy.hpp
/// \brief A mock nearby spiral observed with MUSE (WFM) and HST/WFC3, with its truth maps, for
/// end-to-end tests of the pipeline: `cubeflow simulate galaxy`.
///
/// Two layouts (GalaxyConfig::layout):
///
/// * "spiral" (default): a galaxy drawn from the seed. Geometry (position angle, inclination,
///   disc and bulge scales, an optional bar, two or three logarithmic arms with their pitch
///   angle and phase, H II regions along the arms, an optional post-starburst or quenched
///   patch), the history of each region (from the forward model's history kinds: skew-normal
///   bulge and bar, non-parametric inner and outer disc, young bursts in the arms, very young
///   bursts in the H II regions, a skew-normal + burst post-starburst or a truncated quenched
///   history), the metallicity of each region with a radial gradient and per-spaxel scatter,
///   the dust, the rotation curve and the dispersion profile all change with the seed. A
///   spaxel's history is the mass-weighted mixture of the regions' histories at that place.
///   Across a 40x40 galaxy the light-weighted log age spans more than 1 dex, the mass-weighted
///   log age more than 0.5 dex and [Z/H] more than 0.5 dex (tested for several seeds), so a
///   constant map is far from the truth. The metallicities reach beyond the paper's prior
///   (Z_start = 0.008, Z_final 0.010-0.030, i.e. mass-weighted [Z/H] between -0.32 and 0).
/// * "classic": the earlier smooth-field galaxy (old and metal-rich centre, younger disc,
///   recent star formation in the arms; every seed gives the same pattern, the seed only
///   changes holes and noise), whose histories GalaxyConfig::histories chooses.
///
/// Spectra are rendered by a ForwardModel on a rest-frame log-lambda grid with the MUSE LSF
/// (Bacon et al. 2017), broadened by the spaxel's stellar dispersion, shifted by systemic +
/// rotation velocity and rebinned (flux-conserving) onto the observed air-wavelength grid.
/// Memory is bounded by writing the cube in chunks of rows.

#include <cstdint>
#include <memory>
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
  double pa_deg = 173, incl_deg = 57;       ///< position angle and inclination ("classic" only)
  double vrot_kms = 180;                    ///< flat rotation speed ("classic" only)
  bool noise = true;                        ///< false: noise-free DATA (STAT still written)
  double sky_sigma = 0.02;                  ///< sky noise as a fraction of the central continuum
  int64_t nan_spaxels = 5;                  ///< random NaN spaxels (plus the ragged edge)
  std::vector<std::string> bands = {"F275W", "F336W", "F438W", "F555W", "F814W"};
  std::string ssp = "builtin";              ///< SSP library (must cover 3000-9400 A for the bands)
  /// "spiral" (regions drawn from the seed) or "classic" (the fixed smooth-field galaxy); see
  /// the file comment.
  std::string layout = "spiral";
  /// "classic" layout only: how spaxel histories are made ("" = "prior"). "prior": one
  /// non-parametric history per spaxel, from the family that dominates the training prior, with
  /// parameters varying over the disc (tests the pipeline where the model's prior holds).
  /// "components": a mass-weighted mixture of three skew-normal components (old bulge, disc,
  /// young arm bursts) with separate enrichment histories, which no single prior history
  /// reproduces (tests robustness to prior mismatch). The "spiral" layout refuses a value.
  std::string histories;
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
  int region = 0;                           ///< GalaxyRegion of the spaxel (0: classic layout)
};

/// \brief Regions of the "spiral" layout (the truth map REGION); the "classic" layout has none.
/// A spaxel belongs to an H II region or the patch where they dominate, else to the component
/// with the most mass (bulge, bar, disc), the disc being "arm" where the arm pattern is strong.
enum GalaxyRegion : int {
  kRegionNone = 0,
  kRegionBulge = 1,
  kRegionBar = 2,
  kRegionArm = 3,         ///< arm: disc + young burst
  kRegionHii = 4,         ///< H II region: very young burst with nebular lines
  kRegionInnerDisc = 5,   ///< inter-arm disc inside about 1.25 disc scale lengths
  kRegionOuterDisc = 6,   ///< inter-arm disc further out
  kRegionPostStarburst = 7,
  kRegionQuenched = 8,
};

struct SpiralModel;  // the drawn parameters and region histories of a "spiral" galaxy (galaxy.cpp)

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
  /// One line per drawn parameter of a "spiral" galaxy (geometry, regions, their histories,
  /// metallicity, dust, kinematics); empty for "classic". Also written to truth.fits (HISTORY).
  std::vector<std::string> Describe() const;
  SpaxelTruth Truth(int64_t x, int64_t y) const;
  /// Noise-free observed spectrum (1e-20 erg/s/cm^2/A, nwave values; NaN for invalid spaxels)
  /// and band mean flux densities (erg/s/cm^2/A).
  void RenderSpaxel(int64_t x, int64_t y, std::vector<float>* flux, std::vector<double>* phot) const;
  /// Writes DATA/STAT cube, HST images, kinematic and truth maps into `dir`:
  /// cube.fits, hst_<band>.fits, kinematics.fits (V_STARS, SIGMA_STARS), truth.fits (LW_LOGAGE,
  /// MW_LOGAGE, LW_ZH, MW_ZH, MASS, SFH, ZH_BINS, V_TRUE, SIGMA_TRUE, REGION, and PHOT_<band>:
  /// noise-free band flux density per spaxel, erg/s/cm^2/A).
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
  SpaxelTruth ClassicTruth(int64_t x, int64_t y, SpaxelTruth t) const;
  SpaxelTruth SpiralTruth(int64_t x, int64_t y, SpaxelTruth t) const;

  GalaxyConfig cfg_;
  std::shared_ptr<const SpiralModel> spiral_;
  std::shared_ptr<const ForwardModel> fm_;
  WavelengthAxis rest_axis_;
  std::vector<double> rest_edges_, obs_edges_;
  double dist_cm_ = 0;
};

}  // namespace cubeflow::sim
