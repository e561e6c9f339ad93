// photometry.hst_match: the band pipeline (read in strips, calibrate, pre-smooth, resample onto
// the MUSE grid, PSF-match), per-bin sums and the node. See hst_match.hpp and README.md.
#include "hst_match.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <limits>
#include <chrono>
#include <climits>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "cubeflow/strings.hpp"

namespace cubeflow::photometry {

namespace {

/// Sky offset (arcsec; east, north) of (ra, dec) from (ra0, dec0), small-angle.
void SkyOffset(double ra0, double dec0, double ra, double dec, double& east, double& north) {
  double d = ra - ra0;
  while (d > 180) d -= 360;
  while (d < -180) d += 360;
  east = d * std::cos(dec0 * M_PI / 180.0) * 3600.0;
  north = (dec - dec0) * 3600.0;
}

/// d(sky arcsec) / d(pixel) of `w` at pixel (x, y): columns = pixel axes.
void SkyJacobian(const fits::Wcs& w, double x, double y, double out[2][2]) {
  double ra0, dec0, ra, dec;
  w.PixelToSky(x, y, ra0, dec0);
  for (int a = 0; a < 2; ++a) {
    const double h = 0.5;
    double rp, dp, rm, dm, e1, n1, e2, n2;
    w.PixelToSky(x + (a == 0 ? h : 0), y + (a == 1 ? h : 0), rp, dp);
    w.PixelToSky(x - (a == 0 ? h : 0), y - (a == 1 ? h : 0), rm, dm);
    SkyOffset(ra0, dec0, rp, dp, e1, n1);
    SkyOffset(ra0, dec0, rm, dm, e2, n2);
    out[0][a] = (e1 - e2) / (2 * h);
    out[1][a] = (n1 - n2) / (2 * h);
  }
  (void)ra;
  (void)dec;
}

/// Upper median of a large float sample (the background estimator keeps up to 4 million
/// |second differences| as float to bound memory; spectral::Median works on doubles).
double UpperMedian(std::vector<float>& v) {
  if (v.empty()) return kNaN;
  const size_t h = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(h), v.end());
  return v[h];
}

const char* NoiseName(NoiseMode m) {
  switch (m) {
    case NoiseMode::kErr: return "ERR";
    case NoiseMode::kIvm: return "IVM";
    case NoiseMode::kEstimate: return "estimate";
    case NoiseMode::kNone: return "none";
    default: return "auto";
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------
// One band: the steps of ProcessBand, in order

namespace {

void Say(const LogFn& log, const BandOptions& opt, LogLevel l, const std::string& m) {
  if (log) log(l, "band " + opt.band + ": " + m);
}

/// The band's image, opened, with its WCS and the MUSE grid's.
struct OpenedImage {
  std::unique_ptr<fits::ImageReader> img;
  std::string where;  ///< the image and the band, for messages
  fits::Wcs hst, muse;
  int64_t W = 0, H = 0;  ///< image size, pixels
};

Result<OpenedImage> OpenImage(const MuseGrid& grid, const BandOptions& opt) {
  CUBEFLOW_ASSIGN_OR_RETURN(std::unique_ptr<fits::ImageReader> img,
                            fits::ImageReader::Open(opt.path, opt.extension, {"SCI"}));
  const std::string where = img->Where() + " (band " + opt.band + ")";
  if (img->wcs().empty())
    return Status::Error(where + " has no celestial WCS (CTYPE1/CTYPE2, CRVAL, CRPIX, CD or CDELT): cannot place it "
                         "on the MUSE grid");
  auto hw_r = fits::Wcs::FromCards(img->wcs());
  if (!hw_r.ok())
    return Status::Error(where + ": unusable WCS: " + hw_r.status().message() +
                         "; fix its CTYPE, CRVAL, CRPIX and CD/CDELT keywords");
  auto mw_r = fits::Wcs::FromCards(grid.wcs);
  if (!mw_r.ok())
    return Status::Error("the MUSE grid (from the binning) has no usable celestial WCS: " + mw_r.status().message() +
                         "; the cube must carry CTYPE1/2, CRVAL, CRPIX and CD/CDELT keywords");
  const int64_t W = img->nx(), H = img->ny();
  return OpenedImage{std::move(img), where, std::move(*hw_r), std::move(*mw_r), W, H};
}

/// Local geometry of the two grids at the MUSE field centre.
struct FieldGeometry {
  KernelGeometry kernel;      ///< MUSE pixel axes on the sky and HST -> MUSE pixel steps
  double hst_cd[2][2] = {};   ///< d(sky arcsec) / d(HST pixel)
  double ra_c = 0, dec_c = 0; ///< MUSE field centre, degrees
  double hst_area = 0;        ///< HST pixel area, arcsec^2
  double s_hx = 0, s_hy = 0;  ///< HST pixel steps along its axes, arcsec
  double s_m = 0;             ///< MUSE pixel scale, arcsec
};

Result<FieldGeometry> RelateGrids(const MuseGrid& grid, const OpenedImage& im) {
  FieldGeometry g;
  double hcx = 0, hcy = 0;
  const double mcx = 0.5 * static_cast<double>(grid.nx - 1), mcy = 0.5 * static_cast<double>(grid.ny - 1);
  try {
    SkyJacobian(im.muse, mcx, mcy, g.kernel.muse_cd);
    im.muse.PixelToSky(mcx, mcy, g.ra_c, g.dec_c);
    im.hst.SkyToPixel(g.ra_c, g.dec_c, hcx, hcy);
    SkyJacobian(im.hst, hcx, hcy, g.hst_cd);
    // d(MUSE pixel)/d(HST pixel) = (d sky/d MUSE)^-1 (d sky/d HST)
    const double (&c)[2][2] = g.kernel.muse_cd;
    const double det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
    const double ci[2][2] = {{c[1][1] / det, -c[0][1] / det}, {-c[1][0] / det, c[0][0] / det}};
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) g.kernel.hst_to_muse[i][j] = ci[i][0] * g.hst_cd[0][j] + ci[i][1] * g.hst_cd[1][j];
  } catch (const std::exception& e) {
    return Status::Error(im.where + ": cannot relate its WCS to the MUSE grid's: " + e.what() +
                         "; check that both are celestial (RA/Dec) WCSs of the same field");
  }
  const auto& hcd = g.hst_cd;
  const auto& mcd = g.kernel.muse_cd;
  g.hst_area = std::abs(hcd[0][0] * hcd[1][1] - hcd[0][1] * hcd[1][0]);
  g.s_hx = std::hypot(hcd[0][0], hcd[1][0]);
  g.s_hy = std::hypot(hcd[0][1], hcd[1][1]);
  g.s_m = std::sqrt(std::abs(mcd[0][0] * mcd[1][1] - mcd[0][1] * mcd[1][0]));
  return g;
}

/// PSF matching: the pre-smoothing on the HST grid and the kernel on the MUSE grid.
struct PsfPlan {
  bool matching = false;
  double sigma_pre = 0;                  ///< pre-smoothing sigma, arcsec (0: none)
  std::vector<double> kx{1.0}, ky{1.0};  ///< pre-smoothing kernels along the HST axes
  Kernel2D kernel;                       ///< matching kernel (with matching)
  /// With matching the spaxels near the field's edge receive light from beyond it: the band is
  /// resampled onto the field padded by the kernel radius, convolved, then cut to the field.
  int64_t pad = 0;
};

Result<PsfPlan> PlanPsfMatching(const BandOptions& opt, const FieldGeometry& g) {
  PsfPlan p;
  p.matching = opt.psf.muse_fwhm > 0;
  double sigma_pre = p.matching ? PreSmoothingSigma(opt.psf, g.s_m) : 0.0;
  if (sigma_pre / std::max(g.s_hx, g.s_hy) >= 0.5) {
    p.kx = GaussianKernel1D(sigma_pre / g.s_hx);
    p.ky = GaussianKernel1D(sigma_pre / g.s_hy);
  } else {
    sigma_pre = 0;
  }
  p.sigma_pre = sigma_pre;
  if (p.matching) {
    auto k = BuildMatchingKernel(g.kernel, opt.psf, sigma_pre);
    if (!k.ok()) return Status::Error("band " + opt.band + ": " + k.status().message());
    p.kernel = std::move(*k);
  }
  p.pad = p.matching ? p.kernel.r : 0;
  return p;
}

/// HST pixels [x0, x1] x [y0, y1] (inclusive) used for the band.
struct Crop {
  int64_t x0 = 0, x1 = 0, y0 = 0, y1 = 0;
};

/// The HST pixels that can reach the MUSE field padded by `pad`: its boundary mapped into the
/// image, plus one pixel. Fails if they miss the image.
Result<Crop> CropToField(const MuseGrid& grid, const OpenedImage& im, const FieldGeometry& g, int64_t pad) {
  const fits::Wcs& hw = im.hst;
  const fits::Wcs& mw = im.muse;
  double bx0 = 1e300, bx1 = -1e300, by0 = 1e300, by1 = -1e300;
  {
    const int64_t nsx = std::max<int64_t>(8, std::min<int64_t>(grid.nx, 256)), nsy = std::max<int64_t>(8, std::min<int64_t>(grid.ny, 256));
    auto add = [&](double x, double y) {
      double ra, dec, hx, hy;
      try {
        mw.PixelToSky(x, y, ra, dec);
        hw.SkyToPixel(ra, dec, hx, hy);
      } catch (const std::exception&) {
        return;
      }
      bx0 = std::min(bx0, hx);
      bx1 = std::max(bx1, hx);
      by0 = std::min(by0, hy);
      by1 = std::max(by1, hy);
    };
    const double xa = -0.5 - pad, xb = static_cast<double>(grid.nx + pad) - 0.5, ya = -0.5 - pad,
                 yb = static_cast<double>(grid.ny + pad) - 0.5;
    for (int64_t i = 0; i <= nsx; ++i) {
      const double x = xa + (xb - xa) * static_cast<double>(i) / static_cast<double>(nsx);
      add(x, ya);
      add(x, yb);
    }
    for (int64_t i = 0; i <= nsy; ++i) {
      const double y = ya + (yb - ya) * static_cast<double>(i) / static_cast<double>(nsy);
      add(xa, y);
      add(xb, y);
    }
  }
  if (!(bx1 >= bx0))
    return Status::Error(im.where + ": the MUSE field cannot be mapped into the image's pixels (WCS transform failed); "
                         "check that the image covers the galaxy and that its WCS is right");
  const int64_t W = im.W, H = im.H;
  Crop c;
  c.x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(bx0)) - 1);
  c.x1 = std::min<int64_t>(W - 1, static_cast<int64_t>(std::ceil(bx1)) + 1);
  c.y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(by0)) - 1);
  c.y1 = std::min<int64_t>(H - 1, static_cast<int64_t>(std::ceil(by1)) + 1);
  if (c.x0 > c.x1 || c.y0 > c.y1) {
    double ra_h = 0, dec_h = 0;
    try { hw.PixelToSky(0.5 * static_cast<double>(W - 1), 0.5 * static_cast<double>(H - 1), ra_h, dec_h); } catch (...) {}
    return Status::Error(im.where + " does not overlap the MUSE field: the field maps to image pixels x " + Num(bx0, 7) +
                         ".." + Num(bx1, 7) + ", y " + Num(by0, 7) + ".." + Num(by1, 7) + " but the image is " +
                         std::to_string(W) + "x" + std::to_string(H) + " (image centre RA " + Num(ra_h, 9) + ", Dec " +
                         Num(dec_h, 9) + "; MUSE field centre RA " + Num(g.ra_c, 9) + ", Dec " + Num(g.dec_c, 9) +
                         "); check that the file covers the galaxy and that both WCSs are right");
  }
  return c;
}

/// Where the per-pixel variance comes from.
struct NoisePlan {
  NoiseMode mode = NoiseMode::kAuto;           ///< resolved: never kAuto
  std::unique_ptr<fits::ImageReader> err_img;  ///< the error (err) or weight (ivm) extension
  bool poisson = false;                        ///< estimate mode: add the source Poisson term
  double corr = 1.0;                           ///< variance factor of the extension's errors
};

/// Resolves `noise: auto` and opens the error or weight extension (same size as the image).
Result<NoisePlan> OpenNoise(const BandOptions& opt, const OpenedImage& im, const Calibration& calib) {
  NoisePlan n;
  NoiseMode mode = opt.noise;
  std::string err_ext = opt.error_extension;
  if (mode == NoiseMode::kAuto) {
    const std::string e = err_ext.empty() ? "ERR" : err_ext;
    mode = im.img->HasExtension(e) ? NoiseMode::kErr : NoiseMode::kEstimate;
    if (mode == NoiseMode::kErr) err_ext = e;
  }
  if (mode == NoiseMode::kErr && err_ext.empty()) err_ext = "ERR";
  if (mode == NoiseMode::kIvm && err_ext.empty()) err_ext = "WHT";
  if (mode == NoiseMode::kErr || mode == NoiseMode::kIvm) {
    auto er = fits::ImageReader::Open(opt.path, err_ext);
    if (!er.ok())
      return Status::Error("band " + opt.band + ": noise '" + NoiseName(mode) + "' needs the " +
                           (mode == NoiseMode::kErr ? "error (sigma)" : "inverse-variance weight") + " extension: " +
                           er.status().message() + "; or set noise: estimate");
    n.err_img = std::move(*er);
    if (n.err_img->nx() != im.W || n.err_img->ny() != im.H)
      return Status::Error(n.err_img->Where() + " is " + std::to_string(n.err_img->nx()) + "x" +
                           std::to_string(n.err_img->ny()) + " but the science image " + im.img->Where() + " is " +
                           std::to_string(im.W) + "x" + std::to_string(im.H) +
                           ": set error_extension to the image's own error extension, or noise: estimate");
  }
  n.mode = mode;
  n.poisson = opt.poisson && mode == NoiseMode::kEstimate && calib.unit.electrons && calib.exptime > 0 &&
              (calib.unit.unit == PixelUnit::kCountRate || calib.unit.unit == PixelUnit::kCounts);
  n.corr = (mode == NoiseMode::kErr || mode == NoiseMode::kIvm) ? opt.noise_correlation : 1.0;
  return n;
}

/// A bounded sample of |second differences| of pixels along x, for the background noise per
/// pixel before smoothing (DER_SNR-like; insensitive to structure smoother than a few pixels).
class BackgroundSample {
 public:
  void AddRow(const double* row, int64_t n) {
    for (int64_t i = 1; i + 1 < n; ++i) {
      const double d = row[i - 1] - 2 * row[i] + row[i + 1];
      if (!std::isfinite(d)) continue;
      if (seen_++ % stride_ == 0) d_.push_back(static_cast<float>(std::abs(d)));
      if (d_.size() >= 4000000) {  // keep memory bounded: thin out, sample more sparsely
        std::vector<float> keep;
        keep.reserve(d_.size() / 2 + 1);
        for (size_t k = 0; k < d_.size(); k += 2) keep.push_back(d_[k]);
        d_.swap(keep);
        stride_ *= 2;
      }
    }
  }
  size_t size() const { return d_.size(); }
  /// Robust sigma per pixel: 1.4826 x median |d| / sqrt(6).
  double Sigma() { return 1.482602 * UpperMedian(d_) / std::sqrt(6.0); }

 private:
  std::vector<float> d_;
  int64_t stride_ = 1, seen_ = 0;
};

/// One strip of HST rows: core rows [ys, ye] of the crop, read with the pre-smoothing kernel's
/// overlap (rows r0..r0 + nr - 1, columns c0..c0 + nc - 1).
struct Strip {
  int64_t ys = 0, ye = 0, ncore = 0;
  int64_t r0 = 0, nr = 0, c0 = 0, nc = 0;
};

/// Working arrays of the strip loop (reused from strip to strip).
struct StripBuffers {
  std::vector<double> sci, err;  ///< nr x nc: raw, then calibrated (NaN = invalid); errors
  std::vector<double> var;       ///< ncore x (crop width): variance of the core pixels (known part)
  std::vector<double> sm;        ///< ncore x nc: pre-smoothed core rows
  std::vector<double> cxs, cys;  ///< (ncore + 1) x (crop width + 1): pixel corners in MUSE pixels
};

/// Raw values -> erg/s/cm^2/A (NaN where invalid) and the variance of the core pixels.
void CalibrateStrip(const Strip& s, const Crop& crop, const NoisePlan& noise, const Calibration& calib,
                    StripBuffers& b) {
  const int64_t ncx = crop.x1 - crop.x0 + 1;
  const double factor = calib.factor;
  b.var.assign(static_cast<size_t>(s.ncore * ncx), 0.0);
  for (int64_t r = 0; r < s.nr; ++r)
    for (int64_t c = 0; c < s.nc; ++c) {
      const size_t i = static_cast<size_t>(r * s.nc + c);
      const double raw = b.sci[i];
      bool ok = std::isfinite(raw);
      double v = 0;
      if (ok && noise.err_img) {
        const double e = b.err[i];
        if (noise.mode == NoiseMode::kErr) {
          ok = std::isfinite(e) && e > 0;
          v = e * e;
        } else {
          ok = std::isfinite(e) && e > 0;
          v = ok ? 1.0 / e : 0.0;
        }
        v *= factor * factor * noise.corr;
      } else if (ok && noise.poisson) {
        const double counts_var = calib.unit.unit == PixelUnit::kCountRate ? std::max(raw, 0.0) / calib.exptime
                                                                            : std::max(raw, 0.0);
        v = counts_var * factor * factor;
      }
      b.sci[i] = ok ? raw * factor : kNaN;
      const int64_t y = s.r0 + r, x = s.c0 + c;
      if (y >= s.ys && y <= s.ye && x >= crop.x0 && x <= crop.x1)
        b.var[static_cast<size_t>((y - s.ys) * ncx + (x - crop.x0))] = ok ? v : 0.0;
    }
}

/// Normalised, NaN-aware pre-smoothing of the core rows (a copy without pre-smoothing).
void SmoothStrip(const Strip& s, const PsfPlan& psf, StripBuffers& b) {
  if (psf.sigma_pre > 0) {
    SmoothBlock(b.sci, s.nr, s.nc, psf.kx, psf.ky, s.ys - s.r0, s.ncore, b.sm);
  } else {
    b.sm.assign(static_cast<size_t>(s.ncore * s.nc), kNaN);
    std::copy(b.sci.begin() + (s.ys - s.r0) * s.nc, b.sci.begin() + (s.ys - s.r0 + s.ncore) * s.nc, b.sm.begin());
  }
}

/// Corners of the core pixels in (padded) MUSE pixel coordinates.
void MapCorners(const Strip& s, const Crop& crop, const PixelTransform& xf, int64_t pad, StripBuffers& b) {
  const int64_t ncc = crop.x1 - crop.x0 + 2;
  b.cxs.resize(static_cast<size_t>((s.ncore + 1) * ncc));
  b.cys.resize(b.cxs.size());
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, s.ncore + 1, 16), [&](const tbb::blocked_range<int64_t>& rr) {
    for (int64_t j = rr.begin(); j < rr.end(); ++j)
      for (int64_t i = 0; i < ncc; ++i) {
        const size_t k = static_cast<size_t>(j * ncc + i);
        xf.Map(static_cast<double>(crop.x0 + i) - 0.5, static_cast<double>(s.ys + j) - 0.5, b.cxs[k], b.cys[k]);
        b.cxs[k] += static_cast<double>(pad);
        b.cys[k] += static_cast<double>(pad);
      }
  });
}

/// Deposits every valid core pixel onto the grid by exact polygon overlap, in the same order
/// whatever the thread count, so that products are reproducible bit for bit (a resumed run must
/// give the product an uninterrupted one gives). The strip's rows are cut into fixed chunks;
/// chunks go into phases such that no two chunks of one phase touch the same MUSE row; the
/// chunks of a phase run in parallel, each in row order, and phases run one after the other. No
/// atomics: every cell is only ever added to by one thread at a time, in a fixed order.
void DepositStrip(const Strip& s, const Crop& crop, const StripBuffers& b, GridSums& total) {
  const int64_t ncx = crop.x1 - crop.x0 + 1, ncc = ncx + 1;
  constexpr int64_t kChunkRows = 8;
  const int64_t nchunks = (s.ncore + kChunkRows - 1) / kChunkRows;
  // MUSE rows each chunk can touch: the range of its corners' y, one row of margin.
  std::vector<std::pair<int64_t, int64_t>> rows(static_cast<size_t>(nchunks));
  for (int64_t c = 0; c < nchunks; ++c) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    const int64_t j1 = std::min(s.ncore, (c + 1) * kChunkRows);
    for (int64_t j = c * kChunkRows; j <= j1; ++j)
      for (int64_t i = 0; i < ncc; ++i) {
        const double y = b.cys[static_cast<size_t>(j * ncc + i)];
        lo = std::min(lo, y);
        hi = std::max(hi, y);
      }
    rows[static_cast<size_t>(c)] = {static_cast<int64_t>(std::floor(lo + 0.5)) - 1,
                                    static_cast<int64_t>(std::floor(hi + 0.5)) + 1};
  }
  std::vector<std::vector<int64_t>> phases;
  for (int64_t c = 0; c < nchunks; ++c) {
    const auto& rc = rows[static_cast<size_t>(c)];
    bool placed = false;
    for (auto& ph : phases) {
      bool clash = false;
      for (int64_t d : ph) {
        const auto& rd = rows[static_cast<size_t>(d)];
        if (rc.first <= rd.second && rd.first <= rc.second) { clash = true; break; }
      }
      if (!clash) {
        ph.push_back(c);
        placed = true;
        break;
      }
    }
    if (!placed) phases.push_back({c});
  }
  auto deposit_rows = [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const double* srow = b.sm.data() + j * s.nc + (crop.x0 - s.c0);
      const double* vrow = b.var.data() + j * ncx;
      for (int64_t i = 0; i < ncx; ++i) {
        const double f = srow[i];
        if (!std::isfinite(f)) continue;
        const size_t k00 = static_cast<size_t>(j * ncc + i), k10 = k00 + 1,
                     k11 = k00 + 1 + static_cast<size_t>(ncc), k01 = k00 + static_cast<size_t>(ncc);
        const double qx[4] = {b.cxs[k00], b.cxs[k10], b.cxs[k11], b.cxs[k01]};
        const double qy[4] = {b.cys[k00], b.cys[k10], b.cys[k11], b.cys[k01]};
        DepositQuad(qx, qy, f, vrow[i], total, false);
      }
    }
  };
  for (const auto& ph : phases)
    tbb::parallel_for(tbb::blocked_range<size_t>(0, ph.size(), 1), [&](const tbb::blocked_range<size_t>& rr) {
      for (size_t k = rr.begin(); k < rr.end(); ++k) {
        const int64_t c = ph[k];
        deposit_rows(c * kChunkRows, std::min(s.ncore, (c + 1) * kChunkRows));
      }
    });
}

/// The strip loop: reads the crop `strip_rows` rows at a time (peak memory: one strip), and
/// calibrates, samples the background (estimate mode), pre-smooths and deposits each strip
/// onto `total`, one accumulator on the padded MUSE grid (memory does not grow with the thread
/// count; DepositStrip keeps the order of the additions fixed).
Status ResampleStrips(const BandOptions& opt, const OpenedImage& im, const Crop& crop, const PsfPlan& psf,
                      const NoisePlan& noise, const Calibration& calib, const PixelTransform& xf, GridSums& total,
                      BackgroundSample& background) {
  const int64_t ncx = crop.x1 - crop.x0 + 1;
  // At most strip_rows, and about kStripArrayBytes per working array for wide images, so that the
  // strips of a mosaic's images take no more memory than those of a single pointing (the results
  // do not depend on the strip height).
  constexpr int64_t kStripArrayBytes = int64_t{3} << 20;
  const int64_t fit = std::max<int64_t>(16, kStripArrayBytes / (8 * std::max<int64_t>(ncx, 1)));
  const int64_t S = std::max<int64_t>(std::min<int64_t>(opt.strip_rows, fit), 1);
  const int64_t rx = static_cast<int64_t>(psf.kx.size() / 2), ry = static_cast<int64_t>(psf.ky.size() / 2);
  StripBuffers b;
  for (int64_t ys = crop.y0; ys <= crop.y1; ys += S) {
    Strip s;
    s.ys = ys;
    s.ye = std::min(crop.y1, ys + S - 1);
    s.ncore = s.ye - s.ys + 1;
    s.r0 = std::max<int64_t>(0, ys - ry);
    const int64_t r1 = std::min<int64_t>(im.H - 1, s.ye + ry);
    s.c0 = std::max<int64_t>(0, crop.x0 - rx);
    const int64_t c1 = std::min<int64_t>(im.W - 1, crop.x1 + rx);
    s.nr = r1 - s.r0 + 1;
    s.nc = c1 - s.c0 + 1;
    CUBEFLOW_RETURN_NOT_OK(im.img->ReadBlock(s.r0, s.nr, b.sci, s.c0, s.nc));
    if (noise.err_img) CUBEFLOW_RETURN_NOT_OK(noise.err_img->ReadBlock(s.r0, s.nr, b.err, s.c0, s.nc));
    CalibrateStrip(s, crop, noise, calib, b);
    if (noise.mode == NoiseMode::kEstimate)
      for (int64_t y = s.ys; y <= s.ye; ++y) background.AddRow(b.sci.data() + (y - s.r0) * s.nc + (crop.x0 - s.c0), ncx);
    SmoothStrip(s, psf, b);
    MapCorners(s, crop, xf, psf.pad, b);
    DepositStrip(s, crop, b, total);
  }
  return Status::OK();
}

/// Covered area of the field (not the padding), in spaxels.
double CoveredSpaxels(const MuseGrid& grid, const GridSums& total, int64_t pad) {
  const int64_t PX = grid.nx + 2 * pad;
  double covered = 0;
  for (int64_t y = 0; y < grid.ny; ++y)
    for (int64_t x = 0; x < grid.nx; ++x) covered += total.area[static_cast<size_t>((y + pad) * PX + x + pad)];
  return covered;
}

/// Estimate mode: adds the background variance per HST pixel to the sums.
void AddBackgroundNoise(const BandOptions& opt, const LogFn& log, const OpenedImage& im,
                        BackgroundSample& background, GridSums& total, BandImage& out) {
  if (background.size() >= 50) {
    out.sigma_pix = background.Sigma();
    const double v = out.sigma_pix * out.sigma_pix * opt.noise_correlation;
    for (size_t i = 0; i < total.var.size(); ++i) total.var[i] += v * total.npix[i];
  } else {
    Say(log, opt, LogLevel::kWarn,
        "too few valid pixels to estimate the background noise of " + im.img->Where() +
            ": errors hold only the Poisson and calibration terms");
  }
}

/// Onto the MUSE grid: the full-coverage flux per spaxel, PSF-matched, cut to the field, and
/// (with matching) the padded variance and the noise kernel. Arrays are released as soon as
/// they are used, to keep the peak near 8 doubles per padded spaxel.
Status ToMuseGrid(const MuseGrid& grid, const BandOptions& opt, const FieldGeometry& g, const PsfPlan& psf,
                  GridSums& total, BandImage& out) {
  const int64_t pad = psf.pad, PX = grid.nx + 2 * pad, PY = grid.ny + 2 * pad;
  const size_t nsp = static_cast<size_t>(grid.nx * grid.ny);
  std::vector<double>().swap(total.npix);
  std::vector<double>& parea = total.area;
  for (double& a : parea) a = std::clamp(a, 0.0, 1.0);
  std::vector<double> pflux, pcov;
  if (psf.matching) {
    ConvolveNormalised(total.flux, parea, PX, PY, psf.kernel, pflux, pcov);
    std::vector<double>().swap(total.flux);
  } else {
    pflux.swap(total.flux);
    for (size_t i = 0; i < parea.size(); ++i) pflux[i] = parea[i] > 1e-9 ? pflux[i] / parea[i] : kNaN;
  }
  const std::vector<double>& pc = psf.matching ? pcov : parea;
  out.flux.resize(nsp);
  out.var.resize(nsp);
  out.area.resize(nsp);
  out.coverage.resize(nsp);
  for (int64_t y = 0; y < grid.ny; ++y)
    for (int64_t x = 0; x < grid.nx; ++x) {
      const size_t i = static_cast<size_t>(y * grid.nx + x), pi = static_cast<size_t>((y + pad) * PX + x + pad);
      out.flux[i] = pflux[pi];
      out.var[i] = total.var[pi];
      out.area[i] = parea[pi];
      out.coverage[i] = std::clamp(pc[pi], 0.0, 1.0);
    }
  if (psf.matching) {
    auto nk = BuildMatchingKernel(g.kernel, opt.psf, 0.0);
    if (!nk.ok()) return Status::Error("band " + opt.band + ": noise kernel: " + nk.status().message());
    out.noise_kernel = std::move(*nk);
    out.pad = pad;
    out.pnx = PX;
    out.pny = PY;
    out.var_pad.swap(total.var);
  }
  return Status::OK();
}

/// The band's log lines: what was used, and a warning if the kernel is not band-limited.
void LogSummary(const BandOptions& opt, const LogFn& log, const OpenedImage& im, const Crop& crop,
                const PsfPlan& psf, const NoisePlan& noise, const BandImage& out, double covered, double secs) {
  std::ostringstream m;
  m << im.img->Where() << ": " << im.W << "x" << im.H << " px of " << Num(out.hst_pix_arcsec, 4) << "\", used x "
    << crop.x0 << ".." << crop.x1 << ", y " << crop.y0 << ".." << crop.y1 << "; " << out.calib.description
    << "; noise " << out.noise_source;
  if (noise.mode == NoiseMode::kEstimate && std::isfinite(out.sigma_pix))
    m << " (sigma " << Num(out.sigma_pix, 4) << " erg/s/cm2/A per pixel" << (noise.poisson ? " + Poisson" : "") << ")";
  if (psf.matching)
    m << "; PSF " << (opt.psf.shape == PsfShape::kGaussian ? "Gaussian" : "Moffat") << " " << opt.psf.muse_fwhm
      << "\" from HST " << opt.psf.hst_fwhm << "\": pre-smoothing sigma " << Num(psf.sigma_pre, 3) << "\", kernel "
      << 2 * psf.kernel.r + 1 << "x" << 2 * psf.kernel.r + 1 << " spaxels (transfer at Nyquist "
      << Num(psf.kernel.nyquist_transfer, 2) << ")";
  else
    m << "; no PSF matching";
  m << "; covered " << Num(covered, 6) << " spaxels; " << Num(secs, 3) << " s";
  Say(log, opt, LogLevel::kInfo, m.str());
  if (psf.matching && psf.kernel.nyquist_transfer > 0.05)
    Say(log, opt, LogLevel::kWarn,
        "the matching kernel is not band-limited at the MUSE Nyquist frequency (transfer " +
            Num(psf.kernel.nyquist_transfer, 2) +
            "): the MUSE PSF is undersampled; spaxel values alias, bin sums are unaffected");
}

}  // namespace

Result<BandImage> ProcessBand(const MuseGrid& grid, const BandOptions& opt, const LogFn& log) {
  const auto t_start = std::chrono::steady_clock::now();
  BandImage out;
  out.band = opt.band;
  out.path = opt.path;
  if (grid.nx <= 0 || grid.ny <= 0)
    return Status::Error("band " + opt.band + ": empty MUSE grid (the binning has no spaxels): check the cube");
  CUBEFLOW_ASSIGN_OR_RETURN(OpenedImage im, OpenImage(grid, opt));
  CUBEFLOW_ASSIGN_OR_RETURN(FieldGeometry g, RelateGrids(grid, im));
  out.hst_pix_arcsec = std::sqrt(g.hst_area);
  out.muse_pix_arcsec = g.s_m;
  if (!(g.hst_area > 0) || !(g.s_m > 0))
    return Status::Error(im.where + ": degenerate pixel scale in the WCS (zero CD matrix or CDELT): fix the WCS keywords "
                         "of the image or of the cube");
  CUBEFLOW_ASSIGN_OR_RETURN(PsfPlan psf, PlanPsfMatching(opt, g));
  out.sigma_pre_arcsec = psf.sigma_pre;
  if (psf.matching) out.kernel_radius = psf.kernel.r;
  CUBEFLOW_ASSIGN_OR_RETURN(Crop crop, CropToField(grid, im, g, psf.pad));
  out.crop[0] = crop.x0;
  out.crop[1] = crop.x1;
  out.crop[2] = crop.y0;
  out.crop[3] = crop.y1;

  CalibrationOptions copt = opt.calib;
  copt.band = opt.band;
  copt.pixel_area_arcsec2 = g.hst_area;
  CUBEFLOW_ASSIGN_OR_RETURN(out.calib, Calibrate(*im.img, copt));
  out.pivot = out.calib.pivot;
  CUBEFLOW_ASSIGN_OR_RETURN(NoisePlan noise, OpenNoise(opt, im, out.calib));
  out.noise_source = NoiseName(noise.mode);

  // Pixel corners -> MUSE pixels.
  CUBEFLOW_ASSIGN_OR_RETURN(PixelTransform xf, PixelTransform::Build(im.hst, im.muse, static_cast<double>(crop.x0) - 0.5,
                                                                     static_cast<double>(crop.y0) - 0.5,
                                                                     static_cast<double>(crop.x1) + 0.5,
                                                                     static_cast<double>(crop.y1) + 0.5));
  out.transform_step = xf.step();

  GridSums total;
  total.Reset(grid.nx + 2 * psf.pad, grid.ny + 2 * psf.pad);
  BackgroundSample background;
  CUBEFLOW_RETURN_NOT_OK(ResampleStrips(opt, im, crop, psf, noise, out.calib, xf, total, background));
  const double covered = CoveredSpaxels(grid, total, psf.pad);
  if (!(covered > 1e-6))
    return Status::Error(im.where + ": no valid pixel falls on the MUSE field (the overlapping part of the image is "
                         "NaN or has zero weight); check that the file covers the galaxy");
  if (noise.mode == NoiseMode::kEstimate) AddBackgroundNoise(opt, log, im, background, total, out);
  CUBEFLOW_RETURN_NOT_OK(ToMuseGrid(grid, opt, g, psf, total, out));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  LogSummary(opt, log, im, crop, psf, noise, out, covered, secs);
  return out;
}

// ------------------------------------------------------------------------------------------
// Per-bin sums

BinSums SumBins(const Binning& binning, const BandImage& band, double min_coverage, bool mean) {
  BinSums s;
  const size_t nb = binning.bins.size();
  s.flux.assign(nb, kNaN);
  s.var.assign(nb, kNaN);
  s.coverage.assign(nb, 0.0);
  const size_t nsp = band.flux.size();
  const bool smoothed = !band.var_pad.empty() && band.noise_kernel.r > 0;
  const int r = band.noise_kernel.r;
  std::vector<double> w;
  for (size_t b = 0; b < nb; ++b) {
    const auto& sp = binning.bins[b].spaxels;
    if (sp.empty()) continue;
    double f = 0, v = 0, cov = 0, area = 0;
    size_t nf = 0;
    int64_t x0 = INT64_MAX, x1 = INT64_MIN, y0 = INT64_MAX, y1 = INT64_MIN;
    for (int32_t i : sp) {
      if (i < 0 || static_cast<size_t>(i) >= nsp) continue;
      const size_t k = static_cast<size_t>(i);
      cov += band.coverage[k];
      area += band.area[k];
      v += band.var[k];
      const double x = band.flux[k];
      if (std::isfinite(x)) {
        f += x;
        ++nf;
      }
      const int64_t xx = i % binning.nx, yy = i / binning.nx;
      x0 = std::min(x0, xx);
      x1 = std::max(x1, xx);
      y0 = std::min(y0, yy);
      y1 = std::max(y1, yy);
    }
    const double n = static_cast<double>(sp.size());
    s.coverage[b] = cov / n;
    if (s.coverage[b] < min_coverage || nf == 0) continue;
    f *= n / static_cast<double>(nf);  // spaxels without a value: the bin's mean
    if (smoothed && binning.nx + 2 * band.pad == band.pnx) {
      // W on the padded grid over the bin's box widened by r.
      const int64_t bw = x1 - x0 + 1 + 2 * r, bh = y1 - y0 + 1 + 2 * r;
      w.assign(static_cast<size_t>(bw * bh), 0.0);
      for (int32_t i : sp) {
        const int64_t xx = i % binning.nx - x0 + r, yy = i / binning.nx - y0 + r;
        for (int dy = -r; dy <= r; ++dy) {
          double* row = w.data() + (yy - dy) * bw + (xx - r);
          const double* krow = band.noise_kernel.w.data() + (dy + r) * (2 * r + 1);
          for (int dx = -r; dx <= r; ++dx) row[r - dx] += krow[dx + r];  // input spaxel j - d
        }
      }
      v = 0;
      for (int64_t yy = 0; yy < bh; ++yy)
        for (int64_t xx = 0; xx < bw; ++xx) {
          const double ww = w[static_cast<size_t>(yy * bw + xx)];
          if (ww == 0) continue;
          const int64_t px = x0 - r + xx + band.pad, py = y0 - r + yy + band.pad;
          if (px < 0 || py < 0 || px >= band.pnx || py >= band.pny) continue;
          v += ww * ww * band.var_pad[static_cast<size_t>(py * band.pnx + px)];
        }
    }
    const double cfrac = area / n;  // covered fraction of the bin (unsmoothed)
    double var = cfrac > 0 ? v / (cfrac * cfrac) : kNaN;
    if (mean) {
      f /= n;
      var /= n * n;
    }
    s.flux[b] = f;
    s.var[b] = var;
  }
  return s;
}

// ------------------------------------------------------------------------------------------
// The node

namespace {

/// Per-bin results shared by the output streams.
struct Table {
  std::vector<std::string> bands;
  std::vector<double> pivots;
  size_t nbins = 0;
  std::vector<double> flux, error;  ///< [bin * nbands + band]
  std::vector<uint32_t> quality;
};

class PhotometrySource : public StreamSource {
 public:
  explicit PhotometrySource(std::shared_ptr<const Table> t) : t_(std::move(t)) {}
  bool Next(int64_t& key, std::shared_ptr<const Data>& data) override {
    if (next_ >= t_->nbins) return false;
    const size_t nb = t_->bands.size();
    auto p = std::make_shared<Photometry>();
    p->id = static_cast<int64_t>(next_);
    p->bands = t_->bands;
    p->pivot = t_->pivots;
    p->flux.assign(t_->flux.begin() + static_cast<std::ptrdiff_t>(next_ * nb),
                   t_->flux.begin() + static_cast<std::ptrdiff_t>((next_ + 1) * nb));
    p->error.assign(t_->error.begin() + static_cast<std::ptrdiff_t>(next_ * nb),
                    t_->error.begin() + static_cast<std::ptrdiff_t>((next_ + 1) * nb));
    p->unit = "erg/s/cm2/Angstrom";
    p->quality = t_->quality[next_];
    key = p->id;
    data = std::move(p);
    ++next_;
    return true;
  }
  int64_t SizeHint() const override { return static_cast<int64_t>(t_->nbins); }

 private:
  std::shared_ptr<const Table> t_;
  size_t next_ = 0;
};

class RecordSource : public StreamSource {
 public:
  explicit RecordSource(std::shared_ptr<const Table> t) : t_(std::move(t)) {}
  bool Next(int64_t& key, std::shared_ptr<const Data>& data) override {
    if (next_ >= t_->nbins) return false;
    const size_t nb = t_->bands.size();
    auto r = std::make_shared<Record>();
    r->id = static_cast<int64_t>(next_);
    for (size_t b = 0; b < nb; ++b) {
      const std::string f = "hst_" + Lower(t_->bands[b]);
      r->Set(f, t_->flux[next_ * nb + b], "erg/s/cm2/Angstrom",
             t_->bands[b] + " flux density summed over the bin (PSF-matched to MUSE)");
      r->Set(f + "_err", t_->error[next_ * nb + b], "erg/s/cm2/Angstrom", t_->bands[b] + " flux density error");
    }
    r->quality = t_->quality[next_];
    key = r->id;
    data = std::move(r);
    ++next_;
    return true;
  }
  int64_t SizeHint() const override { return static_cast<int64_t>(t_->nbins); }

 private:
  std::shared_ptr<const Table> t_;
  size_t next_ = 0;
};

std::string Replace(std::string s, const std::string& what, const std::string& with) {
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + with.size())) s.replace(p, what.size(), with);
  return s;
}

}  // namespace

namespace {

/// `v` expanded to one value per band: empty -> NaN each, one value (if `allow_one`) -> that
/// value each. The sizes have been checked (CheckOptions).
std::vector<double> PerBand(const std::vector<double>& v, size_t nb, bool allow_one) {
  if (v.empty()) return std::vector<double>(nb, kNaN);
  if (allow_one && v.size() == 1) return std::vector<double>(nb, v[0]);
  return v;
}

NoiseMode ParseNoise(const std::string& noise) {
  if (noise == "err") return NoiseMode::kErr;
  if (noise == "ivm") return NoiseMode::kIvm;
  if (noise == "estimate") return NoiseMode::kEstimate;
  if (noise == "none") return NoiseMode::kNone;
  return NoiseMode::kAuto;
}

/// Cross-parameter checks, run by `cubeflow validate` and before the node is built.
void CheckOptions(const HstMatchOptions& o, CheckReport& r) {
  const size_t nb = o.bands.size();
  if (nb == 0) r.Error("bands", "is empty; list the HST bands to match");
  for (size_t i = 0; i < nb; ++i)
    for (size_t j = i + 1; j < nb; ++j)
      if (Upper(o.bands[i]) == Upper(o.bands[j]))
        r.Error("bands", "band " + o.bands[i] + " is listed twice; list each band once");
  if (!o.images.empty() && o.images.size() != nb)
    r.Error("images", "has " + std::to_string(o.images.size()) + " entries for " + std::to_string(nb) +
                          " bands; give one file per band, in the order of `bands`");
  if (o.images.empty() && o.directory.empty())
    r.Error("directory", "is empty and so is `images`: set `directory` (with `pattern`, default hst_{band}.fits) or "
                         "`images` (one file per band)");
  auto one_per_band = [&](const char* name, const std::vector<double>& v, bool allow_one) {
    if (v.empty() || (allow_one && v.size() == 1) || v.size() == nb) return;
    r.Error(name, "has " + std::to_string(v.size()) + " values for " + std::to_string(nb) + " bands; give " +
                      (allow_one ? "one value or " : "") + "one per band");
  };
  one_per_band("zeropoints", o.zeropoints, false);
  one_per_band("pivots", o.pivots, false);
  one_per_band("psf_hst_fwhm", o.psf_hst_fwhm, true);
  // A Gaussian MUSE PSF no wider than the HST PSF cannot be reached by convolution: the
  // matching kernel would have to sharpen (BuildMatchingKernel refuses it at run time).
  if (o.psf_muse_fwhm > 0 && o.psf_shape == "gaussian")
    for (double f : o.psf_hst_fwhm)
      if (f >= o.psf_muse_fwhm) {
        r.Error("psf_hst_fwhm", "HST PSF FWHM " + Num(f) + "\" is not below psf_muse_fwhm " + Num(o.psf_muse_fwhm) +
                                    "\": matching can only broaden the HST images; check both FWHMs, or set "
                                    "psf_muse_fwhm: 0 to resample without PSF matching");
        break;
      }
}

}  // namespace

NodeSpec HstMatchNode::Spec() {
  return NodeSpec("photometry.hst_match", "HST images -> per-bin flux densities on the MUSE binning")
      .Describe(
          "For each band, one at a time: reads the HST image (SCI extension if present, else the "
          "first 2-D image; `extension`) in strips of `strip_rows` rows; converts the pixels to "
          "erg/s/cm2/A (BUNIT: e-/s, counts/s or DN/s times PHOTFLAM or the AB zero point, counts "
          "/ EXPTIME, erg/s/cm2/A[/arcsec2], Jy, MJy/sr; `unit`, `zeropoints`); smooths it on the "
          "HST grid with a small Gaussian (NaN-aware) and resamples it onto the MUSE spaxel grid "
          "through both WCSs (wcslib) by exact polygon overlap of every HST pixel with the "
          "spaxels (flux-conserving, any rotation); then convolves on the MUSE grid with the kernel "
          "that turns the HST PSF (Gaussian, psf_hst_fwhm) into the MUSE PSF (Gaussian or Moffat, "
          "psf_muse_fwhm; both effective PSFs, pixel included), computed by Fourier division "
          "(see README). Per bin: flux = sum over the bin's spaxels of the spaxel flux densities "
          "(erg/s/cm2/A, the same basis as the summed bin spectrum of binning.voronoi; `combine: "
          "mean` averages), error from the ERR (or WHT as inverse variance) extension, or "
          "estimated (background sigma per pixel from robust second differences + Poisson for "
          "electron units), plus calib_error x flux in quadrature. Bins covered less than "
          "min_coverage get NaN and kQualNoCoverage; bins whose fluxes are not all positive get "
          "kQualNonPositivePhotometry. Peak memory: one strip of the image plus a few MUSE-grid "
          "arrays per thread, whatever the mosaic size.")
      .Input("binning", Binning::kType, PortKind::kSingle,
             "the spatial binning (spaxel lists and the MUSE celestial WCS), e.g. from binning.voronoi")
      .Output("photometry", Photometry::kType, PortKind::kStream,
              "per-bin flux densities and errors in the bands (keyed by bin id, erg/s/cm2/Angstrom, pivots)")
      .Output("records", Record::kType, PortKind::kStream,
              "the same as record fields hst_<band> and hst_<band>_err, for io.write_maps")
      .Output("maps", Map::kType, PortKind::kSingle,
              "QA: the PSF-matched band images on the MUSE grid (one plane per band, "
              "erg/s/cm2/Angstrom per spaxel, NaN where covered < 50 %); not emitted with maps: false")
      .Param(&HstMatchOptions::bands, "bands", "band names, in output order")
      .Param(&HstMatchOptions::directory, "directory",
             "folder holding the images (relative to the pipeline file); used with `pattern`, "
             "and as the base of relative `images` entries")
      .Param(&HstMatchOptions::pattern, "pattern",
             "file name of each band in `directory`: {band} = the band as given, {band_lower} "
             "= lower case")
      .Param(&HstMatchOptions::images, "images",
             "explicit image file per band, same order as `bands` (overrides `pattern`; "
             "relative to `directory`, or to the working directory if that is empty)")
      .Param(&HstMatchOptions::extension, "extension",
             "image HDU: auto = SCI if present, else the first 2-D image; or a name / number")
      .Param(&HstMatchOptions::unit, "unit",
             "what the pixels are; auto = from BUNIT (an empty BUNIT with PHOTFLAM is taken "
             "as a count rate)",
             OneOf{{"auto", "count_rate", "counts", "flam", "flam_arcsec2", "jy", "mjy_sr"}})
      .Param(&HstMatchOptions::unit_scale, "unit_scale", "factor applied to the raw pixel values", AtLeast{0})
      .Param(&HstMatchOptions::zeropoints, "zeropoints",
             "AB magnitude of 1 count/s per band (same order as bands); empty = PHOTFLAM from "
             "the header; NaN entries = PHOTFLAM for that band",
             Unit{"AB mag"})
      .Param(&HstMatchOptions::pivots, "pivots",
             "pivot wavelengths per band; empty = PHOTPLAM from the header, else the built-in "
             "filter curve of the band name",
             Unit{"Angstrom"})
      .Param(&HstMatchOptions::psf_muse_fwhm, "psf_muse_fwhm",
             "FWHM of the MUSE PSF of the cube (as measured on its images, spaxel included); "
             "0 = no PSF matching (e.g. mock data without a PSF)",
             InRange{0, 10}, Unit{"arcsec"})
      .Param(&HstMatchOptions::psf_shape, "psf_shape", "MUSE PSF profile", OneOf{{"gaussian", "moffat"}})
      .Param(&HstMatchOptions::moffat_beta, "moffat_beta", "Moffat beta (psf_shape: moffat)", InRange{1.05, 20})
      .Param(&HstMatchOptions::psf_hst_fwhm, "psf_hst_fwhm",
             "FWHM of the (Gaussian) HST PSF on the images: one value, or one per band", AtLeast{0},
             Unit{"arcsec"})
      .Param(&HstMatchOptions::noise, "noise",
             "per-pixel errors: err = ERR extension (sigma), ivm = weight extension as "
             "inverse variance, estimate = background from the image + Poisson (electron "
             "units with EXPTIME), none; auto = err if an ERR extension exists, else estimate",
             OneOf{{"auto", "err", "ivm", "estimate", "none"}})
      .Param(&HstMatchOptions::error_extension, "error_extension",
             "extension holding the errors (\"\" = ERR for err/auto, WHT for ivm)")
      .Param(&HstMatchOptions::noise_correlation, "noise_correlation",
             "variance factor for the background errors of bin sums (correlated noise of "
             "drizzled images, which per-pixel errors miss; 1 = uncorrelated)",
             AtLeast{1.0})
      .Param(&HstMatchOptions::poisson, "poisson",
             "noise: estimate adds the source Poisson term max(S, 0) / EXPTIME for images in "
             "electrons (count rate or counts with EXPTIME); false if EXPTIME does not describe "
             "the image's noise")
      .Param(&HstMatchOptions::calib_error, "calib_error",
             "fractional calibration error added in quadrature to every bin flux", InRange{0, 1})
      .Param(&HstMatchOptions::min_coverage, "min_coverage",
             "minimum fraction of a bin covered by valid HST pixels; below it the band's flux is NaN", InRange{0, 1})
      .Param(&HstMatchOptions::combine, "combine",
             "sum = total flux density of the bin (like the summed bin spectrum); mean = per spaxel",
             OneOf{{"sum", "mean"}})
      .Param(&HstMatchOptions::strip_rows, "strip_rows",
             "HST rows read and smoothed per block, at most (memory ~ strip_rows x image width x 40 bytes; "
             "images wider than 1536 pixels use fewer rows, about 3 MiB per working array)",
             InRange{1, 1 << 20}, Unit{"pixels"})
      .Param(&HstMatchOptions::maps, "maps",
             "emit the QA maps (nbands x nx x ny doubles); false: leave `maps` unconnected")
      .Check<HstMatchOptions>(CheckOptions)
      .Concurrent(Concurrency::kSerial);
}

HstMatchNode::HstMatchNode(const Options& o) : opt_(o) {
  CheckReport report;
  CheckOptions(o, report);
  if (report.has_errors()) throw Error(report.ErrorText());
  const size_t nb = o.bands.size();
  const std::string dir = o.directory.string();
  const std::vector<double> zps = PerBand(o.zeropoints, nb, false);
  const std::vector<double> pivots = PerBand(o.pivots, nb, false);
  const std::vector<double> hst_fwhm = PerBand(o.psf_hst_fwhm, nb, true);
  PsfOptions psf;
  psf.muse_fwhm = o.psf_muse_fwhm;
  psf.shape = o.psf_shape == "moffat" ? PsfShape::kMoffat : PsfShape::kGaussian;
  psf.beta = o.moffat_beta;
  const NoiseMode mode = ParseNoise(o.noise);
  for (size_t b = 0; b < nb; ++b) {
    std::string path;
    if (!o.images.empty()) {
      std::filesystem::path f(o.images[b]);
      if (f.is_relative() && !dir.empty()) f = std::filesystem::path(dir) / f;
      path = f.lexically_normal().string();
    } else {
      const std::string name = Replace(Replace(o.pattern, "{band_lower}", Lower(o.bands[b])), "{band}", o.bands[b]);
      path = (std::filesystem::path(dir) / name).lexically_normal().string();
    }
    paths_.push_back(path);
    BandOptions bo;
    bo.band = o.bands[b];
    bo.path = path;
    bo.extension = o.extension;
    bo.calib.unit = o.unit;
    bo.calib.unit_scale = o.unit_scale;
    bo.calib.zeropoint = zps[b];
    bo.calib.pivot = pivots[b];
    bo.noise = mode;
    bo.error_extension = o.error_extension;
    bo.noise_correlation = o.noise_correlation;
    bo.poisson = o.poisson;
    bo.psf = psf;
    bo.psf.hst_fwhm = std::isfinite(hst_fwhm[b]) ? hst_fwhm[b] : PsfOptions{}.hst_fwhm;
    bo.strip_rows = o.strip_rows;
    band_options_.push_back(bo);
  }
}

void HstMatchNode::Process(ProcessContext& ctx) {
  auto binning = ctx.Input<Binning>("binning");
  if (binning->wcs.empty())
    throw Error("the binning carries no celestial WCS (the cube had none): cannot place the HST images on the MUSE "
                "grid; the cube needs CTYPE1/2, CRVAL, CRPIX and CD/CDELT keywords");
  const std::vector<std::string>& bands = opt_.bands;
  const size_t nb = bands.size(), nbins = binning->bins.size();
  // Every file first, so that all missing bands are reported at once.
  std::vector<std::string> missing;
  for (size_t b = 0; b < nb; ++b) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(paths_[b], ec))
      missing.push_back(bands[b] + " (" + paths_[b] + (std::filesystem::exists(paths_[b], ec) ? ": not a file" : ": no such file") + ")");
  }
  if (!missing.empty()) {
    std::string m = "missing image for band";
    m += missing.size() > 1 ? "s " : " ";
    for (size_t i = 0; i < missing.size(); ++i) m += (i ? ", " : "") + missing[i];
    m += "; put the files there, set `directory`/`pattern` or `images`, or drop the band from `bands`";
    throw Error(m);
  }
  MuseGrid grid{binning->nx, binning->ny, binning->wcs};
  auto table = std::make_shared<Table>();
  table->bands = bands;
  table->nbins = nbins;
  table->flux.assign(nbins * nb, kNaN);
  table->error.assign(nbins * nb, kNaN);
  table->quality.assign(nbins, 0);
  std::shared_ptr<Map> qa;
  const size_t nsp = static_cast<size_t>(grid.nx * grid.ny);
  if (opt_.maps) {
    qa = std::make_shared<Map>();
    qa->name = "HST_FLUX";
    qa->bunit = "erg/s/cm2/Angstrom";
    qa->nx = grid.nx;
    qa->ny = grid.ny;
    qa->nplanes = static_cast<int64_t>(nb);
    qa->plane_names = bands;
    qa->wcs = binning->wcs;
    qa->data.assign(nsp * nb, kNaN);
    qa->header["PSFMUSE"] = Num(band_options_[0].psf.muse_fwhm, 6);
    qa->header["PSFSHAPE"] = band_options_[0].psf.shape == PsfShape::kGaussian ? "GAUSSIAN" : "MOFFAT";
  }
  auto log = [&ctx](LogLevel l, const std::string& m) { ctx.Log(l, m); };
  std::vector<size_t> nocov(nb, 0);
  for (size_t b = 0; b < nb; ++b) {
    auto r = ProcessBand(grid, band_options_[b], log);
    if (!r.ok()) throw Error(r.status().message());
    const BandImage& band = *r;
    table->pivots.push_back(band.pivot);
    const BinSums s = SumBins(*binning, band, opt_.min_coverage, opt_.combine == "mean");
    for (size_t k = 0; k < nbins; ++k) {
      const double f = s.flux[k];
      table->flux[k * nb + b] = f;
      table->error[k * nb + b] = std::isfinite(f) ? std::sqrt(s.var[k] + opt_.calib_error * opt_.calib_error * f * f) : kNaN;
      if (!std::isfinite(f)) {
        table->quality[k] |= kQualNoCoverage;
        ++nocov[b];
      }
    }
    if (qa) {
      double* plane = qa->data.data() + b * nsp;
      for (size_t i = 0; i < nsp; ++i)
        if (band.coverage[i] >= 0.5) plane[i] = band.flux[i];
      qa->header["PIVOT" + std::to_string(b + 1)] = Num(band.pivot, 8);
    }
  }
  size_t nonpos = 0;
  for (size_t k = 0; k < nbins; ++k) {
    bool all_pos = true;
    for (size_t b = 0; b < nb; ++b) all_pos = all_pos && table->flux[k * nb + b] > 0;
    if (!all_pos) {
      table->quality[k] |= kQualNonPositivePhotometry;
      ++nonpos;
    }
  }
  std::ostringstream m;
  m << nbins << " bins, " << nb << " bands; " << nonpos << " bins with a non-positive or missing flux";
  for (size_t b = 0; b < nb; ++b)
    if (nocov[b]) m << "; " << bands[b] << ": " << nocov[b] << " bins below min_coverage " << opt_.min_coverage;
  ctx.Log(nonpos ? LogLevel::kWarn : LogLevel::kInfo, m.str());
  if (qa) ctx.Emit("maps", qa);
  std::shared_ptr<const Table> t = table;
  ctx.EmitStream("photometry", std::make_shared<PhotometrySource>(t));
  ctx.EmitStream("records", std::make_shared<RecordSource>(t));
}

}  // namespace cubeflow::photometry
