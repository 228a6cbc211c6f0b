// Power-loss suite (docs/reliability.md, "Power loss and crash sites"): a
// store capturing, committing and reclaiming, and a stream log appending and
// truncating, run in a forked child on a PowerLossEnv (the fault-injecting
// file layer under core/env.h) and are stopped at
//  - every named crash site they pass (core/crash_site.h: before and after
//    pack renames, index commits, refs and manifest writes, snapshot rows,
//    reclaim steps), and
//  - seeded random file operations (before a create, append, fsync, rename,
//    unlink or directory fsync),
// where the files are left as a power cut could have left them: unsynced
// appends kept, dropped or torn (garbage in the last part kept), unsynced
// directory entries kept up to a random point and undone after it.
//
// The child writes a ledger of what it acknowledged to a pipe (outside every
// faulted file). After each crash the parent reopens what is on disk
// (recovery) and checks: every acknowledged snapshot is listed and restores
// byte for byte from the regenerated source trees; the packs verify; SQLite
// integrity_check is clean; no pack is set aside as damaged and tmp/ is
// empty; leftovers are reclaimable (ReclaimPacks of everything no snapshot
// needs, then verify and restore again); the store takes a new snapshot. For
// the stream: the log opens, every acknowledged record is there with its
// bytes, offsets dense; it appends again.
//
// Quick mode (CI): every site once and 60 random operations.
// FERRY_FAULT_LONG=1: every site at 3 of its passes and 600 random operations.
// FERRY_CRASH_SEED=N replays a run (the seed is printed).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/crash_site.h"
#include "core/sqlite.h"
#include "snapshot/keyset.h"
#include "snapshot/local_store.h"
#include "snapshot/restorer.h"
#include "snapshot/stream_log.h"
#include "snapshot/volume_capture.h"
#include "tests/testing/power_loss_env.h"
#include "tests/testing/test_util.h"

namespace ferry::testing {
namespace {

using snapshot::LocalStore;
using snapshot::SnapshotId;

constexpr int kSnapshots = 6;
constexpr int kStreamBatches = 60;

// --- the child's side ---------------------------------------------------

// What the crash handlers need (they are plain function pointers).
PowerLossEnv* g_env = nullptr;
std::mt19937_64 g_loss_rng;
int g_ledger_fd = -1;
std::string_view g_site;
int g_site_left = 0;
std::map<std::string, int> g_site_hits;

void Ledger(const std::string& line) {
  const std::string l = line + "\n";
  [[maybe_unused]] ssize_t n = ::write(g_ledger_fd, l.data(), l.size());
}

// The power cut: files as a cut leaves them, then gone without a word.
[[noreturn]] void PowerCut(bool env_locked, const std::string& where) {
  const PowerLossReport r = env_locked ? g_env->SimulatePowerLossLocked(g_loss_rng)
                                       : g_env->SimulatePowerLoss(g_loss_rng);
  Ledger("cut " + where + ": " + r.ToString());
  ::_exit(kCrashSiteExitCode);
}

void CountSite(std::string_view site) { ++g_site_hits[std::string(site)]; }

void CutAtSite(std::string_view site) {
  if (site == g_site && --g_site_left == 0) PowerCut(false, "site " + std::string(site));
}

// The record at `offset` of the stream workload.
std::string RecordAt(uint64_t seed, uint64_t offset) {
  return "{\"o\":" + std::to_string(offset) +
         ",\"v\":" + std::to_string(((offset + 1) * 0x9E3779B97F4A7C15ull ^ seed) % 1000003) + "}";
}

// --- the test -----------------------------------------------------------

struct Plan {
  std::string site;  // crash at this site's `site_hit`-th pass, or
  int site_hit = 0;  //
  uint64_t op = 0;   // before this file operation; neither: no crash
  uint64_t loss_seed = 0;
};

struct ChildResult {
  int exit_code = -1;
  std::vector<std::string> ledger;
  std::string Describe() const {
    std::string out = "exit " + std::to_string(exit_code) + "; ledger:";
    for (const auto& l : ledger) out += "\n  " + l;
    return out;
  }
};

// A scratch directory on /dev/shm when there is one (tmpfs: the real
// fsyncs that SQLite and recovery do cost nothing there, and the model, not
// the disk, decides what a cut keeps), else under the TempDir.
class Scratch {
 public:
  explicit Scratch(const std::string& fallback) {
    char tmpl[] = "/dev/shm/ferry-powerloss-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) {
      path_ = tmpl;
      owned_ = true;
    } else {
      path_ = fallback;
      MakeDirsOrDie(path_);
    }
  }
  ~Scratch() {
    if (owned_) RemoveTree(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool owned_ = false;
};

class PowerLossTest : public ::testing::Test {
 public:  // the workloads are passed by member pointer
  void SetUp() override {
    const char* s = std::getenv("FERRY_CRASH_SEED");
    seed_ = s != nullptr ? std::strtoull(s, nullptr, 10) : std::random_device{}();
    std::printf("power-loss suite seed: %llu (FERRY_CRASH_SEED=%llu replays it)\n",
                static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(seed_));
    const char* long_mode = std::getenv("FERRY_FAULT_LONG");
    long_ = long_mode != nullptr && std::string(long_mode) == "1";
    rng_.seed(seed_);
    keyset_ = snapshot::Keyset::Generate();
  }

  // The source trees: each the previous one with a few files rewritten,
  // added or deleted, and in every second one (the reclaim steps) every
  // file rewritten, so that whole packs become garbage. New content is never
  // an old one's.
  void MakeTrees() {
    std::mt19937_64 rng(seed_ ^ 0x5eed);
    for (int i = 0; i < kSnapshots; ++i) {
      const std::string src = Src(i);
      if (i == 0) {
        MakeDirsOrDie(src + "/sub");
        for (int f = 0; f < 10; ++f) {
          WriteFileOrDie(src + (f % 3 == 0 ? "/sub/f" : "/f") + std::to_string(f),
                         SeededBytes(rng(), 1 + rng() % (40 << 10)));
        }
        continue;
      }
      ASSERT_EQ(RunCommand({"/bin/cp", "-a", Src(i - 1), src}).exit_code, 0);
      if (i % 2 == 1) {
        for (int f = 0; f < 10; ++f) {
          WriteFileOrDie(src + (f % 3 == 0 ? "/sub/f" : "/f") + std::to_string(f),
                         SeededBytes(rng(), 1 + rng() % (40 << 10)));
        }
      }
      for (int k = 0; k < 3; ++k) {
        const std::string f = src + (rng() % 3 == 0 ? "/sub/g" : "/g") + std::to_string(rng() % 8);
        if (rng() % 4 == 0) {
          std::remove(f.c_str());
        } else {
          WriteFileOrDie(f, SeededBytes(rng(), 1 + rng() % (48 << 10)));
        }
      }
    }
  }

  std::string Src(int i) const { return dir_.Sub("src-" + std::to_string(i)); }

  // Runs `workload` in a forked child on a PowerLossEnv over fresh
  // directories, crashing as `plan` says; returns its exit and ledger.
  ChildResult RunChild(const Plan& plan, const std::string& work,
                       void (PowerLossTest::*workload)(PowerLossEnv&, const std::string&)) {
    RemoveTree(work);
    MakeDirsOrDie(work + "/backup");
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      g_ledger_fd = fds[1];
      PowerLossEnv env(Env::Default(), work + "/backup", /*real_syncs=*/false);
      g_env = &env;
      g_loss_rng.seed(plan.loss_seed);
      if (!plan.site.empty()) {
        g_site = *std::find(kCrashSites.begin(), kCrashSites.end(), plan.site);
        g_site_left = plan.site_hit;
        SetCrashSiteHandler(&CutAtSite);
      } else if (plan.op > 0) {
        env.CrashBeforeOperation(plan.op,
                                 [op = plan.op] { PowerCut(true, "op " + std::to_string(op)); });
      } else {
        SetCrashSiteHandler(&CountSite);
      }
      (this->*workload)(env, work);
      Ledger("ops " + std::to_string(env.operations()));
      for (const auto& [site, n] : g_site_hits) Ledger("site " + site + " " + std::to_string(n));
      ::_exit(0);
    }
    ::close(fds[1]);
    ChildResult r;
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::istringstream in(all);
    std::string line;
    while (std::getline(in, line)) r.ledger.push_back(line);
    return r;
  }

  // Child: captures the trees one by one; every second snapshot, reclaims
  // every pack the newest snapshot does not need (as the agent's outbox
  // does once the hubs have the rest).
  void StoreWorkload(PowerLossEnv& env, const std::string& work) {
    snapshot::LocalStoreOptions o;
    o.env = &env;
    o.target_pack_size = 32 << 10;
    auto store = LocalStore::OpenOrCreate(work + "/store", o);
    if (!store.ok()) Die("open: " + store.status().ToString());
    for (int i = 0; i < kSnapshots; ++i) {
      snapshot::CaptureOptions co;
      co.chunker = snapshot::ChunkerParams{1024, 4096, 16384};
      co.workers = 2;
      co.dataset_name = "vol";
      Result<snapshot::CaptureReport> r = CaptureVolume(Src(i), *keyset_, **store, co);
      if (!r.ok()) Die("capture " + std::to_string(i) + ": " + r.status().ToString());
      Ledger("snap " + HexEncode(r->id) + " " + std::to_string(i));
      if (i % 2 == 1) {
        Ledger("reclaiming " + std::to_string(i));
        std::set<snapshot::ChunkId> needed;
        Status s = (*store)->ForEachRef(r->id, [&](const snapshot::ChunkId& c, uint32_t) {
          needed.insert(c);
          return OkStatus();
        });
        if (!s.ok()) Die("refs: " + s.ToString());
        Result<snapshot::ReclaimReport> rr =
            (*store)->ReclaimPacks([&](const snapshot::ChunkId& c) { return needed.count(c) > 0; });
        if (!rr.ok()) Die("reclaim: " + rr.status().ToString());
      }
    }
  }

  // Child: appends batches with fsync per batch; now and then drops old
  // segments (retention).
  void StreamWorkload(PowerLossEnv& env, const std::string& work) {
    snapshot::StreamLogOptions o;
    o.env = &env;
    o.fsync = snapshot::FsyncPolicy::kEveryBatch;
    o.segment_bytes = 2048;
    auto log = snapshot::StreamLog::Open(work + "/stream", o);
    if (!log.ok()) Die("open: " + log.status().ToString());
    std::mt19937_64 rng(seed_ ^ 0x57ea);
    for (int b = 0; b < kStreamBatches; ++b) {
      const uint64_t at = (*log)->end_offset();
      const uint64_t n = 1 + rng() % 20;
      std::vector<std::string> texts;
      for (uint64_t k = 0; k < n; ++k) texts.push_back(RecordAt(seed_, at + k));
      std::vector<ByteView> records;
      for (const auto& t : texts) records.push_back(AsBytes(t));
      Result<snapshot::AppendResult> r = (*log)->Append(records);
      if (!r.ok()) Die("append: " + r.status().ToString());
      Ledger("stream " + std::to_string(r->last + 1));
      if (b % 20 == 19) {
        const uint64_t cut = (*log)->end_offset() - 50;
        Ledger("truncating " + std::to_string(cut));
        if (Status s = (*log)->TruncateBefore(cut); !s.ok()) Die("truncate: " + s.ToString());
      }
    }
  }

  [[noreturn]] static void Die(const std::string& why) {
    Ledger("error " + why);
    ::_exit(3);
  }

  // The parent's checks of a store after a crash.
  void CheckStore(const ChildResult& child, const std::string& work) {
    SCOPED_TRACE(child.Describe());
    ASSERT_TRUE(child.exit_code == kCrashSiteExitCode || child.exit_code == 0)
        << "the workload failed";
    std::map<std::string, int> acked;  // id -> tree
    int reclaiming = -1;
    for (const std::string& l : child.ledger) {
      std::istringstream in(l);
      std::string kind, id;
      int i;
      if (l.rfind("snap ", 0) == 0 && (in >> kind >> id >> i)) acked[id] = i;
      if (l.rfind("reclaiming ", 0) == 0 && (in >> kind >> i)) reclaiming = i;
    }
    const std::string dir = work + "/store";
    if (!std::ifstream(dir + "/FERRY-STORE").good()) {
      // Cut before the store existed: nothing may have been acknowledged.
      ASSERT_TRUE(acked.empty()) << "snapshots acknowledged by a store that is gone";
      return;
    }
    auto store = LocalStore::Open(dir, LocalStore::Mode::kReadWrite);
    ASSERT_TRUE(store.ok()) << "recovery: " << store.status().ToString();
    {
      auto db = sqlite::Database::Open(dir + "/index.db", {.read_only = true, .create = false});
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      EXPECT_TRUE((*db)->IntegrityCheck().ok()) << "integrity_check of index.db";
    }
    Result<uint64_t> packs = (*store)->VerifyPacks();
    ASSERT_TRUE(packs.ok()) << packs.status().ToString();
    EXPECT_EQ(RunCommand({"/usr/bin/find", dir, "-name", "*.damaged"}).out, "")
        << "a pack was set aside as damaged: a power cut made it look so";
    EXPECT_EQ(RunCommand({"/usr/bin/find", dir + "/tmp", "-type", "f"}).out, "");

    auto listed = (*store)->ListSnapshots();
    ASSERT_TRUE(listed.ok()) << listed.status().ToString();
    std::set<std::string> ids;
    for (const auto& s : *listed) ids.insert(HexEncode(s.id));
    std::set<snapshot::ChunkId> needed;
    std::vector<std::pair<SnapshotId, int>> restorable;
    for (const auto& [hex, tree] : acked) {
      ASSERT_TRUE(ids.count(hex)) << "acknowledged snapshot " << hex << " is not listed";
      Result<SnapshotId> id = (*store)->ResolveSnapshot(hex);
      ASSERT_TRUE(id.ok());
      // Older than a reclaim (even one the cut interrupted): its chunks may
      // be gone on purpose; it must say so, never that one is damaged.
      if (tree < reclaiming) {
        Result<snapshot::VerifyReport> v = snapshot::VerifySnapshot(**store, *keyset_, *id);
        if (!v.ok()) {
          EXPECT_NE(v.status().message().find("reclaimed"), std::string::npos)
              << "snapshot " << hex << ": " << v.status().ToString();
        }
        continue;
      }
      restorable.push_back({*id, tree});
      ASSERT_TRUE((*store)
                      ->ForEachRef(*id,
                                   [&](const snapshot::ChunkId& c, uint32_t) {
                                     needed.insert(c);
                                     return OkStatus();
                                   })
                      .ok());
    }
    auto expect_restores = [&](const std::string& tag) {
      for (const auto& [id, tree] : restorable) {
        const std::string out = work + "/restore-" + tag + "-" + std::to_string(tree);
        Result<snapshot::RestoreReport> r = snapshot::RestoreSnapshot(**store, *keyset_, id, out);
        ASSERT_TRUE(r.ok()) << "restore of tree " << tree << ": " << r.status().ToString();
        EXPECT_EQ(DiffTrees(Src(tree), out), "") << "tree " << tree;
        RemoveTree(out);
      }
    };
    expect_restores("recovered");
    // Leftovers (re-indexed packs, chunks of snapshots never committed) are
    // reclaimable garbage, not damage.
    Result<snapshot::ReclaimReport> rr =
        (*store)->ReclaimPacks([&](const snapshot::ChunkId& c) { return needed.count(c) > 0; });
    ASSERT_TRUE(rr.ok()) << rr.status().ToString();
    ASSERT_TRUE((*store)->VerifyPacks().ok());
    expect_restores("reclaimed");
    // And work goes on.
    snapshot::CaptureOptions co;
    co.dataset_name = "vol";
    Result<snapshot::CaptureReport> again =
        CaptureVolume(Src(kSnapshots - 1), *keyset_, **store, co);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    reclaimed_packs_ += rr->packs_removed;
  }

  void CheckStream(const ChildResult& child, const std::string& work) {
    SCOPED_TRACE(child.Describe());
    ASSERT_TRUE(child.exit_code == kCrashSiteExitCode || child.exit_code == 0)
        << "the workload failed";
    uint64_t acked_end = 0, truncated = 0;
    for (const std::string& l : child.ledger) {
      std::istringstream in(l);
      std::string kind;
      uint64_t v;
      if (l.rfind("stream ", 0) == 0 && (in >> kind >> v)) acked_end = v;
      if (l.rfind("truncating ", 0) == 0 && (in >> kind >> v)) truncated = v;
    }
    auto log = snapshot::StreamLog::Open(work + "/stream");
    ASSERT_TRUE(log.ok()) << "recovery: " << log.status().ToString();
    const uint64_t start = (*log)->start_offset(), end = (*log)->end_offset();
    EXPECT_GE(end, acked_end) << "acknowledged records are missing";
    EXPECT_LE(start, truncated > 0 ? truncated : 0) << "records kept by retention are missing";
    uint64_t want = start;
    while (want < end) {
      Result<std::vector<snapshot::StreamRecord>> rs = (*log)->Read(want, 1000, 1 << 20);
      ASSERT_TRUE(rs.ok()) << rs.status().ToString();
      ASSERT_FALSE(rs->empty());
      for (const auto& rec : *rs) {
        ASSERT_EQ(rec.offset, want);
        ASSERT_EQ(std::string(rec.data.begin(), rec.data.end()), RecordAt(seed_, want));
        ++want;
      }
    }
    const std::string more = RecordAt(seed_, end);
    const ByteView one[] = {AsBytes(more)};
    Result<snapshot::AppendResult> r = (*log)->Append(one);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->first, end);
    stream_records_checked_ += end - start;
  }

  // The crash plans: every site the dry run passed (at 1 or 3 of its
  // passes), then random file operations.
  std::vector<Plan> Plans(const ChildResult& dry, int random_ops) {
    std::vector<Plan> plans;
    uint64_t ops = 0;
    for (const std::string& l : dry.ledger) {
      std::istringstream in(l);
      std::string kind, site;
      int hits;
      if (l.rfind("ops ", 0) == 0) in >> kind >> ops;
      if (l.rfind("site ", 0) == 0 && (in >> kind >> site >> hits)) {
        sites_seen_.insert(site);
        const int points = long_ ? std::min(hits, 3) : 1;
        for (int p = 0; p < points; ++p) {
          plans.push_back(Plan{site, 1 + static_cast<int>(rng_() % hits), 0, rng_()});
        }
      }
    }
    EXPECT_GT(ops, 0u);
    for (int k = 0; k < random_ops && ops > 0; ++k) {
      plans.push_back(Plan{"", 0, 1 + rng_() % ops, rng_()});
    }
    return plans;
  }

  TempDir dir_;
  uint64_t seed_ = 0;
  bool long_ = false;
  std::mt19937_64 rng_;
  std::unique_ptr<snapshot::Keyset> keyset_;
  std::set<std::string> sites_seen_;
  uint64_t reclaimed_packs_ = 0;
  uint64_t stream_records_checked_ = 0;
};

TEST_F(PowerLossTest, StoreLosesNothingAcknowledgedAtAnyCrashSiteOrFileOperation) {
  MakeTrees();
  const Scratch scratch(dir_.Sub("scratch"));
  const std::string work = scratch.path() + "/store-work";
  const ChildResult dry = RunChild(Plan{}, work, &PowerLossTest::StoreWorkload);
  ASSERT_EQ(dry.exit_code, 0) << dry.Describe();
  CheckStore(dry, work);
  const std::vector<Plan> plans = Plans(dry, long_ ? 600 : 60);
  // Every site of the store's write paths is passed by this workload.
  for (std::string_view site : kCrashSites) {
    if (site.rfind("store.", 0) == 0) {
      EXPECT_TRUE(sites_seen_.count(std::string(site))) << "crash site " << site << " not reached";
    }
  }
  int cut = 0;
  for (const Plan& plan : plans) {
    SCOPED_TRACE(plan.site.empty()
                     ? "before file operation " + std::to_string(plan.op)
                     : "site " + plan.site + " pass " + std::to_string(plan.site_hit));
    const ChildResult child = RunChild(plan, work, &PowerLossTest::StoreWorkload);
    cut += child.exit_code == kCrashSiteExitCode;
    CheckStore(child, work);
    if (HasFatalFailure()) return;
  }
  std::printf(
      "power-loss suite (store): %zu crash points (%d cut, the rest past the end), "
      "%zu sites; %llu leftover packs reclaimed\n",
      plans.size(), cut, sites_seen_.size(), static_cast<unsigned long long>(reclaimed_packs_));
}

TEST_F(PowerLossTest, StreamLogLosesNoAcknowledgedRecordAtAnyFileOperation) {
  const Scratch scratch(dir_.Sub("scratch"));
  const std::string work = scratch.path() + "/stream-work";
  const ChildResult dry = RunChild(Plan{}, work, &PowerLossTest::StreamWorkload);
  ASSERT_EQ(dry.exit_code, 0) << dry.Describe();
  CheckStream(dry, work);
  const std::vector<Plan> plans = Plans(dry, long_ ? 600 : 60);
  int cut = 0;
  for (const Plan& plan : plans) {
    SCOPED_TRACE("before file operation " + std::to_string(plan.op));
    const ChildResult child = RunChild(plan, work, &PowerLossTest::StreamWorkload);
    cut += child.exit_code == kCrashSiteExitCode;
    CheckStream(child, work);
    if (HasFatalFailure()) return;
  }
  std::printf("power-loss suite (stream log): %zu crash points (%d cut), %llu records checked\n",
              plans.size(), cut, static_cast<unsigned long long>(stream_records_checked_));
}

}  // namespace
}  // namespace ferry::testing
