// libFuzzer target: manifest envelopes (snapshot/manifest.cc: ParseManifest,
// SignManifest). Input format: fuzz_formats.h. In sign mode the target
// wraps the fuzzer's body bytes in an envelope signed with a fixed key, as
// docs/format/manifest.md lays it out, so the protobuf parse and the body
// checks behind the signature see any bytes. Checks, beyond "no crash, no
// UB":
//  - errors are DATA_LOSS naming the manifest ("manifest fuzz: ...");
//  - no allocation is larger than 16 times the envelope plus 64 KiB, or than
//    what protobuf reserves for a claimed string (fuzz_support.h);
//  - an accepted manifest keeps its promises: its id is the BLAKE2b-256 of
//    the envelope, which it keeps as given; the signer is the key in it;
//  - one encoding: a body that is its own canonical serialization, signed
//    by SignManifest, gives the same envelope (Ed25519 is deterministic),
//    and any accepted body signs to an envelope that parses to an equal body;
//  - a signed envelope with any one bit flipped is refused.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <optional>
#include <string>

#include "core/sodium.h"
#include "snapshot/manifest.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

const sodium::SigningKeyPair& Signer() {
  static const sodium::SigningKeyPair key = [] {
    Result<sodium::SigningKeyPair> k = sodium::SigningKeyPairFromSeed(FixedKey(kSigningSeedSalt));
    FUZZ_CHECK(k.ok());
    return std::move(*k);
  }();
  return key;
}

// An envelope around `body` signed by Signer() (docs/format/manifest.md).
Bytes SignBody(ByteView body) {
  Bytes envelope = ToBytes("FMAN");
  PutU8(envelope, 1);  // version
  PutU8(envelope, 1);  // Ed25519
  PutU16(envelope, 0);
  PutU32(envelope, static_cast<uint32_t>(body.size()));
  PutBytes(envelope, body);
  PutBytes(envelope, Signer().public_key);
  static constexpr char kContext[] = "ferry manifest signature v1";  // and its NUL
  Bytes message(kContext, kContext + sizeof(kContext));
  PutBytes(message, envelope);
  PutBytes(envelope, sodium::Sign(Signer(), message));
  return envelope;
}

// Parses `envelope` and checks the result; whether it was accepted.
bool Parse(ByteView envelope) {
  Bytes copy(envelope.begin(), envelope.end());
  std::optional<Result<snapshot::ParsedManifest>> parsed;
  const size_t largest = LargestAllocation::During(
      [&] { parsed.emplace(snapshot::ParseManifest(std::move(copy), "fuzz")); });
  FUZZ_CHECK(largest <= 16 * envelope.size() + (64 << 10));
  Result<snapshot::ParsedManifest>& m = *parsed;
  if (!m.ok()) {
    FUZZ_CHECK(m.status().code() == StatusCode::kDataLoss);
    FUZZ_CHECK(m.status().message().rfind("manifest fuzz: ", 0) == 0);
    return false;
  }
  FUZZ_CHECK(SameBytes(m->envelope, envelope));
  FUZZ_CHECK(m->id == snapshot::SnapshotIdOf(envelope));
  FUZZ_CHECK(std::equal(m->signer.begin(), m->signer.end(), envelope.end() - 96));
  // Signing the body again: SignManifest's envelope parses to an equal body,
  // and is the same envelope when the body was canonical.
  Result<Bytes> resigned = snapshot::SignManifest(m->body, Signer());
  FUZZ_CHECK(resigned.ok());
  Result<snapshot::ParsedManifest> again = snapshot::ParseManifest(*resigned, "resigned");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(again->body, m->body));
  const std::string canonical = m->body.SerializeAsString();
  if (SameBytes(AsBytes(canonical), envelope.subspan(12, envelope.size() - 12 - 96)) &&
      m->signer == Signer().public_key) {
    FUZZ_CHECK(*resigned == m->envelope);
  }
  return true;
}

void Run(uint8_t config, ByteView in) {
  if ((config & kManifestSign) == 0) {
    Parse(in);
    return;
  }
  ByteReader r(in);
  uint16_t flip = 0;
  if (!r.ReadU16(flip)) return;
  Bytes envelope = SignBody(r.Rest());
  Parse(envelope);
  envelope[flip / 8 % envelope.size()] ^= static_cast<uint8_t>(1 << (flip % 8));
  FUZZ_CHECK(!Parse(envelope));
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // invalid UTF-8 in a string field is logged
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ferry::fuzz::Run(data[0], ferry::ByteView(data + 1, size - 1));
  return 0;
}
