#include "snapshot/chunk_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "snapshot/chunk_reader.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"
#include "snapshot/pack.h"
#include "snapshot/sealed_chunk.h"
#include "snapshot/sealed_chunk_format.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::ferry::testing::CompressibleBytes;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::TempDir;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

class ChunkWriterTest : public ::testing::Test {
 protected:
  ChunkWriterTest() : tenant_(Keyset::Generate()) {}

  void SetUp() override {
    LocalStoreOptions opts;
    opts.target_pack_size = 64 << 10;  // several packs, rolled while writers run
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Create(dir_.Sub("store"), opts);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  // Every key id named by the packs on disk.
  std::set<KeyId> KeysInPacks() {
    std::set<KeyId> keys;
    Env& env = *Env::Default();
    const std::string packs = dir_.Sub("store/packs");
    Result<std::vector<std::string>> shards = env.ListDir(packs);
    EXPECT_TRUE(shards.ok());
    for (const std::string& shard : shards.ok() ? *shards : std::vector<std::string>{}) {
      Result<std::vector<std::string>> files = env.ListDir(packs + "/" + shard);
      EXPECT_TRUE(files.ok());
      for (const std::string& f : *files) {
        Result<PackContents> c = ReadPackIndex(env, packs + "/" + shard + "/" + f, true);
        EXPECT_TRUE(c.ok()) << c.status().ToString();
        if (!c.ok()) continue;
        for (const PackKey& k : c->keys) keys.insert(k.id);
      }
    }
    return keys;
  }

  Result<KeyId> KeyOfChunk(const ChunkId& id) {
    ASSIGN_OR_RETURN(Bytes sealed, store_->ReadSealedChunk(id));
    ASSIGN_OR_RETURN(SealedChunkHeader h, ParseSealedChunkHeader(sealed));
    return h.key_id;
  }

  TempDir dir_;
  std::unique_ptr<Keyset> tenant_;
  std::unique_ptr<LocalStore> store_;
};

TEST_F(ChunkWriterTest, ConcurrentWritersStoreEachDistinctChunkOnce) {
  constexpr int kThreads = 6;
  constexpr int kShared = 60;  // written by every thread
  constexpr int kOwn = 15;     // written by one thread only
  std::vector<Bytes> shared;
  for (int i = 0; i < kShared; ++i) {
    const size_t size = 1 + static_cast<size_t>(i) * 997 % 20000;
    shared.push_back(i % 3 == 0 ? CompressibleBytes(static_cast<uint64_t>(i), size, 0.3)
                                : SeededBytes(static_cast<uint64_t>(i), size));
  }
  std::vector<std::vector<Bytes>> own(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kOwn; ++i) {
      own[static_cast<size_t>(t)].push_back(
          SeededBytes(1000 + static_cast<uint64_t>(t * kOwn + i), 3000 + static_cast<size_t>(i)));
    }
  }

  ChunkWriter writer(*tenant_, *store_, {}, /*key_rotation_bytes=*/32 << 10);
  struct Written {
    const Bytes* plain;
    ChunkResult result;
  };
  std::vector<std::vector<Written>> results(kThreads);
  std::vector<Status> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<const Bytes*> order;
      for (const Bytes& b : shared) order.push_back(&b);
      for (const Bytes& b : own[static_cast<size_t>(t)]) order.push_back(&b);
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      std::shuffle(order.begin(), order.end(), rng);
      for (const Bytes* plain : order) {
        Result<ChunkResult> r = writer.Write(*plain);
        if (!r.ok()) {
          errors[static_cast<size_t>(t)] = r.status();
          return;
        }
        results[static_cast<size_t>(t)].push_back({plain, *r});
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (const Status& e : errors) ASSERT_TRUE(e.ok()) << e.ToString();
  ASSERT_TRUE(store_->Flush().ok());

  std::map<ChunkId, const Bytes*> distinct;
  std::map<ChunkId, int> new_count;
  std::map<ChunkId, uint32_t> sealed_size;
  uint64_t writes = 0, plain_bytes = 0;
  for (const auto& per_thread : results) {
    for (const Written& w : per_thread) {
      ++writes;
      plain_bytes += w.plain->size();
      EXPECT_EQ(w.result.id, tenant_->ChunkIdOf(*w.plain));
      EXPECT_EQ(w.result.plain_size, w.plain->size());
      distinct[w.result.id] = w.plain;
      if (w.result.is_new) ++new_count[w.result.id];
      auto [it, inserted] = sealed_size.emplace(w.result.id, w.result.sealed_size);
      EXPECT_EQ(it->second, w.result.sealed_size) << "every writer reports the kept size";
    }
  }
  ASSERT_EQ(distinct.size(), static_cast<size_t>(kShared + kThreads * kOwn));
  uint64_t new_plain = 0, stored = 0;
  for (const auto& [id, plain] : distinct) {
    EXPECT_EQ(new_count[id], 1) << "exactly one writer stored " << HexEncode(id);
    new_plain += plain->size();
    stored += sealed_size[id];
  }

  const ChunkWriterStats& stats = writer.stats();
  EXPECT_EQ(stats.chunks.load(), writes);
  EXPECT_EQ(stats.new_chunks.load(), distinct.size());
  EXPECT_EQ(stats.plain_bytes.load(), plain_bytes);
  EXPECT_EQ(stats.new_plain_bytes.load(), new_plain);
  EXPECT_EQ(stats.stored_bytes.load(), stored);
  Result<StoreStats> store_stats = store_->Stats();
  ASSERT_TRUE(store_stats.ok());
  EXPECT_EQ(store_stats->chunks, distinct.size());
  EXPECT_GT(store_stats->packs, 1u);

  ChunkReader reader(*store_, *tenant_);
  for (const auto& [id, plain] : distinct) {
    Result<std::optional<uint32_t>> size = store_->ChunkSealedSize(id);
    ASSERT_TRUE(size.ok());
    EXPECT_EQ(*size, std::optional<uint32_t>(sealed_size[id]));
    Result<Bytes> back = reader.Read(id, static_cast<uint32_t>(plain->size()));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, *plain);
  }
}

TEST_F(ChunkWriterTest, DataKeysRotateAfterKeyRotationBytes) {
  constexpr uint64_t kRotation = 10 * 1024;
  ChunkWriter writer(*tenant_, *store_, {}, kRotation);
  std::vector<Bytes> plains;
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 100; ++i) {
    plains.push_back(SeededBytes(i, 1024));
    Result<ChunkResult> r = writer.Write(plains.back());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->is_new);
    ids.push_back(r->id);
  }
  // Rewrites are deduplicated before sealing and do not use up a key.
  for (const Bytes& p : plains) ASSERT_FALSE(writer.Write(p)->is_new);
  ASSERT_TRUE(store_->Flush().ok());

  // 1024 plaintext bytes per chunk: a new key every 10 chunks.
  std::vector<KeyId> key_of(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    Result<KeyId> k = KeyOfChunk(ids[i]);
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    key_of[i] = *k;
  }
  const std::set<KeyId> keys(key_of.begin(), key_of.end());
  EXPECT_EQ(keys.size(), 10u);
  for (size_t i = 1; i < ids.size(); ++i) {
    if (i % 10 == 0) {
      EXPECT_NE(key_of[i], key_of[i - 1]) << "chunk " << i << " starts a new key";
    } else {
      EXPECT_EQ(key_of[i], key_of[i - 1]) << "chunk " << i;
    }
  }
  EXPECT_EQ(KeysInPacks(), keys) << "each key is recorded in the packs that use it";

  ChunkReader reader(*store_, *tenant_);
  for (const KeyId& k : keys) {
    Result<Bytes> wrapped = store_->WrappedKey(k);
    ASSERT_TRUE(wrapped.ok()) << wrapped.status().ToString();
    EXPECT_TRUE(tenant_->UnwrapDataKey(k, *wrapped).ok());
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    Result<Bytes> back = reader.Read(ids[i], 1024);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, plains[i]);
  }
}

TEST_F(ChunkWriterTest, DefaultRotationKeepsOneKeyForSmallWrites) {
  ChunkWriter writer(*tenant_, *store_);
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 30; ++i) {
    Result<ChunkResult> r = writer.Write(SeededBytes(i, 5000));
    ASSERT_TRUE(r.ok());
    ids.push_back(r->id);
  }
  ASSERT_TRUE(store_->Flush().ok());
  std::set<KeyId> keys;
  for (const ChunkId& id : ids) {
    Result<KeyId> k = KeyOfChunk(id);
    ASSERT_TRUE(k.ok());
    keys.insert(*k);
  }
  EXPECT_EQ(keys.size(), 1u);
}

TEST_F(ChunkWriterTest, RewritingAChunkIsNotNew) {
  ChunkWriter writer(*tenant_, *store_);
  const Bytes plain = CompressibleBytes(1, 30000, 0.4);
  Result<ChunkResult> first = writer.Write(plain);
  Result<ChunkResult> second = writer.Write(plain);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(first->is_new);
  EXPECT_FALSE(second->is_new);
  EXPECT_EQ(first->id, second->id);
  EXPECT_EQ(first->sealed_size, second->sealed_size);
  EXPECT_LT(first->sealed_size, plain.size()) << "compressible data is stored compressed";
  EXPECT_EQ(writer.stats().chunks.load(), 2u);
  EXPECT_EQ(writer.stats().new_chunks.load(), 1u);
  EXPECT_EQ(writer.stats().plain_bytes.load(), 2 * plain.size());
  EXPECT_EQ(writer.stats().new_plain_bytes.load(), plain.size());
  EXPECT_EQ(writer.stats().stored_bytes.load(), first->sealed_size);
}

TEST_F(ChunkWriterTest, EmptyChunkIsStoredAndRead) {
  ChunkWriter writer(*tenant_, *store_);
  Result<ChunkResult> r = writer.Write({});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->plain_size, 0u);
  ASSERT_TRUE(store_->Flush().ok());
  ChunkReader reader(*store_, *tenant_);
  Result<Bytes> back = reader.Read(r->id, 0);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->empty());
}

TEST_F(ChunkWriterTest, OversizedChunkIsInvalidArgument) {
  ChunkWriter writer(*tenant_, *store_);
  const Bytes too_big(size_t{kMaxChunkSize} + 1, 0);
  EXPECT_TRUE(HasCode(writer.Write(too_big).status(), StatusCode::kInvalidArgument));
  EXPECT_EQ(writer.stats().chunks.load(), 0u);
}

TEST_F(ChunkWriterTest, SealOptionsAreApplied) {
  SealOptions opts;
  opts.suite = evp::AeadSuite::kChaCha20Poly1305;
  opts.compress = false;
  ChunkWriter writer(*tenant_, *store_, opts);
  const Bytes plain(20000, 'x');
  Result<ChunkResult> r = writer.Write(plain);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sealed_size, plain.size() + sealed_chunk_format::kOverhead);
  ASSERT_TRUE(store_->Flush().ok());
  Result<Bytes> sealed = store_->ReadSealedChunk(r->id);
  ASSERT_TRUE(sealed.ok());
  Result<SealedChunkHeader> h = ParseSealedChunkHeader(*sealed);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->suite, evp::AeadSuite::kChaCha20Poly1305);
  EXPECT_EQ(h->flags, 0);
  ChunkReader reader(*store_, *tenant_);
  Result<Bytes> back = reader.Read(r->id, static_cast<uint32_t>(plain.size()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, plain);
}

TEST_F(ChunkWriterTest, ChunksWrittenWithAnAgentFileAreUnreadableWithIt) {
  // The write-only property end to end: an agent that holds only its key
  // file cannot decrypt what it (or anyone) stored.
  Result<std::unique_ptr<Keyset>> agent = Keyset::Parse(tenant_->SerializeAgent(), "agent.key");
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  ChunkWriter agent_writer(**agent, *store_);
  const Bytes plain = SeededBytes(5, 8000);
  Result<ChunkResult> r = agent_writer.Write(plain);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(store_->Flush().ok());

  ChunkReader agent_reader(*store_, **agent);
  Result<Bytes> denied = agent_reader.Read(r->id, static_cast<uint32_t>(plain.size()));
  EXPECT_TRUE(HasCode(denied.status(), StatusCode::kFailedPrecondition));
  EXPECT_THAT(denied.status().message(), HasSubstr("agent key file"));

  ChunkReader tenant_reader(*store_, *tenant_);
  Result<Bytes> back = tenant_reader.Read(r->id, static_cast<uint32_t>(plain.size()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, plain);

  // Same chunk ids for agent and tenant: the tenant's writer deduplicates.
  ChunkWriter tenant_writer(*tenant_, *store_);
  Result<ChunkResult> again = tenant_writer.Write(plain);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, r->id);
  EXPECT_FALSE(again->is_new);
}

TEST_F(ChunkWriterTest, ReadBackChecksTheExpectedSize) {
  ChunkWriter writer(*tenant_, *store_);
  const Bytes a = SeededBytes(1, 100), b = SeededBytes(2, 200);
  Result<ChunkResult> ra = writer.Write(a);
  Result<ChunkResult> rb = writer.Write(b);
  ASSERT_TRUE(ra.ok());
  ASSERT_TRUE(rb.ok());
  ASSERT_TRUE(store_->Flush().ok());
  ChunkReader reader(*store_, *tenant_);
  EXPECT_TRUE(HasCode(reader.Read(ra->id, 101).status(), StatusCode::kDataLoss));
  EXPECT_TRUE(HasCode(reader.Read(tenant_->ChunkIdOf(SeededBytes(3, 10)), 10).status(),
                      StatusCode::kNotFound));

  google::protobuf::RepeatedPtrField<pb::ChunkRef> refs;
  for (const ChunkResult* r : {&*ra, &*rb}) {
    pb::ChunkRef* ref = refs.Add();
    ref->set_id(std::string(r->id.begin(), r->id.end()));
    ref->set_size(r->plain_size);
  }
  Result<Bytes> all = reader.ReadAll(refs, 300);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  Bytes want = a;
  want.insert(want.end(), b.begin(), b.end());
  EXPECT_EQ(*all, want);
  EXPECT_TRUE(HasCode(reader.ReadAll(refs, 299).status(), StatusCode::kDataLoss));
}

}  // namespace
}  // namespace ferry::snapshot
