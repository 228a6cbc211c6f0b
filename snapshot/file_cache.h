// FileCache: what an earlier capture learned about each file (inode, size,
// mtime, ctime, chunk refs), so that an unchanged file costs one stat.
//
// The cache is a sequential file whose records are in capture walk order;
// keys are path components joined by NUL bytes, which sorts exactly like the
// walk (children sorted bytewise, depth first). A capture merge-joins the old
// cache while it walks and writes the new one: no random lookups and memory
// independent of the number of files. Format: docs/format/file-cache.md.
//
// A cache is used only with the keyset and chunker settings that wrote it,
// and only after its checksum verified; anything wrong means "no cache".
// Thread-safety: thread-compatible.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/env.h"
#include "core/sodium.h"
#include "snapshot/chunker.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

struct CachedChunk {
  ChunkId id{};
  uint32_t plain_size = 0;
  uint32_t sealed_size = 0;
};

struct CachedFile {
  std::string key;  // path components joined by '\0'
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  std::vector<CachedChunk> chunks;
  std::vector<std::pair<uint64_t, uint64_t>> extents;  // empty: one extent [0, size)
  // user.* xattrs (name, value): setting one changes ctime, so a cache hit
  // (same ctime) may reuse them without opening the file.
  std::vector<std::pair<std::string, std::string>> xattrs;
  // For delta encoding (snapshot/delta.h), empty when not recorded: one
  // entry per chunk, in order (docs/format/file-cache.md; see DeltaEntry).
  Bytes delta;
};

// One chunk's entry in CachedFile::delta.
inline constexpr uint8_t kCachedChunkDelta = 0x01;  // stored as a delta chunk
struct DeltaEntry {
  uint8_t flags = 0;
  // A delta chunk's: the id of the content it rebuilds, and its bases.
  ChunkId content_id{};
  BaseList bases;
  ByteView signature;  // of the content; a view into the block
};
// Appends one entry to a delta block: a whole chunk when `bases` is empty.
void AppendDeltaEntry(Bytes& block, const ChunkId& content_id, const BaseList& bases,
                      ByteView signature);
// Splits a delta block into one entry per chunk of `chunks`; false when it
// does not describe exactly these chunks (sizes, flags, base counts).
bool ParseDeltaBlock(ByteView block, const std::vector<CachedChunk>& chunks,
                     std::vector<DeltaEntry>& out);

struct FileCacheIdentity {
  std::array<uint8_t, 16> keyset_id{};
  ChunkerParams params;
};

class FileCacheReader {
 public:
  // Returns an empty reader (no hits) if the file is absent, damaged or was
  // written for another keyset or chunker; the reason is in `why_unused`.
  static std::unique_ptr<FileCacheReader> Open(Env& env, const std::string& path,
                                               const FileCacheIdentity& identity,
                                               std::string* why_unused);
  // Keys must be asked in increasing order. Returns the record for `key` or null.
  const CachedFile* Find(const std::string& key);

 private:
  FileCacheReader() = default;
  bool Advance();
  std::unique_ptr<RandomAccessFile> file_;
  uint64_t end_ = 0;  // offset of the checksum
  uint64_t pos_ = 0;
  Bytes buf_;
  size_t buf_pos_ = 0;
  uint64_t buf_file_pos_ = 0;
  bool has_current_ = false;
  bool done_ = false;
  CachedFile current_;
  bool Fill(size_t need);
};

class FileCacheWriter {
 public:
  static Result<std::unique_ptr<FileCacheWriter>> Create(Env& env, const std::string& path,
                                                         const FileCacheIdentity& identity);
  ~FileCacheWriter();
  // Records must be added in increasing key order.
  Status Add(const CachedFile& file);
  // Atomically replaces the cache file.
  Status Commit();

 private:
  FileCacheWriter(Env& env, std::string path, std::string tmp, std::unique_ptr<WritableFile> f);
  Status Write(ByteView b);
  static constexpr size_t kWriteBufferSize = 1 << 20;
  Env& env_;
  std::string path_, tmp_;
  std::unique_ptr<WritableFile> file_;
  sodium::Blake2bHasher hasher_;
  Bytes buf_;
  std::string last_key_;
  bool committed_ = false;
};

}  // namespace ferry::snapshot
