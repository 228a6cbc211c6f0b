#include "snapshot/file_cache.h"

#include <cstring>

#include "snapshot/delta.h"

namespace ferry::snapshot {
namespace {

constexpr uint8_t kMagic[4] = {'F', 'C', 'A', 'C'};
constexpr uint8_t kVersion = 3;
constexpr size_t kHeaderSize = 36;
constexpr size_t kFixedRecordSize = 4 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 4;
constexpr uint32_t kMaxXattrBytes = 1u << 20;
constexpr uint32_t kMaxKeySize = 64 * 1024;
constexpr uint32_t kMaxChunksPerFile = 1u << 24;
constexpr uint32_t kMaxExtentsPerFile = 1u << 20;
// Delta signatures of one file: ~1% of its size; larger files keep none.
constexpr uint32_t kMaxDeltaBlockBytes = 64u << 20;

Bytes EncodeHeader(const FileCacheIdentity& id) {
  Bytes h;
  PutBytes(h, ByteView(kMagic, 4));
  PutU8(h, kVersion);
  PutU8(h, 0);
  PutU16(h, 0);
  PutBytes(h, id.keyset_id);
  PutU32(h, id.params.min_size);
  PutU32(h, id.params.avg_size);
  PutU32(h, id.params.max_size);
  return h;
}

}  // namespace

void AppendDeltaEntry(Bytes& block, const ChunkId& content_id, const BaseList& bases,
                      ByteView signature) {
  PutU8(block, bases.empty() ? 0 : kCachedChunkDelta);
  if (!bases.empty()) {
    PutBytes(block, content_id);
    PutU8(block, static_cast<uint8_t>(bases.size()));
    for (const auto& [id, sealed_size] : bases) {
      PutBytes(block, id);
      PutU32(block, sealed_size);
    }
  }
  PutBytes(block, signature);
}

bool ParseDeltaBlock(ByteView block, const std::vector<CachedChunk>& chunks,
                     std::vector<DeltaEntry>& out) {
  out.resize(chunks.size());
  ByteReader r(block);
  for (size_t i = 0; i < chunks.size(); ++i) {
    DeltaEntry& e = out[i];
    e.bases.clear();
    if (!r.ReadU8(e.flags) || (e.flags & ~kCachedChunkDelta) != 0) return false;
    if (e.flags & kCachedChunkDelta) {
      uint8_t n = 0;
      if (!r.ReadArray(e.content_id) || !r.ReadU8(n) || n == 0 || n > delta::kMaxBases) {
        return false;
      }
      for (uint8_t b = 0; b < n; ++b) {
        ByteView id;
        uint32_t sealed_size = 0;
        if (!r.ReadView(32, id) || !r.ReadU32(sealed_size)) return false;
        ChunkId cid;
        std::copy(id.begin(), id.end(), cid.begin());
        e.bases.emplace_back(cid, sealed_size);
      }
    }
    if (!r.ReadView(delta::SignatureSize(chunks[i].plain_size), e.signature)) return false;
  }
  return r.empty();
}

std::unique_ptr<FileCacheReader> FileCacheReader::Open(Env& env, const std::string& path,
                                                       const FileCacheIdentity& identity,
                                                       std::string* why_unused) {
  std::unique_ptr<FileCacheReader> r(new FileCacheReader());
  r->done_ = true;
  auto unused = [&](const std::string& why) {
    if (why_unused) *why_unused = why;
    return std::move(r);
  };
  Result<std::unique_ptr<RandomAccessFile>> f = env.NewRandomAccessFile(path);
  if (!f.ok())
    return unused(f.status().code() == StatusCode::kNotFound ? "no cache yet"
                                                             : f.status().ToString());
  const uint64_t size = (*f)->Size();
  if (size < kHeaderSize + 32) return unused("cache too short");
  Bytes header;
  if (!(*f)->Read(0, kHeaderSize, header).ok() || header != EncodeHeader(identity)) {
    return unused("cache written for another keyset, chunker or format");
  }
  // Verify the checksum over everything before using any record: a damaged
  // record could otherwise attach wrong content to a file.
  sodium::Blake2bHasher hasher;
  Bytes buf;
  const uint64_t end = size - 32;
  for (uint64_t off = 0; off < end;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(end - off, 1 << 20));
    if (!(*f)->Read(off, n, buf).ok()) return unused("cache unreadable");
    hasher.Update(buf);
    off += n;
  }
  Bytes sum;
  if (!(*f)->Read(end, 32, sum).ok()) return unused("cache unreadable");
  const auto digest = hasher.Finish();
  if (std::memcmp(digest.data(), sum.data(), 32) != 0) return unused("cache checksum mismatch");
  r->file_ = std::move(*f);
  r->end_ = end;
  r->pos_ = kHeaderSize;
  r->buf_file_pos_ = kHeaderSize;
  r->done_ = false;
  return r;
}

bool FileCacheReader::Fill(size_t need) {
  if (buf_.size() - buf_pos_ >= need) return true;
  buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(buf_pos_));
  buf_pos_ = 0;
  const uint64_t avail = end_ - buf_file_pos_;
  const size_t want =
      static_cast<size_t>(std::min<uint64_t>(avail, std::max<size_t>(need, 1 << 18)));
  if (want == 0) return buf_.size() >= need;
  Bytes more;
  if (!file_->Read(buf_file_pos_, want, more).ok()) return false;
  buf_file_pos_ += want;
  buf_.insert(buf_.end(), more.begin(), more.end());
  return buf_.size() >= need;
}

bool FileCacheReader::Advance() {
  has_current_ = false;
  if (done_) return false;
  if (pos_ >= end_) {
    done_ = true;
    return false;
  }
  if (!Fill(kFixedRecordSize)) {
    done_ = true;
    return false;
  }
  const uint8_t* p = buf_.data() + buf_pos_;
  const uint32_t key_len = LoadU32(p);
  const uint32_t n_chunks = LoadU32(p + 36);
  const uint32_t n_extents = LoadU32(p + 40);
  const uint32_t xattr_bytes = LoadU32(p + 44);
  const uint32_t delta_bytes = LoadU32(p + 48);
  if (key_len > kMaxKeySize || n_chunks > kMaxChunksPerFile || n_extents > kMaxExtentsPerFile ||
      xattr_bytes > kMaxXattrBytes || delta_bytes > kMaxDeltaBlockBytes) {
    done_ = true;
    return false;
  }
  const size_t total = kFixedRecordSize + key_len + size_t{n_chunks} * 40 + size_t{n_extents} * 16 +
                       xattr_bytes + delta_bytes;
  if (!Fill(total)) {
    done_ = true;
    return false;
  }
  p = buf_.data() + buf_pos_;
  CachedFile& c = current_;
  c.ino = LoadU64(p + 4);
  c.size = LoadU64(p + 12);
  c.mtime_ns = static_cast<int64_t>(LoadU64(p + 20));
  c.ctime_ns = static_cast<int64_t>(LoadU64(p + 28));
  p += kFixedRecordSize;
  c.key.assign(reinterpret_cast<const char*>(p), key_len);
  p += key_len;
  c.chunks.resize(n_chunks);
  for (uint32_t i = 0; i < n_chunks; ++i, p += 40) {
    std::memcpy(c.chunks[i].id.data(), p, 32);
    c.chunks[i].plain_size = LoadU32(p + 32);
    c.chunks[i].sealed_size = LoadU32(p + 36);
  }
  c.extents.resize(n_extents);
  for (uint32_t i = 0; i < n_extents; ++i, p += 16) {
    c.extents[i] = {LoadU64(p), LoadU64(p + 8)};
  }
  c.xattrs.clear();
  ByteReader xr(ByteView(p, xattr_bytes));
  while (!xr.empty()) {
    uint16_t name_len = 0;
    uint32_t value_len = 0;
    ByteView name, value;
    if (!xr.ReadU16(name_len) || !xr.ReadU32(value_len) || !xr.ReadView(name_len, name) ||
        !xr.ReadView(value_len, value)) {
      done_ = true;  // malformed: stop using the cache (the checksum makes this a bug)
      return false;
    }
    c.xattrs.emplace_back(ToString(name), ToString(value));
  }
  p += xattr_bytes;
  c.delta.assign(p, p + delta_bytes);
  thread_local std::vector<DeltaEntry> entries;
  if (delta_bytes != 0 && !ParseDeltaBlock(c.delta, c.chunks, entries)) {
    done_ = true;  // malformed: stop using the cache (the checksum makes this a bug)
    return false;
  }
  buf_pos_ += total;
  pos_ += total;
  has_current_ = true;
  return true;
}

const CachedFile* FileCacheReader::Find(const std::string& key) {
  if (done_ && !has_current_) return nullptr;
  if (!has_current_ && !Advance()) return nullptr;
  while (current_.key < key) {
    if (!Advance()) return nullptr;
  }
  return current_.key == key ? &current_ : nullptr;
}

FileCacheWriter::FileCacheWriter(Env& env, std::string path, std::string tmp,
                                 std::unique_ptr<WritableFile> f)
    : env_(env), path_(std::move(path)), tmp_(std::move(tmp)), file_(std::move(f)) {}

FileCacheWriter::~FileCacheWriter() {
  if (!committed_) {
    file_->Close().IgnoreError();
    env_.RemoveFile(tmp_).IgnoreError();
  }
}

Result<std::unique_ptr<FileCacheWriter>> FileCacheWriter::Create(
    Env& env, const std::string& path, const FileCacheIdentity& identity) {
  const std::string tmp = path + ".tmp-" + HexEncode(sodium::RandomArray<8>());
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, env.NewWritableFile(tmp, 0600));
  std::unique_ptr<FileCacheWriter> w(new FileCacheWriter(env, path, tmp, std::move(f)));
  RETURN_IF_ERROR(w->Write(EncodeHeader(identity)));
  return w;
}

Status FileCacheWriter::Write(ByteView b) {
  // One buffer of kWriteBufferSize for the writer's life: written out before
  // it would grow (a vector grown past it would double), and a record
  // larger than it goes straight to the file.
  hasher_.Update(b);
  if (buf_.capacity() < kWriteBufferSize) buf_.reserve(kWriteBufferSize);
  if (buf_.size() + b.size() > buf_.capacity() && !buf_.empty()) {
    Status s = file_->Append(buf_);
    buf_.clear();
    RETURN_IF_ERROR(s);
  }
  if (b.size() > buf_.capacity()) return file_->Append(b);
  buf_.insert(buf_.end(), b.begin(), b.end());
  return OkStatus();
}

Status FileCacheWriter::Add(const CachedFile& c) {
  if (!last_key_.empty() && !(last_key_ < c.key)) {
    return InternalError("file cache keys out of order");
  }
  last_key_ = c.key;
  size_t xattr_bytes = 0;
  for (const auto& [name, value] : c.xattrs) xattr_bytes += 6 + name.size() + value.size();
  if (c.key.size() > kMaxKeySize || c.chunks.size() > kMaxChunksPerFile ||
      c.extents.size() > kMaxExtentsPerFile || xattr_bytes > kMaxXattrBytes) {
    return OkStatus();  // beyond what a reader accepts: leave this file uncached
  }
  // Delta entries are kept only when complete and within the limit.
  thread_local std::vector<DeltaEntry> entries;
  const bool keep_delta = !c.delta.empty() && c.delta.size() <= kMaxDeltaBlockBytes &&
                          ParseDeltaBlock(c.delta, c.chunks, entries);
  Bytes rec;
  rec.reserve(kFixedRecordSize + c.key.size() + c.chunks.size() * 40 + c.extents.size() * 16);
  PutU32(rec, static_cast<uint32_t>(c.key.size()));
  PutU64(rec, c.ino);
  PutU64(rec, c.size);
  PutU64(rec, static_cast<uint64_t>(c.mtime_ns));
  PutU64(rec, static_cast<uint64_t>(c.ctime_ns));
  PutU32(rec, static_cast<uint32_t>(c.chunks.size()));
  PutU32(rec, static_cast<uint32_t>(c.extents.size()));
  Bytes xattrs;
  for (const auto& [name, value] : c.xattrs) {
    PutU16(xattrs, static_cast<uint16_t>(name.size()));
    PutU32(xattrs, static_cast<uint32_t>(value.size()));
    PutBytes(xattrs, AsBytes(name));
    PutBytes(xattrs, AsBytes(value));
  }
  PutU32(rec, static_cast<uint32_t>(xattrs.size()));
  PutU32(rec, keep_delta ? static_cast<uint32_t>(c.delta.size()) : 0);
  PutBytes(rec, AsBytes(c.key));
  for (const CachedChunk& ch : c.chunks) {
    PutBytes(rec, ch.id);
    PutU32(rec, ch.plain_size);
    PutU32(rec, ch.sealed_size);
  }
  for (const auto& [off, len] : c.extents) {
    PutU64(rec, off);
    PutU64(rec, len);
  }
  PutBytes(rec, xattrs);
  if (keep_delta) PutBytes(rec, c.delta);
  return Write(rec);
}

Status FileCacheWriter::Commit() {
  const auto digest = hasher_.Finish();
  RETURN_IF_ERROR(file_->Append(buf_));
  buf_.clear();
  RETURN_IF_ERROR(file_->Append(digest));
  // No fsync: a cache lost in a crash only costs a re-read. The rename still
  // makes a torn cache impossible to observe (the checksum would catch it).
  RETURN_IF_ERROR(file_->Close());
  RETURN_IF_ERROR(env_.RenameFile(tmp_, path_));
  committed_ = true;
  return OkStatus();
}

}  // namespace ferry::snapshot
