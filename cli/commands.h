// One function per `vidfarm` command. Each parses its own flags and calls into the rooms.
#pragma once

#include <string>
#include <vector>

namespace vidfarm::cli {

int RunRender(const std::vector<std::string>& args);
int RunPlan(const std::vector<std::string>& args);
int RunBench(const std::vector<std::string>& args);
int RunCoordinator(const std::vector<std::string>& args);
int RunWorker(const std::vector<std::string>& args);
int RunSubmit(const std::vector<std::string>& args);
int RunStatus(const std::vector<std::string>& args);
int RunList(const std::vector<std::string>& args);
int RunWatch(const std::vector<std::string>& args);
int RunFetch(const std::vector<std::string>& args);
int RunJobControl(const std::string& command, const std::vector<std::string>& args);  // cancel|pause|resume|retry
int RunWorkers(const std::vector<std::string>& args);

// Applies --threads / VIDFARM_THREADS (0 = all cores) to LibTorch.
void SetThreads(int64_t threads);
// Prints "vidfarm <cmd>: <message>" to stderr and returns the exit code for the status.
int Fail(const std::string& command, const std::string& message, int code = 1);

}  // namespace vidfarm::cli
