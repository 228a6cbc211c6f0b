// libFuzzer target: the hub's HTTP request path. The bytes a client sends
// on a connection are parsed by Boost.Beast's request parser with the limits
// the hub's server sets (mirror/transport/link_server.cc: 8 KiB of header,
// maxHttpBodyBytes of body), and each request that parses goes, as in
// HttpConnection::OnRead, to the hub's REST API (cloud-hub/rest_api.cc,
// RestApi::Handle) over a real catalog, tenant stores and stream storage.
// Input format: fuzz_formats.h ("http_request_fuzz"). Checks, for every
// request and beyond "no crash, no UB, no leak":
//  - no exception was thrown inside Handle (it would answer 500 and log it):
//    third-party exceptions are caught where they are thrown, not by the
//    last-resort handler;
//  - the status is 2xx-5xx and never 500 (an internal error: this hub's
//    catalog and stores are sound), the body matches Content-Length;
//  - an error (4xx, 5xx) is JSON, {"error": {"code": "<a status code
//    name>", "message": "..."}} and nothing else; 401 is UNAUTHENTICATED
//    with WWW-Authenticate; 5xx messages say nothing of the server beyond
//    "retry later" (except 501, which says what is not served); a 2xx JSON
//    answer parses;
//  - no answer names the hub's data directory (unless the request did);
//  - authorization: a /v1 request without a real token (no token injected,
//    no token placeholder) never succeeds; a reader's token succeeds only
//    with GET; a token of tenant acme succeeds only on acme's paths.
//
// Requests share one hub (a data directory on /dev/shm or $TMPDIR: catalog,
// stores, streams) created once per process and replaced every
// kInputsPerHub inputs, so what a request changes (tenants, tokens,
// policies, a revoked agent) is seen by the next ones. The hub holds
// tenants acme and globex, tokens (all-tenants admin, acme admin, acme
// reader), a live agent cam-1 with a report and a revoked one, a policy,
// a closed session, a snapshot with one chunk and its data key, and a
// stream with one batch. FERRY_FUZZ_TRACE=1 prints every request and
// answer of a replayed input.
#include <spdlog/details/log_msg.h>
#include <spdlog/sinks/base_sink.h>

#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cloud-hub/auth_throttle.h"
#include "cloud-hub/catalog.h"
#include "cloud-hub/hub_streams.h"
#include "cloud-hub/metrics.h"
#include "cloud-hub/rest_api.h"
#include "cloud-hub/tenant_stores.h"
#include "core/clock.h"
#include "core/env.h"
#include "core/log.h"
#include "mirror/policy/mirror_policy.h"
#include "snapshot/keyset.h"
#include "snapshot/manifest.h"
#include "snapshot/ref_set.h"
#include "snapshot/sealed_chunk.h"
#include "snapshot/stream_batch.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;
using hub::Role;
using mirror::transport::HttpRequest;
using mirror::transport::HttpResponse;

constexpr int kInputsPerHub = 500;
// LinkServerOptions::max_http_header_bytes, HubConfig::max_http_body_bytes
// (their defaults) and the least maxHttpBodyBytes the hub's config allows.
constexpr uint32_t kHeaderLimit = 8 << 10;
constexpr uint64_t kBodyLimit = 1 << 20;
constexpr uint64_t kSmallBodyLimit = 1024;
constexpr int64_t kNow = 1'700'000'000'000'000'000;
constexpr int64_t kSecond = 1'000'000'000;
constexpr char kPeer[] = "192.0.2.1";

constexpr char kPolicyYaml[] = R"(apiVersion: ferry/v1
kind: MirrorPolicy
metadata: {name: cams, tenant: acme}
spec:
  agents: {matchLabels: {site: shop}}
  datasets: [videos]
  schedule: "*/15 * * * *"
  targets: [{hub: cloud-east}]
  retention: {keepLast: 4, daily: 7}
  rpo: 1h
)";

bool trace = false;  // FERRY_FUZZ_TRACE=1

// What the code under test logs (warnings and errors) while one request is
// handled: the REST API logs the exceptions it catches.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> Take() {
    std::lock_guard lock(mutex_);
    return std::exchange(lines_, {});
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

CaptureSink& Sink() {
  static const std::shared_ptr<CaptureSink> sink = [] {
    auto s = std::make_shared<CaptureSink>();
    log::Init({.level = log::Level::kWarn, .program = "http_request_fuzz", .sink = s});
    return s;
  }();
  return *sink;
}

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "fuzz hub setup: %s: %s\n", what, r.status().ToString().c_str());
    std::abort();
  }
  return std::move(*r);
}

void Must(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "fuzz hub setup: %s: %s\n", what, s.ToString().c_str());
    std::abort();
  }
}

snapshot::DataKey FixedDataKey() {
  snapshot::DataKey key;
  for (size_t i = 0; i < key.id.size(); ++i) key.id[i] = static_cast<uint8_t>(0xa0 + i);
  const std::array<uint8_t, 32> k = FixedKey(kDataKeySalt);
  key.key = SecretBytes(k.data(), k.size());
  return key;
}

const sodium::SigningKeyPair& Signer() {
  static const sodium::SigningKeyPair key =
      Must(sodium::SigningKeyPairFromSeed(FixedKey(kSigningSeedSalt)), "signing key");
  return key;
}

// One hub: its data directory, catalog, stores and streams, and the REST
// API over them (with and without the auth throttle).
struct FuzzHub {
  std::string dir;
  FakeClock clock{kNow};
  // The auth throttle's own clock, 20 s later every input: a throttled
  // address is let in again after a few inputs (its window is a minute).
  FakeClock throttle_clock{kNow};
  std::unique_ptr<hub::Catalog> catalog;
  std::unique_ptr<hub::TenantStores> stores;
  std::unique_ptr<hub::HubStreams> streams;
  hub::Metrics metrics;
  std::unique_ptr<hub::AuthThrottle> throttle;
  std::unique_ptr<hub::RestApi> api;
  std::unique_ptr<hub::RestApi> throttled_api;
  std::vector<std::pair<std::string, std::string>> placeholders;  // name, value
  std::string root_token, admin_token, reader_token;
  int inputs = 0;

  ~FuzzHub() {
    throttled_api.reset();
    api.reset();
    streams.reset();
    stores.reset();
    catalog.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

// acme's snapshot: one volume dataset whose root is one chunk, its data key,
// its refs; signed with the fixed key, so its id is the same in every hub.
void AddSnapshot(FuzzHub& h) {
  snapshot::ChunkStore* store = Must(h.stores->Get("acme"), "acme's store");
  const snapshot::DataKey key = FixedDataKey();
  const std::string_view plain = "the root of a fuzz snapshot";
  const std::array<uint8_t, 32> chunk_bytes = FixedKey(0x40);
  snapshot::ChunkId chunk;
  std::copy(chunk_bytes.begin(), chunk_bytes.end(), chunk.begin());
  Bytes sealed;
  Must(snapshot::SealChunk(chunk, AsBytes(plain), key, sealed), "seal chunk");
  const Bytes wrapped(snapshot::kWrappedDataKeySize, 0x5a);
  Must(store->PutChunk(chunk, sealed, key.id, wrapped).status(), "put chunk");
  Must(store->Flush(), "flush");

  snapshot::RefSetBuilder refs(*Env::Default(), store->staging_dir());
  Must(refs.Add(chunk, static_cast<uint32_t>(sealed.size())), "refs");
  const std::string refs_path = store->staging_dir() + "/fuzz.refs";
  const snapshot::RefSetSummaryInfo summary = Must(refs.Finish(refs_path), "refs");

  snapshot::pb::Manifest body;
  body.set_format_version(snapshot::kManifestFormatVersion);
  body.set_created_unix_ns(kNow - 3600 * kSecond);
  // One label: protobuf writes a map's entries in no fixed order, and the
  // id is the hash of the signed bytes.
  (*body.mutable_labels())["ferry.policy"] = "cams";
  snapshot::pb::Dataset* d = body.add_datasets();
  d->set_name("videos");
  d->set_kind(snapshot::pb::DATASET_KIND_VOLUME);
  snapshot::pb::ChunkRef* root = d->add_root();
  root->set_id(chunk.data(), chunk.size());
  root->set_size(static_cast<uint32_t>(plain.size()));
  d->mutable_stats()->set_files(1);
  d->mutable_stats()->set_bytes(plain.size());
  body.set_keyset_id(std::string(16, '\x6b'));
  body.mutable_refs()->set_count(summary.count);
  body.mutable_refs()->set_sealed_bytes(summary.sealed_bytes);
  body.mutable_refs()->set_digest(summary.digest.data(), summary.digest.size());
  body.set_hostname("cam-1");
  body.set_ferry_version("fuzz");
  Bytes envelope = Must(snapshot::SignManifest(body, Signer()), "sign manifest");
  const snapshot::ParsedManifest manifest =
      Must(snapshot::ParseManifest(std::move(envelope), "fuzz"), "parse manifest");
  Must(store->CommitSnapshot(manifest, refs_path), "commit snapshot");

  hub::SnapshotRecord record;
  record.id = HexEncode(manifest.id);
  record.tenant = "acme";
  record.agent = "cam-1";
  record.datasets = {"videos"};
  record.created_unix_ns = body.created_unix_ns();
  record.committed_unix = kNow / kSecond - 3000;
  record.chunks = 1;
  record.sealed_bytes = sealed.size();
  record.logical_bytes = plain.size();
  record.labels = {{"ferry.policy", "cams"}};
  Must(h.catalog->RecordSnapshot(record), "record snapshot");

  h.placeholders.emplace_back("$SNAP", record.id);
  h.placeholders.emplace_back("$CHUNK", HexEncode(chunk));
  h.placeholders.emplace_back("$KEY", HexEncode(key.id));
}

// cam-1's stream "events": one batch of two records.
void AddStream(FuzzHub& h) {
  snapshot::StreamBatchKey key{FixedDataKey(), Bytes(snapshot::kWrappedDataKeySize, 0x5a)};
  const std::string one = "door opened", two = "door closed";
  const ByteView records[] = {AsBytes(one), AsBytes(two)};
  const Bytes sealed =
      Must(snapshot::SealStreamBatch("events", 0, records, key, Signer()), "seal batch");
  const snapshot::StreamBatchHeader header =
      Must(snapshot::VerifyStreamBatch(sealed), "verify batch");
  Must(h.streams->Append("acme", "cam-1", header, sealed).status(), "append batch");
}

std::unique_ptr<FuzzHub> MakeHub() {
  static int count = 0;
  auto h = std::make_unique<FuzzHub>();
  h->dir = ScratchDir() + "/hub-" + std::to_string(count++);
  std::filesystem::create_directories(h->dir);
  h->catalog = Must(hub::Catalog::Open(h->dir + "/catalog.db", &h->clock), "catalog");
  h->stores = std::make_unique<hub::TenantStores>(h->dir);
  h->streams = std::make_unique<hub::HubStreams>(h->dir);
  hub::Catalog& c = *h->catalog;
  Must(c.CreateTenant("acme"), "tenant");
  Must(c.CreateTenant("globex"), "tenant");
  h->root_token = Must(c.CreateApiToken("", Role::kAdmin, "fuzz: every tenant"), "token");
  h->admin_token = Must(c.CreateApiToken("acme", Role::kAdmin, "fuzz: acme admin"), "token");
  hub::ApiToken reader;
  h->reader_token =
      Must(c.CreateApiToken("acme", Role::kReader, "fuzz: acme reader", &reader), "token");
  Must(c.CreateApiToken("globex", Role::kOperator, "fuzz: globex operator").status(), "token");

  const std::map<std::string, std::string> labels = {{"site", "shop"}};
  sodium::PublicKey link_key;
  link_key.fill(0x11);
  const hub::NewJoinToken join = Must(c.CreateJoinToken("acme", 3600, "cam-1", labels), "join");
  Must(c.RedeemJoinToken(join.token, "cam-1", link_key, Signer().public_key, labels).status(),
       "enroll");
  hub::AgentReportRecord report;
  report.pending_bytes = 4096;
  report.pending_snapshots = 1;
  report.last_error = "hub unreachable";
  report.last_error_unix = kNow / kSecond - 60;
  report.reported_unix = kNow / kSecond - 30;
  report.received_unix = kNow / kSecond - 30;
  Must(c.SaveAgentReport("acme", "cam-1", report), "report");
  link_key.fill(0x22);
  const hub::NewJoinToken join2 = Must(c.CreateJoinToken("acme", 3600), "join");
  Must(c.RedeemJoinToken(join2.token, "cam-2", link_key, Signer().public_key, {}).status(),
       "enroll");
  Must(c.RevokeAgent("acme", "cam-2"), "revoke");
  Must(c.CreateJoinToken("acme", 600, "cam-3").status(), "join");

  const mirror::MirrorPolicy policy = Must(mirror::ParseMirrorPolicy(kPolicyYaml), "policy");
  Must(c.PutPolicy("acme", "cams", mirror::MirrorPolicyToJson(policy)).status(), "policy");
  const int64_t session =
      Must(c.OpenSession("acme", "cam-1", "192.0.2.7:5100", kNow / kSecond - 100), "session");
  Must(c.CloseSession(session, kNow / kSecond - 90, 12345, 1, 1, "OK"), "session");

  AddSnapshot(*h);
  AddStream(*h);

  hub::RestContext ctx;
  ctx.catalog = h->catalog.get();
  ctx.stores = h->stores.get();
  ctx.streams = h->streams.get();
  ctx.metrics = &h->metrics;
  ctx.hub_fingerprint = "fry1:fuzzhubfingerprint";
  ctx.public_link_url = "ws://hub.example:7070/v1/link";
  ctx.on_policy_change = [](const std::string&) {};
  ctx.clock = &h->clock;
  h->api = std::make_unique<hub::RestApi>(ctx);
  h->throttle = std::make_unique<hub::AuthThrottle>(
      hub::AuthThrottleOptions{.max_failures = 3, .window = std::chrono::minutes(1)},
      &h->throttle_clock);
  ctx.auth_throttle = h->throttle.get();
  h->throttled_api = std::make_unique<hub::RestApi>(ctx);

  h->placeholders.emplace_back("$ROOT", h->root_token);
  h->placeholders.emplace_back("$ADMIN", h->admin_token);
  h->placeholders.emplace_back("$READER", h->reader_token);
  h->placeholders.emplace_back("$TOKID", reader.id);
  Sink().Take();
  return h;
}

FuzzHub& CurrentHub() {
  static std::unique_ptr<FuzzHub> hub;
  if (hub == nullptr || ++hub->inputs > kInputsPerHub) {
    hub.reset();
    hub = MakeHub();
    hub->inputs = 1;
  }
  hub->throttle_clock.Advance(20 * kSecond);
  return *hub;
}

bool IsTokenPlaceholder(std::string_view name) {
  return name == "$ROOT" || name == "$ADMIN" || name == "$READER";
}

// The input with its placeholders replaced; `*tokens` tells whether a
// token placeholder was among them.
std::string Substitute(std::string_view in, const FuzzHub& h, bool* tokens) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    const size_t dollar = in.find('$', i);
    if (dollar == std::string_view::npos) break;
    out.append(in.substr(i, dollar - i));
    i = dollar;
    bool replaced = false;
    for (const auto& [name, value] : h.placeholders) {
      if (in.substr(i).starts_with(name)) {
        out += value;
        i += name.size();
        if (IsTokenPlaceholder(name)) *tokens = true;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += in[i++];
  }
  out.append(in.substr(std::min(i, in.size())));
  return out;
}

std::string_view PathOf(std::string_view target) { return target.substr(0, target.find('?')); }

// The path's segments after "/v1/": "/v1/tenants/acme/agents" ->
// {"tenants", "acme", "agents"}.
std::vector<std::string_view> V1Segments(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.size() <= 4) return out;
  path.remove_prefix(4);
  while (true) {
    const size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool IsStatusCodeName(std::string_view name) {
  for (int code = 1; code <= 16; ++code) {
    if (StatusCodeName(static_cast<StatusCode>(code)) == name) return true;
  }
  return false;
}

struct RequestContext {
  uint8_t token_mode = kHttpTokenNone;
  bool token_placeholders = false;  // the input named a real token
  const std::string* data_dir = nullptr;
  const std::string* text = nullptr;  // the input, placeholders replaced
};

void Report(const HttpRequest& req, const HttpResponse& res,
            const std::vector<std::string>& log_lines) {
  std::fprintf(stderr, "request: %s %s\n", std::string(req.method_string()).c_str(),
               QuoteForMessage(req.target(), 200).c_str());
  std::fprintf(stderr, "answer: %u %s\n", res.result_int(),
               QuoteForMessage(res.body(), 400).c_str());
  for (const std::string& line : log_lines) {
    std::fprintf(stderr, "logged: %s\n", QuoteForMessage(line, 400).c_str());
  }
}

#define RESPONSE_CHECK(cond)       \
  do {                             \
    if (!(cond)) {                 \
      Report(req, res, log_lines); \
      FUZZ_CHECK(cond);            \
    }                              \
  } while (0)

void CheckResponse(const HttpRequest& req, const HttpResponse& res, const RequestContext& rc,
                   const std::vector<std::string>& log_lines) {
  for (const std::string& line : log_lines) {
    RESPONSE_CHECK(line.find("exception") == std::string::npos);
  }
  const unsigned status = res.result_int();
  RESPONSE_CHECK(status >= 200 && status <= 599);
  RESPONSE_CHECK(status != 500);
  if (status == 204) {
    RESPONSE_CHECK(res.body().empty());
  } else {
    const auto length = res.find(http::field::content_length);
    RESPONSE_CHECK(length != res.end() &&
                   std::string_view(length->value()) == std::to_string(res.body().size()));
  }
  // (Unless the request named it: this very check teaches libFuzzer the
  // path, which the API may then quote back, e.g. as an unknown field.)
  RESPONSE_CHECK(res.body().find(*rc.data_dir) == std::string::npos ||
                 rc.text->find(*rc.data_dir) != std::string::npos);
  const std::string_view type = res[http::field::content_type];

  if (status >= 400) {
    RESPONSE_CHECK(type == "application/json");
    boost::system::error_code ec;
    const json::value v = json::parse(res.body(), ec);
    RESPONSE_CHECK(!ec && v.is_object() && v.as_object().size() == 1);
    const json::value* error = v.as_object().if_contains("error");
    RESPONSE_CHECK(error != nullptr && error->is_object() && error->as_object().size() == 2);
    const json::value* code = error->as_object().if_contains("code");
    const json::value* message = error->as_object().if_contains("message");
    RESPONSE_CHECK(code != nullptr && code->is_string() && message != nullptr &&
                   message->is_string() && !message->as_string().empty());
    const std::string_view code_name = code->as_string();
    RESPONSE_CHECK(IsStatusCodeName(code_name));
    if (status == 401) {
      RESPONSE_CHECK(code_name == "UNAUTHENTICATED");
      RESPONSE_CHECK(res.find(http::field::www_authenticate) != res.end());
    }
    if (status >= 500 && status != 501) {
      RESPONSE_CHECK(message->as_string() ==
                         "the hub cannot serve this now; retry later (details in the hub's log)" ||
                     message->as_string() == "internal error (details in the hub's log)");
    }
  } else if (type == "application/json") {
    boost::system::error_code ec;
    json::parse(res.body(), ec);
    RESPONSE_CHECK(!ec);
  }

  const std::string_view path = PathOf(req.target());
  if (status >= 300 || !(path == "/v1" || path.starts_with("/v1/"))) return;
  // A success on the token API.
  RESPONSE_CHECK(rc.token_mode != kHttpTokenNone || rc.token_placeholders);
  if (rc.token_mode == kHttpTokenReader) RESPONSE_CHECK(req.method() == http::verb::get);
  if (rc.token_mode == kHttpTokenAdmin || rc.token_mode == kHttpTokenReader) {
    const std::vector<std::string_view> s = V1Segments(path);
    if (s.size() >= 2 && (s[0] == "tenants" || s[0] == "streams")) {
      RESPONSE_CHECK(s[1] == "acme");
    }
  }
}

void Run(const uint8_t* data, size_t size) {
  if (size == 0) return;
  CaptureSink& sink = Sink();
  FuzzHub& h = CurrentHub();
  const uint8_t config = data[0];
  RequestContext rc;
  rc.token_mode = config & kHttpTokenMask;
  rc.data_dir = &h.dir;
  const std::string* token = rc.token_mode == kHttpTokenRoot     ? &h.root_token
                             : rc.token_mode == kHttpTokenAdmin  ? &h.admin_token
                             : rc.token_mode == kHttpTokenReader ? &h.reader_token
                                                                 : nullptr;
  hub::RestApi& api = (config & kHttpThrottle) != 0 ? *h.throttled_api : *h.api;
  const std::string text =
      Substitute(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), h,
                 &rc.token_placeholders);

  rc.text = &text;
  std::string_view rest = text;
  for (size_t i = 0; i < kMaxHttpRequestsPerInput && !rest.empty(); ++i) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit((config & kHttpSmallBody) != 0 ? kSmallBodyLimit : kBodyLimit);
    parser.eager(true);
    boost::beast::error_code ec;
    size_t used = 0;
    while (!parser.is_done()) {
      const size_t n = parser.put(boost::asio::buffer(rest.data() + used, rest.size() - used), ec);
      used += n;
      if (ec == http::error::need_more && n > 0 && used < rest.size()) {
        ec = {};
        continue;
      }
      break;
    }
    // Malformed, over a limit or cut short: the server answers 400, 413 or
    // 431 itself, or waits for more, then closes.
    if (!parser.is_done()) {
      if (trace) std::fprintf(stderr, "parser: %s\n", ec.message().c_str());
      return;
    }
    rest.remove_prefix(used);
    HttpRequest req = parser.release();
    // The link's upgrade (the connection leaves HTTP) and the link's path
    // without one (426) are the server's, not the REST API's.
    if (boost::beast::websocket::is_upgrade(req)) return;
    if (PathOf(req.target()) == "/v1/link") continue;
    if (token != nullptr) req.set(http::field::authorization, "Bearer " + *token);

    sink.Take();
    const HttpResponse res = api.Handle(req, (config & kHttpThrottle) != 0 ? kPeer : "");
    const std::vector<std::string> log_lines = sink.Take();
    if (trace) Report(req, res, log_lines);
    CheckResponse(req, res, rc, log_lines);
    if (!req.keep_alive()) return;  // the server closes the connection
  }
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ferry::fuzz::trace = std::getenv("FERRY_FUZZ_TRACE") != nullptr;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ferry::fuzz::Run(data, size);
  return 0;
}
