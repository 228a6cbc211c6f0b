// libFuzzer target: MirrorPolicy documents (mirror/policy/mirror_policy.cc,
// yaml_fields.cc: ParseMirrorPolicy, MirrorPolicyToJson). The input is the
// YAML or JSON text. Checks, beyond "no crash, no UB":
//  - errors are INVALID_ARGUMENT, and their message is one line of printable
//    ASCII (the document's bytes are quoted, never echoed raw);
//  - an accepted policy keeps its promises: at least one dataset and one
//    target, exactly one of cron / every;
//  - canonical JSON round-trips: MirrorPolicyToJson parses back to an equal
//    policy, which writes the same JSON.
#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>

#include "mirror/policy/mirror_policy.h"
#include "tests/fuzz/fuzz_formats.h"

namespace ferry::fuzz {
namespace {

bool PrintableLine(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

void Run(std::string_view text) {
  Result<mirror::MirrorPolicy> policy = mirror::ParseMirrorPolicy(text);
  if (!policy.ok()) {
    FUZZ_CHECK(policy.status().code() == StatusCode::kInvalidArgument);
    if (!PrintableLine(policy.status().message())) {
      std::fprintf(stderr, "message: %s\n", HexEncode(AsBytes(policy.status().message())).c_str());
    }
    FUZZ_CHECK(PrintableLine(policy.status().message()));
    return;
  }
  FUZZ_CHECK(!policy->datasets.empty() && !policy->targets.empty());
  FUZZ_CHECK(policy->schedule.cron.has_value() != policy->schedule.every_seconds.has_value());
  const std::string json = mirror::MirrorPolicyToJson(*policy);
  Result<mirror::MirrorPolicy> again = mirror::ParseMirrorPolicy(json);
  FUZZ_CHECK(again.ok() && *again == *policy);
  FUZZ_CHECK(mirror::MirrorPolicyToJson(*again) == json);
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ferry::fuzz::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
