// Streams on a real ferry-agent process (issue 7, "On the agent"): records
// appended through the local API get dense offsets and come back byte for
// byte, answered appends survive kill -9, and bad input gets a 4xx while the
// agent keeps serving. And agent::Streams in-process over a faulty Env: a
// failed write or fsync fails the appends it hits, answers none of their
// records, and the stream goes on without a restart.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/env.h"
#include "edge-agent/agent_config.h"
#include "edge-agent/streams.h"
#include "tests/testing/http_client.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::testing {
namespace {

namespace json = boost::json;

json::value Parse(const HttpResult& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  EXPECT_FALSE(ec) << "HTTP " << r.status << ": " << r.body;
  return ec ? json::value() : v;
}

uint64_t U64(const json::value& v, const char* key) {
  return v.as_object().at(key).to_number<uint64_t>();
}

// A big-endian length prefix and the record.
std::string Framed(const std::string& record) {
  std::string out;
  const uint32_t n = static_cast<uint32_t>(record.size());
  for (int i = 3; i >= 0; --i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out + record;
}

class StreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string ctl = BinDir() + "/ferryctl";
    const std::string keyset = dir_.Sub("tenant.keyset");
    keys_ = dir_.Sub("agent.key");
    ASSERT_EQ(RunCommand({ctl, "keys", "init", "--out", keyset, "--argon2-memory", "8",
                          "--argon2-ops", "1"},
                         {"FERRY_PASSPHRASE=pw"})
                  .exit_code,
              0);
    ASSERT_EQ(
        RunCommand({ctl, "keys", "export-agent", "--keyset", keyset, "--out", keys_}).exit_code, 0);
    config_ = dir_.Sub("agent.yaml");
    WriteFileOrDie(
        config_,
        AsBytes("agent: {name: edge-1}\nstateDir: " + dir_.Sub("state") +
                "\nstreams:\n"
                "  - {name: events, fsync: batch, maxRecordSize: 4KiB, segmentSize: 64KiB}\n"
                "  - {name: metrics, fsync: 20ms}\n"
                "keyset: {file: " +
                keys_ + "}\napi: {listen: \"127.0.0.1:0\"}\n"));
  }

  void StartAgent() {
    const std::string port_file = dir_.Sub("state/api.port");
    std::remove(port_file.c_str());
    agent_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{BinDir() + "/ferry-agent", "run", "--config", config_,
                                 "--log-format", "text"},
        dir_.Sub("agent-" + std::to_string(++starts_) + ".log"));
    port_ = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, agent_.get())));
  }

  HttpResult Append(const std::string& stream, const std::string& body,
                    const std::string& type = "application/x-ndjson") {
    return HttpRequest(port_, "POST", "/v1/streams/" + stream + "/records", body, "", type);
  }
  HttpResult Read(const std::string& stream, const std::string& query) {
    return HttpRequest(port_, "GET", "/v1/streams/" + stream + "/records?" + query);
  }

  TempDir dir_;
  std::string keys_, config_;
  std::unique_ptr<ChildProcess> agent_;
  uint16_t port_ = 0;
  int starts_ = 0;
};

TEST_F(StreamsTest, AppendsGetDenseOffsetsAndReadBackByteForByte) {
  StartAgent();
  HttpResult a = Append("events", "{\"n\":1}\n{\"n\":2}\r\n\n{\"n\":3}");
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(U64(Parse(a), "first"), 0u);
  EXPECT_EQ(U64(Parse(a), "last"), 2u);
  const std::string binary("\x00\xff\x10 raw", 7);
  HttpResult b = Append("events", Framed(binary) + Framed("") + Framed("plain text"),
                        "application/octet-stream");
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(U64(Parse(b), "first"), 3u);
  EXPECT_EQ(U64(Parse(b), "last"), 5u);
  // The interval-fsync stream answers once its group sync made the batch durable.
  HttpResult m = Append("metrics", "1\n2\n");
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(U64(Parse(m), "first"), 0u);

  HttpResult r = Read("events", "from=1&max=10");
  ASSERT_EQ(r.status, 200) << r.body;
  const json::value v = Parse(r);
  const json::array& records = v.at("records").as_array();
  ASSERT_EQ(records.size(), 5u) << r.body;
  EXPECT_EQ(records[0].at("offset").to_number<uint64_t>(), 1u);
  EXPECT_EQ(records[0].at("text").as_string(), "{\"n\":2}");  // the \r is not part of it
  EXPECT_EQ(records[2].at("base64").as_string(), "AP8QIHJhdw==");
  EXPECT_EQ(records[3].at("text").as_string(), "");
  EXPECT_EQ(records[4].at("text").as_string(), "plain text");
  EXPECT_EQ(U64(v, "next"), 6u);
  // At the end: nothing yet, and where to continue.
  HttpResult tail = Read("events", "from=6");
  ASSERT_EQ(tail.status, 200) << tail.body;
  EXPECT_TRUE(Parse(tail).at("records").as_array().empty());

  // Binary reads: offset, length, bytes per record.
  HttpResult raw =
      RawRequest(port_,
                 "GET /v1/streams/events/records?from=3&max=1 HTTP/1.1\r\nHost: x\r\nAccept: "
                 "application/octet-stream\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(raw.status, 200) << raw.body;
  const std::string body = raw.body.substr(raw.body.find("\r\n\r\n") + 4);
  ASSERT_EQ(body.size(), 8u + 4u + binary.size()) << body.size();
  EXPECT_EQ(body.substr(0, 12), std::string("\0\0\0\0\0\0\0\x03\0\0\0\x07", 12));
  EXPECT_EQ(body.substr(12), binary);

  // Everything is still there after a clean restart.
  ASSERT_EQ(agent_->Stop(SIGTERM), 0) << agent_->Log();
  StartAgent();
  HttpResult again = Read("events", "from=0&max=100");
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(Parse(again).at("records").as_array().size(), 6u);
  HttpResult next = Append("events", "{\"n\":4}\n");
  EXPECT_EQ(U64(Parse(next), "first"), 6u);
}

TEST_F(StreamsTest, AnsweredAppendsSurviveKillDashNineAndNoTornRecordIsServed) {
  StartAgent();
  // Producers append until the agent dies; every answered batch is noted.
  std::atomic<bool> stop{false};
  std::atomic<size_t> answered_count{0};
  std::vector<std::map<uint64_t, std::string>> answered(2);  // one per producer thread
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&, p] {
      for (int batch = 0; !stop.load(); ++batch) {
        std::string body;
        std::vector<std::string> lines;
        for (int i = 0; i < 20; ++i) {
          lines.push_back("{\"p\":" + std::to_string(p) + ",\"b\":" + std::to_string(batch) +
                          ",\"i\":" + std::to_string(i) + ",\"pad\":\"" +
                          std::string(static_cast<size_t>(50 + (batch * 7 + i) % 300), 'x') +
                          "\"}");
          body += lines.back() + "\n";
        }
        HttpResult r = Append("events", body);
        if (r.status != 200) return;  // the agent is gone
        boost::system::error_code ec;
        json::value v = json::parse(r.body, ec);
        if (ec) return;
        const uint64_t first = v.at("first").to_number<uint64_t>();
        for (size_t i = 0; i < lines.size(); ++i) answered[p][first + i] = lines[i];
        answered_count += lines.size();
      }
    });
  }
  // Kill once several segments (64 KiB each) have rolled.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (answered_count.load() < 2000 && std::chrono::steady_clock::now() < deadline) {
    // Waiting on the producers' progress: each check is one more request.
    HttpResult r = Read("events", "from=0&max=1");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  ASSERT_GE(answered_count.load(), 2000u) << "the producers made no progress";
  ASSERT_EQ(agent_->Stop(SIGKILL), 128 + SIGKILL);
  stop = true;
  for (auto& t : producers) t.join();

  StartAgent();
  std::map<uint64_t, std::string> stored;
  for (uint64_t from = 0;;) {
    HttpResult r = Read("events", "from=" + std::to_string(from) + "&max=10000");
    ASSERT_EQ(r.status, 200) << r.body;
    const json::value v = Parse(r);
    const json::array& records = v.at("records").as_array();
    if (records.empty()) break;
    for (const json::value& rec : records) {
      const uint64_t off = rec.at("offset").to_number<uint64_t>();
      ASSERT_EQ(off, from) << "offsets must be dense";
      // Every record served is whole: one of the lines the producers sent.
      boost::system::error_code ec;
      json::parse(std::string(rec.at("text").as_string()), ec);
      ASSERT_FALSE(ec) << "torn record at offset " << off;
      stored[off] = std::string(rec.at("text").as_string());
      ++from;
    }
  }
  size_t checked = 0;
  for (int p = 0; p < 2; ++p) {
    for (const auto& [off, line] : answered[p]) {
      ASSERT_TRUE(stored.count(off)) << "answered offset " << off << " lost";
      EXPECT_EQ(stored[off], line) << "offset " << off;
      ++checked;
    }
  }
  EXPECT_GE(checked, 2000u);
}

TEST_F(StreamsTest, BadInputGets4xxWithAReasonAndNothingPartialIsStored) {
  StartAgent();
  struct Case {
    std::string what, method, target, body, type;
    int status;
    std::string message;
  };
  const std::string big(5000, 'a');
  const std::vector<Case> cases = {
      {"oversized record", "POST", "/v1/streams/events/records", "{\"ok\":1}\n\"" + big + "\"\n",
       "application/x-ndjson", 413, "maxRecordSize is 4096"},
      {"bad length prefix", "POST", "/v1/streams/events/records",
       Framed("ok") + std::string("\x00\x00\x01", 3), "application/octet-stream", 400,
       "bad length prefix"},
      {"length past the end", "POST", "/v1/streams/events/records",
       Framed("ok") + std::string("\x00\x00\x00\x09", 4) + "short", "application/octet-stream", 400,
       "claims 9 bytes"},
      {"not JSON", "POST", "/v1/streams/events/records", "{\"a\":1}\nnot json\n",
       "application/x-ndjson", 400, "line 2 is not JSON"},
      {"empty batch", "POST", "/v1/streams/events/records", "\n\n", "application/x-ndjson", 400,
       "no records"},
      {"unknown type", "POST", "/v1/streams/events/records", "x", "image/png", 415,
       "Content-Type image/png"},
      {"unknown stream", "POST", "/v1/streams/nope/records", "1\n", "application/x-ndjson", 404,
       "known: events, metrics"},
      {"unknown stream read", "GET", "/v1/streams/nope/records?from=0", "", "", 404, "nope"},
      {"negative offset", "GET", "/v1/streams/events/records?from=-1", "", "", 400,
       "must be an integer"},
      {"huge offset", "GET", "/v1/streams/events/records?from=99999999999999999999999", "", "", 400,
       "must be an integer"},
      {"offset past the end", "GET", "/v1/streams/events/records?from=1000", "", "", 400,
       "past the end"},
      {"max 0", "GET", "/v1/streams/events/records?max=0", "", "", 400, "max=0"},
      {"unknown parameter", "GET", "/v1/streams/events/records?form=1", "", "", 400,
       "unknown query parameter"},
      {"wrong method", "DELETE", "/v1/streams/events/records", "", "", 405, "use GET or POST"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    HttpResult r = HttpRequest(port_, c.method, c.target, c.body, "",
                               c.type.empty() ? "application/json" : c.type);
    EXPECT_EQ(r.status, c.status) << r.body;
    EXPECT_NE(r.body.find(c.message), std::string::npos) << r.body;
  }
  // Over the body limit (32 MiB): refused from the Content-Length alone,
  // before the body is read.
  HttpResult huge = RawRequest(port_,
                               "POST /v1/streams/events/records HTTP/1.1\r\nHost: x\r\n"
                               "Content-Type: application/x-ndjson\r\nContent-Length: 33554442"
                               "\r\n\r\n1\n");
  EXPECT_EQ(huge.status, 413) << huge.body.substr(0, 200);
  // None of it was stored, and the agent still serves.
  HttpResult r = Read("events", "from=0");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(Parse(r).at("records").as_array().empty()) << r.body;
  HttpResult ok = Append("events", "{\"fine\":true}\n");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(U64(Parse(ok), "first"), 0u);
}

// The local API used to join its oldest connection thread while holding the
// lock that thread needed to finish: after 64 connections, a busy agent could
// stop answering. Producers on several connections at once must never hang.
TEST_F(StreamsTest, ManyShortConnectionsFromConcurrentClientsAllGetAnswers) {
  StartAgent();
  std::vector<std::thread> clients;
  std::atomic<int> answered{0};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < 150; ++i) {
        if (Append("metrics", "{\"i\":" + std::to_string(i) + "}\n").status == 200) ++answered;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(answered.load(), 600);
  EXPECT_EQ(HttpRequest(port_, "GET", "/healthz").status, 200);
}

// A WebSocket client of the tail endpoint (Boost.Beast, synchronous).
class TailClient {
 public:
  // Connects and upgrades; on refusal, `status` holds the HTTP status.
  TailClient(uint16_t port, const std::string& target) : ws_(io_) {
    namespace websocket = boost::beast::websocket;
    boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"), port);
    ws_.next_layer().connect(ep);
    websocket::response_type res;
    boost::system::error_code ec;
    ws_.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
    status = static_cast<int>(res.result_int());
    body = res.body();
    open = !ec;
  }
  // The next message as JSON (fails the test after 10 s).
  json::value Next() {
    struct timeval tv {
      10, 0
    };
    ::setsockopt(ws_.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    boost::beast::flat_buffer buffer;
    boost::system::error_code ec;
    ws_.read(buffer, ec);
    EXPECT_FALSE(ec) << ec.message();
    if (ec) return json::value();
    return json::parse(boost::beast::buffers_to_string(buffer.data()));
  }
  void Close() { ws_.close(boost::beast::websocket::close_code::normal); }

  int status = 0;
  std::string body;
  bool open = false;

 private:
  boost::asio::io_context io_;
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
};

TEST_F(StreamsTest, TailFollowsTheStreamOverAWebSocket) {
  StartAgent();
  ASSERT_EQ(Append("events", "{\"n\":0}\n{\"n\":1}\n{\"n\":2}").status, 200);
  TailClient tail(port_, "/v1/streams/events/tail?from=1");
  ASSERT_TRUE(tail.open) << tail.status << " " << tail.body;
  json::value r = tail.Next();
  EXPECT_EQ(U64(r, "offset"), 1u);
  EXPECT_EQ(r.at("text").as_string(), "{\"n\":1}");
  EXPECT_EQ(U64(tail.Next(), "offset"), 2u);
  // New records arrive as they are appended, binary ones as base64.
  const std::string binary("\x00\xff", 2);
  ASSERT_EQ(Append("events", Framed(binary), "application/octet-stream").status, 200);
  r = tail.Next();
  EXPECT_EQ(U64(r, "offset"), 3u);
  EXPECT_EQ(r.at("base64").as_string(), "AP8=");
  ASSERT_EQ(Append("events", "{\"n\":4}").status, 200);
  EXPECT_EQ(U64(tail.Next(), "offset"), 4u);
  tail.Close();

  // Refusals come before the upgrade, with a reason.
  TailClient unknown(port_, "/v1/streams/nope/tail");
  EXPECT_FALSE(unknown.open);
  EXPECT_EQ(unknown.status, 404);
  TailClient past(port_, "/v1/streams/events/tail?from=99");
  EXPECT_FALSE(past.open);
  EXPECT_EQ(past.status, 400);
  TailClient bad(port_, "/v1/streams/events/tail?from=-1");
  EXPECT_EQ(bad.status, 400);
  HttpResult plain = Read("events", "from=0");  // the records endpoint still answers
  EXPECT_EQ(plain.status, 200);
  HttpResult not_ws = HttpRequest(port_, "GET", "/v1/streams/events/tail");
  EXPECT_EQ(not_ws.status, 400);
  EXPECT_NE(not_ws.body.find("WebSocket"), std::string::npos) << not_ws.body;
}

// ---------------------------------------------------------------------------
// In-process: failed writes and fsyncs

// The POSIX Env whose files' writes or fsyncs fail on demand. Counts the
// fsyncs of a file after one of its fsyncs failed (must stay 0).
class FaultyEnv final : public Env {
 public:
  std::atomic<bool> fail_syncs{false};
  std::atomic<bool> fail_writes{false};
  std::atomic<int> injected{0};
  std::atomic<int> syncs_after_failure{0};

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                        mode_t mode) override {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, base_.NewWritableFile(path, mode));
    return std::unique_ptr<WritableFile>(new File(*this, std::move(f)));
  }
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return base_.NewRandomAccessFile(path);
  }
  Result<Bytes> ReadFile(const std::string& path, uint64_t max_size) override {
    return base_.ReadFile(path, max_size);
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    return base_.RenameFile(from, to);
  }
  Status SyncDir(const std::string& dir) override { return base_.SyncDir(dir); }
  Status CreateDirs(const std::string& path, mode_t mode) override {
    return base_.CreateDirs(path, mode);
  }
  Status RemoveFile(const std::string& path) override { return base_.RemoveFile(path); }
  Result<bool> FileExists(const std::string& path) override { return base_.FileExists(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_.ListDir(path);
  }
  Result<uint64_t> FileSize(const std::string& path) override { return base_.FileSize(path); }

 private:
  class File final : public WritableFile {
   public:
    File(FaultyEnv& env, std::unique_ptr<WritableFile> base) : env_(env), base_(std::move(base)) {}
    Status Append(ByteView data) override {
      if (env_.fail_writes) {
        ++env_.injected;
        return DataLossError("write " + path() + ": Input/output error (injected)");
      }
      return base_->Append(data);
    }
    Status Sync() override {
      if (failed_) ++env_.syncs_after_failure;
      if (env_.fail_syncs) {
        failed_ = true;
        ++env_.injected;
        return DataLossError("fdatasync " + path() + ": Input/output error (injected)");
      }
      return base_->Sync();
    }
    Status Close() override { return base_->Close(); }
    uint64_t Size() const override { return base_->Size(); }
    const std::string& path() const override { return base_->path(); }

   private:
    FaultyEnv& env_;
    std::unique_ptr<WritableFile> base_;
    bool failed_ = false;
  };

  Env& base_ = *Env::Default();
};

class StreamsFailureTest : public ::testing::Test {
 protected:
  std::unique_ptr<agent::Streams> Open() {
    agent::AgentConfig config;
    config.state_dir = dir_.Sub("state");
    agent::StreamConfig batch;
    batch.name = "events";  // fsync: batch
    agent::StreamConfig interval;
    interval.name = "metrics";
    interval.fsync_every_batch = false;
    interval.fsync_interval_ms = 5;
    config.streams = {batch, interval};
    Result<std::unique_ptr<agent::Streams>> streams = agent::Streams::Open(config, &env_);
    EXPECT_TRUE(streams.ok()) << streams.status().ToString();
    return streams.ok() ? std::move(*streams) : nullptr;
  }

  static std::vector<std::string> Records(uint64_t first, size_t n) {
    std::vector<std::string> out;
    for (size_t i = 0; i < n; ++i) out.push_back("{\"n\":" + std::to_string(first + i) + "}");
    return out;
  }
  static Result<snapshot::AppendResult> Append(agent::Streams& streams, const std::string& stream,
                                               const std::vector<std::string>& records) {
    std::vector<ByteView> views;
    for (const std::string& r : records) views.push_back(AsBytes(r));
    return streams.Append(stream, views);
  }
  static std::vector<std::string> ReadAll(agent::Streams& streams, const std::string& stream) {
    Result<std::vector<snapshot::StreamRecord>> r = streams.Read(stream, 0, 100000, 64u << 20);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::vector<std::string> out;
    if (r.ok()) {
      for (const auto& rec : *r) out.emplace_back(rec.data.begin(), rec.data.end());
    }
    return out;
  }
  static agent::Streams::Info InfoOf(agent::Streams& streams, const std::string& stream) {
    for (agent::Streams::Info& i : streams.List()) {
      if (i.name == stream) return i;
    }
    ADD_FAILURE() << "no stream " << stream;
    return {};
  }

  TempDir dir_;
  FaultyEnv env_;
};

TEST_F(StreamsFailureTest, FailedFsyncFailsTheAppendAndTheStreamGoesOnWithoutARestart) {
  for (const std::string stream : {"events", "metrics"}) {
    SCOPED_TRACE(stream);
    RemoveTree(dir_.Sub("state"));
    std::unique_ptr<agent::Streams> streams = Open();
    ASSERT_NE(streams, nullptr);
    std::vector<std::string> answered = Records(0, 3);
    ASSERT_TRUE(Append(*streams, stream, answered).ok());

    env_.fail_syncs = true;
    Result<snapshot::AppendResult> failed = Append(*streams, stream, Records(100, 2));
    env_.fail_syncs = false;
    ASSERT_FALSE(failed.ok());
    EXPECT_TRUE(HasCode(failed.status(), StatusCode::kDataLoss));
    EXPECT_NE(failed.status().message().find("Input/output error"), std::string::npos)
        << failed.status().ToString();
    EXPECT_FALSE(InfoOf(*streams, stream).failure.ok());

    // The next append is answered, at the offset the failed one had.
    const std::vector<std::string> next = Records(3, 4);
    Result<snapshot::AppendResult> r = Append(*streams, stream, next);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->first, 3u);
    answered.insert(answered.end(), next.begin(), next.end());
    EXPECT_EQ(ReadAll(*streams, stream), answered) << "the failed batch is not there";
    const agent::Streams::Info info = InfoOf(*streams, stream);
    EXPECT_TRUE(info.failure.ok()) << info.failure.ToString();
    EXPECT_EQ(info.discarded_tails, 1u);
    EXPECT_EQ(info.durable_end_offset, answered.size());
    EXPECT_EQ(env_.syncs_after_failure, 0);

    // And after a restart, exactly the answered records.
    ASSERT_TRUE(streams->Close().ok());
    streams.reset();
    streams = Open();
    ASSERT_NE(streams, nullptr);
    EXPECT_EQ(ReadAll(*streams, stream), answered);
  }
}

TEST_F(StreamsFailureTest, FailedWriteFailsTheAppendAndTheNextOneIsAnswered) {
  std::unique_ptr<agent::Streams> streams = Open();
  ASSERT_NE(streams, nullptr);
  std::vector<std::string> answered = Records(0, 2);
  ASSERT_TRUE(Append(*streams, "events", answered).ok());
  env_.fail_writes = true;
  EXPECT_FALSE(Append(*streams, "events", Records(100, 1)).ok());
  env_.fail_writes = false;
  const std::vector<std::string> next = Records(2, 1);
  Result<snapshot::AppendResult> r = Append(*streams, "events", next);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->first, 2u);
  answered.insert(answered.end(), next.begin(), next.end());
  EXPECT_EQ(ReadAll(*streams, "events"), answered);
}

TEST_F(StreamsFailureTest, ConcurrentProducersGetAnAnswerOnlyForWhatIsStored) {
  std::unique_ptr<agent::Streams> streams = Open();
  ASSERT_NE(streams, nullptr);
  for (const std::string stream : {"events", "metrics"}) {
    SCOPED_TRACE(stream);
    std::mutex mu;
    std::map<uint64_t, std::string> answered;
    int failures = 0;
    std::vector<std::thread> producers;
    for (int t = 0; t < 3; ++t) {
      producers.emplace_back([&, t] {
        for (int i = 0; i < 30; ++i) {
          if (t == 0) env_.fail_syncs = i % 8 == 3;  // a few failures under everyone
          const std::vector<std::string> records =
              Records(uint64_t(t) * 1000 + uint64_t(i) * 10, 3);
          Result<snapshot::AppendResult> r = Append(*streams, stream, records);
          std::lock_guard lock(mu);
          if (!r.ok()) {
            ++failures;
            continue;
          }
          for (size_t k = 0; k < records.size(); ++k) answered[r->first + k] = records[k];
        }
      });
    }
    for (std::thread& p : producers) p.join();
    env_.fail_syncs = false;
    EXPECT_GT(failures, 0);
    const std::vector<std::string> all = ReadAll(*streams, stream);
    ASSERT_EQ(all.size(), answered.size()) << "exactly the answered records, densely";
    for (size_t o = 0; o < all.size(); ++o) {
      ASSERT_TRUE(answered.count(o)) << o;
      EXPECT_EQ(all[o], answered[o]) << "offset " << o;
    }
  }
  EXPECT_EQ(env_.syncs_after_failure, 0);
}

}  // namespace
}  // namespace ferry::testing
