#include "snapshot/ref_set.h"

#include <algorithm>
#include <cstring>
#include <queue>

namespace ferry::snapshot {

namespace {

constexpr uint8_t kMagic[4] = {'F', 'R', 'E', 'F'};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderSize = 16;  // magic, version, 3 reserved, u64 count
constexpr size_t kEntrySize = 36;
constexpr size_t kChecksumSize = 32;
constexpr uint64_t kMaxCount = 1ull << 32;

void EncodeEntry(const RefEntry& e, uint8_t* p) {
  std::memcpy(p, e.id.data(), 32);
  StoreU32(p + 32, e.sealed_size);
}

void DecodeEntry(const uint8_t* p, RefEntry& e) {
  std::memcpy(e.id.data(), p, 32);
  e.sealed_size = LoadU32(p + 32);
}

// Buffered sequential reader of a run file of raw entries.
class RunReader {
 public:
  explicit RunReader(std::unique_ptr<RandomAccessFile> f) : f_(std::move(f)) {}
  // Returns false at the end; error in `s`.
  bool Next(RefEntry& e, Status& s) {
    if (pos_ + kEntrySize > buf_.size()) {
      if (file_pos_ >= f_->Size()) return false;
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(f_->Size() - file_pos_, 64 * kEntrySize * 28));
      s = f_->Read(file_pos_, n, buf_);
      if (!s.ok()) return false;
      file_pos_ += n;
      pos_ = 0;
    }
    DecodeEntry(buf_.data() + pos_, e);
    pos_ += kEntrySize;
    return true;
  }

 private:
  std::unique_ptr<RandomAccessFile> f_;
  Bytes buf_;
  size_t pos_ = 0;
  uint64_t file_pos_ = 0;
};

// Writes entries to a refs file, hashing as it goes.
class RefsFileWriter {
 public:
  RefsFileWriter(std::unique_ptr<WritableFile> f, uint64_t count) : f_(std::move(f)) {
    Bytes header;
    PutBytes(header, ByteView(kMagic, 4));
    PutU8(header, kVersion);
    PutU8(header, 0);
    PutU16(header, 0);
    PutU64(header, count);
    Append(header);
  }
  void Add(const RefEntry& e) {
    if (has_last_ && e.id == last_) return;
    has_last_ = true;
    last_ = e.id;
    uint8_t rec[kEntrySize];
    EncodeEntry(e, rec);
    Append(ByteView(rec, kEntrySize));
    ++written_;
    summary_.sealed_bytes += e.sealed_size;
  }
  uint64_t written() const { return written_; }
  Result<RefSetSummaryInfo> Finish() {
    summary_.digest = hasher_.Finish();
    if (s_.ok()) s_ = f_->Append(buf_);
    if (s_.ok()) s_ = f_->Append(summary_.digest);
    if (s_.ok()) s_ = f_->Sync();
    Status c = f_->Close();
    if (s_.ok()) s_ = c;
    RETURN_IF_ERROR(s_);
    summary_.count = written_;
    return summary_;
  }

 private:
  void Append(ByteView b) {
    // One 1 MiB buffer, written out before it would grow (and double).
    hasher_.Update(b);
    if (buf_.capacity() < kBufferSize) buf_.reserve(kBufferSize);
    if (buf_.size() + b.size() > buf_.capacity()) {
      if (s_.ok()) s_ = f_->Append(buf_);
      buf_.clear();
    }
    buf_.insert(buf_.end(), b.begin(), b.end());  // b is a header or one entry
  }
  static constexpr size_t kBufferSize = 1 << 20;
  std::unique_ptr<WritableFile> f_;
  sodium::Blake2bHasher hasher_;
  Bytes buf_;
  Status s_;
  bool has_last_ = false;
  ChunkId last_{};
  uint64_t written_ = 0;
  RefSetSummaryInfo summary_;
};

}  // namespace

RefSetBuilder::RefSetBuilder(Env& env, std::string tmp_dir, size_t memory_budget)
    : env_(env),
      tmp_dir_(std::move(tmp_dir)),
      max_entries_(std::max<size_t>(memory_budget / sizeof(RefEntry), 1024)) {
  // The whole budget up front: growing by doubling would overshoot it.
  pending_.reserve(max_entries_);
}

RefSetBuilder::~RefSetBuilder() {
  for (const auto& r : runs_) env_.RemoveFile(r).IgnoreError();
}

Status RefSetBuilder::Add(const ChunkId& id, uint32_t sealed_size) {
  pending_.push_back(RefEntry{id, sealed_size});
  if (pending_.size() >= max_entries_) return SpillRun();
  return OkStatus();
}

Status RefSetBuilder::SpillRun() {
  std::sort(pending_.begin(), pending_.end());
  pending_.erase(std::unique(pending_.begin(), pending_.end(),
                             [](const RefEntry& a, const RefEntry& b) { return a.id == b.id; }),
                 pending_.end());
  const std::string path =
      JoinPath(tmp_dir_, "refs-run-" + HexEncode(sodium::RandomArray<8>()) + ".tmp");
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, env_.NewWritableFile(path, 0600));
  runs_.push_back(path);
  Bytes buf;
  buf.reserve(pending_.size() * kEntrySize);
  for (const RefEntry& e : pending_) {
    uint8_t rec[kEntrySize];
    EncodeEntry(e, rec);
    buf.insert(buf.end(), rec, rec + kEntrySize);
  }
  RETURN_IF_ERROR(f->Append(buf));
  RETURN_IF_ERROR(f->Close());
  pending_.clear();
  return OkStatus();
}

Result<RefSetSummaryInfo> RefSetBuilder::Finish(const std::string& path) {
  std::sort(pending_.begin(), pending_.end());
  pending_.erase(std::unique(pending_.begin(), pending_.end(),
                             [](const RefEntry& a, const RefEntry& b) { return a.id == b.id; }),
                 pending_.end());
  // Count distinct ids first (a merge pass), since the header carries the count.
  std::vector<std::unique_ptr<RunReader>> readers;
  auto open_runs = [&]() -> Status {
    readers.clear();
    for (const auto& r : runs_) {
      ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, env_.NewRandomAccessFile(r));
      readers.push_back(std::make_unique<RunReader>(std::move(f)));
    }
    return OkStatus();
  };
  // Merge: a min-heap over (entry, source). Source runs_.size() is `pending_`.
  auto merge = [&](auto&& emit) -> Status {
    RETURN_IF_ERROR(open_runs());
    using Item = std::pair<RefEntry, size_t>;
    auto cmp = [](const Item& a, const Item& b) { return b.first < a.first; };
    std::priority_queue<Item, std::vector<Item>, decltype(cmp)> heap(cmp);
    size_t mem_pos = 0;
    Status s;
    for (size_t i = 0; i < readers.size(); ++i) {
      RefEntry e;
      if (readers[i]->Next(e, s)) heap.push({e, i});
      RETURN_IF_ERROR(s);
    }
    if (mem_pos < pending_.size()) heap.push({pending_[mem_pos++], readers.size()});
    bool has_last = false;
    ChunkId last{};
    while (!heap.empty()) {
      auto [e, src] = heap.top();
      heap.pop();
      if (!has_last || e.id != last) emit(e);
      has_last = true;
      last = e.id;
      if (src == readers.size()) {
        if (mem_pos < pending_.size()) heap.push({pending_[mem_pos++], src});
      } else {
        RefEntry next;
        if (readers[src]->Next(next, s)) heap.push({next, src});
        RETURN_IF_ERROR(s);
      }
    }
    return OkStatus();
  };
  uint64_t count = 0;
  RETURN_IF_ERROR(merge([&](const RefEntry&) { ++count; }));
  if (count > kMaxCount) return ResourceExhaustedError("snapshot references too many chunks");

  const std::string tmp = path + ".tmp-" + HexEncode(sodium::RandomArray<8>());
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, env_.NewWritableFile(tmp, 0644));
  RefsFileWriter writer(std::move(f), count);
  RETURN_IF_ERROR(merge([&](const RefEntry& e) { writer.Add(e); }));
  Result<RefSetSummaryInfo> summary = writer.Finish();
  if (summary.ok() && summary->count != count) {
    summary = InternalError("refs merge produced a different count");
  }
  if (!summary.ok()) {
    env_.RemoveFile(tmp).IgnoreError();
    return summary.status();
  }
  RETURN_IF_ERROR(env_.RenameFile(tmp, path));
  RETURN_IF_ERROR(env_.SyncDir(DirName(path)));
  for (const auto& r : runs_) env_.RemoveFile(r).IgnoreError();
  runs_.clear();
  pending_.clear();
  return summary;
}

Result<std::unique_ptr<RefSetReader>> RefSetReader::Open(Env& env, const std::string& path) {
  std::unique_ptr<RefSetReader> r(new RefSetReader());
  r->origin_ = path;
  ASSIGN_OR_RETURN(r->file_, env.NewRandomAccessFile(path));
  r->file_size_ = r->file_->Size();
  RETURN_IF_ERROR(r->Init());
  return r;
}

Result<std::unique_ptr<RefSetReader>> RefSetReader::FromBytes(Bytes bytes, std::string origin) {
  std::unique_ptr<RefSetReader> r(new RefSetReader());
  r->origin_ = std::move(origin);
  r->memory_ = std::move(bytes);
  r->file_size_ = r->memory_.size();
  RETURN_IF_ERROR(r->Init());
  return r;
}

bool RefSetReader::Fill(size_t need) {
  if (buf_.size() - buf_pos_ >= need) return true;
  buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(buf_pos_));
  buf_pos_ = 0;
  while (buf_.size() < need && file_pos_ < file_size_) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(file_size_ - file_pos_, 1 << 18));
    if (file_) {
      Bytes chunk;
      status_ = file_->Read(file_pos_, n, chunk);
      if (!status_.ok()) return false;
      buf_.insert(buf_.end(), chunk.begin(), chunk.end());
    } else {
      buf_.insert(buf_.end(), memory_.begin() + static_cast<std::ptrdiff_t>(file_pos_),
                  memory_.begin() + static_cast<std::ptrdiff_t>(file_pos_ + n));
    }
    file_pos_ += n;
  }
  return buf_.size() >= need;
}

Status RefSetReader::Init() {
  auto bad = [&](const std::string& what) {
    return DataLossError("refs " + origin_ + ": " + what);
  };
  if (file_size_ < kHeaderSize + kChecksumSize) return bad("too short");
  if (!Fill(kHeaderSize)) return status_.ok() ? bad("too short") : status_;
  const uint8_t* h = buf_.data();
  if (std::memcmp(h, kMagic, 4) != 0) return bad("bad magic");
  if (h[4] != kVersion) return bad("unsupported version " + std::to_string(h[4]));
  if (h[5] != 0 || h[6] != 0 || h[7] != 0) return bad("reserved bytes set");
  count_ = LoadU64(h + 8);
  if (count_ > kMaxCount || file_size_ != kHeaderSize + count_ * kEntrySize + kChecksumSize) {
    return bad("count " + std::to_string(count_) + " does not match the size " +
               std::to_string(file_size_));
  }
  hasher_.Update(ByteView(h, kHeaderSize));
  buf_pos_ = kHeaderSize;
  return OkStatus();
}

bool RefSetReader::Next(RefEntry& out) {
  if (!status_.ok()) return false;
  if (read_ == count_) {
    if (!Fill(kChecksumSize)) {
      if (status_.ok()) status_ = DataLossError("refs " + origin_ + ": missing checksum");
      return false;
    }
    digest_ = hasher_.Finish();
    if (std::memcmp(digest_.data(), buf_.data() + buf_pos_, kChecksumSize) != 0) {
      status_ = DataLossError("refs " + origin_ + ": checksum mismatch");
    }
    buf_pos_ += kChecksumSize;
    ++read_;  // only once
    return false;
  }
  if (read_ > count_) return false;
  if (!Fill(kEntrySize)) {
    if (status_.ok()) status_ = DataLossError("refs " + origin_ + ": truncated");
    return false;
  }
  const uint8_t* p = buf_.data() + buf_pos_;
  hasher_.Update(ByteView(p, kEntrySize));
  DecodeEntry(p, out);
  buf_pos_ += kEntrySize;
  if (has_last_ && !(last_ < out.id)) {
    status_ = DataLossError("refs " + origin_ + ": entries not sorted and unique at index " +
                            std::to_string(read_));
    return false;
  }
  has_last_ = true;
  last_ = out.id;
  ++read_;
  return true;
}

Result<RefSetSummaryInfo> RefSetReader::Summarize(Env& env, const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<RefSetReader> r, Open(env, path));
  RefSetSummaryInfo s;
  RefEntry e;
  while (r->Next(e)) {
    ++s.count;
    s.sealed_bytes += e.sealed_size;
  }
  RETURN_IF_ERROR(r->status());
  s.digest = r->digest();
  return s;
}

}  // namespace ferry::snapshot
