// The "inference" plugin: node inference.cnn runs the spectro-photometric CNN on bin spectra.
#include "cnn_node.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "cubeflow/plugin.hpp"
#include "model_path.hpp"
#include "sbi_node.hpp"
#include "spectrum_fields.hpp"

namespace cubeflow::inference {

namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s.empty() ? "(none)" : s;
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
      .Param(ParamSpec::Path("model", "builtin")
                 .Doc("model file written by `cubeflow train` (metadata in <model>.yaml), a TorchScript "
                      "module with its metadata file, or the name of a shipped model: `builtin` is "
                      "<install>/share/cubeflow/models/cnn_builtin.pt (trained on the built-in SSP library; "
                      "$CUBEFLOW_MODEL_DIR is searched first)"))
      .Param(ParamSpec::Int("batch_size", 256).Range(1, 65536).Doc("bins per network call"))
      .Param(ParamSpec::Int("threads", 1).Range(0, 1024)
                 .Doc("libtorch intra-op threads; 0: the run's thread count (1 is fastest when other "
                      "nodes keep the cores busy: see docs/cnn.md)"))
      .Param(ParamSpec::Double("norm_tolerance", 0.05).Range(0, 10)
                 .Doc("allowed |mean flux in the normalisation window - 1| of an input spectrum"))
      .Batched("batch_size")
      .Concurrent(Concurrency::kSerial);
}

CnnNode::CnnNode(const Params& p) {
  const std::string& name = p.GetString("model");
  if (name.empty())
    throw Error("inference.cnn: parameter 'model' is empty: give `builtin` or the path of a model file written by "
                "`cubeflow train`");
  std::string error;
  const std::string path = ResolveModel(name, "cnn", &error);
  if (path.empty()) throw Error("inference.cnn: parameter 'model': " + error);
  auto m = cnn::CnnModel::Load(path);
  if (!m.ok()) throw Error("inference.cnn: " + m.status().message());
  Init(std::move(m).ValueOrThrow(), path, static_cast<int>(p.GetInt("threads")),
       p.Has("norm_tolerance") ? p.GetDouble("norm_tolerance") : 0.05);
}

CnnNode::CnnNode(std::unique_ptr<cnn::CnnModel> model, std::string model_path, int threads, double norm_tolerance) {
  Init(std::move(model), std::move(model_path), threads, norm_tolerance);
}

void CnnNode::Init(std::unique_ptr<cnn::CnnModel> model, std::string model_path, int threads, double norm_tolerance) {
  model_ = std::move(model);
  model_path_ = std::move(model_path);
  threads_ = threads;
  norm_tolerance_ = norm_tolerance;
  for (double c : model_->metadata().age_bin_centres) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%gGyr", c);
    labels_.emplace_back(buf);
  }
}

std::string CnnNode::CheckSpectrum(const Spectrum& s) const {
  const auto& md = model_->metadata();
  const std::string src = " (model metadata " + cnn::MetadataPath(model_path_) + ")";
  std::vector<std::string> diffs;
  const double step = md.wave.cdelt;
  if (s.wave.log != md.wave.log)
    diffs.push_back(std::string("axis is ") + (s.wave.log ? "logarithmic" : "linear") + ", model's is " +
                    (md.wave.log ? "logarithmic" : "linear"));
  if (s.wave.n != md.wave.n) diffs.push_back("n = " + std::to_string(s.wave.n) + " pixels, model has " + std::to_string(md.wave.n));
  const double start = s.wave.crval + (1.0 - s.wave.crpix) * s.wave.cdelt;
  const double mstart = md.wave.crval + (1.0 - md.wave.crpix) * md.wave.cdelt;
  if (std::abs(start - mstart) > 0.01 * std::abs(step))
    diffs.push_back("start = " + Num(start) + " A, model's is " + Num(mstart) + " A");
  if (std::abs(s.wave.cdelt - step) * std::max<int64_t>(md.wave.n, 1) > 0.01 * std::abs(step))
    diffs.push_back("step = " + Num(s.wave.cdelt) + " A, model's is " + Num(step) + " A");
  if (s.wave.air != md.wave.air)
    diffs.push_back(std::string("wavelengths are ") + (s.wave.air ? "air" : "vacuum") + ", model's are " +
                    (md.wave.air ? "air" : "vacuum"));
  if (!diffs.empty()) {
    std::string msg = "inference.cnn: spectrum of bin " + std::to_string(s.id) + ": wavelength grid differs from the model's" + src + ": ";
    for (size_t i = 0; i < diffs.size(); ++i) msg += (i ? "; " : "") + diffs[i];
    return msg + ". Resample the spectra to start " + Num(mstart) + " A, step " + Num(step) + " A, " +
           std::to_string(md.wave.n) + " pixels (spectral.restframe)";
  }
  if (md.rest_frame && !s.rest_frame)
    return "inference.cnn: spectrum of bin " + std::to_string(s.id) +
           " is not in the rest frame (rest_frame = false) but the model expects rest-frame spectra" + src +
           ": put spectral.restframe before inference.cnn";
  auto meta_norm_min = s.meta.find("norm_min"), meta_norm_max = s.meta.find("norm_max");
  if (meta_norm_min != s.meta.end() && meta_norm_max != s.meta.end() &&
      (std::abs(meta_norm_min->second - md.norm_min) > 1.0 || std::abs(meta_norm_max->second - md.norm_max) > 1.0))
    return "inference.cnn: spectrum of bin " + std::to_string(s.id) + ": normalisation window " +
           Num(meta_norm_min->second) + "-" + Num(meta_norm_max->second) + " A, model's is " + Num(md.norm_min) + "-" +
           Num(md.norm_max) + " A" + src;
  // The mean flux in the normalisation window must be 1 (the spectrum was divided by it).
  double sum = 0;
  int64_t cnt = 0;
  for (int64_t k = 0; k < s.wave.n && k < static_cast<int64_t>(s.flux.size()); ++k) {
    const double w = s.wave.At(k);
    if (w < md.norm_min || w > md.norm_max) continue;
    if (!s.mask.empty() && s.mask[k]) continue;
    if (!std::isfinite(s.flux[k])) continue;
    sum += s.flux[k];
    ++cnt;
  }
  if (cnt > 0) {
    const double mean = sum / cnt;
    if (std::abs(mean - 1.0) > norm_tolerance_)
      return "inference.cnn: spectrum of bin " + std::to_string(s.id) + ": mean flux in the normalisation window " +
             Num(md.norm_min) + "-" + Num(md.norm_max) + " A is " + Num(mean) +
             ", expected 1 (the model was trained on spectra divided by their mean flux there" + src +
             "): normalise the spectra (spectral.restframe)";
  }
  return "";
}

std::string CnnNode::CheckPhotometry(const Photometry& p, std::vector<int>& order) const {
  const auto& md = model_->metadata();
  order.assign(md.bands.size(), -1);
  std::vector<std::string> missing;
  for (size_t b = 0; b < md.bands.size(); ++b) {
    auto it = std::find(p.bands.begin(), p.bands.end(), md.bands[b]);
    if (it == p.bands.end()) {
      missing.push_back(md.bands[b]);
      continue;
    }
    order[b] = static_cast<int>(it - p.bands.begin());
  }
  const std::string src = " (model metadata " + cnn::MetadataPath(model_path_) + ")";
  if (!missing.empty())
    return "inference.cnn: photometry of bin " + std::to_string(p.id) + " lacks band(s) " + Join(missing) +
           ": it has " + Join(p.bands) + ", the model needs " + Join(md.bands) + src;
  if (p.flux.size() != p.bands.size())
    return "inference.cnn: photometry of bin " + std::to_string(p.id) + " has " + std::to_string(p.flux.size()) +
           " fluxes for " + std::to_string(p.bands.size()) + " bands";
  for (size_t b = 0; b < md.bands.size(); ++b) {
    if (b >= md.pivots.size() || static_cast<size_t>(order[b]) >= p.pivot.size()) continue;
    const double mp = md.pivots[b], pp = p.pivot[order[b]];
    if (mp > 0 && pp > 0 && std::abs(pp / mp - 1.0) > 0.01)
      return "inference.cnn: photometry of bin " + std::to_string(p.id) + ": band " + md.bands[b] + " has pivot " +
             Num(pp) + " A, model's is " + Num(mp) + " A" + src;
  }
  return "";
}

void CnnNode::Process(ProcessContext& ctx) {
  const auto& md = model_->metadata();
  const size_t n = ctx.size();
  const int64_t nw = md.arch.nwave, nb = md.arch.nbands;
  if (nb > 0 && !ctx.Connected("photometry"))
    throw Error("inference.cnn: model " + model_path_ + " uses photometry in bands " + Join(md.bands) +
                ": connect the 'photometry' input");
  if (nb == 0 && ctx.Connected("photometry") && !warned_unused_phot_) {
    warned_unused_phot_ = true;
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
    float* d = spec.data() + i * nw;
    int64_t bad = 0, last_good = -1;
    for (int64_t k = 0; k < nw; ++k) {
      const double v = k < static_cast<int64_t>(s->flux.size()) ? s->flux[k] : NAN;
      const bool good = std::isfinite(v) && (s->mask.empty() || !s->mask[k]);
      if (!good) { ++bad; continue; }
      d[k] = static_cast<float>(v);
      if (last_good < k - 1) {  // fill the gap (last_good, k)
        const double a = last_good >= 0 ? d[last_good] : v;
        for (int64_t g = last_good + 1; g < k; ++g)
          d[g] = static_cast<float>(last_good >= 0 ? a + (v - a) * (g - last_good) / double(k - last_good) : v);
      }
      last_good = k;
    }
    if (last_good >= 0)
      for (int64_t g = last_good + 1; g < nw; ++g) d[g] = d[last_good];
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
  const int threads = threads_ > 0 ? threads_ : ctx.threads();
  Status st = model_->Predict(spec.data(), nb > 0 ? phot.data() : nullptr, static_cast<int64_t>(n), mf.data(),
                              zh.data(), threads, static_cast<int64_t>(n));
  if (!st.ok()) throw Error("inference.cnn: " + st.message());
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

void RegisterNodes(Registry& r) {
  r.Add<CnnNode>();
  RegisterSbiNodes(r);
}

}  // namespace cubeflow::inference

CUBEFLOW_PLUGIN(inference, "0.1.0", cubeflow::inference::RegisterNodes)
