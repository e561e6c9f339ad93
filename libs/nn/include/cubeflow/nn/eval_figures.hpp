#pragma once
/// \file eval_figures.hpp
/// \brief The PNG figures of `cubeflow evaluate` (docs/cnn.md, docs/sbi.md), drawn with
/// cubeflow::plot. Plain C++ (no libtorch): the evaluation code computes the numbers, these
/// functions only draw them. Every function writes its PNG atomically (temporary file +
/// rename) and returns what it drew where.
///
/// * CNN (Galceran et al. 2026): predicted versus true eq. 6-7 means as 2-D histograms (Fig. 5),
///   the mean relative mass-fraction error per age bin (Fig. 4), bias and scatter versus S/N
///   (Fig. 8).
/// * SBI: expected-coverage curves, SBC rank histograms, posterior medians versus truth.

#include <cstdint>
#include <string>
#include <vector>

#include "cubeflow/plot/figure.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::evalfig {

/// Cell sizes (pixels) of the figures: one figure is cols x cell width wide and rows x cell
/// height plus its title tall.
inline constexpr int kPanelWidth = 600, kPanelHeight = 460;          ///< density and line panels
inline constexpr int kGridPanelWidth = 400, kGridPanelHeight = 330;  ///< per-parameter grids

/// \brief A figure that was written.
struct Written {
  std::string path;
  int width = 0, height = 0;
  std::vector<plot::PanelLayout> layout;  ///< one entry per drawn panel, row by row
  std::vector<std::string> panels;        ///< what each layout entry shows (panel titles)
};

/// \brief One panel of a predicted-versus-true figure.
struct TruthPrediction {
  std::string title;       ///< panel title, e.g. "LW log age"
  std::string quantity;    ///< axis quantity, e.g. "log_{10}(age/yr)": axes read "true ..." and "<predicted> ..."
  std::vector<double> truth, predicted;  ///< pairs; non-finite ones are skipped
  std::string annotation;  ///< boxed text in the upper left (e.g. bias / scatter / N); '\n' separates lines
  std::string empty_note;  ///< shown instead of the panel when no pair is finite
};

/// Number of 2-D histogram bins per axis for n points: sqrt(n) / 1.5, between 12 and 60.
int DensityBins(int64_t n);

/// Predicted versus true as 2-D histograms (log colour scale, one colour bar per panel) with the
/// 1:1 line, on equal axes spanning the 0.1-99.9 % range of both, in square data areas. `cols` panels per row;
/// `predicted_word` names the y axis ("predicted", "posterior median").
Result<Written> WriteTruthVsPrediction(const std::string& path, const std::string& title,
                                       const std::vector<TruthPrediction>& panels, int cols,
                                       const std::string& predicted_word = "predicted",
                                       int cell_width = kPanelWidth, int cell_height = kPanelHeight);

/// \brief Per age bin: mean (true - predicted) mass fraction over the mean true fraction and the
/// standard deviation of that ratio; mean true and predicted fractions (Fig. 4).
struct AgeBinErrors {
  std::vector<double> age_gyr;              ///< bin centres, Gyr (> 0)
  std::vector<double> rel_error, rel_sd;    ///< NaN where the mean true fraction is 0
  std::vector<double> mean_true, mean_pred;
};

/// Two panels: the relative error with a +-1 sigma band and a zero line against the log age-bin
/// centre; the mean true and predicted mass fractions (log y) per age bin.
Result<Written> WriteAgeBinErrors(const std::string& path, const std::string& title, const AgeBinErrors& bins);

/// \brief One quantity of the S/N sweep: bias and scatter at each S/N of the sweep.
struct SnrQuantity {
  std::string label;  ///< legend entry, e.g. "LW"
  bool age = true;    ///< age column (true) or [Z/H] column (false)
  std::vector<double> bias, scatter;
};

/// 2 x 2 panels (Fig. 8): bias (top) and scatter (bottom) against S/N (log axis) for the ages
/// (left) and [Z/H] (right); bias panels get a zero line. `bias_label` names the bias statistic.
Result<Written> WriteSnrTrends(const std::string& path, const std::string& title, const std::vector<double>& snr,
                               const std::vector<SnrQuantity>& quantities,
                               const std::string& bias_label = "bias (true − predicted)");

/// Expected coverage: left, the fraction of truths inside the central credible interval against
/// the nominal level (one series per parameter, the diagonal, the 95 % binomial range of a
/// calibrated posterior with `n_objects` truths); right, empirical minus nominal with that range.
/// A last title line explains the dashed line and the grey range.
Result<Written> WriteCoverage(const std::string& path, const std::string& title, const std::vector<std::string>& names,
                              const std::vector<double>& levels, const std::vector<std::vector<double>>& coverage,
                              int64_t n_objects);

/// SBC rank histograms, one panel per parameter (5 per row): counts per normalised-rank bin,
/// the expected count of uniform ranks and its pointwise 99 % binomial range; chi^2 against
/// uniform in each title (`chi2` may be empty).
Result<Written> WriteSbcRanks(const std::string& path, const std::string& title, const std::vector<std::string>& names,
                              const std::vector<std::vector<int64_t>>& ranks, const std::vector<double>& chi2);

/// Parameter names in plot markup: "t50" -> "t_{50}", "mh" -> "[M/H]", others unchanged.
std::string DisplayName(const std::string& name);

}  // namespace cubeflow::evalfig
