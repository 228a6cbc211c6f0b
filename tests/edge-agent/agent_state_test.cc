// AgentState: the outbox queue and delivery states survive restarts and keep
// capture order; enrollments and hub policies round-trip.
#include "edge-agent/agent_state.h"

#include <gtest/gtest.h>

#include "core/sqlite.h"
#include "tests/testing/test_util.h"

namespace ferry::agent {
namespace {

using testing::TempDir;

QueuedSnapshot Snap(uint8_t tag, const std::string& dataset, uint64_t bytes = 100) {
  QueuedSnapshot q;
  q.id.fill(tag);
  q.policy = "p";
  q.dataset = dataset;
  q.cut = "cut" + std::to_string(tag);
  q.created_unix = 1'700'000'000 + tag;
  q.new_sealed_bytes = bytes;
  return q;
}

TEST(AgentStateTest, DeliveriesGoInCaptureOrderPerTargetAndSurviveReopening) {
  TempDir dir;
  const std::string path = dir.Sub("agent.db");
  {
    auto state = AgentState::Open(path);
    ASSERT_TRUE(state.ok()) << state.status().ToString();
    ASSERT_TRUE((*state)->AddSnapshot(Snap(1, "vol"), {"a", "b"}).ok());
    ASSERT_TRUE((*state)->AddSnapshot(Snap(2, "vol"), {"a", "b"}).ok());
    ASSERT_TRUE((*state)->AddSnapshot(Snap(3, "db"), {"a"}).ok());
  }
  auto state = AgentState::Open(path);
  ASSERT_TRUE(state.ok());
  AgentState& s = **state;
  auto next = s.NextDelivery("a");
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ((*next)->snapshot.id[0], 1);
  EXPECT_EQ((*next)->state, DeliveryState::kPending);

  // A failed attempt keeps the snapshot first in line.
  ASSERT_TRUE(s.MarkSending((*next)->snapshot.seq, "a", "a").ok());
  ASSERT_TRUE(s.MarkAttemptFailed((*next)->snapshot.seq, "a", "UNAVAILABLE: cut", 40, false).ok());
  next = s.NextDelivery("a");
  EXPECT_EQ((*next)->snapshot.id[0], 1);
  EXPECT_EQ((*next)->attempts, 1u);
  EXPECT_EQ((*next)->bytes_sent, 40u);
  EXPECT_EQ((*next)->error, "UNAVAILABLE: cut");

  ASSERT_TRUE(s.MarkCommitted((*next)->snapshot.seq, "a", "a", 60, 1'700'000'100).ok());
  next = s.NextDelivery("a");
  EXPECT_EQ((*next)->snapshot.id[0], 2);
  // Target b is independent of a.
  auto b = s.NextDelivery("b");
  EXPECT_EQ((*b)->snapshot.id[0], 1);

  // Snapshot 1 still waits for b: its chunks must stay in the outbox.
  auto pending = s.PendingSnapshotIds();
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->size(), 3u);
  auto backlog = s.Backlogs();
  ASSERT_TRUE(backlog.ok());
  ASSERT_EQ(backlog->size(), 2u);
  EXPECT_EQ((*backlog)[0].target, "a");
  EXPECT_EQ((*backlog)[0].snapshots, 2u);
  EXPECT_EQ((*backlog)[1].snapshots, 2u);
  EXPECT_EQ((*backlog)[1].bytes, 200u);
}

TEST(AgentStateTest, AddingTheSameSnapshotTwiceQueuesItOnce) {
  TempDir dir;
  auto state = AgentState::Open(dir.Sub("agent.db"));
  ASSERT_TRUE(state.ok());
  auto first = (*state)->AddSnapshot(Snap(7, "vol"), {"a"});
  auto again = (*state)->AddSnapshot(Snap(7, "vol"), {"a"});
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ(*first, *again);
  auto recent = (*state)->RecentDeliveries(10);
  ASSERT_TRUE(recent.ok());
  EXPECT_EQ(recent->size(), 1u);
  auto has = (*state)->HasSnapshot(Snap(7, "vol").id);
  EXPECT_TRUE(has.ok() && *has);
}

TEST(AgentStateTest, DatasetSummaryTellsTheNewestAndTheNewestEveryTargetHas) {
  TempDir dir;
  auto state = AgentState::Open(dir.Sub("agent.db"));
  ASSERT_TRUE(state.ok());
  AgentState& s = **state;
  auto s1 = s.AddSnapshot(Snap(1, "vol"), {"a", "b"});
  auto s2 = s.AddSnapshot(Snap(2, "vol"), {"a", "b"});
  ASSERT_TRUE(s1.ok() && s2.ok());
  ASSERT_TRUE(s.MarkCommitted(*s1, "a", "a", 0, 1).ok());
  auto sum = s.Summarize("vol");
  ASSERT_TRUE(sum.ok());
  ASSERT_TRUE(sum->last.has_value());
  EXPECT_EQ(sum->last->id[0], 2);
  EXPECT_FALSE(sum->last_replicated.has_value()) << "b does not have snapshot 1 yet";
  ASSERT_TRUE(s.MarkCommitted(*s1, "b", "b", 0, 1).ok());
  sum = s.Summarize("vol");
  ASSERT_TRUE(sum->last_replicated.has_value());
  EXPECT_EQ(sum->last_replicated->id[0], 1);
}

// What a push may take as held at a hub: the newest snapshot of the same
// dataset that hub committed — as target or as failover — and nothing else.
TEST(AgentStateTest, LastCommittedAtIsTheNewestOfTheDatasetThatHubCommitted) {
  TempDir dir;
  auto state = AgentState::Open(dir.Sub("agent.db"));
  ASSERT_TRUE(state.ok());
  AgentState& s = **state;
  auto v1 = s.AddSnapshot(Snap(1, "vol"), {"a"});
  auto d2 = s.AddSnapshot(Snap(2, "db"), {"a"});
  auto v3 = s.AddSnapshot(Snap(3, "vol"), {"a"});
  ASSERT_TRUE(v1.ok() && d2.ok() && v3.ok());
  auto none = s.LastCommittedAt("a", "vol");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "nothing committed yet";
  ASSERT_TRUE(s.MarkCommitted(*v1, "a", "a", 0, 1).ok());
  ASSERT_TRUE(s.MarkCommitted(*d2, "a", "a", 0, 1).ok());
  ASSERT_TRUE(s.MarkCommitted(*v3, "a", "backup", 0, 1).ok());  // a failover hub took it
  auto at_a = s.LastCommittedAt("a", "vol");
  ASSERT_TRUE(at_a.ok() && at_a->has_value());
  EXPECT_EQ((**at_a)[0], 1) << "snapshot 3 went to the failover hub";
  auto at_backup = s.LastCommittedAt("backup", "vol");
  ASSERT_TRUE(at_backup.ok() && at_backup->has_value());
  EXPECT_EQ((**at_backup)[0], 3);
  auto db = s.LastCommittedAt("a", "db");
  ASSERT_TRUE(db.ok() && db->has_value());
  EXPECT_EQ((**db)[0], 2);
  auto other = s.LastCommittedAt("c", "vol");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TEST(AgentStateTest, EnrollmentsPoliciesAndRunsRoundTrip) {
  TempDir dir;
  auto state = AgentState::Open(dir.Sub("agent.db"));
  ASSERT_TRUE(state.ok());
  AgentState& s = **state;
  ASSERT_TRUE(s.SaveEnrollment({"hub-a", "ws://h:1", "fry1:x", "acme", "cam-1", 5}).ok());
  auto hubs = s.Enrollments();
  ASSERT_TRUE(hubs.ok());
  ASSERT_EQ(hubs->size(), 1u);
  EXPECT_EQ((*hubs)[0].tenant, "acme");
  ASSERT_TRUE(s.SaveHubPolicies({"hub-a", 3, {R"({"a":"\"quoted\""})", "{}"}}).ok());
  auto policies = s.AllHubPolicies();
  ASSERT_TRUE(policies.ok());
  ASSERT_EQ(policies->size(), 1u);
  EXPECT_EQ((*policies)[0].generation, 3u);
  ASSERT_EQ((*policies)[0].policies.size(), 2u);
  EXPECT_EQ((*policies)[0].policies[0], R"({"a":"\"quoted\""})");
  PolicyRun run;
  run.policy = "p";
  run.last_due_unix = 42;
  run.running_cut = "abc";
  run.skipped = 2;
  ASSERT_TRUE(s.PutRun(run).ok());
  auto got = s.GetRun("p");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->running_cut, "abc");
  EXPECT_EQ((*got)->skipped, 2u);
  auto none = s.GetRun("q");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(AgentStateTest, NewerSchemaIsRefusedNamingBothVersions) {
  TempDir dir;
  const std::string path = dir.Sub("agent.db");
  {
    auto db = sqlite::Database::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->SetUserVersion(kAgentStateSchemaVersion + 1).ok());
  }
  auto state = AgentState::Open(path);
  ASSERT_FALSE(state.ok());
  EXPECT_EQ(state.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(state.status().message().find("schema version 2"), std::string::npos)
      << state.status().ToString();
}

}  // namespace
}  // namespace ferry::agent
