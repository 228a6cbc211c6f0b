// Tests of mirror/policy/mirror_policy.cc: the MirrorPolicy document (YAML or
// JSON), its validation errors, canonical JSON, cron, durations, rates and
// time zones.
#include "mirror/policy/mirror_policy.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::mirror {
namespace {

// The example of the issue (and of mirror_policy.h).
constexpr const char* kIssueExample = R"(apiVersion: ferry/v1
kind: MirrorPolicy
metadata: {name: shop-cameras, tenant: retail}
spec:
  agents: {matchLabels: {site: shop}}
  datasets: [videos, events]          # captured together, in one cut
  schedule: "*/15 * * * *"            # cron (5 fields), or  every: 10m
  timeZone: Europe/Paris              # optional; UTC by default
  targets: [{hub: cloud-east}, {hub: onprem-dc}]
  retention: {keepLast: 4, hourly: 24, daily: 7, weekly: 4, monthly: 12}
  bandwidth: {limit: 2MiB/s, windows: [{days: Mon-Fri, from: "08:00", to: "18:00", limit: 256KiB/s}]}
  rpo: 30m
)";

// The same policy as JSON, without timeZone (UTC).
constexpr const char* kIssueExampleJson = R"({
  "apiVersion": "ferry/v1",
  "kind": "MirrorPolicy",
  "metadata": {"name": "shop-cameras", "tenant": "retail"},
  "spec": {
    "agents": {"matchLabels": {"site": "shop"}},
    "datasets": ["videos", "events"],
    "schedule": "*/15 * * * *",
    "targets": [{"hub": "cloud-east"}, {"hub": "onprem-dc"}],
    "retention": {"keepLast": 4, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 12},
    "bandwidth": {"limit": "2MiB/s",
                  "windows": [{"days": "Mon-Fri", "from": "08:00", "to": "18:00",
                               "limit": "256KiB/s"}]},
    "rpo": "30m"
  }
})";

constexpr const char* kMinimal = R"(apiVersion: ferry/v1
kind: MirrorPolicy
metadata: {name: p1, tenant: t1}
spec:
  datasets: [videos]
  schedule: "*/15 * * * *"
  targets: [{hub: cloud-east}]
)";

bool HaveZone(const std::string& zone) {
  struct stat st;
  return stat(("/usr/share/zoneinfo/" + zone).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "test bug: " << from << " not in the document";
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

std::string WithoutTimeZone(std::string text) {
  return Replace(std::move(text),
                 "  timeZone: Europe/Paris              # optional; UTC by default\n", "");
}

std::vector<int> Set(const std::vector<bool>& flags) {
  std::vector<int> out;
  for (size_t i = 0; i < flags.size(); ++i) {
    if (flags[i]) out.push_back(static_cast<int>(i));
  }
  return out;
}

TEST(MirrorPolicyTest, IssueExampleParsesWithEveryField) {
  if (!HaveZone("Europe/Paris")) {
    GTEST_SKIP() << "no /usr/share/zoneinfo/Europe/Paris (tzdata not installed)";
  }
  Result<MirrorPolicy> p = ParseMirrorPolicy(kIssueExample);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "shop-cameras");
  EXPECT_EQ(p->tenant, "retail");
  EXPECT_EQ(p->match_labels, (std::map<std::string, std::string>{{"site", "shop"}}));
  EXPECT_EQ(p->datasets, (std::vector<std::string>{"videos", "events"}));
  ASSERT_TRUE(p->schedule.cron.has_value());
  EXPECT_FALSE(p->schedule.every_seconds.has_value());
  EXPECT_EQ(p->schedule.cron->text, "*/15 * * * *");
  EXPECT_EQ(Set(p->schedule.cron->minutes), (std::vector<int>{0, 15, 30, 45}));
  EXPECT_EQ(Set(p->schedule.cron->hours).size(), 24u);
  EXPECT_FALSE(p->schedule.cron->days_restricted);
  EXPECT_FALSE(p->schedule.cron->weekdays_restricted);
  EXPECT_EQ(p->time_zone, "Europe/Paris");
  EXPECT_EQ(p->targets, (std::vector<std::string>{"cloud-east", "onprem-dc"}));
  EXPECT_EQ(p->retention.keep_last, 4u);
  EXPECT_EQ(p->retention.hourly, 24u);
  EXPECT_EQ(p->retention.daily, 7u);
  EXPECT_EQ(p->retention.weekly, 4u);
  EXPECT_EQ(p->retention.monthly, 12u);
  EXPECT_EQ(p->bandwidth.bytes_per_second, 2u * 1024 * 1024);
  ASSERT_EQ(p->bandwidth.windows.size(), 1u);
  const BandwidthWindow& w = p->bandwidth.windows[0];
  EXPECT_EQ(Set(w.days), (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(w.from_minute, 8 * 60);
  EXPECT_EQ(w.to_minute, 18 * 60);
  EXPECT_EQ(w.bytes_per_second, 256u * 1024);
  EXPECT_EQ(p->rpo_seconds, std::optional<int64_t>(30 * 60));
}

TEST(MirrorPolicyTest, JsonDocumentParsesToTheSamePolicyAsYaml) {
  Result<MirrorPolicy> from_yaml = ParseMirrorPolicy(WithoutTimeZone(kIssueExample));
  ASSERT_TRUE(from_yaml.ok()) << from_yaml.status().ToString();
  Result<MirrorPolicy> from_json = ParseMirrorPolicy(kIssueExampleJson);
  ASSERT_TRUE(from_json.ok()) << from_json.status().ToString();
  EXPECT_EQ(*from_json, *from_yaml);
  EXPECT_EQ(from_json->time_zone, "UTC");
}

TEST(MirrorPolicyTest, MinimalPolicyGetsTheDefaults) {
  Result<MirrorPolicy> p =
      ParseMirrorPolicy(Replace(kMinimal, "{name: p1, tenant: t1}", "{name: p1}"));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->tenant, "");
  EXPECT_TRUE(p->match_labels.empty());
  EXPECT_EQ(p->time_zone, "UTC");
  EXPECT_EQ(p->retention, Retention{});
  EXPECT_EQ(p->bandwidth.bytes_per_second, 0u);
  EXPECT_TRUE(p->bandwidth.windows.empty());
  EXPECT_FALSE(p->rpo_seconds.has_value());
}

TEST(MirrorPolicyTest, CanonicalJsonHasAFixedShapeAndParsesBackEqual) {
  Result<MirrorPolicy> p = ParseMirrorPolicy(WithoutTimeZone(kIssueExample));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const std::string json = MirrorPolicyToJson(*p);
  EXPECT_EQ(json,
            R"({"apiVersion":"ferry/v1","kind":"MirrorPolicy",)"
            R"("metadata":{"name":"shop-cameras","tenant":"retail"},)"
            R"("spec":{"agents":{"matchLabels":{"site":"shop"}},"datasets":["videos","events"],)"
            R"("schedule":"*/15 * * * *","timeZone":"UTC",)"
            R"("targets":[{"hub":"cloud-east"},{"hub":"onprem-dc"}],)"
            R"("retention":{"keepLast":4,"hourly":24,"daily":7,"weekly":4,"monthly":12},)"
            R"("bandwidth":{"limit":2097152,"windows":[{"days":"Mon-Fri","from":"08:00",)"
            R"("to":"18:00","limit":262144}]},"rpo":"30m"}})");
  Result<MirrorPolicy> back = ParseMirrorPolicy(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *p);
  EXPECT_EQ(MirrorPolicyToJson(*back), json);
}

TEST(MirrorPolicyTest, RoundTripKeepsEveryScheduleWindowsAndLabels) {
  const std::string yaml = R"(apiVersion: ferry/v1
kind: MirrorPolicy
metadata:
  name: night-shift
spec:
  agents:
    matchLabels:
      example.com/site: shop-7
      tier: edge_1.2
      empty: ""
  datasets: [db, logs, media]
  schedule: {every: 1h30m}
  targets:
    - hub: a
    - hub: b
  retention: {daily: 3}
  bandwidth:
    windows:
      - {days: "Fri-Mon", from: "22:00", to: "06:00", limit: 1.5MB/s}
      - {days: [Tue, Wed, thu], from: "7:30", to: "24:00", limit: 1000}
      - {from: "06:00", to: "06:30", limit: 10kB/s}
  rpo: 2d
)";
  Result<MirrorPolicy> p = ParseMirrorPolicy(yaml);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->schedule.every_seconds, std::optional<int64_t>(5400));
  EXPECT_EQ(p->match_labels.size(), 3u);
  EXPECT_EQ(p->match_labels.at("empty"), "");
  ASSERT_EQ(p->bandwidth.windows.size(), 3u);
  EXPECT_EQ(Set(p->bandwidth.windows[0].days), (std::vector<int>{0, 1, 5, 6}));
  EXPECT_EQ(p->bandwidth.windows[0].bytes_per_second, 1'500'000u);
  EXPECT_EQ(p->bandwidth.windows[1].from_minute, 7 * 60 + 30);
  EXPECT_EQ(p->bandwidth.windows[1].to_minute, 1440);
  EXPECT_EQ(Set(p->bandwidth.windows[2].days).size(), 7u) << "days default to every day";
  const std::string json = MirrorPolicyToJson(*p);
  EXPECT_NE(json.find(R"("schedule":{"every":"1h30m"})"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("days":"Mon,Fri-Sun")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("to":"24:00")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("rpo":"2d")"), std::string::npos) << json;
  EXPECT_EQ(json.find("\"tenant\""), std::string::npos) << "empty tenant is left out: " << json;
  Result<MirrorPolicy> back = ParseMirrorPolicy(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << json;
  EXPECT_EQ(*back, *p);
  EXPECT_EQ(MirrorPolicyToJson(*back), json);
}

TEST(MirrorPolicyTest, ErrorsNameTheFieldAndTheLine) {
  Result<MirrorPolicy> p =
      ParseMirrorPolicy(Replace(WithoutTimeZone(kIssueExample), "daily: 7", "daily: -1"));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(),
            "spec.retention.daily: must be an integer >= 0, got -1 (line 9, column 47)");

  Result<MirrorPolicy> j = ParseMirrorPolicy(
      R"({"apiVersion": "ferry/v1", "kind": "MirrorPolicy", "metadata": {"name": "Bad Name"}})");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().message(),
            "metadata.name: must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or "
            "digit, got \"Bad Name\" (line 1, column 73)");
}

struct BadCase {
  std::string from;  // text of kMinimal to replace; "" = append `to` to the document
  std::string to;
  std::string want;  // substring of the error message
};

TEST(MirrorPolicyTest, EveryKindOfErrorNamesItsField) {
  std::string many;
  for (int i = 0; i < 65; ++i) many += (i ? ", d" : "d") + std::to_string(i);
  const std::vector<BadCase> cases = {
      // Header.
      {"apiVersion: ferry/v1\n", "apiVersion: ferry/v2\n", "apiVersion: must be ferry/v1"},
      {"apiVersion: ferry/v1\n", "", "apiVersion: required"},
      {"kind: MirrorPolicy\n", "kind: Policy\n", "kind: must be MirrorPolicy"},
      {"kind: MirrorPolicy\n", "kind: [MirrorPolicy]\n", "kind: must be a string, got a list"},
      {"kind: MirrorPolicy\n", "kind: MirrorPolicy\nstatus: {}\n", "status: unknown field"},
      {"apiVersion: ferry/v1\n", "apiVersion: ferry/v1\napiVersion: ferry/v1\n",
       "apiVersion: given twice"},
      // Metadata.
      {"metadata: {name: p1, tenant: t1}\n", "", "metadata: required"},
      {"metadata: {name: p1, tenant: t1}\n", "metadata: p1\n", "metadata: must be a mapping"},
      {"{name: p1, tenant: t1}", "{tenant: t1}", "metadata.name: required"},
      {"{name: p1, tenant: t1}", "{name: Shop_Cams}", "metadata.name: must be 1-63 characters"},
      {"{name: p1, tenant: t1}", "{name: -p1}", "metadata.name: must be"},
      {"{name: p1, tenant: t1}", "{name: " + std::string(64, 'a') + "}", "metadata.name: must be"},
      {"{name: p1, tenant: t1}", "{name: p1, tenant: \"\"}", "metadata.tenant: must be"},
      {"{name: p1, tenant: t1}", "{name: p1, tenant: t1, labels: {}}",
       "metadata.labels: unknown field"},
      {"{name: p1, tenant: t1}", "{name: ~}", "metadata.name: must be a string, got null"},
      // Spec.
      {"spec:\n  datasets: [videos]\n  schedule: \"*/15 * * * *\"\n  targets: [{hub: "
       "cloud-east}]\n",
       "", "spec: required"},
      {"", "  retension: {daily: 1}\n", "spec.retension: unknown field (known: agents, datasets"},
      {"", "  rpo: 1h\n  rpo: 2h\n", "spec.rpo: given twice"},
      // Agents.
      {"", "  agents: {selector: {}}\n", "spec.agents.selector: unknown field"},
      {"", "  agents: {matchLabels: [site]}\n", "spec.agents.matchLabels: must be a mapping"},
      {"", "  agents: {matchLabels: {\"bad key!\": x}}\n",
       "spec.agents.matchLabels.\"bad key!\": invalid label name"},
      {"", "  agents: {matchLabels: {-site: x}}\n", "spec.agents.matchLabels.-site: invalid label"},
      {"", "  agents: {matchLabels: {site: [a]}}\n",
       "spec.agents.matchLabels.site: must be a string, got a list"},
      {"", "  agents: {matchLabels: {site: " + std::string(64, 'x') + "}}\n",
       "spec.agents.matchLabels.site: invalid label value"},
      {"", "  agents: {matchLabels: {site: a, site: b}}\n",
       "spec.agents.matchLabels.site: given twice"},
      // Datasets.
      {"  datasets: [videos]\n", "", "spec.datasets: required"},
      {"[videos]", "[]", "spec.datasets: must list at least one"},
      {"[videos]", "videos", "spec.datasets: must be a list of dataset names, got videos"},
      {"[videos]", "[Videos]", "spec.datasets[0]: must be 1-63 characters"},
      {"[videos]", "[a, b, a]", "spec.datasets[2]: dataset \"a\" is listed twice"},
      {"[videos]", "[" + many + "]", "spec.datasets: at most 64 dataset names, got 65"},
      {"[videos]", "[{name: videos}]", "spec.datasets[0]: must be a string, got a mapping"},
      // Schedule.
      {"  schedule: \"*/15 * * * *\"\n", "", "spec.schedule: required: give a cron expression"},
      {"\"*/15 * * * *\"", "[1]", "spec.schedule: give a cron expression"},
      {"\"*/15 * * * *\"", "~", "spec.schedule: give a cron expression"},
      {"\"*/15 * * * *\"", "\"* * * *\"", "spec.schedule: cron \"* * * *\": has 4 fields"},
      {"\"*/15 * * * *\"", "\"61 * * * *\"", "spec.schedule: cron \"61 * * * *\": minute field"},
      {"\"*/15 * * * *\"", "\"0 0 30 Feb *\"", "spec.schedule: cron \"0 0 30 Feb *\": never fires"},
      {"\"*/15 * * * *\"", "10m", "for an interval write every: 10m"},
      {"\"*/15 * * * *\"", "{every: 5s}", "spec.schedule.every: must be at least 10s, got \"5s\""},
      {"\"*/15 * * * *\"", "{every: 10x}", "spec.schedule.every: duration \"10x\": unknown unit"},
      {"\"*/15 * * * *\"", "{every: 600}", "spec.schedule.every: duration \"600\": missing unit"},
      {"\"*/15 * * * *\"", "{}", "spec.schedule.every: required"},
      {"\"*/15 * * * *\"", "{cron: \"* * * * *\"}", "spec.schedule.cron: unknown field"},
      {"\"*/15 * * * *\"", "*/15 * * * *", "must be quoted"},
      // Time zone.
      {"", "  timeZone: Mars/Olympus_Mons\n", "spec.timeZone: time zone \"Mars/Olympus_Mons\""},
      {"", "  timeZone: ../../../etc/passwd\n", "spec.timeZone: time zone \"../../../etc/passwd\""},
      {"", "  timeZone: /etc/localtime\n", "spec.timeZone: time zone \"/etc/localtime\""},
      {"", "  timeZone: localtime\n", "spec.timeZone"},
      {"", "  timeZone: \"\"\n", "spec.timeZone"},
      {"", "  timeZone: {name: UTC}\n", "spec.timeZone: must be a string, got a mapping"},
      // Targets.
      {"  targets: [{hub: cloud-east}]\n", "", "spec.targets: required"},
      {"[{hub: cloud-east}]", "[]", "spec.targets: must list at least one"},
      {"[{hub: cloud-east}]", "[cloud-east]", "spec.targets[0]: must be a mapping (hub), got"},
      {"[{hub: cloud-east}]", "[{}]", "spec.targets[0].hub: required"},
      {"[{hub: cloud-east}]", "[{hub: Cloud}]", "spec.targets[0].hub: must be 1-63 characters"},
      {"[{hub: cloud-east}]", "[{hub: a, weight: 2}]", "spec.targets[0].weight: unknown field"},
      {"[{hub: cloud-east}]", "[{hub: a}, {hub: a}]",
       "spec.targets[1].hub: hub \"a\" is listed twice"},
      // Retention.
      {"", "  retention: {daily: -1}\n", "spec.retention.daily: must be an integer >= 0, got -1"},
      {"", "  retention: {daily: \"7\"}\n",
       "spec.retention.daily: must be an integer >= 0, got \"7\""},
      {"", "  retention: {hourly: 1.5}\n", "spec.retention.hourly: must be an integer >= 0"},
      {"", "  retention: {weekly: [1]}\n", "spec.retention.weekly: must be an integer >= 0"},
      {"", "  retention: {monthly: 1000001}\n", "spec.retention.monthly: must be at most 100000"},
      {"", "  retention: {keepLast: 0}\n", "spec.retention: give at least one count > 0"},
      {"", "  retention: {yearly: 1}\n", "spec.retention.yearly: unknown field"},
      {"", "  retention: 7\n", "spec.retention: must be a mapping"},
      // Bandwidth.
      {"", "  bandwidth: {}\n", "spec.bandwidth: give a limit, windows, or both"},
      {"", "  bandwidth: {limit: 2Mbps}\n", "spec.bandwidth.limit: rate \"2Mbps\": unknown unit"},
      {"", "  bandwidth: {limit: 2Mb/s}\n", "spec.bandwidth.limit: rate \"2Mb/s\": unknown unit"},
      {"", "  bandwidth: {limit: 2MiB}\n", "spec.bandwidth.limit: rate \"2MiB\": add \"/s\""},
      {"", "  bandwidth: {limit: 0}\n", "spec.bandwidth.limit: rate \"0\": must be at least 1"},
      {"", "  bandwidth: {limit: 1MiB/s, burst: 2}\n", "spec.bandwidth.burst: unknown field"},
      {"", "  bandwidth: {windows: {from: \"08:00\"}}\n", "spec.bandwidth.windows: must be a list"},
      {"", "  bandwidth: {windows: [{from: \"25:00\", to: \"26:00\", limit: 1}]}\n",
       "spec.bandwidth.windows[0].from: must be a time \"HH:MM\""},
      {"", "  bandwidth: {windows: [{from: \"24:00\", to: \"06:00\", limit: 1}]}\n",
       "spec.bandwidth.windows[0].from: must be a time"},
      {"", "  bandwidth: {windows: [{from: \"08:00\", to: \"8.30\", limit: 1}]}\n",
       "spec.bandwidth.windows[0].to: must be a time"},
      {"", "  bandwidth: {windows: [{from: \"08:00\", to: \"08:00\", limit: 1}]}\n",
       "spec.bandwidth.windows[0].to: equals from (08:00)"},
      {"", "  bandwidth: {windows: [{to: \"08:00\", limit: 1}]}\n",
       "spec.bandwidth.windows[0].from: required"},
      {"", "  bandwidth: {windows: [{from: \"08:00\", to: \"09:00\"}]}\n",
       "spec.bandwidth.windows[0].limit: required"},
      {"", "  bandwidth: {windows: [{days: Mon-Fry, from: \"08:00\", to: \"09:00\", limit: 1}]}\n",
       "spec.bandwidth.windows[0].days: days are Sun, Mon"},
      {"",
       "  bandwidth: {windows: [{days: [Mon, \"\"], from: \"08:00\", to: \"09:00\", limit: 1}]}\n",
       "spec.bandwidth.windows[0].days[1]: days are"},
      {"", "  bandwidth: {windows: [{from: \"08:00\", to: \"09:00\", limit: 1, hours: 2}]}\n",
       "spec.bandwidth.windows[0].hours: unknown field"},
      {"",
       "  bandwidth:\n    windows:\n"
       "      - {days: Mon-Fri, from: \"08:00\", to: \"18:00\", limit: 1KiB/s}\n"
       "      - {days: Sun-Mon, from: \"22:00\", to: \"09:30\", limit: 2KiB/s}\n",
       "spec.bandwidth.windows[1]: overlaps windows[0] on Mon at 08:00"},
      // RPO.
      {"", "  rpo: 0s\n", "spec.rpo: duration \"0s\": must be positive"},
      {"", "  rpo: 30\n", "spec.rpo: duration \"30\": missing unit"},
      {"", "  rpo: 30s\n", "spec.rpo: must be at least 1m"},
      {"", "  rpo: 400d\n", "spec.rpo: duration \"400d\": too long"},
      // The document itself.
      {kMinimal, "- a\n- b\n", "document: must be a mapping"},
      {kMinimal, "just words", "document: must be a mapping"},
      {kMinimal, "", "document: empty"},
      {kMinimal, "# only a comment\n", "document: empty"},
      {"", "---\napiVersion: ferry/v1\n", "document: more than one YAML document"},
      // yaml-cpp's LoadAll loops forever on this one (endless empty documents).
      {kMinimal, "," + std::string(kMinimal), "document: more than one YAML document"},
      {kMinimal, "~\n", "document: empty"},
      {"", "  rpo: [1h\n", "YAML syntax error at line"},
      {"", "\tbad: tab\n", "YAML syntax error at line"},
      {kMinimal, std::string(100000, '['), "nested too deeply"},
  };
  for (const BadCase& c : cases) {
    const std::string doc =
        c.from.empty() ? std::string(kMinimal) + c.to : Replace(kMinimal, c.from, c.to);
    Result<MirrorPolicy> p = ParseMirrorPolicy(doc);
    ASSERT_FALSE(p.ok()) << "accepted:\n" << doc;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << p.status().ToString();
    EXPECT_NE(p.status().message().find(c.want), std::string::npos)
        << "want: " << c.want << "\ngot:  " << p.status().message() << "\ndoc:\n"
        << doc.substr(0, 500);
  }
}

// Found by mirror_policy_fuzz: yaml-cpp's "unknown escape character: X"
// quoted a raw byte of the document (here ESC) in the error message.
TEST(MirrorPolicyTest, YamlSyntaxErrorsNeverQuoteRawControlBytes) {
  Result<MirrorPolicy> p = ParseMirrorPolicy(std::string(kMinimal) + "x: \"a\\\x1b\"\n");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("YAML syntax error"), std::string::npos)
      << p.status().message();
  for (unsigned char c : p.status().message()) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "raw byte " << int{c} << " in: " << p.status().message();
  }
}

TEST(MirrorPolicyTest, OversizedInputIsRefusedBeforeParsing) {
  // Not YAML at all: refused for its size, not for its syntax.
  const std::string huge(kMaxPolicyBytes + 1, '[');
  Result<MirrorPolicy> p = ParseMirrorPolicy(huge);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("at most 1048576 bytes"), std::string::npos)
      << p.status().message();
  EXPECT_EQ(p.status().message().find("YAML"), std::string::npos) << p.status().message();

  // Exactly at the limit is fine.
  std::string padded = kMinimal;
  padded += "#";
  padded.append(kMaxPolicyBytes - padded.size(), 'x');
  ASSERT_EQ(padded.size(), kMaxPolicyBytes);
  Result<MirrorPolicy> ok = ParseMirrorPolicy(padded);
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

TEST(MirrorPolicyTest, TimeZoneDefaultsToUtcAndMustExistUnderZoneinfo) {
  EXPECT_TRUE(ValidateTimeZone("UTC").ok()) << "UTC needs no tzdata";
  for (const char* bad :
       {"", "Mars/Olympus_Mons", "../etc/passwd", "Europe/../../etc/passwd", "/etc/passwd",
        "/usr/share/zoneinfo/UTC", "Europe//Paris", "Europe/", "localtime", "zone.tab",
        "iso3166.tab", "Europe", "Europe/Paris\n", "Europe/Paris "}) {
    Status s = ValidateTimeZone(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "accepted: \"" << bad << "\"";
  }
  if (!HaveZone("Europe/Paris")) {
    GTEST_SKIP() << "no /usr/share/zoneinfo/Europe/Paris (tzdata not installed)";
  }
  EXPECT_TRUE(ValidateTimeZone("Europe/Paris").ok());
  EXPECT_TRUE(ValidateTimeZone("America/Argentina/Buenos_Aires").ok());
  EXPECT_TRUE(ValidateTimeZone("Etc/GMT+5").ok());
  EXPECT_EQ(ValidateTimeZone("europe/paris").code(), StatusCode::kInvalidArgument)
      << "zone names are case-sensitive";
  Result<MirrorPolicy> p = ParseMirrorPolicy(std::string(kMinimal) + "  timeZone: Europe/Paris\n");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->time_zone, "Europe/Paris");
}

TEST(CronTest, ExpandsStepsRangesListsAndNames) {
  Result<CronSchedule> c = ParseCron("  */15   9-17/2 1,15 Jan,jul,10-12  Mon-Fri ");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->text, "*/15 9-17/2 1,15 Jan,jul,10-12 Mon-Fri") << "whitespace is normalized";
  EXPECT_EQ(Set(c->minutes), (std::vector<int>{0, 15, 30, 45}));
  EXPECT_EQ(Set(c->hours), (std::vector<int>{9, 11, 13, 15, 17}));
  EXPECT_EQ(Set(c->days), (std::vector<int>{1, 15}));
  EXPECT_EQ(Set(c->months), (std::vector<int>{1, 7, 10, 11, 12}));
  EXPECT_EQ(Set(c->weekdays), (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(c->minutes.size(), 60u);
  EXPECT_EQ(c->hours.size(), 24u);
  EXPECT_EQ(c->days.size(), 32u);
  EXPECT_EQ(c->months.size(), 13u);
  EXPECT_EQ(c->weekdays.size(), 7u);

  Result<CronSchedule> from = ParseCron("30/10 0 * * *");
  ASSERT_TRUE(from.ok()) << from.status().ToString();
  EXPECT_EQ(Set(from->minutes), (std::vector<int>{30, 40, 50})) << "a/n means a-max/n";
}

TEST(CronTest, SevenAndZeroAreBothSunday) {
  for (const char* dow : {"0", "7", "Sun", "sun", "SUN"}) {
    Result<CronSchedule> c = ParseCron(std::string("0 0 * * ") + dow);
    ASSERT_TRUE(c.ok()) << dow << ": " << c.status().ToString();
    EXPECT_EQ(Set(c->weekdays), (std::vector<int>{0})) << dow;
  }
  for (const char* dow : {"5-7", "Fri-Sun", "Fri,Sat,0", "5-6,7"}) {
    Result<CronSchedule> c = ParseCron(std::string("0 0 * * ") + dow);
    ASSERT_TRUE(c.ok()) << dow << ": " << c.status().ToString();
    EXPECT_EQ(Set(c->weekdays), (std::vector<int>{0, 5, 6})) << dow;
  }
  Result<CronSchedule> all = ParseCron("0 0 * * 0-7");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(Set(all->weekdays).size(), 7u);
}

TEST(CronTest, DayOfMonthAndDayOfWeekMatchEitherOnlyWhenBothAreRestricted) {
  // Both restricted: the 1st of the month OR any Monday.
  Result<CronSchedule> both = ParseCron("0 0 1 * Mon");
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->days_restricted);
  EXPECT_TRUE(both->weekdays_restricted);
  EXPECT_TRUE(CronMatches(*both, 0, 0, 1, 5, 3)) << "the 1st, a Wednesday";
  EXPECT_TRUE(CronMatches(*both, 0, 0, 6, 5, 1)) << "the 6th, a Monday";
  EXPECT_FALSE(CronMatches(*both, 0, 0, 7, 5, 2)) << "the 7th, a Tuesday";
  EXPECT_FALSE(CronMatches(*both, 1, 0, 1, 5, 1)) << "wrong minute";

  // Day of month starts with '*': not restricted, so both must match.
  Result<CronSchedule> step = ParseCron("0 0 */2 * Mon");
  ASSERT_TRUE(step.ok());
  EXPECT_FALSE(step->days_restricted);
  EXPECT_TRUE(step->weekdays_restricted);
  EXPECT_TRUE(CronMatches(*step, 0, 0, 3, 5, 1)) << "odd day and Monday";
  EXPECT_FALSE(CronMatches(*step, 0, 0, 4, 5, 1)) << "Monday but an even day";
  EXPECT_FALSE(CronMatches(*step, 0, 0, 3, 5, 2)) << "odd day but Tuesday";

  // Only day of week restricted.
  Result<CronSchedule> dow = ParseCron("0 12 * * Sat");
  ASSERT_TRUE(dow.ok());
  EXPECT_FALSE(dow->days_restricted);
  EXPECT_TRUE(CronMatches(*dow, 0, 12, 17, 8, 6));
  EXPECT_FALSE(CronMatches(*dow, 0, 12, 18, 8, 0));

  // Only day of month restricted.
  Result<CronSchedule> dom = ParseCron("0 12 15 * *");
  ASSERT_TRUE(dom.ok());
  EXPECT_TRUE(dom->days_restricted);
  EXPECT_FALSE(dom->weekdays_restricted);
  EXPECT_TRUE(CronMatches(*dom, 0, 12, 15, 8, 4));
  EXPECT_FALSE(CronMatches(*dom, 0, 12, 16, 8, 4));

  EXPECT_FALSE(CronMatches(*dom, 0, 12, 15, 13, 4)) << "out-of-range input";
}

TEST(CronTest, RefusesMalformedExpressions) {
  for (const char* bad : {"",
                          "* * * *",
                          "* * * * * *",
                          "60 * * * *",
                          "* 24 * * *",
                          "* * 0 * *",
                          "* * 32 * *",
                          "* * * 0 *",
                          "* * * 13 *",
                          "* * * * 8",
                          "5-1 * * * *",
                          "*/0 * * * *",
                          "*/61 * * * *",
                          "1,,2 * * * *",
                          ",1 * * * *",
                          "a * * * *",
                          "* * * Foo *",
                          "* * * * Monday",
                          "* * * Mon *",
                          "* * * * Jan",
                          "@daily",
                          "0 0 31 Apr,Jun,Sep,Nov *",
                          "0 0 30 Feb *",
                          "1-2-3 * * * *",
                          "1/2/3 * * * *",
                          "* * * * *;",
                          "*/1x * * * *",
                          "-1 * * * *",
                          "99999 * * * *"}) {
    Result<CronSchedule> c = ParseCron(bad);
    EXPECT_FALSE(c.ok()) << "accepted: \"" << bad << "\"";
    if (!c.ok()) {
      EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    }
  }
  EXPECT_TRUE(ParseCron("0 0 29 Feb *").ok()) << "leap day exists";
  EXPECT_TRUE(ParseCron("0 0 30 Feb Mon").ok()) << "either day field may match";
  EXPECT_FALSE(ParseCron(std::string(300, '*')).ok());
}

TEST(DurationTest, ParsesUnitsLargestFirst) {
  const std::vector<std::pair<std::string, int64_t>> good = {
      {"45s", 45},   {"10m", 600},          {"1h30m", 5400}, {"2d", 172800}, {"1d2h3m4s", 93784},
      {"90m", 5400}, {"366d", 366 * 86400}, {"1h0m", 3600},  {"0h1s", 1},
  };
  for (const auto& [text, seconds] : good) {
    Result<int64_t> d = ParseDuration(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.status().ToString();
    EXPECT_EQ(*d, seconds) << text;
    Result<int64_t> back = ParseDuration(FormatDuration(*d));
    ASSERT_TRUE(back.ok()) << FormatDuration(*d);
    EXPECT_EQ(*back, seconds) << FormatDuration(*d);
  }
  EXPECT_EQ(FormatDuration(5400), "1h30m");
  EXPECT_EQ(FormatDuration(90), "1m30s");
  EXPECT_EQ(FormatDuration(86400 + 1), "1d1s");
  EXPECT_EQ(FormatDuration(45), "45s");
}

TEST(DurationTest, RefusesWhatIsNotAPositiveDuration) {
  for (const char* bad :
       {"", "0s", "0m0s", "-5m", "10", "10x", "1m1h", "1h1h", "367d", "1.5h", "10M", " 10m", "10m ",
        "10ms", "9999999999s", "h", "1h 30m", "+5m", "1w"}) {
    Result<int64_t> d = ParseDuration(bad);
    EXPECT_FALSE(d.ok()) << "accepted: \"" << bad << "\"";
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(RateTest, ParsesDecimalAndBinaryUnits) {
  const std::vector<std::pair<std::string, uint64_t>> good = {
      {"2MiB/s", 2u << 20},     {"256KiB/s", 256u << 10},
      {"20MB/s", 20'000'000},   {"1.5MB/s", 1'500'000},
      {"1000000", 1'000'000},   {"1B/s", 1},
      {"1GiB/s", 1u << 30},     {"10kB/s", 10'000},
      {"10KB/s", 10'000},       {"2 MiB/s", 2u << 20},
      {"0.5KiB/s", 512},        {"0.1KiB/s", 102},
      {"3GB/s", 3'000'000'000}, {"1000000GB/s", 1'000'000'000'000'000},
  };
  for (const auto& [text, rate] : good) {
    Result<uint64_t> r = ParseRate(text);
    ASSERT_TRUE(r.ok()) << text << ": " << r.status().ToString();
    EXPECT_EQ(*r, rate) << text;
  }
}

TEST(RateTest, RefusesBitsMissingPerSecondAndNonsense) {
  for (const char* bad : {"",
                          "0",
                          "0B/s",
                          "2MiB",
                          "2Mb/s",
                          "2Mbps",
                          "2mib/s",
                          "1.5",
                          "-1",
                          "MiB/s",
                          "2TiB/s",
                          "1.KB/s",
                          "1000001GB/s",
                          "0.0001KB/s",
                          "1000/s",
                          "2MiB/m",
                          "10000000000000000",
                          "1e6",
                          "1.1234567MB/s",
                          "2MiB/s "}) {
    Result<uint64_t> r = ParseRate(bad);
    EXPECT_FALSE(r.ok()) << "accepted: \"" << bad << "\"";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    }
  }
  EXPECT_NE(ParseRate("2Mb/s").status().message().find("bytes, not bits"), std::string::npos);
}

TEST(MirrorPolicyTest, BandwidthWindowsApplyOnTheirDaysAndWrapPastMidnight) {
  const std::string doc = std::string(kMinimal) + R"(  bandwidth:
    limit: 10MB/s
    windows:
      - {days: Mon-Fri, from: "08:00", to: "18:00", limit: 1MB/s}
      - {days: Fri, from: "22:00", to: "06:00", limit: 50MB/s}
)";
  Result<MirrorPolicy> p = ParseMirrorPolicy(doc);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const Bandwidth& b = p->bandwidth;
  constexpr int kMon = 1, kFri = 5, kSat = 6, kSun = 0;
  EXPECT_EQ(BandwidthLimitAt(b, kMon, 8 * 60), 1'000'000u) << "start is inclusive";
  EXPECT_EQ(BandwidthLimitAt(b, kMon, 18 * 60 - 1), 1'000'000u);
  EXPECT_EQ(BandwidthLimitAt(b, kMon, 18 * 60), 10'000'000u) << "end is exclusive";
  EXPECT_EQ(BandwidthLimitAt(b, kSat, 12 * 60), 10'000'000u) << "not on its days";
  EXPECT_EQ(BandwidthLimitAt(b, kFri, 23 * 60), 50'000'000u);
  EXPECT_EQ(BandwidthLimitAt(b, kSat, 5 * 60), 50'000'000u) << "Friday's window, Saturday morning";
  EXPECT_EQ(BandwidthLimitAt(b, kSat, 6 * 60), 10'000'000u);
  EXPECT_EQ(BandwidthLimitAt(b, kFri, 5 * 60), 10'000'000u) << "Thursday has no night window";
  EXPECT_EQ(BandwidthLimitAt(b, kSun, 1 * 60), 10'000'000u);

  Bandwidth unlimited;
  EXPECT_EQ(BandwidthLimitAt(unlimited, kMon, 0), 0u);
}

}  // namespace
}  // namespace ferry::mirror
