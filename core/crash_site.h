// Crash sites: named places in Ferry's write paths where a test stops the
// process, to check that a crash exactly there loses nothing that was
// acknowledged (docs/reliability.md, "Power loss and crash sites").
//
//   FERRY_CRASH_SITE("store.pack.before_index");
//
// Every name must be in kCrashSites below (checked at compile time), so the
// suites can iterate over all of them and prove each one is reached. A site
// that nothing arms costs one relaxed atomic load. Builds configured with
// -DFERRY_CRASH_SITES=OFF (the container image) compile sites to nothing.
//
// Arming:
//  - Processes: FERRY_CRASH_AT=<site>[:<n>] in the environment makes the
//    process _exit(kCrashSiteExitCode) the n-th time (default 1) any thread
//    reaches <site>: no destructor, no flush, no answer sent — as a kill -9
//    there would. Read once, at startup (ArmFromEnvironment, called by each
//    daemon's main) — an unknown site name is an error there.
//  - In-process tests: SetCrashSiteHandler(fn) calls fn(site) at every site
//    (fn may _exit, record, or return to go on).
//
// Thread-safety: sites may be reached from any thread; arming is meant to
// happen before the threads that reach sites start.
#pragma once

#include <array>
#include <atomic>
#include <string_view>

#include "core/status.h"

namespace ferry {

// Exit status of a process stopped at an armed crash site.
inline constexpr int kCrashSiteExitCode = 86;

// Every crash site, by layer. The order is the order of the write paths.
inline constexpr std::array<std::string_view, 22> kCrashSites = {
    // snapshot/local_store.cc: a pack is fsync'd (PackWriter::Finish), renamed
    // into place, its directories fsync'd, then indexed (SQLite commit).
    "store.pack.before_rename",
    "store.pack.before_index",
    "store.pack.after_index",
    // A snapshot: refs renamed next to the manifest, manifest written
    // (WriteFileAtomic), then the snapshot row committed.
    "store.commit.before_refs_rename",
    "store.commit.before_manifest",
    "store.commit.before_row",
    "store.commit.after_row",
    // ReclaimPacks: packs marked reclaimed in one commit, then unlinked.
    "store.reclaim.before_mark",
    "store.reclaim.before_unlink",
    "store.reclaim.after_unlink",
    // mirror/replication/replication_receiver.cc: acks to the sender.
    "receiver.before_upload_ack",
    "receiver.before_commit_ack",
    "receiver.before_stream_ack",
    // cloud-hub/hub.cc and catalog.cc: the catalog's record of a commit.
    "hub.catalog.before_record",
    "hub.catalog.after_record",
    // cloud-hub/hub_streams.cc: a stream batch at the hub.
    "hub.streams.before_append",
    "hub.streams.after_sync",
    // edge-agent: the agent's record of a delivery, its reclaim, its streams.
    "agent.delivery.before_record",
    "agent.delivery.after_record",
    "agent.reclaim.before",
    "agent.stream.before_answer",
    // core/sqlite.cc: any SQLite COMMIT of Ferry's own (catalog, agent.db,
    // store index), just before it runs.
    "sqlite.before_commit",
};

consteval bool IsCrashSite(std::string_view name) {
  for (std::string_view s : kCrashSites) {
    if (s == name) return true;
  }
  return false;
}

using CrashSiteHandler = void (*)(std::string_view site);

namespace crash_site_internal {
extern std::atomic<CrashSiteHandler> handler;
void Reached(std::string_view site);
}  // namespace crash_site_internal

// In-process: fn is called at every site (nullptr: none). Returns the previous one.
CrashSiteHandler SetCrashSiteHandler(CrashSiteHandler fn);

// Reads FERRY_CRASH_AT. kInvalidArgument for an unknown site or a bad count;
// OK (nothing armed) when unset or when sites are compiled out.
Status ArmCrashSiteFromEnvironment();

// Whether this build has crash sites (FERRY_CRASH_SITES).
bool CrashSitesCompiledIn();

}  // namespace ferry

#if defined(FERRY_NO_CRASH_SITES)
#define FERRY_CRASH_SITE(name)                                       \
  do {                                                               \
    static_assert(::ferry::IsCrashSite(name), "unknown crash site"); \
  } while (0)
#else
#define FERRY_CRASH_SITE(name)                                                              \
  do {                                                                                      \
    static_assert(::ferry::IsCrashSite(name), "unknown crash site: add it to kCrashSites"); \
    if (::ferry::crash_site_internal::handler.load(std::memory_order_relaxed) != nullptr) { \
      ::ferry::crash_site_internal::Reached(name);                                          \
    }                                                                                       \
  } while (0)
#endif
