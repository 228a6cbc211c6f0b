#include "tests/tools/fault_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <tuple>

#include "core/bytes.h"

namespace ferry::testing {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
using std::chrono::microseconds;
using std::chrono::milliseconds;

struct FaultProxy::Shared {
  std::atomic<bool> stopping{false};
  int wake[2] = {-1, -1};  // readable once stopping: wakes every poll
  std::atomic<uint64_t> connections{0}, open{0}, resets{0}, bits_flipped{0}, ws_applied{0},
      ws_skipped{0}, ws_gave_up{0}, ws_messages_to_server{0}, ws_messages_to_client{0},
      bytes_to_server{0}, bytes_to_client{0}, stalls{0}, max_buffered{0};
  mutable std::mutex idle_mu;
  mutable std::condition_variable idle_cv;

  void NoteBuffered(uint64_t bytes) {
    uint64_t seen = max_buffered.load();
    while (bytes > seen && !max_buffered.compare_exchange_weak(seen, bytes)) {
    }
  }
};

std::string_view WsFaultName(WsFault fault) {
  switch (fault) {
    case WsFault::kNone:
      return "none";
    case WsFault::kFlipBit:
      return "flip";
    case WsFault::kDrop:
      return "drop";
    case WsFault::kDuplicate:
      return "dup";
    case WsFault::kReorder:
      return "reorder";
    case WsFault::kReplay:
      return "replay";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// Describe and parse

namespace {

std::string Duration(microseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "ms";
  return std::to_string(d.count()) + "us";
}

}  // namespace

std::string DirectionFaults::Describe() const {
  std::string out;
  auto add = [&out](const std::string& kv) {
    if (!out.empty()) out += ',';
    out += kv;
  };
  if (latency.count() > 0) add("latency=" + Duration(latency));
  if (jitter.count() > 0) add("jitter=" + Duration(jitter));
  if (rate > 0) add("rate=" + std::to_string(rate));
  if (burst > 0) add("burst=" + std::to_string(burst));
  if (stall_every > 0) {
    add("stall-every=" + std::to_string(stall_every));
    add("stall-for=" + Duration(stall_for));
  }
  if (reset_after > 0) add("reset-after=" + std::to_string(reset_after));
  if (max_write > 0) add("max-write=" + std::to_string(max_write));
  if (write_gap.count() > 0) add("write-gap=" + Duration(write_gap));
  if (flip_bit >= 0) add("flip-bit=" + std::to_string(flip_bit));
  if (ws != WsFault::kNone) {
    add("ws=" + std::string(WsFaultName(ws)));
    add("ws-message=" + std::to_string(ws_message));
    if (ws == WsFault::kFlipBit) add("ws-bit=" + std::to_string(ws_bit));
    if (ws == WsFault::kFlipBit && ws_header) add("ws-header=1");
    if (ws == WsFault::kReplay) add("replay-after=" + std::to_string(replay_after));
  }
  return out.empty() ? "none" : out;
}

std::string FaultPlan::Describe() const {
  return "seed=" + std::to_string(seed) + " to-server=" + to_server.Describe() +
         " to-client=" + to_client.Describe();
}

namespace {

Result<uint64_t> ParseNumber(std::string_view key, std::string_view text, uint64_t* multiplier) {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) {
    return InvalidArgumentError("fault spec: " + std::string(key) + "=" + std::string(text) +
                                " is not a number");
  }
  const std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  if (multiplier != nullptr) *multiplier = 1;
  if (unit.empty()) return value;
  if (multiplier == nullptr) {
    return InvalidArgumentError("fault spec: " + std::string(key) + " takes no unit");
  }
  if (unit == "us") {
    *multiplier = 1;
  } else if (unit == "ms") {
    *multiplier = 1000;
  } else if (unit == "s") {
    *multiplier = 1000000;
  } else {
    return InvalidArgumentError("fault spec: unknown unit in " + std::string(key) + "=" +
                                std::string(text));
  }
  return value;
}

Result<microseconds> ParseDuration(std::string_view key, std::string_view text) {
  uint64_t unit = 0;
  ASSIGN_OR_RETURN(uint64_t value, ParseNumber(key, text, &unit));
  if (!text.empty() && text.back() >= '0' && text.back() <= '9') {
    return InvalidArgumentError("fault spec: " + std::string(key) + " needs a unit (us, ms or s)");
  }
  return microseconds(static_cast<int64_t>(value * unit));
}

Result<uint64_t> ParseSize(std::string_view key, std::string_view text) {
  uint64_t shift = 0;
  if (!text.empty() && (text.back() == 'k' || text.back() == 'm')) {
    shift = text.back() == 'k' ? 10 : 20;
    text.remove_suffix(1);
  }
  ASSIGN_OR_RETURN(uint64_t value, ParseNumber(key, text, nullptr));
  return value << shift;
}

}  // namespace

Result<DirectionFaults> ParseDirectionFaults(std::string_view spec) {
  DirectionFaults f;
  if (spec.empty() || spec == "none") return f;
  while (!spec.empty()) {
    const size_t comma = spec.find(',');
    const std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return InvalidArgumentError("fault spec: " + std::string(item) + " is not key=value");
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (key == "latency") {
      ASSIGN_OR_RETURN(f.latency, ParseDuration(key, value));
    } else if (key == "jitter") {
      ASSIGN_OR_RETURN(f.jitter, ParseDuration(key, value));
    } else if (key == "rate") {
      ASSIGN_OR_RETURN(f.rate, ParseSize(key, value));
    } else if (key == "burst") {
      ASSIGN_OR_RETURN(f.burst, ParseSize(key, value));
    } else if (key == "stall-every") {
      ASSIGN_OR_RETURN(f.stall_every, ParseSize(key, value));
    } else if (key == "stall-for") {
      ASSIGN_OR_RETURN(microseconds d, ParseDuration(key, value));
      f.stall_for = std::chrono::duration_cast<milliseconds>(d);
    } else if (key == "reset-after") {
      ASSIGN_OR_RETURN(f.reset_after, ParseSize(key, value));
    } else if (key == "max-write") {
      ASSIGN_OR_RETURN(f.max_write, ParseSize(key, value));
    } else if (key == "write-gap") {
      ASSIGN_OR_RETURN(f.write_gap, ParseDuration(key, value));
    } else if (key == "flip-bit") {
      ASSIGN_OR_RETURN(uint64_t bit, ParseNumber(key, value, nullptr));
      f.flip_bit = static_cast<int64_t>(bit);
    } else if (key == "ws") {
      bool found = false;
      for (WsFault w : {WsFault::kFlipBit, WsFault::kDrop, WsFault::kDuplicate, WsFault::kReorder,
                        WsFault::kReplay}) {
        if (value == WsFaultName(w)) {
          f.ws = w;
          found = true;
        }
      }
      if (!found) {
        return InvalidArgumentError("fault spec: ws=" + std::string(value) +
                                    ": want flip, drop, dup, reorder or replay");
      }
    } else if (key == "ws-message") {
      ASSIGN_OR_RETURN(f.ws_message, ParseNumber(key, value, nullptr));
    } else if (key == "ws-bit") {
      ASSIGN_OR_RETURN(f.ws_bit, ParseNumber(key, value, nullptr));
    } else if (key == "ws-header") {
      ASSIGN_OR_RETURN(uint64_t on, ParseNumber(key, value, nullptr));
      f.ws_header = on != 0;
    } else if (key == "replay-after") {
      ASSIGN_OR_RETURN(f.replay_after, ParseNumber(key, value, nullptr));
    } else {
      return InvalidArgumentError("fault spec: unknown key " + std::string(key));
    }
  }
  if (f.stall_every > 0 && f.stall_for.count() <= 0) {
    return InvalidArgumentError("fault spec: stall-every needs stall-for");
  }
  return f;
}

// ---------------------------------------------------------------------------
// One direction of one connection

namespace {

uint64_t Mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool ContainsNoCase(std::string_view haystack, std::string_view needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                     [](char a, char b) {
                       return std::tolower(static_cast<unsigned char>(a)) ==
                              std::tolower(static_cast<unsigned char>(b));
                     }) != haystack.end();
}

constexpr size_t kMaxHttpHead = 64 << 10;

class Pipe {
 public:
  enum class WriteResult { kIdle, kBlocked, kCut, kError };

  Pipe(const DirectionFaults& faults, bool to_server, uint64_t seed,
       const FaultProxyOptions& options, FaultProxy::Shared& shared)
      : f_(faults),
        to_server_(to_server),
        options_(options),
        shared_(shared),
        rng_(seed),
        burst_(faults.burst > 0 ? faults.burst : std::max<uint64_t>(faults.rate / 50, 16 << 10)),
        tokens_(static_cast<double>(burst_)),
        refilled_(SteadyClock::now()),
        phase_(faults.ParsesWebSocket() ? Phase::kHttp : Phase::kRaw) {
    if (f_.stall_every > 0) next_stall_ = DrawStall();
  }

  bool WantsRead() const { return !eof_ && queued_ < options_.max_queued_bytes; }
  // The far side failed: nothing more can reach it, and nothing more is
  // read for it.
  void Kill() {
    queue_.clear();
    queued_ = 0;
    held_.reset();
    replay_.reset();
    eof_ = true;
    killed_ = true;
  }
  bool killed() const { return killed_; }
  // Everything read was written (after the source's EOF or reset).
  bool Drained() const { return eof_ && queue_.empty() && !held_ && !replay_; }
  bool source_reset() const { return source_reset_; }

  void OnRead(uint8_t* data, size_t n, TimePoint now) {
    now_ = now;
    if (f_.flip_bit >= 0) {
      const uint64_t bit = static_cast<uint64_t>(f_.flip_bit);
      if (bit / 8 >= in_ && bit / 8 < in_ + n) {
        data[bit / 8 - in_] ^= static_cast<uint8_t>(1u << (bit % 8));
        shared_.bits_flipped.fetch_add(1);
      }
    }
    in_ += n;
    Consume(data, n);
    NoteMemory();
  }

  // The source closed (FIN) or failed (`reset`): what was read still goes
  // out, in order and on time; then the far side sees the same.
  void OnSourceEnd(bool reset, TimePoint now) {
    now_ = now;
    eof_ = true;
    source_reset_ = reset;
    if (held_) {  // the successor never came: released unchanged
      Emit(std::move(*held_));
      held_.reset();
      shared_.ws_skipped.fetch_add(1);
    }
    replay_.reset();
    Emit(std::move(message_));
    message_.clear();
    if (phase_ == Phase::kHttp) {
      Emit(Bytes(head_.begin(), head_.end()));
      head_.clear();
    }
    Emit(Bytes(buf_.begin() + static_cast<std::ptrdiff_t>(start_), buf_.end()));
    buf_.clear();
    start_ = 0;
  }

  void OnTimers(TimePoint now) {
    now_ = now;
    if (held_ && now >= hold_deadline_) {
      Emit(std::move(*held_));
      held_.reset();
      shared_.ws_skipped.fetch_add(1);
    }
    if (replay_ && now >= hold_deadline_) {  // replayed later in time instead
      Emit(std::move(*replay_));
      replay_.reset();
      shared_.ws_applied.fetch_add(1);
    }
  }

  WriteResult Write(int fd, TimePoint now) {
    while (!queue_.empty()) {
      Segment& s = queue_.front();
      if (s.due > now || stalled_until_ > now) return WriteResult::kIdle;
      size_t n = s.data.size() - s.off;
      if (f_.max_write > 0) {
        n = std::min<size_t>(n, std::uniform_int_distribution<uint64_t>(1, f_.max_write)(rng_));
      }
      if (f_.rate > 0) {
        Refill(now);
        if (tokens_ < static_cast<double>(std::min<uint64_t>(n, TokenStep()))) {
          return WriteResult::kIdle;
        }
        n = std::min<size_t>(n, static_cast<size_t>(tokens_));
      }
      if (f_.reset_after > 0) n = std::min<size_t>(n, f_.reset_after - out_);
      const ssize_t w = ::send(fd, s.data.data() + s.off, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return WriteResult::kBlocked;
        return WriteResult::kError;
      }
      const auto written = static_cast<size_t>(w);
      s.off += written;
      out_ += written;
      queued_ -= written;
      if (f_.rate > 0) tokens_ -= static_cast<double>(written);
      (to_server_ ? shared_.bytes_to_server : shared_.bytes_to_client).fetch_add(written);
      if (f_.reset_after > 0 && out_ >= f_.reset_after) return WriteResult::kCut;
      if (f_.stall_every > 0 && out_ >= next_stall_) {
        stalled_until_ = now + f_.stall_for;
        next_stall_ = out_ + DrawStall();
        shared_.stalls.fetch_add(1);
      }
      if (s.off == s.data.size()) queue_.pop_front();
      if (f_.max_write > 0 && f_.write_gap.count() > 0 && !queue_.empty() && rng_() % 16 == 0) {
        Segment& next = queue_.front();
        next.due = std::max(next.due, now + microseconds(std::uniform_int_distribution<int64_t>(
                                                0, f_.write_gap.count())(rng_)));
      }
    }
    return WriteResult::kIdle;
  }

  // When a write or a timer may next be due; TimePoint::max() when only
  // input or the socket can change anything (`blocked`: the last write
  // would block, so the socket's POLLOUT, not a time, says when to retry).
  TimePoint NextWake(TimePoint now, bool blocked) const {
    TimePoint wake = TimePoint::max();
    if (held_ || replay_) wake = hold_deadline_;
    if (queue_.empty() || blocked) return wake;
    TimePoint ready = std::max(queue_.front().due, stalled_until_);
    if (f_.rate > 0) {
      const Segment& s = queue_.front();
      const double need =
          static_cast<double>(std::min<uint64_t>(s.data.size() - s.off, TokenStep()));
      const double have =
          std::min(static_cast<double>(burst_),
                   tokens_ + std::chrono::duration<double>(now - refilled_).count() *
                                 static_cast<double>(f_.rate));
      if (have < need) {
        const auto wait = std::chrono::duration_cast<SteadyClock::duration>(
            std::chrono::duration<double>((need - have) / static_cast<double>(f_.rate)));
        ready = std::max(ready, now + wait + microseconds(1));
      }
    }
    return std::min(wake, ready);
  }

 private:
  enum class Phase { kHttp, kFrames, kRaw };
  struct Segment {
    Bytes data;
    size_t off = 0;
    TimePoint due;
  };

  uint64_t TokenStep() const { return std::min<uint64_t>(burst_, 4096); }
  uint64_t DrawStall() {
    return std::uniform_int_distribution<uint64_t>(std::max<uint64_t>(f_.stall_every / 2, 1),
                                                   f_.stall_every * 3 / 2 + 1)(rng_);
  }
  void Refill(TimePoint now) {
    tokens_ = std::min(static_cast<double>(burst_),
                       tokens_ + std::chrono::duration<double>(now - refilled_).count() *
                                     static_cast<double>(f_.rate));
    refilled_ = now;
  }
  void NoteMemory() {
    uint64_t held = queued_ + (buf_.size() - start_) + message_.size() + head_.size();
    if (held_) held += held_->size();
    if (replay_) held += replay_->size();
    shared_.NoteBuffered(held);
  }

  // Queues bytes for the far side, `latency` + U[0, jitter] from now but
  // never before earlier bytes.
  void Emit(Bytes data) {
    if (data.empty()) return;
    TimePoint due = now_ + f_.latency;
    if (f_.jitter.count() > 0) {
      due += microseconds(std::uniform_int_distribution<int64_t>(0, f_.jitter.count())(rng_));
    }
    due = std::max(due, last_due_);
    last_due_ = due;
    queued_ += data.size();
    queue_.push_back({std::move(data), 0, due});
  }

  void Consume(const uint8_t* data, size_t n) {
    if (phase_ == Phase::kRaw) {
      Emit(Bytes(data, data + n));
      return;
    }
    if (phase_ == Phase::kHttp) {
      head_.append(reinterpret_cast<const char*>(data), n);
      const size_t end = head_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (head_.size() > kMaxHttpHead) GiveUp();
        return;
      }
      const std::string head = head_.substr(0, end + 4);
      const std::string rest = head_.substr(end + 4);
      head_.clear();
      // The upgrade passes untouched; WebSocket frames follow only a
      // request to upgrade and a 101 answer (anything else: plain bytes).
      const bool upgrade = to_server_ ? ContainsNoCase(head, "upgrade: websocket")
                                      : head.rfind("HTTP/1.1 101", 0) == 0;
      phase_ = upgrade ? Phase::kFrames : Phase::kRaw;
      Emit(Bytes(head.begin(), head.end()));
      Consume(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
      return;
    }
    buf_.insert(buf_.end(), data, data + n);
    ParseFrames();
  }

  // Turns this direction into a plain relay (a message too large to hold,
  // an HTTP head too long): everything buffered goes out as it is.
  void GiveUp() {
    shared_.ws_gave_up.fetch_add(1);
    if (held_) {
      Emit(std::move(*held_));
      held_.reset();
    }
    replay_.reset();
    Emit(std::move(message_));
    message_.clear();
    Emit(Bytes(head_.begin(), head_.end()));
    head_.clear();
    Emit(Bytes(buf_.begin() + static_cast<std::ptrdiff_t>(start_), buf_.end()));
    buf_.clear();
    start_ = 0;
    phase_ = Phase::kRaw;
  }

  void ParseFrames() {
    while (phase_ == Phase::kFrames) {
      const size_t avail = buf_.size() - start_;
      if (avail < 2) break;
      const uint8_t* p = buf_.data() + start_;
      const bool fin = (p[0] & 0x80) != 0;
      const int opcode = p[0] & 0x0f;
      const bool masked = (p[1] & 0x80) != 0;
      uint64_t len = p[1] & 0x7f;
      size_t header = 2;
      if (len == 126) {
        if (avail < 4) break;
        len = (uint64_t{p[2]} << 8) | p[3];
        header = 4;
      } else if (len == 127) {
        if (avail < 10) break;
        len = 0;
        for (int i = 2; i < 10; ++i) len = (len << 8) | p[i];
        header = 10;
      }
      if (masked) header += 4;
      if (len > options_.max_message_bytes ||
          message_.size() + header + len > options_.max_message_bytes) {
        GiveUp();
        return;
      }
      if (avail < header + len) break;
      const size_t size = header + static_cast<size_t>(len);
      const auto first = buf_.begin() + static_cast<std::ptrdiff_t>(start_);
      start_ += size;
      if (opcode >= 8) {  // control frames pass at once, even between fragments
        Emit(Bytes(first, first + static_cast<std::ptrdiff_t>(size)));
        continue;
      }
      if (message_.empty()) {
        payload_at_ = header;
        payload_len_ = static_cast<size_t>(len);
      }
      message_.insert(message_.end(), first, first + static_cast<std::ptrdiff_t>(size));
      if (fin) {
        Bytes m = std::move(message_);
        message_.clear();
        OnMessage(std::move(m));
      }
    }
    if (start_ == buf_.size()) {
      buf_.clear();
      start_ = 0;
    } else if (start_ > (64u << 10)) {
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(start_));
      start_ = 0;
    }
  }

  void OnMessage(Bytes m) {
    const uint64_t index = index_++;
    (to_server_ ? shared_.ws_messages_to_server : shared_.ws_messages_to_client).fetch_add(1);
    if (held_) {  // the reorder: the next message first, then the held one
      Emit(std::move(m));
      Emit(std::move(*held_));
      held_.reset();
      shared_.ws_applied.fetch_add(1);
      return;
    }
    if (replay_) {
      Emit(std::move(m));
      if (--replay_left_ == 0) {
        Emit(std::move(*replay_));
        replay_.reset();
        shared_.ws_applied.fetch_add(1);
      }
      return;
    }
    if (f_.ws == WsFault::kNone || index != f_.ws_message) {
      Emit(std::move(m));
      return;
    }
    switch (f_.ws) {
      case WsFault::kFlipBit:
        // Masking is an XOR: a bit flipped in the masked payload is the
        // same bit flipped in the unmasked one.
        if (f_.ws_header) {
          const uint64_t bit = f_.ws_bit % (uint64_t{payload_at_} * 8);
          m[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
          shared_.bits_flipped.fetch_add(1);
          shared_.ws_applied.fetch_add(1);
        } else if (payload_len_ > 0) {
          const uint64_t bit = f_.ws_bit % (uint64_t{payload_len_} * 8);
          m[payload_at_ + bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
          shared_.bits_flipped.fetch_add(1);
          shared_.ws_applied.fetch_add(1);
        }
        Emit(std::move(m));
        break;
      case WsFault::kDrop:
        shared_.ws_applied.fetch_add(1);
        break;
      case WsFault::kDuplicate:
        Emit(m);
        Emit(std::move(m));
        shared_.ws_applied.fetch_add(1);
        break;
      case WsFault::kReorder:
        held_ = std::move(m);
        hold_deadline_ = now_ + options_.hold_timeout;
        break;
      case WsFault::kReplay:
        replay_ = m;
        replay_left_ = std::max<uint64_t>(f_.replay_after, 1);
        hold_deadline_ = now_ + options_.hold_timeout;
        Emit(std::move(m));
        break;
      case WsFault::kNone:
        break;
    }
  }

  const DirectionFaults f_;
  const bool to_server_;
  const FaultProxyOptions& options_;
  FaultProxy::Shared& shared_;
  std::mt19937_64 rng_;
  const uint64_t burst_;
  double tokens_;
  TimePoint refilled_;
  TimePoint now_{};
  TimePoint last_due_{};
  TimePoint stalled_until_{};
  uint64_t next_stall_ = 0;
  std::deque<Segment> queue_;
  uint64_t queued_ = 0;
  uint64_t in_ = 0;   // bytes read from the source
  uint64_t out_ = 0;  // bytes written to the far side
  bool eof_ = false;
  bool source_reset_ = false;
  bool killed_ = false;

  Phase phase_;
  std::string head_;  // the HTTP head so far
  Bytes buf_;         // frames not yet complete, from start_
  size_t start_ = 0;
  Bytes message_;  // the data frames of the message being reassembled
  size_t payload_at_ = 0;
  size_t payload_len_ = 0;
  uint64_t index_ = 0;
  std::optional<Bytes> held_;    // kReorder: waiting for its successor
  std::optional<Bytes> replay_;  // kReplay: the copy to send again
  uint64_t replay_left_ = 0;
  TimePoint hold_deadline_{};
};

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }
void SetNoDelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
void Reset(int fd) {
  linger l{1, 0};  // close with RST: the peer sees the connection drop
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

// Waits (up to 2 s, or until the proxy stops) until the far side's kernel
// acknowledged everything written to `fd`.
void WaitUntilSent(int fd, FaultProxy::Shared& shared) {
  const TimePoint deadline = SteadyClock::now() + std::chrono::seconds(2);
  while (!shared.stopping.load() && SteadyClock::now() < deadline) {
    int unsent = 0;
    if (::ioctl(fd, SIOCOUTQ, &unsent) != 0 || unsent == 0) return;
    pollfd wake{shared.wake[0], POLLIN, 0};
    const timespec step{0, 1'000'000};
    ::ppoll(&wake, 1, &step, nullptr);
  }
}

Result<sockaddr_in> Address(const std::string& host, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgumentError("fault proxy: " + host + " is not an IPv4 address");
  }
  return addr;
}

void RunRelay(int client, const FaultPlan& plan, uint64_t index, const FaultProxyOptions& options,
              FaultProxy::Shared& shared) {
  Result<sockaddr_in> upstream = Address(options.upstream_address, options.upstream_port);
  const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (!upstream.ok() || server < 0 ||
      ::connect(server, reinterpret_cast<const sockaddr*>(&*upstream), sizeof(sockaddr_in)) != 0) {
    if (server >= 0) ::close(server);
    Reset(client);
    return;
  }
  SetNoDelay(client);
  SetNoDelay(server);
  SetNonBlocking(client);
  SetNonBlocking(server);
  Pipe up(plan.to_server, true, Mix(plan.seed ^ Mix(index * 2)), options, shared);
  Pipe down(plan.to_client, false, Mix(plan.seed ^ Mix(index * 2 + 1)), options, shared);
  bool up_shut = false, down_shut = false;
  bool hup[2] = {false, false};  // client, server: hung up, not polled until read again
  // A cut, a reset or a failed socket: both sides end with a reset.
  bool failed = false;
  std::vector<uint8_t> buf(64 << 10);
  while (!shared.stopping.load()) {
    TimePoint now = SteadyClock::now();
    up.OnTimers(now);
    down.OnTimers(now);
    const Pipe::WriteResult wu = up.Write(server, now);
    const Pipe::WriteResult wd = down.Write(client, now);
    if (wu == Pipe::WriteResult::kCut || wd == Pipe::WriteResult::kCut) {
      // The N bytes are in the socket's send queue: let them reach the far
      // side's kernel first (a reset discards what is queued), then cut.
      WaitUntilSent(wu == Pipe::WriteResult::kCut ? server : client, shared);
      shared.resets.fetch_add(1);
      failed = true;
      break;
    }
    // A far side that failed gets nothing more; what its own socket still
    // yields goes on to the other side, then that side is reset too (as
    // the bytes before a reset arrive before it).
    if (wu == Pipe::WriteResult::kError) {
      up.Kill();
      failed = true;
    }
    if (wd == Pipe::WriteResult::kError) {
      down.Kill();
      failed = true;
    }
    bool end = false;
    for (auto [pipe, shut, fd] : {std::tuple<Pipe*, bool*, int>{&up, &up_shut, server},
                                  std::tuple<Pipe*, bool*, int>{&down, &down_shut, client}}) {
      if (*shut || !pipe->Drained()) continue;
      if (pipe->source_reset()) {
        failed = true;
        end = true;
      } else {
        if (!pipe->killed()) ::shutdown(fd, SHUT_WR);
        *shut = true;
      }
    }
    if (end || (up_shut && down_shut)) break;

    pollfd fds[3] = {{client, 0, 0}, {server, 0, 0}, {shared.wake[0], POLLIN, 0}};
    if (up.WantsRead()) fds[0].events |= POLLIN;
    if (wd == Pipe::WriteResult::kBlocked) fds[0].events |= POLLOUT;
    if (down.WantsRead()) fds[1].events |= POLLIN;
    if (wu == Pipe::WriteResult::kBlocked) fds[1].events |= POLLOUT;
    // A socket that hung up keeps reporting it: poll it again only to read.
    for (int i = 0; i < 2; ++i) {
      if (hup[i] && !(fds[i].events & POLLIN)) fds[i].fd = -1;
    }
    const TimePoint wake = std::min(up.NextWake(now, wu == Pipe::WriteResult::kBlocked),
                                    down.NextWake(now, wd == Pipe::WriteResult::kBlocked));
    timespec ts{};
    timespec* timeout = nullptr;
    if (wake != TimePoint::max()) {
      const auto wait = std::max<SteadyClock::duration>(wake - now, SteadyClock::duration::zero());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
      ts.tv_sec = static_cast<time_t>(ns / 1000000000);
      ts.tv_nsec = static_cast<long>(ns % 1000000000);
      timeout = &ts;
    }
    if (::ppoll(fds, 3, timeout, nullptr) < 0 && errno != EINTR) {
      failed = true;
      break;
    }
    if (fds[2].revents != 0) break;  // stopping
    now = SteadyClock::now();
    for (int i = 0; i < 2; ++i) {
      Pipe& pipe = i == 0 ? up : down;
      const int fd = i == 0 ? client : server;
      if (fds[i].revents & (POLLHUP | POLLERR)) hup[i] = true;
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)) || !pipe.WantsRead()) continue;
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n > 0) {
        pipe.OnRead(buf.data(), static_cast<size_t>(n), now);
      } else if (n == 0) {
        pipe.OnSourceEnd(false, now);
      } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        pipe.OnSourceEnd(true, now);
      }
    }
  }
  if (failed || shared.stopping.load()) {
    Reset(client);
    Reset(server);
  } else {
    ::close(client);
    ::close(server);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// The proxy

Result<std::unique_ptr<FaultProxy>> FaultProxy::Start(const FaultProxyOptions& options) {
  if (options.max_queued_bytes == 0 || options.max_message_bytes == 0) {
    return InvalidArgumentError("fault proxy: queue and message limits must be positive");
  }
  RETURN_IF_ERROR(Address(options.upstream_address, options.upstream_port).status());
  ASSIGN_OR_RETURN(sockaddr_in addr, Address(options.listen_address, options.listen_port));
  std::unique_ptr<FaultProxy> proxy(new FaultProxy(options));
  proxy->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(proxy->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (proxy->listen_fd_ < 0 ||
      ::bind(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(proxy->listen_fd_, 64) != 0) {
    return UnavailableError("fault proxy: cannot listen on " + options.listen_address + ":" +
                            std::to_string(options.listen_port) + ": " + std::strerror(errno));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  proxy->port_ = ntohs(addr.sin_port);
  if (::pipe2(proxy->shared_->wake, O_CLOEXEC) != 0) {
    return UnavailableError(std::string("fault proxy: pipe: ") + std::strerror(errno));
  }
  FaultProxy* raw = proxy.get();
  proxy->acceptor_ = std::thread([raw] { raw->AcceptLoop(); });
  return proxy;
}

FaultProxy::FaultProxy(const FaultProxyOptions& options)
    : options_(options), shared_(std::make_shared<Shared>()), plan_(options.plan) {}

FaultProxy::~FaultProxy() {
  shared_->stopping.store(true);
  if (shared_->wake[1] >= 0) {
    const char x = 'x';
    (void)!::write(shared_->wake[1], &x, 1);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<Worker> workers;
  {
    std::lock_guard lock(mu_);
    workers.swap(workers_);
  }
  for (Worker& w : workers) w.thread.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : shared_->wake) {
    if (fd >= 0) ::close(fd);
  }
}

std::string FaultProxy::url() const {
  return "ws://" + options_.listen_address + ":" + std::to_string(port_);
}

void FaultProxy::SetPlan(const FaultPlan& plan) {
  std::lock_guard lock(mu_);
  plan_ = plan;
}

FaultPlan FaultProxy::plan() const {
  std::lock_guard lock(mu_);
  return plan_;
}

FaultProxyStats FaultProxy::stats() const {
  const Shared& s = *shared_;
  FaultProxyStats out;
  out.connections = s.connections.load();
  out.open = s.open.load();
  out.resets = s.resets.load();
  out.bits_flipped = s.bits_flipped.load();
  out.ws_faults_applied = s.ws_applied.load();
  out.ws_faults_skipped = s.ws_skipped.load();
  out.ws_gave_up = s.ws_gave_up.load();
  out.ws_messages_to_server = s.ws_messages_to_server.load();
  out.ws_messages_to_client = s.ws_messages_to_client.load();
  out.bytes_to_server = s.bytes_to_server.load();
  out.bytes_to_client = s.bytes_to_client.load();
  out.stalls = s.stalls.load();
  out.max_buffered = s.max_buffered.load();
  return out;
}

bool FaultProxy::WaitIdle(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(shared_->idle_mu);
  return shared_->idle_cv.wait_for(lock, timeout, [this] { return shared_->open.load() == 0; });
}

void FaultProxy::AcceptLoop() {
  uint64_t index = 0;
  while (!shared_->stopping.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {shared_->wake[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) return;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    std::lock_guard lock(mu_);
    // Join the relays that ended, so that threads do not pile up.
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    shared_->connections.fetch_add(1);
    {
      std::lock_guard idle(shared_->idle_mu);
      shared_->open.fetch_add(1);
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::shared_ptr<Shared> shared = shared_;
    workers_.push_back({std::thread([client, plan = plan_, i = index++, this, shared, done] {
                          RunRelay(client, plan, i, options_, *shared);
                          {
                            std::lock_guard idle(shared->idle_mu);
                            shared->open.fetch_sub(1);
                          }
                          shared->idle_cv.notify_all();
                          done->store(true);
                        }),
                        done});
  }
}

}  // namespace ferry::testing
