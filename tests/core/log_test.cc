#include "core/log.h"

#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <boost/json.hpp>
#include <sstream>
#include <string>

namespace ferry::log {
namespace {

TEST(LogTest, ParseLevelAcceptsTheDocumentedNames) {
  struct Case {
    std::string_view name;
    Level level;
  };
  const Case cases[] = {
      {"debug", Level::kDebug}, {"info", Level::kInfo}, {"warn", Level::kWarn},
      {"error", Level::kError}, {"off", Level::kOff},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<Level> r = ParseLevel(c.name);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, c.level);
  }
}

TEST(LogTest, ParseLevelRejectsOtherNamesWithAMessage) {
  for (std::string_view name : {"", "trace", "verbose", "fatal", "infos", " info", "debug "}) {
    SCOPED_TRACE("'" + std::string(name) + "'");
    Result<Level> r = ParseLevel(name);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("'" + std::string(name) + "'"), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find("debug, info, warn, error or off"), std::string::npos)
        << r.status().message();
  }
}

// JSON lines parse as JSON, escape what needs escaping, and carry the
// thread's scoped fields (the hub's session, tenant and agent) as keys.
TEST(LogTest, JsonLinesCarryScopedFields) {
  std::ostringstream out;
  Init({.level = Level::kInfo,
        .program = "ferry-test",
        .json = true,
        .sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out)});
  {
    ScopedFields session({{"session", "42"}, {"tenant", "acme"}});
    ScopedFields agent(std::vector<std::pair<std::string, std::string>>{{"agent", "edge \"1\""}});
    Info("committed {} chunks\nand a newline", 7);
  }
  Warn("outside the scope");
  Init({.level = Level::kInfo, .program = "ferry-test"});  // back to stderr text

  std::istringstream lines(out.str());
  std::string first, second;
  ASSERT_TRUE(std::getline(lines, first));
  ASSERT_TRUE(std::getline(lines, second));
  const boost::json::object a = boost::json::parse(first).as_object();
  EXPECT_EQ(a.at("level").as_string(), "info");
  EXPECT_EQ(a.at("program").as_string(), "ferry-test");
  EXPECT_EQ(a.at("msg").as_string(), "committed 7 chunks\nand a newline");
  EXPECT_EQ(a.at("session").as_string(), "42");
  EXPECT_EQ(a.at("tenant").as_string(), "acme");
  EXPECT_EQ(a.at("agent").as_string(), "edge \"1\"");
  EXPECT_EQ(std::string(a.at("ts").as_string()).back(), 'Z');
  const boost::json::object b = boost::json::parse(second).as_object();
  EXPECT_EQ(b.at("level").as_string(), "warning");
  EXPECT_FALSE(b.contains("session"));
}

}  // namespace
}  // namespace ferry::log
