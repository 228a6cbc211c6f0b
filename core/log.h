// Logging: one line per event on stderr, through spdlog.
//
// Call sites use the level functions (`log::Info("pack {} sealed", name)`,
// fmt syntax). Init() picks the level and the format once per process: text
// lines "program: level: message", or JSON lines for log collectors.
//
// Thread-safety: thread-safe after Init().
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace ferry::log {

enum class Level { kDebug, kInfo, kWarn, kError, kOff };

struct Options {
  Level level = Level::kInfo;
  std::string_view program = "ferry";
  // JSON lines ({"ts","level","program","msg", ...fields}) instead of text,
  // for log collectors; daemons pick it when stderr is not a terminal.
  bool json = false;
  // Where lines go; stderr when null (tests pass an ostream sink).
  spdlog::sink_ptr sink = nullptr;
};

void Init(const Options& options);

// Fields added to every line this thread logs while the object lives (JSON:
// extra keys after "msg"; text lines are unchanged), e.g. the hub's session,
// tenant and agent on a session's thread. Scopes nest; inner fields follow
// outer ones.
class ScopedFields {
 public:
  explicit ScopedFields(std::vector<std::pair<std::string, std::string>> fields);
  ~ScopedFields();
  ScopedFields(const ScopedFields&) = delete;
  ScopedFields& operator=(const ScopedFields&) = delete;

 private:
  size_t previous_size_;
};
// Parses "debug", "info", "warn", "error", "off".
Result<Level> ParseLevel(std::string_view name);

template <typename... Args>
void Debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::debug(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void Info(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::info(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void Warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::warn(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void Error(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::error(fmt, std::forward<Args>(args)...);
}

}  // namespace ferry::log
