#include "ctl/stream_commands.h"

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "core/bytes.h"
#include "core/sodium.h"
#include "ctl/exit_codes.h"
#include "ctl/format.h"
#include "ctl/local_commands.h"
#include "ctl/output.h"
#include "snapshot/stream_batch.h"

namespace ferry::ctl {

namespace json = boost::json;

namespace {

// Stream and agent names follow the hub's rule; checked here so that a bad
// one never reaches a URL.
Status CheckPathName(const std::string& what, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] != '-';
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (!ok) {
    return InvalidArgumentError(what + " name '" + name +
                                "' must be 1-63 characters of a-z, 0-9 and '-'");
  }
  return OkStatus();
}

}  // namespace

HubStreamReader::HubStreamReader(HubClient& client, std::string tenant, std::string agent,
                                 std::string stream, const snapshot::Keyset& keyset)
    : client_(client),
      tenant_(std::move(tenant)),
      agent_(std::move(agent)),
      stream_(std::move(stream)),
      keyset_(keyset) {}

Status HubStreamReader::Init() {
  RETURN_IF_ERROR(CheckPathName("agent", agent_));
  RETURN_IF_ERROR(CheckPathName("stream", stream_));
  ASSIGN_OR_RETURN(json::value a,
                   client_.Json("GET", "/v1/tenants/" + tenant_ + "/agents/" + agent_));
  const json::value* key = a.is_object() ? a.as_object().if_contains("signing_key") : nullptr;
  Result<Bytes> raw = key != nullptr && key->is_string()
                          ? HexDecode(std::string(key->as_string()))
                          : Result<Bytes>(DataLossError("no signing_key"));
  if (!raw.ok() || raw->size() != signer_.size()) {
    return DataLossError("the hub's answer for agent " + agent_ + " has no valid signing_key");
  }
  std::copy(raw->begin(), raw->end(), signer_.begin());
  return OkStatus();
}

Result<std::vector<snapshot::StreamRecord>> HubStreamReader::Read(uint64_t from, size_t max_bytes) {
  const std::string target = "/v1/streams/" + tenant_ + "/" + agent_ + "/" + stream_ +
                             "?from=" + std::to_string(from) +
                             "&max_bytes=" + std::to_string(max_bytes);
  // The hub sends at least one whole batch (up to a link frame, 8 MiB).
  ASSIGN_OR_RETURN(HubAnswer answer,
                   client_.Call("GET", target, "", "application/json", max_bytes + (16u << 20)));
  const std::string where = agent_ + "/" + stream_;
  std::vector<snapshot::StreamRecord> out;
  ByteReader reader(
      ByteView(reinterpret_cast<const uint8_t*>(answer.body.data()), answer.body.size()));
  uint64_t expect = from;  // the next offset the answer must hold
  bool first = true;
  while (!reader.empty()) {
    uint32_t len = 0;
    ByteView sealed;
    if (!reader.ReadU32(len) || !reader.ReadView(len, sealed)) {
      return DataLossError("the hub's answer for stream " + where + " is truncated");
    }
    ASSIGN_OR_RETURN(snapshot::StreamBatchHeader h, snapshot::VerifyStreamBatch(sealed));
    const std::string batch =
        "stream " + where + " batch at offset " + std::to_string(h.first_offset);
    if (!sodium::ConstantTimeEqual(h.signer, signer_)) {
      return DataLossError(batch + " is signed by " + HexEncode(h.signer) + ", not by agent " +
                           agent_ + "'s signing key " + HexEncode(signer_));
    }
    if (h.stream != stream_) {
      return DataLossError(batch + " belongs to stream " + h.stream);
    }
    const bool fits =
        first ? h.first_offset <= expect && expect < h.end_offset() : h.first_offset == expect;
    if (!fits) {
      return DataLossError(batch + " (" + std::to_string(h.record_count) +
                           " records) does not continue the stream at offset " +
                           std::to_string(expect));
    }
    auto key = keys_.find(h.key_id);
    if (key == keys_.end()) {
      ASSIGN_OR_RETURN(SecretBytes k, keyset_.UnwrapDataKey(h.key_id, h.wrapped_key));
      key = keys_.emplace(h.key_id, std::move(k)).first;
    }
    ASSIGN_OR_RETURN(std::vector<snapshot::StreamRecord> records,
                     snapshot::OpenStreamBatch(sealed, key->second));
    for (snapshot::StreamRecord& r : records) {
      if (r.offset >= from) out.push_back(std::move(r));
    }
    expect = h.end_offset();
    first = false;
  }
  return out;
}

std::string StreamRecordJson(const snapshot::StreamRecord& r) {
  json::object o;
  o["offset"] = r.offset;
  const std::string_view text(reinterpret_cast<const char*>(r.data.data()), r.data.size());
  if (IsValidUtf8(text)) {
    o["text"] = text;
  } else {
    o["base64"] = sodium::Base64Encode(r.data);
  }
  return json::serialize(o);
}

int StreamRead(const StreamReadArgs& args) {
  const std::string what = "stream read " + args.target;
  const size_t slash = args.target.find('/');
  if (slash == std::string::npos) {
    return Fail(what, InvalidArgumentError("name the stream as AGENT/STREAM, e.g. cam-1/events"));
  }
  Result<OutputFormat> format = ParseOutputFormat(args.hub.output);
  if (!format.ok()) return Fail(what, format.status());
  if (*format == OutputFormat::kYaml) {
    return Fail(what, InvalidArgumentError("records print raw (one per line) or as JSON lines "
                                           "(-o json), not as YAML"));
  }
  Result<std::unique_ptr<snapshot::Keyset>> keyset =
      LoadUnlockedKeyset(args.keyset, args.passphrase_file);
  if (!keyset.ok()) return Fail(what, keyset.status());
  Result<HubCall> call = OpenHub(args.hub);
  if (!call.ok()) return Fail(what, call.status());
  Result<std::string> tenant = call->Tenant();
  if (!tenant.ok()) return Fail(what, tenant.status());
  HubStreamReader reader(*call->client, *tenant, args.target.substr(0, slash),
                         args.target.substr(slash + 1), **keyset);
  if (Status s = reader.Init(); !s.ok()) return Fail(what, s);

  uint64_t at = args.from;
  uint64_t printed = 0;
  const auto done = [&] { return at >= args.end || (args.max != 0 && printed >= args.max); };
  while (!done()) {
    Result<std::vector<snapshot::StreamRecord>> records = reader.Read(at);
    if (!records.ok()) return Fail(what, records.status());
    if (records->empty()) {
      if (!args.follow) break;
      std::fflush(stdout);
      // The hub's stream API is polled: nothing pushes to a reader.
      std::this_thread::sleep_for(std::chrono::milliseconds(args.poll_ms));
      continue;
    }
    for (const snapshot::StreamRecord& r : *records) {
      at = r.offset + 1;
      if (r.offset >= args.end) {
        at = args.end;
        break;
      }
      if (*format == OutputFormat::kJson) {
        std::cout << StreamRecordJson(r) << "\n";
      } else {
        std::cout.write(reinterpret_cast<const char*>(r.data.data()),
                        static_cast<std::streamsize>(r.data.size()));
        std::cout << "\n";
      }
      if (args.max != 0 && ++printed >= args.max) break;
    }
  }
  std::cout.flush();
  if (!std::cout) return Fail(what, UnavailableError("writing to stdout failed"));
  return kExitOk;
}

int StreamList(const HubArgs& args, const std::string& agent) {
  Result<HubCall> call = OpenHub(args);
  if (!call.ok()) return Fail("stream list", call.status());
  if (!agent.empty()) {
    if (Status s = CheckPathName("agent", agent); !s.ok()) return Fail("stream list", s);
  }
  Result<std::string> path =
      call->TenantPath("/streams" + (agent.empty() ? "" : "?agent=" + agent));
  if (!path.ok()) return Fail("stream list", path.status());
  Result<json::value> r = call->client->Json("GET", *path);
  if (!r.ok()) return Fail("stream list", r.status());
  if (call->format != OutputFormat::kTable) {
    PrintValue(*r, call->format);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  const json::value* streams = r->is_object() ? r->as_object().if_contains("streams") : nullptr;
  if (streams != nullptr && streams->is_array()) {
    for (const json::value& s : streams->as_array()) {
      if (!s.is_object()) continue;
      const json::object& o = s.as_object();
      const auto num = [&](std::string_view k) {
        const json::value* v = o.if_contains(k);
        return v != nullptr && v->is_number() ? v->to_number<uint64_t>() : 0;
      };
      rows.push_back(
          {Cell(o.if_contains("agent")), Cell(o.if_contains("stream")),
           std::to_string(num("start_offset")), std::to_string(num("next_offset")),
           std::to_string(num("next_offset") - std::min(num("start_offset"), num("next_offset"))),
           HumanBytes(num("bytes"))});
    }
  }
  PrintTable({"agent", "stream", "first", "next", "records", "stored"}, rows);
  return kExitOk;
}

}  // namespace ferry::ctl
