#pragma once
/// \file sfh.hpp
/// \brief Star-formation and metallicity histories: the priors of Galceran et al. (2026, sec. 2.1,
/// Table 1, eq. 2) and the labels derived from a history.
///
/// Times are look-back times in Gyr (age of the stars at z = 0) unless named "cosmic".
/// Everything here is a pure function of its arguments (thread-safe); randomness comes from the
/// Rng passed in.

#include <array>
#include <cstdint>
#include <vector>

#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/rng.hpp"

namespace cubeflow::sim {

/// Kind of history; the integer values are stored in the SFH_KIND column of libraries.
enum class SfhKind : int32_t { kNonParametric = 0, kSkewNormal = 1, kSkewNormalBurst = 2 };

/// \brief Prior over histories. Defaults follow the paper; see docs/forward_model.md.
struct SfhPrior {
  // Mixture weights (relative; the paper's 150000 : 9000 : 6000).
  double w_nonparametric = 150000, w_skewnormal = 9000, w_skewnormal_burst = 6000;
  // Non-parametric (DenseBasis GP-SFH-like) histories.
  double dirichlet_alpha = 1.0;          ///< concentration of the 4-component Dirichlet
  double ssfr_min = 1e-12, ssfr_max = 1e-9;  ///< sSFR at z = 0, 1/yr
  bool ssfr_log_uniform = false;         ///< the paper says uniform (linear)
  // Skew-normal histories (Table 1), in look-back time.
  double peak_mean = 12, peak_sigma = 3;   ///< Gyr (normal, truncated to [0, t_max])
  double width_mean = 1, width_sigma = 0.4;  ///< Gyr (normal, truncated to >= width_min)
  double width_min = 0.05;                 ///< Gyr
  double skew_min = -0.25, skew_max = 0.75;  ///< shape alpha; > 0 skews towards older ages
  // Bursts (Table 1): centre log-uniform, FWHM uniform, mass fraction uniform.
  double burst_age_min = 0.010, burst_age_max = 0.5;      ///< Gyr
  double burst_width_min = 0.040, burst_width_max = 0.050;  ///< Gyr (FWHM)
  double burst_frac_min = 0.01, burst_frac_max = 0.10;
  // Metallicity history (eq. 2).
  double z_start = 0.008, z_final_min = 0.010, z_final_max = 0.030;
  double z_sun = 0.019;                  ///< [Z/H] = log10(Z / z_sun) (Padova 2000 / MILES)
  // Time span.
  double t_max = 17.8;                   ///< oldest look-back time for skew-normal histories, Gyr
  bool clip_to_universe_age = false;     ///< if true, skew-normal histories stop at t_universe
  Cosmology cosmology;                   ///< t_universe = CosmicTimeGyr(0)
  double total_mass = 1.5e7;             ///< M_sun formed (the paper's 15e6)
};

/// \brief One history: the cumulative mass formed as a function of look-back time, plus the
/// metallicity law of eq. 2. Cheap to copy.
struct Sfh {
  SfhKind kind = SfhKind::kNonParametric;
  double t_universe = 13.47;   ///< Gyr
  double t_hi = 13.47;         ///< no star formation before this look-back time
  // non-parametric: monotone cubic Hermite of the cumulative fraction C(tau) formed before
  // cosmic time tau, knots at tau = 0, t25, t50, t75, t_universe.
  std::array<double, 5> knot_tau{}, knot_c{}, knot_d{};
  double ssfr = 0;             ///< 1/yr requested at z = 0 (the realised value may be clamped)
  // skew-normal in look-back time
  double xi = 0, omega = 1, alpha = 0;
  double f_lo = 0, f_hi = 1;   ///< skew-normal CDF at 0 and t_hi (truncation)
  // burst (Gaussian in look-back time)
  double burst_age = 0, burst_sigma = 0, burst_frac = 0;
  double b_lo = 0, b_hi = 1;
  // metallicity (eq. 2)
  double z_start = 0.008, z_final = 0.02, z_sun = 0.019;

  /// Fraction of the total mass formed at look-back times < t (0 at t <= 0, 1 at t >= t_hi).
  double YoungFraction(double t) const;
  /// Z of the stars formed at look-back time t: Z_start + (Z_final - Z_start) * (mass formed
  /// before then) / M_tot.
  double MetallicityAt(double t) const { return z_start + (z_final - z_start) * (1.0 - YoungFraction(t)); }
};

/// Recomputes the truncation constants (f_lo, f_hi, b_lo, b_hi) of a skew-normal (+ burst)
/// history whose xi/omega/alpha/burst_* were set by hand, so that no mass lies outside
/// [0, t_hi].
void FinalizeSfh(Sfh* sfh);

/// Makes `sfh` a non-parametric history (kind, t_hi, knots) with the cumulative mass fractions
/// 25/50/75 % reached at cosmic times time_frac[k] * t_universe (increasing, in (0, 1)) and
/// the given sSFR (1/yr) at z = 0. Used by DrawSfh and by the mock galaxy.
void SetNonParametric(Sfh* sfh, const std::array<double, 3>& time_frac, double ssfr);
/// Draws the kind from the mixture weights.
SfhKind DrawSfhKind(const SfhPrior& prior, Rng& rng);
/// Draws one history of the given kind (including Z_final).
Sfh DrawSfh(const SfhPrior& prior, SfhKind kind, Rng& rng);

/// \brief The history integrated on a TimeGrid: mass fraction and mass-weighted mean Z per step.
struct BinnedSfh {
  std::vector<double> mass;  ///< per time step, sums to 1
  std::vector<double> z;     ///< mass-weighted mean Z in the step (eq. 2 at the step's mid-mass)
};
BinnedSfh IntegrateSfh(const Sfh& sfh, const TimeGrid& grid);

/// \brief Per-object labels.
struct SfhLabels {
  std::array<float, kNumAgeBins> mass_frac{};  ///< formed mass fraction per age bin, sums to 1
  std::array<float, kNumAgeBins> zh{};         ///< mass-weighted mean [Z/H] per bin; in empty bins
                                               ///< the eq.-2 value at the bin centre
  std::array<float, kNumMassPercentiles> t_mass{};  ///< cosmic time (Gyr) when 10..90 % formed
};
SfhLabels ComputeLabels(const Sfh& sfh, const TimeGrid& grid, const BinnedSfh& binned);

/// Look-back time (Gyr) by which the fraction `young` of the mass had not yet formed, i.e.
/// YoungFraction(t) = young (0 < young < 1).
double LookbackOfYoungFraction(const Sfh& sfh, double young);

}  // namespace cubeflow::sim
