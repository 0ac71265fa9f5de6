// The worker's task loop. Threads:
//   - the Run() thread owns the DEALER socket and does every piece of I/O: READY, heartbeats,
//     FETCH/CHUNK downloads, PUT/PUT_ACK uploads, PROGRESS/CHECKPOINT/RESULT/FAIL;
//   - one compute thread runs StageRunner::Run for the current lease and reports back through a
//     mutex-guarded outbox plus one byte on a pipe that the Run thread polls next to the socket
//     (Stop() writes the same pipe, so it may be called from any thread).
// Every compute job carries a generation number; events of an abandoned lease are dropped.
#include "vidfarm/worker/worker.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <zmq_addon.hpp>

#include "vidfarm/common/log.h"
#include "vidfarm/common/thread_name.h"
#include "vidfarm/common/wire.h"
#include "vidfarm/stage_models/conditioning.h"
#include "vidfarm/stage_models/package.h"
#include "vidfarm/stage_models/preset.h"
#include "vidfarm/stage_models/threads.h"

namespace vidfarm::worker {
namespace {

using Clock = std::chrono::steady_clock;
using wire::Command;
using wire::Message;

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

std::string RandomHex(int digits) {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
  std::string s;
  for (int i = 0; i < digits; ++i) s += "0123456789abcdef"[gen() % 16];
  return s;
}

// One task of an ASSIGN, validated, with its downloaded bytes.
struct Task {
  std::string job;
  uint64_t seed = 0;
  std::string prompt;
  int64_t sample_index = 0;
  models::StageSettings settings;
  std::string input_blob;  // empty for the base stage
  int64_t input_bytes = 0;
  std::string checkpoint_blob;  // empty: start from noise
  int64_t checkpoint_bytes = 0;
  int checkpoint_step = -1;
  bool cancelled = false;  // CANCEL {job} for this task of a batch
};

// A blob being downloaded with FETCH/CHUNK.
struct Download {
  int64_t total = 0;
  std::string data;
  int64_t next_offset = 0;             // next FETCH to send
  std::map<int64_t, int64_t> pending;  // offset → length of FETCHes in flight
  int64_t received = 0;
  Clock::time_point last_activity{};  // last FETCH sent or CHUNK taken
  bool done() const { return received == total; }
};

// Outputs (RESULT) or latents (CHECKPOINT) of one lease being uploaded with PUT/PUT_ACK.
struct Upload {
  std::string id;
  std::string data;
  int64_t next_offset = 0;
  std::set<int64_t> unacked;
  Clock::time_point last_activity{};  // last PUT sent or PUT_ACK taken
  bool done() const { return next_offset >= static_cast<int64_t>(data.size()) && unacked.empty(); }
};
struct UploadGroup {
  bool result = false;  // RESULT, else CHECKPOINT
  int step = 0;
  bool started = false;
  std::vector<Upload> uploads;
};

// Tasks of one lease that share seed, resume step and settings: one StageRunner::Run.
struct ComputeGroup {
  models::StageRequest request;
  models::StageSettings settings;
  std::vector<size_t> task_index;
};
struct ComputeJob {
  uint64_t gen = 0;
  size_t num_tasks = 0;
  std::vector<ComputeGroup> groups;
  std::shared_ptr<std::atomic<bool>> cancel;
};
struct ComputeEvent {
  enum class Kind { kProgress, kCheckpoint, kDone, kFailed } kind = Kind::kProgress;
  uint64_t gen = 0;
  int step = 0, steps = 0;
  std::vector<std::string> blobs;  // encoded latents (checkpoint) or videos (done), in task order
  Status status;
};

// A lease held by the worker: fetching its inputs, waiting for the compute thread, computing,
// or uploading its result.
struct Lease {
  std::string id;
  uint64_t gen = 0;
  std::vector<Task> tasks;
  std::map<std::string, Download> downloads;  // by blob id
  bool computing = false;
  bool computed = false;  // the result is queued for upload
  bool ready_in_result = false;  // the coordinator takes "ready": true in the RESULT (ASSIGN says)
  std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
  std::deque<UploadGroup> uploads;
  std::optional<std::pair<int, int>> progress;  // (step, steps) not yet sent
  Clock::time_point last_progress{};
  // The last CHECKPOINT sent: uploaded again if the coordinator says it lost the upload.
  std::optional<std::pair<int, std::vector<std::string>>> last_checkpoint;
};

// A RESULT sent, kept until the coordinator must have taken it (see sent_results_): uploaded
// again if the coordinator answers ERROR unknown_upload (it lost the upload, e.g. across a
// reconnect) instead of re-running the task.
struct SentResult {
  std::string lease;
  std::vector<Task> tasks;
  std::vector<std::string> blobs;
};

Result<Task> ParseTask(const nlohmann::json& t, int stage, const std::string& preset,
                       const models::StageSpec& spec) {
  if (!t.is_object()) return Status::InvalidArgument("task is not a JSON object");
  auto str = [&](const char* k) -> Result<std::string> {
    auto it = t.find(k);
    if (it == t.end() || !it->is_string()) {
      return Status::InvalidArgument(fmt::format("task field '{}' must be a string", k));
    }
    return it->get<std::string>();
  };
  auto integer = [&](const nlohmann::json& obj, const char* k) -> Result<int64_t> {
    auto it = obj.find(k);
    if (it == obj.end() || !it->is_number_integer()) {
      return Status::InvalidArgument(fmt::format("task field '{}' must be an integer", k));
    }
    return it->get<int64_t>();
  };
  Task task;
  VF_ASSIGN_OR_RETURN(task.job, str("job"));
  VF_ASSIGN_OR_RETURN(int64_t task_stage, integer(t, "stage"));
  if (task_stage != stage) {
    return Status::InvalidArgument(fmt::format(
        "task of job {} is for stage {}, this worker hosts stage {}", task.job, task_stage, stage));
  }
  auto seed_it = t.find("seed");
  if (seed_it == t.end() || !(seed_it->is_number_unsigned() ||
                              (seed_it->is_number_integer() && seed_it->get<int64_t>() >= 0))) {
    return Status::InvalidArgument("task field 'seed' must be a non-negative integer");
  }
  task.seed = seed_it->get<uint64_t>();
  VF_ASSIGN_OR_RETURN(task.prompt, str("prompt"));
  VF_ASSIGN_OR_RETURN(task.sample_index, integer(t, "sample_index"));
  if (task.sample_index < 0)
    return Status::InvalidArgument("task field 'sample_index' is negative");

  auto spec_it = t.find("spec");
  if (spec_it == t.end()) return Status::InvalidArgument("task has no 'spec'");
  nlohmann::json spec_json = *spec_it;
  if (spec_json.is_string()) {
    spec_json = nlohmann::json::parse(spec_json.get<std::string>(), nullptr, false);
  }
  VF_ASSIGN_OR_RETURN(JobSpec job_spec, JobSpec::FromJson(spec_json));
  if (job_spec.preset != preset) {
    return Status::InvalidArgument(
        fmt::format("job {} uses preset '{}', this worker hosts preset '{}'", task.job,
                    job_spec.preset, preset));
  }
  VF_ASSIGN_OR_RETURN(task.settings,
                      models::ResolveStageSettings(spec, OverridesFromSpec(job_spec, stage)));

  auto in_it = t.find("input_blob");
  const bool has_input =
      in_it != t.end() && in_it->is_string() && !in_it->get<std::string>().empty();
  if (spec.kind == StageKind::kBase) {
    if (has_input) return Status::InvalidArgument("the base stage takes no input video");
  } else {
    if (!has_input) {
      return Status::InvalidArgument(fmt::format("stage {} needs 'input_blob' (a string)", stage));
    }
    task.input_blob = in_it->get<std::string>();
    VF_ASSIGN_OR_RETURN(task.input_bytes, integer(t, "input_bytes"));
    if (task.input_bytes <= 0)
      return Status::InvalidArgument("task field 'input_bytes' must be positive");
  }

  auto ck_it = t.find("checkpoint");
  if (ck_it != t.end() && !ck_it->is_null()) {
    if (!ck_it->is_object())
      return Status::InvalidArgument("task field 'checkpoint' must be null or an object");
    auto blob = ck_it->find("blob");
    if (blob == ck_it->end() || !blob->is_string() || blob->get<std::string>().empty()) {
      return Status::InvalidArgument("checkpoint field 'blob' must be a string");
    }
    task.checkpoint_blob = blob->get<std::string>();
    VF_ASSIGN_OR_RETURN(task.checkpoint_bytes, integer(*ck_it, "bytes"));
    VF_ASSIGN_OR_RETURN(int64_t step, integer(*ck_it, "step"));
    if (task.checkpoint_bytes <= 0)
      return Status::InvalidArgument("checkpoint 'bytes' must be positive");
    if (step < 0 || step > task.settings.sampler.steps) {
      return Status::InvalidArgument(
          fmt::format("checkpoint step {} is outside 0..{}", step, task.settings.sampler.steps));
    }
    task.checkpoint_step = static_cast<int>(step);
  }
  return task;
}

}  // namespace

models::StageOverrides OverridesFromSpec(const JobSpec& spec, int stage) {
  models::StageOverrides o;
  const auto k = static_cast<size_t>(stage);
  if (k < spec.steps.size() && spec.steps[k] > 0) o.steps = spec.steps[k];
  if (!spec.sampler.empty()) o.sampler = spec.sampler;
  if (k < spec.guidance.size() && spec.guidance[k] >= 0) o.guidance = spec.guidance[k];
  if (!spec.thresholding.empty()) o.thresholding = spec.thresholding;
  return o;
}

class Worker::Impl {
 public:
  WorkerOptions opt;
  zmq::context_t* ctx = nullptr;
  std::unique_ptr<zmq::context_t> own_ctx;
  std::unique_ptr<models::StageRunner> runner;  // null in simulate mode
  models::StageSpec spec;        // the runner's spec, or the preset's in simulate mode
  std::string simulated_output;  // simulate mode: the encoded answer per task
  std::string model_sha;
  std::string host;
  int wake_read = -1, wake_write = -1;

  std::atomic<bool> stop{false};
  std::atomic<bool> running{false};
  std::atomic<int64_t> done{0}, failed{0};

  ~Impl() {
    if (wake_read >= 0) close(wake_read);
    if (wake_write >= 0) close(wake_write);
  }

  void Wake() {
    const char b = 1;
    [[maybe_unused]] ssize_t n = write(wake_write, &b, 1);  // full pipe: already awake
  }

  Status Run();

 private:
  // ---- compute thread ----
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<ComputeJob> job_;    // guarded by mu_
  bool quit_ = false;                // guarded by mu_
  std::deque<ComputeEvent> outbox_;  // guarded by mu_

  void ComputeLoop();
  void RunJob(const ComputeJob& job);
  void SimulateJob(const ComputeJob& job);
  void Post(ComputeEvent ev) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      outbox_.push_back(std::move(ev));
    }
    Wake();
  }

  // ---- socket thread ----
  zmq::socket_t* dealer_ = nullptr;
  std::deque<Lease> leases_;  // in assignment order; at most MaxLeases() but for a re-upload
  uint64_t next_gen_ = 0;
  uint64_t upload_seq_ = 0;
  Clock::time_point last_recv_{};
  Clock::time_point last_register_{};
  Clock::time_point warn_window_{};
  int warn_count_ = 0;
  int64_t warn_suppressed_ = 0;
  Clock::time_point send_warn_window_{};
  int send_warn_count_ = 0;
  int64_t send_warn_suppressed_ = 0;
  // With one lease at a time the next ASSIGN proves the coordinator took the last RESULT (it
  // answers the READY that followed it); with prefetch an ASSIGN may predate it, so the last
  // MaxLeases() results are kept.
  std::deque<SentResult> sent_results_;

  int MaxLeases() const { return 1 + opt.prefetch; }
  Lease* FindLease(const std::string& id) {
    for (Lease& l : leases_)
      if (l.id == id) return &l;
    return nullptr;
  }
  Lease* FindLeaseByGen(uint64_t gen) {
    for (Lease& l : leases_)
      if (l.gen == gen) return &l;
    return nullptr;
  }
  void EraseLease(const std::string& id) {
    for (auto it = leases_.begin(); it != leases_.end(); ++it) {
      if (it->id == id) {
        leases_.erase(it);
        return;
      }
    }
  }
  std::string LeaseIds() const {
    std::string ids;
    for (const Lease& l : leases_) ids += (ids.empty() ? "" : ", ") + l.id;
    return ids;
  }

  // A flood of garbage must not flood the log: 20 lines per 10 s, then a count.
  bool WarnBudget() {
    const auto now = Clock::now();
    if (now - warn_window_ > std::chrono::seconds(10)) {
      if (warn_suppressed_ > 0) {
        VF_LOG_WARN("worker {}: {} more bad messages from the coordinator were dropped",
                    opt.worker_id, warn_suppressed_);
      }
      warn_window_ = now;
      warn_count_ = 0;
      warn_suppressed_ = 0;
    }
    if (warn_count_ < 20) {
      ++warn_count_;
      return true;
    }
    ++warn_suppressed_;
    return false;
  }

  // A full send queue must not flood the log either: 20 lines per 10 s, then a count.
  bool SendWarnBudget() {
    const auto now = Clock::now();
    if (now - send_warn_window_ > std::chrono::seconds(10)) {
      if (send_warn_suppressed_ > 0) {
        VF_LOG_WARN("worker {}: {} more messages were not sent (send queue full)", opt.worker_id,
                    send_warn_suppressed_);
      }
      send_warn_window_ = now;
      send_warn_count_ = 0;
      send_warn_suppressed_ = 0;
    }
    if (send_warn_count_ < 20) {
      ++send_warn_count_;
      return true;
    }
    ++send_warn_suppressed_;
    return false;
  }
  Clock::duration TransferRetry() const {
    // The default waits two silence windows, so a merely slow coordinator is not sent much more.
    const int ms = opt.transfer_retry_ms > 0
                       ? opt.transfer_retry_ms
                       : 2 * opt.heartbeat_ms * std::max(1, opt.heartbeat_misses);
    return std::chrono::milliseconds(std::max(1, ms));
  }

  bool Send(Command c, nlohmann::json header, std::string payload = {}, bool with_payload = false);
  bool SendMessage(const Message& m);
  // A group whose bytes fit in one chunk travels inside its CHECKPOINT or RESULT ("inline").
  bool Inlinable(const UploadGroup& g) const;
  void RetryStalledTransfers();
  void HandleUnknownUpload(const Message& m);
  void SendReady();
  void Reregister(const char* why, bool coordinator_restarted);
  std::optional<Status> Handle(std::vector<std::string>&& frames);
  void HandleAssign(const Message& m);
  void HandleChunk(const Message& m);
  void HandlePutAck(const Message& m);
  void HandleTransferError(const Message& m, const std::string& error);
  void HandleEvent(ComputeEvent ev);
  void PumpFetches();
  void PumpUploads();
  // True when the lease's RESULT went out (the caller drops the lease).
  bool PumpUploadsOf(Lease& l);
  void FlushProgress(Lease& l, bool force);
  // Hands the oldest lease not yet computed to the compute thread once its inputs are all here,
  // unless one computes.
  void TryStartCompute();
  // False when the lease failed (and is gone).
  bool StartCompute(Lease& l);
  // These drop the lease: `l` dangles afterwards.
  void FailLease(Lease& l, const Status& st, bool retryable);
  void Abandon(Lease& l, const char* why);
  void QueueUploads(Lease& l, bool result, int step, std::vector<std::string> blobs);
};

// ---------------------------------------------------------------------------------------------
// Compute thread

void Worker::Impl::ComputeLoop() {
  NameThisThread(fmt::format("vf-compute-{}", opt.stage));
  if (opt.threads > 0) models::SetComputeThreads(opt.threads);  // LibTorch's team; BLAS pinned to 1
  while (true) {
    ComputeJob job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return quit_ || job_.has_value(); });
      if (quit_) return;
      job = std::move(*job_);
      job_.reset();
    }
    RunJob(job);
  }
}

void Worker::Impl::RunJob(const ComputeJob& job) {
  if (opt.simulate_ms >= 0) return SimulateJob(job);
  const double fps = spec.fps;
  std::vector<std::string> outputs(job.num_tasks);
  try {
    for (const ComputeGroup& g : job.groups) {
      models::SamplerHooks hooks;
      hooks.on_step = [&](int step, int steps) {
        ComputeEvent ev;
        ev.kind = ComputeEvent::Kind::kProgress;
        ev.gen = job.gen;
        ev.step = step;
        ev.steps = steps;
        Post(std::move(ev));
      };
      hooks.should_stop = [&] { return job.cancel->load() || stop.load(); };
      // A CHECKPOINT names one latent per task of the lease at one step: only a lease sampled
      // in one Run can give that.
      if (job.groups.size() == 1 && opt.checkpoint_every > 0) {
        hooks.checkpoint_every = opt.checkpoint_every;
        hooks.on_checkpoint = [&](const models::SamplerCheckpoint& c) {
          ComputeEvent ev;
          ev.kind = ComputeEvent::Kind::kCheckpoint;
          ev.gen = job.gen;
          ev.step = c.next_step;
          ev.blobs.resize(job.num_tasks);
          for (size_t i = 0; i < g.task_index.size(); ++i) {
            auto v = models::TensorToVideo(c.z[static_cast<int64_t>(i)], fps);
            if (!v.ok()) {
              VF_LOG_WARN("worker: checkpoint at step {} not sent: {}", c.next_step,
                          v.status().ToString());
              return;
            }
            ev.blobs[g.task_index[i]] = wire::EncodeVideo(*v);
          }
          Post(std::move(ev));
        };
      }
      auto out = runner->Run(g.request, g.settings, hooks);
      if (!out.ok()) {
        ComputeEvent ev;
        ev.kind = ComputeEvent::Kind::kFailed;
        ev.gen = job.gen;
        ev.status = out.status();
        Post(std::move(ev));
        return;
      }
      for (size_t i = 0; i < g.task_index.size(); ++i)
        outputs[g.task_index[i]] = wire::EncodeVideo((*out)[i]);
    }
  } catch (const std::exception& e) {
    ComputeEvent ev;
    ev.kind = ComputeEvent::Kind::kFailed;
    ev.gen = job.gen;
    ev.status = Status::Internal(std::string("stage run: ") + e.what());
    Post(std::move(ev));
    return;
  }
  ComputeEvent ev;
  ev.kind = ComputeEvent::Kind::kDone;
  ev.gen = job.gen;
  ev.blobs = std::move(outputs);
  Post(std::move(ev));
}

// Simulate mode: the lease takes opt.simulate_ms (in slices, so a cancel or Stop ends it early)
// and every task gets the same constant video of the stage's output shape.
void Worker::Impl::SimulateJob(const ComputeJob& job) {
  const auto until = Clock::now() + std::chrono::milliseconds(opt.simulate_ms);
  for (auto now = Clock::now(); now < until; now = Clock::now()) {
    if (job.cancel->load() || stop.load()) {
      ComputeEvent ev;
      ev.kind = ComputeEvent::Kind::kFailed;
      ev.gen = job.gen;
      ev.status = Status::Cancelled("simulated task cancelled");
      Post(std::move(ev));
      return;
    }
    std::this_thread::sleep_for(
        std::min<Clock::duration>(until - now, std::chrono::milliseconds(5)));
  }
  ComputeEvent ev;
  ev.kind = ComputeEvent::Kind::kDone;
  ev.gen = job.gen;
  ev.blobs.assign(job.num_tasks, simulated_output);
  Post(std::move(ev));
}

// ---------------------------------------------------------------------------------------------
// Socket thread

bool Worker::Impl::Send(Command c, nlohmann::json header, std::string payload, bool with_payload) {
  Message m;
  m.command = c;
  m.header = std::move(header);
  if (with_payload) m.payload.push_back(std::move(payload));
  return SendMessage(m);
}

bool Worker::Impl::SendMessage(const Message& m) {
  const Command c = m.command;
  std::vector<std::string> frames = wire::Encode(m);
  std::vector<zmq::message_t> parts;
  parts.reserve(frames.size());
  for (const std::string& f : frames) parts.emplace_back(f.data(), f.size());
  // Never block the socket thread: a full queue (no coordinator) drops control messages; the
  // re-registration after silence brings the coordinator back in step.
  auto sent = zmq::send_multipart(*dealer_, parts, zmq::send_flags::dontwait);
  // Callers retry what matters (FETCH, PUT, CHECKPOINT, RESULT); the line says it happened.
  if (!sent && SendWarnBudget()) {
    VF_LOG_WARN("worker {}: {} not sent (send queue full); will retry or re-register",
                opt.worker_id, wire::CommandName(c));
  }
  return sent.has_value();
}

void Worker::Impl::SendReady() {
  const models::StageSpec& s = spec;
  nlohmann::json h = {
      {"worker_id", opt.worker_id},
      {"host", host},
      {"pid", static_cast<int64_t>(getpid())},
      {"stage", opt.stage},
      {"preset", opt.preset},
      {"model_sha256", model_sha},
      {"max_batch", opt.max_batch},
      {"max_leases", MaxLeases()},
      {"shape", {{"frames", s.frames}, {"height", s.height}, {"width", s.width}, {"fps", s.fps}}},
  };
  if (!leases_.empty()) {
    nlohmann::json ids = nlohmann::json::array();
    for (const Lease& l : leases_) ids.push_back(l.id);
    h["leases"] = std::move(ids);
    h["lease"] = leases_.front().id;  // what a coordinator without "leases" reads
  }
  Send(Command::kReady, std::move(h));
}

void Worker::Impl::Reregister(const char* why, bool coordinator_restarted) {
  const auto now = Clock::now();
  // Every message queued for a restarted coordinator earns an "unknown_worker": answer the first.
  if (coordinator_restarted &&
      now - last_register_ < std::chrono::milliseconds(std::max(1, opt.heartbeat_ms))) {
    return;
  }
  VF_LOG_WARN("worker {}: {}; registering again{}", opt.worker_id, why,
              leases_.empty() ? std::string() : fmt::format(" (mid-task, lease {})", LeaseIds()));
  SendReady();
  last_recv_ = last_register_ = now;
  if (leases_.empty() || !coordinator_restarted) return;
  // A restarted coordinator has forgotten the transfers in flight: ask again for the chunks
  // (duplicate CHUNKs are dropped) and start the uploads under way afresh under new ids.
  for (Lease& l : leases_) {
    for (auto& [blob, d] : l.downloads) {
      for (const auto& [offset, length] : d.pending) {
        Send(Command::kFetch, {{"blob", blob}, {"offset", offset}, {"length", length}});
      }
    }
    if (l.uploads.empty()) continue;
    for (Upload& u : l.uploads.front().uploads) {
      u.id = fmt::format("{}/{}/{}", opt.worker_id, l.id, ++upload_seq_);
      u.next_offset = 0;
      u.unacked.clear();
    }
  }
  PumpUploads();
}

void Worker::Impl::FailLease(Lease& l, const Status& st, bool retryable) {
  VF_LOG_WARN("worker {}: lease {} failed: {}", opt.worker_id, l.id, st.ToString());
  Send(Command::kFail, {{"lease", l.id}, {"error", st.ToString()}, {"retryable", retryable}});
  failed += static_cast<int64_t>(std::max<size_t>(1, l.tasks.size()));
  l.cancel->store(true);
  EraseLease(std::string(l.id));
  SendReady();
}

void Worker::Impl::Abandon(Lease& l, const char* why) {
  VF_LOG_INFO("worker {}: lease {} abandoned: {}", opt.worker_id, l.id, why);
  l.cancel->store(true);
  EraseLease(std::string(l.id));
}

std::optional<Status> Worker::Impl::Handle(std::vector<std::string>&& frames) {
  auto decoded = wire::Decode(std::move(frames));
  if (!decoded.ok()) {
    if (WarnBudget()) {
      VF_LOG_WARN("worker {}: dropped a message from the coordinator: {}", opt.worker_id,
                  decoded.status().ToString());
    }
    return std::nullopt;
  }
  const Message& m = *decoded;
  last_recv_ = Clock::now();
  switch (m.command) {
    case Command::kHeartbeat:
      break;
    case Command::kAssign:
      HandleAssign(m);
      break;
    case Command::kCancel: {
      auto lease = wire::GetString(m, "lease");
      Lease* l = lease.ok() ? FindLease(*lease) : nullptr;
      if (!lease.ok()) {
        VF_LOG_WARN("worker {}: {}", opt.worker_id, lease.status().ToString());
      } else if (l) {
        // CANCEL {job} drops one job's task of a batch; the others go on (the coordinator takes
        // a RESULT with every upload and ignores the cancelled one's).
        auto job = wire::GetString(m, "job");
        bool all = true;
        for (Task& t : l->tasks) {
          if (!job.ok() || t.job == *job) t.cancelled = true;
          all = all && t.cancelled;
        }
        if (all) {
          Abandon(*l, "cancelled by the coordinator");
          SendReady();
          TryStartCompute();
        }
      } else {
        VF_LOG_DEBUG("worker {}: CANCEL for lease {} that is not ours", opt.worker_id, *lease);
      }
      break;
    }
    case Command::kDisconnect: {
      std::string reason = wire::GetString(m, "reason").ValueOr("(no reason given)");
      while (!leases_.empty()) Abandon(leases_.front(), "disconnected");
      return Status::Cancelled("the coordinator disconnected this worker: " + reason);
    }
    case Command::kChunk:
      HandleChunk(m);
      break;
    case Command::kPutAck:
      HandlePutAck(m);
      break;
    case Command::kError: {
      const std::string code = wire::GetString(m, "code").ValueOr("");
      const std::string error = wire::GetString(m, "error").ValueOr("");
      if (code == "unknown_worker") {
        Reregister("the coordinator does not know this worker", /*coordinator_restarted=*/true);
      } else if (code == "unknown_upload") {
        HandleUnknownUpload(m);
      } else if (code == "stale_lease") {
        auto lease = wire::GetString(m, "lease");
        Lease* l = lease.ok() ? FindLease(*lease) : leases_.empty() ? nullptr : &leases_.front();
        if (l) {
          Abandon(*l, "the coordinator says the lease is stale");
          SendReady();
          TryStartCompute();
        }
      } else {
        VF_LOG_WARN("worker {}: coordinator error {}: {}", opt.worker_id, code, error);
        HandleTransferError(m, error);
      }
      break;
    }
    default:
      VF_LOG_WARN("worker {}: unexpected {} from the coordinator", opt.worker_id,
                  wire::CommandName(m.command));
  }
  return std::nullopt;
}

void Worker::Impl::HandleAssign(const Message& m) {
  auto lease_id = wire::GetString(m, "lease");
  if (!lease_id.ok()) {
    VF_LOG_WARN("worker {}: dropped an ASSIGN: {}", opt.worker_id, lease_id.status().ToString());
    // The coordinator spent our credit on it: offer it again.
    if (static_cast<int>(leases_.size()) < MaxLeases()) SendReady();
    return;
  }
  if (FindLease(*lease_id)) return;  // a repeat after re-registration
  if (static_cast<int>(leases_.size()) >= MaxLeases()) {
    VF_LOG_WARN("worker {}: ASSIGN of lease {} while holding {} lease(s) ({}); refused",
                opt.worker_id, *lease_id, leases_.size(), LeaseIds());
    Send(Command::kFail, {{"lease", *lease_id},
                          {"error", "Busy: worker is working on lease(s) " + LeaseIds()},
                          {"retryable", true}});
    return;
  }
  if (MaxLeases() == 1) sent_results_.clear();  // the coordinator took the last RESULT
  Lease& l = leases_.emplace_back();
  l.id = *lease_id;
  l.gen = ++next_gen_;
  l.ready_in_result = wire::FlagSet(m, "ready_in_result");
  auto parse = [&]() -> Status {
    auto stage = wire::GetInt(m, "stage");
    if (stage.ok() && *stage != opt.stage) {
      return Status::InvalidArgument(
          fmt::format("ASSIGN for stage {}, this worker hosts stage {}", *stage, opt.stage));
    }
    auto it = m.header.find("tasks");
    if (it == m.header.end() || !it->is_array() || it->empty()) {
      return Status::InvalidArgument("ASSIGN: field 'tasks' must be a non-empty array");
    }
    if (static_cast<int>(it->size()) > opt.max_batch) {
      return Status::InvalidArgument(
          fmt::format("ASSIGN of {} tasks exceeds max_batch {}", it->size(), opt.max_batch));
    }
    for (const nlohmann::json& t : *it) {
      auto task = ParseTask(t, opt.stage, opt.preset, spec);
      if (!task.ok()) return task.status().WithContext("ASSIGN");
      l.tasks.push_back(std::move(*task));
    }
    for (const Task& t : l.tasks) {
      for (auto [blob, bytes] : {std::pair{t.input_blob, t.input_bytes},
                                 std::pair{t.checkpoint_blob, t.checkpoint_bytes}}) {
        if (blob.empty()) continue;
        auto [dit, inserted] = l.downloads.try_emplace(blob);
        if (inserted) {
          dit->second.total = bytes;
          dit->second.data.resize(static_cast<size_t>(bytes));
        } else if (dit->second.total != bytes) {
          return Status::InvalidArgument(
              fmt::format("ASSIGN: blob {} listed with two sizes", blob));
        }
      }
    }
    return Status::OK();
  };
  Status st = parse();
  if (!st.ok()) {
    FailLease(l, st, /*retryable=*/false);
    return;
  }
  VF_LOG_DEBUG("worker {}: lease {} with {} task(s), {} blob(s) to fetch", opt.worker_id, l.id,
               l.tasks.size(), l.downloads.size());
  PumpFetches();
  TryStartCompute();
}

// Downloads go in lease order, with one credit for all of them.
void Worker::Impl::PumpFetches() {
  int64_t in_flight = 0;
  for (const Lease& l : leases_) {
    for (const auto& [blob, d] : l.downloads) in_flight += static_cast<int64_t>(d.pending.size());
  }
  for (Lease& l : leases_) {
    for (auto& [blob, d] : l.downloads) {
      while (in_flight < opt.fetch_credit && d.next_offset < d.total) {
        const int64_t length =
            std::min<int64_t>(static_cast<int64_t>(opt.chunk_bytes), d.total - d.next_offset);
        if (!Send(Command::kFetch,
                  {{"blob", blob}, {"offset", d.next_offset}, {"length", length}})) {
          return;
        }
        d.pending[d.next_offset] = length;
        d.next_offset += length;
        d.last_activity = Clock::now();
        ++in_flight;
      }
    }
  }
}

void Worker::Impl::HandleChunk(const Message& m) {
  auto blob = wire::GetString(m, "blob");
  auto offset = wire::GetInt(m, "offset");
  auto total = wire::GetInt(m, "total");
  if (!blob.ok() || !offset.ok() || !total.ok() || m.payload.size() != 1) {
    VF_LOG_WARN("worker {}: dropped a malformed CHUNK", opt.worker_id);
    return;
  }
  Lease* l = nullptr;
  Download* d = nullptr;
  std::map<int64_t, int64_t>::iterator p;
  for (Lease& x : leases_) {
    auto it = x.downloads.find(*blob);
    if (it == x.downloads.end()) continue;
    p = it->second.pending.find(*offset);
    if (p == it->second.pending.end()) continue;
    l = &x;
    d = &it->second;
    break;
  }
  if (!l) return;  // stale (a lease no longer held) or a duplicate
  const int64_t length = p->second;
  const auto got = static_cast<int64_t>(m.payload[0].size());
  // The coordinator may serve less than asked (its own chunk size): ask again for the rest.
  if (*total != d->total || got == 0 || got > length) {
    FailLease(
        *l,
        Status::Corruption(fmt::format("blob {}: CHUNK at {} has {} bytes of {} total, expected "
                                       "1..{} of {}",
                                       *blob, *offset, got, *total, length, d->total)),
        /*retryable=*/true);
    TryStartCompute();
    return;
  }
  std::copy(m.payload[0].begin(), m.payload[0].end(), d->data.begin() + *offset);
  d->pending.erase(p);
  d->received += got;
  d->last_activity = Clock::now();
  if (got < length) {
    d->pending[*offset + got] = length - got;
    Send(Command::kFetch, {{"blob", *blob}, {"offset", *offset + got}, {"length", length - got}});
  }
  PumpFetches();
  if (d->done()) TryStartCompute();
}

// Strictly in assignment order, even when a younger lease's inputs arrive first: the
// coordinator keeps a worker's younger leases alive on the work it reports on an older one
// (lease_stall_seconds), which holds only while the younger ones wait behind it.
void Worker::Impl::TryStartCompute() {
  for (const Lease& l : leases_) {
    if (l.computing) return;  // one at a time: the compute thread has one slot
  }
  while (true) {
    auto next = std::find_if(leases_.begin(), leases_.end(),
                             [](const Lease& l) { return !l.computed; });
    if (next == leases_.end() ||
        !std::all_of(next->downloads.begin(), next->downloads.end(),
                     [](const auto& kv) { return kv.second.done(); })) {
      return;
    }
    if (StartCompute(*next)) return;  // else it failed and is gone: try the next
  }
}

bool Worker::Impl::StartCompute(Lease& l) {
  const models::StageSpec& s = spec;
  if (opt.simulate_ms >= 0) {  // no model: the inputs were fetched, nothing is decoded
    l.downloads.clear();
    l.computing = true;
    ComputeJob job;
    job.gen = l.gen;
    job.num_tasks = l.tasks.size();
    job.cancel = l.cancel;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = std::move(job);
    }
    cv_.notify_one();
    return true;
  }
  auto build = [&]() -> Result<std::vector<ComputeGroup>> {
    std::vector<ComputeGroup> groups;
    std::map<std::tuple<uint64_t, int, std::string>, size_t> by_key;
    std::map<size_t, std::vector<torch::Tensor>> latents;  // group → z per sample
    for (size_t i = 0; i < l.tasks.size(); ++i) {
      const Task& t = l.tasks[i];
      const auto key = std::make_tuple(t.seed, t.checkpoint_step, t.settings.ToJson().dump());
      auto [it, inserted] = by_key.try_emplace(key, groups.size());
      if (inserted) {
        groups.emplace_back();
        groups.back().settings = t.settings;
        groups.back().request.seed = t.seed;
      }
      ComputeGroup& g = groups[it->second];
      g.task_index.push_back(i);
      g.request.prompts.push_back(t.prompt);
      g.request.sample_indices.push_back(t.sample_index);
      if (!t.input_blob.empty()) {
        auto v = wire::DecodeVideo(l.downloads.at(t.input_blob).data);
        if (!v.ok()) return v.status().WithContext("input video " + t.input_blob);
        if (v->frames != s.in_frames() || v->height != s.in_height() || v->width != s.in_width() ||
            v->channels != s.net.channels) {
          return Status::InvalidArgument(fmt::format(
              "input video {} is {}, stage {} expects {}x{}x{}x{}", t.input_blob, v->ShapeString(),
              s.index, s.net.channels, s.in_frames(), s.in_height(), s.in_width()));
        }
        g.request.inputs.push_back(std::move(*v));
      }
      if (!t.checkpoint_blob.empty()) {
        auto v = wire::DecodeVideo(l.downloads.at(t.checkpoint_blob).data);
        if (!v.ok()) return v.status().WithContext("checkpoint " + t.checkpoint_blob);
        if (v->channels != s.net.channels || v->frames != s.frames || v->height != s.height ||
            v->width != s.width) {
          return Status::InvalidArgument(
              fmt::format("checkpoint {} is {}, stage {} samples {}x{}x{}x{}", t.checkpoint_blob,
                          v->ShapeString(), s.index, s.net.channels, s.frames, s.height, s.width));
        }
        VF_ASSIGN_OR_RETURN(torch::Tensor z, models::VideoToTensorChecked(*v));
        latents[it->second].push_back(z);
      }
    }
    for (auto& [gi, zs] : latents) {
      groups[gi].request.resume = models::SamplerCheckpoint{
          l.tasks[groups[gi].task_index[0]].checkpoint_step, torch::stack(zs)};
    }
    return groups;
  };
  Result<std::vector<ComputeGroup>> groups = [&]() -> Result<std::vector<ComputeGroup>> {
    try {
      return build();
    } catch (const std::exception& e) {
      return Status::Internal(std::string("preparing the batch: ") + e.what());
    }
  }();
  if (!groups.ok()) {
    FailLease(l, groups.status(), /*retryable=*/!groups.status().IsInvalidArgument());
    return false;
  }
  l.downloads.clear();  // the bytes now live in the requests
  l.computing = true;
  ComputeJob job;
  job.gen = l.gen;
  job.num_tasks = l.tasks.size();
  job.groups = std::move(*groups);
  job.cancel = l.cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);  // a job not yet picked up belongs to an abandoned lease: replace it
  }
  cv_.notify_one();
  return true;
}

void Worker::Impl::QueueUploads(Lease& l, bool result, int step, std::vector<std::string> blobs) {
  // An unstarted checkpoint is superseded by anything newer.
  while (!l.uploads.empty() && !l.uploads.back().started && !l.uploads.back().result)
    l.uploads.pop_back();
  UploadGroup g;
  g.result = result;
  g.step = step;
  for (std::string& b : blobs) {
    Upload u;
    u.id = fmt::format("{}/{}/{}", opt.worker_id, l.id, ++upload_seq_);
    u.data = std::move(b);
    g.uploads.push_back(std::move(u));
  }
  l.uploads.push_back(std::move(g));
  PumpUploads();
}

bool Worker::Impl::Inlinable(const UploadGroup& g) const {
  if (!opt.inline_uploads || g.started || g.uploads.empty() ||
      g.uploads.size() > wire::DecodeLimits{}.max_payload_frames) {
    return false;
  }
  size_t total = 0;
  for (const Upload& u : g.uploads) total += u.data.size();
  return total <= opt.chunk_bytes;
}

void Worker::Impl::PumpUploads() {
  for (size_t i = 0; i < leases_.size();) {
    if (!PumpUploadsOf(leases_[i])) {
      ++i;
      continue;
    }
    const bool readied = leases_[i].ready_in_result;  // its RESULT said "ready": true
    leases_.erase(leases_.begin() + static_cast<std::ptrdiff_t>(i));
    if (!readied) SendReady();
  }
}

bool Worker::Impl::PumpUploadsOf(Lease& l) {
  while (!l.uploads.empty()) {
    UploadGroup& g = l.uploads.front();
    const bool inlined = Inlinable(g);
    if (inlined) {
      Message m;
      m.command = g.result ? Command::kResult : Command::kCheckpoint;
      m.header = {{"lease", l.id}, {"inline", true}};
      if (!g.result) m.header["step"] = g.step;
      if (g.result && l.ready_in_result) m.header["ready"] = true;
      for (const Upload& u : g.uploads) m.payload.push_back(u.data);
      if (g.result) FlushProgress(l, /*force=*/true);
      if (!SendMessage(m)) return false;  // refused by a full queue: the next pump sends it again
      for (Upload& u : g.uploads) u.next_offset = static_cast<int64_t>(u.data.size());
    }
    int64_t unacked = 0;
    for (const Upload& u : g.uploads) unacked += static_cast<int64_t>(u.unacked.size());
    for (Upload& u : g.uploads) {
      const auto total = static_cast<int64_t>(u.data.size());
      while (unacked < opt.fetch_credit && u.next_offset < total) {
        const int64_t length =
            std::min<int64_t>(static_cast<int64_t>(opt.chunk_bytes), total - u.next_offset);
        if (!Send(Command::kPut, {{"upload", u.id}, {"offset", u.next_offset}, {"total", total}},
                  u.data.substr(static_cast<size_t>(u.next_offset), static_cast<size_t>(length)),
                  true)) {
          return false;
        }
        g.started = true;
        u.unacked.insert(u.next_offset);
        u.next_offset += length;
        u.last_activity = Clock::now();
        ++unacked;
      }
    }
    if (!std::all_of(g.uploads.begin(), g.uploads.end(), [](const Upload& u) { return u.done(); }))
      return false;
    nlohmann::json ids = nlohmann::json::array();
    for (const Upload& u : g.uploads) ids.push_back(u.id);
    // A refused send leaves the group in place: the next pump sends the message again.
    if (!g.result) {
      if (!inlined &&
          !Send(Command::kCheckpoint, {{"lease", l.id}, {"step", g.step}, {"uploads", ids}}))
        return false;
      std::vector<std::string> blobs;
      for (Upload& u : g.uploads) blobs.push_back(std::move(u.data));
      l.last_checkpoint.emplace(g.step, std::move(blobs));
      l.uploads.pop_front();
      continue;
    }
    if (!inlined) {
      FlushProgress(l, /*force=*/true);
      nlohmann::json h = {{"lease", l.id}, {"uploads", ids}};
      if (l.ready_in_result) h["ready"] = true;
      if (!Send(Command::kResult, std::move(h))) return false;
    }
    SentResult sent{l.id, std::move(l.tasks), {}};
    for (Upload& u : g.uploads) sent.blobs.push_back(std::move(u.data));
    done += static_cast<int64_t>(sent.tasks.size());
    sent_results_.push_back(std::move(sent));
    while (static_cast<int>(sent_results_.size()) > MaxLeases()) sent_results_.pop_front();
    VF_LOG_DEBUG("worker {}: lease {} done", opt.worker_id, l.id);
    return true;
  }
  return false;
}

static Upload* FindUpload(std::deque<Lease>& leases, const std::string& id, Lease** owner) {
  for (Lease& l : leases) {
    if (l.uploads.empty()) continue;
    for (Upload& u : l.uploads.front().uploads) {
      if (u.id == id) {
        if (owner) *owner = &l;
        return &u;
      }
    }
  }
  return nullptr;
}

void Worker::Impl::HandlePutAck(const Message& m) {
  auto upload = wire::GetString(m, "upload");
  auto offset = wire::GetInt(m, "offset");
  if (!upload.ok() || !offset.ok()) {
    VF_LOG_WARN("worker {}: dropped a malformed PUT_ACK", opt.worker_id);
    return;
  }
  Upload* u = FindUpload(leases_, *upload, nullptr);
  if (!u || u->unacked.erase(*offset) == 0) return;  // stale, or a duplicate (a re-sent PUT's)
  u->last_activity = Clock::now();
  PumpUploads();
}

// A lost FETCH, CHUNK, PUT or PUT_ACK would leave the lease waiting forever while heartbeats keep
// it alive: requests unanswered for TransferRetry() are sent again. A re-sent FETCH whose first
// CHUNK does arrive gets a duplicate, dropped by HandleChunk; the coordinator answers a re-sent
// PUT of bytes it already holds with another PUT_ACK, dropped by HandlePutAck.
void Worker::Impl::RetryStalledTransfers() {
  const auto now = Clock::now();
  const auto retry = TransferRetry();
  const auto waited = [&](Clock::time_point since) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now - since).count();
  };
  for (Lease& l : leases_) {
    for (auto& [blob, d] : l.downloads) {
      if (d.pending.empty() || now - d.last_activity < retry) continue;
      VF_LOG_WARN("worker {}: lease {}: no CHUNK of {} for {} ms; asking again for {} chunk(s)",
                  opt.worker_id, l.id, blob, waited(d.last_activity), d.pending.size());
      d.last_activity = now;
      for (const auto& [offset, length] : d.pending) {
        if (!Send(Command::kFetch, {{"blob", blob}, {"offset", offset}, {"length", length}})) break;
      }
    }
    if (l.uploads.empty()) continue;
    for (Upload& u : l.uploads.front().uploads) {
      if (u.unacked.empty() || now - u.last_activity < retry) continue;
      VF_LOG_WARN(
          "worker {}: lease {}: no PUT_ACK for upload {} for {} ms; sending {} chunk(s) again",
          opt.worker_id, l.id, u.id, waited(u.last_activity), u.unacked.size());
      u.last_activity = now;
      const auto total = static_cast<int64_t>(u.data.size());
      for (int64_t offset : u.unacked) {
        const int64_t length =
            std::min<int64_t>(static_cast<int64_t>(opt.chunk_bytes), total - offset);
        if (!Send(Command::kPut, {{"upload", u.id}, {"offset", offset}, {"total", total}},
                  u.data.substr(static_cast<size_t>(offset), static_cast<size_t>(length)), true)) {
          break;
        }
      }
    }
  }
}

// ERROR unknown_upload {lease, command}: a CHECKPOINT or RESULT named an upload the coordinator
// does not hold (lost with its connection, or never complete). It keeps the lease; upload again.
void Worker::Impl::HandleUnknownUpload(const Message& m) {
  const std::string lease = wire::GetString(m, "lease").ValueOr("");
  const std::string command = wire::GetString(m, "command").ValueOr("");
  VF_LOG_WARN("worker {}: the coordinator lost the upload of {} for lease {}: {}", opt.worker_id,
              command, lease, wire::GetString(m, "error").ValueOr(""));
  if (command == "RESULT") {
    if (FindLease(lease)) return;
    auto it = std::find_if(sent_results_.begin(), sent_results_.end(),
                           [&](const SentResult& r) { return r.lease == lease; });
    if (it == sent_results_.end()) return;
    SentResult r = std::move(*it);
    sent_results_.erase(it);
    done -= static_cast<int64_t>(r.tasks.size());  // counted again when the RESULT goes out
    // Held beyond MaxLeases() if need be: the coordinator leases nothing more meanwhile.
    Lease& l = leases_.emplace_front();
    l.id = r.lease;
    l.gen = ++next_gen_;
    l.tasks = std::move(r.tasks);
    l.computed = true;
    VF_LOG_WARN("worker {}: uploading the result of lease {} again", opt.worker_id, lease);
    QueueUploads(l, /*result=*/true, 0, std::move(r.blobs));
  } else if (command == "CHECKPOINT") {
    // Anything queued is newer than the lost checkpoint.
    Lease* l = FindLease(lease);
    if (!l || !l->last_checkpoint || !l->uploads.empty()) return;
    auto [step, blobs] = *l->last_checkpoint;
    QueueUploads(*l, /*result=*/false, step, std::move(blobs));
  }
}

// An ERROR naming one of our downloads or uploads: that transfer cannot finish.
void Worker::Impl::HandleTransferError(const Message& m, const std::string& error) {
  const std::string blob = wire::GetString(m, "blob").ValueOr("");
  if (!blob.empty()) {
    for (Lease& l : leases_) {
      if (!l.downloads.count(blob)) continue;
      FailLease(l, Status::IOError(fmt::format("fetching {}: {}", blob, error)),
                /*retryable=*/true);
      TryStartCompute();
      return;
    }
  }
  const std::string upload = wire::GetString(m, "upload").ValueOr("");
  Lease* l = nullptr;
  if (upload.empty() || !FindUpload(leases_, upload, &l)) return;
  if (l->uploads.front().result) {
    FailLease(*l, Status::IOError(fmt::format("uploading the result: {}", error)),
              /*retryable=*/true);
  } else {
    l->uploads.pop_front();  // a lost checkpoint only costs recomputation after a crash
    PumpUploads();
  }
}

void Worker::Impl::FlushProgress(Lease& l, bool force) {
  if (!l.progress) return;
  const auto now = Clock::now();
  const auto [step, steps] = *l.progress;
  if (!force && step < steps &&
      now - l.last_progress < std::chrono::milliseconds(opt.progress_interval_ms)) {
    return;
  }
  Send(Command::kProgress, {{"lease", l.id}, {"step", step}, {"steps", steps}});
  l.last_progress = now;
  l.progress.reset();
}

void Worker::Impl::HandleEvent(ComputeEvent ev) {
  Lease* l = FindLeaseByGen(ev.gen);
  if (!l) return;  // an abandoned lease
  switch (ev.kind) {
    case ComputeEvent::Kind::kProgress:
      l->progress = {ev.step, ev.steps};
      FlushProgress(*l, false);
      break;
    case ComputeEvent::Kind::kCheckpoint:
      FlushProgress(*l, true);
      QueueUploads(*l, false, ev.step, std::move(ev.blobs));
      break;
    case ComputeEvent::Kind::kDone: {
      l->computing = false;
      l->computed = true;
      const uint64_t gen = l->gen;
      TryStartCompute();  // the next lease computes while this one's result uploads
      l = FindLeaseByGen(gen);
      if (l) QueueUploads(*l, true, 0, std::move(ev.blobs));
      break;
    }
    case ComputeEvent::Kind::kFailed:
      if (ev.status.IsCancelled() && l->cancel->load()) break;
      l->computing = false;
      FailLease(*l, ev.status, /*retryable=*/!ev.status.IsInvalidArgument());
      TryStartCompute();
      break;
  }
}

Status Worker::Impl::Run() {
  NameThisThread(fmt::format("vf-worker-{}", opt.stage));
  if (stop.load()) return Status::OK();
  std::thread compute([this] { ComputeLoop(); });
  auto stop_compute = [&] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
      job_.reset();
    }
    for (Lease& l : leases_) l.cancel->store(true);
    cv_.notify_all();
    compute.join();
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = false;
    outbox_.clear();
  };
  Status result;
  try {
    zmq::socket_t dealer(*ctx, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.connect(opt.endpoint);
    dealer_ = &dealer;
    leases_.clear();
    const auto hb = std::chrono::milliseconds(std::max(1, opt.heartbeat_ms));
    const auto silence = hb * std::max(1, opt.heartbeat_misses);
    VF_LOG_INFO("worker {}: stage {} ({}) connecting to {}", opt.worker_id, opt.stage, spec.name,
                opt.endpoint);
    SendReady();
    last_recv_ = Clock::now();
    auto next_heartbeat = Clock::now() + hb;
    while (!stop.load()) {
      auto now = Clock::now();
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_heartbeat - now);
      if (std::any_of(leases_.begin(), leases_.end(), [](const Lease& l) { return l.progress; }))
        wait = std::min(wait, std::chrono::milliseconds(opt.progress_interval_ms));
      if (!leases_.empty()) {  // RetryStalledTransfers runs on time
        wait =
            std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(TransferRetry()));
      }
      wait = std::max(wait, std::chrono::milliseconds(0));
      zmq::pollitem_t items[] = {{static_cast<void*>(dealer), 0, ZMQ_POLLIN, 0},
                                 {nullptr, wake_read, ZMQ_POLLIN, 0}};
      if (zmq_poll(items, 2, static_cast<long>(wait.count())) < 0 && zmq_errno() != EINTR) {
        throw zmq::error_t();
      }
      if (items[1].revents & ZMQ_POLLIN) {
        char buf[256];
        while (read(wake_read, buf, sizeof(buf)) > 0) {
        }
      }
      if (stop.load()) break;
      std::deque<ComputeEvent> events;
      {
        std::lock_guard<std::mutex> lock(mu_);
        events.swap(outbox_);
      }
      for (ComputeEvent& ev : events) HandleEvent(std::move(ev));
      for (int i = 0; i < 1000; ++i) {  // bounded, so heartbeats keep going under a flood
        std::vector<zmq::message_t> parts;
        if (!zmq::recv_multipart(dealer, std::back_inserter(parts), zmq::recv_flags::dontwait))
          break;
        std::vector<std::string> frames;
        frames.reserve(parts.size());
        for (const zmq::message_t& p : parts) frames.push_back(p.to_string());
        if (std::optional<Status> end = Handle(std::move(frames))) {
          result = *end;
          break;
        }
      }
      if (!result.ok()) break;
      PumpFetches();  // sends refused by a full queue are retried here
      PumpUploads();
      RetryStalledTransfers();
      for (Lease& l : leases_) FlushProgress(l, false);
      now = Clock::now();
      if (now >= next_heartbeat) {
        Send(Command::kHeartbeat, nlohmann::json::object());
        next_heartbeat = now + hb;
      }
      if (now - last_recv_ > silence)
        Reregister("the coordinator has been silent", /*coordinator_restarted=*/false);
    }
  } catch (const zmq::error_t& e) {
    result = Status::IOError(fmt::format("worker socket ({}): {}", opt.endpoint, e.what()));
  } catch (const std::exception& e) {
    result = Status::Internal(std::string("worker: ") + e.what());
  }
  dealer_ = nullptr;
  stop_compute();
  leases_.clear();
  if (result.ok()) {
    VF_LOG_INFO("worker {}: stopped", opt.worker_id);
  } else {
    VF_LOG_WARN("worker {}: {}", opt.worker_id, result.ToString());
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Worker

Worker::Worker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Worker::~Worker() = default;

Result<std::unique_ptr<Worker>> Worker::Create(const WorkerOptions& options, zmq::context_t* ctx) {
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  WorkerOptions& o = impl->opt;
  if (o.endpoint.empty()) return Status::InvalidArgument("worker: no coordinator endpoint");
  if (o.max_batch < 1) return Status::InvalidArgument("worker: max_batch must be at least 1");
  if (o.prefetch < 0 || o.prefetch > kMaxPrefetch)
    return Status::InvalidArgument(fmt::format("worker: prefetch must be in 0..{}", kMaxPrefetch));
  if (o.heartbeat_ms < 1 || o.heartbeat_misses < 1) {
    return Status::InvalidArgument("worker: heartbeat_ms and heartbeat_misses must be positive");
  }
  if (o.checkpoint_every < 0)
    return Status::InvalidArgument("worker: checkpoint_every must be >= 0");
  if (o.fetch_credit < 1) return Status::InvalidArgument("worker: fetch_credit must be at least 1");
  if (o.chunk_bytes < 1) return Status::InvalidArgument("worker: chunk_bytes must be positive");
  if (o.transfer_retry_ms < 0)
    return Status::InvalidArgument("worker: transfer_retry_ms must be >= 0");
  if (o.simulate_ms >= 0 && !o.package_dir.empty())
    return Status::InvalidArgument("worker: simulate mode takes no model package");
  VF_ASSIGN_OR_RETURN(models::CascadePreset preset, models::GetPreset(o.preset));
  if (o.stage < 0 || o.stage >= static_cast<int>(preset.stages.size())) {
    return Status::InvalidArgument(
        fmt::format("worker: stage {} is out of range: preset {} has stages 0..{}", o.stage,
                    o.preset, preset.stages.size() - 1));
  }
  const models::StageSpec& spec = preset.stages[static_cast<size_t>(o.stage)];
  impl->spec = spec;
  impl->host = HostName();
  if (o.worker_id.empty()) {
    o.worker_id = fmt::format("{}-{}-{}-{}", impl->host, getpid(), o.stage, RandomHex(6));
  }

  models::ModelPackage package;
  if (o.simulate_ms >= 0) {
    impl->model_sha = "simulated";
    impl->simulated_output =
        wire::EncodeVideo(Video(preset.channels, spec.frames, spec.height, spec.width, spec.fps));
    VF_LOG_WARN("worker {}: SIMULATED stage {} ({}): no model, each task answers after {} ms",
                o.worker_id, o.stage, spec.name, o.simulate_ms);
  } else if (!o.package_dir.empty()) {
    auto loaded = models::LoadPackage(o.package_dir, spec, o.runner.device);
    if (!loaded.ok()) {
      return loaded.status().WithContext(
          fmt::format("worker for stage {} ({}) of preset {}: package '{}'", o.stage, spec.name,
                      o.preset, o.package_dir));
    }
    package = std::move(*loaded);
    const nlohmann::json& w = package.config.value("weights", nlohmann::json());
    impl->model_sha = w.is_object() && w.contains("sha256") && w["sha256"].is_string()
                          ? w["sha256"].get<std::string>()
                          : std::string("unknown");
  } else {
    const uint64_t seed = o.init_seed + static_cast<uint64_t>(o.stage);  // as Cascade::Open
    VF_ASSIGN_OR_RETURN(package, models::RandomPackage(spec, seed, o.runner.device));
    impl->model_sha = fmt::format("random:{}", seed);
    VF_LOG_WARN(
        "worker {}: RANDOM WEIGHTS for stage {} ({}): no --model package given; videos will be "
        "noise-like",
        o.worker_id, o.stage, spec.name);
  }
  if (o.simulate_ms < 0) {
    VF_ASSIGN_OR_RETURN(impl->runner,
                        models::StageRunner::Create(std::move(package), preset, o.runner));
    impl->spec = impl->runner->spec();  // the model's own spec, as before simulate mode existed
  }

  int fds[2];
  if (pipe(fds) != 0) return Status::IOError("worker: cannot create the wake-up pipe");
  impl->wake_read = fds[0];
  impl->wake_write = fds[1];
  for (int fd : fds) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  if (ctx == nullptr) {
    impl->own_ctx = std::make_unique<zmq::context_t>();
    ctx = impl->own_ctx.get();
  }
  impl->ctx = ctx;
  return std::unique_ptr<Worker>(new Worker(std::move(impl)));
}

Status Worker::Run() {
  if (impl_->running.exchange(true)) return Status::Busy("worker: Run is already running");
  Status st = impl_->Run();
  impl_->running.store(false);
  return st;
}

void Worker::Stop() {
  impl_->stop.store(true);
  impl_->Wake();
}

Worker::Stats Worker::stats() const { return {impl_->done.load(), impl_->failed.load()}; }
const std::string& Worker::worker_id() const { return impl_->opt.worker_id; }
const std::string& Worker::model_sha256() const { return impl_->model_sha; }

}  // namespace vidfarm::worker
