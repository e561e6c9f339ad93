#pragma once
/// \file image_io.hpp
/// \brief Reading 2-D FITS images (maps, HST images) whole or in blocks of rows.
///
/// Thread-safety: an ImageReader owns its CFITSIO handle; use one reader per thread (several
/// readers may read the same file concurrently). Header look-ups (Key, KeyDouble, wcs) only
/// read data cached at Open and are safe from any thread.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::fits {

/// \brief One 2-D image HDU of a FITS file, opened for reading.
class ImageReader {
 public:
  /// Opens `path` and selects the image HDU `extension`:
  ///  - an integer ("0" = primary, "1" = first extension, ...);
  ///  - an EXTNAME (case-insensitive, as CFITSIO matches it);
  ///  - "" or "auto": the first HDU named in `auto_names` that exists (e.g. {"SCI"}), else the
  ///    primary HDU if it holds an image of 2 or more axes, else the first image extension that does.
  /// The image must be 2-D (NAXIS = 2, or extra axes of length 1). Errors name the file, the
  /// HDU and the HDUs present, and say what to change.
  static Result<std::unique_ptr<ImageReader>> Open(const std::string& path, const std::string& extension,
                                                  const std::vector<std::string>& auto_names = {});
  ~ImageReader();
  ImageReader(const ImageReader&) = delete;
  ImageReader& operator=(const ImageReader&) = delete;

  int64_t nx() const { return nx_; }
  int64_t ny() const { return ny_; }
  const std::string& path() const { return path_; }
  /// EXTNAME of the selected HDU, "PRIMARY" for the primary HDU, or "#n" for an unnamed one.
  const std::string& hdu_name() const { return hdu_name_; }
  /// 0-based HDU number (0 = primary).
  int hdu_index() const { return hdu_index_; }
  /// Comma-separated list of the file's HDUs (for messages).
  const std::string& hdu_list() const { return hdu_list_; }
  /// "'path' HDU 'NAME'" (for messages).
  std::string Where() const;

  /// Keyword value (strings unquoted and trimmed) from the image HDU, or, when it is not there
  /// and `primary_fallback` is true, from the primary HDU; nullopt if absent (not an error).
  std::optional<std::string> Key(const std::string& key, bool primary_fallback = true) const;
  /// Numeric keyword (same look-up order; FITS 'D' exponents accepted); nullopt if absent or
  /// not a number.
  std::optional<double> KeyDouble(const std::string& key, bool primary_fallback = true) const;
  /// True if the file has an image HDU with this EXTNAME.
  bool HasExtension(const std::string& name) const;

  /// Celestial WCS cards of the image HDU (CTYPE, CRVAL, CRPIX, CD/PC/CDELT/CROTA, CUNIT,
  /// LONPOLE/LATPOLE, PVi_m, SIP A/B/AP/BP coefficients, RADESYS/EQUINOX with the primary HDU as
  /// fallback), as 80-character cards with NAXIS = 2; empty if CTYPE1/CTYPE2 are missing.
  const CelestialWcs& wcs() const { return wcs_; }

  /// Reads rows [y0, y0 + nrows) (0-based), columns [x0, x0 + ncols) (ncols = -1: to the end)
  /// as doubles, row-major, into `out` (resized). Blank / undefined pixels become NaN (BSCALE,
  /// BZERO and BLANK are applied by CFITSIO). Errors name the file.
  Status ReadBlock(int64_t y0, int64_t nrows, std::vector<double>& out, int64_t x0 = 0, int64_t ncols = -1);

 private:
  ImageReader() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_, hdu_name_, hdu_list_;
  int hdu_index_ = 0;
  int64_t nx_ = 0, ny_ = 0;
  std::map<std::string, std::string> keys_, primary_keys_;
  std::vector<std::string> extnames_;
  CelestialWcs wcs_;
};

/// \brief Reads a whole 2-D image HDU into a Map (data as double, NaN for blanks; name = EXTNAME
/// unless `name` is given; bunit = BUNIT unless `bunit` is given; the celestial WCS; header keys
/// OBJECT, EXTNAME, FILENAME). See ImageReader::Open for `extension`.
Result<std::shared_ptr<Map>> ReadMap(const std::string& path, const std::string& extension,
                                     const std::string& bunit = "", const std::string& name = "");

}  // namespace cubeflow::fits
