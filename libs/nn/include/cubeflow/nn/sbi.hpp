#pragma once
/// \file sbi.hpp
/// \brief Simulation-based inference (neural posterior estimation) of star-formation histories
/// after Iglesias-Navarro et al. (2024): a spectral (+ photometric, + noise-level) encoder
/// compresses the inputs to a 16-d summary, and a conditional normalising flow (rational-
/// quadratic spline or affine coupling layers) models p(theta | summary). theta: the cosmic
/// times (Gyr) by which 10, 20 ... 90 % of the stellar mass had formed and the mass-weighted
/// mean [M/H] (dex). See docs/sbi.md.
///
/// This header does not include libtorch (the node and the CLI compile without it).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"
#include "cubeflow/nn/inputs.hpp"

namespace cubeflow::sbi {

/// \brief Layer sizes of the encoder (docs/sbi.md has the diagram).
struct EncoderArch {
  int64_t nwave = 1761;                          ///< spectral pixels
  int64_t nbands = 5;                            ///< photometric bands; 0: no photometric branch
  bool noise_input = true;                       ///< the encoder also sees log10(S/N) of the spectrum
  std::vector<int64_t> channels = {16, 32, 32};  ///< output channels of the 3 conv blocks
  std::vector<int64_t> kernels = {7, 5, 3};      ///< kernel sizes (odd)
  std::vector<int64_t> pools = {4, 4, 2};        ///< max-pool sizes (= strides)
  bool attention = true;                         ///< dot-product self-attention over positions
  int64_t attention_dim = 16;
  int64_t spec_hidden = 128;                     ///< first FC of the spectral branch
  int64_t spec_features = 64;                    ///< spectral-branch output
  int64_t phot_hidden = 32;                      ///< photometric MLP hidden units
  int64_t phot_features = 32;                    ///< photometric-branch output
  int64_t fusion_hidden = 128;                   ///< the two hidden FCs after concatenation
  int64_t summary_dim = 16;                      ///< the summary the flow is conditioned on
  int64_t head_hidden = 64;                      ///< hidden FC of the Log-Cosh regression head

  bool operator==(const EncoderArch&) const = default;
  int64_t PooledLength() const;
  Status Validate() const;
  /// What the flow is conditioned on: the summary, plus the standardised log10(S/N) when
  /// noise_input (a summary trained for point estimates need not keep the noise level).
  int64_t ContextDim() const { return summary_dim + (noise_input ? 1 : 0); }
};

/// \brief The conditional normalising flow.
struct FlowArch {
  int64_t dim = 10;                  ///< number of parameters (theta)
  std::string transform = "spline";  ///< "spline" (rational-quadratic, Durkan et al. 2019) or "affine"
  int64_t layers = 6;                ///< coupling layers, each preceded by a fixed random permutation
  int64_t hidden = 64;               ///< hidden units of each coupling network (2 hidden layers)
  int64_t context_hidden = 64;       ///< context embedding (2 layers), computed once per object
  int64_t bins = 8;                  ///< spline bins
  double tail_bound = 5.0;           ///< spline interval [-B, B] in standardised units; identity outside
  uint64_t permutation_seed = 1;     ///< seed of the permutations (stored in the model too)

  Status Validate() const;
};

/// \brief One inferred parameter.
struct ThetaParam {
  std::string name;                 ///< e.g. "t50", "mh"
  std::string unit;                 ///< "Gyr" or "dex"
  std::string doc;
  /// "linear": y = v; "log_lookback": y = log10(lookback_reference + lookback_offset - v)
  /// (v a cosmic time in Gyr). The flow models (y - mean) / std.
  std::string transform = "linear";
  double mean = 0, std = 1;
};

/// \brief Everything needed to use a model file, written beside it as `<model>.yaml`.
struct SbiMetadata {
  std::string format = "state_dict";
  EncoderArch encoder;
  FlowArch flow;
  inputs::InputConventions input;        ///< grid, rest frame, normalisation window, bands, pivots
  double sigma_target = 150;             ///< km/s the training spectra were broadened to
  std::string phot_transform = "log10_standardise";  ///< x = (log10(max(f/norm, floor)) - mean) / std
  double phot_floor = 1e-6;
  std::vector<double> phot_mean, phot_std;
  /// Noise input: x = (log10(S/N) - snr_log_mean) / snr_log_std, S/N = inputs::NoiseSnr.
  double snr_log_mean = 1.4, snr_log_std = 0.2;
  double snr_min = 0, snr_max = 0;       ///< range of S/N in the training set
  std::vector<ThetaParam> theta;
  double lookback_reference = 13.47;     ///< Gyr: age of the universe of the training library
  double lookback_offset = 0.01;         ///< Gyr
  std::string ssp_name;
  std::map<std::string, std::string> training;
  std::map<std::string, double> metrics;
  std::string config_yaml;

  /// Standardised flow variable -> physical value of parameter k, and back.
  double ToPhysical(int k, double y) const;
  double FromPhysical(int k, double v) const;
  /// S/N -> standardised encoder input.
  double SnrFeature(double snr) const;
};

/// The metadata path of a model file: `<model>.yaml` (same rule as the CNN).
std::string MetadataPath(const std::string& model_path);
/// True when the YAML file (model metadata or training configuration) says `kind: sbi`; false
/// when it does not or cannot be read.
bool IsSbiMetadata(const std::string& metadata_path);
Status WriteMetadata(const std::string& path, const SbiMetadata& md);
Result<SbiMetadata> ReadMetadata(const std::string& path);

/// Default parameters: t10 ... t90 (log_lookback, Gyr) and mh (linear, dex).
std::vector<ThetaParam> DefaultTheta();

/// Type-7 (linear interpolation) quantile `q` of `v` (reorders `v`; NaN when empty).
double Quantile(std::vector<float>& v, double q);

/// \brief A loaded encoder + flow.
///
/// Thread-safety: the const methods may run concurrently (read-only networks); the libtorch
/// intra-op thread count is process-wide and set when `threads` > 0 differs from it.
class SbiModel {
 public:
  ~SbiModel();
  SbiModel(const SbiModel&) = delete;
  SbiModel& operator=(const SbiModel&) = delete;

  /// Loads a model file and `MetadataPath(path)`; refuses metadata without `kind: sbi`.
  static Result<std::unique_ptr<SbiModel>> Load(const std::string& path);
  /// Random weights (seeded): for tests and benchmarks.
  static Result<std::unique_ptr<SbiModel>> CreateRandom(const SbiMetadata& md, uint64_t seed);
  /// Saves weights and metadata atomically.
  Status Save(const std::string& path) const;

  const SbiMetadata& metadata() const;
  SbiMetadata& mutable_metadata();

  /// Encoder: `spectra` n x nwave normalised flux (finite), `phot` n x nbands of f / norm (ignored
  /// when nbands = 0), `snr` n values of inputs::NoiseSnr (ignored without noise input).
  /// Writes n x encoder.ContextDim() values: the summary, then (noise_input) the S/N feature.
  /// Runs in chunks of <= 64 objects.
  Status Summarize(const float* spectra, const float* phot, const float* snr, int64_t n, float* summary,
                   int threads = 0) const;
  /// Draws `n_samples` posterior samples per object from the flow given its Summarize() output
  /// (`summary`: n x encoder.ContextDim()). Object i
  /// uses its own generator seeded by (seed, keys[i]), so its samples do not depend on which
  /// other objects share the call. `out`: n x n_samples x dim, physical units (metadata().theta).
  Status Sample(const float* summary, int64_t n, int64_t n_samples, const int64_t* keys, uint64_t seed,
                float* out, int threads = 0) const;
  /// Log posterior density log q(theta | summary) of physical values `theta` (n x dim), including
  /// the Jacobian of the parameter transforms (density per Gyr / per dex). Writes n values.
  Status LogProb(const float* summary, const float* theta, int64_t n, double* out, int threads = 0) const;
  /// The Log-Cosh regression head's point estimates (physical units), n x dim.
  Status HeadPredict(const float* summary, int64_t n, float* out, int threads = 0) const;

  struct Impl;
  Impl& impl() const { return *impl_; }
  explicit SbiModel(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cubeflow::sbi
