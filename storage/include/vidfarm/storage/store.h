// The farm's durable state in one RocksDB database. Every state change is one WriteBatch (a
// WriteTxn passed to Store::Commit), so a crash leaves either all of a transition or none. A commit
// is synced on its own, or (group commit) written unsynced and made durable, together with every
// commit before it, by the next Store::Sync: a crash before that Sync keeps a prefix of those
// commits, each whole or absent (the write-ahead log is replayed up to its first incomplete
// record).
//
// Column families and key layout:
//   jobs    job id -> JobRecord JSON
//   tasks   job id + '/' + 2-digit stage, e.g. "j-000000000042-3fa2/03" -> TaskRecord JSON
//           (so a job's tasks are adjacent, in stage order)
//   blobs   key + "#m" -> manifest JSON {v, size, chunks, chunk_bytes, crc32c of the whole blob}
//           (v 2; v 1 manifests, still read, hold the whole blob's sha256 instead)
//           key + '#' + 6-digit chunk index, e.g. "x#000002" -> 4-byte little-endian CRC32C of
//           the chunk bytes, then the bytes (integrated BlobDB: values of min_blob_value_bytes
//           or more live in blob files, not in SSTs)
//   events  big-endian 64-bit sequence -> Event JSON (append-only, seqs dense from 1)
//   meta    "schema_version", "max_submit_seq" -> decimal text
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/storage/records.h"

namespace vidfarm::storage {

// Schema this build reads and writes; a database stamped with a newer one is refused on open.
inline constexpr int kSchemaVersion = 1;
// Chunk indices are six decimal digits in blob keys.
inline constexpr uint64_t kMaxBlobChunks = 1000000;

// Time source for event timestamps and Store::NowMicros; tests inject a fixed one.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMicros() const = 0;
};
// Wall-clock microseconds since the Unix epoch.
std::shared_ptr<Clock> SystemClock();

struct StoreOptions {
  // Database directory; created (with parents) if missing and create_if_missing.
  std::string path;
  // Default: true. When false, a directory without a database is NotFound.
  bool create_if_missing = true;
  // Default: 4 MiB. Blobs are split into chunks of this size (recorded per blob in its manifest).
  size_t blob_chunk_bytes = 4 << 20;
  // Default: 2 GiB. Larger blobs are refused (InvalidArgument).
  uint64_t max_blob_bytes = 2ull << 30;
  // Default: 256 MiB. Below this free disk space, CheckSpaceForNewJob refuses new jobs.
  uint64_t min_free_bytes = 256ull << 20;
  // Default: 64 KiB. Chunk values at least this big live in blob files (BlobDB min_blob_size).
  uint64_t min_blob_value_bytes = 64 << 10;
  // Default: null, meaning SystemClock(). Stamps event times and Store::NowMicros().
  std::shared_ptr<Clock> clock;
  // Default: false. When true, an unsynced Commit appends its log record to RocksDB's in-memory
  // WAL buffer only (manual_wal_flush), and Sync() writes the buffer and syncs it: one write(2)
  // per group of commits instead of one per commit. For group commit, where nothing a commit
  // changed is revealed before the Sync that covers it; an unsynced commit may then be lost
  // with the process, not only with the machine. A synced Commit and closing the store write
  // the buffer too.
  bool buffer_wal = false;
  // Default: false. When true, an unsynced Commit only queues the transaction for a writer thread
  // of the store's own, which writes the queued transactions (RocksDB's memtables and log) one
  // by one in commit order, and returns; a read, a synced Commit, Sync() and Flush() first wait
  // for every commit queued before them. The caller's thread no longer spends the write's time.
  // A queued commit that fails to write (an I/O error, a full disk) fails every later Commit and
  // Sync with its error: the caller has gone on as if it were stored, so only reopening the
  // store returns to a state that matches the database (what the last Sync covered). For group
  // commit, which reveals nothing before the Sync that covers it.
  bool async_commit = false;
  // Default: 256 MiB. With async_commit, a Commit waits while the queued transactions hold more.
  size_t max_queued_bytes = 256ull << 20;
};

// Collects one atomic transition; nothing is written until Store::Commit. Get one from
// Store::NewTxn() so blob limits match the store (a default-constructed one uses the defaults).
// A failed PutBlob poisons the transaction: Commit then returns that error and writes nothing.
class WriteTxn {
 public:
  WriteTxn() : WriteTxn(StoreOptions{}.blob_chunk_bytes, StoreOptions{}.max_blob_bytes) {}
  WriteTxn(size_t blob_chunk_bytes, uint64_t max_blob_bytes)
      : chunk_bytes_(blob_chunk_bytes), max_blob_bytes_(max_blob_bytes) {}

  void PutJob(const JobRecord& job);
  void PutTask(const TaskRecord& task);
  // Chunks and checksums the bytes now; InvalidArgument for an empty key or an oversize blob.
  [[nodiscard]] Status PutBlob(const std::string& key, std::string_view bytes);
  // Removes the manifest and every chunk (the chunk count is read from the database at commit).
  void DeleteBlob(const std::string& key);
  // The sequence number and timestamp are assigned at commit.
  void AppendEvent(std::string job_id, std::string type, nlohmann::json data);

  bool empty() const;
  const Status& status() const { return status_; }
  // Bytes of keys and values staged so far (blob chunks included).
  size_t ByteSize() const;

 private:
  friend class Store;
  struct BlobOp {
    std::string key;
    bool is_delete = false;
    uint64_t size = 0;
    std::string manifest;             // Encoded manifest (puts only).
    std::vector<std::string> chunks;  // Encoded chunk values (puts only).
  };
  struct PendingEvent {
    std::string job_id;
    std::string type;
    nlohmann::json data;
  };
  void Fail(Status st);

  size_t chunk_bytes_;
  uint64_t max_blob_bytes_;
  Status status_;
  std::vector<std::pair<std::string, std::string>> jobs_;   // key, encoded value
  std::vector<std::pair<std::string, std::string>> tasks_;  // key, encoded value
  std::vector<BlobOp> blobs_;
  std::vector<PendingEvent> events_;
  uint64_t max_submit_seq_ = 0;
  size_t bytes_ = 0;
};

class Store {
 public:
  // NotFound when the directory holds no database and create_if_missing is false; NotSupported
  // when the database's schema is newer than kSchemaVersion.
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  WriteTxn NewTxn() const { return WriteTxn(options_.blob_chunk_bytes, options_.max_blob_bytes); }
  // One WriteBatch, synced unless `sync` is false (then durable after the next Sync()).
  // Thread-safe; commits are serialised so event seqs are dense and ordered. ResourceExhausted when
  // the disk is full.
  Status Commit(WriteTxn&& txn, bool sync = true);
  // Makes every earlier commit durable: one fsync of the write-ahead log.
  Status Sync();

  Result<JobRecord> GetJob(const std::string& id) const;
  Result<TaskRecord> GetTask(const std::string& job_id, int stage) const;
  // The job's tasks by stage; empty when it has none.
  Result<std::vector<TaskRecord>> GetTasks(const std::string& job_id) const;
  // Jobs in key order, which is submission order for ids from NewJobId. Return false to stop.
  Status ForEachJob(const std::function<bool(const JobRecord&)>& fn) const;
  // Tasks by job (submission order), then stage. Return false to stop.
  Status ForEachTask(const std::function<bool(const TaskRecord&)>& fn) const;

  // Verifies every chunk's CRC32C and the whole blob's checksum (CRC32C; SHA-256 in manifests
  // written before v2): Corruption naming the key (and chunk) on mismatch; NotFound when there is
  // no such blob.
  Result<std::string> GetBlob(const std::string& key) const;
  Result<bool> HasBlob(const std::string& key) const;

  // Clears *out, then appends up to max events with seq > after_seq, in order.
  Status ReadEvents(uint64_t after_seq, size_t max, std::vector<Event>* out) const;
  uint64_t last_event_seq() const;

  // Strictly increasing, also across restarts (continues after the largest committed submit_seq).
  uint64_t NextSubmitSeq();
  // "j-000000000042-3fa2": zero-padded submit_seq (so ids sort by submission) + random suffix.
  std::string NewJobId(uint64_t submit_seq);
  int64_t NowMicros() const { return clock_->NowMicros(); }

  struct DiskUsage {
    uint64_t total_bytes = 0;  // All files in the database directory.
    uint64_t blob_bytes = 0;   // Blob files (the blobs column family).
    uint64_t sst_bytes = 0;    // SST files, all column families.
    uint64_t free_bytes = 0;   // Available to this user on the database's filesystem.
  };
  Result<DiskUsage> GetDiskUsage() const;
  // ResourceExhausted when free space is below min_free_bytes; nothing is written either way.
  Status CheckSpaceForNewJob() const;
  // Flushes every memtable to disk (blob files and SSTs).
  Status Flush();

  const StoreOptions& options() const { return options_; }

 private:
  struct Rocks;  // RocksDB handles; keeps rocksdb headers out of this one.
  Store(StoreOptions options, std::unique_ptr<Rocks> rocks);
  Status LoadMeta();
  Result<uint64_t> StoredChunkCount(const std::string& key) const;
  // Builds and writes one transaction's batch (under commit_mu_).
  Status Write(WriteTxn& txn, bool sync);
  // async_commit: the writer thread's loop, and waiting for it.
  void WriterMain();
  // Waits until every commit queued so far is written; the first failed write's error, if any.
  Status WaitForWrites() const;

  StoreOptions options_;
  std::shared_ptr<Clock> clock_;
  std::unique_ptr<Rocks> rocks_;
  std::mutex commit_mu_;
  std::atomic<uint64_t> last_event_seq_{0};
  std::atomic<uint64_t> next_submit_seq_{1};
  uint64_t persisted_max_submit_seq_ = 0;  // Guarded by commit_mu_.
  std::mutex rng_mu_;
  uint64_t rng_state_ = 0;  // Guarded by rng_mu_.

  // async_commit's queue; everything below is guarded by queue_mu_.
  mutable std::mutex queue_mu_;
  mutable std::condition_variable queue_cv_;  // the writer: work or stop
  mutable std::condition_variable done_cv_;   // waiters: a transaction written, or room
  std::deque<WriteTxn> queue_;
  size_t queued_bytes_ = 0;
  uint64_t queued_ = 0;   // transactions ever queued
  uint64_t written_ = 0;  // of those, written (or dropped after a failure)
  bool writer_stop_ = false;
  Status writer_status_;  // the first failed write
  std::thread writer_;
};

}  // namespace vidfarm::storage
