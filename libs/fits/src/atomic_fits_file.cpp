// AtomicFitsFile: temporary FITS file, checksums, close, rename (cubeflow/fits/atomic_fits_file.hpp).
#include "cubeflow/fits/atomic_fits_file.hpp"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "fits_util.hpp"

namespace cubeflow::fits {

using internal::CfitsioError;

AtomicFitsFile::AtomicFitsFile(std::string path, std::string tmp, std::string what, fitsfile* f)
    : path_(std::move(path)), tmp_(std::move(tmp)), what_(std::move(what)), f_(f) {}

AtomicFitsFile::AtomicFitsFile(AtomicFitsFile&& o) noexcept
    : path_(std::move(o.path_)), tmp_(std::move(o.tmp_)), what_(std::move(o.what_)), hdu_(std::move(o.hdu_)),
      f_(std::exchange(o.f_, nullptr)) {}

AtomicFitsFile& AtomicFitsFile::operator=(AtomicFitsFile&& o) noexcept {
  if (this != &o) {
    Abandon();
    path_ = std::move(o.path_);
    tmp_ = std::move(o.tmp_);
    what_ = std::move(o.what_);
    hdu_ = std::move(o.hdu_);
    f_ = std::exchange(o.f_, nullptr);
  }
  return *this;
}

AtomicFitsFile::~AtomicFitsFile() { Abandon(); }

void AtomicFitsFile::Abandon() {
  if (!f_) return;
  int status = 0;
  fits_close_file(f_, &status);
  f_ = nullptr;
  fits_clear_errmsg();
  ::unlink(tmp_.c_str());
}

std::string AtomicFitsFile::Prefix() const {
  return "cannot write " + (what_.empty() ? std::string() : what_ + " ") + "'" + path_ + "'";
}

Result<AtomicFitsFile> AtomicFitsFile::Create(const std::string& path, const std::string& what) {
  const std::string tmp = internal::TempPathFor(path);
  ::unlink(tmp.c_str());
  fitsfile* f = nullptr;
  int status = 0;
  if (fits_create_diskfile(&f, tmp.c_str(), &status)) {
    AtomicFitsFile failed(path, tmp, what, nullptr);
    const std::string msg = failed.Prefix() + " (HDU 'PRIMARY'): " + CfitsioError(status) +
                            "; check that the directory exists and is writable";
    fits_clear_errmsg();
    return Status::Error(msg);
  }
  return AtomicFitsFile(path, tmp, what, f);
}

Status AtomicFitsFile::Fail(const std::string& what_failed) {
  const std::string msg = Prefix() + " (HDU '" + hdu_ + "'): " + what_failed;
  Abandon();
  return Status::Error(msg);
}

Status AtomicFitsFile::Check(int status) {
  if (status == 0) return Status::OK();
  std::string what = CfitsioError(status);
  // CFITSIO reports a failed write of its buffers as any of these (108 reads "error reading");
  // while writing, the cause is nearly always the disk.
  if (status == WRITE_ERROR || status == READ_ERROR || status == END_OF_FILE) {
    std::string dir = std::filesystem::path(tmp_).parent_path().string();
    if (dir.empty()) dir = ".";
    struct statvfs fs {};
    std::string free_space;
    if (::statvfs(dir.c_str(), &fs) == 0) {
      char b[64];
      std::snprintf(b, sizeof b, "%.0f MB", static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize) / 1e6);
      free_space = " (" + std::string(b) + " free there now)";
    }
    what = "could not write the file: the disk of '" + dir + "' may be full or a file-size limit reached" +
           free_space + "; free some space or write elsewhere (CFITSIO status " + std::to_string(status) + ")";
  }
  return Fail(what);
}

Status AtomicFitsFile::Commit() {
  if (!f_) return Status::Error(Prefix() + ": the file was already committed or abandoned");
  int status = 0, nhdu = 0;
  fits_get_num_hdus(f_, &nhdu, &status);
  for (int i = 1; i <= nhdu && status == 0; ++i) {
    int type = 0;
    fits_movabs_hdu(f_, i, &type, &status);
    char extname[FLEN_VALUE] = {0};
    int s2 = 0;
    if (status == 0 && fits_read_key(f_, TSTRING, "EXTNAME", extname, nullptr, &s2) == 0) {
      set_hdu(extname);
    } else {
      set_hdu(i == 1 ? "PRIMARY" : "#" + std::to_string(i - 1));
      if (status == 0) fits_clear_errmsg();  // the absent EXTNAME's message
    }
    fits_write_chksum(f_, &status);
  }
  if (status) return Fail("writing the checksums failed: " + CfitsioError(status));
  status = 0;
  fits_close_file(f_, &status);
  f_ = nullptr;
  if (status) {
    const std::string msg = Prefix() + ": closing '" + tmp_ + "' failed: " + CfitsioError(status) + " (disk full?)";
    ::unlink(tmp_.c_str());
    return Status::Error(msg);
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string msg = Prefix() + ": rename from '" + tmp_ + "' failed: " + std::strerror(errno);
    ::unlink(tmp_.c_str());
    return Status::Error(msg);
  }
  return Status::OK();
}

}  // namespace cubeflow::fits
