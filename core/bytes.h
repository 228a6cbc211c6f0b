// Byte buffers, little-endian encoding and a bounds-checked reader for
// decoding untrusted bytes.
//
// Every on-disk and on-wire integer in Ferry is little-endian (docs/format/).
// ByteReader never reads past its input: each accessor returns false (or an
// error Status) instead, so decoders turn short input into kDataLoss /
// kInvalidArgument rather than undefined behaviour.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace ferry {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;
using MutableByteView = std::span<uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view AsStringView(ByteView b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}
inline Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }
inline std::string ToString(ByteView b) { return std::string(AsStringView(b)); }

// Lowercase hex.
std::string HexEncode(ByteView data);
// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF).
bool IsValidUtf8(std::string_view s);
// Accepts upper and lower case; fails on odd length or a non-hex character.
Result<Bytes> HexDecode(std::string_view hex);
// Lowercase RFC 4648 base32 ("a-z2-7"), without padding (fingerprints,
// tokens).
std::string Base32Encode(ByteView data);
// `text` quoted for an error message: non-printable bytes, '"' and '\'
// as \xHH, cut after `max_chars` characters with "...".
std::string QuoteForMessage(std::string_view text, size_t max_chars = 64);

inline void PutU8(Bytes& out, uint8_t v) { out.push_back(v); }
inline void PutU16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
inline void PutU32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void PutU64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void PutBytes(Bytes& out, ByteView v) { out.insert(out.end(), v.begin(), v.end()); }

inline uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t LoadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t LoadU64(const uint8_t* p) {
  return static_cast<uint64_t>(LoadU32(p)) | (static_cast<uint64_t>(LoadU32(p + 4)) << 32);
}
inline void StoreU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void StoreU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Cursor over untrusted bytes. Accessors return false when too few bytes are
// left; the cursor does not move in that case.
class ByteReader {
 public:
  explicit ByteReader(ByteView data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  bool empty() const { return remaining() == 0; }

  bool ReadU8(uint8_t& v) {
    if (remaining() < 1) return false;
    v = data_[pos_++];
    return true;
  }
  bool ReadU16(uint16_t& v) {
    if (remaining() < 2) return false;
    v = LoadU16(data_.data() + pos_);
    pos_ += 2;
    return true;
  }
  bool ReadU32(uint32_t& v) {
    if (remaining() < 4) return false;
    v = LoadU32(data_.data() + pos_);
    pos_ += 4;
    return true;
  }
  bool ReadU64(uint64_t& v) {
    if (remaining() < 8) return false;
    v = LoadU64(data_.data() + pos_);
    pos_ += 8;
    return true;
  }
  // A view of the next n bytes (valid while the underlying buffer lives).
  bool ReadView(size_t n, ByteView& v) {
    if (remaining() < n) return false;
    v = data_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  template <size_t N>
  bool ReadArray(std::array<uint8_t, N>& v) {
    if (remaining() < N) return false;
    std::memcpy(v.data(), data_.data() + pos_, N);
    pos_ += N;
    return true;
  }
  ByteView Rest() const { return data_.subspan(pos_); }

 private:
  ByteView data_;
  size_t pos_ = 0;
};

}  // namespace ferry
