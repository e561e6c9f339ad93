#pragma once
/// \file ages.hpp
/// \brief The 16 age bins of Galceran et al. (2026) and the cosmology used to turn look-back
/// times into cosmic times. All functions are pure and thread-safe.

#include <array>
#include <vector>

#include "cubeflow/sim/library.hpp"

namespace cubeflow::sim {

/// \brief Flat Lambda-CDM cosmology (the paper's: H0 = 70 km/s/Mpc, Omega_M = 0.3, Omega_L = 0.7).
struct Cosmology {
  double h0 = 70.0;       ///< km/s/Mpc
  double omega_m = 0.3;   ///< matter density; Omega_L = 1 - omega_m (flat)
};

/// Age of the universe at redshift z in Gyr (analytic flat LCDM, radiation neglected).
/// For the default cosmology and z = 0: 13.47 Gyr.
double CosmicTimeGyr(double z, const Cosmology& cosmo = {});

/// Centres of the 16 age bins in Gyr, as listed in the paper (sec. 3.1): 0.007 ... 14.2.
const std::array<double, kNumAgeBins>& AgeBinCentresGyr();

/// Edges of the 16 age bins in Gyr (17 values, 0 ... 17.8). The paper gives only centres; they
/// are the arithmetic midpoints of these edges, starting from 0 and ending at 17.8 Gyr, the oldest
/// E-MILES/Padova template (solving centre_i = (e_i + e_{i+1}) / 2 from e_0 = 0 gives
/// e_16 = 17.799). See docs/forward_model.md.
const std::array<double, kNumAgeBins + 1>& AgeBinEdgesGyr();

/// Index of the age bin containing the look-back time `age_gyr` (clamped to [0, 15]).
int AgeBinOf(double age_gyr);

/// \brief Sub-steps inside the age bins used to integrate histories: bin 0 (0-14 Myr) is cut
/// linearly every 2 Myr (so the 10 Myr birth-cloud boundary is an edge); every other bin is
/// cut into `per_bin` steps uniform in log age.
struct TimeGrid {
  std::vector<double> edges;  ///< look-back time, Gyr, increasing, edges.front() == 0
  std::vector<int> bin;       ///< age bin of each step (edges.size() - 1 values)
  size_t size() const { return bin.size(); }
  double Lo(size_t j) const { return edges[j]; }
  double Hi(size_t j) const { return edges[j + 1]; }
};
TimeGrid MakeTimeGrid(int per_bin = 6);

}  // namespace cubeflow::sim
