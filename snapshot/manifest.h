// Manifests: the signed root of a snapshot. Format: docs/format/manifest.md.
//
// A manifest envelope carries a protobuf ferry.snapshot.v1.Manifest, the
// signer's Ed25519 public key and a signature. The snapshot id is the
// BLAKE2b-256 of the whole envelope.
//
// Errors from ParseManifest: kDataLoss for damaged or forged bytes (bad magic,
// sizes, signature, protobuf, missing fields), naming what is wrong.
// Thread-safety: functions are thread-safe.
#pragma once

#include <string>

#include "core/sodium.h"
#include "proto/snapshot.pb.h"
#include "snapshot/types.h"

namespace ferry::snapshot {

namespace pb = ::ferry::snapshot::v1;

inline constexpr uint32_t kManifestFormatVersion = 1;
inline constexpr size_t kMaxManifestBodySize = 4u << 20;

struct ParsedManifest {
  SnapshotId id{};
  Bytes envelope;
  pb::Manifest body;
  sodium::PublicKey signer{};
};

// Builds and signs an envelope around `body`.
Result<Bytes> SignManifest(const pb::Manifest& body, const sodium::SigningKeyPair& key);

// Checks magic, bounds, the signature, and the body's required fields.
Result<ParsedManifest> ParseManifest(Bytes envelope, const std::string& origin);

SnapshotId SnapshotIdOf(ByteView envelope);

}  // namespace ferry::snapshot
