#include "vidfarm/stage_models/noise.h"

#include <ATen/CPUGeneratorImpl.h>

#include "vidfarm/common/hash.h"

namespace vidfarm::models {
namespace {

// One splitmix64 step from state x: a strong 64-bit mix of x.
uint64_t SplitMix64(uint64_t x) { return vidfarm::SplitMix64(&x); }

}  // namespace

uint64_t NoiseStreamSeed(const NoiseKey& key) {
  // Each field is xored in after a full mix of the previous ones, and the domain tag keeps
  // these streams apart from any other splitmix64 use of the raw seed.
  uint64_t h = SplitMix64(key.seed ^ 0x7669646661726d31ULL);  // "vidfarm1"
  h = SplitMix64(h ^ static_cast<uint64_t>(static_cast<int64_t>(key.stage)));
  h = SplitMix64(h ^ static_cast<uint64_t>(static_cast<int64_t>(key.step)));
  h = SplitMix64(h ^ static_cast<uint64_t>(key.sample));
  return h;
}

torch::Tensor KeyedNormal(const NoiseKey& key, at::IntArrayRef shape, torch::Device device) {
  at::Generator gen = at::detail::createCPUGenerator(NoiseStreamSeed(key));
  auto noise = torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat));
  return device.is_cpu() ? noise : noise.to(device);
}

torch::Tensor KeyedNormalBatch(uint64_t seed, int stage, int step,
                               const std::vector<int64_t>& sample_indices,
                               at::IntArrayRef per_sample_shape, torch::Device device) {
  std::vector<int64_t> shape{static_cast<int64_t>(sample_indices.size())};
  shape.insert(shape.end(), per_sample_shape.begin(), per_sample_shape.end());
  auto out = torch::empty(shape, torch::TensorOptions().dtype(torch::kFloat));
  for (size_t i = 0; i < sample_indices.size(); ++i) {
    out[static_cast<int64_t>(i)].copy_(
        KeyedNormal({seed, stage, step, sample_indices[i]}, per_sample_shape));
  }
  return device.is_cpu() ? out : out.to(device);
}

}  // namespace vidfarm::models
