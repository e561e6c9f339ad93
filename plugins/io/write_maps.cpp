// io.write_maps
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>

#include "cubeflow/strings.hpp"
#include "io_nodes.hpp"

namespace cubeflow::io {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// What is known about one record field across all bins.
struct FieldInfo {
  size_t width = 1;
  std::string unit, doc;
  std::vector<std::string> labels;
  bool vector = false;  ///< written as a cube of planes / a vector column
};

}  // namespace

NodeSpec WriteMapsNode::Spec() {
  return NodeSpec("io.write_maps", "Write a MAPS product (MaNGA DAP style multi-extension FITS)")
      .Describe(
          "Collects maps, the binning and per-bin records and writes one FITS file in Finish: "
          "input maps as image extensions; BINID; every scalar record field as a map painted onto "
          "the spaxels of its bin (EXTNAME = upper-case field name), every vector field as a cube "
          "of planes named by the field's labels; `<x>_err` fields become the error companion of "
          "`<x>`; a QUALITY int32 mask (bits in docs/products.md); a BINS table with one row per "
          "bin. Written atomically; if the run aborts, whatever arrived is written with PARTIAL = T, beside an "
          "existing product (<stem>.partial.fits) rather than over it.")
      .MultiInput("maps", Map::kType, PortKind::kSingle, false, "maps written as they are (e.g. FLUX, SNR)")
      .OptionalInput("binning", Binning::kType, PortKind::kSingle,
                     "spatial binning: BINID extension, and where per-bin records are painted")
      .MultiInput("records", Record::kType, PortKind::kStream, false,
                  "per-bin results keyed by bin id; fields of all edges are merged per bin")
      .Param(&Options::path, "path", "output FITS file", Required{}, OutputFile{})
      .Param(&Options::overwrite, "overwrite", "replace an existing file")
      .Check<Options>([](const Options& o, CheckReport& r) {
        if (o.path.empty()) r.Error("path", "is empty; name the output FITS file");
      })
      .Concurrent(Concurrency::kSerial)
      .AcceptsFailures();
}

WriteMapsNode::WriteMapsNode(const Options& o) : path_(o.path.string()), overwrite_(o.overwrite) {}

void WriteMapsNode::CaptureSingles(ProcessContext& ctx) {
  if (ctx.Connected("records")) records_connected_ = true;
  if (!binning_ && ctx.Connected("binning")) binning_ = ctx.OptionalInput<Binning>("binning");
  if (!maps_captured_ && ctx.Connected("maps")) {
    for (const auto& d : ctx.InputsOf("maps")) {
      if (!d) continue;
      if (std::string(d->type()) != Map::kType)
        throw Error("input 'maps' carries '" + std::string(d->type()) + "', expected 'map'; connect map outputs");
      maps_.push_back(std::static_pointer_cast<const Map>(d));
      maps_captured_ = true;
    }
  }
}

void WriteMapsNode::Process(ProcessContext& ctx) {
  CaptureSingles(ctx);
  if (!ctx.Connected("records")) return;
  for (size_t i = 0; i < ctx.size(); ++i) {
    int64_t key = ctx.key(i);
    if (ctx.failed(i)) {
      if (key < 0) continue;
      BinResult& b = bins_[key];
      b.failed = true;
      b.failure = ctx.failure(i);
      continue;
    }
    for (const auto& d : ctx.InputsOf("records", i)) {
      if (!d) continue;
      if (std::string(d->type()) != Record::kType)
        throw Error("input 'records' carries '" + std::string(d->type()) +
                    "', expected 'record'; connect record outputs");
      const auto& r = static_cast<const Record&>(*d);
      const int64_t id = key >= 0 ? key : r.id;
      if (id < 0)
        throw Error("a record on input 'records' has no bin id; the upstream node must key records by bin id");
      BinResult& b = bins_[id];
      b.quality |= r.quality;
      for (const auto& [name, field] : r.fields) {
        // Per bin only the values (thousands of bins: no copies of units, labels and docs).
        auto [num, added] = field_number_.emplace(name, static_cast<uint16_t>(field_names_.size()));
        if (added) {
          if (field_names_.size() >= 65535) throw Error("more than 65535 record fields; records carry too many fields");
          field_names_.push_back(name);
        }
        b.Set(num->second, field.values);
        FieldMeta& fm = field_meta_[name];
        if (!field.unit.empty() && id < fm.unit_id) {
          fm.unit = field.unit;
          fm.unit_id = id;
        }
        if (!field.doc.empty() && id < fm.doc_id) {
          fm.doc = field.doc;
          fm.doc_id = id;
        }
        if (!field.labels.empty()) {
          fm.any_labels = true;
          if (id < fm.labels_id) {
            fm.labels = field.labels;
            fm.labels_id = id;
          }
        }
      }
    }
  }
}

const double* WriteMapsNode::BinResult::Find(uint16_t f, size_t& n) const {
  const auto it = std::lower_bound(field.begin(), field.end(), f);
  if (it == field.end() || *it != f) return nullptr;
  const size_t i = static_cast<size_t>(it - field.begin());
  n = start[i + 1] - start[i];
  return values.data() + start[i];
}

void WriteMapsNode::BinResult::Set(uint16_t f, const std::vector<double>& v) {
  if (start.empty()) start.push_back(0);
  const auto it = std::lower_bound(field.begin(), field.end(), f);
  const size_t i = static_cast<size_t>(it - field.begin());
  if (it != field.end() && *it == f) {  // replace: drop the old values first
    const uint32_t a = start[i], b = start[i + 1], d = b - a;
    values.erase(values.begin() + a, values.begin() + b);
    field.erase(field.begin() + static_cast<std::ptrdiff_t>(i));
    start.erase(start.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    for (size_t j = i + 1; j < start.size(); ++j) start[j] -= d;
    Set(f, v);
    return;
  }
  const uint32_t at = start[i];
  values.insert(values.begin() + at, v.begin(), v.end());
  field.insert(field.begin() + static_cast<std::ptrdiff_t>(i), f);
  start.insert(start.begin() + static_cast<std::ptrdiff_t>(i) + 1, at + static_cast<uint32_t>(v.size()));
  for (size_t j = i + 2; j < start.size(); ++j) start[j] += static_cast<uint32_t>(v.size());
}

fits::MapsProduct WriteMapsNode::Assemble(const RunInfo& run, bool aborted) const {
  fits::MapsProduct p;
  p.run = run;
  p.overwrite = overwrite_;
  p.partial = aborted;
  std::set<std::string> used;
  for (const auto& m : maps_) {
    p.maps.push_back(m);
    used.insert(m->name);
  }
  auto unique_name = [&](const std::string& want) {
    std::string n = want;
    if (used.count(n)) n = "BIN_" + want;
    for (int i = 2; used.count(n); ++i) n = "BIN_" + want + "_" + std::to_string(i);
    used.insert(n);
    return n;
  };

  // Field catalogue over all bins that arrived.
  std::map<std::string, FieldInfo> fields;
  for (const auto& [id, b] : bins_) {
    for (size_t i = 0; i < b.field.size(); ++i) {
      FieldInfo& fi = fields[field_names_[b.field[i]]];
      const size_t n = b.start[i + 1] - b.start[i];
      fi.width = std::max(fi.width, n);
      if (n != 1) fi.vector = true;
    }
  }
  for (auto& [name, fi] : fields) {
    const FieldMeta& fm = field_meta_.at(name);
    fi.unit = fm.unit;
    fi.doc = fm.doc;
    fi.labels = fm.labels;
    if (fm.any_labels) fi.vector = true;
  }

  // Bins: which ids exist, and which are missing.
  std::set<int64_t> ids;
  if (binning_) {
    for (size_t b = 0; b < binning_->bins.size(); ++b) ids.insert(static_cast<int64_t>(b));
    for (int32_t v : binning_->binid)
      if (v >= 0) ids.insert(v);
  }
  for (const auto& [id, b] : bins_) ids.insert(id);
  std::vector<int64_t> missing;
  int64_t nfailed = 0;
  for (int64_t id : ids) {
    auto it = bins_.find(id);
    if (it == bins_.end()) {
      if (records_connected_) missing.push_back(id);
    } else if (it->second.failed) {
      ++nfailed;
    }
  }
  auto bin_quality = [&](int64_t id) -> uint32_t {
    auto it = bins_.find(id);
    if (it == bins_.end()) return records_connected_ ? kQualNoCoverage : 0u;
    uint32_t q = it->second.quality;
    if (it->second.failed) q |= kQualInferenceFailed;
    return q;
  };

  if (binning_) {
    const Binning& bn = *binning_;
    const int64_t nspax = bn.nx * bn.ny;
    if (static_cast<int64_t>(bn.binid.size()) != nspax)
      throw Error("binning has " + std::to_string(bn.binid.size()) + " BINID values for " + std::to_string(bn.nx) +
                  " x " + std::to_string(bn.ny) + " spaxels; the node that made the binning gave an inconsistent one");
    // The maps are made here without their pixels; the writer has them painted one at a time
    // (MapsProduct::fill), so only one full-resolution map is held at once.
    auto painters = std::make_shared<std::map<const Map*, std::function<void(int64_t, double*)>>>();
    auto make_map = [&](const std::string& name, const std::string& kind, int64_t nplanes) {
      auto m = std::make_shared<Map>();
      m->name = name;
      m->kind = kind;
      m->nx = bn.nx;
      m->ny = bn.ny;
      m->nplanes = nplanes;
      m->wcs = bn.wcs;
      return m;
    };
    // fill(plane, data): paints one plane (data holds nspax NaNs).
    auto paint = [&](const std::shared_ptr<Map>& m, std::function<void(int64_t, double*)> fill) {
      (*painters)[m.get()] = std::move(fill);
      p.maps.push_back(m);
    };
    std::shared_ptr<const Binning> binning = binning_;
    // BINID.
    if (!used.count("BINID")) {
      auto m = make_map(unique_name("BINID"), "index", 1);
      m->header["HDUCLAS1"] = "BINID";
      paint(m, [binning, nspax](int64_t, double* d) {
        for (int64_t s = 0; s < nspax; ++s) d[s] = binning->binid[static_cast<size_t>(s)];
      });
    }
    // Dense lookup bin id -> collected result.
    int64_t max_id = -1;
    for (int32_t v : bn.binid) max_id = std::max<int64_t>(max_id, v);
    auto lut = std::make_shared<std::vector<const BinResult*>>(static_cast<size_t>(max_id + 1), nullptr);
    for (const auto& [id, b] : bins_)
      if (id >= 0 && id <= max_id) (*lut)[static_cast<size_t>(id)] = &b;

    // QUALITY.
    const std::string qual_name = unique_name("QUALITY");
    {
      auto m = make_map(qual_name, "mask", 1);
      paint(m, [binning, nspax, bin_quality](int64_t, double* d) {
        for (int64_t s = 0; s < nspax; ++s) {
          const int32_t b = binning->binid[static_cast<size_t>(s)];
          d[s] = b < 0 ? static_cast<double>(kQualNoCoverage) : bin_quality(b);
        }
      });
    }
    // Value maps first (to fix their names), then errors referring to them.
    std::map<std::string, std::string> value_names;
    for (int pass = 0; pass < 2; ++pass) {
      for (const auto& [fname, fi] : fields) {
        const bool is_err = EndsWith(fname, "_err") && fields.count(fname.substr(0, fname.size() - 4));
        if ((pass == 0) == is_err) continue;
        std::shared_ptr<Map> m;
        const int64_t np = fi.vector ? static_cast<int64_t>(fi.width) : 1;
        if (is_err) {
          const std::string& base = value_names.at(fname.substr(0, fname.size() - 4));
          m = make_map(unique_name(base + "_ERR"), "error", np);
          m->companion_of = base;
        } else {
          m = make_map(unique_name(Upper(fname)), "value", np);
          value_names[fname] = m->name;
          m->header["QUALDATA"] = qual_name;
        }
        m->bunit = fi.unit;
        if (fi.vector) {
          for (size_t k = 0; k < fi.width; ++k)
            m->plane_names.push_back(k < fi.labels.size() ? fi.labels[k] : std::to_string(k));
        }
        if (!fi.doc.empty()) m->header["FLDDOC"] = fi.doc;
        m->header["FIELD"] = fname;
        paint(m, [binning, lut, nspax, f = field_number_.at(fname)](int64_t k, double* d) {
          for (int64_t s = 0; s < nspax; ++s) {
            const int32_t b = binning->binid[static_cast<size_t>(s)];
            if (b < 0) continue;
            const BinResult* r = (*lut)[static_cast<size_t>(b)];
            if (!r || r->failed) continue;
            size_t n = 0;
            const double* v = r->Find(f, n);
            if (v && k < static_cast<int64_t>(n)) d[s] = v[k];
          }
        });
      }
    }
    p.fill = [painters, nspax](const Map& m, int64_t plane, std::vector<double>& data) -> Status {
      auto it = painters->find(&m);
      if (it == painters->end()) return Status::Error("map '" + m.name + "' has no data");
      data.assign(static_cast<size_t>(nspax), kNaN);
      it->second(plane, data.data());
      return Status::OK();
    };
  }

  // BINS table.
  if (!ids.empty()) {
    fits::BinaryTable t;
    t.name = used.count("BINS") ? "BIN_TABLE" : "BINS";
    t.nrows = static_cast<int64_t>(ids.size());
    std::vector<int64_t> col_id, col_nspax, col_q;
    std::vector<double> col_x, col_y, col_snr;
    for (int64_t id : ids) {
      col_id.push_back(id);
      const Binning::Bin* bin =
          binning_ && id < static_cast<int64_t>(binning_->bins.size()) ? &binning_->bins[static_cast<size_t>(id)] : nullptr;
      col_x.push_back(bin ? bin->x : kNaN);
      col_y.push_back(bin ? bin->y : kNaN);
      col_nspax.push_back(bin ? bin->nspax : 0);
      col_snr.push_back(bin ? bin->snr : kNaN);
      col_q.push_back(bin_quality(id));
    }
    t.columns.push_back(fits::TableColumn::Int64("BINID", col_id, "", "bin id"));
    t.columns.push_back(fits::TableColumn::Double("X", col_x, "pix", "centroid x (0-based pixel)"));
    t.columns.push_back(fits::TableColumn::Double("Y", col_y, "pix", "centroid y (0-based pixel)"));
    t.columns.push_back(fits::TableColumn::Int64("NSPAX", col_nspax, "", "spaxels in the bin"));
    t.columns.push_back(fits::TableColumn::Double("SNR", col_snr, "", "S/N of the bin"));
    t.columns.push_back(fits::TableColumn::Int64("QUALITY", col_q, "", "quality bits (docs/products.md)"));
    std::set<std::string> colnames = {"BINID", "X", "Y", "NSPAX", "SNR", "QUALITY"};
    for (const auto& [fname, fi] : fields) {
      std::string cname = Upper(fname);
      if (colnames.count(cname)) cname = "REC_" + cname;
      colnames.insert(cname);
      const size_t w = fi.vector ? fi.width : 1;
      std::vector<double> v(ids.size() * w, kNaN);
      size_t row = 0;
      for (int64_t id : ids) {
        auto it = bins_.find(id);
        if (it != bins_.end() && !it->second.failed) {
          size_t n = 0;
          if (const double* f = it->second.Find(field_number_.at(fname), n))
            for (size_t k = 0; k < w && k < n; ++k) v[row * w + k] = f[k];
        }
        ++row;
      }
      if (fi.vector)
        t.columns.push_back(fits::TableColumn::DoubleVector(cname, static_cast<int64_t>(w), std::move(v), fi.unit, fi.doc));
      else
        t.columns.push_back(fits::TableColumn::Double(cname, std::move(v), fi.unit, fi.doc));
    }
    p.tables.push_back(std::move(t));
  }

  p.primary["NBINS"] = std::to_string(ids.size());
  p.primary["NFAILED"] = std::to_string(nfailed);
  p.primary["NMISSING"] = std::to_string(missing.size());
  if (!missing.empty()) {
    p.primary["MISSING"] = MissingIdList(missing);
    p.comments.push_back("MISSING lists bins whose results never arrived (run aborted or not produced).");
  }
  int shown = 0;
  for (const auto& [id, b] : bins_) {
    if (!b.failed) continue;
    if (++shown > 20) {
      p.comments.push_back("... more failed bins (see the QUALITY bit FAILED)");
      break;
    }
    std::string why = b.failure.substr(0, 50);
    p.comments.push_back("bin " + std::to_string(id) + " failed: " + why);
  }
  return p;
}

std::pair<int64_t, int64_t> WriteMapsNode::CountUsable() const {
  auto finite = [](const std::vector<double>& v) {
    return std::any_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
  };
  if (records_connected_ || !bins_.empty()) {
    int64_t items = binning_ ? static_cast<int64_t>(binning_->bins.size()) : 0;
    int64_t usable = 0;
    for (const auto& [id, b] : bins_) {
      items = std::max(items, id + 1);
      if (b.failed) continue;
      bool any = false;
      any = finite(b.values);
      if (any) ++usable;
    }
    return {items, usable};
  }
  // Maps only: the spaxels where some value map is finite.
  int64_t items = 0, usable = 0;
  std::vector<uint8_t> good;
  for (const auto& m : maps_) {
    if (m->kind != "value") continue;
    const size_t plane = static_cast<size_t>(m->nx * m->ny);
    items = std::max<int64_t>(items, static_cast<int64_t>(plane));
    if (good.size() < plane) good.resize(plane, 0);
    for (size_t i = 0; i < m->data.size(); ++i)
      if (std::isfinite(m->data[i])) good[i % plane] = 1;
  }
  for (uint8_t g : good) usable += g;
  return {items, usable};
}

void WriteMapsNode::Finish(ProcessContext& ctx) {
  CaptureSingles(ctx);
  if (ctx.aborted() && maps_.empty() && bins_.empty() && !binning_) {
    ctx.Log(LogLevel::kWarn, "the run failed before anything reached this node: no product written to " + path_);
    return;
  }
  fits::MapsProduct p = Assemble(ctx.run(), ctx.aborted());
  {
    // Create the product's directory (e.g. out/) if needed; the writer itself is atomic.
    std::error_code ec;
    const auto dir = std::filesystem::path(path_).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  }
  // A product from a failed run, or one with nothing usable in it, never replaces an earlier one.
  const auto [items, usable] = CountUsable();
  const bool empty = items > 0 && usable == 0;
  const std::string target = ctx.aborted() || empty ? PartialProductPath(path_) : path_;
  if (target != path_) p.overwrite = true;  // the partial file beside the product is ours to replace
  Status st = fits::WriteMapsFile(target, p);
  if (!st.ok()) {
    if (ctx.aborted()) {
      ctx.Log(LogLevel::kError, st.message());
      return;
    }
    throw Error(st.message());
  }
  ProductReport report{target, items, usable, ctx.aborted(), ""};
  if (target != path_) report.note = "the earlier product " + path_ + " is kept";
  ctx.ReportProduct(report);
  if (ctx.aborted())
    ctx.Log(LogLevel::kWarn, "the run did not complete: wrote what arrived to " + target + " (PARTIAL = T)" +
                                 (target != path_ ? "; the earlier product " + path_ + " is kept" : ""));
  if (!ctx.aborted() && empty)
    ctx.Log(LogLevel::kWarn, "no usable result in " + target + ": every bin failed or is NaN (" +
                                 std::to_string(items) + (records_connected_ || !bins_.empty() ? " bins" : " spaxels") +
                                 ")" + (target != path_ ? "; the earlier product " + path_ + " is kept" : ""));
  ctx.Log(LogLevel::kInfo, "wrote " + target + " (" + std::to_string(p.maps.size()) + " maps, " +
                               std::to_string(bins_.size()) + " bins" + (ctx.aborted() ? ", PARTIAL" : "") + ")");
}

}  // namespace cubeflow::io
