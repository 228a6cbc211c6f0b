#include "snapshot/stream_batch.h"

#include <lz4.h>

#include <cstring>

#include "snapshot/keyset.h"

namespace ferry::snapshot {

namespace {

// Layout (docs/format/stream-batch.md).
constexpr size_t kOffVersion = 0;
constexpr size_t kOffSuite = 1;
constexpr size_t kOffFlags = 2;
constexpr size_t kOffNameLen = 3;
constexpr size_t kOffFirst = 4;
constexpr size_t kOffCount = 12;
constexpr size_t kOffPlainLen = 16;
constexpr size_t kOffKeyId = 20;
constexpr size_t kOffWrapped = 36;
constexpr size_t kOffNonce = kOffWrapped + kWrappedDataKeySize;  // 132
constexpr size_t kOffName = kOffNonce + 12;                      // 144
constexpr uint8_t kFlagLz4 = 0x01;
constexpr size_t kTrailer = 32 + 64;                           // signer, signature
constexpr char kSignatureContext[] = "ferry stream batch v1";  // + its NUL

Bytes SignedMessage(ByteView signed_part) {
  Bytes m;
  m.reserve(sizeof(kSignatureContext) + signed_part.size());
  m.insert(m.end(), kSignatureContext, kSignatureContext + sizeof(kSignatureContext));
  m.insert(m.end(), signed_part.begin(), signed_part.end());
  return m;
}

Status CheckStreamName(std::string_view stream) {
  if (stream.empty() || stream.size() > kMaxStreamNameBytes) {
    return InvalidArgumentError("stream name must be 1 to " + std::to_string(kMaxStreamNameBytes) +
                                " bytes");
  }
  return OkStatus();
}

}  // namespace

Result<Bytes> SealStreamBatch(std::string_view stream, uint64_t first_offset,
                              std::span<const ByteView> records, const StreamBatchKey& key,
                              const sodium::SigningKeyPair& signer,
                              const StreamBatchSealOptions& options) {
  RETURN_IF_ERROR(CheckStreamName(stream));
  if (records.empty()) return InvalidArgumentError("a stream batch needs at least one record");
  if (records.size() > kMaxStreamBatchRecords) {
    return InvalidArgumentError("a stream batch holds at most " +
                                std::to_string(kMaxStreamBatchRecords) + " records");
  }
  if (first_offset > UINT64_MAX - records.size()) {
    return InvalidArgumentError("stream batch offsets overflow");
  }
  if (key.wrapped.size() != kWrappedDataKeySize) {
    return InvalidArgumentError("wrapped data key must be " + std::to_string(kWrappedDataKeySize) +
                                " bytes");
  }
  uint64_t plain_len = 0;
  for (ByteView r : records) plain_len += 4 + r.size();
  if (plain_len > kMaxStreamBatchPlainBytes) {
    return InvalidArgumentError("stream batch of " + std::to_string(plain_len) +
                                " bytes exceeds the limit of " +
                                std::to_string(kMaxStreamBatchPlainBytes));
  }
  Bytes plain;
  plain.reserve(plain_len);
  for (ByteView r : records) {
    PutU32(plain, static_cast<uint32_t>(r.size()));
    PutBytes(plain, r);
  }
  // LZ4 only where it shrinks the records.
  Bytes compressed;
  ByteView payload = plain;
  uint8_t flags = 0;
  if (options.compress && plain.size() >= 64) {
    compressed.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(plain.size()))));
    const int n = LZ4_compress_default(
        reinterpret_cast<const char*>(plain.data()), reinterpret_cast<char*>(compressed.data()),
        static_cast<int>(plain.size()), static_cast<int>(plain.size() - 1));
    if (n > 0) {
      payload = ByteView(compressed.data(), static_cast<size_t>(n));
      flags |= kFlagLz4;
    }
  }

  Bytes out;
  out.reserve(kOffName + stream.size() + payload.size() + evp::kAeadTagSize + kTrailer);
  out.resize(kOffName + stream.size());
  uint8_t* h = out.data();
  h[kOffVersion] = kStreamBatchVersion;
  h[kOffSuite] = static_cast<uint8_t>(options.suite);
  h[kOffFlags] = flags;
  h[kOffNameLen] = static_cast<uint8_t>(stream.size());
  StoreU64(h + kOffFirst, first_offset);
  StoreU32(h + kOffCount, static_cast<uint32_t>(records.size()));
  StoreU32(h + kOffPlainLen, static_cast<uint32_t>(plain.size()));
  std::copy(key.key.id.begin(), key.key.id.end(), h + kOffKeyId);
  std::copy(key.wrapped.begin(), key.wrapped.end(), h + kOffWrapped);
  std::array<uint8_t, 12> nonce;
  if (options.nonce_for_test != nullptr) {
    nonce = *options.nonce_for_test;
  } else {
    sodium::RandomBytes(nonce);
  }
  std::copy(nonce.begin(), nonce.end(), h + kOffNonce);
  std::memcpy(h + kOffName, stream.data(), stream.size());
  const Bytes aad(out.begin(), out.end());
  RETURN_IF_ERROR(evp::AeadSeal(options.suite, key.key.key.view(), nonce, aad, payload, out));
  PutBytes(out, signer.public_key);
  const sodium::Signature sig = sodium::Sign(signer, SignedMessage(out));
  PutBytes(out, sig);
  return out;
}

Result<StreamBatchHeader> VerifyStreamBatch(ByteView sealed) {
  if (sealed.size() < kOffName + 1 + evp::kAeadTagSize + kTrailer) {
    return DataLossError("stream batch of " + std::to_string(sealed.size()) +
                         " bytes is too short");
  }
  StreamBatchHeader h;
  h.version = sealed[kOffVersion];
  if (h.version != kStreamBatchVersion) {
    return DataLossError("stream batch has unknown version " + std::to_string(h.version));
  }
  const uint8_t suite = sealed[kOffSuite];
  if (!evp::IsKnownSuite(suite)) {
    return DataLossError("stream batch has unknown cipher suite " + std::to_string(suite));
  }
  h.suite = static_cast<evp::AeadSuite>(suite);
  const uint8_t flags = sealed[kOffFlags];
  if ((flags & ~kFlagLz4) != 0) return DataLossError("stream batch has reserved flag bits set");
  h.lz4 = (flags & kFlagLz4) != 0;
  const size_t name_len = sealed[kOffNameLen];
  if (name_len == 0) return DataLossError("stream batch has an empty stream name");
  if (sealed.size() < kOffName + name_len + evp::kAeadTagSize + kTrailer) {
    return DataLossError("stream batch of " + std::to_string(sealed.size()) +
                         " bytes is too short for its header");
  }
  h.first_offset = LoadU64(sealed.data() + kOffFirst);
  h.record_count = LoadU32(sealed.data() + kOffCount);
  h.plain_len = LoadU32(sealed.data() + kOffPlainLen);
  if (h.record_count == 0 || h.record_count > kMaxStreamBatchRecords) {
    return DataLossError("stream batch claims " + std::to_string(h.record_count) + " records");
  }
  if (h.first_offset > UINT64_MAX - h.record_count) {
    return DataLossError("stream batch offsets overflow");
  }
  if (h.plain_len > kMaxStreamBatchPlainBytes || h.plain_len < 4ull * h.record_count) {
    return DataLossError("stream batch claims " + std::to_string(h.plain_len) + " bytes for " +
                         std::to_string(h.record_count) + " records");
  }
  std::copy(sealed.begin() + kOffKeyId, sealed.begin() + kOffKeyId + 16, h.key_id.begin());
  h.wrapped_key.assign(sealed.begin() + kOffWrapped, sealed.begin() + kOffNonce);
  h.stream.assign(reinterpret_cast<const char*>(sealed.data() + kOffName), name_len);
  const size_t payload_len = sealed.size() - kOffName - name_len - evp::kAeadTagSize - kTrailer;
  if (h.lz4) {
    if (payload_len >= h.plain_len ||
        payload_len > static_cast<size_t>(LZ4_compressBound(static_cast<int>(h.plain_len)))) {
      return DataLossError("stream batch: compressed length " + std::to_string(payload_len) +
                           " is inconsistent with its record bytes " + std::to_string(h.plain_len));
    }
  } else if (payload_len != h.plain_len) {
    return DataLossError("stream batch: payload length " + std::to_string(payload_len) +
                         " differs from its record bytes " + std::to_string(h.plain_len));
  }
  const size_t signed_len = sealed.size() - 64;
  std::copy(sealed.begin() + static_cast<ptrdiff_t>(signed_len - 32),
            sealed.begin() + static_cast<ptrdiff_t>(signed_len), h.signer.begin());
  sodium::Signature sig;
  std::copy(sealed.begin() + static_cast<ptrdiff_t>(signed_len), sealed.end(), sig.begin());
  if (!sodium::VerifySignature(h.signer, SignedMessage(sealed.first(signed_len)), sig)) {
    return DataLossError("stream batch signature does not verify");
  }
  return h;
}

Result<std::vector<StreamRecord>> OpenStreamBatch(ByteView sealed, const SecretBytes& data_key) {
  ASSIGN_OR_RETURN(StreamBatchHeader h, VerifyStreamBatch(sealed));
  const size_t header_len = kOffName + h.stream.size();
  const size_t body_end = sealed.size() - kTrailer;
  std::array<uint8_t, 12> nonce;
  std::copy(sealed.begin() + kOffNonce, sealed.begin() + kOffNonce + 12, nonce.begin());
  const std::string where =
      "stream " + h.stream + " batch at offset " + std::to_string(h.first_offset);
  Bytes decrypted;
  RETURN_IF_ERROR(evp::AeadOpen(h.suite, data_key.view(), nonce, sealed.first(header_len),
                                sealed.subspan(header_len, body_end - header_len), decrypted)
                      .WithContext(where));
  Bytes plain;
  if (h.lz4) {
    plain.resize(h.plain_len);
    const int n = LZ4_decompress_safe(
        reinterpret_cast<const char*>(decrypted.data()), reinterpret_cast<char*>(plain.data()),
        static_cast<int>(decrypted.size()), static_cast<int>(h.plain_len));
    if (n < 0 || static_cast<uint32_t>(n) != h.plain_len) {
      return DataLossError(where + ": LZ4 payload is damaged");
    }
  } else {
    plain = std::move(decrypted);
  }
  std::vector<StreamRecord> records;
  records.reserve(h.record_count);
  ByteReader reader(plain);
  for (uint32_t i = 0; i < h.record_count; ++i) {
    uint32_t len = 0;
    ByteView data;
    if (!reader.ReadU32(len) || !reader.ReadView(len, data)) {
      return DataLossError(where + ": record " + std::to_string(i) + " overruns the batch");
    }
    records.push_back({h.first_offset + i, Bytes(data.begin(), data.end())});
  }
  if (!reader.empty()) {
    return DataLossError(where + ": " + std::to_string(reader.remaining()) +
                         " bytes follow the last record");
  }
  return records;
}

}  // namespace ferry::snapshot
