// SspGrid methods and SSP file-name parsing. See ssp.hpp.

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <regex>
#include <string>

#include "cubeflow/sim/ssp.hpp"

namespace cubeflow::sim {

namespace {

// Index i and fraction t in [0, 1] such that x ~ (1 - t) axis[i] + t axis[i + 1], clamped.
void Bracket(const std::vector<double>& axis, double x, size_t* i, double* t) {
  const size_t n = axis.size();
  if (n <= 1 || !(x > axis.front())) {  // also catches NaN -> first node
    *i = 0;
    *t = 0;
    return;
  }
  if (x >= axis.back()) {
    *i = n - 2;
    *t = 1;
    return;
  }
  const size_t k = static_cast<size_t>(std::upper_bound(axis.begin(), axis.end(), x) - axis.begin());
  *i = k - 1;
  *t = (x - axis[k - 1]) / (axis[k] - axis[k - 1]);
}

}  // namespace

SspGrid::Weights SspGrid::InterpolationWeights(double log_age_yr, double mh) const {
  size_t ia = 0, im = 0;
  double ta = 0, tm = 0;
  Bracket(log_age, log_age_yr, &ia, &ta);
  Bracket(metal, mh, &im, &tm);
  const size_t na = n_age();
  const size_t ia1 = std::min(ia + 1, na > 0 ? na - 1 : 0);
  const size_t im1 = std::min(im + 1, n_metal() > 0 ? n_metal() - 1 : 0);
  Weights w;
  w.index[0] = im * na + ia;
  w.index[1] = im * na + ia1;
  w.index[2] = im1 * na + ia;
  w.index[3] = im1 * na + ia1;
  w.weight[0] = (1 - tm) * (1 - ta);
  w.weight[1] = (1 - tm) * ta;
  w.weight[2] = tm * (1 - ta);
  w.weight[3] = tm * ta;
  return w;
}

void SspGrid::Interpolate(double log_age_yr, double mh, double* out) const {
  const size_t nw = n_wave();
  if (flux.empty() || nw == 0) return;
  const Weights w = InterpolationWeights(log_age_yr, mh);
  std::fill(out, out + nw, 0.0);
  for (int c = 0; c < 4; ++c) {
    if (w.weight[c] == 0.0) continue;
    const float* s = flux.data() + w.index[c] * nw;
    const double wc = w.weight[c];
    for (size_t k = 0; k < nw; ++k) out[k] += wc * static_cast<double>(s[k]);
  }
}

double SspGrid::InterpolateScalar(const std::vector<double>& v, double log_age_yr,
                                  double mh) const {
  if (v.empty() || v.size() != n_age() * n_metal()) return std::numeric_limits<double>::quiet_NaN();
  const Weights w = InterpolationWeights(log_age_yr, mh);
  double s = 0;
  for (int c = 0; c < 4; ++c) {
    if (w.weight[c] != 0.0) s += w.weight[c] * v[w.index[c]];
  }
  return s;
}

double SspGrid::QhAt(double log_age_yr, double mh) const {
  const size_t ny = q_h_young_log_age.size();
  if (q_h.empty() || ny == 0 || !(log_age_yr < log_age.front())) return InterpolateScalar(q_h, log_age_yr, mh);
  // The young table plus the grid's youngest age as its last node, per [M/H]; log Q, linear in [M/H].
  std::vector<double> ages(q_h_young_log_age);
  ages.push_back(log_age.front());
  size_t ia = 0, im = 0;
  double ta = 0, tm = 0;
  Bracket(ages, log_age_yr, &ia, &ta);
  Bracket(metal, mh, &im, &tm);
  const size_t im1 = std::min(im + 1, n_metal() - 1);
  auto at = [&](size_t m, size_t a) {
    const double q = a < ny ? q_h_young[m * ny + a] : q_h[m * n_age()];
    return std::log10(std::max(q, 1e-300));
  };
  const size_t ia1 = std::min(ia + 1, ny);
  const double lq = (1 - tm) * ((1 - ta) * at(im, ia) + ta * at(im, ia1)) + tm * ((1 - ta) * at(im1, ia) + ta * at(im1, ia1));
  return std::pow(10.0, lq);
}

double SspGrid::FwhmAt(double lambda) const {
  if (fwhm_wave.empty() || fwhm_wave.size() != wave.size()) return fwhm;
  size_t i = 0;
  double t = 0;
  Bracket(wave, lambda, &i, &t);
  if (wave.size() == 1) return fwhm_wave[0];
  return (1 - t) * fwhm_wave[i] + t * fwhm_wave[i + 1];
}

Status SspGrid::Validate() const {
  const std::string who = "SSP grid '" + name + "': ";
  if (wave.size() < 2 || log_age.empty() || metal.empty()) {
    return Status::Error(who + "empty wavelength, age or metallicity axis");
  }
  for (size_t i = 1; i < wave.size(); ++i) {
    if (!(wave[i] > wave[i - 1])) return Status::Error(who + "wavelengths not strictly increasing");
  }
  for (size_t i = 1; i < log_age.size(); ++i) {
    if (!(log_age[i] > log_age[i - 1])) return Status::Error(who + "ages not strictly increasing");
  }
  for (size_t i = 1; i < metal.size(); ++i) {
    if (!(metal[i] > metal[i - 1])) return Status::Error(who + "[M/H] not strictly increasing");
  }
  const size_t ng = n_age() * n_metal();
  if (flux.size() != ng * n_wave()) return Status::Error(who + "flux size != n_metal*n_age*n_wave");
  if (!ml_v.empty() && ml_v.size() != ng) return Status::Error(who + "ml_v size != n_metal*n_age");
  if (!mass_star.empty() && mass_star.size() != ng) {
    return Status::Error(who + "mass_star size != n_metal*n_age");
  }
  if (!q_h.empty() && q_h.size() != ng) return Status::Error(who + "q_h size != n_metal*n_age");
  if (!q_h_young.empty() && (q_h.empty() || q_h_young.size() != q_h_young_log_age.size() * n_metal())) {
    return Status::Error(who + "q_h_young size != n_metal * q_h_young_log_age size (or q_h empty)");
  }
  for (size_t i = 0; i < q_h_young_log_age.size(); ++i) {
    if (!(q_h_young_log_age[i] < log_age.front()) || (i > 0 && !(q_h_young_log_age[i] > q_h_young_log_age[i - 1])))
      return Status::Error(who + "q_h_young_log_age must increase and stay below the youngest age");
  }
  if (!fwhm_wave.empty() && fwhm_wave.size() != n_wave()) {
    return Status::Error(who + "fwhm_wave size != n_wave");
  }
  return Status::OK();
}

Result<SspFileInfo> ParseSspFileName(const std::string& file_name) {
  std::string base = file_name.substr(
      file_name.find_last_of('/') == std::string::npos ? 0 : file_name.find_last_of('/') + 1);
  static const std::regex kMiles(R"(^([A-Z])([a-z]{2})(\d+\.\d+)Z([mp])(\d+\.\d+)T(\d+\.\d+))");
  static const std::regex kBc03(R"(^BC03_[zZ](\d*\.\d+)_a(\d*\.\d+))");
  static const std::regex kFwhm(R"(FWHM_(\d+(\.\d+)?))");
  std::smatch m;
  SspFileInfo info;
  // The patterns capture digits and a point only; std::strtod cannot fail on them but overflows
  // to infinity on hundreds of digits (std::stod would throw out_of_range).
  bool finite = true;
  auto num = [&finite](const std::ssub_match& g) {
    const double v = std::strtod(g.str().c_str(), nullptr);
    finite = finite && std::isfinite(v);
    return v;
  };
  if (std::regex_search(base, m, kMiles)) {
    info.family = m[1].str() + m[2].str();
    info.imf = m[2].str();
    info.imf_slope = num(m[3]);
    info.mh = (m[4].str() == "m" ? -1.0 : 1.0) * num(m[5]);
    info.age_gyr = num(m[6]);
  } else if (std::regex_search(base, m, kBc03)) {
    info.family = "BC03";
    const double z = num(m[1]);
    if (!(z > 0)) return Status::Error("SSP file '" + file_name + "': metallicity Z must be > 0");
    info.mh = std::log10(z / 0.019);
    info.age_gyr = num(m[2]);
  } else {
    return Status::Error("SSP file name '" + base +
                         "' not recognised: expected MILES-style 'Mun1.30Zp0.00T10.0000...fits' "
                         "or 'BC03_z0.020_a10.000.fits'");
  }
  if (std::regex_search(base, m, kFwhm)) info.fwhm = num(m[1]);
  if (!finite || !std::isfinite(info.mh))  // Z = 1e307 is finite, Z / 0.019 is not
    return Status::Error("SSP file name '" + base + "': a number in it is out of range (too many digits); rename the file");
  if (!(info.age_gyr > 0)) return Status::Error("SSP file '" + base + "': age must be > 0");
  return info;
}

}  // namespace cubeflow::sim
