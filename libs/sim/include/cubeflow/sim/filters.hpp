#pragma once
/// \file filters.hpp
/// \brief Photometric filters (total system throughput curves) and synthetic photometry.
///
/// Wavelengths in Angstrom, throughput dimensionless (0-1). Synthetic photometry is
/// photon-counting: the mean flux density of f_lambda through a filter T is
///   <f_lambda> = integral f T lambda dlambda / integral T lambda dlambda,
/// and the pivot wavelength is sqrt(integral T lambda dlambda / integral T / lambda dlambda),
/// so that <f_nu> = <f_lambda> lambda_pivot^2 / c.
/// All functions are pure and thread-safe; a BandpassOperator is immutable once built.

#include <span>
#include <string>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::sim {

/// \brief A filter throughput curve.
struct Filter {
  std::string name;                ///< e.g. "F555W"
  std::vector<double> wave;        ///< Angstrom, strictly increasing
  std::vector<double> throughput;  ///< total system throughput, same size as wave
  std::string source;              ///< file it was read from, or "builtin (analytic)"
};

/// Pivot wavelength (Angstrom), trapezoidal integration on the filter's own grid.
double PivotWavelength(const Filter& filter);

/// \brief Photon-counting mean flux density of the spectrum (wave in Angstrom, increasing;
/// f_lambda in any per-Angstrom unit) through the filter, in the unit of f_lambda.
///
/// The throughput is interpolated linearly onto the spectrum grid and both integrals use the
/// same trapezoidal weights on that grid, so a flat spectrum returns its value exactly.
/// Returns NaN if the spectrum covers less than `min_coverage` of integral T lambda dlambda
/// (default 0.99), or if the spectrum has NaN where the filter transmits.
double MeanFluxDensity(const Filter& filter, std::span<const double> wave,
                       std::span<const double> f_lambda, double min_coverage = 0.99);

/// Reads a 2-column ASCII curve (wavelength in Angstrom, throughput; whitespace or comma
/// separated; lines starting with '#' or ';' and blank lines ignored). Unsorted rows are
/// sorted. `name` defaults to the file stem. Errors name the file.
Result<Filter> LoadFilter(const std::string& path, const std::string& name = "");

/// \brief Built-in analytic filter curves (not the official curves).
///
/// "F275W", "F336W", "F438W", "F555W", "F814W" (HST WFC3/UVIS; also accepted with a
/// "WFC3_UVIS_" or "HST_WFC3_UVIS_" prefix, any case): smooth logistic-edged band-passes with
/// a linear tilt, whose six parameters were fitted by us to the shape of the public UVIS2
/// total-throughput curves; their pivot wavelengths agree with STScI's to better than 0.2 %
/// and their peak throughputs are realistic. "JOHNSON_B" / "B" and "JOHNSON_V" / "V": rough
/// analytic Johnson bands (B: 3910-4890 A half-power, V: 5075-5925 A half-power), adequate
/// for colours and M/L_V trends, not for calibrated magnitudes.
/// Sampled at 1 A over the non-negligible range. Error for unknown names (lists the known).
Result<Filter> BuiltinFilter(const std::string& name);

/// Names accepted by BuiltinFilter (canonical spelling).
std::vector<std::string> BuiltinFilterNames();

/// \brief Precomputed synthetic photometry of many spectra on one wavelength grid.
///
/// Holds, for each filter, the weights w_i such that <f_lambda> = sum_i w_i f_i (same result
/// as MeanFluxDensity). Apply() costs O(sum of filter widths in pixels).
class BandpassOperator {
 public:
  /// An operator with no bands.
  BandpassOperator() = default;
  /// The weights of each filter on the grid `wave` (Angstrom, increasing). An error naming the
  /// filter and the grid if a filter is not covered by `wave` (see MeanFluxDensity).
  static Result<BandpassOperator> Make(const std::vector<Filter>& filters, std::span<const double> wave,
                                       double min_coverage = 0.99);
  size_t n_bands() const { return first_.size(); }
  const std::vector<double>& pivots() const { return pivots_; }
  /// Mean flux densities (n_bands values) of one spectrum on the grid given at construction.
  /// Wrong sizes are a programming error: cubeflow::Error.
  void Apply(std::span<const double> f_lambda, std::span<double> out) const;
  void Apply(std::span<const float> f_lambda, std::span<double> out) const;

 private:
  template <typename T>
  void ApplyImpl(std::span<const T> f_lambda, std::span<double> out) const;
  size_t n_wave_ = 0;
  std::vector<size_t> first_, length_;
  std::vector<std::vector<double>> weights_;
  std::vector<double> pivots_;
};

}  // namespace cubeflow::sim
