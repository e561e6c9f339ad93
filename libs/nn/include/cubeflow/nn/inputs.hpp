#pragma once
/// \file inputs.hpp
/// \brief Input conventions of a trained network (wavelength grid, rest frame, normalisation
/// window, photometric bands) and the checks that bin spectra and photometry meet them, with
/// messages that name the bin, the field, both values and the fix.
///
/// Shared by the inference nodes; the wording follows inference.cnn's checks (docs/cnn.md). The
/// messages start with the bin ("spectrum of bin 7: ..."): the runner prefixes the node. No libtorch here.

#include <cstdint>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"

namespace cubeflow::inputs {

/// \brief What a model expects of its inputs (copied from its metadata).
struct InputConventions {
  WavelengthAxis wave;                       ///< model grid (linear, Angstrom)
  bool rest_frame = true;                    ///< inputs must be rest-framed
  double norm_min = 5300, norm_max = 5500;   ///< normalisation window, Angstrom
  std::vector<std::string> bands;            ///< photometric bands the model uses, in its order
  std::vector<double> pivots;                ///< Angstrom, one per band
};

/// "" if `s` matches the conventions, else the message: wavelength grid (n, start to 1 % of a
/// pixel, step so that the grid drifts by < 1 % of a pixel, linear/log, air/vacuum), rest frame,
/// normalisation window from `meta` norm_min/norm_max, mean flux in the window = 1 within
/// `norm_tolerance`. `who` is the node type, named in the advice ("put spectral.restframe before
/// <who>") but not as a prefix (the runner adds it); `metadata_path` is the model metadata file.
std::string CheckSpectrum(const std::string& who, const std::string& metadata_path, const InputConventions& c,
                          const Spectrum& s, double norm_tolerance);

/// "" if `p` has every band of the conventions (any order, pivots within 1 %); fills `order`
/// (model band -> index in p.bands).
std::string CheckPhotometry(const std::string& who, const std::string& metadata_path, const InputConventions& c,
                            const Photometry& p, std::vector<int>& order);

/// Copies the first `nw` flux values of `s` to `dst`, replacing masked or non-finite pixels by
/// linear interpolation between the nearest good ones (constant beyond the ends). Returns the
/// number of bad pixels (all `nw` when none is good; `dst` is then 1).
int64_t CopyInterpolated(const Spectrum& s, int64_t nw, float* dst);

/// Noise level of a normalised spectrum as the models see it: 1 / median(sigma) over the good
/// pixels in [norm_min, norm_max] (sigma = sqrt(variance), or the given 1-sigma errors), i.e.
/// the S/N per pixel at flux 1. NaN when there is no usable pixel.
double NoiseSnr(const Spectrum& s, double norm_min, double norm_max);
double NoiseSnrFromSigma(const WavelengthAxis& wave, const float* sigma, double norm_min, double norm_max);

}  // namespace cubeflow::inputs
