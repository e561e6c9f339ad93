// The built-in semi-analytic SSP model. Synthetic, not for science: see docs/builtin_ssp.md.
//
// Each SSP spectrum (age t, [M/H] m) is a luminosity-weighted sum of a few stellar components
// (upper and lower main sequence near the turnoff, giants, cool M giants, blue horizontal
// branch). Each component is a Planck spectrum normalised to unit bolometric luminosity,
// multiplied by exp(-tau(lambda)), where tau is a linear combination of fixed wavelength
// "basis" shapes (line groups, molecular bands, continuum blanketing, Balmer break) with
// coefficients that are smooth functions of the component temperature and of [M/H].
// The total is scaled by a bolometric luminosity per unit initial mass L(t) ~ t^-0.8.

#include <array>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <vector>

#include "cubeflow/sim/filters.hpp"
#include "cubeflow/sim/ssp.hpp"

namespace cubeflow::sim {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kH = 6.62607015e-27;       // erg s
constexpr double kC = 2.99792458e10;        // cm/s
constexpr double kK = 1.380649e-16;         // erg/K
constexpr double kSigmaSb = 5.670374419e-5;  // erg/s/cm2/K4
constexpr double kLsun = 3.828e33;          // erg/s
constexpr double kInstrumentFwhm = 2.5;     // Angstrom
constexpr double kWaveMin = 1500.0, kWaveMax = 10000.0, kWaveStep = 1.0;

// Fraction of the bolometric luminosity per Angstrom of a blackbody at wavelength l (A).
double PlanckPerAngstrom(double l_angstrom, double t) {
  const double l = l_angstrom * 1e-8;
  const double x = kH * kC / (l * kK * t);
  if (x > 700) return 0.0;
  const double b = 2.0 * kH * kC * kC / std::pow(l, 5) / std::expm1(x);  // erg/s/cm2/cm/sr
  return kPi * b / (kSigmaSb * std::pow(t, 4)) * 1e-8;
}

// H-ionising photons per erg of bolometric luminosity of a blackbody at temperature t.
double IonisingPhotonsPerErg(double t) {
  double s = 0;
  for (double l = 10.0; l < 911.76; l += 0.5) {
    s += PlanckPerAngstrom(l + 0.25, t) * ((l + 0.25) * 1e-8) / (kH * kC) * 0.5;
  }
  return s;
}

double Clamp(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }
double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Piecewise-linear table lookup, clamped.
template <size_t N>
double Table(const std::array<std::array<double, 2>, N>& t, double x) {
  if (x <= t[0][0]) return t[0][1];
  for (size_t i = 1; i < N; ++i) {
    if (x <= t[i][0]) {
      const double f = (x - t[i - 1][0]) / (t[i][0] - t[i - 1][0]);
      return t[i - 1][1] + f * (t[i][1] - t[i - 1][1]);
    }
  }
  return t[N - 1][1];
}

// ---- Wavelength basis of the optical depth ------------------------------------------------
enum Basis {
  kBalmerCore,   // Balmer series, Gaussian cores (weights per line, sum of EWs)
  kBalmerWing,   // Balmer series, Lorentzian wings
  kCaHK,         // Ca II H & K (Gaussian + Lorentzian)
  kMetals,       // atomic metal lines (Mg b, Fe, Ca I, Ca II triplet, ...)
  kNaD,          // Na I D doublet
  kMolecular,    // G band (CH), MgH, C2 4668: broad bands of cool stars
  kTiO,          // TiO band heads (M giants)
  kForest,       // weak-line forest (deterministic pseudo-random)
  kHotLines,     // He I, He II, C IV, Si IV (hot stars)
  kUvCool,       // Mg II 2800, Mg I 2852, Fe II 2600 blends (cool stars)
  kBreak4000,    // step below 4000 A (metal blanketing, D4000)
  kUvBlanket,    // rising opacity below 3500 A
  kBlueBlanket,  // gentle opacity rising below 5500 A
  kBalmerBreak,  // step below 3646 A (A/B stars)
  kNumBasis
};

struct BasisSet {
  std::vector<double> wave;
  std::array<std::vector<double>, kNumBasis> shape;
};

void AddGaussian(const std::vector<double>& w, std::vector<double>* out, double centre,
                 double ew, double sigma) {
  const double reach = 5.0 * sigma;
  const double norm = ew / (sigma * std::sqrt(2.0 * kPi));
  const int64_t i0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor((centre - reach - w[0]) / kWaveStep)));
  const int64_t i1 = std::min<int64_t>(static_cast<int64_t>(w.size()) - 1,
                                       static_cast<int64_t>(std::ceil((centre + reach - w[0]) / kWaveStep)));
  for (int64_t i = i0; i <= i1; ++i) {
    const double d = (w[static_cast<size_t>(i)] - centre) / sigma;
    (*out)[static_cast<size_t>(i)] += norm * std::exp(-0.5 * d * d);
  }
}

void AddLorentzian(const std::vector<double>& w, std::vector<double>* out, double centre,
                   double ew, double gamma, double reach) {
  // Truncated at +-reach and renormalised to the requested EW.
  const int64_t i0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor((centre - reach - w[0]) / kWaveStep)));
  const int64_t i1 = std::min<int64_t>(static_cast<int64_t>(w.size()) - 1,
                                       static_cast<int64_t>(std::ceil((centre + reach - w[0]) / kWaveStep)));
  const double frac = 2.0 / kPi * std::atan(reach / gamma);
  const double norm = ew / (kPi * gamma * frac);
  for (int64_t i = i0; i <= i1; ++i) {
    const double d = (w[static_cast<size_t>(i)] - centre) / gamma;
    (*out)[static_cast<size_t>(i)] += norm / (1.0 + d * d);
  }
}

BasisSet MakeBasis() {
  BasisSet b;
  const size_t n = static_cast<size_t>(std::llround((kWaveMax - kWaveMin) / kWaveStep)) + 1;
  b.wave.resize(n);
  for (size_t i = 0; i < n; ++i) b.wave[i] = kWaveMin + kWaveStep * static_cast<double>(i);
  for (auto& s : b.shape) s.assign(n, 0.0);
  const auto& w = b.wave;
  const double s_instr = kInstrumentFwhm / 2.3548200450309493;
  auto sig = [&](double intrinsic) { return std::sqrt(s_instr * s_instr + intrinsic * intrinsic); };
  // The Gaussian AddGaussian is a density; at 1-A sampling, sum * step = EW.

  // Balmer series (air wavelengths) with relative strengths.
  const std::array<std::array<double, 2>, 11> balmer = {{{6562.80, 0.85}, {4861.33, 1.0},
                                                         {4340.47, 1.0}, {4101.74, 1.0},
                                                         {3970.07, 0.9}, {3889.05, 0.8},
                                                         {3835.38, 0.7}, {3797.90, 0.6},
                                                         {3770.63, 0.5}, {3750.15, 0.4},
                                                         {3734.37, 0.35}}};
  for (const auto& [l, s] : balmer) {
    AddGaussian(w, &b.shape[kBalmerCore], l, s, sig(1.2));
    AddLorentzian(w, &b.shape[kBalmerWing], l, s, 6.0, 150.0);
  }
  AddGaussian(w, &b.shape[kCaHK], 3933.66, 0.55, sig(1.0));
  AddLorentzian(w, &b.shape[kCaHK], 3933.66, 0.45, 3.0, 60.0);
  AddGaussian(w, &b.shape[kCaHK], 3968.47, 0.45, sig(1.0));
  AddLorentzian(w, &b.shape[kCaHK], 3968.47, 0.35, 3.0, 60.0);
  // Atomic metal lines: (lambda, EW for a solar-metallicity K giant).
  const std::array<std::array<double, 2>, 34> metals = {{
      {4045.81, 1.2}, {4063.60, 0.7}, {4226.73, 1.8}, {4271.76, 0.8}, {4325.76, 0.8},
      {4383.55, 1.5}, {4404.75, 0.9}, {4415.12, 0.6}, {4531.15, 0.5}, {4957.60, 0.5},
      {5015.0, 0.6},  {5167.32, 1.1}, {5172.68, 1.5}, {5183.60, 1.9}, {5227.19, 0.6},
      {5269.54, 1.3}, {5328.04, 0.9}, {5335.0, 0.5},  {5371.49, 0.6}, {5405.77, 0.7},
      {5446.92, 0.5}, {5528.40, 0.4}, {5709.38, 0.4}, {5782.13, 0.4}, {6102.72, 0.4},
      {6122.22, 0.6}, {6162.17, 0.7}, {6439.08, 0.4}, {6494.98, 0.6}, {6717.68, 0.3},
      {8498.02, 1.2}, {8542.09, 3.0}, {8662.14, 2.5}, {8806.76, 0.6},
  }};
  for (const auto& [l, s] : metals) AddGaussian(w, &b.shape[kMetals], l, s, sig(0.4));
  AddGaussian(w, &b.shape[kNaD], 5889.95, 1.6, sig(0.5));
  AddGaussian(w, &b.shape[kNaD], 5895.92, 1.3, sig(0.5));
  AddGaussian(w, &b.shape[kMolecular], 4300.0, 5.0, 9.0);    // G band (CH)
  AddGaussian(w, &b.shape[kMolecular], 4668.0, 3.0, 9.0);    // C2 (Lick Fe4668)
  AddGaussian(w, &b.shape[kMolecular], 5150.0, 4.0, 30.0);   // MgH
  // TiO band heads: sharp onset at the head, absorption fading redwards.
  const std::array<std::array<double, 3>, 7> tio = {{{4954.0, 0.3, 60.0},
                                                     {5167.0, 0.3, 60.0},
                                                     {5448.0, 0.35, 80.0},
                                                     {5847.0, 0.5, 90.0},
                                                     {6159.0, 1.0, 120.0},
                                                     {6651.0, 0.6, 100.0},
                                                     {7054.0, 1.4, 150.0}}};
  for (size_t i = 0; i < n; ++i) {
    double t = 0;
    for (const auto& [head, depth, scale] : tio) {
      const double d = w[i] - head;
      if (d < -20 || d > 8 * scale) continue;
      t += depth * Sigmoid(d / 1.5) * std::exp(-std::max(d, 0.0) / scale);
    }
    // 7589 head and beyond (with the 7670 VO/TiO complex), merged.
    const double d = w[i] - 7589.0;
    if (d > -20) t += 0.8 * Sigmoid(d / 1.5) * std::exp(-std::max(d, 0.0) / 250.0);
    b.shape[kTiO][i] = t;
  }
  // Weak-line forest: deterministic LCG; density rising to the blue.
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto uniform = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state >> 11) * (1.0 / 9007199254740992.0);
  };
  for (int k = 0; k < 3000; ++k) {
    // lambda with density ~ lambda^-2 between 1700 and 9500 A.
    const double u = uniform();
    const double a = 1.0 / 1700.0, c = 1.0 / 9500.0;
    const double l = 1.0 / (a + u * (c - a));
    const double ew = -0.09 * std::log(1.0 - uniform()) * std::sqrt(4500.0 / l);
    AddGaussian(w, &b.shape[kForest], l, ew, sig(0.2));
  }
  const std::array<std::array<double, 2>, 7> hot = {{{4471.48, 0.8}, {4026.19, 0.6},
                                                     {5875.62, 0.6}, {4921.93, 0.4},
                                                     {4685.7, 0.5},  {1549.0, 6.0},
                                                     {1400.0, 5.0}}};
  for (const auto& [l, s] : hot) AddGaussian(w, &b.shape[kHotLines], l, s, sig(1.5));
  AddGaussian(w, &b.shape[kUvCool], 2796.35, 6.0, sig(1.0));
  AddGaussian(w, &b.shape[kUvCool], 2803.53, 5.0, sig(1.0));
  AddGaussian(w, &b.shape[kUvCool], 2852.13, 3.0, sig(0.6));
  AddGaussian(w, &b.shape[kUvCool], 2600.0, 20.0, 25.0);
  AddGaussian(w, &b.shape[kUvCool], 2380.0, 15.0, 25.0);
  for (size_t i = 0; i < n; ++i) {
    const double l = w[i];
    b.shape[kBreak4000][i] = Sigmoid((4000.0 - l) / 12.0);
    b.shape[kUvBlanket][i] = l < 3500.0 ? std::pow(3500.0 / l, 3) - 1.0 : 0.0;
    b.shape[kBlueBlanket][i] = l < 5500.0 ? std::pow(5500.0 / l, 2) - 1.0 : 0.0;
    b.shape[kBalmerBreak][i] = Sigmoid((3660.0 - l) / 15.0);
  }
  return b;
}

// ---- Stellar components ---------------------------------------------------------------------
struct Component {
  double temp;  // K
  double frac;  // fraction of the bolometric luminosity
  bool giant;
};

// Balmer EW (Hbeta-like, Angstrom) of a star of temperature T.
double BalmerEw(double t) {
  static const std::array<std::array<double, 2>, 12> kTab = {{{3.55, 0.3}, {3.62, 0.8},
                                                              {3.68, 1.5}, {3.74, 2.5},
                                                              {3.80, 4.5}, {3.88, 9.5},
                                                              {3.97, 14.0}, {4.05, 13.0},
                                                              {4.15, 10.0}, {4.30, 6.0},
                                                              {4.45, 3.0}, {4.65, 2.0}}};
  return Table(kTab, std::log10(t));
}

// Turnoff mass (M_sun) at log10(age/yr), from the main-sequence lifetime
// log10(t_MS / yr) = 10 - 3.0 log10(M) + 0.55 log10(M)^2 (flattening for massive stars).
double TurnoffMass(double log_age) {
  const double disc = std::max(9.0 - 2.2 * (10.0 - log_age), 0.0);
  return Clamp(std::pow(10.0, (3.0 - std::sqrt(disc)) / 1.1), 0.7, 80.0);
}

// Turnoff temperature (K) at log age and [M/H].
double TurnoffTemp(double log_age, double mh) {
  const double m = TurnoffMass(log_age);
  double t = 0;
  if (m < 1.0) {
    t = 5900.0 * std::pow(m, 0.25);
  } else if (m < 3.0) {
    t = 5900.0 * std::pow(m, 0.62);
  } else {
    t = 5900.0 * std::pow(3.0, 0.62) * std::pow(m / 3.0, 0.5);
  }
  t *= std::pow(10.0, -0.04 * mh);  // metal-rich turnoffs are cooler
  return Clamp(t, 4800.0, 48000.0);
}

// Suppression of the Lyman continuum of stellar atmospheres relative to a blackbody
// (negligible for O stars, ~1e-3 for mid-B stars).
double LymanSuppression(double t) { return std::pow(10.0, -3.0 * Clamp((36000.0 - t) / 20000.0, 0.0, 1.0)); }

std::vector<Component> Components(double x, double mh) {
  std::vector<Component> c;
  const double t_to = TurnoffTemp(x, mh);
  // Giants (RGB/clump/AGB; red supergiants when young): cooler at high [M/H].
  // Core-He-burning giants of intermediate ages are warmer (blue loops, clump).
  double t_g = 4500.0 * std::pow(10.0, -0.06 * mh) * (1.0 + 0.1 * Clamp(9.0 - x, 0.0, 1.2));
  if (x < 7.6) t_g = Clamp(t_g - 900.0 * (7.6 - x), 3900.0, 6000.0);  // red supergiants
  double f_g = 0.12 + 0.46 * Sigmoid((x - 8.95) / 0.22);
  f_g *= Clamp((x - 6.75) / 0.35, 0.0, 1.0);
  const double f_m = 0.08 * Sigmoid((x - 9.1) / 0.2) * std::pow(10.0, 0.6 * mh);
  const double f_hb = 0.07 * Sigmoid((x - 9.85) / 0.08) * Sigmoid((-0.9 - mh) / 0.15);
  const double f_ms = 1.0 - f_g - f_m - f_hb;
  c.push_back({t_to, 0.7 * f_ms, false});
  c.push_back({std::max(0.72 * t_to, 4200.0), 0.3 * f_ms, false});
  c.push_back({t_g, f_g, true});
  if (f_m > 1e-4) c.push_back({3500.0, f_m, true});
  if (f_hb > 1e-4) c.push_back({9000.0, f_hb, false});
  return c;
}

// Bolometric luminosity per M_sun of initial mass (L_sun).
double BolometricLuminosity(double x, double mh) {
  const double t_gyr = std::pow(10.0, x - 9.0);
  // ~t^-0.8 after 0.1 Gyr; much brighter when the most massive stars are alive.
  return 1.25 * std::pow(t_gyr, -0.8) * (1.0 + std::pow(t_gyr / 0.03, -1.5)) *
         std::pow(10.0, -0.1 * mh);
}

// Surviving mass fraction (stars + remnants) per unit initial mass.
double MassStar(double x) {
  return 1.0 - 0.035 * std::log(std::max(std::pow(10.0, x), 3e6) / 3e6);
}

// Optical-depth coefficients of a component.
std::array<double, kNumBasis> Coefficients(const Component& c, double mh) {
  std::array<double, kNumBasis> k{};
  const double t = c.temp;
  const double cool = Clamp((7200.0 - t) / 2700.0, 0.0, 1.4);  // 0 hot, 1 at 4500 K
  const double z = std::pow(10.0, 0.35 * mh);
  const double balmer = BalmerEw(t);
  const double eta = Clamp((std::log10(t) - 3.70) / 0.25, 0.15, 0.5);  // wing fraction
  k[kBalmerCore] = balmer * (1.0 - eta);
  k[kBalmerWing] = balmer * eta;
  k[kCaHK] = 14.0 * Clamp((10500.0 - t) / 6000.0, 0.0, 1.2) * std::pow(10.0, 0.25 * mh);
  k[kMetals] = cool * z * (c.giant ? 1.1 : 0.9);
  k[kNaD] = cool * std::pow(10.0, 0.5 * mh) * (c.giant ? 0.9 : 1.2);
  k[kMolecular] = cool * cool * z * (c.giant ? 1.2 : 0.6);
  k[kTiO] = 1.8 * std::pow(Clamp((4300.0 - t) / 800.0, 0.0, 1.5), 1.5) * std::pow(10.0, 0.3 * mh);
  k[kForest] = cool * z * 1.5 + 0.15 * std::pow(10.0, 0.2 * mh);
  k[kHotLines] = Clamp((t - 11000.0) / 10000.0, 0.0, 1.0);
  k[kUvCool] = Clamp((8000.0 - t) / 3000.0, 0.0, 1.3) * std::pow(10.0, 0.3 * mh);
  const double blanket = Clamp((8500.0 - t) / 3500.0, 0.0, 1.4) * std::pow(10.0, 0.3 * mh);
  k[kBreak4000] = 0.45 * blanket;
  k[kUvBlanket] = 0.9 * blanket;
  k[kBlueBlanket] = 0.22 * blanket;
  k[kBalmerBreak] = 0.9 * std::exp(-std::pow((std::log10(t) - 3.98) / 0.13, 2));
  return k;
}

std::shared_ptr<const SspGrid> Build() {
  auto g = std::make_shared<SspGrid>();
  const BasisSet basis = MakeBasis();
  g->name = "builtin";
  g->synthetic = true;
  g->fwhm = kInstrumentFwhm;
  g->wave = basis.wave;
  const int n_age = 40;
  const double x0 = std::log10(6e6), x1 = std::log10(14e9);
  for (int i = 0; i < n_age; ++i) g->log_age.push_back(x0 + (x1 - x0) * i / (n_age - 1));
  g->metal = {-1.5, -1.0, -0.7, -0.4, -0.2, 0.0, 0.2, 0.4};
  const size_t nw = g->wave.size(), na = g->n_age(), nm = g->n_metal();
  g->flux.assign(nm * na * nw, 0.0f);
  g->ml_v.resize(nm * na);
  g->mass_star.resize(nm * na);
  g->q_h.resize(nm * na);
  const Filter v_band = *BuiltinFilter("JOHNSON_V");
  std::vector<double> sun(nw), spec(nw), tau(nw);
  for (size_t i = 0; i < nw; ++i) sun[i] = PlanckPerAngstrom(g->wave[i], 5772.0);
  const double sun_v = MeanFluxDensity(v_band, g->wave, sun);
  for (size_t im = 0; im < nm; ++im) {
    for (size_t ia = 0; ia < na; ++ia) {
      const double x = g->log_age[ia], mh = g->metal[im];
      const double lbol = BolometricLuminosity(x, mh);
      std::fill(spec.begin(), spec.end(), 0.0);
      double q = 0;
      for (const Component& c : Components(x, mh)) {
        const auto k = Coefficients(c, mh);
        std::fill(tau.begin(), tau.end(), 0.0);
        for (int b = 0; b < kNumBasis; ++b) {
          if (k[static_cast<size_t>(b)] == 0.0) continue;
          const double kb = k[static_cast<size_t>(b)];
          const auto& s = basis.shape[static_cast<size_t>(b)];
          for (size_t i = 0; i < nw; ++i) tau[i] += kb * s[i];
        }
        const double l_c = lbol * c.frac;
        for (size_t i = 0; i < nw; ++i) {
          spec[i] += l_c * PlanckPerAngstrom(g->wave[i], c.temp) * std::exp(-tau[i]);
        }
        q += l_c * kLsun * IonisingPhotonsPerErg(c.temp) * LymanSuppression(c.temp);
      }
      const size_t slot = im * na + ia;
      for (size_t i = 0; i < nw; ++i) g->flux[slot * nw + i] = static_cast<float>(spec[i]);
      const double l_v = MeanFluxDensity(v_band, g->wave, spec) / sun_v;
      g->mass_star[slot] = MassStar(x);
      g->ml_v[slot] = g->mass_star[slot] / l_v;
      g->q_h[slot] = q;
    }
  }
  g->notes =
      "synthetic semi-analytic SSP model (cubeflow built-in, docs/builtin_ssp.md); not for "
      "science. ml_v = mass_star / L_V with L_V relative to a 5772 K blackbody Sun";
  return g;
}

}  // namespace

std::shared_ptr<const SspGrid> BuiltinSsp() {
  static const std::shared_ptr<const SspGrid> kGrid = Build();  // thread-safe (C++11 statics)
  return kGrid;
}

}  // namespace cubeflow::sim
