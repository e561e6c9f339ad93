// Penalised pixel fitting of the stellar LOSVD. See fitter.hpp.
#include "cubeflow/kinematics/fitter.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "cubeflow/kinematics/nnls.hpp"

namespace cubeflow::kinematics {

namespace {

constexpr double kC = 299792.458;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string Fmt(double v, int prec = 4) {
  std::ostringstream o;
  o.precision(prec);
  o << v;
  return o.str();
}

double Median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  const size_t m = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m), v.end());
  double x = v[m];
  if (v.size() % 2 == 0) x = 0.5 * (x + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m)));
  return x;
}

/// Legendre polynomials P_0..P_deg at x.
void Legendre(double x, int deg, double* out) {
  if (deg < 0) return;
  out[0] = 1.0;
  if (deg >= 1) out[1] = x;
  for (int l = 1; l < deg; ++l) out[l + 1] = ((2.0 * l + 1.0) * x * out[l] - l * out[l - 1]) / (l + 1.0);
}

/// Rows of the pixel-mean convolution operator: model_i = sum_l val[off_i + l] T[t0_i + l].
struct RowSet {
  std::vector<int64_t> t0;
  std::vector<int> len;
  std::vector<size_t> off;
  std::vector<float> val;
  int64_t tmin = 0, tmax = 0;  // union of the rows' template ranges [tmin, tmax)
};

/// The fit of one spectrum: a least-squares problem for the minimiser and a column oracle
/// for the NNLS.
class KinProblem final : public LeastSquaresProblem, public ActiveSetOracle {
 public:
  KinProblem(const TemplateSet& ts, const FitOptions& o, const std::vector<double>& xi, const Eigen::VectorXd& y,
             const Eigen::VectorXd& q, const Eigen::VectorXd& xleg)
      : ts_(ts), o_(o), xi_(xi), y_(y), q_(q), xleg_(xleg), nw_(static_cast<int>(y.size())) {
    npar_ = o_.moments + std::max(o_.mdegree, 0);
    nfree_ = std::max(o_.degree + 1, 0);
  }

  void SetGood(const std::vector<int>& good) {
    good_ = good;
    const int ng = static_cast<int>(good_.size());
    free_.resize(ng, nfree_);
    yw_.resize(ng);
    double lg[64];
    for (int g = 0; g < ng; ++g) {
      const int i = good_[static_cast<size_t>(g)];
      Legendre(xleg_[i], o_.degree, lg);
      for (int l = 0; l < nfree_; ++l) free_(g, l) = q_[i] * lg[l];
      yw_[g] = q_[i] * y_[i];
    }
    qnorm_ = 0;
    for (int i : good_) qnorm_ += q_[i] * q_[i];
    qnorm_ = std::sqrt(qnorm_);
    warm_ = false;
  }
  void set_bias(double b) { bias_ = b; }
  double bias() const { return bias_; }
  int num_params() const { return npar_; }

  // ---- LeastSquaresProblem ---------------------------------------------------------------
  bool Residuals(const Eigen::VectorXd& p, Eigen::VectorXd& r) override {
    last_p_ = p;
    LosvdParams lp = ToLosvd(p);
    table_.Build(lp, false);
    deriv_built_ = false;
    if (!BuildRows(good_, rows_)) return false;
    MultPoly(p, good_, mp_);
    scale_.resize(static_cast<Eigen::Index>(good_.size()));
    for (size_t g = 0; g < good_.size(); ++g) scale_[static_cast<Eigen::Index>(g)] = q_[good_[g]] * mp_[static_cast<Eigen::Index>(g)];
    ActiveSetNnls::Options no;
    no.tolerance = 1e-5;  // pricing runs in single precision
    nnls_.Solve(*this, yw_, warm_, no);
    warm_ = true;
    r = nnls_.residual();
    chi2_plain_ = r.squaredNorm();
    hsum2_ = 0;
    if (o_.moments > 2 && bias_ > 0) {
      // Penalty of Cappellari & Emsellem (2004, eqs. 8-9): chi2_p = chi2 (1 + bias^2 D^2) with
      // D^2 = sum h_n^2, as residuals r sqrt(1 + bias^2 D^2). (pPXF's code adds
      // bias * robust_sigma(r) * D to every residual instead, which equals this up to the term
      // 2 bias robust_sigma D sum(r): noise, and a cone at h = 0 that makes minimisers zigzag.)
      for (int n = 2; n < o_.moments; ++n) hsum2_ += p[n] * p[n];
      pscale_ = std::sqrt(1.0 + bias_ * bias_ * hsum2_);
      r *= pscale_;
    } else {
      pscale_ = 1.0;
    }
    return r.allFinite();
  }

  void Jacobian(Eigen::MatrixXd& jac) override {
    // Variable projection (Golub & Pereyra 1973): r = P y with P the projector off the active
    // linear columns A = [polynomials | templates with w > 0], z = A^+ y; then
    //   dr/dp = -P (dA/dp) z - A (A^T A)^-1 (dA/dp)^T r.
    // (dA/dp) z is the model's derivative at fixed weights; (dA_j/dp)^T r comes from the
    // adjoint of the derivative rows: T_j . sum_g r_g scale_g drow_g.
    const int ng = static_cast<int>(good_.size());
    jac.setZero(ng, npar_);
    if (!deriv_built_) {
      table_.Build(ToLosvd(last_p_), true);
      deriv_built_ = true;
    }
    OptimalTemplate();
    const auto& pas = nnls_.passive();
    const int np = static_cast<int>(pas.size());
    const int na = nfree_ + np;
    const Eigen::VectorXd& r = nnls_.residual();
    Eigen::MatrixXd dm(ng, npar_);       // (dA/dp) z, weighted
    Eigen::MatrixXd gt = Eigen::MatrixXd::Zero(na, npar_);  // (dA/dp)^T r
    // The second term matters for the strongly coupled h_n and multiplicative terms; for V and
    // sigma alone Kaufman's approximation (dropping it) converges as fast, for less work.
    const bool full = o_.moments > 2 || o_.mdegree > 0;
    RowSet drows;
    for (int d = 0; d < o_.moments; ++d) {
      const int which = d == 0 ? -2 : d - 1;  // V: k (dK/dv = -k); sigma: table 0; h_n: table n - 2
      const double sign = d == 0 ? -1.0 : 1.0;
      const double unit = d < 2 ? 1.0 / ts_.velscale : 1.0;  // pixels -> km/s
      BuildRows(good_, drows, which);
      if (full) acc_.setZero(drows.tmax - drows.tmin);
      for (int g = 0; g < ng; ++g) {
        const double f = sign * unit * scale_[g];
        dm(g, d) = f * RowDot(drows, static_cast<size_t>(g), topt_.data());
        if (full) AddRow(drows, static_cast<size_t>(g), static_cast<float>(f * r[g]), acc_.data() - drows.tmin);
      }
      for (int k = 0; k < np && full; ++k)
        gt(nfree_ + k, d) = AdjointDot(drows, pas[static_cast<size_t>(k)]);
    }
    if (o_.mdegree > 0) {
      double lg[64];
      for (int k = 1; k <= o_.mdegree; ++k) {
        acc_.setZero(rows_.tmax - rows_.tmin);
        for (int g = 0; g < ng; ++g) {
          const int i = good_[static_cast<size_t>(g)];
          Legendre(xleg_[i], o_.mdegree, lg);
          const double m0 = RowDot(rows_, static_cast<size_t>(g), topt_.data());
          dm(g, o_.moments + k - 1) = q_[i] * lg[k] * m0;
          AddRow(rows_, static_cast<size_t>(g), static_cast<float>(q_[i] * lg[k] * r[g]), acc_.data() - rows_.tmin);
        }
        for (int j = 0; j < np; ++j) gt(nfree_ + j, o_.moments + k - 1) = AdjointDot(rows_, pas[static_cast<size_t>(j)]);
      }
    }
    if (na > 0) {
      Eigen::MatrixXd a(ng, na);
      if (nfree_ > 0) a.leftCols(nfree_) = free_;
      if (np > 0) a.rightCols(np) = nnls_.passive_columns().leftCols(np);
      const Eigen::MatrixXd gram = a.transpose() * a;
      Eigen::LDLT<Eigen::MatrixXd> ldlt(gram);
      const Eigen::MatrixXd x = ldlt.solve(a.transpose() * dm);
      if (x.allFinite()) dm.noalias() -= a * x;  // P (dA/dp) z
      if (full) {
        const Eigen::MatrixXd y2 = ldlt.solve(gt);
        if (y2.allFinite()) dm.noalias() += a * y2;  // + A (A^T A)^-1 (dA/dp)^T r
      }
    }
    jac = -dm;
    if (o_.moments > 2 && bias_ > 0) {
      // d(r s)/dp = s dr/dp + r ds/dh, s = sqrt(1 + bias^2 D^2), ds/dh_n = bias^2 h_n / s.
      jac *= pscale_;
      for (int n = 2; n < o_.moments; ++n) jac.col(n) += r * (bias_ * bias_ * last_p_[n] / pscale_);
    }
  }

  // ---- ActiveSetOracle -------------------------------------------------------------------
  int rows() const override { return static_cast<int>(good_.size()); }
  int num_bounded() const override { return ts_.n(); }
  const Eigen::MatrixXd& FreeColumns() const override { return free_; }
  double ColumnScale(int) const override { return qnorm_; }
  void Column(int j, Eigen::Ref<Eigen::VectorXd> out) override {
    const float* t = ts_.flux.data() + static_cast<size_t>(j) * static_cast<size_t>(ts_.npix);
    for (size_t g = 0; g < good_.size(); ++g)
      out[static_cast<Eigen::Index>(g)] = scale_[static_cast<Eigen::Index>(g)] * RowDotF(rows_, g, t);
  }
  void Gradient(const Eigen::VectorXd& r, Eigen::VectorXd& grad) override {
    const int64_t nt = rows_.tmax - rows_.tmin;
    acc_.setZero(nt);
    for (size_t g = 0; g < good_.size(); ++g)
      AddRow(rows_, g, static_cast<float>(scale_[static_cast<Eigen::Index>(g)] * r[static_cast<Eigen::Index>(g)]),
             acc_.data() - rows_.tmin);
    gradf_.noalias() = ts_.flux.middleRows(rows_.tmin, nt).transpose() * acc_;
    grad = gradf_.cast<double>();
  }

  // ---- after a fit -----------------------------------------------------------------------
  /// Model (normalised units) on `pixels` at the last evaluated point.
  void Model(const std::vector<int>& pixels, Eigen::VectorXd& model) {
    RowSet rs;
    model.setZero(static_cast<Eigen::Index>(pixels.size()));
    if (!BuildRows(pixels, rs)) {
      model.setConstant(kNaN);
      return;
    }
    OptimalTemplate();
    Eigen::VectorXd mp;
    MultPoly(last_p_, pixels, mp);
    double lg[64];
    const Eigen::VectorXd& zf = nnls_.free_solution();
    for (size_t k = 0; k < pixels.size(); ++k) {
      const int i = pixels[k];
      double m = mp[static_cast<Eigen::Index>(k)] * RowDot(rs, k, topt_.data());
      Legendre(xleg_[i], o_.degree, lg);
      for (int l = 0; l < nfree_; ++l) m += zf[l] * lg[l];
      model[static_cast<Eigen::Index>(k)] = m;
    }
  }
  double chi2_plain() const { return chi2_plain_; }
  const ActiveSetNnls& nnls() const { return nnls_; }
  const std::vector<int>& good() const { return good_; }

 private:
  LosvdParams ToLosvd(const Eigen::VectorXd& p) const {
    LosvdParams lp;
    lp.moments = o_.moments;
    lp.v = p[0] / ts_.velscale;
    lp.sigma = p[1] / ts_.velscale;
    for (int n = 2; n < o_.moments; ++n) lp.h[n - 2] = p[n];
    return lp;
  }

  void MultPoly(const Eigen::VectorXd& p, const std::vector<int>& pixels, Eigen::VectorXd& mp) const {
    mp.setOnes(static_cast<Eigen::Index>(pixels.size()));
    if (o_.mdegree <= 0) return;
    double lg[64];
    for (size_t k = 0; k < pixels.size(); ++k) {
      Legendre(xleg_[pixels[k]], o_.mdegree, lg);
      double m = 1.0;
      for (int j = 1; j <= o_.mdegree; ++j) m += p[o_.moments + j - 1] * lg[j];
      mp[static_cast<Eigen::Index>(k)] = std::max(m, 0.1);
    }
  }

  /// Per-edge interpolated rows of table `which` (KernelTable::Row) for the edges of `pixels`.
  void EdgeRows(const std::vector<int>& pixels, int which) {
    const int hs = table_.half_support();
    const int w = 2 * hs + 1;
    edge_val_.resize(static_cast<size_t>(nw_ + 1) * static_cast<size_t>(w));
    edge_base_.assign(static_cast<size_t>(nw_ + 1), std::numeric_limits<int64_t>::min());
    edge_phi_.resize(static_cast<size_t>(nw_ + 1));
    const double sh = static_cast<double>(table_.shift());
    auto one = [&](int e) {
      if (edge_base_[static_cast<size_t>(e)] != std::numeric_limits<int64_t>::min()) return;
      const double x = xi_[static_cast<size_t>(e)] - sh;
      const double b = std::floor(x);
      edge_base_[static_cast<size_t>(e)] = static_cast<int64_t>(b);
      edge_phi_[static_cast<size_t>(e)] = x - b;
      double* row = edge_val_.data() + static_cast<size_t>(e) * static_cast<size_t>(w);
      table_.Row(which, x - b, row);
      std::reverse(row, row + w);  // row[m] = value at offset j = hs - m (t = base - hs + m)
    };
    for (int i : pixels) {
      one(i);
      one(i + 1);
    }
  }

  /// Rows of the pixel-mean operator of table `which` (-1: the kernel's running integral K,
  /// giving the model; -2: k, giving dK/dv up to the sign; >= 0: a derivative table).
  bool BuildRows(const std::vector<int>& pixels, RowSet& rs, int which = -1) {
    EdgeRows(pixels, which);
    const int hs = table_.half_support();
    const int w = 2 * hs + 1;
    const double plateau = which == -1 ? table_.plateau() : which == -2 ? 0.0 : table_.derivative_plateau(which);
    const size_t n = pixels.size();
    rs.t0.resize(n);
    rs.len.resize(n);
    rs.off.resize(n);
    size_t total = 0;
    for (size_t k = 0; k < n; ++k) {
      const int i = pixels[k];
      const int64_t ba = edge_base_[static_cast<size_t>(i)], bb = edge_base_[static_cast<size_t>(i + 1)];
      rs.t0[k] = ba - hs;
      rs.len[k] = static_cast<int>(bb - ba) + w;
      rs.off[k] = total;
      total += static_cast<size_t>(rs.len[k]);
    }
    rs.val.resize(total);
    rs.tmin = std::numeric_limits<int64_t>::max();
    rs.tmax = std::numeric_limits<int64_t>::min();
    for (size_t k = 0; k < n; ++k) {
      const int i = pixels[k];
      const int64_t ba = edge_base_[static_cast<size_t>(i)], bb = edge_base_[static_cast<size_t>(i + 1)];
      const double* ea = edge_val_.data() + static_cast<size_t>(i) * static_cast<size_t>(w);
      const double* eb = edge_val_.data() + static_cast<size_t>(i + 1) * static_cast<size_t>(w);
      const double inv = 1.0 / (xi_[static_cast<size_t>(i + 1)] - xi_[static_cast<size_t>(i)]);
      const int len = rs.len[k];
      const int gap = static_cast<int>(bb - ba);
      float* out = rs.val.data() + rs.off[k];
      // t = t0 + l. Edge i (base ba = t0 + hs) has its reversed row ea[l] for l <= 2 hs and 0
      // beyond; edge i + 1 (base bb = ba + gap) is on its right plateau for l < gap and has
      // eb[l - gap] after.
      const int g1 = std::min(gap, w);
      for (int l = 0; l < g1; ++l) out[l] = static_cast<float>((plateau - ea[l]) * inv);
      for (int l = g1; l < gap; ++l) out[l] = static_cast<float>(plateau * inv);  // pixel wider than the kernel
      for (int l = gap; l < w; ++l) out[l] = static_cast<float>((eb[l - gap] - ea[l]) * inv);
      for (int l = std::max(gap, w); l < len; ++l) out[l] = static_cast<float>(eb[l - gap] * inv);
      rs.tmin = std::min(rs.tmin, rs.t0[k]);
      rs.tmax = std::max(rs.tmax, rs.t0[k] + len);
    }
    if (n == 0) rs.tmin = rs.tmax = 0;
    return rs.tmin >= 0 && rs.tmax <= ts_.npix;
  }

  /// acc[t0 + l] += s * row[l] (acc indexed by template pixel).
  static void AddRow(const RowSet& rs, size_t k, float s, float* acc) {
    const float* v = rs.val.data() + rs.off[k];
    float* a = acc + rs.t0[k];
    for (int l = 0; l < rs.len[k]; ++l) a[l] += s * v[l];
  }
  /// Template j dotted with the adjoint accumulator acc_ (over rs's template range).
  double AdjointDot(const RowSet& rs, int j) const {
    const int64_t nt = rs.tmax - rs.tmin;
    return static_cast<double>(ts_.flux.col(j).segment(rs.tmin, nt).dot(acc_.head(nt)));
  }

  static float RowDotF(const RowSet& rs, size_t k, const float* t) {
    const float* v = rs.val.data() + rs.off[k];
    const float* tt = t + rs.t0[k];
    return Eigen::Map<const Eigen::VectorXf>(v, rs.len[k]).dot(Eigen::Map<const Eigen::VectorXf>(tt, rs.len[k]));
  }
  static double RowDot(const RowSet& rs, size_t k, const double* t) {
    const float* v = rs.val.data() + rs.off[k];
    const double* tt = t + rs.t0[k];
    double s = 0;
    for (int l = 0; l < rs.len[k]; ++l) s += static_cast<double>(v[l]) * tt[l];
    return s;
  }

  /// topt_ = sum_k w_k T_k over the whole template grid (double).
  void OptimalTemplate() {
    topt_.setZero(ts_.npix);
    const auto& pas = nnls_.passive();
    const auto& w = nnls_.weights();
    for (size_t k = 0; k < pas.size(); ++k) topt_ += w[k] * ts_.flux.col(pas[k]).cast<double>();
  }

 private:
  const TemplateSet& ts_;
  const FitOptions& o_;
  const std::vector<double>& xi_;
  const Eigen::VectorXd& y_;
  const Eigen::VectorXd& q_;
  const Eigen::VectorXd& xleg_;
  int nw_ = 0, npar_ = 0, nfree_ = 0;
  std::vector<int> good_;
  Eigen::MatrixXd free_;
  Eigen::VectorXd yw_, mp_, scale_;
  double qnorm_ = 1;
  double bias_ = 0, hsum2_ = 0, pscale_ = 1, chi2_plain_ = 0;  // hsum2_: sum h_n^2
  bool warm_ = false, deriv_built_ = false;
  Eigen::VectorXd last_p_;
  KernelTable table_;
  RowSet rows_;
  std::vector<double> edge_val_, edge_phi_;
  std::vector<int64_t> edge_base_;
  ActiveSetNnls nnls_;
  Eigen::VectorXf acc_, gradf_;
  Eigen::VectorXd topt_;
};

}  // namespace

Result<LosvdFitter> LosvdFitter::Make(std::shared_ptr<const TemplateSet> templates, const FitOptions& o) {
  if (!templates || templates->n() == 0) return Status::Error("no templates");
  const TemplateSet& ts = *templates;
  if (o.moments < 2 || o.moments > kMaxMoments)
    return Status::Error("moments must be 2 (V, sigma) to " + std::to_string(kMaxMoments) + ", got " + std::to_string(o.moments));
  if (o.degree < -1 || o.degree > 40) return Status::Error("degree must be -1 (none) to 40, got " + std::to_string(o.degree));
  if (o.mdegree < 0 || o.mdegree > 40) return Status::Error("mdegree must be 0 (none) to 40, got " + std::to_string(o.mdegree));
  if (!(o.wave_max > o.wave_min)) return Status::Error("wave_max must be above wave_min");
  if (o.wave_min < ts.wave_min - 1e-9 || o.wave_max > ts.wave_max + 1e-9)
    return Status::Error("fit window " + Fmt(o.wave_min, 5) + "-" + Fmt(o.wave_max, 5) +
                         " A is outside the window the templates were prepared for (" + Fmt(ts.wave_min, 5) + "-" +
                         Fmt(ts.wave_max, 5) + " A)");
  if (!(o.sigma_max > 0) || !(o.v_range > 0) || !(o.h_max > 0))
    return Status::Error("sigma_max, v_range and h_max must be positive");
  // The templates must reach the largest shift plus the kernel's support.
  const double need = std::abs(o.v_start) + o.v_range + std::max(6.5 * o.sigma_max, 66.0 * ts.velscale) + 4 * ts.velscale;
  if (need > ts.margin_kms)
    return Status::Error("the templates cover +-" + Fmt(ts.margin_kms) + " km/s beyond the fit window, but |v_start| + "
                         "v_range + 6.5 sigma_max needs " + Fmt(need) + " km/s; lower v_range/sigma_max or prepare "
                         "the templates with a larger margin");
  if (!(o.sigma_start > 0) || o.sigma_start > o.sigma_max)
    return Status::Error("sigma_start must be in (0, sigma_max]");
  LosvdFitter f;
  f.templates_ = std::move(templates);
  f.options_ = o;
  return f;
}

Result<FitResult> LosvdFitter::Fit(const SpectrumView& s) const {
  const TemplateSet& ts = *templates_;
  const FitOptions& o = options_;
  const std::string who = "spectrum " + std::to_string(s.id);
  const size_t n = s.flux.size();
  if (s.edges.size() != n + 1 || s.variance.size() != n || (!s.mask.empty() && s.mask.size() != n) ||
      (!s.good.empty() && s.good.size() != n))
    return Status::Error(who + ": inconsistent sizes (flux " + std::to_string(n) + ", edges " + std::to_string(s.edges.size()) +
                         ", variance " + std::to_string(s.variance.size()) + ")");
  // Window pixels.
  size_t i0 = n, i1 = n;
  for (size_t i = 0; i < n; ++i)
    if (s.edges[i] >= o.wave_min && s.edges[i + 1] <= o.wave_max) {
      if (i0 == n) i0 = i;
      i1 = i + 1;
    }
  const double span = i0 < n ? s.edges[i1] - s.edges[i0] : 0.0;
  if (i0 == n || span < o.min_good_fraction * (o.wave_max - o.wave_min)) {
    std::string have = n > 0 ? Fmt(s.edges[0], 5) + "-" + Fmt(s.edges[n], 5) + " A" : std::string("nothing");
    return Status::Error(who + ": covers " + (i0 < n ? Fmt(s.edges[i0], 5) + "-" + Fmt(s.edges[i1], 5) + " A" : "none") +
                         " of the fit window " + Fmt(o.wave_min, 5) + "-" + Fmt(o.wave_max, 5) +
                         " A (rest frame at z_sys = " + Fmt(o.z_sys) + "; the spectrum spans " + have +
                         "): check z_sys, or move wave_min/wave_max into the data's range");
  }
  const int nw = static_cast<int>(i1 - i0);
  // Good pixels.
  std::vector<int> good;
  int n_bad = 0, n_masked = 0;
  const double z1 = 1.0 + o.z_sys;
  for (int k = 0; k < nw; ++k) {
    const size_t i = i0 + static_cast<size_t>(k);
    const double f = s.flux[i], v = s.variance[i];
    if (!std::isfinite(f) || !std::isfinite(v) || !(v > 0) || (!s.mask.empty() && s.mask[i])) {
      ++n_bad;
      continue;
    }
    bool masked = false;
    if (!s.good.empty()) {
      masked = !s.good[i];
    } else {
      const double lc = 0.5 * (s.edges[i] + s.edges[i + 1]);
      for (const auto& m : o.masks) {
        const double l = m.observed ? lc * z1 : lc;
        if (l >= m.lo && l <= m.hi) {
          masked = true;
          break;
        }
      }
    }
    if (masked) {
      ++n_masked;
      continue;
    }
    good.push_back(k);
  }
  const int nparam = o.moments + o.mdegree + std::max(o.degree + 1, 0) + 1;
  const int need = std::max(static_cast<int>(std::ceil(o.min_good_fraction * nw)), 2 * nparam);
  if (static_cast<int>(good.size()) < need)
    return Status::Error(who + ": only " + std::to_string(good.size()) + " of the " + std::to_string(nw) +
                         " pixels in the fit window " + Fmt(o.wave_min, 5) + "-" + Fmt(o.wave_max, 5) + " A are usable (" +
                         std::to_string(n_bad) + " bad, NaN or without variance; " + std::to_string(n_masked) +
                         " masked as emission/sky lines); at least " + std::to_string(need) +
                         " are needed (min_good_fraction): widen the window, mask fewer lines, or check the cube's "
                         "mask and variance");
  // Normalise.
  std::vector<double> gf;
  for (int k : good) gf.push_back(s.flux[i0 + static_cast<size_t>(k)]);
  const double norm = Median(gf);
  if (!(norm > 0) || !std::isfinite(norm))
    return Status::Error(who + ": the median flux in the fit window is " + Fmt(norm) +
                         ", not positive: no stellar continuum to fit (sky-dominated or empty bin); exclude such bins "
                         "(binning min_snr) or check the sky subtraction");
  Eigen::VectorXd y(nw), q(nw), xleg(nw);
  std::vector<double> xi(static_cast<size_t>(nw + 1));
  const double dln = ts.velscale / kC;
  for (int k = 0; k < nw; ++k) {
    const size_t i = i0 + static_cast<size_t>(k);
    y[k] = s.flux[i] / norm;
    const double v = s.variance[i];
    q[k] = std::isfinite(v) && v > 0 ? norm / std::sqrt(v) : 0.0;
    if (!std::isfinite(y[k])) y[k] = 0.0;
    xleg[k] = nw > 1 ? -1.0 + 2.0 * k / (nw - 1) : 0.0;
  }
  for (int e = 0; e <= nw; ++e) xi[static_cast<size_t>(e)] = (std::log(s.edges[i0 + static_cast<size_t>(e)]) - ts.ln_lambda0) / dln;

  KinProblem prob(ts, o, xi, y, q, xleg);
  prob.SetGood(good);
  const double bias = o.bias >= 0 ? o.bias : 0.7 * std::sqrt(500.0 / static_cast<double>(good.size()));
  prob.set_bias(o.moments > 2 ? bias : 0.0);

  const int npar = prob.num_params();
  Eigen::VectorXd p0 = Eigen::VectorXd::Zero(npar), lo(npar), hi(npar);
  const double smin = o.sigma_min > 0 ? o.sigma_min : 0.01 * ts.velscale;
  p0[0] = o.v_start;
  p0[1] = std::clamp(o.sigma_start, smin, o.sigma_max);
  lo[0] = o.v_start - o.v_range;
  hi[0] = o.v_start + o.v_range;
  lo[1] = smin;
  hi[1] = o.sigma_max;
  for (int k = 2; k < o.moments; ++k) {
    lo[k] = -o.h_max;
    hi[k] = o.h_max;
  }
  for (int k = o.moments; k < npar; ++k) {
    lo[k] = -1.0;
    hi[k] = 1.0;
  }

  FitResult res;
  res.bias = prob.bias();
  res.n_window = nw;
  res.first_pixel = static_cast<int64_t>(i0);
  const std::vector<int> good0 = good;
  std::vector<int> all(static_cast<size_t>(nw));
  std::iota(all.begin(), all.end(), 0);
  LmResult lm;
  Eigen::VectorXd p = p0;
  int n_clipped = 0;
  if (o.moments > 2) {
    // V and sigma first, h_n held at 0: the Gauss-Hermite terms are strongly correlated with
    // sigma and make poor Gauss-Newton steps far from the solution.
    Eigen::VectorXd lo2 = lo, hi2 = hi;
    for (int k = 2; k < o.moments; ++k) lo2[k] = hi2[k] = 0.0;
    lm = Minimize(prob, p, lo2, hi2, o.lm);
    res.iterations += lm.iterations;
    res.evaluations += lm.evaluations;
    p = lm.p;
  }
  // Later minimisations start near the solution: begin with more damping.
  LmOptions lm_near = o.lm;
  lm_near.lambda0 = std::max(o.lm.lambda0, 1.0);
  for (int it = 0;; ++it) {
    lm = Minimize(prob, p, lo, hi, it > 0 || o.moments > 2 ? lm_near : o.lm);
    res.iterations += lm.iterations;
    res.evaluations += lm.evaluations;
    p = lm.p;
    if (!(o.clip_sigma > 0) || it >= o.max_clip_iterations) break;
    // Clip on the original good pixels, with the noise scaled to chi2/dof = 1.
    Eigen::VectorXd model;
    prob.Model(good0, model);
    const int dof = std::max<int>(1, static_cast<int>(good.size()) - npar - static_cast<int>(prob.nnls().passive().size()) -
                                         std::max(o.degree + 1, 0));
    const double scale = std::sqrt(std::max(prob.chi2_plain() / dof, 1e-300));
    std::vector<int> kept;
    for (size_t k = 0; k < good0.size(); ++k) {
      const int i = good0[k];
      const double z = (y[i] - model[static_cast<Eigen::Index>(k)]) * q[i] / scale;
      if (std::abs(z) <= o.clip_sigma) kept.push_back(i);
    }
    if (kept == good) break;
    if (static_cast<int>(kept.size()) < need) break;  // keep the previous mask rather than fail
    good = kept;
    n_clipped = static_cast<int>(good0.size() - good.size());
    prob.SetGood(good);
  }
  // Make sure the problem's state is at p with the final good set (Minimize leaves it so).
  res.n_good = static_cast<int>(good.size());
  res.n_clipped = n_clipped;
  const int nlin = static_cast<int>(prob.nnls().passive().size()) + std::max(o.degree + 1, 0);
  const int dof = std::max<int>(1, res.n_good - npar - nlin);
  res.chi2 = prob.chi2_plain() / dof;
  const Eigen::MatrixXd cov = CovarianceFromJacobian(lm.jac);
  const double escale = o.scale_errors ? std::sqrt(std::max(res.chi2, 0.0)) : 1.0;
  res.params.fill(kNaN);
  res.errors.fill(kNaN);
  res.mc_errors.fill(kNaN);
  for (int k = 0; k < o.moments; ++k) {
    res.params[static_cast<size_t>(k)] = p[k];
    res.errors[static_cast<size_t>(k)] = std::sqrt(std::max(cov(k, k), 0.0)) * escale;
  }
  res.sigma_fit = p[1];
  for (int k = o.moments; k < npar; ++k) res.mult_poly.push_back(p[k]);
  res.add_poly.assign(prob.nnls().free_solution().data(), prob.nnls().free_solution().data() + prob.nnls().free_solution().size());
  for (double& a : res.add_poly) a *= norm;
  res.weights.assign(static_cast<size_t>(ts.n()), 0.0);
  for (size_t k = 0; k < prob.nnls().passive().size(); ++k)
    res.weights[static_cast<size_t>(prob.nnls().passive()[k])] = prob.nnls().weights()[k];
  // Best fit on every window pixel, and the S/N from the residuals.
  {
    Eigen::VectorXd model;
    prob.Model(all, model);
    res.bestfit.resize(static_cast<size_t>(nw));
    for (int k = 0; k < nw; ++k) res.bestfit[static_cast<size_t>(k)] = model[k] * norm;
    res.good.assign(static_cast<size_t>(nw), 0);
    std::vector<double> sig, res2;
    for (int i : good) {
      res.good[static_cast<size_t>(i)] = 1;
      sig.push_back(y[i]);
      res2.push_back((y[i] - model[i]) * (y[i] - model[i]));
    }
    const double rms = std::sqrt(std::accumulate(res2.begin(), res2.end(), 0.0) / std::max<size_t>(res2.size(), 1));
    res.snr = rms > 0 ? Median(sig) / rms : kNaN;
  }
  // Flags.
  if (!lm.converged) res.flags |= kKinNotConverged;
  for (int k = 0; k < o.moments; ++k)
    if (lm.at_bound[static_cast<size_t>(k)]) res.flags |= kKinAtBound;
  if (n_clipped > 0.1 * static_cast<double>(good0.size())) res.flags |= kKinManyClipped;
  if (ts.coarser) {
    res.flags |= kKinCoarserTemplates;
    const double s0 = res.params[1];
    const double s1 = std::sqrt(s0 * s0 + ts.deficit_sigma_kms * ts.deficit_sigma_kms);
    res.params[1] = s1;
    res.errors[1] *= s1 > 0 ? s0 / s1 : 1.0;
  }
  if (res.params[1] < ts.instr_sigma_kms) res.flags |= kKinSigmaBelowInstrument;

  // Monte-Carlo errors: refits of the best fit plus Gaussian noise from the variance.
  if (o.mc > 0) {
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(s.id) * 0xBF58476D1CE4E5B9ull + 1);
    std::normal_distribution<double> gauss(0.0, 1.0);
    Eigen::VectorXd model;
    prob.Model(all, model);
    Eigen::VectorXd ysim(nw);
    std::vector<std::array<double, kMaxMoments>> sols;
    FitOptions mo = o;
    Eigen::VectorXd psol = p;
    for (int r = 0; r < o.mc; ++r) {
      for (int k = 0; k < nw; ++k) ysim[k] = model[k] + (q[k] > 0 ? gauss(rng) * escale / q[k] : 0.0);
      KinProblem mp(ts, mo, xi, ysim, q, xleg);
      mp.SetGood(good);
      mp.set_bias(prob.bias());
      const LmResult mr = Minimize(mp, psol, lo, hi, o.lm);
      std::array<double, kMaxMoments> a{};
      for (int k = 0; k < o.moments; ++k) a[static_cast<size_t>(k)] = mr.p[k];
      sols.push_back(a);
    }
    for (int k = 0; k < o.moments; ++k) {
      double m = 0, m2 = 0;
      for (const auto& a : sols) m += a[static_cast<size_t>(k)];
      m /= static_cast<double>(sols.size());
      for (const auto& a : sols) m2 += (a[static_cast<size_t>(k)] - m) * (a[static_cast<size_t>(k)] - m);
      res.mc_errors[static_cast<size_t>(k)] = std::sqrt(m2 / std::max<size_t>(sols.size() - 1, 1));
    }
  }
  return res;
}

}  // namespace cubeflow::kinematics
