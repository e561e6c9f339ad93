#pragma once
// Private helpers shared by the cubeflow_fits sources (CFITSIO handles, error text, temp files).
#include <fitsio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cubeflow/status.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::fits::internal {

/// Text of a CFITSIO status code plus the first message on CFITSIO's error stack (then cleared).
inline std::string CfitsioError(int status) {
  char text[FLEN_STATUS] = {0};
  fits_get_errstatus(status, text);
  std::string out = "CFITSIO status " + std::to_string(status) + ": " + text;
  char msg[FLEN_ERRMSG] = {0};
  if (fits_read_errmsg(msg) && msg[0] != '\0') out += " (" + std::string(msg) + ")";
  fits_clear_errmsg();
  return out;
}

/// Owns a fitsfile*; closes it on destruction (errors on close are ignored there).
class FitsHandle {
 public:
  FitsHandle() = default;
  FitsHandle(const FitsHandle&) = delete;
  FitsHandle& operator=(const FitsHandle&) = delete;
  ~FitsHandle() { Close(); }
  fitsfile*& get() { return f_; }
  fitsfile* operator->() { return f_; }
  operator fitsfile*() { return f_; }  // NOLINT
  int Close() {
    int status = 0;
    if (f_) fits_close_file(f_, &status);
    f_ = nullptr;
    return status;
  }

 private:
  fitsfile* f_ = nullptr;
};

/// Unquotes a FITS value literal ('abc''d' -> abc'd), trimmed; other values only trimmed.
inline std::string Unquote(const std::string& raw) {
  std::string s = Trim(raw);
  if (s.size() >= 2 && s.front() == '\'') {
    std::string out;
    for (size_t i = 1; i + 1 < s.size(); ++i) {
      out += s[i];
      if (s[i] == '\'' && s[i + 1] == '\'') ++i;
    }
    return Trim(out);
  }
  return s;
}

/// Bytes from the start of the current HDU's data to the end of the file, as CFITSIO sees the
/// file (a gzip-compressed file counts uncompressed); -1 if unknown.
inline long long DataBytesInFile(fitsfile* f) {
  int status = 0;
  LONGLONG head = 0, data = 0, end = 0;
  if (fits_get_hduaddrll(f, &head, &data, &end, &status)) {
    fits_clear_errmsg();
    return -1;
  }
  return f->Fptr->logfilesize - data;
}

/// Why the current image HDU, `naxis` axes of lengths `dims` and BITPIX bytes per pixel, cannot
/// be read from this file, or "" if it can; the text follows the HDU's name ("HDU 'X' of 'f' " +
/// it). A header may declare any size (NAXISn up to 2^63): readers check this before they
/// allocate the pixels, so that a truncated file or a wrong header gets an error instead of an
/// allocation of terabytes (or an overflowing size). Tile-compressed images (stored in a table)
/// are not checked.
inline std::string ImageBeyondFile(fitsfile* f, int naxis, const long long* dims) {
  int status = 0, bitpix = 0;
  if (fits_is_compressed_image(f, &status) || fits_get_img_type(f, &bitpix, &status)) {
    fits_clear_errmsg();
    return "";
  }
  const long long have = DataBytesInFile(f);
  if (have < 0) return "";
  long long need = std::abs(bitpix) / 8;
  std::string shape;
  bool overflow = false;
  for (int i = 0; i < naxis; ++i) {
    shape += (i ? " x " : "") + std::to_string(dims[i]);
    if (dims[i] < 0 || __builtin_mul_overflow(need, dims[i], &need)) overflow = true;
  }
  if (!overflow && need <= have) return "";
  auto gb = [](long long bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", static_cast<double>(bytes) / 1e9);
    return std::string(buf);
  };
  return "declares " + shape + " = " + (overflow ? std::string("more than 2^63 bytes") : gb(need) + " GB") +
         " of pixels, but the file holds " + gb(std::max(have, 0LL)) +
         " GB: the file is truncated or its header (NAXISn) is wrong";
}

/// Temporary file next to `path`: path + ".tmp-<pid>".
inline std::string TempPathFor(const std::string& path) {
  return path + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
}

/// CFITSIO opens a gzip-compressed file by decompressing all of it into memory, allocating at
/// once the size the gzip trailer declares (its last 4 bytes): a corrupt file of a few bytes
/// could make it ask for gigabytes (found by fuzzing, tests/fuzz/regressions/fits_cube). Deflate
/// cannot compress more than 1032:1, so a real gzip file never needs more than that; refuse a
/// file for which CFITSIO would allocate more, and files too short to be gzip at all (a small,
/// incompressible gzip file whose declared size is below its own is refused too: CFITSIO would
/// allocate over 4 GiB for it). Files that do not start with the gzip magic are not looked at.
inline Status CheckGzipTrailer(const std::string& path, uint64_t size, const std::string& what) {
  FILE* in = std::fopen(path.c_str(), "rb");
  if (!in) return Status::OK();  // fits_open_diskfile reports it
  unsigned char magic[2] = {0, 0}, trailer[4] = {0, 0, 0, 0};
  const bool gzip = std::fread(magic, 1, 2, in) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  bool have_trailer = false;
  if (gzip && size >= 18 && std::fseek(in, -4, SEEK_END) == 0) have_trailer = std::fread(trailer, 1, 4, in) == 4;
  std::fclose(in);
  if (!gzip) return Status::OK();
  const std::string head = "cannot read " + what + " '" + path + "': it is gzip-compressed but ";
  if (!have_trailer)
    return Status::Error(head + "only " + std::to_string(size) + " bytes long (a gzip file has at least 18): it is truncated or not gzip");
  const uint64_t declared = uint64_t{trailer[0]} | uint64_t{trailer[1]} << 8 | uint64_t{trailer[2]} << 16 |
                            uint64_t{trailer[3]} << 24;
  // CFITSIO takes a declared size below the compressed one for a file of more than 4 GiB
  // uncompressed and allocates declared + 2^32.
  const uint64_t allocation = declared < size ? declared + (uint64_t{1} << 32) : declared;
  if (allocation > 1032 * size + 65536)
    return Status::Error(head + "its trailer declares " + std::to_string(declared) + " bytes uncompressed (modulo 2^32) from " +
                         std::to_string(size) + " compressed, which CFITSIO would allocate as " +
                         std::to_string(allocation) + " bytes, more than gzip can encode: the file is corrupt or "
                         "truncated; decompress it with gunzip (gunzip -t tests it) and read the .fits file");
  return Status::OK();
}

/// Opens `path` read-only into `f`. The errors of the readers' first step, naming the file and
/// what it should hold (`what`: "cube", "image"): missing or unreadable, a directory, not FITS.
inline Status OpenForReading(const std::string& path, const std::string& what, FitsHandle& f) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::Error("cannot read " + what + " '" + path + "': " + std::strerror(errno) +
                         "; check the path (relative paths are resolved against the pipeline file)");
  }
  if (S_ISDIR(st.st_mode)) return Status::Error("cannot read " + what + " '" + path + "': it is a directory");
  CUBEFLOW_RETURN_NOT_OK(CheckGzipTrailer(path, static_cast<uint64_t>(st.st_size), what));
  int status = 0;
  if (fits_open_diskfile(&f.get(), path.c_str(), READONLY, &status)) {
    f.get() = nullptr;
    return Status::Error("cannot open '" + path + "' as FITS: " + CfitsioError(status) +
                         "; the file is not FITS, or is truncated or corrupt");
  }
  return Status::OK();
}

/// The number of HDUs of an open file, counted by moving through them one at a time. CFITSIO's
/// own count (fits_get_num_hdus) walks the file until it ends and never stops on a header whose
/// data size sends the next HDU back to an earlier position (found by fuzzing fits_maps: a
/// 7 kB file ran for minutes): here every HDU must start after the one before it, else the
/// count stops with CFITSIO's status BAD_HDU_NUM. Returns the CFITSIO status (0: ok) and leaves
/// the file at the HDU it was at.
inline int CountHdus(fitsfile* f, int* n) {
  int cur = 0, status = 0;
  fits_get_hdu_num(f, &cur);
  *n = 0;
  LONGLONG previous = -1;
  for (int i = 1;; ++i) {
    int type = 0;
    status = 0;
    if (fits_movabs_hdu(f, i, &type, &status)) {
      if (status == END_OF_FILE && i > 1) status = 0;
      break;
    }
    LONGLONG head = 0, data = 0, end = 0;
    if (fits_get_hduaddrll(f, &head, &data, &end, &status)) break;
    if (head <= previous || end < data) {
      status = BAD_HDU_NUM;
      break;
    }
    previous = head;
    *n = i;
  }
  int type = 0, restore = 0;
  if (cur > 0) fits_movabs_hdu(f, cur, &type, &restore);
  if (status == 0) fits_clear_errmsg();
  return status;
}

}  // namespace cubeflow::fits::internal

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>

namespace cubeflow::fits::internal {

/// Writes `key = value` choosing the FITS type from the text: integer, real (finite), logical
/// ("T"/"F"), otherwise a string (CONTINUE long-string convention when longer than 68 chars).
/// Keys longer than 8 characters or with characters outside [A-Z0-9_-] are written as HIERARCH.
inline int WriteTypedKey(fitsfile* f, const std::string& key, const std::string& value,
                         const std::string& comment, int* status) {
  if (*status) return *status;
  const char* cm = comment.empty() ? nullptr : comment.c_str();
  if (value == "T" || value == "F") {
    int b = value == "T" ? 1 : 0;
    return fits_update_key(f, TLOGICAL, key.c_str(), &b, cm, status);
  }
  if (!value.empty() && value.size() < 40) {
    char* end = nullptr;
    errno = 0;
    long long iv = std::strtoll(value.c_str(), &end, 10);
    if (errno == 0 && end && *end == '\0') return fits_update_key(f, TLONGLONG, key.c_str(), &iv, cm, status);
    end = nullptr;
    double dv = std::strtod(value.c_str(), &end);
    if (end && *end == '\0' && std::isfinite(dv) && value.find_first_of("nNiI") == std::string::npos)
      return fits_update_key(f, TDOUBLE, key.c_str(), &dv, cm, status);
  }
  if (value.size() <= 68) {
    return fits_update_key(f, TSTRING, key.c_str(), const_cast<char*>(value.c_str()), cm, status);
  }
  return fits_write_key_longstr(f, key.c_str(), value.c_str(), cm, status);
}

}  // namespace cubeflow::fits::internal
