// spectral.snr_map: per-spaxel mean flux and S/N in a wavelength window.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/spectral/snr.hpp"
#include "cubeflow/strings.hpp"
#include "spectral_nodes.hpp"

namespace cubeflow::spectral {

SnrMaps ComputeSnrMaps(const Cube& cube, double wave_min, double wave_max, bool der_snr) {
  SnrOptions o;
  o.wave_min = wave_min;
  o.wave_max = wave_max;
  o.definition = SnrDefinition::kWindowSum;
  o.noise = der_snr ? NoiseSource::kDerSnr : NoiseSource::kVariance;
  Result<SpaxelSnr> r = ComputeSpaxelSnr(cube, o);
  if (!r.ok()) throw Error(r.status().message());
  SnrMaps out;
  out.k0 = r->window.k0;
  out.k1 = r->window.k1;
  auto make = [&](const char* name, const std::string& unit, std::vector<double> data) {
    auto m = std::make_shared<Map>();
    m->name = name;
    m->bunit = unit;
    m->kind = "value";
    m->nx = cube.nx;
    m->ny = cube.ny;
    m->nplanes = 1;
    m->wcs = cube.wcs;
    m->data = std::move(data);
    m->header["WAVEMIN"] = Num(cube.wave.At(out.k0));
    m->header["WAVEMAX"] = Num(cube.wave.At(out.k1));
    m->header["SNRMETH"] = der_snr ? "der_snr" : "variance";
    return m;
  };
  out.flux = make("FLUX", cube.bunit, std::move(r->mean));
  out.snr = make("SNR", "", std::move(r->snr));
  return out;
}

namespace {

/// Parameters of spectral.snr_map.
struct SnrMapOptions {
  double wave_min = 5300;
  double wave_max = 5500;
  std::string method = "variance";
};

/// Says why spaxels got no S/N when some did not: NaN flux, a non-positive or NaN variance, or
/// a mask over the whole window (otherwise an all-NaN map is written without a word).
void WarnAboutMissingSnr(ProcessContext& ctx, const Cube& cube, const SnrMaps& m, bool der_snr) {
  const size_t plane = static_cast<size_t>(cube.nx * cube.ny);
  size_t with_flux = 0, without_snr = 0;
  for (size_t s = 0; s < plane; ++s) {
    if (std::isfinite(m.flux->data[s])) ++with_flux;
    if (!std::isfinite(m.snr->data[s])) ++without_snr;
  }
  if (without_snr == 0) return;
  int64_t n_pix = 0, n_nan_flux = 0, n_bad_var = 0, n_neg_var = 0, n_masked = 0;
  // Read again in blocks of rows (a cube in its file is not in memory; one block at a time).
  const Status counted = ForEachRowBlock(cube, m.k0, m.k1 + 1, BlockBytes(cube), [&](const CubeBlock& b) {
    const bool has_mask = !b.mask.empty();
    for (size_t i = 0; i < b.flux.size(); ++i) {
      ++n_pix;
      if (!std::isfinite(b.flux[i])) { ++n_nan_flux; continue; }
      if (has_mask && b.mask[i]) { ++n_masked; continue; }
      if (!der_snr && !(b.variance[i] > 0)) {
        ++n_bad_var;
        if (b.variance[i] <= 0) ++n_neg_var;
      }
    }
    return Status::OK();
  });
  if (!counted.ok()) throw Error(counted.message());
  std::string why;
  auto pct = [&](int64_t n) { return Num(100.0 * static_cast<double>(n) / static_cast<double>(std::max<int64_t>(n_pix, 1)), 3) + " %"; };
  if (n_nan_flux) why += "; NaN flux in " + pct(n_nan_flux) + " of the window's pixels";
  if (n_masked) why += "; masked: " + pct(n_masked);
  if (n_bad_var)
    why += "; variance not positive (" + std::to_string(n_neg_var) + " negative or zero, " +
           std::to_string(n_bad_var - n_neg_var) + " NaN) in " + pct(n_bad_var) +
           ": check the STAT extension (variances, not sigmas, and positive), or use method: der_snr";
  const std::string what = std::to_string(without_snr) + " of " + std::to_string(plane) + " spaxels have no S/N in " +
                           Num(cube.wave.At(m.k0)) + " - " + Num(cube.wave.At(m.k1)) + " Angstrom" +
                           (with_flux == 0 ? " (none has a good pixel)" : "") + why;
  // Spaxels outside the field (NaN everywhere) are normal at a mosaic's edge: warn when it is
  // more than that, i.e. spaxels with flux but no S/N, or nothing at all.
  if (without_snr > plane - with_flux || with_flux == 0)
    ctx.Log(LogLevel::kWarn, what);
  else
    ctx.Log(LogLevel::kInfo, what);
}

class SnrMapNode : public Node {
 public:
  using Options = SnrMapOptions;

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
        .Param(&Options::wave_min, "wave_min", "start of the window", Unit{"Angstrom"}, AtLeast{0})
        .Param(&Options::wave_max, "wave_max", "end of the window", Unit{"Angstrom"}, AtLeast{0})
        .Param(&Options::method, "method", "noise from the variance, or from the spectrum (DER_SNR)",
               OneOf{{"variance", "der_snr"}})
        .Check<Options>([](const Options& o, CheckReport& r) {
          if (o.wave_min >= o.wave_max)
            r.Error("wave_max", "must be above wave_min (" + Num(o.wave_min) + " Angstrom), got " + Num(o.wave_max) +
                                    ": the window [wave_min, wave_max] is empty; set wave_min < wave_max");
        });
  }

  explicit SnrMapNode(const Options& o) : options_(o), der_snr_(o.method == "der_snr") {}

  void Process(ProcessContext& ctx) override {
    auto cube = ctx.Input<Cube>("cube");
    bool der = der_snr_;
    if (!der && !CubeHasVariance(*cube)) {
      ctx.Log(LogLevel::kWarn, "cube " + cube->source + " has no variance: using the DER_SNR estimator");
      der = true;
    }
    SnrMaps m = ComputeSnrMaps(*cube, options_.wave_min, options_.wave_max, der);
    WarnAboutMissingSnr(ctx, *cube, m, der);
    ctx.Emit("flux", std::move(m.flux));
    ctx.Emit("snr", std::move(m.snr));
  }

 private:
  Options options_;
  bool der_snr_;
};

}  // namespace

void RegisterSnrMap(Registry& r) { r.Add<SnrMapNode>(); }

}  // namespace cubeflow::spectral
