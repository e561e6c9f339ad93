#include "cubeflow/sim/ages.hpp"

#include <algorithm>
#include <cmath>

namespace cubeflow::sim {

double CosmicTimeGyr(double z, const Cosmology& cosmo) {
  // t(z) = 2 / (3 H0 sqrt(OL)) * asinh( sqrt(OL/OM) (1+z)^-3/2 )
  const double kMpcKm = 3.0856775814913673e19;
  const double kGyrS = 3.15576e16;
  const double hubble_time_gyr = kMpcKm / cosmo.h0 / kGyrS;
  const double ol = 1.0 - cosmo.omega_m;
  return 2.0 / 3.0 * hubble_time_gyr / std::sqrt(ol) *
         std::asinh(std::sqrt(ol / cosmo.omega_m) * std::pow(1.0 + z, -1.5));
}

const std::array<double, kNumAgeBins>& AgeBinCentresGyr() {
  static const std::array<double, kNumAgeBins> kCentres = {
      0.007, 0.021, 0.0425, 0.076, 0.1145, 0.1615, 0.23,  0.345,
      0.545, 0.865, 1.37,   2.17,  3.44,   5.455,  8.645, 14.2};
  return kCentres;
}

const std::array<double, kNumAgeBins + 1>& AgeBinEdgesGyr() {
  static const std::array<double, kNumAgeBins + 1> kEdges = [] {
    std::array<double, kNumAgeBins + 1> e{};
    e[0] = 0.0;
    const auto& c = AgeBinCentresGyr();
    for (int i = 0; i < kNumAgeBins; ++i) e[i + 1] = 2.0 * c[i] - e[i];
    for (auto& v : e) v = std::round(v * 1e6) / 1e6;  // remove float noise
    e[kNumAgeBins] = 17.8;                              // 17.799 -> the 17.8 Gyr template limit
    return e;
  }();
  return kEdges;
}

int AgeBinOf(double age_gyr) {
  const auto& e = AgeBinEdgesGyr();
  int i = static_cast<int>(std::upper_bound(e.begin(), e.end(), age_gyr) - e.begin()) - 1;
  return std::clamp(i, 0, kNumAgeBins - 1);
}

TimeGrid MakeTimeGrid(int per_bin) {
  per_bin = std::max(per_bin, 1);
  const auto& e = AgeBinEdgesGyr();
  TimeGrid g;
  g.edges.push_back(0.0);
  const int n0 = static_cast<int>(std::lround(e[1] / 0.002));  // 2 Myr steps in bin 0
  for (int k = 1; k <= n0; ++k) {
    g.edges.push_back(e[1] * k / n0);
    g.bin.push_back(0);
  }
  for (int b = 1; b < kNumAgeBins; ++b) {
    const double l0 = std::log(e[b]), l1 = std::log(e[b + 1]);
    for (int k = 1; k <= per_bin; ++k) {
      g.edges.push_back(k == per_bin ? e[b + 1] : std::exp(l0 + (l1 - l0) * k / per_bin));
      g.bin.push_back(b);
    }
  }
  return g;
}

}  // namespace cubeflow::sim
