#include "vidfarm/stage_models/threads.h"

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace vidfarm::models {

namespace {

using SetFn = void (*)(int);
using GetFn = int (*)();

// RTLD_DEFAULT finds the symbols of any library already loaded into the process (LibTorch pulls
// in its BLAS at start), without linking against one.
template <typename Fn>
Fn Find(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

int CoresAvailable() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

bool SetBlasThreads(int threads) {
  bool found = false;
  if (auto fn = Find<SetFn>("openblas_set_num_threads")) {
    fn(threads);
    found = true;
  }
  if (auto fn = Find<SetFn>("bli_thread_set_num_threads")) {
    fn(threads);
    found = true;
  }
  return found;
}

int BlasThreads() {
  if (auto fn = Find<GetFn>("openblas_get_num_threads")) return fn();
  if (auto fn = Find<GetFn>("bli_thread_get_num_threads")) return fn();
  return -1;
}

bool KeepFreedMemory() {
  const char* env = std::getenv("VIDFARM_MALLOC");
  if (env != nullptr && std::string(env) == "default") return false;
#if defined(__GLIBC__)
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 &&
         mallopt(M_TOP_PAD, 64 << 20) == 1;
#else
  return false;
#endif
}

bool CpuHasBf16() {
  static const bool has = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) != 0) continue;  // the first processor's flags line
      std::istringstream words(line);
      std::string w;
      while (words >> w) {
        if (w == "avx512_bf16" || w == "amx_bf16") return true;
      }
      return false;
    }
    return false;  // not Linux on x86: no way to tell, so warn
  }();
  return has;
}

std::string Bf16Warning(bool on_cpu) {
  if (!on_cpu || CpuHasBf16()) return {};
  return "this CPU has no bf16 instructions (avx512_bf16 / amx_bf16): bf16 is emulated and "
         "slower than fp32 here";
}

int SetComputeThreads(int threads) {
  if (threads <= 0) threads = CoresAvailable();
  torch::set_num_threads(threads);
  SetBlasThreads(1);
  return threads;
}

}  // namespace vidfarm::models
