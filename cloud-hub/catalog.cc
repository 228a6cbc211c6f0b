#include "cloud-hub/catalog.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <climits>
#include <ctime>
#include <string_view>

#include "core/bytes.h"
#include "core/evp.h"

namespace ferry::hub {
namespace {

// Schema steps, applied in order, each in one transaction together with the
// PRAGMA user_version it reaches (docs/format/hub-catalog.md). A released
// step is never edited: changes come as a new step.
struct Migration {
  int64_t version;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE tenants (
  name              TEXT PRIMARY KEY NOT NULL,
  created_unix      INTEGER NOT NULL,
  policy_generation INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE agents (
  id             INTEGER PRIMARY KEY,
  tenant         TEXT NOT NULL REFERENCES tenants (name),
  name           TEXT NOT NULL,
  link_key       BLOB NOT NULL UNIQUE CHECK (length(link_key) = 32),
  signing_key    BLOB NOT NULL CHECK (length(signing_key) = 32),
  labels_json    TEXT NOT NULL DEFAULT '{}',
  enrolled_unix  INTEGER NOT NULL,
  last_seen_unix INTEGER NOT NULL DEFAULT 0,
  revoked_unix   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX agents_live_name ON agents (tenant, name) WHERE revoked_unix = 0;
CREATE INDEX agents_by_name ON agents (tenant, name, id);

CREATE TABLE join_tokens (
  hash         TEXT PRIMARY KEY NOT NULL CHECK (length(hash) = 64),
  tenant       TEXT NOT NULL REFERENCES tenants (name),
  agent_name   TEXT NOT NULL DEFAULT '',
  labels_json  TEXT NOT NULL DEFAULT '{}',
  created_unix INTEGER NOT NULL,
  expires_unix INTEGER NOT NULL,
  used_by      TEXT NOT NULL DEFAULT '',
  used_unix    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE api_tokens (
  id           TEXT PRIMARY KEY NOT NULL,
  hash         TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
  tenant       TEXT REFERENCES tenants (name),
  role         TEXT NOT NULL CHECK (role IN ('reader', 'operator', 'admin')),
  description  TEXT NOT NULL DEFAULT '',
  created_unix INTEGER NOT NULL,
  revoked_unix INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE snapshots (
  tenant          TEXT NOT NULL REFERENCES tenants (name),
  id              TEXT NOT NULL CHECK (length(id) = 64),
  agent           TEXT NOT NULL,
  datasets_json   TEXT NOT NULL DEFAULT '[]',
  created_unix_ns INTEGER NOT NULL,
  committed_unix  INTEGER NOT NULL,
  parent          TEXT NOT NULL DEFAULT '',
  chunks          INTEGER NOT NULL,
  sealed_bytes    INTEGER NOT NULL,
  logical_bytes   INTEGER NOT NULL,
  labels_json     TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX snapshots_by_time ON snapshots (tenant, created_unix_ns);
CREATE INDEX snapshots_by_agent ON snapshots (tenant, agent, created_unix_ns);
CREATE INDEX snapshots_by_agent_commit ON snapshots (tenant, agent, committed_unix);

CREATE TABLE snapshot_datasets (
  tenant      TEXT NOT NULL,
  snapshot_id TEXT NOT NULL,
  dataset     TEXT NOT NULL,
  PRIMARY KEY (tenant, snapshot_id, dataset),
  FOREIGN KEY (tenant, snapshot_id) REFERENCES snapshots (tenant, id)
) WITHOUT ROWID;
CREATE INDEX snapshot_datasets_by_name ON snapshot_datasets (tenant, dataset);

CREATE TABLE policies (
  tenant       TEXT NOT NULL REFERENCES tenants (name),
  name         TEXT NOT NULL,
  spec_json    TEXT NOT NULL,
  generation   INTEGER NOT NULL,
  updated_unix INTEGER NOT NULL,
  PRIMARY KEY (tenant, name)
) WITHOUT ROWID;

CREATE TABLE sessions (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant         TEXT NOT NULL DEFAULT '',
  agent          TEXT NOT NULL DEFAULT '',
  remote         TEXT NOT NULL DEFAULT '',
  started_unix   INTEGER NOT NULL,
  ended_unix     INTEGER NOT NULL DEFAULT 0,
  bytes_received INTEGER NOT NULL DEFAULT 0,
  chunks_new     INTEGER NOT NULL DEFAULT 0,
  commits        INTEGER NOT NULL DEFAULT 0,
  end_status     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_tenant ON sessions (tenant, id);

PRAGMA application_id = 1179145538;
)sql"},
    // 2: each agent's latest report (AgentReport on the link), and the
    // policy of each snapshot (its ferry.policy label) for the status page.
    {2, R"sql(
CREATE TABLE agent_reports (
  agent_id          INTEGER PRIMARY KEY REFERENCES agents (id),
  pending_bytes     INTEGER NOT NULL CHECK (pending_bytes >= 0),
  pending_snapshots INTEGER NOT NULL CHECK (pending_snapshots >= 0),
  last_error        TEXT NOT NULL DEFAULT '' CHECK (length(CAST(last_error AS BLOB)) <= 1024),
  last_error_unix   INTEGER NOT NULL DEFAULT 0,
  reported_unix     INTEGER NOT NULL,
  received_unix     INTEGER NOT NULL
);

ALTER TABLE snapshots ADD COLUMN policy TEXT NOT NULL DEFAULT '';
UPDATE snapshots SET policy = json_extract(labels_json, '$."ferry.policy"')
  WHERE json_valid(labels_json) AND json_type(labels_json, '$."ferry.policy"') = 'text';
CREATE INDEX snapshots_by_policy ON snapshots (tenant, agent, policy, created_unix_ns);
)sql"},
};

static_assert(std::size(kMigrations) > 0 &&
                  kMigrations[std::size(kMigrations) - 1].version == kCatalogSchemaVersion,
              "the last migration must reach kCatalogSchemaVersion");

constexpr std::string_view kApiTokenPrefix = "fry_";
constexpr std::string_view kJoinTokenPrefix = "fjt_";
constexpr size_t kTokenRandomBytes = 20;  // 160 bits -> 32 base32 characters
constexpr size_t kTokenLength = 4 + 32;
constexpr size_t kMaxDescription = 256;
constexpr size_t kMaxSpecJson = 256 << 10;
constexpr size_t kMaxListSnapshots = 10'000;

std::string NewClearToken(std::string_view prefix) {
  std::array<uint8_t, kTokenRandomBytes> random = sodium::RandomArray<kTokenRandomBytes>();
  std::string token = std::string(prefix) + Base32Encode(random);
  sodium::RandomBytes(random);  // do not leave the secret on the stack
  return token;
}

// The shape a token of `prefix` must have; anything else is not looked up.
bool WellFormedToken(std::string_view token, std::string_view prefix) {
  if (token.size() != kTokenLength || token.substr(0, prefix.size()) != prefix) return false;
  for (char c : token.substr(prefix.size())) {
    if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'))) return false;
  }
  return true;
}

std::string TokenHash(std::string_view clear_token) {
  return HexEncode(evp::Sha256(AsBytes(clear_token)));
}

std::string LabelsToJson(const std::map<std::string, std::string>& labels) {
  boost::json::object o;
  for (const auto& [k, v] : labels) o[k] = v;
  return boost::json::serialize(o);
}

std::map<std::string, std::string> LabelsFromJson(const std::string& text) {
  std::map<std::string, std::string> out;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return out;
  for (const auto& [k, val] : v.as_object()) {
    if (val.is_string()) out.emplace(std::string(k), std::string(val.as_string()));
  }
  return out;
}

std::string StringsToJson(const std::vector<std::string>& items) {
  boost::json::array a;
  for (const auto& s : items) a.emplace_back(s);
  return boost::json::serialize(a);
}

std::vector<std::string> StringsFromJson(const std::string& text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_array()) return out;
  for (const auto& item : v.as_array()) {
    if (item.is_string()) out.emplace_back(item.as_string());
  }
  return out;
}

std::string FormatUtc(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

sodium::PublicKey KeyFromBlob(ByteView blob) {
  sodium::PublicKey key{};
  if (blob.size() == key.size()) std::copy(blob.begin(), blob.end(), key.begin());
  return key;
}

// Column order shared by every agent query.
constexpr const char* kAgentColumns =
    "tenant, name, link_key, signing_key, labels_json, enrolled_unix, last_seen_unix, "
    "revoked_unix";
// The same with the agent's latest report (NULLs when it never reported):
// "SELECT " + kAgentWithReport + " WHERE ..." (read with ReadAgentWithReport).
constexpr const char* kAgentWithReport =
    "tenant, name, link_key, signing_key, labels_json, enrolled_unix, last_seen_unix, "
    "revoked_unix, r.agent_id, r.pending_bytes, r.pending_snapshots, r.last_error, "
    "r.last_error_unix, r.reported_unix, r.received_unix "
    "FROM agents LEFT JOIN agent_reports r ON r.agent_id = agents.id";

Agent ReadAgent(const sqlite::Statement& st);

Agent ReadAgentWithReport(const sqlite::Statement& st) {
  Agent a = ReadAgent(st);
  if (!st.ColumnIsNull(8)) {
    AgentReportRecord r;
    r.pending_bytes = static_cast<uint64_t>(std::max<int64_t>(st.ColumnInt(9), 0));
    r.pending_snapshots = static_cast<uint64_t>(std::max<int64_t>(st.ColumnInt(10), 0));
    r.last_error = st.ColumnText(11);
    r.last_error_unix = st.ColumnInt(12);
    r.reported_unix = st.ColumnInt(13);
    r.received_unix = st.ColumnInt(14);
    a.report = std::move(r);
  }
  return a;
}

Agent ReadAgent(const sqlite::Statement& st) {
  Agent a;
  a.tenant = st.ColumnText(0);
  a.name = st.ColumnText(1);
  a.link_key = KeyFromBlob(st.ColumnBlobView(2));
  a.signing_key = KeyFromBlob(st.ColumnBlobView(3));
  a.labels = LabelsFromJson(st.ColumnText(4));
  a.enrolled_unix = st.ColumnInt(5);
  a.last_seen_unix = st.ColumnInt(6);
  a.revoked_unix = st.ColumnInt(7);
  a.revoked = a.revoked_unix != 0;
  return a;
}

constexpr const char* kTokenColumns =
    "id, IFNULL(tenant, ''), role, description, created_unix, revoked_unix";

ApiToken ReadToken(const sqlite::Statement& st) {
  ApiToken t;
  t.id = st.ColumnText(0);
  t.tenant = st.ColumnText(1);
  // The CHECK constraint admits only the three names; anything else reads
  // as the weakest role.
  Result<Role> role = ParseRole(st.ColumnText(2));
  t.role = role.ok() ? *role : Role::kReader;
  t.description = st.ColumnText(3);
  t.created_unix = st.ColumnInt(4);
  t.revoked = st.ColumnInt(5) != 0;
  return t;
}

constexpr const char* kSnapshotColumns =
    "tenant, id, agent, datasets_json, created_unix_ns, committed_unix, parent, chunks, "
    "sealed_bytes, logical_bytes, labels_json";

SnapshotRecord ReadSnapshot(const sqlite::Statement& st) {
  SnapshotRecord s;
  s.tenant = st.ColumnText(0);
  s.id = st.ColumnText(1);
  s.agent = st.ColumnText(2);
  s.datasets = StringsFromJson(st.ColumnText(3));
  s.created_unix_ns = st.ColumnInt(4);
  s.committed_unix = st.ColumnInt(5);
  s.parent = st.ColumnText(6);
  s.chunks = static_cast<uint64_t>(st.ColumnInt(7));
  s.sealed_bytes = static_cast<uint64_t>(st.ColumnInt(8));
  s.logical_bytes = static_cast<uint64_t>(st.ColumnInt(9));
  s.labels = LabelsFromJson(st.ColumnText(10));
  return s;
}

PolicyRecord ReadPolicy(const sqlite::Statement& st) {
  PolicyRecord p;
  p.tenant = st.ColumnText(0);
  p.name = st.ColumnText(1);
  p.spec_json = st.ColumnText(2);
  p.generation = static_cast<uint64_t>(st.ColumnInt(3));
  p.updated_unix = st.ColumnInt(4);
  return p;
}

SessionRecord ReadSession(const sqlite::Statement& st) {
  SessionRecord s;
  s.id = st.ColumnInt(0);
  s.tenant = st.ColumnText(1);
  s.agent = st.ColumnText(2);
  s.remote = st.ColumnText(3);
  s.started_unix = st.ColumnInt(4);
  s.ended_unix = st.ColumnInt(5);
  s.bytes_received = static_cast<uint64_t>(st.ColumnInt(6));
  s.chunks_new = static_cast<uint64_t>(st.ColumnInt(7));
  s.commits = static_cast<uint64_t>(st.ColumnInt(8));
  s.end_status = st.ColumnText(9);
  return s;
}

int64_t AsInt(uint64_t v) { return v > INT64_MAX ? INT64_MAX : static_cast<int64_t>(v); }

}  // namespace

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

Status ValidateName(std::string_view what, std::string_view name) {
  auto bad = [&] {
    return InvalidArgumentError(std::string(what) + " name " + QuoteForMessage(name) +
                                ": must be 1-63 characters of a-z, 0-9 and '-', starting with a "
                                "letter or digit");
  };
  if (name.empty() || name.size() > 63 || name[0] == '-') return bad();
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return bad();
  }
  return OkStatus();
}

Status ValidateLabels(const std::map<std::string, std::string>& labels) {
  if (labels.size() > 64) {
    return InvalidArgumentError("labels: at most 64 are allowed, got " +
                                std::to_string(labels.size()));
  }
  for (const auto& [key, value] : labels) {
    bool ok = !key.empty() && key.size() <= 63 && std::isalnum(static_cast<unsigned char>(key[0]));
    for (char c : key) {
      ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '/' ||
                  c == '-');
    }
    if (!ok) {
      return InvalidArgumentError("label key " + QuoteForMessage(key) +
                                  ": must be 1-63 characters of A-Z, a-z, 0-9, '.', '_', '/' and "
                                  "'-', starting with a letter or digit");
    }
    if (value.size() > 255) {
      return InvalidArgumentError("label " + key + ": value longer than 255 bytes");
    }
    for (char c : value) {
      const unsigned char u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) {
        return InvalidArgumentError("label " + key + ": value contains a control character");
      }
    }
    if (!IsValidUtf8(value)) return InvalidArgumentError("label " + key + ": value is not UTF-8");
  }
  return OkStatus();
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kReader:
      return "reader";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

Result<Role> ParseRole(std::string_view name) {
  if (name == "reader") return Role::kReader;
  if (name == "operator") return Role::kOperator;
  if (name == "admin") return Role::kAdmin;
  return InvalidArgumentError("role " + QuoteForMessage(name) +
                              ": must be reader, operator or admin");
}

// ---- open and migrate ----

Status CreateCatalogSchemaForTest(sqlite::Database& db, int64_t version) {
  for (const Migration& m : kMigrations) {
    if (m.version > version) break;
    ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(db));
    RETURN_IF_ERROR(db.Exec(m.sql));
    RETURN_IF_ERROR(db.SetUserVersion(m.version));
    RETURN_IF_ERROR(txn.Commit());
  }
  return OkStatus();
}

Catalog::Catalog(std::unique_ptr<sqlite::Database> db, Clock* clock)
    : db_(std::move(db)), clock_(clock) {}

Catalog::~Catalog() = default;

Result<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path, Clock* clock) {
  ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Database> db, sqlite::Database::Open(path));
  std::unique_ptr<Catalog> catalog(new Catalog(std::move(db), clock));
  RETURN_IF_ERROR(catalog->Migrate());
  return catalog;
}

Status Catalog::Migrate() {
  ASSIGN_OR_RETURN(int64_t version, db_->UserVersion());
  ASSIGN_OR_RETURN(sqlite::Statement app, db_->Prepare("PRAGMA application_id"));
  ASSIGN_OR_RETURN(bool app_row, app.Step());
  const int64_t app_id = app_row ? app.ColumnInt(0) : 0;
  const std::string& path = db_->path();
  if (app_id != 0 && app_id != kCatalogApplicationId) {
    return FailedPreconditionError(path + " is not a ferry-hub catalog (SQLite application_id " +
                                   std::to_string(app_id) + ")");
  }
  if (version > kCatalogSchemaVersion) {
    return FailedPreconditionError(
        "hub catalog " + path + " has schema version " + std::to_string(version) +
        "; this ferry-hub knows versions up to " + std::to_string(kCatalogSchemaVersion) +
        " (a newer ferry-hub wrote it)");
  }
  if (version == 0) {
    // A database with tables but no version is someone else's file: never
    // add our schema to it.
    ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare("SELECT count(*) FROM sqlite_master"));
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && st.ColumnInt(0) != 0) {
      return FailedPreconditionError(path +
                                     " is not a ferry-hub catalog (it has tables but no schema "
                                     "version)");
    }
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= version) continue;
    ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
    Status s = db_->Exec(m.sql);
    if (s.ok()) s = db_->SetUserVersion(m.version);
    if (s.ok()) s = txn.Commit();
    if (!s.ok()) {
      return s.WithContext("hub catalog " + path + ": migration to schema version " +
                           std::to_string(m.version));
    }
    version = m.version;
  }
  schema_version_ = version;
  return OkStatus();
}

int64_t Catalog::schema_version() const { return schema_version_; }

int64_t Catalog::NowUnix() const { return clock_->NowUnixNanos() / 1'000'000'000; }

Status Catalog::Ping() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::CachedStatement st, db_->Cached("SELECT count(*) FROM tenants"));
  return st->Step().status();
}

// ---- tenants ----

Status Catalog::CheckTenantLocked(const std::string& tenant) {
  RETURN_IF_ERROR(ValidateName("tenant", tenant));
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("SELECT 1 FROM tenants WHERE name = ?1"));
  st->Bind(1, tenant);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return NotFoundError("tenant " + tenant + " not found");
  return OkStatus();
}

Status Catalog::CreateTenant(const std::string& name) {
  RETURN_IF_ERROR(ValidateName("tenant", name));
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  if (CheckTenantLocked(name).ok()) return AlreadyExistsError("tenant " + name + " already exists");
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("INSERT INTO tenants (name, created_unix) VALUES (?1, ?2)"));
    st->Bind(1, name).Bind(2, NowUnix());
    RETURN_IF_ERROR(st->Run());
  }
  return txn.Commit();
}

Result<std::vector<Tenant>> Catalog::ListTenants() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("SELECT name, created_unix FROM tenants ORDER BY name"));
  std::vector<Tenant> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(Tenant{st->ColumnText(0), st->ColumnInt(1)});
  }
  return out;
}

Result<Tenant> Catalog::GetTenant(const std::string& name) {
  RETURN_IF_ERROR(ValidateName("tenant", name));
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("SELECT name, created_unix FROM tenants WHERE name = ?1"));
  st->Bind(1, name);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return NotFoundError("tenant " + name + " not found");
  return Tenant{st->ColumnText(0), st->ColumnInt(1)};
}

// ---- API tokens ----

Result<std::string> Catalog::CreateApiToken(const std::string& tenant, Role role,
                                            const std::string& description, ApiToken* created) {
  if (description.size() > kMaxDescription) {
    return InvalidArgumentError("description: at most " + std::to_string(kMaxDescription) +
                                " bytes");
  }
  for (char c : description) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return InvalidArgumentError("description: contains a control character");
    }
  }
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  if (!tenant.empty()) RETURN_IF_ERROR(CheckTenantLocked(tenant));
  ApiToken token;
  token.tenant = tenant;
  token.role = role;
  token.description = description;
  token.created_unix = NowUnix();
  std::string clear;
  // The public id is short (32 bits): on the rare collision, draw again.
  for (int attempt = 0;; ++attempt) {
    token.id = "tok-" + HexEncode(sodium::RandomArray<4>());
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("SELECT 1 FROM api_tokens WHERE id = ?1"));
    st->Bind(1, token.id);
    ASSIGN_OR_RETURN(bool taken, st->Step());
    if (!taken) break;
    if (attempt == 16) return InternalError("could not draw a free API token id");
  }
  clear = NewClearToken(kApiTokenPrefix);
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("INSERT INTO api_tokens (id, hash, tenant, role, description, "
                                 "created_unix) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
    st->Bind(1, token.id).Bind(2, TokenHash(clear)).Bind(4, RoleName(role)).Bind(5, description);
    st->Bind(6, token.created_unix);
    if (tenant.empty()) {
      st->BindNull(3);
    } else {
      st->Bind(3, tenant);
    }
    RETURN_IF_ERROR(st->Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  if (created != nullptr) *created = token;
  return clear;
}

Result<ApiToken> Catalog::AuthenticateApiToken(std::string_view clear_token) {
  const Status denied = PermissionDeniedError("invalid or revoked token");
  if (!WellFormedToken(clear_token, kApiTokenPrefix)) return denied;
  // Looked up by its SHA-256: the timing of an index search reveals at most
  // a prefix of the hash, which does not help to find a token.
  const std::string hash = TokenHash(clear_token);
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kTokenColumns +
                    " FROM api_tokens WHERE hash = ?1 AND revoked_unix = 0";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.Bind(1, hash);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return denied;
  return ReadToken(st);
}

Result<std::vector<ApiToken>> Catalog::ListApiTokens(const std::string& tenant) {
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kTokenColumns +
                    " FROM api_tokens WHERE ?1 = '' OR tenant = ?1 ORDER BY created_unix, id";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.Bind(1, tenant);
  std::vector<ApiToken> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadToken(st));
  }
  return out;
}

Result<ApiToken> Catalog::GetApiTokenLocked(const std::string& id) {
  std::string sql = std::string("SELECT ") + kTokenColumns + " FROM api_tokens WHERE id = ?1";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFoundError("API token " + QuoteForMessage(id) + " not found");
  return ReadToken(st);
}

Result<ApiToken> Catalog::GetApiToken(const std::string& id) {
  std::lock_guard lock(mu_);
  return GetApiTokenLocked(id);
}

Status Catalog::RevokeApiToken(const std::string& id) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(GetApiTokenLocked(id).status());
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("UPDATE api_tokens SET revoked_unix = ?2 WHERE id = ?1 AND "
                               "revoked_unix = 0"));
  st->Bind(1, id).Bind(2, std::max<int64_t>(NowUnix(), 1));
  return st->Run();
}

// ---- join tokens and enrollment ----

Result<NewJoinToken> Catalog::CreateJoinToken(const std::string& tenant, int64_t ttl_seconds,
                                              const std::string& agent_name,
                                              const std::map<std::string, std::string>& labels) {
  if (ttl_seconds < 1 || ttl_seconds > kMaxJoinTokenTtlSeconds) {
    return InvalidArgumentError("ttl_seconds: must be between 1 and " +
                                std::to_string(kMaxJoinTokenTtlSeconds) + ", got " +
                                std::to_string(ttl_seconds));
  }
  if (!agent_name.empty()) RETURN_IF_ERROR(ValidateName("agent", agent_name));
  RETURN_IF_ERROR(ValidateLabels(labels));
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  RETURN_IF_ERROR(CheckTenantLocked(tenant));
  NewJoinToken out;
  out.token = NewClearToken(kJoinTokenPrefix);
  const int64_t now = NowUnix();
  out.expires_unix = now + ttl_seconds;
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("INSERT INTO join_tokens (hash, tenant, agent_name, labels_json, "
                                 "created_unix, expires_unix) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
    st->Bind(1, TokenHash(out.token)).Bind(2, tenant).Bind(3, agent_name);
    st->Bind(4, LabelsToJson(labels)).Bind(5, now).Bind(6, out.expires_unix);
    RETURN_IF_ERROR(st->Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  return out;
}

Result<Agent> Catalog::RedeemJoinToken(std::string_view clear_token, const std::string& agent_name,
                                       const sodium::PublicKey& link_key,
                                       const sodium::PublicKey& signing_key,
                                       const std::map<std::string, std::string>& labels) {
  const Status invalid = PermissionDeniedError("join token is not valid on this hub");
  if (!WellFormedToken(clear_token, kJoinTokenPrefix)) return invalid;
  if (!agent_name.empty()) RETURN_IF_ERROR(ValidateName("agent", agent_name));
  RETURN_IF_ERROR(ValidateLabels(labels));
  const std::string hash = TokenHash(clear_token);

  std::lock_guard lock(mu_);
  // One transaction: checking the token, enrolling and spending it either
  // all happen or none does (an enrollment refused for a name conflict
  // leaves the token usable).
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  std::string tenant, fixed_name, token_labels_json, used_by;
  int64_t expires_unix = 0;
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("SELECT tenant, agent_name, labels_json, expires_unix, used_by "
                                 "FROM join_tokens WHERE hash = ?1"));
    st->Bind(1, hash);
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return invalid;
    tenant = st->ColumnText(0);
    fixed_name = st->ColumnText(1);
    token_labels_json = st->ColumnText(2);
    expires_unix = st->ColumnInt(3);
    used_by = st->ColumnText(4);
  }
  if (!used_by.empty()) {
    return PermissionDeniedError("join token was already used (by agent " + used_by + ")");
  }
  const int64_t now = NowUnix();
  if (now >= expires_unix) {
    return PermissionDeniedError("join token expired at " + FormatUtc(expires_unix) +
                                 "; ask an operator for a new one");
  }
  std::string name = agent_name;
  if (!fixed_name.empty()) {
    if (name.empty()) {
      name = fixed_name;
    } else if (name != fixed_name) {
      return PermissionDeniedError("join token is for agent " + fixed_name + ", not " + name);
    }
  }
  if (name.empty()) return InvalidArgumentError("agent name: required (the token names none)");

  // Operator-given labels (the token's) win over the agent's own.
  std::map<std::string, std::string> merged = labels;
  for (const auto& [k, v] : LabelsFromJson(token_labels_json)) merged[k] = v;
  RETURN_IF_ERROR(ValidateLabels(merged));

  std::optional<Agent> same_key;
  {
    std::string sql = std::string("SELECT ") + kAgentColumns + " FROM agents WHERE link_key = ?1";
    ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
    st.BindBlob(1, link_key);
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) same_key = ReadAgent(st);
  }
  if (same_key) {
    if (same_key->revoked) {
      return PermissionDeniedError("this link key belongs to revoked agent " + same_key->name +
                                   " of tenant " + same_key->tenant +
                                   "; a revoked identity cannot enroll again: make a new one");
    }
    if (same_key->tenant != tenant || same_key->name != name) {
      return AlreadyExistsError("this link key is already enrolled as agent " + same_key->name +
                                " of tenant " + same_key->tenant);
    }
    // Re-enrollment of the same identity under the same name.
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("UPDATE agents SET signing_key = ?2, labels_json = ?3, "
                                 "enrolled_unix = ?4 WHERE link_key = ?1"));
    st->BindBlob(1, link_key).BindBlob(2, signing_key).Bind(3, LabelsToJson(merged)).Bind(4, now);
    RETURN_IF_ERROR(st->Run());
  } else {
    {
      ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                       db_->Cached("SELECT 1 FROM agents WHERE tenant = ?1 AND name = ?2 AND "
                                   "revoked_unix = 0"));
      st->Bind(1, tenant).Bind(2, name);
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (row) {
        return AlreadyExistsError("tenant " + tenant + " already has a live agent named " + name +
                                  " with another key; revoke it first or pick another name");
      }
    }
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("INSERT INTO agents (tenant, name, link_key, signing_key, "
                                 "labels_json, enrolled_unix) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
    st->Bind(1, tenant).Bind(2, name).BindBlob(3, link_key).BindBlob(4, signing_key);
    st->Bind(5, LabelsToJson(merged)).Bind(6, now);
    RETURN_IF_ERROR(st->Run());
  }
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("UPDATE join_tokens SET used_by = ?2, used_unix = ?3 "
                                 "WHERE hash = ?1 AND used_by = ''"));
    st->Bind(1, hash).Bind(2, name).Bind(3, now);
    RETURN_IF_ERROR(st->Run());
    if (db_->Changes() != 1) return InternalError("join token changed during enrollment");
  }
  ASSIGN_OR_RETURN(Agent agent, GetAgentLocked(tenant, name));
  RETURN_IF_ERROR(txn.Commit());
  return agent;
}

// ---- agents ----

Result<Agent> Catalog::FindAgentByLinkKey(const sodium::PublicKey& link_key) {
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kAgentWithReport + " WHERE link_key = ?1";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.BindBlob(1, link_key);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFoundError("no agent has this link key");
  return ReadAgentWithReport(st);
}

Result<Agent> Catalog::GetAgentLocked(const std::string& tenant, const std::string& name) {
  // The live agent of that name, else the most recently revoked one.
  std::string sql = std::string("SELECT ") + kAgentWithReport +
                    " WHERE tenant = ?1 AND name = ?2 "
                    "ORDER BY revoked_unix = 0 DESC, id DESC LIMIT 1";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.Bind(1, tenant).Bind(2, name);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFoundError("agent " + name + " not found in tenant " + tenant);
  return ReadAgentWithReport(st);
}

Result<Agent> Catalog::GetAgent(const std::string& tenant, const std::string& name) {
  RETURN_IF_ERROR(ValidateName("tenant", tenant));
  RETURN_IF_ERROR(ValidateName("agent", name));
  std::lock_guard lock(mu_);
  return GetAgentLocked(tenant, name);
}

Result<std::vector<Agent>> Catalog::ListAgents(const std::string& tenant) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckTenantLocked(tenant));
  std::string sql =
      std::string("SELECT ") + kAgentWithReport + " WHERE tenant = ?1 ORDER BY name, agents.id";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.Bind(1, tenant);
  std::vector<Agent> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadAgentWithReport(st));
  }
  return out;
}

Status Catalog::RevokeAgent(const std::string& tenant, const std::string& name) {
  RETURN_IF_ERROR(ValidateName("tenant", tenant));
  RETURN_IF_ERROR(ValidateName("agent", name));
  std::lock_guard lock(mu_);
  // Revoking an already revoked agent is a no-op; an unknown one is kNotFound.
  RETURN_IF_ERROR(GetAgentLocked(tenant, name).status());
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("UPDATE agents SET revoked_unix = ?3 WHERE tenant = ?1 AND "
                               "name = ?2 AND revoked_unix = 0"));
  st->Bind(1, tenant).Bind(2, name).Bind(3, std::max<int64_t>(NowUnix(), 1));
  return st->Run();
}

Status Catalog::TouchAgent(const std::string& tenant, const std::string& name, int64_t now_unix) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("UPDATE agents SET last_seen_unix = ?3 WHERE tenant = ?1 AND "
                               "name = ?2 AND revoked_unix = 0"));
  st->Bind(1, tenant).Bind(2, name).Bind(3, now_unix);
  RETURN_IF_ERROR(st->Run());
  if (db_->Changes() == 0) {
    return NotFoundError("no live agent " + name + " in tenant " + tenant);
  }
  return OkStatus();
}

Status Catalog::SaveAgentReport(const std::string& tenant, const std::string& name,
                                const AgentReportRecord& report) {
  if (report.last_error.size() > kMaxReportErrorBytes) {
    return InvalidArgumentError(
        "agent report: last_error of " + std::to_string(report.last_error.size()) +
        " bytes exceeds the limit of " + std::to_string(kMaxReportErrorBytes));
  }
  if (!IsValidUtf8(report.last_error)) {
    return InvalidArgumentError("agent report: last_error is not UTF-8");
  }
  if (report.pending_bytes > static_cast<uint64_t>(INT64_MAX) || report.last_error_unix < 0 ||
      report.reported_unix < 0) {
    return InvalidArgumentError("agent report: a value is out of range");
  }
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  {
    // Only a live agent reports (a revoked key has no session).
    ASSIGN_OR_RETURN(
        sqlite::CachedStatement st,
        db_->Cached("INSERT INTO agent_reports (agent_id, pending_bytes, pending_snapshots, "
                    "last_error, last_error_unix, reported_unix, received_unix) "
                    "SELECT id, ?3, ?4, ?5, ?6, ?7, ?8 FROM agents WHERE tenant = ?1 AND "
                    "name = ?2 AND revoked_unix = 0 "
                    "ON CONFLICT (agent_id) DO UPDATE SET pending_bytes = excluded.pending_bytes, "
                    "pending_snapshots = excluded.pending_snapshots, last_error = "
                    "excluded.last_error, last_error_unix = excluded.last_error_unix, "
                    "reported_unix = excluded.reported_unix, received_unix = "
                    "excluded.received_unix"));
    st->Bind(1, tenant).Bind(2, name).Bind(3, AsInt(report.pending_bytes));
    st->Bind(4, AsInt(report.pending_snapshots)).Bind(5, report.last_error);
    st->Bind(6, report.last_error_unix).Bind(7, report.reported_unix);
    st->Bind(8, report.received_unix);
    RETURN_IF_ERROR(st->Run());
  }
  if (db_->Changes() == 0) return NotFoundError("no live agent " + name + " in tenant " + tenant);
  {
    // A report is link activity too.
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("UPDATE agents SET last_seen_unix = MAX(last_seen_unix, ?3) "
                                 "WHERE tenant = ?1 AND name = ?2 AND revoked_unix = 0"));
    st->Bind(1, tenant).Bind(2, name).Bind(3, report.received_unix);
    RETURN_IF_ERROR(st->Run());
  }
  return txn.Commit();
}

// ---- snapshots ----

Status Catalog::RecordSnapshot(const SnapshotRecord& s) {
  if (s.id.size() != 64 || !IsLowerHex(s.id)) {
    return InvalidArgumentError("snapshot id " + QuoteForMessage(s.id) +
                                ": must be 64 lowercase hex digits");
  }
  if (!s.parent.empty() && (s.parent.size() != 64 || !IsLowerHex(s.parent))) {
    return InvalidArgumentError("snapshot parent " + QuoteForMessage(s.parent) +
                                ": must be empty or 64 lowercase hex digits");
  }
  RETURN_IF_ERROR(ValidateName("agent", s.agent));
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  RETURN_IF_ERROR(CheckTenantLocked(s.tenant));
  {
    ASSIGN_OR_RETURN(
        sqlite::CachedStatement st,
        db_->Cached("INSERT INTO snapshots (tenant, id, agent, datasets_json, created_unix_ns, "
                    "committed_unix, parent, chunks, sealed_bytes, logical_bytes, labels_json, "
                    "policy) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
                    "ON CONFLICT (tenant, id) DO NOTHING"));
    st->Bind(1, s.tenant).Bind(2, s.id).Bind(3, s.agent).Bind(4, StringsToJson(s.datasets));
    st->Bind(5, s.created_unix_ns).Bind(6, s.committed_unix).Bind(7, s.parent);
    st->Bind(8, AsInt(s.chunks)).Bind(9, AsInt(s.sealed_bytes)).Bind(10, AsInt(s.logical_bytes));
    st->Bind(11, LabelsToJson(s.labels));
    auto policy = s.labels.find(std::string(kPolicyLabel));
    st->Bind(12, policy == s.labels.end() ? std::string() : policy->second);
    RETURN_IF_ERROR(st->Run());
  }
  if (db_->Changes() == 0) return OkStatus();  // already recorded: the first record stands
  for (const std::string& dataset : s.datasets) {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("INSERT OR IGNORE INTO snapshot_datasets (tenant, snapshot_id, "
                                 "dataset) VALUES (?1, ?2, ?3)"));
    st->Bind(1, s.tenant).Bind(2, s.id).Bind(3, dataset);
    RETURN_IF_ERROR(st->Run());
  }
  return txn.Commit();
}

Result<std::vector<SnapshotRecord>> Catalog::ListSnapshots(const std::string& tenant,
                                                           const SnapshotFilter& filter) {
  const size_t limit = filter.limit == 0 ? 1000 : std::min(filter.limit, kMaxListSnapshots);
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckTenantLocked(tenant));
  std::string sql = std::string("SELECT ") + kSnapshotColumns +
                    " FROM snapshots s WHERE tenant = ?1 AND (?2 = '' OR agent = ?2) AND "
                    "(?3 = '' OR EXISTS (SELECT 1 FROM snapshot_datasets d WHERE d.tenant = "
                    "s.tenant AND d.snapshot_id = s.id AND d.dataset = ?3)) AND "
                    "created_unix_ns >= ?4 AND (?5 = 0 OR created_unix_ns < ?5) "
                    "ORDER BY created_unix_ns DESC, id DESC LIMIT ?6";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.Bind(1, tenant).Bind(2, filter.agent).Bind(3, filter.dataset);
  st.Bind(4, filter.since_unix_ns).Bind(5, filter.until_unix_ns);
  st.Bind(6, static_cast<int64_t>(limit));
  std::vector<SnapshotRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadSnapshot(st));
  }
  return out;
}

Result<SnapshotRecord> Catalog::GetSnapshot(const std::string& tenant, const std::string& id) {
  std::lock_guard lock(mu_);
  std::string sql =
      std::string("SELECT ") + kSnapshotColumns + " FROM snapshots WHERE tenant = ?1 AND id = ?2";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  st.Bind(1, tenant).Bind(2, id);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row)
    return NotFoundError("snapshot " + QuoteForMessage(id) + " not found in tenant " + tenant);
  return ReadSnapshot(st);
}

Result<std::optional<SnapshotRecord>> Catalog::LastPolicySnapshot(const std::string& tenant,
                                                                  const std::string& agent,
                                                                  const std::string& policy,
                                                                  const std::string& dataset) {
  std::lock_guard lock(mu_);
  // Newest first along snapshots_by_policy; the dataset filter skips the
  // policy's other datasets (a run makes one snapshot per dataset).
  ASSIGN_OR_RETURN(
      sqlite::CachedStatement st,
      db_->Cached("SELECT tenant, id, agent, datasets_json, created_unix_ns, committed_unix, "
                  "parent, chunks, sealed_bytes, logical_bytes, labels_json FROM snapshots s "
                  "WHERE tenant = ?1 AND agent = ?2 AND policy = ?3 AND (?4 = '' OR EXISTS "
                  "(SELECT 1 FROM snapshot_datasets d WHERE d.tenant = s.tenant AND "
                  "d.snapshot_id = s.id AND d.dataset = ?4)) "
                  "ORDER BY created_unix_ns DESC, id DESC LIMIT 1"));
  st->Bind(1, tenant).Bind(2, agent).Bind(3, policy).Bind(4, dataset);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return std::optional<SnapshotRecord>();
  return std::optional<SnapshotRecord>(ReadSnapshot(*st));
}

Result<std::optional<SnapshotRecord>> Catalog::LastAgentSnapshot(const std::string& tenant,
                                                                 const std::string& agent) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(
      sqlite::CachedStatement st,
      db_->Cached("SELECT tenant, id, agent, datasets_json, created_unix_ns, committed_unix, "
                  "parent, chunks, sealed_bytes, logical_bytes, labels_json FROM snapshots "
                  "WHERE tenant = ?1 AND agent = ?2 ORDER BY created_unix_ns DESC, id DESC "
                  "LIMIT 1"));
  st->Bind(1, tenant).Bind(2, agent);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return std::optional<SnapshotRecord>();
  return std::optional<SnapshotRecord>(ReadSnapshot(*st));
}

Result<std::vector<std::pair<Agent, int64_t>>> Catalog::LastSnapshotTimes() {
  std::lock_guard lock(mu_);
  std::string sql =
      "SELECT a.tenant, a.name, a.link_key, a.signing_key, a.labels_json, a.enrolled_unix, "
      "a.last_seen_unix, a.revoked_unix, (SELECT MAX(s.committed_unix) FROM snapshots s WHERE "
      "s.tenant = a.tenant AND s.agent = a.name) AS last FROM agents a WHERE a.revoked_unix = 0 "
      "AND last IS NOT NULL ORDER BY a.tenant, a.name";
  ASSIGN_OR_RETURN(sqlite::Statement st, db_->Prepare(sql));
  std::vector<std::pair<Agent, int64_t>> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.emplace_back(ReadAgent(st), st.ColumnInt(8));
  }
  return out;
}

// ---- policies ----

Result<PolicyRecord> Catalog::PutPolicy(const std::string& tenant, const std::string& name,
                                        const std::string& spec_json, PutOutcome* outcome) {
  RETURN_IF_ERROR(ValidateName("policy", name));
  if (spec_json.empty() || spec_json.size() > kMaxSpecJson) {
    return InvalidArgumentError("policy " + name + ": the spec must be 1 byte to " +
                                std::to_string(kMaxSpecJson) + " bytes of JSON");
  }
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  RETURN_IF_ERROR(CheckTenantLocked(tenant));
  std::optional<PolicyRecord> existing;
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("SELECT tenant, name, spec_json, generation, updated_unix FROM "
                                 "policies WHERE tenant = ?1 AND name = ?2"));
    st->Bind(1, tenant).Bind(2, name);
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (row) existing = ReadPolicy(*st);
  }
  if (existing && existing->spec_json == spec_json) {
    if (outcome != nullptr) *outcome = PutOutcome::kUnchanged;
    return *existing;
  }
  PolicyRecord record;
  record.tenant = tenant;
  record.name = name;
  record.spec_json = spec_json;
  record.updated_unix = NowUnix();
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("UPDATE tenants SET policy_generation = policy_generation + 1 "
                                 "WHERE name = ?1 RETURNING policy_generation"));
    st->Bind(1, tenant);
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return InternalError("tenant " + tenant + " vanished");
    record.generation = static_cast<uint64_t>(st->ColumnInt(0));
    RETURN_IF_ERROR(st->Run());
  }
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("INSERT INTO policies (tenant, name, spec_json, generation, "
                                 "updated_unix) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant, "
                                 "name) DO UPDATE SET spec_json = excluded.spec_json, generation "
                                 "= excluded.generation, updated_unix = excluded.updated_unix"));
    st->Bind(1, tenant).Bind(2, name).Bind(3, spec_json);
    st->Bind(4, static_cast<int64_t>(record.generation)).Bind(5, record.updated_unix);
    RETURN_IF_ERROR(st->Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  if (outcome != nullptr) *outcome = existing ? PutOutcome::kUpdated : PutOutcome::kCreated;
  return record;
}

Result<PolicyRecord> Catalog::GetPolicy(const std::string& tenant, const std::string& name) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("SELECT tenant, name, spec_json, generation, updated_unix FROM "
                               "policies WHERE tenant = ?1 AND name = ?2"));
  st->Bind(1, tenant).Bind(2, name);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row)
    return NotFoundError("policy " + QuoteForMessage(name) + " not found in tenant " + tenant);
  return ReadPolicy(*st);
}

Result<std::vector<PolicyRecord>> Catalog::ListPolicies(const std::string& tenant) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckTenantLocked(tenant));
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("SELECT tenant, name, spec_json, generation, updated_unix FROM "
                               "policies WHERE tenant = ?1 ORDER BY name"));
  st->Bind(1, tenant);
  std::vector<PolicyRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(ReadPolicy(*st));
  }
  return out;
}

Status Catalog::DeletePolicy(const std::string& tenant, const std::string& name) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("DELETE FROM policies WHERE tenant = ?1 AND name = ?2"));
    st->Bind(1, tenant).Bind(2, name);
    RETURN_IF_ERROR(st->Run());
  }
  if (db_->Changes() == 0) {
    return NotFoundError("policy " + QuoteForMessage(name) + " not found in tenant " + tenant);
  }
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("UPDATE tenants SET policy_generation = policy_generation + 1 "
                                 "WHERE name = ?1"));
    st->Bind(1, tenant);
    RETURN_IF_ERROR(st->Run());
  }
  return txn.Commit();
}

Result<uint64_t> Catalog::PolicyGeneration(const std::string& tenant) {
  RETURN_IF_ERROR(ValidateName("tenant", tenant));
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("SELECT policy_generation FROM tenants WHERE name = ?1"));
  st->Bind(1, tenant);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return NotFoundError("tenant " + tenant + " not found");
  return static_cast<uint64_t>(st->ColumnInt(0));
}

// ---- sessions ----

Result<int64_t> Catalog::OpenSession(const std::string& tenant, const std::string& agent,
                                     const std::string& remote, int64_t now_unix) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::Transaction txn, sqlite::Transaction::Begin(*db_));
  int64_t id = 0;
  {
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("INSERT INTO sessions (tenant, agent, remote, started_unix) "
                                 "VALUES (?1, ?2, ?3, ?4)"));
    st->Bind(1, tenant).Bind(2, agent).Bind(3, remote.substr(0, 255)).Bind(4, now_unix);
    RETURN_IF_ERROR(st->Run());
    id = db_->LastInsertRowId();
  }
  {
    // Ids only grow (AUTOINCREMENT), so the newest rows are the highest ids.
    ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                     db_->Cached("DELETE FROM sessions WHERE id <= ?1"));
    st->Bind(1, id - kMaxSessions);
    RETURN_IF_ERROR(st->Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  return id;
}

Status Catalog::CloseSession(int64_t id, int64_t now_unix, uint64_t bytes_received,
                             uint64_t chunks_new, uint64_t commits, const std::string& end_status) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("UPDATE sessions SET ended_unix = ?2, bytes_received = ?3, "
                               "chunks_new = ?4, commits = ?5, end_status = ?6 WHERE id = ?1"));
  st->Bind(1, id).Bind(2, now_unix).Bind(3, AsInt(bytes_received)).Bind(4, AsInt(chunks_new));
  st->Bind(5, AsInt(commits)).Bind(6, end_status.substr(0, 1024));
  RETURN_IF_ERROR(st->Run());
  if (db_->Changes() == 0) return NotFoundError("session " + std::to_string(id) + " not found");
  return OkStatus();
}

Result<std::vector<SessionRecord>> Catalog::ListSessions(const std::string& tenant, size_t limit) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite::CachedStatement st,
                   db_->Cached("SELECT id, tenant, agent, remote, started_unix, ended_unix, "
                               "bytes_received, chunks_new, commits, end_status FROM sessions "
                               "WHERE ?1 = '' OR tenant = ?1 ORDER BY id DESC LIMIT ?2"));
  st->Bind(1, tenant).Bind(2, static_cast<int64_t>(std::min<size_t>(limit, kMaxSessions)));
  std::vector<SessionRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(ReadSession(*st));
  }
  return out;
}

}  // namespace ferry::hub
