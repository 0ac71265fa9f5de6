// The farm's commands: `vidfarm coordinator` (the server) and the client commands that talk to it
// (submit, status, list, watch, fetch, cancel, pause, resume, retry, workers).
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "commands.h"
#include "flags.h"
#include "vidfarm/common/job_spec.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/common/wire.h"
#include "vidfarm/coordinator/client.h"
#include "vidfarm/coordinator/coordinator.h"
#include "vidfarm/coordinator/http.h"

namespace vidfarm::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kDefaultApi = "tcp://127.0.0.1:5556";

// Blocks SIGINT/SIGTERM in every thread started after this, then waits for one of them.
class SignalWaiter {
 public:
  SignalWaiter() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  int Wait() {
    int sig = 0;
    sigwait(&set_, &sig);
    return sig;
  }

 private:
  sigset_t set_;
};

std::string Ago(int64_t us) {
  if (us <= 0) return "-";
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const double s = (now - us) / 1e6;
  if (s < 60) return fmt::format("{:.0f}s ago", s);
  if (s < 3600) return fmt::format("{:.0f}m ago", s / 60);
  if (s < 86400) return fmt::format("{:.1f}h ago", s / 3600);
  return fmt::format("{:.1f}d ago", s / 86400);
}

std::string Bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.1f} {}", b, units[u]);
}

// Common to every client command: --coordinator (VIDFARM_COORDINATOR), --timeout-ms, --json.
struct ClientFlags {
  std::string endpoint = kDefaultApi;
  int64_t timeout_ms = 10000;
  bool json = false;
  void Add(FlagSet* f, bool with_json = true) {
    f->String("coordinator", 'c', &endpoint, "coordinator API endpoint");
    f->Int("timeout-ms", 0, &timeout_ms, "how long to wait for an answer");
    if (with_json) f->Bool("json", 0, &json, "print JSON");
  }
};

struct Connection {
  zmq::context_t ctx{1};
  std::unique_ptr<coordinator::Client> client;
};

Result<std::unique_ptr<Connection>> Connect(const ClientFlags& cf) {
  auto c = std::make_unique<Connection>();
  VF_ASSIGN_OR_RETURN(c->client, coordinator::Client::Connect(cf.endpoint, &c->ctx,
                                                              static_cast<int>(cf.timeout_ms)));
  return c;
}

int ExitCode(const Status& st) {
  switch (st.code()) {
    case Status::Code::kInvalidArgument:
      return 2;
    case Status::Code::kNotFound:
      return 3;
    case Status::Code::kTimedOut:
      return 4;
    default:
      return 1;
  }
}

void PrintJobLine(const json& j) {
  std::printf("%-26s %-9s %d/%d  %-8s %s\n", j.value("id", "").c_str(),
              j.value("state", "").c_str(), j.value("stages_done", 0), j.value("num_stages", 7),
              Ago(j.value("updated_us", int64_t{0})).c_str(), j.value("prompt", "").c_str());
}

}  // namespace

int RunCoordinator(const std::vector<std::string>& args) {
  coordinator::CoordinatorOptions o;
  o.worker_endpoint = "tcp://127.0.0.1:5555";
  o.api_endpoint = kDefaultApi;
  int64_t heartbeat_ms = o.heartbeat_ms, misses = o.heartbeat_misses, attempts = o.max_attempts;
  int64_t quarantine = o.quarantine_after;
  double aging = o.aging_seconds;
  std::string http_listen;
  FlagSet flags(
      "vidfarm coordinator --db DIR [--listen tcp://HOST:PORT] [--api tcp://HOST:PORT] "
      "[--http HOST:PORT]",
      "Runs the farm's coordinator: owns the RocksDB database, takes jobs from clients on\n"
      "--api, leases stage tasks to workers on --listen, and keeps every intermediate\n"
      "video in the database. Restarted on an existing --db it resumes every unfinished\n"
      "job. Stops cleanly on SIGINT/SIGTERM.\n"
      "\n"
      "With --http, also serves a dashboard at http://HOST:PORT/ and a JSON API beside it:\n"
      "GET /api/status, /api/jobs[?state=S&limit=N], /api/jobs/JOB, /api/jobs/JOB/video,\n"
      "/api/workers, /metrics (Prometheus); POST /api/jobs (a job spec, an array of them,\n"
      "or {\"jobs\": [...]}) and POST /api/jobs/JOB/cancel|pause|resume|retry.");
  flags.String("db", 0, &o.db_path, "database directory (created if missing)");
  flags.String("listen", 'l', &o.worker_endpoint, "endpoint for workers (port 0 picks one)");
  flags.String("api", 0, &o.api_endpoint, "endpoint for clients");
  flags.String("preset", 0, &o.preset, "the cascade this farm runs: tiny | paper");
  flags.Int("heartbeat-ms", 0, &heartbeat_ms, "heartbeat period");
  flags.Int("heartbeat-misses", 0, &misses, "missed heartbeats before a worker is dead");
  flags.Int("max-attempts", 0, &attempts, "leases per task before its job fails");
  flags.Int("quarantine-after", 0, &quarantine,
            "consecutive failures before a worker is quarantined");
  flags.Double("aging-seconds", 0, &aging,
               "anti-starvation: +1 priority per this many seconds waited");
  flags.String("http", 0, &http_listen, "HOST:PORT for the dashboard and HTTP API (off if empty)");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "coordinator", &positional, 0, 0); rc >= 0) return rc;
  if (o.db_path.empty()) return Fail("coordinator", "--db DIR is required", 2);
  o.heartbeat_ms = static_cast<int>(heartbeat_ms);
  o.heartbeat_misses = static_cast<int>(misses);
  o.max_attempts = static_cast<int>(attempts);
  o.quarantine_after = static_cast<int>(quarantine);
  o.aging_seconds = aging;
  SignalWaiter signals;
  zmq::context_t ctx(1);
  auto coord = coordinator::Coordinator::Start(o, &ctx);
  if (!coord.ok()) return Fail("coordinator", coord.status().ToString());
  // One line a script can read the bound endpoints from (port 0 resolves here).
  std::unique_ptr<coordinator::HttpGateway> gateway;
  if (!http_listen.empty()) {
    coordinator::HttpOptions ho;
    ho.listen = http_listen;
    ho.api_endpoint = (*coord)->api_endpoint();
    auto g = coordinator::HttpGateway::Start(ho, &ctx);
    if (!g.ok()) {
      (*coord)->Stop();
      return Fail("coordinator", g.status().ToString(), 2);
    }
    gateway = std::move(*g);
  }
  std::printf("coordinator listening workers=%s api=%s db=%s preset=%s%s\n",
              (*coord)->worker_endpoint().c_str(), (*coord)->api_endpoint().c_str(),
              o.db_path.c_str(), o.preset.c_str(),
              gateway ? (" http=" + gateway->url()).c_str() : "");
  std::fflush(stdout);
  int sig = signals.Wait();
  VF_LOG_INFO("coordinator: signal {}, stopping", sig);
  if (gateway) gateway->Stop();
  (*coord)->Stop();
  return 0;
}

int RunSubmit(const std::vector<std::string>& args) {
  ClientFlags cf;
  JobSpec spec;
  std::string file, steps, guidance;
  int64_t priority = 0, last_stage = -1;
  FlagSet flags("vidfarm submit PROMPT [flags] | vidfarm submit --file prompts.jsonl",
                "Submits jobs to the coordinator and prints each new job id alone on a line.\n"
                "With --file, each line of the JSONL file is one job spec, e.g.\n"
                "  {\"prompt\": \"a red circle moving right\", \"seed\": 3, \"priority\": 5}\n"
                "(fields: prompt, seed, preset, priority, steps, sampler, guidance, thresholding,\n"
                "format, keep_intermediates, last_stage); the flags below are defaults for\n"
                "missing fields.\n"
                "A bad line fails the whole submission and nothing is queued.");
  cf.Add(&flags, false);
  flags.String("file", 'f', &file, "JSONL file of job specs ('-' for standard input)");
  flags.Uint64("seed", 's', &spec.seed, "seed");
  flags.Int("priority", 'p', &priority, "priority (higher first; -1000..1000)");
  flags.String("preset", 0, &spec.preset, "cascade preset");
  flags.String("steps", 0, &steps, "per-stage steps, one per stage (e.g. 32,12,12,12,12,8,8)");
  flags.String("sampler", 0, &spec.sampler, "ancestral | ddim");
  flags.String("guidance", 0, &guidance, "per-stage guidance weights, one per stage");
  flags.String("format", 0, &spec.format, "output format: mp4 | webm | gif");
  flags.Bool("keep-intermediates", 0, &spec.keep_intermediates, "keep every stage's video");
  flags.Int("last-stage", 0, &last_stage,
            "stop after this stage index (0..6); its video is the job's output (a preview)");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "submit", &positional, 0, 1); rc >= 0) return rc;
  spec.priority = static_cast<int>(priority);
  if (last_stage < -1 || last_stage >= 1000) {
    return Fail("submit", fmt::format("--last-stage {} is not a stage index", last_stage), 2);
  }
  spec.last_stage = static_cast<int>(last_stage);
  if (!steps.empty()) {
    auto l = ParseIntList(steps, flags.Describe("steps"));
    if (!l.ok()) return Fail("submit", l.status().message(), 2);
    spec.steps.assign(l->begin(), l->end());
  }
  if (!guidance.empty()) {
    auto l = ParseDoubleList(guidance, flags.Describe("guidance"));
    if (!l.ok()) return Fail("submit", l.status().message(), 2);
    spec.guidance = *l;
  }
  std::vector<json> specs;
  if (!file.empty()) {
    if (!positional.empty()) return Fail("submit", "give either PROMPT or --file, not both", 2);
    std::ifstream in_file;
    std::istream* in = &std::cin;
    if (file != "-") {
      in_file.open(file);
      if (!in_file) return Fail("submit", fmt::format("cannot read '{}'", file), 2);
      in = &in_file;
    }
    std::string line;
    int lineno = 0;
    while (std::getline(*in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        return Fail("submit", fmt::format("{}:{}: not a JSON object", file, lineno), 2);
      }
      json merged = spec.ToJson();
      merged.erase("prompt");
      merged.update(j);
      auto parsed = JobSpec::FromJson(merged);
      if (!parsed.ok()) {
        return Fail("submit", fmt::format("{}:{}: {}", file, lineno, parsed.status().message()), 2);
      }
      specs.push_back(parsed->ToJson());
    }
    if (specs.empty()) return Fail("submit", fmt::format("'{}' holds no job", file), 2);
  } else {
    if (positional.empty()) return Fail("submit", "missing PROMPT (or --file)", 2);
    spec.prompt = positional[0];
    Status st = spec.Validate();
    if (!st.ok()) return Fail("submit", st.message(), 2);
    specs.push_back(spec.ToJson());
  }
  auto conn = Connect(cf);
  if (!conn.ok()) return Fail("submit", conn.status().ToString());
  // Large files go in batches so one request stays well under the protocol's header limit.
  constexpr size_t kBatch = 500;
  for (size_t i = 0; i < specs.size(); i += kBatch) {
    std::vector<json> part(specs.begin() + i, specs.begin() + std::min(specs.size(), i + kBatch));
    auto ids = (*conn)->client->Submit(part);
    if (!ids.ok()) {
      return Fail("submit",
                  fmt::format("{} ({} of {} jobs were queued before this batch)",
                              ids.status().ToString(), i, specs.size()),
                  ExitCode(ids.status()));
    }
    for (const auto& id : *ids) std::printf("%s\n", id.c_str());
  }
  return 0;
}

int RunStatus(const std::vector<std::string>& args) {
  ClientFlags cf;
  FlagSet flags(
      "vidfarm status [JOB] [--json]",
      "Without JOB: the farm's summary (jobs by state, workers, queues, disk use, how busy\n"
      "the coordinator's loop has been).\n"
      "With JOB: its state (queued, running, paused, done, failed, cancelled), every\n"
      "stage task's state and progress, and the output's size.");
  cf.Add(&flags);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "status", &positional, 0, 1); rc >= 0) return rc;
  auto conn = Connect(cf);
  if (!conn.ok()) return Fail("status", conn.status().ToString());
  json header = json::object();
  if (!positional.empty()) header["job"] = positional[0];
  auto r = (*conn)->client->Call(wire::Command::kStatus, header);
  if (!r.ok()) return Fail("status", r.status().ToString(), ExitCode(r.status()));
  if (!positional.empty()) {
    const json& j = (*r)["job"];
    if (cf.json) {
      std::puts(j.dump(2).c_str());
      return 0;
    }
    std::printf("job %s: %s (%d/%d stages)\nprompt: %s\n", j.value("id", "").c_str(),
                j.value("state", "").c_str(), j.value("stages_done", 0), j.value("num_stages", 7),
                j.value("prompt", "").c_str());
    if (!j.value("error", "").empty()) std::printf("error: %s\n", j.value("error", "").c_str());
    for (const auto& t : j.value("tasks", json::array())) {
      std::printf("  stage %d %-5s %-9s step %3d/%-3d attempts %d %s\n", t.value("stage", 0),
                  t.value("name", "").c_str(), t.value("state", "").c_str(), t.value("step", 0),
                  t.value("steps", 0), t.value("attempts", 0), t.value("worker", "").c_str());
    }
    if (j.contains("output_bytes") && j["output_bytes"].is_number()) {
      std::printf("output: %s (%s)\n", j.value("output_blob", "").c_str(),
                  Bytes(j["output_bytes"].get<double>()).c_str());
    }
    return 0;
  }
  if (cf.json) {
    std::puts(r->dump(2).c_str());
    return 0;
  }
  std::printf("preset %s\njobs:", r->value("preset", "").c_str());
  for (const auto& [state, n] : (*r)["jobs"].items())
    std::printf(" %s %d", state.c_str(), n.get<int>());
  std::printf("\nworkers:");
  for (const auto& [state, n] : (*r)["workers"].items())
    std::printf(" %s %d", state.c_str(), n.get<int>());
  std::printf("\nready tasks per stage: %s\nleases: %d\n", (*r)["ready"].dump().c_str(),
              r->value("leases", 0));
  if ((*r)["disk"].is_object()) {
    const json& d = (*r)["disk"];
    std::printf(
        "disk: database %s (blobs %s), free %s\n", Bytes(d.value("total_bytes", 0.0)).c_str(),
        Bytes(d.value("blob_bytes", 0.0)).c_str(), Bytes(d.value("free_bytes", 0.0)).c_str());
  }
  if ((*r)["loop"].is_object() && (*r)["store"].is_object()) {
    // Near 100 % busy, the coordinator itself is the farm's bottleneck.
    const double busy = (*r)["loop"].value("busy_s", 0.0), wait = (*r)["loop"].value("wait_s", 0.0);
    std::printf(
        "coordinator: loop busy %.0f %% since it started (%.1f s working, %.1f s waiting); %llu "
        "commits in %llu WAL syncs\n",
        busy + wait > 0 ? 100.0 * busy / (busy + wait) : 0.0, busy, wait,
        static_cast<unsigned long long>((*r)["store"].value("commits", uint64_t{0})),
        static_cast<unsigned long long>((*r)["store"].value("syncs", uint64_t{0})));
  }
  return 0;
}

int RunList(const std::vector<std::string>& args) {
  ClientFlags cf;
  std::string state;
  int64_t limit = 1000;
  FlagSet flags("vidfarm list [--state STATE] [--json]",
                "Lists jobs in submission order: id, state, stages done, last change, prompt.");
  cf.Add(&flags);
  flags.String("state", 0, &state,
               "only jobs in this state: queued|running|paused|done|failed|cancelled");
  flags.Int("limit", 'n', &limit, "at most this many jobs");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "list", &positional, 0, 0); rc >= 0) return rc;
  auto conn = Connect(cf);
  if (!conn.ok()) return Fail("list", conn.status().ToString());
  json header = {{"limit", limit}};
  if (!state.empty()) header["state"] = state;
  auto r = (*conn)->client->Call(wire::Command::kList, header);
  if (!r.ok()) return Fail("list", r.status().ToString(), ExitCode(r.status()));
  if (cf.json) {
    std::puts(r->dump(2).c_str());
    return 0;
  }
  for (const auto& j : (*r)["jobs"]) PrintJobLine(j);
  return 0;
}

int RunWatch(const std::vector<std::string>& args) {
  ClientFlags cf;
  FlagSet flags("vidfarm watch JOB",
                "Follows a job live: each stage's start, its progress (step i/n) and end, until\n"
                "the job is done, failed or cancelled. Exit status 0 only for done.");
  cf.Add(&flags);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "watch", &positional, 1, 1); rc >= 0) return rc;
  auto conn = Connect(cf);
  if (!conn.ok()) return Fail("watch", conn.status().ToString());
  const bool tty = isatty(STDOUT_FILENO) == 1;
  std::string last_type;
  Status st = (*conn)->client->Watch(positional[0], [&](const json& ev) {
    if (cf.json) {
      std::puts(ev.dump().c_str());
      std::fflush(stdout);
      last_type = ev.value("type", "");
      return true;
    }
    last_type = ev.value("type", "");
    const json d = ev.value("data", json::object());
    if (last_type == "progress") {
      std::string line = fmt::format("stage {} step {}/{}", d.value("stage", 0), d.value("step", 0),
                                     d.value("steps", 0));
      if (tty) {
        std::printf("\r\033[K%s", line.c_str());
      } else if (d.value("step", 0) == d.value("steps", -1)) {
        std::printf("%s\n", line.c_str());
      }
    } else {
      std::printf("%s%s %s\n", tty ? "\r\033[K" : "", last_type.c_str(), d.dump().c_str());
    }
    std::fflush(stdout);
    return true;
  });
  if (!st.ok()) return Fail("watch", st.ToString(), ExitCode(st));
  return last_type == "done" ? 0 : 1;
}

int RunFetch(const std::vector<std::string>& args) {
  ClientFlags cf;
  std::string output;
  int64_t stage = -1;
  FlagSet flags("vidfarm fetch JOB -o out.mp4 [--stage K]",
                "Downloads a finished job's video. With --stage K, downloads that stage's\n"
                "intermediate video (kept while the job runs, or with --keep-intermediates)\n"
                "and encodes it to the format of -o (.mp4, .webm, .gif, or dir/ for PNGs).");
  cf.Add(&flags, false);
  flags.String("output", 'o', &output, "output file");
  flags.Int("stage", 0, &stage, "fetch this stage's intermediate video instead");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "fetch", &positional, 1, 1); rc >= 0) return rc;
  if (output.empty()) return Fail("fetch", "-o FILE is required", 2);
  auto conn = Connect(cf);
  if (!conn.ok()) return Fail("fetch", conn.status().ToString());
  const std::string job = positional[0];
  std::string key;
  if (stage >= 0) {
    auto fmt_ok = FormatFromPath(output);
    if (!fmt_ok.ok()) return Fail("fetch", fmt_ok.status().message(), 2);
    key = fmt::format("{}/{}/out", job, stage);
  } else {
    auto r = (*conn)->client->Call(wire::Command::kStatus, {{"job", job}});
    if (!r.ok()) return Fail("fetch", r.status().ToString(), ExitCode(r.status()));
    const json& j = (*r)["job"];
    if (j.value("state", "") != "done") {
      return Fail(
          "fetch",
          fmt::format("job {} is {} ({} of {} stages done): nothing to fetch yet", job,
                      j.value("state", ""), j.value("stages_done", 0), j.value("num_stages", 7)),
          5);
    }
    key = j.value("output_blob", "");
  }
  auto bytes = (*conn)->client->FetchBlob(key);
  if (!bytes.ok()) return Fail("fetch", bytes.status().ToString(), ExitCode(bytes.status()));
  if (stage >= 0) {
    auto video = wire::DecodeVideo(*bytes);
    if (!video.ok()) return Fail("fetch", video.status().ToString());
    Status st = WriteVideo(*video, output);
    if (!st.ok()) return Fail("fetch", st.ToString());
  } else {
    // Write next to the target, then rename: a failed fetch never leaves half a file.
    const std::string tmp = output + ".part";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
      if (!out) return Fail("fetch", fmt::format("cannot write '{}'", tmp));
    }
    std::error_code ec;
    fs::rename(tmp, output, ec);
    if (ec) return Fail("fetch", fmt::format("cannot write '{}': {}", output, ec.message()));
  }
  std::fprintf(stderr, "wrote %s (%s)\n", output.c_str(),
               Bytes(static_cast<double>(bytes->size())).c_str());
  return 0;
}

// cancel | pause | resume | retry JOB
int RunJobControl(const std::string& command, const std::vector<std::string>& args) {
  ClientFlags cf;
  const std::map<std::string, std::pair<wire::Command, const char*>> kinds = {
      {"cancel", {wire::Command::kCancelJob, "Cancels a job; a running stage is stopped."}},
      {"pause", {wire::Command::kPause, "Pauses a job: no new stage starts until `resume`."}},
      {"resume", {wire::Command::kResume, "Resumes a paused job."}},
      {"retry",
       {wire::Command::kRetry,
        "Retries a failed or cancelled job from its first unfinished stage."}},
  };
  const auto& kind = kinds.at(command);
  FlagSet flags(fmt::format("vidfarm {} JOB", command), kind.second);
  cf.Add(&flags);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, command.c_str(), &positional, 1, 1); rc >= 0) return rc;
  auto conn = Connect(cf);
  if (!conn.ok()) return Fail(command, conn.status().ToString());
  auto r = (*conn)->client->Call(kind.first, {{"job", positional[0]}});
  if (!r.ok()) return Fail(command, r.status().ToString(), ExitCode(r.status()));
  if (cf.json) {
    std::puts(r->dump(2).c_str());
    return 0;
  }
  auto now = (*conn)->client->Call(wire::Command::kStatus, {{"job", positional[0]}});
  if (now.ok() && now->contains("job")) PrintJobLine((*now)["job"]);
  return 0;
}

int RunWorkers(const std::vector<std::string>& args) {
  ClientFlags cf;
  FlagSet flags("vidfarm workers [--json]",
                "Lists the workers the coordinator knows: stage, host, state (idle, busy,\n"
                "quarantined, dead), current job, leases held of the most it takes (1 +\n"
                "its --prefetch), done/failed counts, last heartbeat.");
  cf.Add(&flags);
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "workers", &positional, 0, 0); rc >= 0) return rc;
  auto conn = Connect(cf);
  if (!conn.ok()) return Fail("workers", conn.status().ToString());
  auto r = (*conn)->client->Call(wire::Command::kWorkers, json::object());
  if (!r.ok()) return Fail("workers", r.status().ToString(), ExitCode(r.status()));
  if (cf.json) {
    std::puts((*r)["workers"].dump(2).c_str());
    return 0;
  }
  std::printf("%-5s %-28s %-12s %-26s %-6s %6s %6s %s\n", "stage", "worker", "state", "job",
              "leases", "done", "failed", "heartbeat");
  for (const auto& w : (*r)["workers"]) {
    const std::string leases =
        fmt::format("{}/{}", w.value("leases", int64_t{0}), w.value("max_leases", int64_t{1}));
    std::printf("%-5d %-28s %-12s %-26s %-6s %6lld %6lld %lldms ago\n", w.value("stage", 0),
                w.value("worker_id", "").c_str(), w.value("state", "").c_str(),
                w.value("job", "").c_str(), leases.c_str(),
                static_cast<long long>(w.value("done", int64_t{0})),
                static_cast<long long>(w.value("failed", int64_t{0})),
                static_cast<long long>(w.value("last_heartbeat_ms_ago", int64_t{0})));
  }
  return 0;
}

}  // namespace vidfarm::cli
