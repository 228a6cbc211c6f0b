// AuthThrottle: limits how fast one network address may guess secrets — the
// hub's API tokens (REST, 401s) and join tokens (link enrollment).
//
// Each address gets at most `max_failures` failed attempts per `window`;
// the attempt that reaches the limit throttles the address for `window`.
// While throttled, Admit refuses the address without its credentials being
// looked at (a right token is refused too: otherwise every guess would still
// be checked, and the throttle would only slow the answers). When the
// window has passed, the address starts afresh. Successful attempts neither
// count nor reset anything, so a valid token held by an attacker does not
// buy more guesses; other addresses are never affected.
//
// Addresses are compared as keys (AddressKey): an IPv4 address as it is,
// an IPv4-mapped IPv6 address as its IPv4 address, any other IPv6 address
// by its /64 prefix (one host is usually given a whole /64, so single
// addresses would cost an attacker nothing).
//
// Memory is bounded: at most `max_addresses` keys are tracked; a failure
// from a new key beyond that forgets the key whose last failure is oldest
// (an attacker with that many addresses gains little by the eviction: it
// already has that many windows of guesses).
//
// Thread-safety: thread-safe. `clock` must outlive the throttle.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/clock.h"
#include "core/status.h"

namespace ferry::hub {

struct AuthThrottleOptions {
  // Failed attempts one address may make per window; the one that reaches
  // it throttles the address. 0 disables the throttle. Default 10.
  uint32_t max_failures = 10;
  // The window failures are counted in, and how long a throttled address
  // waits. Default 60 s.
  std::chrono::milliseconds window{60'000};
  // Addresses tracked at once (about 100 bytes each). Default 4096.
  size_t max_addresses = 4096;
};

class AuthThrottle {
 public:
  // `clock` null: the real clock (monotonic time).
  explicit AuthThrottle(AuthThrottleOptions options, Clock* clock = nullptr);

  // Whether `address` may attempt to authenticate now: OK, or
  // kResourceExhausted while it is throttled, with `*retry_after` (when not
  // null) set to the whole seconds until it may again (at least 1).
  // Counts the refusals (throttled_total).
  Status Admit(std::string_view address, std::chrono::seconds* retry_after = nullptr);

  // Counts a failed attempt from `address`. Returns true when this attempt
  // throttled the address (the caller logs it once).
  bool RecordFailure(std::string_view address);

  // Addresses tracked now (at most max_addresses).
  size_t tracked() const;
  // Attempts Admit refused since the start.
  uint64_t throttled_total() const;
  const AuthThrottleOptions& options() const { return options_; }

  // The key an address is counted under (see the file comment); anything
  // that is not an IP address is its own key, cut to 64 bytes.
  static std::string AddressKey(std::string_view address);
  // The address of an endpoint as LinkConnection::remote_endpoint() gives
  // it: "192.0.2.7:5100" -> "192.0.2.7", "[2001:db8::7]:5100" ->
  // "2001:db8::7"; anything else as it is.
  static std::string AddressOfEndpoint(std::string_view endpoint);

 private:
  struct Entry {
    std::string key;
    int64_t window_start = 0;   // monotonic ns of the window's first failure
    uint32_t failures = 0;      // in the window
    int64_t blocked_until = 0;  // monotonic ns; 0: not throttled
  };
  using Lru = std::list<Entry>;  // most recent failure first

  const AuthThrottleOptions options_;
  Clock* const clock_;
  mutable std::mutex mu_;
  Lru lru_;                                             // GUARDED_BY(mu_)
  std::unordered_map<std::string, Lru::iterator> map_;  // GUARDED_BY(mu_)
  uint64_t throttled_total_ = 0;                        // GUARDED_BY(mu_)
};

}  // namespace ferry::hub
