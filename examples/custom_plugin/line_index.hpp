#pragma once
/// \file line_index.hpp
/// \brief custom.line_index: a per-bin stream node (one spectrum in, one record out, per bin).
///
/// Measures an absorption-line index (Lick/IDS definition: a central band and a pseudo-continuum
/// through the mean fluxes of a blue and a red side band) and its error from the variance.

#include <string>
#include <vector>

#include <cubeflow/data.hpp>
#include <cubeflow/node.hpp>
#include <cubeflow/spec.hpp>

namespace custom {

/// \brief Band definition of an absorption index; wavelengths in Angstrom, in air, rest frame.
struct IndexBands {
  std::string name;
  double band_lo = 0, band_hi = 0;  ///< central (feature) band
  double blue_lo = 0, blue_hi = 0;  ///< blue pseudo-continuum band
  double red_lo = 0, red_hi = 0;    ///< red pseudo-continuum band
  bool magnitude = false;           ///< index in magnitudes (molecular bands), else in Angstrom
};

/// The Lick/IDS indices between 4800 and 6300 Angstrom (Trager et al. 1998, ApJS 116, 1,
/// Table 2): Hbeta, Fe5015, Mg1, Mg2, Mgb, Fe5270, Fe5335, Fe5406, Fe5709, Fe5782, NaD,
/// TiO1, TiO2.
const std::vector<IndexBands>& LickIndices();
/// The Lick index named `name` (as in LickIndices()), or null.
const IndexBands* FindLickIndex(const std::string& name);

/// \brief One measured index.
struct IndexMeasurement {
  double value = 0;          ///< equivalent width (Angstrom, rest frame) or magnitude; NaN if not measurable
  double error = 0;          ///< 1-sigma error from the variance (NaN without variance)
  double good_fraction = 0;  ///< smallest fraction of the three bands covered by good pixels
};

/// Measures `bands` on `spectrum` (Trager et al. 1998 eq. 1-3):
/// continuum C(l) = straight line through the mean fluxes of the blue and red bands; EW = integral over the central band of (1 - F/C) dl; magnitude index
/// = -2.5 log10(mean of F/C over the central band). Pixels count with their overlap with each
/// band (fractional pixels at the band edges). Bad pixels (mask set, non-finite flux or
/// variance, negative variance) are left out: each band's mean is over its good part, placed
/// at the mean wavelength of that part (about the midpoint when all pixels are good).
/// Observed-frame spectra (rest_frame = false) have their bands moved by (1 + z) and the
/// equivalent width divided by (1 + z); vacuum spectra (wave.air = false) get the bands
/// converted to vacuum. The error propagates the variance of every pixel through the
/// pseudo-continuum and the band integral to first order, pixels taken as independent.
/// value is NaN if a band has no good pixel or the continuum is not positive in the band.
/// Throws cubeflow::Error if a band lies outside the spectrum's wavelength range.
IndexMeasurement MeasureIndex(const cubeflow::Spectrum& spectrum, const IndexBands& bands, double z = 0.0);

/// \brief Parameters of custom.line_index.
struct LineIndexOptions {
  std::string index = "Mgb";     ///< a Lick index name, or "custom" for band/blue/red
  std::vector<double> band;      ///< custom central band [lo, hi], Angstrom (air, rest frame)
  std::vector<double> blue;      ///< custom blue continuum band [lo, hi]
  std::vector<double> red;       ///< custom red continuum band [lo, hi]
  bool magnitude = false;        ///< custom index in magnitudes instead of Angstrom
  std::string name;              ///< record field; "" = lower-case index name ("mgb")
  double z = 0.0;                ///< redshift of observed-frame spectra
  double min_good_fraction = 0.8;  ///< below this coverage by good pixels the index is NaN
};

/// \brief Measures one index per bin spectrum and emits it as a Record with `<name>` and
/// `<name>_err`. Stateless after construction: Process runs concurrently on many bins.
class LineIndexNode final : public cubeflow::Node {
 public:
  using Options = LineIndexOptions;
  static cubeflow::NodeSpec Spec();
  explicit LineIndexNode(const Options& options);
  void Process(cubeflow::ProcessContext& ctx) override;

 private:
  Options options_;
  IndexBands bands_;
  std::string field_;  ///< record field name
};

}  // namespace custom
