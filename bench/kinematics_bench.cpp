// Issue #16 speed benchmark of the stellar-kinematics fitter (libs/kinematics), one core.
//
// 1. Mock MUSE bins (linear 1.25 A pixels, observed frame, z = 0.005, the Bacon et al. 2017 LSF,
//    S/N 35 per pixel, V in +-200 km/s, sigma 50-250 km/s, each a random mix of three SSPs)
//    made from the 150 MILES templates pPXF has always shipped (ssp/miles_padova_ppxf), and
//    fitted with those 150 templates over 4800-5500 A (rest), additive degree 8, the default
//    emission-line mask, 3-sigma clipping. CPU time per spectrum (one thread) against the
//    issue's target: 100 x faster than pPXF's 0.6 s, i.e. <= 6 ms.
// 2. With --out DIR: the mocks, the prepared templates and cubeflow's results as .npy files,
//    for bench/kinematics_reference.py (a pPXF-like fit in numpy/scipy: FFT convolution of all
//    templates per evaluation, NNLS, scipy's least_squares), which bench/kinematics.sh runs on
//    the same spectra and times in the same run.
//
// usage: kinematics_bench [--data DIR] [--n N] [--snr S] [--moments M] [--out DIR]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cubeflow/kinematics/fitter.hpp"
#include "cubeflow/kinematics/masks.hpp"
#include "cubeflow/kinematics/mock.hpp"
#include "cubeflow/kinematics/templates.hpp"
#include "cubeflow/sim/ssp.hpp"

using namespace cubeflow;
using namespace cubeflow::kinematics;

namespace {

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

/// Writes a C-order float64 .npy array.
void WriteNpy(const std::string& path, const std::vector<double>& data, std::vector<size_t> shape) {
  std::string dims = "(";
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  dims += ")";
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + dims + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(double)));
}

std::string Arg(int argc, char** argv, const std::string& key, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == key) return argv[i + 1];
  return def;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? NAN : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("CUBEFLOW_DATA_DIR");
  const std::string data = Arg(argc, argv, "--data", env && *env ? env : "../shared/data");
  const int n = std::stoi(Arg(argc, argv, "--n", "200"));
  const double snr = std::stod(Arg(argc, argv, "--snr", "35"));
  const int moments = std::stoi(Arg(argc, argv, "--moments", "2"));
  const std::string out = Arg(argc, argv, "--out", "");
  const double z = 0.005;

  auto lib = sim::LoadSspDirectory(data + "/ssp/miles_padova_ppxf");
  if (!lib.ok()) {
    std::fprintf(stderr, "kinematics_bench: %s\n(set --data or CUBEFLOW_DATA_DIR to shared/data)\n", lib.status().message().c_str());
    return 2;
  }
  const sim::SspGrid& grid = **lib;
  const spectral::Lsf lsf = spectral::Lsf::Bacon2017();
  TemplateOptions to;
  to.wave_min = 4800;
  to.wave_max = 5500;
  to.z_sys = z;
  to.data_lsf = lsf;
  double t0 = ThreadCpuSeconds();
  auto ts = PrepareTemplates(grid, to);
  if (!ts.ok()) {
    std::fprintf(stderr, "kinematics_bench: %s\n", ts.status().message().c_str());
    return 1;
  }
  const double prep_s = ThreadCpuSeconds() - t0;
  FitOptions fo;
  fo.wave_min = 4800;
  fo.wave_max = 5500;
  fo.z_sys = z;
  fo.moments = moments;
  fo.degree = 8;
  fo.masks = EmissionLineRegions(800);
  auto fitter = LosvdFitter::Make(*ts, fo);
  if (!fitter.ok()) {
    std::fprintf(stderr, "kinematics_bench: %s\n", fitter.status().message().c_str());
    return 1;
  }

  // Mocks: three random SSPs each.
  std::mt19937_64 rng(2026);
  std::uniform_int_distribution<size_t> pick(0, static_cast<size_t>((*ts)->n() - 1));
  std::uniform_real_distribution<double> uv(-200, 200), us(50, 250), uw(0.1, 1.0);
  std::vector<MockSpectrum> mocks;
  for (int k = 0; k < n; ++k) {
    MockMaker mk(grid, lsf, z, {pick(rng), pick(rng), pick(rng)});
    mocks.push_back(mk.Make({uw(rng), uw(rng), uw(rng)}, uv(rng), us(rng), 0, 0, snr, rng));
  }

  // Fits, one thread.
  std::vector<double> res(static_cast<size_t>(n) * 5, NAN);
  std::vector<double> cpu_ms;
  double iters = 0, evals = 0, used = 0, pulls_v = 0, pulls_s = 0;
  int failed = 0;
  const auto w0 = std::chrono::steady_clock::now();
  for (int k = 0; k < n; ++k) {
    const MockSpectrum& m = mocks[static_cast<size_t>(k)];
    SpectrumView sv;
    sv.edges = m.edges_rest;
    sv.flux = m.flux;
    sv.variance = m.variance;
    sv.id = k;
    const double c0 = ThreadCpuSeconds();
    auto r = fitter->Fit(sv);
    cpu_ms.push_back(1e3 * (ThreadCpuSeconds() - c0));
    if (!r.ok()) {
      ++failed;
      continue;
    }
    res[static_cast<size_t>(k) * 5 + 0] = r->params[0];
    res[static_cast<size_t>(k) * 5 + 1] = r->params[1];
    res[static_cast<size_t>(k) * 5 + 2] = r->errors[0];
    res[static_cast<size_t>(k) * 5 + 3] = r->errors[1];
    res[static_cast<size_t>(k) * 5 + 4] = cpu_ms.back();
    iters += r->iterations;
    evals += r->evaluations;
    for (double w : r->weights) used += w > 0;
    pulls_v += std::pow((r->params[0] - m.v) / r->errors[0], 2);
    pulls_s += std::pow((r->params[1] - m.sigma) / r->errors[1], 2);
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  const double mean_ms = std::accumulate(cpu_ms.begin(), cpu_ms.end(), 0.0) / static_cast<double>(cpu_ms.size());
  const int ok = n - failed;
  std::printf("== cubeflow kinematics.fit benchmark (issue #16), one thread\n");
  std::printf("templates: %d (ssp/miles_padova_ppxf) prepared in %.3f s CPU (LSF matching, %.2f km/s log grid, %ld pixels)\n",
              (*ts)->n(), prep_s, (*ts)->velscale, static_cast<long>((*ts)->npix));
  std::printf("mocks: %d MUSE bins of %zu pixels (1.25 A), S/N %.0f per pixel; fit 4800-5500 A (rest), moments %d, degree 8\n",
              n, mocks.empty() ? 0 : mocks[0].flux.size(), snr, moments);
  std::printf("cubeflow: %.2f ms CPU per spectrum (median %.2f, max %.2f), %.2f ms wall; %.1f LM iterations, %.1f "
              "evaluations, %.1f templates with weight > 0; %d failed\n",
              mean_ms, Median(cpu_ms), *std::max_element(cpu_ms.begin(), cpu_ms.end()), 1e3 * wall / n, iters / ok, evals / ok,
              used / ok, failed);
  std::printf("pull rms: V %.2f, sigma %.2f\n", std::sqrt(pulls_v / ok), std::sqrt(pulls_s / ok));
  std::printf("target: <= 6 ms per spectrum (100 x faster than pPXF's 0.6 s with 150 MILES templates): %s\n",
              mean_ms <= 6.0 ? "met" : "MISSED");

  if (!out.empty()) {
    std::filesystem::create_directories(out);
    const TemplateSet& t = **ts;
    std::vector<double> tmpl(static_cast<size_t>(t.npix) * static_cast<size_t>(t.n()));
    for (int64_t i = 0; i < t.npix; ++i)
      for (int j = 0; j < t.n(); ++j) tmpl[static_cast<size_t>(i) * static_cast<size_t>(t.n()) + static_cast<size_t>(j)] = t.flux(i, j);
    WriteNpy(out + "/templates.npy", tmpl, {static_cast<size_t>(t.npix), static_cast<size_t>(t.n())});
    WriteNpy(out + "/template_grid.npy", {t.ln_lambda0, t.velscale, static_cast<double>(t.npix)}, {3});
    const size_t np = mocks[0].flux.size();
    std::vector<double> flux, var, truth;
    for (const auto& m : mocks) {
      flux.insert(flux.end(), m.flux.begin(), m.flux.end());
      var.insert(var.end(), m.variance.begin(), m.variance.end());
      truth.push_back(m.v);
      truth.push_back(m.sigma);
    }
    WriteNpy(out + "/flux.npy", flux, {static_cast<size_t>(n), np});
    WriteNpy(out + "/variance.npy", var, {static_cast<size_t>(n), np});
    WriteNpy(out + "/edges_rest.npy", mocks[0].edges_rest, {np + 1});
    WriteNpy(out + "/truth.npy", truth, {static_cast<size_t>(n), 2});
    WriteNpy(out + "/cubeflow.npy", res, {static_cast<size_t>(n), 5});
    std::vector<double> masks;
    for (const auto& r : fo.masks) {
      masks.push_back(r.lo);
      masks.push_back(r.hi);
    }
    WriteNpy(out + "/masks.npy", masks, {fo.masks.size(), 2});
    WriteNpy(out + "/settings.npy", {fo.wave_min, fo.wave_max, static_cast<double>(fo.degree), static_cast<double>(moments),
                                     fo.sigma_start, mean_ms},
             {6});
    std::printf("wrote the spectra, templates and results to %s\n", out.c_str());
  }
  return failed == 0 ? 0 : 1;
}
