// The history vector of the diffusion prior (cubeflow/nn/history.hpp). No libtorch.
#include "cubeflow/nn/history.hpp"

#include <algorithm>
#include <cmath>

#include "cubeflow/sim/rng.hpp"
#include "cubeflow/sim/sfh.hpp"

namespace cubeflow::diffusion {

History HistoryFromLabels(const float* mass_frac, const float* zh) {
  double tot = 0;
  for (int b = 0; b < kNumBins; ++b) tot += std::max(0.0f, mass_frac[b]);
  History x{};
  const double floor = std::pow(10.0, kLogMassFloor);
  for (int b = 0; b < kNumBins; ++b) {
    const double m = tot > 0 ? std::max(0.0f, mass_frac[b]) / tot : 0.0;
    x[b] = std::log10(std::max(m, floor));
    x[kNumBins + b] = zh[b];
  }
  return x;
}

std::array<double, kNumBins> MassFractions(const History& x) {
  std::array<double, kNumBins> m{};
  double tot = 0;
  for (int b = 0; b < kNumBins; ++b) tot += (m[b] = std::pow(10.0, x[b]));
  for (double& v : m) v /= tot;
  return m;
}

std::array<double, 2> BinSpan(int b, double t_universe) {
  const auto& e = sim::AgeBinEdgesGyr();
  if (t_universe <= e[b]) return {e[b], e[b + 1]};
  return {e[b], std::min(e[b + 1], t_universe)};
}

std::vector<double> BinToStepWeights(const sim::TimeGrid& grid, double t_universe) {
  const size_t n = grid.size();
  std::vector<double> w(kNumBins * n, 0.0);
  for (size_t j = 0; j < n; ++j) {
    const int b = grid.bin[j];
    const auto span = BinSpan(b, t_universe);
    const double overlap = std::min(grid.Hi(j), span[1]) - std::max(grid.Lo(j), span[0]);
    if (overlap > 0) w[b * n + j] = overlap / (span[1] - span[0]);
  }
  return w;
}

std::array<double, sim::kNumMassPercentiles> AssemblyTimes(const std::array<double, kNumBins>& mass_frac,
                                                           double t_universe) {
  double tot = 0;
  for (double v : mass_frac) tot += std::max(v, 0.0);
  std::array<double, sim::kNumMassPercentiles> t{};
  for (int k = 0; k < sim::kNumMassPercentiles; ++k) {
    const double f = 0.1 * (k + 1) * tot;
    double older = 0;  // mass formed before the bin being looked at (in older bins)
    double lookback = 0;
    for (int b = kNumBins - 1; b >= 0; --b) {
      const double m = std::max(mass_frac[b], 0.0);
      if (m > 0 && older + m >= f) {  // constant SFR over the span: linear in look-back time
        const auto span = BinSpan(b, t_universe);
        lookback = span[1] - (f - older) / m * (span[1] - span[0]);
        break;
      }
      older += m;
    }
    t[k] = t_universe - lookback;
  }
  return t;
}

History DrawPriorHistory(const sim::SfhPrior& prior, const sim::TimeGrid& grid, uint64_t seed, int64_t index) {
  // The draws of ForwardModel::Simulate, in its order (kind, then history; dust comes after).
  sim::Rng rng(seed, static_cast<uint64_t>(index), 0);
  const sim::SfhKind kind = sim::DrawSfhKind(prior, rng);
  const sim::Sfh sfh = sim::DrawSfh(prior, kind, rng);
  const sim::BinnedSfh binned = sim::IntegrateSfh(sfh, grid);
  const sim::SfhLabels labels = sim::ComputeLabels(sfh, grid, binned);
  return HistoryFromLabels(labels.mass_frac.data(), labels.zh.data());
}

Result<HistoryScaler> HistoryScaler::Fit(const std::vector<History>& rows) {
  if (rows.empty()) return Status::Error("history scaler: no histories to fit");
  HistoryScaler s;
  const double n = static_cast<double>(rows.size());
  for (const auto& r : rows)
    for (int i = 0; i < kHistoryDim; ++i) s.mean[i] += r[i] / n;
  for (const auto& r : rows)
    for (int i = 0; i < kHistoryDim; ++i) s.sd[i] += (r[i] - s.mean[i]) * (r[i] - s.mean[i]) / n;
  for (double& v : s.sd) v = std::max(std::sqrt(v), 1e-6);
  return s;
}

History HistoryScaler::Standardise(const History& x) const {
  History z{};
  for (int i = 0; i < kHistoryDim; ++i) z[i] = (x[i] - mean[i]) / sd[i];
  return z;
}

History HistoryScaler::Restore(const History& z) const {
  History x{};
  for (int i = 0; i < kHistoryDim; ++i) x[i] = mean[i] + z[i] * sd[i];
  return x;
}

}  // namespace cubeflow::diffusion
