// Helpers shared by Ferry's tests: temporary directories, seeded random data,
// writing files, and running Ferry's binaries as real processes.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/bytes.h"
#include "core/status.h"

namespace ferry::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its content on
// destruction unless FERRY_KEEP_TEST_DIRS is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Removes a tree (rm -rf), making directories writable first. Aborts the test on failure.
void RemoveTree(const std::string& path);

// gtest: `s` has code `want`; the failure message shows the status it has.
::testing::AssertionResult HasCode(const Status& s, StatusCode want);

// Deterministic bytes from a seed.
Bytes SeededBytes(uint64_t seed, size_t size);
// Bytes that LZ4 compresses to roughly `ratio` of their size (0 < ratio <= 1).
Bytes CompressibleBytes(uint64_t seed, size_t size, double ratio);

void WriteFileOrDie(const std::string& path, ByteView data, int mode = 0644);
Bytes ReadFileOrDie(const std::string& path);
void MakeDirsOrDie(const std::string& path);

// `s` without trailing newlines and spaces.
std::string Trim(std::string s);
// The rest of the line after `label` in `text` (trimmed), or "" when absent:
// for reading values out of a command's output.
std::string FieldAfter(const std::string& text, const std::string& label);
// The value of an unlabelled metric in Prometheus text, or -1 when absent.
double MetricValue(const std::string& text, const std::string& name);

// `ferry-hub init --data-dir DIR` (the built binary): the fingerprint and
// the first admin token it printed, both empty (and the test failed) if it
// did not succeed.
struct HubInit {
  std::string fingerprint;
  std::string admin_token;
};
HubInit InitHub(const std::string& data_dir);

// The directory holding Ferry's built binaries (FERRY_BIN_DIR, set by CTest).
std::string BinDir();
// The repository root: $FERRY_SOURCE_DIR, else found from this file's path.
std::string SourceDir();

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with arguments, optional extra environment ("K=V")
// and stdin text; waits for it to exit. Aborts the test if it cannot start or
// runs past timeout_s.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env = {},
                         const std::string& stdin_text = "", int timeout_s = 300);

// Compares two trees: content, type, mode, symlink targets, mtimes (ns) and
// hard-link structure. Returns "" when equal, otherwise the first difference.
struct CompareOptions {
  bool mtimes = true;
  bool ownership = false;
  bool xattrs = true;
};
std::string DiffTrees(const std::string& a, const std::string& b, const CompareOptions& opts = {});

}  // namespace ferry::testing
