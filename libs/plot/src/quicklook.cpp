// Quicklook figures of MAPS products.
#include "cubeflow/plot/quicklook.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>

#include "cubeflow/fits/wcs.hpp"
#include "cubeflow/fits/maps_reader.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::plot {

namespace fs = std::filesystem;
using fits::MapsColumn;
using fits::MapsFile;
using fits::MapsImage;
using fits::MapsTable;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct BitName {
  const char* name;
  uint32_t bit;
};
constexpr BitName kBits[] = {{"NOCOV", kQualNoCoverage},          {"LOWSNR", kQualLowSnr},
                             {"BROADTGT", kQualBroaderThanTarget}, {"NONPOSPHOT", kQualNonPositivePhotometry},
                             {"OUTTRAIN", kQualOutsideTraining},   {"FAILED", kQualInferenceFailed}};

std::string Fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string QualityText(uint32_t q) {
  std::string s;
  for (const auto& b : kBits)
    if (q & b.bit) s += (s.empty() ? "" : ",") + std::string(b.name);
  return s.empty() ? "0" : s;
}

/// The four science maps of Fig. 13.
struct Science {
  const char* name;
  const char* title;
  bool age;
};
constexpr Science kScience[] = {{"LW_LOGAGE", "LW age", true},
                                {"MW_LOGAGE", "MW age", true},
                                {"LW_ZH", "LW [Z/H]", false},
                                {"MW_ZH", "MW [Z/H]", false}};

/// Age in Gyr from log10(age/yr).
double Gyr(double logage) { return std::pow(10.0, logage - 9.0); }

/// Parses an age-bin label ("0.007Gyr", "250 Myr", "1e8yr", "0.5"); NaN if it does not parse.
double ParseAgeGyr(const std::string& s) {
  const char* p = s.c_str();
  char* end = nullptr;
  const double v = std::strtod(p, &end);
  if (end == p || !std::isfinite(v)) return kNaN;
  std::string unit = Upper(std::string(end));
  unit.erase(std::remove_if(unit.begin(), unit.end(), [](unsigned char c) { return std::isspace(c); }), unit.end());
  if (unit.empty() || unit == "GYR") return v;
  if (unit == "MYR") return v * 1e-3;
  if (unit == "KYR") return v * 1e-6;
  if (unit == "YR") return v * 1e-9;
  return kNaN;
}

std::string FrameName(const CelestialWcs& w) {
  const size_t k = w.cards.find("RADESYS");
  if (k == std::string::npos) return "";
  const size_t q0 = w.cards.find('\'', k), q1 = q0 == std::string::npos ? q0 : w.cards.find('\'', q0 + 1);
  if (q0 == std::string::npos || q1 == std::string::npos || q1 > k + 80) return "";
  std::string v = w.cards.substr(q0 + 1, q1 - q0 - 1);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  return v;
}

/// A MAPS file with its loaded images cached.
class Product {
 public:
  explicit Product(MapsFile f) : file_(std::move(f)) {}
  const MapsFile& file() const { return file_; }
  bool Has(const std::string& name) const { return file_.Find(name) != nullptr; }
  /// Loaded image or nullptr if absent; errors propagate.
  Result<const MapsImage*> Get(const std::string& name) {
    if (!Has(name)) return static_cast<const MapsImage*>(nullptr);
    const std::string key = Upper(name);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      auto r = file_.Load(name);
      if (!r.ok()) return r.status();
      it = cache_.emplace(key, std::move(*r)).first;
    }
    return static_cast<const MapsImage*>(&it->second);
  }

 private:
  MapsFile file_;
  std::map<std::string, MapsImage> cache_;
};

/// Where a map's values are undefined for display: BINID < 0 or QUALITY & mask_bits.
struct MaskInfo {
  const MapsImage* binid = nullptr;
  const MapsImage* quality = nullptr;
  uint32_t bits = 0;
  bool Masked(int64_t s) const {
    if (binid && static_cast<size_t>(s) < binid->values.size()) {
      const double b = binid->values[static_cast<size_t>(s)];
      if (!std::isfinite(b) || b < 0) return true;
    }
    if (quality && bits && static_cast<size_t>(s) < quality->values.size()) {
      const double q = quality->values[static_cast<size_t>(s)];
      if (std::isfinite(q) && (static_cast<uint32_t>(std::llround(q)) & bits)) return true;
    }
    return false;
  }
};

std::vector<double> MaskedPlane(const MapsImage& im, int64_t plane, const MaskInfo& m) {
  const int64_t n = im.nx * im.ny;
  std::vector<double> v(im.values.begin() + plane * n, im.values.begin() + (plane + 1) * n);
  const bool same_grid = (!m.binid || (m.binid->nx == im.nx && m.binid->ny == im.ny)) &&
                         (!m.quality || (m.quality->nx == im.nx && m.quality->ny == im.ny));
  if (same_grid)
    for (int64_t s = 0; s < n; ++s)
      if (m.Masked(s)) v[static_cast<size_t>(s)] = kNaN;
  return v;
}

void SetSky(ImagePanel& p, const std::optional<fits::Wcs>& wcs, const std::string& frame, const QuicklookOptions& o) {
  if (!wcs || !o.sky_axes) return;
  p.wcs = *wcs;
  p.sky_format = o.sky_format;
  p.ra_label = frame.empty() ? "RA" : "RA (" + frame + ")";
  p.dec_label = frame.empty() ? "Dec" : "Dec (" + frame + ")";
}

Colormap Cmap(const char* name) { return *Colormap::Named(name); }

/// Uncertainty of a map: its _ERR map, or half the 16-84 % width. Empty if none.
Result<std::vector<double>> ErrorPlane(Product& p, const std::string& name, int64_t plane, std::string& source) {
  const MapsImage* hdr = p.file().Find(name);
  std::vector<std::string> err_names;
  if (hdr && !hdr->errdata.empty()) err_names.push_back(hdr->errdata);
  err_names.push_back(name + "_ERR");
  for (const auto& en : err_names) {
    CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* e, p.Get(en));
    if (!e || plane >= e->nplanes) continue;
    source = e->name;
    const int64_t n = e->nx * e->ny;
    return std::vector<double>(e->values.begin() + plane * n, e->values.begin() + (plane + 1) * n);
  }
  CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* lo, p.Get(name + "_P16"));
  CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* hi, p.Get(name + "_P84"));
  if (lo && hi && lo->nx == hi->nx && lo->ny == hi->ny && plane < lo->nplanes && plane < hi->nplanes) {
    source = lo->name + "/" + hi->name;
    const int64_t n = lo->nx * lo->ny;
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t s = 0; s < n; ++s)
      v[static_cast<size_t>(s)] = 0.5 * (hi->values[static_cast<size_t>(plane * n + s)] -
                                         lo->values[static_cast<size_t>(plane * n + s)]);
    return v;
  }
  return std::vector<double>{};
}

/// Values of one quantity for one bin (scalar or vector), with lower / upper uncertainty
/// bounds when the product has them.
struct BinQuantity {
  std::vector<double> v, lo, hi;
  bool has_err = false;
  bool found = false;
};

/// Reads a quantity for a bin from the BINS table (NAME, NAME_ERR or NAME_P16/_P84), falling
/// back to the maps at one of the bin's spaxels.
Result<BinQuantity> QuantityOfBin(Product& p, const std::string& name, int64_t row, int64_t spaxel) {
  BinQuantity q;
  const MapsTable* t = p.file().bins();
  auto fill_err = [&](const std::vector<double>& e) {
    q.lo.resize(q.v.size());
    q.hi.resize(q.v.size());
    for (size_t k = 0; k < q.v.size(); ++k) {
      q.lo[k] = q.v[k] - e[k];
      q.hi[k] = q.v[k] + e[k];
    }
    q.has_err = true;
  };
  if (t && row >= 0) {
    if (const MapsColumn* c = t->Find(name)) {
      q.found = true;
      for (int64_t k = 0; k < c->width; ++k) q.v.push_back(c->At(row, k));
      const MapsColumn* e = t->Find(name + "_ERR");
      const MapsColumn* lo = t->Find(name + "_P16");
      const MapsColumn* hi = t->Find(name + "_P84");
      if (e && e->width == c->width) {
        std::vector<double> ev;
        for (int64_t k = 0; k < c->width; ++k) ev.push_back(e->At(row, k));
        fill_err(ev);
      } else if (lo && hi && lo->width == c->width && hi->width == c->width) {
        for (int64_t k = 0; k < c->width; ++k) {
          q.lo.push_back(lo->At(row, k));
          q.hi.push_back(hi->At(row, k));
        }
        q.has_err = true;
      }
      return q;
    }
  }
  if (spaxel < 0) return q;
  CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* m, p.Get(name));
  if (!m || spaxel >= m->nx * m->ny) return q;
  q.found = true;
  const int64_t n = m->nx * m->ny;
  for (int64_t k = 0; k < m->nplanes; ++k) q.v.push_back(m->values[static_cast<size_t>(k * n + spaxel)]);
  std::vector<double> e;
  bool have = false;
  for (const std::string& en : {m->errdata, name + "_ERR"}) {
    if (en.empty() || have) continue;
    CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* em, p.Get(en));
    if (em && em->nplanes == m->nplanes && em->nx == m->nx && em->ny == m->ny) {
      for (int64_t k = 0; k < m->nplanes; ++k) e.push_back(em->values[static_cast<size_t>(k * n + spaxel)]);
      have = true;
    }
  }
  if (have) {
    fill_err(e);
    return q;
  }
  CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* lo, p.Get(name + "_P16"));
  CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* hi, p.Get(name + "_P84"));
  if (lo && hi && lo->nplanes == m->nplanes && hi->nplanes == m->nplanes && lo->nx == m->nx && hi->nx == m->nx) {
    for (int64_t k = 0; k < m->nplanes; ++k) {
      q.lo.push_back(lo->values[static_cast<size_t>(k * n + spaxel)]);
      q.hi.push_back(hi->values[static_cast<size_t>(k * n + spaxel)]);
    }
    q.has_err = true;
  }
  return q;
}

bool AllFinite(const std::vector<double>& v) {
  return !v.empty() && std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

std::string DefaultPrefix(const std::string& path) {
  std::string stem = fs::path(path).stem().string();
  if (fs::path(stem).extension() == ".fits") stem = fs::path(stem).stem().string();  // x.fits.gz
  const std::string u = Upper(stem);
  for (const char* suf : {"_MAPS", "-MAPS", ".MAPS"}) {
    const size_t n = std::char_traits<char>::length(suf);
    if (u.size() > n && u.compare(u.size() - n, n, suf) == 0) return stem.substr(0, stem.size() - n);
  }
  return stem.empty() ? "maps" : stem;
}

/// "9.31 ± 0.05" (half the lo..hi width) or "9.31".
std::string ValueText(const BinQuantity& q, bool gyr, const char* fmt) {
  if (!q.found || q.v.empty() || !std::isfinite(q.v[0])) return "n/a";
  auto conv = [&](double v) { return gyr ? Gyr(v) : v; };
  std::string s = Fmt(fmt, conv(q.v[0]));
  if (q.has_err && std::isfinite(q.lo[0]) && std::isfinite(q.hi[0])) {
    const double e = 0.5 * (conv(q.hi[0]) - conv(q.lo[0]));
    s += " \u00b1 " + Fmt(fmt, e);
  }
  if (gyr) s += " Gyr";
  return s;
}

/// Cell height that fits a map of the product's aspect ratio in a cell of o.cell_width (the
/// bands around a map take about 310 pixels across and 120 down at the default font size).
int MapCellHeight(const Product& p, const QuicklookOptions& o) {
  int64_t nx = 0, ny = 0;
  for (const auto& im : p.file().images())
    if (im.nx > 0 && im.ny > 0) {
      nx = im.nx;
      ny = im.ny;
      break;
    }
  if (nx <= 0) return o.cell_height;
  const double pw = std::max(100, o.cell_width - 310);
  return std::clamp(static_cast<int>(pw * static_cast<double>(ny) / static_cast<double>(nx)) + 125, 220,
                    std::max(o.cell_height, 3 * o.cell_width / 2));
}

}  // namespace

Result<uint32_t> ParseQualityMask(const std::string& text) {
  std::string t = Upper(text);
  if (t.empty() || t == "DEFAULT") return uint32_t{kQualNoCoverage | kQualInferenceFailed};
  if (t == "NONE") return uint32_t{0};
  if (t == "ALL") return uint32_t{0x3f};
  uint32_t bits = 0;
  size_t a = 0;
  while (a <= t.size()) {
    const size_t b = t.find(',', a);
    std::string tok = t.substr(a, b == std::string::npos ? std::string::npos : b - a);
    tok.erase(std::remove_if(tok.begin(), tok.end(), [](unsigned char c) { return std::isspace(c); }), tok.end());
    if (!tok.empty()) {
      bool ok = false;
      for (const auto& bn : kBits)
        if (tok == bn.name) {
          bits |= bn.bit;
          ok = true;
        }
      if (!ok) {
        char* end = nullptr;
        const long v = std::strtol(tok.c_str(), &end, 0);
        if (end && *end == '\0' && v >= 0) {
          bits |= static_cast<uint32_t>(v);
          ok = true;
        }
      }
      if (!ok)
        return Status::Error("unknown quality bit '" + tok +
                             "'; use default, none, all, or NOCOV, LOWSNR, BROADTGT, NONPOSPHOT, OUTTRAIN, FAILED "
                             "or integers, comma-separated");
    }
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return bits;
}

Result<QuicklookResult> WriteMapsQuicklooks(const std::string& maps_path, const QuicklookOptions& o) {
  {
    std::error_code ec;
    if (!fs::exists(maps_path, ec)) return Status::Error("no such file: '" + maps_path + "'");
  }
  CUBEFLOW_ASSIGN_OR_RETURN(MapsFile mf, MapsFile::Open(maps_path));
  Product p(std::move(mf));
  QuicklookResult res;

  // --- is it a MAPS product? ---
  static const char* kKnown[] = {"LW_LOGAGE", "MW_LOGAGE", "LW_ZH", "MW_ZH", "MASS_FRAC", "ZH", "SNR", "BINID"};
  bool any = p.file().bins() != nullptr;
  for (const char* k : kKnown) any = any || p.Has(k);
  if (!any) {
    std::string found;
    for (const auto& n : p.file().hdu_names()) found += (found.empty() ? "" : ", ") + n;
    return Status::Error("'" + maps_path + "' is not a MAPS product: it has none of the extensions LW_LOGAGE, MW_LOGAGE, "
                         "LW_ZH, MW_ZH, MASS_FRAC, ZH, SNR, BINID and no BINS table (it has: " + found +
                         "). Give the file written by io.write_maps (see docs/products.md).");
  }

  // Masks and WCS.
  CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* binid, p.Get("BINID"));
  MaskInfo mask;
  mask.binid = binid;
  mask.bits = o.mask_bits;
  {
    std::string qname = "QUALITY";
    for (const auto& s : kScience)
      if (const MapsImage* h = p.file().Find(s.name); h && !h->qualdata.empty()) {
        qname = h->qualdata;
        break;
      }
    CUBEFLOW_ASSIGN_OR_RETURN(mask.quality, p.Get(qname));
  }
  std::optional<fits::Wcs> wcs;
  std::string frame;
  if (o.sky_axes) {
    const MapsImage* ref = nullptr;
    for (const char* k : kKnown)
      if (const MapsImage* h = p.file().Find(k); h && !h->wcs.empty()) {
        ref = h;
        break;
      }
    if (!ref)
      for (const auto& im : p.file().images())
        if (!im.wcs.empty()) {
          ref = &im;
          break;
        }
    if (ref) {
      auto w = fits::Wcs::FromCards(ref->wcs);
      if (w.ok()) {
        wcs = std::move(*w);
        frame = FrameName(ref->wcs);
      } else {
        res.notes.push_back("the WCS of '" + ref->name + "' is not usable (" + w.status().message() +
                            "); maps have pixel axes");
      }
    } else {
      res.notes.push_back("the maps carry no celestial WCS; maps have pixel axes");
    }
  }

  // --- which bins get an SFH plot (validated before anything is written) ---
  const MapsTable* table = p.file().bins();
  auto bin_exists = [&](int64_t id) {
    if (table && table->RowOf(id) >= 0) return true;
    if (binid)
      for (double v : binid->values)
        if (std::isfinite(v) && std::llround(v) == id) return true;
    return false;
  };
  std::vector<int64_t> sfh_bins;
  for (int64_t id : o.bins) {
    if (!bin_exists(id)) {
      std::string range;
      if (table && table->Find("BINID") && table->nrows > 0) {
        const MapsColumn* c = table->Find("BINID");
        const auto [mn, mx] = std::minmax_element(c->values.begin(), c->values.end());
        range = " (its bins are " + std::to_string(std::llround(*mn)) + ".." + std::to_string(std::llround(*mx)) + ")";
      }
      return Status::Error("bin " + std::to_string(id) + " is not in '" + maps_path + "'" + range +
                           "; choose another --bin, or --pos X,Y");
    }
    sfh_bins.push_back(id);
  }
  for (const auto& [px, py] : o.positions) {
    if (!binid)
      return Status::Error("cannot find the bin at pixel (" + Fmt("%g", px) + ", " + Fmt("%g", py) + "): '" +
                           maps_path + "' has no BINID extension; use --bin ID");
    const int64_t ix = std::llround(px), iy = std::llround(py);
    if (ix < 0 || iy < 0 || ix >= binid->nx || iy >= binid->ny)
      return Status::Error("pixel (" + Fmt("%g", px) + ", " + Fmt("%g", py) + ") is outside the " +
                           std::to_string(binid->nx) + " x " + std::to_string(binid->ny) + " map of '" + maps_path +
                           "' (0-based x, y)");
    const double b = binid->At(ix, iy);
    if (!std::isfinite(b) || b < 0)
      return Status::Error("pixel (" + std::to_string(ix) + ", " + std::to_string(iy) + ") of '" + maps_path +
                           "' is not in any bin (BINID = -1); choose a pixel inside the binned area");
    sfh_bins.push_back(std::llround(b));
  }
  const bool have_mf = (table && table->Find("MASS_FRAC")) || p.Has("MASS_FRAC");
  if (!have_mf) res.missing.push_back("MASS_FRAC");
  if (!((table && table->Find("ZH")) || p.Has("ZH"))) res.missing.push_back("ZH");
  for (const auto& s : kScience)
    if (!p.Has(s.name)) res.missing.push_back(s.name);
  if (!p.Has("SNR")) res.missing.push_back("SNR");
  if (!binid) res.missing.push_back("BINID");
  if (!table) res.missing.push_back("BINS");

  // Spaxel of each bin (first in FITS order) and the bin's table row.
  auto spaxel_of = [&](int64_t id) -> int64_t {
    if (!binid) return -1;
    for (size_t s = 0; s < binid->values.size(); ++s)
      if (std::isfinite(binid->values[s]) && std::llround(binid->values[s]) == id) return static_cast<int64_t>(s);
    return -1;
  };
  if (o.sfh && have_mf && sfh_bins.empty()) {
    // Default: the highest-S/N bin that has a mass-fraction vector.
    int64_t best = -1;
    double best_snr = -std::numeric_limits<double>::infinity();
    if (table && table->Find("BINID")) {
      const MapsColumn* id = table->Find("BINID");
      const MapsColumn* snr = table->Find("SNR");
      for (int64_t r = 0; r < table->nrows; ++r) {
        const int64_t b = std::llround(id->At(r));
        CUBEFLOW_ASSIGN_OR_RETURN(BinQuantity q, QuantityOfBin(p, "MASS_FRAC", r, spaxel_of(b)));
        if (!AllFinite(q.v)) continue;
        const double s = snr && std::isfinite(snr->At(r)) ? snr->At(r) : -1e300;
        if (s > best_snr) {
          best_snr = s;
          best = b;
        }
      }
    } else if (binid) {
      CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* snr, p.Get("SNR"));
      CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* m, p.Get("MASS_FRAC"));
      for (size_t s = 0; m && s < binid->values.size(); ++s) {
        if (!std::isfinite(binid->values[s]) || binid->values[s] < 0 || !std::isfinite(m->values[s])) continue;
        const double v = snr && s < snr->values.size() && std::isfinite(snr->values[s]) ? snr->values[s] : -1e300;
        if (v > best_snr) {
          best_snr = v;
          best = std::llround(binid->values[s]);
        }
      }
    }
    if (best >= 0) sfh_bins.push_back(best);
    else res.notes.push_back("no SFH plot: no bin has a complete MASS_FRAC vector");
  } else if (o.sfh && !have_mf && !sfh_bins.empty()) {
    res.notes.push_back("no SFH plot: the file has no MASS_FRAC column or extension");
    sfh_bins.clear();
  }
  if (!o.sfh && !sfh_bins.empty()) res.notes.push_back("SFH plots switched off: the chosen bins are not plotted");
  if (!o.sfh || !have_mf) sfh_bins.clear();
  std::sort(sfh_bins.begin(), sfh_bins.end());
  sfh_bins.erase(std::unique(sfh_bins.begin(), sfh_bins.end()), sfh_bins.end());
  // A requested bin must have results (checked before anything is written).
  for (int64_t id : sfh_bins) {
    const int64_t row = table ? table->RowOf(id) : -1;
    CUBEFLOW_ASSIGN_OR_RETURN(BinQuantity q, QuantityOfBin(p, "MASS_FRAC", row, spaxel_of(id)));
    if (AllFinite(q.v)) continue;
    std::string qt;
    if (table && row >= 0 && table->Find("QUALITY"))
      qt = " (QUALITY = " + QualityText(static_cast<uint32_t>(std::llround(table->Find("QUALITY")->At(row)))) + ")";
    return Status::Error("bin " + std::to_string(id) + " of '" + maps_path + "' has no mass fractions" + qt +
                         ": its inference failed or its results are missing; choose another bin");
  }

  // --- output location ---
  const std::string dir = o.out_dir.empty() ? fs::path(maps_path).parent_path().string() : o.out_dir;
  const std::string prefix = o.prefix.empty() ? DefaultPrefix(maps_path) : o.prefix;
  if (!dir.empty()) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Status::Error("cannot create the output directory '" + dir + "': " + ec.message());
  }
  auto out_path = [&](const std::string& name) { return (fs::path(dir.empty() ? "." : dir) / (prefix + name)).string(); };
  std::string object;
  if (auto it = p.file().primary().find("OBJECT"); it != p.file().primary().end()) object = it->second;
  const std::string fname = fs::path(maps_path).filename().string();
  const std::string fig_name = object.empty() ? fname : object + "  (" + fname + ")";

  const std::string age_label = o.age_gyr ? "age (Gyr)" : "log_{10}(age/yr)";
  const std::string zh_label = "[Z/H] (dex)";

  // --- the maps figure ---
  {
    int nsci = 0;
    for (const auto& s : kScience) nsci += p.Has(s.name) ? 1 : 0;
    std::vector<std::string> extras;
    if (p.Has("SNR")) extras.push_back("SNR");
    if (binid) extras.push_back("BINID");
    if (nsci == 0 && p.Has("FLUX")) extras.push_back("FLUX");
    const int cols = nsci > 0 ? 2 + (extras.empty() ? 0 : 1) : std::max<int>(1, static_cast<int>(extras.size()));
    const int rows = nsci > 0 ? 2 : 1;
    if (nsci > 0 || !extras.empty()) {
      Figure fig(rows, cols, o.cell_width, MapCellHeight(p, o));
      fig.title = fig_name;
      std::vector<std::string> cell_name(static_cast<size_t>(rows * cols));
      if (nsci == 0)
        res.notes.push_back("no LW/MW age or [Z/H] maps (was an inference node connected to io.write_maps?)");
      if (nsci > 0) {
        for (int i = 0; i < 4; ++i) {
          const Science& s = kScience[i];
          const int r = i / 2, c = i % 2;
          cell_name[static_cast<size_t>(r * cols + c)] = s.name;
          CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* im, p.Get(s.name));
          if (!im) {
            auto& n = fig.Note(r, c, "no " + std::string(s.name) + " extension");
            n.title = s.title;
            continue;
          }
          auto& panel = fig.Image(r, c);
          std::vector<double> v = MaskedPlane(*im, 0, mask);
          if (s.age && o.age_gyr)
            for (double& x : v) x = std::isfinite(x) ? Gyr(x) : x;
          panel.SetData(im->nx, im->ny, std::move(v));
          panel.title = s.title;
          panel.colormap = Cmap(s.age ? "viridis" : "plasma");
          panel.lo_percentile = 2;
          panel.hi_percentile = 98;
          panel.colorbar_label = s.age ? age_label : zh_label;
          panel.note = "no valid values";
          SetSky(panel, wcs, frame, o);
        }
      }
      for (size_t e = 0; e < extras.size(); ++e) {
        const int r = nsci > 0 ? static_cast<int>(e) : 0, c = nsci > 0 ? 2 : static_cast<int>(e);
        if (r >= rows) break;
        cell_name[static_cast<size_t>(r * cols + c)] = extras[e];
        CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* im, p.Get(extras[e]));
        auto& panel = fig.Image(r, c);
        SetSky(panel, wcs, frame, o);
        if (extras[e] == "BINID") {
          panel.SetData(im->nx, im->ny, std::vector<double>(im->values.begin(), im->values.begin() + im->nx * im->ny));
          panel.categorical = true;
          panel.reserve_colorbar = true;
          int64_t nb = 0;
          std::vector<int64_t> ids;
          for (double v : im->values)
            if (std::isfinite(v) && v >= 0) ids.push_back(std::llround(v));
          std::sort(ids.begin(), ids.end());
          nb = std::unique(ids.begin(), ids.end()) - ids.begin();
          panel.title = "Bins (" + std::to_string(nb) + ")";
          panel.note = "no binned spaxels";
        } else {
          // S/N and flux are per spaxel: shown everywhere, also outside the bins.
          std::vector<double> v(im->values.begin(), im->values.begin() + im->nx * im->ny);
          panel.SetData(im->nx, im->ny, std::move(v));
          panel.colormap = Cmap(extras[e] == "SNR" ? "magma" : "grey");
          panel.lo_percentile = 2;
          panel.hi_percentile = 98;
          const Norm n = panel.ResolvedNorm();
          if (n.vmin > 0 && n.vmax / n.vmin > 30) panel.scale = Norm::Scale::kLog;
          panel.title = extras[e] == "SNR" ? "S/N" : "Flux";
          panel.colorbar_label = extras[e] == "SNR" ? "S/N" : im->bunit;
        }
      }
      const std::string path = out_path("_maps.png");
      CUBEFLOW_RETURN_NOT_OK(fig.Save(path, &res.maps_layout));
      for (const auto& l : res.maps_layout) res.maps_panels.push_back(cell_name[static_cast<size_t>(l.row * cols + l.col)]);
      res.written.push_back(path);
    } else {
      res.notes.push_back("no maps figure: none of LW_LOGAGE, MW_LOGAGE, LW_ZH, MW_ZH, SNR, BINID are images");
    }

    // Uncertainty maps.
    std::vector<std::pair<const Science*, std::vector<double>>> errs;
    std::vector<std::string> sources;
    for (const auto& s : kScience) {
      if (!p.Has(s.name)) continue;
      std::string src;
      CUBEFLOW_ASSIGN_OR_RETURN(std::vector<double> e, ErrorPlane(p, s.name, 0, src));
      if (e.empty()) continue;
      errs.emplace_back(&s, std::move(e));
      sources.push_back(src);
    }
    if (!errs.empty()) {
      Figure fig(2, 2, o.cell_width, MapCellHeight(p, o));
      fig.title = fig_name + ": uncertainties";
      for (size_t i = 0; i < errs.size(); ++i) {
        const Science& s = *errs[i].first;
        const int idx = static_cast<int>(&s - kScience);
        CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* im, p.Get(s.name));
        MapsImage tmp = *im;
        tmp.values = errs[i].second;
        tmp.nplanes = 1;
        auto& panel = fig.Image(idx / 2, idx % 2);
        panel.SetData(im->nx, im->ny, MaskedPlane(tmp, 0, mask));
        panel.title = "\u03c3(" + std::string(s.title) + ")";
        panel.colormap = Cmap("magma");
        panel.lo_percentile = 2;
        panel.hi_percentile = 98;
        panel.colorbar_label = sources[i].find('/') != std::string::npos ? "(P84 - P16) / 2 (dex)" : "\u03c3 (dex)";
        panel.note = "no valid values";
        SetSky(panel, wcs, frame, o);
      }
      for (int idx = 0; idx < 4; ++idx) {
        bool used = false;
        for (const auto& e : errs) used = used || (e.first - kScience) == idx;
        if (!used && p.Has(kScience[idx].name))
          fig.Note(idx / 2, idx % 2, "no uncertainty for " + std::string(kScience[idx].name)).title =
              "\u03c3(" + std::string(kScience[idx].title) + ")";
      }
      const std::string path = out_path("_maps_err.png");
      CUBEFLOW_RETURN_NOT_OK(fig.Save(path));
      res.written.push_back(path);
    }
  }

  // --- SFH figures ---
  for (int64_t id : sfh_bins) {
    const int64_t row = table ? table->RowOf(id) : -1;
    const int64_t spax = spaxel_of(id);
    CUBEFLOW_ASSIGN_OR_RETURN(BinQuantity mfq, QuantityOfBin(p, "MASS_FRAC", row, spax));
    CUBEFLOW_ASSIGN_OR_RETURN(BinQuantity zhq, QuantityOfBin(p, "ZH", row, spax));
    if (!AllFinite(mfq.v)) continue;  // validated above; cannot happen
    std::map<std::string, BinQuantity> sc;
    for (const auto& s : kScience) {
      CUBEFLOW_ASSIGN_OR_RETURN(sc[s.name], QuantityOfBin(p, s.name, row, spax));
    }
    // Age-bin centres from the plane names of MASS_FRAC (or ZH).
    const size_t n = mfq.v.size();
    std::vector<double> ages;
    bool ages_ok = false;
    for (const char* src : {"MASS_FRAC", "ZH"}) {
      const MapsImage* h = p.file().Find(src);
      if (!h || h->plane_names.size() != n) continue;
      ages.clear();
      for (const auto& pn : h->plane_names) ages.push_back(ParseAgeGyr(pn));
      ages_ok = AllFinite(ages) && std::is_sorted(ages.begin(), ages.end()) && ages.front() > 0;
      if (ages_ok) break;
    }
    if (!ages_ok) {
      ages.clear();
      for (size_t k = 0; k < n; ++k) ages.push_back(static_cast<double>(k + 1));
      res.notes.push_back("bin " + std::to_string(id) +
                          ": no age-bin labels (C1..Cn of MASS_FRAC); the SFH is plotted against the age-bin index");
    }
    std::vector<double> edges(n + 1);
    if (ages_ok && n >= 2) {
      for (size_t k = 1; k < n; ++k) edges[k] = std::sqrt(ages[k - 1] * ages[k]);
      edges[0] = ages[0] * ages[0] / edges[1];
      edges[n] = ages[n - 1] * ages[n - 1] / edges[n - 1];
    } else {
      for (size_t k = 0; k <= n; ++k) edges[k] = ages_ok ? ages[0] * std::pow(2.0, static_cast<double>(k) - 0.5) : k + 0.5;
    }
    const std::string tlabel = ages_ok ? "lookback time (Gyr)" : "age bin";

    Figure fig(2, 2, o.cell_width + 40, o.cell_height);
    // Title: bin, position, S/N, quality; LW / MW values.
    {
      const std::string l0 = "Bin " + std::to_string(id) + "  -  " + (object.empty() ? fname : object);
      std::string l1;
      if (table && row >= 0) {
        auto col = [&](const char* c) { const MapsColumn* k = table->Find(c); return k ? k->At(row) : kNaN; };
        if (std::isfinite(col("X")) && std::isfinite(col("Y")))
          l1 += "centroid (x, y) = (" + Fmt("%.1f", col("X")) + ", " + Fmt("%.1f", col("Y")) + ")";
        if (std::isfinite(col("NSPAX"))) l1 += ", " + Fmt("%.0f", col("NSPAX")) + " spaxels";
        if (std::isfinite(col("SNR"))) l1 += ", S/N = " + Fmt("%.1f", col("SNR"));
        if (std::isfinite(col("QUALITY")) && std::llround(col("QUALITY")) != 0)
          l1 += ", quality " + QualityText(static_cast<uint32_t>(std::llround(col("QUALITY"))));
      }
      l1 += (l1.empty() ? "" : ", ") + fname;
      const char* af = o.age_gyr ? "%.2f" : "%.2f";
      const std::string agen = o.age_gyr ? "age " : "log age ";
      std::string l2 = "LW: " + agen + ValueText(sc["LW_LOGAGE"], o.age_gyr, af) + ", [Z/H] " +
                       ValueText(sc["LW_ZH"], false, "%.2f") + "      MW: " + agen +
                       ValueText(sc["MW_LOGAGE"], o.age_gyr, af) + ", [Z/H] " + ValueText(sc["MW_ZH"], false, "%.2f");
      fig.title = l0 + "\n" + l1 + "\n" + l2;
    }
    const Rgb blue = colors::Cycle()[0], orange = colors::Cycle()[1], red = colors::Cycle()[3],
              green = colors::Cycle()[2];
    auto mark_ages = [&](XYPanel& xy) {
      if (!ages_ok) return;
      const BinQuantity& lw = sc["LW_LOGAGE"];
      const BinQuantity& mw = sc["MW_LOGAGE"];
      if (lw.found && !lw.v.empty() && std::isfinite(lw.v[0]))
        xy.VLine(Gyr(lw.v[0]), {.color = orange, .width = 2, .dash = {8, 5}, .label = "LW age"});
      if (mw.found && !mw.v.empty() && std::isfinite(mw.v[0]))
        xy.VLine(Gyr(mw.v[0]), {.color = red, .width = 2, .dash = {3, 4}, .label = "MW age"});
    };
    // (a) mass fraction per age bin.
    {
      auto& xy = fig.XY(0, 0);
      xy.title = "Star-formation history";
      xy.x.log = ages_ok;
      xy.x.label = tlabel;
      xy.y.label = "mass fraction";
      xy.Bars(edges, mfq.v, {.color = blue, .label = "mass fraction"});
      if (mfq.has_err) xy.ErrorBars(ages, mfq.lo, mfq.hi, {.color = colors::kBlack, .label = "uncertainty"});
      mark_ages(xy);
    }
    // (b) [Z/H] per age bin.
    if (zhq.found && zhq.v.size() == n) {
      auto& xy = fig.XY(0, 1);
      xy.title = "Metallicity history";
      xy.x.log = ages_ok;
      xy.x.label = tlabel;
      xy.y.label = "[Z/H] (dex)";
      xy.x.lo = edges.front();
      xy.x.hi = edges.back();
      if (zhq.has_err) xy.Band(ages, zhq.lo, zhq.hi, {.color = green, .alpha = 0.25, .label = "uncertainty"});
      xy.Line(ages, zhq.v, {.color = green, .width = 2, .marker = Marker::kCircle, .marker_size = 9, .label = "[Z/H]"});
      std::vector<double> lx, ly;
      for (size_t k = 0; k < n; ++k)
        if (mfq.v[k] < 0.01) {
          lx.push_back(ages[k]);
          ly.push_back(zhq.v[k]);
        }
      if (!lx.empty())
        xy.Points(lx, ly, {.color = Rgb{200, 200, 200}, .marker = Marker::kCircle, .marker_size = 9,
                           .label = "mass fraction < 1%"});
      const BinQuantity& lw = sc["LW_ZH"];
      const BinQuantity& mw = sc["MW_ZH"];
      if (lw.found && !lw.v.empty() && std::isfinite(lw.v[0]))
        xy.HLine(lw.v[0], {.color = orange, .width = 2, .dash = {8, 5}, .label = "LW [Z/H]"});
      if (mw.found && !mw.v.empty() && std::isfinite(mw.v[0]))
        xy.HLine(mw.v[0], {.color = red, .width = 2, .dash = {3, 4}, .label = "MW [Z/H]"});
    } else {
      fig.Note(0, 1, "no ZH column or extension").title = "Metallicity history";
    }
    // (c) cumulative mass assembly: fraction of the mass formed before each lookback time.
    {
      auto& xy = fig.XY(1, 0);
      xy.title = "Mass assembly";
      xy.x.log = ages_ok;
      xy.x.label = tlabel;
      xy.y.label = "mass fraction formed";
      xy.y.lo = 0;
      xy.y.hi = 1.05;
      double total = 0;
      for (double v : mfq.v) total += std::max(0.0, v);
      std::vector<double> cum(n + 1, 0.0);
      for (size_t k = n; k-- > 0;) cum[k] = cum[k + 1] + std::max(0.0, mfq.v[k]) / std::max(total, 1e-300);
      xy.Line(edges, cum, {.color = blue, .width = 2, .marker = Marker::kCircle, .marker_size = 7});
      xy.HLine(0.5, {.color = colors::kGrey, .width = 1, .dash = {4, 4}});
      xy.HLine(0.9, {.color = colors::kGrey, .width = 1, .dash = {4, 4}});
      // t50 / t90: lookback times by which 50 % / 90 % of the mass had formed.
      auto t_at = [&](double f) {
        for (size_t k = 0; k < n; ++k) {
          if (cum[k] >= f && cum[k + 1] < f) {
            const double w = (f - cum[k + 1]) / (cum[k] - cum[k + 1]);
            return ages_ok ? std::pow(10.0, std::log10(edges[k + 1]) + w * (std::log10(edges[k]) - std::log10(edges[k + 1])))
                           : edges[k + 1] + w * (edges[k] - edges[k + 1]);
          }
        }
        return kNaN;
      };
      const double t50 = t_at(0.5), t90 = t_at(0.9);
      if (ages_ok && std::isfinite(t50) && std::isfinite(t90))
        xy.Annotate(0.04, 0.06, "t_{50} = " + FormatNumber(t50, 2) + " Gyr,  t_{90} = " + FormatNumber(t90, 2) + " Gyr",
                    HAlign::kLeft, VAlign::kBottom);
      mark_ages(xy);
      xy.legend = LegendPos::kNone;  // the same lines are labelled in the SFH panel
    }
    // (d) where the bin is.
    {
      const char* base = p.Has("LW_LOGAGE") ? "LW_LOGAGE" : (binid ? "BINID" : nullptr);
      if (base && binid) {
        CUBEFLOW_ASSIGN_OR_RETURN(const MapsImage* im, p.Get(base));
        auto& panel = fig.Image(1, 1);
        const bool cat = std::string(base) == "BINID";
        std::vector<double> v = cat ? std::vector<double>(im->values.begin(), im->values.begin() + im->nx * im->ny)
                                    : MaskedPlane(*im, 0, mask);
        if (!cat && o.age_gyr)
          for (double& x : v) x = std::isfinite(x) ? Gyr(x) : x;
        panel.SetData(im->nx, im->ny, std::move(v));
        panel.categorical = cat;
        panel.colormap = Cmap("viridis");
        panel.lo_percentile = 2;
        panel.hi_percentile = 98;
        panel.colorbar_label = cat ? "" : "LW " + age_label;
        panel.title = "Bin " + std::to_string(id) + " on the " + (cat ? "bin map" : "LW age map");
        std::vector<uint8_t> ol(static_cast<size_t>(binid->nx * binid->ny), 0);
        for (size_t s = 0; s < ol.size(); ++s)
          ol[s] = std::isfinite(binid->values[s]) && std::llround(binid->values[s]) == id;
        if (binid->nx == im->nx && binid->ny == im->ny) panel.outline = std::move(ol);
        // On large maps a small outlined bin is hard to find: mark its centroid too.
        if (table && row >= 0 && im->nx * im->ny > 100 * 100 && table->Find("X") && table->Find("Y")) {
          const double bx = table->Find("X")->At(row), by = table->Find("Y")->At(row);
          if (std::isfinite(bx) && std::isfinite(by)) panel.markers.push_back({bx, by});
        }
        SetSky(panel, wcs, frame, o);
      } else {
        fig.Note(1, 1, "no BINID extension").title = "Bin location";
      }
    }
    const std::string path = out_path("_sfh_bin" + std::to_string(id) + ".png");
    CUBEFLOW_RETURN_NOT_OK(fig.Save(path));
    res.written.push_back(path);
    res.sfh_bins.push_back(id);
  }
  return res;
}

}  // namespace cubeflow::plot
