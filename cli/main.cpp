// The one `vidfarm` binary: picks the command, which parses its flags and calls the library.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "vidfarm/stage_models/threads.h"

#ifdef VIDFARM_WITH_JEMALLOC
// jemalloc's settings, read when it starts (MALLOC_CONF in the environment still overrides):
// keep freed pages instead of handing them back to the kernel. With jemalloc's default decay,
// LibTorch's large short-lived tensors were faulted in anew every time and `vidfarm render
// --direct` took 27-31 s against 17-21 s on glibc's malloc; kept, 16.4 s.
extern "C" const char* malloc_conf;
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";
#endif

namespace {

constexpr const char* kUsage =
    R"(vidfarm — text to video with a cascade of seven video diffusion models

usage: vidfarm COMMAND [flags]

commands:
  render PROMPT   render a video from a text prompt through the whole cascade (in-process)
  train           train one cascade stage into a model package (resumable checkpoints)
  eval            score a cascade on the synthetic world: alignment, fidelity, guidance, v vs eps
  synth CAPTION   render the synthetic world's ground truth of a caption (or --random N clips)
  analyze VIDEO   read a video back into caption attributes (colour, shape, motion, background)
  plan            print each stage's shapes, fps, parameters, GFLOPs and memory for a preset
  bench unet      time a Video U-Net forward and compare with this machine's matmul GFLOP/s
  bench transfer  MB/s of a 64 MiB blob from the coordinator over tcp loopback (chunked, credit)
  bench dispatch  tasks/s and assignment latency through the coordinator with no-op workers
  bench overhead  one tiny job through the embedded farm against the same job run directly
  bench pipeline  makespan of N jobs across seven simulated stage pools against its bound
  version         print the version

the farm:
  coordinator     run the coordinator (RocksDB state, ZeroMQ endpoints for workers and clients)
  worker          host one stage model and take its tasks from a coordinator
  submit          queue jobs (one PROMPT, or --file prompts.jsonl); prints the job ids
  status [JOB]    a job's state and stages, or the farm's summary with disk use
  list            jobs, optionally by --state
  watch JOB       live per-stage progress until the job ends
  fetch JOB       download the finished video (-o out.mp4), or --stage K's intermediate
  cancel|pause|resume|retry JOB
  workers         the workers: stage, host, state, current job, counts, last heartbeat

Run `vidfarm COMMAND --help` for a command's flags. Every flag can also be set through the
environment as VIDFARM_<FLAG> (e.g. VIDFARM_THREADS=2, VIDFARM_COORDINATOR=tcp://host:5556).
)";

// Every command once: its runner and whether it runs networks. Those keep freed memory for
// their next tensors (threads.h); the coordinator, which may run for weeks, and the clients keep
// glibc's defaults.
struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>& args);
  bool runs_networks;
};

int RunCancel(const std::vector<std::string>& a) {
  return vidfarm::cli::RunJobControl("cancel", a);
}
int RunPause(const std::vector<std::string>& a) { return vidfarm::cli::RunJobControl("pause", a); }
int RunResume(const std::vector<std::string>& a) {
  return vidfarm::cli::RunJobControl("resume", a);
}
int RunRetry(const std::vector<std::string>& a) { return vidfarm::cli::RunJobControl("retry", a); }

constexpr Command kCommands[] = {
    {"render", vidfarm::cli::RunRender, true},
    {"train", vidfarm::cli::RunTrain, true},
    {"eval", vidfarm::cli::RunEval, true},
    {"bench", vidfarm::cli::RunBench, true},
    {"worker", vidfarm::cli::RunWorker, true},
    {"plan", vidfarm::cli::RunPlan, false},
    {"synth", vidfarm::cli::RunSynth, false},
    {"analyze", vidfarm::cli::RunAnalyze, false},
    {"coordinator", vidfarm::cli::RunCoordinator, false},
    {"submit", vidfarm::cli::RunSubmit, false},
    {"status", vidfarm::cli::RunStatus, false},
    {"list", vidfarm::cli::RunList, false},
    {"watch", vidfarm::cli::RunWatch, false},
    {"fetch", vidfarm::cli::RunFetch, false},
    {"cancel", RunCancel, false},
    {"pause", RunPause, false},
    {"resume", RunResume, false},
    {"retry", RunRetry, false},
    {"workers", vidfarm::cli::RunWorkers, false},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "-h" || command == "--help" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "version" || command == "--version") {
    std::printf("vidfarm %s\n", VIDFARM_VERSION);
    return 0;
  }
  for (const Command& c : kCommands) {
    if (command != c.name) continue;
    if (c.runs_networks) vidfarm::models::KeepFreedMemory();
    try {
      return c.run(args);
    } catch (const std::exception& e) {
      // A malformed answer from a peer (or a bug) must end with a message, not an abort.
      std::fprintf(stderr, "vidfarm %s: unexpected error: %s\n", command.c_str(), e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "vidfarm: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
