#include "snapshot/sealed_chunk.h"

#include <lz4.h>

#include "core/sodium.h"
#include "snapshot/sealed_chunk_format.h"

namespace ferry::snapshot {

namespace fmt = sealed_chunk_format;

namespace {

// Associated data: chunk id || header. Binding the header means a flipped
// flag or length is caught by the tag before we act on it.
std::array<uint8_t, 32 + fmt::kHeaderSize> MakeAad(const ChunkId& id, const uint8_t* header) {
  std::array<uint8_t, 32 + fmt::kHeaderSize> aad;
  std::copy(id.begin(), id.end(), aad.begin());
  std::copy(header, header + fmt::kHeaderSize, aad.begin() + 32);
  return aad;
}

std::string Hex8(const ChunkId& id) { return HexEncode(ByteView(id.data(), 8)); }

}  // namespace

Status SealChunk(const ChunkId& id, ByteView plaintext, const DataKey& key, Bytes& out,
                 const SealOptions& options) {
  if (plaintext.size() > kMaxChunkSize) {
    return InvalidArgumentError("chunk of " + std::to_string(plaintext.size()) +
                                " bytes exceeds the limit of " + std::to_string(kMaxChunkSize));
  }
  // LZ4 only where it shrinks the chunk.
  thread_local Bytes compressed;
  ByteView payload = plaintext;
  uint8_t flags = 0;
  if (options.compress && plaintext.size() >= 64) {
    const int bound = LZ4_compressBound(static_cast<int>(plaintext.size()));
    compressed.resize(static_cast<size_t>(bound));
    // Capacity plaintext.size()-1: LZ4 gives up early when the output would not be smaller.
    const int n = LZ4_compress_default(
        reinterpret_cast<const char*>(plaintext.data()), reinterpret_cast<char*>(compressed.data()),
        static_cast<int>(plaintext.size()), static_cast<int>(plaintext.size() - 1));
    if (n > 0) {
      payload = ByteView(compressed.data(), static_cast<size_t>(n));
      flags |= fmt::kFlagLz4;
    }
  }

  const size_t start = out.size();
  out.reserve(start + fmt::kOverhead + payload.size());
  out.resize(start + fmt::kHeaderSize);
  uint8_t* h = out.data() + start;
  h[fmt::kOffVersion] = fmt::kVersion;
  h[fmt::kOffSuite] = static_cast<uint8_t>(options.suite);
  h[fmt::kOffFlags] = flags;
  h[fmt::kOffReserved] = 0;
  std::copy(key.id.begin(), key.id.end(), h + fmt::kOffKeyId);
  StoreU32(h + fmt::kOffPlainLen, static_cast<uint32_t>(plaintext.size()));
  if (options.nonce_for_test != nullptr) {
    std::copy(options.nonce_for_test->begin(), options.nonce_for_test->end(), h + fmt::kOffNonce);
  } else {
    sodium::RandomBytes(MutableByteView(h + fmt::kOffNonce, 12));
  }
  const auto aad = MakeAad(id, h);
  std::array<uint8_t, 12> nonce;
  std::copy(h + fmt::kOffNonce, h + fmt::kOffNonce + 12, nonce.begin());
  Status s = evp::AeadSeal(options.suite, key.key.view(), nonce, aad, payload, out);
  if (!s.ok()) {
    out.resize(start);
    return s;
  }
  return OkStatus();
}

Result<SealedChunkHeader> ParseSealedChunkHeader(ByteView sealed) {
  if (sealed.size() < fmt::kOverhead) {
    return DataLossError("sealed chunk is " + std::to_string(sealed.size()) +
                         " bytes, shorter than the " + std::to_string(fmt::kOverhead) +
                         "-byte minimum");
  }
  SealedChunkHeader h;
  h.version = sealed[fmt::kOffVersion];
  if (h.version != fmt::kVersion) {
    return DataLossError("sealed chunk has unknown version " + std::to_string(h.version));
  }
  const uint8_t suite = sealed[fmt::kOffSuite];
  if (!evp::IsKnownSuite(suite)) {
    return DataLossError("sealed chunk has unknown cipher suite " + std::to_string(suite));
  }
  h.suite = static_cast<evp::AeadSuite>(suite);
  h.flags = sealed[fmt::kOffFlags];
  if ((h.flags & ~fmt::kKnownFlags) != 0 || sealed[fmt::kOffReserved] != 0) {
    return DataLossError("sealed chunk has reserved flag bits set");
  }
  std::copy(sealed.begin() + fmt::kOffKeyId, sealed.begin() + fmt::kOffKeyId + 16,
            h.key_id.begin());
  h.plain_len = LoadU32(sealed.data() + fmt::kOffPlainLen);
  if (h.plain_len > kMaxChunkSize) {
    return DataLossError("sealed chunk claims " + std::to_string(h.plain_len) +
                         " plaintext bytes, over the limit");
  }
  std::copy(sealed.begin() + fmt::kOffNonce, sealed.begin() + fmt::kOffNonce + 12, h.nonce.begin());
  const size_t payload_len = sealed.size() - fmt::kOverhead;
  if (h.flags & fmt::kFlagLz4) {
    if (payload_len >= h.plain_len ||
        payload_len > static_cast<size_t>(LZ4_compressBound(static_cast<int>(h.plain_len)))) {
      return DataLossError("sealed chunk: compressed length " + std::to_string(payload_len) +
                           " is inconsistent with plaintext length " + std::to_string(h.plain_len));
    }
  } else if (payload_len != h.plain_len) {
    return DataLossError("sealed chunk: payload length " + std::to_string(payload_len) +
                         " differs from plaintext length " + std::to_string(h.plain_len));
  }
  return h;
}

Status OpenChunk(const ChunkId& id, ByteView sealed, const SecretBytes& key,
                 const evp::HmacSha256& id_hasher, Bytes& plaintext) {
  ASSIGN_OR_RETURN(SealedChunkHeader h, ParseSealedChunkHeader(sealed));
  const auto aad = MakeAad(id, sealed.data());
  ByteView body = sealed.subspan(fmt::kHeaderSize);
  if (h.flags & fmt::kFlagLz4) {
    thread_local Bytes decrypted;
    RETURN_IF_ERROR(evp::AeadOpen(h.suite, key.view(), h.nonce, aad, body, decrypted)
                        .WithContext("chunk " + Hex8(id)));
    plaintext.resize(h.plain_len);
    const int n = LZ4_decompress_safe(
        reinterpret_cast<const char*>(decrypted.data()), reinterpret_cast<char*>(plaintext.data()),
        static_cast<int>(decrypted.size()), static_cast<int>(h.plain_len));
    if (n < 0 || static_cast<uint32_t>(n) != h.plain_len) {
      plaintext.clear();
      return DataLossError("chunk " + Hex8(id) + ": LZ4 payload is damaged");
    }
  } else {
    RETURN_IF_ERROR(evp::AeadOpen(h.suite, key.view(), h.nonce, aad, body, plaintext)
                        .WithContext("chunk " + Hex8(id)));
  }
  if (id_hasher.Compute(plaintext) != id) {
    plaintext.clear();
    return DataLossError("chunk " + Hex8(id) + ": content does not match its id");
  }
  return OkStatus();
}

}  // namespace ferry::snapshot
