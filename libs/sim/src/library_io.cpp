// Library generation (TBB, chunked) and the FITS library format (CFITSIO).
#include <fitsio.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cubeflow/fits/cfitsio_error.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/observables.hpp"

namespace cubeflow::sim {
namespace {

using fits::CfitsioErrorText;

void Fill(LibraryData* d, const ForwardModel& m) {
  d->wave = m.config().obs.wave;
  d->norm_min = m.config().obs.norm_min;
  d->norm_max = m.config().obs.norm_max;
  d->sigma_target = m.config().obs.sigma_kms;
  d->bands = m.bands();
  d->pivots = m.pivots();
  const auto& c = AgeBinCentresGyr();
  const auto& e = AgeBinEdgesGyr();
  d->age_bin_centres.assign(c.begin(), c.end());
  d->age_bin_edges.assign(e.begin(), e.end());
  d->ssp_name = m.ssp().name;
  d->meta["config"] = SimConfigToYaml(m.config());
  std::ostringstream snr;
  for (size_t i = 0; i < m.config().noise.snr.size(); ++i) snr << (i ? "," : "") << m.config().noise.snr[i];
  d->meta["snr_list"] = m.config().noise.enabled ? snr.str() : "none";
  d->meta["mass_label"] = m.config().obs.mass_label;
}

void Resize(LibraryData* d, int64_t n) {
  const size_t nw = static_cast<size_t>(d->wave.n), nb = d->bands.size();
  d->n = n;
  d->spectra.resize(n * nw);
  d->spectra_err.resize(n * nw);
  d->photometry.resize(n * nb);
  d->photometry_err.resize(n * nb);
  d->mass_frac.resize(n * kNumAgeBins);
  d->light_frac.resize(n * kNumAgeBins);
  d->zh.resize(n * kNumAgeBins);
  d->t_mass.resize(n * kNumMassPercentiles);
  d->snr.resize(n);
  d->tau_bc.resize(n);
  d->tau_ism.resize(n);
  d->sfh_kind.resize(n);
  d->z_final.resize(n);
}

}  // namespace

LibraryData NewLibrary(const ForwardModel& model, int64_t n) {
  LibraryData d;
  Fill(&d, model);
  Resize(&d, n);
  return d;
}

void SetLibraryRow(const SimulatedObject& o, int64_t i, LibraryData* d) {
  const size_t nw = static_cast<size_t>(d->wave.n), nb = d->bands.size();
  std::copy(o.spectrum.begin(), o.spectrum.end(), d->spectra.begin() + i * nw);
  std::copy(o.spectrum_err.begin(), o.spectrum_err.end(), d->spectra_err.begin() + i * nw);
  std::copy(o.phot.begin(), o.phot.end(), d->photometry.begin() + i * nb);
  std::copy(o.phot_err.begin(), o.phot_err.end(), d->photometry_err.begin() + i * nb);
  std::copy(o.labels.mass_frac.begin(), o.labels.mass_frac.end(), d->mass_frac.begin() + i * kNumAgeBins);
  std::copy(o.light_frac.begin(), o.light_frac.end(), d->light_frac.begin() + i * kNumAgeBins);
  std::copy(o.labels.zh.begin(), o.labels.zh.end(), d->zh.begin() + i * kNumAgeBins);
  std::copy(o.labels.t_mass.begin(), o.labels.t_mass.end(), d->t_mass.begin() + i * kNumMassPercentiles);
  d->snr[i] = o.snr;
  d->tau_bc[i] = static_cast<float>(o.dust.tau_bc);
  d->tau_ism[i] = static_cast<float>(o.dust.tau_ism);
  d->sfh_kind[i] = static_cast<int32_t>(o.kind);
  d->z_final[i] = static_cast<float>(o.sfh.z_final);
}

namespace {

void SimulateInto(const ForwardModel& model, int64_t first, int64_t count, uint64_t seed, LibraryData* d) {
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, count, 16), [&](const tbb::blocked_range<int64_t>& r) {
    SimulatedObject o;
    for (int64_t i = r.begin(); i < r.end(); ++i) {
      model.Simulate(seed, first + i, &o);
      SetLibraryRow(o, i, d);
    }
  });
}

// Streams a library into a FITS file.
class LibraryWriter {
 public:
  ~LibraryWriter() {
    if (f_) { int st = 0; fits_close_file(f_, &st); std::remove(tmp_.c_str()); }
  }
  Status Open(const std::string& path, const LibraryData& meta, int64_t n) {
    path_ = path;
    tmp_ = path + ".tmp";
    n_ = n;
    nw_ = meta.wave.n;
    nb_ = static_cast<int64_t>(meta.bands.size());
    int st = 0;
    std::remove(tmp_.c_str());
    if (fits_create_file(&f_, tmp_.c_str(), &st)) return Err("create", st);
    // primary header
    long naxes0[1] = {0};
    fits_create_img(f_, FLOAT_IMG, 0, naxes0, &st);
    auto key_str = [&](const char* k, const std::string& v, const char* c) {
      fits_update_key_longstr(f_, const_cast<char*>(k), const_cast<char*>(v.c_str()), const_cast<char*>(c), &st);
    };
    auto key_dbl = [&](const char* k, double v, const char* c) {
      fits_update_key_dbl(f_, const_cast<char*>(k), v, -15, const_cast<char*>(c), &st);
    };
    auto key_lng = [&](const char* k, long long v, const char* c) {
      LONGLONG x = v;
      fits_update_key(f_, TLONGLONG, const_cast<char*>(k), &x, const_cast<char*>(c), &st);
    };
    key_str("CUBEFLOW", "library", "cubeflow simulated training library");
    key_lng("NOBJ", n, "number of simulated objects");
    key_str("SSPNAME", meta.ssp_name, "SSP library");
    key_lng("NWAVE", nw_, "spectrum pixels");
    key_dbl("CRVAL1", meta.wave.crval, "[Angstrom] first pixel wavelength (air)");
    key_dbl("CDELT1", meta.wave.cdelt, "[Angstrom] pixel step");
    key_dbl("CRPIX1", meta.wave.crpix, "reference pixel");
    key_dbl("NORMMIN", meta.norm_min, "[Angstrom] normalisation window start");
    key_dbl("NORMMAX", meta.norm_max, "[Angstrom] normalisation window end");
    key_dbl("SIGMA", meta.sigma_target, "[km/s] total dispersion of the spectra");
    key_lng("NBANDS", nb_, "photometric bands");
    for (int64_t b = 0; b < nb_; ++b) {
      const std::string kb = "BAND" + std::to_string(b + 1), kp = "PIVOT" + std::to_string(b + 1);
      key_str(kb.c_str(), meta.bands[b], "photometric band");
      key_dbl(kp.c_str(), meta.pivots[b], "[Angstrom] pivot wavelength");
    }
    key_lng("NAGEBIN", kNumAgeBins, "age bins");
    char k[16];
    for (int i = 0; i < kNumAgeBins; ++i) {
      std::snprintf(k, sizeof k, "AGEC%02d", i);
      key_dbl(k, meta.age_bin_centres[i], "[Gyr] age-bin centre");
    }
    for (int i = 0; i <= kNumAgeBins; ++i) {
      std::snprintf(k, sizeof k, "AGEE%02d", i);
      key_dbl(k, meta.age_bin_edges[i], "[Gyr] age-bin edge");
    }
    for (const auto& [mk, mv] : meta.meta) {
      if (mk == "config") continue;
      std::string up = mk;
      for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (up == "SNR_LIST") up = "SNRLIST";
      if (up == "MASS_LABEL") up = "MASSLAB";
      if (up.size() > 8) up = "HIERARCH " + up;
      key_str(up.c_str(), mv, "");
    }
    if (st) return Err("write primary header", st);
    // WAVE
    long nwv[1] = {static_cast<long>(nw_)};
    fits_create_img(f_, DOUBLE_IMG, 1, nwv, &st);
    fits_update_key_str(f_, const_cast<char*>("EXTNAME"), const_cast<char*>("WAVE"), nullptr, &st);
    fits_update_key_str(f_, const_cast<char*>("BUNIT"), const_cast<char*>("Angstrom"), nullptr, &st);
    std::vector<double> w(nw_);
    for (int64_t i = 0; i < nw_; ++i) w[i] = meta.wave.At(i);
    fits_write_img(f_, TDOUBLE, 1, nw_, w.data(), &st);
    if (st) return Err("write WAVE", st);
    auto make_img = [&](const char* name, int64_t width, const char* unit) {
      long ax[2] = {static_cast<long>(width), static_cast<long>(n)};
      fits_create_img(f_, FLOAT_IMG, 2, ax, &st);
      fits_update_key_str(f_, const_cast<char*>("EXTNAME"), const_cast<char*>(name), nullptr, &st);
      fits_update_key_str(f_, const_cast<char*>("BUNIT"), const_cast<char*>(unit), nullptr, &st);
    };
    int h;
    fits_get_hdu_num(f_, &h);
    make_img("SPECTRA", nw_, "normalised f_lambda");   hdu_spec_ = h + 1;
    make_img("SPEC_ERR", nw_, "normalised f_lambda");  hdu_err_ = h + 2;
    if (nb_ > 0) {
      make_img("PHOT", nb_, "normalised f_lambda");    hdu_phot_ = h + 3;
      make_img("PHOT_ERR", nb_, "normalised f_lambda");  hdu_perr_ = h + 4;
    }
    if (st) return Err("create image HDUs", st);
    // LABELS
    const char* ttype[] = {"MASS_FRAC", "LIGHT_FRAC", "ZH", "T_MASS", "SNR", "TAU_BC", "TAU_ISM", "SFH_KIND", "Z_FINAL"};
    const char* tform[] = {"16E", "16E", "16E", "9E", "E", "E", "E", "J", "E"};
    const char* tunit[] = {"", "", "dex", "Gyr", "", "", "", "", ""};
    fits_create_tbl(f_, BINARY_TBL, n, 9, const_cast<char**>(ttype), const_cast<char**>(tform),
                    const_cast<char**>(tunit), "LABELS", &st);
    fits_get_hdu_num(f_, &hdu_labels_);
    fits_write_key_str(f_, const_cast<char*>("COMMENT1"), const_cast<char*>("MASS_FRAC: mass fraction per age bin (sums to 1)"), nullptr, &st);
    fits_write_key_str(f_, const_cast<char*>("COMMENT2"), const_cast<char*>("T_MASS: cosmic time when 10..90 % of the mass had formed"), nullptr, &st);
    fits_write_key_str(f_, const_cast<char*>("COMMENT3"), const_cast<char*>("SFH_KIND: 0 nonparam, 1 skew-normal, 2 skew-normal+burst"), nullptr, &st);
    if (st) return Err("create LABELS", st);
    // CONFIG
    std::vector<std::string> lines;
    {
      auto it = meta.meta.find("config");
      std::istringstream ss(it == meta.meta.end() ? std::string() : it->second);
      std::string l;
      while (std::getline(ss, l)) lines.push_back(l);
    }
    size_t maxlen = 1;
    for (auto& l : lines) maxlen = std::max(maxlen, l.size());
    const std::string form = std::to_string(maxlen) + "A";
    const char* ct[] = {"LINE"};
    const char* cf[] = {form.c_str()};
    fits_create_tbl(f_, BINARY_TBL, static_cast<LONGLONG>(lines.size()), 1, const_cast<char**>(ct),
                    const_cast<char**>(cf), nullptr, "CONFIG", &st);
    for (size_t i = 0; i < lines.size(); ++i) {
      char* p = const_cast<char*>(lines[i].c_str());
      fits_write_col(f_, TSTRING, 1, static_cast<LONGLONG>(i + 1), 1, 1, &p, &st);
    }
    if (st) return Err("write CONFIG", st);
    return Status::OK();
  }

  Status WriteChunk(const LibraryData& d, int64_t first) {
    int st = 0;
    const int64_t c = d.n;
    auto img = [&](int hdu, const std::vector<float>& v, int64_t width) {
      if (width == 0 || c == 0) return;
      fits_movabs_hdu(f_, hdu, nullptr, &st);
      fits_write_img(f_, TFLOAT, first * width + 1, c * width, const_cast<float*>(v.data()), &st);
    };
    img(hdu_spec_, d.spectra, nw_);
    img(hdu_err_, d.spectra_err, nw_);
    if (nb_ > 0) { img(hdu_phot_, d.photometry, nb_); img(hdu_perr_, d.photometry_err, nb_); }
    if (st) return Err("write image rows", st);
    fits_movabs_hdu(f_, hdu_labels_, nullptr, &st);
    const LONGLONG row = first + 1;
    auto col = [&](int k, const std::vector<float>& v) {
      fits_write_col(f_, TFLOAT, k, row, 1, static_cast<LONGLONG>(v.size()), const_cast<float*>(v.data()), &st);
    };
    col(1, d.mass_frac); col(2, d.light_frac); col(3, d.zh); col(4, d.t_mass);
    col(5, d.snr); col(6, d.tau_bc); col(7, d.tau_ism);
    fits_write_col(f_, TINT, 8, row, 1, c, const_cast<int32_t*>(d.sfh_kind.data()), &st);
    col(9, d.z_final);
    if (st) return Err("write LABELS rows", st);
    return Status::OK();
  }

  Status Close() {
    int st = 0;
    fits_close_file(f_, &st);
    f_ = nullptr;
    if (st) { std::remove(tmp_.c_str()); return Err("close", st); }
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) return Status::Error("library '" + path_ + "': cannot rename from " + tmp_ + ": " + ec.message());
    return Status::OK();
  }

 private:
  Status Err(const std::string& what, int st) {
    return Status::Error("library '" + path_ + "': " + what + " failed: " + CfitsioErrorText(st) +
                         " (is the directory writable and the disk not full?)");
  }
  fitsfile* f_ = nullptr;
  std::string path_, tmp_;
  int64_t n_ = 0, nw_ = 0, nb_ = 0;
  int hdu_spec_ = 0, hdu_err_ = 0, hdu_phot_ = 0, hdu_perr_ = 0, hdu_labels_ = 0;
};

}  // namespace

LibraryData SimulateLibrary(const ForwardModel& model, int64_t first, int64_t count, uint64_t seed, int threads) {
  LibraryData d;
  Fill(&d, model);
  d.meta["seed"] = std::to_string(seed);
  Resize(&d, count);
  if (threads > 0) {
    tbb::task_arena arena(threads);
    arena.execute([&] { SimulateInto(model, first, count, seed, &d); });
  } else {
    SimulateInto(model, first, count, seed, &d);
  }
  return d;
}

Status GenerateLibrary(const ForwardModel& model, int64_t n, uint64_t seed, const std::string& path,
                       const LibraryWriteOptions& options) {
  if (n < 0) return Status::Error("library: n must be >= 0");
  LibraryData meta;
  Fill(&meta, model);
  meta.meta["seed"] = std::to_string(seed);
  for (const auto& kv : options.extra_meta) meta.meta[kv.first] = kv.second;
  LibraryWriter w;
  CUBEFLOW_RETURN_NOT_OK(w.Open(path, meta, n));
  const int64_t chunk = std::max<int64_t>(options.chunk_rows, 1);
  tbb::task_arena arena(options.threads > 0 ? options.threads : tbb::task_arena::automatic);
  LibraryData d = meta;
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t c = std::min(chunk, n - first);
    Resize(&d, c);
    arena.execute([&] { SimulateInto(model, first, c, seed, &d); });
    CUBEFLOW_RETURN_NOT_OK(w.WriteChunk(d, first));
    if (options.progress) options.progress(first + c, n);
  }
  return w.Close();
}

Status WriteLibrary(const std::string& path, const LibraryData& data) {
  LibraryWriter w;
  CUBEFLOW_RETURN_NOT_OK(w.Open(path, data, data.n));
  CUBEFLOW_RETURN_NOT_OK(w.WriteChunk(data, 0));
  return w.Close();
}

Result<int64_t> LibrarySize(const std::string& path) {
  fitsfile* f = nullptr;
  int st = 0;
  if (fits_open_file(&f, path.c_str(), READONLY, &st))
    return Status::Error("library '" + path + "': cannot open: " + CfitsioErrorText(st));
  LONGLONG n = 0;
  fits_read_key(f, TLONGLONG, "NOBJ", &n, nullptr, &st);
  int st2 = 0;
  fits_close_file(f, &st2);
  if (st) return Status::Error("library '" + path + "': primary header has no NOBJ key (not a cubeflow library?)");
  return static_cast<int64_t>(n);
}

Result<LibraryData> ReadLibrary(const std::string& path, int64_t first, int64_t count) {
  fitsfile* f = nullptr;
  int st = 0;
  if (fits_open_file(&f, path.c_str(), READONLY, &st))
    return Status::Error("library '" + path + "': cannot open: " + CfitsioErrorText(st));
  struct Closer { fitsfile* f; ~Closer() { int s = 0; fits_close_file(f, &s); } } closer{f};
  auto err = [&](const std::string& what) {
    return Status::Error("library '" + path + "': " + what + ": " + CfitsioErrorText(st));
  };
  LibraryData d;
  LONGLONG n = 0, nw = 0, nb = 0;
  double v = 0;
  char sval[FLEN_VALUE];
  if (fits_read_key(f, TLONGLONG, "NOBJ", &n, nullptr, &st)) return err("primary header key NOBJ");
  fits_read_key(f, TLONGLONG, "NWAVE", &nw, nullptr, &st);
  fits_read_key(f, TLONGLONG, "NBANDS", &nb, nullptr, &st);
  if (st) return err("primary header keys NWAVE/NBANDS");
  if (first < 0 || first > n) return Status::Error("library '" + path + "': first row " + std::to_string(first) +
                                                   " outside 0.." + std::to_string(n));
  if (count < 0 || first + count > n) count = n - first;
  double crval = 0, cdelt = 1, crpix = 1;
  fits_read_key(f, TDOUBLE, "CRVAL1", &crval, nullptr, &st);
  fits_read_key(f, TDOUBLE, "CDELT1", &cdelt, nullptr, &st);
  fits_read_key(f, TDOUBLE, "CRPIX1", &crpix, nullptr, &st);
  fits_read_key(f, TDOUBLE, "NORMMIN", &d.norm_min, nullptr, &st);
  fits_read_key(f, TDOUBLE, "NORMMAX", &d.norm_max, nullptr, &st);
  fits_read_key(f, TDOUBLE, "SIGMA", &d.sigma_target, nullptr, &st);
  if (st) return err("primary header wavelength/normalisation keys");
  d.wave = WavelengthAxis::Linear(crval, cdelt, nw);
  d.wave.crpix = crpix;
  for (LONGLONG b = 0; b < nb; ++b) {
    const std::string kb = "BAND" + std::to_string(b + 1), kp = "PIVOT" + std::to_string(b + 1);
    fits_read_key(f, TSTRING, kb.c_str(), sval, nullptr, &st);
    fits_read_key(f, TDOUBLE, kp.c_str(), &v, nullptr, &st);
    d.bands.push_back(sval);
    d.pivots.push_back(v);
  }
  char k[16];
  for (int i = 0; i < kNumAgeBins; ++i) {
    std::snprintf(k, sizeof k, "AGEC%02d", i);
    fits_read_key(f, TDOUBLE, k, &v, nullptr, &st);
    d.age_bin_centres.push_back(v);
  }
  for (int i = 0; i <= kNumAgeBins; ++i) {
    std::snprintf(k, sizeof k, "AGEE%02d", i);
    fits_read_key(f, TDOUBLE, k, &v, nullptr, &st);
    d.age_bin_edges.push_back(v);
  }
  if (st) return err("primary header BANDn/PIVOTn/AGECnn/AGEEnn keys");
  {
    char* lv = nullptr;
    if (fits_read_key_longstr(f, "SSPNAME", &lv, nullptr, &st) == 0 && lv) { d.ssp_name = lv; }
    if (lv) fits_free_memory(lv, &st);
    st = 0;
    for (const char* key : {"SEED", "SNRLIST", "MASSLAB", "VERSION", "CREATED", "COMMAND"}) {
      char* s2 = nullptr;
      int s3 = 0;
      if (fits_read_key_longstr(f, key, &s2, nullptr, &s3) == 0 && s2) {
        std::string kk = key;
        for (char& c : kk) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        d.meta[kk] = s2;
      }
      if (s2) { int s4 = 0; fits_free_memory(s2, &s4); }
    }
  }
  d.n = count;
  auto read_img = [&](const char* name, std::vector<float>* out, LONGLONG width, bool optional) -> Status {
    if (width == 0) return Status::OK();
    if (fits_movnam_hdu(f, IMAGE_HDU, const_cast<char*>(name), 0, &st)) {
      if (optional) { st = 0; fits_clear_errmsg(); return Status::OK(); }
      return err(std::string("missing HDU ") + name);
    }
    out->resize(static_cast<size_t>(count * width));
    if (count > 0) {
      int anynul = 0;
      fits_read_img(f, TFLOAT, first * width + 1, count * width, nullptr, out->data(), &anynul, &st);
    }
    if (st) return err(std::string("read HDU ") + name);
    return Status::OK();
  };
  CUBEFLOW_RETURN_NOT_OK(read_img("SPECTRA", &d.spectra, nw, false));
  CUBEFLOW_RETURN_NOT_OK(read_img("SPEC_ERR", &d.spectra_err, nw, true));
  CUBEFLOW_RETURN_NOT_OK(read_img("PHOT", &d.photometry, nb, false));
  CUBEFLOW_RETURN_NOT_OK(read_img("PHOT_ERR", &d.photometry_err, nb, true));
  if (fits_movnam_hdu(f, BINARY_TBL, const_cast<char*>("LABELS"), 0, &st)) return err("missing HDU LABELS");
  auto read_col = [&](const char* name, std::vector<float>* out, int width) -> Status {
    int colnum = 0;
    if (fits_get_colnum(f, CASEINSEN, const_cast<char*>(name), &colnum, &st)) return err(std::string("LABELS column ") + name);
    out->resize(static_cast<size_t>(count * width));
    int anynul = 0;
    if (count > 0) fits_read_col(f, TFLOAT, colnum, first + 1, 1, count * width, nullptr, out->data(), &anynul, &st);
    if (st) return err(std::string("read LABELS column ") + name);
    return Status::OK();
  };
  CUBEFLOW_RETURN_NOT_OK(read_col("MASS_FRAC", &d.mass_frac, kNumAgeBins));
  CUBEFLOW_RETURN_NOT_OK(read_col("LIGHT_FRAC", &d.light_frac, kNumAgeBins));
  CUBEFLOW_RETURN_NOT_OK(read_col("ZH", &d.zh, kNumAgeBins));
  CUBEFLOW_RETURN_NOT_OK(read_col("T_MASS", &d.t_mass, kNumMassPercentiles));
  CUBEFLOW_RETURN_NOT_OK(read_col("SNR", &d.snr, 1));
  CUBEFLOW_RETURN_NOT_OK(read_col("TAU_BC", &d.tau_bc, 1));
  CUBEFLOW_RETURN_NOT_OK(read_col("TAU_ISM", &d.tau_ism, 1));
  CUBEFLOW_RETURN_NOT_OK(read_col("Z_FINAL", &d.z_final, 1));
  {
    int colnum = 0;
    if (fits_get_colnum(f, CASEINSEN, const_cast<char*>("SFH_KIND"), &colnum, &st)) return err("LABELS column SFH_KIND");
    d.sfh_kind.resize(static_cast<size_t>(count));
    int anynul = 0;
    if (count > 0) fits_read_col(f, TINT, colnum, first + 1, 1, count, nullptr, d.sfh_kind.data(), &anynul, &st);
    if (st) return err("read LABELS column SFH_KIND");
  }
  // CONFIG text (optional)
  if (fits_movnam_hdu(f, BINARY_TBL, const_cast<char*>("CONFIG"), 0, &st) == 0) {
    long nrows = 0;
    fits_get_num_rows(f, &nrows, &st);
    int typecode = 0; long repeat = 0, width = 0;
    fits_get_coltype(f, 1, &typecode, &repeat, &width, &st);
    std::string text;
    std::vector<char> buf(static_cast<size_t>(repeat) + 1);
    for (long r = 0; r < nrows && !st; ++r) {
      char* p = buf.data();
      int anynul = 0;
      fits_read_col(f, TSTRING, 1, r + 1, 1, 1, nullptr, &p, &anynul, &st);
      text += std::string(p) + "\n";
    }
    if (!st) d.meta["config"] = text;
  }
  st = 0;
  fits_clear_errmsg();
  return d;
}

}  // namespace cubeflow::sim
