#pragma once
/// \file history.hpp
/// \brief The history vector of the diffusion prior (issue #19, docs/diffusion.md): 16 log10
/// formed-mass fractions and 16 [Z/H], one per age bin of the CNN and SBI; its training set drawn
/// from the simulator's prior; the quantities derived from it (mass-assembly times); z-scoring.
///
/// The differentiable forward model (libs/nn/src/torch_forward.hpp, TorchForwardModel::Render)
/// renders exactly this vector. No libtorch here. All functions are pure and thread-safe.

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/observables.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::diffusion {

constexpr int kNumBins = sim::kNumAgeBins;
/// x = (log10 m_0 .. log10 m_15, [Z/H]_0 .. [Z/H]_15).
constexpr int kHistoryDim = 2 * kNumBins;
/// Floor of log10 mass fraction for (nearly) empty bins. At 1e-10 of the mass the young bins
/// change the normalised spectrum and band fluxes of even an all-old population by < 1e-4
/// relative (TorchForward.LogMassFloorIsInvisible; at 1e-8 F275W moves by 1e-3), far below any
/// noise.
constexpr double kLogMassFloor = -10.0;
/// Log10 masses of sampled histories at or below kLogMassFloor + this are empty bins (set to the
/// floor): the prior's samples (PriorModel::Sample) and the posterior's (PosteriorSampler).
constexpr double kFloorSnap = 0.5;

using History = std::array<double, kHistoryDim>;

/// The vector of a history's labels: log10 max(mass_frac, 10^kLogMassFloor) (fractions of the
/// formed mass; any scale: they are normalised first) and [Z/H] per bin.
History HistoryFromLabels(const float* mass_frac, const float* zh);

/// Formed-mass fractions (sum 1) of a vector.
std::array<double, kNumBins> MassFractions(const History& x);

/// \brief Look-back time span (Gyr) over which the parametrisation spreads the mass of bin `b`
/// at a constant rate: the bin, cut at the Big Bang (`t_universe`, sim::CosmicTimeGyr(0)). The
/// oldest bin reaches back to 17.8 Gyr (the oldest E-MILES template), 4 Gyr before the Big Bang
/// of the 13.47 Gyr cosmology; stars that old do not exist, and spreading the bin's mass over it
/// would put t10 Gyr before the Big Bang. A bin wholly before the Big Bang (another cosmology)
/// keeps its full span.
std::array<double, 2> BinSpan(int b, double t_universe);

/// \brief Weight of time step j in bin b, [kNumBins][grid.size()] row-major: the fraction of
/// BinSpan(b) that step j covers (rows sum to 1). The mass of step j is sum_b m_b w[b][j]; this is
/// how TorchForwardModel::Render and BinnedFromBins expand bin masses.
std::vector<double> BinToStepWeights(const sim::TimeGrid& grid, double t_universe);

/// \brief Cosmic times (Gyr after the Big Bang) by which 10, 20 ... 90 % of the mass had formed,
/// for bin masses formed at a constant rate over BinSpan(b, t_universe) (the parametrisation of
/// the forward model).
std::array<double, sim::kNumMassPercentiles> AssemblyTimes(const std::array<double, kNumBins>& mass_frac,
                                                           double t_universe);

/// \brief The prior's training set: history vectors of objects drawn from the simulator's prior
/// mixture (`config.sfh`: PCHIP, skew-normal, bursts, Dense Basis, with the eq.-2 metallicity
/// histories). Object i is the history of row i of `cubeflow simulate library` with the same
/// config and seed (the same Rng stream and draws). Formed mass (what Render weights), whatever
/// spectrum.mass_label says.
History DrawPriorHistory(const sim::SfhPrior& prior, const sim::TimeGrid& grid, uint64_t seed, int64_t index);

/// \brief Per-component z-scoring of history vectors (paper 001 z-scores its training set).
struct HistoryScaler {
  History mean{}, sd{};
  /// Mean and standard deviation (sd floored at 1e-6) of `rows`; an error if empty. With
  /// `empty_at_or_below` given, the log10-mass components take their mean and sd from the values
  /// above it only (the non-empty bins): the atom of empty bins at kLogMassFloor, ~8 dex below
  /// the rest, otherwise dominates their sd and squeezes the non-empty masses into a small
  /// fraction of the standardised range (docs/diffusion.md). A component with fewer than two such
  /// values keeps its moments over all rows.
  static Result<HistoryScaler> Fit(const std::vector<History>& rows,
                                   double empty_at_or_below = -std::numeric_limits<double>::infinity());
  History Standardise(const History& x) const;
  History Restore(const History& z) const;
};

/// \brief The check that samples of the prior reproduce its training set (issue #19 item 1):
/// two-sample Kolmogorov-Smirnov statistics of every component (marginals), of the mass-assembly
/// times t10..t90 (AssemblyTimes) and of two metallicity-history shapes (the mass-weighted [Z/H],
/// and the enrichment: [Z/H] of the youngest bin holding >= 1 % of the mass minus that of the
/// oldest). A marginal-only check would pass a sampler that gets every component right and their
/// joint wrong; the assembly times and the enrichment do not.
struct PriorComparison {
  std::array<double, kHistoryDim> ks_component{};
  std::array<double, sim::kNumMassPercentiles> ks_assembly{};
  double ks_mw_zh = 0, ks_enrichment = 0;
  double max_ks = 0;       ///< the largest of all 43 statistics
  double critical = 0;     ///< KS critical value at a family-wise 1 % (Bonferroni over the 43)
  bool pass() const { return max_ks <= critical; }
};
/// Compares `samples` with `reference` (e.g. prior samples with the training set); an error if
/// either has fewer than 20 rows.
Result<PriorComparison> ComparePriorSamples(const std::vector<History>& reference, const std::vector<History>& samples,
                                            double t_universe);
/// Two-sample Kolmogorov-Smirnov statistic (largest distance between the empirical CDFs).
double KsStatistic(std::vector<double> a, std::vector<double> b);

}  // namespace cubeflow::diffusion
