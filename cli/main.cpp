// The one `vidfarm` binary: picks the command, which parses its flags and calls the library.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "vidfarm/stage_models/threads.h"

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

}  // namespace

int Dispatch(const std::string& command, const std::vector<std::string>& args);

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  // The commands that run networks keep freed memory for their next tensors (threads.h). The
  // coordinator, which may run for weeks, and the clients keep glibc's defaults.
  if (command == "render" || command == "worker" || command == "train" || command == "eval" ||
      command == "bench") {
    vidfarm::models::KeepFreedMemory();
  }
  if (command == "-h" || command == "--help" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "version" || command == "--version") {
    std::printf("vidfarm %s\n", VIDFARM_VERSION);
    return 0;
  }
  try {
    return Dispatch(command, args);
  } catch (const std::exception& e) {
    // A malformed answer from a peer (or a bug) must end with a message, not an abort.
    std::fprintf(stderr, "vidfarm %s: unexpected error: %s\n", command.c_str(), e.what());
    return 1;
  }
}

int Dispatch(const std::string& command, const std::vector<std::string>& args) {
  if (command == "render") return vidfarm::cli::RunRender(args);
  if (command == "plan") return vidfarm::cli::RunPlan(args);
  if (command == "train") return vidfarm::cli::RunTrain(args);
  if (command == "eval") return vidfarm::cli::RunEval(args);
  if (command == "synth") return vidfarm::cli::RunSynth(args);
  if (command == "analyze") return vidfarm::cli::RunAnalyze(args);
  if (command == "bench") return vidfarm::cli::RunBench(args);
  if (command == "coordinator") return vidfarm::cli::RunCoordinator(args);
  if (command == "worker") return vidfarm::cli::RunWorker(args);
  if (command == "submit") return vidfarm::cli::RunSubmit(args);
  if (command == "status") return vidfarm::cli::RunStatus(args);
  if (command == "list") return vidfarm::cli::RunList(args);
  if (command == "watch") return vidfarm::cli::RunWatch(args);
  if (command == "fetch") return vidfarm::cli::RunFetch(args);
  if (command == "cancel" || command == "pause" || command == "resume" || command == "retry") {
    return vidfarm::cli::RunJobControl(command, args);
  }
  if (command == "workers") return vidfarm::cli::RunWorkers(args);
  std::fprintf(stderr, "vidfarm: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
