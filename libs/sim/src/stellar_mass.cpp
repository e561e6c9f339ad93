// Stellar mass from an inferred history: model flux per unit mass with fitted dust.
#include "cubeflow/sim/stellar_mass.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "cubeflow/strings.hpp"

namespace cubeflow::sim {

Result<BinnedSfh> HistoryFromAgeBins(const TimeGrid& grid, const double* mass_frac, const double* zh, double z_sun,
                                     double t_universe) {
  // The part of each step after the Big Bang (a bin wholly before it keeps its full span).
  std::vector<double> span(grid.size());
  std::array<double, kNumAgeBins> duration{}, full{};
  for (size_t j = 0; j < grid.size(); ++j) {
    span[j] = std::max(0.0, std::min(grid.Hi(j), t_universe) - grid.Lo(j));
    duration[grid.bin[j]] += span[j];
    full[grid.bin[j]] += grid.Hi(j) - grid.Lo(j);
  }
  for (size_t j = 0; j < grid.size(); ++j)
    if (!(duration[grid.bin[j]] > 0)) span[j] = grid.Hi(j) - grid.Lo(j);
  for (int b = 0; b < kNumAgeBins; ++b)
    if (!(duration[b] > 0)) duration[b] = full[b];
  BinnedSfh h;
  h.mass.assign(grid.size(), 0.0);
  h.z.assign(grid.size(), z_sun);
  double total = 0;
  for (size_t j = 0; j < grid.size(); ++j) {
    const int b = grid.bin[j];
    const double f = std::isfinite(mass_frac[b]) && mass_frac[b] > 0 ? mass_frac[b] : 0.0;
    if (duration[b] > 0) h.mass[j] = f * span[j] / duration[b];
    total += h.mass[j];
    if (std::isfinite(zh[b])) h.z[j] = z_sun * std::pow(10.0, zh[b]);
  }
  if (!(total > 0)) return Status::Error("the history has no positive mass fraction in any age bin");
  for (double& m : h.mass) m /= total;
  return h;
}

Result<BinnedSfh> HistoryFromMassPercentiles(const TimeGrid& grid, const double* t_mass, size_t n, double t_universe,
                                             double mh, double z_sun) {
  // Cumulative mass against cosmic time: (0, 0), (t_k, (k+1)/(n+1)), (t_universe, 1).
  std::vector<double> t{0.0}, c{0.0};
  std::vector<double> sorted;
  for (size_t k = 0; k < n; ++k)
    if (std::isfinite(t_mass[k])) sorted.push_back(std::clamp(t_mass[k], 0.0, t_universe));
  if (sorted.size() < 2) return Status::Error("fewer than 2 finite mass-formation times");
  std::sort(sorted.begin(), sorted.end());
  const double step = 1.0 / static_cast<double>(n + 1);
  for (size_t k = 0; k < sorted.size(); ++k) {
    t.push_back(sorted[k]);
    c.push_back(static_cast<double>(k + 1) * step);
  }
  t.push_back(t_universe);
  c.push_back(1.0);
  auto cumulative = [&](double time) {
    if (time <= 0) return 0.0;
    if (time >= t_universe) return 1.0;
    size_t k = static_cast<size_t>(std::upper_bound(t.begin(), t.end(), time) - t.begin());
    k = std::clamp<size_t>(k, 1, t.size() - 1);
    const double dt = t[k] - t[k - 1];
    return dt > 0 ? c[k - 1] + (c[k] - c[k - 1]) * (time - t[k - 1]) / dt : c[k];
  };
  BinnedSfh h;
  h.mass.assign(grid.size(), 0.0);
  h.z.assign(grid.size(), z_sun * std::pow(10.0, std::isfinite(mh) ? mh : 0.0));
  double total = 0;
  for (size_t j = 0; j < grid.size(); ++j) {
    h.mass[j] = std::max(0.0, cumulative(t_universe - grid.Lo(j)) - cumulative(t_universe - grid.Hi(j)));
    total += h.mass[j];
  }
  if (!(total > 0)) return Status::Error("the mass-formation times give no mass on the time grid");
  for (double& m : h.mass) m /= total;
  return h;
}

namespace {

/// Normalised-model chi^2 at one diffuse optical depth, given the unattenuated old and young
/// spectra and the birth-cloud transmission of the young ones.
struct DustChi2 {
  const std::vector<float>& old_flux;
  const std::vector<float>& young_flux;
  const std::vector<float>& x;        // attenuation curve per pixel
  const std::vector<double>& t_bc;    // birth-cloud transmission per pixel
  const std::vector<size_t>& pixels;  // usable pixels
  const double* flux;
  const double* variance;
  size_t norm_a, norm_b;

  double Intrinsic(size_t i) const { return old_flux[i] + t_bc[i] * young_flux[i]; }
  double WindowMean(double tau) const {
    double s = 0;
    for (size_t i = norm_a; i < norm_b; ++i) s += std::exp(-tau * x[i]) * Intrinsic(i);
    return s / static_cast<double>(norm_b - norm_a);
  }
  /// chi^2 with the diffuse transmission per pixel given (`trans[i]` = exp(-tau x[i])).
  double WithTransmission(const std::vector<double>& trans) const {
    double w = 0;
    for (size_t i = norm_a; i < norm_b; ++i) w += trans[i] * Intrinsic(i);
    w /= static_cast<double>(norm_b - norm_a);
    if (!(w > 0)) return std::numeric_limits<double>::infinity();
    double chi2 = 0;
    for (size_t i : pixels) {
      const double r = flux[i] - trans[i] * Intrinsic(i) / w;
      chi2 += r * r / variance[i];
    }
    return chi2;
  }
  double operator()(double tau) const {
    std::vector<double> trans(x.size());
    for (size_t i = 0; i < x.size(); ++i) trans[i] = std::exp(-tau * x[i]);
    return WithTransmission(trans);
  }
};

}  // namespace

Result<LightToMass> FitLightToMass(const ForwardModel& model, const BinnedSfh& history, double z_gas,
                                   const double* flux, const double* variance, const uint8_t* mask, size_t n,
                                   const LightToMassOptions& options) {
  const std::vector<double>& wave = model.wave();
  if (n != wave.size())
    return Status::Error("the spectrum has " + std::to_string(n) + " pixels, the model grid " +
                         std::to_string(wave.size()) + ": give spectra on the inference model's grid");
  if (history.mass.size() != model.time_grid().size())
    return Status::Error("the history has " + std::to_string(history.mass.size()) + " time steps, the model " +
                         std::to_string(model.time_grid().size()));
  const DustPrior& dust = model.config().dust;
  LightToMass out;
  out.tau_bc = options.tau_bc >= 0 ? options.tau_bc : std::sqrt(dust.tau_bc_min * dust.tau_bc_max);

  // Unattenuated spectra of the steps that get birth-cloud dust and of the rest (Render is linear
  // in the masses and applies no attenuation at zero optical depth).
  BinnedSfh young = history, old = history;
  const ForwardModel::Tables tables = model.tables();
  for (size_t j = 0; j < history.mass.size(); ++j) (j < tables.young_steps ? old : young).mass[j] = 0.0;
  Rendered ry, ro;
  model.Render(young, DustParams{}, z_gas, &ry);
  model.Render(old, DustParams{}, z_gas, &ro);
  const std::vector<float>& x = tables.dust_x;
  std::vector<double> t_bc(n, 1.0);
  if (dust.enabled)
    for (size_t i = 0; i < n; ++i) t_bc[i] = std::exp(-out.tau_bc * x[i]);

  std::vector<size_t> pixels;
  const std::vector<double>& lines = NebularLineWavelengths();
  for (size_t i = 0; i < n; ++i) {
    if (mask != nullptr && mask[i] != 0) continue;
    if (!std::isfinite(flux[i]) || !(variance[i] > 0) || !std::isfinite(variance[i])) continue;
    bool near_line = false;
    for (double l : lines) near_line = near_line || std::abs(wave[i] - l) < options.line_halfwidth;
    if (!near_line) pixels.push_back(i);
  }
  out.n_pixels = static_cast<int64_t>(pixels.size());
  if (pixels.size() < 20)
    return Status::Error("only " + std::to_string(pixels.size()) +
                         " usable pixels (unmasked, finite, positive variance, away from emission lines)");
  const DustChi2 chi2{ro.flux, ry.flux, x, t_bc, pixels, flux, variance, tables.norm_first, tables.norm_end};

  double best_tau = 0, best = chi2(0.0);
  if (dust.enabled) {
    const int steps = std::max(1, static_cast<int>(std::ceil(options.tau_max / options.tau_step)));
    std::vector<double> c(static_cast<size_t>(steps) + 1);
    size_t k_best = 0;
    const double h = options.tau_max / steps;
    // exp(-k h x) by repeated multiplication: one exp per pixel for the whole grid.
    std::vector<double> trans(n, 1.0), factor(n);
    for (size_t i = 0; i < n; ++i) factor[i] = std::exp(-h * x[i]);
    for (int k = 0; k <= steps; ++k) {
      if (k > 0)
        for (size_t i = 0; i < n; ++i) trans[i] *= factor[i];
      c[static_cast<size_t>(k)] = chi2.WithTransmission(trans);
      if (c[static_cast<size_t>(k)] < c[k_best]) k_best = static_cast<size_t>(k);
    }
    best_tau = h * static_cast<double>(k_best);
    best = c[k_best];
    out.at_bound = k_best == 0 || k_best == static_cast<size_t>(steps);
    // Parabola through the best grid point and its neighbours (one-sided at a bound).
    const size_t k0 = std::clamp<size_t>(k_best, 1, static_cast<size_t>(steps) - 1);
    const double a = c[k0 - 1], b = c[k0], d = c[k0 + 1];
    const double curv = (a - 2 * b + d) / (h * h);  // d2 chi2 / d tau2
    if (!out.at_bound && curv > 0) {
      const double shift = 0.5 * h * (a - d) / (a - 2 * b + d);
      const double tau = best_tau + std::clamp(shift, -h, h);
      const double v = chi2(tau);
      if (v < best) { best = v; best_tau = tau; }
    }
    const double dof = std::max<double>(1.0, static_cast<double>(pixels.size()) - 1.0);
    const double scale = std::max(1.0, best / dof);
    out.tau_ism_err = curv > 0 ? std::sqrt(2.0 * scale / curv) : options.tau_max;
  }
  out.tau_ism = best_tau;
  out.chi2_reduced = best / std::max<double>(1.0, static_cast<double>(pixels.size()) - 1.0);
  out.window_flux = chi2.WindowMean(best_tau);
  if (!(out.window_flux > 0)) return Status::Error("the history's model spectrum has no flux in the normalisation window");
  const double dtau = 1e-3;
  out.dlog10_window_dtau =
      (std::log10(chi2.WindowMean(best_tau + dtau)) - std::log10(chi2.WindowMean(std::max(0.0, best_tau - dtau)))) /
      (best_tau + dtau - std::max(0.0, best_tau - dtau));
  out.living_fraction = model.LivingFraction(history);
  return out;
}

}  // namespace cubeflow::sim
