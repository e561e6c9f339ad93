#pragma once
/// \file torch_forward.hpp
/// \brief A differentiable copy of sim::ForwardModel::Render in libtorch, for posterior sampling
/// with a score-based diffusion prior (paper 001, issue #19; docs/diffusion.md).
///
/// TorchForwardModel takes the precomputed tables of a built sim::ForwardModel (every SSP
/// averaged over each time step, at every [M/H] of the grid, already broadened and rebinned onto
/// the output grid; photometry pieces; nebular line profiles) and evaluates the same sums as
/// Render with torch operations: linear interpolation of the templates in [M/H] (clamped at the
/// grid ends, as Render), the formed-mass-weighted sum over time steps, nebular lines from the
/// ionising photons of each population (line ratios from the gas [M/H]), Charlot & Fall
/// two-component dust (birth cloud on the steps younger than the dispersal age, ISM on all),
/// HST band fluxes, and the normalisation the inference nodes see (mean flux over the pixels with
/// centres in [norm_min, norm_max]; band fluxes divided by the same number). Gradients flow to
/// the history (masses and [M/H]) and to both optical depths. Noise is not modelled here: the
/// likelihood adds it (ForwardModel::Observe draws it for libraries).
///
/// Parametrisation (what the diffusion prior will model), Render(): per age bin b of the 16 bins
/// of the CNN and SBI (sim::AgeBinEdgesGyr()), x = (log10 m_b, [Z/H]_b), 32 numbers:
///  - the same bins and quantities as the labels the CNN and SBI emit (SfhLabels::mass_frac, zh),
///    so the derived quantities (mass- and light-weighted age and [Z/H], t10..t90) are computed
///    the same way for all three inference nodes, and the prior can be checked on those labels;
///  - log10 mass keeps masses positive for any real x and spans the many decades between bins
///    that a z-scored linear mass cannot; adding a constant to every log10 m_b leaves the
///    normalised output unchanged (the total mass is not observable from a normalised spectrum);
///  - 32 dimensions keep the score network small enough for seconds per bin (paper 001: 64 bins
///    x 2, hours per spectrum).
/// Inside a bin the star-formation rate is constant and [Z/H] is the bin's; the oldest bin
/// (10.6-17.8 Gyr) forms its stars only after the Big Bang (diffusion::BinSpan,
/// BinToStepWeights); the gas [Z/H] of the nebular lines is that of bin 0.
/// RenderSteps() takes the time-step history Render itself takes (sim::BinnedSfh), for exact
/// comparisons with the simulator and for priors with finer time resolution.
///
/// Internal to libs/nn (not installed: the installed headers compile without libtorch, as
/// tests/install/package_check checks); the diffusion node will reach it through a torch-free API.
///
/// Shapes: B objects per call; every input is [B] or [B, n], any floating dtype (converted to the
/// model's dtype, differentiably). Thread-safety: const methods may be called from many threads.

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/sfh.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::nn {

/// \brief Output of TorchForwardModel (all [B, ...], differentiable).
struct TorchRendered {
  torch::Tensor flux;     ///< [B, n_wave], normalised: mean 1 over the normalisation pixels
  torch::Tensor phot;     ///< [B, n_bands], band mean flux densities divided by the same norm
  torch::Tensor norm;     ///< [B], mean un-normalised flux in the window (L_sun/A per unit mass)
  torch::Tensor light_v;  ///< [B, 16], intrinsic V-band light per age bin (un-normalised)
  torch::Tensor q_h;      ///< [B], ionising photons/s per unit mass (float64 whatever the dtype: ~1e46)
};

class TorchForwardModel {
 public:
  /// Copies the tables of `fm` into tensors of `dtype` on `device` (kFloat64 for gradient
  /// checks and sampling; kFloat32 halves the memory). The templates are stored in float in the
  /// simulator, so kFloat64 reproduces Render up to its float accumulation (~1e-6).
  static Result<TorchForwardModel> Make(const sim::ForwardModel& fm, torch::Dtype dtype = torch::kFloat64,
                                        torch::Device device = torch::kCPU);

  int64_t n_steps() const { return n_steps_; }
  int64_t n_wave() const { return n_wave_; }
  int64_t n_bands() const { return n_bands_; }
  const std::vector<std::string>& bands() const { return bands_; }
  torch::Dtype dtype() const { return dtype_; }

  /// The diffusion prior's parametrisation (above): `log_mass` [B, 16] log10 formed mass per age
  /// bin (any common offset), `zh` [B, 16] [Z/H] = log10(Z / z_sun) per bin, `tau_bc`, `tau_ism`
  /// [B] optical depths at the dust pivot (ignored when the simulator's dust is disabled).
  TorchRendered Render(const torch::Tensor& log_mass, const torch::Tensor& zh, const torch::Tensor& tau_bc,
                       const torch::Tensor& tau_ism) const;

  /// The time-step history Render takes: `mass` [B, n_steps] formed mass per step (>= 0, any
  /// scale), `mh` [B, n_steps] [M/H] of each step, `gas_mh` [B] [Z/H] of the gas (line ratios).
  TorchRendered RenderSteps(const torch::Tensor& mass, const torch::Tensor& mh, const torch::Tensor& tau_bc,
                            const torch::Tensor& tau_ism, const torch::Tensor& gas_mh) const;

  /// Bin parameters -> step parameters as Render() expands them: [B, 16] -> [B, n_steps].
  torch::Tensor StepMass(const torch::Tensor& log_mass) const;
  torch::Tensor StepMh(const torch::Tensor& zh) const;

  /// Nebular line fluxes relative to H-alpha at gas [Z/H] `gas_mh` [B] -> [B, 9], as
  /// sim::NebularLineRatios (order of sim::NebularLineWavelengths()).
  torch::Tensor LineRatios(const torch::Tensor& gas_mh) const;

 private:
  TorchForwardModel() = default;
  torch::Tensor Cast(const torch::Tensor& t) const;
  /// Weights of the [M/H] grid points for [M/H] `mh` [B, K] -> [B, K, n_metal] (Render's linear
  /// interpolation, clamped at the grid ends).
  torch::Tensor MetalWeights(const torch::Tensor& mh) const;
  /// The unattenuated sums of the young (birth-cloud) and older populations.
  struct Parts {
    torch::Tensor young, old, pyoung, pold, ha_young, ha_old, q_h, light_v;
  };
  /// Lines, dust, bands and normalisation of the sums (the part of Render after the sums).
  TorchRendered Finish(Parts p, const torch::Tensor& gas_mh, const torch::Tensor& tau_bc_in,
                       const torch::Tensor& tau_ism_in) const;

  torch::Dtype dtype_ = torch::kFloat64;
  torch::Device device_ = torch::kCPU;
  int64_t n_steps_ = 0, n_metal_ = 0, n_wave_ = 0, n_coarse_ = 0, n_bands_ = 0, n_lines_ = 0;
  int64_t norm_first_ = 0, norm_end_ = 0;
  std::vector<std::string> bands_;
  std::vector<double> metal_;       // [M/H] grid of the SSPs
  torch::Tensor templates_;         // [n_steps * n_metal, n_wave]
  torch::Tensor phot_templates_;    // [n_steps * n_metal, n_coarse]
  torch::Tensor q_h_;               // [n_steps * n_metal], float64 (overflows float32)
  torch::Tensor halpha_;            // [n_steps * n_metal], H-alpha L_sun per M_sun: q_h (1 - f_esc) k
  torch::Tensor l_v_;               // [n_steps, n_metal]
  torch::Tensor young_;             // [n_steps, 1]: 1 for birth-cloud steps
  torch::Tensor step_bin_;          // [n_steps, 16] one-hot age bin of each step
  torch::Tensor bin_to_step_mass_;  // [16, n_steps] step duration / bin duration
  // Render() sums per (age bin, [M/H] grid point): the steps of a bin share its [Z/H] and their
  // masses are fixed fractions of the bin's, so their templates are summed once here (6x fewer
  // rows than the steps). Birth-cloud steps lie in the first `young_bins_` bins.
  int64_t young_bins_ = 0;
  torch::Tensor bin_tmpl_young_, bin_tmpl_old_;    // [young_bins * n_metal | 16 * n_metal, n_wave]
  torch::Tensor bin_phot_young_, bin_phot_old_;    // same rows, [.., n_coarse]
  torch::Tensor bin_ha_young_, bin_ha_old_;        // same rows
  torch::Tensor bin_q_h_;                          // [16 * n_metal], float64
  torch::Tensor bin_l_v_;                          // [16, n_metal]
  torch::Tensor dust_x_;            // [n_wave]
  torch::Tensor coarse_x_;          // [n_coarse]
  torch::Tensor coarse_band_;       // [n_coarse, n_bands] 1 where the coarse pixel belongs to the band
  torch::Tensor line_prof_;         // [n_lines, n_wave]
  torch::Tensor line_x_;            // [n_lines]
  torch::Tensor line_band_;         // [n_lines, n_bands]
  bool dust_ = true, nebular_ = true;
  double balmer_decrement_ = 2.86, sii_ratio_ = 1.4, z_sun_ = 0.019;
};

/// The time-step history Render takes for bin parameters, as TorchForwardModel::Render expands
/// them (diffusion::BinToStepWeights; masses normalised to sum 1; Z = z_sun 10^zh), with
/// `t_universe` = sim::CosmicTimeGyr(0, config.sfh.cosmology). For running the C++ simulator on
/// the same history (tests, posterior predictive checks).
sim::BinnedSfh BinnedFromBins(const sim::TimeGrid& grid, const std::vector<double>& log_mass,
                              const std::vector<double>& zh, double z_sun, double t_universe);

}  // namespace cubeflow::nn
