// Env: the seam through which Ferry's durable state touches the filesystem.
//
// Stores, catalogs and key files write through an Env so that tests can
// inject faults (a failing fsync, a full disk, lost unsynced writes) without
// touching the code under test. Env::Default() is the POSIX implementation.
// Volume capture and restore walk user trees with POSIX *at() calls directly:
// those are the data, not Ferry's state.
//
// Errors: kNotFound, kAlreadyExists, kPermissionDenied, kResourceExhausted
// (ENOSPC/EDQUOT), kDataLoss (EIO, short reads of data that must be there).
// Thread-safety: Env is thread-safe; file objects are thread-compatible,
// except RandomAccessFile::Read which is thread-safe (pread).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/status.h"

namespace ferry {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(ByteView data) = 0;
  // fdatasync(2). A failed Sync means the file's content is unknown: callers
  // must not retry and then treat the data as durable.
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
  virtual uint64_t Size() const = 0;
  virtual const std::string& path() const = 0;
};

class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads exactly n bytes at offset into out (resized). kDataLoss if the file
  // ends first.
  virtual Status Read(uint64_t offset, size_t n, Bytes& out) const = 0;
  virtual uint64_t Size() const = 0;
  virtual const std::string& path() const = 0;
};

class Env {
 public:
  virtual ~Env() = default;
  static Env* Default();

  // Creates a new file; kAlreadyExists if it exists.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                                mode_t mode = 0644) = 0;
  virtual Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) = 0;
  // Reads a whole file; kResourceExhausted if it is larger than max_size.
  virtual Result<Bytes> ReadFile(const std::string& path, uint64_t max_size) = 0;
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // fsync(2) of a directory, making renames and creations in it durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  // mkdir -p; existing directories are fine.
  virtual Status CreateDirs(const std::string& path, mode_t mode = 0755) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  virtual Result<bool> FileExists(const std::string& path) = 0;
  // Names in a directory, without "." and "..", unsorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
};

// Replaces `path` atomically: writes a temporary file beside it, fsyncs it,
// renames it over `path`, then fsyncs the directory. After a crash, `path`
// holds either the old or the new content, never a mix.
Status WriteFileAtomic(Env& env, const std::string& path, ByteView data, mode_t mode = 0644);

// The directory part of a path ("a/b/c" -> "a/b", "c" -> ".").
std::string DirName(const std::string& path);
std::string JoinPath(const std::string& a, const std::string& b);

}  // namespace ferry
