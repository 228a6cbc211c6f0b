#include "edge-agent/agent.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <unordered_set>

#include "core/bytes.h"
#include "core/crash_site.h"
#include "core/env.h"
#include "core/log.h"
#include "core/sodium.h"
#include "edge-agent/hooks.h"
#include "mirror/policy/schedule.h"
#include "snapshot/stream_cut.h"
#include "snapshot/volume_capture.h"

namespace ferry::agent {

namespace json = boost::json;

namespace {

constexpr const char* kLabelPolicy = "ferry.policy";
constexpr const char* kLabelCut = "ferry.cut";
constexpr const char* kLabelTargets = "ferry.targets";

std::string Join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(sep, start);
    const std::string part = s.substr(start, end == std::string::npos ? end : end - start);
    if (!part.empty()) out.push_back(part);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

bool Selects(const mirror::MirrorPolicy& p, const std::map<std::string, std::string>& labels) {
  for (const auto& [k, v] : p.match_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

std::string Label(const snapshot::pb::Manifest& m, const char* key) {
  auto it = m.labels().find(key);
  return it == m.labels().end() ? std::string() : it->second;
}

}  // namespace

snapshot::LocalStoreOptions OutboxOptions(const Limits& limits) {
  snapshot::LocalStoreOptions o;
  // Up to three packs are in memory (one filling, two being finished).
  o.target_pack_size = std::clamp<uint64_t>(limits.memory_bytes / 16, 1u << 20, 16u << 20);
  return o;
}

json::object RunResultsJson(const std::vector<RunResult>& runs) {
  json::array out;
  for (const RunResult& r : runs) {
    json::array snaps;
    for (const RunResult::Captured& c : r.snapshots) {
      snaps.push_back(json::object{{"dataset", c.dataset},
                                   {"snapshot", c.snapshot},
                                   {"new_sealed_bytes", c.new_sealed_bytes}});
    }
    json::object o{{"policy", r.policy}, {"cut", r.cut}, {"snapshots", std::move(snaps)}};
    if (!r.status.ok()) {
      o["error"] =
          json::object{{"code", StatusCodeName(r.status.code())}, {"message", r.status.message()}};
    }
    out.push_back(std::move(o));
  }
  return json::object{{"runs", std::move(out)}};
}

Agent::Agent(AgentConfig config, Options options)
    : config_(std::move(config)),
      options_(options),
      clock_(options.time_scale),
      paths_{config_.state_dir} {}

Agent::~Agent() { Stop().IgnoreError(); }

Result<std::unique_ptr<Agent>> Agent::Start(AgentConfig config, Options options) {
  auto agent = std::unique_ptr<Agent>(new Agent(std::move(config), options));
  RETURN_IF_ERROR(agent->Init());
  return agent;
}

Status Agent::Init() {
  Env& env = *Env::Default();
  RETURN_IF_ERROR(env.CreateDirs(paths_.dir, 0700));
  lock_fd_ = ::open(paths_.Lock().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return ErrnoToStatus(errno, "open " + paths_.Lock());
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return UnavailableError("another ferry-agent is using the state dir " + paths_.dir);
  }
  ASSIGN_OR_RETURN(mirror::StaticIdentity id,
                   mirror::StaticIdentity::LoadOrCreate(env, paths_.Identity()));
  identity_ = std::make_unique<mirror::StaticIdentity>(std::move(id));
  ASSIGN_OR_RETURN(keyset_, snapshot::Keyset::Load(env, config_.keyset.file));
  ASSIGN_OR_RETURN(state_, AgentState::Open(paths_.Database()));
  ASSIGN_OR_RETURN(
      outbox_, snapshot::LocalStore::OpenOrCreate(paths_.Outbox(), OutboxOptions(config_.limits)));
  ASSIGN_OR_RETURN(streams_, Streams::Open(config_));
  RETURN_IF_ERROR(Reconcile());

  if (options_.replicate) {
    ASSIGN_OR_RETURN(std::vector<EnrolledHub> enrolled, state_->Enrollments());
    ReplicatorDeps deps;
    deps.config = &config_;
    deps.identity = identity_.get();
    deps.state = state_.get();
    deps.outbox = outbox_.get();
    for (const HubEndpoint& h : config_.hubs) {
      auto e = std::find_if(enrolled.begin(), enrolled.end(),
                            [&](const EnrolledHub& x) { return x.name == h.name; });
      std::string pin = h.fingerprint;
      if (e != enrolled.end()) {
        if (!pin.empty() && pin != e->fingerprint) {
          return FailedPreconditionError(config_.origin + ": hubs." + h.name + ".fingerprint " +
                                         pin + " differs from the key pinned at enrollment, " +
                                         e->fingerprint + " (enroll again or fix the config)");
        }
        pin = e->fingerprint;
      }
      if (pin.empty()) {
        log::Warn(
            "hub {} is not enrolled and has no fingerprint: not replicating to it "
            "(run ferry-agent enroll)",
            h.name);
        continue;
      }
      deps.hubs.push_back({h.name, h.url, pin});
    }
    deps.on_policy_sync = [this](const std::string& hub, const mirror::linkpb::PolicySync& s) {
      OnPolicySync(hub, s);
    };
    deps.on_committed = [this] { OnCommitted(); };
    deps.bandwidth_for = [this](const std::string& policy) { return BandwidthFor(policy); };
    deps.run_error_for = [this](const std::string& hub) { return RunErrorFor(hub); };
    for (const HubLink& h : deps.hubs) {
      replicators_.push_back(std::make_unique<Replicator>(deps, h.name));
    }
    for (auto& r : replicators_) r->Start();
    // Streams go to every enrolled hub, each on a session of its own.
    if (!config_.streams.empty()) {
      std::vector<std::string> targets;
      for (const HubLink& h : deps.hubs) {
        targets.push_back(h.name);
        ShipperDeps sd;
        sd.config = &config_;
        sd.identity = identity_.get();
        sd.keyset = keyset_.get();
        sd.streams = streams_.get();
        sd.hub = h;
        shippers_.push_back(std::make_unique<StreamShipper>(std::move(sd)));
      }
      streams_->SetTargets(std::move(targets));
      for (auto& s : shippers_) s->Start();
    }
  }
  scheduler_ = std::thread([this] { SchedulerLoop(); });
  log::Info("agent {} started: state {}, {} hub(s), {} dataset(s), {} local polic(ies)",
            config_.name, paths_.dir, replicators_.size(), config_.datasets.size(),
            config_.policies.size());
  return OkStatus();
}

// Snapshots the outbox committed but the state never recorded (a crash
// between the two) are queued now, for the targets in their labels.
Status Agent::Reconcile() {
  ASSIGN_OR_RETURN(std::vector<snapshot::SnapshotSummary> all, outbox_->ListSnapshots());
  for (const snapshot::SnapshotSummary& s : all) {
    const std::string policy = Label(s.body, kLabelPolicy);
    if (policy.empty()) continue;
    ASSIGN_OR_RETURN(bool known, state_->HasSnapshot(s.id));
    if (known) continue;
    QueuedSnapshot q;
    q.id = s.id;
    q.policy = policy;
    q.dataset = s.body.datasets_size() > 0 ? s.body.datasets(0).name() : "";
    q.cut = Label(s.body, kLabelCut);
    q.created_unix = s.created_unix_ns / 1'000'000'000;
    q.new_sealed_bytes = s.body.refs().sealed_bytes();
    RETURN_IF_ERROR(state_->AddSnapshot(q, Split(Label(s.body, kLabelTargets), ',')).status());
    log::Warn("snapshot {} of {} was in the outbox but not queued (interrupted run): queued now",
              HexEncode(s.id).substr(0, 16), q.dataset);
  }
  return OkStatus();
}

Status Agent::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return OkStatus();
    stopped_ = true;
    stopping_ = true;
  }
  cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  for (auto& r : replicators_) r->Stop();
  for (auto& s : shippers_) s->Stop();
  {
    std::lock_guard lock(mu_);
    for (auto& req : requests_) req->done = true;
    requests_.clear();
  }
  request_done_.notify_all();
  Status s = outbox_ ? outbox_->Flush() : OkStatus();
  if (streams_) {
    if (Status c = streams_->Close(); s.ok()) s = c;
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  return s;
}

void Agent::OnPolicySync(const std::string& hub, const mirror::linkpb::PolicySync& sync) {
  HubPolicies h;
  h.hub = hub;
  h.generation = sync.generation();
  for (const std::string& p : sync.policies()) h.policies.push_back(p);
  if (Status s = state_->SaveHubPolicies(h); !s.ok()) {
    log::Error("could not save the policies of hub {}: {}", hub, s.ToString());
    return;
  }
  log::Info("hub {} sent {} polic(ies), generation {}", hub, h.policies.size(), h.generation);
  {
    std::lock_guard lock(mu_);
    policies_dirty_ = true;
  }
  cv_.notify_all();
}

void Agent::ReloadPolicies() {
  std::vector<PolicyEntry> out;
  std::vector<std::string> errors;
  std::set<std::string> names;
  for (const mirror::MirrorPolicy& p : config_.policies) {
    if (!Selects(p, config_.labels)) continue;
    if (names.insert(p.name).second) out.push_back({p, "local"});
  }
  Result<std::vector<HubPolicies>> from_hubs = state_->AllHubPolicies();
  if (!from_hubs.ok()) {
    errors.push_back("policies from hubs: " + from_hubs.status().ToString());
  } else {
    // In the config's hub order.
    for (const HubEndpoint& hub : config_.hubs) {
      for (const HubPolicies& hp : *from_hubs) {
        if (hp.hub != hub.name) continue;
        for (const std::string& text : hp.policies) {
          Result<mirror::MirrorPolicy> p = mirror::ParseMirrorPolicy(text);
          if (!p.ok()) {
            errors.push_back("a policy from hub " + hub.name + ": " + p.status().message());
            continue;
          }
          if (names.insert(p->name).second) out.push_back({*p, hub.name});
        }
      }
    }
  }
  for (const PolicyEntry& e : out) {
    for (const std::string& d : e.policy.datasets) {
      if (config_.FindDataset(d) == nullptr && config_.FindStream(d) == nullptr) {
        errors.push_back("policy " + e.policy.name + " (" + e.source + ") names dataset " + d +
                         ", which this agent's config does not define (as a volume or a "
                         "stream)");
      }
    }
    for (const std::string& t : e.policy.targets) {
      if (config_.FindHub(t) == nullptr) {
        errors.push_back("policy " + e.policy.name + " (" + e.source + ") targets hub " + t +
                         ", which this agent's config does not define");
      }
    }
  }
  std::lock_guard lock(mu_);
  // A policy no longer in force has no failed run to report.
  bool dropped = false;
  for (auto it = run_errors_.begin(); it != run_errors_.end();) {
    const bool kept = std::any_of(out.begin(), out.end(),
                                  [&](const PolicyEntry& e) { return e.policy.name == it->first; });
    dropped = dropped || !kept;
    it = kept ? std::next(it) : run_errors_.erase(it);
  }
  if (dropped) {
    for (auto& r : replicators_) r->ReportChanged();
  }
  policies_ = std::move(out);
  policy_errors_ = std::move(errors);
  policies_dirty_ = false;
}

std::vector<Agent::PolicyEntry> Agent::Policies() {
  bool dirty;
  {
    std::lock_guard lock(mu_);
    dirty = policies_dirty_;
  }
  if (dirty) ReloadPolicies();
  std::lock_guard lock(mu_);
  return policies_;
}

uint64_t Agent::BandwidthFor(const std::string& policy) {
  const uint64_t fallback = config_.limits.bandwidth_bytes_per_second;
  for (const PolicyEntry& e : Policies()) {
    if (e.policy.name != policy) continue;
    auto zone = mirror::LoadTimeZoneCached(e.policy.time_zone);
    if (!zone.ok()) return fallback;
    const uint64_t limit = mirror::BandwidthLimitNow(e.policy, **zone, clock_.Now());
    if (limit == 0) return fallback;
    return fallback == 0 ? limit : std::min(limit, fallback);
  }
  return fallback;
}

AgentError Agent::RunErrorFor(const std::string& hub) {
  std::lock_guard lock(mu_);
  AgentError newest;
  for (const auto& [policy, e] : run_errors_) {
    if (std::find(e.targets.begin(), e.targets.end(), hub) == e.targets.end()) continue;
    if (newest.message.empty() || e.error.unix > newest.unix) newest = e.error;
  }
  return newest;
}

bool Agent::OutboxFull(uint64_t* used) {
  Result<snapshot::StoreStats> stats = outbox_->Stats();
  if (!stats.ok()) {
    log::Error("outbox stats: {}", stats.status().ToString());
    return false;
  }
  *used = stats->pack_bytes;
  return stats->pack_bytes >= config_.limits.outbox_quota_bytes;
}

void Agent::OnCommitted() { Reclaim(/*force=*/false); }

void Agent::Reclaim(bool force) {
  std::lock_guard reclaim_lock(reclaim_mu_);
  // Not while a policy run captures: its chunks (and its snapshots, until
  // they are queued) are needed by no queued snapshot yet, and would be
  // reclaimed under it. The scheduler reclaims after the run.
  std::unique_lock capture(capture_mu_, std::try_to_lock);
  if (!capture.owns_lock()) {
    reclaim_wanted_ = true;
    return;
  }
  Result<std::vector<snapshot::SnapshotId>> pending = state_->PendingSnapshotIds();
  if (!pending.ok()) {
    log::Error("outbox reclaim: {}", pending.status().ToString());
    return;
  }
  // Reading the refs of every pending snapshot costs O(their chunks): while
  // a long backlog drains, do it at most every kReclaimInterval, unless
  // nothing is pending (cheap) or capture waits for the space.
  const auto now = std::chrono::steady_clock::now();
  bool paused;
  {
    std::lock_guard lock(mu_);
    paused = paused_;
  }
  if (!force && !pending->empty() && !paused && now - last_reclaim_ < kReclaimInterval) {
    reclaim_wanted_ = true;
    return;
  }
  last_reclaim_ = now;
  reclaim_wanted_ = false;
  // The chunks of every snapshot some target still waits for stay.
  std::unordered_set<snapshot::ChunkId, snapshot::ArrayHash> needed;
  for (const snapshot::SnapshotId& id : *pending) {
    Status s = outbox_->ForEachRef(id, [&](const snapshot::ChunkId& c, uint32_t) {
      needed.insert(c);
      return OkStatus();
    });
    if (!s.ok()) {
      log::Error("outbox reclaim: refs of {}: {}", HexEncode(id).substr(0, 16), s.ToString());
      return;
    }
  }
  FERRY_CRASH_SITE("agent.reclaim.before");
  Result<snapshot::ReclaimReport> r =
      outbox_->ReclaimPacks([&](const snapshot::ChunkId& c) { return needed.count(c) > 0; });
  if (!r.ok()) {
    log::Error("outbox reclaim: {}", r.status().ToString());
    return;
  }
  if (r->packs_removed > 0) {
    bytes_reclaimed_ += r->bytes_freed;
    log::Info("outbox: reclaimed {} pack(s), {} bytes (every target has their snapshots)",
              r->packs_removed, r->bytes_freed);
  }
  {
    std::lock_guard lock(mu_);
    kick_ = true;  // a paused capture may go on
  }
  cv_.notify_all();
}

RunResult Agent::RunPolicy(const mirror::MirrorPolicy& policy, bool scheduled, int64_t due) {
  RunResult result;
  result.policy = policy.name;
  log::ScopedFields fields(
      std::vector<std::pair<std::string, std::string>>{{"policy", policy.name}});
  Result<std::optional<PolicyRun>> loaded = state_->GetRun(policy.name);
  if (!loaded.ok()) {
    result.status = loaded.status();
    return result;
  }
  PolicyRun run = loaded->value_or(PolicyRun{});
  run.policy = policy.name;
  if (scheduled) run.last_due_unix = std::max(run.last_due_unix, due);
  // A run interrupted by a crash keeps its cut: what it captured is kept.
  const bool resumed = !run.running_cut.empty();
  if (!resumed) run.running_cut = HexEncode(sodium::RandomArray<8>());
  result.cut = run.running_cut;
  if (Status s = state_->PutRun(run); !s.ok()) {
    ++capture_errors_;
    log::Error("run of policy {} not started: could not record it in agent.db: {}", policy.name,
               s.ToString());
    result.status = s;
    return result;
  }

  // Datasets of this cut already in the outbox (a run resumed after a crash).
  std::map<std::string, snapshot::SnapshotSummary> done;
  Result<std::vector<snapshot::SnapshotSummary>> all =
      resumed ? outbox_->ListSnapshots() : std::vector<snapshot::SnapshotSummary>{};
  if (all.ok()) {
    for (snapshot::SnapshotSummary& s : *all) {
      if (Label(s.body, kLabelCut) == run.running_cut && s.body.datasets_size() > 0) {
        done[s.body.datasets(0).name()] = std::move(s);
      }
    }
  }

  std::vector<const DatasetConfig*> datasets;
  std::vector<const StreamConfig*> streams;
  Status status;
  for (const std::string& name : policy.datasets) {
    if (const DatasetConfig* d = config_.FindDataset(name)) {
      datasets.push_back(d);
    } else if (const StreamConfig* st = config_.FindStream(name)) {
      streams.push_back(st);
    } else {
      status = FailedPreconditionError("dataset " + name +
                                       " is not defined in this agent's config (neither a "
                                       "volume under datasets: nor a stream under streams:)");
      break;
    }
  }
  // Pre-hooks in order; post-hooks of the datasets whose pre-hook ran, in
  // reverse order, whatever happened.
  std::vector<const DatasetConfig*> hooked;
  auto hook_env = [&](const DatasetConfig& d, const char* which) {
    return std::map<std::string, std::string>{{"FERRY_DATASET", d.name},
                                              {"FERRY_DATASET_PATH", d.path},
                                              {"FERRY_POLICY", policy.name},
                                              {"FERRY_CUT", run.running_cut},
                                              {"FERRY_HOOK", which}};
  };
  if (status.ok()) {
    for (const DatasetConfig* d : datasets) {
      if (d->pre_hook) {
        status = RunHook(*d->pre_hook, hook_env(*d, "pre"));
        if (!status.ok()) {
          status = AbortedError("pre-hook of dataset " + d->name + ": " + status.message());
          break;
        }
      }
      hooked.push_back(d);
    }
  }
  std::vector<std::pair<snapshot::SnapshotId, RunResult::Captured>> captured;
  const std::map<std::string, std::string> labels = {{kLabelPolicy, policy.name},
                                                     {kLabelCut, run.running_cut},
                                                     {kLabelTargets, Join(policy.targets, ",")}};
  // The cut: every stream's end, now, before any volume is read
  // (docs/consistency.md).
  if (status.ok()) {
    for (const StreamConfig* st : streams) {
      if (auto it = done.find(st->name); it != done.end()) {
        captured.push_back({it->second.id, {st->name, HexEncode(it->second.id), 0}});
        continue;
      }
      snapshot::StreamLog* log = streams_->Log(st->name);
      if (log == nullptr) {
        status = FailedPreconditionError("stream " + st->name + " is not open");
        break;
      }
      // Everything appended so far becomes durable, so that the cut names
      // only records that survive a crash.
      status = log->Sync();
      if (!status.ok()) break;
      snapshot::StreamCutOptions o;
      o.dataset_name = st->name;
      o.start_offset = log->start_offset();
      o.end_offset = log->durable_end_offset();
      o.labels = labels;
      Result<snapshot::SnapshotId> id = snapshot::CommitStreamCut(*outbox_, *keyset_, o);
      if (!id.ok()) {
        status = id.status();
        break;
      }
      ++snapshots_taken_;
      log::Info("cut stream {} at offset {} (first held {}): snapshot {}", st->name, o.end_offset,
                o.start_offset, HexEncode(*id).substr(0, 16));
      captured.push_back({*id, {st->name, HexEncode(*id), 0}});
    }
  }
  if (status.ok()) {
    for (const DatasetConfig* d : datasets) {
      if (auto it = done.find(d->name); it != done.end()) {
        captured.push_back(
            {it->second.id,
             {d->name, HexEncode(it->second.id), it->second.body.refs().sealed_bytes()}});
        continue;
      }
      snapshot::CaptureOptions o;
      o.dataset_name = d->name;
      o.workers = config_.limits.workers;
      o.excludes = d->excludes;
      o.chunker.avg_size = d->chunk_avg_bytes;
      o.chunker.min_size = d->chunk_avg_bytes / 4;
      o.chunker.max_size = d->chunk_avg_bytes * 4;
      o.delta = d->delta;
      o.labels = labels;
      o.on_warning = [&](const std::string& w) { log::Warn("capture of {}: {}", d->name, w); };
      Result<snapshot::CaptureReport> report =
          snapshot::CaptureVolume(d->path, *keyset_, *outbox_, o);
      if (!report.ok()) {
        status = report.status();
        break;
      }
      ++snapshots_taken_;
      log::Info(
          "captured {}: snapshot {}, {} files, {} bytes, {} bytes read ({} files unchanged), {} "
          "new bytes stored ({} changed chunks as deltas) in {:.2f} s",
          d->name, HexEncode(report->id).substr(0, 16), report->files, report->bytes_logical,
          report->bytes_read, report->cache_hits, report->bytes_stored, report->chunks_delta,
          report->seconds);
      captured.push_back({report->id, {d->name, HexEncode(report->id), report->bytes_stored}});
    }
  }
  for (auto it = hooked.rbegin(); it != hooked.rend(); ++it) {
    if ((*it)->post_hook) {
      Status s = RunHook(*(*it)->post_hook, hook_env(**it, "post"));
      if (!s.ok()) {
        log::Error("post-hook of dataset {}: {}", (*it)->name, s.ToString());
        if (status.ok())
          status = AbortedError("post-hook of dataset " + (*it)->name + ": " + s.message());
      }
    }
  }
  // Queue what was captured, even when a later dataset failed: a snapshot in
  // the outbox is never dropped.
  for (auto& [id, c] : captured) {
    QueuedSnapshot q;
    q.id = id;
    q.policy = policy.name;
    q.dataset = c.dataset;
    q.cut = run.running_cut;
    q.created_unix = AgentClock::RealNow();
    q.new_sealed_bytes = c.new_sealed_bytes;
    if (Result<int64_t> seq = state_->AddSnapshot(q, policy.targets); !seq.ok()) {
      if (status.ok()) status = seq.status();
    }
    result.snapshots.push_back(c);
  }
  if (!captured.empty()) {
    for (auto& r : replicators_) r->Wake();
  }
  run.running_cut.clear();
  ++run.runs;
  if (status.ok()) {
    run.last_ok_unix = AgentClock::RealNow();
    run.last_error.clear();
  } else {
    ++capture_errors_;
    run.last_error = status.ToString();
    log::Error("run of policy {} failed: {}", policy.name, status.ToString());
  }
  if (Status s = state_->PutRun(run); !s.ok()) {
    // What was captured is queued (above) and will be delivered; only the
    // run's record (its time, its error) is lost, so the schedule may run
    // it again. Said here because agent.db cannot carry it.
    log::Error("run of policy {}: could not record the run in agent.db ({} snapshot(s) queued): {}",
               policy.name, captured.size(), s.ToString());
    if (status.ok()) {
      ++capture_errors_;
      status = s;
    }
  }
  result.status = status;
  return result;
}

Result<std::vector<RunResult>> Agent::RunNow(const std::string& policy,
                                             const std::string& dataset) {
  auto request = std::make_shared<Request>();
  for (const PolicyEntry& e : Policies()) {
    const bool match = policy.empty()
                           ? (dataset.empty() || std::count(e.policy.datasets.begin(),
                                                            e.policy.datasets.end(), dataset) > 0)
                           : e.policy.name == policy;
    if (match) request->policies.push_back(e.policy.name);
  }
  if (request->policies.empty()) {
    if (!policy.empty())
      return NotFoundError("no policy named " + policy + " applies to this agent");
    if (!dataset.empty()) {
      return NotFoundError("no policy holds dataset " + dataset +
                           " (a snapshot is taken for a policy, which says where it goes)");
    }
    return NotFoundError("this agent has no policies yet (from its config or a hub)");
  }
  std::unique_lock lock(mu_);
  if (stopping_) return UnavailableError("the agent is stopping");
  requests_.push_back(request);
  cv_.notify_all();
  request_done_.wait(lock, [&] { return request->done; });
  if (request->results.empty() && stopping_) return UnavailableError("the agent is stopping");
  return request->results;
}

void Agent::SchedulerLoop() {
  log::ScopedFields fields(
      std::vector<std::pair<std::string, std::string>>{{"component", "scheduler"}});
  // Policy runs to do now: from the schedule and from requests.
  while (true) {
    std::vector<PolicyEntry> policies = Policies();
    const int64_t now = clock_.Now();
    int64_t next_wake = now + 60;  // at least once a (schedule) minute: bandwidth windows
    struct Due {
      const mirror::MirrorPolicy* policy;
      bool scheduled;  // a schedule instant (or a first or interrupted run) is due
      int64_t due;
      int64_t missed;
      bool requested = false;  // also asked for through RunNow: one run serves both
    };
    std::vector<Due> due;
    // Without replication (`ferry-agent snapshot` with no daemon running),
    // only the requested run: the schedule is the daemon's (a new policy's
    // first run would otherwise race with the request and take a second
    // snapshot).
    for (const PolicyEntry& e : policies) {
      if (!options_.replicate) break;
      const mirror::MirrorPolicy& p = e.policy;
      Result<std::optional<PolicyRun>> run = state_->GetRun(p.name);
      auto zone = mirror::LoadTimeZoneCached(p.time_zone);
      if (!run.ok() || !zone.ok()) {
        log::Error("policy {}: {}", p.name, (!run.ok() ? run.status() : zone.status()).ToString());
        continue;
      }
      if (!run->has_value() || !(*run)->running_cut.empty()) {
        // New policy (first snapshot now) or a run interrupted by a crash.
        due.push_back({&p, true, now, 0});
        continue;
      }
      Result<int64_t> next = mirror::NextRun(p.schedule, **zone, (*run)->last_due_unix);
      if (!next.ok()) {
        log::Error("policy {}: {}", p.name, next.status().ToString());
        continue;
      }
      if (*next > now) {
        next_wake = std::min(next_wake, *next);
        continue;
      }
      // Every instant up to now is handled by one run; the others are skipped.
      int64_t latest = *next;
      int64_t missed = 0;
      for (int i = 0; i < 100000; ++i) {
        Result<int64_t> after = mirror::NextRun(p.schedule, **zone, latest);
        if (!after.ok() || *after > now) break;
        latest = *after;
        ++missed;
      }
      due.push_back({&p, true, latest, missed});
    }
    std::shared_ptr<Request> request;
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
      if (!requests_.empty()) {
        request = requests_.front();
        requests_.pop_front();
      }
    }
    if (request) {
      for (const std::string& name : request->policies) {
        auto it = std::find_if(policies.begin(), policies.end(),
                               [&](const PolicyEntry& e) { return e.policy.name == name; });
        if (it == policies.end()) continue;
        auto same = std::find_if(due.begin(), due.end(),
                                 [&](const Due& d) { return d.policy->name == name; });
        if (same != due.end()) {
          same->requested = true;
        } else {
          due.push_back({&it->policy, false, now, 0, true});
        }
      }
    }
    bool ran = false;
    for (const Due& d : due) {
      uint64_t used = 0;
      if (OutboxFull(&used)) {
        bool log_it;
        {
          std::lock_guard lock(mu_);
          log_it = !paused_;
          paused_ = true;
          outbox_used_ = used;
        }
        if (log_it) {
          log::Warn(
              "capture paused: the outbox holds {} bytes waiting for targets, at or over "
              "its quota of {} bytes; it resumes as hubs take them",
              used, config_.limits.outbox_quota_bytes);
        }
        if (d.requested) {
          RunResult r;
          r.policy = d.policy->name;
          r.status = ResourceExhaustedError(
              "capture paused: the outbox is full (" + std::to_string(used) + " of " +
              std::to_string(config_.limits.outbox_quota_bytes) +
              " bytes wait for targets); try again when hubs have taken them");
          request->results.push_back(std::move(r));
        }
        continue;
      }
      {
        std::lock_guard lock(mu_);
        if (paused_) log::Info("capture resumes: the outbox is below its quota");
        paused_ = false;
        outbox_used_ = used;
        running_ = d.policy->name;
      }
      if (d.missed > 0) {
        runs_skipped_ += static_cast<uint64_t>(d.missed);
        log::Warn(
            "policy {}: {} scheduled run(s) skipped (the previous run was still going or "
            "the agent was not running)",
            d.policy->name, d.missed);
        if (Result<std::optional<PolicyRun>> r = state_->GetRun(d.policy->name);
            r.ok() && r->has_value()) {
          PolicyRun updated = **r;
          updated.skipped += static_cast<uint64_t>(d.missed);
          state_->PutRun(updated).IgnoreError();
        }
      }
      RunResult result;
      {
        std::lock_guard capture(capture_mu_);
        result = RunPolicy(*d.policy, d.scheduled, d.due);
      }
      ran = true;
      std::lock_guard lock(mu_);
      running_.clear();
      last_results_[d.policy->name] = result;
      // The hubs this policy targets hear of a failed run (and of the next
      // good one) in the agent's reports.
      const bool had_error = run_errors_.erase(d.policy->name) > 0;
      if (!result.status.ok()) {
        run_errors_[d.policy->name] = {d.policy->targets,
                                       {result.status.ToString(), AgentClock::RealNow()}};
      }
      if (had_error || !result.status.ok()) {
        for (auto& r : replicators_) r->ReportChanged();
      }
      if (d.requested) request->results.push_back(std::move(result));
    }
    if (request) {
      std::lock_guard lock(mu_);
      request->done = true;
      request_done_.notify_all();
    }
    for (auto& r : replicators_) r->RefreshBandwidth();
    bool wanted;
    {
      std::lock_guard lock(reclaim_mu_);
      wanted =
          reclaim_wanted_ && std::chrono::steady_clock::now() - last_reclaim_ >= kReclaimInterval;
    }
    if (wanted) Reclaim(/*force=*/true);
    if (ran || request) continue;  // time moved on: look again at once
    std::unique_lock lock(mu_);
    const int64_t wait_s = next_wake - clock_.Now();
    if (paused_) {
      // Woken by OnCommitted when space frees; look again now and then too.
      cv_.wait_for(lock, std::chrono::seconds(5),
                   [&] { return stopping_ || !requests_.empty() || policies_dirty_ || kick_; });
    } else {
      auto delay = clock_.RealDelay(std::max<int64_t>(wait_s, 1));
      if (reclaim_wanted_) delay = std::min<std::chrono::milliseconds>(delay, kReclaimInterval);
      cv_.wait_for(lock, delay, [&] { return stopping_ || !requests_.empty() || policies_dirty_; });
    }
    kick_ = false;
    if (stopping_) break;
  }
}

json::object Agent::StatusJson() {
  json::object o;
  o["agent"] = config_.name;
  o["fingerprint"] = identity_->fingerprint();
  const int64_t real_now = AgentClock::RealNow();
  o["time_unix"] = real_now;
  uint64_t used = 0;
  const bool full = OutboxFull(&used);
  {
    std::lock_guard lock(mu_);
    json::object outbox{{"bytes", used},
                        {"quota_bytes", config_.limits.outbox_quota_bytes},
                        {"capture_paused", paused_ && full}};
    if (paused_ && full) {
      outbox["reason"] = "outbox full: " + std::to_string(used) +
                         " bytes wait for targets (quota " +
                         std::to_string(config_.limits.outbox_quota_bytes) + ")";
    }
    o["outbox"] = std::move(outbox);
    o["running"] = running_;
    json::array errors;
    for (const std::string& e : policy_errors_) errors.emplace_back(e);
    o["policy_errors"] = std::move(errors);
  }
  // Policies: last run, RPO against the newest snapshot every target has.
  json::array policies;
  for (const PolicyEntry& e : Policies()) {
    json::object p;
    p["name"] = e.policy.name;
    p["source"] = e.source;
    json::array ds;
    for (const std::string& d : e.policy.datasets) ds.emplace_back(d);
    p["datasets"] = std::move(ds);
    json::array targets;
    for (const std::string& t : e.policy.targets) targets.emplace_back(t);
    p["targets"] = std::move(targets);
    Result<std::optional<PolicyRun>> run = state_->GetRun(e.policy.name);
    const bool has_run = run.ok() && run->has_value();
    if (has_run) {
      p["runs"] = (*run)->runs;
      p["skipped_runs"] = (*run)->skipped;
      p["last_ok_unix"] = (*run)->last_ok_unix;
      p["last_error"] = (*run)->last_error;
    }
    if (auto zone = mirror::LoadTimeZoneCached(e.policy.time_zone); zone.ok()) {
      const int64_t after = has_run ? (*run)->last_due_unix : clock_.Now();
      if (Result<int64_t> next = mirror::NextRun(e.policy.schedule, **zone, after); next.ok()) {
        p["next_run_in_seconds"] = std::max<int64_t>(0, *next - clock_.Now());
      }
    }
    // The RPO holds when every dataset has a snapshot at every target that
    // is younger than the objective.
    int64_t oldest_replicated = INT64_MAX;
    bool all = true;
    for (const std::string& d : e.policy.datasets) {
      Result<AgentState::DatasetSummary> sum = state_->Summarize(d);
      if (!sum.ok() || !sum->last_replicated) {
        all = false;
        continue;
      }
      oldest_replicated = std::min(oldest_replicated, sum->last_replicated->created_unix);
    }
    if (all && oldest_replicated != INT64_MAX) {
      const int64_t age = clock_.Now() - clock_.ToSchedule(oldest_replicated);
      p["replicated_age_seconds"] = age;
      if (e.policy.rpo_seconds) p["rpo_met"] = age <= *e.policy.rpo_seconds;
    } else if (e.policy.rpo_seconds) {
      p["rpo_met"] = false;
    }
    if (e.policy.rpo_seconds) p["rpo_seconds"] = *e.policy.rpo_seconds;
    policies.push_back(std::move(p));
  }
  o["policies"] = std::move(policies);

  json::array datasets;
  for (const DatasetConfig& d : config_.datasets) {
    json::object j{{"name", d.name}, {"path", d.path}};
    if (Result<AgentState::DatasetSummary> sum = state_->Summarize(d.name); sum.ok()) {
      if (sum->last) {
        j["last_snapshot"] = HexEncode(sum->last->id);
        j["last_snapshot_unix"] = sum->last->created_unix;
        j["last_snapshot_age_seconds"] = clock_.Now() - clock_.ToSchedule(sum->last->created_unix);
      }
      if (sum->last_replicated) {
        j["last_replicated_snapshot"] = HexEncode(sum->last_replicated->id);
        j["last_replicated_unix"] = sum->last_replicated->created_unix;
      }
    }
    datasets.push_back(std::move(j));
  }
  o["datasets"] = std::move(datasets);

  json::array pending;
  if (Result<std::vector<AgentState::Backlog>> backlog = state_->Backlogs(); backlog.ok()) {
    for (const AgentState::Backlog& b : *backlog) {
      pending.push_back(
          json::object{{"target", b.target}, {"snapshots", b.snapshots}, {"bytes", b.bytes}});
    }
  }
  o["pending"] = std::move(pending);

  json::array hubs;
  for (auto& r : replicators_) hubs.push_back(r->StatusJson());
  o["hubs"] = std::move(hubs);

  json::array streams;
  for (const Streams::Info& i : streams_->List()) {
    json::object acked;
    for (const auto& [hub, next] : i.acked) acked[hub] = next;
    streams.push_back(json::object{{"name", i.name},
                                   {"start_offset", i.start_offset},
                                   {"end_offset", i.end_offset},
                                   {"durable_end_offset", i.durable_end_offset},
                                   {"acked", std::move(acked)}});
  }
  o["streams"] = std::move(streams);
  json::array shippers;
  for (auto& sh : shippers_) shippers.push_back(sh->StatusJson());
  o["stream_shipping"] = std::move(shippers);

  json::array deliveries;
  if (Result<std::vector<Delivery>> recent = state_->RecentDeliveries(50); recent.ok()) {
    for (const Delivery& d : *recent) {
      json::object j{{"seq", d.snapshot.seq},
                     {"snapshot", HexEncode(d.snapshot.id)},
                     {"policy", d.snapshot.policy},
                     {"dataset", d.snapshot.dataset},
                     {"target", d.target},
                     {"state", DeliveryStateName(d.state)},
                     {"hub", d.hub},
                     {"attempts", d.attempts},
                     {"bytes_total", d.snapshot.new_sealed_bytes},
                     {"bytes_sent", d.bytes_sent},
                     {"created_unix", d.snapshot.created_unix}};
      if (!d.error.empty()) j["error"] = d.error;
      if (d.committed_unix != 0) j["committed_unix"] = d.committed_unix;
      deliveries.push_back(std::move(j));
    }
  }
  o["deliveries"] = std::move(deliveries);
  return o;
}

std::string Agent::MetricsText() {
  std::string out;
  auto line = [&](const std::string& name, const std::string& type, const std::string& help) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  uint64_t used = 0;
  const bool full = OutboxFull(&used);
  bool paused;
  {
    std::lock_guard lock(mu_);
    paused = paused_ && full;
  }
  line("ferry_agent_snapshots_total", "counter", "Snapshots captured into the outbox.");
  out += "ferry_agent_snapshots_total " + std::to_string(snapshots_taken_.load()) + "\n";
  line("ferry_agent_capture_errors_total", "counter", "Policy runs that failed.");
  out += "ferry_agent_capture_errors_total " + std::to_string(capture_errors_.load()) + "\n";
  line("ferry_agent_runs_skipped_total", "counter",
       "Scheduled runs skipped because a run was still going.");
  out += "ferry_agent_runs_skipped_total " + std::to_string(runs_skipped_.load()) + "\n";
  line("ferry_agent_outbox_bytes", "gauge", "Bytes of packs in the outbox.");
  out += "ferry_agent_outbox_bytes " + std::to_string(used) + "\n";
  line("ferry_agent_outbox_quota_bytes", "gauge", "The outbox quota.");
  out +=
      "ferry_agent_outbox_quota_bytes " + std::to_string(config_.limits.outbox_quota_bytes) + "\n";
  line("ferry_agent_capture_paused", "gauge", "1 while capture waits for outbox space.");
  out += std::string("ferry_agent_capture_paused ") + (paused ? "1" : "0") + "\n";
  line("ferry_agent_outbox_reclaimed_bytes_total", "counter",
       "Outbox bytes freed after every target had them.");
  out +=
      "ferry_agent_outbox_reclaimed_bytes_total " + std::to_string(bytes_reclaimed_.load()) + "\n";
  line("ferry_agent_pending_snapshots", "gauge", "Snapshots waiting for a target.");
  line("ferry_agent_pending_bytes", "gauge", "Outbox bytes of the snapshots waiting for a target.");
  if (Result<std::vector<AgentState::Backlog>> backlog = state_->Backlogs(); backlog.ok()) {
    for (const AgentState::Backlog& b : *backlog) {
      out += "ferry_agent_pending_snapshots{target=\"" + b.target + "\"} " +
             std::to_string(b.snapshots) + "\n";
      out += "ferry_agent_pending_bytes{target=\"" + b.target + "\"} " + std::to_string(b.bytes) +
             "\n";
    }
  }
  line("ferry_agent_hub_connected", "gauge", "1 while a session with the hub is up.");
  for (auto& r : replicators_) {
    out += "ferry_agent_hub_connected{hub=\"" + r->hub() + "\"} " + (r->connected() ? "1" : "0") +
           "\n";
  }
  line("ferry_agent_sent_bytes_total", "counter", "Sealed chunk bytes uploaded, per hub.");
  for (auto& r : replicators_) {
    out += "ferry_agent_sent_bytes_total{hub=\"" + r->hub() + "\"} " +
           std::to_string(r->bytes_sent()) + "\n";
  }
  line("ferry_agent_commits_total", "counter", "Snapshots committed, per hub.");
  for (auto& r : replicators_) {
    out += "ferry_agent_commits_total{hub=\"" + r->hub() + "\"} " + std::to_string(r->commits()) +
           "\n";
  }
  line("ferry_agent_last_snapshot_unix", "gauge",
       "Creation time of each dataset's newest snapshot.");
  for (const DatasetConfig& d : config_.datasets) {
    if (Result<AgentState::DatasetSummary> sum = state_->Summarize(d.name); sum.ok() && sum->last) {
      out += "ferry_agent_last_snapshot_unix{dataset=\"" + d.name + "\"} " +
             std::to_string(sum->last->created_unix) + "\n";
    }
  }
  return out;
}

}  // namespace ferry::agent
