#pragma once
/// \file stats.hpp
/// \brief Robust statistics of spectra: the median, and the DER_SNR noise estimator.
///
/// Pure functions (no shared state): thread-safe.

#include <vector>

namespace cubeflow::spectral {

/// \brief Median of `v`: the middle value, or the mean of the two middle values for an even
/// count; NaN for an empty vector. Takes `v` by value (pass std::move(v) to reuse a buffer);
/// O(n) (nth_element), and NaNs are the caller's to remove.
double Median(std::vector<double> v);

/// \brief Per-pixel noise of a spectrum by the DER_SNR estimator (Stoehr et al. 2008, ASPC 394,
/// 505): 1.482602 / sqrt(6) * median(|2 f_i - f_{i-2} - f_{i+2}|), i = 2 .. n-3. Unbiased for
/// white Gaussian noise on a spectrum that is smooth over 5 pixels. NaN if `flux` has fewer
/// than 5 values; 0 for a noiseless (locally linear) spectrum. `flux` holds good pixels only,
/// in wavelength order.
double DerSnrNoise(const std::vector<double>& flux);

}  // namespace cubeflow::spectral
