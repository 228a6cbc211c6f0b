// libFuzzer target: ferry-hub's config file (cloud-hub/hub_config_file.cc:
// HubConfigFile::Parse, ApplyTo, ValidateHubRunSettings), what `ferry-hub
// run --config` does with the file. The input is the YAML text. Checks,
// beyond "no crash, no UB":
//  - no exception escapes (yaml-cpp throws; the hub must not die of it);
//  - errors are INVALID_ARGUMENT and one line of printable ASCII (the
//    document's bytes are quoted, never echoed raw); those of the file
//    start with the origin ("fuzz.yaml:"), those of the settings with the
//    setting's flag name ("max-sessions: ");
//  - no allocation is larger than 4 MiB;
//  - flags beat the file: with every other flag given, ApplyTo succeeds
//    too, and sets exactly the other settings to the file's values; with
//    every flag given it changes nothing;
//  - accepted settings keep the ranges configs/hub.yaml documents (sessions,
//    threads, frame, window and body sizes, durations, throttle).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "cloud-hub/hub_config_file.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {
namespace {

using hub::HubConfigFile;
using hub::HubRunConfig;
using hub::HubRunSettings;

bool PrintableLine(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

void CheckError(const Status& s, bool from_file) {
  if (!PrintableLine(s.message())) {
    std::fprintf(stderr, "message: %s\n", HexEncode(AsBytes(s.message())).c_str());
  }
  FUZZ_CHECK(s.code() == StatusCode::kInvalidArgument);
  FUZZ_CHECK(PrintableLine(s.message()));
  if (from_file) {
    FUZZ_CHECK(s.message().rfind("fuzz.yaml:", 0) == 0);
    return;
  }
  static const char* const kSettings[] = {"listen: ",
                                          "max-sessions: ",
                                          "io-threads: ",
                                          "max-frame-bytes: ",
                                          "upload-window-bytes: ",
                                          "max-http-body-bytes: ",
                                          "shutdown-grace: ",
                                          "session-idle-timeout: ",
                                          "auth-max-failures: ",
                                          "auth-failure-window: ",
                                          "auth-max-addresses: ",
                                          "log-level: ",
                                          "log-format: "};
  FUZZ_CHECK(std::any_of(std::begin(kSettings), std::end(kSettings),
                         [&](const char* prefix) { return s.message().rfind(prefix, 0) == 0; }));
}

// The fields of the settings, in the order of HubRunSettings, as text.
std::vector<std::string> Fields(const HubRunSettings& s) {
  return {s.listen,
          s.data_dir,
          s.public_url,
          s.log_format,
          s.log_level,
          std::to_string(s.max_sessions),
          std::to_string(s.io_threads),
          s.shutdown_grace,
          s.session_idle_timeout,
          std::to_string(s.max_frame_bytes),
          std::to_string(s.upload_window_bytes),
          std::to_string(s.max_http_body_bytes),
          std::to_string(s.auth_max_failures),
          s.auth_failure_window,
          std::to_string(s.auth_max_addresses)};
}

// The flag of each field of Fields(), in the same order.
constexpr const char* kFlags[] = {"--listen",
                                  "--data-dir",
                                  "--public-url",
                                  "--log-format",
                                  "--log-level",
                                  "--max-sessions",
                                  "--io-threads",
                                  "--shutdown-grace",
                                  "--session-idle-timeout",
                                  "--max-frame-bytes",
                                  "--upload-window-bytes",
                                  "--max-http-body-bytes",
                                  "--auth-max-failures",
                                  "--auth-failure-window",
                                  "--auth-max-addresses"};

void CheckConfig(const HubRunConfig& run) {
  const hub::HubConfig& c = run.hub;
  FUZZ_CHECK(c.max_sessions >= 1 && c.max_sessions <= 100000);
  FUZZ_CHECK(c.io_threads >= 1 && c.io_threads <= 64);
  FUZZ_CHECK(c.max_frame_bytes >= (64u << 10) && c.max_frame_bytes <= (64u << 20));
  FUZZ_CHECK(c.upload_window_bytes >= c.max_frame_bytes && c.upload_window_bytes <= (1u << 30));
  FUZZ_CHECK(c.max_http_body_bytes >= 1024 && c.max_http_body_bytes <= (64u << 20));
  FUZZ_CHECK(c.session_idle_timeout >= std::chrono::seconds(1) &&
             c.session_idle_timeout <= std::chrono::hours(366 * 24));
  FUZZ_CHECK(run.shutdown_grace >= std::chrono::seconds(1) &&
             run.shutdown_grace <= std::chrono::hours(366 * 24));
  FUZZ_CHECK(c.auth_throttle.max_failures <= 1'000'000);
  FUZZ_CHECK(c.auth_throttle.window >= std::chrono::seconds(1) &&
             c.auth_throttle.window <= std::chrono::hours(24));
  FUZZ_CHECK(c.auth_throttle.max_addresses >= 16 && c.auth_throttle.max_addresses <= 1'000'000);
}

void Run(std::string_view text) {
  std::optional<Result<HubConfigFile>> file;
  const size_t largest =
      LargestAllocation::During([&] { file.emplace(HubConfigFile::Parse(text, "fuzz.yaml")); });
  FUZZ_CHECK(largest <= (size_t{4} << 20));
  if (!file->ok()) return CheckError(file->status(), true);

  HubRunSettings settings;
  const Status applied = (*file)->ApplyTo(settings, [](std::string_view) { return false; });
  if (!applied.ok()) return CheckError(applied, true);

  // Flags beat the file: every other one given, then all of them.
  const std::vector<std::string> defaults = Fields(HubRunSettings());
  const std::vector<std::string> from_file = Fields(settings);
  HubRunSettings half;
  const Status half_applied = (*file)->ApplyTo(half, [](std::string_view flag) {
    for (size_t i = 0; i < std::size(kFlags); i += 2) {
      if (flag == kFlags[i]) return true;
    }
    return false;
  });
  FUZZ_CHECK(half_applied.ok());
  const std::vector<std::string> half_fields = Fields(half);
  for (size_t i = 0; i < half_fields.size(); ++i) {
    FUZZ_CHECK(half_fields[i] == (i % 2 == 0 ? defaults[i] : from_file[i]));
  }
  HubRunSettings none;
  FUZZ_CHECK((*file)->ApplyTo(none, [](std::string_view) { return true; }).ok());
  FUZZ_CHECK(Fields(none) == defaults);

  Result<HubRunConfig> run = hub::ValidateHubRunSettings(settings);
  if (!run.ok()) return CheckError(run.status(), false);
  CheckConfig(*run);
}

}  // namespace
}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ferry::fuzz::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exception escaped: %s\n", e.what());
    std::abort();
  }
  return 0;
}
