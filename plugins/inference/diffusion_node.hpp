#pragma once
// Node inference.diffusion (plugin "inference"). Internal header, shared with tests/plugins/inference.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/nn/diffusion_posterior.hpp"
#include "cubeflow/nn/inputs.hpp"
#include "model_file.hpp"

namespace cubeflow::inference {

/// \brief Parameters of inference.diffusion (declared once, in DiffusionNode::Spec()).
struct DiffusionOptions {
  ModelRef model{ModelRef::Kind::kShipped, "diffusion_builtin"};  ///< shipped name or prior file
  int64_t n_samples = 100;                                         ///< posterior samples per bin
  uint64_t seed = 0;                                               ///< combined with the bin id
  int64_t steps = 100;                                             ///< noise levels
  std::string cla = "diagonal";                                    ///< A A^T of the CLA: diagonal or full
  int64_t jacobian_every = 4;                                      ///< levels between updates of H (full)
  double clip = 1;                                                 ///< cap of the likelihood score
  double line_mask = 15;                                           ///< A around nebular lines left out
  int64_t refine_steps = 30;                                       ///< Langevin steps on the exact likelihood
  int64_t adjust_steps = 200;                                      ///< then Metropolis-adjusted Langevin steps
  int threads = 1;                                                 ///< libtorch threads; 0: the run's
  bool emit_samples = false;
  double norm_tolerance = kDefaultNormTolerance;                   ///< allowed |window mean - 1|
};

/// \brief Posterior samples of the 16-bin history (mass fractions and [Z/H]) and the dust per bin
/// from a diffusion prior and the differentiable forward model (docs/diffusion.md); emits
/// percentiles of the derived quantities. Process is called serially.
class DiffusionNode : public Node {
 public:
  using Options = DiffusionOptions;
  static NodeSpec Spec();
  /// Loads the prior the options name and builds its forward model (throws cubeflow::Error).
  explicit DiffusionNode(const Options& options);
  /// For tests: a node around a loaded prior and forward model (`options.model` is not used).
  DiffusionNode(std::shared_ptr<const diffusion::PriorModel> prior, std::shared_ptr<const sim::ForwardModel> fm,
                std::string model_path, const Options& options);
  void Process(ProcessContext& ctx) override;

  /// "" if the spectrum matches the forward model's grid and normalisation, else the message.
  std::string CheckSpectrum(const Spectrum& s) const;

 private:
  void Init(std::shared_ptr<const diffusion::PriorModel> prior, std::shared_ptr<const sim::ForwardModel> fm,
            std::string model_path, const Options& options);
  /// Step: the likelihood's data of input row i: the spectrum with its variance (masked pixels get
  /// variance 0, i.e. left out) and, with `use_phot`, the band fluxes in the spectrum's normalised
  /// units (their quality bits go to `rec`). Throws cubeflow::Error on a spectrum without variance
  /// or photometry that does not match the forward model's bands.
  diffusion::Observation ObservationOf(ProcessContext& ctx, size_t i, const Spectrum& s, bool use_phot,
                                       Record& rec) const;
  /// Step: median, _p16, _p84, _err (and _samples) of the derived quantities, and the per-bin
  /// medians mass_frac and zh, from the posterior draws; NaN everywhere when `draws` is null.
  void SetPosteriorFields(const std::vector<diffusion::PosteriorDraw>* draws, Record& rec) const;
  std::unique_ptr<diffusion::PosteriorSampler> sampler_;
  std::string model_path_;
  Options opt_;
  inputs::InputConventions conventions_;
  bool warned_phot_ = false;
};

/// Registers inference.diffusion; called from the "inference" plugin's registration function.
void RegisterDiffusionNodes(Registry& r);

}  // namespace cubeflow::inference
