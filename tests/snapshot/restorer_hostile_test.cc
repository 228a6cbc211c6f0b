// Restore against hostile snapshots.
//
// A compromised edge device holds the agent key file (chunk-id key, tenant
// public key, a signing key), so it can store snapshots whose trees decrypt
// and verify perfectly but describe anything. These tests craft such
// snapshots directly from hand-built pb::Tree / pb::Node messages (no
// capture involved), restore them into <parent>/target next to
// <parent>/canary, and check the outcome and, always, that nothing was
// written outside the target.
//
// Why no tree can make restore follow a symlink: the restore reaches every
// entry through a directory file descriptor it opened itself, one name at a
// time. Directories are created with mkdirat and opened with
// openat(O_DIRECTORY | O_NOFOLLOW); files are created with
// openat(O_CREAT | O_EXCL | O_NOFOLLOW); symlinks are only ever created
// (symlinkat), never traversed; metadata is set through the open fd or with
// AT_SYMLINK_NOFOLLOW. Names are single components (no '/', no "..", unique
// and sorted per tree), so the only way to put something "under" a symlink
// `d` would be a directory node also named `d` in the same tree, which is a
// duplicate name and rejects the whole tree. The one multi-component path the
// restore uses is the first name of a hard link (linkat from the target's
// root fd): its components are directory nodes the restore itself created
// (or, under --force, real directories it found, checked with lstat), never a
// symlink, and linkat without AT_SYMLINK_FOLLOW does not follow the last
// component. Under --force, a symlink already in the target where the
// snapshot has a directory or file is removed (unlinkat), not followed. The
// tests below try every construction of that kind that the format allows.
//
// Restore and verify also run through a ChunkSource that is not a LocalStore
// (ForwardingSource, standing in for a hub): the tests named "ThroughSource"
// and "RemoteVerify" check that a remote restore is the same restore, that a
// remote verify matches the reference set against the chunks the walk read,
// and that what the source damages or refuses is reported.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/sodium.h"
#include "snapshot/chunk_source.h"
#include "snapshot/chunk_writer.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"
#include "snapshot/manifest.h"
#include "snapshot/ref_set.h"
#include "snapshot/restorer.h"
#include "snapshot/tree.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::RemoveTree;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;

using ::ferry::testing::HasCode;

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string ReadLink(const std::string& path) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

std::string RealPath(const std::string& path) {
  char* p = ::realpath(path.c_str(), nullptr);
  if (p == nullptr) return {};
  std::string out = p;
  std::free(p);
  return out;
}

// Everything observable about a tree (types, modes, sizes, mtimes, contents,
// link targets, inode numbers), one line per entry, for before/after checks.
// Without `inodes`, two restores of one snapshot have the same fingerprint.
void FingerprintInto(const std::string& path, const std::string& rel, std::string& out,
                     bool inodes = true) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    out += rel + " missing\n";
    return;
  }
  out += rel + " mode=" + std::to_string(st.st_mode) + " size=" + std::to_string(st.st_size) +
         (inodes ? " ino=" + std::to_string(st.st_ino) : std::string()) +
         " nlink=" + std::to_string(st.st_nlink) + " mtime=" + std::to_string(st.st_mtim.tv_sec) +
         "." + std::to_string(st.st_mtim.tv_nsec);
  if (S_ISREG(st.st_mode)) {
    out += " data=" + ToString(ReadFileOrDie(path));
  } else if (S_ISLNK(st.st_mode)) {
    out += " link=" + ReadLink(path);
  }
  out += "\n";
  if (S_ISDIR(st.st_mode)) {
    for (const std::string& n : ListNames(path))
      FingerprintInto(path + "/" + n, rel + "/" + n, out, inodes);
  }
}

std::string Fingerprint(const std::string& path, bool inodes = true) {
  std::string out;
  FingerprintInto(path, ".", out, inodes);
  return out;
}

// Every symlink below `dir`, as paths relative to it.
void CollectSymlinks(const std::string& dir, const std::string& rel,
                     std::vector<std::string>& out) {
  for (const std::string& n : ListNames(dir)) {
    const std::string path = dir + "/" + n;
    const std::string r = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) out.push_back(r);
    if (S_ISDIR(st.st_mode)) CollectSymlinks(path, r, out);
  }
}

struct stat StatOrDie(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

bool Contains(const std::vector<std::string>& list, const std::string& prefix) {
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& s) { return s.rfind(prefix, 0) == 0; });
}

pb::Tree TreeOf(std::initializer_list<pb::Node> nodes) {
  pb::Tree t;
  for (const pb::Node& n : nodes) *t.add_nodes() = n;
  return t;
}

pb::Node Symlink(const std::string& name, const std::string& target) {
  pb::Node n;
  n.set_name(name);
  n.set_type(pb::NODE_TYPE_SYMLINK);
  n.set_mode(0777);
  n.set_symlink_target(target);
  return n;
}

ChunkId IdOf(const pb::ChunkRef& ref) {
  ChunkId id{};
  EXPECT_EQ(ref.id().size(), id.size());
  std::memcpy(id.data(), ref.id().data(), std::min(id.size(), ref.id().size()));
  return id;
}

// A ChunkSource that is not a LocalStore, as a hub is: it forwards to one,
// and can damage chunks or the reference set in transit or fail as an
// unreachable hub does.
class ForwardingSource final : public ChunkSource {
 public:
  explicit ForwardingSource(LocalStore& store) : store_(store) {}

  Status ReadSealedChunk(const ChunkId& id, Bytes& out) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (unavailable_) return UnavailableError("hub unreachable (test)");
    RETURN_IF_ERROR(store_.ReadSealedChunk(id, out));
    if (corrupt_.count(id) != 0 && !out.empty()) out[out.size() / 2] ^= 0x01;
    return OkStatus();
  }
  Result<Bytes> WrappedKey(const KeyId& id) override { return store_.WrappedKey(id); }
  Result<ParsedManifest> LoadManifest(const SnapshotId& id) override {
    return store_.LoadManifest(id);
  }
  Result<Bytes> ReadRefs(const SnapshotId& id, uint64_t max_bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    refs_max_bytes_ = max_bytes;
    ASSIGN_OR_RETURN(Bytes refs, store_.ReadRefs(id, max_bytes));
    if (corrupt_refs_at_ < refs.size()) refs[corrupt_refs_at_] ^= 0x01;
    return refs;
  }

  // Flips a bit in the middle of this chunk's sealed bytes on every read.
  void CorruptChunk(const ChunkId& id) {
    std::lock_guard<std::mutex> lock(mu_);
    corrupt_.insert(id);
  }
  // Flips a bit at this offset of the reference set.
  void CorruptRefsAt(size_t offset) {
    std::lock_guard<std::mutex> lock(mu_);
    corrupt_refs_at_ = offset;
  }
  // Every chunk read fails with kUnavailable.
  void SetUnavailable() {
    std::lock_guard<std::mutex> lock(mu_);
    unavailable_ = true;
  }
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    corrupt_.clear();
    corrupt_refs_at_ = SIZE_MAX;
    unavailable_ = false;
  }
  // The max_bytes of the last ReadRefs call.
  uint64_t refs_max_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return refs_max_bytes_;
  }

 private:
  LocalStore& store_;
  std::mutex mu_;
  std::set<ChunkId> corrupt_;          // guarded by mu_
  size_t corrupt_refs_at_ = SIZE_MAX;  // guarded by mu_
  bool unavailable_ = false;           // guarded by mu_
  uint64_t refs_max_bytes_ = 0;        // guarded by mu_
};

class RestorerHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keyset_ = Keyset::Generate();
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Create(dir_.Sub("store"));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    writer_ = std::make_unique<ChunkWriter>(*keyset_, *store_);
    source_ = std::make_unique<ForwardingSource>(*store_);
    parent_ = dir_.Sub("parent");
    target_ = parent_ + "/target";
    canary_ = parent_ + "/canary";
    MakeDirsOrDie(canary_ + "/inner");
    WriteFileOrDie(canary_ + "/keep", AsBytes("canary"), 0644);
    WriteFileOrDie(canary_ + "/inner/deep", AsBytes("deep canary"), 0600);
    ASSERT_EQ(::symlink("keep", (canary_ + "/link").c_str()), 0);
    canary_before_ = Fingerprint(canary_);
  }

  // --- crafting ---

  // Stores `plain` as one chunk and returns its ref; the id joins the refs.
  pb::ChunkRef Put(ByteView plain) {
    pb::ChunkRef ref;
    Result<ChunkResult> r = writer_->Write(plain);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return ref;
    refs_[r->id] = r->sealed_size;
    ref.set_id(r->id.data(), r->id.size());
    ref.set_size(r->plain_size);
    return ref;
  }
  pb::ChunkRef Put(std::string_view plain) { return Put(AsBytes(plain)); }
  // A tree's bytes as one chunk, in the order given (unsorted and duplicate
  // names included); an empty tree is a zero-length chunk.
  pb::ChunkRef PutTree(const pb::Tree& tree) { return Put(tree.SerializeAsString()); }

  pb::Node File(const std::string& name, std::string_view content, uint32_t mode = 0644) {
    pb::Node n;
    n.set_name(name);
    n.set_type(pb::NODE_TYPE_FILE);
    n.set_mode(mode);
    n.set_mtime_ns(1'600'000'000'000'000'000);
    n.set_size(content.size());
    if (!content.empty()) *n.add_content() = Put(content);
    return n;
  }

  pb::Node Dir(const std::string& name, const pb::Tree& children, uint32_t mode = 0755) {
    pb::Node n;
    n.set_name(name);
    n.set_type(pb::NODE_TYPE_DIRECTORY);
    n.set_mode(mode);
    n.set_mtime_ns(1'500'000'000'000'000'000);
    *n.add_content() = PutTree(children);
    return n;
  }

  // Signs and commits a snapshot whose root tree is `root_tree_bytes`
  // (normally one DIRECTORY node with an empty name).
  SnapshotId CommitRootTreeBytes(std::string_view root_tree_bytes) {
    pb::Manifest m;
    m.set_format_version(kManifestFormatVersion);
    m.set_created_unix_ns(1'700'000'000'000'000'000);
    m.set_keyset_id(keyset_->id().data(), keyset_->id().size());
    pb::Dataset* ds = m.add_datasets();
    ds->set_name("hostile");
    ds->set_kind(pb::DATASET_KIND_VOLUME);
    *ds->add_root() = Put(root_tree_bytes);

    RefSetBuilder builder(*Env::Default(), store_->tmp_dir());
    for (const auto& [id, sealed_size] : refs_) {
      if (drop_from_refs_.count(id) != 0) continue;
      EXPECT_TRUE(builder.Add(id, sealed_size).ok());
    }
    const std::string refs_path =
        store_->tmp_dir() + "/refs-" + std::to_string(++commits_) + ".tmp";
    Result<RefSetSummaryInfo> refs = builder.Finish(refs_path);
    EXPECT_TRUE(refs.ok()) << refs.status().ToString();
    if (!refs.ok()) return {};
    m.mutable_refs()->set_count(refs->count);
    m.mutable_refs()->set_sealed_bytes(refs->sealed_bytes);
    m.mutable_refs()->set_digest(refs->digest.data(), refs->digest.size());

    Result<Bytes> envelope = SignManifest(m, keyset_->signing_key());
    EXPECT_TRUE(envelope.ok()) << envelope.status().ToString();
    if (!envelope.ok()) return {};
    Result<ParsedManifest> parsed = ParseManifest(std::move(*envelope), "(crafted)");
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    if (!parsed.ok()) return {};
    Status s = store_->CommitSnapshot(*parsed, refs_path);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return parsed->id;
  }

  // The root node of a crafted snapshot: one unnamed directory.
  pb::Node RootNode(const pb::Tree& top) {
    pb::Node root = Dir("", top);
    root.clear_name();
    return root;
  }

  SnapshotId Commit(const pb::Tree& top) {
    return CommitRootTreeBytes(TreeOf({RootNode(top)}).SerializeAsString());
  }

  // Through the LocalStore, or through source_ with via_source_.
  Result<RestoreReport> Restore(const SnapshotId& id, RestoreOptions options = {}) {
    options.workers = 2;
    if (via_source_) return RestoreSnapshot(*source_, *keyset_, id, target_, options);
    return RestoreSnapshot(*store_, *keyset_, id, target_, options);
  }

  Result<VerifyReport> VerifyLocal(const SnapshotId& id) {
    return VerifySnapshot(*store_, *keyset_, id, 2);
  }
  Result<VerifyReport> VerifyRemote(const SnapshotId& id) {
    return VerifySnapshot(*source_, *keyset_, id, 2);
  }

  // Starts a snapshot's reference set afresh: only chunks Put from now on
  // (by default every chunk Put since the fixture started is listed).
  void ForgetRefs() {
    refs_.clear();
    drop_from_refs_.clear();
  }

  // --- shared scenarios ---

  // A well-formed crafted snapshot of every kind of entry: content, modes,
  // mtimes, sparse holes, symlinks, hard links, empty files and dirs.
  SnapshotId CommitPositiveControl() {
    pb::Node big = File("big", "");
    big.set_size(3 * 4);
    *big.add_content() = Put("0123");
    *big.add_content() = Put("4567");
    *big.add_content() = Put("89ab");
    pb::Node sparse = File("sparse", "");
    sparse.set_size(1 << 20);
    *sparse.add_content() = Put("ABCDExyz");  // one chunk spanning two extents
    pb::Extent* e1 = sparse.add_extents();
    e1->set_offset(4096);
    e1->set_length(5);
    pb::Extent* e2 = sparse.add_extents();
    e2->set_offset(65536);
    e2->set_length(3);
    pb::Node linked_a = File("f", "link", 0640);
    linked_a.set_hardlink_id(1);
    pb::Node linked_b = File("g", "link", 0640);
    linked_b.set_hardlink_id(1);
    pb::Node a = File("a.txt", "hello", 0640);
    a.set_mtime_ns(1'600'000'000'123'456'789);
    return Commit(TreeOf({a, big, Dir("d", TreeOf({linked_a}), 0750), Dir("e", TreeOf({})),
                          File("empty", "", 0600), linked_b, Symlink("ln", "d/f"), sparse}));
  }

  // Names that are not one path component, or not unique and sorted, reject
  // the tree (kDataLoss) wherever the tree sits; nothing named by them appears.
  void ExpectHostileNamesRejected() {
    struct Case {
      const char* what;
      std::vector<std::string> names;  // the nodes of the bad tree, in this order
    };
    const std::vector<Case> cases = {
        {"empty", {""}},
        {"dot", {"."}},
        {"dotdot", {".."}},
        {"slash", {"a/b"}},
        {"climb", {"../escape"}},
        {"absolute", {"/abs"}},
        {"NUL byte", {std::string("a\0b", 3)}},
        {"256 bytes", {std::string(256, 'n')}},
        {"duplicate", {"a", "a"}},
        {"unsorted", {"b", "a"}},
    };
    for (const Case& c : cases) {
      for (const bool nested : {false, true}) {
        SCOPED_TRACE(std::string(c.what) + (nested ? " (in sub/)" : " (top level)"));
        pb::Tree bad;
        for (const std::string& n : c.names) *bad.add_nodes() = File(n, "pwned");
        const SnapshotId id = nested ? Commit(TreeOf({Dir("sub", bad)})) : Commit(bad);
        Result<RestoreReport> r = Restore(id);
        EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
        // At most the directory that held the bad tree was created, empty.
        EXPECT_EQ(ListNames(target_),
                  nested ? std::vector<std::string>{"sub"} : std::vector<std::string>{});
        if (nested) {
          EXPECT_TRUE(ListNames(target_ + "/sub").empty());
        }
        EXPECT_FALSE(Exists(parent_ + "/escape"));
        EXPECT_FALSE(Exists("/abs"));
        ExpectContained();
        ResetTarget();
      }
    }
    // The 255-byte limit is inclusive.
    const SnapshotId ok = Commit(TreeOf({File(std::string(255, 'n'), "fine")}));
    Result<RestoreReport> r = Restore(ok);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/" + std::string(255, 'n'))), "fine");
    ExpectContained();
  }

  // --- containment ---

  // Nothing but the target changed next to it: the canary is byte for byte
  // what it was, the parent holds only the canary and the target, and the
  // test directory holds only the parent and the store.
  void ExpectContained() {
    EXPECT_EQ(Fingerprint(canary_), canary_before_);
    for (const std::string& n : ListNames(parent_)) {
      EXPECT_TRUE(n == "canary" || n == "target") << "unexpected " << parent_ << "/" << n;
    }
    EXPECT_EQ(ListNames(dir_.path()), (std::vector<std::string>{"parent", "store"}));
  }

  // Every symlink in the target either dangles or resolves inside it.
  void ExpectSymlinksResolveInside() {
    const std::string root = RealPath(target_);
    ASSERT_FALSE(root.empty());
    std::vector<std::string> links;
    CollectSymlinks(target_, "", links);
    for (const std::string& l : links) {
      const std::string resolved = RealPath(target_ + "/" + l);
      if (resolved.empty()) continue;  // dangling
      EXPECT_TRUE(resolved == root || resolved.rfind(root + "/", 0) == 0)
          << l << " -> '" << ReadLink(target_ + "/" + l) << "' resolves to " << resolved
          << ", outside " << root;
    }
  }

  // Removes the target between the rows of a table.
  void ResetTarget() {
    RemoveTree(target_);
    ASSERT_FALSE(Exists(target_));
  }

  TempDir dir_;
  std::unique_ptr<Keyset> keyset_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<ChunkWriter> writer_;
  std::unique_ptr<ForwardingSource> source_;
  bool via_source_ = false;  // Restore() goes through source_
  std::map<ChunkId, uint32_t> refs_;
  std::set<ChunkId> drop_from_refs_;  // Put, but left out of the reference set
  int commits_ = 0;
  std::string parent_;
  std::string target_;
  std::string canary_;
  std::string canary_before_;
};

// Positive control: a well-formed crafted snapshot restores exactly (content,
// modes, mtimes, sparse holes, symlinks, hard links, empty files and dirs).
TEST_F(RestorerHostileTest, HostileHelperPositiveControlRestoresExactly) {
  const SnapshotId id = CommitPositiveControl();

  Result<RestoreReport> r = Restore(id);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->refused.empty());
  EXPECT_EQ(r->files, 6u);        // a hard link counts as a file too
  EXPECT_EQ(r->directories, 3u);  // the root, d, e
  EXPECT_EQ(r->symlinks, 1u);
  EXPECT_EQ(r->hardlinks, 1u);
  EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/a.txt")), "hello");
  EXPECT_EQ(StatOrDie(target_ + "/a.txt").st_mode & 07777, 0640u);
  EXPECT_EQ(StatOrDie(target_ + "/a.txt").st_mtim.tv_nsec, 123'456'789);
  EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/big")), "0123456789ab");
  EXPECT_EQ(StatOrDie(target_ + "/d").st_mode & 07777, 0750u);
  EXPECT_TRUE(ListNames(target_ + "/e").empty());
  EXPECT_EQ(StatOrDie(target_ + "/empty").st_size, 0);
  EXPECT_EQ(StatOrDie(target_ + "/d/f").st_ino, StatOrDie(target_ + "/g").st_ino);
  EXPECT_EQ(ReadLink(target_ + "/ln"), "d/f");
  const Bytes s = ReadFileOrDie(target_ + "/sparse");
  ASSERT_EQ(s.size(), size_t{1} << 20);
  Bytes want(size_t{1} << 20, 0);
  std::memcpy(want.data() + 4096, "ABCDE", 5);
  std::memcpy(want.data() + 65536, "xyz", 3);
  EXPECT_TRUE(s == want);
  EXPECT_LT(StatOrDie(target_ + "/sparse").st_blocks * 512, 1 << 20);  // holes stay holes
  EXPECT_EQ(ListNames(target_),
            (std::vector<std::string>{"a.txt", "big", "d", "e", "empty", "g", "ln", "sparse"}));
  Result<VerifyReport> v = VerifySnapshot(*store_, *keyset_, id, 2);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  ExpectContained();
}

// Names that are not one path component, or not unique and sorted, reject
// the tree (kDataLoss) wherever the tree sits; nothing named by them appears.
TEST_F(RestorerHostileTest, HostileNodeNamesAreRejected) { ExpectHostileNamesRejected(); }

// Symlinks: absolute targets and targets that climb out of the restore
// target are refused (listed, not created) unless allow_external_symlinks;
// targets that stay inside are restored as written.
TEST_F(RestorerHostileTest, HostileSymlinkTargetsOutsideAreRefused) {
  struct Link {
    std::string path;    // where it sits in the snapshot
    std::string target;  // what it points to
    bool inside;         // restored without allow_external_symlinks
  };
  const std::vector<Link> links = {
      {"abs", "/etc/passwd", false},
      {"canary-abs", canary_, false},
      // Lexically inside, but "dot" is a symlink to ".", so the kernel
      // resolves dot/dot/../.. to the target's grandparent (restored before
      // SymlinkStaysInside refused ".." after a downward component).
      {"chain", "dot/dot/../..", false},
      {"dot", ".", true},
      {"dotdot", "a/../../x", false},
      {"esc", "../../outside", false},
      {"inside", "sub/file", true},
      // Inside in fact (sub is a real directory), but a ".." after a
      // downward component cannot be told apart from the "chain" case
      // without knowing what each component is: refused, conservatively.
      {"mid", "sub/../sub/file", false},
      {"sub/root", "..", true},
      {"sub/sib", "../sibling", true},
      {"sub/up2", "../../x", false},
  };
  pb::Tree sub;
  *sub.add_nodes() = File("file", "data");
  pb::Tree top;
  for (const Link& l : links) {
    if (l.path.rfind("sub/", 0) == 0) *sub.add_nodes() = Symlink(l.path.substr(4), l.target);
  }
  for (const Link& l : links) {
    if (l.path.rfind("sub/", 0) != 0) *top.add_nodes() = Symlink(l.path, l.target);
    if (l.path == "mid") {  // keep the names sorted
      *top.add_nodes() = File("sibling", "sibling");
      *top.add_nodes() = Dir("sub", sub);
    }
  }
  const SnapshotId id = Commit(top);

  {
    SCOPED_TRACE("default: refused");
    Result<RestoreReport> r = Restore(id);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const Link& l : links) {
      SCOPED_TRACE(l.path + " -> " + l.target);
      if (l.inside) {
        EXPECT_EQ(ReadLink(target_ + "/" + l.path), l.target);
        EXPECT_FALSE(Contains(r->refused, l.path + ":"));
      } else {
        EXPECT_FALSE(Exists(target_ + "/" + l.path));
        EXPECT_TRUE(Contains(r->refused, l.path + ": symlink target"));
      }
    }
    EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/sub/file")), "data");
    EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/sub/sib")), "sibling");
    ExpectSymlinksResolveInside();
    ExpectContained();
  }
  ResetTarget();
  {
    SCOPED_TRACE("allow_external_symlinks: all restored as written, none followed");
    RestoreOptions options;
    options.allow_external_symlinks = true;
    Result<RestoreReport> r = Restore(id, options);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->refused.empty());
    EXPECT_EQ(r->symlinks, links.size());
    for (const Link& l : links) EXPECT_EQ(ReadLink(target_ + "/" + l.path), l.target) << l.path;
    EXPECT_FALSE(Exists(dir_.Sub("outside")));
    ExpectContained();
  }
  ResetTarget();
  {
    // Restoring sub/sib alone puts it at depth 0, where "../sibling" leaves
    // the target; restoring sub keeps it at depth 1, where it stays inside.
    SCOPED_TRACE("sub_path moves the link up");
    RestoreOptions options;
    options.sub_path = "sub/sib";
    Result<RestoreReport> r = Restore(id, options);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(Contains(r->refused, "sib: symlink target"));
    EXPECT_TRUE(ListNames(target_).empty());
    ResetTarget();
    options.sub_path = "sub";
    r = Restore(id, options);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(ReadLink(target_ + "/sub/sib"), "../sibling");
    EXPECT_EQ(ReadLink(target_ + "/sub/root"), "..");
    EXPECT_TRUE(Contains(r->refused, "sub/up2: symlink target"));
    ExpectSymlinksResolveInside();
    ExpectContained();
  }
}

// Every way the format offers to put something "through" a symlink: a
// directory or file of the same name in the same tree (a duplicate), before
// or after it, at the top or nested, and a sub_path through a symlink.
TEST_F(RestorerHostileTest, HostileSymlinkThenSameNameIsRejected) {
  struct Case {
    const char* what;
    pb::Tree tree;
  };
  const pb::Tree payload = TreeOf({File("keep", "pwned")});
  const std::vector<Case> cases = {
      {"symlink then directory", TreeOf({Symlink("d", canary_), Dir("d", payload)})},
      {"directory then symlink", TreeOf({Dir("d", payload), Symlink("d", canary_)})},
      {"symlink then file", TreeOf({Symlink("d", canary_ + "/keep"), File("d", "pwned")})},
      {"file then symlink", TreeOf({File("d", "pwned"), Symlink("d", canary_ + "/keep")})},
      {"nested", TreeOf({Dir("s", TreeOf({Symlink("d", canary_), Dir("d", payload)}))})},
  };
  for (const Case& c : cases) {
    for (const bool allow : {false, true}) {
      SCOPED_TRACE(std::string(c.what) + (allow ? " (external symlinks allowed)" : ""));
      RestoreOptions options;
      options.allow_external_symlinks = allow;
      Result<RestoreReport> r = Restore(Commit(c.tree), options);
      EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
      EXPECT_NE(r.status().message().find("names not sorted or duplicated"), std::string::npos)
          << r.status().ToString();
      ExpectContained();
      ResetTarget();
    }
  }
  {
    // A symlink restored (allowed) and a sub_path that tries to walk through it.
    SCOPED_TRACE("sub_path through a symlink");
    const SnapshotId id = Commit(TreeOf({Symlink("d", canary_)}));
    RestoreOptions options;
    options.allow_external_symlinks = true;
    options.sub_path = "d/keep";
    Result<RestoreReport> r = Restore(id, options);
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kNotFound));
    EXPECT_FALSE(Exists(target_));
    ExpectContained();
  }
}

// Hard links: ids only on files (a directory or symlink carrying one rejects
// the tree); an id whose first holder was refused or is not restored links
// nothing, the later holder is restored as a plain file.
TEST_F(RestorerHostileTest, HostileHardlinksLinkNothingOutside) {
  struct Case {
    const char* what;
    pb::Tree tree;
  };
  pb::Node file = File("f", "pwned");
  file.set_hardlink_id(7);
  pb::Node dir = Dir("d", TreeOf({}));
  dir.set_hardlink_id(7);
  pb::Node link = Symlink("l", canary_ + "/keep");
  link.set_hardlink_id(7);
  const std::vector<Case> rejected = {
      {"directory with the id of a file", TreeOf({dir, file})},
      {"file with the id of a directory", TreeOf({Dir("a", TreeOf({file})), dir})},
      {"symlink with the id of a file", TreeOf({file, link})},
  };
  for (const Case& c : rejected) {
    SCOPED_TRACE(c.what);
    RestoreOptions options;
    options.allow_external_symlinks = true;
    Result<RestoreReport> r = Restore(Commit(c.tree), options);
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    ExpectContained();
    ResetTarget();
  }

  pb::Node a = File("a", "AAA");
  a.set_hardlink_id(9);
  pb::Node b = File("b", "BBB");  // claims to be the same inode, with other content
  b.set_hardlink_id(9);
  {
    SCOPED_TRACE("first holder refused (--force, a directory in the way)");
    MakeDirsOrDie(target_ + "/a");
    WriteFileOrDie(target_ + "/a/mine", AsBytes("mine"));
    RestoreOptions options;
    options.force = true;
    Result<RestoreReport> r = Restore(Commit(TreeOf({a, b})), options);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(Contains(r->refused, "a: a directory is in the way"));
    EXPECT_EQ(r->hardlinks, 0u);
    EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/a/mine")), "mine");
    EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/b")), "BBB");
    EXPECT_EQ(StatOrDie(target_ + "/b").st_nlink, 1u);
    ExpectContained();
    ResetTarget();
  }
  {
    SCOPED_TRACE("first holder not restored (sub_path)");
    pb::Node x = File("x", "XXX");
    x.set_hardlink_id(3);
    pb::Node y = File("y", "YYY");
    y.set_hardlink_id(3);
    RestoreOptions options;
    options.sub_path = "two";
    Result<RestoreReport> r =
        Restore(Commit(TreeOf({Dir("one", TreeOf({x})), Dir("two", TreeOf({y}))})), options);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->hardlinks, 0u);
    EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/two/y")), "YYY");
    EXPECT_EQ(StatOrDie(target_ + "/two/y").st_nlink, 1u);
    ExpectContained();
    ResetTarget();
  }
  {
    // Both holders restored: the second is a link to the first, wherever
    // they sit; the second node's own content and metadata are not used.
    SCOPED_TRACE("holders in different directories");
    pb::Node deep = b;
    deep.set_name("deep");
    Result<RestoreReport> r =
        Restore(Commit(TreeOf({a, Dir("x", TreeOf({Dir("y", TreeOf({deep}))}))})));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->hardlinks, 1u);
    EXPECT_EQ(StatOrDie(target_ + "/a").st_ino, StatOrDie(target_ + "/x/y/deep").st_ino);
    EXPECT_EQ(ToString(ReadFileOrDie(target_ + "/x/y/deep")), "AAA");
    ExpectContained();
  }
}

// Lies about file content: sizes, extents, chunk refs. Tree validation or
// the chunk reader rejects each; a missing chunk is kNotFound; no crash.
TEST_F(RestorerHostileTest, HostileFileContentLiesAreRejected) {
  const pb::ChunkRef hello = Put("hello");
  auto node = [&](uint64_t size, std::initializer_list<std::pair<uint64_t, uint64_t>> extents,
                  pb::ChunkRef ref) {
    pb::Node n = File("f", "");
    n.set_size(size);
    *n.add_content() = ref;
    for (const auto& [offset, length] : extents) {
      pb::Extent* e = n.add_extents();
      e->set_offset(offset);
      e->set_length(length);
    }
    return n;
  };
  auto with_size = [&](uint32_t size) {
    pb::ChunkRef r = hello;
    r.set_size(size);
    return r;
  };
  pb::ChunkRef missing;
  const std::array<uint8_t, 32> random_id = sodium::RandomArray<32>();
  missing.set_id(random_id.data(), random_id.size());
  missing.set_size(5);
  pb::ChunkRef short_id = hello;
  short_id.set_id(hello.id().substr(0, 31));
  pb::Node with_target = node(5, {}, hello);
  with_target.set_symlink_target("/etc");
  pb::Node unknown_type = node(5, {}, hello);
  unknown_type.set_type(static_cast<pb::NodeType>(7));
  pb::Node unspecified_type = node(5, {}, hello);
  unspecified_type.set_type(pb::NODE_TYPE_UNSPECIFIED);
  pb::Node dir_with_extents = Dir("f", TreeOf({}));
  dir_with_extents.add_extents()->set_length(1);
  pb::Node link_with_content = Symlink("f", "x");
  *link_with_content.add_content() = hello;
  pb::Node bad_xattr = node(5, {}, hello);
  bad_xattr.add_xattrs()->set_name(std::string("user.a\0b", 8));
  pb::Node dir_not_a_tree = Dir("f", TreeOf({}));
  *dir_not_a_tree.mutable_content(0) = Put("\xff\xff\xff\xff");
  pb::Node dir_missing_tree = Dir("f", TreeOf({}));
  *dir_missing_tree.mutable_content(0) = missing;

  struct Case {
    const char* what;
    pb::Node node;
    StatusCode want;
  };
  const uint64_t kMax = UINT64_MAX;
  const std::vector<Case> cases = {
      {"size larger than content", node(6, {}, hello), StatusCode::kDataLoss},
      {"size smaller than content", node(4, {}, hello), StatusCode::kDataLoss},
      {"extents overlap", node(100, {{0, 3}, {2, 2}}, hello), StatusCode::kDataLoss},
      {"extent past the end", node(10, {{8, 5}}, hello), StatusCode::kDataLoss},
      {"extent starts past the end", node(10, {{11, 5}}, hello), StatusCode::kDataLoss},
      {"extents unsorted", node(100, {{50, 2}, {0, 3}}, hello), StatusCode::kDataLoss},
      {"zero-length extent", node(100, {{0, 5}, {10, 0}}, hello), StatusCode::kDataLoss},
      {"extents shorter than content", node(100, {{0, 4}}, hello), StatusCode::kDataLoss},
      {"extents longer than content", node(100, {{0, 6}}, hello), StatusCode::kDataLoss},
      {"extent end overflows", node(kMax, {{kMax - 1, 5}}, hello), StatusCode::kDataLoss},
      {"ref size larger than the chunk", node(6, {}, with_size(6)), StatusCode::kDataLoss},
      {"ref size smaller than the chunk", node(4, {}, with_size(4)), StatusCode::kDataLoss},
      {"ref size zero", node(0, {}, with_size(0)), StatusCode::kDataLoss},
      {"ref size over the chunk limit", node(kMaxChunkSize + 1, {}, with_size(kMaxChunkSize + 1)),
       StatusCode::kDataLoss},
      {"chunk not in the store", node(5, {}, missing), StatusCode::kNotFound},
      {"chunk id of 31 bytes", node(5, {}, short_id), StatusCode::kDataLoss},
      {"file with a symlink target", with_target, StatusCode::kDataLoss},
      {"unknown node type", unknown_type, StatusCode::kDataLoss},
      {"unspecified node type", unspecified_type, StatusCode::kDataLoss},
      {"directory with extents", dir_with_extents, StatusCode::kDataLoss},
      {"symlink with content", link_with_content, StatusCode::kDataLoss},
      {"xattr name with NUL", bad_xattr, StatusCode::kDataLoss},
      {"directory content is not a tree", dir_not_a_tree, StatusCode::kDataLoss},
      {"directory tree not in the store", dir_missing_tree, StatusCode::kNotFound},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Result<RestoreReport> r = Restore(Commit(TreeOf({c.node})));
    EXPECT_TRUE(HasCode(r.status(), c.want));
    ExpectContained();
    ResetTarget();
  }
}

// Absurd sizes: a huge size without content is rejected; a huge sparse file
// with one tiny extent costs neither memory nor time proportional to its
// size: it is created sparse, or refused by the filesystem with an error.
TEST_F(RestorerHostileTest, HostileAbsurdSizesAreRejectedOrStaySparse) {
  {
    SCOPED_TRACE("2^62 bytes, no content");
    pb::Node n = File("huge", "");
    n.set_size(uint64_t{1} << 62);
    Result<RestoreReport> r = Restore(Commit(TreeOf({n})));
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    ExpectContained();
    ResetTarget();
  }
  auto sparse = [&](uint64_t size, uint64_t offset) {
    pb::Node n = File("sparse", "");
    n.set_size(size);
    *n.add_content() = Put("tiny");
    pb::Extent* e = n.add_extents();
    e->set_offset(offset);
    e->set_length(4);
    return n;
  };
  {
    // ext4 allows 16 TiB files: this is a legitimate (if odd) sparse file.
    SCOPED_TRACE("1 TiB sparse file, 4 bytes at 2^40");
    const uint64_t offset = uint64_t{1} << 40;
    Result<RestoreReport> r = Restore(Commit(TreeOf({sparse(offset + 4, offset)})));
    if (r.ok()) {
      const struct stat st = StatOrDie(target_ + "/sparse");
      EXPECT_EQ(static_cast<uint64_t>(st.st_size), offset + 4);
      EXPECT_LT(st.st_blocks * 512, 1 << 20);
      EXPECT_EQ(r->bytes, 4u);
      EXPECT_LT(r->seconds, 10.0);
    } else {
      EXPECT_TRUE(HasCode(r.status(), StatusCode::kResourceExhausted));  // EFBIG
    }
    ExpectContained();
    ResetTarget();
  }
  {
    SCOPED_TRACE("2^62-byte sparse file");
    Result<RestoreReport> r = Restore(Commit(TreeOf({sparse(uint64_t{1} << 62, 0)})));
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kResourceExhausted));  // ftruncate: EFBIG
    ExpectContained();
    ResetTarget();
  }
  {
    // Offsets beyond off_t: pwrite gets a negative offset and fails.
    SCOPED_TRACE("extent at 2^63");
    Result<RestoreReport> r = Restore(Commit(TreeOf({sparse(UINT64_MAX, uint64_t{1} << 63)})));
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kInvalidArgument));  // pwrite: EINVAL
    ExpectContained();
    ResetTarget();
  }
  {
    // Many one-byte extents over one chunk: mapping content onto extents
    // must be linear, not a rescan of the extent list for every piece.
    SCOPED_TRACE("400,000 one-byte extents");
    constexpr size_t kExtents = 400'000;
    pb::Node n = File("many", "");
    n.set_size(2 * kExtents);
    *n.add_content() = Put(std::string(kExtents, 'x'));
    for (size_t i = 0; i < kExtents; ++i) {
      pb::Extent* e = n.add_extents();
      e->set_offset(2 * i);
      e->set_length(1);
    }
    const auto start = std::chrono::steady_clock::now();
    Result<RestoreReport> r = Restore(Commit(TreeOf({n})));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LT(seconds, 30.0);  // about 1 s; a rescan per extent took minutes
    const Bytes data = ReadFileOrDie(target_ + "/many");
    ASSERT_EQ(data.size(), 2 * kExtents);
    EXPECT_EQ(std::count(data.begin(), data.end(), 'x'), static_cast<ptrdiff_t>(kExtents));
    EXPECT_EQ(data[2 * kExtents - 2], 'x');
    EXPECT_EQ(data[2 * kExtents - 1], 0);
    ExpectContained();
  }
}

// Modes: setuid/setgid/sticky are the user's data and restored as written;
// bits beyond 07777 reject the tree.
TEST_F(RestorerHostileTest, HostileModesBeyond07777AreRejected) {
  {
    SCOPED_TRACE("special bits are restored");
    const SnapshotId id = Commit(TreeOf({File("setgid", "g", 02755), File("setuid", "u", 04777),
                                         Dir("sticky", TreeOf({}), 01777)}));
    Result<RestoreReport> r = Restore(id);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(StatOrDie(target_ + "/setuid").st_mode & 07777, 04777u);
    EXPECT_EQ(StatOrDie(target_ + "/sticky").st_mode & 07777, 01777u);
    ExpectContained();
    ResetTarget();
  }
  struct Case {
    const char* what;
    pb::Node node;
  };
  pb::Node link = Symlink("l", "x");
  link.set_mode(010777);
  const std::vector<Case> cases = {
      {"file 010000", File("f", "x", 010000)},
      {"file 0100644 (S_IFREG)", File("f", "x", 0100644)},
      {"file 0xffffffff", File("f", "x", 0xffffffffu)},
      {"directory 0170000", Dir("d", TreeOf({}), 0170000)},
      {"symlink 010777", link},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Result<RestoreReport> r = Restore(Commit(TreeOf({c.node})));
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    ExpectContained();
    ResetTarget();
  }
  {
    SCOPED_TRACE("root 010755");
    pb::Node root = RootNode(TreeOf({}));
    root.set_mode(010755);
    Result<RestoreReport> r = Restore(CommitRootTreeBytes(TreeOf({root}).SerializeAsString()));
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    EXPECT_FALSE(Exists(target_));
    ExpectContained();
  }
}

// Malformed root trees are kDataLoss before the target is even created.
TEST_F(RestorerHostileTest, HostileRootTreesAreRejected) {
  const pb::Tree top = TreeOf({File("f", "data")});
  pb::Node file_root = RootNode(top);
  file_root.set_type(pb::NODE_TYPE_FILE);
  pb::Node named_root = RootNode(top);
  named_root.set_name("x");
  pb::Node dotdot_root = RootNode(top);
  dotdot_root.set_name("..");
  pb::Node linked_root = RootNode(top);
  linked_root.set_hardlink_id(1);
  pb::Node symlink_root = Symlink("", canary_);
  symlink_root.clear_name();
  struct Case {
    const char* what;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"not a protobuf", std::string("\xff\xff\xff\xff", 4)},
      {"truncated protobuf", TreeOf({RootNode(top)}).SerializeAsString().substr(0, 10)},
      {"empty tree", ""},
      {"two nodes", TreeOf({RootNode(top), RootNode(top)}).SerializeAsString()},
      {"a FILE root", TreeOf({file_root}).SerializeAsString()},
      {"a SYMLINK root", TreeOf({symlink_root}).SerializeAsString()},
      {"a named root", TreeOf({named_root}).SerializeAsString()},
      {"a root named ..", TreeOf({dotdot_root}).SerializeAsString()},
      {"a root with a hardlink id", TreeOf({linked_root}).SerializeAsString()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Result<RestoreReport> r = Restore(CommitRootTreeBytes(c.bytes));
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    EXPECT_FALSE(Exists(target_));
    ExpectContained();
  }
  {
    SCOPED_TRACE("top tree not a protobuf");
    pb::Node root = RootNode(top);
    *root.mutable_content(0) = Put("\xff\xff\xff\xff");
    Result<RestoreReport> r = Restore(CommitRootTreeBytes(TreeOf({root}).SerializeAsString()));
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
    ExpectContained();
  }
}

// sub_path: ".." and invalid components are kInvalidArgument; a leading or
// doubled '/' is read relative to the snapshot's root; a path through a
// file or symlink, or to an absent entry, is kNotFound.
TEST_F(RestorerHostileTest, HostileSubPathsStayInside) {
  const SnapshotId id = Commit(
      TreeOf({Dir("a", TreeOf({File("f", "F")})), File("abs", "abs file"), Symlink("l", "a")}));
  struct Case {
    std::string sub_path;
    StatusCode want;
    std::vector<std::string> restored;  // names in the target on success
  };
  const std::vector<Case> cases = {
      {"../x", StatusCode::kInvalidArgument, {}},
      {"..", StatusCode::kInvalidArgument, {}},
      {"a/..", StatusCode::kInvalidArgument, {}},
      {"a/../../b", StatusCode::kInvalidArgument, {}},
      {"a/f/../../..", StatusCode::kInvalidArgument, {}},
      {"missing/../../b", StatusCode::kNotFound, {}},
      {std::string("a\0b", 3), StatusCode::kInvalidArgument, {}},
      {std::string(256, 'a'), StatusCode::kInvalidArgument, {}},
      {"a/f/x", StatusCode::kNotFound, {}},
      {"l/f", StatusCode::kNotFound, {}},  // through a symlink
      {"/abs", StatusCode::kOk, {"abs"}},
      {"//a///f", StatusCode::kOk, {"f"}},
      {"./a/./", StatusCode::kOk, {"a"}},
      {"/", StatusCode::kOk, {"a", "abs", "l"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("sub_path '" + c.sub_path + "'");
    RestoreOptions options;
    options.sub_path = c.sub_path;
    Result<RestoreReport> r = Restore(id, options);
    EXPECT_TRUE(HasCode(r.status(), c.want));
    if (r.ok()) {
      EXPECT_TRUE(r->refused.empty());
      EXPECT_EQ(ListNames(target_), c.restored);
    } else {
      EXPECT_FALSE(Exists(target_));  // the path is resolved before the target is touched
    }
    EXPECT_FALSE(Exists(parent_ + "/b"));
    EXPECT_FALSE(Exists(parent_ + "/x"));
    ExpectContained();
    ResetTarget();
  }
}

// --force into a target holding symlinks that point outside, named like
// entries of the snapshot: the symlinks are removed and replaced, never
// followed; the outside stays untouched.
TEST_F(RestorerHostileTest, HostileForceDoesNotFollowSymlinksInTarget) {
  const SnapshotId id = Commit(TreeOf({
      Dir("d", TreeOf({File("keep", "pwned")})),
      File("f", "pwned"),
      Dir("s", TreeOf({Dir("inner", TreeOf({File("deep", "pwned")}))})),
      File("w", "pwned"),
      Dir("x", TreeOf({File("y", "pwned")})),
      Symlink("z", "d"),
  }));
  auto populate = [&] {
    MakeDirsOrDie(target_ + "/x");
    MakeDirsOrDie(target_ + "/w");
    MakeDirsOrDie(target_ + "/z");
    ASSERT_EQ(::symlink(canary_.c_str(), (target_ + "/d").c_str()), 0);
    ASSERT_EQ(::symlink((canary_ + "/keep").c_str(), (target_ + "/f").c_str()), 0);
    ASSERT_EQ(::symlink("../canary", (target_ + "/s").c_str()), 0);
    ASSERT_EQ(::symlink((canary_ + "/keep").c_str(), (target_ + "/x/y").c_str()), 0);
  };
  populate();
  {
    SCOPED_TRACE("without --force: refused");
    Result<RestoreReport> r = Restore(id);
    EXPECT_TRUE(HasCode(r.status(), StatusCode::kFailedPrecondition));
    ExpectContained();
  }
  {
    SCOPED_TRACE("with --force: replaced, not followed");
    RestoreOptions options;
    options.force = true;
    Result<RestoreReport> r = Restore(id, options);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const char* dir : {"/d", "/s", "/s/inner", "/x"}) {
      EXPECT_TRUE(S_ISDIR(StatOrDie(target_ + dir).st_mode)) << dir;
    }
    for (const char* file : {"/d/keep", "/f", "/s/inner/deep", "/x/y"}) {
      EXPECT_TRUE(S_ISREG(StatOrDie(target_ + file).st_mode)) << file;
      EXPECT_EQ(ToString(ReadFileOrDie(target_ + file)), "pwned") << file;
    }
    // Directories in the way of a file or symlink are kept and reported.
    EXPECT_TRUE(Contains(r->refused, "w: a directory is in the way"));
    EXPECT_TRUE(Contains(r->refused, "z: a directory is in the way"));
    EXPECT_TRUE(S_ISDIR(StatOrDie(target_ + "/w").st_mode));
    ExpectContained();
  }
  ResetTarget();
  {
    // The target itself is a symlink to the outside.
    ASSERT_EQ(::symlink(canary_.c_str(), target_.c_str()), 0);
    for (const bool force : {false, true}) {
      SCOPED_TRACE(force ? "target is a symlink, --force" : "target is a symlink");
      RestoreOptions options;
      options.force = force;
      Result<RestoreReport> r = Restore(id, options);
      EXPECT_TRUE(HasCode(r.status(), StatusCode::kFailedPrecondition));
      EXPECT_EQ(ReadLink(target_), canary_);
      ExpectContained();
    }
  }
}

// Nesting: restore and verify recurse once per directory level, so a snapshot
// nested tens of thousands of levels deep overflowed the stack (SIGSEGV at
// about 9,000 levels in an optimized build). Both now refuse trees deeper
// than 2,048 directory levels (restorer.cc kMaxDepth) with kDataLoss.
TEST_F(RestorerHostileTest, HostileDeepNestingIsRefusedNotACrash) {
  constexpr int kMaxDepth = 2048;
  // A chain of `depth` directories named "d" with a file at the bottom.
  auto chain = [&](int depth) {
    pb::Tree t = TreeOf({File("bottom", "x")});
    for (int i = 0; i < depth; ++i) t = TreeOf({Dir("d", t)});
    return Commit(t);
  };
  // Paths that deep are longer than PATH_MAX: walk the chain down and back
  // up through directory fds ("..") so that every call takes one name.
  auto remove_chain = [&] {
    int fd = ::open(target_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    int levels = 0;
    for (int child;
         (child = ::openat(fd, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) >= 0;
         ++levels) {
      ::close(fd);
      fd = child;
    }
    ::unlinkat(fd, "bottom", 0);
    for (; levels > 0; --levels) {
      const int up = ::openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      ::close(fd);
      ASSERT_GE(up, 0) << std::strerror(errno);
      fd = up;
      ASSERT_EQ(::unlinkat(fd, "d", AT_REMOVEDIR), 0) << std::strerror(errno);
    }
    ::close(fd);
    ResetTarget();
  };
  const std::map<int, SnapshotId> ids = {{kMaxDepth, chain(kMaxDepth)},
                                         {kMaxDepth + 1, chain(kMaxDepth + 1)},
                                         {20'000, chain(20'000)}};
  // Verify writes nothing: check the limit exactly there.
  for (const auto& [depth, id] : ids) {
    SCOPED_TRACE("verify, depth " + std::to_string(depth));
    Result<VerifyReport> v = VerifySnapshot(*store_, *keyset_, id, 2);
    EXPECT_TRUE(HasCode(v.status(), depth <= kMaxDepth ? StatusCode::kOk : StatusCode::kDataLoss));
  }
  for (const int depth : {kMaxDepth, 20'000}) {
    SCOPED_TRACE("restore, depth " + std::to_string(depth));
    Result<RestoreReport> r = Restore(ids.at(depth));
    if (r.status().code() == StatusCode::kResourceExhausted) {
      // Restore holds one directory fd per level: under a low RLIMIT_NOFILE
      // it runs out of descriptors (EMFILE) first, which is an error too.
    } else if (depth <= kMaxDepth) {
      EXPECT_TRUE(r.ok()) << r.status().ToString();
    } else {
      EXPECT_TRUE(HasCode(r.status(), StatusCode::kDataLoss));
      EXPECT_NE(r.status().message().find("nested more than 2048 levels"), std::string::npos)
          << r.status().ToString();
    }
    ExpectContained();
    remove_chain();
  }
}

// --- through a ChunkSource that is not a LocalStore (a hub) ---

// A restore through the interface writes exactly what a local one writes,
// and a remote verify passes, reading the same chunks; it skips the pack
// checks (it has no packs) and matches every entry of the reference set to a
// chunk the walk read instead.
TEST_F(RestorerHostileTest, ThroughSourceRestoreIsByteIdenticalAndVerifies) {
  const SnapshotId id = CommitPositiveControl();
  Result<RestoreReport> local = Restore(id);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  const std::string local_tree = Fingerprint(target_, /*inodes=*/false);
  ResetTarget();
  via_source_ = true;
  Result<RestoreReport> remote = Restore(id);
  ASSERT_TRUE(remote.ok()) << remote.status().ToString();
  EXPECT_EQ(Fingerprint(target_, /*inodes=*/false), local_tree);
  EXPECT_EQ(StatOrDie(target_ + "/d/f").st_ino, StatOrDie(target_ + "/g").st_ino);
  EXPECT_EQ(remote->files, local->files);
  EXPECT_EQ(remote->directories, local->directories);
  EXPECT_EQ(remote->symlinks, local->symlinks);
  EXPECT_EQ(remote->hardlinks, local->hardlinks);
  EXPECT_EQ(remote->bytes, local->bytes);
  EXPECT_TRUE(remote->refused.empty());
  ExpectContained();

  Result<VerifyReport> lv = VerifyLocal(id);
  ASSERT_TRUE(lv.ok()) << lv.status().ToString();
  Result<VerifyReport> rv = VerifyRemote(id);
  ASSERT_TRUE(rv.ok()) << rv.status().ToString();
  EXPECT_FALSE(lv->remote);
  EXPECT_GT(lv->packs_checked, 0u);
  EXPECT_TRUE(rv->remote);
  EXPECT_EQ(rv->packs_checked, 0u);
  EXPECT_EQ(source_->refs_max_bytes(), kMaxRemoteRefsBytes);
  EXPECT_EQ(rv->refs_checked, lv->refs_checked);
  EXPECT_EQ(rv->refs_checked, refs_.size());
  EXPECT_EQ(rv->chunks_read, lv->chunks_read);
  EXPECT_EQ(rv->bytes_read, lv->bytes_read);
  EXPECT_EQ(rv->files, lv->files);
  EXPECT_EQ(rv->directories, lv->directories);
}

// Restore through the interface refuses hostile names exactly as a local one.
TEST_F(RestorerHostileTest, ThroughSourceHostileNamesAreRejected) {
  via_source_ = true;
  ExpectHostileNamesRejected();
}

// A reference set that lacks a chunk the snapshot uses (a file's data, a
// directory's tree, the root tree) fails a remote verify: a hub would
// collect that chunk as garbage.
TEST_F(RestorerHostileTest, RemoteVerifyRefusesRefsLackingAUsedChunk) {
  enum class Drop { kFileData, kDirectoryTree, kRootTree };
  struct Case {
    const char* what;
    Drop drop;
  };
  const std::vector<Case> cases = {
      {"a file's data chunk", Drop::kFileData},
      {"a directory's tree chunk", Drop::kDirectoryTree},
      {"the root tree chunk", Drop::kRootTree},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ForgetRefs();
    const std::string tag = c.what;  // distinct content per case: no chunk is shared
    const pb::Node file = File("f", "data of " + tag);
    const pb::Node dir = Dir("d", TreeOf({File("g", "more of " + tag)}));
    const pb::Tree top = TreeOf({dir, file});
    const std::string root_bytes = TreeOf({RootNode(top)}).SerializeAsString();
    switch (c.drop) {
      case Drop::kFileData:
        drop_from_refs_.insert(IdOf(file.content(0)));
        break;
      case Drop::kDirectoryTree:
        drop_from_refs_.insert(IdOf(dir.content(0)));
        break;
      case Drop::kRootTree:
        drop_from_refs_.insert(IdOf(Put(root_bytes)));  // the id Commit will store it under
        break;
    }
    const SnapshotId id = CommitRootTreeBytes(root_bytes);
    Result<VerifyReport> v = VerifyRemote(id);
    EXPECT_TRUE(HasCode(v.status(), StatusCode::kDataLoss));
    EXPECT_NE(v.status().message().find("is used by the snapshot but not in its reference set"),
              std::string::npos)
        << v.status().ToString();
  }
}

// A reference set listing a chunk the snapshot does not use fails a remote
// verify: the manifest would sign for more than the snapshot holds.
TEST_F(RestorerHostileTest, RemoteVerifyRefusesRefsWithAnExtraChunk) {
  ForgetRefs();
  const pb::ChunkRef extra = Put("stored, listed, used by nothing");
  const SnapshotId id = Commit(TreeOf({File("f", "data")}));
  Result<VerifyReport> v = VerifyRemote(id);
  EXPECT_TRUE(HasCode(v.status(), StatusCode::kDataLoss));
  EXPECT_NE(v.status().message().find(HexEncode(IdOf(extra)) + " of the reference set is not used"),
            std::string::npos)
      << v.status().ToString();
  // The same snapshot without the extra entry passes.
  ForgetRefs();
  ASSERT_TRUE(VerifyRemote(Commit(TreeOf({File("f", "data")}))).ok());
}

// Bytes the source damages in transit — a data chunk, a directory's tree,
// the root tree, the reference set — fail a remote verify (and a restore)
// with kDataLoss, though the store itself is intact.
TEST_F(RestorerHostileTest, RemoteVerifyRefusesCorruptedBytes) {
  ForgetRefs();
  const pb::Node file = File("f", "some file data");
  const pb::Node dir = Dir("d", TreeOf({File("g", "g data")}));
  const pb::Tree top = TreeOf({dir, file});
  const std::string root_bytes = TreeOf({RootNode(top)}).SerializeAsString();
  const ChunkId root_id = IdOf(Put(root_bytes));
  const SnapshotId id = CommitRootTreeBytes(root_bytes);
  ASSERT_TRUE(VerifyRemote(id).ok());
  struct Case {
    const char* what;
    std::function<void()> damage;
  };
  const std::vector<Case> cases = {
      {"a data chunk", [&] { source_->CorruptChunk(IdOf(file.content(0))); }},
      {"a directory's tree chunk", [&] { source_->CorruptChunk(IdOf(dir.content(0))); }},
      {"the root tree chunk", [&] { source_->CorruptChunk(root_id); }},
      {"the reference set's header", [&] { source_->CorruptRefsAt(9); }},
      {"a reference set entry's size", [&] { source_->CorruptRefsAt(16 + 32); }},
      {"the reference set's checksum", [&] { source_->CorruptRefsAt(16 + 36 * refs_.size()); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    source_->Reset();
    c.damage();
    Result<VerifyReport> v = VerifyRemote(id);
    EXPECT_TRUE(HasCode(v.status(), StatusCode::kDataLoss));
    via_source_ = true;
    Result<RestoreReport> r = Restore(id);
    // Restore does not read the reference set.
    const bool refs_only = std::string(c.what).find("reference set") != std::string::npos;
    EXPECT_TRUE(HasCode(r.status(), refs_only ? StatusCode::kOk : StatusCode::kDataLoss));
    ExpectContained();
    ResetTarget();
    Result<VerifyReport> lv = VerifyLocal(id);
    EXPECT_TRUE(lv.ok()) << lv.status().ToString();  // the store is intact
  }
}

// Errors of the source other than absent or damaged data — here a hub that
// cannot be reached — pass through unchanged, so the caller can retry; an
// unknown snapshot is kNotFound.
TEST_F(RestorerHostileTest, ThroughSourceErrorsPassThrough) {
  const SnapshotId id = Commit(TreeOf({File("f", "data")}));
  via_source_ = true;
  source_->SetUnavailable();
  EXPECT_TRUE(HasCode(VerifyRemote(id).status(), StatusCode::kUnavailable));
  EXPECT_TRUE(HasCode(Restore(id).status(), StatusCode::kUnavailable));
  ExpectContained();
  ResetTarget();
  source_->Reset();
  SnapshotId unknown = id;
  unknown[0] ^= 0xff;
  EXPECT_TRUE(HasCode(VerifyRemote(unknown).status(), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(Restore(unknown).status(), StatusCode::kNotFound));
  EXPECT_FALSE(Exists(target_));
}

}  // namespace
}  // namespace ferry::snapshot
