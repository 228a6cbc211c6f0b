// ferry-gen-dataset: deterministic synthetic datasets for the end-to-end
// benchmarks (bench/compare-peers.sh), and the "1% change" applied between two
// snapshots. `ferry-gen-dataset --help` and bench/README.md describe exactly
// what each mode writes.
//
// Determinism: every name, size and byte depends only on the arguments (mode,
// size, file count, compressible fraction, seed). Random numbers come from
// xoshiro256** seeded through SplitMix64, one independent stream per purpose,
// so a file's bytes depend on its own seed and not on the order of writing.
// Floating point (std::exp/std::log/std::cos from the C library) is used only
// to draw sizes, so the output is byte-identical on the same platform and C
// library; file and directory mtimes of generated trees are fixed values in
// 2024 so that a tar of the tree is identical too. `mutate` writes
// deterministic bytes but leaves the kernel's real mtimes on what it touches,
// like a real edit.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace ferry::bench {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// ---------------------------------------------------------------------------
// Random numbers.

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Derives an independent seed for sub-stream `stream` of `seed`.
uint64_t SubSeed(uint64_t seed, uint64_t stream) {
  uint64_t s = seed ^ (stream * 0xd1342543de82ef95ULL);
  SplitMix64(s);
  return SplitMix64(s);
}

// Stream ids: every purpose draws from its own stream.
enum Stream : uint64_t {
  kLayoutStream = 1,
  kVocabularyStream = 2,
  kKindStream = 3,
  kTimeStream = 4,
  kMutateStream = 5,
  kBlobStreamBase = 1'000'000,
  kFileStreamBase = 2'000'000,
  kEditStreamBase = 100'000'000,
};

// xoshiro256** (Blackman and Vigna), seeded through SplitMix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& word : s_) word = SplitMix64(seed);
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n); n > 0. Lemire's multiply-shift (bias < n / 2^64).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }
  // Uniform in [lo, hi].
  uint64_t Between(uint64_t lo, uint64_t hi) { return lo + Below(hi - lo + 1); }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return Uniform() < p; }
  // Standard normal (Box-Muller).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  // Log-uniform in [lo, hi].
  uint64_t LogUniform(uint64_t lo, uint64_t hi) {
    const double v = std::exp(
        std::log(static_cast<double>(lo)) +
        Uniform() * (std::log(static_cast<double>(hi)) - std::log(static_cast<double>(lo))));
    return std::clamp(static_cast<uint64_t>(v), lo, hi);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<uint64_t, 4> s_;
};

// A byte stream over an Rng: the n-th byte is the same however the stream is
// cut into reads.
class RandomBytes {
 public:
  explicit RandomBytes(uint64_t seed) : rng_(seed) {}

  void Fill(uint8_t* out, size_t n) {
    while (n > 0 && have_ > 0) {
      *out++ = static_cast<uint8_t>(word_);
      word_ >>= 8;
      --have_;
      --n;
    }
    while (n >= 8) {
      const uint64_t w = rng_.Next();
      std::memcpy(out, &w, 8);  // host order: see the static_assert below
      out += 8;
      n -= 8;
    }
    if (n > 0) {
      word_ = rng_.Next();
      have_ = 8;
      Fill(out, n);
    }
  }

 private:
  Rng rng_;
  uint64_t word_ = 0;
  int have_ = 0;
};

static_assert(std::endian::native == std::endian::little,
              "RandomBytes writes words in host order; outputs assume little-endian");

// ---------------------------------------------------------------------------
// Content kinds and text-like generators.

enum class Content { kProse, kLog, kCsv, kRecords, kRandom };

bool IsCompressible(Content c) { return c != Content::kRandom; }

// Picks a compressible flavour: prose 35%, log 30%, CSV 20%, records 15%.
Content PickCompressible(Rng& rng) {
  const uint64_t r = rng.Below(100);
  if (r < 35) return Content::kProse;
  if (r < 65) return Content::kLog;
  if (r < 85) return Content::kCsv;
  return Content::kRecords;
}

std::string_view PickExtension(Content c, Rng& rng) {
  static constexpr std::array<std::string_view, 2> kProse = {".txt", ".md"};
  static constexpr std::array<std::string_view, 8> kRandom = {".bin", ".jpg", ".gz",  ".zip",
                                                              ".pdf", ".so",  ".png", ".xz"};
  switch (c) {
    case Content::kProse:
      return kProse[rng.Below(kProse.size())];
    case Content::kLog:
      return ".log";
    case Content::kCsv:
      return ".csv";
    case Content::kRecords:
      return ".db";
    case Content::kRandom:
      return kRandom[rng.Below(kRandom.size())];
  }
  return "";
}

// The inverse of PickExtension, for `mutate`: what kind of bytes an edit writes.
Content ContentFromName(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends_with(".txt") || ends_with(".md")) return Content::kProse;
  if (ends_with(".log")) return Content::kLog;
  if (ends_with(".csv")) return Content::kCsv;
  if (ends_with(".db")) return Content::kRecords;
  return Content::kRandom;
}

// A vocabulary of pseudo-words and of phrases made of them, drawn with a
// skewed (Zipf-like) frequency so that text repeats words and word sequences
// about as much as real text, logs and tables do.
class Vocabulary {
 public:
  explicit Vocabulary(uint64_t seed) {
    // Letters roughly in English frequency.
    static constexpr std::string_view kLetters =
        "eeeeeeeeeeeettttttttaaaaaaaooooooiiiiiinnnnnnsssssshhhhhrrrrrddddllllcccuuummwwffggyyp"
        "pbbvkjxqz";
    Rng rng(SubSeed(seed, kVocabularyStream));
    words_.reserve(kWords);
    for (size_t i = 0; i < kWords; ++i) {
      const uint64_t len = 2 + rng.Below(4) + rng.Below(6);  // 2..10, mostly 4..7
      std::string w;
      for (uint64_t j = 0; j < len; ++j) w.push_back(kLetters[rng.Below(kLetters.size())]);
      words_.push_back(std::move(w));
    }
    phrases_.reserve(kPhrases);
    for (size_t i = 0; i < kPhrases; ++i) {
      const uint64_t len = 2 + rng.Below(5);  // 2..6 words
      std::string phrase;
      for (uint64_t j = 0; j < len; ++j) {
        if (j > 0) phrase += ' ';
        phrase += Word(rng);
      }
      phrases_.push_back(std::move(phrase));
    }
  }

  // A word; low indices (frequent words) are much more likely.
  const std::string& Word(Rng& rng) const { return words_[Skewed(rng, kWords)]; }
  // A word among the `n` most frequent ones.
  const std::string& CommonWord(Rng& rng, size_t n) const { return words_[rng.Below(n)]; }
  // A phrase of 2..6 words, skewed like words.
  const std::string& Phrase(Rng& rng) const { return phrases_[Skewed(rng, kPhrases)]; }

 private:
  static size_t Skewed(Rng& rng, size_t n) {
    const double u = rng.Uniform();
    return static_cast<size_t>(u * u * u * static_cast<double>(n));
  }
  static constexpr size_t kWords = 4096;
  static constexpr size_t kPhrases = 2048;
  std::vector<std::string> words_;
  std::vector<std::string> phrases_;
};

// Produces an endless, deterministic stream of one content kind.
class ContentStream {
 public:
  ContentStream(Content content, uint64_t seed, const Vocabulary& vocab)
      : content_(content), rng_(SubSeed(seed, 1)), random_(SubSeed(seed, 2)), vocab_(vocab) {
    log_time_ = 1704067200 + rng_.Below(300 * 86400);  // a moment in 2024
  }

  void Fill(uint8_t* out, size_t n) {
    if (content_ == Content::kRandom) {
      random_.Fill(out, n);
      return;
    }
    while (n > 0) {
      if (pos_ == line_.size()) {
        line_.clear();
        pos_ = 0;
        NextLine();
      }
      const size_t take = std::min(n, line_.size() - pos_);
      std::memcpy(out, line_.data() + pos_, take);
      pos_ += take;
      out += take;
      n -= take;
    }
  }

 private:
  void AppendNumber(uint64_t v) { line_ += std::to_string(v); }

  void NextLine() {
    switch (content_) {
      case Content::kProse:
        ProseLine();
        break;
      case Content::kLog:
        LogLine();
        break;
      case Content::kCsv:
        CsvLine();
        break;
      case Content::kRecords:
        Record();
        break;
      case Content::kRandom:
        break;
    }
  }

  // One to three sentences of 6..19 words, mostly stock phrases; sometimes a
  // paragraph break.
  void ProseLine() {
    const uint64_t sentences = 1 + rng_.Below(3);
    for (uint64_t s = 0; s < sentences; ++s) {
      const uint64_t words = 6 + rng_.Below(14);
      const size_t sentence_start = line_.size();
      for (uint64_t w = 0; w < words;) {
        if (rng_.Chance(0.6)) {
          line_ += vocab_.Phrase(rng_);
          w += 3;
        } else {
          line_ += vocab_.Word(rng_);
          w += 1;
        }
        if (w < words) line_ += rng_.Chance(0.08) ? ", " : " ";
      }
      line_[sentence_start] = static_cast<char>(line_[sentence_start] - 'a' + 'A');
      line_ += rng_.Chance(0.1) ? "? " : ". ";
    }
    line_.back() = '\n';
    if (rng_.Chance(0.2)) line_ += '\n';
  }

  // "2024-03-05T12:34:56.123Z INFO  vocab[1234]: words... req=1a2b3c4d bytes=123"
  void LogLine() {
    static constexpr std::array<std::string_view, 8> kLevels = {"INFO ", "INFO ", "INFO ", "INFO ",
                                                                "DEBUG", "DEBUG", "WARN ", "ERROR"};
    log_time_ += rng_.Below(3);
    const time_t t = static_cast<time_t>(log_time_);
    struct tm tm;
    gmtime_r(&t, &tm);
    const int millis = static_cast<int>(rng_.Below(1000));
    char stamp[96];
    std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    line_ += stamp;
    line_ += kLevels[rng_.Below(kLevels.size())];
    line_ += ' ';
    line_ += vocab_.CommonWord(rng_, 16);
    line_ += '[';
    AppendNumber(1000 + rng_.Below(8));
    line_ += "]: ";
    line_ += vocab_.Phrase(rng_);
    line_ += ' ';
    if (rng_.Chance(0.5)) {
      line_ += vocab_.Word(rng_);
      line_ += ' ';
    }
    // Arguments are drawn one statement at a time: their evaluation order
    // inside a call is unspecified, and the output must not depend on it.
    const uint64_t request = rng_.Next() & 0xffffffffULL;
    const uint64_t bytes = rng_.Below(100000);
    char tail[64];
    std::snprintf(tail, sizeof tail, "req=%08" PRIx64 " bytes=%" PRIu64 "\n", request, bytes);
    line_ += tail;
  }

  // id,date,name,category,quantity,price,status
  void CsvLine() {
    if (csv_row_ == 0) line_ += "id,date,name,category,quantity,price,status\n";
    ++csv_row_;
    const int month = static_cast<int>(1 + rng_.Below(12));
    const int day = static_cast<int>(1 + rng_.Below(28));
    char buf[128];
    std::snprintf(buf, sizeof buf, "%" PRIu64 ",2024-%02d-%02d,", csv_row_, month, day);
    line_ += buf;
    line_ += vocab_.Word(rng_);
    line_ += ',';
    line_ += vocab_.CommonWord(rng_, 24);
    const uint64_t quantity = rng_.Below(500);
    const uint64_t price = rng_.Below(10000);
    const int cents = static_cast<int>(rng_.Below(100));
    std::snprintf(buf, sizeof buf, ",%" PRIu64 ",%" PRIu64 ".%02d,", quantity, price, cents);
    line_ += buf;
    line_ += rng_.Chance(0.9) ? "ok\n" : "returned\n";
  }

  // A 64-byte fixed record: id, type, value, a zero-padded name, mostly-zero tail.
  void Record() {
    uint8_t rec[64] = {};
    ++record_id_;
    for (int i = 0; i < 8; ++i) rec[i] = static_cast<uint8_t>(record_id_ >> (8 * i));
    rec[8] = static_cast<uint8_t>(rng_.Below(6));
    const uint64_t value = rng_.Below(1000);
    rec[12] = static_cast<uint8_t>(value);
    rec[13] = static_cast<uint8_t>(value >> 8);
    const std::string& name = vocab_.Word(rng_);
    std::memcpy(rec + 16, name.data(), std::min<size_t>(name.size(), 16));
    random_.Fill(rec + 32, 4);
    line_.append(reinterpret_cast<const char*>(rec), sizeof rec);
  }

  Content content_;
  Rng rng_;
  RandomBytes random_;
  const Vocabulary& vocab_;
  std::string line_;
  size_t pos_ = 0;
  uint64_t log_time_ = 0;
  uint64_t csv_row_ = 0;
  uint64_t record_id_ = 0;
};

// ---------------------------------------------------------------------------
// Files.

Status WriteAll(int fd, const uint8_t* data, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "write " + path);
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return OkStatus();
}

Status PwriteAll(int fd, const uint8_t* data, size_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "pwrite " + path);
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return OkStatus();
}

Status PreadAll(int fd, uint8_t* data, size_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, data, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "pread " + path);
    }
    if (r == 0) return DataLossError("pread " + path + ": file shorter than expected");
    data += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return OkStatus();
}

// Closes a descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  Status Close(const std::string& path) {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return ErrnoToStatus(errno, "close " + path);
    return OkStatus();
  }

 private:
  int fd_;
};

// A pooled random blob that some binary files embed at arbitrary offsets, so
// that identical regions appear inside otherwise different files.
struct Blob {
  uint64_t seed;
  uint64_t size;
};

struct BlobPlacement {
  uint64_t offset;
  uint64_t length;  // a prefix of the blob
  size_t blob;
};

// Where a random file of `size` bytes embeds pooled blobs (decided by its
// content seed, so duplicates of a file embed the same ones).
std::vector<BlobPlacement> PlaceBlobs(uint64_t size, uint64_t content_seed,
                                      const std::vector<Blob>& pool) {
  std::vector<BlobPlacement> out;
  if (pool.empty() || size < 512 * kKiB) return out;
  Rng rng(SubSeed(content_seed, 3));
  if (!rng.Chance(0.35)) return out;
  const uint64_t count = 1 + rng.Below(3);
  const uint64_t slot = size / count;
  for (uint64_t i = 0; i < count; ++i) {
    const size_t blob = rng.Below(pool.size());
    const uint64_t length = std::min(pool[blob].size, slot / 2);
    const uint64_t offset = i * slot + rng.Below(slot - length + 1);
    out.push_back({offset, length, blob});
  }
  return out;
}

// Writes `size` bytes of `content` derived from `content_seed` to `fd`.
Status WriteContent(int fd, const std::string& path, uint64_t size, Content content,
                    uint64_t content_seed, const Vocabulary& vocab, const std::vector<Blob>& pool) {
  static constexpr size_t kBuffer = 1 << 20;
  std::vector<uint8_t> buf(kBuffer);
  ContentStream stream(content, content_seed, vocab);
  const std::vector<BlobPlacement> blobs = content == Content::kRandom
                                               ? PlaceBlobs(size, content_seed, pool)
                                               : std::vector<BlobPlacement>{};
  uint64_t pos = 0;
  for (const BlobPlacement& b : blobs) {
    // Stream bytes up to the blob, then the blob's prefix from its own stream.
    while (pos < b.offset) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kBuffer, b.offset - pos));
      stream.Fill(buf.data(), n);
      RETURN_IF_ERROR(WriteAll(fd, buf.data(), n, path));
      pos += n;
    }
    RandomBytes blob_bytes(pool[b.blob].seed);
    uint64_t left = b.length;
    while (left > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kBuffer, left));
      blob_bytes.Fill(buf.data(), n);
      RETURN_IF_ERROR(WriteAll(fd, buf.data(), n, path));
      left -= n;
      pos += n;
    }
  }
  while (pos < size) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kBuffer, size - pos));
    stream.Fill(buf.data(), n);
    RETURN_IF_ERROR(WriteAll(fd, buf.data(), n, path));
    pos += n;
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Dataset plans.

struct DirSpec {
  std::string path;  // relative to the root; "" is the root
  int depth = 0;
};

struct FileSpec {
  std::string path;  // relative to the root
  size_t dir = 0;
  uint64_t size = 0;
  Content content = Content::kRandom;
  uint64_t content_seed = 0;
  int64_t dup_of = -1;  // index of the file whose bytes this one repeats
  mode_t mode = 0644;
};

struct Plan {
  std::vector<DirSpec> dirs;
  std::vector<FileSpec> files;
  std::vector<Blob> blobs;
};

struct Options {
  std::string mode;
  std::string out;
  uint64_t size = 1 * kGiB;
  bool size_set = false;
  uint64_t files = 0;  // 0: the mode's default
  double compressible = 0.4;
  uint64_t seed = 1;
  double fraction = 0.01;
};

// Assigns content kinds so that about `fraction` of all bytes are
// compressible. Files are taken largest first (a duplicate group counts with
// all its copies); each goes to a class with probability proportional to how
// far that class is below its byte target, so large files cannot skew the
// split far and small ones still mix.
void AssignContent(Plan& plan, double fraction, Rng& rng) {
  std::vector<uint64_t> group_bytes(plan.files.size(), 0);
  for (size_t i = 0; i < plan.files.size(); ++i) {
    const FileSpec& f = plan.files[i];
    group_bytes[f.dup_of >= 0 ? static_cast<size_t>(f.dup_of) : i] += f.size;
  }
  std::vector<size_t> order;
  uint64_t total = 0;
  for (size_t i = 0; i < plan.files.size(); ++i) {
    if (plan.files[i].dup_of < 0) order.push_back(i);
    total += plan.files[i].size;
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return group_bytes[a] > group_bytes[b]; });
  double want_compressible = fraction * static_cast<double>(total);
  double want_random = static_cast<double>(total) - want_compressible;
  for (size_t i : order) {
    const double deficit_c = std::max(want_compressible, 0.0);
    const double deficit_r = std::max(want_random, 0.0);
    const double p = deficit_c + deficit_r > 0 ? deficit_c / (deficit_c + deficit_r) : fraction;
    const bool compressible = rng.Chance(p);
    plan.files[i].content = compressible ? PickCompressible(rng) : Content::kRandom;
    (compressible ? want_compressible : want_random) -= static_cast<double>(group_bytes[i]);
  }
  for (FileSpec& f : plan.files) {
    if (f.dup_of >= 0) f.content = plan.files[static_cast<size_t>(f.dup_of)].content;
  }
}

// Names each file "<word>-<index><ext>" (the index keeps names unique) and
// sets executable modes on a share of .so/.bin files.
void NameFiles(Plan& plan, const std::vector<std::string>& stems, Rng& rng) {
  for (size_t i = 0; i < plan.files.size(); ++i) {
    FileSpec& f = plan.files[i];
    const std::string_view ext = PickExtension(f.content, rng);
    const std::string& dir = plan.dirs[f.dir].path;
    f.path = (dir.empty() ? "" : dir + "/") + stems[i] + "-" + std::to_string(i) + std::string(ext);
    if (ext == ".so" || ext == ".bin") f.mode = 0755;
  }
}

// Mixed dataset: see --help.
Plan BuildMixedPlan(const Options& o, const Vocabulary& vocab) {
  constexpr double kSigma = 1.9;         // log-normal shape of file sizes
  constexpr double kEmptyShare = 0.004;  // empty files
  constexpr double kDupShare = 0.04;     // files that repeat another file
  constexpr size_t kFilesPerDir = 20;
  constexpr int kMaxDepth = 7;
  constexpr size_t kBlobs = 24;

  Plan plan;
  Rng rng(SubSeed(o.seed, kLayoutStream));
  const uint64_t nfiles = std::max<uint64_t>(o.files, 1);

  // Directory tree: each directory hangs under a random earlier one (a random
  // recursive tree, depth about ln(n)), capped at kMaxDepth.
  const size_t ndirs = std::max<size_t>(1, nfiles / kFilesPerDir);
  plan.dirs.push_back({"", 0});
  for (size_t d = 1; d < ndirs; ++d) {
    size_t parent = rng.Below(d);
    if (plan.dirs[parent].depth >= kMaxDepth) parent = 0;
    const std::string& base = plan.dirs[parent].path;
    plan.dirs.push_back(
        {(base.empty() ? "" : base + "/") + vocab.Word(rng) + "-" + std::to_string(d),
         plan.dirs[parent].depth + 1});
  }

  // Sizes: log-normal weights scaled to the requested total.
  std::vector<double> weight(nfiles);
  std::vector<std::string> stems(nfiles);
  plan.files.resize(nfiles);
  for (uint64_t i = 0; i < nfiles; ++i) {
    plan.files[i].dir = rng.Below(ndirs);
    stems[i] = vocab.Word(rng);
    weight[i] =
        rng.Chance(kEmptyShare) ? 0.0 : std::exp(kSigma * std::clamp(rng.Normal(), -4.0, 4.0));
    plan.files[i].content_seed = SubSeed(o.seed, kFileStreamBase + i);
  }
  // Duplicates copy an earlier file that is not empty, not itself a copy and
  // not among the 1% largest (so copies do not dominate the byte count).
  std::vector<double> sorted = weight;
  std::sort(sorted.begin(), sorted.end());
  const double p99 = sorted[static_cast<size_t>(0.99 * static_cast<double>(nfiles - 1))];
  for (uint64_t i = 1; i < nfiles; ++i) {
    if (!rng.Chance(kDupShare)) continue;
    for (int attempt = 0; attempt < 8; ++attempt) {
      const uint64_t src = rng.Below(i);
      if (plan.files[src].dup_of >= 0 || weight[src] == 0.0 || weight[src] > p99) continue;
      plan.files[i].dup_of = static_cast<int64_t>(src);
      plan.files[i].content_seed = plan.files[src].content_seed;
      weight[i] = weight[src];
      break;
    }
  }
  double sum = 0;
  for (double w : weight) sum += w;
  uint64_t assigned = 0;
  for (uint64_t i = 0; i < nfiles; ++i) {
    plan.files[i].size =
        sum > 0 ? static_cast<uint64_t>(std::floor(weight[i] / sum * static_cast<double>(o.size)))
                : 0;
    assigned += plan.files[i].size;
  }
  // The rounding remainder (< one byte per file) goes to the largest file that
  // is neither a copy nor copied.
  std::vector<bool> copied(nfiles, false);
  for (const FileSpec& f : plan.files) {
    if (f.dup_of >= 0) copied[static_cast<size_t>(f.dup_of)] = true;
  }
  int64_t largest = -1;
  for (uint64_t i = 0; i < nfiles; ++i) {
    if (plan.files[i].dup_of >= 0 || copied[i]) continue;
    if (largest < 0 || plan.files[i].size > plan.files[static_cast<size_t>(largest)].size) {
      largest = static_cast<int64_t>(i);
    }
  }
  if (largest >= 0 && assigned < o.size)
    plan.files[static_cast<size_t>(largest)].size += o.size - assigned;

  // The blob pool: random regions of 64 KiB..2 MiB shared by some binary files.
  for (size_t b = 0; b < kBlobs; ++b) {
    const uint64_t seed = SubSeed(o.seed, kBlobStreamBase + b);
    Rng size_rng(SubSeed(seed, 9));
    plan.blobs.push_back({seed, size_rng.LogUniform(64 * kKiB, 2 * kMiB)});
  }

  Rng kind_rng(SubSeed(o.seed, kKindStream));
  AssignContent(plan, o.compressible, kind_rng);
  NameFiles(plan, stems, kind_rng);
  return plan;
}

// Small-file dataset: see --help.
Plan BuildSmallPlan(const Options& o, const Vocabulary& vocab) {
  constexpr uint64_t kPerDir = 1000;
  constexpr uint64_t kDirsPerGroup = 10;
  constexpr double kDupShare = 0.03;

  Plan plan;
  Rng rng(SubSeed(o.seed, kLayoutStream));
  const uint64_t nfiles = std::max<uint64_t>(o.files, 1);
  const uint64_t ndirs = (nfiles + kPerDir - 1) / kPerDir;
  const uint64_t per_dir = (nfiles + ndirs - 1) / ndirs;
  plan.dirs.push_back({"", 0});
  for (uint64_t d = 0; d < ndirs; ++d) {
    char group[32];
    char leaf[32];
    std::snprintf(group, sizeof group, "g%03" PRIu64, d / kDirsPerGroup);
    std::snprintf(leaf, sizeof leaf, "d%05" PRIu64, d);
    if (d % kDirsPerGroup == 0) plan.dirs.push_back({group, 1});
    plan.dirs.push_back({std::string(group) + "/" + leaf, 2});
  }
  // Leaf directory index in plan.dirs for leaf d.
  auto leaf_index = [&](uint64_t d) { return 1 + d + d / kDirsPerGroup + 1; };

  std::vector<std::string> stems(nfiles);
  plan.files.resize(nfiles);
  for (uint64_t i = 0; i < nfiles; ++i) {
    FileSpec& f = plan.files[i];
    f.dir = leaf_index(i / per_dir);
    stems[i] = "f-" + vocab.Word(rng);
    f.size = rng.Between(1 * kKiB, 16 * kKiB);
    f.content_seed = SubSeed(o.seed, kFileStreamBase + i);
    if (i > 0 && rng.Chance(kDupShare)) {
      const uint64_t src = rng.Below(i);
      if (plan.files[src].dup_of < 0) {
        f.dup_of = static_cast<int64_t>(src);
        f.size = plan.files[src].size;
        f.content_seed = plan.files[src].content_seed;
      }
    }
  }
  Rng kind_rng(SubSeed(o.seed, kKindStream));
  for (FileSpec& f : plan.files) {
    f.content = kind_rng.Chance(o.compressible) ? PickCompressible(kind_rng) : Content::kRandom;
  }
  for (FileSpec& f : plan.files) {
    if (f.dup_of >= 0) f.content = plan.files[static_cast<size_t>(f.dup_of)].content;
  }
  NameFiles(plan, stems, kind_rng);
  return plan;
}

std::string Join(const std::string& root, const std::string& rel) {
  return rel.empty() ? root : root + "/" + rel;
}

Status SetTimes(const std::string& path, int64_t sec, int64_t nsec) {
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(sec);
  ts[0].tv_nsec = ts[1].tv_nsec = static_cast<long>(nsec);
  if (::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoToStatus(errno, "utimensat " + path);
  }
  return OkStatus();
}

// Refuses a non-empty output directory; creates a missing one.
Status PrepareOutDir(const std::string& out) {
  struct stat st;
  if (::stat(out.c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoToStatus(errno, "stat " + out);
    if (::mkdir(out.c_str(), 0755) != 0) return ErrnoToStatus(errno, "mkdir " + out);
    return OkStatus();
  }
  if (!S_ISDIR(st.st_mode)) return FailedPreconditionError(out + " exists and is not a directory");
  DIR* d = ::opendir(out.c_str());
  if (d == nullptr) return ErrnoToStatus(errno, "opendir " + out);
  bool empty = true;
  while (const dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
  }
  ::closedir(d);
  if (!empty) return FailedPreconditionError(out + " is not empty; give a new or empty directory");
  return OkStatus();
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

Status WritePlan(const Plan& plan, const Options& o, const Vocabulary& vocab) {
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(PrepareOutDir(o.out));
  for (size_t d = 1; d < plan.dirs.size(); ++d) {
    const std::string path = Join(o.out, plan.dirs[d].path);
    if (::mkdir(path.c_str(), 0755) != 0) return ErrnoToStatus(errno, "mkdir " + path);
  }
  // Fixed mtimes in 2024 make the tree (and a tar of it) reproducible.
  Rng time_rng(SubSeed(o.seed, kTimeStream));
  constexpr int64_t kEpoch2024 = 1704067200;
  uint64_t total = 0, compressible = 0, dup_files = 0, dup_bytes = 0, largest = 0;
  uint64_t embedded = 0;
  for (const FileSpec& f : plan.files) {
    const std::string path = Join(o.out, f.path);
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.get() < 0) return ErrnoToStatus(errno, "create " + path);
    RETURN_IF_ERROR(
        WriteContent(fd.get(), path, f.size, f.content, f.content_seed, vocab, plan.blobs));
    if (::fchmod(fd.get(), f.mode) != 0) return ErrnoToStatus(errno, "chmod " + path);
    RETURN_IF_ERROR(fd.Close(path));
    RETURN_IF_ERROR(SetTimes(path, kEpoch2024 + static_cast<int64_t>(time_rng.Below(365 * 86400)),
                             static_cast<int64_t>(time_rng.Below(1'000'000'000))));
    total += f.size;
    if (IsCompressible(f.content)) compressible += f.size;
    if (f.dup_of >= 0) {
      ++dup_files;
      dup_bytes += f.size;
    } else if (f.content == Content::kRandom) {
      embedded += PlaceBlobs(f.size, f.content_seed, plan.blobs).size();
    }
    largest = std::max(largest, f.size);
  }
  for (size_t d = plan.dirs.size(); d-- > 0;) {
    const std::string path = Join(o.out, plan.dirs[d].path);
    if (::chmod(path.c_str(), 0755) != 0) return ErrnoToStatus(errno, "chmod " + path);
    RETURN_IF_ERROR(SetTimes(path, kEpoch2024 + 365 * 86400 + static_cast<int64_t>(d), 0));
  }
  std::printf(
      "%s: dir=%s seed=%" PRIu64 " files=%zu dirs=%zu bytes=%" PRIu64 " compressible_bytes=%" PRIu64
      " (%.1f%%) duplicate_files=%" PRIu64 " duplicate_bytes=%" PRIu64 " embedded_blobs=%" PRIu64
      " largest_file=%" PRIu64 " seconds=%.2f\n",
      o.mode.c_str(), o.out.c_str(), o.seed, plan.files.size(), plan.dirs.size(), total,
      compressible,
      total > 0 ? 100.0 * static_cast<double>(compressible) / static_cast<double>(total) : 0.0,
      dup_files, dup_bytes, embedded, largest, Seconds(start));
  return OkStatus();
}

// ---------------------------------------------------------------------------
// mutate: the "1% change".

struct ExistingFile {
  std::string path;  // absolute-ish: root + "/" + rel
  uint64_t size;
};

// Lists regular files and directories under `root`, names sorted bytewise so
// the listing (and thus the mutation) does not depend on readdir order.
Status Walk(const std::string& root, std::vector<ExistingFile>& files,
            std::vector<std::string>& dirs) {
  dirs.push_back(root);
  for (size_t next = 0; next < dirs.size(); ++next) {
    const std::string dir = dirs[next];
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return ErrnoToStatus(errno, "opendir " + dir);
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        names.emplace_back(e->d_name);
      }
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      const std::string path = dir + "/" + name;
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "lstat " + path);
      if (S_ISDIR(st.st_mode)) {
        dirs.push_back(path);
      } else if (S_ISREG(st.st_mode)) {
        files.push_back({path, static_cast<uint64_t>(st.st_size)});
      }
    }
  }
  return OkStatus();
}

struct EditTally {
  uint64_t count = 0;
  uint64_t bytes = 0;
};

class Mutator {
 public:
  Mutator(const Options& o, const Vocabulary& vocab)
      : o_(o), vocab_(vocab), rng_(SubSeed(o.seed, kMutateStream)) {}

  Status Run() {
    const auto start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(Walk(o_.out, files_, dirs_));
    uint64_t total = 0;
    for (const ExistingFile& f : files_) {
      total += f.size;
      prefix_.push_back(total);
    }
    if (total == 0) return FailedPreconditionError(o_.out + " holds no file bytes to mutate");
    touched_.assign(files_.size(), false);
    const uint64_t budget =
        static_cast<uint64_t>(std::llround(o_.fraction * static_cast<double>(total)));
    // Shares of the byte budget: overwrite 40%, insert 25%, append 10%, new files 25%.
    const uint64_t overwrite_budget = budget * 40 / 100;
    const uint64_t insert_budget = budget * 25 / 100;
    const uint64_t append_budget = budget * 10 / 100;
    const uint64_t new_budget = budget - overwrite_budget - insert_budget - append_budget;

    RETURN_IF_ERROR(Edits(EditKind::kOverwrite, overwrite_budget, 512, 128 * kKiB, overwrite_));
    RETURN_IF_ERROR(Edits(EditKind::kInsert, insert_budget, 512, 64 * kKiB, insert_));
    RETURN_IF_ERROR(Edits(EditKind::kAppend, append_budget, 1 * kKiB, 256 * kKiB, append_));
    RETURN_IF_ERROR(NewFiles(new_budget));
    RETURN_IF_ERROR(Deletes());

    const uint64_t modified = overwrite_.bytes + insert_.bytes + append_.bytes + new_.bytes;
    std::printf("mutate: dir=%s seed=%" PRIu64 " files=%zu bytes=%" PRIu64
                " fraction=%g budget=%" PRIu64 " overwrites=%" PRIu64 "/%" PRIu64
                "B inserts=%" PRIu64 "/%" PRIu64 "B appends=%" PRIu64 "/%" PRIu64
                "B new_files=%" PRIu64 "/%" PRIu64 "B deleted_files=%" PRIu64 "/%" PRIu64
                "B modified_bytes=%" PRIu64 " (%.3f%%) seconds=%.2f\n",
                o_.out.c_str(), o_.seed, files_.size(), total, o_.fraction, budget,
                overwrite_.count, overwrite_.bytes, insert_.count, insert_.bytes, append_.count,
                append_.bytes, new_.count, new_.bytes, deleted_.count, deleted_.bytes, modified,
                100.0 * static_cast<double>(modified) / static_cast<double>(total), Seconds(start));
    return OkStatus();
  }

 private:
  enum class EditKind { kOverwrite, kInsert, kAppend };

  // A file picked with probability proportional to its (original) size, i.e.
  // the file holding a uniformly random byte of the dataset; and that byte's offset.
  std::pair<size_t, uint64_t> PickByte() {
    const uint64_t byte = rng_.Below(prefix_.back());
    const size_t i = static_cast<size_t>(std::upper_bound(prefix_.begin(), prefix_.end(), byte) -
                                         prefix_.begin());
    const uint64_t start = i == 0 ? 0 : prefix_[i - 1];
    return {i, byte - start};
  }

  std::vector<uint8_t> EditBytes(Content content, uint64_t n) {
    ContentStream stream(content, SubSeed(o_.seed, kEditStreamBase + edit_counter_++), vocab_);
    std::vector<uint8_t> bytes(n);
    stream.Fill(bytes.data(), n);
    return bytes;
  }

  Status Edits(EditKind kind, uint64_t budget, uint64_t min_len, uint64_t max_len,
               EditTally& tally) {
    while (tally.bytes < budget) {
      uint64_t len = std::min(rng_.LogUniform(min_len, max_len), budget - tally.bytes);
      auto [i, offset] = PickByte();
      const ExistingFile& f = files_[i];
      const Content content = ContentFromName(f.path);
      Fd fd(::open(f.path.c_str(), O_RDWR | O_CLOEXEC));
      if (fd.get() < 0) return ErrnoToStatus(errno, "open " + f.path);
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) return ErrnoToStatus(errno, "fstat " + f.path);
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      if (kind == EditKind::kOverwrite) {
        // An overwrite stays inside the file: shift it left at the end, shorten it in tiny files.
        len = std::min(len, size);
        if (len == 0) continue;
        offset = std::min(offset, size - len);
        const std::vector<uint8_t> bytes = EditBytes(content, len);
        RETURN_IF_ERROR(PwriteAll(fd.get(), bytes.data(), bytes.size(), offset, f.path));
      } else if (kind == EditKind::kInsert) {
        offset = std::min(offset, size);
        std::vector<uint8_t> tail(size - offset);
        RETURN_IF_ERROR(PreadAll(fd.get(), tail.data(), tail.size(), offset, f.path));
        const std::vector<uint8_t> bytes = EditBytes(content, len);
        RETURN_IF_ERROR(PwriteAll(fd.get(), bytes.data(), bytes.size(), offset, f.path));
        RETURN_IF_ERROR(PwriteAll(fd.get(), tail.data(), tail.size(), offset + len, f.path));
      } else {
        const std::vector<uint8_t> bytes = EditBytes(content, len);
        RETURN_IF_ERROR(PwriteAll(fd.get(), bytes.data(), bytes.size(), size, f.path));
      }
      RETURN_IF_ERROR(fd.Close(f.path));
      touched_[i] = true;
      ++tally.count;
      tally.bytes += len;
    }
    return OkStatus();
  }

  // New files of 4 KiB..4 MiB (log-uniform), compressible with the
  // --compressible probability, each in a random existing directory.
  Status NewFiles(uint64_t budget) {
    while (new_.bytes < budget) {
      const uint64_t len = std::min(rng_.LogUniform(4 * kKiB, 4 * kMiB), budget - new_.bytes);
      const Content content =
          rng_.Chance(o_.compressible) ? PickCompressible(rng_) : Content::kRandom;
      const std::string& dir = dirs_[rng_.Below(dirs_.size())];
      const std::string base = dir + "/new-s" + std::to_string(o_.seed) + "-" +
                               std::to_string(new_.count) + "-" + vocab_.Word(rng_);
      const std::string ext(PickExtension(content, rng_));
      std::string path = base + ext;
      int fd_raw = -1;
      for (int n = 2;
           (fd_raw = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0 &&
           errno == EEXIST;
           ++n) {
        path = base + "." + std::to_string(n) + ext;  // mutated twice with one seed
      }
      Fd fd(fd_raw);
      if (fd.get() < 0) return ErrnoToStatus(errno, "create " + path);
      const std::vector<uint8_t> bytes = EditBytes(content, len);
      RETURN_IF_ERROR(WriteAll(fd.get(), bytes.data(), bytes.size(), path));
      RETURN_IF_ERROR(fd.Close(path));
      ++new_.count;
      new_.bytes += len;
    }
    return OkStatus();
  }

  // Deletes max(1, files * fraction / 5) files chosen uniformly by count among
  // the files no edit touched (e.g. 10 of 5,000 files at 1%).
  Status Deletes() {
    const uint64_t want = std::max<uint64_t>(
        1,
        static_cast<uint64_t>(std::llround(static_cast<double>(files_.size()) * o_.fraction / 5)));
    std::vector<size_t> candidates;
    for (size_t i = 0; i < files_.size(); ++i) {
      if (!touched_[i]) candidates.push_back(i);
    }
    while (deleted_.count < want && !candidates.empty()) {
      const size_t k = rng_.Below(candidates.size());
      const ExistingFile& f = files_[candidates[k]];
      if (::unlink(f.path.c_str()) != 0) return ErrnoToStatus(errno, "unlink " + f.path);
      ++deleted_.count;
      deleted_.bytes += f.size;
      candidates[k] = candidates.back();
      candidates.pop_back();
    }
    return OkStatus();
  }

  const Options& o_;
  const Vocabulary& vocab_;
  Rng rng_;
  std::vector<ExistingFile> files_;
  std::vector<std::string> dirs_;
  std::vector<uint64_t> prefix_;
  std::vector<bool> touched_;
  uint64_t edit_counter_ = 0;
  EditTally overwrite_, insert_, append_, new_, deleted_;
};

// ---------------------------------------------------------------------------
// Command line.

constexpr std::string_view kUsage = R"(usage:
  ferry-gen-dataset mixed  --out DIR [--size 1GiB] [--files 5000] [--compressible 0.4] [--seed 1]
  ferry-gen-dataset small  --out DIR [--files 100000] [--compressible 0.4] [--seed 1]
  ferry-gen-dataset mutate --dir DIR [--fraction 0.01] [--compressible 0.4] [--seed 1]

Deterministic synthetic datasets for bench/compare-peers.sh. The same arguments
give a byte-identical tree (names, bytes, modes, mtimes) on the same platform.
--out must be absent or empty. Sizes take B, KiB/MiB/GiB (or K/M/G) and
KB/MB/GB suffixes. A one-line summary (key=value) is printed on stdout.

mixed: --files files (default 5000) in a nested tree of files/20 directories
  (each under a random earlier one, depth <= 7), together exactly --size bytes.
  Sizes are log-normal (sigma 1.9; 1 GiB / 5000 files gives a median of ~35 KiB
  and a few files of tens of MiB). 0.4% of files are empty. 4% of files are
  exact copies of another file (not one of the 1% largest). About --compressible
  of the bytes (by byte count, default 40%) are text-like and compress well with
  LZ4: prose from a 4096-word pseudo-vocabulary (.txt/.md), log lines (.log),
  CSV rows (.csv), 64-byte zero-padded records (.db); the rest is
  pseudo-random bytes (.bin/.jpg/.gz/.zip/.pdf/.so/.png/.xz; .so and .bin are
  mode 0755). 35% of random files of >= 512 KiB embed 1-3 regions copied from
  a pool of 24 random blobs (64 KiB-2 MiB), at arbitrary offsets, so
  content-defined chunking finds duplicated regions inside different files.

small: --files files (default 100000) of 1-16 KiB (uniform) in leaf
  directories of 1000 files (gNNN/dNNNNN, 10 leaves per group); each file is
  compressible (prose/log/CSV/records) with probability --compressible, else
  random; 3% are copies of an earlier file.

mutate: the "1% change", applied in place to an existing tree --dir. Let B be
  the tree's total file bytes and F = round(--fraction * B). The edits write F
  bytes in all:
    overwrites  40% of F: regions of 512 B-128 KiB (log-uniform) rewritten in
                place at a uniformly random byte position of the dataset (so
                files are hit in proportion to their size); a region is moved
                back to end inside its file and shortened to the file's size.
    inserts     25% of F: 512 B-64 KiB inserted at a random byte position,
                shifting the rest of the file (size grows).
    appends     10% of F: 1-256 KiB appended to files picked the same way.
    new files   25% of F: new files of 4 KiB-4 MiB (log-uniform) named
                new-s<seed>-<n>-<word>.<ext> in random existing directories.
  Edit bytes match the file's kind by extension (text-like for .txt/.md/.log/
  .csv/.db, random otherwise). Then max(1, round(files * fraction / 5)) files
  that no edit touched are deleted (10 of 5000 at 1%). Files keep their inode;
  mtimes become the time of the edit, as with a real edit. The bytes written
  are deterministic for a given tree and seed.
)";

bool ParseSize(std::string_view text, uint64_t& out) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return false;
  const std::string number(text.substr(0, i));
  char* end = nullptr;
  const double v = std::strtod(number.c_str(), &end);
  if (end == nullptr || *end != '\0' || v < 0) return false;
  std::string unit(text.substr(i));
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "kib")
    mult = kKiB;
  else if (unit == "m" || unit == "mib")
    mult = kMiB;
  else if (unit == "g" || unit == "gib")
    mult = kGiB;
  else if (unit == "t" || unit == "tib")
    mult = 1024.0 * kGiB;
  else if (unit == "kb")
    mult = 1e3;
  else if (unit == "mb")
    mult = 1e6;
  else if (unit == "gb")
    mult = 1e9;
  else
    return false;
  out = static_cast<uint64_t>(std::llround(v * mult));
  return true;
}

bool ParseUint(std::string_view text, uint64_t& out) {
  if (text.empty()) return false;
  out = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

bool ParseFraction(std::string_view text, double& out) {
  const std::string s(text);
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end != nullptr && *end == '\0' && out >= 0 && out <= 1;
}

int Usage(const std::string& error) {
  std::fprintf(stderr, "ferry-gen-dataset: %s\n%s", error.c_str(), std::string(kUsage).c_str());
  return 2;
}

int Main(int argc, char** argv) {
  if (argc < 2) return Usage("missing mode");
  Options o;
  o.mode = argv[1];
  if (o.mode == "--help" || o.mode == "-h" || o.mode == "help") {
    std::fputs(std::string(kUsage).c_str(), stdout);
    return 0;
  }
  if (o.mode != "mixed" && o.mode != "small" && o.mode != "mutate") {
    return Usage("unknown mode '" + o.mode + "'");
  }
  for (int i = 2; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(std::string(kUsage).c_str(), stdout);
      return 0;
    }
    if (i + 1 >= argc) return Usage("missing value for " + std::string(flag));
    const std::string_view value = argv[++i];
    bool ok = true;
    if (flag == "--out" || flag == "--dir") {
      o.out = value;
      ok = !o.out.empty();
    } else if (flag == "--size") {
      ok = ParseSize(value, o.size);
      o.size_set = true;
    } else if (flag == "--files") {
      ok = ParseUint(value, o.files) && o.files > 0;
    } else if (flag == "--compressible") {
      ok = ParseFraction(value, o.compressible);
    } else if (flag == "--seed") {
      ok = ParseUint(value, o.seed);
    } else if (flag == "--fraction") {
      ok = ParseFraction(value, o.fraction) && o.fraction > 0;
    } else {
      return Usage("unknown flag " + std::string(flag));
    }
    if (!ok) return Usage("bad value '" + std::string(value) + "' for " + std::string(flag));
  }
  if (o.out.empty()) return Usage(o.mode == "mutate" ? "--dir is required" : "--out is required");
  while (o.out.size() > 1 && o.out.back() == '/') o.out.pop_back();

  const Vocabulary vocab(o.seed);
  Status status;
  if (o.mode == "mutate") {
    Mutator mutator(o, vocab);
    status = mutator.Run();
  } else if (o.mode == "mixed") {
    if (o.files == 0) o.files = 5000;
    status = WritePlan(BuildMixedPlan(o, vocab), o, vocab);
  } else {
    if (o.files == 0) o.files = 100000;
    if (o.size_set) return Usage("small takes --files, not --size");
    status = WritePlan(BuildSmallPlan(o, vocab), o, vocab);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "ferry-gen-dataset: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::Main(argc, argv); }
