// MirrorPolicy: what an operator schedules — which agents and datasets, how
// often, to which hubs, how long to keep, how much bandwidth, what RPO. A
// Kubernetes-style document (apiVersion ferry/v1, kind MirrorPolicy), in
// YAML or JSON. Reference: docs/policies.md.
//
//   apiVersion: ferry/v1
//   kind: MirrorPolicy
//   metadata: {name: shop-cameras, tenant: retail}
//   spec:
//     agents: {matchLabels: {site: shop}}
//     datasets: [videos, events]          # captured together, in one cut
//     schedule: "*/15 * * * *"            # cron (5 fields), or  every: 10m
//     timeZone: Europe/Paris              # optional; UTC by default
//     targets: [{hub: cloud-east}, {hub: onprem-dc}]
//     retention: {keepLast: 4, hourly: 24, daily: 7, weekly: 4, monthly: 12}
//     bandwidth:
//       limit: 2MiB/s
//       windows: [{days: Mon-Fri, from: "08:00", to: "18:00", limit: 256KiB/s}]
//     rpo: 30m
//
// Parsing validates everything and names the field of every error
// ("spec.retention.daily: must be an integer >= 0, got -1 (line 10, column 47)").
// Unknown fields are errors (a typo must not silently do nothing). Every
// error is kInvalidArgument.
// Thread-safety: free functions, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace ferry::mirror {

// Limits (docs/policies.md).
inline constexpr size_t kMaxPolicyBytes = size_t{1} << 20;  // refused before parsing
inline constexpr size_t kMaxPolicyListLength = 64;          // datasets, targets, windows, labels
inline constexpr int64_t kMaxDurationSeconds = int64_t{366} * 86400;
// schedule.every: an unchanged volume costs one stat per file, so short
// intervals are affordable for small volumes (and demos).
inline constexpr int64_t kMinEverySeconds = 10;
inline constexpr int64_t kMinRpoSeconds = 60;                          // spec.rpo
inline constexpr uint64_t kMaxBytesPerSecond = 1'000'000'000'000'000;  // 1 PB/s

// A cron schedule: five fields (minute hour day-of-month month day-of-week),
// each "*", a number, a range "a-b", a list "a,b,c", or a step "*/n" /
// "a-b/n"; day-of-week 0-7 (0 and 7 = Sunday) or Sun-Sat; month 1-12 or
// Jan-Dec. Stored expanded. "a/n" means "a-max/n"; in day-of-week, "Sun" at
// the end of a range means 7 ("Fri-Sun").
struct CronSchedule {
  std::string text;            // the five fields, separated by single spaces
  std::vector<bool> minutes;   // 60
  std::vector<bool> hours;     // 24
  std::vector<bool> days;      // 32 (index 1-31)
  std::vector<bool> months;    // 13 (index 1-12)
  std::vector<bool> weekdays;  // 7 (0 = Sunday)
  // As classic (Vixie) cron: a field is restricted unless it starts with "*"
  // ("*" and "*/2" are not restricted). When both day fields are restricted,
  // a day matches if either matches; otherwise both must match.
  bool days_restricted = false;      // day-of-month field did not start with "*"
  bool weekdays_restricted = false;  // day-of-week field did not start with "*"

  bool operator==(const CronSchedule&) const = default;
};

struct Schedule {
  std::optional<CronSchedule> cron;      // exactly one of cron / every
  std::optional<int64_t> every_seconds;  // "every: 10m"

  bool operator==(const Schedule&) const = default;
};

struct BandwidthWindow {
  std::vector<bool> days;         // 7 (0 = Sunday): the days the window starts on
  int from_minute = 0;            // minutes after midnight, local to the policy's zone
  int to_minute = 0;              // exclusive; to < from wraps past midnight; 1440 = "24:00"
  uint64_t bytes_per_second = 0;  // > 0

  bool operator==(const BandwidthWindow&) const = default;
};

struct Bandwidth {
  uint64_t bytes_per_second = 0;         // 0 = unlimited
  std::vector<BandwidthWindow> windows;  // never overlap (checked when parsed)

  bool operator==(const Bandwidth&) const = default;
};

struct Retention {
  uint32_t keep_last = 0;
  uint32_t hourly = 0;
  uint32_t daily = 0;
  uint32_t weekly = 0;
  uint32_t monthly = 0;

  bool operator==(const Retention&) const = default;
};

struct MirrorPolicy {
  std::string name;    // metadata.name (ValidateName rules: [a-z0-9-], 1-63)
  std::string tenant;  // metadata.tenant (may be empty in an agent's local config)
  std::map<std::string, std::string> match_labels;  // spec.agents.matchLabels; empty = every agent
  std::vector<std::string> datasets;                // at least one
  Schedule schedule;
  std::string time_zone = "UTC";     // an IANA zone known to this system's tzdata
  std::vector<std::string> targets;  // hub names, in order of preference; at least one
  Retention retention;
  Bandwidth bandwidth;
  std::optional<int64_t> rpo_seconds;

  bool operator==(const MirrorPolicy&) const = default;
};

// Parses a YAML or JSON document (one document, at most kMaxPolicyBytes).
// kInvalidArgument naming the field.
Result<MirrorPolicy> ParseMirrorPolicy(std::string_view text);

// A valid policy as canonical JSON: one line, keys in a fixed order, rates
// as integers (bytes/s), durations as FormatDuration strings ("1h30m"), cron
// as its text, fields at their default left out (timeZone is always
// written). ParseMirrorPolicy gives back an equal policy.
std::string MirrorPolicyToJson(const MirrorPolicy& policy);

// "10m", "1h30m", "45s", "2d" -> seconds; kInvalidArgument otherwise.
Result<int64_t> ParseDuration(std::string_view text);
// "2MiB/s", "256KiB/s", "20MB/s", "1000000" (bytes/s) -> bytes per second.
// Units B, KB (= kB), MB, GB (powers of 1000), KiB, MiB, GiB (powers of
// 1024), "/s" required after a unit; a decimal ("1.5MB/s") is rounded down to
// whole bytes/s. 1 to kMaxBytesPerSecond.
Result<uint64_t> ParseRate(std::string_view text);

// Seconds as the shortest duration string: 5400 -> "1h30m", 90 -> "1m30s".
std::string FormatDuration(int64_t seconds);

// The cron expression alone (the same rules as spec.schedule).
Result<CronSchedule> ParseCron(std::string_view text);

// Whether the local time (minute 0-59, hour 0-23, day of month 1-31, month
// 1-12, weekday 0-6 with 0 = Sunday) is one the schedule fires at.
bool CronMatches(const CronSchedule& cron, int minute, int hour, int day_of_month, int month,
                 int weekday);

// A zone name that exists under /usr/share/zoneinfo as a TZif file, without
// leaving that directory ("UTC" is always accepted, tzdata or not).
Status ValidateTimeZone(std::string_view zone);

// The limit in force at a local time (weekday 0-6, 0 = Sunday; minute of the
// day 0-1439): the window covering it, else bandwidth.bytes_per_second.
// 0 = unlimited. A window that wraps past midnight covers the next morning
// too (it belongs to the day it starts on).
uint64_t BandwidthLimitAt(const Bandwidth& bandwidth, int weekday, int minute_of_day);

}  // namespace ferry::mirror
