#pragma once
/// \file templates.hpp
/// \brief Stellar templates prepared for a kinematic fit: an SSP library (any set the forward
/// model reads, or the built-in model) trimmed to the fit window plus a velocity margin,
/// convolved to the data's line-spread function, resampled onto a log-lambda grid and
/// normalised.
///
/// Frames: the data's LSF is given in the observed frame (an instrument); at rest wavelength
/// lambda the data's resolution is FWHM_obs(lambda (1 + z_sys)) / (1 + z_sys). Templates are
/// broadened by sqrt(FWHM_data^2 - FWHM_templates^2) (Gaussian, varying with wavelength) on
/// their own grid, then rebinned (flux-conserving) onto ln(lambda) pixels of `velscale` km/s,
/// as GIST/nGIST prepare MILES templates for pPXF, except that the Gaussian is narrowed by the
/// variance the rebinning adds (a box of one log pixel: (lambda d ln lambda)^2 / 12), so the
/// result has the data's resolution rather than that plus one template pixel. Each template is divided by its mean over
/// the fit window, so template weights are light fractions there.
///
/// Thread-safety: a TemplateSet is immutable after PrepareTemplates and shared by all fits.

#include <Eigen/Dense>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/spectral/lsf.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::kinematics {

/// \brief Templates on a log-lambda grid, ready for LosvdFitter.
struct TemplateSet {
  std::string source;          ///< library description (name, family)
  double ln_lambda0 = 0;       ///< ln(lambda / Angstrom) of pixel 0's centre (rest frame, air)
  double velscale = 0;         ///< km/s per pixel: c * d ln(lambda)
  int64_t npix = 0;
  Eigen::MatrixXf flux;        ///< npix x n_templates, column j = template j, mean 1 over the window
  std::vector<double> log_age; ///< log10(age / yr) per template
  std::vector<double> metal;   ///< [M/H] per template
  double wave_min = 0, wave_max = 0;  ///< the fit window they were prepared for (rest, Angstrom)
  double margin_kms = 0;       ///< velocity margin covered beyond the window on each side
  double instr_sigma_kms = 0;  ///< the data's instrumental sigma at the window centre (rest frame)
  bool coarser = false;        ///< templates coarser than the data somewhere in the window
  double deficit_sigma_kms = 0;///< if coarser: the resolution deficit (Gaussian sigma, km/s) at the window centre

  int n() const { return static_cast<int>(flux.cols()); }
  /// ln(lambda) of pixel t's centre.
  double LnLambda(double t) const { return ln_lambda0 + t * velscale / 299792.458; }
};

/// \brief How to prepare a TemplateSet.
struct TemplateOptions {
  double wave_min = 4800, wave_max = 5500;  ///< rest-frame fit window, Angstrom
  double z_sys = 0;                         ///< systemic redshift (for the data's rest-frame LSF)
  spectral::Lsf data_lsf = spectral::Lsf::Bacon2017();  ///< the data's LSF, observed frame
  /// Width (Angstrom, observed frame) of the pixels the data's LSF was measured on, if its FWHM
  /// includes them (a Gaussian fitted to sky or arc lines of a pixelised cube: MUSE's 1.25 A).
  /// The fitter integrates the model over each data pixel itself, so that box, variance
  /// pixel^2 / 12, is taken out of the LSF first. 0: the LSF is the profile before pixelisation
  /// (as `cubeflow simulate` renders it).
  double data_lsf_pixel = 0;
  /// The templates' LSF (rest frame); unset: SspGrid::fwhm (an error if that is 0).
  std::optional<spectral::Lsf> template_lsf;
  /// Template pixel in km/s; 0: half the smallest instrumental sigma in the window (so the
  /// LSF-matched templates are well sampled), at most 40 km/s.
  double velscale = 0;
  /// Velocity range the templates must cover beyond the window on each side (km/s): the
  /// largest |V| plus 6.5 times the largest sigma the fit may try.
  double margin_kms = 8000;
  /// Accept templates coarser than the data (sets TemplateSet::coarser); otherwise that is an
  /// error.
  bool allow_coarser = false;
};

/// Prepares the templates of `grid` for fits in [wave_min, wave_max]. Errors say what to change:
/// a library that does not cover the window plus margin, templates coarser than the data
/// (unless allowed), an unknown template resolution, an empty grid.
Result<std::shared_ptr<const TemplateSet>> PrepareTemplates(const sim::SspGrid& grid, const TemplateOptions& options);

}  // namespace cubeflow::kinematics
