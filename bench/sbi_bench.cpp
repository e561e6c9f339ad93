// Posterior sampling throughput of the SBI model (docs/sbi.md): the flow's samples/s for 1000
// samples per bin and batches of bins, with 1 and 2 libtorch threads, plus the encoder's
// spectra/s and the whole per-bin path (encoder + flow + percentiles) as the node runs it.
// Usage: sbi_bench [MODEL.pt] [--samples N]
// Without a model: the default architecture with random weights (speed depends on the
// architecture only).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cubeflow/nn/sbi.hpp"

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double Cpu() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

}  // namespace

int main(int argc, char** argv) {
  using namespace cubeflow;
  std::string path;
  int64_t S = 1000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--samples" && i + 1 < argc) S = std::atoll(argv[++i]);
    else path = a;
  }
  std::unique_ptr<sbi::SbiModel> model;
  if (!path.empty()) {
    auto m = sbi::SbiModel::Load(path);
    if (!m.ok()) {
      std::fprintf(stderr, "sbi_bench: %s\n", m.status().message().c_str());
      return 1;
    }
    model = std::move(m).ValueOrThrow();
  } else {
    sbi::SbiMetadata md;
    md.input.wave = WavelengthAxis::Linear(4800, 1.25, 1761);
    for (int b = 0; b < 5; ++b) {
      md.input.bands.push_back("B" + std::to_string(b));
      md.input.pivots.push_back(3000 + 1000 * b);
    }
    md.theta = sbi::DefaultTheta();
    for (auto& p : md.theta) p.mean = p.unit == "Gyr" ? 0.8 : -0.15, p.std = p.unit == "Gyr" ? 0.3 : 0.1;
    auto m = sbi::SbiModel::CreateRandom(md, 1);
    if (!m.ok()) {
      std::fprintf(stderr, "sbi_bench: %s\n", m.status().message().c_str());
      return 1;
    }
    model = std::move(m).ValueOrThrow();
  }
  const auto& md = model->metadata();
  const int64_t nw = md.encoder.nwave, nb = md.encoder.nbands, SD = md.encoder.ContextDim(), D = md.flow.dim;
  std::printf("sbi_bench: %s; flow %s, %lld layers x %lld hidden, %lld bins; %lld parameters; %lld samples per bin\n",
              path.empty() ? "default architecture, random weights" : path.c_str(), md.flow.transform.c_str(),
              static_cast<long long>(md.flow.layers), static_cast<long long>(md.flow.hidden),
              static_cast<long long>(md.flow.bins), static_cast<long long>(D), static_cast<long long>(S));
  const int64_t nmax = 256;
  std::mt19937 rng(3);
  std::normal_distribution<float> g(1.0f, 0.05f);
  std::vector<float> spec(nmax * nw), phot(nmax * std::max<int64_t>(nb, 1)), snr(nmax, 30.0f), summ(nmax * SD);
  for (auto& v : spec) v = g(rng);
  for (auto& v : phot) v = std::abs(g(rng));
  std::vector<int64_t> keys(nmax);
  std::iota(keys.begin(), keys.end(), 0);
  std::vector<float> out(nmax * S * D);
  std::vector<double> per_bin;
  for (int threads : {1, 2}) {
    if (!model->Summarize(spec.data(), phot.data(), snr.data(), nmax, summ.data(), threads).ok()) return 1;
    std::printf("threads %d\n", threads);
    for (int64_t bins : {1, 16, 64, 256}) {
      if (!model->Sample(summ.data(), std::min<int64_t>(bins, 4), S, keys.data(), 1, out.data(), threads).ok()) return 1;
      const int reps = bins == 1 ? 20 : std::max<int>(1, static_cast<int>(64 / bins));
      double best = 1e30, best_cpu = 1e30;
      for (int r = 0; r < 3; ++r) {
        const double t0 = Now(), c0 = Cpu();
        for (int k = 0; k < reps; ++k)
          if (!model->Sample(summ.data(), bins, S, keys.data(), 1, out.data(), threads).ok()) return 1;
        best = std::min(best, (Now() - t0) / reps);
        best_cpu = std::min(best_cpu, (Cpu() - c0) / reps);
      }
      std::printf("  flow, %3lld bins x %lld samples: %10.0f samples/s  (%10.0f per CPU-second)\n",
                  static_cast<long long>(bins), static_cast<long long>(S), bins * S / best, bins * S / best_cpu);
    }
    // Encoder alone and the node's whole per-bin path for 256 bins.
    double best_enc = 1e30, best_all = 1e30;
    std::vector<float> v(S);
    for (int r = 0; r < 3; ++r) {
      double t0 = Now();
      if (!model->Summarize(spec.data(), phot.data(), snr.data(), nmax, summ.data(), threads).ok()) return 1;
      best_enc = std::min(best_enc, Now() - t0);
      t0 = Now();
      if (!model->Summarize(spec.data(), phot.data(), snr.data(), nmax, summ.data(), threads).ok()) return 1;
      if (!model->Sample(summ.data(), nmax, S, keys.data(), 1, out.data(), threads).ok()) return 1;
      double sink = 0;
      for (int64_t i = 0; i < nmax; ++i)
        for (int64_t k = 0; k < D; ++k) {
          for (int64_t s = 0; s < S; ++s) v[s] = out[(i * S + s) * D + k];
          sink += sbi::Quantile(v, 0.5) + sbi::Quantile(v, 0.16) + sbi::Quantile(v, 0.84);
        }
      best_all = std::min(best_all, Now() - t0);
      if (sink == 12345.678) std::printf(" ");
    }
    std::printf("  encoder: %8.0f spectra/s; per bin (encoder + %lld samples + percentiles): %.2f ms, %8.0f bins/s "
                "(%.0f samples/s)\n",
                nmax / best_enc, static_cast<long long>(S), 1e3 * best_all / nmax, nmax / best_all,
                nmax * S / best_all);
    per_bin.push_back(best_all / nmax);
  }
  std::printf("a 10000-bin cube at %lld samples per bin: %.0f s with 1 thread, %.0f s with 2 threads\n",
              static_cast<long long>(S), 1e4 * per_bin[0], 1e4 * per_bin[1]);
  return 0;
}
