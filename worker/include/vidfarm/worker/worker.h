// A stage worker: hosts one cascade stage model (StageRunner) and runs the farm's task loop over
// ZeroMQ (common/wire.h): READY → ASSIGN → FETCH/CHUNK the inputs → sample (PROGRESS, CHECKPOINT)
// → PUT the outputs → RESULT (saying "ready": true where the ASSIGN allows it, else a READY
// follows). One thread (the caller of Run) owns the DEALER socket and does all I/O, heartbeats
// included; sampling runs on a compute thread owned by the Worker. With
// WorkerOptions::prefetch the worker holds up to 1 + prefetch leases: one computes, the others
// fetch their inputs or upload their results meanwhile.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "vidfarm/common/job_spec.h"
#include "vidfarm/common/status.h"
#include "vidfarm/stage_models/stage_runner.h"

namespace vidfarm::worker {

// The largest WorkerOptions::prefetch (a worker then holds 16 leases, the coordinator's limit).
inline constexpr int kMaxPrefetch = 15;

struct WorkerOptions {
  // The coordinator's worker ROUTER (tcp://… or inproc://…).
  std::string endpoint;
  // Which cascade stage this worker hosts.
  int stage = 0;
  // Default: tiny.
  std::string preset = "tiny";
  // Model package directory; empty → deterministic random weights (warned).
  std::string package_dir;
  // Default: 0x5eed. Same as CascadeOptions::init_seed: stage k gets random weights from seed
  // init_seed + k, as in the embedded cascade, so farm and embedded renders match.
  uint64_t init_seed = 0x5eed;
  // Device and dtype.
  models::StageRunnerOptions runner;
  // Default: 0 = leave as is. LibTorch intra-op threads, set on the worker's own compute thread
  // (OpenMP's thread count is a per-thread setting, so the command's call on its main thread is
  // not relied on to reach it).
  int threads = 0;
  // Default: 1. Tasks per ASSIGN.
  int max_batch = 1;
  // Default: 1. Leases held beyond the one being computed (READY says max_leases = 1 + prefetch):
  // the next lease's inputs download while the current one computes, and the last result
  // uploads while the next one computes, so the stage model does not wait on the network or
  // on the coordinator between tasks. Costs memory: each prefetched lease's inputs, and the last
  // 1 + prefetch results (kept in case the coordinator lost their upload). 0 = one lease at a
  // time. A higher-priority job submitted later waits for the prefetched task.
  int prefetch = 1;
  // Default: 1000. HEARTBEAT interval.
  int heartbeat_ms = 1000;
  // Default: 3. Coordinator silent this many intervals → re-register (READY again).
  int heartbeat_misses = 3;
  // Default: 4. Sampler steps between CHECKPOINTs (0 = never).
  int checkpoint_every = 4;
  // Default: 8. Outstanding FETCHes / un-acked PUT chunks.
  int fetch_credit = 8;
  // Default: 1 MiB. Size of FETCH requests and PUT chunks.
  size_t chunk_bytes = 1 << 20;
  // Default: true. A CHECKPOINT or RESULT whose videos fit in one chunk carries them as payload
  // frames ("inline") instead of PUTting them first: one message instead of a PUT/PUT_ACK round
  // trip per task. false uploads everything in chunks (tests of the chunked path use it).
  bool inline_uploads = true;
  // Default: 0 = 2 × heartbeat_ms × heartbeat_misses. A download or upload with requests
  // outstanding and no CHUNK / PUT_ACK for this long sends them again (a lost message must not
  // wedge a task; duplicates are harmless on both sides).
  int transfer_retry_ms = 0;
  // Default: 200. At most one PROGRESS per interval (the last step is always sent).
  int progress_interval_ms = 200;
  // Default: "<host>-<pid>-<stage>-<random>".
  std::string worker_id;
  // Default: -1 = off. Benchmarks only: >= 0 hosts no model (none is built or loaded, the READY
  // says model "simulated") and answers each task after this many ms with a zero video of the
  // stage's output shape, over the same protocol (inputs are fetched, the result is uploaded).
  int simulate_ms = -1;
};

// The stage's sampling settings for one job: the JobSpec's per-stage values override the preset
// defaults (steps[k] > 0, sampler, guidance[k] >= 0, thresholding). Embedded renders should build
// their StageOverrides the same way so farm and embedded videos match.
models::StageOverrides OverridesFromSpec(const JobSpec& spec, int stage);

class Worker {
 public:
  // Loads the package (refusing one whose stage or shapes do not match stage `stage` of the
  // preset) or builds random weights, and the StageRunner. Connects nothing. `ctx` must outlive
  // the Worker; nullptr → the Worker owns a context (then inproc endpoints cannot be shared).
  static Result<std::unique_ptr<Worker>> Create(const WorkerOptions& options, zmq::context_t* ctx);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Blocks: connects the DEALER, sends READY and serves tasks until Stop() (→ OK) or a DISCONNECT
  // from the coordinator (→ Cancelled, with its reason). A socket error → IOError. At most one
  // Run at a time (another → Busy). The Worker must not be destroyed while Run is running.
  Status Run();
  // Thread-safe, idempotent and sticky (a later Run returns at once). The current task is
  // abandoned: the coordinator re-leases it from its last checkpoint when the lease expires.
  void Stop();

  struct Stats {
    int64_t done = 0;    // tasks whose RESULT was sent
    int64_t failed = 0;  // tasks reported with FAIL
  };
  Stats stats() const;

  const std::string& worker_id() const;
  // Package weights sha256, or "random:<seed>" for random weights (sent in READY).
  const std::string& model_sha256() const;

  class Impl;

 private:
  explicit Worker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vidfarm::worker
