// Running Ferry's daemons as real background processes in tests, and a TCP
// relay that can cut a connection mid-stream.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ferry::testing {

// A child process with stdout and stderr sent to one log file. The
// destructor kills it (SIGKILL) if it is still running.
class ChildProcess {
 public:
  // Starts argv[0] (a path); aborts the test if it cannot.
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;

  // Sends `signal` (0: none) and waits up to `timeout` for the exit. Returns the exit
  // code, 128 + signal number when killed by one, or -1 on timeout (the
  // process is then killed).
  int Stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Waits up to `timeout` for the process to exit by itself (then kills it
  // and fails the test); returns as Stop.
  int Wait(std::chrono::milliseconds timeout) { return Stop(0, timeout); }
  bool running();

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  std::string log_path_;
};

// Waits until `path` exists and is not empty, and returns its content;
// fails the test and returns "" after `timeout` or if `process` exits first.
std::string WaitForFile(const std::string& path, ChildProcess* process,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A TCP relay on 127.0.0.1: each accepted connection is relayed to
// 127.0.0.1:`upstream_port`. A budget cuts it: once a connection has relayed
// `cut_after_bytes` client-to-server bytes, both of its sockets are reset
// (SO_LINGER 0), as a link that drops. The budget applies to connections
// accepted after it is set.
class CuttingRelay {
 public:
  explicit CuttingRelay(uint16_t upstream_port);
  ~CuttingRelay();
  CuttingRelay(const CuttingRelay&) = delete;
  CuttingRelay& operator=(const CuttingRelay&) = delete;

  uint16_t port() const { return port_; }
  // 0 = never cut.
  void SetCutAfterBytes(uint64_t bytes) { cut_after_.store(bytes); }
  // Connections cut so far.
  int cuts() const { return cuts_.load(); }

 private:
  void AcceptLoop();
  void Relay(int client, int server);

  const uint16_t upstream_port_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::atomic<uint64_t> cut_after_{0};
  std::atomic<int> cuts_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace ferry::testing
