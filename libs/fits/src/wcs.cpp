// Celestial WCS via wcslib.
#include "cubeflow/fits/wcs.hpp"

#include <wcslib/wcs.h>
#include <wcslib/wcsfix.h>
#include <wcslib/wcshdr.h>

#include <cmath>
#include <mutex>
#include <string>

#include "cubeflow/fits/cube_io.hpp"

namespace cubeflow::fits {

struct Wcs::Impl {
  wcsprm prm{};
  bool init = false;
  mutable std::mutex mu;
  ~Impl() {
    if (init) wcsfree(&prm);
  }
};

namespace {

std::string WcsError(const wcsprm& p, int code) {
  if (p.err && p.err->msg[0]) return std::string(p.err->msg) + " (wcslib status " + std::to_string(code) + ")";
  if (code > 0 && code < 14) return std::string(wcs_errmsg[code]) + " (wcslib status " + std::to_string(code) + ")";
  return "wcslib status " + std::to_string(code);
}

}  // namespace

Wcs::Wcs(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Wcs::~Wcs() = default;
Wcs::Wcs(Wcs&&) noexcept = default;
Wcs& Wcs::operator=(Wcs&&) noexcept = default;

Wcs::Wcs(const Wcs& other) : impl_(std::make_unique<Impl>()) {
  std::lock_guard<std::mutex> lock(other.impl_->mu);
  impl_->prm.flag = -1;
  int st = wcssub(1, &other.impl_->prm, nullptr, nullptr, &impl_->prm);
  if (st) throw Error("copying a WCS failed: " + WcsError(impl_->prm, st));
  impl_->init = true;
  st = wcsset(&impl_->prm);
  if (st) throw Error("copying a WCS failed: " + WcsError(impl_->prm, st));
}

Wcs& Wcs::operator=(const Wcs& other) {
  if (this != &other) {
    Wcs tmp(other);
    *this = std::move(tmp);
  }
  return *this;
}

Result<Wcs> Wcs::FromCards(const CelestialWcs& cards) {
  if (cards.empty()) return Status::Error("no WCS: the header cards are empty (the input has no celestial WCS)");
  std::string header;
  for (const std::string& c : SplitCards(cards.cards)) header += c;
  const int nkeyrec = static_cast<int>(header.size() / 80);
  int nreject = 0, nwcs = 0;
  wcsprm* all = nullptr;
  int st = wcspih(header.data(), nkeyrec, WCSHDR_all, 0, &nreject, &nwcs, &all);
  if (st || nwcs < 1) {
    if (all) wcsvfree(&nwcs, &all);
    return Status::Error("cannot parse the WCS header cards with wcslib (wcspih status " + std::to_string(st) +
                         ", " + std::to_string(nwcs) + " WCS found)");
  }
  auto impl = std::make_unique<Impl>();
  impl->prm.flag = -1;
  st = wcssub(1, &all[0], nullptr, nullptr, &impl->prm);
  wcsvfree(&nwcs, &all);
  if (st) return Status::Error("cannot copy the WCS: " + WcsError(impl->prm, st));
  impl->init = true;
  int fixstat[NWCSFIX];
  wcsfix(1, nullptr, &impl->prm, fixstat);  // translate e.g. RADECSYS, non-standard units
  st = wcsset(&impl->prm);
  if (st) return Status::Error("invalid WCS: " + WcsError(impl->prm, st));
  if (impl->prm.lng < 0 || impl->prm.lat < 0) {
    return Status::Error("the WCS cards hold no celestial axes (CTYPE1/2 must be e.g. RA---TAN/DEC--TAN)");
  }
  return Wcs(std::move(impl));
}

Result<SkyCoord> Wcs::ToSky(double x, double y) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  wcsprm& p = impl_->prm;
  const int n = p.naxis;
  double pix[8] = {0}, img[8], world[8], phi, theta;
  for (int i = 0; i < n && i < 8; ++i) pix[i] = 1.0;
  pix[0] = x + 1.0;
  pix[1] = y + 1.0;
  int stat[1] = {0};
  const int st = wcsp2s(&p, 1, n, pix, img, &phi, &theta, world, stat);
  if (st)
    return Status::Error("pixel (" + std::to_string(x) + ", " + std::to_string(y) + ") has no sky position: " +
                         WcsError(p, st));
  return SkyCoord{world[p.lng], world[p.lat]};
}

Result<PixelCoord> Wcs::ToPixel(double ra, double dec) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  wcsprm& p = impl_->prm;
  const int n = p.naxis;
  double world[8] = {0}, img[8], pix[8], phi, theta;
  for (int i = 0; i < n && i < 8; ++i) world[i] = p.crval[i];
  world[p.lng] = ra;
  world[p.lat] = dec;
  int stat[1] = {0};
  const int st = wcss2p(&p, 1, n, world, &phi, &theta, img, pix, stat);
  if (st)
    return Status::Error("sky position (" + std::to_string(ra) + ", " + std::to_string(dec) +
                         ") has no pixel position: " + WcsError(p, st));
  return PixelCoord{pix[0] - 1.0, pix[1] - 1.0};
}

void Wcs::PixelToSky(double x, double y, double& ra, double& dec) const {
  const SkyCoord s = ToSky(x, y).ValueOrThrow();
  ra = s.ra;
  dec = s.dec;
}

void Wcs::SkyToPixel(double ra, double dec, double& x, double& y) const {
  const PixelCoord p = ToPixel(ra, dec).ValueOrThrow();
  x = p.x;
  y = p.y;
}

double Wcs::PixelScaleArcsec() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const wcsprm& p = impl_->prm;
  const int n = p.naxis;
  const int a = p.lng, b = p.lat;
  // CD = diag(CDELT) * PC (row i scaled by CDELT_i).
  const double cd11 = p.cdelt[a] * p.pc[a * n + a], cd12 = p.cdelt[a] * p.pc[a * n + b];
  const double cd21 = p.cdelt[b] * p.pc[b * n + a], cd22 = p.cdelt[b] * p.pc[b * n + b];
  return std::sqrt(std::fabs(cd11 * cd22 - cd12 * cd21)) * 3600.0;
}

}  // namespace cubeflow::fits
