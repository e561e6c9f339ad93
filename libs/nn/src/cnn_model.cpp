// The CNN: network definition, model loading/saving and prediction; the thread pools (threads.hpp).
#include <dlfcn.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>

#include "cubeflow/atomic_file.hpp"
#include "cubeflow/nn/cnn.hpp"
#include "batch_rows.hpp"
#include "net.hpp"
#include "threads.hpp"

namespace cubeflow::nn {

namespace {

/// Sets OpenBLAS's pool when libtorch uses OpenBLAS (found with dlsym), only when it changes.
void SetBlasThreads(int threads) {
  using SetFn = void (*)(int);
  using GetFn = int (*)();
  static const SetFn set = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  static const GetFn get = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (threads > 0 && set && get && get() != threads) set(threads);
}

}  // namespace

void SetThreads(int threads) {
  if (threads <= 0) return;
  // Nodes that run in parallel (inference.cnn) call this from several TBB workers at once.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
  SetBlasThreads(threads);
}

void SetTrainingThreads(int threads) {
  SetThreads(threads);
  SetBlasThreads(at::get_num_threads());
}

int Threads() { return at::get_num_threads(); }

}  // namespace cubeflow::nn

namespace cubeflow::cnn {

// ---------------------------------------------------------------------------------------
// Architecture and network (the architecture checks and DefaultAgeBinCentres: model_metadata.cpp)
// ---------------------------------------------------------------------------------------

AttentionImpl::AttentionImpl(int64_t channels, int64_t dim) {
  query = register_module("query", torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, dim, 1)));
  key = register_module("key", torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, dim, 1)));
  value = register_module("value", torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, channels, 1)));
  gamma = register_parameter("gamma", torch::zeros({1}));
  scale = 1.0 / std::sqrt(static_cast<double>(dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  auto q = query->forward(x).transpose(1, 2);               // [B, L, d]
  auto k = key->forward(x);                                 // [B, d, L]
  auto v = value->forward(x);                               // [B, C, L]
  auto w = torch::softmax(torch::bmm(q, k) * scale, -1);    // [B, L(query), L(key)]
  auto attended = torch::bmm(v, w.transpose(1, 2));         // [B, C, L]
  return x + gamma * attended;
}

CnnNetImpl::CnnNetImpl(const CnnArch& a) : arch(a) {
  namespace nn = torch::nn;
  const int64_t joint = RegisterBranches(*this, a);
  latent = register_module("latent", nn::Sequential(nn::Linear(joint, a.latent), nn::PReLU()));
  decoder = register_module("decoder", nn::Sequential(
      nn::Linear(a.latent, a.decoder_hidden), nn::PReLU(),
      nn::Linear(a.decoder_hidden, a.decoder_hidden), nn::PReLU(),
      nn::Linear(a.decoder_hidden, 2 * kNumBins)));
}

std::pair<torch::Tensor, torch::Tensor> CnnNetImpl::forward(const torch::Tensor& spec,
                                                             const torch::Tensor& phot) {
  auto h = SpectralFeatures(*this, spec);
  if (arch.nbands > 0) h = torch::cat({h, phot_fc->forward(phot)}, 1);
  auto out = decoder->forward(latent->forward(h));
  auto mass = torch::softmax(out.narrow(1, 0, kNumBins), 1);
  auto zh = out.narrow(1, kNumBins, kNumBins);
  return {mass, zh};
}

void GlorotInit(torch::nn::Module& m) {
  torch::NoGradGuard guard;
  for (auto& mod : m.modules(/*include_self=*/true)) {
    if (auto* lin = mod->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(lin->weight);
      torch::nn::init::zeros_(lin->bias);
    } else if (auto* c = mod->as<torch::nn::Conv1d>()) {
      torch::nn::init::xavier_uniform_(c->weight);
      torch::nn::init::zeros_(c->bias);
    }
  }
}

void CopyModuleState(torch::nn::Module& src, torch::nn::Module& dst) {
  torch::NoGradGuard guard;
  auto dp = dst.named_parameters();
  for (const auto& p : src.named_parameters()) dp[p.key()].copy_(p.value());
  auto db = dst.named_buffers();
  for (const auto& b : src.named_buffers()) db[b.key()].copy_(b.value());
}

void SaveModuleAtomic(torch::nn::Module& m, const std::string& path) {
  torch::serialize::OutputArchive ar;
  m.save(ar);
  const std::string tmp = path + ".tmp";
  ar.save_to(tmp);
  std::filesystem::rename(tmp, path);
}

// ---------------------------------------------------------------------------------------
// Metadata (the file itself: model_metadata.cpp)
// ---------------------------------------------------------------------------------------

double CnnMetadata::LightToMass(int ibin, double zh) const {
  const size_t nz = lm_zh_grid.size();
  if (nz == 0 || lm_v.size() != nz * kNumBins) return 1.0;
  if (nz == 1 || !std::isfinite(zh)) return lm_v[ibin];
  if (zh <= lm_zh_grid.front()) return lm_v[ibin];
  if (zh >= lm_zh_grid.back()) return lm_v[(nz - 1) * kNumBins + ibin];
  size_t j = std::upper_bound(lm_zh_grid.begin(), lm_zh_grid.end(), zh) - lm_zh_grid.begin();
  const double z0 = lm_zh_grid[j - 1], z1 = lm_zh_grid[j];
  const double t = (zh - z0) / (z1 - z0);
  // Interpolate log(L/M): light-to-mass ratios vary by orders of magnitude.
  const double a = std::log(lm_v[(j - 1) * kNumBins + ibin]), b = std::log(lm_v[j * kNumBins + ibin]);
  return std::exp(a + t * (b - a));
}

WeightedMeans ComputeWeightedMeans(const CnnMetadata& md, const float* mass_frac, const float* zh) {
  WeightedMeans r;
  double sm = 0, sm_age = 0, sm_zh = 0, sl = 0, sl_age = 0, sl_zh = 0;
  const bool have_lm = !md.lm_v.empty();
  for (int i = 0; i < kNumBins; ++i) {
    const double age = i < static_cast<int>(md.age_bin_centres.size()) ? md.age_bin_centres[i] : 1.0;
    const double logage = std::log10(age * 1e9);
    const double m = std::max(0.0f, mass_frac[i]);
    sm += m;
    sm_age += m * logage;
    sm_zh += m * zh[i];
    if (have_lm) {
      const double l = m * md.LightToMass(i, zh[i]);
      sl += l;
      sl_age += l * logage;
      sl_zh += l * zh[i];
    }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.mw_logage = sm > 0 ? sm_age / sm : nan;
  r.mw_zh = sm > 0 ? sm_zh / sm : nan;
  r.lw_logage = sl > 0 ? sl_age / sl : nan;
  r.lw_zh = sl > 0 ? sl_zh / sl : nan;
  return r;
}

// ---------------------------------------------------------------------------------------
// CnnModel
// ---------------------------------------------------------------------------------------

torch::Tensor CnnModel::Impl::TransformPhot(const torch::Tensor& raw) const {
  const int64_t nb = md.arch.nbands;
  if (nb == 0 || md.phot_transform == "none") return raw;
  auto mean = torch::tensor(std::vector<float>(md.phot_mean.begin(), md.phot_mean.end())).view({1, nb});
  auto sd = torch::tensor(std::vector<float>(md.phot_std.begin(), md.phot_std.end())).view({1, nb});
  auto x = torch::log10(torch::clamp_min(torch::nan_to_num(raw, 0.0), md.phot_floor));
  return (x - mean) / sd;
}

std::pair<torch::Tensor, torch::Tensor> CnnModel::Impl::Forward(const torch::Tensor& spec,
                                                                 const torch::Tensor& phot_raw) const {
  auto phot = TransformPhot(phot_raw);
  if (net) return net->forward(spec, phot);
  std::vector<torch::jit::IValue> args{spec};
  if (script_args >= 2) args.emplace_back(phot);
  auto out = script->forward(args);
  auto check = [&](const torch::Tensor& t, const char* what) {
    if (t.dim() != 2 || t.size(0) != spec.size(0) || t.size(1) != kNumBins)
      throw std::runtime_error(std::string("TorchScript model returned ") + what + " of shape " +
                               c10::str(t.sizes()) + ", expected [" + std::to_string(spec.size(0)) + ", 16]");
    return t.to(torch::kFloat);
  };
  if (out.isTuple()) {
    auto el = out.toTuple()->elements();
    if (el.size() != 2) throw std::runtime_error("TorchScript model returned a tuple of " + std::to_string(el.size()) + " elements, expected (mass_frac, zh)");
    return {check(el[0].toTensor(), "mass_frac"), check(el[1].toTensor(), "zh")};
  }
  if (out.isGenericDict()) {
    auto d = out.toGenericDict();
    if (!d.contains("mass_frac") || !d.contains("zh"))
      throw std::runtime_error("TorchScript model returned a dict without keys 'mass_frac' and 'zh'");
    return {check(d.at("mass_frac").toTensor(), "mass_frac"), check(d.at("zh").toTensor(), "zh")};
  }
  if (out.isTensor()) {
    auto t = out.toTensor();
    if (t.dim() != 2 || t.size(1) != 2 * kNumBins)
      throw std::runtime_error("TorchScript model returned a tensor of shape " + c10::str(t.sizes()) + ", expected [B, 32]");
    return {check(t.narrow(1, 0, kNumBins), "mass_frac"), check(t.narrow(1, kNumBins, kNumBins), "zh")};
  }
  throw std::runtime_error("TorchScript model returned " + out.tagKind() + ", expected (mass_frac, zh), a dict or a [B,32] tensor");
}

CnnModel::CnnModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CnnModel::~CnnModel() = default;
const CnnMetadata& CnnModel::metadata() const { return impl_->md; }
CnnMetadata& CnnModel::mutable_metadata() { return impl_->md; }

Result<std::unique_ptr<CnnModel>> CnnModel::CreateRandom(const CnnMetadata& md, uint64_t seed) {
  CUBEFLOW_RETURN_NOT_OK(md.arch.Validate());
  try {
    auto impl = std::make_unique<Impl>();
    impl->md = md;
    impl->md.format = "state_dict";
    torch::manual_seed(seed);
    impl->net = CnnNet(md.arch);
    GlorotInit(*impl->net);
    impl->net->eval();
    return std::make_unique<CnnModel>(std::move(impl));
  } catch (const std::exception& ex) {
    return Status::Error(std::string("cannot build the CNN: ") + ex.what());
  }
}

Result<std::unique_ptr<CnnModel>> CnnModel::Load(const std::string& path) {
  if (path.empty())
    return Status::Error("no CNN model file given: set the 'model' parameter to a .pt file written by `cubeflow train`");
  if (!std::filesystem::exists(path))
    return Status::Error("CNN model file " + path + " does not exist");
  const std::string mpath = MetadataPath(path);
  if (!std::filesystem::exists(mpath))
    return Status::Error("CNN model " + path + " has no metadata file " + mpath +
                         " (written by `cubeflow train`; for a TorchScript model write it by hand, see docs/cnn.md)");
  CUBEFLOW_ASSIGN_OR_RETURN(CnnMetadata md, ReadMetadata(mpath));
  auto impl = std::make_unique<Impl>();
  impl->md = md;
  try {
    if (md.format == "state_dict") {
      impl->net = CnnNet(md.arch);
      torch::serialize::InputArchive ar;
      ar.load_from(path);
      impl->net->load(ar);
      impl->net->eval();
    } else {
      impl->script = std::make_shared<torch::jit::Module>(torch::jit::load(path));
      impl->script->eval();
      auto method = impl->script->find_method("forward");
      if (!method)
        return Status::Error("TorchScript model " + path + " has no forward method");
      const size_t nargs = method->function().getSchema().arguments().size();  // includes self
      impl->script_args = static_cast<int>(nargs) - 1;
      if (impl->script_args < 1 || impl->script_args > 2)
        return Status::Error("TorchScript model " + path + ": forward takes " + std::to_string(impl->script_args) +
                             " arguments, expected forward(spectra) or forward(spectra, phot)");
      if (impl->script_args == 1 && md.arch.nbands > 0)
        return Status::Error("TorchScript model " + path + ": forward(spectra) takes no photometry but the metadata "
                             "lists " + std::to_string(md.arch.nbands) + " bands");
    }
  } catch (const std::exception& ex) {
    return Status::Error("cannot load CNN model " + path + " (format " + md.format + " per " + mpath + "): " + ex.what());
  }
  return std::make_unique<CnnModel>(std::move(impl));
}

Status CnnModel::Save(const std::string& path) const {
  if (!impl_->net) return Status::Error("only cubeflow (state_dict) models can be saved, not TorchScript ones");
  try {
    auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    SaveModuleAtomic(*impl_->net, path);
  } catch (const std::exception& ex) {
    return Status::Error("cannot save CNN model " + path + ": " + ex.what());
  }
  return WriteMetadata(MetadataPath(path), impl_->md);
}

Status CnnModel::Predict(const float* spectra, const float* phot, int64_t n, float* mass_frac, float* zh,
                         int threads, int64_t batch) const {
  if (n <= 0) return Status::OK();
  const int64_t nw = impl_->md.arch.nwave, nb = impl_->md.arch.nbands;
  if (nb > 0 && phot == nullptr) return Status::Error("the CNN model needs photometry in " + std::to_string(nb) + " bands");
  if (batch <= 0) batch = 256;
  try {
    nn::SetThreads(threads);
    c10::InferenceMode guard;
    batch = std::min<int64_t>(batch, kPredictChunkRows);
    for (int64_t first = 0; first < n; first += batch) {
      const int64_t b = std::min(batch, n - first);
      auto s = torch::from_blob(const_cast<float*>(spectra + first * nw), {b, nw}, torch::kFloat);
      torch::Tensor p = nb > 0 ? torch::from_blob(const_cast<float*>(phot + first * nb), {b, nb}, torch::kFloat)
                               : torch::zeros({b, 0});
      auto [m, z] = impl_->Forward(nn::AtLeastTwoRows(s), nn::AtLeastTwoRows(p));
      m = m.narrow(0, 0, b).contiguous();
      z = z.narrow(0, 0, b).contiguous();
      std::memcpy(mass_frac + first * kNumBins, m.data_ptr<float>(), sizeof(float) * b * kNumBins);
      std::memcpy(zh + first * kNumBins, z.data_ptr<float>(), sizeof(float) * b * kNumBins);
    }
  } catch (const std::exception& ex) {
    return Status::Error(std::string("CNN prediction failed: ") + ex.what());
  }
  return Status::OK();
}

}  // namespace cubeflow::cnn
