// The hub's REST API, in process: requests are built as Beast messages and
// handed to RestApi::Handle. Covers authentication and authorization, each
// endpoint's happy path, downloads of real sealed chunks from a tenant
// store, policy validation, and malformed or random requests.
#include "cloud-hub/rest_api.h"

#include <gtest/gtest.h>

#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <random>

#include "snapshot/keyset.h"
#include "snapshot/sealed_chunk.h"
#include "snapshot/volume_capture.h"
#include "tests/testing/test_util.h"

namespace ferry::hub {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;
using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::SeededBytes;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;
using mirror::transport::HttpRequest;
using mirror::transport::HttpResponse;

constexpr int64_t kSecond = 1'000'000'000;

constexpr char kPolicyYaml[] = R"(apiVersion: ferry/v1
kind: MirrorPolicy
metadata: {name: cams, tenant: acme}
spec:
  agents: {matchLabels: {site: shop}}
  datasets: [videos]
  schedule: "*/15 * * * *"
  targets: [{hub: cloud-east}]
  retention: {keepLast: 4, daily: 7}
)";

sodium::PublicKey Key(uint8_t fill) {
  sodium::PublicKey k;
  k.fill(fill);
  return k;
}

class RestApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<Catalog>> c = Catalog::Open(dir_.Sub("catalog.db"), &clock_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(*c);
    MakeDirsOrDie(dir_.Sub("data"));
    stores_ = std::make_unique<TenantStores>(dir_.Sub("data"));
    ASSERT_TRUE(catalog_->CreateTenant("acme").ok());
    ASSERT_TRUE(catalog_->CreateTenant("globex").ok());
    root_ = MakeToken("", Role::kAdmin);
    admin_ = MakeToken("acme", Role::kAdmin);
    operator_ = MakeToken("acme", Role::kOperator);
    reader_ = MakeToken("acme", Role::kReader);
    globex_admin_ = MakeToken("globex", Role::kAdmin);
    globex_reader_ = MakeToken("globex", Role::kReader);

    RestContext ctx;
    ctx.catalog = catalog_.get();
    ctx.stores = stores_.get();
    ctx.metrics = &metrics_;
    ctx.hub_fingerprint = "fry1:testfingerprint";
    ctx.public_link_url = "ws://hub.example:7443/v1/link";
    ctx.clock = &clock_;
    ctx.on_policy_change = [this](const std::string& tenant) {
      policy_changes_.push_back(tenant);
      if (throw_on_policy_change_) throw std::runtime_error("listener broke");
    };
    api_ = std::make_unique<RestApi>(ctx);
  }

  std::string MakeToken(const std::string& tenant, Role role) {
    Result<std::string> t = catalog_->CreateApiToken(tenant, role, "test");
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? *t : "";
  }

  HttpResponse Send(http::verb method, std::string_view target, const std::string& token = "",
                    const std::string& body = "",
                    const std::string& content_type = "application/json") {
    HttpRequest req{method, target, 11};
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!body.empty()) {
      req.set(http::field::content_type, content_type);
      req.body() = body;
    }
    req.prepare_payload();
    return api_->Handle(req);
  }
  HttpResponse Get(std::string_view target, const std::string& token) {
    return Send(http::verb::get, target, token);
  }

  static json::value Json(const HttpResponse& res) {
    boost::system::error_code ec;
    json::value v = json::parse(res.body(), ec);
    EXPECT_FALSE(ec) << "not JSON: " << res.body();
    return v;
  }
  static std::string ErrorCode(const HttpResponse& res) {
    json::value v = Json(res);
    if (!v.is_object() || !v.as_object().contains("error")) return "(no error)";
    return std::string(v.at("error").at("code").as_string());
  }
  static std::string ErrorMessage(const HttpResponse& res) {
    json::value v = Json(res);
    if (!v.is_object() || !v.as_object().contains("error")) return "(no error)";
    return std::string(v.at("error").at("message").as_string());
  }

  // Captures a small tree into acme's store and lists it in the catalog.
  snapshot::SnapshotId CaptureIntoAcme(const std::string& agent) {
    const std::string tree = dir_.Sub("tree");
    MakeDirsOrDie(tree + "/sub");
    WriteFileOrDie(tree + "/a.bin", SeededBytes(1, 200'000));
    WriteFileOrDie(tree + "/sub/b.txt", ToBytes("hello"));
    keyset_ = snapshot::Keyset::Generate();
    Result<snapshot::ChunkStore*> chunk_store = stores_->Get("acme");
    EXPECT_TRUE(chunk_store.ok());
    // The hub's tenant stores are local pack stores: capture straight into one.
    Result<snapshot::LocalStore*> store = dynamic_cast<snapshot::LocalStore*>(*chunk_store);
    EXPECT_NE(*store, nullptr);
    snapshot::CaptureOptions options;
    options.dataset_name = "videos";
    options.labels = {{"site", "shop"}};
    Result<snapshot::CaptureReport> r = CaptureVolume(tree, *keyset_, **store, options);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    Result<snapshot::ParsedManifest> m = (*store)->LoadManifest(r->id);
    EXPECT_TRUE(m.ok());
    SnapshotRecord rec;
    rec.id = HexEncode(r->id);
    rec.tenant = "acme";
    rec.agent = agent;
    for (const auto& d : m->body.datasets()) rec.datasets.push_back(d.name());
    rec.created_unix_ns = m->body.created_unix_ns();
    rec.committed_unix = clock_.NowUnixNanos() / kSecond;
    rec.chunks = m->body.refs().count();
    rec.sealed_bytes = m->body.refs().sealed_bytes();
    rec.logical_bytes = r->bytes_logical;
    rec.labels = {m->body.labels().begin(), m->body.labels().end()};
    EXPECT_TRUE(catalog_->RecordSnapshot(rec).ok());
    return r->id;
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<TenantStores> stores_;
  Metrics metrics_;
  std::unique_ptr<RestApi> api_;
  std::unique_ptr<snapshot::Keyset> keyset_;
  std::vector<std::string> policy_changes_;
  bool throw_on_policy_change_ = false;
  std::string root_, admin_, operator_, reader_, globex_admin_, globex_reader_;
};

// ---- operational endpoints ----

TEST_F(RestApiTest, HealthAndReadinessNeedNoToken) {
  HttpResponse h = Get("/healthz", "");
  EXPECT_EQ(h.result(), http::status::ok);
  EXPECT_EQ(Json(h).at("status"), "ok");
  EXPECT_EQ(h[http::field::content_type], "application/json");
  HttpResponse r = Get("/readyz", "");
  EXPECT_EQ(r.result(), http::status::ok);
  EXPECT_EQ(Json(r).at("status"), "ready");

  RestApi no_catalog(RestContext{});
  HttpRequest req{http::verb::get, "/readyz", 11};
  HttpResponse nr = no_catalog.Handle(req);
  EXPECT_EQ(nr.result(), http::status::service_unavailable);
  EXPECT_EQ(Json(nr).at("status"), "unavailable");
}

TEST_F(RestApiTest, MetricsShowRequestsAndLastSnapshotTimes) {
  Result<NewJoinToken> t = catalog_->CreateJoinToken("acme", 60);
  ASSERT_TRUE(catalog_->RedeemJoinToken(t->token, "cam-1", Key(1), Key(2), {}).ok());
  SnapshotRecord s;
  s.id = std::string(64, 'a');
  s.tenant = "acme";
  s.agent = "cam-1";
  s.committed_unix = 1'700'000'123;
  ASSERT_TRUE(catalog_->RecordSnapshot(s).ok());
  Get("/v1/nothing-here", root_);  // counts a NOT_FOUND

  HttpResponse m = Get("/metrics", "");
  ASSERT_EQ(m.result(), http::status::ok);
  EXPECT_EQ(m[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  const std::string& body = m.body();
  EXPECT_NE(body.find("# TYPE ferry_hub_agent_last_snapshot_timestamp_seconds gauge\n"),
            std::string::npos);
  EXPECT_NE(body.find("ferry_hub_agent_last_snapshot_timestamp_seconds{tenant=\"acme\",agent="
                      "\"cam-1\"} 1700000123\n"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("ferry_hub_http_requests_total 2\n"), std::string::npos) << body;
  EXPECT_NE(body.find("ferry_hub_errors_total{where=\"http\",code=\"NOT_FOUND\"} 1"),
            std::string::npos)
      << body;
}

// ---- authentication and authorization ----

TEST_F(RestApiTest, MissingOrBadTokensAre401) {
  struct Case {
    const char* name;
    std::string header;  // empty = no header
  };
  const Case cases[] = {
      {"no header", ""},
      {"wrong scheme", "Basic dXNlcjpwYXNz"},
      {"bearer without token", "Bearer "},
      {"unknown token", "Bearer fry_" + std::string(32, 'a')},
      {"garbage", "Bearer \x01\x02"},
      {"join token", "Bearer fjt_" + std::string(32, 'b')},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HttpRequest req{http::verb::get, "/v1/tenants", 11};
    if (!c.header.empty()) req.set(http::field::authorization, c.header);
    HttpResponse res = api_->Handle(req);
    EXPECT_EQ(res.result(), http::status::unauthorized);
    EXPECT_EQ(ErrorCode(res), "UNAUTHENTICATED");
    EXPECT_EQ(res[http::field::www_authenticate], "Bearer realm=\"ferry-hub\"");
  }
  // The scheme is case-insensitive.
  HttpRequest req{http::verb::get, "/v1/tenants", 11};
  req.set(http::field::authorization, "bearer  " + reader_);
  EXPECT_EQ(api_->Handle(req).result(), http::status::ok);
}

TEST_F(RestApiTest, RevokedTokensStopWorking) {
  ASSERT_EQ(Get("/v1/tenants/acme", reader_).result(), http::status::ok);
  Result<ApiToken> who = catalog_->AuthenticateApiToken(reader_);
  ASSERT_TRUE(catalog_->RevokeApiToken(who->id).ok());
  EXPECT_EQ(Get("/v1/tenants/acme", reader_).result(), http::status::unauthorized);
}

TEST_F(RestApiTest, RolesLimitWhatATokenMayDo) {
  struct Case {
    const char* name;
    http::verb method;
    std::string target;
    std::string body;
    std::string token;
    http::status want;
  };
  const std::string policy_json = R"({"apiVersion":"ferry/v1"})";
  const Case cases[] = {
      {"reader lists agents", http::verb::get, "/v1/tenants/acme/agents", "", reader_,
       http::status::ok},
      {"reader makes enrollment token", http::verb::post, "/v1/tenants/acme/enrollment-tokens",
       "{}", reader_, http::status::forbidden},
      {"reader puts policy", http::verb::put, "/v1/tenants/acme/policies/cams", kPolicyYaml,
       reader_, http::status::forbidden},
      {"reader deletes policy", http::verb::delete_, "/v1/tenants/acme/policies/cams", "", reader_,
       http::status::forbidden},
      {"reader revokes agent", http::verb::post, "/v1/tenants/acme/agents/cam-1/revoke", "",
       reader_, http::status::forbidden},
      {"reader lists tokens", http::verb::get, "/v1/tenants/acme/tokens", "", reader_,
       http::status::forbidden},
      {"operator makes enrollment token", http::verb::post, "/v1/tenants/acme/enrollment-tokens",
       "{}", operator_, http::status::created},
      {"operator makes API token", http::verb::post, "/v1/tenants/acme/tokens",
       R"({"role":"reader"})", operator_, http::status::forbidden},
      {"operator lists tokens", http::verb::get, "/v1/tenants/acme/tokens", "", operator_,
       http::status::forbidden},
      {"admin makes API token", http::verb::post, "/v1/tenants/acme/tokens", R"({"role":"reader"})",
       admin_, http::status::created},
      {"tenant admin makes tenant", http::verb::post, "/v1/tenants", R"({"name":"x"})", admin_,
       http::status::forbidden},
      {"tenant admin lists all tokens", http::verb::get, "/v1/tokens", "", admin_,
       http::status::forbidden},
      {"root makes tenant", http::verb::post, "/v1/tenants", R"({"name":"initech"})", root_,
       http::status::created},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HttpResponse res =
        Send(c.method, c.target, c.token, c.body,
             c.body.starts_with("apiVersion") ? "application/yaml" : "application/json");
    EXPECT_EQ(res.result(), c.want) << res.body();
    if (c.want == http::status::forbidden) {
      EXPECT_EQ(ErrorCode(res), "PERMISSION_DENIED");
    }
  }
}

TEST_F(RestApiTest, ATenantTokenCannotSeeAnotherTenant) {
  // 403 before any lookup: the same answer whether the tenant exists or not.
  for (const std::string& target : std::vector<std::string>{
           "/v1/tenants/acme", "/v1/tenants/acme/agents", "/v1/tenants/acme/snapshots",
           "/v1/tenants/acme/chunks/" + std::string(64, '0'), "/v1/tenants/no-such-tenant",
           "/v1/tenants/no-such-tenant/agents"}) {
    SCOPED_TRACE(target);
    HttpResponse res = Get(target, globex_reader_);
    EXPECT_EQ(res.result(), http::status::forbidden);
    EXPECT_EQ(ErrorMessage(res), "this token is of tenant globex and cannot act on another tenant");
  }
  // A token of every tenant sees that the tenant does not exist.
  EXPECT_EQ(Get("/v1/tenants/no-such-tenant", root_).result(), http::status::not_found);
  EXPECT_EQ(Get("/v1/tenants/acme", root_).result(), http::status::ok);
}

// ---- tenants ----

TEST_F(RestApiTest, Tenants) {
  HttpResponse created = Send(http::verb::post, "/v1/tenants", root_, R"({"name":"initech"})");
  ASSERT_EQ(created.result(), http::status::created) << created.body();
  EXPECT_EQ(Json(created).at("name"), "initech");
  EXPECT_EQ(Json(created).at("created_unix").to_number<int64_t>(), clock_.NowUnixNanos() / kSecond);

  EXPECT_EQ(Send(http::verb::post, "/v1/tenants", root_, R"({"name":"initech"})").result(),
            http::status::conflict);
  HttpResponse bad = Send(http::verb::post, "/v1/tenants", root_, R"({"name":"Init Tech"})");
  EXPECT_EQ(bad.result(), http::status::bad_request);
  EXPECT_NE(ErrorMessage(bad).find("tenant name"), std::string::npos);
  EXPECT_EQ(Send(http::verb::post, "/v1/tenants", root_, "{}").result(), http::status::bad_request);

  json::value all = Json(Get("/v1/tenants", root_));
  EXPECT_EQ(all.at("tenants").as_array().size(), 3u);
  json::value mine = Json(Get("/v1/tenants", reader_));
  ASSERT_EQ(mine.at("tenants").as_array().size(), 1u);
  EXPECT_EQ(mine.at("tenants").at(0).at("name"), "acme");

  json::value one = Json(Get("/v1/tenants/acme", reader_));
  EXPECT_EQ(one.at("name"), "acme");
  EXPECT_EQ(one.at("policy_generation").to_number<uint64_t>(), 0u);
}

// ---- enrollment and agents ----

TEST_F(RestApiTest, EnrollmentTokens) {
  HttpResponse res =
      Send(http::verb::post, "/v1/tenants/acme/enrollment-tokens", operator_,
           R"({"ttl_seconds": 600, "agent_name": "cam-1", "labels": {"site": "shop"}})");
  ASSERT_EQ(res.result(), http::status::created) << res.body();
  json::value v = Json(res);
  const std::string token(v.at("token").as_string());
  EXPECT_EQ(token.substr(0, 4), "fjt_");
  EXPECT_EQ(v.at("expires_unix").to_number<int64_t>(), clock_.NowUnixNanos() / kSecond + 600);
  EXPECT_EQ(v.at("hub_fingerprint"), "fry1:testfingerprint");
  EXPECT_EQ(v.at("link_url"), "ws://hub.example:7443/v1/link");
  EXPECT_EQ(v.at("agent_name"), "cam-1");
  EXPECT_EQ(res[http::field::cache_control], "no-store");

  Result<Agent> a = catalog_->RedeemJoinToken(token, "", Key(1), Key(2), {});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->name, "cam-1");
  EXPECT_EQ(a->labels.at("site"), "shop");

  // Defaults: one hour, no fixed name.
  json::value d = Json(Send(http::verb::post, "/v1/tenants/acme/enrollment-tokens", operator_));
  EXPECT_EQ(d.at("expires_unix").to_number<int64_t>(), clock_.NowUnixNanos() / kSecond + 3600);

  struct Case {
    const char* body;
    const char* message_part;
  };
  const Case bad[] = {
      {R"({"ttl_seconds": 0})", "ttl_seconds"},
      {R"({"ttl_seconds": "soon"})", "ttl_seconds: must be an integer"},
      {R"({"ttl_seconds": 1e9})", "ttl_seconds: must be an integer"},
      {R"({"agent_name": "Bad Name"})", "agent name"},
      {R"({"labels": {"site": 3}})", "labels.site: must be a string"},
      {R"({"labels": {"-x": "y"}})", "label key"},
      {R"({"ttl": 60})", "unknown field \"ttl\""},
      {R"([1, 2])", "must be a JSON object"},
      {R"({"ttl_seconds": )", "malformed JSON"},
  };
  for (const Case& c : bad) {
    SCOPED_TRACE(c.body);
    HttpResponse r =
        Send(http::verb::post, "/v1/tenants/acme/enrollment-tokens", operator_, c.body);
    EXPECT_EQ(r.result(), http::status::bad_request);
    EXPECT_EQ(ErrorCode(r), "INVALID_ARGUMENT");
    EXPECT_NE(ErrorMessage(r).find(c.message_part), std::string::npos) << ErrorMessage(r);
  }
}

TEST_F(RestApiTest, AgentsListShowAndRevoke) {
  Result<NewJoinToken> t = catalog_->CreateJoinToken("acme", 60, "", {{"site", "shop"}});
  ASSERT_TRUE(catalog_->RedeemJoinToken(t->token, "cam-1", Key(1), Key(2), {}).ok());

  json::value list = Json(Get("/v1/tenants/acme/agents", reader_));
  ASSERT_EQ(list.at("agents").as_array().size(), 1u);
  EXPECT_EQ(list.at("truncated"), false);
  json::value a = list.at("agents").at(0);
  EXPECT_EQ(a.at("name"), "cam-1");
  EXPECT_EQ(a.at("link_key"), json::value(HexEncode(Key(1))));
  EXPECT_EQ(a.at("signing_key"), json::value(HexEncode(Key(2))));
  EXPECT_EQ(a.at("link_key_fingerprint").as_string().subview().substr(0, 5), "fry1:");
  EXPECT_EQ(a.at("labels").at("site"), "shop");
  EXPECT_EQ(a.at("revoked"), false);

  EXPECT_EQ(Json(Get("/v1/tenants/acme/agents/cam-1", reader_)).at("name"), "cam-1");
  EXPECT_EQ(Get("/v1/tenants/acme/agents/cam-2", reader_).result(), http::status::not_found);
  EXPECT_EQ(Get("/v1/tenants/acme/agents/CAM", reader_).result(), http::status::bad_request);
  EXPECT_TRUE(
      Json(Get("/v1/tenants/globex/agents", globex_reader_)).at("agents").as_array().empty());

  HttpResponse revoked = Send(http::verb::post, "/v1/tenants/acme/agents/cam-1/revoke", operator_);
  ASSERT_EQ(revoked.result(), http::status::ok) << revoked.body();
  EXPECT_EQ(Json(revoked).at("revoked"), true);
  EXPECT_TRUE(catalog_->FindAgentByLinkKey(Key(1))->revoked);
  EXPECT_EQ(Send(http::verb::post, "/v1/tenants/acme/agents/cam-9/revoke", operator_).result(),
            http::status::not_found);
}

// What an agent reported over the link shows in its agent object; every
// report field is null until it first reports.
TEST_F(RestApiTest, AgentsShowTheirLastReport) {
  Result<NewJoinToken> t = catalog_->CreateJoinToken("acme", 60);
  ASSERT_TRUE(catalog_->RedeemJoinToken(t->token, "cam-1", Key(1), Key(2), {}).ok());
  json::value a = Json(Get("/v1/tenants/acme/agents/cam-1", reader_));
  for (const char* key :
       {"pending_bytes", "pending_snapshots", "last_error", "last_error_at", "reported_at"}) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(a.as_object().contains(key)) << a;
    EXPECT_TRUE(a.at(key).is_null()) << a;
  }

  AgentReportRecord r;
  r.pending_bytes = 3 << 20;
  r.pending_snapshots = 2;
  r.last_error = "push of 9f2c4a1b to hub-a: UNAVAILABLE: connection reset";
  r.last_error_unix = 1'714'564'800;
  r.reported_unix = 1'714'564'805;
  r.received_unix = 1'714'564'806;
  ASSERT_TRUE(catalog_->SaveAgentReport("acme", "cam-1", r).ok());
  for (const json::value& got :
       {Json(Get("/v1/tenants/acme/agents/cam-1", reader_)),
        Json(Get("/v1/tenants/acme/agents", reader_)).at("agents").at(0)}) {
    EXPECT_EQ(got.at("pending_bytes").to_number<int64_t>(), 3 << 20) << got;
    EXPECT_EQ(got.at("pending_snapshots").to_number<int64_t>(), 2) << got;
    EXPECT_EQ(got.at("last_error"), json::value(r.last_error));
    EXPECT_EQ(got.at("last_error_at"), "2024-05-01T12:00:00Z");
    EXPECT_EQ(got.at("reported_at"), "2024-05-01T12:00:06Z");
    EXPECT_EQ(got.at("last_seen_unix").to_number<int64_t>(), 1'714'564'806);
  }
  // A report without an error: the error fields are null, the rest is kept.
  r.last_error.clear();
  r.last_error_unix = 0;
  r.pending_bytes = 0;
  ASSERT_TRUE(catalog_->SaveAgentReport("acme", "cam-1", r).ok());
  a = Json(Get("/v1/tenants/acme/agents/cam-1", reader_));
  EXPECT_EQ(a.at("pending_bytes").to_number<int64_t>(), 0);
  EXPECT_TRUE(a.at("last_error").is_null());
  EXPECT_TRUE(a.at("last_error_at").is_null());
  EXPECT_FALSE(a.at("reported_at").is_null());
}

// GET /v1/tenants/{t}/status: per policy, each live agent it selects, with
// the newest snapshot of that policy's run and its age against the RPO;
// per agent, its policies. The hub's clock moves on (a fake clock here):
// an RPO met turns into one missed, and a fresh snapshot meets it again.
TEST_F(RestApiTest, StatusShowsEveryPolicysAgentsAgainstTheRpo) {
  auto enroll = [&](const std::string& name, uint8_t key, const std::string& site) {
    Result<NewJoinToken> t = catalog_->CreateJoinToken("acme", 60, "", {{"site", site}});
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE(catalog_->RedeemJoinToken(t->token, name, Key(key), Key(key + 100), {}).ok());
  };
  enroll("cam-1", 1, "shop");
  enroll("cam-2", 2, "shop");
  enroll("dc-1", 3, "dc");
  enroll("cam-old", 4, "shop");
  ASSERT_TRUE(catalog_->RevokeAgent("acme", "cam-old").ok());
  auto put = [&](const std::string& name, const std::string& spec) {
    const std::string doc = "apiVersion: ferry/v1\nkind: MirrorPolicy\nmetadata: {name: " + name +
                            "}\nspec:\n" + spec +
                            "  schedule: {every: 10m}\n  targets: [{hub: cloud}]\n";
    HttpResponse r = Send(http::verb::put, "/v1/tenants/acme/policies/" + name, operator_, doc,
                          "application/yaml");
    ASSERT_EQ(r.result(), http::status::created) << r.body();
  };
  put("shop-hourly",
      "  agents: {matchLabels: {site: shop}}\n  datasets: [videos, events]\n"
      "  rpo: 1h\n");
  put("all-daily", "  datasets: [videos]\n");
  const int64_t now = clock_.NowUnixNanos() / kSecond;
  int serial = 0;
  auto snap = [&](const std::string& agent, const std::string& policy, const std::string& dataset,
                  int64_t created) {
    SnapshotRecord s;
    s.id = HexEncode(sodium::RandomArray<32>());
    s.tenant = "acme";
    s.agent = agent;
    s.datasets = {dataset};
    s.created_unix_ns = created * kSecond + (++serial);
    s.committed_unix = created + 2;
    s.labels = {{"ferry.policy", policy}, {"ferry.cut", "c"}};
    EXPECT_TRUE(catalog_->RecordSnapshot(s).ok());
    return s.id;
  };
  snap("cam-1", "shop-hourly", "videos", now - 600);
  const std::string bound = snap("cam-1", "shop-hourly", "events", now - 900);
  snap("cam-2", "shop-hourly", "videos", now - 60);  // but no "events" yet: no recovery point
  snap("cam-old", "shop-hourly", "videos", now - 60);
  AgentReportRecord report;
  report.pending_bytes = 777;
  report.pending_snapshots = 1;
  report.last_error = "pre-hook of dataset events: exit 3";
  report.last_error_unix = now - 30;
  report.received_unix = now - 5;
  ASSERT_TRUE(catalog_->SaveAgentReport("acme", "cam-2", report).ok());

  auto row = [](const json::value& rows, const std::string& agent) -> json::value {
    for (const json::value& r : rows.as_array()) {
      if (r.at("agent") == json::value(agent)) return r;
    }
    return nullptr;
  };
  HttpResponse res = Get("/v1/tenants/acme/status", reader_);
  ASSERT_EQ(res.result(), http::status::ok) << res.body();
  json::value st = Json(res);
  EXPECT_EQ(st.at("generated_at"), "2023-11-14T22:13:20Z");
  EXPECT_EQ(st.at("truncated"), false);
  const json::array& policies = st.at("policies").as_array();
  ASSERT_EQ(policies.size(), 2u);
  // all-daily: no matchLabels (every live agent), no RPO.
  EXPECT_EQ(policies[0].at("policy"), "all-daily");
  EXPECT_TRUE(policies[0].at("rpo_seconds").is_null());
  ASSERT_EQ(policies[0].at("agents").as_array().size(), 3u) << "the revoked agent is left out";
  for (const json::value& r : policies[0].at("agents").as_array()) {
    EXPECT_TRUE(r.at("rpo_met").is_null()) << r;
    EXPECT_TRUE(r.at("last_snapshot").is_null()) << "no run of all-daily yet: " << r;
  }
  // shop-hourly: the shop agents, live ones only.
  EXPECT_EQ(policies[1].at("policy"), "shop-hourly");
  EXPECT_EQ(policies[1].at("rpo_seconds").to_number<int64_t>(), 3600);
  ASSERT_EQ(policies[1].at("agents").as_array().size(), 2u);
  json::value cam1 = row(policies[1].at("agents"), "cam-1");
  ASSERT_TRUE(cam1.is_object()) << st;
  EXPECT_EQ(cam1.at("last_snapshot").at("id"), json::value(bound))
      << "the oldest dataset's newest snapshot bounds the recovery point";
  EXPECT_EQ(cam1.at("last_snapshot").at("committed_unix").to_number<int64_t>(), now - 898);
  EXPECT_EQ(cam1.at("last_snapshot").at("created").as_string().subview().substr(0, 19),
            "2023-11-14T21:58:20");
  EXPECT_EQ(cam1.at("age_seconds").to_number<int64_t>(), 900);
  EXPECT_EQ(cam1.at("rpo_met"), true);
  EXPECT_TRUE(cam1.at("pending_bytes").is_null()) << "never reported";
  EXPECT_TRUE(cam1.at("last_error").is_null());
  json::value cam2 = row(policies[1].at("agents"), "cam-2");
  ASSERT_TRUE(cam2.is_object()) << st;
  EXPECT_TRUE(cam2.at("last_snapshot").is_null());
  EXPECT_TRUE(cam2.at("age_seconds").is_null());
  EXPECT_EQ(cam2.at("rpo_met"), false) << "no snapshot of every dataset: the RPO is missed";
  EXPECT_EQ(cam2.at("pending_bytes").to_number<int64_t>(), 777);
  EXPECT_EQ(cam2.at("pending_snapshots").to_number<int64_t>(), 1);
  EXPECT_EQ(cam2.at("last_error"), "pre-hook of dataset events: exit 3");
  EXPECT_EQ(cam2.at("last_error_at"), "2023-11-14T22:12:50Z");
  EXPECT_EQ(cam2.at("reported_at"), "2023-11-14T22:13:15Z");
  EXPECT_EQ(cam2.at("last_seen"), "2023-11-14T22:13:15Z");
  // Per agent: its policies and the RPOs over all of them.
  const json::array& agents = st.at("agents").as_array();
  ASSERT_EQ(agents.size(), 3u);
  json::value a1 = row(st.at("agents"), "cam-1");
  EXPECT_EQ(a1.at("policies"), json::parse(R"(["all-daily","shop-hourly"])"));
  EXPECT_EQ(a1.at("rpo_met"), true);
  EXPECT_EQ(a1.at("age_seconds").to_number<int64_t>(), 600) << "its newest snapshot of any policy";
  EXPECT_EQ(row(st.at("agents"), "cam-2").at("rpo_met"), false);
  json::value dc = row(st.at("agents"), "dc-1");
  EXPECT_EQ(dc.at("policies"), json::parse(R"(["all-daily"])"));
  EXPECT_TRUE(dc.at("rpo_met").is_null()) << "none of its policies has an RPO";
  EXPECT_TRUE(dc.at("last_seen").is_null());
  EXPECT_TRUE(row(st.at("agents"), "cam-old").is_null());

  std::string metrics = Get("/metrics", "").body();
  EXPECT_NE(metrics.find("ferry_hub_policy_rpo_met{tenant=\"acme\",policy=\"shop-hourly\","
                         "agent=\"cam-1\"} 1\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("ferry_hub_policy_rpo_met{tenant=\"acme\",policy=\"shop-hourly\","
                         "agent=\"cam-2\"} 0\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("ferry_hub_policy_last_snapshot_age_seconds{tenant=\"acme\",policy="
                         "\"shop-hourly\",agent=\"cam-1\"} 900\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("ferry_hub_agent_pending_bytes{tenant=\"acme\",agent=\"cam-2\"} 777\n"),
            std::string::npos);
  EXPECT_EQ(metrics.find("ferry_hub_policy_rpo_met{tenant=\"acme\",policy=\"all-daily\""),
            std::string::npos)
      << "no RPO, no series";

  // An hour later cam-1's snapshots are older than the RPO ...
  clock_.Advance(3600 * kSecond);
  st = Json(Get("/v1/tenants/acme/status", reader_));
  cam1 = row(st.at("policies").at(1).at("agents"), "cam-1");
  EXPECT_EQ(cam1.at("rpo_met"), false) << cam1;
  EXPECT_EQ(cam1.at("age_seconds").to_number<int64_t>(), 4500);
  EXPECT_EQ(row(st.at("agents"), "cam-1").at("rpo_met"), false);
  // ... until a fresh run of both datasets lands.
  const int64_t later = clock_.NowUnixNanos() / kSecond;
  snap("cam-1", "shop-hourly", "videos", later - 20);
  snap("cam-1", "shop-hourly", "events", later - 10);
  st = Json(Get("/v1/tenants/acme/status", reader_));
  cam1 = row(st.at("policies").at(1).at("agents"), "cam-1");
  EXPECT_EQ(cam1.at("rpo_met"), true) << cam1;
  EXPECT_EQ(cam1.at("age_seconds").to_number<int64_t>(), 20);

  // Tenant scope and roles: readers of the tenant and of every tenant only.
  EXPECT_EQ(Get("/v1/tenants/acme/status", globex_reader_).result(), http::status::forbidden);
  EXPECT_EQ(ErrorCode(Get("/v1/tenants/acme/status", globex_admin_)), "PERMISSION_DENIED");
  EXPECT_EQ(Get("/v1/tenants/acme/status", root_).result(), http::status::ok);
  EXPECT_EQ(Get("/v1/tenants/acme/status", "").result(), http::status::unauthorized);
  EXPECT_EQ(Get("/v1/tenants/nope/status", root_).result(), http::status::not_found);
  EXPECT_EQ(Send(http::verb::post, "/v1/tenants/acme/status", admin_).result(),
            http::status::method_not_allowed);
  json::value empty = Json(Get("/v1/tenants/globex/status", globex_reader_));
  EXPECT_TRUE(empty.at("policies").as_array().empty());
  EXPECT_TRUE(empty.at("agents").as_array().empty());
}

// ---- snapshots, chunks and keys ----

TEST_F(RestApiTest, SnapshotsManifestsRefsChunksAndKeys) {
  const snapshot::SnapshotId id = CaptureIntoAcme("cam-1");
  const std::string hex = HexEncode(id);
  Result<snapshot::ChunkStore*> store = stores_->Get("acme");
  ASSERT_TRUE(store.ok());
  Result<snapshot::ParsedManifest> m = (*store)->LoadManifest(id);
  ASSERT_TRUE(m.ok());

  json::value list = Json(Get("/v1/tenants/acme/snapshots", reader_));
  ASSERT_EQ(list.at("snapshots").as_array().size(), 1u);
  EXPECT_EQ(list.at("snapshots").at(0).at("id"), json::value(hex));
  EXPECT_EQ(list.at("snapshots").at(0).at("datasets").at(0), "videos");

  HttpResponse detail = Get("/v1/tenants/acme/snapshots/" + hex, reader_);
  ASSERT_EQ(detail.result(), http::status::ok) << detail.body();
  json::value d = Json(detail);
  EXPECT_EQ(d.at("agent"), "cam-1");
  const json::value& man = d.at("manifest");
  EXPECT_EQ(man.at("format_version").to_number<uint64_t>(), 1u);
  EXPECT_EQ(man.at("keyset_id"), json::value(HexEncode(AsBytes(m->body.keyset_id()))));
  EXPECT_EQ(man.at("signer"), json::value(HexEncode(m->signer)));
  EXPECT_EQ(man.at("labels").at("site"), "shop");
  EXPECT_EQ(man.at("datasets").at(0).at("name"), "videos");
  EXPECT_EQ(man.at("datasets").at(0).at("kind"), "volume");
  EXPECT_EQ(man.at("datasets").at(0).at("stats").at("files").to_number<uint64_t>(), 2u);
  EXPECT_EQ(man.at("refs").at("count").to_number<uint64_t>(), m->body.refs().count());
  EXPECT_EQ(man.at("hostname"), json::value(m->body.hostname()));

  HttpResponse envelope = Get("/v1/tenants/acme/snapshots/" + hex + "/manifest", reader_);
  ASSERT_EQ(envelope.result(), http::status::ok);
  EXPECT_EQ(envelope[http::field::content_type], "application/octet-stream");
  EXPECT_EQ(envelope.body(), ToString(m->envelope));

  HttpResponse refs = Get("/v1/tenants/acme/snapshots/" + hex + "/refs", reader_);
  ASSERT_EQ(refs.result(), http::status::ok);
  Result<Bytes> stored_refs = (*store)->ReadRefs(id, 1 << 20);
  ASSERT_TRUE(stored_refs.ok()) << stored_refs.status().ToString();
  EXPECT_EQ(refs.body(), ToString(*stored_refs));

  // The root tree's first chunk, and the data key that sealed it.
  const std::string& root_id = m->body.datasets(0).root(0).id();
  ASSERT_EQ(root_id.size(), 32u);
  snapshot::ChunkId chunk_id;
  std::copy(root_id.begin(), root_id.end(), chunk_id.begin());
  Bytes sealed_bytes;
  ASSERT_TRUE((*store)->ReadSealedChunk(chunk_id, sealed_bytes).ok());
  const Bytes* sealed = &sealed_bytes;
  HttpResponse chunk = Get("/v1/tenants/acme/chunks/" + HexEncode(chunk_id), reader_);
  ASSERT_EQ(chunk.result(), http::status::ok) << chunk.body();
  EXPECT_EQ(chunk.body(), ToString(*sealed));
  EXPECT_EQ(metrics_.chunk_downloads.load(), 1u);
  // Upper-case hex is the same id.
  std::string upper = HexEncode(chunk_id);
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_EQ(Get("/v1/tenants/acme/chunks/" + upper, reader_).result(), http::status::ok);

  Result<snapshot::SealedChunkHeader> header = snapshot::ParseSealedChunkHeader(*sealed);
  ASSERT_TRUE(header.ok());
  HttpResponse key = Get("/v1/tenants/acme/keys/" + HexEncode(header->key_id), reader_);
  ASSERT_EQ(key.result(), http::status::ok) << key.body();
  EXPECT_EQ(key.body(), ToString(*(*store)->WrappedKey(header->key_id)));

  // Misses and malformed ids.
  const std::string zeros(64, '0');
  HttpResponse missing = Get("/v1/tenants/acme/chunks/" + zeros, reader_);
  EXPECT_EQ(missing.result(), http::status::not_found);
  EXPECT_EQ(ErrorMessage(missing).find(dir_.path()), std::string::npos);  // no server paths
  EXPECT_EQ(Get("/v1/tenants/acme/keys/" + std::string(32, '0'), reader_).result(),
            http::status::not_found);
  EXPECT_EQ(Get("/v1/tenants/acme/snapshots/" + zeros, reader_).result(), http::status::not_found);
  EXPECT_EQ(Get("/v1/tenants/acme/snapshots/" + zeros + "/manifest", reader_).result(),
            http::status::not_found);
  for (const std::string& bad : {std::string("xyz"), std::string(63, 'a'), std::string(65, 'a'),
                                 std::string(64, 'g'), std::string("%00")}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(Get("/v1/tenants/acme/chunks/" + bad, reader_).result(), http::status::bad_request);
    EXPECT_EQ(Get("/v1/tenants/acme/snapshots/" + bad, reader_).result(),
              http::status::bad_request);
  }
  EXPECT_EQ(Get("/v1/tenants/acme/keys/" + zeros, reader_).result(), http::status::bad_request);
  // The other tenant's store does not have it, and its token may not ask acme.
  EXPECT_EQ(Get("/v1/tenants/globex/chunks/" + HexEncode(chunk_id), globex_reader_).result(),
            http::status::not_found);
  EXPECT_EQ(Get("/v1/tenants/globex/snapshots/" + hex, globex_reader_).result(),
            http::status::not_found);
}

TEST_F(RestApiTest, SnapshotQueries) {
  for (int i = 0; i < 5; ++i) {
    SnapshotRecord s;
    s.id = std::string(63, 'a') + static_cast<char>('0' + i);
    s.tenant = "acme";
    s.agent = i % 2 ? "cam-1" : "cam-2";
    s.datasets = {i < 3 ? "videos" : "events"};
    // 2024-01-01T00:00:00Z plus i hours.
    s.created_unix_ns = (1'704'067'200 + i * 3600) * kSecond;
    ASSERT_TRUE(catalog_->RecordSnapshot(s).ok());
  }
  auto count = [&](const std::string& query) -> int {
    HttpResponse res = Get("/v1/tenants/acme/snapshots" + query, reader_);
    if (res.result() != http::status::ok) return -static_cast<int>(res.result_int());
    return static_cast<int>(Json(res).at("snapshots").as_array().size());
  };
  EXPECT_EQ(count(""), 5);
  EXPECT_EQ(count("?agent=cam-1"), 2);
  EXPECT_EQ(count("?dataset=events"), 2);
  EXPECT_EQ(count("?since=2024-01-01T02:00:00Z"), 3);
  EXPECT_EQ(count("?since=1704074400"), 3);
  EXPECT_EQ(count("?since=2024-01-01T03:00:00%2B01:00"), 3);  // = 02:00Z
  EXPECT_EQ(count("?until=2024-01-01T02:00:00Z"), 2);         // exclusive
  EXPECT_EQ(count("?since=2024-01-01&until=2024-01-01T00:30:00.5Z"), 1);
  EXPECT_EQ(count("?limit=2"), 2);
  EXPECT_EQ(count("?agent=cam-2&dataset=videos&limit=1000"), 2);

  json::value limited = Json(Get("/v1/tenants/acme/snapshots?limit=2", reader_));
  EXPECT_EQ(limited.at("truncated"), true);
  EXPECT_EQ(limited.at("snapshots").at(0).at("created"), "2024-01-01T04:00:00Z");
  EXPECT_EQ(Json(Get("/v1/tenants/acme/snapshots?limit=5", reader_)).at("truncated"), false);

  for (const char* bad :
       {"?limit=0", "?limit=1001", "?limit=x", "?since=yesterday", "?since=2024-02-30T00:00:00Z",
        "?since=2024-01-01T00:00:00", "?until=2024-13-01", "?agent=CAM", "?color=red",
        "?limit=1&limit=2", "?since=%zz", "?since=2999-01-01", "?until=9999999999"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(count(bad), -400);
  }
}

// ---- policies ----

TEST_F(RestApiTest, PoliciesPutGetListDelete) {
  HttpResponse created = Send(http::verb::put, "/v1/tenants/acme/policies/cams", operator_,
                              kPolicyYaml, "application/yaml");
  ASSERT_EQ(created.result(), http::status::created) << created.body();
  json::value p = Json(created);
  EXPECT_EQ(p.at("name"), "cams");
  EXPECT_EQ(p.at("generation").to_number<uint64_t>(), 1u);
  EXPECT_EQ(p.at("policy").at("metadata").at("tenant"), "acme");
  EXPECT_EQ(policy_changes_, std::vector<std::string>{"acme"});

  // The same document again: nothing changes, nobody is told.
  HttpResponse same = Send(http::verb::put, "/v1/tenants/acme/policies/cams", operator_,
                           kPolicyYaml, "application/yaml");
  EXPECT_EQ(same.result(), http::status::ok);
  EXPECT_EQ(Json(same).at("generation").to_number<uint64_t>(), 1u);
  EXPECT_EQ(policy_changes_.size(), 1u);

  // The stored canonical JSON is accepted back, as JSON.
  std::string canonical = json::serialize(p.at("policy"));
  std::string changed = canonical;
  const size_t pos = changed.find("cloud-east");
  ASSERT_NE(pos, std::string::npos);
  changed.replace(pos, 10, "cloud-west");
  HttpResponse updated = Send(http::verb::put, "/v1/tenants/acme/policies/cams", admin_, changed);
  ASSERT_EQ(updated.result(), http::status::ok) << updated.body();
  EXPECT_EQ(Json(updated).at("generation").to_number<uint64_t>(), 2u);
  EXPECT_EQ(policy_changes_.size(), 2u);

  json::value one = Json(Get("/v1/tenants/acme/policies/cams", reader_));
  EXPECT_EQ(one.at("generation").to_number<uint64_t>(), 2u);
  json::value list = Json(Get("/v1/tenants/acme/policies", reader_));
  ASSERT_EQ(list.at("policies").as_array().size(), 1u);
  EXPECT_EQ(list.at("generation").to_number<uint64_t>(), 2u);

  HttpResponse deleted = Send(http::verb::delete_, "/v1/tenants/acme/policies/cams", operator_);
  EXPECT_EQ(deleted.result(), http::status::no_content);
  EXPECT_TRUE(deleted.body().empty());
  EXPECT_EQ(policy_changes_.size(), 3u);
  EXPECT_EQ(Get("/v1/tenants/acme/policies/cams", reader_).result(), http::status::not_found);
  EXPECT_EQ(Send(http::verb::delete_, "/v1/tenants/acme/policies/cams", operator_).result(),
            http::status::not_found);
}

TEST_F(RestApiTest, PolicyErrorsNameTheField) {
  auto put = [&](const std::string& name, const std::string& body,
                 const std::string& type = "application/yaml") {
    return Send(http::verb::put, "/v1/tenants/acme/policies/" + name, operator_, body, type);
  };
  std::string other_name = kPolicyYaml;
  other_name.replace(other_name.find("name: cams"), 10, "name: dogs");
  HttpResponse r = put("cams", other_name);
  EXPECT_EQ(r.result(), http::status::bad_request);
  EXPECT_NE(ErrorMessage(r).find("metadata.name"), std::string::npos) << ErrorMessage(r);

  std::string other_tenant = kPolicyYaml;
  other_tenant.replace(other_tenant.find("tenant: acme"), 12, "tenant: globex");
  r = put("cams", other_tenant);
  EXPECT_EQ(r.result(), http::status::bad_request);
  EXPECT_NE(ErrorMessage(r).find("metadata.tenant"), std::string::npos) << ErrorMessage(r);

  std::string bad_retention = kPolicyYaml;
  bad_retention.replace(bad_retention.find("daily: 7"), 8, "daily: -1");
  r = put("cams", bad_retention);
  EXPECT_EQ(r.result(), http::status::bad_request);
  EXPECT_NE(ErrorMessage(r).find("spec.retention.daily"), std::string::npos) << ErrorMessage(r);

  r = put("cams", "{not json or yaml: [");
  EXPECT_EQ(r.result(), http::status::bad_request);
  EXPECT_EQ(put("Bad_Name", kPolicyYaml).result(), http::status::bad_request);

  r = put("cams", kPolicyYaml, "text/plain");
  EXPECT_EQ(r.result(), http::status::unsupported_media_type);
  EXPECT_EQ(put("cams", kPolicyYaml, "application/yaml; charset=utf-8").result(),
            http::status::created);
  EXPECT_TRUE(catalog_->ListPolicies("globex")->empty());
}

TEST_F(RestApiTest, AFailingPolicyListenerDoesNotFailThePut) {
  throw_on_policy_change_ = true;
  HttpResponse r = Send(http::verb::put, "/v1/tenants/acme/policies/cams", operator_, kPolicyYaml,
                        "application/yaml");
  EXPECT_EQ(r.result(), http::status::created) << r.body();
  EXPECT_EQ(policy_changes_.size(), 1u);
}

// ---- API tokens ----

TEST_F(RestApiTest, ApiTokensCreateListRevoke) {
  HttpResponse created = Send(http::verb::post, "/v1/tenants/acme/tokens", admin_,
                              R"({"role": "operator", "description": "ci pipeline"})");
  ASSERT_EQ(created.result(), http::status::created) << created.body();
  json::value t = Json(created);
  const std::string clear(t.at("token").as_string());
  const std::string id(t.at("id").as_string());
  EXPECT_EQ(clear.substr(0, 4), "fry_");
  EXPECT_EQ(t.at("role"), "operator");
  EXPECT_EQ(t.at("tenant"), "acme");
  EXPECT_EQ(t.at("description"), "ci pipeline");
  // The new token works, as an operator.
  EXPECT_EQ(Send(http::verb::post, "/v1/tenants/acme/enrollment-tokens", clear).result(),
            http::status::created);

  json::value list = Json(Get("/v1/tenants/acme/tokens", admin_));
  bool listed = false;
  for (const auto& item : list.at("tokens").as_array()) {
    listed = listed || item.at("id").as_string() == id;
    EXPECT_FALSE(item.as_object().contains("token"));  // never shown again
  }
  EXPECT_TRUE(listed);
  EXPECT_EQ(Json(Get("/v1/tokens", root_)).at("tokens").as_array().size(), 7u);

  // Other tenants' admins do not see it; a reader may not revoke.
  EXPECT_EQ(Get("/v1/tokens/" + id, globex_admin_).result(), http::status::not_found);
  EXPECT_EQ(Send(http::verb::delete_, "/v1/tokens/" + id, globex_admin_).result(),
            http::status::not_found);
  EXPECT_EQ(Send(http::verb::delete_, "/v1/tokens/" + id, reader_).result(),
            http::status::forbidden);
  EXPECT_EQ(Json(Get("/v1/tokens/" + id, admin_)).at("revoked"), false);

  HttpResponse revoked = Send(http::verb::delete_, "/v1/tokens/" + id, admin_);
  ASSERT_EQ(revoked.result(), http::status::ok) << revoked.body();
  EXPECT_EQ(Json(revoked).at("revoked"), true);
  EXPECT_EQ(Send(http::verb::post, "/v1/tenants/acme/enrollment-tokens", clear).result(),
            http::status::unauthorized);
  // A root token may revoke any tenant's token.
  Result<ApiToken> g = catalog_->AuthenticateApiToken(globex_reader_);
  EXPECT_EQ(Send(http::verb::delete_, "/v1/tokens/" + g->id, root_).result(), http::status::ok);

  EXPECT_EQ(Send(http::verb::delete_, "/v1/tokens/tok-zzzzzzzz", admin_).result(),
            http::status::bad_request);
  EXPECT_EQ(Send(http::verb::delete_, "/v1/tokens/tok-00000000", admin_).result(),
            http::status::not_found);
  EXPECT_EQ(
      Send(http::verb::post, "/v1/tenants/acme/tokens", admin_, R"({"role": "root"})").result(),
      http::status::bad_request);
  EXPECT_EQ(Send(http::verb::post, "/v1/tenants/acme/tokens", admin_, "{}").result(),
            http::status::bad_request);
}

TEST_F(RestApiTest, Sessions) {
  Result<int64_t> s = catalog_->OpenSession("acme", "cam-1", "10.1.2.3:4000", 100);
  ASSERT_TRUE(catalog_->OpenSession("globex", "gate", "10.9.9.9:1", 101).ok());
  ASSERT_TRUE(catalog_->CloseSession(*s, 160, 1 << 20, 12, 1, "ok").ok());
  json::value v = Json(Get("/v1/tenants/acme/sessions?limit=10", reader_));
  ASSERT_EQ(v.at("sessions").as_array().size(), 1u);
  EXPECT_EQ(v.at("sessions").at(0).at("remote"), "10.1.2.3:4000");
  EXPECT_EQ(v.at("sessions").at(0).at("bytes_received").to_number<uint64_t>(), 1u << 20);
}

// ---- malformed requests ----

TEST_F(RestApiTest, UnknownPathsAndWrongMethods) {
  HttpResponse nf = Get("/v1/nope", reader_);
  EXPECT_EQ(nf.result(), http::status::not_found);
  EXPECT_EQ(ErrorCode(nf), "NOT_FOUND");

  HttpResponse wrong = Send(http::verb::delete_, "/v1/tenants/acme/agents", admin_);
  EXPECT_EQ(wrong.result(), http::status::method_not_allowed);
  EXPECT_EQ(wrong[http::field::allow], "GET");
  HttpResponse policy = Send(http::verb::post, "/v1/tenants/acme/policies/cams", admin_);
  EXPECT_EQ(policy.result(), http::status::method_not_allowed);
  EXPECT_EQ(policy[http::field::allow], "GET, PUT, DELETE");
  EXPECT_EQ(Send(http::verb::post, "/healthz").result(), http::status::method_not_allowed);
}

TEST_F(RestApiTest, OddPathsAreRefused) {
  struct Case {
    std::string target;
    http::status want;
  };
  const Case cases[] = {
      {"/", http::status::not_found},
      {"", http::status::not_found},
      {"*", http::status::not_found},
      {"//", http::status::not_found},
      {"/v1/tenants/", http::status::not_found},
      {"/v1/tenants//agents", http::status::not_found},
      {"/v1/tenants/acme/agents/", http::status::not_found},
      {"/v1/tenants/../tenants/acme", http::status::not_found},
      {"/v1/tenants/%61cme", http::status::bad_request},  // names are never percent-decoded
      {"/v1/tenants/ACME", http::status::bad_request},
      {"/v1/tenants/" + std::string(64, 'a'), http::status::bad_request},
      {"/v1/tenants/acme?", http::status::ok},
      {"/v1/tenants/acme?&&", http::status::ok},
      {"/v1/tenants/acme?x=1", http::status::bad_request},
      {"/v1" + std::string(100, '/'), http::status::not_found},
      {"/v1/" + std::string(3000, 'a'), http::status::uri_too_long},
      {"http://hub/v1/tenants", http::status::not_found},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.target.substr(0, 80));
    HttpResponse res = Get(c.target, admin_);
    EXPECT_EQ(res.result(), c.want) << res.body();
    Json(res);  // always a JSON body
  }
}

TEST_F(RestApiTest, OversizedBodiesAre413) {
  HttpResponse r = Send(http::verb::put, "/v1/tenants/acme/policies/cams", operator_,
                        std::string(65 << 10, ' '), "application/yaml");
  EXPECT_EQ(r.result(), http::status::payload_too_large);
  EXPECT_EQ(ErrorCode(r), "RESOURCE_EXHAUSTED");
  std::string deep(100, '[');
  HttpResponse d = Send(http::verb::post, "/v1/tenants", root_, deep);
  EXPECT_EQ(d.result(), http::status::bad_request);
}

TEST_F(RestApiTest, RandomRequestsNeverCrashOrFailServerSide) {
  std::mt19937_64 rng(20240501);
  const std::vector<std::string> segments = {"v1",
                                             "tenants",
                                             "acme",
                                             "globex",
                                             "agents",
                                             "cam-1",
                                             "snapshots",
                                             "chunks",
                                             "keys",
                                             "tokens",
                                             "policies",
                                             "revoke",
                                             "manifest",
                                             "refs",
                                             "sessions",
                                             "enrollment-tokens",
                                             std::string(64, 'a'),
                                             std::string(32, '0'),
                                             "",
                                             "..",
                                             "%2F",
                                             "\xff",
                                             "healthz",
                                             "metrics",
                                             "tok-00000000"};
  const std::vector<http::verb> verbs = {http::verb::get,     http::verb::post,  http::verb::put,
                                         http::verb::delete_, http::verb::patch, http::verb::head,
                                         http::verb::options};
  const std::vector<std::string> bodies = {"",
                                           "{}",
                                           "null",
                                           "{\"name\": 1}",
                                           "{\"role\": \"admin\", \"x\": [1,2,{}]}",
                                           "\x00\x01\x02",
                                           kPolicyYaml,
                                           "{\"labels\": {\"a\": \"b\"}, \"ttl_seconds\": -5}"};
  const std::vector<std::string> tokens = {"",    reader_,      operator_, globex_admin_,
                                           root_, "fry_garbage"};
  const std::vector<std::string> shapes = {"/v1/tenants",
                                           "/v1/tenants/T",
                                           "/v1/tenants/T/agents",
                                           "/v1/tenants/T/agents/X",
                                           "/v1/tenants/T/agents/X/revoke",
                                           "/v1/tenants/T/snapshots",
                                           "/v1/tenants/T/snapshots/X",
                                           "/v1/tenants/T/snapshots/X/manifest",
                                           "/v1/tenants/T/chunks/X",
                                           "/v1/tenants/T/keys/X",
                                           "/v1/tenants/T/policies",
                                           "/v1/tenants/T/policies/X",
                                           "/v1/tenants/T/tokens",
                                           "/v1/tenants/T/sessions",
                                           "/v1/tenants/T/enrollment-tokens",
                                           "/v1/tokens/X",
                                           "/healthz",
                                           "/metrics"};
  const std::vector<std::string> tenants = {"acme", "globex", "nope", "ACME", ""};
  int successes = 0, refusals = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string target;
    if (rng() % 2 == 0) {
      // A real endpoint's shape, its placeholders filled from the vocabulary.
      const std::string& shape = shapes[rng() % shapes.size()];
      for (char ch : shape) {
        if (ch == 'T') {
          target += tenants[rng() % tenants.size()];
        } else if (ch == 'X') {
          target += segments[rng() % segments.size()];
        } else {
          target += ch;
        }
      }
    } else {
      const int n = static_cast<int>(rng() % 7);
      for (int s = 0; s < n; ++s) target += "/" + segments[rng() % segments.size()];
    }
    if (rng() % 4 == 0) {
      target += "?";
      for (int k = 0; k < 3; ++k) {
        target += std::string(1, static_cast<char>('a' + rng() % 26)) + "=" +
                  std::string(1, static_cast<char>(32 + rng() % 95)) + "&";
      }
    }
    if (rng() % 10 == 0) {
      for (int k = 0; k < 8; ++k) target += static_cast<char>(rng() % 256);
    }
    std::string body = bodies[rng() % bodies.size()];
    if (rng() % 5 == 0 && !body.empty()) body.resize(rng() % body.size());
    const http::verb verb = rng() % 10 < 6 ? http::verb::get : verbs[rng() % verbs.size()];
    SCOPED_TRACE(target);
    HttpResponse res = Send(verb, target, tokens[rng() % tokens.size()], body,
                            rng() % 2 ? "application/json" : "application/yaml");
    const unsigned code = res.result_int();
    (code < 300 ? successes : refusals)++;
    EXPECT_GE(code, 200u);
    EXPECT_LT(code, 500u) << res.body();
    if (code >= 400) {
      EXPECT_NE(ErrorCode(res), "(no error)");
    }
    // A mutation that succeeded would change what later requests see; fine.
  }
  // The vocabulary reaches real endpoints as well as refusals.
  EXPECT_GT(successes, 60);
  EXPECT_GT(refusals, 1500);
}

}  // namespace
}  // namespace ferry::hub
