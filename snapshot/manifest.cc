#include "snapshot/manifest.h"
#include "snapshot/wire_check.h"

#include <cstring>

namespace ferry::snapshot {
namespace {

constexpr uint8_t kMagic[4] = {'F', 'M', 'A', 'N'};
constexpr uint8_t kVersion = 1;
constexpr uint8_t kSigEd25519 = 1;
constexpr size_t kHeaderSize = 12;
constexpr size_t kTrailerSize = 32 + 64;
// Domain separation: a manifest signature can never be mistaken for a
// signature over any other Ferry object.
constexpr char kSignatureContext[] = "ferry manifest signature v1";

Bytes SignedMessage(ByteView envelope_without_signature) {
  Bytes msg;
  PutBytes(msg, AsBytes(std::string_view(kSignatureContext, sizeof(kSignatureContext))));
  PutBytes(msg, envelope_without_signature);
  return msg;
}

Status ValidateBody(const pb::Manifest& m, const std::string& origin) {
  auto bad = [&](const std::string& what) {
    return DataLossError("manifest " + origin + ": " + what);
  };
  if (m.format_version() != kManifestFormatVersion) {
    return bad("unsupported format_version " + std::to_string(m.format_version()));
  }
  if (m.keyset_id().size() != 16) return bad("keyset_id must be 16 bytes");
  if (!m.parent().empty() && m.parent().size() != 32) return bad("parent must be 32 bytes");
  if (m.refs().digest().size() != 32) return bad("refs.digest must be 32 bytes");
  if (m.datasets_size() == 0) return bad("no datasets");
  for (const pb::Dataset& d : m.datasets()) {
    if (d.name().empty()) return bad("dataset without a name");
    if (d.kind() == pb::DATASET_KIND_STREAM) {
      if (d.root_size() != 0 || d.has_stats()) {
        return bad("stream dataset '" + d.name() + "' has a root or volume stats");
      }
      if (!d.has_stream() || d.stream().start_offset() > d.stream().end_offset()) {
        return bad("stream dataset '" + d.name() + "' has no valid cut");
      }
      continue;
    }
    if (d.kind() != pb::DATASET_KIND_VOLUME) {
      return bad("dataset '" + d.name() + "' has unknown kind " + std::to_string(d.kind()));
    }
    if (d.has_stream()) return bad("volume dataset '" + d.name() + "' has a stream cut");
    if (d.root_size() == 0) return bad("dataset '" + d.name() + "' has no root");
    for (const pb::ChunkRef& r : d.root()) {
      if (r.id().size() != 32)
        return bad("dataset '" + d.name() + "' root chunk id is not 32 bytes");
      if (r.size() > kMaxChunkSize) return bad("dataset '" + d.name() + "' root chunk too large");
    }
  }
  return OkStatus();
}

}  // namespace

SnapshotId SnapshotIdOf(ByteView envelope) { return sodium::Blake2b256(envelope); }

Result<Bytes> SignManifest(const pb::Manifest& body, const sodium::SigningKeyPair& key) {
  RETURN_IF_ERROR(ValidateBody(body, "(new)"));
  std::string serialized;
  if (!body.SerializeToString(&serialized)) return InternalError("manifest serialization failed");
  if (serialized.size() > kMaxManifestBodySize) {
    return ResourceExhaustedError("manifest body exceeds 4 MiB");
  }
  Bytes out;
  PutBytes(out, ByteView(kMagic, 4));
  PutU8(out, kVersion);
  PutU8(out, kSigEd25519);
  PutU16(out, 0);
  PutU32(out, static_cast<uint32_t>(serialized.size()));
  PutBytes(out, AsBytes(serialized));
  PutBytes(out, key.public_key);
  const sodium::Signature sig = sodium::Sign(key, SignedMessage(out));
  PutBytes(out, sig);
  return out;
}

Result<ParsedManifest> ParseManifest(Bytes envelope, const std::string& origin) {
  auto bad = [&](const std::string& what) {
    return DataLossError("manifest " + origin + ": " + what);
  };
  if (envelope.size() < kHeaderSize + kTrailerSize) return bad("too short");
  if (std::memcmp(envelope.data(), kMagic, 4) != 0) return bad("bad magic");
  if (envelope[4] != kVersion) return bad("unsupported version " + std::to_string(envelope[4]));
  if (envelope[5] != kSigEd25519) {
    return bad("unknown signature algorithm " + std::to_string(envelope[5]));
  }
  if (envelope[6] != 0 || envelope[7] != 0) return bad("reserved bytes set");
  const uint32_t body_len = LoadU32(envelope.data() + 8);
  if (body_len > kMaxManifestBodySize || envelope.size() != kHeaderSize + body_len + kTrailerSize) {
    return bad("body length " + std::to_string(body_len) + " does not match the envelope");
  }
  ParsedManifest m;
  const size_t signer_off = kHeaderSize + body_len;
  std::copy_n(envelope.begin() + static_cast<std::ptrdiff_t>(signer_off), 32, m.signer.begin());
  sodium::Signature sig;
  std::copy_n(envelope.begin() + static_cast<std::ptrdiff_t>(signer_off + 32), 64, sig.begin());
  if (!sodium::VerifySignature(m.signer, SignedMessage(ByteView(envelope.data(), signer_off + 32)),
                               sig)) {
    return bad("signature does not verify");
  }
  const ByteView body(envelope.data() + kHeaderSize, body_len);
  if (Status s = CheckWireLengths(body, *pb::Manifest::descriptor()); !s.ok()) {
    return bad("body is not a valid protobuf Manifest: " + s.message());
  }
  if (!m.body.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return bad("body is not a valid protobuf Manifest");
  }
  RETURN_IF_ERROR(ValidateBody(m.body, origin));
  m.id = SnapshotIdOf(envelope);
  m.envelope = std::move(envelope);
  return m;
}

}  // namespace ferry::snapshot
