#include "mirror/transport/record_reader.h"

#include <algorithm>
#include <cstdio>
#include <string>

namespace ferry::mirror::transport {

RecordReader::RecordReader(size_t max_frame_bytes, noise::CipherState receive)
    : max_frame_bytes_(std::min(max_frame_bytes, kMaxFrameBytesLimit)),
      cipher_(std::move(receive)) {}

Result<bool> RecordReader::Fail(Status status) {
  status_ = std::move(status);
  open_.reset();
  return status_;
}

Result<bool> RecordReader::ReadMessage(ByteView message, Bytes& frame) {
  if (!status_.ok()) return status_;
  if (!cipher_.has_key()) return Fail(FailedPreconditionError("record reader has no cipher key"));
  const uint64_t nonce = cipher_.nonce();
  if (Status s = cipher_.DecryptWithAd({}, message, plaintext_); !s.ok()) {
    // Damage, a replay, a reordering and a dropped message all look the
    // same here: the message does not authenticate under the next nonce.
    return Fail(DataLossError("transport message " + std::to_string(nonce) + " (" +
                              std::to_string(message.size()) +
                              " bytes) does not decrypt: damaged, replayed, reordered or "
                              "dropped on the way (" +
                              s.message() + ")"));
  }
  return ReadRecord(plaintext_, frame);
}

Result<bool> RecordReader::ReadRecord(ByteView record, Bytes& frame) {
  if (!status_.ok()) return status_;
  if (record.empty()) return Fail(DataLossError("empty record"));
  if (record.size() > kMaxRecordSize) {
    return Fail(DataLossError("record of " + std::to_string(record.size()) +
                              " bytes exceeds the maximum of " + std::to_string(kMaxRecordSize)));
  }
  const uint8_t type = record[0];
  if (type == static_cast<uint8_t>(RecordType::kFrameStart)) {
    if (open_) {
      return Fail(DataLossError("frame start record while a frame is open (" +
                                std::to_string(open_->data.size()) + " of " +
                                std::to_string(open_->total) + " bytes received)"));
    }
    if (record.size() < kFrameStartHeaderSize) {
      return Fail(DataLossError("frame start record of " + std::to_string(record.size()) +
                                " bytes is shorter than its 5-byte header"));
    }
    const uint32_t total = LoadU32(record.data() + 1);
    // Checked before anything is allocated for the frame.
    if (total > max_frame_bytes_) {
      return Fail(ResourceExhaustedError("peer declared a frame of " + std::to_string(total) +
                                         " bytes, more than the maximum of " +
                                         std::to_string(max_frame_bytes_)));
    }
    ByteView data = record.subspan(kFrameStartHeaderSize);
    const size_t expected = std::min<size_t>(total, kMaxFrameStartData);
    if (data.size() > total) {
      return Fail(DataLossError("frame start record carries " + std::to_string(data.size()) +
                                " bytes, more than its declared frame length " +
                                std::to_string(total)));
    }
    if (data.size() != expected) {
      return Fail(DataLossError("frame start record carries " + std::to_string(data.size()) +
                                " bytes; a frame of " + std::to_string(total) +
                                " bytes must start with " + std::to_string(expected)));
    }
    if (data.size() == total) {
      frame.assign(data.begin(), data.end());
      return true;
    }
    OpenFrame open{total, {}};
    open.data.reserve(total);
    open.data.assign(data.begin(), data.end());
    open_ = std::move(open);
    return false;
  }
  if (type == static_cast<uint8_t>(RecordType::kContinuation)) {
    if (!open_) return Fail(DataLossError("continuation record without a frame start"));
    ByteView data = record.subspan(kContinuationHeaderSize);
    const size_t remaining = open_->total - open_->data.size();
    if (data.empty()) return Fail(DataLossError("empty continuation record"));
    if (data.size() > remaining) {
      return Fail(DataLossError("continuation record of " + std::to_string(data.size()) +
                                " bytes overruns its frame (" + std::to_string(remaining) + " of " +
                                std::to_string(open_->total) + " bytes left)"));
    }
    const size_t expected = std::min(remaining, kMaxContinuationData);
    if (data.size() != expected) {
      return Fail(DataLossError("continuation record carries " + std::to_string(data.size()) +
                                " bytes; with " + std::to_string(remaining) +
                                " bytes of the frame left it must carry " +
                                std::to_string(expected)));
    }
    open_->data.insert(open_->data.end(), data.begin(), data.end());
    if (open_->data.size() < open_->total) return false;
    frame = std::move(open_->data);
    open_.reset();
    return true;
  }
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02x", type);
  return Fail(DataLossError(std::string("unknown record type ") + hex));
}

}  // namespace ferry::mirror::transport
