#pragma once
// Node inference.cnn (plugin "inference"). Internal header, shared with tests/plugins/inference.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/inputs.hpp"
#include "model_file.hpp"

namespace cubeflow::inference {

/// \brief Parameters of inference.cnn (declared once, in CnnNode::Spec()).
struct CnnOptions {
  ModelRef model{ModelRef::Kind::kShipped, "cnn_builtin"};  ///< shipped name or model file
  int64_t batch_size = 256;                                  ///< bins per node call
  int threads = 1;                                           ///< libtorch threads; 0: the run's
  double norm_tolerance = kDefaultNormTolerance;             ///< allowed |window mean - 1|
};

/// \brief Runs the CNN on batches of bin spectra (+ photometry). Batches run in parallel on the
/// runner's workers (each call uses `threads` libtorch threads; the model is only read).
class CnnNode : public Node {
 public:
  using Options = CnnOptions;
  static NodeSpec Spec();
  /// Loads the model the options name (throws cubeflow::Error if it cannot).
  explicit CnnNode(const Options& options);
  /// For tests: a node around an already loaded model (`options.model` is not used).
  CnnNode(std::unique_ptr<cnn::CnnModel> model, std::string model_path, const Options& options = {});
  void Process(ProcessContext& ctx) override;

  /// "" if the spectrum matches the model's input conventions, else the message naming the field
  /// (inputs::CheckSpectrum, shared with inference.sbi).
  std::string CheckSpectrum(const Spectrum& s) const;
  /// Same for photometry; fills `order` (model band -> index in p.bands).
  std::string CheckPhotometry(const Photometry& p, std::vector<int>& order) const;

 private:
  void Init(std::unique_ptr<cnn::CnnModel> model, std::string model_path);

  Options options_;
  std::unique_ptr<cnn::CnnModel> model_;
  std::string model_path_;
  inputs::InputConventions conventions_;  ///< from the model metadata (shared checks with inference.sbi)
  std::vector<std::string> labels_;
  std::atomic<bool> warned_unused_phot_{false};
};

/// Registers inference.cnn; called from the "inference" plugin's registration function.
void RegisterCnnNodes(Registry& r);

}  // namespace cubeflow::inference
