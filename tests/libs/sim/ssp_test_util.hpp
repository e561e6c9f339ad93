#pragma once
// Helpers shared by the sim_ssp tests: data location, Lick-like indices, colours.

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cubeflow/sim/filters.hpp"

namespace cubeflow::sim::testing {

/// $CUBEFLOW_DATA_DIR, else the compile-time shared/data directory.
inline std::string DataDir() {
  if (const char* env = std::getenv("CUBEFLOW_DATA_DIR"); env && *env) return env;
  return CUBEFLOW_TEST_DATA_DIR;
}

inline bool HasDir(const std::string& d) { return std::filesystem::is_directory(d); }

/// Linear interpolation of (wave, flux) at l.
inline double Interp(const std::vector<double>& w, const std::vector<double>& f, double l) {
  if (l <= w.front()) return f.front();
  if (l >= w.back()) return f.back();
  size_t lo = 0, hi = w.size() - 1;
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    (w[mid] <= l ? lo : hi) = mid;
  }
  const double t = (l - w[lo]) / (w[hi] - w[lo]);
  return f[lo] + t * (f[hi] - f[lo]);
}

/// Mean of the (linearly interpolated) flux over [a, b], 0.05 A steps.
inline double BandMean(const std::vector<double>& w, const std::vector<double>& f, double a,
                       double b) {
  const int n = static_cast<int>(std::ceil((b - a) / 0.05));
  double s = 0;
  for (int i = 0; i < n; ++i) s += Interp(w, f, a + (i + 0.5) * (b - a) / n);
  return s / n;
}

/// Lick-like atomic index (Angstrom): integral of 1 - F / C over the band, C the straight line
/// through the mean fluxes of the two pseudo-continua at their midpoints.
inline double LickIndex(const std::vector<double>& w, const std::vector<double>& f, double b0,
                        double b1, double c0, double c1, double r0, double r1) {
  const double fb = BandMean(w, f, c0, c1), fr = BandMean(w, f, r0, r1);
  const double lb = 0.5 * (c0 + c1), lr = 0.5 * (r0 + r1);
  const int n = static_cast<int>(std::ceil((b1 - b0) / 0.05));
  double s = 0;
  for (int i = 0; i < n; ++i) {
    const double l = b0 + (i + 0.5) * (b1 - b0) / n;
    const double c = fb + (fr - fb) * (l - lb) / (lr - lb);
    s += (1.0 - Interp(w, f, l) / c) * (b1 - b0) / n;
  }
  return s;
}

inline double Hbeta(const std::vector<double>& w, const std::vector<double>& f) {
  return LickIndex(w, f, 4847.875, 4876.625, 4827.875, 4847.875, 4876.625, 4891.625);
}
inline double Mgb(const std::vector<double>& w, const std::vector<double>& f) {
  return LickIndex(w, f, 5160.125, 5192.625, 5142.625, 5161.375, 5191.375, 5206.375);
}

/// Fraction of the bolometric luminosity per Angstrom of a blackbody (the "Sun" reference).
inline double PlanckFraction(double l_angstrom, double t) {
  const double h = 6.62607015e-27, c = 2.99792458e10, k = 1.380649e-16, sb = 5.670374419e-5;
  const double l = l_angstrom * 1e-8;
  const double b = 2 * h * c * c / std::pow(l, 5) / std::expm1(h * c / (l * k * t));
  return M_PI * b / (sb * std::pow(t, 4)) * 1e-8;
}

/// Luminosity in a band relative to a 5772 K blackbody of 1 L_sun ("solar" units of that band).
inline double BandLuminositySolar(const Filter& band, const std::vector<double>& w,
                                  const std::vector<double>& f) {
  std::vector<double> sun(w.size());
  for (size_t i = 0; i < w.size(); ++i) sun[i] = PlanckFraction(w[i], 5772.0);
  return MeanFluxDensity(band, w, f) / MeanFluxDensity(band, w, sun);
}

/// B - V colour relative to the blackbody Sun, offset so that the Sun has B - V = 0.65.
inline double BMinusV(const std::vector<double>& w, const std::vector<double>& f) {
  const Filter b = *BuiltinFilter("B"), v = *BuiltinFilter("V");
  return -2.5 * std::log10(BandLuminositySolar(b, w, f) / BandLuminositySolar(v, w, f)) + 0.65;
}

}  // namespace cubeflow::sim::testing
