// FaultProxy: a userspace network fault injector for tests (not shipped).
//
// It listens on a loopback port and relays every accepted TCP connection to
// an upstream address, applying a seeded fault plan to each direction:
//
//   - latency and jitter (every read is delivered `latency` + U[0, jitter]
//     later, never before the bytes read earlier: TCP keeps order);
//   - a bandwidth cap (token bucket: `rate` bytes/s, `burst` bytes);
//   - stalls (after about every `stall_every` bytes, nothing for `stall_for`);
//   - a reset after N bytes (both sockets closed with RST, as a link that
//     drops; exactly N bytes of that direction reach the far side's kernel
//     first, nothing more in either direction);
//   - re-segmenting (each write() at most U[1, max_write] bytes, sometimes
//     with a pause of up to `write_gap` between two: the reader sees partial
//     headers and records);
//   - a flipped bit at a chosen bit of the raw stream.
//
// And at the WebSocket level (RFC 6455), after the HTTP upgrade, which passes
// through untouched: it parses frame boundaries (client-to-server frames are
// masked, server-to-client ones are not), reassembles data messages (control
// frames pass at once) and, for the chosen data message of a direction,
// flips one payload bit, drops it, duplicates it, swaps it with the next
// one, or replays it later (after `replay_after` more messages, or when
// nothing followed within the hold timeout).
//
// Data messages are counted from 0 per direction and connection: for the
// Ferry link, client-to-server 0 and 1 are Noise messages 1 and 3, server-
// to-client 0 is Noise message 2; every later message is one record
// (docs/format/link-transport.md).
//
// Memory is bounded: per direction at most `max_queued_bytes` wait to be
// written (the proxy stops reading the source while that much waits, so TCP
// pushes back on the sender), plus one message being reassembled (at most
// `max_message_bytes`; a larger one turns that direction into a plain byte
// relay) and one held or kept for a replay.
//
// The seed fixes every random choice (jitter, write sizes, stall points):
// connection i of a proxy draws from (seed, i, direction).
//
// Thread-safety: the public methods may be called from any thread. One
// thread accepts; each connection is relayed by a thread of its own.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/status.h"

namespace ferry::testing {

enum class WsFault {
  kNone,
  kFlipBit,    // flip bit `ws_bit` (modulo the payload's bits) of the message's payload,
               // or with `ws_header` of its (first) frame header: FIN, RSV, opcode,
               // MASK, the lengths, the masking key
  kDrop,       // the message never arrives
  kDuplicate,  // the message arrives twice in a row
  kReorder,    // the message arrives after the next one
  kReplay,     // a copy arrives again after `replay_after` later messages
};
std::string_view WsFaultName(WsFault fault);

// What to do to one direction of every connection. Zero values disable.
struct DirectionFaults {
  std::chrono::microseconds latency{0};  // added to every byte
  std::chrono::microseconds jitter{0};   // plus U[0, jitter] per read, order kept
  uint64_t rate = 0;                     // bytes per second; 0: unlimited
  uint64_t burst = 0;                    // token bucket size; 0: max(rate / 50, 16 KiB)
  uint64_t stall_every = 0;              // a stall after about every this many bytes (U[½, 1½]×)
  std::chrono::milliseconds stall_for{0};  // how long each stall lasts
  uint64_t reset_after = 0;                // reset the connection after this many bytes
  uint64_t max_write = 0;                  // re-segmenting: each write U[1, max_write] bytes
  std::chrono::microseconds write_gap{0};  // a pause of U[0, write_gap] before 1 write in 16
  int64_t flip_bit = -1;                   // raw: bit index in this direction's stream
  WsFault ws = WsFault::kNone;             // a WebSocket-level fault
  uint64_t ws_message = 0;                 // ... on this data message (0-based)
  uint64_t ws_bit = 0;                     // kFlipBit: which payload bit (mod payload bits)
  bool ws_header = false;                  // kFlipBit: a bit of the frame header instead
  uint64_t replay_after = 1;               // kReplay: after this many later messages

  bool ParsesWebSocket() const { return ws != WsFault::kNone; }
  // "latency=12ms,jitter=3ms,rate=4000000,..." (only what is set; "none"
  // when nothing is): the syntax ParseDirectionFaults reads back.
  std::string Describe() const;
};

// Reads Describe()'s syntax: comma-separated key=value; durations take a
// unit (us, ms, s), sizes are bytes (an optional k or m suffix: KiB, MiB).
// Keys: latency jitter rate burst stall-every stall-for reset-after
// max-write write-gap flip-bit ws (flip|drop|dup|reorder|replay) ws-message
// ws-bit ws-header (0|1) replay-after. kInvalidArgument says which part is
// wrong.
Result<DirectionFaults> ParseDirectionFaults(std::string_view spec);

struct FaultPlan {
  uint64_t seed = 0;
  DirectionFaults to_server;  // client -> upstream
  DirectionFaults to_client;  // upstream -> client
  // "seed=S to-server=... to-client=...": ferry-fault-proxy's flags.
  std::string Describe() const;
};

struct FaultProxyOptions {
  std::string listen_address = "127.0.0.1";
  uint16_t listen_port = 0;                    // 0: any free port
  std::string upstream_address = "127.0.0.1";  // an IPv4 address
  uint16_t upstream_port = 0;
  FaultPlan plan;
  uint64_t max_queued_bytes = 1u << 20;   // per direction, waiting to be written
  uint64_t max_message_bytes = 1u << 20;  // a WebSocket message reassembled to be altered
  // A reordered message whose successor does not come within this time is
  // released unchanged (counted in ws_faults_skipped); a replay copy is sent
  // then even if fewer than `replay_after` messages followed.
  std::chrono::milliseconds hold_timeout{300};
};

struct FaultProxyStats {
  uint64_t connections = 0;            // accepted
  uint64_t open = 0;                   // being relayed now
  uint64_t resets = 0;                 // connections cut by reset_after
  uint64_t bits_flipped = 0;           // raw and WebSocket-level
  uint64_t ws_faults_applied = 0;      // messages dropped, duplicated, reordered, replayed, flipped
  uint64_t ws_faults_skipped = 0;      // a reorder with no successor in time: released unchanged
  uint64_t ws_gave_up = 0;             // directions turned into a byte relay (message too large)
  uint64_t ws_messages_to_server = 0;  // WebSocket data messages parsed (directions with ws faults)
  uint64_t ws_messages_to_client = 0;
  uint64_t bytes_to_server = 0;  // written to the upstream
  uint64_t bytes_to_client = 0;  // written to clients
  uint64_t stalls = 0;
  uint64_t max_buffered = 0;  // most bytes one direction held at once (the memory bound)
};

class FaultProxy {
 public:
  // Binds and starts accepting. kInvalidArgument for a bad address,
  // kUnavailable when the port cannot be bound.
  static Result<std::unique_ptr<FaultProxy>> Start(const FaultProxyOptions& options);
  // Resets every open connection and joins all threads.
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  uint16_t port() const { return port_; }
  // ws://<listen address>:<port>
  std::string url() const;
  // The plan for connections accepted from now on (open ones keep theirs).
  void SetPlan(const FaultPlan& plan);
  FaultPlan plan() const;
  FaultProxyStats stats() const;
  // Waits until no connection is being relayed; false after `timeout`.
  bool WaitIdle(std::chrono::milliseconds timeout) const;

  struct Shared;  // counters and the stop signal, shared with the relays

 private:
  explicit FaultProxy(const FaultProxyOptions& options);
  void AcceptLoop();

  FaultProxyOptions options_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::shared_ptr<Shared> shared_;
  mutable std::mutex mu_;
  FaultPlan plan_;  // guarded by mu_
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers_;  // guarded by mu_
  std::thread acceptor_;
};

}  // namespace ferry::testing
