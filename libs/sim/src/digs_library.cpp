// DIGS libraries: see cubeflow/sim/digs_library.hpp.
#include "cubeflow/sim/digs_library.hpp"

#include <fitsio.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "cubeflow/fits/atomic_fits_file.hpp"
#include "cubeflow/strings.hpp"
#include "cubeflow/version.hpp"

namespace cubeflow::sim {

const std::array<std::string, kDigsNumParams>& DigsLibraryColumns() {
  static const std::array<std::string, kDigsNumParams> k = {"LOG_MASS", "LOG_Z", "DUST", "T_AGE", "LOG_TAU"};
  return k;
}

namespace {

void KeyStr(fitsfile* f, const char* key, const std::string& v, const char* comment, int* status) {
  fits_write_key_longstr(f, key, v.c_str(), comment, status);
}
void KeyDbl(fitsfile* f, const char* key, double v, const char* comment, int* status) {
  fits_write_key_dbl(f, key, v, 15, comment, status);
}

}  // namespace

Status WriteDigsLibrary(const DigsModel& model, uint64_t seed, int64_t n, const std::string& ssp_label,
                        const std::string& path, int64_t chunk, const DigsTheta* fixed) {
  if (n < 1) return Status::Error("DIGS library: --n must be >= 1, got " + std::to_string(n));
  if (chunk < 1) chunk = 65536;
  CUBEFLOW_ASSIGN_OR_RETURN(fits::AtomicFitsFile out, fits::AtomicFitsFile::Create(path, "DIGS library"));
  fitsfile* f = out.get();
  int st = 0;
  const auto& c = model.config();
  fits_create_imgll(f, BYTE_IMG, 0, nullptr, &st);
  KeyStr(f, "CFVERS", kVersion, "cubeflow version", &st);
  KeyStr(f, "CONTENT", "DIGS library", "cubeflow digs library (docs/digs.md)", &st);
  fits_write_key_lng(f, "DIGSSEED", static_cast<LONGLONG>(seed), "row i = DigsModel::Simulate(seed, i)", &st);
  fits_write_key_lng(f, "DIGSN", static_cast<LONGLONG>(n), "rows", &st);
  KeyStr(f, "DIGSSSP", ssp_label, "SSP grid", &st);
  KeyStr(f, "SSPNAME", model.ssp().name, "SSP grid name", &st);
  KeyDbl(f, "NOISEFR", c.noise_frac, "1-sigma noise / model flux", &st);
  KeyDbl(f, "SIGMAKMS", c.sigma_kms, "total Gaussian dispersion, km/s", &st);
  KeyDbl(f, "DISTMPC", c.distance_mpc, "flux unit 1e-17 erg/s/cm2/A at this distance", &st);
  KeyDbl(f, "WAVEMIN", c.wave_min, "outer pixel edge, Angstrom", &st);
  KeyDbl(f, "WAVEMAX", c.wave_max, "outer pixel edge, Angstrom", &st);
  fits_write_key_log(f, "NEBULAR", c.nebular ? 1 : 0, "nebular lines", &st);
  fits_write_key_log(f, "DIGSFIX", fixed ? 1 : 0, "T: noise realisations of one parameter set", &st);
  const auto lo = c.prior.Lo(), hi = c.prior.Hi();
  for (int k = 0; k < kDigsNumParams; ++k) {
    const std::string key = "PLO" + std::to_string(k + 1), keyh = "PHI" + std::to_string(k + 1);
    KeyDbl(f, key.c_str(), lo[k], ("prior lower bound of " + DigsParamNames()[k]).c_str(), &st);
    KeyDbl(f, keyh.c_str(), hi[k], ("prior upper bound of " + DigsParamNames()[k]).c_str(), &st);
  }
  CUBEFLOW_RETURN_NOT_OK(out.Check(st));

  out.set_hdu("WAVE");
  const auto& wave = model.wave();
  LONGLONG nw = static_cast<LONGLONG>(wave.size());
  fits_create_imgll(f, DOUBLE_IMG, 1, &nw, &st);
  fits_write_key_str(f, "EXTNAME", "WAVE", "pixel centres", &st);
  fits_write_key_str(f, "BUNIT", "Angstrom", "", &st);
  fits_write_img(f, TDOUBLE, 1, nw, const_cast<double*>(wave.data()), &st);
  CUBEFLOW_RETURN_NOT_OK(out.Check(st));

  out.set_hdu("DIGS");
  const std::string fform = std::to_string(wave.size()) + "E";
  std::vector<std::string> names = {"FLUX"}, forms = {fform}, units = {"1e-17 erg/s/cm2/Angstrom"};
  const char* punits[] = {"dex", "dex", "", "Gyr", "dex"};
  for (int k = 0; k < kDigsNumParams; ++k) {
    names.push_back(DigsLibraryColumns()[k]);
    forms.push_back("D");
    units.push_back(punits[k]);
  }
  std::vector<char*> pn, pf, pu;
  for (size_t i = 0; i < names.size(); ++i) {
    pn.push_back(names[i].data());
    pf.push_back(forms[i].data());
    pu.push_back(units[i].data());
  }
  fits_create_tbl(f, BINARY_TBL, 0, static_cast<int>(names.size()), pn.data(), pf.data(), pu.data(), "DIGS", &st);
  CUBEFLOW_RETURN_NOT_OK(out.Check(st));

  const size_t W = wave.size();
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t m = std::min(chunk, n - first);
    std::vector<float> flux(static_cast<size_t>(m) * W);
    std::vector<std::vector<double>> cols(kDigsNumParams, std::vector<double>(static_cast<size_t>(m)));
    tbb::parallel_for(int64_t{0}, m, [&](int64_t r) {
      DigsObject o;
      if (fixed)
        model.SimulateNoise(*fixed, seed, first + r, &o);
      else
        model.Simulate(seed, first + r, &o);
      for (size_t i = 0; i < W; ++i) flux[static_cast<size_t>(r) * W + i] = static_cast<float>(o.flux[i]);
      const auto t = o.theta.ToArray();
      for (int k = 0; k < kDigsNumParams; ++k) cols[k][static_cast<size_t>(r)] = t[k];
      cols[4][static_cast<size_t>(r)] = std::log10(t[4]);
    });
    fits_write_col(f, TFLOAT, 1, first + 1, 1, m * static_cast<LONGLONG>(W), flux.data(), &st);
    for (int k = 0; k < kDigsNumParams; ++k) fits_write_col(f, TDOUBLE, k + 2, first + 1, 1, m, cols[k].data(), &st);
    CUBEFLOW_RETURN_NOT_OK(out.Check(st));
  }
  return out.Commit();
}

Result<DigsLibrary> ReadDigsLibrary(const std::string& path, int64_t max_rows) {
  fitsfile* raw = nullptr;
  int st = 0;
  auto err = [&](const std::string& what) {
    char text[FLEN_STATUS] = {0};
    fits_get_errstatus(st, text);
    if (raw) {
      int s2 = 0;
      fits_close_file(raw, &s2);
    }
    return Status::Error("DIGS library '" + path + "': " + what + (st ? std::string(" (") + text + ")" : "") +
                         "; make one with `cubeflow digs library`");
  };
  if (fits_open_file(&raw, path.c_str(), READONLY, &st)) return err("cannot open");
  DigsLibrary lib;
  int nkeys = 0;
  fits_get_hdrspace(raw, &nkeys, nullptr, &st);
  for (int i = 1; i <= nkeys; ++i) {
    char key[FLEN_KEYWORD], val[FLEN_VALUE], com[FLEN_COMMENT];
    fits_read_keyn(raw, i, key, val, com, &st);
    std::string v = val;
    if (v.size() >= 2 && v.front() == '\'') v = v.substr(1, v.find_last_not_of(" '") );
    lib.header[key] = v;
  }
  if (fits_movnam_hdu(raw, IMAGE_HDU, const_cast<char*>("WAVE"), 0, &st)) return err("no WAVE extension");
  LONGLONG nw = 0;
  int naxis = 0;
  fits_get_img_dim(raw, &naxis, &st);
  fits_get_img_sizell(raw, 1, &nw, &st);
  lib.wave.resize(static_cast<size_t>(nw));
  fits_read_img(raw, TDOUBLE, 1, nw, nullptr, lib.wave.data(), nullptr, &st);
  if (st) return err("HDU WAVE unreadable");
  if (fits_movnam_hdu(raw, BINARY_TBL, const_cast<char*>("DIGS"), 0, &st)) return err("no DIGS table");
  LONGLONG nrows = 0;
  fits_get_num_rowsll(raw, &nrows, &st);
  if (max_rows > 0) nrows = std::min<LONGLONG>(nrows, max_rows);
  lib.n = nrows;
  lib.n_wave = nw;
  auto col = [&](const std::string& name, int* num, LONGLONG want_repeat) -> Status {
    if (fits_get_colnum(raw, CASEINSEN, const_cast<char*>(name.c_str()), num, &st))
      return err("HDU DIGS has no column " + name);
    int type = 0;
    LONGLONG repeat = 0, width = 0;
    fits_get_coltypell(raw, *num, &type, &repeat, &width, &st);
    if (repeat != want_repeat)
      return err("HDU DIGS column " + name + " has " + std::to_string(repeat) + " elements per row, expected " +
                 std::to_string(want_repeat));
    return Status::OK();
  };
  int cf = 0;
  CUBEFLOW_RETURN_NOT_OK(col("FLUX", &cf, nw));
  lib.flux.resize(static_cast<size_t>(nrows * nw));
  if (nrows > 0) fits_read_col(raw, TFLOAT, cf, 1, 1, nrows * nw, nullptr, lib.flux.data(), nullptr, &st);
  lib.theta.resize(static_cast<size_t>(nrows * kDigsNumParams));
  std::vector<double> tmp(static_cast<size_t>(nrows));
  for (int k = 0; k < kDigsNumParams; ++k) {
    int cn = 0;
    CUBEFLOW_RETURN_NOT_OK(col(DigsLibraryColumns()[k], &cn, 1));
    if (nrows > 0) fits_read_col(raw, TDOUBLE, cn, 1, 1, nrows, nullptr, tmp.data(), nullptr, &st);
    for (LONGLONG r = 0; r < nrows; ++r) lib.theta[static_cast<size_t>(r * kDigsNumParams + k)] = tmp[r];
  }
  if (st) return err("HDU DIGS unreadable");
  fits_close_file(raw, &st);
  return lib;
}

}  // namespace cubeflow::sim
