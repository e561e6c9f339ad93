// `cubeflow evaluate MODEL LIBRARY`: the figures of merit of Galceran et al. (2026) sec. 4 for a
// CNN on a simulated test library: bias and scatter of the eq. 6-7 means (Fig. 5), the mean
// relative SFR error per age bin (Fig. 4), bias and scatter versus S/N (Fig. 8) and the
// permutation ablation of bands and spectral windows (sec. 4.3). docs/cnn.md describes the
// options and outputs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
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
};

/// Differences truth - prediction of the four means, one entry per object.
struct Diffs {
  std::vector<double> d[4];
};

struct Stats {
  double bias = kNaN, median = kNaN, scatter = kNaN, p16 = kNaN, p84 = kNaN;
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

Diffs Differences(const std::vector<WeightedMeans>& truth, const std::vector<WeightedMeans>& pred) {
  Diffs d;
  for (size_t i = 0; i < truth.size(); ++i) {
    d.d[0].push_back(truth[i].lw_logage - pred[i].lw_logage);
    d.d[1].push_back(truth[i].mw_logage - pred[i].mw_logage);
    d.d[2].push_back(truth[i].lw_zh - pred[i].lw_zh);
    d.d[3].push_back(truth[i].mw_zh - pred[i].mw_zh);
  }
  return d;
}

/// Permutation ablation (sec. 4.3): the selected inputs of every object are replaced by the
/// values of randomly drawn other objects (independently per band and per pixel), which keeps
/// the library's marginal distribution of those inputs but removes their information.
Result<sim::LibraryData> Ablate(const sim::LibraryData& lib, const std::string& spec, uint64_t seed,
                                std::string* label) {
  sim::LibraryData out = lib;
  std::mt19937_64 rng(seed ^ std::hash<std::string>{}(spec));
  std::uniform_int_distribution<int64_t> pick(0, lib.n - 1);
  const int64_t nw = lib.wave.n, nb = static_cast<int64_t>(lib.bands.size());
  auto permute_band = [&](int64_t b) {
    for (int64_t i = 0; i < lib.n; ++i) out.photometry[i * nb + b] = lib.photometry[pick(rng) * nb + b];
  };
  if (spec == "bands") {
    if (nb == 0) return Status::Error("--ablate bands: the library has no photometry");
    for (int64_t b = 0; b < nb; ++b) permute_band(b);
    *label = "all bands";
    return out;
  }
  if (spec.rfind("band:", 0) == 0) {
    const std::string name = spec.substr(5);
    auto it = std::find(lib.bands.begin(), lib.bands.end(), name);
    if (it == lib.bands.end()) {
      std::string have;
      for (const auto& b : lib.bands) have += (have.empty() ? "" : ", ") + b;
      return Status::Error("--ablate " + spec + ": no band '" + name + "' in the library (bands: " +
                           (have.empty() ? "none" : have) + ")");
    }
    permute_band(it - lib.bands.begin());
    *label = "band " + name;
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
      for (int64_t i = 0; i < lib.n; ++i) out.spectra[i * nw + k] = lib.spectra[pick(rng) * nw + k];
    }
    if (used == 0)
      return Status::Error("--ablate " + spec + ": the window does not overlap the library's wavelength grid");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f-%.0f A", w0, w1);
    *label = buf;
    return out;
  }
  return Status::Error("--ablate " + spec + ": expected band:NAME, bands, window:LO:HI or standard");
}

std::string JsonNum(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
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
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> Result<std::string> {
      if (i + 1 >= argc) return Status::Error("option " + a + " needs a value");
      return std::string(argv[++i]);
    };
    auto number = [&](double* out) -> Status {
      CUBEFLOW_ASSIGN_OR_RETURN(std::string v, value());
      char* end = nullptr;
      *out = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end) return Status::Error("option " + a + ": '" + v + "' is not a number");
      return Status::OK();
    };
    double x = 0;
    if (a == "--rows") { CUBEFLOW_RETURN_NOT_OK(number(&x)); o.rows = static_cast<int64_t>(x); }
    else if (a == "--first") { CUBEFLOW_RETURN_NOT_OK(number(&x)); o.first = static_cast<int64_t>(x); }
    else if (a == "--threads") { CUBEFLOW_RETURN_NOT_OK(number(&x)); o.threads = static_cast<int>(x); }
    else if (a == "--seed") { CUBEFLOW_RETURN_NOT_OK(number(&x)); o.seed = static_cast<uint64_t>(x); }
    else if (a == "--phot-snr") { CUBEFLOW_RETURN_NOT_OK(number(&o.phot_snr)); }
    else if (a == "--snr") {
      CUBEFLOW_ASSIGN_OR_RETURN(std::string v, value());
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) {
        char* end = nullptr;
        const double s = std::strtod(item.c_str(), &end);
        if (end == item.c_str() || *end || !(s > 0))
          return Status::Error("--snr: '" + item + "' is not a positive number (give e.g. 5,10,20,35,50,100)");
        o.snr_levels.push_back(s);
      }
    } else if (a == "--ablate") {
      CUBEFLOW_ASSIGN_OR_RETURN(std::string v, value());
      o.ablations.push_back(v);
    } else if (a == "--out") { CUBEFLOW_ASSIGN_OR_RETURN(o.out_dir, value()); }
    else if (a == "--json") { CUBEFLOW_ASSIGN_OR_RETURN(o.json, value()); }
    else if (a == "--csv") { CUBEFLOW_ASSIGN_OR_RETURN(o.csv, value()); }
    else if (a == "-h" || a == "--help") return Status::Error("");
    else if (!a.empty() && a[0] == '-') return Status::Error("unknown option " + a);
    else pos.push_back(a);
  }
  if (pos.size() != 2) return Status::Error(pos.size() < 2 ? "MODEL and LIBRARY are required" : "too many arguments");
  o.model = pos[0];
  o.library = pos[1];
  return o;
}

Status WriteText(const std::string& path, const std::string& text) { return WriteFileAtomic(path, text); }

}  // namespace

int EvaluateMain(int argc, char** argv) {
  auto opts_r = ParseArgs(argc, argv);
  if (!opts_r.ok()) {
    if (!opts_r.status().message().empty()) std::cerr << "cubeflow evaluate: " << opts_r.status().message() << "\n";
    std::cerr << kUsage;
    return 2;
  }
  EvalOptions o = *opts_r;
  auto fail = [](const std::string& msg) {
    std::cerr << "cubeflow evaluate: " << msg << "\n";
    return 1;
  };
  auto model_r = CnnModel::Load(o.model);
  if (!model_r.ok()) return fail(model_r.status().message());
  const CnnModel& model = **model_r;
  const auto& md = model.metadata();
  auto lib_r = sim::ReadLibrary(o.library, o.first, o.rows);
  if (!lib_r.ok()) return fail(lib_r.status().message());
  const sim::LibraryData& lib = *lib_r;
  if (lib.n == 0) return fail(o.library + " has no objects in the selected rows");
  if (lib.wave.n != md.arch.nwave)
    return fail(o.library + ": spectra have " + std::to_string(lib.wave.n) + " pixels, the model expects " +
                std::to_string(md.arch.nwave) + " (simulate the library with the model's wavelength grid)");
  if (md.arch.nbands > 0 && lib.bands != md.bands) return fail(o.library + ": bands differ from the model's bands");
  // A noise-free library has S/N 0 for every object (SNRLIST = 'none' in its header).
  const bool noise_free =
      !lib.snr.empty() && std::all_of(lib.snr.begin(), lib.snr.end(), [](float s) { return !(s > 0); });
  if (!o.snr_levels.empty() && !noise_free)
    return fail("--snr needs a noise-free library (its objects already carry noise): simulate one with "
                "`cubeflow simulate library --config C` where C sets `noise: {enabled: false}`");

  // Expand `standard` ablations.
  std::vector<std::string> ablations;
  for (const auto& a : o.ablations) {
    if (a != "standard") { ablations.push_back(a); continue; }
    for (const auto& b : lib.bands) ablations.push_back("band:" + b);
    if (!lib.bands.empty()) ablations.push_back("bands");
    const double w_lo = lib.wave.At(0), w_hi = lib.wave.At(lib.wave.n - 1);
    for (double w = std::floor(w_lo / 100) * 100; w < w_hi; w += 200) {
      char buf[48];
      std::snprintf(buf, sizeof buf, "window:%.0f:%.0f", w, w + 200);
      ablations.push_back(buf);
    }
  }

  std::vector<WeightedMeans> truth(lib.n);
  for (int64_t i = 0; i < lib.n; ++i) truth[i] = TrueWeightedMeans(md, lib, i);

  std::fprintf(stderr, "cubeflow evaluate: %lld objects from %s%s\n", static_cast<long long>(lib.n),
               o.library.c_str(), noise_free ? " (noise-free)" : "");
  auto base_r = PredictAll(model, lib, o.threads);
  if (!base_r.ok()) return fail(base_r.status().message());
  const Predictions& base = *base_r;
  const Diffs base_d = Differences(truth, base.means);
  Stats base_s[4];
  for (int q = 0; q < 4; ++q) base_s[q] = Summarise(base_d.d[q]);

  std::ostringstream report;
  report << "model   " << o.model << "\nlibrary " << o.library << "  (" << lib.n << " objects"
         << (noise_free ? ", noise-free: add --snr for realistic figures" : "") << ")\n\n";
  report << "differences truth - prediction (dex)\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-10s %9s %9s %9s %9s %9s %7s\n", "quantity", "bias", "median", "scatter",
                "p16", "p84", "n");
  report << line;
  for (int q = 0; q < 4; ++q) {
    const Stats& s = base_s[q];
    std::snprintf(line, sizeof line, "%-10s %9.4f %9.4f %9.4f %9.4f %9.4f %7lld\n", kQuantities[q], s.bias, s.median,
                  s.scatter, s.p16, s.p84, static_cast<long long>(s.n));
    report << line;
  }

  // Fig. 4: mean (true - predicted) mass fraction per age bin over the mean true fraction.
  std::vector<double> sfr_rel(kNumBins), sfr_rel_sd(kNumBins), sfr_true(kNumBins), sfr_pred(kNumBins);
  for (int j = 0; j < kNumBins; ++j) {
    double st = 0, sp = 0, sd = 0, sd2 = 0;
    for (int64_t i = 0; i < lib.n; ++i) {
      const double t = lib.mass_frac[i * kNumBins + j], p = base.mf[i * kNumBins + j];
      st += t; sp += p; sd += t - p; sd2 += (t - p) * (t - p);
    }
    const double n = static_cast<double>(lib.n);
    sfr_true[j] = st / n;
    sfr_pred[j] = sp / n;
    const double mean_d = sd / n, sd_d = std::sqrt(std::max(0.0, sd2 / n - mean_d * mean_d));
    sfr_rel[j] = sfr_true[j] > 0 ? mean_d / sfr_true[j] : kNaN;
    sfr_rel_sd[j] = sfr_true[j] > 0 ? sd_d / sfr_true[j] : kNaN;
  }
  report << "\nmass fraction per age bin: mean (true - predicted) / mean true (paper Fig. 4)\n";
  std::snprintf(line, sizeof line, "%-10s %10s %10s %10s %10s\n", "age (Gyr)", "mean true", "mean pred", "rel. err",
                "rel. sd");
  report << line;
  for (int j = 0; j < kNumBins; ++j) {
    std::snprintf(line, sizeof line, "%-10.4g %10.4f %10.4f %10.4f %10.4f\n", md.age_bin_centres[j], sfr_true[j],
                  sfr_pred[j], sfr_rel[j], sfr_rel_sd[j]);
    report << line;
  }

  // Fig. 8: bias and scatter versus S/N.
  struct SnrRow { double snr; Stats s[4]; };
  std::vector<SnrRow> snr_rows;
  for (double snr : o.snr_levels) {
    std::fprintf(stderr, "cubeflow evaluate: S/N %g\n", snr);
    const sim::LibraryData noisy = NoisyCopy(lib, {}, {snr}, o.phot_snr, o.seed * 1000003ull + std::lround(snr * 100));
    auto p = PredictAll(model, noisy, o.threads);
    if (!p.ok()) return fail(p.status().message());
    const Diffs d = Differences(truth, p->means);
    SnrRow row{snr, {}};
    for (int q = 0; q < 4; ++q) row.s[q] = Summarise(d.d[q]);
    snr_rows.push_back(row);
  }
  if (!snr_rows.empty()) {
    report << "\nversus S/N per pixel (paper Fig. 8): median and scatter of truth - prediction (dex)\n";
    std::snprintf(line, sizeof line, "%-6s", "S/N");
    report << line;
    for (int q = 0; q < 4; ++q) {
      std::snprintf(line, sizeof line, " %21s", kQuantities[q]);
      report << line;
    }
    report << "\n";
    for (const auto& r : snr_rows) {
      std::snprintf(line, sizeof line, "%-6g", r.snr);
      report << line;
      for (int q = 0; q < 4; ++q) {
        std::snprintf(line, sizeof line, " %+10.4f %10.4f", r.s[q].median, r.s[q].scatter);
        report << line;
      }
      report << "\n";
    }
  }

  // Sec. 4.3: permutation ablation.
  struct AblRow { std::string spec, label; Stats s[4]; };
  std::vector<AblRow> abl_rows;
  for (const auto& a : ablations) {
    std::string label;
    auto ab = Ablate(lib, a, o.seed, &label);
    if (!ab.ok()) return fail(ab.status().message());
    std::fprintf(stderr, "cubeflow evaluate: ablation %s\n", label.c_str());
    auto p = PredictAll(model, *ab, o.threads);
    if (!p.ok()) return fail(p.status().message());
    const Diffs d = Differences(truth, p->means);
    AblRow row{a, label, {}};
    for (int q = 0; q < 4; ++q) row.s[q] = Summarise(d.d[q]);
    abl_rows.push_back(row);
  }
  if (!abl_rows.empty()) {
    report << "\nablation (inputs replaced by draws from the library): change in bias and scatter (dex)\n";
    std::snprintf(line, sizeof line, "%-16s", "replaced");
    report << line;
    for (int q = 0; q < 4; ++q) {
      std::snprintf(line, sizeof line, " %21s", kQuantities[q]);
      report << line;
    }
    report << "\n";
    for (const auto& r : abl_rows) {
      std::snprintf(line, sizeof line, "%-16s", r.label.c_str());
      report << line;
      for (int q = 0; q < 4; ++q) {
        std::snprintf(line, sizeof line, " %+10.4f %+10.4f", r.s[q].bias - base_s[q].bias,
                      r.s[q].scatter - base_s[q].scatter);
        report << line;
      }
      report << "\n";
    }
  }
  std::snprintf(line, sizeof line, "\nthroughput %.0f spectra/s (network only, %d threads requested)\n",
                base.seconds > 0 ? lib.n / base.seconds : 0.0, o.threads);
  report << line;
  std::cout << report.str() << std::flush;

  // Machine-readable outputs.
  auto objects_csv = [&]() {
    std::ostringstream c;
    c << "row,snr,lw_logage_true,lw_logage_pred,mw_logage_true,mw_logage_pred,lw_zh_true,lw_zh_pred,mw_zh_true,"
         "mw_zh_pred\n";
    for (int64_t i = 0; i < lib.n; ++i) {
      const auto& t = truth[i];
      const auto& p = base.means[i];
      c << o.first + i << "," << (lib.snr.empty() ? 0.0 : lib.snr[i]) << "," << t.lw_logage << "," << p.lw_logage
        << "," << t.mw_logage << "," << p.mw_logage << "," << t.lw_zh << "," << p.lw_zh << "," << t.mw_zh << ","
        << p.mw_zh << "\n";
    }
    return c.str();
  };
  if (!o.csv.empty()) {
    if (auto st = WriteText(o.csv, objects_csv()); !st.ok()) return fail(st.message());
  }
  if (!o.out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    if (ec) return fail("cannot create " + o.out_dir + ": " + ec.message());
    const std::string d = o.out_dir + "/";
    std::ostringstream sum, bins, snr, abl;
    sum << "quantity,bias,median,scatter,p16,p84,n\n";
    for (int q = 0; q < 4; ++q)
      sum << kQuantities[q] << "," << base_s[q].bias << "," << base_s[q].median << "," << base_s[q].scatter << ","
          << base_s[q].p16 << "," << base_s[q].p84 << "," << base_s[q].n << "\n";
    bins << "age_gyr,mean_true,mean_pred,rel_error,rel_sd\n";
    for (int j = 0; j < kNumBins; ++j)
      bins << md.age_bin_centres[j] << "," << sfr_true[j] << "," << sfr_pred[j] << "," << sfr_rel[j] << ","
           << sfr_rel_sd[j] << "\n";
    snr << "snr,quantity,bias,median,scatter,p16,p84,n\n";
    for (const auto& r : snr_rows)
      for (int q = 0; q < 4; ++q)
        snr << r.snr << "," << kQuantities[q] << "," << r.s[q].bias << "," << r.s[q].median << "," << r.s[q].scatter
            << "," << r.s[q].p16 << "," << r.s[q].p84 << "," << r.s[q].n << "\n";
    abl << "replaced,quantity,bias,scatter,delta_bias,delta_scatter\n";
    for (const auto& r : abl_rows)
      for (int q = 0; q < 4; ++q)
        abl << r.label << "," << kQuantities[q] << "," << r.s[q].bias << "," << r.s[q].scatter << ","
            << r.s[q].bias - base_s[q].bias << "," << r.s[q].scatter - base_s[q].scatter << "\n";
    for (const auto& [name, text] : std::vector<std::pair<std::string, std::string>>{
             {"summary.csv", sum.str()}, {"sfr_age_bins.csv", bins.str()}, {"objects.csv", objects_csv()},
             {"snr.csv", snr.str()}, {"ablation.csv", abl.str()}}) {
      if (name == "snr.csv" && snr_rows.empty()) continue;
      if (name == "ablation.csv" && abl_rows.empty()) continue;
      if (auto st = WriteText(d + name, text); !st.ok()) return fail(st.message());
    }
    std::fprintf(stderr, "cubeflow evaluate: tables written to %s\n", o.out_dir.c_str());

    // Figures (docs/cnn.md): Fig. 5, Fig. 4 and, after an S/N sweep, Fig. 8.
    namespace fs = std::filesystem;
    char sub[512];
    std::snprintf(sub, sizeof sub, "%s on %s: %lld objects (rows %lld-%lld)%s",
                  fs::path(o.model).filename().string().c_str(), fs::path(o.library).filename().string().c_str(),
                  static_cast<long long>(lib.n), static_cast<long long>(o.first),
                  static_cast<long long>(o.first + lib.n - 1), noise_free ? ", noise-free" : "");
    const std::string subtitle = sub;
    std::vector<std::string> figures;
    {
      const char* titles[4] = {"LW log age", "MW log age", "LW [Z/H]", "MW [Z/H]"};
      std::vector<evalfig::TruthPrediction> panels(4);
      for (int q = 0; q < 4; ++q) {
        auto& p = panels[q];
        p.title = titles[q];
        p.quantity = q < 2 ? "log_{10}(age/yr)" : "[Z/H] (dex)";
        for (int64_t i = 0; i < lib.n; ++i) {
          const WeightedMeans& t = truth[i];
          const WeightedMeans& m = base.means[i];
          const double tv[4] = {t.lw_logage, t.mw_logage, t.lw_zh, t.mw_zh};
          const double pv[4] = {m.lw_logage, m.mw_logage, m.lw_zh, m.mw_zh};
          p.truth.push_back(tv[q]);
          p.predicted.push_back(pv[q]);
        }
        char ann[160];
        std::snprintf(ann, sizeof ann, "bias = %+.3f dex\nσ = %.3f dex\nN = %lld", base_s[q].bias, base_s[q].scatter,
                      static_cast<long long>(base_s[q].n));
        p.annotation = ann;
        p.empty_note = q == 0 || q == 2 ? "no light-weighted truth: the library has no LIGHT_FRAC"
                                        : "no finite values";
      }
      auto w = evalfig::WriteTruthVsPrediction(
          d + "pred_vs_true.png",
          "Predicted versus true eq. 6-7 means (paper Fig. 5)\n" + subtitle +
              "\nbias = mean(true − predicted), σ = standard deviation; red: 1:1",
          panels, 2);
      if (!w.ok()) return fail(w.status().message());
      figures.push_back("pred_vs_true.png");
    }
    {
      evalfig::AgeBinErrors b;
      b.age_gyr.assign(md.age_bin_centres.begin(), md.age_bin_centres.end());
      b.rel_error = sfr_rel;
      b.rel_sd = sfr_rel_sd;
      b.mean_true = sfr_true;
      b.mean_pred = sfr_pred;
      auto w = evalfig::WriteAgeBinErrors(d + "sfr_age_bins.png",
                                          "Mass fraction per age bin (paper Fig. 4)\n" + subtitle, b);
      if (!w.ok()) return fail(w.status().message());
      figures.push_back("sfr_age_bins.png");
    }
    if (!snr_rows.empty()) {
      std::vector<double> levels;
      for (const auto& r : snr_rows) levels.push_back(r.snr);
      const char* labels[4] = {"LW", "MW", "LW", "MW"};
      std::vector<evalfig::SnrQuantity> qs(4);
      for (int q = 0; q < 4; ++q) {
        qs[q].label = labels[q];
        qs[q].age = q < 2;
        for (const auto& r : snr_rows) {
          qs[q].bias.push_back(r.s[q].bias);
          qs[q].scatter.push_back(r.s[q].scatter);
        }
      }
      char ph[64];
      std::snprintf(ph, sizeof ph, ", photometric S/N %g", o.phot_snr);
      auto w = evalfig::WriteSnrTrends(d + "snr.png",
                                       "Bias and scatter versus S/N (paper Fig. 8)\n" + subtitle +
                                           "\nnoise added to every object at each S/N" + ph,
                                       levels, qs, "bias: mean(true − predicted)");
      if (!w.ok()) return fail(w.status().message());
      figures.push_back("snr.png");
    }
    std::string list;
    for (const auto& f : figures) list += (list.empty() ? "" : ", ") + f;
    std::fprintf(stderr, "cubeflow evaluate: figures written to %s: %s\n", o.out_dir.c_str(), list.c_str());
  }
  if (!o.json.empty()) {
    std::ostringstream j;
    j << "{\n  \"model\": \"" << o.model << "\",\n  \"library\": \"" << o.library << "\",\n  \"n\": " << lib.n
      << ",\n  \"convention\": \"truth minus prediction, dex; scatter = standard deviation\"";
    for (int q = 0; q < 4; ++q)
      j << ",\n  \"" << kQuantities[q] << "_bias\": " << JsonNum(base_s[q].bias) << ", \"" << kQuantities[q]
        << "_median\": " << JsonNum(base_s[q].median) << ", \"" << kQuantities[q]
        << "_scatter\": " << JsonNum(base_s[q].scatter);
    j << ",\n  \"sfr_rel_error\": [";
    for (int k = 0; k < kNumBins; ++k) j << (k ? ", " : "") << JsonNum(sfr_rel[k]);
    j << "],\n  \"age_bin_centres_gyr\": [";
    for (int k = 0; k < kNumBins; ++k) j << (k ? ", " : "") << JsonNum(md.age_bin_centres[k]);
    j << "],\n  \"snr\": [";
    for (size_t r = 0; r < snr_rows.size(); ++r) {
      j << (r ? ",\n    " : "\n    ") << "{\"snr\": " << JsonNum(snr_rows[r].snr);
      for (int q = 0; q < 4; ++q)
        j << ", \"" << kQuantities[q] << "_median\": " << JsonNum(snr_rows[r].s[q].median) << ", \"" << kQuantities[q]
          << "_scatter\": " << JsonNum(snr_rows[r].s[q].scatter);
      j << "}";
    }
    j << "],\n  \"ablation\": [";
    for (size_t r = 0; r < abl_rows.size(); ++r) {
      j << (r ? ",\n    " : "\n    ") << "{\"replaced\": \"" << abl_rows[r].label << "\"";
      for (int q = 0; q < 4; ++q)
        j << ", \"" << kQuantities[q] << "_delta_bias\": " << JsonNum(abl_rows[r].s[q].bias - base_s[q].bias) << ", \""
          << kQuantities[q] << "_delta_scatter\": " << JsonNum(abl_rows[r].s[q].scatter - base_s[q].scatter);
      j << "}";
    }
    j << "],\n  \"spectra_per_s\": " << JsonNum(base.seconds > 0 ? lib.n / base.seconds : kNaN) << "\n}\n";
    if (auto st = WriteText(o.json, j.str()); !st.ok()) return fail(st.message());
  }
  return 0;
}

}  // namespace cubeflow::cnn
