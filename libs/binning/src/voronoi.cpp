// Voronoi binning: bin accretion + CVT/WVT, with k-d tree look-ups. See voronoi.hpp.
//
// Algorithm (Cappellari & Copin 2003, MNRAS 342, 345; Diehl & Statler 2006, MNRAS 368, 497),
// written from the papers:
//  1. Accretion. Start at the highest-S/N point. Grow the bin by the unbinned neighbour (within
//     1.2 pixels of a bin member) closest to the bin's centroid while the bin stays round
//     (R_max/R_eff - 1 <= 0.3), its S/N does not drop and it gets closer to the target. A bin
//     that ends above min_fraction * target is good, otherwise its points are set aside. The
//     next bin starts at the unbinned point closest to the centroid of everything binned so
//     far; accretion stops when the remaining points together fall short of the target.
//  2. Points not in a good bin go to the nearest good-bin centroid.
//  3. Bins far above the target (they absorbed leftover points) are split.
//  4. Lloyd iterations: Voronoi tessellation of the points around the generators, then the
//     generators move to the (S/N)^4-weighted centroids (CVT), or to the geometric centroids
//     with per-bin scale lengths sqrt(area/SN) (WVT).
//  5. Bins that end below min_fraction * target are dissolved into the nearest other bins.
//  6. Per-bin figures.
// VoronoiBin runs these steps in this order; each is one function below (Accrete,
// AssignToGoodBins, SplitRichBins, RelaxTessellation, DissolvePoorBins, FinalFigures).
//
// Cost: neighbour lists, nearest-unbinned and nearest-generator queries use a k-d tree whose
// nodes carry live-point counts (removed points prune whole subtrees), so the whole run is
// about O(N log N). The frontier of a growing bin is kept explicitly, which makes a bin of n
// points cost O(n^1.5) at worst (not O(n * N)).

#include "cubeflow/binning/voronoi.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace cubeflow::binning {

double BinNoise(double sum_var, int64_t n, double alpha) {
  const double f = (n > 1 && alpha != 0.0) ? 1.0 + alpha * std::log10(static_cast<double>(n)) : 1.0;
  return std::sqrt(sum_var) * f;
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// Static 2-D k-d tree over a point set, with per-node counts of live points (points can be
/// removed) and per-node minimum of a per-point weight (for scaled-distance searches).
class KdTree {
 public:
  struct Node {
    double x0, x1, y0, y1;  // bounding box
    int32_t begin, end;     // range in perm_
    int32_t left = -1, right = -1, parent = -1;
    int32_t alive = 0;
    double min_w = 1.0;     // min over the subtree of the weight (1 / scale^2)
  };

  KdTree(const std::vector<double>& x, const std::vector<double>& y, int leaf_size = 12)
      : leaf_size_(leaf_size) {
    const size_t n = x.size();
    perm_.resize(n);
    std::iota(perm_.begin(), perm_.end(), 0);
    px_.resize(n);
    py_.resize(n);
    w_.assign(n, 1.0);
    alive_.assign(n, 1);
    leaf_of_.assign(n, -1);
    nodes_.reserve(n / std::max(1, leaf_size / 2) * 2 + 2);
    if (n > 0) Build(x, y, 0, static_cast<int32_t>(n), -1);
    for (size_t i = 0; i < n; ++i) {
      px_[i] = x[perm_[i]];
      py_[i] = y[perm_[i]];
    }
    pos_.resize(n);
    for (size_t i = 0; i < n; ++i) pos_[perm_[i]] = static_cast<int32_t>(i);
  }

  size_t size() const { return perm_.size(); }
  bool alive(int32_t orig) const { return alive_[pos_[orig]] != 0; }

  /// Removes point `orig` from searches.
  void Kill(int32_t orig) {
    const int32_t p = pos_[orig];
    if (!alive_[p]) return;
    alive_[p] = 0;
    for (int32_t nd = leaf_of_[p]; nd >= 0; nd = nodes_[nd].parent) --nodes_[nd].alive;
  }

  /// Sets per-point weights (1/scale^2) and refreshes node minima.
  void SetWeights(const std::vector<double>& w_orig) {
    for (size_t i = 0; i < perm_.size(); ++i) w_[i] = w_orig[perm_[i]];
    for (size_t k = nodes_.size(); k-- > 0;) {  // children come after parents
      Node& nd = nodes_[k];
      if (nd.left < 0) {
        double m = kInf;
        for (int32_t i = nd.begin; i < nd.end; ++i) m = std::min(m, w_[i]);
        nd.min_w = m;
      } else {
        nd.min_w = std::min(nodes_[nd.left].min_w, nodes_[nd.right].min_w);
      }
    }
  }

  /// Live point minimising w * |p - q|^2 among those with accept(orig) true; `best` is an
  /// upper bound on entry (kInf for none) and the minimum on return. Returns -1 if none.
  template <typename Accept>
  int32_t Nearest(double qx, double qy, double& best, int32_t best_idx, Accept&& accept) const {
    if (nodes_.empty()) return best_idx;
    int32_t stack[128];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
      const Node& nd = nodes_[stack[--sp]];
      if (nd.alive == 0) continue;
      const double dx = qx < nd.x0 ? nd.x0 - qx : (qx > nd.x1 ? qx - nd.x1 : 0.0);
      const double dy = qy < nd.y0 ? nd.y0 - qy : (qy > nd.y1 ? qy - nd.y1 : 0.0);
      if ((dx * dx + dy * dy) * nd.min_w >= best) continue;
      if (nd.left < 0) {
        for (int32_t i = nd.begin; i < nd.end; ++i) {
          if (!alive_[i]) continue;
          const double ex = px_[i] - qx, ey = py_[i] - qy;
          const double d = (ex * ex + ey * ey) * w_[i];
          if (d < best && accept(perm_[i])) {
            best = d;
            best_idx = perm_[i];
          }
        }
        continue;
      }
      // Visit the nearer child first (pushed last).
      const Node& l = nodes_[nd.left];
      const Node& r = nodes_[nd.right];
      const double cl = BoxDist(l, qx, qy), cr = BoxDist(r, qx, qy);
      if (sp + 2 > 128) throw std::logic_error("k-d tree too deep");
      if (cl <= cr) {
        stack[sp++] = nd.right;
        stack[sp++] = nd.left;
      } else {
        stack[sp++] = nd.left;
        stack[sp++] = nd.right;
      }
    }
    return best_idx;
  }

  /// Calls f(orig) for every point (live or not) within distance r of q.
  template <typename F>
  void Range(double qx, double qy, double r, F&& f) const {
    if (nodes_.empty()) return;
    const double r2 = r * r;
    int32_t stack[128];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
      const Node& nd = nodes_[stack[--sp]];
      if (BoxDist(nd, qx, qy) > r2) continue;
      if (nd.left < 0) {
        for (int32_t i = nd.begin; i < nd.end; ++i) {
          const double ex = px_[i] - qx, ey = py_[i] - qy;
          if (ex * ex + ey * ey <= r2) f(perm_[i]);
        }
        continue;
      }
      stack[sp++] = nd.left;
      stack[sp++] = nd.right;
    }
  }

 private:
  static double BoxDist(const Node& nd, double qx, double qy) {
    const double dx = qx < nd.x0 ? nd.x0 - qx : (qx > nd.x1 ? qx - nd.x1 : 0.0);
    const double dy = qy < nd.y0 ? nd.y0 - qy : (qy > nd.y1 ? qy - nd.y1 : 0.0);
    return dx * dx + dy * dy;
  }

  int32_t Build(const std::vector<double>& x, const std::vector<double>& y, int32_t b, int32_t e,
                int32_t parent) {
    const int32_t id = static_cast<int32_t>(nodes_.size());
    nodes_.push_back(Node{});
    double x0 = kInf, x1 = -kInf, y0 = kInf, y1 = -kInf;
    for (int32_t i = b; i < e; ++i) {
      const int32_t o = perm_[i];
      x0 = std::min(x0, x[o]);
      x1 = std::max(x1, x[o]);
      y0 = std::min(y0, y[o]);
      y1 = std::max(y1, y[o]);
    }
    {
      Node& nd = nodes_[id];
      nd.x0 = x0; nd.x1 = x1; nd.y0 = y0; nd.y1 = y1;
      nd.begin = b; nd.end = e; nd.parent = parent; nd.alive = e - b;
    }
    if (e - b <= leaf_size_ || (x1 - x0 == 0 && y1 - y0 == 0)) {
      for (int32_t i = b; i < e; ++i) leaf_of_[i] = id;
      return id;
    }
    const bool split_x = (x1 - x0) >= (y1 - y0);
    const int32_t m = b + (e - b) / 2;
    std::nth_element(perm_.begin() + b, perm_.begin() + m, perm_.begin() + e,
                     [&](int32_t a, int32_t c) { return split_x ? x[a] < x[c] : y[a] < y[c]; });
    const int32_t l = Build(x, y, b, m, id);
    const int32_t r = Build(x, y, m, e, id);
    nodes_[id].left = l;
    nodes_[id].right = r;
    return id;
  }

  int leaf_size_;
  std::vector<int32_t> perm_, pos_, leaf_of_;
  std::vector<double> px_, py_, w_;
  std::vector<uint8_t> alive_;
  std::vector<Node> nodes_;
};

/// Nearest-generator search: k-d tree or brute force, scaled distance |p-g|^2 / s_g^2.
class GeneratorIndex {
 public:
  GeneratorIndex(const std::vector<double>& gx, const std::vector<double>& gy,
                 const std::vector<double>& weight, bool use_tree)
      : gx_(gx), gy_(gy), w_(weight), use_tree_(use_tree) {
    if (use_tree_) {
      tree_ = std::make_unique<KdTree>(gx_, gy_, 8);
      tree_->SetWeights(w_);
    }
  }
  /// Nearest generator to (x, y); `hint` (or -1) is tried first.
  int32_t Nearest(double x, double y, int32_t hint) const {
    double best = kInf;
    int32_t idx = -1;
    if (hint >= 0 && hint < static_cast<int32_t>(gx_.size())) {
      const double ex = gx_[hint] - x, ey = gy_[hint] - y;
      best = (ex * ex + ey * ey) * w_[hint] * (1.0 + 1e-12);
      idx = hint;
    }
    if (use_tree_) return tree_->Nearest(x, y, best, idx, [](int32_t) { return true; });
    for (size_t k = 0; k < gx_.size(); ++k) {
      const double ex = gx_[k] - x, ey = gy_[k] - y;
      const double d = (ex * ex + ey * ey) * w_[k];
      if (d < best) {
        best = d;
        idx = static_cast<int32_t>(k);
      }
    }
    return idx;
  }

 private:
  std::vector<double> gx_, gy_, w_;
  bool use_tree_;
  std::unique_ptr<KdTree> tree_;
};

struct Inputs {
  const std::vector<double>& x;
  const std::vector<double>& y;
  const std::vector<double>& s;
  const std::vector<double>& n;
};

/// Assigns every point to its nearest generator (in parallel), using cls as hints.
void Tessellate(const Inputs& in, const std::vector<double>& gx, const std::vector<double>& gy,
                const std::vector<double>& w, bool use_tree, std::vector<int32_t>& cls) {
  GeneratorIndex index(gx, gy, w, use_tree);
  const size_t n = in.x.size();
  tbb::parallel_for(tbb::blocked_range<size_t>(0, n, 4096), [&](const tbb::blocked_range<size_t>& r) {
    for (size_t i = r.begin(); i != r.end(); ++i) cls[i] = index.Nearest(in.x[i], in.y[i], cls[i]);
  });
}

/// Per-bin sums over a labelling with nbins labels.
struct BinSums {
  std::vector<int64_t> n;
  std::vector<double> sig, var, x, y, wx, wy, w;
  void Compute(const Inputs& in, const std::vector<int32_t>& cls, size_t nbins,
               const std::vector<double>* dens) {
    n.assign(nbins, 0);
    sig.assign(nbins, 0.0);
    var.assign(nbins, 0.0);
    x.assign(nbins, 0.0);
    y.assign(nbins, 0.0);
    wx.assign(nbins, 0.0);
    wy.assign(nbins, 0.0);
    w.assign(nbins, 0.0);
    for (size_t i = 0; i < cls.size(); ++i) {
      const int32_t k = cls[i];
      if (k < 0) continue;
      ++n[k];
      sig[k] += in.s[i];
      var[k] += in.n[i] * in.n[i];
      x[k] += in.x[i];
      y[k] += in.y[i];
      if (dens) {
        const double d = (*dens)[i];
        wx[k] += d * in.x[i];
        wy[k] += d * in.y[i];
        w[k] += d;
      }
    }
  }
};

/// Drops bins without points, renumbering labels in increasing order of the old label.
/// Returns the old index of each kept bin.
std::vector<int32_t> CompactLabels(std::vector<int32_t>& cls, const std::vector<int64_t>& count) {
  std::vector<int32_t> remap(count.size(), -1), kept;
  for (size_t k = 0; k < count.size(); ++k) {
    if (count[k] > 0) {
      remap[k] = static_cast<int32_t>(kept.size());
      kept.push_back(static_cast<int32_t>(k));
    }
  }
  for (auto& c : cls)
    if (c >= 0) c = remap[c];
  return kept;
}

/// Splits bins whose S/N is well above the target (typically bins that absorbed leftover
/// points) into m parts, m the largest count for which each part is predicted to still reach
/// the target: m generators are placed at the (S/N)^2-mass quantiles along the bin's major
/// axis. The following Lloyd iterations relax them. Returns the number of bins added.
size_t SplitRichBins(const Inputs& in, const std::vector<int32_t>& cls, double target, double alpha,
                     std::vector<double>& gx, std::vector<double>& gy) {
  const size_t nb = gx.size();
  BinSums sums;
  sums.Compute(in, cls, nb, nullptr);
  std::vector<int64_t> off(nb + 1, 0);
  for (int32_t k : cls) ++off[k + 1];
  for (size_t k = 0; k < nb; ++k) off[k + 1] += off[k];
  std::vector<int32_t> pts(cls.size());
  {
    std::vector<int64_t> fill(off.begin(), off.end() - 1);
    for (size_t i = 0; i < cls.size(); ++i) pts[fill[cls[i]]++] = static_cast<int32_t>(i);
  }
  size_t added = 0;
  std::vector<std::pair<double, int32_t>> proj;
  for (size_t k = 0; k < nb; ++k) {
    const int64_t n = sums.n[k];
    if (n < 4) continue;
    const double sn = sums.sig[k] / BinNoise(sums.var[k], n, alpha);
    if (sn < 1.5 * target) continue;
    // Largest m with predicted part S/N >= target (parts of n/m points, 1/m of the signal and variance).
    int64_t m = 1;
    while (m + 1 <= n / 2) {
      const double mm = static_cast<double>(m + 1);
      const double part = (sums.sig[k] / mm) /
                          BinNoise(sums.var[k] / mm, std::max<int64_t>(1, n / (m + 1)), alpha);
      if (part < target) break;
      ++m;
    }
    if (m < 2) continue;
    const double cx = sums.x[k] / n, cy = sums.y[k] / n;
    double sxx = 0, syy = 0, sxy = 0;
    for (int64_t o = off[k]; o < off[k + 1]; ++o) {
      const int32_t i = pts[o];
      const double dx = in.x[i] - cx, dy = in.y[i] - cy;
      sxx += dx * dx;
      syy += dy * dy;
      sxy += dx * dy;
    }
    const double theta = 0.5 * std::atan2(2 * sxy, sxx - syy);
    const double ux = std::cos(theta), uy = std::sin(theta);
    proj.clear();
    double mass = 0;
    for (int64_t o = off[k]; o < off[k + 1]; ++o) {
      const int32_t i = pts[o];
      proj.emplace_back((in.x[i] - cx) * ux + (in.y[i] - cy) * uy, i);
      const double r = in.s[i] / in.n[i];
      mass += r * r;
    }
    std::sort(proj.begin(), proj.end());
    std::vector<double> ax(m, 0), ay(m, 0), aw(m, 0);
    double cum = 0;
    for (const auto& pr : proj) {
      const int32_t i = pr.second;
      const double r = in.s[i] / in.n[i];
      const double mi = r * r;
      const int64_t part = std::min<int64_t>(m - 1, static_cast<int64_t>((cum + 0.5 * mi) / mass * m));
      cum += mi;
      ax[part] += in.x[i];
      ay[part] += in.y[i];
      aw[part] += 1;
    }
    bool first = true;
    for (int64_t j = 0; j < m; ++j) {
      if (aw[j] == 0) continue;
      if (first) {
        gx[k] = ax[j] / aw[j];
        gy[k] = ay[j] / aw[j];
        first = false;
      } else {
        gx.push_back(ax[j] / aw[j]);
        gy.push_back(ay[j] / aw[j]);
        ++added;
      }
    }
  }
  return added;
}

double PixelSize(const std::vector<double>& x, const std::vector<double>& y, const KdTree& tree,
                 bool use_tree) {
  const size_t n = x.size();
  double best = kInf;
  if (use_tree) {
    // Smallest non-zero nearest-neighbour distance.
    std::vector<double> nn(n, kInf);
    tbb::parallel_for(tbb::blocked_range<size_t>(0, n, 4096), [&](const tbb::blocked_range<size_t>& r) {
      for (size_t i = r.begin(); i != r.end(); ++i) {
        double b = kInf;
        tree.Nearest(x[i], y[i], b, -1, [&](int32_t j) {
          return x[j] != x[i] || y[j] != y[i];
        });
        nn[i] = b;
      }
    });
    best = *std::min_element(nn.begin(), nn.end());
  } else {
    for (size_t i = 0; i < n; ++i)
      for (size_t j = i + 1; j < n; ++j) {
        const double d = (x[i] - x[j]) * (x[i] - x[j]) + (y[i] - y[j]) * (y[i] - y[j]);
        if (d > 0 && d < best) best = d;
      }
  }
  return std::isfinite(best) ? std::sqrt(best) : 1.0;
}

/// What every step of one VoronoiBin run reads: the points, the options and derived figures.
struct Problem {
  const Inputs& in;
  const VoronoiOptions& opt;
  double target;    ///< opt.target_snr
  double alpha;     ///< opt.covariance_alpha
  double min_sn;    ///< opt.min_fraction * target: the S/N a bin must reach
  double pix;       ///< pixel size
  bool use_tree;    ///< opt.spatial_index
  size_t size() const { return in.x.size(); }
  /// S/N of a bin of n points with summed signal and variance (covariance-corrected).
  double Sn(double sig, double var, int64_t n) const { return sig / BinNoise(var, n, alpha); }
};

/// Throws std::invalid_argument unless the points and options can be binned.
void CheckInputs(const std::vector<double>& x, const std::vector<double>& y, const std::vector<double>& signal,
                 const std::vector<double>& noise, const VoronoiOptions& opt) {
  const size_t npts = x.size();
  if (y.size() != npts || signal.size() != npts || noise.size() != npts)
    throw std::invalid_argument("VoronoiBin: x, y, signal and noise must have the same length");
  if (!(opt.target_snr > 0) || !std::isfinite(opt.target_snr))
    throw std::invalid_argument("VoronoiBin: target_snr must be positive");
  if (npts > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 2))
    throw std::invalid_argument("VoronoiBin: too many points");
  for (size_t i = 0; i < npts; ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i]) || !std::isfinite(signal[i]))
      throw std::invalid_argument("VoronoiBin: point " + std::to_string(i) +
                                  " has a non-finite coordinate or signal");
    if (!(noise[i] > 0) || !std::isfinite(noise[i]))
      throw std::invalid_argument("VoronoiBin: point " + std::to_string(i) +
                                  " has non-positive or non-finite noise");
  }
}

/// Neighbour lists (CSR): the points within `radius` of point i, i itself excluded, are
/// nb[off[i]] .. nb[off[i + 1] - 1].
struct Neighbours {
  std::vector<int64_t> off;
  std::vector<int32_t> nb;
};

Neighbours FindNeighbours(const Problem& pb, const KdTree& tree, double radius) {
  const std::vector<double>& x = pb.in.x;
  const std::vector<double>& y = pb.in.y;
  const size_t npts = pb.size();
  Neighbours g;
  g.off.assign(npts + 1, 0);
  tbb::parallel_for(tbb::blocked_range<size_t>(0, npts, 4096), [&](const tbb::blocked_range<size_t>& r) {
    for (size_t i = r.begin(); i != r.end(); ++i) {
      int64_t c = 0;
      tree.Range(x[i], y[i], radius, [&](int32_t j) { c += (static_cast<size_t>(j) != i); });
      g.off[i + 1] = c;
    }
  });
  for (size_t i = 0; i < npts; ++i) g.off[i + 1] += g.off[i];
  g.nb.resize(static_cast<size_t>(g.off[npts]));
  tbb::parallel_for(tbb::blocked_range<size_t>(0, npts, 4096), [&](const tbb::blocked_range<size_t>& r) {
    for (size_t i = r.begin(); i != r.end(); ++i) {
      int64_t o = g.off[i];
      tree.Range(x[i], y[i], radius, [&](int32_t j) {
        if (static_cast<size_t>(j) != i) g.nb[o++] = j;
      });
    }
  });
  return g;
}

/// The point with the highest S/N (the first accretion bin starts there).
int32_t BrightestPoint(const Inputs& in) {
  int32_t start = 0;
  double best = -kInf;
  for (size_t i = 0; i < in.x.size(); ++i) {
    const double sn = in.s[i] / in.n[i];
    if (sn > best) {
      best = sn;
      start = static_cast<int32_t>(i);
    }
  }
  return start;
}

/// Sums over the points of one accreted bin.
struct GrownBin {
  double sx = 0, sy = 0, sig = 0, var = 0;
  int64_t n = 0;
  double sn = 0;  ///< S/N of the bin as grown
};

/// Accretion state: which bin each point joined, and scratch lists reused from bin to bin.
struct Accretion {
  std::vector<int32_t> acc;    ///< accretion bin of each point (good or failed); -1 = none yet
  std::vector<uint8_t> good;   ///< per accretion bin: reached min_sn
  std::vector<int32_t> stamp;  ///< last bin whose frontier took the point
  std::vector<int32_t> members, frontier;
};

/// Grows accretion bin b from `start`: adds the unbinned neighbour (within the neighbour
/// radius of a member) closest to the bin's centroid while the S/N does not drop, gets closer
/// to the target and the bin stays round (R_max / R_eff - 1 <= max_roundness).
GrownBin GrowBin(const Problem& pb, const Neighbours& nbs, int32_t start, int32_t b, Accretion& a) {
  const std::vector<double>& x = pb.in.x;
  const std::vector<double>& y = pb.in.y;
  const double reff_coef = pb.pix / std::sqrt(M_PI);  // R_eff = sqrt(n / pi) * pix
  a.members.clear();
  a.frontier.clear();
  GrownBin g;
  auto add = [&](int32_t p) {
    a.acc[p] = b;
    a.members.push_back(p);
    g.sx += x[p];
    g.sy += y[p];
    g.sig += pb.in.s[p];
    g.var += pb.in.n[p] * pb.in.n[p];
    ++g.n;
    for (int64_t o = nbs.off[p]; o < nbs.off[p + 1]; ++o) {
      const int32_t q = nbs.nb[o];
      if (a.acc[q] < 0 && a.stamp[q] != b) {
        a.stamp[q] = b;
        a.frontier.push_back(q);
      }
    }
  };
  add(start);
  double sn_old = pb.Sn(g.sig, g.var, g.n);
  // Reference for the bound on R_max: exact R_max at centroid (rcx, rcy).
  double rcx = g.sx, rcy = g.sy, rref = 0;
  while (true) {
    const double cx = g.sx / g.n, cy = g.sy / g.n;
    int32_t cand = -1;
    double bestd = kInf;
    for (size_t f = 0; f < a.frontier.size();) {
      const int32_t q = a.frontier[f];
      if (a.acc[q] >= 0) {
        a.frontier[f] = a.frontier.back();
        a.frontier.pop_back();
        continue;
      }
      const double d = (x[q] - cx) * (x[q] - cx) + (y[q] - cy) * (y[q] - cy);
      if (d < bestd || (d == bestd && q < cand)) {
        bestd = d;
        cand = q;
      }
      ++f;
    }
    if (cand < 0) break;
    const int64_t n1 = g.n + 1;
    const double sig1 = g.sig + pb.in.s[cand], var1 = g.var + pb.in.n[cand] * pb.in.n[cand];
    const double sn_new = pb.Sn(sig1, var1, n1);
    if (std::abs(sn_new - pb.target) > std::abs(sn_old - pb.target) || sn_new < sn_old) break;
    // Roundness of the bin with the candidate.
    const double nx = (g.sx + x[cand]) / n1, ny = (g.sy + y[cand]) / n1;
    const double reff = reff_coef * std::sqrt(static_cast<double>(n1));
    const double dc = std::hypot(x[cand] - nx, y[cand] - ny);
    double rmax_ub = std::max(rref + std::hypot(nx - rcx, ny - rcy), dc);
    if (rmax_ub / reff - 1.0 > pb.opt.max_roundness) {
      double rmax = dc;
      for (int32_t p : a.members) rmax = std::max(rmax, std::hypot(x[p] - nx, y[p] - ny));
      if (rmax / reff - 1.0 > pb.opt.max_roundness) break;
      rcx = nx;
      rcy = ny;
      rref = rmax;
    }
    add(cand);
    sn_old = sn_new;
  }
  g.sn = sn_old;
  return g;
}

/// Where the next accretion bin starts: the unbinned point closest to (qx, qy), the centroid
/// of everything binned so far. With the spatial index, points are kept sorted by distance to a
/// reference centre that follows the centroid; they are re-sorted (remaining points only) when
/// the centroid has moved by more than 5% of the current radius (or 2 pixels).
class StartPicker {
 public:
  explicit StartPicker(const Problem& pb) : pb_(pb) {}

  /// The next start, or -1 if every point is binned.
  int32_t Next(double qx, double qy, const std::vector<int32_t>& acc) {
    const std::vector<double>& x = pb_.in.x;
    const std::vector<double>& y = pb_.in.y;
    const size_t npts = pb_.size();
    int32_t start = -1;
    if (!pb_.use_tree) {
      double bd = kInf;
      for (size_t i = 0; i < npts; ++i) {
        if (acc[i] >= 0) continue;
        const double d = (x[i] - qx) * (x[i] - qx) + (y[i] - qy) * (y[i] - qy);
        if (d < bd) {
          bd = d;
          start = static_cast<int32_t>(i);
        }
      }
      return start;
    }
    const double drift = std::hypot(qx - ref_x_, qy - ref_y_);
    if (order_.empty() || drift > std::max(2.0 * pb_.pix, 0.05 * ref_radius_)) {
      std::vector<std::pair<double, int32_t>> keyed;
      keyed.reserve(order_.empty() ? npts : order_.size() - optr_);
      auto push = [&](int32_t p) {
        if (acc[p] < 0) keyed.emplace_back((x[p] - qx) * (x[p] - qx) + (y[p] - qy) * (y[p] - qy), p);
      };
      if (order_.empty()) {
        for (size_t i = 0; i < npts; ++i) push(static_cast<int32_t>(i));
      } else {
        for (size_t k = optr_; k < order_.size(); ++k) push(order_[k]);
      }
      std::sort(keyed.begin(), keyed.end());
      order_.resize(keyed.size());
      for (size_t k = 0; k < keyed.size(); ++k) order_[k] = keyed[k].second;
      optr_ = 0;
      ref_x_ = qx;
      ref_y_ = qy;
    }
    while (optr_ < order_.size() && acc[order_[optr_]] >= 0) ++optr_;
    if (optr_ < order_.size()) {
      start = order_[optr_];
      ref_radius_ = std::hypot(x[start] - ref_x_, y[start] - ref_y_);
    }
    return start;
  }

 private:
  const Problem& pb_;
  std::vector<int32_t> order_;  // next-start candidates, by distance to (ref_x_, ref_y_)
  size_t optr_ = 0;
  double ref_x_ = 0, ref_y_ = 0, ref_radius_ = 0;
};

/// Step 1, bin accretion: bins grown one after the other until the unbinned points together
/// fall short of min_sn. Returns acc (accretion bin per point, -1 = never binned) and good.
Accretion Accrete(const Problem& pb, const Neighbours& nbs, double tot_sig, double tot_var) {
  const size_t npts = pb.size();
  Accretion a;
  a.acc.assign(npts, -1);
  a.stamp.assign(npts, -1);
  double rem_sig = tot_sig, rem_var = tot_var;
  int64_t rem_n = static_cast<int64_t>(npts);
  double gsx = 0, gsy = 0;  // sums over binned points
  int64_t gn = 0;
  StartPicker picker(pb);
  int32_t start = BrightestPoint(pb.in);
  while (start >= 0) {
    const GrownBin g = GrowBin(pb, nbs, start, static_cast<int32_t>(a.good.size()), a);
    a.good.push_back(g.sn >= pb.min_sn ? 1 : 0);
    rem_sig -= g.sig;
    rem_var -= g.var;
    rem_n -= g.n;
    gsx += g.sx;
    gsy += g.sy;
    gn += g.n;
    if (rem_n <= 0 || pb.Sn(rem_sig, std::max(rem_var, 0.0), rem_n) < pb.min_sn) break;
    start = picker.Next(gsx / gn, gsy / gn, a.acc);
  }
  return a;
}

/// Step 2: good accretion bins keep their points, every other point goes to the nearest
/// good-bin centroid. Sets cls, the generators (gx, gy: the good bins' centroids) and returns
/// the number of good bins.
int AssignToGoodBins(const Problem& pb, const Accretion& a, std::vector<int32_t>& cls, std::vector<double>& gx,
                     std::vector<double>& gy) {
  const size_t npts = pb.size();
  int ngood = 0;
  std::vector<int32_t> good_id(a.good.size(), -1);
  for (size_t k = 0; k < a.good.size(); ++k)
    if (a.good[k]) good_id[k] = ngood++;
  for (size_t i = 0; i < npts; ++i) cls[i] = a.acc[i] >= 0 ? good_id[a.acc[i]] : -1;
  if (ngood == 0) return 0;
  BinSums sums;
  sums.Compute(pb.in, cls, ngood, nullptr);
  gx.resize(ngood);
  gy.resize(ngood);
  for (int k = 0; k < ngood; ++k) {
    gx[k] = sums.x[k] / sums.n[k];
    gy[k] = sums.y[k] / sums.n[k];
  }
  GeneratorIndex index(gx, gy, std::vector<double>(gx.size(), 1.0), pb.use_tree);
  for (size_t i = 0; i < npts; ++i)
    if (cls[i] < 0) cls[i] = index.Nearest(pb.in.x[i], pb.in.y[i], -1);
  return ngood;
}

/// Quality of a labelling (lower is better): RMS of (S/N / target - 1) over bins of >= 2
/// points, plus the fraction of bins below min_fraction * target, plus half the fraction of
/// elongated bins (roundness > 0.6 among bins of >= 3 points). cls holds compacted labels j;
/// kept[j] indexes the sums. `rmax` is scratch.
double Badness(const Problem& pb, const BinSums& b, const std::vector<int32_t>& kept, const std::vector<int32_t>& cls,
               std::vector<double>& rmax) {
  double s2 = 0;
  int64_t nm = 0, low = 0, n3 = 0, elongated = 0;
  for (int32_t k : kept) {
    const double r = pb.Sn(b.sig[k], b.var[k], b.n[k]) / pb.target;
    if (r < pb.opt.min_fraction) ++low;
    if (b.n[k] < 2) continue;
    s2 += (r - 1.0) * (r - 1.0);
    ++nm;
  }
  rmax.assign(kept.size(), 0.0);
  for (size_t i = 0; i < pb.size(); ++i) {
    const int32_t j = cls[i];
    const int32_t k = kept[j];
    const double dx = pb.in.x[i] - b.x[k] / b.n[k], dy = pb.in.y[i] - b.y[k] / b.n[k];
    rmax[j] = std::max(rmax[j], dx * dx + dy * dy);
  }
  for (size_t j = 0; j < kept.size(); ++j) {
    const int64_t n = b.n[kept[j]];
    if (n < 3) continue;
    ++n3;
    if (std::sqrt(rmax[j]) > 1.6 * pb.pix * std::sqrt(n / M_PI)) ++elongated;
  }
  const double nk = static_cast<double>(std::max<size_t>(1, kept.size()));
  return (nm > 0 ? std::sqrt(s2 / nm) : 0.0) + low / nk +
         0.5 * static_cast<double>(elongated) / std::max<int64_t>(1, n3);
}

/// One Lloyd update: the new generator (nx, ny) and weight nw of every kept bin j (old label
/// kept[j]): the (S/N)^4-weighted centroid (CVT) or the centroid with weight SN / area (WVT).
/// Returns the summed squared displacement of the generators.
double MoveGenerators(const Problem& pb, const BinSums& sums, const std::vector<int32_t>& kept,
                      const std::vector<double>& gx, const std::vector<double>& gy, std::vector<double>& nx,
                      std::vector<double>& ny, std::vector<double>& nw) {
  nx.resize(kept.size());
  ny.resize(kept.size());
  nw.resize(kept.size());
  double disp2 = 0;
  for (size_t j = 0; j < kept.size(); ++j) {
    const int32_t k = kept[j];
    if (pb.opt.method == VoronoiMethod::kCvt && sums.w[k] > 0) {
      nx[j] = sums.wx[k] / sums.w[k];
      ny[j] = sums.wy[k] / sums.w[k];
    } else {
      nx[j] = sums.x[k] / sums.n[k];
      ny[j] = sums.y[k] / sums.n[k];
    }
    disp2 += (nx[j] - gx[k]) * (nx[j] - gx[k]) + (ny[j] - gy[k]) * (ny[j] - gy[k]);
    if (pb.opt.method == VoronoiMethod::kWvt) {
      // Diehl & Statler (2006): scale length sqrt(area / SN).
      const double sn = std::max(pb.Sn(sums.sig[k], sums.var[k], sums.n[k]), 1e-3 * pb.target);
      nw[j] = sn / (static_cast<double>(sums.n[k]) * pb.pix * pb.pix);  // 1 / scale^2
    } else {
      nw[j] = 1.0;
    }
  }
  return disp2;
}

/// Step 4, Lloyd iterations (CVT / WVT): tessellate around the generators, move them to the
/// new centroids, repeat. Quality (Badness) does not improve monotonically, so the best
/// tessellation seen is kept; iterations stop after opt.patience without improvement or when
/// the generators settle (RMS displacement < opt.tolerance pixels). With max_iter = 0 after
/// splitting, the points are assigned once. Updates cls, gx, gy, w and res.iterations.
void RelaxTessellation(const Problem& pb, std::vector<int32_t>& cls, std::vector<double>& gx, std::vector<double>& gy,
                       std::vector<double>& w, VoronoiResult& res) {
  const size_t npts = pb.size();
  std::vector<double> dens;
  if (pb.opt.method == VoronoiMethod::kCvt) {
    dens.resize(npts);
    // Centroids weighted by (S/N)^4 = dens^2 with dens = (S/N)^2: in 2-D a CVT's generator
    // density goes as weight^(1/2), so cell areas scale as (S/N)^-2 and every cell holds the
    // same sum of (S/N)^2, i.e. about the same S/N (Cappellari & Copin 2003, sect. 4).
    for (size_t i = 0; i < npts; ++i) {
      const double r2 = (pb.in.s[i] / pb.in.n[i]) * (pb.in.s[i] / pb.in.n[i]);
      dens[i] = r2 * r2;
    }
  }
  BinSums sums;
  std::vector<double> rmax;
  double best_bad = kInf;
  int best_it = 0;
  std::vector<int32_t> best_cls;
  std::vector<double> best_gx, best_gy, best_w;
  for (int it = 0; it < pb.opt.max_iter; ++it) {
    Tessellate(pb.in, gx, gy, w, pb.use_tree, cls);
    sums.Compute(pb.in, cls, gx.size(), dens.empty() ? nullptr : &dens);
    const std::vector<int32_t> kept = CompactLabels(cls, sums.n);
    const double bad = Badness(pb, sums, kept, cls, rmax);
    std::vector<double> nx, ny, nw;
    const double disp2 = MoveGenerators(pb, sums, kept, gx, gy, nx, ny, nw);
    if (bad >= best_bad && it - best_it >= pb.opt.patience) break;
    if (bad < best_bad) {
      best_bad = bad;
      best_it = it;
      best_cls = cls;
      best_gx.resize(kept.size());
      best_gy.resize(kept.size());
      best_w.resize(kept.size());
      for (size_t j = 0; j < kept.size(); ++j) {
        best_gx[j] = gx[kept[j]];
        best_gy[j] = gy[kept[j]];
        best_w[j] = w[kept[j]];
      }
      res.iterations = it;  // tessellation `it` used the generators after `it` updates
    }
    gx = std::move(nx);
    gy = std::move(ny);
    w = std::move(nw);
    if (std::sqrt(disp2 / static_cast<double>(gx.size())) < pb.opt.tolerance * pb.pix) break;
  }
  if (!best_cls.empty()) {
    cls = std::move(best_cls);
    gx = std::move(best_gx);
    gy = std::move(best_gy);
    w = std::move(best_w);
  } else if (gx.size() > static_cast<size_t>(res.accretion_bins)) {
    // max_iter = 0 after splitting: assign once.
    Tessellate(pb.in, gx, gy, w, pb.use_tree, cls);
    sums.Compute(pb.in, cls, gx.size(), nullptr);
    const std::vector<int32_t> kept = CompactLabels(cls, sums.n);
    std::vector<double> nx, ny;
    for (int32_t k : kept) {
      nx.push_back(gx[k]);
      ny.push_back(gy[k]);
    }
    gx = std::move(nx);
    gy = std::move(ny);
    w.assign(gx.size(), 1.0);
  }
}

/// Step 5: bins below min_sn are dissolved, their points going to the nearest surviving
/// generator, in up to 50 rounds (if every bin is below, the best one survives). Updates cls,
/// gx, gy, w; returns the number of bins dissolved.
int DissolvePoorBins(const Problem& pb, std::vector<int32_t>& cls, std::vector<double>& gx, std::vector<double>& gy,
                     std::vector<double>& w) {
  int dissolved = 0;
  BinSums sums;
  for (int round = 0; round < 50 && gx.size() > 1; ++round) {
    sums.Compute(pb.in, cls, gx.size(), nullptr);
    std::vector<uint8_t> dead(gx.size(), 0);
    size_t ndead = 0;
    for (size_t k = 0; k < gx.size(); ++k) {
      if (pb.Sn(sums.sig[k], sums.var[k], sums.n[k]) < pb.min_sn) {
        dead[k] = 1;
        ++ndead;
      }
    }
    if (ndead == 0) break;
    if (ndead == gx.size()) {  // keep the best one
      size_t best = 0;
      for (size_t k = 1; k < gx.size(); ++k)
        if (pb.Sn(sums.sig[k], sums.var[k], sums.n[k]) > pb.Sn(sums.sig[best], sums.var[best], sums.n[best]))
          best = k;
      dead[best] = 0;
      --ndead;
    }
    dissolved += static_cast<int>(ndead);
    std::vector<int32_t> remap(gx.size(), -1);
    std::vector<double> ax, ay, aw;
    for (size_t k = 0; k < gx.size(); ++k) {
      if (dead[k]) continue;
      remap[k] = static_cast<int32_t>(ax.size());
      ax.push_back(gx[k]);
      ay.push_back(gy[k]);
      aw.push_back(w[k]);
    }
    GeneratorIndex index(ax, ay, aw, pb.use_tree);
    for (size_t i = 0; i < pb.size(); ++i)
      cls[i] = dead[cls[i]] ? index.Nearest(pb.in.x[i], pb.in.y[i], -1) : remap[cls[i]];
    gx = std::move(ax);
    gy = std::move(ay);
    w = std::move(aw);
  }
  return dissolved;
}

/// Step 6: the result's per-bin figures (counts, sums, covariance-corrected noise, S/N,
/// signal-weighted centroids) from the final labels and generators.
void FinalFigures(const Problem& pb, std::vector<int32_t> cls, std::vector<double> gx, std::vector<double> gy,
                  VoronoiResult& res) {
  const size_t nb = res.single_bin ? 1 : gx.size();
  res.bin = std::move(cls);
  res.nspax.assign(nb, 0);
  res.signal.assign(nb, 0.0);
  res.noise.assign(nb, 0.0);
  res.snr.assign(nb, 0.0);
  res.xbar.assign(nb, 0.0);
  res.ybar.assign(nb, 0.0);
  std::vector<double> var(nb, 0.0), gxs(nb, 0.0), gys(nb, 0.0), ws(nb, 0.0);
  for (size_t i = 0; i < pb.size(); ++i) {
    const int32_t k = res.bin[i];
    ++res.nspax[k];
    res.signal[k] += pb.in.s[i];
    var[k] += pb.in.n[i] * pb.in.n[i];
    gxs[k] += pb.in.x[i];
    gys[k] += pb.in.y[i];
    const double wi = std::max(pb.in.s[i], 0.0);
    ws[k] += wi;
    res.xbar[k] += wi * pb.in.x[i];
    res.ybar[k] += wi * pb.in.y[i];
  }
  for (size_t k = 0; k < nb; ++k) {
    res.noise[k] = BinNoise(var[k], res.nspax[k], pb.alpha);
    res.snr[k] = res.signal[k] / res.noise[k];
    if (ws[k] > 0) {
      res.xbar[k] /= ws[k];
      res.ybar[k] /= ws[k];
    } else {
      res.xbar[k] = gxs[k] / res.nspax[k];
      res.ybar[k] = gys[k] / res.nspax[k];
    }
  }
  if (res.single_bin) {
    res.xnode = {gxs[0] / res.nspax[0]};
    res.ynode = {gys[0] / res.nspax[0]};
  } else {
    res.xnode = std::move(gx);
    res.ynode = std::move(gy);
  }
}

}  // namespace

VoronoiResult VoronoiBin(const std::vector<double>& x, const std::vector<double>& y,
                         const std::vector<double>& signal, const std::vector<double>& noise,
                         const VoronoiOptions& opt) {
  CheckInputs(x, y, signal, noise, opt);
  VoronoiResult res;
  const size_t npts = x.size();
  if (npts == 0) return res;

  const Inputs in{x, y, signal, noise};
  KdTree tree(x, y);
  const double pix = opt.pixel_size > 0 ? opt.pixel_size : PixelSize(x, y, tree, opt.spatial_index);
  res.pixel_size = pix;
  const Problem pb{in, opt, opt.target_snr, opt.covariance_alpha, opt.min_fraction * opt.target_snr, pix,
                   opt.spatial_index};

  std::vector<int32_t> cls(npts, -1);  // bin of each point
  std::vector<double> gx, gy;          // generators
  double tot_sig = 0, tot_var = 0;
  for (size_t i = 0; i < npts; ++i) {
    tot_sig += signal[i];
    tot_var += noise[i] * noise[i];
  }
  if (pb.Sn(tot_sig, tot_var, static_cast<int64_t>(npts)) >= pb.min_sn) {
    // 1. Accretion over neighbours within 1.2 pixels; 2. leftover points to the nearest good bin.
    const Neighbours nbs = FindNeighbours(pb, tree, 1.2 * pix);
    const Accretion acc = Accrete(pb, nbs, tot_sig, tot_var);
    res.accretion_bins = AssignToGoodBins(pb, acc, cls, gx, gy);
  }
  if (gx.empty()) {
    // Not enough S/N for even one bin: everything in one bin.
    res.single_bin = true;
    std::fill(cls.begin(), cls.end(), 0);
  } else {
    // 3. Split bins far above the target (they absorbed many leftover points).
    if (opt.split_bins && opt.max_iter > 0)
      res.split = static_cast<int>(SplitRichBins(in, cls, pb.target, pb.alpha, gx, gy));
    // 4. Lloyd iterations; 5. dissolve bins below min_fraction * target into their neighbours.
    std::vector<double> w(gx.size(), 1.0);
    RelaxTessellation(pb, cls, gx, gy, w, res);
    res.dissolved = DissolvePoorBins(pb, cls, gx, gy, w);
  }
  // 6. Per-bin figures.
  FinalFigures(pb, std::move(cls), std::move(gx), std::move(gy), res);
  return res;
}

VoronoiQuality EvaluateBinning(const std::vector<double>& x, const std::vector<double>& y,
                               const VoronoiResult& r, double target_snr) {
  VoronoiQuality q;
  const size_t nb = r.nbins();
  if (nb == 0) return q;
  double s1 = 0, s2 = 0;
  int64_t nmulti = 0;
  q.min_ratio = kInf;
  q.max_ratio = -kInf;
  for (size_t k = 0; k < nb; ++k) {
    const double v = r.snr[k] / target_snr;
    q.min_ratio = std::min(q.min_ratio, v);
    q.max_ratio = std::max(q.max_ratio, v);
    if (r.nspax[k] < 2) continue;
    ++nmulti;
    s1 += (v - 1.0);
    s2 += (v - 1.0) * (v - 1.0);
  }
  q.multi_bins = nmulti;
  if (nmulti > 1) {
    const double mean = s1 / nmulti;
    q.scatter = std::sqrt(std::max(0.0, (s2 - nmulti * mean * mean) / (nmulti - 1)));
  }
  std::vector<double> cx(nb, 0), cy(nb, 0), rmax(nb, 0);
  std::vector<int64_t> cnt(nb, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    cx[r.bin[i]] += x[i];
    cy[r.bin[i]] += y[i];
    ++cnt[r.bin[i]];
  }
  for (size_t k = 0; k < nb; ++k) {
    cx[k] /= cnt[k];
    cy[k] /= cnt[k];
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const int32_t k = r.bin[i];
    rmax[k] = std::max(rmax[k], std::hypot(x[i] - cx[k], y[i] - cy[k]));
  }
  const double pix = r.pixel_size > 0 ? r.pixel_size : 1.0;
  int64_t nround = 0;
  for (size_t k = 0; k < nb; ++k) {
    if (cnt[k] < 3) continue;
    const double reff = pix * std::sqrt(cnt[k] / M_PI);
    const double rd = rmax[k] / reff - 1.0;
    q.max_roundness = std::max(q.max_roundness, rd);
    q.mean_roundness += rd;
    ++nround;
  }
  if (nround > 0) q.mean_roundness /= nround;
  return q;
}

}  // namespace cubeflow::binning
