// The DIGS NPE (cubeflow/nn/digs_npe.hpp): training (`cubeflow train`, kind: digs), the model
// file with its metadata, posterior sampling, calibration checks and `cubeflow evaluate`.
#include "cubeflow/nn/digs_npe.hpp"

#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

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
#include <sstream>

#include "cubeflow/sim/digs_fit.hpp"
#include "cubeflow/sim/digs_library.hpp"
#include "cubeflow/spectral/stats.hpp"
#include "cubeflow/strings.hpp"
#include "cubeflow/version.hpp"
#include "sbi_net.hpp"
#include "train_common.hpp"
#include "train_torch.hpp"

namespace cubeflow::digs {

const std::array<std::string, kNumParams>& PrintedNames() {
  static const std::array<std::string, kNumParams> k = {"log_mass", "log_z", "dust", "t_age", "tau"};
  return k;
}

// ---------------------------------------------------------------------------------------
// Calibration checks (no libtorch)
// ---------------------------------------------------------------------------------------

namespace {

double Q(std::vector<double>& v, double q) {
  if (v.empty()) return std::nan("");
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  const double a = v[i];
  if (i + 1 >= v.size()) return a;
  const double b = *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(i) + 1, v.end());
  return a + (pos - static_cast<double>(i)) * (b - a);
}

/// Prior quantile of printed parameter k (tau log-uniform, the rest uniform).
double PriorQuantile(int k, double p, const std::array<double, kNumParams>& lo, const std::array<double, kNumParams>& hi) {
  if (k == 4) return lo[k] * std::pow(hi[k] / lo[k], p);
  return lo[k] + p * (hi[k] - lo[k]);
}

}  // namespace

std::vector<ParamCheck> CheckPosteriors(const std::vector<float>& samples, int64_t n, int64_t s,
                                        const std::vector<double>& truth, const std::array<double, kNumParams>& lo,
                                        const std::array<double, kNumParams>& hi) {
  std::vector<ParamCheck> out(kNumParams);
  std::vector<double> v(static_cast<size_t>(s));
  for (int k = 0; k < kNumParams; ++k) {
    ParamCheck& c = out[k];
    std::vector<double> t(static_cast<size_t>(n)), med(static_cast<size_t>(n)), hw(static_cast<size_t>(n));
    std::vector<int64_t> hist(static_cast<size_t>(c.sbc_bins), 0);
    int64_t in68 = 0, in95 = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double tr = truth[static_cast<size_t>(i * kNumParams + k)];
      int64_t rank = 0;
      for (int64_t j = 0; j < s; ++j) {
        v[static_cast<size_t>(j)] = samples[static_cast<size_t>((i * s + j) * kNumParams + k)];
        rank += v[static_cast<size_t>(j)] < tr;
      }
      const double q025 = Q(v, 0.025), q16 = Q(v, 0.16), q50 = Q(v, 0.5), q84 = Q(v, 0.84), q975 = Q(v, 0.975);
      t[static_cast<size_t>(i)] = tr;
      med[static_cast<size_t>(i)] = q50;
      hw[static_cast<size_t>(i)] = 0.5 * (q84 - q16);
      in68 += tr >= q16 && tr <= q84;
      in95 += tr >= q025 && tr <= q975;
      hist[static_cast<size_t>(rank * c.sbc_bins / (s + 1))]++;
    }
    const auto sk = spectral::SkillOf(t, med);
    c.r2 = sk.r2;
    c.spearman = sk.spearman;
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = med[static_cast<size_t>(i)] - t[static_cast<size_t>(i)];
      sum += d;
      sum2 += d * d;
    }
    c.bias = sum / static_cast<double>(n);
    c.scatter = std::sqrt(std::max(0.0, sum2 / static_cast<double>(n) - c.bias * c.bias));
    c.cov68 = static_cast<double>(in68) / static_cast<double>(n);
    c.cov95 = static_cast<double>(in95) / static_cast<double>(n);
    const double expect = static_cast<double>(n) / c.sbc_bins;
    for (int64_t h : hist) c.sbc_chi2 += (static_cast<double>(h) - expect) * (static_cast<double>(h) - expect) / expect;
    c.median_hw = Q(hw, 0.5);
    c.width_ratio = 2 * c.median_hw / (PriorQuantile(k, 0.84, lo, hi) - PriorQuantile(k, 0.16, lo, hi));
  }
  return out;
}

Status Verdict(const std::vector<ParamCheck>& checks, int64_t n) {
  std::string why;
  const double nn = static_cast<double>(n);
  const double sd68 = std::sqrt(0.68 * 0.32 / nn), sd95 = std::sqrt(0.95 * 0.05 / nn);
  for (int k = 0; k < kNumParams; ++k) {
    const auto& c = checks[static_cast<size_t>(k)];
    const std::string& p = PrintedNames()[k];
    if (std::abs(c.cov68 - 0.68) > 3 * sd68) why += "; " + p + " cov68 " + Num(c.cov68, 3) + " (0.68 +- " + Num(3 * sd68, 2) + ")";
    if (std::abs(c.cov95 - 0.95) > 3 * sd95) why += "; " + p + " cov95 " + Num(c.cov95, 3) + " (0.95 +- " + Num(3 * sd95, 2) + ")";
    if (!(c.sbc_chi2 < 43.8)) why += "; " + p + " SBC chi2 " + Num(c.sbc_chi2, 3) + " (>= 43.8, p < 0.001 for 19 dof)";
    if (k == 0 || k == 2) {
      if (!(c.width_ratio < 0.5)) why += "; " + p + " width / prior width " + Num(c.width_ratio, 3) + " (>= 0.5: uninformative)";
      if (!(c.r2 > 0.5)) why += "; " + p + " R2 " + Num(c.r2, 3) + " (<= 0.5)";
    }
  }
  if (why.empty()) return Status::OK();
  return Status::Error("posterior check failed: " + why.substr(2));
}

bool IsDigsYaml(const std::string& path) {
  try {
    if (!std::filesystem::is_regular_file(path)) return false;
    const YAML::Node y = YAML::LoadFile(path);
    return y.IsMap() && y["kind"] && y["kind"].as<std::string>() == "digs";
  } catch (...) {
    return false;
  }
}

// ---------------------------------------------------------------------------------------
// Network, metadata, model file
// ---------------------------------------------------------------------------------------

namespace {

struct Arch {
  int64_t nwave = 138;
  /// Encoder input: "log_flux" (per-pixel standardised log10 flux: the mass sets every feature's
  /// spread and the shape is a small part of it) or "shape" (per-pixel standardised log10 flux
  /// minus its mean over the pixels, then that mean, standardised: shape and amplitude apart).
  std::string input = "log_flux";
  int64_t InputWidth() const { return input == "shape" ? nwave + 1 : nwave; }
  std::vector<int64_t> hidden = {256, 256, 128};
  int64_t summary = 32;
  sbi::FlowArch flow;
  Arch() {
    flow.dim = kNumParams;
    flow.layers = 6;
    flow.hidden = 128;
    flow.context_hidden = 64;
    flow.bins = 8;
    flow.tail_bound = 5.0;
  }
};

struct NetImpl : torch::nn::Module {
  explicit NetImpl(const Arch& a) : nwave(a.nwave), amplitude_to_flow(a.input == "shape") {
    torch::nn::Sequential s;
    int64_t in = a.InputWidth();
    for (int64_t h : a.hidden) {
      s->push_back(torch::nn::Linear(in, h));
      s->push_back(torch::nn::SiLU());
      in = h;
    }
    s->push_back(torch::nn::Linear(in, a.summary));
    enc = register_module("encoder", s);
    flow = register_module("flow", sbi::Flow(a.flow, a.summary + (amplitude_to_flow ? 1 : 0)));
  }
  /// The flow's context of encoder inputs x: the summary, and with input "shape" the amplitude
  /// beside it (mass is the amplitude less the log flux per unit mass, which the shape sets).
  torch::Tensor Context(const torch::Tensor& x) {
    auto s = enc->forward(x);
    if (amplitude_to_flow) s = torch::cat({s, x.slice(1, nwave, nwave + 1)}, 1);
    return flow->Embed(s);
  }
  torch::Tensor LogProb(const torch::Tensor& x, const torch::Tensor& y) { return flow->LogProb(y, Context(x)); }
  int64_t nwave;
  bool amplitude_to_flow;
  torch::nn::Sequential enc{nullptr};
  sbi::Flow flow{nullptr};
};
TORCH_MODULE(Net);

/// Everything beside the weights: `<model>.yaml`.
struct Meta {
  Arch arch;
  double flux_floor = 1e-30;
  std::vector<double> x_mean, x_std;                 // per encoder input (Arch::input)
  std::array<double, kNumParams> lo{}, hi{};         // library coordinates (log10 tau)
  std::array<double, kNumParams> y_mean{}, y_std{};  // of logit(u)
  std::string ssp;
  std::map<std::string, std::string> training;
  std::map<std::string, double> metrics;
  std::string config_yaml;
};

constexpr double kEdge = 1e-6;

double ToFlow(const Meta& m, int k, double v) {
  double u = (v - m.lo[k]) / (m.hi[k] - m.lo[k]);
  u = std::clamp(u, kEdge, 1 - kEdge);
  return (std::log(u / (1 - u)) - m.y_mean[k]) / m.y_std[k];
}

/// Flow variable -> printed coordinates (tau in Gyr).
double ToPrinted(const Meta& m, int k, double y) {
  const double l = y * m.y_std[k] + m.y_mean[k];
  const double u = 1 / (1 + std::exp(-l));
  const double v = m.lo[k] + u * (m.hi[k] - m.lo[k]);
  return k == 4 ? std::pow(10.0, v) : v;
}

Status WriteMeta(const std::string& path, const Meta& m) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "kind" << YAML::Value << "digs";
  e << YAML::Key << "format" << YAML::Value << "state_dict";
  e << YAML::Key << "cubeflow_version" << YAML::Value << kVersion;
  e << YAML::Key << "arch" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "nwave" << YAML::Value << m.arch.nwave;
  e << YAML::Key << "hidden" << YAML::Value << YAML::Flow << m.arch.hidden;
  e << YAML::Key << "summary" << YAML::Value << m.arch.summary;
  e << YAML::Key << "flow" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "transform" << YAML::Value << m.arch.flow.transform;
  e << YAML::Key << "layers" << YAML::Value << m.arch.flow.layers;
  e << YAML::Key << "hidden" << YAML::Value << m.arch.flow.hidden;
  e << YAML::Key << "context_hidden" << YAML::Value << m.arch.flow.context_hidden;
  e << YAML::Key << "bins" << YAML::Value << m.arch.flow.bins;
  e << YAML::Key << "tail_bound" << YAML::Value << m.arch.flow.tail_bound;
  e << YAML::Key << "permutation_seed" << YAML::Value << m.arch.flow.permutation_seed;
  e << YAML::EndMap << YAML::EndMap;
  e << YAML::Key << "input" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "mode" << YAML::Value << m.arch.input;
  e << YAML::Key << "transform" << YAML::Value
    << (m.arch.input == "shape"
            ? "l = log10(max(flux, floor)), a = mean of l over the pixels; x_i = (l_i - a - mean_i) / std_i per "
              "pixel, then x = (a - mean) / std (the last of mean/std)"
            : "x = (log10(max(flux, floor)) - mean) / std per pixel");
  e << YAML::Key << "floor" << YAML::Value << m.flux_floor;
  e << YAML::Key << "mean" << YAML::Value << YAML::Flow << m.x_mean;
  e << YAML::Key << "std" << YAML::Value << YAML::Flow << m.x_std;
  e << YAML::EndMap;
  e << YAML::Key << "theta" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "columns" << YAML::Value << YAML::Flow
    << std::vector<std::string>(sim::DigsLibraryColumns().begin(), sim::DigsLibraryColumns().end());
  e << YAML::Key << "transform" << YAML::Value << "y = (logit((v - lo) / (hi - lo)) - mean) / std";
  e << YAML::Key << "lo" << YAML::Value << YAML::Flow << std::vector<double>(m.lo.begin(), m.lo.end());
  e << YAML::Key << "hi" << YAML::Value << YAML::Flow << std::vector<double>(m.hi.begin(), m.hi.end());
  e << YAML::Key << "mean" << YAML::Value << YAML::Flow << std::vector<double>(m.y_mean.begin(), m.y_mean.end());
  e << YAML::Key << "std" << YAML::Value << YAML::Flow << std::vector<double>(m.y_std.begin(), m.y_std.end());
  e << YAML::EndMap;
  e << YAML::Key << "ssp" << YAML::Value << m.ssp;
  e << YAML::Key << "training" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : m.training) e << YAML::Key << k << YAML::Value << v;
  e << YAML::EndMap;
  e << YAML::Key << "metrics" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : m.metrics) e << YAML::Key << k << YAML::Value << v;
  e << YAML::EndMap;
  e << YAML::Key << "config_yaml" << YAML::Value << YAML::Literal << m.config_yaml;
  e << YAML::EndMap;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << e.c_str() << "\n";
    if (!f) return Status::Error("cannot write model metadata " + path);
  }
  std::filesystem::rename(tmp, path);
  return Status::OK();
}

Result<Meta> ReadMeta(const std::string& path) {
  try {
    const YAML::Node y = YAML::LoadFile(path);
    if (!y["kind"] || y["kind"].as<std::string>() != "digs")
      return Status::Error("model metadata " + path + " does not say 'kind: digs'");
    Meta m;
    const auto a = y["arch"];
    m.arch.nwave = a["nwave"].as<int64_t>();
    m.arch.hidden = a["hidden"].as<std::vector<int64_t>>();
    m.arch.summary = a["summary"].as<int64_t>();
    const auto f = a["flow"];
    m.arch.flow.transform = f["transform"].as<std::string>();
    m.arch.flow.layers = f["layers"].as<int64_t>();
    m.arch.flow.hidden = f["hidden"].as<int64_t>();
    m.arch.flow.context_hidden = f["context_hidden"].as<int64_t>();
    m.arch.flow.bins = f["bins"].as<int64_t>();
    m.arch.flow.tail_bound = f["tail_bound"].as<double>();
    m.arch.flow.permutation_seed = f["permutation_seed"].as<uint64_t>();
    m.arch.input = y["input"]["mode"] ? y["input"]["mode"].as<std::string>() : "log_flux";
    if (m.arch.input != "log_flux" && m.arch.input != "shape")
      return Status::Error("model metadata " + path + ": input.mode must be log_flux or shape, not '" + m.arch.input +
                           "'");
    m.flux_floor = y["input"]["floor"].as<double>();
    m.x_mean = y["input"]["mean"].as<std::vector<double>>();
    m.x_std = y["input"]["std"].as<std::vector<double>>();
    const auto t = y["theta"];
    for (int k = 0; k < kNumParams; ++k) {
      m.lo[k] = t["lo"][k].as<double>();
      m.hi[k] = t["hi"][k].as<double>();
      m.y_mean[k] = t["mean"][k].as<double>();
      m.y_std[k] = t["std"][k].as<double>();
    }
    m.ssp = y["ssp"].as<std::string>();
    if (y["training"]) m.training = y["training"].as<std::map<std::string, std::string>>();
    if (y["metrics"]) m.metrics = y["metrics"].as<std::map<std::string, double>>();
    const int64_t width = m.arch.InputWidth();
    if (static_cast<int64_t>(m.x_mean.size()) != width || static_cast<int64_t>(m.x_std.size()) != width)
      return Status::Error("model metadata " + path + ": input.mean/std need " + std::to_string(width) +
                           " values (arch.nwave" + (m.arch.input == "shape" ? " + 1" : "") + ")");
    return m;
  } catch (const std::exception& e) {
    return Status::Error("model metadata " + path + ": " + e.what());
  }
}

void SaveNet(Net& net, const std::string& path) {
  torch::serialize::OutputArchive a;
  net->save(a);
  a.save_to(path + ".tmp");
  std::filesystem::rename(path + ".tmp", path);
}

/// Prior box of a library in library coordinates (PLOk/PHIk; tau -> log10 tau).
Status LibraryBox(const sim::DigsLibrary& lib, const std::string& path, std::array<double, kNumParams>* lo,
                  std::array<double, kNumParams>* hi) {
  for (int k = 0; k < kNumParams; ++k) {
    const auto a = lib.header.find("PLO" + std::to_string(k + 1)), b = lib.header.find("PHI" + std::to_string(k + 1));
    if (a == lib.header.end() || b == lib.header.end())
      return Status::Error("DIGS library " + path + ": primary header lacks PLO" + std::to_string(k + 1) + "/PHI" +
                           std::to_string(k + 1) + "; rewrite it with `cubeflow digs library`");
    (*lo)[k] = std::stod(a->second);
    (*hi)[k] = std::stod(b->second);
  }
  (*lo)[4] = std::log10((*lo)[4]);
  (*hi)[4] = std::log10((*hi)[4]);
  return Status::OK();
}

/// The unstandardised encoder features of one spectrum (Arch::input): log10 flux per pixel, or
/// its shape (minus the mean over the pixels) followed by that mean.
void RawFeatures(const Meta& m, const float* flux, double* out) {
  const int64_t W = m.arch.nwave;
  double a = 0;
  for (int64_t i = 0; i < W; ++i) {
    out[i] = std::log10(std::max(static_cast<double>(flux[i]), m.flux_floor));
    a += out[i];
  }
  if (m.arch.input != "shape") return;
  a /= static_cast<double>(W);
  for (int64_t i = 0; i < W; ++i) out[i] -= a;
  out[W] = a;
}

/// The standardised encoder inputs of every row of `lib` (n x Arch::InputWidth()).
std::vector<float> EncoderInputs(const Meta& m, const sim::DigsLibrary& lib) {
  const int64_t W = lib.n_wave, X = m.arch.InputWidth();
  std::vector<float> x(static_cast<size_t>(lib.n * X));
  std::vector<double> raw(static_cast<size_t>(X));
  for (int64_t r = 0; r < lib.n; ++r) {
    RawFeatures(m, lib.flux.data() + r * W, raw.data());
    for (int64_t i = 0; i < X; ++i)
      x[static_cast<size_t>(r * X + i)] = static_cast<float>((raw[i] - m.x_mean[i]) / m.x_std[i]);
  }
  return x;
}

// ---------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------

struct TrainConfig {
  std::string library, output, checkpoint;
  int64_t epochs = 20, batch_size = 512, max_rows = -1, max_batches = -1;
  double lr = 1e-3, lr_factor = 0.5, val_fraction = 0.02;
  /// > 0: no epoch starts that would, at the last epoch's pace, end after this many minutes of
  /// the run (resumed runs included); the best model so far is written.
  double time_limit_minutes = 0;
  /// > 0: stop (checkpoint and best model written) before epoch stop_after_epochs + 1; a run
  /// continued with --resume then trains exactly as an uninterrupted one.
  int64_t stop_after_epochs = 0;
  int64_t lr_patience = 2, stop_patience = 6;
  uint64_t seed = 1;
  int threads = 1;  // libtorch's OpenMP threads spin: more threads than free cores is far slower
  bool resume = false;
  Arch arch;
};

Result<TrainConfig> ParseConfig(const std::string& text, const std::filesystem::path& base) {
  TrainConfig c;
  try {
    const YAML::Node y = YAML::Load(text);
    static const std::vector<std::string> known = {"kind", "library", "output", "checkpoint", "epochs", "batch_size",
                                                   "max_rows", "max_batches", "lr", "lr_factor", "lr_patience",
                                                   "stop_patience", "val_fraction", "seed", "threads", "arch",
                                                   "time_limit_minutes", "stop_after_epochs"};
    for (const auto& kv : y) {
      const std::string k = kv.first.as<std::string>();
      if (std::find(known.begin(), known.end(), k) == known.end())
        return Status::Error("unknown key '" + k + "' (known: kind, library, output, checkpoint, epochs, batch_size, "
                             "max_rows, max_batches, lr, lr_factor, lr_patience, stop_patience, val_fraction, seed, "
                             "threads, arch, time_limit_minutes, stop_after_epochs)");
    }
    auto get = [&](const char* k, auto& v) {
      if (y[k]) v = y[k].as<std::decay_t<decltype(v)>>();
    };
    get("library", c.library);
    get("output", c.output);
    get("checkpoint", c.checkpoint);
    get("epochs", c.epochs);
    get("batch_size", c.batch_size);
    get("max_rows", c.max_rows);
    get("max_batches", c.max_batches);
    get("lr", c.lr);
    get("lr_factor", c.lr_factor);
    get("lr_patience", c.lr_patience);
    get("stop_patience", c.stop_patience);
    get("val_fraction", c.val_fraction);
    get("seed", c.seed);
    get("threads", c.threads);
    get("time_limit_minutes", c.time_limit_minutes);
    get("stop_after_epochs", c.stop_after_epochs);
    if (const auto a = y["arch"]) {
      if (a["hidden"]) c.arch.hidden = a["hidden"].as<std::vector<int64_t>>();
      if (a["summary"]) c.arch.summary = a["summary"].as<int64_t>();
      if (a["input"]) c.arch.input = a["input"].as<std::string>();
      if (const auto f = a["flow"]) {
        if (f["transform"]) c.arch.flow.transform = f["transform"].as<std::string>();
        if (f["layers"]) c.arch.flow.layers = f["layers"].as<int64_t>();
        if (f["hidden"]) c.arch.flow.hidden = f["hidden"].as<int64_t>();
        if (f["context_hidden"]) c.arch.flow.context_hidden = f["context_hidden"].as<int64_t>();
        if (f["bins"]) c.arch.flow.bins = f["bins"].as<int64_t>();
        if (f["tail_bound"]) c.arch.flow.tail_bound = f["tail_bound"].as<double>();
      }
    }
  } catch (const std::exception& e) {
    return Status::Error(std::string("configuration: ") + e.what());
  }
  if (c.library.empty()) return Status::Error("configuration needs 'library: FILE.fits' (cubeflow digs library)");
  if (c.output.empty()) return Status::Error("configuration needs 'output: MODEL.pt'");
  auto resolve = [&](std::string& p) {
    if (!p.empty() && std::filesystem::path(p).is_relative()) p = (base / p).lexically_normal().string();
  };
  resolve(c.library);
  resolve(c.output);
  if (c.checkpoint.empty()) c.checkpoint = c.output + ".ckpt";
  resolve(c.checkpoint);
  if (c.epochs < 1 || c.batch_size < 2) return Status::Error("epochs must be >= 1 and batch_size >= 2");
  if (c.arch.input != "log_flux" && c.arch.input != "shape")
    return Status::Error("arch.input must be log_flux or shape, not '" + c.arch.input + "'");
  if (!(c.val_fraction > 0 && c.val_fraction < 0.5)) return Status::Error("val_fraction must lie in (0, 0.5)");
  CUBEFLOW_RETURN_NOT_OK(c.arch.flow.Validate());
  return c;
}

/// \brief What a DIGS training run works on: the library (its flux replaced by the encoder
/// inputs), the split, the metadata of the model it writes, the flow variables of every
/// row, and both as tensors. The tensors view `x` and `y`, so it is neither copied nor moved.
struct TrainingData {
  TrainingData() = default;
  TrainingData(const TrainingData&) = delete;
  TrainingData& operator=(const TrainingData&) = delete;

  sim::DigsLibrary lib;
  nn::Split split;
  Meta meta;
  std::vector<float> x;  ///< n x Arch::InputWidth() encoder inputs (lib.flux is released)
  std::vector<float> y;  ///< n x kNumParams flow variables
  torch::Tensor x_t, y_t;  ///< views of x and y
};

/// Mean and standard deviation per encoder feature (RawFeatures) of the training rows (m.x_mean,
/// m.x_std).
void FitInputStandardisation(const sim::DigsLibrary& lib, const std::vector<int64_t>& train_rows, Meta& m) {
  const int64_t W = lib.n_wave, X = m.arch.InputWidth();
  m.x_mean.assign(static_cast<size_t>(X), 0.0);
  m.x_std.assign(static_cast<size_t>(X), 0.0);
  std::vector<double> s1(static_cast<size_t>(X), 0), s2(static_cast<size_t>(X), 0), raw(static_cast<size_t>(X));
  for (int64_t r : train_rows) {
    RawFeatures(m, lib.flux.data() + r * W, raw.data());
    for (int64_t i = 0; i < X; ++i) {
      s1[i] += raw[i];
      s2[i] += raw[i] * raw[i];
    }
  }
  const double nt = static_cast<double>(train_rows.size());
  for (int64_t i = 0; i < X; ++i) {
    m.x_mean[i] = s1[i] / nt;
    m.x_std[i] = std::sqrt(std::max(s2[i] / nt - m.x_mean[i] * m.x_mean[i], 1e-12));
  }
}

/// Mean and standard deviation of the training rows' logit parameters (m.y_mean, m.y_std); needs
/// the prior box m.lo / m.hi.
void FitParameterStandardisation(const sim::DigsLibrary& lib, const std::vector<int64_t>& train_rows, Meta& m) {
  m.y_mean.fill(0);
  m.y_std.fill(1);
  std::array<double, kNumParams> t1{}, t2{};
  for (int64_t r : train_rows)
    for (int k = 0; k < kNumParams; ++k) {
      const double y = ToFlow(m, k, lib.theta[static_cast<size_t>(r * kNumParams + k)]);
      t1[k] += y;
      t2[k] += y * y;
    }
  const double nt = static_cast<double>(train_rows.size());
  for (int k = 0; k < kNumParams; ++k) {
    m.y_mean[k] = t1[k] / nt;
    m.y_std[k] = std::sqrt(std::max(t2[k] / nt - m.y_mean[k] * m.y_mean[k], 1e-12));
  }
}

/// The flow variables of every row of `lib` (n x kNumParams).
std::vector<float> FlowVariables(const Meta& m, const sim::DigsLibrary& lib) {
  std::vector<float> yv(static_cast<size_t>(lib.n * kNumParams));
  for (int64_t r = 0; r < lib.n; ++r)
    for (int k = 0; k < kNumParams; ++k)
      yv[static_cast<size_t>(r * kNumParams + k)] = static_cast<float>(ToFlow(m, k, lib.theta[static_cast<size_t>(r * kNumParams + k)]));
  return yv;
}

/// Step 1: the library, the seeded split, the metadata with the standardisation of the training
/// rows, and the tensors.
Status PrepareData(const TrainConfig& c, const std::string& config_text, TrainingData& d) {
  CUBEFLOW_ASSIGN_OR_RETURN(d.lib, sim::ReadDigsLibrary(c.library, c.max_rows));
  sim::DigsLibrary& lib = d.lib;
  if (lib.n < 10) return Status::Error("DIGS library " + c.library + " has " + std::to_string(lib.n) + " rows; need >= 10");
  Meta& m = d.meta;
  m.arch = c.arch;
  m.arch.nwave = lib.n_wave;
  m.config_yaml = config_text;
  m.ssp = lib.header.count("DIGSSSP") ? lib.header.at("DIGSSSP") : "builtin";
  CUBEFLOW_RETURN_NOT_OK(LibraryBox(lib, c.library, &m.lo, &m.hi));
  CUBEFLOW_ASSIGN_OR_RETURN(d.split, nn::SplitRows(lib.n, c.seed, 1.0 - c.val_fraction, c.val_fraction));
  FitInputStandardisation(lib, d.split.train, m);
  FitParameterStandardisation(lib, d.split.train, m);
  d.x = EncoderInputs(m, lib);
  std::vector<float>().swap(lib.flux);
  d.y = FlowVariables(m, lib);
  d.x_t = torch::from_blob(d.x.data(), {lib.n, m.arch.InputWidth()}, torch::kFloat);
  d.y_t = torch::from_blob(d.y.data(), {lib.n, kNumParams}, torch::kFloat);
  return Status::OK();
}

/// Copies the parameters (not the buffers) of `from` into `to`.
void CopyParams(Net& from, Net& to) {
  torch::NoGradGuard g;
  auto src = from->parameters(), dst = to->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
}

/// \brief What a checkpoint holds besides the networks and the optimiser.
struct TrainState {
  int64_t epoch = 0;  ///< epochs completed
  nn::Plateau plateau;
  double seconds = 0;  ///< of the runs before this one
  std::vector<double> train_losses, val_losses;
};

/// Numbers a checkpoint must share with the run that resumes it.
std::vector<nn::CheckpointGuard> Guards(const TrainConfig& c, const sim::DigsLibrary& lib) {
  return {{"guard_seed", "seed", static_cast<double>(c.seed)},
          {"guard_rows", "library size", static_cast<double>(lib.n)},
          {"guard_nwave", "number of pixels", static_cast<double>(lib.n_wave)},
          {"guard_epochs", "number of epochs", static_cast<double>(c.epochs)}};
}

/// Step 2: with --resume and an existing checkpoint, the networks, optimiser and state of the
/// checkpoint (refused when it belongs to another run).
Status LoadCheckpoint(const TrainConfig& c, const std::vector<nn::CheckpointGuard>& guards, Net& net, Net& best,
                      torch::optim::Adam& opt, TrainState& state) {
  if (!(c.resume && std::filesystem::exists(c.checkpoint))) return Status::OK();
  try {
    nn::CheckpointReader r(c.checkpoint);
    CUBEFLOW_RETURN_NOT_OK(nn::CheckGuards(r, guards, c.checkpoint));
    r.Module("net", *net);
    r.Module("best", *best);
    r.Optimizer("optimizer", opt);
    state.plateau = nn::ReadPlateau(r);
    state.train_losses = r.Vector("train_losses");
    state.val_losses = r.Vector("val_losses");
    state.epoch = static_cast<int64_t>(r.Scalar("epochs_done"));
    state.seconds = r.Scalar("elapsed_s");
    std::cerr << "cubeflow train: resuming " << c.checkpoint << " after epoch " << state.epoch << "\n";
  } catch (const std::exception& e) {
    return Status::Error("cannot resume from checkpoint " + c.checkpoint + ": " + e.what());
  }
  return Status::OK();
}

/// Step: the checkpoint after `epochs_done` epochs.
void SaveCheckpoint(const std::string& path, const std::vector<nn::CheckpointGuard>& guards, Net& net, Net& best,
                    torch::optim::Adam& opt, const TrainState& state, int64_t epochs_done, double seconds) {
  nn::CheckpointWriter w;
  w.Module("net", *net);
  w.Module("best", *best);
  w.Optimizer("optimizer", opt);
  nn::WritePlateau(w, state.plateau);
  w.Vector("train_losses", state.train_losses);
  w.Vector("val_losses", state.val_losses);
  w.Scalar("epochs_done", static_cast<double>(epochs_done));
  w.Scalar("elapsed_s", seconds);
  nn::WriteGuards(w, guards);
  w.Save(path);
}

/// Mean negative log posterior density of positions first .. first + count - 1 of `rows`.
torch::Tensor BatchLoss(Net& net, const TrainingData& d, const std::vector<int64_t>& rows, size_t first, size_t count) {
  const auto idx = nn::RowsTensor(rows, first, count);
  return -net->LogProb(d.x_t.index_select(0, idx), d.y_t.index_select(0, idx)).mean();
}

/// Step: one epoch (0-based `epoch`) on the shuffled training rows at learning rate `lr`.
std::optional<double> TrainEpoch(const TrainConfig& c, const TrainingData& d, Net& net, torch::optim::Adam& opt,
                                 int64_t epoch, double lr) {
  nn::SetLearningRate(opt, lr);
  net->train();
  const auto rows = nn::ShuffledRows(d.split.train, c.seed, epoch);
  return nn::RunBatches(static_cast<int64_t>(rows.size()), c.batch_size, c.max_batches, nullptr,
                        [&](size_t first, size_t count) {
                          return nn::Step(opt, BatchLoss(net, d, rows, first, count));
                        });
}

/// Step: the loss on the validation rows (batches of 4096).
double ValidationLoss(const TrainingData& d, Net& net) {
  torch::NoGradGuard g;
  net->eval();
  const auto& val = d.split.val;
  double sum = 0;
  for (size_t first = 0; first < val.size(); first += 4096) {
    const size_t count = std::min<size_t>(4096, val.size() - first);
    sum += BatchLoss(net, d, val, first, count).item<double>() * static_cast<double>(count);
  }
  return sum / static_cast<double>(val.size());
}

/// \brief Which epochs may start: none once the next one would, at the last epoch's pace, end
/// after time_limit_minutes of the run, none from stop_after_epochs on.
class EpochBudget {
 public:
  EpochBudget(const TrainConfig& c, const nn::RunClock& clock) : c_(c), clock_(clock) {}

  /// Runs `train` for epoch `epoch` (0-based) and times it, or returns nothing when the budget
  /// does not allow the epoch.
  template <typename TrainFn>
  std::optional<double> Run(int64_t epoch, const TrainFn& train) {
    if (c_.time_limit_minutes > 0 && clock_.Elapsed() + last_epoch_s_ > 60 * c_.time_limit_minutes) {
      out_of_time_ = true;
      return std::nullopt;
    }
    if (c_.stop_after_epochs > 0 && epoch >= c_.stop_after_epochs) return std::nullopt;
    const double started = clock_.Elapsed();
    struct Timer {
      double& out;
      const nn::RunClock& clock;
      double started;
      ~Timer() { out = clock.Elapsed() - started; }
    } timer{last_epoch_s_, clock_, started};
    return train();
  }
  /// Whether the time limit refused an epoch.
  bool out_of_time() const { return out_of_time_; }

 private:
  const TrainConfig& c_;
  const nn::RunClock& clock_;
  double last_epoch_s_ = 0;
  bool out_of_time_ = false;
};

/// Step 3: the best weights and the metadata (with how the training went) beside them.
Status WriteFinalModel(const TrainConfig& c, TrainingData& d, Net& best, const TrainState& state,
                       const nn::StageOutcome& outcome, bool out_of_time, const nn::RunClock& clock) {
  const sim::DigsLibrary& lib = d.lib;
  Meta& m = d.meta;
  m.training = {{"library", c.library},
                {"library_rows", std::to_string(lib.n)},
                {"train_rows", std::to_string(d.split.train.size())},
                {"val_rows", std::to_string(d.split.val.size())},
                {"library_seed", lib.header.count("DIGSSEED") ? lib.header.at("DIGSSEED") : "?"},
                {"seed", std::to_string(c.seed)},
                {"epochs_run", std::to_string(outcome.epochs_run)},
                {"best_epoch", std::to_string(state.plateau.best_epoch)},
                {"stopped_early", outcome.stopped_early ? "true" : "false"},
                {"stopped_by_time_limit", out_of_time ? "true" : "false"},
                {"wall_seconds", Num(clock.Elapsed(), 6)}};
  m.metrics = {{"best_val_nll", state.plateau.best_val}};
  const auto parent = std::filesystem::path(c.output).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  SaveNet(best, c.output);
  CUBEFLOW_RETURN_NOT_OK(WriteMeta(sbi::MetadataPath(c.output), m));
  std::cerr << "cubeflow train: wrote " << c.output << " and " << sbi::MetadataPath(c.output) << " (best epoch "
            << state.plateau.best_epoch << ", validation NLL " << Num(state.plateau.best_val, 5) << ", "
            << nn::FormatDuration(clock.Elapsed()) << ")\n";
  return Status::OK();
}

Status Train(const TrainConfig& c, const std::string& config_text) {
  torch::set_num_threads(std::max(1, c.threads));
  TrainingData d;
  CUBEFLOW_RETURN_NOT_OK(PrepareData(c, config_text, d));
  torch::manual_seed(c.seed);
  Net net(d.meta.arch), best(d.meta.arch);
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(c.lr));
  CopyParams(net, best);
  TrainState state;
  const auto guards = Guards(c, d.lib);
  CUBEFLOW_RETURN_NOT_OK(LoadCheckpoint(c, guards, net, best, opt, state));
  const nn::RunClock clock(state.seconds);
  std::cerr << "cubeflow train: DIGS NPE on " << c.library << " (" << d.lib.n << " spectra, " << d.split.train.size()
            << " training, " << d.split.val.size() << " validation; SSP " << d.meta.ssp << "), "
            << torch::get_num_threads() << " threads\n";

  EpochBudget budget(c, clock);
  nn::StageSteps steps;
  steps.train_epoch = [&](int64_t epoch, double lr) {
    return budget.Run(epoch, [&] { return TrainEpoch(c, d, net, opt, epoch, lr); });
  };
  steps.validate = [&] { return ValidationLoss(d, net); };
  steps.keep_best = [&] { CopyParams(net, best); };
  steps.checkpoint = [&](int64_t done) {
    SaveCheckpoint(c.checkpoint, guards, net, best, opt, state, done, clock.Elapsed());
  };
  const auto outcome =
      nn::RunStage(nn::StageOptionsFrom(c), state.epoch, state.plateau, state.train_losses, state.val_losses, clock,
                   steps, [](const nn::EpochReport& r) { std::cerr << nn::FormatEpochLine(r) << std::endl; });
  return WriteFinalModel(c, d, best, state, outcome, budget.out_of_time(), clock);
}

// ---------------------------------------------------------------------------------------
// Sampling and evaluation
// ---------------------------------------------------------------------------------------

/// Posterior samples (printed coordinates) of the encoder inputs `x` (n x InputWidth): n x s x 5.
/// Chunk c of 64 objects draws its base samples from a generator seeded by (seed, c).
std::vector<float> Sample(Net& net, const Meta& m, const float* x, int64_t n, int64_t s, uint64_t seed) {
  torch::NoGradGuard g;
  net->eval();
  std::vector<float> out(static_cast<size_t>(n * s * kNumParams));
  const int64_t W = m.arch.InputWidth();
  for (int64_t first = 0, chunk = 0; first < n; first += 64, ++chunk) {
    const int64_t b = std::min<int64_t>(64, n - first);
    auto xt = torch::from_blob(const_cast<float*>(x + first * W), {b, W}, torch::kFloat);
    auto e = net->Context(xt);
    auto gen = at::detail::createCPUGenerator(seed * 1000003ULL + static_cast<uint64_t>(chunk));
    auto z = torch::randn({b, s, kNumParams}, gen, torch::kFloat);
    auto y = net->flow->Inverse(z, e).contiguous();
    const float* py = y.data_ptr<float>();
    for (int64_t i = 0; i < b * s; ++i)
      for (int k = 0; k < kNumParams; ++k)
        out[static_cast<size_t>((first * s + i) * kNumParams + k)] = static_cast<float>(ToPrinted(m, k, py[i * kNumParams + k]));
  }
  return out;
}

int Evaluate(const std::string& model_path, const std::string& lib_path, int64_t samples, uint64_t seed, int mcmc_n,
             int threads, int64_t rows, const sim::DigsFitOptions& fo) {
  auto fail = [](const std::string& msg) {
    std::cerr << "cubeflow evaluate: " << msg << "\n";
    return 1;
  };
  torch::set_num_threads(std::max(1, threads));
  auto meta = ReadMeta(sbi::MetadataPath(model_path));
  if (!meta.ok()) return fail(meta.status().message());
  const Meta& m = *meta;
  Net net(m.arch);
  try {
    torch::serialize::InputArchive a;
    a.load_from(model_path);
    net->load(a);
  } catch (const std::exception& e) {
    return fail("cannot load model " + model_path + ": " + e.what());
  }
  auto libr = sim::ReadDigsLibrary(lib_path, rows);
  if (!libr.ok()) return fail(libr.status().message());
  sim::DigsLibrary lib = std::move(*libr);
  if (lib.n_wave != m.arch.nwave)
    return fail("library " + lib_path + " has " + std::to_string(lib.n_wave) + " pixels, the model " +
                std::to_string(m.arch.nwave));
  const std::vector<float>& raw_flux = lib.flux;
  const std::vector<float> x = EncoderInputs(m, lib);
  const int64_t n = lib.n;
  std::vector<double> truth(static_cast<size_t>(n * kNumParams));
  for (int64_t i = 0; i < n; ++i)
    for (int k = 0; k < kNumParams; ++k) {
      const double v = lib.theta[static_cast<size_t>(i * kNumParams + k)];
      truth[static_cast<size_t>(i * kNumParams + k)] = k == 4 ? std::pow(10.0, v) : v;
    }
  auto t0 = std::chrono::steady_clock::now();
  const auto post = Sample(net, m, x.data(), n, samples, seed);
  const double batch_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  (void)Sample(net, m, x.data(), 1, samples, seed);
  const double single_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::array<double, kNumParams> plo, phi;
  for (int k = 0; k < kNumParams; ++k) {
    plo[k] = k == 4 ? std::pow(10.0, m.lo[k]) : m.lo[k];
    phi[k] = k == 4 ? std::pow(10.0, m.hi[k]) : m.hi[k];
  }
  auto checks = CheckPosteriors(post, n, samples, truth, plo, phi);
  // Noise realisations of one parameter set (`cubeflow digs library --theta`): the truths do not
  // vary, so there is no R^2 or ranking, and the verdict (made for prior draws) does not apply.
  const auto fix = lib.header.find("DIGSFIX");
  const bool one_theta = fix != lib.header.end() && fix->second.find('T') != std::string::npos;
  if (one_theta)
    for (auto& c : checks) c.r2 = c.spearman = std::numeric_limits<double>::quiet_NaN();
  std::printf("# DIGS NPE %s on %s: %lld spectra (library seed %s, SSP %s), %lld posterior samples each\n",
              model_path.c_str(), lib_path.c_str(), static_cast<long long>(n),
              lib.header.count("DIGSSEED") ? lib.header.at("DIGSSEED").c_str() : "?",
              lib.header.count("DIGSSSP") ? lib.header.at("DIGSSSP").c_str() : "?", static_cast<long long>(samples));
  std::printf("# trained on %s spectra (library seed %s), %s epochs\n",
              m.training.count("train_rows") ? m.training.at("train_rows").c_str() : "?",
              m.training.count("library_seed") ? m.training.at("library_seed").c_str() : "?",
              m.training.count("epochs_run") ? m.training.at("epochs_run").c_str() : "?");
  std::printf("# R2, Spearman, bias, scatter: posterior median vs truth; cov68/95: truths inside the central "
              "intervals; SBC chi2: 20-bin rank histogram (19 dof; 0.1 %% critical value 43.8); width/prior: median "
              "(q84 - q16) over the prior's; hw: median (q84 - q16) / 2. tau in Gyr.\n");
  std::printf("%-9s %7s %8s %8s %8s %6s %6s %8s %11s %8s\n", "param", "R2", "Spearman", "bias", "scatter", "cov68",
              "cov95", "SBCchi2", "width/prior", "hw");
  for (int k = 0; k < kNumParams; ++k) {
    const auto& c = checks[k];
    std::printf("%-9s %7.3f %8.3f %8.3f %8.3f %6.3f %6.3f %8.1f %11.3f %8.3f\n", PrintedNames()[k].c_str(), c.r2,
                c.spearman, c.bias, c.scatter, c.cov68, c.cov95, c.sbc_chi2, c.width_ratio, c.median_hw);
  }
  if (one_theta) {
    std::printf("verdict: not made (one parameter set, %lld noise realisations; the check needs prior draws)\n",
                static_cast<long long>(n));
  } else {
    const Status v = Verdict(checks, n);
    std::printf("verdict: %s\n", v.ok() ? "PASS (calibrated and informative)" : v.message().c_str());
  }
  std::printf("NPE wall time: %.4f s per spectrum in batches of 64, %.4f s for one spectrum alone (%lld samples, "
              "%d threads)\n",
              batch_s / static_cast<double>(n), single_s, static_cast<long long>(samples), torch::get_num_threads());

  if (mcmc_n > 0) {
    const int nm = static_cast<int>(std::min<int64_t>(mcmc_n, n));
    sim::SspSource src;
    src.ssp = m.ssp;
    sim::DigsConfig dc;
    dc.prior.log_z_min = m.lo[1];
    auto model = sim::BuildDigsModel(src, dc);
    if (!model.ok()) return fail("MCMC model: " + model.status().message());
    const uint64_t lib_seed = lib.header.count("DIGSSEED") ? std::stoull(lib.header.at("DIGSSEED")) : 0;
    std::printf("\n# NPE vs MCMC on the first %d spectra (MCMC: cubeflow digs mcmc settings, %d kept iterations, "
                "per-object seed as in `cubeflow digs mcmc --seed %llu`)\n",
                nm, fo.n_steps, static_cast<unsigned long long>(lib_seed));
    std::printf("%4s %-9s %8s %17s %17s\n", "obj", "param", "truth", "NPE med +- hw", "MCMC med +- hw");
    std::vector<std::vector<double>> dmed(kNumParams), wratio(kNumParams), npe_hw(kNumParams), mcmc_hw(kNumParams);
    double mcmc_s = 0;
    std::vector<double> flux(static_cast<size_t>(lib.n_wave));
    for (int i = 0; i < nm; ++i) {
      for (int64_t w = 0; w < lib.n_wave; ++w) flux[w] = raw_flux[static_cast<size_t>(i * lib.n_wave + w)];
      sim::DigsFitOptions o = fo;
      o.seed = lib_seed * 1000003ULL + static_cast<uint64_t>(i);
      auto p = sim::FitDigsMcmc(**model, flux.data(), o);
      if (!p.ok()) return fail("MCMC object " + std::to_string(i) + ": " + p.status().message());
      mcmc_s += p->seconds;
      for (int k = 0; k < kNumParams; ++k) {
        std::vector<double> v(static_cast<size_t>(samples));
        for (int64_t j = 0; j < samples; ++j) v[j] = post[static_cast<size_t>((i * samples + j) * kNumParams + k)];
        const double q16 = Q(v, 0.16), q50 = Q(v, 0.5), q84 = Q(v, 0.84);
        const double hw = 0.5 * (q84 - q16), mhw = 0.5 * (p->q84[k] - p->q16[k]);
        std::printf("%4d %-9s %8.3f %8.3f +- %5.3f %8.3f +- %5.3f\n", i, PrintedNames()[k].c_str(),
                    truth[static_cast<size_t>(i * kNumParams + k)], q50, hw, p->q50[k], mhw);
        dmed[k].push_back(std::abs(q50 - p->q50[k]) / mhw);
        wratio[k].push_back(hw / mhw);
        npe_hw[k].push_back(hw);
        mcmc_hw[k].push_back(mhw);
      }
      std::fflush(stdout);
    }
    std::printf("\n%-9s %22s %22s %22s %14s %14s\n", "param", "median |dmed|/MCMC hw", "median NPE hw/MCMC hw",
                "range of hw ratio", "median NPE hw", "median MCMC hw");
    for (int k = 0; k < kNumParams; ++k) {
      auto a = dmed[k], b = wratio[k];
      std::printf("%-9s %22.2f %22.2f %10.2f - %-9.2f %14.3f %14.3f\n", PrintedNames()[k].c_str(), Q(a, 0.5),
                  Q(b, 0.5), *std::min_element(b.begin(), b.end()), *std::max_element(b.begin(), b.end()),
                  Q(npe_hw[k], 0.5), Q(mcmc_hw[k], 0.5));
    }
    std::printf("wall time per spectrum: MCMC %.2f s, NPE %.4f s (one spectrum alone; %.4f s in batches)\n",
                mcmc_s / nm, single_s, batch_s / static_cast<double>(n));
  }
  return 0;
}

}  // namespace

int TrainMain(int argc, char** argv) {
  std::string cfg;
  bool resume = false;
  int threads = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--resume") resume = true;
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!a.empty() && a[0] != '-' && cfg.empty()) cfg = a;
    else {
      std::cerr << "usage: cubeflow train CONFIG.yaml [--resume] [--threads N]  (kind: digs; docs/digs.md)\n";
      return 2;
    }
  }
  std::ifstream f(cfg);
  if (!f) {
    std::cerr << "cubeflow train: cannot read " << cfg << "\n";
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  auto c = ParseConfig(ss.str(), std::filesystem::absolute(cfg).parent_path());
  if (!c.ok()) {
    std::cerr << "cubeflow train: " << cfg << ": " << c.status().message() << "\n";
    return 1;
  }
  c->resume = resume;
  if (threads > 0) c->threads = threads;
  const Status st = Train(*c, ss.str());
  if (!st.ok()) {
    std::cerr << "cubeflow train: " << st.message() << "\n";
    return 1;
  }
  return 0;
}

int EvaluateMain(int argc, char** argv) {
  std::vector<std::string> pos;
  int64_t samples = 1000, rows = -1;
  uint64_t seed = 1;
  int mcmc = 0, threads = 2;
  sim::DigsFitOptions fo;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    try {
      if (a == "--samples") samples = std::stoll(next());
      else if (a == "--seed") seed = std::stoull(next());
      else if (a == "--mcmc") mcmc = std::stoi(next());
      else if (a == "--mcmc-steps") fo.n_steps = std::stoi(next());
      else if (a == "--mcmc-thin") fo.thin = std::stoi(next());
      else if (a == "--threads") threads = std::stoi(next());
      else if (a == "--rows") rows = std::stoll(next());
      else if (!a.empty() && a[0] != '-') pos.push_back(a);
      else throw std::invalid_argument(a);
    } catch (const std::exception&) {
      pos.clear();
      break;
    }
  }
  if (pos.size() != 2 || samples < 10) {
    std::cerr << "usage: cubeflow evaluate MODEL.pt LIBRARY.fits [--samples S (>= 10)] [--seed K] [--rows N] "
                 "[--mcmc N [--mcmc-steps K] [--mcmc-thin T]] [--threads N]  (DIGS model; docs/digs.md)\n";
    return 2;
  }
  return Evaluate(pos[0], pos[1], samples, seed, mcmc, threads, rows, fo);
}

}  // namespace cubeflow::digs
