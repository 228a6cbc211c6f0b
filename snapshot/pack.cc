#include "snapshot/pack.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "snapshot/pack_format.h"

namespace ferry::snapshot {

namespace pf = pack_format;

namespace {
constexpr size_t kWriteBuffer = 1 << 20;
}

PackWriter::PackWriter(Env& env, std::string path, std::unique_ptr<WritableFile> file)
    : env_(env), path_(std::move(path)), file_(std::move(file)) {
  buffer_.reserve(kWriteBuffer);
}

PackWriter::~PackWriter() {
  if (!finished_) Abandon();
}

namespace {

Bytes EncodeHeader() {
  Bytes header;
  PutBytes(header, ByteView(pf::kMagic, 4));
  PutU8(header, pf::kVersion);
  PutU8(header, 0);
  PutU16(header, 0);
  return header;
}

// SHA-256 of header || index || footer[0..16): the pack's checksum and name.
evp::Digest256 FooterChecksum(ByteView header, ByteView index, ByteView footer16) {
  evp::Sha256Hasher h;
  h.Update(header);
  h.Update(index);
  h.Update(footer16);
  return h.Finish();
}

}  // namespace

Result<std::unique_ptr<PackWriter>> PackWriter::Create(Env& env, const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, env.NewWritableFile(path, 0644));
  std::unique_ptr<PackWriter> w(new PackWriter(env, path, std::move(f)));
  RETURN_IF_ERROR(w->Write(EncodeHeader()));
  return w;
}

Status PackWriter::Write(ByteView data) {
  size_ += data.size();
  if (buffer_.size() + data.size() > kWriteBuffer) RETURN_IF_ERROR(FlushBuffer());
  if (data.size() >= kWriteBuffer) return file_->Append(data);
  buffer_.insert(buffer_.end(), data.begin(), data.end());
  return OkStatus();
}

Status PackWriter::FlushBuffer() {
  if (buffer_.empty()) return OkStatus();
  Status s = file_->Append(buffer_);
  buffer_.clear();
  return s;
}

Status PackWriter::Add(const ChunkId& id, ByteView sealed, const evp::Digest256& digest,
                       const KeyId& key_id, ByteView wrapped_key) {
  if (finished_) return InternalError("pack " + path_ + " is already finished");
  if (sealed.size() > kMaxChunkSize + 1024) {
    return InvalidArgumentError("sealed chunk too large for a pack");
  }
  const bool known = std::any_of(contents_.keys.begin(), contents_.keys.end(),
                                 [&](const PackKey& k) { return k.id == key_id; });
  if (!known) {
    if (wrapped_key.size() != pf::kIndexKeySize - 16) {
      return InvalidArgumentError("wrapped data key has the wrong size");
    }
    if (contents_.keys.size() >= pf::kMaxKeysPerPack) {
      return ResourceExhaustedError("too many data keys in one pack");
    }
    contents_.keys.push_back(PackKey{key_id, Bytes(wrapped_key.begin(), wrapped_key.end())});
  }
  uint8_t frame[pf::kEntryFrameSize];
  std::memcpy(frame, id.data(), 32);
  StoreU32(frame + 32, static_cast<uint32_t>(sealed.size()));
  RETURN_IF_ERROR(Write(ByteView(frame, sizeof(frame))));
  contents_.entries.push_back(PackEntry{id, size_, static_cast<uint32_t>(sealed.size()), digest});
  return Write(sealed);
}

Result<PackContents> PackWriter::Finish() {
  if (finished_) return InternalError("pack " + path_ + " finished twice");
  finished_ = true;
  const uint64_t index_offset = size_;
  Bytes index;
  PutU32(index, static_cast<uint32_t>(contents_.keys.size()));
  for (const PackKey& k : contents_.keys) {
    PutBytes(index, k.id);
    PutBytes(index, k.wrapped);
  }
  PutU32(index, static_cast<uint32_t>(contents_.entries.size()));
  for (const PackEntry& e : contents_.entries) {
    PutBytes(index, e.id);
    PutU64(index, e.offset);
    PutU32(index, e.length);
    PutBytes(index, e.digest);
  }
  Bytes footer;
  PutU64(footer, index_offset);
  PutU32(footer, static_cast<uint32_t>(index.size()));
  PutU32(footer, 0);
  contents_.checksum = FooterChecksum(EncodeHeader(), index, footer);
  PutBytes(footer, contents_.checksum);
  PutBytes(footer, ByteView(pf::kEndMagic, 4));
  PutU8(footer, pf::kVersion);
  PutU8(footer, 0);
  PutU16(footer, 0);
  Status s = Write(index);
  if (s.ok()) s = Write(footer);
  if (s.ok()) s = FlushBuffer();
  if (s.ok()) s = file_->Sync();
  Status c = file_->Close();
  if (s.ok()) s = c;
  if (!s.ok()) {
    env_.RemoveFile(path_).IgnoreError();
    return s.WithContext("writing pack " + path_);
  }
  contents_.size = size_;
  return std::move(contents_);
}

void PackWriter::Abandon() {
  finished_ = true;
  if (file_) file_->Close().IgnoreError();
  env_.RemoveFile(path_).IgnoreError();
}

Result<PackContents> ReadPackIndex(Env& env, const std::string& path, bool verify_entries) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, env.NewRandomAccessFile(path));
  const uint64_t size = f->Size();
  auto bad = [&](const std::string& what) { return DataLossError("pack " + path + ": " + what); };
  if (size < pf::kHeaderSize + pf::kFooterSize) return bad("too short to be a pack");
  if (size > pf::kMaxPackSize) return bad("larger than the 1 GiB pack limit");
  Bytes header, footer;
  RETURN_IF_ERROR(f->Read(0, pf::kHeaderSize, header));
  if (std::memcmp(header.data(), pf::kMagic, 4) != 0) return bad("bad magic");
  if (header[4] != pf::kVersion) return bad("unsupported version " + std::to_string(header[4]));
  if (header[5] != 0 || header[6] != 0 || header[7] != 0) return bad("reserved header bytes set");
  RETURN_IF_ERROR(f->Read(size - pf::kFooterSize, pf::kFooterSize, footer));
  if (std::memcmp(footer.data() + 48, pf::kEndMagic, 4) != 0) {
    return bad("missing end marker (truncated or torn pack)");
  }
  if (footer[52] != pf::kVersion || footer[53] != 0 || footer[54] != 0 || footer[55] != 0) {
    return bad("bad footer version or reserved bytes");
  }
  const uint64_t index_offset = LoadU64(footer.data());
  const uint32_t index_len = LoadU32(footer.data() + 8);
  if (LoadU32(footer.data() + 12) != 0) return bad("reserved footer bytes set");
  if (index_offset < pf::kHeaderSize || index_offset > size ||
      index_offset + index_len != size - pf::kFooterSize) {
    return bad("index at offset " + std::to_string(index_offset) + " length " +
               std::to_string(index_len) + " does not end at the footer");
  }
  PackContents out;
  out.size = size;
  std::copy(footer.begin() + 16, footer.begin() + 48, out.checksum.begin());
  Bytes index;
  RETURN_IF_ERROR(f->Read(index_offset, index_len, index));
  if (FooterChecksum(header, index, ByteView(footer.data(), 16)) != out.checksum) {
    return bad("index checksum mismatch (index or footer damaged)");
  }
  ByteReader r(index);
  uint32_t key_count = 0;
  if (!r.ReadU32(key_count) || key_count > pf::kMaxKeysPerPack ||
      r.remaining() < static_cast<uint64_t>(key_count) * pf::kIndexKeySize) {
    return bad("bad key table in index");
  }
  for (uint32_t i = 0; i < key_count; ++i) {
    PackKey k;
    ByteView wrapped;
    r.ReadArray(k.id);
    r.ReadView(pf::kIndexKeySize - 16, wrapped);
    k.wrapped.assign(wrapped.begin(), wrapped.end());
    out.keys.push_back(std::move(k));
  }
  uint32_t entry_count = 0;
  if (!r.ReadU32(entry_count) ||
      r.remaining() != static_cast<uint64_t>(entry_count) * pf::kIndexEntrySize) {
    return bad("index entry table has the wrong length");
  }
  out.entries.reserve(entry_count);
  uint64_t expected_offset = pf::kHeaderSize;
  for (uint32_t i = 0; i < entry_count; ++i) {
    PackEntry e;
    r.ReadArray(e.id);
    r.ReadU64(e.offset);
    r.ReadU32(e.length);
    r.ReadArray(e.digest);
    // Entries are contiguous frames: the index must describe exactly that layout.
    if (e.offset != expected_offset + pf::kEntryFrameSize || e.length > kMaxChunkSize + 1024 ||
        e.offset + e.length > index_offset) {
      return bad("index entry " + std::to_string(i) + " is out of bounds");
    }
    expected_offset = e.offset + e.length;
    out.entries.push_back(e);
  }
  if (expected_offset != index_offset) return bad("entries do not fill the data region");
  if (verify_entries) {
    Bytes frame, sealed;
    for (size_t i = 0; i < out.entries.size(); ++i) {
      const PackEntry& e = out.entries[i];
      RETURN_IF_ERROR(f->Read(e.offset - pf::kEntryFrameSize, pf::kEntryFrameSize, frame));
      if (std::memcmp(frame.data(), e.id.data(), 32) != 0 ||
          LoadU32(frame.data() + 32) != e.length) {
        return bad("entry " + std::to_string(i) + " frame does not match the index");
      }
      RETURN_IF_ERROR(f->Read(e.offset, e.length, sealed));
      if (evp::Sha256(sealed) != e.digest) {
        return bad("entry " + std::to_string(i) + " (chunk " + HexEncode(ByteView(e.id.data(), 8)) +
                   ") is damaged: SHA-256 mismatch");
      }
    }
  }
  return out;
}

}  // namespace ferry::snapshot
