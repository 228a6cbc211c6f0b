// The reference set of a snapshot: every chunk id it references (file data
// and trees), with sealed sizes, sorted and unique. Stored in plaintext beside
// the manifest so that a store or hub can check completeness and collect
// garbage without keys. Format: docs/format/refs.md.
//
// RefSetBuilder collects ids in any order with bounded memory (sorted runs
// spilled to temporary files, merged at the end). RefSetReader streams a refs
// object and checks its checksum when it reaches the end.
//
// Thread-safety: thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/env.h"
#include "core/sodium.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

struct RefEntry {
  ChunkId id{};
  uint32_t sealed_size = 0;
  friend bool operator<(const RefEntry& a, const RefEntry& b) { return a.id < b.id; }
};

struct RefSetSummaryInfo {
  uint64_t count = 0;
  uint64_t sealed_bytes = 0;
  sodium::Hash256 digest{};  // BLAKE2b-256 of the object = its trailing checksum
};

class RefSetBuilder {
 public:
  // tmp_dir: where sorted runs are spilled; memory_budget: bytes of entries kept in memory.
  RefSetBuilder(Env& env, std::string tmp_dir, size_t memory_budget = 256 << 10);
  ~RefSetBuilder();
  RefSetBuilder(const RefSetBuilder&) = delete;
  RefSetBuilder& operator=(const RefSetBuilder&) = delete;

  Status Add(const ChunkId& id, uint32_t sealed_size);
  // Writes the refs object to `path` (atomically) and returns its summary.
  Result<RefSetSummaryInfo> Finish(const std::string& path);

 private:
  Status SpillRun();
  Env& env_;
  std::string tmp_dir_;
  size_t max_entries_;
  std::vector<RefEntry> pending_;
  std::vector<std::string> runs_;
};

// Streams a refs object. Next() returns false at the end; status() then says
// whether the whole object was well-formed and its checksum matched.
class RefSetReader {
 public:
  static Result<std::unique_ptr<RefSetReader>> Open(Env& env, const std::string& path);
  // Parses from memory (refs received over a link).
  static Result<std::unique_ptr<RefSetReader>> FromBytes(Bytes bytes, std::string origin);

  uint64_t count() const { return count_; }
  // False at the end or on error; check status().
  bool Next(RefEntry& out);
  const Status& status() const { return status_; }
  // Valid after Next() returned false with an OK status.
  const sodium::Hash256& digest() const { return digest_; }

  // Reads the whole object and returns its summary, checking order and checksum.
  static Result<RefSetSummaryInfo> Summarize(Env& env, const std::string& path);

 private:
  RefSetReader() = default;
  Status Init();
  bool Fill(size_t need);
  std::string origin_;
  std::unique_ptr<RandomAccessFile> file_;
  Bytes memory_;  // FromBytes
  uint64_t file_size_ = 0;
  uint64_t file_pos_ = 0;
  Bytes buf_;
  size_t buf_pos_ = 0;
  uint64_t count_ = 0;
  uint64_t read_ = 0;
  bool has_last_ = false;
  ChunkId last_{};
  sodium::Blake2bHasher hasher_;
  sodium::Hash256 digest_{};
  Status status_;
};

}  // namespace ferry::snapshot
