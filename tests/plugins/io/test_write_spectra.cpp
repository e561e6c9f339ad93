// Tests of io.write_spectra: bins arriving out of order, failed and missing bins, WCS (linear and
// log), error conventions, the BINS table, provenance, atomic writes and errors; read back with
// CFITSIO and, where available, astropy.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "fits_test_util.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "cubeflow/registry.hpp"
#include "cubeflow/fits/units.hpp"
#include "io_nodes.hpp"
#include "spectra_test_util.hpp"
#include "test_data.hpp"

using namespace cubeflow;
using cftest::TempDir;
using cftest::MakeTypedNode;
using spectest::FitsFile;
using spectest::kNaN;
using spectest::SinkContext;

namespace {

using WS = io::WriteSpectraNode;

/// 5 x 4 spaxels, 5 bins (spaxel s in bin s % 5, the last row unbinned), with the rotated WCS.
std::shared_ptr<Binning> FiveBins() {
  auto b = std::make_shared<Binning>();
  b->nx = 5;
  b->ny = 4;
  b->binid.assign(20, -1);
  b->bins.resize(5);
  for (int s = 0; s < 15; ++s) {
    b->binid[static_cast<size_t>(s)] = s % 5;
    b->bins[static_cast<size_t>(s % 5)].spaxels.push_back(s);
  }
  for (int i = 0; i < 5; ++i) {
    auto& bin = b->bins[static_cast<size_t>(i)];
    bin.nspax = 3;
    bin.x = i + 0.25;
    bin.y = 1.0 + 0.1 * i;
    bin.snr = 20.0 + i;
    bin.signal = 1000.0 * (i + 1);
    bin.noise = 1000.0 * (i + 1) / (20.0 + i);
  }
  b->wcs = cftest::RotatedWcs(5, 4);
  return b;
}

/// A spectrum of bin `id` on `axis`: flux = 100 id + k + 0.25, variance = 1 + 0.5 k + id;
/// pixel 5 masked, pixel 7 NaN flux (bin 0 only), meta as binning.voronoi + restframe give.
std::shared_ptr<Spectrum> BinSpectrum(int64_t id, const WavelengthAxis& axis, bool with_var = true) {
  auto s = std::make_shared<Spectrum>();
  s->id = id;
  s->wave = axis;
  const auto n = static_cast<size_t>(axis.n);
  s->flux.resize(n);
  if (with_var) s->variance.resize(n);
  s->mask.assign(n, 0);
  for (size_t k = 0; k < n; ++k) {
    s->flux[k] = 100.0 * static_cast<double>(id) + static_cast<double>(k) + 0.25;
    if (with_var) s->variance[k] = 1.0 + 0.5 * static_cast<double>(k) + static_cast<double>(id);
  }
  s->mask[5] = 1;
  if (id == 0) s->flux[7] = kNaN;
  s->meta["x"] = id + 0.3;  // differs from the binning's x (id + 0.25): the spectrum's value wins
  s->meta["y"] = 1.0 + 0.1 * static_cast<double>(id);
  s->meta["nspax"] = 3;
  s->meta["snr"] = 20.0 + static_cast<double>(id);
  s->meta["bunit_scale"] = 1e-20;
  s->meta["velocity"] = 10.0 * static_cast<double>(id) - 5.0;
  s->meta["dispersion"] = 80.0 + static_cast<double>(id);
  s->meta["my_key"] = 0.5 * static_cast<double>(id);
  return s;
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : std::filesystem::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

RunInfo SomeRun(const std::string& path) {
  RunInfo r;
  r.cubeflow_version = "0.1.0";
  r.pipeline_file = "test.yaml";
  RunInfo::NodeInfo n;
  n.name = "spec";
  n.type = "io.write_spectra";
  n.plugin = "io";
  n.plugin_version = "0.1.0";
  n.params = {{"path", path}, {"error", "sigma"}, {"dtype", "float32"}};
  r.nodes.push_back(n);
  return r;
}

const WavelengthAxis kAxis = WavelengthAxis::Linear(4750.0, 1.25, 40, /*air=*/true);

/// Bins 3, 0, 4 arrive (in that order), bin 1 fails, bin 2 never arrives.
void DriveFive(WS& node, SinkContext& ctx) {
  ctx.SetInput("binning", FiveBins());
  auto s3 = BinSpectrum(3, kAxis);
  s3->quality = kQualLowSnr;
  ctx.Send(node, 3, s3);
  ctx.Send(node, 0, BinSpectrum(0, kAxis));
  ctx.Send(node, 1, nullptr, "spectral.restframe failed on bin 1: no good pixel");
  ctx.Send(node, 4, BinSpectrum(4, kAxis));
}

}  // namespace

TEST(WriteSpectra, SpecDeclaresPortsAndDocumentedParameters) {
  Registry reg;
  reg.Add<WS>();
  const NodeSpec* s = reg.Find("io.write_spectra");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->concurrency(), Concurrency::kSerial);
  EXPECT_TRUE(s->accepts_failures());
  EXPECT_TRUE(s->outputs().empty());
  const PortSpec* in = s->FindInput("spectra");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->type, "spectrum");
  EXPECT_EQ(in->kind, PortKind::kStream);
  EXPECT_TRUE(in->required);
  const PortSpec* bn = s->FindInput("binning");
  ASSERT_NE(bn, nullptr);
  EXPECT_FALSE(bn->required);
  EXPECT_EQ(bn->kind, PortKind::kSingle);
  ASSERT_NE(s->FindParam("path"), nullptr);
  EXPECT_TRUE(s->FindParam("path")->required());
  EXPECT_EQ(s->FindParam("error")->choices(), (std::vector<std::string>{"sigma", "variance", "ivar"}));
  EXPECT_EQ(s->FindParam("dtype")->choices(), (std::vector<std::string>{"float32", "float64"}));
  for (const auto& p : s->params()) EXPECT_FALSE(p.doc().empty()) << p.name();
  EXPECT_NE(s->description().find("row i is bin i"), std::string::npos);
}

TEST(WriteSpectra, RowsAreBinIdsWithSpectralWcsMaskErrorsAndBinTable) {
  TempDir dir;
  const std::string path = dir.File("sub/spectra.fits");  // the directory is created
  auto node = MakeTypedNode<WS>({{"path", path}});
  SinkContext ctx;
  ctx.run_info() = SomeRun(path);
  DriveFive(*node, ctx);
  node->Finish(ctx);
  // Only the product is left: no scratch or temporary files.
  EXPECT_EQ(DirEntries(dir.File("sub")), std::vector<std::string>{"spectra.fits"});

  FitsFile f(path);
  ASSERT_NE(f.f, nullptr);
  EXPECT_TRUE(f.ChecksumsOk());
  // Primary: provenance and counts.
  ASSERT_TRUE(f.MovePrimary());
  EXPECT_EQ(f.Str("CFVERS"), "0.1.0");
  EXPECT_EQ(f.Str("CFN01TYP"), "io.write_spectra");
  EXPECT_EQ(f.Str("CFN01P03"), "path=" + path);
  EXPECT_EQ(f.Str("CFPROD"), "SPECTRA");
  EXPECT_EQ(f.Int("NBINS"), 5);
  EXPECT_EQ(f.Int("NSPEC"), 3);
  EXPECT_EQ(f.Int("NFAILED"), 1);
  EXPECT_EQ(f.Int("NMISSING"), 1);
  EXPECT_EQ(f.Str("MISSING"), "2");
  EXPECT_FALSE(f.Logical("PARTIAL"));

  // SPECTRA: float32, NAXIS1 = wavelength, NAXIS2 = bin; row i = bin i.
  ASSERT_TRUE(f.Move("SPECTRA"));
  EXPECT_EQ(f.Bitpix(), FLOAT_IMG);
  EXPECT_EQ(f.Shape(), (std::vector<long long>{40, 5}));
  EXPECT_EQ(f.Str("CTYPE1"), "AWAV");
  EXPECT_EQ(f.Str("CUNIT1"), "Angstrom");
  EXPECT_DOUBLE_EQ(f.Dbl("CRVAL1"), 4750.0);
  EXPECT_DOUBLE_EQ(f.Dbl("CDELT1"), 1.25);
  EXPECT_DOUBLE_EQ(f.Dbl("CRPIX1"), 1.0);
  EXPECT_EQ(f.Str("CTYPE2"), "BINID");
  EXPECT_FALSE(f.Has("SPECSYS"));  // observed frame
  EXPECT_EQ(f.Str("BUNIT"), "10**(-20) erg s-1 cm-2 Angstrom-1");
  EXPECT_DOUBLE_EQ(fits::FluxDensityScale(f.Str("BUNIT")).ValueOrThrow(), 1e-20);
  EXPECT_FALSE(f.Logical("NORMED"));
  EXPECT_EQ(f.Str("ERRDATA"), "ERROR");
  EXPECT_EQ(f.Str("QUALDATA"), "MASK");
  const auto sp = f.Image();
  auto at = [](const std::vector<double>& v, int row, int k) { return v[static_cast<size_t>(row * 40 + k)]; };
  for (int row : {0, 3, 4})
    for (int k = 0; k < 40; ++k) {
      if (row == 0 && k == 7) continue;
      EXPECT_EQ(at(sp, row, k), static_cast<float>(100.0 * row + k + 0.25)) << row << "," << k;
    }
  EXPECT_TRUE(std::isnan(at(sp, 0, 7)));
  for (int row : {1, 2})
    for (int k = 0; k < 40; ++k) EXPECT_TRUE(std::isnan(at(sp, row, k))) << row;

  ASSERT_TRUE(f.Move("ERROR"));
  EXPECT_EQ(f.Str("ERRTYPE"), "SIGMA");
  EXPECT_EQ(f.Str("DATA"), "SPECTRA");
  EXPECT_EQ(f.Str("BUNIT"), "10**(-20) erg s-1 cm-2 Angstrom-1");
  EXPECT_EQ(f.Str("CTYPE1"), "AWAV");
  const auto er = f.Image();
  EXPECT_EQ(at(er, 3, 10), static_cast<float>(std::sqrt(1.0 + 5.0 + 3.0)));
  EXPECT_EQ(at(er, 4, 0), static_cast<float>(std::sqrt(5.0)));
  EXPECT_TRUE(std::isnan(at(er, 3, 5)));  // masked pixel: no error
  EXPECT_TRUE(std::isnan(at(er, 0, 7)));  // NaN flux
  EXPECT_TRUE(std::isnan(at(er, 1, 0)));

  ASSERT_TRUE(f.Move("MASK"));
  EXPECT_EQ(f.Bitpix(), BYTE_IMG);
  EXPECT_EQ(f.Str("MBIT0"), "BADPIX");
  EXPECT_EQ(f.Str("MBIT3"), "NOSPEC");
  const auto mk = f.Image();
  EXPECT_EQ(at(mk, 3, 5), WS::kMaskBadPixel);
  EXPECT_EQ(at(mk, 0, 7), WS::kMaskNonFinite);
  EXPECT_EQ(at(mk, 3, 6), 0);
  for (int k = 0; k < 40; ++k) {
    EXPECT_EQ(at(mk, 1, k), WS::kMaskNoSpectrum);
    EXPECT_EQ(at(mk, 2, k), WS::kMaskNoSpectrum);
  }

  ASSERT_TRUE(f.Move("WAVE"));
  const auto wv = f.Image();
  ASSERT_EQ(wv.size(), 40u);
  for (int k = 0; k < 40; ++k) EXPECT_DOUBLE_EQ(wv[static_cast<size_t>(k)], kAxis.At(k));
  EXPECT_EQ(f.Str("WAVETYPE"), "AIR");

  ASSERT_TRUE(f.Move("BINID"));
  EXPECT_EQ(f.Bitpix(), LONG_IMG);
  EXPECT_EQ(f.Shape(), (std::vector<long long>{5, 4}));
  const auto bid = f.Image();
  const auto bn = FiveBins();
  for (size_t s = 0; s < 20; ++s) EXPECT_EQ(bid[s], bn->binid[s]);
  EXPECT_EQ(f.Str("CTYPE1"), "RA---TAN");

  ASSERT_TRUE(f.Move("BINS"));
  ASSERT_EQ(f.Rows(), 5);
  EXPECT_EQ(f.Column("BIN_ID"), (std::vector<double>{0, 1, 2, 3, 4}));
  EXPECT_EQ(f.Column("SPECSTAT"), (std::vector<double>{0, 1, 2, 0, 0}));
  EXPECT_EQ(f.Column("QUALITY"),
            (std::vector<double>{0, kQualInferenceFailed, kQualNoCoverage, kQualLowSnr, 0}));
  EXPECT_EQ(f.Column("NGOODPIX"), (std::vector<double>{38, 0, 0, 39, 39}));
  EXPECT_EQ(f.Column("NSPAX"), (std::vector<double>{3, 3, 3, 3, 3}));  // failed/missing: from the binning
  const auto x = f.Column("X");
  EXPECT_DOUBLE_EQ(x[0], 0.3);   // the spectrum's meta
  EXPECT_DOUBLE_EQ(x[1], 1.25);  // failed: the binning's centroid
  EXPECT_DOUBLE_EQ(x[2], 2.25);
  EXPECT_EQ(f.ColumnUnit("X"), "pix");
  const auto snr = f.Column("SNR");
  EXPECT_DOUBLE_EQ(snr[2], 22.0);
  const auto sig = f.Column("SIGNAL");
  EXPECT_DOUBLE_EQ(sig[1], 2000.0);
  EXPECT_EQ(f.ColumnUnit("SIGNAL"), "10**(-20) erg s-1 cm-2 Angstrom-1");
  const auto vel = f.Column("VEL");
  EXPECT_EQ(f.ColumnUnit("VEL"), "km/s");
  EXPECT_DOUBLE_EQ(vel[3], 25.0);
  EXPECT_TRUE(std::isnan(vel[1]));
  EXPECT_DOUBLE_EQ(f.Column("SIGMA")[4], 84.0);
  EXPECT_DOUBLE_EQ(f.Column("MY_KEY")[4], 2.0);
  EXPECT_DOUBLE_EQ(f.Column("BUNITSCL")[0], 1e-20);
  const auto norm = f.Column("NORM");
  EXPECT_DOUBLE_EQ(norm[0], 1.0);
  EXPECT_TRUE(std::isnan(norm[1]));
  // RA/DEC of the centroids through the binning's WCS.
  const auto ra = f.Column("RA"), dec = f.Column("DEC");
  auto w = fits::Wcs::FromCards(bn->wcs).ValueOrThrow();
  for (int r : {0, 1, 4}) {
    double a = 0, d = 0;
    w.PixelToSky(x[static_cast<size_t>(r)], 1.0 + 0.1 * r, a, d);
    EXPECT_NEAR(ra[static_cast<size_t>(r)], a, 1e-10) << r;
    EXPECT_NEAR(dec[static_cast<size_t>(r)], d, 1e-10) << r;
  }
  const auto why = f.StrColumn("FAILMSG");
  ASSERT_EQ(why.size(), 5u);
  EXPECT_EQ(why[0], "");
  EXPECT_EQ(why[1], "spectral.restframe failed on bin 1: no good pixel");
  EXPECT_EQ(why[2], "never arrived");
}

TEST(WriteSpectra, RestFrameLogAxisNormalisedFloat64InverseVariance) {
  TempDir dir;
  const std::string path = dir.File("rest.fits");
  auto node = MakeTypedNode<WS>({{"path", path}, {"error", std::string("ivar")}, {"dtype", std::string("float64")}});
  SinkContext ctx;
  WavelengthAxis ax;
  ax.n = 30;
  ax.log = true;
  ax.air = false;
  ax.crval = std::log(4800.0);
  ax.crpix = 3.0;
  ax.cdelt = 70.0 / 299792.458;
  for (int64_t id : {1, 0}) {
    auto s = BinSpectrum(id, ax, /*with_var=*/id == 1);
    s->rest_frame = true;
    s->norm = 2.5 * (static_cast<double>(id) + 1);
    ctx.Send(*node, id, s);
  }
  node->Finish(ctx);
  FitsFile f(path);
  ASSERT_NE(f.f, nullptr);
  EXPECT_TRUE(f.ChecksumsOk());
  ASSERT_TRUE(f.Move("SPECTRA"));
  EXPECT_EQ(f.Bitpix(), DOUBLE_IMG);
  EXPECT_EQ(f.Shape(), (std::vector<long long>{30, 2}));
  EXPECT_EQ(f.Str("CTYPE1"), "WAVE-LOG");
  EXPECT_EQ(f.Str("SPECSYS"), "SOURCE");
  EXPECT_TRUE(f.Logical("NORMED"));
  EXPECT_TRUE(f.Logical("RESTFRM"));
  EXPECT_FALSE(f.Has("BUNIT"));  // normalised: dimensionless
  EXPECT_EQ(f.Str("FLUXUNIT"), "10**(-20) erg s-1 cm-2 Angstrom-1");
  EXPECT_NEAR(f.Dbl("VELSCALE"), 70.0, 1e-9);
  // FITS -LOG: lambda = CRVAL1 exp(CDELT1 (p - CRPIX1) / CRVAL1), p 1-based.
  const double crval = f.Dbl("CRVAL1"), cdelt = f.Dbl("CDELT1"), crpix = f.Dbl("CRPIX1");
  const auto sp = f.Image();
  EXPECT_EQ(sp[31], 100.0 + 1 + 0.25);  // float64: exact
  ASSERT_TRUE(f.Move("WAVE"));
  const auto wv = f.Image();
  EXPECT_EQ(f.Str("WAVETYPE"), "VACUUM");
  for (int k = 0; k < 30; ++k) {
    const double fitsw = crval * std::exp(cdelt * (k + 1 - crpix) / crval);
    EXPECT_NEAR(fitsw / wv[static_cast<size_t>(k)], 1.0, 1e-13) << k;
    EXPECT_NEAR(wv[static_cast<size_t>(k)], ax.At(k), 1e-9 * ax.At(k));
  }
  EXPECT_NEAR(wv[2], 4800.0, 1e-9);  // CRPIX 3
  ASSERT_TRUE(f.Move("IVAR"));
  EXPECT_EQ(f.Str("ERRTYPE"), "INVVAR");
  EXPECT_FALSE(f.Has("BUNIT"));
  const auto iv = f.Image();
  EXPECT_DOUBLE_EQ(iv[30 + 10], 1.0 / (1.0 + 5.0 + 1.0));  // bin 1
  EXPECT_EQ(iv[30 + 5], 0.0);                              // masked
  for (int k = 0; k < 30; ++k) EXPECT_EQ(iv[static_cast<size_t>(k)], 0.0);  // bin 0 has no variance
  ASSERT_TRUE(f.Move("MASK"));
  const auto mk = f.Image();
  EXPECT_EQ(mk[3], WS::kMaskNoError);
  EXPECT_EQ(mk[5], WS::kMaskNoError | WS::kMaskBadPixel);
  EXPECT_EQ(mk[7], WS::kMaskNoError | WS::kMaskNonFinite);
  EXPECT_FALSE(f.Move("BINID"));  // no binning connected
  ASSERT_TRUE(f.Move("BINS"));
  EXPECT_EQ(f.Column("NORM"), (std::vector<double>{2.5, 5.0}));
  EXPECT_EQ(f.ColumnUnit("NORM"), "10**(-20) erg s-1 cm-2 Angstrom-1");
  EXPECT_EQ(f.Col("RA"), 0);  // no WCS without a binning
  EXPECT_EQ(f.Column("NGOODPIX"), (std::vector<double>{0, 29}));
}

TEST(WriteSpectra, AbortedRunWritesPartialProductFlaggingMissingBins) {
  TempDir dir;
  const std::string path = dir.File("partial.fits");
  auto node = MakeTypedNode<WS>({{"path", path}});
  SinkContext ctx;
  ctx.SetInput("binning", FiveBins());
  ctx.Send(*node, 1, BinSpectrum(1, kAxis));
  ctx.Send(*node, 0, BinSpectrum(0, kAxis));
  ctx.SetAborted(true);
  node->Finish(ctx);
  FitsFile f(path);
  ASSERT_NE(f.f, nullptr);
  EXPECT_TRUE(f.Logical("PARTIAL"));
  EXPECT_EQ(f.Int("NMISSING"), 3);
  EXPECT_EQ(f.Str("MISSING"), "2,3,4");
  ASSERT_TRUE(f.Move("SPECTRA"));
  EXPECT_EQ(f.Shape(), (std::vector<long long>{40, 5}));
  const auto sp = f.Image();
  EXPECT_EQ(sp[40 + 3], static_cast<float>(103.25));
  EXPECT_TRUE(std::isnan(sp[4 * 40 + 3]));
  ASSERT_TRUE(f.Move("BINS"));
  EXPECT_EQ(f.Column("SPECSTAT"), (std::vector<double>{0, 0, 2, 2, 2}));
  EXPECT_EQ(f.StrColumn("FAILMSG")[3], "never arrived (run aborted)");
}

TEST(WriteSpectra, FailedBinsWithoutBinningStillGetRows) {
  TempDir dir;
  const std::string path = dir.File("nobinning.fits");
  auto node = MakeTypedNode<WS>({{"path", path}});
  SinkContext ctx;
  ctx.Send(*node, 2, BinSpectrum(2, kAxis));
  ctx.Send(*node, 5, nullptr, "boom");  // beyond the last spectrum: known from its key
  node->Finish(ctx);
  FitsFile f(path);
  ASSERT_TRUE(f.Move("SPECTRA"));
  EXPECT_EQ(f.Shape(), (std::vector<long long>{40, 6}));
  ASSERT_TRUE(f.Move("BINS"));
  EXPECT_EQ(f.Column("SPECSTAT"), (std::vector<double>{2, 2, 0, 2, 2, 1}));
  EXPECT_EQ(f.Column("NSPAX"), (std::vector<double>{-1, -1, 3, -1, -1, -1}));
  EXPECT_EQ(f.StrColumn("FAILMSG")[5], "boom");
}

TEST(WriteSpectra, ManyBinsInRandomOrderLandInTheirRows) {
  TempDir dir;
  const std::string path = dir.File("many.fits");
  auto node = MakeTypedNode<WS>({{"path", path}});
  SinkContext ctx;
  const auto ax = WavelengthAxis::Linear(4800, 1.25, 700);
  std::vector<int64_t> ids(1500);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(7);
  std::shuffle(ids.begin(), ids.end(), rng);
  for (int64_t id : ids) {
    if (id % 97 == 13) {
      ctx.Send(*node, id, nullptr, "failed " + std::to_string(id));
      continue;
    }
    auto s = std::make_shared<Spectrum>();
    s->wave = ax;
    s->flux.resize(700);
    s->variance.assign(700, 4.0);
    for (size_t k = 0; k < 700; ++k) s->flux[k] = static_cast<double>(id) + 1e-3 * static_cast<double>(k);
    ctx.Send(*node, id, s);
  }
  EXPECT_EQ(node->received(), 1500u);
  node->Finish(ctx);
  EXPECT_EQ(DirEntries(dir.path()), std::vector<std::string>{"many.fits"});
  FitsFile f(path);
  ASSERT_TRUE(f.Move("SPECTRA"));
  EXPECT_EQ(f.Shape(), (std::vector<long long>{700, 1500}));
  const auto sp = f.Image();
  for (int64_t id = 0; id < 1500; ++id)
    for (int64_t k : {0, 351, 699}) {
      const double v = sp[static_cast<size_t>(id * 700 + k)];
      if (id % 97 == 13)
        EXPECT_TRUE(std::isnan(v)) << id;
      else
        EXPECT_EQ(v, static_cast<float>(static_cast<double>(id) + 1e-3 * static_cast<double>(k))) << id << "," << k;
    }
  ASSERT_TRUE(f.Move("ERROR"));
  EXPECT_EQ(f.Image()[700 * 1499 + 3], 2.0f);
}

TEST(WriteSpectra, ErrorsNameTheBinTheFileAndWhatToDo) {
  TempDir dir;
  auto expect_error = [](auto&& fn, const std::vector<std::string>& parts) {
    try {
      fn();
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  {  // a different wavelength grid
    auto node = MakeTypedNode<WS>({{"path", dir.File("a.fits")}});
    SinkContext ctx;
    ctx.Send(*node, 0, BinSpectrum(0, kAxis));
    expect_error([&] { ctx.Send(*node, 7, BinSpectrum(7, WavelengthAxis::Linear(4750.5, 1.25, 40))); },
                 {"bin 7", "wavelength axis", "bin 0", "rebin"});
    expect_error([&] {
      auto s = BinSpectrum(8, kAxis);
      s->rest_frame = true;
      ctx.Send(*node, 8, s);
    }, {"bin 8", "rest-frame"});
    expect_error([&] {
      auto s = BinSpectrum(9, kAxis);
      s->variance.pop_back();
      ctx.Send(*node, 9, s);
    }, {"bin 9", "variance"});
    expect_error([&] {
      auto s = BinSpectrum(10, kAxis);
      s->meta["bunit_scale"] = 1e-17;
      ctx.Send(*node, 10, s);
    }, {"bin 10", "flux unit"});
  }
  {  // overwrite: false and the target exists: the old file is untouched, nothing is left behind
    const std::string path = dir.File("keep.fits");
    std::ofstream(path) << "old";
    auto node = MakeTypedNode<WS>({{"path", path}, {"overwrite", false}});
    SinkContext ctx;
    expect_error([&] { ctx.Send(*node, 0, BinSpectrum(0, kAxis)); }, {path, "overwrite"});  // at once
    auto node2 = MakeTypedNode<WS>({{"path", path}, {"overwrite", false}});
    ctx.Send(*node2, 0, nullptr, "failed");  // only failures arrived: caught when writing
    expect_error([&] { node2->Finish(ctx); }, {path, "overwrite"});
    std::ifstream in(path);
    std::string s;
    in >> s;
    EXPECT_EQ(s, "old");
  }
  {  // a path below a regular file: the first spectrum already fails, naming the path
    const std::string path = dir.File("keep.fits") + "/x/out.fits";
    auto node = MakeTypedNode<WS>({{"path", path}});
    SinkContext ctx;
    expect_error([&] { ctx.Send(*node, 0, BinSpectrum(0, kAxis)); }, {path, "scratch"});
  }
  {  // nothing arrived at all
    auto node = MakeTypedNode<WS>({{"path", dir.File("none.fits")}});
    SinkContext ctx;
    expect_error([&] { node->Finish(ctx); }, {"nothing to write", "none.fits"});
  }
  {  // sparse ids
    auto node = MakeTypedNode<WS>({{"path", dir.File("sparse.fits")}});
    SinkContext ctx;
    ctx.Send(*node, 1000000, BinSpectrum(0, kAxis));
    expect_error([&] { node->Finish(ctx); }, {"sparse", "1000000"});
  }
  expect_error([&] { MakeTypedNode<WS>({{"path", dir.File("x.fits")}, {"error", std::string("rms")}}); },
               {"'error'", "sigma"});
  EXPECT_EQ(DirEntries(dir.path()), std::vector<std::string>{"keep.fits"});
}

TEST(WriteSpectra, AstropyReadsSpectraWcsAndTable) {
  if (!cftest::HaveAstropy()) CUBEFLOW_SKIP_WITHOUT("astropy") << "/usr/bin/python3 with astropy not available";
  TempDir dir;
  const std::string path = dir.File("spectra.fits");
  auto node = MakeTypedNode<WS>({{"path", path}});
  SinkContext ctx;
  ctx.run_info() = SomeRun(path);
  DriveFive(*node, ctx);
  node->Finish(ctx);
  const std::string script = R"PY(
import warnings
import numpy as np
import astropy.units as u
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    h = fits.open(")PY" + path + R"PY(", checksum=True)
    for hdu in h:
        _ = hdu.data
assert not [x for x in w if "checksum" in str(x.message).lower()], [str(x.message) for x in w]
s = h["SPECTRA"]
assert s.data.shape == (5, 40) and s.data.dtype == np.dtype(">f4")
wcs = WCS(s.header)
assert wcs.wcs.spec == 0 and wcs.wcs.ctype[0] == "AWAV"
lam, row = wcs.pixel_to_world(np.arange(40), np.full(40, 4))
assert np.allclose(lam.to_value(u.AA), h["WAVE"].data, atol=1e-9)
assert np.allclose(np.asarray(row), 4)
assert np.allclose(h["WAVE"].data, 4750 + 1.25 * np.arange(40))
assert u.Unit(s.header["BUNIT"], format="fits") == 1e-20 * u.erg / u.s / u.cm**2 / u.AA
assert np.allclose(s.data[3], 300.25 + np.arange(40))
assert np.all(np.isnan(s.data[1])) and np.all(h["MASK"].data[1] == 8)
t = Table.read(h["BINS"])
assert list(t["BIN_ID"]) == [0, 1, 2, 3, 4] and list(t["SPECSTAT"]) == [0, 1, 2, 0, 0]
assert t["VEL"].unit == u.km / u.s and t["X"].unit == u.pix
assert t["FAILMSG"][1].startswith("spectral.restframe failed")
assert WCS(h["BINID"].header).celestial.naxis == 2
print("OK")
)PY";
  std::string out;
  EXPECT_EQ(cftest::RunPython(script, dir.path(), out), 0) << out;
}

TEST(WriteSpectra, EmptyPathIsReported) {
  EXPECT_EQ(cftest::BuildError<WS>({{"path", std::string("")}}), "path: is empty; name the output FITS file");
}
