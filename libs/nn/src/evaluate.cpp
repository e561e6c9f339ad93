// `cubeflow evaluate MODEL LIBRARY`: the figures of merit of Galceran et al. (2026) sec. 4 for a
// CNN on a simulated test library: bias and scatter of the eq. 6-7 means (Fig. 5), the mean
// relative SFR error per age bin (Fig. 4), bias and scatter versus S/N (Fig. 8) and the
// permutation ablation of bands and spectral windows (sec. 4.3). docs/cnn.md describes the
// options and outputs.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cubeflow/atomic_file.hpp"
#include "cubeflow/nn/commands.hpp"
#include "cubeflow/nn/eval_figures.hpp"
#include "cubeflow/nn/train.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/spectral/stats.hpp"
#include "cubeflow/strings.hpp"
#include "command_args.hpp"
#include "json_text.hpp"
#include "train_common.hpp"

namespace cubeflow::cnn {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const char* const kQuantities[4] = {"lw_logage", "mw_logage", "lw_zh", "mw_zh"};

struct EvalOptions {
  std::string model, library;
  int64_t rows = -1, first = 0;
  int threads = 0;
  uint64_t seed = 1;
  std::vector<double> snr_levels;     // --snr: re-noise a noise-free library at these S/N
  double phot_snr = 50;               // photometric S/N when re-noising
  std::vector<std::string> ablations; // --ablate specs
  std::string out_dir, json, csv;
  bool help = false;                  // -h / --help
};

struct Stats {
  double bias = kNaN, median = kNaN, scatter = kNaN, p16 = kNaN, p84 = kNaN;
  // skill against the trivial baseline (issue #15): R^2, Spearman's rank correlation, and the
  // scatter of the best constant predictor (the truths' standard deviation)
  double r2 = kNaN, spearman = kNaN, constant_scatter = kNaN;
  int64_t n = 0;
};

Stats Summarise(const std::vector<double>& v_in) {
  std::vector<double> v;
  v.reserve(v_in.size());
  for (double x : v_in) if (std::isfinite(x)) v.push_back(x);
  Stats s;
  s.n = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  s.bias = mean;
  s.scatter = v.size() > 1 ? std::sqrt(ss / (v.size() - 1)) : 0.0;
  std::sort(v.begin(), v.end());
  auto q = [&](double p) {
    const double pos = p * (v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (pos - lo) * (v[hi] - v[lo]);
  };
  s.median = q(0.5);
  s.p16 = q(0.16);
  s.p84 = q(0.84);
  return s;
}

struct Predictions {
  std::vector<float> mf, zh;            // n x 16
  std::vector<WeightedMeans> means;     // n
  double seconds = 0;
};

Result<Predictions> PredictAll(const CnnModel& model, const sim::LibraryData& lib, int threads) {
  const auto& md = model.metadata();
  const int64_t n = lib.n;
  Predictions p;
  p.mf.resize(n * kNumBins);
  p.zh.resize(n * kNumBins);
  p.means.resize(n);
  std::vector<float> spec, phot;
  const int64_t chunk = 2048;
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t cnt = std::min(chunk, n - first);
    std::vector<int64_t> rows(cnt);
    std::iota(rows.begin(), rows.end(), first);
    GatherInputs(lib, rows, md.arch.nbands, spec, phot);
    const auto t0 = std::chrono::steady_clock::now();
    CUBEFLOW_RETURN_NOT_OK(model.Predict(spec.data(), phot.data(), cnt, p.mf.data() + first * kNumBins,
                                         p.zh.data() + first * kNumBins, threads));
    p.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  for (int64_t i = 0; i < n; ++i)
    p.means[i] = ComputeWeightedMeans(md, p.mf.data() + i * kNumBins, p.zh.data() + i * kNumBins);
  return p;
}

/// Bias, median, scatter and percentiles of truth - prediction, and the skill, for the four means.
using QuantityStats = std::array<Stats, 4>;

QuantityStats Compare(const std::vector<WeightedMeans>& truth, const std::vector<WeightedMeans>& pred) {
  std::vector<double> d[4], t[4], p[4];
  for (size_t i = 0; i < truth.size(); ++i) {
    const double tv[4] = {truth[i].lw_logage, truth[i].mw_logage, truth[i].lw_zh, truth[i].mw_zh};
    const double pv[4] = {pred[i].lw_logage, pred[i].mw_logage, pred[i].lw_zh, pred[i].mw_zh};
    for (int q = 0; q < 4; ++q) {
      d[q].push_back(tv[q] - pv[q]);
      t[q].push_back(tv[q]);
      p[q].push_back(pv[q]);
    }
  }
  QuantityStats s;
  for (int q = 0; q < 4; ++q) {
    s[q] = Summarise(d[q]);
    const spectral::Skill sk = spectral::SkillOf(t[q], p[q]);
    s[q].r2 = sk.r2;
    s[q].spearman = sk.spearman;
    s[q].constant_scatter = sk.constant_scatter;
  }
  return s;
}

/// \brief A library with some inputs replaced, and what was replaced.
struct Ablation {
  sim::LibraryData lib;
  std::string label;
};

/// Permutation ablation (sec. 4.3): the selected inputs of every object are replaced by the
/// values of randomly drawn other objects (independently per band and per pixel), which keeps
/// the library's marginal distribution of those inputs but removes their information.
Result<Ablation> Ablate(const sim::LibraryData& lib, const std::string& spec, uint64_t seed) {
  Ablation out{lib, ""};
  std::mt19937_64 rng(seed ^ std::hash<std::string>{}(spec));
  std::uniform_int_distribution<int64_t> pick(0, lib.n - 1);
  const int64_t nw = lib.wave.n, nb = static_cast<int64_t>(lib.bands.size());
  auto permute_band = [&](int64_t b) {
    for (int64_t i = 0; i < lib.n; ++i) out.lib.photometry[i * nb + b] = lib.photometry[pick(rng) * nb + b];
  };
  if (spec == "bands") {
    if (nb == 0) return Status::Error("--ablate bands: the library has no photometry");
    for (int64_t b = 0; b < nb; ++b) permute_band(b);
    out.label = "all bands";
    return out;
  }
  if (spec.rfind("band:", 0) == 0) {
    const std::string name = spec.substr(5);
    auto it = std::find(lib.bands.begin(), lib.bands.end(), name);
    if (it == lib.bands.end())
      return Status::Error("--ablate " + spec + ": no band '" + name + "' in the library (bands: " +
                           Join(lib.bands, ", ", "none") + ")");
    permute_band(it - lib.bands.begin());
    out.label = "band " + name;
    return out;
  }
  if (spec.rfind("window:", 0) == 0) {
    double w0 = 0, w1 = 0;
    char sep = 0;
    std::istringstream is(spec.substr(7));
    if (!(is >> w0 >> sep >> w1) || (sep != ':' && sep != '-') || w1 <= w0)
      return Status::Error("--ablate " + spec + ": expected window:LO:HI in Angstrom, e.g. window:4800:5000");
    int64_t used = 0;
    for (int64_t k = 0; k < nw; ++k) {
      const double w = lib.wave.At(k);
      if (w < w0 || w >= w1) continue;
      ++used;
      for (int64_t i = 0; i < lib.n; ++i) out.lib.spectra[i * nw + k] = lib.spectra[pick(rng) * nw + k];
    }
    if (used == 0)
      return Status::Error("--ablate " + spec + ": the window does not overlap the library's wavelength grid");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f-%.0f A", w0, w1);
    out.label = buf;
    return out;
  }
  return Status::Error("--ablate " + spec + ": expected band:NAME, bands, window:LO:HI or standard");
}

/// The --ablate specifications with `standard` expanded: each band, all bands, 200 A windows.
std::vector<std::string> ExpandAblations(const std::vector<std::string>& specs, const sim::LibraryData& lib) {
  std::vector<std::string> out;
  for (const auto& a : specs) {
    if (a != "standard") {
      out.push_back(a);
      continue;
    }
    for (const auto& b : lib.bands) out.push_back("band:" + b);
    if (!lib.bands.empty()) out.push_back("bands");
    const double w_lo = lib.wave.At(0), w_hi = lib.wave.At(lib.wave.n - 1);
    for (double w = std::floor(w_lo / 100) * 100; w < w_hi; w += 200) {
      char buf[48];
      std::snprintf(buf, sizeof buf, "window:%.0f:%.0f", w, w + 200);
      out.push_back(buf);
    }
  }
  return out;
}

/// Fig. 4: mean (true - predicted) mass fraction per age bin over the mean true fraction.
evalfig::AgeBinErrors AgeBinErrorsOf(const CnnMetadata& md, const sim::LibraryData& lib, const Predictions& p) {
  evalfig::AgeBinErrors b;
  b.age_gyr.assign(md.age_bin_centres.begin(), md.age_bin_centres.end());
  b.rel_error.resize(kNumBins);
  b.rel_sd.resize(kNumBins);
  b.mean_true.resize(kNumBins);
  b.mean_pred.resize(kNumBins);
  for (int j = 0; j < kNumBins; ++j) {
    double st = 0, sp = 0, sd = 0, sd2 = 0;
    for (int64_t i = 0; i < lib.n; ++i) {
      const double t = lib.mass_frac[i * kNumBins + j], pr = p.mf[i * kNumBins + j];
      st += t; sp += pr; sd += t - pr; sd2 += (t - pr) * (t - pr);
    }
    const double n = static_cast<double>(lib.n);
    b.mean_true[j] = st / n;
    b.mean_pred[j] = sp / n;
    const double mean_d = sd / n, sd_d = std::sqrt(std::max(0.0, sd2 / n - mean_d * mean_d));
    b.rel_error[j] = b.mean_true[j] > 0 ? mean_d / b.mean_true[j] : kNaN;
    b.rel_sd[j] = b.mean_true[j] > 0 ? sd_d / b.mean_true[j] : kNaN;
  }
  return b;
}

/// \brief The figures of one modified copy of the library (re-noised at an S/N, or ablated).
struct VariantRow {
  double snr = 0;     ///< S/N sweep
  std::string label;  ///< ablation
  QuantityStats s;
};

/// \brief Everything `cubeflow evaluate` computes, for its report, tables, figures and JSON.
struct Evaluation {
  const EvalOptions& o;
  const CnnModel& model;
  const sim::LibraryData& lib;
  bool noise_free = false;
  std::vector<WeightedMeans> truth;  ///< per object
  Predictions base;
  QuantityStats base_s;
  evalfig::AgeBinErrors bins;
  std::vector<VariantRow> snr_rows, abl_rows;
};

/// Step 1: the model and the selected library rows, checked against each other and the options.
Status CheckInputs(const EvalOptions& o, const CnnModel& model, const sim::LibraryData& lib, bool noise_free) {
  if (lib.n == 0) return Status::Error(o.library + " has no objects in the selected rows");
  const auto& md = model.metadata();
  Status st = nn::CheckLibraryFitsModel(lib, md.arch.nwave, md.bands);
  if (!st.ok()) return Status::Error(o.library + ": " + st.message());
  if (!o.snr_levels.empty() && !noise_free)
    return Status::Error("--snr needs a noise-free library (its objects already carry noise): simulate one with "
                         "`cubeflow simulate library --config C` where C sets `noise: {enabled: false}`");
  return Status::OK();
}

/// Step 2: predictions on the library as it is, per object and summarised.
Status EvaluateBase(Evaluation& e) {
  const auto& md = e.model.metadata();
  e.truth.resize(e.lib.n);
  for (int64_t i = 0; i < e.lib.n; ++i) e.truth[i] = TrueWeightedMeans(md, e.lib, i);
  std::fprintf(stderr, "cubeflow evaluate: %lld objects from %s%s\n", static_cast<long long>(e.lib.n),
               e.o.library.c_str(), e.noise_free ? " (noise-free)" : "");
  CUBEFLOW_ASSIGN_OR_RETURN(e.base, PredictAll(e.model, e.lib, e.o.threads));
  e.base_s = Compare(e.truth, e.base.means);
  e.bins = AgeBinErrorsOf(md, e.lib, e.base);
  return Status::OK();
}

/// Step 3: Fig. 8, the library re-noised at each --snr.
Status EvaluateSnrSweep(Evaluation& e) {
  for (double snr : e.o.snr_levels) {
    std::fprintf(stderr, "cubeflow evaluate: S/N %g\n", snr);
    const sim::LibraryData noisy =
        NoisyCopy(e.lib, {}, {snr}, e.o.phot_snr, e.o.seed * 1000003ull + std::lround(snr * 100));
    CUBEFLOW_ASSIGN_OR_RETURN(Predictions p, PredictAll(e.model, noisy, e.o.threads));
    e.snr_rows.push_back({snr, "", Compare(e.truth, p.means)});
  }
  return Status::OK();
}

/// Step 4: sec. 4.3, the permutation ablations.
Status EvaluateAblations(Evaluation& e) {
  for (const auto& spec : ExpandAblations(e.o.ablations, e.lib)) {
    CUBEFLOW_ASSIGN_OR_RETURN(Ablation ab, Ablate(e.lib, spec, e.o.seed));
    std::fprintf(stderr, "cubeflow evaluate: ablation %s\n", ab.label.c_str());
    CUBEFLOW_ASSIGN_OR_RETURN(Predictions p, PredictAll(e.model, ab.lib, e.o.threads));
    e.abl_rows.push_back({0, ab.label, Compare(e.truth, p.means)});
  }
  return Status::OK();
}

/// A table with one row per variant: its label (printed with `label_format`, a %s) and two
/// numbers per quantity (`value_format`).
void AppendVariantTable(std::ostringstream& report, const std::string& title, const char* label_format,
                        const char* first_header, const std::vector<VariantRow>& rows, const char* value_format,
                        const std::function<std::string(const VariantRow&)>& label,
                        const std::function<std::pair<double, double>(const VariantRow&, int)>& values) {
  char line[256];
  report << "\n" << title << "\n";
  std::snprintf(line, sizeof line, label_format, first_header);
  report << line;
  for (int q = 0; q < 4; ++q) {
    std::snprintf(line, sizeof line, " %21s", kQuantities[q]);
    report << line;
  }
  report << "\n";
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, label_format, label(r).c_str());
    report << line;
    for (int q = 0; q < 4; ++q) {
      const auto [a, b] = values(r, q);
      std::snprintf(line, sizeof line, value_format, a, b);
      report << line;
    }
    report << "\n";
  }
}

/// The text report on stdout.
std::string Report(const Evaluation& e) {
  const auto& md = e.model.metadata();
  std::ostringstream report;
  report << "model   " << e.o.model << "\nlibrary " << e.o.library << "  (" << e.lib.n << " objects"
         << (e.noise_free ? ", noise-free: add --snr for realistic figures" : "") << ")\n\n";
  report << "differences truth - prediction (dex); skill: R2 = 1 - SSE/SST, rho = Spearman rank correlation, "
            "const = scatter of the best constant prediction (the truths' standard deviation)\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-10s %9s %9s %9s %9s %9s %7s %7s %9s %7s\n", "quantity", "bias", "median",
                "scatter", "p16", "p84", "R2", "rho", "const", "n");
  report << line;
  for (int q = 0; q < 4; ++q) {
    const Stats& s = e.base_s[q];
    std::snprintf(line, sizeof line, "%-10s %9.4f %9.4f %9.4f %9.4f %9.4f %7.3f %7.3f %9.4f %7lld\n", kQuantities[q],
                  s.bias, s.median, s.scatter, s.p16, s.p84, s.r2, s.spearman, s.constant_scatter,
                  static_cast<long long>(s.n));
    report << line;
  }
  report << "\nmass fraction per age bin: mean (true - predicted) / mean true (paper Fig. 4)\n";
  std::snprintf(line, sizeof line, "%-10s %10s %10s %10s %10s\n", "age (Gyr)", "mean true", "mean pred", "rel. err",
                "rel. sd");
  report << line;
  for (int j = 0; j < kNumBins; ++j) {
    std::snprintf(line, sizeof line, "%-10.4g %10.4f %10.4f %10.4f %10.4f\n", md.age_bin_centres[j],
                  e.bins.mean_true[j], e.bins.mean_pred[j], e.bins.rel_error[j], e.bins.rel_sd[j]);
    report << line;
  }
  if (!e.snr_rows.empty())
    AppendVariantTable(
        report, "versus S/N per pixel (paper Fig. 8): median and scatter of truth - prediction (dex)", "%-6s", "S/N",
        e.snr_rows, " %+10.4f %10.4f", [](const VariantRow& r) { return Num(r.snr); },
        [](const VariantRow& r, int q) { return std::make_pair(r.s[q].median, r.s[q].scatter); });
  if (!e.abl_rows.empty())
    AppendVariantTable(
        report, "ablation (inputs replaced by draws from the library): change in bias and scatter (dex)", "%-16s",
        "replaced", e.abl_rows, " %+10.4f %+10.4f", [](const VariantRow& r) { return r.label; },
        [&](const VariantRow& r, int q) {
          return std::make_pair(r.s[q].bias - e.base_s[q].bias, r.s[q].scatter - e.base_s[q].scatter);
        });
  std::snprintf(line, sizeof line, "\nthroughput %.0f spectra/s (network only, %d threads requested)\n",
                e.base.seconds > 0 ? e.lib.n / e.base.seconds : 0.0, e.o.threads);
  report << line;
  return report.str();
}

/// Per object: S/N and true and predicted means.
std::string ObjectsCsv(const Evaluation& e) {
  std::ostringstream c;
  c << "row,snr,lw_logage_true,lw_logage_pred,mw_logage_true,mw_logage_pred,lw_zh_true,lw_zh_pred,mw_zh_true,"
       "mw_zh_pred\n";
  for (int64_t i = 0; i < e.lib.n; ++i) {
    const auto& t = e.truth[i];
    const auto& p = e.base.means[i];
    c << e.o.first + i << "," << (e.lib.snr.empty() ? 0.0 : e.lib.snr[i]) << "," << t.lw_logage << "," << p.lw_logage
      << "," << t.mw_logage << "," << p.mw_logage << "," << t.lw_zh << "," << p.lw_zh << "," << t.mw_zh << ","
      << p.mw_zh << "\n";
  }
  return c.str();
}

/// --out: the CSV tables.
Status WriteTables(const Evaluation& e, const std::string& d) {
  const auto& md = e.model.metadata();
  std::ostringstream sum, bins, snr, abl;
  sum << "quantity,bias,median,scatter,p16,p84,r2,spearman,constant_scatter,n\n";
  for (int q = 0; q < 4; ++q) {
    const Stats& s = e.base_s[q];
    sum << kQuantities[q] << "," << s.bias << "," << s.median << "," << s.scatter << "," << s.p16 << "," << s.p84
        << "," << s.r2 << "," << s.spearman << "," << s.constant_scatter << "," << s.n << "\n";
  }
  bins << "age_gyr,mean_true,mean_pred,rel_error,rel_sd\n";
  for (int j = 0; j < kNumBins; ++j)
    bins << md.age_bin_centres[j] << "," << e.bins.mean_true[j] << "," << e.bins.mean_pred[j] << ","
         << e.bins.rel_error[j] << "," << e.bins.rel_sd[j] << "\n";
  snr << "snr,quantity,bias,median,scatter,p16,p84,n\n";
  for (const auto& r : e.snr_rows)
    for (int q = 0; q < 4; ++q)
      snr << r.snr << "," << kQuantities[q] << "," << r.s[q].bias << "," << r.s[q].median << "," << r.s[q].scatter
          << "," << r.s[q].p16 << "," << r.s[q].p84 << "," << r.s[q].n << "\n";
  abl << "replaced,quantity,bias,scatter,delta_bias,delta_scatter\n";
  for (const auto& r : e.abl_rows)
    for (int q = 0; q < 4; ++q)
      abl << r.label << "," << kQuantities[q] << "," << r.s[q].bias << "," << r.s[q].scatter << ","
          << r.s[q].bias - e.base_s[q].bias << "," << r.s[q].scatter - e.base_s[q].scatter << "\n";
  std::vector<std::pair<std::string, std::string>> files = {
      {"summary.csv", sum.str()}, {"sfr_age_bins.csv", bins.str()}, {"objects.csv", ObjectsCsv(e)}};
  if (!e.snr_rows.empty()) files.emplace_back("snr.csv", snr.str());
  if (!e.abl_rows.empty()) files.emplace_back("ablation.csv", abl.str());
  for (const auto& [name, text] : files) CUBEFLOW_RETURN_NOT_OK(WriteFileAtomic(d + name, text));
  std::fprintf(stderr, "cubeflow evaluate: tables written to %s\n", e.o.out_dir.c_str());
  return Status::OK();
}

/// --out: Fig. 5, Fig. 4 and, after an S/N sweep, Fig. 8 (docs/cnn.md). Returns the file names.
Result<std::vector<std::string>> WriteFigures(const Evaluation& e, const std::string& d) {
  namespace fs = std::filesystem;
  char sub[512];
  std::snprintf(sub, sizeof sub, "%s on %s: %lld objects (rows %lld-%lld)%s",
                fs::path(e.o.model).filename().string().c_str(), fs::path(e.o.library).filename().string().c_str(),
                static_cast<long long>(e.lib.n), static_cast<long long>(e.o.first),
                static_cast<long long>(e.o.first + e.lib.n - 1), e.noise_free ? ", noise-free" : "");
  const std::string subtitle = sub;
  std::vector<std::string> figures;
  const char* titles[4] = {"LW log age", "MW log age", "LW [Z/H]", "MW [Z/H]"};
  std::vector<evalfig::TruthPrediction> panels(4);
  for (int q = 0; q < 4; ++q) {
    auto& p = panels[q];
    p.title = titles[q];
    p.quantity = q < 2 ? "log_{10}(age/yr)" : "[Z/H] (dex)";
    for (int64_t i = 0; i < e.lib.n; ++i) {
      const WeightedMeans& t = e.truth[i];
      const WeightedMeans& m = e.base.means[i];
      const double tv[4] = {t.lw_logage, t.mw_logage, t.lw_zh, t.mw_zh};
      const double pv[4] = {m.lw_logage, m.mw_logage, m.lw_zh, m.mw_zh};
      p.truth.push_back(tv[q]);
      p.predicted.push_back(pv[q]);
    }
    char ann[160];
    std::snprintf(ann, sizeof ann, "bias = %+.3f dex\nσ = %.3f dex\nR^{2} = %.3f\nN = %lld", e.base_s[q].bias,
                  e.base_s[q].scatter, e.base_s[q].r2, static_cast<long long>(e.base_s[q].n));
    p.annotation = ann;
    p.empty_note = q == 0 || q == 2 ? "no light-weighted truth: the library has no LIGHT_FRAC" : "no finite values";
  }
  CUBEFLOW_RETURN_NOT_OK(evalfig::WriteTruthVsPrediction(d + "pred_vs_true.png",
                                                         "Predicted versus true eq. 6-7 means (paper Fig. 5)\n" +
                                                             subtitle +
                                                             "\nbias = mean(true − predicted), σ = standard "
                                                             "deviation; red: 1:1",
                                                         panels, 2)
                             .status());
  figures.push_back("pred_vs_true.png");
  CUBEFLOW_RETURN_NOT_OK(
      evalfig::WriteAgeBinErrors(d + "sfr_age_bins.png", "Mass fraction per age bin (paper Fig. 4)\n" + subtitle,
                                 e.bins)
          .status());
  figures.push_back("sfr_age_bins.png");
  if (!e.snr_rows.empty()) {
    std::vector<double> levels;
    for (const auto& r : e.snr_rows) levels.push_back(r.snr);
    const char* labels[4] = {"LW", "MW", "LW", "MW"};
    std::vector<evalfig::SnrQuantity> qs(4);
    for (int q = 0; q < 4; ++q) {
      qs[q].label = labels[q];
      qs[q].age = q < 2;
      for (const auto& r : e.snr_rows) {
        qs[q].bias.push_back(r.s[q].bias);
        qs[q].scatter.push_back(r.s[q].scatter);
      }
    }
    char ph[64];
    std::snprintf(ph, sizeof ph, ", photometric S/N %g", e.o.phot_snr);
    CUBEFLOW_RETURN_NOT_OK(evalfig::WriteSnrTrends(d + "snr.png",
                                                   "Bias and scatter versus S/N (paper Fig. 8)\n" + subtitle +
                                                       "\nnoise added to every object at each S/N" + ph,
                                                   levels, qs, "bias: mean(true − predicted)")
                               .status());
    figures.push_back("snr.png");
  }
  return figures;
}

/// --json: the figures machine-readably.
std::string Json(const Evaluation& e) {
  using nn::JsonNum;
  using nn::JsonString;
  const auto& md = e.model.metadata();
  std::ostringstream j;
  j << "{\n  \"model\": " << JsonString(e.o.model) << ",\n  \"library\": " << JsonString(e.o.library)
    << ",\n  \"n\": " << e.lib.n << ",\n  \"convention\": \"truth minus prediction, dex; scatter = standard deviation\"";
  for (int q = 0; q < 4; ++q)
    j << ",\n  \"" << kQuantities[q] << "_bias\": " << JsonNum(e.base_s[q].bias) << ", \"" << kQuantities[q]
      << "_median\": " << JsonNum(e.base_s[q].median) << ", \"" << kQuantities[q]
      << "_scatter\": " << JsonNum(e.base_s[q].scatter) << ", \"" << kQuantities[q]
      << "_r2\": " << JsonNum(e.base_s[q].r2) << ", \"" << kQuantities[q]
      << "_spearman\": " << JsonNum(e.base_s[q].spearman) << ", \"" << kQuantities[q]
      << "_constant_scatter\": " << JsonNum(e.base_s[q].constant_scatter);
  j << ",\n  \"sfr_rel_error\": [";
  for (int k = 0; k < kNumBins; ++k) j << (k ? ", " : "") << JsonNum(e.bins.rel_error[k]);
  j << "],\n  \"age_bin_centres_gyr\": [";
  for (int k = 0; k < kNumBins; ++k) j << (k ? ", " : "") << JsonNum(md.age_bin_centres[k]);
  j << "],\n  \"snr\": [";
  for (size_t r = 0; r < e.snr_rows.size(); ++r) {
    j << (r ? ",\n    " : "\n    ") << "{\"snr\": " << JsonNum(e.snr_rows[r].snr);
    for (int q = 0; q < 4; ++q)
      j << ", \"" << kQuantities[q] << "_bias\": " << JsonNum(e.snr_rows[r].s[q].bias) << ", \"" << kQuantities[q]
        << "_median\": " << JsonNum(e.snr_rows[r].s[q].median) << ", \"" << kQuantities[q]
        << "_scatter\": " << JsonNum(e.snr_rows[r].s[q].scatter) << ", \"" << kQuantities[q]
        << "_r2\": " << JsonNum(e.snr_rows[r].s[q].r2);
    j << "}";
  }
  j << "],\n  \"ablation\": [";
  for (size_t r = 0; r < e.abl_rows.size(); ++r) {
    const auto& row = e.abl_rows[r];
    j << (r ? ",\n    " : "\n    ") << "{\"replaced\": " << JsonString(row.label);
    for (int q = 0; q < 4; ++q)
      j << ", \"" << kQuantities[q] << "_delta_bias\": " << JsonNum(row.s[q].bias - e.base_s[q].bias) << ", \""
        << kQuantities[q] << "_delta_scatter\": " << JsonNum(row.s[q].scatter - e.base_s[q].scatter);
    j << "}";
  }
  j << "],\n  \"spectra_per_s\": " << JsonNum(e.base.seconds > 0 ? e.lib.n / e.base.seconds : kNaN) << "\n}\n";
  return j.str();
}

constexpr const char* kUsage =
    "usage: cubeflow evaluate MODEL LIBRARY [options]\n"
    "  --rows N          use N objects (default: all)      --first N   skip the first N objects\n"
    "  --threads N       libtorch threads (default: libtorch's)\n"
    "  --snr LIST        also evaluate at these S/N (e.g. 5,10,20,35,50,100) by adding noise to a\n"
    "                    noise-free library (simulate it with noise: {enabled: false})\n"
    "  --phot-snr X      photometric S/N used with --snr (default 50)\n"
    "  --ablate SPEC     permutation test; SPEC = band:NAME | bands | window:LO:HI | standard\n"
    "                    (each band, all bands and 200 A windows); repeatable\n"
    "  --seed N          seed of the added noise and permutations (default 1)\n"
    "  --out DIR         write CSV tables (summary, per age bin, per S/N, ablation, objects) and\n"
    "                    PNG figures (predicted vs true, age-bin errors, bias/scatter vs S/N)\n"
    "  --json FILE       write the figures machine-readably\n"
    "  --csv FILE        write per-object true and predicted means\n";

Result<EvalOptions> ParseArgs(int argc, char** argv) {
  EvalOptions o;
  std::vector<std::string> pos;
  nn::ArgReader args(argc, argv);
  while (args.Next()) {
    const std::string a = args.arg();
    if (a == "--rows") CUBEFLOW_RETURN_NOT_OK(args.Integer(&o.rows));
    else if (a == "--first") CUBEFLOW_RETURN_NOT_OK(args.Integer(&o.first));
    else if (a == "--threads") CUBEFLOW_RETURN_NOT_OK(args.Integer(&o.threads));
    else if (a == "--seed") CUBEFLOW_RETURN_NOT_OK(args.Unsigned(&o.seed));
    else if (a == "--phot-snr") CUBEFLOW_RETURN_NOT_OK(args.Number(&o.phot_snr));
    else if (a == "--snr") CUBEFLOW_RETURN_NOT_OK(args.PositiveList(&o.snr_levels, "5,10,20,35,50,100"));
    else if (a == "--ablate") { CUBEFLOW_ASSIGN_OR_RETURN(std::string v, args.Value()); o.ablations.push_back(v); }
    else if (a == "--out") { CUBEFLOW_ASSIGN_OR_RETURN(o.out_dir, args.Value()); }
    else if (a == "--json") { CUBEFLOW_ASSIGN_OR_RETURN(o.json, args.Value()); }
    else if (a == "--csv") { CUBEFLOW_ASSIGN_OR_RETURN(o.csv, args.Value()); }
    else if (a == "-h" || a == "--help") o.help = true;
    else if (args.IsOption()) return Status::Error("unknown option " + a);
    else pos.push_back(a);
  }
  if (o.help) return o;
  if (pos.size() != 2) return Status::Error(pos.size() < 2 ? "MODEL and LIBRARY are required" : "too many arguments");
  o.model = pos[0];
  o.library = pos[1];
  return o;
}

/// The evaluation and its outputs; errors as values.
Status RunEvaluation(const EvalOptions& o) {
  CUBEFLOW_ASSIGN_OR_RETURN(auto model, CnnModel::Load(o.model));
  CUBEFLOW_ASSIGN_OR_RETURN(const sim::LibraryData lib, sim::ReadLibrary(o.library, o.first, o.rows));
  // A noise-free library has S/N 0 for every object (SNRLIST = 'none' in its header).
  const bool noise_free =
      !lib.snr.empty() && std::all_of(lib.snr.begin(), lib.snr.end(), [](float s) { return !(s > 0); });
  CUBEFLOW_RETURN_NOT_OK(CheckInputs(o, *model, lib, noise_free));
  Evaluation e{o, *model, lib, noise_free, {}, {}, {}, {}, {}, {}};
  CUBEFLOW_RETURN_NOT_OK(EvaluateBase(e));
  CUBEFLOW_RETURN_NOT_OK(EvaluateSnrSweep(e));
  CUBEFLOW_RETURN_NOT_OK(EvaluateAblations(e));
  std::cout << Report(e) << std::flush;
  if (!o.csv.empty()) CUBEFLOW_RETURN_NOT_OK(WriteFileAtomic(o.csv, ObjectsCsv(e)));
  if (!o.out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    if (ec) return Status::Error("cannot create " + o.out_dir + ": " + ec.message());
    const std::string d = o.out_dir + "/";
    CUBEFLOW_RETURN_NOT_OK(WriteTables(e, d));
    CUBEFLOW_ASSIGN_OR_RETURN(std::vector<std::string> figures, WriteFigures(e, d));
    std::fprintf(stderr, "cubeflow evaluate: figures written to %s: %s\n", o.out_dir.c_str(),
                 Join(figures).c_str());
  }
  if (!o.json.empty()) CUBEFLOW_RETURN_NOT_OK(WriteFileAtomic(o.json, Json(e)));
  return Status::OK();
}

}  // namespace

int EvaluateMain(int argc, char** argv) {
  return nn::RunCommand<EvalOptions>("evaluate", kUsage, ParseArgs(argc, argv), RunEvaluation);
}

}  // namespace cubeflow::cnn
