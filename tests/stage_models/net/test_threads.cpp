// SetComputeThreads: LibTorch's team gets the count, the BLAS library's own pool one thread.
#include <gtest/gtest.h>
#include <torch/torch.h>

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

}  // namespace
}  // namespace vidfarm::models
