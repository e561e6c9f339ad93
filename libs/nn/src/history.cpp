// The history vector of the diffusion prior (cubeflow/nn/history.hpp). No libtorch.
#include "cubeflow/nn/history.hpp"

#include <algorithm>
#include <cmath>
#include <string>

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

Result<HistoryScaler> HistoryScaler::Fit(const std::vector<History>& rows, double empty_at_or_below) {
  if (rows.empty()) return Status::Error("history scaler: no histories to fit");
  HistoryScaler s;
  for (int i = 0; i < kHistoryDim; ++i) {
    const bool is_mass = i < kNumBins;
    size_t count = 0;
    for (const auto& r : rows) count += !is_mass || r[i] > empty_at_or_below;
    const bool all = count < 2;
    auto counted = [&](const History& r) { return all || !is_mass || r[i] > empty_at_or_below; };
    const double n = static_cast<double>(all ? rows.size() : count);
    for (const auto& r : rows)
      if (counted(r)) s.mean[i] += r[i] / n;
    for (const auto& r : rows)
      if (counted(r)) s.sd[i] += (r[i] - s.mean[i]) * (r[i] - s.mean[i]) / n;
    s.sd[i] = std::max(std::sqrt(s.sd[i]), 1e-6);
  }
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

double KsStatistic(std::vector<double> a, std::vector<double> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
  size_t i = 0, j = 0;
  double d = 0;
  while (i < a.size() && j < b.size()) {
    const double v = std::min(a[i], b[j]);
    while (i < a.size() && a[i] <= v) ++i;  // ties advance together
    while (j < b.size() && b[j] <= v) ++j;
    d = std::max(d, std::abs(i / na - j / nb));
  }
  return d;
}

namespace {

// Summary statistics of one history: t10..t90, mass-weighted [Z/H], enrichment.
struct Shape {
  std::array<double, sim::kNumMassPercentiles> t{};
  double mw_zh = 0, enrichment = 0;
};
Shape ShapeOf(const History& x, double t_universe) {
  Shape s;
  const auto m = MassFractions(x);
  s.t = AssemblyTimes(m, t_universe);
  int young = -1, old = -1;
  for (int b = 0; b < kNumBins; ++b) {
    s.mw_zh += m[b] * x[kNumBins + b];
    if (m[b] >= 0.01) {
      if (young < 0) young = b;
      old = b;
    }
  }
  s.enrichment = young >= 0 ? x[kNumBins + young] - x[kNumBins + old] : 0.0;
  return s;
}

}  // namespace

Result<PriorComparison> ComparePriorSamples(const std::vector<History>& reference, const std::vector<History>& samples,
                                            double t_universe) {
  if (reference.size() < 20 || samples.size() < 20)
    return Status::Error("prior comparison: needs >= 20 histories on each side, got " +
                         std::to_string(reference.size()) + " and " + std::to_string(samples.size()));
  auto column = [](const std::vector<History>& rows, int k) {
    std::vector<double> c(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) c[i] = rows[i][k];
    return c;
  };
  auto shapes = [t_universe](const std::vector<History>& rows) {
    std::vector<Shape> v(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) v[i] = ShapeOf(rows[i], t_universe);
    return v;
  };
  const auto sr = shapes(reference), ss = shapes(samples);
  auto pick = [](const std::vector<Shape>& v, auto get) {
    std::vector<double> c(v.size());
    for (size_t i = 0; i < v.size(); ++i) c[i] = get(v[i]);
    return c;
  };
  PriorComparison r;
  for (int k = 0; k < kHistoryDim; ++k) r.ks_component[k] = KsStatistic(column(reference, k), column(samples, k));
  for (int k = 0; k < sim::kNumMassPercentiles; ++k)
    r.ks_assembly[k] = KsStatistic(pick(sr, [k](const Shape& s) { return s.t[k]; }),
                                   pick(ss, [k](const Shape& s) { return s.t[k]; }));
  r.ks_mw_zh = KsStatistic(pick(sr, [](const Shape& s) { return s.mw_zh; }), pick(ss, [](const Shape& s) { return s.mw_zh; }));
  r.ks_enrichment = KsStatistic(pick(sr, [](const Shape& s) { return s.enrichment; }),
                                pick(ss, [](const Shape& s) { return s.enrichment; }));
  r.max_ks = std::max({*std::max_element(r.ks_component.begin(), r.ks_component.end()),
                       *std::max_element(r.ks_assembly.begin(), r.ks_assembly.end()), r.ks_mw_zh, r.ks_enrichment});
  // c(alpha) = sqrt(-ln(alpha / 2) / 2), alpha = 0.01 / 43 (Bonferroni); D_crit = c sqrt((n + m) / (n m)).
  const double n = static_cast<double>(reference.size()), m = static_cast<double>(samples.size());
  const double alpha = 0.01 / (kHistoryDim + sim::kNumMassPercentiles + 2);
  r.critical = std::sqrt(-0.5 * std::log(alpha / 2)) * std::sqrt((n + m) / (n * m));
  return r;
}

}  // namespace cubeflow::diffusion
