#include "ctl/hub_commands.h"

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <iostream>

#include "core/env.h"
#include "ctl/format.h"
#include "mirror/identity.h"
#include "mirror/policy/mirror_policy.h"

namespace ferry::ctl {

namespace json = boost::json;

namespace {

constexpr uint64_t kMaxPolicyFileBytes = 1 << 20;

const json::value* Get(const json::value& v, std::string_view key) {
  if (!v.is_object()) return nullptr;
  return v.get_object().if_contains(key);
}

std::string Str(const json::value& v, std::string_view key) { return Cell(Get(v, key)); }

const json::array& ArrayAt(const json::value& v, std::string_view key) {
  static const json::array kEmpty;
  const json::value* a = Get(v, key);
  return a && a->is_array() ? a->get_array() : kEmpty;
}

int64_t IntAt(const json::value& v, std::string_view key, int64_t fallback = 0) {
  const json::value* x = Get(v, key);
  if (x == nullptr) return fallback;
  if (x->is_int64()) return x->get_int64();
  if (x->is_uint64()) return static_cast<int64_t>(x->get_uint64());
  return fallback;
}

std::string Labels(const json::value* labels) {
  if (labels == nullptr || !labels->is_object()) return "";
  std::string out;
  for (const auto& kv : labels->get_object()) {
    out += (out.empty() ? "" : ",") + std::string(kv.key()) + "=" + Cell(&kv.value());
  }
  return out;
}

std::string UnixTime(int64_t secs) { return secs <= 0 ? "-" : IsoTime(secs * 1'000'000'000); }

// Path segments are never percent-decoded by the hub: names must already be
// valid there, so check them here for a clear message instead of a 400.
Status CheckName(const std::string& what, const std::string& name) {
  if (name.empty() || name.size() > 63 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos ||
      name.front() == '-') {
    return InvalidArgumentError(what + " '" + name +
                                "': use 1-63 characters of a-z, 0-9 and '-', starting with a "
                                "letter or digit");
  }
  return OkStatus();
}

Result<std::map<std::string, std::string>> ParseLabels(const std::vector<std::string>& labels) {
  std::map<std::string, std::string> out;
  for (const std::string& l : labels) {
    const size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgumentError("--label must be key=value, got '" + l + "'");
    }
    out[l.substr(0, eq)] = l.substr(eq + 1);
  }
  return out;
}

// Query-string escaping of a value (RFC 3986 unreserved kept).
std::string QueryEscape(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// When the context pins the hub's key, the hub must present that key.
Status CheckPinnedFingerprint(const HubCall& call, const std::string& presented) {
  if (call.hub.fingerprint.empty() || presented.empty()) return OkStatus();
  Result<mirror::FingerprintDigest> pinned = mirror::ParseFingerprint(call.hub.fingerprint);
  Result<mirror::FingerprintDigest> got = mirror::ParseFingerprint(presented);
  if (pinned.ok() && got.ok() && *pinned == *got) return OkStatus();
  return UnauthenticatedError(
      "pinned key mismatch: " +
      (call.hub.context.empty() ? std::string("this hub") : "hub '" + call.hub.context + "'") +
      " is pinned to " + call.hub.fingerprint + " but " + call.client->url().text + " presents " +
      presented +
      ". If the hub was re-initialised on purpose, check the new fingerprint out of band and "
      "save it with `ferryctl config add-hub ... --fingerprint`; otherwise this is not your hub");
}

std::vector<std::string> SnapshotRow(const json::value& s) {
  std::string datasets;
  for (const json::value& d : ArrayAt(s, "datasets")) {
    datasets += (datasets.empty() ? "" : ",") + Cell(&d);
  }
  const json::value* labels = Get(s, "labels");
  std::string policy = "-";
  if (labels && labels->is_object()) {
    if (const json::value* p = labels->get_object().if_contains("ferry.policy")) policy = Cell(p);
  }
  return {Str(s, "id").substr(0, 12),
          Str(s, "agent"),
          datasets,
          ShortTime(Get(s, "created")),
          HumanBytes(static_cast<uint64_t>(IntAt(s, "logical_bytes"))),
          HumanBytes(static_cast<uint64_t>(IntAt(s, "sealed_bytes"))),
          Count(static_cast<uint64_t>(IntAt(s, "chunks"))),
          policy};
}

// One "key  value" line per field, for show commands.
void PrintFields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [k, v] : fields) width = std::max(width, k.size());
  for (const auto& [k, v] : fields) {
    std::cout << k << std::string(width - k.size() + 2, ' ') << (v.empty() ? "-" : v) << "\n";
  }
}

std::vector<std::pair<std::string, std::string>> AgentFields(const json::value& a) {
  const json::value* revoked = Get(a, "revoked");
  const bool is_revoked = revoked && revoked->is_bool() && revoked->get_bool();
  std::vector<std::pair<std::string, std::string>> f = {
      {"name", Str(a, "name")},
      {"tenant", Str(a, "tenant")},
      {"state", is_revoked ? "revoked " + UnixTime(IntAt(a, "revoked_unix")) : "active"},
      {"labels", Labels(Get(a, "labels"))},
      {"link key", Str(a, "link_key_fingerprint")},
      {"enrolled", UnixTime(IntAt(a, "enrolled_unix"))},
      {"last seen", UnixTime(IntAt(a, "last_seen_unix"))},
  };
  if (const json::value* p = Get(a, "pending_bytes"); p && !p->is_null()) {
    f.push_back({"pending", HumanBytes(static_cast<uint64_t>(IntAt(a, "pending_bytes"))) + " in " +
                                Count(static_cast<uint64_t>(IntAt(a, "pending_snapshots"))) +
                                " snapshots"});
  }
  if (const json::value* e = Get(a, "last_error"); e && !e->is_null()) {
    f.push_back({"last error", Cell(e) + " (" + Str(a, "last_error_at") + ")"});
  }
  return f;
}

}  // namespace

std::string ShortTime(const json::value* rfc3339) {
  if (rfc3339 == nullptr || !rfc3339->is_string()) return "-";
  std::string s(rfc3339->get_string());
  // 2024-05-01T12:00:00.123456789Z -> 2024-05-01T12:00:00Z
  if (s.size() > 20 && s[19] == '.') s = s.substr(0, 19) + "Z";
  return s;
}

std::string HumanAge(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  const int64_t d = seconds / 86400, h = seconds / 3600 % 24, m = seconds / 60 % 60,
                s = seconds % 60;
  if (d > 0) return std::to_string(d) + "d" + std::to_string(h) + "h";
  if (h > 0) return std::to_string(h) + "h" + std::to_string(m) + "m";
  if (m > 0) return std::to_string(m) + "m" + std::to_string(s) + "s";
  return std::to_string(s) + "s";
}

Result<std::string> HubCall::Tenant() const {
  if (hub.tenant.empty()) {
    return InvalidArgumentError(
        "no tenant given: pass --tenant T (or set FERRY_TENANT), or save a default with "
        "`ferryctl config add-hub NAME --url URL --tenant T`");
  }
  RETURN_IF_ERROR(CheckName("tenant", hub.tenant));
  return hub.tenant;
}

Result<std::string> HubCall::TenantPath(const std::string& rest) const {
  ASSIGN_OR_RETURN(std::string t, Tenant());
  return "/v1/tenants/" + t + rest;
}

Result<HubCall> OpenHub(const HubArgs& args) {
  HubCall call;
  ASSIGN_OR_RETURN(call.format, ParseOutputFormat(args.output));
  const std::string path = args.config_path.empty() ? CtlConfig::DefaultPath() : args.config_path;
  ASSIGN_OR_RETURN(CtlConfig config, CtlConfig::Load(path));
  ASSIGN_OR_RETURN(call.hub, ResolveHub(config, args.selection));
  ASSIGN_OR_RETURN(HubUrl url, ParseHubUrl(call.hub.url));
  if (call.hub.token.empty()) {
    return UnauthenticatedError("no API token for " + url.text +
                                ": pass --token (or set FERRY_TOKEN), or save it with `ferryctl "
                                "config add-hub NAME --url URL --token TOKEN`");
  }
  call.client = std::make_unique<HubClient>(std::move(url), call.hub.token);
  return call;
}

// ---------------------------------------------------------------- config

int ConfigAddHub(const ConfigAddHubArgs& args) {
  const std::string path = args.config_path.empty() ? CtlConfig::DefaultPath() : args.config_path;
  Result<CtlConfig> config = CtlConfig::Load(path);
  if (!config.ok()) return Fail("config add-hub", config.status());
  if (Status s = CheckContextName(args.name); !s.ok()) return Fail("config add-hub", s);
  Result<HubUrl> url = ParseHubUrl(args.url);
  if (!url.ok()) return Fail("config add-hub", url.status());
  if (!args.fingerprint.empty()) {
    if (Result<mirror::FingerprintDigest> fp = mirror::ParseFingerprint(args.fingerprint);
        !fp.ok()) {
      return Fail("config add-hub",
                  InvalidArgumentError("--fingerprint: " + fp.status().message()));
    }
  }
  if (!args.tenant.empty()) {
    if (Status s = CheckName("--tenant", args.tenant); !s.ok()) return Fail("config add-hub", s);
  }
  // Saving a name again changes only what is given (a token rotation keeps
  // the pinned fingerprint and the tenant).
  HubContext c{args.name, url->text, args.token, args.fingerprint, args.tenant};
  if (const HubContext* old = config->Find(args.name)) {
    if (c.token.empty()) c.token = old->token;
    if (c.fingerprint.empty()) c.fingerprint = old->fingerprint;
    if (c.tenant.empty()) c.tenant = old->tenant;
  }
  if (!args.no_check && !c.token.empty()) {
    // Saving a hub that does not answer or refuses the token helps nobody.
    HubClient client(*url, c.token, std::chrono::seconds(10));
    Result<json::value> tenants = client.Json("GET", "/v1/tenants");
    if (!tenants.ok()) {
      return Fail("config add-hub " + args.name + " (not saved; --no-check saves anyway)",
                  tenants.status());
    }
  }
  const bool replaced = config->Find(args.name) != nullptr;
  config->Upsert(std::move(c));
  const bool first = config->current_hub.empty();
  if (first) config->current_hub = args.name;
  if (Status s = config->Save(); !s.ok()) return Fail("config add-hub: writing " + path, s);
  std::cerr << (replaced ? "updated" : "added") << " hub " << args.name << " (" << url->text
            << ") in " << path << (first ? "; it is the current hub" : "") << "\n";
  return kExitOk;
}

int ConfigUse(const std::string& config_path, const std::string& name) {
  const std::string path = config_path.empty() ? CtlConfig::DefaultPath() : config_path;
  Result<CtlConfig> config = CtlConfig::Load(path);
  if (!config.ok()) return Fail("config use", config.status());
  if (config->Find(name) == nullptr) {
    std::string known;
    for (const HubContext& c : config->hubs) known += (known.empty() ? "" : ", ") + c.name;
    return Fail("config use",
                NotFoundError("no hub named '" + name + "' in " + path +
                              (known.empty() ? " (add one with ferryctl config add-hub)"
                                             : " (known: " + known + ")")));
  }
  config->current_hub = name;
  if (Status s = config->Save(); !s.ok()) return Fail("config use: writing " + path, s);
  std::cerr << "current hub: " << name << "\n";
  return kExitOk;
}

int ConfigList(const std::string& config_path, const std::string& output) {
  const std::string path = config_path.empty() ? CtlConfig::DefaultPath() : config_path;
  Result<OutputFormat> format = ParseOutputFormat(output);
  if (!format.ok()) return Fail("config list", format.status());
  Result<CtlConfig> config = CtlConfig::Load(path);
  if (!config.ok()) return Fail("config list", config.status());
  if (*format != OutputFormat::kTable) {
    json::array hubs;
    for (const HubContext& c : config->hubs) {
      // The token stays in the file: it is a secret, and scripts that need
      // it can read the file.
      hubs.push_back(json::object{{"name", c.name},
                                  {"url", c.url},
                                  {"has_token", !c.token.empty()},
                                  {"fingerprint", c.fingerprint},
                                  {"tenant", c.tenant},
                                  {"current", c.name == config->current_hub}});
    }
    PrintValue(json::object{{"path", path}, {"hubs", std::move(hubs)}}, *format);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const HubContext& c : config->hubs) {
    rows.push_back({c.name == config->current_hub ? "*" : "", c.name, c.url, c.tenant,
                    c.fingerprint, c.token.empty() ? "no" : "yes"});
  }
  PrintTable({"current", "name", "url", "tenant", "fingerprint", "token"}, rows);
  return kExitOk;
}

// ---------------------------------------------------------------- tenant

int TenantCreate(const HubArgs& args, const std::string& name) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("tenant create", call.status());
  if (Status s = CheckName("tenant", name); !s.ok()) return Fail("tenant create", s);
  Result<json::value> r =
      call->client->Json("POST", "/v1/tenants", json::serialize(json::object{{"name", name}}));
  if (!r.ok()) return Fail("tenant create " + name, r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
  } else {
    std::cout << "tenant/" << name << " created\n";
  }
  return kExitOk;
}

int TenantList(const HubArgs& args) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("tenant list", call.status());
  Result<json::value> r = call->client->Json("GET", "/v1/tenants");
  if (!r.ok()) return Fail("tenant list", r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& t : ArrayAt(*r, "tenants")) {
    rows.push_back({Str(t, "name"), UnixTime(IntAt(t, "created_unix"))});
  }
  PrintTable({"name", "created"}, rows);
  return kExitOk;
}

// ---------------------------------------------------------------- agent

int AgentEnrollToken(const HubArgs& args, const EnrollTokenArgs& t) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("agent enroll-token", call.status());
  json::object body;
  Result<int64_t> ttl = mirror::ParseDuration(t.ttl);
  if (!ttl.ok())
    return Fail("agent enroll-token", InvalidArgumentError("--ttl: " + ttl.status().message()));
  body["ttl_seconds"] = *ttl;
  if (!t.name.empty()) {
    if (Status s = CheckName("--name", t.name); !s.ok()) return Fail("agent enroll-token", s);
    body["agent_name"] = t.name;
  }
  Result<std::map<std::string, std::string>> labels = ParseLabels(t.labels);
  if (!labels.ok()) return Fail("agent enroll-token", labels.status());
  if (!labels->empty()) {
    json::object l;
    for (const auto& [k, v] : *labels) l[k] = v;
    body["labels"] = std::move(l);
  }
  Result<std::string> path = call->TenantPath("/enrollment-tokens");
  if (!path.ok()) return Fail("agent enroll-token", path.status());
  Result<json::value> r = call->client->Json("POST", *path, json::serialize(body));
  if (!r.ok()) return Fail("agent enroll-token", r.status());
  const std::string fingerprint = Str(*r, "hub_fingerprint");
  if (Status s = CheckPinnedFingerprint(*call, fingerprint); !s.ok()) {
    return Fail("agent enroll-token", s);
  }
  std::string link_url = Str(*r, "link_url");
  if (link_url == "-") {
    const HubUrl& u = call->client->url();
    link_url = "ws" + u.text.substr(4);  // http://h:p/base -> ws://h:p/base
  }
  const std::string command = "ferry-agent enroll --config " + t.agent_config + " --hub " +
                              link_url + " --hub-key " + fingerprint + " --token " +
                              Str(*r, "token");
  if (call->format != OutputFormat::kTable) {
    json::value out = *r;
    out.as_object()["command"] = command;
    PrintValue(out, call->format);
    return kExitOk;
  }
  std::cerr << "one-time join token for tenant " << Str(*r, "tenant")
            << (t.name.empty() ? "" : ", agent " + t.name) << ", valid until "
            << UnixTime(IntAt(*r, "expires_unix")) << ". On the device, run:\n";
  std::cout << command << "\n";
  return kExitOk;
}

int AgentList(const HubArgs& args) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("agent list", call.status());
  Result<std::string> path = call->TenantPath("/agents");
  if (!path.ok()) return Fail("agent list", path.status());
  Result<json::value> r = call->client->Json("GET", *path);
  if (!r.ok()) return Fail("agent list", r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& a : ArrayAt(*r, "agents")) {
    const json::value* revoked = Get(a, "revoked");
    const json::value* pending = Get(a, "pending_bytes");
    rows.push_back({Str(a, "name"),
                    revoked && revoked->is_bool() && revoked->get_bool() ? "revoked" : "active",
                    Labels(Get(a, "labels")), UnixTime(IntAt(a, "last_seen_unix")),
                    pending && !pending->is_null()
                        ? HumanBytes(static_cast<uint64_t>(IntAt(a, "pending_bytes")))
                        : "-",
                    Str(a, "link_key_fingerprint")});
  }
  PrintTable({"name", "state", "labels", "last seen", "pending", "key"}, rows);
  return kExitOk;
}

int AgentShow(const HubArgs& args, const std::string& name) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("agent show", call.status());
  if (Status s = CheckName("agent", name); !s.ok()) return Fail("agent show", s);
  Result<std::string> path = call->TenantPath("/agents/" + name);
  if (!path.ok()) return Fail("agent show", path.status());
  Result<json::value> r = call->client->Json("GET", *path);
  if (!r.ok()) return Fail("agent show " + name, r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
  } else {
    PrintFields(AgentFields(*r));
  }
  return kExitOk;
}

int AgentRevoke(const HubArgs& args, const std::string& name) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("agent revoke", call.status());
  if (Status s = CheckName("agent", name); !s.ok()) return Fail("agent revoke", s);
  Result<std::string> path = call->TenantPath("/agents/" + name + "/revoke");
  if (!path.ok()) return Fail("agent revoke", path.status());
  Result<json::value> r = call->client->Json("POST", *path);
  if (!r.ok()) return Fail("agent revoke " + name, r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
  } else {
    std::cout << "agent/" << name << " revoked: its key is refused from now on, also on an open "
              << "session\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------- policy

namespace {

struct PolicyDocument {
  std::string origin;  // "file.yaml" or "file.yaml (document 2)"
  std::string text;
};

// Splits a YAML stream at "---" lines (documents that are only comments or
// blank are dropped).
std::vector<PolicyDocument> SplitDocuments(const std::string& file, const std::string& text) {
  std::vector<std::string> docs(1);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    std::string trimmed = line;
    while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == '\r'))
      trimmed.pop_back();
    if (trimmed == "---" || trimmed.rfind("--- ", 0) == 0) {
      docs.emplace_back();
    } else if (trimmed == "...") {
      // end of document marker
    } else {
      docs.back() += line + "\n";
    }
    pos = end + 1;
  }
  std::vector<PolicyDocument> out;
  int index = 0;
  for (std::string& d : docs) {
    ++index;
    bool blank = true;
    size_t p = 0;
    while (p < d.size()) {
      size_t e = d.find('\n', p);
      if (e == std::string::npos) e = d.size();
      const size_t first = d.find_first_not_of(" \t\r", p);
      if (first < e && d[first] != '#') {
        blank = false;
        break;
      }
      p = e + 1;
    }
    if (blank) continue;
    out.push_back({docs.size() > 1 ? file + " (document " + std::to_string(index) + ")" : file,
                   std::move(d)});
  }
  return out;
}

Result<std::vector<std::string>> PolicyFiles(const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    if (ec || !fs::exists(st)) return NotFoundError("-f " + in + ": no such file or folder");
    if (fs::is_directory(st)) {
      std::vector<std::string> found;
      for (const fs::directory_entry& e : fs::directory_iterator(in, ec)) {
        const std::string ext = e.path().extension().string();
        if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
          found.push_back(e.path().string());
        }
      }
      if (ec) return InvalidArgumentError("-f " + in + ": " + ec.message());
      std::sort(found.begin(), found.end());
      if (found.empty()) return NotFoundError("-f " + in + ": no .yaml, .yml or .json files in it");
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(in);
    }
  }
  return files;
}

}  // namespace

int PolicyApply(const HubArgs& args, const std::vector<std::string>& inputs) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("policy apply", call.status());
  Result<std::string> tenant = call->Tenant();
  if (!tenant.ok()) return Fail("policy apply", tenant.status());
  Result<std::vector<std::string>> files = PolicyFiles(inputs);
  if (!files.ok()) return Fail("policy apply", files.status());
  // Validate everything before changing anything: a typo in the third file
  // must not leave the first two applied.
  std::vector<std::pair<std::string, mirror::MirrorPolicy>> policies;
  for (const std::string& file : *files) {
    Result<Bytes> bytes = Env::Default()->ReadFile(file, kMaxPolicyFileBytes);
    if (!bytes.ok()) return Fail("policy apply: reading " + file, bytes.status());
    for (PolicyDocument& doc : SplitDocuments(file, std::string(bytes->begin(), bytes->end()))) {
      Result<mirror::MirrorPolicy> p = mirror::ParseMirrorPolicy(doc.text);
      if (!p.ok()) return Fail("policy apply: " + doc.origin, p.status());
      if (!p->tenant.empty() && p->tenant != *tenant) {
        return Fail(
            "policy apply: " + doc.origin,
            InvalidArgumentError("metadata.tenant is " + p->tenant +
                                 " but this command acts on tenant " + *tenant + " (--tenant)"));
      }
      for (const auto& [origin, seen] : policies) {
        if (seen.name == p->name) {
          return Fail("policy apply: " + doc.origin,
                      InvalidArgumentError("policy " + p->name + " is also defined in " + origin));
        }
      }
      policies.emplace_back(doc.origin, std::move(*p));
    }
  }
  if (policies.empty())
    return Fail("policy apply", InvalidArgumentError("no policy documents found"));
  json::array results;
  for (auto& [origin, p] : policies) {
    const std::string path = "/v1/tenants/" + *tenant + "/policies/" + p.name;
    int64_t before = -1;
    if (Result<json::value> old = call->client->Json("GET", path); old.ok()) {
      before = IntAt(*old, "generation", -1);
    } else if (old.status().code() != StatusCode::kNotFound) {
      return Fail("policy apply " + p.name, old.status());
    }
    Result<HubAnswer> a = call->client->Call("PUT", path, mirror::MirrorPolicyToJson(p));
    if (!a.ok()) return Fail("policy apply " + p.name + " (" + origin + ")", a.status());
    boost::system::error_code ec;
    json::value v = json::parse(a->body, ec);
    const int64_t generation = ec ? -1 : IntAt(v, "generation", -1);
    const std::string what = a->status == 201       ? "created"
                             : generation == before ? "unchanged"
                                                    : "configured";
    results.push_back(json::object{{"name", p.name}, {"result", what}, {"generation", generation}});
    if (call->format == OutputFormat::kTable) {
      std::cout << "policy/" << p.name << " " << what << "\n";
    }
  }
  if (call->format != OutputFormat::kTable) {
    PrintValue(json::object{{"policies", std::move(results)}}, call->format);
  }
  return kExitOk;
}

namespace {

std::vector<std::string> PolicyRow(const json::value& p) {
  const json::value* doc = Get(p, "policy");
  const json::value* spec = doc ? Get(*doc, "spec") : nullptr;
  std::string agents = "(all)", datasets, schedule, targets, rpo = "-";
  if (spec) {
    if (const json::value* a = Get(*spec, "agents")) {
      if (std::string l = Labels(Get(*a, "matchLabels")); !l.empty()) agents = l;
    }
    for (const json::value& d : ArrayAt(*spec, "datasets")) {
      datasets += (datasets.empty() ? "" : ",") + Cell(&d);
    }
    if (const json::value* s = Get(*spec, "schedule")) {
      schedule = s->is_object() ? "every " + Str(*s, "every") : Cell(s);
    }
    for (const json::value& t : ArrayAt(*spec, "targets")) {
      targets += (targets.empty() ? "" : ",") + Str(t, "hub");
    }
    if (const json::value* r = Get(*spec, "rpo")) rpo = Cell(r);
  }
  return {Str(p, "name"),
          agents,
          datasets,
          schedule,
          targets,
          rpo,
          std::to_string(IntAt(p, "generation"))};
}

const std::vector<std::string> kPolicyHeaders = {"name",    "agents", "datasets",  "schedule",
                                                 "targets", "rpo",    "generation"};

}  // namespace

int PolicyList(const HubArgs& args) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("policy list", call.status());
  Result<std::string> path = call->TenantPath("/policies");
  if (!path.ok()) return Fail("policy list", path.status());
  Result<json::value> r = call->client->Json("GET", *path);
  if (!r.ok()) return Fail("policy list", r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& p : ArrayAt(*r, "policies")) rows.push_back(PolicyRow(p));
  PrintTable(kPolicyHeaders, rows);
  return kExitOk;
}

int PolicyGet(const HubArgs& args, const std::string& name) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("policy get", call.status());
  if (Status s = CheckName("policy", name); !s.ok()) return Fail("policy get", s);
  Result<std::string> path = call->TenantPath("/policies/" + name);
  if (!path.ok()) return Fail("policy get", path.status());
  Result<json::value> r = call->client->Json("GET", *path);
  if (!r.ok()) return Fail("policy get " + name, r.status());
  if (call->format == OutputFormat::kYaml) {
    // The document itself, ready for `policy apply -f` after editing.
    const json::value* doc = Get(*r, "policy");
    PrintValue(doc ? *doc : *r, call->format);
  } else if (call->format == OutputFormat::kJson) {
    PrintValue(*r, call->format);
  } else {
    PrintTable(kPolicyHeaders, {PolicyRow(*r)});
  }
  return kExitOk;
}

int PolicyDelete(const HubArgs& args, const std::string& name) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("policy delete", call.status());
  if (Status s = CheckName("policy", name); !s.ok()) return Fail("policy delete", s);
  Result<std::string> path = call->TenantPath("/policies/" + name);
  if (!path.ok()) return Fail("policy delete", path.status());
  Result<HubAnswer> r = call->client->Call("DELETE", *path);
  if (!r.ok()) return Fail("policy delete " + name, r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(json::object{{"name", name}, {"result", "deleted"}}, call->format);
  } else {
    std::cout << "policy/" << name << " deleted\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------- snapshot

namespace {

Result<std::string> SnapshotQuery(const HubCall& call, const HubSnapshotFilter& f, int limit) {
  ASSIGN_OR_RETURN(std::string path, call.TenantPath("/snapshots"));
  std::string q = "?limit=" + std::to_string(limit);
  if (!f.agent.empty()) {
    RETURN_IF_ERROR(CheckName("--agent", f.agent));
    q += "&agent=" + f.agent;
  }
  if (!f.dataset.empty()) q += "&dataset=" + QueryEscape(f.dataset);
  if (!f.since.empty()) q += "&since=" + QueryEscape(f.since);
  if (!f.until.empty()) q += "&until=" + QueryEscape(f.until);
  return path + q;
}

}  // namespace

int HubSnapshotList(const HubArgs& args, const HubSnapshotFilter& filter) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("snapshot list", call.status());
  if (filter.limit < 1 || filter.limit > 1000) {
    return Fail("snapshot list", InvalidArgumentError("--limit must be 1-1000"));
  }
  Result<std::string> target = SnapshotQuery(*call, filter, filter.limit);
  if (!target.ok()) return Fail("snapshot list", target.status());
  Result<json::value> r = call->client->Json("GET", *target);
  if (!r.ok()) return Fail("snapshot list", r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& s : ArrayAt(*r, "snapshots")) rows.push_back(SnapshotRow(s));
  PrintTable({"id", "agent", "datasets", "created", "size", "stored", "chunks", "policy"}, rows);
  if (const json::value* t = Get(*r, "truncated"); t && t->is_bool() && t->get_bool()) {
    std::cerr << "(more snapshots match: raise --limit, or page with --until "
              << ShortTime(Get(ArrayAt(*r, "snapshots").back(), "created")) << ")\n";
  }
  return kExitOk;
}

Result<std::string> ResolveHubSnapshot(HubCall& call, const std::string& text,
                                       const HubSnapshotFilter& filter) {
  const bool hex =
      !text.empty() && text.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
  if (hex && text.size() == 64) return text;
  if (text != "latest" && (!hex || text.size() < 6)) {
    return InvalidArgumentError("snapshot '" + text +
                                "': give a snapshot id (64 hex digits), a prefix of at least 6, "
                                "or 'latest'");
  }
  const int limit = text == "latest" ? 1 : 1000;
  ASSIGN_OR_RETURN(std::string target, SnapshotQuery(call, filter, limit));
  ASSIGN_OR_RETURN(json::value r, call.client->Json("GET", target));
  const json::array& list = ArrayAt(r, "snapshots");
  std::string scope;
  if (!filter.agent.empty()) scope += " of agent " + filter.agent;
  if (!filter.dataset.empty()) scope += " with dataset " + filter.dataset;
  if (text == "latest") {
    if (list.empty()) {
      return NotFoundError("no snapshots" + scope + " in tenant " + call.hub.tenant +
                           " yet (agents send them when a policy runs; see ferryctl status)");
    }
    return Str(list[0], "id");
  }
  std::string lower = text;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::vector<std::string> matches;
  for (const json::value& s : list) {
    const std::string id = Str(s, "id");
    if (id.rfind(lower, 0) == 0) matches.push_back(id);
  }
  if (matches.empty()) {
    return NotFoundError("no snapshot" + scope + " starting with " + text +
                         " among the newest 1000 in tenant " + call.hub.tenant +
                         " (see ferryctl snapshot list)");
  }
  if (matches.size() > 1) {
    return InvalidArgumentError("snapshot prefix " + text + " matches " +
                                std::to_string(matches.size()) + " snapshots; give more digits");
  }
  return matches[0];
}

int HubSnapshotShow(const HubArgs& args, const std::string& snapshot) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("snapshot show", call.status());
  Result<std::string> id = ResolveHubSnapshot(*call, snapshot, {});
  if (!id.ok()) return Fail("snapshot show", id.status());
  Result<std::string> path = call->TenantPath("/snapshots/" + *id);
  if (!path.ok()) return Fail("snapshot show", path.status());
  Result<json::value> r = call->client->Json("GET", *path);
  if (!r.ok()) return Fail("snapshot show " + id->substr(0, 12), r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  const json::value* m = Get(*r, "manifest");
  std::vector<std::pair<std::string, std::string>> f = {
      {"snapshot", Str(*r, "id")},
      {"agent", Str(*r, "agent")},
      {"created", ShortTime(Get(*r, "created"))},
      {"committed", UnixTime(IntAt(*r, "committed_unix"))},
      {"parent", Str(*r, "parent").empty() ? "-" : Str(*r, "parent")},
      {"labels", Labels(Get(*r, "labels"))},
      {"size", HumanBytes(static_cast<uint64_t>(IntAt(*r, "logical_bytes")))},
      {"stored", HumanBytes(static_cast<uint64_t>(IntAt(*r, "sealed_bytes"))) + " in " +
                     Count(static_cast<uint64_t>(IntAt(*r, "chunks"))) + " chunks (sealed)"},
  };
  if (m) {
    f.push_back({"host", Str(*m, "hostname")});
    f.push_back({"ferry", Str(*m, "ferry_version")});
    f.push_back({"keyset", Str(*m, "keyset_id")});
    f.push_back({"signer", Str(*m, "signer")});
    for (const json::value& d : ArrayAt(*m, "datasets")) {
      const json::value* st = Get(d, "stats");
      std::string line = Str(d, "name") + " (" + Str(d, "kind") + ")";
      if (st) {
        line += ": " + Count(static_cast<uint64_t>(IntAt(*st, "files"))) + " files, " +
                Count(static_cast<uint64_t>(IntAt(*st, "directories"))) + " directories, " +
                HumanBytes(static_cast<uint64_t>(IntAt(*st, "bytes")));
        if (IntAt(*st, "inconsistent") > 0 || IntAt(*st, "skipped") > 0) {
          line += "; " + std::to_string(IntAt(*st, "inconsistent")) + " inconsistent, " +
                  std::to_string(IntAt(*st, "skipped")) + " skipped";
        }
      }
      f.push_back({"dataset", line});
    }
  }
  PrintFields(f);
  return kExitOk;
}

// ---------------------------------------------------------------- token

int TokenCreate(const HubArgs& args, const std::string& role, const std::string& description) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("token create", call.status());
  Result<std::string> path = call->TenantPath("/tokens");
  if (!path.ok()) return Fail("token create", path.status());
  json::object body{{"role", role}};
  if (!description.empty()) body["description"] = description;
  Result<json::value> r = call->client->Json("POST", *path, json::serialize(body));
  if (!r.ok()) return Fail("token create", r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  std::cerr << "API token " << Str(*r, "id") << " (" << role << " of tenant " << Str(*r, "tenant")
            << "); shown only now, keep it secret:\n";
  std::cout << Str(*r, "token") << "\n";
  return kExitOk;
}

int TokenList(const HubArgs& args, bool all_tenants) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("token list", call.status());
  Result<std::string> path =
      all_tenants ? Result<std::string>(std::string("/v1/tokens")) : call->TenantPath("/tokens");
  if (!path.ok()) return Fail("token list", path.status());
  Result<json::value> r = call->client->Json("GET", *path);
  if (!r.ok()) return Fail("token list", r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& t : ArrayAt(*r, "tokens")) {
    const json::value* revoked = Get(t, "revoked");
    const std::string tenant = Str(t, "tenant");
    rows.push_back({Str(t, "id"), tenant.empty() ? "(every tenant)" : tenant, Str(t, "role"),
                    revoked && revoked->is_bool() && revoked->get_bool() ? "revoked" : "active",
                    UnixTime(IntAt(t, "created_unix")), Str(t, "description")});
  }
  PrintTable({"id", "tenant", "role", "state", "created", "description"}, rows);
  return kExitOk;
}

int TokenRevoke(const HubArgs& args, const std::string& id) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("token revoke", call.status());
  if (id.rfind("tok-", 0) != 0 || id.size() != 12 ||
      id.find_first_not_of("0123456789abcdef", 4) != std::string::npos) {
    return Fail("token revoke", InvalidArgumentError("token id '" + id +
                                                     "': ids look like tok-3f9a1c2b (see "
                                                     "ferryctl token list)"));
  }
  Result<json::value> r = call->client->Json("DELETE", "/v1/tokens/" + id);
  if (!r.ok()) return Fail("token revoke " + id, r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
  } else {
    std::cout << "token/" << id << " revoked\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------- status

int FleetStatus(const HubArgs& args) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("status", call.status());
  Result<std::string> path = call->TenantPath("/status");
  if (!path.ok()) return Fail("status", path.status());
  Result<json::value> r = call->client->Json("GET", *path);
  if (!r.ok()) return Fail("status", r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  int missed = 0;
  auto row = [&](const std::string& policy, const std::string& rpo, const json::value& a) {
    const json::value* met = Get(a, "rpo_met");
    std::string state = "-";
    if (met && met->is_bool()) {
      state = met->get_bool() ? "ok" : "MISSED";
      if (!met->get_bool()) ++missed;
    }
    const json::value* last = Get(a, "last_snapshot");
    const json::value* age = Get(a, "age_seconds");
    const json::value* pending = Get(a, "pending_bytes");
    std::string err = Cell(Get(a, "last_error"));
    if (err.size() > 60) err = err.substr(0, 57) + "...";
    rows.push_back({policy, Str(a, "agent"),
                    last && last->is_object() ? Str(*last, "id").substr(0, 12) : "none",
                    age && !age->is_null() ? HumanAge(IntAt(a, "age_seconds")) : "-", rpo, state,
                    pending && !pending->is_null()
                        ? HumanBytes(static_cast<uint64_t>(IntAt(a, "pending_bytes")))
                        : "-",
                    err});
  };
  for (const json::value& p : ArrayAt(*r, "policies")) {
    const json::value* rpo = Get(p, "rpo_seconds");
    const std::string rpo_text =
        rpo && !rpo->is_null() ? mirror::FormatDuration(IntAt(p, "rpo_seconds")) : "-";
    for (const json::value& a : ArrayAt(p, "agents")) row(Str(p, "policy"), rpo_text, a);
    if (ArrayAt(p, "agents").empty()) {
      rows.push_back({Str(p, "policy"), "(no agent matches)", "-", "-", rpo_text, "-", "-", "-"});
    }
  }
  for (const json::value& a : ArrayAt(*r, "agents")) {
    if (ArrayAt(a, "policies").empty()) row("(none)", "-", a);
  }
  PrintTable(
      {"policy", "agent", "last snapshot", "age", "rpo", "rpo state", "pending", "last error"},
      rows);
  if (missed > 0) {
    std::cerr << missed << " RPO" << (missed == 1 ? " is" : "s are")
              << " missed: check the agents' links and `ferryctl agent show NAME`\n";
  }
  return kExitOk;
}

}  // namespace ferry::ctl
