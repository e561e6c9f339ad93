#pragma once
/// \file stellar_mass.hpp
/// \brief Stellar mass of a spectrum from an inferred history: the history's model spectrum per
/// unit formed mass, its dust attenuation fitted to the spectrum's continuum shape, and the
/// spectrum's absolute flux in the normalisation window.
///
/// The inference nodes give normalised shapes (mass fractions and [Z/H] per age bin); the mass
/// is the ratio of the observed flux in the normalisation window to the model's flux per solar
/// mass there. Everything the model needs is the ForwardModel the inference model was trained
/// with (its `library_config`): SSP grid, time grid, dust law, nebular lines.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/sfh.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::sim {

/// L_sun in erg/s (IAU 2015 nominal), the unit of the SSP fluxes.
inline constexpr double kSolarLuminosityErg = 3.828e33;
/// One parsec in cm.
inline constexpr double kParsecCm = 3.0856775814913673e18;

/// \brief The history on `grid` (mass per time step, summing to 1; Z per step) of per-age-bin
/// formed-mass fractions and mean [Z/H] (kNumAgeBins values each, as the CNN gives them): each
/// bin's mass spread over its steps at a constant rate, at the bin's metallicity
/// (Z = z_sun 10^zh), and only after the Big Bang (look-back `t_universe`, Gyr): the oldest bin
/// (10.6-17.8 Gyr) forms its stars between 10.6 Gyr and t_universe, the convention of
/// diffusion::BinToStepWeights. Negative or non-finite fractions count as 0; an error if none is
/// positive.
Result<BinnedSfh> HistoryFromAgeBins(const TimeGrid& grid, const double* mass_frac, const double* zh, double z_sun,
                                     double t_universe);

/// \brief The history of a cumulative mass-assembly curve: `t_mass[k]` is the cosmic time (Gyr)
/// at which (k + 1) / (n + 1) of the mass had formed (SBI's t10 ... t90 for n = 9), linear in
/// cumulative mass between them, 0 at the look-back time `t_start_lookback` (Gyr; the oldest
/// grid edge if <= 0) and 1 today (`t_universe`, Gyr); one [M/H] for all steps. Times are
/// sorted first; an error if fewer than 2 are finite.
Result<BinnedSfh> HistoryFromMassPercentiles(const TimeGrid& grid, const double* t_mass, size_t n, double t_universe,
                                             double mh, double z_sun);

/// \brief Options of FitLightToMass.
struct LightToMassOptions {
  double tau_max = 4.0;      ///< largest diffuse optical depth tried (at the model's dust pivot)
  double tau_step = 0.02;    ///< grid step of the search (refined by a parabola)
  double tau_bc = -1;        ///< birth-cloud optical depth; < 0: the median of the model's dust prior
  double line_halfwidth = 12;  ///< Angstrom masked around each nebular line (its strength is not fitted)
};

/// \brief What FitLightToMass found.
struct LightToMass {
  double tau_ism = 0;        ///< fitted diffuse optical depth at the pivot (dust.pivot)
  double tau_ism_err = 0;    ///< its 1-sigma (curvature of chi^2, scaled by the reduced chi^2 when > 1)
  double tau_bc = 0;         ///< birth-cloud optical depth used
  /// Mean model flux density in the normalisation window, attenuated, in L_sun/A per M_sun
  /// formed: the observed window flux divided by this is the formed mass (times 4 pi D^2 (1+z)).
  double window_flux = 0;
  double dlog10_window_dtau = 0;  ///< d log10(window_flux) / d tau_ism at the fit
  double living_fraction = 1;     ///< stars + remnants per M_sun formed
  double chi2_reduced = 0;        ///< of the normalised model against the spectrum
  int64_t n_pixels = 0;           ///< pixels used
  bool at_bound = false;          ///< the best tau is 0 or tau_max
};

/// \brief Fits the diffuse dust of `history`'s model spectrum to a spectrum on the model's grid
/// that was divided by its mean in the normalisation window (`flux`, `variance`, `mask` of
/// `n` = model.wave().size() pixels; mask may be null, nonzero = bad): chi^2 of the normalised
/// model over good, finite pixels away from nebular lines, on a grid of tau_ism then a parabola.
/// Errors: size mismatch, fewer than 20 usable pixels, a model with no flux in the window.
Result<LightToMass> FitLightToMass(const ForwardModel& model, const BinnedSfh& history, double z_gas,
                                   const double* flux, const double* variance, const uint8_t* mask, size_t n,
                                   const LightToMassOptions& options = {});

}  // namespace cubeflow::sim
