// Writes the seed corpus of stream_log_fuzz (tests/fuzz/README.md):
//
//   cmake --build build --target stream_log_seed_gen
//   build/bin/stream_log_seed_gen tests/fuzz/corpus
//
// Replaces the files in <dir>/stream_log_fuzz/. Each seed is a stream log
// written by the real StreamLog (a fixed clock, fixed payloads: every run
// writes the same bytes), then read back file by file into the input format
// of stream_log_fuzz_input.h — some as written, some damaged the way a crash
// or a bad disk would.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/env.h"
#include "core/log.h"
#include "snapshot/stream_log.h"
#include "tests/fuzz/stream_log_fuzz_input.h"

namespace ferry::fuzz {
namespace {

namespace fs = std::filesystem;
using snapshot::StreamLog;
using snapshot::StreamLogOptions;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "stream_log_seed_gen: %s\n", what.c_str());
  std::exit(1);
}

Bytes Payload(uint64_t offset, size_t size) {
  Bytes b(size);
  for (size_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(offset * 31 + i * 7);
  return b;
}

// A log in a fresh directory: `batches` of record sizes, appended in order.
struct LogFiles {
  std::vector<Bytes> segments;  // in offset order
  Bytes start;                  // the start file, empty when there is none
};

LogFiles WriteLog(const std::string& scratch, const std::vector<std::vector<size_t>>& batches,
                  uint64_t segment_bytes, uint64_t truncate_before = 0) {
  const std::string dir = scratch + "/log";
  fs::remove_all(dir);
  FakeClock clock(1'700'000'000'000'000'000);
  StreamLogOptions o;
  o.clock = &clock;
  o.segment_bytes = segment_bytes;
  o.max_record_bytes = 1 << 16;
  {
    Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(dir, o);
    if (!log.ok()) Die(log.status().ToString());
    uint64_t next = 0;
    for (const std::vector<size_t>& sizes : batches) {
      std::vector<Bytes> records;
      for (size_t size : sizes) records.push_back(Payload(next++, size));
      const std::vector<ByteView> views(records.begin(), records.end());
      if (Result<snapshot::AppendResult> r = (*log)->Append(views); !r.ok()) {
        Die(r.status().ToString());
      }
      clock.Advance(1'000'000'000);
    }
    if (truncate_before > 0) {
      if (Status s = (*log)->TruncateBefore(truncate_before); !s.ok()) Die(s.ToString());
    }
    if (Status s = (*log)->Close(); !s.ok()) Die(s.ToString());
  }
  LogFiles out;
  std::map<std::string, Bytes> segs;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename();
    Result<Bytes> b = Env::Default()->ReadFile(e.path(), 1 << 26);
    if (!b.ok()) Die(b.status().ToString());
    if (name == "start") out.start = std::move(*b);
    if (name.size() > 4 && name.substr(name.size() - 4) == ".seg") segs[name] = std::move(*b);
  }
  for (auto& [name, bytes] : segs) out.segments.push_back(std::move(bytes));
  return out;
}

Bytes Input(uint8_t config, const LogFiles& log) {
  Bytes in;
  PutU8(in, config);
  for (const Bytes& s : log.segments) AppendFrame(in, s);
  if (config & kStreamStartFile) AppendFrame(in, log.start);
  return in;
}

void WriteSeed(const fs::path& dir, const std::string& name, const Bytes& input) {
  std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(input.data()), static_cast<std::streamsize>(input.size()));
  if (!f) Die("cannot write " + (dir / name).string());
}

}  // namespace
}  // namespace ferry::fuzz

int main(int argc, char** argv) {
  using namespace ferry::fuzz;
  if (argc != 2) Die("usage: stream_log_seed_gen <corpus dir>");
  ferry::log::Init({.level = ferry::log::Level::kWarn, .program = "stream_log_seed_gen"});
  const fs::path out = fs::path(argv[1]) / "stream_log_fuzz";
  fs::remove_all(out);
  fs::create_directories(out);
  char scratch_tmpl[] = "/tmp/stream-seed-XXXXXX";
  if (!mkdtemp(scratch_tmpl)) Die("mkdtemp");
  const std::string scratch = scratch_tmpl;

  const std::vector<std::vector<size_t>> mixed = {{5, 0, 17}, {1}, {40, 3, 3, 90}, {0}};
  // Two 30-byte records fill a 128-byte segment: segments at 0, 2, 4, 6, 8.
  const std::vector<std::vector<size_t>> many = {{30, 30, 30}, {30, 30}, {30, 30, 30, 30}};

  const LogFiles empty = WriteLog(scratch, {}, 1 << 20);
  WriteSeed(out, "empty-log", Input(0, empty));

  const LogFiles one = WriteLog(scratch, mixed, 1 << 20);
  WriteSeed(out, "one-segment", Input(0, one));
  WriteSeed(out, "one-segment-small-index", Input(kStreamSmallIndex, one));

  const LogFiles three = WriteLog(scratch, many, 128);
  WriteSeed(out, "several-segments", Input(kStreamSmallIndex, three));

  const LogFiles truncated = WriteLog(scratch, many, 128, 5);
  WriteSeed(out, "after-truncate-with-start-file", Input(kStreamStartFile, truncated));
  LogFiles interrupted = three;  // the start file written, the segments not yet deleted
  interrupted.start = truncated.start;
  WriteSeed(out, "interrupted-truncate", Input(kStreamStartFile, interrupted));

  LogFiles torn = one;
  torn.segments.back().resize(torn.segments.back().size() - 7);
  WriteSeed(out, "torn-tail", Input(0, torn));

  LogFiles zeros = three;
  zeros.segments.back().resize(zeros.segments.back().size() + 64, 0);
  WriteSeed(out, "zero-filled-tail", Input(0, zeros));

  LogFiles flipped_last = one;
  flipped_last.segments.back().back() ^= 0x10;
  WriteSeed(out, "flipped-last-record", Input(0, flipped_last));

  LogFiles flipped_middle = one;
  flipped_middle.segments.back()[32 + 8 + 2] ^= 0x01;  // payload of record 0
  WriteSeed(out, "flipped-inside-last-segment", Input(0, flipped_middle));
  WriteSeed(out, "flipped-inside-last-segment-repair", Input(kStreamRepair, flipped_middle));

  LogFiles flipped_older = three;
  flipped_older.segments.front()[40] ^= 0x01;
  WriteSeed(out, "flipped-older-segment", Input(0, flipped_older));

  // The next segment (at offset 9) created, but only 20 bytes of its header written.
  LogFiles torn_header = three;
  torn_header.segments.push_back(
      ferry::Bytes(three.segments.back().begin(), three.segments.back().begin() + 20));
  ferry::StoreU64(torn_header.segments.back().data() + 8, 9);
  WriteSeed(out, "torn-header", Input(0, torn_header));

  const LogFiles big = WriteLog(scratch, {{3000}, {1, 2}}, 1024);
  WriteSeed(out, "record-larger-than-a-segment", Input(0, big));

  fs::remove_all(scratch);
  std::printf("wrote %zu seeds to %s\n",
              static_cast<size_t>(std::distance(fs::directory_iterator(out), {})), out.c_str());
  return 0;
}
