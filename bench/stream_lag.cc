// ferry-stream-lag: replication lag of a stream, agent to hub, at a steady
// record rate. Run by bench/stream-lag.sh against a real ferry-agent and
// ferry-hub; see bench/README.md, "Stream replication lag".
//
// A producer appends records to the agent's stream through its local API
// at --rate records/s, in batches every --batch-ms; each batch's answer
// (the records are durable at the agent) is timed. A poller asks the hub
// for the stream's next offset every --poll-ms and times each advance. A
// record's lag is the time from its batch's answer to the first poll that
// saw the hub hold it (durable there). Prints p50/p90/p99/max over every
// record, in ms, as one JSON object on stdout.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

// One keep-alive HTTP/1.1 connection to 127.0.0.1:port.
class Http {
 public:
  explicit Http(uint16_t port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  std::pair<int, std::string> Call(http::verb verb, const std::string& target,
                                   const std::string& body, const std::string& type,
                                   const std::string& token = "") {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!body.empty()) req.set(http::field::content_type, type);
    req.body() = body;
    req.keep_alive(true);
    req.prepare_payload();
    http::write(socket_, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(socket_, buffer, res);
    return {res.result_int(), res.body()};
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(i), v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Replication lag of a Ferry stream, agent to hub, at a steady record rate"};
  uint16_t agent_port = 0, hub_port = 0;
  std::string token, tenant = "bench", agent = "bench-agent", stream = "events";
  double rate = 10'000, seconds = 30;
  int batch_ms = 10, poll_ms = 2;
  size_t record_bytes = 100;
  app.add_option("--agent-port", agent_port, "The agent's local API port")->required();
  app.add_option("--hub-port", hub_port, "The hub's port")->required();
  app.add_option("--token", token, "A reader token of the hub")->required();
  app.add_option("--tenant", tenant, "Tenant");
  app.add_option("--agent", agent, "The agent's name at the hub");
  app.add_option("--stream", stream, "Stream name");
  app.add_option("--rate", rate, "Records per second");
  app.add_option("--seconds", seconds, "How long to produce");
  app.add_option("--batch-ms", batch_ms, "A batch every this many ms");
  app.add_option("--poll-ms", poll_ms, "How often to ask the hub");
  app.add_option("--record-bytes", record_bytes, "Bytes per record (>= 28)");
  CLI11_PARSE(app, argc, argv);

  struct Batch {
    uint64_t last;  // offset of the batch's last record
    uint64_t count;
    Clock::time_point answered;
  };
  std::vector<Batch> batches;
  std::mutex mu;
  struct Advance {
    uint64_t next;
    Clock::time_point seen;
  };
  std::vector<Advance> advances;
  std::atomic<bool> producing{true};
  std::atomic<uint64_t> produced_end{0};

  std::thread poller([&] {
    Http hub(hub_port);
    const std::string target = "/v1/tenants/" + tenant + "/streams?agent=" + agent;
    uint64_t last = 0;
    while (true) {
      auto [status, body] = hub.Call(http::verb::get, target, "", "", token);
      const auto now = Clock::now();
      if (status == 200) {
        const json::value answer = json::parse(body);
        for (const json::value& s : answer.at("streams").as_array()) {
          if (s.at("stream").as_string() != stream) continue;
          const uint64_t next = s.at("next_offset").to_number<uint64_t>();
          if (next > last) {
            std::lock_guard lock(mu);
            advances.push_back({next, now});
            last = next;
          }
        }
      }
      if (!producing.load() && last >= produced_end.load()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
    }
  });

  Http api(agent_port);
  const auto per_batch =
      static_cast<size_t>(std::max(1.0, rate * static_cast<double>(batch_ms) / 1000.0));
  const std::string filler(record_bytes > 28 ? record_bytes - 28 : 0, 'x');
  const auto start = Clock::now();
  const auto stop =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto next_at = start;
  uint64_t seq = 0;
  while (Clock::now() < stop) {
    std::string body;
    for (size_t i = 0; i < per_batch; ++i) {
      char head[32];
      std::snprintf(head, sizeof(head), "{\"n\":\"%012llu\",\"p\":\"",
                    static_cast<unsigned long long>(seq++));
      body += head + filler + "\"}\n";
    }
    auto [status, answer] = api.Call(http::verb::post, "/v1/streams/" + stream + "/records", body,
                                     "application/x-ndjson");
    const auto answered = Clock::now();
    if (status != 200) {
      std::cerr << "append failed: " << status << " " << answer << "\n";
      producing = false;
      poller.detach();  // it may wait for offsets that never come
      return 1;
    }
    const uint64_t last = json::parse(answer).at("last").to_number<uint64_t>();
    {
      std::lock_guard lock(mu);
      batches.push_back({last, per_batch, answered});
    }
    produced_end = last + 1;
    next_at += std::chrono::milliseconds(batch_ms);
    std::this_thread::sleep_until(next_at);  // the producer's pace, not a wait for a condition
  }
  const double produce_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  producing = false;
  poller.join();

  // Each batch's lag: from its answer to the first advance past its last record.
  std::vector<double> lag_ms;
  size_t a = 0;
  for (const Batch& b : batches) {
    while (a < advances.size() && advances[a].next <= b.last) ++a;
    if (a == advances.size()) break;
    const double ms =
        std::chrono::duration<double, std::milli>(advances[a].seen - b.answered).count();
    for (uint64_t i = 0; i < b.count; ++i) lag_ms.push_back(std::max(0.0, ms));
  }
  const uint64_t records = seq;
  json::object out;
  out["records"] = records;
  out["seconds"] = produce_seconds;
  out["records_per_s"] = static_cast<double>(records) / produce_seconds;
  out["record_bytes"] = record_bytes;
  out["batch_ms"] = batch_ms;
  out["poll_ms"] = poll_ms;
  out["lag_p50_ms"] = Percentile(lag_ms, 0.50);
  out["lag_p90_ms"] = Percentile(lag_ms, 0.90);
  out["lag_p99_ms"] = Percentile(lag_ms, 0.99);
  out["lag_max_ms"] = lag_ms.empty() ? 0.0 : *std::max_element(lag_ms.begin(), lag_ms.end());
  std::cout << json::serialize(out) << "\n";
  return 0;
}
