#include "tests/testing/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>

namespace ferry::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ferry-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed: " << std::strerror(errno);
    std::abort();
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (std::getenv("FERRY_KEEP_TEST_DIRS") == nullptr) RemoveTree(path_);
}

void RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    ::chmod(path.c_str(), 0700);
    if (DIR* d = ::opendir(path.c_str())) {
      std::vector<std::string> names;
      while (struct dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
      }
      ::closedir(d);
      for (const auto& n : names) RemoveTree(path + "/" + n);
    }
    ::rmdir(path.c_str());
  } else {
    ::unlink(path.c_str());
  }
}

Bytes SeededBytes(uint64_t seed, size_t size) {
  std::mt19937_64 rng(seed);
  Bytes out(size);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  uint64_t v = rng();
  for (; i < size; ++i, v >>= 8) out[i] = static_cast<uint8_t>(v);
  return out;
}

Bytes CompressibleBytes(uint64_t seed, size_t size, double ratio) {
  // Runs of random bytes (incompressible) interleaved with runs of a repeated
  // byte (compressible), in the proportion asked for.
  std::mt19937_64 rng(seed);
  Bytes out;
  out.reserve(size);
  while (out.size() < size) {
    size_t run = 64 + rng() % 512;
    size_t random_part = static_cast<size_t>(static_cast<double>(run) * ratio);
    for (size_t i = 0; i < random_part && out.size() < size; ++i) {
      out.push_back(static_cast<uint8_t>(rng()));
    }
    uint8_t fill = static_cast<uint8_t>(rng());
    for (size_t i = random_part; i < run && out.size() < size; ++i) out.push_back(fill);
  }
  return out;
}

void WriteFileOrDie(const std::string& path, ByteView data, int mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << "open " << path << ": " << std::strerror(errno);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    ASSERT_GT(n, 0) << "write " << path << ": " << std::strerror(errno);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

Bytes ReadFileOrDie(const std::string& path) {
  Bytes out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << "open " << path << ": " << std::strerror(errno);
  if (fd < 0) return out;
  uint8_t buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

void MakeDirsOrDie(const std::string& path) {
  std::string cur;
  for (size_t pos = 0; pos <= path.size();) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    cur = path.substr(0, next);
    pos = next + 1;
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      ADD_FAILURE() << "mkdir " << cur << ": " << std::strerror(errno);
      return;
    }
  }
}

std::string BinDir() {
  const char* dir = std::getenv("FERRY_BIN_DIR");
  if (dir == nullptr || *dir == '\0') {
    ADD_FAILURE() << "FERRY_BIN_DIR is not set (run the tests through ctest)";
    return ".";
  }
  return dir;
}

::testing::AssertionResult HasCode(const Status& s, StatusCode want) {
  if (s.code() == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "expected " << StatusCodeName(want) << ", got " << s.ToString();
}

std::string SourceDir() {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src != nullptr && *src != '\0') return src;
  const std::string here = __FILE__;  // <repo>/tests/testing/test_util.cc
  return here.substr(0, here.rfind('/')) + "/../..";
}

namespace {

void DrainInto(int fd, std::string& out, bool& open) {
  char buf[65536];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  if (n > 0) {
    out.append(buf, static_cast<size_t>(n));
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    open = false;
  }
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                         const std::string& stdin_text, int timeout_s) {
  CommandResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0 ||
      ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    std::abort();
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  for (const auto& e : env) env_strings.push_back(e);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::execve(args[0], args.data(), envp.data());
    std::fprintf(stderr, "execve %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  // Feed stdin, then close it so the child sees EOF.
  size_t fed = 0;
  while (fed < stdin_text.size()) {
    ssize_t n = ::write(in_pipe[1], stdin_text.data() + fed, stdin_text.size() - fed);
    if (n <= 0) break;
    fed += static_cast<size_t>(n);
  }
  ::close(in_pipe[1]);

  bool out_open = true, err_open = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (out_open || err_open) {
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      ::kill(pid, SIGKILL);
      ADD_FAILURE() << argv[0] << " ran past " << timeout_s << " s and was killed";
      break;
    }
    int r = ::poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000)));
    if (r < 0 && errno != EINTR) break;
    if (out_open && (fds[0].revents & (POLLIN | POLLHUP)))
      DrainInto(out_pipe[0], result.out, out_open);
    if (err_open && (fds[1].revents & (POLLIN | POLLHUP)))
      DrainInto(err_pipe[0], result.err, err_open);
  }
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

namespace {

struct Entry {
  struct stat st;
  std::string target;
  Bytes content;
  std::map<std::string, std::string> xattrs;
};

std::map<std::string, std::string> ReadXattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  char names[65536];
  ssize_t n = ::llistxattr(path.c_str(), names, sizeof(names));
  if (n <= 0) return out;
  for (ssize_t i = 0; i < n;) {
    std::string name(names + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (name.rfind("user.", 0) != 0) continue;
    char value[65536];
    ssize_t v = ::lgetxattr(path.c_str(), name.c_str(), value, sizeof(value));
    if (v >= 0) out[name] = std::string(value, static_cast<size_t>(v));
  }
  return out;
}

void Collect(const std::string& root, const std::string& rel, std::map<std::string, Entry>& out) {
  std::string path = rel.empty() ? root : root + "/" + rel;
  Entry e;
  if (::lstat(path.c_str(), &e.st) != 0) return;
  e.xattrs = ReadXattrs(path);
  if (S_ISLNK(e.st.st_mode)) {
    char buf[4096];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
    if (n > 0) e.target.assign(buf, static_cast<size_t>(n));
  } else if (S_ISREG(e.st.st_mode)) {
    e.content = ReadFileOrDie(path);
  }
  const bool is_dir = S_ISDIR(e.st.st_mode);
  out[rel] = std::move(e);
  if (!is_dir) return;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (struct dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) Collect(root, rel.empty() ? n : rel + "/" + n, out);
}

std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

std::string DiffTrees(const std::string& a, const std::string& b, const CompareOptions& opts) {
  std::map<std::string, Entry> ea, eb;
  Collect(a, "", ea);
  Collect(b, "", eb);
  // Hard-link structure: paths that share an inode on one side must share on the other.
  std::map<std::pair<dev_t, ino_t>, std::string> first_a, first_b;
  for (const auto& [rel, x] : ea) {
    auto it = eb.find(rel);
    std::string where = "'" + Printable(rel) + "'";
    if (it == eb.end()) return where + " is missing from " + b;
    const Entry& y = it->second;
    if ((x.st.st_mode & S_IFMT) != (y.st.st_mode & S_IFMT)) return where + ": type differs";
    if (!rel.empty() && (x.st.st_mode & 07777) != (y.st.st_mode & 07777)) {
      return where + ": mode differs";
    }
    if (x.target != y.target) return where + ": symlink target differs";
    if (x.content != y.content) return where + ": content differs";
    if (S_ISREG(x.st.st_mode) && x.st.st_size != y.st.st_size) return where + ": size differs";
    if (opts.xattrs && x.xattrs != y.xattrs) return where + ": xattrs differ";
    if (opts.ownership && (x.st.st_uid != y.st.st_uid || x.st.st_gid != y.st.st_gid)) {
      return where + ": ownership differs";
    }
    if (opts.mtimes && !rel.empty() && !S_ISLNK(x.st.st_mode) &&
        (x.st.st_mtim.tv_sec != y.st.st_mtim.tv_sec ||
         x.st.st_mtim.tv_nsec != y.st.st_mtim.tv_nsec)) {
      return where + ": mtime differs";
    }
    if (S_ISREG(x.st.st_mode) && x.st.st_nlink > 1) {
      auto ka = std::make_pair(x.st.st_dev, x.st.st_ino);
      auto kb = std::make_pair(y.st.st_dev, y.st.st_ino);
      auto [ia, new_a] = first_a.emplace(ka, rel);
      auto [ib, new_b] = first_b.emplace(kb, rel);
      if (new_a != new_b || ia->second != ib->second)
        return where + ": hard-link structure differs";
    }
  }
  for (const auto& [rel, y] : eb) {
    if (ea.find(rel) == ea.end()) return "'" + Printable(rel) + "' is extra in " + b;
  }
  return "";
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string FieldAfter(const std::string& text, const std::string& label) {
  const size_t at = text.find(label);
  if (at == std::string::npos) return "";
  const size_t start = at + label.size();
  const size_t end = text.find('\n', start);
  return Trim(text.substr(start, end - start));
}

double MetricValue(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::atof(text.c_str() + at + name.size() + 2);
}

HubInit InitHub(const std::string& data_dir) {
  CommandResult init = RunCommand({BinDir() + "/ferry-hub", "init", "--data-dir", data_dir});
  HubInit out;
  if (init.exit_code != 0) {
    ADD_FAILURE() << "ferry-hub init failed: " << init.err << init.out;
    return out;
  }
  out.fingerprint = FieldAfter(init.out, "hub fingerprint (agents pin this): ");
  out.admin_token = FieldAfter(init.out, "admin token (shown once; keep it secret): ");
  EXPECT_EQ(out.fingerprint.rfind("fry1:", 0), 0u) << init.out;
  EXPECT_FALSE(out.admin_token.empty()) << init.out;
  return out;
}

}  // namespace ferry::testing
