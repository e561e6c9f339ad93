// Mock galaxy: cube consistent with truth, files readable by astropy.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cubeflow/sim/galaxy.hpp"

using namespace cubeflow;
using namespace cubeflow::sim;

TEST(MockGalaxy, NoiseFreeCubeMatchesTruthAndAstropyReadsIt) {
  GalaxyConfig g;
  g.nx = 14; g.ny = 12; g.nwave = 800; g.noise = false; g.nan_spaxels = 2;
  auto m = MockGalaxy::Build(g);
  ASSERT_TRUE(m.ok()) << m.status().message();
  const auto dir = std::filesystem::temp_directory_path() / ("cubeflow_gal_" + std::to_string(::getpid()));
  ASSERT_TRUE((*m)->Write(dir.string(), 2).ok());
  // truth of a central spaxel
  const SpaxelTruth t = (*m)->Truth(7, 6);
  ASSERT_TRUE(t.valid);
  EXPECT_GE(t.sigma_kms, 30); EXPECT_LE(t.sigma_kms, 200);
  double s = 0;
  for (float v : t.labels.mass_frac) s += v;
  EXPECT_NEAR(s, 1.0, 1e-5);
  std::vector<float> flux;
  std::vector<double> phot;
  (*m)->RenderSpaxel(7, 6, &flux, &phot);
  {
    std::ofstream o(dir / "spaxel.txt");
    o.precision(9);
    for (float v : flux) o << v << "\n";
  }
  std::ofstream(dir / "check.py") << R"(import sys, numpy as np
from astropy.io import fits
from astropy.wcs import WCS
d = sys.argv[1]
c = fits.open(d + '/cube.fits')
data = c['DATA'].data
assert data.shape == (800, 12, 14), data.shape
assert c['STAT'].data.shape == data.shape
ref = np.loadtxt(d + '/spaxel.txt')
assert np.allclose(data[:, 6, 7], ref, rtol=1e-5, atol=0), np.nanmax(np.abs(data[:, 6, 7] / ref - 1))
assert np.isnan(data[:, 0, 0]).all()           # ragged edge
assert np.isfinite(data[:, 6, 7]).all()
w = WCS(c['DATA'].header)
assert w.naxis == 3 and c['DATA'].header['CTYPE3'] == 'AWAV'
ra, dec = w.celestial.wcs_pix2world([[6.5, 5.5]], 0)[0]
assert abs(ra - 170.062611) < 1e-6 and abs(dec - 12.991528) < 1e-6, (ra, dec)
t = fits.open(d + '/truth.fits')
sfh = t['SFH'].data
assert sfh.shape == (16, 12, 14)
ok = np.isfinite(sfh[0])
assert np.allclose(sfh[:, ok].sum(0), 1, atol=1e-5)
mw = t['MW_LOGAGE'].data
assert np.nanmin(mw) > 8 and np.nanmax(mw) < 10.3
k = fits.open(d + '/kinematics.fits')
v = k['V_STARS'].data; sg = k['SIGMA_STARS'].data
assert np.nanmax(sg) <= 200 and np.nanmin(sg) >= 30
assert np.nanmax(v) > 50 and np.nanmin(v) < -50    # rotation
h = fits.open(d + '/hst_F555W.fits')[0]
assert h.data.shape == (60, 70), h.data.shape
assert h.header['PHOTFLAM'] > 0 and 5000 < h.header['PHOTPLAM'] < 5600
print('OK')
)";
  if (std::system("/usr/bin/python3 -c 'import astropy' > /dev/null 2>&1") != 0) GTEST_SKIP() << "no astropy";
  const std::string cmd = "/usr/bin/python3 " + (dir / "check.py").string() + " " + dir.string() + " > " +
                          (dir / "py.out").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(dir / "py.out");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << text;
}
