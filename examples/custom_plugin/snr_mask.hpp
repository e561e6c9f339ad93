#pragma once
/// \file snr_mask.hpp
/// \brief custom.snr_mask: a node called once per run (single input, single output).
///
/// Turns an S/N map into a quality mask with cubeflow's quality bits (cubeflow::QualityBit,
/// docs/products.md): NOCOV (1) where the S/N is not finite, LOWSNR (2) where it is below
/// `threshold`, 0 elsewhere.

#include <string>

#include <cubeflow/node.hpp>
#include <cubeflow/spec.hpp>

namespace custom {

/// \brief Parameters of custom.snr_mask. Each field is a pipeline parameter; its member
/// initialiser is the default (declared once, in SnrMaskNode::Spec()).
struct SnrMaskOptions {
  double threshold = 3.0;         ///< minimum S/N of a good spaxel
  std::string name = "SNR_MASK";  ///< EXTNAME of the mask in products
};

/// \brief Masks the spaxels of an S/N map that are below a threshold or not finite.
/// Stateless: Process may run on any thread.
class SnrMaskNode final : public cubeflow::Node {
 public:
  using Options = SnrMaskOptions;
  static cubeflow::NodeSpec Spec();
  explicit SnrMaskNode(const Options& options) : options_(options) {}
  void Process(cubeflow::ProcessContext& ctx) override;

 private:
  Options options_;
};

}  // namespace custom
