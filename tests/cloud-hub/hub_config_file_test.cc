// The hub's config file (cloud-hub/hub_config_file.cc): parsing, the
// unknown-key and type checks, flags beating the file, and the range checks
// of every `ferry-hub run` setting. The binary's own handling (precedence of
// the environment, --check) is tested through the process in
// deploy_manifest_test.cc.
#include "cloud-hub/hub_config_file.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "tests/testing/test_util.h"

namespace ferry::hub {
namespace {

using ::ferry::testing::HasCode;
using ::ferry::testing::SourceDir;
using ::ferry::testing::TempDir;
using ::ferry::testing::WriteFileOrDie;

bool NoFlags(std::string_view) { return false; }

// The settings `text` gives (no flags), or the error.
Result<HubRunSettings> Apply(std::string_view text) {
  ASSIGN_OR_RETURN(HubConfigFile file, HubConfigFile::Parse(text, "hub.yaml"));
  HubRunSettings settings;
  RETURN_IF_ERROR(file.ApplyTo(settings, NoFlags));
  return settings;
}

std::string ErrorOf(std::string_view text) {
  Result<HubRunSettings> r = Apply(text);
  EXPECT_FALSE(r.ok()) << text;
  EXPECT_TRUE(HasCode(r.status(), StatusCode::kInvalidArgument)) << text;
  return r.status().message();
}

void ExpectDefaults(const HubRunSettings& s) {
  const HubRunSettings d;
  EXPECT_EQ(s.listen, d.listen);
  EXPECT_EQ(s.data_dir, d.data_dir);
  EXPECT_EQ(s.public_url, d.public_url);
  EXPECT_EQ(s.log_format, d.log_format);
  EXPECT_EQ(s.log_level, d.log_level);
  EXPECT_EQ(s.max_sessions, d.max_sessions);
  EXPECT_EQ(s.io_threads, d.io_threads);
  EXPECT_EQ(s.shutdown_grace, d.shutdown_grace);
  EXPECT_EQ(s.session_idle_timeout, d.session_idle_timeout);
  EXPECT_EQ(s.max_frame_bytes, d.max_frame_bytes);
  EXPECT_EQ(s.upload_window_bytes, d.upload_window_bytes);
  EXPECT_EQ(s.max_http_body_bytes, d.max_http_body_bytes);
  EXPECT_EQ(s.auth_max_failures, d.auth_max_failures);
  EXPECT_EQ(s.auth_failure_window, d.auth_failure_window);
  EXPECT_EQ(s.auth_max_addresses, d.auth_max_addresses);
}

constexpr char kEverything[] = R"(listen: "127.0.0.1:9000"
dataDir: /srv/hub
publicUrl: ws://hub.example/v1/link
log: {format: json, level: debug}
limits:
  maxSessions: 10
  ioThreads: 4
  maxFrameBytes: 65536
  uploadWindowBytes: 131072
  maxHttpBodyBytes: 2048
  sessionIdleTimeout: 30s
auth:
  maxFailures: 0
  failureWindow: 1h
  maxAddresses: 16
shutdownGrace: 1m30s
)";

TEST(HubConfigFileTest, SampleConfigHoldsTheDefaults) {
  Result<HubConfigFile> file = HubConfigFile::Load(SourceDir() + "/configs/hub.yaml");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  HubRunSettings settings;
  ASSERT_TRUE(file->ApplyTo(settings, NoFlags).ok());
  ExpectDefaults(settings);
  EXPECT_TRUE(ValidateHubRunSettings(settings).ok());
}

TEST(HubConfigFileTest, NoFileEmptyFileAndNullValuesChangeNothing) {
  Result<HubConfigFile> none = HubConfigFile::Load("");
  ASSERT_TRUE(none.ok());
  HubRunSettings settings;
  ASSERT_TRUE(none->ApplyTo(settings, NoFlags).ok());
  ExpectDefaults(settings);
  for (const char* text : {"", "# only a comment\n", "~\n", "listen:\npublicUrl:\n", "limits: {}\n",
                           "log: {level: ~}\n"}) {
    SCOPED_TRACE(text);
    Result<HubRunSettings> s = Apply(text);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ExpectDefaults(*s);
  }
}

TEST(HubConfigFileTest, EveryKeyIsApplied) {
  Result<HubRunSettings> s = Apply(kEverything);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->listen, "127.0.0.1:9000");
  EXPECT_EQ(s->data_dir, "/srv/hub");
  EXPECT_EQ(s->public_url, "ws://hub.example/v1/link");
  EXPECT_EQ(s->log_format, "json");
  EXPECT_EQ(s->log_level, "debug");
  EXPECT_EQ(s->max_sessions, 10);
  EXPECT_EQ(s->io_threads, 4);
  EXPECT_EQ(s->max_frame_bytes, 65536);
  EXPECT_EQ(s->upload_window_bytes, 131072);
  EXPECT_EQ(s->max_http_body_bytes, 2048);
  EXPECT_EQ(s->session_idle_timeout, "30s");
  EXPECT_EQ(s->auth_max_failures, 0);
  EXPECT_EQ(s->auth_failure_window, "1h");
  EXPECT_EQ(s->auth_max_addresses, 16);
  EXPECT_EQ(s->shutdown_grace, "1m30s");

  Result<HubRunConfig> run = ValidateHubRunSettings(*s);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->hub.listen_address, "127.0.0.1");
  EXPECT_EQ(run->hub.port, 9000);
  EXPECT_EQ(run->hub.data_dir, "/srv/hub");
  EXPECT_EQ(run->hub.public_url, "ws://hub.example/v1/link");
  EXPECT_EQ(run->hub.max_sessions, 10u);
  EXPECT_EQ(run->hub.io_threads, 4);
  EXPECT_EQ(run->hub.max_frame_bytes, 65536u);
  EXPECT_EQ(run->hub.upload_window_bytes, 131072u);
  EXPECT_EQ(run->hub.max_http_body_bytes, 2048u);
  EXPECT_EQ(run->hub.session_idle_timeout, std::chrono::seconds(30));
  EXPECT_EQ(run->hub.auth_throttle.max_failures, 0u);
  EXPECT_EQ(run->hub.auth_throttle.window, std::chrono::hours(1));
  EXPECT_EQ(run->hub.auth_throttle.max_addresses, 16u);
  EXPECT_EQ(run->shutdown_grace, std::chrono::seconds(90));
  EXPECT_EQ(run->log_level, log::Level::kDebug);
}

TEST(HubConfigFileTest, GivenFlagsBeatTheFileWhoseValuesAreThenNotLookedAt) {
  Result<HubConfigFile> file =
      HubConfigFile::Parse("listen: 1.2.3.4:5\nlimits: {ioThreads: [not, a, number]}\n", "x.yaml");
  ASSERT_TRUE(file.ok());
  std::set<std::string> asked;
  HubRunSettings settings;
  settings.io_threads = 7;  // as the flag set it
  const Status s = file->ApplyTo(settings, [&](std::string_view flag) {
    asked.emplace(flag);
    return flag == "--io-threads";
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(settings.io_threads, 7);
  EXPECT_EQ(settings.listen, "1.2.3.4:5");
  // Every setting's flag is asked about.
  EXPECT_EQ(asked.size(), 15u);
  EXPECT_TRUE(asked.count("--max-http-body-bytes"));
  EXPECT_TRUE(asked.count("--auth-failure-window"));
}

TEST(HubConfigFileTest, UnknownKeysAreRefusedWithTheirLine) {
  EXPECT_EQ(ErrorOf("listen: a:1\nlisten2: x\n"), "hub.yaml:2: unknown key 'listen2'");
  EXPECT_EQ(ErrorOf("limits:\n  maxSessions: 3\n  maxSesions: 4\n"),
            "hub.yaml:3: unknown key 'limits.maxSesions'");
  // A section given as a scalar is not a known key.
  EXPECT_EQ(ErrorOf("auth: 3\n"), "hub.yaml:1: unknown key 'auth'");
  // Keys are checked before any value.
  EXPECT_EQ(ErrorOf("limits: {ioThreads: x}\nbogus: 1\n"), "hub.yaml:2: unknown key 'bogus'");
}

TEST(HubConfigFileTest, ValuesOfTheWrongTypeAreRefused) {
  EXPECT_EQ(ErrorOf("\nlimits:\n  ioThreads: two\n"),
            "hub.yaml:3: limits.ioThreads: expected an integer");
  EXPECT_EQ(ErrorOf("listen: [a, b]\n"), "hub.yaml:1: listen: expected a string");
  EXPECT_EQ(ErrorOf("auth: {maxFailures: 1.5}\n"),
            "hub.yaml:1: auth.maxFailures: expected an integer");
}

TEST(HubConfigFileTest, DocumentsThatAreNotAMappingOrNotYamlAreRefused) {
  EXPECT_EQ(ErrorOf("- listen\n"), "hub.yaml: the config file must be a mapping of keys");
  EXPECT_EQ(ErrorOf("just text\n"), "hub.yaml: the config file must be a mapping of keys");
  const std::string bad = ErrorOf("listen: [a\n");
  EXPECT_EQ(bad.rfind("hub.yaml:", 0), 0u) << bad;
}

// Found by hub_config_fuzz: `ferry-hub run` died of an uncaught
// YAML::TypedBadConversion (std::terminate) on a key that is a list or a
// mapping; the main.cc this code came from did the same.
TEST(HubConfigFileTest, KeysThatAreNotNamesAreRefusedNotThrown) {
  EXPECT_EQ(ErrorOf("? [a, b]\n: 1\n"), "hub.yaml:1: keys must be names, got a list");
  EXPECT_EQ(ErrorOf("limits:\n  ? {x: 1}\n  : 2\n"),
            "hub.yaml:2: keys must be names, got a mapping");
  EXPECT_EQ(ErrorOf("~: 1\n"), "hub.yaml:1: keys must be names, got null");
}

// Found by hub_config_fuzz: messages echoed the document's bytes raw (an
// unknown key, a listen address, a log level, yaml-cpp's message for an
// unknown escape), so a config could put control bytes or invalid UTF-8
// into the hub's log and terminal. They are quoted now (\xNN).
TEST(HubConfigFileTest, MessagesQuoteTheDocumentsBytes) {
  EXPECT_EQ(ErrorOf("auth:\n  max\x1b[2JAddresses: 1\n"),
            "hub.yaml:2: unknown key 'auth.max\\x1b[2JAddresses'");
  EXPECT_EQ(ErrorOf("lim\xffits: 1\n"), "hub.yaml:1: unknown key 'lim\\xffits'");
  const std::string escape = ErrorOf("listen: \"a\\qb\"\n");
  EXPECT_EQ(escape.rfind("hub.yaml:1:", 0), 0u) << escape;
  for (char c : escape) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << escape;

  Result<HubRunSettings> s = Apply("listen: \"host\\n\\x01\"\nlog: {level: \"lo\\x07ud\"}\n");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Result<HubRunConfig> run = ValidateHubRunSettings(*s);
  EXPECT_EQ(run.status().message(), "listen: expected HOST:PORT, got 'host\\x0a\\x01'");
  s->listen = "host:8\xff";
  EXPECT_EQ(ValidateHubRunSettings(*s).status().message(), "listen: bad port '8\\xff'");
  s->listen = "host:80";
  EXPECT_EQ(ValidateHubRunSettings(*s).status().message(),
            "log-level: unknown log level 'lo\\x07ud' (expected debug, info, warn, error or off)");
}

TEST(HubConfigFileTest, LoadReadsTheFileAndNamesItInErrors) {
  TempDir dir;
  const std::string path = dir.Sub("hub.yaml");
  WriteFileOrDie(path, ToBytes("limits:\n  maxSessions: 5\n  nope: 1\n"));
  Result<HubConfigFile> file = HubConfigFile::Load(path);
  ASSERT_TRUE(file.ok());
  HubRunSettings settings;
  EXPECT_EQ(file->ApplyTo(settings, NoFlags).message(), path + ":3: unknown key 'limits.nope'");

  Result<HubConfigFile> missing = HubConfigFile::Load(dir.Sub("absent.yaml"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("config file"), std::string::npos)
      << missing.status().ToString();
}

TEST(HubConfigFileTest, ValidationRefusesEachSettingOutOfRange) {
  struct Case {
    const char* name;
    void (*set)(HubRunSettings&);
    const char* message;
  };
  const Case cases[] = {
      {"no port", [](HubRunSettings& s) { s.listen = "0.0.0.0"; },
       "listen: expected HOST:PORT, got '0.0.0.0'"},
      {"empty port", [](HubRunSettings& s) { s.listen = "host:"; },
       "listen: expected HOST:PORT, got 'host:'"},
      {"bad port", [](HubRunSettings& s) { s.listen = "host:70000"; }, "listen: bad port '70000'"},
      {"sessions", [](HubRunSettings& s) { s.max_sessions = 0; }, "max-sessions: 1..100000"},
      {"threads", [](HubRunSettings& s) { s.io_threads = 65; }, "io-threads: 1..64"},
      {"frame", [](HubRunSettings& s) { s.max_frame_bytes = 65535; },
       "max-frame-bytes: 65536..67108864"},
      {"window", [](HubRunSettings& s) { s.upload_window_bytes = (8 << 20) - 1; },
       "upload-window-bytes: at least max-frame-bytes, at most 1 GiB"},
      {"body", [](HubRunSettings& s) { s.max_http_body_bytes = 1023; },
       "max-http-body-bytes: 1024..67108864"},
      {"grace", [](HubRunSettings& s) { s.shutdown_grace = "soon"; }, "shutdown-grace: "},
      {"idle", [](HubRunSettings& s) { s.session_idle_timeout = "0s"; }, "session-idle-timeout: "},
      {"failures", [](HubRunSettings& s) { s.auth_max_failures = -1; },
       "auth-max-failures: 0 (no throttle)..1000000"},
      {"failure window", [](HubRunSettings& s) { s.auth_failure_window = "2d"; },
       "auth-failure-window: 1s..1d"},
      {"addresses", [](HubRunSettings& s) { s.auth_max_addresses = 15; },
       "auth-max-addresses: 16..1000000"},
      {"level", [](HubRunSettings& s) { s.log_level = "loud"; }, "log-level: "},
      {"format", [](HubRunSettings& s) { s.log_format = "xml"; }, "log-format: auto, text or json"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HubRunSettings settings;
    c.set(settings);
    Result<HubRunConfig> run = ValidateHubRunSettings(settings);
    ASSERT_FALSE(run.ok());
    EXPECT_TRUE(HasCode(run.status(), StatusCode::kInvalidArgument));
    EXPECT_EQ(run.status().message().rfind(c.message, 0), 0u) << run.status().message();
  }
}

TEST(HubConfigFileTest, ValidationTakesBracketedIpv6HostsAndPortZero) {
  HubRunSettings settings;
  settings.listen = "[::1]:0";
  Result<HubRunConfig> run = ValidateHubRunSettings(settings);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->hub.listen_address, "::1");
  EXPECT_EQ(run->hub.port, 0);
  EXPECT_EQ(run->shutdown_grace, std::chrono::seconds(20));
  EXPECT_EQ(run->hub.session_idle_timeout, std::chrono::minutes(2));
}

}  // namespace
}  // namespace ferry::hub
