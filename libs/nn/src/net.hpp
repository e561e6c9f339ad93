#pragma once
// Internal (not installed): the libtorch network and CnnModel::Impl, and module helpers the SBI
// model shares. Included by the libtorch translation units of cubeflow_nn only.

#include <torch/torch.h>

#include <memory>
#include <utility>

#include "cubeflow/nn/cnn.hpp"

namespace torch::jit {
struct Module;
}

namespace cubeflow::cnn {

/// Self-attention over the positions of a [B, C, L] feature map (SAGAN form): queries and keys
/// are 1x1 convolutions to `dim` channels, values keep C channels; the attended map is added
/// back with a learnable gain that starts at 0, so the block starts as the identity.
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t channels, int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv1d query{nullptr}, key{nullptr}, value{nullptr};
  torch::Tensor gamma;
  double scale = 1.0;
};
TORCH_MODULE(Attention);

/// Builds and registers the spectral and photometric branches the CNN and the SBI encoder share, in
/// this order (the parameter names and the order of the random draws of saved models): "conv",
/// three Conv -> MaxPool -> InstanceNorm -> PReLU blocks (pooling before the monotonic
/// normalisation and activation keeps the paper's "activation after IN" order while normalising
/// 4x fewer values); "attention" when arch.attention; "spec_fc"; with bands, "phot_fc". Returns the
/// width of the branches' concatenated features.
template <typename Net, typename Arch>
int64_t RegisterBranches(Net& m, const Arch& a) {
  namespace nn = torch::nn;
  m.conv = nn::Sequential();
  int64_t in_ch = 1;
  for (int i = 0; i < 3; ++i) {
    m.conv->push_back(nn::Conv1d(nn::Conv1dOptions(in_ch, a.channels[i], a.kernels[i]).padding(a.kernels[i] / 2)));
    m.conv->push_back(nn::MaxPool1d(nn::MaxPool1dOptions(a.pools[i])));
    m.conv->push_back(nn::InstanceNorm1d(nn::InstanceNorm1dOptions(a.channels[i]).affine(true)));
    m.conv->push_back(nn::PReLU(nn::PReLUOptions().num_parameters(a.channels[i])));
    in_ch = a.channels[i];
  }
  m.register_module("conv", m.conv);
  if (a.attention) m.attention = m.register_module("attention", Attention(in_ch, a.attention_dim));
  m.spec_fc = m.register_module("spec_fc", nn::Sequential(nn::Linear(in_ch * a.PooledLength(), a.spec_hidden),
                                                          nn::PReLU(), nn::Linear(a.spec_hidden, a.spec_features),
                                                          nn::PReLU()));
  int64_t joint = a.spec_features;
  if (a.nbands > 0) {
    m.phot_fc = m.register_module(
        "phot_fc", nn::Sequential(nn::Linear(a.nbands, a.phot_hidden), nn::PReLU(), nn::Linear(a.phot_hidden, a.phot_hidden),
                                  nn::PReLU(), nn::Linear(a.phot_hidden, a.phot_features), nn::PReLU()));
    joint += a.phot_features;
  }
  return joint;
}

/// A stride-1 convolution of a single-channel input [B, 1, L] by ATen's im2col + GEMM kernel.
/// Conv1d::forward hands it to oneDNN, whose kernel for one input channel was several times
/// slower than this on the first layer (the largest feature map) on the build machines' CPUs:
/// the CNN's rate per core doubled (docs/cnn.md, "Speed"); the two agree bit for bit there.
/// Other layers keep oneDNN, which is faster for them.
inline torch::Tensor SingleChannelConv(torch::nn::Conv1dImpl& c, const torch::Tensor& x) {
  const auto& o = c.options;
  const auto* pad = c10::get_if<torch::ExpandingArray<1>>(&o.padding());
  if (o.in_channels() != 1 || o.groups() != 1 || (*o.stride())[0] != 1 || (*o.dilation())[0] != 1 || !pad ||
      !c10::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()))
    return c.forward(x);
  const int64_t k = (*o.kernel_size())[0];
  return at::thnn_conv2d(x.unsqueeze(2), c.weight.unsqueeze(2), {1, k}, c.bias, {1, 1}, {0, (**pad)[0]}).squeeze(2);
}

/// The spectral branch's features of spectra [B, nwave] (conv blocks, attention, spec_fc).
template <typename Net>
torch::Tensor SpectralFeatures(Net& m, const torch::Tensor& spec) {
  auto x = spec.unsqueeze(1);
  for (auto& layer : *m.conv) {
    auto* conv = layer.ptr()->template as<torch::nn::Conv1d>();
    x = conv && conv->options.in_channels() == 1 ? SingleChannelConv(*conv, x) : layer.forward(x);
  }
  if (m.attention) x = m.attention->forward(x);
  return m.spec_fc->forward(x.flatten(1));
}

/// The network of docs/cnn.md.
struct CnnNetImpl : torch::nn::Module {
  explicit CnnNetImpl(const CnnArch& arch);
  /// spec [B, nwave], phot [B, nbands] (transformed) -> (mass_frac [B,16], zh [B,16]).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& spec, const torch::Tensor& phot);
  CnnArch arch;
  torch::nn::Sequential conv{nullptr};
  Attention attention{nullptr};
  torch::nn::Sequential spec_fc{nullptr}, phot_fc{nullptr}, latent{nullptr}, decoder{nullptr};
};
TORCH_MODULE(CnnNet);

/// Glorot-uniform weights, zero biases (PReLU slopes and norm affines keep their defaults).
void GlorotInit(torch::nn::Module& m);

struct CnnModel::Impl {
  CnnMetadata md;
  mutable CnnNet net{nullptr};                  // format "state_dict" (forward is non-const)
  std::shared_ptr<torch::jit::Module> script;   // format "torchscript"
  int script_args = 2;                          // forward(spectra[, phot])
  /// Photometry [B, nbands] of f / norm -> network input.
  torch::Tensor TransformPhot(const torch::Tensor& raw) const;
  /// Full forward pass on already-normalised spectra and raw (f / norm) photometry.
  std::pair<torch::Tensor, torch::Tensor> Forward(const torch::Tensor& spec, const torch::Tensor& phot_raw) const;
};

/// Copies parameters and buffers of `src` into `dst` (same architecture).
void CopyModuleState(torch::nn::Module& src, torch::nn::Module& dst);

/// Saves a module's parameters and buffers atomically (temporary file + rename).
void SaveModuleAtomic(torch::nn::Module& m, const std::string& path);

}  // namespace cubeflow::cnn
