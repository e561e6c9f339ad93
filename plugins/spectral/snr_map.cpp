// spectral.snr_map: per-spaxel mean flux and S/N in a wavelength window.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <utility>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/spec.hpp"

namespace cubeflow::spectral {

/// Result of ComputeSnrMaps: FLUX (mean flux per good pixel, cube units) and SNR maps.
struct SnrMaps {
  std::shared_ptr<Map> flux, snr;
  int64_t k0 = 0, k1 = -1;  ///< channel range used (inclusive)
};

/// Noise per pixel of a spectrum by the DER_SNR estimator (Stoehr et al. 2008):
/// 1.482602 / sqrt(6) * median(|2 f_i - f_{i-2} - f_{i+2}|). NaN if fewer than 5 pixels.
double DerSnrNoise(const std::vector<double>& f) {
  const size_t n = f.size();
  if (n < 5) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> d;
  d.reserve(n - 4);
  for (size_t i = 2; i + 2 < n; ++i) d.push_back(std::fabs(2.0 * f[i] - f[i - 2] - f[i + 2]));
  const size_t mid = d.size() / 2;
  std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(mid), d.end());
  double med = d[mid];
  if (d.size() % 2 == 0) {
    const double lo = *std::max_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(mid));
    med = 0.5 * (med + lo);
  }
  return 1.482602 / std::sqrt(6.0) * med;
}

/// Computes the maps. A pixel is good if its flux is finite, it is not masked and (variance
/// method) its variance is finite and > 0. Per spaxel: FLUX = mean of the good fluxes;
/// SNR = sum(f) / sqrt(sum(var)) (variance) or sum(f) / (N_derSNR * sqrt(n_good)) (der_snr).
/// Spaxels without good pixels get NaN. Throws cubeflow::Error if the window misses the cube.
SnrMaps ComputeSnrMaps(const Cube& cube, double wave_min, double wave_max, bool der_snr) {
  SnrMaps out;
  const int64_t nspax = cube.nx * cube.ny;
  int64_t k0 = -1, k1 = -1;
  for (int64_t k = 0; k < cube.nwave; ++k) {
    const double w = cube.wave.At(k);
    if (w < wave_min || w > wave_max) continue;
    if (k0 < 0) k0 = k;
    k1 = k;
  }
  if (k0 < 0) {
    std::ostringstream m;
    m << "S/N window [" << wave_min << ", " << wave_max << "] Angstrom does not overlap the cube ("
      << cube.wave.At(0) << " - " << cube.wave.At(cube.nwave - 1) << " Angstrom); change wave_min/wave_max";
    throw Error(m.str());
  }
  out.k0 = k0;
  out.k1 = k1;
  auto make = [&](const char* name, const std::string& unit) {
    auto m = std::make_shared<Map>();
    m->name = name;
    m->bunit = unit;
    m->kind = "value";
    m->nx = cube.nx;
    m->ny = cube.ny;
    m->nplanes = 1;
    m->wcs = cube.wcs;
    m->data.assign(static_cast<size_t>(nspax), std::numeric_limits<double>::quiet_NaN());
    std::ostringstream w;
    w << cube.wave.At(k0);
    m->header["WAVEMIN"] = w.str();
    w.str("");
    w << cube.wave.At(k1);
    m->header["WAVEMAX"] = w.str();
    m->header["SNRMETH"] = der_snr ? "der_snr" : "variance";
    return m;
  };
  out.flux = make("FLUX", cube.bunit);
  out.snr = make("SNR", "");
  const bool has_mask = !cube.mask.empty();
  const size_t plane = static_cast<size_t>(nspax);
  if (!der_snr) {
    if (cube.variance.empty()) throw Error("S/N method 'variance' needs a variance (STAT) in the cube");
    std::vector<double> sf(plane, 0.0), sv(plane, 0.0);
    std::vector<int64_t> n(plane, 0);
    for (int64_t k = k0; k <= k1; ++k) {
      const size_t off = static_cast<size_t>(k) * plane;
      for (size_t s = 0; s < plane; ++s) {
        const float f = cube.flux[off + s], v = cube.variance[off + s];
        if (!std::isfinite(f) || !std::isfinite(v) || !(v > 0)) continue;
        if (has_mask && cube.mask[off + s]) continue;
        sf[s] += f;
        sv[s] += v;
        ++n[s];
      }
    }
    for (size_t s = 0; s < plane; ++s) {
      if (n[s] == 0) continue;
      out.flux->data[s] = sf[s] / static_cast<double>(n[s]);
      out.snr->data[s] = sf[s] / std::sqrt(sv[s]);
    }
    return out;
  }
  tbb::parallel_for(tbb::blocked_range<size_t>(0, plane), [&](const tbb::blocked_range<size_t>& r) {
    std::vector<double> spec;
    for (size_t s = r.begin(); s < r.end(); ++s) {
      spec.clear();
      double sum = 0;
      for (int64_t k = k0; k <= k1; ++k) {
        const size_t i = static_cast<size_t>(k) * plane + s;
        const float f = cube.flux[i];
        if (!std::isfinite(f) || (has_mask && cube.mask[i])) continue;
        spec.push_back(f);
        sum += f;
      }
      if (spec.empty()) continue;
      out.flux->data[s] = sum / static_cast<double>(spec.size());
      const double noise = DerSnrNoise(spec);
      if (std::isfinite(noise) && noise > 0)
        out.snr->data[s] = sum / (noise * std::sqrt(static_cast<double>(spec.size())));
    }
  });
  return out;
}

namespace {

class SnrMapNode : public Node {
 public:
  static NodeSpec Spec() {
    return NodeSpec("spectral.snr_map", "Per-spaxel mean flux and S/N in a wavelength window")
        .Describe(
            "For every spaxel, over the good pixels in [wave_min, wave_max] (finite flux, not masked, "
            "and for 'variance' a finite positive variance): FLUX = mean flux; SNR = sum(f) / "
            "sqrt(sum(var)). Method 'der_snr' estimates the per-pixel noise N from the spectrum "
            "itself (Stoehr et al. 2008) and gives SNR = sum(f) / (N sqrt(n)); it is used "
            "automatically when the cube has no variance. Spaxels with no good pixel are NaN.")
        .Input("cube", Cube::kType, PortKind::kSingle, "the cube")
        .Output("flux", Map::kType, PortKind::kSingle, "FLUX: mean flux in the window (cube units)")
        .Output("snr", Map::kType, PortKind::kSingle, "SNR: signal-to-noise of the window sum")
        .Param(ParamSpec::Double("wave_min", 5300).Min(0).Unit("Angstrom").Doc("start of the window"))
        .Param(ParamSpec::Double("wave_max", 5500).Min(0).Unit("Angstrom").Doc("end of the window"))
        .Param(ParamSpec::String("method", "variance").Choices({"variance", "der_snr"})
                   .Doc("noise from the variance, or from the spectrum (DER_SNR)"));
  }
  explicit SnrMapNode(const Params& p)
      : wave_min_(p.GetDouble("wave_min")), wave_max_(p.GetDouble("wave_max")),
        der_snr_(p.GetString("method") == "der_snr") {
    if (wave_min_ >= wave_max_) throw Error("spectral.snr_map: wave_min must be below wave_max");
  }
  void Process(ProcessContext& ctx) override {
    auto cube = ctx.Input<Cube>("cube");
    bool der = der_snr_;
    if (!der && cube->variance.empty()) {
      ctx.Log(LogLevel::kWarn, "cube " + cube->source + " has no variance: using the DER_SNR estimator");
      der = true;
    }
    SnrMaps m = ComputeSnrMaps(*cube, wave_min_, wave_max_, der);
    ctx.Emit("flux", std::move(m.flux));
    ctx.Emit("snr", std::move(m.snr));
  }

 private:
  double wave_min_, wave_max_;
  bool der_snr_;
};

}  // namespace

/// Node spec of spectral.snr_map (used by RegisterSnrMap and by tests).
NodeSpec SnrMapSpec() {
  NodeSpec s = SnrMapNode::Spec();
  s.Factory([](const Params& p) { return std::unique_ptr<Node>(new SnrMapNode(p)); });
  return s;
}

void RegisterSnrMap(Registry& r) { r.Add(SnrMapSpec()); }

}  // namespace cubeflow::spectral
