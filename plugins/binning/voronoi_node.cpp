// binning.voronoi: per-spaxel S/N in a window, Voronoi binning, bin spectra. See voronoi_node.hpp.

#include "voronoi_node.hpp"

#include "cubeflow/fits/units.hpp"

#include <fitsio.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace cubeflow::binning {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double Median(std::vector<double>& v) {
  const size_t n = v.size();
  const size_t h = n / 2;
  std::nth_element(v.begin(), v.begin() + h, v.end());
  const double hi = v[h];
  if (n % 2) return hi;
  return 0.5 * (hi + *std::max_element(v.begin(), v.begin() + h));
}

std::string Fmt(double v, int prec = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

}  // namespace

SpaxelSnr ComputeSpaxelSnr(const Cube& cube, double wave_min, double wave_max) {
  if (cube.nx <= 0 || cube.ny <= 0 || cube.nwave <= 0)
    throw Error("binning.voronoi: the cube is empty");
  const size_t nspax = static_cast<size_t>(cube.nx * cube.ny);
  if (cube.flux.size() != nspax * static_cast<size_t>(cube.nwave))
    throw Error("binning.voronoi: cube flux has the wrong size");
  const bool have_var = !cube.variance.empty();
  if (have_var && cube.variance.size() != cube.flux.size())
    throw Error("binning.voronoi: cube variance has the wrong size");
  const bool have_mask = !cube.mask.empty() && cube.mask.size() == cube.flux.size();
  if (!(wave_max > wave_min))
    throw Error("binning.voronoi: wave_max (" + Fmt(wave_max) + ") must exceed wave_min (" +
                Fmt(wave_min) + ")");

  const double lo_cube = std::min(cube.wave.At(0), cube.wave.At(cube.nwave - 1));
  const double hi_cube = std::max(cube.wave.At(0), cube.wave.At(cube.nwave - 1));
  SpaxelSnr out;
  const double p0 = cube.wave.PixelOf(wave_min), p1 = cube.wave.PixelOf(wave_max);
  int64_t k0 = static_cast<int64_t>(std::ceil(std::min(p0, p1) - 1e-9));
  int64_t k1 = static_cast<int64_t>(std::floor(std::max(p0, p1) + 1e-9));
  out.clipped = k0 < 0 || k1 > cube.nwave - 1;
  k0 = std::max<int64_t>(k0, 0);
  k1 = std::min<int64_t>(k1, cube.nwave - 1);
  if (k1 < k0)
    throw Error("binning.voronoi: the S/N window " + Fmt(wave_min) + "-" + Fmt(wave_max) +
                " A lies outside the cube's wavelength range " + Fmt(lo_cube) + "-" + Fmt(hi_cube) +
                " A; set wave_min/wave_max inside it");
  out.k0 = k0;
  out.k1 = k1;
  out.wave_lo = std::min(cube.wave.At(k0), cube.wave.At(k1));
  out.wave_hi = std::max(cube.wave.At(k0), cube.wave.At(k1));
  out.noise_estimated = !have_var;
  out.signal.assign(nspax, kNaN);
  out.noise.assign(nspax, kNaN);

  std::vector<double> f, v;
  const size_t plane = nspax;
  for (size_t s = 0; s < nspax; ++s) {
    f.clear();
    v.clear();
    for (int64_t k = k0; k <= k1; ++k) {
      const size_t idx = static_cast<size_t>(k) * plane + s;
      const double fl = cube.flux[idx];
      if (!std::isfinite(fl)) continue;
      if (have_mask && cube.mask[idx]) continue;
      if (have_var) {
        const double va = cube.variance[idx];
        if (!std::isfinite(va) || !(va > 0)) continue;
        v.push_back(va);
      }
      f.push_back(fl);
    }
    if (f.empty()) continue;
    if (have_var) {
      out.noise[s] = std::sqrt(Median(v));
    } else {
      // DER_SNR: noise = 1.482602 / sqrt(6) * median(|2 f_i - f_{i-2} - f_{i+2}|).
      if (f.size() < 5) continue;
      std::vector<double> d;
      d.reserve(f.size());
      for (size_t i = 2; i + 2 < f.size(); ++i) d.push_back(std::abs(2 * f[i] - f[i - 2] - f[i + 2]));
      out.noise[s] = 1.482602 / std::sqrt(6.0) * Median(d);
    }
    out.signal[s] = Median(f);
  }
  return out;
}

std::vector<uint8_t> ReadMaskFits(const std::string& path, int64_t nx, int64_t ny) {
  fitsfile* fp = nullptr;
  int status = 0;
  auto fail = [&](const std::string& what) {
    char msg[FLEN_STATUS] = {0};
    if (status) fits_get_errstatus(status, msg);
    int st2 = 0;
    if (fp) fits_close_file(fp, &st2);
    throw Error("binning.voronoi: mask '" + path + "': " + what + (status ? std::string(" (") + msg + ")" : ""));
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
      .Param(ParamSpec::Double("target_snr", 35.0).Min(1e-3).Doc("S/N each bin should reach (after the covariance correction)"))
      .Param(ParamSpec::Double("min_snr", 1.0).Min(0.0).Doc("spaxels with lower S/N are left out (BINID -1)"))
      .Param(ParamSpec::Double("wave_min", 5300.0).Unit("Angstrom").Doc("start of the S/N window (cube frame)"))
      .Param(ParamSpec::Double("wave_max", 5500.0).Unit("Angstrom").Doc("end of the S/N window (cube frame)"))
      .Param(ParamSpec::Path("mask", "").Doc("optional FITS image nx x ny: nonzero = spaxel excluded"))
      .Param(ParamSpec::Double("covariance_alpha", 1.07).Min(0.0).Doc("noise *= 1 + alpha log10 N for a bin of N spaxels (0 = none)"))
      .Param(ParamSpec::String("method", "cvt").Choices({"cvt", "wvt"}).Doc("tessellation after accretion"))
      .Param(ParamSpec::Int("max_iter", 30).Range(0, 10000).Doc("maximum tessellation iterations (0 = accretion only)"))
      .Param(ParamSpec::Double("min_fraction", 0.8).Range(0.0, 1.0).Doc("bins below min_fraction * target_snr are merged into neighbours"))
      .Concurrent(Concurrency::kSerial);
}

VoronoiNode::VoronoiNode(const Params& p)
    : target_snr_(p.GetDouble("target_snr")),
      min_snr_(p.GetDouble("min_snr")),
      wave_min_(p.GetDouble("wave_min")),
      wave_max_(p.GetDouble("wave_max")),
      alpha_(p.GetDouble("covariance_alpha")),
      min_fraction_(p.GetDouble("min_fraction")),
      mask_path_(p.GetString("mask")),
      method_(p.GetString("method") == "wvt" ? VoronoiMethod::kWvt : VoronoiMethod::kCvt),
      max_iter_(static_cast<int>(p.GetInt("max_iter"))) {}

void VoronoiNode::Process(ProcessContext& ctx) {
  auto cube = ctx.Input<Cube>("cube");
  const int64_t nx = cube->nx, ny = cube->ny;
  const SpaxelSnr snr = ComputeSpaxelSnr(*cube, wave_min_, wave_max_);
  if (snr.clipped)
    ctx.Log(LogLevel::kWarn, "S/N window " + Fmt(wave_min_) + "-" + Fmt(wave_max_) +
                                 " A cut to the cube's range: using " + Fmt(snr.wave_lo) + "-" +
                                 Fmt(snr.wave_hi) + " A");
  if (snr.noise_estimated)
    ctx.Log(LogLevel::kWarn, "cube has no variance: noise estimated from the flux (DER_SNR)");

  std::vector<uint8_t> user_mask;
  if (!mask_path_.empty()) user_mask = ReadMaskFits(mask_path_, nx, ny);

  const size_t nspax = static_cast<size_t>(nx * ny);
  std::vector<double> xs, ys, ss, ns;
  std::vector<int32_t> index;  // point -> spaxel
  size_t n_nan = 0, n_masked = 0, n_low = 0;
  for (size_t s = 0; s < nspax; ++s) {
    const double sig = snr.signal[s], noi = snr.noise[s];
    if (!std::isfinite(sig) || !std::isfinite(noi) || !(noi > 0)) {
      ++n_nan;
      continue;
    }
    if (!user_mask.empty() && user_mask[s]) {
      ++n_masked;
      continue;
    }
    if (!(sig / noi >= min_snr_)) {
      ++n_low;
      continue;
    }
    xs.push_back(static_cast<double>(s % nx));
    ys.push_back(static_cast<double>(s / nx));
    ss.push_back(sig);
    ns.push_back(noi);
    index.push_back(static_cast<int32_t>(s));
  }
  const std::string excluded = std::to_string(n_nan) + " without valid data, " + std::to_string(n_masked) +
                               " masked, " + std::to_string(n_low) + " below min_snr " + Fmt(min_snr_, 2);
  if (xs.empty())
    throw Error("binning.voronoi: no spaxel to bin in " + Fmt(snr.wave_lo) + "-" + Fmt(snr.wave_hi) +
                " A (" + excluded + "); lower min_snr or move the window");

  VoronoiOptions opt;
  opt.target_snr = target_snr_;
  opt.covariance_alpha = alpha_;
  opt.method = method_;
  opt.max_iter = max_iter_;
  opt.pixel_size = 1.0;
  opt.min_fraction = min_fraction_;
  VoronoiResult vr;
  try {
    vr = VoronoiBin(xs, ys, ss, ns, opt);
  } catch (const std::invalid_argument& e) {
    throw Error(std::string("binning.voronoi: ") + e.what());
  }
  if (vr.single_bin)
    ctx.Log(LogLevel::kWarn, "all " + std::to_string(xs.size()) + " spaxels together reach S/N " +
                                 Fmt(vr.snr[0], 2) + ", below " + Fmt(min_fraction_, 2) + " x target " +
                                 Fmt(target_snr_, 2) + ": they form a single bin");

  auto binning = std::make_shared<Binning>();
  binning->nx = nx;
  binning->ny = ny;
  binning->wcs = cube->wcs;
  binning->binid.assign(nspax, -1);
  binning->bins.resize(vr.nbins());
  for (size_t i = 0; i < xs.size(); ++i) {
    binning->binid[index[i]] = vr.bin[i];
    binning->bins[vr.bin[i]].spaxels.push_back(index[i]);  // increasing spaxel order
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

  auto binid = std::make_shared<Map>();
  binid->name = "BINID";
  binid->kind = "index";  // written as int32 (HDUCLAS2 = INDEX)
  binid->nx = nx;
  binid->ny = ny;
  binid->wcs = cube->wcs;
  binid->data.assign(binning->binid.begin(), binning->binid.end());
  binid->header["BINMETH"] = method_ == VoronoiMethod::kWvt ? "VORONOI-WVT" : "VORONOI-CVT";
  binid->header["TARGSNR"] = Fmt(target_snr_, 3);
  binid->header["SNRWMIN"] = Fmt(snr.wave_lo, 2);
  binid->header["SNRWMAX"] = Fmt(snr.wave_hi, 2);
  binid->header["COVALPHA"] = Fmt(alpha_, 3);

  const VoronoiQuality q = EvaluateBinning(xs, ys, vr, target_snr_);
  ctx.Log(LogLevel::kInfo, std::to_string(xs.size()) + " spaxels in " + std::to_string(vr.nbins()) +
                               " bins (" + excluded + "); S/N / target: scatter " + Fmt(100 * q.scatter, 1) +
                               "%, min " + Fmt(q.min_ratio, 2) + ", max " + Fmt(q.max_ratio, 2) +
                               "; window " + Fmt(snr.wave_lo) + "-" + Fmt(snr.wave_hi) + " A");

  std::vector<double> spaxel_noise;
  if (snr.noise_estimated) spaxel_noise = snr.noise;
  ctx.Emit("binning", binning);
  ctx.Emit("binid", binid);
  ctx.EmitStream("spectra", std::make_shared<BinSpectraSource>(cube, binning, alpha_, std::move(spaxel_noise)));
}

}  // namespace cubeflow::binning
