// Round trips of whole trees through CaptureVolume and RestoreSnapshot, the
// file cache, dedup, and consistency under concurrent modification.
#include "snapshot/volume_capture.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "snapshot/ref_set.h"
#include "snapshot/restorer.h"
#include "snapshot/sealed_chunk.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::CompressibleBytes;
using ::ferry::testing::DiffTrees;
using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;

class VolumeCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keyset_ = Keyset::Generate();
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Create(dir_.Sub("store"));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    options_.chunker = ChunkerParams{1024, 4096, 16384};  // small chunks: many per file
  }

  CaptureReport Capture(const std::string& src) {
    Result<CaptureReport> r = CaptureVolume(src, *keyset_, *store_, options_);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : CaptureReport{};
  }

  void RestoreAndCompare(const SnapshotId& id, const std::string& src, const std::string& name) {
    const std::string out = dir_.Sub(name);
    Result<RestoreReport> r = RestoreSnapshot(*store_, *keyset_, id, out);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->refused.empty()) << r->refused.front();
    EXPECT_EQ(DiffTrees(src, out), "");
    Result<VerifyReport> v = VerifySnapshot(*store_, *keyset_, id);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
  }

  TempDir dir_;
  std::unique_ptr<Keyset> keyset_;
  std::unique_ptr<LocalStore> store_;
  CaptureOptions options_;
};

// A name of random bytes (no '/' or NUL), 1..max_len long.
std::string RandomName(std::mt19937_64& rng, size_t max_len) {
  std::string n;
  const size_t len = 1 + rng() % max_len;
  while (n.size() < len) {
    const char c = static_cast<char>(rng() % 256);
    if (c != '/' && c != '\0') n.push_back(c);
  }
  if (n == "." || n == "..") n += "x";
  return n;
}

void SetMtime(const std::string& path, int64_t sec, long nsec) {
  const struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << path;
}

// Builds a random tree: names with newlines and invalid UTF-8, 255-byte
// names, deep nesting, hard links, sparse and empty files, symlinks, modes,
// nanosecond mtimes and user xattrs.
void BuildRandomTree(const std::string& root, uint64_t seed) {
  std::mt19937_64 rng(seed);
  MakeDirsOrDie(root);
  std::vector<std::string> dirs = {root};
  std::vector<std::string> files;
  for (int i = 0; i < 40; ++i) {
    const std::string& parent = dirs[rng() % dirs.size()];
    std::string name;
    switch (rng() % 6) {
      case 0:
        name = "line\nbreak" + std::to_string(i);
        break;
      case 1:
        name = std::string("\xff\xfe invalid utf8 ") + std::to_string(i);
        break;
      case 2:
        name = std::string(255 - std::to_string(i).size(), 'L') + std::to_string(i);
        break;
      default:
        name = RandomName(rng, 40) + std::to_string(i);
        break;
    }
    const std::string path = parent + "/" + name;
    switch (rng() % 5) {
      case 0: {  // directory
        ASSERT_EQ(::mkdir(path.c_str(), 0750), 0) << path;
        dirs.push_back(path);
        break;
      }
      case 1: {  // compressible file
        WriteFileOrDie(path, CompressibleBytes(rng(), rng() % 100000, 0.3), 0640);
        files.push_back(path);
        break;
      }
      case 2: {  // sparse file: data, a hole, data, a trailing hole
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ASSERT_GE(fd, 0);
        Bytes a = SeededBytes(rng(), 5000);
        ASSERT_EQ(::pwrite(fd, a.data(), a.size(), 0), static_cast<ssize_t>(a.size()));
        ASSERT_EQ(::pwrite(fd, a.data(), a.size(), 3 << 20), static_cast<ssize_t>(a.size()));
        ASSERT_EQ(::ftruncate(fd, 8 << 20), 0);
        ::close(fd);
        files.push_back(path);
        break;
      }
      case 3: {  // empty file or symlink
        if (rng() % 2) {
          WriteFileOrDie(path, {}, 0444);
          files.push_back(path);
        } else {
          const std::string target = rng() % 2 ? "relative/target\n" : "sibling";
          ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0);
        }
        break;
      }
      default: {  // random file
        WriteFileOrDie(path, SeededBytes(rng(), rng() % 300000), 0755);
        files.push_back(path);
        break;
      }
    }
  }
  // Deep nesting.
  std::string deep = root + "/deep";
  for (int i = 0; i < 60; ++i) deep += "/d" + std::to_string(i);
  MakeDirsOrDie(deep);
  WriteFileOrDie(deep + "/leaf", AsBytes("bottom"));
  // Hard links (within and across directories).
  if (!files.empty()) {
    const std::string& target = files[rng() % files.size()];
    ASSERT_EQ(::link(target.c_str(), (root + "/hardlink-a").c_str()), 0);
    ASSERT_EQ(::link(target.c_str(), (dirs.back() + "/hardlink-b").c_str()), 0);
  }
  // User xattrs, when the filesystem supports them.
  if (!files.empty()) {
    ::setxattr(files.front().c_str(), "user.ferry", "value\0with nul", 14, 0);
  }
  // Nanosecond mtimes, set last (after children were created).
  for (const auto& f : files)
    SetMtime(f, 1'600'000'000 + static_cast<int64_t>(rng() % 1000), 123456789);
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) SetMtime(*it, 1'500'000'000, 987654321);
}

TEST_F(VolumeCaptureTest, RandomTreesRoundTripByteForByte) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::string src = dir_.Sub("src" + std::to_string(seed));
    BuildRandomTree(src, seed);
    CaptureReport r = Capture(src);
    EXPECT_TRUE(r.inconsistent.empty());
    EXPECT_TRUE(r.skipped.empty()) << (r.skipped.empty() ? "" : r.skipped.front());
    EXPECT_GT(r.files, 0u);
    RestoreAndCompare(r.id, src, "out" + std::to_string(seed));
  }
}

// The walk moves on while earlier files are still being sealed: directories
// finish out of walk order, and more nodes wait than the queue's bound (1024).
// Every node must still land in its own directory, in name order, and the
// file cache must be written in key order (the second capture hits it for
// every file).
TEST_F(VolumeCaptureTest, ManyFilesBetweenDirectoriesLandInTheirOwnDirectory) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  for (int i = 0; i < 1500; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "f%04d", i);
    WriteFileOrDie(src + "/" + name, SeededBytes(static_cast<uint64_t>(i), i % 7 == 0 ? 9000 : 40));
    if (i % 100 == 50) {
      const std::string sub = src + "/" + name + ".d";
      MakeDirsOrDie(sub + "/inner/empty");
      WriteFileOrDie(sub + "/inner/x", SeededBytes(static_cast<uint64_t>(i) + 7, 20000));
      WriteFileOrDie(sub + "/y", SeededBytes(static_cast<uint64_t>(i) + 9, 100));
    }
  }
  CaptureReport first = Capture(src);
  EXPECT_EQ(first.files, 1500u + 15u * 2u);
  EXPECT_EQ(first.directories, 1u + 15u * 3u);
  RestoreAndCompare(first.id, src, "out1");
  CaptureReport second = Capture(src);
  EXPECT_EQ(second.cache_hits, second.files);
  EXPECT_EQ(second.bytes_stored, 0u);
  RestoreAndCompare(second.id, src, "out2");
}

TEST_F(VolumeCaptureTest, SparseFilesKeepTheirHoles) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  int fd = ::open((src + "/sparse").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "x", 1, 100 << 20), 1);
  ::close(fd);
  CaptureReport r = Capture(src);
  EXPECT_LT(r.bytes_read, 1u << 20) << "the hole must not be read";
  RestoreAndCompare(r.id, src, "out");
  struct stat st;
  ASSERT_EQ(::stat(dir_.Sub("out/sparse").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, (100 << 20) + 1);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "restored file must stay sparse";
}

TEST_F(VolumeCaptureTest, FileThatIsAllHoleRoundTrips) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  int fd = ::open((src + "/allhole").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
  ::close(fd);
  CaptureReport r = Capture(src);
  EXPECT_LT(r.bytes_read, 4096u);
  RestoreAndCompare(r.id, src, "out");
}

TEST_F(VolumeCaptureTest, UnchangedFilesCostOneStatAndStoreNothing) {
  const std::string src = dir_.Sub("src");
  BuildRandomTree(src, 7);
  CaptureReport first = Capture(src);
  CaptureReport second = Capture(src);
  EXPECT_EQ(second.cache_hits, second.files);
  EXPECT_EQ(second.bytes_read, 0u);
  EXPECT_EQ(second.bytes_stored, 0u) << "an unchanged tree adds no chunk";
  EXPECT_EQ(second.id == first.id, false) << "a new snapshot (new time) is still recorded";
  RestoreAndCompare(second.id, src, "out");
}

TEST_F(VolumeCaptureTest, ChangedFileIsReadAgainAndOldSnapshotKeepsOldContent) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src + "/d");
  const Bytes v1 = SeededBytes(1, 200000);
  WriteFileOrDie(src + "/d/f", v1);
  WriteFileOrDie(src + "/other", SeededBytes(2, 50000));
  SetMtime(src + "/d/f", 1'600'000'000, 0);
  CaptureReport first = Capture(src);
  // Same size and the same mtime put back: only ctime and content tell.
  Bytes v2 = v1;
  v2[100000] ^= 0xff;
  WriteFileOrDie(src + "/d/f", v2);
  SetMtime(src + "/d/f", 1'600'000'000, 0);
  CaptureReport second = Capture(src);
  EXPECT_EQ(second.cache_hits, 1u) << "only 'other' is unchanged";
  EXPECT_GT(second.bytes_new, 0u);
  EXPECT_LT(second.bytes_new, 100000u) << "only the chunk around the change is new";
  RestoreAndCompare(second.id, src, "out2");
  ASSERT_TRUE(RestoreSnapshot(*store_, *keyset_, first.id, dir_.Sub("out1")).ok());
  EXPECT_EQ(ReadFileOrDie(dir_.Sub("out1/d/f")), v1);
}

TEST_F(VolumeCaptureTest, IdenticalFilesAreStoredOnce) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src + "/a");
  MakeDirsOrDie(src + "/b");
  const Bytes data = SeededBytes(3, 1 << 20);
  WriteFileOrDie(src + "/a/one", data);
  WriteFileOrDie(src + "/b/two", data);
  WriteFileOrDie(src + "/three", data);
  CaptureReport r = Capture(src);
  // At least three reads (a file written within the last tick is read twice).
  EXPECT_GE(r.bytes_read, 3u << 20);
  EXPECT_LT(r.bytes_new, (1u << 20) + 64 * 1024) << "three copies, one stored";
  RestoreAndCompare(r.id, src, "out");
}

TEST_F(VolumeCaptureTest, SpecialFilesAreSkippedWithAWarning) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  WriteFileOrDie(src + "/regular", AsBytes("data"));
  ASSERT_EQ(::mkfifo((src + "/fifo").c_str(), 0644), 0);
  std::vector<std::string> warnings;
  options_.on_warning = [&](const std::string& w) { warnings.push_back(w); };
  CaptureReport r = Capture(src);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].find("fifo"), std::string::npos);
  EXPECT_NE(r.skipped[0].find("FIFO"), std::string::npos);
  ASSERT_FALSE(warnings.empty());
  Result<ParsedManifest> m = store_->LoadManifest(r.id);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->body.datasets(0).stats().skipped(), 1u);
}

TEST_F(VolumeCaptureTest, SubPathRestoresOneFolderOrFile) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src + "/a/b/c");
  WriteFileOrDie(src + "/a/b/c/file", AsBytes("deep content"));
  WriteFileOrDie(src + "/a/top", AsBytes("top"));
  CaptureReport r = Capture(src);
  RestoreOptions ro;
  ro.sub_path = "a/b";
  ASSERT_TRUE(RestoreSnapshot(*store_, *keyset_, r.id, dir_.Sub("out"), ro).ok());
  EXPECT_EQ(DiffTrees(src + "/a/b", dir_.Sub("out/b")), "");
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir_.Sub("out"));
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"b"});
  ro.sub_path = "a/top";
  ASSERT_TRUE(RestoreSnapshot(*store_, *keyset_, r.id, dir_.Sub("out2"), ro).ok());
  EXPECT_EQ(ReadFileOrDie(dir_.Sub("out2/top")), ToBytes("top"));
  ro.sub_path = "a/missing";
  Result<RestoreReport> missing = RestoreSnapshot(*store_, *keyset_, r.id, dir_.Sub("out3"), ro);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(VolumeCaptureTest, RestoreRefusesANonEmptyTargetUnlessForced) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  WriteFileOrDie(src + "/f", AsBytes("new"));
  CaptureReport r = Capture(src);
  MakeDirsOrDie(dir_.Sub("out"));
  WriteFileOrDie(dir_.Sub("out/f"), AsBytes("old"));
  Result<RestoreReport> refused = RestoreSnapshot(*store_, *keyset_, r.id, dir_.Sub("out"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFileOrDie(dir_.Sub("out/f")), ToBytes("old"));
  RestoreOptions force;
  force.force = true;
  ASSERT_TRUE(RestoreSnapshot(*store_, *keyset_, r.id, dir_.Sub("out"), force).ok());
  EXPECT_EQ(ReadFileOrDie(dir_.Sub("out/f")), ToBytes("new"));
}

// A file rewritten while it is captured ends up either consistent in the
// snapshot (one whole version) or listed as inconsistent — never a silent mix.
TEST_F(VolumeCaptureTest, FileRewrittenDuringCaptureIsConsistentOrListed) {
  constexpr size_t kBlock = 4096;
  constexpr size_t kBlocks = 2048;  // 8 MiB: reading it takes many syscalls
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  const std::string path = src + "/hot";
  auto version_bytes = [&](uint32_t v) {
    Bytes b(kBlock * kBlocks);
    for (size_t i = 0; i < kBlocks; ++i) {
      std::memcpy(b.data() + i * kBlock, &v, 4);
      std::memset(b.data() + i * kBlock + 4, static_cast<int>(v & 0xff), kBlock - 4);
    }
    return b;
  };
  WriteFileOrDie(path, version_bytes(0));
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::atomic<bool> stop{false};
    std::atomic<uint32_t> written{0};
    std::thread writer([&] {
      int fd = ::open(path.c_str(), O_WRONLY);
      ASSERT_GE(fd, 0);
      for (uint32_t v = 1; !stop.load(); ++v) {
        Bytes b = version_bytes(v);
        // Block by block, in place: a reader can see a mix of versions.
        for (size_t i = 0; i < kBlocks && !stop.load(); ++i) {
          ASSERT_EQ(::pwrite(fd, b.data() + i * kBlock, kBlock, static_cast<off_t>(i * kBlock)),
                    static_cast<ssize_t>(kBlock));
        }
        written.store(v);
      }
      ::close(fd);
    });
    while (written.load() == 0) std::this_thread::yield();  // the writer is running
    options_.max_retries = 2;
    CaptureReport r = Capture(src);
    stop.store(true);
    writer.join();
    const std::string out = dir_.Sub("out" + std::to_string(round));
    ASSERT_TRUE(RestoreSnapshot(*store_, *keyset_, r.id, out).ok());
    const Bytes restored = ReadFileOrDie(out + "/hot");
    if (!r.inconsistent.empty()) {
      EXPECT_EQ(r.inconsistent, std::vector<std::string>{"hot"});
      continue;  // listed: any content is acceptable
    }
    ASSERT_EQ(restored.size(), kBlock * kBlocks);
    uint32_t first;
    std::memcpy(&first, restored.data(), 4);
    for (size_t i = 0; i < kBlocks; ++i) {
      uint32_t v;
      std::memcpy(&v, restored.data() + i * kBlock, 4);
      ASSERT_EQ(v, first) << "block " << i << " mixes versions but the file was not listed";
    }
  }
}

// Once the writer stops, a re-read succeeds: a file that changed only
// briefly is captured consistently rather than flagged.
TEST_F(VolumeCaptureTest, FileThatSettlesIsCapturedConsistently) {
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  WriteFileOrDie(src + "/f", SeededBytes(1, 100000));  // ctime is "now": racy at first
  CaptureReport r = Capture(src);
  EXPECT_TRUE(r.inconsistent.empty());
  RestoreAndCompare(r.id, src, "out");
}

TEST_F(VolumeCaptureTest, SourceThatIsNotADirectoryIsInvalidArgument) {
  WriteFileOrDie(dir_.Sub("file"), AsBytes("x"));
  Result<CaptureReport> r = CaptureVolume(dir_.Sub("file"), *keyset_, *store_, options_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  Result<CaptureReport> missing = CaptureVolume(dir_.Sub("nope"), *keyset_, *store_, options_);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(VolumeCaptureTest, AgentKeyFileCapturesButCannotRestore) {
  Result<std::unique_ptr<Keyset>> agent = Keyset::Parse(keyset_->SerializeAgent(), "agent.key");
  ASSERT_TRUE(agent.ok());
  const std::string src = dir_.Sub("src");
  BuildRandomTree(src, 11);
  Result<CaptureReport> r = CaptureVolume(src, **agent, *store_, options_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Result<RestoreReport> denied = RestoreSnapshot(*store_, **agent, r->id, dir_.Sub("denied"));
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), StatusCode::kFailedPrecondition);
  Result<bool> exists = Env::Default()->FileExists(dir_.Sub("denied"));
  EXPECT_FALSE(*exists) << "nothing is written when the keyset cannot decrypt";
  RestoreAndCompare(r->id, src, "out");  // the tenant keyset reads it
}

TEST_F(VolumeCaptureTest, ParentIsTheLatestSnapshotOfTheSameDataset) {
  const std::string src = dir_.Sub("data");
  MakeDirsOrDie(src);
  CaptureReport a = Capture(src);
  CaptureReport b = Capture(src);
  Result<ParsedManifest> mb = store_->LoadManifest(b.id);
  ASSERT_TRUE(mb.ok());
  EXPECT_EQ(mb->body.parent(), std::string(a.id.begin(), a.id.end()));
  EXPECT_EQ(mb->body.datasets(0).name(), "data");
}

// --- Excludes ---

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// A tree with the same names at several depths:
//   keep.txt  drop.tmp  cache/{x,y}  logs/{a.gz,a.txt,old/b.gz}
//   sub/{c.tmp,cache (a file),logs/c.gz,keep}
void BuildExcludeTree(const std::string& src) {
  MakeDirsOrDie(src + "/cache");
  MakeDirsOrDie(src + "/logs/old");
  MakeDirsOrDie(src + "/sub/logs");
  for (const char* f : {"keep.txt", "drop.tmp", "cache/x", "cache/y", "logs/a.gz", "logs/a.txt",
                        "logs/old/b.gz", "sub/c.tmp", "sub/cache", "sub/logs/c.gz", "sub/keep"}) {
    WriteFileOrDie(src + "/" + f, AsBytes(std::string("content of ") + f));
  }
}

TEST_F(VolumeCaptureTest, ExcludedFilesAndDirectoriesAreAbsentAfterRestore) {
  const std::string src = dir_.Sub("src");
  BuildExcludeTree(src);
  std::vector<std::string> warnings;
  options_.on_warning = [&](const std::string& w) { warnings.push_back(w); };
  options_.excludes = {"*.tmp", "cache", "logs/*.gz"};
  CaptureReport r = Capture(src);
  // drop.tmp, cache/ (its two files are not visited), logs/a.gz, sub/c.tmp, sub/cache.
  EXPECT_EQ(r.excluded, 5u);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  EXPECT_TRUE(r.skipped.empty());
  EXPECT_EQ(r.files, 5u) << "keep.txt, logs/a.txt, logs/old/b.gz, sub/logs/c.gz, sub/keep";
  const std::string out = dir_.Sub("out");
  Result<RestoreReport> restored = RestoreSnapshot(*store_, *keyset_, r.id, out);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  for (const char* gone : {"drop.tmp", "cache", "logs/a.gz", "sub/c.tmp", "sub/cache"}) {
    EXPECT_FALSE(PathExists(out + "/" + gone)) << gone;
  }
  for (const char* kept :
       {"keep.txt", "logs/a.txt", "logs/old/b.gz", "sub/logs/c.gz", "sub/keep"}) {
    ASSERT_TRUE(PathExists(out + "/" + kept)) << kept;
    EXPECT_EQ(ToString(ReadFileOrDie(out + "/" + kept)), std::string("content of ") + kept);
  }
  Result<VerifyReport> v = VerifySnapshot(*store_, *keyset_, r.id);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
}

TEST_F(VolumeCaptureTest, NamePatternsMatchAtAnyDepthAndPathPatternsFromTheRoot) {
  const std::string src = dir_.Sub("src");
  BuildExcludeTree(src);
  const struct {
    std::vector<std::string> excludes;
    std::vector<std::string> gone;
  } kCases[] = {
      {{"*.gz"}, {"logs/a.gz", "logs/old/b.gz", "sub/logs/c.gz"}},
      {{"logs/*.gz"}, {"logs/a.gz"}},  // '*' does not cross '/', and the path starts at the root
      {{"logs"}, {"logs", "sub/logs"}},
      {{"/logs"}, {"logs"}},  // a leading '/' anchors a name at the root
      {{"*/logs"}, {"sub/logs"}},
      {{"cache/"}, {"cache"}},  // a trailing '/': directories only (sub/cache is a file)
      {{"/sub/cache"}, {"sub/cache"}},
      {{"?eep*"}, {"keep.txt", "sub/keep"}},
      {{"[dk]*"}, {"keep.txt", "drop.tmp", "sub/keep"}},
      {{"sub"}, {"sub"}},
      {{"nothing-matches", "sub/nothing/*"}, {}},
  };
  const std::vector<std::string> all = {"keep.txt",      "drop.tmp",      "cache",      "cache/x",
                                        "logs",          "logs/a.gz",     "logs/a.txt", "logs/old",
                                        "logs/old/b.gz", "sub",           "sub/c.tmp",  "sub/cache",
                                        "sub/logs",      "sub/logs/c.gz", "sub/keep"};
  int n = 0;
  for (const auto& c : kCases) {
    std::string what;
    for (const std::string& e : c.excludes) what += "'" + e + "' ";
    SCOPED_TRACE("excludes " + what);
    options_.excludes = c.excludes;
    CaptureReport r = Capture(src);
    EXPECT_EQ(r.excluded, c.gone.size());
    const std::string out = dir_.Sub("out" + std::to_string(n++));
    Result<RestoreReport> restored = RestoreSnapshot(*store_, *keyset_, r.id, out);
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    for (const std::string& path : all) {
      bool excluded = false;
      for (const std::string& g : c.gone) {
        if (path == g || path.rfind(g + "/", 0) == 0) excluded = true;
      }
      EXPECT_EQ(PathExists(out + "/" + path), !excluded) << path;
    }
  }
}

TEST_F(VolumeCaptureTest, InvalidExcludePatternsAreRefusedByName) {
  const std::string src = dir_.Sub("src");
  BuildExcludeTree(src);
  const struct {
    std::string pattern;
    std::string message;
  } kCases[] = {
      {"", "exclude pattern '' is empty"},
      {std::string("a\0b", 3), "exclude pattern 'a"},
      {"/", "exclude pattern '/'"},
      {"//", "exclude pattern '//'"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE("pattern of " + std::to_string(c.pattern.size()) + " bytes");
    options_.excludes = {"*.tmp", c.pattern};
    Result<CaptureReport> r = CaptureVolume(src, *keyset_, *store_, options_);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().ToString();
  }
  Result<std::vector<SnapshotSummary>> list = store_->ListSnapshots();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty()) << "nothing was captured";
}

// ---------------------------------------------------------------------------
// Delta chunks (CaptureOptions::delta, docs/format/delta.md)

// Every delta chunk a snapshot references names bases that the snapshot's
// refs list too: a store or hub that keeps a snapshot's refs keeps what its
// deltas need.
void ExpectDeltaBasesInRefs(LocalStore& store, const SnapshotId& id, uint64_t* deltas_seen) {
  Result<Bytes> refs_bytes = store.ReadRefs(id, 64 << 20);
  ASSERT_TRUE(refs_bytes.ok()) << refs_bytes.status().ToString();
  Result<std::unique_ptr<RefSetReader>> reader =
      RefSetReader::FromBytes(std::move(*refs_bytes), "refs");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  std::set<ChunkId> refs;
  RefEntry e;
  while ((*reader)->Next(e)) refs.insert(e.id);
  ASSERT_TRUE((*reader)->status().ok()) << (*reader)->status().ToString();
  Bytes sealed;
  for (const ChunkId& c : refs) {
    ASSERT_TRUE(store.ReadSealedChunk(c, sealed).ok());
    Result<SealedChunkHeader> h = ParseSealedChunkHeader(sealed);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    if (!h->is_delta()) continue;
    ++*deltas_seen;
    for (const ChunkId& b : h->bases)
      EXPECT_EQ(refs.count(b), 1u)
          << "a base missing from refs " << HexEncode(ByteView(b.data(), 8)) << " of "
          << HexEncode(ByteView(c.data(), 8));
  }
}

TEST_F(VolumeCaptureTest, DeltaStoresASmallEditInAboutItsOwnSize) {
  options_.chunker = ChunkerParams{};  // the default 16/64/256 KiB
  options_.delta = true;
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  const Bytes v1 = SeededBytes(11, 3 << 20);  // incompressible: nothing hides in LZ4
  WriteFileOrDie(src + "/big.bin", v1);
  WriteFileOrDie(src + "/small.txt", CompressibleBytes(12, 5000, 0.5));
  CaptureReport first = Capture(src);
  EXPECT_EQ(first.chunks_delta, 0u) << "nothing to diff against yet";

  // Three edits far apart: a 1,000-byte overwrite, a 700-byte insert, and a
  // 300-byte deletion. Whole chunks would cost ~64 KiB each.
  Bytes v2 = v1;
  for (size_t i = 0; i < 1000; ++i) v2[500000 + i] ^= 0x5a;
  const Bytes inserted = SeededBytes(13, 700);
  v2.insert(v2.begin() + 1500000, inserted.begin(), inserted.end());
  v2.erase(v2.begin() + 2500000, v2.begin() + 2500300);
  WriteFileOrDie(src + "/big.bin", v2);
  CaptureReport second = Capture(src);
  EXPECT_GE(second.chunks_delta, 3u);
  EXPECT_LT(second.bytes_stored, 40000u)
      << "three small edits cost about their size plus block edges, not three or more chunks";
  RestoreAndCompare(second.id, src, "out2");
  ASSERT_TRUE(RestoreSnapshot(*store_, *keyset_, first.id, dir_.Sub("out1")).ok());
  EXPECT_EQ(ReadFileOrDie(dir_.Sub("out1/big.bin")), v1);
  uint64_t deltas = 0;
  ExpectDeltaBasesInRefs(*store_, second.id, &deltas);
  EXPECT_EQ(deltas, second.chunks_delta);

  // The same edits without delta encoding cost whole chunks.
  options_.delta = false;
  Result<std::unique_ptr<LocalStore>> plain_store = LocalStore::Create(dir_.Sub("plain"));
  ASSERT_TRUE(plain_store.ok());
  WriteFileOrDie(src + "/big.bin", v1);
  ASSERT_TRUE(CaptureVolume(src, *keyset_, **plain_store, options_).ok());
  WriteFileOrDie(src + "/big.bin", v2);
  Result<CaptureReport> whole = CaptureVolume(src, *keyset_, **plain_store, options_);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->chunks_delta, 0u);
  EXPECT_GT(whole->bytes_stored, 3 * second.bytes_stored);
}

// A file edited again and again: each version restores exactly, deltas are
// made only from whole chunks, and old snapshots stay readable.
TEST_F(VolumeCaptureTest, RepeatedEditsOfOneFileRestoreEveryVersion) {
  options_.chunker = ChunkerParams{4096, 16384, 65536};
  options_.delta = true;
  const std::string src = dir_.Sub("src");
  MakeDirsOrDie(src);
  std::mt19937_64 rng(5);
  Bytes content = SeededBytes(21, 400000);
  std::vector<std::pair<SnapshotId, Bytes>> versions;
  uint64_t delta_chunks = 0;
  for (int round = 0; round < 8; ++round) {
    if (round > 0) {
      const size_t at = rng() % (content.size() - 5000);
      switch (round % 3) {
        case 0:
          for (size_t i = 0; i < 1 + rng() % 3000; ++i) content[at + i] ^= 0xff;
          break;
        case 1: {
          const Bytes ins = SeededBytes(100 + round, 1 + rng() % 3000);
          content.insert(content.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
          break;
        }
        default:
          content.erase(content.begin() + static_cast<std::ptrdiff_t>(at),
                        content.begin() + static_cast<std::ptrdiff_t>(at + 1 + rng() % 3000));
      }
    }
    WriteFileOrDie(src + "/f", content);
    CaptureReport r = Capture(src);
    delta_chunks += r.chunks_delta;
    versions.emplace_back(r.id, content);
    uint64_t seen = 0;
    ExpectDeltaBasesInRefs(*store_, r.id, &seen);
  }
  EXPECT_GT(delta_chunks, 0u);
  for (size_t i = 0; i < versions.size(); ++i) {
    SCOPED_TRACE("version " + std::to_string(i));
    const std::string out = dir_.Sub("out" + std::to_string(i));
    Result<RestoreReport> r = RestoreSnapshot(*store_, *keyset_, versions[i].first, out);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(ReadFileOrDie(out + "/f"), versions[i].second);
    Result<VerifyReport> v = VerifySnapshot(*store_, *keyset_, versions[i].first);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
  }
}

// With delta on, a random tree (odd names, sparse files, hard links)
// restores byte for byte, and an unchanged tree still costs one stat per
// file: the signatures ride along in the file cache.
TEST_F(VolumeCaptureTest, DeltaKeepsRandomTreesExactAndUnchangedFilesFree) {
  options_.delta = true;
  const std::string src = dir_.Sub("src");
  BuildRandomTree(src, 31);
  Capture(src);
  CaptureReport same = Capture(src);
  EXPECT_EQ(same.cache_hits, same.files);
  EXPECT_EQ(same.bytes_read, 0u);
  EXPECT_EQ(same.bytes_stored, 0u);
  RestoreAndCompare(same.id, src, "out");
}

// Two writers of one store (two datasets, each with its own file cache):
// one holds content as a delta of its old version, the other holds the same
// content whole. A delta chunk is named by its payload, so the two are
// distinct chunks with one sealed form each, and both snapshots commit,
// restore and verify.
TEST_F(VolumeCaptureTest, SameContentAsADeltaAndWholeAreDistinctChunks) {
  options_.chunker = ChunkerParams{};
  options_.delta = true;
  const std::string a = dir_.Sub("a"), b = dir_.Sub("b");
  MakeDirsOrDie(a);
  MakeDirsOrDie(b);
  const Bytes v1 = SeededBytes(41, 1 << 20);
  Bytes v2 = v1;
  for (size_t i = 0; i < 500; ++i) v2[300000 + i] ^= 0x33;
  WriteFileOrDie(a + "/f", v1);
  options_.dataset_name = "a";
  Capture(a);
  WriteFileOrDie(a + "/f", v2);
  CaptureReport with_delta = Capture(a);
  ASSERT_GE(with_delta.chunks_delta, 1u);
  WriteFileOrDie(b + "/f", v2);
  options_.dataset_name = "b";
  CaptureReport whole = Capture(b);
  EXPECT_EQ(whole.chunks_delta, 0u);
  EXPECT_GE(whole.chunks_new, 1u)
      << "the changed chunk's content is stored whole, under its own id";
  RestoreAndCompare(with_delta.id, a, "out-a");
  RestoreAndCompare(whole.id, b, "out-b");
  // And again, the other way round: the content is now whole in the store,
  // so the next edit of `a` back to it finds it by its id.
  WriteFileOrDie(a + "/f", v1);
  options_.dataset_name = "a";
  Capture(a);
  WriteFileOrDie(a + "/f", v2);
  CaptureReport again = Capture(a);
  EXPECT_EQ(again.chunks_delta, 0u);
  EXPECT_LT(again.bytes_stored, 4096u)
      << "every data chunk of v2 is in the store: only the tree is new";
  RestoreAndCompare(again.id, a, "out-a2");
}

}  // namespace
}  // namespace ferry::snapshot
