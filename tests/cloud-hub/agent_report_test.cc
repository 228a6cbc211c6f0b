// Agent reports over a real link: a Hub started in this process on a
// loopback port, an agent identity enrolled in its catalog, and the link's
// own client (LinkClient, ReplicationSender) sending AgentReports as
// ferry-agent does. The hub stores each valid report as the agent's latest
// (REST shows it) and ends the session of a peer that sends a report over
// the limits, with a typed error (docs/format/link.md, "Agent report").
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cloud-hub/hub.h"
#include "mirror/identity.h"
#include "mirror/link/link_channel.h"
#include "mirror/replication/envelope_codec.h"
#include "mirror/replication/replication_receiver.h"
#include "mirror/replication/replication_sender.h"
#include "mirror/transport/link_client.h"
#include "tests/testing/http_client.h"
#include "tests/testing/test_util.h"

namespace ferry::hub {
namespace {

namespace json = boost::json;
namespace linkpb = mirror::linkpb;
using ::ferry::testing::HttpRequest;
using ::ferry::testing::HttpResult;
using ::ferry::testing::TempDir;

linkpb::Envelope Report(uint64_t pending_bytes, uint32_t pending_snapshots,
                        const std::string& error) {
  linkpb::Envelope e;
  linkpb::AgentReport* r = e.mutable_agent_report();
  r->set_pending_bytes(pending_bytes);
  r->set_pending_snapshots(pending_snapshots);
  r->set_last_error(error);
  r->set_last_error_unix(error.empty() ? 0 : 1'714'564'800);
  r->set_reported_unix(1'714'564'805);
  return e;
}

class AgentReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string data = dir_.Sub("hub");
    Result<InitResult> init = InitDataDir(data, "acme");
    ASSERT_TRUE(init.ok()) << init.status().ToString();
    admin_ = init->admin_token;
    HubConfig config;
    config.data_dir = data;
    config.port = 0;
    Result<std::unique_ptr<Hub>> hub = Hub::Start(config);
    ASSERT_TRUE(hub.ok()) << hub.status().ToString();
    hub_ = std::move(*hub);
    Result<NewJoinToken> token = hub_->catalog().CreateJoinToken("acme", 60);
    ASSERT_TRUE(token.ok());
    sodium::PublicKey signing{};
    ASSERT_TRUE(hub_->catalog()
                    .RedeemJoinToken(token->token, "cam-1", identity_.public_key(), signing, {})
                    .ok());
  }
  void TearDown() override {
    if (hub_) {
      EXPECT_TRUE(hub_->Shutdown(std::chrono::seconds(5)).ok());
    }
  }

  // A session as the agent: the sender sends what is in `outbox_` (and
  // empties it) whenever it may send unasked.
  struct Session {
    std::unique_ptr<mirror::LinkChannel> channel;
    std::unique_ptr<mirror::ReplicationSender> sender;
  };
  Session Connect() {
    Session s;
    auto connection = mirror::transport::LinkClient::Connect(
        "ws://127.0.0.1:" + std::to_string(hub_->port()), identity_, hub_->fingerprint());
    EXPECT_TRUE(connection.ok()) << connection.status().ToString();
    if (!connection.ok()) return s;
    s.channel = std::make_unique<mirror::LinkChannel>(*connection);
    mirror::SenderOptions options;
    options.unsolicited = [this] {
      std::vector<linkpb::Envelope> out;
      out.swap(outbox_);
      return out;
    };
    s.sender = std::make_unique<mirror::ReplicationSender>(*s.channel, options);
    return s;
  }

  // Polls the catalog until `pred` holds for the agent, listening on the
  // session meanwhile (the hub stores a report on the session's thread).
  bool WaitForAgent(Session& s, const std::function<bool(const Agent&)>& pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      Result<Agent> a = hub_->catalog().GetAgent("acme", "cam-1");
      if (a.ok() && pred(*a)) return true;
      Status listened = s.sender->Listen(std::chrono::milliseconds(20));
      if (!listened.ok()) {
        ADD_FAILURE() << "session ended: " << listened.ToString();
        return false;
      }
    }
    ADD_FAILURE() << "timed out waiting for the agent's report";
    return false;
  }

  json::value AgentJson() {
    HttpResult r = HttpRequest(hub_->port(), "GET", "/v1/tenants/acme/agents/cam-1", "", admin_);
    EXPECT_EQ(r.status, 200) << r.body;
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    return ec ? json::value() : v;
  }

  TempDir dir_;
  std::string admin_;
  std::unique_ptr<Hub> hub_;
  mirror::StaticIdentity identity_ = mirror::StaticIdentity::Generate();
  std::vector<linkpb::Envelope> outbox_;  // the sender's thread (this one)
};

TEST_F(AgentReportTest, HubAnnouncesReportsAndKeepsTheLatest) {
  EXPECT_TRUE(AgentJson().at("pending_bytes").is_null()) << "never reported";
  Session s = Connect();
  ASSERT_TRUE(s.sender);
  outbox_.push_back(Report(5 << 20, 3, "push of 9f2c to hub-a: UNAVAILABLE: connection reset"));
  ASSERT_TRUE(s.sender->Hello().ok());
  EXPECT_TRUE(s.sender->PeerHas(mirror::kAgentReportCapability));
  EXPECT_TRUE(outbox_.empty()) << "the first report goes out right after the HelloAck";
  ASSERT_TRUE(WaitForAgent(s, [](const Agent& a) { return a.report.has_value(); }));
  json::value a = AgentJson();
  EXPECT_EQ(a.at("pending_bytes").to_number<int64_t>(), 5 << 20) << a;
  EXPECT_EQ(a.at("pending_snapshots").to_number<int64_t>(), 3);
  EXPECT_EQ(a.at("last_error"), "push of 9f2c to hub-a: UNAVAILABLE: connection reset");
  EXPECT_EQ(a.at("last_error_at"), "2024-05-01T12:00:00Z");
  EXPECT_FALSE(a.at("reported_at").is_null());

  // A later report on the same session replaces it.
  outbox_.push_back(Report(0, 0, ""));
  ASSERT_TRUE(WaitForAgent(s, [](const Agent& agent) {
    return agent.report && agent.report->pending_snapshots == 0 && agent.report->last_error.empty();
  }));
  a = AgentJson();
  EXPECT_EQ(a.at("pending_bytes").to_number<int64_t>(), 0);
  EXPECT_TRUE(a.at("last_error").is_null());
  HttpResult metrics = HttpRequest(hub_->port(), "GET", "/metrics");
  EXPECT_EQ(::ferry::testing::MetricValue(metrics.body, "ferry_hub_agent_reports_total"), 2.0)
      << metrics.body;
}

TEST_F(AgentReportTest, OversizedReportEndsTheSessionWithInvalidArgument) {
  Session s = Connect();
  ASSERT_TRUE(s.sender);
  outbox_.push_back(Report(1, 1, "first"));
  ASSERT_TRUE(s.sender->Hello().ok());
  ASSERT_TRUE(WaitForAgent(s, [](const Agent& a) { return a.report.has_value(); }));

  // A peer that does not cut last_error to 1 KiB (ferry-agent does).
  outbox_.push_back(Report(2, 2, std::string(mirror::kMaxAgentReportErrorBytes + 1, 'x')));
  Status ended;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (ended.ok() && std::chrono::steady_clock::now() < deadline) {
    ended = s.sender->Listen(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ended.code(), StatusCode::kInvalidArgument) << ended.ToString();
  EXPECT_NE(ended.message().find("last_error of 1025 bytes exceeds the limit of 1024"),
            std::string::npos)
      << ended.ToString();
  // The first report stands; the agent may connect again.
  Result<Agent> a = hub_->catalog().GetAgent("acme", "cam-1");
  ASSERT_TRUE(a.ok() && a->report.has_value());
  EXPECT_EQ(a->report->last_error, "first");
  Session again = Connect();
  ASSERT_TRUE(again.sender);
  EXPECT_TRUE(again.sender->Hello().ok());
}

}  // namespace
}  // namespace ferry::hub
