// The differentiable forward model (libs/nn/src/torch_forward.hpp): sim::ForwardModel::Render
// in torch operations. Each step below names the lines of Render (libs/sim/src/observables.cpp)
// it reproduces.
#include "torch_forward.hpp"

#include <torch/torch.h>

#include <cmath>

#include "cubeflow/nn/history.hpp"
#include "cubeflow/sim/ages.hpp"

namespace cubeflow::nn {

namespace {

constexpr double kLsunErg = 3.828e33;  // as observables.cpp

torch::Tensor FromVector(const std::vector<double>& v, const torch::TensorOptions& o) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kFloat64)).to(o);
}
torch::Tensor FromVector(const std::vector<float>& v, const torch::TensorOptions& o) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kFloat32)).to(o);
}

}  // namespace

Result<TorchForwardModel> TorchForwardModel::Make(const sim::ForwardModel& fm, torch::Dtype dtype,
                                                  torch::Device device) {
  if (dtype != torch::kFloat64 && dtype != torch::kFloat32)
    return Status::Error("torch forward model: dtype must be float64 or float32");
  const sim::ForwardModel::Tables t = fm.tables();
  const sim::SimConfig& cfg = fm.config();
  TorchForwardModel m;
  m.dtype_ = dtype;
  m.device_ = device;
  const auto o = torch::TensorOptions().dtype(dtype).device(device);
  m.n_steps_ = static_cast<int64_t>(t.n_steps);
  m.n_metal_ = static_cast<int64_t>(t.n_metal);
  m.n_wave_ = static_cast<int64_t>(t.n_wave);
  m.n_coarse_ = static_cast<int64_t>(t.n_coarse);
  m.n_bands_ = static_cast<int64_t>(fm.bands().size());
  m.n_lines_ = static_cast<int64_t>(t.line_profiles.size());
  m.bands_ = fm.bands();
  m.metal_ = fm.ssp().metal;
  m.norm_first_ = static_cast<int64_t>(t.norm_first);
  m.norm_end_ = static_cast<int64_t>(t.norm_end);
  const int64_t js = m.n_steps_ * m.n_metal_;
  if (m.n_steps_ <= 0 || m.n_metal_ <= 0 || static_cast<int64_t>(t.templates.size()) != js * m.n_wave_ ||
      static_cast<int64_t>(t.phot_templates.size()) != js * m.n_coarse_ || m.norm_end_ <= m.norm_first_)
    return Status::Error("torch forward model: the simulator's tables have unexpected sizes");

  m.templates_ = FromVector(t.templates, o).reshape({js, m.n_wave_});
  m.phot_templates_ = m.n_coarse_ > 0 ? FromVector(t.phot_templates, o).reshape({js, m.n_coarse_})
                                      : torch::zeros({js, 0}, o);
  // Q_H (~1e46 photons/s per M_sun) overflows float32: kept in float64; the lines use the H-alpha
  // luminosity it gives (L_sun per M_sun, O(10)) in the model's dtype.
  m.q_h_ = FromVector(t.q_h, o.dtype(torch::kFloat64));
  const double line_k = cfg.nebular.halpha_per_qh * (1.0 - cfg.nebular.f_esc) / kLsunErg;
  std::vector<double> halpha(t.q_h.size());
  for (size_t i = 0; i < halpha.size(); ++i) halpha[i] = line_k * t.q_h[i];
  m.halpha_ = FromVector(halpha, o);
  m.l_v_ = FromVector(t.l_v, o).reshape({m.n_steps_, m.n_metal_});
  m.young_ = (torch::arange(m.n_steps_, o) < static_cast<double>(t.young_steps)).to(o).reshape({m.n_steps_, 1});

  // Age bins of the steps and the bin -> step expansion (constant SFR over each bin's span).
  const sim::TimeGrid& grid = fm.time_grid();
  std::vector<double> onehot(t.n_steps * sim::kNumAgeBins, 0.0);
  for (size_t j = 0; j < t.n_steps; ++j) onehot[j * sim::kNumAgeBins + grid.bin[j]] = 1.0;
  const std::vector<double> expand = diffusion::BinToStepWeights(grid, sim::CosmicTimeGyr(0.0, cfg.sfh.cosmology));
  m.step_bin_ = FromVector(onehot, o).reshape({m.n_steps_, sim::kNumAgeBins});
  m.bin_to_step_mass_ = FromVector(expand, o).reshape({sim::kNumAgeBins, m.n_steps_});

  // Dust curves at the output pixels, the coarse photometry pixels and the lines.
  m.dust_x_ = FromVector(t.dust_x, o);
  m.coarse_x_ = FromVector(t.coarse_x, o);
  std::vector<double> cb(t.n_coarse * fm.bands().size(), 0.0);
  for (size_t b = 0; b < fm.bands().size(); ++b)
    for (size_t c = t.coarse_first[b]; c < t.coarse_first[b] + t.coarse_len[b]; ++c) cb[c * fm.bands().size() + b] = 1.0;
  m.coarse_band_ = FromVector(cb, o).reshape({m.n_coarse_, m.n_bands_});
  std::vector<double> prof(t.line_profiles.size() * t.n_wave, 0.0), lb;
  for (size_t l = 0; l < t.line_profiles.size(); ++l) {
    for (size_t i = 0; i < t.line_profiles[l].size(); ++i)
      prof[l * t.n_wave + t.line_first[l] + i] = t.line_profiles[l][i];  // float -> double exactly
    for (double r : t.line_band[l]) lb.push_back(r);
  }
  m.line_prof_ = FromVector(prof, o).reshape({m.n_lines_, m.n_wave_});
  m.line_x_ = FromVector(t.line_x, o);
  m.line_band_ = FromVector(lb, o).reshape({m.n_lines_, m.n_bands_});

  // Per-bin sums of the step tables (Render()'s fast path).
  {
    const int64_t nbin = sim::kNumAgeBins;
    const auto wy = m.bin_to_step_mass_ * m.young_.t(), wo = m.bin_to_step_mass_ * (1.0 - m.young_.t());  // [16, n_steps]
    m.young_bins_ = 0;
    for (int64_t b = 0; b < nbin; ++b)
      if (wy[b].abs().sum().item<double>() > 0) m.young_bins_ = b + 1;
    const auto wyb = wy.slice(0, 0, m.young_bins_);
    auto per_bin = [&](const torch::Tensor& w, const torch::Tensor& table) {  // table [n_steps * n_metal, k]
      const int64_t k = table.size(1);
      return torch::einsum("bj,jmk->bmk", {w.to(table.dtype()), table.reshape({m.n_steps_, m.n_metal_, k})})
          .reshape({w.size(0) * m.n_metal_, k});
    };
    m.bin_tmpl_young_ = per_bin(wyb, m.templates_);
    m.bin_tmpl_old_ = per_bin(wo, m.templates_);
    m.bin_phot_young_ = per_bin(wyb, m.phot_templates_);
    m.bin_phot_old_ = per_bin(wo, m.phot_templates_);
    m.bin_ha_young_ = per_bin(wyb, m.halpha_.unsqueeze(1)).squeeze(1);
    m.bin_ha_old_ = per_bin(wo, m.halpha_.unsqueeze(1)).squeeze(1);
    m.bin_q_h_ = per_bin(m.bin_to_step_mass_, m.q_h_.unsqueeze(1)).squeeze(1);
    m.bin_l_v_ = per_bin(m.bin_to_step_mass_, m.l_v_.reshape({-1, 1})).reshape({nbin, m.n_metal_});
  }

  m.dust_ = cfg.dust.enabled;
  m.nebular_ = cfg.nebular.enabled;
  m.balmer_decrement_ = cfg.nebular.balmer_decrement;
  m.sii_ratio_ = cfg.nebular.sii_ratio;
  m.z_sun_ = cfg.sfh.z_sun;
  return m;
}

torch::Tensor TorchForwardModel::Cast(const torch::Tensor& t) const { return t.to(device_, dtype_); }

torch::Tensor TorchForwardModel::StepMass(const torch::Tensor& log_mass) const {
  return torch::pow(10.0, Cast(log_mass)).matmul(bin_to_step_mass_);
}

torch::Tensor TorchForwardModel::StepMh(const torch::Tensor& zh) const {
  return Cast(zh).matmul(step_bin_.t());
}

TorchRendered TorchForwardModel::Render(const torch::Tensor& log_mass, const torch::Tensor& zh,
                                        const torch::Tensor& tau_bc, const torch::Tensor& tau_ism) const {
  // The same sums as RenderSteps(StepMass(log_mass), StepMh(zh), ...), over the per-bin tables.
  const auto mass = torch::pow(10.0, Cast(log_mass)), z = Cast(zh);
  const int64_t nb = mass.size(0), nbin = mass.size(1);
  const auto coef = mass.unsqueeze(2) * MetalWeights(z);  // [B, 16, n_metal]
  const auto co = coef.reshape({nb, nbin * n_metal_});
  const auto cy = coef.slice(1, 0, young_bins_).reshape({nb, young_bins_ * n_metal_});
  Parts p;
  p.young = cy.matmul(bin_tmpl_young_);
  p.old = co.matmul(bin_tmpl_old_);
  p.pyoung = cy.matmul(bin_phot_young_);
  p.pold = co.matmul(bin_phot_old_);
  p.ha_young = cy.matmul(bin_ha_young_);
  p.ha_old = co.matmul(bin_ha_old_);
  p.q_h = co.to(torch::kFloat64).matmul(bin_q_h_);
  p.light_v = (coef * bin_l_v_.unsqueeze(0)).sum(2);
  return Finish(std::move(p), z.select(1, 0), tau_bc, tau_ism);
}

torch::Tensor TorchForwardModel::MetalWeights(const torch::Tensor& mh) const {
  // Hat functions: min(rise from the left neighbour, fall to the right one), clamped (Render's
  // m0/m1/w1).
  const int64_t nm = n_metal_;
  if (nm == 1) return torch::ones({mh.size(0), mh.size(1), 1}, mh.options());
  const auto mhc = mh.clamp(metal_.front(), metal_.back());
  std::vector<torch::Tensor> cols;
  for (int64_t k = 0; k < nm; ++k) {
    auto up = k > 0 ? (mhc - metal_[k - 1]) / (metal_[k] - metal_[k - 1]) : torch::ones_like(mhc);
    auto down = k + 1 < nm ? (metal_[k + 1] - mhc) / (metal_[k + 1] - metal_[k]) : torch::ones_like(mhc);
    cols.push_back(torch::minimum(up, down).clamp(0.0, 1.0));
  }
  return torch::stack(cols, 2);
}

torch::Tensor TorchForwardModel::LineRatios(const torch::Tensor& gas_mh) const {
  // sim::NebularLineRatios: 12 + log(O/H) = 8.69 + log10(max(Z, 1e-6) / z_sun).
  const auto oh = 8.69 + Cast(gas_mh).clamp_min(std::log10(1e-6 / z_sun_));
  const auto n2 = ((oh - 8.90) / 0.57).clamp(-2.5, -0.25);
  const auto o3n2 = ((8.73 - oh) / 0.32).clamp(-1.0, 2.5);
  const auto o3hb = (o3n2 + n2).clamp(-1.5, 0.9);
  const auto s2 = (-0.55 + 0.25 * (oh - 8.69)).clamp(-1.3, -0.2);
  const auto o1 = (-1.7 + 0.3 * (oh - 8.69)).clamp(-2.5, -1.0);
  const double hb = 1.0 / balmer_decrement_, r = sii_ratio_;
  const auto oiii5007 = torch::pow(10.0, o3hb) * hb;
  const auto nii6584 = torch::pow(10.0, n2);
  const auto sii = torch::pow(10.0, s2);
  return torch::stack({torch::full_like(oh, hb), oiii5007 / 2.98, oiii5007, torch::pow(10.0, o1), nii6584 / 3.05,
                       torch::ones_like(oh), nii6584, sii * (r / (1.0 + r)), sii / (1.0 + r)},
                      1);
}

TorchRendered TorchForwardModel::RenderSteps(const torch::Tensor& mass_in, const torch::Tensor& mh_in,
                                             const torch::Tensor& tau_bc_in, const torch::Tensor& tau_ism_in,
                                             const torch::Tensor& gas_mh) const {
  const auto mass = Cast(mass_in), mh = Cast(mh_in);
  const int64_t nb = mass.size(0), nm = n_metal_;
  const auto coef = mass.unsqueeze(2) * MetalWeights(mh);  // [B, n_steps, n_metal]
  const auto cy = (coef * young_.unsqueeze(0)).reshape({nb, n_steps_ * nm});
  const auto co = (coef * (1.0 - young_).unsqueeze(0)).reshape({nb, n_steps_ * nm});
  Parts p;
  p.young = cy.matmul(templates_);
  p.old = co.matmul(templates_);
  p.pyoung = cy.matmul(phot_templates_);
  p.pold = co.matmul(phot_templates_);
  p.ha_young = cy.matmul(halpha_);
  p.ha_old = co.matmul(halpha_);
  p.q_h = (cy + co).to(torch::kFloat64).matmul(q_h_);
  p.light_v = (coef * l_v_.unsqueeze(0)).sum(2).matmul(step_bin_);  // [B, 16]
  return Finish(std::move(p), gas_mh, tau_bc_in, tau_ism_in);
}

TorchRendered TorchForwardModel::Finish(Parts p, const torch::Tensor& gas_mh, const torch::Tensor& tau_bc_in,
                                        const torch::Tensor& tau_ism_in) const {
  const int64_t nb = p.old.size(0);
  auto young = p.young, old = p.old;
  const auto &pyoung = p.pyoung, &pold = p.pold, &ha_young = p.ha_young, &ha_old = p.ha_old;
  TorchRendered out;
  out.q_h = p.q_h;
  out.light_v = p.light_v;

  // Nebular lines, added before dust (they share the birth-cloud + ISM attenuation).
  torch::Tensor l_young, l_old;  // [B, n_lines]
  if (nebular_ && n_lines_ > 0) {
    const auto ratios = LineRatios(gas_mh);
    l_young = ha_young.unsqueeze(1) * ratios;
    l_old = ha_old.unsqueeze(1) * ratios;
    young = young + l_young.matmul(line_prof_);
    old = old + l_old.matmul(line_prof_);
  }

  // Dust: exp(-tau_ism x) (old + exp(-tau_bc x) young) on the spectrum, the coarse photometry
  // pixels and the lines. Render interpolates the spectrum's curves every 8 pixels (< 1e-6).
  torch::Tensor flux, phot_cont, line_att_young, line_att_old;
  if (dust_) {
    const auto tb = Cast(tau_bc_in).reshape({nb, 1}), ti = Cast(tau_ism_in).reshape({nb, 1});
    flux = torch::exp(-ti * dust_x_) * (old + torch::exp(-tb * dust_x_) * young);
    phot_cont = torch::exp(-ti * coarse_x_) * (pold + torch::exp(-tb * coarse_x_) * pyoung);
    line_att_old = torch::exp(-ti * line_x_);
    line_att_young = line_att_old * torch::exp(-tb * line_x_);
  } else {
    flux = old + young;
    phot_cont = pold + pyoung;
    line_att_old = line_att_young = torch::ones({nb, n_lines_}, old.options());
  }
  auto phot = phot_cont.matmul(coarse_band_);  // [B, n_bands]
  if (nebular_ && n_lines_ > 0) phot = phot + (line_att_old * l_old + line_att_young * l_young).matmul(line_band_);

  // Normalisation as the nodes see it: mean flux over the pixels in [norm_min, norm_max].
  out.norm = flux.slice(1, norm_first_, norm_end_).mean(1);
  const auto inv = 1.0 / out.norm.unsqueeze(1);
  out.flux = flux * inv;
  out.phot = phot * inv;
  return out;
}

sim::BinnedSfh BinnedFromBins(const sim::TimeGrid& grid, const std::vector<double>& log_mass,
                              const std::vector<double>& zh, double z_sun, double t_universe) {
  const std::vector<double> w = diffusion::BinToStepWeights(grid, t_universe);
  sim::BinnedSfh b;
  b.mass.resize(grid.size());
  b.z.resize(grid.size());
  double tot = 0;
  for (size_t j = 0; j < grid.size(); ++j) {
    const int k = grid.bin[j];
    b.mass[j] = std::pow(10.0, log_mass.at(k)) * w[k * grid.size() + j];
    b.z[j] = z_sun * std::pow(10.0, zh.at(k));
    tot += b.mass[j];
  }
  if (tot > 0)
    for (double& m : b.mass) m /= tot;
  return b;
}

}  // namespace cubeflow::nn
