#include "core/crash_site.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace ferry {
namespace crash_site_internal {

std::atomic<CrashSiteHandler> handler{nullptr};

void Reached(std::string_view site) {
  CrashSiteHandler fn = handler.load(std::memory_order_acquire);
  if (fn != nullptr) fn(site);
}

}  // namespace crash_site_internal

namespace {

// The site armed by FERRY_CRASH_AT and how many more times it is passed.
std::string_view armed_site;
std::atomic<int64_t> armed_left{0};

void ExitAtArmedSite(std::string_view site) {
  if (site != armed_site) return;
  if (armed_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    // As kill -9 would: nothing flushed, no destructor, no answer sent. One
    // line on stderr (unbuffered, a single write) says where.
    const std::string line = "ferry: crash site " + std::string(site) + " reached; exiting\n";
    [[maybe_unused]] ssize_t n = ::write(2, line.data(), line.size());
    ::_exit(kCrashSiteExitCode);
  }
}

}  // namespace

CrashSiteHandler SetCrashSiteHandler(CrashSiteHandler fn) {
  return crash_site_internal::handler.exchange(fn, std::memory_order_acq_rel);
}

bool CrashSitesCompiledIn() {
#if defined(FERRY_NO_CRASH_SITES)
  return false;
#else
  return true;
#endif
}

Status ArmCrashSiteFromEnvironment() {
  const char* spec = std::getenv("FERRY_CRASH_AT");
  if (spec == nullptr || *spec == '\0') return OkStatus();
  if (!CrashSitesCompiledIn()) {
    return FailedPreconditionError(
        "FERRY_CRASH_AT is set but this build has no crash sites (FERRY_CRASH_SITES=OFF)");
  }
  std::string_view s(spec);
  int64_t count = 1;
  if (size_t colon = s.find(':'); colon != std::string_view::npos) {
    const std::string n(s.substr(colon + 1));
    char* end = nullptr;
    const long long v = std::strtoll(n.c_str(), &end, 10);
    if (n.empty() || end != n.c_str() + n.size() || v < 1 || v > 1000000000) {
      return InvalidArgumentError("FERRY_CRASH_AT: the count after ':' must be 1 to 10^9, not \"" +
                                  n + "\"");
    }
    count = v;
    s = s.substr(0, colon);
  }
  for (std::string_view known : kCrashSites) {
    if (known == s) {
      armed_site = known;  // static storage: outlives the environment string
      armed_left.store(count);
      SetCrashSiteHandler(&ExitAtArmedSite);
      return OkStatus();
    }
  }
  return InvalidArgumentError("FERRY_CRASH_AT: unknown crash site \"" + std::string(s) +
                              "\" (core/crash_site.h lists them)");
}

}  // namespace ferry
