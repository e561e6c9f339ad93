// Node inference.sbi: amortised posteriors of the SFH (times by which 10..90 % of the stellar
// mass formed) and mean [M/H] per bin from a simulation-based-inference model (docs/sbi.md).
#include "sbi_node.hpp"
#include "spectrum_fields.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/inputs.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::inference {

namespace {

constexpr const char* kWho = "inference.sbi";
/// Most posterior samples one call may hold (batch_size x n_samples x parameters floats).
constexpr double kMaxSampleBytes = 4.0 * 1024 * 1024 * 1024;

/// What can be known before the run: the model exists and is an SBI model, the samples of a
/// batch fit in memory, and the S/N parameters mean something for this model.
void CheckOptions(const SbiOptions& o, CheckReport& r) {
  const std::string file = CheckModelFiles(o.model, &sbi::MetadataPath, r);
  if (file.empty()) return;
  const std::string mpath = sbi::MetadataPath(file);
  if (!sbi::IsSbiMetadata(mpath) && cnn::ReadMetadata(mpath).ok()) {
    r.Error("model", "'" + file + "' is a CNN model (no 'kind: sbi' in " + mpath +
                         "): use it with node type inference.cnn, or give an SBI model here (e.g. sbi_builtin)");
    return;
  }
  auto md = sbi::ReadMetadata(mpath);
  if (!md.ok()) {
    r.Error("model", md.status().message() + "; fix the metadata file or write the model again with `cubeflow train`");
    return;
  }
  const double bytes = static_cast<double>(o.batch_size) * static_cast<double>(o.n_samples) *
                       static_cast<double>(md->flow.dim) * sizeof(float);
  if (bytes > kMaxSampleBytes)
    r.Error("batch_size", "batch_size " + std::to_string(o.batch_size) + " x n_samples " + std::to_string(o.n_samples) +
                              " x " + std::to_string(md->flow.dim) + " parameters need " +
                              Num(bytes / (1024.0 * 1024 * 1024), 3) +
                              " GiB of posterior samples per call (at most 4): lower batch_size (the results do not "
                              "depend on it) or n_samples");
  if (!md->encoder.noise_input) {
    if (o.snr > 0)
      r.Warn("snr", "the model " + file + " is not conditioned on the S/N, so 'snr' is not used: remove it");
    if (o.snr_source != "auto")
      r.Warn("snr_source", "the model " + file + " is not conditioned on the S/N, so 'snr_source' is not used: remove it");
  } else if (o.snr > 0 && md->snr_max > 0 && (o.snr < md->snr_min / 1.25 || o.snr > md->snr_max * 1.25)) {
    r.Warn("snr", "S/N " + Num(o.snr) + " is outside the training range " + Num(md->snr_min) + "-" + Num(md->snr_max) +
                      " of the model " + file + ": bins that use it are flagged outside_training");
  }
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
      .Param(&SbiOptions::model, "model",
             "the name of a shipped model (sbi_builtin: trained on the built-in SSP library), looked up as "
             "NAME.pt in $CUBEFLOW_MODEL_DIR, then <install>/share/cubeflow/models; or the path of an SBI model "
             "file written by `cubeflow train` (metadata in <model>.yaml). A bare name (letters, digits, '_', "
             "'-') is always a shipped model: write a file in the working directory as ./NAME.pt")
      .Param(&SbiOptions::n_samples, "n_samples", "posterior samples per bin", InRange{10, 1000000})
      .Param(&SbiOptions::seed, "seed", "seed of the posterior draws (combined with the bin id)", AtLeast{0})
      .Param(&SbiOptions::batch_size, "batch_size", "bins per call", InRange{1, 65536})
      .Param(&SbiOptions::threads, "threads",
             "libtorch intra-op threads; 0: the run's thread count (1 is fastest when other nodes keep "
             "the cores busy: see docs/cnn.md)",
             InRange{0, 1024})
      .Param(&SbiOptions::emit_samples, "emit_samples", "also emit the samples (<p>_samples, n_samples values each)")
      .Param(&SbiOptions::norm_tolerance, "norm_tolerance",
             "allowed |mean flux in the normalisation window - 1| of an input spectrum", InRange{0, 10})
      .Param(&SbiOptions::snr_source, "snr_source",
             "S/N the posterior is conditioned on: `meta` = the spectrum's meta snr (binning.voronoi's "
             "per-pixel S/N in its window, before rest-framing; the library's definition), `variance` = "
             "1 / median(sigma) in the normalisation window (too high after broadening, which correlates "
             "the noise), `auto` = meta if present, else variance",
             OneOf{{"auto", "meta", "variance"}})
      .Param(&SbiOptions::snr, "snr",
             "S/N per pixel to assume when the chosen source gives none (0: such a spectrum stops the run)",
             InRange{0, 1e6})
      .Check<SbiOptions>(CheckOptions)
      .Batched("batch_size")
      .Checkpointed()
      .Concurrent(Concurrency::kSerial);
}

SbiNode::SbiNode(const Options& options) {
  auto file = ModelFile(options.model);
  if (!file.ok()) throw Error("parameter 'model': " + file.status().message());
  auto m = sbi::SbiModel::Load(*file);
  if (!m.ok()) throw Error("parameter 'model': " + m.status().message());
  Init(std::move(m).ValueOrThrow(), *file, options);
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
    throw Error("model " + model_path_ + " uses photometry in bands " + Join(md.input.bands, ", ", "(none)") +
                ": connect the 'photometry' input (e.g. from photometry.hst_match), or use a model trained without "
                "photometry");
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
          throw Error("spectrum of bin " + std::to_string(s->id) + " has " +
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
  if (!st.ok()) throw Error("model " + model_path_ + ": " + st.message());
  std::vector<float> samples(n * S * D);
  st = model_->Sample(summary.data(), static_cast<int64_t>(n), S, keys.data(), opt_.seed, samples.data(), threads);
  if (!st.ok()) throw Error("model " + model_path_ + ": " + st.message());

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
