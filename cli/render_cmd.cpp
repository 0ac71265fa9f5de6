// `vidfarm render PROMPT -o out.mp4`: the whole cascade in this process.
#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "commands.h"
#include "flags.h"
#include "vidfarm/common/log.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/stage_models/cascade.h"

namespace vidfarm::cli {
namespace fs = std::filesystem;

void SetThreads(int64_t threads) {
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  torch::set_num_threads(static_cast<int>(threads));
}

int Fail(const std::string& command, const std::string& message, int code) {
  std::fprintf(stderr, "vidfarm %s: %s\n", command.c_str(), message.c_str());
  return code;
}

namespace {

std::string Seconds(double s) {
  if (s < 60) return fmt::format("{:.1f}s", s);
  return fmt::format("{}m{:02d}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
}

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

// Expands "8" or "8,4,4,4,4,4,4" to one value per stage.
template <typename T>
Result<std::vector<T>> PerStage(const std::vector<T>& values, int stages, const std::string& what) {
  if (values.size() == 1) return std::vector<T>(stages, values[0]);
  if (static_cast<int>(values.size()) == stages) return values;
  return Status::InvalidArgument(fmt::format(
      "{} takes one value or one per stage ({} values), got {}", what, stages, values.size()));
}

// Draws "[2/7 TSR ×2 tsr1] step 5/16  stage 3.1s  ETA 6.8s  total 12.0s" on one terminal line.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO) == 1) {}

  void operator()(const models::CascadeEvent& ev) {
    if (quiet_) return;
    using Kind = models::CascadeEvent::Kind;
    double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string head = fmt::format("[{}/{} {} {}]", ev.stage + 1, ev.num_stages, ev.label, ev.name);
    if (ev.kind == Kind::kStageDone) {
      std::fprintf(stderr, "%s%s done: %d steps in %s (total %s)\n", tty_ ? "\r\033[K" : "",
                   head.c_str(), ev.steps, Seconds(ev.stage_seconds).c_str(), Seconds(total).c_str());
      return;
    }
    if (ev.kind != Kind::kStep) return;
    double eta = ev.step > 0 ? ev.stage_seconds / ev.step * (ev.steps - ev.step) : 0;
    std::string line = fmt::format("{} step {}/{}  stage {}  ETA {}  total {}", head, ev.step, ev.steps,
                                   Seconds(ev.stage_seconds), Seconds(eta), Seconds(total));
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
    } else if (ev.step == ev.steps || ev.step % std::max(1, ev.steps / 4) == 0) {
      std::fprintf(stderr, "%s\n", line.c_str());  // logs: a few lines per stage
    }
    std::fflush(stderr);
  }

 private:
  bool quiet_;
  bool tty_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace

int RunRender(const std::vector<std::string>& args) {
  std::string output = "out.mp4", preset = "tiny", models_dir, sampler, steps, guidance, thresholding;
  std::string keep_dir, device = "cpu", dtype = "fp32";
  uint64_t seed = 1;
  int64_t threads = 0, last_stage = -1, scale = 1, crf = 18;
  bool profile = false, quiet = false, random_weights = false;
  FlagSet flags("vidfarm render PROMPT [-o out.mp4] [flags]",
                "Renders PROMPT through every stage of the cascade in this process and writes the "
                "video.\nThe format follows the extension: .mp4 (H.264), .webm (VP9), .gif, or a "
                "directory ending in '/' for PNG frames.");
  flags.String("output", 'o', &output, "output file");
  flags.String("preset", 0, &preset, "cascade preset: tiny | paper");
  flags.String("models", 0, &models_dir,
               "directory with one model package per stage (default: the shipped models/<preset>)");
  flags.Uint64("seed", 's', &seed, "seed; the same seed gives the same video");
  flags.String("sampler", 0, &sampler, "ancestral | ddim for every stage (default: per stage)");
  flags.String("steps", 0, &steps, "sampling steps: one number, or one per stage (e.g. 32,8,8,8,4,4,4)");
  flags.String("guidance", 0, &guidance,
               "classifier-free guidance weight w: one number or one per stage (default: per "
               "stage; base and early SR stages oscillate)");
  flags.String("thresholding", 0, &thresholding, "none | static | dynamic (default: per stage)");
  flags.String("keep-intermediates", 0, &keep_dir, "also write every stage's output video into DIR");
  flags.String("device", 0, &device, "cpu | cuda | cuda:N");
  flags.String("dtype", 0, &dtype, "network precision: fp32 | bf16 | fp16");
  flags.Int("threads", 't', &threads, "CPU threads for LibTorch (0 = all cores)");
  flags.Int("last-stage", 0, &last_stage, "stop after this stage index (0..6; -1 = all)");
  flags.Int("scale", 0, &scale, "integer upscale of the written video (nearest), for viewing");
  flags.Int("crf", 0, &crf, "encoder quality for .mp4/.webm (lower is better)");
  flags.Bool("random-weights", 0, &random_weights, "ignore model packages, use random weights");
  flags.Bool("profile", 0, &profile, "print time per stage at the end");
  flags.Bool("quiet", 'q', &quiet, "no progress output");
  flags.Epilog(
      "examples:\n"
      "  vidfarm render \"a red circle moving right\" -o out.mp4\n"
      "  vidfarm render \"a blue star rotating\" --seed 7 --steps 16 --keep-intermediates stages/\n"
      "  vidfarm render \"a green letter K growing\" -o frames/ --last-stage 2 --profile");
  std::vector<std::string> positional;
  Status st = flags.Parse(args, &positional);
  if (flags.help_requested()) {
    std::fputs(flags.Help().c_str(), stdout);
    return 0;
  }
  if (!st.ok()) return Fail("render", st.message(), 2);
  if (positional.size() != 1) {
    return Fail("render", positional.empty() ? "missing PROMPT (see --help)"
                                             : "give the prompt as one quoted argument",
                2);
  }
  const std::string prompt = positional[0];
  if (prompt.find_first_not_of(" \t\n") == std::string::npos) return Fail("render", "empty prompt", 2);
  if (scale < 1 || scale > 16) return Fail("render", "--scale must be in 1..16", 2);
  auto format = FormatFromPath(output);
  if (!format.ok()) return Fail("render", format.status().message(), 2);
  SetThreads(threads);

  models::CascadeOptions opts;
  opts.preset = preset;
  opts.models_dir = models_dir.empty() ? DefaultModelsDir(preset) : models_dir;
  if (!models_dir.empty() && !fs::is_directory(models_dir)) {
    return Fail("render", fmt::format("--models: '{}' is not a directory", models_dir), 2);
  }
  opts.force_random_weights = random_weights;
  opts.last_stage = static_cast<int>(last_stage);
  auto dev = models::ParseDevice(device);
  if (!dev.ok()) return Fail("render", dev.status().message(), 2);
  opts.runner.device = *dev;
  auto dt = models::ParseDType(dtype);
  if (!dt.ok()) return Fail("render", dt.status().message(), 2);
  opts.runner.dtype = *dt;

  auto preset_spec = models::GetPreset(preset);
  if (!preset_spec.ok()) return Fail("render", preset_spec.status().message(), 2);
  const int num_stages = static_cast<int>(preset_spec->stages.size());
  opts.overrides.assign(num_stages, {});
  if (!steps.empty()) {
    auto list = ParseIntList(steps, flags.Describe("steps"));
    if (!list.ok()) return Fail("render", list.status().message(), 2);
    auto per = PerStage(*list, num_stages, flags.Describe("steps"));
    if (!per.ok()) return Fail("render", per.status().message(), 2);
    for (int k = 0; k < num_stages; ++k) opts.overrides[k].steps = static_cast<int>((*per)[k]);
  }
  if (!guidance.empty()) {
    auto list = ParseDoubleList(guidance, flags.Describe("guidance"));
    if (!list.ok()) return Fail("render", list.status().message(), 2);
    auto per = PerStage(*list, num_stages, flags.Describe("guidance"));
    if (!per.ok()) return Fail("render", per.status().message(), 2);
    for (int k = 0; k < num_stages; ++k) opts.overrides[k].guidance = (*per)[k];
  }
  for (auto& o : opts.overrides) {
    if (!sampler.empty()) o.sampler = sampler;
    if (!thresholding.empty()) o.thresholding = thresholding;
  }
  if (!keep_dir.empty()) {
    std::error_code ec;
    fs::create_directories(keep_dir, ec);
    if (ec) return Fail("render", fmt::format("--keep-intermediates {}: {}", keep_dir, ec.message()));
  }

  auto cascade = models::Cascade::Open(opts);
  if (!cascade.ok()) return Fail("render", cascade.status().ToString());
  if (!quiet) {
    std::fprintf(stderr, "rendering \"%s\" (preset %s, seed %llu, %d stages, %d threads, %s)\n",
                 prompt.c_str(), preset.c_str(), static_cast<unsigned long long>(seed),
                 (*cascade)->num_stages(), torch::get_num_threads(), opts.runner.device.str().c_str());
  }

  ProgressPrinter progress(quiet);
  std::vector<double> stage_seconds;
  Status keep_status;
  auto on_event = [&](const models::CascadeEvent& ev) {
    progress(ev);
    if (ev.kind != models::CascadeEvent::Kind::kStageDone) return;
    stage_seconds.push_back(ev.stage_seconds);
    if (!keep_dir.empty() && keep_status.ok()) {
      std::string path = (fs::path(keep_dir) / fmt::format("stage{}_{}.mp4", ev.stage, ev.name)).string();
      WriteOptions w;
      w.scale = static_cast<int>(scale);
      keep_status = WriteVideo(*ev.output, path, w);
    }
  };
  auto video = (*cascade)->Render(prompt, seed, on_event);
  if (!video.ok()) return Fail("render", video.status().ToString());
  if (!keep_status.ok()) return Fail("render", "writing intermediates: " + keep_status.ToString());

  WriteOptions w;
  w.scale = static_cast<int>(scale);
  w.crf = static_cast<int>(crf);
  Status written = WriteVideo(*video, output, w);
  if (!written.ok()) return Fail("render", written.ToString());
  if (profile) {
    double total = 0;
    std::printf("%-6s %-10s %-16s %8s %10s\n", "stage", "name", "shape", "steps", "seconds");
    for (int k = 0; k < static_cast<int>(stage_seconds.size()); ++k) {
      const auto& spec = (*cascade)->stage(k).spec();
      std::printf("%-6d %-10s %-16s %8d %10.2f\n", k, spec.name.c_str(),
                  fmt::format("{}x{}x{}", spec.frames, spec.height, spec.width).c_str(),
                  (*cascade)->settings(k).sampler.steps, stage_seconds[k]);
      total += stage_seconds[k];
    }
    std::printf("%-6s %-10s %-16s %8s %10.2f\n", "total", "", "", "", total);
  }
  if (!quiet) {
    std::fprintf(stderr, "wrote %s (%s)\n", output.c_str(), video->ShapeString().c_str());
  }
  return 0;
}

}  // namespace vidfarm::cli
