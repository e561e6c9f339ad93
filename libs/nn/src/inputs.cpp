// Input checks shared by the inference nodes (see cubeflow/nn/inputs.hpp). No libtorch.
#include "cubeflow/nn/inputs.hpp"

#include "cubeflow/spectral/stats.hpp"
#include "cubeflow/strings.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cubeflow::inputs {

namespace {

/// A number in a message (10 significant digits: grid starts and steps).
std::string Num(double v) { return cubeflow::Num(v, 10); }

/// Band names in a message; "(none)" for none.
std::string Join(const std::vector<std::string>& v) { return cubeflow::Join(v, ", ", "(none)"); }

}  // namespace

std::string CheckSpectrum(const std::string& who, const std::string& metadata_path, const InputConventions& c,
                          const Spectrum& s, double norm_tolerance) {
  const std::string src = " (model metadata " + metadata_path + ")";
  const std::string bin = "spectrum of bin " + std::to_string(s.id);
  std::vector<std::string> diffs;
  const double step = c.wave.cdelt;
  if (s.wave.log != c.wave.log)
    diffs.push_back(std::string("axis is ") + (s.wave.log ? "logarithmic" : "linear") + ", model's is " +
                    (c.wave.log ? "logarithmic" : "linear"));
  if (s.wave.n != c.wave.n)
    diffs.push_back("n = " + std::to_string(s.wave.n) + " pixels, model has " + std::to_string(c.wave.n));
  const double start = s.wave.crval + (1.0 - s.wave.crpix) * s.wave.cdelt;
  const double mstart = c.wave.crval + (1.0 - c.wave.crpix) * c.wave.cdelt;
  if (std::abs(start - mstart) > 0.01 * std::abs(step))
    diffs.push_back("start = " + Num(start) + " A, model's is " + Num(mstart) + " A");
  if (std::abs(s.wave.cdelt - step) * std::max<int64_t>(c.wave.n, 1) > 0.01 * std::abs(step))
    diffs.push_back("step = " + Num(s.wave.cdelt) + " A, model's is " + Num(step) + " A");
  if (s.wave.air != c.wave.air)
    diffs.push_back(std::string("wavelengths are ") + (s.wave.air ? "air" : "vacuum") + ", model's are " +
                    (c.wave.air ? "air" : "vacuum"));
  if (!diffs.empty()) {
    std::string msg = bin + ": wavelength grid differs from the model's" + src + ": ";
    for (size_t i = 0; i < diffs.size(); ++i) msg += (i ? "; " : "") + diffs[i];
    return msg + ". Resample the spectra to start " + Num(mstart) + " A, step " + Num(step) + " A, " +
           std::to_string(c.wave.n) + " pixels (spectral.restframe)";
  }
  if (c.rest_frame && !s.rest_frame)
    return bin + " is not in the rest frame (rest_frame = false) but the model expects rest-frame spectra" + src +
           ": put spectral.restframe before " + who;
  auto mn = s.meta.find("norm_min"), mx = s.meta.find("norm_max");
  if (mn != s.meta.end() && mx != s.meta.end() &&
      (std::abs(mn->second - c.norm_min) > 1.0 || std::abs(mx->second - c.norm_max) > 1.0))
    return bin + ": normalisation window " + Num(mn->second) + "-" + Num(mx->second) + " A, model's is " +
           Num(c.norm_min) + "-" + Num(c.norm_max) + " A" + src;
  double sum = 0;
  int64_t cnt = 0;
  for (int64_t k = 0; k < s.wave.n && k < static_cast<int64_t>(s.flux.size()); ++k) {
    const double w = s.wave.At(k);
    if (w < c.norm_min || w > c.norm_max) continue;
    if (!s.mask.empty() && s.mask[k]) continue;
    if (!std::isfinite(s.flux[k])) continue;
    sum += s.flux[k];
    ++cnt;
  }
  if (cnt > 0) {
    const double mean = sum / cnt;
    if (std::abs(mean - 1.0) > norm_tolerance)
      return bin + ": mean flux in the normalisation window " + Num(c.norm_min) + "-" + Num(c.norm_max) + " A is " +
             Num(mean) + ", expected 1 (the model was trained on spectra divided by their mean flux there" + src +
             "): normalise the spectra (spectral.restframe)";
  }
  return "";
}

std::string CheckPhotometry(const std::string& who, const std::string& metadata_path, const InputConventions& c,
                            const Photometry& p, std::vector<int>& order) {
  order.assign(c.bands.size(), -1);
  std::vector<std::string> missing;
  for (size_t b = 0; b < c.bands.size(); ++b) {
    auto it = std::find(p.bands.begin(), p.bands.end(), c.bands[b]);
    if (it == p.bands.end()) {
      missing.push_back(c.bands[b]);
      continue;
    }
    order[b] = static_cast<int>(it - p.bands.begin());
  }
  const std::string src = " (model metadata " + metadata_path + ")";
  const std::string bin = "photometry of bin " + std::to_string(p.id);
  if (!missing.empty())
    return bin + " lacks band(s) " + Join(missing) + ": it has " + Join(p.bands) + ", the model needs " +
           Join(c.bands) + src;
  if (p.flux.size() != p.bands.size())
    return bin + " has " + std::to_string(p.flux.size()) + " fluxes for " + std::to_string(p.bands.size()) + " bands";
  for (size_t b = 0; b < c.bands.size(); ++b) {
    if (b >= c.pivots.size() || static_cast<size_t>(order[b]) >= p.pivot.size()) continue;
    const double mp = c.pivots[b], pp = p.pivot[order[b]];
    if (mp > 0 && pp > 0 && std::abs(pp / mp - 1.0) > 0.01)
      return bin + ": band " + c.bands[b] + " has pivot " + Num(pp) + " A, model's is " + Num(mp) + " A" + src;
  }
  return "";
}

int64_t CopyInterpolated(const Spectrum& s, int64_t nw, float* d) {
  int64_t bad = 0, last_good = -1;
  for (int64_t k = 0; k < nw; ++k) {
    const double v = k < static_cast<int64_t>(s.flux.size()) ? s.flux[k] : NAN;
    const bool good = std::isfinite(v) && (s.mask.empty() || k >= static_cast<int64_t>(s.mask.size()) || !s.mask[k]);
    if (!good) {
      ++bad;
      continue;
    }
    d[k] = static_cast<float>(v);
    if (last_good < k - 1) {  // fill the gap (last_good, k)
      const double a = last_good >= 0 ? d[last_good] : v;
      for (int64_t g = last_good + 1; g < k; ++g)
        d[g] = static_cast<float>(last_good >= 0 ? a + (v - a) * (g - last_good) / double(k - last_good) : v);
    }
    last_good = k;
  }
  if (last_good < 0) {
    std::fill(d, d + nw, 1.0f);
    return nw;
  }
  for (int64_t g = last_good + 1; g < nw; ++g) d[g] = d[last_good];
  return bad;
}

double NoiseSnr(const Spectrum& s, double norm_min, double norm_max) {
  std::vector<double> sig;
  const int64_t n = std::min<int64_t>(s.wave.n, static_cast<int64_t>(s.variance.size()));
  for (int64_t k = 0; k < n; ++k) {
    const double w = s.wave.At(k);
    if (w < norm_min || w > norm_max) continue;
    if (!s.mask.empty() && k < static_cast<int64_t>(s.mask.size()) && s.mask[k]) continue;
    const double v = s.variance[k];
    if (std::isfinite(v) && v > 0) sig.push_back(std::sqrt(v));
  }
  const double m = spectral::Median(sig);
  return m > 0 ? 1.0 / m : std::numeric_limits<double>::quiet_NaN();
}

double NoiseSnrFromSigma(const WavelengthAxis& wave, const float* sigma, double norm_min, double norm_max) {
  std::vector<double> sig;
  for (int64_t k = 0; k < wave.n; ++k) {
    const double w = wave.At(k);
    if (w < norm_min || w > norm_max) continue;
    const double v = sigma[k];
    if (std::isfinite(v) && v > 0) sig.push_back(v);
  }
  const double m = spectral::Median(sig);
  return m > 0 ? 1.0 / m : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace cubeflow::inputs
