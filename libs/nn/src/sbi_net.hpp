#pragma once
// Internal (not installed): the libtorch modules of the SBI model (encoder, conditional flow)
// and SbiModel::Impl. Included by sbi_model.cpp, sbi_train.cpp and the SBI tests.

#include <torch/torch.h>

#include <utility>

#include "cubeflow/nn/sbi.hpp"
#include "net.hpp"

namespace cubeflow::sbi {

/// Spectral CNN (+ photometric MLP, + noise level) -> summary; plus the regression head used to
/// pre-train it.
struct EncoderImpl : torch::nn::Module {
  EncoderImpl(const EncoderArch& arch, int64_t theta_dim);
  /// spec [B, nwave], phot [B, nbands] (transformed), noise [B, 1] (transformed) -> [B, summary_dim].
  torch::Tensor forward(const torch::Tensor& spec, const torch::Tensor& phot, const torch::Tensor& noise);
  /// summary -> standardised theta estimates [B, theta_dim].
  torch::Tensor Head(const torch::Tensor& summary);
  EncoderArch arch;
  torch::nn::Sequential conv{nullptr};
  cnn::Attention attention{nullptr};
  torch::nn::Sequential spec_fc{nullptr}, phot_fc{nullptr}, fusion{nullptr}, head{nullptr};
};
TORCH_MODULE(Encoder);

/// Rational-quadratic spline of Durkan et al. (2019) on [-bound, bound], identity outside.
/// `x` [..., d]; `params` [..., d, 3K - 1] unnormalised (K widths, K heights, K - 1 interior
/// derivatives; the end derivatives are 1). inverse = false maps x -> y; true maps y -> x.
/// Returns the output and log|d out / d in| (elementwise; undefined tensor if !want_logdet).
std::pair<torch::Tensor, torch::Tensor> RationalQuadraticSpline(const torch::Tensor& x, const torch::Tensor& params,
                                                               int64_t bins, double bound, bool inverse,
                                                               bool want_logdet = true);

/// The inverse of RationalQuadraticSpline (y -> x, no log-determinant) as one fused loop over the
/// elements: for sampling without autograd (float tensors; parallel over libtorch's intra-op
/// threads). Same result as the tensor version up to rounding.
torch::Tensor RationalQuadraticSplineInverseFused(const torch::Tensor& y, const torch::Tensor& params, int64_t bins,
                                                  double bound);

/// One coupling layer: the first `n_id` coordinates condition an MLP (together with the
/// context embedding) that outputs the transform of the remaining ones.
struct CouplingImpl : torch::nn::Module {
  CouplingImpl(int64_t dim, int64_t n_id, int64_t context, const FlowArch& arch);
  /// Data -> base direction: returns (y, log|det dy/dx| [...]).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x, const torch::Tensor& ctx_proj);
  /// Base -> data direction.
  torch::Tensor inverse(const torch::Tensor& y, const torch::Tensor& ctx_proj);
  /// Projection of the context embedding into the first hidden layer (per object, cheap).
  torch::Tensor ProjectContext(const torch::Tensor& e) { return in_c->forward(e); }
  torch::Tensor Params(const torch::Tensor& x_id, const torch::Tensor& ctx_proj);
  int64_t dim, n_id, n_t, per_dim;
  std::string transform;
  int64_t bins;
  double bound;
  torch::nn::Linear in_x{nullptr}, in_c{nullptr}, hid{nullptr}, out{nullptr};
};
TORCH_MODULE(Coupling);

/// The conditional flow q(y | s): y standardised theta, s the encoder summary (standardised
/// with the buffers ctx_mean / ctx_std, then embedded by a 2-layer MLP once per object).
struct FlowImpl : torch::nn::Module {
  FlowImpl(const FlowArch& arch, int64_t context);
  /// Context embedding [B, context_hidden] of raw summaries [B, context].
  torch::Tensor Embed(const torch::Tensor& summary);
  /// y [..., dim] -> base z and log|det dz/dy| [...], given embeddings e broadcastable to [..., H].
  std::pair<torch::Tensor, torch::Tensor> Forward(const torch::Tensor& y, const torch::Tensor& e);
  /// log q(y | s) for y [N, dim], embedding e [N, H].
  torch::Tensor LogProb(const torch::Tensor& y, const torch::Tensor& e);
  /// Base samples z [B, S, dim] -> y [B, S, dim] given embeddings e [B, H].
  torch::Tensor Inverse(const torch::Tensor& z, const torch::Tensor& e);
  FlowArch arch;
  int64_t context;
  torch::Tensor ctx_mean, ctx_std, perms, inv_perms;  // buffers
  torch::nn::Sequential embed{nullptr};
  std::vector<Coupling> layers;
};
TORCH_MODULE(Flow);

/// Encoder + flow, saved as one archive.
struct SbiNetImpl : torch::nn::Module {
  SbiNetImpl(const EncoderArch& enc, const FlowArch& flow);
  Encoder encoder{nullptr};
  Flow flow{nullptr};
};
TORCH_MODULE(SbiNet);

struct SbiModel::Impl {
  SbiMetadata md;
  mutable SbiNet net{nullptr};
  /// Transformed photometry [B, nbands] from f / norm; noise feature [B, 1] from S/N.
  torch::Tensor TransformPhot(const torch::Tensor& raw) const;
  torch::Tensor NoiseFeature(const torch::Tensor& snr) const;
};

}  // namespace cubeflow::sbi
