// Tests of mirror/policy/schedule.cc: the TZif reader (checked against
// glibc's localtime_r), NextRun with its DST rules, and BandwidthLimitNow.
#include "mirror/policy/schedule.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/env.h"
#include "tests/testing/test_util.h"

namespace ferry::mirror {

// For readable failures (gtest finds it by argument-dependent lookup).
void PrintTo(const LocalTime& l, std::ostream* os) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d wd=%d off=%d dst=%d", l.year,
                l.month, l.day, l.hour, l.minute, l.second, l.weekday, l.utc_offset_seconds,
                l.dst ? 1 : 0);
  *os << buf;
}

namespace {

constexpr const char* kZoneInfo = "/usr/share/zoneinfo/";
constexpr int64_t k2100 = 4102444800;  // 2100-01-01T00:00:00Z

bool HaveZone(const std::string& zone) {
  struct stat st;
  return stat((kZoneInfo + zone).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Seconds since the epoch of a UTC date and time.
int64_t Utc(int year, int month, int day, int hour = 0, int minute = 0, int second = 0) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<int64_t>(timegm(&tm));
}

std::string FormatUtc(int64_t t) {
  const auto tt = static_cast<time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Sets TZ for glibc while alive (single-threaded tests only: setenv is not
// thread-safe), restoring the previous value after.
class ScopedTz {
 public:
  explicit ScopedTz(const std::string& tz) {
    if (const char* old = std::getenv("TZ")) old_ = old;
    setenv("TZ", tz.c_str(), 1);
    tzset();
  }
  ~ScopedTz() {
    if (old_) {
      setenv("TZ", old_->c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }
  ScopedTz(const ScopedTz&) = delete;
  ScopedTz& operator=(const ScopedTz&) = delete;

 private:
  std::optional<std::string> old_;
};

// glibc's view of an instant, in the TZ set by ScopedTz.
LocalTime GlibcLocal(int64_t t) {
  const auto tt = static_cast<time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  LocalTime out;
  out.year = tm.tm_year + 1900;
  out.month = tm.tm_mon + 1;
  out.day = tm.tm_mday;
  out.hour = tm.tm_hour;
  out.minute = tm.tm_min;
  out.second = tm.tm_sec;
  out.weekday = tm.tm_wday;
  out.utc_offset_seconds = static_cast<int32_t>(tm.tm_gmtoff);
  out.dst = tm.tm_isdst > 0;
  return out;
}

std::string Describe(const LocalTime& l) { return ::testing::PrintToString(l); }

// Compares ToLocal with glibc over pseudo-random instants from 1970 to 2100
// and on both sides of every change of offset in that range; returns the
// number of mismatches (reporting the first few).
int CompareWithGlibc(const TimeZone& zone, uint64_t seed, int samples) {
  std::vector<int64_t> instants;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, k2100);
  for (int i = 0; i < samples; ++i) instants.push_back(dist(rng));
  for (int64_t t = 0; t < k2100;) {
    const TimeZone::Period p = zone.PeriodAt(t);
    EXPECT_LE(p.start, t);
    EXPECT_GT(p.end, t);
    if (p.end >= k2100) break;
    instants.insert(instants.end(), {p.end - 1, p.end, p.end + 1});
    t = p.end;
  }
  int mismatches = 0;
  for (int64_t t : instants) {
    const LocalTime ours = zone.ToLocal(t);
    const LocalTime glibc = GlibcLocal(t);
    if (ours != glibc && ++mismatches <= 5) {
      ADD_FAILURE() << zone.name() << " at " << t << " (" << FormatUtc(t) << "): ours "
                    << Describe(ours) << ", glibc " << Describe(glibc);
    }
  }
  return mismatches;
}

// A TZif version 2 file: an empty version 1 block, then the given 64-bit
// data and footer (what zic writes, minus the 32-bit copy of the data).
struct TzifSpec {
  std::vector<int64_t> transitions;
  std::vector<uint8_t> type_index;
  std::vector<std::pair<int32_t, uint8_t>> types = {{0, 0}};  // offset, isdst
  std::string footer;
  uint8_t version = '2';
};

void PutBe32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void PutHeader(Bytes& out, uint8_t version, uint32_t timecnt, uint32_t typecnt, uint32_t charcnt) {
  out.insert(out.end(), {'T', 'Z', 'i', 'f', version});
  out.insert(out.end(), 15, 0);
  for (uint32_t count : {0u, 0u, 0u, timecnt, typecnt, charcnt}) PutBe32(out, count);
}

Bytes BuildTzif(const TzifSpec& spec) {
  Bytes out;
  // Version 1 block: one type (UTC), abbreviation "UTC".
  PutHeader(out, spec.version, 0, 1, 4);
  out.insert(out.end(), {0, 0, 0, 0, 0, 0, 'U', 'T', 'C', 0});
  PutHeader(out, spec.version, static_cast<uint32_t>(spec.transitions.size()),
            static_cast<uint32_t>(spec.types.size()), 4);
  for (int64_t t : spec.transitions) {
    PutBe32(out, static_cast<uint32_t>(static_cast<uint64_t>(t) >> 32));
    PutBe32(out, static_cast<uint32_t>(t));
  }
  out.insert(out.end(), spec.type_index.begin(), spec.type_index.end());
  for (const auto& [offset, isdst] : spec.types) {
    PutBe32(out, static_cast<uint32_t>(offset));
    out.insert(out.end(), {isdst, 0});
  }
  out.insert(out.end(), {'A', 'B', 'C', 0});
  out.push_back('\n');
  out.insert(out.end(), spec.footer.begin(), spec.footer.end());
  out.push_back('\n');
  return out;
}

// A zone whose every instant follows a POSIX TZ string (no transitions).
TimeZone ZoneFromTzString(const std::string& tz) {
  TzifSpec spec;
  spec.footer = tz;
  Result<TimeZone> zone = TimeZone::Parse(tz, BuildTzif(spec), "<" + tz + ">");
  EXPECT_TRUE(zone.ok()) << zone.status().ToString();
  return zone.ok() ? *zone : TimeZone::Utc();
}

TimeZone LoadOrDie(const std::string& name) {
  Result<TimeZone> zone = TimeZone::Load(name);
  EXPECT_TRUE(zone.ok()) << zone.status().ToString();
  return zone.ok() ? *zone : TimeZone::Utc();
}

Schedule Cron(const std::string& text) {
  Result<CronSchedule> cron = ParseCron(text);
  EXPECT_TRUE(cron.ok()) << text << ": " << cron.status().ToString();
  Schedule s;
  s.cron = cron.ok() ? *cron : CronSchedule{};
  return s;
}

Schedule Every(int64_t seconds) {
  Schedule s;
  s.every_seconds = seconds;
  return s;
}

// The runs of `schedule` in (from, to], by calling NextRun repeatedly.
std::vector<int64_t> Runs(const Schedule& schedule, const TimeZone& zone, int64_t from,
                          int64_t to) {
  std::vector<int64_t> runs;
  for (int64_t t = from;;) {
    Result<int64_t> next = NextRun(schedule, zone, t);
    EXPECT_TRUE(next.ok()) << next.status().ToString();
    if (!next.ok() || *next > to) break;
    EXPECT_GT(*next, t);
    runs.push_back(*next);
    t = *next;
  }
  return runs;
}

std::vector<std::string> FormatAll(const std::vector<int64_t>& instants) {
  std::vector<std::string> out;
  for (int64_t t : instants) out.push_back(FormatUtc(t));
  return out;
}

// --- TimeZone ---

TEST(TimeZoneTest, UtcHasNoOffsetAndNeedsNoTzdata) {
  const TimeZone utc = TimeZone::Utc();
  EXPECT_EQ(utc.name(), "UTC");
  EXPECT_EQ(utc.ToLocal(0), (LocalTime{1970, 1, 1, 0, 0, 0, 4, 0, false}));
  EXPECT_EQ(utc.ToLocal(-1), (LocalTime{1969, 12, 31, 23, 59, 59, 3, 0, false}));
  EXPECT_EQ(utc.ToLocal(Utc(2024, 2, 29, 13, 14, 15)),
            (LocalTime{2024, 2, 29, 13, 14, 15, 4, 0, false}));
  Result<TimeZone> loaded = TimeZone::Load("UTC");
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->name(), "UTC");
  EXPECT_EQ(loaded->ToLocal(1'700'000'000), utc.ToLocal(1'700'000'000));
}

class TimeZoneGlibcTest : public ::testing::TestWithParam<const char*> {};

TEST_P(TimeZoneGlibcTest, ToLocalAgreesWithLocaltimeFrom1970To2100) {
  const std::string name = GetParam();
  if (!HaveZone(name)) {
    GTEST_SKIP() << "this system's tzdata has no " << name << " (install tzdata)";
  }
  Result<TimeZone> zone = TimeZone::Load(name);
  ASSERT_TRUE(zone.ok()) << zone.status().ToString();
  EXPECT_EQ(zone->name(), name);
  ScopedTz tz(name);
  EXPECT_EQ(CompareWithGlibc(*zone, std::hash<std::string>{}(name), 4000), 0);
}

INSTANTIATE_TEST_SUITE_P(TimeZone, TimeZoneGlibcTest,
                         ::testing::Values("UTC", "Europe/Paris", "America/New_York",
                                           "Australia/Lord_Howe", "Asia/Kolkata",
                                           "America/Sao_Paulo", "Pacific/Chatham", "America/Nuuk",
                                           "Asia/Jerusalem", "Africa/Casablanca", "Asia/Kathmandu",
                                           "Etc/GMT+5"),
                         [](const ::testing::TestParamInfo<const char*>& param_info) {
                           std::string s = param_info.param;
                           for (char& c : s) {
                             if (c == '/' || c == '+' || c == '-') c = '_';
                           }
                           return s;
                         });

// Every zone of the system's tzdata (zone1970.tab): fewer samples each.
TEST(TimeZoneTest, ToLocalAgreesWithLocaltimeForEveryZoneInTzdata) {
  Result<Bytes> tab = Env::Default()->ReadFile(std::string(kZoneInfo) + "zone1970.tab", 1 << 20);
  if (!tab.ok()) GTEST_SKIP() << "no zone1970.tab in this system's tzdata";
  const std::string text = ToString(*tab);
  int zones = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    const std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t a = line.find('\t');
    const size_t b = line.find('\t', a + 1);
    const size_t c = line.find('\t', b + 1);
    const std::string name = line.substr(b + 1, c == std::string::npos ? c : c - b - 1);
    SCOPED_TRACE(name);
    Result<TimeZone> zone = TimeZone::Load(name);
    ASSERT_TRUE(zone.ok()) << zone.status().ToString();
    ScopedTz tz(name);
    EXPECT_EQ(CompareWithGlibc(*zone, static_cast<uint64_t>(zones), 200), 0);
    ++zones;
  }
  EXPECT_GT(zones, 300);
}

TEST(TimeZoneTest, FooterRuleGovernsInstantsAfter2040) {
  if (!HaveZone("Europe/Paris") || !HaveZone("Australia/Lord_Howe")) {
    GTEST_SKIP() << "this system's tzdata lacks Europe/Paris or Australia/Lord_Howe";
  }
  // Zone files list transitions up to 2037 at most; later ones come from the
  // footer's TZ string ("CET-1CEST,M3.5.0,M10.5.0/3").
  const TimeZone paris = LoadOrDie("Europe/Paris");
  // 2041: DST from Sunday 31 March 01:00Z to Sunday 27 October 01:00Z.
  EXPECT_EQ(paris.ToLocal(Utc(2041, 3, 31, 0, 59, 59)),
            (LocalTime{2041, 3, 31, 1, 59, 59, 0, 3600, false}));
  EXPECT_EQ(paris.ToLocal(Utc(2041, 3, 31, 1)), (LocalTime{2041, 3, 31, 3, 0, 0, 0, 7200, true}));
  EXPECT_EQ(paris.ToLocal(Utc(2041, 10, 27, 0, 59, 59)),
            (LocalTime{2041, 10, 27, 2, 59, 59, 0, 7200, true}));
  EXPECT_EQ(paris.ToLocal(Utc(2041, 10, 27, 1)),
            (LocalTime{2041, 10, 27, 2, 0, 0, 0, 3600, false}));
  const TimeZone::Period summer = paris.PeriodAt(Utc(2077, 7, 14, 12));
  EXPECT_EQ(summer.start, Utc(2077, 3, 28, 1));
  EXPECT_EQ(summer.end, Utc(2077, 10, 31, 1));
  EXPECT_EQ(summer.utc_offset_seconds, 7200);
  EXPECT_TRUE(summer.dst);

  // Lord Howe: +10:30, and +11 (a 30-minute DST) from the first Sunday of
  // October 02:00 to the first Sunday of April 02:00 (local DST).
  const TimeZone lord_howe = LoadOrDie("Australia/Lord_Howe");
  EXPECT_EQ(lord_howe.ToLocal(Utc(2055, 10, 2, 15, 29, 59)),
            (LocalTime{2055, 10, 3, 1, 59, 59, 0, 37800, false}));
  EXPECT_EQ(lord_howe.ToLocal(Utc(2055, 10, 2, 15, 30)),
            (LocalTime{2055, 10, 3, 2, 30, 0, 0, 39600, true}));
  EXPECT_EQ(lord_howe.ToLocal(Utc(2056, 4, 1, 14, 59, 59)),
            (LocalTime{2056, 4, 2, 1, 59, 59, 0, 39600, true}));
  EXPECT_EQ(lord_howe.ToLocal(Utc(2056, 4, 1, 15)),
            (LocalTime{2056, 4, 2, 1, 30, 0, 0, 37800, false}));
}

TEST(TimeZoneTest, PosixRulesAgreeWithLocaltime) {
  const char* const kTzStrings[] = {
      "CET-1CEST,M3.5.0,M10.5.0/3",
      "EST5EDT,M3.2.0,M11.1.0",
      "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",            // southern, 30-minute DST
      "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",    // DST offset by default: +1h
      "AAA3BBB,J60/2,J300/2",                            // Jn: 29 February never counted
      "AAA3BBB,59/2,300/2",                              // n: 29 February counted
      "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",                 // a negative rule time (Nuuk)
      "IST-2IDT,M3.4.4/26,M10.5.0",                      // a rule time past 24:00 (Israel)
      "<+0330>-3:30",                                    // no DST, quoted name
      "<-0130>+1:30<-0030>+0:30:15,M5.5.6/23:59:59,J1",  // seconds in offsets
      "ABC-14XYZ-13,M1.1.0/100,M12.5.6/-100",            // far from midnight, southern
  };
  for (const char* text : kTzStrings) {
    SCOPED_TRACE(text);
    const TimeZone zone = ZoneFromTzString(text);
    ScopedTz tz(text);
    EXPECT_EQ(CompareWithGlibc(zone, 7, 3000), 0);
  }
}

TEST(TimeZoneTest, DstFromJanuaryFirstToYearEndMeansDstAllYear) {
  // RFC 8536 section 3.3.1: DST starting on 1 January 00:00 and ending on
  // 31 December at 24:00 plus the DST saving is DST all year.
  const TimeZone zone = ZoneFromTzString("EST5EDT,0/0,J365/25");
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int64_t> dist(0, k2100);
  for (int i = 0; i < 2000; ++i) {
    const int64_t t = dist(rng);
    const LocalTime l = zone.ToLocal(t);
    ASSERT_TRUE(l.dst) << FormatUtc(t);
    ASSERT_EQ(l.utc_offset_seconds, -4 * 3600) << FormatUtc(t);
  }
  EXPECT_TRUE(zone.ToLocal(Utc(2030, 1, 1, 4, 30)).dst);  // around the year's change
}

TEST(TimeZoneTest, ParsesPosixTzStrings) {
  Result<TimeZone::PosixTz> tehran = TimeZone::ParsePosixTz("<+0330>-3:30");
  ASSERT_TRUE(tehran.ok()) << tehran.status().ToString();
  EXPECT_EQ(tehran->std_offset, 12600);
  EXPECT_FALSE(tehran->has_dst);

  Result<TimeZone::PosixTz> paris = TimeZone::ParsePosixTz("CET-1CEST,M3.5.0,M10.5.0/3");
  ASSERT_TRUE(paris.ok()) << paris.status().ToString();
  EXPECT_EQ(paris->std_offset, 3600);
  EXPECT_EQ(paris->dst_offset, 7200);
  EXPECT_EQ(paris->start.kind, TimeZone::Rule::Kind::kMonthWeekDay);
  EXPECT_EQ(paris->start.month, 3);
  EXPECT_EQ(paris->start.week, 5);
  EXPECT_EQ(paris->start.day, 0);
  EXPECT_EQ(paris->start.time, 7200);
  EXPECT_EQ(paris->end.time, 3 * 3600);

  Result<TimeZone::PosixTz> nuuk = TimeZone::ParsePosixTz("<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
  ASSERT_TRUE(nuuk.ok()) << nuuk.status().ToString();
  EXPECT_EQ(nuuk->std_offset, -7200);
  EXPECT_EQ(nuuk->dst_offset, -3600);
  EXPECT_EQ(nuuk->start.time, -3600);

  Result<TimeZone::PosixTz> julian = TimeZone::ParsePosixTz("AAA3BBB2,J60/2:30:15,300");
  ASSERT_TRUE(julian.ok()) << julian.status().ToString();
  EXPECT_EQ(julian->start.kind, TimeZone::Rule::Kind::kJulianNoLeap);
  EXPECT_EQ(julian->start.day, 60);
  EXPECT_EQ(julian->start.time, 2 * 3600 + 30 * 60 + 15);
  EXPECT_EQ(julian->end.kind, TimeZone::Rule::Kind::kZeroBasedDay);
  EXPECT_EQ(julian->end.day, 300);
  EXPECT_EQ(julian->dst_offset, -7200);

  for (const char* bad :
       {"", "C-1", "CET", "CET-1CEST", "CET-1CEST,M3.5.0", "<+03-3", "<+3>-3", "CET-25", "CET-1:60",
        "CET-1CEST,M13.1.0,M10.5.0", "CET-1CEST,M3.6.0,M10.5.0", "CET-1CEST,M3.5.7,M10.5.0",
        "CET-1CEST,J0,J365", "CET-1CEST,366,1", "CET-1CEST,M3.5.0/168,M10.5.0",
        "CET-1CEST,M3.5.0,M10.5.0x", "CET-1 ", "CET-1CEST,M3.5.0;M10.5.0"}) {
    SCOPED_TRACE(bad);
    Result<TimeZone::PosixTz> tz = TimeZone::ParsePosixTz(bad);
    EXPECT_EQ(tz.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(TimeZoneTest, UnknownOrUnsafeZoneNameIsInvalidArgument) {
  for (const char* bad :
       {"Mars/Olympus_Mons", "../etc/passwd", "/etc/localtime", "localtime", "Europe//Paris", ""}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(TimeZone::Load(bad).status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(TimeZoneTest, LeapSecondZoneIsRefused) {
  if (!HaveZone("right/Europe/Paris")) {
    GTEST_SKIP() << "this system's tzdata has no right/ zones";
  }
  Result<TimeZone> zone = TimeZone::Load("right/Europe/Paris");
  EXPECT_EQ(zone.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(zone.status().message().find("leap seconds"), std::string::npos)
      << zone.status().message();
}

TEST(TimeZoneTest, TruncatedZoneFileIsDataLossNamingTheFile) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  const Bytes paris = testing::ReadFileOrDie(std::string(kZoneInfo) + "Europe/Paris");
  testing::TempDir dir;
  const std::string path = dir.Sub("Paris");
  testing::WriteFileOrDie(path, ByteView(paris).first(paris.size() / 2));
  Result<TimeZone> zone = TimeZone::LoadFile("Europe/Paris", path, *Env::Default());
  EXPECT_EQ(zone.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(zone.status().message().find(path), std::string::npos) << zone.status().message();

  // Every shorter prefix is refused too, never misread.
  for (size_t n = 0; n < paris.size(); ++n) {
    Result<TimeZone> prefix = TimeZone::Parse("Europe/Paris", ByteView(paris).first(n), "p");
    ASSERT_EQ(prefix.status().code(), StatusCode::kDataLoss) << n << " bytes";
  }
  Result<TimeZone> whole = TimeZone::Parse("Europe/Paris", paris, "p");
  EXPECT_TRUE(whole.ok()) << whole.status().ToString();
}

TEST(TimeZoneTest, DamagedZoneFileIsDataLoss) {
  struct Case {
    const char* what;
    TzifSpec spec;
  };
  const int64_t t0 = Utc(2000, 1, 1);
  std::vector<Case> cases = {
      {"transitions out of order", {{t0, t0 - 1}, {0, 0}, {{0, 0}}, "UTC0"}},
      {"repeated transition", {{t0, t0}, {0, 0}, {{0, 0}}, "UTC0"}},
      {"type index out of range", {{t0}, {1}, {{0, 0}}, "UTC0"}},
      {"isdst not 0 or 1", {{t0}, {0}, {{0, 2}}, "UTC0"}},
      {"offset out of range", {{t0}, {0}, {{100000, 0}}, "UTC0"}},
      {"offset INT32_MIN", {{t0}, {0}, {{INT32_MIN, 0}}, "UTC0"}},
      {"footer without DST rules", {{}, {}, {{3600, 0}}, "CET-1CEST"}},
      {"footer garbage", {{}, {}, {{0, 0}}, "???"}},
      {"unknown version", {{}, {}, {{0, 0}}, "UTC0", 'x'}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Result<TimeZone> zone = TimeZone::Parse("Test/Zone", BuildTzif(c.spec), "/tzdata/Test/Zone");
    EXPECT_EQ(zone.status().code(), StatusCode::kDataLoss) << zone.status().ToString();
    EXPECT_NE(zone.status().message().find("/tzdata/Test/Zone"), std::string::npos)
        << zone.status().message();
  }

  TzifSpec good{{t0}, {0}, {{3600, 0}}, "<+01>-1"};
  ASSERT_TRUE(TimeZone::Parse("Test/Zone", BuildTzif(good), "z").ok());
  Bytes trailing = BuildTzif(good);
  trailing.push_back('x');
  EXPECT_EQ(TimeZone::Parse("Test/Zone", trailing, "z").status().code(), StatusCode::kDataLoss);
  Bytes magic = BuildTzif(good);
  magic[0] = 'X';
  EXPECT_EQ(TimeZone::Parse("Test/Zone", magic, "z").status().code(), StatusCode::kDataLoss);
}

TEST(TimeZoneTest, Version1FileIsReadFromIts32BitData) {
  // Two types: +01 until 2000-01-01 00:00 local, then +02 (DST); version 1
  // has no footer.
  Bytes v1;
  PutHeader(v1, 0, 1, 2, 4);
  PutBe32(v1, static_cast<uint32_t>(Utc(1999, 12, 31, 23)));
  v1.push_back(1);
  for (const uint8_t dst : {uint8_t{0}, uint8_t{1}}) {
    PutBe32(v1, dst ? 7200 : 3600);
    v1.insert(v1.end(), {dst, 0});
  }
  v1.insert(v1.end(), {'A', 'B', 'C', 0});
  Result<TimeZone> zone = TimeZone::Parse("Test/V1", v1, "v1");
  ASSERT_TRUE(zone.ok()) << zone.status().ToString();
  EXPECT_EQ(zone->ToLocal(Utc(1999, 12, 31, 22, 59, 59)),
            (LocalTime{1999, 12, 31, 23, 59, 59, 5, 3600, false}));
  EXPECT_EQ(zone->ToLocal(Utc(1999, 12, 31, 23)), (LocalTime{2000, 1, 1, 1, 0, 0, 6, 7200, true}));
  EXPECT_EQ(zone->ToLocal(Utc(2090, 6, 1)).utc_offset_seconds, 7200);  // the last type goes on
  v1.pop_back();
  EXPECT_EQ(TimeZone::Parse("Test/V1", v1, "v1").status().code(), StatusCode::kDataLoss);
}

TEST(TimeZoneTest, RandomlyCorruptedZoneFileNeverCrashes) {
  if (!HaveZone("America/New_York")) GTEST_SKIP() << "tzdata has no America/New_York";
  const Bytes original = testing::ReadFileOrDie(std::string(kZoneInfo) + "America/New_York");
  std::mt19937_64 rng(42);
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    Bytes b = original;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      b[rng() % b.size()] = static_cast<uint8_t>(rng());
    }
    Result<TimeZone> zone = TimeZone::Parse("America/New_York", b, "corrupt");
    if (!zone.ok()) {
      ++refused;
      const StatusCode code = zone.status().code();
      ASSERT_TRUE(code == StatusCode::kDataLoss || code == StatusCode::kInvalidArgument)
          << zone.status().ToString();
      continue;
    }
    // Whatever was accepted still answers sensibly.
    for (int64_t t : {int64_t{-kMaxZoneSeconds}, int64_t{0}, int64_t{2'000'000'000}, k2100,
                      int64_t{kMaxZoneSeconds}}) {
      const LocalTime l = zone->ToLocal(t);
      ASSERT_TRUE(l.month >= 1 && l.month <= 12 && l.day >= 1 && l.day <= 31);
      const TimeZone::Period p = zone->PeriodAt(t);
      ASSERT_TRUE(p.start <= t && t < p.end);
    }
    ASSERT_TRUE(NextRun(Cron("*/15 * * * *"), *zone, 2'000'000'000).ok());
  }
  EXPECT_GT(refused, 0);
}

TEST(TimeZoneTest, CachedZoneIsLoadedOnceAndShared) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  std::vector<std::thread> threads;
  std::vector<const TimeZone*> seen(8, nullptr);
  for (size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&seen, i] {
      Result<std::shared_ptr<const TimeZone>> zone = LoadTimeZoneCached("Europe/Paris");
      if (zone.ok()) seen[i] = zone->get();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const TimeZone* z : seen) {
    ASSERT_NE(z, nullptr);
    EXPECT_EQ(z, seen[0]);
  }
  EXPECT_EQ(seen[0]->name(), "Europe/Paris");
  EXPECT_EQ(LoadTimeZoneCached("No/Such_Zone").status().code(), StatusCode::kInvalidArgument);
}

TEST(TimeZoneTest, InstantsFarOutsideTheRangeAreClamped) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  const TimeZone paris = LoadOrDie("Europe/Paris");
  for (int64_t t : {INT64_MIN, INT64_MIN + 1, -kMaxZoneSeconds - 1, kMaxZoneSeconds + 1,
                    INT64_MAX - 1, INT64_MAX}) {
    SCOPED_TRACE(t);
    const TimeZone::Period p = paris.PeriodAt(t);
    EXPECT_LE(p.start, t);
    if (t != INT64_MAX) {
      EXPECT_GT(p.end, t);
    }
    const LocalTime l = paris.ToLocal(t);
    EXPECT_EQ(l, paris.ToLocal(t < 0 ? -kMaxZoneSeconds : kMaxZoneSeconds));
  }
}

// --- NextRun ---

TEST(ScheduleTest, EveryFiresAtMultiplesOfTheIntervalSinceTheEpoch) {
  const TimeZone utc = TimeZone::Utc();
  const Schedule ten_minutes = Every(600);
  EXPECT_EQ(*NextRun(ten_minutes, utc, 1'700'000'123), 1'700'000'400);
  EXPECT_EQ(*NextRun(ten_minutes, utc, 1'700'000'400), 1'700'001'000);  // strictly after
  EXPECT_EQ(*NextRun(ten_minutes, utc, 1'700'000'399), 1'700'000'400);
  EXPECT_EQ(*NextRun(ten_minutes, utc, -1), 0);
  EXPECT_EQ(*NextRun(ten_minutes, utc, -601), -600);
  // Restarting at any moment gives the same runs; zones and DST do not matter.
  if (HaveZone("Europe/Paris")) {
    const TimeZone paris = LoadOrDie("Europe/Paris");
    const int64_t spring = Utc(2026, 3, 29, 0, 55);
    EXPECT_EQ(Runs(ten_minutes, paris, spring, spring + 1800),
              Runs(ten_minutes, utc, spring, spring + 1800));
    EXPECT_EQ(FormatAll(Runs(ten_minutes, paris, spring, spring + 1800)),
              (std::vector<std::string>{"2026-03-29T01:00:00Z", "2026-03-29T01:10:00Z",
                                        "2026-03-29T01:20:00Z"}));
  }
  EXPECT_EQ(*NextRun(Every(7 * 60), utc, Utc(2026, 1, 1, 0, 1)), Utc(2026, 1, 1, 0, 7));
}

TEST(ScheduleTest, QuarterHourAcrossParisSpringForward) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  const TimeZone paris = LoadOrDie("Europe/Paris");
  // 2026-03-29: at 01:00Z, 02:00 CET becomes 03:00 CEST. 02:00-02:45 do not
  // exist and give a single run at 03:00 CEST (01:00Z), which 03:00 also is.
  const std::vector<int64_t> runs =
      Runs(Cron("*/15 * * * *"), paris, Utc(2026, 3, 29, 0, 10), Utc(2026, 3, 29, 1, 40));
  EXPECT_EQ(FormatAll(runs),
            (std::vector<std::string>{"2026-03-29T00:15:00Z", "2026-03-29T00:30:00Z",
                                      "2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z",
                                      "2026-03-29T01:15:00Z", "2026-03-29T01:30:00Z"}));
  const std::vector<std::pair<int, int>> local = {{1, 15}, {1, 30}, {1, 45},
                                                  {3, 0},  {3, 15}, {3, 30}};
  ASSERT_EQ(runs.size(), local.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const LocalTime l = paris.ToLocal(runs[i]);
    EXPECT_EQ(std::make_pair(l.hour, l.minute), local[i]) << FormatUtc(runs[i]);
  }
  // Only in the gap: one run at 03:00 CEST, then the next day's 02:00.
  EXPECT_EQ(FormatAll(Runs(Cron("*/15 2 * * *"), paris, Utc(2026, 3, 28, 12), Utc(2026, 3, 30, 1))),
            (std::vector<std::string>{"2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z",
                                      "2026-03-30T00:15:00Z", "2026-03-30T00:30:00Z",
                                      "2026-03-30T00:45:00Z"}));
}

TEST(ScheduleTest, QuarterHourAcrossParisFallBack) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  const TimeZone paris = LoadOrDie("Europe/Paris");
  // 2026-10-25: at 01:00Z, 03:00 CEST becomes 02:00 CET. 02:00-02:59 occur
  // twice; only the first (CEST) occurrence runs: nothing in [01:00Z, 02:00Z).
  EXPECT_EQ(FormatAll(Runs(Cron("*/15 * * * *"), paris, Utc(2026, 10, 24, 23, 50),
                           Utc(2026, 10, 25, 2, 30))),
            (std::vector<std::string>{"2026-10-25T00:00:00Z", "2026-10-25T00:15:00Z",
                                      "2026-10-25T00:30:00Z", "2026-10-25T00:45:00Z",
                                      "2026-10-25T02:00:00Z", "2026-10-25T02:15:00Z",
                                      "2026-10-25T02:30:00Z"}));
  // Asked during the repeated hour: the next run is 03:00 CET.
  EXPECT_EQ(*NextRun(Cron("*/15 * * * *"), paris, Utc(2026, 10, 25, 1, 20)), Utc(2026, 10, 25, 2));
  EXPECT_EQ(*NextRun(Cron("*/15 * * * *"), paris, Utc(2026, 10, 25, 1)), Utc(2026, 10, 25, 2));
  EXPECT_EQ(*NextRun(Cron("*/15 * * * *"), paris, Utc(2026, 10, 25, 0, 59, 59)),
            Utc(2026, 10, 25, 2));
}

TEST(ScheduleTest, DailyRunInTheSpringForwardGapRunsOnceAtTheEndOfTheGap) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  const TimeZone paris = LoadOrDie("Europe/Paris");
  const std::vector<int64_t> runs =
      Runs(Cron("30 2 * * *"), paris, Utc(2026, 3, 27, 12), Utc(2026, 3, 31));
  EXPECT_EQ(FormatAll(runs),
            (std::vector<std::string>{"2026-03-28T01:30:00Z",     // 02:30 CET
                                      "2026-03-29T01:00:00Z",     // 03:00 CEST, after the gap
                                      "2026-03-30T00:30:00Z"}));  // 02:30 CEST
  ASSERT_EQ(runs.size(), 3u);
  const LocalTime after_gap = paris.ToLocal(runs[1]);
  EXPECT_EQ(after_gap.hour, 3);
  EXPECT_EQ(after_gap.minute, 0);
  EXPECT_TRUE(after_gap.dst);
}

TEST(ScheduleTest, DailyRunInTheRepeatedHourRunsOnlyAtItsFirstOccurrence) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  const TimeZone paris = LoadOrDie("Europe/Paris");
  EXPECT_EQ(FormatAll(Runs(Cron("30 2 * * *"), paris, Utc(2026, 10, 23, 12), Utc(2026, 10, 27))),
            (std::vector<std::string>{"2026-10-24T00:30:00Z",     // 02:30 CEST
                                      "2026-10-25T00:30:00Z",     // 02:30 CEST, first of two
                                      "2026-10-26T01:30:00Z"}));  // 02:30 CET
}

TEST(ScheduleTest, LeapDayScheduleFindsTheNextLeapDay) {
  const Schedule leap_day = Cron("0 0 29 2 *");
  const TimeZone utc = TimeZone::Utc();
  EXPECT_EQ(FormatUtc(*NextRun(leap_day, utc, Utc(2026, 5, 1))), "2028-02-29T00:00:00Z");
  EXPECT_EQ(FormatUtc(*NextRun(leap_day, utc, Utc(2028, 2, 29))), "2032-02-29T00:00:00Z");
  // 2100 is not a leap year: eight years from 2096 to 2104.
  EXPECT_EQ(FormatUtc(*NextRun(leap_day, utc, Utc(2096, 2, 29))), "2104-02-29T00:00:00Z");
  if (HaveZone("Europe/Paris")) {
    EXPECT_EQ(FormatUtc(*NextRun(leap_day, LoadOrDie("Europe/Paris"), Utc(2026, 5, 1))),
              "2028-02-28T23:00:00Z");
  }
}

TEST(ScheduleTest, CronThatNeverFiresIsNotFound) {
  // ParseCron refuses these; a schedule built in code can still hold them.
  Schedule feb30 = Cron("0 0 30 * *");
  feb30.cron->months.assign(13, false);
  feb30.cron->months[2] = true;
  feb30.cron->text = "0 0 30 2 *";
  Result<int64_t> next = NextRun(feb30, TimeZone::Utc(), Utc(2026, 1, 1));
  EXPECT_EQ(next.status().code(), StatusCode::kNotFound);
  EXPECT_NE(next.status().message().find("0 0 30 2 *"), std::string::npos);

  Schedule no_minutes = Cron("0 0 * * *");
  no_minutes.cron->minutes.assign(60, false);
  EXPECT_EQ(NextRun(no_minutes, TimeZone::Utc(), 0).status().code(), StatusCode::kNotFound);
}

TEST(ScheduleTest, MalformedScheduleIsRefused) {
  const TimeZone utc = TimeZone::Utc();
  EXPECT_EQ(NextRun(Schedule{}, utc, 0).status().code(), StatusCode::kInvalidArgument);
  Schedule both = Cron("* * * * *");
  both.every_seconds = 60;
  EXPECT_EQ(NextRun(both, utc, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(NextRun(Every(0), utc, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(NextRun(Every(-60), utc, 0).status().code(), StatusCode::kInvalidArgument);
  Schedule shape;
  shape.cron = CronSchedule{};
  EXPECT_EQ(NextRun(shape, utc, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(NextRun(Every(60), utc, INT64_MAX).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(NextRun(Cron("* * * * *"), utc, INT64_MIN).status().code(), StatusCode::kOutOfRange);
}

TEST(ScheduleTest, CronHonoursDayOfMonthOrDayOfWeek) {
  const TimeZone utc = TimeZone::Utc();
  // Both restricted: the 1st of the month or a Monday. 2026-06-01 is a Monday.
  EXPECT_EQ(FormatAll(Runs(Cron("0 6 1 * Mon"), utc, Utc(2026, 5, 28), Utc(2026, 6, 16))),
            (std::vector<std::string>{"2026-06-01T06:00:00Z", "2026-06-08T06:00:00Z",
                                      "2026-06-15T06:00:00Z"}));
  // Day of month unrestricted ("*/2"): odd days that are Mondays.
  EXPECT_EQ(FormatAll(Runs(Cron("0 6 */2 * Mon"), utc, Utc(2026, 6, 1, 7), Utc(2026, 8, 1))),
            (std::vector<std::string>{"2026-06-15T06:00:00Z", "2026-06-29T06:00:00Z",
                                      "2026-07-13T06:00:00Z", "2026-07-27T06:00:00Z"}));
}

// What NextRun should do, by brute force over UTC minutes: a local minute
// fires at the first instant the wall clock reads it or later. Valid for
// zones whose offsets and changes fall on whole minutes.
std::vector<int64_t> BruteForceRuns(const CronSchedule& cron, const TimeZone& zone, int64_t from,
                                    int64_t to) {
  auto wall_minute = [&](int64_t t) {
    return (t + zone.ToLocal(t).utc_offset_seconds) / 60;  // t >= 0 here
  };
  int64_t highest = 0;  // the highest wall-clock minute read up to `from`
  for (int64_t t = from - 3 * 86400; t <= from; t += 60)
    highest = std::max(highest, wall_minute(t));
  highest = std::max(highest, wall_minute(from));
  std::vector<int64_t> runs;
  for (int64_t t = (from / 60 + 1) * 60; t <= to; t += 60) {
    const int64_t now = wall_minute(t);
    bool fires = false;
    for (int64_t m = highest + 1; m <= now && !fires; ++m) {
      const LocalTime l = TimeZone::Utc().ToLocal(m * 60);
      fires = CronMatches(cron, l.minute, l.hour, l.day, l.month, l.weekday);
    }
    if (fires) runs.push_back(t);
    highest = std::max(highest, now);
  }
  return runs;
}

TEST(ScheduleTest, CronRunsAgreeWithABruteForceScanAcrossDstChanges) {
  const char* const kZones[] = {"Europe/Paris",    "America/New_York", "Australia/Lord_Howe",
                                "Pacific/Chatham", "Asia/Kolkata",     "America/Sao_Paulo",
                                "America/Nuuk"};
  const char* const kCrons[] = {"*/15 * * * *",  "30 2 * * *",   "0,30 1-3 * * Sun", "45 * * * *",
                                "*/7 0-4 * * *", "59 1 * * 0,6", "0 2 1-10 * *"};
  int zones = 0;
  for (const char* name : kZones) {
    if (!HaveZone(name)) continue;  // reported below
    ++zones;
    const TimeZone zone = LoadOrDie(name);
    // Ten days around each change of offset in 2026 and 2050 (footer rules).
    std::vector<int64_t> changes;
    for (int64_t year_start : {Utc(2026, 1, 1), Utc(2050, 1, 1)}) {
      for (int64_t t = year_start; t < year_start + 366 * 86400;) {
        const TimeZone::Period p = zone.PeriodAt(t);
        if (p.end >= year_start + 366 * 86400) break;
        changes.push_back(p.end);
        t = p.end;
      }
    }
    if (changes.empty()) changes.push_back(Utc(2026, 6, 1));  // no DST: an ordinary day
    for (int64_t change : changes) {
      for (const char* text : kCrons) {
        SCOPED_TRACE(std::string(name) + " " + text + " around " + FormatUtc(change));
        const Schedule schedule = Cron(text);
        const int64_t from = change - 5 * 86400 + 17;
        const int64_t to = change + 5 * 86400;
        EXPECT_EQ(FormatAll(Runs(schedule, zone, from, to)),
                  FormatAll(BruteForceRuns(*schedule.cron, zone, from, to)));
      }
    }
  }
  if (zones < 7) std::printf("note: %d of 7 zones are missing from this system's tzdata\n", zones);
}

TEST(ScheduleTest, YearLongSearchTakesMicroseconds) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  const TimeZone paris = LoadOrDie("Europe/Paris");
  const Schedule yearly = Cron("0 0 1 1 *");
  const Schedule leap_day = Cron("0 0 29 2 *");
  const Schedule thirteenth = Cron("59 23 13 * *");
  constexpr int kCalls = 300;
  const auto start = std::chrono::steady_clock::now();
  int64_t sink = 0;
  for (int i = 0; i < kCalls; ++i) {
    sink += *NextRun(yearly, paris, Utc(2026, 1, 1, 12) + i);
    sink += *NextRun(leap_day, paris, Utc(2096, 3, 1) + i);  // eight years ahead
    sink += *NextRun(thirteenth, paris, Utc(2026, 1, 14) + i);
  }
  const auto per_call = (std::chrono::steady_clock::now() - start) / (3 * kCalls);
  EXPECT_NE(sink, 0);
  // Typically a few microseconds; the bound leaves room for sanitizers.
  EXPECT_LT(per_call, std::chrono::milliseconds(1))
      << std::chrono::duration_cast<std::chrono::microseconds>(per_call).count() << " us";
}

// --- BandwidthLimitNow ---

TEST(ScheduleTest, BandwidthWindowFollowsTheLocalClockInWinterAndSummer) {
  if (!HaveZone("Europe/Paris")) GTEST_SKIP() << "this system's tzdata has no Europe/Paris";
  Result<MirrorPolicy> policy = ParseMirrorPolicy(R"(apiVersion: ferry/v1
kind: MirrorPolicy
metadata: {name: shop-cameras, tenant: retail}
spec:
  datasets: [videos]
  schedule: "*/15 * * * *"
  timeZone: Europe/Paris
  targets: [{hub: cloud-east}]
  bandwidth: {limit: 2MiB/s, windows: [{days: Mon-Fri, from: "08:00", to: "18:00", limit: 256KiB/s}]}
)");
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  Result<std::shared_ptr<const TimeZone>> paris = LoadTimeZoneCached(policy->time_zone);
  ASSERT_TRUE(paris.ok()) << paris.status().ToString();
  constexpr uint64_t kOutside = 2 << 20;
  constexpr uint64_t kInside = 256 << 10;
  struct Case {
    const char* what;
    int64_t at;
    uint64_t limit;
  };
  const Case cases[] = {
      // Winter (CET, UTC+1): Monday 2026-01-12.
      {"winter 06:59Z = 07:59 CET", Utc(2026, 1, 12, 6, 59), kOutside},
      {"winter 07:00Z = 08:00 CET", Utc(2026, 1, 12, 7, 0), kInside},
      {"winter 16:59Z = 17:59 CET", Utc(2026, 1, 12, 16, 59), kInside},
      {"winter 17:00Z = 18:00 CET", Utc(2026, 1, 12, 17, 0), kOutside},
      // Summer (CEST, UTC+2): Monday 2026-07-13.
      {"summer 05:59Z = 07:59 CEST", Utc(2026, 7, 13, 5, 59), kOutside},
      {"summer 06:00Z = 08:00 CEST", Utc(2026, 7, 13, 6, 0), kInside},
      {"summer 16:00Z = 18:00 CEST", Utc(2026, 7, 13, 16, 0), kOutside},
      {"summer 15:59Z = 17:59 CEST", Utc(2026, 7, 13, 15, 59), kInside},
      // Saturday, and Friday late evening UTC that is already Saturday in Paris.
      {"Saturday noon", Utc(2026, 7, 18, 10, 0), kOutside},
      {"Friday 23:30Z = Saturday 01:30", Utc(2026, 7, 17, 23, 30), kOutside},
      {"Sunday 23:30Z = Monday 00:30 CET", Utc(2026, 1, 11, 23, 30), kOutside},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(BandwidthLimitNow(*policy, **paris, c.at), c.limit);
  }
  // The same instants in UTC: the window is 08:00-18:00 UTC.
  EXPECT_EQ(BandwidthLimitNow(*policy, TimeZone::Utc(), Utc(2026, 7, 13, 7, 59)), kOutside);
  EXPECT_EQ(BandwidthLimitNow(*policy, TimeZone::Utc(), Utc(2026, 7, 13, 8, 0)), kInside);
  MirrorPolicy unlimited = *policy;
  unlimited.bandwidth = Bandwidth{};
  EXPECT_EQ(BandwidthLimitNow(unlimited, **paris, Utc(2026, 7, 13, 8, 0)), 0u);
}

}  // namespace
}  // namespace ferry::mirror
