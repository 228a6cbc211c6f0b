#include "cloud-hub/auth_throttle.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace ferry::hub {

namespace {

constexpr size_t kMaxKeyBytes = 64;

int64_t ToNanos(std::chrono::milliseconds d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

}  // namespace

AuthThrottle::AuthThrottle(AuthThrottleOptions options, Clock* clock)
    : options_(options), clock_(clock != nullptr ? clock : Clock::Real()) {}

std::string AuthThrottle::AddressKey(std::string_view address) {
  const std::string text(address.substr(0, std::min<size_t>(address.size(), INET6_ADDRSTRLEN)));
  std::array<uint8_t, 16> v6{};
  if (::inet_pton(AF_INET6, text.c_str(), v6.data()) == 1) {
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char buf[INET6_ADDRSTRLEN];
    if (std::memcmp(v6.data(), kMapped, sizeof(kMapped)) == 0) {
      if (::inet_ntop(AF_INET, v6.data() + 12, buf, sizeof(buf)) != nullptr) return buf;
    }
    // The /64 a host is usually given: the interface id is the host's to choose.
    std::fill(v6.begin() + 8, v6.end(), 0);
    if (::inet_ntop(AF_INET6, v6.data(), buf, sizeof(buf)) != nullptr) {
      return std::string(buf) + "/64";
    }
  }
  std::array<uint8_t, 4> v4{};
  char buf[INET_ADDRSTRLEN];
  if (::inet_pton(AF_INET, text.c_str(), v4.data()) == 1 &&
      ::inet_ntop(AF_INET, v4.data(), buf, sizeof(buf)) != nullptr) {
    return buf;
  }
  return std::string(address.substr(0, std::min(address.size(), kMaxKeyBytes)));
}

std::string AuthThrottle::AddressOfEndpoint(std::string_view endpoint) {
  if (!endpoint.empty() && endpoint.front() == '[') {
    const size_t close = endpoint.find(']');
    if (close != std::string_view::npos) return std::string(endpoint.substr(1, close - 1));
    return std::string(endpoint);
  }
  const size_t colon = endpoint.rfind(':');
  // One colon: IPv4 with a port. More: a bare IPv6 address (no port).
  if (colon != std::string_view::npos && endpoint.find(':') == colon) {
    return std::string(endpoint.substr(0, colon));
  }
  return std::string(endpoint);
}

Status AuthThrottle::Admit(std::string_view address, std::chrono::seconds* retry_after) {
  if (options_.max_failures == 0) return OkStatus();
  const std::string key = AddressKey(address);
  const int64_t now = clock_->MonotonicNanos();
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return OkStatus();
  const Entry& e = *it->second;
  if (e.blocked_until == 0 || now >= e.blocked_until) return OkStatus();
  ++throttled_total_;
  // Whole seconds, rounded up: a client that waits that long is admitted.
  const int64_t left_ns = e.blocked_until - now;
  const int64_t seconds = std::max<int64_t>(1, (left_ns + 999'999'999) / 1'000'000'000);
  if (retry_after != nullptr) *retry_after = std::chrono::seconds(seconds);
  return ResourceExhaustedError("too many failed authentication attempts from " + key +
                                "; retry in " + std::to_string(seconds) + " s");
}

bool AuthThrottle::RecordFailure(std::string_view address) {
  if (options_.max_failures == 0) return false;
  const std::string key = AddressKey(address);
  const int64_t now = clock_->MonotonicNanos();
  const int64_t window = ToNanos(options_.window);
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) {
    if (options_.max_addresses == 0) return false;
    while (map_.size() >= options_.max_addresses) {
      map_.erase(lru_.back().key);
      lru_.pop_back();
    }
    lru_.push_front(Entry{key, now, 0, 0});
    it = map_.emplace(key, lru_.begin()).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second);  // now the most recent
  }
  Entry& e = *it->second;
  if (e.blocked_until != 0 && now < e.blocked_until) {
    // A request admitted just before the throttle began, failing now.
    return false;
  }
  if (e.blocked_until != 0 || now - e.window_start >= window) {
    e = Entry{key, now, 0, 0};
  }
  ++e.failures;
  if (e.failures < options_.max_failures) return false;
  e.blocked_until = now + window;
  return true;
}

size_t AuthThrottle::tracked() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

uint64_t AuthThrottle::throttled_total() const {
  std::lock_guard lock(mu_);
  return throttled_total_;
}

}  // namespace ferry::hub
