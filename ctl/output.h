// How ferryctl prints: tables for people, JSON or YAML for scripts
// (--output table|json|yaml), and a progress line on a terminal.
//
// Thread-safety: Progress::Add may be called from any thread; the rest is
// for the command's own thread.
#pragma once

#include <atomic>
#include <boost/json/value.hpp>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"

namespace ferry::ctl {

enum class OutputFormat { kTable, kJson, kYaml };

// "table" | "json" | "yaml" (case-sensitive); kInvalidArgument otherwise.
Result<OutputFormat> ParseOutputFormat(const std::string& text);

// Columns aligned with two spaces, headers in capitals, to stdout. An empty
// cell prints as "-".
void PrintTable(const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& rows);

// The value as one line of JSON, or as a YAML document, to stdout.
void PrintValue(const boost::json::value& v, OutputFormat format);

// A JSON value as text for a table cell: strings bare, null as "-".
std::string Cell(const boost::json::value* v);

// Progress of a long transfer on stderr: "restore  42% 12.3 MiB / 29.0 MiB
// 10.2 MiB/s ETA 2s", redrawn at most 5 times a second, only when stderr is a
// terminal (and FERRY_NO_PROGRESS is unset); otherwise silent, and the
// command prints one summary line at the end.
class Progress {
 public:
  Progress(std::string what, uint64_t total_bytes);
  ~Progress();
  void Add(uint64_t bytes);
  // Clears the line (call before printing the summary).
  void Finish();
  bool enabled() const { return enabled_; }

 private:
  void Draw(bool final);
  const std::string what_;
  const uint64_t total_;
  const bool enabled_;
  const int64_t start_ns_;
  std::atomic<uint64_t> done_{0};
  std::mutex mu_;
  int64_t last_draw_ns_ = 0;  // guarded by mu_
  bool finished_ = false;     // guarded by mu_
};

}  // namespace ferry::ctl
