#pragma once
// Node inference.sbi (plugin "inference"). Internal header, shared with tests/plugins/inference.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/nn/sbi.hpp"
#include "model_file.hpp"

namespace cubeflow::inference {

/// \brief Parameters of inference.sbi (declared once, in SbiNode::Spec()).
struct SbiOptions {
  ModelRef model{ModelRef::Kind::kShipped, "sbi_builtin"};  ///< shipped name or model file
  int64_t n_samples = 1000;                                  ///< posterior samples per bin
  uint64_t seed = 0;                                         ///< combined with the bin id
  int64_t batch_size = 256;                                  ///< bins per call
  int threads = 1;                                           ///< libtorch threads; 0: the run's
  bool emit_samples = false;
  double norm_tolerance = kDefaultNormTolerance;             ///< allowed |window mean - 1|
  /// Where the S/N the model is conditioned on comes from: "auto" (meta["snr"], the binning's
  /// per-pixel S/N before rest-framing, else the variance), "meta" or "variance".
  std::string snr_source = "auto";
  double snr = 0;  ///< S/N to assume when the chosen source has none (0: such a spectrum is an error)
};

/// \brief Posterior samples of the SFH percentiles and [M/H] per bin from an SBI model; emits
/// median, 16th and 84th percentiles (and optionally the samples). Process is called serially
/// (the networks use `threads` libtorch threads).
class SbiNode : public Node {
 public:
  using Options = SbiOptions;
  static NodeSpec Spec();
  /// Loads the model the options name (throws cubeflow::Error if it cannot).
  explicit SbiNode(const Options& options);
  /// For tests: a node around an already loaded model (`options.model` is not used).
  SbiNode(std::unique_ptr<sbi::SbiModel> model, std::string model_path, const Options& options);
  void Process(ProcessContext& ctx) override;

  /// "" if the spectrum matches the model's input conventions, else the message.
  std::string CheckSpectrum(const Spectrum& s) const;
  std::string CheckPhotometry(const Photometry& p, std::vector<int>& order) const;

 private:
  void Init(std::unique_ptr<sbi::SbiModel> model, std::string model_path, const Options& options);
  std::unique_ptr<sbi::SbiModel> model_;
  std::string model_path_;
  Options opt_;
  bool warned_unused_phot_ = false;
};

/// Registers inference.sbi; called from the "inference" plugin's registration function.
void RegisterSbiNodes(Registry& r);

}  // namespace cubeflow::inference
