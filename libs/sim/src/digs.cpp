// The DIGS five-parameter model (Khullar et al. 2022); see digs.hpp and docs/digs.md.
#include "cubeflow/sim/digs.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cubeflow/spectral/spectral_ops.hpp"
#include "quadrature.hpp"

namespace cubeflow::sim {

namespace {

constexpr double kLsunErg = 3.828e33;
constexpr double kMpcCm = 3.0856775814913673e24;
constexpr double kFluxUnit = 1e-17;  // erg/s/cm^2/A

// Fraction of a delayed-tau history's mass formed within x = t / tau of its start, up to the
// factor tau: 1 - (1 + x) e^-x (0 for x <= 0). A series below x = 1e-2, where the closed form
// loses digits.
double DelayedTauCumulative(double x) {
  if (!(x > 0)) return 0.0;
  if (x < 1e-2) {
    const double x2 = x * x;
    return x2 * (0.5 - x / 3.0 + x2 / 8.0 - x2 * x / 30.0);
  }
  return -std::expm1(-x) - x * std::exp(-x);
}

}  // namespace

const std::array<std::string, kDigsNumParams>& DigsParamNames() {
  static const std::array<std::string, kDigsNumParams> kNames = {"log_mass", "log_z", "dust", "t_age", "tau"};
  return kNames;
}

DigsTheta DigsPrior::Draw(Rng& rng) const {
  DigsTheta t;
  t.log_mass = rng.Uniform(log_mass_min, log_mass_max);
  t.log_z = rng.Uniform(log_z_min, log_z_max);
  t.dust = rng.Uniform(dust_min, dust_max);
  t.t_age = rng.Uniform(t_age_min, t_age_max);
  t.tau = rng.LogUniform(tau_min, tau_max);
  return t;
}

DigsPrior DigsPrior::Central(double q_lo, double q_hi) const {
  auto inner = [&](double& lo, double& hi) {
    const double a = lo, b = hi;
    lo = a + q_lo * (b - a);
    hi = a + q_hi * (b - a);
  };
  DigsPrior p = *this;
  inner(p.log_mass_min, p.log_mass_max);
  inner(p.log_z_min, p.log_z_max);
  inner(p.dust_min, p.dust_max);
  inner(p.t_age_min, p.t_age_max);
  double lt_lo = std::log10(tau_min), lt_hi = std::log10(tau_max);
  inner(lt_lo, lt_hi);
  p.tau_min = std::pow(10.0, lt_lo);
  p.tau_max = std::pow(10.0, lt_hi);
  return p;
}

bool DigsPrior::Contains(const DigsTheta& t) const {
  return t.log_mass >= log_mass_min && t.log_mass <= log_mass_max && t.log_z >= log_z_min &&
         t.log_z <= log_z_max && t.dust >= dust_min && t.dust <= dust_max && t.t_age >= t_age_min &&
         t.t_age <= t_age_max && t.tau >= tau_min && t.tau <= tau_max;
}

Result<std::shared_ptr<const DigsModel>> DigsModel::Build(std::shared_ptr<const SspGrid> ssp,
                                                          const DigsConfig& config) {
  if (!ssp) return Status::Error("DIGS model: no SSP grid");
  CUBEFLOW_RETURN_NOT_OK(ssp->Validate());
  const DigsConfig& c = config;
  if (c.n_wave < 2 || !(c.wave_min > 0) || !(c.wave_max > c.wave_min))
    return Status::Error("DIGS model: need n_wave >= 2 and 0 < wave_min < wave_max");
  if (!(c.sigma_kms > 0)) return Status::Error("DIGS model: sigma_kms must be > 0");
  if (!(c.noise_frac >= 0)) return Status::Error("DIGS model: noise_frac must be >= 0");
  if (!(c.distance_mpc > 0)) return Status::Error("DIGS model: distance_mpc must be > 0");
  if (c.n_age_bins < 2 || !(c.age_bin_min > 0) || !(c.age_bin_max > c.age_bin_min))
    return Status::Error("DIGS model: need n_age_bins >= 2 and 0 < age_bin_min < age_bin_max");
  if (c.age_bin_max < c.prior.t_age_max)
    return Status::Error("DIGS model: age_bin_max (" + std::to_string(c.age_bin_max) +
                         " Gyr) must cover the prior's t_age_max (" + std::to_string(c.prior.t_age_max) + " Gyr)");
  if (!(c.prior.tau_min > 0) || !(c.prior.tau_max >= c.prior.tau_min))
    return Status::Error("DIGS model: the tau prior needs 0 < tau_min <= tau_max");
  if (!(c.t_age_floor > 0)) return Status::Error("DIGS model: t_age_floor must be > 0");
  const SspGrid& g = *ssp;
  std::shared_ptr<DigsModel> m(new DigsModel());
  m->cfg_ = c;
  m->ssp_ = ssp;
  m->n_wave_ = static_cast<size_t>(c.n_wave);
  m->n_metal_ = g.n_metal();

  // Output grid: n_wave log-lambda pixels between the outer edges wave_min and wave_max.
  WavelengthAxis axis;
  axis.n = c.n_wave;
  axis.log = true;
  axis.cdelt = std::log(c.wave_max / c.wave_min) / c.n_wave;
  axis.crval = std::log(c.wave_min) + 0.5 * axis.cdelt;
  axis.crpix = 1;
  m->wave_ = spectral::AxisCentres(axis);
  m->edges_ = spectral::AxisEdges(axis);

  // Convolution to a total sigma of sigma_kms: the templates' own resolution is subtracted in
  // quadrature (templates coarser than the target keep their resolution).
  const double fwhm_const = g.fwhm > 0 ? g.fwhm : 2.51;
  auto conv_sigma = [&](double l) {
    const double s = l * c.sigma_kms / spectral::kSpeedOfLightKms;
    const double s_ssp = (g.fwhm_wave.empty() ? fwhm_const : g.FwhmAt(l)) / spectral::kFwhmToSigma;
    return std::sqrt(std::max(s * s - s_ssp * s_ssp, 0.0));
  };
  const double margin = 6.0 * c.wave_max * c.sigma_kms / spectral::kSpeedOfLightKms + 10.0;
  if (g.wave.front() > c.wave_min - margin || g.wave.back() < c.wave_max + margin)
    return Status::Error("DIGS model: SSP '" + g.name + "' covers " + std::to_string(g.wave.front()) + "-" +
                         std::to_string(g.wave.back()) + " A; the model needs " +
                         std::to_string(c.wave_min - margin) + "-" + std::to_string(c.wave_max + margin) +
                         " A (the range plus the convolution margin); use an SSP grid that covers it");
  const size_t c0 = static_cast<size_t>(
      std::lower_bound(g.wave.begin(), g.wave.end(), c.wave_min - margin) - g.wave.begin());
  const size_t c1 = static_cast<size_t>(
      std::upper_bound(g.wave.begin(), g.wave.end(), c.wave_max + margin) - g.wave.begin());
  const std::vector<double> cut_wave(g.wave.begin() + c0, g.wave.begin() + c1);
  const auto broadener = spectral::GaussianBroadener::FromSigma(cut_wave, conv_sigma);

  // Age bins: [0, age_bin_min], then n_age_bins equal steps of log age up to age_bin_max.
  m->age_edges_.push_back(0.0);
  for (int k = 0; k <= c.n_age_bins; ++k)
    m->age_edges_.push_back(c.age_bin_min *
                            std::pow(c.age_bin_max / c.age_bin_min, static_cast<double>(k) / c.n_age_bins));
  m->n_bins_ = m->age_edges_.size() - 1;

  const size_t nb = m->n_bins_, nm = m->n_metal_, nw = m->n_wave_;
  m->tmpl_.assign(nb * nm * nw, 0.0);
  m->q_h_.assign(nb * nm, 0.0);
  std::vector<double> gx, gw;
  internal::GaussLegendre(std::clamp(c.ages_per_bin, 1, 4), &gx, &gw);
  std::vector<double> buf(g.n_wave()), acc(cut_wave.size()), conv(cut_wave.size());
  for (size_t k = 0; k < nb; ++k) {
    const double a0 = m->age_edges_[k], a1 = m->age_edges_[k + 1];
    for (size_t im = 0; im < nm; ++im) {
      const double mh = g.metal[im];
      std::fill(acc.begin(), acc.end(), 0.0);
      double q = 0;
      for (size_t s = 0; s < gx.size(); ++s) {
        const double age = 0.5 * (a0 + a1) + 0.5 * (a1 - a0) * gx[s];
        const double w = 0.5 * gw[s];
        const double la = std::log10(std::max(age, 1e-6) * 1e9);
        g.Interpolate(la, mh, buf.data());
        for (size_t i = 0; i < acc.size(); ++i) acc[i] += w * buf[c0 + i];
        q += w * (g.q_h.empty() ? FallbackQh(age) : g.QhAt(la, mh));
      }
      broadener.Apply(acc, conv);
      auto rs = spectral::Resample(cut_wave, conv, axis);
      double* dst = m->tmpl_.data() + (k * nm + im) * nw;
      for (size_t i = 0; i < nw; ++i) {
        if (!std::isfinite(rs.flux[i]))
          return Status::Error("DIGS model: non-finite template flux at " + std::to_string(m->wave_[i]) +
                               " A from SSP '" + g.name + "'");
        dst[i] = rs.flux[i];
      }
      m->q_h_[k * nm + im] = std::isfinite(q) ? q : 0.0;
    }
  }

  m->dust_x_.resize(nw);
  for (size_t i = 0; i < nw; ++i) m->dust_x_[i] = std::pow(m->wave_[i] / c.dust_pivot, -c.dust_slope);
  // Lines: Gaussian of the total dispersion, integrated over each output pixel (per Angstrom).
  for (double lam : NebularLineWavelengths()) {
    std::vector<double> prof;
    size_t first = 0;
    if (lam > m->edges_.front() && lam < m->edges_.back()) {
      const double sg = lam * c.sigma_kms / spectral::kSpeedOfLightKms;
      for (size_t i = 0; i < nw; ++i) {
        const double e0 = m->edges_[i], e1 = m->edges_[i + 1];
        if (e1 < lam - 8 * sg || e0 > lam + 8 * sg) continue;
        if (prof.empty()) first = i;
        const double frac =
            0.5 * (std::erf((e1 - lam) / (sg * M_SQRT2)) - std::erf((e0 - lam) / (sg * M_SQRT2)));
        prof.push_back(frac / (e1 - e0));
      }
    }
    m->line_first_.push_back(first);
    m->line_prof_.push_back(std::move(prof));
  }
  const double d = c.distance_mpc * kMpcCm;
  m->lum_to_flux_ = kLsunErg / (4.0 * M_PI * d * d) / kFluxUnit;
  return std::shared_ptr<const DigsModel>(m);
}

void DigsModel::AgeBinMass(double t_age, double tau, double* out) const {
  const double t = std::max(t_age, cfg_.t_age_floor);
  const double total = DelayedTauCumulative(t / tau);
  // Stars of age a formed at time t - a after the start; bin k holds ages [a_k, a_k+1].
  double prev = DelayedTauCumulative(t / tau);  // formed before age a_0 = 0, i.e. everything
  for (size_t k = 0; k < n_bins_; ++k) {
    const double next = DelayedTauCumulative((t - age_edges_[k + 1]) / tau);
    out[k] = (prev - next) / total;
    prev = next;
  }
}

void DigsModel::Render(const DigsTheta& theta, double* out) const {
  const size_t nw = n_wave_, nm = n_metal_, nb = n_bins_;
  const SspGrid& g = *ssp_;
  thread_local std::vector<double> mass;
  mass.resize(nb);
  AgeBinMass(theta.t_age, theta.tau, mass.data());
  const double mh = std::clamp(theta.log_z, g.metal.front(), g.metal.back());
  size_t m0 = 0, m1 = 0;
  double w1 = 0;
  if (nm > 1 && mh > g.metal.front()) {
    m1 = static_cast<size_t>(std::upper_bound(g.metal.begin(), g.metal.end(), mh) - g.metal.begin());
    if (m1 >= nm) {
      m0 = m1 = nm - 1;
    } else {
      m0 = m1 - 1;
      w1 = (mh - g.metal[m0]) / (g.metal[m1] - g.metal[m0]);
    }
  }
  std::fill(out, out + nw, 0.0);
  double q = 0;
  for (size_t k = 0; k < nb; ++k) {
    const double mk = mass[k];
    if (!(mk > 0)) continue;
    const double wa = mk * (1.0 - w1), wb = mk * w1;
    const double* __restrict__ ta = tmpl_.data() + (k * nm + m0) * nw;
    const double* __restrict__ tb = tmpl_.data() + (k * nm + m1) * nw;
    for (size_t i = 0; i < nw; ++i) out[i] += wa * ta[i] + wb * tb[i];
    q += wa * q_h_[k * nm + m0] + wb * q_h_[k * nm + m1];
  }
  if (cfg_.nebular) {
    const auto ratios = NebularLineRatios(cfg_.z_sun * std::pow(10.0, theta.log_z), cfg_.nebular_config, cfg_.z_sun);
    const double halpha = q * cfg_.nebular_config.halpha_per_qh * (1.0 - cfg_.nebular_config.f_esc) / kLsunErg;
    for (size_t l = 0; l < line_prof_.size(); ++l) {
      const auto& p = line_prof_[l];
      const double lum = halpha * ratios[l];
      for (size_t i = 0; i < p.size(); ++i) out[line_first_[l] + i] += lum * p[i];
    }
  }
  const double scale = std::pow(10.0, theta.log_mass) * lum_to_flux_;
  for (size_t i = 0; i < nw; ++i) out[i] *= scale * std::exp(-theta.dust * dust_x_[i]);
}

std::vector<double> DigsModel::Render(const DigsTheta& theta) const {
  std::vector<double> out(n_wave_);
  Render(theta, out.data());
  return out;
}

void DigsModel::Simulate(uint64_t seed, int64_t index, DigsObject* out) const {
  Rng prior_rng(seed, static_cast<uint64_t>(index), 0);
  SimulateNoise(cfg_.prior.Draw(prior_rng), seed, index, out);
}

void DigsModel::SimulateNoise(const DigsTheta& theta, uint64_t seed, int64_t index, DigsObject* out) const {
  Rng noise_rng(seed, static_cast<uint64_t>(index), 1);
  SimulateFrom(theta, noise_rng, out);
}

void DigsModel::SimulateFrom(const DigsTheta& theta, Rng& rng, DigsObject* out) const {
  out->theta = theta;
  out->model = Render(theta);
  out->flux.resize(n_wave_);
  for (size_t i = 0; i < n_wave_; ++i)
    out->flux[i] = out->model[i] * (1.0 + cfg_.noise_frac * rng.Normal());
}

double DigsModel::LogLikelihood(const DigsTheta& theta, const double* flux) const {
  thread_local std::vector<double> m;
  m.resize(n_wave_);
  Render(theta, m.data());
  const double f = cfg_.noise_frac;
  double ll = 0;
  for (size_t i = 0; i < n_wave_; ++i) {
    if (!(m[i] > 0)) return -std::numeric_limits<double>::infinity();
    const double sigma = f * m[i];
    const double r = (flux[i] - m[i]) / sigma;
    ll -= std::log(sigma) + 0.5 * r * r;
  }
  return ll;
}

Result<std::shared_ptr<const DigsModel>> BuildDigsModel(const SspSource& source, const DigsConfig& config) {
  CUBEFLOW_ASSIGN_OR_RETURN(auto grid, LoadSsp(source));
  return DigsModel::Build(grid, config);
}

}  // namespace cubeflow::sim
