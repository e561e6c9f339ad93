// Template preparation for kinematic fits. See templates.hpp.
#include "cubeflow/kinematics/templates.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "cubeflow/spectral/spectral_ops.hpp"

namespace cubeflow::kinematics {

namespace {
constexpr double kC = spectral::kSpeedOfLightKms;

std::string Fmt(double v, int prec = 4) {
  std::ostringstream o;
  o.precision(prec);
  o << v;
  return o.str();
}
}  // namespace

Result<std::shared_ptr<const TemplateSet>> PrepareTemplates(const sim::SspGrid& grid, const TemplateOptions& o) {
  const std::string name = grid.name.empty() ? std::string("templates") : grid.name;
  if (grid.n_wave() < 4 || grid.n_age() == 0 || grid.n_metal() == 0 ||
      grid.flux.size() != grid.n_wave() * grid.n_age() * grid.n_metal())
    return Status::Error("template library '" + name + "' is empty or inconsistent (" + std::to_string(grid.n_wave()) +
                         " wavelengths, " + std::to_string(grid.n_age()) + " ages, " + std::to_string(grid.n_metal()) +
                         " metallicities)");
  if (!(o.wave_min > 0) || !(o.wave_max > o.wave_min))
    return Status::Error("fit window " + Fmt(o.wave_min) + "-" + Fmt(o.wave_max) +
                         " Angstrom is empty; give 0 < wave_min < wave_max");
  if (!(o.z_sys > -1)) return Status::Error("z_sys must be > -1");
  spectral::Lsf tlsf = spectral::Lsf::Constant(grid.fwhm);
  if (o.template_lsf) {
    tlsf = *o.template_lsf;
  } else if (!(grid.fwhm > 0)) {
    return Status::Error("template library '" + name +
                         "' does not state its resolution (SspGrid::fwhm = 0); give the templates' FWHM "
                         "(template_fwhm) or an LSF file (template_lsf_file)");
  }
  const double z1 = 1.0 + o.z_sys;
  // Data FWHM at rest wavelength l, without the pixel box the LSF measurement may include.
  const double pix_fwhm2 = o.data_lsf_pixel * o.data_lsf_pixel * spectral::kFwhmToSigma * spectral::kFwhmToSigma / 12.0;
  auto fd = [&](double l) {
    const double f = o.data_lsf.Fwhm(l * z1);
    return std::sqrt(std::max(f * f - pix_fwhm2, 0.0)) / z1;
  };
  auto ft = [&](double l) { return tlsf.Fwhm(l); };

  auto ts = std::make_shared<TemplateSet>();
  ts->source = name;
  ts->wave_min = o.wave_min;
  ts->wave_max = o.wave_max;
  ts->margin_kms = o.margin_kms;

  // Resolution: the data must be at least as broad as the templates inside the window.
  double worst = -1, worst_l = 0;
  double min_instr = 1e30;
  for (int i = 0; i <= 200; ++i) {
    const double l = o.wave_min + (o.wave_max - o.wave_min) * i / 200.0;
    const double d = ft(l) - fd(l);
    if (d > worst) {
      worst = d;
      worst_l = l;
    }
    min_instr = std::min(min_instr, fd(l) / spectral::kFwhmToSigma / l * kC);
  }
  const double lc = 0.5 * (o.wave_min + o.wave_max);
  ts->instr_sigma_kms = fd(lc) / spectral::kFwhmToSigma / lc * kC;
  if (worst > 1e-6) {
    if (!o.allow_coarser)
      return Status::Error("templates '" + name + "' have FWHM " + Fmt(ft(worst_l)) + " A at " + Fmt(worst_l, 5) +
                           " A, coarser than the data's LSF there (" + Fmt(fd(worst_l)) + " A in the rest frame; " +
                           o.data_lsf.description() +
                           "): their lines are broader than the data's instrumental profile, so sigma would come "
                           "out too low. Use templates at a finer resolution (MILES, E-MILES: 2.51 A), or allow "
                           "coarser templates (kinematics.fit: coarser_templates: flag) to fit anyway with a "
                           "quadrature correction and every bin flagged");
    ts->coarser = true;
    const double d2 = ft(lc) * ft(lc) - fd(lc) * fd(lc);
    ts->deficit_sigma_kms = d2 > 0 ? std::sqrt(d2) / spectral::kFwhmToSigma / lc * kC : 0.0;
  }

  double vs = o.velscale;
  if (!(vs > 0)) vs = std::min(0.5 * min_instr, 40.0);
  ts->velscale = vs;
  const double dln = vs / kC;

  // Coverage: window +- margin, plus room for the LSF-matching convolution.
  const double lo = o.wave_min * std::exp(-o.margin_kms / kC), hi = o.wave_max * std::exp(o.margin_kms / kC);
  // The matching Gaussian: the quadrature difference of the two LSFs, less the variance that the
  // flux-conserving rebinning onto the log grid adds (a box of one log pixel, (lambda dln)^2 / 12),
  // so that the prepared templates have the data's resolution and not one log pixel more.
  auto conv_sigma = [&](double l) {
    const double a = fd(l), b = ft(l);
    const double var = (a * a - b * b) / (spectral::kFwhmToSigma * spectral::kFwhmToSigma) - (l * dln) * (l * dln) / 12.0;
    return var > 0 ? std::sqrt(var) : 0.0;
  };
  double max_s = 0;
  for (int i = 0; i <= 200; ++i) max_s = std::max(max_s, conv_sigma(lo + (hi - lo) * i / 200.0));
  const double step = (grid.wave.back() - grid.wave.front()) / static_cast<double>(grid.n_wave() - 1);
  const double pad = 5.0 * max_s + 2.0 * step;
  if (grid.wave.front() > lo - pad || grid.wave.back() < hi + pad) {
    const double ok_lo = (grid.wave.front() + pad) * std::exp(o.margin_kms / kC);
    const double ok_hi = (grid.wave.back() - pad) * std::exp(-o.margin_kms / kC);
    std::string hint = ok_hi > ok_lo ? "keep wave_min/wave_max within " + Fmt(ok_lo, 5) + "-" + Fmt(ok_hi, 5) +
                                           " A (rest frame), reduce the velocity/sigma bounds, or use a library "
                                           "that covers the window"
                                     : "use a library that covers the window";
    return Status::Error("templates '" + name + "' cover " + Fmt(grid.wave.front(), 5) + "-" +
                         Fmt(grid.wave.back(), 5) + " A, but the fit window " + Fmt(o.wave_min, 5) + "-" +
                         Fmt(o.wave_max, 5) + " A (rest frame) needs " + Fmt(lo - pad, 5) + "-" + Fmt(hi + pad, 5) +
                         " A with the velocity margin of +-" + Fmt(o.margin_kms) + " km/s; " + hint);
  }

  // Native sub-range and the LSF-matching convolution (one operator for every template).
  const auto first = std::lower_bound(grid.wave.begin(), grid.wave.end(), lo - pad) - grid.wave.begin();
  const auto last = std::upper_bound(grid.wave.begin(), grid.wave.end(), hi + pad) - grid.wave.begin();
  const size_t i0 = static_cast<size_t>(std::max<std::ptrdiff_t>(first - 1, 0));
  const size_t i1 = std::min(static_cast<size_t>(last + 1), grid.n_wave());
  std::vector<double> wave(grid.wave.begin() + static_cast<std::ptrdiff_t>(i0), grid.wave.begin() + static_cast<std::ptrdiff_t>(i1));
  const std::vector<double> native_edges = spectral::EdgesFromCentres(wave);
  const auto broaden = spectral::GaussianBroadener::FromSigma(wave, conv_sigma);

  // Log grid.
  ts->ln_lambda0 = std::log(lo);
  ts->npix = static_cast<int64_t>(std::ceil((std::log(hi) - ts->ln_lambda0) / dln)) + 1;
  std::vector<double> log_edges(static_cast<size_t>(ts->npix + 1));
  for (size_t t = 0; t < log_edges.size(); ++t)
    log_edges[t] = std::exp(ts->ln_lambda0 + (static_cast<double>(t) - 0.5) * dln);
  if (log_edges.front() < native_edges.front() || log_edges.back() > native_edges.back())
    return Status::Error("internal: template log grid outside the library range");
  std::vector<int64_t> in_window;
  for (int64_t t = 0; t < ts->npix; ++t) {
    const double l = std::exp(ts->ln_lambda0 + static_cast<double>(t) * dln);
    if (l >= o.wave_min && l <= o.wave_max) in_window.push_back(t);
  }

  const size_t nt = grid.n_age() * grid.n_metal();
  ts->flux.resize(ts->npix, static_cast<Eigen::Index>(nt));
  std::vector<double> native(wave.size()), conv(wave.size()), out(static_cast<size_t>(ts->npix));
  size_t j = 0;
  for (size_t im = 0; im < grid.n_metal(); ++im) {
    for (size_t ia = 0; ia < grid.n_age(); ++ia, ++j) {
      const float* s = grid.Spectrum(im, ia) + i0;
      for (size_t i = 0; i < wave.size(); ++i) native[i] = s[i];
      broaden.Apply(native, conv);
      spectral::ResampleEdges(native_edges, conv, {}, log_edges, out, {});
      double mean = 0;
      for (int64_t t : in_window) mean += out[static_cast<size_t>(t)];
      mean /= std::max<size_t>(in_window.size(), 1);
      if (!(mean > 0) || !std::isfinite(mean))
        return Status::Error("template " + std::to_string(j) + " of '" + name + "' (log age " + Fmt(grid.log_age[ia]) +
                             ", [M/H] " + Fmt(grid.metal[im]) + ") has no positive flux in the fit window " +
                             Fmt(o.wave_min, 5) + "-" + Fmt(o.wave_max, 5) + " A");
      for (int64_t t = 0; t < ts->npix; ++t)
        ts->flux(t, static_cast<Eigen::Index>(j)) = static_cast<float>(out[static_cast<size_t>(t)] / mean);
      ts->log_age.push_back(grid.log_age[ia]);
      ts->metal.push_back(grid.metal[im]);
    }
  }
  return std::shared_ptr<const TemplateSet>(std::move(ts));
}

}  // namespace cubeflow::kinematics
