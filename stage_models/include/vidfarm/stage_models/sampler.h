// Samplers (ancestral with γ-interpolated variance, deterministic DDIM) over the cosine schedule.
// They see the model only as a callback that returns x̂.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/stage_models/diffusion.h"

namespace vidfarm::models {

// Returns x̂ (the clean-video estimate, already guided and thresholded) for z at log-SNR `logsnr`
// (same for the whole batch); `step` is the 0-based index of the step being taken.
using DenoiseFn = std::function<torch::Tensor(const torch::Tensor& z, double logsnr, int step)>;

enum class SamplerKind { kAncestral, kDdim };
Result<SamplerKind> ParseSamplerKind(const std::string& name);  // "ancestral" | "ddim"
const char* SamplerKindName(SamplerKind kind);

struct SamplerOptions {
  SamplerKind kind = SamplerKind::kAncestral;  // Default: ancestral (paper).
  int steps = 32;                              // Default: 32.
  double gamma = 0.3;  // Default: 0.3. Ancestral variance interpolation, in [0, 1].
  // Default: 1 (the paper's uniform grid). Above 1 the grid t_i = (1 − i/steps)^p puts more
  // steps at low noise, so the last network evaluation is at a smaller σ. In [1, 4].
  double time_power = 1.0;
  // Default: 0 (independent noise per frame). For video samples ([B, C, T, H, W]), the share of
  // each noise draw's variance that every frame has in common: ε = √ρ·ε_shared + √(1 − ρ)·ε_frame,
  // still N(0, 1) per pixel, with correlation ρ between any two frames. A stage then invents the
  // same detail in every frame where its input leaves it open. In [0, 1].
  double frame_noise = 0.0;
  CosineSchedule schedule;
};

// Time grid 1 → 0 with steps+1 points: t_i = (1 − i/steps)^power (power 1: uniform).
std::vector<double> TimeGrid(int steps, double power = 1.0);

// Resume by taking step next_step from z.
struct SamplerCheckpoint {
  int next_step = 0;
  torch::Tensor z;
};

struct SamplerHooks {
  std::function<void(int done, int total)> on_step;  // after each step
  int checkpoint_every = 0;  // Default: 0 (never). Call on_checkpoint every N steps.
  // Called after step k·N (never after the last step) with next_step = k·N and a copy of z.
  std::function<void(const SamplerCheckpoint&)> on_checkpoint;
  std::function<bool()> should_stop;  // checked before each step; true → Cancelled status
};

// The keyed-noise step of the frame-shared draw mixed into sampler step `step`'s noise:
// -1000 - step, apart from the sampler's steps (-1, 0..n-1) and the runner's (-2, -3).
int SharedFrameNoiseStep(int step);

// Samples a batch of shape `shape` ([B, ...], B == sample_indices.size()), float32 on `device`.
// z_1 = KeyedNormalBatch(seed, stage, step = -1, sample_indices, shape[1:]); step i goes
// t_i → t_{i+1}; the ancestral noise of step i uses key step = i. The last step (to t = 0)
// returns x̂ itself. With frame_noise ρ > 0, each of those draws is mixed with one frame of noise
// keyed at SharedFrameNoiseStep(step) (see SamplerOptions::frame_noise).
// If `resume` is set, starts at resume->next_step from resume->z and gives bit-identical output
// to an uninterrupted run (next_step == steps returns resume->z).
// Errors: InvalidArgument (bad options/shapes), Cancelled (should_stop), Internal (a LibTorch
// or callback exception).
Result<torch::Tensor> Sample(const DenoiseFn& denoise, const SamplerOptions& opts,
                             at::IntArrayRef shape, uint64_t seed, int stage,
                             const std::vector<int64_t>& sample_indices, torch::Device device,
                             const std::optional<SamplerCheckpoint>& resume = std::nullopt,
                             const SamplerHooks& hooks = {});

}  // namespace vidfarm::models
