#include "cubeflow/sim/sfh.hpp"

#include <algorithm>
#include <cmath>

namespace cubeflow::sim {
namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440;

double Phi(double z) { return 0.5 * std::erfc(-z * kInvSqrt2); }

// Owen's T function T(h, a) for |a| <= ~1 by 20-point Gauss-Legendre on [0, a].
double OwensT(double h, double a) {
  static const double kX[10] = {0.0765265211334973, 0.2277858511416451, 0.3737060887154195,
                                0.5108670019508271, 0.6360536807265150, 0.7463319064601508,
                                0.8391169718222188, 0.9122344282513259, 0.9639719272779138,
                                0.9931285991850949};
  static const double kW[10] = {0.1527533871307258, 0.1491729864726037, 0.1420961093183820,
                                0.1316886384491766, 0.1181945319615184, 0.1019301198172404,
                                0.0832767415767048, 0.0626720483341091, 0.0406014298003869,
                                0.0176140071391521};
  if (a == 0.0) return 0.0;
  const double hh = 0.5 * h * h;
  if (hh > 700) return 0.0;
  const double half = 0.5 * a;
  double s = 0;
  for (int i = 0; i < 10; ++i) {
    for (int sg = -1; sg <= 1; sg += 2) {
      const double x = half * (1.0 + sg * kX[i]);
      const double q = 1.0 + x * x;
      s += kW[i] * std::exp(-hh * q) / q;
    }
  }
  return s * half / (2.0 * M_PI);
}

// Skew-normal CDF.
double SkewNormalCdf(double t, double xi, double omega, double alpha) {
  const double z = (t - xi) / omega;
  return std::clamp(Phi(z) - 2.0 * OwensT(z, alpha), 0.0, 1.0);
}

// Hermite cubic on [x0, x1].
double Hermite(double x, double x0, double x1, double y0, double y1, double d0, double d1) {
  const double h = x1 - x0;
  if (h <= 0) return y1;
  const double s = (x - x0) / h;
  const double s2 = s * s, s3 = s2 * s;
  return (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * d0 + (-2 * s3 + 3 * s2) * y1 +
         (s3 - s2) * h * d1;
}

}  // namespace

double Sfh::YoungFraction(double t) const {
  if (t <= 0) return 0.0;
  if (t >= t_hi) return 1.0;
  if (kind == SfhKind::kDenseBasis && curve) return std::clamp(1.0 - curve->Cumulative(t_universe - t), 0.0, 1.0);
  if (kind == SfhKind::kNonParametric) {
    const double tau = t_universe - t;  // cosmic time
    int k = 0;
    while (k < 3 && tau > knot_tau[k + 1]) ++k;
    const double c = Hermite(tau, knot_tau[k], knot_tau[k + 1], knot_c[k], knot_c[k + 1], knot_d[k],
                             knot_d[k + 1]);
    return std::clamp(1.0 - c, 0.0, 1.0);
  }
  double y = (SkewNormalCdf(t, xi, omega, alpha) - f_lo) / (f_hi - f_lo);
  if (kind == SfhKind::kSkewNormalBurst) {
    const double b = (Phi((t - burst_age) / burst_sigma) - b_lo) / (b_hi - b_lo);
    y = (1.0 - burst_frac) * y + burst_frac * b;
  }
  return std::clamp(y, 0.0, 1.0);
}

void FinalizeSfh(Sfh* s) {
  s->f_lo = SkewNormalCdf(0.0, s->xi, s->omega, s->alpha);
  s->f_hi = SkewNormalCdf(s->t_hi, s->xi, s->omega, s->alpha);
  if (s->f_hi - s->f_lo < 1e-12) { s->f_lo = 0; s->f_hi = 1; }
  if (s->burst_sigma > 0) {
    s->b_lo = Phi((0.0 - s->burst_age) / s->burst_sigma);
    s->b_hi = Phi((s->t_hi - s->burst_age) / s->burst_sigma);
  }
}

SfhKind DrawSfhKind(const SfhPrior& p, Rng& rng) {
  // The Dense Basis weight comes last, so that libraries without it draw as before.
  const double tot = p.w_nonparametric + p.w_skewnormal + p.w_skewnormal_burst + p.w_dense_basis;
  const double u = rng.Uniform() * tot;
  if (u < p.w_nonparametric) return SfhKind::kNonParametric;
  if (u < p.w_nonparametric + p.w_skewnormal) return SfhKind::kSkewNormal;
  if (p.w_dense_basis <= 0 || u < p.w_nonparametric + p.w_skewnormal + p.w_skewnormal_burst)
    return SfhKind::kSkewNormalBurst;
  return SfhKind::kDenseBasis;
}

bool SetDenseBasis(Sfh* s, const DenseBasisParams& params) {
  auto curve = std::make_shared<SfrCurve>();
  if (!DenseBasisCurve(params, s->t_universe, curve.get())) {
    SetNonParametric(s, params.time_frac, params.ssfr);
    return false;
  }
  s->kind = SfhKind::kDenseBasis;
  s->t_hi = s->t_universe;
  s->ssfr = params.ssfr;
  s->curve = std::move(curve);
  return true;
}

namespace {
/// Cumulative sums of the first three components of a 4-component Dirichlet(alpha).
std::array<double, 3> DirichletTimes(double alpha, Rng& rng) {
  double g[4], sum = 0;
  for (double& v : g) { v = rng.Gamma(alpha) + 1e-12; sum += v; }
  std::array<double, 3> frac{};
  double acc = 0;
  for (int k = 0; k < 3; ++k) { acc += g[k] / sum; frac[k] = acc; }
  return frac;
}
}  // namespace

void SetNonParametric(Sfh* s, const std::array<double, 3>& time_frac, double ssfr) {
  s->kind = SfhKind::kNonParametric;
  s->t_hi = s->t_universe;
  s->knot_tau[0] = 0;
  for (int k = 0; k < 3; ++k) s->knot_tau[k + 1] = time_frac[k] * s->t_universe;
  s->knot_tau[4] = s->t_universe;
  for (int k = 0; k < 5; ++k) s->knot_c[k] = 0.25 * k;
  s->ssfr = ssfr;
  // PCHIP derivatives (Fritsch-Carlson weighted harmonic mean); d = 0 at the Big Bang, the
  // sSFR (per Gyr) at z = 0, limited to 3x the last secant to keep C monotone.
  double h[4], del[4];
  for (int k = 0; k < 4; ++k) {
    h[k] = std::max(s->knot_tau[k + 1] - s->knot_tau[k], 1e-9);
    del[k] = 0.25 / h[k];
  }
  s->knot_d[0] = 0;
  for (int k = 1; k < 4; ++k) {
    const double w1 = 2 * h[k] + h[k - 1], w2 = h[k] + 2 * h[k - 1];
    s->knot_d[k] = (w1 + w2) / (w1 / del[k - 1] + w2 / del[k]);
  }
  s->knot_d[4] = std::min(s->ssfr * 1e9, 3.0 * del[3]);
}

Sfh DrawSfh(const SfhPrior& p, SfhKind kind, Rng& rng) {
  Sfh s;
  s.kind = kind;
  s.t_universe = CosmicTimeGyr(0.0, p.cosmology);
  s.z_start = p.z_start;
  s.z_sun = p.z_sun;
  if (p.constant_metallicity) {
    s.z_final = s.z_start = p.z_sun * std::pow(10.0, rng.Uniform(p.mh_min, p.mh_max));
  } else {
    s.z_final = rng.Uniform(p.z_final_min, p.z_final_max);
  }
  if (kind == SfhKind::kNonParametric) {
    // Three cumulative time fractions from a 4-component Dirichlet (DenseBasis t_x).
    const std::array<double, 3> frac = DirichletTimes(p.dirichlet_alpha, rng);
    const double ssfr = p.ssfr_log_uniform ? rng.LogUniform(p.ssfr_min, p.ssfr_max)
                                           : rng.Uniform(p.ssfr_min, p.ssfr_max);
    SetNonParametric(&s, frac, ssfr);
    return s;
  }
  if (kind == SfhKind::kDenseBasis) {
    DenseBasisParams db;
    db.time_frac = DirichletTimes(p.db_dirichlet_alpha, rng);
    db.ssfr = p.db_ssfr_log_uniform ? rng.LogUniform(p.db_ssfr_min, p.db_ssfr_max)
                                    : rng.Uniform(p.db_ssfr_min, p.db_ssfr_max);
    db.tail_fraction = p.db_tail_fraction;
    SetDenseBasis(&s, db);
    return s;
  }
  s.t_hi = p.clip_to_universe_age ? std::min(p.t_max, s.t_universe) : p.t_max;
  do { s.xi = rng.Normal(p.peak_mean, p.peak_sigma); } while (s.xi < 0 || s.xi > s.t_hi);
  do { s.omega = rng.Normal(p.width_mean, p.width_sigma); } while (s.omega < p.width_min);
  s.alpha = rng.Uniform(p.skew_min, p.skew_max);
  s.f_lo = SkewNormalCdf(0.0, s.xi, s.omega, s.alpha);
  s.f_hi = SkewNormalCdf(s.t_hi, s.xi, s.omega, s.alpha);
  if (s.f_hi - s.f_lo < 1e-12) { s.f_lo = 0; s.f_hi = 1; }
  if (kind == SfhKind::kSkewNormalBurst) {
    s.burst_age = rng.LogUniform(p.burst_age_min, p.burst_age_max);
    s.burst_sigma = rng.Uniform(p.burst_width_min, p.burst_width_max) / 2.3548200450309493;
    s.burst_frac = rng.Uniform(p.burst_frac_min, p.burst_frac_max);
    s.b_lo = Phi((0.0 - s.burst_age) / s.burst_sigma);
    s.b_hi = Phi((s.t_hi - s.burst_age) / s.burst_sigma);
  }
  return s;
}

BinnedSfh IntegrateSfh(const Sfh& sfh, const TimeGrid& grid) {
  BinnedSfh b;
  const size_t n = grid.size();
  b.mass.resize(n);
  b.z.resize(n);
  double prev = 0;  // YoungFraction(0)
  for (size_t j = 0; j < n; ++j) {
    const double y = sfh.YoungFraction(grid.Hi(j));
    b.mass[j] = std::max(0.0, y - prev);
    // mean of eq. 2 over the mass formed in the step (linear in cumulative mass)
    b.z[j] = sfh.z_start + (sfh.z_final - sfh.z_start) * (1.0 - 0.5 * (y + prev));
    prev = y;
  }
  double tot = 0;
  for (double m : b.mass) tot += m;
  if (tot > 0) for (double& m : b.mass) m /= tot;
  return b;
}

namespace {
double Bisect(const Sfh& sfh, double young, double lo, double hi, int iters) {
  for (int it = 0; it < iters; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (sfh.YoungFraction(mid) < young) lo = mid; else hi = mid;
  }
  return 0.5 * (lo + hi);
}
}  // namespace

double LookbackOfYoungFraction(const Sfh& sfh, double young) {
  if (sfh.kind == SfhKind::kDenseBasis && sfh.curve) return sfh.t_universe - sfh.curve->TimeOfFraction(1.0 - young);
  return Bisect(sfh, young, 0.0, sfh.t_hi, 48);
}

SfhLabels ComputeLabels(const Sfh& sfh, const TimeGrid& grid, const BinnedSfh& binned) {
  SfhLabels l;
  std::array<double, kNumAgeBins> m{}, mz{};
  for (size_t j = 0; j < grid.size(); ++j) {
    m[grid.bin[j]] += binned.mass[j];
    mz[grid.bin[j]] += binned.mass[j] * std::log10(binned.z[j] / sfh.z_sun);
  }
  double tot = 0;
  for (double v : m) tot += v;
  const auto& c = AgeBinCentresGyr();
  for (int i = 0; i < kNumAgeBins; ++i) {
    l.mass_frac[i] = static_cast<float>(tot > 0 ? m[i] / tot : 0.0);
    l.zh[i] = static_cast<float>(m[i] > 1e-12 ? mz[i] / m[i]
                                              : std::log10(sfh.MetallicityAt(c[i]) / sfh.z_sun));
  }
  // cumulative young fraction at the grid edges brackets each percentile; bisect inside
  std::vector<double> cum(grid.size() + 1, 0.0);
  for (size_t j = 0; j < grid.size(); ++j) cum[j + 1] = cum[j] + binned.mass[j];
  for (int k = 0; k < kNumMassPercentiles; ++k) {
    const double young = 1.0 - 0.1 * (k + 1);  // 10 % formed = 90 % still to form
    if (sfh.kind == SfhKind::kDenseBasis && sfh.curve) {
      l.t_mass[k] = static_cast<float>(sfh.curve->TimeOfFraction(0.1 * (k + 1)));
      continue;
    }
    size_t j = std::upper_bound(cum.begin(), cum.end(), young) - cum.begin();
    j = std::clamp<size_t>(j, 1, grid.size());
    const double lb = Bisect(sfh, young, grid.Lo(j - 1), std::min(grid.Hi(j - 1), sfh.t_hi), 30);
    l.t_mass[k] = static_cast<float>(sfh.t_universe - lb);
  }
  return l;
}

}  // namespace cubeflow::sim
