#pragma once
// Internal (not installed): the libtorch helpers of the CNN and SBI trainings (train.cpp,
// sbi_train.cpp): the Log-Cosh loss, row selections, the learning rate of an optimiser and
// checkpoint archives with the guards that keep a checkpoint to the run that wrote it.

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"
#include "cubeflow/strings.hpp"
#include "train_common.hpp"

namespace cubeflow::nn {

/// Mean log(cosh(pred - target)) over the finite targets (numerically stable form).
inline torch::Tensor LogCosh(const torch::Tensor& pred, const torch::Tensor& target) {
  auto valid = torch::isfinite(target);
  auto d = torch::where(valid, pred - torch::nan_to_num(target, 0.0), torch::zeros_like(pred));
  auto a = d.abs();
  auto lc = a + torch::log1p(torch::exp(-2.0 * a)) - std::log(2.0);
  return (lc * valid).sum() / valid.sum().clamp_min(1);
}

/// Multiplies each spectrum of a batch (rows of `spec`, on the axis `wave`) by its own random
/// continuum 1 + sum_k c_k P_k(x), Legendre polynomials of degree 1..`degree` in x in [-1, 1]
/// over the pixels, c_k ~ N(0, sigma) (clamped at 0.05 from below), and renormalises it to mean 1
/// in [norm_min, norm_max], as the nodes normalise real spectra (the CNN's augment_continuum).
inline torch::Tensor DistortContinuum(const torch::Tensor& spec, const WavelengthAxis& wave, double norm_min,
                                      double norm_max, int degree, double sigma, at::Generator& gen) {
  const int64_t b = spec.size(0), n = spec.size(1);
  auto x = torch::linspace(-1.0, 1.0, n, torch::kDouble);
  std::vector<torch::Tensor> legendre = {torch::ones_like(x), x};  // P_0, P_1; then Bonnet's recursion
  for (int k = 2; k <= degree; ++k)
    legendre.push_back(((2.0 * k - 1.0) * x * legendre[k - 1] - (k - 1.0) * legendre[k - 2]) / static_cast<double>(k));
  auto basis = torch::stack(std::vector<torch::Tensor>(legendre.begin() + 1, legendre.begin() + 1 + degree))
                   .to(torch::kFloat);                                // degree x n
  auto coef = sigma * torch::randn({b, degree}, gen);                 // b x degree
  auto shape = (1.0 + torch::matmul(coef, basis)).clamp_min(0.05);    // b x n
  int64_t lo = 0, hi = n;
  if (wave.n == n) {
    lo = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(wave.PixelOf(norm_min) - 1e-9)), 0, n - 1);
    hi = std::clamp<int64_t>(static_cast<int64_t>(std::floor(wave.PixelOf(norm_max) + 1e-9)) + 1, lo + 1, n);
  }
  return spec * (shape / shape.narrow(1, lo, hi - lo).mean(1, true));
}

/// Rows [first, first + count) of `rows` as a tensor (no copy: `rows` must outlive it).
inline torch::Tensor RowsTensor(const std::vector<int64_t>& rows, size_t first, size_t count) {
  return torch::from_blob(const_cast<int64_t*>(rows.data() + first), {static_cast<int64_t>(count)}, torch::kLong);
}

/// One optimiser step on `loss`; returns its value.
inline double Step(torch::optim::Optimizer& opt, const torch::Tensor& loss) {
  opt.zero_grad();
  loss.backward();
  opt.step();
  return loss.item<double>();
}

/// Sets the learning rate of every parameter group.
inline void SetLearningRate(torch::optim::Adam& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
}

/// \brief A checkpoint being written: networks, optimiser state, numbers and loss histories.
class CheckpointWriter {
 public:
  void Module(const char* key, torch::nn::Module& m) {
    torch::serialize::OutputArchive a;
    m.save(a);
    ar_.write(key, a);
  }
  void Optimizer(const char* key, torch::optim::Optimizer& o) {
    torch::serialize::OutputArchive a;
    o.save(a);
    ar_.write(key, a);
  }
  void Scalar(const char* key, double v) { ar_.write(key, torch::tensor(v, torch::kDouble)); }
  void Vector(const char* key, const std::vector<double>& v) {
    // torch::tensor refuses an empty list: an empty history is a 0-length slice.
    ar_.write(key, torch::tensor(v.empty() ? std::vector<double>{0.0} : v, torch::kDouble)
                       .narrow(0, 0, static_cast<int64_t>(v.size())));
  }
  /// Writes the checkpoint to `path` atomically (temporary file + rename), creating its folder.
  void Save(const std::string& path) {
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    ar_.save_to(path + ".tmp");
    std::filesystem::rename(path + ".tmp", path);
  }

 private:
  torch::serialize::OutputArchive ar_;
};

/// \brief A checkpoint being read (throws c10::Error for a missing key or a damaged file).
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path) { ar_.load_from(path); }
  void Module(const char* key, torch::nn::Module& m) {
    torch::serialize::InputArchive a;
    ar_.read(key, a);
    m.load(a);
  }
  void Optimizer(const char* key, torch::optim::Optimizer& o) {
    torch::serialize::InputArchive a;
    ar_.read(key, a);
    o.load(a);
  }
  /// A nested archive, e.g. an optimiser state for an optimiser built later.
  void Archive(const char* key, torch::serialize::InputArchive& a) { ar_.read(key, a); }
  double Scalar(const char* key) {
    torch::Tensor t;
    ar_.read(key, t);
    return t.item<double>();
  }
  std::vector<double> Vector(const char* key) {
    torch::Tensor t;
    ar_.read(key, t);
    t = t.contiguous();
    return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
  }

 private:
  torch::serialize::InputArchive ar_;
};

/// The plateau counters of the running stage.
inline void WritePlateau(CheckpointWriter& w, const Plateau& p) {
  w.Scalar("best_epoch", static_cast<double>(p.best_epoch));
  w.Scalar("since_best", static_cast<double>(p.since_best));
  w.Scalar("since_lr", static_cast<double>(p.since_lr));
  w.Scalar("best_val", p.best_val);
  w.Scalar("lr_scale", p.lr_scale);
}

inline Plateau ReadPlateau(CheckpointReader& r) {
  Plateau p;
  p.best_epoch = static_cast<int64_t>(r.Scalar("best_epoch"));
  p.since_best = static_cast<int64_t>(r.Scalar("since_best"));
  p.since_lr = static_cast<int64_t>(r.Scalar("since_lr"));
  p.best_val = r.Scalar("best_val");
  p.lr_scale = r.Scalar("lr_scale");
  return p;
}

/// \brief A number a checkpoint shares with the run that may resume it (seed, library size,
/// input shape): written with the checkpoint, compared on --resume.
struct CheckpointGuard {
  const char* key;   ///< archive key
  const char* what;  ///< for the message, e.g. "seed"
  double value;      ///< of this run (exact: integers below 2^52)
};

inline void WriteGuards(CheckpointWriter& w, const std::vector<CheckpointGuard>& guards) {
  for (const auto& g : guards) w.Scalar(g.key, g.value);
}

/// Error naming the first guard whose value differs from this run's.
inline Status CheckGuards(CheckpointReader& r, const std::vector<CheckpointGuard>& guards, const std::string& path) {
  for (const auto& g : guards) {
    const double v = r.Scalar(g.key);
    if (v != g.value)
      return Status::Error("checkpoint " + path + " was written for another " + g.what + " (" + Num(v, 17) +
                           ", this run: " + Num(g.value, 17) + "); delete it or train without --resume");
  }
  return Status::OK();
}

}  // namespace cubeflow::nn
