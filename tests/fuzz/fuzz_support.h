// What several fuzz targets need besides their input format (fuzz_formats.h):
// the largest allocation made while parsing, and a scratch directory.
// For the targets only (sanitizer runtime); header-only.
#pragma once

#include <sanitizer/allocator_interface.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/bytes.h"
#include "tests/fuzz/fuzz_formats.h"

namespace ferry::fuzz {

// The largest single allocation while a function runs, through the
// sanitizer allocator's malloc hook (installed on first use).
class LargestAllocation {
 public:
  template <typename F>
  static size_t During(F&& f) {
    static const bool installed = [] {
      __sanitizer_install_malloc_and_free_hooks(MallocHook, FreeHook);
      return true;
    }();
    (void)installed;
    largest_ = 0;
    tracking_ = true;
    f();
    tracking_ = false;
    return largest_;
  }

 private:
  static void MallocHook(const volatile void*, size_t size) {
    if (tracking_) largest_ = std::max(largest_, size);
  }
  static void FreeHook(const volatile void*) {}
  static inline bool tracking_ = false;
  static inline size_t largest_ = 0;
};

// A directory for the files a target writes: created once per process on
// /dev/shm (else $TMPDIR, else /tmp), removed at exit.
inline const std::string& ScratchDir() {
  // Never destroyed: the exit handler below still needs it.
  static const std::string* dir = [] {
    std::string base = "/dev/shm";
    if (access(base.c_str(), W_OK) != 0) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp && *tmp ? tmp : "/tmp";
    }
    std::string pattern = base + "/ferry-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return new std::string(pattern);
  }();
  return *dir;
}

inline bool SameBytes(ByteView a, ByteView b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

inline void WriteFile(const std::string& path, ByteView data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(f != nullptr);
  FUZZ_CHECK(data.empty() || std::fwrite(data.data(), 1, data.size(), f) == data.size());
  FUZZ_CHECK(std::fclose(f) == 0);
}

}  // namespace ferry::fuzz
