// Dense Basis (Iyer et al. 2019) GP-SFH histories made monotone: the mode of a Gaussian process
// for the SFR, conditioned on the Dense Basis points, under SFR >= 0 (DenseBasisCurve, sfh.hpp).
#include <algorithm>
#include <cmath>
#include <limits>

#include "cubeflow/sim/sfh.hpp"

namespace cubeflow::sim {
namespace {

constexpr int kNumIntervals = 4;        // (0, t25), (t25, t50), (t50, t75), (t75, tail start)
constexpr double kMinGap = 1e-4;        // Gyr: Dense Basis points closer than this are separated
constexpr double kUniformStep = 0.1;    // Gyr of cosmic time between regular knots
constexpr double kLogFirst = 1e-3;      // Gyr: first log-spaced knot in look-back time
constexpr int kLogPerDecade = 12;       // log-spaced knots per decade of look-back time, 1 Myr - 1 Gyr
constexpr int kMinInterior = 3;         // knots at least inside each interval between the points
constexpr double kFloor = 1e-3;         // SFR floor before the tail, as a fraction of the mean SFR 1 / t_U

/// \brief min 1/2 x'Qx + c'x subject to A x = b and x >= 0, Q tridiagonal and positive definite
/// (diagonal d, off-diagonal e), A kNumIntervals x n: the primal active-set method (Nocedal &
/// Wright 2006, algorithm 16.3) from a feasible start. Each equality-constrained subproblem is
/// a tridiagonal solve plus a kNumIntervals x kNumIntervals Schur complement, O(n).
class TridiagonalQp {
 public:
  using Row = std::array<double, kNumIntervals>;
  TridiagonalQp(std::vector<double> d, std::vector<double> e, std::vector<double> c, std::vector<Row> a)
      : n_(d.size()), d_(std::move(d)), e_(std::move(e)), c_(std::move(c)), a_(std::move(a)) {}

  /// From a feasible *x (A x = b, x >= 0) to the minimum. False if it did not terminate.
  bool Solve(std::vector<double>* x_io) {
    std::vector<double>& x = *x_io;
    const size_t n = n_;
    std::vector<char> active(n, 0);
    for (size_t i = 0; i < n; ++i) active[i] = x[i] <= 0.0;
    std::vector<double> g(n), p(n);
    Row lambda{};
    for (size_t it = 0; it < 20 * n + 100; ++it) {
      MulQ(x, &g);
      for (size_t i = 0; i < n; ++i) g[i] += c_[i];
      if (!Step(active, g, &p, &lambda)) return false;
      double pmax = 0, xmax = 0;
      for (size_t i = 0; i < n; ++i) {
        pmax = std::max(pmax, std::abs(p[i]));
        xmax = std::max(xmax, std::abs(x[i]));
      }
      if (pmax <= 1e-12 * (1.0 + xmax)) {
        // At the minimum of the working set: release the bound with the most negative multiplier.
        size_t worst = n;
        double most = 0;
        for (size_t i = 0; i < n; ++i) {
          if (!active[i]) continue;
          double mu = g[i];
          for (int k = 0; k < kNumIntervals; ++k) mu -= a_[i][k] * lambda[k];
          const double tol = 1e-10 * (1.0 + std::abs(g[i]));
          if (mu < -tol && mu < most) { most = mu; worst = i; }
        }
        if (worst == n) return true;
        active[worst] = 0;
        continue;
      }
      double alpha = 1.0;
      size_t block = n;
      for (size_t i = 0; i < n; ++i)
        if (!active[i] && p[i] < 0 && -x[i] / p[i] < alpha) { alpha = -x[i] / p[i]; block = i; }
      for (size_t i = 0; i < n; ++i) x[i] += alpha * p[i];
      if (block < n) { x[block] = 0.0; active[block] = 1; }
    }
    return false;
  }

 private:
  void MulQ(const std::vector<double>& x, std::vector<double>* out) const {
    const size_t n = n_;
    for (size_t i = 0; i < n; ++i) {
      double v = d_[i] * x[i];
      if (i > 0) v += e_[i - 1] * x[i - 1];
      if (i + 1 < n) v += e_[i] * x[i + 1];
      (*out)[i] = v;
    }
  }
  /// The step p of the working set's equality-constrained problem (p = 0 on active bounds,
  /// A p = 0) and its multipliers lambda. False if the Schur complement is singular.
  bool Step(const std::vector<char>& active, const std::vector<double>& g, std::vector<double>* p, Row* lambda) {
    const size_t n = n_;
    free_.clear();
    for (size_t i = 0; i < n; ++i)
      if (!active[i]) free_.push_back(i);
    const size_t m = free_.size();
    std::fill(p->begin(), p->end(), 0.0);
    lambda->fill(0.0);
    if (m == 0) return true;
    // LDL' of Q restricted to the free set (tridiagonal: neighbours in the free list couple only
    // when they are neighbours in x).
    ld_.resize(m);
    ll_.assign(m, 0.0);
    ld_[0] = d_[free_[0]];
    for (size_t r = 1; r < m; ++r) {
      const double off = free_[r] == free_[r - 1] + 1 ? e_[free_[r - 1]] : 0.0;
      ll_[r] = off / ld_[r - 1];
      ld_[r] = d_[free_[r]] - ll_[r] * off;
    }
    // W = Q_FF^-1 [g_F, A_F'] (kNumIntervals + 1 columns)
    cols_.assign(m * (kNumIntervals + 1), 0.0);
    for (size_t r = 0; r < m; ++r) {
      cols_[r * (kNumIntervals + 1)] = g[free_[r]];
      for (int k = 0; k < kNumIntervals; ++k) cols_[r * (kNumIntervals + 1) + 1 + k] = a_[free_[r]][k];
    }
    for (int col = 0; col <= kNumIntervals; ++col) {
      auto v = [&](size_t r) -> double& { return cols_[r * (kNumIntervals + 1) + col]; };
      for (size_t r = 1; r < m; ++r) v(r) -= ll_[r] * v(r - 1);
      for (size_t r = 0; r < m; ++r) v(r) /= ld_[r];
      for (size_t r = m - 1; r-- > 0;) v(r) -= ll_[r + 1] * v(r + 1);
    }
    // (A_F Q^-1 A_F') lambda = A_F Q^-1 g_F; rows of A_F that are zero are left out.
    std::array<std::array<double, kNumIntervals>, kNumIntervals> mat{};
    Row rhs{};
    std::array<bool, kNumIntervals> used{};
    for (size_t r = 0; r < m; ++r)
      for (int k = 0; k < kNumIntervals; ++k) {
        const double ak = a_[free_[r]][k];
        if (ak == 0.0) continue;
        used[k] = true;
        rhs[k] += ak * cols_[r * (kNumIntervals + 1)];
        for (int l = 0; l < kNumIntervals; ++l) mat[k][l] += ak * cols_[r * (kNumIntervals + 1) + 1 + l];
      }
    for (int k = 0; k < kNumIntervals; ++k)
      if (!used[k]) {
        for (int l = 0; l < kNumIntervals; ++l) mat[k][l] = mat[l][k] = 0.0;
        mat[k][k] = 1.0;
        rhs[k] = 0.0;
      }
    if (!SolveSmall(mat, rhs, lambda)) return false;
    for (size_t r = 0; r < m; ++r) {
      double v = -cols_[r * (kNumIntervals + 1)];
      for (int k = 0; k < kNumIntervals; ++k) v += cols_[r * (kNumIntervals + 1) + 1 + k] * (*lambda)[k];
      (*p)[free_[r]] = v;
    }
    return true;
  }
  /// Gaussian elimination with partial pivoting after symmetric diagonal scaling (the rows of
  /// short intervals are many orders of magnitude smaller); false if singular.
  static bool SolveSmall(std::array<std::array<double, kNumIntervals>, kNumIntervals> m, Row r, Row* out) {
    constexpr int K = kNumIntervals;
    Row sc{};
    for (int i = 0; i < K; ++i) {
      if (!(m[i][i] > 0)) return false;
      sc[i] = 1.0 / std::sqrt(m[i][i]);
    }
    for (int i = 0; i < K; ++i) {
      r[i] *= sc[i];
      for (int j = 0; j < K; ++j) m[i][j] *= sc[i] * sc[j];
    }
    for (int c = 0; c < K; ++c) {
      int piv = c;
      for (int i = c + 1; i < K; ++i)
        if (std::abs(m[i][c]) > std::abs(m[piv][c])) piv = i;
      if (!(std::abs(m[piv][c]) > 1e-13)) return false;
      std::swap(m[c], m[piv]);
      std::swap(r[c], r[piv]);
      for (int i = c + 1; i < K; ++i) {
        const double f = m[i][c] / m[c][c];
        for (int j = c; j < K; ++j) m[i][j] -= f * m[c][j];
        r[i] -= f * r[c];
      }
    }
    for (int i = K - 1; i >= 0; --i) {
      double v = r[i];
      for (int j = i + 1; j < K; ++j) v -= m[i][j] * (*out)[j];
      (*out)[i] = v / m[i][i];
    }
    for (int i = 0; i < K; ++i) (*out)[i] *= sc[i];
    return true;
  }

  size_t n_;
  std::vector<double> d_, e_, c_;
  std::vector<Row> a_;
  std::vector<size_t> free_;
  std::vector<double> ld_, ll_, cols_;
};

/// Knots of the SFR curve on [0, tail_start]: the special points (never moved), regular knots
/// (uniform in cosmic time before the last Gyr, log-spaced in look-back time after it) that are
/// not closer to a special point than 0.3 of their own spacing, and in an interval between
/// special points with fewer than kMinInterior regular knots, kMinInterior equally spaced ones
/// instead.
std::vector<double> MakeKnots(const std::array<double, kNumIntervals + 1>& special, double t_universe) {
  struct Regular { double tau, spacing; };
  std::vector<Regular> reg;
  for (int k = 1; k * kUniformStep < t_universe - 1.0; ++k) reg.push_back({k * kUniformStep, kUniformStep});
  const double ratio = std::pow(10.0, 1.0 / kLogPerDecade);
  for (int k = 0;; ++k) {
    const double lb = kLogFirst * std::pow(ratio, k);
    if (lb > 1.0 + 1e-9 || lb >= t_universe) break;
    reg.push_back({t_universe - lb, lb * (ratio - 1.0)});
  }
  std::vector<double> knots(special.begin(), special.end());
  for (int k = 0; k < kNumIntervals; ++k) {
    const double lo = special[k], hi = special[k + 1];
    std::vector<double> inside;
    for (const auto& r : reg)
      if (r.tau > lo + 0.3 * r.spacing && r.tau < hi - 0.3 * r.spacing) inside.push_back(r.tau);
    if (static_cast<int>(inside.size()) < kMinInterior) {
      inside.clear();
      for (int i = 1; i <= kMinInterior; ++i) inside.push_back(lo + (hi - lo) * i / (kMinInterior + 1.0));
    }
    knots.insert(knots.end(), inside.begin(), inside.end());
  }
  std::sort(knots.begin(), knots.end());
  return knots;
}

}  // namespace

double SfrCurve::Cumulative(double t) const {
  if (tau.empty() || t <= tau.front()) return 0.0;
  if (t >= tau.back()) return 1.0;
  const size_t j = static_cast<size_t>(std::upper_bound(tau.begin(), tau.end(), t) - tau.begin()) - 1;
  const double h = tau[j + 1] - tau[j], u = t - tau[j];
  const double c = cum[j] + sfr[j] * u + (h > 0 ? (sfr[j + 1] - sfr[j]) * u * u / (2.0 * h) : 0.0);
  return std::clamp(c, cum[j], cum[j + 1]);
}

double SfrCurve::Rate(double t) const {
  if (tau.empty() || t < tau.front() || t > tau.back()) return 0.0;
  if (t == tau.back()) return sfr.back();
  const size_t j = static_cast<size_t>(std::upper_bound(tau.begin(), tau.end(), t) - tau.begin()) - 1;
  const double h = tau[j + 1] - tau[j];
  return h > 0 ? sfr[j] + (sfr[j + 1] - sfr[j]) * (t - tau[j]) / h : sfr[j];
}

double SfrCurve::TimeOfFraction(double x) const {
  if (tau.empty()) return 0.0;
  const double target = x - 1e-10;
  if (target <= 0) return tau.front();
  if (target >= 1) return tau.back();
  // first knot at or above the target, then bisection on the monotone quadratic of its cell
  const size_t k = static_cast<size_t>(std::lower_bound(cum.begin(), cum.end(), target) - cum.begin());
  if (k == 0) return tau.front();
  const size_t j = std::min(k, cum.size() - 1) - 1;
  double lo = tau[j], hi = tau[j + 1];
  for (int it = 0; it < 64; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (Cumulative(mid) >= target) hi = mid; else lo = mid;
  }
  return hi;
}

bool DenseBasisCurve(const DenseBasisParams& p, double t_universe, SfrCurve* out) {
  const double tu = t_universe;
  // The points, kept kMinGap apart (and from the Big Bang and z = 0).
  std::array<double, 3> t{};
  for (int k = 0; k < 3; ++k) t[k] = std::clamp(p.time_frac[k], 0.0, 1.0) * tu;
  t[0] = std::max(t[0], kMinGap);
  for (int k = 1; k < 3; ++k) t[k] = std::max(t[k], t[k - 1] + kMinGap);
  if (t[2] > tu - 2 * kMinGap) {
    t[2] = tu - 2 * kMinGap;
    for (int k = 1; k >= 0; --k) t[k] = std::min(t[k], t[k + 1] - kMinGap);
  }
  // sSFR tail: the SFR is the sSFR over the last `delta` Gyr.
  const double s = std::max(p.ssfr, 0.0) * 1e9;  // fraction of the mass per Gyr
  double delta = 0;
  if (p.tail_fraction > 0) {
    delta = p.tail_fraction * tu;
    if (s > 0) delta = std::min(delta, p.tail_fraction / s);
    delta = std::min(delta, 0.5 * (tu - t[2]));
  }
  const double tail_start = tu - delta;
  const std::array<double, kNumIntervals + 1> special = {0.0, t[0], t[1], t[2], tail_start};
  const std::vector<double> knots = MakeKnots(special, tu);
  const size_t nk = knots.size();  // knot 0: the Big Bang (SFR 0); knot nk-1: the tail start
  if (nk < 3) return false;
  const size_t n = nk - 1;         // free SFR values at knots 1 .. nk-1
  std::vector<double> h(nk - 1);
  for (size_t j = 0; j + 1 < nk; ++j) h[j] = knots[j + 1] - knots[j];
  // 1/2 sum_j (x_{j+1} - x_j)^2 / h_j with x_0 = 0; the last knot has one neighbour (free end).
  std::vector<double> d(n), e(n - 1), c(n, 0.0);
  for (size_t i = 0; i < n; ++i) d[i] = 1.0 / h[i] + (i + 1 < n ? 1.0 / h[i + 1] : 0.0);
  for (size_t i = 0; i + 1 < n; ++i) e[i] = -1.0 / h[i + 1];
  // Mass in each interval: sum over its cells of h (x_j + x_{j+1}) / 2.
  std::vector<int> interval(nk - 1);
  {
    int k = 0;
    for (size_t j = 0; j + 1 < nk; ++j) {
      while (k + 1 < kNumIntervals && knots[j] >= special[k + 1]) ++k;
      interval[j] = k;
    }
  }
  std::vector<TridiagonalQp::Row> a(n);
  for (auto& row : a) row.fill(0.0);
  std::array<double, kNumIntervals> b = {0.25, 0.25, 0.25, 0.25 - s * delta};
  for (size_t j = 0; j + 1 < nk; ++j) {
    const int k = interval[j];
    const double half = 0.5 * h[j];
    if (j >= 1) a[j - 1][k] += half;  // x_j (x_0 = 0 contributes nothing)
    a[j][k] += half;                  // x_{j+1}
  }
  // The SFR floor: x = floor + x' with x' >= 0.
  const double floor = kFloor / tu;
  for (size_t i = 0; i < n; ++i) {
    c[i] += floor * (d[i] + (i > 0 ? e[i - 1] : 0.0) + (i + 1 < n ? e[i] : 0.0));
    for (int k = 0; k < kNumIntervals; ++k) b[k] -= floor * a[i][k];
  }
  // Feasible start: x' = 0 at the points and the tail start, a constant in each interval's
  // interior knots.
  std::vector<double> x(n, 0.0);
  for (int k = 0; k < kNumIntervals; ++k) {
    double weight = 0;
    std::vector<size_t> inner;
    for (size_t i = 0; i < n; ++i) {
      const double t_i = knots[i + 1];
      if (t_i > special[k] && t_i < special[k + 1]) { inner.push_back(i); weight += a[i][k]; }
    }
    if (inner.empty() || !(weight > 0) || b[k] < 0) return false;
    for (size_t i : inner) x[i] = b[k] / weight;
  }
  TridiagonalQp qp(std::move(d), std::move(e), std::move(c), std::move(a));
  if (!qp.Solve(&x)) return false;
  for (double& v : x) v = floor + std::max(v, 0.0);
  // The curve: the knots, then the tail at the sSFR (a second knot at the tail start: the SFR
  // steps there), cumulative normalised to 1.
  SfrCurve& cv = *out;
  cv.tau = knots;
  cv.sfr.assign(nk, 0.0);
  for (size_t i = 0; i < n; ++i) cv.sfr[i + 1] = x[i];
  if (delta > 0) {
    cv.tau.push_back(tail_start);
    cv.sfr.push_back(s);
    cv.tau.push_back(tu);
    cv.sfr.push_back(s);
  }
  cv.cum.assign(cv.tau.size(), 0.0);
  for (size_t j = 0; j + 1 < cv.tau.size(); ++j)
    cv.cum[j + 1] = cv.cum[j] + 0.5 * (cv.tau[j + 1] - cv.tau[j]) * (cv.sfr[j] + cv.sfr[j + 1]);
  const double total = cv.cum.back();
  if (!(total > 0) || std::abs(total - 1.0) > 1e-6) return false;
  for (double& v : cv.cum) v /= total;
  for (double& v : cv.sfr) v /= total;
  cv.cum.back() = 1.0;
  cv.tail_start = tail_start;
  return true;
}

}  // namespace cubeflow::sim
