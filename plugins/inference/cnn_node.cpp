// The "inference" plugin: node inference.cnn runs the spectro-photometric CNN on bin spectra.
#include "cnn_node.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "cubeflow/nn/sbi.hpp"
#include "cubeflow/strings.hpp"
#include "spectrum_fields.hpp"

namespace cubeflow::inference {

namespace {

/// What can be known about the model before the run: it exists, has metadata, and is a CNN.
void CheckModel(const CnnOptions& o, CheckReport& r) {
  const std::string file = CheckModelFiles(o.model, &cnn::MetadataPath, r);
  if (file.empty()) return;
  const std::string mpath = cnn::MetadataPath(file);
  if (sbi::IsSbiMetadata(mpath)) {
    r.Error("model", "'" + file + "' is an SBI model (kind: sbi in " + mpath +
                         "): use it with node type inference.sbi, or give a CNN model here (e.g. cnn_builtin)");
    return;
  }
  auto md = cnn::ReadMetadata(mpath);
  if (!md.ok())
    r.Error("model", md.status().message() + "; fix the metadata file or write the model again with `cubeflow train`");
}

}  // namespace

NodeSpec CnnNode::Spec() {
  return NodeSpec("inference.cnn",
                  "Star-formation history and age-metallicity relation per bin from the CNN (16 age bins)")
      .Describe(
          "Runs the spectro-photometric CNN of Galceran et al. (2026) on rest-framed, normalised bin "
          "spectra (and photometry in the model's bands, if the model has a photometric branch). "
          "Inputs are checked against the model metadata (<model>.yaml): wavelength grid, rest frame, "
          "air/vacuum, normalisation window and bands; a mismatch stops the run and names the field. "
          "Per bin it emits mass fractions and mean [Z/H] in 16 age bins and the mass- and "
          "V-band-light-weighted mean log age and [Z/H] (paper eqs. 6-7). Spectrum pixels that are "
          "masked or not finite are interpolated linearly; a bin with more than half of them bad is "
          "flagged (quality bit inference_failed) with NaN results.")
      .Input("spectra", "spectrum", PortKind::kStream,
             "rest-frame spectra on the model grid, divided by their mean flux in the normalisation window")
      .OptionalInput("photometry", "photometry", PortKind::kStream,
                     "band fluxes of the same bins (required when the model uses photometry)")
      .Output("results", "record", PortKind::kStream,
              "mass_frac[16], zh[16], mw_logage, lw_logage, mw_zh, lw_zh per bin")
      .Param(&CnnOptions::model, "model",
             "the name of a shipped model (cnn_builtin: trained on the built-in SSP library with photometry; "
             "cnn_builtin_nophot: spectrum only), looked up as NAME.pt in $CUBEFLOW_MODEL_DIR, then "
             "<install>/share/cubeflow/models; or the path of a model file written by `cubeflow train` "
             "(metadata in <model>.yaml) or of a TorchScript module with its metadata file. A bare name "
             "(letters, digits, '_', '-') is always a shipped model: write a file in the working directory "
             "as ./NAME.pt")
      .Param(&CnnOptions::batch_size, "batch_size", "bins per node call (run as chunks of 64 in parallel)", InRange{1, 65536})
      .Param(&CnnOptions::threads, "threads",
             "libtorch intra-op threads of each call; batches already run in parallel on the run's "
             "workers, so 1 uses every core without libtorch's spinning threads (docs/cnn.md); 0: the "
             "run's thread count",
             InRange{0, 1024})
      .Param(&CnnOptions::norm_tolerance, "norm_tolerance",
             "allowed |mean flux in the normalisation window - 1| of an input spectrum", InRange{0, 10})
      .Check<CnnOptions>(CheckModel)
      .Batched("batch_size")
      .Checkpointed()
      .Concurrent(Concurrency::kParallel);
}

CnnNode::CnnNode(const Options& options) : options_(options) {
  auto file = ModelFile(options.model);
  if (!file.ok()) throw Error("parameter 'model': " + file.status().message());
  auto m = cnn::CnnModel::Load(*file);
  if (!m.ok()) throw Error("parameter 'model': " + m.status().message());
  Init(std::move(m).ValueOrThrow(), *file);
}

CnnNode::CnnNode(std::unique_ptr<cnn::CnnModel> model, std::string model_path, const Options& options)
    : options_(options) {
  Init(std::move(model), std::move(model_path));
}

void CnnNode::Init(std::unique_ptr<cnn::CnnModel> model, std::string model_path) {
  model_ = std::move(model);
  model_path_ = std::move(model_path);
  const auto& md = model_->metadata();
  conventions_.wave = md.wave;
  conventions_.rest_frame = md.rest_frame;
  conventions_.norm_min = md.norm_min;
  conventions_.norm_max = md.norm_max;
  conventions_.bands = md.bands;
  conventions_.pivots = md.pivots;
  for (double c : model_->metadata().age_bin_centres) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%gGyr", c);
    labels_.emplace_back(buf);
  }
}

std::string CnnNode::CheckSpectrum(const Spectrum& s) const {
  return inputs::CheckSpectrum("inference.cnn", cnn::MetadataPath(model_path_), conventions_, s, options_.norm_tolerance);
}

std::string CnnNode::CheckPhotometry(const Photometry& p, std::vector<int>& order) const {
  return inputs::CheckPhotometry("inference.cnn", cnn::MetadataPath(model_path_), conventions_, p, order);
}

void CnnNode::Process(ProcessContext& ctx) {
  const auto& md = model_->metadata();
  const size_t n = ctx.size();
  const int64_t nw = md.arch.nwave, nb = md.arch.nbands;
  if (nb > 0 && !ctx.Connected("photometry"))
    throw Error("model " + model_path_ + " uses photometry in bands " + Join(md.bands, ", ", "(none)") +
                ": connect the 'photometry' input (e.g. from photometry.hst_match), or use a spectrum-only model "
                "such as cnn_builtin_nophot");
  if (nb == 0 && ctx.Connected("photometry") && !warned_unused_phot_.exchange(true)) {
    ctx.Log(LogLevel::kWarn, "the model has no photometric branch: the 'photometry' input is ignored");
  }
  std::vector<float> spec(n * nw, 1.0f), phot(n * nb, 0.0f);
  std::vector<uint32_t> quality(n, 0);
  std::vector<char> ok(n, 1);
  std::vector<int> order;
  for (size_t i = 0; i < n; ++i) {
    auto s = ctx.Input<Spectrum>("spectra", i);
    std::string err = CheckSpectrum(*s);
    if (!err.empty()) throw Error(err);
    quality[i] = s->quality;
    // Copy, interpolating over masked / non-finite pixels.
    const int64_t bad = inputs::CopyInterpolated(*s, nw, spec.data() + i * nw);
    if (bad * 2 > nw) ok[i] = 0;
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
        // A normalised band flux more than 5 standard deviations from the training set's
        // distribution (in the model's log space) is outside what the network has seen.
        if (md.phot_transform == "log10_standardise" && b < static_cast<int64_t>(md.phot_std.size()) &&
            md.phot_std[b] > 0 && f > 0 && scale > 0) {
          const double z = (std::log10(std::max(f / scale, md.phot_floor)) - md.phot_mean[b]) / md.phot_std[b];
          if (std::abs(z) > 5) quality[i] |= kQualOutsideTraining;
        }
      }
    }
  }
  std::vector<float> mf(n * cnn::kNumBins), zh(n * cnn::kNumBins);
  const int threads = options_.threads > 0 ? options_.threads : ctx.threads();
  // The batch runs as chunks of cnn::kPredictChunkRows rows (one network call each), each a TBB
  // task: a worker that is free (or becomes free) while the batch runs takes a chunk, so one
  // batch can use every core the rest of the pipeline leaves idle. The chunks depend on the batch
  // only, so results do not depend on which worker runs what.
  constexpr int64_t kChunk = cnn::kPredictChunkRows;
  const int64_t rows = static_cast<int64_t>(n), nchunks = (rows + kChunk - 1) / kChunk;
  std::vector<Status> status(static_cast<size_t>(nchunks));
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, nchunks, 1),
      [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t c = r.begin(); c < r.end(); ++c) {
          const int64_t first = c * kChunk, m = std::min(kChunk, rows - first);
          status[static_cast<size_t>(c)] =
              model_->Predict(spec.data() + first * nw, nb > 0 ? phot.data() + first * nb : nullptr, m,
                              mf.data() + first * cnn::kNumBins, zh.data() + first * cnn::kNumBins, threads, m);
        }
      },
      tbb::simple_partitioner());
  for (const Status& st : status)
    if (!st.ok()) throw Error("model " + model_path_ + ": " + st.message());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (size_t i = 0; i < n; ++i) {
    auto rec = std::make_shared<Record>();
    rec->id = ctx.key(i);
    rec->quality = quality[i];
    const float* m = mf.data() + i * cnn::kNumBins;
    const float* z = zh.data() + i * cnn::kNumBins;
    std::vector<double> mv(m, m + cnn::kNumBins), zv(z, z + cnn::kNumBins);
    cnn::WeightedMeans w = cnn::ComputeWeightedMeans(md, m, z);
    if (!ok[i]) {
      rec->quality |= kQualInferenceFailed;
      std::fill(mv.begin(), mv.end(), nan);
      std::fill(zv.begin(), zv.end(), nan);
      w.mw_logage = w.lw_logage = w.mw_zh = w.lw_zh = nan;
    }
    rec->SetVector("mass_frac", std::move(mv), "", labels_, "fraction of the stellar mass formed in each age bin");
    rec->SetVector("zh", std::move(zv), "dex", labels_, "mean [Z/H] of the stars of each age bin");
    rec->Set("mw_logage", w.mw_logage, "dex", "mass-weighted mean log10(age/yr) (eq. 6)");
    rec->Set("lw_logage", w.lw_logage, "dex", "V-band-light-weighted mean log10(age/yr) (eq. 6)");
    rec->Set("mw_zh", w.mw_zh, "dex", "mass-weighted mean [Z/H] (eq. 7)");
    rec->Set("lw_zh", w.lw_zh, "dex", "V-band-light-weighted mean [Z/H] (eq. 7)");
    AddSpectrumFields(*ctx.Input<Spectrum>("spectra", i), rec.get());
    ctx.Emit("results", rec, i);
  }
}

void RegisterCnnNodes(Registry& r) { r.Add<CnnNode>(); }

}  // namespace cubeflow::inference
