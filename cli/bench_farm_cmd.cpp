// `vidfarm bench dispatch|overhead|pipeline`: the farm's benchmarks. They print figures; judging
// them is left to the reader (they are not timed tests).
#include <dlfcn.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <queue>
#include <sstream>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "commands.h"
#include "flags.h"
#include "vidfarm/common/cascade_table.h"
#include "vidfarm/common/job_spec.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/thread_name.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/common/wire.h"
#include "vidfarm/coordinator/client.h"
#include "vidfarm/coordinator/coordinator.h"
#include "vidfarm/stage_models/cascade.h"
#include "vidfarm/storage/store.h"
#include "vidfarm/worker/worker.h"

namespace vidfarm::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// q in [0, 1] of a sample (nearest rank); 0 for an empty one.
double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}
double Median(const std::vector<double>& v) { return Quantile(v, 0.5); }

// The malloc this process runs on: jemalloc when preloaded (LD_PRELOAD=libjemalloc.so.2, which
// `deploy/local-cluster.sh` does for its coordinator), else glibc's.
const char* Allocator() {
  return dlsym(RTLD_DEFAULT, "mallctl") != nullptr ? "jemalloc" : "glibc malloc";
}

std::string LoadLine() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) != 3) return fmt::format("load average unknown; allocator {}", Allocator());
  return fmt::format("load average {:.2f} {:.2f} {:.2f}, {} cores; allocator {}", l[0], l[1], l[2],
                     std::thread::hardware_concurrency(), Allocator());
}

// CPU time this process spent between two points (all its threads: client, coordinator, ZeroMQ's
// I/O thread, the no-op workers) and how the machine's cores spent the wall time meanwhile, from
// /proc/stat. On a shared virtual machine the host may give the cores to others ("steal"), which
// slows every figure (and inflates the kernel's share of CPU time); the line says how much it did,
// so that runs from different hours can be told apart.
class CpuMeter {
 public:
  CpuMeter() : start_(Take()), threads_(ThreadSeconds()) {}
  // "process 3.10 s CPU (2.41 user + 0.69 sys), 310 us per task; cores: 71 % busy, 0 % idle,
  // 29 % stolen by the host".
  std::string Line(int64_t tasks) const {
    const Snap end = Take();
    const double user = end.user_s - start_.user_s, sys = end.sys_s - start_.sys_s;
    std::string line = fmt::format(
        "process {:.2f} s CPU ({:.2f} user + {:.2f} sys), {:.0f} us per task", user + sys, user,
        sys, tasks > 0 ? (user + sys) * 1e6 / static_cast<double>(tasks) : 0.0);
    const double total = static_cast<double>(end.total - start_.total);
    if (end.total > 0 && total > 0) {
      auto pct = [&](uint64_t a, uint64_t b) { return 100.0 * static_cast<double>(b - a) / total; };
      const double idle = pct(start_.idle, end.idle), steal = pct(start_.steal, end.steal);
      line += fmt::format("; cores: {:.0f} % busy, {:.0f} % idle, {:.0f} % stolen by the host",
                          100.0 - idle - steal, idle, steal);
    }
    return line;
  }

  // CPU seconds per thread name over the same span, busiest first, threads of one name summed:
  // "vf-coordinator 2.10 s, ZMQbg/IO/0 0.81 s, noop-worker x8 0.62 s, …". Threads that ended
  // meanwhile are missed.
  std::string ThreadsLine() const {
    std::map<std::string, std::pair<double, int>> by_name;
    for (const auto& [tid, t] : ThreadSeconds()) {
      auto it = threads_.find(tid);
      const double before = it != threads_.end() ? it->second.second : 0.0;
      auto& e = by_name[t.first];
      e.first += t.second - before;
      e.second += 1;
    }
    std::vector<std::pair<std::string, std::pair<double, int>>> v(by_name.begin(), by_name.end());
    std::sort(v.begin(), v.end(),
              [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
    std::string line;
    for (const auto& [name, e] : v) {
      if (e.first < 0.005) continue;
      if (!line.empty()) line += ", ";
      line += e.second > 1 ? fmt::format("{} x{} {:.2f} s", name, e.second, e.first)
                           : fmt::format("{} {:.2f} s", name, e.first);
    }
    return line.empty() ? "unknown" : line;
  }

 private:
  struct Snap {
    double user_s = 0, sys_s = 0;
    uint64_t total = 0, idle = 0, steal = 0;  // /proc/stat "cpu" line, in ticks
  };
  static Snap Take() {
    Snap s;
    rusage ru{};
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
      s.user_s = static_cast<double>(ru.ru_utime.tv_sec) + ru.ru_utime.tv_usec / 1e6;
      s.sys_s = static_cast<double>(ru.ru_stime.tv_sec) + ru.ru_stime.tv_usec / 1e6;
    }
    std::ifstream in("/proc/stat");
    std::string cpu;
    uint64_t v[8] = {};  // user nice system idle iowait irq softirq steal
    if (in >> cpu && cpu == "cpu") {
      for (auto& x : v) in >> x;
      if (in) {
        for (uint64_t x : v) s.total += x;
        s.idle = v[3] + v[4];
        s.steal = v[7];
      }
    }
    return s;
  }
  // tid → (name, user + system seconds), from /proc/self/task/*/{comm,stat}.
  static std::map<std::string, std::pair<std::string, double>> ThreadSeconds() {
    std::map<std::string, std::pair<std::string, double>> out;
    std::error_code ec;
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    for (const auto& e : fs::directory_iterator("/proc/self/task", ec)) {
      std::ifstream comm(e.path() / "comm"), stat(e.path() / "stat");
      std::string name, line;
      if (!std::getline(comm, name) || !std::getline(stat, line)) continue;
      // Fields after the ")" that ends the name: state is field 3, utime 14, stime 15.
      const size_t close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      double ut = 0, st = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) ut = std::atof(field.c_str());
        if (i == 15) st = std::atof(field.c_str());
      }
      if (name == "vidfarm") name = "main";
      out[e.path().filename().string()] = {name, tick > 0 ? (ut + st) / tick : 0.0};
    }
    return out;
  }

  Snap start_;
  std::map<std::string, std::pair<std::string, double>> threads_;
};

// A temp dir under $TMPDIR (or /tmp), removed with everything in it.
class BenchDir {
 public:
  static Result<std::unique_ptr<BenchDir>> Make(const std::string& prefix) {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) return Status::IOError("cannot create a temp dir");
    return std::unique_ptr<BenchDir>(new BenchDir(tmpl));
  }
  ~BenchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit BenchDir(std::string p) : path_(std::move(p)) {}
  std::string path_;
};

// Polls WORKERS until `n` workers are registered (idle or busy).
Status WaitForWorkers(coordinator::Client& client, int n, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    VF_ASSIGN_OR_RETURN(json r, client.Call(wire::Command::kWorkers, json::object()));
    int live = 0;
    for (const auto& w : r["workers"]) {
      const std::string s = w.value("state", "");
      live += s == "idle" || s == "busy";
    }
    if (live >= n) return Status::OK();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Status::TimedOut(fmt::format("fewer than {} workers registered", n));
}

// ---------------------------------------------------------------------------------------------
// bench dispatch

// A no-op stage worker on its own DEALER socket and thread, speaking the worker protocol without
// a model (the cheapest client that is still the real protocol): READY → ASSIGN → RESULT with a
// constant stage video inline, as `vidfarm worker` sends an output that fits in one chunk; with
// `chunked`, PUT of the video → PUT_ACK → RESULT. The RESULT says "ready": true (the credit
// again, no READY of its own) as the worker's does. It keeps what the benchmark measures.
struct NoopWorker {
  struct Shared {
    std::string endpoint;
    std::string preset;
    CascadeStageShape shape{};
    std::string result;  // encoded output video of the stage
    bool chunked = false;  // PUT the result before the RESULT instead of inline
    int max_leases = 2;    // READY's max_leases: 1 + prefetch
    std::atomic<bool> stop{false};
    std::atomic<int64_t> results{0};   // RESULTs sent, all workers
    std::atomic<int64_t> errors{0};    // ERROR / CANCEL answers, all workers
    std::atomic<int64_t> phase_us{0};  // turnarounds are kept for READYs sent after this
  };
  int index = 0;
  Shared* shared = nullptr;
  std::vector<double> turnaround_us;                      // READY sent → ASSIGN received
  std::vector<std::pair<std::string, int64_t>> assigned;  // job id, ASSIGN received (µs)
  std::string failure;

  void Main(zmq::context_t* ctx) {
    NameThisThread("noop-worker");
    try {
      Loop(ctx);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }

 private:
  void Send(zmq::socket_t& s, wire::Command c, json h, std::vector<std::string> payload = {}) {
    const auto frames = wire::Encode(wire::Message{c, std::move(h), std::move(payload)});
    std::vector<zmq::message_t> parts;
    for (const auto& f : frames) parts.emplace_back(f.data(), f.size());
    (void)zmq::send_multipart(s, parts);
  }

  void Loop(zmq::context_t* ctx) {
    const CascadeStageShape& sh = shared->shape;
    zmq::socket_t sock(*ctx, zmq::socket_type::dealer);
    sock.set(zmq::sockopt::linger, 0);
    sock.connect(shared->endpoint);
    const json ready = {
        {"worker_id", fmt::format("noop-{}", index)},
        {"host", "127.0.0.1"},
        {"pid", static_cast<int64_t>(getpid())},
        {"stage", 0},
        {"preset", shared->preset},
        {"model_sha256", "noop"},
        {"max_batch", 1},
        {"max_leases", shared->max_leases},
        {"shape",
         {{"frames", sh.frames}, {"height", sh.height}, {"width", sh.width}, {"fps", sh.fps}}}};
    Send(sock, wire::Command::kReady, ready);
    int64_t ready_us = NowUs();
    int64_t next_heartbeat = ready_us + 500000;
    uint64_t seq = 0;
    std::map<std::string, std::pair<std::string, bool>> uploading;  // upload id → lease, again
    while (!shared->stop.load()) {
      zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      const int64_t now = NowUs();
      if (now >= next_heartbeat) {
        Send(sock, wire::Command::kHeartbeat, json::object());
        next_heartbeat = now + 500000;
      }
      if (!(item.revents & ZMQ_POLLIN)) continue;
      for (;;) {
        std::vector<zmq::message_t> parts;
        if (!zmq::recv_multipart(sock, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
        std::vector<std::string> frames;
        for (const auto& p : parts) frames.push_back(p.to_string());
        auto m = wire::Decode(std::move(frames));
        if (!m.ok()) continue;
        const int64_t t = NowUs();
        switch (m->command) {
          case wire::Command::kAssign: {
            if (ready_us >= shared->phase_us.load())
              turnaround_us.push_back(static_cast<double>(t - ready_us));
            const std::string lease = m->header.value("lease", "");
            // As `vidfarm worker` does: the credit comes back inside the RESULT where the ASSIGN
            // allows it, else in a READY of its own.
            const bool again = wire::FlagSet(*m, "ready_in_result");
            for (const auto& task : m->header["tasks"]) assigned.emplace_back(task["job"], t);
            if (!shared->chunked) {
              json h = {{"lease", lease}, {"inline", true}};
              if (again) h["ready"] = true;
              Send(sock, wire::Command::kResult, std::move(h), {shared->result});
              shared->results.fetch_add(1);
              if (!again) Send(sock, wire::Command::kReady, ready);
              ready_us = NowUs();
              break;
            }
            const std::string upload = fmt::format("noop-{}-{}", index, ++seq);
            uploading[upload] = {lease, again};
            Send(sock, wire::Command::kPut,
                 {{"upload", upload}, {"offset", 0}, {"total", shared->result.size()}},
                 {shared->result});
            break;
          }
          case wire::Command::kPutAck: {
            auto it = uploading.find(m->header.value("upload", ""));
            if (it == uploading.end()) break;
            json h = {{"lease", it->second.first}, {"uploads", {it->first}}};
            if (it->second.second) h["ready"] = true;
            Send(sock, wire::Command::kResult, std::move(h));
            const bool again = it->second.second;
            uploading.erase(it);
            shared->results.fetch_add(1);
            if (!again) Send(sock, wire::Command::kReady, ready);
            ready_us = NowUs();
            break;
          }
          case wire::Command::kError:
          case wire::Command::kCancel:
            shared->errors.fetch_add(1);
            Send(sock, wire::Command::kReady, ready);
            ready_us = NowUs();
            break;
          default:
            break;
        }
      }
    }
  }
};

int RunBenchDispatch(const std::vector<std::string>& args) {
  int64_t tasks = 5000, workers = 8, batch = 500, latency_tasks = 500, rounds = 1,
          prefetch = worker::WorkerOptions{}.prefetch;
  double rate = 200;
  bool per_transition = false, chunked = false;
  FlagSet flags(
      "vidfarm bench dispatch [--tasks 5000] [--rounds 1] [--workers 8] [--latency-tasks 500] "
      "[--rate 200]",
      "Tasks per second through the coordinator with a no-op stage. Starts a coordinator in\n"
      "this process on tcp://127.0.0.1 with a fresh RocksDB in a temp dir, and --workers\n"
      "no-op stage-0 workers (one thread and one DEALER socket each) that answer every\n"
      "ASSIGN at once over the real protocol: a RESULT carrying a constant stage-0 video\n"
      "inline (11.5 KB of fp16 for tiny, as `vidfarm worker` sends outputs that fit in one\n"
      "chunk) and saying \"ready\": true (its credit again, in place of a READY, as\n"
      "`vidfarm worker` does); with --chunked, PUT of the video, PUT_ACK, RESULT (the\n"
      "path of larger outputs). Each job is one task for them (stages 1..6 have no\n"
      "workers, so jobs stop there).\n"
      "\n"
      "Throughput: --tasks jobs submitted in SUBMITs of --batch; tasks/s = tasks / (first\n"
      "SUBMIT sent → a STATUS showing every stage-0 result stored). Its 'turnaround' is,\n"
      "per task, a worker's credit sent (RESULT) → its next ASSIGN received while tasks\n"
      "are queued. With --rounds R the throughput run is repeated R times on the same\n"
      "coordinator and workers (new jobs each time; the earlier rounds' jobs wait at stage\n"
      "1) and a last line gives the median, lowest and highest tasks/s: on a shared machine\n"
      "one run says little.\n"
      "It also prints the process's CPU time per task, each thread's CPU time, how the\n"
      "machine's cores spent the run (busy, idle, stolen by the host), and how the\n"
      "coordinator's loop spent it (working, or waiting in poll for messages).\n"
      "\n"
      "Assignment latency: then --latency-tasks jobs are submitted one per SUBMIT at --rate\n"
      "per second, with idle workers waiting; latency = SUBMIT sent by the client → ASSIGN\n"
      "received by a worker, i.e. the task becoming ready and being leased (both\n"
      "committed; the ASSIGN does not wait for their WAL sync), plus the messages.\n"
      "p50/p99 are nearest-rank.\n"
      "\n"
      "With --per-transition the coordinator syncs every transition on its own (the old\n"
      "rule) instead of group commit (one sync for each loop round's commits, on a\n"
      "thread beside the loop); run both to compare.\n"
      "\n"
      "--prefetch: each no-op worker's READY asks for 1 + N leases at once, as `vidfarm\n"
      "worker --prefetch N` does (default the same); 0 = one lease at a time.");
  flags.Int("tasks", 'n', &tasks, "tasks for the throughput run");
  flags.Int("rounds", 'r', &rounds, "throughput runs, one after the other (median reported)");
  flags.Int("workers", 'w', &workers, "no-op workers");
  flags.Int("batch", 0, &batch, "jobs per SUBMIT in the throughput run");
  flags.Int("latency-tasks", 0, &latency_tasks, "tasks for the latency run (0 = skip)");
  flags.Double("rate", 0, &rate, "submissions per second in the latency run");
  flags.Bool("per-transition", 0, &per_transition, "one synced commit per transition");
  flags.Bool("chunked", 0, &chunked, "PUT each result in chunks before the RESULT (not inline)");
  flags.Int("prefetch", 0, &prefetch, "leases per worker beyond one (0..15)");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "bench", &positional, 0, 0); rc >= 0) return rc;
  if (tasks < 1 || rounds < 1 || rounds > 100 || workers < 1 || workers > 256 || batch < 1 ||
      latency_tasks < 0 || !(rate > 0) || prefetch < 0 || prefetch > worker::kMaxPrefetch) {
    return Fail("bench",
                "--tasks >= 1, --rounds 1..100, --workers 1..256, --batch >= 1, "
                "--latency-tasks >= 0, --rate > 0, --prefetch 0..15",
                2);
  }
  if (std::getenv("VIDFARM_LOG") == nullptr) SetLogLevel(LogLevel::kError);
  auto dir = BenchDir::Make("vidfarm-bench-dispatch");
  if (!dir.ok()) return Fail("bench", dir.status().ToString());
  auto table = CascadeTable("tiny");
  if (!table.ok()) return Fail("bench", table.status().ToString());

  zmq::context_t ctx(1);
  coordinator::CoordinatorOptions co;
  co.db_path = (*dir)->path() + "/db";
  co.worker_endpoint = "tcp://127.0.0.1:0";
  co.api_endpoint = "tcp://127.0.0.1:0";
  co.group_commit = !per_transition;
  auto coord = coordinator::Coordinator::Start(co, &ctx);
  if (!coord.ok()) return Fail("bench", coord.status().ToString());
  auto client = coordinator::Client::Connect((*coord)->api_endpoint(), &ctx, 60000);
  if (!client.ok()) return Fail("bench", client.status().ToString());

  NoopWorker::Shared shared;
  shared.endpoint = (*coord)->worker_endpoint();
  shared.preset = "tiny";
  shared.shape = (*table)[0];
  shared.chunked = chunked;
  shared.max_leases = 1 + static_cast<int>(prefetch);
  shared.result = wire::EncodeVideo(
      Video(3, shared.shape.frames, shared.shape.height, shared.shape.width, shared.shape.fps));
  std::vector<NoopWorker> ws(static_cast<size_t>(workers));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < ws.size(); ++i) {
    ws[i].index = static_cast<int>(i);
    ws[i].shared = &shared;
    threads.emplace_back([&w = ws[i], &ctx] { w.Main(&ctx); });
  }
  int rc = 0;
  auto finish = [&] {
    shared.stop = true;
    for (auto& t : threads) t.join();
    client->reset();
    (*coord)->Stop();
  };
  Status st = WaitForWorkers(**client, static_cast<int>(workers), 30000);
  if (!st.ok()) return finish(), Fail("bench", st.ToString());

  std::printf(
      "dispatch: %lld no-op stage-0 workers (prefetch %lld), coordinator on %s, %s; results %s\n",
      static_cast<long long>(workers), static_cast<long long>(prefetch),
      (*coord)->worker_endpoint().c_str(),
      per_transition ? "one synced commit per transition"
                     : "group commit (WAL syncs on a syncer thread beside the loop)",
      chunked ? "PUT in chunks first" : "inline in the RESULT");
  std::printf("%s\n", LoadLine().c_str());

  // Throughput.
  auto stored = [&](int64_t want) -> Status {  // every stage-0 result so far is stored
    for (;;) {
      VF_ASSIGN_OR_RETURN(json s, (*client)->Call(wire::Command::kStatus, json::object()));
      if (s["ready"][1].get<int64_t>() >= want) return Status::OK();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  };
  // The coordinator loop's busy and waiting seconds so far, from a STATUS reply ("loop").
  auto loop_times = [](const Result<json>& s) -> std::pair<double, double> {
    if (!s.ok() || !(*s)["loop"].is_object()) return {-1.0, -1.0};
    return {(*s)["loop"].value("busy_s", 0.0), (*s)["loop"].value("wait_s", 0.0)};
  };
  auto store_counts = [](const Result<json>& s) -> std::string {
    if (!s.ok() || !(*s)["store"].is_object()) return "unknown";
    const auto c = (*s)["store"].value("commits", uint64_t{0});
    const auto y = (*s)["store"].value("syncs", uint64_t{0});
    return fmt::format(
        "{} commits, {} syncs ({:.1f} commits per sync); {:.3f} s in Commit on the loop (with "
        "group commit only queuing: the store's writer thread writes), {:.3f} s in WAL syncs",
        c, y, y ? static_cast<double>(c) / static_cast<double>(y) : 0.0,
        (*s)["store"].value("commit_s", 0.0), (*s)["store"].value("sync_s", 0.0));
  };
  std::vector<double> rates;
  for (int64_t round = 0; round < rounds; ++round) {
    if (rounds > 1) {
      std::printf("round %lld of %lld\n", static_cast<long long>(round + 1),
                  static_cast<long long>(rounds));
    }
    const int64_t before = round * tasks;  // results of the earlier rounds
    const auto loop0 = loop_times((*client)->Call(wire::Command::kStatus, json::object()));
    shared.phase_us = NowUs();
    const CpuMeter cpu;
    const auto t0 = Clock::now();
    for (int64_t done = 0; done < tasks && st.ok();) {
      std::vector<json> specs;
      for (int64_t i = 0; i < batch && done < tasks; ++i, ++done) {
        specs.push_back({{"prompt", "noop"}, {"seed", before + done}});
      }
      auto ids = (*client)->Submit(specs);
      if (!ids.ok()) st = ids.status();
    }
    const auto submitted = Clock::now();
    while (st.ok() && shared.results.load() < before + tasks) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (st.ok()) st = stored(before + tasks);
    const auto t1 = Clock::now();
    if (!st.ok()) return finish(), Fail("bench", st.ToString());
    const std::string cpu_line = cpu.Line(tasks), threads_line = cpu.ThreadsLine();
    // One STATUS after the run: the store's counts and the loop's times.
    const Result<json> after = (*client)->Call(wire::Command::kStatus, json::object());
    const std::string counts = store_counts(after);
    const auto loop1 = loop_times(after);
    std::vector<double> turn;  // this round's (the workers are idle between rounds)
    for (auto& w : ws) {
      turn.insert(turn.end(), w.turnaround_us.begin(), w.turnaround_us.end());
      w.turnaround_us.clear();
    }
    const double secs = Seconds(t0, t1);
    rates.push_back(static_cast<double>(tasks) / secs);
    std::printf("throughput   %lld tasks in %.3f s: %.0f tasks/s (submitting took %.3f s)\n",
                static_cast<long long>(tasks), secs, rates.back(), Seconds(t0, submitted));
    std::printf(
        "turnaround   credit sent -> ASSIGN received, under load: p50 %.2f ms, p99 %.2f ms "
        "(%zu samples)\n",
        Median(turn) / 1e3, Quantile(turn, 0.99) / 1e3, turn.size());
    std::printf("cpu          %s\n", cpu_line.c_str());
    std::printf("threads      CPU by thread: %s\n", threads_line.c_str());
    if (loop0.first >= 0 && loop1.first >= 0) {
      const double busy = loop1.first - loop0.first, wait = loop1.second - loop0.second;
      std::printf(
          "loop         the coordinator's loop: %.3f s working, %.3f s waiting for messages "
          "(%.0f %% busy)\n",
          busy, wait, busy + wait > 0 ? 100.0 * busy / (busy + wait) : 0.0);
    }
    std::printf("store        %s\n", counts.c_str());
  }
  if (rounds > 1) {
    std::printf(
        "rounds       %lld throughput runs: median %.0f tasks/s, lowest %.0f, highest %.0f\n",
        static_cast<long long>(rounds), Median(rates), *std::min_element(rates.begin(), rates.end()),
        *std::max_element(rates.begin(), rates.end()));
  }

  // Latency, open loop.
  if (latency_tasks > 0) {
    std::map<std::string, int64_t> sent_us;
    const auto period = std::chrono::duration<double>(1.0 / rate);
    const auto start = Clock::now();
    for (int64_t i = 0; i < latency_tasks; ++i) {
      std::this_thread::sleep_until(start +
                                    std::chrono::duration_cast<Clock::duration>(period * i));
      const int64_t t = NowUs();
      auto ids = (*client)->Submit({json{{"prompt", "latency"}, {"seed", i}}});
      if (!ids.ok()) {
        st = ids.status();
        break;
      }
      sent_us[ids->front()] = t;
    }
    while (st.ok() && shared.results.load() < rounds * tasks + latency_tasks) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (st.ok()) st = stored(rounds * tasks + latency_tasks);
    if (!st.ok()) return finish(), Fail("bench", st.ToString());
    const double achieved = static_cast<double>(latency_tasks) / Seconds(start, Clock::now());
    std::vector<double> lat;
    for (const auto& w : ws) {
      for (const auto& [job, t] : w.assigned) {
        auto it = sent_us.find(job);
        if (it != sent_us.end()) lat.push_back(static_cast<double>(t - it->second));
      }
    }
    std::printf(
        "latency      SUBMIT sent -> ASSIGN received, %zu tasks at %.0f/s (asked %.0f/s): "
        "p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
        lat.size(), achieved, rate, Median(lat) / 1e3, Quantile(lat, 0.99) / 1e3,
        lat.empty() ? 0.0 : *std::max_element(lat.begin(), lat.end()) / 1e3);
  }
  if (shared.errors.load() > 0) {
    std::printf("note         %lld ERROR/CANCEL answers to the no-op workers\n",
                static_cast<long long>(shared.errors.load()));
  }
  finish();
  for (const auto& w : ws) {
    if (!w.failure.empty()) rc = Fail("bench", "no-op worker: " + w.failure);
  }
  return rc;
}

// ---------------------------------------------------------------------------------------------
// bench overhead

int RunBenchOverhead(const std::vector<std::string>& args) {
  int64_t steps = 0, rounds = 3, threads = 0, warmup = 1;
  uint64_t seed = 1;
  std::string prompt = "a red circle moving right";
  FlagSet flags(
      "vidfarm bench overhead [--steps 0] [--rounds 3] [--threads 0]",
      "Wall time of one tiny job through the farm against the same job run directly in\n"
      "this process. Both use the tiny preset, random weights (the same, seed 0x5eed + k),\n"
      "--steps sampler steps in each of the seven stages (0: each stage's default, the job\n"
      "`vidfarm render` runs) and the same --seed, and end with\n"
      "an MP4 encode of the last stage's video:\n"
      "  direct: Cascade::Render, then the MP4 written to a file;\n"
      "  farm:   the embedded farm of `vidfarm render` (coordinator with a RocksDB in a temp\n"
      "          dir, one worker per stage, inproc://): SUBMIT, WATCH until done (the\n"
      "          coordinator encodes), FETCH of the MP4, written to a file.\n"
      "Set-up (building the models, starting the farm) is outside both times. The two are\n"
      "run alternately --rounds times (which goes first alternates too) after --warmup\n"
      "untimed runs of each; the overhead is median(farm) / median(direct) - 1.\n"
      "The farm's last stage video (kept with keep_intermediates) is compared with the\n"
      "direct one sample by sample.");
  flags.Int("steps", 0, &steps, "sampler steps per stage (0 = each stage's default)");
  flags.Int("rounds", 'n', &rounds, "timed runs of each");
  flags.Int("warmup", 0, &warmup, "untimed runs of each first");
  flags.Int("threads", 't', &threads, "CPU threads for LibTorch (0 = all cores)");
  flags.Uint64("seed", 0, &seed, "seed of the job");
  flags.String("prompt", 0, &prompt, "prompt of the job");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "bench", &positional, 0, 0); rc >= 0) return rc;
  if (steps < 0 || steps > 1000 || rounds < 1 || warmup < 0) {
    return Fail("bench", "--steps 0..1000, --rounds >= 1, --warmup >= 0", 2);
  }
  SetThreads(threads);
  if (std::getenv("VIDFARM_LOG") == nullptr) SetLogLevel(LogLevel::kError);
  auto dir = BenchDir::Make("vidfarm-bench-overhead");
  if (!dir.ok()) return Fail("bench", dir.status().ToString());
  const std::string base = (*dir)->path();

  JobSpec spec;
  spec.prompt = prompt;
  spec.seed = seed;
  spec.steps.assign(7, static_cast<int>(steps));
  spec.keep_intermediates = true;

  // Direct.
  const auto s0 = Clock::now();
  models::CascadeOptions opts;
  opts.force_random_weights = true;
  for (int k = 0; k < 7; ++k) opts.overrides.push_back(worker::OverridesFromSpec(spec, k));
  auto cascade = models::Cascade::Open(opts);
  if (!cascade.ok()) return Fail("bench", cascade.status().ToString());
  const double direct_setup = Seconds(s0, Clock::now());

  // The embedded farm, as RenderEmbedded builds it.
  const auto s1 = Clock::now();
  zmq::context_t ctx(1);
  coordinator::CoordinatorOptions co;
  co.db_path = base + "/db";
  co.worker_endpoint = fmt::format("inproc://vidfarm-bench-workers-{}", getpid());
  co.api_endpoint = fmt::format("inproc://vidfarm-bench-api-{}", getpid());
  auto coord = coordinator::Coordinator::Start(co, &ctx);
  if (!coord.ok()) return Fail("bench", coord.status().ToString());
  std::vector<std::unique_ptr<worker::Worker>> workers;
  for (int k = 0; k < 7; ++k) {
    worker::WorkerOptions wo;
    wo.endpoint = (*coord)->worker_endpoint();
    wo.stage = k;
    auto w = worker::Worker::Create(wo, &ctx);
    if (!w.ok()) return Fail("bench", w.status().ToString());
    workers.push_back(std::move(*w));
  }
  std::vector<std::thread> threads_;
  for (auto& w : workers) threads_.emplace_back([raw = w.get()] { (void)raw->Run(); });
  auto finish = [&] {
    for (auto& w : workers) w->Stop();
    for (auto& t : threads_) t.join();
    (*coord)->Stop();
  };
  auto client = coordinator::Client::Connect((*coord)->api_endpoint(), &ctx, 600000);
  if (!client.ok()) return finish(), Fail("bench", client.status().ToString());
  Status st = WaitForWorkers(**client, 7, 60000);
  if (!st.ok()) return finish(), Fail("bench", st.ToString());
  const double farm_setup = Seconds(s1, Clock::now());

  std::printf(
      "overhead: tiny preset, random weights, %lld steps per stage, seed %llu, %d threads\n",
      static_cast<long long>(steps), static_cast<unsigned long long>(seed),
      torch::get_num_threads());
  std::printf("%s\n", LoadLine().c_str());
  std::printf("set-up       direct %.2f s (models), farm %.2f s (coordinator + 7 workers)\n",
              direct_setup, farm_setup);
  std::vector<double> direct_s, farm_s;
  Video direct_video;
  std::string last_job;
  auto run_direct = [&]() -> Result<double> {
    const auto t0 = Clock::now();
    VF_ASSIGN_OR_RETURN(Video video, (*cascade)->Render(spec.prompt, spec.seed));
    VF_RETURN_NOT_OK(WriteVideo(video, base + "/direct.mp4"));
    const double secs = Seconds(t0, Clock::now());
    direct_video = std::move(video);
    return secs;
  };
  auto run_farm = [&]() -> Result<double> {
    const auto t0 = Clock::now();
    VF_ASSIGN_OR_RETURN(std::vector<std::string> ids, (*client)->Submit({spec.ToJson()}));
    last_job = ids.front();
    std::string end;
    VF_RETURN_NOT_OK((*client)->Watch(last_job, [&](const json& ev) {
      const std::string type = ev.value("type", "");
      if (type == "done" || type == "failed" || type == "cancelled") end = type;
      return true;
    }));
    if (end != "done") return Status::Internal("farm job ended " + end);
    VF_ASSIGN_OR_RETURN(json job, (*client)->Call(wire::Command::kStatus, {{"job", last_job}}));
    VF_ASSIGN_OR_RETURN(std::string bytes,
                        (*client)->FetchBlob(job["job"].value("output_blob", "")));
    std::ofstream(base + "/farm.mp4", std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return Seconds(t0, Clock::now());
  };
  // Warm-up: each path's models run once untimed (first forwards allocate and pick kernels).
  for (int64_t r = 0; r < warmup && st.ok(); ++r) {
    auto d = run_direct();
    auto f = d.ok() ? run_farm() : Result<double>(d.status());
    st = f.status();
    if (st.ok()) std::printf("warm-up      direct %.3f s, farm %.3f s\n", *d, *f);
  }
  // Alternating which goes first cancels a slow drift of the machine's load.
  for (int64_t r = 0; r < rounds && st.ok(); ++r) {
    Result<double> d = 0.0, f = 0.0;
    if (r % 2 == 0) {
      d = run_direct();
      if (d.ok()) f = run_farm();
    } else {
      f = run_farm();
      if (f.ok()) d = run_direct();
    }
    st = !d.ok() ? d.status() : f.status();
    if (!st.ok()) break;
    direct_s.push_back(*d);
    farm_s.push_back(*f);
    std::printf("round %lld     direct %.3f s, farm %.3f s\n", static_cast<long long>(r + 1), *d,
                *f);
  }
  if (!st.ok()) return finish(), Fail("bench", st.ToString());
  const double d = Median(direct_s), f = Median(farm_s);
  std::printf("median       direct %.3f s, farm %.3f s: overhead %+.1f %% (%+.3f s)\n", d, f,
              (f / d - 1) * 100, f - d);
  const double dmin = *std::min_element(direct_s.begin(), direct_s.end());
  const double fmin = *std::min_element(farm_s.begin(), farm_s.end());
  std::printf("best         direct %.3f s, farm %.3f s: overhead %+.1f %%\n", dmin, fmin,
              (fmin / dmin - 1) * 100);
  auto last = (*client)->FetchBlob(fmt::format("{}/6/out", last_job));
  auto farm_video = last.ok() ? wire::DecodeVideo(*last) : Result<Video>(last.status());
  if (farm_video.ok()) {
    std::printf("same video   %s (last stage, %s)\n",
                farm_video->data == direct_video.data ? "yes, bit for bit" : "NO",
                farm_video->ShapeString().c_str());
  } else {
    std::printf("same video   unknown: %s\n", farm_video.status().ToString().c_str());
  }
  finish();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// bench pipeline

// The makespan of FIFO list scheduling with zero overhead (see --help): stage by stage, tasks in
// order of readiness (ties: submission order, as the READY queues), each started on the pool's
// earliest free worker.
double IdealMakespan(const std::vector<int64_t>& ms, const std::vector<int64_t>& pools,
                     int64_t jobs) {
  std::vector<int64_t> ready(static_cast<size_t>(jobs), 0);  // ms: job j's input exists
  for (size_t k = 0; k < ms.size(); ++k) {
    std::vector<int64_t> order(ready.size());
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return ready[a] < ready[b]; });
    std::priority_queue<int64_t, std::vector<int64_t>, std::greater<>> free_at;
    for (int64_t w = 0; w < pools[k]; ++w) free_at.push(0);
    for (int64_t j : order) {
      const int64_t start = std::max(ready[j], free_at.top());
      free_at.pop();
      ready[j] = start + ms[k];
      free_at.push(ready[j]);
    }
  }
  return static_cast<double>(*std::max_element(ready.begin(), ready.end())) / 1e3;
}

// Where the farm's cost sits, from the run's own event log (times stamped at commit on the
// coordinator): per stage, the mean time per task beyond the simulated work, from its lease
// committed (or the worker's previous result stored, if later: a prefetched lease waits behind
// it) to its result stored (ASSIGN delivery, input fetch, output upload, the RESULT's store write,
// where prefetch does not hide them), and the mean dispatch gap (a worker's last result stored,
// or the task's input stored if later, to its next lease committed; 0 for a prefetched lease).
void PrintPipelineBreakdown(const std::string& db_path, const std::vector<int64_t>& ms) {
  storage::StoreOptions so;
  so.path = db_path;
  so.create_if_missing = false;
  auto store = storage::Store::Open(so);
  if (!store.ok()) {
    std::printf("breakdown    (event log unreadable: %s)\n", store.status().ToString().c_str());
    return;
  }
  struct Times {
    int64_t started = -1, done = -1;
    std::string worker;
  };
  std::map<std::string, int64_t> submitted;
  std::map<std::pair<std::string, int>, Times> tasks;  // (job, stage)
  std::vector<storage::Event> events;
  uint64_t after = 0;
  do {
    if (!(*store)->ReadEvents(after, 4096, &events).ok()) break;
    for (const auto& e : events) {
      after = e.seq;
      if (e.type == "submitted") submitted[e.job_id] = e.time_us;
      if (e.type != "stage_started" && e.type != "stage_done") continue;
      Times& t = tasks[{e.job_id, e.data.value("stage", -1)}];
      if (e.type == "stage_started") {
        t.started = e.time_us;
        t.worker = e.data.value("worker", "");
      } else {
        t.done = e.time_us;
      }
    }
  } while (!events.empty());
  std::printf("breakdown    per stage, mean ms: lease beyond the simulated work | dispatch gap\n");
  std::printf("            ");
  double total_over = 0, total_gap = 0;
  for (int k = 0; k < static_cast<int>(ms.size()); ++k) {
    double over = 0, gap = 0;
    int n_over = 0, n_gap = 0;
    struct Run {
      int64_t started, done, ready;
    };
    std::map<std::string, std::vector<Run>> by_worker;
    for (const auto& [key, t] : tasks) {
      if (key.second != k || t.started < 0 || t.done < 0) continue;
      int64_t ready = -1;
      if (k == 0) {
        auto it = submitted.find(key.first);
        if (it != submitted.end()) ready = it->second;
      } else {
        auto it = tasks.find({key.first, k - 1});
        if (it != tasks.end()) ready = it->second.done;
      }
      by_worker[t.worker].push_back({t.started, t.done, ready});
    }
    // A prefetched lease starts before the worker's previous result is stored: its work is
    // counted from that result on, and it waited for no lease.
    for (auto& [w, runs] : by_worker) {
      std::sort(runs.begin(), runs.end(),
                [](const Run& a, const Run& b) { return a.started < b.started; });
      for (size_t i = 0; i < runs.size(); ++i) {
        const int64_t prev_done = i > 0 ? runs[i - 1].done : -1;
        over += static_cast<double>(runs[i].done - std::max(runs[i].started, prev_done)) / 1e3 -
                static_cast<double>(ms[k]);
        ++n_over;
        if (i == 0 || runs[i].ready < 0) continue;
        gap += static_cast<double>(
                   std::max<int64_t>(0, runs[i].started - std::max(prev_done, runs[i].ready))) /
               1e3;
        ++n_gap;
      }
    }
    const double mo = n_over ? over / n_over : 0, mg = n_gap ? gap / n_gap : 0;
    total_over += over;
    total_gap += gap;
    std::printf(" %d: %.1f | %.1f", k, mo, mg);
  }
  std::printf("\n             sums over every task: %.0f ms in leases beyond the work, %.0f ms in "
              "dispatch gaps\n",
              total_over, total_gap);
}

int RunBenchPipeline(const std::vector<std::string>& args) {
  int64_t jobs = 20, prefetch = worker::WorkerOptions{}.prefetch;
  std::string ms_text = "100,100,100,600,150,150,250", pools_text = "1,1,1,2,1,1,1";
  FlagSet flags(
      "vidfarm bench pipeline [--jobs 20] [--ms 100,100,100,600,150,150,250] "
      "[--pools 1,1,1,2,1,1,1] [--prefetch 1]",
      "Pipelining across the seven stage pools. Starts a coordinator in this process on\n"
      "tcp://127.0.0.1 (fresh RocksDB in a temp dir) and, for each stage k, --pools[k]\n"
      "real workers in simulate mode (`vidfarm worker --simulate-ms`): no model, each task\n"
      "takes --ms[k] ms, inputs are fetched and a zero video of the stage's real tiny shape\n"
      "is uploaded (11.5 KB at stage 0 up to 5.9 MB at stage 6, fp16), over the real protocol.\n"
      "Submits --jobs jobs at once and measures the makespan: SUBMIT sent → every job's\n"
      "seventh stage stored (and, separately, → every job done, after the coordinator's\n"
      "final MP4 encodes).\n"
      "\n"
      "Bound (no schedule can beat it): for each stage k,\n"
      "  B_k = sum_{j<k} ms[j] + ceil(jobs / pools[k]) * ms[k] + sum_{j>k} ms[j]\n"
      "(the first job's fill up to k, pool k's work, the last job's drain after k);\n"
      "bound = max_k B_k, set by the slowest pool. Prints makespan / bound.\n"
      "\n"
      "Ideal: the schedule the coordinator's policy gives with zero overhead, simulated:\n"
      "each stage takes its tasks in the order they become ready, each on the pool's first\n"
      "free worker. With identical jobs no schedule beats it; it exceeds the bound where the\n"
      "slowest pool hands its last tasks on together and a later one-worker pool queues them\n"
      "(the default: stage 3's last two tasks end 100 ms apart, stage 6 takes 250 ms each).\n"
      "makespan / ideal is the farm's own cost.\n"
      "\n"
      "--prefetch is the workers' (`vidfarm worker --prefetch`): leases each holds beyond the\n"
      "one it computes; 0 runs one lease at a time, to compare.");
  flags.Int("jobs", 'n', &jobs, "jobs");
  flags.String("ms", 0, &ms_text, "simulated ms per task, per stage (7 values)");
  flags.String("pools", 0, &pools_text, "workers per stage (7 values)");
  flags.Int("prefetch", 0, &prefetch, "leases per worker beyond the one computing (0..15)");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "bench", &positional, 0, 0); rc >= 0) return rc;
  if (prefetch < 0 || prefetch > worker::kMaxPrefetch) {
    return Fail("bench", fmt::format("--prefetch must be in 0..{}", worker::kMaxPrefetch), 2);
  }
  auto ms = ParseIntList(ms_text, flags.Describe("ms"));
  if (!ms.ok()) return Fail("bench", ms.status().message(), 2);
  auto pools = ParseIntList(pools_text, flags.Describe("pools"));
  if (!pools.ok()) return Fail("bench", pools.status().message(), 2);
  if (jobs < 1 || ms->size() != 7 || pools->size() != 7 ||
      std::any_of(ms->begin(), ms->end(), [](int64_t v) { return v < 0 || v > 600000; }) ||
      std::any_of(pools->begin(), pools->end(), [](int64_t v) { return v < 1 || v > 64; })) {
    return Fail("bench", "--jobs >= 1; --ms: 7 values in 0..600000; --pools: 7 values in 1..64", 2);
  }
  if (std::getenv("VIDFARM_LOG") == nullptr) SetLogLevel(LogLevel::kError);
  auto dir = BenchDir::Make("vidfarm-bench-pipeline");
  if (!dir.ok()) return Fail("bench", dir.status().ToString());

  // The bound.
  double bound = 0;
  int slowest = 0;
  const int64_t total_ms = std::accumulate(ms->begin(), ms->end(), int64_t{0});
  for (int k = 0; k < 7; ++k) {
    const int64_t waves = (jobs + (*pools)[k] - 1) / (*pools)[k];
    const double b = static_cast<double>(total_ms - (*ms)[k] + waves * (*ms)[k]) / 1e3;
    if (b > bound) {
      bound = b;
      slowest = k;
    }
  }

  const double ideal = IdealMakespan(*ms, *pools, jobs);

  zmq::context_t ctx(1);
  coordinator::CoordinatorOptions co;
  co.db_path = (*dir)->path() + "/db";
  co.worker_endpoint = "tcp://127.0.0.1:0";
  co.api_endpoint = "tcp://127.0.0.1:0";
  auto coord = coordinator::Coordinator::Start(co, &ctx);
  if (!coord.ok()) return Fail("bench", coord.status().ToString());
  std::vector<std::unique_ptr<worker::Worker>> workers;
  for (int k = 0; k < 7; ++k) {
    for (int64_t i = 0; i < (*pools)[k]; ++i) {
      worker::WorkerOptions wo;
      wo.endpoint = (*coord)->worker_endpoint();
      wo.stage = k;
      wo.simulate_ms = static_cast<int>((*ms)[k]);
      wo.prefetch = static_cast<int>(prefetch);
      wo.worker_id = fmt::format("sim-{}-{}", k, i);
      auto w = worker::Worker::Create(wo, &ctx);
      if (!w.ok()) return (*coord)->Stop(), Fail("bench", w.status().ToString());
      workers.push_back(std::move(*w));
    }
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([raw = w.get()] { (void)raw->Run(); });
  auto finish = [&] {
    for (auto& w : workers) w->Stop();
    for (auto& t : threads) t.join();
    (*coord)->Stop();
  };
  auto client = coordinator::Client::Connect((*coord)->api_endpoint(), &ctx, 60000);
  if (!client.ok()) return finish(), Fail("bench", client.status().ToString());
  Status st = WaitForWorkers(**client, static_cast<int>(workers.size()), 30000);
  if (!st.ok()) return finish(), Fail("bench", st.ToString());

  std::printf(
      "pipeline: %lld jobs, ms per task %s, workers per stage %s, prefetch %lld (simulated, tcp "
      "loopback)\n",
      static_cast<long long>(jobs), ms_text.c_str(), pools_text.c_str(),
      static_cast<long long>(prefetch));
  std::printf("%s\n", LoadLine().c_str());
  std::vector<json> specs;
  for (int64_t i = 0; i < jobs; ++i) specs.push_back({{"prompt", "pipeline"}, {"seed", i}});
  const auto t0 = Clock::now();
  auto ids = (*client)->Submit(specs);
  if (!ids.ok()) return finish(), Fail("bench", ids.status().ToString());
  std::optional<Clock::time_point> stages_done, all_done;
  while (!all_done) {
    auto list = (*client)->Call(wire::Command::kList, json::object());
    if (!list.ok()) return finish(), Fail("bench", list.status().ToString());
    const auto now = Clock::now();
    int64_t staged = 0, done = 0, bad = 0;
    for (const auto& j : (*list)["jobs"]) {
      const std::string s = j.value("state", "");
      staged += j.value("stages_done", 0) == 7;
      done += s == "done";
      bad += s == "failed" || s == "cancelled";
    }
    if (bad > 0) return finish(), Fail("bench", fmt::format("{} job(s) failed", bad));
    if (!stages_done && staged == jobs) stages_done = now;
    if (done == jobs) all_done = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double m_stages = Seconds(t0, *stages_done), m_done = Seconds(t0, *all_done);
  std::printf(
      "bound        %.3f s, set by stage %d's pool: %lld ms x ceil(%lld / %lld) + %lld ms "
      "fill/drain of the other stages\n",
      bound, slowest, static_cast<long long>((*ms)[slowest]), static_cast<long long>(jobs),
      static_cast<long long>((*pools)[slowest]), static_cast<long long>(total_ms - (*ms)[slowest]));
  std::printf(
      "ideal        %.3f s: the coordinator's policy (FIFO per stage; every job alike) with\n"
      "             zero overhead, %.3f x bound\n",
      ideal, ideal / bound);
  std::printf(
      "makespan     %.3f s to the last stage stored: %.3f x bound (%+.1f %%), %.3f x ideal\n",
      m_stages, m_stages / bound, (m_stages / bound - 1) * 100, m_stages / ideal);
  std::printf("             %.3f s to the last job done (final MP4 encodes): %.3f x bound\n",
              m_done, m_done / bound);
  // Where the coordinator spent the run: every byte of every intermediate video is written on its
  // loop thread; the WAL syncs that must finish before the replies that reveal it go out run on
  // its syncer thread, beside the loop.
  auto s = (*client)->Call(wire::Command::kStatus, json::object());
  if (s.ok() && (*s)["store"].is_object()) {
    const auto& st = (*s)["store"];
    const double cs = st.value("commit_s", 0.0), ys = st.value("sync_s", 0.0);
    std::printf(
        "coordinator  %.3f s in store writes on its loop (%.0f %% of the makespan), %.3f s in "
        "%llu WAL syncs beside it\n",
        cs, cs / m_done * 100, ys, static_cast<unsigned long long>(st.value("syncs", uint64_t{0})));
  }
  finish();
  PrintPipelineBreakdown(co.db_path, *ms);
  return 0;
}

}  // namespace

// Called by RunBench (bench_cmd.cpp) for `bench dispatch|overhead|pipeline`; -1 = not ours.
int RunBenchFarm(const std::string& which, const std::vector<std::string>& args) {
  if (which == "dispatch") return RunBenchDispatch(args);
  if (which == "overhead") return RunBenchOverhead(args);
  if (which == "pipeline") return RunBenchPipeline(args);
  return -1;
}

}  // namespace vidfarm::cli
