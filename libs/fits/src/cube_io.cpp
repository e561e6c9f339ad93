// Cube reader and writer (CFITSIO).
#include "cubeflow/fits/cube_io.hpp"

#include "cubeflow/fits/units.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <vector>

#include "cubeflow/cube_blocks.hpp"

#include "cubeflow/fits/atomic_fits_file.hpp"
#include "cubeflow/strings.hpp"
#include "fits_util.hpp"

namespace cubeflow::fits {

using internal::CfitsioError;
using internal::FitsHandle;

// ------------------------------------------------------------------------------------------
// Card helpers

std::string FitsReal(double v) {
  char buf[40];
  // Shortest of 15..17 significant digits that reads back to the same double.
  for (int digits = 15; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*G", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s(buf);
  if (s.find_first_of(".EN") == std::string::npos) {
    s += ".0";
  } else if (s.find('.') == std::string::npos) {
    const size_t e = s.find('E');
    if (e != std::string::npos) s.insert(e, ".0");
  }
  return s;
}

std::string FitsString(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  while (out.size() < 9) out += ' ';  // strings are padded to at least 8 characters
  out += "'";
  return out;
}

std::string MakeCard(const std::string& key, const std::string& value, const std::string& comment) {
  std::string card;
  if (key.size() <= 8) {
    card = key;
    card.resize(8, ' ');
    card += "= ";
    if (!value.empty() && value[0] == '\'') {
      card += value;
    } else {
      std::string v = value;
      if (v.size() < 20) v.insert(0, 20 - v.size(), ' ');  // fixed format: right-justified to col 30
      card += v;
    }
  } else {
    card = "HIERARCH " + key + " = " + value;
  }
  if (!comment.empty()) card += " / " + comment;
  if (card.size() > 80) card.resize(80);
  card.resize(80, ' ');
  return card;
}

std::vector<std::string> SplitCards(const std::string& cards) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < cards.size()) {
    if (cards[i] == '\n' || cards[i] == '\r') {
      ++i;
      continue;
    }
    size_t end = std::min(cards.size(), i + 80);
    const size_t nl = cards.find('\n', i);
    if (nl != std::string::npos && nl < end) end = nl;
    std::string c = cards.substr(i, end - i);
    c.resize(80, ' ');
    out.push_back(c);
    i = end;
  }
  return out;
}

namespace {

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

bool ReadDoubleKey(fitsfile* f, const char* key, double& v) {
  int status = 0;
  if (fits_read_key(f, TDOUBLE, key, &v, nullptr, &status)) {
    fits_clear_errmsg();
    return false;
  }
  return true;
}

bool ReadStringKey(fitsfile* f, const char* key, std::string& v) {
  int status = 0;
  char buf[FLEN_VALUE] = {0};
  if (fits_read_key(f, TSTRING, key, buf, nullptr, &status)) {
    fits_clear_errmsg();
    return false;
  }
  v = Trim(buf);
  return true;
}

/// Raw value of a keyword, unquoted if it is a string.
bool ReadRawKey(fitsfile* f, const char* key, std::string& v) {
  int status = 0;
  char buf[FLEN_VALUE] = {0};
  if (fits_read_keyword(f, key, buf, nullptr, &status)) {
    fits_clear_errmsg();
    return false;
  }
  v = internal::Unquote(buf);
  return true;
}

std::string HduNames(fitsfile* f) {
  int status = 0, n = 0, cur = 0;
  fits_get_hdu_num(f, &cur);
  if ((status = internal::CountHdus(f, &n)) != 0) {
    fits_clear_errmsg();
    return "?";
  }
  std::string out;
  for (int i = 1; i <= n; ++i) {
    int type = 0;
    status = 0;
    if (fits_movabs_hdu(f, i, &type, &status)) break;
    std::string name;
    if (!ReadStringKey(f, "EXTNAME", name)) name = i == 1 ? "PRIMARY" : "#" + std::to_string(i - 1);
    if (!out.empty()) out += ", ";
    out += name;
  }
  status = 0;
  int type = 0;
  if (cur > 0) fits_movabs_hdu(f, cur, &type, &status);
  fits_clear_errmsg();
  return out;
}

/// Moves to the image HDU named `name`; false (status cleared) if there is none.
/// Numbers (1-based) of the image HDUs whose EXTNAME is `name` (case-insensitive, as CFITSIO).
std::vector<int> HdusNamed(fitsfile* f, const std::string& name) {
  std::vector<int> found;
  int status = 0, n = 0, cur = 0;
  fits_get_hdu_num(f, &cur);
  if ((status = internal::CountHdus(f, &n)) != 0) {
    fits_clear_errmsg();
    return found;
  }
  for (int i = 1; i <= n; ++i) {
    int type = 0;
    status = 0;
    if (fits_movabs_hdu(f, i, &type, &status)) break;
    std::string ext;
    if (type == IMAGE_HDU && ReadStringKey(f, "EXTNAME", ext) && Upper(ext) == Upper(name)) found.push_back(i);
  }
  status = 0;
  int type = 0;
  fits_movabs_hdu(f, cur, &type, &status);
  fits_clear_errmsg();
  return found;
}

bool MoveToNamed(fitsfile* f, const std::string& name) {
  int status = 0;
  if (fits_movnam_hdu(f, IMAGE_HDU, const_cast<char*>(name.c_str()), 0, &status)) {
    fits_clear_errmsg();
    return false;
  }
  return true;
}

struct ImageShape {
  int naxis = 0;
  long long dims[9] = {0};
};

Status ReadShape(fitsfile* f, const std::string& path, const std::string& hdu, ImageShape& shape) {
  int status = 0;
  if (fits_get_img_dim(f, &shape.naxis, &status) ||
      fits_get_img_sizell(f, std::min(shape.naxis, 9), shape.dims, &status)) {
    return Status::Error("cannot read the image size of HDU '" + hdu + "' in '" + path + "': " +
                         CfitsioError(status) + "; the file is probably corrupt");
  }
  return Status::OK();
}

std::string ShapeText(const ImageShape& s) {
  std::string out;
  for (int i = 0; i < s.naxis && i < 9; ++i) {
    if (i) out += " x ";
    out += std::to_string(s.dims[i]);
  }
  return out.empty() ? "no data" : out;
}

/// Scale from the CUNIT3 value to Angstrom; 0 if unknown.
double AngstromPerUnit(const std::string& unit) {
  const std::string u = Upper(Trim(unit));
  if (u.empty() || u == "ANGSTROM" || u == "ANGSTROMS" || u == "A" || u == "AA") return 1.0;
  if (u == "NM") return 10.0;
  if (u == "UM" || u == "MICRON" || u == "MICRONS") return 1e4;
  if (u == "M") return 1e10;
  if (u == "CM") return 1e8;
  return 0.0;
}

Status ReadWaveAxis(fitsfile* f, const std::string& path, const std::string& hdu, int64_t n,
                    WavelengthAxis& ax) {
  const std::string where = "HDU '" + hdu + "' of '" + path + "'";
  std::string ctype = "AWAV", cunit;
  const bool has_ctype = ReadStringKey(f, "CTYPE3", ctype);
  ctype = Upper(ctype);
  double crval = 0, crpix = 1, step = 0;
  if (!ReadDoubleKey(f, "CRVAL3", crval)) {
    return Status::Error(where + " has no wavelength keywords (CRVAL3 missing): cannot build the "
                         "wavelength axis; add CRVAL3, CRPIX3 and CD3_3 or CDELT3");
  }
  ReadDoubleKey(f, "CRPIX3", crpix);
  if (!ReadDoubleKey(f, "CD3_3", step)) {
    if (!ReadDoubleKey(f, "CDELT3", step)) {
      return Status::Error(where + " has no wavelength step (neither CD3_3 nor CDELT3): add one of them");
    }
    double pc = 1.0;
    if (ReadDoubleKey(f, "PC3_3", pc)) step *= pc;
  }
  if (step == 0 || !std::isfinite(step) || !std::isfinite(crval)) {
    return Status::Error(where + " has a zero or invalid wavelength step (CD3_3/CDELT3)");
  }
  bool air = true, log = false;
  if (has_ctype) {
    if (ctype.rfind("AWAV", 0) == 0) {
      air = true;
    } else if (ctype.rfind("WAVE", 0) == 0) {
      air = false;
    } else {
      return Status::Error(where + ": CTYPE3 = '" + ctype +
                           "' is not a wavelength axis (expected AWAV, WAVE, AWAV-LOG or WAVE-LOG)");
    }
    if (ctype.size() > 4) {
      const std::string alg = ctype.substr(ctype.find_first_not_of('-', 4) == std::string::npos
                                               ? ctype.size()
                                               : ctype.find_first_not_of('-', 4));
      if (alg == "LOG") {
        log = true;
      } else if (!alg.empty()) {
        return Status::Error(where + ": CTYPE3 = '" + ctype +
                             "' uses an unsupported spectral algorithm (only linear and -LOG)");
      }
    }
  }
  ReadStringKey(f, "CUNIT3", cunit);
  const double scale = AngstromPerUnit(cunit);
  if (scale == 0) {
    return Status::Error(where + ": unknown wavelength unit CUNIT3 = '" + cunit +
                         "' (expected Angstrom, nm, um or m)");
  }
  ax.n = n;
  ax.air = air;
  ax.log = log;
  ax.crpix = crpix;
  if (log) {
    // FITS -LOG: lambda = CRVAL exp(CDELT (p - CRPIX) / CRVAL)  =>  ln lambda linear in p.
    if (crval <= 0) return Status::Error(where + ": CRVAL3 must be positive for a -LOG axis");
    ax.crval = std::log(crval * scale);
    ax.cdelt = step / crval;
  } else {
    ax.crval = crval * scale;
    ax.cdelt = step * scale;
  }
  return Status::OK();
}

std::string CelestialCards(fitsfile* f, int64_t nx, int64_t ny) {
  std::string ctype1, ctype2;
  if (!ReadStringKey(f, "CTYPE1", ctype1) || !ReadStringKey(f, "CTYPE2", ctype2)) return "";
  std::string cards;
  cards += MakeCard("NAXIS", "2");
  cards += MakeCard("NAXIS1", std::to_string(nx));
  cards += MakeCard("NAXIS2", std::to_string(ny));
  cards += MakeCard("WCSAXES", "2");
  cards += MakeCard("CTYPE1", FitsString(ctype1));
  cards += MakeCard("CTYPE2", FitsString(ctype2));
  std::string s;
  for (const char* k : {"CUNIT1", "CUNIT2"}) {
    if (ReadStringKey(f, k, s)) cards += MakeCard(k, FitsString(s));
  }
  double v;
  for (const char* k : {"CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "PC1_1",
                        "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2", "CROTA2", "LONPOLE", "LATPOLE"}) {
    if (ReadDoubleKey(f, k, v)) cards += MakeCard(k, FitsReal(v));
  }
  // Frame keyword (the caller falls back to the primary HDU when it is absent here).
  if (ReadStringKey(f, "RADESYS", s) || ReadStringKey(f, "RADECSYS", s)) cards += MakeCard("RADESYS", FitsString(s));
  if (ReadDoubleKey(f, "EQUINOX", v) || ReadDoubleKey(f, "EPOCH", v)) cards += MakeCard("EQUINOX", FitsReal(v));
  return cards;
}

void CollectHeader(fitsfile* f, std::map<std::string, std::string>& header) {
  static const char* kKeys[] = {"OBJECT", "INSTRUME", "TELESCOP", "DATE-OBS", "MJD-OBS", "EXPTIME", "RA", "DEC"};
  for (const char* k : kKeys) {
    if (header.count(k)) continue;
    std::string v;
    if (ReadRawKey(f, k, v)) header[k] = v;
  }
}

/// File planes [k0, k0 + nk) x rows [y0, y1) of an integer HDU (the data quality), as 0/1 into
/// `dst`, plane after plane.
Status ReadPlanesInt(fitsfile* f, const std::string& path, const std::string& hdu, int64_t nx, int64_t y0,
                     int64_t y1, int64_t k0, int64_t nk, uint8_t* dst) {
  const int64_t run = (y1 - y0) * nx;
  std::vector<int> buf(static_cast<size_t>(run));
  for (int64_t k = 0; k < nk; ++k) {
    long long fpix[3] = {1, y0 + 1, k0 + k + 1};
    int status = 0, anynul = 0;
    int nul = 0;
    if (fits_read_pixll(f, TINT, fpix, run, &nul, buf.data(), &anynul, &status)) {
      return Status::Error("reading HDU '" + hdu + "' of '" + path + "' failed at plane " + std::to_string(k0 + k) +
                           ": " + CfitsioError(status) + "; the file is probably truncated or corrupt");
    }
    uint8_t* d = dst + k * run;
    for (int64_t i = 0; i < run; ++i) d[i] = buf[static_cast<size_t>(i)] != 0 ? 1 : 0;
  }
  return Status::OK();
}

/// The checks of the flux that the in-memory and the lazy read share, with their messages.
Status NanEverywhere(const std::string& path, const std::string& data_name, const WavelengthAxis& full, int64_t k0,
                     int64_t k1) {
  return Status::Error("HDU '" + data_name + "' of '" + path + "' is NaN everywhere in channels " +
                       std::to_string(k0) + ".." + std::to_string(k1) + " (" + FitsReal(full.At(k0)) + " - " +
                       FitsReal(full.At(k1)) + " Angstrom): nothing to analyse; check the file or the window");
}

/// The STAT or DQ HDU `name` (current in `f`) must have the flux's shape (`what`: "the variance",
/// "the quality array").
Status CheckMatchesFlux(fitsfile* f, const std::string& path, const std::string& name, const char* what,
                        const std::string& data_name, const ImageShape& shape, ImageShape& s) {
  CUBEFLOW_RETURN_NOT_OK(ReadShape(f, path, name, s));
  if (s.naxis != 3 || s.dims[0] != shape.dims[0] || s.dims[1] != shape.dims[1] || s.dims[2] != shape.dims[2]) {
    return Status::Error("HDU '" + name + "' of '" + path + "' has shape " + ShapeText(s) + " but HDU '" + data_name +
                         "' has " + ShapeText(shape) + "; " + what + " must match the flux");
  }
  return Status::OK();
}

/// stat_hdu names an extension the file does not have, and require_stat is set.
Status NoVarianceExtension(fitsfile* f, const std::string& path, const std::string& stat_hdu) {
  int type = 0, status = 0;
  fits_movabs_hdu(f, 1, &type, &status);
  return Status::Error("no variance extension '" + stat_hdu + "' in '" + path + "' (HDUs: " + HduNames(f) +
                       "); set stat_hdu to the variance extension, or \"\" to read no variance");
}

/// Reads blocks of a cube's channels from its FITS file (see CubeReader). One CFITSIO handle,
/// opened on the first read and kept, used under a mutex: CFITSIO handles are not thread-safe.
class FitsCubeReader : public CubeReader {
 public:
  struct Hdu {
    std::string name;  ///< for messages
    int num = 0;       ///< 1-based HDU number; 0 = absent
  };
  FitsCubeReader(std::string path, Hdu data, Hdu stat, Hdu dq, int64_t nx, int64_t ny, int64_t nwave,
                 int64_t k_first)
      : path_(std::move(path)), data_(std::move(data)), stat_(std::move(stat)), dq_(std::move(dq)), nx_(nx),
        ny_(ny), nwave_(nwave), k_first_(k_first) {}

  bool has_variance() const override { return stat_.num > 0; }
  bool has_mask() const override { return dq_.num > 0; }
  uint64_t bytes_read() const override { return bytes_read_.load(); }

  Status Read(int64_t k0, int64_t k1, int64_t y0, int64_t y1, CubeBlock& out) const override {
    if (k0 < 0 || k1 > nwave_ || k0 >= k1 || y0 < 0 || y1 > ny_ || y0 >= y1)
      return Status::Error("block of planes [" + std::to_string(k0) + ", " + std::to_string(k1) + ") x rows [" +
                           std::to_string(y0) + ", " + std::to_string(y1) + ") is outside the cube '" + path_ + "'");
    std::lock_guard<std::mutex> lock(mu_);
    if (!f_.get()) {
      // The file was checked when io.read_cube opened it; it may have changed since.
      Status st = internal::OpenForReading(path_, "cube", f_);
      if (!st.ok()) return Status::Error(st.message() + " (it was readable when the run started)");
    }
    out.k0 = k0;
    out.k1 = k1;
    out.y0 = y0;
    out.y1 = y1;
    out.nx = nx_;
    const size_t n = static_cast<size_t>((k1 - k0) * (y1 - y0) * nx_);
    out.flux.resize(n);
    CUBEFLOW_RETURN_NOT_OK(ReadFloats(data_, k0, k1, y0, y1, out.flux.data()));
    if (stat_.num > 0) {
      out.variance.resize(n);
      CUBEFLOW_RETURN_NOT_OK(ReadFloats(stat_, k0, k1, y0, y1, out.variance.data()));
    } else {
      out.variance.clear();
    }
    if (dq_.num > 0) {
      out.mask.resize(n);
      CUBEFLOW_RETURN_NOT_OK(ReadMask(k0, k1, y0, y1, out.mask.data()));
    } else {
      out.mask.clear();
    }
    return Status::OK();
  }

 private:
  Status Move(const Hdu& h) const {
    int type = 0, status = 0;
    if (fits_movabs_hdu(f_, h.num, &type, &status))
      return Status::Error("cannot move to HDU '" + h.name + "' of '" + path_ + "': " + CfitsioError(status) +
                           "; the file is probably truncated or corrupt");
    return Status::OK();
  }
  Status Failed(const Hdu& h, int64_t k, int status) const {
    return Status::Error("reading HDU '" + h.name + "' of '" + path_ + "' failed at plane " +
                         std::to_string(k_first_ + k) + ": " + CfitsioError(status) +
                         "; the file is probably truncated or corrupt");
  }
  /// Planes [k0, k1) x rows [y0, y1): one read if the rows are whole planes, else one per plane.
  Status ReadFloats(const Hdu& h, int64_t k0, int64_t k1, int64_t y0, int64_t y1, float* dst) const {
    CUBEFLOW_RETURN_NOT_OK(Move(h));
    const long long run = static_cast<long long>((y1 - y0) * nx_);
    const bool whole = y0 == 0 && y1 == ny_;
    for (int64_t k = k0; k < k1; k = whole ? k1 : k + 1) {
      long long fpix[3] = {1, y0 + 1, k_first_ + k + 1};
      const long long count = whole ? run * (k1 - k0) : run;
      int status = 0, anynul = 0;
      if (fits_read_pixll(f_, TFLOAT, fpix, count, nullptr, dst + (k - k0) * run, &anynul, &status))
        return Failed(h, k, status);
      bytes_read_ += static_cast<uint64_t>(count) * sizeof(float);
    }
    return Status::OK();
  }
  Status ReadMask(int64_t k0, int64_t k1, int64_t y0, int64_t y1, uint8_t* dst) const {
    CUBEFLOW_RETURN_NOT_OK(Move(dq_));
    CUBEFLOW_RETURN_NOT_OK(ReadPlanesInt(f_, path_, dq_.name, nx_, y0, y1, k_first_ + k0, k1 - k0, dst));
    bytes_read_ += static_cast<uint64_t>((k1 - k0) * (y1 - y0) * nx_) * sizeof(int);
    return Status::OK();
  }

  std::string path_;
  Hdu data_, stat_, dq_;
  int64_t nx_, ny_, nwave_;
  int64_t k_first_;  ///< file channel of the cube's channel 0
  mutable std::mutex mu_;
  mutable FitsHandle f_;
  mutable std::atomic<uint64_t> bytes_read_{0};
};

/// The lazy end of ReadCube (the channels need more than options.lazy_above_bytes): the same
/// checks as the in-memory read (NaN everywhere, STAT/DQ shapes), then a LazyCube with `meta`'s
/// fields and a FitsCubeReader. `f` is at the data HDU.
Result<std::shared_ptr<Cube>> OpenLazy(FitsHandle& f, const std::string& path, const ReadCubeOptions& opt,
                                       const std::string& data_name, int data_hdu_num, const ImageShape& shape,
                                       const WavelengthAxis& full, int64_t k0, int64_t k1, Cube meta) {
  const int64_t nx = shape.dims[0], ny = shape.dims[1];
  const int64_t nk = k1 - k0 + 1;
  // NaN everywhere in the window: planes are read one at a time until a finite value.
  {
    std::vector<float> plane(static_cast<size_t>(nx * ny));
    bool any = false;
    for (int64_t k = k0; k <= k1 && !any; ++k) {
      long long fpix[3] = {1, 1, k + 1};
      int status = 0, anynul = 0;
      if (fits_read_pixll(f, TFLOAT, fpix, static_cast<long long>(plane.size()), nullptr, plane.data(), &anynul,
                          &status)) {
        return Status::Error("reading HDU '" + data_name + "' of '" + path + "' failed: " + CfitsioError(status) +
                             "; the file is probably truncated or corrupt");
      }
      any = std::any_of(plane.begin(), plane.end(), [](float v) { return std::isfinite(v); });
    }
    if (!any) return NanEverywhere(path, data_name, full, k0, k1);
  }
  // The other extensions: their shapes, and that the file holds their pixels (a truncated file is
  // found here, by io.read_cube, not in the middle of a later node).
  auto locate = [&](const std::string& name, const char* what, FitsCubeReader::Hdu& hdu) -> Status {
    if (name.empty() || !MoveToNamed(f, name)) return Status::OK();
    ImageShape s;
    CUBEFLOW_RETURN_NOT_OK(CheckMatchesFlux(f, path, name, what, data_name, shape, s));
    if (const std::string why = internal::ImageBeyondFile(f, s.naxis, s.dims); !why.empty())
      return Status::Error("HDU '" + name + "' of '" + path + "' " + why);
    int num = 0;
    fits_get_hdu_num(f, &num);
    hdu = {name, num};
    return Status::OK();
  };
  FitsCubeReader::Hdu stat, dq;
  CUBEFLOW_RETURN_NOT_OK(locate(opt.stat_hdu, "the variance", stat));
  if (!opt.stat_hdu.empty() && stat.num == 0 && opt.require_stat) return NoVarianceExtension(f, path, opt.stat_hdu);
  CUBEFLOW_RETURN_NOT_OK(locate(opt.dq_hdu, "the quality array", dq));
  if (const int status = f.Close(); status) fits_clear_errmsg();
  auto lazy = std::make_shared<LazyCube>();
  static_cast<Cube&>(*lazy) = std::move(meta);
  lazy->reader = std::make_shared<FitsCubeReader>(path, FitsCubeReader::Hdu{data_name, data_hdu_num}, stat, dq, nx,
                                                  ny, nk, k0);
  return std::shared_ptr<Cube>(std::move(lazy));
}

}  // namespace

Result<std::shared_ptr<Cube>> ReadCube(const std::string& path, const ReadCubeOptions& opt,
                                       std::vector<std::string>* warnings) {
  FitsHandle f;
  CUBEFLOW_RETURN_NOT_OK(internal::OpenForReading(path, "cube", f));
  int status = 0;
  auto warn = [&](const std::string& w) {
    if (warnings) warnings->push_back(w);
  };
  for (const std::string& name : {opt.data_hdu, opt.stat_hdu}) {
    if (name.empty()) continue;
    const std::vector<int> same = HdusNamed(f, name);
    if (same.size() > 1) {
      std::string list;
      for (int h : same) list += (list.empty() ? "" : " and ") + std::to_string(h - 1);
      return Status::Error("'" + path + "' has " + std::to_string(same.size()) + " image HDUs named " + name +
                           " (HDUs " + list + "); which one holds the cube is ambiguous: remove or rename the others");
    }
  }
  // Locate the flux HDU.
  std::string data_name = opt.data_hdu;
  if (opt.data_hdu.empty() || !MoveToNamed(f, opt.data_hdu)) {
    int type = 0;
    status = 0;
    fits_movabs_hdu(f, 1, &type, &status);
    ImageShape s;
    if (status == 0 && ReadShape(f, path, "PRIMARY", s).ok() && s.naxis == 3) {
      data_name = "PRIMARY";
    } else {
      const std::string prim = status == 0 && s.naxis > 0
                                   ? "a " + std::to_string(s.naxis) + "-D image (" + ShapeText(s) + "), not a 3-D cube"
                                   : "empty";
      return Status::Error("no image extension '" + opt.data_hdu + "' in '" + path + "' (HDUs: " + HduNames(f) +
                           ") and the primary HDU is " + prim + "; set data_hdu to the extension holding the flux");
    }
  }
  const int data_hdu_num = [&] {
    int n = 0;
    fits_get_hdu_num(f, &n);
    return n;
  }();
  ImageShape shape;
  CUBEFLOW_RETURN_NOT_OK(ReadShape(f, path, data_name, shape));
  if (shape.naxis != 3) {
    return Status::Error("HDU '" + data_name + "' of '" + path + "' is a " + std::to_string(shape.naxis) +
                         "-D image (" + ShapeText(shape) +
                         "), expected a 3-D cube (NAXIS = 3: x, y, wavelength)");
  }
  const int64_t nx = shape.dims[0], ny = shape.dims[1], nwave_all = shape.dims[2];
  if (nx <= 0 || ny <= 0 || nwave_all <= 0) {
    return Status::Error("HDU '" + data_name + "' of '" + path + "' has an empty axis (" + ShapeText(shape) + ")");
  }
  // A header that promises more pixels than the file holds: truncated file or a wrong header
  // (not a reason to ask for a narrower window); checked before anything is allocated.
  if (const std::string why = internal::ImageBeyondFile(f, shape.naxis, shape.dims); !why.empty())
    return Status::Error("HDU '" + data_name + "' of '" + path + "' " + why);
  auto cube = std::make_shared<Cube>();
  WavelengthAxis full;
  CUBEFLOW_RETURN_NOT_OK(ReadWaveAxis(f, path, data_name, nwave_all, full));

  // Channel range.
  if (opt.wave_min > 0 && opt.wave_max > 0 && opt.wave_min >= opt.wave_max) {
    return Status::Error("wavelength window for '" + path + "' is empty: wave_min (" + FitsReal(opt.wave_min) +
                         ") must be below wave_max (" + FitsReal(opt.wave_max) + ") Angstrom");
  }
  int64_t k0 = -1, k1 = -1;
  for (int64_t k = 0; k < nwave_all; ++k) {
    const double w = full.At(k);
    if (opt.wave_min > 0 && w < opt.wave_min) continue;
    if (opt.wave_max > 0 && w > opt.wave_max) continue;
    if (k0 < 0) k0 = k;
    k1 = k;
  }
  if (k0 < 0) {
    const double a = full.At(0), b = full.At(nwave_all - 1);
    return Status::Error("wavelength window [" + FitsReal(opt.wave_min) + ", " + FitsReal(opt.wave_max) +
                         "] Angstrom is outside the cube '" + path + "' (HDU '" + data_name + "' covers " +
                         FitsReal(std::min(a, b)) + " - " + FitsReal(std::max(a, b)) +
                         " Angstrom); change wave_min/wave_max");
  }
  const int64_t nk = k1 - k0 + 1;
  cube->nx = nx;
  cube->ny = ny;
  cube->nwave = nk;
  cube->wave = full;
  cube->wave.n = nk;
  cube->wave.crpix = full.crpix - static_cast<double>(k0);
  cube->source = path;
  {
    std::string ctype3;
    if (!ReadStringKey(f, "CTYPE3", ctype3))
      warn("HDU '" + data_name + "' of '" + path + "' has no CTYPE3: the wavelength axis is taken as linear, in air "
           "Angstrom (AWAV); add CTYPE3 ('AWAV' or 'WAVE') to the header to say which");
    const double a = full.At(0), b = full.At(nwave_all - 1);
    const double lo = std::min(a, b), hi = std::max(a, b);
    if ((opt.wave_min > 0 && opt.wave_min < lo) || (opt.wave_max > 0 && opt.wave_max > hi))
      warn("the wavelength window [" + FitsReal(opt.wave_min) + ", " + FitsReal(opt.wave_max) + "] Angstrom is partly "
           "outside '" + path + "' (" + FitsReal(lo) + " - " + FitsReal(hi) + " Angstrom): reading " +
           FitsReal(std::max(lo, opt.wave_min > 0 ? opt.wave_min : lo)) + " - " +
           FitsReal(std::min(hi, opt.wave_max > 0 ? opt.wave_max : hi)) + " Angstrom only");
  }
  if (!ReadStringKey(f, "BUNIT", cube->bunit) || cube->bunit.empty()) {
    warn("HDU '" + data_name + "' of '" + path + "' has no BUNIT: the flux unit is unknown, so products carry no "
         "physical flux scale and HST photometry cannot be matched to the spectra; add BUNIT (e.g. "
         "'10**(-20)*erg/s/cm**2/Angstrom')");
  } else if (auto u = FluxDensityScale(cube->bunit); !u.ok()) {
    warn("HDU '" + data_name + "' of '" + path + "': " + u.status().message() +
         "; products carry no physical flux scale and HST photometry cannot be matched to the spectra");
  }

  // Primary HDU for frame keywords and header metadata.
  {
    std::string cards;
    cards = CelestialCards(f, nx, ny);
    if (!cards.empty() && cards.find("RADESYS") == std::string::npos && data_hdu_num != 1) {
      int type = 0;
      status = 0;
      fits_movabs_hdu(f, 1, &type, &status);
      std::string s;
      if (status == 0 && (ReadStringKey(f, "RADESYS", s) || ReadStringKey(f, "RADECSYS", s)))
        cards += MakeCard("RADESYS", FitsString(s));
      status = 0;
      fits_movabs_hdu(f, data_hdu_num, &type, &status);
    }
    cube->wcs.cards = std::move(cards);
    CollectHeader(f, cube->header);
    if (data_hdu_num != 1) {
      int type = 0;
      status = 0;
      fits_movabs_hdu(f, 1, &type, &status);
      if (status == 0) CollectHeader(f, cube->header);
      status = 0;
      fits_movabs_hdu(f, data_hdu_num, &type, &status);
    }
    fits_clear_errmsg();
  }

  const long long nelem = static_cast<long long>(nx * ny * nk);
  const uint64_t need = static_cast<uint64_t>(nelem) * (opt.stat_hdu.empty() ? 4u : 8u);
  if (need > opt.lazy_above_bytes) {
    return OpenLazy(f, path, opt, data_name, data_hdu_num, shape, full, k0, k1, std::move(*cube));
  }
  // Flux: one contiguous read of the selected planes, straight into the cube.
  try {
    cube->flux.resize(static_cast<size_t>(nelem));
  } catch (const std::bad_alloc&) {
    return Status::Error("not enough memory for " + std::to_string(nelem) + " pixels of '" + path +
                         "'; read a narrower wavelength window (wave_min/wave_max)");
  }
  {
    long long fpix[3] = {1, 1, k0 + 1};
    int anynul = 0;
    status = 0;
    if (fits_read_pixll(f, TFLOAT, fpix, nelem, nullptr, cube->flux.data(), &anynul, &status)) {
      return Status::Error("reading HDU '" + data_name + "' of '" + path + "' failed: " + CfitsioError(status) +
                           "; the file is probably truncated or corrupt");
    }
  }
  {
    bool any = false;
    for (float v : cube->flux) {
      if (std::isfinite(v)) {
        any = true;
        break;
      }
    }
    if (!any) return NanEverywhere(path, data_name, full, k0, k1);
  }

  // Variance.
  if (!opt.stat_hdu.empty()) {
    if (MoveToNamed(f, opt.stat_hdu)) {
      ImageShape s;
      CUBEFLOW_RETURN_NOT_OK(CheckMatchesFlux(f, path, opt.stat_hdu, "the variance", data_name, shape, s));
      cube->variance.resize(static_cast<size_t>(nelem));
      long long fpix[3] = {1, 1, k0 + 1};
      int anynul = 0;
      status = 0;
      if (fits_read_pixll(f, TFLOAT, fpix, nelem, nullptr, cube->variance.data(), &anynul, &status)) {
        return Status::Error("reading HDU '" + opt.stat_hdu + "' of '" + path + "' failed: " + CfitsioError(status) +
                             "; the file is probably truncated or corrupt");
      }
    } else if (opt.require_stat) {
      return NoVarianceExtension(f, path, opt.stat_hdu);
    }
  }
  // Data quality.
  if (!opt.dq_hdu.empty() && MoveToNamed(f, opt.dq_hdu)) {
    ImageShape s;
    CUBEFLOW_RETURN_NOT_OK(CheckMatchesFlux(f, path, opt.dq_hdu, "the quality array", data_name, shape, s));
    cube->mask.assign(static_cast<size_t>(nelem), 0);
    CUBEFLOW_RETURN_NOT_OK(ReadPlanesInt(f, path, opt.dq_hdu, nx, 0, ny, k0, nk, cube->mask.data()));
  }
  status = f.Close();
  if (status) fits_clear_errmsg();
  return cube;
}

// ------------------------------------------------------------------------------------------
// Writer

namespace {

void WriteCards(fitsfile* f, const std::string& cards, int* status) {
  for (const std::string& c : SplitCards(cards)) {
    const std::string key = Trim(c.substr(0, 8));
    if (key == "NAXIS" || key == "NAXIS1" || key == "NAXIS2" || key == "NAXIS3" || key == "WCSAXES" ||
        key == "SIMPLE" || key == "BITPIX" || key == "EXTEND" || key == "END" || key.empty())
      continue;
    fits_write_record(f, c.c_str(), status);
  }
}

void WriteSpectralKeys(fitsfile* f, const Cube& cube, int* status) {
  const WavelengthAxis& a = cube.wave;
  std::string ctype = a.air ? "AWAV" : "WAVE";
  double crval = a.crval, step = a.cdelt;
  if (a.log) {
    ctype += "-LOG";
    crval = std::exp(a.crval);
    step = a.cdelt * crval;
  }
  fits_update_key(f, TSTRING, "CTYPE3", const_cast<char*>(ctype.c_str()), "air or vacuum wavelength", status);
  fits_update_key(f, TSTRING, "CUNIT3", const_cast<char*>("Angstrom"), nullptr, status);
  fits_update_key(f, TDOUBLE, "CRVAL3", &crval, nullptr, status);
  double crpix = a.crpix;
  fits_update_key(f, TDOUBLE, "CRPIX3", &crpix, nullptr, status);
  const bool cd = cube.wcs.cards.find("CD1_1") != std::string::npos;
  fits_update_key(f, TDOUBLE, cd ? "CD3_3" : "CDELT3", &step, "wavelength step [Angstrom]", status);
}

}  // namespace

Status WriteCube(const std::string& path, const Cube& cube) {
  const size_t n = static_cast<size_t>(cube.nx * cube.ny * cube.nwave);
  if (cube.nx <= 0 || cube.ny <= 0 || cube.nwave <= 0 || cube.flux.size() != n) {
    return Status::Error("cannot write cube '" + path + "': flux has " + std::to_string(cube.flux.size()) +
                         " values, expected nx*ny*nwave = " + std::to_string(n));
  }
  if (!cube.variance.empty() && cube.variance.size() != n)
    return Status::Error("cannot write cube '" + path + "': variance size does not match the flux");
  if (!cube.mask.empty() && cube.mask.size() != n)
    return Status::Error("cannot write cube '" + path + "': mask size does not match the flux");
  CUBEFLOW_ASSIGN_OR_RETURN(AtomicFitsFile out, AtomicFitsFile::Create(path, "cube"));
  fitsfile* f = out.get();
  int status = 0;
  long long naxes[3] = {cube.nx, cube.ny, cube.nwave};
  fits_create_imgll(f, BYTE_IMG, 0, nullptr, &status);
  for (const auto& [k, v] : cube.header) internal::WriteTypedKey(f, k, v, "", &status);
  CUBEFLOW_RETURN_NOT_OK(out.Check(status));

  auto write_ext = [&](const char* name, int bitpix, int dtype, const void* data, const std::string& bunit) {
    out.set_hdu(name);
    fits_create_imgll(f, bitpix, 3, naxes, &status);
    fits_update_key(f, TSTRING, "EXTNAME", const_cast<char*>(name), "extension name", &status);
    if (!bunit.empty()) fits_update_key(f, TSTRING, "BUNIT", const_cast<char*>(bunit.c_str()), nullptr, &status);
    WriteCards(f, cube.wcs.cards, &status);
    WriteSpectralKeys(f, cube, &status);
    long long fpix[3] = {1, 1, 1};
    fits_write_pixll(f, dtype, fpix, static_cast<long long>(n), const_cast<void*>(data), &status);
    return out.Check(status);
  };
  CUBEFLOW_RETURN_NOT_OK(write_ext("DATA", FLOAT_IMG, TFLOAT, cube.flux.data(), cube.bunit));
  if (!cube.variance.empty()) {
    std::string vunit;
    if (!cube.bunit.empty()) vunit = "(" + cube.bunit + ")**2";
    CUBEFLOW_RETURN_NOT_OK(write_ext("STAT", FLOAT_IMG, TFLOAT, cube.variance.data(), vunit));
  }
  if (!cube.mask.empty()) CUBEFLOW_RETURN_NOT_OK(write_ext("DQ", BYTE_IMG, TBYTE, cube.mask.data(), ""));
  return out.Commit();
}

}  // namespace cubeflow::fits
