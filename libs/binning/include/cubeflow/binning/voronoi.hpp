#pragma once
/// \file voronoi.hpp
/// \brief Adaptive spatial binning to a target signal-to-noise: bin accretion followed by a
/// centroidal (CVT, Cappellari & Copin 2003) or weighted (WVT, Diehl & Statler 2006) Voronoi
/// tessellation.
///
/// Independent of the cubeflow runtime: it bins arbitrary 2-D points (spaxel centres in any
/// unit) with a signal and a 1-sigma noise each. Spatial look-ups go through a k-d tree with
/// per-node live counts, so accretion and every tessellation step cost O(N log N) instead of
/// the O(N^1.5)-O(N^2) of a direct implementation; a brute-force mode is kept as a reference.
///
/// Thread-safety: VoronoiBin is reentrant (no global state); it uses TBB to parallelise the
/// tessellation steps.

#include <cstdint>
#include <string>
#include <vector>

namespace cubeflow::binning {

/// \brief Which tessellation refines the accreted bins.
enum class VoronoiMethod {
  kCvt,  ///< centroidal Voronoi tessellation, generators at (S/N)^4-weighted centroids (equal mass)
  kWvt,  ///< weighted Voronoi tessellation, per-bin scale length sqrt(area / (S/N))
};

/// \brief Options of VoronoiBin.
///
/// The defaults are those of the `binning.voronoi` node, whose parameters take them from here
/// (one default each): they suit MUSE cubes. For points with independent noise set
/// covariance_alpha = 0.
struct VoronoiOptions {
  /// S/N every bin should reach (after the covariance correction).
  double target_snr = 35.0;
  /// Noise of a bin of N points = sqrt(sum noise^2) * (1 + covariance_alpha * log10 N);
  /// 0 = uncorrelated noise. 1.07 (the default) is the MUSE value.
  double covariance_alpha = 1.07;
  VoronoiMethod method = VoronoiMethod::kCvt;
  /// Maximum number of tessellation (Lloyd) iterations; 0 = accretion only.
  int max_iter = 30;
  /// Iterations stop when the RMS generator displacement falls below this (in pixels).
  double tolerance = 0.02;
  /// Lloyd iterations do not improve the S/N uniformity monotonically: the best tessellation
  /// (RMS of S/N/target - 1 over multi-point bins, plus the fraction of bins below
  /// min_fraction) is kept, and iterations stop after `patience` without improvement.
  int patience = 5;
  /// Distance between neighbouring points (same unit as x, y); <= 0 = smallest distance
  /// between two distinct points.
  double pixel_size = 0.0;
  /// Bins ending below min_fraction * target_snr are dissolved into their neighbours.
  double min_fraction = 0.8;
  /// Accretion stops growing a bin beyond this roundness (R_max / R_eff - 1).
  double max_roundness = 0.3;
  /// Before the tessellation, split bins whose S/N exceeds 1.5 * target into as many parts as
  /// can each reach the target (bins that absorbed many leftover points at ragged edges).
  bool split_bins = true;
  /// false: brute-force nearest-neighbour searches (reference mode, O(N * bins); slow).
  bool spatial_index = true;
};

/// \brief Result of VoronoiBin. Bins are numbered 0..nbins-1 in accretion order (the first
/// one holds the highest-S/N point).
struct VoronoiResult {
  std::vector<int32_t> bin;        ///< per input point: its bin (every point has one)
  std::vector<double> xnode, ynode;///< per bin: final Voronoi generator
  std::vector<double> xbar, ybar;  ///< per bin: signal-weighted centroid (geometric if signal <= 0)
  std::vector<int64_t> nspax;      ///< per bin: number of points
  std::vector<double> signal;      ///< per bin: summed signal
  std::vector<double> noise;       ///< per bin: noise including the covariance correction
  std::vector<double> snr;         ///< per bin: signal / noise
  double pixel_size = 0;           ///< pixel size used
  int accretion_bins = 0;          ///< good bins after accretion
  int iterations = 0;              ///< tessellation iterations run
  int split = 0;                   ///< bins added by splitting rich bins
  int dissolved = 0;               ///< bins dissolved for ending below min_fraction * target
  /// True when even all points together do not reach min_fraction * target: they form one bin.
  bool single_bin = false;

  size_t nbins() const { return nspax.size(); }
};

/// \brief Noise of a bin: sqrt(sum_var) * (1 + alpha * log10(n)).
double BinNoise(double sum_var, int64_t n, double alpha);

/// \brief Bins points (x[i], y[i]) with signal[i] and 1-sigma noise[i] (> 0, finite) to
/// options.target_snr. Throws std::invalid_argument on inconsistent sizes, non-finite
/// coordinates or signal, non-positive noise, or a non-positive target.
VoronoiResult VoronoiBin(const std::vector<double>& x, const std::vector<double>& y,
                         const std::vector<double>& signal, const std::vector<double>& noise,
                         const VoronoiOptions& options);

/// \brief Quality figures of a binning, for tests and benchmarks.
struct VoronoiQuality {
  /// std(snr / target) over bins of >= 2 points (as vorbin reports it: single points above
  /// the target cannot be binned further).
  double scatter = 0;
  int64_t multi_bins = 0;    ///< number of bins with >= 2 points
  double min_ratio = 0;      ///< min(snr / target)
  double max_ratio = 0;      ///< max(snr / target)
  double max_roundness = 0;  ///< max over bins with >= 3 points of R_max / R_eff - 1
  double mean_roundness = 0; ///< mean of the same
};
/// \brief Computes VoronoiQuality of a result for the points it was made from.
VoronoiQuality EvaluateBinning(const std::vector<double>& x, const std::vector<double>& y,
                               const VoronoiResult& r, double target_snr);

}  // namespace cubeflow::binning
