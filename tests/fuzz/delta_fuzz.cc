// libFuzzer target: delta chunks (snapshot/delta.cc: Parse, Apply, and
// behind them ComputeSignature, BaseIndex, Encode).
//
// Input (small inputs describe large bases, so that blocks of 2 KiB exist):
//   byte 0   mode: bit 0 set = encode mode, else payload mode.
//   byte 1   k, the number of base plaintexts (mod 17: 0..16).
//   k bases  { u16 LE size | u16 LE literal count m | min(m, size) bytes }:
//            the base is those bytes, then BaseFiller(base index) up to size.
//   payload mode: the rest is a delta payload, applied to the bases in order.
//   encode mode: the rest is an edit script building a plaintext (at most
//            256 KiB): repeated { u8 tag: even = copy { u8 base | u16 LE
//            offset | u16 LE length } (clamped into the base); odd = literal
//            { u8 n | n bytes } }. The plaintext is encoded against the bases'
//            signatures (fixed chunk-id key).
//
// Checks, beyond "no crash, no UB, no leak":
//  - Parse and Apply fail only with DATA_LOSS; a failed Apply leaves `out`
//    empty;
//  - Parse allocates at most 6 times the payload (plus 64 KiB): the op count
//    is checked against the bytes left before anything is reserved;
//  - a parsed payload is exactly the bytes of its fields (one encoding), its
//    op lengths sum to its size (<= kMaxChunkSize), base indexes are in range;
//  - Apply succeeds exactly when the base count is right and every copy lies
//    inside its base, and then gives exactly `size` bytes, the ops' bytes in
//    order;
//  - encode mode: a payload Encode returns is smaller than the plaintext, uses
//    at most kMaxBases bases, parses, and applies to exactly the plaintext.
#include <algorithm>
#include <map>
#include <optional>
#include <vector>

#include "snapshot/delta.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

namespace delta = snapshot::delta;
using snapshot::ChunkId;

constexpr size_t kMaxPlaintext = 256 << 10;

const evp::HmacSha256& IdHasher() {
  static const evp::HmacSha256 hasher(FixedKey(kChunkIdKeySalt));
  return hasher;
}

const delta::BlockHasher& Hasher() {
  static const delta::BlockHasher hasher(IdHasher());
  return hasher;
}

// Deterministic, non-repeating bytes (a repeating filler would make every
// block of a base the same).
void AppendBaseFiller(Bytes& out, size_t base, size_t to) {
  uint64_t x = 0x9E3779B97F4A7C15ull * (base + 1) + out.size();
  while (out.size() < to) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out.push_back(static_cast<uint8_t>(x >> 56));
  }
}

std::vector<Bytes> ReadBases(ByteReader& r) {
  uint8_t k = 0;
  if (!r.ReadU8(k)) return {};
  std::vector<Bytes> bases(k % (delta::kMaxBases + 1));
  for (size_t i = 0; i < bases.size(); ++i) {
    uint16_t size = 0, literal = 0;
    ByteView bytes;
    if (r.ReadU16(size) && r.ReadU16(literal)) {
      if (!r.ReadView(std::min<size_t>({literal, size, r.remaining()}), bytes)) bytes = {};
    }
    bases[i].assign(bytes.begin(), bytes.end());
    AppendBaseFiller(bases[i], i, size);
  }
  return bases;
}

// The payload bytes of a parsed delta, field by field (docs/format/delta.md),
// written again from the spec rather than with the encoder's code: a second
// writer is what makes "Parse is the inverse of writing" a check.
Bytes Serialize(const delta::ParsedDelta& d) {
  Bytes out;
  PutU8(out, delta::kPayloadVersion);
  PutU8(out, static_cast<uint8_t>(d.bases.size()));
  for (const ChunkId& id : d.bases) PutBytes(out, id);
  PutU32(out, d.size);
  PutU32(out, static_cast<uint32_t>(d.ops.size()));
  for (const delta::Op& op : d.ops) {
    PutU8(out, static_cast<uint8_t>(op.kind));
    if (op.kind == delta::Op::Kind::kCopy) {
      PutU8(out, op.base);
      PutU32(out, op.offset);
      PutU32(out, op.length);
    } else {
      PutU32(out, op.length);
      PutBytes(out, op.literal);
    }
  }
  return out;
}

void PayloadMode(ByteView payload, const std::vector<Bytes>& base_bytes) {
  Result<delta::ParsedDelta> parsed = InternalError("not parsed");
  const size_t largest = LargestAllocation::During([&] { parsed = delta::Parse(payload); });
  FUZZ_CHECK(largest <= 6 * payload.size() + (64 << 10));
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().code() == StatusCode::kDataLoss);
    return;
  }
  const delta::ParsedDelta& d = *parsed;
  FUZZ_CHECK(!d.bases.empty() && d.bases.size() <= delta::kMaxBases);
  FUZZ_CHECK(d.size <= snapshot::kMaxChunkSize);
  FUZZ_CHECK(SameBytes(Serialize(d), payload));

  std::vector<ByteView> bases(base_bytes.begin(), base_bytes.end());
  if (bases.size() > d.bases.size()) bases.resize(d.bases.size());
  bool should_apply = bases.size() == d.bases.size();
  uint64_t total = 0;
  for (const delta::Op& op : d.ops) {
    FUZZ_CHECK(op.length > 0);
    total += op.length;
    if (op.kind == delta::Op::Kind::kCopy) {
      FUZZ_CHECK(op.base < d.bases.size());
      if (should_apply && uint64_t{op.offset} + op.length > bases[op.base].size()) {
        should_apply = false;
      }
    } else {
      FUZZ_CHECK(op.literal.size() == op.length);
    }
  }
  FUZZ_CHECK(total == d.size);

  Bytes out = ToBytes("stale");
  const Status applied = delta::Apply(d, bases, out);
  FUZZ_CHECK(applied.ok() == should_apply);
  if (!applied.ok()) {
    FUZZ_CHECK(applied.code() == StatusCode::kDataLoss);
    FUZZ_CHECK(out.empty());
    return;
  }
  FUZZ_CHECK(out.size() == d.size);
  size_t at = 0;
  for (const delta::Op& op : d.ops) {
    const ByteView want = op.kind == delta::Op::Kind::kCopy
                              ? ByteView(bases[op.base]).subspan(op.offset, op.length)
                              : op.literal;
    FUZZ_CHECK(SameBytes(ByteView(out).subspan(at, op.length), want));
    at += op.length;
  }
}

void EncodeMode(ByteReader& r, const std::vector<Bytes>& bases) {
  Bytes plain;
  while (!r.empty() && plain.size() < kMaxPlaintext) {
    uint8_t tag = 0;
    FUZZ_CHECK(r.ReadU8(tag));
    if (tag % 2 == 0) {
      uint8_t base = 0;
      uint16_t offset = 0, length = 0;
      if (!r.ReadU8(base) || !r.ReadU16(offset) || !r.ReadU16(length)) break;
      if (bases.empty()) continue;
      const Bytes& b = bases[base % bases.size()];
      const size_t from = std::min<size_t>(offset, b.size());
      const size_t n = std::min<size_t>(length, b.size() - from);
      plain.insert(plain.end(), b.begin() + static_cast<ptrdiff_t>(from),
                   b.begin() + static_cast<ptrdiff_t>(from + n));
    } else {
      uint8_t n = 0;
      ByteView bytes;
      if (!r.ReadU8(n) || !r.ReadView(std::min<size_t>(n, r.remaining()), bytes)) break;
      PutBytes(plain, bytes);
    }
  }
  if (plain.size() > kMaxPlaintext) plain.resize(kMaxPlaintext);

  delta::BaseIndex index;
  std::map<ChunkId, ByteView> by_id;
  for (const Bytes& b : bases) {
    const ChunkId id = IdHasher().Compute(b);
    const Bytes signature = delta::ComputeSignature(Hasher(), b);
    FUZZ_CHECK(delta::CheckSignature(signature).ok());
    FUZZ_CHECK(signature.size() == delta::SignatureSize(static_cast<uint32_t>(b.size())));
    FUZZ_CHECK(index.Add(id, signature).ok());
    by_id[id] = b;
  }
  FUZZ_CHECK(index.bases() == by_id.size());
  const std::optional<delta::Encoded> e = delta::Encode(Hasher(), index, plain, plain.size());
  if (!e) return;
  FUZZ_CHECK(e->payload.size() < plain.size());
  FUZZ_CHECK(!e->bases.empty() && e->bases.size() <= delta::kMaxBases);
  FUZZ_CHECK(e->copied > 0 && e->copied <= plain.size());
  Result<delta::ParsedDelta> d = delta::Parse(e->payload);
  FUZZ_CHECK(d.ok());
  FUZZ_CHECK(d->bases == e->bases);
  std::vector<ByteView> used;
  for (const ChunkId& id : d->bases) {
    FUZZ_CHECK(by_id.count(id) == 1);
    used.push_back(by_id[id]);
  }
  Bytes out;
  FUZZ_CHECK(delta::Apply(*d, used, out).ok());
  FUZZ_CHECK(SameBytes(out, plain));
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ferry::fuzz;
  if (size == 0) return 0;
  ferry::ByteReader r(ferry::ByteView(data + 1, size - 1));
  const std::vector<ferry::Bytes> bases = ReadBases(r);
  if (data[0] & 1) {
    EncodeMode(r, bases);
  } else {
    PayloadMode(r.Rest(), bases);
  }
  return 0;
}
