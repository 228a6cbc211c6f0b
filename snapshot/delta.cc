#include "snapshot/delta.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace ferry::snapshot::delta {

namespace {

// docs/format/delta.md.
constexpr std::string_view kBlockKeyLabel = "ferry delta block v1";
constexpr std::string_view kDeltaIdKeyLabel = "ferry delta id v1";
constexpr uint8_t kLog2BlockSize = 11;
static_assert(uint32_t{1} << kLog2BlockSize == kBlockSize);
constexpr size_t kSignatureHeaderSize = 8;
constexpr size_t kSignatureEntrySize = 4 + kStrongSize;
constexpr uint8_t kOpCopy = static_cast<uint8_t>(Op::Kind::kCopy);
constexpr uint8_t kOpLiteral = static_cast<uint8_t>(Op::Kind::kLiteral);
constexpr size_t kCopyOpSize = 1 + 1 + 4 + 4;
constexpr size_t kLiteralOpHeaderSize = 1 + 4;
// The smallest op (a literal of one byte): bounds the op count by the bytes left.
constexpr size_t kMinOpSize = kLiteralOpHeaderSize + 1;
constexpr size_t kPayloadFixedSize = 1 + 1 + 4 + 4;
// Distinct blocks kept per weak checksum: weak collisions are easy to make,
// so a hostile file could otherwise make lookups quadratic.
constexpr uint32_t kMaxCandidatesPerWeak = 64;
constexpr uint32_t kNone = UINT32_MAX;

[[noreturn]] void Fatal(const char* what) {
  std::fprintf(stderr, "fatal: delta: %s\n", what);
  std::abort();
}

// The sums of WeakChecksum over p[0 .. n), mod 2^32: a = sum of x_i,
// b = sum of (n - i) * x_i.
void WeakSums(const uint8_t* p, size_t n, uint32_t& a_out, uint32_t& b_out) {
  uint32_t a = 0;
  uint32_t b = 0;
  size_t i = 0;
#if defined(__SSE2__)
  // 16 bytes a step, as SIMD Adler-32 does. Over m = 16·C bytes,
  // b = sum over steps c of 16·(C-1-c)·S_c + sum of (16 - k)·x_k within each
  // step, S_c being the step's byte sum: psadbw gives S_c, pmaddwd the
  // weighing within the step, and adding the sum of the steps so far after
  // each step gives the first term (the step c is counted C-1-c times).
  if (n >= 16) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i low_weights = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
    const __m128i high_weights = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
    __m128i sums = zero;        // 2 x u64: the bytes so far
    __m128i step_sums = zero;   // 2 x u64: sum over steps of `sums` before it
    __m128i place_sums = zero;  // 4 x u32: bytes weighed by their place in their step
    for (; i + 16 <= n; i += 16) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
      step_sums = _mm_add_epi64(step_sums, sums);
      sums = _mm_add_epi64(sums, _mm_sad_epu8(x, zero));
      place_sums =
          _mm_add_epi32(place_sums, _mm_madd_epi16(_mm_unpacklo_epi8(x, zero), low_weights));
      place_sums =
          _mm_add_epi32(place_sums, _mm_madd_epi16(_mm_unpackhi_epi8(x, zero), high_weights));
    }
    alignas(16) uint64_t s64[2];
    alignas(16) uint64_t t64[2];
    alignas(16) uint32_t w32[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(s64), sums);
    _mm_store_si128(reinterpret_cast<__m128i*>(t64), step_sums);
    _mm_store_si128(reinterpret_cast<__m128i*>(w32), place_sums);
    a = static_cast<uint32_t>(s64[0] + s64[1]);
    b = static_cast<uint32_t>(16 * (t64[0] + t64[1])) + w32[0] + w32[1] + w32[2] + w32[3];
    // Byte j of those m (= i) was weighed m - j; its weight is n - j.
    b += static_cast<uint32_t>(n - i) * a;
  }
#endif
  for (; i < n; ++i) {
    a += p[i];
    b += static_cast<uint32_t>(n - i) * p[i];
  }
  a_out = a;
  b_out = b;
}

// The rolling state of WeakChecksum over a window of kBlockSize bytes. The
// sums are kept mod 2^32 and cut to 16 bits on output: 2^16 divides 2^32, so
// the result is the same as summing mod 2^16.
struct Rolling {
  uint32_t a = 0;
  uint32_t b = 0;

  void Reset(const uint8_t* p, size_t n) {
    uint32_t sum = 0;
    uint32_t weighted = 0;
    WeakSums(p, n, sum, weighted);  // through locals: keeps a and b in registers
    a = sum;
    b = weighted;
  }
  // Slides the window one byte: `out` leaves at the front, `in` enters at the back.
  void Roll(uint8_t out, uint8_t in, uint32_t n) {
    a += static_cast<uint32_t>(in) - out;
    b += a - n * out;
  }
  uint32_t value() const { return (a & 0xffff) | ((b & 0xffff) << 16); }
};

EVP_MAC* FetchedHmac() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) Fatal("HMAC unavailable");
  return mac;
}

}  // namespace

void BlockHasher::MacCtxFree::operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }

// The bulk paths' view of a BlockHasher's OpenSSL context.
struct HasherAccess {
  static const EVP_MAC_CTX* Keyed(const BlockHasher& h) { return h.keyed_.get(); }
};

namespace {

// HMAC-SHA-256 under the block key, for many blocks in a row: one context,
// duplicated from the hasher's keyed one, re-initialised per block with the
// key it already holds (EVP_MAC_init with a null key keeps the key).
// Gives the same bytes as BlockHasher::Strong (tests check it).
class BlockMac {
 public:
  explicit BlockMac(const BlockHasher& hasher)
      : ctx_(EVP_MAC_CTX_dup(HasherAccess::Keyed(hasher))) {
    if (ctx_ == nullptr) Fatal("EVP_MAC_CTX_dup");
  }
  ~BlockMac() { EVP_MAC_CTX_free(ctx_); }
  BlockMac(const BlockMac&) = delete;
  BlockMac& operator=(const BlockMac&) = delete;

  void Strong(const uint8_t* block, size_t n, uint8_t* out16) {
    std::array<uint8_t, 32> digest;
    size_t len = 0;
    if (EVP_MAC_init(ctx_, nullptr, 0, nullptr) != 1 || EVP_MAC_update(ctx_, block, n) != 1 ||
        EVP_MAC_final(ctx_, digest.data(), &len, digest.size()) != 1 || len != digest.size()) {
      Fatal("HMAC-SHA-256 failed");
    }
    std::copy_n(digest.begin(), kStrongSize, out16);
  }
  StrongHash Strong(const uint8_t* block, size_t n) {
    StrongHash out;
    Strong(block, n, out.data());
    return out;
  }

 private:
  EVP_MAC_CTX* ctx_;
};

}  // namespace

BlockHasher::BlockHasher(const evp::HmacSha256& chunk_id_hasher) {
  evp::Digest256 id_key = chunk_id_hasher.Compute(AsBytes(kDeltaIdKeyLabel));
  id_hmac_ = std::make_unique<evp::HmacSha256>(id_key);
  sodium_memzero(id_key.data(), id_key.size());
  evp::Digest256 key = chunk_id_hasher.Compute(AsBytes(kBlockKeyLabel));
  hmac_ = std::make_unique<evp::HmacSha256>(key);
  keyed_.reset(EVP_MAC_CTX_new(FetchedHmac()));
  if (keyed_ == nullptr) Fatal("EVP_MAC_CTX_new");
  char digest_name[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  const int ok = EVP_MAC_init(keyed_.get(), key.data(), key.size(), params);
  sodium_memzero(key.data(), key.size());
  if (ok != 1) Fatal("HMAC-SHA-256 init");
}

StrongHash BlockHasher::Strong(ByteView block) const {
  const evp::Digest256 digest = hmac_->Compute(block);
  StrongHash out;
  std::copy_n(digest.begin(), kStrongSize, out.begin());
  return out;
}

ChunkId BlockHasher::DeltaId(ByteView payload) const { return id_hmac_->Compute(payload); }

uint32_t WeakChecksum(ByteView block) {
  Rolling r;
  r.Reset(block.data(), block.size());
  return r.value();
}

// ---- Signatures -------------------------------------------------------------

size_t SignatureSize(uint32_t plain_size) {
  return kSignatureHeaderSize + size_t{plain_size / kBlockSize} * kSignatureEntrySize;
}

Bytes ComputeSignature(const BlockHasher& hasher, ByteView plaintext) {
  // A precondition (chunks never exceed the limit): a signature must stay checkable.
  if (plaintext.size() > kMaxChunkSize) Fatal("ComputeSignature: plaintext over kMaxChunkSize");
  const auto plain_size = static_cast<uint32_t>(plaintext.size());
  Bytes out(SignatureSize(plain_size));
  out[0] = kSignatureVersion;
  out[1] = kLog2BlockSize;
  out[2] = 0;
  out[3] = 0;
  StoreU32(out.data() + 4, plain_size);
  const size_t blocks = plain_size / kBlockSize;
  if (blocks == 0) return out;
  BlockMac mac(hasher);
  uint8_t* entry = out.data() + kSignatureHeaderSize;
  for (size_t i = 0; i < blocks; ++i, entry += kSignatureEntrySize) {
    const uint8_t* block = plaintext.data() + i * kBlockSize;
    Rolling r;
    r.Reset(block, kBlockSize);
    StoreU32(entry, r.value());
    mac.Strong(block, kBlockSize, entry + 4);
  }
  return out;
}

Status CheckSignature(ByteView signature) {
  if (signature.size() < kSignatureHeaderSize) {
    return DataLossError("delta signature is " + std::to_string(signature.size()) +
                         " bytes, shorter than its 8-byte header");
  }
  if (signature[0] != kSignatureVersion) {
    return DataLossError("delta signature has unknown version " + std::to_string(signature[0]));
  }
  if (signature[1] != kLog2BlockSize) {
    return DataLossError("delta signature has block size 2^" + std::to_string(signature[1]) +
                         ", expected 2^" + std::to_string(kLog2BlockSize));
  }
  if (signature[2] != 0 || signature[3] != 0) {
    return DataLossError("delta signature has reserved bytes set");
  }
  const uint32_t plain_size = LoadU32(signature.data() + 4);
  if (plain_size > kMaxChunkSize) {
    return DataLossError("delta signature claims " + std::to_string(plain_size) +
                         " plaintext bytes, over the limit");
  }
  if (signature.size() != SignatureSize(plain_size)) {
    return DataLossError("delta signature is " + std::to_string(signature.size()) +
                         " bytes, expected " + std::to_string(SignatureSize(plain_size)) + " for " +
                         std::to_string(plain_size) + " plaintext bytes");
  }
  return OkStatus();
}

// ---- BaseIndex --------------------------------------------------------------

// Every block of every base, in the order added (so the blocks of base b are
// blocks_[first[b] .. first[b] + count[b]) and a copy's continuation is one
// index away), plus an open-addressing table from weak checksum to a chain of
// blocks with that checksum and distinct strong hashes. Identical blocks are
// listed once in the chains (any copy of them will do), and only the first
// kMaxCandidatesPerWeak distinct ones per checksum.
struct BaseIndex::Impl {
  struct Block {
    uint32_t weak;
    uint32_t base;
    uint32_t offset;  // in the base's plaintext
    uint32_t next;    // next block in this weak checksum's chain, or kNone
    StrongHash strong;
  };
  struct Slot {
    uint32_t weak;
    uint32_t head;  // first block of the chain; kNone = empty slot
    uint32_t length;
  };
  struct Base {
    ChunkId id;
    uint32_t first;
    uint32_t count;
  };

  std::vector<Block> blocks;
  std::vector<Base> bases;
  std::unordered_set<ChunkId, ArrayHash> ids;
  std::vector<Slot> slots;  // 2^slot_bits slots, at most a quarter used
  int slot_bits = 0;
  size_t used_slots = 0;

  // Fibonacci hashing (the top bits of the product): the weak value is far
  // from uniform (a is a sum of 2048 bytes, so it clusters).
  size_t Hash(uint32_t weak) const {
    return static_cast<size_t>((uint64_t{weak} * 0x9E3779B97F4A7C15ull) >> (64 - slot_bits));
  }

  // Most lookups are misses (one per byte where nothing matches): a bit per
  // 2^filter_bits hash value (16 bits a slot, so 64 a weak value or more:
  // under 2% false positives) answers most of them from a few KiB, without
  // the branch mispredictions of a probe sequence.
  std::vector<uint64_t> filter;
  int filter_bits = 0;

  size_t FilterBit(uint32_t weak) const {
    return static_cast<size_t>((uint64_t{weak} * 0xD6E8FEB86659FD93ull) >> (64 - filter_bits));
  }
  void SetFilter(uint32_t weak) {
    const size_t bit = FilterBit(weak);
    filter[bit / 64] |= uint64_t{1} << (bit % 64);
  }

  bool MayContain(uint32_t weak) const {
    const size_t bit = FilterBit(weak);
    return (filter[bit / 64] >> (bit % 64) & 1) != 0;
  }

  const Slot* Find(uint32_t weak) const {
    if (slots.empty() || !MayContain(weak)) return nullptr;
    const size_t mask = slots.size() - 1;
    for (size_t i = Hash(weak);; i = (i + 1) & mask) {
      const Slot& s = slots[i];
      if (s.head == kNone) return nullptr;
      if (s.weak == weak) return &s;
    }
  }

  Slot& FindOrInsert(uint32_t weak) {
    if ((used_slots + 1) * 4 > slots.size()) Grow();
    const size_t mask = slots.size() - 1;
    for (size_t i = Hash(weak);; i = (i + 1) & mask) {
      Slot& s = slots[i];
      if (s.head == kNone) {
        s.weak = weak;
        ++used_slots;
        SetFilter(weak);
        return s;
      }
      if (s.weak == weak) return s;
    }
  }

  void Grow() {
    std::vector<Slot> old = std::move(slots);
    slot_bits = old.empty() ? 7 : slot_bits + 1;
    slots.assign(size_t{1} << slot_bits, Slot{0, kNone, 0});
    filter_bits = std::max(16, slot_bits + 4);
    filter.assign((size_t{1} << filter_bits) / 64, 0);
    const size_t mask = slots.size() - 1;
    for (const Slot& s : old) {
      if (s.head == kNone) continue;
      size_t i = Hash(s.weak);
      while (slots[i].head != kNone) i = (i + 1) & mask;
      slots[i] = s;
      SetFilter(s.weak);
    }
  }

  void Link(uint32_t block_index) {
    Block& block = blocks[block_index];
    Slot& slot = FindOrInsert(block.weak);
    if (slot.head == kNone) {
      slot.head = block_index;
      slot.length = 1;
      return;
    }
    if (slot.length >= kMaxCandidatesPerWeak) return;
    // Append at the tail so that earlier bases are tried first.
    uint32_t i = slot.head;
    while (true) {
      if (blocks[i].strong == block.strong) return;  // identical block already listed
      if (blocks[i].next == kNone) break;
      i = blocks[i].next;
    }
    blocks[i].next = block_index;
    ++slot.length;
  }
};

BaseIndex::BaseIndex() : impl_(std::make_unique<Impl>()) {}
BaseIndex::~BaseIndex() = default;
BaseIndex::BaseIndex(BaseIndex&&) noexcept = default;
BaseIndex& BaseIndex::operator=(BaseIndex&&) noexcept = default;

Status BaseIndex::Add(const ChunkId& id, ByteView signature) {
  RETURN_IF_ERROR(CheckSignature(signature));
  if (impl_ == nullptr) impl_ = std::make_unique<Impl>();  // a moved-from index
  if (impl_->ids.count(id) != 0) return OkStatus();
  const uint32_t plain_size = LoadU32(signature.data() + 4);
  const uint32_t count = plain_size / kBlockSize;
  if (impl_->blocks.size() + count >= kNone) {
    return ResourceExhaustedError("delta base index is full");
  }
  const auto base = static_cast<uint32_t>(impl_->bases.size());
  const auto first = static_cast<uint32_t>(impl_->blocks.size());
  impl_->ids.insert(id);
  impl_->bases.push_back({id, first, count});
  impl_->blocks.reserve(first + count);
  const uint8_t* entry = signature.data() + kSignatureHeaderSize;
  for (uint32_t i = 0; i < count; ++i, entry += kSignatureEntrySize) {
    Impl::Block block;
    block.weak = LoadU32(entry);
    block.base = base;
    block.offset = i * kBlockSize;
    block.next = kNone;
    std::copy_n(entry + 4, kStrongSize, block.strong.begin());
    impl_->blocks.push_back(block);
    impl_->Link(first + i);
  }
  return OkStatus();
}

bool BaseIndex::empty() const { return bases() == 0; }
size_t BaseIndex::bases() const { return impl_ == nullptr ? 0 : impl_->bases.size(); }

struct IndexAccess {
  using Impl = BaseIndex::Impl;
  static const Impl* Get(const BaseIndex& index) { return index.impl_.get(); }
};

// ---- Encode -----------------------------------------------------------------

namespace {

using Index = IndexAccess::Impl;

// Builds the op list of Encode and its payload size as it goes.
class DeltaBuilder {
 public:
  explicit DeltaBuilder(const Index& index) : index_(index) {
    slot_of_base_.assign(index.bases.size(), kNone);
  }

  // The payload slot of index base `base`, or kNone if using it would make
  // more than kMaxBases.
  uint32_t SlotFor(uint32_t base) const {
    const uint32_t slot = slot_of_base_[base];
    if (slot != kNone || used_.size() >= kMaxBases) return slot;
    return static_cast<uint32_t>(used_.size());
  }
  bool Uses(uint32_t base) const { return slot_of_base_[base] != kNone; }

  // The block a copy continuing the previous op would need next, or kNone.
  uint32_t ContinuationBlock() const {
    if (ops_.empty() || ops_.back().kind != Op::Kind::kCopy) return kNone;
    const Op& last = ops_.back();
    const Index::Base& base = index_.bases[used_[last.base]];
    const uint64_t end = uint64_t{last.offset} + last.length;
    if (end % kBlockSize != 0 || end / kBlockSize >= base.count) return kNone;
    return base.first + static_cast<uint32_t>(end / kBlockSize);
  }

  void Literal(ByteView bytes) {
    if (bytes.empty()) return;
    Op op;
    op.kind = Op::Kind::kLiteral;
    op.length = static_cast<uint32_t>(bytes.size());
    op.literal = bytes;
    ops_.push_back(op);
    size_ += kLiteralOpHeaderSize + bytes.size();
  }

  void Copy(uint32_t base, uint32_t offset, uint32_t length) {
    uint32_t slot = slot_of_base_[base];
    if (slot == kNone) {
      slot = static_cast<uint32_t>(used_.size());
      slot_of_base_[base] = slot;
      used_.push_back(base);
      size_ += sizeof(ChunkId);
    }
    copied_ += length;
    if (!ops_.empty()) {
      Op& last = ops_.back();
      if (last.kind == Op::Kind::kCopy && last.base == slot &&
          uint64_t{last.offset} + last.length == offset) {
        last.length += length;
        return;
      }
    }
    Op op;
    op.kind = Op::Kind::kCopy;
    op.base = static_cast<uint8_t>(slot);
    op.offset = offset;
    op.length = length;
    ops_.push_back(op);
    size_ += kCopyOpSize;
  }

  size_t payload_size() const { return kPayloadFixedSize + size_; }
  uint64_t copied() const { return copied_; }

  Encoded Finish(uint32_t plain_size) const {
    Encoded e;
    e.copied = copied_;
    e.bases.reserve(used_.size());
    for (uint32_t b : used_) e.bases.push_back(index_.bases[b].id);
    Bytes& out = e.payload;
    out.reserve(payload_size());
    PutU8(out, kPayloadVersion);
    PutU8(out, static_cast<uint8_t>(used_.size()));
    for (const ChunkId& id : e.bases) PutBytes(out, id);
    PutU32(out, plain_size);
    PutU32(out, static_cast<uint32_t>(ops_.size()));
    for (const Op& op : ops_) {
      PutU8(out, static_cast<uint8_t>(op.kind));
      if (op.kind == Op::Kind::kCopy) {
        PutU8(out, op.base);
        PutU32(out, op.offset);
        PutU32(out, op.length);
      } else {
        PutU32(out, op.length);
        PutBytes(out, op.literal);
      }
    }
    return e;
  }

 private:
  const Index& index_;
  std::vector<uint32_t> slot_of_base_;  // index base -> payload slot, or kNone
  std::vector<uint32_t> used_;          // payload slot -> index base
  std::vector<Op> ops_;
  size_t size_ = 0;  // payload bytes after the fixed fields
  uint64_t copied_ = 0;
};

}  // namespace

namespace {

enum class Scan { kCandidate, kEnd, kOverBudget };

// Slides the window from `pos` until the index may hold its weak checksum
// (kCandidate), the window is the last one (kEnd), or `pos` reaches
// `budget_pos` (kOverBudget). The loop every unmatched byte goes through:
// the sums stay in registers, a miss costs a roll and one filter bit.
Scan ScanForCandidate(const Index& index, const uint8_t* p, size_t last, size_t budget_pos,
                      size_t& pos, Rolling& rolling) {
  uint32_t a = rolling.a;
  uint32_t b = rolling.b;
  size_t at = pos;
  Scan result = Scan::kCandidate;
  while (!index.MayContain((a & 0xffff) | (b << 16))) {
    if (at == last) {
      result = Scan::kEnd;
      break;
    }
    if (at >= budget_pos) {
      result = Scan::kOverBudget;
      break;
    }
    const uint32_t out = p[at];
    a += static_cast<uint32_t>(p[at + kBlockSize]) - out;
    b += a - kBlockSize * out;
    ++at;
  }
  pos = at;
  rolling.a = a;
  rolling.b = b;
  return result;
}

}  // namespace

std::optional<Encoded> Encode(const BlockHasher& hasher, const BaseIndex& index, ByteView plaintext,
                              size_t max_payload) {
  const Index* impl = IndexAccess::Get(index);
  if (impl == nullptr || impl->blocks.empty() || plaintext.size() < kBlockSize ||
      plaintext.size() > kMaxChunkSize) {
    return std::nullopt;
  }
  const uint8_t* p = plaintext.data();
  const size_t n = plaintext.size();
  const size_t last = n - kBlockSize;  // where the last window starts
  DeltaBuilder builder(*impl);
  BlockMac mac(hasher);
  size_t literal_start = 0;  // first byte not yet in an op
  size_t literal_bytes = 0;  // literal bytes in ops so far
  size_t pos = 0;            // start of the window
  // Give up once the literals alone reach the budget: at this window start.
  const auto budget_pos = [&] {
    return max_payload > literal_bytes ? literal_start + (max_payload - literal_bytes)
                                       : literal_start;
  };
  Rolling rolling;
  rolling.Reset(p, kBlockSize);
  while (true) {
    const Scan scan = ScanForCandidate(*impl, p, last, budget_pos(), pos, rolling);
    if (scan == Scan::kOverBudget) return std::nullopt;
    // Is the window [pos, pos + kBlockSize) a block of a base?
    uint32_t match = kNone;
    const Index::Slot* slot = scan == Scan::kCandidate ? impl->Find(rolling.value()) : nullptr;
    if (slot != nullptr) {
      const StrongHash strong = mac.Strong(p + pos, kBlockSize);
      const uint32_t next = builder.ContinuationBlock();
      if (next != kNone && impl->blocks[next].weak == slot->weak &&
          impl->blocks[next].strong == strong) {
        match = next;
      } else {
        // The chain holds distinct strong hashes, except that the block
        // continuing a copy may be an identical block of another base.
        for (uint32_t i = slot->head; i != kNone; i = impl->blocks[i].next) {
          const Index::Block& block = impl->blocks[i];
          if (block.strong != strong) continue;
          if (builder.SlotFor(block.base) != kNone) match = i;
          break;
        }
      }
    }
    if (match != kNone) {
      const Index::Block& block = impl->blocks[match];
      builder.Literal(plaintext.subspan(literal_start, pos - literal_start));
      literal_bytes += pos - literal_start;
      builder.Copy(block.base, block.offset, kBlockSize);
      pos += kBlockSize;
      literal_start = pos;
      if (pos > last) break;
      rolling.Reset(p + pos, kBlockSize);
      continue;
    }
    if (pos == last) break;
    if (pos >= budget_pos()) return std::nullopt;
    rolling.Roll(p[pos], p[pos + kBlockSize], kBlockSize);
    ++pos;
  }
  builder.Literal(plaintext.subspan(literal_start));
  if (builder.copied() == 0 || builder.payload_size() >= max_payload) return std::nullopt;
  return builder.Finish(static_cast<uint32_t>(n));
}

// ---- Parse and Apply ---------------------------------------------------------

Result<ParsedDelta> Parse(ByteView payload) {
  ByteReader r(payload);
  uint8_t version = 0;
  uint8_t base_count = 0;
  if (!r.ReadU8(version)) return DataLossError("delta payload is empty");
  if (version != kPayloadVersion) {
    return DataLossError("delta payload has unknown version " + std::to_string(version));
  }
  if (!r.ReadU8(base_count)) return DataLossError("delta payload is truncated in its header");
  if (base_count == 0 || base_count > kMaxBases) {
    return DataLossError("delta payload names " + std::to_string(base_count) +
                         " bases, expected 1 to " + std::to_string(kMaxBases));
  }
  ParsedDelta d;
  d.bases.resize(base_count);
  for (ChunkId& id : d.bases) {
    if (!r.ReadArray(id)) return DataLossError("delta payload is truncated in its base ids");
  }
  uint32_t op_count = 0;
  if (!r.ReadU32(d.size) || !r.ReadU32(op_count)) {
    return DataLossError("delta payload is truncated in its header");
  }
  if (d.size > kMaxChunkSize) {
    return DataLossError("delta payload claims " + std::to_string(d.size) +
                         " result bytes, over the limit");
  }
  if (op_count > r.remaining() / kMinOpSize) {
    return DataLossError("delta payload claims " + std::to_string(op_count) +
                         " ops, more than its " + std::to_string(r.remaining()) +
                         " remaining bytes can hold");
  }
  d.ops.reserve(op_count);
  uint64_t total = 0;
  for (uint32_t i = 0; i < op_count; ++i) {
    const auto where = [i] { return "delta op " + std::to_string(i); };
    uint8_t kind = 0;
    Op op;
    if (!r.ReadU8(kind))
      return DataLossError("delta payload is truncated at op " + std::to_string(i));
    if (kind == kOpCopy) {
      op.kind = Op::Kind::kCopy;
      if (!r.ReadU8(op.base) || !r.ReadU32(op.offset) || !r.ReadU32(op.length)) {
        return DataLossError("delta payload is truncated at op " + std::to_string(i));
      }
      if (op.base >= base_count) {
        return DataLossError(where() + " copies from base " + std::to_string(op.base) + " of " +
                             std::to_string(base_count));
      }
    } else if (kind == kOpLiteral) {
      op.kind = Op::Kind::kLiteral;
      if (!r.ReadU32(op.length)) {
        return DataLossError("delta payload is truncated at op " + std::to_string(i));
      }
      if (op.length != 0 && !r.ReadView(op.length, op.literal)) {
        return DataLossError(where() + ": literal of " + std::to_string(op.length) +
                             " bytes runs past the end of the payload");
      }
    } else {
      return DataLossError(where() + " has unknown kind " + std::to_string(kind));
    }
    if (op.length == 0) return DataLossError(where() + " has zero length");
    total += op.length;
    if (total > d.size) {
      return DataLossError("delta ops cover more than the " + std::to_string(d.size) +
                           " result bytes");
    }
    d.ops.push_back(op);
  }
  if (total != d.size) {
    return DataLossError("delta ops cover " + std::to_string(total) + " bytes, expected " +
                         std::to_string(d.size));
  }
  if (!r.empty()) {
    return DataLossError("delta payload has " + std::to_string(r.remaining()) + " trailing bytes");
  }
  return d;
}

Status Apply(const ParsedDelta& delta, std::span<const ByteView> bases, Bytes& out) {
  out.clear();
  if (bases.size() != delta.bases.size()) {
    return DataLossError("delta names " + std::to_string(delta.bases.size()) + " bases, " +
                         std::to_string(bases.size()) + " given");
  }
  if (delta.size > kMaxChunkSize) {
    return DataLossError("delta claims " + std::to_string(delta.size) +
                         " result bytes, over the limit");
  }
  // Everything is checked before anything is written (a ParsedDelta may
  // also have been built by hand).
  uint64_t total = 0;
  for (size_t i = 0; i < delta.ops.size(); ++i) {
    const Op& op = delta.ops[i];
    if (op.kind == Op::Kind::kCopy) {
      if (op.base >= bases.size()) {
        return DataLossError("delta op " + std::to_string(i) + " copies from base " +
                             std::to_string(op.base) + " of " + std::to_string(bases.size()));
      }
      if (uint64_t{op.offset} + op.length > bases[op.base].size()) {
        return DataLossError(
            "delta op " + std::to_string(i) + " copies bytes " + std::to_string(op.offset) + ".." +
            std::to_string(uint64_t{op.offset} + op.length) + " of base " +
            std::to_string(op.base) + ", which has " + std::to_string(bases[op.base].size()));
      }
    } else if (op.literal.size() != op.length) {
      return DataLossError("delta op " + std::to_string(i) + ": literal length " +
                           std::to_string(op.length) + " differs from its " +
                           std::to_string(op.literal.size()) + " bytes");
    }
    total += op.length;
  }
  if (total != delta.size) {
    return DataLossError("delta ops cover " + std::to_string(total) + " bytes, expected " +
                         std::to_string(delta.size));
  }
  out.resize(delta.size);
  uint8_t* dst = out.data();
  for (const Op& op : delta.ops) {
    const uint8_t* src =
        op.kind == Op::Kind::kCopy ? bases[op.base].data() + op.offset : op.literal.data();
    if (op.length != 0) std::memcpy(dst, src, op.length);
    dst += op.length;
  }
  return OkStatus();
}

}  // namespace ferry::snapshot::delta
