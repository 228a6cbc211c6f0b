#include "core/log.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ferry::log
