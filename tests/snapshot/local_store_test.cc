#include "snapshot/local_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/sqlite.h"
#include "snapshot/chunk_writer.h"
#include "snapshot/keyset.h"
#include "snapshot/manifest.h"
#include "snapshot/pack.h"
#include "snapshot/ref_set.h"
#include "snapshot/volume_capture.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

struct TestChunk {
  ChunkId id{};
  Bytes sealed;
};

// The store treats sealed chunks as opaque: random bytes under a real id.
TestChunk MakeChunk(const Keyset& ks, uint64_t seed, size_t size = 1000) {
  TestChunk c;
  c.id = ks.ChunkIdOf(SeededBytes(seed, 64));
  c.sealed = SeededBytes(seed + 1000000, size);
  return c;
}

RefEntry RefOf(const TestChunk& c) {
  return RefEntry{c.id, static_cast<uint32_t>(c.sealed.size())};
}

std::vector<std::string> List(const std::string& dir) {
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  if (!names.ok()) return {};
  std::sort(names->begin(), names->end());
  return *names;
}

// Every file under DIR/packs/*/, as "shard/name".
std::vector<std::string> PackFiles(const std::string& store) {
  std::vector<std::string> out;
  for (const std::string& shard : List(store + "/packs")) {
    for (const std::string& f : List(store + "/packs/" + shard)) out.push_back(shard + "/" + f);
  }
  return out;
}

bool Exists(const std::string& path) {
  Result<bool> e = Env::Default()->FileExists(path);
  return e.ok() && *e;
}

// The POSIX Env, except that renames into packs/ fail while
// `fail_pack_renames` is set: a full disk at the worst moment for a pack.
class FaultyEnv final : public Env {
 public:
  std::atomic<bool> fail_pack_renames{false};
  std::atomic<bool> fail_marker_rename{false};

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                        mode_t mode) override {
    return base_.NewWritableFile(path, mode);
  }
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return base_.NewRandomAccessFile(path);
  }
  Result<Bytes> ReadFile(const std::string& path, uint64_t max_size) override {
    return base_.ReadFile(path, max_size);
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    if (fail_pack_renames && to.find("/packs/") != std::string::npos) {
      return ResourceExhaustedError("injected: no space left to rename " + from);
    }
    if (fail_marker_rename && to.ends_with("/FERRY-STORE")) {
      return DataLossError("injected: rename " + from + ": Input/output error");
    }
    return base_.RenameFile(from, to);
  }
  Status SyncDir(const std::string& dir) override { return base_.SyncDir(dir); }
  Status CreateDirs(const std::string& path, mode_t mode) override {
    return base_.CreateDirs(path, mode);
  }
  Status RemoveFile(const std::string& path) override { return base_.RemoveFile(path); }
  Result<bool> FileExists(const std::string& path) override { return base_.FileExists(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_.ListDir(path);
  }
  Result<uint64_t> FileSize(const std::string& path) override { return base_.FileSize(path); }

 private:
  Env& base_ = *Env::Default();
};

class LocalStoreTest : public ::testing::Test {
 protected:
  LocalStoreTest()
      : keyset_(Keyset::Generate()),
        key_(keyset_->MakeDataKey()),
        store_dir_(dir_.Sub("store")),
        work_(dir_.Sub("work")) {
    MakeDirsOrDie(work_);
  }

  Env& env() { return *Env::Default(); }

  std::unique_ptr<LocalStore> Create(const LocalStoreOptions& opts = {}) {
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Create(store_dir_, opts);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::unique_ptr<LocalStore> Open(LocalStore::Mode mode = LocalStore::Mode::kReadWrite) {
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(store_dir_, mode);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  Result<PutResult> Put(LocalStore& store, const TestChunk& c) {
    return store.PutChunk(c.id, c.sealed, key_.key.id, key_.wrapped);
  }

  // Writes a refs object for `refs` at `refs_path` and returns a manifest
  // that summarizes it (see MakeManifest).
  ParsedManifest MakeSnapshot(const std::vector<RefEntry>& refs, const std::string& refs_path,
                              int64_t created_ns = 1700000000000000000,
                              const std::function<void(pb::Manifest&)>& tweak = {}) {
    RefSetBuilder builder(env(), work_);
    for (const RefEntry& e : refs) EXPECT_TRUE(builder.Add(e.id, e.sealed_size).ok());
    Result<RefSetSummaryInfo> summary = builder.Finish(refs_path);
    EXPECT_TRUE(summary.ok()) << summary.status().ToString();
    return MakeManifest(summary.ok() ? *summary : RefSetSummaryInfo{}, created_ns, tweak);
  }

  // A manifest with the fields ValidateBody requires, summarizing `refs`,
  // signed by the test keyset. `tweak` may edit the body before signing.
  ParsedManifest MakeManifest(const RefSetSummaryInfo& refs, int64_t created_ns,
                              const std::function<void(pb::Manifest&)>& tweak = {}) {
    pb::Manifest body;
    body.set_format_version(kManifestFormatVersion);
    body.set_created_unix_ns(created_ns);
    body.set_keyset_id(std::string(keyset_->id().begin(), keyset_->id().end()));
    body.mutable_refs()->set_count(refs.count);
    body.mutable_refs()->set_sealed_bytes(refs.sealed_bytes);
    body.mutable_refs()->set_digest(std::string(refs.digest.begin(), refs.digest.end()));
    pb::Dataset* d = body.add_datasets();
    d->set_name("volume");
    d->set_kind(pb::DATASET_KIND_VOLUME);
    pb::ChunkRef* root = d->add_root();
    root->set_id(std::string(32, 'r'));
    root->set_size(100);
    if (tweak) tweak(body);
    Result<Bytes> envelope = SignManifest(body, keyset_->signing_key());
    EXPECT_TRUE(envelope.ok()) << envelope.status().ToString();
    Result<ParsedManifest> m = ParseManifest(envelope.ok() ? *envelope : Bytes(), "test");
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? std::move(*m) : ParsedManifest{};
  }

  // Writes a finished pack holding `chunks` to work/NAME and returns its contents.
  PackContents WriteLoosePack(const std::string& name, const std::vector<TestChunk>& chunks) {
    Result<std::unique_ptr<PackWriter>> w = PackWriter::Create(env(), work_ + "/" + name);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    if (!w.ok()) return {};
    for (const TestChunk& c : chunks) {
      EXPECT_TRUE((*w)->Add(c.id, c.sealed, evp::Sha256(c.sealed), key_.key.id, key_.wrapped).ok());
    }
    Result<PackContents> contents = (*w)->Finish();
    EXPECT_TRUE(contents.ok()) << contents.status().ToString();
    return contents.ok() ? std::move(*contents) : PackContents{};
  }

  // Creates a store holding one chunk, then deletes its only pack file.
  TestChunk StoreOneChunkThenDeleteItsPack() {
    const TestChunk c = MakeChunk(*keyset_, 1);
    std::unique_ptr<LocalStore> s = Create();
    EXPECT_NE(s, nullptr);
    if (s == nullptr) return c;
    EXPECT_TRUE(Put(*s, c).ok());
    EXPECT_TRUE(s->Flush().ok());
    s.reset();
    const std::vector<std::string> files = PackFiles(store_dir_);
    EXPECT_EQ(files.size(), 1u);
    for (const std::string& f : files) {
      EXPECT_TRUE(env().RemoveFile(store_dir_ + "/packs/" + f).ok());
    }
    return c;
  }

  TempDir dir_;
  std::unique_ptr<Keyset> keyset_;
  Keyset::NewDataKey key_;
  std::string store_dir_;
  std::string work_;
};

// --- Create / Open ---

TEST_F(LocalStoreTest, CreateLaysOutAStoreThatOpens) {
  ASSERT_NE(Create(), nullptr);
  for (const char* name : {"FERRY-STORE", "index.db", "packs", "snapshots", "tmp", "cache"}) {
    EXPECT_TRUE(Exists(store_dir_ + "/" + name)) << name;
  }
  for (LocalStore::Mode mode : {LocalStore::Mode::kReadOnly, LocalStore::Mode::kReadWrite}) {
    std::unique_ptr<LocalStore> s = Open(mode);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->dir(), store_dir_);
  }
}

TEST_F(LocalStoreTest, CreateAcceptsAnEmptyDirectory) {
  MakeDirsOrDie(store_dir_);
  EXPECT_NE(Create(), nullptr);
}

TEST_F(LocalStoreTest, CreateRefusesANonEmptyDirectory) {
  MakeDirsOrDie(store_dir_);
  WriteFileOrDie(store_dir_ + "/precious.txt", ToBytes("keep me"));
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Create(store_dir_);
  EXPECT_TRUE(HasCode(s.status(), StatusCode::kFailedPrecondition));
  EXPECT_THAT(s.status().message(), HasSubstr("not empty"));
  EXPECT_EQ(List(store_dir_), std::vector<std::string>{"precious.txt"}) << "nothing was added";
}

TEST_F(LocalStoreTest, CreateRefusesAnExistingStore) {
  ASSERT_NE(Create(), nullptr);
  EXPECT_TRUE(HasCode(LocalStore::Create(store_dir_).status(), StatusCode::kFailedPrecondition));
}

TEST_F(LocalStoreTest, OpenChecksTheMarker) {
  MakeDirsOrDie(dir_.Sub("plain"));
  WriteFileOrDie(dir_.Sub("plain/file"), ToBytes("x"));
  MakeDirsOrDie(dir_.Sub("future"));
  WriteFileOrDie(dir_.Sub("future/FERRY-STORE"), ToBytes("ferry local store\nformat 2\n"));
  MakeDirsOrDie(dir_.Sub("empty"));
  const struct {
    const char* what;
    std::string dir;
    StatusCode code;
    const char* message;
  } kCases[] = {
      {"absent", dir_.Sub("absent"), StatusCode::kNotFound, "does not exist"},
      {"not a store", dir_.Sub("plain"), StatusCode::kFailedPrecondition, "not a Ferry store"},
      {"empty directory", dir_.Sub("empty"), StatusCode::kFailedPrecondition, "not a Ferry store"},
      {"unknown format", dir_.Sub("future"), StatusCode::kFailedPrecondition,
       "unsupported store format"},
  };
  for (const auto& c : kCases) {
    for (LocalStore::Mode mode : {LocalStore::Mode::kReadOnly, LocalStore::Mode::kReadWrite}) {
      SCOPED_TRACE(std::string(c.what) +
                   (mode == LocalStore::Mode::kReadOnly ? ", read-only" : ", read-write"));
      Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(c.dir, mode);
      EXPECT_TRUE(HasCode(s.status(), c.code));
      EXPECT_THAT(s.status().message(), HasSubstr(c.message));
    }
  }
  EXPECT_EQ(List(dir_.Sub("plain")), std::vector<std::string>{"file"}) << "Open wrote nothing";
}

TEST_F(LocalStoreTest, OpenOrCreateCreatesOnceThenOpens) {
  const TestChunk c = MakeChunk(*keyset_, 1);
  {
    Result<std::unique_ptr<LocalStore>> s = LocalStore::OpenOrCreate(store_dir_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE(Put(**s, c).ok());
    ASSERT_TRUE((*s)->Flush().ok());
  }
  Result<std::unique_ptr<LocalStore>> s = LocalStore::OpenOrCreate(store_dir_);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE((*s)->ReadSealedChunk(c.id).ok()) << "the existing store was opened, not replaced";
}

TEST_F(LocalStoreTest, OpenOrCreateRedoesACreationThatFailedBeforeItsMarker) {
  FaultyEnv env;
  env.fail_marker_rename = true;
  LocalStoreOptions options;
  options.env = &env;
  Result<std::unique_ptr<LocalStore>> failed = LocalStore::OpenOrCreate(store_dir_, options);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("Input/output error"));
  // The disk works again: the skeleton left behind is created again (not
  // "not a Ferry store" for good), and the store works.
  const TestChunk c = MakeChunk(*keyset_, 1);
  {
    Result<std::unique_ptr<LocalStore>> s = LocalStore::OpenOrCreate(store_dir_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE(Put(**s, c).ok());
    ASSERT_TRUE((*s)->Flush().ok());
  }
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(store_dir_, LocalStore::Mode::kReadOnly);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE((*s)->ReadSealedChunk(c.id).ok());
}

TEST_F(LocalStoreTest, OpenOrCreateNeverRedoesADirectoryHoldingAnythingElse) {
  FaultyEnv env;
  env.fail_marker_rename = true;
  LocalStoreOptions options;
  options.env = &env;
  ASSERT_FALSE(LocalStore::OpenOrCreate(store_dir_, options).ok());
  WriteFileOrDie(store_dir_ + "/someone-elses-file", AsBytes(std::string("keep me")));
  Result<std::unique_ptr<LocalStore>> s = LocalStore::OpenOrCreate(store_dir_);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("is not a Ferry store"));
  const Bytes kept = ReadFileOrDie(store_dir_ + "/someone-elses-file");
  EXPECT_EQ(std::string(kept.begin(), kept.end()), "keep me");
}

// --- Chunks ---

TEST_F(LocalStoreTest, PutChunkStoresEachIdOnce) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  const TestChunk c = MakeChunk(*keyset_, 1, 700);
  Result<PutResult> first = Put(*s, c);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->added);
  EXPECT_EQ(first->sealed_size, 700u);

  Result<PutResult> pending = Put(*s, c);
  ASSERT_TRUE(pending.ok());
  EXPECT_FALSE(pending->added) << "duplicate of a chunk in the open pack";
  EXPECT_EQ(pending->sealed_size, 700u);

  ASSERT_TRUE(s->Flush().ok());
  TestChunk other_bytes = c;
  other_bytes.sealed = SeededBytes(99, 900);  // same id, sealed again under another nonce
  Result<PutResult> indexed = Put(*s, other_bytes);
  ASSERT_TRUE(indexed.ok());
  EXPECT_FALSE(indexed->added) << "duplicate of an indexed chunk";
  EXPECT_EQ(indexed->sealed_size, 700u) << "the size kept is the stored copy's";
  ASSERT_TRUE(s->Flush().ok());

  Result<Bytes> back = s->ReadSealedChunk(c.id);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, c.sealed);
  Result<StoreStats> stats = s->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->chunks, 1u);
  EXPECT_EQ(stats->packs, 1u);
}

TEST_F(LocalStoreTest, ChunksAreReadableAfterFlush) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  std::vector<TestChunk> chunks;
  for (uint64_t i = 0; i < 20; ++i) chunks.push_back(MakeChunk(*keyset_, i, 100 + i * 50));
  for (const TestChunk& c : chunks) ASSERT_TRUE(Put(*s, c).ok());

  // Before Flush the chunks are known (for dedup) but not yet readable.
  Result<std::optional<uint32_t>> size = s->ChunkSealedSize(chunks[3].id);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, std::optional<uint32_t>(chunks[3].sealed.size()));
  EXPECT_TRUE(HasCode(s->ReadSealedChunk(chunks[3].id).status(), StatusCode::kNotFound));
  EXPECT_TRUE(List(store_dir_ + "/packs").empty());

  ASSERT_TRUE(s->Flush().ok());
  ASSERT_TRUE(s->Flush().ok()) << "flushing with nothing pending is fine";
  for (const TestChunk& c : chunks) {
    Result<Bytes> back = s->ReadSealedChunk(c.id);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, c.sealed);
  }
  Result<Bytes> wrapped = s->WrappedKey(key_.key.id);
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(*wrapped, key_.wrapped);

  const TestChunk absent = MakeChunk(*keyset_, 999);
  EXPECT_TRUE(HasCode(s->ReadSealedChunk(absent.id).status(), StatusCode::kNotFound));
  Result<std::optional<uint32_t>> no_size = s->ChunkSealedSize(absent.id);
  ASSERT_TRUE(no_size.ok());
  EXPECT_FALSE(no_size->has_value());
  EXPECT_TRUE(HasCode(s->WrappedKey(KeyId{}).status(), StatusCode::kNotFound));

  // And after the store is closed and reopened.
  s.reset();
  std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
  ASSERT_NE(ro, nullptr);
  for (const TestChunk& c : chunks) {
    Result<Bytes> back = ro->ReadSealedChunk(c.id);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, c.sealed);
  }
}

TEST_F(LocalStoreTest, UnflushedChunksAreDroppedWhenTheStoreCloses) {
  const TestChunk c = MakeChunk(*keyset_, 1);
  {
    std::unique_ptr<LocalStore> s = Create();
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(Put(*s, c).ok());
    EXPECT_EQ(List(store_dir_ + "/tmp").size(), 1u) << "the open pack lives in tmp/";
  }
  EXPECT_TRUE(List(store_dir_ + "/tmp").empty());
  std::unique_ptr<LocalStore> s = Open();
  ASSERT_NE(s, nullptr);
  Result<std::optional<uint32_t>> size = s->ChunkSealedSize(c.id);
  ASSERT_TRUE(size.ok());
  EXPECT_FALSE(size->has_value());
  EXPECT_TRUE(PackFiles(store_dir_).empty());
}

TEST_F(LocalStoreTest, PacksRollAtTheTargetSize) {
  LocalStoreOptions opts;
  opts.target_pack_size = 4096;
  std::unique_ptr<LocalStore> s = Create(opts);
  ASSERT_NE(s, nullptr);
  std::vector<TestChunk> chunks;
  for (uint64_t i = 0; i < 10; ++i) chunks.push_back(MakeChunk(*keyset_, i, 1000));
  // 8-byte header + 36-byte frame per chunk: every 4th chunk reaches 4096
  // bytes and finishes its pack (in the background); Flush finishes the rest.
  for (const TestChunk& c : chunks) ASSERT_TRUE(Put(*s, c).ok());
  ASSERT_TRUE(s->Flush().ok());
  Result<StoreStats> stats = s->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->packs, 3u);
  EXPECT_EQ(stats->chunks, 10u);

  const std::vector<std::string> files = PackFiles(store_dir_);
  ASSERT_EQ(files.size(), 3u);
  uint64_t total = 0;
  std::multiset<size_t> entries_per_pack;
  for (const std::string& f : files) {
    SCOPED_TRACE(f);
    const std::string name = f.substr(3, f.size() - 3 - 5);
    EXPECT_EQ(f.substr(0, 2), name.substr(0, 2)) << "packs are sharded by name prefix";
    Result<PackContents> c = ReadPackIndex(env(), store_dir_ + "/packs/" + f, true);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(HexEncode(c->checksum), name) << "a pack is named by its checksum";
    entries_per_pack.insert(c->entries.size());
    total += c->size;
  }
  EXPECT_EQ(entries_per_pack, (std::multiset<size_t>{2, 4, 4}));
  EXPECT_EQ(stats->pack_bytes, total);
  for (const TestChunk& c : chunks) {
    Result<Bytes> back = s->ReadSealedChunk(c.id);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, c.sealed);
  }
}

// A pack that cannot be written (a full disk, an I/O error) is dropped with
// its chunks, the failure is reported to whoever waits for durability, and
// the store goes on with new packs once writes work again: nothing of the
// failed pack is ever claimed as stored.
TEST_F(LocalStoreTest, FailedPackIsDroppedReportedAndTheStoreGoesOn) {
  FaultyEnv faulty;
  LocalStoreOptions opts;
  opts.env = &faulty;
  opts.target_pack_size = 4096;
  std::vector<TestChunk> chunks;
  for (uint64_t i = 0; i < 12; ++i) chunks.push_back(MakeChunk(*keyset_, i, 1000));
  {
    std::unique_ptr<LocalStore> s = Create(opts);
    ASSERT_NE(s, nullptr);
    const uint64_t marks_before = s->FailureCount();
    faulty.fail_pack_renames = true;
    for (const TestChunk& c : chunks) ASSERT_TRUE(Put(*s, c).ok());
    Status flushed = s->Flush();
    EXPECT_TRUE(HasCode(flushed, StatusCode::kResourceExhausted));
    EXPECT_THAT(flushed.message(), HasSubstr("injected"));
    EXPECT_GT(s->FailureCount(), marks_before);
    EXPECT_THAT(s->LastFailure().message(), HasSubstr("injected"));
    for (const TestChunk& c : chunks) {
      Result<std::optional<uint32_t>> size = s->ChunkSealedSize(c.id);
      ASSERT_TRUE(size.ok());
      EXPECT_FALSE(size->has_value()) << "a chunk of a failed pack is missing, to be put again";
    }
    const std::string refs = work_ + "/r.refs";
    Status commit = s->CommitSnapshot(MakeSnapshot({RefOf(chunks[0])}, refs), refs);
    EXPECT_TRUE(HasCode(commit, StatusCode::kResourceExhausted)) << commit.ToString();
    EXPECT_THAT(commit.message(), HasSubstr("a pack write failed"));
    EXPECT_TRUE(PackFiles(store_dir_).empty());
    EXPECT_TRUE(List(store_dir_ + "/tmp").size() <= 1) << "failed packs' files are removed";

    // Space returns: the same chunks go in again, and stay.
    faulty.fail_pack_renames = false;
    const uint64_t failures = s->FailureCount();
    for (const TestChunk& c : chunks) ASSERT_TRUE(Put(*s, c).ok());
    ASSERT_TRUE(s->Flush().ok()) << "the store goes on without a restart";
    EXPECT_EQ(s->FailureCount(), failures);
    const std::string refs2 = work_ + "/r2.refs";
    ASSERT_TRUE(s->CommitSnapshot(MakeSnapshot({RefOf(chunks[0])}, refs2), refs2).ok());
    EXPECT_TRUE(s->ReadSealedChunk(chunks[11].id).ok());
  }
  std::unique_ptr<LocalStore> s = Open();
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->ReadSealedChunk(chunks[0].id).ok()) << "the reopened store has what was flushed";
}

// --- Locking ---

TEST_F(LocalStoreTest, SecondWriterIsRefusedWhileTheFirstIsOpen) {
  std::unique_ptr<LocalStore> writer = Create();
  ASSERT_NE(writer, nullptr);
  Result<std::unique_ptr<LocalStore>> second =
      LocalStore::Open(store_dir_, LocalStore::Mode::kReadWrite);
  EXPECT_TRUE(HasCode(second.status(), StatusCode::kUnavailable));
  EXPECT_THAT(second.status().message(), HasSubstr("another process"));
  EXPECT_TRUE(HasCode(LocalStore::OpenOrCreate(store_dir_).status(), StatusCode::kUnavailable));

  writer.reset();
  std::unique_ptr<LocalStore> again = Open(LocalStore::Mode::kReadWrite);
  EXPECT_NE(again, nullptr) << "the lock is released when the writer closes";
}

TEST_F(LocalStoreTest, ReadersCoexistWithTheWriterAndSeeItsFlushes) {
  std::unique_ptr<LocalStore> writer = Create();
  ASSERT_NE(writer, nullptr);
  std::unique_ptr<LocalStore> reader1 = Open(LocalStore::Mode::kReadOnly);
  std::unique_ptr<LocalStore> reader2 = Open(LocalStore::Mode::kReadOnly);
  ASSERT_NE(reader1, nullptr);
  ASSERT_NE(reader2, nullptr);

  const TestChunk c = MakeChunk(*keyset_, 5);
  ASSERT_TRUE(Put(*writer, c).ok());
  EXPECT_TRUE(HasCode(reader1->ReadSealedChunk(c.id).status(), StatusCode::kNotFound));
  ASSERT_TRUE(writer->Flush().ok());
  for (LocalStore* r : {reader1.get(), reader2.get()}) {
    Result<Bytes> back = r->ReadSealedChunk(c.id);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, c.sealed);
  }
}

TEST_F(LocalStoreTest, ReadOnlyStoreRefusesWrites) {
  ASSERT_NE(Create(), nullptr);
  const std::string refs = work_ + "/a.refs";
  const ParsedManifest m = MakeSnapshot({}, refs);
  std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
  ASSERT_NE(ro, nullptr);
  EXPECT_TRUE(HasCode(Put(*ro, MakeChunk(*keyset_, 1)).status(), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(ro->CommitSnapshot(m, refs), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(Exists(refs)) << "the refused commit did not move the refs";
}

// --- Crash recovery ---

TEST_F(LocalStoreTest, UnindexedPackIsReindexedOnOpen) {
  ASSERT_NE(Create(), nullptr);
  std::vector<TestChunk> chunks;
  for (uint64_t i = 0; i < 5; ++i) chunks.push_back(MakeChunk(*keyset_, i));
  // A crash between renaming a finished pack into place and indexing it.
  const PackContents contents = WriteLoosePack("p.pack", chunks);
  const std::string name = HexEncode(contents.checksum);
  MakeDirsOrDie(store_dir_ + "/packs/" + name.substr(0, 2));
  ASSERT_TRUE(env()
                  .RenameFile(work_ + "/p.pack",
                              store_dir_ + "/packs/" + name.substr(0, 2) + "/" + name + ".pack")
                  .ok());

  {
    std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
    ASSERT_NE(ro, nullptr);
    EXPECT_TRUE(HasCode(ro->ReadSealedChunk(chunks[0].id).status(), StatusCode::kNotFound))
        << "readers do not recover";
  }
  std::unique_ptr<LocalStore> s = Open(LocalStore::Mode::kReadWrite);
  ASSERT_NE(s, nullptr);
  for (const TestChunk& c : chunks) {
    Result<Bytes> back = s->ReadSealedChunk(c.id);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, c.sealed);
  }
  Result<Bytes> wrapped = s->WrappedKey(key_.key.id);
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(*wrapped, key_.wrapped);
  Result<PutResult> put = Put(*s, chunks[2]);
  ASSERT_TRUE(put.ok());
  EXPECT_FALSE(put->added) << "re-indexed chunks are deduplicated against";

  Result<StoreStats> stats = s->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->packs, 1u);
  EXPECT_EQ(stats->chunks, 5u);
  s.reset();
  std::unique_ptr<LocalStore> again = Open(LocalStore::Mode::kReadWrite);
  ASSERT_NE(again, nullptr);
  stats = again->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->packs, 1u) << "an indexed pack is not indexed twice";
}

TEST_F(LocalStoreTest, TemporaryLeftoversAreRemovedOnWritableOpen) {
  ASSERT_NE(Create(), nullptr);
  const std::string hex(64, 'b');
  WriteFileOrDie(store_dir_ + "/tmp/pack-0123456789abcdef.tmp", SeededBytes(1, 5000));
  WriteFileOrDie(store_dir_ + "/tmp/refs-run-1.tmp", SeededBytes(2, 72));
  // Interrupted atomic writes beside the manifests and the file cache.
  WriteFileOrDie(store_dir_ + "/snapshots/" + hex + ".manifest.tmp-0011223344556677",
                 SeededBytes(3, 10));
  WriteFileOrDie(store_dir_ + "/cache/files.tmp-8899aabbccddeeff", SeededBytes(4, 10));
  // Not temporary: kept.
  WriteFileOrDie(store_dir_ + "/cache/files", SeededBytes(5, 10));
  {
    std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
    ASSERT_NE(ro, nullptr);
    EXPECT_EQ(List(store_dir_ + "/tmp").size(), 2u) << "a reader leaves the writer's files alone";
  }
  ASSERT_NE(Open(LocalStore::Mode::kReadWrite), nullptr);
  EXPECT_TRUE(List(store_dir_ + "/tmp").empty());
  EXPECT_TRUE(List(store_dir_ + "/snapshots").empty());
  EXPECT_EQ(List(store_dir_ + "/cache"), std::vector<std::string>{"files"});
}

TEST_F(LocalStoreTest, BadUnindexedPacksAreMovedAsideNotIndexed) {
  ASSERT_NE(Create(), nullptr);
  const std::vector<TestChunk> chunks = {MakeChunk(*keyset_, 1), MakeChunk(*keyset_, 2)};
  const PackContents contents = WriteLoosePack("p.pack", chunks);
  const Bytes good = ReadFileOrDie(work_ + "/p.pack");
  const std::string name = HexEncode(contents.checksum);
  Bytes flipped = good;
  flipped[contents.entries[1].offset + 3] ^= 1;
  std::string wrong_name = name;
  wrong_name[10] = wrong_name[10] == '0' ? '1' : '0';
  const struct {
    const char* what;
    std::string name;
    Bytes bytes;
  } kCases[] = {
      {"name does not match the checksum", wrong_name, good},
      {"flipped data byte", name, flipped},
      {"torn (truncated) pack", name, Bytes(good.begin(), good.end() - 30)},
      {"not a pack at all", name, SeededBytes(3, 300)},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    const std::string shard = store_dir_ + "/packs/" + c.name.substr(0, 2);
    MakeDirsOrDie(shard);
    WriteFileOrDie(shard + "/" + c.name + ".pack", c.bytes);
    std::unique_ptr<LocalStore> s = Open(LocalStore::Mode::kReadWrite);
    ASSERT_NE(s, nullptr) << "a bad leftover pack does not stop the store from opening";
    EXPECT_EQ(List(shard), std::vector<std::string>{c.name + ".pack.damaged"});
    EXPECT_EQ(ReadFileOrDie(shard + "/" + c.name + ".pack.damaged"), c.bytes)
        << "moved aside, not deleted";
    for (const TestChunk& chunk : chunks) {
      EXPECT_TRUE(HasCode(s->ReadSealedChunk(chunk.id).status(), StatusCode::kNotFound));
    }
    Result<StoreStats> stats = s->Stats();
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->packs, 0u);
    s.reset();
    ::ferry::testing::RemoveTree(shard);
  }
}

TEST_F(LocalStoreTest, UnrecordedCompleteSnapshotIsRecordedOnOpen) {
  const std::vector<TestChunk> chunks = {MakeChunk(*keyset_, 1), MakeChunk(*keyset_, 2)};
  {
    std::unique_ptr<LocalStore> s = Create();
    ASSERT_NE(s, nullptr);
    for (const TestChunk& c : chunks) ASSERT_TRUE(Put(*s, c).ok());
    ASSERT_TRUE(s->Flush().ok());
  }
  // A crash after the manifest and refs were written but before the
  // snapshot row committed.
  const std::string hex_refs = work_ + "/snap.refs";
  const ParsedManifest m = MakeSnapshot({RefOf(chunks[0]), RefOf(chunks[1])}, hex_refs);
  const std::string hex = HexEncode(m.id);
  ASSERT_TRUE(env().RenameFile(hex_refs, store_dir_ + "/snapshots/" + hex + ".refs").ok());
  WriteFileOrDie(store_dir_ + "/snapshots/" + hex + ".manifest", m.envelope);
  {
    std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
    ASSERT_NE(ro, nullptr);
    Result<std::vector<SnapshotSummary>> list = ro->ListSnapshots();
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty()) << "readers do not recover";
  }
  std::unique_ptr<LocalStore> s = Open(LocalStore::Mode::kReadWrite);
  ASSERT_NE(s, nullptr);
  Result<std::vector<SnapshotSummary>> list = s->ListSnapshots();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, m.id);
  Result<ParsedManifest> loaded = s->LoadManifest(m.id);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->envelope, m.envelope);
}

TEST_F(LocalStoreTest, UnrecordedIncompleteSnapshotIsNotRecorded) {
  const TestChunk stored = MakeChunk(*keyset_, 1);
  const TestChunk missing = MakeChunk(*keyset_, 2);
  {
    std::unique_ptr<LocalStore> s = Create();
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(Put(*s, stored).ok());
    ASSERT_TRUE(s->Flush().ok());
  }
  const ParsedManifest m = MakeSnapshot({RefOf(stored), RefOf(missing)}, work_ + "/snap.refs");
  const std::string hex = HexEncode(m.id);
  ASSERT_TRUE(
      env().RenameFile(work_ + "/snap.refs", store_dir_ + "/snapshots/" + hex + ".refs").ok());
  WriteFileOrDie(store_dir_ + "/snapshots/" + hex + ".manifest", m.envelope);
  // And a manifest whose refs never made it to disk, and one that is garbage.
  const ParsedManifest no_refs = MakeSnapshot({RefOf(stored)}, work_ + "/other.refs", 5);
  WriteFileOrDie(store_dir_ + "/snapshots/" + HexEncode(no_refs.id) + ".manifest",
                 no_refs.envelope);
  WriteFileOrDie(store_dir_ + "/snapshots/" + std::string(64, 'a') + ".manifest",
                 SeededBytes(4, 200));

  std::unique_ptr<LocalStore> s = Open(LocalStore::Mode::kReadWrite);
  ASSERT_NE(s, nullptr) << "incomplete leftovers do not stop the store from opening";
  Result<std::vector<SnapshotSummary>> list = s->ListSnapshots();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

// --- Snapshots ---

TEST_F(LocalStoreTest, CommittedSnapshotIsListedAndLoadable) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  const std::vector<TestChunk> chunks = {MakeChunk(*keyset_, 1, 300), MakeChunk(*keyset_, 2, 500)};
  // Not flushed: the commit makes them durable first.
  for (const TestChunk& c : chunks) ASSERT_TRUE(Put(*s, c).ok());
  const std::string refs = work_ + "/new.refs";
  const ParsedManifest m = MakeSnapshot({RefOf(chunks[0]), RefOf(chunks[1])}, refs);
  Status st = s->CommitSnapshot(m, refs);
  ASSERT_TRUE(st.ok()) << st.ToString();

  EXPECT_FALSE(Exists(refs)) << "the refs were moved into the store";
  EXPECT_TRUE(Exists(s->RefsPath(m.id)));
  Result<RefSetSummaryInfo> summary = RefSetReader::Summarize(env(), s->RefsPath(m.id));
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->count, 2u);
  EXPECT_EQ(summary->sealed_bytes, 800u);

  Result<std::vector<SnapshotSummary>> list = s->ListSnapshots();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, m.id);
  EXPECT_EQ((*list)[0].created_unix_ns, m.body.created_unix_ns());
  EXPECT_EQ((*list)[0].body.refs().count(), 2u);
  Result<ParsedManifest> loaded = s->LoadManifest(m.id);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->envelope, m.envelope);
  Result<StoreStats> stats = s->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->snapshots, 1u);

  EXPECT_TRUE(s->CommitSnapshot(m, s->RefsPath(m.id)).ok()) << "committing again is harmless";
  list = s->ListSnapshots();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);

  SnapshotId unknown = m.id;
  unknown[0] ^= 1;
  EXPECT_TRUE(HasCode(s->LoadManifest(unknown).status(), StatusCode::kNotFound));
}

TEST_F(LocalStoreTest, CommitRefusesASnapshotWithMissingChunks) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  const TestChunk stored = MakeChunk(*keyset_, 1);
  const TestChunk missing = MakeChunk(*keyset_, 2);
  ASSERT_TRUE(Put(*s, stored).ok());
  TestChunk wrong_size = MakeChunk(*keyset_, 3, 400);
  ASSERT_TRUE(Put(*s, wrong_size).ok());
  wrong_size.sealed.resize(401);
  const struct {
    const char* what;
    std::vector<RefEntry> refs;
    const char* message;
  } kCases[] = {
      {"chunk absent", {RefOf(stored), RefOf(missing)}, "1 chunks"},
      {"chunk stored with another size", {RefOf(stored), RefOf(wrong_size)}, "1 chunks"},
      {"two absent", {RefOf(missing), RefOf(MakeChunk(*keyset_, 4))}, "2 chunks"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    const std::string refs = work_ + "/r.refs";
    const ParsedManifest m = MakeSnapshot(c.refs, refs);
    Status st = s->CommitSnapshot(m, refs);
    EXPECT_TRUE(HasCode(st, StatusCode::kFailedPrecondition));
    EXPECT_THAT(st.message(), HasSubstr(c.message));
    EXPECT_TRUE(Exists(refs)) << "refused refs stay where they were";
    EXPECT_FALSE(Exists(store_dir_ + "/snapshots/" + HexEncode(m.id) + ".manifest"));
    Result<std::vector<SnapshotSummary>> list = s->ListSnapshots();
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty());
  }
  // The message names the first missing chunk.
  const std::string refs = work_ + "/r.refs";
  Status st = s->CommitSnapshot(MakeSnapshot({RefOf(stored), RefOf(missing)}, refs), refs);
  EXPECT_THAT(st.message(), HasSubstr(HexEncode(missing.id)));
}

TEST_F(LocalStoreTest, CommitRefusesRefsThatDoNotMatchTheManifest) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  const TestChunk a = MakeChunk(*keyset_, 1), b = MakeChunk(*keyset_, 2);
  ASSERT_TRUE(Put(*s, a).ok());
  ASSERT_TRUE(Put(*s, b).ok());
  const std::string other_refs = work_ + "/other.refs";
  MakeSnapshot({RefOf(a)}, other_refs);  // refs of some other snapshot

  using Tweak = std::function<void(pb::Manifest&)>;
  const struct {
    const char* what;
    Tweak tweak;
    bool use_other_refs;
  } kCases[] = {
      {"refs of another snapshot", {}, true},
      {"count differs", [](pb::Manifest& m) { m.mutable_refs()->set_count(3); }, false},
      {"sealed bytes differ",
       [](pb::Manifest& m) { m.mutable_refs()->set_sealed_bytes(m.refs().sealed_bytes() + 1); },
       false},
      {"digest differs",
       [](pb::Manifest& m) { m.mutable_refs()->set_digest(std::string(32, 'd')); }, false},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    const std::string refs = work_ + "/r.refs";
    const ParsedManifest m = MakeSnapshot({RefOf(a), RefOf(b)}, refs, 1, c.tweak);
    Status st = s->CommitSnapshot(m, c.use_other_refs ? other_refs : refs);
    EXPECT_TRUE(HasCode(st, StatusCode::kDataLoss));
    EXPECT_THAT(st.message(), HasSubstr("does not match its manifest"));
    Result<std::vector<SnapshotSummary>> list = s->ListSnapshots();
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty());
  }
}

TEST_F(LocalStoreTest, CommitRefusesDamagedOrAbsentRefs) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  const TestChunk a = MakeChunk(*keyset_, 1);
  ASSERT_TRUE(Put(*s, a).ok());
  const std::string refs = work_ + "/r.refs";
  const ParsedManifest m = MakeSnapshot({RefOf(a)}, refs);
  Bytes bytes = ReadFileOrDie(refs);
  bytes[20] ^= 1;
  WriteFileOrDie(refs, bytes);
  EXPECT_TRUE(HasCode(s->CommitSnapshot(m, refs), StatusCode::kDataLoss));
  EXPECT_TRUE(HasCode(s->CommitSnapshot(m, work_ + "/absent.refs"), StatusCode::kNotFound));
}

TEST_F(LocalStoreTest, SnapshotsAreListedOldestFirst) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  std::vector<SnapshotId> by_time;
  for (int64_t t : {30, 10, 20}) {
    const std::string refs = work_ + "/r.refs";
    const ParsedManifest m = MakeSnapshot({}, refs, t);
    ASSERT_TRUE(s->CommitSnapshot(m, refs).ok());
    by_time.push_back(m.id);
  }
  Result<std::vector<SnapshotSummary>> list = s->ListSnapshots();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].id, by_time[1]);
  EXPECT_EQ((*list)[1].id, by_time[2]);
  EXPECT_EQ((*list)[2].id, by_time[0]);
}

TEST_F(LocalStoreTest, ResolveSnapshotFindsLatestAndUniquePrefixes) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(HasCode(s->ResolveSnapshot("latest").status(), StatusCode::kNotFound));

  // Two snapshots whose ids share their first four hex digits (a birthday
  // search over creation times: about 300 signatures), and a third.
  Result<RefSetSummaryInfo> empty = [&] {
    RefSetBuilder builder(env(), work_);
    return builder.Finish(work_ + "/empty.refs");
  }();
  ASSERT_TRUE(empty.ok());
  std::map<std::string, ParsedManifest> by_prefix;
  ParsedManifest a, b;
  for (int64_t t = 1000;; ++t) {
    ASSERT_LT(t, 1000 + 20000) << "no prefix collision found";
    ParsedManifest m = MakeManifest(*empty, t);
    const std::string prefix = HexEncode(m.id).substr(0, 4);
    auto [it, inserted] = by_prefix.emplace(prefix, m);
    if (!inserted) {
      a = it->second;
      b = std::move(m);
      break;
    }
  }
  const ParsedManifest c = MakeManifest(*empty, 5);
  for (const ParsedManifest* m : std::initializer_list<const ParsedManifest*>{&a, &b, &c}) {
    const std::string refs = work_ + "/commit.refs";
    ParsedManifest again = MakeSnapshot({}, refs, m->body.created_unix_ns());
    ASSERT_EQ(again.id, m->id) << "manifests are deterministic";
    Status st = s->CommitSnapshot(again, refs);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  const std::string ha = HexEncode(a.id), hb = HexEncode(b.id), hc = HexEncode(c.id);
  size_t common = 0;
  while (ha[common] == hb[common]) ++common;
  ASSERT_GE(common, 4u);
  const SnapshotId latest = a.body.created_unix_ns() > b.body.created_unix_ns() ? a.id : b.id;
  auto upper = [](std::string x) {
    std::transform(x.begin(), x.end(), x.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
    return x;
  };
  std::string unknown;
  for (int i = 0; i < 0x10000 && unknown.empty(); ++i) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "%04x", i);
    if (ha.rfind(buf, 0) != 0 && hb.rfind(buf, 0) != 0 && hc.rfind(buf, 0) != 0) unknown = buf;
  }

  const struct {
    std::string spec;
    std::optional<SnapshotId> want;
    StatusCode code;
    const char* message;
  } kCases[] = {
      {"latest", latest, StatusCode::kOk, ""},
      {ha, a.id, StatusCode::kOk, ""},
      {hb, b.id, StatusCode::kOk, ""},
      {hc, c.id, StatusCode::kOk, ""},
      {hc.substr(0, 12), c.id, StatusCode::kOk, ""},
      {ha.substr(0, common + 1), a.id, StatusCode::kOk, ""},
      {hb.substr(0, common + 1), b.id, StatusCode::kOk, ""},
      {upper(hc.substr(0, 12)), c.id, StatusCode::kOk, ""},
      {upper(ha), a.id, StatusCode::kOk, ""},
      {ha.substr(0, 4), std::nullopt, StatusCode::kInvalidArgument, "ambiguous"},
      {ha.substr(0, common), std::nullopt, StatusCode::kInvalidArgument, "ambiguous"},
      {hc.substr(0, 3), std::nullopt, StatusCode::kInvalidArgument, "too short"},
      {"", std::nullopt, StatusCode::kInvalidArgument, "too short"},
      {unknown, std::nullopt, StatusCode::kNotFound, "no snapshot matches"},
      {"zzzz", std::nullopt, StatusCode::kNotFound, "no snapshot matches"},
      {hc + "0", std::nullopt, StatusCode::kNotFound, "no snapshot matches"},
  };
  for (const auto& k : kCases) {
    SCOPED_TRACE("spec '" + k.spec + "'");
    Result<SnapshotId> r = s->ResolveSnapshot(k.spec);
    ASSERT_TRUE(HasCode(r.status(), k.code));
    if (k.want) {
      EXPECT_EQ(*r, *k.want);
    } else {
      EXPECT_THAT(r.status().message(), HasSubstr(k.message));
    }
  }
}

// --- Verification ---

TEST_F(LocalStoreTest, VerifyPacksDetectsAFlippedByte) {
  LocalStoreOptions opts;
  opts.target_pack_size = 3000;
  std::unique_ptr<LocalStore> s = Create(opts);
  ASSERT_NE(s, nullptr);
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(Put(*s, MakeChunk(*keyset_, i, 1000)).ok());
  ASSERT_TRUE(s->Flush().ok());
  Result<uint64_t> n = s->VerifyPacks();
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 3u);

  const std::vector<std::string> files = PackFiles(store_dir_);
  ASSERT_EQ(files.size(), 3u);
  const std::string victim = store_dir_ + "/packs/" + files[1];
  Bytes bytes = ReadFileOrDie(victim);
  bytes[500] ^= 0x10;
  WriteFileOrDie(victim, bytes);
  Result<uint64_t> bad = s->VerifyPacks();
  EXPECT_TRUE(HasCode(bad.status(), StatusCode::kDataLoss));
  EXPECT_THAT(bad.status().message(), HasSubstr(files[1].substr(3, 64)));
}

TEST_F(LocalStoreTest, ReadingFromAMissingPackIsDataLoss) {
  const TestChunk c = StoreOneChunkThenDeleteItsPack();
  std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
  ASSERT_NE(ro, nullptr);
  Result<Bytes> read = ro->ReadSealedChunk(c.id);
  EXPECT_TRUE(HasCode(read.status(), StatusCode::kDataLoss));
  EXPECT_THAT(read.status().message(), HasSubstr("missing"));
}

TEST_F(LocalStoreTest, VerifyPacksReportsAMissingPackAsDataLoss) {
  // An indexed pack that is gone is lost data (alert), like a damaged one;
  // kNotFound is for an unknown store or snapshot.
  StoreOneChunkThenDeleteItsPack();
  std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
  ASSERT_NE(ro, nullptr);
  Result<uint64_t> verified = ro->VerifyPacks();
  EXPECT_TRUE(HasCode(verified.status(), StatusCode::kDataLoss));
}

// --- Reclaiming packs ---

// Puts `chunks` and flushes them into one pack; returns that pack's size.
uint64_t PutInOnePack(LocalStore& s, const Keyset::NewDataKey& key,
                      const std::vector<TestChunk>& chunks) {
  Result<StoreStats> before = s.Stats();
  EXPECT_TRUE(before.ok());
  for (const TestChunk& c : chunks) {
    EXPECT_TRUE(s.PutChunk(c.id, c.sealed, key.key.id, key.wrapped).ok());
  }
  EXPECT_TRUE(s.Flush().ok());
  Result<StoreStats> after = s.Stats();
  EXPECT_TRUE(after.ok());
  if (!before.ok() || !after.ok()) return 0;
  EXPECT_EQ(after->packs, before->packs + 1);
  return after->pack_bytes - before->pack_bytes;
}

std::function<bool(const ChunkId&)> NeededAmong(const std::vector<TestChunk>& chunks) {
  std::set<ChunkId> ids;
  for (const TestChunk& c : chunks) ids.insert(c.id);
  return [ids](const ChunkId& id) { return ids.count(id) > 0; };
}

bool NothingNeeded(const ChunkId&) { return false; }

class ReclaimTest : public LocalStoreTest {
 protected:
  // Three packs: `a_` (nothing needed), `b_` (all needed), `c_` (one needed).
  void SetUp() override {
    store_ = Create();
    ASSERT_NE(store_, nullptr);
    for (uint64_t i = 0; i < 3; ++i) {
      a_.push_back(MakeChunk(*keyset_, 10 + i, 500 + i));
      b_.push_back(MakeChunk(*keyset_, 20 + i, 600 + i));
      c_.push_back(MakeChunk(*keyset_, 30 + i, 700 + i));
    }
    a_size_ = PutInOnePack(*store_, key_, a_);
    b_size_ = PutInOnePack(*store_, key_, b_);
    c_size_ = PutInOnePack(*store_, key_, c_);
    needed_ = b_;
    needed_.push_back(c_[1]);
    Result<std::string> pack = store_->PackOf(a_[0].id);
    ASSERT_TRUE(pack.ok());
    a_pack_ = *pack;
  }

  std::string PackFilePath(const std::string& name) const {
    return store_dir_ + "/packs/" + name.substr(0, 2) + "/" + name + ".pack";
  }

  ReclaimReport Reclaim() {
    Result<ReclaimReport> r = store_->ReclaimPacks(NeededAmong(needed_));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ReclaimReport{};
  }

  // What every view of the store says after `a_`'s pack was reclaimed.
  void ExpectOnlyTheFirstPackReclaimed(LocalStore& s) {
    for (const TestChunk& c : a_) {
      Result<Bytes> read = s.ReadSealedChunk(c.id);
      EXPECT_TRUE(HasCode(read.status(), StatusCode::kNotFound));
      EXPECT_THAT(read.status().message(),
                  HasSubstr("chunk " + HexEncode(c.id) + " was reclaimed"));
      Result<std::optional<uint32_t>> size = s.ChunkSealedSize(c.id);
      ASSERT_TRUE(size.ok());
      EXPECT_EQ(*size, std::optional<uint32_t>(c.sealed.size())) << "the id stays known";
    }
    for (const std::vector<TestChunk>* group : {&b_, &c_}) {
      for (const TestChunk& c : *group) {
        Result<Bytes> read = s.ReadSealedChunk(c.id);
        ASSERT_TRUE(read.ok()) << read.status().ToString();
        EXPECT_EQ(*read, c.sealed);
      }
    }
    Result<StoreStats> stats = s.Stats();
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->packs, 2u);
    EXPECT_EQ(stats->pack_bytes, b_size_ + c_size_);
    EXPECT_EQ(stats->chunks, 6u);
    EXPECT_EQ(stats->reclaimed_packs, 1u);
    EXPECT_EQ(stats->reclaimed_bytes, a_size_);
    EXPECT_EQ(stats->reclaimed_chunks, 3u);
    EXPECT_FALSE(Exists(PackFilePath(a_pack_)));
    EXPECT_EQ(PackFiles(store_dir_).size(), 2u);
  }

  std::unique_ptr<LocalStore> store_;
  std::vector<TestChunk> a_, b_, c_, needed_;
  uint64_t a_size_ = 0, b_size_ = 0, c_size_ = 0;
  std::string a_pack_;
};

TEST_F(ReclaimTest, RemovesOnlyPacksWithNoNeededChunkAndFreesTheirBytes) {
  const ReclaimReport r = Reclaim();
  EXPECT_EQ(r.packs_removed, 1u) << "a pack with one needed chunk stays whole";
  EXPECT_EQ(r.bytes_freed, a_size_);
  EXPECT_EQ(r.chunks_forgotten, 3u);
  ExpectOnlyTheFirstPackReclaimed(*store_);
  Result<uint64_t> verified = store_->VerifyPacks();
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ(*verified, 2u) << "reclaimed packs are not verified";

  const ReclaimReport again = Reclaim();
  EXPECT_EQ(again.packs_removed, 0u) << "reclaiming again finds nothing new";
  EXPECT_EQ(again.bytes_freed, 0u);
  EXPECT_EQ(again.chunks_forgotten, 0u);
}

TEST_F(ReclaimTest, NothingNeededRemovesEveryFinishedPackButNotTheOpenOne) {
  const TestChunk unflushed = MakeChunk(*keyset_, 99);
  ASSERT_TRUE(Put(*store_, unflushed).ok());
  Result<ReclaimReport> r = store_->ReclaimPacks(NothingNeeded);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->packs_removed, 3u);
  EXPECT_EQ(r->bytes_freed, a_size_ + b_size_ + c_size_);
  EXPECT_EQ(r->chunks_forgotten, 9u);
  EXPECT_TRUE(PackFiles(store_dir_).empty());
  // The open pack was not touched: its chunk is flushed and readable now.
  ASSERT_TRUE(store_->Flush().ok());
  Result<Bytes> read = store_->ReadSealedChunk(unflushed.id);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, unflushed.sealed);
  Result<StoreStats> stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->packs, 1u);
  EXPECT_EQ(stats->chunks, 1u);
  EXPECT_EQ(stats->reclaimed_packs, 3u);
  EXPECT_EQ(stats->reclaimed_chunks, 9u);
}

TEST_F(ReclaimTest, ReclaimedChunkIsNotStoredAgainByDedupButPutChunkRevivesIt) {
  ASSERT_EQ(Reclaim().packs_removed, 1u);
  // A capture asks ChunkSealedSize first (ChunkWriter): the id is known.
  Result<std::optional<uint32_t>> known = store_->ChunkSealedSize(a_[0].id);
  ASSERT_TRUE(known.ok());
  EXPECT_TRUE(known->has_value());
  // An explicit PutChunk stores it again, and it is live once flushed.
  Result<PutResult> put = Put(*store_, a_[0]);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_TRUE(put->added);
  Result<PutResult> twice = Put(*store_, a_[0]);
  ASSERT_TRUE(twice.ok());
  EXPECT_FALSE(twice->added) << "pending now: not stored twice";
  ASSERT_TRUE(store_->Flush().ok());
  Result<Bytes> read = store_->ReadSealedChunk(a_[0].id);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, a_[0].sealed);
  Result<StoreStats> stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->chunks, 7u);
  EXPECT_EQ(stats->reclaimed_chunks, 2u) << "the revived chunk is no longer counted as reclaimed";
  // Reclaiming with it unneeded removes its new pack; the others stay reclaimed.
  Result<ReclaimReport> r = store_->ReclaimPacks(NeededAmong(needed_));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->packs_removed, 1u);
  EXPECT_EQ(r->chunks_forgotten, 1u);
  stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->reclaimed_chunks, 3u);
  EXPECT_EQ(stats->reclaimed_packs, 2u);
}

TEST_F(ReclaimTest, ReclaimedStateSurvivesReopening) {
  ASSERT_EQ(Reclaim().packs_removed, 1u);
  store_.reset();
  for (LocalStore::Mode mode : {LocalStore::Mode::kReadOnly, LocalStore::Mode::kReadWrite}) {
    SCOPED_TRACE(mode == LocalStore::Mode::kReadOnly ? "read-only" : "read-write");
    std::unique_ptr<LocalStore> s = Open(mode);
    ASSERT_NE(s, nullptr);
    ExpectOnlyTheFirstPackReclaimed(*s);
  }
}

TEST_F(ReclaimTest, ReaderOpenDuringTheReclaimSeesItsResult) {
  std::unique_ptr<LocalStore> reader = Open(LocalStore::Mode::kReadOnly);
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(reader->ReadSealedChunk(a_[0].id).ok());  // its pack file is now open in the reader
  ASSERT_EQ(Reclaim().packs_removed, 1u);
  ExpectOnlyTheFirstPackReclaimed(*reader);
}

TEST_F(ReclaimTest, LeftoverFileOfAReclaimedPackIsDeletedOnReopenNotReindexed) {
  const Bytes pack_bytes = ReadFileOrDie(PackFilePath(a_pack_));
  ASSERT_EQ(Reclaim().packs_removed, 1u);
  store_.reset();
  // A crash after the index commit, before the unlink.
  WriteFileOrDie(PackFilePath(a_pack_), pack_bytes);
  {
    std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
    ASSERT_NE(ro, nullptr);
    EXPECT_TRUE(Exists(PackFilePath(a_pack_))) << "readers do not recover";
    EXPECT_THAT(ro->ReadSealedChunk(a_[0].id).status().message(), HasSubstr("reclaimed"));
  }
  std::unique_ptr<LocalStore> s = Open(LocalStore::Mode::kReadWrite);
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(Exists(PackFilePath(a_pack_))) << "the reclaim is finished";
  EXPECT_FALSE(Exists(PackFilePath(a_pack_) + ".damaged"));
  ExpectOnlyTheFirstPackReclaimed(*s);
}

TEST_F(ReclaimTest, SnapshotsStayListedAndTheirRefsStream) {
  const std::string refs = work_ + "/s.refs";
  std::vector<RefEntry> entries;
  for (const TestChunk& c : a_) entries.push_back(RefOf(c));
  const ParsedManifest m = MakeSnapshot(entries, refs);
  ASSERT_TRUE(store_->CommitSnapshot(m, refs).ok());
  ASSERT_EQ(Reclaim().packs_removed, 1u);

  Result<std::vector<SnapshotSummary>> list = store_->ListSnapshots();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, m.id);
  EXPECT_TRUE(store_->LoadManifest(m.id).ok());
  EXPECT_TRUE(store_->ReadRefs(m.id, 1 << 20).ok());
  std::vector<RefEntry> streamed;
  Status s = store_->ForEachRef(m.id, [&](const ChunkId& id, uint32_t sealed_size) {
    streamed.push_back(RefEntry{id, sealed_size});
    return OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::sort(entries.begin(), entries.end());
  ASSERT_EQ(streamed.size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(streamed[i].id, entries[i].id);
    EXPECT_EQ(streamed[i].sealed_size, entries[i].sealed_size);
  }
  // The snapshot's reclaimed chunks still count as present for a commit.
  const std::string again = work_ + "/again.refs";
  const ParsedManifest m2 = MakeSnapshot(entries, again, 1800000000000000000);
  Status committed = store_->CommitSnapshot(m2, again);
  EXPECT_TRUE(committed.ok()) << committed.ToString();
}

TEST_F(LocalStoreTest, ForEachRefStopsAtTheCallersErrorAndNamesUnknownSnapshots) {
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  const std::vector<TestChunk> chunks = {MakeChunk(*keyset_, 1), MakeChunk(*keyset_, 2)};
  for (const TestChunk& c : chunks) ASSERT_TRUE(Put(*s, c).ok());
  const std::string refs = work_ + "/r.refs";
  const ParsedManifest m = MakeSnapshot({RefOf(chunks[0]), RefOf(chunks[1])}, refs);
  ASSERT_TRUE(s->CommitSnapshot(m, refs).ok());
  int calls = 0;
  Status stopped = s->ForEachRef(m.id, [&](const ChunkId&, uint32_t) {
    ++calls;
    return CancelledError("enough");
  });
  EXPECT_TRUE(HasCode(stopped, StatusCode::kCancelled));
  EXPECT_EQ(calls, 1);
  SnapshotId unknown{};
  unknown[0] = 7;
  Status missing = s->ForEachRef(unknown, [](const ChunkId&, uint32_t) { return OkStatus(); });
  EXPECT_TRUE(HasCode(missing, StatusCode::kNotFound));
  EXPECT_THAT(missing.message(), HasSubstr(HexEncode(unknown)));
  // A damaged refs object is data loss.
  Bytes bytes = ReadFileOrDie(s->RefsPath(m.id));
  bytes[20] ^= 1;
  WriteFileOrDie(s->RefsPath(m.id), bytes);
  Status damaged = s->ForEachRef(m.id, [](const ChunkId&, uint32_t) { return OkStatus(); });
  EXPECT_TRUE(HasCode(damaged, StatusCode::kDataLoss)) << damaged.ToString();
}

TEST_F(LocalStoreTest, ReadOnlyStoreRefusesReclaim) {
  ASSERT_NE(Create(), nullptr);
  std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
  ASSERT_NE(ro, nullptr);
  EXPECT_TRUE(HasCode(ro->ReclaimPacks(NothingNeeded).status(), StatusCode::kFailedPrecondition));
}

TEST_F(LocalStoreTest, CaptureAfterReclaimStoresNothingNewForReclaimedContent) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src + "/sub");
  WriteFileOrDie(src + "/a", SeededBytes(1, 300000));
  WriteFileOrDie(src + "/sub/b", SeededBytes(2, 200000));
  std::unique_ptr<LocalStore> s = Create();
  ASSERT_NE(s, nullptr);
  CaptureOptions opts;
  opts.use_file_cache = false;
  opts.chunker = ChunkerParams{1024, 4096, 16384};
  Result<CaptureReport> first = CaptureVolume(src, *keyset_, *s, opts);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_GT(first->chunks_new, 0u);
  // Every hub has it: free the space.
  Result<ReclaimReport> reclaimed = s->ReclaimPacks(NothingNeeded);
  ASSERT_TRUE(reclaimed.ok()) << reclaimed.status().ToString();
  EXPECT_GT(reclaimed->packs_removed, 0u);
  EXPECT_EQ(reclaimed->chunks_forgotten, first->chunks_new);
  EXPECT_TRUE(PackFiles(store_dir_).empty());

  Result<CaptureReport> second = CaptureVolume(src, *keyset_, *s, opts);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_GT(second->bytes_read, 0u) << "no file cache: everything was read again";
  EXPECT_EQ(second->chunks_new, 0u);
  EXPECT_EQ(second->bytes_stored, 0u);
  EXPECT_TRUE(PackFiles(store_dir_).empty()) << "nothing was stored again";
  Result<StoreStats> stats = s->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->packs, 0u);
  EXPECT_EQ(stats->snapshots, 2u);
}

TEST_F(LocalStoreTest, IndexSchemaVersion1IsReadAsIsAndMigratedOnWritableOpen) {
  const std::vector<TestChunk> chunks = {MakeChunk(*keyset_, 1), MakeChunk(*keyset_, 2)};
  {
    std::unique_ptr<LocalStore> s = Create();
    ASSERT_NE(s, nullptr);
    for (const TestChunk& c : chunks) ASSERT_TRUE(Put(*s, c).ok());
    ASSERT_TRUE(s->Flush().ok());
  }
  auto open_db = [&] {
    Result<std::unique_ptr<sqlite::Database>> db =
        sqlite::Database::Open(store_dir_ + "/index.db", {});
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    return db.ok() ? std::move(*db) : nullptr;
  };
  auto table_count = [](sqlite::Database& db) -> int64_t {
    Result<sqlite::Statement> st = db.Prepare(
        "SELECT count(*) FROM sqlite_master WHERE name IN ('reclaimed_packs', "
        "'reclaimed_chunks')");
    EXPECT_TRUE(st.ok());
    if (!st.ok()) return -1;
    Result<bool> row = st->Step();
    EXPECT_TRUE(row.ok() && *row);
    return st->ColumnInt(0);
  };
  {
    // Back to the version-1 schema (version 2 only added these tables).
    std::unique_ptr<sqlite::Database> db = open_db();
    ASSERT_NE(db, nullptr);
    ASSERT_TRUE(db->Exec("DROP TABLE reclaimed_packs; DROP TABLE reclaimed_chunks;").ok());
    ASSERT_TRUE(db->SetUserVersion(1).ok());
  }
  {
    std::unique_ptr<LocalStore> ro = Open(LocalStore::Mode::kReadOnly);
    ASSERT_NE(ro, nullptr) << "an old store opens read-only as it is";
    Result<Bytes> read = ro->ReadSealedChunk(chunks[0].id);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(*read, chunks[0].sealed);
    const TestChunk absent = MakeChunk(*keyset_, 3);
    Result<std::optional<uint32_t>> size = ro->ChunkSealedSize(absent.id);
    ASSERT_TRUE(size.ok()) << size.status().ToString();
    EXPECT_FALSE(size->has_value());
    EXPECT_THAT(ro->ReadSealedChunk(absent.id).status().message(), HasSubstr("is not in store"));
    Result<StoreStats> stats = ro->Stats();
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->chunks, 2u);
    EXPECT_EQ(stats->reclaimed_packs, 0u);
    std::unique_ptr<sqlite::Database> db = open_db();
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(*db->UserVersion(), 1) << "a reader does not migrate";
    EXPECT_EQ(table_count(*db), 0);
  }
  {
    std::unique_ptr<LocalStore> s = Open(LocalStore::Mode::kReadWrite);
    ASSERT_NE(s, nullptr);
    std::unique_ptr<sqlite::Database> db = open_db();
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(*db->UserVersion(), 2);
    EXPECT_EQ(table_count(*db), 2);
    Result<ReclaimReport> r = s->ReclaimPacks(NeededAmong({chunks[1]}));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->packs_removed, 0u) << "both chunks share the one pack";
    r = s->ReclaimPacks(NothingNeeded);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->packs_removed, 1u);
  }
  std::unique_ptr<LocalStore> again = Open(LocalStore::Mode::kReadOnly);
  ASSERT_NE(again, nullptr);
  EXPECT_THAT(again->ReadSealedChunk(chunks[0].id).status().message(), HasSubstr("reclaimed"));
}

}  // namespace
}  // namespace ferry::snapshot

namespace ferry::snapshot {
namespace {

TEST(LocalStorePinnedReadsTest, PinnedReaderSeesTheStoreAsItWasWhenOpened) {
  testing::TempDir dir;
  std::unique_ptr<Keyset> keyset = Keyset::Generate();
  Result<std::unique_ptr<LocalStore>> writer = LocalStore::Create(dir.Sub("store"));
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  ChunkWriter chunks(*keyset, **writer);
  Result<ChunkResult> first = chunks.Write(AsBytes("present when the reader opened"));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*writer)->Flush().ok());

  LocalStoreOptions pinned;
  pinned.pin_reads = true;
  Result<std::unique_ptr<LocalStore>> reader =
      LocalStore::Open(dir.Sub("store"), LocalStore::Mode::kReadOnly, pinned);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();

  Result<ChunkResult> later = chunks.Write(AsBytes("written after the reader opened"));
  ASSERT_TRUE(later.ok());
  ASSERT_TRUE((*writer)->Flush().ok());

  EXPECT_TRUE((*reader)->ReadSealedChunk(first->id).ok());
  EXPECT_EQ((*reader)->ReadSealedChunk(later->id).status().code(), StatusCode::kNotFound);
  // An unpinned reader opened now sees both.
  Result<std::unique_ptr<LocalStore>> fresh =
      LocalStore::Open(dir.Sub("store"), LocalStore::Mode::kReadOnly);
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE((*fresh)->ReadSealedChunk(later->id).ok());
}

}  // namespace
}  // namespace ferry::snapshot
