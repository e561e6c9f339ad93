// Mock spectra with a known LOSVD. See mock.hpp.
#include "cubeflow/kinematics/mock.hpp"

#include <cmath>
#include <limits>

#include "cubeflow/kinematics/losvd.hpp"
#include "cubeflow/spectral/spectral_ops.hpp"

namespace cubeflow::kinematics {

namespace {
constexpr double kFineKms = 5.0;  // velocity step of the fine grid
}

MockMaker::MockMaker(const sim::SspGrid& grid, const spectral::Lsf& data_lsf, double z, std::vector<size_t> ssp_index,
                     double obs_lo, double obs_hi, double obs_step)
    : z_(z) {
  using namespace spectral;
  const double rlo = obs_lo / (1 + z) * 0.96, rhi = obs_hi / (1 + z) * 1.04;
  size_t i0 = 0, i1 = grid.n_wave();
  while (i0 < grid.n_wave() && grid.wave[i0] < rlo - 20) ++i0;
  while (i1 > 0 && grid.wave[i1 - 1] > rhi + 20) --i1;
  std::vector<double> wave(grid.wave.begin() + static_cast<std::ptrdiff_t>(i0), grid.wave.begin() + static_cast<std::ptrdiff_t>(i1));
  auto sig = [&](double l) {  // LSF matching, rest frame
    const double a = data_lsf.Fwhm(l * (1 + z)) / (1 + z), b = grid.fwhm;
    return a > b ? std::sqrt(a * a - b * b) / kFwhmToSigma : 0.0;
  };
  const auto broaden = GaussianBroadener::FromSigma(wave, sig);
  const std::vector<double> native_edges = EdgesFromCentres(wave);
  const double dln = kFineKms / kSpeedOfLightKms;
  const double l0 = std::log(rlo);
  nfine_ = static_cast<int>((std::log(rhi) - l0) / dln);
  fine_edges_.resize(static_cast<size_t>(nfine_ + 1));
  for (int i = 0; i <= nfine_; ++i) fine_edges_[static_cast<size_t>(i)] = std::exp(l0 + (i - 0.5) * dln);
  for (size_t idx : ssp_index) {
    const size_t im = idx / grid.n_age(), ia = idx % grid.n_age();
    const float* s = grid.Spectrum(im, ia) + i0;
    std::vector<double> nat(wave.size()), conv(wave.size()), fine(static_cast<size_t>(nfine_));
    for (size_t i = 0; i < wave.size(); ++i) nat[i] = s[i];
    broaden.Apply(nat, conv);
    ResampleEdges(native_edges, conv, {}, fine_edges_, fine, {});
    double m = 0;
    for (double v : fine) m += v;
    for (double& v : fine) v /= m / static_cast<double>(fine.size());
    ssp_.push_back(std::move(fine));
  }
  for (double l = obs_lo; l <= obs_hi + 1e-9; l += obs_step) obs_edges_.push_back(l);
}

MockSpectrum MockMaker::Make(const std::vector<double>& weights, double v, double sigma, double h3, double h4, double snr,
                             std::mt19937_64& rng) const {
  std::vector<double> f(static_cast<size_t>(nfine_), 0.0);
  for (size_t k = 0; k < ssp_.size() && k < weights.size(); ++k)
    for (int i = 0; i < nfine_; ++i) f[static_cast<size_t>(i)] += weights[k] * ssp_[k][static_cast<size_t>(i)];
  // LOSVD on the fine grid: out[i] = sum_j f[i - j] L(j dv) dv.
  LosvdParams p;
  p.moments = 4;
  p.v = v;
  p.sigma = sigma;
  p.h[0] = h3;
  p.h[1] = h4;
  const int reach = static_cast<int>(std::ceil((std::abs(v) + 7 * sigma) / kFineKms)) + 2;
  std::vector<double> ker(static_cast<size_t>(2 * reach + 1));
  for (int j = -reach; j <= reach; ++j) ker[static_cast<size_t>(j + reach)] = LosvdValue(p, j * kFineKms) * kFineKms;
  std::vector<double> out(static_cast<size_t>(nfine_), std::numeric_limits<double>::quiet_NaN());
  for (int i = reach; i < nfine_ - reach; ++i) {
    double s = 0;
    for (int j = -reach; j <= reach; ++j) s += f[static_cast<size_t>(i - j)] * ker[static_cast<size_t>(j + reach)];
    out[static_cast<size_t>(i)] = s;
  }
  // Observed frame and data pixels.
  std::vector<double> obs_fine(fine_edges_.size());
  for (size_t i = 0; i < fine_edges_.size(); ++i) obs_fine[i] = fine_edges_[i] * (1 + z_);
  MockSpectrum m;
  const size_t n = obs_edges_.size() - 1;
  m.flux.resize(n);
  spectral::ResampleEdges(obs_fine, out, {}, obs_edges_, m.flux, {});
  double mean = 0;
  for (double x : m.flux) mean += x;
  mean /= static_cast<double>(n);
  const bool noisy = snr > 0 && std::isfinite(snr);
  const double noise = noisy ? mean / snr : mean * 1e-6;
  std::normal_distribution<double> g(0.0, 1.0);
  m.variance.assign(n, noise * noise);
  if (noisy)
    for (double& x : m.flux) x += noise * g(rng);
  m.edges_rest.resize(n + 1);
  for (size_t i = 0; i <= n; ++i) m.edges_rest[i] = obs_edges_[i] / (1 + z_);
  m.v = v;
  m.sigma = sigma;
  m.h3 = h3;
  m.h4 = h4;
  return m;
}

}  // namespace cubeflow::kinematics
