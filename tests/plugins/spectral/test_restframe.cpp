// Tests of spectral.restframe, built through its NodeSpec factory and driven through
// cubeflow::testing::FakeContext.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/spec.hpp"
#include "cubeflow/status.hpp"
#include "cubeflow/testing/fake_context.hpp"
#include "node_test_util.hpp"
#include "spectral_nodes.hpp"

namespace {

using namespace cubeflow;
using cubeflow::testing::FakeContext;

constexpr double kC = 299792.458;
constexpr double kF2S = 2.3548200450309493;

/// Registry with the node; builds nodes with defaults + overrides.
struct Fixture {
  Registry reg;
  Fixture() { cubeflow::spectral::RegisterRestframe(reg); }
  std::unique_ptr<Node> Make(std::map<std::string, Value> overrides = {}) {
    const NodeSpec* s = reg.Find("spectral.restframe");
    EXPECT_NE(s, nullptr);
    return cubeflow::testing::MakeNode(*s, overrides);
  }
};

/// Observed MUSE-like axis 4700-9350 A, 1.25 A pixels.
WavelengthAxis ObsAxis() { return WavelengthAxis::Linear(4700.0, 1.25, 3721); }

/// Pixel-integrated (mean over the pixel) of 1 - depth * Gaussian(centre, sigma).
double PixelLine(double a, double b, double centre, double sigma, double depth) {
  const double s2 = sigma * std::sqrt(2.0);
  const double integ = 0.5 * (std::erf((b - centre) / s2) - std::erf((a - centre) / s2)) *
                       sigma * std::sqrt(2.0 * M_PI);
  return 1.0 - depth * integ / (b - a);
}

std::shared_ptr<Spectrum> FlatSpectrum(double level, double var = 0.01) {
  auto s = std::make_shared<Spectrum>();
  s->id = 7;
  s->wave = ObsAxis();
  s->flux.assign(static_cast<size_t>(s->wave.n), level);
  s->variance.assign(s->flux.size(), var);
  s->mask.assign(s->flux.size(), 0);
  s->meta = {{"x", 3.0}, {"y", 4.0}, {"nspax", 1.0}, {"snr", 50.0}};
  return s;
}

std::shared_ptr<const Spectrum> RunNode(Node& node, std::shared_ptr<const Spectrum> in,
                                    FakeContext ctx = FakeContext()) {
  ctx.AddItem(in->id, {{"spectra", in}});
  node.Process(ctx);
  EXPECT_EQ(ctx.emissions().size(), 1u);
  EXPECT_EQ(ctx.emissions().at(0).port, "spectra");
  auto out = std::dynamic_pointer_cast<const Spectrum>(ctx.emissions().at(0).data);
  EXPECT_TRUE(out);
  return out;
}

double LsfFwhm(double l) {
  if (l <= 4800) return 2.9;
  if (l >= 6500) return 2.4;
  return 2.9 + (l - 4800) / 1700 * (2.4 - 2.9);
}

/// Bacon et al. (2017) eq. 8, written out independently of cubeflow::spectral::MuseLsfFwhm.
double BaconFwhm(double l) { return 5.866e-8 * l * l - 9.187e-4 * l + 6.040; }

// (1) A line of known intrinsic width at a known velocity ends at its rest wavelength with a
// total dispersion of sigma_target, for either instrumental-resolution model (`lsf`).
TEST(Restframe, LineCentredAndBroadenedToTarget) {
  for (const std::string lsf : {"linear", "bacon2017"})
  for (const double lrest : {5175.0, 6000.0, 6800.0}) {
    Fixture f;
    const double z = 0.02, v = 250.0, sig_gal = 80.0;
    // With bacon2017 the linear model's parameters must be ignored: set them far off.
    auto node = lsf == "linear"
                    ? f.Make({{"z_sys", z}, {"velocity", v}, {"dispersion", sig_gal}})
                    : f.Make({{"z_sys", z}, {"velocity", v}, {"dispersion", sig_gal}, {"lsf", lsf},
                              {"lsf_fwhm_blue", 0.1}, {"lsf_fwhm_red", 0.1}});
    const double dop = (1 + z) * (1 + v / kC);
    const double lobs = lrest * dop;
    const double fwhm = lsf == "linear" ? LsfFwhm(lobs) : BaconFwhm(lobs);
    const double s_gal = lobs * sig_gal / kC, s_ins = fwhm / kF2S;
    const double s_obs = std::sqrt(s_gal * s_gal + s_ins * s_ins);
    auto in = FlatSpectrum(1.0);
    for (int64_t i = 0; i < in->wave.n; ++i) {
      const double c = in->wave.At(i);
      in->flux[static_cast<size_t>(i)] = PixelLine(c - 0.625, c + 0.625, lobs, s_obs, 0.5);
    }
    auto out = RunNode(*node, in);
    ASSERT_TRUE(out->rest_frame);
    EXPECT_EQ(out->quality & kQualBroaderThanTarget, 0u);
    EXPECT_NEAR(out->meta.at("velocity"), v, 1e-12);
    EXPECT_NEAR(out->meta.at("dispersion"), sig_gal, 1e-12);
    // Moments of the absorption (continuum is 1 after normalisation) within +-6 sigma.
    const double s_exp = lrest * 150.0 / kC;
    double sw = 0, sx = 0, sxx = 0;
    for (int64_t j = 0; j < out->wave.n; ++j) {
      const double l = out->wave.At(j);
      if (std::abs(l - lrest) > 6 * s_exp) continue;
      const double d = 1.0 - out->flux[static_cast<size_t>(j)];
      sw += d;
      sx += d * l;
      sxx += d * l * l;
    }
    const double centre = sx / sw;
    const double var = sxx / sw - centre * centre;
    // Measured: 0.0035-0.0105 pixel; 2x.
    EXPECT_NEAR(centre, lrest, 0.02 * 1.25) << "line at " << lrest << ", lsf " << lsf;
    // Pixelisation adds box variances: the observed pixel integration and its step-function
    // representation (2 x (1.25/dop)^2/12, rest frame) and the output pixel (1.25^2/12).
    const double pix = 2 * std::pow(1.25 / dop, 2) / 12 + 1.25 * 1.25 / 12;
    const double sigma_kms = std::sqrt(var - pix) / lrest * kC;
    // Issue #4: 150 km/s within 2 % (measured: 148.74-150.88 km/s, i.e. within 0.85 %).
    EXPECT_NEAR(sigma_kms, 150.0, 0.02 * 150.0) << "line at " << lrest << ", lsf " << lsf;
    std::printf("lsf %s, line %.0f A: centre offset %.4f px, sigma %.2f km/s (pixel-corrected), %.2f raw\n",
                lsf.c_str(), lrest, (centre - lrest) / 1.25, sigma_kms, std::sqrt(var) / lrest * kC);
    // Without the correction it would still be within 4 % (measured 151.9-155.05 km/s).
    EXPECT_NEAR(std::sqrt(var) / lrest * kC, 150.0, 0.04 * 150.0);
  }
}

// (2) Flux conservation: the integral of the rebinned spectrum (norm undone) equals the
// integral of the input step function over the same rest-frame range. No broadening
// (sigma_target 0, which flags the spectrum but leaves it unchanged).
TEST(Restframe, RebinningConservesFlux) {
  Fixture f;
  const double z = 0.013, v = -120.0;
  auto node = f.Make({{"z_sys", z}, {"velocity", v}, {"sigma_target", 0.0}});
  auto in = FlatSpectrum(1.0);
  uint64_t state = 12345;
  for (auto& x : in->flux) {  // positive, wiggly spectrum
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    x = 2.0 + static_cast<double>(state >> 40) / static_cast<double>(1ull << 24);
  }
  auto out = RunNode(*node, in);
  EXPECT_NE(out->quality & kQualBroaderThanTarget, 0u);
  const double dop = (1 + z) * (1 + v / kC);
  // Output range [4799.375, 7000.625]; integrate the input step function over it.
  const double a = 4800.0 - 0.625, b = 4800.0 + 1760 * 1.25 + 0.625;
  double in_int = 0;
  for (int64_t i = 0; i < in->wave.n; ++i) {
    const double lo = (in->wave.At(i) - 0.625) / dop, hi = (in->wave.At(i) + 0.625) / dop;
    const double ov = std::min(hi, b) - std::max(lo, a);
    if (ov > 0) in_int += ov * in->flux[static_cast<size_t>(i)];
  }
  double out_int = 0;
  for (size_t j = 0; j < out->flux.size(); ++j) {
    EXPECT_EQ(out->mask[j], 0) << j;
    out_int += out->flux[j] * out->norm * 1.25;
  }
  EXPECT_NEAR(out_int / in_int, 1.0, 1e-12);
  // A flat spectrum stays flat at its level: the norm is the level, the flux is 1.
  auto flat = FlatSpectrum(3.0);
  auto node2 = f.Make({{"z_sys", z}, {"velocity", v}});
  auto out2 = RunNode(*node2, flat);
  EXPECT_NEAR(out2->norm, 3.0, 1e-12);
  for (double x : out2->flux) EXPECT_NEAR(x, 1.0, 1e-12);
}

// The propagated variance is the noise the output really has: many noise realisations of a flat
// spectrum through rebinning + broadening (where the rebinned pixels share input pixels, so their
// marginal variances alone would understate the broadened noise by ~1.5x) and through rebinning
// alone.
TEST(Restframe, PropagatedVarianceMatchesNoiseRealisations) {
  Fixture f;
  const double z = 0.0113, v = 37.0;
  for (const double target : {150.0, 0.0}) {
    auto node = f.Make({{"z_sys", z}, {"velocity", v}, {"dispersion", 40.0}, {"sigma_target", target}});
    const int kReal = 400;
    std::vector<double> sum, sum2, var_prop;
    uint64_t state = 99;
    auto gauss = [&] {  // Box-Muller on a 64-bit LCG
      auto u = [&] {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return (static_cast<double>(state >> 11) + 0.5) / 9007199254740992.0;
      };
      return std::sqrt(-2.0 * std::log(u())) * std::cos(2.0 * M_PI * u());
    };
    for (int r = 0; r < kReal; ++r) {
      auto in = FlatSpectrum(10.0, 1.0);
      for (auto& x : in->flux) x += gauss();
      auto out = RunNode(*node, in);
      if (sum.empty()) {
        sum.assign(out->flux.size(), 0.0);
        sum2.assign(out->flux.size(), 0.0);
        var_prop.assign(out->flux.size(), 0.0);
      }
      for (size_t j = 0; j < out->flux.size(); ++j) {
        const double y = out->flux[j] * out->norm;  // un-normalised: the norm's own noise aside
        sum[j] += y;
        sum2[j] += y * y;
        var_prop[j] += out->variance[j] * out->norm * out->norm / kReal;
      }
    }
    double ratio = 0;
    int n = 0;
    for (size_t j = 40; j + 40 < sum.size(); ++j) {
      const double mean = sum[j] / kReal;
      const double emp = (sum2[j] - kReal * mean * mean) / (kReal - 1);
      ratio += emp / var_prop[j];
      ++n;
    }
    ratio /= n;
    std::printf("sigma_target %.0f km/s: empirical / propagated variance %.5f\n", target, ratio);
    // ~1700 pixels x 400 realisations, correlated over the kernel. Over 60 other seeds the ratio
    // has mean 0.9995 and standard deviation 0.0037 (sigma_target 150) and 1.0000 and 0.0019
    // (no broadening); this seed: 0.9947 and 0.9976. Bounds: 4 standard deviations.
    EXPECT_NEAR(ratio, 1.0, target > 0 ? 0.015 : 0.008) << "sigma_target " << target;
  }
}

// (3) The mean in the normalisation window is 1 afterwards; norm multiplies; variance scales.
TEST(Restframe, NormalisationWindowMeanIsOne) {
  Fixture f;
  auto node = f.Make({{"z_sys", 0.01}});
  auto in = FlatSpectrum(1.0, 0.04);
  in->norm = 2.0;
  for (int64_t i = 0; i < in->wave.n; ++i)  // sloped continuum with a line in the window
    in->flux[static_cast<size_t>(i)] = 5.0 + 1e-3 * (in->wave.At(i) - 5000.0) -
                                       2.0 * std::exp(-0.5 * std::pow((in->wave.At(i) - 5450.0) / 3.0, 2));
  auto out = RunNode(*node, in);
  double sum = 0;
  int n = 0;
  for (int64_t j = 0; j < out->wave.n; ++j) {
    const double l = out->wave.At(j);
    if (l < 5300 || l > 5500 || out->mask[static_cast<size_t>(j)]) continue;
    sum += out->flux[static_cast<size_t>(j)];
    ++n;
  }
  ASSERT_GT(n, 100);
  EXPECT_NEAR(sum / n, 1.0, 1e-12);
  const double factor = out->norm / 2.0;
  // The rest-frame flux density is the observed one at lambda (1 + z): the window's mean is the
  // continuum at its centre, 5 + 1e-3 (5400 (1 + z) - 5000), less the line's integral
  // 2 x 3 sqrt(2 pi) A (observed), i.e. / (1 + z) in rest-frame A, spread over the n pixels.
  const double expect = 5.0 + 1e-3 * (5400.0 * 1.01 - 5000.0) - 6.0 * std::sqrt(2 * M_PI) / 1.01 / (n * 1.25);
  std::printf("normalisation factor %.7f, expected %.7f\n", factor, expect);
  EXPECT_NEAR(factor / expect, 1.0, 3e-7);  // measured 1.5e-7; 2x
  EXPECT_DOUBLE_EQ(out->meta.at("norm"), out->norm);
  // Variance: rebinning + broadening shrink it by sum w^2 <= 1, then / factor^2.
  const double v_mid = out->variance[1000];
  EXPECT_GT(v_mid, 0.0);
  EXPECT_LE(v_mid, 0.04 / (factor * factor) * (1 + 1e-9));
  // Scaling the input (flux x 3, variance x 9) changes only the norm: variance / factor^2.
  auto in3 = std::make_shared<Spectrum>(*in);
  for (auto& x : in3->flux) x *= 3.0;
  for (auto& x : in3->variance) x *= 9.0;
  auto out3 = RunNode(*node, in3);
  EXPECT_NEAR(out3->norm / out->norm, 3.0, 1e-12);
  for (size_t j = 0; j < out->variance.size(); ++j) {
    EXPECT_NEAR(out3->variance[j], out->variance[j], 1e-12 * out->variance[j]) << j;
    EXPECT_NEAR(out3->flux[j], out->flux[j], 1e-12) << j;
  }
}

// (4) A bin with more intrinsic dispersion than the target allows is flagged, not passed.
TEST(Restframe, BroaderThanTargetIsFlagged) {
  Fixture f;
  // At 4800 A the LSF alone is ~77 km/s; sqrt(140^2 + 77^2) = 160 > 150.
  auto wide = RunNode(*f.Make({{"dispersion", 140.0}}), FlatSpectrum(1.0));
  EXPECT_NE(wide->quality & kQualBroaderThanTarget, 0u);
  EXPECT_GT(wide->meta.at("sigma_excess"), 5.0);
  auto narrow = RunNode(*f.Make({{"dispersion", 60.0}}), FlatSpectrum(1.0));
  EXPECT_EQ(narrow->quality & kQualBroaderThanTarget, 0u);
  EXPECT_EQ(narrow->meta.count("sigma_excess"), 0u);
  // A target below the instrument is flagged even without intrinsic dispersion.
  auto tiny = RunNode(*f.Make({{"sigma_target", 40.0}}), FlatSpectrum(1.0));
  EXPECT_NE(tiny->quality & kQualBroaderThanTarget, 0u);
}

// (5) NaN and masked input pixels, and uncovered output pixels, end up in the mask.
TEST(Restframe, BadPixelsPropagateToMask) {
  Fixture f;
  const double z = 0.0;
  auto node = f.Make({{"z_sys", z}});
  auto in = FlatSpectrum(2.0);
  // Observed 4700 + 1.25 i: pixel 400 is at 5200 A (rest = obs with z = 0, v = 0).
  in->flux[400] = std::nan("");
  in->mask[800] = 1;      // 5700 A
  in->variance[1200] = std::nan("");  // 6200 A
  auto out = RunNode(*node, in);
  auto masked = [&](double l) { return out->mask[static_cast<size_t>(out->wave.PixelOf(l) + 0.5)]; };
  EXPECT_EQ(masked(5200.0), 1);
  EXPECT_EQ(masked(5700.0), 1);
  EXPECT_EQ(masked(6200.0), 1);
  EXPECT_EQ(masked(5202.5), 0);
  EXPECT_EQ(masked(5197.5), 0);
  EXPECT_EQ(masked(6000.0), 0);
  for (double x : out->flux) EXPECT_TRUE(std::isfinite(x));
  for (double x : out->variance) EXPECT_TRUE(std::isfinite(x));
  // Filled pixels do not disturb the neighbours: the flat spectrum stays flat.
  EXPECT_NEAR(out->flux[static_cast<size_t>(out->wave.PixelOf(5205.0))], 1.0, 1e-12);

  // Partial coverage: an observed spectrum starting at 5000 A leaves 4800-5000 uncovered.
  auto part = FlatSpectrum(2.0);
  part->wave = WavelengthAxis::Linear(5000.0, 1.25, 3000);
  part->flux.resize(3000);
  part->variance.resize(3000);
  part->mask.resize(3000);
  auto out2 = RunNode(*node, part);
  EXPECT_EQ(out2->mask[0], 1);
  EXPECT_EQ(out2->mask[static_cast<size_t>(out2->wave.PixelOf(4999.0))], 1);
  EXPECT_EQ(out2->mask[static_cast<size_t>(out2->wave.PixelOf(5010.0))], 0);
}

// Kinematics from maps: light-weighted over the bin's spaxels, with the velocity spread.
TEST(Restframe, KinematicsFromMapsAndBinning) {
  Fixture f;
  auto node = f.Make();
  auto mk = [](std::vector<double> d) {
    auto m = std::make_shared<Map>();
    m->nx = 4;
    m->ny = 3;
    m->data = std::move(d);
    return m;
  };
  std::vector<double> v(12, 999.0), s(12, 999.0), w(12, 1.0);
  v[1] = 100; v[6] = 300; s[1] = 50; s[6] = 50; w[1] = 1; w[6] = 3;
  v[11] = 40; s[11] = 70;  // spaxel (3, 2), for the nearest-spaxel lookup
  auto bins = std::make_shared<Binning>();
  bins->nx = 4;
  bins->ny = 3;
  bins->bins.resize(8);
  bins->bins[7].spaxels = {1, 6};
  FakeContext ctx;
  ctx.SetInput("velocity", mk(v));
  ctx.SetInput("dispersion", mk(s));
  ctx.SetInput("weights", mk(w));
  ctx.SetInput("binning", bins);
  auto out = RunNode(*node, FlatSpectrum(1.0), ctx);
  EXPECT_NEAR(out->meta.at("velocity"), 250.0, 1e-9);
  // <sigma^2> = 2500, velocity variance = 70000 - 62500 = 7500 -> 100 km/s.
  EXPECT_NEAR(out->meta.at("dispersion"), 100.0, 1e-9);
  // Without binning: the spaxel nearest meta x, y.
  FakeContext ctx2;
  ctx2.SetInput("velocity", mk(v));
  ctx2.SetInput("dispersion", mk(s));
  auto sp = FlatSpectrum(1.0);
  sp->meta["x"] = 2.6;
  sp->meta["y"] = 2.2;
  auto out2 = RunNode(*node, sp, ctx2);
  EXPECT_NEAR(out2->meta.at("velocity"), 40.0, 1e-12);
  EXPECT_NEAR(out2->meta.at("dispersion"), 70.0, 1e-12);
}

// Failure to normalise names the bin.
TEST(Restframe, EmptyNormalisationWindowThrowsNamingBin) {
  Fixture f;
  auto node = f.Make();
  auto in = FlatSpectrum(1.0);
  for (int64_t i = 0; i < in->wave.n; ++i)
    if (in->wave.At(i) > 5290 && in->wave.At(i) < 5510) in->mask[static_cast<size_t>(i)] = 1;
  FakeContext ctx;
  ctx.AddItem(7, {{"spectra", in}});
  try {
    node->Process(ctx);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bin 7"), std::string::npos) << e.what();
  }
  auto neg = FlatSpectrum(-1.0);
  ctx.ClearItems();
  ctx.AddItem(7, {{"spectra", neg}});
  EXPECT_THROW(node->Process(ctx), Error);
}

TEST(Restframe, SpecDocumentsEveryParam) {
  Fixture f;
  const NodeSpec* s = f.reg.Find("spectral.restframe");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->concurrency(), Concurrency::kParallel);
  for (const auto& p : s->params()) EXPECT_FALSE(p.doc().empty()) << p.name();
  EXPECT_THROW(f.Make({{"norm_min", 6000.0}, {"norm_max", 5000.0}}), Error);
}

// Cross-parameter faults are found before the run (`cubeflow validate`, and the factory), each
// on the parameter at fault.
TEST(Restframe, CrossParameterFaultsAreReportedOnTheirParameter) {
  Fixture f;
  const NodeSpec& s = *f.reg.Find("spectral.restframe");
  auto issues = [&](const std::map<std::string, Value>& given) {
    return s.RunChecks(cubeflow::testing::DefaultParams(s, given)).issues();
  };
  auto reversed = issues({{"norm_min", 6000.0}, {"norm_max", 5000.0}});
  ASSERT_EQ(reversed.size(), 1u);
  EXPECT_EQ(reversed[0].param, "norm_max");
  EXPECT_EQ(reversed[0].message,
            "must be above norm_min (6000 Angstrom), got 5000: the normalisation window [norm_min, norm_max] is "
            "empty; set norm_min < norm_max");
  auto beyond = issues({{"norm_min", 7100.0}, {"norm_max", 7200.0}});  // the grid is 4800-7000
  ASSERT_EQ(beyond.size(), 1u);
  EXPECT_EQ(beyond[0].param, "norm_min");
  EXPECT_EQ(beyond[0].message,
            "7100 Angstrom lies beyond the end of the output grid (4800-7000 Angstrom); the normalisation "
            "window [norm_min, norm_max] must overlap it: change norm_min/norm_max or wave_start/wave_step/wave_n");
  auto before = issues({{"norm_min", 4000.0}, {"norm_max", 4500.0}});
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0].param, "norm_max");
  // Moving the grid instead makes the same window valid.
  EXPECT_TRUE(issues({{"norm_min", 4000.0}, {"norm_max", 4500.0}, {"wave_start", 3900.0}}).empty());
  EXPECT_TRUE(issues({{"norm_min", 6900.0}, {"norm_max", 7100.0}}).empty());  // partial overlap is enough
  auto lsf = issues({{"lsf_wave_blue", 6500.0}, {"lsf_wave_red", 4800.0}});
  ASSERT_EQ(lsf.size(), 1u);
  EXPECT_EQ(lsf[0].param, "lsf_wave_red");
  EXPECT_EQ(cftest::BuildError(s, {{"lsf_wave_red", 4000.0}}),
            "lsf_wave_red: must be above lsf_wave_blue (4800 Angstrom), got 4000: the instrumental FWHM is "
            "interpolated from lsf_wave_blue to lsf_wave_red; set lsf_wave_blue < lsf_wave_red");
  EXPECT_EQ(cftest::BuildError(s, {}), "");
}

}  // namespace
