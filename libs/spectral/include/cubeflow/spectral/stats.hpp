#pragma once
/// \file stats.hpp
/// \brief Robust statistics of spectra (the median, the DER_SNR noise estimator) and the skill of
/// predictions against truths (R^2, Spearman's rank correlation, the best constant's scatter).
///
/// Pure functions (no shared state): thread-safe.

#include <cstdint>
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

/// \brief How much better than a constant a set of predictions is (issue #15: accuracy judged
/// against a trivial baseline).
struct Skill {
  int64_t n = 0;        ///< finite (truth, prediction) pairs used
  /// 1 - sum (t - p)^2 / sum (t - mean t)^2: 1 for a perfect prediction, 0 for the mean truth
  /// as a constant, negative for worse than that (any other constant, a biased one); NaN when
  /// the truths do not vary (or n < 2).
  double r2 = 0;
  /// Spearman's rank correlation (Pearson's r of the ranks, ties given their average rank);
  /// NaN when either side does not vary (a constant prediction has no ranking).
  double spearman = 0;
  /// Standard deviation (n - 1) of the truths: the scatter of truth - c for every constant c,
  /// i.e. the scatter the best constant predictor reaches, to set beside the model's.
  double constant_scatter = 0;
};

/// \brief Skill of `pred` against `truth` (same length; pairs with a non-finite member are
/// skipped).
Skill SkillOf(const std::vector<double>& truth, const std::vector<double>& pred);

/// \brief Spearman's rank correlation of two equally long samples (no NaNs); ties get their
/// average rank. NaN if either sample has fewer than 2 distinct values.
double SpearmanRho(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace cubeflow::spectral
