#pragma once
// Internal (not installed): the layer-size fields of the network architectures with their YAML
// key names, one list for the three places that name them: model metadata (write and read) and
// training configurations (`architecture:` and `flow:`). `f(key, field)` is called for each field
// in the order of the metadata files; `Arch` may be const.

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

}  // namespace cubeflow::nn
