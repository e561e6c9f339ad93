// SBI models: the true parameters and network inputs of library rows, calibration tests, and
// `cubeflow evaluate` for SBI models (docs/sbi.md). No libtorch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
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
    c_.bias.assign(dim_, nan);
    c_.scatter.assign(dim_, nan);
    c_.width68.assign(dim_, nan);
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
      c_.bias[k] = sd / m;
      c_.scatter[k] = std::sqrt(std::max(0.0, sd2 / m - (sd / m) * (sd / m)));
      c_.width68[k] = w68_[k] / m;
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

int EvaluateMain(int argc, char** argv) {
  const char* usage =
      "usage: cubeflow evaluate SBI_MODEL LIBRARY [--rows N] [--first N] [--samples N] [--seed S] [--threads N]\n"
      "                         [--json FILE] [--csv FILE] [--objects FILE] [--add-noise S1,S2,... [--phot-snr X]]\n"
      "                         [--out DIR]   (tables and PNG figures: coverage, SBC ranks, medians vs truth)\n";
  std::vector<std::string> pos;
  int64_t rows = 1000, first = 0, n_samples = 1000;
  uint64_t seed = 0;
  int threads = 0;
  std::string json, csv, objects, out_dir;
  NoiseAugment noise;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--rows" && (v = next())) rows = std::atoll(v);
    else if (a == "--first" && (v = next())) first = std::atoll(v);
    else if (a == "--samples" && (v = next())) n_samples = std::atoll(v);
    else if (a == "--seed" && (v = next())) seed = std::strtoull(v, nullptr, 10);
    else if (a == "--threads" && (v = next())) threads = std::atoi(v);
    else if (a == "--json" && (v = next())) json = v;
    else if (a == "--csv" && (v = next())) csv = v;
    else if (a == "--objects" && (v = next())) objects = v;
    else if (a == "--out" && (v = next())) out_dir = v;
    else if (a == "--phot-snr" && (v = next())) noise.phot_snr = std::atof(v);
    else if (a == "--add-noise" && (v = next())) {
      std::stringstream ss(v);
      std::string tok;
      while (std::getline(ss, tok, ',')) {
        const double x = std::atof(tok.c_str());
        if (!(x > 0)) {
          std::cerr << "cubeflow evaluate: --add-noise takes positive S/N values, e.g. 15,20,35,50\n";
          return 2;
        }
        noise.snr.push_back(x);
      }
    }
    else if (a == "-h" || a == "--help") {
      std::cout << usage;
      return 0;
    } else if (!a.empty() && a[0] != '-') pos.push_back(a);
    else {
      std::cerr << "cubeflow evaluate: unexpected argument '" << a << "'\n" << usage;
      return 2;
    }
  }
  if (pos.size() != 2 || n_samples < 2) {
    std::cerr << usage;
    return 2;
  }
  auto model = SbiModel::Load(pos[0]);
  if (!model.ok()) {
    std::cerr << "cubeflow evaluate: " << model.status().message() << "\n";
    return 1;
  }
  auto lib = sim::ReadLibrary(pos[1], first, rows);
  if (!lib.ok()) {
    std::cerr << "cubeflow evaluate: " << lib.status().message() << "\n";
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (!out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) {
      std::cerr << "cubeflow evaluate: cannot create " << out_dir << ": " << ec.message() << "\n";
      return 1;
    }
  }
  auto cal_r = EvaluateCalibration(**model, *lib, {}, n_samples, seed, threads, !objects.empty() || !out_dir.empty(),
                                   noise.enabled() ? &noise : nullptr);
  if (!cal_r.ok()) {
    std::cerr << "cubeflow evaluate: " << cal_r.status().message() << "\n";
    return 1;
  }
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Calibration& c = *cal_r;
  const size_t D = c.names.size();
  std::printf("SBI model %s on %s: %lld objects (rows %lld-%lld), %lld posterior samples each, seed %llu\n",
              pos[0].c_str(), pos[1].c_str(), static_cast<long long>(c.n), static_cast<long long>(first),
              static_cast<long long>(first + c.n - 1), static_cast<long long>(c.n_samples),
              static_cast<unsigned long long>(seed));
  std::printf("\nposterior medians vs truth\n%-6s %-4s %8s %9s %9s %9s\n", "param", "unit", "R2", "bias", "scatter",
              "width68");
  for (size_t k = 0; k < D; ++k)
    std::printf("%-6s %-4s %8.4f %9.4f %9.4f %9.4f\n", c.names[k].c_str(), c.units[k].c_str(), c.r2[k], c.bias[k],
                c.scatter[k], c.width68[k]);
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
  std::printf("\nflow sampling: %.0f samples/s (threads %d); total %.1f s\n", c.samples_per_s, nn::Threads(),
              total_s);
  if (!json.empty()) {
    std::ostringstream o;
    o << "{\n  \"model\": " << JsonString(pos[0]) << ",\n  \"library\": " << JsonString(pos[1])
      << ",\n  \"first\": " << first << ",\n  \"n\": " << c.n << ",\n  \"n_samples\": " << c.n_samples
      << ",\n  \"seed\": " << seed << ",\n  \"parameters\": [";
    for (size_t k = 0; k < D; ++k) o << (k ? ", " : "") << JsonString(c.names[k]);
    o << "],\n  \"units\": {";
    for (size_t k = 0; k < D; ++k) o << (k ? ", " : "") << JsonString(c.names[k]) << ": " << JsonString(c.units[k]);
    o << "},\n  \"coverage\": {";
    for (size_t k = 0; k < D; ++k) {
      o << (k ? ",\n    " : "\n    ") << JsonString(c.names[k]) << ": [";
      for (size_t l = 0; l < c.levels.size(); ++l)
        o << (l ? ", " : "") << "[" << JsonNum(c.levels[l]) << ", " << JsonNum(c.coverage[k][l]) << "]";
      o << "]";
    }
    auto per_param = [&](const char* key, const std::vector<double>& v) {
      o << "},\n  \"" << key << "\": {";
      for (size_t k = 0; k < D; ++k) o << (k ? ", " : "") << JsonString(c.names[k]) << ": " << JsonNum(v[k]);
    };
    per_param("r2", c.r2);
    per_param("bias", c.bias);
    per_param("scatter", c.scatter);
    per_param("width68", c.width68);
    per_param("max_coverage_deviation", c.max_coverage_dev);
    o << "},\n  \"sbc\": {\"bins\": " << c.rank_bins << ", \"chi2\": {";
    for (size_t k = 0; k < D; ++k) o << (k ? ", " : "") << JsonString(c.names[k]) << ": " << JsonNum(c.rank_chi2[k]);
    o << "}, \"counts\": {";
    for (size_t k = 0; k < D; ++k) {
      o << (k ? ", " : "") << JsonString(c.names[k]) << ": [";
      for (size_t b = 0; b < c.ranks[k].size(); ++b) o << (b ? ", " : "") << c.ranks[k][b];
      o << "]";
    }
    o << "}},\n  \"samples_per_s\": " << JsonNum(c.samples_per_s) << "\n}\n";
    std::ofstream out(json);
    out << o.str();
    if (!out) {
      std::cerr << "cubeflow evaluate: cannot write " << json << "\n";
      return 1;
    }
  }
  if (!csv.empty()) {
    std::ofstream out(csv);
    out << "table,parameter,x,y\n";
    for (size_t k = 0; k < D; ++k)
      for (size_t l = 0; l < c.levels.size(); ++l)
        out << "coverage," << c.names[k] << "," << c.levels[l] << "," << c.coverage[k][l] << "\n";
    for (size_t k = 0; k < D; ++k)
      for (int64_t b = 0; b < c.rank_bins; ++b)
        out << "sbc_rank," << c.names[k] << "," << (b + 0.5) / c.rank_bins << "," << c.ranks[k][b] << "\n";
    if (!out) {
      std::cerr << "cubeflow evaluate: cannot write " << csv << "\n";
      return 1;
    }
  }
  auto objects_csv = [&]() {
    std::ostringstream out;
    out << "row";
    for (const auto& nm : c.names) out << "," << nm << "_true," << nm << "_median," << nm << "_p16," << nm << "_p84";
    out << "\n";
    for (size_t i = 0; i < c.truth.size(); ++i) {
      out << first + static_cast<int64_t>(i);
      for (size_t k = 0; k < D; ++k)
        out << "," << c.truth[i][k] << "," << c.median[i][k] << "," << c.p16[i][k] << "," << c.p84[i][k];
      out << "\n";
    }
    return out.str();
  };
  if (!objects.empty()) {
    std::ofstream out(objects);
    out << objects_csv();
    if (!out) {
      std::cerr << "cubeflow evaluate: cannot write " << objects << "\n";
      return 1;
    }
  }
  if (!out_dir.empty()) {
    auto fail = [](const std::string& msg) {
      std::cerr << "cubeflow evaluate: " << msg << "\n";
      return 1;
    };
    const std::string d = out_dir + "/";
    std::ostringstream sum, cov, rk;
    sum << "parameter,unit,r2,bias,scatter,width68,max_coverage_dev,sbc_chi2,n\n";
    for (size_t k = 0; k < D; ++k)
      sum << c.names[k] << "," << c.units[k] << "," << c.r2[k] << "," << c.bias[k] << "," << c.scatter[k] << ","
          << c.width68[k] << "," << c.max_coverage_dev[k] << "," << c.rank_chi2[k] << "," << c.n << "\n";
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
             {"objects.csv", objects_csv()}})
      if (auto st = WriteFileAtomic(d + name, text); !st.ok()) return fail(st.message());

    // Figures (docs/sbi.md).
    char sub[512];
    std::snprintf(sub, sizeof sub, "%s on %s: %lld objects (rows %lld-%lld), %lld posterior samples each%s",
                  fs::path(pos[0]).filename().string().c_str(), fs::path(pos[1]).filename().string().c_str(),
                  static_cast<long long>(c.n), static_cast<long long>(first), static_cast<long long>(first + c.n - 1),
                  static_cast<long long>(c.n_samples), noise.enabled() ? ", noise added" : "");
    const std::string subtitle = sub;
    auto cw = evalfig::WriteCoverage(d + "coverage.png", "Expected coverage of the central credible intervals\n" + subtitle,
                                     c.names, c.levels, c.coverage, c.n);
    if (!cw.ok()) return fail(cw.status().message());
    std::string sbc_head = "SBC rank histograms (" + std::to_string(c.rank_bins) +
                           " bins; grey: 99 % range of uniform ranks";
    if (c.rank_bins == 20) sbc_head += "; chi^{2} 99 % limit 36.2";
    sbc_head += ")\n";
    auto sw = evalfig::WriteSbcRanks(d + "sbc_ranks.png", sbc_head + subtitle, c.names, c.ranks, c.rank_chi2);
    if (!sw.ok()) return fail(sw.status().message());
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
    auto mw = evalfig::WriteTruthVsPrediction(
        d + "medians_vs_truth.png",
        "Posterior medians versus truth\n" + subtitle + "\nσ = standard deviation of median − truth; red: 1:1", panels,
        std::min<int>(static_cast<int>(D), 5), "posterior median", 500, 380);
    if (!mw.ok()) return fail(mw.status().message());
    std::cerr << "cubeflow evaluate: tables and figures written to " << out_dir
              << ": summary.csv, coverage.csv, sbc_ranks.csv, objects.csv, coverage.png, sbc_ranks.png, "
                 "medians_vs_truth.png\n";
  }
  return 0;
}

}  // namespace cubeflow::sbi
