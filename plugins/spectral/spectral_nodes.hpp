#pragma once
// Internal header of the "spectral" plugin: registration functions and the steps of
// spectral.snr_map that the tests call directly.

#include <cstdint>
#include <memory>

#include "cubeflow/data.hpp"
#include "cubeflow/registry.hpp"

namespace cubeflow::spectral {

/// Adds spectral.snr_map / spectral.restframe to `r`.
void RegisterSnrMap(Registry& r);
void RegisterRestframe(Registry& r);

/// \brief The two maps of spectral.snr_map: FLUX (mean good flux in the window, cube units) and
/// SNR (S/N of the window sum), with the channels used.
struct SnrMaps {
  std::shared_ptr<Map> flux, snr;
  int64_t k0 = 0, k1 = -1;  ///< channel range used (inclusive)
};

/// \brief spectral.snr_map's maps of `cube` over [wave_min, wave_max]: ComputeSpaxelSnr with
/// SnrDefinition::kWindowSum and the variance (or DER_SNR if `der_snr`) as noise. Spaxels
/// without a good pixel are NaN in both maps, spaxels whose noise is unknown or 0 in SNR.
/// Throws cubeflow::Error if the window misses the cube or the variance is missing.
SnrMaps ComputeSnrMaps(const Cube& cube, double wave_min, double wave_max, bool der_snr);

}  // namespace cubeflow::spectral
