// SBI training (encoder, then flow), calibration tests, and `cubeflow train` / `cubeflow
// evaluate` for SBI models.
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "cubeflow/atomic_file.hpp"
#include "cubeflow/sim/rng.hpp"
#include "cubeflow/nn/eval_figures.hpp"
#include "cubeflow/nn/sbi_train.hpp"
#include "cubeflow/nn/train.hpp"
#include "sbi_net.hpp"

#include "cubeflow/sim/ages.hpp"

namespace cubeflow::sbi {

namespace {

namespace fs = std::filesystem;

const std::vector<double> kLevels = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99};

// Random streams (sim::Rng stream ids) of the noise augmentation: each use draws its own noise.
constexpr uint64_t kNoiseStreamBase = 0xA0000;
constexpr uint64_t kValStream = 1;         // validation rows: one fixed realisation
constexpr uint64_t kTestStream = 2;        // test rows / evaluate --add-noise
constexpr uint64_t kFlowStream = 100;      // + draw index: flow training rows
constexpr uint64_t kEncStream = 1000;      // + 1 + epoch: encoder batches (kEncStream itself: statistics)
constexpr uint64_t kJitterStream = 0xB0000;

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>((t / 60) % 60), static_cast<long long>(t % 60));
  return buf;
}

/// Mean log(cosh(pred - target)) over finite targets.
torch::Tensor LogCosh(const torch::Tensor& pred, const torch::Tensor& target) {
  auto valid = torch::isfinite(target);
  auto d = torch::where(valid, pred - torch::nan_to_num(target, 0.0), torch::zeros_like(pred));
  auto a = d.abs();
  auto lc = a + torch::log1p(torch::exp(-2.0 * a)) - std::log(2.0);
  return (lc * valid).sum() / valid.sum().clamp_min(1);
}

std::vector<int64_t> Permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

torch::Tensor RowsTensor(const std::vector<int64_t>& rows, size_t first, size_t count) {
  return torch::from_blob(const_cast<int64_t*>(rows.data() + first), {static_cast<int64_t>(count)}, torch::kLong);
}

std::string SnrMix(const sim::LibraryData& lib) {
  if (lib.snr.empty()) return "unknown";
  std::map<long, int64_t> counts;
  for (float s : lib.snr) counts[std::isfinite(s) ? std::lround(s) : -1]++;
  if (counts.size() > 12) {
    auto [mn, mx] = std::minmax_element(lib.snr.begin(), lib.snr.end());
    return "continuous " + std::to_string(*mn) + "-" + std::to_string(*mx);
  }
  std::ostringstream o;
  bool first = true;
  for (const auto& [snr, c] : counts) {
    o << (first ? "" : ", ") << snr << ": " << c;
    first = false;
  }
  return o.str();
}

Status CheckLibrary(const sim::LibraryData& lib, const std::string& what) {
  const int64_t n = lib.n, nw = lib.wave.n;
  auto check = [&](size_t size, int64_t want, const char* name) -> Status {
    if (static_cast<int64_t>(size) != want)
      return Status::Error(what + ": array " + name + " has " + std::to_string(size) + " values, expected " +
                           std::to_string(want));
    return Status::OK();
  };
  if (n <= 0) return Status::Error(what + " is empty");
  CUBEFLOW_RETURN_NOT_OK(check(lib.spectra.size(), n * nw, "SPECTRA"));
  CUBEFLOW_RETURN_NOT_OK(check(lib.t_mass.size(), n * sim::kNumMassPercentiles, "T_MASS"));
  CUBEFLOW_RETURN_NOT_OK(check(lib.mass_frac.size(), n * sim::kNumAgeBins, "MASS_FRAC"));
  CUBEFLOW_RETURN_NOT_OK(check(lib.zh.size(), n * sim::kNumAgeBins, "ZH"));
  if (!lib.bands.empty()) CUBEFLOW_RETURN_NOT_OK(check(lib.photometry.size(), n * lib.bands.size(), "PHOT"));
  if (!lib.spectra_err.empty()) CUBEFLOW_RETURN_NOT_OK(check(lib.spectra_err.size(), n * nw, "SPEC_ERR"));
  return Status::OK();
}

/// Age of the universe of the library's cosmology (Gyr), or NaN if unknown.
double UniverseAge(const sim::LibraryData& lib) {
  sim::Cosmology cosmo;
  auto it = lib.meta.find("config");
  if (it != lib.meta.end()) {
    try {
      YAML::Node c = YAML::Load(it->second);
      if (c.IsMap() && c["cosmology"]) {
        if (c["cosmology"]["h0"]) cosmo.h0 = c["cosmology"]["h0"].as<double>();
        if (c["cosmology"]["omega_m"]) cosmo.omega_m = c["cosmology"]["omega_m"].as<double>();
      }
    } catch (const std::exception&) {
    }
    return sim::CosmicTimeGyr(0.0, cosmo);
  }
  return std::numeric_limits<double>::quiet_NaN();
}

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

std::atomic<int> g_interrupt{0};
volatile int g_stop_flag = 0;
extern "C" void SbiTrainOnSigint(int) {
  g_stop_flag = 1;
  g_interrupt = 1;
}

std::string JsonString(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o + "\"";
}

std::string JsonNum(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

/// Writes a text file atomically (temporary file + rename).
Status WriteTextAtomic(const std::string& path, const std::string& text) { return WriteFileAtomic(path, text); }

}  // namespace

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

Result<TrainConfig> ParseTrainConfig(const std::string& yaml_text, const std::string& file_name) {
  TrainConfig c;
  c.config_yaml = yaml_text;
  std::string key = "(document)";
  try {
    YAML::Node root = YAML::Load(yaml_text);
    if (!root.IsMap()) return Status::Error(file_name + ": a training configuration must be a YAML mapping");
    static const std::set<std::string> kKnown = {
        "kind", "library", "flow_library", "output", "checkpoint", "epochs", "batch_size", "lr", "lr_factor",
        "lr_patience", "stop_patience", "batches_per_epoch", "flow_epochs", "flow_batch_size", "flow_lr",
        "flow_lr_patience", "flow_stop_patience", "flow_batches_per_epoch", "seed", "threads", "max_rows", "split",
        "encoder_fraction", "photometry", "noise_input", "time_transform", "lookback_offset", "eval_samples",
        "architecture", "flow", "augment_noise", "flow_noise_draws", "flow_jitter", "flow_jitter_anneal", "encoder_from"};
    for (const auto& kv : root) {
      key = kv.first.as<std::string>();
      if (!kKnown.count(key)) {
        std::string list;
        for (const auto& k : kKnown) list += (list.empty() ? "" : ", ") + k;
        return Status::Error(file_name + ": unknown key '" + key + "' (known: " + list + ")");
      }
    }
    key = "kind";
    if (!root["kind"] || root["kind"].as<std::string>() != "sbi")
      return Status::Error(file_name + ": an SBI training configuration needs 'kind: sbi'");
    auto str = [&](const char* k, std::string& dst) { key = k; if (root[k]) dst = root[k].as<std::string>(); };
    auto i64 = [&](const char* k, int64_t& dst) { key = k; if (root[k]) dst = root[k].as<int64_t>(); };
    auto dbl = [&](const char* k, double& dst) { key = k; if (root[k]) dst = root[k].as<double>(); };
    auto bln = [&](const char* k, bool& dst) { key = k; if (root[k]) dst = root[k].as<bool>(); };
    str("library", c.library);
    str("flow_library", c.flow_library);
    str("output", c.output);
    str("checkpoint", c.checkpoint);
    str("encoder_from", c.encoder_from);
    i64("epochs", c.epochs);
    i64("batch_size", c.batch_size);
    dbl("lr", c.lr);
    dbl("lr_factor", c.lr_factor);
    i64("lr_patience", c.lr_patience);
    i64("stop_patience", c.stop_patience);
    i64("batches_per_epoch", c.batches_per_epoch);
    i64("flow_epochs", c.flow_epochs);
    i64("flow_batch_size", c.flow_batch_size);
    dbl("flow_lr", c.flow_lr);
    i64("flow_lr_patience", c.flow_lr_patience);
    i64("flow_stop_patience", c.flow_stop_patience);
    i64("flow_batches_per_epoch", c.flow_batches_per_epoch);
    key = "seed";
    if (root["seed"]) c.seed = root["seed"].as<uint64_t>();
    key = "threads";
    if (root["threads"]) c.threads = root["threads"].as<int>();
    i64("max_rows", c.max_rows);
    dbl("encoder_fraction", c.encoder_fraction);
    bln("photometry", c.photometry);
    bln("noise_input", c.noise_input);
    str("time_transform", c.time_transform);
    dbl("lookback_offset", c.lookback_offset);
    i64("eval_samples", c.eval_samples);
    i64("flow_noise_draws", c.flow_noise_draws);
    dbl("flow_jitter", c.flow_jitter);
    bln("flow_jitter_anneal", c.flow_jitter_anneal);
    key = "augment_noise";
    if (auto a = root["augment_noise"]) {
      bool enabled = true;
      std::vector<double> snr = {15, 20, 35, 50};
      if (a.IsScalar()) {
        enabled = a.as<bool>();
      } else if (a.IsMap()) {
        for (const auto& kv : a) {
          const std::string k = kv.first.as<std::string>();
          key = "augment_noise." + k;
          if (k == "enabled") enabled = kv.second.as<bool>();
          else if (k == "snr") snr = kv.second.as<std::vector<double>>();
          else if (k == "phot_snr") c.augment_noise.phot_snr = kv.second.as<double>();
          else return Status::Error(file_name + ": unknown key '" + key + "' (known: enabled, snr, phot_snr)");
        }
      } else {
        return Status::Error(file_name + ": augment_noise must be true/false or {snr: [...], phot_snr: X}");
      }
      if (enabled && snr.empty()) return Status::Error(file_name + ": augment_noise.snr is empty");
      for (double v : snr)
        if (!(v > 0)) return Status::Error(file_name + ": augment_noise.snr values must be positive");
      if (enabled) c.augment_noise.snr = snr;
    }
    key = "split";
    if (auto s = root["split"]) {
      auto v = s.as<std::vector<double>>();
      if (v.size() < 2 || v.size() > 3 || v[0] <= 0 || v[1] <= 0 || v[0] + v[1] >= 1.0 + 1e-9)
        return Status::Error(file_name + ": split must be [train, validation, test] fractions, e.g. [0.8, 0.1, 0.1]");
      c.train_fraction = v[0];
      c.val_fraction = v[1];
    }
    if (auto a = root["architecture"]) {
      static const std::set<std::string> kArch = {"channels", "kernels", "pools", "attention", "attention_dim",
                                                  "spec_hidden", "spec_features", "phot_hidden", "phot_features",
                                                  "fusion_hidden", "summary_dim", "head_hidden"};
      for (const auto& kv : a) {
        key = "architecture." + kv.first.as<std::string>();
        if (!kArch.count(kv.first.as<std::string>())) return Status::Error(file_name + ": unknown key '" + key + "'");
      }
      auto ai = [&](const char* k, int64_t& dst) { key = std::string("architecture.") + k; if (a[k]) dst = a[k].as<int64_t>(); };
      auto al = [&](const char* k, std::vector<int64_t>& dst) {
        key = std::string("architecture.") + k;
        if (a[k]) dst = a[k].as<std::vector<int64_t>>();
      };
      al("channels", c.encoder.channels);
      al("kernels", c.encoder.kernels);
      al("pools", c.encoder.pools);
      key = "architecture.attention";
      if (a["attention"]) c.encoder.attention = a["attention"].as<bool>();
      ai("attention_dim", c.encoder.attention_dim);
      ai("spec_hidden", c.encoder.spec_hidden);
      ai("spec_features", c.encoder.spec_features);
      ai("phot_hidden", c.encoder.phot_hidden);
      ai("phot_features", c.encoder.phot_features);
      ai("fusion_hidden", c.encoder.fusion_hidden);
      ai("summary_dim", c.encoder.summary_dim);
      ai("head_hidden", c.encoder.head_hidden);
    }
    if (auto f = root["flow"]) {
      static const std::set<std::string> kFlow = {"transform", "layers", "hidden", "context_hidden", "bins",
                                                  "tail_bound"};
      for (const auto& kv : f) {
        key = "flow." + kv.first.as<std::string>();
        if (!kFlow.count(kv.first.as<std::string>())) return Status::Error(file_name + ": unknown key '" + key + "'");
      }
      auto fi = [&](const char* k, int64_t& dst) { key = std::string("flow.") + k; if (f[k]) dst = f[k].as<int64_t>(); };
      key = "flow.transform";
      if (f["transform"]) c.flow.transform = f["transform"].as<std::string>();
      fi("layers", c.flow.layers);
      fi("hidden", c.flow.hidden);
      fi("context_hidden", c.flow.context_hidden);
      fi("bins", c.flow.bins);
      key = "flow.tail_bound";
      if (f["tail_bound"]) c.flow.tail_bound = f["tail_bound"].as<double>();
    }
  } catch (const YAML::Exception& ex) {
    return Status::Error(file_name + ": key '" + key + "': " + ex.what());
  }
  auto positive = [&](int64_t v, const char* k) -> Status {
    return v > 0 ? Status::OK() : Status::Error(file_name + ": " + k + " must be > 0");
  };
  CUBEFLOW_RETURN_NOT_OK(positive(c.epochs, "epochs"));
  CUBEFLOW_RETURN_NOT_OK(positive(c.batch_size, "batch_size"));
  CUBEFLOW_RETURN_NOT_OK(positive(c.flow_epochs, "flow_epochs"));
  CUBEFLOW_RETURN_NOT_OK(positive(c.flow_batch_size, "flow_batch_size"));
  CUBEFLOW_RETURN_NOT_OK(positive(c.eval_samples, "eval_samples"));
  if (!(c.lr > 0) || !(c.flow_lr > 0)) return Status::Error(file_name + ": lr and flow_lr must be > 0");
  if (!(c.lr_factor > 0 && c.lr_factor <= 1)) return Status::Error(file_name + ": lr_factor must be in (0, 1]");
  if (!(c.encoder_fraction > 0 && c.encoder_fraction <= 1))
    return Status::Error(file_name + ": encoder_fraction must be in (0, 1]");
  if (c.time_transform != "log_lookback" && c.time_transform != "linear")
    return Status::Error(file_name + ": time_transform must be 'log_lookback' or 'linear'");
  if (!(c.lookback_offset > 0)) return Status::Error(file_name + ": lookback_offset must be > 0 (Gyr)");
  if (c.flow_noise_draws < 1) return Status::Error(file_name + ": flow_noise_draws must be >= 1");
  if (!(c.flow_jitter >= 0 && c.flow_jitter < 1)) return Status::Error(file_name + ": flow_jitter must be in [0, 1)");
  Status st = c.flow.Validate();
  if (!st.ok()) return Status::Error(file_name + ": " + st.message());
  if (c.output.empty()) return Status::Error(file_name + ": 'output' (the model file to write) is required");
  return c;
}

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
  if (lib.wave.n != md.encoder.nwave)
    return Status::Error("library spectra have " + std::to_string(lib.wave.n) + " pixels, the model expects " +
                         std::to_string(md.encoder.nwave));
  if (md.encoder.nbands > 0 && lib.bands != md.input.bands)
    return Status::Error("the library's bands differ from the model's bands");
  if (n_samples < 2) return Status::Error("need at least 2 posterior samples per object");
  std::vector<int64_t> rows = rows_in;
  if (rows.empty()) {
    rows.resize(lib.n);
    std::iota(rows.begin(), rows.end(), 0);
  }
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
// Training
// ---------------------------------------------------------------------------------------

Result<TrainResult> Train(const TrainConfig& cfg, const sim::LibraryData& lib, const sim::LibraryData* flow_lib,
                          const std::function<void(const EpochReport&)>& progress, const volatile int* stop_flag) {
  CUBEFLOW_RETURN_NOT_OK(CheckLibrary(lib, "library " + cfg.library));
  const NoiseAugment* noise = cfg.augment_noise.enabled() ? &cfg.augment_noise : nullptr;
  auto has_noise = [](const sim::LibraryData& L) {
    for (float s : L.snr)
      if (s > 0) return true;
    return false;
  };
  if (noise && has_noise(lib))
    return Status::Error("augment_noise adds noise, but library " + cfg.library + " already has noise (SNR > 0): use a "
                         "noise-free library (simulator config noise: {enabled: false}) or drop augment_noise");
  if (flow_lib) {
    CUBEFLOW_RETURN_NOT_OK(CheckLibrary(*flow_lib, "flow library " + cfg.flow_library));
    if (flow_lib->wave.n != lib.wave.n || std::abs(flow_lib->wave.At(0) - lib.wave.At(0)) > 1e-6 ||
        std::abs(flow_lib->wave.cdelt - lib.wave.cdelt) > 1e-9)
      return Status::Error("flow library " + cfg.flow_library + " has another wavelength grid than " + cfg.library);
    if (cfg.photometry && flow_lib->bands != lib.bands)
      return Status::Error("flow library " + cfg.flow_library + " has other bands than " + cfg.library);
    if (noise && has_noise(*flow_lib))
      return Status::Error("augment_noise adds noise, but flow library " + cfg.flow_library + " already has noise");
  }
  TrainResult result;
  try {
    if (cfg.threads > 0) at::set_num_threads(cfg.threads);
    const int64_t n = cfg.max_rows > 0 ? std::min(cfg.max_rows, lib.n) : lib.n;
    const int64_t nw = lib.wave.n;
    const bool use_phot = cfg.photometry && !lib.bands.empty();
    const int64_t nb = use_phot ? static_cast<int64_t>(lib.bands.size()) : 0;

    // Split: train / validation / test; the encoder uses the first encoder_fraction of train.
    std::vector<int64_t> perm = Permutation(n, cfg.seed);
    const int64_t n_train = std::max<int64_t>(1, std::llround(n * cfg.train_fraction));
    const int64_t n_val = std::max<int64_t>(1, std::llround(n * cfg.val_fraction));
    if (n_train + n_val > n) return Status::Error("the library has too few rows (" + std::to_string(n) + ") to split");
    std::vector<int64_t> train_rows(perm.begin(), perm.begin() + n_train);
    std::vector<int64_t> val_rows(perm.begin() + n_train, perm.begin() + n_train + n_val);
    std::vector<int64_t> test_rows(perm.begin() + n_train + n_val, perm.end());
    const int64_t n_enc = std::clamp<int64_t>(std::llround(n_train * cfg.encoder_fraction), 1, n_train);
    std::vector<int64_t> enc_rows(train_rows.begin(), train_rows.begin() + n_enc);
    std::vector<int64_t> flow_rows;  // rows of flow_lib, or of lib
    std::string flow_source;
    if (flow_lib) {
      flow_rows.resize(flow_lib->n);
      std::iota(flow_rows.begin(), flow_rows.end(), 0);
      flow_source = "all " + std::to_string(flow_lib->n) + " rows of " + cfg.flow_library;
    } else if (n_enc < n_train) {
      flow_rows.assign(train_rows.begin() + n_enc, train_rows.end());
      flow_source = std::to_string(flow_rows.size()) + " training rows not used by the encoder";
    } else {
      flow_rows = train_rows;
      flow_source = "the encoder's " + std::to_string(n_train) + " training rows";
    }
    if (noise) flow_source += ", " + std::to_string(cfg.flow_noise_draws) + " fresh noise realisation(s) each";
    const sim::LibraryData& flib = flow_lib ? *flow_lib : lib;

    // Metadata: input conventions, parameters and their standardisation.
    SbiMetadata md;
    md.input.wave = lib.wave;
    md.input.rest_frame = true;
    md.input.norm_min = lib.norm_min;
    md.input.norm_max = lib.norm_max;
    if (use_phot) {
      md.input.bands = lib.bands;
      md.input.pivots = lib.pivots;
    }
    md.sigma_target = lib.sigma_target;
    md.ssp_name = lib.ssp_name;
    md.theta = DefaultTheta();
    for (auto& p : md.theta)
      if (p.unit == "Gyr") p.transform = cfg.time_transform;
    md.lookback_offset = cfg.lookback_offset;
    md.encoder = cfg.encoder;
    md.encoder.nwave = nw;
    md.encoder.nbands = nb;
    md.encoder.noise_input = cfg.noise_input;
    CUBEFLOW_RETURN_NOT_OK(md.encoder.Validate());
    md.flow = cfg.flow;
    md.flow.dim = static_cast<int64_t>(md.theta.size());
    md.flow.permutation_seed = cfg.seed;
    const int64_t D = md.flow.dim, SD = md.encoder.ContextDim();

    std::vector<int64_t> all_rows(n);
    std::iota(all_rows.begin(), all_rows.end(), 0);
    std::vector<float> theta_phys = TrueTheta(lib, all_rows, md.theta);
    {
      double tmax = -std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < D; ++k)
          if (md.theta[k].unit == "Gyr" && std::isfinite(theta_phys[i * D + k]))
            tmax = std::max<double>(tmax, theta_phys[i * D + k]);
      const double tu = UniverseAge(lib);
      md.lookback_reference = std::isfinite(tu) ? std::max(tu, tmax) : tmax;
      if (!std::isfinite(md.lookback_reference)) return Status::Error("the library has no finite T_MASS values");
    }
    for (int64_t k = 0; k < D; ++k) {  // mean / std of the transformed values on the encoder rows
      double s = 0, s2 = 0;
      int64_t c = 0;
      md.theta[k].mean = 0;
      md.theta[k].std = 1;
      for (int64_t i : enc_rows) {
        const double v = theta_phys[i * D + k];
        if (!std::isfinite(v)) continue;
        const double u = md.FromPhysical(static_cast<int>(k), v);  // mean 0, std 1 so far: u itself
        s += u;
        s2 += u * u;
        ++c;
      }
      if (c < 2) return Status::Error("parameter " + md.theta[k].name + " has fewer than 2 finite training values");
      md.theta[k].mean = s / c;
      md.theta[k].std = std::max(1e-6, std::sqrt(std::max(0.0, s2 / c - (s / c) * (s / c))));
    }
    auto standardise = [&](const std::vector<float>& phys) {
      const int64_t m = static_cast<int64_t>(phys.size()) / D;
      std::vector<float> y(phys.size());
      for (int64_t i = 0; i < m; ++i)
        for (int64_t k = 0; k < D; ++k) {
          const double v = phys[i * D + k];
          y[i * D + k] = std::isfinite(v) ? static_cast<float>(md.FromPhysical(static_cast<int>(k), v)) : NAN;
        }
      return y;
    };
    std::vector<float> theta_std_v = standardise(theta_phys);
    auto theta_std = torch::from_blob(theta_std_v.data(), {n, D}, torch::kFloat);

    // Photometry and noise-level statistics on the encoder rows.
    std::vector<float> spec_buf, phot_buf, snr_buf;
    {
      std::vector<double> lphot(static_cast<size_t>(nb), 0.0), lphot2(static_cast<size_t>(nb), 0.0);
      double s = 0, s2 = 0, mn = std::numeric_limits<double>::infinity(), mx = -mn;
      int64_t c = 0;
      for (size_t f = 0; f < enc_rows.size(); f += 1024) {
        std::vector<int64_t> sub(enc_rows.begin() + f, enc_rows.begin() + std::min(enc_rows.size(), f + 1024));
        GatherSbiInputs(lib, sub, nb, md.input.norm_min, md.input.norm_max, spec_buf, phot_buf, snr_buf, noise,
                        cfg.seed, kEncStream);
        for (size_t r = 0; r < sub.size(); ++r) {
          for (int64_t b = 0; b < nb; ++b) {
            const double l = std::log10(std::max<double>(std::isfinite(phot_buf[r * nb + b]) ? phot_buf[r * nb + b] : 0.0,
                                                         md.phot_floor));
            lphot[b] += l;
            lphot2[b] += l * l;
          }
          const double v = snr_buf[r];
          if (!(v > 0)) continue;
          const double l = std::log10(v);
          s += l;
          s2 += l * l;
          mn = std::min(mn, v);
          mx = std::max(mx, v);
          ++c;
        }
      }
      if (cfg.noise_input && c == 0)
        return Status::Error("noise_input: library " + cfg.library + " has no noise (neither SPEC_ERR nor SNR) to take the "
                             "S/N from: use a noisy library, augment_noise, or noise_input: false");
      if (c > 0) {
        md.snr_log_mean = s / c;
        md.snr_log_std = std::max(0.05, std::sqrt(std::max(0.0, s2 / c - (s / c) * (s / c))));
        md.snr_min = mn;
        md.snr_max = mx;
      }
      const double m = static_cast<double>(enc_rows.size());
      for (int64_t b = 0; b < nb; ++b) {
        md.phot_mean.push_back(lphot[b] / m);
        md.phot_std.push_back(std::max(1e-6, std::sqrt(std::max(0.0, lphot2[b] / m - std::pow(lphot[b] / m, 2)))));
      }
    }
    auto impl = std::make_unique<SbiModel::Impl>();
    impl->md = md;
    // Network inputs of library rows (noise drawn from `stream` when augmenting).
    struct Inputs {
      torch::Tensor spec, phot, noise;
    };
    auto make_inputs = [&](const sim::LibraryData& L, const std::vector<int64_t>& rows, uint64_t stream) {
      GatherSbiInputs(L, rows, nb, md.input.norm_min, md.input.norm_max, spec_buf, phot_buf, snr_buf, noise, cfg.seed,
                      stream);
      const int64_t c = static_cast<int64_t>(rows.size());
      Inputs in;
      in.spec = torch::from_blob(spec_buf.data(), {c, nw}, torch::kFloat).clone();
      in.phot = nb > 0 ? impl->TransformPhot(torch::from_blob(phot_buf.data(), {c, nb}, torch::kFloat)).clone()
                       : torch::zeros({c, 0});
      in.noise = impl->NoiseFeature(torch::from_blob(snr_buf.data(), {c}, torch::kFloat)).clone();
      return in;
    };

    torch::manual_seed(cfg.seed);
    SbiNet net(md.encoder, md.flow), best(md.encoder, md.flow);
    cnn::GlorotInit(*net->encoder);
    CopyModuleState(*net, *best);

    // ---- checkpoint state ----
    const std::string ckpt = cfg.checkpoint.empty() ? cfg.output + ".ckpt" : cfg.checkpoint;
    int stage = 1;
    int64_t start_epoch = 0, best_epoch = 0, since_best = 0, since_lr = 0;
    double best_val = std::numeric_limits<double>::infinity(), lr_scale = 1.0, prior_seconds = 0;
    int64_t enc_best_epoch = 0;
    double enc_best_val = std::numeric_limits<double>::infinity();
    auto vec_tensor = [](const std::vector<double>& v) {
      return torch::tensor(v.empty() ? std::vector<double>{0.0} : v, torch::kDouble).narrow(0, 0, static_cast<int64_t>(v.size()));
    };
    torch::serialize::InputArchive resume_opt;
    bool have_resume_opt = false;
    std::map<std::string, double> encoder_from_metrics;
    if (!cfg.encoder_from.empty() && !(cfg.resume && fs::exists(ckpt))) {
      // Take the encoder of a trained model; check that it saw the same inputs and targets.
      const std::string src = cfg.encoder_from;
      auto smd = ReadMetadata(MetadataPath(src));
      if (!smd.ok()) return Status::Error("encoder_from: " + smd.status().message());
      const auto& a = smd->encoder;
      const auto& b = md.encoder;
      std::string diff;
      auto same = [](double x, double y) { return std::abs(x - y) <= 1e-6 * (1.0 + std::abs(x)); };
      if (a.nwave != b.nwave || a.nbands != b.nbands || a.noise_input != b.noise_input || a.channels != b.channels ||
          a.kernels != b.kernels || a.pools != b.pools || a.attention != b.attention || a.attention_dim != b.attention_dim ||
          a.spec_hidden != b.spec_hidden || a.spec_features != b.spec_features || a.phot_hidden != b.phot_hidden ||
          a.phot_features != b.phot_features || a.fusion_hidden != b.fusion_hidden || a.summary_dim != b.summary_dim ||
          a.head_hidden != b.head_hidden)
        diff = "encoder architecture";
      else if (smd->theta.size() != md.theta.size())
        diff = "parameters";
      for (size_t k = 0; diff.empty() && k < md.theta.size(); ++k)
        if (smd->theta[k].name != md.theta[k].name || smd->theta[k].transform != md.theta[k].transform ||
            !same(smd->theta[k].mean, md.theta[k].mean) || !same(smd->theta[k].std, md.theta[k].std))
          diff = "standardisation of " + md.theta[k].name;
      for (size_t k = 0; diff.empty() && k < md.phot_mean.size(); ++k)
        if (k >= smd->phot_mean.size() || !same(smd->phot_mean[k], md.phot_mean[k]) || !same(smd->phot_std[k], md.phot_std[k]))
          diff = "photometry standardisation";
      if (diff.empty() && (!same(smd->snr_log_mean, md.snr_log_mean) || !same(smd->snr_log_std, md.snr_log_std)))
        diff = "S/N standardisation";
      if (!diff.empty())
        return Status::Error("encoder_from: " + src + " differs from this configuration in its " + diff +
                             " (it must come from the same library, split, seed and encoder settings)");
      torch::serialize::InputArchive ar, ea;
      ar.load_from(src);
      ar.read("encoder", ea);
      net->encoder->load(ea);
      CopyModuleState(*net->encoder, *best->encoder);
      for (const char* k : {"encoder_best_val_logcosh", "encoder_best_epoch", "encoder_epochs_run"})
        if (smd->metrics.count(k)) encoder_from_metrics[k] = smd->metrics.at(k);
      enc_best_val = encoder_from_metrics.count("encoder_best_val_logcosh") ? encoder_from_metrics["encoder_best_val_logcosh"] : NAN;
      enc_best_epoch = encoder_from_metrics.count("encoder_best_epoch") ? static_cast<int64_t>(encoder_from_metrics["encoder_best_epoch"]) : 0;
      stage = 2;
      std::cerr << "cubeflow train: encoder taken from " << src << "; training the flow only\n";
    }
    if (cfg.resume && !fs::exists(ckpt))
      std::cerr << "cubeflow train: no checkpoint " << ckpt << " to resume from; starting from the beginning\n";
    if (cfg.resume && fs::exists(ckpt)) {
      torch::serialize::InputArchive ar;
      ar.load_from(ckpt);
      torch::Tensor t;
      auto scalar = [&](const char* k) { ar.read(k, t); return t.item<double>(); };
      if (static_cast<uint64_t>(scalar("seed")) != cfg.seed % (1ull << 52) || static_cast<int64_t>(scalar("n_rows")) != n ||
          static_cast<int64_t>(scalar("nwave")) != nw || static_cast<int64_t>(scalar("nbands")) != nb ||
          static_cast<int64_t>(scalar("n_flow_rows")) != static_cast<int64_t>(flow_rows.size()))
        return Status::Error("checkpoint " + ckpt + " was written for another seed, library size, flow library or "
                             "input shape; delete it or train without --resume");
      torch::serialize::InputArchive m, b;
      ar.read("model", m);
      net->load(m);
      ar.read("best_model", b);
      best->load(b);
      if (scalar("has_optimizer") > 0) {
        ar.read("optimizer", resume_opt);
        have_resume_opt = true;
      }
      stage = static_cast<int>(scalar("stage"));
      start_epoch = static_cast<int64_t>(scalar("epoch"));
      best_epoch = static_cast<int64_t>(scalar("best_epoch"));
      since_best = static_cast<int64_t>(scalar("since_best"));
      since_lr = static_cast<int64_t>(scalar("since_lr"));
      best_val = scalar("best_val");
      lr_scale = scalar("lr_scale");
      prior_seconds = scalar("seconds");
      enc_best_epoch = static_cast<int64_t>(scalar("enc_best_epoch"));
      enc_best_val = scalar("enc_best_val");
      auto read_vec = [&](const char* k, std::vector<double>& v) {
        ar.read(k, t);
        t = t.contiguous();
        v.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
      };
      read_vec("encoder_train", result.encoder_train);
      read_vec("encoder_val", result.encoder_val);
      read_vec("flow_train", result.flow_train);
      read_vec("flow_val", result.flow_val);
      std::cerr << "cubeflow train: resuming from " << ckpt << " (" << (stage == 1 ? "encoder" : "flow")
                << " stage, after epoch " << start_epoch << ")\n";
    }
    const auto run_start = std::chrono::steady_clock::now();
    auto elapsed = [&]() {
      return prior_seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    };
    auto save_checkpoint = [&](int st, int64_t epochs_done, torch::optim::Optimizer* opt) {
      torch::serialize::OutputArchive ar, m, b, o;
      net->save(m);
      best->save(b);
      if (opt) {
        opt->save(o);
        ar.write("optimizer", o);
      }
      ar.write("model", m);
      ar.write("best_model", b);
      auto w = [&](const char* k, double v) { ar.write(k, torch::tensor(v, torch::kDouble)); };
      w("stage", st);
      w("has_optimizer", opt ? 1.0 : 0.0);
      w("epoch", static_cast<double>(epochs_done));
      w("best_epoch", static_cast<double>(best_epoch));
      w("since_best", static_cast<double>(since_best));
      w("since_lr", static_cast<double>(since_lr));
      w("best_val", best_val);
      w("lr_scale", lr_scale);
      w("seconds", elapsed());
      w("enc_best_epoch", static_cast<double>(enc_best_epoch));
      w("enc_best_val", enc_best_val);
      w("seed", static_cast<double>(cfg.seed % (1ull << 52)));
      w("n_rows", static_cast<double>(n));
      w("nwave", static_cast<double>(nw));
      w("nbands", static_cast<double>(nb));
      w("n_flow_rows", static_cast<double>(flow_rows.size()));
      ar.write("encoder_train", vec_tensor(result.encoder_train));
      ar.write("encoder_val", vec_tensor(result.encoder_val));
      ar.write("flow_train", vec_tensor(result.flow_train));
      ar.write("flow_val", vec_tensor(result.flow_val));
      auto parent = fs::path(ckpt).parent_path();
      if (!parent.empty()) fs::create_directories(parent);
      ar.save_to(ckpt + ".tmp");
      fs::rename(ckpt + ".tmp", ckpt);
    };
    auto set_lr = [](torch::optim::Adam& opt, double lr) {
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
    };
    auto epoch_rng = [&](int st, int64_t epoch) {
      return std::mt19937_64(cfg.seed * 6364136223846793005ull + 1442695040888963407ull * (epoch + 1) +
                             0x9E3779B97F4A7C15ull * static_cast<uint64_t>(st));
    };
    bool stopped = false;

    // ---- stage 1: encoder + Log-Cosh head ----
    if (stage == 2 && start_epoch == 0 && !cfg.encoder_from.empty() && !(cfg.resume && fs::exists(ckpt)))
      save_checkpoint(2, 0, nullptr);  // resumable from the flow stage
    if (stage == 1) {
      torch::optim::Adam opt(net->encoder->parameters(), torch::optim::AdamOptions(cfg.lr));
      if (have_resume_opt) opt.load(resume_opt);
      // Validation inputs: one fixed noise realisation.
      std::vector<Inputs> val_in;
      for (size_t f = 0; f < val_rows.size(); f += 256) {
        std::vector<int64_t> sub(val_rows.begin() + f, val_rows.begin() + std::min(val_rows.size(), f + 256));
        val_in.push_back(make_inputs(lib, sub, kValStream));
      }
      auto val_loss = [&](Encoder& enc) {
        torch::NoGradGuard guard;
        enc->eval();
        double total = 0;
        int64_t count = 0;
        for (size_t ci = 0; ci < val_in.size(); ++ci) {
          const auto& in = val_in[ci];
          const int64_t c = in.spec.size(0);
          auto y = theta_std.index_select(0, RowsTensor(val_rows, ci * 256, c));
          total += LogCosh(enc->Head(enc->forward(in.spec, in.phot, in.noise)), y).item<double>() * c;
          count += c;
        }
        enc->train();
        return total / std::max<int64_t>(count, 1);
      };
      const int64_t bs = cfg.batch_size;
      const auto stage_start = std::chrono::steady_clock::now();
      int64_t epoch = start_epoch;
      for (; epoch < cfg.epochs; ++epoch) {
        const double lr = cfg.lr * std::max(1.0 - static_cast<double>(epoch) / cfg.epochs, 1e-3) * lr_scale;
        set_lr(opt, lr);
        net->encoder->train();
        std::vector<int64_t> order = enc_rows;
        auto rng = epoch_rng(1, epoch);
        std::shuffle(order.begin(), order.end(), rng);
        int64_t nbatch = (static_cast<int64_t>(order.size()) + bs - 1) / bs;
        if (cfg.batches_per_epoch > 0) nbatch = std::min(nbatch, cfg.batches_per_epoch);
        double total = 0;
        int64_t seen = 0;
        for (int64_t bi = 0; bi < nbatch; ++bi) {
          if (stop_flag && *stop_flag) {
            result.interrupted = true;
            break;
          }
          const size_t f = bi * bs, c = std::min<size_t>(bs, order.size() - f);
          std::vector<int64_t> sub(order.begin() + f, order.begin() + f + c);
          auto in = make_inputs(lib, sub, kEncStream + 1 + static_cast<uint64_t>(epoch));
          auto y = theta_std.index_select(0, RowsTensor(sub, 0, c));
          auto loss = LogCosh(net->encoder->Head(net->encoder->forward(in.spec, in.phot, in.noise)), y);
          opt.zero_grad();
          loss.backward();
          opt.step();
          total += loss.item<double>() * c;
          seen += static_cast<int64_t>(c);
        }
        if (result.interrupted) break;
        const double train_loss = total / std::max<int64_t>(seen, 1);
        const double vl = val_loss(net->encoder);
        result.encoder_train.push_back(train_loss);
        result.encoder_val.push_back(vl);
        if (vl < best_val) {
          best_val = vl;
          best_epoch = epoch + 1;
          since_best = since_lr = 0;
          CopyModuleState(*net->encoder, *best->encoder);
        } else {
          ++since_best;
          if (++since_lr >= cfg.lr_patience) {
            lr_scale *= cfg.lr_factor;
            since_lr = 0;
          }
        }
        stopped = since_best >= cfg.stop_patience;
        enc_best_val = best_val;
        enc_best_epoch = best_epoch;
        save_checkpoint(1, epoch + 1, &opt);
        if (progress) {
          const double run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - stage_start).count();
          EpochReport rep;
          rep.stage = "encoder";
          rep.epoch = epoch + 1;
          rep.epochs = cfg.epochs;
          rep.train_loss = train_loss;
          rep.val_loss = vl;
          rep.best_val = best_val;
          rep.best_epoch = best_epoch;
          rep.lr = lr;
          rep.elapsed_s = elapsed();
          rep.eta_s = run_s / (epoch + 1 - start_epoch) * (cfg.epochs - epoch - 1);
          rep.stopped_early = stopped;
          progress(rep);
        }
        if (stopped) {
          ++epoch;
          break;
        }
      }
      result.encoder_epochs = epoch;
      if (result.interrupted) {
        result.seconds = elapsed();
        return result;
      }
      // Switch to the flow stage: a checkpoint at flow epoch 0 (fresh counters).
      stage = 2;
      start_epoch = 0;
      best_epoch = since_best = since_lr = 0;
      best_val = std::numeric_limits<double>::infinity();
      lr_scale = 1.0;
      have_resume_opt = false;
      stopped = false;
      save_checkpoint(2, 0, nullptr);
    } else {
      result.encoder_epochs = static_cast<int64_t>(result.encoder_train.size());
    }

    // ---- stage 2: flow on the frozen best encoder's summaries ----
    auto summarise = [&](const sim::LibraryData& L, const std::vector<int64_t>& rows, uint64_t stream) {
      torch::NoGradGuard guard;
      best->encoder->eval();
      torch::Tensor out = torch::empty({static_cast<int64_t>(rows.size()), SD});
      for (size_t f = 0; f < rows.size(); f += 256) {
        const size_t c = std::min<size_t>(256, rows.size() - f);
        std::vector<int64_t> sub(rows.begin() + f, rows.begin() + f + c);
        auto in = make_inputs(L, sub, stream);
        auto s = best->encoder->forward(in.spec, in.phot, in.noise);
        if (md.encoder.noise_input) s = torch::cat({s, in.noise}, 1);
        out.narrow(0, static_cast<int64_t>(f), static_cast<int64_t>(c)).copy_(s);
      }
      return out;
    };
    auto keep_finite = [&](const std::vector<float>& y) {
      std::vector<int64_t> keep;  // positions with all parameters finite
      for (size_t r = 0; r < y.size() / D; ++r) {
        bool ok = true;
        for (int64_t k = 0; k < D; ++k) ok = ok && std::isfinite(y[r * D + k]);
        if (ok) keep.push_back(static_cast<int64_t>(r));
      }
      return keep;
    };
    const int64_t draws = noise ? std::max<int64_t>(1, cfg.flow_noise_draws) : 1;
    std::vector<float> ftheta1 = standardise(TrueTheta(flib, flow_rows, md.theta)), ftheta;
    for (int64_t d = 0; d < draws; ++d) ftheta.insert(ftheta.end(), ftheta1.begin(), ftheta1.end());
    std::vector<float> vtheta = standardise(TrueTheta(lib, val_rows, md.theta));
    auto fkeep = keep_finite(ftheta), vkeep = keep_finite(vtheta);
    if (fkeep.empty() || vkeep.empty()) return Status::Error("no flow training or validation rows with finite parameters");
    auto fkeep_t = RowsTensor(fkeep, 0, fkeep.size()), vkeep_t = RowsTensor(vkeep, 0, vkeep.size());
    std::vector<torch::Tensor> fparts;
    for (int64_t d = 0; d < draws; ++d) fparts.push_back(summarise(flib, flow_rows, kFlowStream + d));
    auto fsum = torch::cat(fparts, 0).index_select(0, fkeep_t);
    auto vsum = summarise(lib, val_rows, kValStream).index_select(0, vkeep_t);
    auto fy = torch::from_blob(ftheta.data(), {static_cast<int64_t>(ftheta.size()) / D, D}, torch::kFloat).index_select(0, fkeep_t);
    auto vy = torch::from_blob(vtheta.data(), {static_cast<int64_t>(val_rows.size()), D}, torch::kFloat).index_select(0, vkeep_t);
    {
      torch::NoGradGuard guard;
      auto m = fsum.mean(0), s = fsum.std(0).clamp_min(1e-6);
      for (auto* f : {&net->flow, &best->flow}) {
        (*f)->ctx_mean.copy_(m);
        (*f)->ctx_std.copy_(s);
      }
    }
    torch::optim::Adam fopt(net->flow->parameters(), torch::optim::AdamOptions(cfg.flow_lr));
    if (have_resume_opt) fopt.load(resume_opt);
    auto flow_val = [&](Flow& fl) {
      torch::NoGradGuard guard;
      double total = 0;
      const int64_t m = vsum.size(0);
      for (int64_t f = 0; f < m; f += 1024) {
        const int64_t c = std::min<int64_t>(1024, m - f);
        total += -fl->LogProb(vy.narrow(0, f, c), fl->Embed(vsum.narrow(0, f, c))).sum().item<double>();
      }
      return total / std::max<int64_t>(m, 1);
    };
    {
      const int64_t m = fsum.size(0), bs = cfg.flow_batch_size;
      std::vector<int64_t> idx_all(m);
      std::iota(idx_all.begin(), idx_all.end(), 0);
      std::vector<float> jitter;
      const auto stage_start = std::chrono::steady_clock::now();
      int64_t epoch = start_epoch;
      for (; epoch < cfg.flow_epochs; ++epoch) {
        const double lr = cfg.flow_lr * std::max(1.0 - static_cast<double>(epoch) / cfg.flow_epochs, 1e-3) * lr_scale;
        set_lr(fopt, lr);
        std::vector<int64_t> order = idx_all;
        auto rng = epoch_rng(2, epoch);
        std::shuffle(order.begin(), order.end(), rng);
        int64_t nbatch = (m + bs - 1) / bs;
        if (cfg.flow_batches_per_epoch > 0) nbatch = std::min(nbatch, cfg.flow_batches_per_epoch);
        sim::Rng jrng(cfg.seed, static_cast<uint64_t>(epoch), kJitterStream);
        const double jitter_sd =
            cfg.flow_jitter * (cfg.flow_jitter_anneal ? 1.0 - static_cast<double>(epoch) / cfg.flow_epochs : 1.0);
        double total = 0;
        int64_t seen = 0;
        for (int64_t bi = 0; bi < nbatch; ++bi) {
          if (stop_flag && *stop_flag) {
            result.interrupted = true;
            break;
          }
          const size_t f = bi * bs, c = std::min<size_t>(bs, order.size() - f);
          auto idx = RowsTensor(order, f, c);
          auto y = fy.index_select(0, idx);
          if (jitter_sd > 0) {
            jitter.resize(c * D);
            for (auto& v : jitter) v = static_cast<float>(jitter_sd * jrng.Normal());
            y = y + torch::from_blob(jitter.data(), {static_cast<int64_t>(c), D}, torch::kFloat);
          }
          auto nll = -net->flow->LogProb(y, net->flow->Embed(fsum.index_select(0, idx))).mean();
          fopt.zero_grad();
          nll.backward();
          fopt.step();
          total += nll.item<double>() * c;
          seen += static_cast<int64_t>(c);
        }
        if (result.interrupted) break;
        const double train_loss = total / std::max<int64_t>(seen, 1);
        const double vl = flow_val(net->flow);
        result.flow_train.push_back(train_loss);
        result.flow_val.push_back(vl);
        if (vl < best_val) {
          best_val = vl;
          best_epoch = epoch + 1;
          since_best = since_lr = 0;
          CopyModuleState(*net->flow, *best->flow);
        } else {
          ++since_best;
          if (++since_lr >= cfg.flow_lr_patience) {
            lr_scale *= cfg.lr_factor;
            since_lr = 0;
          }
        }
        stopped = since_best >= cfg.flow_stop_patience;
        save_checkpoint(2, epoch + 1, &fopt);
        if (progress) {
          const double run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - stage_start).count();
          EpochReport rep;
          rep.stage = "flow";
          rep.epoch = epoch + 1;
          rep.epochs = cfg.flow_epochs;
          rep.train_loss = train_loss;
          rep.val_loss = vl;
          rep.best_val = best_val;
          rep.best_epoch = best_epoch;
          rep.lr = lr;
          rep.elapsed_s = elapsed();
          rep.eta_s = run_s / (epoch + 1 - start_epoch) * (cfg.flow_epochs - epoch - 1);
          rep.stopped_early = stopped;
          progress(rep);
        }
        if (stopped) {
          ++epoch;
          break;
        }
      }
      result.flow_epochs = epoch;
    }
    result.encoder_best_epoch = enc_best_epoch;
    result.encoder_best_val = enc_best_val;
    result.flow_best_epoch = best_epoch;
    result.flow_best_val = best_val;
    result.seconds = elapsed();
    if (result.interrupted) return result;

    // ---- final model: best encoder + best flow, test metrics, metadata ----
    best->eval();
    impl->net = best;
    SbiModel model(std::move(impl));
    auto& mmd = model.mutable_metadata();
    if (!test_rows.empty()) {
      auto cal = EvaluateCalibration(model, lib, test_rows, cfg.eval_samples, cfg.seed, cfg.threads, false, noise);
      if (cal.ok()) {
        for (size_t k = 0; k < cal->names.size(); ++k) {
          const std::string& nm = cal->names[k];
          result.test_metrics["r2_" + nm] = cal->r2[k];
          result.test_metrics["scatter_" + nm] = cal->scatter[k];
          result.test_metrics["max_coverage_dev_" + nm] = cal->max_coverage_dev[k];
          // Coverage of the central 68 % interval, interpolated between the levels 0.6 and 0.7.
          result.test_metrics["coverage68_" + nm] = cal->coverage[k][5] + 0.8 * (cal->coverage[k][6] - cal->coverage[k][5]);
        }
        result.test_metrics["test_n"] = static_cast<double>(cal->n);
        result.test_metrics["test_samples_per_object"] = static_cast<double>(cfg.eval_samples);
      } else {
        std::cerr << "cubeflow train: warning: test metrics failed: " << cal.status().message() << "\n";
      }
    }
    mmd.metrics = result.test_metrics;
    mmd.metrics["encoder_best_val_logcosh"] = enc_best_val;
    mmd.metrics["encoder_best_epoch"] = static_cast<double>(enc_best_epoch);
    mmd.metrics["flow_best_val_nll"] = best_val;
    mmd.metrics["flow_best_epoch"] = static_cast<double>(best_epoch);
    mmd.metrics["encoder_epochs_run"] = static_cast<double>(result.encoder_epochs);
    if (!cfg.encoder_from.empty()) {
      for (const auto& [k, v] : encoder_from_metrics) mmd.metrics[k] = v;
      mmd.training["encoder_from"] = cfg.encoder_from;
    }
    mmd.metrics["flow_epochs_run"] = static_cast<double>(result.flow_epochs);
    mmd.training["library"] = cfg.library;
    if (flow_lib) mmd.training["flow_library"] = cfg.flow_library;
    mmd.training["n_library"] = std::to_string(lib.n);
    mmd.training["n_used"] = std::to_string(n);
    mmd.training["n_train"] = std::to_string(n_train);
    mmd.training["n_encoder"] = std::to_string(n_enc);
    mmd.training["n_flow"] = std::to_string(fkeep.size());
    mmd.training["flow_rows"] = flow_source;
    mmd.training["n_val"] = std::to_string(n_val);
    mmd.training["n_test"] = std::to_string(test_rows.size());
    if (noise) {
      std::ostringstream a;
      for (size_t i = 0; i < noise->snr.size(); ++i) a << (i ? ", " : "") << noise->snr[i];
      mmd.training["snr_mix"] = "augmented: S/N drawn from {" + a.str() + "}, photometry S/N " +
                                std::to_string(noise->phot_snr) + "; noise-free library";
    } else {
      mmd.training["snr_mix"] = SnrMix(lib);
    }
    mmd.training["seconds"] = std::to_string(result.seconds);
    mmd.training["time"] = FormatDuration(result.seconds);
    mmd.training["threads"] = std::to_string(at::get_num_threads());
    for (const auto& [k, v] : lib.meta) mmd.training["library_" + k] = v;
    mmd.config_yaml = cfg.config_yaml;
    CUBEFLOW_RETURN_NOT_OK(model.Save(cfg.output));
  } catch (const std::exception& ex) {
    return Status::Error(std::string("SBI training failed: ") + ex.what());
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

int TrainMain(int argc, char** argv) {
  const char* usage = "usage: cubeflow train CONFIG.yaml [--resume] [--threads N]\n";
  std::string config_path;
  bool resume = false;
  int threads = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--resume") {
      resume = true;
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "-h" || a == "--help") {
      std::cout << usage << "Trains an SBI model (kind: sbi) on a simulated library; keys are in docs/sbi.md.\n";
      return 0;
    } else if (config_path.empty() && !a.empty() && a[0] != '-') {
      config_path = a;
    } else {
      std::cerr << "cubeflow train: unexpected argument '" << a << "'\n" << usage;
      return 2;
    }
  }
  if (config_path.empty()) {
    std::cerr << usage;
    return 2;
  }
  std::ifstream in(config_path);
  if (!in) {
    std::cerr << "cubeflow train: cannot read " << config_path << "\n";
    return 1;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto cfg_r = ParseTrainConfig(text.str(), config_path);
  if (!cfg_r.ok()) {
    std::cerr << "cubeflow train: " << cfg_r.status().message() << "\n";
    return 1;
  }
  TrainConfig cfg = *cfg_r;
  cfg.resume = resume;
  if (threads > 0) cfg.threads = threads;
  const fs::path base = fs::absolute(config_path).parent_path();
  auto resolve = [&](std::string& p) {
    if (!p.empty() && fs::path(p).is_relative()) p = (base / p).lexically_normal().string();
  };
  if (cfg.library.empty()) {
    std::cerr << "cubeflow train: " << config_path << ": 'library' (the simulated library FITS file) is required\n";
    return 1;
  }
  resolve(cfg.library);
  resolve(cfg.flow_library);
  resolve(cfg.output);
  resolve(cfg.checkpoint);
  resolve(cfg.encoder_from);
  std::cerr << "cubeflow train: reading " << cfg.library << "\n";
  auto lib = sim::ReadLibrary(cfg.library, 0, cfg.max_rows);
  if (!lib.ok()) {
    std::cerr << "cubeflow train: " << lib.status().message() << "\n";
    return 1;
  }
  std::cerr << "cubeflow train: SBI model; " << lib->n << " objects, " << lib->wave.n << " pixels, "
            << (cfg.photometry ? lib->bands.size() : 0) << " bands; S/N mix " << SnrMix(*lib) << "\n";
  std::unique_ptr<sim::LibraryData> flow_lib;
  if (!cfg.flow_library.empty()) {
    std::cerr << "cubeflow train: reading the flow library " << cfg.flow_library << "\n";
    auto fl = sim::ReadLibrary(cfg.flow_library);
    if (!fl.ok()) {
      std::cerr << "cubeflow train: " << fl.status().message() << "\n";
      return 1;
    }
    flow_lib = std::make_unique<sim::LibraryData>(std::move(fl).ValueOrThrow());
  }
  g_stop_flag = 0;
  auto old = std::signal(SIGINT, SbiTrainOnSigint);
  auto res = Train(cfg, *lib, flow_lib.get(), [](const EpochReport& r) {
    std::fprintf(stderr, "%s epoch %lld/%lld  train %.6f  val %.6f  best %.6f (epoch %lld)  lr %.3g  elapsed %s  eta %s%s\n",
                 r.stage.c_str(), static_cast<long long>(r.epoch), static_cast<long long>(r.epochs), r.train_loss,
                 r.val_loss, r.best_val, static_cast<long long>(r.best_epoch), r.lr, FormatDuration(r.elapsed_s).c_str(),
                 FormatDuration(r.eta_s).c_str(), r.stopped_early ? "  (early stop)" : "");
  }, &g_stop_flag);
  std::signal(SIGINT, old);
  if (!res.ok()) {
    std::cerr << "cubeflow train: " << res.status().message() << "\n";
    return 1;
  }
  if (res->interrupted) {
    std::cerr << "cubeflow train: interrupted; resume with --resume\n";
    return 130;
  }
  std::cerr << "cubeflow train: wrote " << cfg.output << " (+ " << MetadataPath(cfg.output) << "); encoder best epoch "
            << res->encoder_best_epoch << " (val Log-Cosh " << res->encoder_best_val << "), flow best epoch "
            << res->flow_best_epoch << " (val NLL " << res->flow_best_val << ")\n";
  for (const auto& [k, v] : res->test_metrics) std::cerr << "  test " << k << " = " << v << "\n";
  return 0;
}

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
  std::printf("\nflow sampling: %.0f samples/s (threads %d); total %.1f s\n", c.samples_per_s, at::get_num_threads(),
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
      if (auto st = WriteTextAtomic(d + name, text); !st.ok()) return fail(st.message());

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
