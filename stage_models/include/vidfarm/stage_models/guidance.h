// Classifier-free guidance (Ho & Salimans 2022) with Imagen Video's oscillating weights, and
// static/dynamic thresholding of x̂ (Saharia et al. 2022).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>

#include "vidfarm/common/status.h"
#include "vidfarm/stage_models/diffusion.h"
#include "vidfarm/stage_models/sampler.h"

namespace vidfarm::models {

struct GuidanceSchedule {
  double high = 1.0;         // Default: 1. Weight w for constant guidance, or the high weight.
  double low = 1.0;          // Default: 1. The low weight when oscillating.
  bool oscillating = false;  // Default: false.
  int constant_steps = 0;    // Default: 0. When oscillating: steps at `high` before alternating.
  // Constant: high. Oscillating: high for step < constant_steps, then high, low, high, low, ...
  double WeightAt(int step) const;
};

enum class Thresholding { kNone, kStatic, kDynamic };
Result<Thresholding> ParseThresholding(const std::string& name);  // "none"|"static"|"dynamic"
const char* ThresholdingName(Thresholding t);

struct GuidanceOptions {
  GuidanceSchedule schedule;
  Thresholding thresholding = Thresholding::kDynamic;  // Default: dynamic.
  double dynamic_p = 0.995;                       // Default: 0.995. Quantile of |x̂| per sample.
  Parameterization param = Parameterization::kV;  // Default: v (paper).
};

torch::Tensor CombineGuidance(const torch::Tensor& x_cond, const torch::Tensor& x_uncond,
                              double w);                // (1 + w) x_c − w x_u
torch::Tensor StaticThreshold(const torch::Tensor& x);  // clamp to [−1, 1]
// Per sample over all non-batch dims (a 1-D x is one sample): s = max(1, quantile_p(|x|)) with
// linear interpolation (like torch.quantile); returns clip(x, −s, s) / s.
torch::Tensor DynamicThreshold(const torch::Tensor& x, double p);
// The per-sample s of DynamicThreshold, shape [B] (shape [1] for a 1-D x), x's dtype.
torch::Tensor DynamicThresholdScale(const torch::Tensor& x, double p);

// Raw network, called once per denoising step on a batch of 2B (cond rows first, then uncond) or
// B rows: z [N, ...], logsnr [N], text_keep [N] bool (false = null text). Returns v or ε.
using NetFn = std::function<torch::Tensor(const torch::Tensor& z, const torch::Tensor& logsnr,
                                          const torch::Tensor& text_keep)>;

// cond and uncond as ONE batched forward; when the step's weight is 0 only the conditional half
// is evaluated. Guidance is combined on x̂ (equivalent to combining v or ε, both being affine in
// the output for fixed z), then thresholded.
DenoiseFn MakeGuidedDenoiser(NetFn net, GuidanceOptions opts);

}  // namespace vidfarm::models
