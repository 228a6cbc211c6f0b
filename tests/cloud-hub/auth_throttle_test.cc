// AuthThrottle on a fake clock (no sleeps): the limit, the window, other
// addresses, the bounded table, address keys; and the REST API with a
// throttle in process (429 with Retry-After before the token is looked at).
#include "cloud-hub/auth_throttle.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cloud-hub/rest_api.h"
#include "tests/testing/test_util.h"

namespace ferry::hub {
namespace {

using ::ferry::testing::HasCode;
using ::ferry::testing::TempDir;
using namespace std::chrono_literals;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSecond = 1'000'000'000;

AuthThrottleOptions Options(uint32_t max_failures = 10, std::chrono::milliseconds window = 60s,
                            size_t max_addresses = 4096) {
  AuthThrottleOptions o;
  o.max_failures = max_failures;
  o.window = window;
  o.max_addresses = max_addresses;
  return o;
}

// Records `n` failures; returns how many of them reported the throttle.
int Fail(AuthThrottle& t, const std::string& address, int n) {
  int throttled = 0;
  for (int i = 0; i < n; ++i) throttled += t.RecordFailure(address) ? 1 : 0;
  return throttled;
}

TEST(AuthThrottleTest, FailuresBelowTheLimitAreAdmitted) {
  FakeClock clock;
  AuthThrottle t(Options(), &clock);
  EXPECT_TRUE(t.Admit("192.0.2.7").ok());
  EXPECT_EQ(Fail(t, "192.0.2.7", 9), 0);
  EXPECT_TRUE(t.Admit("192.0.2.7").ok());
  EXPECT_EQ(t.throttled_total(), 0u);
}

TEST(AuthThrottleTest, TheFailureThatReachesTheLimitThrottlesForTheWindow) {
  FakeClock clock;
  AuthThrottle t(Options(), &clock);
  EXPECT_EQ(Fail(t, "192.0.2.7", 9), 0);
  EXPECT_TRUE(t.RecordFailure("192.0.2.7"));  // the 10th

  std::chrono::seconds retry{0};
  Status s = t.Admit("192.0.2.7", &retry);
  EXPECT_TRUE(HasCode(s, StatusCode::kResourceExhausted)) << s.ToString();
  EXPECT_EQ(retry, 60s);
  EXPECT_NE(s.message().find("192.0.2.7"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("retry in 60 s"), std::string::npos) << s.message();

  // Retry-After counts down in whole seconds, rounded up.
  clock.Advance(59 * kSecond + 500 * kMs);
  EXPECT_FALSE(t.Admit("192.0.2.7", &retry).ok());
  EXPECT_EQ(retry, 1s);
  clock.Advance(500 * kMs - 1);
  EXPECT_FALSE(t.Admit("192.0.2.7").ok());
  clock.Advance(1);
  EXPECT_TRUE(t.Admit("192.0.2.7").ok());
  EXPECT_EQ(t.throttled_total(), 3u);
}

TEST(AuthThrottleTest, ThrottledAttemptsDoNotExtendTheWait) {
  FakeClock clock;
  AuthThrottle t(Options(3, 10s), &clock);
  EXPECT_EQ(Fail(t, "192.0.2.7", 3), 1);
  for (int i = 0; i < 9; ++i) {
    clock.Advance(kSecond);
    EXPECT_FALSE(t.Admit("192.0.2.7").ok());
    // A request admitted just before the throttle began may still fail.
    EXPECT_FALSE(t.RecordFailure("192.0.2.7"));
  }
  clock.Advance(kSecond);
  EXPECT_TRUE(t.Admit("192.0.2.7").ok());
}

TEST(AuthThrottleTest, AfterTheWindowTheAddressStartsAfresh) {
  FakeClock clock;
  AuthThrottle t(Options(3, 10s), &clock);
  EXPECT_EQ(Fail(t, "192.0.2.7", 3), 1);
  clock.Advance(10 * kSecond);
  ASSERT_TRUE(t.Admit("192.0.2.7").ok());
  EXPECT_EQ(Fail(t, "192.0.2.7", 2), 0);
  EXPECT_TRUE(t.Admit("192.0.2.7").ok());
  EXPECT_TRUE(t.RecordFailure("192.0.2.7"));
  EXPECT_FALSE(t.Admit("192.0.2.7").ok());
}

TEST(AuthThrottleTest, FailuresInDifferentWindowsDoNotAddUp) {
  FakeClock clock;
  AuthThrottle t(Options(10, 60s), &clock);
  for (int round = 0; round < 5; ++round) {
    EXPECT_EQ(Fail(t, "192.0.2.7", 9), 0);
    clock.Advance(60 * kSecond);
  }
  EXPECT_TRUE(t.Admit("192.0.2.7").ok());
}

TEST(AuthThrottleTest, OtherAddressesAreNotAffected) {
  FakeClock clock;
  AuthThrottle t(Options(), &clock);
  EXPECT_EQ(Fail(t, "192.0.2.7", 10), 1);
  EXPECT_FALSE(t.Admit("192.0.2.7").ok());
  for (const char* other : {"192.0.2.8", "198.51.100.7", "2001:db8::7", ""}) {
    SCOPED_TRACE(other);
    EXPECT_TRUE(t.Admit(other).ok());
  }
  EXPECT_EQ(Fail(t, "192.0.2.8", 9), 0);
  EXPECT_TRUE(t.Admit("192.0.2.8").ok());
}

TEST(AuthThrottleTest, ZeroMaxFailuresDisablesTheThrottle) {
  FakeClock clock;
  AuthThrottle t(Options(0), &clock);
  EXPECT_EQ(Fail(t, "192.0.2.7", 1000), 0);
  EXPECT_TRUE(t.Admit("192.0.2.7").ok());
  EXPECT_EQ(t.tracked(), 0u);
}

TEST(AuthThrottleTest, TheTableIsBoundedAndForgetsTheOldestFailureFirst) {
  FakeClock clock;
  AuthThrottle t(Options(2, 60s, 16), &clock);
  // The attacker's address is throttled, then 15 others fail once each.
  EXPECT_EQ(Fail(t, "203.0.113.1", 2), 1);
  for (int i = 0; i < 15; ++i) {
    clock.Advance(kMs);
    t.RecordFailure("198.51.100." + std::to_string(i));
  }
  EXPECT_EQ(t.tracked(), 16u);
  EXPECT_FALSE(t.Admit("203.0.113.1").ok());
  // A 17th address evicts the entry whose last failure is oldest: the
  // throttled one here (its attempts refused by Admit do not refresh it).
  t.RecordFailure("198.51.100.200");
  EXPECT_EQ(t.tracked(), 16u);
  EXPECT_TRUE(t.Admit("203.0.113.1").ok());
  // However many addresses fail, at most 16 are tracked.
  for (int i = 0; i < 100'000; ++i) t.RecordFailure("10." + std::to_string(i % 250) + ".0.1");
  EXPECT_LE(t.tracked(), 16u);
}

TEST(AuthThrottleTest, RecentFailuresSurviveEviction) {
  FakeClock clock;
  AuthThrottle t(Options(3, 60s, 16), &clock);
  EXPECT_EQ(Fail(t, "203.0.113.1", 2), 0);
  for (int i = 0; i < 15; ++i) t.RecordFailure("198.51.100." + std::to_string(i));
  EXPECT_EQ(Fail(t, "203.0.113.1", 1), 1);  // refreshed: now the most recent
  t.RecordFailure("198.51.100.200");        // evicts 198.51.100.0
  EXPECT_FALSE(t.Admit("203.0.113.1").ok());
}

TEST(AuthThrottleTest, Ipv6AddressesCountByTheirSlash64) {
  FakeClock clock;
  AuthThrottle t(Options(4), &clock);
  // Four addresses of one /64: one budget.
  for (const char* a :
       {"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9", "2001:DB8:1:2:0:0:0:7"}) {
    t.RecordFailure(a);
  }
  EXPECT_FALSE(t.Admit("2001:db8:1:2::abcd").ok());
  EXPECT_TRUE(t.Admit("2001:db8:1:3::1").ok());
  EXPECT_EQ(AuthThrottle::AddressKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
}

TEST(AuthThrottleTest, AddressKeysNormalise) {
  struct Case {
    const char* address;
    const char* key;
  };
  const std::vector<Case> cases = {
      {"192.0.2.7", "192.0.2.7"},
      {"::ffff:192.0.2.7", "192.0.2.7"},  // IPv4-mapped: the IPv4 address's budget
      {"::1", "::/64"},
      {"fe80::1:2:3:4", "fe80::/64"},
      {"", ""},
      {"not an address", "not an address"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.address);
    EXPECT_EQ(AuthThrottle::AddressKey(c.address), c.key);
  }
  EXPECT_EQ(AuthThrottle::AddressKey(std::string(300, 'x')).size(), 64u);
}

TEST(AuthThrottleTest, AddressOfEndpointDropsThePort) {
  struct Case {
    const char* endpoint;
    const char* address;
  };
  const std::vector<Case> cases = {
      {"192.0.2.7:5100", "192.0.2.7"},
      {"[2001:db8::7]:5100", "2001:db8::7"},
      {"2001:db8::7", "2001:db8::7"},
      {"(unknown peer)", "(unknown peer)"},
      {"", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.endpoint);
    EXPECT_EQ(AuthThrottle::AddressOfEndpoint(c.endpoint), c.address);
  }
}

TEST(AuthThrottleTest, ConcurrentFailuresThrottleOnce) {
  FakeClock clock;
  AuthThrottle t(Options(50), &clock);
  std::atomic<int> throttled{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 100; ++k) {
        if (t.RecordFailure("192.0.2.7")) throttled.fetch_add(1);
        t.Admit("192.0.2.7").IgnoreError();
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(throttled.load(), 1);
  EXPECT_FALSE(t.Admit("192.0.2.7").ok());
}

// --- the REST API with a throttle, in process ---

namespace http = boost::beast::http;
using mirror::transport::HttpRequest;
using mirror::transport::HttpResponse;

class RestApiThrottleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<Catalog>> c = Catalog::Open(dir_.Sub("catalog.db"), &clock_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(*c);
    ASSERT_TRUE(catalog_->CreateTenant("acme").ok());
    Result<std::string> token = catalog_->CreateApiToken("acme", Role::kAdmin, "test");
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    token_ = *token;
    RestContext ctx;
    ctx.catalog = catalog_.get();
    ctx.metrics = &metrics_;
    ctx.clock = &clock_;
    ctx.auth_throttle = &throttle_;
    api_ = std::make_unique<RestApi>(ctx);
  }

  HttpResponse Get(const std::string& token, const std::string& peer, bool with_header = true) {
    HttpRequest req{http::verb::get, "/v1/tenants/acme/agents", 11};
    if (with_header) req.set(http::field::authorization, "Bearer " + token);
    req.prepare_payload();
    return api_->Handle(req, peer);
  }

  static std::string Code(const HttpResponse& res) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(res.body(), ec);
    if (ec || !v.is_object() || !v.as_object().contains("error")) return "(no error)";
    return std::string(v.at("error").at("code").as_string());
  }

  TempDir dir_;
  FakeClock clock_;
  AuthThrottle throttle_{Options(10, 30s), &clock_};
  Metrics metrics_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<RestApi> api_;
  std::string token_;
};

TEST_F(RestApiThrottleTest, TenBadTokensThenEveryRequestFromThatAddressGets429) {
  const std::string bad = "fry_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  for (int i = 0; i < 10; ++i) {
    HttpResponse r = Get(bad, "192.0.2.7");
    ASSERT_EQ(r.result_int(), 401u) << i;
  }
  // The right token from that address too: it is not looked at.
  for (const std::string& token : {bad, token_}) {
    HttpResponse r = Get(token, "192.0.2.7");
    EXPECT_EQ(r.result_int(), 429u) << r.body();
    EXPECT_EQ(Code(r), "RESOURCE_EXHAUSTED");
    EXPECT_EQ(r[http::field::retry_after], "30");
  }
  EXPECT_EQ(metrics_.auth_failures_http.load(), 10u);
  EXPECT_EQ(metrics_.auth_throttled_http.load(), 2u);
  EXPECT_NE(metrics_.Render().find("ferry_hub_auth_throttled_total{where=\"http\"} 2"),
            std::string::npos);

  // Another address: unaffected, both ways.
  EXPECT_EQ(Get(token_, "192.0.2.8").result_int(), 200u);
  EXPECT_EQ(Get(bad, "192.0.2.8").result_int(), 401u);

  // After the window, the right token works from the throttled address.
  clock_.Advance(29 * kSecond);
  EXPECT_EQ(Get(token_, "192.0.2.7").result_int(), 429u);
  clock_.Advance(kSecond);
  EXPECT_EQ(Get(token_, "192.0.2.7").result_int(), 200u);
}

TEST_F(RestApiThrottleTest, SuccessesNeitherCountNorReset) {
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Get(token_, "192.0.2.7").result_int(), 200u);
  for (int i = 0; i < 9; ++i) {
    ASSERT_EQ(Get("fry_wrong", "192.0.2.7").result_int(), 401u);
    ASSERT_EQ(Get(token_, "192.0.2.7").result_int(), 200u);
  }
  EXPECT_EQ(Get("fry_wrong", "192.0.2.7").result_int(), 401u);  // the 10th failure
  EXPECT_EQ(Get(token_, "192.0.2.7").result_int(), 429u);
}

TEST_F(RestApiThrottleTest, RequestsWithoutATokenDoNotCount) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Get("", "192.0.2.7", /*with_header=*/false).result_int(), 401u);
  }
  EXPECT_EQ(Get(token_, "192.0.2.7").result_int(), 200u);
  EXPECT_EQ(metrics_.auth_failures_http.load(), 0u);
}

TEST_F(RestApiThrottleTest, PublicEndpointsAreNeverThrottled) {
  for (int i = 0; i < 10; ++i) Get("fry_wrong", "192.0.2.7");
  ASSERT_EQ(Get(token_, "192.0.2.7").result_int(), 429u);
  for (const char* target : {"/healthz", "/metrics"}) {
    HttpRequest req{http::verb::get, target, 11};
    req.prepare_payload();
    EXPECT_EQ(api_->Handle(req, "192.0.2.7").result_int(), 200u) << target;
  }
}

}  // namespace
}  // namespace ferry::hub
