// Spectra per second of the forward model (built-in SSPs, default paper config) on all cores.
#include <tbb/info.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/observables.hpp"

int main(int argc, char** argv) {
  using namespace cubeflow::sim;
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 20000;
  auto t0 = std::chrono::steady_clock::now();
  auto fm = ForwardModel::Build(BuiltinSsp(), SimConfig{});
  if (!fm.ok()) { std::fprintf(stderr, "%s\n", fm.status().message().c_str()); return 1; }
  auto t1 = std::chrono::steady_clock::now();
  for (int threads : {1, 0}) {
    auto a = std::chrono::steady_clock::now();
    const std::clock_t ca = std::clock();
    LibraryData d = SimulateLibrary(**fm, 0, n, 1, threads);
    const std::clock_t cb = std::clock();
    auto b = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(b - a).count();
    const double cpu = static_cast<double>(cb - ca) / CLOCKS_PER_SEC;
    std::printf("simulate_bench: %lld spectra (%lld px + %zu bands), threads=%d: wall %.3f s, %.0f spectra/s"
                " (CPU %.3f s, %.0f spectra per CPU-second)\n",
                static_cast<long long>(n), static_cast<long long>(d.wave.n), d.bands.size(),
                threads > 0 ? threads : tbb::info::default_concurrency(), s, n / s, cpu, n / cpu);
  }
  std::printf("simulate_bench: model build (template precomputation) %.3f s\n",
              std::chrono::duration<double>(t1 - t0).count());
  return 0;
}
