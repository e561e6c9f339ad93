// Reading MAPS products with CFITSIO.
#include "cubeflow/fits/maps_reader.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/strings.hpp"
#include "fits_util.hpp"

namespace cubeflow::fits {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using internal::FitsHandle;

/// String keyword (long-string convention aware); false if absent.
bool ReadString(fitsfile* f, const char* key, std::string& out) {
  int st = 0;
  char* v = nullptr;
  fits_read_key_longstr(f, key, &v, nullptr, &st);
  if (st) {
    if (v) fits_free_memory(v, &st);
    fits_clear_errmsg();
    return false;
  }
  out = v ? v : "";
  int st2 = 0;
  if (v) fits_free_memory(v, &st2);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return true;
}

bool ReadDouble(fitsfile* f, const char* key, double& out) {
  int st = 0;
  fits_read_key(f, TDOUBLE, key, &out, nullptr, &st);
  if (st) fits_clear_errmsg();
  return st == 0;
}

/// Raw keyword value as text (quotes removed).
bool ReadRaw(fitsfile* f, const char* key, std::string& out) {
  char value[FLEN_VALUE] = {0};
  int st = 0;
  fits_read_keyword(f, key, value, nullptr, &st);
  if (st) {
    fits_clear_errmsg();
    return false;
  }
  std::string s = value;
  if (s.size() >= 2 && s.front() == '\'') {
    if (ReadString(f, key, out)) return true;
    s = s.substr(1, s.size() - 2);
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  out = s;
  return true;
}

CelestialWcs ReadCelestial(fitsfile* f, int64_t nx, int64_t ny) {
  using fits::FitsReal;
  using fits::FitsString;
  using fits::MakeCard;
  std::string c1, c2;
  if (!ReadString(f, "CTYPE1", c1) || !ReadString(f, "CTYPE2", c2)) return {};
  std::string cards = MakeCard("NAXIS", "2") + MakeCard("NAXIS1", std::to_string(nx)) +
                      MakeCard("NAXIS2", std::to_string(ny)) + MakeCard("WCSAXES", "2") +
                      MakeCard("CTYPE1", FitsString(c1)) + MakeCard("CTYPE2", FitsString(c2));
  std::string s;
  for (const char* k : {"CUNIT1", "CUNIT2"})
    if (ReadString(f, k, s)) cards += MakeCard(k, FitsString(s));
  double v;
  for (const char* k : {"CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "PC1_1", "PC1_2",
                        "PC2_1", "PC2_2", "CDELT1", "CDELT2", "CROTA2", "LONPOLE", "LATPOLE"})
    if (ReadDouble(f, k, v)) cards += MakeCard(k, FitsReal(v));
  if (ReadString(f, "RADESYS", s) || ReadString(f, "RADECSYS", s)) cards += MakeCard("RADESYS", FitsString(s));
  if (ReadDouble(f, "EQUINOX", v)) cards += MakeCard("EQUINOX", FitsReal(v));
  return CelestialWcs{cards};
}

Status ReadTable(fitsfile* f, const std::string& path, MapsTable& t) {
  int st = 0;
  long long nrows = 0;
  int ncols = 0;
  fits_get_num_rowsll(f, &nrows, &st);
  fits_get_num_cols(f, &ncols, &st);
  if (st) return Status::Error("cannot read table '" + t.name + "' of '" + path + "': " + internal::CfitsioError(st));
  t.nrows = nrows;
  for (int col = 1; col <= ncols; ++col) {
    int type = 0;
    long long repeat = 0, width = 0;
    fits_get_coltypell(f, col, &type, &repeat, &width, &st);
    if (st) return Status::Error("cannot read column " + std::to_string(col) + " of table '" + t.name + "' in '" +
                                 path + "': " + internal::CfitsioError(st));
    if (type == TSTRING || type == TLOGICAL || type == TBIT || repeat < 1) continue;
    MapsColumn c;
    const std::string n = std::to_string(col);
    ReadString(f, ("TTYPE" + n).c_str(), c.name);
    ReadString(f, ("TUNIT" + n).c_str(), c.unit);
    c.width = repeat;
    c.values.assign(static_cast<size_t>(nrows * repeat), kNaN);
    if (nrows > 0) {
      double nul = kNaN;
      int anynul = 0;
      fits_read_col(f, TDOUBLE, col, 1, 1, nrows * repeat, &nul, c.values.data(), &anynul, &st);
      if (st) return Status::Error("cannot read column '" + c.name + "' of table '" + t.name + "' in '" + path +
                                   "': " + internal::CfitsioError(st));
    }
    t.columns.push_back(std::move(c));
  }
  return Status::OK();
}

}  // namespace

const MapsColumn* MapsTable::Find(const std::string& column) const {
  const std::string u = Upper(column);
  for (const auto& c : columns)
    if (Upper(c.name) == u) return &c;
  return nullptr;
}

int64_t MapsTable::RowOf(int64_t binid) const {
  const MapsColumn* id = Find("BINID");
  if (!id) return -1;
  for (int64_t r = 0; r < nrows; ++r)
    if (std::isfinite(id->At(r)) && std::llround(id->At(r)) == binid) return r;
  return -1;
}

Result<MapsFile> MapsFile::Open(const std::string& path) {
  FitsHandle h;
  CUBEFLOW_RETURN_NOT_OK(internal::OpenForReading(path, "MAPS file", h));
  int st = 0;
  MapsFile m;
  m.path_ = path;
  int nhdu = 0;
  st = internal::CountHdus(h.get(), &nhdu);
  if (st) return Status::Error("cannot read '" + path + "': " + internal::CfitsioError(st));
  for (const char* k : {"CFVERS", "OBJECT", "PIPEFILE", "RUNUTC", "DATE", "NBINS", "NFAILED", "NMISSING", "PARTIAL"}) {
    std::string v;
    if (ReadRaw(h.get(), k, v)) m.primary_[k] = v;
  }
  for (int i = 1; i <= nhdu; ++i) {
    int type = 0;
    fits_movabs_hdu(h.get(), i, &type, &st);
    if (st) return Status::Error("cannot read HDU " + std::to_string(i - 1) + " of '" + path + "': " + internal::CfitsioError(st));
    std::string name;
    if (!ReadString(h.get(), "EXTNAME", name)) name = i == 1 ? "PRIMARY" : "HDU" + std::to_string(i - 1);
    m.hdu_names_.push_back(name);
    if (type == IMAGE_HDU) {
      int naxis = 0;
      long long naxes[3] = {0, 0, 0};
      fits_get_img_dim(h.get(), &naxis, &st);
      if (!st && naxis >= 2 && naxis <= 3) fits_get_img_sizell(h.get(), 3, naxes, &st);
      if (st) return Status::Error("cannot read the image size of '" + name + "' in '" + path + "': " + internal::CfitsioError(st));
      if (naxis < 2 || naxis > 3 || naxes[0] < 1 || naxes[1] < 1) continue;
      // Plane names only for an image whose data the file holds: a NAXIS3 of billions in a short
      // file would otherwise make billions of them (found by fuzzing). Such an image is still
      // listed; Load refuses it, naming its sizes. FITS pads to 2880-byte blocks.
      LONGLONG head_start = 0, data_start = 0, data_end = 0;
      int sa = 0;
      fits_get_hduaddrll(h.get(), &head_start, &data_start, &data_end, &sa);
      std::error_code ec;
      const auto bytes = std::filesystem::file_size(path, ec);
      const bool data_in_file =
          sa || ec || static_cast<unsigned long long>(data_end) <= (bytes + 2879) / 2880 * 2880;
      MapsImage im;
      im.name = name;
      im.hdu = i;
      im.nx = naxes[0];
      im.ny = naxes[1];
      im.nplanes = naxis == 3 ? std::max<long long>(1, naxes[2]) : 1;
      ReadString(h.get(), "BUNIT", im.bunit);
      ReadString(h.get(), "HDUCLAS2", im.hduclas2);
      ReadString(h.get(), "ERRDATA", im.errdata);
      ReadString(h.get(), "QUALDATA", im.qualdata);
      ReadString(h.get(), "DATA", im.data);
      for (int64_t p = 0; data_in_file && p < im.nplanes && im.nplanes > 1; ++p) {
        std::string pn;
        if (!ReadString(h.get(), ("C" + std::to_string(p + 1)).c_str(), pn)) pn = std::to_string(p + 1);
        im.plane_names.push_back(pn);
      }
      im.wcs = ReadCelestial(h.get(), im.nx, im.ny);
      m.images_.push_back(std::move(im));
    } else if (type == BINARY_TBL && Upper(name) == "BINS" && !m.has_bins_) {
      m.bins_.name = name;
      CUBEFLOW_RETURN_NOT_OK(ReadTable(h.get(), path, m.bins_));
      m.has_bins_ = true;
    }
  }
  return m;
}

const MapsImage* MapsFile::Find(const std::string& name) const {
  const std::string u = Upper(name);
  for (const auto& im : images_)
    if (Upper(im.name) == u) return &im;
  return nullptr;
}

Result<MapsImage> MapsFile::Load(const std::string& name) const {
  const MapsImage* hdr = Find(name);
  if (!hdr) return Status::Error("'" + path_ + "' has no image extension '" + name + "'");
  MapsImage im = *hdr;
  FitsHandle h;
  CUBEFLOW_RETURN_NOT_OK(internal::OpenForReading(path_, "MAPS file", h));
  int st = 0, type = 0;
  fits_movabs_hdu(h.get(), im.hdu, &type, &st);
  if (st) return Status::Error("cannot move to image '" + name + "' in '" + path_ + "': " + internal::CfitsioError(st));
  const long long dims[3] = {im.nx, im.ny, im.nplanes};
  if (const std::string why = internal::ImageBeyondFile(h.get(), 3, dims); !why.empty())
    return Status::Error("image '" + name + "' in '" + path_ + "' " + why);
  const long long n = im.nx * im.ny * im.nplanes;
  im.values.assign(static_cast<size_t>(n), kNaN);
  long long fpix[3] = {1, 1, 1};
  double nul = kNaN;
  int anynul = 0;
  fits_read_pixll(h.get(), TDOUBLE, fpix, n, &nul, im.values.data(), &anynul, &st);
  if (st) return Status::Error("cannot read the pixels of '" + name + "' in '" + path_ + "': " + internal::CfitsioError(st));
  return im;
}

}  // namespace cubeflow::fits
