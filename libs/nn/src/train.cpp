// Training and evaluation of the CNN, and the `cubeflow train` / `cubeflow evaluate` commands.
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <Eigen/Dense>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "cubeflow/nn/commands.hpp"
#include "cubeflow/nn/train.hpp"
#include "net.hpp"

#include "cubeflow/sim/library.hpp"

namespace cubeflow::cnn {

namespace {

namespace fs = std::filesystem;

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>((t / 60) % 60), static_cast<long long>(t % 60));
  return buf;
}

/// Mean log(cosh(pred - target)) over finite targets (numerically stable form).
torch::Tensor LogCosh(const torch::Tensor& pred, const torch::Tensor& target) {
  auto valid = torch::isfinite(target);
  auto d = torch::where(valid, pred - torch::nan_to_num(target, 0.0), torch::zeros_like(pred));
  auto a = d.abs();
  auto lc = a + torch::log1p(torch::exp(-2.0 * a)) - std::log(2.0);
  auto count = valid.sum().clamp_min(1);
  return (lc * valid).sum() / count;
}

torch::Tensor PaperLoss(const torch::Tensor& mf_pred, const torch::Tensor& zh_pred, const torch::Tensor& mf,
                        const torch::Tensor& zh, double w_sfh) {
  return w_sfh * LogCosh(mf_pred, mf) + (1.0 - w_sfh) * LogCosh(zh_pred, zh);
}

/// Eq. 6 light-weighted mean log age of mass fractions `mf` [B, 16] with light-to-mass ratios
/// `lm` [B, 16] and bin log ages `logt` [16].
torch::Tensor LightWeightedLogAge(const torch::Tensor& mf, const torch::Tensor& lm, const torch::Tensor& logt) {
  auto l = mf.clamp_min(0) * lm;
  return (l * logt).sum(1) / l.sum(1).clamp_min(1e-12);
}

/// The paper's loss plus, when w_lw > 0, Log-Cosh on the light-weighted mean log age.
torch::Tensor TrainLoss(const torch::Tensor& mf_pred, const torch::Tensor& zh_pred, const torch::Tensor& mf,
                        const torch::Tensor& zh, const torch::Tensor& lm, const torch::Tensor& logt, double w_sfh,
                        double w_lw) {
  auto loss = PaperLoss(mf_pred, zh_pred, mf, zh, w_sfh);
  if (w_lw > 0 && lm.defined() && lm.numel() > 0)
    loss = loss + w_lw * LogCosh(LightWeightedLogAge(mf_pred, lm, logt), LightWeightedLogAge(mf, lm, logt));
  return loss;
}

/// Adds the forward model's noise to a batch of noise-free inputs: per object an S/N drawn from
/// `snr`, pixel sigma sqrt(max(f, 1e-4)) / S/N (as in the simulator); photometry gets
/// |F| / phot_snr, i.e. 0.4343 / phot_snr dex, divided by the band's standardisation scale.
std::pair<torch::Tensor, torch::Tensor> AddNoise(const torch::Tensor& spec, const torch::Tensor& phot,
                                                 const std::vector<double>& snr, double phot_snr,
                                                 const std::vector<double>& phot_std, at::Generator& gen) {
  const int64_t b = spec.size(0);
  auto choice = torch::randint(static_cast<int64_t>(snr.size()), {b}, gen, torch::kLong);
  auto snr_t = torch::tensor(snr, torch::kDouble).to(torch::kFloat).index_select(0, choice).unsqueeze(1);
  auto noisy = spec + torch::sqrt(torch::clamp_min(spec, 1e-4)) / snr_t * torch::randn(spec.sizes(), gen);
  torch::Tensor p = phot;
  if (phot.size(1) > 0 && phot_snr > 0) {
    auto sd = torch::tensor(phot_std, torch::kDouble).to(torch::kFloat).unsqueeze(0);
    p = phot + (0.4342944819 / phot_snr) / sd * torch::randn(phot.sizes(), gen);
  }
  return {noisy, p};
}

void CopyState(CnnNet& src, CnnNet& dst) {
  torch::NoGradGuard guard;
  auto dp = dst->named_parameters();
  for (const auto& p : src->named_parameters()) dp[p.key()].copy_(p.value());
  auto db = dst->named_buffers();
  for (const auto& b : src->named_buffers()) db[b.key()].copy_(b.value());
}

torch::Tensor RowsTensor(const std::vector<int64_t>& rows, size_t first, size_t count) {
  return torch::from_blob(const_cast<int64_t*>(rows.data() + first), {static_cast<int64_t>(count)}, torch::kLong);
}

std::vector<int64_t> Permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

/// Library arrays as tensors (views, no copy) plus transformed photometry.
struct Dataset {
  torch::Tensor spec, phot, mf, zh;
};

template <typename T>
torch::Tensor View(const std::vector<T>& v, int64_t n, int64_t w) {
  return torch::from_blob(const_cast<T*>(v.data()), {n, w}, torch::kFloat);
}

std::string SnrMix(const sim::LibraryData& lib) {
  if (lib.snr.empty()) return "unknown";
  std::map<long, int64_t> counts;
  for (float s : lib.snr) counts[std::isfinite(s) ? std::lround(s) : -1]++;
  std::ostringstream o;
  bool first = true;
  for (const auto& [snr, c] : counts) {
    if (counts.size() > 12) {
      auto [mn, mx] = std::minmax_element(lib.snr.begin(), lib.snr.end());
      o << "continuous " << *mn << "-" << *mx;
      break;
    }
    o << (first ? "" : ", ") << snr << ": " << c;
    first = false;
  }
  return o.str();
}

Status CheckLibrary(const sim::LibraryData& lib) {
  const int64_t n = lib.n, nw = lib.wave.n;
  auto check = [&](size_t size, int64_t want, const char* name) -> Status {
    if (static_cast<int64_t>(size) != want)
      return Status::Error(std::string("library array ") + name + " has " + std::to_string(size) + " values, expected " +
                           std::to_string(want));
    return Status::OK();
  };
  if (n <= 0) return Status::Error("the library is empty");
  CUBEFLOW_RETURN_NOT_OK(check(lib.spectra.size(), n * nw, "spectra"));
  CUBEFLOW_RETURN_NOT_OK(check(lib.mass_frac.size(), n * kNumBins, "mass_frac"));
  CUBEFLOW_RETURN_NOT_OK(check(lib.zh.size(), n * kNumBins, "zh"));
  if (!lib.bands.empty()) CUBEFLOW_RETURN_NOT_OK(check(lib.photometry.size(), n * lib.bands.size(), "photometry"));
  if (!lib.light_frac.empty()) CUBEFLOW_RETURN_NOT_OK(check(lib.light_frac.size(), n * kNumBins, "light_frac"));
  return Status::OK();
}

CnnMetadata MetadataFromLibrary(const sim::LibraryData& lib, bool photometry) {
  CnnMetadata md;
  md.wave = lib.wave;
  md.rest_frame = true;
  md.norm_min = lib.norm_min;
  md.norm_max = lib.norm_max;
  md.sigma_target = lib.sigma_target;
  if (photometry) {
    md.bands = lib.bands;
    md.pivots = lib.pivots;
  }
  md.age_bin_centres = lib.age_bin_centres.size() == kNumBins ? lib.age_bin_centres : DefaultAgeBinCentres();
  md.age_bin_edges = lib.age_bin_edges;
  md.ssp_name = lib.ssp_name;
  return md;
}

std::atomic<int> g_interrupt{0};
volatile int g_stop_flag = 0;
extern "C" void OnSigint(int) {
  g_stop_flag = 1;
  g_interrupt = 1;
}

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
        "library", "output", "checkpoint", "epochs", "batch_size", "lr", "lr_factor", "lr_patience",
        "stop_patience", "loss_weight_sfh", "seed", "threads", "max_rows", "batches_per_epoch", "split",
        "photometry", "architecture", "augment_noise", "loss_weight_lw", "init_from"};
    for (const auto& kv : root) {
      key = kv.first.as<std::string>();
      if (!kKnown.count(key)) {
        std::string list;
        for (const auto& k : kKnown) list += (list.empty() ? "" : ", ") + k;
        return Status::Error(file_name + ": unknown key '" + key + "' (known: " + list + ")");
      }
    }
    auto str = [&](const char* k, std::string& dst) { key = k; if (root[k]) dst = root[k].as<std::string>(); };
    auto i64 = [&](const char* k, int64_t& dst) { key = k; if (root[k]) dst = root[k].as<int64_t>(); };
    auto dbl = [&](const char* k, double& dst) { key = k; if (root[k]) dst = root[k].as<double>(); };
    str("library", c.library);
    str("output", c.output);
    str("checkpoint", c.checkpoint);
    i64("epochs", c.epochs);
    i64("batch_size", c.batch_size);
    dbl("lr", c.lr);
    dbl("lr_factor", c.lr_factor);
    i64("lr_patience", c.lr_patience);
    i64("stop_patience", c.stop_patience);
    dbl("loss_weight_sfh", c.loss_weight_sfh);
    dbl("loss_weight_lw", c.loss_weight_lw);
    str("init_from", c.init_from);
    key = "seed";
    if (root["seed"]) c.seed = root["seed"].as<uint64_t>();
    key = "threads";
    if (root["threads"]) c.threads = root["threads"].as<int>();
    i64("max_rows", c.max_rows);
    i64("batches_per_epoch", c.batches_per_epoch);
    key = "photometry";
    if (root["photometry"]) c.photometry = root["photometry"].as<bool>();
    key = "augment_noise";
    if (auto a = root["augment_noise"]) {
      if (a.IsScalar()) {
        c.augment_noise = a.as<bool>();
      } else if (a.IsMap()) {
        c.augment_noise = true;
        for (const auto& kv : a) {
          key = "augment_noise." + kv.first.as<std::string>();
          const std::string k = kv.first.as<std::string>();
          if (k == "enabled") c.augment_noise = kv.second.as<bool>();
          else if (k == "snr") c.augment_snr = kv.second.as<std::vector<double>>();
          else if (k == "phot_snr") c.augment_phot_snr = kv.second.as<double>();
          else return Status::Error(file_name + ": unknown key '" + key + "' (known: enabled, snr, phot_snr)");
        }
      } else {
        return Status::Error(file_name + ": augment_noise must be true/false or {snr: [...], phot_snr: X}");
      }
      for (double v : c.augment_snr)
        if (!(v > 0)) return Status::Error(file_name + ": augment_noise.snr values must be positive");
      if (c.augment_snr.empty()) return Status::Error(file_name + ": augment_noise.snr is empty");
    }
    key = "split";
    if (auto s = root["split"]) {
      auto v = s.as<std::vector<double>>();
      if (v.size() < 2 || v.size() > 3 || v[0] <= 0 || v[1] <= 0 || v[0] + v[1] >= 1.0 + 1e-9)
        return Status::Error(file_name + ": split must be [train, validation, test] fractions, e.g. [0.7, 0.2, 0.1]");
      c.train_fraction = v[0];
      c.val_fraction = v[1];
    }
    if (auto a = root["architecture"]) {
      static const std::set<std::string> kArch = {"channels", "kernels", "pools", "attention", "attention_dim",
                                                  "spec_hidden", "spec_features", "phot_hidden", "phot_features",
                                                  "latent", "decoder_hidden"};
      for (const auto& kv : a) {
        key = "architecture." + kv.first.as<std::string>();
        if (!kArch.count(kv.first.as<std::string>()))
          return Status::Error(file_name + ": unknown key '" + key + "'");
      }
      auto ai = [&](const char* k, int64_t& dst) { key = std::string("architecture.") + k; if (a[k]) dst = a[k].as<int64_t>(); };
      auto al = [&](const char* k, std::vector<int64_t>& dst) { key = std::string("architecture.") + k; if (a[k]) dst = a[k].as<std::vector<int64_t>>(); };
      al("channels", c.arch.channels);
      al("kernels", c.arch.kernels);
      al("pools", c.arch.pools);
      key = "architecture.attention";
      if (a["attention"]) c.arch.attention = a["attention"].as<bool>();
      ai("attention_dim", c.arch.attention_dim);
      ai("spec_hidden", c.arch.spec_hidden);
      ai("spec_features", c.arch.spec_features);
      ai("phot_hidden", c.arch.phot_hidden);
      ai("phot_features", c.arch.phot_features);
      ai("latent", c.arch.latent);
      ai("decoder_hidden", c.arch.decoder_hidden);
    }
  } catch (const YAML::Exception& ex) {
    return Status::Error(file_name + ": key '" + key + "': " + ex.what());
  }
  if (c.epochs <= 0) return Status::Error(file_name + ": epochs must be > 0");
  if (c.batch_size <= 0) return Status::Error(file_name + ": batch_size must be > 0");
  if (!(c.lr > 0)) return Status::Error(file_name + ": lr must be > 0");
  if (!(c.lr_factor > 0 && c.lr_factor <= 1)) return Status::Error(file_name + ": lr_factor must be in (0, 1]");
  if (!(c.loss_weight_sfh >= 0 && c.loss_weight_sfh <= 1))
    return Status::Error(file_name + ": loss_weight_sfh must be in [0, 1]");
  if (!(c.loss_weight_lw >= 0))
    return Status::Error(file_name + ": loss_weight_lw must be >= 0");
  if (c.output.empty()) return Status::Error(file_name + ": 'output' (the model file to write) is required");
  return c;
}

// ---------------------------------------------------------------------------------------
// Light-to-mass table
// ---------------------------------------------------------------------------------------

Status FitLightToMass(const sim::LibraryData& lib, CnnMetadata& md, int n_grid) {
  md.lm_zh_grid.clear();
  md.lm_v.clear();
  if (lib.light_frac.empty()) return Status::Error("the library has no light fractions");
  const int64_t n = lib.n;
  struct Entry { int64_t i; int j; double y, zh; };
  std::vector<Entry> entries;
  double zmin = std::numeric_limits<double>::infinity(), zmax = -zmin;
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < kNumBins; ++j) {
      const double m = lib.mass_frac[i * kNumBins + j], l = lib.light_frac[i * kNumBins + j];
      const double z = lib.zh[i * kNumBins + j];
      if (!(m > 1e-4) || !(l > 1e-8) || !std::isfinite(z)) continue;
      entries.push_back({i, j, std::log(l / m), z});
      zmin = std::min(zmin, z);
      zmax = std::max(zmax, z);
    }
  }
  if (entries.size() < 2 * kNumBins) return Status::Error("too few usable (mass, light) entries to fit light-to-mass ratios");
  if (!(zmax > zmin + 1e-6)) n_grid = 1;
  n_grid = std::max(1, n_grid);
  std::vector<double> grid(n_grid);
  for (int k = 0; k < n_grid; ++k) grid[k] = n_grid == 1 ? zmin : zmin + (zmax - zmin) * k / (n_grid - 1);
  auto weights = [&](double z, int& k0, double& t) {
    if (n_grid == 1) { k0 = 0; t = 0; return; }
    double u = (z - zmin) / (zmax - zmin) * (n_grid - 1);
    u = std::clamp(u, 0.0, static_cast<double>(n_grid - 1) - 1e-12);
    k0 = static_cast<int>(u);
    t = u - k0;
  };
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(kNumBins, n_grid);  // log LM
  std::vector<double> c(n, 0.0);
  std::vector<int> cnt(n, 0);
  for (const auto& e : entries) cnt[e.i]++;
  for (int iter = 0; iter < 50; ++iter) {
    // a-step: per bin, least squares in the hat-function weights, tied by a weak smoothness term.
    std::vector<Eigen::MatrixXd> A(kNumBins, Eigen::MatrixXd::Zero(n_grid, n_grid));
    std::vector<Eigen::VectorXd> b(kNumBins, Eigen::VectorXd::Zero(n_grid));
    for (const auto& e : entries) {
      int k0; double t;
      weights(e.zh, k0, t);
      const double y = e.y + c[e.i];
      A[e.j](k0, k0) += (1 - t) * (1 - t);
      b[e.j](k0) += (1 - t) * y;
      if (n_grid > 1) {
        A[e.j](k0 + 1, k0 + 1) += t * t;
        A[e.j](k0, k0 + 1) += t * (1 - t);
        A[e.j](k0 + 1, k0) += t * (1 - t);
        b[e.j](k0 + 1) += t * y;
      }
    }
    for (int j = 0; j < kNumBins; ++j) {
      const double lam = 1e-3 * (1.0 + A[j].trace() / n_grid);
      for (int k = 0; k + 1 < n_grid; ++k) {
        A[j](k, k) += lam; A[j](k + 1, k + 1) += lam; A[j](k, k + 1) -= lam; A[j](k + 1, k) -= lam;
      }
      for (int k = 0; k < n_grid; ++k) A[j](k, k) += 1e-9;
      a.row(j) = A[j].ldlt().solve(b[j]).transpose();
    }
    // c-step: per object, the mean offset.
    std::fill(c.begin(), c.end(), 0.0);
    for (const auto& e : entries) {
      int k0; double t;
      weights(e.zh, k0, t);
      const double pred = (1 - t) * a(e.j, k0) + (n_grid > 1 ? t * a(e.j, k0 + 1) : 0.0);
      c[e.i] += pred - e.y;
    }
    for (int64_t i = 0; i < n; ++i) c[i] = cnt[i] ? c[i] / cnt[i] : 0.0;
  }
  const double mean = a.mean();
  md.lm_zh_grid = grid;
  md.lm_v.resize(static_cast<size_t>(n_grid) * kNumBins);
  for (int k = 0; k < n_grid; ++k)
    for (int j = 0; j < kNumBins; ++j) md.lm_v[k * kNumBins + j] = std::exp(a(j, k) - mean);
  return Status::OK();
}

// ---------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------

void GatherInputs(const sim::LibraryData& lib, const std::vector<int64_t>& rows, int64_t nbands,
                  std::vector<float>& spectra, std::vector<float>& phot) {
  const int64_t nw = lib.wave.n, nb_lib = static_cast<int64_t>(lib.bands.size());
  spectra.resize(rows.size() * nw);
  phot.assign(rows.size() * nbands, 0.0f);
  for (size_t r = 0; r < rows.size(); ++r) {
    const float* s = lib.spectra.data() + rows[r] * nw;
    float* d = spectra.data() + r * nw;
    for (int64_t k = 0; k < nw; ++k) d[k] = std::isfinite(s[k]) ? s[k] : 1.0f;
    for (int64_t b = 0; b < nbands && b < nb_lib; ++b) phot[r * nbands + b] = lib.photometry[rows[r] * nb_lib + b];
  }
}

sim::LibraryData NoisyCopy(const sim::LibraryData& lib, const std::vector<int64_t>& rows_in,
                           const std::vector<double>& snr, double phot_snr, uint64_t seed) {
  std::vector<int64_t> rows = rows_in;
  if (rows.empty()) {
    rows.resize(lib.n);
    std::iota(rows.begin(), rows.end(), 0);
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  sim::LibraryData out;
  out.wave = lib.wave;
  out.norm_min = lib.norm_min;
  out.norm_max = lib.norm_max;
  out.sigma_target = lib.sigma_target;
  out.bands = lib.bands;
  out.pivots = lib.pivots;
  out.age_bin_centres = lib.age_bin_centres;
  out.age_bin_edges = lib.age_bin_edges;
  out.ssp_name = lib.ssp_name;
  out.meta = lib.meta;
  out.n = n;
  auto take = [&](const auto& src, auto& dst) {
    if (src.empty() || lib.n == 0) return;
    const size_t w = src.size() / static_cast<size_t>(lib.n);
    dst.resize(static_cast<size_t>(n) * w);
    for (int64_t r = 0; r < n; ++r)
      std::copy_n(src.begin() + rows[r] * w, w, dst.begin() + r * w);
  };
  take(lib.spectra, out.spectra);
  take(lib.photometry, out.photometry);
  take(lib.mass_frac, out.mass_frac);
  take(lib.light_frac, out.light_frac);
  take(lib.zh, out.zh);
  take(lib.t_mass, out.t_mass);
  take(lib.snr, out.snr);
  take(lib.tau_bc, out.tau_bc);
  take(lib.tau_ism, out.tau_ism);
  take(lib.sfh_kind, out.sfh_kind);
  take(lib.z_final, out.z_final);
  const int64_t nw = lib.wave.n, nb = static_cast<int64_t>(lib.bands.size());
  out.spectra_err.assign(static_cast<size_t>(n) * nw, 0.0f);
  out.photometry_err.assign(static_cast<size_t>(n) * nb, 0.0f);
  out.snr.resize(n);
  for (int64_t r = 0; r < n; ++r) {
    // One generator per object, seeded from (seed, source row): independent of the order.
    std::seed_seq ss{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(rows[r]),
                     static_cast<uint32_t>(rows[r] >> 32)};
    std::mt19937_64 rng(ss);
    std::normal_distribution<double> g;
    const double sn = snr[snr.size() == 1 ? 0 : rng() % snr.size()];
    float* f = out.spectra.data() + r * nw;
    float* e = out.spectra_err.data() + r * nw;
    for (int64_t k = 0; k < nw; ++k) {
      if (!std::isfinite(f[k])) continue;
      e[k] = static_cast<float>(std::sqrt(std::max<double>(f[k], 1e-4)) / sn);
      f[k] += static_cast<float>(e[k] * g(rng));
    }
    for (int64_t b = 0; b < nb && phot_snr > 0; ++b) {
      float& p = out.photometry[r * nb + b];
      out.photometry_err[r * nb + b] = static_cast<float>(std::abs(p) / phot_snr);
      p += static_cast<float>(out.photometry_err[r * nb + b] * g(rng));
    }
    out.snr[r] = static_cast<float>(sn);
  }
  return out;
}

WeightedMeans TrueWeightedMeans(const CnnMetadata& md, const sim::LibraryData& lib, int64_t i) {
  const float* tm = lib.mass_frac.data() + i * kNumBins;
  const float* tz = lib.zh.data() + i * kNumBins;
  double sm = 0, sma = 0, smz = 0, sl = 0, sla = 0, slz = 0;
  for (int j = 0; j < kNumBins; ++j) {
    const double la = std::log10(md.age_bin_centres[j] * 1e9);
    const double z = std::isfinite(tz[j]) ? tz[j] : 0.0;  // bins without mass have no [Z/H]
    sm += tm[j]; sma += tm[j] * la; smz += tm[j] * z;
    if (!lib.light_frac.empty()) {
      const double l = lib.light_frac[i * kNumBins + j];
      sl += l; sla += l * la; slz += l * z;
    }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  WeightedMeans w;
  w.mw_logage = sm > 0 ? sma / sm : nan;
  w.mw_zh = sm > 0 ? smz / sm : nan;
  w.lw_logage = sl > 0 ? sla / sl : nan;
  w.lw_zh = sl > 0 ? slz / sl : nan;
  return w;
}

Result<std::map<std::string, double>> Evaluate(const CnnModel& model, const sim::LibraryData& lib,
                                               const std::vector<int64_t>& rows_in, int threads) {
  CUBEFLOW_RETURN_NOT_OK(CheckLibrary(lib));
  const auto& md = model.metadata();
  if (lib.wave.n != md.arch.nwave)
    return Status::Error("library spectra have " + std::to_string(lib.wave.n) + " pixels, the model expects " +
                         std::to_string(md.arch.nwave));
  if (md.arch.nbands > 0 && lib.bands != md.bands)
    return Status::Error("library bands differ from the model's bands");
  std::vector<int64_t> rows = rows_in;
  if (rows.empty()) {
    rows.resize(lib.n);
    std::iota(rows.begin(), rows.end(), 0);
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> mf(n * kNumBins), zh(n * kNumBins);
  std::vector<float> spec, phot;
  const auto t0 = std::chrono::steady_clock::now();
  double predict_s = 0;
  const int64_t chunk = 2048;
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t cnt = std::min(chunk, n - first);
    std::vector<int64_t> sub(rows.begin() + first, rows.begin() + first + cnt);
    GatherInputs(lib, sub, md.arch.nbands, spec, phot);
    const auto p0 = std::chrono::steady_clock::now();
    CUBEFLOW_RETURN_NOT_OK(model.Predict(spec.data(), phot.data(), cnt, mf.data() + first * kNumBins,
                                         zh.data() + first * kNumBins, threads));
    predict_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
  }
  (void)t0;
  std::map<std::string, double> m;
  double loss_mf = 0, loss_zh = 0, mae_mf = 0, mae_zh = 0;
  int64_t n_zh = 0;
  struct Acc { double s = 0, s2 = 0; int64_t n = 0; void Add(double d) { if (std::isfinite(d)) { s += d; s2 += d * d; ++n; } } };
  Acc d_mw_age, d_lw_age, d_mw_zh, d_lw_zh;
  auto logcosh = [](double d) { const double a = std::abs(d); return a + std::log1p(std::exp(-2 * a)) - std::log(2.0); };
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = rows[r];
    const float* tm = lib.mass_frac.data() + i * kNumBins;
    const float* tz = lib.zh.data() + i * kNumBins;
    const float* pm = mf.data() + r * kNumBins;
    const float* pz = zh.data() + r * kNumBins;
    for (int j = 0; j < kNumBins; ++j) {
      loss_mf += logcosh(pm[j] - tm[j]);
      mae_mf += std::abs(pm[j] - tm[j]);
      if (std::isfinite(tz[j])) {
        loss_zh += logcosh(pz[j] - tz[j]);
        mae_zh += std::abs(pz[j] - tz[j]);
        ++n_zh;
      }
    }
    const WeightedMeans pred = ComputeWeightedMeans(md, pm, pz);
    const WeightedMeans truth = TrueWeightedMeans(md, lib, i);
    // Differences are truth minus prediction (the convention of `cubeflow evaluate`).
    d_mw_age.Add(truth.mw_logage - pred.mw_logage);
    d_mw_zh.Add(truth.mw_zh - pred.mw_zh);
    d_lw_age.Add(truth.lw_logage - pred.lw_logage);
    d_lw_zh.Add(truth.lw_zh - pred.lw_zh);
  }
  const double nel = static_cast<double>(n) * kNumBins;
  const double w = 0.8;
  m["n"] = static_cast<double>(n);
  m["loss"] = w * loss_mf / nel + (1 - w) * (n_zh ? loss_zh / n_zh : 0.0);
  m["mae_mass_frac"] = mae_mf / nel;
  m["mae_zh"] = n_zh ? mae_zh / n_zh : std::numeric_limits<double>::quiet_NaN();
  auto put = [&](const std::string& name, const Acc& a) {
    if (a.n == 0) return;
    const double mean = a.s / a.n;
    m[name + "_bias"] = mean;
    m[name + "_scatter"] = std::sqrt(std::max(0.0, a.s2 / a.n - mean * mean));
  };
  put("mw_logage", d_mw_age);
  put("lw_logage", d_lw_age);
  put("mw_zh", d_mw_zh);
  put("lw_zh", d_lw_zh);
  m["spectra_per_s"] = predict_s > 0 ? n / predict_s : 0.0;
  return m;
}

// ---------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------

Result<TrainResult> Train(const TrainConfig& cfg, const sim::LibraryData& lib_in,
                          const std::function<void(const EpochReport&)>& progress, const volatile int* stop_flag) {
  CUBEFLOW_RETURN_NOT_OK(CheckLibrary(lib_in));
  const sim::LibraryData& lib = lib_in;
  const auto t_start = std::chrono::steady_clock::now();
  TrainResult result;
  try {
    if (cfg.threads > 0) at::set_num_threads(cfg.threads);
    const int64_t n = cfg.max_rows > 0 ? std::min(cfg.max_rows, lib.n) : lib.n;
    const int64_t nw = lib.wave.n;
    const bool use_phot = cfg.photometry && !lib.bands.empty();
    const int64_t nb = use_phot ? static_cast<int64_t>(lib.bands.size()) : 0;
    CnnArch arch = cfg.arch;
    arch.nwave = nw;
    arch.nbands = nb;
    CUBEFLOW_RETURN_NOT_OK(arch.Validate());

    // Seeded 70/20/10 split.
    std::vector<int64_t> perm = Permutation(n, cfg.seed);
    const int64_t n_train = std::max<int64_t>(1, static_cast<int64_t>(std::llround(n * cfg.train_fraction)));
    const int64_t n_val = std::max<int64_t>(1, static_cast<int64_t>(std::llround(n * cfg.val_fraction)));
    if (n_train + n_val > n) return Status::Error("the library has too few rows (" + std::to_string(n) + ") to split");
    std::vector<int64_t> train_rows(perm.begin(), perm.begin() + n_train);
    std::vector<int64_t> val_rows(perm.begin() + n_train, perm.begin() + n_train + n_val);
    std::vector<int64_t> test_rows(perm.begin() + n_train + n_val, perm.end());

    CnnMetadata md = MetadataFromLibrary(lib, use_phot);
    md.arch = arch;
    // Tensors over the library (views) and transformed photometry.
    Dataset ds;
    ds.spec = torch::nan_to_num(View(lib.spectra, lib.n, nw), 1.0);
    ds.mf = View(lib.mass_frac, lib.n, kNumBins);
    ds.zh = View(lib.zh, lib.n, kNumBins);
    if (nb > 0) {
      auto raw = View(lib.photometry, lib.n, nb);
      auto lg = torch::log10(torch::clamp_min(torch::nan_to_num(raw, 0.0), md.phot_floor));
      auto tr = lg.index_select(0, RowsTensor(train_rows, 0, train_rows.size()));
      auto mean = tr.mean(0).to(torch::kDouble), sd = tr.std(0).clamp_min(1e-6).to(torch::kDouble);
      md.phot_mean.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + nb);
      md.phot_std.assign(sd.data_ptr<double>(), sd.data_ptr<double>() + nb);
      ds.phot = ((lg - mean.to(torch::kFloat)) / sd.to(torch::kFloat)).contiguous();
    } else {
      ds.phot = torch::zeros({lib.n, 0});
    }
    if (!lib.light_frac.empty()) {
      sim::LibraryData sub;  // fit on the training rows only
      sub.n = n_train;
      sub.mass_frac.resize(n_train * kNumBins);
      sub.light_frac.resize(n_train * kNumBins);
      sub.zh.resize(n_train * kNumBins);
      for (int64_t r = 0; r < n_train; ++r)
        for (int j = 0; j < kNumBins; ++j) {
          sub.mass_frac[r * kNumBins + j] = lib.mass_frac[train_rows[r] * kNumBins + j];
          sub.light_frac[r * kNumBins + j] = lib.light_frac[train_rows[r] * kNumBins + j];
          sub.zh[r * kNumBins + j] = lib.zh[train_rows[r] * kNumBins + j];
        }
      Status st = FitLightToMass(sub, md);
      if (!st.ok()) std::cerr << "cubeflow train: warning: no light-weighted means: " << st.message() << "\n";
    }

    // Light-to-mass ratio of every object's bins at their true [Z/H] (for loss_weight_lw).
    torch::Tensor lm, logt;
    if (cfg.loss_weight_lw > 0) {
      if (md.lm_v.empty())
        return Status::Error("loss_weight_lw needs the library's light fractions (LIGHT_FRAC) to fit the light-to-mass table");
      std::vector<float> v(static_cast<size_t>(n) * kNumBins);
      for (int64_t i = 0; i < n; ++i)
        for (int j = 0; j < kNumBins; ++j)
          v[i * kNumBins + j] = static_cast<float>(md.LightToMass(j, lib.zh[i * kNumBins + j]));
      lm = torch::from_blob(v.data(), {n, kNumBins}, torch::kFloat).clone();
      std::vector<float> lt(kNumBins);
      for (int j = 0; j < kNumBins; ++j) lt[j] = static_cast<float>(std::log10(md.age_bin_centres[j] * 1e9));
      logt = torch::from_blob(lt.data(), {kNumBins}, torch::kFloat).clone();
    }
    auto rows_of = [&](const torch::Tensor& t, const torch::Tensor& idx) {
      return t.defined() ? t.index_select(0, idx) : t;
    };

    torch::manual_seed(cfg.seed);
    CnnNet net(arch), best(arch);
    GlorotInit(*net);
    if (!cfg.init_from.empty()) {
      auto base = CnnModel::Load(cfg.init_from);
      if (!base.ok()) return Status::Error("init_from: " + base.status().message());
      const auto& bmd = (*base)->metadata();
      if (bmd.format != "state_dict" || !(bmd.arch == arch) || bmd.bands != md.bands)
        return Status::Error("init_from: " + cfg.init_from +
                             " has another architecture, input grid or band set than this training run");
      for (size_t b = 0; b < md.phot_mean.size(); ++b)
        if (b >= bmd.phot_mean.size() || std::abs(bmd.phot_mean[b] - md.phot_mean[b]) > 1e-3 ||
            std::abs(bmd.phot_std[b] - md.phot_std[b]) > 1e-3 * md.phot_std[b])
          return Status::Error("init_from: " + cfg.init_from + " standardised its photometry differently (band " +
                               md.bands[b] + "): fine-tune on the library and seed it was trained with");
      torch::serialize::InputArchive ar;
      ar.load_from(cfg.init_from);
      net->load(ar);
    }
    CopyState(net, best);
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(cfg.lr));

    const std::string ckpt = cfg.checkpoint.empty() ? cfg.output + ".ckpt" : cfg.checkpoint;
    int64_t start_epoch = 0, best_epoch = 0, since_best = 0, since_lr = 0;
    double best_val = std::numeric_limits<double>::infinity(), lr_scale = 1.0, prior_seconds = 0;
    auto vec_tensor = [](const std::vector<double>& v) {
      return torch::tensor(v.empty() ? std::vector<double>{0.0} : v, torch::kDouble).narrow(0, 0, static_cast<int64_t>(v.size()));
    };
    if (cfg.resume && !fs::exists(ckpt))
      std::cerr << "cubeflow train: no checkpoint " << ckpt << " to resume from; starting from epoch 1\n";
    if (cfg.resume && fs::exists(ckpt)) {
      torch::serialize::InputArchive ar;
      ar.load_from(ckpt);
      torch::Tensor t;
      auto scalar = [&](const char* k) { ar.read(k, t); return t.item<double>(); };
      if (static_cast<uint64_t>(scalar("seed")) != cfg.seed % (1ull << 52) || static_cast<int64_t>(scalar("n_rows")) != n ||
          static_cast<int64_t>(scalar("nwave")) != nw || static_cast<int64_t>(scalar("nbands")) != nb)
        return Status::Error("checkpoint " + ckpt + " was written for another seed, library size or input shape; "
                             "delete it or train without --resume");
      torch::serialize::InputArchive m, b, o;
      ar.read("model", m);
      net->load(m);
      ar.read("best_model", b);
      best->load(b);
      ar.read("optimizer", o);
      opt.load(o);
      start_epoch = static_cast<int64_t>(scalar("epoch"));
      best_epoch = static_cast<int64_t>(scalar("best_epoch"));
      since_best = static_cast<int64_t>(scalar("since_best"));
      since_lr = static_cast<int64_t>(scalar("since_lr"));
      best_val = scalar("best_val");
      lr_scale = scalar("lr_scale");
      prior_seconds = scalar("seconds");
      ar.read("train_losses", t);
      t = t.contiguous();
      result.train_losses.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
      ar.read("val_losses", t);
      t = t.contiguous();
      result.val_losses.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
      std::cerr << "cubeflow train: resuming from " << ckpt << " after epoch " << start_epoch << "\n";
    }
    auto save_checkpoint = [&](int64_t epochs_done, double seconds) {
      torch::serialize::OutputArchive ar, m, b, o;
      net->save(m);
      best->save(b);
      opt.save(o);
      ar.write("model", m);
      ar.write("best_model", b);
      ar.write("optimizer", o);
      auto w = [&](const char* k, double v) { ar.write(k, torch::tensor(v, torch::kDouble)); };
      w("epoch", static_cast<double>(epochs_done));
      w("best_epoch", static_cast<double>(best_epoch));
      w("since_best", static_cast<double>(since_best));
      w("since_lr", static_cast<double>(since_lr));
      w("best_val", best_val);
      w("lr_scale", lr_scale);
      w("seconds", seconds);
      w("seed", static_cast<double>(cfg.seed % (1ull << 52)));
      w("n_rows", static_cast<double>(n));
      w("nwave", static_cast<double>(nw));
      w("nbands", static_cast<double>(nb));
      ar.write("train_losses", vec_tensor(result.train_losses));
      ar.write("val_losses", vec_tensor(result.val_losses));
      auto parent = fs::path(ckpt).parent_path();
      if (!parent.empty()) fs::create_directories(parent);
      ar.save_to(ckpt + ".tmp");
      fs::rename(ckpt + ".tmp", ckpt);
    };

    // With noise augmentation the validation set gets one fixed noise realisation, so that
    // its loss is comparable between epochs.
    torch::Tensor val_spec, val_phot;
    if (cfg.augment_noise) {
      auto gen = at::detail::createCPUGenerator(cfg.seed ^ 0x5eedf00dull);
      auto idx = RowsTensor(val_rows, 0, val_rows.size());
      std::tie(val_spec, val_phot) = AddNoise(ds.spec.index_select(0, idx), ds.phot.index_select(0, idx),
                                              cfg.augment_snr, cfg.augment_phot_snr, md.phot_std, gen);
    }
    auto val_loss = [&](CnnNet& model) {
      torch::NoGradGuard guard;
      model->eval();
      double total = 0;
      int64_t count = 0;
      for (size_t f = 0; f < val_rows.size(); f += 512) {
        const size_t c = std::min<size_t>(512, val_rows.size() - f);
        auto idx = RowsTensor(val_rows, f, c);
        auto [pm, pz] = cfg.augment_noise
                            ? model->forward(val_spec.narrow(0, f, c), val_phot.narrow(0, f, c))
                            : model->forward(ds.spec.index_select(0, idx), ds.phot.index_select(0, idx));
        total += TrainLoss(pm, pz, ds.mf.index_select(0, idx), ds.zh.index_select(0, idx), rows_of(lm, idx), logt,
                           cfg.loss_weight_sfh, cfg.loss_weight_lw).item<double>() * c;
        count += static_cast<int64_t>(c);
      }
      return total / std::max<int64_t>(count, 1);
    };

    const int64_t bs = cfg.batch_size;
    int64_t epoch = start_epoch;
    bool stopped = false;
    const auto run_start = std::chrono::steady_clock::now();
    for (; epoch < cfg.epochs; ++epoch) {
      const double lr = cfg.lr * std::max(1.0 - static_cast<double>(epoch) / cfg.epochs, 1e-3) * lr_scale;
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
      net->train();
      std::vector<int64_t> order = train_rows;
      std::mt19937_64 rng(cfg.seed * 6364136223846793005ull + 1442695040888963407ull * (epoch + 1));
      std::shuffle(order.begin(), order.end(), rng);
      auto noise_gen = at::detail::createCPUGenerator(cfg.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(epoch) + 1);
      int64_t nbatch = (n_train + bs - 1) / bs;
      if (cfg.batches_per_epoch > 0) nbatch = std::min(nbatch, cfg.batches_per_epoch);
      double total = 0;
      int64_t seen = 0;
      for (int64_t bi = 0; bi < nbatch; ++bi) {
        if (stop_flag && *stop_flag) {
          result.interrupted = true;
          break;
        }
        const size_t f = bi * bs, c = std::min<size_t>(bs, order.size() - f);
        auto idx = RowsTensor(order, f, c);
        torch::Tensor xs = ds.spec.index_select(0, idx), xp = ds.phot.index_select(0, idx);
        if (cfg.augment_noise)
          std::tie(xs, xp) = AddNoise(xs, xp, cfg.augment_snr, cfg.augment_phot_snr, md.phot_std, noise_gen);
        auto [pm, pz] = net->forward(xs, xp);
        auto loss = TrainLoss(pm, pz, ds.mf.index_select(0, idx), ds.zh.index_select(0, idx), rows_of(lm, idx), logt,
                              cfg.loss_weight_sfh, cfg.loss_weight_lw);
        opt.zero_grad();
        loss.backward();
        opt.step();
        total += loss.item<double>() * c;
        seen += static_cast<int64_t>(c);
      }
      if (result.interrupted) break;  // the checkpoint of the last complete epoch stays
      const double train_loss = total / std::max<int64_t>(seen, 1);
      const double vl = val_loss(net);
      result.train_losses.push_back(train_loss);
      result.val_losses.push_back(vl);
      if (vl < best_val) {
        best_val = vl;
        best_epoch = epoch + 1;
        since_best = 0;
        since_lr = 0;
        CopyState(net, best);
      } else {
        ++since_best;
        if (++since_lr >= cfg.lr_patience) {
          lr_scale *= cfg.lr_factor;
          since_lr = 0;
        }
      }
      const double run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      save_checkpoint(epoch + 1, prior_seconds + run_s);
      stopped = since_best >= cfg.stop_patience;
      if (progress) {
        EpochReport rep;
        rep.epoch = epoch + 1;
        rep.epochs = cfg.epochs;
        rep.train_loss = train_loss;
        rep.val_loss = vl;
        rep.best_val = best_val;
        rep.best_epoch = best_epoch;
        rep.lr = lr;
        rep.elapsed_s = prior_seconds + run_s;
        rep.eta_s = run_s / (epoch + 1 - start_epoch) * (cfg.epochs - epoch - 1);
        rep.stopped_early = stopped;
        progress(rep);
      }
      if (stopped) {
        ++epoch;
        break;
      }
    }
    result.epochs_run = epoch;
    result.best_epoch = best_epoch;
    result.best_val = best_val;
    result.seconds = prior_seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    if (result.interrupted) return result;

    // Final model: the best-validation weights, with metadata and test metrics.
    best->eval();
    auto impl = std::make_unique<CnnModel::Impl>();
    impl->md = md;
    impl->net = best;
    CnnModel model(std::move(impl));
    if (!test_rows.empty() && cfg.augment_noise) {
      // Test metrics on the test rows with one noise realisation of the training S/N mix.
      const sim::LibraryData noisy = NoisyCopy(lib, test_rows, cfg.augment_snr, cfg.augment_phot_snr, cfg.seed + 7);
      auto metrics = Evaluate(model, noisy, {}, cfg.threads);
      if (metrics.ok()) result.test_metrics = *metrics;
    } else if (!test_rows.empty()) {
      auto metrics = Evaluate(model, lib, test_rows, cfg.threads);
      if (metrics.ok()) result.test_metrics = *metrics;
    }
    auto& mmd = model.mutable_metadata();
    mmd.metrics = result.test_metrics;
    mmd.metrics["best_val_loss"] = best_val;
    mmd.metrics["best_epoch"] = static_cast<double>(best_epoch);
    mmd.metrics["epochs_run"] = static_cast<double>(result.epochs_run);
    mmd.training["n_library"] = std::to_string(lib.n);
    mmd.training["n_used"] = std::to_string(n);
    mmd.training["n_train"] = std::to_string(n_train);
    mmd.training["n_val"] = std::to_string(n_val);
    mmd.training["n_test"] = std::to_string(test_rows.size());
    if (cfg.augment_noise) {
      std::ostringstream a;
      for (size_t i = 0; i < cfg.augment_snr.size(); ++i) a << (i ? "," : "") << cfg.augment_snr[i];
      mmd.training["snr_mix"] = "fresh noise per batch, S/N per pixel drawn from {" + a.str() + "}, photometric S/N " +
                                std::to_string(cfg.augment_phot_snr) + "; library: " + SnrMix(lib);
    } else {
      mmd.training["snr_mix"] = SnrMix(lib);
    }
    mmd.training["seconds"] = std::to_string(result.seconds);
    mmd.training["time"] = FormatDuration(result.seconds);
    mmd.training["library"] = cfg.library;
    mmd.training["stopped_early"] = stopped ? "true" : "false";
    for (const auto& [k, v] : lib.meta) mmd.training["library_" + k] = v;
    mmd.config_yaml = cfg.config_yaml;
    CUBEFLOW_RETURN_NOT_OK(model.Save(cfg.output));
  } catch (const std::exception& ex) {
    return Status::Error(std::string("training failed: ") + ex.what());
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

int TrainMain(int argc, char** argv) {
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
      std::cout << "usage: cubeflow train CONFIG.yaml [--resume] [--threads N]\n"
                   "Trains the CNN on a simulated library; keys are documented in docs/cnn.md.\n";
      return 0;
    } else if (config_path.empty() && !a.empty() && a[0] != '-') {
      config_path = a;
    } else {
      std::cerr << "cubeflow train: unexpected argument '" << a << "'\nusage: cubeflow train CONFIG.yaml [--resume] [--threads N]\n";
      return 2;
    }
  }
  if (config_path.empty()) {
    std::cerr << "usage: cubeflow train CONFIG.yaml [--resume] [--threads N]\n";
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
  auto resolve = [&](std::string& p) { if (!p.empty() && fs::path(p).is_relative()) p = (base / p).lexically_normal().string(); };
  if (cfg.library.empty()) {
    std::cerr << "cubeflow train: " << config_path << ": 'library' (the simulated library FITS file) is required\n";
    return 1;
  }
  resolve(cfg.library);
  resolve(cfg.output);
  resolve(cfg.checkpoint);
  resolve(cfg.init_from);
  std::cerr << "cubeflow train: reading " << cfg.library << "\n";
  auto lib = sim::ReadLibrary(cfg.library, 0, cfg.max_rows);
  if (!lib.ok()) {
    std::cerr << "cubeflow train: " << lib.status().message() << "\n";
    return 1;
  }
  std::cerr << "cubeflow train: " << lib->n << " objects, " << lib->wave.n << " pixels, "
            << (cfg.photometry ? lib->bands.size() : 0) << " bands; S/N mix " << SnrMix(*lib) << "\n";
  g_stop_flag = 0;
  auto old = std::signal(SIGINT, OnSigint);
  auto res = Train(cfg, *lib, [](const EpochReport& r) {
    std::fprintf(stderr, "epoch %lld/%lld  train %.6f  val %.6f  best %.6f (epoch %lld)  lr %.3g  elapsed %s  eta %s%s\n",
                 static_cast<long long>(r.epoch), static_cast<long long>(r.epochs), r.train_loss, r.val_loss, r.best_val,
                 static_cast<long long>(r.best_epoch), r.lr, FormatDuration(r.elapsed_s).c_str(),
                 FormatDuration(r.eta_s).c_str(), r.stopped_early ? "  (early stop)" : "");
  }, &g_stop_flag);
  std::signal(SIGINT, old);
  if (!res.ok()) {
    std::cerr << "cubeflow train: " << res.status().message() << "\n";
    return 1;
  }
  if (res->interrupted) {
    std::cerr << "cubeflow train: interrupted after epoch " << res->epochs_run << "; resume with --resume\n";
    return 130;
  }
  std::cerr << "cubeflow train: wrote " << cfg.output << " (+ " << MetadataPath(cfg.output) << "), best epoch "
            << res->best_epoch << ", validation loss " << res->best_val << "\n";
  for (const auto& [k, v] : res->test_metrics) std::cerr << "  test " << k << " = " << v << "\n";
  return 0;
}

}  // namespace cubeflow::cnn
