// LinkSession: the Boost.Beast side of one link session, shared by both
// roles: a WebSocket stream on its own strand, the Noise XX handshake, the
// record layer, the bounded queues behind LinkConnection's blocking calls,
// keepalive pings, the idle timeout and the close. Internal to transport/:
// LinkServer and LinkClient create sessions, LinkConnection wraps them.
//
// Lifetime: owned by shared_ptr (pending asynchronous operations hold a
// reference); the session also holds the io_context it runs on, so that
// its sockets, timers and strand are always destroyed before the
// io_context, whoever drops the last reference.
//
// Threading: everything named On*/Do* and the handshake run on the strand.
// The public blocking calls (SendFrame, ReceiveFrame, Close, Abort) are
// thread-safe: they touch the queues under mu_ and post work to the strand.
// Work is never posted once the session has ended (the io_context may
// have stopped running), except by Abort, whose callers keep it running.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/bytes.h"
#include "core/sodium.h"
#include "core/status.h"
#include "mirror/noise/handshake_state.h"
#include "mirror/transport/link_connection.h"
#include "mirror/transport/record_reader.h"
#include "mirror/transport/record_writer.h"

namespace ferry::mirror::transport::internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

// An io_context with one thread, for a client connection.
class ClientRuntime {
 public:
  ClientRuntime();
  // Lets run() return once the pending work is done, and joins the thread.
  ~ClientRuntime();
  ClientRuntime(const ClientRuntime&) = delete;
  ClientRuntime& operator=(const ClientRuntime&) = delete;
  const std::shared_ptr<asio::io_context>& io_context() const { return ioc_; }

 private:
  std::shared_ptr<asio::io_context> ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
};

class LinkSession : public std::enable_shared_from_this<LinkSession> {
 public:
  enum class Role { kClient, kServer };
  // Called once, on the strand, when the handshake finished or failed.
  using HandshakeDone = std::function<void(Status)>;

  // `stream` must be connected and use a strand of `ioc` as its executor.
  LinkSession(std::shared_ptr<asio::io_context> ioc, beast::tcp_stream stream, Role role,
              const LinkOptions& options, const noise::KeyPair& local_static);
  ~LinkSession();

  // Server: accepts the WebSocket upgrade `request` (already read and
  // checked by LinkServer) and runs the Noise responder, all before
  // `deadline`.
  void StartServer(http::request<http::string_body> request, SteadyClock::time_point deadline,
                   HandshakeDone done);
  // Client: sends the WebSocket upgrade for `target` (Host: `host`) and runs
  // the Noise initiator, all before `deadline`. `url` names the hub in
  // errors.
  void StartClient(std::string host, std::string target, std::string url,
                   SteadyClock::time_point deadline, HandshakeDone done);
  // Client: checks the responder's static key as soon as the handshake
  // reveals it (XX: after message 2), before this side sends message 3 and
  // with it its own static key; an error fails the handshake with it. Call
  // before StartClient.
  using RemoteStaticCheck = std::function<Status(const sodium::PublicKey&)>;
  void SetRemoteStaticCheck(RemoteStaticCheck check) { remote_check_ = std::move(check); }
  // After a successful handshake: starts reading frames and the keepalive.
  void Activate();

  // LinkConnection's calls (see link_connection.h).
  Status SendFrame(ByteView frame);
  Status SendRecordForTest(ByteView record);
  Result<Bytes> ReceiveFrame(std::chrono::milliseconds timeout);
  void Close(const Status& reason);
  // Ends the session at once with `reason` (dropping queued frames) and
  // closes the WebSocket with a close code for it. Thread-safe; the
  // io_context must still be running.
  void Abort(const Status& reason);

  // Valid after a successful handshake.
  const sodium::PublicKey& peer_key() const { return peer_key_; }
  const Bytes& handshake_hash() const { return handshake_hash_; }
  const std::string& remote_endpoint() const { return remote_endpoint_; }
  LinkCounters counters() const;
  Status status() const;

 private:
  enum class Phase { kHandshake, kOpen, kClosing, kClosed };
  struct Outbound {
    Bytes message;
    bool last_of_frame;
    size_t frame_size;  // on the last message of a frame
  };

  // Handshake (strand).
  void ConfigureStream();
  void ArmHandshakeTimer();
  void OnAccept(beast::error_code ec);
  void OnWsHandshake(beast::error_code ec);
  void BeginNoise();
  void HandshakeStep();
  void OnHandshakeWrite(beast::error_code ec, size_t bytes);
  void OnHandshakeRead(beast::error_code ec, size_t bytes);
  void FinishHandshake(Status status);
  Status HandshakeIoError(beast::error_code ec) const;
  Status WsHandshakeError(beast::error_code ec) const;

  // Data phase (strand).
  void DoRead();
  void ResumeRead();
  void OnRead(beast::error_code ec, size_t bytes);
  Status ReadError(beast::error_code ec) const;
  void MaybeWrite();
  void OnWrite(beast::error_code ec, size_t bytes);
  void ArmKeepalive();
  void OnKeepalive(beast::error_code ec);
  void OnControlFrame(websocket::frame_type kind);

  // Ending (strand).
  void Fail(const Status& status);
  void BeginClose(websocket::close_code code);
  void HardClose();

  // Under mu_.
  bool SetTerminalLocked(const Status& status);
  bool OutboundHasRoomLocked(size_t frame_size) const;
  bool InboundFullLocked() const;
  // Queues encrypted messages and schedules the write (any thread).
  Status EnqueueMessages(std::vector<Bytes> messages, size_t frame_size);

  static websocket::close_code CloseCodeFor(const Status& status);
  std::string Describe() const;

  // Declared first: destroyed last, after every Asio object below.
  const std::shared_ptr<asio::io_context> ioc_;
  websocket::stream<beast::tcp_stream> ws_;
  const asio::any_io_executor executor_;  // the strand
  const Role role_;
  const LinkOptions options_;
  noise::KeyPair local_static_;
  std::string remote_endpoint_;

  // Strand state.
  Phase phase_ = Phase::kHandshake;
  HandshakeDone handshake_done_;
  std::optional<http::request<http::string_body>> request_;  // server, until accepted
  websocket::response_type response_;                        // client
  std::string url_;                                          // client, for errors
  std::string target_;                                       // client
  SteadyClock::time_point handshake_deadline_;
  SteadyClock::duration handshake_timeout_{};
  std::unique_ptr<noise::HandshakeState> handshake_;
  RemoteStaticCheck remote_check_;
  Bytes handshake_out_;
  beast::flat_buffer read_buffer_;
  asio::steady_timer handshake_timer_;
  asio::steady_timer keepalive_timer_;
  asio::steady_timer close_timer_;
  bool close_timer_armed_ = false;
  bool write_in_flight_ = false;
  bool ping_in_flight_ = false;
  bool close_after_drain_ = false;
  SteadyClock::time_point last_received_;
  SteadyClock::time_point last_ping_;
  std::optional<RecordReader> reader_;

  // Written once by the handshake before peer_known_ is set, read-only
  // afterwards.
  sodium::PublicKey peer_key_{};
  Bytes handshake_hash_;
  std::atomic<bool> peer_known_{false};

  // Senders: serialises encryption and queueing so that nonces go out in order.
  std::mutex send_mu_;
  std::optional<RecordWriter> writer_;  // GUARDED_BY(send_mu_) once open

  mutable std::mutex mu_;
  std::condition_variable send_cv_;
  std::condition_variable receive_cv_;
  std::optional<Status> terminal_;  // GUARDED_BY(mu_)
  bool closed_locally_ = false;     // GUARDED_BY(mu_)
  std::deque<Outbound> outbound_;   // GUARDED_BY(mu_)
  size_t outbound_frames_ = 0;      // GUARDED_BY(mu_)
  size_t outbound_bytes_ = 0;       // GUARDED_BY(mu_): frame bytes
  std::deque<Bytes> inbound_;       // GUARDED_BY(mu_)
  size_t inbound_bytes_ = 0;        // GUARDED_BY(mu_)
  bool read_paused_ = false;        // GUARDED_BY(mu_)

  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_received_{0};
  std::atomic<uint64_t> frames_sent_{0};
  std::atomic<uint64_t> frames_received_{0};
};

}  // namespace ferry::mirror::transport::internal
