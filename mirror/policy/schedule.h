// Schedules in a policy's time zone: when a MirrorPolicy's schedule fires
// next, and which bandwidth limit is in force now. Reference:
// docs/policies.md ("Time zones and DST").
//
// TimeZone reads a zone file from the system's tzdata itself (TZif, RFC 8536:
// the 64-bit data of version 2+ files, and the footer's POSIX TZ string for
// instants after the last transition; version 1 files from their 32-bit
// data). It does not use the C library's
// localtime (setenv("TZ") is process-wide and not thread-safe) nor
// std::chrono's zone database (absent from this libstdc++).
//
// DST rules of NextRun for cron schedules (a local minute X matches the cron
// fields; it fires at the first instant at which the wall clock reads X or
// later):
//   - a skipped local time (spring forward) fires once, at the first instant
//     after the gap (03:00 in Europe/Paris); several matching times in one
//     gap give that single run;
//   - a repeated local time (fall back) fires only at its first occurrence.
// `every` schedules ignore zones and DST: they fire at multiples of the
// interval since the Unix epoch.
//
// Thread-safety: TimeZone is immutable, safe to share between threads; the
// free functions are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/env.h"
#include "core/status.h"
#include "mirror/policy/mirror_policy.h"

namespace ferry::mirror {

// A zone file larger than this is refused (kResourceExhausted); real ones
// are below 4 KiB.
inline constexpr uint64_t kMaxTimeZoneFileBytes = uint64_t{256} << 10;
// NextRun gives up (kNotFound) when a cron schedule does not fire within this
// many local days after the instant it starts from (8 years, leap days
// included: "0 0 29 2 *" always fires within it, even across 2100).
inline constexpr int64_t kMaxScheduleSearchDays = 8 * 366;
// Instants handled by TimeZone: about ±34,800 years around 1970. ToLocal
// clamps outside this range; NextRun refuses it (kOutOfRange).
inline constexpr int64_t kMaxZoneSeconds = int64_t{1} << 40;

// A wall-clock time in a zone.
struct LocalTime {
  int year = 1970;
  int month = 1;  // 1-12
  int day = 1;    // 1-31
  int hour = 0;
  int minute = 0;
  int second = 0;
  int weekday = 4;                 // 0 = Sunday
  int32_t utc_offset_seconds = 0;  // local = UTC + offset (Paris in summer: 7200)
  bool dst = false;

  bool operator==(const LocalTime&) const = default;
};

class TimeZone {
 public:
  // Coordinated Universal Time: offset 0, no DST, no tzdata needed.
  static TimeZone Utc();

  // An IANA zone name that ValidateTimeZone accepts, read from
  // /usr/share/zoneinfo/<name>. "UTC" always works (without reading tzdata).
  // kInvalidArgument: the name is refused by ValidateTimeZone (unknown zone,
  // no tzdata), or the zone counts leap seconds ("right/..."); kDataLoss: the
  // file is damaged (the message names it); kResourceExhausted: the file is
  // larger than kMaxTimeZoneFileBytes; other Env errors as they come.
  static Result<TimeZone> Load(std::string_view name);

  // As Load, for a TZif file at any `path`, named `name` (no name checks):
  // tests, and zone files shipped outside /usr/share/zoneinfo. `env` is only
  // used during the call.
  static Result<TimeZone> LoadFile(std::string_view name, const std::string& path, Env& env);

  // Decodes TZif bytes; `source` (a path) names them in errors. Errors as Load.
  static Result<TimeZone> Parse(std::string_view name, ByteView tzif, std::string_view source);

  const std::string& name() const { return name_; }

  // The wall-clock time at an instant (seconds since the Unix epoch, UTC).
  LocalTime ToLocal(int64_t unix_seconds) const;

  // The stretch of time around `unix_seconds` during which the UTC offset
  // and the DST flag do not change: [start, end), start <= unix_seconds <
  // end. INT64_MIN / INT64_MAX when unbounded; beyond ±kMaxZoneSeconds the
  // offset in force there goes on. Consecutive periods may have the same
  // offset (a change of abbreviation only).
  struct Period {
    int64_t start = 0;
    int64_t end = 0;
    int32_t utc_offset_seconds = 0;
    bool dst = false;
  };
  Period PeriodAt(int64_t unix_seconds) const;

  // A daylight saving rule from a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3").
  // Public so that tests can check it; used for the footer of TZif files.
  struct Rule {
    enum class Kind : uint8_t { kJulianNoLeap, kZeroBasedDay, kMonthWeekDay };
    Kind kind = Kind::kMonthWeekDay;
    int day = 0;          // Jn: 1-365; n: 0-365; M: day of the week 0-6
    int week = 0;         // M: 1-5 (5 = last)
    int month = 0;        // M: 1-12
    int32_t time = 7200;  // seconds after local midnight, -167h..167h
  };
  struct PosixTz {
    int32_t std_offset = 0;  // seconds east of UTC (the sign POSIX uses is reversed)
    bool has_dst = false;
    int32_t dst_offset = 0;
    Rule start;  // DST starts: `start.time` is standard time
    Rule end;    // DST ends: `end.time` is daylight saving time
  };
  // Parses a POSIX TZ string with the RFC 8536 extensions (rule times from
  // -167 to 167 hours). kInvalidArgument when malformed.
  static Result<PosixTz> ParsePosixTz(std::string_view text);

 private:
  struct Type {
    int32_t utc_offset = 0;
    bool dst = false;
  };
  TimeZone() = default;
  // Period from the footer rule, for instants at or after the last transition.
  Period FooterPeriodAt(int64_t t) const;

  std::string name_;
  std::vector<int64_t> transitions_;  // strictly increasing
  std::vector<uint8_t> type_index_;   // per transition, into types_
  std::vector<Type> types_;           // at least one
  bool has_footer_ = false;           // a non-empty TZ string
  PosixTz footer_;
};

// A zone loaded once per process and shared: the agent evaluates schedules
// every minute. Errors are not cached (tzdata may be installed later), and
// later tzdata updates are seen only by a new process. Errors as
// TimeZone::Load. Thread-safe.
Result<std::shared_ptr<const TimeZone>> LoadTimeZoneCached(std::string_view name);

// The first instant strictly after `after_unix` (seconds since the Unix
// epoch) at which `schedule` fires, in `zone`.
// - every N: at multiples of N seconds since the epoch (restarts do not shift
//   the runs; N is elapsed time, DST does not matter).
// - cron: at local minutes matching its fields, with the DST rules above.
// kNotFound: a cron schedule that does not fire within kMaxScheduleSearchDays
// ("0 0 30 2 *"); kInvalidArgument: a schedule with neither or both of cron
// and every, an interval <= 0, or a cron whose fields have the wrong sizes;
// kOutOfRange: `after_unix` beyond ±kMaxZoneSeconds.
// Cost: a few microseconds; whole days (and months) that cannot match are
// skipped.
Result<int64_t> NextRun(const Schedule& schedule, const TimeZone& zone, int64_t after_unix);

// The policy's bandwidth limit in force at an instant: BandwidthLimitAt on
// the weekday and minute of the day in `zone`. 0 = unlimited.
uint64_t BandwidthLimitNow(const MirrorPolicy& policy, const TimeZone& zone, int64_t unix_seconds);

}  // namespace ferry::mirror
