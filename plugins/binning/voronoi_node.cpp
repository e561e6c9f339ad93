// binning.voronoi: per-spaxel S/N in a window, Voronoi binning, bin spectra. See voronoi_node.hpp.

#include "voronoi_node.hpp"

#include <fitsio.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "cubeflow/fits/cfitsio_error.hpp"
#include "cubeflow/fits/units.hpp"
#include "cubeflow/spectral/snr.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::binning {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Fixed-point formatting of header values and log figures ("%.1f" by default).
std::string Fmt(double v, int prec = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

}  // namespace

std::vector<uint8_t> ReadMaskFits(const std::string& path, int64_t nx, int64_t ny) {
  fitsfile* fp = nullptr;
  int status = 0;
  auto fail = [&](const std::string& what) {
    const std::string cfitsio = status ? " (" + fits::CfitsioErrorText(status) + ")" : "";
    int st2 = 0;
    if (fp) fits_close_file(fp, &st2);
    throw Error("mask '" + path + "': " + what + cfitsio +
                "; give a FITS image of the cube's spatial size (nonzero = excluded) or mask: \"\"");
  };
  if (fits_open_image(&fp, path.c_str(), READONLY, &status)) fail("cannot open an image HDU");
  int naxis = 0;
  long dims[3] = {0, 0, 0};
  if (fits_get_img_dim(fp, &naxis, &status) || fits_get_img_size(fp, 3, dims, &status))
    fail("cannot read the image size");
  if (naxis < 2 || (naxis == 3 && dims[2] != 1) || naxis > 3 || dims[0] != nx || dims[1] != ny) {
    status = 0;
    fail("shape " + std::to_string(dims[0]) + "x" + std::to_string(dims[1]) +
         (naxis > 2 ? "x" + std::to_string(dims[2]) : "") + " does not match the cube's " +
         std::to_string(nx) + "x" + std::to_string(ny));
  }
  std::vector<double> buf(static_cast<size_t>(nx * ny));
  long first[3] = {1, 1, 1};
  double nulval = kNaN;
  int anynul = 0;
  if (fits_read_pix(fp, TDOUBLE, first, static_cast<LONGLONG>(buf.size()), &nulval, buf.data(), &anynul, &status))
    fail("cannot read the pixels");
  fits_close_file(fp, &status);
  std::vector<uint8_t> mask(buf.size());
  for (size_t i = 0; i < buf.size(); ++i) mask[i] = (buf[i] != 0.0 || std::isnan(buf[i])) ? 1 : 0;
  return mask;
}

BinSpectraSource::BinSpectraSource(std::shared_ptr<const Cube> cube, std::shared_ptr<const Binning> binning,
                                   double covariance_alpha, std::vector<double> spaxel_noise)
    : cube_(std::move(cube)), binning_(std::move(binning)), alpha_(covariance_alpha),
      spaxel_noise_(std::move(spaxel_noise)) {}

bool BinSpectraSource::Next(int64_t& key, std::shared_ptr<const Data>& data) {
  if (next_ >= binning_->bins.size()) return false;
  key = static_cast<int64_t>(next_);
  data = Make(next_);
  ++next_;
  return true;
}

std::shared_ptr<Spectrum> BinSpectraSource::Make(size_t b) const {
  const Cube& c = *cube_;
  const Binning::Bin& bin = binning_->bins.at(b);
  const size_t nw = static_cast<size_t>(c.nwave);
  const size_t plane = static_cast<size_t>(c.nx * c.ny);
  const bool have_var = !c.variance.empty();
  const bool have_mask = !c.mask.empty() && c.mask.size() == c.flux.size();
  auto sp = std::make_shared<Spectrum>();
  sp->id = static_cast<int64_t>(b);
  sp->wave = c.wave;
  sp->flux.assign(nw, 0.0);
  sp->variance.assign(nw, 0.0);
  sp->mask.assign(nw, 0);
  std::vector<int32_t> count(nw, 0);
  for (int32_t s : bin.spaxels) {
    const double sn2 = (!have_var && static_cast<size_t>(s) < spaxel_noise_.size())
                           ? spaxel_noise_[s] * spaxel_noise_[s]
                           : 0.0;
    for (size_t k = 0; k < nw; ++k) {
      const size_t idx = k * plane + static_cast<size_t>(s);
      const double fl = c.flux[idx];
      if (!std::isfinite(fl) || (have_mask && c.mask[idx])) continue;
      double va = sn2;
      if (have_var) {
        va = c.variance[idx];
        if (!std::isfinite(va) || va < 0) continue;
      }
      sp->flux[k] += fl;
      sp->variance[k] += va;
      ++count[k];
    }
  }
  const double n = static_cast<double>(bin.spaxels.size());
  const double cov = (n > 1 && alpha_ != 0) ? 1.0 + alpha_ * std::log10(n) : 1.0;
  for (size_t k = 0; k < nw; ++k) {
    if (count[k] == 0) {
      sp->mask[k] = 1;
      sp->flux[k] = 0;
      sp->variance[k] = 0;
      continue;
    }
    const double scale = n / count[k];
    sp->flux[k] *= scale;
    sp->variance[k] *= scale * scale * cov * cov;
  }
  sp->meta["x"] = bin.x;
  sp->meta["y"] = bin.y;
  sp->meta["nspax"] = static_cast<double>(bin.nspax);
  sp->meta["snr"] = bin.snr;
  sp->meta["signal"] = bin.signal;
  sp->meta["noise"] = bin.noise;
  // Flux unit of the cube relative to erg/s/cm2/A (e.g. 1e-20 for MUSE cubes), so that
  // photometry in physical units can be put on the same scale (inference.cnn does).
  if (const auto u = fits::FluxDensityScale(c.bunit); u.ok()) sp->meta["bunit_scale"] = *u;
  return sp;
}

NodeSpec VoronoiNode::Spec() {
  return NodeSpec("binning.voronoi", "Adaptive Voronoi binning of a cube to a target S/N")
      .Describe(
          "Cappellari & Copin (2003) bin accretion followed by a centroidal Voronoi tessellation "
          "(method: cvt) or the weighted variant of Diehl & Statler (2006) (method: wvt). Signal "
          "and noise per spaxel are the median flux and sqrt(median variance) over the pixels of "
          "[wave_min, wave_max] (cut to the cube's range). Spaxels with no valid pixel, "
          "non-positive variance, a nonzero user mask or S/N below min_snr get BINID -1. The "
          "noise of a bin of N spaxels is sqrt(sum var) * (1 + covariance_alpha log10 N) "
          "(MUSE spatial covariance); target_snr applies to that corrected S/N. Bins ending "
          "below min_fraction * target_snr are merged into their neighbours. Scales to 1000x1000 "
          "fields (k-d tree look-ups, about N log N).")
      .Input("cube", Cube::kType, PortKind::kSingle, "cube to bin (flux, variance)")
      .Output("binning", Binning::kType, PortKind::kSingle,
              "BINID map, light-weighted centroids, nspax, signal/noise/S/N and spaxel list per bin")
      .Output("binid", Map::kType, PortKind::kSingle, "BINID map (-1 = not binned) for products")
      .Output("spectra", Spectrum::kType, PortKind::kStream,
              "one spectrum per bin (keyed by bin id): summed flux, covariance-corrected summed "
              "variance, mask where no spaxel contributes; meta x, y, nspax, snr; built lazily")
      .Param(&Options::target_snr, "target_snr", "S/N each bin should reach (after the covariance correction)",
             AtLeast{1e-3})
      .Param(&Options::min_snr, "min_snr", "spaxels with lower S/N are left out (BINID -1)", AtLeast{0.0})
      .Param(&Options::wave_min, "wave_min", "start of the S/N window (cube frame)", Unit{"Angstrom"})
      .Param(&Options::wave_max, "wave_max", "end of the S/N window (cube frame)", Unit{"Angstrom"})
      .Param(&Options::mask, "mask", "optional FITS image nx x ny: nonzero = spaxel excluded")
      .Param(&Options::covariance_alpha, "covariance_alpha",
             "noise *= 1 + alpha log10 N for a bin of N spaxels (0 = none)", AtLeast{0.0})
      .Param(&Options::method, "method", "tessellation after accretion", OneOf{{"cvt", "wvt"}})
      .Param(&Options::max_iter, "max_iter", "maximum tessellation iterations (0 = accretion only)",
             InRange{0, 10000})
      .Param(&Options::min_fraction, "min_fraction", "bins below min_fraction * target_snr are merged into neighbours",
             InRange{0.0, 1.0})
      .Check<Options>([](const Options& o, CheckReport& r) {
        if (!(o.wave_max > o.wave_min))
          r.Error("wave_max", "must be above wave_min (" + Num(o.wave_min) + " Angstrom), got " + Num(o.wave_max) +
                                  ": the S/N window [wave_min, wave_max] is empty; set wave_min < wave_max");
      })
      .Concurrent(Concurrency::kSerial);
}

VoronoiOptions VoronoiNodeOptions::ToLibrary() const {
  VoronoiOptions o;
  o.target_snr = target_snr;
  o.covariance_alpha = covariance_alpha;
  o.method = method == "wvt" ? VoronoiMethod::kWvt : VoronoiMethod::kCvt;
  o.max_iter = max_iter;
  o.pixel_size = 1.0;
  o.min_fraction = min_fraction;
  return o;
}

VoronoiNode::VoronoiNode(const Options& options) : options_(options) {}

namespace {

/// The spaxels that take part in the binning, as points for VoronoiBin.
struct Points {
  std::vector<double> x, y, signal, noise;
  std::vector<int32_t> spaxel;  ///< point -> spaxel index y * nx + x
  size_t n_invalid = 0, n_masked = 0, n_low = 0;
  /// "N without valid data, N masked, N below min_snr X" for messages.
  std::string Excluded(double min_snr) const {
    return std::to_string(n_invalid) + " without valid data, " + std::to_string(n_masked) + " masked, " +
           std::to_string(n_low) + " below min_snr " + Fmt(min_snr, 2);
  }
};

/// Spaxels with a valid signal and noise, not masked and at or above min_snr.
Points SelectSpaxels(const spectral::SpaxelSnr& snr, const std::vector<uint8_t>& user_mask, int64_t nx,
                     double min_snr) {
  Points p;
  for (size_t s = 0; s < snr.signal.size(); ++s) {
    const double sig = snr.signal[s], noi = snr.noise[s];
    if (!std::isfinite(sig) || !std::isfinite(noi) || !(noi > 0)) {
      ++p.n_invalid;
      continue;
    }
    if (!user_mask.empty() && user_mask[s]) {
      ++p.n_masked;
      continue;
    }
    if (!(sig / noi >= min_snr)) {
      ++p.n_low;
      continue;
    }
    p.x.push_back(static_cast<double>(static_cast<int64_t>(s) % nx));
    p.y.push_back(static_cast<double>(static_cast<int64_t>(s) / nx));
    p.signal.push_back(sig);
    p.noise.push_back(noi);
    p.spaxel.push_back(static_cast<int32_t>(s));
  }
  return p;
}

/// The Binning of the cube's spaxels from VoronoiBin's result over `p`.
std::shared_ptr<Binning> MakeBinning(const Cube& cube, const Points& p, const VoronoiResult& vr) {
  auto binning = std::make_shared<Binning>();
  binning->nx = cube.nx;
  binning->ny = cube.ny;
  binning->wcs = cube.wcs;
  binning->binid.assign(static_cast<size_t>(cube.nx * cube.ny), -1);
  binning->bins.resize(vr.nbins());
  for (size_t i = 0; i < p.x.size(); ++i) {
    binning->binid[p.spaxel[i]] = vr.bin[i];
    binning->bins[vr.bin[i]].spaxels.push_back(p.spaxel[i]);  // increasing spaxel order
  }
  for (size_t k = 0; k < vr.nbins(); ++k) {
    Binning::Bin& b = binning->bins[k];
    b.x = vr.xbar[k];
    b.y = vr.ybar[k];
    b.nspax = vr.nspax[k];
    b.signal = vr.signal[k];
    b.noise = vr.noise[k];
    b.snr = vr.snr[k];
  }
  return binning;
}

/// The BINID map product, with the binning's settings in its header.
std::shared_ptr<Map> MakeBinidMap(const Cube& cube, const Binning& binning, const VoronoiNodeOptions& o,
                                  const spectral::ChannelWindow& window) {
  auto binid = std::make_shared<Map>();
  binid->name = "BINID";
  binid->kind = "index";  // written as int32 (HDUCLAS2 = INDEX)
  binid->nx = cube.nx;
  binid->ny = cube.ny;
  binid->wcs = cube.wcs;
  binid->data.assign(binning.binid.begin(), binning.binid.end());
  binid->header["BINMETH"] = o.method == "wvt" ? "VORONOI-WVT" : "VORONOI-CVT";
  binid->header["TARGSNR"] = Fmt(o.target_snr, 3);
  binid->header["SNRWMIN"] = Fmt(window.wave_lo, 2);
  binid->header["SNRWMAX"] = Fmt(window.wave_hi, 2);
  binid->header["COVALPHA"] = Fmt(o.covariance_alpha, 3);
  return binid;
}

}  // namespace

void VoronoiNode::Process(ProcessContext& ctx) {
  auto cube = ctx.Input<Cube>("cube");
  const Options& o = options_;

  // 1. Signal and noise per spaxel: median flux / sqrt(median variance), as vorbin and nGIST.
  spectral::SnrOptions so;
  so.wave_min = o.wave_min;
  so.wave_max = o.wave_max;
  so.definition = spectral::SnrDefinition::kPixelMedian;
  so.noise = cube->variance.empty() ? spectral::NoiseSource::kDerSnr : spectral::NoiseSource::kVariance;
  Result<spectral::SpaxelSnr> snr_or = spectral::ComputeSpaxelSnr(*cube, so);
  if (!snr_or.ok()) throw Error(snr_or.status().message());
  const spectral::SpaxelSnr& snr = *snr_or;
  const spectral::ChannelWindow& window = snr.window;
  const bool noise_estimated = so.noise == spectral::NoiseSource::kDerSnr;
  if (window.clipped)
    ctx.Log(LogLevel::kWarn, "S/N window " + Fmt(o.wave_min) + "-" + Fmt(o.wave_max) +
                                 " A cut to the cube's range: using " + Fmt(window.wave_lo) + "-" +
                                 Fmt(window.wave_hi) + " A");
  if (noise_estimated) ctx.Log(LogLevel::kWarn, "cube has no variance: noise estimated from the flux (DER_SNR)");

  // 2. The spaxels to bin.
  std::vector<uint8_t> user_mask;
  if (!o.mask.empty()) user_mask = ReadMaskFits(o.mask.string(), cube->nx, cube->ny);
  const Points p = SelectSpaxels(snr, user_mask, cube->nx, o.min_snr);
  const std::string excluded = p.Excluded(o.min_snr);
  if (p.x.empty())
    throw Error("no spaxel to bin in " + Fmt(window.wave_lo) + "-" + Fmt(window.wave_hi) + " A (" + excluded +
                "); lower min_snr or move the window");

  // 3. Voronoi binning.
  VoronoiResult vr;
  try {
    vr = VoronoiBin(p.x, p.y, p.signal, p.noise, o.ToLibrary());
  } catch (const std::invalid_argument& e) {
    throw Error(e.what());
  }
  if (vr.single_bin)
    ctx.Log(LogLevel::kWarn, "all " + std::to_string(p.x.size()) + " spaxels together reach S/N " +
                                 Fmt(vr.snr[0], 2) + ", below " + Fmt(o.min_fraction, 2) + " x target " +
                                 Fmt(o.target_snr, 2) + ": they form a single bin");

  // 4. Products.
  auto binning = MakeBinning(*cube, p, vr);
  auto binid = MakeBinidMap(*cube, *binning, o, window);
  const VoronoiQuality q = EvaluateBinning(p.x, p.y, vr, o.target_snr);
  ctx.Log(LogLevel::kInfo, std::to_string(p.x.size()) + " spaxels in " + std::to_string(vr.nbins()) + " bins (" +
                               excluded + "); S/N / target: scatter " + Fmt(100 * q.scatter, 1) + "%, min " +
                               Fmt(q.min_ratio, 2) + ", max " + Fmt(q.max_ratio, 2) + "; window " +
                               Fmt(window.wave_lo) + "-" + Fmt(window.wave_hi) + " A");

  std::vector<double> spaxel_noise;
  if (noise_estimated) spaxel_noise = snr.noise;
  ctx.Emit("binning", binning);
  ctx.Emit("binid", binid);
  ctx.EmitStream("spectra", std::make_shared<BinSpectraSource>(cube, binning, o.covariance_alpha,
                                                               std::move(spaxel_noise)));
}

}  // namespace cubeflow::binning
