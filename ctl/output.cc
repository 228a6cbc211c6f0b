#include "ctl/output.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "core/clock.h"
#include "ctl/format.h"

namespace ferry::ctl {

namespace json = boost::json;

namespace {

// UTF-8 aware width: counts code points, not bytes (good enough for names).
size_t Width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

void EmitYaml(YAML::Emitter& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      out << YAML::Null;
      break;
    case json::kind::bool_:
      out << v.get_bool();
      break;
    case json::kind::int64:
      out << v.get_int64();
      break;
    case json::kind::uint64:
      out << v.get_uint64();
      break;
    case json::kind::double_:
      out << v.get_double();
      break;
    case json::kind::string: {
      const std::string s(v.get_string());
      // Keep strings that look like other YAML types (numbers, booleans,
      // nulls) strings when read back.
      YAML::Node probe;
      bool plain = true;
      try {
        probe = YAML::Load(s);
        plain = probe.IsScalar() && probe.Tag() == "?" && probe.Scalar() == s;
        if (plain) {
          int64_t i;
          double d;
          bool b;
          plain = !YAML::convert<int64_t>::decode(probe, i) &&
                  !YAML::convert<double>::decode(probe, d) &&
                  !YAML::convert<bool>::decode(probe, b) && s != "~" && s != "null" &&
                  s != "Null" && s != "NULL";
        }
      } catch (const YAML::Exception&) {
        plain = false;
      }
      if (plain) {
        out << s;
      } else {
        out << YAML::DoubleQuoted << s;
      }
      break;
    }
    case json::kind::array:
      out << YAML::BeginSeq;
      for (const json::value& e : v.get_array()) EmitYaml(out, e);
      out << YAML::EndSeq;
      break;
    case json::kind::object:
      out << YAML::BeginMap;
      for (const auto& kv : v.get_object()) {
        out << YAML::Key << std::string(kv.key()) << YAML::Value;
        EmitYaml(out, kv.value());
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

Result<OutputFormat> ParseOutputFormat(const std::string& text) {
  if (text == "table" || text.empty()) return OutputFormat::kTable;
  if (text == "json") return OutputFormat::kJson;
  if (text == "yaml") return OutputFormat::kYaml;
  return InvalidArgumentError("--output must be table, json or yaml, got '" + text + "'");
}

void PrintTable(const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size(), 0);
  for (size_t i = 0; i < headers.size(); ++i) widths[i] = Width(headers[i]);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], Width(row[i].empty() ? "-" : row[i]));
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < widths.size(); ++i) {
      std::string c = i < cells.size() ? cells[i] : "";
      if (c.empty()) c = "-";
      out += c;
      if (i + 1 < widths.size()) out += std::string(widths[i] - Width(c) + 2, ' ');
    }
    std::cout << out << "\n";
  };
  std::vector<std::string> upper = headers;
  for (auto& h : upper) {
    for (char& c : h) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  line(upper);
  for (const auto& row : rows) line(row);
}

void PrintValue(const json::value& v, OutputFormat format) {
  if (format == OutputFormat::kYaml) {
    YAML::Emitter out;
    EmitYaml(out, v);
    std::cout << out.c_str() << "\n";
  } else {
    std::cout << json::serialize(v) << "\n";
  }
}

std::string Cell(const json::value* v) {
  if (v == nullptr || v->is_null()) return "-";
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_bool()) return v->get_bool() ? "yes" : "no";
  return json::serialize(*v);
}

namespace {
bool ProgressWanted() {
  if (std::getenv("FERRY_NO_PROGRESS") != nullptr) return false;
  return ::isatty(STDERR_FILENO) == 1;
}
}  // namespace

Progress::Progress(std::string what, uint64_t total_bytes)
    : what_(std::move(what)),
      total_(total_bytes),
      enabled_(ProgressWanted()),
      start_ns_(Clock::Real()->MonotonicNanos()) {}

Progress::~Progress() { Finish(); }

void Progress::Add(uint64_t bytes) {
  done_.fetch_add(bytes, std::memory_order_relaxed);
  if (enabled_) Draw(false);
}

void Progress::Draw(bool final) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  const int64_t now = Clock::Real()->MonotonicNanos();
  if (!final && now - last_draw_ns_ < 200'000'000) return;
  last_draw_ns_ = now;
  const uint64_t done = std::min(done_.load(std::memory_order_relaxed), total_);
  const double secs = static_cast<double>(now - start_ns_) / 1e9;
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  std::string line = what_ + "  ";
  if (total_ > 0) {
    line += std::to_string(done * 100 / total_) + "% ";
  }
  line += HumanBytes(done) + " / " + HumanBytes(total_) + "  " +
          HumanBytes(static_cast<uint64_t>(rate)) + "/s";
  if (rate > 0 && total_ > done) {
    line += "  ETA " +
            std::to_string(static_cast<uint64_t>(static_cast<double>(total_ - done) / rate + 0.5)) +
            "s";
  }
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
}

void Progress::Finish() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

}  // namespace ferry::ctl
