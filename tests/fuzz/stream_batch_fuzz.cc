// libFuzzer target: sealed stream batches (snapshot/stream_batch.cc:
// VerifyStreamBatch, OpenStreamBatch, SealStreamBatch), what a hub checks
// from an agent and a reader gets from a hub. Input format: fuzz_formats.h.
// Checks, beyond "no crash, no UB":
//  - errors are DATA_LOSS (verify, open) and INVALID_ARGUMENT (seal);
//  - a verified header keeps its promises: a name of 1 to 255 bytes, 1 to
//    kMaxStreamBatchRecords records, offsets that do not overflow, record
//    bytes within the limit and at least 4 per record;
//  - a batch that opens gives exactly record_count records at consecutive
//    offsets from first_offset, framed in exactly plain_len bytes;
//  - no allocation is larger than what the header's checked limits allow;
//  - SealStreamBatch round-trips: the batch verifies to the stream, offset,
//    count and signer it was sealed with and opens to the records; with one
//    bit flipped anywhere, it neither verifies nor opens.
#include <algorithm>

#include "core/sodium.h"
#include "snapshot/keyset.h"
#include "snapshot/stream_batch.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

const SecretBytes& DataKey() {
  static const SecretBytes key(FixedKey(kDataKeySalt).data(), 32);
  return key;
}

const sodium::SigningKeyPair& Signer() {
  static const sodium::SigningKeyPair kp = [] {
    const auto seed = FixedKey(kSigningSeedSalt);
    Result<sodium::SigningKeyPair> k = sodium::SigningKeyPairFromSeed(seed);
    FUZZ_CHECK(k.ok());
    return std::move(*k);
  }();
  return kp;
}

// Verifies and opens `sealed`; the records when it opened.
std::optional<std::vector<snapshot::StreamRecord>> Check(ByteView sealed) {
  Result<snapshot::StreamBatchHeader> h = snapshot::VerifyStreamBatch(sealed);
  if (!h.ok()) {
    FUZZ_CHECK(h.status().code() == StatusCode::kDataLoss);
  } else {
    FUZZ_CHECK(!h->stream.empty() && h->stream.size() <= snapshot::kMaxStreamNameBytes);
    FUZZ_CHECK(h->record_count >= 1 && h->record_count <= snapshot::kMaxStreamBatchRecords);
    FUZZ_CHECK(h->first_offset <= UINT64_MAX - h->record_count);
    FUZZ_CHECK(h->plain_len <= snapshot::kMaxStreamBatchPlainBytes);
    FUZZ_CHECK(h->plain_len >= 4ull * h->record_count);
    FUZZ_CHECK(h->wrapped_key.size() == snapshot::kWrappedDataKeySize);
  }
  std::optional<Result<std::vector<snapshot::StreamRecord>>> opened;
  const size_t largest = LargestAllocation::During(
      [&] { opened.emplace(snapshot::OpenStreamBatch(sealed, DataKey())); });
  Result<std::vector<snapshot::StreamRecord>>& r = *opened;
  const size_t plain = h.ok() ? h->plain_len : 0;
  // The records' vector (32 bytes a record, at most plain_len / 4 records)
  // is the largest, and only after the AEAD verified.
  FUZZ_CHECK(largest <= 8 * plain + 2 * sealed.size() + (64 << 10));
  if (!r.ok()) {
    FUZZ_CHECK(r.status().code() == StatusCode::kDataLoss);
    return std::nullopt;
  }
  FUZZ_CHECK(h.ok());
  FUZZ_CHECK(r->size() == h->record_count);
  uint64_t framed = 0;
  for (size_t i = 0; i < r->size(); ++i) {
    FUZZ_CHECK((*r)[i].offset == h->first_offset + i);
    framed += 4 + (*r)[i].data.size();
  }
  FUZZ_CHECK(framed == h->plain_len);
  return std::move(*r);
}

void SealedByUs(ByteView in) {
  ByteReader r(in);
  uint16_t flip = 0;
  uint8_t options_byte = 0, name_len = 0;
  uint64_t first = 0;
  ByteView name;
  if (!r.ReadU16(flip) || !r.ReadU8(options_byte) || !r.ReadU64(first) || !r.ReadU8(name_len) ||
      !r.ReadView(name_len, name)) {
    return;
  }
  const std::vector<ByteView> records = ParseFrames(r.Rest(), kMaxBatchRecordsPerInput);
  snapshot::StreamBatchKey key;
  key.key.key = DataKey().Clone();
  key.key.id.fill(0x42);
  key.wrapped.assign(snapshot::kWrappedDataKeySize, 0x57);
  snapshot::StreamBatchSealOptions options;
  options.compress = (options_byte & 1) != 0;
  options.suite = options_byte & 2 ? evp::AeadSuite::kChaCha20Poly1305 : evp::AeadSuite::kAes256Gcm;
  const std::string stream(reinterpret_cast<const char*>(name.data()), name.size());
  Result<Bytes> sealed = snapshot::SealStreamBatch(stream, first, records, key, Signer(), options);
  if (!sealed.ok()) {
    FUZZ_CHECK(sealed.status().code() == StatusCode::kInvalidArgument);
    FUZZ_CHECK(stream.empty() || records.empty() || first > UINT64_MAX - records.size());
    return;
  }
  Result<snapshot::StreamBatchHeader> h = snapshot::VerifyStreamBatch(*sealed);
  FUZZ_CHECK(h.ok());
  FUZZ_CHECK(h->stream == stream && h->first_offset == first && h->record_count == records.size() &&
             h->signer == Signer().public_key && h->suite == options.suite);
  const std::optional<std::vector<snapshot::StreamRecord>> opened = Check(*sealed);
  FUZZ_CHECK(opened.has_value());
  for (size_t i = 0; i < records.size(); ++i) FUZZ_CHECK(SameBytes((*opened)[i].data, records[i]));
  (*sealed)[flip / 8 % sealed->size()] ^= static_cast<uint8_t>(1 << (flip % 8));
  FUZZ_CHECK(!snapshot::VerifyStreamBatch(*sealed).ok());
  FUZZ_CHECK(!Check(*sealed).has_value());
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ferry::fuzz;
  if (size == 0) return 0;
  const ferry::ByteView rest(data + 1, size - 1);
  if (data[0] % 2 == kBatchAsIs) {
    Check(rest);
  } else {
    SealedByUs(rest);
  }
  return 0;
}
