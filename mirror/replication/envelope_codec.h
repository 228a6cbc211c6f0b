// Serializing and parsing link Envelopes, with the checks every received
// frame gets before anything acts on it.
#pragma once

#include <string>
#include <string_view>

#include "core/bytes.h"
#include "mirror/replication/frame_channel.h"

namespace ferry::mirror {

inline constexpr uint64_t kDefaultMaxFrameBytes = 8u << 20;

// Both refuse frames over max_frame_bytes, and over 2 GiB - 1 (protobuf's
// own limit) whatever max_frame_bytes says, with kResourceExhausted.
Result<Bytes> EncodeEnvelope(const linkpb::Envelope& envelope, uint64_t max_frame_bytes);
// The same into `buffer`, which only grows (a reused buffer is not
// zero-filled or faulted in again for every frame); returns the frame's
// size: the frame is the first that many bytes.
Result<size_t> EncodeEnvelopeInto(const linkpb::Envelope& envelope, uint64_t max_frame_bytes,
                                  Bytes& buffer);
// kResourceExhausted over the limit (checked first), kDataLoss if the bytes
// are not an Envelope or carry no body.
Result<linkpb::Envelope> DecodeEnvelope(ByteView frame, uint64_t max_frame_bytes);

// An Error frame answering `request_id`.
linkpb::Envelope ErrorEnvelope(uint64_t request_id, const Status& status);
// The Status an Error frame carries (kUnknown for an unrecognised code).
Status StatusFromError(const linkpb::Error& error);

// `text` as well-formed UTF-8 of at most `max_bytes` bytes: each byte that
// is not part of a valid sequence (overlong forms, surrogates and code
// points past U+10FFFF included) becomes '?', and the text is cut before the
// first character that would not fit whole. For strings a peer must accept
// (proto3 strings are UTF-8) under a size limit, e.g. AgentReport.last_error.
std::string BoundedUtf8(std::string_view text, size_t max_bytes);

// "missing_query" etc. for messages.
const char* BodyName(const linkpb::Envelope& envelope);

}  // namespace ferry::mirror
