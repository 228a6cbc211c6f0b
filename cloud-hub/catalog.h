// Catalog: the hub's SQLite database (WAL) of tenants, agents, enrollment
// (join) tokens, API tokens, snapshots, policies and link sessions. Schema
// and migrations: docs/format/hub-catalog.md. The chunks themselves, their
// index and each snapshot's manifest and reference set live in the tenant's
// chunk store (tenant_stores.h); the catalog lists what the stores hold.
//
// Secrets (join tokens, API tokens) are stored only as SHA-256 hashes; the
// clear token is returned once, when it is created.
//
// Errors: kNotFound (no such tenant/agent/token/snapshot/policy),
// kAlreadyExists (duplicate names), kPermissionDenied (a token that is
// unknown, used, expired or revoked; a revoked agent), kInvalidArgument
// (malformed names or values), kDataLoss / kInternal (the database).
// Thread-safety: thread-safe (one connection behind a mutex; every call is a
// short transaction).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/sodium.h"
#include "core/sqlite.h"
#include "core/status.h"

namespace ferry::hub {

// The schema version this binary writes (PRAGMA user_version).
inline constexpr int64_t kCatalogSchemaVersion = 2;
// PRAGMA application_id of a hub catalog: "FHUB" as a big-endian u32.
inline constexpr int64_t kCatalogApplicationId = 0x46485542;
// Join tokens live at most this long (and at least 1 s).
inline constexpr int64_t kMaxJoinTokenTtlSeconds = 30 * 24 * 3600;
// The snapshot label naming the mirror policy whose run captured it (set by
// ferry-agent); recorded as snapshots.policy.
inline constexpr std::string_view kPolicyLabel = "ferry.policy";
// Longest AgentReportRecord::last_error (bytes of UTF-8), as on the link.
inline constexpr size_t kMaxReportErrorBytes = 1024;

// Tenant and agent names: 1-63 characters of [a-z0-9-], starting with a
// letter or digit (DNS-label-like: they appear in paths and metrics).
// kInvalidArgument naming `what` otherwise.
Status ValidateName(std::string_view what, std::string_view name);

// Labels (of agents, join tokens, snapshots): at most 64; keys 1-63
// characters of [A-Za-z0-9._/-] starting with a letter or digit; values at
// most 255 bytes of UTF-8 without control characters. kInvalidArgument
// otherwise.
Status ValidateLabels(const std::map<std::string, std::string>& labels);

// Well-formed UTF-8: no overlong forms, surrogates or code points past
// U+10FFFF (what JSON text must be).
bool IsValidUtf8(std::string_view s);

struct Tenant {
  std::string name;
  int64_t created_unix = 0;
};

enum class Role { kReader = 1, kOperator = 2, kAdmin = 3 };
const char* RoleName(Role role);
Result<Role> ParseRole(std::string_view name);

// An API (bearer) token. `tenant` empty = every tenant (the first admin
// token made by `ferry-hub init`).
struct ApiToken {
  std::string id;  // public id, e.g. "tok-3f9a1c2b" (shown in lists, used to revoke)
  std::string tenant;
  Role role = Role::kReader;
  std::string description;
  int64_t created_unix = 0;
  bool revoked = false;
};

// What an agent last reported about itself over the link (AgentReport,
// docs/format/link.md): its backlog for this hub and its last error.
struct AgentReportRecord {
  uint64_t pending_bytes = 0;      // outbox bytes this hub has not committed yet
  uint64_t pending_snapshots = 0;  // their snapshots
  std::string last_error;          // "" = none; at most kMaxReportErrorBytes of UTF-8
  int64_t last_error_unix = 0;     // the agent's clock; 0 with no error
  int64_t reported_unix = 0;       // when the agent read the values (its clock)
  int64_t received_unix = 0;       // when the hub stored the report (the hub's clock)
};

struct Agent {
  std::string tenant;
  std::string name;
  sodium::PublicKey link_key{};     // X25519 static key of the link (Noise)
  sodium::PublicKey signing_key{};  // Ed25519 key that signs its manifests
  std::map<std::string, std::string> labels;
  int64_t enrolled_unix = 0;
  int64_t last_seen_unix = 0;  // 0 = never after enrollment
  bool revoked = false;
  int64_t revoked_unix = 0;  // 0 while live
  // The latest report (GetAgent, ListAgents, FindAgentByLinkKey); none if
  // the agent never reported.
  std::optional<AgentReportRecord> report;
};

// A join token as created (the clear token is returned only here).
struct NewJoinToken {
  std::string token;
  int64_t expires_unix = 0;
};

struct SnapshotRecord {
  std::string id;  // 64 hex characters
  std::string tenant;
  std::string agent;
  std::vector<std::string> datasets;  // dataset names in the manifest
  int64_t created_unix_ns = 0;        // capture time from the manifest
  int64_t committed_unix = 0;         // when the hub acknowledged it
  std::string parent;                 // hex, or empty
  uint64_t chunks = 0;                // distinct chunks referenced
  uint64_t sealed_bytes = 0;          // their sealed size
  uint64_t logical_bytes = 0;         // sum of the datasets' file bytes
  std::map<std::string, std::string> labels;
};

struct SnapshotFilter {
  std::string agent;    // empty = any
  std::string dataset;  // empty = any
  int64_t since_unix_ns = 0;
  int64_t until_unix_ns = 0;  // 0 = no bound
  size_t limit = 1000;
};

struct PolicyRecord {
  std::string tenant;
  std::string name;
  std::string spec_json;  // the validated policy, canonical JSON
  // The tenant's policy generation when this policy last changed: a
  // per-tenant counter bumped by every change (put or delete) of any of its
  // policies, so it never repeats, even across a delete and re-create.
  uint64_t generation = 0;
  int64_t updated_unix = 0;
};

enum class PutOutcome { kCreated, kUpdated, kUnchanged };

struct SessionRecord {
  int64_t id = 0;
  std::string tenant;  // empty for an unknown key
  std::string agent;
  std::string remote;
  int64_t started_unix = 0;
  int64_t ended_unix = 0;  // 0 while open
  uint64_t bytes_received = 0;
  uint64_t chunks_new = 0;
  uint64_t commits = 0;
  std::string end_status;
};

// Tests of migrations: applies the schema steps up to `version` (and no
// further) to an empty database, as a hub of that version would have.
Status CreateCatalogSchemaForTest(sqlite::Database& db, int64_t version);

class Catalog {
 public:
  // Opens (creating if absent) the database file `path` (the hub uses
  // DATA/catalog.db) and applies pending migrations in one transaction
  // each; a database of a newer schema than this binary knows, or a file
  // that is not a hub catalog, is kFailedPrecondition. `clock` (token
  // creation and expiry, created/updated times) must outlive the catalog.
  static Result<std::unique_ptr<Catalog>> Open(const std::string& path,
                                               Clock* clock = Clock::Real());
  ~Catalog();

  int64_t schema_version() const;
  // A cheap query (for /readyz).
  Status Ping();

  // Tenants.
  Status CreateTenant(const std::string& name);
  Result<std::vector<Tenant>> ListTenants();
  Result<Tenant> GetTenant(const std::string& name);

  // API tokens. Returns the clear token ("fry_" + 32 base32 characters).
  Result<std::string> CreateApiToken(const std::string& tenant, Role role,
                                     const std::string& description, ApiToken* created = nullptr);
  // kPermissionDenied "invalid or revoked token" for anything but a live token.
  Result<ApiToken> AuthenticateApiToken(std::string_view clear_token);
  Result<std::vector<ApiToken>> ListApiTokens(const std::string& tenant);  // "" = all
  Status RevokeApiToken(const std::string& id);
  Result<ApiToken> GetApiToken(const std::string& id);

  // Join tokens: one-time, expiring. `agent_name` (optional) fixes the name
  // the agent must enroll under; `labels` are given to the agent.
  Result<NewJoinToken> CreateJoinToken(const std::string& tenant, int64_t ttl_seconds,
                                       const std::string& agent_name = "",
                                       const std::map<std::string, std::string>& labels = {});
  // Spends the token and enrolls the agent, atomically. kPermissionDenied:
  // "join token is not valid on this hub" / "join token expired ..." /
  // "join token was already used (by agent NAME)"; kAlreadyExists when the
  // tenant already has a live agent of that name with another key.
  // Re-enrolling the same link key under the same name is allowed (the
  // token is still spent).
  Result<Agent> RedeemJoinToken(std::string_view clear_token, const std::string& agent_name,
                                const sodium::PublicKey& link_key,
                                const sodium::PublicKey& signing_key,
                                const std::map<std::string, std::string>& labels);

  // Agents.
  Result<Agent> FindAgentByLinkKey(const sodium::PublicKey& link_key);  // kNotFound if unknown
  Result<Agent> GetAgent(const std::string& tenant, const std::string& name);
  Result<std::vector<Agent>> ListAgents(const std::string& tenant);
  Status RevokeAgent(const std::string& tenant, const std::string& name);
  Status TouchAgent(const std::string& tenant, const std::string& name, int64_t now_unix);
  // Replaces the live agent's report with `report` and moves its
  // last_seen_unix up to report.received_unix. kNotFound for no live agent
  // of that name; kInvalidArgument for a last_error over
  // kMaxReportErrorBytes or not UTF-8, or a value out of range.
  Status SaveAgentReport(const std::string& tenant, const std::string& name,
                         const AgentReportRecord& report);

  // Snapshots. Idempotent: recording an id already recorded is OK (no change).
  Status RecordSnapshot(const SnapshotRecord& snapshot);
  Result<std::vector<SnapshotRecord>> ListSnapshots(const std::string& tenant,
                                                    const SnapshotFilter& filter);
  Result<SnapshotRecord> GetSnapshot(const std::string& tenant, const std::string& id);
  // The newest snapshot (by capture time) of `agent` labelled
  // ferry.policy=`policy` that holds `dataset` (any dataset when empty), or
  // none. An index seek (snapshots_by_policy).
  Result<std::optional<SnapshotRecord>> LastPolicySnapshot(const std::string& tenant,
                                                           const std::string& agent,
                                                           const std::string& policy,
                                                           const std::string& dataset);
  // The newest snapshot (by capture time) of `agent`, or none.
  Result<std::optional<SnapshotRecord>> LastAgentSnapshot(const std::string& tenant,
                                                          const std::string& agent);
  // Per live agent with at least one snapshot: the newest committed_unix
  // (for metrics).
  Result<std::vector<std::pair<Agent, int64_t>>> LastSnapshotTimes();

  // Policies (validated by the caller; see mirror/policy). Putting the same
  // spec again changes nothing (kUnchanged: same generation and time).
  Result<PolicyRecord> PutPolicy(const std::string& tenant, const std::string& name,
                                 const std::string& spec_json, PutOutcome* outcome = nullptr);
  Result<PolicyRecord> GetPolicy(const std::string& tenant, const std::string& name);
  Result<std::vector<PolicyRecord>> ListPolicies(const std::string& tenant);
  Status DeletePolicy(const std::string& tenant, const std::string& name);
  // The tenant's policy generation (0 before its first policy change).
  Result<uint64_t> PolicyGeneration(const std::string& tenant);

  // Link sessions. The newest kMaxSessions are kept (older rows are pruned
  // when a session opens). ListSessions: newest first; tenant "" = all.
  static constexpr int64_t kMaxSessions = 100'000;
  Result<int64_t> OpenSession(const std::string& tenant, const std::string& agent,
                              const std::string& remote, int64_t now_unix);
  Status CloseSession(int64_t id, int64_t now_unix, uint64_t bytes_received, uint64_t chunks_new,
                      uint64_t commits, const std::string& end_status);
  Result<std::vector<SessionRecord>> ListSessions(const std::string& tenant, size_t limit);

 private:
  Catalog(std::unique_ptr<sqlite::Database> db, Clock* clock);
  Status Migrate();
  int64_t NowUnix() const;
  Status CheckTenantLocked(const std::string& tenant);  // kNotFound
  Result<Agent> GetAgentLocked(const std::string& tenant, const std::string& name);
  Result<ApiToken> GetApiTokenLocked(const std::string& id);

  std::mutex mu_;
  std::unique_ptr<sqlite::Database> db_;  // guarded by mu_
  Clock* const clock_;
  int64_t schema_version_ = 0;
};

}  // namespace ferry::hub
