// Tests of cubeflow::fits: cube reader/writer, Wcs, MAPS writer (cross-checked with astropy).
#include <fitsio.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/fits/maps.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "fits_test_util.hpp"
#include "test_data.hpp"

using namespace cubeflow;
using cftest::TempDir;

namespace {

bool SameFloat(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

::testing::AssertionResult Mentions(const Status& st, std::initializer_list<std::string> words) {
  if (st.ok()) return ::testing::AssertionFailure() << "expected an error";
  for (const auto& w : words)
    if (st.message().find(w) == std::string::npos)
      return ::testing::AssertionFailure() << "message does not mention '" << w << "': " << st.message();
  return ::testing::AssertionSuccess();
}

/// Writes a FITS file with CFITSIO directly: a primary HDU (optionally an image) and optionally
/// an image extension named `ext` with `naxis` axes; `wave_keys` controls CRVAL3/CDELT3.
void WriteRawFits(const std::string& path, int prim_naxis, const std::string& ext, int ext_naxis, bool wave_keys,
                  float fill = 1.0f) {
  fitsfile* f = nullptr;
  int status = 0;
  std::filesystem::remove(path);
  fits_create_diskfile(&f, path.c_str(), &status);
  long naxes[3] = {6, 4, 5};
  auto add = [&](int naxis) {
    fits_create_img(f, FLOAT_IMG, naxis, naxes, &status);
    if (naxis == 3 && wave_keys) {
      double crval = 5000, cdelt = 2, crpix = 1;
      fits_update_key(f, TSTRING, "CTYPE3", const_cast<char*>("AWAV"), nullptr, &status);
      fits_update_key(f, TDOUBLE, "CRVAL3", &crval, nullptr, &status);
      fits_update_key(f, TDOUBLE, "CDELT3", &cdelt, nullptr, &status);
      fits_update_key(f, TDOUBLE, "CRPIX3", &crpix, nullptr, &status);
    }
    long n = naxis > 0 ? 1 : 0;
    for (int i = 0; i < naxis; ++i) n *= naxes[i];
    std::vector<float> v(static_cast<size_t>(n), fill);
    if (n > 0) fits_write_img(f, TFLOAT, 1, n, v.data(), &status);
  };
  add(prim_naxis);
  if (!ext.empty()) {
    add(ext_naxis);
    fits_update_key(f, TSTRING, "EXTNAME", const_cast<char*>(ext.c_str()), nullptr, &status);
  }
  fits_close_file(f, &status);
  ASSERT_EQ(status, 0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Cube round trip

TEST(CubeIo, RoundTripFullCube) {
  TempDir dir;
  auto c = cftest::SyntheticCube();
  c->mask.assign(c->flux.size(), 0);
  c->mask[c->Index(2, 1, 7)] = 1;
  const std::string path = dir.File("cube.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  auto r = fits::ReadCube(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Cube& d = **r;
  EXPECT_EQ(d.nx, 7);
  EXPECT_EQ(d.ny, 5);
  EXPECT_EQ(d.nwave, 40);
  ASSERT_EQ(d.flux.size(), c->flux.size());
  ASSERT_EQ(d.variance.size(), c->variance.size());
  ASSERT_EQ(d.mask.size(), c->mask.size());
  for (size_t i = 0; i < d.flux.size(); ++i) {
    ASSERT_TRUE(SameFloat(d.flux[i], c->flux[i])) << i;
    ASSERT_EQ(d.variance[i], c->variance[i]) << i;
    ASSERT_EQ(d.mask[i], c->mask[i]) << i;
  }
  for (int64_t k = 0; k < 40; ++k) EXPECT_NEAR(d.wave.At(k), 4750 + 1.25 * k, 1e-9);
  EXPECT_TRUE(d.wave.air);
  EXPECT_EQ(d.bunit, c->bunit);
  EXPECT_EQ(d.header.at("OBJECT"), "SYNTH-1");
  EXPECT_DOUBLE_EQ(std::stod(d.header.at("EXPTIME")), 3600.0);
  EXPECT_EQ(d.source, path);
  EXPECT_NE(d.wcs.cards.find("CD1_2"), std::string::npos);
  EXPECT_NE(d.wcs.cards.find("NAXIS1  =                    7"), std::string::npos);
  EXPECT_EQ(d.wcs.cards.find("CTYPE3"), std::string::npos);  // celestial axes only
  EXPECT_EQ(d.wcs.cards.size() % 80, 0u);
}

TEST(CubeIo, WavelengthSubsetReadsOnlyThoseChannels) {
  TempDir dir;
  auto c = cftest::SyntheticCube();
  const std::string path = dir.File("cube.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  fits::ReadCubeOptions o;
  o.wave_min = 4760;  // k = 8
  o.wave_max = 4780;  // k = 24
  auto r = fits::ReadCube(path, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Cube& d = **r;
  ASSERT_EQ(d.nwave, 17);
  EXPECT_NEAR(d.wave.At(0), 4760.0, 1e-9);
  EXPECT_NEAR(d.wave.At(16), 4780.0, 1e-9);
  for (int64_t k = 0; k < d.nwave; ++k)
    for (int64_t y = 0; y < 5; ++y)
      for (int64_t x = 0; x < 7; ++x) {
        ASSERT_TRUE(SameFloat(d.flux[d.Index(x, y, k)], c->flux[c->Index(x, y, k + 8)]));
        ASSERT_EQ(d.variance[d.Index(x, y, k)], c->variance[c->Index(x, y, k + 8)]);
      }
  // Only one bound.
  o.wave_min = 4790;
  o.wave_max = 0;
  auto r2 = fits::ReadCube(path, o);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ((*r2)->nwave, 8);  // k = 32..39
  EXPECT_EQ((*r2)->flux[0], c->flux[c->Index(0, 0, 32)]);
}

TEST(CubeIo, LogAndVacuumAxesRoundTrip) {
  TempDir dir;
  auto c = cftest::SyntheticCube(3, 2, 30);
  c->wave.log = true;
  c->wave.air = false;
  c->wave.crval = std::log(4800.0);
  c->wave.cdelt = 1e-4;
  c->wave.crpix = 3;
  const std::string path = dir.File("log.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  fits::ReadCubeOptions o;
  o.wave_min = c->wave.At(5) - 1e-6;
  auto r = fits::ReadCube(path, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Cube& d = **r;
  EXPECT_TRUE(d.wave.log);
  EXPECT_FALSE(d.wave.air);
  ASSERT_EQ(d.nwave, 25);
  for (int64_t k = 0; k < d.nwave; ++k) EXPECT_NEAR(d.wave.At(k), c->wave.At(k + 5), 1e-8);
}

TEST(CubeIo, SingleHduCubeFromPrimary) {
  TempDir dir;
  const std::string path = dir.File("prim.fits");
  WriteRawFits(path, 3, "", 0, true, 2.5f);
  auto r = fits::ReadCube(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->nx, 6);
  EXPECT_EQ((*r)->nwave, 5);
  EXPECT_TRUE((*r)->variance.empty());
  EXPECT_NEAR((*r)->wave.At(4), 5008.0, 1e-9);
  EXPECT_EQ((*r)->flux[17], 2.5f);
}

// ---------------------------------------------------------------------------------------------
// Bad files: every error names the file and, where there is one, the HDU.

TEST(CubeIoErrors, MissingFile) {
  const std::string path = "/nonexistent/dir/cube.fits";
  auto r = fits::ReadCube(path);
  EXPECT_TRUE(Mentions(r.status(), {path, "No such file"}));
}

TEST(CubeIoErrors, TruncatedFile) {
  TempDir dir;
  auto c = cftest::SyntheticCube(20, 20, 40);
  const std::string good = dir.File("good.fits"), bad = dir.File("cut.fits");
  ASSERT_TRUE(fits::WriteCube(good, *c).ok());
  const auto size = std::filesystem::file_size(good);
  {
    std::ifstream in(good, std::ios::binary);
    std::vector<char> buf(size);
    in.read(buf.data(), static_cast<std::streamsize>(size));
    std::ofstream(bad, std::ios::binary).write(buf.data(), static_cast<std::streamsize>(2880 * 2 + 20000));
  }
  auto r = fits::ReadCube(bad);
  EXPECT_TRUE(Mentions(r.status(), {bad, "DATA", "truncated"}));
}

TEST(CubeIoErrors, GarbageBytes) {
  TempDir dir;
  const std::string path = dir.File("garbage.fits");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 10000; ++i) out.put(static_cast<char>((i * 7919 + 13) % 251));
  }
  auto r = fits::ReadCube(path);
  EXPECT_TRUE(Mentions(r.status(), {path, "not FITS"}));
}

TEST(CubeIoErrors, MissingStatWhenRequired) {
  TempDir dir;
  auto c = cftest::SyntheticCube();
  c->variance.clear();
  const std::string path = dir.File("nostat.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  fits::ReadCubeOptions o;
  EXPECT_TRUE(fits::ReadCube(path, o).ok());  // not required: no variance
  o.require_stat = true;
  auto r = fits::ReadCube(path, o);
  EXPECT_TRUE(Mentions(r.status(), {path, "'STAT'", "PRIMARY, DATA"}));
  o.stat_hdu = "VARIANCE";
  EXPECT_TRUE(Mentions(fits::ReadCube(path, o).status(), {path, "'VARIANCE'"}));
}

TEST(CubeIoErrors, MissingDataExtension) {
  TempDir dir;
  const std::string path = dir.File("ext.fits");
  WriteRawFits(path, 0, "FLUX", 3, true);
  auto r = fits::ReadCube(path);
  EXPECT_TRUE(Mentions(r.status(), {path, "'DATA'", "FLUX"}));
  fits::ReadCubeOptions o;
  o.data_hdu = "FLUX";
  EXPECT_TRUE(fits::ReadCube(path, o).ok());
}

TEST(CubeIoErrors, TwoDimensionalImage) {
  TempDir dir;
  const std::string ext = dir.File("img_ext.fits"), prim = dir.File("img_prim.fits");
  WriteRawFits(ext, 0, "DATA", 2, false);
  EXPECT_TRUE(Mentions(fits::ReadCube(ext).status(), {ext, "HDU 'DATA'", "2-D image", "6 x 4"}));
  WriteRawFits(prim, 2, "", 0, false);
  EXPECT_TRUE(Mentions(fits::ReadCube(prim).status(), {prim, "primary HDU", "2-D image"}));
}

TEST(CubeIoErrors, NoWavelengthKeywords) {
  TempDir dir;
  const std::string path = dir.File("nowave.fits");
  WriteRawFits(path, 0, "DATA", 3, false);
  EXPECT_TRUE(Mentions(fits::ReadCube(path).status(), {path, "HDU 'DATA'", "CRVAL3"}));
}

TEST(CubeIoErrors, AllNaN) {
  TempDir dir;
  const std::string path = dir.File("nan.fits");
  WriteRawFits(path, 0, "DATA", 3, true, NAN);
  EXPECT_TRUE(Mentions(fits::ReadCube(path).status(), {path, "HDU 'DATA'", "NaN everywhere"}));
}

TEST(CubeIoErrors, WaveRangeOutsideCube) {
  TempDir dir;
  auto c = cftest::SyntheticCube();
  const std::string path = dir.File("cube.fits");
  ASSERT_TRUE(fits::WriteCube(path, *c).ok());
  fits::ReadCubeOptions o;
  o.wave_min = 6000;
  o.wave_max = 7000;
  EXPECT_TRUE(Mentions(fits::ReadCube(path, o).status(), {path, "outside", "4750"}));
  o.wave_min = 4800;
  o.wave_max = 4790;
  EXPECT_TRUE(Mentions(fits::ReadCube(path, o).status(), {path, "wave_min"}));
}

TEST(CubeIoErrors, WriteIntoMissingDirectory) {
  auto c = cftest::SyntheticCube();
  const std::string path = "/nonexistent/dir/out.fits";
  EXPECT_TRUE(Mentions(fits::WriteCube(path, *c), {path}));
}

// ---------------------------------------------------------------------------------------------
// Real MUSE cube

TEST(CubeIoMuse, ReadsMpdafCube) {
  const std::string path = cftest::MuseCubePath();
  if (!std::filesystem::exists(path)) CUBEFLOW_SKIP_WITHOUT_DATA() << "MUSE test cube not found: " << path << " (set CUBEFLOW_DATA_DIR)";
  auto r = fits::ReadCube(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Cube& c = **r;
  EXPECT_EQ(c.nx, 30);
  EXPECT_EQ(c.ny, 30);
  EXPECT_EQ(c.nwave, 500);
  EXPECT_EQ(c.variance.size(), c.flux.size());
  EXPECT_TRUE(c.mask.empty());
  EXPECT_TRUE(c.wave.air);
  EXPECT_NEAR(c.wave.At(0), 4750.0, 1e-9);
  EXPECT_NEAR(c.wave.At(499), 4750.0 + 499 * 1.25, 1e-9);
  EXPECT_NE(c.bunit.find("10**-20"), std::string::npos);
  EXPECT_EQ(c.header.at("OBJECT"), "UDF-MOSAIC");
  EXPECT_EQ(c.header.at("INSTRUME"), "MUSE");
  EXPECT_NE(c.wcs.cards.find("CD1_2"), std::string::npos);
  EXPECT_NE(c.wcs.cards.find("ICRS"), std::string::npos);

  fits::ReadCubeOptions o;
  o.wave_min = 5000;
  o.wave_max = 5100;
  auto s = fits::ReadCube(path, o);
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ((*s)->nwave, 81);  // channels 200..280
  for (int64_t k = 0; k < 81; k += 10)
    for (int64_t y = 0; y < 30; y += 7)
      for (int64_t x = 0; x < 30; x += 5) {
        ASSERT_TRUE(SameFloat((*s)->flux[(*s)->Index(x, y, k)], c.flux[c.Index(x, y, k + 200)]));
        ASSERT_TRUE(SameFloat((*s)->variance[(*s)->Index(x, y, k)], c.variance[c.Index(x, y, k + 200)]));
      }

  // Pixel values against astropy.
  if (!cftest::HaveAstropy()) return;
  TempDir dir;
  std::ostringstream py;
  py << "from astropy.io import fits\nh = fits.open('" << path << "')\n";
  py << "d = h['DATA'].data\nv = h['STAT'].data\n";
  py << "for (k, y, x) in [(0,0,0), (250,13,17), (499,29,29), (123,4,26)]:\n";
  py << "    print(repr(float(d[k, y, x])), repr(float(v[k, y, x])))\n";
  std::string out;
  ASSERT_EQ(cftest::RunPython(py.str(), dir.path(), out), 0) << out;
  std::istringstream in(out);
  const int idx[4][3] = {{0, 0, 0}, {250, 13, 17}, {499, 29, 29}, {123, 4, 26}};
  for (const auto& t : idx) {
    std::string a, b;
    in >> a >> b;
    const double fa = a == "nan" ? NAN : std::stod(a), fb = b == "nan" ? NAN : std::stod(b);
    EXPECT_TRUE(SameFloat(c.flux[c.Index(t[2], t[1], t[0])], static_cast<float>(fa))) << a;
    EXPECT_TRUE(SameFloat(c.variance[c.Index(t[2], t[1], t[0])], static_cast<float>(fb))) << b;
  }
}

// ---------------------------------------------------------------------------------------------
// Wcs

TEST(Wcs, RoundTripAndPixelScale) {
  auto w = fits::Wcs::FromCards(cftest::RotatedWcs(10, 10, 42.0));
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_NEAR(w->PixelScaleArcsec(), 0.2, 1e-9);
  // Reference pixel (CRPIX 3.5, -2.25; 1-based) maps to CRVAL.
  double ra, dec;
  w->PixelToSky(2.5, -3.25, ra, dec);
  EXPECT_NEAR(ra, 53.16, 1e-10);
  EXPECT_NEAR(dec, -27.78, 1e-10);
  for (double x : {0.0, 4.3, 9.0})
    for (double y : {0.0, 7.7}) {
      double px, py;
      w->PixelToSky(x, y, ra, dec);
      w->SkyToPixel(ra, dec, px, py);
      EXPECT_NEAR(px, x, 1e-8);
      EXPECT_NEAR(py, y, 1e-8);
    }
  // One pixel step moves 0.2 arcsec on the sky.
  double ra0, dec0, ra1, dec1;
  w->PixelToSky(5, 5, ra0, dec0);
  w->PixelToSky(6, 5, ra1, dec1);
  const double dra = (ra1 - ra0) * std::cos(dec0 * M_PI / 180), ddec = dec1 - dec0;
  EXPECT_NEAR(std::hypot(dra, ddec) * 3600, 0.2, 1e-6);
  // Copies are independent and give the same answers.
  fits::Wcs copy = *w;
  copy.PixelToSky(6, 5, ra, dec);
  EXPECT_DOUBLE_EQ(ra, ra1);
  EXPECT_DOUBLE_EQ(dec, dec1);
}

TEST(Wcs, ResultFormsAgreeAndNameAPositionWithoutPixel) {
  auto w = fits::Wcs::FromCards(cftest::RotatedWcs(10, 10, 42.0));
  ASSERT_TRUE(w.ok()) << w.status().message();
  const auto sky = w->ToSky(4.3, 7.7);
  ASSERT_TRUE(sky.ok()) << sky.status().message();
  double ra, dec;
  w->PixelToSky(4.3, 7.7, ra, dec);
  EXPECT_EQ(sky->ra, ra);
  EXPECT_EQ(sky->dec, dec);
  const auto pix = w->ToPixel(sky->ra, sky->dec);
  ASSERT_TRUE(pix.ok()) << pix.status().message();
  EXPECT_NEAR(pix->x, 4.3, 1e-8);
  EXPECT_NEAR(pix->y, 7.7, 1e-8);
  // The far side of the sky has no position in a TAN projection: an error value that names
  // the position; the throwing form used by node bodies throws the same message.
  const auto far = w->ToPixel(53.16 + 180.0, 27.78);
  ASSERT_FALSE(far.ok());
  EXPECT_NE(far.status().message().find("sky position (233.16"), std::string::npos) << far.status().message();
  EXPECT_NE(far.status().message().find("has no pixel position"), std::string::npos) << far.status().message();
  double x = -1, y = -1;
  try {
    w->SkyToPixel(53.16 + 180.0, 27.78, x, y);
    ADD_FAILURE() << "SkyToPixel did not throw";
  } catch (const cubeflow::Error& e) {
    EXPECT_EQ(std::string(e.what()), far.status().message());
  }
  EXPECT_EQ(x, -1);  // untouched on failure
}

TEST(Wcs, RejectsEmptyOrNonCelestial) {
  EXPECT_FALSE(fits::Wcs::FromCards(CelestialWcs{}).ok());
  std::string c = fits::MakeCard("CTYPE1", fits::FitsString("LINEAR")) + fits::MakeCard("CRVAL1", "1.0");
  EXPECT_FALSE(fits::Wcs::FromCards(CelestialWcs{c}).ok());
}

TEST(FileHash, DetectsChangesAndIsStable) {
  TempDir dir;
  const std::string a = dir.File("a.bin");
  std::string content(100003, 'x');
  std::ofstream(a, std::ios::binary) << content;
  auto h1 = fits::FileHash64(a);
  auto h2 = fits::FileHash64(a);
  ASSERT_TRUE(h1.ok());
  EXPECT_EQ(*h1, *h2);
  content[77777] = 'y';
  std::ofstream(a, std::ios::binary) << content;
  EXPECT_NE(*fits::FileHash64(a), *h1);
  content.pop_back();
  std::ofstream(a, std::ios::binary) << content;
  EXPECT_NE(*fits::FileHash64(a), *h1);
  EXPECT_FALSE(fits::FileHash64(dir.File("none")).ok());
  EXPECT_EQ(fits::FormatHex64(0xabcULL), "0000000000000abc");
}

// ---------------------------------------------------------------------------------------------
// MAPS product, read back by astropy

namespace {

std::shared_ptr<Map> MakeMap(const std::string& name, const std::string& kind, const CelestialWcs& wcs, int64_t nx,
                             int64_t ny, int64_t np, double base) {
  auto m = cftest::FilledMap(name, kind, wcs, nx, ny, np, 0.0);
  for (size_t i = 0; i < m->data.size(); ++i) m->data[i] = base + static_cast<double>(i);
  return m;
}

}  // namespace

TEST(MapsWriter, AstropyReadsEveryExtensionAndWcsAgrees) {
  if (!cftest::HaveAstropy()) CUBEFLOW_SKIP_WITHOUT("astropy") << "/usr/bin/python3 with astropy not available";
  TempDir dir;
  // The WCS: the real MUSE cube's if present (CD rotated 42 deg), else a synthetic one.
  std::string cube_path = cftest::MuseCubePath();
  std::shared_ptr<Cube> cube;
  if (cftest::HaveData(cube_path)) {
    fits::ReadCubeOptions o;
    o.wave_min = 5000;
    o.wave_max = 5010;
    cube = fits::ReadCube(cube_path, o).ValueOrThrow();
  } else {
    cube = cftest::SyntheticCube(30, 30, 10);
    cube_path = dir.File("synthetic.fits");
    ASSERT_TRUE(fits::WriteCube(cube_path, *cube).ok());
  }
  const int64_t nx = cube->nx, ny = cube->ny;
  fits::MapsProduct p;
  p.run.cubeflow_version = "0.1.0";
  p.run.pipeline_file = "/some/where/a/rather/long/directory/name/that/goes/on/and/on/for/a/while/pipeline.yaml";
  p.run.started_utc = "2024-01-02T03:04:05Z";
  RunInfo::NodeInfo n;
  n.name = "bin";
  n.type = "binning.voronoi";
  n.plugin = "binning";
  n.plugin_version = "0.1.0";
  n.params["target_snr"] = "35";
  n.params["a_long_list_parameter"] = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]";
  p.run.nodes.push_back(n);
  p.run.input_files.push_back(cube_path);
  p.primary["OBJECT"] = "TEST";
  auto flux = MakeMap("FLUX", "value", cube->wcs, nx, ny, 1, 0.5);
  flux->bunit = "10**-20 erg/s/cm2/Angstrom";
  auto err = MakeMap("FLUX_ERR", "error", cube->wcs, nx, ny, 1, 1.0);
  err->companion_of = "FLUX";
  auto mask = MakeMap("FLUX_MASK", "mask", cube->wcs, nx, ny, 1, 0.0);
  mask->companion_of = "FLUX";
  auto sfh = MakeMap("SFH", "value", cube->wcs, nx, ny, 3, 0.0);
  sfh->plane_names = {"0.01 Gyr", "0.1 Gyr", "1 Gyr"};
  p.maps = {flux, err, mask, sfh};
  fits::BinaryTable t;
  t.name = "BINS";
  t.nrows = 3;
  t.columns.push_back(fits::TableColumn::Int64("BINID", {0, 1, 2}));
  t.columns.push_back(fits::TableColumn::Double("SNR", {10.5, 20.25, 30.125}));
  t.columns.push_back(fits::TableColumn::DoubleVector("W", 2, {1, 2, 3, 4, 5, 6}, "", "weights"));
  p.tables.push_back(t);
  const std::string out_path = dir.File("maps.fits");
  Status st = fits::WriteMapsFile(out_path, p);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_FALSE(std::filesystem::exists(out_path + ".tmp-" + std::to_string(::getpid())));

  auto w = fits::Wcs::FromCards(cube->wcs);
  ASSERT_TRUE(w.ok()) << w.status().message();
  const double pix[4][2] = {{0, 0}, {29, 0}, {13.3, 21.7}, {29, 29}};
  std::ostringstream py;
  py.precision(17);
  py << "import sys, warnings\nwarnings.simplefilter('error')\n"
     << "from astropy.io import fits\nfrom astropy.wcs import WCS\nimport numpy as np\n"
     << "h = fits.open('" << out_path << "', checksum=True)\n"
     << "orig = fits.open('" << cube_path << "')\n"
     << "ow = WCS(orig['DATA'].header if 'DATA' in orig else orig[0].header).celestial\n"
     << "pix = np.array([[0,0],[29,0],[13.3,21.7],[29,29]], dtype=float)\n"
     << "mine = np.array([";
  for (const auto& q : pix) {
    double ra, dec;
    w->PixelToSky(q[0], q[1], ra, dec);
    py << "[" << ra << "," << dec << "],";
  }
  py << "])\n"
     << "ref = ow.all_pix2world(pix, 0)\n"
     << "assert np.abs(ref - mine).max() < 1e-6, ('cube wcs vs Wcs class', ref, mine)\n"
     << "ph = h[0].header\n"
     << "assert ph['CFVERS'] == '0.1.0', ph['CFVERS']\n"
     << "assert ph['PIPEFILE'] == '" << p.run.pipeline_file << "', ph['PIPEFILE']\n"
     << "assert ph['CFN01TYP'] == 'binning.voronoi'\n"
     << "pars = sorted(ph[k] for k in ph if k.startswith('CFN01P'))\n"
     << "assert pars == sorted(['target_snr=35', 'a_long_list_parameter=" << n.params["a_long_list_parameter"]
     << "']), pars\n"
     << "assert len(ph['INHASH01']) == 16 and ph['INFILE01'] == '" << cube_path << "'\n"
     << "assert ph['PARTIAL'] is False and ph['OBJECT'] == 'TEST'\n"
     << "names = [x.name for x in h]\n"
     << "assert names == ['PRIMARY', 'FLUX', 'FLUX_ERR', 'FLUX_MASK', 'SFH', 'BINS'], names\n"
     << "for x in h:\n"
     << "    assert 'CHECKSUM' in x.header and 'DATASUM' in x.header, x.name\n"
     << "assert h['FLUX'].header['ERRDATA'] == 'FLUX_ERR' and h['FLUX'].header['QUALDATA'] == 'FLUX_MASK'\n"
     << "assert h['FLUX_ERR'].header['DATA'] == 'FLUX' and h['FLUX_MASK'].header['DATA'] == 'FLUX'\n"
     << "assert h['FLUX'].header['BUNIT'] == '" << flux->bunit << "'\n"
     << "assert h['FLUX_MASK'].data.dtype.kind == 'i' and h['FLUX_MASK'].data.dtype.itemsize == 4\n"
     << "assert h['FLUX_MASK'].header['QBIT5'] == 'FAILED'\n"
     << "assert h['FLUX'].data.shape == (" << ny << "," << nx << ")\n"
     << "assert h['FLUX'].data[2, 3] == 0.5 + 2*" << nx << " + 3\n"
     << "assert h['SFH'].data.shape == (3," << ny << "," << nx << ")\n"
     << "assert h['SFH'].data[1, 0, 0] == " << nx * ny << "\n"
     << "assert [h['SFH'].header['C%d' % i] for i in (1,2,3)] == ['0.01 Gyr', '0.1 Gyr', '1 Gyr']\n"
     << "for name in ['FLUX', 'FLUX_ERR', 'FLUX_MASK', 'SFH']:\n"
     << "    wc = WCS(h[name].header).celestial\n"
     << "    sky = wc.all_pix2world(pix, 0)\n"
     << "    assert np.abs(sky - mine).max() < 1e-6, (name, sky, mine)\n"
     << "tb = h['BINS'].data\n"
     << "assert list(tb['BINID']) == [0, 1, 2] and tb['SNR'][2] == 30.125\n"
     << "assert tb['W'].shape == (3, 2) and tb['W'][2, 1] == 6\n"
     << "h.close()\norig.close()\nprint('OK')\n";
  std::string out;
  const int rc = cftest::RunPython(py.str(), dir.path(), out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("OK"), std::string::npos) << out;
}

TEST(MapsWriter, FailedWriteLeavesTargetUntouched) {
  TempDir dir;
  const std::string path = dir.File("maps.fits");
  std::ofstream(path) << "previous product";
  fits::MapsProduct p;
  auto m = MakeMap("SNR", "value", cftest::RotatedWcs(4, 3), 4, 3, 1, 1.0);
  p.maps = {m};
  // The temporary file's name is taken by a directory: the write fails after validation.
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::filesystem::create_directories(tmp + "/blocker");
  Status st = fits::WriteMapsFile(path, p);
  EXPECT_TRUE(Mentions(st, {path}));
  std::ifstream in(path);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "previous product");
  std::filesystem::remove_all(tmp);
  // Unwritable location.
  EXPECT_TRUE(Mentions(fits::WriteMapsFile("/nonexistent/dir/maps.fits", p), {"/nonexistent/dir/maps.fits"}));
  // overwrite = false refuses an existing file.
  p.overwrite = false;
  EXPECT_TRUE(Mentions(fits::WriteMapsFile(path, p), {path, "overwrite"}));
  // Invalid product: duplicate names.
  p.overwrite = true;
  p.maps = {m, m};
  EXPECT_TRUE(Mentions(fits::WriteMapsFile(path, p), {path, "SNR", "twice"}));
  std::ifstream in2(path);
  std::getline(in2, content);
  EXPECT_EQ(content, "previous product");
  // Now a good write replaces it, and leaves no temporary file behind.
  p.maps = {m};
  ASSERT_TRUE(fits::WriteMapsFile(path, p).ok());
  EXPECT_GT(std::filesystem::file_size(path), 2880u);
  EXPECT_FALSE(std::filesystem::exists(tmp));
}
