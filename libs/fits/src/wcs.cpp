// Celestial WCS via wcslib.
#include "cubeflow/fits/wcs.hpp"

#include <wcslib/wcs.h>
#include <wcslib/wcsfix.h>
#include <wcslib/wcshdr.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

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

/// wcslib 7.12's linset() leaves linprm::piximg and imgpix allocated but unowned when it fails
/// (a singular CD/PC matrix, a bad distortion), and the next linset() or linfree() loses them
/// (wcslib 8 fixed it). Frees them and asks for a fresh set-up (flag = 0, as the wcslib manual
/// prescribes after a change), so that neither a later wcsset() nor wcsfree() leaks.
void ResetLinear(wcsprm& p) {
  std::free(p.lin.piximg);
  std::free(p.lin.imgpix);
  std::free(p.lin.tmpcrd);
  p.lin.piximg = nullptr;
  p.lin.imgpix = nullptr;
  p.lin.tmpcrd = nullptr;
  p.lin.i_naxis = 0;
  p.lin.flag = 0;
  p.flag = 0;
}

/// True for a SIP distortion coefficient keyword: A_p_q, B_p_q, AP_p_q or BP_p_q.
bool IsSipCoefficient(const std::string& key) {
  size_t i = key.rfind("AP_", 0) == 0 || key.rfind("BP_", 0) == 0 ? 3
             : key.rfind("A_", 0) == 0 || key.rfind("B_", 0) == 0 ? 2
                                                                 : 0;
  if (i == 0) return false;
  const size_t u = key.find('_', i);
  auto digits = [&](size_t a, size_t b) {
    if (a >= b) return false;
    for (size_t k = a; k < b; ++k)
      if (key[k] < '0' || key[k] > '9') return false;
    return true;
  };
  return u != std::string::npos && digits(i, u) && digits(u + 1, key.size());
}

/// True if the card's value (after "= ") is a FITS integer or real number ([+-] digits, an
/// optional fraction, an optional E or D exponent), optionally followed by a comment. Stricter
/// than strtod on purpose: wcspih's lexer knows no NaN, INF or hexadecimal numbers, and a SIP
/// coefficient with such a value makes it read a null pointer as surely as a string does.
bool HasNumericValue(const std::string& card) {
  const std::string v = card.size() > 10 ? card.substr(10) : std::string();
  size_t i = v.find_first_not_of(' ');
  if (i == std::string::npos) return false;
  auto digits = [&]() {
    const size_t start = i;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i;
    return i - start;
  };
  if (v[i] == '+' || v[i] == '-') ++i;
  size_t mantissa = digits();
  if (i < v.size() && v[i] == '.') {
    ++i;
    mantissa += digits();
  }
  if (mantissa == 0) return false;
  if (i < v.size() && (v[i] == 'E' || v[i] == 'e' || v[i] == 'D' || v[i] == 'd')) {
    ++i;
    if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  const size_t rest = v.find_first_not_of(' ', i);
  return rest == std::string::npos || v[rest] == '/';
}

/// Why an 80-character card must not reach wcspih, or "" if it may. wcspih (wcslib 7.12) fails
/// on cards that FITS does not allow or that mean nothing in a WCS:
/// - a string value not closed on its card, or a value card whose value is blank (FITS's
///   undefined value): its lexer reads on into the following cards, and a string found there
///   overflows a fixed buffer (regressions/wcs/unterminated_string_then_quote.cards and, found by
///   CI's fuzz run, blank_value_then_string_on_next_cards.cards, whose next card's keyword field
///   is no FITS keyword either: such keywords are refused too);
/// - a first SIP coefficient whose value is not a FITS number, NaN and INF included (a null
///   pointer is read);
/// - NAXIS / WCSAXES values it then allocates arrays for (NAXIS = 2147483647 asks for 17 GB).
/// Header cards are printable ASCII.
std::string CardProblem(const std::string& card) {
  for (char c : card)
    if (c < 0x20 || c > 0x7e) return "it holds a character that is not printable ASCII";
  const std::string key = card.substr(0, std::min<size_t>(8, card.find_last_not_of(' ', 7) + 1));
  for (char c : key)
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return "its keyword (columns 1-8) may hold only upper-case letters, digits, '-' and '_', left-justified";
  const bool has_value = card.size() >= 10 && card.compare(8, 2, "= ") == 0;
  if (IsSipCoefficient(key) && (!has_value || !HasNumericValue(card)))
    return "the SIP coefficient " + key + " needs a number as its value";
  if (!has_value) return "";
  if (const size_t v = card.find_first_not_of(' ', 10); v == std::string::npos || card[v] == '/')
    return "the keyword " + key + " has no value";
  if (key == "NAXIS" || key == "WCSAXES") {
    const long n = std::strtol(card.c_str() + 10, nullptr, 10);
    if (n < 0 || n > 99) return "a WCS has 0 to 99 axes";
  }
  size_t i = card.find_first_not_of(' ', 10);
  if (i == std::string::npos || card[i] != '\'') return "";
  for (++i; i < card.size(); ++i) {
    if (card[i] != '\'') continue;
    if (i + 1 < card.size() && card[i + 1] == '\'') {
      ++i;  // '' is a quote inside the string
      continue;
    }
    return "";
  }
  return "its string value has no closing quote";
}

/// Why SIP coefficients A_p_q / AP_p_q must not reach wcspih with these cards (the header without
/// them), or "" if they may. wcspih (wcslib 7.12) stores them for pixel axes 1 and 2 of the
/// primary WCS and overflows its heap arrays when that has fewer than two axes (NAXIS, WCSAXES
/// and the axis numbers of its keywords all below 2; an A coefficient alone makes a primary WCS
/// of one axis, B_p_q implies axis 2). The cards are parsed once without the A coefficients to
/// learn the primary WCS's axis count.
std::string SipAxisProblem(const std::string& header_without_sip_a) {
  std::string h = header_without_sip_a;
  int nreject = 0, nwcs = 0;
  wcsprm* all = nullptr;
  const int st = h.empty() ? 0 : wcspih(h.data(), static_cast<int>(h.size() / 80), WCSHDR_all, 0, &nreject, &nwcs, &all);
  int naxis = 0;
  for (int i = 0; i < nwcs; ++i)
    if (all[i].alt[0] == ' ' || all[i].alt[0] == '\0') naxis = all[i].naxis;
  if (all) wcsvfree(&nwcs, &all);
  if (st) return "wcslib cannot parse the other cards (wcspih status " + std::to_string(st) + ")";
  if (naxis >= 2) return "";
  return "the primary WCS has " + std::to_string(naxis) + (naxis == 1 ? " axis" : " axes");
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
  std::string header, header_without_sip_a, first_sip_a;
  int index = 0;
  for (const std::string& c : SplitCards(cards.cards)) {
    ++index;
    if (const std::string why = CardProblem(c); !why.empty()) {
      std::string shown = c.substr(0, c.find_last_not_of(' ') + 1);
      for (char& ch : shown)
        if (ch < 0x20 || ch > 0x7e) ch = '?';
      return Status::Error("WCS card " + std::to_string(index) + " is not a valid FITS card: " + why + " ('" + shown +
                           "'); correct or remove that keyword");
    }
    header += c;
    const std::string key = c.substr(0, std::min<size_t>(8, c.find_last_not_of(' ', 7) + 1));
    if (IsSipCoefficient(key) && key[0] == 'A') {
      if (first_sip_a.empty()) first_sip_a = key + "' (card " + std::to_string(index) + ")";
    } else {
      header_without_sip_a += c;
    }
  }
  if (!first_sip_a.empty()) {
    if (const std::string why = SipAxisProblem(header_without_sip_a); !why.empty())
      return Status::Error("the WCS cards hold the SIP distortion coefficient '" + first_sip_a + " but " + why +
                           ": SIP distorts the two celestial pixel axes; correct NAXIS / WCSAXES or remove the SIP "
                           "keywords");
  }
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
  ResetLinear(impl->prm);                    // wcsfix's own wcsset() may have failed
  st = wcsset(&impl->prm);
  if (st) {
    const std::string why = WcsError(impl->prm, st);
    ResetLinear(impl->prm);
    return Status::Error("invalid WCS: " + why);
  }
  if (impl->prm.lng < 0 || impl->prm.lat < 0) {
    return Status::Error("the WCS cards hold no celestial axes (CTYPE1/2 must be e.g. RA---TAN/DEC--TAN)");
  }
  return Wcs(std::move(impl));
}

Result<SkyCoord> Wcs::ToSky(double x, double y) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  wcsprm& p = impl_->prm;
  const int n = p.naxis;  // the cards may number up to 99 axes (CTYPE10, ...)
  std::vector<double> pix(static_cast<size_t>(n), 1.0), img(pix.size()), world(pix.size());
  double phi, theta;
  pix[0] = x + 1.0;
  pix[1] = y + 1.0;
  int stat[1] = {0};
  const int st = wcsp2s(&p, 1, n, pix.data(), img.data(), &phi, &theta, world.data(), stat);
  if (st)
    return Status::Error("pixel (" + std::to_string(x) + ", " + std::to_string(y) + ") has no sky position: " +
                         WcsError(p, st));
  return SkyCoord{world[p.lng], world[p.lat]};
}

Result<PixelCoord> Wcs::ToPixel(double ra, double dec) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  wcsprm& p = impl_->prm;
  const int n = p.naxis;
  std::vector<double> world(p.crval, p.crval + n), img(world.size()), pix(world.size());
  double phi, theta;
  world[p.lng] = ra;
  world[p.lat] = dec;
  int stat[1] = {0};
  const int st = wcss2p(&p, 1, n, world.data(), &phi, &theta, img.data(), pix.data(), stat);
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
