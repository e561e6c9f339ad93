#include "cubeflow/sim/observables.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "cubeflow/spectral/spectral_ops.hpp"
#include "quadrature.hpp"

namespace cubeflow::sim {

using spectral::AxisCentres;
using spectral::AxisEdges;
using spectral::GaussianBroadener;
using spectral::kFwhmToSigma;
using spectral::kSpeedOfLightKms;
using spectral::MuseLsfFwhm;
using spectral::Resample;
namespace {

constexpr double kLsunErg = 3.828e33;

double PaperLsfFwhm(double lambda) {
  if (lambda <= 4800) return 2.9;
  if (lambda >= 6500) return 2.4;
  return 2.9 + (2.4 - 2.9) * (lambda - 4800) / (6500 - 4800);
}

double Interp1(const std::vector<double>& x, const std::vector<double>& y, double v) {
  if (x.empty() || v < x.front() || v > x.back()) return 0.0;
  auto it = std::upper_bound(x.begin(), x.end(), v);
  if (it == x.end()) return y.back();
  const size_t i = static_cast<size_t>(it - x.begin());
  if (i == 0) return y.front();
  const double t = (v - x[i - 1]) / (x[i] - x[i - 1]);
  return y[i - 1] + t * (y[i] - y[i - 1]);
}

Result<Filter> FindFilter(const std::string& band, const std::string& dir) {
  if (!dir.empty()) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      std::string lower = name, key = band;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      std::transform(key.begin(), key.end(), key.begin(), ::tolower);
      if (lower.find(key) != std::string::npos) return LoadFilter(e.path().string(), band);
    }
    if (ec) return Status::Error("photometry.filter_dir '" + dir + "': " + ec.message());
  }
  return BuiltinFilter(band);
}

}  // namespace

double FallbackQh(double age_gyr) {
  const double t_myr = std::max(age_gyr * 1e3, 1e-3);
  if (t_myr <= 3.0) return std::pow(10.0, 46.6);
  return std::pow(10.0, 46.6) * std::pow(t_myr / 3.0, -5.0);
}

DustParams DrawDust(const DustPrior& p, Rng& rng) {
  DustParams d;
  if (!p.enabled) return d;
  d.tau_bc = rng.LogUniform(p.tau_bc_min, p.tau_bc_max);
  if (p.tau_ism_sigma > 0) {
    int tries = 0;
    do { d.tau_ism = rng.Normal(p.tau_ism_mean, p.tau_ism_sigma); } while (d.tau_ism < 0 && ++tries < 1000);
    d.tau_ism = std::max(d.tau_ism, 0.0);
  } else {
    d.tau_ism = std::max(p.tau_ism_mean, 0.0);
  }
  return d;
}

double DustTransmission(double lambda, double tau, double slope, double pivot) {
  return std::exp(-tau * std::pow(lambda / pivot, -slope));
}

const std::vector<double>& NebularLineWavelengths() {
  static const std::vector<double> kW = {4861.33, 4958.91, 5006.84, 6300.30, 6548.05,
                                         6562.80, 6583.45, 6716.44, 6730.82};
  return kW;
}
const std::vector<std::string>& NebularLineNames() {
  static const std::vector<std::string> kN = {"Hbeta",   "[OIII]4959", "[OIII]5007",
                                              "[OI]6300", "[NII]6548", "Halpha",
                                              "[NII]6584", "[SII]6717", "[SII]6731"};
  return kN;
}

std::vector<double> NebularLineRatios(double z_gas, const NebularConfig& cfg, double z_sun) {
  const double oh = 8.69 + std::log10(std::max(z_gas, 1e-6) / z_sun);
  const double n2 = std::clamp((oh - 8.90) / 0.57, -2.5, -0.25);    // log [NII]6584/Ha
  const double o3n2 = std::clamp((8.73 - oh) / 0.32, -1.0, 2.5);
  const double o3hb = std::clamp(o3n2 + n2, -1.5, 0.9);              // log [OIII]5007/Hb
  const double s2 = std::clamp(-0.55 + 0.25 * (oh - 8.69), -1.3, -0.2);  // log [SII]sum/Ha
  const double o1 = std::clamp(-1.7 + 0.3 * (oh - 8.69), -2.5, -1.0);    // log [OI]6300/Ha
  const double hb = 1.0 / cfg.balmer_decrement;
  const double oiii5007 = std::pow(10.0, o3hb) * hb;
  const double nii6584 = std::pow(10.0, n2);
  const double sii = std::pow(10.0, s2);
  const double r = cfg.sii_ratio;
  return {hb, oiii5007 / 2.98, oiii5007, std::pow(10.0, o1), nii6584 / 3.05, 1.0, nii6584,
          sii * r / (1.0 + r), sii / (1.0 + r)};
}

Result<std::shared_ptr<const ForwardModel>> ForwardModel::Build(std::shared_ptr<const SspGrid> ssp,
                                                                const SimConfig& config) {
  if (!ssp) return Status::Error("forward model: no SSP grid");
  CUBEFLOW_RETURN_NOT_OK(ssp->Validate());
  std::shared_ptr<ForwardModel> fm(new ForwardModel());
  fm->cfg_ = config;
  fm->ssp_ = ssp;
  const auto& cfg = fm->cfg_;
  const auto& obs = cfg.obs;
  const SspGrid& g = *ssp;
  if (obs.wave.n < 2) return Status::Error("forward model: spectrum.n_wave must be >= 2");
  if (obs.mass_label != "formed" && obs.mass_label != "living")
    return Status::Error("forward model: mass_label must be 'formed' or 'living', got '" + obs.mass_label + "'");
  if (obs.mass_label == "living" && g.mass_star.empty())
    return Status::Error("forward model: mass_label 'living' needs surviving-mass fractions, which SSP '" +
                         g.name + "' does not provide; use mass_label: formed");
  fm->grid_ = MakeTimeGrid(obs.substeps_per_bin);
  fm->n_steps_ = fm->grid_.size();
  fm->n_metal_ = g.n_metal();
  for (size_t j = 0; j < fm->n_steps_; ++j)
    if (fm->grid_.Hi(j) <= cfg.dust.bc_age_gyr + 1e-9) fm->young_steps_ = j + 1;
  fm->wave_ = AxisCentres(obs.wave);
  fm->n_wave_ = fm->wave_.size();
  const std::vector<double> out_edges = AxisEdges(obs.wave);

  // --- broadening: SSP resolution -> LSF (+) sigma_kms --------------------------------------
  // The templates' FWHM at each wavelength: SspGrid::fwhm_wave / fwhm, else spectrum.ssp_fwhm or 2.51 A.
  const double ssp_fwhm_const = g.fwhm > 0 ? g.fwhm : (obs.ssp_fwhm > 0 ? obs.ssp_fwhm : 2.51);
  const bool ssp_fwhm_varies = !g.fwhm_wave.empty();
  auto ssp_fwhm = [&g, ssp_fwhm_const, ssp_fwhm_varies](double l) {
    return ssp_fwhm_varies ? g.FwhmAt(l) : ssp_fwhm_const;
  };
  std::function<double(double)> lsf_fwhm;
  if (obs.lsf == "paper") lsf_fwhm = PaperLsfFwhm;
  else if (obs.lsf == "bacon2017") lsf_fwhm = MuseLsfFwhm;
  else if (obs.lsf == "none") lsf_fwhm = ssp_fwhm;
  else return Status::Error("forward model: spectrum.lsf must be paper, bacon2017 or none, got '" + obs.lsf + "'");
  const double sig_v = obs.sigma_kms;
  // total sigma (Angstrom) of the output spectrum at lambda
  auto total_sigma = [&](double l) {
    const double s_lsf = lsf_fwhm(l) / kFwhmToSigma;
    const double s_v = l * sig_v / kSpeedOfLightKms;
    return std::sqrt(s_lsf * s_lsf + s_v * s_v);
  };
  auto conv_sigma = [&](double l) {
    const double s = total_sigma(l), s_ssp = ssp_fwhm(l) / kFwhmToSigma;
    return std::sqrt(std::max(s * s - s_ssp * s_ssp, 0.0));
  };
  // Templates coarser than the target cannot be sharpened: where their FWHM exceeds the target's
  // by more than kCoarseTolerance, the spectrum keeps the templates' resolution. An error unless
  // spectrum.allow_coarse_ssp; then resolution_note() says where and by how much.
  if (obs.lsf != "none") {
    constexpr double kCoarseTolerance = 1.05;
    double worst = 1.0, worst_l = 0, first = 0, last = 0;
    for (double l : fm->wave_) {
      const double ratio = ssp_fwhm(l) / (total_sigma(l) * kFwhmToSigma);
      if (ratio > kCoarseTolerance) {
        if (first == 0) first = l;
        last = l;
      }
      if (ratio > worst) {
        worst = ratio;
        worst_l = l;
      }
    }
    if (first > 0) {
      char buf[400];
      std::snprintf(buf, sizeof buf,
                    "SSP '%s' is coarser than the target resolution at %.0f-%.0f A (up to %.2fx at %.0f A: "
                    "template FWHM %.2f A, target %.2f A = LSF %s (+) %.0f km/s); the spectrum keeps the "
                    "templates' resolution there",
                    g.name.c_str(), first, last, worst, worst_l, ssp_fwhm(worst_l),
                    total_sigma(worst_l) * kFwhmToSigma, obs.lsf.c_str(), sig_v);
      fm->resolution_note_ = buf;
      if (!obs.allow_coarse_ssp)
        return Status::Error("forward model: " + fm->resolution_note_ +
                             ". Raise spectrum.sigma_kms, shorten the wavelength range, use another SSP, or set "
                             "spectrum.allow_coarse_ssp: true to accept it");
    }
  }
  const double lo = out_edges.front(), hi = out_edges.back();
  if (g.wave.front() > lo || g.wave.back() < hi)
    return Status::Error("forward model: SSP '" + g.name + "' covers " + std::to_string(g.wave.front()) + "-" +
                         std::to_string(g.wave.back()) + " A, not the spectrum range " + std::to_string(lo) +
                         "-" + std::to_string(hi) + " A; change spectrum.wave_start/n_wave or the SSP");
  const double margin = 6.0 * conv_sigma(hi) + 5.0;
  const size_t c0 = static_cast<size_t>(std::lower_bound(g.wave.begin(), g.wave.end(), lo - margin) - g.wave.begin());
  size_t c1 = static_cast<size_t>(std::upper_bound(g.wave.begin(), g.wave.end(), hi + margin) - g.wave.begin());
  c1 = std::min(c1, g.n_wave());
  const size_t c0b = c0 > 0 ? c0 - 1 : 0;
  std::vector<double> cut_wave(g.wave.begin() + c0b, g.wave.begin() + c1);
  const bool need_conv = (obs.lsf != "none" || sig_v > 0);
  GaussianBroadener broadener;
  if (need_conv) broadener = GaussianBroadener::FromSigma(cut_wave, conv_sigma);

  // --- photometry filters ----------------------------------------------------------------
  std::vector<Filter> filters;
  for (const auto& b : obs.bands) {
    auto f = FindFilter(b, obs.filter_dir);
    if (!f.ok()) return f.status();
    filters.push_back(*f);
  }
  auto vf = BuiltinFilter("V");
  if (!vf.ok()) return vf.status();
  const Filter vfilter = *vf;
  const size_t nb = filters.size();
  fm->band_names_ = obs.bands;
  // native-grid weights w_i (trapezoid) and coarse pixels of <= 0.5 % in lambda
  std::vector<double> dl(g.n_wave());
  for (size_t i = 0; i < g.n_wave(); ++i) {
    const double a = g.wave[i > 0 ? i - 1 : i], b = g.wave[i + 1 < g.n_wave() ? i + 1 : i];
    dl[i] = 0.5 * (b - a);
  }
  std::vector<std::vector<std::pair<size_t, double>>> band_w(nb);  // (native index, weight)
  std::vector<std::vector<size_t>> band_coarse(nb);                 // coarse id per entry
  for (size_t b = 0; b < nb; ++b) {
    const Filter& f = filters[b];
    fm->pivots_.push_back(PivotWavelength(f));
    double full = 0;
    for (size_t i = 0; i + 1 < f.wave.size(); ++i)
      full += 0.5 * (f.throughput[i] * f.wave[i] + f.throughput[i + 1] * f.wave[i + 1]) * (f.wave[i + 1] - f.wave[i]);
    double norm = 0;
    for (size_t i = 0; i < g.n_wave(); ++i) {
      const double t = Interp1(f.wave, f.throughput, g.wave[i]);
      if (t <= 0) continue;
      const double w = t * g.wave[i] * dl[i];
      band_w[b].push_back({i, w});
      norm += w;
    }
    if (full <= 0 || norm < 0.99 * full)
      return Status::Error("forward model: band " + f.name + " (" + std::to_string(f.wave.front()) + "-" +
                           std::to_string(f.wave.back()) + " A) is not covered by SSP '" + g.name + "' (" +
                           std::to_string(g.wave.front()) + "-" + std::to_string(g.wave.back()) +
                           " A); remove it from photometry.bands or use an SSP library that covers it");
    for (auto& e : band_w[b]) e.second /= norm;
    // coarse grouping
    fm->coarse_first_.push_back(fm->coarse_x_.size());
    double start_l = -1, sum_w = 0, sum_wl = 0;
    size_t count = 0;
    auto flush = [&]() {
      if (count == 0) return;
      const double lc = sum_w > 0 ? sum_wl / sum_w : start_l;
      fm->coarse_x_.push_back(std::pow(lc / cfg.dust.pivot, -cfg.dust.slope));
      sum_w = sum_wl = 0; count = 0;
    };
    for (auto& e : band_w[b]) {
      const double l = g.wave[e.first];
      if (count > 0 && l > start_l * 1.005) flush();
      if (count == 0) start_l = l;
      sum_w += e.second; sum_wl += e.second * l; ++count;
      band_coarse[b].push_back(fm->coarse_x_.size());
    }
    flush();
    fm->coarse_len_.push_back(fm->coarse_x_.size() - fm->coarse_first_.back());
  }
  fm->n_coarse_ = fm->coarse_x_.size();

  // --- templates ---------------------------------------------------------------------------
  const size_t nj = fm->n_steps_, nm = fm->n_metal_, nw = fm->n_wave_;
  fm->tmpl_.assign(nj * nm * nw, 0.0f);
  fm->q_h_.assign(nj * nm, 0.0);
  fm->l_v_.assign(nj * nm, 0.0);
  fm->living_.assign(nj * nm, 1.0);
  fm->phot_tmpl_.assign(nj * nm * fm->n_coarse_, 0.0);
  std::vector<double> gx, gw;
  internal::GaussLegendre(std::clamp(obs.ages_per_step, 1, 4), &gx, &gw);
  std::vector<double> buf(g.n_wave()), acc(g.n_wave()), conv(cut_wave.size());
  for (size_t j = 0; j < nj; ++j) {
    const double a0 = fm->grid_.Lo(j), a1 = fm->grid_.Hi(j);
    std::vector<double> ages, wts;
    if (gx.size() == 1) {
      ages = {a0 > 0 ? std::sqrt(a0 * a1) : 0.5 * a1};
      wts = {1.0};
    } else {
      for (size_t q = 0; q < gx.size(); ++q) {
        ages.push_back(0.5 * (a0 + a1) + 0.5 * (a1 - a0) * gx[q]);
        wts.push_back(0.5 * gw[q]);
      }
    }
    for (size_t m = 0; m < nm; ++m) {
      const double mh = g.metal[m];
      std::fill(acc.begin(), acc.end(), 0.0);
      double q = 0, living = 0;
      for (size_t s = 0; s < ages.size(); ++s) {
        const double la = std::log10(std::max(ages[s], 1e-5) * 1e9);
        g.Interpolate(la, mh, buf.data());
        for (size_t i = 0; i < buf.size(); ++i) acc[i] += wts[s] * buf[i];
        q += wts[s] * (g.q_h.empty() ? FallbackQh(ages[s]) : g.QhAt(la, mh));
        living += wts[s] * (g.mass_star.empty() ? 1.0 : g.InterpolateScalar(g.mass_star, la, mh));
      }
      const size_t jm = j * nm + m;
      fm->q_h_[jm] = q;
      fm->living_[jm] = living;
      fm->l_v_[jm] = MeanFluxDensity(vfilter, g.wave, acc);
      // spectrum: convolve (cut) and resample
      std::span<const double> cut(acc.data() + c0b, cut_wave.size());
      if (need_conv) broadener.Apply(cut, conv);
      else std::copy(cut.begin(), cut.end(), conv.begin());
      auto rs = Resample(cut_wave, conv, obs.wave);
      float* dst = fm->tmpl_.data() + jm * nw;
      for (size_t i = 0; i < nw; ++i) dst[i] = static_cast<float>(rs.flux[i]);
      // photometry pieces
      double* pt = fm->phot_tmpl_.data() + jm * fm->n_coarse_;
      for (size_t b = 0; b < nb; ++b)
        for (size_t e = 0; e < band_w[b].size(); ++e)
          pt[band_coarse[b][e]] += band_w[b][e].second * acc[band_w[b][e].first];
    }
  }
  for (float v : fm->tmpl_)
    if (!std::isfinite(v))
      return Status::Error("forward model: non-finite template flux after resampling SSP '" + g.name +
                           "' (does it cover the spectrum range with margin?)");

  // --- dust curve, lines, normalisation window ----------------------------------------------
  fm->dust_x_.resize(nw);
  for (size_t i = 0; i < nw; ++i) fm->dust_x_[i] = static_cast<float>(std::pow(fm->wave_[i] / cfg.dust.pivot, -cfg.dust.slope));
  const auto& lw = NebularLineWavelengths();
  for (size_t l = 0; l < lw.size(); ++l) {
    const double lam = lw[l];
    fm->line_x_.push_back(static_cast<float>(std::pow(lam / cfg.dust.pivot, -cfg.dust.slope)));
    const double sg = need_conv ? total_sigma(lam) : 0.0;
    std::vector<float> prof;
    size_t first = 0;
    if (lam > lo && lam < hi) {
      const double half = std::max(6.0 * sg, 0.0);
      size_t k0 = static_cast<size_t>(std::upper_bound(out_edges.begin(), out_edges.end(), lam - half) - out_edges.begin());
      k0 = k0 > 0 ? k0 - 1 : 0;
      size_t k1 = static_cast<size_t>(std::upper_bound(out_edges.begin(), out_edges.end(), lam + half) - out_edges.begin());
      k1 = std::min(k1, nw);
      first = k0;
      for (size_t k = k0; k < k1; ++k) {
        const double e0 = out_edges[k], e1 = out_edges[k + 1];
        double frac;
        if (sg > 0) frac = 0.5 * (std::erf((e1 - lam) / (sg * M_SQRT2)) - std::erf((e0 - lam) / (sg * M_SQRT2)));
        else frac = (lam >= e0 && lam < e1) ? 1.0 : 0.0;
        prof.push_back(static_cast<float>(frac / (e1 - e0)));
      }
    }
    fm->line_first_.push_back(first);
    fm->line_prof_.push_back(std::move(prof));
    std::vector<double> resp(nb, 0.0);
    for (size_t b = 0; b < nb; ++b) {
      const Filter& f = filters[b];
      double full = 0;
      for (size_t i = 0; i + 1 < f.wave.size(); ++i)
        full += 0.5 * (f.throughput[i] * f.wave[i] + f.throughput[i + 1] * f.wave[i + 1]) * (f.wave[i + 1] - f.wave[i]);
      resp[b] = full > 0 ? Interp1(f.wave, f.throughput, lam) * lam / full : 0.0;
    }
    fm->line_band_.push_back(resp);
  }
  size_t na = nw, nb_ = 0;
  for (size_t i = 0; i < nw; ++i)
    if (fm->wave_[i] >= obs.norm_min && fm->wave_[i] <= obs.norm_max) { na = std::min(na, i); nb_ = i + 1; }
  if (nb_ <= na) return Status::Error("forward model: normalisation window " + std::to_string(obs.norm_min) + "-" +
                                      std::to_string(obs.norm_max) + " A has no pixel of the spectrum grid");
  fm->norm_pix_ = {na, nb_};
  if (!cfg.noise.error_spectrum.empty() && cfg.noise.error_spectrum.size() != nw)
    return Status::Error("forward model: noise.error_spectrum has " + std::to_string(cfg.noise.error_spectrum.size()) +
                         " values, the spectrum grid " + std::to_string(nw));
  if (cfg.noise.enabled && cfg.noise.snr.empty()) return Status::Error("forward model: noise.snr is empty");
  return std::shared_ptr<const ForwardModel>(fm);
}

void ForwardModel::Render(const BinnedSfh& binned, const DustParams& dust, double z_gas, Rendered* out) const {
  const size_t nw = n_wave_, nc = n_coarse_, nm = n_metal_;
  const SspGrid& g = *ssp_;
  thread_local std::vector<float> young, old;
  thread_local std::vector<double> pyoung, pold;
  young.assign(nw, 0.0f);
  old.assign(nw, 0.0f);
  pyoung.assign(nc, 0.0);
  pold.assign(nc, 0.0);
  double q_young = 0, q_old = 0;
  out->light_v.fill(0.0);
  const double z_sun = cfg_.sfh.z_sun;
  for (size_t j = 0; j < n_steps_; ++j) {
    const double mass = binned.mass[j];
    if (!(mass > 0)) continue;
    const double mh = std::log10(std::max(binned.z[j], 1e-8) / z_sun);
    size_t m0 = 0, m1 = 0;
    double w1 = 0;
    if (nm > 1) {
      if (mh <= g.metal.front()) { m0 = m1 = 0; }
      else if (mh >= g.metal.back()) { m0 = m1 = nm - 1; }
      else {
        m1 = static_cast<size_t>(std::upper_bound(g.metal.begin(), g.metal.end(), mh) - g.metal.begin());
        m0 = m1 - 1;
        w1 = (mh - g.metal[m0]) / (g.metal[m1] - g.metal[m0]);
      }
    }
    const bool is_young = j < young_steps_;
    float* dst = is_young ? young.data() : old.data();
    double* pdst = is_young ? pyoung.data() : pold.data();
    const size_t ms[2] = {m0, m1};
    const double ws[2] = {1.0 - w1, w1};
    for (int k = 0; k < 2; ++k) {
      if (ws[k] <= 0 || (k == 1 && m1 == m0)) continue;
      const double w = mass * (m1 == m0 ? 1.0 : ws[k]);
      const size_t jm = j * nm + ms[k];
      const float wf = static_cast<float>(w);
      const float* __restrict__ src = tmpl_.data() + jm * nw;
      float* __restrict__ d = dst;
      for (size_t i = 0; i < nw; ++i) d[i] += wf * src[i];
      const double* ps = phot_tmpl_.data() + jm * nc;
      for (size_t c = 0; c < nc; ++c) pdst[c] += w * ps[c];
      (is_young ? q_young : q_old) += w * q_h_[jm];
      out->light_v[grid_.bin[j]] += w * l_v_[jm];
    }
  }
  out->q_h = q_young + q_old;
  // nebular lines (added before dust: they share the birth-cloud + ISM attenuation)
  const size_t nl = line_prof_.size();
  std::vector<double> l_young(nl, 0.0), l_old(nl, 0.0);
  if (cfg_.nebular.enabled) {
    const auto ratios = NebularLineRatios(z_gas, cfg_.nebular, z_sun);
    const double k = cfg_.nebular.halpha_per_qh * (1.0 - cfg_.nebular.f_esc) / kLsunErg;
    for (size_t l = 0; l < nl; ++l) {
      l_young[l] = k * q_young * ratios[l];
      l_old[l] = k * q_old * ratios[l];
      const auto& p = line_prof_[l];
      for (size_t i = 0; i < p.size(); ++i) {
        young[line_first_[l] + i] += static_cast<float>(l_young[l] * p[i]);
        old[line_first_[l] + i] += static_cast<float>(l_old[l] * p[i]);
      }
    }
  }
  out->flux.resize(nw);
  const bool use_dust = cfg_.dust.enabled;
  const float tb = static_cast<float>(dust.tau_bc), ti = static_cast<float>(dust.tau_ism);
  if (use_dust) {
    // The attenuation curves are smooth: evaluate exp() every kStride pixels and interpolate
    // linearly (relative error < 1e-6 for tau <= 10), then apply in one vectorisable pass.
    constexpr size_t kStride = 8;
    thread_local std::vector<float> t_ism, t_bc;
    t_ism.resize(nw);
    t_bc.resize(nw);
    for (size_t a = 0; a < nw; a += kStride) {
      const size_t b = std::min(a + kStride, nw - 1);
      const float ia = std::exp(-ti * dust_x_[a]), ib = std::exp(-ti * dust_x_[b]);
      const float ba = std::exp(-tb * dust_x_[a]), bb = std::exp(-tb * dust_x_[b]);
      const size_t end = std::min(a + kStride, nw);
      const float inv = b > a ? 1.0f / static_cast<float>(b - a) : 0.0f;
      for (size_t i = a; i < end; ++i) {
        const float t = static_cast<float>(i - a) * inv;
        t_ism[i] = ia + t * (ib - ia);
        t_bc[i] = ba + t * (bb - ba);
      }
    }
    float* f = out->flux.data();
    const float* o = old.data();
    const float* y = young.data();
    for (size_t i = 0; i < nw; ++i) f[i] = t_ism[i] * (o[i] + t_bc[i] * y[i]);
  } else {
    for (size_t i = 0; i < nw; ++i) out->flux[i] = old[i] + young[i];
  }
  const size_t nbands = band_names_.size();
  out->phot.assign(nbands, 0.0);
  for (size_t b = 0; b < nbands; ++b) {
    double s = 0;
    for (size_t c = coarse_first_[b]; c < coarse_first_[b] + coarse_len_[b]; ++c) {
      if (use_dust) {
        const double x = coarse_x_[c];
        s += std::exp(-dust.tau_ism * x) * (pold[c] + std::exp(-dust.tau_bc * x) * pyoung[c]);
      } else {
        s += pold[c] + pyoung[c];
      }
    }
    for (size_t l = 0; l < nl; ++l) {
      const double r = line_band_[l][b];
      if (r <= 0) continue;
      double t_ism = 1, t_bc = 1;
      if (use_dust) { t_ism = std::exp(-dust.tau_ism * line_x_[l]); t_bc = std::exp(-dust.tau_bc * line_x_[l]); }
      s += r * t_ism * (l_old[l] + t_bc * l_young[l]);
    }
    out->phot[b] = s;
  }
  double sum = 0;
  for (size_t i = norm_pix_[0]; i < norm_pix_[1]; ++i) sum += out->flux[i];
  out->norm = sum / static_cast<double>(norm_pix_[1] - norm_pix_[0]);
}

size_t ForwardModel::NearestMetal(double mh) const {
  const SspGrid& g = *ssp_;
  size_t best = 0;
  for (size_t mm = 1; mm < n_metal_; ++mm)
    if (std::abs(g.metal[mm] - mh) < std::abs(g.metal[best] - mh)) best = mm;
  return best;
}

double ForwardModel::LivingFraction(const BinnedSfh& binned) const {
  double formed = 0, living = 0;
  for (size_t j = 0; j < n_steps_ && j < binned.mass.size(); ++j) {
    const double m = binned.mass[j];
    if (!(m > 0)) continue;
    formed += m;
    living += m * living_[j * n_metal_ + NearestMetal(std::log10(std::max(binned.z[j], 1e-8) / cfg_.sfh.z_sun))];
  }
  return formed > 0 ? living / formed : 1.0;
}

void ForwardModel::Simulate(uint64_t seed, int64_t index, SimulatedObject* out) const {
  Rng rng(seed, static_cast<uint64_t>(index), 0);
  const SfhKind kind = DrawSfhKind(cfg_.sfh, rng);
  const Sfh sfh = DrawSfh(cfg_.sfh, kind, rng);
  const DustParams dust = DrawDust(cfg_.dust, rng);
  SimulateFrom(sfh, dust, rng, out);
}

void ForwardModel::SimulateFrom(const Sfh& sfh, const DustParams& dust, Rng& rng, SimulatedObject* out) const {
  out->kind = sfh.kind;
  out->sfh = sfh;
  out->dust = dust;
  const BinnedSfh binned = IntegrateSfh(sfh, grid_);
  out->labels = ComputeLabels(sfh, grid_, binned);
  if (cfg_.obs.mass_label == "living") {
    std::array<double, kNumAgeBins> m{};
    for (size_t j = 0; j < n_steps_; ++j) {
      // nearest metal for the surviving fraction (smooth in [M/H])
      const size_t best = NearestMetal(std::log10(binned.z[j] / cfg_.sfh.z_sun));
      m[grid_.bin[j]] += binned.mass[j] * living_[j * n_metal_ + best];
    }
    double tot = 0;
    for (double v : m) tot += v;
    for (int i = 0; i < kNumAgeBins; ++i) out->labels.mass_frac[i] = static_cast<float>(tot > 0 ? m[i] / tot : 0);
  }
  Rendered r;
  Render(binned, dust, sfh.z_final, &r);
  Observe(r, rng, out);
}

void ForwardModel::Observe(const Rendered& r, Rng& rng, SimulatedObject* out) const {
  double lv = 0;
  for (double v : r.light_v) lv += v;
  for (int i = 0; i < kNumAgeBins; ++i) out->light_frac[i] = static_cast<float>(lv > 0 ? r.light_v[i] / lv : 0);
  const size_t nw = n_wave_, nb = band_names_.size();
  const double inv = r.norm > 0 ? 1.0 / r.norm : 1.0;
  out->spectrum.resize(nw);
  out->spectrum_err.assign(nw, 0.0f);
  out->phot.resize(nb);
  out->phot_err.assign(nb, 0.0f);
  const auto& nz = cfg_.noise;
  double snr = 0;
  if (nz.enabled) {
    const size_t k = std::min(static_cast<size_t>(rng.Uniform() * nz.snr.size()), nz.snr.size() - 1);
    snr = nz.snr[k];
  }
  out->snr = static_cast<float>(snr);
  double err_scale = 0;
  if (nz.enabled && !nz.error_spectrum.empty()) {
    double s = 0;
    for (size_t i = norm_pix_[0]; i < norm_pix_[1]; ++i) s += nz.error_spectrum[i];
    s /= static_cast<double>(norm_pix_[1] - norm_pix_[0]);
    err_scale = s > 0 ? 1.0 / (s * snr) : 0.0;
  }
  for (size_t i = 0; i < nw; ++i) {
    const double f = r.flux[i] * inv;
    double e = 0;
    if (nz.enabled && snr > 0) {
      e = nz.error_spectrum.empty() ? std::sqrt(std::max(f, 1e-4)) / snr : nz.error_spectrum[i] * err_scale;
    }
    out->spectrum_err[i] = static_cast<float>(e);
    out->spectrum[i] = static_cast<float>(e > 0 ? f + e * rng.Normal() : f);
  }
  for (size_t b = 0; b < nb; ++b) {
    const double p = r.phot[b] * inv;
    const double e = (nz.enabled && nz.phot_snr > 0) ? std::abs(p) / nz.phot_snr : 0.0;
    out->phot_err[b] = static_cast<float>(e);
    out->phot[b] = static_cast<float>(e > 0 ? p + e * rng.Normal() : p);
  }
}

}  // namespace cubeflow::sim
