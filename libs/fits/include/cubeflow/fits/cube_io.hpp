#pragma once
/// \file cube_io.hpp
/// \brief Reading and writing spectral cubes (MUSE-style multi-extension FITS).
///
/// Thread-safety: every function opens its own CFITSIO handle, so different files (or the
/// same file, read-only) may be read concurrently from several threads.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::fits {

/// \brief What part of a cube to read.
struct ReadCubeOptions {
  /// Wavelength window in Angstrom (same frame as the file: air for AWAV, vacuum for WAVE).
  /// Channels whose wavelength lies in [wave_min, wave_max] are read; 0 means "no limit".
  double wave_min = 0;
  double wave_max = 0;
  /// Extension names. If `data_hdu` is absent and the primary HDU holds a 3-D image, the
  /// primary HDU is used (single-HDU cubes).
  std::string data_hdu = "DATA";
  /// Variance extension; "" = do not read a variance.
  std::string stat_hdu = "STAT";
  /// Data-quality extension (nonzero = bad); "" = do not read. A missing DQ is not an error.
  std::string dq_hdu = "DQ";
  /// If true, a missing `stat_hdu` is an error; otherwise the cube has no variance.
  bool require_stat = false;
  /// Channels whose flux and variance (4 bytes each per pixel) take more bytes than this are
  /// not read: ReadCube returns a LazyCube (cubeflow/cube_blocks.hpp) whose reader reads blocks
  /// of them on demand. 0 = always lazy; the default, never.
  uint64_t lazy_above_bytes = UINT64_MAX;
};

/// \brief Reads a cube. Only the channels in the wavelength window are read from disk, straight
/// into the Cube's arrays (one copy in memory). Fills flux, variance (if present), mask (if a
/// DQ extension is present), wave (air for CTYPE3 AWAV*, vacuum for WAVE*; linear or -LOG),
/// wcs (celestial axes only, as a 2-D header), bunit, source and header (OBJECT, INSTRUME,
/// DATE-OBS, EXPTIME, RA, DEC when present in the primary or data HDU).
///
/// Errors name the file and HDU: missing/unreadable file, corrupt or truncated FITS, missing
/// extension, an image that is not 3-D, no wavelength keywords, STAT/DQ shape mismatch, a
/// wavelength window outside the cube, and data that are NaN everywhere in the window.
/// Also refused: two image HDUs with the data or variance extension's name, and a header that
/// declares more pixels than the file holds. Problems that leave the cube usable but probably
/// not what the user meant are appended to `warnings` (if given): no CTYPE3, no or an unknown
/// BUNIT, a window partly outside the cube.
///
/// Lazy (options.lazy_above_bytes): the same metadata and the same checks, with bounded memory
/// (the NaN check reads one plane at a time until a finite value; the STAT and DQ extensions
/// are checked for their shape and for a file that holds all their pixels), and a LazyCube
/// whose reader keeps the file open and reads planes x rows blocks under a mutex. Its read
/// errors name the file, the extension and the plane.
Result<std::shared_ptr<Cube>> ReadCube(const std::string& path, const ReadCubeOptions& options = {},
                                       std::vector<std::string>* warnings = nullptr);

/// \brief Writes a cube as a MEF file: empty primary HDU (with Cube.header keys), DATA (float32),
/// STAT (if variance is non-empty) and DQ (uint8, if mask is non-empty), each with the
/// celestial WCS cards and the spectral axis keywords (CTYPE3 AWAV/WAVE[-LOG], CUNIT3 Angstrom,
/// CRVAL3, CRPIX3, CD3_3 or CDELT3). Written to a temporary file and renamed into place;
/// on error the target is untouched. Existing files are replaced.
Status WriteCube(const std::string& path, const Cube& cube);

/// \brief Builds one 80-character FITS header card. `value` must already be a FITS value
/// literal (use the helpers below). Keys longer than 8 characters become HIERARCH cards.
std::string MakeCard(const std::string& key, const std::string& value, const std::string& comment = "");
/// FITS literal for a real number (always with a decimal point or exponent, 17 significant digits).
std::string FitsReal(double v);
/// FITS literal for a string (quoted, quotes doubled; not for strings over 68 characters).
std::string FitsString(const std::string& s);

/// \brief Splits CelestialWcs::cards (concatenated 80-character records; newlines tolerated)
/// into individual cards.
std::vector<std::string> SplitCards(const std::string& cards);

}  // namespace cubeflow::fits
