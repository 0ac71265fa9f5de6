// SetComputeThreads: LibTorch's team gets the count, the BLAS library's own pool one thread.
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "vidfarm/stage_models/threads.h"

namespace vidfarm::models {
namespace {

TEST(ComputeThreads, SetsTorchAndPinsBlasToOne) {
  // A matrix product first, so a lazily initialised BLAS has started its pool.
  auto a = torch::randn({64, 64});
  (void)torch::mm(a, a);
  if (BlasThreads() < 0) GTEST_SKIP() << "no OpenBLAS/BLIS thread control in this process";
  ASSERT_TRUE(SetBlasThreads(2));
  EXPECT_EQ(BlasThreads(), 2);
  EXPECT_EQ(SetComputeThreads(2), 2);
  EXPECT_EQ(torch::get_num_threads(), 2);
  EXPECT_EQ(BlasThreads(), 1);
  EXPECT_EQ(SetComputeThreads(1), 1);
  EXPECT_EQ(torch::get_num_threads(), 1);
}

TEST(ComputeThreads, ZeroMeansEveryAvailableCore) {
  const int n = SetComputeThreads(0);
  EXPECT_GE(n, 1);
  EXPECT_EQ(torch::get_num_threads(), n);
  SetComputeThreads(1);
}

// The bf16 check reads the first "flags" line of /proc/cpuinfo; here the same file is read
// another way (any line, substring search) and the two must agree.
TEST(ComputeThreads, Bf16CheckMatchesCpuinfoAndWarnsOnlyWithoutIt) {
  std::ifstream in("/proc/cpuinfo");
  if (!in) GTEST_SKIP() << "no /proc/cpuinfo";
  std::stringstream all;
  all << in.rdbuf();
  const std::string text = all.str();
  if (text.find("flags") == std::string::npos) GTEST_SKIP() << "no x86 flags line";
  const bool expected =
      text.find(" avx512_bf16") != std::string::npos || text.find(" amx_bf16") != std::string::npos;
  EXPECT_EQ(CpuHasBf16(), expected);
  EXPECT_EQ(Bf16Warning(/*on_cpu=*/true).empty(), expected);
  EXPECT_TRUE(Bf16Warning(/*on_cpu=*/false).empty());  // a GPU has its own bf16 story
  if (!expected) {
    EXPECT_NE(Bf16Warning(true).find("slower than fp32"), std::string::npos);
  }
}

TEST(ComputeThreads, KeepFreedMemoryAppliesUnlessAskedNotTo) {
  struct Restore {  // puts the caller's VIDFARM_MALLOC back, however the test ends
    std::optional<std::string> saved;
    ~Restore() {
      if (saved) {
        ::setenv("VIDFARM_MALLOC", saved->c_str(), 1);
      } else {
        ::unsetenv("VIDFARM_MALLOC");
      }
    }
  } restore;
  if (const char* users = std::getenv("VIDFARM_MALLOC")) restore.saved = users;
  ::setenv("VIDFARM_MALLOC", "default", 1);
  EXPECT_FALSE(KeepFreedMemory());
  ::unsetenv("VIDFARM_MALLOC");
#if defined(__GLIBC__)
  EXPECT_TRUE(KeepFreedMemory());
  // A 64 MiB tensor now comes from the heap: glibc's count of mmapped bytes does not grow
  // (with its defaults it grows by the block).
  const size_t mapped_before = mallinfo2().hblkhd;
  auto a = torch::ones({16 << 20});
  EXPECT_EQ(mallinfo2().hblkhd, mapped_before);
  EXPECT_EQ(a.sum().item<double>(), 16 << 20);
#endif
}

}  // namespace
}  // namespace vidfarm::models
