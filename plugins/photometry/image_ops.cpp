// photometry: unit conversion, PSF transforms and matching kernels, normalised smoothing,
// polygon-overlap resampling. See hst_match.hpp.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <complex>
#include <cstdlib>

#include "hst_match.hpp"

#include "cubeflow/sim/filters.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::photometry {

namespace {

constexpr double kCAngstrom = 2.99792458e18;  // speed of light, Angstrom/s
constexpr double kArcsecPerRad = 206264.80624709636;

bool Contains(const std::string& s, const char* sub) { return s.find(sub) != std::string::npos; }

/// Strips a leading numeric scale ("1e-20", "1.0E-20*", "10**(-20)", "10^-20 ") from s.
double StripScale(std::string& s) {
  s = Trim(s);
  auto skip_sep = [&](size_t i) {
    while (i < s.size() && (s[i] == '*' || s[i] == ' ' || s[i] == '.')) ++i;
    return i;
  };
  for (const char* p : {"10**", "10^"}) {
    if (s.rfind(p, 0) == 0) {
      size_t i = std::string(p).size();
      bool paren = i < s.size() && s[i] == '(';
      if (paren) ++i;
      char* end = nullptr;
      const double e = std::strtod(s.c_str() + i, &end);
      if (end == s.c_str() + i) return 1.0;
      i = static_cast<size_t>(end - s.c_str());
      if (paren) {
        if (i < s.size() && s[i] == ')') ++i;
        else return 1.0;
      }
      s = Trim(s.substr(skip_sep(i)));
      return std::pow(10.0, e);
    }
  }
  if (!s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.')) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    const size_t i = static_cast<size_t>(end - s.c_str());
    if (i > 0 && i < s.size() && (s[i] == ' ' || s[i] == '*') && std::isfinite(v) && v > 0) {
      s = Trim(s.substr(skip_sep(i)));
      return v;
    }
  }
  return 1.0;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Units

UnitSpec ParseBunit(const std::string& bunit) {
  UnitSpec u;
  std::string rest = bunit;
  u.scale = StripScale(rest);
  if (rest.empty()) return u;
  // Compact upper-case form without separators: "erg s-1 cm-2 A-1" -> "ERGS-1CM-2A-1".
  std::string c;
  for (char ch : Upper(rest))
    if (ch != ' ' && ch != '*' && ch != '^' && ch != '.' && ch != '(' && ch != ')') c += ch;
  for (const char* suffix : {"/PIXEL", "/PIX", "PIX-1", "PIXEL-1"}) {
    const std::string sf(suffix);
    if (c.size() > sf.size() && c.compare(c.size() - sf.size(), sf.size(), sf) == 0) c.resize(c.size() - sf.size());
  }
  const bool electrons = c.rfind("ELECTRON", 0) == 0 || c.rfind("E-", 0) == 0 || c.rfind("E/", 0) == 0;
  const bool counts = electrons || c.rfind("COUNT", 0) == 0 || c.rfind("CTS", 0) == 0 || c.rfind("DN", 0) == 0;
  if (c == "CPS") {
    u.unit = PixelUnit::kCountRate;
    return u;
  }
  if (counts) {
    const bool rate = Contains(c, "/S") || (c.size() > 3 && c.compare(c.size() - 3, 3, "S-1") == 0);
    static const char* kPlain[] = {"ELECTRONS", "ELECTRON", "E-", "COUNTS", "COUNT", "CTS", "DN"};
    bool plain = false;
    for (const char* p : kPlain) plain = plain || c == p;
    if (rate) u.unit = PixelUnit::kCountRate;
    else if (plain) u.unit = PixelUnit::kCounts;
    else return u;
    u.electrons = electrons;
    return u;
  }
  if (Contains(c, "ERG") && Contains(c, "CM") && !Contains(c, "HZ") &&
      (Contains(c, "ANGSTROM") || Contains(c, "/A") || Contains(c, "A-1") || Contains(c, "/AA") ||
       Contains(c, "AA-1") || Contains(c, "\xC3\x85"))) {
    u.unit = Contains(c, "ARCSEC") ? PixelUnit::kFlamArcsec2 : PixelUnit::kFlam;
    return u;
  }
  // Jansky: the prefix is case-sensitive (mJy vs MJy).
  std::string j;
  for (char ch : rest)
    if (ch != ' ') j += ch;
  const std::string ju = Upper(j);
  if (ju == "MJY/SR" || ju == "MJYSR-1") {
    if (j.rfind("MJy", 0) == 0 || j.rfind("MJY", 0) == 0) {
      u.unit = PixelUnit::kMJySr;
      return u;
    }
    return u;  // mJy/sr: not supported
  }
  struct Pre { const char* p; double f; };
  static const Pre kJy[] = {{"Jy", 1.0}, {"JY", 1.0}, {"mJy", 1e-3}, {"uJy", 1e-6}, {"\xC2\xB5Jy", 1e-6},
                            {"microJy", 1e-6}, {"nJy", 1e-9}, {"MJy", 1e6}};
  for (const Pre& p : kJy) {
    if (j == p.p) {
      u.unit = PixelUnit::kJansky;
      u.scale *= p.f;
      return u;
    }
  }
  return u;
}

std::string UnitName(PixelUnit u) {
  switch (u) {
    case PixelUnit::kCountRate: return "count rate";
    case PixelUnit::kCounts: return "counts";
    case PixelUnit::kFlam: return "erg/s/cm2/A per pixel";
    case PixelUnit::kFlamArcsec2: return "erg/s/cm2/A/arcsec2";
    case PixelUnit::kJansky: return "Jy per pixel";
    case PixelUnit::kMJySr: return "MJy/sr";
    default: return "unknown";
  }
}

double ZeropointToFlam(double zp_ab, double pivot) {
  const double fnu = std::pow(10.0, -0.4 * (zp_ab + 48.60));  // erg/s/cm^2/Hz
  return fnu * kCAngstrom / (pivot * pivot);
}

Result<Calibration> Calibrate(const fits::ImageReader& img, const CalibrationOptions& opt) {
  Calibration cal;
  const std::string where = img.Where();
  std::string bunit = img.Key("BUNIT").value_or("");
  const bool has_bunit = !Trim(bunit).empty();
  double photflam = img.KeyDouble("PHOTFLAM").value_or(0), photplam = img.KeyDouble("PHOTPLAM").value_or(0),
         exptime = img.KeyDouble("EXPTIME").value_or(0);
  const bool has_photflam = photflam > 0 && std::isfinite(photflam);
  const bool has_photplam = photplam > 0 && std::isfinite(photplam);
  if (exptime > 0 && std::isfinite(exptime)) cal.exptime = exptime;
  const bool has_zp = std::isfinite(opt.zeropoint);
  std::string how;

  // 1. What the raw values are.
  const std::string mode = Upper(Trim(opt.unit));
  if (mode.empty() || mode == "AUTO") {
    if (!has_bunit) {
      if (!has_photflam && !has_zp)
        return Status::Error(where + " has no BUNIT and no PHOTFLAM keyword: cannot tell the unit of the pixels; "
                             "set `unit` (count_rate, counts, flam, flam_arcsec2, jy, mjy_sr) and the zero point "
                             "(`zeropoints`) if the image is in counts");
      cal.unit.unit = PixelUnit::kCountRate;
      how = "BUNIT empty, assumed a count rate (" + std::string(has_zp ? "zero point given" : "PHOTFLAM present") + ")";
    } else {
      cal.unit = ParseBunit(bunit);
      if (cal.unit.unit == PixelUnit::kUnknown)
        return Status::Error(where + ": unknown BUNIT '" + bunit +
                             "'; set `unit` to what the pixels are (count_rate, counts, flam, flam_arcsec2, jy, mjy_sr)"
                             " and `unit_scale` if they carry a factor");
      how = "BUNIT '" + bunit + "' = " + UnitName(cal.unit.unit);
    }
  } else {
    static const std::pair<const char*, PixelUnit> kNames[] = {
        {"COUNT_RATE", PixelUnit::kCountRate}, {"COUNTS", PixelUnit::kCounts},       {"FLAM", PixelUnit::kFlam},
        {"FLAM_ARCSEC2", PixelUnit::kFlamArcsec2}, {"JY", PixelUnit::kJansky},      {"MJY_SR", PixelUnit::kMJySr}};
    for (const auto& [n, u] : kNames)
      if (mode == n) cal.unit.unit = u;
    if (cal.unit.unit == PixelUnit::kUnknown)
      return Status::Error("band " + opt.band + ": unknown unit '" + opt.unit +
                           "' (expected auto, count_rate, counts, flam, flam_arcsec2, jy or mjy_sr)");
    if (has_bunit) cal.unit.electrons = ParseBunit(bunit).electrons;
    how = "unit set to " + UnitName(cal.unit.unit);
  }
  cal.unit.scale *= opt.unit_scale;
  if (cal.unit.scale != 1.0) how += ", scale " + Num(cal.unit.scale);

  // 2. Pivot wavelength.
  if (std::isfinite(opt.pivot) && opt.pivot > 0) {
    cal.pivot = opt.pivot;
  } else if (has_photplam) {
    cal.pivot = photplam;
  } else {
    auto f = sim::BuiltinFilter(opt.band);
    if (f.ok()) cal.pivot = sim::PivotWavelength(*f);
    if (!(cal.pivot > 0))
      return Status::Error(where + " (band " + opt.band +
                           "): no pivot wavelength: the header has no PHOTPLAM and the band is not a built-in "
                           "filter; give it in `pivots` (Angstrom, same order as `bands`)");
  }

  // 3. Factor to erg/s/cm^2/A in the pixel.
  const double s = cal.unit.scale;
  switch (cal.unit.unit) {
    case PixelUnit::kCountRate:
    case PixelUnit::kCounts: {
      double per_rate = 0;
      if (has_zp) {
        per_rate = ZeropointToFlam(opt.zeropoint, cal.pivot);
        how += ", AB zero point " + Num(opt.zeropoint) + " -> " + Num(per_rate) + " erg/s/cm2/A per count/s";
      } else if (has_photflam) {
        per_rate = photflam;
        how += ", PHOTFLAM " + Num(photflam);
      } else {
        return Status::Error(where + " (band " + opt.band + ") is in " + UnitName(cal.unit.unit) +
                             (has_bunit ? " (BUNIT '" + bunit + "')" : "") +
                             " but has no PHOTFLAM keyword (image or primary header): give the band's AB zero "
                             "point in `zeropoints` (same order as `bands`), or add PHOTFLAM to the header");
      }
      if (cal.unit.unit == PixelUnit::kCounts) {
        if (!(cal.exptime > 0))
          return Status::Error(where + " (band " + opt.band +
                               ") is in counts but has no positive EXPTIME: cannot make a count rate; add EXPTIME "
                               "or convert the image to counts per second");
        cal.factor = s * per_rate / cal.exptime;
        how += ", / EXPTIME " + Num(cal.exptime);
      } else {
        cal.factor = s * per_rate;
      }
      break;
    }
    case PixelUnit::kFlam: cal.factor = s; break;
    case PixelUnit::kFlamArcsec2:
      cal.factor = s * opt.pixel_area_arcsec2;
      how += ", x pixel area " + Num(opt.pixel_area_arcsec2) + " arcsec2";
      break;
    case PixelUnit::kJansky:
      cal.factor = s * 1e-23 * kCAngstrom / (cal.pivot * cal.pivot);
      how += ", Jy -> f_lambda at the pivot";
      break;
    case PixelUnit::kMJySr:
      cal.factor = s * 1e6 * 1e-23 * kCAngstrom / (cal.pivot * cal.pivot) * opt.pixel_area_arcsec2 /
                   (kArcsecPerRad * kArcsecPerRad);
      how += ", MJy/sr x pixel solid angle -> f_lambda at the pivot";
      break;
    default: return Status::Error(where + ": internal: unit not resolved");
  }
  if (!(cal.factor > 0) || !std::isfinite(cal.factor))
    return Status::Error(where + " (band " + opt.band + "): the conversion factor to erg/s/cm2/A is " +
                         Num(cal.factor) + "; check PHOTFLAM / zero point / unit_scale");
  cal.description = how + "; pivot " + Num(cal.pivot) + " A";
  return cal;
}

// ------------------------------------------------------------------------------------------
// PSFs and kernels

double MoffatAlpha(double fwhm, double beta) { return fwhm / (2.0 * std::sqrt(std::pow(2.0, 1.0 / beta) - 1.0)); }

double PsfTransform(PsfShape shape, double fwhm, double beta, double q) {
  q = std::abs(q);
  if (!(fwhm > 0)) return 1.0;
  if (shape == PsfShape::kGaussian) {
    const double s = fwhm / kFwhmToSigma;
    return std::exp(-2.0 * M_PI * M_PI * s * s * q * q);
  }
  const double a = MoffatAlpha(fwhm, beta);
  const double x = 2.0 * M_PI * a * q;
  if (x < 1e-8) return 1.0;
  if (x > 700) return 0.0;
  const double nu = beta - 1.0;
  return std::pow(2.0, 1.0 - nu) / std::tgamma(nu) * std::pow(x, nu) * std::cyl_bessel_k(nu, x);
}

double PsfRadius(PsfShape shape, double fwhm, double beta, double frac) {
  if (shape == PsfShape::kGaussian) return fwhm / kFwhmToSigma * std::sqrt(-2.0 * std::log(frac));
  const double a = MoffatAlpha(fwhm, beta);
  return a * std::sqrt(std::pow(frac, 1.0 / (1.0 - beta)) - 1.0);
}

std::vector<double> GaussianKernel1D(double sigma) {
  const int half = std::max(1, static_cast<int>(std::ceil(4.0 * sigma)));
  std::vector<double> k(static_cast<size_t>(2 * half + 1));
  double sum = 0;
  for (int i = -half; i <= half; ++i) sum += k[static_cast<size_t>(i + half)] = std::exp(-0.5 * i * i / (sigma * sigma));
  for (double& v : k) v /= sum;
  return k;
}

void SmoothBlock(const std::vector<double>& in, int64_t nrows, int64_t ncols, const std::vector<double>& kx,
                 const std::vector<double>& ky, int64_t row0, int64_t nout, std::vector<double>& out) {
  const int64_t hx = static_cast<int64_t>(kx.size() / 2), hy = static_cast<int64_t>(ky.size() / 2);
  // Rows first: a = kx (x) (v m), b = kx (x) m, over every row of the block that the column
  // pass of the output rows needs.
  const int64_t r0 = std::max<int64_t>(0, row0 - hy), r1 = std::min<int64_t>(nrows, row0 + nout + hy);
  const int64_t nr = r1 - r0;
  std::vector<double> a(static_cast<size_t>(nr * ncols)), b(static_cast<size_t>(nr * ncols));
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, nr, 8), [&](const tbb::blocked_range<int64_t>& rr) {
    std::vector<double> vm(static_cast<size_t>(ncols)), m(static_cast<size_t>(ncols));
    for (int64_t r = rr.begin(); r < rr.end(); ++r) {
      const double* src = in.data() + (r0 + r) * ncols;
      for (int64_t c = 0; c < ncols; ++c) {
        const bool ok = std::isfinite(src[c]);
        vm[static_cast<size_t>(c)] = ok ? src[c] : 0.0;
        m[static_cast<size_t>(c)] = ok ? 1.0 : 0.0;
      }
      double* da = a.data() + r * ncols;
      double* db = b.data() + r * ncols;
      for (int64_t c = 0; c < ncols; ++c) {
        const int64_t t0 = std::max<int64_t>(-hx, -c), t1 = std::min<int64_t>(hx, ncols - 1 - c);
        double sa = 0, sb = 0;
        for (int64_t t = t0; t <= t1; ++t) {
          const double w = kx[static_cast<size_t>(t + hx)];
          sa += w * vm[static_cast<size_t>(c + t)];
          sb += w * m[static_cast<size_t>(c + t)];
        }
        da[c] = sa;
        db[c] = sb;
      }
    }
  });
  out.assign(static_cast<size_t>(nout * ncols), kNaN);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, nout, 4), [&](const tbb::blocked_range<int64_t>& rr) {
    std::vector<double> num(static_cast<size_t>(ncols)), den(static_cast<size_t>(ncols));
    for (int64_t o = rr.begin(); o < rr.end(); ++o) {
      const int64_t r = row0 + o;  // row in the block
      std::fill(num.begin(), num.end(), 0.0);
      std::fill(den.begin(), den.end(), 0.0);
      const int64_t t0 = std::max<int64_t>(-hy, -r), t1 = std::min<int64_t>(hy, nrows - 1 - r);
      for (int64_t t = t0; t <= t1; ++t) {
        const double w = ky[static_cast<size_t>(t + hy)];
        const double* sa = a.data() + (r + t - r0) * ncols;
        const double* sb = b.data() + (r + t - r0) * ncols;
        for (int64_t c = 0; c < ncols; ++c) {
          num[static_cast<size_t>(c)] += w * sa[c];
          den[static_cast<size_t>(c)] += w * sb[c];
        }
      }
      const double* src = in.data() + r * ncols;
      double* dst = out.data() + o * ncols;
      for (int64_t c = 0; c < ncols; ++c)
        if (std::isfinite(src[c]) && den[static_cast<size_t>(c)] > 0)
          dst[c] = num[static_cast<size_t>(c)] / den[static_cast<size_t>(c)];
    }
  });
}

double PreSmoothingSigma(const PsfOptions& psf, double muse_pix_arcsec) {
  if (!(psf.muse_fwhm > 0)) return 0.0;
  const double se = psf.muse_fwhm / kFwhmToSigma, sh = psf.hst_fwhm / kFwhmToSigma;
  const double room = 0.5 * (se * se - sh * sh);
  if (!(room > 0)) return 0.0;
  return std::min(0.6 * muse_pix_arcsec, std::sqrt(room));
}

namespace {

double Sinc(double x) {
  if (std::abs(x) < 1e-9) return 1.0;
  const double px = M_PI * x;
  return std::sin(px) / px;
}

}  // namespace

Result<Kernel2D> BuildMatchingKernel(const KernelGeometry& g, const PsfOptions& psf, double sigma_pre) {
  if (!(psf.muse_fwhm > 0)) return Status::Error("matching kernel: psf_muse_fwhm must be positive");
  if (psf.shape == PsfShape::kMoffat && !(psf.beta > 1.0))
    return Status::Error("matching kernel: moffat_beta must exceed 1 (got " + Num(psf.beta) + ")");
  const double (&c)[2][2] = g.muse_cd;
  const double det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
  if (!(std::abs(det) > 0)) return Status::Error("matching kernel: singular MUSE pixel matrix");
  // q = C^-T k: inverse transpose of the pixel -> arcsec matrix.
  const double it[2][2] = {{c[1][1] / det, -c[1][0] / det}, {-c[0][1] / det, c[0][0] / det}};
  const double (&j)[2][2] = g.hst_to_muse;
  const double s_min = std::min(std::hypot(c[0][0], c[1][0]), std::hypot(c[0][1], c[1][1]));
  const double se = psf.muse_fwhm / kFwhmToSigma;
  const double r_arcsec = std::max(PsfRadius(psf.shape, psf.muse_fwhm, psf.beta, 1e-3), 4.0 * se);
  const int r = std::clamp(static_cast<int>(std::ceil(r_arcsec / s_min)) + 1, 2, 256);
  const int n = 4 * r + 8;  // DFT size: the kernel decays well within n / 2
  const double sh = psf.hst_fwhm / kFwhmToSigma;

  Kernel2D k;
  k.r = r;
  std::vector<double> khat(static_cast<size_t>(n * n));
  double kmax = 0, knyq = 0;
  for (int iy = 0; iy < n; ++iy) {
    const double ky = static_cast<double>(iy - n / 2) / n;
    for (int ix = 0; ix < n; ++ix) {
      const double kx = static_cast<double>(ix - n / 2) / n;
      const double qx = it[0][0] * kx + it[0][1] * ky, qy = it[1][0] * kx + it[1][1] * ky;
      const double q = std::hypot(qx, qy);
      const double m = PsfTransform(psf.shape, psf.muse_fwhm, psf.beta, q);
      const double gh = std::exp(-2.0 * M_PI * M_PI * sh * sh * q * q);
      const double gp = std::exp(-2.0 * M_PI * M_PI * sigma_pre * sigma_pre * q * q);
      const double bh = Sinc(j[0][0] * kx + j[1][0] * ky) * Sinc(j[0][1] * kx + j[1][1] * ky);
      const double bm = Sinc(kx) * Sinc(ky);
      const double t = gh * gp * bh * bm;
      const double v = t > 1e-300 ? m / t : 0.0;
      khat[static_cast<size_t>(iy * n + ix)] = v;
      kmax = std::max(kmax, std::abs(v));
      if (ix == 0 || iy == 0) knyq = std::max(knyq, std::abs(v));
    }
  }
  k.max_transfer = kmax;
  k.nyquist_transfer = knyq;
  if (kmax > 1.01)
    return Status::Error("the MUSE PSF (" + std::string(psf.shape == PsfShape::kGaussian ? "Gaussian" : "Moffat") +
                         ", FWHM " + Num(psf.muse_fwhm) + "\") is narrower than the HST PSF (FWHM " +
                         Num(psf.hst_fwhm) + "\") plus the pixels at some frequencies (kernel transfer " +
                         Num(kmax) + " > 1): it cannot be reached by convolution; check psf_muse_fwhm / psf_hst_fwhm");
  // Inverse DFT onto offsets -r..r (the transform is real and even: K(-n) = K(n)).
  const int w = 2 * r + 1;
  std::vector<std::complex<double>> tab(static_cast<size_t>(n));
  for (int m = 0; m < n; ++m) tab[static_cast<size_t>(m)] = std::polar(1.0, 2.0 * M_PI * m / n);
  auto phase = [&](int freq_index, int offset) {
    // exp(2 pi i k x) with k = (freq_index - n/2) / n
    long long p = static_cast<long long>(freq_index - n / 2) * offset;
    p %= n;
    if (p < 0) p += n;
    return tab[static_cast<size_t>(p)];
  };
  std::vector<std::complex<double>> gx(static_cast<size_t>(n * w));
  for (int iy = 0; iy < n; ++iy)
    for (int dx = -r; dx <= r; ++dx) {
      std::complex<double> s = 0;
      for (int ix = 0; ix < n; ++ix) s += khat[static_cast<size_t>(iy * n + ix)] * phase(ix, dx);
      gx[static_cast<size_t>(iy * w + dx + r)] = s;
    }
  k.w.assign(static_cast<size_t>(w * w), 0.0);
  double sum = 0;
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx) {
      std::complex<double> s = 0;
      for (int iy = 0; iy < n; ++iy) s += gx[static_cast<size_t>(iy * w + dx + r)] * phase(iy, dy);
      const double v = s.real() / (static_cast<double>(n) * n);
      k.w[static_cast<size_t>((dy + r) * w + dx + r)] = v;
      sum += v;
    }
  if (!(sum > 0)) return Status::Error("matching kernel: non-positive kernel sum (internal)");
  for (double& v : k.w) v /= sum;
  return k;
}

void ConvolveNormalised(const std::vector<double>& f, const std::vector<double>& c, int64_t nx, int64_t ny,
                        const Kernel2D& k, std::vector<double>& out, std::vector<double>& cov) {
  out.assign(static_cast<size_t>(nx * ny), kNaN);
  cov.assign(static_cast<size_t>(nx * ny), 0.0);
  const int r = k.r;
  const int w = 2 * r + 1;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, ny, 1), [&](const tbb::blocked_range<int64_t>& rr) {
    for (int64_t y = rr.begin(); y < rr.end(); ++y)
      for (int64_t x = 0; x < nx; ++x) {
        double sf = 0, sc = 0;
        // Output (x, y) = sum over input (x - dx, y - dy) of K(dx, dy).
        for (int dy = -r; dy <= r; ++dy) {
          const int64_t yy = y - dy;
          if (yy < 0 || yy >= ny) continue;
          const double* krow = k.w.data() + (dy + r) * w;
          const double* frow = f.data() + yy * nx;
          const double* crow = c.data() + yy * nx;
          const int64_t dx0 = std::max<int64_t>(-r, x - (nx - 1)), dx1 = std::min<int64_t>(r, x);
          for (int64_t dx = dx0; dx <= dx1; ++dx) {
            const double kv = krow[dx + r];
            sf += kv * frow[x - dx];
            sc += kv * crow[x - dx];
          }
        }
        const size_t i = static_cast<size_t>(y * nx + x);
        cov[i] = sc;
        if (sc > 1e-6) out[i] = sf / sc;
      }
  });
}

// ------------------------------------------------------------------------------------------
// Geometry

double ClipPolygonArea(const double* px, const double* py, int n, double x0, double x1, double y0, double y1) {
  double ax[16], ay[16], bx[16], by[16];
  int na = std::min(n, 8);
  for (int i = 0; i < na; ++i) {
    ax[i] = px[i];
    ay[i] = py[i];
  }
  // Clip against one half-plane: keep points with sign * (coord - bound) >= 0.
  auto clip = [&](int axis, double bound, double sign) {
    int nb = 0;
    for (int i = 0; i < na; ++i) {
      const int jn = (i + 1) % na;
      const double ci = axis == 0 ? ax[i] : ay[i], cj = axis == 0 ? ax[jn] : ay[jn];
      const double di = sign * (ci - bound), dj = sign * (cj - bound);
      const bool in_i = di >= 0, in_j = dj >= 0;
      if (in_i) {
        bx[nb] = ax[i];
        by[nb] = ay[i];
        ++nb;
      }
      if (in_i != in_j) {
        const double t = di / (di - dj);
        bx[nb] = ax[i] + t * (ax[jn] - ax[i]);
        by[nb] = ay[i] + t * (ay[jn] - ay[i]);
        if (axis == 0) bx[nb] = bound;
        else by[nb] = bound;
        ++nb;
      }
    }
    na = nb;
    for (int i = 0; i < na; ++i) {
      ax[i] = bx[i];
      ay[i] = by[i];
    }
  };
  clip(0, x0, 1.0);
  if (na < 3) return 0.0;
  clip(0, x1, -1.0);
  if (na < 3) return 0.0;
  clip(1, y0, 1.0);
  if (na < 3) return 0.0;
  clip(1, y1, -1.0);
  if (na < 3) return 0.0;
  double s = 0;
  for (int i = 0; i < na; ++i) {
    const int jn = (i + 1) % na;
    s += ax[i] * ay[jn] - ax[jn] * ay[i];
  }
  return 0.5 * std::abs(s);
}

Result<PixelTransform> PixelTransform::Build(const fits::Wcs& from, const fits::Wcs& to, double x0, double y0,
                                             double x1, double y1, double tol, int start_step) {
  auto exact = [&](double x, double y, double& tx, double& ty) {
    double ra = 0, dec = 0;
    from.PixelToSky(x, y, ra, dec);
    to.SkyToPixel(ra, dec, tx, ty);
  };
  try {
    for (int step = std::max(1, start_step);; step = std::max(1, step / 2)) {
      PixelTransform t;
      t.x0_ = x0;
      t.y0_ = y0;
      t.step_ = step;
      t.ncx_ = std::max<int64_t>(2, static_cast<int64_t>(std::ceil((x1 - x0) / step)) + 1);
      t.ncy_ = std::max<int64_t>(2, static_cast<int64_t>(std::ceil((y1 - y0) / step)) + 1);
      t.tx_.resize(static_cast<size_t>(t.ncx_ * t.ncy_));
      t.ty_.resize(t.tx_.size());
      for (int64_t j = 0; j < t.ncy_; ++j)
        for (int64_t i = 0; i < t.ncx_; ++i) {
          const size_t k = static_cast<size_t>(j * t.ncx_ + i);
          exact(x0 + static_cast<double>(i * step), y0 + static_cast<double>(j * step), t.tx_[k], t.ty_[k]);
        }
      // Interpolation error at cell centres (a sample of at most ~4000 cells).
      const int64_t ncell = (t.ncx_ - 1) * (t.ncy_ - 1);
      const int64_t stride = std::max<int64_t>(1, ncell / 4000);
      double err = 0;
      for (int64_t c = 0; c < ncell; c += stride) {
        const int64_t i = c % (t.ncx_ - 1), j = c / (t.ncx_ - 1);
        const double x = x0 + (static_cast<double>(i) + 0.5) * step, y = y0 + (static_cast<double>(j) + 0.5) * step;
        double ex = 0, ey = 0, ix = 0, iy = 0;
        exact(x, y, ex, ey);
        t.Map(x, y, ix, iy);
        err = std::max(err, std::hypot(ex - ix, ey - iy));
      }
      t.max_error_ = err;
      if (err <= tol || step == 1) return t;
    }
  } catch (const std::exception& e) {
    return Status::Error(std::string("mapping HST pixels onto the MUSE grid failed: ") + e.what());
  }
}

void PixelTransform::Map(double x, double y, double& tx, double& ty) const {
  const double fx = (x - x0_) / step_, fy = (y - y0_) / step_;
  const int64_t i = std::clamp<int64_t>(static_cast<int64_t>(std::floor(fx)), 0, ncx_ - 2);
  const int64_t j = std::clamp<int64_t>(static_cast<int64_t>(std::floor(fy)), 0, ncy_ - 2);
  const double u = fx - static_cast<double>(i), v = fy - static_cast<double>(j);
  const size_t k00 = static_cast<size_t>(j * ncx_ + i), k10 = k00 + 1, k01 = k00 + static_cast<size_t>(ncx_),
               k11 = k01 + 1;
  tx = (1 - u) * (1 - v) * tx_[k00] + u * (1 - v) * tx_[k10] + (1 - u) * v * tx_[k01] + u * v * tx_[k11];
  ty = (1 - u) * (1 - v) * ty_[k00] + u * (1 - v) * ty_[k10] + (1 - u) * v * ty_[k01] + u * v * ty_[k11];
}

void GridSums::Reset(int64_t nx_, int64_t ny_) {
  nx = nx_;
  ny = ny_;
  const size_t n = static_cast<size_t>(nx * ny);
  flux.assign(n, 0.0);
  var.assign(n, 0.0);
  npix.assign(n, 0.0);
  area.assign(n, 0.0);
}

void GridSums::Add(const GridSums& o) {
  for (size_t i = 0; i < flux.size(); ++i) {
    flux[i] += o.flux[i];
    var[i] += o.var[i];
    npix[i] += o.npix[i];
    area[i] += o.area[i];
  }
}

namespace {

inline void AddTo(double& dst, double v, bool atomic) {
  if (atomic) std::atomic_ref<double>(dst).fetch_add(v, std::memory_order_relaxed);
  else dst += v;
}

}  // namespace

void DepositQuad(const double qx[4], const double qy[4], double flux, double var, GridSums& acc, bool atomic) {
  double minx = qx[0], maxx = qx[0], miny = qy[0], maxy = qy[0];
  for (int i = 1; i < 4; ++i) {
    minx = std::min(minx, qx[i]);
    maxx = std::max(maxx, qx[i]);
    miny = std::min(miny, qy[i]);
    maxy = std::max(maxy, qy[i]);
  }
  int64_t u0 = static_cast<int64_t>(std::floor(minx + 0.5)), u1 = static_cast<int64_t>(std::floor(maxx + 0.5));
  int64_t v0 = static_cast<int64_t>(std::floor(miny + 0.5)), v1 = static_cast<int64_t>(std::floor(maxy + 0.5));
  if (u1 < 0 || v1 < 0 || u0 >= acc.nx || v0 >= acc.ny) return;
  const double quad_area =
      0.5 * std::abs((qx[0] * qy[1] - qx[1] * qy[0]) + (qx[1] * qy[2] - qx[2] * qy[1]) +
                     (qx[2] * qy[3] - qx[3] * qy[2]) + (qx[3] * qy[0] - qx[0] * qy[3]));
  if (!(quad_area > 0)) return;
  if (u0 == u1 && v0 == v1) {  // entirely inside one spaxel
    const size_t i = static_cast<size_t>(v0 * acc.nx + u0);
    AddTo(acc.flux[i], flux, atomic);
    AddTo(acc.var[i], var, atomic);
    AddTo(acc.npix[i], 1.0, atomic);
    AddTo(acc.area[i], quad_area, atomic);
    return;
  }
  u0 = std::max<int64_t>(u0, 0);
  v0 = std::max<int64_t>(v0, 0);
  u1 = std::min<int64_t>(u1, acc.nx - 1);
  v1 = std::min<int64_t>(v1, acc.ny - 1);
  for (int64_t v = v0; v <= v1; ++v)
    for (int64_t u = u0; u <= u1; ++u) {
      const double a = ClipPolygonArea(qx, qy, 4, static_cast<double>(u) - 0.5, static_cast<double>(u) + 0.5,
                                       static_cast<double>(v) - 0.5, static_cast<double>(v) + 0.5);
      if (a <= 0) continue;
      const double frac = a / quad_area;
      const size_t i = static_cast<size_t>(v * acc.nx + u);
      AddTo(acc.flux[i], frac * flux, atomic);
      AddTo(acc.var[i], frac * var, atomic);
      AddTo(acc.npix[i], frac, atomic);
      AddTo(acc.area[i], a, atomic);
    }
}

}  // namespace cubeflow::photometry
