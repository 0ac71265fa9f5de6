// Names the calling thread, as `top -H`, `ps -L`, perf and /proc/PID/task/*/comm show it.
#pragma once

#include <string_view>

namespace vidfarm {

// Linux keeps 15 bytes of a thread's name; a longer one is cut. The main thread keeps the
// process's name. Best effort: never fails.
void NameThisThread(std::string_view name);

}  // namespace vidfarm
