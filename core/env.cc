#include "core/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/sodium.h"

namespace ferry {
namespace {

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Append(ByteView data) override {
    const uint8_t* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, "write " + path_);
      }
      p += n;
      left -= static_cast<size_t>(n);
      size_ += static_cast<uint64_t>(n);
    }
    return OkStatus();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) return ErrnoToStatus(errno, "fdatasync " + path_);
    return OkStatus();
  }

  Status Close() override {
    if (fd_ < 0) return OkStatus();
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return ErrnoToStatus(errno, "close " + path_);
    return OkStatus();
  }

  uint64_t Size() const override { return size_; }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  int fd_;
  uint64_t size_ = 0;
};

class PosixRandomAccessFile final : public RandomAccessFile {
 public:
  PosixRandomAccessFile(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }

  Status Read(uint64_t offset, size_t n, Bytes& out) const override {
    if (offset > size_ || n > size_ - offset) {
      return DataLossError(path_ + ": read of " + std::to_string(n) + " bytes at offset " +
                           std::to_string(offset) + " runs past the end (" + std::to_string(size_) +
                           " bytes)");
    }
    out.resize(n);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, out.data() + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, "pread " + path_);
      }
      if (r == 0) return DataLossError(path_ + ": unexpected end of file");
      done += static_cast<size_t>(r);
    }
    return OkStatus();
  }
  uint64_t Size() const override { return size_; }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  int fd_;
  uint64_t size_;
};

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                        mode_t mode) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return ErrnoToStatus(errno, "create " + path);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, "open " + path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      Status s = ErrnoToStatus(errno, "stat " + path);
      ::close(fd);
      return s;
    }
    return std::unique_ptr<RandomAccessFile>(
        new PosixRandomAccessFile(path, fd, static_cast<uint64_t>(st.st_size)));
  }

  Result<Bytes> ReadFile(const std::string& path, uint64_t max_size) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, "open " + path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      Status s = ErrnoToStatus(errno, "stat " + path);
      ::close(fd);
      return s;
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return InvalidArgumentError(path + " is not a regular file");
    }
    if (static_cast<uint64_t>(st.st_size) > max_size) {
      ::close(fd);
      return ResourceExhaustedError(path + " is " + std::to_string(st.st_size) +
                                    " bytes, more than the limit of " + std::to_string(max_size));
    }
    Bytes out(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < out.size()) {
      ssize_t r = ::read(fd, out.data() + done, out.size() - done);
      if (r < 0) {
        if (errno == EINTR) continue;
        Status s = ErrnoToStatus(errno, "read " + path);
        ::close(fd);
        return s;
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    ::close(fd);
    out.resize(done);
    return out;
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoToStatus(errno, "rename " + from + " -> " + to);
    }
    return OkStatus();
  }

  Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, "open directory " + dir);
    Status s;
    if (::fsync(fd) != 0) s = ErrnoToStatus(errno, "fsync directory " + dir);
    ::close(fd);
    return s;
  }

  Status CreateDirs(const std::string& path, mode_t mode) override {
    if (path.empty()) return InvalidArgumentError("empty directory path");
    std::string cur;
    size_t pos = 0;
    while (pos <= path.size()) {
      size_t next = path.find('/', pos);
      if (next == std::string::npos) next = path.size();
      cur = path.substr(0, next);
      pos = next + 1;
      if (cur.empty()) continue;  // leading '/'
      if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
        return ErrnoToStatus(errno, "mkdir " + cur);
      }
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat " + path);
    if (!S_ISDIR(st.st_mode)) return AlreadyExistsError(path + " exists and is not a directory");
    return OkStatus();
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoToStatus(errno, "unlink " + path);
    return OkStatus();
  }

  Result<bool> FileExists(const std::string& path) override {
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT) return false;
    return ErrnoToStatus(errno, "stat " + path);
  }

  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return ErrnoToStatus(errno, "opendir " + path);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return ErrnoToStatus(err, "readdir " + path);
    return names;
  }

  Result<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat " + path);
    return static_cast<uint64_t>(st.st_size);
  }
};

}  // namespace

Env* Env::Default() {
  static PosixEnv env;
  return &env;
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

Status WriteFileAtomic(Env& env, const std::string& path, ByteView data, mode_t mode) {
  const std::string tmp =
      path + ".tmp-" + HexEncode(sodium::RandomArray<8>());  // unique: concurrent writers
  {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, env.NewWritableFile(tmp, mode));
    Status s = f->Append(data);
    if (s.ok()) s = f->Sync();
    Status c = f->Close();
    if (s.ok()) s = c;
    if (!s.ok()) {
      env.RemoveFile(tmp).IgnoreError();
      return s;
    }
  }
  if (Status s = env.RenameFile(tmp, path); !s.ok()) {
    env.RemoveFile(tmp).IgnoreError();
    return s;
  }
  return env.SyncDir(DirName(path));
}

}  // namespace ferry
