#include "core/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace ferry::log {

void Init(const Options& options) {
  auto logger = std::make_shared<spdlog::logger>(std::string(options.program),
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
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
  logger->set_pattern(std::string(options.program) + ": %^%l%$: %v");
  spdlog::set_default_logger(std::move(logger));
}

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
