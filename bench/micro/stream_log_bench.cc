// Append throughput of a stream log (ferry::snapshot::StreamLog, fsync every
// batch) beside a plain write()+fdatasync() loop of the same bytes — the
// limit of that fsync policy on this disk. Records of 100 B and 1 KiB, batches
// of 1 and 1000; one batch is one iteration, so items/s is records/s.
//
//   build/bin/ferry_micro_bench --benchmark_filter='StreamLog|RawWriteFdatasync'
//     --benchmark_repetitions=3 --benchmark_report_aggregates_only=true   (one line)
//
// Files go to $FERRY_BENCH_DIR, else /var/tmp: a real disk (a tmpfs /tmp
// would make fsync free and the comparison meaningless). Nothing is deleted
// while a benchmark runs (deleting files slows the next fsyncs on ext4, which
// is not what is measured); a run's files are removed when it ends, so a
// run needs up to about 1 GiB free. --benchmark_enable_random_interleaving
// helps on a shared disk: both loops then see the same conditions.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "snapshot/stream_log.h"
#include "snapshot/stream_log_format.h"

namespace ferry::snapshot {
namespace {

constexpr uint64_t kRollBytes = 16u << 20;  // the log's default segment size

// A fresh directory for one benchmark run, removed with its content.
class BenchDir {
 public:
  BenchDir() {
    const char* base = std::getenv("FERRY_BENCH_DIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/var/tmp") +
                       "/ferry-stream-bench-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~BenchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Bytes RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  for (uint8_t& c : b) c = static_cast<uint8_t>(rng());
  return b;
}

void SetCounters(benchmark::State& state, size_t record, size_t batch) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch * record));
}

void BM_StreamLogAppend_FsyncEveryBatch(benchmark::State& state) {
  const size_t record = static_cast<size_t>(state.range(0));
  const size_t batch = static_cast<size_t>(state.range(1));
  BenchDir dir;
  if (dir.path().empty()) return state.SkipWithError("mkdtemp failed");
  StreamLogOptions options;
  options.fsync = FsyncPolicy::kEveryBatch;
  Result<std::unique_ptr<StreamLog>> log = StreamLog::Open(dir.path() + "/log", options);
  if (!log.ok()) return state.SkipWithError(log.status().ToString().c_str());
  std::vector<Bytes> records;
  for (size_t i = 0; i < batch; ++i) records.push_back(RandomBytes(record, i));
  const std::vector<ByteView> views(records.begin(), records.end());
  for (auto _ : state) {
    Result<AppendResult> r = (*log)->Append(views);
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
  }
  SetCounters(state, record, batch);
}
BENCHMARK(BM_StreamLogAppend_FsyncEveryBatch)
    ->ArgNames({"record", "batch"})
    ->ArgsProduct({{100, 1024}, {1, 1000}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// The same bytes (payload + 8-byte frame per record, one write per batch)
// appended to a file with write(2) and fdatasync(2) after each batch; a new
// file every 16 MiB like the log's segments (untimed; the log's rolls are
// timed, they are part of its cost).
void BM_RawWriteFdatasync(benchmark::State& state) {
  const size_t record = static_cast<size_t>(state.range(0));
  const size_t batch = static_cast<size_t>(state.range(1));
  BenchDir dir;
  if (dir.path().empty()) return state.SkipWithError("mkdtemp failed");
  const Bytes bytes = RandomBytes(batch * (record + stream_format::kFrameSize), 7);
  int file_number = 0;
  auto open_next = [&] {
    const std::string path = dir.path() + "/raw-" + std::to_string(file_number++);
    return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  };
  int fd = open_next();
  if (fd < 0) return state.SkipWithError(std::strerror(errno));
  uint64_t in_file = 0;
  for (auto _ : state) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return state.SkipWithError(std::strerror(errno));
      done += static_cast<size_t>(n);
    }
    if (::fdatasync(fd) != 0) return state.SkipWithError(std::strerror(errno));
    in_file += bytes.size();
    if (in_file > kRollBytes) {
      state.PauseTiming();
      ::close(fd);
      fd = open_next();
      in_file = 0;
      state.ResumeTiming();
      if (fd < 0) return state.SkipWithError(std::strerror(errno));
    }
  }
  ::close(fd);
  SetCounters(state, record, batch);
}
BENCHMARK(BM_RawWriteFdatasync)
    ->ArgNames({"record", "batch"})
    ->ArgsProduct({{100, 1024}, {1, 1000}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ferry::snapshot
