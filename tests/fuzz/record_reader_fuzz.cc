// libFuzzer target: the link's record layer (mirror/transport/record_reader.cc
// and record_writer.cc). Input format: fuzz_formats.h.
//
// Records mode feeds a sequence of plaintext records to RecordReader::ReadRecord
// and checks, beyond "no crash, no UB":
//  - a completed frame is at most the reader's max_frame_bytes, and no
//    allocation made while reading a record is larger than that (or than one
//    message): an oversize frame is refused before anything is allocated;
//  - the records that made it are exactly RecordWriter::SplitFrame(frame)
//    (a frame has one encoding; anything else must have been refused);
//  - errors are final: every later call returns the first error;
//  - with the encrypt bit, a keyed reader given the same records encrypted
//    (ReadMessage) behaves exactly like the plaintext reader.
// Writer mode round-trips a frame through RecordWriter and RecordReader,
// plaintext (SplitFrame/ReadRecord) and encrypted (WriteFrame/ReadMessage).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "mirror/noise/cipher_state.h"
#include "mirror/transport/record_format.h"
#include "mirror/transport/record_reader.h"
#include "mirror/transport/record_writer.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

using mirror::noise::CipherState;
using mirror::transport::kMaxRecordSize;
using mirror::transport::RecordReader;
using mirror::transport::RecordWriter;

// Runs `read` and checks that it allocated no more than the reader may.
template <typename Read>
Result<bool> Tracked(size_t max_frame, Read&& read) {
  std::optional<Result<bool>> r;
  const size_t largest = LargestAllocation::During([&] { r.emplace(read()); });
  FUZZ_CHECK(largest <= std::max(max_frame, mirror::noise::kMaxMessageSize));
  return std::move(*r);
}

// Both directions of one link share this key (a fixed key: the target is
// about the record layer, not the cipher).
CipherState Cipher() {
  SecretBytes key(mirror::noise::kKeySize);
  for (size_t i = 0; i < key.size(); ++i) key.data()[i] = static_cast<uint8_t>(i + 1);
  return CipherState(std::move(key));
}

void RecordsMode(size_t max_frame, bool encrypt, ByteView in) {
  const std::vector<Bytes> records = ParseRecords(in);
  RecordReader reader(max_frame);
  RecordReader keyed(max_frame, Cipher());
  CipherState sender = Cipher();
  std::vector<Bytes> since_frame;  // records of the open frame
  Status first_error;
  Bytes frame, keyed_frame, message;
  for (const Bytes& record : records) {
    Result<bool> r = Tracked(max_frame, [&] { return reader.ReadRecord(record, frame); });
    if (!first_error.ok()) {
      FUZZ_CHECK(!r.ok() && r.status() == first_error);
      FUZZ_CHECK(!reader.in_frame());
      continue;
    }
    if (encrypt) {
      message.clear();
      if (!sender.EncryptWithAd({}, record, message).ok()) {
        message = record;  // too large to encrypt: send it as is
      }
      Result<bool> k = Tracked(max_frame, [&] { return keyed.ReadMessage(message, keyed_frame); });
      FUZZ_CHECK(k.ok() == r.ok());
      if (k.ok()) {
        FUZZ_CHECK(*k == *r);
        if (*k) FUZZ_CHECK(keyed_frame == frame);
      } else {
        FUZZ_CHECK(k.status().code() == r.status().code());
      }
    }
    if (!r.ok()) {
      first_error = r.status();
      FUZZ_CHECK(reader.status() == first_error);
      FUZZ_CHECK(!reader.in_frame());
      continue;
    }
    since_frame.push_back(record);
    FUZZ_CHECK(reader.in_frame() == !*r);
    if (!*r) continue;
    FUZZ_CHECK(frame.size() <= max_frame);
    FUZZ_CHECK(RecordWriter::SplitFrame(frame) == since_frame);
    FUZZ_CHECK(RecordWriter::RecordCount(frame.size()) == since_frame.size());
    since_frame.clear();
  }
}

void WriterMode(size_t max_frame, ByteView in) {
  ByteReader r(in);
  uint32_t size = 0;
  if (!r.ReadU32(size)) return;
  const ByteView pattern = r.Rest();
  const size_t frame_size = size % (kMaxWriterFrame + 1);
  Bytes frame;
  if (pattern.empty()) {
    frame.reserve(frame_size);
    AppendFiller(frame, 0, frame_size);
  } else if (frame_size > 0) {
    // The pattern repeated, by doubling what is there.
    frame.resize(frame_size);
    size_t have = std::min(pattern.size(), frame_size);
    std::memcpy(frame.data(), pattern.data(), have);
    while (have < frame_size) {
      const size_t n = std::min(have, frame_size - have);
      std::memcpy(frame.data() + have, frame.data(), n);
      have += n;
    }
  }

  // Plaintext records: the format itself.
  const std::vector<Bytes> records = RecordWriter::SplitFrame(frame);
  FUZZ_CHECK(records.size() == RecordWriter::RecordCount(frame.size()));
  RecordReader reader(max_frame);
  Bytes out;
  for (size_t i = 0; i < records.size(); ++i) {
    FUZZ_CHECK(!records[i].empty() && records[i].size() <= kMaxRecordSize);
    if (i + 1 < records.size()) FUZZ_CHECK(records[i].size() == kMaxRecordSize);
    Result<bool> done = reader.ReadRecord(records[i], out);
    if (frame.size() > max_frame) {
      // Refused at the first record, before anything is allocated.
      FUZZ_CHECK(i == 0 && !done.ok() && done.status().code() == StatusCode::kResourceExhausted);
      break;
    }
    FUZZ_CHECK(done.ok() && *done == (i + 1 == records.size()));
  }
  if (frame.size() <= max_frame) FUZZ_CHECK(out == frame);

  // Encrypted messages through WriteFrame/ReadMessage.
  RecordWriter writer(max_frame, Cipher());
  RecordReader keyed(max_frame, Cipher());
  std::vector<Bytes> messages;
  Status written = writer.WriteFrame(frame, messages);
  if (frame.size() > max_frame) {
    FUZZ_CHECK(written.code() == StatusCode::kResourceExhausted && messages.empty());
    return;
  }
  FUZZ_CHECK(written.ok() && messages.size() == records.size());
  Bytes keyed_out;
  for (size_t i = 0; i < messages.size(); ++i) {
    Result<bool> done = keyed.ReadMessage(messages[i], keyed_out);
    FUZZ_CHECK(done.ok() && *done == (i + 1 == messages.size()));
  }
  FUZZ_CHECK(keyed_out == frame);
  FUZZ_CHECK(writer.nonce() == keyed.nonce());
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ferry::fuzz;
  if (size == 0) return 0;
  const uint8_t config = data[0];
  const size_t max_frame = kRecordMaxFrame[config & 7];
  const ferry::ByteView rest(data + 1, size - 1);
  if (config & kRecordWriterMode) {
    WriterMode(max_frame, rest);
  } else {
    RecordsMode(max_frame, (config & kRecordEncrypt) != 0, rest);
  }
  return 0;
}
