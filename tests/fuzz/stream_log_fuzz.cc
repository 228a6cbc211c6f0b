// libFuzzer target: stream log recovery (snapshot/stream_log.cc, the segment
// and start file decoders and StreamLog::Open). Input format:
// stream_log_fuzz_input.h. Each input becomes a stream log directory (in
// ScratchDir(), on /dev/shm when there is one) that StreamLog::Open recovers. Beyond "no
// crash, no UB, no leak", it checks:
//  - Open fails only with DATA_LOSS (the bytes are all there is);
//  - after a successful Open every record from start to end reads back in
//    order without error (Open checked them all), nothing is beyond the end,
//    below the start is OUT_OF_RANGE, and everything is durable;
//  - recovery is final: an append gets the end offset, and a second Open
//    finds a clean log (no torn tail, no recreated header, nothing removed)
//    holding the same records plus the appended one.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/log.h"
#include "snapshot/stream_log.h"
#include "snapshot/stream_log_format.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/stream_log_fuzz_input.h"

namespace ferry::fuzz {
namespace {

using snapshot::StreamLog;
using snapshot::StreamLogOptions;
using snapshot::StreamRecord;

std::vector<StreamRecord> ReadAll(const StreamLog& log) {
  std::vector<StreamRecord> out;
  uint64_t next = log.start_offset();
  for (;;) {
    Result<std::vector<StreamRecord>> r = log.Read(next, 256, size_t{1} << 20);
    FUZZ_CHECK(r.ok());
    if (r->empty()) break;
    for (StreamRecord& rec : *r) {
      FUZZ_CHECK(rec.offset == next);
      ++next;
      out.push_back(std::move(rec));
    }
  }
  FUZZ_CHECK(next == log.end_offset());
  return out;
}

void Run(uint8_t config, ByteView rest) {
  const std::string dir = ScratchDir() + "/log";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  FUZZ_CHECK(std::filesystem::create_directory(dir, ec));

  std::vector<ByteView> files = ParseFrames(rest, kMaxStreamFiles);
  if ((config & kStreamStartFile) && !files.empty()) {
    WriteFile(dir + "/" + snapshot::stream_format::kStartFileName, files.back());
    files.pop_back();
  }
  for (size_t i = 0; i < files.size(); ++i) {
    const uint64_t first = StreamSegmentNameOffset(files[i], i);
    WriteFile(dir + "/" + snapshot::stream_format::SegmentFileName(first), files[i]);
  }

  StreamLogOptions options;
  options.fsync = snapshot::FsyncPolicy::kInterval;
  options.sync_thread = false;
  options.repair_damaged_last_segment = (config & kStreamRepair) != 0;
  if (config & kStreamSmallIndex) options.index_interval_bytes = 64;

  std::vector<StreamRecord> records;
  uint64_t start = 0, end = 0;
  {
    Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(dir, options);
    if (!log.ok()) {
      FUZZ_CHECK(log.status().code() == StatusCode::kDataLoss);
      return;
    }
    start = (*log)->start_offset();
    end = (*log)->end_offset();
    FUZZ_CHECK(start <= end);
    FUZZ_CHECK((*log)->durable_end_offset() == end);
    records = ReadAll(**log);
    size_t payload = 0;
    for (const StreamRecord& r : records) payload += r.data.size();
    FUZZ_CHECK(payload <= rest.size());
    Result<std::vector<StreamRecord>> beyond = (*log)->Read(end, 1, 1);
    FUZZ_CHECK(beyond.ok() && beyond->empty());
    if (start > 0) {
      FUZZ_CHECK((*log)->Read(start - 1, 1, 1).status().code() == StatusCode::kOutOfRange);
    }
    if (end == UINT64_MAX) return;  // no offset left to append at
    const Bytes appended = ToBytes("appended after recovery");
    const ByteView view(appended);
    Result<snapshot::AppendResult> a = (*log)->Append(std::span<const ByteView>(&view, 1));
    FUZZ_CHECK(a.ok() && a->first == end);
    records.push_back(StreamRecord{end, appended});
    FUZZ_CHECK((*log)->Close().ok());
  }
  Result<std::unique_ptr<StreamLog>> again = StreamLog::Open(dir, options);
  FUZZ_CHECK(again.ok());
  const snapshot::StreamLogRecovery& rec = (*again)->recovery();
  FUZZ_CHECK(!rec.tail_truncated && !rec.header_recreated && rec.segments_removed == 0);
  FUZZ_CHECK((*again)->start_offset() == start);
  FUZZ_CHECK((*again)->end_offset() == end + 1);
  const std::vector<StreamRecord> reread = ReadAll(**again);
  FUZZ_CHECK(reread.size() == records.size());
  for (size_t i = 0; i < reread.size(); ++i) {
    FUZZ_CHECK(reread[i].offset == records[i].offset && reread[i].data == records[i].data);
  }
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ferry::log::Init({.level = ferry::log::Level::kOff, .program = "stream_log_fuzz"});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ferry::fuzz::Run(data[0], ferry::ByteView(data + 1, size - 1));
  return 0;
}
