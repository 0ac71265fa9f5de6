#include "vidfarm/coordinator/coordinator.h"

#include <fmt/format.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "vidfarm/common/cascade_table.h"
#include "vidfarm/common/job_spec.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/thread_name.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/common/wire.h"
#include "vidfarm/coordinator/ready_queue.h"
#include "vidfarm/storage/records.h"
#include "vidfarm/storage/store.h"

namespace vidfarm::coordinator {

using nlohmann::json;
using storage::JobRecord;
using storage::JobState;
using storage::TaskRecord;
using storage::TaskState;
using wire::Command;

namespace {

constexpr int kMaxBatch = 64;              // largest max_batch a worker may ask for
constexpr int kMaxLeases = 16;             // largest max_leases (1 + prefetch) likewise
constexpr size_t kMaxUploadsPerPeer = 64;  // open uploads per worker connection
constexpr size_t kMaxDeadWorkersListed = 256;
constexpr size_t kMaxMessagesPerPoll = 256;

// A short printable form of a ROUTER identity for logs.
std::string PeerName(const std::string& identity) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : identity.substr(0, 8)) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

bool IsTerminal(JobState s) {
  return s == JobState::kDone || s == JobState::kFailed || s == JobState::kCancelled;
}

std::string OutKey(const std::string& job, int stage) {
  return fmt::format("{}/{}/out", job, stage);
}
std::string CkptKey(const std::string& job, int stage) {
  return fmt::format("{}/{}/ckpt", job, stage);
}

// Per-stage settings that must agree for tasks to share a batch. Compared, never parsed: the
// names are validated words, so a separator they cannot contain keeps the fields apart.
std::string BatchKey(const JobSpec& s, int stage) {
  return fmt::format("{}|{}|{}|{}|{}", s.preset, s.steps.empty() ? 0 : s.steps[stage], s.sampler,
                     s.guidance.empty() ? -1.0 : s.guidance[stage], s.thresholding);
}

struct Evt {
  std::string job;
  std::string type;
  json data;
};

}  // namespace

class Coordinator::Impl {
 public:
  struct Job {
    JobRecord rec;
    JobSpec spec;
    json spec_json;  // spec.ToJson(), made once: every ASSIGN of the job carries it
    std::vector<TaskRecord> tasks;
    std::vector<std::string> batch_keys;
    bool encoding = false;
  };
  struct Worker {
    std::string identity, worker_id, host, model_sha256;
    int64_t pid = 0;
    int stage = -1;
    int max_batch = 1;
    int max_leases = 1;  // leases it holds at once: one computing, the rest prefetched
    int granting = 0;    // leases given in the Dispatch round under way, not yet in `leases`
    bool credit = false, quarantined = false, dead = false;
    int64_t last_seen_us = 0;
    int done = 0, failed = 0, consecutive_failures = 0;
    std::set<std::string> leases;
  };
  struct Lease {
    std::string id;
    std::string identity;  // "" while orphaned (after a restart, before the worker reattaches)
    int stage = 0;
    uint64_t order = 0;  // dispatch order (0: from before a restart); a worker works oldest first
    std::vector<std::pair<std::string, bool>> tasks;  // job id, still active
    int64_t orphan_expires_us = 0;
    int64_t last_work_us = 0;  // last PROGRESS/CHECKPOINT/FETCH/PUT (lease_stall_seconds)
    int reuploads = 0;         // ERROR unknown_upload answers to its RESULT
    bool awaiting_reupload = false;
  };
  struct Upload {
    std::string data;
    uint64_t total = 0;
  };
  struct EncodeJob {
    std::string job_id;
    std::string format;
    std::shared_ptr<const std::string> video;  // the last stage's output as stored (wire codec)
  };
  struct EncodeDone {
    std::string job_id;
    Status status;
    std::string bytes;
  };
  // A store transition plus the in-memory records it produces (applied only after the commit).
  struct Txn {
    explicit Txn(storage::WriteTxn wt) : w(std::move(wt)) {}
    storage::WriteTxn w;
    std::vector<JobRecord> jobs;
    std::vector<TaskRecord> tasks;
    std::vector<Evt> events;
    std::vector<std::string> blobs_changed;
    // Jobs submitted by this Txn: the parsed spec and its JSON (the record holds its text).
    std::unordered_map<std::string, std::pair<JobSpec, json>> new_specs;
    // Job and Task take their record by value: callers move one they are done with.
    void Job(JobRecord j) {
      w.PutJob(j);
      jobs.push_back(std::move(j));
    }
    void Task(TaskRecord t) {
      w.PutTask(t);
      tasks.push_back(std::move(t));
    }
    void Event(const std::string& job, const std::string& type, json data) {
      w.AppendEvent(job, type, data);
      events.push_back({job, type, std::move(data)});
    }
    Status PutBlob(const std::string& key, std::string_view bytes) {
      blobs_changed.push_back(key);
      return w.PutBlob(key, bytes);
    }
    void DeleteBlob(const std::string& key) {
      blobs_changed.push_back(key);
      w.DeleteBlob(key);
    }
  };

  Impl(CoordinatorOptions o, zmq::context_t* ctx) : opts_(std::move(o)), ctx_(ctx) {}
  ~Impl() { Stop(); }

  Status Init();
  void Stop();
  std::string worker_endpoint_, api_endpoint_;

 private:
  // ---- loop ----
  void Run();
  bool RecvOne(zmq::socket_t& sock, bool is_api);
  bool Send(zmq::socket_t& sock, const std::string& identity, const wire::Message& m);
  void SendError(zmq::socket_t& sock, const std::string& identity, const std::string& code,
                 const std::string& error, json extra = json::object());
  void OnTimer();
  void DrainEncodes();
  int64_t Now() const { return store_->NowMicros(); }
  bool SyncStore();
  bool SendNow(zmq::socket_t& sock, const std::string& identity, const wire::Message& m);
  void FlushOutbox();
  void StartSync();
  void FinishSync(bool wait);
  void SyncerMain();
  int64_t LeaseWindowUs() const {
    return static_cast<int64_t>(opts_.heartbeat_ms) * opts_.heartbeat_misses * 1000;
  }

  // ---- state ----
  Status Replay();
  Job MakeJob(const JobRecord& rec, Status* st);
  Job MakeJob(const JobRecord& rec, JobSpec spec, const json* spec_json = nullptr);
  Status Apply(Txn& t);
  void Reindex(Job& job);
  void DetachTask(const std::string& lease_id, const std::string& job_id);
  void Notify(const std::string& job_id, const std::string& type, const json& data);
  void DispatchAll();
  void Dispatch(int stage);
  // Gives the worker credit (it asked for work) and queues it for Dispatch.
  void OfferCredit(Worker& w);
  bool AwaitingReupload(const Worker& w) const {
    for (const std::string& lease_id : w.leases) {
      auto lit = leases_.find(lease_id);
      if (lit != leases_.end() && lit->second.awaiting_reupload) return true;
    }
    return false;
  }
  int Room(const Worker& w) const {
    return w.max_leases - static_cast<int>(w.leases.size()) - w.granting;
  }
  void FailLease(const std::string& lease_id, const std::string& error, bool retryable, Worker* w);
  void WorkerDead(Worker& w, const std::string& why);
  void StartEncode(Job& job, std::shared_ptr<const std::string> video);
  Result<std::shared_ptr<const std::string>> LoadBlob(const std::string& key);
  std::shared_ptr<const std::string> CacheBlob(const std::string& key, std::string bytes);
  Result<uint64_t> BlobSize(const std::string& key);
  void ForgetBlob(const std::string& key);
  json JobJson(const Job& job, bool detailed);
  std::string NewLeaseId();

  // ---- worker socket ----
  void OnWorkerMessage(const std::string& id, wire::Message& m);
  void OnReady(const std::string& id, const wire::Message& m);
  void ReadyAgain(const std::string& id);  // a RESULT with "ready": true offers the credit again
  Lease* CurrentLease(const std::string& id, const wire::Message& m);
  void OnProgress(Worker& w, const wire::Message& m);
  void OnCheckpoint(Worker& w, wire::Message& m);
  void OnResult(Worker& w, wire::Message& m);
  void OnFail(Worker& w, const wire::Message& m);
  void OnPut(const std::string& id, const wire::Message& m);
  Result<std::vector<std::string>> TakeUploads(const std::string& id, wire::Message& m,
                                               size_t count);
  bool UploadsLost(Worker& w, Lease& l, const wire::Message& m);
  void CheckStalledLeases(int64_t now);
  // ---- both ----
  void OnFetch(zmq::socket_t& sock, const std::string& id, const wire::Message& m);
  // ---- api socket ----
  void OnApiMessage(const std::string& id, wire::Message& m);
  void OnSubmit(const std::string& id, const std::string& rid, const wire::Message& m);
  void OnStatus(const std::string& id, const std::string& rid, const wire::Message& m);
  void OnList(const std::string& id, const std::string& rid, const wire::Message& m);
  void OnWatch(const std::string& id, const std::string& rid, const wire::Message& m);
  void OnJobControl(const std::string& id, const std::string& rid, const wire::Message& m);
  void OnWorkers(const std::string& id, const std::string& rid);
  void Reply(const std::string& id, const std::string& rid, json body);
  void ApiError(const std::string& id, const std::string& rid, const std::string& code,
                const std::string& error);

  CoordinatorOptions opts_;
  zmq::context_t* ctx_;
  std::unique_ptr<storage::Store> store_;
  std::vector<CascadeStageShape> table_;
  std::unique_ptr<zmq::socket_t> wsock_, asock_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool stopped_ = false;

  std::map<std::string, Job> jobs_;                  // by id = submission order
  std::vector<ReadyQueue> queues_;                   // per stage
  std::vector<bool> dirty_;                          // per stage: dispatch needed
  std::unordered_map<std::string, Worker> workers_;  // by ROUTER identity
  // Per stage: identities with credit, holding no lease (idle_) or holding some with room for
  // more (spare_, prefetch). Dispatch serves idle_ first. Entries are checked when popped.
  std::vector<std::deque<std::string>> idle_, spare_;
  std::unordered_map<std::string, Lease> leases_;
  std::map<std::pair<std::string, std::string>, Upload> uploads_;  // (identity, upload id)
  std::map<std::string, std::vector<std::pair<std::string, std::string>>>
      watchers_;  // job → (id, rid)
  uint64_t lease_counter_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
  int64_t next_heartbeat_us_ = 0;
  bool unsynced_ = false;  // group commit: a commit since the last sync started
  // Group commit: messages held until a sync makes what they reveal durable, in the order they
  // were sent; the first covered_ of them wait only for the sync in flight (syncing_).
  struct Outgoing {
    zmq::socket_t* sock;
    std::string identity;
    wire::Message m;
  };
  std::deque<Outgoing> outbox_;
  // Messages in outbox_ per peer: the socket ('w' workers, 'a' clients) and the identity.
  std::unordered_map<std::string, size_t> held_;
  std::string HeldKey(const zmq::socket_t& sock, const std::string& identity) const {
    return (&sock == wsock_.get() ? 'w' : 'a') + identity;
  }
  std::vector<Outgoing> TakeHeld(size_t n);
  void Deliver(std::vector<Outgoing> out);
  bool syncing_ = false;
  size_t covered_ = 0;
  // The syncer thread runs the WAL syncs, so the loop goes on receiving and committing while
  // one is in flight; it wakes the loop through sync_fd_ (an eventfd in the poll set).
  std::thread syncer_;
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool sync_asked_ = false, sync_finished_ = false, syncer_stop_ = false;
  Status sync_status_;
  int64_t sync_elapsed_us_ = 0;
  int sync_fd_ = -1;
  uint64_t commits_ = 0, syncs_ = 0;
  // Time in Store::Commit on the loop (with group commit only queuing) and in WAL syncs.
  int64_t commit_us_ = 0, sync_us_ = 0;
  // The loop's wall time waiting in poll for something to do, and the rest (working); how close
  // the coordinator is to saturation.
  int64_t loop_wait_us_ = 0, loop_busy_us_ = 0;

  // Blob LRU for chunked downloads.
  std::list<std::pair<std::string, std::shared_ptr<const std::string>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> lru_index_;
  size_t lru_bytes_ = 0;
  std::unordered_map<std::string, uint64_t> blob_sizes_;

  // Encoder thread.
  std::thread encoder_;
  std::mutex enc_mu_;
  std::condition_variable enc_cv_;
  std::deque<EncodeJob> enc_queue_;
  std::deque<EncodeDone> enc_done_;
  bool enc_stop_ = false;
  void EncoderMain();
};

// ---------------------------------------------------------------------------------------------
// Start / stop

Status Coordinator::Impl::Init() {
  VF_ASSIGN_OR_RETURN(table_, CascadeTable(opts_.preset));
  if (opts_.heartbeat_ms <= 0 || opts_.heartbeat_misses <= 0 || opts_.max_attempts <= 0 ||
      opts_.quarantine_after <= 0 || opts_.chunk_bytes == 0 || !(opts_.lease_stall_seconds >= 0)) {
    return Status::InvalidArgument(
        "coordinator: heartbeat_ms, heartbeat_misses, max_attempts, quarantine_after and "
        "chunk_bytes must be positive, lease_stall_seconds not negative");
  }
  storage::StoreOptions so;
  so.path = opts_.db_path;
  so.min_free_bytes = opts_.min_free_bytes;
  so.buffer_wal = opts_.group_commit;  // nothing leaves before the sync that covers it
  // The writes themselves on the store's writer thread, beside the loop: RocksDB's memtable
  // inserts and log appends were 40 % of the loop's time in `bench dispatch` (perf).
  so.async_commit = opts_.group_commit;
  VF_ASSIGN_OR_RETURN(store_, storage::Store::Open(so));
  queues_.assign(table_.size(), ReadyQueue(opts_.aging_seconds));
  dirty_.assign(table_.size(), true);
  idle_.assign(table_.size(), {});
  spare_.assign(table_.size(), {});
  VF_RETURN_NOT_OK(Replay());
  try {
    auto make = [&](const std::string& ep, std::string* bound) {
      auto s = std::make_unique<zmq::socket_t>(*ctx_, zmq::socket_type::router);
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::router_mandatory, 1);
      s->set(zmq::sockopt::router_handover, 1);
      s->set(zmq::sockopt::sndhwm, opts_.sndhwm);
      s->set(zmq::sockopt::rcvhwm, opts_.rcvhwm);
      const int64_t max_frame = std::max<int64_t>(wire::DecodeLimits{}.max_payload_bytes,
                                                  static_cast<int64_t>(opts_.chunk_bytes)) +
                                (1 << 20);
      s->set(zmq::sockopt::maxmsgsize, max_frame);
      s->bind(ep);
      *bound = s->get(zmq::sockopt::last_endpoint);
      return s;
    };
    wsock_ = make(opts_.worker_endpoint, &worker_endpoint_);
    asock_ = make(opts_.api_endpoint, &api_endpoint_);
  } catch (const zmq::error_t& e) {
    wsock_.reset();
    asock_.reset();
    return Status::IOError(fmt::format("coordinator: binding {} / {}: {}", opts_.worker_endpoint,
                                       opts_.api_endpoint, e.what()));
  }
  VF_LOG_INFO("coordinator: preset {}, workers on {}, clients on {}, db {} ({} jobs)", opts_.preset,
              worker_endpoint_, api_endpoint_, opts_.db_path, jobs_.size());
  encoder_ = std::thread([this] { EncoderMain(); });
  thread_ = std::thread([this] { Run(); });
  return Status::OK();
}

void Coordinator::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(enc_mu_);
    enc_stop_ = true;
  }
  enc_cv_.notify_all();
  if (encoder_.joinable()) encoder_.join();
  wsock_.reset();
  asock_.reset();
  store_.reset();
}

void Coordinator::Impl::EncoderMain() {
  NameThisThread("vf-encoder");
  for (;;) {
    EncodeJob job;
    {
      std::unique_lock<std::mutex> lock(enc_mu_);
      enc_cv_.wait(lock, [&] { return enc_stop_ || !enc_queue_.empty(); });
      if (enc_stop_) return;
      job = std::move(enc_queue_.front());
      enc_queue_.pop_front();
    }
    EncodeDone done{job.job_id, Status::OK(), {}};
    namespace fs = std::filesystem;
    std::error_code ec;
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    const fs::path path = fs::temp_directory_path(ec) /
                          fmt::format("vidfarm-{}-{:x}.{}", job.job_id, rng(), job.format);
    // Decoded here, not on the loop: the samples of a final video are its biggest copy.
    auto video = wire::DecodeVideo(*job.video);
    done.status = video.ok() ? WriteVideo(*video, path.string()) : video.status();
    if (done.status.ok()) {
      std::ifstream in(path, std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      if (!in.good() && !in.eof()) {
        done.status = Status::IOError("reading back " + path.string());
      } else {
        done.bytes = ss.str();
        if (done.bytes.empty()) done.status = Status::IOError("encoder wrote an empty file");
      }
    }
    fs::remove(path, ec);
    std::lock_guard<std::mutex> lock(enc_mu_);
    enc_done_.push_back(std::move(done));
  }
}

// ---------------------------------------------------------------------------------------------
// Replay

Coordinator::Impl::Job Coordinator::Impl::MakeJob(const JobRecord& rec, Status* st) {
  const json parsed = json::parse(rec.spec, nullptr, /*allow_exceptions=*/false);
  auto spec = parsed.is_discarded()
                  ? Result<JobSpec>(Status::Corruption("job " + rec.id + ": spec is not JSON"))
                  : JobSpec::FromJson(parsed);
  if (!spec.ok()) {
    *st = spec.status();
    Job job;
    job.rec = rec;
    if (!parsed.is_discarded()) job.spec_json = parsed;  // shown as stored
    return job;
  }
  *st = Status::OK();
  return MakeJob(rec, std::move(*spec), &parsed);
}

// The in-memory job for a record whose spec is already parsed (and validated); spec_json, when
// given, is the spec's JSON already made (the record's, or spec.ToJson()).
Coordinator::Impl::Job Coordinator::Impl::MakeJob(const JobRecord& rec, JobSpec spec,
                                                  const json* spec_json) {
  Job job;
  job.rec = rec;
  job.spec = std::move(spec);
  job.spec_json = spec_json ? *spec_json : job.spec.ToJson();
  job.tasks.resize(rec.num_stages);
  job.batch_keys.reserve(rec.num_stages);
  // Without per-stage steps or guidance every stage's key is the same: format it once.
  const bool same_keys = job.spec.steps.empty() && job.spec.guidance.empty();
  for (int s = 0; s < rec.num_stages; ++s) {
    job.tasks[s].job_id = rec.id;
    job.tasks[s].stage = s;
    if (same_keys && s > 0) {
      job.batch_keys.push_back(job.batch_keys.front());
    } else {
      job.batch_keys.push_back(BatchKey(job.spec, s));
    }
  }
  return job;
}

Status Coordinator::Impl::Replay() {
  const int64_t now = Now();
  Status err;
  VF_RETURN_NOT_OK(store_->ForEachJob([&](const JobRecord& rec) {
    Status st;
    Job job = MakeJob(rec, &st);
    if (!st.ok() || job.spec.preset != opts_.preset ||
        rec.num_stages != job.spec.NumStages(table_.size())) {
      VF_LOG_ERROR("coordinator: skipping job {} on replay: {}", rec.id,
                   !st.ok()                          ? st.message()
                   : job.spec.preset != opts_.preset ? "it belongs to another preset"
                                                     : "its stage count does not match its spec");
      return true;
    }
    jobs_.emplace(rec.id, std::move(job));
    return true;
  }));
  VF_RETURN_NOT_OK(store_->ForEachTask([&](const TaskRecord& t) {
    auto it = jobs_.find(t.job_id);
    if (it == jobs_.end() || t.stage < 0 || t.stage >= static_cast<int>(it->second.tasks.size())) {
      return true;
    }
    it->second.tasks[t.stage] = t;
    if (t.state == TaskState::kLeased) {
      Lease& l = leases_[t.lease_id];
      l.id = t.lease_id;
      l.stage = t.stage;
      l.tasks.emplace_back(t.job_id, true);
      l.orphan_expires_us = now + LeaseWindowUs();
    }
    return true;
  }));
  size_t unfinished = 0;
  for (auto& [id, job] : jobs_) {
    Reindex(job);
    if (IsTerminal(job.rec.state)) continue;
    ++unfinished;
    if (job.rec.stages_done == job.rec.num_stages) {
      // Crashed between the last stage and the final encode: encode again.
      auto bytes = store_->GetBlob(OutKey(id, job.rec.num_stages - 1));
      auto video = bytes.ok() ? wire::VerifyVideo(*bytes) : Result<Video>(bytes.status());
      if (video.ok()) {
        StartEncode(job, std::make_shared<const std::string>(std::move(*bytes)));
      } else {
        VF_LOG_ERROR("coordinator: job {}: last stage output unreadable: {}", id,
                     video.status().ToString());
      }
    }
  }
  (void)err;
  if (!jobs_.empty()) {
    VF_LOG_INFO("coordinator: replayed {} jobs ({} unfinished), {} leases held", jobs_.size(),
                unfinished, leases_.size());
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// Applying transitions

Status Coordinator::Impl::Apply(Txn& t) {
  const bool empty = t.w.empty();
  const int64_t t0 = Now();
  Status st = store_->Commit(std::move(t.w), /*sync=*/!opts_.group_commit);
  commit_us_ += Now() - t0;
  if (!st.ok()) {
    VF_LOG_ERROR("coordinator: commit failed: {}", st.ToString());
    return st;
  }
  if (!empty) {
    ++commits_;
    if (opts_.group_commit) {
      unsynced_ = true;
    } else {
      ++syncs_;
    }
  }
  for (const auto& key : t.blobs_changed) ForgetBlob(key);
  std::set<std::string> touched;
  for (auto& j : t.jobs) {
    auto it = jobs_.find(j.id);
    if (it == jobs_.end()) {
      Status mst;
      auto known = t.new_specs.find(j.id);
      // A new job's record holds its spec as OnSubmit made it: spec.ToJson().
      Job job = known != t.new_specs.end()
                    ? MakeJob(j, std::move(known->second.first), &known->second.second)
                    : MakeJob(j, &mst);
      it = jobs_.emplace(j.id, std::move(job)).first;
    } else {
      it->second.rec = j;
    }
    touched.insert(j.id);
  }
  for (auto& task : t.tasks) {
    auto it = jobs_.find(task.job_id);
    if (it == jobs_.end()) continue;
    TaskRecord& old = it->second.tasks[task.stage];
    if (old.state == TaskState::kLeased &&
        (task.state != TaskState::kLeased || task.lease_id != old.lease_id)) {
      DetachTask(old.lease_id, task.job_id);
    }
    old = task;
    touched.insert(task.job_id);
  }
  for (const auto& id : touched) Reindex(jobs_.at(id));
  for (const auto& e : t.events) Notify(e.job, e.type, e.data);
  return Status::OK();
}

void Coordinator::Impl::Reindex(Job& job) {
  const bool dispatchable =
      job.rec.state == JobState::kQueued || job.rec.state == JobState::kRunning;
  for (auto& task : job.tasks) {
    ReadyQueue& q = queues_[task.stage];
    if (task.state == TaskState::kReady && dispatchable) {
      if (!q.Contains(job.rec.id)) {
        q.Push({job.rec.id, job.rec.priority, job.rec.submit_seq, job.rec.created_us,
                job.batch_keys[task.stage]});
        dirty_[task.stage] = true;
      }
    } else {
      q.Remove(job.rec.id);
    }
  }
}

void Coordinator::Impl::DetachTask(const std::string& lease_id, const std::string& job_id) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  bool any = false;
  for (auto& [j, active] : it->second.tasks) {
    if (j == job_id) active = false;
    any = any || active;
  }
  if (any) return;
  auto w = workers_.find(it->second.identity);
  if (w != workers_.end()) w->second.leases.erase(lease_id);
  leases_.erase(it);
}

void Coordinator::Impl::Notify(const std::string& job_id, const std::string& type,
                               const json& data) {
  auto it = watchers_.find(job_id);
  if (it == watchers_.end()) return;
  const bool terminal = type == "done" || type == "failed" || type == "cancelled";
  auto& list = it->second;
  for (size_t i = 0; i < list.size();) {
    wire::Message m{Command::kEvent,
                    {{"rid", list[i].second}, {"job", job_id}, {"type", type}, {"data", data}},
                    {}};
    if (Send(*asock_, list[i].first, m)) {
      ++i;
    } else {
      list.erase(list.begin() + i);  // watcher gone
    }
  }
  if (terminal || list.empty()) watchers_.erase(it);
}

std::string Coordinator::Impl::NewLeaseId() {
  return fmt::format("l-{}-{:08x}", ++lease_counter_, static_cast<uint32_t>(rng_()));
}

// ---------------------------------------------------------------------------------------------
// Scheduling

void Coordinator::Impl::DispatchAll() {
  for (size_t s = 0; s < dirty_.size(); ++s) {
    if (dirty_[s]) {
      dirty_[s] = false;
      Dispatch(static_cast<int>(s));
    }
  }
}

void Coordinator::Impl::OfferCredit(Worker& w) {
  if (w.credit || Room(w) <= 0) return;  // queued already, or it holds all it takes
  w.credit = true;
  (w.leases.empty() ? idle_ : spare_)[w.stage].push_back(w.identity);
}

// Leases as many batches as workers have room for (a lease per free slot), all in one store
// transition (group commit: one synced write per round, not per task), then sends the ASSIGNs.
void Coordinator::Impl::Dispatch(int stage) {
  auto& idle = idle_[stage];
  auto& spare = spare_[stage];
  ReadyQueue& q = queues_[stage];
  struct Pending {
    Lease lease;
    std::vector<std::string> jobs;
    json tasks;
  };
  std::vector<Pending> pending;
  Txn t(store_->NewTxn());
  const int64_t now = Now();
  std::vector<Worker*> granted;
  // A worker with no lease first; then one with room for a prefetched lease.
  while ((!idle.empty() || !spare.empty()) && !q.empty()) {
    auto& from = !idle.empty() ? idle : spare;
    auto wit = workers_.find(from.front());
    from.pop_front();
    if (wit == workers_.end() || !wit->second.credit || wit->second.dead ||
        wit->second.quarantined || wit->second.stage != stage) {
      continue;
    }
    if (Room(wit->second) <= 0) {  // out of the queues: its next READY offers the credit again
      wit->second.credit = false;
      continue;
    }
    Worker& w = wit->second;
    std::vector<ReadyQueue::Entry> batch = q.PopBatch(now, static_cast<size_t>(w.max_batch));
    if (batch.empty()) {
      from.push_front(w.identity);
      break;
    }
    if (w.granting++ == 0) granted.push_back(&w);
    if (Room(w) > 0) {
      spare.push_back(w.identity);  // may take another, after the workers with none
    } else {
      w.credit = false;  // full: a duplicate deque entry cannot lease more
    }
    Pending p;
    p.lease.id = NewLeaseId();
    p.lease.order = lease_counter_;
    p.lease.identity = w.identity;
    p.lease.stage = stage;
    p.lease.last_work_us = now;
    p.tasks = json::array();
    for (const auto& e : batch) {
      Job& job = jobs_.at(e.job_id);
      TaskRecord task = job.tasks[stage];
      task.state = TaskState::kLeased;
      task.lease_id = p.lease.id;
      task.worker_id = w.worker_id;
      task.lease_expires_us = now + LeaseWindowUs();
      task.attempts += 1;
      task.step = task.checkpoint_step;
      task.updated_us = now;
      t.Task(task);
      if (job.rec.state == JobState::kQueued) {
        JobRecord rec = job.rec;
        rec.state = JobState::kRunning;
        rec.updated_us = now;
        t.Job(std::move(rec));
      }
      t.Event(job.rec.id, "stage_started",
              {{"stage", stage},
               {"lease", p.lease.id},
               {"worker", w.worker_id},
               {"attempt", task.attempts}});
      p.lease.tasks.emplace_back(job.rec.id, true);
      p.jobs.push_back(job.rec.id);
      json checkpoint = nullptr;
      if (!task.checkpoint_blob.empty()) {
        auto size = BlobSize(task.checkpoint_blob);
        if (size.ok()) {
          checkpoint = {
              {"blob", task.checkpoint_blob}, {"bytes", *size}, {"step", task.checkpoint_step}};
        } else {
          VF_LOG_WARN("coordinator: job {} stage {}: checkpoint unreadable, starting over: {}",
                      job.rec.id, stage, size.status().ToString());
        }
      }
      uint64_t input_bytes = 0;
      if (!task.input_blob.empty()) {
        auto size = BlobSize(task.input_blob);
        if (size.ok()) input_bytes = *size;
      }
      p.tasks.push_back({{"job", job.rec.id},
                         {"stage", stage},
                         {"seed", job.spec.seed},
                         {"prompt", job.spec.prompt},
                         {"sample_index", 0},
                         {"spec", job.spec_json},
                         {"input_blob", task.input_blob},
                         {"input_bytes", input_bytes},
                         {"checkpoint", checkpoint}});
    }
    pending.push_back(std::move(p));
  }
  for (Worker* w : granted) w->granting = 0;  // the leases are in `pending` now
  if (pending.empty()) return;
  if (!Apply(t).ok()) {
    for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
      for (const auto& j : it->jobs) Reindex(jobs_.at(j));  // back into the queue
      auto wit = workers_.find(it->lease.identity);
      if (wit != workers_.end() && !wit->second.credit) {
        wit->second.credit = true;
        (wit->second.leases.empty() ? idle : spare).push_front(it->lease.identity);
      }
    }
    return;
  }
  for (auto& p : pending) {
    auto wit = workers_.find(p.lease.identity);
    const std::string lease_id = p.lease.id;
    leases_[lease_id] = p.lease;
    if (wit == workers_.end()) continue;  // cannot happen: nothing erases workers here
    Worker& w = wit->second;
    w.leases.insert(lease_id);
    VF_LOG_DEBUG("coordinator: lease {} ({} task(s), stage {}) to worker {}", lease_id,
                 p.jobs.size(), stage, w.worker_id);
    // "ready_in_result": the worker may offer its credit again inside the lease's RESULT
    // ("ready": true) instead of a READY of its own, one message less per task.
    wire::Message m{Command::kAssign,
                    {{"lease", lease_id},
                     {"stage", stage},
                     {"tasks", std::move(p.tasks)},
                     {"ready_in_result", true}},
                    {}};
    if (!Send(*wsock_, w.identity, m)) WorkerDead(w, "unreachable when sending ASSIGN");
  }
}

void Coordinator::Impl::FailLease(const std::string& lease_id, const std::string& error,
                                  bool retryable, Worker* w) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  Lease lease = it->second;
  const int64_t now = Now();
  Txn t(store_->NewTxn());
  for (const auto& [job_id, active] : lease.tasks) {
    if (!active) continue;
    Job& job = jobs_.at(job_id);
    TaskRecord task = job.tasks[lease.stage];
    if (task.state != TaskState::kLeased || task.lease_id != lease_id) continue;
    task.lease_id.clear();
    task.lease_expires_us = 0;
    task.error = error;
    task.updated_us = now;
    if (!retryable || task.attempts >= opts_.max_attempts) {
      task.state = TaskState::kFailed;
      JobRecord rec = job.rec;
      rec.state = JobState::kFailed;
      rec.error = retryable
                      ? fmt::format("stage {} ({}) failed after {} attempt(s): {}", lease.stage,
                                    table_[lease.stage].name, task.attempts, error)
                      : fmt::format("stage {} ({}) failed: {}", lease.stage,
                                    table_[lease.stage].name, error);
      rec.updated_us = rec.finished_us = now;
      t.Job(rec);
      t.Event(job_id, "failed", {{"stage", lease.stage}, {"error", rec.error}});
    } else {
      task.state = TaskState::kReady;
      t.Event(job_id, "requeued",
              {{"stage", lease.stage},
               {"error", error},
               {"attempt", task.attempts},
               {"checkpoint_step", task.checkpoint_step}});
    }
    t.Task(task);
  }
  if (!Apply(t).ok()) {
    // Keep the lease (now orphaned) and try again when it expires.
    auto lit = leases_.find(lease_id);
    if (lit != leases_.end()) {
      auto wit = workers_.find(lit->second.identity);
      if (wit != workers_.end()) wit->second.leases.erase(lease_id);
      lit->second.identity.clear();
      lit->second.orphan_expires_us = now + LeaseWindowUs();
    }
    return;
  }
  leases_.erase(lease_id);  // normally already gone (every task left LEASED)
  if (w) {
    w->leases.erase(lease_id);
    w->failed += 1;
    w->consecutive_failures += 1;
    if (!w->quarantined && w->consecutive_failures >= opts_.quarantine_after) {
      w->quarantined = true;
      w->credit = false;
      VF_LOG_WARN("coordinator: worker {} ({}, stage {}) quarantined after {} failures",
                  w->worker_id, w->host, w->stage, w->consecutive_failures);
    }
  }
}

void Coordinator::Impl::WorkerDead(Worker& w, const std::string& why) {
  if (w.dead) return;
  VF_LOG_WARN("coordinator: worker {} ({}, stage {}) is dead: {}; {} lease(s) expire", w.worker_id,
              w.host, w.stage, why, w.leases.size());
  w.dead = true;
  w.credit = false;
  std::set<std::string> leases = w.leases;
  for (const auto& l : leases)
    FailLease(l, "lease expired: worker " + w.worker_id + " " + why, true, &w);
  w.leases.clear();
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    it = it->first.first == w.identity ? uploads_.erase(it) : std::next(it);
  }
  // Bound the dead workers kept for WORKERS.
  size_t dead = 0;
  for (auto& [id, x] : workers_) dead += x.dead;
  if (dead > kMaxDeadWorkersListed) {
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->second.dead && it->first != w.identity) {
        it = workers_.erase(it);
        if (--dead <= kMaxDeadWorkersListed) break;
      } else {
        ++it;
      }
    }
  }
}

void Coordinator::Impl::StartEncode(Job& job, std::shared_ptr<const std::string> video) {
  job.encoding = true;
  std::lock_guard<std::mutex> lock(enc_mu_);
  enc_queue_.push_back({job.rec.id, job.spec.format, std::move(video)});
  enc_cv_.notify_one();
}

void Coordinator::Impl::DrainEncodes() {
  std::deque<EncodeDone> done;
  {
    std::lock_guard<std::mutex> lock(enc_mu_);
    done.swap(enc_done_);
  }
  for (auto& d : done) {
    auto it = jobs_.find(d.job_id);
    if (it == jobs_.end()) continue;
    Job& job = it->second;
    job.encoding = false;
    if (job.rec.state != JobState::kRunning && job.rec.state != JobState::kPaused &&
        job.rec.state != JobState::kQueued) {
      VF_LOG_INFO("coordinator: job {} is {}; dropping its encoded video", d.job_id,
                  storage::JobStateName(job.rec.state));
      continue;
    }
    const int64_t now = Now();
    Txn t(store_->NewTxn());
    JobRecord rec = job.rec;
    rec.updated_us = rec.finished_us = now;
    std::string final_key;
    if (d.status.ok()) {
      final_key = fmt::format("{}/final.{}", rec.id, job.spec.format);
      Status put = t.PutBlob(final_key, d.bytes);
      if (!put.ok()) {
        d.status = put;
        t = Txn(store_->NewTxn());
      }
    }
    if (!d.status.ok()) {
      rec.state = JobState::kFailed;
      rec.error = "encoding the final video: " + d.status.ToString();
      t.Job(rec);
      t.Event(rec.id, "failed", {{"error", rec.error}});
    } else {
      const std::string& key = final_key;
      rec.state = JobState::kDone;
      rec.output_blob = key;
      if (!job.rec.keep_intermediates) {
        for (int s = 0; s < rec.num_stages; ++s) {
          t.DeleteBlob(OutKey(rec.id, s));
          t.DeleteBlob(CkptKey(rec.id, s));
          if (!job.tasks[s].checkpoint_blob.empty() || !job.tasks[s].output_blob.empty()) {
            TaskRecord task = job.tasks[s];
            task.checkpoint_blob.clear();
            task.output_blob.clear();
            t.Task(task);
          }
        }
      }
      t.Job(rec);
      t.Event(rec.id, "done", {{"output_blob", key}, {"bytes", d.bytes.size()}});
    }
    if (Apply(t).ok()) {
      if (d.status.ok()) blob_sizes_[rec.output_blob] = d.bytes.size();
      VF_LOG_INFO("coordinator: job {} {}", rec.id, storage::JobStateName(rec.state));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Blobs

void Coordinator::Impl::ForgetBlob(const std::string& key) {
  blob_sizes_.erase(key);
  auto it = lru_index_.find(key);
  if (it == lru_index_.end()) return;
  lru_bytes_ -= it->second->second->size();
  lru_.erase(it->second);
  lru_index_.erase(it);
}

Result<std::shared_ptr<const std::string>> Coordinator::Impl::LoadBlob(const std::string& key) {
  auto it = lru_index_.find(key);
  if (it != lru_index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  VF_ASSIGN_OR_RETURN(std::string bytes, store_->GetBlob(key));
  return CacheBlob(key, std::move(bytes));
}

std::shared_ptr<const std::string> Coordinator::Impl::CacheBlob(const std::string& key,
                                                                std::string bytes) {
  ForgetBlob(key);
  auto blob = std::make_shared<const std::string>(std::move(bytes));
  blob_sizes_[key] = blob->size();
  if (blob->size() <= opts_.blob_cache_bytes) {
    lru_.emplace_front(key, blob);
    lru_index_[key] = lru_.begin();
    lru_bytes_ += blob->size();
    while (lru_bytes_ > opts_.blob_cache_bytes && !lru_.empty()) {
      lru_bytes_ -= lru_.back().second->size();
      lru_index_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }
  return blob;
}

Result<uint64_t> Coordinator::Impl::BlobSize(const std::string& key) {
  auto it = blob_sizes_.find(key);
  if (it != blob_sizes_.end()) return it->second;
  VF_ASSIGN_OR_RETURN(auto blob, LoadBlob(key));
  return static_cast<uint64_t>(blob->size());
}

// ---------------------------------------------------------------------------------------------
// The loop

void Coordinator::Impl::Run() {
  NameThisThread("vf-coordinator");
  next_heartbeat_us_ = Now();
  const auto poll_timeout = std::chrono::milliseconds(std::clamp(opts_.heartbeat_ms / 4, 1, 20));
  if (opts_.group_commit) {
    sync_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sync_fd_ < 0) {
      VF_LOG_WARN("coordinator: eventfd failed ({}); syncing in the loop", std::strerror(errno));
    } else {
      syncer_ = std::thread([this] { SyncerMain(); });
    }
  }
  int64_t round_start_us = 0;
  while (!stop_) {
    try {
      zmq::pollitem_t items[] = {{wsock_->handle(), 0, ZMQ_POLLIN, 0},
                                 {asock_->handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, sync_fd_, ZMQ_POLLIN, 0}};
      const int64_t t0 = Now();
      if (round_start_us > 0) loop_busy_us_ += t0 - round_start_us;
      zmq::poll(items, sync_fd_ >= 0 ? 3 : 2, poll_timeout);
      round_start_us = Now();
      loop_wait_us_ += round_start_us - t0;
      if (syncing_) FinishSync(/*wait=*/false);
      for (size_t i = 0; i < kMaxMessagesPerPoll && RecvOne(*wsock_, false); ++i) {
      }
      for (size_t i = 0; i < kMaxMessagesPerPoll && RecvOne(*asock_, true); ++i) {
      }
      if (Now() >= next_heartbeat_us_) OnTimer();
      DrainEncodes();
      DispatchAll();
      // One sync for everything this round wrote, then the messages that reveal it. Also
      // without messages: a worker's RESULT must not wait for some later round to be safe.
      FlushOutbox();
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      VF_LOG_ERROR("coordinator: zmq error in loop: {}", e.what());
    } catch (const std::exception& e) {
      VF_LOG_ERROR("coordinator: error in loop: {}", e.what());
    }
  }
  if (syncing_) FinishSync(/*wait=*/true);
  if (syncer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(sync_mu_);
      syncer_stop_ = true;
    }
    sync_cv_.notify_all();
    syncer_.join();
  }
  if (sync_fd_ >= 0) close(sync_fd_);
  sync_fd_ = -1;
  if (unsynced_) SyncStore();
}

void Coordinator::Impl::SyncerMain() {
  NameThisThread("vf-syncer");
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(sync_mu_);
      sync_cv_.wait(lock, [&] { return syncer_stop_ || sync_asked_; });
      if (!sync_asked_) return;  // stopping, nothing asked
      sync_asked_ = false;
    }
    const int64_t t0 = Now();
    Status st = store_->Sync();  // RocksDB's SyncWAL may run beside the loop's writes
    if (opts_.test_min_sync_ms > 0) {
      std::this_thread::sleep_until(std::chrono::steady_clock::now() +
                                    std::chrono::milliseconds(opts_.test_min_sync_ms) -
                                    std::chrono::microseconds(Now() - t0));
    }
    const int64_t elapsed = Now() - t0;
    {
      std::lock_guard<std::mutex> lock(sync_mu_);
      sync_status_ = std::move(st);
      sync_elapsed_us_ = elapsed;
      sync_finished_ = true;
    }
    sync_cv_.notify_all();
    const uint64_t one = 1;
    if (write(sync_fd_, &one, sizeof one) < 0) {  // the loop also polls with a timeout
    }
  }
}

// Group commit: one WAL sync makes every commit since the last one durable. On failure the flag
// stays set and the held messages stay held; the next round tries again.
bool Coordinator::Impl::SyncStore() {
  const int64_t t0 = Now();
  Status st = store_->Sync();
  sync_us_ += Now() - t0;
  if (!st.ok()) {
    VF_LOG_ERROR("coordinator: syncing the store failed: {}", st.ToString());
    return false;
  }
  unsynced_ = false;
  ++syncs_;
  return true;
}

bool Coordinator::Impl::RecvOne(zmq::socket_t& sock, bool is_api) {
  std::vector<zmq::message_t> parts;
  auto n = zmq::recv_multipart(sock, std::back_inserter(parts), zmq::recv_flags::dontwait);
  if (!n) return false;
  if (parts.empty()) return true;
  const std::string identity = parts[0].to_string();
  std::vector<std::string> frames;
  frames.reserve(parts.size() - 1);
  for (size_t i = 1; i < parts.size(); ++i) frames.push_back(parts[i].to_string());
  parts.clear();
  wire::DecodeLimits limits;
  // Moves the payload frames out only when the message is valid; the error path below still
  // reads the header frame.
  auto m = wire::Decode(std::move(frames), limits);
  const char* side = is_api ? "client" : "worker";
  if (!m.ok()) {
    VF_LOG_WARN("coordinator: bad message from {} {}: {}", side, PeerName(identity),
                m.status().message());
    json extra = json::object();
    // Echo the rid when the header is readable, so a client can match the error.
    if (frames.size() >= 3) {
      auto h = json::parse(frames[2], nullptr, false);
      if (h.is_object() && h.contains("rid") && h["rid"].is_string()) extra["rid"] = h["rid"];
    }
    SendError(
        sock, identity,
        m.status().code() == Status::Code::kNotSupported ? "unsupported_version" : "bad_request",
        m.status().message(), extra);
    return true;
  }
  try {
    if (is_api) {
      OnApiMessage(identity, *m);
    } else {
      OnWorkerMessage(identity, *m);
    }
  } catch (const zmq::error_t&) {
    throw;
  } catch (const std::exception& e) {
    // Wrong field types that slipped past validation land here; state is only changed after
    // validation, so replying is enough.
    VF_LOG_WARN("coordinator: {} from {} {}: {}", wire::CommandName(m->command), side,
                PeerName(identity), e.what());
    json extra = json::object();
    if (m->header.contains("rid") && m->header["rid"].is_string()) extra["rid"] = m->header["rid"];
    SendError(sock, identity, "bad_request",
              fmt::format("{}: {}", wire::CommandName(m->command), e.what()), extra);
  }
  return true;
}

// Group commit's rule: a message that reveals stored state leaves only after every transition
// committed before it is durable, so no peer ever acts on state a crash could take back. Such
// messages wait in the outbox for a sync that covers their commits (StartSync/FinishSync, or
// FlushOutbox's own sync without the syncer thread). Three kinds reveal nothing a crash could
// make harmful and go at once: HEARTBEAT, PUT_ACK (bytes held in memory) and ASSIGN. A lease the
// crash takes back is one the restarted coordinator does not know: the worker's RESULT or
// CHECKPOINT for it is refused as stale, its READY naming the lease gets a CANCEL, and the
// task, READY again after the replay, is leased anew (with keyed noise, to the same video); what
// is lost is the worker's time, not data. So dispatch does not wait for syncs. Once a message to
// a peer waits, every later one to that peer waits behind it, so each peer sees its messages in
// the order they were sent. A held message counts as sent; if it then fails, Deliver does what a
// failed send does here.
bool Coordinator::Impl::Send(zmq::socket_t& sock, const std::string& identity,
                             const wire::Message& m) {
  const bool reveals = m.command != Command::kHeartbeat && m.command != Command::kPutAck &&
                       m.command != Command::kAssign;
  const bool must_wait = reveals && (unsynced_ || syncing_);
  if (!must_wait && held_.empty()) return SendNow(sock, identity, m);  // the common case
  std::string key = HeldKey(sock, identity);
  auto h = held_.find(key);
  if (!must_wait && h == held_.end()) return SendNow(sock, identity, m);
  outbox_.push_back({&sock, identity, m});
  if (h == held_.end()) h = held_.emplace(std::move(key), 0).first;
  ++h->second;
  // Nothing committed since the sync in flight started: that sync covers this message too.
  if (syncing_ && !unsynced_) covered_ = outbox_.size();
  return true;
}

// Asks the syncer for a sync of every commit so far; the messages held now wait for it.
void Coordinator::Impl::StartSync() {
  if (!unsynced_ || syncing_) return;
  unsynced_ = false;
  syncing_ = true;
  covered_ = outbox_.size();
  {
    std::lock_guard<std::mutex> lock(sync_mu_);
    sync_asked_ = true;
  }
  sync_cv_.notify_all();
}

// Collects the sync in flight (waiting for it with wait) and sends the messages it covered. A
// failed sync leaves its commits unsynced and its messages held; the next round tries again.
void Coordinator::Impl::FinishSync(bool wait) {
  Status st;
  {
    std::unique_lock<std::mutex> lock(sync_mu_);
    if (wait) sync_cv_.wait(lock, [&] { return sync_finished_; });
    if (!sync_finished_) return;
    sync_finished_ = false;
    st = std::move(sync_status_);
    sync_us_ += sync_elapsed_us_;
  }
  uint64_t count;
  if (read(sync_fd_, &count, sizeof count) < 0) {  // EAGAIN: already drained
  }
  syncing_ = false;
  if (!st.ok()) {
    VF_LOG_ERROR("coordinator: syncing the store failed: {}; {} message(s) held back",
                 st.ToString(), outbox_.size());
    unsynced_ = true;
    return;
  }
  ++syncs_;
  const size_t n = std::min(covered_, outbox_.size());
  covered_ = 0;
  Deliver(TakeHeld(n));
}

void Coordinator::Impl::FlushOutbox() {
  if (syncer_.joinable()) {  // the syncer syncs; FinishSync sends what it covered
    if (!syncing_ && !unsynced_ && !outbox_.empty()) {  // held only behind earlier ones
      Deliver(TakeHeld(outbox_.size()));
    }
    StartSync();
    return;
  }
  while (unsynced_ || !outbox_.empty()) {
    if (unsynced_ && !SyncStore()) {
      if (!outbox_.empty()) {
        VF_LOG_ERROR("coordinator: {} message(s) held back until the store can be synced",
                     outbox_.size());
      }
      return;
    }
    Deliver(TakeHeld(outbox_.size()));  // a failure may commit and send again: those queue behind
  }
}

// Removes the first n held messages, for Deliver: what it sends meanwhile queues behind them.
std::vector<Coordinator::Impl::Outgoing> Coordinator::Impl::TakeHeld(size_t n) {
  const auto end = outbox_.begin() + static_cast<std::ptrdiff_t>(n);
  std::vector<Outgoing> out(std::make_move_iterator(outbox_.begin()), std::make_move_iterator(end));
  outbox_.erase(outbox_.begin(), end);
  for (const Outgoing& o : out) {
    auto h = held_.find(HeldKey(*o.sock, o.identity));
    if (h != held_.end() && --h->second == 0) held_.erase(h);
  }
  return out;
}

// Sends held messages in order; one that fails is handled as a failed send is in Send.
void Coordinator::Impl::Deliver(std::vector<Outgoing> out) {
  for (Outgoing& o : out) {
    if (SendNow(*o.sock, o.identity, o.m)) continue;
    if (o.sock == wsock_.get()) {
      auto w = workers_.find(o.identity);
      if (w != workers_.end() && !w->second.dead) {
        WorkerDead(w->second,
                   fmt::format("unreachable when sending {}", wire::CommandName(o.m.command)));
      }
    } else {
      for (auto it = watchers_.begin(); it != watchers_.end();) {  // a watcher gone
        auto& list = it->second;
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [&](const auto& x) { return x.first == o.identity; }),
                   list.end());
        it = list.empty() ? watchers_.erase(it) : std::next(it);
      }
    }
  }
}

bool Coordinator::Impl::SendNow(zmq::socket_t& sock, const std::string& identity,
                                const wire::Message& m) {
  std::vector<std::string> frames = wire::Encode(m);
  try {
    if (!sock.send(zmq::buffer(identity), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      auto w = workers_.find(identity);
      VF_LOG_WARN("coordinator: queue to {} {} full; dropped {} {}", PeerName(identity),
                  w != workers_.end() ? w->second.worker_id : std::string(),
                  wire::CommandName(m.command), m.header.dump());
      return true;  // the peer exists; it is just slow (workers re-send what goes unanswered)
    }
    for (size_t i = 0; i < frames.size(); ++i) {
      const auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      (void)sock.send(zmq::buffer(frames[i]), flags | zmq::send_flags::dontwait);
    }
    return true;
  } catch (const zmq::error_t& e) {
    auto w = workers_.find(identity);
    const std::string who = w != workers_.end() ? w->second.worker_id : std::string("(client)");
    if (e.num() == EHOSTUNREACH) {
      VF_LOG_INFO("coordinator: {} {} is gone; dropped {}", PeerName(identity), who,
                  wire::CommandName(m.command));
    } else {
      VF_LOG_WARN("coordinator: sending {} to {} {}: {}", wire::CommandName(m.command),
                  PeerName(identity), who, e.what());
    }
    return false;
  }
}

void Coordinator::Impl::SendError(zmq::socket_t& sock, const std::string& identity,
                                  const std::string& code, const std::string& error, json extra) {
  extra["error"] = error;
  extra["code"] = code;
  Send(sock, identity, wire::Message{Command::kError, std::move(extra), {}});
}

void Coordinator::Impl::OnTimer() {
  const int64_t now = Now();
  next_heartbeat_us_ = now + static_cast<int64_t>(opts_.heartbeat_ms) * 1000;
  std::vector<std::string> dead;
  for (auto& [id, w] : workers_) {
    if (w.dead) continue;
    if (now - w.last_seen_us > LeaseWindowUs()) {
      dead.push_back(id);
      continue;
    }
    if (!Send(*wsock_, id, wire::Message{Command::kHeartbeat, json::object(), {}})) {
      dead.push_back(id);
    }
  }
  for (const auto& id : dead) {
    auto it = workers_.find(id);
    if (it != workers_.end()) {
      WorkerDead(it->second, fmt::format("silent for more than {} heartbeats of {} ms",
                                         opts_.heartbeat_misses, opts_.heartbeat_ms));
    }
  }
  CheckStalledLeases(now);
  std::vector<std::string> expired;
  for (auto& [id, l] : leases_) {
    if (l.identity.empty() && l.orphan_expires_us <= now) expired.push_back(id);
  }
  for (const auto& id : expired) {
    VF_LOG_WARN("coordinator: lease {} was not reattached after restart; re-queueing", id);
    FailLease(id, "lease expired: no worker reattached it after a coordinator restart", true,
              nullptr);
  }
}

// ---------------------------------------------------------------------------------------------
// Worker socket

void Coordinator::Impl::OnWorkerMessage(const std::string& id, wire::Message& m) {
  if (m.command == Command::kReady) return OnReady(id, m);
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second.dead) {
    VF_LOG_INFO("coordinator: {} from unknown worker {}; asking it to register",
                wire::CommandName(m.command), PeerName(id));
    return SendError(*wsock_, id, "unknown_worker",
                     fmt::format("{} from an unregistered worker: send READY first",
                                 wire::CommandName(m.command)));
  }
  Worker& w = it->second;
  w.last_seen_us = Now();
  // Signs of work keep the worker's leases from stalling (a FETCH or PUT names no lease: it counts
  // for each); heartbeats only keep the worker alive.
  // Work on a named lease also keeps alive the worker's younger leases, prefetched behind it.
  if (m.command == Command::kProgress || m.command == Command::kCheckpoint ||
      m.command == Command::kResult || m.command == Command::kFetch || m.command == Command::kPut) {
    auto lf = m.header.find("lease");
    const bool has_name = lf != m.header.end() && lf->is_string();
    const Lease* named = nullptr;
    if (has_name) {
      auto nit = leases_.find(lf->get<std::string>());
      if (nit != leases_.end() && nit->second.identity == id) named = &nit->second;
    }
    for (const std::string& lease_id : w.leases) {
      auto lit = leases_.find(lease_id);
      if (lit == leases_.end() || (has_name && !named)) continue;
      if (!named || &lit->second == named || lit->second.order > named->order)
        lit->second.last_work_us = w.last_seen_us;
    }
  }
  switch (m.command) {
    case Command::kHeartbeat:
      return;
    case Command::kProgress:
      return OnProgress(w, m);
    case Command::kCheckpoint:
      return OnCheckpoint(w, m);
    case Command::kResult: {
      const bool again = wire::FlagSet(m, "ready");
      OnResult(w, m);
      if (again) ReadyAgain(id);
      return;
    }
    case Command::kFail:
      return OnFail(w, m);
    case Command::kFetch:
      return OnFetch(*wsock_, id, m);
    case Command::kPut:
      return OnPut(id, m);
    default:
      VF_LOG_WARN("coordinator: {} is not a worker command (from {})", wire::CommandName(m.command),
                  w.worker_id);
      return SendError(*wsock_, id, "unknown_command",
                       fmt::format("{} is not a worker command", wire::CommandName(m.command)));
  }
}

void Coordinator::Impl::OnReady(const std::string& id, const wire::Message& m) {
  auto bad = [&](const Status& st) {
    VF_LOG_WARN("coordinator: bad READY from {}: {}", PeerName(id), st.message());
    SendError(*wsock_, id, "bad_request", st.message());
  };
  auto worker_id = wire::GetString(m, "worker_id");
  auto host = wire::GetString(m, "host");
  auto pid = wire::GetInt(m, "pid");
  auto stage = wire::GetInt(m, "stage");
  auto preset = wire::GetString(m, "preset");
  auto sha = wire::GetString(m, "model_sha256");
  auto max_batch = wire::GetInt(m, "max_batch");
  for (const Status& st : {worker_id.status(), host.status(), pid.status(), stage.status(),
                           preset.status(), sha.status(), max_batch.status()}) {
    if (!st.ok()) return bad(st);
  }
  if (*max_batch < 1 || *max_batch > kMaxBatch) {
    return bad(Status::InvalidArgument(
        fmt::format("READY: max_batch must be in 1..{}, got {}", kMaxBatch, *max_batch)));
  }
  int64_t max_leases = 1;  // a worker that does not say holds one lease at a time
  if (m.header.contains("max_leases")) {
    auto ml = wire::GetInt(m, "max_leases");
    if (!ml.ok()) return bad(ml.status());
    if (*ml < 1 || *ml > kMaxLeases) {
      return bad(Status::InvalidArgument(
          fmt::format("READY: max_leases must be in 1..{}, got {}", kMaxLeases, *ml)));
    }
    max_leases = *ml;
  }
  // The leases it holds (mid-task re-registration): "leases", or the older single "lease".
  std::vector<std::string> held;
  if (auto f = m.header.find("leases"); f != m.header.end()) {
    if (!f->is_array() || f->size() > static_cast<size_t>(kMaxLeases)) {
      return bad(Status::InvalidArgument(
          fmt::format("READY: field 'leases' must be an array of at most {} strings", kMaxLeases)));
    }
    for (const json& l : *f) {
      if (!l.is_string() || l.get<std::string>().empty()) {
        return bad(Status::InvalidArgument("READY: field 'leases' must hold lease ids"));
      }
      held.push_back(l.get<std::string>());
    }
  } else if (auto f1 = m.header.find("lease");
             f1 != m.header.end() && f1->is_string() && !f1->get<std::string>().empty()) {
    held.push_back(f1->get<std::string>());
  }
  auto shape = m.header.find("shape");
  auto field = [&](const char* k) -> const json* {
    if (shape == m.header.end() || !shape->is_object()) return nullptr;
    auto f = shape->find(k);
    return f == shape->end() ? nullptr : &*f;
  };
  const json *fr = field("frames"), *ht = field("height"), *wt = field("width"), *fp = field("fps");
  if (!fr || !ht || !wt || !fp || !fr->is_number_integer() || !ht->is_number_integer() ||
      !wt->is_number_integer() || !fp->is_number()) {
    return bad(Status::InvalidArgument(
        "READY: field 'shape' must be {frames, height, width: integers, fps: number}"));
  }
  std::string reason;
  if (*preset != opts_.preset) {
    reason = fmt::format("preset '{}' does not match the coordinator's preset '{}'", *preset,
                         opts_.preset);
  } else if (*stage < 0 || *stage >= static_cast<int64_t>(table_.size())) {
    reason = fmt::format("stage {} does not exist in preset '{}' (0..{})", *stage, opts_.preset,
                         table_.size() - 1);
  } else {
    const auto& want = table_[*stage];
    const int64_t f = fr->get<int64_t>(), h = ht->get<int64_t>(), wd = wt->get<int64_t>();
    const double fps = fp->get<double>();
    if (f != want.frames || h != want.height || wd != want.width ||
        std::abs(fps - want.fps) > 1e-6) {
      reason = fmt::format(
          "stage {} of preset '{}' outputs {}x{}x{}@{}fps, the worker's model {}x{}x{}@{}fps",
          *stage, opts_.preset, want.frames, want.height, want.width, want.fps, f, h, wd, fps);
    }
  }
  if (!reason.empty()) {
    VF_LOG_WARN("coordinator: refusing worker {} ({}): {}", *worker_id, *host, reason);
    Send(*wsock_, id, wire::Message{Command::kDisconnect, {{"reason", reason}}, {}});
    return;
  }
  Worker& w = workers_[id];
  const bool fresh = w.identity.empty() || w.dead;
  if (w.dead) {
    w = Worker{};
  }
  w.identity = id;
  w.worker_id = *worker_id;
  w.host = *host;
  w.pid = *pid;
  w.model_sha256 = *sha;
  w.max_batch = static_cast<int>(*max_batch);
  w.max_leases = static_cast<int>(max_leases);
  w.last_seen_us = Now();
  if (w.stage != *stage) w.credit = false;
  w.stage = static_cast<int>(*stage);
  if (fresh) {
    VF_LOG_INFO("coordinator: worker {} ({} pid {}) registered for stage {} ({}), max batch {}",
                w.worker_id, w.host, w.pid, w.stage, table_[w.stage].name, w.max_batch);
  }
  bool cancelled_any = false;
  for (const std::string& lease_id : held) {
    auto lit = leases_.find(lease_id);
    if (lit == leases_.end() || lit->second.stage != w.stage) {
      VF_LOG_INFO("coordinator: worker {} holds lease {}, which is no longer valid", w.worker_id,
                  lease_id);
      Send(
          *wsock_, id,
          wire::Message{
              Command::kCancel, {{"lease", lease_id}, {"reason", "lease is no longer valid"}}, {}});
      cancelled_any = true;  // it offers the credit again once it has dropped the lease
      continue;
    }
    Lease& l = lit->second;
    if (l.identity != id) {
      auto old = workers_.find(l.identity);
      if (old != workers_.end()) old->second.leases.erase(lease_id);
      l.identity = id;
      l.last_work_us = Now();  // a new connection: the worker starts its transfers afresh
    }
    if (l.order == 0) l.order = ++lease_counter_;  // loaded after a restart: the worker's order
    if (w.leases.insert(lease_id).second) {
      for (auto& [job_id, active] : l.tasks) {
        if (active) jobs_.at(job_id).tasks[l.stage].worker_id = w.worker_id;
      }
      VF_LOG_INFO("coordinator: worker {} reattached lease {}", w.worker_id, lease_id);
    }
  }
  if (cancelled_any || (!held.empty() && Room(w) <= 0)) return;
  if (w.quarantined) return;
  if (AwaitingReupload(w)) {
    VF_LOG_INFO("coordinator: worker {} is uploading a result again; no new work", w.worker_id);
    return;
  }
  OfferCredit(w);
  dirty_[w.stage] = true;
}

void Coordinator::Impl::ReadyAgain(const std::string& id) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second.dead) return;
  Worker& w = it->second;
  if (w.quarantined || AwaitingReupload(w)) return;
  OfferCredit(w);
  dirty_[w.stage] = true;
}

Coordinator::Impl::Lease* Coordinator::Impl::CurrentLease(const std::string& id,
                                                          const wire::Message& m) {
  auto lease_id = wire::GetString(m, "lease");
  if (!lease_id.ok()) {
    SendError(*wsock_, id, "bad_request", lease_id.status().message());
    return nullptr;
  }
  auto it = leases_.find(*lease_id);
  if (it == leases_.end() || it->second.identity != id) {
    VF_LOG_INFO("coordinator: dropping {} for stale lease {} from {}", wire::CommandName(m.command),
                *lease_id, PeerName(id));
    SendError(*wsock_, id, "stale_lease",
              fmt::format("{}: lease {} is not current (expired, cancelled or finished)",
                          wire::CommandName(m.command), *lease_id),
              {{"lease", *lease_id}});
    // Uploads the stale message referred to are of no further use.
    auto ups = m.header.find("uploads");
    if (ups != m.header.end() && ups->is_array()) {
      for (const auto& u : *ups) {
        if (u.is_string()) uploads_.erase({id, u.get<std::string>()});
      }
    }
    return nullptr;
  }
  return &it->second;
}

void Coordinator::Impl::OnProgress(Worker& w, const wire::Message& m) {
  auto step = wire::GetInt(m, "step");
  auto steps = wire::GetInt(m, "steps");
  if (!step.ok() || !steps.ok()) {
    return SendError(*wsock_, w.identity, "bad_request",
                     (!step.ok() ? step.status() : steps.status()).message());
  }
  Lease* l = CurrentLease(w.identity, m);
  if (!l) return;
  // Live only: watchers see every step; the store gets progress with checkpoints and results.
  for (const auto& [job_id, active] : l->tasks) {
    if (!active) continue;
    TaskRecord& task = jobs_.at(job_id).tasks[l->stage];
    task.step = static_cast<int>(*step);
    task.steps = static_cast<int>(*steps);
    Notify(job_id, "progress", {{"stage", l->stage}, {"step", *step}, {"steps", *steps}});
  }
}

// The bytes a CHECKPOINT or RESULT refers to: one upload per task, PUT in chunks before, or, for
// small outputs, the message's own payload frames ("inline": true), which saves the PUT/PUT_ACK
// round trip per task.
Result<std::vector<std::string>> Coordinator::Impl::TakeUploads(const std::string& id,
                                                                wire::Message& m, size_t count) {
  auto inl = m.header.find("inline");
  if (inl != m.header.end()) {
    const char* what = wire::CommandName(m.command);
    if (!inl->is_boolean() || !inl->get<bool>()) {
      return Status::InvalidArgument(fmt::format("{}: field 'inline' must be true", what));
    }
    if (m.header.contains("uploads")) {
      return Status::InvalidArgument(fmt::format("{}: 'inline' and 'uploads' together", what));
    }
    if (m.payload.size() != count) {
      return Status::InvalidArgument(fmt::format("{}: {} inline payloads for a lease of {} task(s)",
                                                 what, m.payload.size(), count));
    }
    for (const std::string& p : m.payload) {
      if (p.size() > opts_.max_upload_bytes) {
        return Status::InvalidArgument(fmt::format(
            "{}: inline payload of {} bytes exceeds the limit of {}", what, p.size(),
            opts_.max_upload_bytes));
      }
    }
    return std::move(m.payload);
  }
  auto ups = m.header.find("uploads");
  if (ups == m.header.end() || !ups->is_array()) {
    return Status::InvalidArgument(
        fmt::format("{}: field 'uploads' must be an array", wire::CommandName(m.command)));
  }
  std::vector<std::string> out;
  Status err;
  for (const auto& u : *ups) {
    if (!u.is_string()) {
      err = Status::InvalidArgument(fmt::format("{}: 'uploads' must hold upload ids (strings)",
                                                wire::CommandName(m.command)));
      continue;
    }
    auto it = uploads_.find({id, u.get<std::string>()});
    if (it == uploads_.end()) {
      err = Status::InvalidArgument(
          fmt::format("{}: no upload '{}'", wire::CommandName(m.command), u.get<std::string>()));
      continue;
    }
    if (it->second.data.size() != it->second.total) {
      err = Status::InvalidArgument(fmt::format("{}: upload '{}' is incomplete ({} of {} bytes)",
                                                wire::CommandName(m.command), it->first.second,
                                                it->second.data.size(), it->second.total));
    } else {
      out.push_back(std::move(it->second.data));
    }
    uploads_.erase(it);
  }
  if (!err.ok()) return err;
  if (out.size() != count) {
    return Status::InvalidArgument(fmt::format("{}: {} uploads for a lease of {} task(s)",
                                               wire::CommandName(m.command), out.size(), count));
  }
  return out;
}

// A CHECKPOINT or RESULT naming an upload that is missing or incomplete (the PUTs were lost with a
// connection, or the coordinator dropped the upload): ERROR unknown_upload, the lease stays and
// the worker uploads again. A RESULT gets 3 such answers, then the old rule (a bad result) holds.
bool Coordinator::Impl::UploadsLost(Worker& w, Lease& l, const wire::Message& m) {
  auto ups = m.header.find("uploads");
  if (ups == m.header.end() || !ups->is_array() || m.header.contains("inline")) {
    return false;  // TakeUploads says why, or takes the inline bytes
  }
  std::string missing;
  for (const auto& u : *ups) {
    if (!u.is_string()) return false;
    auto it = uploads_.find({w.identity, u.get<std::string>()});
    if (it == uploads_.end() || it->second.data.size() != it->second.total) {
      missing = u.get<std::string>();
      break;
    }
  }
  if (missing.empty()) return false;
  const bool result = m.command == Command::kResult;
  if (result && l.reuploads >= 3) return false;
  for (const auto& u : *ups) uploads_.erase({w.identity, u.get<std::string>()});
  const std::string what = wire::CommandName(m.command);
  VF_LOG_WARN(
      "coordinator: {} of lease {} from {} names upload '{}', which is missing or "
      "incomplete; asking the worker to upload again",
      what, l.id, w.worker_id, missing);
  if (result) {
    ++l.reuploads;
    l.awaiting_reupload = true;
  }
  SendError(*wsock_, w.identity, "unknown_upload",
            fmt::format("{}: upload '{}' is missing or incomplete; upload it again", what, missing),
            {{"lease", l.id}, {"command", what}, {"upload", missing}});
  return true;
}

// A lease is only kept alive by work on it: a worker that heartbeats but has stopped working on
// it (wedged on a lost message, a hung device) gives it back after lease_stall_seconds.
void Coordinator::Impl::CheckStalledLeases(int64_t now) {
  if (opts_.lease_stall_seconds <= 0) return;
  const auto limit_us = static_cast<int64_t>(opts_.lease_stall_seconds * 1e6);
  std::vector<std::string> stalled;
  for (auto& [id, l] : leases_) {
    if (!l.identity.empty() && now - l.last_work_us > limit_us) stalled.push_back(id);
  }
  for (const auto& id : stalled) {
    auto lit = leases_.find(id);
    if (lit == leases_.end()) continue;
    const std::string identity = lit->second.identity;
    auto wit = workers_.find(identity);
    Worker* w = wit != workers_.end() ? &wit->second : nullptr;
    const std::string error = fmt::format(
        "lease stalled: worker {} sent no PROGRESS, CHECKPOINT, RESULT, FETCH or PUT for {} s",
        w ? w->worker_id : PeerName(identity), opts_.lease_stall_seconds);
    VF_LOG_WARN("coordinator: lease {} (stage {}): {}; re-queueing it from its checkpoint", id,
                lit->second.stage, error);
    Send(*wsock_, identity,
         wire::Message{Command::kCancel, {{"lease", id}, {"reason", error}}, {}});
    FailLease(id, error, /*retryable=*/true, w);
    // The credit the lease took comes back with it: a READY refused while the worker owed an
    // upload, or one spent on an ASSIGN the worker never got (it will not answer this CANCEL of
    // a lease it does not know). A worker that did hold the lease sends READY as well; that one
    // finds the credit given.
    if (w && !w->dead && !w->quarantined && !AwaitingReupload(*w)) {
      OfferCredit(*w);
      dirty_[w->stage] = true;
    }
  }
}

void Coordinator::Impl::OnCheckpoint(Worker& w, wire::Message& m) {
  auto step = wire::GetInt(m, "step");
  if (!step.ok()) return SendError(*wsock_, w.identity, "bad_request", step.status().message());
  Lease* l = CurrentLease(w.identity, m);
  if (!l) return;
  if (UploadsLost(w, *l, m)) return;
  auto data = TakeUploads(w.identity, m, l->tasks.size());
  if (!data.ok()) {
    VF_LOG_WARN("coordinator: checkpoint from {} ignored: {}", w.worker_id,
                data.status().message());
    return SendError(*wsock_, w.identity, "bad_request", data.status().message(),
                     {{"lease", l->id}});
  }
  const auto& shape = table_[l->stage];
  Txn t(store_->NewTxn());
  for (size_t i = 0; i < l->tasks.size(); ++i) {
    if (!l->tasks[i].second) continue;
    auto v = wire::DecodeVideo((*data)[i]);
    if (v.ok() &&
        (v->frames != shape.frames || v->height != shape.height || v->width != shape.width)) {
      v = Status::InvalidArgument(fmt::format("latent {} does not match stage {} ({}x{}x{})",
                                              v->ShapeString(), l->stage, shape.frames,
                                              shape.height, shape.width));
    }
    if (!v.ok()) {
      VF_LOG_WARN("coordinator: checkpoint from {} ignored: {}", w.worker_id, v.status().message());
      return SendError(*wsock_, w.identity, "bad_request", "CHECKPOINT: " + v.status().message(),
                       {{"lease", l->id}});
    }
    const std::string& job_id = l->tasks[i].first;
    TaskRecord task = jobs_.at(job_id).tasks[l->stage];
    const std::string key = CkptKey(job_id, l->stage);
    Status st = t.PutBlob(key, (*data)[i]);
    if (!st.ok()) return SendError(*wsock_, w.identity, "storage", st.message());
    task.checkpoint_blob = key;
    task.checkpoint_step = static_cast<int>(*step);
    task.step = static_cast<int>(*step);
    task.updated_us = Now();
    t.Task(task);
    t.Event(job_id, "checkpoint", {{"stage", l->stage}, {"step", *step}});
  }
  Status st = Apply(t);
  if (!st.ok()) SendError(*wsock_, w.identity, "storage", st.message(), {{"lease", l->id}});
}

void Coordinator::Impl::OnResult(Worker& w, wire::Message& m) {
  Lease* l = CurrentLease(w.identity, m);
  if (!l) return;
  if (UploadsLost(w, *l, m)) return;
  const std::string lease_id = l->id;
  const int stage = l->stage;
  const auto tasks = l->tasks;
  auto data = TakeUploads(w.identity, m, tasks.size());
  Status bad = data.status();
  const auto& shape = table_[stage];
  for (size_t i = 0; bad.ok() && i < tasks.size(); ++i) {
    if (!tasks[i].second) continue;
    auto v = wire::VerifyVideo((*data)[i]);  // every check; the encoder decodes a final video
    if (!v.ok()) {
      bad = v.status();
    } else if (v->channels != 3 || v->frames != shape.frames || v->height != shape.height ||
               v->width != shape.width || std::abs(v->fps - shape.fps) > 1e-6) {
      bad = Status::InvalidArgument(
          fmt::format("output {} does not match stage {} ({}): 3x{}x{}x{}@{}fps", v->ShapeString(),
                      stage, shape.name, shape.frames, shape.height, shape.width, shape.fps));
    }
  }
  if (!bad.ok()) {
    VF_LOG_WARN("coordinator: bad RESULT for lease {} from {}: {}", lease_id, w.worker_id,
                bad.message());
    SendError(*wsock_, w.identity, "bad_request", "RESULT: " + bad.message(),
              {{"lease", lease_id}});
    FailLease(lease_id, "bad result: " + bad.message(), true, &w);
    return;
  }
  const int64_t now = Now();
  Txn t(store_->NewTxn());
  std::vector<std::string> finals;  // jobs whose last stage this was
  int done = 0;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const std::string& job_id = tasks[i].first;
    if (!tasks[i].second) {
      VF_LOG_INFO("coordinator: dropping result of lease {} for cancelled job {}", lease_id,
                  job_id);
      continue;
    }
    Job& job = jobs_.at(job_id);
    const std::string key = OutKey(job_id, stage);
    Status st = t.PutBlob(key, (*data)[i]);
    if (!st.ok()) return SendError(*wsock_, w.identity, "storage", st.message());
    TaskRecord task = job.tasks[stage];
    task.state = TaskState::kDone;
    task.output_blob = key;
    task.lease_id.clear();
    task.lease_expires_us = 0;
    task.step = task.steps;
    task.error.clear();
    task.updated_us = now;
    t.Task(std::move(task));
    JobRecord rec = job.rec;
    rec.stages_done = stage + 1;
    rec.updated_us = now;
    t.Event(job_id, "stage_done",
            {{"stage", stage}, {"worker", w.worker_id}, {"bytes", (*data)[i].size()}});
    if (stage + 1 < rec.num_stages) {
      TaskRecord next = job.tasks[stage + 1];
      next.state = TaskState::kReady;
      next.input_blob = key;
      next.updated_us = now;
      t.Task(std::move(next));
    } else {
      t.Event(job_id, "encoding", {{"format", job.spec.format}});
      finals.push_back(job_id);
    }
    t.Job(std::move(rec));
    ++done;
  }
  Status st = Apply(t);
  if (!st.ok()) {
    return SendError(*wsock_, w.identity, "storage", "RESULT not stored: " + st.message(),
                     {{"lease", lease_id}});
  }
  // The next stage's worker fetches this output at once: serve it from memory (the bytes just
  // stored, which the store checksummed) instead of reading it back and verifying it again.
  std::map<std::string, std::shared_ptr<const std::string>> outputs;
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (!tasks[i].second) continue;
    outputs[tasks[i].first] = CacheBlob(OutKey(tasks[i].first, stage), std::move((*data)[i]));
  }
  leases_.erase(lease_id);
  w.leases.erase(lease_id);
  w.done += done;
  w.consecutive_failures = 0;
  for (const auto& job_id : finals) StartEncode(jobs_.at(job_id), outputs.at(job_id));
}

void Coordinator::Impl::OnFail(Worker& w, const wire::Message& m) {
  auto error = wire::GetString(m, "error");
  if (!error.ok()) return SendError(*wsock_, w.identity, "bad_request", error.status().message());
  auto retryable = wire::GetBool(m, "retryable");
  if (!retryable.ok()) {
    return SendError(*wsock_, w.identity, "bad_request", retryable.status().message());
  }
  Lease* l = CurrentLease(w.identity, m);
  if (!l) return;
  VF_LOG_WARN("coordinator: worker {} failed lease {} ({}): {}", w.worker_id, l->id,
              *retryable ? "retryable" : "not retryable", *error);
  FailLease(l->id, *error, *retryable, &w);
}

void Coordinator::Impl::OnPut(const std::string& id, const wire::Message& m) {
  auto upload = wire::GetString(m, "upload");
  auto offset = wire::GetInt(m, "offset");
  auto total = wire::GetInt(m, "total");
  Status st = !upload.ok() ? upload.status() : !offset.ok() ? offset.status() : total.status();
  if (st.ok() && m.payload.size() != 1) {
    st = Status::InvalidArgument("PUT: needs exactly one data frame");
  }
  if (st.ok() && (upload->empty() || upload->size() > 256)) {
    st = Status::InvalidArgument("PUT: upload id must be 1..256 characters");
  }
  if (st.ok() && (*total < 0 || static_cast<uint64_t>(*total) > opts_.max_upload_bytes)) {
    st = Status::InvalidArgument(fmt::format("PUT: upload of {} bytes exceeds the limit of {}",
                                             *total, opts_.max_upload_bytes));
  }
  if (!st.ok()) {
    if (upload.ok()) uploads_.erase({id, *upload});
    VF_LOG_WARN("coordinator: {}", st.message());
    return SendError(*wsock_, id, "bad_request", st.message(),
                     upload.ok() ? json{{"upload", *upload}} : json::object());
  }
  auto key = std::make_pair(id, *upload);
  auto it = uploads_.find(key);
  if (it == uploads_.end()) {
    size_t mine = 0;
    for (auto u = uploads_.lower_bound({id, ""}); u != uploads_.end() && u->first.first == id;
         ++u) {
      ++mine;
    }
    if (mine >= kMaxUploadsPerPeer) {
      st = Status::InvalidArgument(
          fmt::format("PUT: more than {} uploads open at once", kMaxUploadsPerPeer));
    } else if (*offset != 0) {
      st = Status::InvalidArgument(
          fmt::format("PUT: upload '{}' must start at offset 0, got {}", *upload, *offset));
    } else {
      it = uploads_.emplace(key, Upload{}).first;
      it->second.total = static_cast<uint64_t>(*total);
      // Grows as chunks arrive; reserve only a little so a false total cannot grab memory.
      it->second.data.reserve(std::min<uint64_t>(it->second.total, 64ull << 20));
    }
  } else if (it->second.total != static_cast<uint64_t>(*total)) {
    st = Status::InvalidArgument(fmt::format("PUT: upload '{}' changed its total from {} to {}",
                                             *upload, it->second.total, *total));
  } else if (*offset >= 0 && static_cast<uint64_t>(*offset) < it->second.data.size() &&
             static_cast<uint64_t>(*offset) + m.payload[0].size() <= it->second.data.size() &&
             it->second.data.compare(static_cast<size_t>(*offset), m.payload[0].size(),
                                     m.payload[0]) == 0) {
    // A re-sent chunk (its PUT_ACK was lost or late): acknowledge it again, append nothing.
    Send(*wsock_, id,
         wire::Message{
             Command::kPutAck,
             {{"upload", *upload}, {"offset", *offset}, {"received", it->second.data.size()}},
             {}});
    return;
  } else if (static_cast<uint64_t>(*offset) != it->second.data.size()) {
    st = Status::InvalidArgument(fmt::format("PUT: upload '{}' expected offset {}, got {}", *upload,
                                             it->second.data.size(), *offset));
  }
  if (st.ok() && it->second.data.size() + m.payload[0].size() > it->second.total) {
    st = Status::InvalidArgument(
        fmt::format("PUT: upload '{}' overruns its total of {} bytes", *upload, it->second.total));
  }
  if (!st.ok()) {
    uploads_.erase(key);
    VF_LOG_WARN("coordinator: {}", st.message());
    return SendError(*wsock_, id, "bad_request", st.message(), {{"upload", *upload}});
  }
  it->second.data.append(m.payload[0]);
  Send(*wsock_, id,
       wire::Message{
           Command::kPutAck,
           {{"upload", *upload}, {"offset", *offset}, {"received", it->second.data.size()}},
           {}});
}

void Coordinator::Impl::OnFetch(zmq::socket_t& sock, const std::string& id,
                                const wire::Message& m) {
  json extra = json::object();
  if (m.header.contains("rid") && m.header["rid"].is_string()) extra["rid"] = m.header["rid"];
  auto blob = wire::GetString(m, "blob");
  auto offset = wire::GetInt(m, "offset");
  Status st = !blob.ok() ? blob.status() : offset.status();
  int64_t length = static_cast<int64_t>(opts_.chunk_bytes);
  if (st.ok() && m.header.contains("length")) {
    auto l = wire::GetInt(m, "length");
    if (!l.ok()) {
      st = l.status();
    } else if (*l <= 0) {
      st = Status::InvalidArgument("FETCH: length must be positive");
    } else {
      length = std::min(length, *l);
    }
  }
  if (st.ok() && *offset < 0) st = Status::InvalidArgument("FETCH: offset must not be negative");
  if (blob.ok()) extra["blob"] = *blob;
  if (!st.ok()) return SendError(sock, id, "bad_request", st.message(), extra);
  auto data = LoadBlob(*blob);
  if (!data.ok()) {
    const bool missing = data.status().IsNotFound();
    VF_LOG_WARN("coordinator: FETCH '{}': {}", *blob, data.status().ToString());
    return SendError(sock, id, missing ? "not_found" : "corruption",
                     missing ? fmt::format("no blob '{}'", *blob) : data.status().message(), extra);
  }
  const auto& bytes = **data;
  if (static_cast<uint64_t>(*offset) > bytes.size()) {
    return SendError(sock, id, "bad_request",
                     fmt::format("FETCH: offset {} is past the end of '{}' ({} bytes)", *offset,
                                 *blob, bytes.size()),
                     extra);
  }
  const size_t n = std::min<size_t>(length, bytes.size() - *offset);
  extra["offset"] = *offset;
  extra["total"] = bytes.size();
  wire::Message reply{Command::kChunk, std::move(extra), {bytes.substr(*offset, n)}};
  Send(sock, id, reply);
}

// ---------------------------------------------------------------------------------------------
// Client API

void Coordinator::Impl::Reply(const std::string& id, const std::string& rid, json body) {
  body["rid"] = rid;
  Send(*asock_, id, wire::Message{Command::kReply, std::move(body), {}});
}

void Coordinator::Impl::ApiError(const std::string& id, const std::string& rid,
                                 const std::string& code, const std::string& error) {
  VF_LOG_DEBUG("coordinator: client request {} refused ({}): {}", rid, code, error);
  SendError(*asock_, id, code, error, {{"rid", rid}});
}

void Coordinator::Impl::OnApiMessage(const std::string& id, wire::Message& m) {
  std::string rid;
  auto r = m.header.find("rid");
  if (r != m.header.end() && r->is_string()) rid = *r;
  if (m.command == Command::kFetch) return OnFetch(*asock_, id, m);
  if (rid.empty()) {
    VF_LOG_WARN("coordinator: {} from client {} without a rid", wire::CommandName(m.command),
                PeerName(id));
    return ApiError(
        id, "", "bad_request",
        fmt::format("{}: field 'rid' must be a non-empty string", wire::CommandName(m.command)));
  }
  switch (m.command) {
    case Command::kSubmit:
      return OnSubmit(id, rid, m);
    case Command::kStatus:
      return OnStatus(id, rid, m);
    case Command::kList:
      return OnList(id, rid, m);
    case Command::kWatch:
      return OnWatch(id, rid, m);
    case Command::kCancelJob:
    case Command::kPause:
    case Command::kResume:
    case Command::kRetry:
      return OnJobControl(id, rid, m);
    case Command::kWorkers:
      return OnWorkers(id, rid);
    default:
      VF_LOG_WARN("coordinator: {} is not a client command", wire::CommandName(m.command));
      return ApiError(id, rid, "unknown_command",
                      fmt::format("{} is not a client command", wire::CommandName(m.command)));
  }
}

void Coordinator::Impl::OnSubmit(const std::string& id, const std::string& rid,
                                 const wire::Message& m) {
  auto js = m.header.find("jobs");
  if (js == m.header.end() || !js->is_array() || js->empty()) {
    return ApiError(id, rid, "bad_request", "SUBMIT: field 'jobs' must be a non-empty array");
  }
  std::vector<JobSpec> specs;
  specs.reserve(js->size());
  for (size_t i = 0; i < js->size(); ++i) {
    auto spec = JobSpec::FromJson((*js)[i]);
    if (spec.ok() && spec->preset != opts_.preset) {
      spec = Status::InvalidArgument(
          fmt::format("job spec: preset '{}' does not match this farm's preset '{}'", spec->preset,
                      opts_.preset));
    }
    if (!spec.ok()) {
      return ApiError(
          id, rid, "bad_request",
          fmt::format("job {}: {} (nothing was submitted)", i, spec.status().message()));
    }
    specs.push_back(std::move(*spec));
  }
  Status space = store_->CheckSpaceForNewJob();
  if (!space.ok()) {
    VF_LOG_ERROR("coordinator: refusing {} new job(s): {}", specs.size(), space.message());
    return ApiError(id, rid,
                    space.code() == Status::Code::kResourceExhausted ? "disk_full" : "storage",
                    "disk full, new jobs are refused: " + space.message());
  }
  const int64_t now = Now();
  Txn t(store_->NewTxn());
  json ids = json::array();
  for (const auto& spec : specs) {
    JobRecord rec;
    rec.submit_seq = store_->NextSubmitSeq();
    rec.id = store_->NewJobId(rec.submit_seq);
    json spec_json = spec.ToJson();
    rec.spec = storage::JobSpecText(spec_json);
    rec.priority = spec.priority;
    rec.state = JobState::kQueued;
    rec.num_stages = spec.NumStages(table_.size());
    rec.created_us = rec.updated_us = now;
    rec.keep_intermediates = spec.keep_intermediates;
    for (int s = 0; s < rec.num_stages; ++s) {
      TaskRecord task;
      task.job_id = rec.id;
      task.stage = s;
      task.state = s == 0 ? TaskState::kReady : TaskState::kWaiting;
      task.priority = rec.priority;
      task.submit_seq = rec.submit_seq;
      task.updated_us = now;
      t.Task(std::move(task));
    }
    t.Event(rec.id, "submitted", {{"priority", rec.priority}, {"preset", spec.preset}});
    ids.push_back(rec.id);
    t.new_specs.emplace(rec.id, std::make_pair(spec, std::move(spec_json)));
    t.Job(std::move(rec));
  }
  Status st = Apply(t);
  if (!st.ok()) {
    return ApiError(id, rid,
                    st.code() == Status::Code::kResourceExhausted ? "disk_full" : "storage",
                    "SUBMIT not stored: " + st.message());
  }
  VF_LOG_INFO("coordinator: {} job(s) submitted", ids.size());
  Reply(id, rid, {{"jobs", ids}});
}

json Coordinator::Impl::JobJson(const Job& job, bool detailed) {
  const JobRecord& r = job.rec;
  json j = {{"id", r.id},
            {"state", storage::JobStateName(r.state)},
            {"priority", r.priority},
            {"submit_seq", r.submit_seq},
            {"stages_done", r.stages_done},
            {"num_stages", r.num_stages},
            {"prompt", job.spec.prompt},
            {"error", r.error},
            {"output_blob", r.output_blob},
            {"created_us", r.created_us},
            {"updated_us", r.updated_us},
            {"finished_us", r.finished_us}};
  if (!detailed) return j;
  j["spec"] = job.spec_json;
  j["encoding"] = job.encoding;
  if (!r.output_blob.empty()) {
    auto size = BlobSize(r.output_blob);
    j["output_bytes"] = size.ok() ? json(*size) : json(nullptr);
  }
  json tasks = json::array();
  for (const auto& t : job.tasks) {
    tasks.push_back({{"stage", t.stage},
                     {"name", table_[t.stage].name},
                     {"state", storage::TaskStateName(t.state)},
                     {"step", t.step},
                     {"steps", t.steps},
                     {"attempts", t.attempts},
                     {"worker", t.worker_id},
                     {"lease", t.lease_id},
                     {"checkpoint_step", t.checkpoint_step},
                     {"error", t.error}});
  }
  j["tasks"] = tasks;
  return j;
}

void Coordinator::Impl::OnStatus(const std::string& id, const std::string& rid,
                                 const wire::Message& m) {
  auto jf = m.header.find("job");
  if (jf != m.header.end() && !jf->is_null()) {
    if (!jf->is_string()) return ApiError(id, rid, "bad_request", "STATUS: 'job' must be a string");
    auto it = jobs_.find(jf->get<std::string>());
    if (it == jobs_.end()) {
      return ApiError(id, rid, "not_found", fmt::format("no job '{}'", jf->get<std::string>()));
    }
    return Reply(id, rid, {{"job", JobJson(it->second, true)}});
  }
  json counts = json::object();
  for (auto s : {JobState::kQueued, JobState::kRunning, JobState::kPaused, JobState::kDone,
                 JobState::kFailed, JobState::kCancelled}) {
    counts[storage::JobStateName(s)] = 0;
  }
  for (const auto& [jid, job] : jobs_) {
    counts[storage::JobStateName(job.rec.state)] =
        counts[storage::JobStateName(job.rec.state)].get<int>() + 1;
  }
  json wcounts = {{"idle", 0}, {"busy", 0}, {"quarantined", 0}, {"dead", 0}};
  for (const auto& [wid, w] : workers_) {
    const char* s = w.dead             ? "dead"
                    : w.quarantined    ? "quarantined"
                    : w.leases.empty() ? "idle"
                                       : "busy";
    wcounts[s] = wcounts[s].get<int>() + 1;
  }
  json ready = json::array();
  for (const auto& q : queues_) ready.push_back(q.size());
  json disk = nullptr;
  auto usage = store_->GetDiskUsage();
  if (usage.ok()) {
    disk = {{"total_bytes", usage->total_bytes},
            {"blob_bytes", usage->blob_bytes},
            {"sst_bytes", usage->sst_bytes},
            {"free_bytes", usage->free_bytes}};
  }
  Reply(id, rid,
        {{"jobs", counts},
         {"total_jobs", jobs_.size()},
         {"workers", wcounts},
         {"ready", ready},
         {"leases", leases_.size()},
         {"preset", opts_.preset},
         {"disk", disk},
         {"store",
          {{"commits", commits_},
           {"syncs", syncs_},
           {"group_commit", opts_.group_commit},
           {"commit_s", static_cast<double>(commit_us_) / 1e6},
           {"sync_s", static_cast<double>(sync_us_) / 1e6}}},
         {"loop",
          {{"busy_s", static_cast<double>(loop_busy_us_) / 1e6},
           {"wait_s", static_cast<double>(loop_wait_us_) / 1e6}}}});
}

void Coordinator::Impl::OnList(const std::string& id, const std::string& rid,
                               const wire::Message& m) {
  std::optional<JobState> filter;
  auto sf = m.header.find("state");
  if (sf != m.header.end() && !sf->is_null()) {
    if (!sf->is_string()) return ApiError(id, rid, "bad_request", "LIST: 'state' must be a string");
    auto s = storage::ParseJobState(*sf);
    if (!s.ok()) {
      return ApiError(id, rid, "bad_request",
                      fmt::format("LIST: unknown state '{}' (queued, running, paused, done, "
                                  "failed, cancelled)",
                                  sf->get<std::string>()));
    }
    filter = *s;
  }
  int64_t limit = 1000;
  if (m.header.contains("limit")) {
    auto l = wire::GetInt(m, "limit");
    if (!l.ok() || *l < 1)
      return ApiError(id, rid, "bad_request", "LIST: 'limit' must be a positive integer");
    limit = *l;
  }
  json list = json::array();
  size_t matched = 0;
  for (const auto& [jid, job] : jobs_) {
    if (filter && job.rec.state != *filter) continue;
    ++matched;
    if (static_cast<int64_t>(list.size()) < limit) list.push_back(JobJson(job, false));
  }
  Reply(id, rid, {{"jobs", list}, {"total", matched}});
}

void Coordinator::Impl::OnWatch(const std::string& id, const std::string& rid,
                                const wire::Message& m) {
  auto job_id = wire::GetString(m, "job");
  if (!job_id.ok()) return ApiError(id, rid, "bad_request", job_id.status().message());
  auto it = jobs_.find(*job_id);
  if (it == jobs_.end()) return ApiError(id, rid, "not_found", fmt::format("no job '{}'", *job_id));
  Reply(id, rid, {{"job", JobJson(it->second, true)}});
  auto& list = watchers_[*job_id];
  if (std::find(list.begin(), list.end(), std::make_pair(id, rid)) == list.end()) {
    list.emplace_back(id, rid);
  }
  const JobRecord& r = it->second.rec;
  if (IsTerminal(r.state)) {
    json data = {{"error", r.error}, {"replay", true}};
    if (r.state == JobState::kDone) data["output_blob"] = r.output_blob;
    Notify(*job_id, storage::JobStateName(r.state), data);
  }
}

void Coordinator::Impl::OnJobControl(const std::string& id, const std::string& rid,
                                     const wire::Message& m) {
  const char* cmd = wire::CommandName(m.command);
  auto job_id = wire::GetString(m, "job");
  if (!job_id.ok()) return ApiError(id, rid, "bad_request", job_id.status().message());
  auto it = jobs_.find(*job_id);
  if (it == jobs_.end()) return ApiError(id, rid, "not_found", fmt::format("no job '{}'", *job_id));
  Job& job = it->second;
  const JobState state = job.rec.state;
  auto wrong = [&](const char* allowed) {
    ApiError(id, rid, "bad_state",
             fmt::format("{}: job {} is {}; only {} jobs can be {}", cmd, *job_id,
                         storage::JobStateName(state), allowed,
                         m.command == Command::kCancelJob ? "cancelled"
                         : m.command == Command::kPause   ? "paused"
                         : m.command == Command::kResume  ? "resumed"
                                                          : "retried"));
  };
  const int64_t now = Now();
  Txn t(store_->NewTxn());
  JobRecord rec = job.rec;
  rec.updated_us = now;
  std::vector<std::pair<std::string, std::string>> cancels;  // identity, lease
  bool reencode = false;
  switch (m.command) {
    case Command::kCancelJob: {
      if (IsTerminal(state)) return wrong("queued, running or paused");
      rec.state = JobState::kCancelled;
      rec.finished_us = now;
      for (const auto& task : job.tasks) {
        if (task.state != TaskState::kReady && task.state != TaskState::kLeased) continue;
        if (task.state == TaskState::kLeased) {
          auto l = leases_.find(task.lease_id);
          if (l != leases_.end() && !l->second.identity.empty()) {
            cancels.emplace_back(l->second.identity, task.lease_id);
          }
        }
        TaskRecord c = task;
        c.state = TaskState::kCancelled;
        c.lease_id.clear();
        c.lease_expires_us = 0;
        c.updated_us = now;
        t.Task(c);
      }
      t.Event(rec.id, "cancelled", {{"stages_done", rec.stages_done}});
      break;
    }
    case Command::kPause:
      if (state != JobState::kQueued && state != JobState::kRunning)
        return wrong("queued or running");
      rec.state = JobState::kPaused;
      t.Event(rec.id, "paused", json::object());
      break;
    case Command::kResume: {
      if (state != JobState::kPaused) return wrong("paused");
      bool started = rec.stages_done > 0;
      for (const auto& task : job.tasks) started = started || task.attempts > 0;
      rec.state = started ? JobState::kRunning : JobState::kQueued;
      t.Event(rec.id, "resumed", json::object());
      break;
    }
    case Command::kRetry: {
      if (state != JobState::kFailed && state != JobState::kCancelled)
        return wrong("failed or cancelled");
      rec.error.clear();
      rec.finished_us = 0;
      const int s = rec.stages_done;
      if (s >= rec.num_stages) {
        rec.state = JobState::kRunning;
        reencode = true;
      } else {
        rec.state = s > 0 ? JobState::kRunning : JobState::kQueued;
        TaskRecord task = job.tasks[s];
        task.state = TaskState::kReady;
        task.attempts = 0;
        task.error.clear();
        task.lease_id.clear();
        task.worker_id.clear();
        task.lease_expires_us = 0;
        task.updated_us = now;
        if (s > 0) task.input_blob = OutKey(rec.id, s - 1);
        t.Task(task);
        for (int k = s + 1; k < rec.num_stages; ++k) {
          if (job.tasks[k].state != TaskState::kWaiting) {
            TaskRecord w = job.tasks[k];
            w.state = TaskState::kWaiting;
            w.attempts = 0;
            w.error.clear();
            w.updated_us = now;
            t.Task(w);
          }
        }
      }
      t.Event(rec.id, "retried", {{"stage", s}});
      break;
    }
    default:
      return;
  }
  t.Job(rec);
  Status st = Apply(t);
  if (!st.ok())
    return ApiError(id, rid, "storage", fmt::format("{} not stored: {}", cmd, st.message()));
  for (const auto& [ident, lease] : cancels) {
    Send(*wsock_, ident,
         wire::Message{
             Command::kCancel,
             {{"lease", lease}, {"reason", "job " + *job_id + " cancelled"}, {"job", *job_id}},
             {}});
  }
  if (reencode) {
    auto bytes = store_->GetBlob(OutKey(rec.id, rec.num_stages - 1));
    auto video = bytes.ok() ? wire::VerifyVideo(*bytes) : Result<Video>(bytes.status());
    if (video.ok()) {
      StartEncode(jobs_.at(rec.id), std::make_shared<const std::string>(std::move(*bytes)));
    } else {
      VF_LOG_ERROR("coordinator: job {}: cannot re-encode: {}", rec.id, video.status().ToString());
    }
  }
  VF_LOG_INFO("coordinator: {} job {} → {}", cmd, rec.id, storage::JobStateName(rec.state));
  Reply(id, rid, {{"job", rec.id}, {"state", storage::JobStateName(rec.state)}});
}

void Coordinator::Impl::OnWorkers(const std::string& id, const std::string& rid) {
  const int64_t now = Now();
  std::vector<const Worker*> list;
  for (const auto& [ident, w] : workers_) list.push_back(&w);
  std::sort(list.begin(), list.end(), [](const Worker* a, const Worker* b) {
    return a->stage != b->stage ? a->stage < b->stage : a->worker_id < b->worker_id;
  });
  json out = json::array();
  for (const Worker* w : list) {
    // The current task: of the oldest lease, which the worker works on first.
    std::string lease, job;
    const Lease* oldest = nullptr;
    for (const std::string& lid : w->leases) {
      auto l = leases_.find(lid);
      if (l != leases_.end() && (!oldest || l->second.order < oldest->order)) oldest = &l->second;
    }
    if (oldest) {
      lease = oldest->id;
      for (const auto& [j, active] : oldest->tasks) {
        if (active) {
          job = j;
          break;
        }
      }
    } else if (!w->leases.empty()) {
      lease = *w->leases.begin();
    }
    out.push_back({{"worker_id", w->worker_id},
                   {"host", w->host},
                   {"pid", w->pid},
                   {"stage", w->stage},
                   {"state", w->dead          ? "dead"
                             : w->quarantined ? "quarantined"
                             : lease.empty()  ? "idle"
                                              : "busy"},
                   {"lease", lease},
                   {"job", job},
                   {"leases", w->leases.size()},
                   {"max_batch", w->max_batch},
                   {"max_leases", w->max_leases},
                   {"model_sha256", w->model_sha256},
                   {"done", w->done},
                   {"failed", w->failed},
                   {"last_heartbeat_ms_ago", (now - w->last_seen_us) / 1000}});
  }
  Reply(id, rid, {{"workers", out}});
}

// ---------------------------------------------------------------------------------------------
// Public face

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Coordinator::~Coordinator() { Stop(); }

Result<std::unique_ptr<Coordinator>> Coordinator::Start(const CoordinatorOptions& options,
                                                        zmq::context_t* ctx) {
  if (!ctx) return Status::InvalidArgument("coordinator: no ZeroMQ context");
  auto impl = std::make_unique<Impl>(options, ctx);
  Status st;
  try {
    st = impl->Init();
  } catch (const std::exception& e) {
    st = Status::Internal(std::string("coordinator: starting: ") + e.what());
  }
  if (!st.ok()) {
    impl->Stop();
    return st;
  }
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(impl)));
}

std::string Coordinator::worker_endpoint() const { return impl_->worker_endpoint_; }
std::string Coordinator::api_endpoint() const { return impl_->api_endpoint_; }
void Coordinator::Stop() {
  if (impl_) impl_->Stop();
}

}  // namespace vidfarm::coordinator
