// Training and evaluation of the CNN, and `cubeflow train` for CNN configurations. The training
// is a sequence of named steps (PrepareData, InitialWeights, LoadCheckpoint, TrainEpoch,
// Validation, SaveCheckpoint, WriteFinalModel) run by the stage loop it shares with the SBI model
// (train_common.hpp).
#include <torch/torch.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "cubeflow/nn/commands.hpp"
#include "cubeflow/nn/train.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/strings.hpp"
#include "net.hpp"
#include "threads.hpp"
#include "train_common.hpp"
#include "train_torch.hpp"

namespace cubeflow::cnn {

namespace {

namespace fs = std::filesystem;

torch::Tensor PaperLoss(const torch::Tensor& mf_pred, const torch::Tensor& zh_pred, const torch::Tensor& mf,
                        const torch::Tensor& zh, double w_sfh) {
  return w_sfh * nn::LogCosh(mf_pred, mf) + (1.0 - w_sfh) * nn::LogCosh(zh_pred, zh);
}

/// Eq. 6 light-weighted mean log age of mass fractions `mf` [B, 16] with light-to-mass ratios
/// `lm` [B, 16] and bin log ages `logt` [16].
torch::Tensor LightWeightedLogAge(const torch::Tensor& mf, const torch::Tensor& lm, const torch::Tensor& logt) {
  auto l = mf.clamp_min(0) * lm;
  return (l * logt).sum(1) / l.sum(1).clamp_min(1e-12);
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

template <typename T>
torch::Tensor View(const std::vector<T>& v, int64_t n, int64_t w) {
  return torch::from_blob(const_cast<T*>(v.data()), {n, w}, torch::kFloat);
}

/// The library in messages.
std::string LibraryName(const TrainConfig& cfg) {
  return cfg.library.empty() ? "the library" : "library " + cfg.library;
}

}  // namespace

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
  const std::vector<int64_t> rows = rows_in.empty() ? nn::AllRows(lib.n) : rows_in;
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
  CUBEFLOW_RETURN_NOT_OK(nn::CheckLibraryShapes(lib, "the library", /*need_t_mass=*/false));
  const auto& md = model.metadata();
  CUBEFLOW_RETURN_NOT_OK(nn::CheckLibraryFitsModel(lib, md.arch.nwave, md.bands));
  const std::vector<int64_t> rows = rows_in.empty() ? nn::AllRows(lib.n) : rows_in;
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> mf(n * kNumBins), zh(n * kNumBins);
  std::vector<float> spec, phot;
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

namespace {

/// \brief What a CNN training run works on: its rows, the metadata of the model it writes, and
/// the library as tensors.
struct TrainingData {
  int64_t n = 0;                      ///< library rows used (max_rows)
  nn::Split split;                    ///< of rows 0..n-1
  CnnMetadata md;                     ///< inputs, architecture, photometry standardisation, light-to-mass
  torch::Tensor spec, phot, mf, zh;   ///< all library rows: spectra (NaN -> 1), standardised photometry, labels
  torch::Tensor lm, logt;             ///< loss_weight_lw > 0: light-to-mass per row and bin; bin log ages
};

CnnMetadata MetadataFromLibrary(const sim::LibraryData& lib, bool photometry) {
  CnnMetadata md;
  md.SetConventions(nn::LibraryConventions(lib, photometry));
  md.sigma_target = lib.sigma_target;
  md.age_bin_centres = lib.age_bin_centres.size() == kNumBins ? lib.age_bin_centres : DefaultAgeBinCentres();
  md.age_bin_edges = lib.age_bin_edges;
  md.ssp_name = lib.ssp_name;
  return md;
}

/// log10 photometry standardised with the mean and standard deviation of the training rows
/// (stored in md.phot_mean / phot_std), for all library rows; [n, 0] without photometry.
torch::Tensor StandardisedPhotometry(const sim::LibraryData& lib, const std::vector<int64_t>& train_rows,
                                     CnnMetadata& md) {
  const int64_t nb = md.arch.nbands;
  if (nb == 0) return torch::zeros({lib.n, 0});
  auto raw = View(lib.photometry, lib.n, nb);
  auto lg = torch::log10(torch::clamp_min(torch::nan_to_num(raw, 0.0), md.phot_floor));
  auto tr = lg.index_select(0, nn::RowsTensor(train_rows, 0, train_rows.size()));
  auto mean = tr.mean(0).to(torch::kDouble), sd = tr.std(0).clamp_min(1e-6).to(torch::kDouble);
  md.phot_mean.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + nb);
  md.phot_std.assign(sd.data_ptr<double>(), sd.data_ptr<double>() + nb);
  return ((lg - mean.to(torch::kFloat)) / sd.to(torch::kFloat)).contiguous();
}

/// The light-to-mass table fitted on the training rows (none, with a warning, when the library
/// has no LIGHT_FRAC or the fit fails: the model then gives no light-weighted means).
void FitLightToMassOnTrainingRows(const sim::LibraryData& lib, const std::vector<int64_t>& train_rows,
                                  CnnMetadata& md) {
  if (lib.light_frac.empty()) return;
  const int64_t n_train = static_cast<int64_t>(train_rows.size());
  sim::LibraryData sub;
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

/// For loss_weight_lw: the light-to-mass ratio of every row's bins at their true [Z/H], and the
/// bins' log ages.
Status LightWeightTensors(const TrainConfig& cfg, const sim::LibraryData& lib, TrainingData& d) {
  if (!(cfg.loss_weight_lw > 0)) return Status::OK();
  if (d.md.lm_v.empty())
    return Status::Error("loss_weight_lw needs the library's light fractions (LIGHT_FRAC) to fit the light-to-mass "
                         "table: use a library with LIGHT_FRAC or set loss_weight_lw: 0");
  std::vector<float> v(static_cast<size_t>(d.n) * kNumBins);
  for (int64_t i = 0; i < d.n; ++i)
    for (int j = 0; j < kNumBins; ++j)
      v[i * kNumBins + j] = static_cast<float>(d.md.LightToMass(j, lib.zh[i * kNumBins + j]));
  d.lm = torch::from_blob(v.data(), {d.n, kNumBins}, torch::kFloat).clone();
  std::vector<float> lt(kNumBins);
  for (int j = 0; j < kNumBins; ++j) lt[j] = static_cast<float>(std::log10(d.md.age_bin_centres[j] * 1e9));
  d.logt = torch::from_blob(lt.data(), {kNumBins}, torch::kFloat).clone();
  return Status::OK();
}

/// Step 1: the seeded split, the architecture and metadata, the tensors.
Result<TrainingData> PrepareData(const TrainConfig& cfg, const sim::LibraryData& lib) {
  TrainingData d;
  d.n = cfg.max_rows > 0 ? std::min(cfg.max_rows, lib.n) : lib.n;
  const bool use_phot = cfg.photometry && !lib.bands.empty();
  CnnArch arch = cfg.arch;
  arch.nwave = lib.wave.n;
  arch.nbands = use_phot ? static_cast<int64_t>(lib.bands.size()) : 0;
  CUBEFLOW_RETURN_NOT_OK(arch.Validate());
  CUBEFLOW_ASSIGN_OR_RETURN(d.split, nn::SplitRows(d.n, cfg.seed, cfg.train_fraction, cfg.val_fraction));
  d.md = MetadataFromLibrary(lib, use_phot);
  d.md.arch = arch;
  d.spec = torch::nan_to_num(View(lib.spectra, lib.n, arch.nwave), 1.0);
  d.mf = View(lib.mass_frac, lib.n, kNumBins);
  d.zh = View(lib.zh, lib.n, kNumBins);
  d.phot = StandardisedPhotometry(lib, d.split.train, d.md);
  FitLightToMassOnTrainingRows(lib, d.split.train, d.md);
  CUBEFLOW_RETURN_NOT_OK(LightWeightTensors(cfg, lib, d));
  return d;
}

/// Step 2: Glorot-uniform weights (seeded before the networks are built), or those of
/// cfg.init_from, which must have the same architecture, inputs and photometry standardisation.
Status InitialWeights(const TrainConfig& cfg, const CnnMetadata& md, CnnNet& net) {
  GlorotInit(*net);
  if (cfg.init_from.empty()) return Status::OK();
  auto base = CnnModel::Load(cfg.init_from);
  if (!base.ok()) return Status::Error("init_from: " + base.status().message());
  const auto& bmd = (*base)->metadata();
  if (bmd.format != "state_dict" || !(bmd.arch == md.arch) || bmd.bands != md.bands)
    return Status::Error("init_from: " + cfg.init_from +
                         " has another architecture, input grid or band set than this training run: fine-tune a "
                         "model trained with the same architecture and bands");
  for (size_t b = 0; b < md.phot_mean.size(); ++b)
    if (b >= bmd.phot_mean.size() || std::abs(bmd.phot_mean[b] - md.phot_mean[b]) > 1e-3 ||
        std::abs(bmd.phot_std[b] - md.phot_std[b]) > 1e-3 * md.phot_std[b])
      return Status::Error("init_from: " + cfg.init_from + " standardised its photometry differently (band " +
                           md.bands[b] + "): fine-tune on the library and seed it was trained with");
  torch::serialize::InputArchive ar;
  ar.load_from(cfg.init_from);
  net->load(ar);
  return Status::OK();
}

/// \brief What a checkpoint holds besides the networks and the optimiser.
struct TrainState {
  int64_t epoch = 0;  ///< epochs completed
  nn::Plateau plateau;
  double seconds = 0;  ///< of the runs before this one
  std::vector<double> train_losses, val_losses;
};

/// Numbers a checkpoint must share with the run that resumes it.
std::vector<nn::CheckpointGuard> Guards(const TrainConfig& cfg, const TrainingData& d) {
  return {{"seed", "seed", static_cast<double>(cfg.seed % (1ull << 52))},
          {"n_rows", "number of library rows", static_cast<double>(d.n)},
          {"nwave", "number of spectral pixels", static_cast<double>(d.md.arch.nwave)},
          {"nbands", "number of bands", static_cast<double>(d.md.arch.nbands)}};
}

/// Step: the checkpoint after `epochs_done` epochs (written atomically).
void SaveCheckpoint(const std::string& path, const std::vector<nn::CheckpointGuard>& guards, CnnNet& net,
                    CnnNet& best, torch::optim::Adam& opt, const TrainState& state, int64_t epochs_done,
                    double seconds) {
  nn::CheckpointWriter w;
  w.Module("model", *net);
  w.Module("best_model", *best);
  w.Optimizer("optimizer", opt);
  w.Scalar("epoch", static_cast<double>(epochs_done));
  nn::WritePlateau(w, state.plateau);
  w.Scalar("seconds", seconds);
  nn::WriteGuards(w, guards);
  w.Vector("train_losses", state.train_losses);
  w.Vector("val_losses", state.val_losses);
  w.Save(path);
}

/// Step: with --resume, the networks, optimiser and state of the checkpoint (refused when it
/// belongs to another run); without a checkpoint the run starts from epoch 1.
Status LoadCheckpoint(const TrainConfig& cfg, const std::string& path, const std::vector<nn::CheckpointGuard>& guards,
                      CnnNet& net, CnnNet& best, torch::optim::Adam& opt, TrainState& state) {
  if (!cfg.resume) return Status::OK();
  if (!fs::exists(path)) {
    std::cerr << "cubeflow train: no checkpoint " << path << " to resume from; starting from epoch 1\n";
    return Status::OK();
  }
  nn::CheckpointReader r(path);
  CUBEFLOW_RETURN_NOT_OK(nn::CheckGuards(r, guards, path));
  r.Module("model", *net);
  r.Module("best_model", *best);
  r.Optimizer("optimizer", opt);
  state.epoch = static_cast<int64_t>(r.Scalar("epoch"));
  state.plateau = nn::ReadPlateau(r);
  state.seconds = r.Scalar("seconds");
  state.train_losses = r.Vector("train_losses");
  state.val_losses = r.Vector("val_losses");
  std::cerr << "cubeflow train: resuming from " << path << " after epoch " << state.epoch << "\n";
  return Status::OK();
}

/// The training loss: the paper's (0.8 / 0.2 Log-Cosh on mass fractions / [Z/H]) plus, when
/// loss_weight_lw > 0, Log-Cosh on the light-weighted mean log age of rows `idx`.
torch::Tensor TrainLoss(const TrainConfig& cfg, const TrainingData& d, const torch::Tensor& mf_pred,
                        const torch::Tensor& zh_pred, const torch::Tensor& idx) {
  const torch::Tensor mf = d.mf.index_select(0, idx);
  auto loss = PaperLoss(mf_pred, zh_pred, mf, d.zh.index_select(0, idx), cfg.loss_weight_sfh);
  const torch::Tensor lm = d.lm.defined() ? d.lm.index_select(0, idx) : d.lm;
  if (cfg.loss_weight_lw > 0 && lm.defined() && lm.numel() > 0)
    loss = loss + cfg.loss_weight_lw *
                      nn::LogCosh(LightWeightedLogAge(mf_pred, lm, d.logt), LightWeightedLogAge(mf, lm, d.logt));
  return loss;
}

/// Step: one epoch over the training rows (shuffled by seed and epoch; with augment_noise fresh
/// noise per batch). Returns the mean loss, or nothing when `stop_flag` was raised.
std::optional<double> TrainEpoch(const TrainConfig& cfg, const TrainingData& d, CnnNet& net, torch::optim::Adam& opt,
                                 int64_t epoch, double lr, const volatile int* stop_flag) {
  nn::SetLearningRate(opt, lr);
  net->train();
  const std::vector<int64_t> order = nn::ShuffledRows(d.split.train, cfg.seed, epoch);
  auto noise_gen = at::detail::createCPUGenerator(cfg.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(epoch) + 1);
  return nn::RunBatches(static_cast<int64_t>(order.size()), cfg.batch_size, cfg.batches_per_epoch, stop_flag,
                        [&](size_t first, size_t count) {
                          auto idx = nn::RowsTensor(order, first, count);
                          torch::Tensor xs = d.spec.index_select(0, idx), xp = d.phot.index_select(0, idx);
                          if (cfg.augment_continuum_degree > 0)
                            xs = nn::DistortContinuum(xs, d.md.wave, d.md.norm_min, d.md.norm_max,
                                                      cfg.augment_continuum_degree, cfg.augment_continuum_sigma,
                                                      noise_gen);
                          if (cfg.augment_noise)
                            std::tie(xs, xp) = AddNoise(xs, xp, cfg.augment_snr, cfg.augment_phot_snr,
                                                        d.md.phot_std, noise_gen);
                          auto [pm, pz] = net->forward(xs, xp);
                          return nn::Step(opt, TrainLoss(cfg, d, pm, pz, idx));
                        });
}

/// \brief Step: the loss on the validation rows. With augment_noise they get one fixed noise
/// realisation, so that the loss is comparable between epochs.
class Validation {
 public:
  Validation(const TrainConfig& cfg, const TrainingData& d) : cfg_(cfg), d_(d) {
    if (!cfg.augment_noise && cfg.augment_continuum_degree == 0) return;
    auto gen = at::detail::createCPUGenerator(cfg.seed ^ 0x5eedf00dull);
    auto idx = nn::RowsTensor(d.split.val, 0, d.split.val.size());
    spec_ = d.spec.index_select(0, idx);
    phot_ = d.phot.index_select(0, idx);
    if (cfg.augment_continuum_degree > 0)
      spec_ = nn::DistortContinuum(spec_, d.md.wave, d.md.norm_min, d.md.norm_max, cfg.augment_continuum_degree,
                                   cfg.augment_continuum_sigma, gen);
    if (cfg.augment_noise)
      std::tie(spec_, phot_) = AddNoise(spec_, phot_, cfg.augment_snr, cfg.augment_phot_snr, d.md.phot_std, gen);
  }

  double Loss(CnnNet& model) const {
    torch::NoGradGuard guard;
    model->eval();
    const auto& rows = d_.split.val;
    double total = 0;
    int64_t count = 0;
    for (size_t f = 0; f < rows.size(); f += 512) {
      const size_t c = std::min<size_t>(512, rows.size() - f);
      auto idx = nn::RowsTensor(rows, f, c);
      auto [pm, pz] = spec_.defined() ? model->forward(spec_.narrow(0, f, c), phot_.narrow(0, f, c))
                                         : model->forward(d_.spec.index_select(0, idx), d_.phot.index_select(0, idx));
      total += TrainLoss(cfg_, d_, pm, pz, idx).item<double>() * c;
      count += static_cast<int64_t>(c);
    }
    return total / std::max<int64_t>(count, 1);
  }

 private:
  const TrainConfig& cfg_;
  const TrainingData& d_;
  torch::Tensor spec_, phot_;
};

/// Step: test metrics of the best weights (with augment_noise on one noise realisation of the
/// training S/N mix), the metadata and the model file.
Status WriteFinalModel(const TrainConfig& cfg, const sim::LibraryData& lib, const TrainingData& d, CnnNet& best,
                       bool stopped_early, TrainResult& result) {
  best->eval();
  auto impl = std::make_unique<CnnModel::Impl>();
  impl->md = d.md;
  impl->net = best;
  CnnModel model(std::move(impl));
  const auto& test_rows = d.split.test;
  if (!test_rows.empty()) {
    auto metrics = cfg.augment_noise
                       ? Evaluate(model, NoisyCopy(lib, test_rows, cfg.augment_snr, cfg.augment_phot_snr, cfg.seed + 7),
                                  {}, cfg.threads)
                       : Evaluate(model, lib, test_rows, cfg.threads);
    if (metrics.ok())
      result.test_metrics = *metrics;
    else
      std::cerr << "cubeflow train: warning: test metrics failed: " << metrics.status().message() << "\n";
  }
  auto& mmd = model.mutable_metadata();
  mmd.metrics = result.test_metrics;
  mmd.metrics["best_val_loss"] = result.best_val;
  mmd.metrics["best_epoch"] = static_cast<double>(result.best_epoch);
  mmd.metrics["epochs_run"] = static_cast<double>(result.epochs_run);
  mmd.training["n_library"] = std::to_string(lib.n);
  mmd.training["n_used"] = std::to_string(d.n);
  mmd.training["n_train"] = std::to_string(d.split.train.size());
  mmd.training["n_val"] = std::to_string(d.split.val.size());
  mmd.training["n_test"] = std::to_string(test_rows.size());
  if (cfg.augment_noise) {
    std::ostringstream a;
    for (size_t i = 0; i < cfg.augment_snr.size(); ++i) a << (i ? "," : "") << cfg.augment_snr[i];
    mmd.training["snr_mix"] = "fresh noise per batch, S/N per pixel drawn from {" + a.str() + "}, photometric S/N " +
                              std::to_string(cfg.augment_phot_snr) + "; library: " + nn::SnrMix(lib);
  } else {
    mmd.training["snr_mix"] = nn::SnrMix(lib);
  }
  if (cfg.augment_continuum_degree > 0)
    mmd.training["continuum_mix"] = "random multiplicative Legendre continuum per batch, degree 1-" +
                                    std::to_string(cfg.augment_continuum_degree) + ", coefficient sd " +
                                    std::to_string(cfg.augment_continuum_sigma) + " (test metrics: plain spectra)";
  mmd.training["seconds"] = std::to_string(result.seconds);
  mmd.training["time"] = nn::FormatDuration(result.seconds);
  mmd.training["library"] = cfg.library;
  mmd.training["stopped_early"] = stopped_early ? "true" : "false";
  for (const auto& [k, v] : lib.meta) mmd.training["library_" + k] = v;
  mmd.config_yaml = cfg.config_yaml;
  return model.Save(cfg.output);
}

}  // namespace

Result<TrainResult> Train(const TrainConfig& cfg, const sim::LibraryData& lib,
                          const std::function<void(const EpochReport&)>& progress, const volatile int* stop_flag) {
  CUBEFLOW_RETURN_NOT_OK(nn::CheckLibraryShapes(lib, LibraryName(cfg), /*need_t_mass=*/false));
  TrainResult result;
  try {
    nn::SetTrainingThreads(cfg.threads);
    CUBEFLOW_ASSIGN_OR_RETURN(const TrainingData d, PrepareData(cfg, lib));
    torch::manual_seed(cfg.seed);
    CnnNet net(d.md.arch), best(d.md.arch);
    CUBEFLOW_RETURN_NOT_OK(InitialWeights(cfg, d.md, net));
    CopyModuleState(*net, *best);
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(cfg.lr));

    const std::string ckpt = cfg.checkpoint.empty() ? cfg.output + ".ckpt" : cfg.checkpoint;
    const auto guards = Guards(cfg, d);
    TrainState state;
    CUBEFLOW_RETURN_NOT_OK(LoadCheckpoint(cfg, ckpt, guards, net, best, opt, state));
    const Validation validation(cfg, d);
    const nn::RunClock clock(state.seconds);
    nn::StageSteps steps;
    steps.train_epoch = [&](int64_t epoch, double lr) { return TrainEpoch(cfg, d, net, opt, epoch, lr, stop_flag); };
    steps.validate = [&] { return validation.Loss(net); };
    steps.keep_best = [&] { CopyModuleState(*net, *best); };
    steps.checkpoint = [&](int64_t epochs_done) {
      SaveCheckpoint(ckpt, guards, net, best, opt, state, epochs_done, clock.Elapsed());
    };
    const nn::StageOutcome outcome =
        nn::RunStage(nn::StageOptionsFrom(cfg), state.epoch, state.plateau, state.train_losses, state.val_losses,
                     clock, steps, progress);

    result.epochs_run = outcome.epochs_run;
    result.best_epoch = state.plateau.best_epoch;
    result.best_val = state.plateau.best_val;
    result.train_losses = state.train_losses;
    result.val_losses = state.val_losses;
    result.seconds = clock.Elapsed();
    result.interrupted = outcome.interrupted;
    if (result.interrupted) return result;  // the checkpoint of the last complete epoch stays
    CUBEFLOW_RETURN_NOT_OK(WriteFinalModel(cfg, lib, d, best, outcome.stopped_early, result));
  } catch (const std::exception& ex) {
    return Status::Error(std::string("training failed: ") + ex.what());
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Command
// ---------------------------------------------------------------------------------------

int TrainMain(int argc, char** argv) {
  return nn::RunTrainCommand(
      argc, argv, "Trains the CNN on a simulated library; keys are documented in docs/cnn.md.",
      [](const nn::TrainInvocation& inv) -> Result<nn::TrainJob> {
        CUBEFLOW_ASSIGN_OR_RETURN(TrainConfig cfg, ParseTrainConfig(inv.config_text, inv.config_path));
        inv.ApplyTo(cfg);
        CUBEFLOW_RETURN_NOT_OK(inv.RequireLibrary(cfg.library));
        for (std::string* p : {&cfg.library, &cfg.output, &cfg.checkpoint, &cfg.init_from}) inv.Resolve(*p);
        nn::TrainJob job;
        job.library = cfg.library;
        job.max_rows = cfg.max_rows;
        job.photometry = cfg.photometry;
        job.run = [cfg](const sim::LibraryData& lib, const nn::ProgressFn& progress,
                        const volatile int* stop_flag) -> Result<nn::TrainOutcome> {
          CUBEFLOW_ASSIGN_OR_RETURN(TrainResult r, Train(cfg, lib, progress, stop_flag));
          nn::TrainOutcome out;
          out.interrupted = r.interrupted;
          std::ostringstream msg;
          if (r.interrupted) {
            msg << "interrupted after epoch " << r.epochs_run << "; resume with --resume";
          } else {
            msg << "wrote " << cfg.output << " (+ " << MetadataPath(cfg.output) << "), best epoch " << r.best_epoch
                << ", validation loss " << r.best_val;
            out.test_metrics = r.test_metrics;
          }
          out.message = msg.str();
          return out;
        };
        return job;
      });
}

}  // namespace cubeflow::cnn
