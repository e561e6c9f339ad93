#pragma once
// Helpers shared by the tests of cubeflow_fits, cubeflow_plot and the io plugin.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "cubeflow/data.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "temp_dir.hpp"

namespace cftest {

inline std::string DataDir() {
  if (const char* e = std::getenv("CUBEFLOW_DATA_DIR"); e && *e) return e;
  return CUBEFLOW_TEST_DATA_DIR;
}

inline std::string MuseCubePath() { return DataDir() + "/muse/mpdaf_subcub_mosaic_UDF.fits"; }

/// Runs /usr/bin/python3 on a script; returns exit code, output in `out`.
inline int RunPython(const std::string& script, const std::string& dir, std::string& out) {
  const std::string py = dir + "/check.py", log = dir + "/check.log";
  std::ofstream(py) << script;
  const int rc = std::system(("/usr/bin/python3 " + py + " > " + log + " 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline bool HaveAstropy() {
  return std::system("/usr/bin/python3 -c 'import astropy.io.fits, astropy.wcs' > /dev/null 2>&1") == 0;
}

/// Celestial cards: TAN projection, 0.2"/pix, rotated by `rot_deg`, CD matrix, ICRS, with the
/// FITS (1-based) reference pixel (crpix1, crpix2) at (crval1, crval2) degrees.
inline cubeflow::CelestialWcs TanWcs(int64_t nx, int64_t ny, double rot_deg, double crval1, double crval2,
                                     double crpix1, double crpix2) {
  using cubeflow::fits::FitsReal;
  using cubeflow::fits::FitsString;
  using cubeflow::fits::MakeCard;
  const double s = 0.2 / 3600.0, r = rot_deg * M_PI / 180.0;
  std::string c;
  c += MakeCard("NAXIS", "2") + MakeCard("NAXIS1", std::to_string(nx)) + MakeCard("NAXIS2", std::to_string(ny));
  c += MakeCard("CTYPE1", FitsString("RA---TAN")) + MakeCard("CTYPE2", FitsString("DEC--TAN"));
  c += MakeCard("CUNIT1", FitsString("deg")) + MakeCard("CUNIT2", FitsString("deg"));
  c += MakeCard("CRVAL1", FitsReal(crval1)) + MakeCard("CRVAL2", FitsReal(crval2));
  c += MakeCard("CRPIX1", FitsReal(crpix1)) + MakeCard("CRPIX2", FitsReal(crpix2));
  c += MakeCard("CD1_1", FitsReal(-s * std::cos(r))) + MakeCard("CD1_2", FitsReal(s * std::sin(r)));
  c += MakeCard("CD2_1", FitsReal(s * std::sin(r))) + MakeCard("CD2_2", FitsReal(s * std::cos(r)));
  c += MakeCard("RADESYS", FitsString("ICRS"));
  return cubeflow::CelestialWcs{c};
}

/// TanWcs with the reference pixel (3.5, -2.25) at (53.16, -27.78) (the UDF).
inline cubeflow::CelestialWcs RotatedWcs(int64_t nx, int64_t ny, double rot_deg = 42.0) {
  return TanWcs(nx, ny, rot_deg, 53.16, -27.78, 3.5, -2.25);
}

/// A map of `nx` x `ny` x `nplanes` values `fill` (kind "value", "error", "ivar", "mask", "index").
inline std::shared_ptr<cubeflow::Map> FilledMap(const std::string& name, const std::string& kind,
                                                const cubeflow::CelestialWcs& wcs, int64_t nx, int64_t ny,
                                                int64_t nplanes, double fill) {
  auto m = std::make_shared<cubeflow::Map>();
  m->name = name;
  m->kind = kind;
  m->nx = nx;
  m->ny = ny;
  m->nplanes = nplanes;
  m->wcs = wcs;
  m->data.assign(static_cast<size_t>(nx * ny * nplanes), fill);
  return m;
}

/// A small cube with a recognisable pattern: flux = x + 10 y + 100 k + 0.5, variance = 1 + k,
/// a NaN at (1, 2, 3); wavelengths 4750 + 1.25 k (air).
inline std::shared_ptr<cubeflow::Cube> SyntheticCube(int64_t nx = 7, int64_t ny = 5, int64_t nw = 40) {
  auto c = std::make_shared<cubeflow::Cube>();
  c->nx = nx;
  c->ny = ny;
  c->nwave = nw;
  c->wave = cubeflow::WavelengthAxis::Linear(4750.0, 1.25, nw, true);
  c->flux.resize(static_cast<size_t>(nx * ny * nw));
  c->variance.resize(c->flux.size());
  for (int64_t k = 0; k < nw; ++k)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        c->flux[c->Index(x, y, k)] = static_cast<float>(x + 10 * y + 100 * k + 0.5);
        c->variance[c->Index(x, y, k)] = static_cast<float>(1 + k);
      }
  c->flux[c->Index(1, 2, 3)] = NAN;
  c->wcs = RotatedWcs(nx, ny);
  c->bunit = "10**(-20)*erg/s/cm**2/Angstrom";
  c->header["OBJECT"] = "SYNTH-1";
  c->header["EXPTIME"] = "3600";
  return c;
}

}  // namespace cftest
