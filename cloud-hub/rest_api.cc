#include "cloud-hub/rest_api.h"

#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <ctime>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "cloud-hub/tenant_status.h"
#include "core/bytes.h"
#include "core/env.h"
#include "core/log.h"
#include "mirror/identity.h"
#include "mirror/policy/mirror_policy.h"
#include "snapshot/types.h"

namespace ferry::hub {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;
using mirror::transport::HttpRequest;
using mirror::transport::HttpResponse;

// Bounds (docs/api.md, "Limits").
constexpr size_t kMaxTargetBytes = 2048;
constexpr size_t kMaxSegments = 12;
// Every endpoint's body (JSON requests, policy documents).
constexpr size_t kMaxBodyBytes = 64 << 10;
constexpr uint64_t kMaxRefsBytes = 256ull << 20;
constexpr size_t kMaxListItems = 10'000;
constexpr size_t kDefaultSnapshotLimit = 100;
constexpr size_t kMaxSnapshotLimit = 1000;
constexpr size_t kDefaultSessionLimit = 100;
constexpr size_t kMaxSessionLimit = 1000;
constexpr int64_t kDefaultJoinTokenTtl = 3600;
constexpr int kMaxJsonDepth = 16;

// ---------------------------------------------------------------------------
// Replies

struct Reply {
  http::status status = http::status::ok;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Reply JsonReply(http::status status, const json::value& v) {
  Reply r;
  r.status = status;
  r.body = json::serialize(v);
  r.body += '\n';
  // API answers carry tokens and tenant data: never cache them.
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Reply BytesReply(std::string body) {
  Reply r;
  r.content_type = "application/octet-stream";
  r.body = std::move(body);
  // Addressed by content (chunks, keys) or by a hash of it (manifests, refs).
  r.headers.emplace_back("Cache-Control", "private, max-age=31536000, immutable");
  return r;
}

http::status HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return http::status::bad_request;
    case StatusCode::kUnauthenticated:
      return http::status::unauthorized;
    case StatusCode::kPermissionDenied:
      return http::status::forbidden;
    case StatusCode::kNotFound:
      return http::status::not_found;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted:
      return http::status::conflict;
    case StatusCode::kUnimplemented:
      return http::status::not_implemented;
    case StatusCode::kResourceExhausted:  // the hub's disk or memory; a request too large is 413
    case StatusCode::kUnavailable:
      return http::status::service_unavailable;
    case StatusCode::kDeadlineExceeded:
      return http::status::gateway_timeout;
    default:
      return http::status::internal_server_error;
  }
}

// Whether a code's message comes from deep inside (SQLite, files) and may
// name server paths: such messages are logged, not sent.
bool IsServerSide(StatusCode code) {
  switch (code) {
    case StatusCode::kInternal:
    case StatusCode::kDataLoss:
    case StatusCode::kUnknown:
    case StatusCode::kUnavailable:
    case StatusCode::kResourceExhausted:
    case StatusCode::kCancelled:
    case StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

Reply ErrorReply(RestContext& ctx, const Status& status,
                 std::optional<http::status> http_status = std::nullopt) {
  const std::string code(StatusCodeName(status.code()));
  std::string message = status.message();
  if (!IsValidUtf8(message)) {
    // JSON text must be UTF-8; a message quoting raw request bytes is not.
    std::string ascii;
    for (char ch : message) {
      const unsigned char u = static_cast<unsigned char>(ch);
      if (u >= 0x80) {
        static const char kHex[] = "0123456789abcdef";
        ascii += "\\x";
        ascii += kHex[u >> 4];
        ascii += kHex[u & 15];
      } else {
        ascii += ch;
      }
    }
    message = std::move(ascii);
  }
  if (!http_status && IsServerSide(status.code())) {
    log::Error("hub api: {}", status.ToString());
    message =
        status.code() == StatusCode::kUnavailable || status.code() == StatusCode::kResourceExhausted
            ? "the hub cannot serve this now; retry later (details in the hub's log)"
            : "internal error (details in the hub's log)";
  }
  if (ctx.metrics != nullptr) ctx.metrics->CountError("http", code);
  json::object err;
  err["code"] = code;
  err["message"] = message;
  json::object body;
  body["error"] = std::move(err);
  Reply r = JsonReply(http_status.value_or(HttpStatusFor(status.code())), body);
  if (status.code() == StatusCode::kUnauthenticated) {
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"ferry-hub\"");
  }
  return r;
}

// ---------------------------------------------------------------------------
// Times: RFC 3339 or Unix seconds.

std::string FormatRfc3339(int64_t unix_ns) {
  int64_t secs = unix_ns / 1'000'000'000;
  int64_t frac = unix_ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_ns);
  char buf[48];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  if (frac != 0) {
    char f[16];
    std::snprintf(f, sizeof(f), ".%09lld", static_cast<long long>(frac));
    out += f;
  }
  return out + "Z";
}

bool ReadDigits(std::string_view s, size_t& pos, size_t count, int& out) {
  if (pos + count > s.size()) return false;
  out = 0;
  for (size_t i = 0; i < count; ++i) {
    const char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += count;
  return true;
}

// Unix seconds ("1700000000"), an RFC 3339 time ("2024-05-01T12:00:00Z",
// "...T12:00:00.5+02:00") or a date ("2024-05-01", midnight UTC) ->
// nanoseconds since the epoch.
Result<int64_t> ParseTime(std::string_view what, std::string_view s) {
  const Status bad = InvalidArgumentError(
      std::string(what) + ": " + QuoteForMessage(s) +
      " is not a time (Unix seconds, RFC 3339 like 2024-05-01T12:00:00Z, or a date 2024-05-01)");
  if (s.empty() || s.size() > 40) return bad;
  if (std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    // Nanoseconds since the epoch fit in int64 until 2262.
    if (s.size() > 10 || std::stoll(std::string(s)) > 9'223'372'035LL) return bad;
    return static_cast<int64_t>(std::stoll(std::string(s))) * 1'000'000'000;
  }
  size_t pos = 0;
  int year, month, day, hour = 0, minute = 0, second = 0;
  if (!ReadDigits(s, pos, 4, year) || pos >= s.size() || s[pos++] != '-' ||
      !ReadDigits(s, pos, 2, month) || pos >= s.size() || s[pos++] != '-' ||
      !ReadDigits(s, pos, 2, day)) {
    return bad;
  }
  int64_t frac_ns = 0;
  int offset_seconds = 0;
  if (pos < s.size()) {
    const char sep = s[pos++];
    if (sep != 'T' && sep != 't' && sep != ' ') return bad;
    if (!ReadDigits(s, pos, 2, hour) || pos >= s.size() || s[pos++] != ':' ||
        !ReadDigits(s, pos, 2, minute) || pos >= s.size() || s[pos++] != ':' ||
        !ReadDigits(s, pos, 2, second)) {
      return bad;
    }
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      int digits = 0;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        if (digits < 9) frac_ns = frac_ns * 10 + (s[pos] - '0');
        ++digits;
        ++pos;
      }
      if (digits == 0) return bad;
      for (int i = digits; i < 9; ++i) frac_ns *= 10;
    }
    if (pos >= s.size()) return bad;  // the offset is required
    const char zone = s[pos++];
    if (zone == 'Z' || zone == 'z') {
      if (pos != s.size()) return bad;
    } else if (zone == '+' || zone == '-') {
      int oh, om;
      if (!ReadDigits(s, pos, 2, oh) || pos >= s.size() || s[pos++] != ':' ||
          !ReadDigits(s, pos, 2, om) || pos != s.size() || oh > 23 || om > 59) {
        return bad;
      }
      offset_seconds = (oh * 3600 + om * 60) * (zone == '+' ? 1 : -1);
    } else {
      return bad;
    }
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return bad;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second == 60 ? 59 : second;  // a leap second reads as :59
  const std::time_t t = timegm(&tm);
  if (tm.tm_mday != day || tm.tm_mon != month - 1) return bad;  // e.g. 02-30 was normalised
  // Nanoseconds since the epoch fit in int64 from 1677 to 2262 only.
  const int64_t secs = static_cast<int64_t>(t) - offset_seconds;
  if (secs < -9'223'372'036LL || secs > 9'223'372'035LL) {
    return InvalidArgumentError(std::string(what) + ": " + QuoteForMessage(s) +
                                " is out of range (years 1678 to 2261)");
  }
  return secs * 1'000'000'000 + frac_ns;
}

// ---------------------------------------------------------------------------
// Request parsing

Result<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      return InvalidArgumentError("query: bad percent-encoding in " + QuoteForMessage(s));
    }
    out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  return out;
}

// "a=1&b=2" -> {a: 1, b: 2}. '+' is a plus sign, not a space (RFC 3986);
// send times with "Z" or encode the '+' of an offset as %2B.
Result<std::map<std::string, std::string>> ParseQuery(std::string_view q) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    const size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    ASSIGN_OR_RETURN(std::string key, PercentDecode(pair.substr(0, eq)));
    ASSIGN_OR_RETURN(
        std::string value,
        PercentDecode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1)));
    if (!out.emplace(key, value).second) {
      return InvalidArgumentError("query: parameter " + QuoteForMessage(key) + " given twice");
    }
  }
  return out;
}

Result<size_t> ParseLimit(const std::map<std::string, std::string>& query, size_t def, size_t max) {
  auto it = query.find("limit");
  if (it == query.end()) return def;
  const std::string& v = it->second;
  if (v.empty() || v.size() > 6 ||
      !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return InvalidArgumentError("limit: must be an integer from 1 to " + std::to_string(max) +
                                ", got " + QuoteForMessage(v));
  }
  const size_t n = std::stoul(v);
  if (n < 1 || n > max) {
    return InvalidArgumentError("limit: must be an integer from 1 to " + std::to_string(max) +
                                ", got " + v);
  }
  return n;
}

Result<json::object> ParseJsonBody(const HttpRequest& req,
                                   std::initializer_list<std::string_view> allowed) {
  const std::string& body = req.body();  // at most kMaxBodyBytes (checked by Dispatch)
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec, json::storage_ptr(), options);
  if (ec) return InvalidArgumentError("request body: malformed JSON: " + ec.message());
  if (!v.is_object()) return InvalidArgumentError("request body: must be a JSON object");
  for (const auto& [key, value] : v.as_object()) {
    if (std::find(allowed.begin(), allowed.end(), std::string_view(key)) == allowed.end()) {
      return InvalidArgumentError("request body: unknown field " + QuoteForMessage(key));
    }
  }
  return std::move(v.as_object());
}

Result<std::string> OptString(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::string();
  if (!it->value().is_string()) {
    return InvalidArgumentError(std::string(key) + ": must be a string");
  }
  return std::string(it->value().as_string());
}

Result<std::optional<int64_t>> OptInt(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::optional<int64_t>();
  if (it->value().is_int64()) return std::optional<int64_t>(it->value().as_int64());
  if (it->value().is_uint64() && it->value().as_uint64() <= INT64_MAX) {
    return std::optional<int64_t>(static_cast<int64_t>(it->value().as_uint64()));
  }
  return InvalidArgumentError(std::string(key) + ": must be an integer");
}

Result<std::map<std::string, std::string>> OptLabels(const json::object& o, std::string_view key) {
  std::map<std::string, std::string> out;
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return out;
  if (!it->value().is_object()) {
    return InvalidArgumentError(std::string(key) + ": must be an object of strings");
  }
  for (const auto& [k, v] : it->value().as_object()) {
    if (!v.is_string()) {
      return InvalidArgumentError(std::string(key) + "." + std::string(k) + ": must be a string");
    }
    out.emplace(std::string(k), std::string(v.as_string()));
  }
  RETURN_IF_ERROR(ValidateLabels(out).WithContext(std::string(key)));
  return out;
}

// A hex id of exactly N bytes (either case).
template <size_t N>
Result<std::array<uint8_t, N>> ParseHexId(std::string_view what, std::string_view hex) {
  const Status bad = InvalidArgumentError(std::string(what) + " " + QuoteForMessage(hex) +
                                          ": must be " + std::to_string(2 * N) + " hex digits");
  if (hex.size() != 2 * N) return bad;
  Result<Bytes> bytes = HexDecode(hex);
  if (!bytes.ok() || bytes->size() != N) return bad;
  std::array<uint8_t, N> out;
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return out;
}

Status ValidateTokenId(std::string_view id) {
  bool ok = id.size() == 12 && id.substr(0, 4) == "tok-";
  for (size_t i = 4; ok && i < id.size(); ++i) {
    ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
  }
  if (!ok)
    return InvalidArgumentError("token id " + QuoteForMessage(id) +
                                ": must be tok- and 8 hex digits");
  return OkStatus();
}

// ---------------------------------------------------------------------------
// JSON views of catalog records

json::object LabelsJson(const std::map<std::string, std::string>& labels) {
  json::object o;
  for (const auto& [k, v] : labels) o[k] = v;
  return o;
}

json::object TenantJson(const Tenant& t) {
  json::object o;
  o["name"] = t.name;
  o["created_unix"] = t.created_unix;
  return o;
}

// An RFC 3339 time, or null for 0 ("never").
json::value TimeOrNull(int64_t unix_seconds) {
  if (unix_seconds == 0) return nullptr;
  return json::value(FormatRfc3339(unix_seconds * 1'000'000'000));
}

// What the agent last reported over the link (AgentReport); null fields
// when it never reported.
void AddReportFields(json::object& o, const Agent& a) {
  if (!a.report) {
    for (const char* key :
         {"pending_bytes", "pending_snapshots", "last_error", "last_error_at", "reported_at"}) {
      o[key] = nullptr;
    }
    return;
  }
  const AgentReportRecord& r = *a.report;
  o["pending_bytes"] = r.pending_bytes;
  o["pending_snapshots"] = r.pending_snapshots;
  o["last_error"] = r.last_error.empty() ? json::value(nullptr) : json::value(r.last_error);
  o["last_error_at"] = r.last_error.empty() ? json::value(nullptr) : TimeOrNull(r.last_error_unix);
  o["reported_at"] = TimeOrNull(r.received_unix);
}

json::object AgentJson(const Agent& a) {
  json::object o;
  o["tenant"] = a.tenant;
  o["name"] = a.name;
  o["link_key"] = HexEncode(a.link_key);
  o["link_key_fingerprint"] = mirror::Fingerprint(a.link_key);
  o["signing_key"] = HexEncode(a.signing_key);
  o["labels"] = LabelsJson(a.labels);
  o["enrolled_unix"] = a.enrolled_unix;
  o["last_seen_unix"] = a.last_seen_unix;
  o["revoked"] = a.revoked;
  o["revoked_unix"] = a.revoked_unix;
  AddReportFields(o, a);
  return o;
}

// One row of the status page: a recovery point and the agent's report.
json::object RecoveryJson(const Agent& a, const RecoveryPoint& p) {
  json::object o;
  o["agent"] = a.name;
  if (p.last_snapshot) {
    json::object snap;
    snap["id"] = p.last_snapshot->id;
    snap["created"] = FormatRfc3339(p.last_snapshot->created_unix_ns);
    snap["committed_unix"] = p.last_snapshot->committed_unix;
    o["last_snapshot"] = std::move(snap);
  } else {
    o["last_snapshot"] = nullptr;
  }
  o["age_seconds"] = p.age_seconds ? json::value(*p.age_seconds) : json::value(nullptr);
  o["rpo_met"] = p.rpo_met ? json::value(*p.rpo_met) : json::value(nullptr);
  AddReportFields(o, a);
  o["last_seen"] = TimeOrNull(a.last_seen_unix);
  return o;
}

json::object TenantStatusJson(const TenantStatus& t) {
  json::array policies;
  for (const PolicyStatus& p : t.policies) {
    json::array rows;
    for (const PolicyStatus::Row& row : p.agents) {
      rows.emplace_back(RecoveryJson(t.agents[row.agent].agent, row.point));
    }
    json::object o;
    o["policy"] = p.policy;
    o["rpo_seconds"] = p.rpo_seconds ? json::value(*p.rpo_seconds) : json::value(nullptr);
    o["agents"] = std::move(rows);
    policies.emplace_back(std::move(o));
  }
  json::array agents;
  for (const AgentStatus& a : t.agents) {
    json::object o = RecoveryJson(a.agent, a.point);
    json::array names;
    for (const std::string& n : a.policies) names.emplace_back(n);
    o["policies"] = std::move(names);
    agents.emplace_back(std::move(o));
  }
  json::object o;
  o["generated_at"] = FormatRfc3339(t.generated_unix * 1'000'000'000);
  o["policies"] = std::move(policies);
  o["agents"] = std::move(agents);
  o["truncated"] = t.truncated;
  return o;
}

json::object TokenJson(const ApiToken& t) {
  json::object o;
  o["id"] = t.id;
  o["tenant"] = t.tenant;
  o["role"] = RoleName(t.role);
  o["description"] = t.description;
  o["created_unix"] = t.created_unix;
  o["revoked"] = t.revoked;
  return o;
}

json::object SnapshotJson(const SnapshotRecord& s) {
  json::object o;
  o["id"] = s.id;
  o["tenant"] = s.tenant;
  o["agent"] = s.agent;
  json::array datasets;
  for (const auto& d : s.datasets) datasets.emplace_back(d);
  o["datasets"] = std::move(datasets);
  o["created_unix_ns"] = s.created_unix_ns;
  o["created"] = FormatRfc3339(s.created_unix_ns);
  o["committed_unix"] = s.committed_unix;
  o["parent"] = s.parent;
  o["chunks"] = s.chunks;
  o["sealed_bytes"] = s.sealed_bytes;
  o["logical_bytes"] = s.logical_bytes;
  o["labels"] = LabelsJson(s.labels);
  return o;
}

json::value PolicyJson(const PolicyRecord& p) {
  json::object o;
  o["tenant"] = p.tenant;
  o["name"] = p.name;
  o["generation"] = p.generation;
  o["updated_unix"] = p.updated_unix;
  boost::system::error_code ec;
  json::value spec = json::parse(p.spec_json, ec);
  o["policy"] = ec ? json::value(p.spec_json) : std::move(spec);
  return o;
}

json::object SessionJson(const SessionRecord& s) {
  json::object o;
  o["id"] = s.id;
  o["tenant"] = s.tenant;
  o["agent"] = s.agent;
  o["remote"] = s.remote;
  o["started_unix"] = s.started_unix;
  o["ended_unix"] = s.ended_unix;
  o["bytes_received"] = s.bytes_received;
  o["chunks_new"] = s.chunks_new;
  o["commits"] = s.commits;
  o["end_status"] = s.end_status;
  return o;
}

const char* DatasetKindName(int kind) {
  switch (kind) {
    case 1:
      return "volume";
    case 2:
      return "stream";
    case 0:
      return "unspecified";
    default:
      return "unknown";
  }
}

json::object ManifestJson(const snapshot::ParsedManifest& m) {
  const auto& b = m.body;
  json::object o;
  o["format_version"] = b.format_version();
  o["created_unix_ns"] = b.created_unix_ns();
  o["created"] = FormatRfc3339(b.created_unix_ns());
  o["hostname"] = b.hostname();
  o["ferry_version"] = b.ferry_version();
  o["parent"] = HexEncode(AsBytes(b.parent()));
  json::object labels;
  for (const auto& [k, v] : b.labels()) labels[k] = v;
  o["labels"] = std::move(labels);
  o["keyset_id"] = HexEncode(AsBytes(b.keyset_id()));
  json::array datasets;
  for (const auto& d : b.datasets()) {
    json::object dj;
    dj["name"] = d.name();
    dj["kind"] = DatasetKindName(d.kind());
    if (d.has_stream()) {
      dj["stream"] = json::object{{"start_offset", d.stream().start_offset()},
                                  {"end_offset", d.stream().end_offset()}};
    }
    dj["root_chunks"] = d.root_size();
    json::object stats;
    stats["files"] = d.stats().files();
    stats["directories"] = d.stats().directories();
    stats["symlinks"] = d.stats().symlinks();
    stats["bytes"] = d.stats().bytes();
    stats["inconsistent"] = d.stats().inconsistent();
    stats["skipped"] = d.stats().skipped();
    dj["stats"] = std::move(stats);
    datasets.emplace_back(std::move(dj));
  }
  o["datasets"] = std::move(datasets);
  json::object refs;
  refs["count"] = b.refs().count();
  refs["sealed_bytes"] = b.refs().sealed_bytes();
  refs["digest"] = HexEncode(AsBytes(b.refs().digest()));
  o["refs"] = std::move(refs);
  o["signer"] = HexEncode(m.signer);
  return o;
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Routing

enum class Scope {
  kPublic,      // no token (health, readiness, metrics)
  kAnyToken,    // any valid token; the handler scopes the answer
  kTenant,      // args[0] is a tenant the token must cover
  kAllTenants,  // only a token of every tenant
};

struct Call {
  RestContext& ctx;
  const HttpRequest& req;
  ApiToken who;
  std::vector<std::string> args;
  std::map<std::string, std::string> query;

  const std::string& tenant() const { return args[0]; }
  Result<snapshot::ChunkStore*> Store() const {
    if (ctx.stores == nullptr) return UnavailableError("no tenant stores configured");
    return ctx.stores->Get(tenant());
  }
};

using Handler = Result<Reply> (*)(Call&);

struct Route {
  http::verb method;
  std::string_view pattern;  // "{}" segments are captured into Call::args
  Scope scope;
  Role role;
  std::initializer_list<std::string_view> query;  // accepted query parameters
  Handler handler;
};

// ---- operational ----

Result<Reply> Healthz(Call&) {
  json::object o;
  o["status"] = "ok";
  return JsonReply(http::status::ok, o);
}

Result<Reply> Readyz(Call& c) {
  Status s = c.ctx.catalog == nullptr ? UnavailableError("no catalog") : c.ctx.catalog->Ping();
  if (s.ok() && c.ctx.stores == nullptr) s = UnavailableError("no tenant stores");
  json::object o;
  if (s.ok()) {
    o["status"] = "ready";
    return JsonReply(http::status::ok, o);
  }
  log::Warn("hub api: not ready: {}", s.ToString());
  o["status"] = "unavailable";
  o["reason"] = s.code() == StatusCode::kUnavailable ? "catalog busy or not configured"
                                                     : "catalog check failed";
  return JsonReply(http::status::service_unavailable, o);
}

int64_t NowUnix(const RestContext& ctx) {
  return (ctx.clock != nullptr ? ctx.clock : Clock::Real())->NowUnixNanos() / 1'000'000'000;
}

// Per tenant, policy and selected agent: whether the RPO is met and the age
// of the newest snapshot; per live agent: its reported backlog. Computed at
// scrape time from the catalog (ComputeTenantStatus, one index seek per
// policy, agent and dataset).
std::string RecoveryMetrics(Call& c) {
  Result<std::vector<Tenant>> tenants = c.ctx.catalog->ListTenants();
  if (!tenants.ok()) {
    log::Warn("hub api: metrics: {}", tenants.status().ToString());
    c.ctx.metrics->CountError("http", std::string(StatusCodeName(tenants.status().code())));
    return "";
  }
  std::string rpo, age, pending_bytes, pending_snapshots;
  const int64_t now = NowUnix(c.ctx);
  for (const Tenant& t : *tenants) {
    Result<TenantStatus> status = ComputeTenantStatus(*c.ctx.catalog, t.name, now, kMaxListItems);
    if (!status.ok()) {
      log::Warn("hub api: metrics: status of {}: {}", t.name, status.status().ToString());
      c.ctx.metrics->CountError("http", std::string(StatusCodeName(status.status().code())));
      continue;
    }
    const std::string tenant = "tenant=\"" + EscapeLabelValue(t.name) + "\"";
    for (const PolicyStatus& p : status->policies) {
      for (const PolicyStatus::Row& row : p.agents) {
        const std::string labels = "{" + tenant + ",policy=\"" + EscapeLabelValue(p.policy) +
                                   "\",agent=\"" +
                                   EscapeLabelValue(status->agents[row.agent].agent.name) + "\"}";
        if (row.point.rpo_met) {
          rpo += "ferry_hub_policy_rpo_met" + labels + (*row.point.rpo_met ? " 1\n" : " 0\n");
        }
        if (row.point.age_seconds) {
          age += "ferry_hub_policy_last_snapshot_age_seconds" + labels + " " +
                 std::to_string(*row.point.age_seconds) + "\n";
        }
      }
    }
    for (const AgentStatus& a : status->agents) {
      if (!a.agent.report) continue;
      const std::string labels =
          "{" + tenant + ",agent=\"" + EscapeLabelValue(a.agent.name) + "\"}";
      pending_bytes += "ferry_hub_agent_pending_bytes" + labels + " " +
                       std::to_string(a.agent.report->pending_bytes) + "\n";
      pending_snapshots += "ferry_hub_agent_pending_snapshots" + labels + " " +
                           std::to_string(a.agent.report->pending_snapshots) + "\n";
    }
  }
  return "# HELP ferry_hub_policy_rpo_met 1 when the agent's newest snapshot for the policy is "
         "younger than the policy's rpo, else 0 (policies with an rpo only).\n"
         "# TYPE ferry_hub_policy_rpo_met gauge\n" +
         rpo +
         "# HELP ferry_hub_policy_last_snapshot_age_seconds Age of the agent's newest snapshot "
         "for the policy (capture time; the oldest of the policy's datasets).\n"
         "# TYPE ferry_hub_policy_last_snapshot_age_seconds gauge\n" +
         age +
         "# HELP ferry_hub_agent_pending_bytes Outbox bytes the agent last reported it still has "
         "to deliver to this hub.\n"
         "# TYPE ferry_hub_agent_pending_bytes gauge\n" +
         pending_bytes +
         "# HELP ferry_hub_agent_pending_snapshots Snapshots the agent last reported it still "
         "has to deliver to this hub.\n"
         "# TYPE ferry_hub_agent_pending_snapshots gauge\n" +
         pending_snapshots;
}

Result<Reply> MetricsText(Call& c) {
  if (c.ctx.metrics == nullptr) return UnavailableError("no metrics configured");
  std::string extra;
  if (c.ctx.catalog != nullptr) {
    Result<std::vector<std::pair<Agent, int64_t>>> times = c.ctx.catalog->LastSnapshotTimes();
    if (times.ok()) {
      extra +=
          "# HELP ferry_hub_agent_last_snapshot_timestamp_seconds Commit time of the newest "
          "snapshot of each live agent (Unix seconds).\n"
          "# TYPE ferry_hub_agent_last_snapshot_timestamp_seconds gauge\n";
      for (const auto& [agent, when] : *times) {
        extra += "ferry_hub_agent_last_snapshot_timestamp_seconds{tenant=\"" +
                 EscapeLabelValue(agent.tenant) + "\",agent=\"" + EscapeLabelValue(agent.name) +
                 "\"} " + std::to_string(when) + "\n";
      }
    } else {
      log::Warn("hub api: metrics: {}", times.status().ToString());
      c.ctx.metrics->CountError("http", std::string(StatusCodeName(times.status().code())));
    }
    extra += RecoveryMetrics(c);
  }
  Reply r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = c.ctx.metrics->Render(extra);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

// ---- tenants ----

Result<Reply> ListTenants(Call& c) {
  json::array items;
  if (c.who.tenant.empty()) {
    ASSIGN_OR_RETURN(std::vector<Tenant> tenants, c.ctx.catalog->ListTenants());
    for (const Tenant& t : tenants) items.emplace_back(TenantJson(t));
  } else {
    ASSIGN_OR_RETURN(Tenant t, c.ctx.catalog->GetTenant(c.who.tenant));
    items.emplace_back(TenantJson(t));
  }
  json::object o;
  o["tenants"] = std::move(items);
  return JsonReply(http::status::ok, o);
}

Result<Reply> CreateTenant(Call& c) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonBody(c.req, {"name"}));
  ASSIGN_OR_RETURN(std::string name, OptString(body, "name"));
  if (name.empty()) return InvalidArgumentError("name: required");
  RETURN_IF_ERROR(c.ctx.catalog->CreateTenant(name));
  ASSIGN_OR_RETURN(Tenant t, c.ctx.catalog->GetTenant(name));
  return JsonReply(http::status::created, TenantJson(t));
}

Result<Reply> GetTenant(Call& c) {
  ASSIGN_OR_RETURN(Tenant t, c.ctx.catalog->GetTenant(c.tenant()));
  json::object o = TenantJson(t);
  ASSIGN_OR_RETURN(uint64_t generation, c.ctx.catalog->PolicyGeneration(c.tenant()));
  o["policy_generation"] = generation;
  return JsonReply(http::status::ok, o);
}

// ---- enrollment and agents ----

Result<Reply> CreateEnrollmentToken(Call& c) {
  ASSIGN_OR_RETURN(json::object body,
                   ParseJsonBody(c.req, {"ttl_seconds", "agent_name", "labels"}));
  ASSIGN_OR_RETURN(std::optional<int64_t> ttl, OptInt(body, "ttl_seconds"));
  ASSIGN_OR_RETURN(std::string agent_name, OptString(body, "agent_name"));
  ASSIGN_OR_RETURN(auto labels, OptLabels(body, "labels"));
  ASSIGN_OR_RETURN(NewJoinToken token,
                   c.ctx.catalog->CreateJoinToken(c.tenant(), ttl.value_or(kDefaultJoinTokenTtl),
                                                  agent_name, labels));
  json::object o;
  o["token"] = token.token;
  o["tenant"] = c.tenant();
  o["agent_name"] = agent_name;
  o["labels"] = LabelsJson(labels);
  o["expires_unix"] = token.expires_unix;
  o["hub_fingerprint"] = c.ctx.hub_fingerprint;
  if (!c.ctx.public_link_url.empty()) o["link_url"] = c.ctx.public_link_url;
  return JsonReply(http::status::created, o);
}

Result<Reply> ListAgents(Call& c) {
  ASSIGN_OR_RETURN(std::vector<Agent> agents, c.ctx.catalog->ListAgents(c.tenant()));
  json::array items;
  for (size_t i = 0; i < agents.size() && i < kMaxListItems; ++i) {
    items.emplace_back(AgentJson(agents[i]));
  }
  json::object o;
  o["agents"] = std::move(items);
  o["truncated"] = agents.size() > kMaxListItems;
  return JsonReply(http::status::ok, o);
}

Result<Reply> GetAgent(Call& c) {
  RETURN_IF_ERROR(ValidateName("agent", c.args[1]));
  ASSIGN_OR_RETURN(Agent a, c.ctx.catalog->GetAgent(c.tenant(), c.args[1]));
  return JsonReply(http::status::ok, AgentJson(a));
}

Result<Reply> GetStatus(Call& c) {
  ASSIGN_OR_RETURN(TenantStatus status,
                   ComputeTenantStatus(*c.ctx.catalog, c.tenant(), NowUnix(c.ctx), kMaxListItems));
  return JsonReply(http::status::ok, TenantStatusJson(status));
}

Result<Reply> RevokeAgent(Call& c) {
  RETURN_IF_ERROR(ValidateName("agent", c.args[1]));
  RETURN_IF_ERROR(ParseJsonBody(c.req, {}).status());
  RETURN_IF_ERROR(c.ctx.catalog->RevokeAgent(c.tenant(), c.args[1]));
  ASSIGN_OR_RETURN(Agent a, c.ctx.catalog->GetAgent(c.tenant(), c.args[1]));
  log::Info("hub api: agent {}/{} revoked by token {}", a.tenant, a.name, c.who.id);
  return JsonReply(http::status::ok, AgentJson(a));
}

// ---- snapshots, chunks, keys ----

Result<Reply> ListSnapshots(Call& c) {
  SnapshotFilter filter;
  if (auto it = c.query.find("agent"); it != c.query.end() && !it->second.empty()) {
    RETURN_IF_ERROR(ValidateName("agent", it->second));
    filter.agent = it->second;
  }
  if (auto it = c.query.find("dataset"); it != c.query.end()) {
    if (it->second.size() > 255) return InvalidArgumentError("dataset: longer than 255 bytes");
    filter.dataset = it->second;
  }
  if (auto it = c.query.find("since"); it != c.query.end()) {
    ASSIGN_OR_RETURN(filter.since_unix_ns, ParseTime("since", it->second));
  }
  if (auto it = c.query.find("until"); it != c.query.end()) {
    ASSIGN_OR_RETURN(filter.until_unix_ns, ParseTime("until", it->second));
    if (filter.until_unix_ns <= 0) return InvalidArgumentError("until: must be after 1970");
  }
  ASSIGN_OR_RETURN(size_t limit, ParseLimit(c.query, kDefaultSnapshotLimit, kMaxSnapshotLimit));
  filter.limit = limit + 1;  // one more tells whether there are more
  ASSIGN_OR_RETURN(std::vector<SnapshotRecord> snaps,
                   c.ctx.catalog->ListSnapshots(c.tenant(), filter));
  json::array items;
  for (size_t i = 0; i < snaps.size() && i < limit; ++i) items.emplace_back(SnapshotJson(snaps[i]));
  json::object o;
  o["snapshots"] = std::move(items);
  o["truncated"] = snaps.size() > limit;
  return JsonReply(http::status::ok, o);
}

// The snapshot named in args[1], which must be in the catalog.
Result<snapshot::SnapshotId> CatalogedSnapshot(Call& c, SnapshotRecord* record = nullptr) {
  ASSIGN_OR_RETURN(snapshot::SnapshotId id, ParseHexId<32>("snapshot id", c.args[1]));
  ASSIGN_OR_RETURN(SnapshotRecord r, c.ctx.catalog->GetSnapshot(c.tenant(), HexEncode(id)));
  if (record != nullptr) *record = std::move(r);
  return id;
}

Result<snapshot::ParsedManifest> LoadManifest(Call& c, const snapshot::SnapshotId& id) {
  ASSIGN_OR_RETURN(snapshot::ChunkStore * store, c.Store());
  Result<snapshot::ParsedManifest> m = store->LoadManifest(id);
  if (!m.ok() && m.status().code() == StatusCode::kNotFound) {
    // Listed in the catalog but not in the store: the store lost it.
    return DataLossError(m.status().message());
  }
  return m;
}

Result<Reply> GetSnapshot(Call& c) {
  SnapshotRecord record;
  ASSIGN_OR_RETURN(snapshot::SnapshotId id, CatalogedSnapshot(c, &record));
  ASSIGN_OR_RETURN(snapshot::ParsedManifest m, LoadManifest(c, id));
  json::object o = SnapshotJson(record);
  o["manifest"] = ManifestJson(m);
  return JsonReply(http::status::ok, o);
}

Result<Reply> GetManifest(Call& c) {
  ASSIGN_OR_RETURN(snapshot::SnapshotId id, CatalogedSnapshot(c));
  ASSIGN_OR_RETURN(snapshot::ParsedManifest m, LoadManifest(c, id));
  return BytesReply(ToString(m.envelope));
}

Result<Reply> GetRefs(Call& c) {
  ASSIGN_OR_RETURN(snapshot::SnapshotId id, CatalogedSnapshot(c));
  ASSIGN_OR_RETURN(snapshot::ChunkStore * store, c.Store());
  Result<Bytes> refs = store->ReadRefs(id, kMaxRefsBytes);
  if (!refs.ok()) {
    if (refs.status().code() == StatusCode::kResourceExhausted) {
      return UnimplementedError("the refs object of snapshot " + HexEncode(id) +
                                " is larger than " + std::to_string(kMaxRefsBytes >> 20) +
                                " MiB: not served over HTTP");
    }
    if (refs.status().code() == StatusCode::kNotFound)
      return DataLossError(refs.status().message());
    return refs.status();
  }
  return BytesReply(ToString(*refs));
}

Result<Reply> GetChunk(Call& c) {
  ASSIGN_OR_RETURN(snapshot::ChunkId id, ParseHexId<32>("chunk id", c.args[1]));
  ASSIGN_OR_RETURN(snapshot::ChunkStore * store, c.Store());
  Bytes sealed;
  Status s = store->ReadSealedChunk(id, sealed);
  if (s.code() == StatusCode::kNotFound) {
    return NotFoundError("chunk " + HexEncode(id) + " not found in tenant " + c.tenant());
  }
  RETURN_IF_ERROR(s);
  if (c.ctx.metrics != nullptr) c.ctx.metrics->chunk_downloads++;
  return BytesReply(ToString(sealed));
}

Result<Reply> GetKey(Call& c) {
  ASSIGN_OR_RETURN(snapshot::KeyId id, ParseHexId<16>("key id", c.args[1]));
  ASSIGN_OR_RETURN(snapshot::ChunkStore * store, c.Store());
  Result<Bytes> wrapped = store->WrappedKey(id);
  if (wrapped.status().code() == StatusCode::kNotFound) {
    return NotFoundError("data key " + HexEncode(id) + " not found in tenant " + c.tenant());
  }
  RETURN_IF_ERROR(wrapped.status());
  return BytesReply(ToString(*wrapped));
}

// ---- policies ----

Result<Reply> ListPolicies(Call& c) {
  ASSIGN_OR_RETURN(std::vector<PolicyRecord> policies, c.ctx.catalog->ListPolicies(c.tenant()));
  json::array items;
  for (const PolicyRecord& p : policies) items.emplace_back(PolicyJson(p));
  json::object o;
  o["policies"] = std::move(items);
  ASSIGN_OR_RETURN(uint64_t generation, c.ctx.catalog->PolicyGeneration(c.tenant()));
  o["generation"] = generation;
  return JsonReply(http::status::ok, o);
}

Result<Reply> GetPolicy(Call& c) {
  RETURN_IF_ERROR(ValidateName("policy", c.args[1]));
  ASSIGN_OR_RETURN(PolicyRecord p, c.ctx.catalog->GetPolicy(c.tenant(), c.args[1]));
  return JsonReply(http::status::ok, PolicyJson(p));
}

void NotifyPolicyChange(Call& c) {
  if (!c.ctx.on_policy_change) return;
  // The change is stored: a failing listener must not turn it into an error.
  try {
    c.ctx.on_policy_change(c.tenant());
  } catch (const std::exception& e) {
    log::Error("hub api: policy change listener for tenant {}: {}", c.tenant(), e.what());
  } catch (...) {
    log::Error("hub api: policy change listener for tenant {} threw", c.tenant());
  }
}

Result<Reply> PutPolicy(Call& c) {
  const std::string& name = c.args[1];
  RETURN_IF_ERROR(ValidateName("policy", name));
  std::string_view type;
  if (auto it = c.req.find(http::field::content_type); it != c.req.end()) type = it->value();
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  std::string lower(type);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!lower.empty() && lower != "application/json" && lower != "application/yaml" &&
      lower != "application/x-yaml" && lower != "text/yaml" && lower != "text/x-yaml") {
    return ErrorReply(c.ctx,
                      InvalidArgumentError("Content-Type " + QuoteForMessage(type) +
                                           ": send application/yaml or application/json"),
                      http::status::unsupported_media_type);
  }
  ASSIGN_OR_RETURN(mirror::MirrorPolicy policy, mirror::ParseMirrorPolicy(c.req.body()));
  if (policy.name != name) {
    return InvalidArgumentError("metadata.name: must equal the policy name in the path (" + name +
                                "), got " + QuoteForMessage(policy.name));
  }
  if (policy.tenant.empty()) {
    policy.tenant = c.tenant();
  } else if (policy.tenant != c.tenant()) {
    return InvalidArgumentError("metadata.tenant: must be empty or equal the tenant in the path (" +
                                c.tenant() + "), got " + QuoteForMessage(policy.tenant));
  }
  PutOutcome outcome = PutOutcome::kUnchanged;
  ASSIGN_OR_RETURN(
      PolicyRecord record,
      c.ctx.catalog->PutPolicy(c.tenant(), name, mirror::MirrorPolicyToJson(policy), &outcome));
  if (outcome != PutOutcome::kUnchanged) NotifyPolicyChange(c);
  return JsonReply(outcome == PutOutcome::kCreated ? http::status::created : http::status::ok,
                   PolicyJson(record));
}

Result<Reply> DeletePolicy(Call& c) {
  RETURN_IF_ERROR(ValidateName("policy", c.args[1]));
  RETURN_IF_ERROR(c.ctx.catalog->DeletePolicy(c.tenant(), c.args[1]));
  NotifyPolicyChange(c);
  Reply r;
  r.status = http::status::no_content;
  r.content_type.clear();
  return r;
}

// ---- API tokens ----

Result<Reply> TokenList(Call& c, const std::string& tenant) {
  ASSIGN_OR_RETURN(std::vector<ApiToken> tokens, c.ctx.catalog->ListApiTokens(tenant));
  json::array items;
  for (size_t i = 0; i < tokens.size() && i < kMaxListItems; ++i) {
    items.emplace_back(TokenJson(tokens[i]));
  }
  json::object o;
  o["tokens"] = std::move(items);
  o["truncated"] = tokens.size() > kMaxListItems;
  return JsonReply(http::status::ok, o);
}

Result<Reply> ListTenantTokens(Call& c) { return TokenList(c, c.tenant()); }
Result<Reply> ListAllTokens(Call& c) { return TokenList(c, ""); }

Result<Reply> CreateToken(Call& c) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonBody(c.req, {"role", "description"}));
  ASSIGN_OR_RETURN(std::string role_name, OptString(body, "role"));
  if (role_name.empty()) return InvalidArgumentError("role: required (reader, operator or admin)");
  ASSIGN_OR_RETURN(Role role, ParseRole(role_name));
  ASSIGN_OR_RETURN(std::string description, OptString(body, "description"));
  ApiToken created;
  ASSIGN_OR_RETURN(std::string clear,
                   c.ctx.catalog->CreateApiToken(c.tenant(), role, description, &created));
  log::Info("hub api: token {} ({}, tenant {}) created by token {}", created.id, role_name,
            c.tenant(), c.who.id);
  json::object o = TokenJson(created);
  o["token"] = clear;
  return JsonReply(http::status::created, o);
}

// A token the caller may manage: its own tenant's (admin), or any (an
// admin of every tenant). Others read as absent, so that ids of other
// tenants' tokens cannot be probed.
Result<ApiToken> ManagedToken(Call& c) {
  RETURN_IF_ERROR(ValidateTokenId(c.args[0]));
  Result<ApiToken> t = c.ctx.catalog->GetApiToken(c.args[0]);
  if (t.ok() && !c.who.tenant.empty() && t->tenant != c.who.tenant) {
    return NotFoundError("API token " + c.args[0] + " not found");
  }
  if (!t.ok() && t.status().code() == StatusCode::kNotFound) {
    return NotFoundError("API token " + c.args[0] + " not found");
  }
  return t;
}

Result<Reply> GetToken(Call& c) {
  ASSIGN_OR_RETURN(ApiToken t, ManagedToken(c));
  return JsonReply(http::status::ok, TokenJson(t));
}

Result<Reply> RevokeToken(Call& c) {
  ASSIGN_OR_RETURN(ApiToken t, ManagedToken(c));
  RETURN_IF_ERROR(c.ctx.catalog->RevokeApiToken(t.id));
  ASSIGN_OR_RETURN(ApiToken after, c.ctx.catalog->GetApiToken(t.id));
  log::Info("hub api: token {} revoked by token {}", t.id, c.who.id);
  return JsonReply(http::status::ok, TokenJson(after));
}

// ---- sessions ----

Result<Reply> ListSessions(Call& c) {
  ASSIGN_OR_RETURN(size_t limit, ParseLimit(c.query, kDefaultSessionLimit, kMaxSessionLimit));
  ASSIGN_OR_RETURN(std::vector<SessionRecord> sessions,
                   c.ctx.catalog->ListSessions(c.tenant(), limit));
  json::array items;
  for (const SessionRecord& s : sessions) items.emplace_back(SessionJson(s));
  json::object o;
  o["sessions"] = std::move(items);
  return JsonReply(http::status::ok, o);
}

// ---- streams ----

constexpr size_t kDefaultStreamReadBytes = 4u << 20;
constexpr size_t kMaxStreamReadBytes = 16u << 20;

// A query parameter that must be a decimal integer in [0, max]; `def` when
// it is absent.
Result<uint64_t> ParseQueryU64(const std::map<std::string, std::string>& query,
                               const std::string& name, uint64_t def, uint64_t max) {
  auto it = query.find(name);
  if (it == query.end()) return def;
  const std::string& v = it->second;
  const auto bad = [&] {
    return InvalidArgumentError(name + ": must be an integer from 0 to " + std::to_string(max) +
                                ", got " + QuoteForMessage(v));
  };
  if (v.empty() || v.size() > 20 ||
      !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return bad();
  }
  uint64_t n = 0;
  for (char c : v) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (n > (max - digit) / 10) return bad();
    n = n * 10 + digit;
  }
  return n;
}

Result<Reply> ListStreams(Call& c) {
  if (c.ctx.streams == nullptr) return UnavailableError("no stream storage configured");
  const auto agent = c.query.find("agent");
  if (agent != c.query.end()) RETURN_IF_ERROR(ValidateName("agent", agent->second));
  ASSIGN_OR_RETURN(std::vector<HubStreams::Info> streams,
                   c.ctx.streams->List(c.tenant(), agent == c.query.end() ? "" : agent->second));
  json::array items;
  for (const HubStreams::Info& i : streams) {
    items.emplace_back(json::object{{"agent", i.agent},
                                    {"stream", i.stream},
                                    {"start_offset", i.position.start},
                                    {"next_offset", i.position.next},
                                    {"batches", i.batches},
                                    {"bytes", i.bytes}});
  }
  json::object o;
  o["streams"] = std::move(items);
  return JsonReply(http::status::ok, o);
}

// The sealed batches from the one holding `from` on: each as a u32 LE
// length and the batch (docs/api.md, "Stream batches").
Result<Reply> ReadStream(Call& c) {
  if (c.ctx.streams == nullptr) return UnavailableError("no stream storage configured");
  RETURN_IF_ERROR(ValidateName("agent", c.args[1]));
  RETURN_IF_ERROR(ValidateName("stream", c.args[2]));
  ASSIGN_OR_RETURN(uint64_t from, ParseQueryU64(c.query, "from", 0, INT64_MAX));
  ASSIGN_OR_RETURN(uint64_t max_bytes, ParseQueryU64(c.query, "max_bytes", kDefaultStreamReadBytes,
                                                     kMaxStreamReadBytes));
  if (max_bytes == 0) return InvalidArgumentError("max_bytes: must be at least 1");
  ASSIGN_OR_RETURN(HubStreams::ReadResult r,
                   c.ctx.streams->Read(c.tenant(), c.args[1], c.args[2], from, max_bytes));
  Reply reply;
  reply.content_type = "application/octet-stream";
  size_t total = 0;
  for (const Bytes& b : r.batches) total += 4 + b.size();
  reply.body.reserve(total);
  for (const Bytes& b : r.batches) {
    char len[4];
    StoreU32(reinterpret_cast<uint8_t*>(len), static_cast<uint32_t>(b.size()));
    reply.body.append(len, 4);
    reply.body.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  reply.headers.emplace_back("X-Ferry-Stream-Start", std::to_string(r.position.start));
  reply.headers.emplace_back("X-Ferry-Stream-Next", std::to_string(r.position.next));
  reply.headers.emplace_back("Cache-Control", "no-store");
  return reply;
}

// ---------------------------------------------------------------------------

using V = http::verb;
const Route kRoutes[] = {
    {V::get, "/healthz", Scope::kPublic, Role::kReader, {}, Healthz},
    {V::get, "/readyz", Scope::kPublic, Role::kReader, {}, Readyz},
    {V::get, "/metrics", Scope::kPublic, Role::kReader, {}, MetricsText},

    {V::get, "/v1/tenants", Scope::kAnyToken, Role::kReader, {}, ListTenants},
    {V::post, "/v1/tenants", Scope::kAllTenants, Role::kAdmin, {}, CreateTenant},
    {V::get, "/v1/tenants/{}", Scope::kTenant, Role::kReader, {}, GetTenant},

    {V::post,
     "/v1/tenants/{}/enrollment-tokens",
     Scope::kTenant,
     Role::kOperator,
     {},
     CreateEnrollmentToken},
    {V::get, "/v1/tenants/{}/agents", Scope::kTenant, Role::kReader, {}, ListAgents},
    {V::get, "/v1/tenants/{}/agents/{}", Scope::kTenant, Role::kReader, {}, GetAgent},
    {V::post, "/v1/tenants/{}/agents/{}/revoke", Scope::kTenant, Role::kOperator, {}, RevokeAgent},
    {V::get, "/v1/tenants/{}/status", Scope::kTenant, Role::kReader, {}, GetStatus},

    {V::get,
     "/v1/tenants/{}/snapshots",
     Scope::kTenant,
     Role::kReader,
     {"agent", "dataset", "since", "until", "limit"},
     ListSnapshots},
    {V::get, "/v1/tenants/{}/snapshots/{}", Scope::kTenant, Role::kReader, {}, GetSnapshot},
    {V::get,
     "/v1/tenants/{}/snapshots/{}/manifest",
     Scope::kTenant,
     Role::kReader,
     {},
     GetManifest},
    {V::get, "/v1/tenants/{}/snapshots/{}/refs", Scope::kTenant, Role::kReader, {}, GetRefs},
    {V::get, "/v1/tenants/{}/chunks/{}", Scope::kTenant, Role::kReader, {}, GetChunk},
    {V::get, "/v1/tenants/{}/keys/{}", Scope::kTenant, Role::kReader, {}, GetKey},

    {V::get, "/v1/tenants/{}/policies", Scope::kTenant, Role::kReader, {}, ListPolicies},
    {V::get, "/v1/tenants/{}/policies/{}", Scope::kTenant, Role::kReader, {}, GetPolicy},
    {V::put, "/v1/tenants/{}/policies/{}", Scope::kTenant, Role::kOperator, {}, PutPolicy},
    {V::delete_, "/v1/tenants/{}/policies/{}", Scope::kTenant, Role::kOperator, {}, DeletePolicy},

    {V::get, "/v1/tenants/{}/tokens", Scope::kTenant, Role::kAdmin, {}, ListTenantTokens},
    {V::post, "/v1/tenants/{}/tokens", Scope::kTenant, Role::kAdmin, {}, CreateToken},
    {V::get, "/v1/tokens", Scope::kAllTenants, Role::kAdmin, {}, ListAllTokens},
    {V::get, "/v1/tokens/{}", Scope::kAnyToken, Role::kAdmin, {}, GetToken},
    {V::delete_, "/v1/tokens/{}", Scope::kAnyToken, Role::kAdmin, {}, RevokeToken},

    {V::get, "/v1/tenants/{}/sessions", Scope::kTenant, Role::kReader, {"limit"}, ListSessions},

    {V::get, "/v1/tenants/{}/streams", Scope::kTenant, Role::kReader, {"agent"}, ListStreams},
    {V::get,
     "/v1/streams/{}/{}/{}",
     Scope::kTenant,
     Role::kReader,
     {"from", "max_bytes"},
     ReadStream},
};

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  path.remove_prefix(1);  // the leading '/'
  while (true) {
    const size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos || out.size() > kMaxSegments) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool Match(std::string_view pattern, const std::vector<std::string_view>& segments,
           std::vector<std::string>* args) {
  std::vector<std::string_view> want = SplitPath(pattern);
  if (want.size() != segments.size()) return false;
  std::vector<std::string> captured;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == "{}") {
      if (segments[i].empty()) return false;
      captured.emplace_back(segments[i]);
    } else if (want[i] != segments[i]) {
      return false;
    }
  }
  if (args != nullptr) *args = std::move(captured);
  return true;
}

Result<ApiToken> Authenticate(RestContext& ctx, const HttpRequest& req) {
  auto it = req.find(http::field::authorization);
  if (it == req.end()) {
    return UnauthenticatedError("missing bearer token: send \"Authorization: Bearer fry_...\"");
  }
  std::string_view value = it->value();
  constexpr std::string_view kScheme = "bearer ";
  bool scheme_ok = value.size() > kScheme.size();
  for (size_t i = 0; scheme_ok && i < kScheme.size(); ++i) {
    scheme_ok = std::tolower(static_cast<unsigned char>(value[i])) == kScheme[i];
  }
  if (!scheme_ok) {
    return UnauthenticatedError("the Authorization header must use the Bearer scheme");
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  Result<ApiToken> who = ctx.catalog->AuthenticateApiToken(value);
  if (who.status().code() == StatusCode::kPermissionDenied) {
    return UnauthenticatedError("invalid or revoked token");
  }
  return who;
}

Status Authorize(const Route& route, const ApiToken& who, const std::vector<std::string>& args) {
  if (route.scope == Scope::kAllTenants && !who.tenant.empty()) {
    return PermissionDeniedError("this needs a token of every tenant; this token is of tenant " +
                                 who.tenant);
  }
  if (route.scope == Scope::kTenant) {
    RETURN_IF_ERROR(ValidateName("tenant", args[0]));
    // Answered the same whether or not the other tenant exists.
    if (!who.tenant.empty() && who.tenant != args[0]) {
      return PermissionDeniedError("this token is of tenant " + who.tenant +
                                   " and cannot act on another tenant");
    }
  }
  if (static_cast<int>(who.role) < static_cast<int>(route.role)) {
    return PermissionDeniedError(std::string("this needs the ") + RoleName(route.role) +
                                 " role; this token is a " + RoleName(who.role));
  }
  return OkStatus();
}

// Refused (429, Retry-After) while the peer's address is throttled for
// failed tokens; nothing of the request's token is looked at.
std::optional<Reply> Throttled(RestContext& ctx, const std::string& peer) {
  if (ctx.auth_throttle == nullptr) return std::nullopt;
  std::chrono::seconds retry_after{0};
  Status admitted = ctx.auth_throttle->Admit(peer, &retry_after);
  if (admitted.ok()) return std::nullopt;
  if (ctx.metrics != nullptr) ctx.metrics->auth_throttled_http.fetch_add(1);
  Reply r = ErrorReply(ctx, admitted, http::status::too_many_requests);
  r.headers.emplace_back("Retry-After", std::to_string(retry_after.count()));
  return r;
}

// Counts a refused token that was presented (a request without any
// Authorization header guesses nothing).
void CountFailedToken(RestContext& ctx, const HttpRequest& req, const std::string& peer) {
  if (req.find(http::field::authorization) == req.end()) return;
  if (ctx.metrics != nullptr) ctx.metrics->auth_failures_http.fetch_add(1);
  if (ctx.auth_throttle != nullptr && ctx.auth_throttle->RecordFailure(peer)) {
    const AuthThrottleOptions& o = ctx.auth_throttle->options();
    log::Warn("hub api: {} failed API tokens from {} within {} ms: its requests get 429 for {} ms",
              o.max_failures, AuthThrottle::AddressKey(peer), o.window.count(), o.window.count());
  }
}

Reply Dispatch(RestContext& ctx, const HttpRequest& req, const std::string& peer) {
  const std::string_view target = req.target();
  if (target.size() > kMaxTargetBytes) {
    return ErrorReply(ctx,
                      InvalidArgumentError("request target longer than " +
                                           std::to_string(kMaxTargetBytes) + " bytes"),
                      http::status::uri_too_long);
  }
  const size_t qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  const std::string_view query =
      qmark == std::string_view::npos ? std::string_view() : target.substr(qmark + 1);
  const Status not_found = NotFoundError("no such endpoint: " + QuoteForMessage(path));
  if (path.empty() || path[0] != '/') return ErrorReply(ctx, not_found);
  const std::vector<std::string_view> segments = SplitPath(path);
  if (segments.size() > kMaxSegments) return ErrorReply(ctx, not_found);

  if (req.body().size() > kMaxBodyBytes) {
    return ErrorReply(ctx,
                      ResourceExhaustedError("request body larger than " +
                                             std::to_string(kMaxBodyBytes) + " bytes"),
                      http::status::payload_too_large);
  }

  const Route* route = nullptr;
  std::vector<std::string> args;
  std::string allow;
  for (const Route& r : kRoutes) {
    if (!Match(r.pattern, segments, nullptr)) continue;
    if (r.method == req.method()) {
      route = &r;
      Match(r.pattern, segments, &args);
      break;
    }
    const std::string_view name = http::to_string(r.method);
    if (allow.find(name) == std::string::npos) {
      if (!allow.empty()) allow += ", ";
      allow += name;
    }
  }
  if (route == nullptr) {
    if (allow.empty()) return ErrorReply(ctx, not_found);
    Reply r = ErrorReply(ctx,
                         InvalidArgumentError("method " + QuoteForMessage(req.method_string()) +
                                              " not allowed here; allowed: " + allow),
                         http::status::method_not_allowed);
    r.headers.emplace_back("Allow", allow);
    return r;
  }

  Call call{ctx, req, {}, std::move(args), {}};
  Result<std::map<std::string, std::string>> q = ParseQuery(query);
  if (!q.ok()) return ErrorReply(ctx, q.status());
  for (const auto& [key, value] : *q) {
    if (std::find(route->query.begin(), route->query.end(), key) == route->query.end()) {
      return ErrorReply(ctx,
                        InvalidArgumentError("unknown query parameter " + QuoteForMessage(key)));
    }
  }
  call.query = std::move(*q);

  if (route->scope != Scope::kPublic) {
    if (ctx.catalog == nullptr) return ErrorReply(ctx, UnavailableError("no catalog configured"));
    if (std::optional<Reply> throttled = Throttled(ctx, peer)) return std::move(*throttled);
    Result<ApiToken> who = Authenticate(ctx, req);
    if (!who.ok()) {
      if (who.status().code() == StatusCode::kUnauthenticated) CountFailedToken(ctx, req, peer);
      return ErrorReply(ctx, who.status());
    }
    call.who = std::move(*who);
    Status allowed = Authorize(*route, call.who, call.args);
    if (!allowed.ok()) return ErrorReply(ctx, allowed);
    if (route->scope == Scope::kTenant) {
      Status exists = ctx.catalog->GetTenant(call.tenant()).status();
      if (!exists.ok()) return ErrorReply(ctx, exists);
    }
  }

  Result<Reply> reply = route->handler(call);
  if (!reply.ok()) return ErrorReply(ctx, reply.status());
  return std::move(*reply);
}

HttpResponse ToHttp(const HttpRequest& req, Reply&& reply) {
  HttpResponse res{reply.status, req.version()};
  res.set(http::field::server, "ferry-hub");
  if (!reply.content_type.empty()) res.set(http::field::content_type, reply.content_type);
  for (const auto& [name, value] : reply.headers) res.set(name, value);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(reply.body);
  res.prepare_payload();
  return res;
}

}  // namespace

RestApi::RestApi(RestContext context) : ctx_(std::move(context)) {}

mirror::transport::HttpResponse RestApi::Handle(const mirror::transport::HttpRequest& request,
                                                const std::string& peer_address) {
  if (ctx_.metrics != nullptr) ctx_.metrics->http_requests++;
  // No exception leaves: third-party code (Boost.JSON, the stores, the
  // policy parser) may throw; the request then fails alone with a 500.
  try {
    return ToHttp(request, Dispatch(ctx_, request, peer_address));
  } catch (const std::exception& e) {
    log::Error("hub api: {} {}: exception: {}", std::string(request.method_string()),
               std::string(request.target().substr(0, 256)), e.what());
  } catch (...) {
    log::Error("hub api: unknown exception");
  }
  try {
    return ToHttp(request, ErrorReply(ctx_, InternalError("exception")));
  } catch (...) {
    HttpResponse res;
    res.result(http::status::internal_server_error);
    res.keep_alive(false);
    return res;
  }
}

}  // namespace ferry::hub
