// Tests of the Voronoi binning algorithm (cubeflow/binning/voronoi.hpp) on synthetic fields and
// against the nGIST tutorial binning table.

#include <fitsio.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cubeflow/binning/voronoi.hpp"
#include "test_data.hpp"

namespace {

using namespace cubeflow::binning;

std::string DataDir() {
  if (const char* d = std::getenv("CUBEFLOW_DATA_DIR")) return d;
  return CUBEFLOW_TEST_DATA_DIR;
}

struct Field {
  std::vector<double> x, y, s, n;
};

/// Options for these fields, whose points have independent noise: no covariance term (the
/// default covariance_alpha, 1.07, is binning.voronoi's for MUSE cubes).
VoronoiOptions Uncorrelated() {
  VoronoiOptions opt;
  opt.covariance_alpha = 0.0;
  return opt;
}

/// Exponential disc on a size x size grid: S/N ~ 300 at the centre, falling to min_snr at the
/// edge; optional Gaussian noise on the signal. Points with S/N < min_snr are left out.
Field Disc(int size, bool noisy, double min_snr = 1.0, unsigned seed = 7) {
  Field f;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  const double c = 0.5 * (size - 1), rd = size / 20.0, q = 0.75;
  for (int j = 0; j < size; ++j)
    for (int i = 0; i < size; ++i) {
      const double dx = i - c, dy = (j - c) / q;
      const double flux = 1e5 * std::exp(-std::sqrt(dx * dx + dy * dy) / rd);
      const double sigma = std::sqrt(flux + 100.0);
      const double s = flux + (noisy ? sigma * gauss(rng) : 0.0);
      if (s / sigma < min_snr) continue;
      f.x.push_back(i);
      f.y.push_back(j);
      f.s.push_back(s);
      f.n.push_back(sigma);
    }
  return f;
}

/// Per-bin roundness R_max / R_eff - 1 (geometric centroid), bins of >= 3 points.
std::vector<double> Roundness(const Field& f, const VoronoiResult& r) {
  const size_t nb = r.nbins();
  std::vector<double> cx(nb), cy(nb), rmax(nb);
  std::vector<int> cnt(nb);
  for (size_t i = 0; i < f.x.size(); ++i) {
    cx[r.bin[i]] += f.x[i];
    cy[r.bin[i]] += f.y[i];
    ++cnt[r.bin[i]];
  }
  for (size_t k = 0; k < nb; ++k) cx[k] /= cnt[k], cy[k] /= cnt[k];
  for (size_t i = 0; i < f.x.size(); ++i) {
    const int k = r.bin[i];
    rmax[k] = std::max(rmax[k], std::hypot(f.x[i] - cx[k], f.y[i] - cy[k]));
  }
  std::vector<double> out;
  for (size_t k = 0; k < nb; ++k)
    if (cnt[k] >= 3) out.push_back(rmax[k] / std::sqrt(cnt[k] / M_PI) - 1.0);
  return out;
}

/// Checks the invariants every binning must satisfy.
void CheckConsistent(const Field& f, const VoronoiResult& r, const VoronoiOptions& opt) {
  ASSERT_EQ(r.bin.size(), f.x.size());
  const size_t nb = r.nbins();
  ASSERT_GT(nb, 0u);
  std::vector<int64_t> count(nb, 0);
  std::vector<double> sig(nb, 0), var(nb, 0);
  for (size_t i = 0; i < f.x.size(); ++i) {
    ASSERT_GE(r.bin[i], 0) << "point " << i << " not binned";
    ASSERT_LT(r.bin[i], static_cast<int32_t>(nb));
    ++count[r.bin[i]];
    sig[r.bin[i]] += f.s[i];
    var[r.bin[i]] += f.n[i] * f.n[i];
  }
  int64_t total = 0;
  for (size_t k = 0; k < nb; ++k) {
    EXPECT_GT(count[k], 0) << "empty bin " << k;
    EXPECT_EQ(count[k], r.nspax[k]);
    total += r.nspax[k];
    EXPECT_NEAR(r.signal[k], sig[k], 1e-9 * std::abs(sig[k]) + 1e-12);
    const double noise = std::sqrt(var[k]) * (1.0 + opt.covariance_alpha * std::log10(static_cast<double>(count[k])));
    EXPECT_NEAR(r.noise[k], noise, 1e-9 * noise) << "bin " << k;
    EXPECT_NEAR(r.snr[k], sig[k] / noise, 1e-9 * r.snr[k]);
  }
  EXPECT_EQ(total, static_cast<int64_t>(f.x.size()));
}

struct MethodCase {
  VoronoiMethod method;
  const char* name;
};

class VoronoiMethods : public ::testing::TestWithParam<MethodCase> {};

TEST_P(VoronoiMethods, DiscEveryPointInOneCompactBinAtTarget) {
  const Field f = Disc(120, /*noisy=*/false);
  VoronoiOptions opt = Uncorrelated();
  opt.target_snr = 35;
  opt.method = GetParam().method;
  const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  CheckConsistent(f, r, opt);
  EXPECT_DOUBLE_EQ(r.pixel_size, 1.0);  // found from the grid
  const VoronoiQuality q = EvaluateBinning(f.x, f.y, r, opt.target_snr);
  EXPECT_GE(q.min_ratio, 0.8) << "a bin below 0.8 x target";
  EXPECT_LT(q.scatter, 0.10) << "S/N scatter of multi-spaxel bins";
  EXPECT_GT(q.multi_bins, 50);
  // Bins range from single high-S/N spaxels to large outer bins.
  int64_t maxn = 0, singles = 0;
  for (auto n : r.nspax) maxn = std::max(maxn, n), singles += (n == 1);
  EXPECT_GT(singles, 100);
  EXPECT_GT(maxn, 100);
  // Compact: mean roundness small, and (almost) no elongated bins.
  const auto rd = Roundness(f, r);
  double mean = 0;
  int elongated = 0;
  for (double v : rd) mean += v, elongated += (v > 0.6);
  mean /= rd.size();
  EXPECT_LT(mean, 0.25);
  EXPECT_LE(elongated, static_cast<int>(0.03 * rd.size()) + 1);  // a few along the S/N cut
  std::cout << "[ " << GetParam().name << " ] " << f.x.size() << " points, " << r.nbins()
            << " bins, scatter " << 100 * q.scatter << "%, min " << q.min_ratio << ", mean roundness "
            << mean << ", iterations " << r.iterations << "\n";
}

TEST_P(VoronoiMethods, NoisyDiscWithCovarianceCorrection) {
  const Field f = Disc(100, /*noisy=*/true);
  VoronoiOptions opt = Uncorrelated();
  opt.target_snr = 35;
  opt.covariance_alpha = 1.07;
  opt.method = GetParam().method;
  const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  CheckConsistent(f, r, opt);  // noise == sqrt(sum var) * (1 + 1.07 log10 N)
  const VoronoiQuality q = EvaluateBinning(f.x, f.y, r, opt.target_snr);
  EXPECT_GE(q.min_ratio, 0.8);
  EXPECT_LT(q.scatter, 0.12);
  // The correction makes bins bigger than without it.
  VoronoiOptions plain = opt;
  plain.covariance_alpha = 0;
  const VoronoiResult r0 = VoronoiBin(f.x, f.y, f.s, f.n, plain);
  EXPECT_LT(r.nbins(), r0.nbins());
  std::cout << "[ " << GetParam().name << " ] covariance: " << r.nbins() << " bins (vs " << r0.nbins()
            << " without), scatter " << 100 * q.scatter << "%\n";
}

INSTANTIATE_TEST_SUITE_P(Binning, VoronoiMethods,
                         ::testing::Values(MethodCase{VoronoiMethod::kCvt, "cvt"}, MethodCase{VoronoiMethod::kWvt, "wvt"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Voronoi, AccretionOnlyIsValid) {
  const Field f = Disc(80, true);
  VoronoiOptions opt = Uncorrelated();
  opt.target_snr = 50;
  opt.max_iter = 0;
  const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  CheckConsistent(f, r, opt);
  EXPECT_EQ(r.iterations, 0);
  EXPECT_GT(r.accretion_bins, 10);
  EXPECT_GE(EvaluateBinning(f.x, f.y, r, opt.target_snr).min_ratio, 0.8);
}

TEST(Voronoi, HighSnrPointsStayUnbinned) {
  Field f;
  for (int j = 0; j < 10; ++j)
    for (int i = 0; i < 10; ++i) f.x.push_back(i), f.y.push_back(j), f.s.push_back(100), f.n.push_back(1);
  VoronoiOptions opt = Uncorrelated();
  opt.target_snr = 20;
  const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  ASSERT_EQ(r.nbins(), 100u);
  for (auto n : r.nspax) EXPECT_EQ(n, 1);
}

TEST(Voronoi, UniformFieldGivesEqualBins) {
  // S/N 5 everywhere, target 20: bins of ~16 points, every one reaching 0.8 target.
  Field f;
  for (int j = 0; j < 60; ++j)
    for (int i = 0; i < 60; ++i) f.x.push_back(i), f.y.push_back(j), f.s.push_back(5), f.n.push_back(1);
  VoronoiOptions opt = Uncorrelated();
  opt.target_snr = 20;
  const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  CheckConsistent(f, r, opt);
  const VoronoiQuality q = EvaluateBinning(f.x, f.y, r, opt.target_snr);
  EXPECT_GE(q.min_ratio, 0.8);
  EXPECT_LT(q.scatter, 0.08);
  // Measured 211 bins (-6.2 %), scatter 5.4 %; 2x.
  EXPECT_NEAR(static_cast<double>(r.nbins()), 3600.0 / 16.0, 0.125 * 3600.0 / 16.0);
}

TEST(Voronoi, TooLittleSignalGivesOneBin) {
  Field f;
  for (int i = 0; i < 20; ++i) f.x.push_back(i), f.y.push_back(0), f.s.push_back(0.1), f.n.push_back(1);
  VoronoiOptions opt = Uncorrelated();
  opt.target_snr = 10;  // total S/N = 0.1 * sqrt(20) = 0.45
  const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  EXPECT_TRUE(r.single_bin);
  ASSERT_EQ(r.nbins(), 1u);
  EXPECT_EQ(r.nspax[0], 20);
  EXPECT_NEAR(r.snr[0], 0.1 * std::sqrt(20.0), 1e-12);
}

TEST(Voronoi, RejectsBadInput) {
  VoronoiOptions opt = Uncorrelated();
  EXPECT_THROW(VoronoiBin({0, 1}, {0}, {1, 1}, {1, 1}, opt), std::invalid_argument);
  EXPECT_THROW(VoronoiBin({0, 1}, {0, 0}, {1, 1}, {1, 0}, opt), std::invalid_argument);
  EXPECT_THROW(VoronoiBin({0, 1}, {0, 0}, {1, NAN}, {1, 1}, opt), std::invalid_argument);
  opt.target_snr = 0;
  EXPECT_THROW(VoronoiBin({0, 1}, {0, 0}, {1, 1}, {1, 1}, opt), std::invalid_argument);
  opt.target_snr = 5;
  EXPECT_EQ(VoronoiBin({}, {}, {}, {}, opt).nbins(), 0u);
}

TEST(Voronoi, BruteForceReferenceAgrees) {
  const Field f = Disc(60, true);
  VoronoiOptions opt = Uncorrelated();
  opt.target_snr = 35;
  const VoronoiResult fast = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  opt.spatial_index = false;
  const VoronoiResult slow = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  CheckConsistent(f, slow, opt);
  // Measured: 573 and 576 bins (0.52 %), S/N scatter 9.20 % and 9.51 % (0.31 points); 2x.
  EXPECT_NEAR(static_cast<double>(fast.nbins()), static_cast<double>(slow.nbins()), 0.0105 * slow.nbins());
  const auto qf = EvaluateBinning(f.x, f.y, fast, 35), qs = EvaluateBinning(f.x, f.y, slow, 35);
  EXPECT_GE(qs.min_ratio, 0.8);
  EXPECT_NEAR(qf.scatter, qs.scatter, 0.0065);
}

TEST(Voronoi, ScalesToLargeField) {
  // 400 x 400 grid; must stay well under a few seconds (vorbin-style O(N^1.5) would not).
  const Field f = Disc(400, true);
  VoronoiOptions opt = Uncorrelated();
  opt.target_snr = 35;
  opt.max_iter = 10;
  const auto t0 = std::chrono::steady_clock::now();
  const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CheckConsistent(f, r, opt);
  EXPECT_GE(EvaluateBinning(f.x, f.y, r, 35).min_ratio, 0.8);
  EXPECT_LT(sec, 20.0);
  std::cout << f.x.size() << " points -> " << r.nbins() << " bins in " << sec << " s\n";
}

// --- Results pinned: VoronoiBin runs its steps as named functions (accretion, assignment,
// splitting, Lloyd iterations, dissolving); these figures were produced by the single-function
// implementation before that split, and must not change unless the algorithm does.

/// Noise-free exponential disc (no random numbers: the same field everywhere).
Field SmoothDisc(int size) {
  Field f;
  const double c = 0.5 * (size - 1), rd = size / 20.0, q = 0.75;
  for (int j = 0; j < size; ++j)
    for (int i = 0; i < size; ++i) {
      const double dx = i - c, dy = (j - c) / q;
      const double flux = 1e5 * std::exp(-std::sqrt(dx * dx + dy * dy) / rd);
      const double sigma = std::sqrt(flux + 100.0);
      if (flux / sigma < 1.0) continue;
      f.x.push_back(i), f.y.push_back(j), f.s.push_back(flux), f.n.push_back(sigma);
    }
  return f;
}

/// A size x size grid of S/N sn * U(0.2, 1.8) from a fixed linear congruential generator:
/// accretion leaves many points to absorb, so rich bins get split.
Field Patchy(int size, double sn) {
  Field f;
  uint32_t state = 12345;
  for (int j = 0; j < size; ++j)
    for (int i = 0; i < size; ++i) {
      state = state * 1664525u + 1013904223u;
      const double u = (state >> 8) / double(1 << 24);
      f.x.push_back(i), f.y.push_back(j), f.s.push_back(sn * (0.2 + 1.6 * u)), f.n.push_back(1.0);
    }
  return f;
}

uint64_t LabelHash(const std::vector<int32_t>& bin) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the labels
  for (int32_t b : bin) {
    h ^= static_cast<uint32_t>(b);
    h *= 1099511628211ull;
  }
  return h;
}

TEST(Voronoi, ResultsUnchangedByTheSplitIntoSteps) {
  struct Case {
    bool patchy;
    VoronoiMethod method;
    double alpha, target, roundness;
    int max_iter;
    size_t nbins;
    int accretion_bins, iterations, split, dissolved;
    uint64_t labels;
  };
  const Case cases[] = {
      {false, VoronoiMethod::kCvt, 0.0, 35, 0.3, 30, 1028, 1031, 3, 0, 3, 0x27f5137ed9ca6ba4ull},
      {false, VoronoiMethod::kWvt, 1.07, 35, 0.3, 30, 779, 805, 16, 0, 26, 0x938734b380c36e2full},
      {false, VoronoiMethod::kCvt, 1.07, 35, 0.3, 0, 769, 805, 0, 0, 36, 0x67b2ed9fd848a72cull},
      {true, VoronoiMethod::kCvt, 0.0, 20, 0.3, 30, 160, 111, 7, 49, 0, 0xa1a8a5d20714ca27ull},
      {true, VoronoiMethod::kWvt, 0.0, 20, 0.3, 30, 160, 111, 6, 49, 0, 0xe9171543dc5aa7ffull},
      {true, VoronoiMethod::kCvt, 0.0, 20, 0.05, 30, 173, 84, 2, 89, 0, 0x69fdb33f64092ed9ull},
  };
  for (const Case& c : cases) {
    const Field f = c.patchy ? Patchy(60, 5.0) : SmoothDisc(80);
    VoronoiOptions opt;
    opt.method = c.method;
    opt.covariance_alpha = c.alpha;
    opt.target_snr = c.target;
    opt.max_roundness = c.roundness;
    opt.max_iter = c.max_iter;
    const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
    SCOPED_TRACE(std::string(c.patchy ? "patchy" : "disc") + (c.method == VoronoiMethod::kWvt ? " wvt" : " cvt") +
                 " alpha " + std::to_string(c.alpha) + " max_iter " + std::to_string(c.max_iter));
    CheckConsistent(f, r, opt);
    EXPECT_EQ(r.nbins(), c.nbins);
    EXPECT_EQ(r.accretion_bins, c.accretion_bins);
    EXPECT_EQ(r.iterations, c.iterations);
    EXPECT_EQ(r.split, c.split);
    EXPECT_EQ(r.dissolved, c.dissolved);
    EXPECT_EQ(LabelHash(r.bin), c.labels);
  }
}

// --- nGIST tutorial reference: re-bin their per-spaxel signal and noise ------------------------

TEST(Voronoi, MatchesNgistTutorialBinning) {
  const std::string path = DataDir() + "/reference/ngist_tutorial_NGC0000/NGC0000Example_table.fits";
  if (!std::filesystem::exists(path)) CUBEFLOW_SKIP_WITHOUT_DATA() << "nGIST reference table not found: " << path;
  fitsfile* fp = nullptr;
  int st = 0;
  ASSERT_EQ(fits_open_table(&fp, path.c_str(), READONLY, &st), 0) << "cannot open " << path;
  long nrows = 0;
  fits_get_num_rows(fp, &nrows, &st);
  auto column = [&](const char* name, int type, void* out) {
    int col = 0;
    ASSERT_EQ(fits_get_colnum(fp, CASEINSEN, const_cast<char*>(name), &col, &st), 0) << name;
    ASSERT_EQ(fits_read_col(fp, type, col, 1, 1, nrows, nullptr, out, nullptr, &st), 0) << name;
  };
  std::vector<double> X(nrows), Y(nrows), F(nrows), S(nrows), SNRBIN(nrows);
  std::vector<int32_t> B(nrows);
  column("X", TDOUBLE, X.data());
  column("Y", TDOUBLE, Y.data());
  column("FLUX", TDOUBLE, F.data());
  column("SNR", TDOUBLE, S.data());
  column("SNRBIN", TDOUBLE, SNRBIN.data());
  column("BIN_ID", TINT, B.data());
  fits_close_file(fp, &st);
  ASSERT_EQ(nrows, 900);

  // Their settings (CONFIG): TARGET_SNR 250, COVARIANCE 0, MIN_SNR 20 and a mask; BIN_ID < 0
  // marks the masked spaxels.
  Field f;
  std::set<int32_t> ref_bins;
  std::map<int32_t, double> ref_snr;
  for (long i = 0; i < nrows; ++i) {
    if (B[i] < 0) continue;
    f.x.push_back(X[i]);
    f.y.push_back(Y[i]);
    f.s.push_back(F[i]);
    f.n.push_back(F[i] / S[i]);
    ref_bins.insert(B[i]);
    ref_snr[B[i]] = SNRBIN[i];
  }
  ASSERT_EQ(f.x.size(), 842u);
  double rs1 = 0, rs2 = 0;
  for (auto& [b, v] : ref_snr) rs1 += v / 250 - 1, rs2 += (v / 250 - 1) * (v / 250 - 1);
  const double nref = static_cast<double>(ref_snr.size());
  const double ref_scatter = std::sqrt((rs2 - rs1 * rs1 / nref) / (nref - 1));

  for (VoronoiMethod m : {VoronoiMethod::kCvt, VoronoiMethod::kWvt}) {
    VoronoiOptions opt = Uncorrelated();
    opt.target_snr = 250;
    opt.method = m;
    const VoronoiResult r = VoronoiBin(f.x, f.y, f.s, f.n, opt);  // pixel size found: 0.2 arcsec
    CheckConsistent(f, r, opt);
    EXPECT_NEAR(r.pixel_size, 0.2, 1e-6);
    const VoronoiQuality q = EvaluateBinning(f.x, f.y, r, 250);
    std::cout << "nGIST NGC0000 (" << (m == VoronoiMethod::kCvt ? "cvt" : "wvt") << "): cubeflow "
              << r.nbins() << " bins, S/N scatter " << 100 * q.scatter << "%, min " << q.min_ratio
              << " | nGIST " << ref_bins.size() << " bins, S/N scatter " << 100 * ref_scatter << "%\n";
    // Bin count: measured 28 with both methods, as nGIST's 28; bound 1 bin (3.6 %).
    EXPECT_NEAR(static_cast<double>(r.nbins()), static_cast<double>(ref_bins.size()), 1.0);
    EXPECT_GE(q.min_ratio, 0.8);
    // S/N scatter: no worse than nGIST's own binning (8.43 %); measured 4.97 % (cvt, the method
    // nGIST runs: bound 1.5x, 7.5 %) and 7.98 % (wvt).
    EXPECT_LT(q.scatter, ref_scatter);
    if (m == VoronoiMethod::kCvt) EXPECT_LT(q.scatter, 0.075);
  }
}

}  // namespace
