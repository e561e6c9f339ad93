#pragma once
/// \file mock.hpp
/// \brief Mock spectra with a known LOSVD, for tests, benchmarks and simulations, made
/// independently of the fitter's kernel code: SSPs of a library broadened to the data's LSF on
/// their own grid (rest frame at z), rebinned onto a 5 km/s log grid, convolved there with the
/// sampled Gauss-Hermite LOSVD (a direct sum), redshifted and integrated over linear data
/// pixels (flux-conserving), plus Gaussian noise of known variance.
///
/// Thread-safety: a MockMaker is immutable after construction; Make() may run concurrently
/// with different random generators.

#include <cstdint>
#include <random>
#include <vector>

#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/spectral/lsf.hpp"

namespace cubeflow::kinematics {

/// \brief One mock spectrum on linear data pixels.
struct MockSpectrum {
  std::vector<double> edges_rest;  ///< pixel edges / (1 + z), Angstrom (n + 1)
  std::vector<double> flux, variance;
  double v = 0, sigma = 0, h3 = 0, h4 = 0;  ///< the LOSVD (km/s), V relative to z
};

/// \brief Makes mocks from a few SSPs of a library.
class MockMaker {
 public:
  /// `ssp_index`: flat (im * n_age + ia) indices of the SSPs the mocks mix; the data pixels are
  /// obs_lo + k obs_step (observed frame, Angstrom) up to obs_hi.
  MockMaker(const sim::SspGrid& grid, const spectral::Lsf& data_lsf, double z, std::vector<size_t> ssp_index,
            double obs_lo = 4760, double obs_hi = 5620, double obs_step = 1.25);

  /// A mock with `weights` over the SSPs, LOSVD in km/s and S/N per pixel (constant noise =
  /// mean flux / snr; snr <= 0 or infinite: no noise).
  MockSpectrum Make(const std::vector<double>& weights, double v, double sigma, double h3, double h4, double snr,
                    std::mt19937_64& rng) const;

  size_t num_ssps() const { return ssp_.size(); }

 private:
  double z_ = 0;
  int nfine_ = 0;
  std::vector<double> fine_edges_, obs_edges_;
  std::vector<std::vector<double>> ssp_;
};

}  // namespace cubeflow::kinematics
