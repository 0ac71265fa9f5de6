// How many threads LibTorch's compute uses, in one place for the CLI, the workers and the trainer.
//
// Debian's LibTorch runs matrix products through OpenBLAS (libopenblas0-pthread), which keeps its
// own pool of busy-waiting threads next to LibTorch's OpenMP team, and on a 2-core machine the two
// pools fight for the cores. SetComputeThreads sets LibTorch's thread count and pins
// the BLAS library (OpenBLAS or BLIS, whichever the process has loaded) to one thread, so only
// LibTorch's team parallelises. The BLAS controls are found with dlsym: a build against any other
// BLAS (MKL in a CUDA LibTorch, say) links and runs unchanged.
#pragma once

#include <string>

namespace vidfarm::models {

// threads <= 0: every core the process may use. Returns the count applied. Call it on each thread
// that runs LibTorch compute (OpenMP's team size is per thread).
int SetComputeThreads(int threads);

// The BLAS library's own thread count, or -1 where no known BLAS control is loaded (tests).
int BlasThreads();
// Sets the BLAS library's thread count where a known control is loaded; false otherwise (tests).
bool SetBlasThreads(int threads);

// Makes glibc's malloc keep freed memory for reuse instead of handing every large tensor back to
// the kernel: no mmap for big blocks (M_MMAP_MAX 0) and no trimming of the heap below a large
// threshold. Each op of a stage allocates a fresh output of up to tens of MB, and with glibc's
// defaults every one is a new mmap whose pages fault in and are zeroed (about 10 % of a render's
// samples in `perf`). The process keeps its peak heap instead. Process-wide; call once at start
// (the CLI does for render, worker, train, eval and bench).
// VIDFARM_MALLOC=default leaves glibc's defaults. Returns whether the settings were applied.
bool KeepFreedMemory();

// True when this CPU has bf16 arithmetic (AVX512-BF16 or AMX-BF16, from /proc/cpuinfo's flags),
// the units oneDNN uses for bf16 convolutions and matrix products. Without them LibTorch
// emulates bf16 and it runs slower than fp32 (on a 2-core Xeon without them, `bench unet
// --dtype bf16` took 1945 ms per forward against 1466-1536 ms in fp32).
bool CpuHasBf16();
// The warning the CLI prints when bf16 on the CPU is asked for and CpuHasBf16() is false; empty
// otherwise.
std::string Bf16Warning(bool on_cpu);

}  // namespace vidfarm::models
