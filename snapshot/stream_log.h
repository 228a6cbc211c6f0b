// StreamLog: an append-only log of records with dense 64-bit offsets, kept
// as a directory of segment files. The agent hosts one per stream; the hub
// can reuse it for the record batches it receives. Format and recovery
// rules: docs/format/stream-segment.md.
//
// Records get offsets 0, 1, 2, ... in append order (a log whose old
// segments were deleted starts later). Each record is framed with its length
// and a CRC32C that also covers its offset. Segments are rolled by size. An
// in-memory sparse index (one entry every `index_interval_bytes` of a
// segment), rebuilt by Open from the segments themselves, finds a record by
// offset with one bounded scan.
//
// Durability (FsyncPolicy):
//  - kEveryBatch: Append returns only after the batch is fdatasync'd (with
//    the directory, when the batch started a segment). An OK Append is the
//    answer: those records survive a crash. Concurrent appenders share
//    fsyncs (group commit): one sync covers every batch written before it.
//  - kInterval: Append returns once the batch is written to the OS (not
//    durable: a crash of the machine may lose it; a crash of the process
//    alone does not). The records are durable once WaitDurable(result)
//    returns OK, which happens at most `fsync_interval_ms` (plus one fsync)
//    after the append, when the sync thread (or the owner's SyncIfDue())
//    syncs. The answer to a producer is WaitDurable's OK, not Append's.
//  Under both policies, records of older segments are durable (a segment is
//  fsync'd before the next one is created), and so is everything recovered
//  by Open. Read may return records that are not durable yet (under
//  kInterval, or written by an Append that has not returned); a replicator
//  must not ship offsets >= durable_end_offset(), since a machine crash or
//  a failed fsync (below) could give those offsets to other records. A
//  batch that spans a roll has the records before the roll durable once
//  the roll happened, whatever becomes of the rest.
//
// Open recovers. It reads every segment once (building the index and
// checking every record's CRC): damage in a segment other than the last is
// kDataLoss naming the file and the offset. In the last segment, the first
// invalid record (partial frame, length over the format limit, CRC mismatch)
// starts a torn tail: it and everything after it are dropped, and the drop
// is logged and reported by recovery() — unless a valid record follows the
// damaged one, which a torn write cannot produce: then kDataLoss too (the
// option `repair_damaged_last_segment` drops it instead). Open then rewrites
// the last segment's valid prefix into a fresh file (fsync'd, renamed over
// it): Env cannot reopen a file for appending nor truncate one, and the copy
// also makes durable what a crashed process left in the page cache. It costs
// at most one segment of I/O per Open.
//
// Errors: kInvalidArgument (bad options, empty or oversized batch or
// record), kOutOfRange (Read below the first retained offset — the message
// names it; TruncateBefore past the end; WaitDurable of an offset not yet
// appended), kDataLoss (damaged segments or start file, with file and
// offset), kUnavailable (another StreamLog holds the directory's lock),
// kFailedPrecondition (the log was closed), kCancelled (WaitDurable when the
// log closes with the offset not durable), and I/O errors from Env.
//
// A failed write or fsync (a full disk, EIO) fails the call that hit it and
// every call waiting for a record that was not durable yet, with the I/O
// error. The file is never fsync'd again: a failed fsync leaves its content
// unknown, and a second fsync that succeeds proves nothing about the pages
// the first one failed to write. Instead, the next Append, Sync or
// TruncateBefore discards the unsynced tail before going on: it checks the
// last segment's durable prefix (every record's CRC, up to the byte where
// the last successful fsync ended), copies it into a fresh file (fsync'd,
// renamed over the segment, directory fsync'd, as Open does) and appends go
// on in that file from durable_end_offset(). Records not durable at the
// failure are gone: nobody was told they were stored, and their offsets go
// to the next records. If the disk still fails, that call fails with the
// new error and the next one tries again (at most one segment of I/O per
// attempt). A durable prefix that no longer checks out is kDataLoss for
// good. A waiter that an epoch change (a discard) overtook still gets the
// failure for its records, never the answer meant for the records that
// took their offsets (see AppendResult::epoch).
//
// Thread-safety: thread-safe. Append, TruncateBefore, Sync and SyncIfDue are
// serialized internally (one writer at a time); Read, WaitDurable and the
// accessors run concurrently with them and with each other. A Read sees
// each record whole or not at all, and never a record whose Append has not
// written it completely. Close and the destructor must not race with other
// calls. Lifetimes: `options.env` and `options.clock` must outlive the log.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/env.h"
#include "core/status.h"

namespace ferry::snapshot {

enum class FsyncPolicy {
  kEveryBatch,  // fdatasync before Append returns
  kInterval,    // fdatasync at most fsync_interval_ms after an append (group commit)
};

struct StreamLogOptions {
  Env* env = Env::Default();
  Clock* clock = Clock::Real();
  FsyncPolicy fsync = FsyncPolicy::kEveryBatch;
  // kInterval: the longest a written record waits for its fsync, in ms (>= 1).
  uint32_t fsync_interval_ms = 100;
  // kInterval: a background thread syncs when due. false: nothing syncs
  // until the owner calls SyncIfDue() or Sync() (tests, an event loop).
  bool sync_thread = true;
  // A segment is rolled before a record that would take it past this size
  // (bytes, header included; 64 B to 1 GiB). A segment always takes at
  // least one record, so a record larger than this gets a segment of its own.
  uint64_t segment_bytes = 16u << 20;
  // Largest record payload Append accepts (bytes, at most 16 MiB).
  uint32_t max_record_bytes = 1u << 20;
  // Largest batch Append accepts: the sum of its payloads plus 8 bytes of
  // frame per record (bytes, >= max_record_bytes + 8).
  uint64_t max_batch_bytes = 64u << 20;
  // One index entry per this many bytes of segment (>= 1): a read by offset
  // scans at most this much plus one record. Memory: 8 bytes per entry.
  uint32_t index_interval_bytes = 4096;
  // Open: damage inside the last segment that is followed by valid records
  // (not a torn write) is dropped with everything after it, and reported,
  // instead of failing with kDataLoss. An operator's repair switch.
  bool repair_damaged_last_segment = false;
};

struct StreamRecord {
  uint64_t offset = 0;
  Bytes data;
};

struct AppendResult {
  uint64_t first = 0;  // offset of the batch's first record
  uint64_t last = 0;   // offset of its last record (first + size - 1)
  // The log's epoch when the batch was written: it grows by one each time
  // a failed write or fsync makes the log discard its unsynced tail (and
  // give those offsets out again). WaitDurable(AppendResult) uses it to
  // tell the batch from later records at the same offsets.
  uint64_t epoch = 0;
};

struct StreamSegmentInfo {
  std::string file;             // name in the log's directory
  uint64_t first_offset = 0;    // offset of its first record
  uint64_t end_offset = 0;      // one past its last record (== first_offset when empty)
  uint64_t bytes = 0;           // header and records
  int64_t created_unix_ns = 0;  // from the segment header
};

// What Open found and repaired.
struct StreamLogRecovery {
  // A torn or damaged tail of the last segment was dropped.
  bool tail_truncated = false;
  std::string segment;         // its file name
  uint64_t offset = 0;         // offset of the first record dropped: the log's end after Open
  uint64_t byte_position = 0;  // where that record started in the segment
  uint64_t bytes_dropped = 0;
  std::string reason;  // e.g. "CRC32C mismatch", "partial record: 12 of 108 bytes"
  // The last segment's header was torn (crash while it was being created);
  // the segment was created again, empty.
  bool header_recreated = false;
  // Segments left wholly below the first retained offset by an interrupted
  // TruncateBefore, deleted by Open.
  uint64_t segments_removed = 0;
};

class StreamLog {
 public:
  // Opens the log in `dir`, creating the directory and an empty log (first
  // offset 0) when it is missing or empty, and recovers as described above.
  static Result<std::unique_ptr<StreamLog>> Open(const std::string& dir,
                                                 const StreamLogOptions& options = {});
  // Close(), logging an error instead of returning it.
  ~StreamLog();
  StreamLog(const StreamLog&) = delete;
  StreamLog& operator=(const StreamLog&) = delete;

  // Appends a batch and returns the offsets it got. Every record is checked
  // (batch not empty, each payload <= max_record_bytes, the whole batch <=
  // max_batch_bytes) before anything is allocated or written: a rejected
  // batch stores nothing. Empty records are allowed. A batch may span
  // segments. Durable per the fsync policy (see above).
  Result<AppendResult> Append(std::span<const ByteView> records);

  // Blocks until the record at `offset` (and every one before it) is
  // durable. kOutOfRange if it was not appended yet; the log's error if a
  // write or fsync failed; kCancelled if the log is closed first. Under
  // kInterval it waits for the next due sync; under kEveryBatch an answered
  // Append's records are durable already.
  // WaitDurable(offset) waits for the record at `offset` in the epoch of
  // the call. A producer that waits for its own batch must use the second
  // form: it fails (with the I/O error that caused the discard) if the
  // batch was discarded after a failed write or fsync, even when later
  // records have been given its offsets since.
  Status WaitDurable(uint64_t offset);
  Status WaitDurable(const AppendResult& appended);

  // fdatasyncs everything appended so far, now.
  Status Sync();
  // kInterval: syncs if records were written at least fsync_interval_ms ago
  // (by options.clock) and are not durable yet; otherwise does nothing.
  Status SyncIfDue();

  // Up to `max_records` records from `from_offset` on, in order, with
  // payloads totalling at most `max_bytes` — except that the first record is
  // returned whatever its size, so that a reader always moves on. Empty when
  // from_offset >= end_offset(). kOutOfRange "... first available offset N"
  // when from_offset < start_offset(). kDataLoss if a record read is damaged.
  Result<std::vector<StreamRecord>> Read(uint64_t from_offset, size_t max_records,
                                         size_t max_bytes) const;

  // Retention: records below `offset` are no longer needed (e.g. replicated
  // to every target). Makes them durable, records `offset` as the first
  // retained offset (in the start file, so it survives restarts), then
  // deletes every segment all of whose records are below it. The last
  // segment is rolled first if all its records are below `offset`, so that
  // its space is given back too. Reads below `offset` are kOutOfRange from
  // then on, even where a segment still holds them. A lower offset than the
  // current start is a no-op; past end_offset() is kOutOfRange.
  Status TruncateBefore(uint64_t offset);

  // Stops the sync thread, syncs what was appended and closes the active
  // segment. Later Appends fail with kFailedPrecondition; reads still work.
  Status Close();

  // First retained offset: Read below it is kOutOfRange.
  uint64_t start_offset() const;
  // Offset the next appended record gets; records [start, end) are readable.
  uint64_t end_offset() const;
  // Records below this offset are durable.
  uint64_t durable_end_offset() const;
  // The segments, oldest first; the last one takes appends.
  std::vector<StreamSegmentInfo> Segments() const;
  // What Open found; fixed after Open.
  const StreamLogRecovery& recovery() const { return recovery_; }
  const std::string& dir() const { return dir_; }
  // The current epoch (see AppendResult::epoch): how many times this open
  // log discarded an unsynced tail after a failed write or fsync.
  uint64_t epoch() const;
  // The failure the log is waiting to recover from (OK when healthy): the
  // next Append, Sync or TruncateBefore discards the unsynced tail first.
  Status failure() const;

 private:
  struct Segment;
  struct IndexEntry {
    uint32_t relative_offset;  // record offset - segment first offset
    uint32_t position;         // byte position of its frame in the segment
  };

  StreamLog(std::string dir, const StreamLogOptions& options);

  Status Init();
  Status Recover(std::vector<std::pair<uint64_t, std::string>> names);
  Status RewriteLastSegment(const std::shared_ptr<Segment>& seg, uint64_t valid_bytes);
  // Copies the header and bytes [header, valid_bytes) of `seg` into
  // <name>.tmp, fsyncs it, renames it over the segment and fsyncs the
  // directory; returns the new file, open for appending at its end.
  Result<std::unique_ptr<WritableFile>> CopySegmentPrefix(const Segment& seg, uint64_t valid_bytes);
  Status CreateSegment(uint64_t first_offset);
  Status WriteBuffered();
  Status RollLocked();
  Status SyncLocked();
  Status SyncThrough(uint64_t offset, uint64_t epoch);
  Status WaitDurableIn(uint64_t offset, uint64_t epoch);
  // With append_mu_ held: if a write or fsync failed, discards the unsynced
  // tail (see the header comment) so that appends can go on.
  Status ResumeLocked();
  Status DiscardUnsyncedTailLocked(const Status& cause);
  // With mu_ held: records the first failure (with context) and wakes the
  // waiters; returns the log's error.
  Status FailLocked(const Status& s);
  // With mu_ held, for a waiter of `offset` written in `epoch` < epoch_:
  // OK if the record was durable when its epoch ended, the failure that
  // discarded it otherwise.
  Status DiscardedStatusLocked(uint64_t offset, uint64_t epoch) const;
  void SyncLoop();
  std::string Where(const Segment& seg) const;

  const std::string dir_;
  const StreamLogOptions options_;
  Env& env_;
  Clock& clock_;
  int lock_fd_ = -1;
  StreamLogRecovery recovery_;

  // Held by whoever writes: Append, roll, sync, TruncateBefore, Close.
  // Lock order: append_mu_, then mu_.
  std::mutex append_mu_;
  std::unique_ptr<WritableFile> active_;   // guarded by append_mu_
  Bytes buffer_;                           // guarded by append_mu_: frames not yet written
  std::vector<IndexEntry> pending_index_;  // guarded by append_mu_: their index entries
  uint64_t buffer_end_offset_ = 0;         // guarded by append_mu_: end once buffer_ is written
  uint64_t last_index_position_ = 0;       // guarded by append_mu_: of the active segment
  // guarded by append_mu_: bytes of the active segment that the last
  // successful fsync made durable (durable_end_'s byte position).
  uint64_t durable_bytes_ = 0;

  // Guards what readers see; held briefly.
  mutable std::mutex mu_;
  std::condition_variable durable_cv_;              // durable_end_, error_, closed_ changed
  std::condition_variable sync_cv_;                 // wakes the sync thread
  std::vector<std::shared_ptr<Segment>> segments_;  // guarded by mu_, oldest first
  uint64_t start_ = 0;                              // guarded by mu_
  uint64_t end_ = 0;                                // guarded by mu_
  uint64_t durable_end_ = 0;                        // guarded by mu_
  std::optional<int64_t> dirty_since_;  // guarded by mu_: monotonic ns of the oldest unsynced write
  bool syncing_ = false;                // guarded by mu_: a group-commit leader is syncing
  bool closed_ = false;                 // guarded by mu_
  bool stopping_ = false;               // guarded by mu_
  Status error_;                        // guarded by mu_: write/sync failure not yet recovered
  bool unrecoverable_ = false;          // guarded by mu_: the durable prefix no longer checks out
  uint64_t epoch_ = 0;                  // guarded by mu_: tails discarded so far
  // A discarded tail: records from `from` on, written in `epoch`, were
  // dropped because of `cause`.
  struct Discard {
    uint64_t epoch = 0;
    uint64_t from = 0;
    Status cause;
  };
  std::deque<Discard> discards_;  // guarded by mu_: the most recent ones, oldest first
  std::thread sync_thread_;
};

}  // namespace ferry::snapshot
