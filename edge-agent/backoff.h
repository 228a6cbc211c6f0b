// ReconnectBackoff: how long a link to a hub waits before the next attempt,
// for the replicator and the stream shipper alike (replication.backoffInitial
// and replication.backoffMax in agent.yaml). Each wait is drawn uniformly
// between half and all of the current step, so that agents cut off together
// do not reconnect together; the step doubles after every wait, up to the
// maximum, and starts over at the initial step on Reset (after a link that
// worked). Not thread-safe: its owner serializes calls.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace ferry::agent {

class ReconnectBackoff {
 public:
  ReconnectBackoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(std::max(initial, std::chrono::milliseconds(1))),
        max_(std::max(max, initial_)),
        step_(initial_) {}

  // The wait before the next attempt; the step after it doubles.
  std::chrono::milliseconds Next() {
    const int64_t ms = step_.count();
    const int64_t half = ms / 2;
    const int64_t wait = half + static_cast<int64_t>(rng_() % static_cast<uint64_t>(ms - half + 1));
    step_ = std::min(step_ * 2, max_);
    return std::chrono::milliseconds(wait);
  }
  void Reset() { step_ = initial_; }
  std::chrono::milliseconds step() const { return step_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds step_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace ferry::agent
