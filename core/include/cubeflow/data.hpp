#pragma once
/// \file data.hpp
/// \brief The data model: what flows along edges.
///
/// Every message payload derives from Data and names its type with a string (`kType`); port
/// declarations use the same strings, so the validator can check edges without running
/// anything and ProcessContext::Input<T>() can check the payload before casting. Plugins may
/// add their own types the same way. Payloads are immutable once emitted (they are shared
/// between consumers through shared_ptr<const T>).

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cubeflow {

/// \brief Base of every message payload.
class Data {
 public:
  virtual ~Data();
  /// The type name used in port declarations ("cube", "map", ...).
  virtual const char* type() const = 0;
  /// Approximate heap size in bytes, for memory accounting.
  virtual size_t bytes() const { return 0; }
};

/// \brief Wavelength axis of a cube or spectrum: value(i) = crval + (i + 1 - crpix) * cdelt,
/// in Angstrom; if log, that value is ln(lambda).
struct WavelengthAxis {
  int64_t n = 0;
  double crval = 0, cdelt = 1, crpix = 1;
  bool log = false;
  bool air = true;  ///< air (AWAV) or vacuum (WAVE) wavelengths
  /// Wavelength of pixel i (0-based) in Angstrom.
  double At(int64_t i) const {
    const double v = crval + (static_cast<double>(i) + 1.0 - crpix) * cdelt;
    return log ? std::exp(v) : v;
  }
  /// Fractional 0-based pixel coordinate of wavelength `lambda` (Angstrom).
  double PixelOf(double lambda) const {
    const double v = log ? std::log(lambda) : lambda;
    return (v - crval) / cdelt + crpix - 1.0;
  }
  static WavelengthAxis Linear(double start, double step, int64_t n, bool air = true) {
    WavelengthAxis a; a.n = n; a.crval = start; a.cdelt = step; a.crpix = 1; a.air = air; return a;
  }
};

/// \brief Celestial WCS of the two spatial axes, kept as FITS header cards (80-character
/// records: CTYPE1/2, CRVAL1/2, CRPIX1/2, CD or PC+CDELT, CUNIT, RADESYS, EQUINOX, ...),
/// which wcslib and every FITS writer understand. Empty means "no WCS".
struct CelestialWcs {
  std::string cards;
  bool empty() const { return cards.empty(); }
};

/// \brief A spectral cube. Arrays are in FITS order: index = (k * ny + y) * nx + x.
class Cube : public Data {
 public:
  static constexpr const char* kType = "cube";
  const char* type() const override { return kType; }
  size_t bytes() const override {
    return flux.size() * sizeof(float) + variance.size() * sizeof(float) + mask.size();
  }
  int64_t nx = 0, ny = 0, nwave = 0;
  std::vector<float> flux;       ///< NaN where undefined
  std::vector<float> variance;   ///< empty if the file has none
  std::vector<uint8_t> mask;     ///< empty, or nonzero = bad pixel
  WavelengthAxis wave;
  CelestialWcs wcs;
  std::string bunit;             ///< flux unit, as in the file
  std::string source;            ///< file it was read from
  std::map<std::string, std::string> header;  ///< selected primary-header keys (OBJECT, ...)

  size_t Index(int64_t x, int64_t y, int64_t k) const {
    return static_cast<size_t>((k * ny + y) * nx + x);
  }
};

/// \brief A 2-D map or a stack of maps (planes) on the spatial grid of a cube.
/// data index = (plane * ny + y) * nx + x.
class Map : public Data {
 public:
  static constexpr const char* kType = "map";
  const char* type() const override { return kType; }
  size_t bytes() const override { return data.size() * sizeof(double); }
  std::string name;             ///< EXTNAME in products, e.g. "SNR"
  std::string bunit;            ///< unit ("" for dimensionless)
  std::string kind = "value";   ///< "value", "error", "ivar" or "mask"
  std::string companion_of;     ///< for error/mask maps: name of the value map
  int64_t nx = 0, ny = 0, nplanes = 1;
  std::vector<double> data;
  std::vector<std::string> plane_names;       ///< one per plane (e.g. age-bin centres)
  CelestialWcs wcs;
  std::map<std::string, std::string> header;  ///< extra header keys for the product
};

/// \brief Quality bits used in products (the MASK/QUALITY extensions). Documented in
/// docs/products.md; values never change once released.
enum QualityBit : uint32_t {
  kQualNoCoverage = 1u << 0,          ///< no valid data / spaxel not in any bin
  kQualLowSnr = 1u << 1,              ///< below the minimum S/N
  kQualBroaderThanTarget = 1u << 2,   ///< intrinsic dispersion above the target dispersion
  kQualNonPositivePhotometry = 1u << 3,
  kQualOutsideTraining = 1u << 4,     ///< input outside the model's training range
  kQualInferenceFailed = 1u << 5,     ///< a node failed on this bin
};

/// \brief A spatial binning (whole cube): BINID per spaxel and per-bin properties.
class Binning : public Data {
 public:
  static constexpr const char* kType = "binning";
  const char* type() const override { return kType; }
  size_t bytes() const override { return binid.size() * sizeof(int32_t) + bins.size() * 64; }
  struct Bin {
    double x = 0, y = 0;          ///< light-weighted centroid, 0-based pixel coordinates
    int64_t nspax = 0;
    double signal = 0, noise = 0; ///< summed signal and (corrected) noise in the S/N window
    double snr = 0;
    std::vector<int32_t> spaxels; ///< linear spaxel indices y * nx + x
  };
  int64_t nx = 0, ny = 0;
  std::vector<int32_t> binid;     ///< -1: not binned (masked, NaN, below minimum S/N)
  std::vector<Bin> bins;
  CelestialWcs wcs;
};

/// \brief One spectrum, typically of a bin (streamed, keyed by bin id).
class Spectrum : public Data {
 public:
  static constexpr const char* kType = "spectrum";
  const char* type() const override { return kType; }
  size_t bytes() const override { return (flux.size() + variance.size()) * sizeof(double) + mask.size(); }
  int64_t id = -1;
  WavelengthAxis wave;
  std::vector<double> flux, variance;
  std::vector<uint8_t> mask;           ///< nonzero = bad pixel
  bool rest_frame = false;
  double norm = 1.0;                   ///< factor the flux was divided by
  uint32_t quality = 0;                ///< QualityBit flags
  std::map<std::string, double> meta;  ///< x, y, nspax, snr, velocity, sigma, ...
};

/// \brief Per-bin photometry in several bands (flux densities, erg/s/cm2/A unless stated).
class Photometry : public Data {
 public:
  static constexpr const char* kType = "photometry";
  const char* type() const override { return kType; }
  int64_t id = -1;
  std::vector<std::string> bands;
  std::vector<double> pivot;           ///< pivot wavelengths, Angstrom
  std::vector<double> flux, error;
  std::string unit = "erg/s/cm2/Angstrom";
  uint32_t quality = 0;
};

/// \brief Per-item results as named fields (scalars are 1-element vectors). Sinks such as
/// io.write_maps turn each field into a map (scalars) or a cube of planes (vectors).
class Record : public Data {
 public:
  static constexpr const char* kType = "record";
  const char* type() const override { return kType; }
  int64_t id = -1;
  struct Field {
    std::vector<double> values;
    std::string unit;
    std::vector<std::string> labels;  ///< optional per-element names (plane names)
    std::string doc;
  };
  std::map<std::string, Field> fields;
  uint32_t quality = 0;

  void Set(const std::string& key, double v, std::string unit = "", std::string doc = "") {
    fields[key] = Field{{v}, std::move(unit), {}, std::move(doc)};
  }
  void SetVector(const std::string& key, std::vector<double> v, std::string unit = "",
                 std::vector<std::string> labels = {}, std::string doc = "") {
    fields[key] = Field{std::move(v), std::move(unit), std::move(labels), std::move(doc)};
  }
};

}  // namespace cubeflow
