// Median, DER_SNR and skill figures. See stats.hpp.
#include "cubeflow/spectral/stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>

namespace cubeflow::spectral {

double Median(std::vector<double> v) {
  const size_t n = v.size();
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  const size_t h = n / 2;
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(h);
  std::nth_element(v.begin(), mid, v.end());
  const double hi = *mid;
  if (n % 2) return hi;
  return 0.5 * (hi + *std::max_element(v.begin(), mid));  // the lower middle value
}

double DerSnrNoise(const std::vector<double>& flux) {
  const size_t n = flux.size();
  if (n < 5) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> d;
  d.reserve(n - 4);
  for (size_t i = 2; i + 2 < n; ++i) d.push_back(std::fabs(2.0 * flux[i] - flux[i - 2] - flux[i + 2]));
  return 1.482602 / std::sqrt(6.0) * Median(std::move(d));
}

namespace {

/// Ranks 1..n of `v`, ties given their average rank.
std::vector<double> Ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double avg = 0.5 * static_cast<double>(i + j) + 1.0;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

double Pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  const double ma = std::accumulate(a.begin(), a.end(), 0.0) / n, mb = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  if (!(saa > 0) || !(sbb > 0)) return std::numeric_limits<double>::quiet_NaN();
  return sab / std::sqrt(saa * sbb);
}

}  // namespace

double SpearmanRho(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  return Pearson(Ranks(a), Ranks(b));
}

Skill SkillOf(const std::vector<double>& truth, const std::vector<double>& pred) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> t, p;
  for (size_t i = 0; i < std::min(truth.size(), pred.size()); ++i)
    if (std::isfinite(truth[i]) && std::isfinite(pred[i])) {
      t.push_back(truth[i]);
      p.push_back(pred[i]);
    }
  Skill s;
  s.n = static_cast<int64_t>(t.size());
  if (t.size() < 2) {
    s.r2 = s.spearman = s.constant_scatter = nan;
    return s;
  }
  const double mt = std::accumulate(t.begin(), t.end(), 0.0) / static_cast<double>(t.size());
  double sse = 0, sst = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    sse += (t[i] - p[i]) * (t[i] - p[i]);
    sst += (t[i] - mt) * (t[i] - mt);
  }
  s.r2 = sst > 0 ? 1.0 - sse / sst : nan;
  s.spearman = SpearmanRho(t, p);
  s.constant_scatter = std::sqrt(sst / static_cast<double>(t.size() - 1));
  return s;
}

}  // namespace cubeflow::spectral
