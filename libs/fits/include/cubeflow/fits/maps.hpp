#pragma once
/// \file maps.hpp
/// \brief Multi-extension FITS products in the style of the MaNGA DAP MAPS files.
///
/// Layout: a primary HDU with provenance only, one image extension per cubeflow::Map, then
/// binary-table extensions. Every HDU gets CHECKSUM/DATASUM. Thread-safety: WriteMapsFile
/// touches no shared state; concurrent calls must use different paths.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::fits {

class AtomicFitsFile;

/// \brief One column of a binary table.
struct TableColumn {
  enum class Kind { kDouble, kInt64, kDoubleVector };
  std::string name;        ///< TTYPE
  std::string unit;        ///< TUNIT ("" for none)
  std::string doc;         ///< comment on the TTYPE card
  Kind kind = Kind::kDouble;
  int64_t width = 1;       ///< elements per row for kDoubleVector
  std::vector<double> doubles;  ///< kDouble: nrows values; kDoubleVector: nrows * width, row-major
  std::vector<int64_t> ints;    ///< kInt64: nrows values

  static TableColumn Double(std::string name, std::vector<double> v, std::string unit = "", std::string doc = "");
  static TableColumn Int64(std::string name, std::vector<int64_t> v, std::string unit = "", std::string doc = "");
  static TableColumn DoubleVector(std::string name, int64_t width, std::vector<double> v, std::string unit = "",
                                  std::string doc = "");
};

/// \brief A binary-table extension.
struct BinaryTable {
  std::string name;  ///< EXTNAME
  int64_t nrows = 0;
  std::vector<TableColumn> columns;
  std::map<std::string, std::string> header;  ///< extra keys (see Map.header for the encoding)
};

/// \brief Everything written into one MAPS file.
///
/// Map encoding: kind "value", "error" and "ivar" are written as float64 images, kind "mask"
/// and "index" (e.g. BINID) as int32. A map with nplanes > 1 is a 3-D image whose planes are
/// named by keys C1..Cn. Value maps get ERRDATA= / QUALDATA= naming their error/ivar and mask
/// companions (maps whose companion_of names them); companions get DATA= back. A key already
/// present in Map.header wins. Mask maps get the QualityBit definitions (BIT0..BIT5). Header
/// values in Map.header are written as numbers when they parse as numbers, as logicals for
/// "T"/"F", otherwise as (long) strings.
struct MapsProduct {
  RunInfo run;                                     ///< provenance for the primary header
  std::map<std::string, std::string> primary;      ///< extra primary keys (same encoding)
  std::vector<std::string> comments;               ///< COMMENT cards in the primary header
  std::vector<std::shared_ptr<const Map>> maps;    ///< image extensions, in this order
  std::vector<BinaryTable> tables;                 ///< table extensions, after the maps
  bool partial = false;                            ///< writes PARTIAL = T (run aborted)
  bool overwrite = true;                           ///< false: fail if the target exists
  /// If set: for a map of `maps` without data (empty `data`), fills plane `plane` (nx * ny
  /// values, into the empty `data`) just before it is written, one plane at a time, so that a
  /// writer holds one plane however many maps there are (io.write_maps paints its per-bin
  /// results this way). Maps with data are written as they are.
  std::function<Status(const Map& map, int64_t plane, std::vector<double>& data)> fill;
};

/// \brief Writes a MAPS file atomically: to `path + ".tmp-<pid>"`, then rename(2) into place.
/// On any error the temporary file is removed and an existing `path` is left untouched.
///
/// Primary header: CFVERS (cubeflow::kVersion), PIPEFILE, RUNUTC, then per node i (1-based,
/// two digits) CFNiiNAM/CFNiiTYP/CFNiiLIB (plugin)/CFNiiVER and one CFNiiPjj = 'param=value' card per
/// parameter (long strings use the CONTINUE convention), then per input file INFILEnn and
/// INHASHnn (the FileHash64 of the file as 16 hex digits, HASHALG = 'CFHASH64').
/// Errors name the file, the HDU and what to do.
Status WriteMapsFile(const std::string& path, const MapsProduct& product);

/// \brief Writes the primary HDU of a MAPS product (the provenance above, `primary`, `comments`,
/// PARTIAL) as the first HDU of `out`; `maps`, `tables` and `overwrite` are not used. For
/// writers of other products that share the MAPS provenance (io.write_spectra) and append their
/// own extensions before out.Commit().
Status WriteMapsPrimary(AtomicFitsFile& out, const MapsProduct& product);

/// \brief Fast non-cryptographic 64-bit hash of a whole file ("CFHASH64": 8-byte
/// little-endian words, each mixed with the splitmix64 finaliser, folded with a
/// multiply-rotate, tail bytes and file length mixed in). Reads the file in 1 MiB blocks.
Result<uint64_t> FileHash64(const std::string& path);

/// \brief 16 lower-case hex digits (how INHASHnn values are written).
std::string FormatHex64(uint64_t v);

}  // namespace cubeflow::fits
