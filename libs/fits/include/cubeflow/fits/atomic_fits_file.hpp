#pragma once
/// \file atomic_fits_file.hpp
/// \brief A FITS file written atomically with CFITSIO: readers see the old file or the whole new
/// one, never a partial one, and a failed write leaves the old file in place.
///
/// For code that writes HDUs with CFITSIO itself (WriteCube, WriteMapsFile, io.write_spectra);
/// it includes <fitsio.h>, so link CFITSIO too. Thread-safety: one object per thread; concurrent
/// writers must use different paths.
///
/// \code
///   CUBEFLOW_ASSIGN_OR_RETURN(fits::AtomicFitsFile out, fits::AtomicFitsFile::Create(path, "cube"));
///   int status = 0;
///   fits_create_imgll(out.get(), BYTE_IMG, 0, nullptr, &status);
///   CUBEFLOW_RETURN_NOT_OK(out.Check(status));   // error: closes and removes the temporary file
///   out.set_hdu("DATA");                         // named by later messages
///   ...
///   return out.Commit();  // CHECKSUM/DATASUM of every HDU, close, rename onto `path`
/// \endcode

#include <fitsio.h>

#include <string>

#include "cubeflow/status.hpp"

namespace cubeflow::fits {

/// \brief `<path>.tmp-<pid>`, opened for writing, renamed onto `path` by Commit().
class AtomicFitsFile {
 public:
  /// Creates the temporary file `<path>.tmp-<pid>` (a stale one is removed first) with no HDU
  /// yet. `what` names the product in messages: "cube" gives "cannot write cube 'PATH' ...",
  /// "" gives "cannot write 'PATH' ...". Fails, naming `path`, if the file cannot be created.
  static Result<AtomicFitsFile> Create(const std::string& path, const std::string& what = "");

  AtomicFitsFile(AtomicFitsFile&& other) noexcept;
  AtomicFitsFile& operator=(AtomicFitsFile&& other) noexcept;
  AtomicFitsFile(const AtomicFitsFile&) = delete;
  AtomicFitsFile& operator=(const AtomicFitsFile&) = delete;
  /// Not committed: closes and removes the temporary file; `path` is untouched.
  ~AtomicFitsFile();

  /// The CFITSIO handle of the temporary file (nullptr after Commit or a failure).
  fitsfile* get() const { return f_; }
  /// The target and the temporary file.
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

  /// Names the HDU being written ("PRIMARY" at first) in the messages that follow.
  void set_hdu(const std::string& name) { hdu_ = name; }

  /// Gives up: closes and removes the temporary file and returns
  /// "cannot write [what ]'PATH' (HDU 'NAME'): <what_failed>".
  Status Fail(const std::string& what_failed);
  /// OK for status 0; otherwise Fail() with the CFITSIO error text of `status`.
  Status Check(int status);

  /// Writes CHECKSUM/DATASUM into every HDU, closes the file and renames it onto `path`
  /// (replacing an existing file). On error the temporary file is removed and `path` is untouched.
  Status Commit();

 private:
  AtomicFitsFile(std::string path, std::string tmp, std::string what, fitsfile* f);
  void Abandon();
  std::string Prefix() const;

  std::string path_, tmp_, what_;
  std::string hdu_ = "PRIMARY";
  fitsfile* f_ = nullptr;
};

}  // namespace cubeflow::fits
