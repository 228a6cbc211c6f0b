// Stream batches: a run of consecutive stream records, sealed for the trip
// from the agent to the hub and for storage there. Format:
// docs/format/stream-batch.md.
//
// A batch is self-contained: it names its stream and first offset, carries
// its data key wrapped to the tenant public key (so the hub needs no key
// table to serve it), the records compressed with LZ4 where that shrinks
// them and sealed with AEAD, and the agent's Ed25519 signature over all of
// it. Without keys, anyone (the hub) can check the signature and read the
// header — stream, offsets, sizes, signer — but not the records; with the
// tenant keyset, a reader opens it.
//
// Errors: SealStreamBatch kInvalidArgument (empty batch, too many records
// or bytes, bad stream name, offset overflow); VerifyStreamBatch and
// OpenStreamBatch kDataLoss for anything wrong with the bytes, each message
// saying what (a forged or altered batch fails the signature).
// Thread-safety: thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/evp.h"
#include "core/secret_bytes.h"
#include "core/sodium.h"
#include "core/status.h"
#include "snapshot/sealed_chunk.h"
#include "snapshot/stream_log.h"

namespace ferry::snapshot {

inline constexpr uint8_t kStreamBatchVersion = 1;
inline constexpr size_t kMaxStreamNameBytes = 255;
// Limits a batch must keep (checked before anything is allocated).
inline constexpr uint32_t kMaxStreamBatchRecords = 1u << 20;
inline constexpr uint32_t kMaxStreamBatchPlainBytes = 64u << 20;

// What anyone can read from a batch without keys.
struct StreamBatchHeader {
  uint8_t version = 0;
  evp::AeadSuite suite = evp::AeadSuite::kAes256Gcm;
  bool lz4 = false;
  std::string stream;
  uint64_t first_offset = 0;
  uint32_t record_count = 0;
  uint32_t plain_len = 0;  // bytes of the record section before compression
  KeyId key_id{};
  Bytes wrapped_key;  // the data key, sealed to the tenant public key
  sodium::PublicKey signer{};
  uint64_t end_offset() const { return first_offset + record_count; }
};

// The data key a batch is sealed under, with its wrapped form (from
// Keyset::MakeDataKey). A sender may reuse one for many batches.
struct StreamBatchKey {
  DataKey key;
  Bytes wrapped;
};

struct StreamBatchSealOptions {
  evp::AeadSuite suite = evp::DefaultSuite();
  bool compress = true;
  // Tests only: a fixed nonce for golden bytes. Never set in production.
  const std::array<uint8_t, 12>* nonce_for_test = nullptr;
};

// Seals `records` as the records [first_offset, first_offset + size) of
// `stream`, signed by `signer`.
Result<Bytes> SealStreamBatch(std::string_view stream, uint64_t first_offset,
                              std::span<const ByteView> records, const StreamBatchKey& key,
                              const sodium::SigningKeyPair& signer,
                              const StreamBatchSealOptions& options = {});

// Parses the header and checks the signature (no keys needed). The signer
// is the key in the batch: whether it is trusted is the caller's decision.
Result<StreamBatchHeader> VerifyStreamBatch(ByteView sealed);

// VerifyStreamBatch, then decrypts with the unwrapped data key and returns
// the records with their offsets.
Result<std::vector<StreamRecord>> OpenStreamBatch(ByteView sealed, const SecretBytes& data_key);

}  // namespace ferry::snapshot
