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
#include <memory>
#include <vector>

#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/rng.hpp"

namespace cubeflow::sim {

/// Kind of history; the integer values are stored in the SFH_KIND column of libraries.
/// kNonParametric: the quartile times of a Dirichlet joined by a monotone cubic (PCHIP);
/// kDenseBasis: the same Dense Basis parameters joined by a Gaussian-process history
/// (Iyer et al. 2019 GP-SFH, made monotone: DenseBasisCurve).
enum class SfhKind : int32_t { kNonParametric = 0, kSkewNormal = 1, kSkewNormalBurst = 2, kDenseBasis = 3 };

/// \brief Prior over histories. Defaults follow the paper; see docs/forward_model.md.
struct SfhPrior {
  // Mixture weights (relative; the paper's 150000 : 9000 : 6000). Paper 004's GP-SFH component
  // is w_dense_basis; the default keeps the PCHIP form (w_nonparametric) of earlier libraries.
  double w_nonparametric = 150000, w_skewnormal = 9000, w_skewnormal_burst = 6000;
  double w_dense_basis = 0;
  // Non-parametric (DenseBasis GP-SFH-like, PCHIP) histories.
  double dirichlet_alpha = 1.0;          ///< concentration of the 4-component Dirichlet
  double ssfr_min = 1e-12, ssfr_max = 1e-9;  ///< sSFR at z = 0, 1/yr
  bool ssfr_log_uniform = false;         ///< the paper says uniform (linear)
  // Dense Basis GP-SFH histories (DenseBasisCurve). Defaults: paper 004 (sec. 2.1); paper 000
  // draws log sSFR uniform in [-17, -7.5].
  double db_dirichlet_alpha = 1.0;       ///< concentration of the 4-component Dirichlet
  double db_ssfr_min = 1e-12, db_ssfr_max = 1e-9;  ///< sSFR at z = 0, 1/yr
  bool db_ssfr_log_uniform = false;
  double db_tail_fraction = 0.04;        ///< Dense Basis: the last 4 % of the mass form at the sSFR
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
  /// Instead of eq. 2: one [M/H] per object, uniform in [mh_min, mh_max] (paper 000, sec. 2.1).
  bool constant_metallicity = false;
  double mh_min = -2.3, mh_max = 0.4;
  // Time span.
  double t_max = 17.8;                   ///< oldest look-back time for skew-normal histories, Gyr
  bool clip_to_universe_age = false;     ///< if true, skew-normal histories stop at t_universe
  Cosmology cosmology;                   ///< t_universe = CosmicTimeGyr(0)
  double total_mass = 1.5e7;             ///< M_sun formed (the paper's 15e6)
};

/// \brief A star-formation rate that is piecewise linear in cosmic time (a Dense Basis history),
/// continuous except for one step at the tail start. Its cumulative mass is piecewise quadratic.
struct SfrCurve {
  /// Knots, cosmic time (Gyr), non-decreasing: the tail start appears twice (the SFR steps
  /// there); front() = 0, back() = t_universe.
  std::vector<double> tau;
  std::vector<double> sfr;  ///< SFR at the knots, fraction of the total mass per Gyr, >= 0
  std::vector<double> cum;  ///< fraction of the mass formed before each knot; front() = 0, back() = 1
  double tail_start = 0;    ///< cosmic time after which the SFR is held at the drawn sSFR (Gyr)
  /// Fraction of the mass formed before cosmic time `tau` (0 before the Big Bang, 1 after t_universe).
  double Cumulative(double tau) const;
  /// SFR at cosmic time `tau` (fraction of the mass per Gyr).
  double Rate(double tau) const;
  /// The first cosmic time by which the fraction `x` of the mass had formed (0 < x < 1). The
  /// SFR can be exactly 0 for a while, so the cumulative mass can stay at a level: this is the
  /// start of such a plateau (the mass within 1e-10 of x counts as x, against round-off).
  double TimeOfFraction(double x) const;
};

/// \brief The Dense Basis parameters of one history (Iyer et al. 2019): the cosmic times (as
/// fractions of the age of the universe) by which 1/4, 1/2 and 3/4 of the mass had formed, and
/// the sSFR at z = 0.
struct DenseBasisParams {
  std::array<double, 3> time_frac{};  ///< increasing, in (0, 1)
  double ssfr = 1e-10;                ///< 1/yr
  double tail_fraction = 0.04;        ///< mass fraction formed at the constant rate ssfr at the end
};

/// \brief The smooth history through the Dense Basis points, monotone by construction.
///
/// The SFR is a Gaussian process: a Wiener process that starts at 0 at the Big Bang, so that the
/// cumulative mass is an integrated Wiener process, the Gaussian process whose conditional mean
/// is the cubic spline (the Matern-3/2 kernel Dense Basis uses has the same smoothness). It is
/// conditioned on (i) a quarter of the mass forming between consecutive points (0, t25, t50,
/// t75, t_universe) and (ii) Dense Basis's sSFR constraint: the last `tail_fraction` of the mass
/// forms at the constant rate sSFR (over the last 4 % of cosmic time at most, and the last half
/// of the time after t75 at most; the SFR steps to the sSFR there, as Dense Basis's closely
/// spaced constraint points make it do). Of the conditioned process we take the most probable
/// history whose SFR stays above a floor of 1e-3 / t_universe (0.1 % of the mean SFR; before the
/// tail) everywhere: the mode of the constrained Gaussian process (Maatouk & Bay 2017), found
/// by a small quadratic programme (primal active set) on ~170 knots: uniform every 0.1 Gyr of
/// cosmic time, log-spaced from 1 Myr to 1 Gyr of look-back time, at least 3 inside each
/// interval, plus the points themselves. The cumulative mass then rises strictly, so it crosses
/// 1/4, 1/2, 3/4 exactly at the drawn times. Dense Basis instead takes the unconstrained mean and
/// sets negative SFRs to zero, which moves the t_x away from the drawn values. Returns false if
/// the programme failed (never seen in 10^5 prior draws; DrawSfh then falls back to the PCHIP
/// form).
bool DenseBasisCurve(const DenseBasisParams& params, double t_universe, SfrCurve* out);

/// \brief One history: the cumulative mass formed as a function of look-back time, plus the
/// metallicity law of eq. 2 (or a constant Z). Cheap to copy.
struct Sfh {
  SfhKind kind = SfhKind::kNonParametric;
  double t_universe = 13.47;   ///< Gyr
  double t_hi = 13.47;         ///< no star formation before this look-back time
  // non-parametric: monotone cubic Hermite of the cumulative fraction C(tau) formed before
  // cosmic time tau, knots at tau = 0, t25, t50, t75, t_universe.
  std::array<double, 5> knot_tau{}, knot_c{}, knot_d{};
  double ssfr = 0;             ///< 1/yr requested at z = 0 (the realised value may be clamped)
  // Dense Basis: the SFR curve (shared, immutable)
  std::shared_ptr<const SfrCurve> curve;
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
/// Makes `sfh` a Dense Basis history (kind, t_hi, curve); on a solver failure the PCHIP form
/// of SetNonParametric with the same parameters (kind kNonParametric). Returns whether the
/// Dense Basis curve was built.
bool SetDenseBasis(Sfh* sfh, const DenseBasisParams& params);
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
/// YoungFraction(t) = young (0 < young < 1). For Dense Basis histories, whose cumulative mass can
/// stay at a level while the SFR is 0, the earliest cosmic time (SfrCurve::TimeOfFraction).
double LookbackOfYoungFraction(const Sfh& sfh, double young);

}  // namespace cubeflow::sim
