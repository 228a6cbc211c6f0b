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
  uint32_t plain_len = 0;
  std::array<uint8_t, 12> nonce{};
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

// Parses and bounds-checks the header without decrypting (kDataLoss on bad bytes).
Result<SealedChunkHeader> ParseSealedChunkHeader(ByteView sealed);

// Decrypts and decompresses into `plaintext`, then checks that the plaintext
// hashes to `id` under `id_hasher`. `key` must be the data key named in the header.
Status OpenChunk(const ChunkId& id, ByteView sealed, const SecretBytes& key,
                 const evp::HmacSha256& id_hasher, Bytes& plaintext);

}  // namespace ferry::snapshot
