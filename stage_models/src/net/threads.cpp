#include "vidfarm/stage_models/threads.h"

#include <dlfcn.h>
#include <sched.h>
#include <torch/torch.h>

#include <algorithm>
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

int SetComputeThreads(int threads) {
  if (threads <= 0) threads = CoresAvailable();
  torch::set_num_threads(threads);
  SetBlasThreads(1);
  return threads;
}

}  // namespace vidfarm::models
