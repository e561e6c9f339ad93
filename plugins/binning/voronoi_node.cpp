// binning.voronoi: per-spaxel S/N in a window, Voronoi binning, bin spectra. See voronoi_node.hpp.

#include "voronoi_node.hpp"

#include <fitsio.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <unistd.h>

#include "cubeflow/cube_blocks.hpp"
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
                                   double covariance_alpha, std::vector<double> spaxel_noise, size_t block_bytes)
    : cube_(std::move(cube)), binning_(std::move(binning)), alpha_(covariance_alpha),
      spaxel_noise_(std::move(spaxel_noise)), streamed_(AsLazy(*cube_) != nullptr),
      block_bytes_(block_bytes > 0 ? block_bytes : BlockBytes(*cube_)) {
  if (!streamed_) return;
  // Which bin each spaxel belongs to, and the last row of every bin (when it is complete).
  const Cube& c = *cube_;
  owner_.assign(static_cast<size_t>(c.nx * c.ny), -1);
  std::vector<std::pair<int64_t, int32_t>> last;  // (last row, bin)
  last.reserve(binning_->bins.size());
  for (size_t b = 0; b < binning_->bins.size(); ++b) {
    int64_t last_row = 0;
    for (int32_t sp : binning_->bins[b].spaxels) {
      if (sp < 0 || static_cast<size_t>(sp) >= owner_.size())
        throw Error("bin " + std::to_string(b) + " names spaxel " + std::to_string(sp) + ", outside the " +
                    std::to_string(c.nx) + " x " + std::to_string(c.ny) + " cube");
      owner_[static_cast<size_t>(sp)] = static_cast<int32_t>(b);
      last_row = std::max<int64_t>(last_row, sp / c.nx);
    }
    last.emplace_back(last_row, static_cast<int32_t>(b));
  }
  std::sort(last.begin(), last.end());
  by_last_row_ = std::move(last);
  open_.resize(binning_->bins.size());
  rows_per_block_ = RowsPerBlock(c, 0, c.nwave, block_bytes_);
}

bool BinSpectraSource::Next(int64_t& key, std::shared_ptr<const Data>& data) {
  if (next_ >= binning_->bins.size()) return false;
  if (!streamed_) {
    key = static_cast<int64_t>(next_);
    data = Make(next_);
    ++next_;
    return true;
  }
  // Bins complete in the order of their last row; they are emitted in bin order (as from a cube
  // in memory: what follows, e.g. inference.cnn's batches, sees the same sequence).
  std::shared_ptr<Spectrum> sp;
  while (!(sp = TakeWaiting(next_))) {
    if (next_row_ >= cube_->ny)
      throw Error("bin " + std::to_string(next_) + " was not complete after the last row of '" + cube_->source + "'");
    ReadRows();
  }
  key = static_cast<int64_t>(next_);
  data = std::move(sp);
  if (++next_ == binning_->bins.size()) block_ = CubeBlock();  // the last bin: release the block
  return true;
}

BinSpectraSource::~BinSpectraSource() {
  if (spill_fd_ >= 0) ::close(spill_fd_);
}

void BinSpectraSource::Wait(size_t b, std::shared_ptr<Spectrum> sp) {
  const size_t bytes = sp->bytes();
  if (b == next_ || waiting_bytes_ + bytes <= block_bytes_ / 4) {
    waiting_bytes_ += bytes;
    waiting_.emplace(b, std::move(sp));
    return;
  }
  // Over the memory budget: to the spill file (flux, variance, mask; the rest is rebuilt).
  if (spill_fd_ < 0) {
    const char* tmp = std::getenv("TMPDIR");
    std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/cubeflow-bins-XXXXXX";
    spill_fd_ = ::mkstemp(path.data());
    if (spill_fd_ < 0)
      throw Error("cannot create a temporary file " + path + " for the bin spectra of '" + cube_->source +
                  "' waiting for their turn: " + std::strerror(errno) + "; set TMPDIR to a writable directory");
    ::unlink(path.c_str());  // removed when closed, whatever happens
    spill_path_ = path;
    spilled_at_.assign(binning_->bins.size(), -1);
  }
  const size_t nw = sp->flux.size();
  auto put = [&](const void* p, size_t n) {
    const auto* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::pwrite(spill_fd_, c, n, static_cast<off_t>(spill_end_));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        throw Error("cannot write the temporary file " + spill_path_ + " (bin spectra waiting for their turn): " +
                    std::strerror(errno) + "; free space there or set TMPDIR to another directory");
      c += w;
      n -= static_cast<size_t>(w);
      spill_end_ += w;
    }
  };
  spilled_at_[b] = spill_end_;
  put(sp->flux.data(), nw * sizeof(double));
  put(sp->variance.data(), nw * sizeof(double));
  put(sp->mask.data(), nw);
  ++spilled_;
}

std::shared_ptr<Spectrum> BinSpectraSource::TakeWaiting(size_t b) {
  if (auto it = waiting_.find(b); it != waiting_.end()) {
    std::shared_ptr<Spectrum> sp = std::move(it->second);
    waiting_.erase(it);
    waiting_bytes_ -= sp->bytes();
    return sp;
  }
  if (b >= spilled_at_.size() || spilled_at_[b] < 0) return nullptr;
  const size_t nw = static_cast<size_t>(cube_->nwave);
  auto sp = std::make_shared<Spectrum>();
  sp->id = static_cast<int64_t>(b);
  sp->wave = cube_->wave;
  sp->flux.resize(nw);
  sp->variance.resize(nw);
  sp->mask.resize(nw);
  int64_t at = spilled_at_[b];
  auto get = [&](void* p, size_t n) {
    auto* c = static_cast<char*>(p);
    while (n > 0) {
      const ssize_t r = ::pread(spill_fd_, c, n, static_cast<off_t>(at));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        throw Error("cannot read back the temporary file " + spill_path_ + " (bin spectra waiting for their turn): " +
                    (r < 0 ? std::string(std::strerror(errno)) : std::string("it is shorter than written")));
      c += r;
      n -= static_cast<size_t>(r);
      at += r;
    }
  };
  get(sp->flux.data(), nw * sizeof(double));
  get(sp->variance.data(), nw * sizeof(double));
  get(sp->mask.data(), nw);
  spilled_at_[b] = -1;
  SetMeta(b, *sp);
  return sp;
}

void BinSpectraSource::Accumulate(Sums& sums, const float* flux, const float* variance, const uint8_t* mask,
                                  size_t stride, double spaxel_noise2) const {
  const size_t nw = sums.flux.size();
  for (size_t k = 0; k < nw; ++k) {
    const size_t idx = k * stride;
    const double fl = flux[idx];
    if (!std::isfinite(fl) || (mask && mask[idx])) continue;
    double va = spaxel_noise2;
    if (variance) {
      va = variance[idx];
      if (!std::isfinite(va) || va < 0) continue;
    }
    sums.flux[k] += fl;
    sums.variance[k] += va;
    ++sums.count[k];
  }
}

double BinSpectraSource::SpaxelNoise2(bool have_var, int32_t s) const {
  return (!have_var && static_cast<size_t>(s) < spaxel_noise_.size()) ? spaxel_noise_[s] * spaxel_noise_[s] : 0.0;
}

std::shared_ptr<Spectrum> BinSpectraSource::Finish(size_t b, Sums sums) const {
  const Cube& c = *cube_;
  const Binning::Bin& bin = binning_->bins.at(b);
  const size_t nw = static_cast<size_t>(c.nwave);
  auto sp = std::make_shared<Spectrum>();
  sp->id = static_cast<int64_t>(b);
  sp->wave = c.wave;
  sp->flux = std::move(sums.flux);
  sp->variance = std::move(sums.variance);
  sp->mask.assign(nw, 0);
  const double n = static_cast<double>(bin.spaxels.size());
  const double cov = (n > 1 && alpha_ != 0) ? 1.0 + alpha_ * std::log10(n) : 1.0;
  for (size_t k = 0; k < nw; ++k) {
    if (sums.count[k] == 0) {
      sp->mask[k] = 1;
      sp->flux[k] = 0;
      sp->variance[k] = 0;
      continue;
    }
    const double scale = n / sums.count[k];
    sp->flux[k] *= scale;
    sp->variance[k] *= scale * scale * cov * cov;
  }
  SetMeta(b, *sp);
  return sp;
}

void BinSpectraSource::SetMeta(size_t b, Spectrum& sp) const {
  const Binning::Bin& bin = binning_->bins.at(b);
  sp.meta["x"] = bin.x;
  sp.meta["y"] = bin.y;
  sp.meta["nspax"] = static_cast<double>(bin.nspax);
  sp.meta["snr"] = bin.snr;
  sp.meta["signal"] = bin.signal;
  sp.meta["noise"] = bin.noise;
  // Flux unit of the cube relative to erg/s/cm2/A (e.g. 1e-20 for MUSE cubes), so that
  // photometry in physical units can be put on the same scale (inference.cnn does).
  if (const auto u = fits::FluxDensityScale(cube_->bunit); u.ok()) sp.meta["bunit_scale"] = *u;
}

BinSpectraSource::Sums::Sums(size_t nw) : flux(nw, 0.0), variance(nw, 0.0), count(nw, 0) {}

std::shared_ptr<Spectrum> BinSpectraSource::Make(size_t b) const {
  const Cube& c = *cube_;
  const Binning::Bin& bin = binning_->bins.at(b);
  const size_t nw = static_cast<size_t>(c.nwave);
  Sums sums(nw);
  if (!streamed_) {
    const size_t plane = static_cast<size_t>(c.nx * c.ny);
    const bool have_var = !c.variance.empty();
    const bool have_mask = !c.mask.empty() && c.mask.size() == c.flux.size();
    for (int32_t s : bin.spaxels) {
      const size_t i = static_cast<size_t>(s);
      Accumulate(sums, c.flux.data() + i, have_var ? c.variance.data() + i : nullptr,
                 have_mask ? c.mask.data() + i : nullptr, plane, SpaxelNoise2(have_var, s));
    }
    return Finish(b, std::move(sums));
  }
  // In the file: the rows the bin spans, all planes.
  if (!bin.spaxels.empty()) {
    int64_t y0 = c.ny, y1 = 0;
    for (int32_t s : bin.spaxels) {
      y0 = std::min<int64_t>(y0, s / c.nx);
      y1 = std::max<int64_t>(y1, s / c.nx + 1);
    }
    CubeBlock block;
    if (Status st = ReadCubeBlock(c, 0, c.nwave, y0, y1, block); !st.ok()) throw Error(st.message());
    const bool have_var = !block.variance.empty();
    for (int32_t s : bin.spaxels) {
      const size_t i = static_cast<size_t>(s - y0 * c.nx);
      Accumulate(sums, block.flux.data() + i, have_var ? block.variance.data() + i : nullptr,
                 block.mask.empty() ? nullptr : block.mask.data() + i, block.plane_size(), SpaxelNoise2(have_var, s));
    }
  }
  return Finish(b, std::move(sums));
}

void BinSpectraSource::ReadRows() {
  const Cube& c = *cube_;
  const int64_t y0 = next_row_, y1 = std::min(c.ny, next_row_ + rows_per_block_);
  if (Status st = ReadCubeBlock(c, 0, c.nwave, y0, y1, block_); !st.ok()) throw Error(st.message());
  const bool have_var = !block_.variance.empty();
  const size_t nw = static_cast<size_t>(c.nwave);
  // Spaxels in increasing order: every bin's sums add its spaxels in the order Make does.
  for (int64_t s = y0 * c.nx; s < y1 * c.nx; ++s) {
    const int32_t b = owner_[static_cast<size_t>(s)];
    if (b < 0) continue;
    auto& sums = open_[static_cast<size_t>(b)];
    if (!sums) sums = std::make_unique<Sums>(nw);
    const size_t i = static_cast<size_t>(s - y0 * c.nx);
    Accumulate(*sums, block_.flux.data() + i, have_var ? block_.variance.data() + i : nullptr,
               block_.mask.empty() ? nullptr : block_.mask.data() + i, block_.plane_size(),
               SpaxelNoise2(have_var, static_cast<int32_t>(s)));
  }
  next_row_ = y1;
  // Bins whose last row has been read are complete.
  std::vector<int32_t> done;
  while (next_complete_ < by_last_row_.size() && by_last_row_[next_complete_].first < y1)
    done.push_back(by_last_row_[next_complete_++].second);
  std::sort(done.begin(), done.end());
  for (int32_t b : done) {
    auto& sums = open_[static_cast<size_t>(b)];
    Wait(static_cast<size_t>(b), Finish(static_cast<size_t>(b), sums ? std::move(*sums) : Sums(nw)));
    sums.reset();
  }
  if (next_row_ >= c.ny) block_ = CubeBlock();  // the last block: release its memory
}

size_t BinSpectraSource::open_bins() const {
  size_t n = 0;
  for (const auto& s : open_) n += s != nullptr;
  return n;
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
  so.noise = CubeHasVariance(*cube) ? spectral::NoiseSource::kVariance : spectral::NoiseSource::kDerSnr;
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
