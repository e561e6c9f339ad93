#pragma once
// Helpers of the io.write_spectra tests (test_write_spectra.cpp, test_ngist_spectra.cpp): a fake
// ProcessContext that feeds stream items one call at a time, and a small CFITSIO reader.
#include <fitsio.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/node.hpp"
#include "cubeflow/spec.hpp"

namespace spectest {

using namespace cubeflow;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// ProcessContext for a sink: single inputs, the current call's stream items, captured logs.
class SinkContext : public ProcessContext {
 public:
  struct Item {
    int64_t key = -1;
    bool failed = false;
    std::string failure;
    std::shared_ptr<const Data> data;
  };
  std::string stream_port = "spectra";
  std::map<std::string, std::shared_ptr<const Data>> singles;
  std::vector<Item> items;
  std::vector<std::string> logs;
  RunInfo run_info;
  bool is_aborted = false;

  size_t size() const override { return items.empty() ? 1 : items.size(); }
  int64_t key(size_t i) const override { return items.empty() ? -1 : items[i].key; }
  bool failed(size_t i) const override { return !items.empty() && items[i].failed; }
  std::string failure(size_t i) const override { return items.empty() ? "" : items[i].failure; }
  std::shared_ptr<const Data> InputData(const std::string& port, size_t i) const override {
    if (auto it = singles.find(port); it != singles.end()) return it->second;
    if (port == stream_port && !items.empty() && !items[i].failed) return items[i].data;
    return nullptr;
  }
  std::vector<std::shared_ptr<const Data>> InputsOf(const std::string& port, size_t i) const override {
    auto d = InputData(port, i);
    return d ? std::vector<std::shared_ptr<const Data>>{d} : std::vector<std::shared_ptr<const Data>>{};
  }
  bool Connected(const std::string& port) const override { return singles.count(port) || port == stream_port; }
  void Emit(const std::string&, std::shared_ptr<const Data> d, size_t) override { emitted.push_back(std::move(d)); }
  void EmitItem(const std::string&, int64_t, std::shared_ptr<const Data> d) override { emitted.push_back(std::move(d)); }
  void EmitStream(const std::string&, std::shared_ptr<StreamSource>) override {}
  const std::string& node_name() const override { return name_; }
  const std::string& node_type() const override { return type_; }
  const RunInfo& run() const override { return run_info; }
  bool aborted() const override { return is_aborted; }
  int threads() const override { return 1; }
  void Log(LogLevel, const std::string& m) const override { const_cast<SinkContext*>(this)->logs.push_back(m); }

  /// Calls node.Process with one item (a spectrum, or a failure when `data` is null).
  void Send(Node& node, int64_t key, std::shared_ptr<const Data> data, const std::string& failure = "") {
    Item it;
    it.key = key;
    it.data = std::move(data);
    it.failed = it.data == nullptr;
    it.failure = failure;
    items = {it};
    node.Process(*this);
    items.clear();
  }

  std::vector<std::shared_ptr<const Data>> emitted;

 private:
  std::string name_ = "spec", type_ = "io.write_spectra";
};

/// Parameters: defaults of `spec` overridden by `given`.
inline Params MakeParams(const NodeSpec& spec, const std::map<std::string, Value>& given) {
  std::map<std::string, Value> v;
  for (const auto& p : spec.params())
    if (!p.required()) v[p.name()] = p.default_value();
  for (const auto& [k, x] : given) v[k] = x;
  return Params(v);
}

/// Read-only FITS file for checking products.
struct FitsFile {
  fitsfile* f = nullptr;
  int status = 0;
  explicit FitsFile(const std::string& path) {
    if (fits_open_diskfile(&f, path.c_str(), READONLY, &status)) f = nullptr;
  }
  ~FitsFile() {
    int st = 0;
    if (f) fits_close_file(f, &st);
  }
  bool Move(const std::string& ext) {
    int st = 0;
    return fits_movnam_hdu(f, ANY_HDU, const_cast<char*>(ext.c_str()), 0, &st) == 0;
  }
  bool MovePrimary() {
    int st = 0, type = 0;
    return fits_movabs_hdu(f, 1, &type, &st) == 0;
  }
  bool Has(const std::string& key) {
    char v[FLEN_VALUE] = {0};
    int st = 0;
    return fits_read_keyword(f, key.c_str(), v, nullptr, &st) == 0;
  }
  std::string Str(const std::string& key) {
    char* v = nullptr;
    int st = 0;
    if (fits_read_key_longstr(f, key.c_str(), &v, nullptr, &st)) return "<missing>";
    std::string s = v;
    fits_free_memory(v, &st);
    return s;
  }
  double Dbl(const std::string& key) {
    double v = kNaN;
    int st = 0;
    if (fits_read_key(f, TDOUBLE, key.c_str(), &v, nullptr, &st)) return kNaN;
    return v;
  }
  long long Int(const std::string& key) {
    long long v = -999999;
    int st = 0;
    fits_read_key(f, TLONGLONG, key.c_str(), &v, nullptr, &st);
    return v;
  }
  bool Logical(const std::string& key) {
    int v = 0, st = 0;
    fits_read_key(f, TLOGICAL, key.c_str(), &v, nullptr, &st);
    return v != 0;
  }
  int Bitpix() {
    int b = 0, st = 0;
    fits_get_img_type(f, &b, &st);
    return b;
  }
  std::vector<long long> Shape() {
    int naxis = 0, st = 0;
    fits_get_img_dim(f, &naxis, &st);
    std::vector<long long> d(static_cast<size_t>(std::max(naxis, 0)));
    if (naxis > 0) fits_get_img_sizell(f, naxis, d.data(), &st);
    return d;
  }
  std::vector<double> Image() {
    long long n = 1;
    for (long long d : Shape()) n *= d;
    std::vector<double> out(static_cast<size_t>(n));
    int st = 0, anynul = 0;
    double nul = kNaN;
    if (n > 0) fits_read_img(f, TDOUBLE, 1, n, &nul, out.data(), &anynul, &st);
    return out;
  }
  long Rows() {
    long n = 0;
    int st = 0;
    fits_get_num_rows(f, &n, &st);
    return n;
  }
  int Col(const std::string& name) {
    int c = 0, st = 0;
    if (fits_get_colnum(f, CASEINSEN, const_cast<char*>(name.c_str()), &c, &st)) return 0;
    return c;
  }
  std::vector<double> Column(const std::string& name) {
    const long n = Rows();
    std::vector<double> v(static_cast<size_t>(n), kNaN);
    const int c = Col(name);
    int st = 0, anynul = 0;
    double nul = kNaN;
    if (c > 0 && n > 0) fits_read_col(f, TDOUBLE, c, 1, 1, n, &nul, v.data(), &anynul, &st);
    if (c == 0) v.clear();
    return v;
  }
  std::vector<std::string> StrColumn(const std::string& name) {
    const long n = Rows();
    const int c = Col(name);
    if (c == 0) return {};
    int st = 0, anynul = 0;
    int width = 0;
    fits_get_col_display_width(f, c, &width, &st);
    std::vector<std::vector<char>> bufs(static_cast<size_t>(n), std::vector<char>(static_cast<size_t>(width) + 2, 0));
    std::vector<char*> ptrs;
    for (auto& b : bufs) ptrs.push_back(b.data());
    fits_read_col(f, TSTRING, c, 1, 1, n, const_cast<char*>(""), ptrs.data(), &anynul, &st);
    std::vector<std::string> out;
    for (auto& b : bufs) {
      std::string v = b.data();
      while (!v.empty() && v.back() == ' ') v.pop_back();  // CFITSIO gives " " for a blank field
      out.push_back(v);
    }
    return out;
  }
  std::string ColumnUnit(const std::string& name) {
    const int c = Col(name);
    return c == 0 ? "<missing>" : Str("TUNIT" + std::to_string(c));
  }
  /// True if every HDU's CHECKSUM and DATASUM verify.
  bool ChecksumsOk() {
    int nhdu = 0, st = 0;
    fits_get_num_hdus(f, &nhdu, &st);
    for (int i = 1; i <= nhdu; ++i) {
      int type = 0, dok = 0, hok = 0;
      fits_movabs_hdu(f, i, &type, &st);
      fits_verify_chksum(f, &dok, &hok, &st);
      if (st || dok != 1 || hok != 1) return false;
    }
    return true;
  }
};

}  // namespace spectest
