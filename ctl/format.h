// Human-readable figures for ferryctl's output.
#pragma once

#include <cstdint>
#include <string>

namespace ferry::ctl {

// 1536 -> "1.50 KiB"
std::string HumanBytes(uint64_t bytes);
// Unix ns -> "2026-11-29T10:54:52Z"
std::string IsoTime(int64_t unix_ns);
// a / b as "1.67x" ("-" when b is 0)
std::string Ratio(uint64_t a, uint64_t b);
// 1.234 -> "1.23 s"
std::string Seconds(double s);
// Thousands separators: 100000 -> "100,000"
std::string Count(uint64_t n);

}  // namespace ferry::ctl
