// `vidfarm render PROMPT -o out.mp4`: the whole cascade in this process.
#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <zmq.hpp>

#include "commands.h"
#include "flags.h"
#include "vidfarm/common/job_spec.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/common/wire.h"
#include "vidfarm/coordinator/client.h"
#include "vidfarm/coordinator/coordinator.h"
#include "vidfarm/stage_models/cascade.h"
#include "vidfarm/stage_models/threads.h"
#include "vidfarm/worker/worker.h"

namespace vidfarm::cli {
namespace fs = std::filesystem;

// The first existing <candidate>/<preset> of: the binary's ../models, the source tree's models/.
std::string DefaultModelsDir(const std::string& preset) {
  std::vector<fs::path> roots;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    roots.push_back(exe.parent_path() / ".." / "models");
    roots.push_back(exe.parent_path() / "models");
    roots.push_back(exe.parent_path() / ".." / "share" / "vidfarm" / "models");
  }
  roots.push_back(fs::path(VIDFARM_SOURCE_DIR) / "models");
  for (const fs::path& r : roots) {
    if (fs::is_directory(r / preset, ec)) return fs::weakly_canonical(r / preset, ec).string();
  }
  return "";
}

int SetThreads(int64_t threads) { return models::SetComputeThreads(static_cast<int>(threads)); }

int Fail(const std::string& command, const std::string& message, int code) {
  std::fprintf(stderr, "vidfarm %s: %s\n", command.c_str(), message.c_str());
  return code;
}

void WarnIfBf16Emulated(const std::string& what, bool on_cpu) {
  const std::string w = models::Bf16Warning(on_cpu);
  if (!w.empty()) std::fprintf(stderr, "warning: %s: %s\n", what.c_str(), w.c_str());
}

int ParseOrExit(FlagSet& flags, const std::vector<std::string>& args, const char* command,
                std::vector<std::string>* positional, size_t min_pos, size_t max_pos) {
  Status st = flags.Parse(args, positional);
  if (flags.help_requested()) {
    std::fputs(flags.Help().c_str(), stdout);
    return 0;
  }
  if (!st.ok()) return Fail(command, st.message(), 2);
  if (positional->size() < min_pos || positional->size() > max_pos) {
    return Fail(command, "wrong number of arguments (see --help)", 2);
  }
  return -1;
}

namespace {

std::string Seconds(double s) {
  if (s < 60) return fmt::format("{:.1f}s", s);
  return fmt::format("{}m{:02d}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
}

// Expands "8" or "8,4,4,4,4,4,4" to one value per stage.
template <typename T>
Result<std::vector<T>> PerStage(const std::vector<T>& values, int stages, const std::string& what) {
  if (values.size() == 1) return std::vector<T>(stages, values[0]);
  if (static_cast<int>(values.size()) == stages) return values;
  return Status::InvalidArgument(fmt::format(
      "{} takes one value or one per stage ({} values), got {}", what, stages, values.size()));
}

// Draws "[2/7 TSR ×2 tsr1] step 5/16  stage 3.1s  ETA 6.8s  total 12.0s" on one terminal line
// (a few plain lines per stage when stderr is not a terminal).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO) == 1) {}

  void Step(int stage, int num_stages, const std::string& label, const std::string& name, int step,
            int steps, double stage_seconds) {
    if (quiet_) return;
    double eta = step > 0 ? stage_seconds / step * (steps - step) : 0;
    std::string line = fmt::format("{} step {}/{}  stage {}  ETA {}  total {}",
                                   Head(stage, num_stages, label, name), step, steps,
                                   Seconds(stage_seconds), Seconds(eta), Seconds(Total()));
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
    } else if (step == steps || step % std::max(1, steps / 4) == 0) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }
  void Done(int stage, int num_stages, const std::string& label, const std::string& name, int steps,
            double stage_seconds) {
    if (quiet_) return;
    std::fprintf(stderr, "%s%s done: %d steps in %s (total %s)\n", tty_ ? "\r\033[K" : "",
                 Head(stage, num_stages, label, name).c_str(), steps,
                 Seconds(stage_seconds).c_str(), Seconds(Total()).c_str());
  }
  void Note(const std::string& text) {
    if (!quiet_) std::fprintf(stderr, "%s%s\n", tty_ ? "\r\033[K" : "", text.c_str());
  }

 private:
  static std::string Head(int stage, int n, const std::string& label, const std::string& name) {
    return fmt::format("[{}/{} {} {}]", stage + 1, n, label, name);
  }
  double Total() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  bool quiet_;
  bool tty_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

struct RenderArgs {
  std::string prompt, output = "out.mp4", preset = "tiny", models_dir, keep_dir, db;
  std::string device = "cpu", dtype = "fp32";
  int64_t threads = 0, last_stage = -1, scale = 1, crf = 18;
  bool profile = false, quiet = false, random_weights = false, direct = false, fresh = false;
  JobSpec spec;
};

// The coordinator's final encoding uses the defaults; other outputs are encoded here from the
// last stage's raw video.
bool NeedsRawFinal(const RenderArgs& a) {
  auto format = FormatFromPath(a.output);
  return a.scale != 1 || a.crf != 18 || (format.ok() && *format == VideoFormat::kPngFrames);
}

// $XDG_CACHE_HOME/vidfarm/db, else ~/.cache/vidfarm/db.
std::string DefaultDb() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  fs::path base = xdg && *xdg ? fs::path(xdg) : fs::path(home && *home ? home : "/tmp") / ".cache";
  return (base / "vidfarm" / "db").string();
}

// Per-stage package folders for the stages the job runs: <models>/<stage name> where it exists,
// else "" (random weights).
std::vector<std::string> PackageDirs(const RenderArgs& a, const models::CascadePreset& preset,
                                     std::vector<std::string>* random_stages) {
  std::vector<std::string> dirs;
  const int n = a.spec.NumStages(preset.stages.size());
  for (int k = 0; k < n; ++k) {
    const auto& s = preset.stages[k];
    std::string d = a.models_dir.empty() ? "" : (fs::path(a.models_dir) / s.name).string();
    if (a.random_weights || d.empty() || !fs::exists(d)) {
      d.clear();
      random_stages->push_back(s.name);
    }
    dirs.push_back(d);
  }
  return dirs;
}

void PrintProfile(const models::CascadePreset& preset, const std::vector<int>& steps,
                  const std::vector<double>& seconds) {
  double total = 0;
  std::printf("%-6s %-10s %-16s %8s %10s\n", "stage", "name", "shape", "steps", "seconds");
  for (size_t k = 0; k < seconds.size(); ++k) {
    const auto& spec = preset.stages[k];
    std::printf("%-6zu %-10s %-16s %8d %10.2f\n", k, spec.name.c_str(),
                fmt::format("{}x{}x{}", spec.frames, spec.height, spec.width).c_str(), steps[k],
                seconds[k]);
    total += seconds[k];
  }
  std::printf("%-6s %-10s %-16s %8s %10.2f\n", "total", "", "", "", total);
}

// The in-process path without coordinator or database (benchmarks, --last-stage).
int RenderDirect(const RenderArgs& a, const models::CascadePreset& preset) {
  models::CascadeOptions opts;
  opts.preset = a.preset;
  opts.models_dir = a.models_dir;
  opts.force_random_weights = a.random_weights;
  opts.last_stage = static_cast<int>(a.last_stage);
  opts.runner.device = *models::ParseDevice(a.device);
  opts.runner.dtype = *models::ParseDType(a.dtype);
  for (int k = 0; k < static_cast<int>(preset.stages.size()); ++k) {
    opts.overrides.push_back(worker::OverridesFromSpec(a.spec, k));
  }
  auto cascade = models::Cascade::Open(opts);
  if (!cascade.ok()) return Fail("render", cascade.status().ToString());
  ProgressPrinter progress(a.quiet);
  std::vector<double> stage_seconds;
  std::vector<int> steps;
  Status keep_status;
  auto on_event = [&](const models::CascadeEvent& ev) {
    using Kind = models::CascadeEvent::Kind;
    if (ev.kind == Kind::kStep) {
      progress.Step(ev.stage, ev.num_stages, ev.label, ev.name, ev.step, ev.steps,
                    ev.stage_seconds);
    }
    if (ev.kind != Kind::kStageDone) return;
    progress.Done(ev.stage, ev.num_stages, ev.label, ev.name, ev.steps, ev.stage_seconds);
    stage_seconds.push_back(ev.stage_seconds);
    steps.push_back(ev.steps);
    if (!a.keep_dir.empty() && keep_status.ok()) {
      std::string path =
          (fs::path(a.keep_dir) / fmt::format("stage{}_{}.mp4", ev.stage, ev.name)).string();
      WriteOptions w;
      w.scale = static_cast<int>(a.scale);
      keep_status = WriteVideo(*ev.output, path, w);
    }
  };
  auto video = (*cascade)->Render(a.spec.prompt, a.spec.seed, on_event);
  if (!video.ok()) return Fail("render", video.status().ToString());
  if (!keep_status.ok()) return Fail("render", "writing intermediates: " + keep_status.ToString());
  WriteOptions w;
  w.scale = static_cast<int>(a.scale);
  w.crf = static_cast<int>(a.crf);
  Status written = WriteVideo(*video, a.output, w);
  if (!written.ok()) return Fail("render", written.ToString());
  if (a.profile) PrintProfile(preset, steps, stage_seconds);
  progress.Note(fmt::format("wrote {} ({})", a.output, video->ShapeString()));
  return 0;
}

// Finds a job with exactly this spec in the database: an interrupted render picks up where it
// stopped, a finished one is fetched again. Returns "" when there is none.
Result<nlohmann::json> FindJob(coordinator::Client& client, const JobSpec& spec) {
  VF_ASSIGN_OR_RETURN(nlohmann::json list, client.Call(wire::Command::kList, {{"limit", 100000}}));
  const std::string fingerprint = spec.Fingerprint();
  nlohmann::json found = nullptr;
  for (const auto& j : list["jobs"]) {
    if (j.value("prompt", "") != spec.prompt) continue;
    VF_ASSIGN_OR_RETURN(nlohmann::json st, client.Call(wire::Command::kStatus, {{"job", j["id"]}}));
    auto other = JobSpec::FromJson(st["job"].value("spec", nlohmann::json::object()));
    if (other.ok() && other->Fingerprint() == fingerprint) found = st["job"];  // newest wins
  }
  return found;
}

// The embedded farm: the coordinator and one worker per stage in this process over inproc://,
// the same code as a cluster, with the database under --db.
int RenderEmbedded(const RenderArgs& a, const models::CascadePreset& preset) {
  std::vector<std::string> random_stages;
  const std::vector<std::string> packages = PackageDirs(a, preset, &random_stages);
  if (!random_stages.empty() && !a.random_weights) {
    VF_LOG_WARN(
        "RANDOM WEIGHTS for stage(s) {}: no trained package under '{}'. The video will be "
        "noise-like; pass --models DIR with trained packages.",
        fmt::format("{}", fmt::join(random_stages, ", ")),
        a.models_dir.empty() ? std::string("(none)") : a.models_dir);
  }
  std::error_code ec;
  fs::create_directories(a.db, ec);
  // The in-process farm's own lines (workers starting and stopping, each worker's copy of the
  // random-weights warning above) are noise here; progress and errors still show.
  if (std::getenv("VIDFARM_LOG") == nullptr) SetLogLevel(LogLevel::kError);
  zmq::context_t ctx(1);
  coordinator::CoordinatorOptions co;
  co.db_path = a.db;
  co.worker_endpoint = fmt::format("inproc://vidfarm-render-workers-{}", getpid());
  co.api_endpoint = fmt::format("inproc://vidfarm-render-api-{}", getpid());
  co.preset = a.preset;
  auto coord = coordinator::Coordinator::Start(co, &ctx);
  if (!coord.ok()) {
    const std::string m = coord.status().ToString();
    if (m.find("lock") != std::string::npos) {
      return Fail("render",
                  fmt::format("the database {} is in use by another vidfarm process; wait "
                              "for it, or pass --db DIR ({})",
                              a.db, m));
    }
    return Fail("render", m);
  }
  std::vector<std::unique_ptr<worker::Worker>> workers;
  for (size_t k = 0; k < packages.size(); ++k) {  // one worker per stage the job runs
    worker::WorkerOptions wo;
    wo.endpoint = (*coord)->worker_endpoint();
    wo.stage = static_cast<int>(k);
    wo.preset = a.preset;
    wo.package_dir = packages[k];
    wo.runner.device = *models::ParseDevice(a.device);
    wo.runner.dtype = *models::ParseDType(a.dtype);
    wo.worker_id = fmt::format("render-{}-{}", getpid(), k);
    wo.threads = static_cast<int>(a.threads);  // resolved by SetThreads (0 = every core)
    auto w = worker::Worker::Create(wo, &ctx);
    if (!w.ok()) return Fail("render", w.status().ToString());
    workers.push_back(std::move(*w));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([raw = w.get()] {
      Status st = raw->Run();
      if (!st.ok()) VF_LOG_ERROR("render: worker {}: {}", raw->worker_id(), st.ToString());
    });
  }
  auto stop_all = [&] {
    for (auto& w : workers) w->Stop();
    for (auto& t : threads) t.join();
    threads.clear();
    (*coord)->Stop();
  };
  int rc = 0;
  [&] {
    auto client = coordinator::Client::Connect((*coord)->api_endpoint(), &ctx, 30000);
    if (!client.ok()) {
      rc = Fail("render", client.status().ToString());
      return;
    }
    ProgressPrinter progress(a.quiet);
    std::string job;
    nlohmann::json existing = nullptr;
    if (!a.fresh) {
      auto found = FindJob(**client, a.spec);
      if (!found.ok()) {
        rc = Fail("render", found.status().ToString());
        return;
      }
      existing = *found;
    }
    if (!existing.is_null()) {
      job = existing.value("id", "");
      const std::string state = existing.value("state", "");
      progress.Note(fmt::format(
          "found job {} for this exact render in {} ({}, {}/{} stages done){}", job, a.db, state,
          existing.value("stages_done", 0), existing.value("num_stages", 7),
          state == "done" ? ": reusing it (--fresh renders again)" : ": resuming it"));
      if (state == "failed" || state == "cancelled") {
        auto r = (*client)->Call(wire::Command::kRetry, {{"job", job}});
        if (!r.ok()) {
          rc = Fail("render", r.status().ToString());
          return;
        }
      } else if (state == "paused") {
        (void)(*client)->Call(wire::Command::kResume, {{"job", job}});
      }
    } else {
      auto ids = (*client)->Submit({a.spec.ToJson()});
      if (!ids.ok()) {
        rc = Fail("render", ids.status().ToString());
        return;
      }
      job = ids->front();
    }
    const int n = static_cast<int>(packages.size());
    std::vector<double> seconds(n, 0.0);
    std::vector<int> steps(n, 0);
    // A stage's clock starts at its stage_started event, or at the first event seen of it (the
    // first stage may have started before the watch began).
    std::vector<std::optional<std::chrono::steady_clock::time_point>> started(n);
    std::string failure;
    auto st_now = (*client)->Call(wire::Command::kStatus, {{"job", job}});
    const bool finished = st_now.ok() && (*st_now)["job"].value("state", "") == "done";
    if (!finished) {
      Status watched = (*client)->Watch(job, [&](const nlohmann::json& ev) {
        const std::string type = ev.value("type", "");
        const nlohmann::json d = ev.value("data", nlohmann::json::object());
        const int k = d.value("stage", -1);
        if (k < 0 || k >= n) {
          if (type == "failed" || type == "cancelled") failure = d.dump();
          return true;
        }
        const auto& spec = preset.stages[k];
        const auto now = std::chrono::steady_clock::now();
        if (type == "stage_started" || !started[k]) started[k] = now;
        const double elapsed = std::chrono::duration<double>(now - *started[k]).count();
        if (type == "progress") {
          steps[k] = d.value("steps", 0);
          progress.Step(k, n, spec.label, spec.name, d.value("step", 0), steps[k], elapsed);
        } else if (type == "stage_done") {
          seconds[k] = elapsed;
          progress.Done(k, n, spec.label, spec.name, steps[k], elapsed);
        } else if (type == "failed" || type == "cancelled") {
          failure = d.dump();
        }
        return true;
      });
      if (!watched.ok()) {
        rc = Fail("render", watched.ToString());
        return;
      }
    }
    auto status = (*client)->Call(wire::Command::kStatus, {{"job", job}});
    if (!status.ok()) {
      rc = Fail("render", status.status().ToString());
      return;
    }
    const nlohmann::json& j = (*status)["job"];
    if (j.value("state", "") != "done") {
      rc = Fail("render",
                fmt::format("job {} {}: {}", job, j.value("state", ""), j.value("error", failure)));
      return;
    }
    // Stage videos come back raw (lossless): every stage's for --keep-intermediates, the last
    // one when the output needs its own encoding (PNG frames, --scale, --crf).
    const bool raw_final = NeedsRawFinal(a);
    for (int k = a.keep_dir.empty() ? n - 1 : 0; k < n && (raw_final || !a.keep_dir.empty()); ++k) {
      auto bytes = (*client)->FetchBlob(fmt::format("{}/{}/out", job, k));
      auto video = bytes.ok() ? wire::DecodeVideo(*bytes) : Result<Video>(bytes.status());
      if (!video.ok()) {
        rc = Fail("render", fmt::format("video of stage {}: {}", k, video.status().ToString()));
        return;
      }
      if (!a.keep_dir.empty()) {
        WriteOptions w;
        w.scale = static_cast<int>(a.scale);
        const std::string path =
            (fs::path(a.keep_dir) / fmt::format("stage{}_{}.mp4", k, preset.stages[k].name))
                .string();
        Status ws = WriteVideo(*video, path, w);
        if (!ws.ok()) {
          rc = Fail("render", "writing intermediates: " + ws.ToString());
          return;
        }
      }
      if (k == n - 1 && raw_final) {
        WriteOptions wf;
        wf.scale = static_cast<int>(a.scale);
        wf.crf = static_cast<int>(a.crf);
        Status out = WriteVideo(*video, a.output, wf);
        if (!out.ok()) {
          rc = Fail("render", out.ToString());
          return;
        }
        if (a.profile) PrintProfile(preset, steps, seconds);
        progress.Note(fmt::format("wrote {} ({})", a.output, video->ShapeString()));
        return;
      }
    }
    auto bytes = (*client)->FetchBlob(j.value("output_blob", ""));
    if (!bytes.ok()) {
      rc = Fail("render", bytes.status().ToString());
      return;
    }
    const std::string tmp = a.output + ".part";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
      if (!out) {
        rc = Fail("render", fmt::format("cannot write '{}'", tmp));
        return;
      }
    }
    fs::rename(tmp, a.output, ec);
    if (ec) {
      rc = Fail("render", fmt::format("cannot write '{}': {}", a.output, ec.message()));
      return;
    }
    if (a.profile) PrintProfile(preset, steps, seconds);
    progress.Note(fmt::format("wrote {} (job {}, {} bytes)", a.output, job, bytes->size()));
  }();
  stop_all();
  return rc;
}

}  // namespace

int RunRender(const std::vector<std::string>& args) {
  RenderArgs a;
  std::string sampler, steps, guidance, thresholding;
  uint64_t seed = 1;
  FlagSet flags(
      "vidfarm render PROMPT [-o out.mp4] [flags]",
      "Renders PROMPT through every stage of the cascade and writes the video. It runs\n"
      "the farm's coordinator and one worker per stage inside this process (inproc://),\n"
      "with every intermediate video kept in the database under --db: re-running an\n"
      "interrupted render with the same database picks up where it stopped, and the\n"
      "same render done before is fetched again. --direct skips coordinator and database.\n"
      "The format follows the extension: .mp4 (H.264), .webm (VP9), .gif, or a\n"
      "directory ending in '/' for PNG frames.");
  flags.String("output", 'o', &a.output, "output file");
  flags.String("preset", 0, &a.preset, "cascade preset: tiny | paper");
  flags.String("models", 0, &a.models_dir,
               "directory with one model package per stage (default: the shipped models/<preset>)");
  flags.Uint64("seed", 's', &seed, "seed; the same seed gives the same video");
  flags.String("sampler", 0, &sampler, "ancestral | ddim for every stage (default: per stage)");
  flags.String("steps", 0, &steps,
               "sampling steps: one number, or one per stage (e.g. 32,8,8,8,4,4,4)");
  flags.String("guidance", 0, &guidance,
               "classifier-free guidance weight w: one number or one per stage (default: per "
               "stage; base and early SR stages oscillate)");
  flags.String("thresholding", 0, &thresholding, "none | static | dynamic (default: per stage)");
  flags.String("keep-intermediates", 0, &a.keep_dir,
               "also write every stage's output video into DIR");
  flags.String("db", 0, &a.db, "database directory (default: $XDG_CACHE_HOME/vidfarm/db)");
  flags.Bool("fresh", 0, &a.fresh, "render again even if this exact render is in the database");
  flags.Bool("direct", 0, &a.direct, "run the stages directly, without coordinator and database");
  flags.String("device", 0, &a.device, "cpu | cuda | cuda:N");
  flags.String("dtype", 0, &a.dtype, "network precision: fp32 | bf16 | fp16");
  flags.Int("threads", 't', &a.threads, "CPU threads for LibTorch (0 = all cores)");
  flags.Int("last-stage", 0, &a.last_stage,
            "stop after this stage index (0..6) and write its video (a quick low-resolution "
            "preview: 0 is the base's 8x12x20)");
  flags.Int("scale", 0, &a.scale, "integer upscale of the written video (nearest), for viewing");
  flags.Int("crf", 0, &a.crf, "encoder quality for .mp4/.webm (lower is better)");
  flags.Bool("random-weights", 0, &a.random_weights, "ignore model packages, use random weights");
  flags.Bool("profile", 0, &a.profile, "print time per stage at the end");
  flags.Bool("quiet", 'q', &a.quiet, "no progress output");
  flags.Epilog(
      "examples:\n"
      "  vidfarm render \"a red circle moving right\" -o out.mp4\n"
      "  vidfarm render \"a blue star rotating\" --seed 7 --steps 16 --keep-intermediates stages/\n"
      "  vidfarm render \"a green letter K growing\" -o preview.mp4 --last-stage 2 --scale 4\n"
      "  vidfarm render \"a green letter K growing\" -o frames/ --direct --profile");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "render", &positional); rc >= 0) return rc;
  if (positional.size() != 1) {
    return Fail("render",
                positional.empty() ? "missing PROMPT (see --help)"
                                   : "give the prompt as one quoted argument",
                2);
  }
  a.prompt = positional[0];
  if (a.prompt.find_first_not_of(" \t\n") == std::string::npos)
    return Fail("render", "empty prompt", 2);
  if (a.scale < 1 || a.scale > 16) return Fail("render", "--scale must be in 1..16", 2);
  auto format = FormatFromPath(a.output);
  if (!format.ok()) return Fail("render", format.status().message(), 2);
  if (a.last_stage < -1 || a.last_stage >= 1000) {
    return Fail("render", fmt::format("--last-stage {} is not a stage index", a.last_stage), 2);
  }
  if (!a.models_dir.empty() && !fs::is_directory(a.models_dir)) {
    return Fail("render", fmt::format("--models: '{}' is not a directory", a.models_dir), 2);
  }
  if (a.models_dir.empty()) a.models_dir = DefaultModelsDir(a.preset);
  auto dev = models::ParseDevice(a.device);
  if (!dev.ok()) return Fail("render", dev.status().message(), 2);
  auto dt = models::ParseDType(a.dtype);
  if (!dt.ok()) return Fail("render", dt.status().message(), 2);
  if (*dt == torch::kBFloat16) WarnIfBf16Emulated("render --dtype bf16", dev->is_cpu());
  auto preset = models::GetPreset(a.preset);
  if (!preset.ok()) return Fail("render", preset.status().message(), 2);
  const int num_stages = static_cast<int>(preset->stages.size());

  JobSpec& spec = a.spec;
  spec.prompt = a.prompt;
  spec.seed = seed;
  spec.preset = a.preset;
  spec.sampler = sampler;
  spec.last_stage = static_cast<int>(a.last_stage);
  spec.thresholding = thresholding;
  spec.format = *format == VideoFormat::kWebm  ? "webm"
                : *format == VideoFormat::kGif ? "gif"
                                               : "mp4";
  if (!steps.empty()) {
    auto list = ParseIntList(steps, flags.Describe("steps"));
    if (!list.ok()) return Fail("render", list.status().message(), 2);
    auto per = PerStage(*list, num_stages, flags.Describe("steps"));
    if (!per.ok()) return Fail("render", per.status().message(), 2);
    spec.steps.assign(per->begin(), per->end());
    for (int s : spec.steps) {
      if (s < 1) return Fail("render", flags.Describe("steps") + ": steps must be at least 1", 2);
    }
  }
  if (!guidance.empty()) {
    auto list = ParseDoubleList(guidance, flags.Describe("guidance"));
    if (!list.ok()) return Fail("render", list.status().message(), 2);
    auto per = PerStage(*list, num_stages, flags.Describe("guidance"));
    if (!per.ok()) return Fail("render", per.status().message(), 2);
    spec.guidance = *per;
    for (double g : spec.guidance) {
      if (g < 0) return Fail("render", flags.Describe("guidance") + ": weights must be >= 0", 2);
    }
  }
  // Intermediates, and outputs encoded here from the last stage's raw video, need the stage videos.
  spec.keep_intermediates = !a.keep_dir.empty() || NeedsRawFinal(a);
  Status valid = spec.Validate();
  if (!valid.ok()) return Fail("render", valid.message(), 2);
  if (!a.keep_dir.empty()) {
    std::error_code ec;
    fs::create_directories(a.keep_dir, ec);
    if (ec)
      return Fail("render", fmt::format("--keep-intermediates {}: {}", a.keep_dir, ec.message()));
  }
  // The output's folder is made now, so a bad path fails before the render, not after it.
  if (const fs::path parent = fs::path(a.output).parent_path(); !parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) return Fail("render", fmt::format("-o {}: {}", a.output, ec.message()), 2);
  }
  if (a.db.empty()) a.db = DefaultDb();
  a.threads = SetThreads(a.threads);
  if (!a.quiet) {
    std::fprintf(stderr, "rendering \"%s\" (preset %s, seed %llu, %d stages, %d threads, %s%s)\n",
                 a.prompt.c_str(), a.preset.c_str(), static_cast<unsigned long long>(seed),
                 spec.NumStages(preset->stages.size()), static_cast<int>(a.threads),
                 dev->str().c_str(), a.direct ? ", direct" : (", db " + a.db).c_str());
  }
  return a.direct ? RenderDirect(a, *preset) : RenderEmbedded(a, *preset);
}

}  // namespace vidfarm::cli
