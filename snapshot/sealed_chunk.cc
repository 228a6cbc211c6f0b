#include "snapshot/sealed_chunk.h"

#include <lz4.h>

#include "core/sodium.h"
#include "snapshot/sealed_chunk_format.h"

namespace ferry::snapshot {

namespace fmt = sealed_chunk_format;

namespace {

// Associated data: chunk id || header (|| a delta chunk's base list).
// Binding the header means a flipped flag or length is caught by the tag
// before we act on it.
ByteView MakeAad(const ChunkId& id, const uint8_t* header, size_t header_len) {
  thread_local Bytes aad;
  aad.assign(id.begin(), id.end());
  aad.insert(aad.end(), header, header + header_len);
  return aad;
}

std::string Hex8(const ChunkId& id) { return HexEncode(ByteView(id.data(), 8)); }

Status SealImpl(const ChunkId& id, ByteView plaintext, std::span<const ChunkId> bases,
                const ChunkId& content_id, const DataKey& key, Bytes& out,
                const SealOptions& options) {
  if (plaintext.size() > kMaxChunkSize) {
    return InvalidArgumentError("chunk of " + std::to_string(plaintext.size()) +
                                " bytes exceeds the limit of " + std::to_string(kMaxChunkSize));
  }
  // LZ4 only where it shrinks the chunk.
  thread_local Bytes compressed;
  ByteView payload = plaintext;
  uint8_t flags = bases.empty() ? 0 : fmt::kFlagDelta;
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
  const size_t prefix = fmt::kHeaderSize + (bases.empty() ? 0 : fmt::BaseListSize(bases.size()));
  out.reserve(start + prefix + fmt::kTagSize + payload.size());
  out.resize(start + prefix);
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
  if (!bases.empty()) {
    h[fmt::kHeaderSize] = static_cast<uint8_t>(bases.size());
    for (size_t i = 0; i < bases.size(); ++i) {
      std::copy(bases[i].begin(), bases[i].end(), h + fmt::kHeaderSize + 1 + 32 * i);
    }
    std::copy(content_id.begin(), content_id.end(), h + fmt::kHeaderSize + 1 + 32 * bases.size());
  }
  const ByteView aad = MakeAad(id, h, prefix);
  std::array<uint8_t, 12> nonce;
  std::copy(h + fmt::kOffNonce, h + fmt::kOffNonce + 12, nonce.begin());
  Status s = evp::AeadSeal(options.suite, key.key.view(), nonce, aad, payload, out);
  if (!s.ok()) {
    out.resize(start);
    return s;
  }
  return OkStatus();
}

}  // namespace

Status SealChunk(const ChunkId& id, ByteView plaintext, const DataKey& key, Bytes& out,
                 const SealOptions& options) {
  return SealImpl(id, plaintext, {}, id, key, out, options);
}

Status SealDeltaChunk(const ChunkId& id, const ChunkId& content_id, ByteView payload,
                      std::span<const ChunkId> bases, const DataKey& key, Bytes& out,
                      const SealOptions& options) {
  if (bases.empty() || bases.size() > fmt::kMaxDeltaBases) {
    return InvalidArgumentError("a delta chunk needs 1 to " + std::to_string(fmt::kMaxDeltaBases) +
                                " bases, got " + std::to_string(bases.size()));
  }
  return SealImpl(id, payload, bases, content_id, key, out, options);
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
  h.body_offset = fmt::kHeaderSize;
  if (h.flags & fmt::kFlagDelta) {
    const size_t n = sealed[fmt::kHeaderSize];
    if (n == 0 || n > fmt::kMaxDeltaBases) {
      return DataLossError("delta chunk names " + std::to_string(n) + " bases, outside 1.." +
                           std::to_string(fmt::kMaxDeltaBases));
    }
    if (sealed.size() < fmt::kOverhead + fmt::BaseListSize(n)) {
      return DataLossError("delta chunk is " + std::to_string(sealed.size()) +
                           " bytes, too short for its " + std::to_string(n) + " base ids");
    }
    h.bases.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = sealed.data() + fmt::kHeaderSize + 1 + 32 * i;
      std::copy(p, p + 32, h.bases[i].begin());
    }
    const uint8_t* c = sealed.data() + fmt::kHeaderSize + 1 + 32 * n;
    std::copy(c, c + 32, h.content_id.begin());
    h.body_offset += fmt::BaseListSize(n);
  }
  const size_t payload_len = sealed.size() - h.body_offset - fmt::kTagSize;
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

Status OpenChunkPayload(const ChunkId& id, ByteView sealed, const SecretBytes& key,
                        const evp::HmacSha256& id_hasher, Bytes& payload, SealedChunkHeader& h) {
  ASSIGN_OR_RETURN(h, ParseSealedChunkHeader(sealed));
  const ByteView aad = MakeAad(id, sealed.data(), h.body_offset);
  ByteView body = sealed.subspan(h.body_offset);
  if (h.flags & fmt::kFlagLz4) {
    thread_local Bytes decrypted;
    RETURN_IF_ERROR(evp::AeadOpen(h.suite, key.view(), h.nonce, aad, body, decrypted)
                        .WithContext("chunk " + Hex8(id)));
    payload.resize(h.plain_len);
    const int n = LZ4_decompress_safe(
        reinterpret_cast<const char*>(decrypted.data()), reinterpret_cast<char*>(payload.data()),
        static_cast<int>(decrypted.size()), static_cast<int>(h.plain_len));
    if (n < 0 || static_cast<uint32_t>(n) != h.plain_len) {
      payload.clear();
      return DataLossError("chunk " + Hex8(id) + ": LZ4 payload is damaged");
    }
  } else {
    RETURN_IF_ERROR(evp::AeadOpen(h.suite, key.view(), h.nonce, aad, body, payload)
                        .WithContext("chunk " + Hex8(id)));
  }
  if (!h.is_delta() && id_hasher.Compute(payload) != id) {
    payload.clear();
    return DataLossError("chunk " + Hex8(id) + ": content does not match its id");
  }
  return OkStatus();
}

Status OpenChunk(const ChunkId& id, ByteView sealed, const SecretBytes& key,
                 const evp::HmacSha256& id_hasher, Bytes& plaintext) {
  SealedChunkHeader h;
  RETURN_IF_ERROR(OpenChunkPayload(id, sealed, key, id_hasher, plaintext, h));
  if (h.is_delta()) {
    plaintext.clear();
    return FailedPreconditionError("chunk " + Hex8(id) +
                                   " is stored as a delta of other chunks: read it with its bases");
  }
  return OkStatus();
}

}  // namespace ferry::snapshot
