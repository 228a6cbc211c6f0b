// libFuzzer target: reference sets (snapshot/ref_set.cc: RefSetReader,
// RefSetBuilder). Input format: fuzz_formats.h; with the fix bit the target
// rewrites the trailing BLAKE2b-256 first, so the checks behind the checksum
// see any bytes. Checks, beyond "no crash, no UB":
//  - errors are DATA_LOSS, from FromBytes (header) or at the end of Next;
//  - no allocation is larger than twice the object plus 16 KiB: the count
//    is checked against the size before anything is read;
//  - the reader reading from memory (refs received over a link) and from a
//    file (RefSetReader::Open) see the same: same count, entries and result;
//  - a refs object read to the end without error has entries strictly
//    increasing by id, exactly `count` of them, and its digest is its
//    trailing checksum;
//  - one encoding: RefSetBuilder, given those entries in reverse order,
//    writes the same bytes and reports the same summary.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/env.h"
#include "core/sodium.h"
#include "snapshot/ref_set.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

using snapshot::RefEntry;
using snapshot::RefSetReader;

struct ReadOut {
  Status status;  // of opening, else of reading to the end
  uint64_t count = 0;
  std::vector<RefEntry> entries;
  sodium::Hash256 digest{};
};

ReadOut ReadAll(Result<std::unique_ptr<RefSetReader>> opened) {
  ReadOut out;
  if (!opened.ok()) {
    out.status = opened.status();
    return out;
  }
  RefSetReader& r = **opened;
  out.count = r.count();
  RefEntry e;
  while (r.Next(e)) out.entries.push_back(e);
  out.status = r.status();
  if (out.status.ok()) out.digest = r.digest();
  return out;
}

void CheckRebuild(ByteView refs, const ReadOut& read) {
  const std::string path = ScratchDir() + "/rebuilt";
  snapshot::RefSetBuilder builder(*Env::Default(), ScratchDir());
  uint64_t sealed_bytes = 0;
  for (auto it = read.entries.rbegin(); it != read.entries.rend(); ++it) {
    FUZZ_CHECK(builder.Add(it->id, it->sealed_size).ok());
    sealed_bytes += it->sealed_size;
  }
  Result<snapshot::RefSetSummaryInfo> summary = builder.Finish(path);
  FUZZ_CHECK(summary.ok());
  FUZZ_CHECK(summary->count == read.count && summary->sealed_bytes == sealed_bytes &&
             summary->digest == read.digest);
  Result<Bytes> written = Env::Default()->ReadFile(path, refs.size() + 1);
  FUZZ_CHECK(written.ok() && SameBytes(*written, refs));
}

void Run(uint8_t config, ByteView in) {
  Bytes refs(in.begin(), in.end());
  if ((config & kFixChecksum) && refs.size() >= 32) {
    const size_t body = refs.size() - 32;
    const sodium::Hash256 sum = sodium::Blake2b256(ByteView(refs).first(body));
    std::copy(sum.begin(), sum.end(), refs.begin() + static_cast<std::ptrdiff_t>(body));
  }
  std::optional<ReadOut> from_memory;
  const size_t largest = LargestAllocation::During(
      [&] { from_memory.emplace(ReadAll(RefSetReader::FromBytes(refs, "fuzz"))); });
  const ReadOut& read = *from_memory;
  FUZZ_CHECK(largest <= 2 * refs.size() + (16 << 10));
  const std::string path = ScratchDir() + "/refs";
  WriteFile(path, refs);
  const ReadOut from_file = ReadAll(RefSetReader::Open(*Env::Default(), path));
  FUZZ_CHECK(from_file.status.code() == read.status.code() && from_file.count == read.count);
  FUZZ_CHECK(from_file.entries.size() == read.entries.size());
  for (size_t i = 0; i < read.entries.size(); ++i) {
    FUZZ_CHECK(from_file.entries[i].id == read.entries[i].id &&
               from_file.entries[i].sealed_size == read.entries[i].sealed_size);
  }
  if (!read.status.ok()) {
    FUZZ_CHECK(read.status.code() == StatusCode::kDataLoss);
    return;
  }
  FUZZ_CHECK(read.entries.size() == read.count);
  for (size_t i = 1; i < read.entries.size(); ++i) {
    FUZZ_CHECK(read.entries[i - 1].id < read.entries[i].id);
  }
  FUZZ_CHECK(std::equal(read.digest.begin(), read.digest.end(), refs.end() - 32));
  CheckRebuild(refs, read);
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ferry::fuzz::Run(data[0], ferry::ByteView(data + 1, size - 1));
  return 0;
}
