// The DIGS MCMC baseline against an independent estimate of the same posteriors: importance
// sampling. For each held-out spectrum: FitDigsMcmc (default settings), then M draws from a
// multivariate Student t (5 degrees of freedom) with the MCMC samples' mean and 1.5x their
// covariance, weighted by posterior / proposal. Prints, per parameter, the MCMC's and the
// importance sampler's median and (q84 - q16) / 2, and the effective sample size of the weights.
// Agreement says the chains are in equilibrium over the region they found; a mode the MCMC never
// visited would also be missed here (the proposal is built from the chains).
//
// usage: build/bench/digs_is_bench [N_SPECTRA=5] [M_DRAWS=200000] [SEED=20262002] [SSP=builtin]
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cubeflow/sim/digs_fit.hpp"

using namespace cubeflow::sim;

namespace {

// Weighted quantile of values v with weights w.
double WeightedQuantile(std::vector<std::pair<double, double>> vw, double q) {
  std::sort(vw.begin(), vw.end());
  double total = 0;
  for (const auto& p : vw) total += p.second;
  double c = 0;
  for (const auto& p : vw) {
    c += p.second;
    if (c >= q * total) return p.first;
  }
  return vw.back().first;
}

}  // namespace

int main(int argc, char** argv) {
  const int n_spec = argc > 1 ? std::atoi(argv[1]) : 5;
  const int m_draws = argc > 2 ? std::atoi(argv[2]) : 200000;
  const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 20262002ULL;
  SspSource src;
  if (argc > 4) src.ssp = argv[4];
  auto built = BuildDigsModel(src, DigsConfig());
  if (!built.ok()) {
    std::fprintf(stderr, "digs_is_bench: %s\n", built.status().message().c_str());
    return 2;
  }
  const DigsModel& model = **built;
  const auto& names = DigsParamNames();
  std::printf("# DIGS MCMC vs importance sampling: %d held-out spectra (seed %llu, SSP %s), %d t5 draws each\n",
              n_spec, static_cast<unsigned long long>(seed), model.ssp().name.c_str(), m_draws);
  std::printf("%4s %-9s %9s %9s %9s %9s %8s\n", "obj", "param", "mcmc_med", "is_med", "mcmc_hw", "is_hw", "ESS");
  double worst_med = 0, worst_hw = 0;
  for (int i = 0; i < n_spec; ++i) {
    DigsObject obj;
    model.Simulate(seed, i, &obj);
    DigsFitOptions fo;
    fo.seed = seed * 1000003ULL + static_cast<uint64_t>(i);  // as `cubeflow digs mcmc`
    auto post = FitDigsMcmc(model, obj.flux.data(), fo);
    if (!post.ok()) {
      std::fprintf(stderr, "digs_is_bench: %s\n", post.status().message().c_str());
      return 1;
    }
    const auto& ch = post->chain;
    const int d = kDigsNumParams;
    Eigen::VectorXd mu = Eigen::VectorXd::Zero(d);
    for (size_t k = 0; k < ch.size(); ++k)
      for (int j = 0; j < d; ++j) mu[j] += ch.samples[k * d + j] / static_cast<double>(ch.size());
    Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(d, d);
    for (size_t k = 0; k < ch.size(); ++k) {
      Eigen::VectorXd r(d);
      for (int j = 0; j < d; ++j) r[j] = ch.samples[k * d + j] - mu[j];
      cov += r * r.transpose() / static_cast<double>(ch.size());
    }
    cov *= 1.5 * 1.5;
    const Eigen::LLT<Eigen::MatrixXd> llt(cov);
    const Eigen::MatrixXd L = llt.matrixL();
    std::mt19937_64 gen(seed + static_cast<uint64_t>(i));
    std::normal_distribution<double> nd;
    std::chi_squared_distribution<double> chi2(5.0);
    std::vector<double> logw(static_cast<size_t>(m_draws)), xs(static_cast<size_t>(m_draws) * d);
    double max_lw = -INFINITY;
    for (int m = 0; m < m_draws; ++m) {
      Eigen::VectorXd z(d);
      for (int j = 0; j < d; ++j) z[j] = nd(gen);
      const double s = std::sqrt(5.0 / chi2(gen));
      const Eigen::VectorXd x = mu + s * (L * z);
      // log t5 density up to a constant: -(nu + d)/2 log(1 + r^2 / nu)
      const double r2 = L.triangularView<Eigen::Lower>().solve(x - mu).squaredNorm();
      const double lq = -0.5 * (5.0 + d) * std::log1p(r2 / 5.0);
      const double lp = DigsLogPosterior(model, std::span<const double>(x.data(), d), obj.flux.data());
      logw[static_cast<size_t>(m)] = std::isfinite(lp) ? lp - lq : -INFINITY;
      for (int j = 0; j < d; ++j) xs[static_cast<size_t>(m) * d + j] = x[j];
      max_lw = std::max(max_lw, logw[static_cast<size_t>(m)]);
    }
    double sw = 0, sw2 = 0;
    std::vector<double> w(static_cast<size_t>(m_draws));
    for (int m = 0; m < m_draws; ++m) {
      w[static_cast<size_t>(m)] = std::exp(logw[static_cast<size_t>(m)] - max_lw);
      sw += w[static_cast<size_t>(m)];
      sw2 += w[static_cast<size_t>(m)] * w[static_cast<size_t>(m)];
    }
    const double ess = sw * sw / sw2;
    for (int j = 0; j < d; ++j) {
      std::vector<std::pair<double, double>> vw(static_cast<size_t>(m_draws));
      for (int m = 0; m < m_draws; ++m) {
        double v = xs[static_cast<size_t>(m) * d + j];
        if (j == 4) v = std::pow(10.0, v);  // tau in Gyr, as the MCMC quantiles
        vw[static_cast<size_t>(m)] = {v, w[static_cast<size_t>(m)]};
      }
      const double med = WeightedQuantile(vw, 0.5);
      const double hw = 0.5 * (WeightedQuantile(vw, 0.84) - WeightedQuantile(vw, 0.16));
      const double mcmc_hw = 0.5 * (post->q84[j] - post->q16[j]);
      std::printf("%4d %-9s %9.3f %9.3f %9.3f %9.3f %8.0f\n", i, names[j].c_str(), post->q50[j], med, mcmc_hw, hw, ess);
      worst_med = std::max(worst_med, std::abs(med - post->q50[j]) / std::max(mcmc_hw, 1e-9));
      worst_hw = std::max(worst_hw, std::abs(hw / std::max(mcmc_hw, 1e-9) - 1.0));
    }
  }
  std::printf("largest |median difference| / MCMC half-width: %.2f; largest |width ratio - 1|: %.2f\n", worst_med,
              worst_hw);
  return 0;
}
