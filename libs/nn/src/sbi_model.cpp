// SBI model: encoder and conditional normalising flow (libtorch), loading, saving, summaries
// and posterior sampling (the metadata file: model_metadata.cpp).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>

#include "cubeflow/atomic_file.hpp"
#include "cubeflow/sim/rng.hpp"
#include "batch_rows.hpp"
#include "sbi_net.hpp"
#include "threads.hpp"

namespace cubeflow::sbi {

namespace {

constexpr int64_t kSummaryChunk = 64;     // encoder chunk (feature maps stay in the caches)
constexpr int64_t kSampleChunk = 4096;    // flow samples per network call (activations stay in L2)
constexpr uint64_t kSampleStream = 0x5B1;  // Rng stream of the posterior draws
constexpr double kLn10 = 2.302585092994045684;

}  // namespace

// ---------------------------------------------------------------------------------------
// Parameters (the architectures' checks: model_metadata.cpp)
// ---------------------------------------------------------------------------------------

double SbiMetadata::ToPhysical(int k, double y) const {
  const ThetaParam& p = theta[k];
  const double u = p.mean + p.std * y;
  if (p.transform == "log_lookback") return lookback_reference + lookback_offset - std::exp(kLn10 * u);
  return u;
}

double SbiMetadata::FromPhysical(int k, double v) const {
  const ThetaParam& p = theta[k];
  double u = v;
  if (p.transform == "log_lookback") u = std::log10(std::max(lookback_reference + lookback_offset - v, 1e-6));
  return (u - p.mean) / p.std;
}

double SbiMetadata::SnrFeature(double snr) const {
  const double s = std::isfinite(snr) ? std::max(snr, 1e-3) : std::pow(10.0, snr_log_mean);
  return (std::log10(s) - snr_log_mean) / snr_log_std;
}

std::vector<ThetaParam> DefaultTheta() {
  std::vector<ThetaParam> t;
  for (int q = 10; q <= 90; q += 10) {
    ThetaParam p;
    p.name = "t" + std::to_string(q);
    p.unit = "Gyr";
    p.transform = "log_lookback";
    p.doc = "cosmic time (Gyr after the Big Bang) by which " + std::to_string(q) + " % of the stellar mass had formed";
    t.push_back(p);
  }
  ThetaParam mh;
  mh.name = "mh";
  mh.unit = "dex";
  mh.transform = "linear";
  mh.doc = "mass-weighted mean [M/H] of the stars formed";
  t.push_back(mh);
  return t;
}

double Quantile(std::vector<float>& v, double q) {
  const size_t n = v.size();
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(n - 1);
  const size_t lo = static_cast<size_t>(pos);
  std::nth_element(v.begin(), v.begin() + lo, v.end());
  const double a = v[lo];
  if (lo + 1 >= n) return a;
  const double b = *std::min_element(v.begin() + lo + 1, v.end());
  return a + (pos - static_cast<double>(lo)) * (b - a);
}

// ---------------------------------------------------------------------------------------
// Networks
// ---------------------------------------------------------------------------------------

EncoderImpl::EncoderImpl(const EncoderArch& a, int64_t theta_dim) : arch(a) {
  namespace nn = torch::nn;
  int64_t joint = cnn::RegisterBranches(*this, a);  // the CNN's branches
  if (a.noise_input) joint += 1;
  fusion = register_module("fusion", nn::Sequential(nn::Linear(joint, a.fusion_hidden), nn::PReLU(),
                                                    nn::Linear(a.fusion_hidden, a.fusion_hidden), nn::PReLU(),
                                                    nn::Linear(a.fusion_hidden, a.summary_dim)));
  head = register_module("head", nn::Sequential(nn::Linear(a.summary_dim, a.head_hidden), nn::PReLU(),
                                                nn::Linear(a.head_hidden, theta_dim)));
}

torch::Tensor EncoderImpl::forward(const torch::Tensor& spec, const torch::Tensor& phot, const torch::Tensor& noise) {
  std::vector<torch::Tensor> parts{cnn::SpectralFeatures(*this, spec)};
  if (arch.nbands > 0) parts.push_back(phot_fc->forward(phot));
  if (arch.noise_input) parts.push_back(noise);
  return fusion->forward(parts.size() == 1 ? parts[0] : torch::cat(parts, 1));
}

torch::Tensor EncoderImpl::Head(const torch::Tensor& summary) { return head->forward(summary); }

std::pair<torch::Tensor, torch::Tensor> RationalQuadraticSpline(const torch::Tensor& x, const torch::Tensor& params,
                                                               int64_t K, double B, bool inverse, bool want_logdet) {
  constexpr double kMinW = 1e-3, kMinH = 1e-3, kMinD = 1e-3;
  static const double kShift = std::log(std::exp(1.0 - kMinD) - 1.0);  // derivative 1 at raw 0
  auto w = kMinW + (1.0 - kMinW * K) * torch::softmax(params.narrow(-1, 0, K), -1);
  auto h = kMinH + (1.0 - kMinH * K) * torch::softmax(params.narrow(-1, K, K), -1);
  auto kx = torch::constant_pad_nd(torch::cumsum(w, -1), {1, 0}, 0.0) * (2.0 * B) - B;  // [..., d, K+1]
  auto ky = torch::constant_pad_nd(torch::cumsum(h, -1), {1, 0}, 0.0) * (2.0 * B) - B;
  auto widths = kx.narrow(-1, 1, K) - kx.narrow(-1, 0, K);
  auto heights = ky.narrow(-1, 1, K) - ky.narrow(-1, 0, K);
  auto dint = kMinD + torch::nn::functional::softplus(params.narrow(-1, 2 * K, K - 1) + kShift);
  auto ones = torch::ones_like(dint.narrow(-1, 0, 1));
  auto d = torch::cat({ones, dint, ones}, -1);  // [..., d, K+1]

  auto inside = (x >= -B) & (x <= B);
  auto xc = x.clamp(-B, B);
  const auto& knots = inverse ? ky : kx;
  auto idx = (xc.unsqueeze(-1) >= knots.narrow(-1, 1, K - 1)).sum(-1, /*keepdim=*/true);  // [..., d, 1]
  auto g = [&](const torch::Tensor& t) { return t.gather(-1, idx).squeeze(-1); };
  auto xk = g(kx), yk = g(ky), wk = g(widths), hk = g(heights), dk = g(d);
  auto dk1 = d.gather(-1, idx + 1).squeeze(-1);
  auto s = hk / wk;
  auto c1 = dk1 + dk - 2.0 * s;
  torch::Tensor out, logdet, xi;
  if (!inverse) {
    xi = ((xc - xk) / wk).clamp(0.0, 1.0);
    auto t = xi * (1.0 - xi);
    out = yk + hk * (s * xi * xi + dk * t) / (s + c1 * t);
  } else {
    auto dy = xc - yk;
    auto a = hk * (s - dk) + dy * c1;
    auto b = hk * dk - dy * c1;
    auto c = -s * dy;
    auto disc = (b * b - 4.0 * a * c).clamp_min(0.0);
    xi = ((2.0 * c) / (-b - torch::sqrt(disc))).clamp(0.0, 1.0);
    out = xi * wk + xk;
  }
  out = torch::where(inside, out, x);
  if (want_logdet) {
    auto t = xi * (1.0 - xi);
    auto den = s + c1 * t;
    auto dnum = s * s * (dk1 * xi * xi + 2.0 * s * t + dk * (1.0 - xi) * (1.0 - xi));
    logdet = torch::log(dnum) - 2.0 * torch::log(den);  // log dy/dx
    if (inverse) logdet = -logdet;
    logdet = torch::where(inside, logdet, torch::zeros_like(logdet));
  }
  return {out, logdet};
}

torch::Tensor RationalQuadraticSplineInverseFused(const torch::Tensor& y_in, const torch::Tensor& params_in, int64_t K,
                                                  double B) {
  constexpr double kMinW = 1e-3, kMinH = 1e-3, kMinD = 1e-3;
  const double shift = std::log(std::exp(1.0 - kMinD) - 1.0);
  auto y = y_in.to(torch::kFloat).contiguous();
  auto params = params_in.to(torch::kFloat).contiguous();
  const int64_t P = 3 * K - 1, n = y.numel();
  TORCH_CHECK(params.numel() == n * P, "spline parameters do not match the inputs");
  auto out = torch::empty_like(y);
  const float* Y = y.data_ptr<float>();
  const float* Q = params.data_ptr<float>();
  float* X = out.data_ptr<float>();
  at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
    std::vector<float> e(K);
    for (int64_t i = begin; i < end; ++i) {
      const float yv = Y[i];
      if (!(yv >= -B && yv <= B)) {
        X[i] = yv;
        continue;
      }
      const float* p = Q + i * P;
      // Softmax normalisers of the widths and heights.
      auto norm = [&](const float* raw, float* ex) {
        float mx = raw[0];
        for (int64_t j = 1; j < K; ++j) mx = std::max(mx, raw[j]);
        float sum = 0;
        for (int64_t j = 0; j < K; ++j) sum += (ex[j] = std::exp(raw[j] - mx));
        return 1.0f / sum;
      };
      // Heights first: find the bin of y by walking the height knots.
      const float hs = norm(p + K, e.data());
      const double scale_h = (1.0 - kMinH * K) * hs, scale_w_min = kMinW;
      double cum = 0, ylo = -B, yhi = -B;
      int64_t b = 0;
      for (; b < K; ++b) {
        cum += kMinH + scale_h * e[b];
        yhi = (b == K - 1) ? B : cum * 2.0 * B - B;
        if (yv < yhi || b == K - 1) break;
        ylo = yhi;
      }
      const double hk = yhi - ylo;
      const float ws = norm(p, e.data());
      const double scale_w = (1.0 - kMinW * K) * ws;
      double cw = 0;
      for (int64_t j = 0; j < b; ++j) cw += scale_w_min + scale_w * e[j];
      const double xlo = cw * 2.0 * B - B;
      const double xhi = (b == K - 1) ? B : (cw + scale_w_min + scale_w * e[b]) * 2.0 * B - B;
      const double wk = xhi - xlo, s = hk / wk;
      auto deriv = [&](int64_t j) {
        if (j == 0 || j == K) return 1.0;
        const double r = p[2 * K + j - 1] + shift;
        return kMinD + (r > 20.0 ? r : std::log1p(std::exp(r)));
      };
      const double dk = deriv(b), dk1 = deriv(b + 1), c1 = dk1 + dk - 2.0 * s, dy = yv - ylo;
      const double a = hk * (s - dk) + dy * c1, bb = hk * dk - dy * c1, c = -s * dy;
      const double disc = std::max(0.0, bb * bb - 4.0 * a * c);
      const double xi = std::clamp((2.0 * c) / (-bb - std::sqrt(disc)), 0.0, 1.0);
      X[i] = static_cast<float>(xi * wk + xlo);
    }
  });
  return out;
}

CouplingImpl::CouplingImpl(int64_t d, int64_t nid, int64_t context, const FlowArch& a)
    : dim(d), n_id(nid), n_t(d - nid), transform(a.transform), bins(a.bins), bound(a.tail_bound) {
  per_dim = transform == "spline" ? 3 * bins - 1 : 2;
  in_x = register_module("in_x", torch::nn::Linear(n_id, a.hidden));
  in_c = register_module("in_c", torch::nn::Linear(context, a.hidden));
  hid = register_module("hid", torch::nn::Linear(a.hidden, a.hidden));
  out = register_module("out", torch::nn::Linear(a.hidden, n_t * per_dim));
  torch::NoGradGuard guard;
  out->weight.zero_();  // identity transform at initialisation
  out->bias.zero_();
}

torch::Tensor CouplingImpl::Params(const torch::Tensor& x_id, const torch::Tensor& ctx_proj) {
  auto h = torch::relu(in_x->forward(x_id) + ctx_proj);
  h = torch::relu(hid->forward(h));
  auto p = out->forward(h);
  auto shape = p.sizes().vec();
  shape.back() = n_t;
  shape.push_back(per_dim);
  return p.view(shape);
}

std::pair<torch::Tensor, torch::Tensor> CouplingImpl::forward(const torch::Tensor& x, const torch::Tensor& ctx_proj) {
  auto x_id = x.narrow(-1, 0, n_id), x_t = x.narrow(-1, n_id, n_t);
  auto p = Params(x_id, ctx_proj);
  torch::Tensor y_t, ld;
  if (transform == "spline") {
    auto [y, l] = RationalQuadraticSpline(x_t, p, bins, bound, /*inverse=*/false);
    y_t = y;
    ld = l.sum(-1);
  } else {
    auto s = 3.0 * torch::tanh(p.select(-1, 0) / 3.0);
    y_t = x_t * torch::exp(s) + p.select(-1, 1);
    ld = s.sum(-1);
  }
  return {torch::cat({x_id, y_t}, -1), ld};
}

torch::Tensor CouplingImpl::inverse(const torch::Tensor& y, const torch::Tensor& ctx_proj) {
  auto y_id = y.narrow(-1, 0, n_id), y_t = y.narrow(-1, n_id, n_t);
  auto p = Params(y_id, ctx_proj);
  torch::Tensor x_t;
  if (transform == "spline") {
    if (!torch::GradMode::is_enabled() && y_t.scalar_type() == torch::kFloat)
      x_t = RationalQuadraticSplineInverseFused(y_t, p, bins, bound);
    else
      x_t = RationalQuadraticSpline(y_t, p, bins, bound, /*inverse=*/true, /*want_logdet=*/false).first;
  } else {
    auto s = 3.0 * torch::tanh(p.select(-1, 0) / 3.0);
    x_t = (y_t - p.select(-1, 1)) * torch::exp(-s);
  }
  return torch::cat({y_id, x_t}, -1);
}

FlowImpl::FlowImpl(const FlowArch& a, int64_t ctx) : arch(a), context(ctx) {
  namespace nn = torch::nn;
  ctx_mean = register_buffer("ctx_mean", torch::zeros({ctx}));
  ctx_std = register_buffer("ctx_std", torch::ones({ctx}));
  std::vector<int64_t> p(a.layers * a.dim), ip(a.layers * a.dim);
  std::mt19937_64 rng(a.permutation_seed);
  for (int64_t l = 0; l < a.layers; ++l) {
    int64_t* pl = p.data() + l * a.dim;
    std::iota(pl, pl + a.dim, 0);
    std::shuffle(pl, pl + a.dim, rng);
    for (int64_t j = 0; j < a.dim; ++j) ip[l * a.dim + pl[j]] = j;
  }
  perms = register_buffer("perms", torch::tensor(p, torch::kLong).view({a.layers, a.dim}));
  inv_perms = register_buffer("inv_perms", torch::tensor(ip, torch::kLong).view({a.layers, a.dim}));
  embed = register_module("embed", nn::Sequential(nn::Linear(ctx, a.context_hidden), nn::ReLU(),
                                                  nn::Linear(a.context_hidden, a.context_hidden), nn::ReLU()));
  for (int64_t l = 0; l < a.layers; ++l)
    layers.push_back(register_module("coupling" + std::to_string(l), Coupling(a.dim, a.dim / 2, a.context_hidden, a)));
}

torch::Tensor FlowImpl::Embed(const torch::Tensor& summary) {
  return embed->forward((summary - ctx_mean) / ctx_std);
}

std::pair<torch::Tensor, torch::Tensor> FlowImpl::Forward(const torch::Tensor& y, const torch::Tensor& e) {
  auto x = y;
  auto sizes = y.sizes().vec();
  sizes.pop_back();
  torch::Tensor logdet = torch::zeros(sizes, y.options());
  const auto p = perms.to(torch::kLong);  // Module::to(dtype) also converts integer buffers
  for (size_t l = 0; l < layers.size(); ++l) {
    x = x.index_select(-1, p[static_cast<int64_t>(l)]);
    auto [nx, ld] = layers[l]->forward(x, layers[l]->ProjectContext(e));
    x = nx;
    logdet = logdet + ld;
  }
  return {x, logdet};
}

torch::Tensor FlowImpl::LogProb(const torch::Tensor& y, const torch::Tensor& e) {
  auto [z, logdet] = Forward(y, e);
  const double c = 0.5 * static_cast<double>(arch.dim) * std::log(2.0 * M_PI);
  return -0.5 * (z * z).sum(-1) - c + logdet;
}

torch::Tensor FlowImpl::Inverse(const torch::Tensor& z, const torch::Tensor& e) {
  auto e3 = e.unsqueeze(1);
  auto x = z;
  const auto ip = inv_perms.to(torch::kLong);
  for (int64_t l = static_cast<int64_t>(layers.size()) - 1; l >= 0; --l) {
    x = layers[l]->inverse(x, layers[l]->ProjectContext(e3));
    x = x.index_select(-1, ip[l]);
  }
  return x;
}

SbiNetImpl::SbiNetImpl(const EncoderArch& enc, const FlowArch& fl) {
  encoder = register_module("encoder", Encoder(enc, fl.dim));
  flow = register_module("flow", Flow(fl, enc.ContextDim()));
}

// ---------------------------------------------------------------------------------------
// SbiModel
// ---------------------------------------------------------------------------------------

torch::Tensor SbiModel::Impl::TransformPhot(const torch::Tensor& raw) const {
  const int64_t nb = md.encoder.nbands;
  if (nb == 0) return raw;
  auto mean = torch::tensor(std::vector<float>(md.phot_mean.begin(), md.phot_mean.end())).view({1, nb});
  auto sd = torch::tensor(std::vector<float>(md.phot_std.begin(), md.phot_std.end())).view({1, nb});
  auto x = torch::log10(torch::clamp_min(torch::nan_to_num(raw, 0.0), md.phot_floor));
  return (x - mean) / sd;
}

torch::Tensor SbiModel::Impl::NoiseFeature(const torch::Tensor& snr) const {
  auto s = torch::nan_to_num(snr, std::pow(10.0, md.snr_log_mean)).clamp_min(1e-3);
  return ((torch::log10(s) - md.snr_log_mean) / md.snr_log_std).view({-1, 1});
}

SbiModel::SbiModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SbiModel::~SbiModel() = default;
const SbiMetadata& SbiModel::metadata() const { return impl_->md; }
SbiMetadata& SbiModel::mutable_metadata() { return impl_->md; }

namespace {

Status CheckMetadataShapes(const SbiMetadata& md) {
  CUBEFLOW_RETURN_NOT_OK(md.encoder.Validate());
  CUBEFLOW_RETURN_NOT_OK(md.flow.Validate());
  if (static_cast<int64_t>(md.theta.size()) != md.flow.dim)
    return Status::Error("theta has " + std::to_string(md.theta.size()) + " parameters but flow.dim = " +
                         std::to_string(md.flow.dim));
  if (static_cast<int64_t>(md.input.bands.size()) != md.encoder.nbands)
    return Status::Error("the metadata lists " + std::to_string(md.input.bands.size()) + " bands but encoder.nbands = " +
                         std::to_string(md.encoder.nbands));
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<SbiModel>> SbiModel::CreateRandom(const SbiMetadata& md_in, uint64_t seed) {
  SbiMetadata md = md_in;
  if (md.phot_mean.size() != md.input.bands.size()) md.phot_mean.assign(md.input.bands.size(), 0.0);
  if (md.phot_std.size() != md.input.bands.size()) md.phot_std.assign(md.input.bands.size(), 1.0);
  CUBEFLOW_RETURN_NOT_OK(CheckMetadataShapes(md));
  try {
    auto impl = std::make_unique<Impl>();
    impl->md = md;
    torch::manual_seed(seed);
    impl->net = SbiNet(md.encoder, md.flow);
    cnn::GlorotInit(*impl->net->encoder);
    impl->net->eval();
    return std::make_unique<SbiModel>(std::move(impl));
  } catch (const std::exception& ex) {
    return Status::Error(std::string("cannot build the SBI model: ") + ex.what());
  }
}

Result<std::unique_ptr<SbiModel>> SbiModel::Load(const std::string& path) {
  if (path.empty()) return Status::Error("no SBI model file given: set 'model' to a .pt file written by `cubeflow train`");
  if (!std::filesystem::exists(path)) return Status::Error("SBI model file " + path + " does not exist");
  const std::string mpath = MetadataPath(path);
  if (!std::filesystem::exists(mpath))
    return Status::Error("SBI model " + path + " has no metadata file " + mpath + " (written by `cubeflow train`)");
  CUBEFLOW_ASSIGN_OR_RETURN(SbiMetadata md, ReadMetadata(mpath));
  Status st = CheckMetadataShapes(md);
  if (!st.ok()) return Status::Error("SBI model metadata " + mpath + ": " + st.message());
  auto impl = std::make_unique<Impl>();
  impl->md = md;
  try {
    impl->net = SbiNet(md.encoder, md.flow);
    torch::serialize::InputArchive ar;
    ar.load_from(path);
    impl->net->load(ar);
    impl->net->eval();
  } catch (const std::exception& ex) {
    return Status::Error("cannot load SBI model " + path + " (architecture per " + mpath + "): " + ex.what());
  }
  return std::make_unique<SbiModel>(std::move(impl));
}

Status SbiModel::Save(const std::string& path) const {
  try {
    auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    cnn::SaveModuleAtomic(*impl_->net, path);
  } catch (const std::exception& ex) {
    return Status::Error("cannot save SBI model " + path + ": " + ex.what());
  }
  return WriteMetadata(MetadataPath(path), impl_->md);
}

Status SbiModel::Summarize(const float* spectra, const float* phot, const float* snr, int64_t n, float* summary,
                           int threads) const {
  if (n <= 0) return Status::OK();
  const auto& md = impl_->md;
  const int64_t nw = md.encoder.nwave, nb = md.encoder.nbands, S = md.encoder.ContextDim();
  if (nb > 0 && phot == nullptr) return Status::Error("the SBI model needs photometry in " + std::to_string(nb) + " bands");
  if (md.encoder.noise_input && snr == nullptr) return Status::Error("the SBI model needs the S/N of each spectrum");
  try {
    nn::SetThreads(threads);
    c10::InferenceMode guard;
    for (int64_t first = 0; first < n; first += kSummaryChunk) {
      const int64_t b = std::min(kSummaryChunk, n - first);
      auto s = torch::from_blob(const_cast<float*>(spectra + first * nw), {b, nw}, torch::kFloat);
      torch::Tensor p = nb > 0 ? impl_->TransformPhot(torch::from_blob(const_cast<float*>(phot + first * nb), {b, nb},
                                                                        torch::kFloat))
                               : torch::zeros({b, 0});
      torch::Tensor nz = md.encoder.noise_input
                             ? impl_->NoiseFeature(torch::from_blob(const_cast<float*>(snr + first), {b}, torch::kFloat))
                             : torch::zeros({b, 1});
      auto out = impl_->net->encoder->forward(nn::AtLeastTwoRows(s), nn::AtLeastTwoRows(p), nn::AtLeastTwoRows(nz))
                     .narrow(0, 0, b);
      if (md.encoder.noise_input) out = torch::cat({out, nz}, 1);
      out = out.contiguous();
      std::memcpy(summary + first * S, out.data_ptr<float>(), sizeof(float) * b * S);
    }
  } catch (const std::exception& ex) {
    return Status::Error(std::string("SBI encoder failed: ") + ex.what());
  }
  return Status::OK();
}

namespace {

/// Per-parameter map from the standardised flow variable to physical units, unrolled.
struct PhysMap {
  std::vector<int> log_lb;
  std::vector<double> mean, sd;
  double ref = 0;
  explicit PhysMap(const SbiMetadata& md) {
    for (const auto& p : md.theta) {
      log_lb.push_back(p.transform == "log_lookback");
      mean.push_back(p.mean);
      sd.push_back(p.std);
    }
    ref = md.lookback_reference + md.lookback_offset;
  }
  void Apply(const float* y, int64_t rows, float* out) const {
    const int64_t D = static_cast<int64_t>(mean.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < D; ++k) {
        const double u = mean[k] + sd[k] * y[r * D + k];
        out[r * D + k] = static_cast<float>(log_lb[k] ? ref - std::exp(kLn10 * u) : u);
      }
  }
};

}  // namespace

Status SbiModel::Sample(const float* summary, int64_t n, int64_t n_samples, const int64_t* keys, uint64_t seed,
                        float* out, int threads) const {
  if (n <= 0 || n_samples <= 0) return Status::OK();
  const auto& md = impl_->md;
  const int64_t D = md.flow.dim, C = md.encoder.ContextDim();
  const PhysMap phys(md);
  try {
    nn::SetThreads(threads);
    c10::InferenceMode guard;
    auto& flow = impl_->net->flow;
    auto e_all =
        flow->Embed(nn::AtLeastTwoRows(torch::from_blob(const_cast<float*>(summary), {n, C}, torch::kFloat)))
            .narrow(0, 0, n);
    std::vector<float> z;
    if (n_samples <= kSampleChunk) {
      // Several objects per call.
      const int64_t per = std::max<int64_t>(1, kSampleChunk / n_samples);
      for (int64_t first = 0; first < n; first += per) {
        const int64_t b = std::min(per, n - first);
        z.resize(static_cast<size_t>(b * n_samples * D));
        for (int64_t i = 0; i < b; ++i) {
          sim::Rng rng(seed, static_cast<uint64_t>(keys[first + i]), kSampleStream);
          float* zi = z.data() + i * n_samples * D;
          for (int64_t j = 0; j < n_samples * D; ++j) zi[j] = static_cast<float>(rng.Normal());
        }
        auto zt = torch::from_blob(z.data(), {b, n_samples, D}, torch::kFloat);
        auto y = flow->Inverse(zt, e_all.narrow(0, first, b)).contiguous();
        phys.Apply(y.data_ptr<float>(), b * n_samples, out + first * n_samples * D);
      }
    } else {
      // One object at a time, its samples in chunks from one continuing generator.
      for (int64_t i = 0; i < n; ++i) {
        sim::Rng rng(seed, static_cast<uint64_t>(keys[i]), kSampleStream);
        for (int64_t s0 = 0; s0 < n_samples; s0 += kSampleChunk) {
          const int64_t c = std::min(kSampleChunk, n_samples - s0);
          z.resize(static_cast<size_t>(c * D));
          for (auto& v : z) v = static_cast<float>(rng.Normal());
          auto zt = torch::from_blob(z.data(), {1, c, D}, torch::kFloat);
          auto y = flow->Inverse(zt, e_all.narrow(0, i, 1)).contiguous();
          phys.Apply(y.data_ptr<float>(), c, out + (i * n_samples + s0) * D);
        }
      }
    }
  } catch (const std::exception& ex) {
    return Status::Error(std::string("SBI sampling failed: ") + ex.what());
  }
  return Status::OK();
}

Status SbiModel::LogProb(const float* summary, const float* theta, int64_t n, double* out, int threads) const {
  if (n <= 0) return Status::OK();
  const auto& md = impl_->md;
  const int64_t D = md.flow.dim, C = md.encoder.ContextDim();
  try {
    nn::SetThreads(threads);
    c10::InferenceMode guard;
    std::vector<float> y(n * D);
    std::vector<double> jac(n, 0.0);  // log |d physical / d y|
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < D; ++k) {
        const double v = theta[i * D + k];
        y[i * D + k] = static_cast<float>(md.FromPhysical(static_cast<int>(k), v));
        const auto& p = md.theta[k];
        jac[i] += std::log(p.std);
        if (p.transform == "log_lookback") {
          const double u = p.mean + p.std * y[i * D + k];
          jac[i] += std::log(kLn10) + kLn10 * u;
        }
      }
    auto& flow = impl_->net->flow;
    auto e = flow->Embed(torch::from_blob(const_cast<float*>(summary), {n, C}, torch::kFloat));
    auto lp = flow->LogProb(torch::from_blob(y.data(), {n, D}, torch::kFloat), e).to(torch::kDouble).contiguous();
    for (int64_t i = 0; i < n; ++i) out[i] = lp.data_ptr<double>()[i] - jac[i];
  } catch (const std::exception& ex) {
    return Status::Error(std::string("SBI log-density failed: ") + ex.what());
  }
  return Status::OK();
}

Status SbiModel::HeadPredict(const float* summary, int64_t n, float* out, int threads) const {
  if (n <= 0) return Status::OK();
  const auto& md = impl_->md;
  const int64_t D = md.flow.dim, C = md.encoder.ContextDim();
  try {
    nn::SetThreads(threads);
    c10::InferenceMode guard;
    auto ctx = torch::from_blob(const_cast<float*>(summary), {n, C}, torch::kFloat);
    auto y = impl_->net->encoder->Head(ctx.narrow(1, 0, md.encoder.summary_dim)).contiguous();
    PhysMap(md).Apply(y.data_ptr<float>(), n, out);
  } catch (const std::exception& ex) {
    return Status::Error(std::string("SBI regression head failed: ") + ex.what());
  }
  return Status::OK();
}

}  // namespace cubeflow::sbi
