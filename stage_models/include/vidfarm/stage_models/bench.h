// Benchmarks that print figures (never timed assertions): a base-like Video U-Net forward against
// the machine's matrix-product throughput, and the precision cost of a low-precision render.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "vidfarm/common/status.h"

namespace vidfarm::models {

struct UNetBenchOptions {
  int64_t dim = 32;                          // Default: 32. Base width.
  std::vector<int64_t> mults = {1, 2, 4, 8};  // Default: 1,2,4,8. Width multipliers per level.
  int64_t frames = 16;                       // Default: 16.
  int64_t size = 32;                         // Default: 32. Height = width.
  int64_t batch = 2;                         // Default: 2.
  torch::ScalarType dtype = torch::kFloat32;  // Default: fp32.
  torch::Device device = torch::kCPU;
  int iters = 5;   // Default: 5. Timed forwards (the median is reported).
  int warmup = 2;  // Default: 2. Untimed forwards first.
};

struct UNetBenchResult {
  int64_t params = 0;
  double gflop_per_forward = 0;  // counted by the ops layer
  double ms_per_forward = 0;     // median
  double ms_min = 0, ms_max = 0;
  double gflops = 0;             // achieved, from the median
  double matmul_gflops = 0;      // a 2048² matrix product in the same dtype, same machine
};

// A base-stage-like U-Net: temporal and spatial attention at every level, cross-attention.
Result<UNetBenchResult> BenchUNet(const UNetBenchOptions& options);

// Median GFLOP/s of an n×n matrix product in `dtype` on `device`.
double MatmulGflops(int64_t n, torch::ScalarType dtype, torch::Device device, int iters = 5);

struct PrecisionReport {
  double psnr_db = 0;        // low-precision render against the fp32 render of the same seed
  double fp32_seconds = 0;   // wall time of each render
  double low_seconds = 0;
};
// Renders the first `stages` stages of the tiny cascade (random weights, fixed seed) in fp32 and in
// `dtype` and compares the final videos.
Result<PrecisionReport> ComparePrecision(torch::ScalarType dtype, int stages, int steps, uint64_t seed);

}  // namespace vidfarm::models
