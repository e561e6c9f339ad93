// custom.continuum_norm: polynomial continuum normalisation of bin spectra, a batch per call.
#include "continuum_norm.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Dense>  // Eigen comes with cubeflow::core

#include <cubeflow/data.hpp>
#include <cubeflow/strings.hpp>

namespace custom {

using namespace cubeflow;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Spectra of one batch that are fitted together: same wavelength grid, same fitted pixels.
struct FitGroup {
  WavelengthAxis axis;
  std::vector<uint8_t> fit;  ///< 1 = pixel used in the fit
  std::vector<size_t> items;
};

bool SameGrid(const WavelengthAxis& a, const WavelengthAxis& b) {
  return a.n == b.n && a.crval == b.crval && a.cdelt == b.cdelt && a.crpix == b.crpix && a.log == b.log;
}

/// Legendre polynomials P_0..P_degree at every pixel centre (rows), x = -1 .. 1 over the axis.
Eigen::MatrixXd LegendreBasis(const WavelengthAxis& axis, int64_t degree) {
  const double first = axis.At(0), last = axis.At(axis.n - 1);
  Eigen::MatrixXd p(axis.n, degree + 1);
  for (int64_t i = 0; i < axis.n; ++i) {
    const double x = 2.0 * (axis.At(i) - first) / (last - first) - 1.0;
    p(i, 0) = 1.0;
    if (degree >= 1) p(i, 1) = x;
    for (int64_t k = 1; k < degree; ++k) {  // (k + 1) P_{k+1} = (2k + 1) x P_k - k P_{k-1}
      const double kd = static_cast<double>(k);
      p(i, k + 1) = ((2.0 * kd + 1.0) * x * p(i, k) - kd * p(i, k - 1)) / (kd + 1.0);
    }
  }
  return p;
}

/// A copy of `in` with no usable pixel, flagged FAILED: what a bin that cannot be normalised
/// becomes (throwing would fail every bin of the batch).
std::shared_ptr<Spectrum> Unusable(const Spectrum& in) {
  auto out = std::make_shared<Spectrum>(in);
  std::fill(out->flux.begin(), out->flux.end(), kNaN);
  std::fill(out->variance.begin(), out->variance.end(), kNaN);
  out->mask.assign(out->flux.size(), 1);
  out->quality |= kQualInferenceFailed;
  return out;
}

}  // namespace

NodeSpec ContinuumNormNode::Spec() {
  return NodeSpec("custom.continuum_norm", "Divide bin spectra by a polynomial continuum fitted by least squares")
      .Describe("For every bin spectrum: fits a polynomial of `degree` (Legendre basis over the "
                "spectrum's wavelength range) by unweighted least squares to the good pixels (mask "
                "0, finite flux) outside the `exclude` windows, and divides flux by it and variance "
                "by its square (the continuum is taken as exact). `exclude` windows are in the "
                "spectrum's own frame: leave out strong lines so that the fit follows the continuum. "
                "Unweighted, so that the spectra of a batch on one grid with the same fitted pixels "
                "share one QR factorisation. A bin with fewer fitted pixels than min_good_fraction "
                "of its pixels, or whose continuum is not positive on a good pixel, is passed on "
                "with every pixel masked, NaN flux and quality FAILED, and a warning; the other "
                "bins of its batch are unaffected. Output meta: the input meta plus continuum_degree; "
                "`norm` (the scalar flux normalisation) is unchanged.")
      .Input("spectra", Spectrum::kType, PortKind::kStream, "bin spectra (flux, variance, mask)")
      .Output("spectra", Spectrum::kType, PortKind::kStream, "continuum-normalised spectra (about 1 in the continuum)")
      .Param(&ContinuumNormOptions::degree, "degree", "polynomial degree of the continuum", InRange{0, 15})
      .Param(&ContinuumNormOptions::exclude, "exclude", "windows left out of the fit: [lo1, hi1, lo2, hi2, ...]",
             Unit{"Angstrom"}, AtLeast{0})
      .Param(&ContinuumNormOptions::min_good_fraction, "min_good_fraction",
             "fraction of the pixels that must be fitted, else the bin is flagged", InRange{0, 1})
      .Param(&ContinuumNormOptions::batch_size, "batch_size", "bins per call", InRange{1, 65536})
      .Batched("batch_size")  // Process gets up to batch_size items: loop over ctx.size()
      .Check<ContinuumNormOptions>([](const ContinuumNormOptions& o, CheckReport& r) {
        if (o.exclude.size() % 2 != 0) {
          r.Error("exclude", "needs pairs [lo, hi, ...]; got " + std::to_string(o.exclude.size()) + " values");
          return;
        }
        for (size_t k = 0; k < o.exclude.size(); k += 2)
          if (!(o.exclude[k] < o.exclude[k + 1]))
            r.Error("exclude", "window " + std::to_string(k / 2 + 1) + " [" + Num(o.exclude[k]) + ", " +
                                   Num(o.exclude[k + 1]) + "] must have lo < hi");
      });
}

void ContinuumNormNode::Process(ProcessContext& ctx) {
  const size_t count = ctx.size();
  std::vector<std::shared_ptr<const Spectrum>> in(count);
  std::vector<std::shared_ptr<const Data>> out(count);
  std::vector<FitGroup> groups;
  auto flag = [&](size_t item, const std::string& why) {
    ctx.Log(LogLevel::kWarn, "bin " + std::to_string(ctx.key(item)) + ": " + why + "; passed on masked, quality FAILED");
    out[item] = Unusable(*in[item]);
  };

  // 1. Which pixels each spectrum fits; spectra with the same grid and pixels form a group.
  for (size_t item = 0; item < count; ++item) {
    in[item] = ctx.Input<Spectrum>("spectra", item);
    const Spectrum& s = *in[item];
    const size_t n = s.flux.size();
    if (n < 2 || static_cast<int64_t>(n) != s.wave.n || (!s.variance.empty() && s.variance.size() != n) ||
        (!s.mask.empty() && s.mask.size() != n))
      throw Error("bin " + std::to_string(ctx.key(item)) + ": spectrum has " + std::to_string(n) + " flux, " +
                  std::to_string(s.variance.size()) + " variance and " + std::to_string(s.mask.size()) +
                  " mask pixels on an axis of " + std::to_string(s.wave.n));
    std::vector<uint8_t> fit(n, 0);
    size_t nfit = 0;
    for (size_t i = 0; i < n; ++i) {
      if ((!s.mask.empty() && s.mask[i]) || !std::isfinite(s.flux[i])) continue;
      const double lambda = s.wave.At(static_cast<int64_t>(i));
      bool excluded = false;
      for (size_t k = 0; k + 1 < options_.exclude.size(); k += 2)
        excluded = excluded || (lambda >= options_.exclude[k] && lambda <= options_.exclude[k + 1]);
      if (excluded) continue;
      fit[i] = 1;
      ++nfit;
    }
    const auto need = std::max<size_t>(static_cast<size_t>(options_.degree) + 1,
                                       static_cast<size_t>(std::ceil(options_.min_good_fraction * static_cast<double>(n))));
    if (nfit < need) {
      flag(item, "only " + std::to_string(nfit) + " of " + std::to_string(n) + " pixels to fit (need " + std::to_string(need) + ")");
      continue;
    }
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&](const FitGroup& fg) { return SameGrid(fg.axis, s.wave) && fg.fit == fit; });
    if (g == groups.end()) {
      groups.push_back({s.wave, std::move(fit), {}});
      g = groups.end() - 1;
    }
    g->items.push_back(item);
  }

  // 2. One QR factorisation per group, solved for all its spectra at once.
  for (const FitGroup& g : groups) {
    const Eigen::MatrixXd basis = LegendreBasis(g.axis, options_.degree);
    std::vector<Eigen::Index> rows;
    for (Eigen::Index i = 0; i < basis.rows(); ++i)
      if (g.fit[static_cast<size_t>(i)]) rows.push_back(i);
    const Eigen::MatrixXd design = basis(rows, Eigen::all);
    Eigen::MatrixXd rhs(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(g.items.size()));
    for (size_t j = 0; j < g.items.size(); ++j)
      for (size_t r = 0; r < rows.size(); ++r)
        rhs(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(j)) = in[g.items[j]]->flux[static_cast<size_t>(rows[r])];
    const Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(design);
    if (qr.rank() < design.cols()) {
      for (size_t item : g.items)
        flag(item, "the fitted pixels do not constrain a polynomial of degree " + std::to_string(options_.degree));
      continue;
    }
    const Eigen::MatrixXd continuum = basis * qr.solve(rhs);  // pixels x spectra

    // 3. Divide, per spectrum.
    for (size_t j = 0; j < g.items.size(); ++j) {
      const size_t item = g.items[j];
      const Spectrum& s = *in[item];
      auto o = std::make_shared<Spectrum>(s);
      if (o->mask.empty()) o->mask.assign(s.flux.size(), 0);
      std::string bad;
      for (size_t i = 0; i < s.flux.size() && bad.empty(); ++i) {
        const double c = continuum(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
        const bool good = o->mask[i] == 0 && std::isfinite(s.flux[i]);
        if (c > 0) {
          o->flux[i] = s.flux[i] / c;
          if (!o->variance.empty()) o->variance[i] = s.variance[i] / (c * c);
        } else if (good) {
          bad = "the fitted continuum is not positive at " + Num(s.wave.At(static_cast<int64_t>(i))) +
                " Angstrom (lower degree, or exclude fewer pixels)";
        } else {
          o->flux[i] = kNaN;
          if (!o->variance.empty()) o->variance[i] = kNaN;
          o->mask[i] = 1;
        }
      }
      if (!bad.empty()) {
        flag(item, bad);
        continue;
      }
      o->meta["continuum_degree"] = static_cast<double>(options_.degree);
      out[item] = o;
    }
  }

  // 4. Emit per item, keyed like the input item.
  for (size_t item = 0; item < count; ++item) ctx.Emit("spectra", out[item], item);
  ctx.Log(LogLevel::kDebug, std::to_string(count) + " spectra, " + std::to_string(groups.size()) + " least-squares fits");
}

}  // namespace custom
