// Posterior sampling with the diffusion prior (cubeflow/nn/diffusion_posterior.hpp,
// docs/diffusion.md): predictor-corrector sampling of prior score + CLA likelihood score through
// the differentiable forward model (torch_forward.hpp).
#include "cubeflow/nn/diffusion_posterior.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <optional>

#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/rng.hpp"
#include "cubeflow/strings.hpp"
#include "threads.hpp"
#include "torch_forward.hpp"

namespace cubeflow::diffusion {

namespace {

/// Finite-difference step of the Jacobian, in state units (z-scores; float32 renders).
constexpr double kJacobianStep = 1e-3;
/// Standardised dust coordinates are clamped to this before rendering (exp overflow at the
/// highest noise levels; far outside the dust prior).
constexpr double kDustClamp = 8.0;
/// States drawn for the diagonal approximation of A A^T.
constexpr int64_t kDiagDraws = 512;

torch::Tensor Tensor(const std::vector<double>& v) { return torch::tensor(v, torch::kFloat64); }

/// The metric K = L L^T [N, D, D] of the preconditioned Langevin steps (refinement and adjusted).
struct CholeskyMetric {
  torch::Tensor chol;  // L
  explicit CholeskyMetric(const torch::Tensor& k) : chol(torch::linalg_cholesky(k)) {}
  /// K^-1 g [N, D].
  torch::Tensor Solve(const torch::Tensor& g) const { return torch::cholesky_solve(g.unsqueeze(2), chol).squeeze(2); }
  /// L^-T xi [N, D]: noise with covariance K^-1 from standard normal xi [N, D, 1].
  torch::Tensor Noise(const torch::Tensor& xi) const {
    return torch::linalg_solve_triangular(chol.transpose(1, 2), xi, /*upper=*/true).squeeze(2);
  }
  /// v^T K v = |L^T v|^2 per row [N].
  torch::Tensor Norm2(const torch::Tensor& v) const {
    return torch::matmul(chol.transpose(1, 2), v.unsqueeze(2)).squeeze(2).pow(2).sum(1);
  }
};

}  // namespace

DerivedQuantities Derive(const PosteriorDraw& d, double t_universe) {
  DerivedQuantities q;
  q.mass_frac = MassFractions(d.x);
  q.t = AssemblyTimes(q.mass_frac, t_universe);
  const auto& centres = sim::AgeBinCentresGyr();
  double sl = 0;
  for (double l : d.light_v) sl += l;
  for (int b = 0; b < kNumBins; ++b) {
    const double la = std::log10(centres[b] * 1e9), zh = d.x[kNumBins + b], l = sl > 0 ? d.light_v[b] / sl : 0;
    q.mw_logage += q.mass_frac[b] * la;
    q.mw_zh += q.mass_frac[b] * zh;
    q.lw_logage += l * la;
    q.lw_zh += l * zh;
  }
  return q;
}

struct PosteriorSampler::Impl {
  std::shared_ptr<const PriorModel> prior;
  std::shared_ptr<const sim::ForwardModel> fm;
  std::unique_ptr<nn::TorchForwardModel> torch_fm;
  std::unique_ptr<nn::TorchForwardModel> torch_fm32;  // float32 copy for the Jacobian (a preconditioner)
  torch::Tensor mean, sd;  // [32] scaler
  double mu_bc = 0, s_bc = 1, mu_ism = 0, s_ism = 1;
  double t_u = 13.47;
  torch::Tensor diag_aat;  // [n_wave + n_bands]: variance of S over N(0, I) states (cla: diagonal)

  /// State [N, 34] -> rendered (normalised flux [N, n_wave], phot [N, n_bands], light_v).
  nn::TorchRendered RenderState(const torch::Tensor& s, bool fast = false) const {
    auto x = s.slice(1, 0, kHistoryDim) * sd + mean;
    auto lm = x.slice(1, 0, kNumBins);
    // The normalised output does not depend on a common offset of the log masses: keep 10^lm <= 1.
    lm = (lm - std::get<0>(lm.max(1, true)).detach()).clamp_min(-60.0);
    auto zh = x.slice(1, kNumBins, kHistoryDim);
    auto vbc = s.select(1, kHistoryDim).clamp(-kDustClamp, kDustClamp);
    auto vism = s.select(1, kHistoryDim + 1).clamp(-kDustClamp, kDustClamp);
    return (fast ? torch_fm32 : torch_fm)
        ->Render(lm, zh, torch::exp(mu_bc + s_bc * vbc), (mu_ism + s_ism * vism).clamp_min(0.0));
  }
  /// Observed vector S(state) [N, P]: the flux pixels then the bands.
  torch::Tensor Observed(const torch::Tensor& s, bool with_phot, bool fast = false) const {
    auto r = RenderState(s, fast);
    return with_phot ? torch::cat({r.flux, r.phot}, 1) : r.flux;
  }
  /// H = A^T diag(w) A [N, D, D] with A the Jacobian of Observed, by one-sided finite differences
  /// in float32 (a preconditioner: the scores themselves are exact, float64). One coordinate at a
  /// time: 34 renders of N rows stay in cache (one render of 34 N rows is 2x slower).
  torch::Tensor GaussNewton(const torch::Tensor& s, const torch::Tensor& w, bool with_phot) const {
    torch::NoGradGuard ng;
    auto base = Observed(s, with_phot, true);  // [N, P]
    std::vector<torch::Tensor> cols;
    for (int64_t k = 0; k < s.size(1); ++k) {
      auto pert = s.clone();
      pert.select(1, k).add_(kJacobianStep);
      cols.push_back((Observed(pert, with_phot, true) - base) / kJacobianStep);
    }
    auto a = torch::stack(cols, 1).to(torch::kFloat64);  // [N, D, P]
    return torch::matmul(a * w.unsqueeze(0), a.transpose(1, 2));
  }
  /// Score of the prior at noise level sigma: the network on the history, the analytic Gaussian on
  /// the dust coordinates.
  torch::Tensor PriorScore(const torch::Tensor& s, double sigma) const {
    auto z = s.slice(1, 0, kHistoryDim).contiguous();
    std::vector<double> zv(z.data_ptr<double>(), z.data_ptr<double>() + z.numel());
    auto sp = Tensor(prior->Score(zv, sigma)).reshape({s.size(0), kHistoryDim});
    return torch::cat({sp, -s.slice(1, kHistoryDim, kPosteriorDim) / (1.0 + sigma * sigma)}, 1);
  }
  /// Gradient of the Gaussian log-likelihood sum_p w_p (y_p - S_p(s))^2 / -2 [N, D]; the
  /// log-likelihood of each row [N] in `ll` when given.
  torch::Tensor LikelihoodGradient(const torch::Tensor& s, const torch::Tensor& y, const torch::Tensor& w,
                                   bool with_phot, torch::Tensor* ll = nullptr) const {
    auto sg = s.detach().clone().requires_grad_(true);
    auto r = y - Observed(sg, with_phot);
    auto rows = -0.5 * (w * r * r).sum(1);
    auto g = torch::autograd::grad({rows.sum()}, {sg})[0].detach();
    if (ll) *ll = rows.detach();
    return g;
  }
  /// log p_sigma(b) - log p_sigma(a) per row: the line integral of the prior's score from a to b
  /// (4-point Gauss-Lobatto; exact for a score cubic along the segment). `score_a`, `score_b`: the
  /// scores at the ends, which the caller has.
  torch::Tensor PriorLogRatio(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& score_a,
                              const torch::Tensor& score_b, double sigma) const {
    const double c = 0.5 / std::sqrt(5.0);
    auto d = b - a;
    auto inner = PriorScore(a + (0.5 - c) * d, sigma) + PriorScore(a + (0.5 + c) * d, sigma);
    return ((score_a + score_b) / 12.0 + inner * (5.0 / 12.0)).mul(d).sum(1);
  }
  /// The prior's curvature -d score / d s at noise level sigma [N, D, D] by central differences
  /// of the score, symmetrised, its eigenvalues clipped to [lo, hi] (positive definite; below
  /// 1 / sigma^2, which bounds the curvature of a density smoothed at sigma).
  torch::Tensor PriorPrecision(const torch::Tensor& s, double sigma, double lo, double hi) const {
    constexpr double kStep = 0.01;  // z units, << sigma
    std::vector<torch::Tensor> rows;
    for (int64_t k = 0; k < s.size(1); ++k) {
      auto up = s.clone(), down = s.clone();
      up.select(1, k).add_(kStep);
      down.select(1, k).sub_(kStep);
      rows.push_back((PriorScore(down, sigma) - PriorScore(up, sigma)) / (2 * kStep));
    }
    auto p = torch::stack(rows, 1);
    auto [values, vectors] = torch::linalg_eigh(0.5 * (p + p.transpose(1, 2)));
    return torch::matmul(vectors * values.clamp(lo, hi).unsqueeze(1), vectors.transpose(1, 2));
  }
  Status Refine(torch::Tensor& s, const torch::Tensor& y, const torch::Tensor& w, bool with_phot,
                const PosteriorOptions& o, at::Generator& gen) const;
  Status Adjust(torch::Tensor& s, const torch::Tensor& y, const torch::Tensor& w, bool with_phot,
                const PosteriorOptions& o, at::Generator& gen, SampleStats* stats) const;
};

/// The log10 masses of `x` as log10 mass fractions (sum of 10^x is 1), those at or below
/// kLogMassFloor + kFloorSnap set to the floor (empty bins).
History NormalisedHistory(History x) {
  double top = -std::numeric_limits<double>::infinity();
  for (int b = 0; b < kNumBins; ++b) top = std::max(top, x[b]);
  double tot = 0;
  for (int b = 0; b < kNumBins; ++b) tot += std::pow(10.0, x[b] - top);
  for (int b = 0; b < kNumBins; ++b) {
    const double lf = x[b] - top - std::log10(tot);
    x[b] = lf <= kLogMassFloor + kFloorSnap ? kLogMassFloor : lf;
  }
  return x;
}

/// Preconditioned unadjusted Langevin dynamics on p_sigma(x) p(y | x) (PosteriorOptions::refine_*):
/// s <- s + eps K^-1 grad + sqrt(2 eps) L^-T xi, K = H + I / scale^2 = L L^T. In the directions
/// the data constrain (H >> 1 / scale^2) a step contracts the distance to the likelihood's optimum
/// by (1 - eps); elsewhere it moves eps scale^2 along the prior's score with noise sqrt(2 eps)
/// scale, which must stay below refine_sigma: the score network is trained on states within a
/// few sigma of its data, and a preconditioner from the prior's own curvature (larger steps where
/// the prior is flat) sent the states off it (docs/diffusion.md). The adjusted steps (Adjust) can
/// take that preconditioner: their accept/reject step refuses such moves.
Status PosteriorSampler::Impl::Refine(torch::Tensor& s, const torch::Tensor& y, const torch::Tensor& w,
                                      bool with_phot, const PosteriorOptions& o, at::Generator& gen) const {
  if (!(o.refine_step > 0 && o.refine_step <= 1) || !(o.refine_sigma > 0) || !(o.refine_scale > 0))
    return Status::Error("posterior sampler: refine_step must lie in (0, 1], refine_sigma and refine_scale > 0");
  const int64_t n = s.size(0), D = s.size(1);
  const auto prior_precision = torch::eye(D, torch::kFloat64).unsqueeze(0) / (o.refine_scale * o.refine_scale);
  std::optional<CholeskyMetric> metric;
  for (int64_t k = 0; k < o.refine_steps; ++k) {
    if (k % o.jacobian_every == 0) metric.emplace(GaussNewton(s, w, with_phot) + prior_precision);
    auto g = PriorScore(s, o.refine_sigma) + LikelihoodGradient(s, y, w, with_phot);
    auto xi = torch::randn({n, D, 1}, gen, torch::kFloat64);
    s = s + o.refine_step * metric->Solve(g) + std::sqrt(2.0 * o.refine_step) * metric->Noise(xi);
    if (!torch::isfinite(s).all().item<bool>())
      return Status::Error("posterior sampler: the state became non-finite at refinement step " +
                           std::to_string(k + 1) + " of " + std::to_string(o.refine_steps));
  }
  return Status::OK();
}

/// Metropolis-adjusted Langevin steps (PosteriorOptions::adjust_*) on log p_sigma(s) + log p(y | s)
/// with the fixed preconditioner K^-1 = (L L^T)^-1: proposal s' = s + h K^-1 g(s) + sqrt(2 h) L^-T xi,
/// accepted with probability min(1, pi(s') q(s | s') / (pi(s) q(s' | s))). The chains are the
/// samples; one step size h per call, adapted on the mean acceptance over them during the first
/// half of the steps (log h moves by (acceptance - target) / sqrt(k + 1)), then held, so the
/// second half is a fixed pi-invariant kernel.
Status PosteriorSampler::Impl::Adjust(torch::Tensor& s, const torch::Tensor& y, const torch::Tensor& w,
                                      bool with_phot, const PosteriorOptions& o, at::Generator& gen,
                                      SampleStats* stats) const {
  if (!(o.adjust_accept > 0 && o.adjust_accept < 1))
    return Status::Error("posterior sampler: adjust_accept must lie in (0, 1)");
  const int64_t n = s.size(0), D = s.size(1), adapt = o.adjust_steps / 2;
  const double sigma = o.refine_sigma;
  // K = H + P at the chains' start, held fixed (a fixed kernel keeps pi invariant): H from the
  // data, P the prior's curvature, which sets the scale of the directions the data leave free.
  const CholeskyMetric metric(GaussNewton(s, w, with_phot) +
                              PriorPrecision(s, sigma, 1.0, 1.0 / (o.refine_scale * o.refine_scale)));
  torch::Tensor ll, ll_new;
  auto prior_g = PriorScore(s, sigma);
  auto drift = metric.Solve(prior_g + LikelihoodGradient(s, y, w, with_phot, &ll));  // K^-1 g of the state
  double h = o.refine_step, accepted = 0;
  int64_t counted = 0;
  for (int64_t k = 0; k < o.adjust_steps; ++k) {
    auto xi = torch::randn({n, D, 1}, gen, torch::kFloat64);
    auto prop = s + h * drift + std::sqrt(2.0 * h) * metric.Noise(xi);
    auto prior_g_new = PriorScore(prop, sigma);
    auto drift_new = metric.Solve(prior_g_new + LikelihoodGradient(prop, y, w, with_phot, &ll_new));
    // log q(s' | s) = -|xi|^2 / 2; log q(s | s') = -|s - s' - h K^-1 g'|_K^2 / (4 h).
    auto back = s - prop - h * drift_new;
    auto log_alpha = PriorLogRatio(s, prop, prior_g, prior_g_new, sigma) + ll_new - ll -
                     metric.Norm2(back) / (4.0 * h) + xi.squeeze(2).pow(2).sum(1) / 2.0;
    log_alpha = torch::where(torch::isfinite(log_alpha), log_alpha, torch::full_like(log_alpha, -1e300));
    auto u = torch::rand({n}, gen, torch::kFloat64);
    auto take = torch::log(u) < log_alpha;
    auto take_col = take.unsqueeze(1);
    s = torch::where(take_col, prop, s);
    drift = torch::where(take_col, drift_new, drift);
    prior_g = torch::where(take_col, prior_g_new, prior_g);
    ll = torch::where(take, ll_new, ll);
    const double mean_alpha = log_alpha.clamp_max(0.0).exp().mean().item<double>();
    if (k < adapt) {
      h = std::clamp(h * std::exp((mean_alpha - o.adjust_accept) / std::sqrt(k + 1.0)), 1e-4, 1.0);
    } else {
      accepted += take.to(torch::kFloat64).mean().item<double>();
      ++counted;
    }
  }
  if (stats) {
    stats->acceptance = counted > 0 ? accepted / counted : 0;
    stats->adjust_step = h;
  }
  return Status::OK();
}

PosteriorSampler::PosteriorSampler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PosteriorSampler::PosteriorSampler(PosteriorSampler&&) noexcept = default;
PosteriorSampler& PosteriorSampler::operator=(PosteriorSampler&&) noexcept = default;
PosteriorSampler::~PosteriorSampler() = default;
const sim::ForwardModel& PosteriorSampler::forward_model() const { return *impl_->fm; }
const PriorModel& PosteriorSampler::prior() const { return *impl_->prior; }
double PosteriorSampler::t_universe() const { return impl_->t_u; }
std::array<double, 4> PosteriorSampler::dust_prior() const {
  return {impl_->mu_bc, impl_->s_bc, impl_->mu_ism, impl_->s_ism};
}

Result<std::shared_ptr<const sim::ForwardModel>> PosteriorSampler::ForwardModelOf(const PriorModel& prior) {
  CUBEFLOW_ASSIGN_OR_RETURN(sim::SimConfig cfg, sim::ParseSimConfig(prior.library_config(), "the prior's library_config"));
  cfg.noise.enabled = false;
  CUBEFLOW_ASSIGN_OR_RETURN(auto ssp, sim::LoadSsp(sim::SspSourceOf(cfg)));
  return sim::ForwardModel::Build(std::move(ssp), cfg);
}

Result<PosteriorSampler> PosteriorSampler::Make(std::shared_ptr<const PriorModel> prior,
                                                std::shared_ptr<const sim::ForwardModel> fm) {
  if (!prior || !fm) return Status::Error("posterior sampler: no prior or no forward model");
  auto impl = std::make_unique<Impl>();
  try {
    CUBEFLOW_ASSIGN_OR_RETURN(nn::TorchForwardModel tfm, nn::TorchForwardModel::Make(*fm, torch::kFloat64));
    impl->torch_fm = std::make_unique<nn::TorchForwardModel>(std::move(tfm));
    CUBEFLOW_ASSIGN_OR_RETURN(nn::TorchForwardModel tfm32, nn::TorchForwardModel::Make(*fm, torch::kFloat32));
    impl->torch_fm32 = std::make_unique<nn::TorchForwardModel>(std::move(tfm32));
  } catch (const std::exception& ex) {
    return Status::Error(std::string("posterior sampler: ") + ex.what());
  }
  const HistoryScaler& sc = prior->scaler();
  impl->mean = Tensor(std::vector<double>(sc.mean.begin(), sc.mean.end()));
  impl->sd = Tensor(std::vector<double>(sc.sd.begin(), sc.sd.end()));
  const sim::DustPrior& d = fm->config().dust;
  // Gaussian approximation of the dust prior: ln tau_bc uniform on [ln min, ln max] (mean, sd of
  // the uniform), tau_ism normal (its truncation at 0 lies 3.75 sd below the default mean).
  const double a = std::log(std::max(d.tau_bc_min, 1e-6)), b = std::log(std::max(d.tau_bc_max, d.tau_bc_min));
  impl->mu_bc = 0.5 * (a + b);
  impl->s_bc = std::max((b - a) / std::sqrt(12.0), 1e-6);
  impl->mu_ism = d.tau_ism_mean;
  impl->s_ism = std::max(d.tau_ism_sigma, 1e-6);
  impl->t_u = sim::CosmicTimeGyr(0.0, fm->config().sfh.cosmology);
  {  // diag(A A^T) of paper 001 (appendix B.2): Var_i S(a_i), a_i ~ N(0, I) in state units.
    c10::InferenceMode guard;
    auto gen = at::detail::createCPUGenerator(20260);
    auto a = torch::randn({kDiagDraws, kPosteriorDim}, gen, torch::kFloat64);
    impl->diag_aat = impl->Observed(a, true).var(0);
  }
  impl->prior = std::move(prior);
  impl->fm = std::move(fm);
  return PosteriorSampler(std::move(impl));
}

std::vector<char> PosteriorSampler::LineMask(double line_mask) const {
  const auto& wave = impl_->fm->wave();
  std::vector<char> use(wave.size(), 1);
  if (line_mask <= 0 || !impl_->fm->config().nebular.enabled) return use;
  for (size_t i = 0; i < wave.size(); ++i)
    for (double l : sim::NebularLineWavelengths())
      if (std::abs(wave[i] - l) < line_mask) use[i] = 0;
  return use;
}

void PosteriorSampler::Render(const PosteriorDraw& d, std::vector<double>* flux, std::vector<double>* phot,
                              std::array<double, kNumBins>* light_v) const {
  c10::InferenceMode guard;
  std::vector<double> lm(d.x.begin(), d.x.begin() + kNumBins), zh(d.x.begin() + kNumBins, d.x.end());
  auto r = impl_->torch_fm->Render(Tensor(lm).unsqueeze(0), Tensor(zh).unsqueeze(0),
                                   torch::full({1}, d.tau_bc, torch::kFloat64), torch::full({1}, d.tau_ism, torch::kFloat64));
  auto f = r.flux.to(torch::kFloat64).contiguous(), p = r.phot.to(torch::kFloat64).contiguous();
  if (flux) flux->assign(f.data_ptr<double>(), f.data_ptr<double>() + f.numel());
  if (phot) phot->assign(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
  if (light_v) {
    auto l = r.light_v.to(torch::kFloat64).contiguous();
    const double* lp = l.data_ptr<double>();
    double sl = 0;
    for (int b = 0; b < kNumBins; ++b) sl += lp[b];
    for (int b = 0; b < kNumBins; ++b) (*light_v)[b] = sl > 0 ? lp[b] / sl : 0;
  }
}

Result<std::vector<PosteriorDraw>> PosteriorSampler::Sample(const Observation& obs, const PosteriorOptions& o,
                                                            uint64_t seed, SampleStats* stats) const {
  const Impl& m = *impl_;
  const int64_t nw = m.torch_fm->n_wave(), nb = m.torch_fm->n_bands(), n = o.n_samples;
  if (static_cast<int64_t>(obs.flux.size()) != nw || obs.variance.size() != obs.flux.size())
    return Status::Error("posterior sampler: the spectrum has " + std::to_string(obs.flux.size()) + " pixels and " +
                         std::to_string(obs.variance.size()) + " variances; the forward model's grid has " +
                         std::to_string(nw));
  const bool with_phot = !obs.phot.empty();
  if (with_phot && (static_cast<int64_t>(obs.phot.size()) != nb || obs.phot_variance.size() != obs.phot.size()))
    return Status::Error("posterior sampler: " + std::to_string(obs.phot.size()) + " band fluxes and " +
                         std::to_string(obs.phot_variance.size()) + " variances; the forward model has " +
                         std::to_string(nb) + " bands (" + Join(m.torch_fm->bands(), ", ") + ")");
  if (n <= 0 || o.steps < 2) return Status::Error("posterior sampler: n_samples must be > 0 and steps >= 2");
  if (o.jacobian_every < 1) return Status::Error("posterior sampler: jacobian_every must be >= 1");
  if (!o.start.empty() && static_cast<int64_t>(o.start.size()) != kPosteriorDim)
    return Status::Error("posterior sampler: a start state has " + std::to_string(kPosteriorDim) + " values, not " +
                         std::to_string(o.start.size()));
  if (o.cla != "full" && o.cla != "diagonal" && o.cla != "none")
    return Status::Error("posterior sampler: cla must be full, diagonal or none, not '" + o.cla + "'");

  // Observed vector, its weights 1 / variance (0: not used).
  const std::vector<char> use = LineMask(o.line_mask);
  std::vector<double> y(obs.flux), w(nw, 0.0);
  int64_t used = 0;
  for (int64_t i = 0; i < nw; ++i) {
    const double v = obs.variance[i];
    if (use[i] && std::isfinite(obs.flux[i]) && std::isfinite(v) && v > 0) {
      w[i] = 1.0 / v;
      ++used;
    } else {
      y[i] = 0;
    }
  }
  if (with_phot)
    for (int64_t b = 0; b < nb; ++b) {
      const double v = obs.phot_variance[b];
      const bool ok = std::isfinite(obs.phot[b]) && std::isfinite(v) && v > 0;
      y.push_back(ok ? obs.phot[b] : 0.0);
      w.push_back(ok ? 1.0 / v : 0.0);
    }
  if (used == 0) return Status::Error("posterior sampler: no pixel with a finite flux and a positive variance");

  try {
    nn::SetThreads(o.threads);
    auto gen = at::detail::createCPUGenerator(seed);
    const auto yt = Tensor(y).unsqueeze(0), wt = Tensor(w).unsqueeze(0);
    const double smin = m.prior->sigma_min(), smax = m.prior->sigma_max();
    const int64_t D = kPosteriorDim;
    auto sigma_at = [&](int64_t i) { return smax * std::pow(smin / smax, static_cast<double>(i) / (o.steps - 1)); };
    auto eye = torch::eye(D, torch::kFloat64);
    auto diag = (with_phot ? m.diag_aat : m.diag_aat.slice(0, 0, nw)).unsqueeze(0);
    torch::Tensor hess;  // [n, D, D]: A^T Sigma^-1 A
    int64_t level_of_hess = -1;

    // Total score at noise level sigma (level index `lev` decides when H is refreshed).
    auto score = [&](const torch::Tensor& s, double sigma, int64_t lev) -> torch::Tensor {
      auto total = m.PriorScore(s, sigma);
      if (o.likelihood_weight == 0) return total;
      // g = A^T C^-1 (y - S(x)) by autograd; C = Sigma_y, or Sigma_y + sigma^2 diag(A A^T).
      const auto wc = o.cla == "diagonal" ? wt / (1.0 + sigma * sigma * wt * diag) : wt;
      const torch::Tensor g = m.LikelihoodGradient(s, yt, wc, with_phot);
      torch::Tensor lik = g;
      if (o.cla == "full") {
        // H = A^T Sigma^-1 A, refreshed every jacobian_every levels.
        if (level_of_hess < 0 || lev - level_of_hess >= o.jacobian_every) {
          hess = m.GaussNewton(s, wt, with_phot);
          level_of_hess = lev;
        }
        lik = torch::linalg_solve(eye.unsqueeze(0) + sigma * sigma * hess, g.unsqueeze(2)).squeeze(2);
      }
      // Cap (states far from linear at the first levels; H up to jacobian_every levels old): a
      // noised score at level sigma has a norm of order sqrt(D) / sigma.
      if (o.clip > 0) {
        const double cap = o.clip * std::sqrt(static_cast<double>(D)) / sigma;
        lik = lik * (cap / lik.norm(2, 1, true).clamp_min(cap));
      }
      return total + o.likelihood_weight * lik;
    };

    auto s = torch::randn({n, D}, gen, torch::kFloat64) * smax;
    s.slice(1, kHistoryDim, D).mul_(std::sqrt(1.0 + smax * smax) / smax);
    auto check = [&](int64_t lev) -> Status {
      if (!torch::isfinite(s).all().item<bool>())
        return Status::Error("posterior sampler: the state became non-finite at noise level " + std::to_string(lev) +
                             " of " + std::to_string(o.steps) + " (sigma " + Num(sigma_at(lev), 3) + ")");
      return Status::OK();
    };
    for (int64_t i = 0; i + 1 < o.steps; ++i) {
      const double sg = sigma_at(i), sn = sigma_at(i + 1), dv = sg * sg - sn * sn;
      s = s + dv * score(s, sg, i) + std::sqrt(dv) * torch::randn({n, D}, gen, torch::kFloat64);
      for (int64_t c = 0; c < o.corrector_steps; ++c) {
        auto g = score(s, sn, i + 1);
        auto noise = torch::randn({n, D}, gen, torch::kFloat64);
        auto eps = 2.0 * (o.snr * noise.norm(2, 1, true) / g.norm(2, 1, true).clamp_min(1e-12)).pow(2);
        s = s + eps * g + torch::sqrt(2.0 * eps) * noise;
      }
      CUBEFLOW_RETURN_NOT_OK(check(i + 1));
    }
    if (!o.start.empty()) s = Tensor(o.start).unsqueeze(0).repeat({n, 1});
    if (o.refine_steps > 0 || o.adjust_steps > 0) {
      if (o.refine_steps > 0) CUBEFLOW_RETURN_NOT_OK(m.Refine(s, yt, o.likelihood_weight * wt, with_phot, o, gen));
      if (o.adjust_steps > 0)
        CUBEFLOW_RETURN_NOT_OK(m.Adjust(s, yt, o.likelihood_weight * wt, with_phot, o, gen, stats));
      CUBEFLOW_RETURN_NOT_OK(check(o.steps));
    } else {
      s = s + smin * smin * score(s, smin, o.steps - 1);  // denoise (Tweedie)
      CUBEFLOW_RETURN_NOT_OK(check(o.steps));
    }

    // Restore physical units; light per bin from the rendering.
    torch::Tensor light;
    {
      c10::InferenceMode guard;
      light = m.RenderState(s).light_v.to(torch::kFloat64).contiguous();
    }
    s = s.contiguous();
    const double* p = s.data_ptr<double>();
    const double* lp = light.data_ptr<double>();
    std::vector<PosteriorDraw> out(n);
    for (int64_t r = 0; r < n; ++r) {
      History z;
      for (int k = 0; k < kHistoryDim; ++k) z[k] = p[r * D + k];
      out[r].x = NormalisedHistory(m.prior->scaler().Restore(z));
      const double vbc = std::clamp(p[r * D + kHistoryDim], -kDustClamp, kDustClamp);
      const double vism = std::clamp(p[r * D + kHistoryDim + 1], -kDustClamp, kDustClamp);
      out[r].tau_bc = std::exp(m.mu_bc + m.s_bc * vbc);
      out[r].tau_ism = std::max(0.0, m.mu_ism + m.s_ism * vism);
      double sl = 0;
      for (int b = 0; b < kNumBins; ++b) sl += lp[r * kNumBins + b];
      for (int b = 0; b < kNumBins; ++b) out[r].light_v[b] = sl > 0 ? lp[r * kNumBins + b] / sl : 0;
    }
    return out;
  } catch (const std::exception& ex) {
    return Status::Error(std::string("posterior sampler: ") + ex.what());
  }
}

// ---------------------------------------------------------------------------------------
// The check on mock spectra and its command
// ---------------------------------------------------------------------------------------

namespace {

constexpr int kNumQuantities = 4 + sim::kNumMassPercentiles;

std::array<double, kNumQuantities> Quantities(const DerivedQuantities& q) {
  std::array<double, kNumQuantities> v{q.mw_logage, q.lw_logage, q.mw_zh, q.lw_zh};
  for (int k = 0; k < sim::kNumMassPercentiles; ++k) v[4 + k] = q.t[k];
  return v;
}

/// Quantile of sorted values, linear between order statistics.
double SortedQuantile(const std::vector<double>& v, double p) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double pos = p * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

/// A draw's state coordinates (the inverse of Sample's restoration; dust clamped as it is).
std::vector<double> StateOf(const PosteriorSampler& sampler, const PosteriorDraw& d) {
  const History z = sampler.prior().scaler().Standardise(d.x);
  const auto dp = sampler.dust_prior();
  std::vector<double> v(z.begin(), z.end());
  v.push_back((std::log(d.tau_bc) - dp[0]) / dp[1]);
  v.push_back((d.tau_ism - dp[2]) / dp[3]);
  return v;
}

}  // namespace

const std::vector<std::string>& PosteriorCheck::Names() {
  static const std::vector<std::string> names = {"mw_logage", "lw_logage", "mw_zh", "lw_zh", "t10", "t20", "t30",
                                                 "t40",       "t50",       "t60",   "t70",   "t80", "t90"};
  return names;
}

double PosteriorCheck::MaxCoverageError(size_t k) const {
  double e = 0;
  for (int l = 0; l < 9; ++l) e = std::max(e, std::abs(coverage.at(k)[l] - 0.1 * (l + 1)));
  return e;
}

Result<PosteriorCheck> CheckPosterior(const PosteriorSampler& sampler, const PosteriorCheckOptions& o) {
  const sim::ForwardModel& fm = sampler.forward_model();
  const sim::SimConfig& cfg = fm.config();
  const size_t nw = fm.wave().size(), nb = fm.bands().size();
  if (o.n_spectra < 2 || !(o.snr > 0)) return Status::Error("posterior check: n_spectra >= 2 and snr > 0 needed");
  std::vector<std::vector<double>> truth(kNumQuantities), median(kNumQuantities);
  std::vector<std::array<double, 9>> inside(kNumQuantities, std::array<double, 9>{});
  const std::vector<char> use = sampler.LineMask(o.sampler.line_mask);
  PosteriorCheck out;
  double seconds = 0;
  int64_t done = 0;
  std::vector<double> sample_rms, truth_rms;
  double rank_sum = 0;
  std::vector<double> adjust_steps;
  std::vector<History> model_truths;
  if (o.truth_from_model) {
    SamplerOptions so;
    so.seed = o.seed;
    CUBEFLOW_ASSIGN_OR_RETURN(model_truths, sampler.prior().Sample(o.n_spectra, so));
  }
  for (int64_t i = 0; i < o.n_spectra; ++i) {
    PosteriorDraw t;
    t.x = o.truth_from_model ? NormalisedHistory(model_truths[static_cast<size_t>(i)])
                             : DrawPriorHistory(cfg.sfh, fm.time_grid(), o.seed, i);
    sim::Rng rd(o.seed, static_cast<uint64_t>(i), 7);
    const sim::DustParams dust = sim::DrawDust(cfg.dust, rd);
    t.tau_bc = dust.tau_bc;
    t.tau_ism = dust.tau_ism;
    Observation obs;
    sampler.Render(t, &obs.flux, &obs.phot, &t.light_v);
    const std::vector<double> noise_free = obs.flux;
    sim::Rng rn(o.seed, static_cast<uint64_t>(i), 8);
    obs.variance.assign(nw, 1.0 / (o.snr * o.snr));
    for (double& f : obs.flux) f += rn.Normal() / o.snr;
    if (o.phot_snr > 0) {
      for (double& f : obs.phot) {
        const double sd = std::abs(f) / o.phot_snr;
        obs.phot_variance.push_back(sd * sd);
        f += rn.Normal() * sd;
      }
    } else {
      obs.phot.clear();
    }
    (void)nb;
    const auto t0 = std::chrono::steady_clock::now();
    SampleStats st;
    PosteriorOptions so = o.sampler;
    if (o.start_at_truth) so.start = StateOf(sampler, t);
    auto draws = sampler.Sample(obs, so, o.seed * 1000003ull + static_cast<uint64_t>(i) + 1, &st);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!draws.ok()) {
      ++out.failed;
      continue;
    }
    ++done;
    out.mean_acceptance += st.acceptance;
    adjust_steps.push_back(st.adjust_step);
    const auto tq = Quantities(Derive(t, sampler.t_universe()));
    std::vector<std::array<double, kNumQuantities>> q;
    for (const auto& d : *draws) q.push_back(Quantities(Derive(d, sampler.t_universe())));
    for (int k = 0; k < kNumQuantities; ++k) {
      std::vector<double> v;
      for (const auto& r : q) v.push_back(r[k]);
      std::sort(v.begin(), v.end());
      truth[k].push_back(tq[k]);
      median[k].push_back(SortedQuantile(v, 0.5));
      for (int l = 0; l < 9; ++l) {
        const double c = 0.1 * (l + 1);
        if (tq[k] >= SortedQuantile(v, 0.5 - c / 2) && tq[k] <= SortedQuantile(v, 0.5 + c / 2)) inside[k][l] += 1;
      }
    }
    // Posterior predictive: the component-wise median state.
    PosteriorDraw med;
    std::vector<double> v(draws->size());
    for (int k = 0; k < kHistoryDim + 2; ++k) {
      for (size_t r = 0; r < draws->size(); ++r)
        v[r] = k < kHistoryDim ? (*draws)[r].x[k] : k == kHistoryDim ? (*draws)[r].tau_bc : (*draws)[r].tau_ism;
      std::sort(v.begin(), v.end());
      const double m = SortedQuantile(v, 0.5);
      if (k < kHistoryDim) med.x[k] = m;
      else if (k == kHistoryDim) med.tau_bc = m;
      else med.tau_ism = m;
    }
    std::vector<double> model;
    sampler.Render(med, &model, nullptr);
    double ss = 0;
    int64_t np = 0;
    for (size_t p = 0; p < nw; ++p)
      if (use[p]) {
        const double r = (obs.flux[p] - model[p]) * o.snr;
        ss += r * r;
        ++np;
      }
    out.residual_rms.push_back(np > 0 ? std::sqrt(ss / np) : 0);
    auto rms_of = [&](const std::vector<double>& m) {
      double sd = 0;
      for (size_t p = 0; p < nw; ++p)
        if (use[p]) sd += (obs.flux[p] - m[p]) * (obs.flux[p] - m[p]) * o.snr * o.snr;
      return np > 0 ? std::sqrt(sd / np) : 0.0;
    };
    const double rms_truth = rms_of(noise_free);
    truth_rms.push_back(rms_truth);
    std::vector<double> per_sample;
    int64_t below = 0;
    for (const auto& d : *draws) {
      sampler.Render(d, &model, nullptr);
      per_sample.push_back(rms_of(model));
      below += per_sample.back() < rms_truth;
    }
    rank_sum += static_cast<double>(below) / static_cast<double>(draws->size());
    std::sort(per_sample.begin(), per_sample.end());
    sample_rms.push_back(SortedQuantile(per_sample, 0.5));
  }
  if (done < 2) return Status::Error("posterior check: sampling failed on " + std::to_string(out.failed) + " of " +
                                     std::to_string(o.n_spectra) + " spectra");
  for (int k = 0; k < kNumQuantities; ++k) {
    double mean = 0;
    for (double t : truth[k]) mean += t / done;
    double sse = 0, sst = 0;
    for (int64_t i = 0; i < done; ++i) {
      sse += (median[k][i] - truth[k][i]) * (median[k][i] - truth[k][i]);
      sst += (truth[k][i] - mean) * (truth[k][i] - mean);
    }
    out.r2.push_back(sst > 0 ? 1.0 - sse / sst : std::numeric_limits<double>::quiet_NaN());
    std::array<double, 9> c{};
    for (int l = 0; l < 9; ++l) c[l] = inside[k][l] / done;
    out.coverage.push_back(c);
  }
  std::vector<double> rr = out.residual_rms;
  std::sort(rr.begin(), rr.end());
  out.median_residual_rms = SortedQuantile(rr, 0.5);
  std::sort(sample_rms.begin(), sample_rms.end());
  out.median_sample_residual_rms = SortedQuantile(sample_rms, 0.5);
  std::sort(truth_rms.begin(), truth_rms.end());
  out.median_truth_residual_rms = SortedQuantile(truth_rms, 0.5);
  out.mean_chi2_rank = rank_sum / static_cast<double>(done);
  out.mean_acceptance /= static_cast<double>(done);
  std::sort(adjust_steps.begin(), adjust_steps.end());
  out.median_adjust_step = SortedQuantile(adjust_steps, 0.5);
  out.seconds_per_spectrum = seconds / o.n_spectra;
  return out;
}

int PosteriorEvaluateMain(int argc, char** argv) {
  const char* usage =
      "usage: cubeflow evaluate PRIOR.pt --posterior N [--seed S] [--snr X] [--phot-snr X] [--steps K] "
      "[--corrector C] [--jacobian-every J] [--samples M] [--line-mask A] [--cla full|diagonal|none] [--clip C] [--refine K] [--refine-sigma S] [--refine-step E] "
      "[--refine-scale P] [--adjust K] [--adjust-accept A] [--truth-from-model] [--start-at-truth] [--threads T]\n";
  std::string model;
  PosteriorCheckOptions o;
  long long seed = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](double& v) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      v = std::strtod(argv[++i], &end);
      return end != argv[i] && !*end && v >= 0;
    };
    double v = 0;
    if (a == "-h" || a == "--help") return std::cout << usage, 0;
    if (a[0] != '-' && model.empty()) {
      model = a;
    } else if (a == "--cla" && i + 1 < argc) {
      o.sampler.cla = argv[++i];
    } else if (a == "--truth-from-model") {
      o.truth_from_model = true;
    } else if (a == "--start-at-truth") {
      o.start_at_truth = true;
    } else if (!value(v)) {
      std::cerr << "cubeflow evaluate: bad or missing value of '" << a << "'\n" << usage;
      return 2;
    } else if (a == "--posterior") {
      o.n_spectra = static_cast<int64_t>(v);
    } else if (a == "--seed") {
      seed = static_cast<long long>(v);
    } else if (a == "--snr") {
      o.snr = v;
    } else if (a == "--phot-snr") {
      o.phot_snr = v;
    } else if (a == "--steps") {
      o.sampler.steps = static_cast<int64_t>(v);
    } else if (a == "--corrector") {
      o.sampler.corrector_steps = static_cast<int64_t>(v);
    } else if (a == "--jacobian-every") {
      o.sampler.jacobian_every = static_cast<int64_t>(v);
    } else if (a == "--samples") {
      o.sampler.n_samples = static_cast<int64_t>(v);
    } else if (a == "--clip") {
      o.sampler.clip = v;
    } else if (a == "--refine") {
      o.sampler.refine_steps = static_cast<int64_t>(v);
    } else if (a == "--refine-sigma") {
      o.sampler.refine_sigma = v;
    } else if (a == "--refine-step") {
      o.sampler.refine_step = v;
    } else if (a == "--refine-scale") {
      o.sampler.refine_scale = v;
    } else if (a == "--adjust") {
      o.sampler.adjust_steps = static_cast<int64_t>(v);
    } else if (a == "--adjust-accept") {
      o.sampler.adjust_accept = v;
    } else if (a == "--line-mask") {
      o.sampler.line_mask = v;
    } else if (a == "--threads") {
      o.sampler.threads = static_cast<int>(v);
    } else {
      std::cerr << "cubeflow evaluate: unexpected argument '" << a << "'\n" << usage;
      return 2;
    }
  }
  if (model.empty()) return std::cerr << usage, 2;
  auto prior = PriorModel::Load(model);
  if (!prior.ok()) return std::cerr << "cubeflow evaluate: " << prior.status().message() << "\n", 1;
  auto shared = std::make_shared<const PriorModel>(std::move(prior).ValueOrThrow());
  auto fm = PosteriorSampler::ForwardModelOf(*shared);
  if (!fm.ok()) return std::cerr << "cubeflow evaluate: " << fm.status().message() << "\n", 1;
  auto sampler = PosteriorSampler::Make(shared, *fm);
  if (!sampler.ok()) return std::cerr << "cubeflow evaluate: " << sampler.status().message() << "\n", 1;
  o.seed = seed >= 0 ? static_cast<uint64_t>(seed) : shared->training_seed() + 2000;
  auto post = CheckPosterior(*sampler, o);
  if (!post.ok()) return std::cerr << "cubeflow evaluate: " << post.status().message() << "\n", 1;
  PosteriorCheckOptions po = o;
  po.sampler.likelihood_weight = 0;
  auto base = CheckPosterior(*sampler, po);
  if (!base.ok()) return std::cerr << "cubeflow evaluate: " << base.status().message() << "\n", 1;
  std::printf("posterior check of %s: %lld mock spectra (held-out %s, seed %llu, S/N %g per pixel%s), %lld "
              "samples each, %lld noise levels, %lld corrector steps, CLA %s (H every %lld levels), clip %g, lines masked +-%g A\n",
              model.c_str(), static_cast<long long>(o.n_spectra),
              o.truth_from_model ? "samples of the prior model" : "prior draws",
              static_cast<unsigned long long>(o.seed), o.snr,
              o.phot_snr > 0 ? (", bands S/N " + Num(o.phot_snr)).c_str() : "",
              static_cast<long long>(o.sampler.n_samples), static_cast<long long>(o.sampler.steps),
              static_cast<long long>(o.sampler.corrector_steps), o.sampler.cla.c_str(),
              static_cast<long long>(o.sampler.jacobian_every), o.sampler.clip, o.sampler.line_mask);
  if (o.sampler.refine_steps > 0)
    std::printf("then %lld refinement steps (preconditioned Langevin, exact likelihood, prior at sigma %g, step %g, "
                "preconditioner prior scale %g)\n",
                static_cast<long long>(o.sampler.refine_steps), o.sampler.refine_sigma, o.sampler.refine_step,
                o.sampler.refine_scale);
  if (o.sampler.adjust_steps > 0)
    std::printf("then %lld Metropolis-adjusted Langevin steps (the first half adapting the step to acceptance %g): "
                "acceptance after it %.3f (mean over spectra), step %.3g (median)\n",
                static_cast<long long>(o.sampler.adjust_steps), o.sampler.adjust_accept, post->mean_acceptance,
                post->median_adjust_step);
  if (o.start_at_truth)
    std::printf("diagnostic: the chains start at the truth's state, not at the reverse diffusion's output\n");
  std::printf("%-10s %9s %9s %11s %11s   coverage at 0.1 .. 0.9 (posterior)\n", "quantity", "R2 post", "R2 prior",
              "maxcov post", "maxcov prior");
  for (size_t k = 0; k < PosteriorCheck::Names().size(); ++k) {
    std::printf("%-10s %9.3f %9.3f %11.3f %11.3f  ", PosteriorCheck::Names()[k].c_str(), post->r2[k], base->r2[k],
                post->MaxCoverageError(k), base->MaxCoverageError(k));
    for (double c : post->coverage[k]) std::printf(" %.2f", c);
    std::printf("\n");
  }
  std::printf("posterior predictive rms of (y - S(median)) / sigma, unmasked pixels: median %.3f (prior: %.3f)\n",
              post->median_residual_rms, base->median_residual_rms);
  std::printf("median over spectra of the median over samples of rms((y - S(sample)) / sigma): %.3f (prior: %.3f)\n",
              post->median_sample_residual_rms, base->median_sample_residual_rms);
  std::printf("the truth's rms (noise-free truth against the data; a posterior sample fits as well): median %.3f; "
              "fraction of samples with chi2 below the truth's, mean over spectra: %.3f (prior: %.3f; posterior: 0.5 "
              "+- %.3f)\n",
              post->median_truth_residual_rms, post->mean_chi2_rank, base->mean_chi2_rank,
              0.289 / std::sqrt(static_cast<double>(o.n_spectra)));
  std::printf("failed spectra: %lld (prior: %lld)\n", static_cast<long long>(post->failed),
              static_cast<long long>(base->failed));
  std::printf("time per spectrum (%lld samples, %d thread%s): %.2f s (prior alone: %.2f s)\n",
              static_cast<long long>(o.sampler.n_samples), o.sampler.threads, o.sampler.threads == 1 ? "" : "s",
              post->seconds_per_spectrum, base->seconds_per_spectrum);
  return 0;
}

}  // namespace cubeflow::diffusion
