// Affine-invariant ensemble sampler; see ensemble.hpp.
#include "cubeflow/sampling/ensemble.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <string>

namespace cubeflow::sampling {

namespace {

uint64_t Mix(uint64_t x) {  // SplitMix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The random numbers of one (seed, iteration, walker): a SplitMix64 stream keyed on the three.
class KeyedRng {
 public:
  KeyedRng(uint64_t seed, uint64_t iteration, uint64_t walker)
      : state_(Mix(Mix(seed) ^ Mix(iteration * 0x2545F4914F6CDD1DULL + 17) ^ Mix(walker + 0x632BE59BD9B4E019ULL))) {}
  double Uniform() {  // [0, 1)
    state_ += 0x9e3779b97f4a7c15ULL;
    return static_cast<double>(Mix(state_) >> 11) * 0x1.0p-53;
  }

 private:
  uint64_t state_;
};

}  // namespace

Result<EnsembleChain> RunEnsemble(const LogDensity& log_prob, const std::vector<std::vector<double>>& initial,
                                  const EnsembleOptions& o) {
  if (!log_prob) return Status::Error("ensemble sampler: no log density");
  if (initial.empty()) return Status::Error("ensemble sampler: no initial walkers");
  const int dim = static_cast<int>(initial.front().size());
  const int nw = static_cast<int>(initial.size());
  if (dim < 1) return Status::Error("ensemble sampler: walkers have dimension 0");
  if (nw != o.n_walkers)
    return Status::Error("ensemble sampler: " + std::to_string(nw) + " initial walkers for n_walkers = " +
                         std::to_string(o.n_walkers));
  if (nw % 2 != 0 || nw < 2 * dim)
    return Status::Error("ensemble sampler: n_walkers must be even and >= 2 x dimension (" + std::to_string(2 * dim) +
                         "), got " + std::to_string(nw));
  if (o.n_steps < 1 || o.n_burn < 0 || o.thin < 1 || !(o.stretch > 1) || !(o.de_fraction >= 0 && o.de_fraction <= 1))
    return Status::Error("ensemble sampler: need n_steps >= 1, n_burn >= 0, thin >= 1, stretch > 1 and "
                         "0 <= de_fraction <= 1");
  std::vector<double> x(static_cast<size_t>(nw) * dim), lp(nw);
  for (int k = 0; k < nw; ++k) {
    if (static_cast<int>(initial[k].size()) != dim)
      return Status::Error("ensemble sampler: walker " + std::to_string(k) + " has dimension " +
                           std::to_string(initial[k].size()) + ", walker 0 has " + std::to_string(dim));
    std::copy(initial[k].begin(), initial[k].end(), x.begin() + static_cast<size_t>(k) * dim);
    lp[k] = log_prob(std::span<const double>(x.data() + static_cast<size_t>(k) * dim, dim));
    if (!std::isfinite(lp[k]))
      return Status::Error("ensemble sampler: walker " + std::to_string(k) +
                           " starts where the log density is not finite; start every walker inside the support");
  }
  bool spread = false;
  for (int k = 1; k < nw && !spread; ++k)
    for (int d = 0; d < dim; ++d)
      if (x[static_cast<size_t>(k) * dim + d] != x[d]) { spread = true; break; }
  if (!spread) return Status::Error("ensemble sampler: all walkers start at the same point; spread them out");

  EnsembleChain chain;
  chain.dim = dim;
  chain.n_walkers = nw;
  chain.n_kept = o.n_steps / o.thin;
  chain.samples.reserve(static_cast<size_t>(chain.n_kept) * nw * dim);
  chain.log_prob.reserve(static_cast<size_t>(chain.n_kept) * nw);
  const int half = nw / 2;
  const double a = o.stretch;
  std::vector<char> accepted(nw, 0);
  size_t n_accept = 0, n_prop = 0;
  const int total = o.n_burn + o.n_steps;
  for (int s = 0; s < total; ++s) {
    for (int h = 0; h < 2; ++h) {
      const int first = h * half, other = (1 - h) * half;
      auto move = [&](int k) {
        KeyedRng rng(o.seed, static_cast<uint64_t>(s), static_cast<uint64_t>(k));
        thread_local std::vector<double> y;
        y.resize(dim);
        const double* xk = x.data() + static_cast<size_t>(k) * dim;
        double log_jacobian = 0;
        if (o.de_fraction > 0 && half >= 2 && rng.Uniform() < o.de_fraction) {
          const int ia = std::min(static_cast<int>(rng.Uniform() * half), half - 1);
          int ib = std::min(static_cast<int>(rng.Uniform() * (half - 1)), half - 2);
          if (ib >= ia) ++ib;
          const double* xa = x.data() + static_cast<size_t>(other + ia) * dim;
          const double* xb = x.data() + static_cast<size_t>(other + ib) * dim;
          const double g = (s % 10 == 9) ? 1.0 : 2.38 / std::sqrt(2.0 * dim);
          for (int d = 0; d < dim; ++d) {
            // Box-Muller from two uniforms: a tiny jitter so that identical walkers can separate.
            const double u1 = rng.Uniform() + 1e-300, u2 = rng.Uniform();
            const double e = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
            y[d] = xk[d] + g * (xa[d] - xb[d]) + 1e-5 * std::abs(xa[d] - xb[d]) * e;
          }
        } else {
          const int j = other + std::min(static_cast<int>(rng.Uniform() * half), half - 1);
          const double u = rng.Uniform();
          const double z = ((a - 1.0) * u + 1.0) * ((a - 1.0) * u + 1.0) / a;
          const double* xj = x.data() + static_cast<size_t>(j) * dim;
          for (int d = 0; d < dim; ++d) y[d] = xj[d] + z * (xk[d] - xj[d]);
          log_jacobian = (dim - 1) * std::log(z);
        }
        const double lpy = log_prob(std::span<const double>(y.data(), dim));
        const double log_ratio = log_jacobian + lpy - lp[k];
        accepted[k] = 0;
        if (std::isfinite(lpy) && std::log(rng.Uniform() + 1e-300) < log_ratio) {
          std::copy(y.begin(), y.end(), x.begin() + static_cast<size_t>(k) * dim);
          lp[k] = lpy;
          accepted[k] = 1;
        }
      };
      // The walkers of this half read only the other half and write only themselves.
      if (o.parallel) {
        tbb::parallel_for(first, first + half, move);
      } else {
        for (int k = first; k < first + half; ++k) move(k);
      }
      for (int k = first; k < first + half; ++k) n_accept += accepted[k];
      n_prop += half;
    }
    if (s >= o.n_burn && (s - o.n_burn) % o.thin == o.thin - 1 && chain.log_prob.size() < static_cast<size_t>(chain.n_kept) * nw) {
      chain.samples.insert(chain.samples.end(), x.begin(), x.end());
      chain.log_prob.insert(chain.log_prob.end(), lp.begin(), lp.end());
    }
  }
  chain.acceptance = n_prop > 0 ? static_cast<double>(n_accept) / n_prop : 0.0;
  return chain;
}

std::vector<double> EnsembleChain::Mean() const {
  std::vector<double> m(dim, 0.0);
  const size_t n = size();
  for (size_t i = 0; i < n; ++i)
    for (int d = 0; d < dim; ++d) m[d] += samples[i * dim + d];
  for (auto& v : m) v /= static_cast<double>(n);
  return m;
}

std::vector<double> EnsembleChain::Covariance() const {
  const auto m = Mean();
  std::vector<double> c(static_cast<size_t>(dim) * dim, 0.0);
  const size_t n = size();
  for (size_t i = 0; i < n; ++i)
    for (int p = 0; p < dim; ++p)
      for (int q = 0; q < dim; ++q) c[p * dim + q] += (samples[i * dim + p] - m[p]) * (samples[i * dim + q] - m[q]);
  for (auto& v : c) v /= static_cast<double>(n > 1 ? n - 1 : 1);
  return c;
}

double EnsembleChain::Quantile(int d, double q) const {
  std::vector<double> v(size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = samples[i * dim + d];
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  const double f = pos - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] + f * (v[i + 1] - v[i]) : v[i];
}

double EnsembleChain::AutocorrTime(int d) const {
  const int n = n_kept;
  if (n < 4) return std::nan("");
  const int max_lag = n / 2;
  std::vector<double> rho(max_lag + 1, 0.0);
  int used = 0;
  std::vector<double> series(n);
  for (int w = 0; w < n_walkers; ++w) {
    double mean = 0;
    for (int t = 0; t < n; ++t) mean += series[t] = At(t, w, d);
    mean /= n;
    for (auto& v : series) v -= mean;
    double c0 = 0;
    for (double v : series) c0 += v * v;
    if (!(c0 > 0)) continue;
    ++used;
    for (int lag = 0; lag <= max_lag; ++lag) {
      double c = 0;
      for (int t = 0; t + lag < n; ++t) c += series[t] * series[t + lag];
      rho[lag] += c / c0;
    }
  }
  if (used == 0) return std::nan("");
  for (auto& v : rho) v /= used;
  double tau = 1.0;
  for (int m = 1; m <= max_lag; ++m) {
    tau += 2.0 * rho[m];
    if (m >= 5.0 * tau) return tau;
  }
  return tau;  // window never closed: the chain is too short for a reliable estimate
}

}  // namespace cubeflow::sampling
