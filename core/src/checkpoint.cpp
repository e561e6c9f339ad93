#include "checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace cubeflow::checkpoint {

// ------------------------------------------------------------------------------------------
// Hashing
// ------------------------------------------------------------------------------------------

namespace {
inline uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
}  // namespace

Hasher& Hasher::Bytes(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    a_ = (a_ ^ w) * 0x100000001b3ULL;
    b_ = Mix(b_ + w) ^ (b_ >> 29);
  }
  for (; i < n; ++i) {
    a_ = (a_ ^ p[i]) * 0x100000001b3ULL;
    b_ = Mix(b_ + p[i] + 0x5bd1e995ULL);
  }
  // The length, so that "ab" + "c" and "a" + "bc" differ.
  a_ = (a_ ^ n) * 0x100000001b3ULL;
  b_ = Mix(b_ ^ (n + 0x27d4eb2f165667c5ULL));
  return *this;
}

std::string Hasher::Digest() const {
  std::string d(16, '\0');
  const uint64_t a = Mix(a_ ^ b_), b = Mix(b_ + a_);
  std::memcpy(d.data(), &a, 8);
  std::memcpy(d.data() + 8, &b, 8);
  return d;
}

namespace {

void HashAxis(const WavelengthAxis& w, Hasher& h) {
  h.U64(static_cast<uint64_t>(w.n)).F64(w.crval).F64(w.cdelt).F64(w.crpix).U64(w.log).U64(w.air);
}

template <typename T>
void HashVec(const std::vector<T>& v, Hasher& h) {
  h.U64(v.size()).Bytes(v.data(), v.size() * sizeof(T));
}

}  // namespace

bool HashData(const Data& d, Hasher& h) {
  const std::string type = d.type();
  h.Str(type);
  if (type == Spectrum::kType) {
    const auto& s = static_cast<const Spectrum&>(d);
    h.U64(static_cast<uint64_t>(s.id));
    HashAxis(s.wave, h);
    HashVec(s.flux, h);
    HashVec(s.variance, h);
    HashVec(s.mask, h);
    h.U64(s.rest_frame).F64(s.norm).U64(s.quality);
    for (const auto& [k, v] : s.meta) h.Str(k).F64(v);
    return true;
  }
  if (type == Photometry::kType) {
    const auto& p = static_cast<const Photometry&>(d);
    h.U64(static_cast<uint64_t>(p.id));
    for (const auto& b : p.bands) h.Str(b);
    HashVec(p.pivot, h);
    HashVec(p.flux, h);
    HashVec(p.error, h);
    h.Str(p.unit).U64(p.quality);
    return true;
  }
  if (type == Record::kType) {
    const auto& r = static_cast<const Record&>(d);
    h.U64(static_cast<uint64_t>(r.id)).U64(r.quality);
    for (const auto& [k, f] : r.fields) {
      h.Str(k);
      HashVec(f.values, h);
      h.Str(f.unit);
      for (const auto& l : f.labels) h.Str(l);
    }
    return true;
  }
  if (type == Map::kType) {
    const auto& m = static_cast<const Map&>(d);
    h.Str(m.name).Str(m.bunit).Str(m.kind).U64(static_cast<uint64_t>(m.nx)).U64(static_cast<uint64_t>(m.ny));
    h.U64(static_cast<uint64_t>(m.nplanes));
    HashVec(m.data, h);
    h.Str(m.wcs.cards);
    return true;
  }
  return false;
}

void HashFile(const std::string& path, Hasher& h) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    h.Str("missing:" + path);
    return;
  }
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.Bytes(buf.data(), static_cast<size_t>(in.gcount()));
  }
}

// ------------------------------------------------------------------------------------------
// Serialisation
// ------------------------------------------------------------------------------------------

namespace {

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void U64(uint64_t v) { out_.append(reinterpret_cast<const char*>(&v), 8); }
  void F64(double v) { out_.append(reinterpret_cast<const char*>(&v), 8); }
  void Str(const std::string& s) {
    U64(s.size());
    out_.append(s);
  }
  template <typename T>
  void Vec(const std::vector<T>& v) {
    U64(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void Axis(const WavelengthAxis& w) {
    U64(static_cast<uint64_t>(w.n));
    F64(w.crval);
    F64(w.cdelt);
    F64(w.crpix);
    U64(w.log);
    U64(w.air);
  }

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  explicit Reader(std::string&&) = delete;  // holds a reference: a temporary would dangle
  bool ok() const { return ok_; }
  uint64_t U64() {
    uint64_t v = 0;
    Take(&v, 8);
    return v;
  }
  double F64() {
    double v = 0;
    Take(&v, 8);
    return v;
  }
  std::string Str() {
    const uint64_t n = U64();
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return "";
    }
    std::string s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <typename T>
  std::vector<T> Vec() {
    const uint64_t n = U64();
    if (!ok_ || n > (in_.size() - pos_) / sizeof(T)) {
      ok_ = false;
      return {};
    }
    std::vector<T> v(n);
    Take(v.data(), n * sizeof(T));
    return v;
  }
  WavelengthAxis Axis() {
    WavelengthAxis w;
    w.n = static_cast<int64_t>(U64());
    w.crval = F64();
    w.cdelt = F64();
    w.crpix = F64();
    w.log = U64() != 0;
    w.air = U64() != 0;
    return w;
  }
  bool AtEnd() const { return pos_ == in_.size(); }

 private:
  void Take(void* dst, size_t n) {
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return;
    }
    std::memcpy(dst, in_.data() + pos_, n);
    pos_ += n;
  }
  const std::string& in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

bool Serializable(const Data& d) {
  const std::string t = d.type();
  return t == Record::kType || t == Spectrum::kType || t == Photometry::kType;
}

void Serialize(const Data& d, std::string& out) {
  Writer w(out);
  const std::string type = d.type();
  if (type == Spectrum::kType) {
    const auto& s = static_cast<const Spectrum&>(d);
    w.U64(static_cast<uint64_t>(s.id));
    w.Axis(s.wave);
    w.Vec(s.flux);
    w.Vec(s.variance);
    w.Vec(s.mask);
    w.U64(s.rest_frame);
    w.F64(s.norm);
    w.U64(s.quality);
    w.U64(s.meta.size());
    for (const auto& [k, v] : s.meta) {
      w.Str(k);
      w.F64(v);
    }
  } else if (type == Photometry::kType) {
    const auto& p = static_cast<const Photometry&>(d);
    w.U64(static_cast<uint64_t>(p.id));
    w.U64(p.bands.size());
    for (const auto& b : p.bands) w.Str(b);
    w.Vec(p.pivot);
    w.Vec(p.flux);
    w.Vec(p.error);
    w.Str(p.unit);
    w.U64(p.quality);
  } else if (type == Record::kType) {
    const auto& r = static_cast<const Record&>(d);
    w.U64(static_cast<uint64_t>(r.id));
    w.U64(r.quality);
    w.U64(r.fields.size());
    for (const auto& [k, f] : r.fields) {
      w.Str(k);
      w.Vec(f.values);
      w.Str(f.unit);
      w.U64(f.labels.size());
      for (const auto& l : f.labels) w.Str(l);
      w.Str(f.doc);
    }
  }
}

Result<std::shared_ptr<const Data>> Deserialize(const std::string& type, const std::string& bytes) {
  Reader r(bytes);
  std::shared_ptr<const Data> out;
  if (type == Spectrum::kType) {
    auto s = std::make_shared<Spectrum>();
    s->id = static_cast<int64_t>(r.U64());
    s->wave = r.Axis();
    s->flux = r.Vec<double>();
    s->variance = r.Vec<double>();
    s->mask = r.Vec<uint8_t>();
    s->rest_frame = r.U64() != 0;
    s->norm = r.F64();
    s->quality = static_cast<uint32_t>(r.U64());
    const uint64_t n = r.U64();
    for (uint64_t i = 0; r.ok() && i < n; ++i) {
      std::string k = r.Str();
      s->meta[k] = r.F64();
    }
    out = s;
  } else if (type == Photometry::kType) {
    auto p = std::make_shared<Photometry>();
    p->id = static_cast<int64_t>(r.U64());
    const uint64_t n = r.U64();
    for (uint64_t i = 0; r.ok() && i < n; ++i) p->bands.push_back(r.Str());
    p->pivot = r.Vec<double>();
    p->flux = r.Vec<double>();
    p->error = r.Vec<double>();
    p->unit = r.Str();
    p->quality = static_cast<uint32_t>(r.U64());
    out = p;
  } else if (type == Record::kType) {
    auto rec = std::make_shared<Record>();
    rec->id = static_cast<int64_t>(r.U64());
    rec->quality = static_cast<uint32_t>(r.U64());
    const uint64_t n = r.U64();
    for (uint64_t i = 0; r.ok() && i < n; ++i) {
      std::string k = r.Str();
      Record::Field f;
      f.values = r.Vec<double>();
      f.unit = r.Str();
      const uint64_t nl = r.U64();
      for (uint64_t j = 0; r.ok() && j < nl; ++j) f.labels.push_back(r.Str());
      f.doc = r.Str();
      rec->fields[k] = std::move(f);
    }
    out = rec;
  } else {
    return Status::Error("checkpoint holds a payload of type '" + type + "', which cannot be restored");
  }
  if (!r.ok() || !r.AtEnd()) return Status::Error("checkpoint payload of type '" + type + "' is malformed");
  return out;
}

// ------------------------------------------------------------------------------------------
// Store
// ------------------------------------------------------------------------------------------

namespace {

constexpr char kMagic[4] = {'C', 'F', 'C', 'K'};

uint64_t Fnv(const char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ULL;
  return h;
}

/// Parses one record at `pos`; returns its length, or 0 if the bytes there are not a whole,
/// intact record.
size_t RecordAt(const std::string& buf, size_t pos, std::string* key) {
  if (buf.size() - pos < 4 + 16 + 8 + 8) return 0;
  if (std::memcmp(buf.data() + pos, kMagic, 4) != 0) return 0;
  const std::string after_key = buf.substr(pos + 20, 8);  // after magic and key
  Reader r(after_key);
  const uint64_t n = r.U64();
  if (!r.ok() || n > 1024) return 0;
  size_t len = 4 + 16 + 8;
  for (uint64_t i = 0; i < n; ++i) {
    for (int part = 0; part < 3; ++part) {
      if (buf.size() - pos < len + 8) return 0;
      uint64_t l;
      std::memcpy(&l, buf.data() + pos + len, 8);
      if (l > buf.size() - pos - len - 8) return 0;
      len += 8 + l;
    }
  }
  if (buf.size() - pos < len + 8) return 0;
  uint64_t sum;
  std::memcpy(&sum, buf.data() + pos + len, 8);
  if (sum != Fnv(buf.data() + pos, len)) return 0;
  *key = buf.substr(pos + 4, 16);
  return len + 8;
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path, bool resume) {
  std::unique_ptr<Store> s(new Store());
  s->path_ = path;
  s->fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | (resume ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
  if (s->fd_ < 0)
    return Status::Error("cannot open checkpoint file " + path + ": " + std::strerror(errno) +
                         "; check the checkpoint directory (--checkpoint-dir) is writable");
  if (resume) {
    std::string buf;
    std::ifstream in(path, std::ios::binary);
    buf.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    size_t pos = 0;
    std::string key;
    while (pos < buf.size()) {
      const size_t len = RecordAt(buf, pos, &key);
      if (len == 0) break;
      s->index_[key] = {pos, len};
      pos += len;
    }
    if (pos < buf.size() && ::ftruncate(s->fd_, static_cast<off_t>(pos)) != 0)
      return Status::Error("cannot cut the torn end off checkpoint file " + path + ": " + std::strerror(errno));
  }
  if (::lseek(s->fd_, 0, SEEK_END) < 0) return Status::Error("cannot seek in checkpoint file " + path);
  return s;
}

Store::~Store() {
  if (fd_ >= 0) ::close(fd_);
}

size_t Store::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.size();
}

bool Store::Find(const std::string& key, std::vector<Emission>& out) {
  std::pair<uint64_t, uint64_t> where;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    where = it->second;
  }
  std::string buf(where.second, '\0');
  if (::pread(fd_, buf.data(), buf.size(), static_cast<off_t>(where.first)) != static_cast<ssize_t>(buf.size()))
    return false;
  const std::string rest = buf.substr(20);  // after magic and key
  Reader rr(rest);
  const uint64_t n = rr.U64();
  out.clear();
  for (uint64_t i = 0; i < n; ++i) {
    std::string port = rr.Str(), type = rr.Str(), payload = rr.Str();
    if (!rr.ok()) return false;
    auto d = Deserialize(type, payload);
    if (!d.ok()) return false;
    out.push_back({port, *d});
  }
  return rr.ok();
}

Status Store::Append(const std::string& key, const std::vector<Emission>& emissions) {
  std::string rec(kMagic, 4);
  rec += key;
  Writer w(rec);
  w.U64(emissions.size());
  std::string payload;
  for (const auto& e : emissions) {
    payload.clear();
    Serialize(*e.data, payload);
    w.Str(e.port);
    w.Str(e.data->type());
    w.Str(payload);
  }
  const uint64_t sum = Fnv(rec.data(), rec.size());
  rec.append(reinterpret_cast<const char*>(&sum), 8);
  std::lock_guard<std::mutex> lock(mu_);
  const off_t pos = ::lseek(fd_, 0, SEEK_END);
  size_t done = 0;
  while (done < rec.size()) {
    const ssize_t w2 = ::write(fd_, rec.data() + done, rec.size() - done);
    if (w2 < 0) {
      if (errno == EINTR) continue;
      return Status::Error("cannot write checkpoint file " + path_ + ": " + std::strerror(errno));
    }
    done += static_cast<size_t>(w2);
  }
  index_[key] = {static_cast<uint64_t>(pos), rec.size()};
  return Status::OK();
}

}  // namespace cubeflow::checkpoint
