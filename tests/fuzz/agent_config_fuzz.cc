// libFuzzer target: ferry-agent's config (edge-agent/agent_config.cc:
// ParseAgentConfig, through mirror/policy/yaml_fields.cc and, for inline
// policies, ParseMirrorPolicy). The input is the YAML text. Checks, beyond
// "no crash, no UB":
//  - errors are INVALID_ARGUMENT, start with the origin ("fuzz.yaml: "), and
//    are one line of printable ASCII (the document's bytes are quoted);
//  - no allocation is larger than 4 MiB: aliases can make a short document
//    stand for a huge inline policy, and its expansion is bounded
//    (kMaxPolicyNodes, kMaxPolicyBytes = 1 MiB);
//  - an accepted config keeps the promises of agent_config.h: names valid
//    and unique, paths absolute, chunk sizes powers of two within bounds,
//    backoffMax >= backoffInitial, every dataset and hub a policy names is
//    configured; each policy's canonical JSON parses back to an equal policy.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "edge-agent/agent_config.h"
#include "mirror/policy/mirror_policy.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

bool PrintableLine(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

bool Absolute(const std::string& path) { return !path.empty() && path.front() == '/'; }

void CheckConfig(const agent::AgentConfig& c) {
  FUZZ_CHECK(c.origin == "fuzz.yaml" && !c.name.empty());
  FUZZ_CHECK(Absolute(c.state_dir) && Absolute(c.keyset.file));
  for (const agent::HubEndpoint& hub : c.hubs) FUZZ_CHECK(c.FindHub(hub.name) == &hub);
  for (const agent::DatasetConfig& d : c.datasets) {
    FUZZ_CHECK(c.FindDataset(d.name) == &d && Absolute(d.path));
    FUZZ_CHECK(d.chunk_avg_bytes >= (4u << 10) && d.chunk_avg_bytes <= (1u << 20) &&
               (d.chunk_avg_bytes & (d.chunk_avg_bytes - 1)) == 0);
    for (const auto* hook : {&d.pre_hook, &d.post_hook}) {
      if (*hook) FUZZ_CHECK(!(*hook)->command.empty() && Absolute((*hook)->command[0]));
    }
  }
  for (const agent::StreamConfig& s : c.streams) {
    FUZZ_CHECK(c.FindStream(s.name) == &s && c.FindDataset(s.name) == nullptr);
  }
  FUZZ_CHECK(c.limits.workers >= 1);
  FUZZ_CHECK(c.replication.backoff_max >= c.replication.backoff_initial);
  for (const mirror::MirrorPolicy& p : c.policies) {
    for (const std::string& d : p.datasets) FUZZ_CHECK(c.FindDataset(d) != nullptr);
    for (const std::string& t : p.targets) FUZZ_CHECK(c.FindHub(t) != nullptr);
    Result<mirror::MirrorPolicy> again = mirror::ParseMirrorPolicy(mirror::MirrorPolicyToJson(p));
    FUZZ_CHECK(again.ok() && *again == p);
  }
}

void Run(std::string_view text) {
  std::optional<Result<agent::AgentConfig>> config;
  const size_t largest = LargestAllocation::During(
      [&] { config.emplace(agent::ParseAgentConfig(text, "fuzz.yaml")); });
  FUZZ_CHECK(largest <= (size_t{4} << 20));
  if (config->ok()) {
    CheckConfig(**config);
    return;
  }
  const Status& s = config->status();
  if (!PrintableLine(s.message())) {
    std::fprintf(stderr, "message: %s\n", HexEncode(AsBytes(s.message())).c_str());
  }
  FUZZ_CHECK(s.code() == StatusCode::kInvalidArgument);
  FUZZ_CHECK(s.message().rfind("fuzz.yaml: ", 0) == 0);
  FUZZ_CHECK(PrintableLine(s.message()));
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ferry::fuzz::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
