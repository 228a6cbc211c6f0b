#include "mirror/policy/mirror_policy.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <utility>

#include <yaml-cpp/yaml.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "mirror/policy/yaml_fields.h"

namespace ferry::mirror {
namespace {

constexpr const char* kZoneInfoDir = "/usr/share/zoneinfo";
constexpr uint32_t kMaxRetentionCount = 100000;
constexpr size_t kMaxCronLength = 256;
constexpr size_t kMaxZoneLength = 128;
constexpr int kMinutesPerDay = 1440;
constexpr int kMinutesPerWeek = 7 * kMinutesPerDay;

constexpr std::array<std::string_view, 7> kDayNames = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> kMonthNames = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLowerAlnum(char c) { return IsDigit(c) || (c >= 'a' && c <= 'z'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }
char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToLower(a[i]) != ToLower(b[i])) return false;
  }
  return true;
}

using yaml_fields::Child;
using yaml_fields::Describe;
using yaml_fields::Field;
using yaml_fields::FieldError;
using yaml_fields::Index;
using yaml_fields::LineColumn;
using yaml_fields::Mapping;
using yaml_fields::NameProblem;
using yaml_fields::Quote;
using yaml_fields::Sanitize;
using yaml_fields::String;
using yaml_fields::Where;

Result<std::vector<Field>> List(const Field& field, size_t min, std::string_view what) {
  return yaml_fields::List(field, min, kMaxPolicyListLength, what);
}

Result<std::string> Name(const Field& field) {
  ASSIGN_OR_RETURN(std::string name, String(field));
  if (std::string problem = NameProblem(name); !problem.empty()) return field.Error(problem);
  return name;
}

Result<uint32_t> Count(const Field& field) {
  const std::string bad = "must be an integer >= 0, got " + Describe(field.node);
  // A quoted "4" is a string, not a number (JSON types hold).
  if (!field.node.IsScalar() || field.node.Tag() == "!") return field.Error(bad);
  const std::string& s = field.node.Scalar();
  if (s.empty() || !std::all_of(s.begin(), s.end(), IsDigit)) return field.Error(bad);
  if (s.size() > 9 || std::stoul(s) > kMaxRetentionCount) {
    return field.Error("must be at most " + std::to_string(kMaxRetentionCount) + ", got " +
                       Sanitize(s));
  }
  return static_cast<uint32_t>(std::stoul(s));
}

Result<int64_t> DurationField(const Field& field, int64_t min) {
  if (!field.node.IsScalar()) {
    return field.Error("must be a duration such as \"10m\" or \"1h30m\", got " +
                       Describe(field.node));
  }
  Result<int64_t> d = ParseDuration(field.node.Scalar());
  if (!d.ok()) return field.Error(d.status().message());
  if (*d < min) {
    return field.Error("must be at least " + FormatDuration(min) + ", got " +
                       Quote(field.node.Scalar()));
  }
  return *d;
}

Result<uint64_t> RateField(const Field& field) {
  if (!field.node.IsScalar()) {
    return field.Error("must be a rate such as \"2MiB/s\" or a number of bytes per second, got " +
                       Describe(field.node));
  }
  Result<uint64_t> r = ParseRate(field.node.Scalar());
  if (!r.ok()) return field.Error(r.status().message());
  return *r;
}

Result<std::map<std::string, std::string>> Labels(const Field& field) {
  return yaml_fields::Labels(field, kMaxPolicyListLength);
}

// --- days and clock times (bandwidth windows) ---

std::optional<int> DayIndex(std::string_view name) {
  for (size_t i = 0; i < kDayNames.size(); ++i) {
    if (EqualsIgnoreCase(name, kDayNames[i])) return static_cast<int>(i);
  }
  return std::nullopt;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "Mon-Fri", "Sat,Sun", "Mon", "Fri-Mon" (ranges wrap around the week) into
// `days` (7, 0 = Sunday). "" on success, else why not.
std::string AddDays(std::string_view text, std::vector<bool>* days) {
  const std::string usage =
      "days are Sun, Mon, Tue, Wed, Thu, Fri, Sat, as a list (\"Sat,Sun\") "
      "or a range (\"Mon-Fri\"), got " +
      Quote(text);
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view item = Trim(text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    const size_t dash = item.find('-');
    const std::optional<int> from =
        DayIndex(Trim(item.substr(0, dash == std::string_view::npos ? item.size() : dash)));
    const std::optional<int> to =
        dash == std::string_view::npos ? from : DayIndex(Trim(item.substr(dash + 1)));
    if (!from || !to) return usage;
    for (int d = *from;; d = (d + 1) % 7) {
      (*days)[static_cast<size_t>(d)] = true;
      if (d == *to) break;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return "";
}

Result<std::vector<bool>> Days(const Field& field) {
  std::vector<bool> days(7, false);
  if (field.node.IsSequence()) {
    ASSIGN_OR_RETURN(std::vector<Field> items, List(field, 1, "days"));
    for (const Field& item : items) {
      ASSIGN_OR_RETURN(std::string text, String(item));
      if (std::string problem = AddDays(text, &days); !problem.empty()) {
        return item.Error(problem);
      }
    }
    return days;
  }
  ASSIGN_OR_RETURN(std::string text, String(field));
  if (std::string problem = AddDays(text, &days); !problem.empty()) return field.Error(problem);
  return days;
}

// "HH:MM" (or "H:MM") -> minutes after midnight; "24:00" -> 1440 when allowed.
Result<int> ClockTime(const Field& field, bool allow_24) {
  const std::string usage = std::string("must be a time \"HH:MM\" (00:00-23:59") +
                            (allow_24 ? ", or 24:00" : "") + "), got " + Describe(field.node);
  if (!field.node.IsScalar()) return field.Error(usage);
  const std::string& s = field.node.Scalar();
  const size_t colon = s.find(':');
  if (colon == std::string::npos || colon < 1 || colon > 2 || s.size() != colon + 3 ||
      !IsDigit(s[0]) || !IsDigit(s[colon - 1]) || !IsDigit(s[colon + 1]) ||
      !IsDigit(s[colon + 2])) {
    return field.Error(usage);
  }
  const int hours = std::stoi(s.substr(0, colon));
  const int minutes = std::stoi(s.substr(colon + 1));
  if (allow_24 && hours == 24 && minutes == 0) return kMinutesPerDay;
  if (hours > 23 || minutes > 59) return field.Error(usage);
  return hours * 60 + minutes;
}

std::string FormatClock(int minute) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d", minute / 60, minute % 60);
  return buf;
}

// Monday first, runs as ranges: "Mon-Fri", "Sat-Sun", "Mon,Wed".
std::string FormatDays(const std::vector<bool>& days) {
  static constexpr int kOrder[7] = {1, 2, 3, 4, 5, 6, 0};
  std::string out;
  for (int i = 0; i < 7;) {
    if (!days[static_cast<size_t>(kOrder[i])]) {
      ++i;
      continue;
    }
    int j = i;
    while (j + 1 < 7 && days[static_cast<size_t>(kOrder[j + 1])]) ++j;
    if (!out.empty()) out += ',';
    out += kDayNames[static_cast<size_t>(kOrder[i])];
    if (j > i) {
      out += '-';
      out += kDayNames[static_cast<size_t>(kOrder[j])];
    }
    i = j + 1;
  }
  return out;
}

// Calls fn(minute of the week, Sunday 00:00 = 0) for every minute the window covers.
template <typename Fn>
void ForEachWindowMinute(const BandwidthWindow& w, Fn fn) {
  for (int d = 0; d < 7; ++d) {
    if (!w.days[static_cast<size_t>(d)]) continue;
    const int start = d * kMinutesPerDay + w.from_minute;
    const int end =
        d * kMinutesPerDay + w.to_minute + (w.to_minute < w.from_minute ? kMinutesPerDay : 0);
    for (int m = start; m < end; ++m) fn(m % kMinutesPerWeek);
  }
}

Result<Bandwidth> ParseBandwidth(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m, Mapping::Open(field, {"limit", "windows"}));
  Bandwidth bw;
  if (const Field* limit = m.Get("limit")) {
    ASSIGN_OR_RETURN(bw.bytes_per_second, RateField(*limit));
  }
  if (const Field* windows = m.Get("windows")) {
    ASSIGN_OR_RETURN(std::vector<Field> items, List(*windows, 0, "windows"));
    std::vector<int> owner(kMinutesPerWeek, -1);
    for (size_t i = 0; i < items.size(); ++i) {
      ASSIGN_OR_RETURN(Mapping wm, Mapping::Open(items[i], {"days", "from", "to", "limit"}));
      BandwidthWindow w;
      w.days.assign(7, true);
      if (const Field* days = wm.Get("days")) {
        ASSIGN_OR_RETURN(w.days, Days(*days));
      }
      ASSIGN_OR_RETURN(const Field* from,
                       wm.Require("from", "the local time the window starts, \"HH:MM\""));
      ASSIGN_OR_RETURN(w.from_minute, ClockTime(*from, false));
      ASSIGN_OR_RETURN(const Field* to,
                       wm.Require("to", "the local time the window ends, \"HH:MM\""));
      ASSIGN_OR_RETURN(w.to_minute, ClockTime(*to, true));
      if (w.to_minute == w.from_minute) {
        return to->Error("equals from (" + FormatClock(w.from_minute) +
                         "); a window needs a length (to before from wraps past midnight)");
      }
      ASSIGN_OR_RETURN(const Field* limit,
                       wm.Require("limit", "the rate inside the window, e.g. \"256KiB/s\""));
      ASSIGN_OR_RETURN(w.bytes_per_second, RateField(*limit));
      std::optional<int> clash;
      ForEachWindowMinute(w, [&](int minute) {
        if (clash) return;
        if (owner[static_cast<size_t>(minute)] >= 0) {
          clash = minute;
        } else {
          owner[static_cast<size_t>(minute)] = static_cast<int>(i);
        }
      });
      if (clash) {
        return items[i].Error("overlaps windows[" +
                              std::to_string(owner[static_cast<size_t>(*clash)]) + "] on " +
                              std::string(kDayNames[static_cast<size_t>(*clash / kMinutesPerDay)]) +
                              " at " + FormatClock(*clash % kMinutesPerDay));
      }
      bw.windows.push_back(std::move(w));
    }
  }
  if (bw.bytes_per_second == 0 && bw.windows.empty()) {
    return field.Error("give a limit, windows, or both (leave bandwidth out for no limit)");
  }
  return bw;
}

Result<Schedule> ParseSchedule(const Field& field) {
  const std::string usage = "give a cron expression (\"*/15 * * * *\") or every: <duration>";
  Schedule schedule;
  if (field.node.IsScalar()) {
    Result<CronSchedule> cron = ParseCron(field.node.Scalar());
    if (!cron.ok()) {
      std::string message = cron.status().message();
      if (ParseDuration(field.node.Scalar()).ok()) {
        message += "; for an interval write every: " + Sanitize(field.node.Scalar());
      }
      return field.Error(message);
    }
    schedule.cron = std::move(*cron);
    return schedule;
  }
  if (!field.node.IsMap()) return field.Error(usage + ", got " + Describe(field.node));
  ASSIGN_OR_RETURN(Mapping m, Mapping::Open(field, {"every"}));
  ASSIGN_OR_RETURN(const Field* every, m.Require("every", usage));
  ASSIGN_OR_RETURN(schedule.every_seconds, DurationField(*every, kMinEverySeconds));
  return schedule;
}

Result<Retention> ParseRetention(const Field& field) {
  ASSIGN_OR_RETURN(Mapping m,
                   Mapping::Open(field, {"keepLast", "hourly", "daily", "weekly", "monthly"}));
  Retention r;
  const std::pair<const char*, uint32_t*> counts[] = {{"keepLast", &r.keep_last},
                                                      {"hourly", &r.hourly},
                                                      {"daily", &r.daily},
                                                      {"weekly", &r.weekly},
                                                      {"monthly", &r.monthly}};
  for (const auto& [name, out] : counts) {
    if (const Field* f = m.Get(name)) {
      ASSIGN_OR_RETURN(*out, Count(*f));
    }
  }
  if (r.keep_last == 0 && r.hourly == 0 && r.daily == 0 && r.weekly == 0 && r.monthly == 0) {
    return field.Error(
        "give at least one count > 0 (keepLast, hourly, daily, weekly, monthly), or leave "
        "retention out");
  }
  return r;
}

Result<MirrorPolicy> ParseDocument(const YAML::Node& root) {
  MirrorPolicy p;
  ASSIGN_OR_RETURN(Mapping doc, Mapping::Open(Field{root, "", root.Mark()},
                                              {"apiVersion", "kind", "metadata", "spec"}));

  ASSIGN_OR_RETURN(const Field* api_version, doc.Require("apiVersion", "ferry/v1"));
  ASSIGN_OR_RETURN(std::string api_text, String(*api_version));
  if (api_text != "ferry/v1") return api_version->Error("must be ferry/v1, got " + Quote(api_text));
  ASSIGN_OR_RETURN(const Field* kind, doc.Require("kind", "MirrorPolicy"));
  ASSIGN_OR_RETURN(std::string kind_text, String(*kind));
  if (kind_text != "MirrorPolicy")
    return kind->Error("must be MirrorPolicy, got " + Quote(kind_text));

  ASSIGN_OR_RETURN(const Field* metadata_field,
                   doc.Require("metadata", "{name: ..., tenant: ...}"));
  ASSIGN_OR_RETURN(Mapping metadata, Mapping::Open(*metadata_field, {"name", "tenant"}));
  ASSIGN_OR_RETURN(const Field* name, metadata.Require("name", "the policy's name"));
  ASSIGN_OR_RETURN(p.name, Name(*name));
  if (const Field* tenant = metadata.Get("tenant")) {
    ASSIGN_OR_RETURN(p.tenant, Name(*tenant));
  }

  ASSIGN_OR_RETURN(const Field* spec_field, doc.Require("spec", "the policy itself"));
  ASSIGN_OR_RETURN(Mapping spec,
                   Mapping::Open(*spec_field, {"agents", "datasets", "schedule", "timeZone",
                                               "targets", "retention", "bandwidth", "rpo"}));

  if (const Field* agents_field = spec.Get("agents")) {
    ASSIGN_OR_RETURN(Mapping agents, Mapping::Open(*agents_field, {"matchLabels"}));
    if (const Field* labels = agents.Get("matchLabels")) {
      ASSIGN_OR_RETURN(p.match_labels, Labels(*labels));
    }
  }

  ASSIGN_OR_RETURN(const Field* datasets_field,
                   spec.Require("datasets", "a list of dataset names"));
  ASSIGN_OR_RETURN(std::vector<Field> datasets, List(*datasets_field, 1, "dataset names"));
  for (const Field& item : datasets) {
    ASSIGN_OR_RETURN(std::string dataset, Name(item));
    if (std::find(p.datasets.begin(), p.datasets.end(), dataset) != p.datasets.end()) {
      return item.Error("dataset " + Quote(dataset) + " is listed twice");
    }
    p.datasets.push_back(std::move(dataset));
  }

  ASSIGN_OR_RETURN(
      const Field* schedule,
      spec.Require("schedule", "give a cron expression (\"*/15 * * * *\") or every: <duration>"));
  ASSIGN_OR_RETURN(p.schedule, ParseSchedule(*schedule));

  if (const Field* zone = spec.Get("timeZone")) {
    ASSIGN_OR_RETURN(std::string zone_name, String(*zone));
    if (Status s = ValidateTimeZone(zone_name); !s.ok()) return zone->Error(s.message());
    p.time_zone = std::move(zone_name);
  }

  ASSIGN_OR_RETURN(const Field* targets_field, spec.Require("targets", "a list of {hub: NAME}"));
  ASSIGN_OR_RETURN(std::vector<Field> targets, List(*targets_field, 1, "targets {hub: NAME}"));
  for (const Field& item : targets) {
    ASSIGN_OR_RETURN(Mapping target, Mapping::Open(item, {"hub"}));
    ASSIGN_OR_RETURN(const Field* hub_field, target.Require("hub", "the hub's name"));
    ASSIGN_OR_RETURN(std::string hub, Name(*hub_field));
    if (std::find(p.targets.begin(), p.targets.end(), hub) != p.targets.end()) {
      return hub_field->Error("hub " + Quote(hub) + " is listed twice");
    }
    p.targets.push_back(std::move(hub));
  }

  if (const Field* retention = spec.Get("retention")) {
    ASSIGN_OR_RETURN(p.retention, ParseRetention(*retention));
  }
  if (const Field* bandwidth = spec.Get("bandwidth")) {
    ASSIGN_OR_RETURN(p.bandwidth, ParseBandwidth(*bandwidth));
  }
  if (const Field* rpo = spec.Get("rpo")) {
    ASSIGN_OR_RETURN(p.rpo_seconds, DurationField(*rpo, kMinRpoSeconds));
  }
  return p;
}

// --- cron ---

struct CronFieldDef {
  const char* name;
  int min;
  int max;
  bool month_names;
  bool day_names;
};

constexpr CronFieldDef kCronFields[5] = {
    {"minute", 0, 59, false, false},       {"hour", 0, 23, false, false},
    {"day-of-month", 1, 31, false, false}, {"month", 1, 12, true, false},
    {"day-of-week", 0, 7, false, true},
};

// A number or (month / day-of-week) a three-letter name. `is_sunday_name` is
// set when the value was spelled "Sun".
std::optional<int> CronValue(std::string_view s, const CronFieldDef& def, bool* is_sunday_name) {
  *is_sunday_name = false;
  if (!s.empty() && std::all_of(s.begin(), s.end(), IsDigit)) {
    if (s.size() > 4) return std::nullopt;
    return std::stoi(std::string(s));
  }
  if (def.month_names) {
    for (size_t i = 0; i < kMonthNames.size(); ++i) {
      if (EqualsIgnoreCase(s, kMonthNames[i])) return static_cast<int>(i) + 1;
    }
  }
  if (def.day_names) {
    if (std::optional<int> d = DayIndex(s)) {
      *is_sunday_name = *d == 0;
      return d;
    }
  }
  return std::nullopt;
}

// One field into `out` (def.max + 1 flags). "" on success, else why not.
std::string ParseCronField(std::string_view text, const CronFieldDef& def, std::vector<bool>* out) {
  const std::string field = std::string(def.name) + " field " + Quote(text);
  const std::string range = std::to_string(def.min) + "-" + std::to_string(def.max) +
                            (def.month_names ? " or Jan-Dec"
                             : def.day_names ? " or Sun-Sat"
                                             : "");
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) return field + ": empty list item";
    const size_t slash = item.find('/');
    const std::string_view base = item.substr(0, slash);
    int step = 1;
    if (slash != std::string_view::npos) {
      const std::string_view step_text = item.substr(slash + 1);
      const int span = def.max - def.min + 1;
      if (step_text.empty() || step_text.size() > 4 ||
          !std::all_of(step_text.begin(), step_text.end(), IsDigit) ||
          (step = std::stoi(std::string(step_text))) < 1 || step > span) {
        return field + ": step must be a number from 1 to " + std::to_string(span);
      }
    }
    int lo = 0;
    int hi = 0;
    if (base == "*") {
      lo = def.min;
      hi = def.max;
    } else {
      const size_t dash = base.find('-');
      bool sunday_name = false;
      const std::optional<int> a = CronValue(base.substr(0, dash), def, &sunday_name);
      if (!a) return field + ": " + Quote(base.substr(0, dash)) + " is not a value (" + range + ")";
      lo = *a;
      hi = slash != std::string_view::npos ? def.max : *a;
      if (dash != std::string_view::npos) {
        const std::optional<int> b = CronValue(base.substr(dash + 1), def, &sunday_name);
        if (!b) {
          return field + ": " + Quote(base.substr(dash + 1)) + " is not a value (" + range + ")";
        }
        hi = *b;
        if (sunday_name && hi == 0 && lo > 0) hi = 7;  // "Fri-Sun"
      }
      for (int v : {lo, hi}) {
        if (v < def.min || v > def.max) {
          return field + ": " + std::to_string(v) + " is out of range " + range;
        }
      }
      if (lo > hi) {
        return field + ": range " + Sanitize(base) + " goes backwards";
      }
    }
    for (int v = lo; v <= hi; v += step) (*out)[static_cast<size_t>(v)] = true;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return "";
}

int DaysInMonth(int month) {  // February counts its leap day
  static constexpr int kDays[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return kDays[month];
}

}  // namespace

Result<CronSchedule> ParseCron(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("cron " + Quote(text) + ": " + std::string(why));
  };
  if (text.size() > kMaxCronLength) {
    return bad("longer than " + std::to_string(kMaxCronLength) + " characters");
  }
  if (!text.empty() && text.front() == '@') {
    return bad("macros such as @daily are not supported; write the five fields (\"0 0 * * *\")");
  }
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == ' ' || c == '\t') {
      ++i;
      continue;
    }
    if (!(IsAlnum(c) || c == '*' || c == '/' || c == ',' || c == '-')) {
      return bad("unexpected character " + Quote(text.substr(i, 1)));
    }
    const size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t') ++i;
    fields.push_back(text.substr(start, i - start));
  }
  if (fields.size() != 5) {
    return bad("has " + std::to_string(fields.size()) +
               " fields; give 5: minute hour day-of-month month day-of-week");
  }
  CronSchedule cron;
  std::vector<bool>* outs[5] = {&cron.minutes, &cron.hours, &cron.days, &cron.months,
                                &cron.weekdays};
  for (size_t f = 0; f < 5; ++f) {
    outs[f]->assign(static_cast<size_t>(kCronFields[f].max) + 1, false);
    if (std::string problem = ParseCronField(fields[f], kCronFields[f], outs[f]);
        !problem.empty()) {
      return bad(problem);
    }
    if (!cron.text.empty()) cron.text += ' ';
    cron.text += fields[f];
  }
  // Day-of-week 7 is Sunday.
  if (cron.weekdays[7]) cron.weekdays[0] = true;
  cron.weekdays.resize(7);
  cron.days[0] = false;    // index 0 unused
  cron.months[0] = false;  // index 0 unused
  cron.days_restricted = fields[2].front() != '*';
  cron.weekdays_restricted = fields[4].front() != '*';

  // A schedule that can never fire ("0 0 30 Feb *") is a mistake.
  if (!(cron.days_restricted && cron.weekdays_restricted)) {
    bool possible = false;
    for (int m = 1; m <= 12 && !possible; ++m) {
      if (!cron.months[static_cast<size_t>(m)]) continue;
      for (int d = 1; d <= DaysInMonth(m) && !possible; ++d) {
        possible = cron.days[static_cast<size_t>(d)];
      }
    }
    if (!possible) return bad("never fires: none of its days occur in its months");
  }
  return cron;
}

bool CronMatches(const CronSchedule& cron, int minute, int hour, int day_of_month, int month,
                 int weekday) {
  if (minute < 0 || minute > 59 || hour < 0 || hour > 23 || day_of_month < 1 || day_of_month > 31 ||
      month < 1 || month > 12 || weekday < 0 || weekday > 6) {
    return false;
  }
  if (cron.minutes.size() != 60 || cron.hours.size() != 24 || cron.days.size() != 32 ||
      cron.months.size() != 13 || cron.weekdays.size() != 7) {
    return false;
  }
  if (!cron.minutes[static_cast<size_t>(minute)] || !cron.hours[static_cast<size_t>(hour)] ||
      !cron.months[static_cast<size_t>(month)]) {
    return false;
  }
  const bool dom = cron.days[static_cast<size_t>(day_of_month)];
  const bool dow = cron.weekdays[static_cast<size_t>(weekday)];
  if (cron.days_restricted && cron.weekdays_restricted) return dom || dow;
  return dom && dow;
}

Result<int64_t> ParseDuration(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("duration " + Quote(text) + ": " + std::string(why));
  };
  static constexpr std::pair<char, int64_t> kUnits[] = {
      {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
  const std::string_view usage = "give numbers with units s, m, h, d, largest first (\"1h30m\")";
  if (text.empty()) return bad(usage);
  if (text.front() == '-') return bad("must be positive");
  size_t next_unit = 0;
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    int64_t n = 0;
    while (i < text.size() && IsDigit(text[i])) {
      if (i - start >= 9) return bad("too long (at most 366d)");
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    if (i == start) return bad(usage);
    if (i == text.size()) {
      return bad("missing unit after " + std::string(text.substr(start)) +
                 " (s, m, h or d, e.g. \"" + std::string(text.substr(start)) + "s\")");
    }
    const char unit = text[i++];
    size_t u = 0;
    while (u < std::size(kUnits) && kUnits[u].first != unit) ++u;
    if (u == std::size(kUnits))
      return bad("unknown unit " + Quote(std::string(1, unit)) + "; " + std::string(usage));
    if (u < next_unit) return bad("units must go from largest to smallest, each once (\"1h30m\")");
    next_unit = u + 1;
    total += n * kUnits[u].second;
    if (total > kMaxDurationSeconds) return bad("too long (at most 366d)");
  }
  if (total <= 0) return bad("must be positive");
  return total;
}

std::string FormatDuration(int64_t seconds) {
  if (seconds <= 0) return "0s";
  std::string out;
  static constexpr std::pair<char, int64_t> kUnits[] = {
      {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
  for (const auto& [unit, size] : kUnits) {
    if (seconds >= size) {
      out += std::to_string(seconds / size);
      out += unit;
      seconds %= size;
    }
  }
  return out;
}

Result<uint64_t> ParseRate(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("rate " + Quote(text) + ": " + std::string(why));
  };
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"B", 1},
      {"KB", 1000},
      {"kB", 1000},
      {"MB", 1000 * 1000},
      {"GB", 1000 * 1000 * 1000},
      {"KiB", uint64_t{1} << 10},
      {"MiB", uint64_t{1} << 20},
      {"GiB", uint64_t{1} << 30},
  };
  const std::string units = "B, KB, MB, GB, KiB, MiB or GiB followed by /s (bytes, not bits)";
  size_t i = 0;
  uint64_t whole = 0;
  while (i < text.size() && IsDigit(text[i])) {
    if (i >= 16) return bad("too large (at most 1PB/s)");
    whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
    ++i;
  }
  if (i == 0) return bad("give bytes per second: \"2MiB/s\", \"20MB/s\" or a plain number");
  uint64_t fraction = 0;
  uint64_t fraction_scale = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    const size_t start = i;
    while (i < text.size() && IsDigit(text[i])) {
      if (i - start >= 6) return bad("at most 6 decimals");
      fraction = fraction * 10 + static_cast<uint64_t>(text[i] - '0');
      fraction_scale *= 10;
      ++i;
    }
    if (i == start) return bad("a decimal point needs digits after it");
  }
  while (i < text.size() && text[i] == ' ') ++i;
  const std::string_view unit = text.substr(i);
  uint64_t value = 0;
  if (unit.empty()) {
    if (fraction_scale != 1) {
      return bad(
          "a plain number is whole bytes per second; use a unit for a decimal (\"1.5MB/s\")");
    }
    value = whole;
  } else {
    const bool per_second = unit.size() > 2 && unit.substr(unit.size() - 2) == "/s";
    const std::string_view name = per_second ? unit.substr(0, unit.size() - 2) : unit;
    uint64_t multiplier = 0;
    for (const auto& [n, m] : kUnits) {
      if (n == name) multiplier = m;
    }
    if (multiplier == 0) return bad("unknown unit " + Quote(unit) + "; use " + units);
    if (!per_second) {
      return bad("add \"/s\": a rate is bytes per second (\"" + std::to_string(whole) +
                 std::string(name) + "/s\")");
    }
    if (whole > kMaxBytesPerSecond / multiplier) return bad("too large (at most 1PB/s)");
    value = whole * multiplier + fraction * multiplier / fraction_scale;
  }
  if (value == 0) {
    return bad("must be at least 1 byte per second (leave the limit out for no limit)");
  }
  if (value > kMaxBytesPerSecond) return bad("too large (at most 1PB/s)");
  return value;
}

Status ValidateTimeZone(std::string_view zone) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("time zone " + Quote(zone) + ": " + std::string(why));
  };
  if (zone == "UTC") return OkStatus();
  const bool chars_ok = std::all_of(zone.begin(), zone.end(), [](char c) {
    return IsAlnum(c) || c == '_' || c == '+' || c == '-' || c == '/';
  });
  // No '.' at all: "." and ".." components cannot occur; no leading '/', no
  // empty component.
  if (zone.empty() || zone.size() > kMaxZoneLength || !chars_ok || zone.front() == '/' ||
      zone.back() == '/' || zone.find("//") != std::string_view::npos) {
    return bad(
        "not a zone name; give an IANA name such as \"Europe/Paris\" (or leave it out for UTC)");
  }
  if (zone == "localtime") return bad("names this host's own zone; give the zone itself");
  char base[PATH_MAX];
  if (realpath(kZoneInfoDir, base) == nullptr) {
    return bad(std::string("unknown: this system has no time zone data (") + kZoneInfoDir +
               "; install tzdata)");
  }
  const std::string path = std::string(kZoneInfoDir) + "/" + std::string(zone);
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    return bad(std::string("unknown zone (not in ") + kZoneInfoDir + ")");
  }
  const std::string prefix = std::string(base) + "/";
  if (std::strncmp(resolved, prefix.c_str(), prefix.size()) != 0) {
    return bad(std::string("resolves outside ") + kZoneInfoDir);
  }
  struct stat st;
  if (stat(resolved, &st) != 0 || !S_ISREG(st.st_mode)) {
    return bad(std::string("unknown zone (not a zone file in ") + kZoneInfoDir + ")");
  }
  const int fd = open(resolved, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return bad("cannot read its zone file");
  char magic[4] = {};
  const ssize_t n = read(fd, magic, sizeof magic);
  close(fd);
  if (n != 4 || std::memcmp(magic, "TZif", 4) != 0) {
    return bad(std::string("unknown zone (not a zone file in ") + kZoneInfoDir + ")");
  }
  return OkStatus();
}

uint64_t BandwidthLimitAt(const Bandwidth& bandwidth, int weekday, int minute_of_day) {
  if (weekday < 0 || weekday > 6 || minute_of_day < 0 || minute_of_day >= kMinutesPerDay) {
    return bandwidth.bytes_per_second;
  }
  const size_t today = static_cast<size_t>(weekday);
  const size_t yesterday = static_cast<size_t>((weekday + 6) % 7);
  for (const BandwidthWindow& w : bandwidth.windows) {
    if (w.days.size() != 7) continue;
    bool covered = false;
    if (w.from_minute < w.to_minute) {
      covered = w.days[today] && minute_of_day >= w.from_minute && minute_of_day < w.to_minute;
    } else {  // wraps past midnight: the evening of its day, the morning after
      covered = (w.days[today] && minute_of_day >= w.from_minute) ||
                (w.days[yesterday] && minute_of_day < w.to_minute);
    }
    if (covered) return w.bytes_per_second;
  }
  return bandwidth.bytes_per_second;
}

Result<MirrorPolicy> ParseMirrorPolicy(std::string_view text) {
  if (text.size() > kMaxPolicyBytes) {
    return InvalidArgumentError("document: " + std::to_string(text.size()) +
                                " bytes; a policy is at most " + std::to_string(kMaxPolicyBytes) +
                                " bytes (1 MiB)");
  }
  Result<yaml_fields::LoadedDocument> loaded = yaml_fields::LoadDocument(text);
  if (!loaded.ok()) {
    std::string message = loaded.status().message();
    if (message.find("anchor") != std::string::npos) {
      message += " (a cron expression that starts with * must be quoted: \"*/15 * * * *\")";
    }
    return InvalidArgumentError(message);
  }
  const int documents = loaded->documents;
  const YAML::Node& root = loaded->root;
  if (documents > 1) {
    return FieldError("document", loaded->second_start,
                      "more than one YAML document (a \"---\" separator, or stray text around "
                      "the policy); give one policy at a time");
  }
  if (documents == 0 || root.IsNull()) {
    return InvalidArgumentError(
        "document: empty; expected a MirrorPolicy (apiVersion: ferry/v1, kind: MirrorPolicy)");
  }
  try {
    return ParseDocument(root);
  } catch (const YAML::Exception& e) {
    // Not expected: every node is type-checked before it is read.
    return InvalidArgumentError("document: " + e.msg + Where(e.mark));
  }
}

std::string MirrorPolicyToJson(const MirrorPolicy& policy) {
  namespace json = boost::json;
  json::object metadata;
  metadata.emplace("name", policy.name);
  if (!policy.tenant.empty()) metadata.emplace("tenant", policy.tenant);

  json::object spec;
  if (!policy.match_labels.empty()) {
    json::object labels;
    for (const auto& [k, v] : policy.match_labels) labels.emplace(k, v);
    json::object agents;
    agents.emplace("matchLabels", std::move(labels));
    spec.emplace("agents", std::move(agents));
  }
  json::array datasets;
  for (const std::string& d : policy.datasets) datasets.emplace_back(d);
  spec.emplace("datasets", std::move(datasets));
  if (policy.schedule.cron) {
    spec.emplace("schedule", policy.schedule.cron->text);
  } else {
    json::object every;
    every.emplace("every", FormatDuration(policy.schedule.every_seconds.value_or(0)));
    spec.emplace("schedule", std::move(every));
  }
  spec.emplace("timeZone", policy.time_zone);
  json::array targets;
  for (const std::string& hub : policy.targets) {
    json::object target;
    target.emplace("hub", hub);
    targets.emplace_back(std::move(target));
  }
  spec.emplace("targets", std::move(targets));
  const Retention& r = policy.retention;
  if (r.keep_last != 0 || r.hourly != 0 || r.daily != 0 || r.weekly != 0 || r.monthly != 0) {
    json::object retention;
    retention.emplace("keepLast", r.keep_last);
    retention.emplace("hourly", r.hourly);
    retention.emplace("daily", r.daily);
    retention.emplace("weekly", r.weekly);
    retention.emplace("monthly", r.monthly);
    spec.emplace("retention", std::move(retention));
  }
  const Bandwidth& b = policy.bandwidth;
  if (b.bytes_per_second != 0 || !b.windows.empty()) {
    json::object bandwidth;
    if (b.bytes_per_second != 0) bandwidth.emplace("limit", b.bytes_per_second);
    if (!b.windows.empty()) {
      json::array windows;
      for (const BandwidthWindow& w : b.windows) {
        json::object window;
        window.emplace("days", FormatDays(w.days));
        window.emplace("from", FormatClock(w.from_minute));
        window.emplace("to", FormatClock(w.to_minute));
        window.emplace("limit", w.bytes_per_second);
        windows.emplace_back(std::move(window));
      }
      bandwidth.emplace("windows", std::move(windows));
    }
    spec.emplace("bandwidth", std::move(bandwidth));
  }
  if (policy.rpo_seconds) spec.emplace("rpo", FormatDuration(*policy.rpo_seconds));

  json::object root;
  root.emplace("apiVersion", "ferry/v1");
  root.emplace("kind", "MirrorPolicy");
  root.emplace("metadata", std::move(metadata));
  root.emplace("spec", std::move(spec));
  return json::serialize(root);
}

}  // namespace ferry::mirror
