#pragma once
/// \file cnn.hpp
/// \brief The spectro-photometric CNN of Galceran et al. (2026, sec. 3): architecture
/// description, model metadata, model loading/saving and batched prediction.
///
/// This header does not include libtorch: code that only runs models (the inference plugin,
/// the CLI) compiles without the torch headers. Training lives in train.hpp.
///
/// Units: wavelengths in Angstrom, ages in Gyr (bin centres/edges), dispersion in km/s,
/// [Z/H] in dex. Spectra are the model-grid flux divided by its mean in the normalisation
/// window; photometry is the band flux density divided by the same factor.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"
#include "cubeflow/nn/inputs.hpp"

namespace cubeflow::cnn {

/// Number of age bins predicted (mass fractions and mean [Z/H] per bin).
inline constexpr int kNumBins = 16;

/// Most rows CnnModel::Predict runs through the network at once: the feature maps of more
/// spectra leave the CPU caches. inference.cnn splits its batches into chunks of this size.
inline constexpr int64_t kPredictChunkRows = 64;

/// \brief Layer sizes of the network (see docs/cnn.md for the diagram and the reasons).
struct CnnArch {
  int64_t nwave = 1761;                          ///< spectral pixels
  int64_t nbands = 5;                            ///< photometric bands; 0: no photometric branch
  std::vector<int64_t> channels = {16, 32, 32};  ///< output channels of the 3 conv blocks
  std::vector<int64_t> kernels = {7, 5, 3};      ///< kernel sizes of the 3 convs (odd)
  std::vector<int64_t> pools = {4, 4, 2};        ///< max-pool sizes (= strides) of the 3 blocks
  bool attention = true;                         ///< self-attention over the pooled positions
  int64_t attention_dim = 16;                    ///< query/key dimension of the attention
  int64_t spec_hidden = 128;                     ///< first FC of the spectral branch
  int64_t spec_features = 64;                    ///< spectral-branch output
  int64_t phot_hidden = 32;                      ///< first two FCs of the photometric branch
  int64_t phot_features = 32;                    ///< photometric-branch output
  int64_t latent = 40;                           ///< shared latent space
  int64_t decoder_hidden = 128;                  ///< the two hidden FCs of the decoder

  bool operator==(const CnnArch&) const = default;
  /// Length of the sequence after the three conv/pool blocks.
  int64_t PooledLength() const;
  /// Checks sizes (three blocks, positive values, sequence not pooled away).
  Status Validate() const;
};

/// \brief Everything needed to use a model file correctly, written beside it as YAML
/// (`<model>.yaml`, see MetadataPath()).
struct CnnMetadata {
  std::string format = "state_dict";  ///< "state_dict" (cubeflow) or "torchscript" (torch.jit.save)
  CnnArch arch;                       ///< used for "state_dict"; nwave/nbands also for torchscript
  // --- input conventions ---
  WavelengthAxis wave;                ///< model grid (linear, rest frame)
  bool rest_frame = true;             ///< inputs must be rest-framed
  double norm_min = 5300, norm_max = 5500;  ///< normalisation window, Angstrom
  double sigma_target = 150;          ///< total dispersion the spectra are broadened to, km/s
  std::vector<std::string> bands;     ///< photometric bands, in input order
  std::vector<double> pivots;         ///< Angstrom, one per band
  /// Photometry transform "log10_standardise": x = (log10(max(f / norm, phot_floor)) -
  /// phot_mean) / phot_std; "none": x = f / norm (for TorchScript models that do their own).
  std::string phot_transform = "log10_standardise";
  double phot_floor = 1e-6;
  std::vector<double> phot_mean, phot_std;  ///< one per band
  // --- outputs ---
  std::vector<double> age_bin_centres;  ///< Gyr, kNumBins
  std::vector<double> age_bin_edges;    ///< Gyr, kNumBins + 1 (may be empty)
  std::string ssp_name;                 ///< SSP library of the training set
  /// V-band light-to-mass ratio per age bin, tabulated on a [Z/H] grid (arbitrary common
  /// scale; only ratios matter): lm_v[iz * kNumBins + ibin]. Empty: no light weights.
  std::vector<double> lm_zh_grid;
  std::vector<double> lm_v;
  // --- provenance ---
  std::map<std::string, std::string> training;  ///< n_train, snr mix, time, ...
  std::map<std::string, double> metrics;        ///< final test metrics
  std::string config_yaml;                      ///< the training configuration, verbatim

  /// Light-to-mass ratio of bin `ibin` at metallicity `zh` (linear interpolation in [Z/H],
  /// clamped); 1 when no table is stored.
  double LightToMass(int ibin, double zh) const;
  /// The input conventions (grid, rest frame, normalisation window, bands, pivots) that the
  /// inputs::Check* functions test bin spectra and photometry against.
  inputs::InputConventions Conventions() const;
  /// Sets wave, rest_frame, norm_min, norm_max, bands and pivots from `c`.
  void SetConventions(const inputs::InputConventions& c);
};

/// The metadata path that belongs to a model file: `<model>.yaml`.
std::string MetadataPath(const std::string& model_path);
/// Writes metadata as YAML (atomically: temporary file + rename).
Status WriteMetadata(const std::string& path, const CnnMetadata& md);
/// Reads metadata; errors name the file and the key.
Result<CnnMetadata> ReadMetadata(const std::string& path);

/// \brief Eq. 6-7 of the paper: mass- and light-weighted mean log10(age/yr) and [Z/H].
struct WeightedMeans {
  double mw_logage = 0, lw_logage = 0, mw_zh = 0, lw_zh = 0;
};
/// `mass_frac` and `zh` have kNumBins values; light weights are mass_frac * LightToMass(zh).
/// lw_* are NaN when the metadata has no light-to-mass table.
WeightedMeans ComputeWeightedMeans(const CnnMetadata& md, const float* mass_frac, const float* zh);

/// \brief A loaded network ready for inference.
///
/// Thread-safety: Predict may be called concurrently from several threads (the network is
/// only read; inference.cnn runs batches on several TBB workers at once). When `threads` > 0,
/// Predict sets libtorch's intra-op thread count and OpenBLAS's own pool (process-wide) to it:
/// an unpinned OpenBLAS pool spins on every core beside the callers' threads.
class CnnModel {
 public:
  ~CnnModel();
  CnnModel(const CnnModel&) = delete;
  CnnModel& operator=(const CnnModel&) = delete;

  /// Loads a model file and its metadata (`MetadataPath(path)`): a cubeflow state-dict archive
  /// or a TorchScript module, as the metadata's `format` says.
  static Result<std::unique_ptr<CnnModel>> Load(const std::string& path);
  /// A new network with Glorot-uniform weights (seeded), for training and benchmarks.
  static Result<std::unique_ptr<CnnModel>> CreateRandom(const CnnMetadata& md, uint64_t seed);

  /// Saves the weights (state-dict archive) to `path` and the metadata beside it, atomically.
  /// Only for format "state_dict".
  Status Save(const std::string& path) const;

  const CnnMetadata& metadata() const;
  CnnMetadata& mutable_metadata();

  /// Runs the network on n objects. `spectra`: n x nwave normalised flux (row-major, finite);
  /// `phot`: n x nbands normalised band fluxes (f / norm, before the log transform; ignored
  /// when nbands = 0). Writes n x 16 mass fractions (>= 0, rows sum to 1) and n x 16 [Z/H].
  /// Runs in chunks of at most min(`batch`, kPredictChunkRows) rows.
  /// Returns an error (never throws) on failure.
  Status Predict(const float* spectra, const float* phot, int64_t n, float* mass_frac,
                 float* zh, int threads = 0, int64_t batch = 256) const;

  /// Internal: the implementation (libtorch types), see net.hpp.
  struct Impl;
  Impl& impl() const { return *impl_; }
  explicit CnnModel(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

/// Default age-bin centres of the paper (Gyr).
std::vector<double> DefaultAgeBinCentres();

}  // namespace cubeflow::cnn
