#pragma once
// Per-item checkpoints of a run (cubeflow run --resume): what a checkpointed node emitted for an
// item, stored under a key that names everything the result depends on, so that a rerun after a
// crash or a kill takes the result from the store instead of computing it again.
//
// Key of one item = hash of (node type, plugin name and version, every parameter as bound, the
// content of the files its path parameters name, the content of every input payload of the
// item, including its single inputs). A changed parameter, model file or input spectrum gives
// another key, so a stale entry is never used; it is simply not found.
//
// Store: one append-only file per node, `<dir>/<node>.ckpt`, of records
//   "CFCK" | key (16 bytes) | n outputs (u32) | per output: port, type, payload (length-prefixed)
//   | FNV-1a of the record so far (u64)
// written with one write() per record, so that a process killed at any point leaves whole
// records followed by at most one torn record, which the next open cuts off.
// Payload types: record, spectrum, photometry (the core types a per-item node emits).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::checkpoint {

/// \brief 128-bit content hash (two independent 64-bit lanes), fast on word-aligned data.
class Hasher {
 public:
  Hasher& Bytes(const void* data, size_t n);
  Hasher& Str(const std::string& s) { return U64(s.size()).Bytes(s.data(), s.size()); }
  Hasher& U64(uint64_t v) { return Bytes(&v, sizeof v); }
  Hasher& F64(double v) { return Bytes(&v, sizeof v); }
  std::string Digest() const;  ///< 16 bytes

 private:
  uint64_t a_ = 0xcbf29ce484222325ULL, b_ = 0x9e3779b97f4a7c15ULL;
};

/// Hashes a payload's content (type name included). False if the type cannot be hashed (a
/// plugin's own type): the node is then not checkpointed for that item.
bool HashData(const Data& d, Hasher& h);
/// Hashes a file's content (size and bytes); missing files hash as "missing".
void HashFile(const std::string& path, Hasher& h);

/// True for the payload types the store can hold.
bool Serializable(const Data& d);
void Serialize(const Data& d, std::string& out);
/// Rebuilds a payload of type `type` from Serialize's bytes; an error if they are malformed.
Result<std::shared_ptr<const Data>> Deserialize(const std::string& type, const std::string& bytes);

/// \brief One emitted output of an item.
struct Emission {
  std::string port;
  std::shared_ptr<const Data> data;
};

/// \brief The checkpoint file of one node. Thread-safe.
class Store {
 public:
  /// Opens (creating) `path`. With `resume`, the whole records already there are indexed (a torn
  /// last record is cut off); without, the file is emptied.
  static Result<std::unique_ptr<Store>> Open(const std::string& path, bool resume);
  ~Store();

  /// The emissions stored under `key`, or false if there is no such entry.
  bool Find(const std::string& key, std::vector<Emission>& out);
  /// Appends an entry (every emission must be Serializable).
  Status Append(const std::string& key, const std::vector<Emission>& emissions);
  size_t entries() const;
  const std::string& path() const { return path_; }

 private:
  Store() = default;
  std::string path_;
  int fd_ = -1;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::pair<uint64_t, uint64_t>> index_;  // key -> (offset, length)
};

}  // namespace cubeflow::checkpoint
