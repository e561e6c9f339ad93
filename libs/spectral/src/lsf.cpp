// Line-spread-function models. See lsf.hpp.
#include "cubeflow/spectral/lsf.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "cubeflow/spectral/spectral_ops.hpp"

namespace cubeflow::spectral {

namespace {
std::string Num(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}
}  // namespace

Lsf Lsf::Constant(double fwhm) {
  Lsf l;
  l.kind_ = Kind::kConstant;
  l.a_ = fwhm;
  l.description_ = "constant " + Num(fwhm) + " A";
  return l;
}

Result<Lsf> Lsf::Linear(double wave_blue, double fwhm_blue, double wave_red, double fwhm_red) {
  if (!(wave_red > wave_blue))
    return Status::Error("linear LSF: the red wavelength (" + Num(wave_red) + " A) must be greater than the blue one (" +
                         Num(wave_blue) + " A)");
  if (!(fwhm_blue >= 0) || !(fwhm_red >= 0))
    return Status::Error("linear LSF: FWHM values must not be negative (got " + Num(fwhm_blue) + ", " + Num(fwhm_red) + ")");
  Lsf l;
  l.kind_ = Kind::kLinear;
  l.a_ = wave_blue;
  l.b_ = fwhm_blue;
  l.c_ = wave_red;
  l.d_ = fwhm_red;
  l.description_ = "linear " + Num(fwhm_blue) + " A at " + Num(wave_blue) + " A to " + Num(fwhm_red) + " A at " +
                   Num(wave_red) + " A";
  return l;
}

Lsf Lsf::Bacon2017() {
  Lsf l;
  l.kind_ = Kind::kBacon2017;
  l.description_ = "bacon2017 (MUSE WFM, Bacon et al. 2017 eq. 8)";
  return l;
}

Result<Lsf> Lsf::Table(std::vector<double> wave, std::vector<double> fwhm, std::string source) {
  if (wave.size() != fwhm.size() || wave.size() < 2)
    return Status::Error(source + ": an LSF table needs at least two (wavelength, FWHM) rows, got " +
                         std::to_string(std::min(wave.size(), fwhm.size())));
  for (size_t i = 0; i < wave.size(); ++i) {
    if (!std::isfinite(wave[i]) || !std::isfinite(fwhm[i]) || !(fwhm[i] > 0))
      return Status::Error(source + ": row " + std::to_string(i + 1) + " has a non-finite wavelength or a FWHM <= 0");
    if (i > 0 && !(wave[i] > wave[i - 1]))
      return Status::Error(source + ": wavelengths must increase strictly (row " + std::to_string(i + 1) + ": " +
                           Num(wave[i]) + " after " + Num(wave[i - 1]) + ")");
  }
  Lsf l;
  l.kind_ = Kind::kTable;
  l.description_ = "table " + source + " (" + std::to_string(wave.size()) + " rows, " + Num(wave.front()) + "-" +
                   Num(wave.back()) + " A)";
  l.wave_ = std::make_shared<const std::vector<double>>(std::move(wave));
  l.fwhm_ = std::make_shared<const std::vector<double>>(std::move(fwhm));
  return l;
}

Result<Lsf> Lsf::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot open the LSF file " + path + " (two columns: wavelength, FWHM in Angstrom)");
  std::vector<double> w, f;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
    std::istringstream ss(line);
    double a, b;
    if (!(ss >> a)) continue;  // blank or comment
    if (!(ss >> b))
      return Status::Error(path + ":" + std::to_string(lineno) + ": expected two numbers (wavelength, FWHM in Angstrom)");
    w.push_back(a);
    f.push_back(b);
  }
  std::string name = path;
  if (auto s = name.find_last_of('/'); s != std::string::npos) name = name.substr(s + 1);
  return Table(std::move(w), std::move(f), name);
}

double Lsf::Fwhm(double lambda) const {
  switch (kind_) {
    case Kind::kConstant:
      return a_;
    case Kind::kLinear: {
      if (lambda <= a_) return b_;
      if (lambda >= c_) return d_;
      return b_ + (lambda - a_) / (c_ - a_) * (d_ - b_);
    }
    case Kind::kBacon2017:
      return MuseLsfFwhm(lambda);
    case Kind::kTable: {
      const auto& w = *wave_;
      const auto& f = *fwhm_;
      if (lambda <= w.front()) return f.front();
      if (lambda >= w.back()) return f.back();
      const size_t j = static_cast<size_t>(std::upper_bound(w.begin(), w.end(), lambda) - w.begin());
      const double t = (lambda - w[j - 1]) / (w[j] - w[j - 1]);
      return f[j - 1] + t * (f[j] - f[j - 1]);
    }
  }
  return a_;
}

double Lsf::SigmaKms(double lambda) const { return Fwhm(lambda) / kFwhmToSigma / lambda * kSpeedOfLightKms; }

}  // namespace cubeflow::spectral
