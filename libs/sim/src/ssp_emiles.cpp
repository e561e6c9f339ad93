// The `emiles` SSP set: E-MILES (BaSTI, Kroupa) from 30 Myr joined to a young extension from
// Maraston (2005), and the resolver of `ssp:` names (builtin / emiles / a directory). See ssp.hpp
// and docs/forward_model.md ("The emiles SSP set").

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "cubeflow/sim/filters.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/spectral/spectral_ops.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::sim {

namespace {

namespace fs = std::filesystem;

constexpr double kSpeedOfLightKms = 299792.458;
constexpr double kFwhmPerSigma = 2.3548200450309493;

std::string Fmt(double x, int prec) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(prec);
  s << x;
  return s.str();
}

// Linear interpolation of (x, y) at v, clamped to the end values.
double InterpClamped(const std::vector<double>& x, const std::vector<double>& y, double v) {
  if (v <= x.front()) return y.front();
  if (v >= x.back()) return y.back();
  const size_t k = static_cast<size_t>(std::upper_bound(x.begin(), x.end(), v) - x.begin());
  const double t = (v - x[k - 1]) / (x[k] - x[k - 1]);
  return y[k - 1] + t * (y[k] - y[k - 1]);
}

// A Maraston (2005) spectrum at (age, [Z/H]) interpolated onto `wave`.
std::vector<double> MarastonOn(const SspGrid& m05, double age_gyr, double zh, const std::vector<double>& wave) {
  std::vector<double> native(m05.n_wave());
  m05.Interpolate(std::log10(age_gyr * 1e9), zh, native.data());
  std::vector<double> out(wave.size());
  for (size_t i = 0; i < wave.size(); ++i) out[i] = InterpClamped(m05.wave, native, wave[i]);
  return out;
}

double MeanOver(const std::vector<double>& wave, const float* f, double lo, double hi) {
  double s = 0;
  size_t n = 0;
  for (size_t i = 0; i < wave.size(); ++i) {
    if (wave[i] >= lo && wave[i] <= hi) {
      s += f[i];
      ++n;
    }
  }
  return n ? s / static_cast<double>(n) : 0.0;
}

// A 5772 K blackbody of 1 L_sun, per Angstrom (the "Sun" of the V-band M/L; as the built-in model).
double SunPerAngstrom(double l_angstrom) {
  constexpr double kH = 6.62607015e-27, kC = 2.99792458e10, kK = 1.380649e-16, kSigmaSb = 5.670374419e-5;
  constexpr double kT = 5772.0;
  const double l = l_angstrom * 1e-8;
  const double x = kH * kC / (l * kK * kT);
  if (x > 700) return 0.0;
  const double b = 2.0 * kH * kC * kC / std::pow(l, 5) / std::expm1(x);
  return M_PI * b / (kSigmaSb * std::pow(kT, 4)) * 1e-8;
}

// Kroupa (2001) IMF segments on 0.1-100 M_sun: [lo, hi), slope alpha, continuous coefficient.
struct ImfSegment {
  double lo, hi, alpha, c;
};
std::vector<ImfSegment> Segments(KroupaImf imf) {
  std::vector<ImfSegment> s;
  if (imf == KroupaImf::kUniversal) s = {{0.1, 0.5, 1.3, 1}, {0.5, 100, 2.3, 1}};
  else s = {{0.1, 0.5, 1.8, 1}, {0.5, 1.0, 2.7, 1}, {1.0, 100, 2.3, 1}};
  for (size_t k = 1; k < s.size(); ++k) s[k].c = s[k - 1].c * std::pow(s[k].lo, s[k].alpha - s[k - 1].alpha);
  return s;
}
// Integral of c m^(p - alpha) over [a, b] within the segments (p = 0: number, p = 1: mass).
double Moment(const std::vector<ImfSegment>& segs, int p, double a, double b) {
  double sum = 0;
  for (const auto& s : segs) {
    const double lo = std::max(a, s.lo), hi = std::min(b, s.hi);
    if (!(hi > lo)) continue;
    const double e = p + 1 - s.alpha;
    sum += s.c * (std::abs(e) < 1e-12 ? std::log(hi / lo) : (std::pow(hi, e) - std::pow(lo, e)) / e);
  }
  return sum;
}

bool IsDir(const std::string& d) {
  std::error_code ec;
  return !d.empty() && fs::is_directory(d, ec);
}

}  // namespace

double LuminosityV(const std::vector<double>& wave, const std::vector<double>& flux) {
  static const Filter vband = *BuiltinFilter("V");
  std::vector<double> sun(wave.size());
  for (size_t i = 0; i < wave.size(); ++i) sun[i] = SunPerAngstrom(wave[i]);
  return MeanFluxDensity(vband, wave, flux) / MeanFluxDensity(vband, wave, sun);
}

double SurvivingMassFraction(KroupaImf imf, double m_turnoff) {
  const auto segs = Segments(imf);
  const double total = Moment(segs, 1, 0.1, 100);
  const double mt = std::clamp(m_turnoff, 0.1, 100.0);
  double m = Moment(segs, 1, 0.1, mt);                                        // living stars
  m += 0.077 * Moment(segs, 1, mt, std::max(mt, 8.5)) + 0.48 * Moment(segs, 0, mt, std::max(mt, 8.5));  // WD
  m += 1.4 * Moment(segs, 0, std::max(mt, 8.5), std::max(mt, 40.0));         // neutron stars
  m += 0.5 * Moment(segs, 1, std::max(mt, 40.0), 100);                       // black holes
  return m / total;
}

double KroupaNumberRatio(KroupaImf imf, double m_sun) {
  const double m = std::clamp(m_sun, 0.1, 100.0);
  const auto a = Segments(imf), u = Segments(KroupaImf::kUniversal);
  auto density = [m](const std::vector<ImfSegment>& segs) {
    for (const auto& s : segs)
      if (m >= s.lo && (m < s.hi || s.hi == 100)) return s.c * std::pow(m, -s.alpha) / Moment(segs, 1, 0.1, 100);
    return 0.0;
  };
  return density(a) / density(u);
}

std::vector<double> EmilesFwhm(const std::vector<double>& wave) {
  std::vector<double> f(wave.size());
  for (size_t i = 0; i < wave.size(); ++i) {
    const double l = wave[i];
    if (l < 3060.0) f[i] = 5.0;
    else if (l < 3540.5) f[i] = 3.0;
    else if (l <= 8950.0) f[i] = 2.51;
    else f[i] = kFwhmPerSigma * 60.0 / kSpeedOfLightKms * l;
  }
  return f;
}

Result<std::shared_ptr<SspGrid>> LoadEmilesSet(const EmilesSetOptions& opt) {
  if (!IsDir(opt.emiles_dir)) {
    return Status::Error("E-MILES directory '" + opt.emiles_dir +
                         "' does not exist (it holds Ekb1.30Z*T*_iTp0.00_baseFe.fits; set CUBEFLOW_DATA_DIR to the "
                         "folder with ssp/emiles_basti_kb, or give the directory)");
  }
  SspLoadOptions lo;
  lo.name_contains = opt.name_contains;
  CUBEFLOW_ASSIGN_OR_RETURN(auto em, LoadSspDirectory(opt.emiles_dir, lo));
  CUBEFLOW_ASSIGN_OR_RETURN(auto m05set, LoadMaraston05(opt.maraston_dir));
  const std::shared_ptr<SspGrid> m05 = m05set.grid;
  const size_t nw = em->n_wave(), nm = em->n_metal();
  const auto& wave = em->wave;

  // --- ages: the young extension below the join, E-MILES from the join on --------------------
  const double la_join = std::log10(opt.join_age_gyr * 1e9);
  size_t ia_join = em->n_age();
  for (size_t ia = 0; ia < em->n_age(); ++ia) {
    if (std::abs(em->log_age[ia] - la_join) < 2e-3) ia_join = ia;
  }
  if (ia_join == em->n_age()) {
    return Status::Error("emiles set: the join age " + Num(opt.join_age_gyr) +
                         " Gyr is not an age of the E-MILES grid in '" + opt.emiles_dir +
                         "' (youngest: " + Num(std::pow(10.0, em->log_age.front() - 9.0)) + " Gyr)");
  }
  if (!(opt.young_min_age_gyr > 0) || !(opt.anchor_age_gyr >= opt.young_min_age_gyr) ||
      opt.anchor_age_gyr > opt.join_age_gyr + 1e-12) {
    return Status::Error("emiles set: need 0 < young_min_age <= anchor_age <= join_age, got " +
                         Num(opt.young_min_age_gyr) + ", " + Num(opt.anchor_age_gyr) + ", " +
                         Num(opt.join_age_gyr) + " Gyr");
  }
  if (ia_join + 1 >= em->n_age()) {
    return Status::Error("emiles set: the join age needs an older E-MILES age after it");
  }
  // Young nodes: the minimum age, Maraston's own ages above it and below the anchor, the anchor.
  std::vector<double> young = {opt.young_min_age_gyr};
  for (double la : m05->log_age) {
    const double a = std::pow(10.0, la - 9.0);
    if (a > opt.young_min_age_gyr * 1.001 && a < opt.anchor_age_gyr * 0.999) young.push_back(a);
  }
  if (opt.anchor_age_gyr < opt.join_age_gyr * 0.999 && opt.anchor_age_gyr > opt.young_min_age_gyr * 1.001)
    young.push_back(opt.anchor_age_gyr);
  auto g = std::make_shared<SspGrid>();
  g->wave = wave;
  g->metal = em->metal;
  for (double a : young) g->log_age.push_back(std::log10(a * 1e9));
  for (size_t ia = ia_join; ia < em->n_age(); ++ia) g->log_age.push_back(em->log_age[ia]);
  const size_t na = g->n_age(), ny = young.size();
  g->flux.assign(nm * na * nw, 0.0f);

  // --- E-MILES part, zero tails beyond 8950 A filled from Maraston ------------------------------
  const double fill_lo = opt.fill_window_lo, fill_hi = opt.fill_window_hi;
  size_t n_filled = 0;
  double fill_scale_min = 1e300, fill_scale_max = 0;
  for (size_t im = 0; im < nm; ++im) {
    for (size_t ia = ia_join; ia < em->n_age(); ++ia) {
      const float* src = em->Spectrum(im, ia);
      float* dst = g->flux.data() + (im * na + ny + (ia - ia_join)) * nw;
      std::copy(src, src + nw, dst);
      size_t last = nw;
      while (last > 0 && dst[last - 1] == 0.0f) --last;
      if (last == nw) continue;
      if (last == 0 || wave[last - 1] < fill_hi) {
        return Status::Error("emiles set: the E-MILES spectrum of [M/H] " + Fmt(em->metal[im], 2) + ", age " +
                             Num(std::pow(10.0, em->log_age[ia] - 9.0)) + " Gyr is zero from " +
                             Fmt(last ? wave[last - 1] : wave[0], 1) + " A, inside the fill window " +
                             Fmt(fill_lo, 0) + "-" + Fmt(fill_hi, 0) + " A");
      }
      const double age = std::pow(10.0, em->log_age[ia] - 9.0);
      const auto mar = MarastonOn(*m05, age, em->metal[im], wave);
      std::vector<float> marf(mar.begin(), mar.end());
      const double scale = MeanOver(wave, dst, fill_lo, fill_hi) / MeanOver(wave, marf.data(), fill_lo, fill_hi);
      for (size_t i = last; i < nw; ++i) dst[i] = static_cast<float>(scale * mar[i]);
      ++n_filled;
      fill_scale_min = std::min(fill_scale_min, scale);
      fill_scale_max = std::max(fill_scale_max, scale);
    }
  }

  // --- young extension: E-MILES at the anchor age x Maraston's evolution relative to it ---------
  // E-MILES at the anchor: the join spectrum carried back by E-MILES' own log-age rate between
  // the join and the next age, F(join) (F(join) / F(next))^p, p = log(join/anchor) / log(next/join).
  const double p_bridge = (la_join - std::log10(opt.anchor_age_gyr * 1e9)) / (em->log_age[ia_join + 1] - la_join);
  std::vector<double> base(nw);
  for (size_t im = 0; im < nm; ++im) {
    const float* at_join = g->Spectrum(im, ny);  // the (filled) E-MILES spectra at the join age
    const float* next = g->Spectrum(im, ny + 1);  // and the next one
    for (size_t i = 0; i < nw; ++i) {
      const double r = next[i] > 0 && at_join[i] > 0 ? static_cast<double>(at_join[i]) / next[i] : 1.0;
      base[i] = at_join[i] * std::pow(r, p_bridge);
    }
    const auto anchor = MarastonOn(*m05, opt.anchor_age_gyr, em->metal[im], wave);
    for (size_t k = 0; k < ny; ++k) {
      const auto m = MarastonOn(*m05, young[k], em->metal[im], wave);
      float* dst = g->flux.data() + (im * na + k) * nw;
      for (size_t i = 0; i < nw; ++i) dst[i] = static_cast<float>(base[i] * (m[i] / anchor[i]));
    }
  }

  // --- per grid point: surviving mass and Q_H from Maraston, M/L_V from the spectra ------------
  g->mass_star.resize(nm * na);
  g->q_h.resize(nm * na);
  g->ml_v.resize(nm * na);
  // Interpolated in log: Q_H spans 30 decades, M_TO two.
  std::vector<double> log_q(m05->q_h.size()), log_mto(m05set.turnoff_mass.size());
  for (size_t k = 0; k < log_q.size(); ++k) log_q[k] = std::log10(std::max(m05->q_h[k], 1e-30));
  for (size_t k = 0; k < log_mto.size(); ++k) log_mto[k] = std::log10(m05set.turnoff_mass[k]);
  const double massive = KroupaNumberRatio(KroupaImf::kRevised, 10.0);  // ionising stars
  std::vector<double> spec(nw);
  for (size_t im = 0; im < nm; ++im) {
    for (size_t ia = 0; ia < na; ++ia) {
      const size_t slot = im * na + ia;
      const double mto = std::pow(10.0, m05->InterpolateScalar(log_mto, g->log_age[ia], g->metal[im]));
      g->mass_star[slot] = SurvivingMassFraction(KroupaImf::kRevised, mto);
      g->q_h[slot] = massive * std::pow(10.0, m05->InterpolateScalar(log_q, g->log_age[ia], g->metal[im]));
      const float* s = g->Spectrum(im, ia);
      for (size_t i = 0; i < nw; ++i) spec[i] = s[i];
      g->ml_v[slot] = g->mass_star[slot] / LuminosityV(wave, spec);
    }
  }
  // Q_H below the youngest spectrum, from Maraston's ages >= 1 Myr (spectra clamp at young_min_age).
  for (size_t ia = 0; ia < m05->n_age(); ++ia) {
    if (m05->log_age[ia] >= 6.0 - 1e-9 && m05->log_age[ia] < g->log_age.front() - 1e-6)
      g->q_h_young_log_age.push_back(m05->log_age[ia]);
  }
  for (size_t im = 0; im < nm; ++im)
    for (double la : g->q_h_young_log_age)
      g->q_h_young.push_back(massive * std::pow(10.0, m05->InterpolateScalar(log_q, la, g->metal[im])));
  g->fwhm = 2.51;
  g->fwhm_wave = EmilesFwhm(wave);
  g->name = "emiles";
  g->synthetic = false;
  g->notes = "E-MILES (Vazdekis et al. 2016; BaSTI, Kroupa revised IMF, base [alpha/Fe]) from " + opt.emiles_dir +
             " at ages >= " + Num(opt.join_age_gyr) + " Gyr; " + std::to_string(ny) + " younger ages (" +
             Num(young.front() * 1e3) + "-" + Num(young.back() * 1e3) + " Myr) = E-MILES carried from " +
             Num(opt.join_age_gyr * 1e3) + " to " + Num(opt.anchor_age_gyr * 1e3) +
             " Myr by its own rate to the next age, x Maraston (2005) L(t)/L(" + Num(opt.anchor_age_gyr * 1e3) +
             " Myr) from " + opt.maraston_dir + " ([Z/H] interpolated linearly, clamped to -1.35..+0.35); " +
             std::to_string(n_filled) + " E-MILES spectra zero beyond 8950 A filled from Maraston scaled in " +
             Fmt(fill_lo, 0) + "-" + Fmt(fill_hi, 0) + " A (scales " + Fmt(n_filled ? fill_scale_min : 0, 3) + "-" +
             Fmt(n_filled ? fill_scale_max : 0, 3) + "); mass_star = stars + remnants of the revised Kroupa IMF "
             "at Maraston's turnoff masses; q_h = Maraston's flux below 912 A x " + Fmt(massive, 3) +
             " (massive stars per M_sun, revised / universal Kroupa), also below the youngest spectrum down to "
             "1 Myr (q_h_young); ml_v = mass_star / L_V of the spectra (5772 K blackbody Sun); FWHM 5/3/2.51 A "
             "below 3060/3540.5/8950 A, sigma 60 km/s beyond";
  CUBEFLOW_RETURN_NOT_OK(g->Validate());
  return g;
}

namespace {

// f divided by its running mean over 2 * half + 1 pixels.
std::vector<double> DivideByRunningMean(const std::vector<double>& f, int half) {
  std::vector<double> out(f.size());
  const long n = static_cast<long>(f.size());
  for (long i = 0; i < n; ++i) {
    double s = 0;
    int k = 0;
    for (long j = std::max(0L, i - half); j <= std::min(n - 1, i + half); ++j, ++k) s += f[static_cast<size_t>(j)];
    out[static_cast<size_t>(i)] = s > 0 ? f[static_cast<size_t>(i)] / (s / k) : 1.0;
  }
  return out;
}

// Best extra sigma for `sharp` to match `broad`, and the residual.
double BestExtraSigma(const std::vector<double>& wave, const std::vector<double>& sharp,
                      const std::vector<double>& broad, double* chi2) {
  constexpr int kHalf = 60;
  const auto nb = DivideByRunningMean(broad, kHalf);
  double best = 0, best_chi = 1e300;
  const size_t lo = 2 * kHalf, hi = wave.size() > 4 * kHalf ? wave.size() - 2 * kHalf : 0;
  for (int step = 0; step <= 60; ++step) {
    const double s = 0.05 * step;
    const auto conv = s > 0 ? spectral::ConvolveSigma(wave, sharp, [s](double) { return s; }) : sharp;
    const auto na = DivideByRunningMean(conv, kHalf);
    double sxy = 0, sxx = 0;
    for (size_t i = lo; i < hi; ++i) {
      sxy += (na[i] - 1) * (nb[i] - 1);
      sxx += (na[i] - 1) * (na[i] - 1);
    }
    const double k = sxx > 0 ? sxy / sxx : 0;
    double chi = 0;
    for (size_t i = lo; i < hi; ++i) {
      const double r = (nb[i] - 1) - k * (na[i] - 1);
      chi += r * r;
    }
    if (chi < best_chi) {
      best_chi = chi;
      best = s;
    }
  }
  *chi2 = best_chi;
  return best;
}

}  // namespace

double RelativeBroadening(const std::vector<double>& wave, const std::vector<double>& a,
                          const std::vector<double>& b, double* chi2) {
  double chi_a = 0, chi_b = 0;
  const double sa = BestExtraSigma(wave, b, a, &chi_a);  // b broadened to match a: a is broader
  const double sb = BestExtraSigma(wave, a, b, &chi_b);  // a broadened to match b: a is sharper
  if (chi2) *chi2 = std::min(chi_a, chi_b);
  return chi_a <= chi_b ? sa : -sb;
}

double JoinContinuity::Excess(size_t im, size_t q) const {
  const size_t k = im * n_quantities() + q;
  return std::abs(rate_join[k]) - std::max(std::abs(rate_young[k]), std::abs(rate_old[k]));
}

Result<JoinContinuity> MeasureJoinContinuity(const SspGrid& g, double join_age_gyr, const SspGrid* reference) {
  const double la = std::log10(join_age_gyr * 1e9);
  size_t ij = g.n_age();
  for (size_t ia = 0; ia < g.n_age(); ++ia) {
    if (std::abs(g.log_age[ia] - la) < 2e-3) ij = ia;
  }
  if (ij == g.n_age() || ij < 2 || ij + 1 >= g.n_age()) {
    return Status::Error("join continuity: " + Num(join_age_gyr) + " Gyr is not an age of SSP '" + g.name +
                         "' with two younger and one older age");
  }
  JoinContinuity r;
  const char* bands[] = {"F275W", "F336W", "F438W", "F555W", "F814W"};
  std::vector<Filter> filters;
  for (const char* b : bands) {
    CUBEFLOW_ASSIGN_OR_RETURN(auto f, BuiltinFilter(b));
    filters.push_back(f);
  }
  for (int b = 0; b + 1 < 5; ++b) {
    r.quantities.push_back(std::string(bands[b]) + "-" + bands[b + 1]);
    r.window_lo.push_back(0);
    r.window_hi.push_back(0);
  }
  const double windows[][2] = {{2400, 2600}, {3450, 3600}, {4150, 4250}, {5300, 5500},
                               {6000, 6300}, {8000, 8300}, {9000, 9300}};
  for (const auto& w : windows) {
    r.quantities.push_back(Fmt(w[0], 0) + "-" + Fmt(w[1], 0) + " A");
    r.window_lo.push_back(w[0]);
    r.window_hi.push_back(w[1]);
  }
  const size_t nq = r.n_quantities();
  r.metal = g.metal;
  const size_t ia[4] = {ij - 2, ij - 1, ij, ij + 1};
  for (int k = 0; k < 4; ++k) r.age_gyr[k] = std::pow(10.0, g.log_age[ia[k]] - 9.0);
  // The quantities of one spectrum on `wave`.
  auto measure = [&](const std::vector<double>& wave, const std::vector<double>& f) -> Result<std::vector<double>> {
    std::vector<double> q(nq);
    double mag[5];
    for (int b = 0; b < 5; ++b) {
      const double m = MeanFluxDensity(filters[b], wave, f);
      if (!(m > 0)) return Status::Error("join continuity: band " + std::string(bands[b]) + " not covered");
      mag[b] = -2.5 * std::log10(m);
    }
    for (int b = 0; b + 1 < 5; ++b) q[b] = mag[b] - mag[b + 1];
    for (size_t k = 4; k < nq; ++k) {
      double s = 0;
      size_t n = 0;
      for (size_t i = 0; i < wave.size(); ++i) {
        if (wave[i] >= r.window_lo[k] && wave[i] <= r.window_hi[k]) {
          s += f[i];
          ++n;
        }
      }
      if (!(n > 0 && s > 0)) return Status::Error("join continuity: window " + r.quantities[k] + " not covered");
      q[k] = -2.5 * std::log10(s / static_cast<double>(n));
    }
    return q;
  };
  std::vector<double> f(g.n_wave());
  for (size_t im = 0; im < g.n_metal(); ++im) {
    std::vector<double> q[4];
    for (int k = 0; k < 4; ++k) {
      const float* s = g.Spectrum(im, ia[k]);
      f.assign(s, s + g.n_wave());
      CUBEFLOW_ASSIGN_OR_RETURN(q[k], measure(g.wave, f));
    }
    auto rate = [&](int a, int b, size_t k) {
      return (q[b][k] - q[a][k]) / ((g.log_age[ia[b]] - g.log_age[ia[a]]) / 0.1);
    };
    for (size_t k = 0; k < nq; ++k) {
      r.rate_young.push_back(rate(0, 1, k));
      r.rate_join.push_back(rate(1, 2, k));
      r.rate_old.push_back(rate(2, 3, k));
      r.step.push_back(q[2][k] - q[1][k]);
    }
    if (reference) {
      std::vector<double> fr(reference->n_wave());
      reference->Interpolate(g.log_age[ij], g.metal[im], fr.data());
      CUBEFLOW_ASSIGN_OR_RETURN(auto qr, measure(reference->wave, fr));
      for (size_t k = 0; k < nq; ++k) r.raw_offset.push_back(qr[k] - q[2][k]);
    }
  }
  return r;
}

Result<EmilesSetOptions> ResolveEmilesDirs(const SspSource& src) {
  const char* env = std::getenv("CUBEFLOW_DATA_DIR");
  const std::string data = env && *env ? env : "";
  EmilesSetOptions o;
  o.young_min_age_gyr = src.young_min_age_gyr;
  o.emiles_dir = !src.emiles_dir.empty() ? src.emiles_dir : (data.empty() ? "" : data + "/ssp/emiles_basti_kb");
  o.maraston_dir = !src.maraston_dir.empty() ? src.maraston_dir : (data.empty() ? "" : data + "/ssp/maraston05_kroupa");
  std::vector<std::string> missing;
  auto describe = [&](const std::string& dir, const std::string& what, const std::string& given,
                      const std::string& expected, const std::string& key) {
    if (IsDir(dir)) return;
    std::string m = what + " directory ";
    if (!given.empty()) m += "'" + given + "' (" + key + ") does not exist";
    else if (data.empty()) m += "not found (CUBEFLOW_DATA_DIR is not set and " + key + " is not given)";
    else m += "'" + dir + "' does not exist (CUBEFLOW_DATA_DIR=" + data + ")";
    missing.push_back(m + "; it should hold " + expected);
  };
  describe(o.emiles_dir, "the E-MILES", src.emiles_dir, "Ekb1.30Z*T*_iTp0.00_baseFe.fits", "ssp_emiles_dir");
  describe(o.maraston_dir, "the Maraston (2005)", src.maraston_dir, "sed.krz*.rhb and stellarmass.kroupa",
           "ssp_maraston_dir");
  if (!missing.empty()) {
    return Status::Error("SSP set 'emiles': " + Join(missing, "; ") +
                         ". Set CUBEFLOW_DATA_DIR to the folder that holds ssp/emiles_basti_kb and "
                         "ssp/maraston05_kroupa, or give both directories (--emiles-dir / --maraston-dir, "
                         "config keys ssp_emiles_dir / ssp_maraston_dir); `ssp: builtin` needs no data");
  }
  return o;
}

Result<std::shared_ptr<const SspGrid>> LoadSsp(const SspSource& src) {
  if (src.ssp.empty() || src.ssp == "builtin") return BuiltinSsp();
  if (src.ssp == "emiles") {
    CUBEFLOW_ASSIGN_OR_RETURN(auto o, ResolveEmilesDirs(src));
    CUBEFLOW_ASSIGN_OR_RETURN(auto g, LoadEmilesSet(o));
    return std::shared_ptr<const SspGrid>(g);
  }
  SspLoadOptions lo;
  lo.name_contains = src.name_contains;
  CUBEFLOW_ASSIGN_OR_RETURN(auto g, LoadSspDirectory(src.ssp, lo));
  return std::shared_ptr<const SspGrid>(g);
}

}  // namespace cubeflow::sim
