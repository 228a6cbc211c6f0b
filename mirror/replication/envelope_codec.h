// Serializing and parsing link Envelopes, with the checks every received
// frame gets before anything acts on it.
#pragma once

#include "core/bytes.h"
#include "mirror/replication/frame_channel.h"

namespace ferry::mirror {

inline constexpr uint64_t kDefaultMaxFrameBytes = 8u << 20;

Result<Bytes> EncodeEnvelope(const linkpb::Envelope& envelope, uint64_t max_frame_bytes);
// kResourceExhausted over the limit (checked first), kDataLoss if the bytes
// are not an Envelope or carry no body.
Result<linkpb::Envelope> DecodeEnvelope(ByteView frame, uint64_t max_frame_bytes);

// An Error frame answering `request_id`.
linkpb::Envelope ErrorEnvelope(uint64_t request_id, const Status& status);
// The Status an Error frame carries (kUnknown for an unrecognised code).
Status StatusFromError(const linkpb::Error& error);

// "missing_query" etc. for messages.
const char* BodyName(const linkpb::Envelope& envelope);

}  // namespace ferry::mirror
