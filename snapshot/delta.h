// Delta chunks: a new chunk stored as copies from earlier chunks plus the
// bytes that are new, without the writer ever holding the earlier chunks.
//
// The agent holds a write-only key and the hub holds only ciphertext, so
// neither can read an earlier version of a chunk to diff against. What the
// writer can keep is a *signature* of every chunk it sealed: per 2 KiB block
// a weak rolling checksum and a 128-bit keyed strong hash (rsync's scheme,
// with the receiver's role played by the writer's own file cache). When a
// file changes, its new chunks are matched block by block against the
// signatures of the file's previous chunks (the bases); matched blocks become
// copy operations, the rest literals. A restore, which holds the full keyset,
// reads the bases and applies the operations; the result must hash to the
// chunk id, so a wrong match can never pass unnoticed.
//
// Formats (signature, delta payload): docs/format/delta.md.
// Errors: Parse, Apply and CheckSignature give kDataLoss naming what is wrong;
// sizes are checked before anything is allocated.
// Thread-safety: BlockHasher is immutable after construction (thread-safe);
// BaseIndex is thread-compatible; the free functions are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/bytes.h"
#include "core/evp.h"
#include "core/status.h"
#include "snapshot/types.h"

typedef struct evp_mac_ctx_st EVP_MAC_CTX;

namespace ferry::snapshot::delta {

inline constexpr uint8_t kSignatureVersion = 1;
inline constexpr uint8_t kPayloadVersion = 1;
inline constexpr uint32_t kBlockSize = 2048;  // bytes per signature block
inline constexpr size_t kStrongSize = 16;     // bytes of strong hash per block
inline constexpr size_t kMaxBases = 16;       // bases one delta may copy from

using StrongHash = std::array<uint8_t, kStrongSize>;

// The strong block hash: HMAC-SHA-256 under a key derived from the chunk-id
// key (so that signatures say nothing to anyone without that key), truncated
// to 16 bytes.
class BlockHasher {
 public:
  // Derives the block key = HMAC-SHA-256(chunk-id key, "ferry delta block v1")
  // through `chunk_id_hasher` (which is keyed with the chunk-id key).
  // Also derives the delta-id key = HMAC-SHA-256(chunk-id key, "ferry delta id v1").
  explicit BlockHasher(const evp::HmacSha256& chunk_id_hasher);
  StrongHash Strong(ByteView block) const;
  // The chunk id of a delta chunk: HMAC-SHA-256(delta-id key, payload). A
  // delta chunk is named by its payload, not by the content it rebuilds, so
  // that one id always names one byte string (a whole chunk of the same
  // content keeps its own id), and the separate key keeps the two id spaces
  // apart.
  ChunkId DeltaId(ByteView payload) const;

 private:
  friend struct HasherAccess;
  struct MacCtxFree {
    void operator()(EVP_MAC_CTX* ctx) const;
  };
  std::unique_ptr<evp::HmacSha256> hmac_;
  std::unique_ptr<evp::HmacSha256> id_hmac_;  // the delta-id key
  // The same key in an OpenSSL context, duplicated per call by the bulk paths
  // (ComputeSignature, Encode) so that each block costs one reinit, not a
  // context allocation and key setup. delta.cc.
  std::unique_ptr<EVP_MAC_CTX, MacCtxFree> keyed_;
};

// The weak rolling checksum of one block (rsync's: a = sum of bytes,
// b = sum of running sums, each mod 2^16; value a | b << 16).
uint32_t WeakChecksum(ByteView block);

// The signature of one chunk's plaintext: its length and, for every *full*
// block of kBlockSize bytes from offset 0, the weak and strong hash (a
// trailing partial block is not listed). Layout: docs/format/delta.md.
Bytes ComputeSignature(const BlockHasher& hasher, ByteView plaintext);
// Checks a signature's bytes (version, lengths consistent); kDataLoss if not.
Status CheckSignature(ByteView signature);
// Bytes a signature of a chunk of `plain_size` bytes takes.
size_t SignatureSize(uint32_t plain_size);

// The blocks of a set of candidate bases (typically every chunk of the
// previous version of a file), looked up by weak checksum.
class BaseIndex {
 public:
  BaseIndex();
  ~BaseIndex();
  BaseIndex(BaseIndex&&) noexcept;
  BaseIndex& operator=(BaseIndex&&) noexcept;
  // Adds a candidate base. The signature must pass CheckSignature. Adding
  // the same id twice is a no-op.
  Status Add(const ChunkId& id, ByteView signature);
  bool empty() const;
  size_t bases() const;

 private:
  friend struct IndexAccess;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Encoded {
  Bytes payload;               // the delta payload (docs/format/delta.md)
  std::vector<ChunkId> bases;  // the bases it copies from, in payload order
  uint64_t copied = 0;         // bytes of plaintext covered by copies
};

// Encodes `plaintext` against the bases of `index`. nullopt when nothing
// matched, or when the payload would not be smaller than `max_payload` bytes
// (the caller then stores the chunk whole). Uses at most kMaxBases bases.
std::optional<Encoded> Encode(const BlockHasher& hasher, const BaseIndex& index, ByteView plaintext,
                              size_t max_payload);

struct Op {
  enum class Kind : uint8_t { kCopy = 1, kLiteral = 2 };
  Kind kind = Kind::kLiteral;
  uint8_t base = 0;     // kCopy: index into bases
  uint32_t offset = 0;  // kCopy: offset in the base's plaintext
  uint32_t length = 0;
  ByteView literal;  // kLiteral: the bytes (a view into the payload)
};

struct ParsedDelta {
  std::vector<ChunkId> bases;
  uint32_t size = 0;    // plaintext size after applying, <= kMaxChunkSize
  std::vector<Op> ops;  // views into the payload: keep it alive
};

// Parses and checks a payload: version, 1..kMaxBases bases, op kinds, base
// indexes in range, literal lengths inside the payload, op lengths summing to
// `size`, no trailing bytes. kDataLoss otherwise.
Result<ParsedDelta> Parse(ByteView payload);

// Rebuilds the plaintext into `out` (resized to delta.size). `bases[i]` is the
// plaintext of delta.bases[i]. kDataLoss when a copy reaches outside its
// base, or bases.size() != delta.bases.size(); `out` is then cleared.
Status Apply(const ParsedDelta& delta, std::span<const ByteView> bases, Bytes& out);

}  // namespace ferry::snapshot::delta
