// Golden samples: every byte format of snapshot/ rebuilt from fixed inputs and
// compared byte for byte with the files in tests/golden/, each golden file
// parsed back by the real decoder, and each documented kind of damage shown to
// be refused with a status rather than a crash. The formats are specified in
// docs/format/; tests/golden/README.md says how each sample is made.
//
// FERRY_UPDATE_GOLDEN=1 makes the rebuild tests write the files instead of
// comparing (docs/format/README.md, "Golden samples"). Without it, any
// difference fails.
#include <gtest/gtest.h>
#include <lz4.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/evp.h"
#include "core/sodium.h"
#include "core/sqlite.h"
#include "snapshot/chunker.h"
#include "snapshot/delta.h"
#include "snapshot/file_cache.h"
#include "snapshot/keyset.h"
#include "snapshot/keyset_format.h"
#include "snapshot/local_store.h"
#include "snapshot/manifest.h"
#include "snapshot/pack.h"
#include "snapshot/pack_format.h"
#include "snapshot/ref_set.h"
#include "snapshot/sealed_chunk.h"
#include "snapshot/sealed_chunk_format.h"
#include "snapshot/tree.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

// ---------------------------------------------------------------------------
// Golden files

std::string GoldenDir() {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src != nullptr && *src != '\0') return std::string(src) + "/tests/golden";
  // Run outside CTest: this file is tests/snapshot/golden_test.cc.
  const std::string here = __FILE__;
  return here.substr(0, here.rfind('/')) + "/../golden";
}

std::string GoldenPath(const std::string& name) { return GoldenDir() + "/" + name; }

bool UpdatingGoldens() {
  const char* v = std::getenv("FERRY_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

// The golden file `name`, or an empty buffer and a test failure.
Bytes ReadGolden(const std::string& name) {
  Result<Bytes> b = Env::Default()->ReadFile(GoldenPath(name), 64u << 20);
  if (!b.ok()) {
    ADD_FAILURE() << "cannot read golden file " << GoldenPath(name) << ": " << b.status().ToString()
                  << " (regenerate with FERRY_UPDATE_GOLDEN=1, see tests/golden/README.md)";
    return {};
  }
  return std::move(*b);
}

std::string DescribeDifference(ByteView expected, ByteView actual) {
  size_t i = 0;
  while (i < expected.size() && i < actual.size() && expected[i] == actual[i]) ++i;
  const size_t from = i >= 8 ? i - 8 : 0;
  auto around = [&](ByteView b) {
    if (from >= b.size()) return std::string("(end)");
    return HexEncode(b.subspan(from, std::min<size_t>(24, b.size() - from)));
  };
  return "golden is " + std::to_string(expected.size()) + " bytes, rebuilt is " +
         std::to_string(actual.size()) + "; first difference at offset " + std::to_string(i) +
         "\n  golden  [" + std::to_string(from) + "..]: " + around(expected) + "\n  rebuilt [" +
         std::to_string(from) + "..]: " + around(actual);
}

// Compares `actual` with the golden file, or writes it when updating.
void ExpectMatchesGolden(const std::string& name, ByteView actual) {
  SCOPED_TRACE("golden file " + name);
  if (UpdatingGoldens()) {
    testing::WriteFileOrDie(GoldenPath(name), actual);
    std::printf("[golden] wrote %s (%zu bytes)\n", GoldenPath(name).c_str(), actual.size());
    return;
  }
  const Bytes expected = ReadGolden(name);
  if (expected.empty()) return;
  EXPECT_TRUE(expected == Bytes(actual.begin(), actual.end()))
      << DescribeDifference(expected, actual)
      << "\nIf the format changed on purpose, bump its version, update docs/format/ and "
         "regenerate (tests/golden/README.md).";
}

// ---------------------------------------------------------------------------
// Fixed inputs (tests/golden/README.md lists them)

Bytes Seq(uint8_t first, size_t n) {
  Bytes b(n);
  std::iota(b.begin(), b.end(), first);
  return b;
}

template <size_t N>
std::array<uint8_t, N> SeqArray(uint8_t first) {
  std::array<uint8_t, N> a;
  std::iota(a.begin(), a.end(), first);
  return a;
}

const Bytes kChunkIdKey = Seq(0x00, 32);          // 000102..1f
const Bytes kAgentSigningSeed = Seq(0x20, 32);    // 202122..3f
const Bytes kDataKeyBytes = Seq(0x40, 32);        // 404142..5f
const auto kNonceA = SeqArray<12>(0x60);          // 606162..6b
const auto kNonceB = SeqArray<12>(0x70);          // 707172..7b
const auto kNonceTree = SeqArray<12>(0x78);       // 78797a..83 (trees, for sealed sizes)
const Bytes kTenantX25519Secret = Seq(0x80, 32);  // 808182..9f
const KeyId kDataKeyId = SeqArray<16>(0xa0);      // a0a1a2..af
const Bytes kKeysetNonce = Seq(0xb0, 24);         // b0b1b2..c7
const Bytes kTenantSigningSeed = Seq(0xd0, 32);   // d0d1d2..ef
const Bytes kKeysetSalt = Seq(0xf0, 16);          // f0f1f2..ff
constexpr char kPassphrase[] = "ferry golden passphrase";
const sodium::Argon2Params kSmallArgon2{.opslimit = 1, .memlimit = 8192};

// Chunk A: 180 bytes that LZ4 shrinks; chunk B: 13 bytes, stored as is.
std::string PlaintextA() {
  std::string s;
  for (int i = 0; i < 4; ++i) s += "The quick brown fox jumps over the lazy dog. ";
  return s;
}
const std::string kPlaintextB = "hello, ferry\n";

// Expected constants derived from the fixed inputs (docs/format/keyset.md).
// X25519 public key of the secret 808182..9f:
constexpr char kTenantPublicKeyHex[] =
    "493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d";
// First 16 bytes of BLAKE2b-256(public key):
constexpr char kKeysetIdHex[] = "e9e4ce8143f5ede7c6beb10c71f0e84b";
// HMAC-SHA-256(000102..1f, "hello"):
constexpr char kChunkIdOfHelloHex[] =
    "53c40272a70c15ca4ee0af4df1f155fd6c41e00ce2307d8987ecd4bb36a7e990";

DataKey FixedDataKey() { return DataKey{kDataKeyId, SecretBytes(kDataKeyBytes)}; }

const evp::HmacSha256& IdHasher() {
  static const evp::HmacSha256 hasher(kChunkIdKey);
  return hasher;
}

ChunkId IdOf(ByteView plaintext) { return IdHasher().Compute(plaintext); }
ChunkId IdOf(std::string_view plaintext) { return IdOf(AsBytes(plaintext)); }

Bytes Seal(ByteView plaintext, const std::array<uint8_t, 12>& nonce, evp::AeadSuite suite,
           bool compress = true) {
  Bytes out;
  SealOptions options;
  options.suite = suite;
  options.compress = compress;
  options.nonce_for_test = &nonce;
  const Status s = SealChunk(IdOf(plaintext), plaintext, FixedDataKey(), out, options);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

Bytes SealedA() { return Seal(AsBytes(PlaintextA()), kNonceA, evp::AeadSuite::kAes256Gcm); }
Bytes SealedB() { return Seal(AsBytes(kPlaintextB), kNonceB, evp::AeadSuite::kChaCha20Poly1305); }

template <typename T>
void ExpectCode(const T& status_or_result, StatusCode code, const std::string& needle) {
  Status s;
  if constexpr (std::is_same_v<T, Status>) {
    s = status_or_result;
  } else {
    s = status_or_result.status();
  }
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos)
      << "message '" << s.message() << "' does not mention '" << needle << "'";
}

// ---------------------------------------------------------------------------
// Reference encoders: each format written out field by field from its spec,
// independently of the code under test.

// docs/format/sealed-chunk.md
Bytes SpecSealedChunk(const ChunkId& id, ByteView plaintext, evp::AeadSuite suite, bool lz4,
                      const std::array<uint8_t, 12>& nonce) {
  Bytes payload(plaintext.begin(), plaintext.end());
  if (lz4) {
    payload.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(plaintext.size()))));
    const int n = LZ4_compress_default(
        reinterpret_cast<const char*>(plaintext.data()), reinterpret_cast<char*>(payload.data()),
        static_cast<int>(plaintext.size()), static_cast<int>(payload.size()));
    payload.resize(static_cast<size_t>(n));
  }
  Bytes out;
  PutU8(out, 1);                            // version
  PutU8(out, static_cast<uint8_t>(suite));  // suite
  PutU8(out, lz4 ? 0x01 : 0x00);            // flags
  PutU8(out, 0);                            // reserved
  PutBytes(out, kDataKeyId);                // key id
  PutU32(out, static_cast<uint32_t>(plaintext.size()));
  PutBytes(out, nonce);
  Bytes aad(id.begin(), id.end());
  PutBytes(aad, out);
  EXPECT_TRUE(evp::AeadSeal(suite, kDataKeyBytes, nonce, aad, payload, out).ok());
  return out;
}

// docs/format/keyset.md
Bytes SpecTenantKeyset() {
  const SecretBytes secret(kTenantX25519Secret);
  const sodium::PublicKey pk = sodium::X25519PublicKey(secret);
  Bytes out = ToBytes("FKEY");
  PutU8(out, 1);  // version
  PutU8(out, 1);  // kind: tenant
  PutU16(out, 0);
  PutBytes(out, pk);
  PutBytes(out, kChunkIdKey);
  PutBytes(out, kTenantSigningSeed);
  PutU64(out, kSmallArgon2.opslimit);
  PutU64(out, kSmallArgon2.memlimit);
  PutBytes(out, kKeysetSalt);
  PutBytes(out, kKeysetNonce);
  Result<SecretBytes> wrapping =
      sodium::DeriveKeyFromPassphrase(kPassphrase, kKeysetSalt, kSmallArgon2);
  EXPECT_TRUE(wrapping.ok());
  const Bytes aad = out;  // bytes 0..160: everything before the sealed key
  PutBytes(out, sodium::XChaChaSeal(*wrapping, kKeysetNonce, aad, secret.view()));
  PutBytes(out, sodium::Blake2b256(out));
  return out;
}

Bytes SpecAgentKeyFile(ByteView tenant_public_key, ByteView signing_seed) {
  Bytes out = ToBytes("FKEY");
  PutU8(out, 1);  // version
  PutU8(out, 2);  // kind: agent
  PutU16(out, 0);
  PutBytes(out, tenant_public_key);
  PutBytes(out, kChunkIdKey);
  PutBytes(out, signing_seed);
  PutBytes(out, sodium::Blake2b256(out));
  return out;
}

// Rewrites the trailing BLAKE2b-256 of a keyset, refs object or file cache
// after a deliberate edit, so that a test reaches the checks behind it.
void RechecksumBlake2bTail(Bytes& b) {
  const auto sum = sodium::Blake2b256(ByteView(b).first(b.size() - 32));
  std::copy(sum.begin(), sum.end(), b.end() - 32);
}

// docs/format/refs.md
Bytes SpecRefs(std::vector<RefEntry> entries) {
  std::sort(entries.begin(), entries.end());
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const RefEntry& a, const RefEntry& b) { return a.id == b.id; }),
                entries.end());
  Bytes out = ToBytes("FREF");
  PutU8(out, 1);
  PutU8(out, 0);
  PutU16(out, 0);
  PutU64(out, entries.size());
  for (const RefEntry& e : entries) {
    PutBytes(out, e.id);
    PutU32(out, e.sealed_size);
  }
  PutBytes(out, sodium::Blake2b256(out));
  return out;
}

// docs/format/manifest.md
Bytes SpecEnvelope(ByteView body, ByteView seed) {
  Result<sodium::SigningKeyPair> key = sodium::SigningKeyPairFromSeed(seed);
  EXPECT_TRUE(key.ok());
  Bytes out = ToBytes("FMAN");
  PutU8(out, 1);  // version
  PutU8(out, 1);  // signature algorithm: Ed25519
  PutU16(out, 0);
  PutU32(out, static_cast<uint32_t>(body.size()));
  PutBytes(out, body);
  PutBytes(out, key->public_key);
  Bytes message = ToBytes(std::string_view("ferry manifest signature v1\0", 28));
  PutBytes(message, out);
  PutBytes(out, sodium::Sign(*key, message));
  return out;
}

// docs/format/pack.md: SHA-256 of header || index || footer[0..16).
void RechecksumPack(Bytes& pack) {
  const uint64_t index_offset = LoadU64(pack.data() + pack.size() - pack_format::kFooterSize);
  const uint32_t index_len = LoadU32(pack.data() + pack.size() - pack_format::kFooterSize + 8);
  evp::Sha256Hasher h;
  h.Update(ByteView(pack).first(8));
  h.Update(ByteView(pack).subspan(static_cast<size_t>(index_offset), index_len));
  h.Update(ByteView(pack).subspan(pack.size() - pack_format::kFooterSize, 16));
  const auto sum = h.Finish();
  std::copy(sum.begin(), sum.end(), pack.end() - 40);
}

// ---------------------------------------------------------------------------
// The golden objects, built from the fixed inputs.

std::unique_ptr<Keyset> GoldenTenantKeyset(bool unlock) {
  const Bytes bytes = ReadGolden("tenant-keyset.bin");
  Result<std::unique_ptr<Keyset>> ks = Keyset::Parse(bytes, "tenant-keyset.bin");
  EXPECT_TRUE(ks.ok()) << ks.status().ToString();
  if (!ks.ok()) return nullptr;
  if (unlock) {
    const Status s = (*ks)->Unlock(kPassphrase);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return std::move(*ks);
}

// The wrapped form of the fixed data key (a sealed box: random, so it is a
// golden input rather than a rebuilt output). In update mode a new one is
// made only when the file is missing or no longer opens to the fixed key.
Bytes GoldenWrappedKey() {
  Bytes plain(kDataKeyId.begin(), kDataKeyId.end());
  PutBytes(plain, kDataKeyBytes);
  const sodium::PublicKey pk = sodium::X25519PublicKey(SecretBytes(kTenantX25519Secret));
  if (UpdatingGoldens()) {
    Result<Bytes> existing = Env::Default()->ReadFile(GoldenPath("data-key.wrapped"), 4096);
    if (existing.ok()) {
      Result<SecretBytes> opened =
          sodium::OpenSealed(pk, SecretBytes(kTenantX25519Secret), *existing);
      if (opened.ok() && Bytes(opened->view().begin(), opened->view().end()) == plain) {
        return std::move(*existing);
      }
    }
    Bytes wrapped = sodium::SealToPublicKey(pk, plain);
    testing::WriteFileOrDie(GoldenPath("data-key.wrapped"), wrapped);
    std::printf("[golden] wrote %s (new sealed box)\n", GoldenPath("data-key.wrapped").c_str());
    return wrapped;
  }
  return ReadGolden("data-key.wrapped");
}

pb::ChunkRef Ref(ByteView plaintext) {
  pb::ChunkRef r;
  const ChunkId id = IdOf(plaintext);
  r.set_id(id.data(), id.size());
  r.set_size(static_cast<uint32_t>(plaintext.size()));
  return r;
}

// tree.bin: one directory listing with every node type and optional field.
std::vector<pb::Node> GoldenTreeNodes() {
  std::vector<pb::Node> nodes;
  auto base = [](const std::string& name, pb::NodeType type, uint32_t mode) {
    pb::Node n;
    n.set_name(name);
    n.set_type(type);
    n.set_mode(mode);
    n.set_uid(1000);
    n.set_gid(1000);
    n.set_mtime_ns(1700000000123456789);
    return n;
  };
  pb::Node docs = base("docs", pb::NODE_TYPE_DIRECTORY, 0755);
  *docs.add_content() = Ref({});  // an empty directory: one empty chunk
  nodes.push_back(docs);

  pb::Node hello = base("hello.txt", pb::NODE_TYPE_FILE, 0644);
  hello.set_size(kPlaintextB.size());
  *hello.add_content() = Ref(AsBytes(kPlaintextB));
  pb::Xattr* x = hello.add_xattrs();
  x->set_name("user.comment");
  x->set_value("golden");
  nodes.push_back(hello);

  pb::Node link = base("link", pb::NODE_TYPE_SYMLINK, 0777);
  link.set_symlink_target("hello.txt");
  nodes.push_back(link);

  for (const char* name : {"quick.txt", "quick2.txt"}) {
    pb::Node quick = base(name, pb::NODE_TYPE_FILE, 0600);
    quick.set_size(PlaintextA().size());
    *quick.add_content() = Ref(AsBytes(PlaintextA()));
    quick.set_hardlink_id(1);
    nodes.push_back(quick);
  }

  pb::Node sparse = base("sparse.img", pb::NODE_TYPE_FILE, 0644);
  sparse.set_size(1 << 20);
  *sparse.add_content() = Ref(AsBytes(kPlaintextB));
  pb::Extent* e = sparse.add_extents();
  e->set_offset(4096);
  e->set_length(kPlaintextB.size());
  sparse.set_inconsistent(true);
  nodes.push_back(sparse);
  return nodes;
}

Bytes GoldenTreeBytes() {
  Bytes out;
  for (const pb::Node& n : GoldenTreeNodes()) TreeWriter::AppendNode(n, out);
  return out;
}

// root-tree.bin: the dataset root, one unnamed directory node.
Bytes GoldenRootTreeBytes() {
  pb::Node root;
  root.set_type(pb::NODE_TYPE_DIRECTORY);
  root.set_mode(0755);
  root.set_mtime_ns(1700000000000000000);
  *root.add_content() = Ref(GoldenTreeBytes());
  Bytes out;
  TreeWriter::AppendNode(root, out);
  return out;
}

uint32_t SealedSize(ByteView plaintext) {
  return static_cast<uint32_t>(Seal(plaintext, kNonceTree, evp::AeadSuite::kAes256Gcm).size());
}

// Every chunk the golden snapshot references, with sealed sizes, in a
// scrambled order with one duplicate.
std::vector<RefEntry> GoldenRefEntries() {
  const Bytes tree = GoldenTreeBytes();
  const Bytes root = GoldenRootTreeBytes();
  const uint32_t sealed_a = static_cast<uint32_t>(SealedA().size());
  const uint32_t sealed_b = static_cast<uint32_t>(SealedB().size());
  return {
      {IdOf(root), SealedSize(root)},          {IdOf(AsBytes(kPlaintextB)), sealed_b},
      {IdOf(tree), SealedSize(tree)},          {IdOf(ByteView()), SealedSize(ByteView())},
      {IdOf(AsBytes(PlaintextA())), sealed_a}, {IdOf(AsBytes(kPlaintextB)), sealed_b},
  };
}

Bytes BuildRefs(const std::vector<RefEntry>& entries, RefSetSummaryInfo* summary = nullptr) {
  testing::TempDir dir;
  RefSetBuilder builder(*Env::Default(), dir.path());
  for (const RefEntry& e : entries) EXPECT_TRUE(builder.Add(e.id, e.sealed_size).ok());
  Result<RefSetSummaryInfo> s = builder.Finish(dir.Sub("golden.refs"));
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (summary != nullptr && s.ok()) *summary = *s;
  return testing::ReadFileOrDie(dir.Sub("golden.refs"));
}

KeysetId GoldenKeysetId() {
  const sodium::PublicKey pk = sodium::X25519PublicKey(SecretBytes(kTenantX25519Secret));
  const auto digest = sodium::Blake2b256(pk);
  KeysetId id;
  std::copy_n(digest.begin(), 16, id.begin());
  return id;
}

pb::Manifest GoldenManifestBody() {
  pb::Manifest m;
  m.set_format_version(1);
  m.set_created_unix_ns(1700000000123456789);
  const Bytes parent(32, 0x11);
  m.set_parent(parent.data(), parent.size());
  (*m.mutable_labels())["purpose"] = "golden";
  pb::Dataset* ds = m.add_datasets();
  ds->set_name("home");
  ds->set_kind(pb::DATASET_KIND_VOLUME);
  *ds->add_root() = Ref(GoldenRootTreeBytes());
  pb::DatasetStats* st = ds->mutable_stats();
  st->set_files(4);
  st->set_directories(2);
  st->set_symlinks(1);
  st->set_bytes(kPlaintextB.size() + 2 * PlaintextA().size() + (1 << 20));
  st->set_inconsistent(1);
  st->set_skipped(0);
  const KeysetId kid = GoldenKeysetId();
  m.set_keyset_id(kid.data(), kid.size());
  RefSetSummaryInfo refs;
  BuildRefs(GoldenRefEntries(), &refs);
  pb::RefSetSummary* rs = m.mutable_refs();
  rs->set_count(refs.count);
  rs->set_sealed_bytes(refs.sealed_bytes);
  rs->set_digest(refs.digest.data(), refs.digest.size());
  m.set_hostname("golden-host");
  m.set_ferry_version("0.0.0-golden");
  return m;
}

FileCacheIdentity GoldenCacheIdentity() { return FileCacheIdentity{GoldenKeysetId(), {}}; }

std::vector<CachedFile> GoldenCacheRecords() {
  const uint32_t sealed_a = static_cast<uint32_t>(SealedA().size());
  const uint32_t sealed_b = static_cast<uint32_t>(SealedB().size());
  const uint32_t size_a = static_cast<uint32_t>(PlaintextA().size());
  const uint32_t size_b = static_cast<uint32_t>(kPlaintextB.size());
  std::vector<CachedFile> files;
  CachedFile notes;
  notes.key = std::string("docs\0notes.txt", 14);
  notes.ino = 1001;
  notes.size = size_a;
  notes.mtime_ns = 1700000000123456789;
  notes.ctime_ns = 1700000000223456789;
  notes.chunks = {{IdOf(AsBytes(PlaintextA())), size_a, sealed_a}};
  files.push_back(notes);
  CachedFile hello;
  hello.key = "hello.txt";
  hello.ino = 1002;
  hello.size = size_b;
  hello.mtime_ns = 1700000000123456789;
  hello.ctime_ns = 1700000000323456789;
  hello.chunks = {{IdOf(AsBytes(kPlaintextB)), size_b, sealed_b}};
  hello.xattrs = {{"user.comment", "golden"}, {"user.empty", ""}};
  // Delta block: flags (0: stored whole) then the chunk's delta signature.
  hello.delta = {0x00};
  const Bytes sig = delta::ComputeSignature(delta::BlockHasher(IdHasher()), AsBytes(kPlaintextB));
  hello.delta.insert(hello.delta.end(), sig.begin(), sig.end());
  files.push_back(hello);
  CachedFile sparse;
  sparse.key = "sparse.img";
  sparse.ino = 1003;
  sparse.size = 1 << 20;
  sparse.mtime_ns = 1700000000123456789;
  sparse.ctime_ns = 1700000000423456789;
  sparse.chunks = {{IdOf(AsBytes(kPlaintextB)), size_b, sealed_b}};
  sparse.extents = {{4096, size_b}};
  files.push_back(sparse);
  return files;
}

Bytes BuildFileCache() {
  testing::TempDir dir;
  const std::string path = dir.Sub("files.cache");
  Result<std::unique_ptr<FileCacheWriter>> w =
      FileCacheWriter::Create(*Env::Default(), path, GoldenCacheIdentity());
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  if (!w.ok()) return {};
  for (const CachedFile& f : GoldenCacheRecords()) EXPECT_TRUE((*w)->Add(f).ok());
  EXPECT_TRUE((*w)->Commit().ok());
  return testing::ReadFileOrDie(path);
}

Bytes BuildPack(PackContents* contents = nullptr) {
  const Bytes wrapped = GoldenWrappedKey();
  testing::TempDir dir;
  const std::string path = dir.Sub("golden.pack");
  Result<std::unique_ptr<PackWriter>> w = PackWriter::Create(*Env::Default(), path);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  if (!w.ok()) return {};
  const Bytes a = SealedA();
  const Bytes b = SealedB();
  EXPECT_TRUE((*w)->Add(IdOf(AsBytes(PlaintextA())), a, evp::Sha256(a), kDataKeyId, wrapped).ok());
  EXPECT_TRUE((*w)->Add(IdOf(AsBytes(kPlaintextB)), b, evp::Sha256(b), kDataKeyId, wrapped).ok());
  Result<PackContents> c = (*w)->Finish();
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (contents != nullptr && c.ok()) *contents = *c;
  return testing::ReadFileOrDie(path);
}

// Applies each damage case to `golden` and checks `decode` refuses it.
struct Damage {
  std::string name;
  std::function<void(Bytes&)> mutate;
  StatusCode code;
  std::string needle;  // part of the expected message
};

void ExpectAllRejected(const Bytes& golden, const std::vector<Damage>& cases,
                       const std::function<Status(const Bytes&)>& decode) {
  ASSERT_FALSE(golden.empty());
  ASSERT_TRUE(decode(golden).ok()) << "the undamaged golden sample must decode";
  for (const Damage& d : cases) {
    SCOPED_TRACE(d.name);
    Bytes b = golden;
    d.mutate(b);
    ASSERT_TRUE(b != golden) << "the case did not change anything";
    ExpectCode(decode(b), d.code, d.needle);
  }
}

auto SetByte(size_t offset, uint8_t value) {
  return [=](Bytes& b) { b[offset] = value; };
}
auto FlipByte(size_t offset) {
  return [=](Bytes& b) { b[offset] ^= 0x01; };
}
auto FlipFromEnd(size_t back) {
  return [=](Bytes& b) { b[b.size() - back] ^= 0x01; };
}
auto SetU32(size_t offset, uint32_t value) {
  return [=](Bytes& b) { StoreU32(b.data() + offset, value); };
}
auto Truncate(size_t size) {
  return [=](Bytes& b) { b.resize(size); };
}
auto DropLast(size_t n) {
  return [=](Bytes& b) { b.resize(b.size() - n); };
}
auto AppendByte() {
  return [](Bytes& b) { b.push_back(0); };
}
template <typename F>
auto ThenRechecksum(F f) {
  return [=](Bytes& b) {
    f(b);
    RechecksumBlake2bTail(b);
  };
}

// ---------------------------------------------------------------------------
// Sealed chunks (docs/format/sealed-chunk.md)

TEST(GoldenSealedChunk, RebuildsByteForByte) {
  const Bytes a = SealedA();
  const Bytes b = SealedB();
  ExpectMatchesGolden("sealed-chunk-aes256gcm-lz4.bin", a);
  ExpectMatchesGolden("sealed-chunk-chacha20poly1305.bin", b);
  // The spec's field-by-field encoding gives the same bytes.
  EXPECT_EQ(a, SpecSealedChunk(IdOf(AsBytes(PlaintextA())), AsBytes(PlaintextA()),
                               evp::AeadSuite::kAes256Gcm, true, kNonceA));
  EXPECT_EQ(b, SpecSealedChunk(IdOf(AsBytes(kPlaintextB)), AsBytes(kPlaintextB),
                               evp::AeadSuite::kChaCha20Poly1305, false, kNonceB));
}

TEST(GoldenSealedChunk, DecodesToTheFixedInputs) {
  struct Sample {
    std::string file;
    std::string plaintext;
    evp::AeadSuite suite;
    uint8_t flags;
    std::array<uint8_t, 12> nonce;
  };
  const std::vector<Sample> samples = {
      {"sealed-chunk-aes256gcm-lz4.bin", PlaintextA(), evp::AeadSuite::kAes256Gcm, 0x01, kNonceA},
      {"sealed-chunk-chacha20poly1305.bin", kPlaintextB, evp::AeadSuite::kChaCha20Poly1305, 0x00,
       kNonceB},
  };
  for (const Sample& s : samples) {
    SCOPED_TRACE(s.file);
    const Bytes sealed = ReadGolden(s.file);
    Result<SealedChunkHeader> h = ParseSealedChunkHeader(sealed);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_EQ(h->version, 1);
    EXPECT_EQ(h->suite, s.suite);
    EXPECT_EQ(h->flags, s.flags);
    EXPECT_EQ(h->key_id, kDataKeyId);
    EXPECT_EQ(h->plain_len, s.plaintext.size());
    EXPECT_EQ(h->nonce, s.nonce);
    Bytes plain;
    const Status st =
        OpenChunk(IdOf(s.plaintext), sealed, SecretBytes(kDataKeyBytes), IdHasher(), plain);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(ToString(plain), s.plaintext);
  }
  // The sizes the doc quotes: 36-byte header, payload, 16-byte tag.
  EXPECT_EQ(ReadGolden("sealed-chunk-chacha20poly1305.bin").size(), 36 + 13 + 16);
  EXPECT_LT(ReadGolden("sealed-chunk-aes256gcm-lz4.bin").size(), 36 + 180 + 16);
}

TEST(GoldenSealedChunk, DamageIsRejected) {
  namespace f = sealed_chunk_format;
  const SecretBytes key(kDataKeyBytes);
  for (const bool compressed : {true, false}) {
    const std::string file =
        compressed ? "sealed-chunk-aes256gcm-lz4.bin" : "sealed-chunk-chacha20poly1305.bin";
    const std::string plaintext = compressed ? PlaintextA() : kPlaintextB;
    SCOPED_TRACE(file);
    const ChunkId id = IdOf(plaintext);
    const Bytes golden = ReadGolden(file);
    ASSERT_FALSE(golden.empty());
    const uint32_t plain_len = static_cast<uint32_t>(plaintext.size());
    const uint32_t payload_len = static_cast<uint32_t>(golden.size() - f::kOverhead);
    std::vector<Damage> cases = {
        {"empty", Truncate(0), StatusCode::kDataLoss, "shorter than the 52-byte minimum"},
        {"shorter than header and tag", Truncate(51), StatusCode::kDataLoss, "52-byte minimum"},
        // A compressed payload has no exact expected length: a short or long
        // one passes the header checks and fails the tag.
        {"last byte missing", DropLast(1), StatusCode::kDataLoss,
         compressed ? "chunk" : "differs from plaintext length"},
        {"one byte appended", AppendByte(), StatusCode::kDataLoss,
         compressed ? "chunk" : "differs from plaintext length"},
        {"version 0", SetByte(f::kOffVersion, 0), StatusCode::kDataLoss, "unknown version 0"},
        {"version 2", SetByte(f::kOffVersion, 2), StatusCode::kDataLoss, "unknown version 2"},
        {"suite 0", SetByte(f::kOffSuite, 0), StatusCode::kDataLoss, "unknown cipher suite 0"},
        {"suite 3", SetByte(f::kOffSuite, 3), StatusCode::kDataLoss, "unknown cipher suite 3"},
        {"reserved flag bit 2", [&](Bytes& b) { b[f::kOffFlags] |= 0x04; }, StatusCode::kDataLoss,
         "reserved flag bits"},
        // The first ciphertext byte is then read as a base count: refused by
        // the count check, the length check or the tag.
        {"delta flag on a whole chunk", [&](Bytes& b) { b[f::kOffFlags] |= f::kFlagDelta; },
         StatusCode::kDataLoss, "chunk"},
        {"reserved flag bit 7", [&](Bytes& b) { b[f::kOffFlags] |= 0x80; }, StatusCode::kDataLoss,
         "reserved flag bits"},
        {"reserved byte", SetByte(f::kOffReserved, 1), StatusCode::kDataLoss, "reserved"},
        {"plain_len over 16 MiB", SetU32(f::kOffPlainLen, kMaxChunkSize + 1), StatusCode::kDataLoss,
         "over the limit"},
        {"plain_len too large by one", SetU32(f::kOffPlainLen, plain_len + 1),
         StatusCode::kDataLoss, compressed ? "chunk" : "differs from plaintext length"},
        {"key id damaged (bound by the tag)", FlipByte(f::kOffKeyId), StatusCode::kDataLoss,
         "chunk"},
        {"nonce damaged", FlipByte(f::kOffNonce + 11), StatusCode::kDataLoss, "chunk"},
        {"ciphertext damaged", FlipByte(f::kHeaderSize), StatusCode::kDataLoss, "chunk"},
        {"tag damaged", FlipFromEnd(1), StatusCode::kDataLoss, "chunk"},
        {"suite swapped (other AEAD)", SetByte(f::kOffSuite, compressed ? 2 : 1),
         StatusCode::kDataLoss, "chunk"},
    };
    if (compressed) {
      cases.push_back({"LZ4 flag cleared", SetByte(f::kOffFlags, 0), StatusCode::kDataLoss,
                       "differs from plaintext length"});
      cases.push_back({"plain_len not above the compressed length",
                       SetU32(f::kOffPlainLen, payload_len), StatusCode::kDataLoss,
                       "inconsistent with plaintext length"});
    } else {
      cases.push_back({"LZ4 flag set on a stored payload", SetByte(f::kOffFlags, 1),
                       StatusCode::kDataLoss, "inconsistent with plaintext length"});
    }
    ExpectAllRejected(golden, cases, [&](const Bytes& b) {
      Bytes plain;
      return OpenChunk(id, b, key, IdHasher(), plain);
    });
    // The chunk id is associated data: the right bytes under another id fail.
    Bytes plain;
    ExpectCode(OpenChunk(IdOf("another"), golden, key, IdHasher(), plain), StatusCode::kDataLoss,
               "chunk");
    // A wrong data key fails the tag too.
    ExpectCode(OpenChunk(id, golden, SecretBytes(Seq(0x41, 32)), IdHasher(), plain),
               StatusCode::kDataLoss, "chunk");
  }
  // Content that authenticates but does not hash to its id (a writer bug or a
  // key holder's forgery) is caught after decryption.
  Bytes forged;
  const std::array<uint8_t, 12> nonce = kNonceB;
  SealOptions options;
  options.nonce_for_test = &nonce;
  ASSERT_TRUE(
      SealChunk(IdOf("not hello"), AsBytes(kPlaintextB), FixedDataKey(), forged, options).ok());
  Bytes plain;
  ExpectCode(OpenChunk(IdOf("not hello"), forged, key, IdHasher(), plain), StatusCode::kDataLoss,
             "content does not match its id");
  // The writer refuses what a reader would refuse.
  Bytes out;
  ExpectCode(SealChunk(IdOf(""), Bytes(kMaxChunkSize + 1), FixedDataKey(), out),
             StatusCode::kInvalidArgument, "exceeds the limit");
}

// ---------------------------------------------------------------------------
// Keysets (docs/format/keyset.md)

TEST(GoldenKeyset, RebuildsByteForByte) {
  const Bytes tenant = SpecTenantKeyset();
  ASSERT_EQ(tenant.size(), keyset_format::kTenantFileSize);
  ExpectMatchesGolden("tenant-keyset.bin", tenant);
  const sodium::PublicKey pk = sodium::X25519PublicKey(SecretBytes(kTenantX25519Secret));
  const Bytes agent = SpecAgentKeyFile(pk, kAgentSigningSeed);
  ASSERT_EQ(agent.size(), keyset_format::kAgentFileSize);
  ExpectMatchesGolden("agent-key.bin", agent);
}

TEST(GoldenKeyset, TenantKeysetUnlocksToTheFixedKeys) {
  std::unique_ptr<Keyset> ks = GoldenTenantKeyset(/*unlock=*/false);
  ASSERT_NE(ks, nullptr);
  EXPECT_EQ(ks->kind(), Keyset::Kind::kTenant);
  EXPECT_FALSE(ks->unlocked());
  EXPECT_EQ(HexEncode(ks->tenant_public_key()), kTenantPublicKeyHex);
  EXPECT_EQ(HexEncode(ks->id()), kKeysetIdHex);
  EXPECT_EQ(ks->id(), GoldenKeysetId());
  EXPECT_EQ(HexEncode(ks->ChunkIdOf(AsBytes("hello"))), kChunkIdOfHelloHex);
  EXPECT_EQ(ks->gear_table(), GearTableFromKey(kChunkIdKey));
  Result<sodium::SigningKeyPair> signing = sodium::SigningKeyPairFromSeed(kTenantSigningSeed);
  ASSERT_TRUE(signing.ok());
  EXPECT_EQ(ks->signing_key().public_key, signing->public_key);

  ExpectCode(ks->Unlock("wrong passphrase"), StatusCode::kPermissionDenied, "wrong passphrase");
  ExpectCode(ks->UnwrapDataKey(kDataKeyId, GoldenWrappedKey()), StatusCode::kFailedPrecondition,
             "locked");
  ASSERT_TRUE(ks->Unlock(kPassphrase).ok());
  EXPECT_TRUE(ks->unlocked());
  // The wrapped data key of the golden pack opens to the fixed key.
  Result<SecretBytes> key = ks->UnwrapDataKey(kDataKeyId, GoldenWrappedKey());
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(Bytes(key->view().begin(), key->view().end()), kDataKeyBytes);
}

TEST(GoldenKeyset, AgentKeyFileDecodes) {
  const Bytes bytes = ReadGolden("agent-key.bin");
  Result<std::unique_ptr<Keyset>> ks = Keyset::Parse(bytes, "agent-key.bin");
  ASSERT_TRUE(ks.ok()) << ks.status().ToString();
  EXPECT_EQ((*ks)->kind(), Keyset::Kind::kAgent);
  EXPECT_EQ(HexEncode((*ks)->tenant_public_key()), kTenantPublicKeyHex);
  EXPECT_EQ(HexEncode((*ks)->id()), kKeysetIdHex);
  EXPECT_EQ(HexEncode((*ks)->ChunkIdOf(AsBytes("hello"))), kChunkIdOfHelloHex);
  Result<sodium::SigningKeyPair> signing = sodium::SigningKeyPairFromSeed(kAgentSigningSeed);
  ASSERT_TRUE(signing.ok());
  EXPECT_EQ((*ks)->signing_key().public_key, signing->public_key);
  ExpectCode((*ks)->Unlock(kPassphrase), StatusCode::kFailedPrecondition, "agent key file");
  ExpectCode((*ks)->UnwrapDataKey(kDataKeyId, GoldenWrappedKey()), StatusCode::kFailedPrecondition,
             "cannot decrypt");
}

// SerializeTenant / SerializeAgent draw a salt, a nonce and an agent signing
// key at random; everything else is pinned by re-encoding their output with
// the spec encoder using those random fields.
TEST(GoldenKeyset, SerializersFollowTheSpec) {
  namespace kf = keyset_format;
  std::unique_ptr<Keyset> ks = GoldenTenantKeyset(/*unlock=*/true);
  ASSERT_NE(ks, nullptr);
  Result<Bytes> tenant = ks->SerializeTenant(kPassphrase, kSmallArgon2);
  ASSERT_TRUE(tenant.ok()) << tenant.status().ToString();
  ASSERT_EQ(tenant->size(), kf::kTenantFileSize);
  const Bytes golden = ReadGolden("tenant-keyset.bin");
  ASSERT_EQ(golden.size(), kf::kTenantFileSize);
  // Bytes 0..120 (header, keys, Argon2 parameters) are the golden ones.
  EXPECT_EQ(HexEncode(ByteView(*tenant).first(kf::kOffSalt)),
            HexEncode(ByteView(golden).first(kf::kOffSalt)));
  // With the golden salt and nonce, the rest would be too: reseal by hand.
  const ByteView salt = ByteView(*tenant).subspan(kf::kOffSalt, 16);
  const ByteView nonce = ByteView(*tenant).subspan(kf::kOffNonce, 24);
  Result<SecretBytes> wrapping = sodium::DeriveKeyFromPassphrase(kPassphrase, salt, kSmallArgon2);
  ASSERT_TRUE(wrapping.ok());
  Bytes expected(tenant->begin(), tenant->begin() + kf::kOffSealedPrivateKey);
  PutBytes(expected,
           sodium::XChaChaSeal(*wrapping, nonce, ByteView(expected), kTenantX25519Secret));
  PutBytes(expected, sodium::Blake2b256(expected));
  EXPECT_EQ(HexEncode(*tenant), HexEncode(expected));

  const Bytes agent = ks->SerializeAgent();
  ASSERT_EQ(agent.size(), kf::kAgentFileSize);
  EXPECT_EQ(HexEncode(agent),
            HexEncode(SpecAgentKeyFile(ks->tenant_public_key(),
                                       ByteView(agent).subspan(kf::kOffSigningSeed, 32))));
  // Every agent file gets its own signing key.
  EXPECT_NE(HexEncode(agent), HexEncode(ks->SerializeAgent()));
}

TEST(GoldenKeyset, GeneratedKeysetsRoundTrip) {
  std::unique_ptr<Keyset> ks = Keyset::Generate();
  Result<Bytes> bytes = ks->SerializeTenant("pw", kSmallArgon2);
  ASSERT_TRUE(bytes.ok());
  Result<std::unique_ptr<Keyset>> back = Keyset::Parse(*bytes, "generated");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE((*back)->Unlock("pw").ok());
  EXPECT_EQ((*back)->id(), ks->id());
  EXPECT_EQ((*back)->ChunkIdOf(AsBytes("hello")), ks->ChunkIdOf(AsBytes("hello")));
  // A data key made by MakeDataKey is a sealed box of key id || key.
  const Keyset::NewDataKey dk = ks->MakeDataKey();
  EXPECT_EQ(dk.wrapped.size(), kWrappedDataKeySize);
  EXPECT_EQ(dk.key.key.size(), 32u);
  Result<SecretBytes> unwrapped = (*back)->UnwrapDataKey(dk.key.id, dk.wrapped);
  ASSERT_TRUE(unwrapped.ok());
  EXPECT_EQ(HexEncode(unwrapped->view()), HexEncode(dk.key.key.view()));
}

TEST(GoldenKeyset, DamageIsRejected) {
  namespace kf = keyset_format;
  const Bytes tenant = ReadGolden("tenant-keyset.bin");
  const std::vector<Damage> parse_cases = {
      {"empty", Truncate(0), StatusCode::kInvalidArgument, "bad magic"},
      {"shorter than magic and version", Truncate(7), StatusCode::kInvalidArgument, "bad magic"},
      {"wrong magic", SetByte(0, 'X'), StatusCode::kInvalidArgument, "not a Ferry keyset"},
      {"version 0", SetByte(kf::kOffVersion, 0), StatusCode::kInvalidArgument,
       "unsupported keyset version 0"},
      {"version 2", SetByte(kf::kOffVersion, 2), StatusCode::kInvalidArgument,
       "unsupported keyset version 2"},
      {"kind 0", SetByte(kf::kOffKind, 0), StatusCode::kInvalidArgument, "unknown keyset kind 0"},
      {"kind 3", SetByte(kf::kOffKind, 3), StatusCode::kInvalidArgument, "unknown keyset kind 3"},
      {"kind says agent (size lies)", SetByte(kf::kOffKind, 2), StatusCode::kDataLoss,
       "expected 136"},
      {"truncated", DropLast(1), StatusCode::kDataLoss, "expected 240"},
      {"truncated to the common part", Truncate(kf::kCommonSize), StatusCode::kDataLoss,
       "expected 240"},
      {"one byte appended", AppendByte(), StatusCode::kDataLoss, "expected 240"},
      {"checksum damaged", FlipFromEnd(1), StatusCode::kDataLoss, "checksum mismatch"},
      {"chunk-id key damaged", FlipByte(kf::kOffChunkIdKey), StatusCode::kDataLoss,
       "checksum mismatch"},
      {"reserved bytes set", SetByte(kf::kOffReserved, 1), StatusCode::kDataLoss,
       "checksum mismatch"},
      {"reserved bytes set, checksum fixed", ThenRechecksum(SetByte(kf::kOffReserved + 1, 0x80)),
       StatusCode::kDataLoss, "reserved keyset bytes"},
      {"opslimit 0", ThenRechecksum([](Bytes& b) { StoreU64(b.data() + kf::kOffOpsLimit, 0); }),
       StatusCode::kDataLoss, "Argon2id parameters out of range"},
      {"opslimit 65", ThenRechecksum([](Bytes& b) { StoreU64(b.data() + kf::kOffOpsLimit, 65); }),
       StatusCode::kDataLoss, "Argon2id parameters out of range"},
      {"memlimit 8191",
       ThenRechecksum([](Bytes& b) { StoreU64(b.data() + kf::kOffMemLimit, 8191); }),
       StatusCode::kDataLoss, "Argon2id parameters out of range"},
      {"memlimit 4 GiB + 1",
       ThenRechecksum([](Bytes& b) { StoreU64(b.data() + kf::kOffMemLimit, (4ull << 30) + 1); }),
       StatusCode::kDataLoss, "Argon2id parameters out of range"},
  };
  ExpectAllRejected(tenant, parse_cases,
                    [](const Bytes& b) { return Keyset::Parse(b, "keyset").status(); });

  // Damage the checksum does not see (it was recomputed) but the passphrase
  // AEAD does: the public key is associated data, salt and parameters feed
  // Argon2id, the nonce and sealed key are the AEAD input. All read as a
  // wrong passphrase, since an AEAD cannot tell the two apart.
  const std::vector<Damage> unlock_cases = {
      {"public key", ThenRechecksum(FlipByte(kf::kOffTenantPublicKey)),
       StatusCode::kPermissionDenied, "wrong passphrase"},
      {"opslimit 2", ThenRechecksum([](Bytes& b) { StoreU64(b.data() + kf::kOffOpsLimit, 2); }),
       StatusCode::kPermissionDenied, "wrong passphrase"},
      {"salt", ThenRechecksum(FlipByte(kf::kOffSalt)), StatusCode::kPermissionDenied,
       "wrong passphrase"},
      {"nonce", ThenRechecksum(FlipByte(kf::kOffNonce)), StatusCode::kPermissionDenied,
       "wrong passphrase"},
      {"sealed private key", ThenRechecksum(FlipByte(kf::kOffSealedPrivateKey)),
       StatusCode::kPermissionDenied, "wrong passphrase"},
  };
  ExpectAllRejected(tenant, unlock_cases, [](const Bytes& b) {
    Result<std::unique_ptr<Keyset>> ks = Keyset::Parse(b, "keyset");
    if (!ks.ok()) return ks.status();
    return (*ks)->Unlock(kPassphrase);
  });

  const Bytes agent = ReadGolden("agent-key.bin");
  const std::vector<Damage> agent_cases = {
      {"kind says tenant (size lies)", SetByte(kf::kOffKind, 1), StatusCode::kDataLoss,
       "expected 240"},
      {"truncated", DropLast(1), StatusCode::kDataLoss, "expected 136"},
      {"checksum damaged", FlipFromEnd(32), StatusCode::kDataLoss, "checksum mismatch"},
      {"reserved bytes set, checksum fixed", ThenRechecksum(SetByte(kf::kOffReserved, 1)),
       StatusCode::kDataLoss, "reserved keyset bytes"},
  };
  ExpectAllRejected(agent, agent_cases,
                    [](const Bytes& b) { return Keyset::Parse(b, "agent key").status(); });

  // Wrapped data keys.
  std::unique_ptr<Keyset> ks = GoldenTenantKeyset(/*unlock=*/true);
  ASSERT_NE(ks, nullptr);
  const Bytes wrapped = GoldenWrappedKey();
  const std::vector<Damage> wrapped_cases = {
      {"truncated", DropLast(1), StatusCode::kDataLoss, "expected 96"},
      {"one byte appended", AppendByte(), StatusCode::kDataLoss, "expected 96"},
      {"ephemeral key damaged", FlipByte(0), StatusCode::kDataLoss, ""},
      {"ciphertext damaged", FlipByte(40), StatusCode::kDataLoss, ""},
      {"tag damaged", FlipFromEnd(1), StatusCode::kDataLoss, ""},
  };
  ExpectAllRejected(wrapped, wrapped_cases,
                    [&](const Bytes& b) { return ks->UnwrapDataKey(kDataKeyId, b).status(); });
  KeyId other = kDataKeyId;
  other[15] ^= 1;
  ExpectCode(ks->UnwrapDataKey(other, wrapped), StatusCode::kDataLoss, "names another key");
}

// ---------------------------------------------------------------------------
// Packs (docs/format/pack.md)

TEST(GoldenPack, RebuildsByteForByte) {
  PackContents contents;
  const Bytes pack = BuildPack(&contents);
  ExpectMatchesGolden("pack.bin", pack);
  // The spec layout, field by field.
  const Bytes a = SealedA();
  const Bytes b = SealedB();
  const Bytes wrapped = GoldenWrappedKey();
  Bytes spec = ToBytes("FPAK");
  PutU32(spec, 1);  // version 1, 3 reserved bytes
  const uint64_t off_a = spec.size() + 36;
  PutBytes(spec, IdOf(AsBytes(PlaintextA())));
  PutU32(spec, static_cast<uint32_t>(a.size()));
  PutBytes(spec, a);
  const uint64_t off_b = spec.size() + 36;
  PutBytes(spec, IdOf(AsBytes(kPlaintextB)));
  PutU32(spec, static_cast<uint32_t>(b.size()));
  PutBytes(spec, b);
  const uint64_t index_offset = spec.size();
  PutU32(spec, 1);  // keys
  PutBytes(spec, kDataKeyId);
  PutBytes(spec, wrapped);
  PutU32(spec, 2);  // entries
  PutBytes(spec, IdOf(AsBytes(PlaintextA())));
  PutU64(spec, off_a);
  PutU32(spec, static_cast<uint32_t>(a.size()));
  PutBytes(spec, evp::Sha256(a));
  PutBytes(spec, IdOf(AsBytes(kPlaintextB)));
  PutU64(spec, off_b);
  PutU32(spec, static_cast<uint32_t>(b.size()));
  PutBytes(spec, evp::Sha256(b));
  const uint32_t index_len = static_cast<uint32_t>(spec.size() - index_offset);
  PutU64(spec, index_offset);
  PutU32(spec, index_len);
  PutU32(spec, 0);
  PutBytes(spec, Bytes(32, 0));  // checksum, filled below
  PutBytes(spec, ToBytes("FPKE"));
  PutU32(spec, 1);  // version 1, 3 reserved bytes
  RechecksumPack(spec);
  EXPECT_EQ(HexEncode(pack), HexEncode(spec));
  EXPECT_EQ(HexEncode(contents.checksum), HexEncode(ByteView(pack).subspan(pack.size() - 40, 32)));
}

TEST(GoldenPack, DecodesAndOpensWithTheGoldenKeyset) {
  testing::TempDir dir;
  const std::string path = dir.Sub("golden.pack");
  const Bytes golden = ReadGolden("pack.bin");
  testing::WriteFileOrDie(path, golden);
  Result<PackContents> c = ReadPackIndex(*Env::Default(), path, /*verify_entries=*/true);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->size, golden.size());
  ASSERT_EQ(c->keys.size(), 1u);
  EXPECT_EQ(c->keys[0].id, kDataKeyId);
  EXPECT_EQ(c->keys[0].wrapped, GoldenWrappedKey());
  ASSERT_EQ(c->entries.size(), 2u);
  EXPECT_EQ(c->entries[0].id, IdOf(AsBytes(PlaintextA())));
  EXPECT_EQ(c->entries[0].offset, 8u + 36u);
  EXPECT_EQ(c->entries[1].id, IdOf(AsBytes(kPlaintextB)));
  EXPECT_EQ(c->entries[1].length, 36u + 13u + 16u);
  // Keys in the pack + the golden keyset give back the plaintext: the whole chain.
  std::unique_ptr<Keyset> ks = GoldenTenantKeyset(/*unlock=*/true);
  ASSERT_NE(ks, nullptr);
  Result<SecretBytes> key = ks->UnwrapDataKey(c->keys[0].id, c->keys[0].wrapped);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  const std::vector<std::string> plaintexts = {PlaintextA(), kPlaintextB};
  for (size_t i = 0; i < 2; ++i) {
    const PackEntry& e = c->entries[i];
    const ByteView sealed = ByteView(golden).subspan(static_cast<size_t>(e.offset), e.length);
    EXPECT_EQ(e.digest, evp::Sha256(sealed));
    Bytes plain;
    ASSERT_TRUE(OpenChunk(e.id, sealed, *key, ks->chunk_id_hasher(), plain).ok());
    EXPECT_EQ(ToString(plain), plaintexts[i]);
  }
}

TEST(GoldenPack, DamageIsRejected) {
  namespace pf = pack_format;
  const Bytes golden = ReadGolden("pack.bin");
  ASSERT_FALSE(golden.empty());
  const size_t size = golden.size();
  const size_t footer = size - pf::kFooterSize;
  const size_t index_offset = static_cast<size_t>(LoadU64(golden.data() + footer));
  const size_t entries_at = index_offset + 4 + pf::kIndexKeySize;  // the entry count
  const size_t entry0 = entries_at + 4;
  auto rechecksum = [](auto f) {
    return [=](Bytes& b) {
      f(b);
      RechecksumPack(b);
    };
  };
  auto set_u64 = [](size_t offset, uint64_t v) {
    return [=](Bytes& b) { StoreU64(b.data() + offset, v); };
  };
  const std::vector<Damage> cases = {
      {"empty", Truncate(0), StatusCode::kDataLoss, "too short"},
      {"shorter than header and footer", Truncate(63), StatusCode::kDataLoss, "too short"},
      {"wrong magic", SetByte(0, 'X'), StatusCode::kDataLoss, "bad magic"},
      {"version 2", SetByte(4, 2), StatusCode::kDataLoss, "unsupported version 2"},
      {"reserved header byte", SetByte(7, 1), StatusCode::kDataLoss, "reserved header bytes"},
      {"truncated (torn tail)", DropLast(1), StatusCode::kDataLoss, "end marker"},
      {"truncated to half", Truncate(size / 2), StatusCode::kDataLoss, ""},
      {"one byte appended", AppendByte(), StatusCode::kDataLoss, "end marker"},
      {"end magic damaged", FlipFromEnd(8), StatusCode::kDataLoss, "end marker"},
      {"footer version 2", SetByte(size - 4, 2), StatusCode::kDataLoss, "footer version"},
      {"footer reserved byte", SetByte(size - 1, 1), StatusCode::kDataLoss, "footer version"},
      {"footer reserved word", SetU32(footer + 12, 1), StatusCode::kDataLoss,
       "reserved footer bytes"},
      {"index offset lies", set_u64(footer, index_offset + 1), StatusCode::kDataLoss,
       "does not end at the footer"},
      {"index offset below the header", set_u64(footer, 4), StatusCode::kDataLoss,
       "does not end at the footer"},
      {"index offset + length wraps to the footer",
       [=](Bytes& b) {
         StoreU64(b.data() + footer, ~uint64_t{0} - 55);
         StoreU32(b.data() + footer + 8, static_cast<uint32_t>(size));
       },
       StatusCode::kDataLoss, "does not end at the footer"},
      {"index length lies", SetU32(footer + 8, static_cast<uint32_t>(footer - index_offset + 1)),
       StatusCode::kDataLoss, "does not end at the footer"},
      {"checksum damaged", FlipFromEnd(9), StatusCode::kDataLoss, "checksum mismatch"},
      {"index damaged", FlipByte(entry0), StatusCode::kDataLoss, "checksum mismatch"},
      {"key count too large", rechecksum(SetU32(index_offset, pf::kMaxKeysPerPack + 1)),
       StatusCode::kDataLoss, "bad key table"},
      {"key count lies", rechecksum(SetU32(index_offset, 2)), StatusCode::kDataLoss,
       "wrong length"},
      {"entry count lies", rechecksum(SetU32(entries_at, 3)), StatusCode::kDataLoss,
       "wrong length"},
      {"entry offset not contiguous", rechecksum(set_u64(entry0 + 32, 8 + 36 + 1)),
       StatusCode::kDataLoss, "out of bounds"},
      {"entry length past the index", rechecksum(SetU32(entry0 + 40, 0x7fffff)),
       StatusCode::kDataLoss, "out of bounds"},
      {"entry length too short", rechecksum([=](Bytes& b) {
         StoreU32(b.data() + entry0 + 40, LoadU32(b.data() + entry0 + 40) - 1);
       }),
       StatusCode::kDataLoss, "index entry 1 is out of bounds"},
      {"sealed bytes damaged", FlipByte(8 + 36 + 40), StatusCode::kDataLoss, "SHA-256 mismatch"},
      {"entry frame id damaged", FlipByte(8), StatusCode::kDataLoss, "frame does not match"},
      {"entry frame length damaged", FlipByte(8 + 32), StatusCode::kDataLoss,
       "frame does not match"},
      {"entry digest damaged, checksum fixed", rechecksum(FlipByte(entry0 + 44)),
       StatusCode::kDataLoss, "SHA-256 mismatch"},
  };
  testing::TempDir dir;
  int n = 0;
  ExpectAllRejected(golden, cases, [&](const Bytes& b) {
    const std::string path = dir.Sub("p" + std::to_string(n++) + ".pack");
    testing::WriteFileOrDie(path, b);
    return ReadPackIndex(*Env::Default(), path, /*verify_entries=*/true).status();
  });
  // Without entry verification, damage inside sealed bytes is not looked at
  // (the chunk's AEAD tag and the per-entry SHA-256 catch it on read).
  Bytes body_damaged = golden;
  body_damaged[8 + 36 + 40] ^= 1;
  testing::WriteFileOrDie(dir.Sub("body.pack"), body_damaged);
  EXPECT_TRUE(ReadPackIndex(*Env::Default(), dir.Sub("body.pack"), false).ok());
  // Larger than the 1 GiB limit: refused from the size alone (a sparse file).
  const std::string big = dir.Sub("big.pack");
  testing::WriteFileOrDie(big, golden);
  ASSERT_EQ(::truncate(big.c_str(), static_cast<off_t>(pf::kMaxPackSize + 1)), 0);
  ExpectCode(ReadPackIndex(*Env::Default(), big, false), StatusCode::kDataLoss, "1 GiB");
}

// ---------------------------------------------------------------------------
// Reference sets (docs/format/refs.md)

TEST(GoldenRefs, RebuildsByteForByte) {
  RefSetSummaryInfo summary;
  const Bytes refs = BuildRefs(GoldenRefEntries(), &summary);
  ExpectMatchesGolden("refs.bin", refs);
  EXPECT_EQ(HexEncode(refs), HexEncode(SpecRefs(GoldenRefEntries())));
  EXPECT_EQ(summary.count, 5u);
  EXPECT_EQ(HexEncode(summary.digest), HexEncode(ByteView(refs).last(32)));
  // Spilling sorted runs to disk gives the same object.
  testing::TempDir dir;
  RefSetBuilder small(*Env::Default(), dir.path(), /*memory_budget=*/0);
  std::vector<RefEntry> many;
  for (uint32_t i = 0; i < 5000; ++i) {
    const ChunkId id = IdOf(AsBytes(std::to_string(i % 3000)));
    many.push_back({id, i % 3000});
    ASSERT_TRUE(small.Add(id, i % 3000).ok());
  }
  ASSERT_TRUE(small.Finish(dir.Sub("many.refs")).ok());
  EXPECT_EQ(testing::ReadFileOrDie(dir.Sub("many.refs")), SpecRefs(many));
}

TEST(GoldenRefs, DecodesToTheFixedEntries) {
  Result<std::unique_ptr<RefSetReader>> r = RefSetReader::FromBytes(ReadGolden("refs.bin"), "g");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->count(), 5u);
  std::vector<RefEntry> got;
  RefEntry e;
  while ((*r)->Next(e)) got.push_back(e);
  ASSERT_TRUE((*r)->status().ok()) << (*r)->status().ToString();
  ASSERT_EQ(got.size(), 5u);
  std::vector<RefEntry> unique = GoldenRefEntries();
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end(),
                           [](const RefEntry& a, const RefEntry& b) { return a.id == b.id; }),
               unique.end());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].id, unique[i].id);
    EXPECT_EQ(got[i].sealed_size, unique[i].sealed_size);
  }
  EXPECT_EQ(HexEncode((*r)->digest()), HexEncode(ByteView(ReadGolden("refs.bin")).last(32)));
}

TEST(GoldenRefs, DamageIsRejected) {
  const Bytes golden = ReadGolden("refs.bin");
  ASSERT_FALSE(golden.empty());
  const std::vector<Damage> cases = {
      {"empty", Truncate(0), StatusCode::kDataLoss, "too short"},
      {"shorter than header and checksum", Truncate(47), StatusCode::kDataLoss, "too short"},
      {"wrong magic", SetByte(0, 'X'), StatusCode::kDataLoss, "bad magic"},
      {"version 2", SetByte(4, 2), StatusCode::kDataLoss, "unsupported version 2"},
      {"reserved byte", SetByte(6, 1), StatusCode::kDataLoss, "reserved bytes"},
      {"count too large by one", SetByte(8, 6), StatusCode::kDataLoss, "does not match the size"},
      {"count too small by one", SetByte(8, 4), StatusCode::kDataLoss, "does not match the size"},
      {"count over 2^32", SetByte(12, 2), StatusCode::kDataLoss, "does not match the size"},
      {"count wraps the size computation", [](Bytes& b) { StoreU64(b.data() + 8, ~uint64_t{0}); },
       StatusCode::kDataLoss, "does not match the size"},
      {"truncated", DropLast(1), StatusCode::kDataLoss, "does not match the size"},
      {"one entry missing", DropLast(36), StatusCode::kDataLoss, "does not match the size"},
      {"one byte appended", AppendByte(), StatusCode::kDataLoss, "does not match the size"},
      {"checksum damaged", FlipFromEnd(1), StatusCode::kDataLoss, "checksum mismatch"},
      {"sealed size damaged", FlipByte(16 + 32), StatusCode::kDataLoss, "checksum mismatch"},
      {"entries out of order", ThenRechecksum(SetByte(16, 0xff)), StatusCode::kDataLoss,
       "not sorted and unique at index 1"},
      {"duplicate entry", ThenRechecksum([](Bytes& b) {
         std::copy(b.begin() + 16, b.begin() + 16 + 36, b.begin() + 16 + 36);
       }),
       StatusCode::kDataLoss, "not sorted and unique at index 1"},
  };
  auto drain = [](const Bytes& b) -> Status {
    ASSIGN_OR_RETURN(std::unique_ptr<RefSetReader> r, RefSetReader::FromBytes(b, "g"));
    RefEntry e;
    while (r->Next(e)) {
    }
    return r->status();
  };
  ExpectAllRejected(golden, cases, drain);
  // The file reader agrees with the in-memory one.
  testing::TempDir dir;
  Bytes damaged = golden;
  damaged[damaged.size() - 1] ^= 1;
  testing::WriteFileOrDie(dir.Sub("d.refs"), damaged);
  ExpectCode(RefSetReader::Summarize(*Env::Default(), dir.Sub("d.refs")), StatusCode::kDataLoss,
             "checksum mismatch");
}

// ---------------------------------------------------------------------------
// Manifests (docs/format/manifest.md)

TEST(GoldenManifest, RebuildsByteForByte) {
  const pb::Manifest body = GoldenManifestBody();
  Result<sodium::SigningKeyPair> key = sodium::SigningKeyPairFromSeed(kAgentSigningSeed);
  ASSERT_TRUE(key.ok());
  Result<Bytes> envelope = SignManifest(body, *key);
  ASSERT_TRUE(envelope.ok()) << envelope.status().ToString();
  ExpectMatchesGolden("manifest.envelope", *envelope);
  const std::string id_hex = HexEncode(SnapshotIdOf(*envelope)) + "\n";
  ExpectMatchesGolden("manifest.snapshot-id", AsBytes(id_hex));
  std::string serialized;
  ASSERT_TRUE(body.SerializeToString(&serialized));
  EXPECT_EQ(HexEncode(*envelope), HexEncode(SpecEnvelope(AsBytes(serialized), kAgentSigningSeed)));
}

TEST(GoldenManifest, DecodesToTheFixedBody) {
  const Bytes golden = ReadGolden("manifest.envelope");
  Result<ParsedManifest> m = ParseManifest(golden, "golden");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const Bytes id_file = ReadGolden("manifest.snapshot-id");
  EXPECT_EQ(HexEncode(m->id) + "\n", ToString(id_file));
  EXPECT_EQ(m->id, sodium::Blake2b256(golden));
  Result<sodium::SigningKeyPair> key = sodium::SigningKeyPairFromSeed(kAgentSigningSeed);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(m->signer, key->public_key);
  const pb::Manifest& b = m->body;
  EXPECT_EQ(b.format_version(), 1u);
  EXPECT_EQ(b.created_unix_ns(), 1700000000123456789);
  EXPECT_EQ(b.parent(), std::string(32, '\x11'));
  EXPECT_EQ(b.labels().at("purpose"), "golden");
  ASSERT_EQ(b.datasets_size(), 1);
  EXPECT_EQ(b.datasets(0).name(), "home");
  EXPECT_EQ(b.datasets(0).kind(), pb::DATASET_KIND_VOLUME);
  ASSERT_EQ(b.datasets(0).root_size(), 1);
  EXPECT_EQ(b.datasets(0).root(0).id(), ToString(IdOf(GoldenRootTreeBytes())));
  EXPECT_EQ(b.datasets(0).stats().files(), 4u);
  EXPECT_EQ(HexEncode(AsBytes(b.keyset_id())), kKeysetIdHex);
  EXPECT_EQ(b.refs().count(), 5u);
  EXPECT_EQ(b.refs().digest(), ToString(ByteView(ReadGolden("refs.bin")).last(32)));
  EXPECT_EQ(b.hostname(), "golden-host");
  EXPECT_EQ(b.ferry_version(), "0.0.0-golden");
}

TEST(GoldenManifest, DamageIsRejected) {
  const Bytes golden = ReadGolden("manifest.envelope");
  ASSERT_GT(golden.size(), 12u + 96u);
  const uint32_t body_len = LoadU32(golden.data() + 8);
  auto resigned = [](std::function<void(pb::Manifest&)> edit) {
    return [=](Bytes& b) {
      pb::Manifest m = GoldenManifestBody();
      edit(m);
      std::string s;
      m.SerializeToString(&s);
      b = SpecEnvelope(AsBytes(s), kAgentSigningSeed);
    };
  };
  const std::vector<Damage> cases = {
      {"empty", Truncate(0), StatusCode::kDataLoss, "too short"},
      {"shorter than header and trailer", Truncate(107), StatusCode::kDataLoss, "too short"},
      {"wrong magic", SetByte(0, 'X'), StatusCode::kDataLoss, "bad magic"},
      {"version 2", SetByte(4, 2), StatusCode::kDataLoss, "unsupported version 2"},
      {"signature algorithm 0", SetByte(5, 0), StatusCode::kDataLoss,
       "unknown signature algorithm 0"},
      {"signature algorithm 2", SetByte(5, 2), StatusCode::kDataLoss,
       "unknown signature algorithm 2"},
      {"reserved byte", SetByte(7, 1), StatusCode::kDataLoss, "reserved bytes"},
      {"body length too large by one", SetU32(8, body_len + 1), StatusCode::kDataLoss,
       "does not match the envelope"},
      {"body length too small by one", SetU32(8, body_len - 1), StatusCode::kDataLoss,
       "does not match the envelope"},
      {"body length over 4 MiB", SetU32(8, (4u << 20) + 1), StatusCode::kDataLoss,
       "does not match the envelope"},
      {"body length wraps", SetU32(8, ~uint32_t{0}), StatusCode::kDataLoss,
       "does not match the envelope"},
      {"truncated", DropLast(1), StatusCode::kDataLoss, "does not match the envelope"},
      {"one byte appended", AppendByte(), StatusCode::kDataLoss, "does not match the envelope"},
      {"body damaged", FlipByte(12), StatusCode::kDataLoss, "signature does not verify"},
      {"signer key damaged", FlipFromEnd(64 + 1), StatusCode::kDataLoss,
       "signature does not verify"},
      {"signature damaged", FlipFromEnd(1), StatusCode::kDataLoss, "signature does not verify"},
      {"signed garbage body",
       [](Bytes& b) {
         b = SpecEnvelope(Bytes{0xff, 0xff}, kAgentSigningSeed);
       },
       StatusCode::kDataLoss, "not a valid protobuf"},
      {"format_version 2", resigned([](pb::Manifest& m) { m.set_format_version(2); }),
       StatusCode::kDataLoss, "unsupported format_version 2"},
      {"keyset_id 15 bytes",
       resigned([](pb::Manifest& m) { m.set_keyset_id(std::string(15, 'k')); }),
       StatusCode::kDataLoss, "keyset_id must be 16 bytes"},
      {"parent 31 bytes", resigned([](pb::Manifest& m) { m.set_parent(std::string(31, 'p')); }),
       StatusCode::kDataLoss, "parent must be 32 bytes"},
      {"refs digest missing", resigned([](pb::Manifest& m) { m.mutable_refs()->clear_digest(); }),
       StatusCode::kDataLoss, "refs.digest must be 32 bytes"},
      {"no datasets", resigned([](pb::Manifest& m) { m.clear_datasets(); }), StatusCode::kDataLoss,
       "no datasets"},
      {"dataset without a name",
       resigned([](pb::Manifest& m) { m.mutable_datasets(0)->clear_name(); }),
       StatusCode::kDataLoss, "dataset without a name"},
      {"dataset kind unspecified", resigned([](pb::Manifest& m) {
         m.mutable_datasets(0)->set_kind(pb::DATASET_KIND_UNSPECIFIED);
       }),
       StatusCode::kDataLoss, "unknown kind 0"},
      {"dataset kind unknown", resigned([](pb::Manifest& m) {
         m.mutable_datasets(0)->set_kind(static_cast<pb::DatasetKind>(9));
       }),
       StatusCode::kDataLoss, "unknown kind 9"},
      {"dataset without a root",
       resigned([](pb::Manifest& m) { m.mutable_datasets(0)->clear_root(); }),
       StatusCode::kDataLoss, "has no root"},
      {"root chunk id 31 bytes", resigned([](pb::Manifest& m) {
         m.mutable_datasets(0)->mutable_root(0)->set_id(std::string(31, 'i'));
       }),
       StatusCode::kDataLoss, "root chunk id is not 32 bytes"},
      {"root chunk over 16 MiB", resigned([](pb::Manifest& m) {
         m.mutable_datasets(0)->mutable_root(0)->set_size(kMaxChunkSize + 1);
       }),
       StatusCode::kDataLoss, "root chunk too large"},
  };
  ExpectAllRejected(golden, cases,
                    [](const Bytes& b) { return ParseManifest(b, "golden").status(); });
  // The signer refuses what the parser would refuse.
  pb::Manifest bad = GoldenManifestBody();
  bad.clear_datasets();
  Result<sodium::SigningKeyPair> key = sodium::SigningKeyPairFromSeed(kAgentSigningSeed);
  ASSERT_TRUE(key.ok());
  ExpectCode(SignManifest(bad, *key), StatusCode::kDataLoss, "no datasets");
}

// ---------------------------------------------------------------------------
// Trees (docs/format/tree.md)

TEST(GoldenTree, RebuildsByteForByte) {
  const Bytes tree = GoldenTreeBytes();
  ExpectMatchesGolden("tree.bin", tree);
  ExpectMatchesGolden("root-tree.bin", GoldenRootTreeBytes());
  // TreeWriter's streamed records are exactly protobuf's encoding of a Tree.
  pb::Tree t;
  for (const pb::Node& n : GoldenTreeNodes()) *t.add_nodes() = n;
  std::string serialized;
  ASSERT_TRUE(t.SerializeToString(&serialized));
  EXPECT_EQ(HexEncode(tree), HexEncode(AsBytes(serialized)));
}

TEST(GoldenTree, DecodesToTheFixedNodes) {
  Result<pb::Tree> t = DecodeTree(ReadGolden("tree.bin"), "tree.bin");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const std::vector<pb::Node> expected = GoldenTreeNodes();
  ASSERT_EQ(t->nodes_size(), static_cast<int>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].name());
    EXPECT_EQ(t->nodes(static_cast<int>(i)).SerializeAsString(), expected[i].SerializeAsString());
  }
  EXPECT_EQ(t->nodes(1).xattrs(0).name(), "user.comment");
  EXPECT_EQ(t->nodes(5).extents(0).offset(), 4096u);
  // The root tree holds one unnamed directory, which DecodeTree refuses on
  // purpose: roots are read by the restorer's own check (docs/format/tree.md).
  const Bytes root = ReadGolden("root-tree.bin");
  pb::Tree r;
  ASSERT_TRUE(r.ParseFromArray(root.data(), static_cast<int>(root.size())));
  ASSERT_EQ(r.nodes_size(), 1);
  EXPECT_EQ(r.nodes(0).name(), "");
  EXPECT_EQ(r.nodes(0).type(), pb::NODE_TYPE_DIRECTORY);
  EXPECT_EQ(r.nodes(0).content(0).id(), ToString(IdOf(ReadGolden("tree.bin"))));
  ExpectCode(DecodeTree(root, "root"), StatusCode::kDataLoss, "empty name");
}

TEST(GoldenTree, DamageIsRejected) {
  // Edits of the decoded golden tree, re-encoded: each breaks one rule.
  struct Case {
    std::string name;
    std::function<void(std::vector<pb::Node>&)> edit;
    std::string needle;
  };
  auto file = [](std::vector<pb::Node>& n) -> pb::Node& { return n[1]; };    // hello.txt
  auto link = [](std::vector<pb::Node>& n) -> pb::Node& { return n[2]; };    // link
  auto dir = [](std::vector<pb::Node>& n) -> pb::Node& { return n[0]; };     // docs
  auto sparse = [](std::vector<pb::Node>& n) -> pb::Node& { return n[5]; };  // sparse.img
  const std::vector<Case> cases = {
      {"empty name", [&](auto& n) { dir(n).set_name(""); }, "empty name"},
      {"name '.'", [&](auto& n) { dir(n).set_name("."); }, "name is '.'"},
      {"name '..'", [&](auto& n) { dir(n).set_name(".."); }, "name is '..'"},
      {"name with '/'", [&](auto& n) { dir(n).set_name("a/b"); }, "contains '/'"},
      {"name with NUL", [&](auto& n) { dir(n).set_name(std::string("a\0b", 3)); }, "contains NUL"},
      {"name of 256 bytes", [&](auto& n) { dir(n).set_name(std::string(256, 'a')); },
       "longer than 255"},
      {"names out of order", [&](auto& n) { std::swap(n[0], n[1]); }, "not sorted or duplicated"},
      {"duplicate name", [&](auto& n) { n[2].set_name(n[1].name()); }, "not sorted or duplicated"},
      {"mode beyond 07777", [&](auto& n) { file(n).set_mode(010000); }, "mode has bits"},
      {"type unspecified", [&](auto& n) { file(n).set_type(pb::NODE_TYPE_UNSPECIFIED); },
       "unknown node type 0"},
      {"type unknown", [&](auto& n) { file(n).set_type(static_cast<pb::NodeType>(7)); },
       "unknown node type 7"},
      {"chunk id 31 bytes",
       [&](auto& n) { file(n).mutable_content(0)->set_id(std::string(31, 'x')); },
       "chunk id is not 32 bytes"},
      {"chunk over 16 MiB",
       [&](auto& n) { file(n).mutable_content(0)->set_size(kMaxChunkSize + 1); },
       "chunk larger than the limit"},
      {"file size differs from content", [&](auto& n) { file(n).set_size(14); },
       "content size differs"},
      {"file with a symlink target", [&](auto& n) { file(n).set_symlink_target("x"); },
       "file with a symlink target"},
      {"1025 xattrs",
       [&](auto& n) {
         for (int i = 0; i < 1024; ++i) *file(n).add_xattrs() = file(n).xattrs(0);
       },
       "too many xattrs"},
      {"xattr without a name", [&](auto& n) { file(n).mutable_xattrs(0)->clear_name(); },
       "invalid xattr name"},
      {"xattr name with NUL",
       [&](auto& n) { file(n).mutable_xattrs(0)->set_name(std::string("user.\0", 6)); },
       "invalid xattr name"},
      {"xattr name of 256 bytes",
       [&](auto& n) { file(n).mutable_xattrs(0)->set_name(std::string(256, 'u')); },
       "invalid xattr name"},
      {"xattr value over 64 KiB",
       [&](auto& n) { file(n).mutable_xattrs(0)->set_value(std::string(65537, 'v')); },
       "xattr value too large"},
      {"extent of length 0", [&](auto& n) { sparse(n).mutable_extents(0)->set_length(0); },
       "extents overlap"},
      {"extent past the end",
       [&](auto& n) { sparse(n).mutable_extents(0)->set_offset((1 << 20) - 12); },
       "run past the end"},
      {"extent offset past the end",
       [&](auto& n) { sparse(n).mutable_extents(0)->set_offset(uint64_t{1} << 63); },
       "run past the end"},
      {"extents overlap",
       [&](auto& n) {
         pb::Extent* e = sparse(n).add_extents();
         e->set_offset(4100);
         e->set_length(1);
       },
       "overlap"},
      {"extents differ from content",
       [&](auto& n) { sparse(n).mutable_extents(0)->set_length(12); }, "extent lengths differ"},
      {"symlink without a target", [&](auto& n) { link(n).clear_symlink_target(); },
       "invalid symlink target"},
      {"symlink target of 4097 bytes",
       [&](auto& n) { link(n).set_symlink_target(std::string(4097, 't')); },
       "invalid symlink target"},
      {"symlink target with NUL",
       [&](auto& n) { link(n).set_symlink_target(std::string("a\0", 2)); },
       "invalid symlink target"},
      {"symlink with content", [&](auto& n) { *link(n).add_content() = file(n).content(0); },
       "symlink with content"},
      {"symlink with a hard link id", [&](auto& n) { link(n).set_hardlink_id(3); },
       "symlink with content"},
      {"directory with extents", [&](auto& n) { *dir(n).add_extents() = sparse(n).extents(0); },
       "directory with file or symlink fields"},
      {"directory with a symlink target", [&](auto& n) { dir(n).set_symlink_target("x"); },
       "directory with file or symlink fields"},
      {"directory with a hard link id", [&](auto& n) { dir(n).set_hardlink_id(1); },
       "directory with file or symlink fields"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<pb::Node> nodes = GoldenTreeNodes();
    c.edit(nodes);
    Bytes bytes;
    for (const pb::Node& n : nodes) TreeWriter::AppendNode(n, bytes);
    const Result<pb::Tree> t = DecodeTree(bytes, "edited");
    ExpectCode(t, StatusCode::kDataLoss, c.needle);
    EXPECT_NE(t.status().message().find("tree edited"), std::string::npos);
  }
  const Bytes golden = ReadGolden("tree.bin");
  const std::vector<Damage> byte_cases = {
      {"truncated", DropLast(1), StatusCode::kDataLoss, "not a valid protobuf Tree"},
      {"dangling record tag", [](Bytes& b) { b.push_back(0x0a); }, StatusCode::kDataLoss,
       "not a valid protobuf Tree"},
      {"record longer than the rest",
       [](Bytes& b) {
         b.insert(b.end(), {0x0a, 0x05, 0x0a});
       },
       StatusCode::kDataLoss, "not a valid protobuf Tree"},
      {"garbage", [](Bytes& b) { b.assign(16, 0xff); }, StatusCode::kDataLoss,
       "not a valid protobuf Tree"},
  };
  ExpectAllRejected(golden, byte_cases,
                    [](const Bytes& b) { return DecodeTree(b, "damaged").status(); });
  // Over the 256 MiB limit: refused before parsing. The pages are never touched.
  const size_t big = kMaxTreeSize + 1;
  void* p = ::mmap(nullptr, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  ExpectCode(DecodeTree(ByteView(static_cast<const uint8_t*>(p), big), "big"),
             StatusCode::kDataLoss, "too large");
  ::munmap(p, big);
}

// ---------------------------------------------------------------------------
// File cache (docs/format/file-cache.md)

TEST(GoldenFileCache, RebuildsByteForByte) {
  const Bytes cache = BuildFileCache();
  ExpectMatchesGolden("file-cache.bin", cache);
  Bytes spec = ToBytes("FCAC");
  PutU32(spec, 3);  // version 3, 3 reserved bytes
  PutBytes(spec, GoldenKeysetId());
  PutU32(spec, 16384);
  PutU32(spec, 65536);
  PutU32(spec, 262144);
  for (const CachedFile& f : GoldenCacheRecords()) {
    PutU32(spec, static_cast<uint32_t>(f.key.size()));
    PutU64(spec, f.ino);
    PutU64(spec, f.size);
    PutU64(spec, static_cast<uint64_t>(f.mtime_ns));
    PutU64(spec, static_cast<uint64_t>(f.ctime_ns));
    PutU32(spec, static_cast<uint32_t>(f.chunks.size()));
    PutU32(spec, static_cast<uint32_t>(f.extents.size()));
    Bytes xattrs;
    for (const auto& [name, value] : f.xattrs) {
      PutU16(xattrs, static_cast<uint16_t>(name.size()));
      PutU32(xattrs, static_cast<uint32_t>(value.size()));
      PutBytes(xattrs, AsBytes(name));
      PutBytes(xattrs, AsBytes(value));
    }
    PutU32(spec, static_cast<uint32_t>(xattrs.size()));
    PutU32(spec, static_cast<uint32_t>(f.delta.size()));
    PutBytes(spec, AsBytes(f.key));
    for (const CachedChunk& c : f.chunks) {
      PutBytes(spec, c.id);
      PutU32(spec, c.plain_size);
      PutU32(spec, c.sealed_size);
    }
    for (const auto& [off, len] : f.extents) {
      PutU64(spec, off);
      PutU64(spec, len);
    }
    PutBytes(spec, xattrs);
    PutBytes(spec, f.delta);
  }
  PutBytes(spec, sodium::Blake2b256(spec));
  EXPECT_EQ(HexEncode(cache), HexEncode(spec));
}

TEST(GoldenFileCache, DecodesToTheFixedRecords) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Sub("c"), ReadGolden("file-cache.bin"));
  std::string why = "unset";
  std::unique_ptr<FileCacheReader> r =
      FileCacheReader::Open(*Env::Default(), dir.Sub("c"), GoldenCacheIdentity(), &why);
  EXPECT_EQ(why, "unset");
  for (const CachedFile& want : GoldenCacheRecords()) {
    SCOPED_TRACE(PrintableName(AsBytes(want.key)));
    const CachedFile* got = r->Find(want.key);
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(got->ino, want.ino);
    EXPECT_EQ(got->size, want.size);
    EXPECT_EQ(got->mtime_ns, want.mtime_ns);
    EXPECT_EQ(got->ctime_ns, want.ctime_ns);
    ASSERT_EQ(got->chunks.size(), want.chunks.size());
    EXPECT_EQ(got->chunks[0].id, want.chunks[0].id);
    EXPECT_EQ(got->chunks[0].plain_size, want.chunks[0].plain_size);
    EXPECT_EQ(got->chunks[0].sealed_size, want.chunks[0].sealed_size);
    EXPECT_EQ(got->extents, want.extents);
    EXPECT_EQ(got->xattrs, want.xattrs);
    EXPECT_EQ(got->delta, want.delta);
  }
  EXPECT_EQ(r->Find("zzz"), nullptr);
}

TEST(GoldenFileCache, DamageMeansNoCache) {
  // A cache is an optimisation: anything wrong makes the reader serve no
  // records (and say why) instead of failing the capture.
  const Bytes golden = ReadGolden("file-cache.bin");
  ASSERT_FALSE(golden.empty());
  const size_t rec0 = 36;
  const std::vector<Damage> cases = {
      {"empty", Truncate(0), StatusCode::kDataLoss, "cache too short"},
      {"shorter than header and checksum", Truncate(67), StatusCode::kDataLoss, "cache too short"},
      {"wrong magic", SetByte(0, 'X'), StatusCode::kDataLoss, "another keyset, chunker or format"},
      {"version 1 (no xattrs)", SetByte(4, 1), StatusCode::kDataLoss,
       "another keyset, chunker or format"},
      {"version 2 (no delta block)", SetByte(4, 2), StatusCode::kDataLoss,
       "another keyset, chunker or format"},
      {"version 4", SetByte(4, 4), StatusCode::kDataLoss, "another keyset, chunker or format"},
      {"reserved byte", SetByte(5, 1), StatusCode::kDataLoss, "another keyset, chunker or format"},
      {"another keyset", FlipByte(8), StatusCode::kDataLoss, "another keyset, chunker or format"},
      {"another chunker", SetU32(24, 8192), StatusCode::kDataLoss,
       "another keyset, chunker or format"},
      {"truncated", DropLast(1), StatusCode::kDataLoss, "checksum mismatch"},
      {"one byte appended", AppendByte(), StatusCode::kDataLoss, "checksum mismatch"},
      {"checksum damaged", FlipFromEnd(1), StatusCode::kDataLoss, "checksum mismatch"},
      {"record damaged", FlipByte(rec0 + 4), StatusCode::kDataLoss, "checksum mismatch"},
  };
  testing::TempDir dir;
  int n = 0;
  const std::string first_key = GoldenCacheRecords()[0].key;
  ExpectAllRejected(golden, cases, [&](const Bytes& b) -> Status {
    const std::string path = dir.Sub("c" + std::to_string(n++));
    testing::WriteFileOrDie(path, b);
    std::string why;
    std::unique_ptr<FileCacheReader> r =
        FileCacheReader::Open(*Env::Default(), path, GoldenCacheIdentity(), &why);
    if (r->Find(first_key) != nullptr) return OkStatus();
    return DataLossError(why);
  });
  // Lengths that lie behind a valid checksum (only a writer bug can make
  // them): the reader stops at the bad record without reading out of bounds.
  const std::vector<std::pair<std::string, size_t>> lies = {{"key length", rec0},
                                                            {"chunk count", rec0 + 36},
                                                            {"extent count", rec0 + 40},
                                                            {"xattr bytes", rec0 + 44},
                                                            {"delta bytes", rec0 + 48}};
  for (const auto& [what, offset] : lies) {
    for (const uint32_t v : {uint32_t{0xffffffff}, uint32_t{1000}}) {
      SCOPED_TRACE(what + " = " + std::to_string(v));
      Bytes b = golden;
      StoreU32(b.data() + offset, v);
      RechecksumBlake2bTail(b);
      const std::string path = dir.Sub("lie" + std::to_string(n++));
      testing::WriteFileOrDie(path, b);
      std::string why;
      std::unique_ptr<FileCacheReader> r =
          FileCacheReader::Open(*Env::Default(), path, GoldenCacheIdentity(), &why);
      EXPECT_EQ(r->Find("hello.txt"), nullptr);
      EXPECT_EQ(r->Find("sparse.img"), nullptr);
    }
  }
  // A damaged xattr block (name length past the block) stops the reader too.
  {
    Bytes b = golden;
    const std::string needle = "user.comment";
    const auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
    ASSERT_NE(it, b.end());
    const size_t name_len_at = static_cast<size_t>(it - b.begin()) - 6;
    ASSERT_EQ(LoadU16(b.data() + name_len_at), needle.size());
    b[name_len_at] = 0xff;
    RechecksumBlake2bTail(b);
    const std::string path = dir.Sub("xattr-lie");
    testing::WriteFileOrDie(path, b);
    std::string why;
    std::unique_ptr<FileCacheReader> r =
        FileCacheReader::Open(*Env::Default(), path, GoldenCacheIdentity(), &why);
    EXPECT_NE(r->Find(first_key), nullptr);  // records before the damage still serve
    EXPECT_EQ(r->Find("hello.txt"), nullptr);
    EXPECT_EQ(r->Find("sparse.img"), nullptr);
  }
  std::string why;
  std::unique_ptr<FileCacheReader> none =
      FileCacheReader::Open(*Env::Default(), dir.Sub("absent"), GoldenCacheIdentity(), &why);
  EXPECT_EQ(none->Find("hello.txt"), nullptr);
  EXPECT_EQ(why, "no cache yet");
}

// ---------------------------------------------------------------------------
// Local store (docs/format/store.md)

std::string PackNameOf(const Bytes& pack) {
  return HexEncode(ByteView(pack).subspan(pack.size() - 40, 32));
}

// Puts the three tree chunks of the golden snapshot (sealed as the refs
// object's sizes assume) into `store`.
void PutTreeChunks(LocalStore& store) {
  uint8_t n = 0;
  for (const Bytes& plain : {GoldenTreeBytes(), GoldenRootTreeBytes(), Bytes()}) {
    // Fixed nonces are for tests only; even here each seal gets its own.
    std::array<uint8_t, 12> nonce = kNonceTree;
    nonce[0] = static_cast<uint8_t>(nonce[0] + n++);
    const Bytes sealed = Seal(plain, nonce, evp::AeadSuite::kAes256Gcm);
    Result<PutResult> r = store.PutChunk(IdOf(plain), sealed, kDataKeyId, GoldenWrappedKey());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
}

void PutGoldenPackChunks(LocalStore& store) {
  const Bytes wrapped = GoldenWrappedKey();
  ASSERT_TRUE(store.PutChunk(IdOf(AsBytes(PlaintextA())), SealedA(), kDataKeyId, wrapped).ok());
  ASSERT_TRUE(store.PutChunk(IdOf(AsBytes(kPlaintextB)), SealedB(), kDataKeyId, wrapped).ok());
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::string> ListOrEmpty(const std::string& dir) {
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  return names.ok() ? Sorted(*names) : std::vector<std::string>{};
}

// The schema of an index as sqlite_master states it, one statement per line
// group, in a fixed order (the text of tests/golden/store-schema*.sql).
std::string SchemaOf(sqlite::Database& db) {
  std::string schema;
  Result<sqlite::Statement> st =
      db.Prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type DESC, name");
  EXPECT_TRUE(st.ok());
  if (!st.ok()) return schema;
  while (true) {
    Result<bool> row = st->Step();
    EXPECT_TRUE(row.ok());
    if (!row.ok() || !*row) break;
    schema += st->ColumnText(0) + ";\n";
  }
  return schema;
}

TEST(GoldenStore, LayoutSchemaAndPackNaming) {
  testing::TempDir dir;
  const std::string root = dir.Sub("store");
  const Bytes golden_pack = ReadGolden("pack.bin");
  const Bytes envelope = ReadGolden("manifest.envelope");
  const Bytes refs = ReadGolden("refs.bin");
  ASSERT_FALSE(golden_pack.empty() || envelope.empty() || refs.empty());
  Result<ParsedManifest> m = ParseManifest(envelope, "golden");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const std::string id_hex = HexEncode(m->id);
  {
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Create(root);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_EQ(ListOrEmpty(root),
              (std::vector<std::string>{"FERRY-STORE", "cache", "index.db", "index.db-shm",
                                        "index.db-wal", "lock", "packs", "snapshots", "tmp"}));
    ExpectMatchesGolden("store-marker.txt", testing::ReadFileOrDie(root + "/FERRY-STORE"));
    // The golden pack, written through the store, is byte for byte the golden
    // file and is named after its footer checksum.
    PutGoldenPackChunks(**store);
    ASSERT_TRUE((*store)->Flush().ok());
    const std::string name = PackNameOf(golden_pack);
    const std::string pack_path = root + "/packs/" + name.substr(0, 2) + "/" + name + ".pack";
    EXPECT_EQ(HexEncode(testing::ReadFileOrDie(pack_path)), HexEncode(golden_pack));
    PutTreeChunks(**store);
    // A snapshot: refs handed over from tmp/, manifest written, row recorded.
    testing::WriteFileOrDie(root + "/tmp/refs-golden.tmp", refs);
    const Status committed = (*store)->CommitSnapshot(*m, root + "/tmp/refs-golden.tmp");
    ASSERT_TRUE(committed.ok()) << committed.ToString();
    EXPECT_EQ(ListOrEmpty(root + "/snapshots"),
              (std::vector<std::string>{id_hex + ".manifest", id_hex + ".refs"}));
    EXPECT_EQ(testing::ReadFileOrDie(root + "/snapshots/" + id_hex + ".manifest"), envelope);
    EXPECT_EQ(testing::ReadFileOrDie(root + "/snapshots/" + id_hex + ".refs"), refs);
    EXPECT_TRUE(ListOrEmpty(root + "/tmp").empty());
    Result<uint64_t> verified = (*store)->VerifyPacks();
    ASSERT_TRUE(verified.ok()) << verified.status().ToString();
    EXPECT_EQ(*verified, 2u);
  }
  // The index, read with plain SQLite.
  Result<std::unique_ptr<sqlite::Database>> db = sqlite::Database::Open(root + "/index.db", {});
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  Result<int64_t> version = (*db)->UserVersion();
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, 2);
  ExpectMatchesGolden("store-schema.sql", AsBytes(SchemaOf(**db)));
  auto query_int = [&](const char* sql) -> int64_t {
    Result<sqlite::Statement> st = (*db)->Prepare(sql);
    EXPECT_TRUE(st.ok());
    if (!st.ok()) return -1;
    Result<bool> row = st->Step();
    EXPECT_TRUE(row.ok() && *row);
    return st->ColumnInt(0);
  };
  EXPECT_EQ(query_int("SELECT count(*) FROM packs"), 2);
  EXPECT_EQ(query_int("SELECT count(*) FROM chunks"), 5);
  EXPECT_EQ(query_int("SELECT count(*) FROM data_keys"), 1);
  EXPECT_EQ(query_int("SELECT count(*) FROM snapshots"), 1);
  EXPECT_EQ(query_int("SELECT length(value) FROM meta WHERE key = 'store_id'"), 32);
  EXPECT_EQ(query_int("SELECT count(*) FROM reclaimed_packs"), 0);
  EXPECT_EQ(query_int("SELECT count(*) FROM reclaimed_chunks"), 0);
  // The chunk rows point into the golden pack exactly as its index does.
  Result<sqlite::Statement> st = (*db)->Prepare(
      "SELECT c.offset, c.length, p.size, p.entries, p.name FROM chunks c "
      "JOIN packs p USING (pack_id) WHERE c.id = ?");
  ASSERT_TRUE(st.ok());
  st->BindBlob(1, IdOf(AsBytes(kPlaintextB)));
  Result<bool> row = st->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(st->ColumnInt(0), static_cast<int64_t>(8 + 36 + SealedA().size() + 36));
  EXPECT_EQ(st->ColumnInt(1), static_cast<int64_t>(SealedB().size()));
  EXPECT_EQ(st->ColumnInt(2), static_cast<int64_t>(golden_pack.size()));
  EXPECT_EQ(st->ColumnInt(3), 2);
  EXPECT_EQ(st->ColumnText(4), PackNameOf(golden_pack));
}

TEST(GoldenStore, CrashLeftoversAreRecoveredOnOpen) {
  testing::TempDir dir;
  const std::string root = dir.Sub("store");
  const Bytes golden_pack = ReadGolden("pack.bin");
  const Bytes envelope = ReadGolden("manifest.envelope");
  const Bytes refs = ReadGolden("refs.bin");
  ASSERT_FALSE(golden_pack.empty() || envelope.empty() || refs.empty());
  Result<ParsedManifest> m = ParseManifest(envelope, "golden");
  ASSERT_TRUE(m.ok());
  const std::string id_hex = HexEncode(m->id);
  {
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Create(root);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    PutTreeChunks(**store);
    ASSERT_TRUE((*store)->Flush().ok());
  }
  // What crashes at each step of docs/format/store.md leave behind:
  // a torn pack in tmp/ (crash before the rename),
  testing::WriteFileOrDie(root + "/tmp/pack-0123456789abcdef.tmp", Bytes(100, 0x5a));
  // a finished pack renamed into place but not indexed,
  const std::string name = PackNameOf(golden_pack);
  testing::MakeDirsOrDie(root + "/packs/" + name.substr(0, 2));
  testing::WriteFileOrDie(root + "/packs/" + name.substr(0, 2) + "/" + name + ".pack", golden_pack);
  // a pack whose name is not its checksum (damaged after the rename),
  const std::string bad_name(64, 'f');
  testing::MakeDirsOrDie(root + "/packs/ff");
  Bytes damaged = golden_pack;
  damaged[8 + 36 + 40] ^= 1;
  testing::WriteFileOrDie(root + "/packs/ff/" + bad_name + ".pack", damaged);
  // and a manifest written with its refs but not recorded in index.db.
  testing::WriteFileOrDie(root + "/snapshots/" + id_hex + ".refs", refs);
  testing::WriteFileOrDie(root + "/snapshots/" + id_hex + ".manifest", envelope);
  {
    // A reader does not recover anything (and does not see the snapshot).
    Result<std::unique_ptr<LocalStore>> reader =
        LocalStore::Open(root, LocalStore::Mode::kReadOnly);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    Result<std::vector<SnapshotSummary>> none = (*reader)->ListSnapshots();
    ASSERT_TRUE(none.ok());
    EXPECT_TRUE(none->empty());
  }
  Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(root, LocalStore::Mode::kReadWrite);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE(ListOrEmpty(root + "/tmp").empty());
  EXPECT_EQ(ListOrEmpty(root + "/packs/ff"),
            (std::vector<std::string>{bad_name + ".pack.damaged"}));
  Result<std::optional<uint32_t>> size = (*store)->ChunkSealedSize(IdOf(AsBytes(kPlaintextB)));
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size->value_or(0), SealedB().size());
  Result<std::vector<SnapshotSummary>> snaps = (*store)->ListSnapshots();
  ASSERT_TRUE(snaps.ok()) << snaps.status().ToString();
  ASSERT_EQ(snaps->size(), 1u);
  EXPECT_EQ((*snaps)[0].id, m->id);
  // The recovered chunk opens: pack, wrapped key and sealed bytes all came back.
  std::unique_ptr<Keyset> ks = GoldenTenantKeyset(/*unlock=*/true);
  ASSERT_NE(ks, nullptr);
  Result<Bytes> sealed = (*store)->ReadSealedChunk(IdOf(AsBytes(PlaintextA())));
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  Result<Bytes> wrapped = (*store)->WrappedKey(kDataKeyId);
  ASSERT_TRUE(wrapped.ok());
  Result<SecretBytes> key = ks->UnwrapDataKey(kDataKeyId, *wrapped);
  ASSERT_TRUE(key.ok());
  Bytes plain;
  ASSERT_TRUE(OpenChunk(IdOf(AsBytes(PlaintextA())), *sealed, *key, IdHasher(), plain).ok());
  EXPECT_EQ(ToString(plain), PlaintextA());
}

TEST(GoldenStore, ForeignOrNewerStoresAreRefused) {
  testing::TempDir dir;
  const std::string root = dir.Sub("store");
  ASSERT_TRUE(LocalStore::Create(root).ok());
  // A directory without the marker is not a store (creation did not finish).
  ASSERT_EQ(::rename((root + "/FERRY-STORE").c_str(), (root + "/marker").c_str()), 0);
  ExpectCode(LocalStore::Open(root, LocalStore::Mode::kReadOnly), StatusCode::kFailedPrecondition,
             "not a Ferry store");
  testing::WriteFileOrDie(root + "/FERRY-STORE", AsBytes("ferry local store\nformat 2\n"));
  ExpectCode(LocalStore::Open(root, LocalStore::Mode::kReadOnly), StatusCode::kFailedPrecondition,
             "unsupported store format");
  ASSERT_EQ(::rename((root + "/marker").c_str(), (root + "/FERRY-STORE").c_str()), 0);
  {
    Result<std::unique_ptr<sqlite::Database>> db = sqlite::Database::Open(root + "/index.db", {});
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->SetUserVersion(3).ok());
  }
  ExpectCode(LocalStore::Open(root, LocalStore::Mode::kReadOnly), StatusCode::kFailedPrecondition,
             "index schema version 3");
  // One writer at a time.
  {
    Result<std::unique_ptr<sqlite::Database>> db = sqlite::Database::Open(root + "/index.db", {});
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->SetUserVersion(2).ok());
  }
  Result<std::unique_ptr<LocalStore>> writer = LocalStore::Open(root, LocalStore::Mode::kReadWrite);
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  ExpectCode(LocalStore::Open(root, LocalStore::Mode::kReadWrite), StatusCode::kUnavailable,
             "being written by another process");
}

// A store whose index was made from the frozen schema-1 golden (the schema
// before ReclaimPacks) is read as it is and migrated by a writer to exactly
// the current golden schema.
TEST(GoldenStore, IndexSchemaVersion1IsMigratedToTheCurrentSchema) {
  testing::TempDir dir;
  const std::string root = dir.Sub("store");
  const Bytes v1 = ReadGolden("store-schema-v1.sql");
  const Bytes current = ReadGolden("store-schema.sql");
  ASSERT_FALSE(v1.empty() || current.empty());
  { ASSERT_TRUE(LocalStore::Create(root).ok()); }
  for (const char* f : {"index.db", "index.db-wal", "index.db-shm"}) {
    ::unlink((root + "/" + f).c_str());
  }
  {
    Result<std::unique_ptr<sqlite::Database>> db = sqlite::Database::Open(root + "/index.db", {});
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    ASSERT_TRUE((*db)->Exec(AsStringView(v1)).ok());
    ASSERT_TRUE((*db)
                    ->Exec("INSERT INTO meta(key, value) VALUES ('store_id', '" +
                           std::string(32, 'a') + "')")
                    .ok());
    ASSERT_TRUE((*db)->SetUserVersion(1).ok());
    EXPECT_EQ(SchemaOf(**db), ToString(v1));
  }
  {
    Result<std::unique_ptr<LocalStore>> ro = LocalStore::Open(root, LocalStore::Mode::kReadOnly);
    ASSERT_TRUE(ro.ok()) << ro.status().ToString();
    Result<StoreStats> stats = (*ro)->Stats();
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  }
  {
    Result<std::unique_ptr<LocalStore>> store =
        LocalStore::Open(root, LocalStore::Mode::kReadWrite);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
  }
  Result<std::unique_ptr<sqlite::Database>> db = sqlite::Database::Open(root + "/index.db", {});
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(*(*db)->UserVersion(), 2);
  EXPECT_EQ(SchemaOf(**db), ToString(current));
}

}  // namespace
}  // namespace ferry::snapshot
