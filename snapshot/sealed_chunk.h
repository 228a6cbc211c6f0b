// Sealing and opening chunks: optional LZ4, then AEAD under a data key, with
// the chunk id and the header as associated data.
// Format: docs/format/sealed-chunk.md.
//
// Errors from OpenChunk: kDataLoss for anything wrong with the bytes (bad
// version, reserved bits set, sizes out of bounds, tag mismatch, LZ4 damage,
// content that does not hash to its id), each message saying what.
// Thread-safety: thread-safe (no shared state).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "core/bytes.h"
#include "core/evp.h"
#include "core/secret_bytes.h"
#include "core/status.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

struct DataKey {
  KeyId id{};
  SecretBytes key;  // 32 bytes
};

struct SealedChunkHeader {
  uint8_t version = 0;
  evp::AeadSuite suite = evp::AeadSuite::kAes256Gcm;
  uint8_t flags = 0;
  KeyId key_id{};
  uint32_t plain_len = 0;  // of the payload: the plaintext, or a delta chunk's delta
  std::array<uint8_t, 12> nonce{};
  std::vector<ChunkId> bases;  // a delta chunk's bases (flag kFlagDelta); empty otherwise
  ChunkId content_id{};        // a delta chunk's: the id of the content it rebuilds
  size_t body_offset = 0;      // where the ciphertext starts
  bool is_delta() const { return !bases.empty(); }
};

struct SealOptions {
  evp::AeadSuite suite = evp::DefaultSuite();
  bool compress = true;
  // Tests only: a fixed nonce for golden bytes. Never set in production.
  const std::array<uint8_t, 12>* nonce_for_test = nullptr;
};

// Appends the sealed form of `plaintext` (whose id is `id`) to `out`.
// kInvalidArgument if plaintext is larger than kMaxChunkSize.
Status SealChunk(const ChunkId& id, ByteView plaintext, const DataKey& key, Bytes& out,
                 const SealOptions& options = {});

// Seals the delta payload (snapshot/delta.h) of delta chunk `id`, which
// rebuilds the content named `content_id`: flag kFlagDelta, `bases` (1..16)
// named in the clear after the header, so that a store that cannot decrypt
// still knows which chunks this one needs, then `content_id`, which the
// reader checks the rebuilt content against.
Status SealDeltaChunk(const ChunkId& id, const ChunkId& content_id, ByteView payload,
                      std::span<const ChunkId> bases, const DataKey& key, Bytes& out,
                      const SealOptions& options = {});

// Parses and bounds-checks the header without decrypting (kDataLoss on bad bytes).
Result<SealedChunkHeader> ParseSealedChunkHeader(ByteView sealed);

// Decrypts and decompresses into `plaintext`, then checks that the plaintext
// hashes to `id` under `id_hasher`. `key` must be the data key named in the header.
// A delta chunk gives kFailedPrecondition: it needs its bases (ChunkReader).
Status OpenChunk(const ChunkId& id, ByteView sealed, const SecretBytes& key,
                 const evp::HmacSha256& id_hasher, Bytes& plaintext);

// Like OpenChunk, for whole and delta chunks alike: `payload` receives the
// decrypted, decompressed payload and `header` the parsed header. A whole
// chunk's payload is its plaintext and is checked against `id` here; a delta
// chunk's is its delta payload, which the caller checks against `id`
// (delta::BlockHasher::DeltaId) and applies.
Status OpenChunkPayload(const ChunkId& id, ByteView sealed, const SecretBytes& key,
                        const evp::HmacSha256& id_hasher, Bytes& payload,
                        SealedChunkHeader& header);

}  // namespace ferry::snapshot
