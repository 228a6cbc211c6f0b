// libFuzzer target: keyset files (snapshot/keyset.cc: Keyset::Parse, Unlock,
// SerializeTenant, SerializeAgent). Input format: fuzz_formats.h; with the
// fix bit the target rewrites the trailing BLAKE2b-256 first, so the checks
// behind the checksum see any bytes. Checks, beyond "no crash, no UB":
//  - errors are INVALID_ARGUMENT when the file is not a keyset (bad magic,
//    version or kind) and DATA_LOSS otherwise;
//  - an accepted keyset is what the bytes say (docs/format/keyset.md): its
//    kind and size, the tenant public key, the id (BLAKE2b-256 of that key,
//    truncated), the chunk-id key (same ids as an HMAC under those bytes),
//    the signing key from its seed; it is locked;
//  - an agent key file cannot be unlocked (FAILED_PRECONDITION), and
//    SerializeAgent gives a file that parses to the same tenant key and ids;
//  - a tenant keyset with cheap Argon2id parameters unlocks with the seed
//    passphrase or fails with PERMISSION_DENIED / DATA_LOSS; unlocked, it
//    serializes to a keyset with the same keys, and a data key it wraps
//    unwraps again.
#include <algorithm>
#include <memory>
#include <string_view>

#include "core/sodium.h"
#include "snapshot/keyset.h"
#include "snapshot/keyset_format.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

namespace kf = snapshot::keyset_format;
using snapshot::Keyset;

constexpr std::string_view kSample = "a chunk's plaintext";

// Checks that `b` holds the same keys as `a`.
void CheckSameKeys(const Keyset& a, const Keyset& b) {
  FUZZ_CHECK(a.tenant_public_key() == b.tenant_public_key() && a.id() == b.id());
  FUZZ_CHECK(a.ChunkIdOf(AsBytes(kSample)) == b.ChunkIdOf(AsBytes(kSample)));
  FUZZ_CHECK(a.gear_table() == b.gear_table());
}

void CheckTenant(Keyset& ks, ByteView file) {
  const uint64_t ops = LoadU64(file.data() + kf::kOffOpsLimit);
  const uint64_t mem = LoadU64(file.data() + kf::kOffMemLimit);
  if (ops > 2 || mem > (64u << 10)) return;  // too slow to try on every input
  Status unlocked = ks.Unlock(kKeysetPassphrase);
  if (!unlocked.ok()) {
    FUZZ_CHECK(unlocked.code() == StatusCode::kPermissionDenied ||
               unlocked.code() == StatusCode::kDataLoss);
    FUZZ_CHECK(!ks.unlocked());
    return;
  }
  FUZZ_CHECK(ks.unlocked());
  const sodium::Argon2Params cheap{1, 8 << 10};
  Result<Bytes> written = ks.SerializeTenant(kKeysetPassphrase, cheap);
  FUZZ_CHECK(written.ok() && written->size() == kf::kTenantFileSize);
  Result<std::unique_ptr<Keyset>> again = Keyset::Parse(*written, "rewritten");
  FUZZ_CHECK(again.ok() && (*again)->kind() == Keyset::Kind::kTenant);
  FUZZ_CHECK((*again)->Unlock(kKeysetPassphrase).ok());
  CheckSameKeys(ks, **again);
  FUZZ_CHECK((*again)->signing_key().public_key == ks.signing_key().public_key);
  const Keyset::NewDataKey key = ks.MakeDataKey();
  Result<SecretBytes> unwrapped = (*again)->UnwrapDataKey(key.key.id, key.wrapped);
  FUZZ_CHECK(unwrapped.ok() && SameBytes(unwrapped->view(), key.key.key.view()));
}

void Run(uint8_t config, ByteView in) {
  Bytes file(in.begin(), in.end());
  if ((config & kFixChecksum) && file.size() >= kf::kChecksumSize) {
    const size_t body = file.size() - kf::kChecksumSize;
    const sodium::Hash256 sum = sodium::Blake2b256(ByteView(file).first(body));
    std::copy(sum.begin(), sum.end(), file.begin() + static_cast<std::ptrdiff_t>(body));
  }
  Result<std::unique_ptr<Keyset>> parsed = Keyset::Parse(file, "fuzz");
  const bool is_keyset =
      file.size() >= 8 && std::equal(kf::kMagic, kf::kMagic + 4, file.begin()) &&
      file[kf::kOffVersion] == kf::kVersion &&
      (file[kf::kOffKind] == kf::kKindTenant || file[kf::kOffKind] == kf::kKindAgent);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().code() ==
               (is_keyset ? StatusCode::kDataLoss : StatusCode::kInvalidArgument));
    return;
  }
  FUZZ_CHECK(is_keyset);
  Keyset& ks = **parsed;
  const bool tenant = file[kf::kOffKind] == kf::kKindTenant;
  FUZZ_CHECK(ks.kind() == (tenant ? Keyset::Kind::kTenant : Keyset::Kind::kAgent));
  FUZZ_CHECK(file.size() == (tenant ? kf::kTenantFileSize : kf::kAgentFileSize));
  FUZZ_CHECK(!ks.unlocked());
  FUZZ_CHECK(
      SameBytes(ks.tenant_public_key(), ByteView(file).subspan(kf::kOffTenantPublicKey, 32)));
  const sodium::Hash256 digest = sodium::Blake2b256(ks.tenant_public_key());
  FUZZ_CHECK(std::equal(ks.id().begin(), ks.id().end(), digest.begin()));
  const evp::HmacSha256 hmac(ByteView(file).subspan(kf::kOffChunkIdKey, 32));
  FUZZ_CHECK(ks.ChunkIdOf(AsBytes(kSample)) == hmac.Compute(AsBytes(kSample)));
  Result<sodium::SigningKeyPair> signing =
      sodium::SigningKeyPairFromSeed(ByteView(file).subspan(kf::kOffSigningSeed, 32));
  FUZZ_CHECK(signing.ok() && signing->public_key == ks.signing_key().public_key);
  if (tenant) {
    CheckTenant(ks, file);
    return;
  }
  FUZZ_CHECK(ks.Unlock(kKeysetPassphrase).code() == StatusCode::kFailedPrecondition);
  Result<std::unique_ptr<Keyset>> again = Keyset::Parse(ks.SerializeAgent(), "rewritten");
  FUZZ_CHECK(again.ok() && (*again)->kind() == Keyset::Kind::kAgent);
  CheckSameKeys(ks, **again);
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ferry::fuzz::Run(data[0], ferry::ByteView(data + 1, size - 1));
  return 0;
}
