// ferry-fault-proxy: the FaultProxy of tests/tools/fault_proxy.h as a
// program, to put bad networks between a ferry-agent (or ferry-link-peer)
// and a ferry-hub by hand. Not shipped.
//
//   ferry-fault-proxy --upstream 127.0.0.1:7070 [--listen 127.0.0.1:7071]
//       [--seed S] [--to-server SPEC] [--to-client SPEC] [--port-file F]
//
// SPEC is DirectionFaults' syntax, e.g. "latency=20ms,jitter=5ms,rate=1m"
// or "ws=reorder,ws-message=12"; a test failure prints the plan it ran in
// exactly these flags. Runs until SIGINT or SIGTERM, then prints its counters.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "core/bytes.h"
#include "core/env.h"
#include "tests/tools/fault_proxy.h"

namespace {

using ferry::testing::FaultProxy;
using ferry::testing::FaultProxyOptions;

bool SplitHostPort(const std::string& text, std::string& host, uint16_t& port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  try {
    const int p = std::stoi(text.substr(colon + 1));
    if (p < 0 || p > 65535) return false;
    port = static_cast<uint16_t>(p);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A userspace network fault proxy for Ferry's tests."};
  std::string upstream, listen = "127.0.0.1:0", to_server = "none", to_client = "none", port_file;
  uint64_t seed = 1;
  app.add_option("--upstream", upstream, "HOST:PORT to relay to (IPv4)")->required();
  app.add_option("--listen", listen, "HOST:PORT to listen on (port 0: any)");
  app.add_option("--seed", seed, "Seed of every random choice");
  app.add_option("--to-server", to_server, "Faults client -> upstream (fault_proxy.h syntax)");
  app.add_option("--to-client", to_client, "Faults upstream -> client");
  app.add_option("--port-file", port_file, "Write the bound port here");
  CLI11_PARSE(app, argc, argv);

  FaultProxyOptions options;
  if (!SplitHostPort(upstream, options.upstream_address, options.upstream_port) ||
      !SplitHostPort(listen, options.listen_address, options.listen_port)) {
    std::fprintf(stderr, "ferry-fault-proxy: --upstream and --listen want HOST:PORT\n");
    return 2;
  }
  options.plan.seed = seed;
  for (auto [spec, out] : {std::pair{&to_server, &options.plan.to_server},
                           std::pair{&to_client, &options.plan.to_client}}) {
    auto parsed = ferry::testing::ParseDirectionFaults(*spec);
    if (!parsed.ok()) {
      std::fprintf(stderr, "ferry-fault-proxy: %s\n", parsed.status().ToString().c_str());
      return 2;
    }
    *out = *parsed;
  }

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread starts

  auto proxy = FaultProxy::Start(options);
  if (!proxy.ok()) {
    std::fprintf(stderr, "ferry-fault-proxy: %s\n", proxy.status().ToString().c_str());
    return 1;
  }
  std::printf("ferry-fault-proxy: %s -> %s, %s\n", (*proxy)->url().c_str(), upstream.c_str(),
              options.plan.Describe().c_str());
  std::fflush(stdout);
  if (!port_file.empty()) {
    const std::string text = std::to_string((*proxy)->port()) + "\n";
    ferry::Status s =
        ferry::WriteFileAtomic(*ferry::Env::Default(), port_file, ferry::AsBytes(text));
    if (!s.ok()) {
      std::fprintf(stderr, "ferry-fault-proxy: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  int sig = 0;
  sigwait(&stop, &sig);
  const auto st = (*proxy)->stats();
  std::printf(
      "ferry-fault-proxy: %llu connections, %llu reset, %llu bits flipped, %llu message faults "
      "(%llu skipped), %llu stalls, %llu bytes to server, %llu to clients, at most %llu "
      "buffered\n",
      static_cast<unsigned long long>(st.connections), static_cast<unsigned long long>(st.resets),
      static_cast<unsigned long long>(st.bits_flipped),
      static_cast<unsigned long long>(st.ws_faults_applied),
      static_cast<unsigned long long>(st.ws_faults_skipped),
      static_cast<unsigned long long>(st.stalls),
      static_cast<unsigned long long>(st.bytes_to_server),
      static_cast<unsigned long long>(st.bytes_to_client),
      static_cast<unsigned long long>(st.max_buffered));
  return 0;
}
