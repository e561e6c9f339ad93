#pragma once
/// \file digs.hpp
/// \brief The five-parameter spectral model of DIGS (Khullar et al. 2022, papers 002/003, sec. 2
/// and Table 1), built from cubeflow's own pieces; docs/digs.md says what differs from the paper.
///
/// Parameters (DigsTheta, in this order): log10 of the stellar mass formed (M_sun), log10(Z/Z_sun)
/// (= [M/H] of the SSP grid), the optical depth of diffuse dust at 5500 A (the ISM term of the
/// Charlot & Fall model of observables.hpp, DustTransmission with slope 0.7), the time since star
/// formation began t_age (Gyr) and the e-folding time tau (Gyr) of the delayed-tau history
/// SFR(t) ~ t/tau exp(-t/tau), t counted from the start of star formation.
///
/// The spectrum: SSPs (any SspGrid: the built-in model, the `emiles` set, an SSP directory)
/// averaged over fixed age bins (0, then 1 Myr - 4.47 Gyr in equal steps of log age), convolved
/// to a total Gaussian dispersion of 350 km/s (the templates' own resolution subtracted in
/// quadrature) and rebinned (flux-conserving) onto 138 log-lambda pixels spanning 3750-9500 A,
/// all once in Build. Rendering a history is then the exact mass of the delayed-tau history in
/// each age bin times its template, linear interpolation between the grid's [M/H], nebular lines
/// from the ionising photons (NebularLineRatios, gas metallicity = stellar), one dust curve, and
/// the conversion to flux at a fixed distance: 1e-17 erg/s/cm^2/A at 10 Mpc by default, so the
/// flux is proportional to the mass formed. Noise: x_i = m_i (1 + f eps_i), f = 0.05, eps ~ N(0,1).
///
/// A built DigsModel is immutable; its const methods may be called from many threads at once.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/rng.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::sim {

/// Number of DIGS parameters.
inline constexpr int kDigsNumParams = 5;

/// \brief The parameters of one object, in the order of Table 1.
struct DigsTheta {
  double log_mass = 10;  ///< log10(M formed / M_sun)
  double log_z = 0;      ///< log10(Z / Z_sun)
  double dust = 0.5;     ///< diffuse dust optical depth at 5500 A
  double t_age = 1;      ///< Gyr since the start of star formation
  double tau = 0.3;      ///< e-folding time, Gyr
  std::array<double, kDigsNumParams> ToArray() const { return {log_mass, log_z, dust, t_age, tau}; }
  static DigsTheta FromArray(const double* v) { return {v[0], v[1], v[2], v[3], v[4]}; }
};
/// Parameter names as printed and as column suffixes: log_mass, log_z, dust, t_age, tau.
const std::array<std::string, kDigsNumParams>& DigsParamNames();

/// \brief Table 1 priors (all independent): log_mass, log_z, dust and t_age uniform; tau
/// log-uniform.
struct DigsPrior {
  double log_mass_min = 8, log_mass_max = 13;
  double log_z_min = -2.0, log_z_max = 0.2;
  double dust_min = 0.1, dust_max = 10.0;  ///< the paper's "Tophat: [0.1, 10.00]"
  double t_age_min = 0, t_age_max = 4;     ///< Gyr
  double tau_min = 0.1, tau_max = 1.0;     ///< Gyr, log-uniform
  /// Lower / upper bounds in the order of DigsTheta (tau in Gyr).
  std::array<double, kDigsNumParams> Lo() const { return {log_mass_min, log_z_min, dust_min, t_age_min, tau_min}; }
  std::array<double, kDigsNumParams> Hi() const { return {log_mass_max, log_z_max, dust_max, t_age_max, tau_max}; }
  DigsTheta Draw(Rng& rng) const;
  /// The prior restricted to the quantiles q_lo..q_hi of every parameter (uniform, or
  /// log-uniform for tau, within the narrower bounds). Central(0.16, 0.84) is the range paper 003
  /// draws its 1000 test spectra from ("the 16th-84th percentile range of priors").
  DigsPrior Central(double q_lo, double q_hi) const;
  /// Whether `t` lies inside the bounds (the prior density is constant there in the coordinates
  /// log_mass, log_z, dust, t_age, log10 tau, and zero outside).
  bool Contains(const DigsTheta& t) const;
};

/// \brief Model settings; the defaults are the paper's.
struct DigsConfig {
  DigsPrior prior;
  double wave_min = 3750, wave_max = 9500;  ///< Angstrom, outer pixel edges (rest frame)
  int n_wave = 138;                         ///< log-lambda pixels
  double sigma_kms = 350;                   ///< total Gaussian dispersion of the spectrum
  double noise_frac = 0.05;                 ///< 1-sigma noise as a fraction of the model flux
  double distance_mpc = 10;                 ///< flux unit: 1e-17 erg/s/cm^2/A at this distance
  double dust_slope = 0.7, dust_pivot = 5500;  ///< tau(lambda) = dust (lambda/pivot)^-slope
  bool nebular = true;
  NebularConfig nebular_config;
  double z_sun = 0.019;        ///< Z of [M/H] = 0 (sets the gas-phase O/H of the lines)
  int n_age_bins = 72;         ///< log-spaced bins from age_bin_min to age_bin_max (+ one from 0)
  double age_bin_min = 1e-3, age_bin_max = 4.47;  ///< Gyr
  int ages_per_bin = 4;        ///< Gauss-Legendre ages averaged per bin (1-4)
  /// t_age below this (Gyr) renders as this (a history needs a duration; the prior mass below
  /// 1 Myr is 1/4000).
  double t_age_floor = 1e-3;
};

/// \brief One simulated object.
struct DigsObject {
  DigsTheta theta;
  std::vector<double> model;  ///< noise-free flux, 1e-17 erg/s/cm^2/A at DigsConfig::distance_mpc
  std::vector<double> flux;   ///< model with noise
};

class DigsModel {
 public:
  /// Precomputes the templates. Errors: SSP grid not covering the range, bad settings.
  static Result<std::shared_ptr<const DigsModel>> Build(std::shared_ptr<const SspGrid> ssp,
                                                        const DigsConfig& config);
  const DigsConfig& config() const { return cfg_; }
  const SspGrid& ssp() const { return *ssp_; }
  const std::vector<double>& wave() const { return wave_; }    ///< pixel centres, Angstrom
  const std::vector<double>& edges() const { return edges_; }  ///< n_wave + 1 pixel edges
  /// [M/H] range of the SSP grid: log_z outside it renders as the nearest end (the data then
  /// carry no information on log_z there; docs/digs.md).
  double grid_log_z_min() const { return ssp_->metal.front(); }
  double grid_log_z_max() const { return ssp_->metal.back(); }
  /// Age bin edges (Gyr), n_age_bins + 2 values starting at 0.
  const std::vector<double>& age_edges() const { return age_edges_; }

  /// Noise-free spectrum (n_wave values, flux unit above). Thread-safe; no allocation after the
  /// first call on a thread.
  void Render(const DigsTheta& theta, double* out) const;
  std::vector<double> Render(const DigsTheta& theta) const;
  /// Mass fraction formed in each age bin (n_age_bins + 1 values, sum 1).
  void AgeBinMass(double t_age, double tau, double* out) const;
  /// Object `index` of a run seeded with `seed`: theta from the prior, then the noise.
  /// Deterministic in (seed, index).
  void Simulate(uint64_t seed, int64_t index, DigsObject* out) const;
  /// Object `index` of a run seeded with `seed` whose theta is fixed: Simulate's noise stream
  /// (Rng(seed, index, 1)) on the given theta, so noise realisation i of `cubeflow digs mcmc
  /// --theta` and of `cubeflow digs library --theta` is the same spectrum.
  void SimulateNoise(const DigsTheta& theta, uint64_t seed, int64_t index, DigsObject* out) const;
  /// The noise of a given theta, drawn from `rng`.
  void SimulateFrom(const DigsTheta& theta, Rng& rng, DigsObject* out) const;
  /// log likelihood of the observed flux (n_wave values) for `theta`, up to a constant:
  /// -sum_i [ln sigma_i + (x_i - m_i)^2 / (2 sigma_i^2)], sigma_i = noise_frac m_i (the exact
  /// likelihood of the simulator's noise). -infinity if a model pixel is not positive.
  double LogLikelihood(const DigsTheta& theta, const double* flux) const;
  /// Flux in the output unit of 1 L_sun/A emitted at the configured distance.
  double lsun_per_a_to_flux() const { return lum_to_flux_; }

 private:
  DigsModel() = default;
  DigsConfig cfg_;
  std::shared_ptr<const SspGrid> ssp_;
  std::vector<double> wave_, edges_, age_edges_;
  size_t n_wave_ = 0, n_metal_ = 0, n_bins_ = 0;
  std::vector<double> tmpl_;    // [bin][metal][iw], L_sun/A per M_sun formed
  std::vector<double> q_h_;     // [bin][metal], photons/s per M_sun formed
  std::vector<double> dust_x_;  // (lambda/pivot)^-slope per pixel
  std::vector<size_t> line_first_;
  std::vector<std::vector<double>> line_prof_;  // unit-flux profile per line, per Angstrom
  double lum_to_flux_ = 0;
};

/// \brief Convenience: loads the SSP grid of `source` (LoadSsp) and builds the model.
Result<std::shared_ptr<const DigsModel>> BuildDigsModel(const SspSource& source, const DigsConfig& config);

}  // namespace cubeflow::sim
