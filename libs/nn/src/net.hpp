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
