// Median and DER_SNR. See stats.hpp.
#include "cubeflow/spectral/stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace cubeflow::spectral {

double Median(std::vector<double> v) {
  const size_t n = v.size();
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  const size_t h = n / 2;
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(h);
  std::nth_element(v.begin(), mid, v.end());
  const double hi = *mid;
  if (n % 2) return hi;
  return 0.5 * (hi + *std::max_element(v.begin(), mid));  // the lower middle value
}

double DerSnrNoise(const std::vector<double>& flux) {
  const size_t n = flux.size();
  if (n < 5) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> d;
  d.reserve(n - 4);
  for (size_t i = 2; i + 2 < n; ++i) d.push_back(std::fabs(2.0 * flux[i] - flux[i - 2] - flux[i + 2]));
  return 1.482602 / std::sqrt(6.0) * Median(std::move(d));
}

}  // namespace cubeflow::spectral
