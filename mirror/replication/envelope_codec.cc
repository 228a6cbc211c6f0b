#include "mirror/replication/envelope_codec.h"

#include "snapshot/wire_check.h"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace ferry::mirror {

namespace {

// protobuf parses and serializes at most INT_MAX bytes (its sizes are int):
// a larger frame must be refused here, whatever the link allows (up to
// 4 GiB - 1), or ParseFromArray gets a negative size and aborts the process.
constexpr uint64_t kProtobufMaxBytes = std::numeric_limits<int>::max();

}  // namespace

Result<size_t> EncodeEnvelopeInto(const linkpb::Envelope& envelope, uint64_t max_frame_bytes,
                                  Bytes& buffer) {
  max_frame_bytes = std::min(max_frame_bytes, kProtobufMaxBytes);
  const size_t size = envelope.ByteSizeLong();
  if (size > max_frame_bytes) {
    return ResourceExhaustedError("frame of " + std::to_string(size) +
                                  " bytes exceeds the limit of " + std::to_string(max_frame_bytes));
  }
  if (buffer.size() < size) buffer.resize(size);
  // ByteSizeLong() above cached the sizes this uses.
  envelope.SerializeWithCachedSizesToArray(buffer.data());
  return size;
}

Result<Bytes> EncodeEnvelope(const linkpb::Envelope& envelope, uint64_t max_frame_bytes) {
  Bytes out;
  ASSIGN_OR_RETURN(size_t size, EncodeEnvelopeInto(envelope, max_frame_bytes, out));
  out.resize(size);
  return out;
}

Result<linkpb::Envelope> DecodeEnvelope(ByteView frame, uint64_t max_frame_bytes) {
  max_frame_bytes = std::min(max_frame_bytes, kProtobufMaxBytes);
  if (frame.size() > max_frame_bytes) {
    return ResourceExhaustedError("frame of " + std::to_string(frame.size()) +
                                  " bytes exceeds the limit of " + std::to_string(max_frame_bytes));
  }
  // Lengths first: protobuf would reserve up to 50 MB for a field that
  // claims more bytes than the frame has.
  if (Status s = snapshot::CheckWireLengths(frame, *linkpb::Envelope::descriptor()); !s.ok()) {
    return DataLossError("link frame is not a valid Envelope: " + s.message());
  }
  linkpb::Envelope e;
  if (!e.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return DataLossError("link frame is not a valid Envelope");
  }
  if (e.body_case() == linkpb::Envelope::BODY_NOT_SET) {
    return DataLossError("link frame has no message (unknown to this version?)");
  }
  return e;
}

linkpb::Envelope ErrorEnvelope(uint64_t request_id, const Status& status) {
  linkpb::Envelope e;
  e.set_request_id(request_id);
  linkpb::Error* err = e.mutable_error();
  err->set_code(static_cast<linkpb::ErrorCode>(static_cast<int>(status.code())));
  if (!linkpb::ErrorCode_IsValid(err->code())) err->set_code(linkpb::ERROR_CODE_INTERNAL);
  err->set_message(status.message());
  return e;
}

Status StatusFromError(const linkpb::Error& error) {
  const int code = static_cast<int>(error.code());
  if (code <= 0 || code > static_cast<int>(StatusCode::kUnauthenticated)) {
    return Status(StatusCode::kUnknown, "peer: " + error.message());
  }
  return Status(static_cast<StatusCode>(code), "peer: " + error.message());
}

std::string BoundedUtf8(std::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char c = byte(i);
    size_t n = 0;  // continuation bytes
    uint32_t cp = 0;
    if (c < 0x80) {
      n = 0;
      cp = c;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07u;
    } else {
      n = SIZE_MAX;  // never a valid first byte
    }
    bool valid = n != SIZE_MAX && i + n < text.size();
    for (size_t k = 1; valid && k <= n; ++k) {
      valid = (byte(i + k) & 0xc0u) == 0x80u;
      cp = (cp << 6) | (byte(i + k) & 0x3fu);
    }
    valid = valid && !(n == 2 && cp < 0x800) && !(n == 3 && (cp < 0x10000 || cp > 0x10ffff)) &&
            !(cp >= 0xd800 && cp <= 0xdfff);
    // An invalid byte becomes '?' and is skipped alone; a valid sequence is
    // kept whole or, when it does not fit, not at all.
    const size_t len = valid ? n + 1 : 1;
    if (out.size() + len > max_bytes) break;
    if (valid) {
      out.append(text.substr(i, len));
    } else {
      out += '?';
    }
    i += len;
  }
  return out;
}

const char* BodyName(const linkpb::Envelope& e) {
  switch (e.body_case()) {
    case linkpb::Envelope::kHello:
      return "hello";
    case linkpb::Envelope::kHelloAck:
      return "hello_ack";
    case linkpb::Envelope::kEnrollRequest:
      return "enroll_request";
    case linkpb::Envelope::kEnrollResponse:
      return "enroll_response";
    case linkpb::Envelope::kPolicySync:
      return "policy_sync";
    case linkpb::Envelope::kMissingQuery:
      return "missing_query";
    case linkpb::Envelope::kMissingReply:
      return "missing_reply";
    case linkpb::Envelope::kChunkUpload:
      return "chunk_upload";
    case linkpb::Envelope::kUploadAck:
      return "upload_ack";
    case linkpb::Envelope::kCommitRequest:
      return "commit_request";
    case linkpb::Envelope::kCommitAck:
      return "commit_ack";
    case linkpb::Envelope::kStreamAppend:
      return "stream_append";
    case linkpb::Envelope::kStreamAck:
      return "stream_ack";
    case linkpb::Envelope::kStreamQuery:
      return "stream_query";
    case linkpb::Envelope::kError:
      return "error";
    case linkpb::Envelope::kPing:
      return "ping";
    case linkpb::Envelope::kPong:
      return "pong";
    case linkpb::Envelope::kAgentReport:
      return "agent_report";
    case linkpb::Envelope::BODY_NOT_SET:
      return "nothing";
  }
  return "unknown";
}

}  // namespace ferry::mirror
