// MCMC baseline of the DIGS model; see digs_fit.hpp.
#include "cubeflow/sim/digs_fit.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

namespace cubeflow::sim {

namespace {

DigsTheta FromCoords(std::span<const double> c) { return {c[0], c[1], c[2], c[3], std::pow(10.0, c[4])}; }

}  // namespace

double DigsLogPosterior(const DigsModel& model, std::span<const double> c, const double* flux) {
  const DigsPrior& p = model.config().prior;
  if (!(c[0] >= p.log_mass_min && c[0] <= p.log_mass_max && c[1] >= p.log_z_min && c[1] <= p.log_z_max &&
        c[2] >= p.dust_min && c[2] <= p.dust_max && c[3] >= p.t_age_min && c[3] <= p.t_age_max &&
        c[4] >= std::log10(p.tau_min) && c[4] <= std::log10(p.tau_max)))
    return -std::numeric_limits<double>::infinity();
  return model.LogLikelihood(FromCoords(c), flux);
}

namespace {

/// Walker positions in sampling coordinates, one vector per walker.
using Walkers = std::vector<std::vector<double>>;

/// Step 1: refuses a flux with a pixel that is not finite and fewer prior draws than walkers.
Status CheckFitInputs(const DigsModel& model, const double* flux, const DigsFitOptions& o) {
  const size_t nw = model.wave().size();
  for (size_t i = 0; i < nw; ++i)
    if (!std::isfinite(flux[i]))
      return Status::Error("DIGS fit: flux pixel " + std::to_string(i) + " is not finite");
  if (o.n_init_draws < o.n_walkers)
    return Status::Error("DIGS fit: n_init_draws must be >= n_walkers");
  return Status::OK();
}

/// Step 2: the starting points: n_init_draws prior draws with the mass set from the flux ratio to
/// the unit-mass model, of which the n_walkers of highest posterior are kept.
Result<Walkers> StartingPoints(const DigsModel& model, const double* flux, const DigsFitOptions& o) {
  const DigsPrior& prior = model.config().prior;
  const size_t nw = model.wave().size();
  struct Start {
    std::array<double, kDigsNumParams> c;
    double lp;
  };
  std::vector<Start> starts(static_cast<size_t>(o.n_init_draws));
  std::vector<double> unit(nw);
  for (int i = 0; i < o.n_init_draws; ++i) {
    Rng rng(o.seed, static_cast<uint64_t>(i), 2);
    DigsTheta t = prior.Draw(rng);
    t.log_mass = 0;
    model.Render(t, unit.data());
    double ratio = 0;
    for (size_t k = 0; k < nw; ++k) ratio += flux[k] / unit[k];
    ratio /= static_cast<double>(nw);
    t.log_mass = ratio > 0 ? std::clamp(std::log10(ratio), prior.log_mass_min, prior.log_mass_max)
                           : prior.log_mass_min;
    Start& s = starts[static_cast<size_t>(i)];
    s.c = {t.log_mass, t.log_z, t.dust, t.t_age, std::log10(t.tau)};
    s.lp = DigsLogPosterior(model, s.c, flux);
  }
  std::partial_sort(starts.begin(), starts.begin() + o.n_walkers, starts.end(),
                    [](const Start& a, const Start& b) { return a.lp > b.lp; });
  Walkers init;
  for (int k = 0; k < o.n_walkers; ++k) {
    if (!std::isfinite(starts[static_cast<size_t>(k)].lp))
      return Status::Error("DIGS fit: fewer than n_walkers prior draws have a finite likelihood; is the flux in "
                           "the model's unit (1e-17 erg/s/cm^2/A at the model distance) and positive?");
    init.emplace_back(starts[static_cast<size_t>(k)].c.begin(), starts[static_cast<size_t>(k)].c.end());
  }
  return init;
}

/// The sampler settings of every run of a fit; each run sets n_burn, n_steps, thin and seed.
sampling::EnsembleOptions FitEnsembleOptions(const DigsFitOptions& o) {
  sampling::EnsembleOptions eo;
  eo.n_walkers = o.n_walkers;
  eo.parallel = o.parallel;
  eo.de_fraction = o.de_fraction;
  return eo;
}

/// Step 3: the annealed burn-in: the likelihood raised to beta, geometric from anneal_beta0 to 1,
/// so that the walkers spread over every mode of the tempered posterior before they settle.
/// Moves `walkers` to the end of the last stage.
Status AnnealedBurnIn(const DigsModel& model, const double* flux, const DigsFitOptions& o, Walkers& init) {
  sampling::EnsembleOptions eo = FitEnsembleOptions(o);
  for (int stage = 0; stage < o.anneal_stages; ++stage) {
    const double beta = o.anneal_stages > 1
                            ? o.anneal_beta0 * std::pow(1.0 / o.anneal_beta0, static_cast<double>(stage) / (o.anneal_stages - 1))
                            : 1.0;
    eo.n_burn = 0;
    eo.n_steps = o.anneal_iterations;
    eo.thin = o.anneal_iterations;
    eo.seed = o.seed * 31 + static_cast<uint64_t>(stage) + 1;
    auto stage_chain = sampling::RunEnsemble(
        [&model, flux, beta](std::span<const double> c) {
          const double lp = DigsLogPosterior(model, c, flux);
          return std::isfinite(lp) ? beta * lp : lp;
        },
        init, eo);
    if (!stage_chain.ok()) return Status::Error("DIGS fit (annealing): " + stage_chain.status().message());
    for (int k = 0; k < o.n_walkers; ++k)
      for (int d = 0; d < kDigsNumParams; ++d) init[static_cast<size_t>(k)][static_cast<size_t>(d)] = stage_chain->At(0, k, d);
  }
  return Status::OK();
}

/// Moves every walker whose log posterior `lp` is more than stuck_gap below `best` onto a randomly
/// chosen good walker plus a jitter of 1/10 of the good walkers' spread (random numbers of burn-in
/// round `round`; up to 100 tries for a position inside the prior). Returns how many were moved.
int ResetStrandedWalkers(const DigsModel& model, const double* flux, const DigsFitOptions& o, int round,
                         const std::vector<double>& lp, double best, Walkers& init) {
  std::vector<int> good;
  for (int k = 0; k < o.n_walkers; ++k)
    if (lp[static_cast<size_t>(k)] >= best - o.stuck_gap) good.push_back(k);
  std::array<double, kDigsNumParams> mean{}, sd{};
  for (int k : good)
    for (int d = 0; d < kDigsNumParams; ++d) mean[d] += init[static_cast<size_t>(k)][static_cast<size_t>(d)] / good.size();
  for (int k : good)
    for (int d = 0; d < kDigsNumParams; ++d) {
      const double r = init[static_cast<size_t>(k)][static_cast<size_t>(d)] - mean[d];
      sd[d] += r * r / good.size();
    }
  int n_reset = 0;
  Rng rng(o.seed, static_cast<uint64_t>(round), 3);
  for (int k = 0; k < o.n_walkers; ++k) {
    if (lp[static_cast<size_t>(k)] >= best - o.stuck_gap) continue;
    for (int tries = 0; tries < 100; ++tries) {
      const int src = good[std::min(static_cast<size_t>(rng.Uniform() * good.size()), good.size() - 1)];
      std::vector<double> c = init[static_cast<size_t>(src)];
      for (int d = 0; d < kDigsNumParams; ++d) c[static_cast<size_t>(d)] += 0.1 * std::sqrt(sd[d]) * rng.Normal();
      if (std::isfinite(DigsLogPosterior(model, c, flux))) {
        init[static_cast<size_t>(k)] = c;
        ++n_reset;
        break;
      }
    }
  }
  return n_reset;
}

/// Step 4: burn-in in two rounds of n_burn / 2 iterations; after each, stranded walkers are moved
/// onto good ones (ResetStrandedWalkers, as Prospector re-initialises emcee between burn-in
/// rounds). Stranded walkers are a known failure of the stretch move: far from the others, their
/// proposals rarely land anywhere better. Returns the number of walkers moved.
Result<int> BurnIn(const DigsModel& model, const double* flux, const DigsFitOptions& o, Walkers& init) {
  sampling::EnsembleOptions eo = FitEnsembleOptions(o);
  auto posterior = [&model, flux](std::span<const double> c) { return DigsLogPosterior(model, c, flux); };
  int n_reset = 0;
  for (int round = 0; round < 2; ++round) {
    eo.n_burn = 0;
    eo.n_steps = std::max(1, o.n_burn / 2);
    eo.thin = eo.n_steps;
    eo.seed = o.seed * 31 + 1000 + static_cast<uint64_t>(round);
    auto burn = sampling::RunEnsemble(posterior, init, eo);
    if (!burn.ok()) return Status::Error("DIGS fit (burn-in): " + burn.status().message());
    std::vector<double> lp(static_cast<size_t>(o.n_walkers));
    double best = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < o.n_walkers; ++k) {
      lp[static_cast<size_t>(k)] = burn->log_prob[static_cast<size_t>(k)];
      best = std::max(best, lp[static_cast<size_t>(k)]);
      for (int d = 0; d < kDigsNumParams; ++d) init[static_cast<size_t>(k)][static_cast<size_t>(d)] = burn->At(0, k, d);
    }
    n_reset += ResetStrandedWalkers(model, flux, o, round, lp, best, init);
  }
  return n_reset;
}

/// Step 5: the kept chain, n_steps iterations thinned by `thin`.
Result<sampling::EnsembleChain> Production(const DigsModel& model, const double* flux, const DigsFitOptions& o,
                                           const Walkers& init) {
  sampling::EnsembleOptions eo = FitEnsembleOptions(o);
  eo.n_burn = 0;
  eo.n_steps = o.n_steps;
  eo.thin = o.thin;
  eo.seed = o.seed;
  auto chain = sampling::RunEnsemble(
      [&model, flux](std::span<const double> c) { return DigsLogPosterior(model, c, flux); }, init, eo);
  if (!chain.ok()) return Status::Error("DIGS fit: " + chain.status().message());
  return std::move(*chain);
}

/// Step 6: the marginal quantiles (tau in Gyr) and autocorrelation times of the chain.
DigsPosterior Summarise(sampling::EnsembleChain chain, const DigsFitOptions& o, int n_reset) {
  DigsPosterior post;
  post.chain = std::move(chain);
  post.acceptance = post.chain.acceptance;
  post.n_reset = n_reset;
  post.n_steps = o.n_steps;
  for (int d = 0; d < kDigsNumParams; ++d) {
    auto q = [&](double x) {
      const double v = post.chain.Quantile(d, x);
      return d == 4 ? std::pow(10.0, v) : v;
    };
    post.q025[d] = q(0.025);
    post.q16[d] = q(0.16);
    post.q50[d] = q(0.5);
    post.q84[d] = q(0.84);
    post.q975[d] = q(0.975);
    post.autocorr[d] = post.chain.AutocorrTime(d) * o.thin;
  }
  return post;
}

}  // namespace

Result<DigsPosterior> FitDigsMcmc(const DigsModel& model, const double* flux, const DigsFitOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  CUBEFLOW_RETURN_NOT_OK(CheckFitInputs(model, flux, o));
  CUBEFLOW_ASSIGN_OR_RETURN(Walkers init, StartingPoints(model, flux, o));
  CUBEFLOW_RETURN_NOT_OK(AnnealedBurnIn(model, flux, o, init));
  CUBEFLOW_ASSIGN_OR_RETURN(const int n_reset, BurnIn(model, flux, o, init));
  CUBEFLOW_ASSIGN_OR_RETURN(sampling::EnsembleChain chain, Production(model, flux, o, init));
  DigsPosterior post = Summarise(std::move(chain), o, n_reset);
  post.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return post;
}

}  // namespace cubeflow::sim
