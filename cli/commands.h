// One function per `vidfarm` command. Each parses its own flags and calls into the rooms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vidfarm::cli {

int RunRender(const std::vector<std::string>& args);
int RunPlan(const std::vector<std::string>& args);
int RunTrain(const std::vector<std::string>& args);
int RunEval(const std::vector<std::string>& args);
int RunSynth(const std::vector<std::string>& args);    // synth_cmd.cpp
int RunAnalyze(const std::vector<std::string>& args);  // synth_cmd.cpp
int RunBench(const std::vector<std::string>& args);
int RunCoordinator(const std::vector<std::string>& args);
int RunWorker(const std::vector<std::string>& args);
int RunSubmit(const std::vector<std::string>& args);
int RunStatus(const std::vector<std::string>& args);
int RunList(const std::vector<std::string>& args);
int RunWatch(const std::vector<std::string>& args);
int RunFetch(const std::vector<std::string>& args);
int RunJobControl(const std::string& command,
                  const std::vector<std::string>& args);  // cancel|pause|resume|retry
int RunWorkers(const std::vector<std::string>& args);

// The shipped model packages of a preset: the first existing <root>/<preset> of the binary's
// ../models, its own models/, ../share/vidfarm/models and the source tree's models/; "" if none.
std::string DefaultModelsDir(const std::string& preset);

// Applies --threads / VIDFARM_THREADS (0 = all cores) to LibTorch and pins the BLAS library to one
// thread (models::SetComputeThreads); returns the count set.
int SetThreads(int64_t threads);
// Prints "vidfarm <cmd>: <message>" to stderr and returns the exit code for the status.
int Fail(const std::string& command, const std::string& message, int code = 1);
// Prints "warning: <what>: ..." to stderr when bf16 is asked for on a CPU without bf16 units
// (models::Bf16Warning).
void WarnIfBf16Emulated(const std::string& what, bool on_cpu);

class FlagSet;
// Every command's prologue: parses flags into *positional; returns -1 to go on, else the exit
// code (0 after printing --help; 2 after a flag error, or a positional count outside
// [min_pos, max_pos]).
int ParseOrExit(FlagSet& flags, const std::vector<std::string>& args, const char* command,
                std::vector<std::string>* positional, size_t min_pos = 0,
                size_t max_pos = static_cast<size_t>(-1));

}  // namespace vidfarm::cli
