// Node inference.diffusion: posterior samples of the 16-bin star-formation and metallicity
// history per bin from a score-based diffusion prior and the differentiable forward model
// (paper 001; docs/diffusion.md "Posterior sampling").
#include "diffusion_node.hpp"
#include "spectrum_fields.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "cubeflow/sim/ages.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::inference {

namespace {

constexpr const char* kWho = "inference.diffusion";

void CheckOptions(const DiffusionOptions& o, CheckReport& r) {
  const std::string file = CheckModelFiles(
      o.model, [](const std::string& f) { return f + ".yaml"; }, r);
  if (file.empty()) return;
  if (!diffusion::IsDiffusionYaml(file + ".yaml"))
    r.Error("model", "'" + file + "' is not a diffusion prior (no 'kind: diffusion' in " + file +
                         ".yaml): give a prior written by `cubeflow train` with kind: diffusion, or use "
                         "inference.cnn / inference.sbi for other models");
}

/// Sorted-values quantile, linear between order statistics.
double Quantile(std::vector<double> v, double p) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double pos = p * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

struct Quantity {
  std::string name, unit, doc;
};
const std::vector<Quantity>& Quantities() {
  static const std::vector<Quantity> q = [] {
    std::vector<Quantity> v = {{"mw_logage", "dex", "mass-weighted mean log10(age/yr)"},
                               {"lw_logage", "dex", "V-band-light-weighted mean log10(age/yr)"},
                               {"mw_zh", "dex", "mass-weighted mean [Z/H]"},
                               {"lw_zh", "dex", "V-band-light-weighted mean [Z/H]"}};
    for (int k = 1; k <= sim::kNumMassPercentiles; ++k)
      v.push_back({"t" + std::to_string(10 * k), "Gyr",
                   "cosmic time by which " + std::to_string(10 * k) + " % of the stellar mass had formed"});
    v.push_back({"tau_bc", "", "birth-cloud optical depth at the dust pivot"});
    v.push_back({"tau_ism", "", "diffuse (ISM) optical depth at the dust pivot"});
    return v;
  }();
  return q;
}

}  // namespace

NodeSpec DiffusionNode::Spec() {
  return NodeSpec("inference.diffusion",
                  "Posterior samples of the 16-bin star-formation and metallicity history per bin (diffusion prior + "
                  "forward model)")
      .Describe(
          "Draws n_samples posterior samples of the history vector (log10 mass fraction and [Z/H] of the 16 age "
          "bins of inference.cnn) and of the two dust optical depths, by predictor-corrector sampling of the "
          "score-based diffusion prior (`cubeflow train`, kind: diffusion) plus the likelihood of the bin's "
          "spectrum through the differentiable forward model of the prior's simulator config, in the convolved "
          "likelihood approximation of paper 001 (docs/diffusion.md). Pixels within line_mask A of the nebular "
          "lines, masked pixels and pixels without a positive variance are left out of the likelihood. Per bin "
          "it emits the posterior median <q>, <q>_p16, <q>_p84 and <q>_err = (p84 - p16) / 2 of mw_logage, "
          "lw_logage, mw_zh, lw_zh (as inference.cnn), t10..t90 (as inference.sbi), tau_bc and tau_ism, and the "
          "per-bin medians mass_frac and zh (vectors, as inference.cnn; inference.stellar_mass reads them), with "
          "emit_samples also <q>_samples. Draws are seeded by (seed, bin id). The spectrum must be on the forward "
          "model's grid, rest-framed and normalised (checked like inference.cnn); a bin whose sampling fails is "
          "flagged inference_failed with NaN results.")
      .Input("spectra", "spectrum", PortKind::kStream,
             "rest-frame spectra on the forward model's grid, divided by their mean flux in the normalisation "
             "window, with variance")
      .OptionalInput("photometry", "photometry", PortKind::kStream,
                     "band fluxes of the same bins in the forward model's bands (used in the likelihood)")
      .Output("results", "record", PortKind::kStream,
              "mw/lw log age and [Z/H], t10..t90, tau_bc, tau_ism: median, _p16, _p84, _err; mass_frac, zh per "
              "age bin (medians); _samples with emit_samples")
      .Param(&DiffusionOptions::model, "model",
             "the name of a shipped prior (diffusion_builtin), looked up as NAME.pt in $CUBEFLOW_MODEL_DIR, then "
             "<install>/share/cubeflow/models; or the path of a prior written by `cubeflow train` (kind: "
             "diffusion; metadata in <model>.yaml, whose library_config sets the forward model)")
      .Param(&DiffusionOptions::n_samples, "n_samples", "posterior samples per bin", InRange{2, 100000})
      .Param(&DiffusionOptions::seed, "seed", "seed of the posterior draws (combined with the bin id)", AtLeast{0})
      .Param(&DiffusionOptions::steps, "steps", "noise levels of the sampler (time per bin is proportional)",
             InRange{2, 100000})
      .Param(&DiffusionOptions::cla, "cla",
             "A A^T in the CLA covariance Sigma_y + sigma^2 A A^T: `diagonal` (paper 001's variance of the "
             "forward model over N(0, I) states, computed once) or `full` (Woodbury with the forward model's "
             "Jacobian; slower, and not better so far: docs/diffusion.md)",
             OneOf{{"diagonal", "full"}})
      .Param(&DiffusionOptions::jacobian_every, "jacobian_every",
             "with cla: full, noise levels between updates of the forward model's Jacobian", InRange{1, 100000})
      .Param(&DiffusionOptions::clip, "clip",
             "cap of the likelihood score at clip sqrt(34) / sigma (0: none); see docs/diffusion.md", InRange{0, 1e6})
      .Param(&DiffusionOptions::refine_steps, "refine_steps",
             "steps of preconditioned Langevin dynamics on the exact likelihood after the reverse diffusion "
             "(0: none); they bring the samples' fit to the data closer to the truth's (docs/diffusion.md)",
             InRange{0, 100000})
      .Param(&DiffusionOptions::adjust_steps, "adjust_steps",
             "then Metropolis-adjusted Langevin steps on the same target with the prior's curvature in the "
             "preconditioner (0: none); they move the samples along the directions the data leave free "
             "(docs/diffusion.md)",
             InRange{0, 100000})
      .Param(&DiffusionOptions::line_mask, "line_mask",
             "half-width (A) of the windows around the nebular lines left out of the likelihood (0: none)",
             InRange{0, 1000})
      .Param(&DiffusionOptions::threads, "threads", "libtorch intra-op threads; 0: the run's thread count",
             InRange{0, 1024})
      .Param(&DiffusionOptions::emit_samples, "emit_samples", "also emit the samples (<q>_samples)")
      .Param(&DiffusionOptions::norm_tolerance, "norm_tolerance",
             "allowed |mean flux in the normalisation window - 1| of an input spectrum", InRange{0, 10})
      .Check<DiffusionOptions>(CheckOptions)
      .Concurrent(Concurrency::kSerial);
}

DiffusionNode::DiffusionNode(const Options& options) {
  auto file = ModelFile(options.model);
  if (!file.ok()) throw Error("parameter 'model': " + file.status().message());
  auto prior = diffusion::PriorModel::Load(*file);
  if (!prior.ok()) throw Error("parameter 'model': " + prior.status().message());
  auto shared = std::make_shared<const diffusion::PriorModel>(std::move(prior).ValueOrThrow());
  auto fm = diffusion::PosteriorSampler::ForwardModelOf(*shared);
  if (!fm.ok()) throw Error("parameter 'model': the forward model of " + *file + ": " + fm.status().message());
  Init(shared, *fm, *file, options);
}

DiffusionNode::DiffusionNode(std::shared_ptr<const diffusion::PriorModel> prior,
                             std::shared_ptr<const sim::ForwardModel> fm, std::string model_path,
                             const Options& options) {
  Init(std::move(prior), std::move(fm), std::move(model_path), options);
}

void DiffusionNode::Init(std::shared_ptr<const diffusion::PriorModel> prior,
                         std::shared_ptr<const sim::ForwardModel> fm, std::string model_path, const Options& options) {
  auto s = diffusion::PosteriorSampler::Make(std::move(prior), fm);
  if (!s.ok()) throw Error("parameter 'model': " + s.status().message());
  sampler_ = std::make_unique<diffusion::PosteriorSampler>(std::move(s).ValueOrThrow());
  model_path_ = std::move(model_path);
  opt_ = options;
  const sim::SimConfig& c = fm->config();
  conventions_.wave = c.obs.wave;
  conventions_.rest_frame = true;
  conventions_.norm_min = c.obs.norm_min;
  conventions_.norm_max = c.obs.norm_max;
  conventions_.bands = fm->bands();
  conventions_.pivots = fm->pivots();
}

std::string DiffusionNode::CheckSpectrum(const Spectrum& s) const {
  return inputs::CheckSpectrum(kWho, model_path_ + ".yaml (library_config)", conventions_, s, opt_.norm_tolerance);
}

diffusion::Observation DiffusionNode::ObservationOf(ProcessContext& ctx, size_t i, const Spectrum& s, bool use_phot,
                                                   Record& rec) const {
  if (s.variance.empty())
    throw Error("spectrum of bin " + std::to_string(s.id) +
                " has no variance: the likelihood needs it (io.read_cube reads the STAT extension; binning and "
                "spectral.restframe carry it)");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  diffusion::Observation obs;
  obs.flux = s.flux;
  obs.variance = s.variance;
  for (size_t k = 0; k < s.mask.size() && k < obs.variance.size(); ++k)
    if (s.mask[k]) obs.variance[k] = 0;  // left out of the likelihood
  if (!use_phot) return obs;
  auto p = ctx.Input<Photometry>("photometry", i);
  std::vector<int> order;
  const std::string perr =
      inputs::CheckPhotometry(kWho, model_path_ + ".yaml (library_config)", conventions_, *p, order);
  if (!perr.empty()) throw Error(perr);
  rec.quality |= p->quality;
  // The band fluxes in the units of the normalised spectrum.
  auto sc = s.meta.find("bunit_scale");
  const double scale = s.norm * (sc != s.meta.end() ? sc->second : 1.0);
  for (size_t b = 0; b < order.size(); ++b) {
    const double f = p->flux[order[b]], e = order[b] < static_cast<int>(p->error.size()) ? p->error[order[b]] : nan;
    if (!(f > 0)) rec.quality |= kQualNonPositivePhotometry;
    obs.phot.push_back(scale > 0 ? f / scale : nan);
    obs.phot_variance.push_back(scale > 0 && e > 0 ? (e / scale) * (e / scale) : nan);
  }
  return obs;
}

void DiffusionNode::SetPosteriorFields(const std::vector<diffusion::PosteriorDraw>* draws, Record& rec) const {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const bool ok = draws != nullptr;
  const size_t ns = ok ? draws->size() : 0;
  const auto& qs = Quantities();
  // Per sample: the derived quantities, the mass fractions and the [Z/H] of the 16 bins.
  std::vector<std::vector<double>> v(qs.size(), std::vector<double>(ns));
  std::vector<std::vector<double>> mf(diffusion::kNumBins, std::vector<double>(ns)),
      zh(diffusion::kNumBins, std::vector<double>(ns));
  for (size_t r = 0; r < ns; ++r) {
    const auto& d = (*draws)[r];
    const auto q = diffusion::Derive(d, sampler_->t_universe());
    v[0][r] = q.mw_logage;
    v[1][r] = q.lw_logage;
    v[2][r] = q.mw_zh;
    v[3][r] = q.lw_zh;
    for (int k = 0; k < sim::kNumMassPercentiles; ++k) v[4 + k][r] = q.t[k];
    v[4 + sim::kNumMassPercentiles][r] = d.tau_bc;
    v[5 + sim::kNumMassPercentiles][r] = d.tau_ism;
    for (int b = 0; b < diffusion::kNumBins; ++b) {
      mf[b][r] = q.mass_frac[b];
      zh[b][r] = d.x[diffusion::kNumBins + b];
    }
  }
  for (size_t k = 0; k < qs.size(); ++k) {
    const auto& q = qs[k];
    const double med = ok ? Quantile(v[k], 0.5) : nan, lo = ok ? Quantile(v[k], 0.16) : nan,
                 hi = ok ? Quantile(v[k], 0.84) : nan;
    rec.Set(q.name, med, q.unit, q.doc + ": posterior median");
    rec.Set(q.name + "_p16", lo, q.unit, q.doc + ": 16th percentile of the posterior");
    rec.Set(q.name + "_p84", hi, q.unit, q.doc + ": 84th percentile of the posterior");
    rec.Set(q.name + "_err", 0.5 * (hi - lo), q.unit, q.doc + ": half the 16-84 % credible interval");
    if (opt_.emit_samples) {
      std::vector<double> all = ok ? v[k] : std::vector<double>(opt_.n_samples, nan);
      rec.SetVector(q.name + "_samples", std::move(all), q.unit, {}, q.doc + ": posterior samples");
    }
  }
  std::vector<std::string> labels;
  for (double c : sim::AgeBinCentresGyr()) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%gGyr", c);
    labels.emplace_back(buf);
  }
  std::vector<double> mfm(diffusion::kNumBins), zhm(diffusion::kNumBins);
  for (int b = 0; b < diffusion::kNumBins; ++b) {
    mfm[b] = ok ? Quantile(mf[b], 0.5) : nan;
    zhm[b] = ok ? Quantile(zh[b], 0.5) : nan;
  }
  rec.SetVector("mass_frac", std::move(mfm), "", labels,
                "fraction of the stellar mass formed in each age bin: posterior median per bin");
  rec.SetVector("zh", std::move(zhm), "dex", labels, "[Z/H] of the stars of each age bin: posterior median per bin");
}

void DiffusionNode::Process(ProcessContext& ctx) {
  const size_t nb = sampler_->forward_model().bands().size();
  const bool use_phot = ctx.Connected("photometry") && nb > 0;
  if (ctx.Connected("photometry") && nb == 0 && !warned_phot_) {
    warned_phot_ = true;
    ctx.Log(LogLevel::kWarn, "the prior's forward model has no bands: the 'photometry' input is ignored");
  }
  diffusion::PosteriorOptions po;
  po.n_samples = opt_.n_samples;
  po.steps = opt_.steps;
  po.cla = opt_.cla;
  po.jacobian_every = opt_.jacobian_every;
  po.clip = opt_.clip;
  po.line_mask = opt_.line_mask;
  po.refine_steps = opt_.refine_steps;
  po.adjust_steps = opt_.adjust_steps;
  po.threads = opt_.threads > 0 ? opt_.threads : ctx.threads();
  for (size_t i = 0; i < ctx.size(); ++i) {
    auto s = ctx.Input<Spectrum>("spectra", i);
    const std::string err = CheckSpectrum(*s);
    if (!err.empty()) throw Error(err);
    auto rec = std::make_shared<Record>();
    rec->id = ctx.key(i);
    rec->quality = s->quality;
    const diffusion::Observation obs = ObservationOf(ctx, i, *s, use_phot, *rec);
    const uint64_t seed = opt_.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(ctx.key(i));
    auto draws = sampler_->Sample(obs, po, seed);
    if (!draws.ok()) {
      rec->quality |= kQualInferenceFailed;
      ctx.Log(LogLevel::kWarn, "bin " + std::to_string(s->id) + ": " + draws.status().message() +
                                   " (flagged inference_failed, results NaN)");
    }
    SetPosteriorFields(draws.ok() ? &*draws : nullptr, *rec);
    AddSpectrumFields(*s, rec.get());
    ctx.Emit("results", rec, i);
  }
}

void RegisterDiffusionNodes(Registry& r) { r.Add<DiffusionNode>(); }

}  // namespace cubeflow::inference
