// The coordinator: a durable job queue that splits each job into cascade stage tasks, leases them
// to stage workers over ZeroMQ, and keeps every state change in the RocksDB store.
//
// One thread owns both ROUTER sockets and all in-memory state (a zmq::poll loop with a short
// timeout for timers); only the final FFmpeg encode runs on a helper thread. Nothing throws out of
// the loop: every malformed message gets an ERROR reply and one log line.
//
// Leases: a task is LEASED to one worker (ROUTER identity) under a lease id. Any message from the
// worker keeps its leases alive; a worker silent for heartbeat_misses × heartbeat_ms is dead and
// its leased tasks go back to READY with their last checkpoint (one failure for that worker).
// After max_attempts leases a task fails its job. quarantine_after consecutive failures (FAIL or
// expiry; a good RESULT resets the count) quarantine a worker: it stays listed, gets no work.
// After a restart, leases found in the store are kept for heartbeat_misses × heartbeat_ms from
// the restart; a worker that re-registers with READY {lease} in that window keeps its lease.
//
// Scheduling: see ready_queue.h (priority + aging by time since submission, then submit order).
//
// Protocol additions on top of wire.h (documented here, the coordinator side of it):
//   PUT_ACK {upload, offset, received}: offset echoes the PUT; received = bytes assembled so far.
//   CANCEL {lease, reason, job}: the lease's task of `job` is cancelled (tasks of other jobs in a
//     batched lease stay valid). The coordinator also sends CANCEL {lease, reason} in answer to a
//     READY {lease} whose lease is no longer valid.
//   ERROR {error, code, rid?, lease?, blob?}; codes: bad_request, unsupported_version,
//     unknown_command, unknown_worker, stale_lease, not_found, bad_state, disk_full, corruption,
//     storage, internal, unknown_upload.
//   ERROR {code: unknown_upload, lease, command, upload}: a CHECKPOINT or RESULT named an upload
//     that is missing or incomplete (lost with a connection); the lease stays, the worker uploads
//     again (a RESULT up to 3 times, then the lease fails as a bad result). Until then a READY
//     without a lease from that worker earns no new work.
//   PUT of bytes already received (a re-sent chunk) is answered with PUT_ACK again, not appended.
//
// Lease stall: see CoordinatorOptions::lease_stall_seconds.
// Group commit: see CoordinatorOptions::group_commit. STATUS reports {store: {commits, syncs}}.
//   EVENT {rid, job, type, data}; types: submitted, stage_started, progress, checkpoint,
//     stage_done, requeued, encoding, paused, resumed, retried, done, failed, cancelled (the last
//     three are terminal; the WATCH ends with one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "vidfarm/common/status.h"

namespace zmq {
class context_t;
}

namespace vidfarm::coordinator {

struct CoordinatorOptions {
  // RocksDB directory (created if missing).
  std::string db_path;
  // ROUTER for workers. tcp://HOST:0 picks a port; inproc://name works.
  std::string worker_endpoint = "tcp://127.0.0.1:5555";
  // ROUTER for clients.
  std::string api_endpoint = "tcp://127.0.0.1:5556";
  // Default: tiny. The cascade this farm runs; workers and job specs must match it.
  std::string preset = "tiny";
  // Default: 1000. Heartbeat period, both ways.
  int heartbeat_ms = 1000;
  // Default: 3. Missed heartbeats before a worker is dead and its leases expire.
  int heartbeat_misses = 3;
  // Default: 3. Leases per task before the task (and job) fails.
  int max_attempts = 3;
  // Default: 3. Consecutive failures (FAIL or lease expiry) before a worker is quarantined.
  int quarantine_after = 3;
  // Default: 60. Anti-starvation: +1 effective priority per this many seconds waited.
  double aging_seconds = 60;
  // Default: 1 MiB per CHUNK.
  size_t chunk_bytes = 1 << 20;
  // Default: 1 GiB per upload; larger → ERROR.
  size_t max_upload_bytes = 1ull << 30;
  // Default: 1000 messages each way per socket (bounded queues).
  int sndhwm = 1000, rcvhwm = 1000;
  // Default: 256 MiB. Below this free disk space new jobs are refused (StoreOptions).
  uint64_t min_free_bytes = 256ull << 20;
  // Default: 256 MiB. Whole blobs kept in memory for chunked downloads (LRU).
  size_t blob_cache_bytes = 256ull << 20;
  // Default: 120. A lease whose worker shows no sign of work on it (no PROGRESS, CHECKPOINT,
  // RESULT, FETCH or PUT; heartbeats and READY do not count) for this long is failed as retryable
  // and re-queued from its checkpoint, and the worker gets CANCEL: a worker wedged on a lost
  // message cannot hold a task forever. Must exceed the longest sampler step (each step sends
  // PROGRESS). 0 = never.
  double lease_stall_seconds = 120;
  // Default: true. Group commit: each transition is still one WriteBatch, written unsynced; at the
  // end of a loop round that wrote, a syncer thread syncs the write-ahead log (one sync at a time;
  // the loop goes on receiving and writing meanwhile, and the next sync covers what it wrote).
  // Messages sent after a write (all but HEARTBEAT, PUT_ACK and ASSIGN, and anything to the same
  // peer behind a held one) are held until a sync that started after that write finishes:
  // nothing leaves before the state it could reveal is durable. (An ASSIGN whose lease a crash
  // takes back costs the worker's time only; see Send in coordinator.cpp.) false: every
  // transition is synced on its own, messages go at once.
  bool group_commit = true;
  // Testing: each group-commit sync lasts at least this long (a slow disk), so tests can see
  // which messages wait for it. 0 in production.
  int test_min_sync_ms = 0;
};

class Coordinator {
 public:
  // Opens the store, replays state, binds both sockets and starts the loop thread.
  static Result<std::unique_ptr<Coordinator>> Start(const CoordinatorOptions& options,
                                                    zmq::context_t* ctx);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The bound endpoints, with the port resolved (ZMQ_LAST_ENDPOINT).
  std::string worker_endpoint() const;
  std::string api_endpoint() const;

  // Idempotent; joins the loop and the encoder thread and closes the sockets and the store.
  void Stop();

  class Impl;

 private:
  explicit Coordinator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vidfarm::coordinator
