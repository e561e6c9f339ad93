// SBI models: the true parameters and network inputs of library rows, calibration tests, and
// `cubeflow evaluate` for SBI models (docs/sbi.md). No libtorch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <numeric>
#include <sstream>

#include "cubeflow/atomic_file.hpp"
#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/eval_figures.hpp"
#include "cubeflow/nn/sbi_train.hpp"
#include "cubeflow/nn/train.hpp"
#include "cubeflow/sim/rng.hpp"
#include "cubeflow/spectral/stats.hpp"
#include "command_args.hpp"
#include "json_text.hpp"
#include "sbi_streams.hpp"
#include "threads.hpp"
#include "train_common.hpp"

namespace cubeflow::sbi {

namespace {

namespace fs = std::filesystem;

using nn::JsonNum;
using nn::JsonString;

const std::vector<double> kLevels = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99};

/// Streaming accumulator of calibration statistics.
class CalibrationAccumulator {
 public:
  CalibrationAccumulator(std::vector<std::string> names, int64_t dim, int64_t n_samples, bool keep)
      : dim_(dim), n_samples_(n_samples), keep_(keep) {
    c_.names = std::move(names);
    c_.n_samples = n_samples;
    c_.levels = kLevels;
    inside_.assign(dim, std::vector<int64_t>(kLevels.size(), 0));
    c_.ranks.assign(dim, std::vector<int64_t>(c_.rank_bins, 0));
    count_.assign(dim, 0);
    med_.resize(dim);
    tru_.resize(dim);
    w68_.assign(dim, 0.0);
  }

  void Add(const float* samples, const float* truth, int64_t n) {
    std::vector<float> v(n_samples_);
    for (int64_t i = 0; i < n; ++i) {
      std::vector<float> tr(dim_), md(dim_), lo(dim_), hi(dim_);
      for (int64_t k = 0; k < dim_; ++k) {
        for (int64_t s = 0; s < n_samples_; ++s) v[s] = samples[(i * n_samples_ + s) * dim_ + k];
        std::sort(v.begin(), v.end());
        auto q = [&](double p) {
          const double pos = p * static_cast<double>(n_samples_ - 1);
          const auto a = static_cast<size_t>(pos);
          const size_t b = std::min<size_t>(a + 1, n_samples_ - 1);
          return v[a] + (pos - a) * (v[b] - v[a]);
        };
        const double t = truth[i * dim_ + k];
        tr[k] = static_cast<float>(t);
        md[k] = static_cast<float>(q(0.5));
        lo[k] = static_cast<float>(q(0.16));
        hi[k] = static_cast<float>(q(0.84));
        if (!std::isfinite(t)) continue;
        ++count_[k];
        const int64_t rank = std::lower_bound(v.begin(), v.end(), static_cast<float>(t)) - v.begin();
        const int64_t bin = std::min<int64_t>(c_.rank_bins - 1, rank * c_.rank_bins / (n_samples_ + 1));
        c_.ranks[k][bin]++;
        for (size_t l = 0; l < kLevels.size(); ++l)
          if (t >= q(0.5 - 0.5 * kLevels[l]) && t <= q(0.5 + 0.5 * kLevels[l])) inside_[k][l]++;
        med_[k].push_back(md[k]);
        tru_[k].push_back(static_cast<float>(t));
        w68_[k] += hi[k] - lo[k];
      }
      if (keep_) {
        c_.truth.push_back(tr);
        c_.median.push_back(md);
        c_.p16.push_back(lo);
        c_.p84.push_back(hi);
      }
      ++c_.n;
    }
  }

  Calibration Finish() {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    c_.coverage.assign(dim_, std::vector<double>(kLevels.size(), nan));
    c_.r2.assign(dim_, nan);
    c_.spearman.assign(dim_, nan);
    c_.constant_scatter.assign(dim_, nan);
    c_.bias.assign(dim_, nan);
    c_.scatter.assign(dim_, nan);
    c_.width68.assign(dim_, nan);
    c_.prior_width68.assign(dim_, nan);
    c_.rank_chi2.assign(dim_, nan);
    c_.max_coverage_dev.assign(dim_, nan);
    for (int64_t k = 0; k < dim_; ++k) {
      const int64_t m = count_[k];
      if (m == 0) continue;
      double dev = 0;
      for (size_t l = 0; l < kLevels.size(); ++l) {
        c_.coverage[k][l] = static_cast<double>(inside_[k][l]) / m;
        if (kLevels[l] <= 0.9 + 1e-9) dev = std::max(dev, std::abs(c_.coverage[k][l] - kLevels[l]));
      }
      c_.max_coverage_dev[k] = dev;
      double mt = 0;
      for (float t : tru_[k]) mt += t;
      mt /= m;
      double ss_res = 0, ss_tot = 0, sd = 0, sd2 = 0;
      for (int64_t i = 0; i < m; ++i) {
        const double d = med_[k][i] - tru_[k][i];
        ss_res += d * d;
        ss_tot += (tru_[k][i] - mt) * (tru_[k][i] - mt);
        sd += d;
        sd2 += d * d;
      }
      c_.r2[k] = ss_tot > 0 ? 1.0 - ss_res / ss_tot : nan;
      const spectral::Skill sk = spectral::SkillOf(std::vector<double>(tru_[k].begin(), tru_[k].end()),
                                                   std::vector<double>(med_[k].begin(), med_[k].end()));
      c_.spearman[k] = sk.spearman;
      c_.constant_scatter[k] = sk.constant_scatter;
      c_.bias[k] = sd / m;
      c_.scatter[k] = std::sqrt(std::max(0.0, sd2 / m - (sd / m) * (sd / m)));
      c_.width68[k] = w68_[k] / m;
      std::vector<float> sorted = tru_[k];
      std::sort(sorted.begin(), sorted.end());
      auto q = [&](double p) {
        const double pos = p * static_cast<double>(m - 1);
        const auto a = static_cast<size_t>(pos);
        const size_t b = std::min<size_t>(a + 1, static_cast<size_t>(m - 1));
        return sorted[a] + (pos - a) * (sorted[b] - sorted[a]);
      };
      c_.prior_width68[k] = q(0.84) - q(0.16);
      const double e = static_cast<double>(m) / c_.rank_bins;
      double chi2 = 0;
      for (int64_t c : c_.ranks[k]) chi2 += (c - e) * (c - e) / e;
      c_.rank_chi2[k] = chi2;
    }
    return c_;
  }

 private:
  int64_t dim_, n_samples_;
  bool keep_;
  Calibration c_;
  std::vector<std::vector<int64_t>> inside_;
  std::vector<int64_t> count_;
  std::vector<std::vector<float>> med_, tru_;
  std::vector<double> w68_;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------

std::vector<float> TrueTheta(const sim::LibraryData& lib, const std::vector<int64_t>& rows,
                             const std::vector<ThetaParam>& theta) {
  const int64_t D = static_cast<int64_t>(theta.size());
  std::vector<float> out(rows.size() * D, std::numeric_limits<float>::quiet_NaN());
  for (int64_t k = 0; k < D; ++k) {
    const std::string& name = theta[k].name;
    int q = -1;
    if (name.size() == 3 && name[0] == 't' && std::isdigit(name[1]) && name[2] == '0') q = name[1] - '1';
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t i = rows[r];
      if (q >= 0 && q < sim::kNumMassPercentiles) {
        if (lib.t_mass.size() >= static_cast<size_t>((i + 1) * sim::kNumMassPercentiles))
          out[r * D + k] = lib.t_mass[i * sim::kNumMassPercentiles + q];
      } else if (name == "mh") {
        if (lib.mass_frac.size() < static_cast<size_t>((i + 1) * sim::kNumAgeBins)) continue;
        double sm = 0, sz = 0;
        for (int j = 0; j < sim::kNumAgeBins; ++j) {
          const double m = lib.mass_frac[i * sim::kNumAgeBins + j], z = lib.zh[i * sim::kNumAgeBins + j];
          if (!(m > 0) || !std::isfinite(z)) continue;
          sm += m;
          sz += m * z;
        }
        if (sm > 0) out[r * D + k] = static_cast<float>(sz / sm);
      }
    }
  }
  return out;
}

void GatherSbiInputs(const sim::LibraryData& lib, const std::vector<int64_t>& rows, int64_t nbands, double norm_min,
                     double norm_max, std::vector<float>& spectra, std::vector<float>& phot, std::vector<float>& snr,
                     const NoiseAugment* noise, uint64_t noise_seed, uint64_t stream) {
  cnn::GatherInputs(lib, rows, nbands, spectra, phot);
  const int64_t nw = lib.wave.n;
  snr.assign(rows.size(), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> sigma;
  for (size_t r = 0; r < rows.size(); ++r) {
    double s = std::numeric_limits<double>::quiet_NaN();
    if (noise && noise->enabled()) {
      sim::Rng rng(noise_seed, static_cast<uint64_t>(rows[r]), kNoiseStreamBase + stream);
      const size_t k = std::min(static_cast<size_t>(rng.Uniform() * noise->snr.size()), noise->snr.size() - 1);
      const double level = noise->snr[k];
      float* f = spectra.data() + r * nw;
      sigma.resize(nw);
      for (int64_t i = 0; i < nw; ++i) {
        sigma[i] = static_cast<float>(std::sqrt(std::max<double>(f[i], 1e-4)) / level);
        f[i] = static_cast<float>(f[i] + sigma[i] * rng.Normal());
      }
      if (noise->phot_snr > 0)
        for (int64_t b = 0; b < nbands; ++b) {
          float& p = phot[r * nbands + b];
          p = static_cast<float>(p + std::abs(p) / noise->phot_snr * rng.Normal());
        }
      s = inputs::NoiseSnrFromSigma(lib.wave, sigma.data(), norm_min, norm_max);
    } else {
      if (!lib.spectra_err.empty())
        s = inputs::NoiseSnrFromSigma(lib.wave, lib.spectra_err.data() + rows[r] * nw, norm_min, norm_max);
      if (!std::isfinite(s) && static_cast<int64_t>(lib.snr.size()) > rows[r] && lib.snr[rows[r]] > 0)
        s = lib.snr[rows[r]];
    }
    snr[r] = static_cast<float>(s);
  }
}

// ---------------------------------------------------------------------------------------
// Calibration
// ---------------------------------------------------------------------------------------

Calibration CalibrationFromSamples(const std::vector<std::string>& names, const float* samples, const float* truth,
                                   int64_t n, int64_t n_samples, int64_t dim, bool keep_objects) {
  CalibrationAccumulator acc(names, dim, n_samples, keep_objects);
  acc.Add(samples, truth, n);
  Calibration c = acc.Finish();
  c.units.assign(dim, "");
  return c;
}

Result<Calibration> EvaluateCalibration(const SbiModel& model, const sim::LibraryData& lib,
                                        const std::vector<int64_t>& rows_in, int64_t n_samples, uint64_t seed,
                                        int threads, bool keep_objects, const NoiseAugment* noise) {
  const auto& md = model.metadata();
  CUBEFLOW_RETURN_NOT_OK(nn::CheckLibraryFitsModel(lib, md.encoder.nwave, md.input.bands));
  if (n_samples < 2) return Status::Error("need at least 2 posterior samples per object");
  const std::vector<int64_t> rows = rows_in.empty() ? nn::AllRows(lib.n) : rows_in;
  const int64_t D = md.flow.dim, S = md.encoder.ContextDim();
  std::vector<std::string> names;
  for (const auto& p : md.theta) names.push_back(p.name);
  CalibrationAccumulator acc(names, D, n_samples, keep_objects);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(256, 4'000'000 / (n_samples * D)));
  std::vector<float> spec, phot, snr, summ, samples;
  double sample_s = 0;
  for (size_t first = 0; first < rows.size(); first += chunk) {
    const size_t cnt = std::min<size_t>(chunk, rows.size() - first);
    std::vector<int64_t> sub(rows.begin() + first, rows.begin() + first + cnt);
    GatherSbiInputs(lib, sub, md.encoder.nbands, md.input.norm_min, md.input.norm_max, spec, phot, snr, noise, seed,
                    kTestStream);
    if (md.encoder.noise_input)
      for (size_t i = 0; i < cnt; ++i)
        if (!std::isfinite(snr[i]))
          return Status::Error("library row " + std::to_string(sub[i]) +
                               " has no noise (SPEC_ERR and SNR are 0 or missing) but the model is conditioned on the "
                               "S/N: evaluate on a library with noise, or add noise (--add-noise)");
    summ.resize(cnt * S);
    CUBEFLOW_RETURN_NOT_OK(model.Summarize(spec.data(), phot.data(), snr.data(), cnt, summ.data(), threads));
    samples.resize(cnt * n_samples * D);
    const auto t0 = std::chrono::steady_clock::now();
    CUBEFLOW_RETURN_NOT_OK(model.Sample(summ.data(), cnt, n_samples, sub.data(), seed, samples.data(), threads));
    sample_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto truth = TrueTheta(lib, sub, md.theta);
    acc.Add(samples.data(), truth.data(), cnt);
  }
  Calibration c = acc.Finish();
  for (const auto& p : md.theta) c.units.push_back(p.unit);
  c.seconds = sample_s;
  c.samples_per_s = sample_s > 0 ? static_cast<double>(rows.size() * n_samples) / sample_s : 0.0;
  return c;
}

// ---------------------------------------------------------------------------------------
// Command
// ---------------------------------------------------------------------------------------

namespace {

constexpr const char* kUsage =
    "usage: cubeflow evaluate SBI_MODEL LIBRARY [--rows N] [--first N] [--samples N] [--seed S] [--threads N]\n"
    "                         [--json FILE] [--csv FILE] [--objects FILE] [--add-noise S1,S2,... [--phot-snr X]]\n"
    "                         [--out DIR]   (tables and PNG figures: coverage, SBC ranks, medians vs truth)\n";

/// \brief The options of `cubeflow evaluate` for an SBI model.
struct EvalOptions {
  std::string model, library;
  int64_t rows = 1000, first = 0, n_samples = 1000;
  uint64_t seed = 0;
  int threads = 0;
  std::string json, csv, objects, out_dir;
  NoiseAugment noise;  ///< --add-noise / --phot-snr
  bool help = false;   ///< -h / --help
};

Result<EvalOptions> ParseArgs(int argc, char** argv) {
  EvalOptions o;
  std::vector<std::string> pos;
  nn::ArgReader args(argc, argv);
  while (args.Next()) {
    const std::string a = args.arg();
    if (a == "--rows") CUBEFLOW_RETURN_NOT_OK(args.Integer(&o.rows));
    else if (a == "--first") CUBEFLOW_RETURN_NOT_OK(args.Integer(&o.first));
    else if (a == "--samples") CUBEFLOW_RETURN_NOT_OK(args.Integer(&o.n_samples));
    else if (a == "--seed") CUBEFLOW_RETURN_NOT_OK(args.Unsigned(&o.seed));
    else if (a == "--threads") CUBEFLOW_RETURN_NOT_OK(args.Integer(&o.threads));
    else if (a == "--phot-snr") CUBEFLOW_RETURN_NOT_OK(args.Number(&o.noise.phot_snr));
    else if (a == "--add-noise") CUBEFLOW_RETURN_NOT_OK(args.PositiveList(&o.noise.snr, "15,20,35,50"));
    else if (a == "--json") { CUBEFLOW_ASSIGN_OR_RETURN(o.json, args.Value()); }
    else if (a == "--csv") { CUBEFLOW_ASSIGN_OR_RETURN(o.csv, args.Value()); }
    else if (a == "--objects") { CUBEFLOW_ASSIGN_OR_RETURN(o.objects, args.Value()); }
    else if (a == "--out") { CUBEFLOW_ASSIGN_OR_RETURN(o.out_dir, args.Value()); }
    else if (a == "-h" || a == "--help") o.help = true;
    else if (args.IsOption()) return Status::Error("unexpected argument '" + a + "'");
    else pos.push_back(a);
  }
  if (o.help) return o;
  if (pos.size() != 2) return Status::Error(pos.size() < 2 ? "SBI_MODEL and LIBRARY are required" : "too many arguments");
  if (o.n_samples < 2) return Status::Error("--samples must be at least 2 (got " + std::to_string(o.n_samples) + ")");
  o.model = pos[0];
  o.library = pos[1];
  return o;
}

/// The text report on stdout.
void PrintReport(const EvalOptions& o, const Calibration& c, double total_s) {
  const size_t D = c.names.size();
  std::printf("SBI model %s on %s: %lld objects (rows %lld-%lld), %lld posterior samples each, seed %llu\n",
              o.model.c_str(), o.library.c_str(), static_cast<long long>(c.n), static_cast<long long>(o.first),
              static_cast<long long>(o.first + c.n - 1), static_cast<long long>(c.n_samples),
              static_cast<unsigned long long>(o.seed));
  std::printf("\nposterior medians vs truth (rho: Spearman rank correlation; const: scatter of the best constant, "
              "the truths' standard deviation; width68: mean 16-84 %% posterior width; prior68: 16-84 %% range of "
              "the truths)\n%-6s %-4s %8s %7s %9s %9s %9s %9s %9s %8s\n",
              "param", "unit", "R2", "rho", "bias", "scatter", "const", "width68", "prior68", "w/prior");
  for (size_t k = 0; k < D; ++k)
    std::printf("%-6s %-4s %8.4f %7.3f %9.4f %9.4f %9.4f %9.4f %9.4f %8.3f\n", c.names[k].c_str(), c.units[k].c_str(),
                c.r2[k], c.spearman[k], c.bias[k], c.scatter[k], c.constant_scatter[k], c.width68[k],
                c.prior_width68[k], c.width68[k] / c.prior_width68[k]);
  std::printf("\nexpected coverage: fraction of truths inside the central credible interval\n%-6s", "param");
  for (double l : c.levels) std::printf(" %6.2f", l);
  std::printf("  max|dev|(0.1-0.9)\n");
  for (size_t k = 0; k < D; ++k) {
    std::printf("%-6s", c.names[k].c_str());
    for (double v : c.coverage[k]) std::printf(" %6.3f", v);
    std::printf("  %6.3f\n", c.max_coverage_dev[k]);
  }
  const double chi2_99 = 36.19;  // chi^2 with 19 degrees of freedom, 99th percentile
  std::printf("\nSBC rank histograms (%lld bins, expected %.1f per bin; chi2 99%% limit %.1f)\n",
              static_cast<long long>(c.rank_bins), static_cast<double>(c.n) / c.rank_bins, chi2_99);
  for (size_t k = 0; k < D; ++k) {
    std::printf("%-6s chi2 %7.1f |", c.names[k].c_str(), c.rank_chi2[k]);
    for (int64_t v : c.ranks[k]) std::printf(" %lld", static_cast<long long>(v));
    std::printf("\n");
  }
  std::printf("\nflow sampling: %.0f samples/s (threads %d); total %.1f s\n", c.samples_per_s, nn::Threads(), total_s);
}

/// --json: coverage, accuracy and SBC ranks machine-readably.
std::string Json(const EvalOptions& o, const Calibration& c) {
  const size_t D = c.names.size();
  std::ostringstream j;
  j << "{\n  \"model\": " << JsonString(o.model) << ",\n  \"library\": " << JsonString(o.library)
    << ",\n  \"first\": " << o.first << ",\n  \"n\": " << c.n << ",\n  \"n_samples\": " << c.n_samples
    << ",\n  \"seed\": " << o.seed << ",\n  \"parameters\": [";
  for (size_t k = 0; k < D; ++k) j << (k ? ", " : "") << JsonString(c.names[k]);
  j << "],\n  \"units\": {";
  for (size_t k = 0; k < D; ++k) j << (k ? ", " : "") << JsonString(c.names[k]) << ": " << JsonString(c.units[k]);
  j << "},\n  \"coverage\": {";
  for (size_t k = 0; k < D; ++k) {
    j << (k ? ",\n    " : "\n    ") << JsonString(c.names[k]) << ": [";
    for (size_t l = 0; l < c.levels.size(); ++l)
      j << (l ? ", " : "") << "[" << JsonNum(c.levels[l]) << ", " << JsonNum(c.coverage[k][l]) << "]";
    j << "]";
  }
  auto per_param = [&](const char* key, const std::vector<double>& v) {
    j << "},\n  \"" << key << "\": {";
    for (size_t k = 0; k < D; ++k) j << (k ? ", " : "") << JsonString(c.names[k]) << ": " << JsonNum(v[k]);
  };
  per_param("r2", c.r2);
  per_param("spearman", c.spearman);
  per_param("constant_scatter", c.constant_scatter);
  per_param("bias", c.bias);
  per_param("scatter", c.scatter);
  per_param("width68", c.width68);
  per_param("prior_width68", c.prior_width68);
  per_param("max_coverage_deviation", c.max_coverage_dev);
  j << "},\n  \"sbc\": {\"bins\": " << c.rank_bins << ", \"chi2\": {";
  for (size_t k = 0; k < D; ++k) j << (k ? ", " : "") << JsonString(c.names[k]) << ": " << JsonNum(c.rank_chi2[k]);
  j << "}, \"counts\": {";
  for (size_t k = 0; k < D; ++k) {
    j << (k ? ", " : "") << JsonString(c.names[k]) << ": [";
    for (size_t b = 0; b < c.ranks[k].size(); ++b) j << (b ? ", " : "") << c.ranks[k][b];
    j << "]";
  }
  j << "}},\n  \"samples_per_s\": " << JsonNum(c.samples_per_s) << "\n}\n";
  return j.str();
}

/// --csv: coverage curves and SBC rank histograms in one long table.
std::string CurvesCsv(const Calibration& c) {
  std::ostringstream out;
  out << "table,parameter,x,y\n";
  for (size_t k = 0; k < c.names.size(); ++k)
    for (size_t l = 0; l < c.levels.size(); ++l)
      out << "coverage," << c.names[k] << "," << c.levels[l] << "," << c.coverage[k][l] << "\n";
  for (size_t k = 0; k < c.names.size(); ++k)
    for (int64_t b = 0; b < c.rank_bins; ++b)
      out << "sbc_rank," << c.names[k] << "," << (b + 0.5) / c.rank_bins << "," << c.ranks[k][b] << "\n";
  return out.str();
}

/// --objects: truth, median and 16-84 % range per object and parameter.
std::string ObjectsCsv(const EvalOptions& o, const Calibration& c) {
  std::ostringstream out;
  out << "row";
  for (const auto& nm : c.names) out << "," << nm << "_true," << nm << "_median," << nm << "_p16," << nm << "_p84";
  out << "\n";
  for (size_t i = 0; i < c.truth.size(); ++i) {
    out << o.first + static_cast<int64_t>(i);
    for (size_t k = 0; k < c.names.size(); ++k)
      out << "," << c.truth[i][k] << "," << c.median[i][k] << "," << c.p16[i][k] << "," << c.p84[i][k];
    out << "\n";
  }
  return out.str();
}

/// --out: the CSV tables.
Status WriteTables(const EvalOptions& o, const Calibration& c, const std::string& d) {
  const size_t D = c.names.size();
  std::ostringstream sum, cov, rk;
  sum << "parameter,unit,r2,spearman,bias,scatter,constant_scatter,width68,prior_width68,max_coverage_dev,sbc_chi2,n\n";
  for (size_t k = 0; k < D; ++k)
    sum << c.names[k] << "," << c.units[k] << "," << c.r2[k] << "," << c.spearman[k] << "," << c.bias[k] << ","
        << c.scatter[k] << "," << c.constant_scatter[k] << "," << c.width68[k] << "," << c.prior_width68[k] << ","
        << c.max_coverage_dev[k] << "," << c.rank_chi2[k] << "," << c.n << "\n";
  cov << "parameter,level,coverage\n";
  for (size_t k = 0; k < D; ++k)
    for (size_t l = 0; l < c.levels.size(); ++l) cov << c.names[k] << "," << c.levels[l] << "," << c.coverage[k][l] << "\n";
  rk << "parameter,bin,rank_lo,rank_hi,count\n";
  for (size_t k = 0; k < D; ++k)
    for (int64_t b = 0; b < c.rank_bins; ++b)
      rk << c.names[k] << "," << b << "," << static_cast<double>(b) / c.rank_bins << ","
         << static_cast<double>(b + 1) / c.rank_bins << "," << c.ranks[k][b] << "\n";
  for (const auto& [name, text] : std::vector<std::pair<std::string, std::string>>{
           {"summary.csv", sum.str()}, {"coverage.csv", cov.str()}, {"sbc_ranks.csv", rk.str()},
           {"objects.csv", ObjectsCsv(o, c)}})
    CUBEFLOW_RETURN_NOT_OK(WriteFileAtomic(d + name, text));
  return Status::OK();
}

/// --out: coverage curves, SBC rank histograms and medians versus truth (docs/sbi.md).
Status WriteFigures(const EvalOptions& o, const Calibration& c, const std::string& d) {
  const size_t D = c.names.size();
  char sub[512];
  std::snprintf(sub, sizeof sub, "%s on %s: %lld objects (rows %lld-%lld), %lld posterior samples each%s",
                fs::path(o.model).filename().string().c_str(), fs::path(o.library).filename().string().c_str(),
                static_cast<long long>(c.n), static_cast<long long>(o.first), static_cast<long long>(o.first + c.n - 1),
                static_cast<long long>(c.n_samples), o.noise.enabled() ? ", noise added" : "");
  const std::string subtitle = sub;
  CUBEFLOW_RETURN_NOT_OK(evalfig::WriteCoverage(d + "coverage.png",
                                                "Expected coverage of the central credible intervals\n" + subtitle,
                                                c.names, c.levels, c.coverage, c.n)
                             .status());
  std::string sbc_head = "SBC rank histograms (" + std::to_string(c.rank_bins) + " bins; grey: 99 % range of uniform ranks";
  if (c.rank_bins == 20) sbc_head += "; chi^{2} 99 % limit 36.2";
  sbc_head += ")\n";
  CUBEFLOW_RETURN_NOT_OK(
      evalfig::WriteSbcRanks(d + "sbc_ranks.png", sbc_head + subtitle, c.names, c.ranks, c.rank_chi2).status());
  std::vector<evalfig::TruthPrediction> panels(D);
  for (size_t k = 0; k < D; ++k) {
    auto& p = panels[k];
    p.title = evalfig::DisplayName(c.names[k]);
    p.quantity = p.title + (c.units[k].empty() ? "" : " (" + c.units[k] + ")");
    for (size_t i = 0; i < c.truth.size(); ++i) {
      p.truth.push_back(c.truth[i][k]);
      p.predicted.push_back(c.median[i][k]);
    }
    char ann[160];
    std::snprintf(ann, sizeof ann, "R^{2} = %.3f\nσ = %.3g%s%s", c.r2[k], c.scatter[k], c.units[k].empty() ? "" : " ",
                  c.units[k].c_str());
    p.annotation = ann;
    p.empty_note = "no truth for " + c.names[k] + " in the library";
  }
  return evalfig::WriteTruthVsPrediction(
             d + "medians_vs_truth.png",
             "Posterior medians versus truth\n" + subtitle + "\nσ = standard deviation of median − truth; red: 1:1",
             panels, std::min<int>(static_cast<int>(D), 5), "posterior median", 500, 380)
      .status();
}

/// The evaluation and its outputs; errors as values.
Status RunEvaluation(const EvalOptions& o) {
  CUBEFLOW_ASSIGN_OR_RETURN(auto model, SbiModel::Load(o.model));
  CUBEFLOW_ASSIGN_OR_RETURN(const sim::LibraryData lib, sim::ReadLibrary(o.library, o.first, o.rows));
  const auto t0 = std::chrono::steady_clock::now();
  if (!o.out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(o.out_dir, ec);
    if (ec) return Status::Error("cannot create " + o.out_dir + ": " + ec.message());
  }
  CUBEFLOW_ASSIGN_OR_RETURN(const Calibration c,
                            EvaluateCalibration(*model, lib, {}, o.n_samples, o.seed, o.threads,
                                                !o.objects.empty() || !o.out_dir.empty(),
                                                o.noise.enabled() ? &o.noise : nullptr));
  PrintReport(o, c, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  std::fflush(stdout);
  if (!o.json.empty()) CUBEFLOW_RETURN_NOT_OK(WriteFileAtomic(o.json, Json(o, c)));
  if (!o.csv.empty()) CUBEFLOW_RETURN_NOT_OK(WriteFileAtomic(o.csv, CurvesCsv(c)));
  if (!o.objects.empty()) CUBEFLOW_RETURN_NOT_OK(WriteFileAtomic(o.objects, ObjectsCsv(o, c)));
  if (!o.out_dir.empty()) {
    const std::string d = o.out_dir + "/";
    CUBEFLOW_RETURN_NOT_OK(WriteTables(o, c, d));
    CUBEFLOW_RETURN_NOT_OK(WriteFigures(o, c, d));
    std::cerr << "cubeflow evaluate: tables and figures written to " << o.out_dir
              << ": summary.csv, coverage.csv, sbc_ranks.csv, objects.csv, coverage.png, sbc_ranks.png, "
                 "medians_vs_truth.png\n";
  }
  return Status::OK();
}

}  // namespace

int EvaluateMain(int argc, char** argv) {
  return nn::RunCommand<EvalOptions>("evaluate", kUsage, ParseArgs(argc, argv), RunEvaluation);
}

}  // namespace cubeflow::sbi
