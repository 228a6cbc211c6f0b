// Integration tests of the real ferryctl binary, run as a process: the exit
// codes, messages and output formats that users and scripts rely on
// (issue 2, "Command line" and "Formats and bad input").
//
// Every test has its own temporary directory. Keysets use small Argon2
// parameters so that the tests stay fast. FERRY_PASSPHRASE is removed from the
// test process's environment and passed explicitly to the commands that need
// it, so that a test never passes by accident on an inherited passphrase.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/sodium.h"
#include "snapshot/local_store.h"
#include "snapshot/manifest.h"
#include "tests/testing/test_util.h"

namespace ferry {
namespace {

using ::testing::AnyOf;
using testing::BinDir;
using testing::CommandResult;
using testing::CompressibleBytes;
using testing::DiffTrees;
using ::testing::HasSubstr;
using testing::MakeDirsOrDie;
using ::testing::Not;
using testing::ReadFileOrDie;
using testing::RunCommand;
using testing::SeededBytes;
using testing::TempDir;
using testing::WriteFileOrDie;

constexpr char kPass[] = "correct horse battery staple";
constexpr int kTimeoutS = 120;

// ------------------------------------------------------------------ helpers

std::string Describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + " signal " + std::to_string(r.signal) +
         "\n--- stdout ---\n" + r.out + "--- stderr ---\n" + r.err;
}

std::string PassEnv(const std::string& pass = kPass) { return "FERRY_PASSPHRASE=" + pass; }

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

std::string LastLine(const std::string& text) {
  std::vector<std::string> lines = Lines(text);
  return lines.empty() ? "" : lines.back();
}

bool IsSnapshotId(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The unsigned number after "key": in a JSON text (minimal parsing for tests).
std::optional<uint64_t> JsonUint(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t pos = json.find(needle);
  if (pos == std::string::npos) return std::nullopt;
  size_t i = pos + needle.size();
  if (i >= json.size() || json[i] < '0' || json[i] > '9') return std::nullopt;
  uint64_t v = 0;
  for (; i < json.size() && json[i] >= '0' && json[i] <= '9'; ++i) {
    v = v * 10 + static_cast<uint64_t>(json[i] - '0');
  }
  return v;
}

// The string after "key": in a JSON text (no escapes expected).
std::string JsonString(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":\"";
  const size_t pos = json.find(needle);
  if (pos == std::string::npos) return "";
  const size_t start = pos + needle.size();
  const size_t end = json.find('"', start);
  return end == std::string::npos ? "" : json.substr(start, end - start);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st.st_mode & 07777;
}

std::vector<std::string> ListDir(const std::string& dir) {
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  EXPECT_TRUE(names.ok()) << dir << ": " << names.status().ToString();
  if (!names.ok()) return {};
  std::sort(names->begin(), names->end());
  return *names;
}

std::string ReadText(const std::string& path) { return ToString(ReadFileOrDie(path)); }

void WriteText(const std::string& path, const std::string& text, int mode = 0644) {
  WriteFileOrDie(path, AsBytes(text), mode);
}

void SetMtime(const std::string& path, int64_t sec, int64_t nsec) {
  struct timespec times[2];
  times[0].tv_sec = sec;
  times[0].tv_nsec = nsec;
  times[1].tv_sec = sec;
  times[1].tv_nsec = nsec;
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0)
      << path << ": " << std::strerror(errno);
}

// Gives every file and directory under `root` (not the root) a distinct
// mtime with nanoseconds, children before their parent directory.
void StampMtimes(const std::string& root, const std::string& rel, int64_t& counter) {
  const std::string path = rel.empty() ? root : root + "/" + rel;
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0) << path;
  if (S_ISDIR(st.st_mode)) {
    for (const std::string& name : ListDir(path)) {
      StampMtimes(root, rel.empty() ? name : rel + "/" + name, counter);
    }
  }
  if (rel.empty() || S_ISLNK(st.st_mode)) return;
  ++counter;
  SetMtime(path, 1'600'000'000 + counter * 3600, 123'456'789 + counter);
}

// A sparse file: `size` bytes with 4 KiB of data at 1 MiB and at the end.
void WriteSparseFile(const std::string& path, off_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path;
  const Bytes block = SeededBytes(77, 4096);
  ASSERT_EQ(::ftruncate(fd, size), 0);
  ASSERT_EQ(::pwrite(fd, block.data(), block.size(), 1 << 20), 4096);
  ASSERT_EQ(::pwrite(fd, block.data(), block.size(), size - 4096), 4096);
  ::close(fd);
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// A tree with most kinds of entries a volume holds:
//   big.bin              700 KiB of random bytes (several chunks)
//   notes.txt            200 KiB of compressible bytes
//   empty                empty file, mode 0600
//   readonly.txt         mode 0444
//   bin/tool             mode 0755
//   docs/reports/        mode 0750
//   docs/reports/2025/q1.txt
//   docs/up -> ../notes.txt, link_to_q1 -> docs/reports/2025/q1.txt (relative, inside)
//   dangling -> not-there (relative, inside)
//   hard_a, docs/hard_b  hard links to one inode
//   sparse.img           16 MiB with two 4 KiB blocks of data
//   private/             mode 0700, private/key.txt mode 0400
//   empty_dir/
// and distinct mtimes (ns) on every file and directory.
void BuildRichTree(const std::string& root) {
  MakeDirsOrDie(root + "/docs/reports/2025");
  MakeDirsOrDie(root + "/bin");
  MakeDirsOrDie(root + "/private");
  MakeDirsOrDie(root + "/empty_dir");
  WriteFileOrDie(root + "/big.bin", SeededBytes(1, 700 * 1024));
  WriteFileOrDie(root + "/notes.txt", CompressibleBytes(2, 200 * 1024, 0.3));
  WriteText(root + "/empty", "", 0600);
  WriteText(root + "/readonly.txt", "read me, do not write me\n", 0444);
  ASSERT_EQ(::chmod((root + "/readonly.txt").c_str(), 0444), 0);
  WriteText(root + "/bin/tool", "#!/bin/sh\necho tool\n", 0755);
  ASSERT_EQ(::chmod((root + "/bin/tool").c_str(), 0755), 0);
  WriteText(root + "/docs/reports/2025/q1.txt", "first quarter: fine\n");
  WriteText(root + "/private/key.txt", "not really a key\n", 0400);
  ASSERT_EQ(::chmod((root + "/private/key.txt").c_str(), 0400), 0);
  ASSERT_EQ(::symlink("../notes.txt", (root + "/docs/up").c_str()), 0);
  ASSERT_EQ(::symlink("docs/reports/2025/q1.txt", (root + "/link_to_q1").c_str()), 0);
  ASSERT_EQ(::symlink("not-there", (root + "/dangling").c_str()), 0);
  WriteFileOrDie(root + "/hard_a", SeededBytes(3, 100 * 1024));
  ASSERT_EQ(::link((root + "/hard_a").c_str(), (root + "/docs/hard_b").c_str()), 0);
  WriteSparseFile(root + "/sparse.img", 16 << 20);
  int64_t counter = 0;
  StampMtimes(root, "", counter);
  ASSERT_EQ(::chmod((root + "/docs/reports").c_str(), 0750), 0);
  ASSERT_EQ(::chmod((root + "/private").c_str(), 0700), 0);
}

// The pack files of a store (STORE/packs/XX/NAME.pack).
std::vector<std::string> FindPacks(const std::string& store) {
  std::vector<std::string> out;
  for (const std::string& shard : ListDir(store + "/packs")) {
    for (const std::string& name : ListDir(store + "/packs/" + shard)) {
      if (name.size() > 5 && name.substr(name.size() - 5) == ".pack") {
        out.push_back(store + "/packs/" + shard + "/" + name);
      }
    }
  }
  return out;
}

// Where the sealed chunks of a pack are: the header is 8 bytes, each entry is
// a 36-byte frame (chunk id, u32 length) and the sealed chunk, and the 56-byte
// footer starts with the u64 offset of the index (docs/format, pack_format.h).
struct SealedRange {
  uint64_t offset = 0;
  uint32_t length = 0;
};
std::vector<SealedRange> SealedChunksOf(const Bytes& pack) {
  std::vector<SealedRange> out;
  if (pack.size() < 8 + 56) {
    ADD_FAILURE() << "pack of " << pack.size() << " bytes is too small";
    return out;
  }
  const uint64_t index_offset = LoadU64(pack.data() + pack.size() - 56);
  uint64_t pos = 8;
  while (pos + 36 <= index_offset) {
    const uint32_t length = LoadU32(pack.data() + pos + 32);
    out.push_back({pos + 36, length});
    pos += 36 + static_cast<uint64_t>(length);
  }
  EXPECT_EQ(pos, index_offset) << "pack entries do not end where the index starts";
  return out;
}

// Flips one byte in the middle of the largest sealed chunk of the store's
// packs; returns the pack's path.
std::string FlipByteInLargestChunk(const std::string& store) {
  std::string best_pack;
  SealedRange best;
  for (const std::string& pack : FindPacks(store)) {
    for (const SealedRange& r : SealedChunksOf(ReadFileOrDie(pack))) {
      if (r.length > best.length) {
        best = r;
        best_pack = pack;
      }
    }
  }
  EXPECT_FALSE(best_pack.empty()) << "no sealed chunk found in " << store << "/packs";
  if (best_pack.empty()) return "";
  Bytes bytes = ReadFileOrDie(best_pack);
  bytes[best.offset + best.length / 2] ^= 0x5a;
  WriteFileOrDie(best_pack, bytes);
  return best_pack;
}

// Whether the test process has a controlling terminal: ferryctl would then
// prompt on it for a missing passphrase, so commands run in a new session.
bool HasControllingTerminal() {
  int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// ------------------------------------------------------------------ fixture

class FerryctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("FERRY_PASSPHRASE");
    ctl_ = BinDir() + "/ferryctl";
    ASSERT_EQ(::access(ctl_.c_str(), X_OK), 0) << ctl_ << " is not built";
    if (HasControllingTerminal()) {
      ASSERT_EQ(::access("/usr/bin/setsid", X_OK), 0)
          << "the tests have a terminal and /usr/bin/setsid is missing to detach from it";
      prefix_ = {"/usr/bin/setsid", "--wait"};
    }
  }

  std::string Path(const std::string& name) const { return dir_.Sub(name); }
  std::string Store() const { return dir_.Sub("store"); }

  // Runs ferryctl with `args`; `env` is added to the (passphrase-free) environment.
  CommandResult Ctl(const std::vector<std::string>& args,
                    const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = prefix_;
    argv.push_back(ctl_);
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, env, "", kTimeoutS);
  }
  CommandResult CtlWithPass(const std::vector<std::string>& args) { return Ctl(args, {PassEnv()}); }

  // keys init with small Argon2 parameters; returns the path.
  std::string InitKeyset(const std::string& name, const std::string& pass = kPass,
                         std::string* id = nullptr) {
    CommandResult r =
        Ctl({"keys", "init", "--out", Path(name), "--argon2-memory", "8", "--argon2-ops", "1"},
            {PassEnv(pass)});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    if (id != nullptr) {
      std::smatch m;
      EXPECT_TRUE(std::regex_search(r.err, m, std::regex("\\(id ([0-9a-f]{32})\\)"))) << r.err;
      if (!m.empty()) *id = m[1];
    }
    return Path(name);
  }
  const std::string& Keyset() {
    if (keyset_.empty()) keyset_ = InitKeyset("tenant.keyset", kPass, &keyset_id_);
    return keyset_;
  }
  const std::string& AgentFile() {
    if (agent_.empty()) {
      CommandResult r =
          Ctl({"keys", "export-agent", "--keyset", Keyset(), "--out", Path("agent.key")});
      EXPECT_EQ(r.exit_code, 0) << Describe(r);
      agent_ = Path("agent.key");
    }
    return agent_;
  }

  // snapshot create (no passphrase in the environment); returns the full result.
  CommandResult Create(const std::string& src, const std::vector<std::string>& extra = {},
                       const std::string& keyset = "") {
    std::vector<std::string> args = {"snapshot", "create",   "--store",
                                     Store(),    "--keyset", keyset.empty() ? Keyset() : keyset};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(src);
    return Ctl(args);
  }
  // snapshot create that must succeed; returns the snapshot id.
  std::string Snapshot(const std::string& src, const std::vector<std::string>& extra = {},
                       const std::string& keyset = "") {
    CommandResult r = Create(src, extra, keyset);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    const std::string id = LastLine(r.out);
    EXPECT_TRUE(IsSnapshotId(id)) << Describe(r);
    return id;
  }
  // snapshot create --json that must succeed; returns stdout.
  std::string SnapshotJson(const std::string& src) {
    CommandResult r = Create(src, {"--json"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return r.out;
  }

  CommandResult Restore(const std::string& snapshot, const std::string& to,
                        const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"restore", "--store", Store(), "--keyset",
                                     Keyset(),  snapshot,  "--to",  to};
    args.insert(args.end(), extra.begin(), extra.end());
    return CtlWithPass(args);
  }
  CommandResult Verify(const std::string& snapshot) {
    return CtlWithPass({"verify", "--store", Store(), "--keyset", Keyset(), snapshot});
  }

  // A small source tree: three files in two folders.
  std::string SmallTree(const std::string& name = "src") {
    const std::string root = Path(name);
    MakeDirsOrDie(root + "/sub");
    WriteText(root + "/a.txt", "alpha\n");
    WriteText(root + "/sub/b.txt", "bravo\n");
    WriteFileOrDie(root + "/sub/c.bin", SeededBytes(9, 50 * 1024));
    return root;
  }

  TempDir dir_;
  std::string ctl_;
  std::vector<std::string> prefix_;
  std::string keyset_, keyset_id_, agent_;
};

// ================================================================ keys init

TEST_F(FerryctlTest, KeysInitWritesAFileOnlyTheOwnerCanRead) {
  std::string id;
  const std::string keyset = InitKeyset("tenant.keyset", kPass, &id);
  ASSERT_TRUE(Exists(keyset));
  EXPECT_EQ(ModeOf(keyset), 0600);
  EXPECT_EQ(id.size(), 32u);
  EXPECT_GT(ReadFileOrDie(keyset).size(), 100u);
}

TEST_F(FerryctlTest, KeysInitRefusesToOverwriteAnExistingFile) {
  WriteText(Path("precious"), "do not touch\n");
  CommandResult r = CtlWithPass(
      {"keys", "init", "--out", Path("precious"), "--argon2-memory", "8", "--argon2-ops", "1"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("already exists"));
  EXPECT_EQ(ReadText(Path("precious")), "do not touch\n");

  // Nor an existing keyset.
  const std::string keyset = Keyset();
  const Bytes before = ReadFileOrDie(keyset);
  r = CtlWithPass({"keys", "init", "--out", keyset, "--argon2-memory", "8", "--argon2-ops", "1"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("already exists"));
  EXPECT_EQ(ReadFileOrDie(keyset), before);
}

TEST_F(FerryctlTest, KeysInitRefusesAnEmptyPassphrase) {
  CommandResult r =
      Ctl({"keys", "init", "--out", Path("k"), "--argon2-memory", "8", "--argon2-ops", "1"},
          {"FERRY_PASSPHRASE="});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("empty"));
  EXPECT_FALSE(Exists(Path("k")));

  // A passphrase file holding only a newline is empty too.
  WriteText(Path("pass"), "\n");
  r = Ctl({"keys", "init", "--out", Path("k"), "--passphrase-file", Path("pass"), "--argon2-memory",
           "8", "--argon2-ops", "1"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("empty"));
  EXPECT_FALSE(Exists(Path("k")));
}

TEST_F(FerryctlTest, KeysInitWithoutAnyPassphraseSourceFailsClearly) {
  // No FERRY_PASSPHRASE, no --passphrase-file, no terminal (stdin is a pipe).
  CommandResult r =
      Ctl({"keys", "init", "--out", Path("k"), "--argon2-memory", "8", "--argon2-ops", "1"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("FERRY_PASSPHRASE"));
  EXPECT_THAT(r.err, HasSubstr("--passphrase-file"));
  EXPECT_FALSE(Exists(Path("k")));
}

TEST_F(FerryctlTest, KeysInitReadsThePassphraseFileWithoutItsTrailingNewline) {
  WriteText(Path("pass"), "from a file\n", 0600);
  CommandResult r = Ctl({"keys", "init", "--out", Path("k"), "--passphrase-file", Path("pass"),
                         "--argon2-memory", "8", "--argon2-ops", "1"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ModeOf(Path("k")), 0600);

  const std::string id = Snapshot(SmallTree(), {}, Path("k"));
  // The passphrase is the file's text without the newline ...
  r = Ctl({"verify", "--store", Store(), "--keyset", Path("k"), id}, {PassEnv("from a file")});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = Ctl(
      {"verify", "--store", Store(), "--keyset", Path("k"), "--passphrase-file", Path("pass"), id});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  // ... and the newline is not part of it.
  r = Ctl({"verify", "--store", Store(), "--keyset", Path("k"), id}, {PassEnv("from a file\n")});
  EXPECT_EQ(r.exit_code, 5) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("wrong passphrase"));
}

// ======================================================== keys export-agent

TEST_F(FerryctlTest, ExportAgentWritesAnOwnerOnlyAgentFileWithoutAPassphrase) {
  const std::string keyset = Keyset();
  CommandResult r = Ctl({"keys", "export-agent", "--keyset", keyset, "--out", Path("agent.key")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ModeOf(Path("agent.key")), 0600);
  EXPECT_NE(ReadFileOrDie(Path("agent.key")), ReadFileOrDie(keyset));
  EXPECT_THAT(r.err, HasSubstr(keyset_id_));
}

TEST_F(FerryctlTest, ExportAgentFromAnAgentFileFails) {
  const std::string agent = AgentFile();
  CommandResult r = Ctl({"keys", "export-agent", "--keyset", agent, "--out", Path("again.key")});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("agent key file"));
  EXPECT_FALSE(Exists(Path("again.key")));
}

TEST_F(FerryctlTest, ExportAgentRefusesToOverwrite) {
  WriteText(Path("taken"), "x");
  CommandResult r = Ctl({"keys", "export-agent", "--keyset", Keyset(), "--out", Path("taken")});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("already exists"));
  EXPECT_EQ(ReadText(Path("taken")), "x");
}

// ========================================================== snapshot create

TEST_F(FerryctlTest, CreatePrintsTheIdLastOnStdoutAndASummaryOnStderr) {
  CommandResult r = Create(SmallTree());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_TRUE(IsSnapshotId(LastLine(r.out))) << Describe(r);
  EXPECT_TRUE(std::regex_search(r.err, std::regex("\\b3 files\\b"))) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("read [0-9.]+ [KMG]?i?B"))) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("new [0-9.]+ [KMG]?i?B"))) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("stored [0-9.]+ [KMG]?i?B"))) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("dedup ([0-9.]+x|-)"))) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("compression ([0-9.]+x|-)"))) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("in [0-9.e+-]+ s"))) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("warning")));
}

TEST_F(FerryctlTest, CreateJsonPrintsOneObjectWithTheFigures) {
  CommandResult r = Create(SmallTree(), {"--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ASSERT_EQ(Lines(r.out).size(), 1u) << r.out;
  const std::string json = Lines(r.out)[0];
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  for (const char* key : {"id", "dataset", "files", "directories", "symlinks", "hardlinks", "bytes",
                          "bytes_read", "bytes_new", "bytes_stored", "chunks", "chunks_new",
                          "cache_hits", "seconds", "inconsistent", "skipped"}) {
    EXPECT_THAT(json, HasSubstr(std::string("\"") + key + "\":")) << key;
  }
  const std::string id = JsonString(json, "id");
  EXPECT_TRUE(IsSnapshotId(id)) << json;
  EXPECT_EQ(JsonUint(json, "files"), 3u);
  EXPECT_EQ(JsonUint(json, "directories"), 2u);
  EXPECT_EQ(JsonUint(json, "bytes"), 6u + 6u + 50u * 1024u);
  // A file written just before the capture is read twice (timestamp-tick doubt), so
  // bytes_read may exceed bytes.
  EXPECT_GE(JsonUint(json, "bytes_read").value_or(0), 6u + 6u + 50u * 1024u);
  EXPECT_EQ(JsonString(json, "dataset"), "src");
  EXPECT_THAT(json, HasSubstr("\"inconsistent\":[]"));
  EXPECT_THAT(json, HasSubstr("\"skipped\":[]"));

  CommandResult list = Ctl({"snapshot", "list", "--store", Store(), "--json"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  EXPECT_THAT(list.out, HasSubstr("\"id\":\"" + id + "\""));
}

TEST_F(FerryctlTest, CreateWorksWithTheAgentKeyFileWithoutAPassphrase) {
  const std::string src = SmallTree();
  CommandResult r = Create(src, {}, AgentFile());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const std::string id = LastLine(r.out);
  ASSERT_TRUE(IsSnapshotId(id)) << Describe(r);
  // The snapshot belongs to the tenant keyset and restores with it.
  CommandResult show = Ctl({"snapshot", "show", "--store", Store(), id, "--json"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_EQ(JsonString(show.out, "keyset_id"), keyset_id_);
  r = Restore(id, Path("out"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(DiffTrees(src, Path("out")), "");
}

TEST_F(FerryctlTest, CreateWorksWithTheTenantKeysetWithoutAPassphrase) {
  ASSERT_EQ(std::getenv("FERRY_PASSPHRASE"), nullptr);
  const std::string src = SmallTree();
  CommandResult r = Create(src);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_TRUE(IsSnapshotId(LastLine(r.out))) << Describe(r);
  EXPECT_THAT(r.err, Not(HasSubstr("passphrase")));
}

TEST_F(FerryctlTest, CreateRecordsLabels) {
  const std::string id = Snapshot(SmallTree(), {"--label", "site=shop", "--label", "tier=gold"});
  CommandResult show = Ctl({"snapshot", "show", "--store", Store(), id, "--json"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_THAT(show.out, HasSubstr("\"site\":\"shop\""));
  EXPECT_THAT(show.out, HasSubstr("\"tier\":\"gold\""));

  show = Ctl({"snapshot", "show", "--store", Store(), id});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_THAT(show.out, HasSubstr("site=shop"));
  EXPECT_THAT(show.out, HasSubstr("tier=gold"));

  CommandResult list = Ctl({"snapshot", "list", "--store", Store()});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  EXPECT_THAT(list.out, HasSubstr("site=shop"));
  EXPECT_THAT(list.out, HasSubstr("tier=gold"));
  list = Ctl({"snapshot", "list", "--store", Store(), "--json"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  EXPECT_THAT(list.out, HasSubstr("\"site\":\"shop\""));
}

TEST_F(FerryctlTest, CreateRejectsALabelWithoutEquals) {
  const std::string src = SmallTree();
  CommandResult r = Create(src, {"--label", "justakey"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("--label"));
  EXPECT_THAT(r.err, HasSubstr("justakey"));
  r = Create(src, {"--label", "=value"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  // Nothing was recorded.
  CommandResult list = Ctl({"snapshot", "list", "--store", Store(), "--json"});
  if (list.exit_code == 0) {
    EXPECT_THAT(list.out, Not(HasSubstr("\"id\"")));
  }
}

TEST_F(FerryctlTest, CreateOfAPathThatIsNotADirectoryFails) {
  WriteText(Path("file"), "just a file\n");
  CommandResult r = Create(Path("file"));
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("not a directory"));
  EXPECT_TRUE(r.out.empty()) << r.out;

  r = Create(Path("missing"));
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("No such file or directory"));
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(FerryctlTest, CreateWithAMissingKeysetFails) {
  CommandResult r = Create(SmallTree(), {}, Path("no.keyset"));
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
}

TEST_F(FerryctlTest, CreateSkipsFifosAndSocketsWithAWarningAndExits3) {
  const std::string src = SmallTree();
  ASSERT_EQ(::mkfifo((src + "/pipe").c_str(), 0644), 0) << std::strerror(errno);
  int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const std::string sock_path = src + "/sub/control.sock";
  ASSERT_LT(sock_path.size(), sizeof(addr.sun_path));
  std::strncpy(addr.sun_path, sock_path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(sock, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), 0)
      << std::strerror(errno);
  ::close(sock);

  CommandResult r = Create(src);
  // The snapshot completed (id printed) but it lists entries it did not capture.
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  const std::string id = LastLine(r.out);
  ASSERT_TRUE(IsSnapshotId(id)) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("warning"));
  EXPECT_THAT(r.err, HasSubstr("pipe"));
  EXPECT_THAT(r.err, HasSubstr("control.sock"));
  EXPECT_THAT(r.err, HasSubstr("2 entries skipped"));

  CommandResult show = Ctl({"snapshot", "show", "--store", Store(), id, "--json"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_EQ(JsonUint(show.out, "skipped"), 2u) << show.out;

  // --json lists them too, with the same exit code.
  r = Create(src, {"--json"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("pipe"));
  EXPECT_THAT(r.out, HasSubstr("control.sock"));

  // What was captured restores; the skipped entries are absent.
  r = Restore(id, Path("out"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ReadText(Path("out/a.txt")), "alpha\n");
  EXPECT_FALSE(Exists(Path("out/pipe")));
  EXPECT_FALSE(Exists(Path("out/sub/control.sock")));
}

TEST_F(FerryctlTest, CreateExits3WhenAFileCannotBeRead) {
  const std::string src = SmallTree();
  const std::string locked = src + "/sub/locked.txt";
  WriteText(locked, "nobody may read this\n", 0000);
  ASSERT_EQ(::chmod(locked.c_str(), 0000), 0);

  // Root reads mode-000 files; run ferryctl without the capabilities that
  // bypass file permissions (it stays uid 0, so it still owns the store).
  std::vector<std::string> argv;
  if (::geteuid() == 0) {
    const std::string setpriv = "/usr/bin/setpriv";
    if (::access(setpriv.c_str(), X_OK) != 0) {
      GTEST_SKIP() << "running as root without " << setpriv
                   << ": cannot make a file unreadable for ferryctl";
    }
    argv = {setpriv, "--bounding-set=-dac_override,-dac_read_search"};
    CommandResult probe =
        RunCommand({setpriv, "--bounding-set=-dac_override,-dac_read_search", "/bin/cat", locked});
    if (probe.exit_code == 0) {
      GTEST_SKIP() << "dropping CAP_DAC_OVERRIDE with setpriv did not make a mode-000 file "
                      "unreadable here: "
                   << Describe(probe);
    }
  }
  argv.insert(argv.end(), prefix_.begin(), prefix_.end());
  for (const std::string& a :
       {ctl_, std::string("snapshot"), std::string("create"), std::string("--store"), Store(),
        std::string("--keyset"), Keyset(), src}) {
    argv.push_back(a);
  }
  CommandResult r = RunCommand(argv, {}, "", kTimeoutS);
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  const std::string id = LastLine(r.out);
  ASSERT_TRUE(IsSnapshotId(id)) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("locked.txt"));
  EXPECT_THAT(r.err, HasSubstr("Permission denied"));

  r = Restore(id, Path("out"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ReadText(Path("out/sub/b.txt")), "bravo\n");
  EXPECT_FALSE(Exists(Path("out/sub/locked.txt")));
}

// ============================================================= list / show

TEST_F(FerryctlTest, ListShowsSnapshotsOldestFirst) {
  const std::string src = SmallTree();
  const std::string first = Snapshot(src, {"--label", "n=1"});
  WriteText(src + "/a.txt", "alpha, changed\n");
  const std::string second = Snapshot(src, {"--label", "n=2"});
  ASSERT_NE(first, second);

  CommandResult r = Ctl({"snapshot", "list", "--store", Store()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_THAT(lines[0], HasSubstr("ID"));
  EXPECT_THAT(lines[0], HasSubstr("LABELS"));
  EXPECT_EQ(lines[1].substr(0, 12), first.substr(0, 12)) << r.out;
  EXPECT_EQ(lines[2].substr(0, 12), second.substr(0, 12)) << r.out;
  EXPECT_THAT(lines[1], HasSubstr("n=1"));
  EXPECT_THAT(lines[2], HasSubstr("n=2"));
  EXPECT_THAT(lines[1], HasSubstr("src"));

  r = Ctl({"snapshot", "list", "--store", Store(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ASSERT_EQ(Lines(r.out).size(), 1u) << r.out;
  EXPECT_EQ(r.out.front(), '[');
  const size_t p1 = r.out.find("\"id\":\"" + first + "\"");
  const size_t p2 = r.out.find("\"id\":\"" + second + "\"");
  ASSERT_NE(p1, std::string::npos) << r.out;
  ASSERT_NE(p2, std::string::npos) << r.out;
  EXPECT_LT(p1, p2);
  EXPECT_THAT(r.out, HasSubstr("\"parent\":\"" + first + "\""));
}

TEST_F(FerryctlTest, ListOfAnEmptyOrMissingStore) {
  Snapshot(SmallTree());  // creates the store
  CommandResult r = Ctl({"snapshot", "list", "--store", Path("nowhere")});
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("nowhere"));
}

TEST_F(FerryctlTest, ShowAcceptsFullIdPrefixUppercaseAndLatest) {
  const std::string src = SmallTree();
  const std::string first = Snapshot(src);
  WriteText(src + "/a.txt", "alpha, changed\n");
  const std::string second = Snapshot(src);

  struct Case {
    std::string spec;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{{first, first},
                                         {second, second},
                                         {first.substr(0, 8), first},
                                         {Upper(second.substr(0, 16)), second},
                                         {Upper(first), first},
                                         {"latest", second}}) {
    SCOPED_TRACE(c.spec);
    CommandResult r = Ctl({"snapshot", "show", "--store", Store(), c.spec});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr("snapshot   " + c.expected));
    EXPECT_THAT(r.out, HasSubstr("keyset     " + keyset_id_));
    r = Ctl({"snapshot", "show", "--store", Store(), c.spec, "--json"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_EQ(JsonString(r.out, "id"), c.expected) << r.out;
    EXPECT_THAT(r.out, HasSubstr("\"datasets\":["));
  }
}

// Adds copies of snapshot `id_hex` (the same data and reference set, one more
// label, signed by another key) until two snapshots of the store share their
// first four hex digits; returns those digits. Snapshot ids are hashes, so a
// shared prefix is found by trying (a few hundred tries, all in memory).
std::string AddSnapshotsSharingAPrefix(const std::string& store_dir, const std::string& id_hex) {
  using snapshot::LocalStore;
  Result<std::unique_ptr<LocalStore>> store =
      LocalStore::Open(store_dir, LocalStore::Mode::kReadWrite);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) return "";
  Result<snapshot::SnapshotId> id = (*store)->ResolveSnapshot(id_hex);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  if (!id.ok()) return "";
  Result<snapshot::ParsedManifest> original = (*store)->LoadManifest(*id);
  EXPECT_TRUE(original.ok()) << original.status().ToString();
  if (!original.ok()) return "";
  const Bytes refs = ReadFileOrDie((*store)->RefsPath(*id));
  const sodium::SigningKeyPair key = sodium::GenerateSigningKeyPair();

  int committed = 0;
  auto commit = [&](Bytes envelope) {
    Result<snapshot::ParsedManifest> m = snapshot::ParseManifest(std::move(envelope), "copy");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    const std::string refs_path =
        (*store)->tmp_dir() + "/test-refs-" + std::to_string(committed++) + ".tmp";
    WriteFileOrDie(refs_path, refs);
    Status s = (*store)->CommitSnapshot(*m, refs_path);
    ASSERT_TRUE(s.ok()) << s.ToString();
  };

  std::map<std::string, std::optional<Bytes>> by_prefix;  // nullopt: already in the store
  by_prefix[id_hex.substr(0, 4)] = std::nullopt;
  for (int i = 0; i < 100000; ++i) {
    snapshot::pb::Manifest body = original->body;
    (*body.mutable_labels())["copy"] = std::to_string(i);
    Result<Bytes> envelope = snapshot::SignManifest(body, key);
    EXPECT_TRUE(envelope.ok()) << envelope.status().ToString();
    if (!envelope.ok()) return "";
    const std::string prefix = HexEncode(snapshot::SnapshotIdOf(*envelope)).substr(0, 4);
    auto it = by_prefix.find(prefix);
    if (it == by_prefix.end()) {
      by_prefix.emplace(prefix, std::move(*envelope));
      continue;
    }
    if (it->second) commit(std::move(*it->second));
    commit(std::move(*envelope));
    return prefix;
  }
  ADD_FAILURE() << "no two snapshot ids with a common 4-digit prefix in 100000 tries";
  return "";
}

TEST_F(FerryctlTest, AmbiguousOrTooShortPrefixIsAnError) {
  const std::string id = Snapshot(SmallTree());
  const std::string prefix = AddSnapshotsSharingAPrefix(Store(), id);
  ASSERT_EQ(prefix.size(), 4u);

  CommandResult r = Ctl({"snapshot", "show", "--store", Store(), prefix});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("ambiguous"));
  EXPECT_TRUE(r.out.empty()) << r.out;
  r = Restore(prefix, Path("out"));
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("ambiguous"));
  EXPECT_FALSE(Exists(Path("out")));
  r = Verify(prefix);
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("ambiguous"));

  r = Ctl({"snapshot", "show", "--store", Store(), id.substr(0, 3)});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("too short"));
  r = Ctl({"snapshot", "show", "--store", Store(), ""});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
}

TEST_F(FerryctlTest, UnknownSnapshotIsAnError) {
  const std::string id = Snapshot(SmallTree());
  std::string other = id;
  other[0] = other[0] == '0' ? '1' : '0';
  for (const std::string& spec : {other, other.substr(0, 10), std::string("zzzz")}) {
    SCOPED_TRACE(spec);
    CommandResult r = Ctl({"snapshot", "show", "--store", Store(), spec});
    EXPECT_EQ(r.exit_code, 4) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("no snapshot matches"));
  }
  CommandResult r = Restore(other, Path("out"));
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("no snapshot matches"));
  EXPECT_FALSE(Exists(Path("out")));
}

// ================================================================== restore

TEST_F(FerryctlTest, RestoreRoundTripsATreeByteForByte) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const std::string id = Snapshot(src);

  CommandResult r = Restore(id, Path("out"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("restored"));
  EXPECT_EQ(DiffTrees(src, Path("out")), "");
  EXPECT_EQ(ModeOf(Path("out/docs/reports")), 0750);
  EXPECT_EQ(ModeOf(Path("out/bin/tool")), 0755);
  EXPECT_EQ(ModeOf(Path("out/empty")), 0600);

  // Holes stay holes.
  ASSERT_LT(AllocatedBytes(src + "/sparse.img"), 1u << 20) << "the source is not sparse";
  EXPECT_LT(AllocatedBytes(Path("out/sparse.img")), 1u << 20);
}

TEST_F(FerryctlTest, RestoreKeepsUserXattrs) {
  const std::string src = SmallTree();
  const std::string file = src + "/a.txt";
  if (::setxattr(file.c_str(), "user.x", "hello", 5, 0) != 0) {
    GTEST_SKIP() << "the temporary filesystem refuses user xattrs: " << std::strerror(errno);
  }
  ASSERT_EQ(::setxattr((src + "/sub").c_str(), "user.folder", "\x01\x02", 2, 0), 0);
  ASSERT_EQ(::setxattr(file.c_str(), "user.empty", "", 0, 0), 0);
  const std::string id = Snapshot(src);
  CommandResult r = Restore(id, Path("out"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(DiffTrees(src, Path("out"), {.mtimes = true, .ownership = false, .xattrs = true}), "");
  char value[16] = {};
  EXPECT_EQ(::getxattr(Path("out/a.txt").c_str(), "user.x", value, sizeof(value)), 5);
  EXPECT_EQ(std::string(value, 5), "hello");
}

TEST_F(FerryctlTest, RestoreLatestAndAPrefix) {
  const std::string src = SmallTree();
  const std::string first = Snapshot(src);
  WriteText(src + "/a.txt", "alpha, second version\n");
  const std::string second = Snapshot(src);

  CommandResult r = Restore("latest", Path("latest"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(DiffTrees(src, Path("latest")), "");
  EXPECT_EQ(ReadText(Path("latest/a.txt")), "alpha, second version\n");

  r = Restore(first.substr(0, 10), Path("first"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ReadText(Path("first/a.txt")), "alpha\n");
  EXPECT_EQ(ReadText(Path("first/sub/b.txt")), "bravo\n");
}

TEST_F(FerryctlTest, RestoreOfASubFolderPutsItInTheTargetUnderItsName) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const std::string id = Snapshot(src);

  CommandResult r = Restore(id, Path("out"), {"--path", "docs/reports"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ListDir(Path("out")), std::vector<std::string>{"reports"});
  EXPECT_EQ(DiffTrees(src + "/docs/reports", Path("out/reports")), "");
  EXPECT_EQ(ModeOf(Path("out/reports")), 0750);
  struct stat a, b;
  ASSERT_EQ(::lstat((src + "/docs/reports").c_str(), &a), 0);
  ASSERT_EQ(::lstat(Path("out/reports").c_str(), &b), 0);
  EXPECT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
  EXPECT_EQ(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
}

TEST_F(FerryctlTest, RestoreOfOneFile) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const std::string id = Snapshot(src);

  CommandResult r = Restore(id, Path("out"), {"--path", "docs/reports/2025/q1.txt"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ListDir(Path("out")), std::vector<std::string>{"q1.txt"});
  EXPECT_EQ(ReadText(Path("out/q1.txt")), "first quarter: fine\n");

  r = Restore(id, Path("big"), {"--path", "big.bin"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ReadFileOrDie(Path("big/big.bin")), ReadFileOrDie(src + "/big.bin"));

  r = Restore(id, Path("none"), {"--path", "docs/nothing-here"});
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("not in the snapshot"));
}

TEST_F(FerryctlTest, RestoreRefusesANonEmptyTargetUnlessForced) {
  const std::string src = SmallTree();
  const std::string id = Snapshot(src);
  MakeDirsOrDie(Path("out"));
  WriteText(Path("out/already-here"), "mine\n");

  CommandResult r = Restore(id, Path("out"));
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("not empty"));
  EXPECT_THAT(r.err, HasSubstr("--force"));
  EXPECT_EQ(ListDir(Path("out")), std::vector<std::string>{"already-here"});

  r = Restore(id, Path("out"), {"--force"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ReadText(Path("out/a.txt")), "alpha\n");
  EXPECT_EQ(ReadText(Path("out/sub/b.txt")), "bravo\n");
  EXPECT_EQ(ReadFileOrDie(Path("out/sub/c.bin")), ReadFileOrDie(src + "/sub/c.bin"));

  // An empty existing directory is fine without --force.
  MakeDirsOrDie(Path("empty"));
  r = Restore(id, Path("empty"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(DiffTrees(src, Path("empty")), "");

  // A target that is a file is refused.
  WriteText(Path("a-file"), "x");
  r = Restore(id, Path("a-file"));
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("not a directory"));
}

TEST_F(FerryctlTest, RestoreRefusesSymlinksPointingOutsideTheTargetUnlessAllowed) {
  const std::string src = SmallTree();
  ASSERT_EQ(::symlink("/etc/hostname", (src + "/absolute").c_str()), 0);
  ASSERT_EQ(::symlink("../../outside", (src + "/sub/escape").c_str()), 0);
  ASSERT_EQ(::symlink("../a.txt", (src + "/sub/inside").c_str()), 0);
  const std::string id = Snapshot(src);

  // Everything else is restored; the refused entries are named; exit 1.
  CommandResult r = Restore(id, Path("out"));
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("absolute"));
  EXPECT_THAT(r.err, HasSubstr("escape"));
  EXPECT_THAT(r.err, HasSubstr("--allow-external-symlinks"));
  EXPECT_FALSE(Exists(Path("out/absolute")));
  EXPECT_FALSE(Exists(Path("out/sub/escape")));
  EXPECT_EQ(ReadText(Path("out/sub/inside")), "alpha\n");
  EXPECT_EQ(ReadText(Path("out/sub/b.txt")), "bravo\n");

  r = Restore(id, Path("json"), {"--json"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("\"refused\":["));
  EXPECT_THAT(r.out, HasSubstr("escape"));

  r = Restore(id, Path("allowed"), {"--allow-external-symlinks"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(DiffTrees(src, Path("allowed")), "");
}

// The write-only promise: a device holding only the agent key file can add
// snapshots, and can decrypt nothing that is stored.
TEST_F(FerryctlTest, AgentKeyFileCannotDecryptStoredSnapshots) {
  const std::string src = SmallTree();
  const std::string agent = AgentFile();
  const std::string by_agent = Snapshot(src, {}, agent);
  const std::string by_tenant = Snapshot(src);

  for (const std::string& id : {by_agent, by_tenant}) {
    SCOPED_TRACE(id);
    const std::string target = Path("out-" + id.substr(0, 8));
    // Even with the passphrase at hand.
    CommandResult r =
        CtlWithPass({"restore", "--store", Store(), "--keyset", agent, id, "--to", target});
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("agent key file"));
    EXPECT_THAT(r.err, HasSubstr("tenant keyset"));
    EXPECT_FALSE(Exists(target)) << "restore with the agent key file wrote " << target;

    r = CtlWithPass({"verify", "--store", Store(), "--keyset", agent, id});
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("agent key file"));
    EXPECT_THAT(r.out, Not(HasSubstr("intact")));
  }

  // The tenant keyset with its passphrase reads both.
  for (const std::string& id : {by_agent, by_tenant}) {
    const std::string target = Path("tenant-" + id.substr(0, 8));
    CommandResult r = Restore(id, target);
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_EQ(DiffTrees(src, target), "");
    r = Verify(id);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
  }
}

TEST_F(FerryctlTest, WrongPassphraseIsAClearError) {
  const std::string id = Snapshot(SmallTree());
  CommandResult r =
      Ctl({"restore", "--store", Store(), "--keyset", Keyset(), id, "--to", Path("out")},
          {PassEnv("not the passphrase")});
  EXPECT_EQ(r.exit_code, 5) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("wrong passphrase"));
  EXPECT_FALSE(Exists(Path("out")));

  r = Ctl({"verify", "--store", Store(), "--keyset", Keyset(), id},
          {PassEnv("not the passphrase")});
  EXPECT_EQ(r.exit_code, 5) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("wrong passphrase"));

  // No passphrase at all (and no terminal): says how to give one.
  r = Ctl({"restore", "--store", Store(), "--keyset", Keyset(), id, "--to", Path("out")});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("FERRY_PASSPHRASE"));
  EXPECT_FALSE(Exists(Path("out")));
}

TEST_F(FerryctlTest, KeysetOfAnotherInitIsRefusedNamingBothKeysets) {
  const std::string id = Snapshot(SmallTree());
  std::string other_id;
  const std::string other = InitKeyset("other.keyset", kPass, &other_id);
  ASSERT_EQ(other_id.size(), 32u);
  ASSERT_NE(other_id, keyset_id_);

  CommandResult r =
      CtlWithPass({"restore", "--store", Store(), "--keyset", other, id, "--to", Path("out")});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(keyset_id_));
  EXPECT_THAT(r.err, HasSubstr(other_id));
  EXPECT_FALSE(Exists(Path("out")));

  r = CtlWithPass({"verify", "--store", Store(), "--keyset", other, id});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(keyset_id_));
  EXPECT_THAT(r.err, HasSubstr(other_id));
}

TEST_F(FerryctlTest, DamagedKeysetIsRefused) {
  const std::string id = Snapshot(SmallTree());
  const Bytes good = ReadFileOrDie(Keyset());

  Bytes flipped = good;
  flipped[flipped.size() / 2] ^= 0x01;
  WriteFileOrDie(Path("flipped.keyset"), flipped, 0600);
  Bytes truncated(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2));
  WriteFileOrDie(Path("truncated.keyset"), truncated, 0600);
  WriteText(Path("garbage.keyset"), "this is not a keyset at all\n", 0600);
  WriteText(Path("empty.keyset"), "", 0600);

  // Damaged keysets are damaged data (7); what is not a keyset at all is bad input (2).
  for (const char* name :
       {"flipped.keyset", "truncated.keyset", "garbage.keyset", "empty.keyset"}) {
    SCOPED_TRACE(name);
    const int expected_exit =
        std::string(name).rfind("flipped", 0) == 0 || std::string(name).rfind("truncated", 0) == 0
            ? 7
            : 2;
    CommandResult r = CtlWithPass(
        {"restore", "--store", Store(), "--keyset", Path(name), id, "--to", Path("out")});
    EXPECT_EQ(r.exit_code, expected_exit) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(name));
    EXPECT_FALSE(Exists(Path("out")));
    r = CtlWithPass({"verify", "--store", Store(), "--keyset", Path(name), id});
    EXPECT_EQ(r.exit_code, expected_exit) << Describe(r);
    r = Create(Path("src"), {}, Path(name));
    EXPECT_EQ(r.exit_code, expected_exit) << Describe(r);
    r = Ctl({"keys", "export-agent", "--keyset", Path(name), "--out", Path("agent-of-damaged")});
    EXPECT_EQ(r.exit_code, expected_exit) << Describe(r);
    EXPECT_FALSE(Exists(Path("agent-of-damaged")));
  }
  CommandResult r = CtlWithPass(
      {"restore", "--store", Store(), "--keyset", Path("flipped.keyset"), id, "--to", Path("out")});
  EXPECT_THAT(r.err, AnyOf(HasSubstr("damaged"), HasSubstr("checksum")));
}

// =================================================================== verify

TEST_F(FerryctlTest, VerifyReportsAnIntactSnapshot) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const std::string id = Snapshot(src);
  CommandResult r = Verify(id);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("intact"));
  EXPECT_THAT(r.out, HasSubstr(id.substr(0, 12)));

  r = Verify("latest");
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  r = CtlWithPass({"verify", "--store", Store(), "--keyset", Keyset(), "--json", id});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("\"ok\":true"));
  EXPECT_EQ(JsonString(r.out, "id"), id);
  EXPECT_GT(JsonUint(r.out, "chunks_read").value_or(0), 0u);
}

TEST_F(FerryctlTest, FlippedByteInAPackFailsVerifyAndRestore) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const std::string id = Snapshot(src);
  ASSERT_EQ(Verify(id).exit_code, 0);
  const std::string pack = FlipByteInLargestChunk(Store());
  ASSERT_FALSE(pack.empty());

  CommandResult r = Verify(id);
  EXPECT_EQ(r.signal, 0) << Describe(r);
  EXPECT_EQ(r.exit_code, 7) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("chunk"));
  EXPECT_THAT(r.err, AnyOf(HasSubstr("does not verify"), HasSubstr("damaged"),
                           HasSubstr("does not match")));
  EXPECT_THAT(r.out, Not(HasSubstr("intact")));

  r = Restore(id, Path("out"));
  EXPECT_EQ(r.signal, 0) << Describe(r);
  EXPECT_EQ(r.exit_code, 7) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("chunk"));
  EXPECT_THAT(r.err, AnyOf(HasSubstr("does not verify"), HasSubstr("damaged"),
                           HasSubstr("does not match")));
}

// The chunks still decrypt, but a pack whose own trailer is gone could not
// rebuild an index: verify must say so.
TEST_F(FerryctlTest, DamagedPackTrailerFailsVerify) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const std::string id = Snapshot(src);
  const std::vector<std::string> packs = FindPacks(Store());
  ASSERT_FALSE(packs.empty());
  struct stat st;
  ASSERT_EQ(::stat(packs[0].c_str(), &st), 0);
  ASSERT_EQ(::truncate(packs[0].c_str(), st.st_size - 56), 0);  // drop the footer

  CommandResult r = Verify(id);
  EXPECT_EQ(r.signal, 0) << Describe(r);
  EXPECT_EQ(r.exit_code, 7) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("pack"));
  EXPECT_THAT(r.out, Not(HasSubstr("intact")));
}

TEST_F(FerryctlTest, TruncatedPackFailsVerifyAndRestore) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const std::string id = Snapshot(src);
  const std::vector<std::string> packs = FindPacks(Store());
  ASSERT_FALSE(packs.empty());
  for (const std::string& pack : packs) {
    struct stat st;
    ASSERT_EQ(::stat(pack.c_str(), &st), 0);
    ASSERT_EQ(::truncate(pack.c_str(), st.st_size / 2), 0);
  }

  CommandResult r = Verify(id);
  EXPECT_EQ(r.signal, 0) << Describe(r);
  EXPECT_EQ(r.exit_code, 7) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("ferryctl: verify"));
  EXPECT_THAT(r.out, Not(HasSubstr("intact")));

  r = Restore(id, Path("out"));
  EXPECT_EQ(r.signal, 0) << Describe(r);
  EXPECT_EQ(r.exit_code, 7) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("ferryctl: restore"));
}

// ============================================================== incremental

TEST_F(FerryctlTest, UnchangedTreeIsServedFromTheFileCacheAndStoresAlmostNothing) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const std::string first = SnapshotJson(src);
  const std::string second = SnapshotJson(src);
  const uint64_t files = JsonUint(second, "files").value_or(0);
  ASSERT_GT(files, 5u) << second;
  EXPECT_EQ(JsonUint(second, "cache_hits"), files) << second;
  EXPECT_EQ(JsonUint(second, "bytes_read"), 0u) << second;
  const uint64_t stored_first = JsonUint(first, "bytes_stored").value_or(0);
  const uint64_t stored_second = JsonUint(second, "bytes_stored").value_or(~0ull);
  EXPECT_GT(stored_first, 500u * 1024) << first;
  EXPECT_LT(stored_second * 50, stored_first) << first << "\n" << second;

  // The text summary says so too.
  CommandResult r = Create(src);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("(" + std::to_string(files) + " files unchanged)"));
}

TEST_F(FerryctlTest, ChangedFileIsCapturedAndOldSnapshotsKeepTheOldContent) {
  const std::string src = Path("src");
  BuildRichTree(src);
  ASSERT_FALSE(HasFatalFailure());
  const Bytes old_big = ReadFileOrDie(src + "/big.bin");
  const std::string first = JsonString(SnapshotJson(src), "id");
  const std::string second = JsonString(SnapshotJson(src), "id");

  Bytes new_big = old_big;
  for (size_t i = 300 * 1024; i < 300 * 1024 + 100; ++i) new_big[i] ^= 0xff;
  WriteFileOrDie(src + "/big.bin", new_big);
  const std::string third_json = SnapshotJson(src);
  const std::string third = JsonString(third_json, "id");
  ASSERT_TRUE(IsSnapshotId(third)) << third_json;
  EXPECT_EQ(JsonUint(third_json, "cache_hits").value_or(0) + 1,
            JsonUint(third_json, "files").value_or(0))
      << third_json;
  // Only the chunks around the change are new.
  EXPECT_LT(JsonUint(third_json, "bytes_new").value_or(~0ull), 400u * 1024) << third_json;

  CommandResult r = Restore(third, Path("third"));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(DiffTrees(src, Path("third")), "");
  EXPECT_EQ(ReadFileOrDie(Path("third/big.bin")), new_big);

  for (const std::string& old : {first, second}) {
    const std::string target = Path("old-" + old.substr(0, 8));
    r = Restore(old, target);
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_EQ(ReadFileOrDie(target + "/big.bin"), old_big);
    EXPECT_EQ(ReadFileOrDie(target + "/notes.txt"), ReadFileOrDie(src + "/notes.txt"));
  }
  EXPECT_EQ(Verify(first).exit_code, 0);
  EXPECT_EQ(Verify(third).exit_code, 0);
}

// ===================================================== help and usage errors

TEST_F(FerryctlTest, HelpOfEverySubcommandHasAnExample) {
  for (const std::vector<std::string>& cmd :
       std::vector<std::vector<std::string>>{{"keys", "init"},
                                             {"keys", "export-agent"},
                                             {"snapshot", "create"},
                                             {"snapshot", "list"},
                                             {"snapshot", "show"},
                                             {"restore"},
                                             {"verify"},
                                             {"config", "add-hub"},
                                             {"config", "use"},
                                             {"config", "list"},
                                             {"tenant", "create"},
                                             {"tenant", "list"},
                                             {"agent", "enroll-token"},
                                             {"agent", "list"},
                                             {"agent", "show"},
                                             {"agent", "revoke"},
                                             {"policy", "apply"},
                                             {"policy", "list"},
                                             {"policy", "get"},
                                             {"policy", "delete"},
                                             {"token", "create"},
                                             {"token", "list"},
                                             {"token", "revoke"},
                                             {"status"}}) {
    std::vector<std::string> args = cmd;
    args.push_back("--help");
    SCOPED_TRACE(args[0] + " " + (args.size() > 2 ? args[1] : ""));
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr("Example"));
  }
  CommandResult r = Ctl({"--help"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("snapshot"));
  EXPECT_THAT(r.out, HasSubstr("Exit codes"));
}

TEST_F(FerryctlTest, UsageErrorsExit2) {
  const std::string store = Path("store");
  const std::string k = Path("k");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"keys"},
           {"keys", "rotate"},
           {"snapshot"},
           {"snapshot", "delete", "--store", store},
           {"keys", "init"},
           {"keys", "init", "--out", k, "--argon2-memory", "1"},
           {"keys", "export-agent", "--keyset", k},
           {"snapshot", "create", "--store", store},
           {"snapshot", "create", "--keyset", k, Path("src")},
           {"snapshot", "list"},
           {"snapshot", "list", "--store", store, "--bogus"},
           {"snapshot", "show", "--store", store},
           {"restore", "--store", store, "--keyset", k, "latest"},
           {"restore", "--store", store, "--keyset", k, "--to", Path("out")},
           {"verify", "--store", store, "latest"},
           {"verify", "--keyset", k, "latest", "--store"}}) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    SCOPED_TRACE(joined);
    CommandResult r = CtlWithPass(args);
    EXPECT_EQ(r.exit_code, 2) << Describe(r);
    EXPECT_FALSE(r.err.empty());
  }
  EXPECT_FALSE(Exists(k));
  EXPECT_FALSE(Exists(store));
}

}  // namespace
}  // namespace ferry
