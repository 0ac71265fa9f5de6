// The one `vidfarm` binary: picks the command, which parses its flags and calls the library.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"

namespace {

constexpr const char* kUsage = R"(vidfarm — text to video with a cascade of seven video diffusion models

usage: vidfarm COMMAND [flags]

commands:
  render PROMPT   render a video from a text prompt through the whole cascade (in-process)
  plan            print each stage's shapes, fps, parameters, GFLOPs and memory for a preset
  bench unet      time a Video U-Net forward and compare with this machine's matmul GFLOP/s
  version         print the version

Run `vidfarm COMMAND --help` for a command's flags. Every flag can also be set through the
environment as VIDFARM_<FLAG> (e.g. VIDFARM_THREADS=2, VIDFARM_MODELS=/path/to/models).
)";

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
  if (command == "render") return vidfarm::cli::RunRender(args);
  if (command == "plan") return vidfarm::cli::RunPlan(args);
  if (command == "bench") return vidfarm::cli::RunBench(args);
  std::fprintf(stderr, "vidfarm: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
