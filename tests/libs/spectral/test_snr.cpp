// Tests of the S/N estimators (cubeflow/spectral/snr.hpp, stats.hpp): Median, DER_SNR, the
// channel window, both S/N definitions by hand, the errors, and bit-for-bit agreement with the
// two implementations they replace (spectral.snr_map's window sum, binning.voronoi's per-pixel
// median), kept below as frozen references.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/spectral/snr.hpp"
#include "cubeflow/spectral/stats.hpp"
#include "fits_test_util.hpp"
#include "temp_dir.hpp"
#include "test_data.hpp"

namespace cubeflow::spectral {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// --- Frozen references: the code of spectral.snr_map and binning.voronoi before they shared
// ComputeSpaxelSnr (commit 9a2643a), unchanged but for names and the parallel loop. -------------

namespace ref {

double OldMedian(std::vector<double>& v) {
  const size_t n = v.size();
  const size_t h = n / 2;
  std::nth_element(v.begin(), v.begin() + h, v.end());
  const double hi = v[h];
  if (n % 2) return hi;
  return 0.5 * (hi + *std::max_element(v.begin(), v.begin() + h));
}

double DerSnrNoise(const std::vector<double>& f) {
  const size_t n = f.size();
  if (n < 5) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> d;
  d.reserve(n - 4);
  for (size_t i = 2; i + 2 < n; ++i) d.push_back(std::fabs(2.0 * f[i] - f[i - 2] - f[i + 2]));
  const size_t mid = d.size() / 2;
  std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(mid), d.end());
  double med = d[mid];
  if (d.size() % 2 == 0) {
    const double lo = *std::max_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(mid));
    med = 0.5 * (med + lo);
  }
  return 1.482602 / std::sqrt(6.0) * med;
}

/// spectral.snr_map's ComputeSnrMaps: FLUX and SNR data. ok = false where it threw.
struct SnrMapOut {
  bool ok = true;
  int64_t k0 = -1, k1 = -1;
  std::vector<double> flux, snr;
};
SnrMapOut SnrMap(const Cube& cube, double wave_min, double wave_max, bool der_snr) {
  SnrMapOut out;
  const int64_t nspax = cube.nx * cube.ny;
  int64_t k0 = -1, k1 = -1;
  for (int64_t k = 0; k < cube.nwave; ++k) {
    const double w = cube.wave.At(k);
    if (w < wave_min || w > wave_max) continue;
    if (k0 < 0) k0 = k;
    k1 = k;
  }
  if (k0 < 0) {
    out.ok = false;
    return out;
  }
  out.k0 = k0;
  out.k1 = k1;
  out.flux.assign(static_cast<size_t>(nspax), kNaN);
  out.snr.assign(static_cast<size_t>(nspax), kNaN);
  const bool has_mask = !cube.mask.empty();
  const size_t plane = static_cast<size_t>(nspax);
  if (!der_snr) {
    std::vector<double> sf(plane, 0.0), sv(plane, 0.0);
    std::vector<int64_t> n(plane, 0);
    for (int64_t k = k0; k <= k1; ++k) {
      const size_t off = static_cast<size_t>(k) * plane;
      for (size_t s = 0; s < plane; ++s) {
        const float f = cube.flux[off + s], v = cube.variance[off + s];
        if (!std::isfinite(f) || !std::isfinite(v) || !(v > 0)) continue;
        if (has_mask && cube.mask[off + s]) continue;
        sf[s] += f;
        sv[s] += v;
        ++n[s];
      }
    }
    for (size_t s = 0; s < plane; ++s) {
      if (n[s] == 0) continue;
      out.flux[s] = sf[s] / static_cast<double>(n[s]);
      out.snr[s] = sf[s] / std::sqrt(sv[s]);
    }
    return out;
  }
  std::vector<double> spec;
  for (size_t s = 0; s < plane; ++s) {
    spec.clear();
    double sum = 0;
    for (int64_t k = k0; k <= k1; ++k) {
      const size_t i = static_cast<size_t>(k) * plane + s;
      const float f = cube.flux[i];
      if (!std::isfinite(f) || (has_mask && cube.mask[i])) continue;
      spec.push_back(f);
      sum += f;
    }
    if (spec.empty()) continue;
    out.flux[s] = sum / static_cast<double>(spec.size());
    const double noise = DerSnrNoise(spec);
    if (std::isfinite(noise) && noise > 0) out.snr[s] = sum / (noise * std::sqrt(static_cast<double>(spec.size())));
  }
  return out;
}

/// binning.voronoi's ComputeSpaxelSnr. ok = false where it threw.
struct VoronoiOut {
  bool ok = true;
  int64_t k0 = 0, k1 = -1;
  double wave_lo = 0, wave_hi = 0;
  bool clipped = false;
  std::vector<double> signal, noise;
};
VoronoiOut Voronoi(const Cube& cube, double wave_min, double wave_max) {
  VoronoiOut out;
  const size_t nspax = static_cast<size_t>(cube.nx * cube.ny);
  const bool have_var = !cube.variance.empty();
  const bool have_mask = !cube.mask.empty() && cube.mask.size() == cube.flux.size();
  const double p0 = cube.wave.PixelOf(wave_min), p1 = cube.wave.PixelOf(wave_max);
  int64_t k0 = static_cast<int64_t>(std::ceil(std::min(p0, p1) - 1e-9));
  int64_t k1 = static_cast<int64_t>(std::floor(std::max(p0, p1) + 1e-9));
  out.clipped = k0 < 0 || k1 > cube.nwave - 1;
  k0 = std::max<int64_t>(k0, 0);
  k1 = std::min<int64_t>(k1, cube.nwave - 1);
  if (k1 < k0) {
    out.ok = false;
    return out;
  }
  out.k0 = k0;
  out.k1 = k1;
  out.wave_lo = std::min(cube.wave.At(k0), cube.wave.At(k1));
  out.wave_hi = std::max(cube.wave.At(k0), cube.wave.At(k1));
  out.signal.assign(nspax, kNaN);
  out.noise.assign(nspax, kNaN);
  std::vector<double> f, v;
  const size_t plane = nspax;
  for (size_t s = 0; s < nspax; ++s) {
    f.clear();
    v.clear();
    for (int64_t k = k0; k <= k1; ++k) {
      const size_t idx = static_cast<size_t>(k) * plane + s;
      const double fl = cube.flux[idx];
      if (!std::isfinite(fl)) continue;
      if (have_mask && cube.mask[idx]) continue;
      if (have_var) {
        const double va = cube.variance[idx];
        if (!std::isfinite(va) || !(va > 0)) continue;
        v.push_back(va);
      }
      f.push_back(fl);
    }
    if (f.empty()) continue;
    if (have_var) {
      out.noise[s] = std::sqrt(OldMedian(v));
    } else {
      if (f.size() < 5) continue;
      std::vector<double> d;
      d.reserve(f.size());
      for (size_t i = 2; i + 2 < f.size(); ++i) d.push_back(std::abs(2 * f[i] - f[i - 2] - f[i + 2]));
      out.noise[s] = 1.482602 / std::sqrt(6.0) * OldMedian(d);
    }
    out.signal[s] = OldMedian(f);
  }
  return out;
}

}  // namespace ref

// --- helpers -----------------------------------------------------------------------------------

/// Same bits, or both NaN.
bool SameBits(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof a) == 0;
}

/// A cube with everything a window can meet: NaN fluxes, zero / negative / NaN variances,
/// masked pixels, a spaxel without a good pixel, spaxels with fewer than 5 good pixels.
std::shared_ptr<Cube> MessyCube(const WavelengthAxis& axis, int64_t nx, int64_t ny, unsigned seed, bool variance,
                                bool mask) {
  auto c = std::make_shared<Cube>();
  c->nx = nx;
  c->ny = ny;
  c->nwave = axis.n;
  c->wave = axis;
  const size_t n = static_cast<size_t>(nx * ny * axis.n);
  c->flux.resize(n);
  if (variance) c->variance.resize(n);
  if (mask) c->mask.assign(n, 0);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> g(0.0, 1.0);
  for (int64_t k = 0; k < axis.n; ++k)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        const size_t i = static_cast<size_t>(c->Index(x, y, k));
        const double level = 10.0 + x + 3.0 * y + 0.01 * static_cast<double>(k);
        const double sigma = 0.5 + 0.1 * (x + y);
        c->flux[i] = static_cast<float>(level + sigma * g(rng));
        const double r = u(rng);
        if (r < 0.04) c->flux[i] = NAN;
        if (variance) {
          c->variance[i] = static_cast<float>(sigma * sigma * (0.8 + 0.4 * u(rng)));
          if (r > 0.97) c->variance[i] = 0.0f;
          else if (r > 0.95) c->variance[i] = -1.0f;
          else if (r > 0.94) c->variance[i] = NAN;
        }
        if (mask && r > 0.04 && r < 0.07) c->mask[i] = 1;
        if (x == 0 && y == 0) c->flux[i] = NAN;                     // no good pixel at all
        if (x == 1 && y == 0 && k % 50 > 2) c->flux[i] = NAN;        // 3 good pixels in 50
      }
  return c;
}

SnrOptions Options(double wave_min, double wave_max, SnrDefinition def, NoiseSource noise) {
  SnrOptions o;
  o.wave_min = wave_min;
  o.wave_max = wave_max;
  o.definition = def;
  o.noise = noise;
  return o;
}

/// Checks ComputeSpaxelSnr against both references on `cube` over [lo, hi].
void ExpectSameAsBefore(const Cube& cube, double lo, double hi, const std::string& what) {
  SCOPED_TRACE(what + " window " + std::to_string(lo) + "-" + std::to_string(hi));
  const size_t nspax = static_cast<size_t>(cube.nx * cube.ny);
  // spectral.snr_map: window sum, variance (when the cube has one) and DER_SNR.
  for (bool der : {false, true}) {
    if (!der && cube.variance.empty()) continue;
    const ref::SnrMapOut want = ref::SnrMap(cube, lo, hi, der);
    const auto got = ComputeSpaxelSnr(
        cube, Options(lo, hi, SnrDefinition::kWindowSum, der ? NoiseSource::kDerSnr : NoiseSource::kVariance));
    ASSERT_EQ(got.ok(), want.ok) << (got.ok() ? "" : got.status().message());
    if (!want.ok) continue;
    EXPECT_EQ(got->window.k0, want.k0);
    EXPECT_EQ(got->window.k1, want.k1);
    for (size_t s = 0; s < nspax; ++s) {
      EXPECT_TRUE(SameBits(got->mean[s], want.flux[s])) << "FLUX, spaxel " << s << (der ? " der_snr" : " variance");
      EXPECT_TRUE(SameBits(got->snr[s], want.snr[s])) << "SNR, spaxel " << s << (der ? " der_snr" : " variance");
    }
  }
  // binning.voronoi: per-pixel median, noise from the variance or DER_SNR without one. The node
  // bins a spaxel iff signal and noise are finite and noise > 0, with signal / noise as its S/N.
  const ref::VoronoiOut want = ref::Voronoi(cube, lo, hi);
  const auto got = ComputeSpaxelSnr(cube, Options(lo, hi, SnrDefinition::kPixelMedian,
                                                  cube.variance.empty() ? NoiseSource::kDerSnr : NoiseSource::kVariance));
  ASSERT_EQ(got.ok(), want.ok) << (got.ok() ? "" : got.status().message());
  if (!want.ok) return;
  EXPECT_EQ(got->window.k0, want.k0);
  EXPECT_EQ(got->window.k1, want.k1);
  EXPECT_EQ(got->window.clipped, want.clipped);
  EXPECT_TRUE(SameBits(got->window.wave_lo, want.wave_lo));
  EXPECT_TRUE(SameBits(got->window.wave_hi, want.wave_hi));
  for (size_t s = 0; s < nspax; ++s) {
    auto usable = [](double sig, double noi) { return std::isfinite(sig) && std::isfinite(noi) && noi > 0; };
    const bool was = usable(want.signal[s], want.noise[s]);
    ASSERT_EQ(usable(got->signal[s], got->noise[s]), was) << "spaxel " << s;
    if (!was) continue;
    EXPECT_TRUE(SameBits(got->signal[s], want.signal[s])) << "signal, spaxel " << s;
    EXPECT_TRUE(SameBits(got->noise[s], want.noise[s])) << "noise, spaxel " << s;
  }
}

// --- stats.hpp ---------------------------------------------------------------------------------

TEST(Stats, Median) {
  EXPECT_EQ(Median({3.0, 1.0, 2.0}), 2.0);
  EXPECT_EQ(Median({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_EQ(Median({-1.0}), -1.0);
  EXPECT_TRUE(std::isnan(Median({})));
  std::vector<double> v = {5, 3, 9, 1};
  EXPECT_EQ(Median(v), 4.0);
  EXPECT_EQ(v, (std::vector<double>{5, 3, 9, 1}));  // by value: the caller's vector is untouched
}

TEST(Stats, DerSnrRecoversWhiteNoiseAndIgnoresSmoothSignal) {
  std::mt19937 rng(4);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> f(20000);
  for (size_t i = 0; i < f.size(); ++i) f[i] = 100.0 + 0.01 * static_cast<double>(i) + 2.5 * g(rng);
  EXPECT_NEAR(DerSnrNoise(f), 2.5, 0.05);
  std::vector<double> ramp(50);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = 3.0 + 0.5 * static_cast<double>(i);
  EXPECT_EQ(DerSnrNoise(ramp), 0.0);
  EXPECT_TRUE(std::isnan(DerSnrNoise({1, 2, 3, 4})));
  // 5 pixels: one difference, |2 f2 - f0 - f4|.
  EXPECT_DOUBLE_EQ(DerSnrNoise({1, 0, 3, 0, 1}), 1.482602 / std::sqrt(6.0) * 4.0);
}

// --- FindChannelWindow -------------------------------------------------------------------------

TEST(ChannelWindow, InclusiveBoundsClippingAndErrors) {
  const WavelengthAxis a = WavelengthAxis::Linear(5000.0, 1.25, 401);  // 5000 .. 5500
  auto w = FindChannelWindow(a, 5100.0, 5200.0);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->k0, 80);
  EXPECT_EQ(w->k1, 160);
  EXPECT_EQ(w->wave_lo, 5100.0);
  EXPECT_EQ(w->wave_hi, 5200.0);
  EXPECT_FALSE(w->clipped);
  w = FindChannelWindow(a, 5100.1, 5200.1);  // centres strictly inside
  EXPECT_EQ(w->k0, 81);
  EXPECT_EQ(w->k1, 160);
  w = FindChannelWindow(a, 4000.0, 5001.0);
  EXPECT_TRUE(w->clipped);
  EXPECT_EQ(w->k0, 0);
  EXPECT_EQ(w->k1, 0);
  w = FindChannelWindow(a, 5499.0, 9000.0);
  EXPECT_TRUE(w->clipped);
  EXPECT_EQ(w->k1, 400);
  const auto outside = FindChannelWindow(a, 6000.0, 6100.0);
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.status().message(),
            "the window 6000-6100 Angstrom lies outside the cube's wavelength range 5000-5500 Angstrom; move "
            "wave_min/wave_max into that range");
  const auto between = FindChannelWindow(a, 5100.2, 5100.3);  // no pixel centre inside
  EXPECT_FALSE(between.ok());
  const auto reversed = FindChannelWindow(a, 5200.0, 5100.0);
  ASSERT_FALSE(reversed.ok());
  EXPECT_EQ(reversed.status().message(), "wave_max (5100) must be above wave_min (5200) Angstrom");
  EXPECT_FALSE(FindChannelWindow(a, 5100.0, 5100.0).ok());
  EXPECT_FALSE(FindChannelWindow(WavelengthAxis::Linear(5000.0, 1.25, 0), 5100.0, 5200.0).ok());
}

TEST(ChannelWindow, LogAndDescendingAxes) {
  WavelengthAxis lg;  // ln(lambda) = ln(4800) + 1e-4 k
  lg.n = 3000;
  lg.crval = std::log(4800.0);
  lg.cdelt = 1e-4;
  lg.log = true;
  auto w = FindChannelWindow(lg, 5000.0, 5500.0);
  ASSERT_TRUE(w.ok());
  EXPECT_GE(lg.At(w->k0), 5000.0);
  EXPECT_LT(lg.At(w->k0 - 1), 5000.0);
  EXPECT_LE(lg.At(w->k1), 5500.0);
  EXPECT_GT(lg.At(w->k1 + 1), 5500.0);
  w = FindChannelWindow(lg, 0.0, 4900.0);  // a bound at 0 lies before the start of a log axis
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->clipped);
  EXPECT_EQ(w->k0, 0);
  const WavelengthAxis down = WavelengthAxis::Linear(5500.0, -1.25, 401);  // 5500 .. 5000
  w = FindChannelWindow(down, 5100.0, 5200.0);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->k0, 240);
  EXPECT_EQ(w->k1, 320);
  EXPECT_EQ(w->wave_lo, 5100.0);
  EXPECT_EQ(w->wave_hi, 5200.0);
}

// --- ComputeSpaxelSnr --------------------------------------------------------------------------

TEST(SpaxelSnr, BothDefinitionsByHand) {
  // One spaxel, 7 channels of 10 Angstrom; window 5010..5050 = channels 1..5.
  auto c = std::make_shared<Cube>();
  c->nx = c->ny = 1;
  c->nwave = 7;
  c->wave = WavelengthAxis::Linear(5000.0, 10.0, 7);
  c->flux = {100, 1, 2, 9, 4, 5, 100};
  c->variance = {1, 4, 4, 1, 0, 9, 1};  // channel 4 has no usable variance
  auto sum = ComputeSpaxelSnr(*c, Options(5010, 5050, SnrDefinition::kWindowSum, NoiseSource::kVariance));
  ASSERT_TRUE(sum.ok()) << sum.status().message();
  EXPECT_EQ(sum->ngood[0], 4);
  EXPECT_DOUBLE_EQ(sum->signal[0], 17.0);
  EXPECT_DOUBLE_EQ(sum->noise[0], std::sqrt(18.0));
  EXPECT_DOUBLE_EQ(sum->snr[0], 17.0 / std::sqrt(18.0));
  EXPECT_DOUBLE_EQ(sum->mean[0], 17.0 / 4.0);
  auto med = ComputeSpaxelSnr(*c, Options(5010, 5050, SnrDefinition::kPixelMedian, NoiseSource::kVariance));
  ASSERT_TRUE(med.ok());
  EXPECT_DOUBLE_EQ(med->signal[0], 3.5);            // median of 1, 2, 9, 5
  EXPECT_DOUBLE_EQ(med->noise[0], std::sqrt(4.0));  // sqrt(median of 4, 4, 1, 9)
  EXPECT_DOUBLE_EQ(med->snr[0], 1.75);
  // DER_SNR ignores the variance: all 5 channels are good.
  auto der = ComputeSpaxelSnr(*c, Options(5010, 5050, SnrDefinition::kWindowSum, NoiseSource::kDerSnr));
  ASSERT_TRUE(der.ok());
  EXPECT_EQ(der->ngood[0], 5);
  const double n = DerSnrNoise({1, 2, 9, 4, 5});
  EXPECT_DOUBLE_EQ(der->noise[0], n * std::sqrt(5.0));
  EXPECT_DOUBLE_EQ(der->snr[0], 21.0 / (n * std::sqrt(5.0)));
  auto derm = ComputeSpaxelSnr(*c, Options(5010, 5050, SnrDefinition::kPixelMedian, NoiseSource::kDerSnr));
  EXPECT_DOUBLE_EQ(derm->signal[0], 4.0);
  EXPECT_DOUBLE_EQ(derm->noise[0], n);
}

TEST(SpaxelSnr, ErrorsAreStatusesThatSayWhatIsWrong) {
  auto c = MessyCube(WavelengthAxis::Linear(5000.0, 1.25, 100), 3, 2, 1, /*variance=*/false, false);
  auto r = ComputeSpaxelSnr(*c, Options(5000, 5100, SnrDefinition::kWindowSum, NoiseSource::kVariance));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "the cube has no variance; estimate the noise with DER_SNR instead");
  c->flux.pop_back();
  r = ComputeSpaxelSnr(*c, Options(5000, 5100, SnrDefinition::kWindowSum, NoiseSource::kDerSnr));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "the cube's flux has 599 values for 600 voxels");
  Cube empty;
  EXPECT_FALSE(ComputeSpaxelSnr(empty, Options(5000, 5100, SnrDefinition::kWindowSum, NoiseSource::kDerSnr)).ok());
  c = MessyCube(WavelengthAxis::Linear(5000.0, 1.25, 100), 3, 2, 1, true, true);
  c->mask.resize(10);
  EXPECT_FALSE(ComputeSpaxelSnr(*c, Options(5000, 5100, SnrDefinition::kWindowSum, NoiseSource::kVariance)).ok());
  c->mask.clear();
  r = ComputeSpaxelSnr(*c, Options(6000, 6100, SnrDefinition::kPixelMedian, NoiseSource::kVariance));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("outside"), std::string::npos);
}

// --- bit-for-bit agreement with what spectral.snr_map and binning.voronoi computed before ------

TEST(SpaxelSnr, BitIdenticalToBothFormerImplementations) {
  const WavelengthAxis muse = WavelengthAxis::Linear(4750.0, 1.25, 500);  // 4750 .. 5373.75
  for (bool variance : {true, false})
    for (bool mask : {false, true}) {
      const std::string what = std::string(variance ? "variance" : "no variance") + (mask ? ", mask" : "");
      auto c = MessyCube(muse, 9, 7, variance ? 11u : 12u, variance, mask);
      ExpectSameAsBefore(*c, 4800.0, 5300.0, what);  // bounds on pixel centres
      ExpectSameAsBefore(*c, 5000.3, 5100.7, what);  // bounds between centres
      ExpectSameAsBefore(*c, 4700.0, 4800.0, what);  // clipped at the start
      ExpectSameAsBefore(*c, 5300.0, 5500.0, what);  // clipped at the end
      ExpectSameAsBefore(*c, 4750.0, 4752.5, what);  // 3 channels: DER_SNR undefined
      ExpectSameAsBefore(*c, 6000.0, 6100.0, what);  // outside: both were errors
    }
  // 10 Angstrom steps (spectral.snr_map's test cube) and a log-lambda axis.
  auto ten = MessyCube(WavelengthAxis::Linear(5280.0, 10.0, 20), 3, 2, 5u, true, true);
  ExpectSameAsBefore(*ten, 5300.0, 5400.0, "10 A steps");
  WavelengthAxis lg;
  lg.n = 800;
  lg.crval = std::log(4800.0);
  lg.cdelt = 7e-5;
  lg.log = true;
  auto lc = MessyCube(lg, 5, 4, 6u, true, false);
  ExpectSameAsBefore(*lc, 4900.3, 5000.7, "log axis");
}

TEST(SpaxelSnr, BitIdenticalToBothFormerImplementationsOnTheMuseCube) {
  const std::string path = cftest::MuseCubePath();
  if (!std::filesystem::exists(path)) CUBEFLOW_SKIP_WITHOUT_DATA() << "MUSE sub-cube not found: " << path;
  auto cube = fits::ReadCube(path);
  ASSERT_TRUE(cube.ok()) << cube.status().message();
  // The windows of pipelines/quicklook.yaml, binning.voronoi's default (clipped here) and the
  // real-cube binning test.
  ExpectSameAsBefore(**cube, 4800.0, 5300.0, "MUSE");
  ExpectSameAsBefore(**cube, 5300.0, 5500.0, "MUSE");
  ExpectSameAsBefore(**cube, 4750.0, 5370.0, "MUSE");
  Cube no_var = **cube;
  no_var.variance.clear();
  ExpectSameAsBefore(no_var, 4800.0, 5300.0, "MUSE without variance");
}

// Issue #18: a cube kept in its file (LazyCube) is read in blocks of rows of the window's planes;
// every definition gives the same bits as the cube in memory, whatever the block size.
TEST(SpaxelSnr, LazyCubeInBlocksGivesTheSameBitsAsInMemory) {
  cftest::TempDir dir;
  for (bool variance : {true, false}) {
    auto c = MessyCube(WavelengthAxis::Linear(5250.0, 1.25, 300), 9, 7, 3u, variance, true);
    const std::string path = dir.File(variance ? "v.fits" : "n.fits");
    ASSERT_TRUE(fits::WriteCube(path, *c).ok());
    auto mem = fits::ReadCube(path).ValueOrThrow();
    fits::ReadCubeOptions lo;
    lo.lazy_above_bytes = 0;
    auto lazy = fits::ReadCube(path, lo).ValueOrThrow();
    ASSERT_NE(AsLazy(*lazy), nullptr);
    for (SnrDefinition def : {SnrDefinition::kWindowSum, SnrDefinition::kPixelMedian})
      for (NoiseSource noise : {NoiseSource::kVariance, NoiseSource::kDerSnr}) {
        if (noise == NoiseSource::kVariance && !variance) continue;
        SnrOptions o;
        o.wave_min = 5300;
        o.wave_max = 5500;
        o.definition = def;
        o.noise = noise;
        auto a = ComputeSpaxelSnr(*mem, o);
        ASSERT_TRUE(a.ok()) << a.status().message();
        // 1 byte: one row per block; 3 rows; everything in one block.
        for (size_t block : {size_t{1}, size_t{9 * 161 * 9 * 3}, size_t{1} << 30}) {
          auto b = ComputeSpaxelSnr(*lazy, o, block);
          ASSERT_TRUE(b.ok()) << b.status().message();
          const std::string what = "definition " + std::to_string(static_cast<int>(def)) + ", noise " +
                                   std::to_string(static_cast<int>(noise)) + ", block " + std::to_string(block);
          EXPECT_EQ(b->window.k0, a->window.k0);
          EXPECT_EQ(b->window.k1, a->window.k1);
          EXPECT_EQ(b->ngood, a->ngood) << what;
          for (const auto& [x, y] : {std::pair{&a->mean, &b->mean}, std::pair{&a->signal, &b->signal},
                                     std::pair{&a->noise, &b->noise}, std::pair{&a->snr, &b->snr}})
            EXPECT_EQ(std::memcmp(x->data(), y->data(), x->size() * sizeof(double)), 0) << what;
        }
      }
  }
}

}  // namespace
}  // namespace cubeflow::spectral
