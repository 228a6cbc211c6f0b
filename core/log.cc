#include "core/log.h"

#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace ferry::log {

namespace {

thread_local std::vector<std::pair<std::string, std::string>> t_fields;

// One JSON object per line: {"ts":"2026-11-29T14:00:00.123Z","level":"info",
// "program":"ferry-hub","msg":"..."}.
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string program) : program_(std::move(program)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto since_epoch = msg.time.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs).count();
    const std::time_t t = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[96];
    std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(millis));
    std::string line = std::string("{\"ts\":\"") + ts + "\",\"level\":\"";
    const auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += "\",\"program\":\"";
    Escape(program_, line);
    line += "\",\"msg\":\"";
    Escape(std::string_view(msg.payload.data(), msg.payload.size()), line);
    line += "\"";
    for (const auto& [key, value] : t_fields) {
      line += ",\"";
      Escape(key, line);
      line += "\":\"";
      Escape(value, line);
      line += "\"";
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(program_);
  }

 private:
  static void Escape(std::string_view in, std::string& out) {
    for (const char c : in) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned char>(c));
            out += buf;
          } else {
            out += c;
          }
      }
    }
  }

  std::string program_;
};

}  // namespace

void Init(const Options& options) {
  spdlog::sink_ptr sink = options.sink;
  if (!sink) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(std::string(options.program), std::move(sink));
  switch (options.level) {
    case Level::kDebug:
      logger->set_level(spdlog::level::debug);
      break;
    case Level::kInfo:
      logger->set_level(spdlog::level::info);
      break;
    case Level::kWarn:
      logger->set_level(spdlog::level::warn);
      break;
    case Level::kError:
      logger->set_level(spdlog::level::err);
      break;
    case Level::kOff:
      logger->set_level(spdlog::level::off);
      break;
  }
  if (options.json) {
    logger->set_formatter(std::make_unique<JsonFormatter>(std::string(options.program)));
  } else {
    logger->set_pattern(std::string(options.program) + ": %^%l%$: %v");
  }
  spdlog::set_default_logger(std::move(logger));
}

ScopedFields::ScopedFields(std::vector<std::pair<std::string, std::string>> fields)
    : previous_size_(t_fields.size()) {
  for (auto& f : fields) t_fields.push_back(std::move(f));
}

ScopedFields::~ScopedFields() { t_fields.resize(previous_size_); }

Result<Level> ParseLevel(std::string_view name) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  return InvalidArgumentError("unknown log level '" + std::string(name) +
                              "' (expected debug, info, warn, error or off)");
}

}  // namespace ferry::log
