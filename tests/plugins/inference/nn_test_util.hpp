#pragma once
// Fixtures shared by the tests of the inference plugin (test_cnn, test_sbi, test_model_ref): the
// grid and bands of the synthetic libraries, node inputs made from library rows, temporary
// directories and the records a node emitted into cubeflow::testing::FakeContext.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/testing/fake_context.hpp"

namespace nntest {

/// Spectral pixels of the test libraries and models (4800 A + 5.5 A steps: TestGrid()).
inline constexpr int64_t kNWave = 400;
inline cubeflow::WavelengthAxis TestGrid() { return cubeflow::WavelengthAxis::Linear(4800.0, 5.5, kNWave); }
/// Bands of the libraries with photometry, and their pivots (Angstrom).
inline const std::vector<std::string> kBands = {"F438W", "F555W", "F814W"};
inline const std::vector<double> kPivots = {4326.0, 5308.0, 8040.0};

/// A fresh, empty directory <tmp>/cubeflow_test_<prefix>_<name>_<pid>.
inline std::filesystem::path TempDir(const std::string& prefix, const std::string& name) {
  namespace fs = std::filesystem;
  fs::path p = fs::temp_directory_path() / ("cubeflow_test_" + prefix + "_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

/// Sets an environment variable for the lifetime of the object (then restores it).
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old, had_ = true;
    ::setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_.c_str(), old_.c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

/// A library of `n` rows on TestGrid() (with kBands if `with_phot`): spectra, photometry and
/// S/N sized but not filled. Each test's MakeLibrary fills the rows with its own model.
inline cubeflow::sim::LibraryData EmptyLibrary(int64_t n, bool with_phot) {
  cubeflow::sim::LibraryData lib;
  lib.wave = TestGrid();
  lib.ssp_name = "synthetic-test";
  if (with_phot) {
    lib.bands = kBands;
    lib.pivots = kPivots;
  }
  lib.n = n;
  lib.spectra.resize(n * kNWave);
  lib.photometry.resize(n * lib.bands.size());
  lib.snr.resize(n);
  return lib;
}

/// Mean of `flux` (on `wave`) in the normalisation window 5300-5500 A.
inline double WindowMean(const cubeflow::WavelengthAxis& wave, const std::vector<double>& flux) {
  double wsum = 0;
  int wcnt = 0;
  for (int64_t k = 0; k < kNWave; ++k)
    if (wave.At(k) >= 5300 && wave.At(k) <= 5500) {
      wsum += flux[k];
      ++wcnt;
    }
  return wsum / wcnt;
}

/// Library row `row` as a rest-frame bin spectrum (norm 2; variance from spectra_err if the
/// library has errors).
inline std::shared_ptr<cubeflow::Spectrum> SpectrumFrom(const cubeflow::sim::LibraryData& lib, int64_t row) {
  auto s = std::make_shared<cubeflow::Spectrum>();
  s->id = row;
  s->wave = lib.wave;
  s->rest_frame = true;
  s->norm = 2.0;
  s->flux.assign(lib.spectra.begin() + row * kNWave, lib.spectra.begin() + (row + 1) * kNWave);
  if (!lib.spectra_err.empty()) {
    s->variance.resize(kNWave);
    for (int64_t k = 0; k < kNWave; ++k) s->variance[k] = std::pow(lib.spectra_err[row * kNWave + k], 2);
  }
  return s;
}

/// Library row `row`'s photometry as band fluxes (times the spectrum's norm, 2).
inline std::shared_ptr<cubeflow::Photometry> PhotometryFrom(const cubeflow::sim::LibraryData& lib, int64_t row) {
  auto p = std::make_shared<cubeflow::Photometry>();
  p->id = row;
  p->bands = lib.bands;
  p->pivot = lib.pivots;
  for (size_t b = 0; b < lib.bands.size(); ++b) p->flux.push_back(lib.photometry[row * lib.bands.size() + b] * 2.0);
  p->error.assign(lib.bands.size(), 0.01);
  return p;
}

/// The records a node emitted, with the key of the item each was emitted for; every emission
/// must be on port "results".
inline std::vector<std::pair<int64_t, std::shared_ptr<const cubeflow::Record>>> Results(
    const cubeflow::testing::FakeContext& ctx) {
  std::vector<std::pair<int64_t, std::shared_ptr<const cubeflow::Record>>> out;
  for (const auto& e : ctx.emissions()) {
    EXPECT_EQ(e.port, "results");
    out.push_back({e.key, std::dynamic_pointer_cast<const cubeflow::Record>(e.data)});
  }
  return out;
}

/// The messages of the errors that `spec`'s checks report on parameter `param`, for `given`
/// parameters over the defaults.
inline std::vector<std::string> ErrorsOn(const cubeflow::NodeSpec& spec, const std::map<std::string, cubeflow::Value>& given,
                                         const std::string& param) {
  std::vector<std::string> v;
  const cubeflow::CheckReport report = spec.RunChecks(cubeflow::testing::DefaultParams(spec, given));
  for (const auto& i : report.issues())
    if (i.is_error && i.param == param) v.push_back(i.message);
  return v;
}

}  // namespace nntest
