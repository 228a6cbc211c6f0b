#include "snapshot/stream_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <utility>

#include "core/log.h"
#include "snapshot/stream_log_format.h"

namespace ferry::snapshot {

namespace sf = stream_format;

// A segment file. Name, first offset and creation time are fixed; the rest
// changes only while both append_mu_ and mu_ are held, so the writer reads
// it under append_mu_ and readers under mu_.
struct StreamLog::Segment {
  std::string name;
  uint64_t first_offset = 0;
  int64_t created_unix_ns = 0;
  uint64_t end_offset = 0;        // one past the last complete record
  uint64_t bytes = 0;             // header + complete records
  std::vector<IndexEntry> index;  // sorted; the first record ({0, kHeaderSize}) is implicit
};

namespace {

constexpr size_t kWriteChunk = size_t{1} << 20;   // Append writes at most this much at once
constexpr size_t kScanWindow = size_t{1} << 20;   // Open reads segments in windows of this size
constexpr size_t kReadWindow = size_t{64} << 10;  // Read's window: most reads are small
constexpr uint64_t kMaxStartFileBytes = 4096;
// Discarded tails remembered for late waiters (one entry per failure).
constexpr size_t kMaxDiscards = 64;

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The first offset named by "<20 digits>.seg", or nullopt.
std::optional<uint64_t> ParseSegmentName(const std::string& name) {
  if (name.size() != sf::kSegmentNameDigits + sizeof(sf::kSegmentSuffix) - 1) return std::nullopt;
  if (!EndsWith(name, sf::kSegmentSuffix)) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 0; i < sf::kSegmentNameDigits; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

Bytes EncodeSegmentHeader(uint64_t first_offset, int64_t created_unix_ns) {
  Bytes h;
  h.reserve(sf::kHeaderSize);
  PutBytes(h, ByteView(sf::kSegmentMagic, 4));
  PutU8(h, sf::kVersion);
  PutU8(h, 0);
  PutU16(h, 0);
  PutU64(h, first_offset);
  PutU64(h, static_cast<uint64_t>(created_unix_ns));
  PutU32(h, 0);
  PutU32(h, sf::Crc32c(h));
  return h;
}

struct SegmentHeader {
  uint64_t first_offset = 0;
  int64_t created_unix_ns = 0;
};

// Checks in the order of docs/format/stream-segment.md; `where` names the file.
Result<SegmentHeader> DecodeSegmentHeader(ByteView h, const std::string& where) {
  if (h.size() < sf::kHeaderSize) return DataLossError(where + ": too short for a segment header");
  if (std::memcmp(h.data(), sf::kSegmentMagic, 4) != 0) {
    return DataLossError(where + ": bad magic (not a stream segment)");
  }
  if (h[4] != sf::kVersion) {
    return DataLossError(where + ": unsupported version " + std::to_string(h[4]));
  }
  if (h[5] != 0 || h[6] != 0 || h[7] != 0 || LoadU32(h.data() + 24) != 0) {
    return DataLossError(where + ": reserved header bytes set");
  }
  if (LoadU32(h.data() + sf::kHeaderCrcOffset) != sf::Crc32c(h.first(sf::kHeaderCrcOffset))) {
    return DataLossError(where + ": header checksum mismatch");
  }
  SegmentHeader out;
  out.first_offset = LoadU64(h.data() + 8);
  out.created_unix_ns = static_cast<int64_t>(LoadU64(h.data() + 16));
  return out;
}

Bytes EncodeStartFile(uint64_t start) {
  Bytes b;
  b.reserve(sf::kStartFileSize);
  PutBytes(b, ByteView(sf::kStartMagic, 4));
  PutU8(b, sf::kVersion);
  PutU8(b, 0);
  PutU16(b, 0);
  PutU64(b, start);
  PutU32(b, 0);
  PutU32(b, sf::Crc32c(b));
  return b;
}

Result<uint64_t> DecodeStartFile(ByteView b, const std::string& where) {
  if (b.size() != sf::kStartFileSize) {
    return DataLossError(where + ": " + std::to_string(b.size()) + " bytes, not " +
                         std::to_string(sf::kStartFileSize));
  }
  if (std::memcmp(b.data(), sf::kStartMagic, 4) != 0) {
    return DataLossError(where + ": bad magic (not a stream start file)");
  }
  if (b[4] != sf::kVersion) {
    return DataLossError(where + ": unsupported version " + std::to_string(b[4]));
  }
  if (b[5] != 0 || b[6] != 0 || b[7] != 0 || LoadU32(b.data() + 16) != 0) {
    return DataLossError(where + ": reserved bytes set");
  }
  if (LoadU32(b.data() + sf::kStartCrcOffset) != sf::Crc32c(b.first(sf::kStartCrcOffset))) {
    return DataLossError(where + ": checksum mismatch");
  }
  return LoadU64(b.data() + 8);
}

// Reads the frames of a segment in order, from `position` up to `limit`
// (never past it), through a window of the file. Lengths are checked against
// the format limit and the bytes left before anything is read for them.
class FrameScanner {
 public:
  enum class Check { kEnd, kOk, kPartialHeader, kBadLength, kPartialRecord, kBadCrc };

  FrameScanner(const RandomAccessFile& file, uint64_t position, uint64_t limit, size_t window)
      : file_(file), next_(position), limit_(limit), window_(window) {}

  // Examines the frame at the current position as the record `offset`.
  // kOk moves past it; anything else leaves the position on it.
  Result<Check> Next(uint64_t offset) {
    position_ = next_;
    if (position_ >= limit_) return Check::kEnd;
    const uint64_t left = limit_ - position_;
    if (left < sf::kFrameSize) return Check::kPartialHeader;
    RETURN_IF_ERROR(Ensure(position_, sf::kFrameSize));
    const uint8_t* frame = buf_.data() + (position_ - buf_position_);
    length_ = LoadU32(frame);
    const uint32_t crc = LoadU32(frame + 4);
    if (length_ > sf::kMaxRecordBytes) return Check::kBadLength;
    if (length_ > left - sf::kFrameSize) return Check::kPartialRecord;
    RETURN_IF_ERROR(Ensure(position_, sf::kFrameSize + length_));
    payload_ = ByteView(buf_.data() + (position_ - buf_position_) + sf::kFrameSize, length_);
    if (sf::RecordCrc(offset, payload_) != crc) return Check::kBadCrc;
    next_ = position_ + sf::kFrameSize + length_;
    return Check::kOk;
  }

  // After kBadCrc: steps over the damaged record as its length says, so
  // that the caller can check whether a valid record follows.
  void SkipDamaged() { next_ = position_ + sf::kFrameSize + length_; }

  uint64_t position() const { return position_; }  // of the frame Next examined
  uint64_t next() const { return next_; }
  uint32_t length() const { return length_; }
  ByteView payload() const { return payload_; }  // after kOk, until the next call
  uint64_t left() const { return limit_ - position_; }

 private:
  // Makes [pos, pos + n) available in buf_; n fits before limit_.
  Status Ensure(uint64_t pos, size_t n) {
    if (pos >= buf_position_ && pos + n <= buf_position_ + buf_.size()) return OkStatus();
    const size_t want = static_cast<size_t>(std::min<uint64_t>(std::max(n, window_), limit_ - pos));
    buf_position_ = pos;
    return file_.Read(pos, want, buf_);
  }

  const RandomAccessFile& file_;
  uint64_t next_;
  const uint64_t limit_;
  const size_t window_;
  Bytes buf_;
  uint64_t buf_position_ = 0;
  uint64_t position_ = 0;
  uint32_t length_ = 0;
  ByteView payload_;
};

std::string Describe(FrameScanner::Check check, const FrameScanner& s) {
  using Check = FrameScanner::Check;
  switch (check) {
    case Check::kPartialHeader:
      return "partial frame header: " + std::to_string(s.left()) + " of 8 bytes";
    case Check::kBadLength:
      return "bad length " + std::to_string(s.length()) + " (over the 16 MiB record limit)";
    case Check::kPartialRecord:
      return "partial record: " + std::to_string(s.left()) + " of " +
             std::to_string(sf::kFrameSize + s.length()) + " bytes";
    case Check::kBadCrc:
      return "CRC32C mismatch";
    case Check::kEnd:
      return "segment ends early";
    case Check::kOk:
      break;
  }
  return "ok";
}

// A file written under a temporary name and then renamed: reports (and
// names in its errors) the name it has now, not the one it was created as.
class RenamedFile final : public WritableFile {
 public:
  RenamedFile(std::unique_ptr<WritableFile> file, std::string path)
      : file_(std::move(file)), path_(std::move(path)) {}
  Status Append(ByteView data) override { return Renamed(file_->Append(data)); }
  Status Sync() override { return Renamed(file_->Sync()); }
  Status Close() override { return Renamed(file_->Close()); }
  uint64_t Size() const override { return file_->Size(); }
  const std::string& path() const override { return path_; }

 private:
  Status Renamed(const Status& s) const {
    if (s.ok()) return s;
    std::string message = s.message();
    const std::string& old_path = file_->path();
    for (size_t at = message.find(old_path); at != std::string::npos;
         at = message.find(old_path, at + path_.size())) {
      message.replace(at, old_path.size(), path_);
    }
    return Status(s.code(), std::move(message));
  }

  std::unique_ptr<WritableFile> file_;
  std::string path_;
};

std::string RecordAt(uint64_t offset, uint64_t position) {
  return "record at offset " + std::to_string(offset) + " (byte " + std::to_string(position) + ")";
}

Status ValidateOptions(const StreamLogOptions& o) {
  if (o.env == nullptr || o.clock == nullptr) {
    return InvalidArgumentError("stream log options: env and clock must be set");
  }
  if (o.fsync == FsyncPolicy::kInterval && o.fsync_interval_ms == 0) {
    return InvalidArgumentError("stream log options: fsync_interval_ms must be at least 1");
  }
  if (o.segment_bytes < sf::kMinSegmentBytes || o.segment_bytes > sf::kMaxSegmentBytes) {
    return InvalidArgumentError(
        "stream log options: segment_bytes " + std::to_string(o.segment_bytes) + " is outside [" +
        std::to_string(sf::kMinSegmentBytes) + ", " + std::to_string(sf::kMaxSegmentBytes) + "]");
  }
  if (o.max_record_bytes > sf::kMaxRecordBytes) {
    return InvalidArgumentError(
        "stream log options: max_record_bytes " + std::to_string(o.max_record_bytes) +
        " is over the format's limit of " + std::to_string(sf::kMaxRecordBytes));
  }
  if (o.max_batch_bytes < uint64_t{o.max_record_bytes} + sf::kFrameSize) {
    return InvalidArgumentError(
        "stream log options: max_batch_bytes must be at least max_record_bytes + 8");
  }
  if (o.index_interval_bytes == 0) {
    return InvalidArgumentError("stream log options: index_interval_bytes must be at least 1");
  }
  return OkStatus();
}

}  // namespace

StreamLog::StreamLog(std::string dir, const StreamLogOptions& options)
    : dir_(std::move(dir)), options_(options), env_(*options.env), clock_(*options.clock) {}

Result<std::unique_ptr<StreamLog>> StreamLog::Open(const std::string& dir,
                                                   const StreamLogOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  std::unique_ptr<StreamLog> log(new StreamLog(dir, options));
  RETURN_IF_ERROR(log->Init());
  if (options.fsync == FsyncPolicy::kInterval && options.sync_thread) {
    log->sync_thread_ = std::thread([raw = log.get()] { raw->SyncLoop(); });
  }
  return log;
}

StreamLog::~StreamLog() {
  if (Status s = Close(); !s.ok()) {
    log::Error("stream log {}: closing: {}", dir_, s.ToString());
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string StreamLog::Where(const Segment& seg) const {
  return "stream log " + dir_ + ": segment " + seg.name;
}

Status StreamLog::Init() {
  RETURN_IF_ERROR(env_.CreateDirs(dir_));
  const std::string lock_path = JoinPath(dir_, sf::kLockFileName);
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return ErrnoToStatus(errno, "open " + lock_path);
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return UnavailableError("stream log " + dir_ + " is open in another StreamLog");
    }
    return ErrnoToStatus(errno, "lock " + lock_path);
  }

  ASSIGN_OR_RETURN(std::vector<std::string> names, env_.ListDir(dir_));
  std::vector<std::pair<uint64_t, std::string>> segments;
  const std::string start_tmp = std::string(sf::kStartFileName) + ".tmp-";
  for (const std::string& name : names) {
    const bool segment_tmp =
        EndsWith(name, sf::kTempSuffix) &&
        ParseSegmentName(name.substr(0, name.size() - (sizeof(sf::kTempSuffix) - 1)));
    if (segment_tmp || name.rfind(start_tmp, 0) == 0) {
      // A rewrite by Open or a start file write that a crash interrupted:
      // the file it was to replace is intact.
      RETURN_IF_ERROR(env_.RemoveFile(JoinPath(dir_, name)));
      continue;
    }
    if (!EndsWith(name, sf::kSegmentSuffix)) continue;  // lock, start, foreign files
    const std::optional<uint64_t> first = ParseSegmentName(name);
    if (!first) {
      return DataLossError("stream log " + dir_ + ": unexpected segment file name " +
                           QuoteForMessage(name));
    }
    segments.emplace_back(*first, name);
  }
  std::sort(segments.begin(), segments.end());
  return Recover(std::move(segments));
}

Status StreamLog::Recover(std::vector<std::pair<uint64_t, std::string>> names) {
  // The first retained offset, if TruncateBefore ever recorded one.
  std::optional<uint64_t> start_file;
  const std::string start_path = JoinPath(dir_, sf::kStartFileName);
  ASSIGN_OR_RETURN(bool has_start, env_.FileExists(start_path));
  if (has_start) {
    const std::string where = "stream log " + dir_ + ": start file";
    ASSIGN_OR_RETURN(uint64_t size, env_.FileSize(start_path));
    if (size > kMaxStartFileBytes) {
      return DataLossError(where + ": " + std::to_string(size) + " bytes, not " +
                           std::to_string(sf::kStartFileSize));
    }
    ASSIGN_OR_RETURN(Bytes bytes, env_.ReadFile(start_path, kMaxStartFileBytes));
    ASSIGN_OR_RETURN(start_file, DecodeStartFile(bytes, where));
  }

  if (names.empty()) {
    if (start_file) {
      return DataLossError("stream log " + dir_ + ": the start file says offset " +
                           std::to_string(*start_file) + " but there is no segment");
    }
    RETURN_IF_ERROR(CreateSegment(0));
    return OkStatus();
  }

  // Segments wholly below the start are what an interrupted TruncateBefore
  // left: it records the start before deleting. Segment i holds offsets
  // [first_i, first_{i+1}), so it goes when first_{i+1} <= start.
  size_t keep = 0;
  while (start_file && keep + 1 < names.size() && names[keep + 1].first <= *start_file) {
    RETURN_IF_ERROR(env_.RemoveFile(JoinPath(dir_, names[keep].second)));
    ++recovery_.segments_removed;
    ++keep;
  }
  if (keep > 0) {
    RETURN_IF_ERROR(env_.SyncDir(dir_));
    log::Info("stream log {}: removed {} segment(s) below the first retained offset {}", dir_, keep,
              *start_file);
  }
  names.erase(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(keep));

  std::optional<uint64_t> expected_first;  // end of the previous segment
  uint64_t last_valid_bytes = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const bool last = i + 1 == names.size();
    auto seg = std::make_shared<Segment>();
    seg->name = names[i].second;
    seg->first_offset = names[i].first;
    const std::string where = "stream log " + dir_ + ": segment " + seg->name;
    const std::string path = JoinPath(dir_, seg->name);
    ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, env_.NewRandomAccessFile(path));
    const uint64_t size = file->Size();
    if (size > sf::kMaxSegmentFileBytes) {
      return DataLossError(where + ": " + std::to_string(size) +
                           " bytes, larger than any segment can be");
    }
    if (expected_first && seg->first_offset != *expected_first) {
      return DataLossError(where + ": starts at offset " + std::to_string(seg->first_offset) +
                           " but the previous segment ends at " + std::to_string(*expected_first));
    }

    // A last segment whose header never reached the disk: a crash while the
    // segment was being created, before any record went into it.
    bool torn_header = last && size < sf::kHeaderSize;
    Bytes header;
    if (size >= sf::kHeaderSize) RETURN_IF_ERROR(file->Read(0, sf::kHeaderSize, header));
    if (last && !torn_header &&
        std::all_of(header.begin(), header.end(), [](uint8_t b) { return b == 0; })) {
      torn_header = true;
      Bytes window;
      for (uint64_t pos = sf::kHeaderSize; pos < size && torn_header; pos += window.size()) {
        RETURN_IF_ERROR(file->Read(
            pos, static_cast<size_t>(std::min<uint64_t>(kScanWindow, size - pos)), window));
        torn_header = std::all_of(window.begin(), window.end(), [](uint8_t b) { return b == 0; });
      }
    }
    if (torn_header) {
      seg->created_unix_ns = clock_.NowUnixNanos();
      seg->end_offset = seg->first_offset;
      seg->bytes = sf::kHeaderSize;
      recovery_.header_recreated = true;
      recovery_.segment = seg->name;
      recovery_.offset = seg->first_offset;
      recovery_.bytes_dropped = size;
      log::Warn("{}: torn header ({} bytes); creating the segment again, empty", where, size);
      segments_.push_back(std::move(seg));
      last_valid_bytes = sf::kHeaderSize;
      break;
    }
    if (size < sf::kHeaderSize) return DataLossError(where + ": too short for a segment header");
    ASSIGN_OR_RETURN(SegmentHeader h, DecodeSegmentHeader(header, where));
    if (h.first_offset != seg->first_offset) {
      return DataLossError(where + ": header says first offset " + std::to_string(h.first_offset) +
                           " but the file name says " + std::to_string(seg->first_offset));
    }
    seg->created_unix_ns = h.created_unix_ns;

    FrameScanner scan(*file, sf::kHeaderSize, size, kScanWindow);
    uint64_t offset = seg->first_offset;
    uint64_t valid_bytes = size;
    uint64_t last_index_position = sf::kHeaderSize;
    for (;;) {
      ASSIGN_OR_RETURN(FrameScanner::Check check, scan.Next(offset));
      if (check == FrameScanner::Check::kOk && offset == std::numeric_limits<uint64_t>::max()) {
        return DataLossError(where + ": " + RecordAt(offset, scan.position()) +
                             ": offsets overflow");
      }
      if (check == FrameScanner::Check::kOk) {
        if (scan.position() - last_index_position >= options_.index_interval_bytes) {
          seg->index.push_back(IndexEntry{static_cast<uint32_t>(offset - seg->first_offset),
                                          static_cast<uint32_t>(scan.position())});
          last_index_position = scan.position();
        }
        ++offset;
        continue;
      }
      if (check == FrameScanner::Check::kEnd) break;
      const uint64_t damaged_at = scan.position();
      const std::string reason = Describe(check, scan);
      const std::string what = where + ": " + RecordAt(offset, damaged_at) + ": " + reason;
      if (!last) {
        // Older segments were complete and fsync'd before the next one was
        // created: nothing in them can be torn.
        return DataLossError(what);
      }
      if (check == FrameScanner::Check::kBadCrc && !options_.repair_damaged_last_segment) {
        // A torn write leaves nothing valid after the damage. A record that
        // checks out behind it means the damage is inside the segment.
        scan.SkipDamaged();
        ASSIGN_OR_RETURN(FrameScanner::Check after, scan.Next(offset + 1));
        if (after == FrameScanner::Check::kOk) {
          return DataLossError(what +
                               ", and the record after it is valid: damage inside the segment, "
                               "not a torn tail");
        }
      }
      valid_bytes = damaged_at;
      recovery_.tail_truncated = true;
      recovery_.segment = seg->name;
      recovery_.offset = offset;
      recovery_.byte_position = damaged_at;
      recovery_.bytes_dropped = size - damaged_at;
      recovery_.reason = reason;
      log::Warn("{}: dropped a torn tail at offset {} (byte {}, {} bytes): {}", where, offset,
                damaged_at, recovery_.bytes_dropped, reason);
      break;
    }
    seg->end_offset = offset;
    seg->bytes = valid_bytes;
    last_valid_bytes = valid_bytes;
    expected_first = seg->end_offset;
    segments_.push_back(std::move(seg));
  }

  const std::shared_ptr<Segment>& tail = segments_.back();
  start_ = std::max(segments_.front()->first_offset, start_file.value_or(0));
  end_ = tail->end_offset;
  if (start_ > end_) {
    return DataLossError("stream log " + dir_ + ": the start file says offset " +
                         std::to_string(start_) + " but the log ends at " + std::to_string(end_));
  }
  return RewriteLastSegment(tail, last_valid_bytes);
}

Status StreamLog::RewriteLastSegment(const std::shared_ptr<Segment>& seg, uint64_t valid_bytes) {
  Result<std::unique_ptr<WritableFile>> out = CopySegmentPrefix(*seg, valid_bytes);
  if (!out.ok())
    return out.status().WithContext("stream log " + dir_ + ": rewriting the last segment");
  // Appends go on in the rewritten file (the descriptor follows the rename).
  active_ = std::move(*out);
  durable_end_ = end_;
  durable_bytes_ = valid_bytes;
  buffer_end_offset_ = end_;
  last_index_position_ = seg->index.empty() ? sf::kHeaderSize : seg->index.back().position;
  return OkStatus();
}

Result<std::unique_ptr<WritableFile>> StreamLog::CopySegmentPrefix(const Segment& seg,
                                                                   uint64_t valid_bytes) {
  const std::string path = JoinPath(dir_, seg.name);
  const std::string tmp = path + sf::kTempSuffix;
  // A copy that failed earlier in this process may have left its file.
  ASSIGN_OR_RETURN(bool stale, env_.FileExists(tmp));
  if (stale) RETURN_IF_ERROR(env_.RemoveFile(tmp));
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> out, env_.NewWritableFile(tmp));
  Status s = out->Append(EncodeSegmentHeader(seg.first_offset, seg.created_unix_ns));
  if (s.ok() && valid_bytes > sf::kHeaderSize) {
    Result<std::unique_ptr<RandomAccessFile>> in = env_.NewRandomAccessFile(path);
    s = in.status();
    Bytes chunk;
    for (uint64_t pos = sf::kHeaderSize; s.ok() && pos < valid_bytes; pos += chunk.size()) {
      s = (*in)->Read(pos, static_cast<size_t>(std::min<uint64_t>(kScanWindow, valid_bytes - pos)),
                      chunk);
      if (s.ok()) s = out->Append(chunk);
    }
  }
  if (s.ok()) s = out->Sync();
  if (s.ok()) s = env_.RenameFile(tmp, path);
  if (s.ok()) s = env_.SyncDir(dir_);
  if (!s.ok()) {
    out.reset();
    env_.RemoveFile(tmp).IgnoreError();
    return s;
  }
  std::unique_ptr<WritableFile> renamed = std::make_unique<RenamedFile>(std::move(out), path);
  return renamed;
}

Status StreamLog::CreateSegment(uint64_t first_offset) {
  auto seg = std::make_shared<Segment>();
  seg->name = sf::SegmentFileName(first_offset);
  seg->first_offset = first_offset;
  seg->created_unix_ns = clock_.NowUnixNanos();
  seg->end_offset = first_offset;
  seg->bytes = sf::kHeaderSize;
  const std::string path = JoinPath(dir_, seg->name);
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env_.NewWritableFile(path));
  // Header and directory entry are durable before any record goes in, so a
  // torn header can only be found on a segment that holds no record.
  RETURN_IF_ERROR(file->Append(EncodeSegmentHeader(first_offset, seg->created_unix_ns)));
  RETURN_IF_ERROR(file->Sync());
  RETURN_IF_ERROR(env_.SyncDir(dir_));
  active_ = std::move(file);
  last_index_position_ = sf::kHeaderSize;
  buffer_end_offset_ = first_offset;
  durable_bytes_ = sf::kHeaderSize;
  std::lock_guard<std::mutex> l(mu_);
  if (segments_.empty()) {
    start_ = end_ = durable_end_ = first_offset;
  }
  segments_.push_back(std::move(seg));
  return OkStatus();
}

Result<AppendResult> StreamLog::Append(std::span<const ByteView> records) {
  // Everything is checked before anything is allocated or written.
  if (records.empty()) return InvalidArgumentError("empty batch: nothing to append");
  uint64_t total = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].size() > options_.max_record_bytes) {
      return InvalidArgumentError("record " + std::to_string(i) + " of the batch is " +
                                  std::to_string(records[i].size()) + " bytes, over the limit of " +
                                  std::to_string(options_.max_record_bytes) + " bytes");
    }
    total += sf::kFrameSize + records[i].size();
  }
  if (total > options_.max_batch_bytes) {
    return InvalidArgumentError("batch of " + std::to_string(records.size()) + " records is " +
                                std::to_string(total) + " bytes with frames, over the limit of " +
                                std::to_string(options_.max_batch_bytes) + " bytes");
  }

  AppendResult result;
  {
    std::lock_guard<std::mutex> a(append_mu_);
    RETURN_IF_ERROR(ResumeLocked());
    {
      std::lock_guard<std::mutex> l(mu_);
      if (closed_) return FailedPreconditionError("stream log " + dir_ + " is closed");
      if (!error_.ok()) return error_;
      if (records.size() > std::numeric_limits<uint64_t>::max() - end_) {
        return ResourceExhaustedError("stream log " + dir_ + ": offsets exhausted");
      }
      result.first = end_;
      result.epoch = epoch_;
    }
    result.last = result.first + records.size() - 1;

    Status s;
    uint64_t offset = result.first;
    for (const ByteView record : records) {
      const uint64_t frame = sf::kFrameSize + record.size();
      const Segment& seg = *segments_.back();
      uint64_t position = active_->Size() + buffer_.size();
      if (buffer_end_offset_ > seg.first_offset && position + frame > options_.segment_bytes) {
        s = WriteBuffered();
        if (s.ok()) s = RollLocked();
        if (!s.ok()) break;
        position = active_->Size();
      }
      if (position - last_index_position_ >= options_.index_interval_bytes) {
        pending_index_.push_back(
            IndexEntry{static_cast<uint32_t>(offset - segments_.back()->first_offset),
                       static_cast<uint32_t>(position)});
        last_index_position_ = position;
      }
      if (buffer_.capacity() == 0) buffer_.reserve(kWriteChunk + 4096);
      uint8_t frame_header[sf::kFrameSize];
      StoreU32(frame_header, static_cast<uint32_t>(record.size()));
      StoreU32(frame_header + 4, sf::RecordCrc(offset, record));
      buffer_.insert(buffer_.end(), frame_header, frame_header + sf::kFrameSize);
      buffer_.insert(buffer_.end(), record.begin(), record.end());
      buffer_end_offset_ = ++offset;
      if (buffer_.size() >= kWriteChunk) {
        s = WriteBuffered();
        if (!s.ok()) break;
      }
    }
    if (s.ok()) s = WriteBuffered();
    if (!s.ok()) {
      buffer_.clear();
      pending_index_.clear();
      std::lock_guard<std::mutex> l(mu_);
      return FailLocked(s);
    }
  }
  if (options_.fsync == FsyncPolicy::kEveryBatch) {
    RETURN_IF_ERROR(SyncThrough(result.last, result.epoch));
  }
  return result;
}

Status StreamLog::WriteBuffered() {
  if (buffer_.empty()) return OkStatus();
  RETURN_IF_ERROR(active_->Append(buffer_));
  bool wake = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    Segment& seg = *segments_.back();
    seg.bytes = active_->Size();
    seg.end_offset = buffer_end_offset_;
    seg.index.insert(seg.index.end(), pending_index_.begin(), pending_index_.end());
    end_ = buffer_end_offset_;
    if (!dirty_since_) {
      dirty_since_ = clock_.MonotonicNanos();
      wake = true;
    }
  }
  if (wake) sync_cv_.notify_one();
  buffer_.clear();
  pending_index_.clear();
  return OkStatus();
}

Status StreamLog::RollLocked() {
  // The segment is made durable before the next one exists: Open treats any
  // damage in a segment that is not the last as data loss.
  RETURN_IF_ERROR(SyncLocked());
  RETURN_IF_ERROR(active_->Close());
  active_.reset();
  return CreateSegment(buffer_end_offset_);
}

Status StreamLog::SyncLocked() {
  uint64_t target = 0, target_bytes = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!error_.ok()) return error_;
    // A roll that failed to create the next segment left no active one
    // (and set error_); otherwise only Close clears it.
    if (!active_) return FailedPreconditionError("stream log " + dir_ + " is closed");
    target = end_;
    target_bytes = segments_.back()->bytes;  // the active segment: what it holds now
  }
  const Status s = active_->Sync();
  std::lock_guard<std::mutex> l(mu_);
  if (!s.ok()) {
    // The file's content is unknown now: never sync it again and call it
    // durable. The next writer discards what was not durable.
    return FailLocked(s);
  }
  durable_end_ = std::max(durable_end_, target);
  durable_bytes_ = target_bytes;
  if (durable_end_ == end_) dirty_since_.reset();
  durable_cv_.notify_all();
  return OkStatus();
}

Status StreamLog::FailLocked(const Status& s) {
  if (error_.ok()) {
    error_ =
        s.WithContext("stream log " + dir_ + ": records from offset " +
                      std::to_string(durable_end_) + " on were not made durable and are discarded");
    log::Error("{}; appends go on from offset {} once the tail is discarded", error_.ToString(),
               durable_end_);
  }
  durable_cv_.notify_all();
  return error_;
}

Status StreamLog::DiscardedStatusLocked(uint64_t offset, uint64_t epoch) const {
  if (epoch > epoch_) {
    return InvalidArgumentError("stream log " + dir_ + ": epoch " + std::to_string(epoch) +
                                " is in the future (the log is at " + std::to_string(epoch_) + ")");
  }
  for (const Discard& d : discards_) {
    if (d.epoch != epoch) continue;
    if (offset < d.from) return OkStatus();  // durable before the failure: kept
    return d.cause;
  }
  return AbortedError("stream log " + dir_ + ": offset " + std::to_string(offset) +
                      " was written in epoch " + std::to_string(epoch) +
                      ", too many failures ago to tell whether it was kept; treat it as lost");
}

Status StreamLog::SyncThrough(uint64_t offset, uint64_t epoch) {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    // A discard since the batch was written: its records are gone unless
    // they were durable before the failure.
    if (epoch != epoch_) return DiscardedStatusLocked(offset, epoch);
    if (durable_end_ > offset) return OkStatus();
    if (!error_.ok()) return error_;
    if (closed_) return CancelledError("stream log " + dir_ + " is closed");
    if (syncing_) {
      // Group commit: the sync in flight may cover this offset too.
      durable_cv_.wait(l);
      continue;
    }
    syncing_ = true;
    l.unlock();
    Status s;
    {
      std::lock_guard<std::mutex> a(append_mu_);
      s = SyncLocked();
    }
    l.lock();
    syncing_ = false;
    durable_cv_.notify_all();
    // The sync may have been of a newer epoch's file: the loop looks again.
    if (!s.ok() && epoch == epoch_) return s;
  }
}

Status StreamLog::WaitDurable(uint64_t offset) {
  uint64_t epoch = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    epoch = epoch_;
  }
  return WaitDurableIn(offset, epoch);
}

Status StreamLog::WaitDurable(const AppendResult& appended) {
  return WaitDurableIn(appended.last, appended.epoch);
}

Status StreamLog::WaitDurableIn(uint64_t offset, uint64_t epoch) {
  std::unique_lock<std::mutex> l(mu_);
  if (epoch == epoch_ && offset >= end_) {
    return OutOfRangeError("stream log " + dir_ + ": offset " + std::to_string(offset) +
                           " has not been appended (the log ends at " + std::to_string(end_) + ")");
  }
  durable_cv_.wait(
      l, [&] { return epoch != epoch_ || durable_end_ > offset || !error_.ok() || closed_; });
  if (epoch != epoch_) return DiscardedStatusLocked(offset, epoch);
  if (durable_end_ > offset) return OkStatus();
  if (!error_.ok()) return error_;
  return CancelledError("stream log " + dir_ + " closed before offset " + std::to_string(offset) +
                        " was durable");
}

Status StreamLog::Sync() {
  {
    std::lock_guard<std::mutex> a(append_mu_);
    RETURN_IF_ERROR(ResumeLocked());
  }
  uint64_t target = 0, epoch = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (durable_end_ >= end_) return error_;
    target = end_ - 1;
    epoch = epoch_;
  }
  return SyncThrough(target, epoch);
}

Status StreamLog::SyncIfDue() {
  uint64_t target = 0, epoch = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!dirty_since_ || durable_end_ >= end_) return error_;
    const int64_t interval = int64_t{options_.fsync_interval_ms} * 1'000'000;
    if (clock_.MonotonicNanos() - *dirty_since_ < interval) return error_;
    target = end_ - 1;
    epoch = epoch_;
  }
  return SyncThrough(target, epoch);
}

Status StreamLog::ResumeLocked() {
  Status cause;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_ || error_.ok()) return OkStatus();
    if (unrecoverable_) return error_;
    cause = error_;
  }
  return DiscardUnsyncedTailLocked(cause);
}

Status StreamLog::DiscardUnsyncedTailLocked(const Status& cause) {
  const std::shared_ptr<Segment> seg = segments_.back();  // stable: append_mu_ is held
  const std::string where = Where(*seg);
  uint64_t keep_end = 0, discarded_end = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    keep_end = durable_end_;
    discarded_end = end_;
  }
  const uint64_t keep_bytes = durable_bytes_;
  auto give_up = [&](const Status& why) {
    std::lock_guard<std::mutex> l(mu_);
    unrecoverable_ = true;
    error_ = why;
    log::Error("{}", why.ToString());
    durable_cv_.notify_all();
    return why;
  };
  // Older segments were durable before this one was created, so the
  // durable part of the log ends in this segment.
  if (keep_end < seg->first_offset || keep_end > seg->end_offset || keep_bytes < sf::kHeaderSize ||
      keep_bytes > seg->bytes) {
    return give_up(InternalError(where + ": durable end " + std::to_string(keep_end) + " (byte " +
                                 std::to_string(keep_bytes) + ") is outside the segment"));
  }

  // Check the durable prefix record by record: it is what the log keeps.
  {
    ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file,
                     env_.NewRandomAccessFile(JoinPath(dir_, seg->name)));
    FrameScanner scan(*file, sf::kHeaderSize, keep_bytes, kScanWindow);
    uint64_t offset = seg->first_offset;
    for (;;) {
      ASSIGN_OR_RETURN(FrameScanner::Check check, scan.Next(offset));
      if (check == FrameScanner::Check::kEnd) break;
      if (check != FrameScanner::Check::kOk) {
        return give_up(DataLossError(where + ": the durable part no longer checks out (" +
                                     RecordAt(offset, scan.position()) + ": " +
                                     Describe(check, scan) + "), found after " + cause.ToString()));
      }
      ++offset;
    }
    if (offset != keep_end) {
      return give_up(DataLossError(where + ": the durable part holds records up to offset " +
                                   std::to_string(offset) + ", not " + std::to_string(keep_end)));
    }
  }
  // A roll that failed after its fsync may have left the next segment's file.
  ASSIGN_OR_RETURN(std::vector<std::string> names, env_.ListDir(dir_));
  for (const std::string& name : names) {
    const std::optional<uint64_t> first = ParseSegmentName(name);
    if (first && *first > seg->first_offset) {
      RETURN_IF_ERROR(env_.RemoveFile(JoinPath(dir_, name)));
    }
  }
  // The copy is fsync'd, renamed over the segment, and the directory (with
  // any removal above) fsync'd before a record goes in.
  Result<std::unique_ptr<WritableFile>> fresh = CopySegmentPrefix(*seg, keep_bytes);
  if (!fresh.ok()) {
    return fresh.status().WithContext(where + ": discarding the records from offset " +
                                      std::to_string(keep_end) + " on after " + cause.ToString());
  }
  if (active_) active_->Close().IgnoreError();  // never synced again: its content is unknown
  active_ = std::move(*fresh);
  buffer_.clear();
  pending_index_.clear();
  buffer_end_offset_ = keep_end;
  durable_bytes_ = keep_bytes;
  {
    std::lock_guard<std::mutex> l(mu_);
    seg->end_offset = keep_end;
    seg->bytes = keep_bytes;
    std::erase_if(seg->index, [&](const IndexEntry& e) { return e.position >= keep_bytes; });
    end_ = keep_end;
    dirty_since_.reset();
    discards_.push_back(Discard{epoch_, keep_end, cause});
    if (discards_.size() > kMaxDiscards) discards_.pop_front();
    ++epoch_;
    error_ = OkStatus();
    durable_cv_.notify_all();
  }
  last_index_position_ = seg->index.empty() ? sf::kHeaderSize : seg->index.back().position;
  log::Warn(
      "{}: discarded records [{}, {}) that were not durable when a write or fsync failed; "
      "appends go on from offset {}",
      where, keep_end, discarded_end, keep_end);
  return OkStatus();
}

void StreamLog::SyncLoop() {
  const int64_t interval = int64_t{options_.fsync_interval_ms} * 1'000'000;
  std::unique_lock<std::mutex> l(mu_);
  while (!stopping_) {
    if (!dirty_since_ || !error_.ok()) {
      sync_cv_.wait(l);
      continue;
    }
    const int64_t wait = *dirty_since_ + interval - clock_.MonotonicNanos();
    if (wait > 0) {
      sync_cv_.wait_for(l, std::chrono::nanoseconds(wait));
      continue;
    }
    l.unlock();
    if (Status s = SyncIfDue(); !s.ok()) {
      log::Error("stream log {}: background fsync: {}", dir_, s.ToString());
    }
    l.lock();
  }
}

Result<std::vector<StreamRecord>> StreamLog::Read(uint64_t from_offset, size_t max_records,
                                                  size_t max_bytes) const {
  std::vector<StreamRecord> out;
  uint64_t bytes = 0;
  uint64_t offset = from_offset;
  while (out.size() < max_records) {
    std::shared_ptr<Segment> seg;
    uint64_t seg_end = 0, seg_bytes = 0;
    IndexEntry hint{0, static_cast<uint32_t>(sf::kHeaderSize)};
    {
      std::lock_guard<std::mutex> l(mu_);
      if (offset < start_) {
        if (!out.empty()) break;  // truncated while we read: return what we have
        return OutOfRangeError("stream log " + dir_ + ": offset " + std::to_string(offset) +
                               " is below the first available offset " + std::to_string(start_));
      }
      if (offset >= end_) break;
      auto it = std::upper_bound(
          segments_.begin(), segments_.end(), offset,
          [](uint64_t o, const std::shared_ptr<Segment>& s) { return o < s->first_offset; });
      seg = *(it - 1);  // start_ >= the first segment's first offset
      seg_end = seg->end_offset;
      seg_bytes = seg->bytes;
      const uint32_t rel = static_cast<uint32_t>(offset - seg->first_offset);
      auto idx =
          std::upper_bound(seg->index.begin(), seg->index.end(), rel,
                           [](uint32_t r, const IndexEntry& e) { return r < e.relative_offset; });
      if (idx != seg->index.begin()) hint = *(idx - 1);
    }
    Result<std::unique_ptr<RandomAccessFile>> file =
        env_.NewRandomAccessFile(JoinPath(dir_, seg->name));
    if (!file.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      // Deleted by TruncateBefore since we looked: start_ has moved past it.
      if (file.status().code() == StatusCode::kNotFound && seg->end_offset <= start_) continue;
      return file.status();
    }
    FrameScanner scan(**file, hint.position, seg_bytes, kReadWindow);
    uint64_t cur = seg->first_offset + hint.relative_offset;
    while (cur < seg_end && out.size() < max_records) {
      Result<FrameScanner::Check> check = scan.Next(cur);
      if (!check.ok() || *check != FrameScanner::Check::kOk) {
        {
          // An unsynced tail discarded since we looked (the segment was
          // copied without it): the outer loop looks again from here.
          std::lock_guard<std::mutex> l(mu_);
          if (cur >= seg->end_offset) break;
        }
        if (!check.ok()) return check.status();
        return DataLossError(Where(*seg) + ": " + RecordAt(cur, scan.position()) + ": " +
                             Describe(*check, scan));
      }
      if (cur >= offset) {
        const ByteView payload = scan.payload();
        if (!out.empty() && bytes + payload.size() > max_bytes) return out;
        out.push_back(StreamRecord{cur, Bytes(payload.begin(), payload.end())});
        bytes += payload.size();
      }
      ++cur;
    }
    offset = std::max(offset, cur);
  }
  return out;
}

Status StreamLog::TruncateBefore(uint64_t offset) {
  {
    std::lock_guard<std::mutex> a(append_mu_);
    RETURN_IF_ERROR(ResumeLocked());
  }
  uint64_t epoch = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return FailedPreconditionError("stream log " + dir_ + " is closed");
    if (offset > end_) {
      return OutOfRangeError("stream log " + dir_ + ": cannot truncate before offset " +
                             std::to_string(offset) + ": the log ends at " + std::to_string(end_));
    }
    if (offset <= start_) return OkStatus();
    epoch = epoch_;
  }
  // The start file must never point past what a crash would leave.
  RETURN_IF_ERROR(SyncThrough(offset - 1, epoch));

  std::vector<std::shared_ptr<Segment>> doomed;
  {
    std::lock_guard<std::mutex> a(append_mu_);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!error_.ok()) return error_;
      if (closed_) return FailedPreconditionError("stream log " + dir_ + " is closed");
      if (offset <= start_) return OkStatus();
    }
    const Segment& tail = *segments_.back();
    if (tail.end_offset > tail.first_offset && tail.end_offset <= offset) {
      if (Status s = RollLocked(); !s.ok()) {
        std::lock_guard<std::mutex> l(mu_);
        return FailLocked(s);
      }
    }
    RETURN_IF_ERROR(
        WriteFileAtomic(env_, JoinPath(dir_, sf::kStartFileName), EncodeStartFile(offset)));
    std::lock_guard<std::mutex> l(mu_);
    start_ = offset;
    while (segments_.size() > 1 && segments_.front()->end_offset <= offset) {
      doomed.push_back(segments_.front());
      segments_.erase(segments_.begin());
    }
  }
  // Readers that already opened one of these files keep reading it.
  for (const std::shared_ptr<Segment>& seg : doomed) {
    RETURN_IF_ERROR(env_.RemoveFile(JoinPath(dir_, seg->name)));
  }
  if (!doomed.empty()) RETURN_IF_ERROR(env_.SyncDir(dir_));
  return OkStatus();
}

Status StreamLog::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return OkStatus();
    stopping_ = true;
  }
  sync_cv_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();

  Status s;
  {
    std::lock_guard<std::mutex> a(append_mu_);
    if (active_) {
      s = SyncLocked();
      const Status c = active_->Close();
      if (s.ok()) s = c;
      active_.reset();
    }
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    durable_cv_.notify_all();
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  return s;
}

uint64_t StreamLog::start_offset() const {
  std::lock_guard<std::mutex> l(mu_);
  return start_;
}

uint64_t StreamLog::end_offset() const {
  std::lock_guard<std::mutex> l(mu_);
  return end_;
}

uint64_t StreamLog::epoch() const {
  std::lock_guard<std::mutex> l(mu_);
  return epoch_;
}

Status StreamLog::failure() const {
  std::lock_guard<std::mutex> l(mu_);
  return error_;
}

uint64_t StreamLog::durable_end_offset() const {
  std::lock_guard<std::mutex> l(mu_);
  return durable_end_;
}

std::vector<StreamSegmentInfo> StreamLog::Segments() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<StreamSegmentInfo> out;
  out.reserve(segments_.size());
  for (const std::shared_ptr<Segment>& s : segments_) {
    out.push_back(
        StreamSegmentInfo{s->name, s->first_offset, s->end_offset, s->bytes, s->created_unix_ns});
  }
  return out;
}

}  // namespace ferry::snapshot
