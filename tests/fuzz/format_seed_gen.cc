// Writes the seed corpora of the snapshot format, config and hub HTTP targets
// (tests/fuzz/README.md):
//
//   cmake --build build --target format_seed_gen
//   build/bin/format_seed_gen tests/fuzz/corpus [target...]
//
// Replaces the files in <dir>/<target>/ for sealed_chunk_fuzz, pack_fuzz,
// tree_fuzz, manifest_fuzz, keyset_fuzz, ref_set_fuzz, agent_config_fuzz,
// mirror_policy_fuzz, stream_batch_fuzz, hub_config_fuzz and
// http_request_fuzz (only those named, if any). The binary seeds are objects
// made by the library's own writers (SealChunk, PackWriter, TreeWriter, SignManifest, Keyset,
// RefSetBuilder) with the fixed keys of fuzz_formats.h; nonces, salts and
// generated keys are random, so every run writes different bytes of the same
// shape. The YAML seeds are the sample configs (configs/agent.yaml,
// configs/hub.yaml) and the examples in docs/ (every ```yaml block that is a
// MirrorPolicy or an agent config), plus a few variants written here; the
// HTTP seeds are a request for every route of docs/api.md and its usual
// errors, with placeholders for tokens and ids (fuzz_formats.h).
#include <stdlib.h>
#include <algorithm>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/env.h"
#include "core/evp.h"
#include "core/sodium.h"
#include "snapshot/keyset.h"
#include "snapshot/manifest.h"
#include "snapshot/pack.h"
#include "snapshot/ref_set.h"
#include "snapshot/sealed_chunk.h"
#include "snapshot/sealed_chunk_format.h"
#include "snapshot/stream_batch.h"
#include "snapshot/tree.h"
#include "tests/fuzz/fuzz_formats.h"

namespace ferry::fuzz {
namespace {

namespace fs = std::filesystem;
namespace pb = snapshot::pb;
using snapshot::ChunkId;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "format_seed_gen: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T OrDie(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what + ": " + r.status().ToString());
  return std::move(*r);
}

void OrDie(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

Bytes ReadOrDie(const std::string& path) {
  return OrDie(Env::Default()->ReadFile(path, 1 << 20), "reading " + path);
}

// Deterministic bytes; half of them compressible when `compressible`.
Bytes Content(uint64_t seed, size_t size, bool compressible) {
  Bytes b(size);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] =
        compressible && (i / 256) % 2 ? static_cast<uint8_t>('a' + i % 5) : static_cast<uint8_t>(x);
  }
  return b;
}

Bytes Concat(std::initializer_list<ByteView> parts) {
  Bytes out;
  for (ByteView p : parts) PutBytes(out, p);
  return out;
}

struct Corpus {
  std::string dir;
  std::map<std::string, Bytes> seeds;
  void Add(const std::string& name, Bytes input) { seeds[name] = std::move(input); }
  void Write() const {
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file()) fs::remove(entry.path());
    }
    for (const auto& [name, input] : seeds) {
      std::ofstream f(dir + "/" + name, std::ios::binary | std::ios::trunc);
      f.write(reinterpret_cast<const char*>(input.data()),
              static_cast<std::streamsize>(input.size()));
      if (!f) Die("cannot write " + dir + "/" + name);
    }
    std::printf("%s: %zu seeds\n", dir.c_str(), seeds.size());
  }
};

const evp::HmacSha256& IdHasher() {
  static const evp::HmacSha256 hasher(FixedKey(kChunkIdKeySalt));
  return hasher;
}

snapshot::DataKey FixedDataKey() {
  snapshot::DataKey key;
  key.id = {0xd4, 0x7a};
  key.key = SecretBytes(FixedKey(kDataKeySalt).data(), 32);
  return key;
}

Bytes Seal(ByteView plaintext, bool compress, evp::AeadSuite suite) {
  snapshot::SealOptions options;
  options.compress = compress;
  options.suite = suite;
  Bytes sealed;
  OrDie(snapshot::SealChunk(IdHasher().Compute(plaintext), plaintext, FixedDataKey(), sealed,
                            options),
        "seal");
  return sealed;
}

// --- sealed_chunk_fuzz ------------------------------------------------------

void SealedChunkSeeds(Corpus& c) {
  namespace sf = snapshot::sealed_chunk_format;
  const Bytes text = Content(1, 5000, true);
  const Bytes noise = Content(2, 300, false);
  const struct {
    const char* name;
    ByteView plaintext;
    bool compress;
    evp::AeadSuite suite;
  } chunks[] = {
      {"lz4", text, true, evp::AeadSuite::kAes256Gcm},
      {"stored", noise, true, evp::AeadSuite::kAes256Gcm},
      {"chacha-lz4", text, true, evp::AeadSuite::kChaCha20Poly1305},
      {"empty", {}, true, evp::AeadSuite::kAes256Gcm},
  };
  for (const auto& chunk : chunks) {
    const ChunkId id = IdHasher().Compute(chunk.plaintext);
    const Bytes sealed = Seal(chunk.plaintext, chunk.compress, chunk.suite);
    c.Add(std::string("as-is-") + chunk.name, Concat({Bytes{kSealedAsIs}, id, sealed}));
    // The same chunk's payload (the LZ4 block, or the plaintext), for the
    // target to encrypt under the same header.
    const ByteView header = ByteView(sealed).first(sf::kHeaderSize);
    Bytes payload;
    OrDie(evp::AeadOpen(chunk.suite, FixedDataKey().key.view(), header.subspan(sf::kOffNonce, 12),
                        Concat({id, header}), ByteView(sealed).subspan(sf::kHeaderSize), payload),
          "open");
    c.Add(std::string("payload-") + chunk.name,
          Concat({Bytes{kSealedPayload}, id, header, payload}));
    Bytes by_us{kSealedByUs};
    PutU16(by_us, 8 * 40 + 3);  // a bit of the ciphertext
    PutU8(by_us, static_cast<uint8_t>((chunk.compress ? 1 : 0) |
                                      (chunk.suite == evp::AeadSuite::kAes256Gcm ? 0 : 2)));
    PutBytes(by_us, chunk.plaintext);
    c.Add(std::string("sealed-by-us-") + chunk.name, by_us);
  }
}

// --- pack_fuzz --------------------------------------------------------------

// A pack of `count` chunks under `keys` data keys (chunk i uses key i % keys).
Bytes MakePack(const std::string& dir, const snapshot::Keyset& keyset, int count, int keys) {
  const std::string path = dir + "/pack";
  Env::Default()->RemoveFile(path).IgnoreError();
  std::unique_ptr<snapshot::PackWriter> w =
      OrDie(snapshot::PackWriter::Create(*Env::Default(), path), "pack");
  std::vector<snapshot::Keyset::NewDataKey> data_keys;
  for (int k = 0; k < keys; ++k) data_keys.push_back(keyset.MakeDataKey());
  for (int i = 0; i < count; ++i) {
    const snapshot::Keyset::NewDataKey& key = data_keys[static_cast<size_t>(i % keys)];
    const Bytes plaintext = Content(10 + static_cast<uint64_t>(i), 200 + 150 * i, i % 2 == 0);
    const ChunkId id = IdHasher().Compute(plaintext);
    Bytes sealed;
    OrDie(snapshot::SealChunk(id, plaintext, key.key, sealed), "seal");
    OrDie(w->Add(id, sealed, evp::Sha256(sealed), key.key.id, key.wrapped), "pack add");
  }
  OrDie(w->Finish(), "pack finish");
  return ReadOrDie(path);
}

void PackSeeds(Corpus& c, const std::string& tmp, const snapshot::Keyset& keyset) {
  const Bytes three = MakePack(tmp, keyset, 3, 2);
  c.Add("three-chunks-two-keys", Concat({Bytes{0}, three}));
  c.Add("three-chunks-two-keys-verify", Concat({Bytes{kPackVerifyEntries}, three}));
  c.Add("three-chunks-two-keys-verify-fix",
        Concat({Bytes{kPackVerifyEntries | kPackFixChecksum}, three}));
  c.Add("one-chunk-verify", Concat({Bytes{kPackVerifyEntries}, MakePack(tmp, keyset, 1, 1)}));
  c.Add("empty-verify", Concat({Bytes{kPackVerifyEntries}, MakePack(tmp, keyset, 0, 1)}));
}

// --- tree_fuzz --------------------------------------------------------------

pb::Node File(const std::string& name, const std::vector<Bytes>& chunks) {
  pb::Node n;
  n.set_name(name);
  n.set_type(pb::NODE_TYPE_FILE);
  n.set_mode(0644);
  n.set_uid(1000);
  n.set_gid(1000);
  n.set_mtime_ns(1'700'000'000'123'456'789);
  uint64_t size = 0;
  for (const Bytes& chunk : chunks) {
    const ChunkId id = IdHasher().Compute(chunk);
    pb::ChunkRef* ref = n.add_content();
    ref->set_id(id.data(), id.size());
    ref->set_size(static_cast<uint32_t>(chunk.size()));
    size += chunk.size();
  }
  n.set_size(size);
  return n;
}

Bytes Tree(const std::vector<pb::Node>& nodes) {
  Bytes out;
  for (const pb::Node& n : nodes) snapshot::TreeWriter::AppendNode(n, out);
  OrDie(snapshot::DecodeTree(out, "seed"), "tree seed");
  return out;
}

void TreeSeeds(Corpus& c) {
  pb::Node dir;
  dir.set_name("photos");
  dir.set_type(pb::NODE_TYPE_DIRECTORY);
  dir.set_mode(0755);
  pb::Node link;
  link.set_name("latest");
  link.set_type(pb::NODE_TYPE_SYMLINK);
  link.set_mode(0777);
  link.set_symlink_target("photos/2024-05-01.jpg");
  pb::Node file = File("notes.txt", {Content(3, 900, true), Content(4, 400, true)});
  pb::Xattr* x = file.add_xattrs();
  x->set_name("user.comment");
  x->set_value("kept");
  pb::Node sparse = File("disk.img", {Content(5, 4096, false)});
  sparse.set_size(1 << 20);  // a hole, then 4 KiB of data, then a hole
  pb::Extent* e = sparse.add_extents();
  e->set_offset(65536);
  e->set_length(4096);
  pb::Node hardlink = File("notes.bak", {Content(3, 900, true)});
  hardlink.set_hardlink_id(7);
  pb::Node empty = File("empty", {});
  c.Add("directory", Tree({sparse, empty, link, hardlink, file, dir}));
  c.Add("one-file", Tree({file}));
  c.Add("empty-tree", Tree({}));
}

// --- manifest_fuzz ----------------------------------------------------------

pb::Manifest Body(const snapshot::Keyset& keyset) {
  pb::Manifest m;
  m.set_format_version(snapshot::kManifestFormatVersion);
  m.set_created_unix_ns(1'700'000'000'000'000'000);
  m.set_parent(std::string(32, '\x42'));
  (*m.mutable_labels())["site"] = "plant-4";
  m.set_keyset_id(keyset.id().data(), keyset.id().size());
  m.mutable_refs()->set_count(12);
  m.mutable_refs()->set_sealed_bytes(123456);
  m.mutable_refs()->set_digest(std::string(32, '\x17'));
  m.set_hostname("edge-1");
  m.set_ferry_version("0.1.0");
  pb::Dataset* d = m.add_datasets();
  d->set_name("videos");
  d->set_kind(pb::DATASET_KIND_VOLUME);
  pb::ChunkRef* root = d->add_root();
  const ChunkId id = IdHasher().Compute(AsBytes("root tree"));
  root->set_id(id.data(), id.size());
  root->set_size(9);
  d->mutable_stats()->set_files(3);
  d->mutable_stats()->set_bytes(5000);
  return m;
}

void ManifestSeeds(Corpus& c, const snapshot::Keyset& keyset) {
  const sodium::SigningKeyPair fixed =
      OrDie(sodium::SigningKeyPairFromSeed(FixedKey(kSigningSeedSalt)), "signing key");
  const pb::Manifest body = Body(keyset);
  c.Add("envelope", Concat({Bytes{0}, OrDie(snapshot::SignManifest(body, fixed), "sign")}));
  c.Add("envelope-agent-key",
        Concat({Bytes{0}, OrDie(snapshot::SignManifest(body, keyset.signing_key()), "sign")}));
  Bytes sign{kManifestSign};
  PutU16(sign, 8 * 20 + 1);  // a bit of the body
  PutBytes(sign, AsBytes(body.SerializeAsString()));
  c.Add("body", sign);
  pb::Manifest minimal;
  minimal.set_format_version(snapshot::kManifestFormatVersion);
  minimal.set_keyset_id(std::string(16, '\x01'));
  minimal.mutable_refs()->set_digest(std::string(32, '\x02'));
  *minimal.add_datasets() = body.datasets(0);
  Bytes sign_minimal{kManifestSign, 0, 0};
  PutBytes(sign_minimal, AsBytes(minimal.SerializeAsString()));
  c.Add("body-minimal", sign_minimal);
}

// --- keyset_fuzz ------------------------------------------------------------

void KeysetSeeds(Corpus& c, const snapshot::Keyset& keyset) {
  const Bytes tenant =
      OrDie(keyset.SerializeTenant(kKeysetPassphrase, sodium::Argon2Params{1, 8 << 10}), "keyset");
  const Bytes agent = keyset.SerializeAgent();
  c.Add("tenant", Concat({Bytes{0}, tenant}));
  c.Add("tenant-fix", Concat({Bytes{kFixChecksum}, tenant}));
  c.Add("agent", Concat({Bytes{0}, agent}));
  c.Add("agent-fix", Concat({Bytes{kFixChecksum}, agent}));
}

// --- ref_set_fuzz -----------------------------------------------------------

void RefSetSeeds(Corpus& c, const std::string& tmp) {
  for (int count : {0, 1, 5, 40}) {
    snapshot::RefSetBuilder builder(*Env::Default(), tmp);
    for (int i = 0; i < count; ++i) {
      const Bytes chunk = Content(100 + static_cast<uint64_t>(i), 64, false);
      OrDie(builder.Add(IdHasher().Compute(chunk), 100 + 37 * static_cast<uint32_t>(i)), "refs");
    }
    const std::string path = tmp + "/refs-" + std::to_string(count);
    OrDie(builder.Finish(path), "refs finish");
    const Bytes refs = ReadOrDie(path);
    c.Add(std::to_string(count) + "-entries", Concat({Bytes{0}, refs}));
    c.Add(std::to_string(count) + "-entries-fix", Concat({Bytes{kFixChecksum}, refs}));
  }
}

// --- agent_config_fuzz, mirror_policy_fuzz ----------------------------------

// The ```yaml blocks of a Markdown file.
std::vector<std::string> YamlBlocks(const std::string& path) {
  std::ifstream f(path);
  if (!f) Die("cannot read " + path);
  std::vector<std::string> blocks;
  std::string line;
  bool in = false;
  while (std::getline(f, line)) {
    if (!in && line == "```yaml") {
      in = true;
      blocks.emplace_back();
    } else if (in && line.rfind("```", 0) == 0) {
      in = false;
    } else if (in) {
      blocks.back() += line + "\n";
    }
  }
  return blocks;
}

void YamlSeeds(Corpus& agent, Corpus& policy, const std::string& source) {
  const Bytes sample = ReadOrDie(source + "/configs/agent.yaml");
  agent.Add("configs-agent.yaml", sample);
  for (const char* doc : {"policies", "operator-guide"}) {
    int n = 0;
    for (const std::string& block : YamlBlocks(source + "/docs/" + doc + ".md")) {
      const std::string name = std::string(doc) + "-" + std::to_string(++n) + ".yaml";
      if (block.find("kind: MirrorPolicy") != std::string::npos) policy.Add(name, ToBytes(block));
      if (block.find("stateDir:") != std::string::npos) agent.Add(name, ToBytes(block));
    }
  }
  agent.Add("minimal.yaml", ToBytes("agent: {name: edge-1}\nstateDir: /var/lib/ferry-agent\n"
                                    "keyset: {file: /etc/ferry/agent.key}\n"));
  agent.Add(
      "streams-and-socket.yaml",
      ToBytes("agent: {name: edge-2, labels: {site: plant-4}}\n"
              "stateDir: /var/lib/ferry-agent\n"
              "hubs: [{name: cloud, url: \"ws://[::1]:7070/v1/link\"}]\n"
              "datasets:\n"
              "  - {name: logs, path: /var/log/app, chunkSize: 16KiB,\n"
              "     preHook: {command: [/usr/bin/sync, -f], timeout: 10s}}\n"
              "streams:\n"
              "  - {name: events, fsync: 50ms, maxRecordSize: 64KiB,\n"
              "     segmentSize: 1MiB, retention: {age: 1d, size: 1GiB}}\n"
              "keyset: {file: /etc/ferry/tenant.keyset, passphraseEnv: FERRY_PASS}\n"
              "api: {unixSocket: /run/ferry-agent.sock}\n"
              "replication: {failoverAfter: 10m, backoffInitial: 500ms, backoffMax: 5m}\n"
              "policies:\n"
              "  - apiVersion: ferry/v1\n"
              "    kind: MirrorPolicy\n"
              "    metadata: &meta {name: logs-hourly}\n"
              "    spec: {datasets: [logs], schedule: {every: 1h}, targets: [{hub: cloud}]}\n"));
  // Found by the targets (docs/reliability.md, "Fuzzing"): a byte of the
  // document echoed raw in an error message.
  policy.Add("regression-unknown-escape.yaml",
             ToBytes("apiVersion: ferry/v1\nkind: \"Mirror\\\x1bPolicy\"\n"));
  agent.Add("regression-non-ascii-url.yaml",
            ToBytes("agent: {name: edge-1}\nstateDir: /var/lib/ferry-agent\n"
                    "hubs: [{name: cloud, url: \"ws://127.0.0.1:\\xff7070\"}]\n"
                    "keyset: {file: /etc/ferry/agent.key}\n"));
  policy.Add("every-with-windows.yaml",
             ToBytes("apiVersion: ferry/v1\nkind: MirrorPolicy\n"
                     "metadata: {name: night-sync, tenant: acme}\n"
                     "spec:\n  datasets: [db]\n  schedule: {every: 10m}\n"
                     "  targets: [{hub: onprem}]\n"
                     "  bandwidth:\n    limit: 2MiB/s\n    windows:\n"
                     "      - {days: [Sat, Sun], from: \"00:00\", to: \"24:00\", limit: 50MB/s}\n"
                     "      - {days: Mon-Fri, from: \"22:00\", to: \"06:00\", limit: 1.5MB/s}\n"));
  policy.Add("json.json",
             ToBytes(R"({"apiVersion":"ferry/v1","kind":"MirrorPolicy",)"
                     R"("metadata":{"name":"cams","tenant":"retail"},)"
                     R"("spec":{"agents":{"matchLabels":{"site":"shop"}},"datasets":["videos"],)"
                     R"("schedule":"0 */2 * Jan-Jun Mon-Fri","timeZone":"UTC",)"
                     R"("targets":[{"hub":"east"}],"retention":{"keepLast":4,"daily":7},)"
                     R"("rpo":"1h30m"}})"));
}

// --- hub_config_fuzz ----------------------------------------------------------

void HubConfigSeeds(Corpus& corpus, const std::string& source) {
  corpus.Add("configs-hub.yaml", ReadOrDie(source + "/configs/hub.yaml"));
  corpus.Add("minimal.yaml", ToBytes("listen: \"127.0.0.1:0\"\ndataDir: /var/lib/ferry-hub\n"));
  corpus.Add("every-key.yaml",
             ToBytes("listen: \"[::1]:9443\"\ndataDir: \"/srv/ferry/hub\"\n"
                     "publicUrl: \"ws://hub.example.com/v1/link\"\n"
                     "log:\n  format: json\n  level: debug\n"
                     "limits:\n  maxSessions: 100000\n  ioThreads: 64\n  maxFrameBytes: 65536\n"
                     "  uploadWindowBytes: 1073741824\n  maxHttpBodyBytes: 1024\n"
                     "  sessionIdleTimeout: \"1h30m\"\n"
                     "auth:\n  maxFailures: 0\n  failureWindow: \"1d\"\n  maxAddresses: 16\n"
                     "shutdownGrace: \"2m5s\"\n"));
  corpus.Add(
      "flow-and-anchors.yaml",
      ToBytes("{listen: &l \"0.0.0.0:7070\", dataDir: /data, log: {format: text, level: "
              "warn},\n limits: &lim {maxSessions: 8, ioThreads: 1, maxFrameBytes: 1048576,\n"
              "   uploadWindowBytes: 1048576, maxHttpBodyBytes: 65536, "
              "sessionIdleTimeout: 45s},\n"
              " auth: {maxFailures: 3, failureWindow: 10m, maxAddresses: 1000000}, "
              "shutdownGrace: 1s}\n"));
  corpus.Add("out-of-range.yaml",
             ToBytes("listen: \"hub.example.com:70000\"\nlimits:\n  maxSessions: 0\n"
                     "  uploadWindowBytes: 1024\nauth:\n  failureWindow: 2d\n"
                     "log: {level: loud, format: xml}\n"));
  corpus.Add("unknown-key.yaml", ToBytes("listen: \"0.0.0.0:7070\"\nlimits:\n  maxSesions: 10\n"));
  corpus.Add("wrong-types.yaml",
             ToBytes("limits:\n  ioThreads: two\n  maxSessions: [1, 2]\nlisten: {host: a}\n"));
  // Found by hub_config_fuzz (docs/reliability.md, "Fuzzing"): a key that
  // is a list threw out of ferry-hub; bytes of the document echoed raw in
  // messages.
  corpus.Add("regression-complex-key.yaml", ToBytes("log:\n  ? [format, level]\n  : json\n"));
  corpus.Add("regression-raw-bytes-in-key.yaml", ToBytes("auth:\n  max\x1b[2J\x93\x9e"
                                                         "Addresses: 16\n"));
  corpus.Add("regression-unknown-escape.yaml", ToBytes("listen: \"0.0.0.0:70\\\x1b"
                                                       "70\"\n"));
  corpus.Add("regression-raw-bytes-in-listen.yaml", ToBytes("listen: \"\\x01\\x1b[31m\"\n"));
  corpus.Add("regression-raw-bytes-in-log-level.yaml", ToBytes("log: {level: \"\\u202e\\x07\"}\n"));
}

// --- http_request_fuzz --------------------------------------------------------

// One request as a client sends it: the body with a Content-Length, or
// chunked in two chunks.
struct HttpSeed {
  std::string method = "GET";
  std::string target = "/";
  std::string token = "";  // for "Authorization: Bearer ..." (a placeholder)
  std::string body = "";
  std::string type = "application/json";  // Content-Type of a body
  std::string headers = "";               // more header lines, each with its CRLF
  std::string version = "1.1";
  bool chunked = false;
};

std::string Http(const HttpSeed& r) {
  std::string out = r.method + " " + r.target + " HTTP/" + r.version + "\r\n" +
                    "Host: hub.example:7070\r\nUser-Agent: ferryctl/0.1\r\n";
  if (!r.token.empty()) out += "Authorization: Bearer " + r.token + "\r\n";
  out += r.headers;
  if (r.body.empty()) return out + "\r\n";
  if (!r.type.empty()) out += "Content-Type: " + r.type + "\r\n";
  if (!r.chunked) {
    return out + "Content-Length: " + std::to_string(r.body.size()) + "\r\n\r\n" + r.body;
  }
  out += "Transfer-Encoding: chunked\r\n\r\n";
  const size_t half = r.body.size() / 2;
  for (const std::string& part : {r.body.substr(0, half), r.body.substr(half)}) {
    char size[16];
    std::snprintf(size, sizeof size, "%zx", part.size());
    if (!part.empty()) out += std::string(size) + "\r\n" + part + "\r\n";
  }
  return out + "0\r\n\r\n";
}

void AddHttp(Corpus& corpus, const std::string& name, uint8_t config,
             std::initializer_list<HttpSeed> requests) {
  Bytes input{config};
  for (const HttpSeed& r : requests) PutBytes(input, AsBytes(Http(r)));
  corpus.Add(name + ".http", std::move(input));
}

// A request for every route of docs/api.md (and their usual errors),
// with the tokens and ids as placeholders (fuzz_formats.h).
void HttpSeeds(Corpus& c) {
  constexpr uint8_t kNone = kHttpTokenNone, kRoot = kHttpTokenRoot, kAdmin = kHttpTokenAdmin,
                    kReader = kHttpTokenReader;
  const std::string policy =
      "apiVersion: ferry/v1\nkind: MirrorPolicy\nmetadata: {name: dogs}\nspec:\n"
      "  agents: {matchLabels: {site: shop}}\n  datasets: [videos]\n"
      "  schedule: \"*/15 * * * *\"\n  targets: [{hub: cloud-east}]\n"
      "  retention: {keepLast: 4, daily: 7}\n";
  const std::string policy_json =
      R"({"apiVersion":"ferry/v1","kind":"MirrorPolicy","metadata":{"name":"yard",)"
      R"("tenant":"acme"},"spec":{"agents":{"matchLabels":{"site":"shop"}},)"
      R"("datasets":["videos"],"schedule":{"every":"1h"},"targets":[{"hub":"cloud-east"}],)"
      R"("retention":{"keepLast":2},"rpo":"2h"}})";
  std::string bad_policy = policy;
  bad_policy.replace(bad_policy.find("daily: 7"), 8, "daily: -1");

  // Operational.
  AddHttp(c, "healthz", kNone, {{.method = "GET", .target = "/healthz"}});
  AddHttp(c, "readyz", kNone, {{.method = "GET", .target = "/readyz"}});
  AddHttp(c, "metrics", kNone, {{.method = "GET", .target = "/metrics"}});
  // Tenants, and authentication.
  AddHttp(c, "tenants-list-root", kNone,
          {{.method = "GET", .target = "/v1/tenants", .token = "$ROOT"}});
  AddHttp(c, "tenants-list-reader", kNone,
          {{.method = "GET", .target = "/v1/tenants", .token = "$READER"}});
  AddHttp(c, "tenants-no-token", kNone, {{.method = "GET", .target = "/v1/tenants"}});
  AddHttp(c, "tenants-basic-auth", kNone,
          {{.method = "GET",
            .target = "/v1/tenants",
            .headers = "Authorization: Basic YWRtaW46YWRtaW4=\r\n"}});
  AddHttp(
      c, "tenants-guessed-tokens-throttled", kHttpThrottle,
      {{.method = "GET", .target = "/v1/tenants", .token = "fry_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0"},
       {.method = "GET", .target = "/v1/tenants", .token = "fry_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"},
       {.method = "GET", .target = "/v1/tenants", .token = "fry_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2"},
       {.method = "GET", .target = "/v1/tenants", .token = "$ROOT"}});
  AddHttp(c, "tenant-create", kNone,
          {{.method = "POST",
            .target = "/v1/tenants",
            .token = "$ROOT",
            .body = R"({"name": "initech"})"}});
  AddHttp(c, "tenant-create-bad-name", kNone,
          {{.method = "POST",
            .target = "/v1/tenants",
            .token = "$ROOT",
            .body = R"({"name": "Not A Name"})"}});
  AddHttp(
      c, "tenant-create-malformed-json", kNone,
      {{.method = "POST", .target = "/v1/tenants", .token = "$ROOT", .body = R"({"name": "x",)"}});
  AddHttp(c, "tenant-create-unknown-field", kNone,
          {{.method = "POST",
            .target = "/v1/tenants",
            .token = "$ROOT",
            .body = R"({"name": "x", "owner": "me"})"}});
  AddHttp(c, "tenant-create-deep-json", kRoot,
          {{.method = "POST",
            .target = "/v1/tenants",
            .body = "{\"name\": " + std::string(20, '[') + std::string(20, ']') + "}"}});
  AddHttp(c, "tenant-create-by-tenant-admin", kNone,
          {{.method = "POST",
            .target = "/v1/tenants",
            .token = "$ADMIN",
            .body = R"({"name": "umbrella"})"}});
  AddHttp(c, "tenant-get", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme", .token = "$ADMIN"}});
  AddHttp(c, "tenant-get-other-tenant", kNone,
          {{.method = "GET", .target = "/v1/tenants/globex", .token = "$ADMIN"}});
  // Enrollment and agents.
  AddHttp(c, "enrollment-token", kNone,
          {{.method = "POST",
            .target = "/v1/tenants/acme/enrollment-tokens",
            .token = "$ADMIN",
            .body = R"({"ttl_seconds": 600, "agent_name": "cam-9", )"
                    R"("labels": {"site": "shop", "zone": "b"}})"}});
  AddHttp(c, "enrollment-token-empty-body", kAdmin,
          {{.method = "POST", .target = "/v1/tenants/acme/enrollment-tokens"}});
  AddHttp(c, "enrollment-token-bad-ttl", kAdmin,
          {{.method = "POST",
            .target = "/v1/tenants/acme/enrollment-tokens",
            .body = R"({"ttl_seconds": -5, "labels": {"bad key!": 1}})"}});
  AddHttp(c, "agents-list", kReader, {{.method = "GET", .target = "/v1/tenants/acme/agents"}});
  AddHttp(c, "agent-get", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/agents/cam-1", .token = "$READER"}});
  AddHttp(c, "agent-get-revoked", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/agents/cam-2", .token = "$READER"}});
  AddHttp(c, "agent-revoke", kNone,
          {{.method = "POST", .target = "/v1/tenants/acme/agents/cam-1/revoke", .token = "$ADMIN"},
           {.method = "GET", .target = "/v1/tenants/acme/agents/cam-1", .token = "$ADMIN"}});
  AddHttp(c, "status", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/status", .token = "$READER"}});
  // Snapshots, chunks, keys.
  AddHttp(c, "snapshots-list", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/snapshots", .token = "$READER"}});
  AddHttp(c, "snapshots-list-filtered", kNone,
          {{.method = "GET",
            .target = "/v1/tenants/acme/snapshots?agent=cam-1&dataset=videos&"
                      "since=2023-11-14T00:00:00Z&until=1700000000&limit=10",
            .token = "$READER"}});
  AddHttp(c, "snapshots-list-times", kReader,
          {{.method = "GET",
            .target = "/v1/tenants/acme/snapshots?since=2023-11-14T12:00:00.5%2B02:00&"
                      "until=2024-02-29"}});
  AddHttp(
      c, "snapshots-list-bad-query", kReader,
      {{.method = "GET", .target = "/v1/tenants/acme/snapshots?limit=0&since=yesterday&x=%zz"}});
  AddHttp(c, "snapshot-get", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/snapshots/$SNAP", .token = "$READER"}});
  AddHttp(c, "snapshot-manifest", kNone,
          {{.method = "GET",
            .target = "/v1/tenants/acme/snapshots/$SNAP/manifest",
            .token = "$READER"}});
  AddHttp(
      c, "snapshot-refs", kNone,
      {{.method = "GET", .target = "/v1/tenants/acme/snapshots/$SNAP/refs", .token = "$READER"}});
  AddHttp(c, "snapshot-unknown", kReader,
          {{.method = "GET", .target = "/v1/tenants/acme/snapshots/" + std::string(64, '0')}});
  AddHttp(c, "snapshot-bad-id", kReader,
          {{.method = "GET", .target = "/v1/tenants/acme/snapshots/xyz/manifest"}});
  AddHttp(c, "chunk-get", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/chunks/$CHUNK", .token = "$READER"}});
  std::string unknown_chunk;
  for (int i = 0; i < 32; ++i) unknown_chunk += "ab";
  AddHttp(c, "chunk-unknown", kReader,
          {{.method = "GET", .target = "/v1/tenants/acme/chunks/" + unknown_chunk}});
  AddHttp(c, "key-get", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/keys/$KEY", .token = "$READER"}});
  AddHttp(c, "key-other-tenant", kNone,
          {{.method = "GET", .target = "/v1/tenants/globex/keys/$KEY", .token = "$ROOT"}});
  // Policies.
  AddHttp(c, "policies-list", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/policies", .token = "$READER"}});
  AddHttp(c, "policy-get", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/policies/cams", .token = "$READER"}});
  const HttpSeed put_yaml{.method = "PUT",
                          .target = "/v1/tenants/acme/policies/dogs",
                          .token = "$ADMIN",
                          .body = policy,
                          .type = "application/yaml"};
  AddHttp(c, "policy-put-yaml", kNone, {put_yaml, put_yaml});
  AddHttp(c, "policy-put-json", kAdmin,
          {{.method = "PUT",
            .target = "/v1/tenants/acme/policies/yard",
            .body = policy_json,
            .type = "application/json; charset=utf-8"}});
  AddHttp(c, "policy-put-chunked", kAdmin,
          {{.method = "PUT",
            .target = "/v1/tenants/acme/policies/dogs",
            .body = policy,
            .type = "text/yaml",
            .chunked = true}});
  AddHttp(c, "policy-put-wrong-name", kAdmin,
          {{.method = "PUT",
            .target = "/v1/tenants/acme/policies/cats",
            .body = policy,
            .type = "application/x-yaml"}});
  AddHttp(c, "policy-put-bad-type", kAdmin,
          {{.method = "PUT",
            .target = "/v1/tenants/acme/policies/dogs",
            .body = policy,
            .type = "text/plain"}});
  AddHttp(c, "policy-put-invalid", kAdmin,
          {{.method = "PUT",
            .target = "/v1/tenants/acme/policies/dogs",
            .body = bad_policy,
            .type = "application/yaml"}});
  AddHttp(c, "policy-delete", kNone,
          {{.method = "DELETE", .target = "/v1/tenants/acme/policies/cams", .token = "$ADMIN"},
           {.method = "GET", .target = "/v1/tenants/acme/policies", .token = "$ADMIN"}});
  // API tokens.
  AddHttp(c, "tokens-tenant-list", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/tokens", .token = "$ADMIN"}});
  AddHttp(c, "token-create", kNone,
          {{.method = "POST",
            .target = "/v1/tenants/acme/tokens",
            .token = "$ADMIN",
            .body = R"({"role": "operator", "description": "ci pipeline"})"}});
  AddHttp(
      c, "token-create-bad-role", kAdmin,
      {{.method = "POST", .target = "/v1/tenants/acme/tokens", .body = R"({"role": "owner"})"}});
  AddHttp(c, "tokens-all", kRoot, {{.method = "GET", .target = "/v1/tokens"}});
  AddHttp(c, "token-get", kNone,
          {{.method = "GET", .target = "/v1/tokens/$TOKID", .token = "$ADMIN"}});
  AddHttp(c, "token-revoke", kNone,
          {{.method = "DELETE", .target = "/v1/tokens/$TOKID", .token = "$ROOT"},
           {.method = "GET", .target = "/v1/tenants", .token = "$READER"}});
  AddHttp(c, "token-bad-id", kRoot, {{.method = "GET", .target = "/v1/tokens/tok-XYZ"}});
  // Sessions and streams.
  AddHttp(c, "sessions", kNone,
          {{.method = "GET", .target = "/v1/tenants/acme/sessions?limit=5", .token = "$READER"}});
  AddHttp(
      c, "streams-list", kNone,
      {{.method = "GET", .target = "/v1/tenants/acme/streams?agent=cam-1", .token = "$READER"}});
  AddHttp(c, "stream-read", kNone,
          {{.method = "GET",
            .target = "/v1/streams/acme/cam-1/events?from=0&max_bytes=1024",
            .token = "$READER"}});
  AddHttp(c, "stream-read-past-end", kReader,
          {{.method = "GET", .target = "/v1/streams/acme/cam-1/events?from=5"}});
  AddHttp(c, "stream-read-unknown", kReader,
          {{.method = "GET", .target = "/v1/streams/acme/cam-1/nope?max_bytes=0"}});
  // HTTP itself: methods, paths, versions, pipelining, limits, the link.
  AddHttp(c, "method-not-allowed", kRoot, {{.method = "PATCH", .target = "/v1/tenants"}});
  AddHttp(c, "unknown-path", kRoot, {{.method = "GET", .target = "/v1/tenants/acme/frobs"}});
  AddHttp(c, "long-target", kRoot,
          {{.method = "GET", .target = "/v1/tenants/" + std::string(2100, 'a')}});
  AddHttp(c, "http10", kRoot,
          {{.method = "GET", .target = "/v1/tenants/acme", .version = "1.0"},
           {.method = "GET", .target = "/healthz"}});
  AddHttp(c, "pipelined-keep-alive", kAdmin,
          {{.method = "GET", .target = "/v1/tenants/acme/policies"},
           {.method = "DELETE", .target = "/v1/tenants/acme/policies/cams"},
           {.method = "GET",
            .target = "/v1/tenants/acme/policies/cams",
            .headers = "Connection: close\r\n"},
           {.method = "GET", .target = "/healthz"}});
  AddHttp(c, "body-over-small-limit", kHttpSmallBody,
          {{.method = "POST",
            .target = "/v1/tenants",
            .token = "$ROOT",
            .body = "{\"name\": \"" + std::string(1100, 'x') + "\"}"}});
  AddHttp(c, "link-upgrade", kNone,
          {{.method = "GET",
            .target = "/v1/link",
            .headers = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Protocol: ferry-link-v1\r\n"}});
  AddHttp(c, "link-without-upgrade", kNone,
          {{.method = "GET", .target = "/v1/link"}, {.method = "GET", .target = "/readyz"}});
}

// --- stream_batch_fuzz -----------------------------------------------------

void StreamBatchSeeds(Corpus& corpus) {
  const auto signer = sodium::SigningKeyPairFromSeed(FixedKey(kSigningSeedSalt));
  if (!signer.ok()) Die("signing key: " + signer.status().ToString());
  snapshot::StreamBatchKey key;
  key.key.key = SecretBytes(FixedKey(kDataKeySalt).data(), 32);
  key.key.id.fill(0x42);
  key.wrapped.assign(snapshot::kWrappedDataKeySize, 0x57);
  const std::array<uint8_t, 12> nonce{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  struct Case {
    const char* name;
    std::vector<std::string> records;
    bool compress;
    evp::AeadSuite suite;
  };
  const Case cases[] = {
      {"one", {"{\"t\":1}"}, false, evp::AeadSuite::kAes256Gcm},
      {"lz4", std::vector<std::string>(40, "{\"sensor\":\"t1\",\"celsius\":21}"), true,
       evp::AeadSuite::kAes256Gcm},
      {"chacha",
       {"", std::string("\x00\xff\x10", 3), "text"},
       false,
       evp::AeadSuite::kChaCha20Poly1305},
  };
  for (const Case& c : cases) {
    std::vector<ByteView> views;
    for (const std::string& r : c.records) views.push_back(AsBytes(r));
    snapshot::StreamBatchSealOptions options;
    options.compress = c.compress;
    options.suite = c.suite;
    options.nonce_for_test = &nonce;
    Result<Bytes> sealed = snapshot::SealStreamBatch("events", 1000, views, key, *signer, options);
    if (!sealed.ok()) Die("seal: " + sealed.status().ToString());
    Bytes as_is{kBatchAsIs};
    PutBytes(as_is, *sealed);
    corpus.Add(std::string("as-is-") + c.name, std::move(as_is));
    Bytes by_us{kBatchByUs};
    PutU16(by_us, 77);
    by_us.push_back(static_cast<uint8_t>((c.compress ? 1 : 0) |
                                         (c.suite == evp::AeadSuite::kChaCha20Poly1305 ? 2 : 0)));
    PutU64(by_us, 1000);
    by_us.push_back(6);
    PutBytes(by_us, AsBytes("events"));
    for (ByteView v : views) AppendFrame(by_us, v);
    corpus.Add(std::string("by-us-") + c.name, std::move(by_us));
  }
}

int Main(const std::string& out_dir, const std::vector<std::string>& only) {
  std::string tmp = (fs::temp_directory_path() / "ferry-format-seeds-XXXXXX").string();
  if (!mkdtemp(tmp.data())) Die("mkdtemp failed");
  const std::unique_ptr<snapshot::Keyset> keyset = snapshot::Keyset::Generate();

  std::map<std::string, Corpus> corpora;
  for (const char* target :
       {"sealed_chunk_fuzz", "pack_fuzz", "tree_fuzz", "manifest_fuzz", "keyset_fuzz",
        "ref_set_fuzz", "agent_config_fuzz", "mirror_policy_fuzz", "stream_batch_fuzz",
        "hub_config_fuzz", "http_request_fuzz"}) {
    corpora[target] = Corpus{out_dir + "/" + target, {}};
  }
  SealedChunkSeeds(corpora["sealed_chunk_fuzz"]);
  PackSeeds(corpora["pack_fuzz"], tmp, *keyset);
  TreeSeeds(corpora["tree_fuzz"]);
  ManifestSeeds(corpora["manifest_fuzz"], *keyset);
  KeysetSeeds(corpora["keyset_fuzz"], *keyset);
  RefSetSeeds(corpora["ref_set_fuzz"], tmp);
  YamlSeeds(corpora["agent_config_fuzz"], corpora["mirror_policy_fuzz"], FERRY_SOURCE_DIR);
  StreamBatchSeeds(corpora["stream_batch_fuzz"]);
  HubConfigSeeds(corpora["hub_config_fuzz"], FERRY_SOURCE_DIR);
  HttpSeeds(corpora["http_request_fuzz"]);
  for (const auto& [target, corpus] : corpora) {
    // Some seeds hold random keys: rewrite only the corpora asked for.
    if (only.empty() || std::find(only.begin(), only.end(), target) != only.end()) corpus.Write();
  }
  fs::remove_all(tmp);
  return 0;
}

}  // namespace
}  // namespace ferry::fuzz

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <corpus dir, e.g. tests/fuzz/corpus> [target...]\n", argv[0]);
    return 2;
  }
  return ferry::fuzz::Main(argv[1], std::vector<std::string>(argv + 2, argv + argc));
}
