#pragma once
/// \file rng.hpp
/// \brief Small, portable, counter-seeded random number generator for the forward model.
///
/// Every simulated object draws from its own generator seeded from (seed, object index), so a
/// library is bit-for-bit the same whatever the number of threads or the chunk size. The
/// generator is xoshiro256** (Blackman & Vigna) seeded through SplitMix64; the normal deviates
/// use the Marsaglia polar method. Results do not depend on the C++ standard library.
/// Not thread-safe: one instance per thread/object.

#include <cmath>
#include <cstdint>

namespace cubeflow::sim {

/// SplitMix64 finaliser (a bijective 64-bit hash).
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class Rng {
 public:
  /// Generator for object `index` of a run with seed `seed`; `stream` separates independent
  /// uses (e.g. 0 = priors, 1 = noise).
  Rng(uint64_t seed, uint64_t index, uint64_t stream = 0) {
    uint64_t x = SplitMix64(seed) ^ SplitMix64(index * 0x2545F4914F6CDD1DULL + 0x1234567ULL) ^
                 SplitMix64(stream + 0x9E3779B97F4A7C15ULL * 3);
    for (auto& v : s_) { x += 0x9e3779b97f4a7c15ULL; v = SplitMix64(x); }
  }
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0]; s_[3] ^= s_[1]; s_[1] ^= s_[2]; s_[0] ^= s_[3];
    s_[2] ^= t; s_[3] = Rotl(s_[3], 45);
    return result;
  }
  /// Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  /// Log-uniform in [lo, hi] (lo, hi > 0).
  double LogUniform(double lo, double hi) { return std::exp(Uniform(std::log(lo), std::log(hi))); }
  /// Standard normal deviate.
  double Normal() {
    if (has_spare_) { has_spare_ = false; return spare_; }
    double u, v, s;
    do {
      u = 2.0 * Uniform() - 1.0;
      v = 2.0 * Uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = std::sqrt(-2.0 * std::log(s) / s);
    spare_ = v * f; has_spare_ = true;
    return u * f;
  }
  double Normal(double mean, double sigma) { return mean + sigma * Normal(); }
  /// Gamma(shape, 1) deviate (Marsaglia & Tsang), shape > 0.
  double Gamma(double shape) {
    if (shape < 1.0) return Gamma(shape + 1.0) * std::pow(Uniform() + 1e-300, 1.0 / shape);
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do { x = Normal(); v = 1.0 + c * x; } while (v <= 0);
      v = v * v * v;
      const double u = Uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace cubeflow::sim
