#include "mirror/transport/record_writer.h"

#include <algorithm>
#include <string>

namespace ferry::mirror::transport {

RecordWriter::RecordWriter(size_t max_frame_bytes, noise::CipherState send)
    : max_frame_bytes_(std::min(max_frame_bytes, kMaxFrameBytesLimit)), cipher_(std::move(send)) {
  scratch_.reserve(kMaxRecordSize);
}

size_t RecordWriter::RecordCount(size_t frame_size) {
  if (frame_size <= kMaxFrameStartData) return 1;
  return 1 + (frame_size - kMaxFrameStartData + kMaxContinuationData - 1) / kMaxContinuationData;
}

template <typename Emit>
Status RecordWriter::ForEachRecord(ByteView frame, Bytes& scratch, Emit&& emit) {
  size_t offset = std::min(frame.size(), kMaxFrameStartData);
  scratch.clear();
  PutU8(scratch, static_cast<uint8_t>(RecordType::kFrameStart));
  PutU32(scratch, static_cast<uint32_t>(frame.size()));
  PutBytes(scratch, frame.first(offset));
  RETURN_IF_ERROR(emit(ByteView(scratch)));
  while (offset < frame.size()) {
    size_t n = std::min(frame.size() - offset, kMaxContinuationData);
    scratch.clear();
    PutU8(scratch, static_cast<uint8_t>(RecordType::kContinuation));
    PutBytes(scratch, frame.subspan(offset, n));
    RETURN_IF_ERROR(emit(ByteView(scratch)));
    offset += n;
  }
  return OkStatus();
}

std::vector<Bytes> RecordWriter::SplitFrame(ByteView frame) {
  std::vector<Bytes> records;
  records.reserve(RecordCount(frame.size()));
  Bytes scratch;
  ForEachRecord(frame, scratch, [&](ByteView record) {
    records.emplace_back(record.begin(), record.end());
    return OkStatus();
  }).IgnoreError();  // the emitter cannot fail
  return records;
}

Status RecordWriter::WriteFrame(ByteView frame, std::vector<Bytes>& messages) {
  if (frame.size() > max_frame_bytes_) {
    return ResourceExhaustedError("frame of " + std::to_string(frame.size()) +
                                  " bytes exceeds the link's maximum of " +
                                  std::to_string(max_frame_bytes_) + " bytes");
  }
  if (!cipher_.has_key()) return FailedPreconditionError("record writer has no cipher key");
  messages.reserve(messages.size() + RecordCount(frame.size()));
  return ForEachRecord(frame, scratch_, [&](ByteView record) {
    Bytes message;
    message.reserve(record.size() + noise::kTagSize);
    RETURN_IF_ERROR(cipher_.EncryptWithAd({}, record, message));
    messages.push_back(std::move(message));
    return OkStatus();
  });
}

Status RecordWriter::WriteRecordForTest(ByteView record, std::vector<Bytes>& messages) {
  if (!cipher_.has_key()) return FailedPreconditionError("record writer has no cipher key");
  Bytes message;
  RETURN_IF_ERROR(cipher_.EncryptWithAd({}, record, message));
  messages.push_back(std::move(message));
  return OkStatus();
}

}  // namespace ferry::mirror::transport
