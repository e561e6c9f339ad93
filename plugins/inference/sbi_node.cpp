// Node inference.sbi: amortised posteriors of the SFH (times by which 10..90 % of the stellar
// mass formed) and mean [M/H] per bin from a simulation-based-inference model (docs/sbi.md).
#include "sbi_node.hpp"
#include "spectrum_fields.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "cubeflow/nn/inputs.hpp"
#include "model_path.hpp"

namespace cubeflow::inference {

namespace {

constexpr const char* kWho = "inference.sbi";

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s.empty() ? "(none)" : s;
}

}  // namespace

NodeSpec SbiNode::Spec() {
  return NodeSpec("inference.sbi",
                  "Posterior distributions of the mass-assembly times t10..t90 and mean [M/H] per bin "
                  "(simulation-based inference)")
      .Describe(
          "Runs a neural posterior estimator trained with `cubeflow train` (kind: sbi; Iglesias-Navarro et "
          "al. 2024): an encoder compresses the rest-framed, normalised bin spectrum (and photometry in the "
          "model's bands, and the spectrum's S/N: see snr_source) to a 16-d summary, and a conditional "
          "normalising flow draws n_samples posterior samples of the cosmic times (Gyr after the Big Bang) by "
          "which 10, 20 ... 90 % of the stellar mass had formed and of the mass-weighted mean [M/H]. Per bin "
          "it emits the posterior median <p>, the 16th and 84th percentiles <p>_p16 / <p>_p84 and "
          "<p>_err = (p84 - p16) / 2 for every parameter p (t10 ... t90, mh), and with emit_samples the "
          "samples <p>_samples. Draws are seeded by (seed, bin id): a bin gets the same posterior whatever "
          "the batching. Inputs are checked against the model metadata like inference.cnn; masked or "
          "non-finite pixels are interpolated, a bin with more than half of them bad is flagged "
          "inference_failed with NaN results; a S/N outside the training range sets outside_training.")
      .Input("spectra", "spectrum", PortKind::kStream,
             "rest-frame spectra on the model grid, divided by their mean flux in the normalisation window, "
             "with variance")
      .OptionalInput("photometry", "photometry", PortKind::kStream,
                     "band fluxes of the same bins (required when the model uses photometry)")
      .Output("results", "record", PortKind::kStream,
              "t10..t90 (Gyr), mh (dex): median, _p16, _p84, _err per bin; _samples with emit_samples")
      .Param(ParamSpec::Path("model", "builtin")
                 .Doc("SBI model file written by `cubeflow train` (metadata in <model>.yaml), or the name of a "
                      "shipped model: `builtin` is <install>/share/cubeflow/models/sbi_builtin.pt (trained on the "
                      "built-in SSP library; $CUBEFLOW_MODEL_DIR is searched first)"))
      .Param(ParamSpec::Int("n_samples", 1000).Range(10, 1000000).Doc("posterior samples per bin"))
      .Param(ParamSpec::Int("seed", 0).Min(0).Doc("seed of the posterior draws (combined with the bin id)"))
      .Param(ParamSpec::Int("batch_size", 256).Range(1, 65536).Doc("bins per call"))
      .Param(ParamSpec::Int("threads", 1).Range(0, 1024)
                 .Doc("libtorch intra-op threads; 0: the run's thread count (1 is fastest when other nodes keep "
                      "the cores busy: see docs/cnn.md)"))
      .Param(ParamSpec::Bool("emit_samples", false).Doc("also emit the samples (<p>_samples, n_samples values each)"))
      .Param(ParamSpec::Double("norm_tolerance", 0.05).Range(0, 10)
                 .Doc("allowed |mean flux in the normalisation window - 1| of an input spectrum"))
      .Param(ParamSpec::String("snr_source", "auto")
                 .Choices({"auto", "meta", "variance"})
                 .Doc("S/N the posterior is conditioned on: `meta` = the spectrum's meta snr (binning.voronoi's "
                      "per-pixel S/N in its window, before rest-framing; the library's definition), `variance` = "
                      "1 / median(sigma) in the normalisation window (too high after broadening, which correlates "
                      "the noise), `auto` = meta if present, else variance"))
      .Param(ParamSpec::Double("snr", 0).Range(0, 1e6)
                 .Doc("S/N per pixel to assume when the chosen source gives none (0: such a spectrum stops the run)"))
      .Batched("batch_size")
      .Concurrent(Concurrency::kSerial);
}

SbiNode::SbiNode(const Params& p) {
  const std::string& name = p.GetString("model");
  if (name.empty())
    throw Error("inference.sbi: parameter 'model' is empty: give `builtin` or the path of an SBI model file written "
                "by `cubeflow train` with a 'kind: sbi' configuration");
  std::string error;
  const std::string path = ResolveModel(name, "sbi", &error);
  if (path.empty()) throw Error("inference.sbi: parameter 'model': " + error);
  auto m = sbi::SbiModel::Load(path);
  if (!m.ok()) throw Error("inference.sbi: " + m.status().message());
  Options o;
  o.n_samples = p.GetInt("n_samples");
  o.seed = static_cast<uint64_t>(p.GetInt("seed"));
  o.threads = static_cast<int>(p.GetInt("threads"));
  o.emit_samples = p.GetBool("emit_samples");
  o.norm_tolerance = p.GetDouble("norm_tolerance");
  o.snr = p.GetDouble("snr");
  o.snr_source = p.GetString("snr_source");
  Init(std::move(m).ValueOrThrow(), path, o);
}

SbiNode::SbiNode(std::unique_ptr<sbi::SbiModel> model, std::string model_path, const Options& options) {
  Init(std::move(model), std::move(model_path), options);
}

void SbiNode::Init(std::unique_ptr<sbi::SbiModel> model, std::string model_path, const Options& options) {
  model_ = std::move(model);
  model_path_ = std::move(model_path);
  opt_ = options;
}

std::string SbiNode::CheckSpectrum(const Spectrum& s) const {
  return inputs::CheckSpectrum(kWho, sbi::MetadataPath(model_path_), model_->metadata().input, s, opt_.norm_tolerance);
}

std::string SbiNode::CheckPhotometry(const Photometry& p, std::vector<int>& order) const {
  return inputs::CheckPhotometry(kWho, sbi::MetadataPath(model_path_), model_->metadata().input, p, order);
}

void SbiNode::Process(ProcessContext& ctx) {
  const auto& md = model_->metadata();
  const size_t n = ctx.size();
  const int64_t nw = md.encoder.nwave, nb = md.encoder.nbands, D = md.flow.dim, S = opt_.n_samples;
  if (nb > 0 && !ctx.Connected("photometry"))
    throw Error("inference.sbi: model " + model_path_ + " uses photometry in bands " + Join(md.input.bands) +
                ": connect the 'photometry' input");
  if (nb == 0 && ctx.Connected("photometry") && !warned_unused_phot_) {
    warned_unused_phot_ = true;
    ctx.Log(LogLevel::kWarn, "the model has no photometric branch: the 'photometry' input is ignored");
  }
  std::vector<float> spec(n * nw, 1.0f), phot(n * nb, 0.0f), snr(n, NAN);
  std::vector<uint32_t> quality(n, 0);
  std::vector<char> ok(n, 1);
  std::vector<int64_t> keys(n);
  std::vector<int> order;
  for (size_t i = 0; i < n; ++i) {
    keys[i] = ctx.key(i);
    auto s = ctx.Input<Spectrum>("spectra", i);
    std::string err = CheckSpectrum(*s);
    if (!err.empty()) throw Error(err);
    quality[i] = s->quality;
    if (inputs::CopyInterpolated(*s, nw, spec.data() + i * nw) * 2 > nw) ok[i] = 0;
    if (md.encoder.noise_input) {
      double v = NAN;
      if (opt_.snr_source != "variance") {
        auto it = s->meta.find("snr");
        if (it != s->meta.end() && it->second > 0 && std::isfinite(it->second)) v = it->second;
      }
      if (!std::isfinite(v) && opt_.snr_source != "meta") v = inputs::NoiseSnr(*s, md.input.norm_min, md.input.norm_max);
      if (!std::isfinite(v)) {
        if (opt_.snr > 0) {
          v = opt_.snr;
        } else if (ok[i]) {
          throw Error("inference.sbi: spectrum of bin " + std::to_string(s->id) + " has " +
                      (opt_.snr_source == "meta" ? std::string("no meta snr")
                                                 : "no usable variance in the normalisation window " +
                                                       Num(md.input.norm_min) + "-" + Num(md.input.norm_max) + " A" +
                                                       (opt_.snr_source == "auto" ? " and no meta snr" : "")) +
                      ", but the model " + model_path_ +
                      " is conditioned on the S/N of each spectrum: give spectra with variance (io.read_cube reads "
                      "the STAT extension) or a meta snr (binning.voronoi), or set the parameter 'snr'");
        }
      }
      snr[i] = static_cast<float>(v);
      if (md.snr_max > 0 && std::isfinite(v) && (v < md.snr_min / 1.25 || v > md.snr_max * 1.25))
        quality[i] |= kQualOutsideTraining;
    }
    if (nb > 0) {
      auto p = ctx.Input<Photometry>("photometry", i);
      err = CheckPhotometry(*p, order);
      if (!err.empty()) throw Error(err);
      quality[i] |= p->quality;
      auto sc = s->meta.find("bunit_scale");
      const double scale = s->norm * (sc != s->meta.end() ? sc->second : 1.0);
      for (int64_t b = 0; b < nb; ++b) {
        const double f = p->flux[order[b]];
        if (!(f > 0)) quality[i] |= kQualNonPositivePhotometry;
        phot[i * nb + b] = static_cast<float>(scale > 0 ? f / scale : NAN);
      }
    }
  }
  const int threads = opt_.threads > 0 ? opt_.threads : ctx.threads();
  std::vector<float> summary(n * md.encoder.ContextDim());
  Status st = model_->Summarize(spec.data(), nb > 0 ? phot.data() : nullptr, snr.data(), static_cast<int64_t>(n),
                                summary.data(), threads);
  if (!st.ok()) throw Error("inference.sbi: " + st.message());
  std::vector<float> samples(n * S * D);
  st = model_->Sample(summary.data(), static_cast<int64_t>(n), S, keys.data(), opt_.seed, samples.data(), threads);
  if (!st.ok()) throw Error("inference.sbi: " + st.message());

  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<float> v(S);
  for (size_t i = 0; i < n; ++i) {
    auto rec = std::make_shared<Record>();
    rec->id = keys[i];
    rec->quality = quality[i];
    if (!ok[i]) rec->quality |= kQualInferenceFailed;
    for (int64_t k = 0; k < D; ++k) {
      const auto& p = md.theta[k];
      for (int64_t s = 0; s < S; ++s) v[s] = samples[(i * S + s) * D + k];
      std::vector<double> all;
      if (opt_.emit_samples) all.assign(v.begin(), v.end());
      double med = sbi::Quantile(v, 0.5), lo = sbi::Quantile(v, 0.16), hi = sbi::Quantile(v, 0.84);
      if (!ok[i]) {
        med = lo = hi = nan;
        std::fill(all.begin(), all.end(), nan);
      }
      rec->Set(p.name, med, p.unit, p.doc + ": posterior median");
      rec->Set(p.name + "_p16", lo, p.unit, p.doc + ": 16th percentile of the posterior");
      rec->Set(p.name + "_p84", hi, p.unit, p.doc + ": 84th percentile of the posterior");
      rec->Set(p.name + "_err", 0.5 * (hi - lo), p.unit, p.doc + ": half the 16-84 % credible interval");
      if (opt_.emit_samples)
        rec->SetVector(p.name + "_samples", std::move(all), p.unit, {}, p.doc + ": posterior samples");
    }
    AddSpectrumFields(*ctx.Input<Spectrum>("spectra", i), rec.get());
    ctx.Emit("results", rec, i);
  }
}

void RegisterSbiNodes(Registry& r) { r.Add<SbiNode>(); }

}  // namespace cubeflow::inference
