#pragma once
// Internal (not installed): the layer-size fields of the network architectures with their YAML
// key names, one list for the three places that name them: model metadata (write and read) and
// training configurations (`architecture:` and `flow:`). `f(key, field)` is called for each field
// in the order of the metadata files; `Arch` may be const. Also the checks both kinds of
// architecture share.

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::nn {

/// The fields of the spectral and photometric branches, shared by cnn::CnnArch and
/// sbi::EncoderArch.
template <typename Arch, typename F>
void ForEachBranchField(Arch& a, F&& f) {
  f("channels", a.channels);
  f("kernels", a.kernels);
  f("pools", a.pools);
  f("attention", a.attention);
  f("attention_dim", a.attention_dim);
  f("spec_hidden", a.spec_hidden);
  f("spec_features", a.spec_features);
  f("phot_hidden", a.phot_hidden);
  f("phot_features", a.phot_features);
}

/// The configurable fields of cnn::CnnArch (nwave and nbands come from the data).
template <typename Arch, typename F>
void ForEachCnnArchField(Arch& a, F&& f) {
  ForEachBranchField(a, f);
  f("latent", a.latent);
  f("decoder_hidden", a.decoder_hidden);
}

/// The configurable fields of sbi::EncoderArch (nwave, nbands and noise_input come from the data
/// and the configuration's top level).
template <typename Arch, typename F>
void ForEachEncoderArchField(Arch& a, F&& f) {
  ForEachBranchField(a, f);
  f("fusion_hidden", a.fusion_hidden);
  f("summary_dim", a.summary_dim);
  f("head_hidden", a.head_hidden);
}

/// The configurable fields of sbi::FlowArch (dim comes from the parameters, permutation_seed from
/// the seed).
template <typename Arch, typename F>
void ForEachFlowArchField(Arch& a, F&& f) {
  f("transform", a.transform);
  f("layers", a.layers);
  f("hidden", a.hidden);
  f("context_hidden", a.context_hidden);
  f("bins", a.bins);
  f("tail_bound", a.tail_bound);
}

/// Length of the sequence after the three conv/pool blocks.
template <typename Arch>
int64_t PooledLength(const Arch& a) {
  int64_t len = a.nwave;
  for (int64_t p : a.pools) len = p > 0 ? len / p : len;
  return len;
}

/// Checks the sizes of an architecture whose fields `for_each` lists: three odd-kernel conv blocks
/// that leave at least one position of nwave pixels, positive layer sizes. `prefix` starts the
/// messages ("encoder " for the SBI encoder).
template <typename Arch, typename ForEach>
Status ValidateArch(const Arch& a, const std::string& prefix, ForEach for_each) {
  if (a.nwave <= 0) return Status::Error(prefix + "nwave must be > 0 (got " + std::to_string(a.nwave) + ")");
  if (a.nbands < 0) return Status::Error(prefix + "nbands must be >= 0 (got " + std::to_string(a.nbands) + ")");
  if (a.channels.size() != 3 || a.kernels.size() != 3 || a.pools.size() != 3)
    return Status::Error(prefix + "channels, kernels and pools must each have 3 values (one per conv block)");
  for (int i = 0; i < 3; ++i) {
    if (a.channels[i] <= 0 || a.kernels[i] <= 0 || a.pools[i] <= 0)
      return Status::Error(prefix + "channels, kernels and pools must be positive");
    if (a.kernels[i] % 2 == 0)
      return Status::Error(prefix + "kernel sizes must be odd (got " + std::to_string(a.kernels[i]) + ")");
  }
  if (PooledLength(a) < 1)
    return Status::Error("the " + prefix + "pools " + std::to_string(a.pools[0]) + "x" + std::to_string(a.pools[1]) +
                         "x" + std::to_string(a.pools[2]) + " reduce " + std::to_string(a.nwave) +
                         " pixels to nothing: use smaller pools");
  Status st;
  for_each(a, [&](const char* key, const auto& v) {
    if constexpr (std::is_same_v<std::decay_t<decltype(v)>, int64_t>)
      if (st.ok() && v <= 0)
        st = Status::Error(prefix + "layer sizes must be positive (" + key + " = " + std::to_string(v) + ")");
  });
  return st;
}

}  // namespace cubeflow::nn
