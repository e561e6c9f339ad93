#pragma once
/// \file maps_reader.hpp
/// \brief Reads MAPS products (docs/products.md): image-extension headers on open, pixel data
/// on demand, and the BINS table.
///
/// Thread-safety: a MapsFile is immutable after Open; Load opens its own CFITSIO handle, so
/// concurrent Loads are safe.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::fits {

/// \brief One image extension: header facts, and the pixels once loaded.
struct MapsImage {
  std::string name;                      ///< EXTNAME
  std::string bunit;                     ///< BUNIT ("" if absent)
  std::string hduclas2;                  ///< DATA, ERROR, QUALITY or INDEX
  std::string errdata, qualdata, data;   ///< ERRDATA / QUALDATA / DATA companions
  int64_t nx = 0, ny = 0, nplanes = 1;
  std::vector<std::string> plane_names;  ///< C1..Cn of 3-D images
  CelestialWcs wcs;                      ///< celestial cards (empty if none)
  int hdu = 0;                           ///< CFITSIO HDU number (1 = primary)
  /// Pixels (float64, NaN where undefined), index (plane * ny + y) * nx + x; empty until loaded.
  std::vector<double> values;

  double At(int64_t x, int64_t y, int64_t plane = 0) const {
    return values[static_cast<size_t>((plane * ny + y) * nx + x)];
  }
};

/// \brief One binary-table column read as doubles (integers converted; nulls NaN).
struct MapsColumn {
  std::string name, unit;
  int64_t width = 1;           ///< elements per row
  std::vector<double> values;  ///< nrows * width, row-major
  double At(int64_t row, int64_t k = 0) const { return values[static_cast<size_t>(row * width + k)]; }
};

struct MapsTable {
  std::string name;
  int64_t nrows = 0;
  std::vector<MapsColumn> columns;
  /// Column by name (case-insensitive), or nullptr.
  const MapsColumn* Find(const std::string& name) const;
  /// Row of a bin id (BINID column), or -1.
  int64_t RowOf(int64_t binid) const;
};

class MapsFile {
 public:
  /// Reads the headers of every HDU and the BINS table. Fails with a message naming the file
  /// if it cannot be opened or is not FITS.
  static Result<MapsFile> Open(const std::string& path);

  const std::string& path() const { return path_; }
  /// Image extensions in file order (header only).
  const std::vector<MapsImage>& images() const { return images_; }
  /// Image extension by EXTNAME (case-insensitive, header only), or nullptr.
  const MapsImage* Find(const std::string& name) const;
  /// Loads an image extension with its pixels.
  Result<MapsImage> Load(const std::string& name) const;
  /// The BINS table, or nullptr if the file has none.
  const MapsTable* bins() const { return has_bins_ ? &bins_ : nullptr; }
  /// Names of every HDU (PRIMARY first), for messages.
  const std::vector<std::string>& hdu_names() const { return hdu_names_; }
  /// Selected primary-header values as text (CFVERS, OBJECT, PIPEFILE, NBINS, PARTIAL, ...).
  const std::map<std::string, std::string>& primary() const { return primary_; }

 private:
  std::string path_;
  std::vector<MapsImage> images_;
  MapsTable bins_;
  bool has_bins_ = false;
  std::vector<std::string> hdu_names_;
  std::map<std::string, std::string> primary_;
};

}  // namespace cubeflow::fits
