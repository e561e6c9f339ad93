#pragma once
/// \file continuum_norm.hpp
/// \brief custom.continuum_norm: a batched stream node (Process sees up to batch_size bins).
///
/// Divides every bin spectrum by a low-order polynomial continuum fitted by least squares. The
/// spectra of a batch that share a wavelength grid and a set of fitted pixels share one QR
/// factorisation: one decomposition and one matrix product fit them all, which is why the node
/// is batched.

#include <cstdint>
#include <vector>

#include <cubeflow/node.hpp>
#include <cubeflow/spec.hpp>

namespace custom {

/// \brief Parameters of custom.continuum_norm.
struct ContinuumNormOptions {
  int64_t degree = 3;                ///< polynomial degree (Legendre basis over the spectrum's range)
  std::vector<double> exclude;       ///< [lo1, hi1, lo2, hi2, ...] windows left out of the fit, Angstrom
  double min_good_fraction = 0.5;    ///< fewer fitted pixels than this fraction: the bin is flagged
  int64_t batch_size = 64;           ///< bins per Process call (NodeSpec::Batched)
};

/// \brief Continuum-normalises bin spectra, a batch per call. Stateless after construction:
/// batches may run concurrently.
class ContinuumNormNode final : public cubeflow::Node {
 public:
  using Options = ContinuumNormOptions;
  static cubeflow::NodeSpec Spec();
  explicit ContinuumNormNode(const Options& options) : options_(options) {}
  void Process(cubeflow::ProcessContext& ctx) override;

 private:
  Options options_;
};

}  // namespace custom
