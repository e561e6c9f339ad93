// Inference throughput of the CNN (architecture of docs/cnn.md, random Glorot weights: the
// speed depends on the architecture only). Usage: cnn_bench [threads=1] [nbands=5] [workers=2]
// Prints spectra/s of CnnModel::Predict at batch 1, 64 and 256 with `threads` libtorch threads
// in one caller, then with `workers` callers at once (one libtorch thread each, as
// inference.cnn's parallel batches run), in the same process.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "cubeflow/nn/cnn.hpp"

int main(int argc, char** argv) {
  using namespace cubeflow;
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int nbands = argc > 2 ? std::atoi(argv[2]) : 5;
  const int workers = argc > 3 ? std::atoi(argv[3]) : 2;
  cnn::CnnMetadata md;
  md.arch.nbands = nbands;
  md.wave = WavelengthAxis::Linear(4800, 1.25, 1761);
  md.age_bin_centres = cnn::DefaultAgeBinCentres();
  for (int b = 0; b < nbands; ++b) {
    md.bands.push_back("B" + std::to_string(b));
    md.pivots.push_back(3000 + 1000 * b);
    md.phot_mean.push_back(0);
    md.phot_std.push_back(1);
  }
  auto model = cnn::CnnModel::CreateRandom(md, 1);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().message().c_str());
    return 1;
  }
  const int64_t nw = md.arch.nwave, nmax = 4096;
  std::mt19937 rng(3);
  std::normal_distribution<float> g(1.0f, 0.05f);
  std::vector<float> spec(nmax * nw), phot(nmax * std::max(nbands, 1)), mf(nmax * 16), zh(nmax * 16);
  for (auto& v : spec) v = g(rng);
  for (auto& v : phot) v = std::abs(g(rng));
  std::printf("cnn_bench: nwave %lld, nbands %d, channels %lld/%lld/%lld, pools %lld/%lld/%lld, attention %s, threads %d\n",
              static_cast<long long>(nw), nbands, static_cast<long long>(md.arch.channels[0]),
              static_cast<long long>(md.arch.channels[1]), static_cast<long long>(md.arch.channels[2]),
              static_cast<long long>(md.arch.pools[0]), static_cast<long long>(md.arch.pools[1]),
              static_cast<long long>(md.arch.pools[2]), md.arch.attention ? "on" : "off", threads);
  for (int64_t batch : {1, 64, 256}) {
    const int64_t total = batch == 1 ? 300 : nmax;
    // warm-up
    if (!(*model)->Predict(spec.data(), phot.data(), std::min<int64_t>(batch * 2, total), mf.data(), zh.data(), threads, batch).ok())
      return 1;
    double best = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::clock_t c0 = std::clock();
      if (!(*model)->Predict(spec.data(), phot.data(), total, mf.data(), zh.data(), threads, batch).ok()) return 1;
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      best_cpu = std::min(best_cpu, static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
    }
    // Wall-clock rate, and the rate per CPU-second (what one idle core would give; robust when
    // other processes share the machine).
    std::printf("batch %4lld: %9.0f spectra/s  %8.3f ms/spectrum  (%9.0f spectra per CPU-second)\n",
                static_cast<long long>(batch), total / best, 1e3 * best / total, total / best_cpu);
  }
  // `workers` callers at once, each on its own slice with one libtorch thread.
  if (workers > 1) {
    for (int64_t batch : {64, 256}) {
      const int64_t per = nmax / workers;
      double best = 1e30, best_cpu = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::clock_t c0 = std::clock();  // process CPU time, all threads
        std::vector<std::thread> pool;
        bool ok = true;
        std::vector<char> okw(workers, 1);
        for (int w = 0; w < workers; ++w)
          pool.emplace_back([&, w] {
            okw[w] = (*model)->Predict(spec.data() + w * per * nw, phot.data() + w * per * std::max(nbands, 1), per,
                                       mf.data() + w * per * 16, zh.data() + w * per * 16, 1, batch).ok();
          });
        for (auto& t : pool) t.join();
        for (char o : okw) ok = ok && o;
        if (!ok) return 1;
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        best_cpu = std::min(best_cpu, static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
      }
      const double total = static_cast<double>(per * workers);
      std::printf("batch %4lld, %d workers x 1 thread: %9.0f spectra/s  (%9.0f spectra per CPU-second)\n",
                  static_cast<long long>(batch), workers, total / best, total / best_cpu);
    }
  }
  return 0;
}
