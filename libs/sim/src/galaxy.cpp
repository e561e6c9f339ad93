#include "cubeflow/sim/galaxy.hpp"

#include <fitsio.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>
#include <vector>

#include "cubeflow/fits/atomic_fits_file.hpp"
#include "cubeflow/fits/cfitsio_error.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/rng.hpp"
#include "cubeflow/spectral/spectral_ops.hpp"

namespace cubeflow::sim {

using spectral::AxisEdges;
using spectral::kFwhmToSigma;
using spectral::kSpeedOfLightKms;
using spectral::LogAxis;
using spectral::ResampleEdges;
namespace {

constexpr double kLsunErg = 3.828e33;
constexpr double kMpcCm = 3.0856775814913673e24;

double PhotFlam(const std::string& band) {  // erg/cm^2/A per e-/s, WFC3/UVIS (approximate)
  if (band == "F275W") return 3.3e-18;
  if (band == "F336W") return 1.3e-18;
  if (band == "F438W") return 6.8e-19;
  if (band == "F555W") return 1.9e-19;
  if (band == "F814W") return 1.5e-19;
  return 2e-19;
}

using fits::CfitsioErrorText;

void Key(fitsfile* f, const char* k, double v, const char* c, int* st) {
  fits_update_key_dbl(f, const_cast<char*>(k), v, -15, const_cast<char*>(c), st);
}
void Key(fitsfile* f, const char* k, const std::string& v, const char* c, int* st) {
  fits_update_key_str(f, const_cast<char*>(k), const_cast<char*>(v.c_str()), const_cast<char*>(c), st);
}

void CelestialWcs(fitsfile* f, double ra, double dec, double crpix1, double crpix2, double scale_arcsec, int* st) {
  Key(f, "CTYPE1", std::string("RA---TAN"), "", st);
  Key(f, "CTYPE2", std::string("DEC--TAN"), "", st);
  Key(f, "CUNIT1", std::string("deg"), "", st);
  Key(f, "CUNIT2", std::string("deg"), "", st);
  Key(f, "CRVAL1", ra, "[deg]", st);
  Key(f, "CRVAL2", dec, "[deg]", st);
  Key(f, "CRPIX1", crpix1, "", st);
  Key(f, "CRPIX2", crpix2, "", st);
  Key(f, "CD1_1", -scale_arcsec / 3600.0, "", st);
  Key(f, "CD1_2", 0.0, "", st);
  Key(f, "CD2_1", 0.0, "", st);
  Key(f, "CD2_2", scale_arcsec / 3600.0, "", st);
  Key(f, "RADESYS", std::string("ICRS"), "", st);
  Key(f, "EQUINOX", 2000.0, "", st);
}

/// Labels of a history given only as binned steps (a mixture of histories): mass fraction and
/// mass-weighted [Z/H] per age bin (`zh_empty` in empty bins) and the cosmic times at which
/// 10 ... 90 % of the mass had formed (linear in cumulative mass within a step).
SfhLabels LabelsFromBinned(const BinnedSfh& binned, const TimeGrid& grid, double zh_empty) {
  SfhLabels labels;
  std::array<double, kNumAgeBins> mb{}, mz{};
  for (size_t j = 0; j < grid.size(); ++j) {
    mb[grid.bin[j]] += binned.mass[j];
    mz[grid.bin[j]] += binned.mass[j] * std::log10(binned.z[j] / 0.019);
  }
  for (int i = 0; i < kNumAgeBins; ++i) {
    labels.mass_frac[i] = static_cast<float>(mb[i]);
    labels.zh[i] = static_cast<float>(mb[i] > 1e-12 ? mz[i] / mb[i] : zh_empty);
  }
  // percentiles: linear in cumulative mass within steps (oldest first)
  double cum = 0;
  int k = 0;
  for (size_t jj = grid.size(); jj-- > 0 && k < kNumMassPercentiles;) {
    const double m = binned.mass[jj];
    while (k < kNumMassPercentiles && cum + m >= 0.1 * (k + 1) - 1e-12) {
      const double f = m > 0 ? (0.1 * (k + 1) - cum) / m : 0.0;
      const double lb = grid.Hi(jj) - f * (grid.Hi(jj) - grid.Lo(jj));
      labels.t_mass[k++] = static_cast<float>(CosmicTimeGyr(0.0) - lb);
    }
    cum += m;
  }
  return labels;
}

double SmoothStep(double x) {
  x = std::clamp(x, 0.0, 1.0);
  return x * x * (3 - 2 * x);
}

}  // namespace

/// \brief The drawn parameters of a "spiral" galaxy and its regions' histories.
struct SpiralModel {
  enum Comp { kBulge, kBar, kInner, kOuter, kArm, kHii, kPatch, kNumComp };
  // geometry (arcsec in the disc plane unless said otherwise)
  double pa = 0, incl = 0;            // rad
  double rd = 1, rb = 0.2;            // disc scale length; bulge scale (sky-projected radius)
  double bulge_amp = 3, bulge_q = 0.85;
  bool bar = false;
  double bar_len = 0, bar_q = 0.35, bar_angle = 0, bar_amp = 0;
  int arms = 2;
  double pitch = 0.3, arm_phase = 0, arm_power = 4, arm_r0 = 0.5, arm_young = 0.02;
  struct Clump { double u, w, sigma, amp; };
  std::vector<Clump> hii;
  double hii_young = 0.03;
  int patch = 0;                      // 0: none; kRegionPostStarburst or kRegionQuenched
  double patch_u = 0, patch_w = 0, patch_sigma = 1;
  // metallicity: [Z/H] offset per disc scale length (disc components) and per-spaxel scatter
  double zh_grad = -0.05, zh_scatter = 0.03;
  double z_min = 1e-4, z_max = 0.06;  // the SSP grid's range: truths stay renderable
  // dust
  double tau_ism0 = 0.35, tau_lane = 0.15, tau_bc = 1.0, tau_bc_hii = 2.0;
  // kinematics
  double vflat = 180, r_turn = 1, sigma0 = 150, sigma_disc = 35;
  // histories of the regions
  std::array<Sfh, kNumComp> sfh;
  std::array<BinnedSfh, kNumComp> binned;
  std::vector<std::string> lines;                 // Describe()
};

namespace {

std::string Line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Line(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

/// Draws a "spiral" galaxy from the seed and integrates its regions' histories.
std::shared_ptr<SpiralModel> DrawSpiral(const GalaxyConfig& c, const ForwardModel& fm) {
  auto m = std::make_shared<SpiralModel>();
  Rng rng(c.seed, 0, 0x5a17a1);
  const double field = std::min(c.nx, c.ny) * c.pixscale;  // arcsec
  const double t_univ = CosmicTimeGyr(0.0);
  using S = SpiralModel;
  // geometry
  m->pa = rng.Uniform(0, M_PI);
  m->incl = rng.Uniform(30, 60) * M_PI / 180;
  m->rd = rng.Uniform(0.16, 0.22) * field;
  m->rb = rng.Uniform(0.05, 0.08) * field;
  m->bulge_amp = rng.Uniform(3, 7);
  m->bulge_q = rng.Uniform(0.75, 0.95);
  m->bar = rng.Uniform() < 0.6;
  m->bar_len = rng.Uniform(2.0, 3.0) * m->rb;
  m->bar_q = rng.Uniform(0.25, 0.4);
  m->bar_angle = rng.Uniform(0, M_PI);
  m->bar_amp = m->bar ? rng.Uniform(1.0, 2.0) : 0.0;
  m->arms = rng.Uniform() < 0.7 ? 2 : 3;
  m->pitch = rng.Uniform(12, 25) * M_PI / 180;
  m->arm_phase = rng.Uniform(0, 2 * M_PI);
  m->arm_power = rng.Uniform(3, 6);
  m->arm_r0 = m->bar ? m->bar_len : 1.5 * m->rb;
  m->arm_young = rng.Uniform(0.04, 0.10);
  m->hii_young = rng.Uniform(0.02, 0.05);
  // H II regions on the arm ridges, about one per 100 spaxels of the field (their own stream, so
  // that everything else is the same galaxy at any cube size)
  Rng hii_rng(c.seed, 1, 0x5a17a1);
  const int n_hii = static_cast<int>(std::clamp<int64_t>(c.nx * c.ny / 100, 4, 2000));
  for (int k = 0; k < n_hii; ++k) {
    const double r = hii_rng.Uniform(m->arm_r0 * 1.1, 3.0 * m->rd);
    const int arm = static_cast<int>(hii_rng.Uniform() * m->arms) % m->arms;
    const double phi = m->arm_phase / m->arms + std::log(r / m->arm_r0) / std::tan(m->pitch) +
                       2 * M_PI * arm / m->arms + hii_rng.Normal(0, 0.08);
    m->hii.push_back({r * std::cos(phi), r * std::sin(phi), hii_rng.Uniform(0.7, 1.2) * c.pixscale,
                      hii_rng.Uniform(0.5, 1.0)});
  }
  const double u_patch = rng.Uniform();
  m->patch = u_patch < 0.4 ? kRegionPostStarburst : u_patch < 0.75 ? kRegionQuenched : 0;
  const double pr = rng.Uniform(0.8, 2.0) * m->rd, pphi = rng.Uniform(0, 2 * M_PI);
  m->patch_u = pr * std::cos(pphi);
  m->patch_w = pr * std::sin(pphi);
  m->patch_sigma = rng.Uniform(0.5, 0.8) * m->rd;
  m->zh_grad = rng.Uniform(-0.10, -0.04);
  m->zh_scatter = rng.Uniform(0.02, 0.04);
  m->z_min = 0.019 * std::pow(10.0, fm.ssp().metal.front());
  m->z_max = 0.019 * std::pow(10.0, fm.ssp().metal.back());
  m->tau_ism0 = rng.Uniform(0.25, 0.45);
  m->tau_lane = rng.Uniform(0.05, 0.2);
  m->tau_bc = rng.Uniform(0.6, 1.5);
  m->tau_bc_hii = rng.Uniform(1.5, 2.5);
  m->vflat = rng.Uniform(120, 250);
  m->r_turn = rng.Uniform(0.05, 0.12) * field;
  m->sigma0 = rng.Uniform(110, 190);
  m->sigma_disc = rng.Uniform(30, 45);
  // histories: the forward model's kinds, with region-specific parameters
  for (Sfh& s : m->sfh) { s.t_universe = t_univ; s.t_hi = t_univ; }
  auto skew = [&](Sfh& s, SfhKind kind, double xi, double omega, double alpha) {
    s.kind = kind; s.xi = xi; s.omega = omega; s.alpha = alpha;
  };
  Sfh& bulge = m->sfh[S::kBulge];
  skew(bulge, SfhKind::kSkewNormal, rng.Uniform(11.5, 12.8), rng.Uniform(0.5, 1.0), rng.Uniform(0.0, 0.5));
  bulge.z_start = rng.Uniform(0.015, 0.020); bulge.z_final = rng.Uniform(0.038, 0.048);
  Sfh& bar = m->sfh[S::kBar];
  skew(bar, SfhKind::kSkewNormal, rng.Uniform(7.0, 9.5), rng.Uniform(1.5, 2.5), rng.Uniform(-0.3, 0.3));
  bar.z_start = rng.Uniform(0.010, 0.014); bar.z_final = rng.Uniform(0.026, 0.034);
  {  // inside-out disc: the inner disc formed earlier than the outer disc
    const double a = rng.Uniform(0.30, 0.42), b = a + rng.Uniform(0.18, 0.25), d = b + rng.Uniform(0.15, 0.20);
    Sfh& in = m->sfh[S::kInner];
    in.z_start = rng.Uniform(0.006, 0.009); in.z_final = rng.Uniform(0.020, 0.026);
    SetNonParametric(&in, {a, b, std::min(d, 0.95)}, rng.Uniform(2e-11, 8e-11));
    const double a2 = rng.Uniform(0.70, 0.78), b2 = a2 + rng.Uniform(0.09, 0.12), d2 = b2 + rng.Uniform(0.05, 0.07);
    Sfh& out = m->sfh[S::kOuter];
    out.z_start = rng.Uniform(0.0015, 0.003); out.z_final = rng.Uniform(0.006, 0.009);
    SetNonParametric(&out, {a2, b2, std::min(d2, 0.96)}, rng.Uniform(2.5e-10, 8e-10));
  }
  // young bursts (arms) and very young ones (H II regions): all their mass in the burst; their Z
  // is set per spaxel to the local gas metallicity
  Sfh& arm = m->sfh[S::kArm];
  skew(arm, SfhKind::kSkewNormalBurst, 1.0, 0.5, 0.0);
  arm.burst_frac = 1.0; arm.burst_age = rng.LogUniform(0.015, 0.12); arm.burst_sigma = 0.3 * arm.burst_age;
  arm.z_start = arm.z_final = 0.019;
  Sfh& hii = m->sfh[S::kHii];
  skew(hii, SfhKind::kSkewNormalBurst, 1.0, 0.5, 0.0);
  hii.burst_frac = 1.0; hii.burst_age = rng.Uniform(0.002, 0.006); hii.burst_sigma = 0.0015;
  hii.z_start = hii.z_final = 0.019;
  Sfh& patch = m->sfh[S::kPatch];
  if (m->patch == kRegionQuenched) {  // star formation stopped a few Gyr ago
    skew(patch, SfhKind::kSkewNormal, rng.Uniform(6.0, 8.0), rng.Uniform(0.8, 1.5), rng.Uniform(0.3, 0.8));
  } else {  // post-starburst: a burst 0.25-0.8 Gyr ago, nothing since
    skew(patch, SfhKind::kSkewNormalBurst, rng.Uniform(8.0, 10.0), rng.Uniform(1.5, 2.5), 0.0);
    patch.burst_age = rng.Uniform(0.25, 0.8); patch.burst_sigma = rng.Uniform(0.03, 0.08);
    patch.burst_frac = rng.Uniform(0.12, 0.3);
  }
  patch.z_start = rng.Uniform(0.007, 0.010); patch.z_final = rng.Uniform(0.020, 0.026);
  for (int k = 0; k < S::kNumComp; ++k) {
    if (m->sfh[k].kind != SfhKind::kNonParametric) FinalizeSfh(&m->sfh[k]);
    m->binned[k] = IntegrateSfh(m->sfh[k], fm.time_grid());
  }
  auto& L = m->lines;
  L.push_back(Line("layout spiral, seed %llu", static_cast<unsigned long long>(c.seed)));
  L.push_back(Line("geometry: PA %.1f deg, inclination %.1f deg, disc scale %.2f\", bulge scale %.2f\" "
                   "(central bulge/disc %.1f, axis ratio %.2f)",
                   m->pa * 180 / M_PI, m->incl * 180 / M_PI, m->rd, m->rb, m->bulge_amp, m->bulge_q));
  if (m->bar)
    L.push_back(Line("bar: half-length %.2f\", axis ratio %.2f, angle %.0f deg in the disc, amplitude %.2f",
                     m->bar_len, m->bar_q, m->bar_angle * 180 / M_PI, m->bar_amp));
  else
    L.push_back("bar: none");
  L.push_back(Line("arms: %d, pitch %.1f deg, from %.2f\", young mass fraction %.3f on the ridge; %zu H II regions "
                   "(young fraction %.3f)",
                   m->arms, m->pitch * 180 / M_PI, m->arm_r0, m->arm_young, m->hii.size(), m->hii_young));
  L.push_back(m->patch == 0 ? std::string("patch: none")
                            : Line("patch: %s at (%.2f\", %.2f\") in the disc, sigma %.2f\"",
                                   m->patch == kRegionQuenched ? "quenched" : "post-starburst", m->patch_u,
                                   m->patch_w, m->patch_sigma));
  const char* names[S::kNumComp] = {"bulge", "bar", "inner disc", "outer disc", "arm burst", "H II burst", "patch"};
  for (int k = 0; k < S::kNumComp; ++k) {
    const Sfh& h = m->sfh[k];
    if ((k == S::kBar && !m->bar) || (k == S::kPatch && m->patch == 0)) continue;
    if (h.kind == SfhKind::kNonParametric)
      L.push_back(Line("%s: non-parametric, 25/50/75 %% formed at %.2f/%.2f/%.2f of t_universe, sSFR %.2e /yr, "
                       "Z %.4f -> %.4f",
                       names[k], h.knot_tau[1] / t_univ, h.knot_tau[2] / t_univ, h.knot_tau[3] / t_univ, h.ssfr,
                       h.z_start, h.z_final));
    else if (h.burst_frac >= 1)
      L.push_back(Line("%s: burst %.1f Myr ago (sigma %.1f Myr), local gas Z", names[k], h.burst_age * 1e3,
                       h.burst_sigma * 1e3));
    else
      L.push_back(Line("%s: skew-normal peak %.2f Gyr ago, width %.2f Gyr, shape %.2f%s, Z %.4f -> %.4f", names[k],
                       h.xi, h.omega, h.alpha,
                       h.burst_frac > 0 ? Line(" + %.0f %% burst %.0f Myr ago", 100 * h.burst_frac,
                                               h.burst_age * 1e3).c_str()
                                        : "",
                       h.z_start, h.z_final));
  }
  L.push_back(Line("metallicity: disc gradient %.3f dex per scale length, spaxel scatter %.3f dex", m->zh_grad,
                   m->zh_scatter));
  L.push_back(Line("dust: tau_ISM %.2f (centre) + %.2f in arms, tau_BC %.2f (H II regions %.2f)", m->tau_ism0,
                   m->tau_lane, m->tau_bc, m->tau_bc_hii));
  L.push_back(Line("kinematics: V_flat %.0f km/s, turnover %.2f\", sigma %.0f km/s (bulge) to %.0f km/s (disc)",
                   m->vflat, m->r_turn, m->sigma0, m->sigma_disc));
  return m;
}

}  // namespace

Result<std::shared_ptr<const MockGalaxy>> MockGalaxy::Build(const GalaxyConfig& cfg) {
  SspSource src;
  src.ssp = cfg.ssp;
  CUBEFLOW_ASSIGN_OR_RETURN(auto ssp, LoadSsp(src));
  return Build(cfg, ssp);
}

Result<std::shared_ptr<const MockGalaxy>> MockGalaxy::Build(const GalaxyConfig& cfg,
                                                            std::shared_ptr<const SspGrid> ssp) {
  if (cfg.nx < 4 || cfg.ny < 4 || cfg.nwave < 16) return Status::Error("galaxy: nx, ny >= 4 and nwave >= 16 required");
  if (cfg.layout != "spiral" && cfg.layout != "classic")
    return Status::Error("galaxy: layout must be 'spiral' or 'classic', got '" + cfg.layout + "'");
  if (cfg.layout == "classic" && !cfg.histories.empty() && cfg.histories != "prior" && cfg.histories != "components")
    return Status::Error("galaxy: histories must be 'prior' or 'components', got '" + cfg.histories + "'");
  if (cfg.layout == "spiral" && !cfg.histories.empty())
    return Status::Error("galaxy: histories ('" + cfg.histories + "') applies to the classic layout only; the spiral "
                         "layout draws each region's history from the seed (use layout classic, or drop histories)");
  std::shared_ptr<MockGalaxy> g(new MockGalaxy());
  g->cfg_ = cfg;
  const double z1 = 1.0 + cfg.redshift, vmax = 1500.0;
  const double obs_lo = cfg.wave_start - cfg.wave_step, obs_hi = cfg.wave_start + cfg.wave_step * cfg.nwave;
  const double rest_lo = obs_lo / z1 / (1 + vmax / kSpeedOfLightKms), rest_hi = obs_hi / z1 * (1 + vmax / kSpeedOfLightKms);
  SimConfig sc;
  sc.ssp = cfg.ssp;
  sc.noise.enabled = false;
  sc.obs.sigma_kms = 0;
  sc.obs.lsf = "bacon2017";
  sc.obs.bands = cfg.bands;
  sc.obs.wave = LogAxis(rest_lo, rest_hi, 30.0);
  sc.obs.norm_min = std::max(5300.0, rest_lo + 50);
  sc.obs.norm_max = sc.obs.norm_min + 200;
  sc.obs.allow_coarse_ssp = true;  // e.g. E-MILES beyond 8950 A; reported by forward_model().resolution_note()
  CUBEFLOW_ASSIGN_OR_RETURN(g->fm_, ForwardModel::Build(ssp, sc));
  g->rest_axis_ = sc.obs.wave;
  g->rest_edges_ = AxisEdges(g->rest_axis_);
  g->obs_edges_ = AxisEdges(WavelengthAxis::Linear(cfg.wave_start, cfg.wave_step, cfg.nwave));
  g->dist_cm_ = kSpeedOfLightKms * cfg.redshift / 70.0 * kMpcCm;
  if (cfg.layout == "spiral") g->spiral_ = DrawSpiral(cfg, *g->fm_);
  return std::shared_ptr<const MockGalaxy>(g);
}

std::vector<std::string> MockGalaxy::Describe() const {
  return spiral_ ? spiral_->lines : std::vector<std::string>{};
}

SpaxelTruth MockGalaxy::Truth(int64_t x, int64_t y) const {
  const auto& c = cfg_;
  SpaxelTruth t;
  const double cx = 0.5 * (c.nx - 1), cy = 0.5 * (c.ny - 1);
  const double dxp = x - cx, dyp = y - cy;
  // ragged edge + a few NaN spaxels
  const double th = std::atan2(dyp, dxp);
  const double redge = 0.5 * std::min(c.nx, c.ny) * (0.92 + 0.05 * std::sin(7 * th) + 0.03 * std::sin(13 * th + 1));
  Rng hole(c.seed, static_cast<uint64_t>(y * c.nx + x), 99);
  if (std::hypot(dxp, dyp) > redge || hole.Uniform() * c.nx * c.ny < c.nan_spaxels) t.valid = false;
  return spiral_ ? SpiralTruth(x, y, t) : ClassicTruth(x, y, t);
}

SpaxelTruth MockGalaxy::SpiralTruth(int64_t x, int64_t y, SpaxelTruth t) const {
  using S = SpiralModel;
  const auto& c = cfg_;
  const SpiralModel& m = *spiral_;
  const double cx = 0.5 * (c.nx - 1), cy = 0.5 * (c.ny - 1);
  // sky offsets (arcsec), along the major (u) and projected minor (w) axes, and in the disc plane
  const double dx = (x - cx) * c.pixscale, dy = (y - cy) * c.pixscale;
  const double u = -dx * std::sin(m.pa) + dy * std::cos(m.pa);
  const double w = -dx * std::cos(m.pa) - dy * std::sin(m.pa);
  const double wd = w / std::cos(m.incl);
  const double r = std::hypot(u, wd) + 1e-6, phi = std::atan2(wd, u);
  // surface densities of the components (units of the disc's central surface density)
  const double disc = std::exp(-r / m.rd);
  const double bulge = m.bulge_amp * std::exp(-std::hypot(u, w / m.bulge_q) / m.rb);
  double bar = 0;
  if (m.bar) {
    const double xb = u * std::cos(m.bar_angle) + wd * std::sin(m.bar_angle);
    const double yb = -u * std::sin(m.bar_angle) + wd * std::cos(m.bar_angle);
    const double q2 = std::pow(xb / m.bar_len, 2) + std::pow(yb / (m.bar_q * m.bar_len), 2);
    bar = m.bar_amp * std::exp(-q2 * q2);  // flat-topped, sharp ends
  }
  const double arm_taper = SmoothStep((r - m.arm_r0) / (0.5 * m.arm_r0)) * std::exp(-std::max(0.0, r - 3 * m.rd) / m.rd);
  const double arm_phase = m.arms * (phi - std::log(r / m.arm_r0) / std::tan(m.pitch)) - m.arm_phase;
  const double arm = std::pow(std::max(0.0, std::cos(arm_phase)), m.arm_power) * arm_taper;
  double hii = 0;
  for (const auto& cl : m.hii) {
    const double d2 = (u - cl.u) * (u - cl.u) + (wd - cl.w) * (wd - cl.w);
    if (d2 < 25 * cl.sigma * cl.sigma) hii += cl.amp * std::exp(-0.5 * d2 / (cl.sigma * cl.sigma));
  }
  hii = std::min(hii, 1.0);
  double patch = 0;
  if (m.patch != 0) {
    const double d2 = (u - m.patch_u) * (u - m.patch_u) + (wd - m.patch_w) * (wd - m.patch_w);
    patch = std::min(1.0, 1.5 * std::exp(-0.5 * d2 / (m.patch_sigma * m.patch_sigma)));
  }
  const double f_out = SmoothStep((r / m.rd - 0.5) / 1.5);
  std::array<double, S::kNumComp> mass{};
  mass[S::kBulge] = bulge;
  mass[S::kBar] = bar;
  mass[S::kInner] = disc * (1 - patch);  // the disc history of this radius (below)
  mass[S::kArm] = disc * (1 - patch) * m.arm_young * arm;
  mass[S::kHii] = disc * (1 - patch) * m.hii_young * hii;
  mass[S::kPatch] = disc * patch;
  double total = 0;
  for (double v : mass) total += v;
  // metallicity: components' own enrichment, a radial gradient in the disc, per-spaxel scatter
  Rng zr(c.seed, static_cast<uint64_t>(y * c.nx + x), 0x2a);
  const double scatter = m.zh_scatter * zr.Normal();
  const double rr = std::min(r / m.rd, 3.5);
  const double f_disc = std::pow(10.0, m.zh_grad * (rr - 1) + scatter);
  const double f_sph = std::pow(10.0, 0.5 * m.zh_grad * std::min(r / m.rb, 3.0) + scatter);
  // inside-out disc: the non-parametric history's times, sSFR and enrichment move from the inner
  // disc's values to the outer disc's with radius
  const Sfh& s_in = m.sfh[S::kInner];
  const Sfh& s_out = m.sfh[S::kOuter];
  auto lerp = [&](double a, double b) { return a + (b - a) * f_out; };
  auto loglerp = [&](double a, double b) { return a * std::pow(b / a, f_out); };
  Sfh disc_sfh = s_in;
  disc_sfh.z_start = loglerp(s_in.z_start, s_out.z_start);
  disc_sfh.z_final = loglerp(s_in.z_final, s_out.z_final);
  SetNonParametric(&disc_sfh,
                   {lerp(s_in.knot_tau[1], s_out.knot_tau[1]) / s_in.t_universe,
                    lerp(s_in.knot_tau[2], s_out.knot_tau[2]) / s_in.t_universe,
                    lerp(s_in.knot_tau[3], s_out.knot_tau[3]) / s_in.t_universe},
                   loglerp(s_in.ssfr, s_out.ssfr));
  const TimeGrid& grid = fm_->time_grid();
  const BinnedSfh disc_binned = IntegrateSfh(disc_sfh, grid);
  const double z_gas = std::clamp(disc_sfh.z_final * f_disc, m.z_min, m.z_max);
  t.binned.mass.assign(grid.size(), 0.0);
  t.binned.z.assign(grid.size(), 0.0);
  std::vector<double> mz(grid.size(), 0.0);
  for (int k = 0; k < S::kNumComp; ++k) {
    if (!(mass[k] > 0)) continue;
    const BinnedSfh& b = k == S::kInner ? disc_binned : m.binned[k];
    const bool young = k == S::kArm || k == S::kHii;
    const double f = k == S::kBulge || k == S::kBar ? f_sph : f_disc;
    for (size_t j = 0; j < grid.size(); ++j) {
      const double mj = mass[k] / total * b.mass[j];
      if (mj <= 0) continue;
      t.binned.mass[j] += mj;
      mz[j] += mj * (young ? z_gas : std::clamp(b.z[j] * f, m.z_min, m.z_max));
    }
  }
  double msum = 0;
  for (double v : t.binned.mass) msum += v;
  for (size_t j = 0; j < grid.size(); ++j) {
    t.binned.z[j] = t.binned.mass[j] > 0 ? mz[j] / t.binned.mass[j] : z_gas;
    t.binned.mass[j] /= msum;
  }
  t.labels = LabelsFromBinned(t.binned, grid, std::log10(z_gas / 0.019));
  t.z_gas = z_gas;
  t.dust = DustParams{m.tau_bc + (m.tau_bc_hii - m.tau_bc) * hii,
                      m.tau_ism0 * (0.5 + 0.5 * std::exp(-r / (1.5 * m.rd))) + m.tau_lane * arm};
  t.v_kms = m.vflat * std::tanh(r / m.r_turn) * std::cos(phi) * std::sin(m.incl);
  const double f_hot = (bulge + 0.5 * bar) / total;
  t.sigma_kms = std::clamp(m.sigma_disc + (m.sigma0 - m.sigma_disc) * std::pow(f_hot, 0.7), 30.0, 200.0);
  const double area_pc2 = std::pow(c.pixscale / 206265.0 * dist_cm_ / 3.0856775814913673e18, 2);
  t.mass = 1000.0 * total * area_pc2;
  // the region: H II region or patch where they dominate, else the component with the most mass,
  // arms where the arm pattern is strong
  if (hii > 0.3) t.region = kRegionHii;
  else if (patch > 0.5) t.region = m.patch;
  else if (bulge > bar && bulge > mass[S::kInner]) t.region = kRegionBulge;
  else if (bar > mass[S::kInner]) t.region = kRegionBar;
  else if (arm > 0.3) t.region = kRegionArm;
  else t.region = f_out < 0.5 ? kRegionInnerDisc : kRegionOuterDisc;
  return t;
}

SpaxelTruth MockGalaxy::ClassicTruth(int64_t x, int64_t y, SpaxelTruth t) const {
  const auto& c = cfg_;
  const double cx = 0.5 * (c.nx - 1), cy = 0.5 * (c.ny - 1);
  const double dxp = x - cx, dyp = y - cy;
  // disc geometry (arcsec)
  const double pa = c.pa_deg * M_PI / 180, inc = c.incl_deg * M_PI / 180;
  const double dx = dxp * c.pixscale, dy = dyp * c.pixscale;
  const double u = -dx * std::sin(pa) + dy * std::cos(pa);   // along the major axis
  const double w = -dx * std::cos(pa) - dy * std::sin(pa);   // minor axis (projected)
  const double wd = w / std::cos(inc);
  const double r = std::hypot(u, wd) + 1e-6, phi = std::atan2(wd, u);
  const double field = std::min(c.nx, c.ny) * c.pixscale;
  const double rd = 0.3 * field, rb = 0.07 * field;
  const double bulge = std::exp(-r / rb);
  const double arm_phase = 2.0 * (phi - std::log(r / rb + 1.0) / std::tan(20.0 * M_PI / 180));
  const double arm = std::pow(std::max(0.0, std::cos(arm_phase)), 4) * (1 - bulge) * std::exp(-r / (2 * rd));
  t.v_kms = c.vrot_kms * std::tanh(r / (0.08 * field)) * std::cos(phi) * std::sin(inc);
  t.sigma_kms = std::clamp(30.0 + 170.0 * std::pow(bulge, 0.7), 30.0, 200.0);
  const double area_pc2 = std::pow(c.pixscale / 206265.0 * dist_cm_ / 3.0856775814913673e18, 2);
  t.mass = 3000.0 * (std::exp(-r / rd) + 3.0 * bulge) * area_pc2;
  const TimeGrid& grid = fm_->time_grid();
  if (c.histories.empty() || c.histories == "prior") {
    // One history per spaxel from the training prior's dominant family (non-parametric, eq.-2
    // enrichment): early, quenched, metal-rich centre; later, star-forming disc; arms younger
    // and more metal-rich. Dust within the prior's tau_ISM range.
    t.dust = DustParams{1.0, 0.22 + 0.16 * std::exp(-std::hypot(dx, dy) / (0.3 * field))};
    const double ob = 1.0 - bulge, disc = std::exp(-r / rd);
    Sfh s;
    s.t_universe = CosmicTimeGyr(0.0);
    s.z_start = 0.008;
    s.z_final = std::clamp(0.012 + 0.012 * bulge + 0.006 * disc + 0.008 * arm, 0.010, 0.030);
    const std::array<double, 3> frac = {0.08 + 0.17 * ob, 0.15 + 0.30 * ob, std::min(0.9, 0.25 + 0.40 * ob + 0.10 * arm)};
    SetNonParametric(&s, frac, std::min(1e-9, std::pow(10.0, -12.0 + 1.6 * ob + 1.2 * arm)));
    t.binned = IntegrateSfh(s, grid);
    t.labels = ComputeLabels(s, grid, t.binned);
    t.z_gas = s.z_final;
    return t;
  }
  // dust: birth clouds everywhere, diffuse ISM rising towards the centre (projected radius)
  t.dust = DustParams{1.0, 0.2 + 0.3 * std::exp(-std::hypot(dx, dy) / (0.3 * field))};
  // components: old bulge-like, disc, young (arms)
  Sfh old_c, disc_c, young_c;
  old_c.kind = disc_c.kind = SfhKind::kSkewNormal;
  young_c.kind = SfhKind::kSkewNormalBurst;
  for (Sfh* s : {&old_c, &disc_c, &young_c}) { s->t_universe = CosmicTimeGyr(0.0); s->t_hi = 17.8; s->z_start = 0.008; }
  old_c.xi = 11.0; old_c.omega = 1.2; old_c.alpha = 0.3; old_c.z_final = 0.016 + 0.010 * bulge;
  disc_c.xi = 4.0 + 4.0 * std::exp(-r / rd); disc_c.omega = 2.5; disc_c.alpha = 0.0; disc_c.z_final = 0.014 + 0.008 * arm;
  young_c.xi = 1.0; young_c.omega = 0.5; young_c.alpha = 0;  // main part replaced by burst_frac = 1
  young_c.burst_frac = 1.0; young_c.burst_age = 0.008 + 0.09 * (1.0 - arm); young_c.burst_sigma = 0.01;
  young_c.z_final = 0.02 + 0.01 * arm;
  for (Sfh* s : {&old_c, &disc_c, &young_c}) FinalizeSfh(s);
  const double w_old = 0.15 + 0.75 * bulge, w_young = 0.002 + 0.04 * arm, w_disc = std::max(0.0, 1.0 - w_old - w_young);
  BinnedSfh bo = IntegrateSfh(old_c, grid), bd = IntegrateSfh(disc_c, grid), by = IntegrateSfh(young_c, grid);
  t.binned.mass.resize(grid.size());
  t.binned.z.resize(grid.size());
  for (size_t j = 0; j < grid.size(); ++j) {
    const double mo = w_old * bo.mass[j], md = w_disc * bd.mass[j], my = w_young * by.mass[j];
    const double m = mo + md + my;
    t.binned.mass[j] = m;
    t.binned.z[j] = m > 0 ? (mo * bo.z[j] + md * bd.z[j] + my * by.z[j]) / m : disc_c.MetallicityAt(grid.Lo(j));
  }
  double tot = 0;
  for (double m : t.binned.mass) tot += m;
  for (double& m : t.binned.mass) m /= tot;
  t.labels = LabelsFromBinned(t.binned, grid, std::log10(disc_c.z_final / 0.019));
  return t;
}

void MockGalaxy::RenderSpaxel(int64_t x, int64_t y, std::vector<float>* flux, std::vector<double>* phot) const {
  const SpaxelTruth t = Truth(x, y);
  flux->assign(cfg_.nwave, std::numeric_limits<float>::quiet_NaN());
  phot->assign(cfg_.bands.size(), std::numeric_limits<double>::quiet_NaN());
  if (!t.valid) return;
  Rendered rd;
  fm_->Render(t.binned, t.dust, t.z_gas, &rd);
  const double z1 = 1.0 + cfg_.redshift;
  const double scale_cgs = t.mass * kLsunErg / (4.0 * M_PI * dist_cm_ * dist_cm_) / z1;
  // broaden by sigma (log grid: constant kernel in pixels)
  const size_t n = rd.flux.size();
  const double sig_pix = t.sigma_kms / 30.0;
  const int half = static_cast<int>(std::ceil(4 * sig_pix));
  std::vector<double> ker(2 * half + 1);
  double ks = 0;
  for (int i = -half; i <= half; ++i) ks += ker[i + half] = std::exp(-0.5 * i * i / (sig_pix * sig_pix));
  for (double& v : ker) v /= ks;
  std::vector<double> conv(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    double s = 0, wsum = 0;
    for (int k = -half; k <= half; ++k) {
      const int64_t q = static_cast<int64_t>(i) + k;
      if (q < 0 || q >= static_cast<int64_t>(n)) continue;
      s += ker[k + half] * rd.flux[q];
      wsum += ker[k + half];
    }
    conv[i] = s / wsum;
  }
  // shift: observed edges -> rest frame of this spaxel
  const double f = z1 * (1.0 + t.v_kms / kSpeedOfLightKms);
  std::vector<double> edges(obs_edges_.size());
  for (size_t i = 0; i < edges.size(); ++i) edges[i] = obs_edges_[i] / f;
  std::vector<double> out(cfg_.nwave);
  ResampleEdges(rest_edges_, conv, {}, edges, out, {});
  for (int64_t i = 0; i < cfg_.nwave; ++i) (*flux)[i] = static_cast<float>(out[i] / f * z1 * scale_cgs * 1e20);
  for (size_t b = 0; b < rd.phot.size(); ++b) (*phot)[b] = rd.phot[b] * scale_cgs;
}

Status MockGalaxy::Write(const std::string& dir, int threads) const {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::Error("galaxy: cannot create '" + dir + "': " + ec.message());
  const auto& c = cfg_;
  const int64_t nx = c.nx, ny = c.ny, nw = c.nwave, nb = static_cast<int64_t>(c.bands.size());
  const double cx = 0.5 * (nx - 1), cy = 0.5 * (ny - 1);
  tbb::task_arena arena(threads > 0 ? threads : tbb::task_arena::automatic);
  // reference continuum for the sky noise: the central spaxel
  std::vector<float> ref;
  std::vector<double> dummy;
  RenderSpaxel(nx / 2, ny / 2, &ref, &dummy);
  double fc = 0; int nfc = 0;
  for (float v : ref) if (std::isfinite(v)) { fc += v; ++nfc; }
  fc = nfc ? fc / nfc : 1.0;
  std::vector<double> sky(nw);
  for (int64_t k = 0; k < nw; ++k) {
    const double l = c.wave_start + k * c.wave_step;
    double s = 1.0;
    for (double line : {5577.3, 5889.9, 6300.3, 6363.8, 6863.9, 7276.4, 7340.9, 7913.7, 8344.6, 8827.1, 8885.8, 9375.9})
      s += 20.0 * std::exp(-0.5 * std::pow((l - line) / 1.2, 2));
    if (l > 7000) s += 2.0 + 3.0 * std::pow(std::sin(l * 0.37), 8);  // OH forest
    sky[k] = std::pow(c.sky_sigma * fc, 2) * s;
  }
  const std::string cube_path = (fs::path(dir) / "cube.fits").string();
  // Atomic: a failure (a full disk) removes the temporary file; an earlier cube stays whole.
  CUBEFLOW_ASSIGN_OR_RETURN(fits::AtomicFitsFile cube_file, fits::AtomicFitsFile::Create(cube_path, "cube"));
  fitsfile* f = cube_file.get();
  int st = 0;
  long ax0[1] = {0};
  fits_create_img(f, FLOAT_IMG, 0, ax0, &st);
  Key(f, "OBJECT", std::string("MOCK-SPIRAL"), "cubeflow simulate galaxy", &st);
  Key(f, "TELESCOP", std::string("ESO-VLT-U4"), "", &st);
  Key(f, "INSTRUME", std::string("MUSE"), "", &st);
  Key(f, "RA", c.ra, "[deg]", &st);
  Key(f, "DEC", c.dec, "[deg]", &st);
  Key(f, "REDSHIFT", c.redshift, "systemic redshift (truth)", &st);
  Key(f, "SYNTHETI", std::string("T"), "synthetic data", &st);
  long ax[3] = {static_cast<long>(nx), static_cast<long>(ny), static_cast<long>(nw)};
  auto cube_hdr = [&](const char* name, const char* bunit) {
    fits_create_img(f, FLOAT_IMG, 3, ax, &st);
    Key(f, "EXTNAME", std::string(name), "", &st);
    Key(f, "BUNIT", std::string(bunit), "", &st);
    CelestialWcs(f, c.ra, c.dec, cx + 1, cy + 1, c.pixscale, &st);
    Key(f, "CTYPE3", std::string("AWAV"), "", &st);
    Key(f, "CUNIT3", std::string("Angstrom"), "", &st);
    Key(f, "CRVAL3", c.wave_start, "", &st);
    Key(f, "CRPIX3", 1.0, "", &st);
    Key(f, "CD3_3", c.wave_step, "", &st);
    Key(f, "CD1_3", 0.0, "", &st); Key(f, "CD2_3", 0.0, "", &st);
    Key(f, "CD3_1", 0.0, "", &st); Key(f, "CD3_2", 0.0, "", &st);
  };
  cube_hdr("DATA", "10**(-20)*erg/s/cm**2/Angstrom");
  cube_hdr("STAT", "10**(-40)*(erg/s/cm**2/Angstrom)**2");
  CUBEFLOW_RETURN_NOT_OK(cube_file.Check(st));
  std::vector<double> phot_map(nx * ny * nb, std::numeric_limits<double>::quiet_NaN());
  std::vector<SpaxelTruth> truth(nx * ny);
  const int64_t rows = std::max<int64_t>(1, (64ll << 20) / (nx * nw * 8));
  std::vector<float> data, stat;
  for (int64_t y0 = 0; y0 < ny; y0 += rows) {
    const int64_t y1 = std::min(ny, y0 + rows), nr = y1 - y0;
    data.assign(nr * nx * nw, 0.0f);
    stat.assign(nr * nx * nw, 0.0f);
    arena.execute([&] {
      tbb::parallel_for(int64_t(0), nr * nx, [&](int64_t s) {
        const int64_t yy = s / nx, x = s % nx, y = y0 + yy;
        std::vector<float> fl;
        std::vector<double> ph;
        RenderSpaxel(x, y, &fl, &ph);
        truth[y * nx + x] = Truth(x, y);
        for (int64_t b = 0; b < nb; ++b) phot_map[(y * nx + x) * nb + b] = ph[b];
        Rng rng(c.seed, static_cast<uint64_t>(y * nx + x), 7);
        for (int64_t k = 0; k < nw; ++k) {
          const size_t idx = (k * nr + yy) * nx + x;
          const float v = fl[k];
          if (!std::isfinite(v)) { data[idx] = stat[idx] = std::numeric_limits<float>::quiet_NaN(); continue; }
          const double var = sky[k] + 0.002 * fc * std::max(0.0f, v);
          stat[idx] = static_cast<float>(var);
          data[idx] = static_cast<float>(c.noise ? v + std::sqrt(var) * rng.Normal() : v);
        }
      });
    });
    long fp[3] = {1, static_cast<long>(y0 + 1), 1}, lp[3] = {static_cast<long>(nx), static_cast<long>(y1), static_cast<long>(nw)};
    cube_file.set_hdu("DATA");
    fits_movnam_hdu(f, IMAGE_HDU, const_cast<char*>("DATA"), 0, &st);
    fits_write_subset(f, TFLOAT, fp, lp, data.data(), &st);
    CUBEFLOW_RETURN_NOT_OK(cube_file.Check(st));
    cube_file.set_hdu("STAT");
    fits_movnam_hdu(f, IMAGE_HDU, const_cast<char*>("STAT"), 0, &st);
    fits_write_subset(f, TFLOAT, fp, lp, stat.data(), &st);
    CUBEFLOW_RETURN_NOT_OK(cube_file.Check(st));
  }
  CUBEFLOW_RETURN_NOT_OK(cube_file.Commit());

  // maps helper
  auto write_maps = [&](const std::string& path, const std::vector<std::pair<std::string, std::vector<double>>>& maps,
                        const std::vector<int>& planes, const std::vector<std::string>& units,
                        const std::vector<std::string>& history) -> Status {
    CUBEFLOW_ASSIGN_OR_RETURN(fits::AtomicFitsFile file, fits::AtomicFitsFile::Create(path, "truth maps"));
    fitsfile* m = file.get();
    int s2 = 0;
    long a0[1] = {0};
    fits_create_img(m, FLOAT_IMG, 0, a0, &s2);
    Key(m, "OBJECT", std::string("MOCK-SPIRAL"), "", &s2);
    Key(m, "LAYOUT", c.layout, "cubeflow simulate galaxy --layout", &s2);
    Key(m, "SEED", static_cast<double>(c.seed), "cubeflow simulate galaxy --seed", &s2);
    for (const auto& h : history) fits_write_history(m, const_cast<char*>(h.c_str()), &s2);
    for (size_t i = 0; i < maps.size(); ++i) {
      long a[3] = {static_cast<long>(nx), static_cast<long>(ny), planes[i]};
      fits_create_img(m, FLOAT_IMG, planes[i] > 1 ? 3 : 2, a, &s2);
      Key(m, "EXTNAME", maps[i].first, "", &s2);
      Key(m, "BUNIT", units[i], "", &s2);
      CelestialWcs(m, c.ra, c.dec, cx + 1, cy + 1, c.pixscale, &s2);
      std::vector<float> buf(maps[i].second.begin(), maps[i].second.end());
      file.set_hdu(maps[i].first);
      fits_write_img(m, TFLOAT, 1, static_cast<LONGLONG>(buf.size()), buf.data(), &s2);
      CUBEFLOW_RETURN_NOT_OK(file.Check(s2));
    }
    CUBEFLOW_RETURN_NOT_OK(file.Check(s2));
    return file.Commit();
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> vmap(nx * ny, nan), smap(nx * ny, nan), lwa(nx * ny, nan), mwa(nx * ny, nan), lwz(nx * ny, nan),
      mwz(nx * ny, nan), mass(nx * ny, nan), region(nx * ny, nan), sfh(nx * ny * kNumAgeBins, nan), zhb(nx * ny * kNumAgeBins, nan);
  const auto& cen = AgeBinCentresGyr();
  for (int64_t i = 0; i < nx * ny; ++i) {
    const SpaxelTruth& t = truth[i];
    if (!t.valid) continue;
    vmap[i] = t.v_kms; smap[i] = t.sigma_kms; mass[i] = t.mass; region[i] = t.region;
    // V-band light per bin from a dust-free rendering
    Rendered rd;
    fm_->Render(t.binned, DustParams{}, 0.02, &rd);
    double lt = 0;
    for (double v : rd.light_v) lt += v;
    double a_mw = 0, a_lw = 0, z_mw = 0, z_lw = 0;
    for (int b = 0; b < kNumAgeBins; ++b) {
      const double lw = lt > 0 ? rd.light_v[b] / lt : 0, mw = t.labels.mass_frac[b];
      a_mw += mw * std::log10(cen[b] * 1e9); a_lw += lw * std::log10(cen[b] * 1e9);
      z_mw += mw * t.labels.zh[b]; z_lw += lw * t.labels.zh[b];
      sfh[b * nx * ny + i] = mw;
      zhb[b * nx * ny + i] = t.labels.zh[b];
    }
    mwa[i] = a_mw; lwa[i] = a_lw; mwz[i] = z_mw; lwz[i] = z_lw;
  }
  CUBEFLOW_RETURN_NOT_OK(write_maps((fs::path(dir) / "kinematics.fits").string(),
                                    {{"V_STARS", vmap}, {"SIGMA_STARS", smap}}, {1, 1}, {"km/s", "km/s"}, {}));
  std::vector<std::pair<std::string, std::vector<double>>> truth_maps = {
      {"LW_LOGAGE", lwa}, {"MW_LOGAGE", mwa}, {"LW_ZH", lwz}, {"MW_ZH", mwz}, {"MASS", mass},
      {"SFH", sfh}, {"ZH_BINS", zhb}, {"V_TRUE", vmap}, {"SIGMA_TRUE", smap}, {"REGION", region}};
  std::vector<int> truth_planes = {1, 1, 1, 1, 1, kNumAgeBins, kNumAgeBins, 1, 1, 1};
  std::vector<std::string> truth_units = {"log10(yr)", "log10(yr)", "dex", "dex", "Msun", "", "dex", "km/s", "km/s",
                                          ""};
  // Noise-free band flux densities per spaxel (the input of the HST images), for photometry checks.
  for (int64_t b = 0; b < nb; ++b) {
    std::vector<double> pm(nx * ny);
    for (int64_t i = 0; i < nx * ny; ++i) pm[i] = phot_map[i * nb + b];
    truth_maps.emplace_back("PHOT_" + c.bands[b], std::move(pm));
    truth_planes.push_back(1);
    truth_units.emplace_back("erg/s/cm**2/Angstrom");
  }
  std::vector<std::string> history = Describe();
  history.push_back("REGION: 1 bulge, 2 bar, 3 arm, 4 H II region, 5 inner disc, 6 outer disc, 7 post-starburst,");
  history.push_back("8 quenched (0 in the classic layout)");
  CUBEFLOW_RETURN_NOT_OK(
      write_maps((fs::path(dir) / "truth.fits").string(), truth_maps, truth_planes, truth_units, history));
  // HST images
  const double r = c.pixscale / c.hst_pixscale;
  const int64_t hx = static_cast<int64_t>(std::lround(nx * r)), hy = static_cast<int64_t>(std::lround(ny * r));
  const double sig = 0.08 / kFwhmToSigma / c.hst_pixscale;
  const int hk = static_cast<int>(std::ceil(4 * sig));
  std::vector<double> k1(2 * hk + 1);
  double ksum = 0;
  for (int i = -hk; i <= hk; ++i) ksum += k1[i + hk] = std::exp(-0.5 * i * i / (sig * sig));
  for (double& v : k1) v /= ksum;
  for (int64_t b = 0; b < nb; ++b) {
    std::vector<double> img(hx * hy, 0.0), tmp(hx * hy, 0.0);
    for (int64_t j = 0; j < hy; ++j)
      for (int64_t i = 0; i < hx; ++i) {
        // MUSE spaxel coordinates of this HST pixel centre, bilinear
        const double mx = (i + 0.5) / r - 0.5, my = (j + 0.5) / r - 0.5;
        const int64_t x0 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(mx)), 0, nx - 2);
        const int64_t y0 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(my)), 0, ny - 2);
        const double fx = std::clamp(mx - x0, 0.0, 1.0), fy = std::clamp(my - y0, 0.0, 1.0);
        double s = 0, ws = 0;
        const double wts[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
        const int64_t idx[4] = {y0 * nx + x0, y0 * nx + x0 + 1, (y0 + 1) * nx + x0, (y0 + 1) * nx + x0 + 1};
        for (int q = 0; q < 4; ++q) {
          const double v = phot_map[idx[q] * nb + b];
          if (std::isfinite(v)) { s += wts[q] * v; ws += wts[q]; }
        }
        img[j * hx + i] = ws > 0.5 ? s / ws / (r * r) / PhotFlam(c.bands[b]) : 0.0;
      }
    for (int64_t j = 0; j < hy; ++j)
      for (int64_t i = 0; i < hx; ++i) {
        double s = 0;
        for (int q = -hk; q <= hk; ++q) s += k1[q + hk] * img[j * hx + std::clamp<int64_t>(i + q, 0, hx - 1)];
        tmp[j * hx + i] = s;
      }
    Rng rng(c.seed, static_cast<uint64_t>(b), 11);
    std::vector<float> out(hx * hy);
    double peak = 0;
    for (double v : tmp) peak = std::max(peak, v);
    for (int64_t j = 0; j < hy; ++j)
      for (int64_t i = 0; i < hx; ++i) {
        double s = 0;
        for (int q = -hk; q <= hk; ++q) s += k1[q + hk] * tmp[std::clamp<int64_t>(j + q, 0, hy - 1) * hx + i];
        out[j * hx + i] = static_cast<float>(c.noise ? s + 0.002 * peak * rng.Normal() : s);
      }
    const std::string path = (fs::path(dir) / ("hst_" + c.bands[b] + ".fits")).string();
    CUBEFLOW_ASSIGN_OR_RETURN(fits::AtomicFitsFile file, fits::AtomicFitsFile::Create(path, "HST image"));
    fitsfile* h = file.get();
    int s2 = 0;
    long a[2] = {static_cast<long>(hx), static_cast<long>(hy)};
    fits_create_img(h, FLOAT_IMG, 2, a, &s2);
    Key(h, "TELESCOP", std::string("HST"), "", &s2);
    Key(h, "INSTRUME", std::string("WFC3"), "", &s2);
    Key(h, "DETECTOR", std::string("UVIS"), "", &s2);
    Key(h, "FILTER", c.bands[b], "", &s2);
    Key(h, "BUNIT", std::string("ELECTRONS/S"), "", &s2);
    Key(h, "PHOTFLAM", PhotFlam(c.bands[b]), "inverse sensitivity, erg/cm2/A/e-", &s2);
    Key(h, "PHOTPLAM", fm_->pivots()[b], "pivot wavelength (A)", &s2);
    Key(h, "EXPTIME", 1000.0, "", &s2);
    CelestialWcs(h, c.ra, c.dec, (cx + 0.5) * r + 0.5, (cy + 0.5) * r + 0.5, c.hst_pixscale, &s2);
    fits_write_img(h, TFLOAT, 1, static_cast<LONGLONG>(out.size()), out.data(), &s2);
    CUBEFLOW_RETURN_NOT_OK(file.Check(s2));
    CUBEFLOW_RETURN_NOT_OK(file.Commit());
  }
  return Status::OK();
}

Status MockGalaxy::WriteTruthLibrary(const std::string& path, const ForwardModel& model, uint64_t noise_seed,
                                     int threads) const {
  if (model.config().obs.mass_label != "formed")
    return Status::Error("galaxy: the truth library needs a forward model with mass_label: formed (the galaxy's "
                         "truth is formed mass); got '" + model.config().obs.mass_label + "'");
  if (model.time_grid().size() != fm_->time_grid().size())
    return Status::Error("galaxy: the truth library's forward model has a different time grid (substeps_per_bin) "
                         "from the galaxy's; use the default spectrum.substeps_per_bin");
  const int64_t nx = cfg_.nx, ny = cfg_.ny;
  std::vector<int64_t> spax;
  for (int64_t i = 0; i < nx * ny; ++i)
    if (Truth(i % nx, i / nx).valid) spax.push_back(i);
  const int64_t n = static_cast<int64_t>(spax.size());
  LibraryData d = NewLibrary(model, n);
  std::vector<double> xs(n), ys(n), mass(n), vel(n), sig(n), fnorm(n);
  tbb::task_arena arena(threads > 0 ? threads : tbb::task_arena::automatic);
  arena.execute([&] {
    tbb::parallel_for(int64_t(0), n, [&](int64_t k) {
      const int64_t x = spax[k] % nx, y = spax[k] / nx;
      const SpaxelTruth t = Truth(x, y);
      Rendered r;
      model.Render(t.binned, t.dust, t.z_gas, &r);
      SimulatedObject o;
      o.kind = SfhKind::kSkewNormalBurst;
      o.sfh.z_final = t.z_gas;
      o.dust = t.dust;
      o.labels = t.labels;
      Rng rng(noise_seed, static_cast<uint64_t>(spax[k]), 0);
      model.Observe(r, rng, &o);
      SetLibraryRow(o, k, &d);
      xs[k] = static_cast<double>(x);
      ys[k] = static_cast<double>(y);
      mass[k] = t.mass;
      vel[k] = t.v_kms;
      sig[k] = t.sigma_kms;
      fnorm[k] = r.norm * t.mass * kLsunErg / (4.0 * M_PI * dist_cm_ * dist_cm_) / (1.0 + cfg_.redshift) * 1e20;
    });
  });
  d.meta["seed"] = std::to_string(noise_seed);
  d.meta["source"] = "mock galaxy (cubeflow simulate galaxy --seed " + std::to_string(cfg_.seed) + " --nx " +
                     std::to_string(nx) + " --ny " + std::to_string(ny) + "), one row per valid spaxel";
  namespace fs = std::filesystem;
  const std::string part = path + ".part";
  CUBEFLOW_RETURN_NOT_OK(WriteLibrary(part, d));
  // SPAXELS: where each row comes from, for summing rows over a bin
  fitsfile* f = nullptr;
  int st = 0;
  fits_open_file(&f, part.c_str(), READWRITE, &st);
  char* ttype[] = {const_cast<char*>("X"), const_cast<char*>("Y"), const_cast<char*>("MASS"),
                   const_cast<char*>("V_STARS"), const_cast<char*>("SIGMA_STARS"), const_cast<char*>("FLUXNORM")};
  char* tform[] = {const_cast<char*>("J"), const_cast<char*>("J"), const_cast<char*>("D"),
                   const_cast<char*>("D"), const_cast<char*>("D"), const_cast<char*>("D")};
  char* tunit[] = {const_cast<char*>("pix"), const_cast<char*>("pix"), const_cast<char*>("Msun"),
                   const_cast<char*>("km/s"), const_cast<char*>("km/s"),
                   const_cast<char*>("10**(-20)*erg/s/cm**2/Angstrom")};
  fits_create_tbl(f, BINARY_TBL, n, 6, ttype, tform, tunit, "SPAXELS", &st);
  fits_write_comment(f, "0-based cube pixel (X, Y) of each library row; V_STARS relative to systemic;", &st);
  fits_write_comment(f, "FLUXNORM: the spaxel's noise-free mean flux density in the normalisation window", &st);
  fits_write_comment(f, "(cube units): SPECTRA row * FLUXNORM is the spaxel's rest-frame spectrum.", &st);
  std::vector<int32_t> ix(n), iy(n);
  for (int64_t k = 0; k < n; ++k) { ix[k] = static_cast<int32_t>(xs[k]); iy[k] = static_cast<int32_t>(ys[k]); }
  if (n > 0) {
    fits_write_col(f, TINT, 1, 1, 1, n, ix.data(), &st);
    fits_write_col(f, TINT, 2, 1, 1, n, iy.data(), &st);
    fits_write_col(f, TDOUBLE, 3, 1, 1, n, mass.data(), &st);
    fits_write_col(f, TDOUBLE, 4, 1, 1, n, vel.data(), &st);
    fits_write_col(f, TDOUBLE, 5, 1, 1, n, sig.data(), &st);
    fits_write_col(f, TDOUBLE, 6, 1, 1, n, fnorm.data(), &st);
  }
  int st2 = 0;
  if (f) fits_close_file(f, &st2);
  if (st || st2) {
    std::error_code ec;
    fs::remove(part, ec);
    return Status::Error("galaxy: writing the SPAXELS table of " + path + ": " + CfitsioErrorText(st ? st : st2));
  }
  std::error_code ec;
  fs::rename(part, path, ec);
  if (ec) return Status::Error("galaxy: cannot rename " + part + " to " + path + ": " + ec.message());
  return Status::OK();
}

}  // namespace cubeflow::sim
