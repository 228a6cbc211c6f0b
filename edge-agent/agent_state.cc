#include "edge-agent/agent_state.h"

#include <boost/json.hpp>

namespace ferry::agent {
namespace {

namespace json = boost::json;

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE hubs(
  name TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  tenant TEXT NOT NULL,
  agent_name TEXT NOT NULL,
  enrolled_unix INTEGER NOT NULL);
CREATE TABLE hub_policies(
  hub TEXT PRIMARY KEY,
  generation INTEGER NOT NULL,
  policies TEXT NOT NULL);
CREATE TABLE policy_runs(
  policy TEXT PRIMARY KEY,
  last_due_unix INTEGER NOT NULL,
  running_cut TEXT NOT NULL,
  last_ok_unix INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  runs INTEGER NOT NULL,
  skipped INTEGER NOT NULL);
CREATE TABLE snapshots(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id BLOB NOT NULL UNIQUE,
  policy TEXT NOT NULL,
  dataset TEXT NOT NULL,
  cut TEXT NOT NULL,
  created_unix INTEGER NOT NULL,
  new_sealed_bytes INTEGER NOT NULL);
CREATE TABLE deliveries(
  seq INTEGER NOT NULL REFERENCES snapshots(seq),
  target TEXT NOT NULL,
  state TEXT NOT NULL,
  hub TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  bytes_sent INTEGER NOT NULL,
  error TEXT NOT NULL,
  committed_unix INTEGER NOT NULL,
  PRIMARY KEY(seq, target));
CREATE INDEX deliveries_open ON deliveries(target, state, seq);
)sql";

ByteView Blob(const snapshot::SnapshotId& id) { return ByteView(id.data(), id.size()); }

DeliveryState ParseState(const std::string& s) {
  if (s == "sending") return DeliveryState::kSending;
  if (s == "committed") return DeliveryState::kCommitted;
  if (s == "failed") return DeliveryState::kFailed;
  return DeliveryState::kPending;
}

// Columns: seq, id, policy, dataset, cut, created_unix, new_sealed_bytes.
QueuedSnapshot ReadSnapshot(const sqlite::Statement& st, int first) {
  QueuedSnapshot q;
  q.seq = st.ColumnInt(first);
  ByteView id = st.ColumnBlobView(first + 1);
  if (id.size() == q.id.size()) std::copy(id.begin(), id.end(), q.id.begin());
  q.policy = st.ColumnText(first + 2);
  q.dataset = st.ColumnText(first + 3);
  q.cut = st.ColumnText(first + 4);
  q.created_unix = st.ColumnInt(first + 5);
  q.new_sealed_bytes = static_cast<uint64_t>(st.ColumnInt(first + 6));
  return q;
}

constexpr const char* kDeliveryColumns =
    "s.seq, s.id, s.policy, s.dataset, s.cut, s.created_unix, s.new_sealed_bytes, "
    "d.target, d.state, d.hub, d.attempts, d.bytes_sent, d.error, d.committed_unix";

Delivery ReadDelivery(const sqlite::Statement& st) {
  Delivery d;
  d.snapshot = ReadSnapshot(st, 0);
  d.target = st.ColumnText(7);
  d.state = ParseState(st.ColumnText(8));
  d.hub = st.ColumnText(9);
  d.attempts = static_cast<uint64_t>(st.ColumnInt(10));
  d.bytes_sent = static_cast<uint64_t>(st.ColumnInt(11));
  d.error = st.ColumnText(12);
  d.committed_unix = st.ColumnInt(13);
  return d;
}

}  // namespace

const char* DeliveryStateName(DeliveryState s) {
  switch (s) {
    case DeliveryState::kPending:
      return "pending";
    case DeliveryState::kSending:
      return "sending";
    case DeliveryState::kCommitted:
      return "committed";
    case DeliveryState::kFailed:
      return "failed";
  }
  return "pending";
}

Result<std::unique_ptr<AgentState>> AgentState::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Database> db, sqlite::Database::Open(path));
  auto state = std::unique_ptr<AgentState>(new AgentState(std::move(db)));
  RETURN_IF_ERROR(state->Migrate());
  return state;
}

Status AgentState::Migrate() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(int64_t version, db_->UserVersion());
  if (version == kAgentStateSchemaVersion) return OkStatus();
  if (version > kAgentStateSchemaVersion) {
    return FailedPreconditionError(db_->path() + " has agent state schema version " +
                                   std::to_string(version) + "; this ferry-agent knows up to " +
                                   std::to_string(kAgentStateSchemaVersion) +
                                   " (run a newer ferry-agent)");
  }
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  RETURN_IF_ERROR(db_->Exec(kSchemaV1));
  RETURN_IF_ERROR(db_->SetUserVersion(kAgentStateSchemaVersion));
  return txn.Commit();
}

Status AgentState::SaveEnrollment(const EnrolledHub& hub) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("INSERT OR REPLACE INTO hubs(name, url, fingerprint, tenant, "
                                "agent_name, enrolled_unix) VALUES(?, ?, ?, ?, ?, ?)"));
  st.Bind(1, hub.name).Bind(2, hub.url).Bind(3, hub.fingerprint).Bind(4, hub.tenant);
  st.Bind(5, hub.agent_name).Bind(6, hub.enrolled_unix);
  return st.Run();
}

Result<std::vector<EnrolledHub>> AgentState::Enrollments() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("SELECT name, url, fingerprint, tenant, agent_name, enrolled_unix "
                                "FROM hubs ORDER BY name"));
  std::vector<EnrolledHub> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.ColumnText(0), st.ColumnText(1), st.ColumnText(2), st.ColumnText(3),
                   st.ColumnText(4), st.ColumnInt(5)});
  }
  return out;
}

Status AgentState::SaveHubPolicies(const HubPolicies& policies) {
  json::array list;
  for (const std::string& p : policies.policies) list.emplace_back(p);
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("INSERT OR REPLACE INTO hub_policies(hub, generation, policies) "
                                "VALUES(?, ?, ?)"));
  st.Bind(1, policies.hub)
      .Bind(2, static_cast<int64_t>(policies.generation))
      .Bind(3, json::serialize(list));
  return st.Run();
}

Result<std::vector<HubPolicies>> AgentState::AllHubPolicies() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT hub, generation, policies FROM "
                                                      "hub_policies ORDER BY hub"));
  std::vector<HubPolicies> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    HubPolicies h;
    h.hub = st.ColumnText(0);
    h.generation = static_cast<uint64_t>(st.ColumnInt(1));
    boost::system::error_code ec;
    json::value v = json::parse(st.ColumnText(2), ec);
    if (ec || !v.is_array()) {
      return DataLossError(db_->path() + ": the policies of hub " + h.hub + " are damaged");
    }
    for (const json::value& p : v.as_array()) {
      if (!p.is_string()) return DataLossError(db_->path() + ": a damaged policy");
      h.policies.emplace_back(p.as_string());
    }
    out.push_back(std::move(h));
  }
  return out;
}

Result<std::optional<PolicyRun>> AgentState::GetRun(const std::string& policy) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("SELECT last_due_unix, running_cut, last_ok_unix, last_error, "
                                "runs, skipped FROM policy_runs WHERE policy = ?"));
  st.Bind(1, policy);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<PolicyRun>();
  PolicyRun r;
  r.policy = policy;
  r.last_due_unix = st.ColumnInt(0);
  r.running_cut = st.ColumnText(1);
  r.last_ok_unix = st.ColumnInt(2);
  r.last_error = st.ColumnText(3);
  r.runs = static_cast<uint64_t>(st.ColumnInt(4));
  r.skipped = static_cast<uint64_t>(st.ColumnInt(5));
  return std::optional<PolicyRun>(std::move(r));
}

Status AgentState::PutRun(const PolicyRun& r) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("INSERT OR REPLACE INTO policy_runs(policy, last_due_unix, "
                                "running_cut, last_ok_unix, last_error, runs, skipped) "
                                "VALUES(?, ?, ?, ?, ?, ?, ?)"));
  st.Bind(1, r.policy).Bind(2, r.last_due_unix).Bind(3, r.running_cut).Bind(4, r.last_ok_unix);
  st.Bind(5, r.last_error)
      .Bind(6, static_cast<int64_t>(r.runs))
      .Bind(7, static_cast<int64_t>(r.skipped));
  return st.Run();
}

Result<int64_t> AgentState::AddSnapshot(const QueuedSnapshot& s,
                                        const std::vector<std::string>& targets) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  {
    ASSIGN_OR_RETURN(sqlite::Statement find,
                     db_->Prepare("SELECT seq FROM snapshots WHERE id = ?"));
    find.BindBlob(1, Blob(s.id));
    ASSIGN_OR_RETURN(bool row, find.Step());
    if (row) return find.ColumnInt(0);
  }
  ASSIGN_OR_RETURN(sqlite::Statement ins,
                   db_->Prepare("INSERT INTO snapshots(id, policy, dataset, cut, created_unix, "
                                "new_sealed_bytes) VALUES(?, ?, ?, ?, ?, ?)"));
  ins.BindBlob(1, Blob(s.id)).Bind(2, s.policy).Bind(3, s.dataset).Bind(4, s.cut);
  ins.Bind(5, s.created_unix).Bind(6, static_cast<int64_t>(s.new_sealed_bytes));
  RETURN_IF_ERROR(ins.Run());
  const int64_t seq = db_->LastInsertRowId();
  ASSIGN_OR_RETURN(sqlite::Statement d,
                   db_->Prepare("INSERT INTO deliveries(seq, target, state, hub, attempts, "
                                "bytes_sent, error, committed_unix) "
                                "VALUES(?, ?, 'pending', '', 0, 0, '', 0)"));
  for (const std::string& t : targets) {
    d.Reset();
    d.Bind(1, seq).Bind(2, t);
    RETURN_IF_ERROR(d.Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  return seq;
}

Result<bool> AgentState::HasSnapshot(const snapshot::SnapshotId& id) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT 1 FROM snapshots WHERE id = ?"));
  st.BindBlob(1, Blob(id));
  return st.Step();
}

Result<std::optional<Delivery>> AgentState::NextDelivery(const std::string& target) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare(std::string("SELECT ") + kDeliveryColumns +
                                " FROM deliveries d JOIN snapshots s ON s.seq = d.seq "
                                "WHERE d.target = ? AND d.state != 'committed' "
                                "ORDER BY d.seq LIMIT 1"));
  st.Bind(1, target);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<Delivery>();
  return std::optional<Delivery>(ReadDelivery(st));
}

Result<std::optional<snapshot::SnapshotId>> AgentState::LastCommittedAt(
    const std::string& hub, const std::string& dataset) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("SELECT s.id FROM deliveries d JOIN snapshots s ON s.seq = d.seq "
                                "WHERE d.hub = ? AND d.state = 'committed' AND s.dataset = ? "
                                "ORDER BY d.seq DESC LIMIT 1"));
  st.Bind(1, hub).Bind(2, dataset);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<snapshot::SnapshotId>();
  ASSIGN_OR_RETURN(snapshot::SnapshotId id,
                   snapshot::ArrayFromBytes<32>(st.ColumnBlob(0), "snapshot id"));
  return std::optional<snapshot::SnapshotId>(id);
}

Status AgentState::MarkSending(int64_t seq, const std::string& target, const std::string& hub) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("UPDATE deliveries SET state = 'sending', hub = ?, "
                                "attempts = attempts + 1 WHERE seq = ? AND target = ? "
                                "AND state != 'committed'"));
  st.Bind(1, hub).Bind(2, seq).Bind(3, target);
  return st.Run();
}

Status AgentState::MarkAttemptFailed(int64_t seq, const std::string& target,
                                     const std::string& error, uint64_t bytes_sent,
                                     bool permanent) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("UPDATE deliveries SET state = ?, error = ?, "
                                "bytes_sent = bytes_sent + ? WHERE seq = ? AND target = ? "
                                "AND state != 'committed'"));
  st.Bind(1, permanent ? "failed" : "pending").Bind(2, error);
  st.Bind(3, static_cast<int64_t>(bytes_sent)).Bind(4, seq).Bind(5, target);
  return st.Run();
}

Status AgentState::MarkCommitted(int64_t seq, const std::string& target, const std::string& hub,
                                 uint64_t bytes_sent, int64_t now_unix) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("UPDATE deliveries SET state = 'committed', hub = ?, error = '', "
                                "bytes_sent = bytes_sent + ?, committed_unix = ? "
                                "WHERE seq = ? AND target = ?"));
  st.Bind(1, hub).Bind(2, static_cast<int64_t>(bytes_sent)).Bind(3, now_unix);
  st.Bind(4, seq).Bind(5, target);
  return st.Run();
}

Result<std::vector<Delivery>> AgentState::RecentDeliveries(size_t limit) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare(std::string("SELECT ") + kDeliveryColumns +
                                " FROM deliveries d JOIN snapshots s ON s.seq = d.seq "
                                "ORDER BY d.seq DESC, d.target LIMIT ?"));
  st.Bind(1, static_cast<int64_t>(limit));
  std::vector<Delivery> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadDelivery(st));
  }
  return out;
}

Result<std::vector<snapshot::SnapshotId>> AgentState::PendingSnapshotIds() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Statement st,
                   db_->Prepare("SELECT DISTINCT s.id FROM deliveries d JOIN snapshots s "
                                "ON s.seq = d.seq WHERE d.state != 'committed'"));
  std::vector<snapshot::SnapshotId> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ByteView id = st.ColumnBlobView(0);
    snapshot::SnapshotId sid{};
    if (id.size() != sid.size()) return DataLossError(db_->path() + ": a damaged snapshot id");
    std::copy(id.begin(), id.end(), sid.begin());
    out.push_back(sid);
  }
  return out;
}

Result<std::vector<AgentState::Backlog>> AgentState::Backlogs() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(
      sqlite::Statement st,
      db_->Prepare("SELECT d.target, COUNT(*), COALESCE(SUM(s.new_sealed_bytes), 0) "
                   "FROM deliveries d JOIN snapshots s ON s.seq = d.seq "
                   "WHERE d.state != 'committed' GROUP BY d.target ORDER BY d.target"));
  std::vector<Backlog> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.ColumnText(0), static_cast<uint64_t>(st.ColumnInt(1)),
                   static_cast<uint64_t>(st.ColumnInt(2))});
  }
  return out;
}

Result<AgentState::DatasetSummary> AgentState::Summarize(const std::string& dataset) {
  std::lock_guard lock(mu_);
  DatasetSummary out;
  out.dataset = dataset;
  constexpr const char* kCols =
      "s.seq, s.id, s.policy, s.dataset, s.cut, s.created_unix, "
      "s.new_sealed_bytes";
  {
    ASSIGN_OR_RETURN(sqlite::Statement st,
                     db_->Prepare(std::string("SELECT ") + kCols +
                                  " FROM snapshots s WHERE s.dataset = ? ORDER BY s.seq DESC "
                                  "LIMIT 1"));
    st.Bind(1, dataset);
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) out.last = ReadSnapshot(st, 0);
  }
  {
    ASSIGN_OR_RETURN(
        sqlite::Statement st,
        db_->Prepare(std::string("SELECT ") + kCols +
                     " FROM snapshots s WHERE s.dataset = ? AND NOT EXISTS (SELECT 1 FROM "
                     "deliveries d WHERE d.seq = s.seq AND d.state != 'committed') "
                     "ORDER BY s.seq DESC LIMIT 1"));
    st.Bind(1, dataset);
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) out.last_replicated = ReadSnapshot(st, 0);
  }
  return out;
}

}  // namespace ferry::agent
