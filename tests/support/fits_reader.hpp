#pragma once
// A read-only CFITSIO view of a FITS file, for checking the products nodes write (shared by the
// tests of io.write_maps, io.write_spectra and the nGIST comparisons).
#include <fitsio.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace cftest {

/// Read-only FITS file for checking products.
struct FitsFile {
  fitsfile* f = nullptr;
  int status = 0;
  explicit FitsFile(const std::string& path) {
    if (fits_open_diskfile(&f, path.c_str(), READONLY, &status)) f = nullptr;
  }
  ~FitsFile() {
    int st = 0;
    if (f) fits_close_file(f, &st);
  }
  bool Move(const std::string& ext) {
    int st = 0;
    return fits_movnam_hdu(f, ANY_HDU, const_cast<char*>(ext.c_str()), 0, &st) == 0;
  }
  /// A keyword's value read as a string ("T" for a logical; "<missing>" if absent).
  std::string Key(const std::string& key) {
    char v[FLEN_VALUE] = {0};
    int st = 0;
    if (fits_read_key(f, TSTRING, key.c_str(), v, nullptr, &st)) return "<missing>";
    return v;
  }
  bool MovePrimary() {
    int st = 0, type = 0;
    return fits_movabs_hdu(f, 1, &type, &st) == 0;
  }
  bool Has(const std::string& key) {
    char v[FLEN_VALUE] = {0};
    int st = 0;
    return fits_read_keyword(f, key.c_str(), v, nullptr, &st) == 0;
  }
  std::string Str(const std::string& key) {
    char* v = nullptr;
    int st = 0;
    if (fits_read_key_longstr(f, key.c_str(), &v, nullptr, &st)) return "<missing>";
    std::string s = v;
    fits_free_memory(v, &st);
    return s;
  }
  double Dbl(const std::string& key) {
    double v = std::numeric_limits<double>::quiet_NaN();
    int st = 0;
    if (fits_read_key(f, TDOUBLE, key.c_str(), &v, nullptr, &st)) return std::numeric_limits<double>::quiet_NaN();
    return v;
  }
  long long Int(const std::string& key) {
    long long v = -999999;
    int st = 0;
    fits_read_key(f, TLONGLONG, key.c_str(), &v, nullptr, &st);
    return v;
  }
  bool Logical(const std::string& key) {
    int v = 0, st = 0;
    fits_read_key(f, TLOGICAL, key.c_str(), &v, nullptr, &st);
    return v != 0;
  }
  int Bitpix() {
    int b = 0, st = 0;
    fits_get_img_type(f, &b, &st);
    return b;
  }
  std::vector<long long> Shape() {
    int naxis = 0, st = 0;
    fits_get_img_dim(f, &naxis, &st);
    std::vector<long long> d(static_cast<size_t>(std::max(naxis, 0)));
    if (naxis > 0) fits_get_img_sizell(f, naxis, d.data(), &st);
    return d;
  }
  std::vector<double> Image() {
    long long n = 1;
    for (long long d : Shape()) n *= d;
    std::vector<double> out(static_cast<size_t>(n));
    int st = 0, anynul = 0;
    double nul = std::numeric_limits<double>::quiet_NaN();
    if (n > 0) fits_read_img(f, TDOUBLE, 1, n, &nul, out.data(), &anynul, &st);
    return out;
  }
  /// The first n pixels of the current image HDU.
  std::vector<double> Image(int64_t n) {
    std::vector<double> out(static_cast<size_t>(n));
    int st = 0, anynul = 0;
    double nul = std::numeric_limits<double>::quiet_NaN();
    fits_read_img(f, TDOUBLE, 1, n, &nul, out.data(), &anynul, &st);
    return out;
  }
  long Rows() {
    long n = 0;
    int st = 0;
    fits_get_num_rows(f, &n, &st);
    return n;
  }
  int Col(const std::string& name) {
    int c = 0, st = 0;
    if (fits_get_colnum(f, CASEINSEN, const_cast<char*>(name.c_str()), &c, &st)) return 0;
    return c;
  }
  std::vector<double> Column(const std::string& name) {
    const long n = Rows();
    std::vector<double> v(static_cast<size_t>(n), std::numeric_limits<double>::quiet_NaN());
    const int c = Col(name);
    int st = 0, anynul = 0;
    double nul = std::numeric_limits<double>::quiet_NaN();
    if (c > 0 && n > 0) fits_read_col(f, TDOUBLE, c, 1, 1, n, &nul, v.data(), &anynul, &st);
    if (c == 0) v.clear();
    return v;
  }
  std::vector<std::string> StrColumn(const std::string& name) {
    const long n = Rows();
    const int c = Col(name);
    if (c == 0) return {};
    int st = 0, anynul = 0;
    int width = 0;
    fits_get_col_display_width(f, c, &width, &st);
    std::vector<std::vector<char>> bufs(static_cast<size_t>(n), std::vector<char>(static_cast<size_t>(width) + 2, 0));
    std::vector<char*> ptrs;
    for (auto& b : bufs) ptrs.push_back(b.data());
    fits_read_col(f, TSTRING, c, 1, 1, n, const_cast<char*>(""), ptrs.data(), &anynul, &st);
    std::vector<std::string> out;
    for (auto& b : bufs) {
      std::string v = b.data();
      while (!v.empty() && v.back() == ' ') v.pop_back();  // CFITSIO gives " " for a blank field
      out.push_back(v);
    }
    return out;
  }
  std::string ColumnUnit(const std::string& name) {
    const int c = Col(name);
    return c == 0 ? "<missing>" : Str("TUNIT" + std::to_string(c));
  }
  /// True if every HDU's CHECKSUM and DATASUM verify.
  bool ChecksumsOk() {
    int nhdu = 0, st = 0;
    fits_get_num_hdus(f, &nhdu, &st);
    for (int i = 1; i <= nhdu; ++i) {
      int type = 0, dok = 0, hok = 0;
      fits_movabs_hdu(f, i, &type, &st);
      fits_verify_chksum(f, &dok, &hok, &st);
      if (st || dok != 1 || hok != 1) return false;
    }
    return true;
  }
};

}  // namespace cftest
