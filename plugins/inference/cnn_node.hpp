#pragma once
// Node inference.cnn (plugin "inference"). Internal header, shared with tests/inference.

#include <memory>
#include <string>
#include <vector>

#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/inputs.hpp"

namespace cubeflow::inference {

/// \brief Runs the CNN on batches of bin spectra (+ photometry). Process is called serially
/// (the network itself uses `threads` libtorch threads).
class CnnNode : public Node {
 public:
  static NodeSpec Spec();
  explicit CnnNode(const Params& p);
  /// For tests: a node around an already loaded model.
  CnnNode(std::unique_ptr<cnn::CnnModel> model, std::string model_path, int threads = 1,
          double norm_tolerance = 0.05);
  void Process(ProcessContext& ctx) override;

  /// "" if the spectrum matches the model's input conventions, else the message naming the field
  /// (inputs::CheckSpectrum, shared with inference.sbi).
  std::string CheckSpectrum(const Spectrum& s) const;
  /// Same for photometry; fills `order` (model band -> index in p.bands).
  std::string CheckPhotometry(const Photometry& p, std::vector<int>& order) const;

 private:
  void Init(std::unique_ptr<cnn::CnnModel> model, std::string model_path, int threads, double norm_tolerance);
  std::unique_ptr<cnn::CnnModel> model_;
  std::string model_path_;
  int threads_ = 0;
  double norm_tolerance_ = 0.05;
  inputs::InputConventions conventions_;  ///< from the model metadata (shared checks with inference.sbi)
  std::vector<std::string> labels_;
  bool warned_unused_phot_ = false;
};

/// Registers inference.cnn; called from the "inference" plugin's registration function.
void RegisterCnnNodes(Registry& r);

}  // namespace cubeflow::inference
