#pragma once
// Node inference.stellar_mass (plugin "inference"). Internal header, shared with
// tests/plugins/inference.

#include <memory>
#include <string>
#include <vector>

#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/stellar_mass.hpp"
#include "model_file.hpp"

namespace cubeflow::inference {

/// \brief Parameters of inference.stellar_mass (declared once, in StellarMassNode::Spec()).
struct StellarMassOptions {
  /// The inference model whose results come in: its training library's forward model (SSPs,
  /// time grid, dust law, nebular lines) turns a history into flux per solar mass.
  ModelRef model{ModelRef::Kind::kShipped, "cnn_builtin"};
  double distance_mpc = 0;      ///< luminosity distance of the galaxy (required)
  double pixel_scale = 0;       ///< arcsec per spaxel; 0: from the binning's WCS
  double ml_error_dex = 0.1;    ///< mass-to-light uncertainty of a CNN history (bench/stellar_mass.sh)
  int64_t max_samples = 100;    ///< posterior samples per bin used for SBI results
  std::string ssp_dir;          ///< the model's SSP directory on this machine ("": as recorded / $CUBEFLOW_DATA_DIR)
  std::string young_ssp_dir;    ///< for `ssp: emiles` models: the Maraston directory ("": likewise)
};

/// \brief Stellar mass and mass surface density per bin from an inferred history (mass
/// fractions and [Z/H] per age bin of inference.cnn, or t10..t90 and mh of inference.sbi), the
/// bin's absolute flux in the normalisation window, the distance and the bin's area.
class StellarMassNode : public Node {
 public:
  using Options = StellarMassOptions;
  static NodeSpec Spec();
  /// Builds the model's forward model (throws cubeflow::Error naming what is missing).
  explicit StellarMassNode(const Options& options);
  void Process(ProcessContext& ctx) override;

  /// A bin's mass estimate: log10 masses (M_sun), their 1-sigma (dex), posterior percentiles of
  /// log10 M* (SBI samples only), the light-to-mass fit, or why there is none.
  struct Estimate {
    double log_formed, log_living, err_dex, p16, p84;
    sim::LightToMass fit;
    std::string failure;  ///< empty when the estimate exists
  };

 private:
  /// The history a bin's inference results describe, with its posterior-sample histories (SBI
  /// results that carry samples) and the gas metallicity for the nebular lines.
  struct BinHistory {
    Result<sim::BinnedSfh> history;
    std::vector<sim::BinnedSfh> samples;
    double z_gas;
  };
  BinHistory HistoryOf(const Record& in, const std::string& bin_name) const;
  /// Fits the dust of `h` to the normalised spectrum `s` and turns its window flux `flux_norm`
  /// (erg/s/cm^2/A) into mass.
  Estimate EstimateMass(const Spectrum& s, const BinHistory& h, double flux_norm, double nspax) const;

  Options options_;
  std::string model_path_;
  std::shared_ptr<const sim::ForwardModel> model_;
  double lookback_reference_ = 0;  ///< SBI: age of the universe of the training library (Gyr)
};

/// Registers inference.stellar_mass; called from the "inference" plugin's registration function.
void RegisterStellarMassNodes(Registry& r);

}  // namespace cubeflow::inference
