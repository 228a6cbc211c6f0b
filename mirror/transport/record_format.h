// Constants of the link transport shared by its writer and reader: the
// protocol name, the record types and the size limits. The format is
// specified byte by byte in docs/format/link-transport.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mirror/noise/cipher_state.h"

namespace ferry::mirror::transport {

// The link transport's version. One string names it everywhere: the
// WebSocket subprotocol the client offers and the hub selects
// (Sec-WebSocket-Protocol), and the Noise prologue both sides mix into the
// handshake hash, so a downgrade of the negotiated version breaks the
// handshake. A new record format or handshake takes "ferry-link-v2".
inline constexpr std::string_view kLinkProtocol = "ferry-link-v1";
// The HTTP path of the WebSocket endpoint.
inline constexpr std::string_view kLinkPath = "/v1/link";
// Response header of a hub that refuses the upgrade because the client
// offered no protocol it speaks: the protocols it does speak.
inline constexpr std::string_view kLinkProtocolsHeader = "Ferry-Link-Protocols";

// The first byte of every record.
enum class RecordType : uint8_t {
  // type (1) | frame length u32 LE (4) | the frame's first bytes
  kFrameStart = 0x01,
  // type (1) | the frame's next bytes
  kContinuation = 0x02,
};

// A record is the plaintext of one Noise transport message.
inline constexpr size_t kMaxRecordSize = noise::kMaxPayloadSize;  // 65519
inline constexpr size_t kFrameStartHeaderSize = 5;
inline constexpr size_t kContinuationHeaderSize = 1;
// Frame bytes carried by a full record of each type.
inline constexpr size_t kMaxFrameStartData = kMaxRecordSize - kFrameStartHeaderSize;      // 65514
inline constexpr size_t kMaxContinuationData = kMaxRecordSize - kContinuationHeaderSize;  // 65518

// The default largest frame (one serialized Envelope), both directions.
inline constexpr size_t kDefaultMaxFrameBytes = size_t{8} << 20;
// The largest frame the format can describe (u32 length).
inline constexpr size_t kMaxFrameBytesLimit = 0xFFFFFFFFu;

}  // namespace ferry::mirror::transport
