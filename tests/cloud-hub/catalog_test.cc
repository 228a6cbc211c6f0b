// The hub catalog: schema and migrations, tenants, API and join tokens,
// enrollment rules, agents, snapshots, policies and sessions.
#include "cloud-hub/catalog.h"

#include <gtest/gtest.h>

#include <functional>
#include <optional>

#include "core/env.h"
#include "core/sqlite.h"
#include "tests/testing/test_util.h"

namespace ferry::hub {
namespace {

using ::ferry::testing::TempDir;

constexpr int64_t kSecond = 1'000'000'000;

sodium::PublicKey Key(uint8_t fill) {
  sodium::PublicKey k;
  k.fill(fill);
  return k;
}

std::string HexId(char c) { return std::string(64, c); }

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Sub("catalog.db");
    Reopen();
    ASSERT_TRUE(catalog_->CreateTenant("acme").ok());
    ASSERT_TRUE(catalog_->CreateTenant("globex").ok());
  }

  void Reopen() {
    catalog_.reset();
    Result<std::unique_ptr<Catalog>> c = Catalog::Open(path_, &clock_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(*c);
  }

  int64_t Now() const { return clock_.NowUnixNanos() / kSecond; }

  Result<Agent> Enroll(const std::string& tenant, const std::string& name, uint8_t key,
                       const std::string& fixed_name = "") {
    Result<NewJoinToken> t = catalog_->CreateJoinToken(tenant, 600, fixed_name);
    if (!t.ok()) return t.status();
    return catalog_->RedeemJoinToken(t->token, name, Key(key), Key(key + 100), {});
  }

  SnapshotRecord Snap(char id, const std::string& agent, int64_t created_s,
                      std::vector<std::string> datasets = {"data"}) {
    SnapshotRecord s;
    s.id = HexId(id);
    s.tenant = "acme";
    s.agent = agent;
    s.datasets = std::move(datasets);
    s.created_unix_ns = created_s * kSecond;
    s.committed_unix = created_s + 5;
    s.chunks = 10;
    s.sealed_bytes = 1000;
    s.logical_bytes = 5000;
    s.labels = {{"site", "paris"}};
    return s;
  }

  TempDir dir_;
  std::string path_;
  FakeClock clock_;
  std::unique_ptr<Catalog> catalog_;
};

// ---- schema ----

TEST_F(CatalogTest, EmptyFileIsMigratedToTheCurrentSchema) {
  EXPECT_EQ(catalog_->schema_version(), kCatalogSchemaVersion);
  EXPECT_TRUE(catalog_->Ping().ok());
  catalog_.reset();
  auto db = sqlite::Database::Open(path_);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(*(*db)->UserVersion(), kCatalogSchemaVersion);
  auto st = (*db)->Prepare("PRAGMA application_id");
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(*st->Step());
  EXPECT_EQ(st->ColumnInt(0), kCatalogApplicationId);
  auto mode = (*db)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->ColumnText(0), "wal");
}

TEST_F(CatalogTest, ReopenKeepsEverything) {
  ASSERT_TRUE(catalog_->CreateApiToken("acme", Role::kReader, "r").ok());
  Reopen();
  EXPECT_EQ(catalog_->schema_version(), kCatalogSchemaVersion);
  Result<std::vector<Tenant>> tenants = catalog_->ListTenants();
  ASSERT_TRUE(tenants.ok());
  ASSERT_EQ(tenants->size(), 2u);
  EXPECT_EQ((*tenants)[0].name, "acme");
  EXPECT_EQ((*tenants)[0].created_unix, Now());
  EXPECT_EQ(catalog_->ListApiTokens("acme")->size(), 1u);
}

TEST_F(CatalogTest, NewerSchemaIsRefused) {
  catalog_.reset();
  {
    auto db = sqlite::Database::Open(path_);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->SetUserVersion(kCatalogSchemaVersion + 1).ok());
  }
  Result<std::unique_ptr<Catalog>> c = Catalog::Open(path_, &clock_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(c.status().message().find("newer ferry-hub"), std::string::npos)
      << c.status().ToString();
}

TEST_F(CatalogTest, ForeignDatabasesAreRefused) {
  {
    const std::string other = dir_.Sub("other.db");
    auto db = sqlite::Database::Open(other);
    ASSERT_TRUE((*db)->Exec("CREATE TABLE t (x)").ok());
    db->reset();
    Result<std::unique_ptr<Catalog>> c = Catalog::Open(other, &clock_);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
    // Nothing of ours was added.
    auto again = sqlite::Database::Open(other);
    EXPECT_EQ(*(*again)->UserVersion(), 0);
  }
  {
    const std::string other = dir_.Sub("app.db");
    auto db = sqlite::Database::Open(other);
    ASSERT_TRUE((*db)->Exec("PRAGMA application_id = 42").ok());
    db->reset();
    Result<std::unique_ptr<Catalog>> c = Catalog::Open(other, &clock_);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(c.status().message().find("not a ferry-hub catalog"), std::string::npos);
  }
}

// A catalog written by a hub of schema version 1 (the released step 1, as
// that hub ran it) opens at the current version: migration 2 adds the
// agent reports and, from each snapshot's ferry.policy label, its policy.
// Everything version 1 held is still there.
TEST_F(CatalogTest, VersionOneCatalogMigratesKeepingEverything) {
  const std::string old_path = dir_.Sub("v1.db");
  {
    auto db = sqlite::Database::Open(old_path);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    ASSERT_TRUE(CreateCatalogSchemaForTest(**db, 1).ok());
    EXPECT_EQ(*(*db)->UserVersion(), 1);
    // Rows as a version-1 hub wrote them.
    const std::string sql =
        "INSERT INTO tenants (name, created_unix) VALUES ('acme', 100);"
        "INSERT INTO agents (tenant, name, link_key, signing_key, labels_json, enrolled_unix) "
        "VALUES ('acme', 'cam-1', zeroblob(32), randomblob(32), '{\"site\":\"shop\"}', 100);"
        "INSERT INTO snapshots (tenant, id, agent, datasets_json, created_unix_ns, "
        "committed_unix, chunks, sealed_bytes, logical_bytes, labels_json) VALUES "
        "('acme', '" +
        HexId('a') +
        "', 'cam-1', '[\"vol\"]', 1000000000000, 1005, 1, 10, 10, "
        "'{\"ferry.policy\":\"hourly\",\"ferry.cut\":\"c1\"}'),"
        "('acme', '" +
        HexId('b') +
        "', 'cam-1', '[\"vol\"]', 2000000000000, 2005, 1, 10, 10, '{\"site\":\"shop\"}'),"
        "('acme', '" +
        HexId('c') +
        "', 'cam-1', '[\"vol\"]', 3000000000000, 3005, 1, 10, 10, 'not json');"
        "INSERT INTO snapshot_datasets (tenant, snapshot_id, dataset) VALUES "
        "('acme', '" +
        HexId('a') + "', 'vol'), ('acme', '" + HexId('b') + "', 'vol'), ('acme', '" + HexId('c') +
        "', 'vol');";
    ASSERT_TRUE((*db)->Exec(sql).ok());
  }
  Result<std::unique_ptr<Catalog>> c = Catalog::Open(old_path, &clock_);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  Catalog& catalog = **c;
  EXPECT_EQ(catalog.schema_version(), kCatalogSchemaVersion);
  EXPECT_EQ(kCatalogSchemaVersion, 2);
  Result<Agent> agent = catalog.GetAgent("acme", "cam-1");
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  EXPECT_EQ(agent->labels.at("site"), "shop");
  EXPECT_FALSE(agent->report.has_value()) << "no agent has reported yet";
  EXPECT_EQ(catalog.ListSnapshots("acme", {})->size(), 3u);
  // The policy was taken from the label; unlabelled and damaged rows have none.
  Result<std::optional<SnapshotRecord>> hourly =
      catalog.LastPolicySnapshot("acme", "cam-1", "hourly", "vol");
  ASSERT_TRUE(hourly.ok()) << hourly.status().ToString();
  ASSERT_TRUE(hourly->has_value());
  EXPECT_EQ((*hourly)->id, HexId('a'));
  // The unlabelled row and the one with damaged labels have the empty policy.
  EXPECT_EQ(catalog.LastPolicySnapshot("acme", "cam-1", "", "vol")->value().id, HexId('c'));
  // The new table works on the migrated file.
  AgentReportRecord r;
  r.pending_bytes = 42;
  r.received_unix = 5000;
  ASSERT_TRUE(catalog.SaveAgentReport("acme", "cam-1", r).ok());
  EXPECT_EQ(catalog.GetAgent("acme", "cam-1")->report->pending_bytes, 42u);
  c->reset();
  // Opening again runs nothing more.
  Result<std::unique_ptr<Catalog>> again = Catalog::Open(old_path, &clock_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)->GetAgent("acme", "cam-1")->report->pending_bytes, 42u);
}

// ---- names and tenants ----

TEST(CatalogNamesTest, NamesAreDnsLabelLike) {
  const std::vector<std::string> good = {"a", "acme", "a-1", "0day", std::string(63, 'x')};
  for (const std::string& name : good) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(ValidateName("tenant", name).ok());
  }
  const std::vector<std::string> bad = {
      "", "-a", "A", "a_b", "a.b", "a b", "\xc3\xa9", std::string(64, 'x'), std::string("a\0b", 3)};
  for (const std::string& name : bad) {
    SCOPED_TRACE(name);
    Status s = ValidateName("tenant", name);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("tenant name"), std::string::npos);
  }
}

TEST(CatalogNamesTest, LabelsAreBounded) {
  EXPECT_TRUE(ValidateLabels({{"site", "Paris 3"}, {"app.kubernetes.io/name", "x"}}).ok());
  EXPECT_FALSE(ValidateLabels({{"", "x"}}).ok());
  EXPECT_FALSE(ValidateLabels({{"-x", "x"}}).ok());
  EXPECT_FALSE(ValidateLabels({{"a b", "x"}}).ok());
  EXPECT_FALSE(ValidateLabels({{"k", std::string(256, 'v')}}).ok());
  EXPECT_FALSE(ValidateLabels({{"k", "line\nbreak"}}).ok());
  EXPECT_TRUE(ValidateLabels({{"city", "S\xc3\xa3o Paulo"}}).ok());
  EXPECT_FALSE(ValidateLabels({{"k", "\xff"}}).ok());
  std::map<std::string, std::string> many;
  for (int i = 0; i < 65; ++i) many["k" + std::to_string(i)] = "v";
  EXPECT_FALSE(ValidateLabels(many).ok());
}

TEST(CatalogNamesTest, Utf8Validation) {
  struct Case {
    std::string text;
    bool valid;
  };
  const Case cases[] = {
      {"", true},
      {"plain", true},
      {"\xc3\xa9", true},           // U+00E9
      {"\xe2\x82\xac", true},       // U+20AC
      {"\xf0\x9f\x98\x80", true},   // U+1F600
      {"\xc3", false},              // truncated
      {"\xe2\x82", false},          // truncated
      {"\xc0\xaf", false},          // overlong '/'
      {"\xe0\x80\xaf", false},      // overlong
      {"\xed\xa0\x80", false},      // surrogate U+D800
      {"\xf4\x90\x80\x80", false},  // past U+10FFFF
      {"\x80", false},              // lone continuation
      {"a\xff"
       "b",
       false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(IsValidUtf8(c.text), c.valid);
  }
}

TEST_F(CatalogTest, TenantsAreUniqueAndValidated) {
  EXPECT_EQ(catalog_->CreateTenant("acme").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(catalog_->CreateTenant("Bad").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog_->GetTenant("nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog_->GetTenant("globex")->name, "globex");
}

// ---- API tokens ----

TEST_F(CatalogTest, ApiTokensAuthenticateUntilRevoked) {
  ApiToken created;
  Result<std::string> clear = catalog_->CreateApiToken("acme", Role::kOperator, "ci", &created);
  ASSERT_TRUE(clear.ok()) << clear.status().ToString();
  EXPECT_EQ(clear->size(), 36u);
  EXPECT_EQ(clear->substr(0, 4), "fry_");
  EXPECT_EQ(clear->find_first_not_of("abcdefghijklmnopqrstuvwxyz234567", 4), std::string::npos);
  EXPECT_EQ(created.id.size(), 12u);
  EXPECT_EQ(created.id.substr(0, 4), "tok-");

  Result<ApiToken> who = catalog_->AuthenticateApiToken(*clear);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  EXPECT_EQ(who->id, created.id);
  EXPECT_EQ(who->tenant, "acme");
  EXPECT_EQ(who->role, Role::kOperator);
  EXPECT_EQ(who->description, "ci");

  // Near misses and garbage are all the same answer.
  std::string flipped = *clear;
  flipped.back() = flipped.back() == 'a' ? 'b' : 'a';
  for (const std::string& bad : {flipped, std::string("fry_"), std::string(""),
                                 "fjt_" + clear->substr(4), clear->substr(0, 35)}) {
    SCOPED_TRACE(bad);
    Result<ApiToken> r = catalog_->AuthenticateApiToken(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
    EXPECT_EQ(r.status().message(), "invalid or revoked token");
  }

  ASSERT_TRUE(catalog_->RevokeApiToken(created.id).ok());
  ASSERT_TRUE(catalog_->RevokeApiToken(created.id).ok());  // idempotent
  EXPECT_EQ(catalog_->AuthenticateApiToken(*clear).status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(catalog_->GetApiToken(created.id)->revoked);
  EXPECT_EQ(catalog_->RevokeApiToken("tok-00000000").code(), StatusCode::kNotFound);
}

TEST_F(CatalogTest, ApiTokensAreStoredOnlyAsHashes) {
  Result<std::string> clear = catalog_->CreateApiToken("", Role::kAdmin, "init");
  ASSERT_TRUE(clear.ok());
  Result<NewJoinToken> join = catalog_->CreateJoinToken("acme", 60);
  ASSERT_TRUE(join.ok());
  catalog_.reset();
  Bytes file = ::ferry::testing::ReadFileOrDie(path_);
  if (*Env::Default()->FileExists(path_ + "-wal")) {
    Bytes wal = ::ferry::testing::ReadFileOrDie(path_ + "-wal");
    file.insert(file.end(), wal.begin(), wal.end());
  }
  const std::string all(file.begin(), file.end());
  EXPECT_EQ(all.find(clear->substr(4)), std::string::npos);
  EXPECT_EQ(all.find(join->token.substr(4)), std::string::npos);
  Reopen();
}

TEST_F(CatalogTest, AllTenantTokensAndListing) {
  ApiToken root, reader;
  ASSERT_TRUE(catalog_->CreateApiToken("", Role::kAdmin, "init", &root).ok());
  ASSERT_TRUE(catalog_->CreateApiToken("globex", Role::kReader, "", &reader).ok());
  EXPECT_EQ(root.tenant, "");
  EXPECT_EQ(catalog_->GetApiToken(root.id)->tenant, "");
  EXPECT_EQ(catalog_->ListApiTokens("")->size(), 2u);
  ASSERT_EQ(catalog_->ListApiTokens("globex")->size(), 1u);
  EXPECT_EQ(catalog_->ListApiTokens("globex")->at(0).id, reader.id);
  EXPECT_TRUE(catalog_->ListApiTokens("acme")->empty());
  EXPECT_EQ(catalog_->CreateApiToken("nope", Role::kAdmin, "").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(catalog_->CreateApiToken("acme", Role::kAdmin, "a\x01").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(CatalogRolesTest, RolesRoundTrip) {
  for (Role r : {Role::kReader, Role::kOperator, Role::kAdmin}) {
    EXPECT_EQ(*ParseRole(RoleName(r)), r);
  }
  EXPECT_EQ(ParseRole("root").status().code(), StatusCode::kInvalidArgument);
}

// ---- join tokens and enrollment ----

TEST_F(CatalogTest, JoinTokenEnrollsOnce) {
  Result<NewJoinToken> t = catalog_->CreateJoinToken("acme", 600, "", {{"site", "paris"}});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token.substr(0, 4), "fjt_");
  EXPECT_EQ(t->token.size(), 36u);
  EXPECT_EQ(t->expires_unix, Now() + 600);

  Result<Agent> a = catalog_->RedeemJoinToken(t->token, "cam-1", Key(1), Key(2),
                                              {{"site", "lyon"}, {"model", "x1"}});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->tenant, "acme");
  EXPECT_EQ(a->name, "cam-1");
  EXPECT_EQ(a->link_key, Key(1));
  EXPECT_EQ(a->signing_key, Key(2));
  // The operator's labels (the token's) win over the agent's.
  EXPECT_EQ(a->labels, (std::map<std::string, std::string>{{"site", "paris"}, {"model", "x1"}}));
  EXPECT_EQ(a->enrolled_unix, Now());
  EXPECT_FALSE(a->revoked);

  Result<Agent> again = catalog_->RedeemJoinToken(t->token, "cam-2", Key(3), Key(4), {});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(again.status().message(), "join token was already used (by agent cam-1)");
}

TEST_F(CatalogTest, JoinTokenExpires) {
  Result<NewJoinToken> t = catalog_->CreateJoinToken("acme", 60);
  ASSERT_TRUE(t.ok());
  clock_.Advance(59 * kSecond);
  Result<NewJoinToken> t2 = catalog_->CreateJoinToken("acme", 60);
  clock_.Advance(1 * kSecond);
  Result<Agent> a = catalog_->RedeemJoinToken(t->token, "cam-1", Key(1), Key(2), {});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(a.status().message().find("join token expired at 2023-11-14T22:14:20Z"),
            std::string::npos)
      << a.status().message();
  // A later token still works.
  EXPECT_TRUE(catalog_->RedeemJoinToken(t2->token, "cam-1", Key(1), Key(2), {}).ok());
}

TEST_F(CatalogTest, UnknownJoinTokensAreNotValid) {
  for (const std::string& bad :
       {std::string("fjt_") + std::string(32, 'a'), std::string("nonsense"), std::string()}) {
    Result<Agent> a = catalog_->RedeemJoinToken(bad, "cam-1", Key(1), Key(2), {});
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), StatusCode::kPermissionDenied);
    EXPECT_EQ(a.status().message(), "join token is not valid on this hub");
  }
  // An API token is not a join token.
  Result<std::string> api = catalog_->CreateApiToken("acme", Role::kAdmin, "");
  EXPECT_EQ(catalog_->RedeemJoinToken(*api, "cam-1", Key(1), Key(2), {}).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(catalog_->CreateJoinToken("acme", 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog_->CreateJoinToken("acme", kMaxJoinTokenTtlSeconds + 1).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog_->CreateJoinToken("nope", 60).status().code(), StatusCode::kNotFound);
}

TEST_F(CatalogTest, TokenMayFixTheAgentName) {
  Result<NewJoinToken> t = catalog_->CreateJoinToken("acme", 600, "gate-3");
  ASSERT_TRUE(t.ok());
  Result<Agent> wrong = catalog_->RedeemJoinToken(t->token, "gate-4", Key(1), Key(2), {});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(wrong.status().message().find("for agent gate-3"), std::string::npos);
  // The refusal did not spend it; an empty name takes the token's.
  Result<Agent> a = catalog_->RedeemJoinToken(t->token, "", Key(1), Key(2), {});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->name, "gate-3");

  Result<NewJoinToken> unnamed = catalog_->CreateJoinToken("acme", 600);
  EXPECT_EQ(catalog_->RedeemJoinToken(unnamed->token, "", Key(5), Key(6), {}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(CatalogTest, ReEnrollmentRules) {
  ASSERT_TRUE(Enroll("acme", "cam-1", 1).ok());

  // Same key, same name: allowed, updates the signing key; the token is spent.
  Result<NewJoinToken> t = catalog_->CreateJoinToken("acme", 600);
  clock_.Advance(10 * kSecond);
  Result<Agent> again = catalog_->RedeemJoinToken(t->token, "cam-1", Key(1), Key(77), {});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->signing_key, Key(77));
  EXPECT_EQ(again->enrolled_unix, Now());
  EXPECT_EQ(catalog_->RedeemJoinToken(t->token, "cam-1", Key(1), Key(77), {}).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(catalog_->ListAgents("acme")->size(), 1u);

  // Same name, another key: refused while the first is live, and the token
  // stays usable.
  Result<NewJoinToken> t2 = catalog_->CreateJoinToken("acme", 600);
  Result<Agent> clash = catalog_->RedeemJoinToken(t2->token, "cam-1", Key(9), Key(10), {});
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(clash.status().message().find("revoke it first"), std::string::npos);

  // Same key under another name or another tenant: refused (keys are unique
  // across the hub).
  Result<Agent> other_name = catalog_->RedeemJoinToken(t2->token, "cam-2", Key(1), Key(2), {});
  EXPECT_EQ(other_name.status().code(), StatusCode::kAlreadyExists);
  Result<NewJoinToken> g = catalog_->CreateJoinToken("globex", 600);
  EXPECT_EQ(catalog_->RedeemJoinToken(g->token, "cam-1", Key(1), Key(2), {}).status().code(),
            StatusCode::kAlreadyExists);
  // The same name in another tenant is fine.
  EXPECT_TRUE(catalog_->RedeemJoinToken(g->token, "cam-1", Key(3), Key(4), {}).ok());

  // After revocation the name is free for a new key; the old key may not come back.
  ASSERT_TRUE(catalog_->RevokeAgent("acme", "cam-1").ok());
  Result<Agent> replaced = catalog_->RedeemJoinToken(t2->token, "cam-1", Key(9), Key(10), {});
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  EXPECT_FALSE(replaced->revoked);
  Result<NewJoinToken> t3 = catalog_->CreateJoinToken("acme", 600);
  Result<Agent> back = catalog_->RedeemJoinToken(t3->token, "cam-7", Key(1), Key(2), {});
  EXPECT_EQ(back.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(back.status().message().find("revoked"), std::string::npos);

  Result<std::vector<Agent>> all = catalog_->ListAgents("acme");
  ASSERT_EQ(all->size(), 2u);  // the revoked cam-1 and its successor
  EXPECT_EQ(catalog_->GetAgent("acme", "cam-1")->link_key, Key(9));
}

// ---- agents ----

TEST_F(CatalogTest, AgentsRevokeTouchAndLookup) {
  ASSERT_TRUE(Enroll("acme", "cam-1", 1).ok());
  Result<Agent> found = catalog_->FindAgentByLinkKey(Key(1));
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->name, "cam-1");
  EXPECT_EQ(catalog_->FindAgentByLinkKey(Key(42)).status().code(), StatusCode::kNotFound);

  ASSERT_TRUE(catalog_->TouchAgent("acme", "cam-1", 1234).ok());
  EXPECT_EQ(catalog_->GetAgent("acme", "cam-1")->last_seen_unix, 1234);
  EXPECT_EQ(catalog_->TouchAgent("acme", "cam-9", 1).code(), StatusCode::kNotFound);

  clock_.Advance(kSecond);
  ASSERT_TRUE(catalog_->RevokeAgent("acme", "cam-1").ok());
  ASSERT_TRUE(catalog_->RevokeAgent("acme", "cam-1").ok());  // idempotent
  Result<Agent> revoked = catalog_->GetAgent("acme", "cam-1");
  EXPECT_TRUE(revoked->revoked);
  EXPECT_EQ(revoked->revoked_unix, Now());
  EXPECT_TRUE(catalog_->FindAgentByLinkKey(Key(1))->revoked);
  EXPECT_EQ(catalog_->TouchAgent("acme", "cam-1", 1).code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog_->RevokeAgent("acme", "cam-9").code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog_->GetAgent("globex", "cam-1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog_->ListAgents("nope").status().code(), StatusCode::kNotFound);
}

// ---- agent reports ----

TEST_F(CatalogTest, AgentReportsAreKeptPerLiveAgent) {
  ASSERT_TRUE(Enroll("acme", "cam-1", 1).ok());
  ASSERT_TRUE(Enroll("acme", "cam-2", 2).ok());
  EXPECT_FALSE(catalog_->GetAgent("acme", "cam-1")->report.has_value());

  AgentReportRecord r;
  r.pending_bytes = 1 << 20;
  r.pending_snapshots = 2;
  r.last_error = "push of 9f2c to cloud: UNAVAILABLE: connection reset";
  r.last_error_unix = 1714564800;
  r.reported_unix = 1714564805;
  r.received_unix = 1714564806;
  ASSERT_TRUE(catalog_->SaveAgentReport("acme", "cam-1", r).ok());
  Result<Agent> a = catalog_->GetAgent("acme", "cam-1");
  ASSERT_TRUE(a.ok() && a->report.has_value());
  EXPECT_EQ(a->report->pending_bytes, uint64_t{1} << 20);
  EXPECT_EQ(a->report->pending_snapshots, 2u);
  EXPECT_EQ(a->report->last_error, r.last_error);
  EXPECT_EQ(a->report->last_error_unix, 1714564800);
  EXPECT_EQ(a->report->reported_unix, 1714564805);
  EXPECT_EQ(a->report->received_unix, 1714564806);
  EXPECT_EQ(a->last_seen_unix, 1714564806) << "a report is link activity";

  // The latest replaces the previous; other agents are untouched.
  AgentReportRecord later;
  later.received_unix = 1714564900;
  ASSERT_TRUE(catalog_->SaveAgentReport("acme", "cam-1", later).ok());
  Result<std::vector<Agent>> list = catalog_->ListAgents("acme");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  ASSERT_TRUE((*list)[0].report.has_value());
  EXPECT_EQ((*list)[0].report->pending_bytes, 0u);
  EXPECT_EQ((*list)[0].report->last_error, "");
  EXPECT_FALSE((*list)[1].report.has_value());
  EXPECT_TRUE(catalog_->FindAgentByLinkKey(Key(1))->report.has_value());

  // Bounds, as on the link.
  struct Case {
    const char* name;
    std::function<void(AgentReportRecord&)> spoil;
  };
  const Case cases[] = {
      {"last_error over 1 KiB",
       [](AgentReportRecord& x) { x.last_error = std::string(kMaxReportErrorBytes + 1, 'e'); }},
      {"last_error not UTF-8", [](AgentReportRecord& x) { x.last_error = "bad \xff byte"; }},
      {"pending bytes past INT64_MAX",
       [](AgentReportRecord& x) { x.pending_bytes = uint64_t{1} << 63; }},
      {"negative time", [](AgentReportRecord& x) { x.reported_unix = -5; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    AgentReportRecord bad = r;
    c.spoil(bad);
    EXPECT_EQ(catalog_->SaveAgentReport("acme", "cam-2", bad).code(), StatusCode::kInvalidArgument);
  }
  AgentReportRecord exactly = r;
  exactly.last_error = std::string(kMaxReportErrorBytes, 'e');
  EXPECT_TRUE(catalog_->SaveAgentReport("acme", "cam-2", exactly).ok());

  // Only a live agent reports; a new agent of a revoked name starts afresh.
  EXPECT_EQ(catalog_->SaveAgentReport("acme", "cam-9", r).code(), StatusCode::kNotFound);
  ASSERT_TRUE(catalog_->RevokeAgent("acme", "cam-1").ok());
  EXPECT_EQ(catalog_->SaveAgentReport("acme", "cam-1", r).code(), StatusCode::kNotFound);
  ASSERT_TRUE(Enroll("acme", "cam-1", 7).ok());
  EXPECT_FALSE(catalog_->GetAgent("acme", "cam-1")->report.has_value());
  EXPECT_EQ(catalog_->SaveAgentReport("globex", "cam-2", r).code(), StatusCode::kNotFound);
}

// ---- snapshots ----

TEST_F(CatalogTest, LastPolicySnapshotIsTheNewestOfThatPolicyAndDataset) {
  auto snap = [&](char id, const std::string& agent, int64_t created_s, const std::string& policy,
                  std::vector<std::string> datasets) {
    SnapshotRecord s = Snap(id, agent, created_s, std::move(datasets));
    if (!policy.empty()) s.labels[std::string(kPolicyLabel)] = policy;
    EXPECT_TRUE(catalog_->RecordSnapshot(s).ok());
  };
  snap('1', "cam-1", 100, "hourly", {"videos"});
  snap('2', "cam-1", 110, "hourly", {"events"});
  snap('3', "cam-1", 200, "hourly", {"videos"});
  snap('4', "cam-1", 300, "daily", {"videos"});
  snap('5', "cam-1", 400, "", {"videos"});
  snap('6', "cam-2", 500, "hourly", {"videos"});
  auto last = [&](const std::string& agent, const std::string& policy,
                  const std::string& dataset) -> std::string {
    Result<std::optional<SnapshotRecord>> r =
        catalog_->LastPolicySnapshot("acme", agent, policy, dataset);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() && r->has_value() ? std::string(1, (*r)->id[0]) : "-";
  };
  EXPECT_EQ(last("cam-1", "hourly", "videos"), "3");
  EXPECT_EQ(last("cam-1", "hourly", "events"), "2");
  EXPECT_EQ(last("cam-1", "hourly", ""), "3") << "any dataset";
  EXPECT_EQ(last("cam-1", "daily", "events"), "-");
  EXPECT_EQ(last("cam-1", "weekly", "videos"), "-");
  EXPECT_EQ(last("cam-2", "hourly", "videos"), "6");
  EXPECT_EQ(last("cam-3", "hourly", "videos"), "-");
  Result<std::optional<SnapshotRecord>> newest = catalog_->LastAgentSnapshot("acme", "cam-1");
  ASSERT_TRUE(newest.ok() && newest->has_value());
  EXPECT_EQ((*newest)->id, HexId('5'));
  EXPECT_FALSE(catalog_->LastAgentSnapshot("acme", "cam-3")->has_value());
  EXPECT_FALSE(catalog_->LastAgentSnapshot("globex", "cam-1")->has_value());
}

TEST_F(CatalogTest, RecordingASnapshotIsIdempotent) {
  SnapshotRecord s = Snap('a', "cam-1", 1000, {"videos", "events"});
  s.parent = HexId('b');
  ASSERT_TRUE(catalog_->RecordSnapshot(s).ok());
  SnapshotRecord changed = s;
  changed.chunks = 999;
  ASSERT_TRUE(catalog_->RecordSnapshot(changed).ok());  // first record stands
  Result<SnapshotRecord> got = catalog_->GetSnapshot("acme", s.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->chunks, 10u);
  EXPECT_EQ(got->datasets, (std::vector<std::string>{"videos", "events"}));
  EXPECT_EQ(got->parent, s.parent);
  EXPECT_EQ(got->labels, s.labels);
  EXPECT_EQ(got->created_unix_ns, 1000 * kSecond);
  EXPECT_EQ(got->committed_unix, 1005);
  EXPECT_EQ(got->sealed_bytes, 1000u);
  EXPECT_EQ(got->logical_bytes, 5000u);
  EXPECT_EQ(catalog_->ListSnapshots("acme", {})->size(), 1u);
  // Another tenant does not see it.
  EXPECT_EQ(catalog_->GetSnapshot("globex", s.id).status().code(), StatusCode::kNotFound);

  SnapshotRecord bad = s;
  bad.id = "XYZ";
  EXPECT_EQ(catalog_->RecordSnapshot(bad).code(), StatusCode::kInvalidArgument);
  bad = s;
  bad.tenant = "nope";
  EXPECT_EQ(catalog_->RecordSnapshot(bad).code(), StatusCode::kNotFound);
}

TEST_F(CatalogTest, SnapshotFilters) {
  ASSERT_TRUE(catalog_->RecordSnapshot(Snap('1', "cam-1", 100, {"videos"})).ok());
  ASSERT_TRUE(catalog_->RecordSnapshot(Snap('2', "cam-1", 200, {"videos", "events"})).ok());
  ASSERT_TRUE(catalog_->RecordSnapshot(Snap('3', "cam-2", 300, {"events"})).ok());
  ASSERT_TRUE(catalog_->RecordSnapshot(Snap('4', "cam-2", 400, {"videos"})).ok());

  auto ids = [&](SnapshotFilter f) {
    std::string out;
    Result<std::vector<SnapshotRecord>> r = catalog_->ListSnapshots("acme", f);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& s : *r) out += s.id[0];
    return out;
  };
  struct Case {
    const char* name;
    SnapshotFilter filter;
    const char* want;
  };
  auto filter = [](std::string agent, std::string dataset, int64_t since_s, int64_t until_s,
                   size_t limit = 1000) {
    SnapshotFilter f;
    f.agent = std::move(agent);
    f.dataset = std::move(dataset);
    f.since_unix_ns = since_s * kSecond;
    f.until_unix_ns = until_s * kSecond;
    f.limit = limit;
    return f;
  };
  const Case cases[] = {
      {"all, newest first", filter("", "", 0, 0), "4321"},
      {"agent", filter("cam-1", "", 0, 0), "21"},
      {"dataset", filter("", "events", 0, 0), "32"},
      {"agent and dataset", filter("cam-2", "videos", 0, 0), "4"},
      {"since inclusive", filter("", "", 200, 0), "432"},
      {"until exclusive", filter("", "", 0, 300), "21"},
      {"window", filter("", "", 150, 350), "32"},
      {"limit", filter("", "", 0, 0, 2), "43"},
      {"unknown agent", filter("cam-9", "", 0, 0), ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ids(c.filter), c.want);
  }
  EXPECT_EQ(catalog_->ListSnapshots("nope", {}).status().code(), StatusCode::kNotFound);
}

TEST_F(CatalogTest, LastSnapshotTimesPerLiveAgent) {
  ASSERT_TRUE(Enroll("acme", "cam-1", 1).ok());
  ASSERT_TRUE(Enroll("acme", "cam-2", 2).ok());
  ASSERT_TRUE(Enroll("acme", "cam-3", 3).ok());  // no snapshot: not listed
  ASSERT_TRUE(catalog_->RecordSnapshot(Snap('1', "cam-1", 100)).ok());
  ASSERT_TRUE(catalog_->RecordSnapshot(Snap('2', "cam-1", 200)).ok());
  ASSERT_TRUE(catalog_->RecordSnapshot(Snap('3', "cam-2", 300)).ok());
  auto times = catalog_->LastSnapshotTimes();
  ASSERT_TRUE(times.ok()) << times.status().ToString();
  ASSERT_EQ(times->size(), 2u);
  EXPECT_EQ((*times)[0].first.name, "cam-1");
  EXPECT_EQ((*times)[0].second, 205);
  EXPECT_EQ((*times)[1].first.name, "cam-2");
  EXPECT_EQ((*times)[1].second, 305);
  ASSERT_TRUE(catalog_->RevokeAgent("acme", "cam-2").ok());
  EXPECT_EQ(catalog_->LastSnapshotTimes()->size(), 1u);
}

// ---- policies ----

TEST_F(CatalogTest, PolicyGenerationsOnlyGrow) {
  PutOutcome outcome;
  Result<PolicyRecord> p1 = catalog_->PutPolicy("acme", "cams", R"({"v":1})", &outcome);
  ASSERT_TRUE(p1.ok()) << p1.status().ToString();
  EXPECT_EQ(outcome, PutOutcome::kCreated);
  EXPECT_EQ(p1->generation, 1u);

  clock_.Advance(kSecond);
  Result<PolicyRecord> same = catalog_->PutPolicy("acme", "cams", R"({"v":1})", &outcome);
  EXPECT_EQ(outcome, PutOutcome::kUnchanged);
  EXPECT_EQ(same->generation, 1u);
  EXPECT_EQ(same->updated_unix, p1->updated_unix);

  Result<PolicyRecord> p2 = catalog_->PutPolicy("acme", "cams", R"({"v":2})", &outcome);
  EXPECT_EQ(outcome, PutOutcome::kUpdated);
  EXPECT_EQ(p2->generation, 2u);
  EXPECT_EQ(p2->updated_unix, Now());
  Result<PolicyRecord> other = catalog_->PutPolicy("acme", "doors", R"({"v":1})", &outcome);
  EXPECT_EQ(other->generation, 3u);
  EXPECT_EQ(*catalog_->PolicyGeneration("acme"), 3u);
  EXPECT_EQ(*catalog_->PolicyGeneration("globex"), 0u);

  ASSERT_TRUE(catalog_->DeletePolicy("acme", "cams").ok());
  EXPECT_EQ(catalog_->DeletePolicy("acme", "cams").code(), StatusCode::kNotFound);
  EXPECT_EQ(*catalog_->PolicyGeneration("acme"), 4u);
  Result<PolicyRecord> recreated = catalog_->PutPolicy("acme", "cams", R"({"v":1})", &outcome);
  EXPECT_EQ(outcome, PutOutcome::kCreated);
  EXPECT_EQ(recreated->generation, 5u);  // never repeats a generation

  Result<std::vector<PolicyRecord>> list = catalog_->ListPolicies("acme");
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "cams");
  EXPECT_EQ((*list)[1].name, "doors");
  EXPECT_TRUE(catalog_->ListPolicies("globex")->empty());
  EXPECT_EQ(catalog_->GetPolicy("globex", "cams").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog_->PutPolicy("nope", "x", "{}").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog_->PutPolicy("acme", "Bad Name", "{}").status().code(),
            StatusCode::kInvalidArgument);
}

// ---- sessions ----

TEST_F(CatalogTest, SessionsOpenCloseAndList) {
  Result<int64_t> s1 = catalog_->OpenSession("acme", "cam-1", "10.0.0.1:5000", 100);
  Result<int64_t> s2 = catalog_->OpenSession("", "", "10.0.0.2:6000", 110);
  Result<int64_t> s3 = catalog_->OpenSession("globex", "gate", "10.0.0.3:7000", 120);
  ASSERT_TRUE(s1.ok() && s2.ok() && s3.ok());
  ASSERT_TRUE(catalog_->CloseSession(*s1, 150, 4096, 3, 1, "ok").ok());
  EXPECT_EQ(catalog_->CloseSession(999, 1, 0, 0, 0, "").code(), StatusCode::kNotFound);

  Result<std::vector<SessionRecord>> acme = catalog_->ListSessions("acme", 10);
  ASSERT_EQ(acme->size(), 1u);
  const SessionRecord& r = (*acme)[0];
  EXPECT_EQ(r.id, *s1);
  EXPECT_EQ(r.agent, "cam-1");
  EXPECT_EQ(r.remote, "10.0.0.1:5000");
  EXPECT_EQ(r.started_unix, 100);
  EXPECT_EQ(r.ended_unix, 150);
  EXPECT_EQ(r.bytes_received, 4096u);
  EXPECT_EQ(r.chunks_new, 3u);
  EXPECT_EQ(r.commits, 1u);
  EXPECT_EQ(r.end_status, "ok");

  Result<std::vector<SessionRecord>> all = catalog_->ListSessions("", 2);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, *s3);  // newest first
  EXPECT_EQ((*all)[1].id, *s2);
  EXPECT_EQ((*all)[1].ended_unix, 0);
}

}  // namespace
}  // namespace ferry::hub
