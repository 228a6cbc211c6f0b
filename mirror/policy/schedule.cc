#include "mirror/policy/schedule.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

namespace ferry::mirror {
namespace {

constexpr const char* kZoneInfoDir = "/usr/share/zoneinfo";
constexpr int64_t kSecondsPerDay = 86400;
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
// RFC 8536 section 3.2: UT offsets SHOULD be within these bounds. Bounding
// them also bounds how far back a repeated wall-clock time can reach (see
// NextCronRun).
constexpr int32_t kMinUtcOffset = -89999;
constexpr int32_t kMaxUtcOffset = 93599;
// Rule times in a TZ string: -167 to 167 hours (RFC 8536 section 3.3.1).
constexpr int kMaxRuleHours = 167;

int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

bool IsLeapYear(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

int DaysInMonth(int64_t year, int month) {
  static constexpr std::array<int, 13> kDays = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kDays[static_cast<size_t>(month)];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = FloorDiv(y, 400);
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

struct CivilDate {
  int64_t year;
  int month;
  int day;
};

CivilDate CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = FloorDiv(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  return {yoe + era * 400 + (m <= 2 ? 1 : 0), static_cast<int>(m), static_cast<int>(d)};
}

// 0 = Sunday; 1970-01-01 was a Thursday.
int WeekdayOfDays(int64_t days) {
  const int64_t r = (days + 4) % 7;
  return static_cast<int>(r < 0 ? r + 7 : r);
}

int64_t ClampInstant(int64_t t) { return std::clamp(t, -kMaxZoneSeconds, kMaxZoneSeconds); }

// --- POSIX TZ strings ---

class TzStringParser {
 public:
  explicit TzStringParser(std::string_view text) : s_(text) {}

  bool AtEnd() const { return i_ == s_.size(); }
  bool Peek(char c) const { return i_ < s_.size() && s_[i_] == c; }
  bool Consume(char c) {
    if (!Peek(c)) return false;
    ++i_;
    return true;
  }
  bool PeekOffsetStart() const {
    return i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-' || IsDigit(s_[i_]));
  }

  // "CET" (three or more letters) or "<+0330>" (three or more of letters,
  // digits, '+' and '-').
  Status Name(std::string_view what) {
    size_t n = 0;
    if (Consume('<')) {
      while (i_ < s_.size() &&
             (IsAlpha(s_[i_]) || IsDigit(s_[i_]) || s_[i_] == '+' || s_[i_] == '-')) {
        ++i_;
        ++n;
      }
      if (!Consume('>')) return Error(std::string(what) + " name: missing '>'");
    } else {
      while (i_ < s_.size() && IsAlpha(s_[i_])) {
        ++i_;
        ++n;
      }
    }
    if (n < 3) return Error(std::string(what) + " name: at least three characters");
    return OkStatus();
  }

  // [+-]hh[:mm[:ss]] as seconds, hh at most max_hours.
  Result<int32_t> Time(int max_hours, std::string_view what) {
    const bool negative = Consume('-');
    if (!negative) Consume('+');
    ASSIGN_OR_RETURN(int hours, Number(0, max_hours, what));
    int minutes = 0;
    int seconds = 0;
    if (Consume(':')) {
      ASSIGN_OR_RETURN(minutes, Number(0, 59, what));
      if (Consume(':')) {
        ASSIGN_OR_RETURN(seconds, Number(0, 59, what));
      }
    }
    const int32_t total = hours * 3600 + minutes * 60 + seconds;
    return negative ? -total : total;
  }

  Result<TimeZone::Rule> Rule() {
    TimeZone::Rule rule;
    if (Consume('J')) {
      rule.kind = TimeZone::Rule::Kind::kJulianNoLeap;
      ASSIGN_OR_RETURN(rule.day, Number(1, 365, "Julian day"));
    } else if (Consume('M')) {
      rule.kind = TimeZone::Rule::Kind::kMonthWeekDay;
      ASSIGN_OR_RETURN(rule.month, Number(1, 12, "rule month"));
      if (!Consume('.')) return Error("rule: expected '.' after the month");
      ASSIGN_OR_RETURN(rule.week, Number(1, 5, "rule week"));
      if (!Consume('.')) return Error("rule: expected '.' after the week");
      ASSIGN_OR_RETURN(rule.day, Number(0, 6, "rule day of the week"));
    } else {
      rule.kind = TimeZone::Rule::Kind::kZeroBasedDay;
      ASSIGN_OR_RETURN(rule.day, Number(0, 365, "rule day"));
    }
    if (Consume('/')) {
      ASSIGN_OR_RETURN(rule.time, Time(kMaxRuleHours, "rule time"));
    }
    return rule;
  }

  Status Error(std::string_view why) const {
    return InvalidArgumentError("TZ string " + QuoteForMessage(s_) + ": " + std::string(why) +
                                " (at offset " + std::to_string(i_) + ")");
  }

 private:
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }
  static bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

  Result<int> Number(int min, int max, std::string_view what) {
    int value = 0;
    size_t digits = 0;
    while (i_ < s_.size() && IsDigit(s_[i_])) {
      if (++digits > 3) return Error(std::string(what) + ": too many digits");
      value = value * 10 + (s_[i_] - '0');
      ++i_;
    }
    if (digits == 0) return Error(std::string(what) + ": expected a number");
    if (value < min || value > max) {
      return Error(std::string(what) + ": " + std::to_string(value) + " is not in " +
                   std::to_string(min) + "-" + std::to_string(max));
    }
    return value;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// Local midnight of a rule's day in `year`, plus its time: seconds since the
// epoch of the local wall clock (as if it were UTC).
int64_t RuleLocalSeconds(const TimeZone::Rule& rule, int64_t year) {
  const int64_t jan1 = DaysFromCivil(year, 1, 1);
  int64_t day = jan1;
  switch (rule.kind) {
    case TimeZone::Rule::Kind::kJulianNoLeap:  // 29 February is never counted
      day = jan1 + rule.day - 1 + (IsLeapYear(year) && rule.day >= 60 ? 1 : 0);
      break;
    case TimeZone::Rule::Kind::kZeroBasedDay:
      day = jan1 + rule.day;
      break;
    case TimeZone::Rule::Kind::kMonthWeekDay: {
      const int64_t first = DaysFromCivil(year, rule.month, 1);
      int mday = 1 + (rule.day - WeekdayOfDays(first) + 7) % 7 + (rule.week - 1) * 7;
      while (mday > DaysInMonth(year, rule.month)) mday -= 7;  // week 5 = the last
      day = first + mday - 1;
      break;
    }
  }
  return day * kSecondsPerDay + rule.time;
}

// --- TZif (RFC 8536) ---

constexpr size_t kTzifHeaderBytes = 44;

struct TzifHeader {
  uint8_t version = 0;  // 0, '2', '3', '4', ...
  uint32_t isutcnt = 0;
  uint32_t isstdcnt = 0;
  uint32_t leapcnt = 0;
  uint32_t timecnt = 0;
  uint32_t typecnt = 0;
  uint32_t charcnt = 0;

  // Bytes of the data block that follows the header.
  uint64_t DataBytes(uint64_t time_size) const {
    return uint64_t{timecnt} * (time_size + 1) + uint64_t{typecnt} * 6 + charcnt +
           uint64_t{leapcnt} * (time_size + 4) + isstdcnt + isutcnt;
  }
};

uint32_t LoadBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint64_t LoadBe64(const uint8_t* p) { return (uint64_t{LoadBe32(p)} << 32) | LoadBe32(p + 4); }

// Everything that decodes the bytes of one file, with its name for errors.
class TzifDecoder {
 public:
  TzifDecoder(ByteView data, std::string_view source) : reader_(data), source_(source) {}

  Status Damaged(std::string_view why) const {
    return DataLossError("time zone file " + QuoteForMessage(source_, 200) + ": " +
                         std::string(why) + " (at byte " + std::to_string(reader_.position()) +
                         ")");
  }

  Result<TzifHeader> Header() {
    ByteView h;
    if (!reader_.ReadView(kTzifHeaderBytes, h)) return Damaged("truncated header");
    if (std::memcmp(h.data(), "TZif", 4) != 0) return Damaged("not a TZif file (bad magic)");
    TzifHeader header;
    header.version = h[4];
    if (header.version != 0 && (header.version < '2' || header.version > '9')) {
      return Damaged("unknown version byte " + std::to_string(header.version));
    }
    const uint8_t* p = h.data() + 20;
    header.isutcnt = LoadBe32(p);
    header.isstdcnt = LoadBe32(p + 4);
    header.leapcnt = LoadBe32(p + 8);
    header.timecnt = LoadBe32(p + 12);
    header.typecnt = LoadBe32(p + 16);
    header.charcnt = LoadBe32(p + 20);
    if (header.typecnt == 0 || header.typecnt > 256) {
      return Damaged("typecnt " + std::to_string(header.typecnt) + " is not in 1-256");
    }
    if (header.charcnt == 0) return Damaged("charcnt is 0");
    if (header.isutcnt != 0 && header.isutcnt != header.typecnt) {
      return Damaged("isutcnt is neither 0 nor typecnt");
    }
    if (header.isstdcnt != 0 && header.isstdcnt != header.typecnt) {
      return Damaged("isstdcnt is neither 0 nor typecnt");
    }
    return header;
  }

  Status SkipData(const TzifHeader& header, uint64_t time_size) {
    ByteView skipped;
    const uint64_t n = header.DataBytes(time_size);
    if (n > reader_.remaining() || !reader_.ReadView(static_cast<size_t>(n), skipped)) {
      return Damaged("truncated version 1 data");
    }
    return OkStatus();
  }

  struct Data {
    std::vector<int64_t> transitions;
    std::vector<uint8_t> type_index;
    std::vector<std::pair<int32_t, bool>> types;  // offset, dst
  };

  Result<Data> ReadData(const TzifHeader& header, size_t time_size) {
    const uint64_t n = header.DataBytes(time_size);
    ByteView block;
    if (n > reader_.remaining() || !reader_.ReadView(static_cast<size_t>(n), block)) {
      return Damaged("truncated data block");
    }
    const uint8_t* p = block.data();
    Data data;
    data.transitions.reserve(header.timecnt);
    for (uint32_t i = 0; i < header.timecnt; ++i, p += time_size) {
      const int64_t t = time_size == 8 ? static_cast<int64_t>(LoadBe64(p))
                                       : static_cast<int64_t>(static_cast<int32_t>(LoadBe32(p)));
      if (!data.transitions.empty() && t <= data.transitions.back()) {
        return Damaged("transition times are not strictly increasing (transition " +
                       std::to_string(i) + ")");
      }
      data.transitions.push_back(t);
    }
    data.type_index.assign(p, p + header.timecnt);
    p += header.timecnt;
    for (uint8_t index : data.type_index) {
      if (index >= header.typecnt) return Damaged("a transition's type index is out of range");
    }
    const uint8_t* const designations = p + size_t{header.typecnt} * 6;
    for (uint32_t i = 0; i < header.typecnt; ++i, p += 6) {
      const auto offset = static_cast<int32_t>(LoadBe32(p));
      if (offset < kMinUtcOffset || offset > kMaxUtcOffset) {
        return Damaged("UT offset " + std::to_string(offset) + " of type " + std::to_string(i) +
                       " is out of range");
      }
      if (p[4] > 1) return Damaged("isdst of type " + std::to_string(i) + " is not 0 or 1");
      if (p[5] >= header.charcnt) {
        return Damaged("abbreviation index of type " + std::to_string(i) + " is out of range");
      }
      data.types.emplace_back(offset, p[4] == 1);
    }
    if (designations[header.charcnt - 1] != 0) {
      return Damaged("time zone abbreviations do not end with NUL");
    }
    p = designations + header.charcnt + uint64_t{header.leapcnt} * (time_size + 4);
    for (uint32_t i = 0; i < header.isstdcnt + header.isutcnt; ++i, ++p) {
      if (*p > 1) return Damaged("a standard/wall or UT/local indicator is not 0 or 1");
    }
    return data;
  }

  // The footer of version 2+ files: "\n<TZ string>\n", ending the file.
  Result<std::string_view> Footer() {
    const ByteView rest = reader_.Rest();
    if (rest.size() < 2 || rest[0] != '\n') return Damaged("missing footer");
    const std::string_view text = AsStringView(rest.subspan(1));
    const size_t newline = text.find('\n');
    if (newline == std::string_view::npos) return Damaged("footer does not end with a newline");
    if (newline + 1 != text.size()) return Damaged("bytes after the footer");
    return text.substr(0, newline);
  }

 private:
  ByteReader reader_;
  std::string_view source_;
};

}  // namespace

TimeZone TimeZone::Utc() {
  TimeZone zone;
  zone.name_ = "UTC";
  zone.types_.push_back(Type{0, false});
  return zone;
}

Result<TimeZone> TimeZone::Load(std::string_view name) {
  if (name == "UTC") return Utc();
  RETURN_IF_ERROR(ValidateTimeZone(name));
  return LoadFile(name, std::string(kZoneInfoDir) + "/" + std::string(name), *Env::Default());
}

Result<TimeZone> TimeZone::LoadFile(std::string_view name, const std::string& path, Env& env) {
  Result<Bytes> data = env.ReadFile(path, kMaxTimeZoneFileBytes);
  if (!data.ok()) {
    return data.status().WithContext("time zone " + QuoteForMessage(name));
  }
  return Parse(name, *data, path);
}

Result<TimeZone> TimeZone::Parse(std::string_view name, ByteView tzif, std::string_view source) {
  TzifDecoder decoder(tzif, source);
  ASSIGN_OR_RETURN(TzifHeader header, decoder.Header());
  size_t time_size = 4;
  if (header.version != 0) {  // skip the 32-bit data: the 64-bit data follows
    RETURN_IF_ERROR(decoder.SkipData(header, 4));
    ASSIGN_OR_RETURN(header, decoder.Header());
    if (header.version == 0) return decoder.Damaged("second header has version 1");
    time_size = 8;
  }
  if (header.leapcnt != 0) {
    // Transition times of such files count leap seconds; Ferry's instants
    // (POSIX time) do not.
    return InvalidArgumentError("time zone " + QuoteForMessage(name) +
                                ": counts leap seconds (a \"right/\" zone); use the zone without "
                                "\"right/\"");
  }
  ASSIGN_OR_RETURN(TzifDecoder::Data data, decoder.ReadData(header, time_size));
  TimeZone zone;
  zone.name_ = std::string(name);
  zone.transitions_ = std::move(data.transitions);
  zone.type_index_ = std::move(data.type_index);
  for (const auto& [offset, dst] : data.types) zone.types_.push_back(Type{offset, dst});
  if (header.version != 0) {
    ASSIGN_OR_RETURN(std::string_view footer, decoder.Footer());
    if (!footer.empty()) {
      Result<PosixTz> tz = ParsePosixTz(footer);
      if (!tz.ok()) return decoder.Damaged("footer: " + tz.status().message());
      zone.has_footer_ = true;
      zone.footer_ = *tz;
    }
  }
  return zone;
}

Result<TimeZone::PosixTz> TimeZone::ParsePosixTz(std::string_view text) {
  TzStringParser p(text);
  PosixTz tz;
  RETURN_IF_ERROR(p.Name("standard time"));
  if (!p.PeekOffsetStart()) return p.Error("expected the standard time's offset");
  ASSIGN_OR_RETURN(int32_t std_west, p.Time(24, "offset"));
  tz.std_offset = -std_west;  // POSIX counts hours west of Greenwich
  if (p.AtEnd()) return tz;
  RETURN_IF_ERROR(p.Name("daylight saving time"));
  tz.has_dst = true;
  tz.dst_offset = tz.std_offset + 3600;
  if (p.PeekOffsetStart()) {
    ASSIGN_OR_RETURN(int32_t dst_west, p.Time(24, "offset"));
    tz.dst_offset = -dst_west;
  }
  // POSIX leaves the rules of a TZ string without them to the
  // implementation; tzdata always writes them, so their absence is an error
  // rather than a guess.
  if (!p.Consume(',')) return p.Error("daylight saving time without rules");
  ASSIGN_OR_RETURN(tz.start, p.Rule());
  if (!p.Consume(',')) return p.Error("expected ',' and the rule for the end of DST");
  ASSIGN_OR_RETURN(tz.end, p.Rule());
  if (!p.AtEnd()) return p.Error("unexpected characters");
  return tz;
}

TimeZone::Period TimeZone::FooterPeriodAt(int64_t t) const {
  const int64_t floor = transitions_.empty() ? kMin : transitions_.back();
  if (!footer_.has_dst) return Period{floor, kMax, footer_.std_offset, false};
  // A year's two changes lie within about nine days of that year (rule times
  // reach 167 hours, offsets 26 hours), so the years around t's UTC year
  // hold the change before t and the one after it.
  struct Change {
    int64_t at;
    bool dst;  // the state it starts
  };
  std::array<Change, 10> changes{};
  const int64_t year = CivilFromDays(FloorDiv(t, kSecondsPerDay)).year;
  size_t n = 0;
  for (int64_t y = year - 2; y <= year + 2; ++y) {
    changes[n++] = Change{RuleLocalSeconds(footer_.start, y) - footer_.std_offset, true};
    changes[n++] = Change{RuleLocalSeconds(footer_.end, y) - footer_.dst_offset, false};
  }
  // At equal instants the end sorts first, so that DST starting at the very
  // instant it ends ("J1/0,J365/25") means DST all year (RFC 8536 3.3.1).
  std::sort(changes.begin(), changes.end(), [](const Change& a, const Change& b) {
    return a.at != b.at ? a.at < b.at : (!a.dst && b.dst);
  });
  size_t last = 0;  // the last change at or before t; changes[0] is before t
  while (last + 1 < changes.size() && changes[last + 1].at <= t) ++last;
  const bool dst = changes[last].dst;
  Period period{std::max(changes[last].at, floor), kMax,
                dst ? footer_.dst_offset : footer_.std_offset, dst};
  if (last + 1 < changes.size()) period.end = changes[last + 1].at;
  return period;
}

TimeZone::Period TimeZone::PeriodAt(int64_t unix_seconds) const {
  // Beyond ±kMaxZoneSeconds, the offset in force there continues forever.
  const int64_t t = ClampInstant(unix_seconds);
  Period period;
  if (transitions_.empty() || t >= transitions_.back()) {
    if (has_footer_) {
      period = FooterPeriodAt(t);
    } else {
      const Type& type = transitions_.empty() ? types_[0] : types_[type_index_.back()];
      period = Period{transitions_.empty() ? kMin : transitions_.back(), kMax, type.utc_offset,
                      type.dst};
    }
  } else if (t < transitions_.front()) {
    // RFC 8536: before the first transition, time type 0.
    period = Period{kMin, transitions_.front(), types_[0].utc_offset, types_[0].dst};
  } else {
    const auto it = std::upper_bound(transitions_.begin(), transitions_.end(), t);
    const auto i = static_cast<size_t>(it - transitions_.begin()) - 1;
    const Type& type = types_[type_index_[i]];
    period = Period{transitions_[i], transitions_[i + 1], type.utc_offset, type.dst};
  }
  if (period.end > kMaxZoneSeconds) period.end = kMax;
  if (period.start <= -kMaxZoneSeconds) period.start = kMin;
  return period;
}

LocalTime TimeZone::ToLocal(int64_t unix_seconds) const {
  const int64_t t = ClampInstant(unix_seconds);
  const Period period = PeriodAt(t);
  const int64_t local = t + period.utc_offset_seconds;
  const int64_t days = FloorDiv(local, kSecondsPerDay);
  const auto second_of_day = static_cast<int>(local - days * kSecondsPerDay);
  const CivilDate date = CivilFromDays(days);
  LocalTime out;
  out.year = static_cast<int>(date.year);
  out.month = date.month;
  out.day = date.day;
  out.hour = second_of_day / 3600;
  out.minute = second_of_day / 60 % 60;
  out.second = second_of_day % 60;
  out.weekday = WeekdayOfDays(days);
  out.utc_offset_seconds = period.utc_offset_seconds;
  out.dst = period.dst;
  return out;
}

namespace {

bool CronShapeOk(const CronSchedule& cron) {
  return cron.minutes.size() == 60 && cron.hours.size() == 24 && cron.days.size() == 32 &&
         cron.months.size() == 13 && cron.weekdays.size() == 7;
}

bool AnySet(const std::vector<bool>& v, size_t from) {
  return std::find(v.begin() + static_cast<std::ptrdiff_t>(from), v.end(), true) != v.end();
}

// The first local minute at or after `from` (local seconds, a multiple of 60)
// whose fields match, within kMaxScheduleSearchDays.
Result<int64_t> NextMatchingLocalMinute(const CronSchedule& cron, int64_t from) {
  if (!AnySet(cron.minutes, 0) || !AnySet(cron.hours, 0) || !AnySet(cron.months, 1) ||
      !AnySet(cron.days, 1) || !AnySet(cron.weekdays, 0)) {
    return NotFoundError("cron schedule \"" + cron.text + "\" never fires");
  }
  const int64_t first_day = FloorDiv(from, kSecondsPerDay);
  int minute_of_day = static_cast<int>((from - first_day * kSecondsPerDay) / 60);
  int64_t day = first_day;
  while (day <= first_day + kMaxScheduleSearchDays) {
    const CivilDate date = CivilFromDays(day);
    if (!cron.months[static_cast<size_t>(date.month)]) {  // skip to the next month
      day += DaysInMonth(date.year, date.month) - date.day + 1;
      minute_of_day = 0;
      continue;
    }
    const int weekday = WeekdayOfDays(day);
    const bool dom = cron.days[static_cast<size_t>(date.day)];
    const bool dow = cron.weekdays[static_cast<size_t>(weekday)];
    const bool day_ok = cron.days_restricted && cron.weekdays_restricted ? dom || dow : dom && dow;
    if (day_ok) {
      for (int hour = minute_of_day / 60; hour < 24; ++hour) {
        if (!cron.hours[static_cast<size_t>(hour)]) continue;
        const int first_minute = hour == minute_of_day / 60 ? minute_of_day % 60 : 0;
        for (int minute = first_minute; minute < 60; ++minute) {
          if (cron.minutes[static_cast<size_t>(minute)]) {
            return day * kSecondsPerDay + hour * 3600 + minute * 60;
          }
        }
      }
    }
    ++day;
    minute_of_day = 0;
  }
  return NotFoundError("cron schedule \"" + cron.text + "\" does not fire within " +
                       std::to_string(kMaxScheduleSearchDays) + " days");
}

// A local minute X fires at the first instant at which the wall clock reads X
// or later. That one definition gives both DST rules: a skipped X fires when
// the clock jumps past it (the end of the gap), a repeated X at its first
// occurrence (the clock has already passed it when it comes again). It is
// non-decreasing in X, so the next run after `after` is the run of the
// smallest matching X above the highest wall-clock reading up to `after`.
Result<int64_t> NextCronRun(const CronSchedule& cron, const TimeZone& zone, int64_t after) {
  TimeZone::Period period = zone.PeriodAt(after);
  int64_t highest = after + period.utc_offset_seconds;
  // Just before a fall-back change the clock read more than it does now.
  // Offsets stay within 26 hours, so changes older than 4 days cannot matter.
  const int64_t horizon = after - 4 * kSecondsPerDay;
  while (period.start != kMin && period.start > horizon) {
    const TimeZone::Period before = zone.PeriodAt(period.start - 1);
    highest = std::max(highest, period.start - 1 + before.utc_offset_seconds);
    period = before;
  }
  ASSIGN_OR_RETURN(int64_t local, NextMatchingLocalMinute(cron, FloorDiv(highest, 60) * 60 + 60));
  int64_t t = after + 1;
  period = zone.PeriodAt(t);
  while (true) {
    if (t + period.utc_offset_seconds >= local) return t;  // the clock jumped past it
    const int64_t at = local - period.utc_offset_seconds;
    if (at < period.end) return at;
    t = period.end;
    period = zone.PeriodAt(t);
  }
}

}  // namespace

Result<int64_t> NextRun(const Schedule& schedule, const TimeZone& zone, int64_t after_unix) {
  if (after_unix < -kMaxZoneSeconds || after_unix > kMaxZoneSeconds) {
    return OutOfRangeError("schedule: instant " + std::to_string(after_unix) + " is out of range");
  }
  if (schedule.cron.has_value() == schedule.every_seconds.has_value()) {
    return InvalidArgumentError("schedule: exactly one of cron and every must be set");
  }
  if (schedule.every_seconds) {
    const int64_t every = *schedule.every_seconds;
    if (every <= 0) {
      return InvalidArgumentError("schedule: every must be positive, got " + std::to_string(every));
    }
    return (FloorDiv(after_unix, every) + 1) * every;
  }
  if (!CronShapeOk(*schedule.cron)) {
    return InvalidArgumentError("schedule: malformed cron schedule \"" + schedule.cron->text +
                                "\"");
  }
  return NextCronRun(*schedule.cron, zone, after_unix);
}

uint64_t BandwidthLimitNow(const MirrorPolicy& policy, const TimeZone& zone, int64_t unix_seconds) {
  const LocalTime local = zone.ToLocal(unix_seconds);
  return BandwidthLimitAt(policy.bandwidth, local.weekday, local.hour * 60 + local.minute);
}

Result<std::shared_ptr<const TimeZone>> LoadTimeZoneCached(std::string_view name) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const TimeZone>, std::less<>>
      cache;  // GUARDED_BY(mu)
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(name); it != cache.end()) return it->second;
  }
  // Loaded outside the lock: a file read must not hold up other zones.
  ASSIGN_OR_RETURN(TimeZone zone, TimeZone::Load(name));
  auto loaded = std::make_shared<const TimeZone>(std::move(zone));
  std::lock_guard<std::mutex> lock(mu);
  return cache.emplace(std::string(name), std::move(loaded)).first->second;  // first one wins
}

}  // namespace ferry::mirror
