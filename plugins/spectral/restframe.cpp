// spectral.restframe: shift bin spectra to the rest frame, rebin onto the model grid, broaden
// to a common total dispersion and normalise.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/spectral/lsf.hpp"
#include "cubeflow/spectral/spectral_ops.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/status.hpp"
#include "cubeflow/strings.hpp"
#include "spectral_nodes.hpp"

namespace cubeflow::spectral {

namespace {

constexpr double kC = spectral::kSpeedOfLightKms;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Line-of-sight kinematics of one bin (km/s).
struct Kinematics {
  double velocity = 0;    ///< relative to the systemic velocity
  double dispersion = 0;  ///< intrinsic stellar sigma (incl. the bin's velocity spread)
  bool fallback = false;  ///< maps had no valid value for the bin: parameters were used
};

/// Replaces the entries where `bad` is set by linear interpolation between the nearest good
/// neighbours (constant beyond the ends). All-bad input is set to 0.
void FillBad(std::vector<double>& v, const std::vector<uint8_t>& bad) {
  const size_t n = v.size();
  size_t prev = n;  // index of the previous good value (n = none)
  for (size_t i = 0; i < n;) {
    if (!bad[i]) { prev = i++; continue; }
    size_t next = i;
    while (next < n && bad[next]) ++next;
    for (size_t k = i; k < next; ++k) {
      if (prev == n && next == n) v[k] = 0.0;
      else if (prev == n) v[k] = v[next];
      else if (next == n) v[k] = v[prev];
      else {
        const double t = static_cast<double>(k - prev) / static_cast<double>(next - prev);
        v[k] = v[prev] + t * (v[next] - v[prev]);
      }
    }
    i = next;
  }
}

/// Parameters of spectral.restframe.
struct RestframeOptions {
  double z_sys = 0.0;
  double velocity = 0.0;
  double dispersion = 0.0;
  bool velocity_spread = true;
  double wave_start = 4800.0;
  double wave_step = 1.25;
  int64_t wave_n = 1761;
  double sigma_target = 150.0;
  std::string lsf = "linear";
  double lsf_fwhm_blue = 2.9;
  double lsf_fwhm_red = 2.4;
  double lsf_wave_blue = 4800.0;
  double lsf_wave_red = 6500.0;
  double norm_min = 5300.0;
  double norm_max = 5500.0;
};

class RestframeNode : public Node {
 public:
  using Options = RestframeOptions;

  static NodeSpec Spec() {
    return NodeSpec("spectral.restframe",
                    "Rest-frame, rebin, broaden to a common dispersion and normalise bin spectra")
        .Describe(
            "For every bin spectrum (observed frame):\n"
            "1. Velocity: v = v_los of the bin, relative to the systemic redshift z_sys. With "
            "`velocity`/`dispersion` maps connected, the bin value is the light-weighted mean over "
            "the bin's spaxels (spaxel list from `binning`; weights from the optional `weights` map, "
            "e.g. the FLUX map of spectral.snr_map, else uniform; NaN spaxels skipped); without "
            "`binning`, the spaxel nearest the spectrum's meta x, y is used. Unconnected maps fall "
            "back to the `velocity`/`dispersion` parameters. The bin dispersion is the light-weighted "
            "quadrature mean sqrt(<sigma^2> + <(v - <v>)^2>) (the velocity spread broadens a co-added "
            "spectrum; see velocity_spread).\n"
            "2. Rest wavelength = observed / (1 + z_sys) / (1 + v/c): the product of the systemic and "
            "peculiar Doppler factors, the peculiar one to first order in v/c (the neglected "
            "relativistic term, ~(v/c)^2/2 ~ 1e-6 for 400 km/s, is below 1e-3 pixel).\n"
            "3. Flux-conserving rebinning onto the linear rest-frame grid wave_start + i * wave_step "
            "(i < wave_n). The variance is propagated from the independent input pixels through the "
            "rebinning and the broadening (step 4) together, so the covariance the rebinning gives "
            "neighbouring pixels is counted; the output's own pixel covariance is not stored. Output "
            "pixels that overlap a bad input pixel (mask set, non-finite flux or variance) or are "
            "not fully covered get mask = 1; their flux and variance are filled by linear "
            "interpolation from the neighbours so that the broadening stays unbiased; use the mask.\n"
            "4. Gaussian broadening to the total dispersion sigma_target (instrument included, as in "
            "the paper sec. 2.3): sigma_broad^2 = sigma_target^2 - sigma_gal^2 - sigma_instr^2, with "
            "the MUSE LSF FWHM (lsf: linear, the default, from lsf_fwhm_blue at lsf_wave_blue to "
            "lsf_fwhm_red at lsf_wave_red, constant outside; lsf: bacon2017, the Bacon et al. 2017 "
            "polynomial that `cubeflow simulate galaxy` renders with) at observed-frame wavelengths, "
            "converted to km/s at each pixel. Where sigma_broad^2 < 0 the spectrum is already broader than the target: those "
            "pixels are left unbroadened and the spectrum gets quality bit kQualBroaderThanTarget "
            "(meta sigma_excess = max over the covered grid of sqrt(sigma_gal^2 + sigma_instr^2) - "
            "sigma_target, km/s).\n"
            "5. Normalisation by the mean good-pixel flux in [norm_min, norm_max] (rest frame): flux "
            "/= F, variance /= F^2, norm *= F. A bin with no good pixel there or a mean <= 0 fails.\n"
            "With `kinematics` connected (records of kinematics.fit, one per bin), the bin's v_stars and "
            "sigma_stars are used directly (the fitted sigma of the co-added spectrum already includes "
            "the bin's velocity spread); the maps must then be unconnected.\n"
            "Output meta: the input meta plus velocity, dispersion (km/s, used values), z_sys, norm "
            "(the cumulative Spectrum.norm) and kinematics_fallback (1 if maps had no valid value).")
        .Input("spectra", Spectrum::kType, PortKind::kStream,
               "observed-frame bin spectra (flux, variance, mask on `wave`; meta x, y used without binning)")
        .OptionalInput("binning", Binning::kType, PortKind::kSingle,
                       "spaxel lists of the bins (bin id = stream key); without it the spaxel "
                       "nearest meta x, y is used")
        .OptionalInput("velocity", Map::kType, PortKind::kSingle,
                       "line-of-sight velocity map, km/s relative to the systemic velocity (plane 0)")
        .OptionalInput("dispersion", Map::kType, PortKind::kSingle,
                       "intrinsic stellar velocity dispersion map, km/s (plane 0)")
        .OptionalInput("weights", Map::kType, PortKind::kSingle,
                       "light weights per spaxel for averaging the maps (e.g. FLUX of "
                       "spectral.snr_map); uniform if unconnected; negative/NaN count as 0")
        // kinematics.fit (issue #16): per-bin kinematics streamed beside the spectra, instead of maps.
        .OptionalInput("kinematics", Record::kType, PortKind::kStream,
                       "per-bin kinematics records with v_stars, sigma_stars (km/s, from kinematics.fit), "
                       "joined with the spectra by bin id; replaces the velocity/dispersion maps")
        .Output("spectra", Spectrum::kType, PortKind::kStream,
                "rest-frame spectra on the model grid, broadened and normalised (rest_frame = true)")
        .Param(&Options::z_sys, "z_sys", "systemic redshift (cz / c); rest = observed / (1 + z_sys) / (1 + v/c)",
               InRange{-0.01, 10.0})
        .Param(&Options::velocity, "velocity",
               "line-of-sight velocity relative to systemic, used when no velocity map is connected",
               Unit{"km/s"}, InRange{-5000, 5000})
        .Param(&Options::dispersion, "dispersion",
               "intrinsic stellar dispersion, used when no dispersion map is connected", Unit{"km/s"},
               InRange{0, 2000})
        .Param(&Options::velocity_spread, "velocity_spread",
               "add the light-weighted velocity spread of the bin's spaxels in quadrature "
               "to its dispersion (maps only)")
        .Param(&Options::wave_start, "wave_start", "first pixel centre of the rest-frame output grid",
               Unit{"Angstrom"}, AtLeast{1.0})
        .Param(&Options::wave_step, "wave_step", "pixel step of the rest-frame output grid", Unit{"Angstrom"},
               AtLeast{1e-3})
        .Param(&Options::wave_n, "wave_n", "number of output pixels (default grid 4800-7000 Angstrom)",
               Unit{"pixels"}, AtLeast{2})
        .Param(&Options::sigma_target, "sigma_target",
               "common total dispersion (intrinsic + instrumental + added) of the output", Unit{"km/s"},
               AtLeast{0})
        .Param(&Options::lsf, "lsf",
               "instrumental FWHM model: linear = lsf_fwhm_blue..lsf_fwhm_red (the paper's MUSE "
               "values); bacon2017 = Bacon et al. (2017) eq. 8, 2.98 A at 4800 A to 2.48 A at 7000 A",
               OneOf{{"linear", "bacon2017"}})
        .Param(&Options::lsf_fwhm_blue, "lsf_fwhm_blue",
               "instrumental FWHM at lsf_wave_blue (observed frame; MUSE: 2.9)", Unit{"Angstrom"}, AtLeast{0})
        .Param(&Options::lsf_fwhm_red, "lsf_fwhm_red",
               "instrumental FWHM at lsf_wave_red and beyond (observed frame; MUSE: 2.4)", Unit{"Angstrom"},
               AtLeast{0})
        .Param(&Options::lsf_wave_blue, "lsf_wave_blue",
               "observed wavelength of lsf_fwhm_blue (FWHM constant below)", Unit{"Angstrom"}, AtLeast{1.0})
        .Param(&Options::lsf_wave_red, "lsf_wave_red", "observed wavelength of lsf_fwhm_red (FWHM constant above)",
               Unit{"Angstrom"}, AtLeast{1.0})
        .Param(&Options::norm_min, "norm_min", "start of the rest-frame normalisation window", Unit{"Angstrom"},
               AtLeast{0})
        .Param(&Options::norm_max, "norm_max", "end of the rest-frame normalisation window", Unit{"Angstrom"},
               AtLeast{0})
        .Check<Options>(CheckOptions)
        .Concurrent(Concurrency::kParallel);
  }

  /// Cross-parameter checks (the validator reports them at the parameter's line).
  static void CheckOptions(const Options& o, CheckReport& r) {
    if (!(o.lsf_wave_red > o.lsf_wave_blue))
      r.Error("lsf_wave_red", "must be above lsf_wave_blue (" + Num(o.lsf_wave_blue) + " Angstrom), got " +
                                  Num(o.lsf_wave_red) +
                                  ": the instrumental FWHM is interpolated from lsf_wave_blue to lsf_wave_red; "
                                  "set lsf_wave_blue < lsf_wave_red");
    if (!(o.norm_max > o.norm_min)) {
      r.Error("norm_max", "must be above norm_min (" + Num(o.norm_min) + " Angstrom), got " + Num(o.norm_max) +
                              ": the normalisation window [norm_min, norm_max] is empty; set norm_min < norm_max");
      return;
    }
    const WavelengthAxis grid = OutputGrid(o);
    const double first = grid.At(0), last = grid.At(grid.n - 1);
    const std::string grid_text = "the output grid (" + Num(first) + "-" + Num(last) + " Angstrom)";
    const std::string fix =
        "; the normalisation window [norm_min, norm_max] must overlap it: change norm_min/norm_max or "
        "wave_start/wave_step/wave_n";
    if (o.norm_min > last)
      r.Error("norm_min", Num(o.norm_min) + " Angstrom lies beyond the end of " + grid_text + fix);
    else if (o.norm_max < first)
      r.Error("norm_max", Num(o.norm_max) + " Angstrom lies before the start of " + grid_text + fix);
  }
  /// The rest-frame output grid wave_start + i * wave_step, i < wave_n.
  static WavelengthAxis OutputGrid(const Options& o) {
    return WavelengthAxis::Linear(o.wave_start, o.wave_step, o.wave_n);
  }

  explicit RestframeNode(const Options& o)
      : z_sys_(o.z_sys),
        velocity_(o.velocity),
        dispersion_(o.dispersion),
        velocity_spread_(o.velocity_spread),
        sigma_target_(o.sigma_target),
        lsf_bacon_(o.lsf == "bacon2017"),
        lsf_fwhm_blue_(o.lsf_fwhm_blue),
        lsf_fwhm_red_(o.lsf_fwhm_red),
        lsf_wave_blue_(o.lsf_wave_blue),
        lsf_wave_red_(o.lsf_wave_red),
        norm_min_(o.norm_min),
        norm_max_(o.norm_max),
        axis_(OutputGrid(o)),
        centres_(spectral::AxisCentres(axis_)),
        edges_(spectral::AxisEdges(axis_)) {
    // CheckOptions has already refused a linear model with lsf_wave_red <= lsf_wave_blue.
    lsf_ = lsf_bacon_ ? spectral::Lsf::Bacon2017()
                      : spectral::Lsf::Linear(lsf_wave_blue_, lsf_fwhm_blue_, lsf_wave_red_, lsf_fwhm_red_).ValueOrThrow();
  }

  /// Instrumental FWHM (Angstrom) at an observed wavelength.
  double LsfFwhm(double lambda_obs) const { return lsf_.Fwhm(lambda_obs); }

  void Process(ProcessContext& ctx) override {
    auto binning = ctx.OptionalInput<Binning>("binning");
    auto vmap = ctx.OptionalInput<Map>("velocity");
    auto smap = ctx.OptionalInput<Map>("dispersion");
    auto wmap = ctx.OptionalInput<Map>("weights");
    const bool streamed = ctx.Connected("kinematics");
    if (streamed && (vmap || smap))
      throw Error("connect either the kinematics records (kinematics.fit) or the velocity/dispersion maps, not both");
    for (size_t item = 0; item < ctx.size(); ++item) {
      auto in = ctx.Input<Spectrum>("spectra", item);
      const int64_t key = ctx.key(item) >= 0 ? ctx.key(item) : in->id;
      Kinematics kin = streamed ? RecordKinematics(key, *ctx.Input<Record>("kinematics", item))
                                : BinKinematics(key, *in, binning.get(), vmap.get(), smap.get(), wmap.get());
      if (kin.fallback)
        ctx.Log(LogLevel::kWarn, "bin " + std::to_string(key) +
                                     ": kinematics maps have no valid value; using the "
                                     "velocity/dispersion parameters");
      ctx.Emit("spectra", Transform(key, *in, kin), item);
    }
  }

  /// The whole per-bin transformation (exposed for clarity; pure and thread-safe).
  std::shared_ptr<Spectrum> Transform(int64_t key, const Spectrum& in, const Kinematics& kin) const {
    const std::string who = "bin " + std::to_string(key);
    const size_t n_in = in.flux.size();
    if (n_in < 2 || static_cast<int64_t>(n_in) != in.wave.n)
      throw Error(who + ": spectrum has " + std::to_string(n_in) + " pixels but its axis " +
                  std::to_string(in.wave.n) + "; the upstream node must give >= 2 pixels, one per axis pixel");
    if (in.rest_frame)
      throw Error(who + ": spectrum is already in the rest frame; connect observed-frame spectra (e.g. "
                        "binning.voronoi's)");
    const bool has_var = !in.variance.empty();
    if (has_var && in.variance.size() != n_in)
      throw Error(who + ": variance size differs from flux; the upstream node must give one per pixel");
    if (!in.mask.empty() && in.mask.size() != n_in)
      throw Error(who + ": mask size differs from flux; the upstream node must give one per pixel");

    // 1. Rest-frame pixel edges (the Doppler factor is a pure scaling of the wavelengths).
    const double doppler = (1.0 + z_sys_) * (1.0 + kin.velocity / kC);
    if (!(doppler > 0)) throw Error(who + ": non-positive Doppler factor (check z_sys, velocity)");
    std::vector<double> in_edges = spectral::AxisEdges(in.wave);
    for (double& e : in_edges) e /= doppler;

    // 2. Bad input pixels, filled so that they do not poison their neighbours.
    std::vector<uint8_t> bad(n_in, 0);
    std::vector<double> flux(in.flux), var;
    if (has_var) var = in.variance;
    std::vector<double> badf(n_in, 0.0);
    for (size_t i = 0; i < n_in; ++i) {
      const bool b = (!in.mask.empty() && in.mask[i]) || !std::isfinite(flux[i]) ||
                     (has_var && !(std::isfinite(var[i]) && var[i] >= 0));
      bad[i] = b;
      badf[i] = b ? 1.0 : 0.0;
    }
    FillBad(flux, bad);
    if (has_var) FillBad(var, bad);

    // 3. Rebin flux, variance and the bad-pixel indicator (uncovered -> NaN / 1).
    const size_t n = centres_.size();
    auto out = std::make_shared<Spectrum>();
    out->flux.assign(n, 0.0);
    if (has_var) out->variance.assign(n, 0.0);
    std::vector<double> badout(n, 0.0);
    const spectral::SparseRows rebin = spectral::ResampleWeights(in_edges, edges_);  // also used in step 4
    rebin.Apply(flux, out->flux, kNaN);
    if (has_var) rebin.Apply(var, out->variance, kNaN, /*squared=*/true);
    rebin.Apply(badf, badout, 1.0);
    std::vector<uint8_t> outbad(n, 0);
    bool any_good = false;
    for (size_t j = 0; j < n; ++j) {
      outbad[j] = (badout[j] > 0 || !std::isfinite(out->flux[j]) ||
                   (has_var && !std::isfinite(out->variance[j])));
      any_good = any_good || !outbad[j];
    }
    if (!any_good)
      throw Error(who + ": no good pixel on the rest-frame grid (spectrum does not cover it, or "
                        "all pixels are masked)");
    // Uncovered pixels are NaN; fill them (and keep the interpolated bad ones) for the convolution.
    std::vector<uint8_t> uncovered(n, 0);
    for (size_t j = 0; j < n; ++j)
      uncovered[j] = !std::isfinite(out->flux[j]) || (has_var && !std::isfinite(out->variance[j]));
    FillBad(out->flux, uncovered);
    if (has_var) FillBad(out->variance, uncovered);

    // 4. Broadening to the common total dispersion.
    const double st2 = sigma_target_ * sigma_target_;
    const double sg2 = kin.dispersion * kin.dispersion;
    std::vector<double> sigma_a(n, 0.0);  // broadening sigma per output pixel, Angstrom (rest)
    double excess = -std::numeric_limits<double>::infinity();
    bool broader = false;
    for (size_t j = 0; j < n; ++j) {
      const double lr = centres_[j];
      const double lo = lr * doppler;
      const double si = LsfFwhm(lo) / spectral::kFwhmToSigma / lo * kC;  // km/s
      const double have2 = sg2 + si * si;
      const double d2 = st2 - have2;
      if (!uncovered[j]) {
        excess = std::max(excess, std::sqrt(have2) - sigma_target_);
        if (d2 < 0) broader = true;
      }
      sigma_a[j] = d2 > 0 ? lr * std::sqrt(d2) / kC : 0.0;
    }
    if (broader) out->quality |= kQualBroaderThanTarget;
    {
      auto g = spectral::GaussianBroadener::FromSigma(
          centres_, [&](double l) {
            const double pos = axis_.PixelOf(l);
            const auto j = static_cast<size_t>(std::clamp<double>(std::lround(pos), 0.0,
                                                                  static_cast<double>(n - 1)));
            return sigma_a[j];
          });
      std::vector<double> tmp(n);
      g.Apply(out->flux, tmp);
      out->flux.swap(tmp);
      if (has_var) {
        // From the independent input pixels through rebinning and broadening together: the
        // rebinned pixels share input pixels, so their marginal variances alone would
        // underestimate the broadened noise (by ~1.5x in variance at 1.25 A on 1.25 A).
        g.ApplyVarianceAfter(rebin, var, out->variance, tmp);
        out->variance.swap(tmp);
      }
    }

    // 5. Normalisation in the rest-frame window.
    double sum = 0;
    int64_t cnt = 0;
    for (size_t j = 0; j < n; ++j) {
      if (outbad[j] || centres_[j] < norm_min_ || centres_[j] > norm_max_) continue;
      sum += out->flux[j];
      ++cnt;
    }
    if (cnt == 0) {
      std::ostringstream m;
      m << who << ": no good pixel in the normalisation window [" << norm_min_ << ", " << norm_max_
        << "] Angstrom (rest frame); widen or move norm_min/norm_max";
      throw Error(m.str());
    }
    const double f = sum / static_cast<double>(cnt);
    if (!(f > 0) || !std::isfinite(f)) {
      std::ostringstream m;
      m << who << ": mean flux " << f << " in the normalisation window [" << norm_min_ << ", "
        << norm_max_ << "] Angstrom is not positive; cannot normalise";
      throw Error(m.str());
    }
    for (double& v : out->flux) v /= f;
    for (double& v : out->variance) v /= f * f;

    out->id = key;
    out->wave = axis_;
    out->wave.air = in.wave.air;
    out->mask = std::move(outbad);
    out->rest_frame = true;
    out->norm = in.norm * f;
    out->quality |= in.quality;
    out->meta = in.meta;
    out->meta["velocity"] = kin.velocity;
    out->meta["dispersion"] = kin.dispersion;
    out->meta["z_sys"] = z_sys_;
    out->meta["norm"] = out->norm;
    out->meta["kinematics_fallback"] = kin.fallback ? 1.0 : 0.0;
    if (broader) out->meta["sigma_excess"] = excess;
    return out;
  }

  /// Velocity and dispersion of a bin from its kinematics.fit record.
  static Kinematics RecordKinematics(int64_t key, const Record& r) {
    auto get = [&](const char* name) {
      auto it = r.fields.find(name);
      if (it == r.fields.end() || it->second.values.empty())
        throw Error("bin " + std::to_string(key) + ": the kinematics record has no field '" + name +
                    "'; connect kinematics.fit's kinematics output");
      const double v = it->second.values[0];
      if (!std::isfinite(v))
        throw Error("bin " + std::to_string(key) + ": the kinematics record's " + name + " is not finite");
      return v;
    };
    Kinematics k;
    k.velocity = get("v_stars");
    k.dispersion = std::max(get("sigma_stars"), 0.0);
    return k;
  }

  /// Velocity and dispersion of a bin from the maps, or the parameters.
  Kinematics BinKinematics(int64_t key, const Spectrum& s, const Binning* binning, const Map* vmap,
                           const Map* smap, const Map* wmap) const {
    Kinematics k;
    k.velocity = velocity_;
    k.dispersion = dispersion_;
    if (!vmap && !smap) return k;
    const std::string who = "bin " + std::to_string(key);
    const Map* ref = vmap ? vmap : smap;
    const int64_t nx = ref->nx, ny = ref->ny;
    auto check = [&](const Map* m, const char* name) {
      if (m && (m->nx != nx || m->ny != ny || m->data.size() < static_cast<size_t>(nx * ny)))
        throw Error(std::string("map '") + name + "' is " +
                    std::to_string(m->nx) + "x" + std::to_string(m->ny) + ", expected " +
                    std::to_string(nx) + "x" + std::to_string(ny) +
                    "; connect maps on the same spatial grid as the velocity map");
    };
    check(vmap, "velocity");
    check(smap, "dispersion");
    check(wmap, "weights");
    std::vector<int32_t> spax;
    if (binning) {
      if (binning->nx != nx || binning->ny != ny)
        throw Error("binning is " + std::to_string(binning->nx) + "x" + std::to_string(binning->ny) +
                    " but the kinematics maps are " + std::to_string(nx) + "x" + std::to_string(ny) +
                    "; the maps must be on the cube's spatial grid (check with io.read_map's grid input)");
      if (key < 0 || key >= static_cast<int64_t>(binning->bins.size()))
        throw Error(who + ": not in the binning (" + std::to_string(binning->bins.size()) +
                    " bins); connect the binning that produced the spectra");
      spax = binning->bins[static_cast<size_t>(key)].spaxels;
    } else {
      auto ix = s.meta.find("x"), iy = s.meta.find("y");
      if (ix == s.meta.end() || iy == s.meta.end())
        throw Error(who + ": spectrum has no meta x, y and no binning is connected; cannot look "
                          "up the kinematics maps: connect `binning`");
      const auto x = static_cast<int64_t>(std::lround(ix->second));
      const auto y = static_cast<int64_t>(std::lround(iy->second));
      if (x < 0 || y < 0 || x >= nx || y >= ny)
        throw Error(who + ": position (" + std::to_string(x) + ", " + std::to_string(y) +
                    ") is outside the kinematics maps; connect maps on the cube's spatial grid");
      spax.push_back(static_cast<int32_t>(y * nx + x));
    }
    // Light-weighted moments over spaxels where every connected map is finite.
    double sw = 0, sv = 0, sv2 = 0, ss2 = 0;
    std::vector<double> wts;
    for (int32_t idx : spax) {
      if (idx < 0 || idx >= nx * ny) throw Error(who + ": spaxel index out of the maps");
      const double v = vmap ? vmap->data[static_cast<size_t>(idx)] : 0.0;
      const double sg = smap ? smap->data[static_cast<size_t>(idx)] : 0.0;
      if (!std::isfinite(v) || !std::isfinite(sg)) continue;
      double w = 1.0;
      if (wmap) {
        w = wmap->data[static_cast<size_t>(idx)];
        if (!std::isfinite(w) || w < 0) w = 0;
      }
      sw += w;
      sv += w * v;
      sv2 += w * v * v;
      ss2 += w * sg * sg;
    }
    if (!(sw > 0)) {
      // All weights zero: retry uniformly, then give up to the parameters.
      if (wmap) return BinKinematics(key, s, binning, vmap, smap, nullptr);
      k.fallback = true;
      return k;
    }
    const double mv = sv / sw;
    double disp2 = smap ? ss2 / sw : dispersion_ * dispersion_;
    if (vmap && velocity_spread_) disp2 += std::max(sv2 / sw - mv * mv, 0.0);
    if (vmap) k.velocity = mv;
    k.dispersion = std::sqrt(std::max(disp2, 0.0));
    return k;
  }

 private:
  double z_sys_, velocity_, dispersion_;
  bool velocity_spread_;
  double sigma_target_;
  bool lsf_bacon_;
  double lsf_fwhm_blue_, lsf_fwhm_red_, lsf_wave_blue_, lsf_wave_red_;
  spectral::Lsf lsf_ = spectral::Lsf::Bacon2017();  // the model of `lsf` (cubeflow/spectral/lsf.hpp)
  double norm_min_, norm_max_;
  WavelengthAxis axis_;
  std::vector<double> centres_, edges_;
};

}  // namespace

void RegisterRestframe(Registry& r) { r.Add<RestframeNode>(); }

}  // namespace cubeflow::spectral
