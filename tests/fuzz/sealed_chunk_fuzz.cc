// libFuzzer target: sealed chunks (snapshot/sealed_chunk.cc:
// ParseSealedChunkHeader, OpenChunk, SealChunk). Input format: fuzz_formats.h.
// Checks, beyond "no crash, no UB":
//  - errors are DATA_LOSS, and a failed OpenChunk leaves no plaintext;
//  - OpenChunk succeeds only when the header parses, and then gives exactly
//    plain_len bytes that hash to the chunk id;
//  - no allocation is larger than the input or the header's plain_len
//    (bounded by kMaxChunkSize before anything is allocated);
//  - SealChunk round-trips: the sealed chunk parses to the options it was
//    sealed with and opens to the plaintext; with one bit flipped anywhere,
//    it does not open;
//  - an uncompressed chunk that opens is exactly what SealChunk writes for
//    its plaintext, nonce and suite (one encoding).
#include <algorithm>
#include <optional>

#include "snapshot/sealed_chunk.h"
#include "snapshot/sealed_chunk_format.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

namespace fmt = snapshot::sealed_chunk_format;
using snapshot::ChunkId;

const snapshot::DataKey& Key() {
  static const snapshot::DataKey key{{}, SecretBytes(FixedKey(kDataKeySalt).data(), 32)};
  return key;
}

const evp::HmacSha256& IdHasher() {
  static const evp::HmacSha256 hasher(FixedKey(kChunkIdKeySalt));
  return hasher;
}

// Opens `sealed` and checks what any result must satisfy; the plaintext on success.
std::optional<Bytes> Open(const ChunkId& id, ByteView sealed) {
  Result<snapshot::SealedChunkHeader> header = snapshot::ParseSealedChunkHeader(sealed);
  FUZZ_CHECK(header.ok() || header.status().code() == StatusCode::kDataLoss);
  Bytes plaintext;
  Status opened;
  const size_t largest = LargestAllocation::During(
      [&] { opened = snapshot::OpenChunk(id, sealed, Key().key, IdHasher(), plaintext); });
  FUZZ_CHECK(largest <=
             std::max<size_t>(sealed.size(), header.ok() ? header->plain_len : 0) + (64 << 10));
  if (!opened.ok()) {
    FUZZ_CHECK(opened.code() == StatusCode::kDataLoss);
    FUZZ_CHECK(plaintext.empty());
    return std::nullopt;
  }
  FUZZ_CHECK(header.ok());
  FUZZ_CHECK(plaintext.size() == header->plain_len);
  FUZZ_CHECK(IdHasher().Compute(plaintext) == id);
  if ((header->flags & fmt::kFlagLz4) == 0) {
    snapshot::SealOptions options;
    options.suite = header->suite;
    options.compress = false;
    options.nonce_for_test = &header->nonce;
    snapshot::DataKey key{header->key_id, Key().key.Clone()};
    Bytes again;
    FUZZ_CHECK(snapshot::SealChunk(id, plaintext, key, again, options).ok());
    FUZZ_CHECK(SameBytes(again, sealed));
  }
  return plaintext;
}

void SealedByUs(ByteView in) {
  ByteReader r(in);
  uint16_t flip = 0;
  uint8_t options_byte = 0;
  if (!r.ReadU16(flip) || !r.ReadU8(options_byte)) return;
  const ByteView plaintext = r.Rest();
  const ChunkId id = IdHasher().Compute(plaintext);
  snapshot::SealOptions options;
  options.compress = (options_byte & 1) != 0;
  options.suite = options_byte & 2 ? evp::AeadSuite::kChaCha20Poly1305 : evp::AeadSuite::kAes256Gcm;
  Bytes sealed;
  FUZZ_CHECK(snapshot::SealChunk(id, plaintext, Key(), sealed, options).ok());
  Result<snapshot::SealedChunkHeader> header = snapshot::ParseSealedChunkHeader(sealed);
  FUZZ_CHECK(header.ok() && header->suite == options.suite &&
             header->plain_len == plaintext.size());
  FUZZ_CHECK(options.compress || header->flags == 0);
  const std::optional<Bytes> opened = Open(id, sealed);
  FUZZ_CHECK(opened && SameBytes(*opened, plaintext));
  sealed[flip / 8 % sealed.size()] ^= static_cast<uint8_t>(1 << (flip % 8));
  FUZZ_CHECK(!Open(id, sealed));
}

// A key holder's chunk: any header, any payload, a valid tag.
void SealedPayload(ByteView in) {
  if (in.size() < 32 + fmt::kHeaderSize) return;
  ChunkId id;
  std::copy_n(in.begin(), 32, id.begin());
  const ByteView header = in.subspan(32, fmt::kHeaderSize);
  const ByteView payload = in.subspan(32 + fmt::kHeaderSize);
  const auto suite = evp::IsKnownSuite(header[fmt::kOffSuite])
                         ? static_cast<evp::AeadSuite>(header[fmt::kOffSuite])
                         : evp::AeadSuite::kAes256Gcm;
  Bytes aad(id.begin(), id.end());
  PutBytes(aad, header);
  Bytes sealed(header.begin(), header.end());
  FUZZ_CHECK(evp::AeadSeal(suite, Key().key.view(), header.subspan(fmt::kOffNonce, 12), aad,
                           payload, sealed)
                 .ok());
  Open(id, sealed);
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ferry::fuzz;
  if (size == 0) return 0;
  const ferry::ByteView rest(data + 1, size - 1);
  switch (data[0] % 3) {
    case kSealedAsIs:
      if (rest.size() >= 32) {
        ferry::snapshot::ChunkId id;
        std::copy_n(rest.begin(), 32, id.begin());
        Open(id, rest.subspan(32));
      }
      break;
    case kSealedByUs:
      SealedByUs(rest);
      break;
    case kSealedPayload:
      SealedPayload(rest);
      break;
  }
  return 0;
}
