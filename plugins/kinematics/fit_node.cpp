// kinematics.fit: stellar line-of-sight velocity distribution of every bin spectrum by penalised
// pixel fitting (libs/kinematics), streamed as per-bin records to spectral.restframe and
// io.write_maps.
#include <atomic>
#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/kinematics/fitter.hpp"
#include "cubeflow/kinematics/masks.hpp"
#include "cubeflow/kinematics/templates.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/spectral/lsf.hpp"
#include "cubeflow/spectral/spectral_ops.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::kinematics {

namespace {

constexpr double kC = spectral::kSpeedOfLightKms;

struct FitNodeOptions {
  std::string ssp = "builtin";
  std::string ssp_filter;
  double z_sys = 0;
  double wave_min = 4800, wave_max = 5500;
  std::string lsf = "bacon2017";
  std::filesystem::path lsf_file;
  double lsf_fwhm_blue = 2.9, lsf_fwhm_red = 2.4, lsf_wave_blue = 4800, lsf_wave_red = 6500;
  double lsf_pixel = 1.25;
  double template_fwhm = 0;
  std::filesystem::path template_lsf_file;
  std::string coarser_templates = "error";
  double velscale = 0;
  int64_t moments = 2;
  int64_t degree = 8;
  int64_t mdegree = 0;
  double v_start = 0, sigma_start = 100, v_range = 1000, sigma_max = 1000;
  double bias = -1;
  double clip_sigma = 3;
  bool mask_lines = true;
  double line_half_width = 800;
  bool mask_sky = true;
  double sky_half_width = 5;
  std::filesystem::path mask_file;
  std::vector<double> mask_ranges;
  double min_good_fraction = 0.5;
  int64_t mc = 0;
  int64_t seed = 1;
  bool scale_errors = true;
};

std::string Fmt(double v, int prec = 4) {
  std::ostringstream o;
  o.precision(prec);
  o << v;
  return o.str();
}

class FitNode final : public Node {
 public:
  using Options = FitNodeOptions;

  static NodeSpec Spec() {
    using O = FitNodeOptions;
    return NodeSpec("kinematics.fit", "Stellar V, sigma (h3, h4) of every bin by penalised pixel fitting")
        .Describe(
            "Fits the line-of-sight velocity distribution of each bin spectrum (observed frame, e.g. "
            "from binning.voronoi) with a set of SSP templates, in the manner of pPXF (Cappellari & "
            "Emsellem 2004; Cappellari 2017): templates matched to the data's line-spread function and "
            "sampled on a log-lambda grid, a Gauss-Hermite LOSVD (V, sigma; h3..h6 with the penalty "
            "`bias`), additive (`degree`) and multiplicative (`mdegree`) Legendre polynomials, "
            "non-negative template weights, emission-line and sky masks, iterative clipping of "
            "outliers, formal (and with `mc` Monte-Carlo) errors from the bin's variance. The data are "
            "fitted on their own pixels (the model is integrated over each), so no log-rebinning "
            "correlates their noise.\n"
            "V is relative to z_sys in pPXF's convention c ln(lambda_obs / lambda_sys) (within 0.4 km/s of "
            "c dlambda / lambda for |V| < 500 km/s); sigma is the intrinsic dispersion (the instrument is "
            "in the templates). Output record fields per bin: v_stars, sigma_stars (+ h3_stars.. for "
            "moments > 2) with `_err` companions (formal, times sqrt(chi2/dof) if scale_errors; "
            "`_mcerr` with mc > 0), chi2_stars (chi2/dof), snr_stars (median flux over the rms residual) "
            "and kin_flags: 1 sigma below the instrumental dispersion, 2 a parameter on its bound (sigma "
            "at its floor: unresolved), 4 not converged, 8 over 10 % of the pixels clipped, 16 templates "
            "coarser than the data. A bin that cannot be fitted (too few good pixels, no overlap with "
            "the window, no variance) fails with a message (flagged FAILED with settings: {on_error: flag}).\n"
            "Templates: `ssp: builtin` (the synthetic built-in model, no data needed) or a directory of "
            "SSP FITS files the forward model reads (MILES, E-MILES, MIUSCAT, BC03, e.g. "
            "shared/data/ssp/miles_padova_ppxf). They must cover the window plus the velocity margin "
            "and be at least as sharp as the data (otherwise refused, or flagged with "
            "coarser_templates: flag). Speed: ~3 ms per MUSE bin with 150 templates on one core "
            "(bench/kinematics.sh).")
        .Input("spectra", Spectrum::kType, PortKind::kStream,
               "observed-frame bin spectra with variance (flux, variance, mask on `wave`)")
        .Output("kinematics", Record::kType, PortKind::kStream,
                "per-bin kinematics (v_stars, sigma_stars, ... see the description), keyed by bin id")
        .Param(&O::ssp, "ssp", "templates: builtin, or a directory of SSP FITS files (MILES, E-MILES, MIUSCAT, BC03)")
        .Param(&O::ssp_filter, "ssp_filter", "only SSP files whose name contains this (e.g. Mun1.30, for mixed directories)")
        .Param(&O::z_sys, "z_sys", "systemic redshift: the fit window and the emission lines are in its rest frame",
               Unit{""}, InRange{-0.01, 10.0})
        .Param(&O::wave_min, "wave_min", "start of the fit window (rest frame)", Unit{"Angstrom"}, AtLeast{1.0})
        .Param(&O::wave_max, "wave_max", "end of the fit window (rest frame)", Unit{"Angstrom"}, AtLeast{1.0})
        .Param(&O::lsf, "lsf",
               "the data's line-spread function: bacon2017 (MUSE WFM, Bacon et al. 2017 eq. 8), linear "
               "(lsf_fwhm_blue..lsf_fwhm_red, as spectral.restframe), file (lsf_file)",
               OneOf{{"bacon2017", "linear", "file"}})
        .Param(&O::lsf_file, "lsf_file",
               "two-column table: observed wavelength and FWHM in Angstrom (GIST/nGIST lsf_* format); lsf: file")
        .Param(&O::lsf_fwhm_blue, "lsf_fwhm_blue", "lsf: linear: FWHM at lsf_wave_blue", Unit{"Angstrom"}, AtLeast{0})
        .Param(&O::lsf_fwhm_red, "lsf_fwhm_red", "lsf: linear: FWHM at lsf_wave_red", Unit{"Angstrom"}, AtLeast{0})
        .Param(&O::lsf_wave_blue, "lsf_wave_blue", "lsf: linear: wavelength of lsf_fwhm_blue", Unit{"Angstrom"}, AtLeast{1})
        .Param(&O::lsf_wave_red, "lsf_wave_red", "lsf: linear: wavelength of lsf_fwhm_red", Unit{"Angstrom"}, AtLeast{1})
        .Param(&O::lsf_pixel, "lsf_pixel",
               "pixel width the LSF's FWHM was measured on and includes (MUSE cubes: 1.25; taken out, since "
               "the fit integrates the model over each pixel itself); 0: the LSF is the profile before "
               "pixelisation (cubeflow simulate's mock cubes)",
               Unit{"Angstrom"}, AtLeast{0})
        .Param(&O::template_fwhm, "template_fwhm",
               "FWHM of the templates (rest frame); 0: the library's own (MILES/E-MILES 2.51, BC03 3, built-in 2.5)",
               Unit{"Angstrom"}, AtLeast{0})
        .Param(&O::template_lsf_file, "template_lsf_file", "the templates' FWHM as a two-column table instead (e.g. nGIST's lsf_MILES)")
        .Param(&O::coarser_templates, "coarser_templates",
               "templates broader than the data: error (refuse), or flag (fit, correct sigma in quadrature, flag every bin)",
               OneOf{{"error", "flag"}})
        .Param(&O::velscale, "velscale", "template pixel; 0: half the smallest instrumental sigma in the window (<= 40)",
               Unit{"km/s"}, AtLeast{0})
        .Param(&O::moments, "moments", "Gauss-Hermite moments: 2 (V, sigma), 4 (+ h3, h4), 6 (+ h5, h6)", InRange{2, 6})
        .Param(&O::degree, "degree", "degree of the additive Legendre polynomial (-1: none)", InRange{-1, 40})
        .Param(&O::mdegree, "mdegree", "degree of the multiplicative Legendre polynomial (0: none)", InRange{0, 40})
        .Param(&O::v_start, "v_start", "starting velocity relative to z_sys", Unit{"km/s"}, InRange{-5000, 5000})
        .Param(&O::sigma_start, "sigma_start", "starting dispersion", Unit{"km/s"}, InRange{1, 1000})
        .Param(&O::v_range, "v_range", "V is bounded to v_start +- v_range", Unit{"km/s"}, InRange{10, 5000})
        .Param(&O::sigma_max, "sigma_max", "upper bound of sigma", Unit{"km/s"}, InRange{10, 2000})
        .Param(&O::bias, "bias", "penalty on h3.. (Cappellari & Emsellem 2004); < 0: 0.7 sqrt(500 / good pixels)")
        .Param(&O::clip_sigma, "clip_sigma", "clip pixels deviating by more than this many rms from the fit, refit (0: off)",
               AtLeast{0})
        .Param(&O::mask_lines, "mask_lines", "mask the usual nebular emission lines ([O III], H beta, [N I], H alpha, ...)")
        .Param(&O::line_half_width, "line_half_width", "half-width of the emission-line masks", Unit{"km/s"}, AtLeast{0})
        .Param(&O::mask_sky, "mask_sky", "mask sky-subtraction residuals ([O I] 5577, 6300, 6364, Na D; observed frame)")
        .Param(&O::sky_half_width, "sky_half_width", "half-width of the sky-line masks", Unit{"Angstrom"}, AtLeast{0})
        .Param(&O::mask_file, "mask_file",
               "extra masks, GIST specMask format: 'wavelength width comment' rows, comment 'sky' = observed frame")
        .Param(&O::mask_ranges, "mask_ranges", "extra rest-frame masks as [lo1, hi1, lo2, hi2, ...]", Unit{"Angstrom"})
        .Param(&O::min_good_fraction, "min_good_fraction",
               "a bin fails if fewer of its window pixels than this fraction are usable", InRange{0.05, 1.0})
        .Param(&O::mc, "mc", "Monte-Carlo realisations for errors (0: formal errors only)", InRange{0, 10000})
        .Param(&O::seed, "seed", "Monte-Carlo seed (with the bin id)", AtLeast{0})
        .Param(&O::scale_errors, "scale_errors", "multiply formal errors by sqrt(chi2/dof), as GIST/nGIST do")
        .Check<O>([](const O& o, CheckReport& r) {
          if (!(o.wave_max > o.wave_min)) r.Error("wave_max", "must be above wave_min (" + Fmt(o.wave_min) + ")");
          if (o.lsf == "file" && o.lsf_file.empty()) r.Error("lsf_file", "lsf: file needs lsf_file (a two-column table)");
          if (o.lsf != "file" && !o.lsf_file.empty()) r.Warn("lsf_file", "ignored unless lsf: file");
          if (o.lsf == "linear" && !(o.lsf_wave_red > o.lsf_wave_blue))
            r.Error("lsf_wave_red", "must be above lsf_wave_blue");
          if (o.ssp != "builtin" && !std::filesystem::is_directory(o.ssp))
            r.Error("ssp", "'" + o.ssp + "' is not a directory; give builtin or a directory of SSP FITS files "
                           "(e.g. ${CUBEFLOW_DATA_DIR}/ssp/miles_padova_ppxf)");
          if (o.mask_ranges.size() % 2 != 0) r.Error("mask_ranges", "needs pairs [lo, hi, ...]");
          for (size_t i = 0; i + 1 < o.mask_ranges.size(); i += 2)
            if (!(o.mask_ranges[i + 1] > o.mask_ranges[i]))
              r.Error("mask_ranges", "range " + std::to_string(i / 2 + 1) + " is empty (give lo < hi)");
          if (o.moments % 2 != 0) r.Error("moments", "must be 2, 4 or 6");
          if (o.sigma_start > o.sigma_max) r.Error("sigma_start", "must not exceed sigma_max");
          if (!o.mask_file.empty() && !std::filesystem::exists(o.mask_file))
            r.Error("mask_file", "no such file: " + o.mask_file.string());
        })
        .Concurrent(Concurrency::kParallel);
  }

  explicit FitNode(const Options& o) : o_(o) {
    // Templates.
    std::shared_ptr<const sim::SspGrid> grid;
    if (o.ssp == "builtin") {
      grid = sim::BuiltinSsp();
    } else {
      sim::SspLoadOptions lo;
      lo.name_contains = o.ssp_filter;
      auto g = sim::LoadSspDirectory(o.ssp, lo);
      if (!g.ok()) throw Error("ssp: " + g.status().message());
      grid = *g;
    }
    TemplateOptions to;
    to.wave_min = o.wave_min;
    to.wave_max = o.wave_max;
    to.z_sys = o.z_sys;
    if (o.lsf == "bacon2017") {
      to.data_lsf = spectral::Lsf::Bacon2017();
    } else if (o.lsf == "linear") {
      to.data_lsf = spectral::Lsf::Linear(o.lsf_wave_blue, o.lsf_fwhm_blue, o.lsf_wave_red, o.lsf_fwhm_red).ValueOrThrow();
    } else {
      auto l = spectral::Lsf::FromFile(o.lsf_file.string());
      if (!l.ok()) throw Error("lsf_file: " + l.status().message());
      to.data_lsf = *l;
    }
    if (!o.template_lsf_file.empty()) {
      auto l = spectral::Lsf::FromFile(o.template_lsf_file.string());
      if (!l.ok()) throw Error("template_lsf_file: " + l.status().message());
      to.template_lsf = *l;
    } else if (o.template_fwhm > 0) {
      to.template_lsf = spectral::Lsf::Constant(o.template_fwhm);
    }
    to.data_lsf_pixel = o.lsf_pixel;
    to.velscale = o.velscale;
    to.allow_coarser = o.coarser_templates == "flag";
    // Coverage for the largest shift and kernel the fit may try (see LosvdFitter::Make).
    const double vs_guess = o.velscale > 0 ? o.velscale : 40.0;
    to.margin_kms = std::abs(o.v_start) + o.v_range + std::max(6.5 * o.sigma_max, 66.0 * vs_guess) + 4 * vs_guess + 1;
    auto ts = PrepareTemplates(*grid, to);
    if (!ts.ok()) throw Error(ts.status().message());
    templates_ = *ts;
    // Masks.
    FitOptions fo;
    fo.wave_min = o.wave_min;
    fo.wave_max = o.wave_max;
    fo.z_sys = o.z_sys;
    fo.moments = static_cast<int>(o.moments);
    fo.degree = static_cast<int>(o.degree);
    fo.mdegree = static_cast<int>(o.mdegree);
    fo.v_start = o.v_start;
    fo.sigma_start = o.sigma_start;
    fo.v_range = o.v_range;
    fo.sigma_max = o.sigma_max;
    fo.bias = o.bias;
    fo.clip_sigma = o.clip_sigma;
    fo.min_good_fraction = o.min_good_fraction;
    fo.mc = static_cast<int>(o.mc);
    fo.seed = static_cast<uint64_t>(o.seed);
    fo.scale_errors = o.scale_errors;
    if (o.mask_lines)
      for (auto& m : EmissionLineRegions(o.line_half_width)) fo.masks.push_back(m);
    if (o.mask_sky)
      for (auto& m : SkyLineRegions(o.sky_half_width)) fo.masks.push_back(m);
    if (!o.mask_file.empty()) {
      auto m = ReadGistMaskFile(o.mask_file.string());
      if (!m.ok()) throw Error("mask_file: " + m.status().message());
      fo.masks.insert(fo.masks.end(), m->begin(), m->end());
    }
    {
      auto m = RangeRegions(o.mask_ranges);
      if (!m.ok()) throw Error("mask_ranges: " + m.status().message());
      fo.masks.insert(fo.masks.end(), m->begin(), m->end());
    }
    auto f = LosvdFitter::Make(templates_, fo);
    if (!f.ok()) throw Error(f.status().message());
    fitter_ = std::make_unique<LosvdFitter>(std::move(*f));
  }

  void Process(ProcessContext& ctx) override {
    if (!logged_.exchange(true))
      ctx.Log(LogLevel::kInfo, std::to_string(templates_->n()) + " templates from " +
                                   (o_.ssp == "builtin" ? std::string("the built-in model") : o_.ssp) + ", " +
                                   Fmt(templates_->velscale) + " km/s pixels; window " + Fmt(o_.wave_min, 5) + "-" +
                                   Fmt(o_.wave_max, 5) + " A (rest), instrumental sigma " +
                                   Fmt(templates_->instr_sigma_kms, 3) + " km/s at its centre");
    for (size_t item = 0; item < ctx.size(); ++item) {
      auto in = ctx.Input<Spectrum>("spectra", item);
      const int64_t key = ctx.key(item) >= 0 ? ctx.key(item) : in->id;
      ctx.Emit("kinematics", FitOne(key, *in), item);
    }
  }

  void Finish(ProcessContext& ctx) override {
    const int64_t n = fitted_.load();
    if (n == 0) return;
    std::ostringstream m;
    m << "fitted " << n << " bins; flagged: " << below_.load() << " sigma below the instrument, " << bound_.load()
      << " at a bound, " << unconverged_.load() << " not converged";
    ctx.Log(LogLevel::kInfo, m.str());
  }

  /// The fit of one bin as a record (thread-safe).
  std::shared_ptr<Record> FitOne(int64_t key, const Spectrum& in) const {
    const std::string who = "bin " + std::to_string(key);
    if (in.rest_frame) throw Error(who + ": the spectrum is already in the rest frame; connect the observed-frame "
                                         "bin spectra (binning.voronoi's spectra) to kinematics.fit");
    if (in.variance.size() != in.flux.size())
      throw Error(who + ": the spectrum has no variance; kinematics.fit weights pixels by 1 / variance (read a cube "
                        "with a STAT/variance extension)");
    std::vector<double> edges = spectral::AxisEdges(in.wave);
    if (edges.size() != in.flux.size() + 1) throw Error(who + ": the wavelength axis does not match the flux");
    if (!in.wave.air)
      for (double& e : edges) e = spectral::VacuumToAir(e);  // templates are in air
    const double z1 = 1.0 + o_.z_sys;
    for (double& e : edges) e /= z1;
    SpectrumView sv;
    sv.edges = edges;
    sv.flux = in.flux;
    sv.variance = in.variance;
    sv.mask = in.mask;
    sv.id = key;
    auto r = fitter_->Fit(sv);
    if (!r.ok()) throw Error(r.status().message());
    const FitResult& f = *r;
    auto rec = std::make_shared<Record>();
    rec->id = key;
    rec->Set("v_stars", f.params[0], "km/s", "stellar velocity relative to z_sys, c ln(lambda / lambda_sys)");
    rec->Set("v_stars_err", f.errors[0], "km/s");
    rec->Set("sigma_stars", f.params[1], "km/s", "stellar velocity dispersion (intrinsic)");
    rec->Set("sigma_stars_err", f.errors[1], "km/s");
    static const char* hname[] = {"h3_stars", "h4_stars", "h5_stars", "h6_stars"};
    for (int k = 2; k < o_.moments; ++k) {
      rec->Set(hname[k - 2], f.params[static_cast<size_t>(k)], "", "Gauss-Hermite moment");
      rec->Set(std::string(hname[k - 2]) + "_err", f.errors[static_cast<size_t>(k)]);
    }
    if (o_.mc > 0) {
      rec->Set("v_stars_mcerr", f.mc_errors[0], "km/s", "Monte-Carlo error");
      rec->Set("sigma_stars_mcerr", f.mc_errors[1], "km/s", "Monte-Carlo error");
      for (int k = 2; k < o_.moments; ++k)
        rec->Set(std::string(hname[k - 2]) + "_mcerr", f.mc_errors[static_cast<size_t>(k)], "", "Monte-Carlo error");
    }
    rec->Set("chi2_stars", f.chi2, "", "chi2 / dof of the kinematic fit");
    rec->Set("snr_stars", f.snr, "", "median flux over the rms residual of the kinematic fit");
    rec->Set("kin_flags", static_cast<double>(f.flags), "",
             "kinematics.fit flags: 1 sigma < instrument, 2 at bound, 4 not converged, 8 clipped > 10 %, 16 coarser templates");
    ++fitted_;
    if (f.flags & kKinSigmaBelowInstrument) ++below_;
    if (f.flags & kKinAtBound) ++bound_;
    if (f.flags & kKinNotConverged) ++unconverged_;
    return rec;
  }

  const TemplateSet& templates() const { return *templates_; }

 private:
  FitNodeOptions o_;
  std::shared_ptr<const TemplateSet> templates_;
  std::unique_ptr<LosvdFitter> fitter_;
  mutable std::atomic<int64_t> fitted_{0}, below_{0}, bound_{0}, unconverged_{0};
  mutable std::atomic<bool> logged_{false};
};

}  // namespace

void RegisterFit(Registry& r) { r.Add<FitNode>(); }
NodeSpec FitNodeSpec() { return Registry::WithFactory<FitNode>(FitNode::Spec()); }

}  // namespace cubeflow::kinematics
