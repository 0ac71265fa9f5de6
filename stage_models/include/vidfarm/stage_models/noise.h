// Keyed noise: every noise tensor is a pure function of (seed, stage, step, sample), so resumed,
// retried and uninterrupted tasks give the same video, and batching does not change it.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace vidfarm::models {

struct NoiseKey {
  uint64_t seed = 0;   // Default: 0. The job's seed.
  int stage = 0;       // Default: 0. Cascade stage index.
  int step = 0;        // Default: 0. Sampler step; -1 is the initial noise z_1.
  int64_t sample = 0;  // Default: 0. Sample index within the job (not the batch row).
};

// splitmix64 chain over seed, stage, step and sample (each field goes through a full mix).
uint64_t NoiseStreamSeed(const NoiseKey& key);

// Standard normal float32 noise for ONE sample of `shape` (no batch dim), drawn on the CPU from
// its own generator seeded with NoiseStreamSeed(key), then moved to `device`: identical on every
// device and thread count.
torch::Tensor KeyedNormal(const NoiseKey& key, at::IntArrayRef shape,
                          torch::Device device = torch::kCPU);

// Batch [B, per_sample_shape...]: row i is KeyedNormal({seed, stage, step, sample_indices[i]}).
torch::Tensor KeyedNormalBatch(uint64_t seed, int stage, int step,
                               const std::vector<int64_t>& sample_indices,
                               at::IntArrayRef per_sample_shape,
                               torch::Device device = torch::kCPU);

}  // namespace vidfarm::models
