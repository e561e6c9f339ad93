#pragma once
/// \file wcs.hpp
/// \brief Celestial WCS transforms (wraps wcslib; wcslib headers are not exposed).

#include <memory>
#include <string>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::fits {

/// \brief A sky position, degrees in the frame of the WCS (RADESYS).
struct SkyCoord {
  double ra = 0, dec = 0;
};
/// \brief A 0-based pixel position (the centre of the first pixel is (0, 0)).
struct PixelCoord {
  double x = 0, y = 0;
};

/// \brief A celestial world coordinate system built from CelestialWcs cards.
///
/// Pixel coordinates are 0-based (the centre of the first pixel is (0, 0)); sky coordinates
/// are in degrees in the frame of the header (RADESYS). Thread-safety: a Wcs may be used from
/// several threads; calls on one instance are serialised by an internal mutex (wcslib's
/// wcsprm is not safe for concurrent use). For heavy parallel use, copy it per thread:
/// copies are deep and independent.
class Wcs {
 public:
  /// Parses the cards with wcslib (wcspih + wcsset). Fails if the cards hold no celestial WCS.
  static Result<Wcs> FromCards(const CelestialWcs& cards);

  /// Deep copy; throws cubeflow::Error if wcslib cannot copy a WCS it accepted before.
  Wcs(const Wcs& other);
  Wcs& operator=(const Wcs& other);
  Wcs(Wcs&&) noexcept;
  Wcs& operator=(Wcs&&) noexcept;
  ~Wcs();

  /// Sky position (RA, Dec in degrees) of 0-based pixel (x, y); an error naming the pixel if
  /// it has none (e.g. outside the projection's domain).
  Result<SkyCoord> ToSky(double x, double y) const;
  /// 0-based pixel position of (ra, dec) in degrees; an error naming the position on failure.
  Result<PixelCoord> ToPixel(double ra, double dec) const;
  /// Throwing forms of ToSky / ToPixel for node bodies (docs/errors.md): the same values, or
  /// cubeflow::Error with the same message. Library code uses ToSky / ToPixel.
  void PixelToSky(double x, double y, double& ra, double& dec) const;
  void SkyToPixel(double ra, double dec, double& x, double& y) const;
  /// Pixel scale in arcsec: sqrt(|det CD|) * 3600 (geometric mean of the two axes).
  double PixelScaleArcsec() const;

 private:
  struct Impl;
  explicit Wcs(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cubeflow::fits
