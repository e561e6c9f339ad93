// Filters and synthetic photometry. See filters.hpp.

#include "cubeflow/sim/filters.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>

#include "cubeflow/strings.hpp"

namespace cubeflow::sim {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double TrapzTLambda(const Filter& f, double lo, double hi) {
  double s = 0;
  for (size_t i = 0; i + 1 < f.wave.size(); ++i) {
    double a = f.wave[i], b = f.wave[i + 1];
    if (b <= lo || a >= hi) continue;
    auto g = [&](double l) {
      const double t = (l - f.wave[i]) / (f.wave[i + 1] - f.wave[i]);
      return (f.throughput[i] + t * (f.throughput[i + 1] - f.throughput[i])) * l;
    };
    a = std::max(a, lo);
    b = std::min(b, hi);
    s += 0.5 * (g(a) + g(b)) * (b - a);
  }
  return s;
}

double InterpThroughput(const Filter& f, double l) {
  if (f.wave.empty() || l < f.wave.front() || l > f.wave.back()) return 0.0;
  const auto it = std::upper_bound(f.wave.begin(), f.wave.end(), l);
  if (it == f.wave.end()) return f.throughput.back();
  const size_t k = static_cast<size_t>(it - f.wave.begin());
  if (k == 0) return f.throughput.front();
  const double t = (l - f.wave[k - 1]) / (f.wave[k] - f.wave[k - 1]);
  return f.throughput[k - 1] + t * (f.throughput[k] - f.throughput[k - 1]);
}

// Weights w_i (normalised) of the photon-counting mean on grid `wave`; returns coverage.
double BandWeights(const Filter& f, std::span<const double> wave, size_t* first,
                   std::vector<double>* w) {
  w->clear();
  *first = 0;
  const size_t n = wave.size();
  if (n < 2 || f.wave.size() < 2) return 0.0;
  const double total = TrapzTLambda(f, f.wave.front(), f.wave.back());
  if (!(total > 0)) return 0.0;
  const double coverage = TrapzTLambda(f, wave.front(), wave.back()) / total;
  const size_t lo = static_cast<size_t>(
      std::lower_bound(wave.begin(), wave.end(), f.wave.front()) - wave.begin());
  const size_t hi = static_cast<size_t>(
      std::upper_bound(wave.begin(), wave.end(), f.wave.back()) - wave.begin());
  // Include one pixel either side so the trapezoid reaches the filter's edges.
  const size_t a = lo > 0 ? lo - 1 : 0;
  const size_t b = std::min(hi + 1, n);
  *first = a;
  double sum = 0;
  for (size_t i = a; i < b; ++i) {
    const double left = i > 0 ? wave[i] - wave[i - 1] : 0.0;
    const double right = i + 1 < n ? wave[i + 1] - wave[i] : 0.0;
    const double wi = InterpThroughput(f, wave[i]) * wave[i] * 0.5 * (left + right);
    w->push_back(wi);
    sum += wi;
  }
  if (!(sum > 0)) {
    w->clear();
    return 0.0;
  }
  for (double& x : *w) x /= sum;
  return coverage;
}

struct AnalyticBand {
  const char* name;
  double peak, blue_edge, blue_width, red_edge, red_width, tilt;
};

// Logistic-edged band-passes with a linear tilt about the band centre:
//   T = peak / (1 + exp(-(l - a) / wa)) / (1 + exp((l - b) / wb)) * max(1 + s (l - c) / c, 0),
//   c = (a + b) / 2.
// HST parameters: our least-squares fits to the shape of the WFC3/UVIS2 curves.
constexpr AnalyticBand kBands[] = {
    {"F275W", 0.0909, 2489.63, 29.91, 3066.17, 11.84, -6.131},
    {"F336W", 0.1929, 3096.30, 19.60, 3642.49, 22.42, -1.351},
    {"F438W", 0.2201, 3977.45, 16.30, 4659.22, 10.97, 1.326},
    {"F555W", 0.3019, 4467.71, 29.06, 5924.75, 269.84, 1.235},
    {"F814W", 0.1398, 7060.87, 15.19, 9613.45, 21.07, -4.276},
    {"JOHNSON_B", 1.0, 3910.0, 45.0, 4890.0, 70.0, 0.0},
    {"JOHNSON_V", 1.0, 5075.0, 45.0, 5925.0, 90.0, 0.0},
};

Filter MakeAnalytic(const AnalyticBand& p) {
  Filter f;
  f.name = p.name;
  f.source = "builtin (analytic)";
  const double c = 0.5 * (p.blue_edge + p.red_edge);
  auto t = [&](double l) {
    const double tilt = std::max(1.0 + p.tilt * (l - c) / c, 0.0);
    return p.peak / (1.0 + std::exp(-(l - p.blue_edge) / p.blue_width)) /
           (1.0 + std::exp((l - p.red_edge) / p.red_width)) * tilt;
  };
  // Range where T > 1e-5 peak: logistic tails fall as exp(-|d|/w); 12 widths -> 6e-6.
  const double lo = std::floor(p.blue_edge - 12.0 * p.blue_width);
  const double hi = std::ceil(p.red_edge + 12.0 * p.red_width);
  for (double l = lo; l <= hi; l += 1.0) {
    f.wave.push_back(l);
    f.throughput.push_back(t(l));
  }
  return f;
}

}  // namespace

double PivotWavelength(const Filter& f) {
  double num = 0, den = 0;
  for (size_t i = 0; i + 1 < f.wave.size(); ++i) {
    const double a = f.wave[i], b = f.wave[i + 1], ta = f.throughput[i], tb = f.throughput[i + 1];
    num += 0.5 * (ta * a + tb * b) * (b - a);
    den += 0.5 * (ta / a + tb / b) * (b - a);
  }
  return den > 0 ? std::sqrt(num / den) : kNaN;
}

double MeanFluxDensity(const Filter& filter, std::span<const double> wave,
                       std::span<const double> f_lambda, double min_coverage) {
  if (wave.size() != f_lambda.size()) return kNaN;
  size_t first = 0;
  std::vector<double> w;
  const double coverage = BandWeights(filter, wave, &first, &w);
  if (w.empty() || coverage < min_coverage) return kNaN;
  double s = 0;
  for (size_t k = 0; k < w.size(); ++k) {
    if (w[k] != 0.0) s += w[k] * f_lambda[first + k];
  }
  return s;
}

Result<Filter> LoadFilter(const std::string& path, const std::string& name) {
  std::ifstream in(path);
  if (!in) {
    return Status::Error("cannot open filter curve '" + path +
                         "': check the path (2-column ASCII: wavelength in Angstrom, "
                         "throughput)");
  }
  std::vector<std::pair<double, double>> rows;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    for (char& c : line) {
      if (c == ',' || c == '\t') c = ' ';
    }
    const size_t p = line.find_first_not_of(' ');
    if (p == std::string::npos || line[p] == '#' || line[p] == ';' || line[p] == '\r') continue;
    std::istringstream ss(line);
    double l = 0, t = 0;
    if (!(ss >> l >> t)) {
      return Status::Error("filter curve '" + path + "' line " + std::to_string(line_no) +
                           ": expected two numbers (wavelength in Angstrom, throughput), got '" +
                           line + "'");
    }
    if (!std::isfinite(l) || !std::isfinite(t) || l <= 0) {
      return Status::Error("filter curve '" + path + "' line " + std::to_string(line_no) +
                           ": non-finite or non-positive wavelength");
    }
    rows.emplace_back(l, std::max(t, 0.0));
  }
  if (rows.size() < 2) {
    return Status::Error("filter curve '" + path + "' has fewer than two rows");
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  Filter f;
  for (const auto& [l, t] : rows) {
    if (!f.wave.empty() && l <= f.wave.back()) continue;  // drop duplicate wavelengths
    f.wave.push_back(l);
    f.throughput.push_back(t);
  }
  if (*std::max_element(f.throughput.begin(), f.throughput.end()) <= 0) {
    return Status::Error("filter curve '" + path + "' has no positive throughput");
  }
  if (name.empty()) {
    std::string stem = path.substr(path.find_last_of('/') == std::string::npos
                                       ? 0
                                       : path.find_last_of('/') + 1);
    const size_t dot = stem.find_last_of('.');
    if (dot != std::string::npos && dot > 0) stem = stem.substr(0, dot);
    f.name = stem;
  } else {
    f.name = name;
  }
  f.source = path;
  return f;
}

Result<Filter> BuiltinFilter(const std::string& name) {
  std::string key = Upper(name);
  for (const char* prefix : {"HST_WFC3_UVIS_", "WFC3_UVIS_", "HST_"}) {
    const std::string p(prefix);
    if (key.rfind(p, 0) == 0) {
      key = key.substr(p.size());
      break;
    }
  }
  if (key == "B") key = "JOHNSON_B";
  if (key == "V") key = "JOHNSON_V";
  for (const auto& b : kBands) {
    if (key == b.name) return MakeAnalytic(b);
  }
  std::string known;
  for (const auto& n : BuiltinFilterNames()) known += (known.empty() ? "" : ", ") + n;
  return Status::Error("unknown built-in filter '" + name + "'; known: " + known +
                       " (or load a curve from a file with LoadFilter)");
}

std::vector<std::string> BuiltinFilterNames() {
  std::vector<std::string> v;
  for (const auto& b : kBands) v.emplace_back(b.name);
  return v;
}

Result<BandpassOperator> BandpassOperator::Make(const std::vector<Filter>& filters, std::span<const double> wave,
                                                double min_coverage) {
  BandpassOperator op;
  op.n_wave_ = wave.size();
  for (const auto& f : filters) {
    size_t first = 0;
    std::vector<double> w;
    const double coverage = BandWeights(f, wave, &first, &w);
    if (w.empty() || coverage < min_coverage) {
      return Status::Error("filter '" + f.name + "' is not covered by the spectral grid (" +
                           Num(wave.empty() ? 0.0 : wave.front()) + "-" + Num(wave.empty() ? 0.0 : wave.back()) +
                           " A; " + Num(100 * std::max(coverage, 0.0), 3) + " % of its throughput, " +
                           Num(100 * min_coverage, 3) + " % needed); extend the model wavelength range or drop the band");
    }
    op.first_.push_back(first);
    op.length_.push_back(w.size());
    op.weights_.push_back(std::move(w));
    op.pivots_.push_back(PivotWavelength(f));
  }
  return op;
}

template <typename T>
void BandpassOperator::ApplyImpl(std::span<const T> f, std::span<double> out) const {
  if (f.size() != n_wave_ || out.size() != first_.size()) {
    throw Error("BandpassOperator::Apply: " + std::to_string(f.size()) + " flux values for a grid of " +
                std::to_string(n_wave_) + ", " + std::to_string(out.size()) + " outputs for " +
                std::to_string(first_.size()) + " bands (a programming error)");
  }
  for (size_t b = 0; b < first_.size(); ++b) {
    double s = 0;
    const T* x = f.data() + first_[b];
    for (size_t k = 0; k < length_[b]; ++k) s += weights_[b][k] * x[k];
    out[b] = s;
  }
}

void BandpassOperator::Apply(std::span<const double> f, std::span<double> out) const { ApplyImpl(f, out); }
void BandpassOperator::Apply(std::span<const float> f, std::span<double> out) const { ApplyImpl(f, out); }

}  // namespace cubeflow::sim
