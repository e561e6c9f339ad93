// io.write_spectra: the bin spectra of a pipeline as one FITS product (docs/products.md).
#include <fitsio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include "cubeflow/fits/atomic_fits_file.hpp"
#include "cubeflow/fits/cfitsio_error.hpp"
#include "cubeflow/fits/maps.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "cubeflow/strings.hpp"
#include "io_nodes.hpp"

namespace cubeflow::io {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// A number in a message or a unit string, to 10 significant digits.
std::string Num(double v) { return cubeflow::Num(v, 10); }

std::string DescribeAxis(const WavelengthAxis& a) {
  std::ostringstream s;
  s.precision(10);
  s << a.n << " pixels " << a.At(0) << "-" << a.At(a.n - 1) << " Angstrom" << (a.log ? " (log)" : " (linear)")
    << (a.air ? ", air" : ", vacuum");
  return s.str();
}

/// True if two axes give the same pixel wavelengths (to 1e-6 of a pixel at both ends).
bool SameAxis(const WavelengthAxis& a, const WavelengthAxis& b) {
  if (a.n != b.n || a.log != b.log || a.air != b.air) return false;
  if (a.n == 1) return std::abs(a.At(0) - b.At(0)) <= 1e-9 * std::abs(a.At(0));
  const double width = std::abs(a.At(1) - a.At(0));
  return std::abs(a.At(0) - b.At(0)) <= 1e-6 * width && std::abs(a.At(a.n - 1) - b.At(a.n - 1)) <= 1e-6 * width;
}

/// FITS unit string for a flux density of `scale` erg/s/cm2/Angstrom ("" if unknown).
std::string FluxUnitFromScale(double scale) {
  if (!(scale > 0) || !std::isfinite(scale)) return "";
  const std::string base = "erg s-1 cm-2 Angstrom-1";
  const double e = std::log10(scale);
  const double r = std::round(e);
  if (std::abs(e - r) < 1e-9) {
    if (r == 0) return base;
    return "10**(" + std::to_string(static_cast<long long>(r)) + ") " + base;
  }
  return "10**(" + Num(e) + ") " + base;
}

/// BINS column name of a meta key: upper case, characters other than letters and digits as '_'.
std::string ColumnName(std::string key) {
  for (char& c : key)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return Upper(std::move(key));
}

/// Meta keys with a fixed column name, unit and description in the BINS table. "@flux" stands
/// for the flux unit of the product.
struct KnownMeta {
  const char* key;
  const char* column;
  const char* unit;
  const char* doc;
};
constexpr KnownMeta kKnownMeta[] = {
    {"x", "X", "pix", "light-weighted centroid x (0-based pixel)"},
    {"y", "Y", "pix", "light-weighted centroid y (0-based pixel)"},
    {"nspax", "NSPAX", "", "spaxels in the bin (-1 = unknown)"},
    {"snr", "SNR", "", "S/N of the bin in the binning window"},
    {"signal", "SIGNAL", "@flux", "summed signal in the binning window"},
    {"noise", "NOISE", "@flux", "noise of SIGNAL (covariance-corrected)"},
    {"velocity", "VEL", "km/s", "LOS velocity used for rest-framing, relative to Z_SYS"},
    {"dispersion", "SIGMA", "km/s", "intrinsic stellar dispersion used for broadening"},
    {"z_sys", "Z_SYS", "", "systemic redshift used for rest-framing"},
    {"kinematics_fallback", "KINFALLBK", "", "1: maps had no valid value, parameters used"},
    {"sigma_excess", "SIGEXCESS", "km/s", "dispersion above the target (BROADTGT bins)"},
    {"bunit_scale", "BUNITSCL", "", "flux unit in erg/s/cm2/Angstrom"},
    {"norm", "", "", ""},  // same as Spectrum::norm: the NORM column
};

const KnownMeta* FindKnown(const std::string& key) {
  for (const auto& k : kKnownMeta)
    if (key == k.key) return &k;
  return nullptr;
}

/// One column of the BINS table.
struct Column {
  std::string name, tform, unit, doc;
  int type = TDOUBLE;  // TDOUBLE, TLONGLONG or TSTRING
  std::vector<double> d;
  std::vector<long long> i;
  std::vector<std::string> s;
};

Column DoubleCol(std::string name, std::string unit, std::string doc, std::vector<double> v) {
  Column c;
  c.name = std::move(name);
  c.tform = "1D";
  c.unit = std::move(unit);
  c.doc = std::move(doc);
  c.d = std::move(v);
  return c;
}

Column IntCol(std::string name, const char* tform, std::string doc, std::vector<long long> v) {
  Column c;
  c.name = std::move(name);
  c.tform = tform;
  c.doc = std::move(doc);
  c.type = TLONGLONG;
  c.i = std::move(v);
  return c;
}

struct MaskBitDoc {
  const char* name;
  const char* doc;
};
constexpr MaskBitDoc kMaskBits[] = {
    {"BADPIX", "flagged bad by the spectrum's own mask"},
    {"NONFINITE", "flux or variance not finite, or variance < 0"},
    {"NOERROR", "the spectrum carries no variance"},
    {"NOSPEC", "no spectrum: the bin failed or never arrived"},
};

std::atomic<int> g_scratch_counter{0};

}  // namespace

NodeSpec WriteSpectraNode::Spec() {
  return NodeSpec("io.write_spectra", "Write the bin spectra of a stream as one FITS product")
      .Describe(
          "Writes every spectrum arriving on `spectra` (binning.voronoi's observed-frame bin spectra, "
          "or spectral.restframe's rest-frame ones) into one multi-extension FITS file "
          "(docs/products.md): PRIMARY (provenance: cubeflow and plugin versions, every node "
          "parameter, input-file hashes, as in io.write_maps); SPECTRA (NAXIS1 = wavelength, "
          "NAXIS2 = bin: row i is bin i, float32 or float64, BUNIT from the spectra's flux unit, or "
          "empty with FLUXUNIT when the spectra are normalised - multiply by the BINS column NORM); "
          "a spectral WCS on axis 1 (CTYPE1 AWAV or WAVE for air or vacuum, -LOG for log-lambda "
          "grids, CUNIT1 Angstrom; SPECSYS = 'SOURCE' in the rest frame) and CTYPE2 = 'BINID' "
          "(world = bin id); ERROR (1-sigma; or VAR / IVAR, see `error`) and MASK (uint8: bit 0 "
          "BADPIX the spectrum's mask, 1 NONFINITE, 2 NOERROR no variance, 3 NOSPEC no spectrum "
          "for the row) of the same shape; WAVE (pixel-centre wavelengths, float64, Angstrom); "
          "BINID (int32 map of the bins, with the cube's celestial WCS, when `binning` is "
          "connected); BINS (one row per bin: BIN_ID, SPECSTAT 0 written / 1 failed upstream / "
          "2 never arrived, QUALITY bits, NGOODPIX, NSPAX, X, Y, RA, DEC, SNR, SIGNAL, NOISE, NORM, "
          "VEL and SIGMA used by spectral.restframe, every other meta value the spectra carry, and "
          "FAILMSG). Bins arrive in any order; failed and missing bins keep their row (NaN "
          "spectrum, MASK NOSPEC, QUALITY FAILED or NOCOV), they are never dropped. Every spectrum "
          "must share one wavelength grid and frame. Memory: spectra go to an unlinked scratch "
          "file beside `path` as they arrive (only per-bin metadata stays in memory); Finish "
          "writes them in bin order to a temporary file renamed into place (atomic). If the run "
          "aborts, what arrived is written with PARTIAL = T, beside an existing product (<stem>.partial.fits) "
          "rather than over it.")
      .Input("spectra", Spectrum::kType, PortKind::kStream,
             "bin spectra keyed by bin id (flux, variance, mask on one common wavelength axis)")
      .OptionalInput("binning", Binning::kType, PortKind::kSingle,
                     "the binning: lists every bin (so bins that never arrived are flagged), gives "
                     "centroids / NSPAX / S/N of failed bins, RA/DEC, and the BINID extension")
      .Param(&Options::path, "path", "output FITS file (its directory is created)", Required{}, OutputFile{})
      .Param(&Options::error, "error",
             "error extension: sigma = 1-sigma (EXTNAME ERROR, NaN where unknown), variance "
             "(VAR, NaN where unknown) or ivar = inverse variance (IVAR, 0 where unknown)",
             OneOf{{"sigma", "variance", "ivar"}})
      .Param(&Options::dtype, "dtype", "pixel type of SPECTRA and the error extension", OneOf{{"float32", "float64"}})
      .Param(&Options::bunit, "bunit",
             "unit of the un-normalised flux (BUNIT, or FLUXUNIT if normalised); \"\" = from "
             "the spectra's bunit_scale meta (binning.voronoi sets it from the cube's BUNIT)")
      .Param(&Options::overwrite, "overwrite", "replace an existing file")
      .Check<Options>([](const Options& o, CheckReport& r) {
        if (o.path.empty()) r.Error("path", "is empty; name the output FITS file");
      })
      .Concurrent(Concurrency::kSerial)
      .AcceptsFailures();
}

WriteSpectraNode::WriteSpectraNode(const Options& o)
    : path_(o.path.string()), bunit_param_(o.bunit), overwrite_(o.overwrite) {
  // The validator allows only the declared choices; this guards direct construction.
  if (o.error == "sigma") error_kind_ = ErrorKind::kSigma;
  else if (o.error == "variance") error_kind_ = ErrorKind::kVariance;
  else if (o.error == "ivar") error_kind_ = ErrorKind::kIvar;
  else throw Error("parameter 'error' is '" + o.error + "'; use sigma, variance or ivar");
  if (o.dtype != "float32" && o.dtype != "float64")
    throw Error("parameter 'dtype' is '" + o.dtype + "'; use float32 or float64");
  elem_ = o.dtype == "float32" ? 4 : 8;
}

WriteSpectraNode::~WriteSpectraNode() {
  if (scratch_) std::fclose(scratch_);
  if (!scratch_path_.empty()) ::unlink(scratch_path_.c_str());  // only if the early unlink failed
}

void WriteSpectraNode::OpenScratch() {
  if (!overwrite_ && std::filesystem::exists(path_))  // fail before the run does the work
    throw Error("'" + path_ + "' exists and overwrite is false; remove it or set overwrite: true");
  std::error_code ec;
  const auto dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  const std::string sp = path_ + ".scratch-" + std::to_string(static_cast<long>(::getpid())) + "-" +
                         std::to_string(g_scratch_counter.fetch_add(1));
  scratch_ = std::fopen(sp.c_str(), "w+b");
  if (!scratch_)
    throw Error("cannot create the scratch file '" + sp + "' beside 'path' (" +
                std::strerror(errno) + "); the directory of '" + path_ + "' must exist or be creatable and be writable");
  // Unlinked at once: the data live as long as the handle, and nothing is left behind on a crash.
  if (::unlink(sp.c_str()) != 0) scratch_path_ = sp;
}

size_t WriteSpectraNode::NewEntry(int64_t id) {
  if (by_id_.count(id))
    throw Error("bin " + std::to_string(id) +
                " arrived twice on 'spectra' (an upstream node emitted the same bin id twice)");
  entries_.emplace_back();
  entries_.back().id = id;
  by_id_[id] = entries_.size() - 1;
  return entries_.size() - 1;
}

void WriteSpectraNode::AddFailure(int64_t id, const std::string& why) {
  const size_t e = NewEntry(id);
  entries_[e].failure = why.empty() ? std::string("failed upstream") : why;
}

void WriteSpectraNode::AddSpectrum(ProcessContext& ctx, int64_t id, const Spectrum& s) {
  const std::string who = "bin " + std::to_string(id);
  const size_t n = s.flux.size();
  if (n == 0 || static_cast<int64_t>(n) != s.wave.n)
    throw Error(who + ": the spectrum has " + std::to_string(n) + " flux values but its wavelength axis " +
                std::to_string(s.wave.n) + " pixels");
  const bool has_var = !s.variance.empty();
  if (has_var && s.variance.size() != n)
    throw Error(who + ": variance has " + std::to_string(s.variance.size()) + " values for " + std::to_string(n) +
                " flux values");
  if (!s.mask.empty() && s.mask.size() != n)
    throw Error(who + ": mask has " + std::to_string(s.mask.size()) + " values for " + std::to_string(n) +
                " flux values");
  if (by_id_.count(id))
    throw Error(who + " arrived twice on 'spectra' (an upstream node emitted the same bin id twice)");
  auto it_scale = s.meta.find("bunit_scale");
  const double scale = it_scale == s.meta.end() ? kNaN : it_scale->second;
  if (!have_axis_) {
    axis_ = s.wave;
    rest_frame_ = s.rest_frame;
    bunit_scale_ = scale;
    first_id_ = id;
    have_axis_ = true;
    OpenScratch();
  } else {
    if (!SameAxis(axis_, s.wave))
      throw Error(who + ": wavelength axis (" + DescribeAxis(s.wave) + ") differs from that of bin " +
                  std::to_string(first_id_) + " (" + DescribeAxis(axis_) +
                  "); one product holds one wavelength grid: rebin the spectra first (spectral.restframe) "
                  "or write them to separate files");
    if (s.rest_frame != rest_frame_)
      throw Error(who + ": is " + (s.rest_frame ? "rest-frame" : "observed-frame") + " but bin " +
                  std::to_string(first_id_) + " is not; write the two frames to separate files");
    const bool a = std::isfinite(scale), b = std::isfinite(bunit_scale_);
    if (a != b || (a && std::abs(scale - bunit_scale_) > 1e-9 * std::abs(bunit_scale_)))
      throw Error(who + ": flux unit scale (meta bunit_scale " + (a ? Num(scale) : std::string("absent")) +
                  ") differs from that of bin " + std::to_string(first_id_) + " (" +
                  (b ? Num(bunit_scale_) : std::string("absent")) + "); one product holds one flux unit");
  }

  // Row layout in the scratch file: flux [n x elem], error [n x elem], mask [n bytes].
  std::vector<unsigned char> row(n * (2 * elem_ + 1));
  unsigned char* fl = row.data();
  unsigned char* er = row.data() + n * elem_;
  unsigned char* mk = row.data() + 2 * n * elem_;
  auto put = [&](unsigned char* base, size_t k, double v) {
    if (elem_ == 4) {
      const auto f = static_cast<float>(v);
      std::memcpy(base + k * 4, &f, 4);
    } else {
      std::memcpy(base + k * 8, &v, 8);
    }
  };
  int64_t ngood = 0;
  for (size_t k = 0; k < n; ++k) {
    const double f = s.flux[k];
    const double var = has_var ? s.variance[k] : kNaN;
    uint8_t m = 0;
    if (!s.mask.empty() && s.mask[k]) m |= kMaskBadPixel;
    if (!std::isfinite(f) || (has_var && !(std::isfinite(var) && var >= 0))) m |= kMaskNonFinite;
    if (!has_var) m |= kMaskNoError;
    const bool err_ok = (m & (kMaskBadPixel | kMaskNonFinite | kMaskNoError)) == 0;
    double e;
    if (error_kind_ == ErrorKind::kSigma) e = err_ok ? std::sqrt(var) : kNaN;
    else if (error_kind_ == ErrorKind::kVariance) e = err_ok ? var : kNaN;
    else e = err_ok && var > 0 ? 1.0 / var : 0.0;
    put(fl, k, f);
    put(er, k, e);
    mk[k] = m;
    ngood += m == 0 ? 1 : 0;
  }
  // Explicit offset: a failed write (reported, flagged as this bin's failure under on_error: flag)
  // must not shift the rows that follow.
  if (fseeko(scratch_, static_cast<off_t>(scratch_rows_) * static_cast<off_t>(row.size()), SEEK_SET) != 0 ||
      std::fwrite(row.data(), 1, row.size(), scratch_) != row.size())
    throw Error(who + ": cannot append to the scratch file beside '" + path_ + "' (" + std::strerror(errno) +
                "); is the disk full?");
  const size_t e = NewEntry(id);
  Entry& en = entries_[e];
  en.scratch_row = scratch_rows_++;
  en.quality = s.quality;
  en.norm = s.norm;
  en.ngood = ngood;
  for (const auto& [k, v] : s.meta) {
    auto& col = meta_[k];
    col.resize(entries_.size(), kNaN);
    col[e] = v;
  }
  if (ngood == 0) ctx.Log(LogLevel::kWarn, "bin " + std::to_string(id) + ": every pixel of the spectrum is masked");
}

void WriteSpectraNode::Process(ProcessContext& ctx) {
  if (!binning_ && ctx.Connected("binning")) binning_ = ctx.OptionalInput<Binning>("binning");
  for (size_t i = 0; i < ctx.size(); ++i) {
    const int64_t key = ctx.key(i);
    if (ctx.failed(i)) {
      if (key < 0) {
        ctx.Log(LogLevel::kWarn, "a failed item without a bin id cannot be given a row: " + ctx.failure(i));
        continue;
      }
      AddFailure(key, ctx.failure(i));
      continue;
    }
    auto s = ctx.Input<Spectrum>("spectra", i);
    const int64_t id = key >= 0 ? key : s->id;
    if (id < 0)
      throw Error("a spectrum on 'spectra' has no bin id (stream key and Spectrum::id are "
                                       "both negative)");
    AddSpectrum(ctx, id, *s);
  }
}

void WriteSpectraNode::Finish(ProcessContext& ctx) {
  if (!binning_ && ctx.Connected("binning")) binning_ = ctx.OptionalInput<Binning>("binning");
  const bool aborted = ctx.aborted();
  auto fail = [&](const std::string& msg) {
    if (aborted) {
      ctx.Log(LogLevel::kError, msg);
      return;
    }
    throw Error(msg);
  };

  // --- Rows: bin ids 0..max over what arrived and the binning. ---------------------------
  int64_t max_id = -1;
  for (const auto& e : entries_) max_id = std::max(max_id, e.id);
  if (binning_) {
    max_id = std::max<int64_t>(max_id, static_cast<int64_t>(binning_->bins.size()) - 1);
    for (int32_t b : binning_->binid) max_id = std::max<int64_t>(max_id, b);
  }
  if (max_id < 0) {
    if (aborted) {
      ctx.Log(LogLevel::kWarn, "the run failed before anything reached this node: no product written to " + path_);
      return;
    }
    return fail("nothing to write to '" + path_ + "': no spectrum, failed bin or binning arrived");
  }
  const int64_t nrows = max_id + 1;
  const int64_t known = static_cast<int64_t>(entries_.size()) + (binning_ ? static_cast<int64_t>(binning_->bins.size()) : 0);
  if (nrows > 4 * known + 1024)
    return fail("bin ids are sparse (largest " + std::to_string(max_id) + ", but only " +
                std::to_string(entries_.size()) + " bins arrived); row i of '" + path_ +
                "' is bin i, so ids must be dense (0..N-1)");
  const int64_t nwave = have_axis_ ? axis_.n : 0;
  std::vector<int64_t> row_entry(static_cast<size_t>(nrows), -1);
  for (size_t e = 0; e < entries_.size(); ++e) row_entry[static_cast<size_t>(entries_[e].id)] = static_cast<int64_t>(e);
  int64_t nspec = 0, nfailed = 0;
  std::vector<int64_t> missing;
  bool normalised = false;
  for (int64_t r = 0; r < nrows; ++r) {
    const int64_t e = row_entry[static_cast<size_t>(r)];
    if (e < 0) {
      missing.push_back(r);
    } else if (entries_[static_cast<size_t>(e)].scratch_row < 0) {
      ++nfailed;
    } else {
      ++nspec;
      if (entries_[static_cast<size_t>(e)].norm != 1.0) normalised = true;
    }
  }
  for (auto& [k, col] : meta_) col.resize(entries_.size(), kNaN);

  const std::string flux_unit = !bunit_param_.empty() ? bunit_param_ : FluxUnitFromScale(bunit_scale_);
  if (flux_unit.empty() && nspec > 0)
    ctx.Log(LogLevel::kWarn, "the spectra carry no flux unit (meta bunit_scale): " + path_ +
                                 " gets no BUNIT/FLUXUNIT; set the `bunit` parameter to the cube's unit");
  const std::string spec_unit = normalised ? std::string() : flux_unit;
  std::string err_unit;
  if (!spec_unit.empty()) {
    if (error_kind_ == ErrorKind::kSigma) err_unit = spec_unit;
    else if (error_kind_ == ErrorKind::kVariance) err_unit = "(" + spec_unit + ")**2";
    else err_unit = "(" + spec_unit + ")**-2";
  }
  const std::string err_name =
      error_kind_ == ErrorKind::kSigma ? "ERROR" : error_kind_ == ErrorKind::kVariance ? "VAR" : "IVAR";

  // --- Target checks, then the primary HDU (provenance) via the MAPS writer. -------------
  // A failed run, or one whose every bin failed, never replaces an earlier product: it writes
  // beside it (<stem>.partial.fits). (With overwrite: false an existing product is an error.)
  const std::string target = aborted || (nspec == 0 && overwrite_) ? PartialProductPath(path_) : path_;
  {
    std::error_code ec;
    const auto dir = std::filesystem::path(target).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    if (!overwrite_ && target == path_ && std::filesystem::exists(path_))
      return fail("cannot write '" + path_ +
                  "': the file exists and overwrite is false; remove it or set overwrite: true");
  }
  fits::MapsProduct prim;
  prim.run = ctx.run();
  prim.partial = aborted;
  prim.overwrite = true;
  prim.primary["CFPROD"] = "SPECTRA";
  prim.primary["NBINS"] = std::to_string(nrows);
  prim.primary["NSPEC"] = std::to_string(nspec);
  prim.primary["NFAILED"] = std::to_string(nfailed);
  prim.primary["NMISSING"] = std::to_string(missing.size());
  if (!missing.empty()) {
    prim.primary["MISSING"] = MissingIdList(missing);
    prim.comments.push_back("MISSING lists bins whose spectra never arrived (run aborted or not produced).");
  }
  int shown = 0;
  for (const auto& e : entries_) {
    if (e.scratch_row >= 0) continue;
    if (++shown > 20) {
      prim.comments.push_back("... more failed bins (BINS: SPECSTAT = 1, FAILMSG)");
      break;
    }
    prim.comments.push_back("bin " + std::to_string(e.id) + " failed: " + e.failure.substr(0, 50));
  }
  auto out = fits::AtomicFitsFile::Create(target);  // <target>.tmp-<pid>, removed unless committed
  if (!out.ok()) return fail(out.status().message());
  if (Status st = fits::WriteMapsPrimary(*out, prim); !st.ok()) return fail(st.message());

  // --- The extensions, appended with CFITSIO. --------------------------------------------
  fitsfile* f = out->get();
  int status = 0;
  auto cleanup_fail = [&](const std::string& what) { fail(out->Fail(what).message()); };
  auto key_str = [&](const char* k, const std::string& v, const char* comment) {
    fits_update_key(f, TSTRING, k, const_cast<char*>(v.c_str()), comment, &status);
  };
  auto key_dbl = [&](const char* k, double v, const char* comment) {
    fits_update_key(f, TDOUBLE, k, &v, comment, &status);
  };
  auto key_int = [&](const char* k, long long v, const char* comment) {
    fits_update_key(f, TLONGLONG, k, &v, comment, &status);
  };
  auto key_bool = [&](const char* k, bool v, const char* comment) {
    int b = v ? 1 : 0;
    fits_update_key(f, TLOGICAL, k, &b, comment, &status);
  };
  // Spectral WCS on axis 1, bin id on axis 2 (world = 0-based row = bin id).
  auto spectral_wcs = [&]() {
    if (!have_axis_) return;
    key_int("WCSAXES", 2, "number of WCS axes");
    std::string ctype = axis_.air ? "AWAV" : "WAVE";
    double crval = axis_.crval, cdelt = axis_.cdelt;
    if (axis_.log) {
      ctype += "-LOG";  // lambda = CRVAL1 exp(CDELT1 (p - CRPIX1) / CRVAL1)
      crval = std::exp(axis_.crval);
      cdelt = axis_.cdelt * crval;
    }
    key_str("CTYPE1", ctype, axis_.air ? "air wavelength" : "vacuum wavelength");
    key_str("CUNIT1", "Angstrom", nullptr);
    key_dbl("CRPIX1", axis_.crpix, nullptr);
    key_dbl("CRVAL1", crval, "[Angstrom] wavelength at CRPIX1");
    key_dbl("CDELT1", cdelt, "[Angstrom] step (at CRVAL1 for -LOG)");
    key_str("CTYPE2", "BINID", "row = bin id");
    key_dbl("CRPIX2", 1.0, nullptr);
    key_dbl("CRVAL2", 0.0, nullptr);
    key_dbl("CDELT2", 1.0, nullptr);
    if (rest_frame_) key_str("SPECSYS", "SOURCE", "rest frame of the source");
    if (axis_.log) key_dbl("VELSCALE", axis_.cdelt * 299792.458, "[km/s] pixel step in velocity");
  };
  auto common_keys = [&](const char* extname, const char* clas2) {
    key_str("EXTNAME", extname, "extension name");
    key_str("HDUCLAS1", "SPECTRA", "cubeflow bin spectra");
    key_str("HDUCLAS2", clas2, "data, error or quality");
    spectral_wcs();
    key_int("NBINS", nrows, "rows (row i = bin i)");
    key_int("NSPEC", nspec, "rows holding a spectrum");
    key_bool("RESTFRM", rest_frame_, "T: rest-frame wavelengths");
  };
  // Reads one segment of a scratch row (segment 0 flux, 1 error, 2 mask).
  std::vector<unsigned char> buf(static_cast<size_t>(nwave) * elem_);
  auto read_row = [&](int64_t srow, int seg) -> bool {
    const size_t n = static_cast<size_t>(nwave);
    const size_t row_bytes = n * (2 * elem_ + 1);
    const size_t off = seg == 0 ? 0 : seg == 1 ? n * elem_ : 2 * n * elem_;
    const size_t len = seg == 2 ? n : n * elem_;
    if (fseeko(scratch_, static_cast<off_t>(static_cast<size_t>(srow) * row_bytes + off), SEEK_SET) != 0) return false;
    return std::fread(buf.data(), 1, len, scratch_) == len;
  };
  const int bitpix = elem_ == 4 ? FLOAT_IMG : DOUBLE_IMG;
  const int dtype = elem_ == 4 ? TFLOAT : TDOUBLE;
  long long naxes[2] = {nwave, nrows};
  if (scratch_) std::fflush(scratch_);
  // seg 0: SPECTRA, 1: error extension, 2: MASK.
  for (int seg = 0; seg < 3; ++seg) {
    out->set_hdu(seg == 0 ? "SPECTRA" : seg == 1 ? err_name : "MASK");
    fits_create_imgll(f, seg == 2 ? BYTE_IMG : bitpix, 2, naxes, &status);
    if (seg == 0) {
      common_keys("SPECTRA", "DATA");
      if (!spec_unit.empty()) fits_write_key_longstr(f, "BUNIT", spec_unit.c_str(), "flux unit", &status);
      key_bool("NORMED", normalised, "T: flux divided by the BINS column NORM");
      if (!flux_unit.empty())
        fits_write_key_longstr(f, "FLUXUNIT", flux_unit.c_str(),
                               normalised ? "unit of SPECTRA x NORM" : "unit of SPECTRA", &status);
      if (std::isfinite(bunit_scale_)) key_dbl("BUNITSCL", bunit_scale_, "flux unit in erg/s/cm2/Angstrom");
      key_str("ERRDATA", err_name, "error extension");
      key_str("QUALDATA", "MASK", "pixel mask extension");
    } else if (seg == 1) {
      common_keys(err_name.c_str(), "ERROR");
      if (!err_unit.empty()) fits_write_key_longstr(f, "BUNIT", err_unit.c_str(), "unit", &status);
      key_str("ERRTYPE",
              error_kind_ == ErrorKind::kSigma ? "SIGMA" : error_kind_ == ErrorKind::kVariance ? "VAR" : "INVVAR",
              "1-sigma, variance or inverse variance");
      key_str("DATA", "SPECTRA", "value extension");
      if (normalised) fits_write_comment(f, "Errors of the normalised flux: scale by NORM like SPECTRA.", &status);
    } else {
      common_keys("MASK", "QUALITY");
      key_str("DATA", "SPECTRA", "value extension");
      for (size_t b = 0; b < sizeof(kMaskBits) / sizeof(kMaskBits[0]); ++b) {
        const std::string k = "MBIT" + std::to_string(b);
        key_str(k.c_str(), kMaskBits[b].name, kMaskBits[b].doc);
      }
      fits_write_comment(f, "MASK: 0 = good pixel; otherwise the OR of 2**MBITn of the reasons.", &status);
    }
    if (status) return cleanup_fail(fits::CfitsioErrorText(status));
    if (nwave == 0) continue;
    // Rows without a spectrum.
    std::vector<unsigned char> empty(static_cast<size_t>(nwave) * (seg == 2 ? 1 : elem_));
    if (seg == 2) {
      std::fill(empty.begin(), empty.end(), static_cast<unsigned char>(kMaskNoSpectrum));
    } else {
      const double fillv = seg == 1 && error_kind_ == ErrorKind::kIvar ? 0.0 : kNaN;
      for (int64_t k = 0; k < nwave; ++k) {
        if (elem_ == 4) {
          const auto v = static_cast<float>(fillv);
          std::memcpy(empty.data() + k * 4, &v, 4);
        } else {
          std::memcpy(empty.data() + k * 8, &fillv, 8);
        }
      }
    }
    for (int64_t r = 0; r < nrows && status == 0; ++r) {
      const int64_t e = row_entry[static_cast<size_t>(r)];
      const int64_t srow = e < 0 ? -1 : entries_[static_cast<size_t>(e)].scratch_row;
      void* data = empty.data();
      if (srow >= 0) {
        if (!read_row(srow, seg))
          return cleanup_fail("cannot read back the spectrum of bin " + std::to_string(r) +
                              " from the scratch file (" + std::strerror(errno) + ")");
        data = buf.data();
      }
      long long fpix[2] = {1, r + 1};
      fits_write_pixll(f, seg == 2 ? TBYTE : dtype, fpix, nwave, data, &status);
    }
    if (status) return cleanup_fail(fits::CfitsioErrorText(status));
  }

  // WAVE: pixel-centre wavelengths.
  out->set_hdu("WAVE");
  {
    long long nw[1] = {nwave};
    fits_create_imgll(f, DOUBLE_IMG, 1, nw, &status);
    key_str("EXTNAME", "WAVE", "extension name");
    key_str("BUNIT", "Angstrom", nullptr);
    if (have_axis_) {
      key_str("WAVETYPE", axis_.air ? "AIR" : "VACUUM", "air or vacuum wavelengths");
      key_bool("RESTFRM", rest_frame_, "T: rest-frame wavelengths");
      key_bool("LOGLAM", axis_.log, "T: uniform in ln(lambda)");
    }
    std::vector<double> w(static_cast<size_t>(nwave));
    for (int64_t k = 0; k < nwave; ++k) w[static_cast<size_t>(k)] = axis_.At(k);
    if (nwave > 0) fits_write_img(f, TDOUBLE, 1, nwave, w.data(), &status);
    if (status) return cleanup_fail(fits::CfitsioErrorText(status));
  }

  // BINID map.
  if (binning_) {
    out->set_hdu("BINID");
    const Binning& bn = *binning_;
    if (static_cast<int64_t>(bn.binid.size()) != bn.nx * bn.ny)
      return cleanup_fail("the binning has " + std::to_string(bn.binid.size()) + " BINID values for " +
                          std::to_string(bn.nx) + " x " + std::to_string(bn.ny) + " spaxels");
    long long nxy[2] = {bn.nx, bn.ny};
    fits_create_imgll(f, LONG_IMG, 2, nxy, &status);
    key_str("EXTNAME", "BINID", "extension name");
    key_str("HDUCLAS2", "INDEX", "bin of each spaxel (-1: none); = row of SPECTRA");
    for (const std::string& c : fits::SplitCards(bn.wcs.cards)) {
      std::string k = c.substr(0, 8);
      while (!k.empty() && k.back() == ' ') k.pop_back();
      if (k.empty() || k.rfind("NAXIS", 0) == 0 || k == "WCSAXES" || k == "SIMPLE" || k == "BITPIX" ||
          k == "EXTEND" || k == "END" || k == "EXTNAME" || k == "BUNIT")
        continue;
      fits_write_record(f, c.c_str(), &status);
    }
    std::vector<int32_t> ids(bn.binid.begin(), bn.binid.end());
    if (!ids.empty()) fits_write_img(f, TINT, 1, static_cast<long long>(ids.size()), ids.data(), &status);
    if (status) return cleanup_fail(fits::CfitsioErrorText(status));
  }

  // BINS table.
  out->set_hdu("BINS");
  {
    const size_t nr = static_cast<size_t>(nrows);
    auto meta_of = [&](int64_t r, const std::string& key) -> double {
      const int64_t e = row_entry[static_cast<size_t>(r)];
      if (e < 0) return kNaN;
      auto it = meta_.find(key);
      return it == meta_.end() ? kNaN : it->second[static_cast<size_t>(e)];
    };
    const Binning::Bin* no_bin = nullptr;
    auto bin_of = [&](int64_t r) {
      return binning_ && r < static_cast<int64_t>(binning_->bins.size()) ? &binning_->bins[static_cast<size_t>(r)]
                                                                         : no_bin;
    };
    std::vector<long long> col_id(nr), col_stat(nr), col_q(nr), col_good(nr), col_nspax(nr);
    std::vector<double> col_x(nr), col_y(nr), col_snr(nr), col_sig(nr), col_noise(nr), col_norm(nr);
    std::vector<std::string> col_fail(nr);
    for (int64_t r = 0; r < nrows; ++r) {
      const size_t i = static_cast<size_t>(r);
      const int64_t e = row_entry[i];
      const Entry* en = e < 0 ? nullptr : &entries_[static_cast<size_t>(e)];
      const Binning::Bin* b = bin_of(r);
      col_id[i] = r;
      if (!en) {
        col_stat[i] = kSpecMissing;
        col_q[i] = kQualNoCoverage;
        col_fail[i] = aborted ? "never arrived (run aborted)" : "never arrived";
      } else if (en->scratch_row < 0) {
        col_stat[i] = kSpecFailed;
        col_q[i] = en->quality | kQualInferenceFailed;
        col_fail[i] = en->failure.substr(0, 200);
      } else {
        col_stat[i] = kSpecWritten;
        col_q[i] = en->quality;
      }
      col_good[i] = en && en->scratch_row >= 0 ? en->ngood : 0;
      col_norm[i] = en && en->scratch_row >= 0 ? en->norm : kNaN;
      auto pick = [&](const char* key, double from_bin) {
        const double m = meta_of(r, key);
        return std::isfinite(m) ? m : (b ? from_bin : kNaN);
      };
      col_x[i] = pick("x", b ? b->x : kNaN);
      col_y[i] = pick("y", b ? b->y : kNaN);
      col_snr[i] = pick("snr", b ? b->snr : kNaN);
      col_sig[i] = pick("signal", b ? b->signal : kNaN);
      col_noise[i] = pick("noise", b ? b->noise : kNaN);
      const double ns = pick("nspax", b ? static_cast<double>(b->nspax) : kNaN);
      col_nspax[i] = std::isfinite(ns) ? std::llround(ns) : -1;
    }
    std::vector<Column> cols;
    cols.push_back(IntCol("BIN_ID", "1J", "bin id = row of SPECTRA", col_id));
    cols.push_back(IntCol("SPECSTAT", "1I", "0 written, 1 failed upstream, 2 never arrived", col_stat));
    cols.push_back(IntCol("QUALITY", "1J", "quality bits (docs/products.md)", col_q));
    cols.push_back(IntCol("NGOODPIX", "1J", "pixels with MASK = 0", col_good));
    cols.push_back(IntCol("NSPAX", "1J", "spaxels in the bin (-1 = unknown)", col_nspax));
    cols.push_back(DoubleCol("X", "pix", "light-weighted centroid x (0-based pixel)", col_x));
    cols.push_back(DoubleCol("Y", "pix", "light-weighted centroid y (0-based pixel)", col_y));
    if (binning_ && !binning_->wcs.empty()) {
      auto w = fits::Wcs::FromCards(binning_->wcs);
      if (w.ok()) {
        std::vector<double> ra(nr, kNaN), dec(nr, kNaN);
        for (size_t i = 0; i < nr; ++i) {
          if (!std::isfinite(col_x[i]) || !std::isfinite(col_y[i])) continue;
          try {
            w->PixelToSky(col_x[i], col_y[i], ra[i], dec[i]);
          } catch (const std::exception&) {
            ra[i] = dec[i] = kNaN;
          }
        }
        cols.push_back(DoubleCol("RA", "deg", "centroid right ascension (frame of the cube WCS)", ra));
        cols.push_back(DoubleCol("DEC", "deg", "centroid declination", dec));
      } else {
        ctx.Log(LogLevel::kWarn, "binning WCS unusable, no RA/DEC columns: " + w.status().message());
      }
    }
    cols.push_back(DoubleCol("SNR", "", "S/N of the bin in the binning window", col_snr));
    cols.push_back(DoubleCol("SIGNAL", flux_unit, "summed signal in the binning window", col_sig));
    cols.push_back(DoubleCol("NOISE", flux_unit, "noise of SIGNAL (covariance-corrected)", col_noise));
    cols.push_back(DoubleCol("NORM", normalised ? flux_unit : std::string(),
                             "flux = SPECTRA x NORM (1: not normalised; NaN: no spectrum)", col_norm));
    std::set<std::string> names;
    for (const auto& c : cols) names.insert(c.name);
    for (const auto& [key, values] : meta_) {
      const KnownMeta* km = FindKnown(key);
      if (km && (std::string(km->column).empty() || names.count(km->column))) continue;  // already written
      std::string name = km ? km->column : ColumnName(key);
      std::string unit = km ? (std::string(km->unit) == "@flux" ? flux_unit : km->unit) : "";
      std::string doc = km ? km->doc : "meta value '" + key + "' of the spectra";
      if (names.count(name)) name = "META_" + name;
      for (int k = 2; names.count(name); ++k) name = "META_" + ColumnName(key) + "_" + std::to_string(k);
      names.insert(name);
      std::vector<double> v(nr, kNaN);
      for (int64_t r = 0; r < nrows; ++r) v[static_cast<size_t>(r)] = meta_of(r, key);
      cols.push_back(DoubleCol(name, unit, doc, v));
    }
    size_t width = 1;
    for (const auto& s : col_fail) width = std::max(width, s.size());
    Column fc;
    fc.name = "FAILMSG";
    fc.tform = std::to_string(width) + "A";
    fc.doc = "why the bin has no spectrum";
    fc.type = TSTRING;
    fc.s = col_fail;
    cols.push_back(std::move(fc));

    std::vector<std::string> tt, tf, tu;
    for (const auto& c : cols) {
      tt.push_back(c.name);
      tf.push_back(c.tform);
      tu.push_back(c.unit);
    }
    std::vector<char*> ptt, ptf, ptu;
    for (size_t i = 0; i < cols.size(); ++i) {
      ptt.push_back(tt[i].data());
      ptf.push_back(tf[i].data());
      ptu.push_back(tu[i].data());
    }
    fits_create_tbl(f, BINARY_TBL, nrows, static_cast<int>(cols.size()), ptt.data(), ptf.data(), ptu.data(), "BINS",
                    &status);
    for (size_t i = 0; i < cols.size() && status == 0; ++i) {
      const Column& c = cols[i];
      const int cn = static_cast<int>(i + 1);
      if (!c.doc.empty()) {
        const std::string key = "TTYPE" + std::to_string(cn);
        fits_modify_comment(f, key.c_str(), c.doc.c_str(), &status);
      }
      if (c.type == TLONGLONG) {
        fits_write_col(f, TLONGLONG, cn, 1, 1, nrows, const_cast<long long*>(c.i.data()), &status);
      } else if (c.type == TDOUBLE) {
        fits_write_col(f, TDOUBLE, cn, 1, 1, nrows, const_cast<double*>(c.d.data()), &status);
      } else {
        std::vector<char*> ps;
        std::vector<std::string> copy = c.s;
        for (auto& s : copy) ps.push_back(s.data());
        fits_write_col(f, TSTRING, cn, 1, 1, nrows, ps.data(), &status);
      }
    }
    key_str("HDUCLAS1", "BINS", "one row per bin");
    if (status) return cleanup_fail(fits::CfitsioErrorText(status));
  }

  // Checksums of every HDU, close, rename into place.
  if (Status st = out->Commit(); !st.ok()) return fail(st.message());
  if (scratch_) {
    std::fclose(scratch_);
    scratch_ = nullptr;
  }
  ProductReport report{target, nrows, nspec, aborted, ""};
  if (target != path_) report.note = "the earlier product " + path_ + " is kept";
  ctx.ReportProduct(report);
  std::ostringstream msg;
  msg << "wrote " << target << ": " << nspec << " spectra x " << nwave << " pixels in " << nrows << " rows";
  if (nfailed) msg << ", " << nfailed << " failed";
  if (!missing.empty()) msg << ", " << missing.size() << " missing";
  if (aborted) msg << " (PARTIAL)";
  ctx.Log(aborted ? LogLevel::kWarn : LogLevel::kInfo,
          msg.str() + (target != path_ ? "; the earlier product " + path_ + " is kept" : ""));
}

}  // namespace cubeflow::io
