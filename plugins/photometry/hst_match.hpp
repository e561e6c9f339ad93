#pragma once
/// \file hst_match.hpp
/// \brief `photometry.hst_match`: HST images -> per-bin flux densities on the MUSE binning.
///
/// The pieces (unit conversion, PSF transforms and matching kernel, normalised separable
/// smoothing, polygon-overlap resampling, the band pipeline and the per-bin sums) are declared
/// here so that the tests can reach them. See README.md in this directory for the method.
/// Every function is thread-safe (pure, or owning its inputs); ProcessBand parallelises
/// internally with oneTBB.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/fits/image_io.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::photometry {

inline constexpr double kFwhmToSigma = 2.3548200450309493;  ///< FWHM / sigma of a Gaussian
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ------------------------------------------------------------------------------------------
// Units

/// \brief What one raw pixel value is.
enum class PixelUnit {
  kUnknown,
  kCountRate,    ///< counts (e-, DN) per second in the pixel: times PHOTFLAM
  kCounts,       ///< counts in the pixel: / EXPTIME, times PHOTFLAM
  kFlam,         ///< erg/s/cm^2/A in the pixel
  kFlamArcsec2,  ///< erg/s/cm^2/A/arcsec^2 (surface brightness)
  kJansky,       ///< Jy in the pixel
  kMJySr,        ///< MJy/sr (surface brightness)
};

/// \brief A parsed unit: raw * scale is in `unit`.
struct UnitSpec {
  PixelUnit unit = PixelUnit::kUnknown;
  double scale = 1.0;      ///< numeric prefix (e.g. 1e-20 from "10**(-20) erg/s/cm2/A")
  bool electrons = false;  ///< counts are electrons (a Poisson term applies)
};

/// Parses a BUNIT value: ELECTRONS/S, COUNTS/S, CPS, DN/S, ELECTRONS, COUNTS, DN, erg/s/cm2/A
/// (many spellings, optional numeric prefix such as 1e-20 or 10**(-20), optional /arcsec2),
/// Jy, mJy, uJy, nJy (per pixel) and MJy/sr. Returns kUnknown for anything else (the caller
/// reports it); an empty string gives kUnknown too.
UnitSpec ParseBunit(const std::string& bunit);
/// Name of a unit (for messages).
std::string UnitName(PixelUnit u);

/// \brief How raw pixel values become flux densities (erg/s/cm^2/A in the pixel).
struct Calibration {
  double factor = 0;        ///< raw value * factor = erg/s/cm^2/A in the pixel
  double pivot = 0;         ///< Angstrom
  double exptime = 0;       ///< s (0 = unknown)
  UnitSpec unit;            ///< what the raw values are
  std::string description;  ///< how the factor was obtained (for logs)
};

/// \brief Calibration choices of one band.
struct CalibrationOptions {
  std::string band;
  std::string unit = "auto";  ///< auto (BUNIT) | count_rate | counts | flam | flam_arcsec2 | jy | mjy_sr
  double unit_scale = 1.0;    ///< extra factor on the raw values (with an explicit unit)
  double zeropoint = kNaN;    ///< AB magnitude of 1 raw unit per second; NaN = use PHOTFLAM
  double pivot = kNaN;        ///< Angstrom; NaN = PHOTPLAM, else the built-in filter curve
  double pixel_area_arcsec2 = 0;  ///< of the image's pixels (surface-brightness units)
};

/// Works out the calibration of an opened image from its header (BUNIT, PHOTFLAM, PHOTPLAM,
/// EXPTIME; image HDU first, then the primary) and the options. Errors name the file and say
/// what to add or set (missing PHOTFLAM, unknown BUNIT, counts without EXPTIME, ...).
Result<Calibration> Calibrate(const fits::ImageReader& image, const CalibrationOptions& opt);

/// AB magnitude zero point -> erg/s/cm^2/A of one raw unit (per second) at pivot (Angstrom).
double ZeropointToFlam(double zp_ab, double pivot);

// ------------------------------------------------------------------------------------------
// PSFs and kernels

enum class PsfShape { kGaussian, kMoffat };

/// Moffat alpha from FWHM and beta: FWHM = 2 alpha sqrt(2^(1/beta) - 1).
double MoffatAlpha(double fwhm, double beta);
/// 2-D Fourier transform of a circular, unit-integral PSF at radial frequency q (cycles per
/// unit of `fwhm`): Gaussian exp(-2 pi^2 sigma^2 q^2); Moffat
/// 2^(2-b)/Gamma(b-1) (2 pi alpha q)^(b-1) K_(b-1)(2 pi alpha q). 1 at q = 0.
double PsfTransform(PsfShape shape, double fwhm, double beta, double q);
/// Radius (same unit as fwhm) outside which the PSF holds less than `frac` of its flux.
double PsfRadius(PsfShape shape, double fwhm, double beta, double frac);

/// Sampled 1-D Gaussian, normalised to unit sum, half-width ceil(4 sigma) (sigma in pixels > 0).
std::vector<double> GaussianKernel1D(double sigma);

/// \brief Normalised separable smoothing of a block of rows (NaN = missing):
/// out = (k (x) (v m)) / (k (x) m) at valid pixels, NaN where the input is NaN. `in` holds
/// `nrows` x `ncols` values; rows [row0, row0 + nout) are written to `out` (nout x ncols).
/// Pixels beyond the block count as missing, so the caller passes rows of overlap (the kernel
/// half-width) above and below. kx, ky: odd-length kernels. Parallel over rows and columns.
void SmoothBlock(const std::vector<double>& in, int64_t nrows, int64_t ncols, const std::vector<double>& kx,
                 const std::vector<double>& ky, int64_t row0, int64_t nout, std::vector<double>& out);

/// \brief Local geometry needed to build the matching kernel (all at the MUSE field centre).
struct KernelGeometry {
  /// d(sky offset, arcsec; east, north) / d(MUSE pixel): column j = offset of one pixel along axis j.
  double muse_cd[2][2] = {{-0.2, 0}, {0, 0.2}};
  /// d(MUSE pixel) / d(HST pixel): column j = one HST pixel step along HST axis j, in MUSE pixels.
  double hst_to_muse[2][2] = {{0.2, 0}, {0, 0.2}};
};

/// \brief A 2-D convolution kernel on the MUSE grid: w[(dy + r) * (2r + 1) + (dx + r)], unit sum.
struct Kernel2D {
  int r = 0;
  std::vector<double> w;
  double max_transfer = 0;      ///< max over the band of |K^(k)| before truncation
  double nyquist_transfer = 0;  ///< max |K^| on the Nyquist boundary (|kx| or |ky| = 0.5)
  double At(int dx, int dy) const { return w[static_cast<size_t>((dy + r) * (2 * r + 1) + (dx + r))]; }
};

/// \brief PSF-matching choices.
struct PsfOptions {
  double muse_fwhm = 0.8;   ///< arcsec, effective PSF of the MUSE data (0 = no matching)
  PsfShape shape = PsfShape::kGaussian;
  double beta = 2.5;        ///< Moffat beta
  double hst_fwhm = 0.08;   ///< arcsec, effective (Gaussian) PSF of the HST image
};

/// Pre-smoothing sigma (arcsec) applied on the HST grid before resampling: min(0.6 MUSE pixel,
/// sqrt((sigma_eq^2 - sigma_hst^2) / 2)) with sigma_eq = muse_fwhm / 2.3548; 0 if that is not
/// positive. `muse_pix_arcsec` is the MUSE pixel scale.
double PreSmoothingSigma(const PsfOptions& psf, double muse_pix_arcsec);

/// \brief The matching kernel on the MUSE grid, computed in Fourier space:
/// K^(k) = M^(q) / [G_hst^(q) G_pre^(q) B_hst^(k) B_muse^(k)], q = |C^-T k| (cycles/arcsec),
/// where M is the MUSE PSF, G_hst the HST PSF, G_pre the pre-smoothing Gaussian (sigma_pre,
/// arcsec), B_hst the HST pixel (area-weighted redistribution) and B_muse the MUSE pixel box,
/// limited to |kx|, |ky| <= 1/2 cycle per pixel, inverse-transformed and truncated at the radius
/// holding all but 1e-3 of the MUSE PSF flux (at least 4 sigma), renormalised to unit sum.
/// Fails (naming the PSFs) if K^ exceeds 1.01 anywhere: the MUSE PSF would be narrower than
/// what has already been applied.
Result<Kernel2D> BuildMatchingKernel(const KernelGeometry& geom, const PsfOptions& psf, double sigma_pre_arcsec);

/// \brief Normalised 2-D convolution on an nx x ny grid: out = (K (x) f) / (K (x) c) and
/// cov = K (x) c, where f is the flux in the covered part of each spaxel and c its covered
/// fraction; out is NaN where cov < 1e-6. Parallel over rows.
void ConvolveNormalised(const std::vector<double>& f, const std::vector<double>& c, int64_t nx, int64_t ny,
                        const Kernel2D& k, std::vector<double>& out, std::vector<double>& cov);

// ------------------------------------------------------------------------------------------
// Geometry

/// Area of the intersection of a convex polygon (n <= 8 vertices, either orientation) with the
/// rectangle [x0, x1] x [y0, y1] (Sutherland-Hodgman clipping, shoelace area).
double ClipPolygonArea(const double* px, const double* py, int n, double x0, double x1, double y0, double y1);

/// \brief Pixel coordinates of one image -> pixel coordinates of another, through the sky
/// (pixel -> sky with `from`, sky -> pixel with `to`, wcslib), tabulated on a grid of `step`
/// pixels over [x0, x1] x [y0, y1] and interpolated bilinearly. Build halves the step until
/// the interpolation error, checked at the cell centres, is below `tol` target pixels (or the
/// step is 1). 0-based pixel coordinates.
class PixelTransform {
 public:
  static Result<PixelTransform> Build(const fits::Wcs& from, const fits::Wcs& to, double x0, double y0, double x1,
                                      double y1, double tol = 1e-4, int start_step = 32);
  void Map(double x, double y, double& tx, double& ty) const;
  int step() const { return step_; }
  double max_error() const { return max_error_; }

 private:
  double x0_ = 0, y0_ = 0;
  int step_ = 1;
  int64_t ncx_ = 0, ncy_ = 0;
  std::vector<double> tx_, ty_;
  double max_error_ = 0;
};

/// \brief Sums of HST pixels on the MUSE grid (index y * nx + x).
struct GridSums {
  int64_t nx = 0, ny = 0;
  std::vector<double> flux;   ///< sum of fraction * pixel flux
  std::vector<double> var;    ///< sum of fraction * pixel variance (known part)
  std::vector<double> npix;   ///< sum of fractions (number of HST pixels, fractional)
  std::vector<double> area;   ///< covered area, MUSE pixels (0..1)
  void Reset(int64_t nx_, int64_t ny_);
  void Add(const GridSums& o);
};

/// Deposits one HST pixel, whose corners (in order around it) are at (qx, qy) in MUSE pixel
/// coordinates, onto the grid: each spaxel gets the fraction of the pixel's area that falls on
/// it (exact polygon overlap). Parts outside the grid are dropped. `atomic`: the additions are
/// atomic (several threads depositing into one grid).
void DepositQuad(const double qx[4], const double qy[4], double flux, double var, GridSums& acc,
                 bool atomic = false);

// ------------------------------------------------------------------------------------------
// One band

/// \brief The MUSE spaxel grid.
struct MuseGrid {
  int64_t nx = 0, ny = 0;
  CelestialWcs wcs;
};

enum class NoiseMode { kAuto, kErr, kIvm, kEstimate, kNone };

/// \brief Everything about one band.
struct BandOptions {
  std::string band, path;
  std::string extension = "auto";   ///< image HDU; auto = SCI if present, else the first 2-D image
  CalibrationOptions calib;
  NoiseMode noise = NoiseMode::kAuto;
  std::string error_extension;      ///< "" = ERR (err/auto) or WHT (ivm)
  double noise_correlation = 1.0;   ///< variance factor of the background errors (correlated noise)
  bool poisson = true;              ///< estimate mode: add the source Poisson term (electrons, EXPTIME)
  PsfOptions psf;
  int64_t strip_rows = 256;         ///< HST rows read and smoothed per block
};

/// \brief One band resampled onto the MUSE grid.
struct BandImage {
  std::string band, path;
  double pivot = 0;
  std::vector<double> flux;      ///< erg/s/cm^2/A per spaxel (PSF-matched, full-coverage estimate; NaN = none)
  std::vector<double> var;       ///< variance of the unsmoothed covered flux, (erg/s/cm^2/A)^2
  std::vector<double> area;      ///< covered fraction of each spaxel (before PSF matching)
  std::vector<double> coverage;  ///< coverage used for bins (kernel-weighted when PSF matching)
  /// With PSF matching: the variance on the padded grid (field + `pad` spaxels on each side,
  /// pnx x pny) and the kernel from HST pixel noise to MUSE spaxels (the matching kernel
  /// without the pre-smoothing, so that the pre-smoothing's correlations are included), for
  /// the variance of bin sums: var = sum_i V_i (sum_{j in bin} K'(j - i))^2.
  std::vector<double> var_pad;
  int64_t pad = 0, pnx = 0, pny = 0;
  Kernel2D noise_kernel;
  double sigma_pix = kNaN;       ///< estimated noise per HST pixel (estimate mode), erg/s/cm^2/A
  std::string noise_source;      ///< "ERR", "IVM", "estimate", "none"
  double hst_pix_arcsec = 0, muse_pix_arcsec = 0, sigma_pre_arcsec = 0;
  int kernel_radius = 0, transform_step = 0;
  int64_t crop[4] = {0, 0, 0, 0};  ///< HST pixels used: x0, x1, y0, y1 (inclusive)
  Calibration calib;
};

using LogFn = std::function<void(LogLevel, const std::string&)>;

/// Reads, calibrates, PSF-matches and resamples one HST image onto the MUSE grid, one strip
/// of rows at a time (peak memory: a strip of the image, plus per-thread sums on the MUSE grid).
/// Errors name the file: missing file or extension, missing calibration, no WCS, an image that
/// does not overlap the MUSE field, no valid pixel on it.
Result<BandImage> ProcessBand(const MuseGrid& grid, const BandOptions& opt, const LogFn& log = {});

/// \brief Per-bin sums of one band.
struct BinSums {
  std::vector<double> flux, var, coverage;  ///< one per bin; flux NaN where coverage < min_coverage
};

/// Sums (or averages, `mean`) the band over each bin's spaxels. Coverage = mean spaxel coverage;
/// bins below `min_coverage` get NaN. Spaxels without a value are replaced by the mean of the
/// bin's others. Variance: without PSF matching the sum of the spaxel variances (the variance
/// of the bin's HST pixel sum); with it, sum_i V_i W_i^2 with W = the bin's indicator
/// correlated with the noise kernel (the smoothing makes neighbouring spaxels covary); then
/// divided by the bin's covered fraction squared (and by N^2 for `mean`).
BinSums SumBins(const Binning& binning, const BandImage& band, double min_coverage, bool mean);

// ------------------------------------------------------------------------------------------
// The node

/// \brief Parameters of `photometry.hst_match`, declared once in HstMatchNode::Spec(). The
/// defaults of the per-band choices are those of BandOptions, PsfOptions and CalibrationOptions.
struct HstMatchOptions {
  std::vector<std::string> bands = {"F275W", "F336W", "F438W", "F555W", "F814W"};
  std::filesystem::path directory;           ///< folder of the images ("" = none)
  std::string pattern = "hst_{band}.fits";   ///< file name in `directory`: {band}, {band_lower}
  std::vector<std::string> images;           ///< explicit file per band (overrides `pattern`)
  std::string extension = BandOptions{}.extension;
  std::string unit = CalibrationOptions{}.unit;
  double unit_scale = CalibrationOptions{}.unit_scale;
  std::vector<double> zeropoints;            ///< AB mag per band; empty = PHOTFLAM
  std::vector<double> pivots;                ///< Angstrom per band; empty = PHOTPLAM / filter curve
  double psf_muse_fwhm = PsfOptions{}.muse_fwhm;
  std::string psf_shape = "gaussian";        ///< gaussian | moffat
  double moffat_beta = PsfOptions{}.beta;
  std::vector<double> psf_hst_fwhm = {PsfOptions{}.hst_fwhm};  ///< one value, or one per band
  std::string noise = "auto";                ///< auto | err | ivm | estimate | none
  std::string error_extension = BandOptions{}.error_extension;
  double noise_correlation = BandOptions{}.noise_correlation;
  bool poisson = BandOptions{}.poisson;
  double calib_error = 0.02;                 ///< fractional, added in quadrature
  double min_coverage = 0.95;                ///< of a bin; below it the flux is NaN
  std::string combine = "sum";               ///< sum | mean
  int64_t strip_rows = BandOptions{}.strip_rows;
  bool maps = true;                          ///< emit the QA maps
};

/// \brief `photometry.hst_match` (see Spec() for the documentation).
class HstMatchNode : public Node {
 public:
  using Options = HstMatchOptions;
  static NodeSpec Spec();
  /// Throws cubeflow::Error if the options fail Spec()'s checks.
  explicit HstMatchNode(const Options& options);
  void Process(ProcessContext& ctx) override;

  /// Image path of each band (after applying directory / pattern / images).
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  Options opt_;
  std::vector<std::string> paths_;
  std::vector<BandOptions> band_options_;
};

}  // namespace cubeflow::photometry
