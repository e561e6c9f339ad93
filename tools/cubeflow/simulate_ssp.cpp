// `cubeflow simulate ssp`: SSP set summary, the emiles join report and figure. See simulate_ssp.hpp.
#include "simulate_ssp.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cubeflow/plot/figure.hpp"
#include "cubeflow/sim/filters.hpp"
#include "cubeflow/sim/ssp.hpp"

namespace cubeflow::tools {

namespace {

using namespace cubeflow::sim;
using plot::Figure;
using plot::Rgb;
using plot::XYPanel;

constexpr const char* kBands[] = {"F275W", "F336W", "F438W", "F555W", "F814W"};

double AgeGyr(const SspGrid& g, size_t ia) { return std::pow(10.0, g.log_age[ia] - 9.0); }

size_t NearestAge(const SspGrid& g, double age_gyr) {
  size_t best = 0;
  for (size_t ia = 1; ia < g.n_age(); ++ia)
    if (std::abs(g.log_age[ia] - std::log10(age_gyr * 1e9)) < std::abs(g.log_age[best] - std::log10(age_gyr * 1e9)))
      best = ia;
  return best;
}
size_t NearestMetal(const SspGrid& g, double mh) {
  size_t best = 0;
  for (size_t im = 1; im < g.n_metal(); ++im)
    if (std::abs(g.metal[im] - mh) < std::abs(g.metal[best] - mh)) best = im;
  return best;
}

std::vector<double> At(const SspGrid& g, size_t im, size_t ia) {
  const float* s = g.Spectrum(im, ia);
  return std::vector<double>(s, s + g.n_wave());
}

double WindowMean(const std::vector<double>& w, const std::vector<double>& f, double lo, double hi) {
  double s = 0;
  size_t n = 0;
  for (size_t i = 0; i < w.size(); ++i)
    if (w[i] >= lo && w[i] <= hi) { s += f[i]; ++n; }
  return n ? s / static_cast<double>(n) : std::nan("");
}

// Every `step`-th point in [lo, hi], flux divided by `norm`.
void Thin(const std::vector<double>& w, const std::vector<double>& f, double lo, double hi, size_t step, double norm,
          std::vector<double>* x, std::vector<double>* y, double offset = 0) {
  x->clear();
  y->clear();
  for (size_t i = 0; i < w.size(); i += step) {
    if (w[i] < lo || w[i] > hi) continue;
    x->push_back(w[i]);
    y->push_back(f[i] / norm + offset);
  }
}

// Lick-like index (A): integral of 1 - F / C over the band, C the line through the pseudo-continua.
double Index(const std::vector<double>& w, const std::vector<double>& f, double b0, double b1, double c0, double c1,
             double r0, double r1) {
  const double fb = WindowMean(w, f, c0, c1), fr = WindowMean(w, f, r0, r1);
  const double lb = 0.5 * (c0 + c1), lr = 0.5 * (r0 + r1);
  double s = 0;
  for (size_t i = 0; i + 1 < w.size(); ++i) {
    if (w[i] < b0 || w[i] >= b1) continue;
    const double c = fb + (fr - fb) * (w[i] - lb) / (lr - lb);
    s += (1.0 - f[i] / c) * (w[i + 1] - w[i]);
  }
  return s;
}
double Hbeta(const std::vector<double>& w, const std::vector<double>& f) {
  return Index(w, f, 4847.875, 4876.625, 4827.875, 4847.875, 4876.625, 4891.625);
}
double Halpha(const std::vector<double>& w, const std::vector<double>& f) {
  return Index(w, f, 6548, 6578, 6420, 6455, 6600, 6640);
}

std::vector<double> Colours(const SspGrid& g, const std::vector<double>& f, const std::vector<Filter>& filters) {
  std::vector<double> m;
  for (const auto& fl : filters) m.push_back(-2.5 * std::log10(MeanFluxDensity(fl, g.wave, f)));
  std::vector<double> c;
  for (size_t b = 0; b + 1 < m.size(); ++b) c.push_back(m[b] - m[b + 1]);
  return c;
}

void PrintSummary(const SspGrid& g, double load_s) {
  std::printf("SSP set '%s': %zu [M/H] x %zu ages x %zu px (%.1f-%.1f A), loaded in %.2f s\n", g.name.c_str(),
              g.n_metal(), g.n_age(), g.n_wave(), g.wave.front(), g.wave.back(), load_s);
  std::printf("  ages (Gyr):");
  for (size_t ia = 0; ia < g.n_age(); ++ia) std::printf(" %.4g", AgeGyr(g, ia));
  std::printf("\n  [M/H]:");
  for (double m : g.metal) std::printf(" %+.2f", m);
  std::printf("\n  FWHM (A):");
  for (double l : {2500.0, 3300.0, 4800.0, 7000.0, 8900.0, 9300.0})
    if (l >= g.wave.front() && l <= g.wave.back()) std::printf(" %.2f at %.0f,", g.FwhmAt(l), l);
  std::printf("\n  notes: %s\n", g.notes.c_str());
}

}  // namespace

int SimulateSspReport(const SspReportOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<const SspGrid> g;
  std::shared_ptr<SspGrid> m05;
  EmilesSetOptions eo;
  const bool emiles = o.ssp == "emiles";
  if (emiles) {
    SspSource src;
    src.ssp = "emiles";
    src.emiles_dir = o.emiles_dir;
    src.maraston_dir = o.maraston_dir;
    auto r = ResolveEmilesDirs(src);
    if (!r.ok()) { std::cerr << "cubeflow simulate ssp: " << r.status().message() << "\n"; return 2; }
    eo = *r;
    eo.join_age_gyr = o.join_age_gyr;
    eo.anchor_age_gyr = o.anchor_age_gyr;
    eo.young_min_age_gyr = o.young_min_age_gyr;
    auto s = LoadEmilesSet(eo);
    if (!s.ok()) { std::cerr << "cubeflow simulate ssp: " << s.status().message() << "\n"; return 2; }
    g = *s;
  } else {
    SspSource src;
    src.ssp = o.ssp;
    auto s = LoadSsp(src);
    if (!s.ok()) { std::cerr << "cubeflow simulate ssp: " << s.status().message() << "\n"; return 2; }
    g = *s;
  }
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  PrintSummary(*g, load_s);

  std::vector<Filter> filters;
  for (const char* b : kBands) filters.push_back(*BuiltinFilter(b));
  // HST band fluxes of every grid point (the photometry of the forward model).
  size_t ok = 0, total = 0;
  for (size_t im = 0; im < g->n_metal(); ++im)
    for (size_t ia = 0; ia < g->n_age(); ++ia) {
      const auto f = At(*g, im, ia);
      bool good = true;
      for (const auto& fl : filters) {
        const double v = MeanFluxDensity(fl, g->wave, f);
        good = good && std::isfinite(v) && v > 0;
      }
      ok += good;
      ++total;
    }
  std::printf("HST bands (built-in F275W..F814W): finite and > 0 at %zu of %zu grid points\n", ok, total);
  if (!g->ml_v.empty()) {
    std::printf("M/L_V (M_sun / L_sun,V; mass = stars + remnants) and surviving mass per initial M_sun:\n");
    std::printf("  [M/H]   0.1 Gyr          1 Gyr            10 Gyr\n");
    for (size_t im = 0; im < g->n_metal(); ++im) {
      std::printf("  %+.2f", g->metal[im]);
      for (double a : {0.1, 1.0, 10.0}) {
        const size_t k = im * g->n_age() + NearestAge(*g, a);
        std::printf("   %6.3f (%.3f)", g->ml_v[k], g->mass_star.empty() ? std::nan("") : g->mass_star[k]);
      }
      std::printf("\n");
    }
  }
  if (!emiles) return 0;

  auto mr = LoadMaraston05(eo.maraston_dir);
  if (!mr.ok()) { std::cerr << "cubeflow simulate ssp: " << mr.status().message() << "\n"; return 2; }
  m05 = mr->grid;
  std::printf("Maraston (2005, Kroupa universal IMF) M/L_V at the same ages and the ratio set / M05 (the revised "
              "IMF has more low-mass stars per unit mass):\n");
  for (size_t im = 0; im < g->n_metal(); ++im) {
    std::printf("  %+.2f", g->metal[im]);
    for (double a : {0.1, 1.0, 10.0}) {
      const double la = std::log10(a * 1e9);
      const double m = m05->InterpolateScalar(m05->ml_v, la, g->metal[im]);
      std::printf("   %6.3f (x%.2f)", m, g->ml_v[im * g->n_age() + NearestAge(*g, a)] / m);
    }
    std::printf("\n");
  }

  // Ionising photons, and what clamping them at the youngest spectrum would do.
  std::printf("Q_H (photons/s per initial M_sun): log10 at 1, 3, %.1f (youngest spectrum), 30 Myr; mean over 0-14 Myr "
              "(constant SFR) relative to clamping Q_H at the youngest spectrum\n",
              AgeGyr(*g, 0) * 1e3);
  for (size_t im = 0; im < g->n_metal(); ++im) {
    const double mh = g->metal[im];
    double mean = 0, clamped = 0;
    const int n = 1400;
    for (int k = 0; k < n; ++k) {
      const double la = std::log10((k + 0.5) * 14e6 / n);
      mean += g->QhAt(la, mh) / n;
      clamped += g->InterpolateScalar(g->q_h, la, mh) / n;
    }
    std::printf("  %+.2f   %.2f %.2f %.2f %.2f   x%.1f\n", mh, std::log10(g->QhAt(6.0, mh)),
                std::log10(g->QhAt(std::log10(3e6), mh)), std::log10(g->QhAt(g->log_age[0], mh)),
                std::log10(g->QhAt(std::log10(3e7), mh)), mean / clamped);
  }
  // Balmer absorption of the young part against E-MILES' peak and BC03's young models.
  std::shared_ptr<SspGrid> bc;
  {
    std::string bc03 = o.bc03_dir;
    if (bc03.empty()) {
      const char* env = std::getenv("CUBEFLOW_DATA_DIR");
      if (env && *env) bc03 = std::string(env) + "/ssp/bc03_mpajhu";
    }
    if (!bc03.empty() && std::filesystem::is_directory(bc03)) {
      auto b = LoadSspDirectory(bc03);
      if (b.ok()) bc = *b;
    }
  }
  std::printf("Balmer indices (A; H-beta Lick bands, H-alpha 6548-6578 A): emiles at 6.3 / 25 / 30 Myr and the "
              "largest over 0.1-2 Gyr%s\n",
              bc ? "; BC03 (nearest [M/H]) at 5 / 25 Myr" : "");
  for (size_t im = 0; im < g->n_metal(); ++im) {
    std::printf("  %+.2f  Hb", g->metal[im]);
    double peak_b = 0, peak_a = 0;
    for (size_t ia = 0; ia < g->n_age(); ++ia) {
      if (AgeGyr(*g, ia) < 0.1 || AgeGyr(*g, ia) > 2.0) continue;
      const auto f = At(*g, im, ia);
      peak_b = std::max(peak_b, Hbeta(g->wave, f));
      peak_a = std::max(peak_a, Halpha(g->wave, f));
    }
    for (double a : {0.0063, 0.025, 0.03}) std::printf(" %.2f", Hbeta(g->wave, At(*g, im, NearestAge(*g, a))));
    std::printf(" | %.2f", peak_b);
    if (bc) {
      const size_t bm = NearestMetal(*bc, g->metal[im]);
      std::printf(" | BC03 %+.2f %.2f %.2f", bc->metal[bm], Hbeta(bc->wave, At(*bc, bm, NearestAge(*bc, 0.005))),
                  Hbeta(bc->wave, At(*bc, bm, NearestAge(*bc, 0.025))));
    }
    std::printf("   Ha");
    for (double a : {0.0063, 0.025, 0.03}) std::printf(" %.2f", Halpha(g->wave, At(*g, im, NearestAge(*g, a))));
    std::printf(" | %.2f", peak_a);
    if (bc) {
      const size_t bm = NearestMetal(*bc, g->metal[im]);
      std::printf(" | BC03 %.2f %.2f", Halpha(bc->wave, At(*bc, bm, NearestAge(*bc, 0.005))),
                  Halpha(bc->wave, At(*bc, bm, NearestAge(*bc, 0.025))));
    }
    std::printf("\n");
  }

  auto jc = MeasureJoinContinuity(*g, eo.join_age_gyr, m05.get());
  if (!jc.ok()) { std::cerr << "cubeflow simulate ssp: " << jc.status().message() << "\n"; return 2; }
  const JoinContinuity& j = *jc;
  std::printf("Join at %.4g Gyr. step: change from %.4g to %.4g Gyr (colours in mag, window fluxes in %%); rates of "
              "change in mag per 0.1 dex of age: young side %.4g -> %.4g Gyr, across %.4g -> %.4g Gyr, old side "
              "%.4g -> %.4g Gyr; excess = |across| - max(|young|, |old|); direct = Maraston (2005) minus E-MILES at "
              "the join (what joining the two libraries directly would give; mag, or %% for windows)\n",
              j.age_gyr[2], j.age_gyr[1], j.age_gyr[2], j.age_gyr[0], j.age_gyr[1], j.age_gyr[1], j.age_gyr[2],
              j.age_gyr[2], j.age_gyr[3]);
  std::printf("  %-6s %-13s %8s %7s %7s %7s %7s %8s\n", "[M/H]", "quantity", "step", "young", "across", "old",
              "excess", "direct");
  double worst = -1e9, worst_direct_colour = 0, worst_direct_window = 0;
  size_t wm = 0, wq = 0;
  auto pct = [](double mag) { return 100.0 * (std::pow(10.0, -0.4 * mag) - 1.0); };
  for (size_t im = 0; im < j.metal.size(); ++im)
    for (size_t q = 0; q < j.n_quantities(); ++q) {
      const size_t k = im * j.n_quantities() + q;
      const bool window = j.window_hi[q] > 0;
      std::printf("  %+6.2f %-13s %7.3f%s %7.3f %7.3f %7.3f %7.3f %7.3f%s\n", j.metal[im], j.quantities[q].c_str(),
                  window ? pct(j.step[k]) : j.step[k], window ? "%" : " ", j.rate_young[k], j.rate_join[k],
                  j.rate_old[k], j.Excess(im, q), window ? pct(j.raw_offset[k]) : j.raw_offset[k], window ? "%" : " ");
      if (j.Excess(im, q) > worst) { worst = j.Excess(im, q); wm = im; wq = q; }
      if (window) worst_direct_window = std::max(worst_direct_window, std::abs(pct(j.raw_offset[k])));
      else worst_direct_colour = std::max(worst_direct_colour, std::abs(j.raw_offset[k]));
    }
  std::printf("  largest excess %.3f mag per 0.1 dex ([M/H] %+.2f, %s); a direct join would offset colours by up to "
              "%.2f mag and window fluxes by up to %.0f %%\n",
              worst, j.metal[wm], j.quantities[wq].c_str(), worst_direct_colour, worst_direct_window);

  // Fill beyond 8950 A: step of the mean flux from 8900-8950 A to 8952-9002 A.
  auto raw = LoadSspDirectory(eo.emiles_dir, SspLoadOptions{eo.name_contains, 0, 0});
  if (!raw.ok()) { std::cerr << "cubeflow simulate ssp: " << raw.status().message() << "\n"; return 2; }
  double fill_worst = 0, native_worst = 0;
  size_t n_fill = 0;
  for (size_t im = 0; im < (*raw)->n_metal(); ++im)
    for (size_t ia = 0; ia < (*raw)->n_age(); ++ia) {
      const auto r = At(**raw, im, ia);
      const size_t gi = NearestAge(*g, AgeGyr(**raw, ia));
      if (std::abs(g->log_age[gi] - (*raw)->log_age[ia]) > 1e-3) continue;
      const auto f = At(*g, im, gi);
      const double step = WindowMean(g->wave, f, 8952, 9002) / WindowMean(g->wave, f, 8900, 8950) - 1.0;
      if (r[r.size() - 1] == 0.0) {
        fill_worst = std::max(fill_worst, std::abs(step));
        ++n_fill;
      } else {
        native_worst = std::max(native_worst, std::abs(step));
      }
    }
  std::printf("Fill beyond 8950 A: %zu spectra; mean flux 8952-9002 A / 8900-8950 A - 1: largest |step| %.1f %% "
              "(native E-MILES spectra: %.1f %%)\n",
              n_fill, 100 * fill_worst, 100 * native_worst);

  // Resolution: E-MILES against MIUSCAT (FWHM 2.51 A, 3465-9469 A), when the data directory has it.
  {
    const char* env = std::getenv("CUBEFLOW_DATA_DIR");
    const std::string mu_dir = env && *env ? std::string(env) + "/ssp/miuscat_thin" : "";
    auto mu = mu_dir.empty() || !std::filesystem::is_directory(mu_dir) ? Result<std::shared_ptr<SspGrid>>(
                                                                             Status::Error("no MIUSCAT"))
                                                                       : LoadSspDirectory(mu_dir);
    if (mu.ok()) {
      std::printf("Resolution: E-MILES ([M/H] +0.06) against MIUSCAT ([M/H] 0.00, FWHM 2.51 A): extra Gaussian sigma "
                  "of E-MILES (A, > 0: broader), the FWHM it implies, the FWHM assumed (EmilesFwhm), residual\n");
      struct Win { double lo, hi, age; };
      for (const Win w : {Win{4800, 5600, 10}, Win{6000, 7000, 10}, Win{7500, 8000, 10}, Win{8400, 8900, 10},
                          Win{8400, 8900, 0.3}, Win{8960, 9400, 10}, Win{8960, 9400, 1}, Win{8960, 9400, 0.3}}) {
        std::vector<double> wave;
        for (double l = w.lo; l <= w.hi; l += 0.9) wave.push_back(l);
        auto on = [&](const SspGrid& s, double mh) {
          std::vector<double> f(s.n_wave()), out(wave.size());
          s.Interpolate(std::log10(w.age * 1e9), mh, f.data());
          for (size_t i = 0; i < wave.size(); ++i) {
            const size_t k = static_cast<size_t>(std::upper_bound(s.wave.begin(), s.wave.end(), wave[i]) - s.wave.begin());
            const double t = (wave[i] - s.wave[k - 1]) / (s.wave[k] - s.wave[k - 1]);
            out[i] = f[k - 1] + t * (f[k] - f[k - 1]);
          }
          return out;
        };
        double chi2 = 0;
        const double sig = RelativeBroadening(wave, on(**raw, 0.06), on(**mu, 0.0), &chi2);
        const double d = 2.3548 * sig;
        const double implied = std::sqrt(std::max(0.0, 2.51 * 2.51 + (sig >= 0 ? d * d : -d * d)));
        std::printf("  %5.0f-%5.0f A, %5.2f Gyr: sigma %+5.2f A -> FWHM %.2f A (assumed %.2f A), residual %.2g\n", w.lo,
                    w.hi, w.age, sig, implied, EmilesFwhm({0.5 * (w.lo + w.hi)})[0], chi2);
      }
    }
  }

  if (o.figure.empty()) return 0;
  // ---------------------------------------------------------------------------------------------
  const size_t im = NearestMetal(*g, 0.06);
  const double mh = g->metal[im];
  Figure fig(2, 2, 760, 520);
  char title[200];
  std::snprintf(title, sizeof title,
                "emiles SSP set: E-MILES from %.0f Myr, Maraston (2005) evolution below (anchor %.0f Myr); [M/H] = %+.2f",
                eo.join_age_gyr * 1e3, eo.anchor_age_gyr * 1e3, mh);
  fig.title = title;
  const auto& cyc = plot::colors::Cycle();
  const std::vector<double> young_ages = {0.0063, 0.008, 0.010, 0.015, 0.020};
  const std::vector<double> old_ages = {0.03, 0.05, 0.1};
  std::vector<double> x, y;
  {
    auto& p = fig.XY(0, 0);
    p.title = "Spectra around the join (per unit initial mass)";
    p.x.label = "wavelength (A)";
    p.y.label = "L_lambda (L_sun/A/M_sun)";
    p.y.log = true;
    size_t c = 0;
    for (double a : young_ages) {
      const auto f = At(*g, im, NearestAge(*g, a));
      Thin(g->wave, f, 1700, 10000, 8, 1.0, &x, &y);
      char lab[40];
      std::snprintf(lab, sizeof lab, "%.1f Myr (ext.)", a * 1e3);
      p.Line(x, y, {.color = cyc[c++ % cyc.size()], .width = 1.5, .dash = {6, 3}, .label = lab});
    }
    for (double a : old_ages) {
      const auto f = At(*g, im, NearestAge(*g, a));
      Thin(g->wave, f, 1700, 10000, 8, 1.0, &x, &y);
      char lab[40];
      std::snprintf(lab, sizeof lab, "%.0f Myr (E-MILES)", a * 1e3);
      p.Line(x, y, {.color = cyc[c++ % cyc.size()], .width = 1.5, .label = lab});
    }
    p.legend = plot::LegendPos::kUpperRight;
  }
  {
    auto& p = fig.XY(0, 1);
    p.title = "Line structure, 4800-5400 A (normalised, offset)";
    p.x.label = "wavelength (A)";
    p.y.label = "flux / mean(5300-5400 A) + offset";
    double off = 0;
    size_t c = 0;
    auto draw = [&](const SspGrid& s, size_t sm, size_t sa, const std::string& lab, bool dashed) {
      const auto f = At(s, sm, sa);
      const double nrm = WindowMean(s.wave, f, 5300, 5400);
      Thin(s.wave, f, 4800, 5400, 1, nrm, &x, &y, off);
      plot::Style st{.color = cyc[c++ % cyc.size()], .width = 1.5, .label = lab};
      if (dashed) st.dash = {6, 3};
      p.Line(x, y, st);
      off += 0.35;
    };
    for (double a : {0.0063, 0.020}) {
      char lab[60];
      std::snprintf(lab, sizeof lab, "emiles %.1f Myr (ext.)", a * 1e3);
      draw(*g, im, NearestAge(*g, a), lab, false);
    }
    draw(*g, im, NearestAge(*g, 0.03), "emiles 30 Myr (E-MILES)", false);
    if (bc) {
      const size_t bm = NearestMetal(*bc, mh);
      for (double a : {0.005, 0.025}) {
        char lab[60];
        std::snprintf(lab, sizeof lab, "BC03 %.0f Myr, [M/H] %+.2f", a * 1e3, bc->metal[bm]);
        draw(*bc, bm, NearestAge(*bc, a), lab, true);
      }
    }
    p.legend = plot::LegendPos::kLowerRight;
  }
  {
    auto& p = fig.XY(1, 0);
    p.title = "HST colours vs age: emiles (solid), Maraston 2005 (dashed)";
    p.x.label = "age (Gyr)";
    p.x.log = true;
    p.y.label = "colour (mag)";
    std::vector<std::vector<double>> cs(4), cm(4);
    std::vector<double> ages, mages;
    for (size_t ia = 0; ia < g->n_age() && AgeGyr(*g, ia) <= 1.001; ++ia) {
      ages.push_back(AgeGyr(*g, ia));
      const auto c = Colours(*g, At(*g, im, ia), filters);
      for (int k = 0; k < 4; ++k) cs[k].push_back(c[k]);
    }
    for (size_t ia = 0; ia < m05->n_age(); ++ia) {
      const double a = AgeGyr(*m05, ia);
      if (a < 0.006 || a > 1.001) continue;
      std::vector<double> f(m05->n_wave());
      m05->Interpolate(m05->log_age[ia], mh, f.data());
      mages.push_back(a);
      std::vector<double> m;
      for (const auto& fl : filters) m.push_back(-2.5 * std::log10(MeanFluxDensity(fl, m05->wave, f)));
      for (int k = 0; k < 4; ++k) cm[k].push_back(m[k] - m[k + 1]);
    }
    for (int k = 0; k < 4; ++k) {
      const std::string lab = std::string(kBands[k]) + "-" + kBands[k + 1];
      p.Line(ages, cs[k], {.color = cyc[k], .width = 2, .marker = plot::Marker::kCircle, .marker_size = 5, .label = lab});
      p.Line(mages, cm[k], {.color = cyc[k], .width = 1, .dash = {5, 4}});
    }
    p.VLine(eo.join_age_gyr, {.color = plot::colors::kGrey, .width = 1, .dash = {2, 3}, .label = "join"});
    p.legend = plot::LegendPos::kLowerRight;
  }
  {
    auto& p = fig.XY(1, 1);
    p.title = "Beyond 8950 A: E-MILES (zero there) filled from M05";
    p.x.label = "wavelength (A)";
    p.y.label = "flux / mean(8750-8940 A) + offset";
    const size_t gm = NearestMetal(*g, -0.96);
    size_t c = 0;
    double off = 0;
    for (double a : {0.03, 0.07, 0.15}) {
      const auto f = At(*g, gm, NearestAge(*g, a));
      const double nrm = WindowMean(g->wave, f, 8750, 8940);
      std::vector<double> mf(m05->n_wave());
      m05->Interpolate(std::log10(a * 1e9), g->metal[gm], mf.data());
      const double mnrm = WindowMean(m05->wave, mf, 8750, 8940);
      char lab[80];
      std::snprintf(lab, sizeof lab, "%.0f Myr [M/H] %+.2f", a * 1e3, g->metal[gm]);
      Thin(g->wave, f, 8400, 10000, 2, nrm, &x, &y, off);
      p.Line(x, y, {.color = cyc[c % cyc.size()], .width = 1.5, .label = lab});
      Thin(m05->wave, mf, 8400, 10000, 1, mnrm, &x, &y, off);
      p.Line(x, y, {.color = cyc[c % cyc.size()], .width = 1.5, .dash = {5, 4}, .label = c == 0 ? "M05, same age" : ""});
      ++c;
      off += 0.3;
    }
    p.VLine(8950, {.color = plot::colors::kGrey, .width = 1, .dash = {2, 3}, .label = "8950 A"});
    p.legend = plot::LegendPos::kUpperRight;
  }
  const Status st = fig.Save(o.figure);
  if (!st.ok()) { std::cerr << "cubeflow simulate ssp: " << st.message() << "\n"; return 1; }
  std::printf("wrote %s\n", o.figure.c_str());
  return 0;
}

}  // namespace cubeflow::tools
