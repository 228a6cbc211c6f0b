#include "core/env.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"

namespace ferry {
namespace {

using testing::ReadFileOrDie;
using testing::TempDir;
using testing::WriteFileOrDie;

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::string> ListOrDie(const std::string& dir) {
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  EXPECT_TRUE(names.ok()) << names.status().ToString();
  return names.ok() ? Sorted(*names) : std::vector<std::string>{};
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// ------------------------------------------------------------- WriteFileAtomic

TEST(WriteFileAtomicTest, CreatesTheFile) {
  TempDir dir;
  const std::string path = dir.Sub("state");
  ASSERT_TRUE(WriteFileAtomic(*Env::Default(), path, AsBytes("first")).ok());
  EXPECT_EQ(ToString(ReadFileOrDie(path)), "first");
}

TEST(WriteFileAtomicTest, ReplacesExistingContent) {
  TempDir dir;
  const std::string path = dir.Sub("state");
  WriteFileOrDie(path, AsBytes("a much longer old content"));
  ASSERT_TRUE(WriteFileAtomic(*Env::Default(), path, AsBytes("new")).ok());
  EXPECT_EQ(ToString(ReadFileOrDie(path)), "new");
  ASSERT_TRUE(WriteFileAtomic(*Env::Default(), path, ByteView{}).ok());
  EXPECT_TRUE(ReadFileOrDie(path).empty());
}

TEST(WriteFileAtomicTest, LeavesNoTempFileBehind) {
  TempDir dir;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WriteFileAtomic(*Env::Default(), dir.Sub("state"), AsBytes("v")).ok());
  }
  EXPECT_EQ(ListOrDie(dir.path()), std::vector<std::string>{"state"});
}

TEST(WriteFileAtomicTest, HonoursMode) {
  TempDir dir;
  const std::string path = dir.Sub("key");
  ASSERT_TRUE(WriteFileAtomic(*Env::Default(), path, AsBytes("secret"), 0600).ok());
  EXPECT_EQ(ModeOf(path), 0600u);
  // Replacing a world-readable file gives the new file the requested mode.
  const std::string public_path = dir.Sub("was-public");
  WriteFileOrDie(public_path, AsBytes("x"));
  ASSERT_EQ(::chmod(public_path.c_str(), 0644), 0);
  ASSERT_TRUE(WriteFileAtomic(*Env::Default(), public_path, AsBytes("secret"), 0600).ok());
  EXPECT_EQ(ModeOf(public_path), 0600u);
}

TEST(WriteFileAtomicTest, FailsInAMissingDirectoryAndLeavesNothing) {
  TempDir dir;
  Status s = WriteFileAtomic(*Env::Default(), dir.Sub("missing/state"), AsBytes("x"));
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_TRUE(ListOrDie(dir.path()).empty());
}

TEST(WriteFileAtomicTest, FailedRenameRemovesTheTempFile) {
  TempDir dir;
  // A non-empty directory where the file should go: rename(2) fails.
  testing::MakeDirsOrDie(dir.Sub("state/child"));
  Status s = WriteFileAtomic(*Env::Default(), dir.Sub("state"), AsBytes("x"));
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(ListOrDie(dir.path()), std::vector<std::string>{"state"});
}

// ---------------------------------------------------------------- WritableFile

TEST(WritableFileTest, AppendsSyncsAndCloses) {
  TempDir dir;
  const std::string path = dir.Sub("log");
  Result<std::unique_ptr<WritableFile>> f = Env::Default()->NewWritableFile(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->path(), path);
  EXPECT_EQ((*f)->Size(), 0u);
  ASSERT_TRUE((*f)->Append(AsBytes("hello ")).ok());
  ASSERT_TRUE((*f)->Append(ByteView{}).ok());
  ASSERT_TRUE((*f)->Append(AsBytes("world")).ok());
  EXPECT_EQ((*f)->Size(), 11u);
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE((*f)->Close().ok());
  EXPECT_TRUE((*f)->Close().ok());  // closing twice is harmless
  EXPECT_EQ(ToString(ReadFileOrDie(path)), "hello world");
}

TEST(WritableFileTest, NewWritableFileRefusesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.Sub("pack");
  WriteFileOrDie(path, AsBytes("precious"));
  Result<std::unique_ptr<WritableFile>> f = Env::Default()->NewWritableFile(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(f.status().message().find(path), std::string::npos);
  EXPECT_EQ(ToString(ReadFileOrDie(path)), "precious");  // not truncated
}

TEST(WritableFileTest, NewWritableFileHonoursMode) {
  TempDir dir;
  const std::string path = dir.Sub("private");
  Result<std::unique_ptr<WritableFile>> f = Env::Default()->NewWritableFile(path, 0600);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(ModeOf(path), 0600u);
}

// ------------------------------------------------------------ RandomAccessFile

TEST(RandomAccessFileTest, ReadsExactRanges) {
  TempDir dir;
  const std::string path = dir.Sub("data");
  WriteFileOrDie(path, AsBytes("0123456789"));
  Result<std::unique_ptr<RandomAccessFile>> f = Env::Default()->NewRandomAccessFile(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->Size(), 10u);
  EXPECT_EQ((*f)->path(), path);
  Bytes out;
  ASSERT_TRUE((*f)->Read(3, 4, out).ok());
  EXPECT_EQ(ToString(out), "3456");
  ASSERT_TRUE((*f)->Read(0, 10, out).ok());
  EXPECT_EQ(ToString(out), "0123456789");
  ASSERT_TRUE((*f)->Read(10, 0, out).ok());
  EXPECT_TRUE(out.empty());
}

TEST(RandomAccessFileTest, ReadPastTheEndIsDataLoss) {
  TempDir dir;
  const std::string path = dir.Sub("data");
  WriteFileOrDie(path, AsBytes("0123456789"));
  Result<std::unique_ptr<RandomAccessFile>> f = Env::Default()->NewRandomAccessFile(path);
  ASSERT_TRUE(f.ok());
  struct Case {
    uint64_t offset;
    size_t n;
  };
  const Case cases[] = {
      {0, 11},
      {9, 2},
      {10, 1},
      {11, 0},
      {1, std::numeric_limits<size_t>::max()},  // offset + n would wrap around
      {std::numeric_limits<uint64_t>::max(), 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("offset " + std::to_string(c.offset) + " n " + std::to_string(c.n));
    Bytes out;
    Status s = (*f)->Read(c.offset, c.n, out);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_NE(s.message().find(path), std::string::npos);
  }
}

TEST(RandomAccessFileTest, MissingFileIsNotFound) {
  TempDir dir;
  Result<std::unique_ptr<RandomAccessFile>> f =
      Env::Default()->NewRandomAccessFile(dir.Sub("missing"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
}

// -------------------------------------------------------------------- ReadFile

TEST(ReadFileTest, ReadsWholeFileUpToTheLimit) {
  TempDir dir;
  const std::string path = dir.Sub("f");
  const Bytes data = testing::SeededBytes(1, 100'000);
  WriteFileOrDie(path, data);
  Result<Bytes> r = Env::Default()->ReadFile(path, data.size());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, data);
}

TEST(ReadFileTest, FileOverMaxSizeIsResourceExhausted) {
  TempDir dir;
  const std::string path = dir.Sub("f");
  WriteFileOrDie(path, Bytes(101, 'x'));
  Result<Bytes> r = Env::Default()->ReadFile(path, 100);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find(path), std::string::npos);
  r = Env::Default()->ReadFile(path, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
}

TEST(ReadFileTest, MissingFileIsNotFoundAndDirectoryIsRejected) {
  TempDir dir;
  Result<Bytes> r = Env::Default()->ReadFile(dir.Sub("missing"), 100);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  r = Env::Default()->ReadFile(dir.path(), 1 << 20);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

// ------------------------------------------------------------------ CreateDirs

TEST(CreateDirsTest, CreatesNestedDirectoriesAndIsIdempotent) {
  TempDir dir;
  const std::string path = dir.Sub("a/b/c");
  ASSERT_TRUE(Env::Default()->CreateDirs(path).ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(Env::Default()->CreateDirs(path).ok());
  EXPECT_TRUE(Env::Default()->CreateDirs(dir.Sub("a/b")).ok());
  EXPECT_TRUE(Env::Default()->CreateDirs(path + "/").ok());
  EXPECT_TRUE(Env::Default()->CreateDirs(dir.path()).ok());
}

TEST(CreateDirsTest, HonoursMode) {
  TempDir dir;
  const std::string path = dir.Sub("private");
  ASSERT_TRUE(Env::Default()->CreateDirs(path, 0700).ok());
  EXPECT_EQ(ModeOf(path), 0700u);
}

TEST(CreateDirsTest, FailsWhenAPathComponentIsAFile) {
  TempDir dir;
  WriteFileOrDie(dir.Sub("file"), AsBytes("x"));
  Status s = Env::Default()->CreateDirs(dir.Sub("file/sub"));
  EXPECT_FALSE(s.ok());
  s = Env::Default()->CreateDirs(dir.Sub("file"));
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  EXPECT_EQ(ToString(ReadFileOrDie(dir.Sub("file"))), "x");
}

TEST(CreateDirsTest, EmptyPathIsInvalidArgument) {
  EXPECT_EQ(Env::Default()->CreateDirs("").code(), StatusCode::kInvalidArgument);
}

// ------------------------------------------------------ the rest of the Env API

TEST(EnvTest, ListDirNamesEntriesWithoutDots) {
  TempDir dir;
  EXPECT_TRUE(ListOrDie(dir.path()).empty());
  WriteFileOrDie(dir.Sub("b"), AsBytes(""));
  WriteFileOrDie(dir.Sub("a"), AsBytes(""));
  testing::MakeDirsOrDie(dir.Sub("sub/inner"));
  EXPECT_EQ(ListOrDie(dir.path()), (std::vector<std::string>{"a", "b", "sub"}));
  Result<std::vector<std::string>> missing = Env::Default()->ListDir(dir.Sub("missing"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST(EnvTest, FileExistsSizeRenameAndRemove) {
  TempDir dir;
  Env& env = *Env::Default();
  const std::string a = dir.Sub("a");
  const std::string b = dir.Sub("b");
  EXPECT_FALSE(*env.FileExists(a));
  WriteFileOrDie(a, AsBytes("12345"));
  EXPECT_TRUE(*env.FileExists(a));
  EXPECT_EQ(*env.FileSize(a), 5u);
  WriteFileOrDie(b, AsBytes("old"));
  ASSERT_TRUE(env.RenameFile(a, b).ok());
  EXPECT_FALSE(*env.FileExists(a));
  EXPECT_EQ(ToString(ReadFileOrDie(b)), "12345");
  ASSERT_TRUE(env.RemoveFile(b).ok());
  EXPECT_FALSE(*env.FileExists(b));
  EXPECT_EQ(env.RemoveFile(b).code(), StatusCode::kNotFound);
  EXPECT_EQ(env.RenameFile(a, b).code(), StatusCode::kNotFound);
  EXPECT_EQ(env.FileSize(a).status().code(), StatusCode::kNotFound);
}

TEST(EnvTest, FileExistsSeesADanglingSymlink) {
  TempDir dir;
  ASSERT_EQ(::symlink("nowhere", dir.Sub("link").c_str()), 0);
  EXPECT_TRUE(*Env::Default()->FileExists(dir.Sub("link")));
}

TEST(EnvTest, SyncDirWorksOnADirectoryAndFailsOnMissingOne) {
  TempDir dir;
  EXPECT_TRUE(Env::Default()->SyncDir(dir.path()).ok());
  EXPECT_EQ(Env::Default()->SyncDir(dir.Sub("missing")).code(), StatusCode::kNotFound);
}

// ---------------------------------------------------------------- path helpers

TEST(PathTest, DirNameTakesEverythingBeforeTheLastSlash) {
  struct Case {
    std::string path, dir;
  };
  const Case cases[] = {
      {"a/b/c", "a/b"}, {"c", "."}, {"/c", "/"}, {"/a/b", "/a"}, {"a/", "a"}, {"", "."},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    EXPECT_EQ(DirName(c.path), c.dir);
  }
}

TEST(PathTest, JoinPathAddsExactlyOneSlash) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("/", "b"), "/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(JoinPath("a/b", "c/d"), "a/b/c/d");
}

}  // namespace
}  // namespace ferry
