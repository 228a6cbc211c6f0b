// libFuzzer target: pack files (snapshot/pack.cc: ReadPackIndex, PackWriter).
// Input format: fuzz_formats.h; the pack is written to a file in
// ScratchDir() and read through Env::Default(). Checks, beyond "no crash,
// no UB":
//  - errors are DATA_LOSS;
//  - no allocation is larger than the file (plus 16 KiB): the index length
//    and the entry count are checked against the file size before use;
//  - an index that is accepted describes the file: entries are contiguous
//    frames from the header to the index, each within kMaxChunkSize + 1024;
//    at most kMaxKeysPerPack keys; the size and checksum are the file's;
//  - with entry verification, a pack whose keys are distinct and each first
//    used in index order is exactly what PackWriter writes for its entries
//    and keys (one encoding), and Finish reports the same contents.
#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "core/env.h"
#include "core/evp.h"
#include "snapshot/pack.h"
#include "snapshot/pack_format.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

namespace pf = snapshot::pack_format;
using snapshot::PackContents;

// Rewrites the footer's checksum from the bytes it covers, when the footer
// locates an index inside the file (docs/format/pack.md).
void FixChecksum(Bytes& pack) {
  if (pack.size() < pf::kHeaderSize + pf::kFooterSize) return;
  uint8_t* footer = pack.data() + pack.size() - pf::kFooterSize;
  const uint64_t index_offset = LoadU64(footer);
  const uint64_t index_end = pack.size() - pf::kFooterSize;
  if (index_offset < pf::kHeaderSize || index_offset > index_end) return;
  evp::Sha256Hasher h;
  h.Update(ByteView(pack.data(), pf::kHeaderSize));
  h.Update(ByteView(pack.data() + index_offset, index_end - index_offset));
  h.Update(ByteView(footer, 16));
  const evp::Digest256 sum = h.Finish();
  std::copy(sum.begin(), sum.end(), footer + 16);
}

// Writes the same contents with PackWriter; checks that it gives the same bytes.
void CheckRewrite(ByteView pack, const PackContents& contents) {
  // PackWriter records a key when an entry first uses it: key i goes with entry i.
  if (contents.keys.size() > std::max<size_t>(contents.entries.size(), 1)) return;
  for (size_t i = 0; i < contents.keys.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (contents.keys[i].id == contents.keys[j].id) return;
    }
  }
  if (contents.entries.empty() && !contents.keys.empty()) return;
  const std::string path = ScratchDir() + "/rewritten";
  Env::Default()->RemoveFile(path).IgnoreError();
  Result<std::unique_ptr<snapshot::PackWriter>> w =
      snapshot::PackWriter::Create(*Env::Default(), path);
  FUZZ_CHECK(w.ok());
  for (size_t i = 0; i < contents.entries.size(); ++i) {
    const snapshot::PackEntry& e = contents.entries[i];
    const snapshot::PackKey& key = contents.keys[std::min(i, contents.keys.size() - 1)];
    FUZZ_CHECK(
        (*w)->Add(e.id, pack.subspan(e.offset, e.length), e.digest, key.id, key.wrapped).ok());
  }
  Result<PackContents> written = (*w)->Finish();
  FUZZ_CHECK(written.ok());
  Result<Bytes> again = Env::Default()->ReadFile(path, pack.size() + 1);
  FUZZ_CHECK(again.ok() && SameBytes(*again, pack));
  FUZZ_CHECK(written->checksum == contents.checksum && written->size == contents.size);
  FUZZ_CHECK(written->entries.size() == contents.entries.size());
  for (size_t i = 0; i < contents.entries.size(); ++i) {
    const snapshot::PackEntry &a = written->entries[i], &b = contents.entries[i];
    FUZZ_CHECK(a.id == b.id && a.offset == b.offset && a.length == b.length &&
               a.digest == b.digest);
  }
}

void Run(uint8_t config, ByteView in) {
  Bytes pack(in.begin(), in.end());
  if (config & kPackFixChecksum) FixChecksum(pack);
  const std::string path = ScratchDir() + "/pack";
  WriteFile(path, pack);
  const bool verify = (config & kPackVerifyEntries) != 0;
  std::optional<Result<PackContents>> read;
  const size_t largest = LargestAllocation::During(
      [&] { read.emplace(snapshot::ReadPackIndex(*Env::Default(), path, verify)); });
  FUZZ_CHECK(largest <= pack.size() + (16 << 10));
  if (!read->ok()) {
    FUZZ_CHECK(read->status().code() == StatusCode::kDataLoss);
    return;
  }
  const PackContents& contents = **read;
  FUZZ_CHECK(contents.size == pack.size());
  FUZZ_CHECK(std::equal(contents.checksum.begin(), contents.checksum.end(),
                        pack.end() - pf::kFooterSize + 16));
  FUZZ_CHECK(contents.keys.size() <= pf::kMaxKeysPerPack);
  uint64_t expected = pf::kHeaderSize;
  for (const snapshot::PackEntry& e : contents.entries) {
    FUZZ_CHECK(e.offset == expected + pf::kEntryFrameSize);
    FUZZ_CHECK(e.length <= snapshot::kMaxChunkSize + 1024);
    expected = e.offset + e.length;
    if (verify) FUZZ_CHECK(evp::Sha256(ByteView(pack).subspan(e.offset, e.length)) == e.digest);
  }
  FUZZ_CHECK(expected + pf::kFooterSize <= pack.size());
  if (verify) CheckRewrite(pack, contents);
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ferry::fuzz::Run(data[0], ferry::ByteView(data + 1, size - 1));
  return 0;
}
