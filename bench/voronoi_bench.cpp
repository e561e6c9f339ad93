// Benchmark of binning::VoronoiBin on synthetic galaxy-like fields.
//
// Usage: voronoi_bench [--quick] [--reference]
//   Bins a 300x300 and a 1000x1000 field (exponential disc: S/N ~300 per spaxel at the
//   centre, ~1 at the edge, so bins range from 1 spaxel to ~1000) at target S/N 35 with the
//   CVT and the WVT variants, and prints spaxels, bins, S/N scatter, worst bin and seconds.
//   --reference also runs the brute-force mode (no spatial index: nearest-neighbour look-ups
//   by linear scans, like a direct implementation of Cappellari & Copin 2003) on small fields.
//   vorbin itself (Python, PyPI) cannot be installed on the build machine, so it is not run.
//   --quick: 300x300 only.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cubeflow/binning/voronoi.hpp"

namespace {

using cubeflow::binning::EvaluateBinning;
using cubeflow::binning::VoronoiBin;
using cubeflow::binning::VoronoiMethod;
using cubeflow::binning::VoronoiOptions;

struct Field {
  std::vector<double> x, y, s, n;
};

/// Exponential disc (axis ratio 0.7, scale length size/20) plus sky; Gaussian noise on the
/// signal; spaxels with S/N < 1 dropped as the node does with min_snr = 1.
Field MakeField(int size, unsigned seed) {
  Field f;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  const double c = 0.5 * (size - 1), rd = size / 20.0, q = 0.7, pa = 0.5;
  const double f0 = 1e5, sky = 100.0;
  for (int j = 0; j < size; ++j) {
    for (int i = 0; i < size; ++i) {
      const double dx = i - c, dy = j - c;
      const double u = dx * std::cos(pa) + dy * std::sin(pa);
      const double v = -dx * std::sin(pa) + dy * std::cos(pa);
      const double r = std::sqrt(u * u + (v / q) * (v / q));
      const double flux = f0 * std::exp(-r / rd);
      const double sigma = std::sqrt(flux + sky);
      const double s = flux + sigma * gauss(rng);
      if (s / sigma < 1.0) continue;
      f.x.push_back(i);
      f.y.push_back(j);
      f.s.push_back(s);
      f.n.push_back(sigma);
    }
  }
  return f;
}

void Run(const char* label, const Field& f, const VoronoiOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = VoronoiBin(f.x, f.y, f.s, f.n, opt);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto q = EvaluateBinning(f.x, f.y, r, opt.target_snr);
  int64_t maxn = 0;
  for (auto n : r.nspax) maxn = std::max(maxn, n);
  std::printf("%-28s %9zu spaxels %7zu bins (max %5lld spx)  scatter %5.1f%%  min %4.2f  max %4.2f"
              "  round %4.2f/%4.2f  iter %2d  dissolved %4d  %7.3f s\n",
              label, f.x.size(), r.nbins(), static_cast<long long>(maxn), 100 * q.scatter,
              q.min_ratio, q.max_ratio, q.mean_roundness, q.max_roundness, r.iterations, r.dissolved, sec);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, reference = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--reference")) reference = true;
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--reference]\n", argv[0]);
      return 2;
    }
  }
  std::printf("binning.voronoi benchmark: target S/N 35, min S/N 1, no covariance term\n");
  std::printf("(vorbin is not installable here: no PyPI access; --reference runs the brute-force mode)\n");
  std::vector<int> sizes = {300};
  if (!quick) sizes.push_back(1000);
  for (int size : sizes) {
    const Field f = MakeField(size, 42);
    VoronoiOptions opt;
    opt.target_snr = 35;
    opt.covariance_alpha = 0;  // no covariance term (the default, 1.07, is for MUSE cubes)
    opt.pixel_size = 1;
    const std::string tag = std::to_string(size) + "x" + std::to_string(size);
    opt.max_iter = 0;
    Run((tag + " accretion only").c_str(), f, opt);
    opt.max_iter = 30;
    Run((tag + " cvt").c_str(), f, opt);
    opt.method = VoronoiMethod::kWvt;
    Run((tag + " wvt").c_str(), f, opt);
  }
  if (reference) {
    for (int size : {100, 200}) {
      const Field f = MakeField(size, 42);
      VoronoiOptions opt;
      opt.target_snr = 35;
      opt.covariance_alpha = 0;
      opt.pixel_size = 1;
      opt.spatial_index = false;
      const std::string tag = std::to_string(size) + "x" + std::to_string(size);
      Run((tag + " cvt brute-force").c_str(), f, opt);
      opt.spatial_index = true;
      Run((tag + " cvt k-d tree").c_str(), f, opt);
    }
  }
  return 0;
}
