// MAPS product writer (MaNGA DAP style) and file hashing.
#include "cubeflow/fits/maps.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "cubeflow/fits/atomic_fits_file.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/version.hpp"
#include "fits_util.hpp"

namespace cubeflow::fits {

using internal::WriteTypedKey;

namespace {

TableColumn NamedColumn(std::string name, TableColumn::Kind kind, std::string unit, std::string doc) {
  TableColumn c;
  c.name = std::move(name);
  c.unit = std::move(unit);
  c.doc = std::move(doc);
  c.kind = kind;
  return c;
}

}  // namespace

TableColumn TableColumn::Double(std::string name, std::vector<double> v, std::string unit, std::string doc) {
  TableColumn c = NamedColumn(std::move(name), Kind::kDouble, std::move(unit), std::move(doc));
  c.doubles = std::move(v);
  return c;
}

TableColumn TableColumn::Int64(std::string name, std::vector<int64_t> v, std::string unit, std::string doc) {
  TableColumn c = NamedColumn(std::move(name), Kind::kInt64, std::move(unit), std::move(doc));
  c.ints = std::move(v);
  return c;
}

TableColumn TableColumn::DoubleVector(std::string name, int64_t width, std::vector<double> v, std::string unit,
                                      std::string doc) {
  TableColumn c = NamedColumn(std::move(name), Kind::kDoubleVector, std::move(unit), std::move(doc));
  c.width = width;
  c.doubles = std::move(v);
  return c;
}

std::string FormatHex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

namespace {

inline uint64_t Mix64(uint64_t z) {  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

}  // namespace

Result<uint64_t> FileHash64(const std::string& path) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) return Status::Error("cannot hash '" + path + "': " + std::strerror(errno));
  std::vector<unsigned char> buf(1 << 20);
  uint64_t h = 0x9e3779b97f4a7c15ULL, total = 0;
  unsigned char carry[8];
  size_t ncarry = 0;
  for (;;) {
    const size_t got = std::fread(buf.data(), 1, buf.size(), fp);
    if (got == 0) break;
    total += got;
    size_t i = 0;
    while (ncarry > 0 && ncarry < 8 && i < got) carry[ncarry++] = buf[i++];
    if (ncarry == 8) {
      uint64_t w = 0;
      for (int b = 7; b >= 0; --b) w = (w << 8) | carry[b];
      h = Rotl(h ^ Mix64(w), 27) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
      ncarry = 0;
    }
    for (; i + 8 <= got; i += 8) {
      uint64_t w = 0;
      for (int b = 7; b >= 0; --b) w = (w << 8) | buf[i + b];
      h = Rotl(h ^ Mix64(w), 27) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    }
    for (; i < got; ++i) carry[ncarry++] = buf[i];
  }
  const bool err = std::ferror(fp) != 0;
  std::fclose(fp);
  if (err) return Status::Error("cannot hash '" + path + "': read error");
  uint64_t tail = 0;
  for (size_t b = ncarry; b-- > 0;) tail = (tail << 8) | carry[b];
  h = Rotl(h ^ Mix64(tail ^ (static_cast<uint64_t>(ncarry) << 56)), 27) * 0x9e3779b97f4a7c15ULL;
  return Mix64(h ^ total);
}

namespace {

struct QualityBitDoc {
  const char* name;
  const char* doc;
};
constexpr QualityBitDoc kBitDocs[] = {
    {"NOCOV", "no valid data / spaxel not in any bin"},
    {"LOWSNR", "below the minimum S/N"},
    {"BROADTGT", "intrinsic dispersion above target dispersion"},
    {"NONPOSPHOT", "non-positive photometry"},
    {"OUTTRAIN", "input outside the model training range"},
    {"FAILED", "a node failed on this bin"},
};

void WriteCelestialCards(fitsfile* f, const CelestialWcs& wcs, int* status) {
  for (const std::string& c : SplitCards(wcs.cards)) {
    std::string key = c.substr(0, 8);
    while (!key.empty() && key.back() == ' ') key.pop_back();
    if (key.empty() || key == "NAXIS" || key == "NAXIS1" || key == "NAXIS2" || key == "NAXIS3" ||
        key == "WCSAXES" || key == "SIMPLE" || key == "BITPIX" || key == "EXTEND" || key == "END" ||
        key == "EXTNAME" || key == "BUNIT")
      continue;
    fits_write_record(f, c.c_str(), status);
  }
}

bool IsIntegerKind(const std::string& kind) { return kind == "mask" || kind == "index"; }

std::string TwoDigits(size_t i) {
  char b[8];
  std::snprintf(b, sizeof b, "%02zu", i);
  return b;
}

Status Validate(const MapsProduct& p, const std::string& path) {
  std::set<std::string> names;
  for (const auto& m : p.maps) {
    if (!m) return Status::Error("cannot write '" + path + "': a map is null");
    const std::string where = "cannot write '" + path + "': map '" + m->name + "'";
    if (m->name.empty()) return Status::Error("cannot write '" + path + "': a map has no name (EXTNAME)");
    if (!names.insert(m->name).second)
      return Status::Error(where + " appears twice; extension names must be unique");
    const bool filled_later = p.fill && m->data.empty();
    if (m->nx <= 0 || m->ny <= 0 || m->nplanes <= 0 ||
        (!filled_later && m->data.size() != static_cast<size_t>(m->nx * m->ny * m->nplanes)))
      return Status::Error(where + " has " + std::to_string(m->data.size()) + " values for " +
                           std::to_string(m->nx) + " x " + std::to_string(m->ny) + " x " +
                           std::to_string(m->nplanes));
  }
  for (const auto& t : p.tables) {
    if (t.name.empty()) return Status::Error("cannot write '" + path + "': a table has no name");
    if (!names.insert(t.name).second)
      return Status::Error("cannot write '" + path + "': extension '" + t.name + "' appears twice");
    if (t.columns.empty()) return Status::Error("cannot write '" + path + "': table '" + t.name + "' has no columns");
    for (const auto& c : t.columns) {
      size_t want = static_cast<size_t>(t.nrows);
      size_t have = c.kind == TableColumn::Kind::kInt64 ? c.ints.size() : c.doubles.size();
      if (c.kind == TableColumn::Kind::kDoubleVector) want *= static_cast<size_t>(std::max<int64_t>(c.width, 1));
      if (have != want || (c.kind == TableColumn::Kind::kDoubleVector && c.width < 1))
        return Status::Error("cannot write '" + path + "': column '" + c.name + "' of table '" + t.name + "' has " +
                             std::to_string(have) + " values, expected " + std::to_string(want));
    }
  }
  return Status::OK();
}

void WriteProvenance(fitsfile* f, const MapsProduct& p, int* status) {
  fits_write_key_longwarn(f, status);
  fits_update_key(f, TSTRING, "CFVERS", const_cast<char*>(kVersion), "cubeflow version", status);
  fits_write_date(f, status);
  const RunInfo& r = p.run;
  if (!r.cubeflow_version.empty() && r.cubeflow_version != kVersion)
    WriteTypedKey(f, "CFRUNVER", r.cubeflow_version, "cubeflow version of the run", status);
  if (!r.pipeline_file.empty()) fits_write_key_longstr(f, "PIPEFILE", r.pipeline_file.c_str(), "pipeline file", status);
  if (!r.started_utc.empty())
    fits_update_key(f, TSTRING, "RUNUTC", const_cast<char*>(r.started_utc.c_str()), "run start (UTC)", status);
  const bool partial = p.partial;
  int partial_i = partial ? 1 : 0;
  fits_update_key(f, TLOGICAL, "PARTIAL", &partial_i, "T: the run was aborted, some results are missing", status);
  long long nnodes = static_cast<long long>(r.nodes.size());
  fits_update_key(f, TLONGLONG, "CFNNODES", &nnodes, "number of pipeline nodes", status);
  for (size_t i = 0; i < r.nodes.size() && i < 99; ++i) {
    const auto& n = r.nodes[i];
    const std::string pre = "CFN" + TwoDigits(i + 1);
    fits_write_key_longstr(f, (pre + "NAM").c_str(), n.name.c_str(), "node name", status);
    fits_write_key_longstr(f, (pre + "TYP").c_str(), n.type.c_str(), "node type", status);
    fits_write_key_longstr(f, (pre + "LIB").c_str(), n.plugin.c_str(), "plugin", status);
    fits_write_key_longstr(f, (pre + "VER").c_str(), n.plugin_version.c_str(), "plugin version", status);
    size_t j = 0;
    for (const auto& [k, v] : n.params) {
      if (++j > 99) break;
      const std::string text = k + "=" + v;
      fits_write_key_longstr(f, (pre + "P" + TwoDigits(j)).c_str(), text.c_str(), "parameter", status);
    }
  }
  if (r.nodes.size() > 99) fits_write_comment(f, "more than 99 nodes: provenance truncated", status);
  fits_update_key(f, TSTRING, "HASHALG", const_cast<char*>("CFHASH64"),
                  "64-bit file hash of INHASHnn, see docs/products.md", status);
  for (size_t i = 0; i < r.input_files.size() && i < 99; ++i) {
    const std::string key = TwoDigits(i + 1);
    fits_write_key_longstr(f, ("INFILE" + key).c_str(), r.input_files[i].c_str(), "input file", status);
    auto h = FileHash64(r.input_files[i]);
    const std::string hv = h.ok() ? FormatHex64(*h) : std::string("unreadable");
    fits_update_key(f, TSTRING, ("INHASH" + key).c_str(), const_cast<char*>(hv.c_str()), "CFHASH64 of the file",
                    status);
  }
  for (const auto& [k, v] : p.primary) WriteTypedKey(f, k, v, "", status);
  for (const auto& c : p.comments) fits_write_comment(f, c.c_str(), status);
}

void WriteMapHeader(fitsfile* f, const MapsProduct& p, const Map& m, int* status) {
  const bool integer = IsIntegerKind(m.kind);
  const bool cube = m.nplanes > 1;
  long long naxes[3] = {m.nx, m.ny, m.nplanes};
  fits_create_imgll(f, integer ? LONG_IMG : DOUBLE_IMG, cube ? 3 : 2, naxes, status);
  fits_update_key(f, TSTRING, "EXTNAME", const_cast<char*>(m.name.c_str()), "extension name", status);
  if (!m.bunit.empty()) fits_write_key_longstr(f, "BUNIT", m.bunit.c_str(), "unit of the values", status);
  fits_update_key(f, TSTRING, "HDUCLAS2", const_cast<char*>(m.kind == "value" ? "DATA" : m.kind == "mask" ? "QUALITY"
                                                                : m.kind == "index" ? "INDEX" : "ERROR"),
                  "value, error, quality or index map", status);
  if (m.kind == "ivar") fits_update_key(f, TSTRING, "ERRTYPE", const_cast<char*>("INVVAR"), nullptr, status);
  WriteCelestialCards(f, m.wcs, status);
  if (cube) {
    const bool cd = m.wcs.cards.find("CD1_1") != std::string::npos;
    double one = 1.0;
    fits_update_key(f, TDOUBLE, "CRPIX3", &one, "plane axis: see C1..Cn", status);
    fits_update_key(f, TDOUBLE, "CRVAL3", &one, nullptr, status);
    fits_update_key(f, TDOUBLE, cd ? "CD3_3" : "CDELT3", &one, nullptr, status);
    for (int64_t i = 0; i < m.nplanes; ++i) {
      const std::string key = "C" + std::to_string(i + 1);
      const std::string v =
          i < static_cast<int64_t>(m.plane_names.size()) ? m.plane_names[static_cast<size_t>(i)] : std::to_string(i);
      fits_write_key_longstr(f, key.c_str(), v.c_str(), "plane name", status);
    }
  }
  if (m.kind == "value") {
    for (const auto& o : p.maps) {
      if (o->companion_of != m.name || o.get() == &m) continue;
      if (o->kind == "error" || o->kind == "ivar")
        fits_update_key(f, TSTRING, "ERRDATA", const_cast<char*>(o->name.c_str()), "error extension", status);
      else if (o->kind == "mask")
        fits_update_key(f, TSTRING, "QUALDATA", const_cast<char*>(o->name.c_str()), "quality extension", status);
    }
  } else if (!m.companion_of.empty()) {
    fits_update_key(f, TSTRING, "DATA", const_cast<char*>(m.companion_of.c_str()), "value extension", status);
  }
  if (m.kind == "mask") {
    for (size_t b = 0; b < sizeof(kBitDocs) / sizeof(kBitDocs[0]); ++b) {
      const std::string key = "QBIT" + std::to_string(b);
      fits_update_key(f, TSTRING, key.c_str(), const_cast<char*>(kBitDocs[b].name), kBitDocs[b].doc, status);
    }
  }
  for (const auto& [k, v] : m.header) WriteTypedKey(f, k, v, "", status);
}

/// Writes `n` values of map `m` from `data`, starting at plane `plane` (int32 for masks and
/// indices, NaN as 0; doubles otherwise).
void WritePixels(fitsfile* f, const Map& m, const double* data, size_t n, int64_t plane, int* status) {
  long long fpix[3] = {1, 1, plane + 1};
  if (IsIntegerKind(m.kind)) {
    std::vector<int32_t> buf(n);
    for (size_t i = 0; i < n; ++i) {
      const double v = data[i];
      buf[i] = std::isfinite(v) ? static_cast<int32_t>(std::llround(v)) : 0;
    }
    fits_write_pixll(f, TINT, fpix, static_cast<long long>(n), buf.data(), status);
  } else {
    fits_write_pixll(f, TDOUBLE, fpix, static_cast<long long>(n), const_cast<double*>(data), status);
  }
}

void WriteTable(fitsfile* f, const BinaryTable& t, int* status) {
  std::vector<std::string> tt, tf, tu;
  for (const auto& c : t.columns) {
    tt.push_back(c.name);
    tu.push_back(c.unit);
    switch (c.kind) {
      case TableColumn::Kind::kDouble: tf.push_back("1D"); break;
      case TableColumn::Kind::kInt64: tf.push_back("1K"); break;
      case TableColumn::Kind::kDoubleVector: tf.push_back(std::to_string(c.width) + "D"); break;
    }
  }
  std::vector<char*> ptt, ptf, ptu;
  for (size_t i = 0; i < tt.size(); ++i) {
    ptt.push_back(tt[i].data());
    ptf.push_back(tf[i].data());
    ptu.push_back(tu[i].data());
  }
  fits_create_tbl(f, BINARY_TBL, t.nrows, static_cast<int>(tt.size()), ptt.data(), ptf.data(), ptu.data(),
                  t.name.c_str(), status);
  for (size_t i = 0; i < t.columns.size(); ++i) {
    const auto& c = t.columns[i];
    if (!c.doc.empty()) {
      const std::string key = "TTYPE" + std::to_string(i + 1);
      fits_modify_comment(f, key.c_str(), c.doc.c_str(), status);
    }
    if (t.nrows == 0) continue;
    const int col = static_cast<int>(i + 1);
    if (c.kind == TableColumn::Kind::kInt64) {
      fits_write_col(f, TLONGLONG, col, 1, 1, static_cast<long long>(c.ints.size()),
                     const_cast<int64_t*>(c.ints.data()), status);
    } else {
      fits_write_col(f, TDOUBLE, col, 1, 1, static_cast<long long>(c.doubles.size()),
                     const_cast<double*>(c.doubles.data()), status);
    }
  }
  for (const auto& [k, v] : t.header) WriteTypedKey(f, k, v, "", status);
}

}  // namespace

Status WriteMapsPrimary(AtomicFitsFile& out, const MapsProduct& product) {
  int status = 0;
  out.set_hdu("PRIMARY");
  fits_create_imgll(out.get(), BYTE_IMG, 0, nullptr, &status);
  WriteProvenance(out.get(), product, &status);
  return out.Check(status);
}

Status WriteMapsFile(const std::string& path, const MapsProduct& product) {
  CUBEFLOW_RETURN_NOT_OK(Validate(product, path));
  struct stat st;
  if (!product.overwrite && ::stat(path.c_str(), &st) == 0) {
    return Status::Error("cannot write '" + path + "': the file exists and overwrite is false; remove it or set "
                         "overwrite: true");
  }
  CUBEFLOW_ASSIGN_OR_RETURN(AtomicFitsFile out, AtomicFitsFile::Create(path));
  CUBEFLOW_RETURN_NOT_OK(WriteMapsPrimary(out, product));
  int status = 0;
  for (const auto& m : product.maps) {
    out.set_hdu(m->name);
    WriteMapHeader(out.get(), product, *m, &status);
    CUBEFLOW_RETURN_NOT_OK(out.Check(status));
    if (product.fill && m->data.empty()) {
      // Painted and written a plane at a time: one plane in memory, however large the map.
      const size_t plane = static_cast<size_t>(m->nx * m->ny);
      std::vector<double> data;
      for (int64_t k = 0; k < m->nplanes; ++k) {
        data.clear();
        CUBEFLOW_RETURN_NOT_OK(product.fill(*m, k, data));
        if (data.size() != plane)
          return Status::Error("cannot write '" + path + "': plane " + std::to_string(k) + " of map '" + m->name +
                               "' was filled with " + std::to_string(data.size()) + " values for " +
                               std::to_string(m->nx) + " x " + std::to_string(m->ny));
        WritePixels(out.get(), *m, data.data(), plane, k, &status);
        CUBEFLOW_RETURN_NOT_OK(out.Check(status));
      }
    } else {
      WritePixels(out.get(), *m, m->data.data(), m->data.size(), 0, &status);
      CUBEFLOW_RETURN_NOT_OK(out.Check(status));
    }
  }
  for (const auto& t : product.tables) {
    out.set_hdu(t.name);
    WriteTable(out.get(), t, &status);
    CUBEFLOW_RETURN_NOT_OK(out.Check(status));
  }
  return out.Commit();
}

}  // namespace cubeflow::fits
