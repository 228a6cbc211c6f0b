// Pack files: append-only files of sealed chunks with a trailing index.
// The index holds each entry's SHA-256 and a footer checksum covers the
// header and the index, so a pack (or one chunk of it) is checked without
// keys. Format: docs/format/pack.md.
//
// A PackWriter writes to a temporary path; Finish() appends the index and
// footer and fsyncs. The caller then renames the file to its final name and
// fsyncs the directory before anything refers to it.
//
// Errors: kDataLoss for damaged packs (bad magic, bounds, checksum), with the
// path and the offending offset in the message; I/O errors from Env.
// Thread-safety: thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/env.h"
#include "core/evp.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

struct PackEntry {
  ChunkId id{};
  uint64_t offset = 0;      // of the sealed chunk bytes within the pack
  uint32_t length = 0;      // sealed length
  evp::Digest256 digest{};  // SHA-256 of the sealed bytes
};

struct PackKey {
  KeyId id{};
  Bytes wrapped;  // kWrappedDataKeySize bytes
};

struct PackContents {
  std::vector<PackEntry> entries;
  std::vector<PackKey> keys;
  evp::Digest256 checksum{};  // footer checksum; the pack's name is its hex
  uint64_t size = 0;
};

class PackWriter {
 public:
  static Result<std::unique_ptr<PackWriter>> Create(Env& env, const std::string& path);
  ~PackWriter();

  // Appends one sealed chunk whose SHA-256 is `digest` (computed by the caller,
  // typically on a worker thread); the key is recorded in the index the first
  // time it is used.
  Status Add(const ChunkId& id, ByteView sealed, const evp::Digest256& digest, const KeyId& key_id,
             ByteView wrapped_key);

  uint64_t size() const { return size_; }
  size_t entry_count() const { return contents_.entries.size(); }
  const std::vector<PackEntry>& entries() const { return contents_.entries; }
  const std::string& path() const { return path_; }

  // Writes the index and footer, fsyncs and closes. The writer is spent afterwards.
  Result<PackContents> Finish();
  // Removes the temporary file (best effort) — for abandoned packs.
  void Abandon();

 private:
  PackWriter(Env& env, std::string path, std::unique_ptr<WritableFile> file);
  Status Write(ByteView data);
  Status FlushBuffer();

  Env& env_;
  std::string path_;
  std::unique_ptr<WritableFile> file_;
  Bytes buffer_;
  uint64_t size_ = 0;
  PackContents contents_;
  bool finished_ = false;
};

// Reads and validates a pack's index: header, footer, the checksum over the
// index, entry bounds. With `verify_entries`, also reads every entry and
// checks its frame and SHA-256. Used to rebuild indexes and to verify stores.
Result<PackContents> ReadPackIndex(Env& env, const std::string& path, bool verify_entries);

}  // namespace ferry::snapshot
