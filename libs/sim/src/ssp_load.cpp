// LoadSspDirectory: MILES / E-MILES / MIUSCAT / BC03 SSP FITS files. See ssp.hpp.

#include <fitsio.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cubeflow/fits/cfitsio_error.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::sim {

namespace {

namespace fs = std::filesystem;

using fits::CfitsioErrorText;

struct SspFile {
  std::string path;
  SspFileInfo info;
  int64_t n = 0;
  double crval = 0, cdelt = 0, crpix = 1;
  bool log = false, log10 = false;
  double fwhm = 0;  // from header (0 if none)
  std::vector<double> data;
};

// Reads a primary-HDU 1-D spectrum and its wavelength keywords.
Status ReadSspFits(SspFile* f, bool read_data) {
  fitsfile* fp = nullptr;
  int status = 0;
  if (fits_open_diskfile(&fp, f->path.c_str(), READONLY, &status)) {
    return Status::Error("cannot open SSP file '" + f->path + "': " + CfitsioErrorText(status));
  }
  auto fail = [&](const std::string& what) {
    int s2 = 0;
    fits_close_file(fp, &s2);
    return Status::Error("SSP file '" + f->path + "': " + what +
                         (status ? ": " + CfitsioErrorText(status) : std::string()));
  };
  int naxis = 0;
  long naxes[3] = {0, 0, 0};
  if (fits_get_img_dim(fp, &naxis, &status) || naxis < 1 ||
      fits_get_img_size(fp, std::min(naxis, 3), naxes, &status)) {
    return fail("the primary HDU holds no spectrum (need NAXIS >= 1)");
  }
  for (int k = 1; k < std::min(naxis, 3); ++k) {
    if (naxes[k] != 1) return fail("expected a 1-D spectrum in the primary HDU");
  }
  f->n = naxes[0];
  double v = 0;
  if (fits_read_key(fp, TDOUBLE, "CRVAL1", &v, nullptr, &status)) {
    return fail("missing CRVAL1 (wavelength of the reference pixel)");
  }
  f->crval = v;
  if (fits_read_key(fp, TDOUBLE, "CDELT1", &v, nullptr, &status)) {
    status = 0;
    if (fits_read_key(fp, TDOUBLE, "CD1_1", &v, nullptr, &status)) {
      return fail("missing CDELT1 / CD1_1 (wavelength step)");
    }
  }
  f->cdelt = v;
  if (fits_read_key(fp, TDOUBLE, "CRPIX1", &v, nullptr, &status)) {
    status = 0;
    v = 1.0;
  }
  f->crpix = v;
  char ctype[FLEN_VALUE] = {0};
  if (fits_read_key(fp, TSTRING, "CTYPE1", ctype, nullptr, &status)) {
    status = 0;
    ctype[0] = 0;
  }
  if (Lower(ctype).find("log") != std::string::npos) f->log = true;
  // Header metadata: FWHM / Z / AGE keys (BC03) and COMMENT cards (MILES webtool).
  if (fits_read_key(fp, TDOUBLE, "FWHM", &v, nullptr, &status) == 0) {
    f->fwhm = v;
  } else {
    status = 0;
  }
  if (f->info.family == "BC03") {
    double z = 0, age = 0;
    if (fits_read_key(fp, TDOUBLE, "Z", &z, nullptr, &status) == 0 && z > 0) {
      f->info.mh = std::log10(z / 0.019);
    }
    status = 0;
    if (fits_read_key(fp, TDOUBLE, "AGE", &age, nullptr, &status) == 0 && age > 0) {
      f->info.age_gyr = age;
    }
    status = 0;
  }
  int nkeys = 0;
  fits_get_hdrspace(fp, &nkeys, nullptr, &status);
  for (int k = 1; k <= nkeys && status == 0; ++k) {
    char card[FLEN_CARD] = {0};
    if (fits_read_record(fp, k, card, &status)) break;
    const std::string c(card);
    if (c.rfind("COMMENT", 0) != 0) continue;
    const size_t p = c.find("Spectral resolution:");
    if (p != std::string::npos) {
      try {
        const double fw = std::stod(c.substr(p + 20));
        if (fw > 0 && f->fwhm == 0) f->fwhm = fw;
      } catch (...) {
      }
    }
    const size_t q = c.find("Type of sampling:");
    if (q != std::string::npos && Lower(c.substr(q + 17)).find("log") != std::string::npos) {
      f->log = true;
    }
  }
  status = 0;
  if (Lower(f->path).find("_log") != std::string::npos) f->log = true;
  if (f->log) f->log10 = f->crval < 5.0;  // log10(lambda) ~ 3-5, ln(lambda) ~ 7-12
  if (read_data) {
    f->data.assign(static_cast<size_t>(f->n), 0.0);
    int anynul = 0;
    double nulval = std::nan("");
    if (fits_read_img(fp, TDOUBLE, 1, f->n, &nulval, f->data.data(), &anynul, &status)) {
      return fail("cannot read the data array");
    }
  }
  fits_close_file(fp, &status);
  if (!(f->cdelt != 0) || f->n < 2) {
    return Status::Error("SSP file '" + f->path + "': invalid wavelength axis (CDELT1 = 0 or NAXIS1 < 2)");
  }
  return Status::OK();
}

double WaveAt(const SspFile& f, int64_t i) {
  const double v = f.crval + (static_cast<double>(i) + 1.0 - f.crpix) * f.cdelt;
  if (!f.log) return v;
  return f.log10 ? std::pow(10.0, v) : std::exp(v);
}

// Unique values with tolerance, sorted.
std::vector<double> UniqueSorted(std::vector<double> v, double tol) {
  std::sort(v.begin(), v.end());
  std::vector<double> u;
  for (double x : v) {
    if (u.empty() || x - u.back() > tol) u.push_back(x);
  }
  return u;
}

size_t NearestIndex(const std::vector<double>& axis, double x) {
  size_t best = 0;
  for (size_t i = 1; i < axis.size(); ++i) {
    if (std::abs(axis[i] - x) < std::abs(axis[best] - x)) best = i;
  }
  return best;
}

std::string Fmt(double x, int prec = 4) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(prec);
  s << x;
  return s.str();
}

// MILES mass table ("Vazdekis2012_ssp_mass_*.txt"): fills ml_v and mass_star if every grid
// point is present for the IMF of the files. Returns a note or "".
std::string ReadMassTable(const std::string& path, const SspFileInfo& imf, SspGrid* g) {
  std::ifstream in(path);
  if (!in) return "";
  std::string line;
  std::map<std::string, int> col;
  const size_t ng = g->n_age() * g->n_metal();
  std::vector<double> ml(ng, std::nan("")), ms(ng, std::nan(""));
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      // Header with column names, e.g. "#IMF slope [M/H] Age Mtotal M(*+remn) M* ... M(*+remn)/Lv".
      if (line.find("[M/H]") != std::string::npos && line.find("Age") != std::string::npos) {
        std::istringstream ss(line.substr(1));
        std::string tok;
        int k = 0;
        col.clear();
        while (ss >> tok) col[tok] = k++;
      }
      continue;
    }
    if (col.empty()) continue;
    std::istringstream ss(line);
    std::vector<std::string> toks;
    std::string tok;
    while (ss >> tok) toks.push_back(tok);
    auto get = [&](const char* name, std::string* out) {
      auto it = col.find(name);
      if (it == col.end() || it->second >= static_cast<int>(toks.size())) return false;
      *out = toks[static_cast<size_t>(it->second)];
      return true;
    };
    std::string s_imf, s_slope, s_mh, s_age, s_mass, s_ml;
    if (!get("IMF", &s_imf) || !get("slope", &s_slope) || !get("[M/H]", &s_mh) ||
        !get("Age", &s_age) || !get("M(*+remn)", &s_mass) || !get("M(*+remn)/Lv", &s_ml)) {
      continue;
    }
    try {
      if (Lower(s_imf) != imf.imf || std::abs(std::stod(s_slope) - imf.imf_slope) > 0.005) continue;
      const double mh = std::stod(s_mh), age = std::stod(s_age);
      const size_t im = NearestIndex(g->metal, mh);
      const size_t ia = NearestIndex(g->log_age, std::log10(age * 1e9));
      if (std::abs(g->metal[im] - mh) > 0.03) continue;
      if (std::abs(g->log_age[ia] - std::log10(age * 1e9)) > 0.003) continue;
      ml[im * g->n_age() + ia] = std::stod(s_ml);
      ms[im * g->n_age() + ia] = std::stod(s_mass);
    } catch (...) {
      continue;
    }
  }
  for (size_t i = 0; i < ng; ++i) {
    if (!std::isfinite(ml[i]) || !std::isfinite(ms[i])) return "";
  }
  g->ml_v = std::move(ml);
  g->mass_star = std::move(ms);
  return "M/L_V (M(*+remn)/L_V) and mass_star (M(*+remn)) from " + fs::path(path).filename().string();
}

}  // namespace

Result<std::shared_ptr<SspGrid>> LoadSspDirectory(const std::string& dir) {
  return LoadSspDirectory(dir, SspLoadOptions{});
}

Result<std::shared_ptr<SspGrid>> LoadSspDirectory(const std::string& dir,
                                                  const SspLoadOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Status::Error("SSP directory '" + dir +
                         "' does not exist or is not a directory (set the ssp path, or "
                         "CUBEFLOW_DATA_DIR, to a folder of SSP FITS files)");
  }
  std::vector<SspFile> files;
  std::vector<std::string> tables;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    const std::string lname = Lower(name);
    if (lname.find("ssp_mass") != std::string::npos && lname.size() > 4 &&
        lname.substr(lname.size() - 4) == ".txt") {
      tables.push_back(entry.path().string());
      continue;
    }
    const bool is_fits = lname.ends_with(".fits") || lname.ends_with(".fit") ||
                         lname.ends_with(".fits.gz");
    if (!is_fits) continue;
    if (!options.name_contains.empty() && name.find(options.name_contains) == std::string::npos) {
      continue;
    }
    auto info = ParseSspFileName(name);
    if (!info.ok()) continue;  // not an SSP file (e.g. a mask); ignored
    SspFile f;
    f.path = entry.path().string();
    f.info = *info;
    files.push_back(std::move(f));
  }
  if (ec) return Status::Error("cannot list SSP directory '" + dir + "': " + ec.message());
  if (files.empty()) {
    return Status::Error("no SSP FITS files recognised in '" + dir +
                         "' (expected names like Mun1.30Zp0.00T10.0000_....fits or "
                         "BC03_z0.020_a10.000.fits" +
                         (options.name_contains.empty()
                              ? std::string(")")
                              : ") containing '" + options.name_contains + "'"));
  }
  std::sort(files.begin(), files.end(),
            [](const SspFile& a, const SspFile& b) { return a.path < b.path; });
  // One family / IMF per grid.
  for (const auto& f : files) {
    if (f.info.family != files[0].info.family ||
        std::abs(f.info.imf_slope - files[0].info.imf_slope) > 1e-6) {
      return Status::Error("SSP directory '" + dir + "' mixes families/IMFs ('" +
                           fs::path(files[0].path).filename().string() + "' and '" +
                           fs::path(f.path).filename().string() +
                           "'); select one with SspLoadOptions::name_contains");
    }
  }
  // Headers first (BC03 takes Z and AGE from them), then the grid axes.
  for (auto& f : files) CUBEFLOW_RETURN_NOT_OK(ReadSspFits(&f, /*read_data=*/false));
  std::vector<double> mhs, lages;
  for (const auto& f : files) {
    mhs.push_back(f.info.mh);
    lages.push_back(std::log10(f.info.age_gyr * 1e9));
  }
  auto g = std::make_shared<SspGrid>();
  g->metal = UniqueSorted(mhs, 1e-3);
  g->log_age = UniqueSorted(lages, 1e-4);
  const size_t na = g->n_age(), nm = g->n_metal();
  std::vector<int> owner(na * nm, -1);
  for (size_t k = 0; k < files.size(); ++k) {
    const size_t im = NearestIndex(g->metal, mhs[k]);
    const size_t ia = NearestIndex(g->log_age, lages[k]);
    int& o = owner[im * na + ia];
    if (o >= 0) {
      return Status::Error("SSP directory '" + dir + "': '" +
                           fs::path(files[static_cast<size_t>(o)].path).filename().string() +
                           "' and '" + fs::path(files[k].path).filename().string() +
                           "' have the same age and [M/H]; select one set with "
                           "SspLoadOptions::name_contains");
    }
    o = static_cast<int>(k);
  }
  std::string missing;
  size_t n_missing = 0;
  for (size_t im = 0; im < nm; ++im) {
    for (size_t ia = 0; ia < na; ++ia) {
      if (owner[im * na + ia] >= 0) continue;
      if (n_missing < 20) {
        missing += std::string(n_missing ? ", " : "") + "([M/H] " + Fmt(g->metal[im], 2) +
                   ", age " + Fmt(std::pow(10.0, g->log_age[ia] - 9.0)) + " Gyr)";
      }
      ++n_missing;
    }
  }
  if (n_missing) {
    return Status::Error("SSP directory '" + dir + "' is not a regular age x [M/H] grid: " +
                         std::to_string(n_missing) + " of " + std::to_string(na * nm) +
                         " combinations missing: " + missing + (n_missing > 20 ? ", ..." : "") +
                         "; add the missing files or remove the incomplete ages/metallicities");
  }
  // Wavelength grid (shared) and crop.
  const SspFile& f0 = files[0];
  for (const auto& f : files) {
    if (f.n != f0.n || std::abs(f.crval - f0.crval) > 1e-6 * std::max(1.0, std::abs(f0.crval)) ||
        std::abs(f.cdelt - f0.cdelt) > 1e-9 * std::max(1.0, std::abs(f0.cdelt)) ||
        std::abs(f.crpix - f0.crpix) > 1e-9 || f.log != f0.log) {
      return Status::Error("SSP file '" + f.path + "' has a different wavelength grid than '" +
                           f0.path + "'; all templates of a directory must share one grid");
    }
  }
  int64_t i0 = 0, i1 = f0.n;
  for (int64_t i = 0; i < f0.n; ++i) {
    const double l = WaveAt(f0, i);
    if (options.wave_min > 0 && l < options.wave_min) i0 = i + 1;
    if (options.wave_max > 0 && l > options.wave_max && i1 == f0.n) i1 = i;
  }
  if (i1 - i0 < 2) {
    return Status::Error("SSP directory '" + dir + "': the wavelength range " +
                         Fmt(options.wave_min, 1) + "-" + Fmt(options.wave_max, 1) +
                         " A leaves fewer than two pixels");
  }
  const size_t nw = static_cast<size_t>(i1 - i0);
  g->wave.resize(nw);
  for (size_t i = 0; i < nw; ++i) g->wave[i] = WaveAt(f0, i0 + static_cast<int64_t>(i));
  if (g->wave[1] < g->wave[0]) {
    return Status::Error("SSP file '" + f0.path + "': wavelengths decrease (CDELT1 < 0); not supported");
  }
  g->flux.resize(na * nm * nw);
  for (size_t slot = 0; slot < owner.size(); ++slot) {
    SspFile& f = files[static_cast<size_t>(owner[slot])];
    CUBEFLOW_RETURN_NOT_OK(ReadSspFits(&f, /*read_data=*/true));
    for (size_t i = 0; i < nw; ++i) {
      g->flux[slot * nw + i] = static_cast<float>(f.data[static_cast<size_t>(i0) + i]);
    }
    f.data.clear();
    f.data.shrink_to_fit();
  }
  // FWHM: header (COMMENT or key), else file name, else family default.
  double fwhm = 0;
  for (const auto& f : files) fwhm = std::max(fwhm, f.fwhm > 0 ? f.fwhm : f.info.fwhm);
  std::string fwhm_note;
  if (fwhm <= 0) {
    fwhm = f0.info.family == "BC03" ? 3.0 : 2.51;
    fwhm_note = "; FWHM is the family default (not stated in the files)";
  }
  g->fwhm = fwhm;
  g->name = fs::path(dir).filename().string();
  if (g->name.empty()) g->name = fs::path(dir).parent_path().filename().string();
  g->synthetic = false;
  g->notes = "family " + f0.info.family +
             (f0.info.imf.empty() ? std::string()
                                  : ", IMF " + f0.info.imf + " " + Fmt(f0.info.imf_slope, 2)) +
             ", " + std::to_string(files.size()) + " files from " + dir + fwhm_note;
  if (!f0.info.imf.empty()) {
    for (const auto& t : tables) {
      const std::string note = ReadMassTable(t, f0.info, g.get());
      if (!note.empty()) {
        g->notes += "; " + note;
        break;
      }
    }
  }
  CUBEFLOW_RETURN_NOT_OK(g->Validate());
  return g;
}

}  // namespace cubeflow::sim
