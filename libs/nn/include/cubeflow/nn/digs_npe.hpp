#pragma once
/// \file digs_npe.hpp
/// \brief Neural posterior estimation of the five DIGS parameters (papers 002/003; docs/digs.md,
/// "NPE"): an MLP encoder of the standardised log10 flux (138 pixels) and the conditional spline
/// flow of the SBI model (sbi_net.hpp), trained end to end on a DIGS library
/// (cubeflow/sim/digs_library.hpp) by `cubeflow train CONFIG` with `kind: digs`, evaluated by
/// `cubeflow evaluate MODEL LIBRARY`.
///
/// Input transform: x_i = (log10 f_i - mu_i) / s_i, mu and s per pixel from the training rows.
/// The log keeps the amplitude (mass shifts every pixel by the same log10 M) and turns the
/// simulator's multiplicative 5 % noise into additive noise of 0.0217 dex at every flux level.
/// Parameter transform: v = (log_mass, log_z, dust, t_age, log10 tau), u = (v - lo) / (hi - lo)
/// on the prior box, y = (logit(u) - m) / s: samples never leave the prior's support.
///
/// This header does not include libtorch.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::digs {

inline constexpr int kNumParams = 5;

/// Names as printed: log_mass, log_z, dust, t_age, tau (tau in Gyr in every printed figure).
const std::array<std::string, kNumParams>& PrintedNames();

/// \brief Calibration and skill of one parameter over a test set (printed coordinates).
struct ParamCheck {
  double r2 = 0, spearman = 0;   ///< posterior median against the truth
  double bias = 0, scatter = 0;  ///< mean and sd of (median - truth)
  double cov68 = 0, cov95 = 0;   ///< fraction of truths in the central 68 / 95 % intervals
  double sbc_chi2 = 0;           ///< chi^2 of the SBC rank histogram (sbc_bins bins)
  int sbc_bins = 20;
  double width_ratio = 0;        ///< median (q84 - q16) over the prior's (q84 - q16)
  double median_hw = 0;          ///< median (q84 - q16) / 2
};

/// Checks of `n` objects: `samples` n x S x 5 and `truth` n x 5, both in printed coordinates
/// (tau in Gyr); `prior_lo` / `prior_hi` the Table 1 box (tau in Gyr, log-uniform).
std::vector<ParamCheck> CheckPosteriors(const std::vector<float>& samples, int64_t n, int64_t s,
                                        const std::vector<double>& truth, const std::array<double, kNumParams>& prior_lo,
                                        const std::array<double, kNumParams>& prior_hi);

/// \brief The verdict on a posterior estimator: calibrated (68 / 95 % coverage within 3 binomial
/// sd of nominal, SBC chi^2 below its 0.1 % critical value for 19 degrees of freedom, 43.8) and
/// informative (log_mass and dust posteriors narrower than half the prior's, R^2 of their
/// medians > 0.5). A sampler returning the prior is calibrated but not informative: it fails.
/// Returns OK or an error listing each failed condition.
Status Verdict(const std::vector<ParamCheck>& checks, int64_t n);

/// True when the YAML file says `kind: digs` (a training configuration or model metadata).
bool IsDigsYaml(const std::string& path);

/// `cubeflow train CONFIG [--resume] [--threads N]` for `kind: digs`; exit code.
int TrainMain(int argc, char** argv);
/// `cubeflow evaluate MODEL LIBRARY [--samples S] [--seed K] [--mcmc N] [--threads N] [--rows N]`
/// for a DIGS model; exit code (1 also when the Verdict fails).
int EvaluateMain(int argc, char** argv);

}  // namespace cubeflow::digs
