// Library generation: reproducibility, FITS round trip, astropy cross-check.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/observables.hpp"
#include "test_data.hpp"

using namespace cubeflow;
using namespace cubeflow::sim;

namespace {
std::shared_ptr<const ForwardModel> DefaultModel() {
  static std::shared_ptr<const ForwardModel> m = [] {
    auto r = ForwardModel::Build(BuiltinSsp(), SimConfig{});
    if (!r.ok()) throw Error(r.status().message());
    return *r;
  }();
  return m;
}
std::string TmpDir() {
  auto d = std::filesystem::temp_directory_path() / ("cubeflow_sim_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d.string();
}
}  // namespace

TEST(Library, ReproducibleAcrossThreadCounts) {
  auto m = DefaultModel();
  const LibraryData a = SimulateLibrary(*m, 100, 64, 42, 1);
  const LibraryData b = SimulateLibrary(*m, 100, 64, 42, 2);
  ASSERT_EQ(a.spectra.size(), b.spectra.size());
  EXPECT_EQ(a.spectra, b.spectra);
  EXPECT_EQ(a.photometry, b.photometry);
  EXPECT_EQ(a.mass_frac, b.mass_frac);
  // a sub-range of the same run gives the same rows
  const LibraryData c = SimulateLibrary(*m, 132, 8, 42, 2);
  for (size_t k = 0; k < c.spectra.size(); ++k) ASSERT_EQ(c.spectra[k], a.spectra[32 * a.wave.n + k]);
  const LibraryData d = SimulateLibrary(*m, 100, 64, 43, 2);
  EXPECT_NE(a.spectra, d.spectra);
  for (int64_t i = 0; i < a.n; ++i) {
    double s = 0;
    for (int k = 0; k < kNumAgeBins; ++k) s += a.mass_frac[i * kNumAgeBins + k];
    EXPECT_NEAR(s, 1.0, 1e-5);
    EXPECT_TRUE(a.snr[i] == 15 || a.snr[i] == 20 || a.snr[i] == 35 || a.snr[i] == 50);
    EXPECT_GE(a.tau_ism[i], 0);
    EXPECT_GE(a.tau_bc[i], 0.5 - 1e-6);
    EXPECT_LE(a.tau_bc[i], 4.0 + 1e-6);
  }
}

TEST(Library, FitsRoundTripAndAstropy) {
  auto m = DefaultModel();
  const std::string path = TmpDir() + "/lib.fits";
  LibraryWriteOptions opt;
  opt.chunk_rows = 50;  // several chunks, the last one partial
  int64_t last = 0;
  opt.progress = [&](int64_t done, int64_t) { last = done; };
  ASSERT_TRUE(GenerateLibrary(*m, 173, 9, path, opt).ok());
  EXPECT_EQ(last, 173);
  auto n = LibrarySize(path);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 173);
  auto rd = ReadLibrary(path, 40, 30);
  ASSERT_TRUE(rd.ok()) << rd.status().message();
  const LibraryData ref = SimulateLibrary(*m, 40, 30, 9, 2);
  EXPECT_EQ(rd->n, 30);
  EXPECT_EQ(rd->spectra, ref.spectra);
  EXPECT_EQ(rd->spectra_err, ref.spectra_err);
  EXPECT_EQ(rd->photometry, ref.photometry);
  EXPECT_EQ(rd->mass_frac, ref.mass_frac);
  EXPECT_EQ(rd->light_frac, ref.light_frac);
  EXPECT_EQ(rd->zh, ref.zh);
  EXPECT_EQ(rd->t_mass, ref.t_mass);
  EXPECT_EQ(rd->sfh_kind, ref.sfh_kind);
  EXPECT_EQ(rd->bands, ref.bands);
  EXPECT_EQ(rd->wave.n, 1761);
  EXPECT_DOUBLE_EQ(rd->wave.At(1760), 7000.0);
  EXPECT_EQ(rd->age_bin_centres.size(), 16u);
  EXPECT_EQ(rd->meta["seed"], "9");
  EXPECT_NE(rd->meta["config"].find("tau_bc_min"), std::string::npos);
  auto all = ReadLibrary(path);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->n, 173);
  EXPECT_FALSE(ReadLibrary(path + ".missing").ok());

  const std::string py = TmpDir() + "/check.py";
  std::ofstream(py) << R"(import sys
import numpy as np
from astropy.io import fits
h = fits.open(sys.argv[1])
n = h[0].header['NOBJ']
assert n == 173, n
assert h['SPECTRA'].data.shape == (173, 1761), h['SPECTRA'].data.shape
assert h['SPEC_ERR'].data.shape == (173, 1761)
assert h['PHOT'].data.shape == (173, 5)
assert h['WAVE'].data.shape == (1761,)
assert abs(h['WAVE'].data[0] - 4800) < 1e-9 and abs(h['WAVE'].data[-1] - 7000) < 1e-9
t = h['LABELS'].data
assert t['MASS_FRAC'].shape == (173, 16)
assert t['T_MASS'].shape == (173, 9)
assert np.allclose(t['MASS_FRAC'].sum(1), 1, atol=1e-5)
assert np.allclose(t['LIGHT_FRAC'].sum(1), 1, atol=1e-5)
assert np.all(np.diff(t['T_MASS'], axis=1) >= -1e-4)
assert set(np.unique(t['SNR'])) <= {15, 20, 35, 50}
s = h['SPECTRA'].data
w = h['WAVE'].data
win = (w >= 5300) & (w <= 5500)
m = s[:, win].mean(1)
assert np.all(np.abs(m - 1) < 0.05), m.min()
assert h[0].header['BAND1'] == 'F275W'
assert abs(h[0].header['AGEC15'] - 14.2) < 1e-9
print('OK', n)
)";
  const std::string cmd = "/usr/bin/python3 " + py + " " + path + " > " + TmpDir() + "/py.out 2>&1";
  if (std::system("/usr/bin/python3 -c 'import astropy' > /dev/null 2>&1") != 0) CUBEFLOW_SKIP_WITHOUT("astropy") << "no astropy";
  const int rc = std::system(cmd.c_str());
  std::ifstream out(TmpDir() + "/py.out");
  std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << text;
}
