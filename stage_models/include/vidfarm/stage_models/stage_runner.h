// Running one cascade stage end to end: SR conditioning (temporal upsampling, bilinear resize,
// noise conditioning augmentation), classifier-free guidance, thresholding and the sampler around
// one stage's Video U-Net. This is what a worker hosts; `vidfarm render` chains seven of them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"
#include "vidfarm/stage_models/conditioning.h"
#include "vidfarm/stage_models/guidance.h"
#include "vidfarm/stage_models/package.h"
#include "vidfarm/stage_models/preset.h"
#include "vidfarm/stage_models/sampler.h"
#include "vidfarm/stage_models/text_encoder.h"

namespace vidfarm::models {

// Per-render choices that override a stage's preset defaults; unset fields keep the default.
struct StageOverrides {
  std::optional<int> steps;
  std::optional<std::string> sampler;       // "ancestral" | "ddim"
  std::optional<double> guidance;           // constant weight w (turns oscillation off)
  std::optional<std::string> thresholding;  // "none" | "static" | "dynamic"
  std::optional<double> aug_logsnr;         // SR stages: conditioning augmentation level
  std::optional<double> time_power;         // time grid (1 − i/steps)^p, p in [1, 4]
  std::optional<double> frame_noise;        // share of the noise common to all frames, [0, 1]
};

// Fully resolved sampling settings of one stage.
struct StageSettings {
  SamplerOptions sampler;
  GuidanceOptions guidance;
  double aug_logsnr = 0.0;
  TemporalUpsample temporal_upsample = TemporalUpsample::kRepeat;
  nlohmann::json ToJson() const;
};

Result<StageSettings> ResolveStageSettings(const StageSpec& spec, const StageOverrides& overrides);

// One batch of samples for one stage.
struct StageRequest {
  std::vector<std::string> prompts;     // B prompts
  std::vector<int64_t> sample_indices;  // B keyed-noise sample indices (empty = 0..B-1)
  uint64_t seed = 0;                    // the job's seed
  std::vector<Video> inputs;            // B videos from the previous stage (SR stages only)
  std::optional<SamplerCheckpoint> resume;
};

struct StageRunnerOptions {
  torch::Device device = torch::kCPU;          // Default: cpu. Or cuda:N.
  torch::ScalarType dtype = torch::kFloat32;   // Default: fp32. kBFloat16/kHalf run the network in that type.
};

class StageRunner {
 public:
  static Result<std::unique_ptr<StageRunner>> Create(ModelPackage package, const CascadePreset& preset,
                                                     const StageRunnerOptions& options);

  const StageSpec& spec() const { return package_.spec; }
  bool random_init() const { return package_.random_init; }
  const ModelPackage& package() const { return package_; }

  // Samples the stage for every prompt of the request; returns B videos in [-1, 1].
  Result<std::vector<Video>> Run(const StageRequest& request, const StageSettings& settings,
                                 const SamplerHooks& hooks = {});

  // One denoising step per noise level, for diagnostics (`vidfarm eval`'s denoising curve):
  // noises `clean` ([B,C,T,H,W] in [-1, 1]) to z = α·x + σ·ε at each of `logsnrs` (one ε, keyed
  // by the request's seed, the stage, kProbeNoiseStep and the sample indices) and returns the
  // stage's x̂ for each, with the request's conditioning, the settings' guidance at sampler step
  // `step`, and thresholding; clamped to [-1, 1] (unless `clamp` is false), on the CPU.
  Result<std::vector<torch::Tensor>> PredictClean(const StageRequest& request,
                                                  const StageSettings& settings,
                                                  const torch::Tensor& clean,
                                                  const std::vector<double>& logsnrs, int step = 0,
                                                  bool clamp = true);
  // Keyed-noise step of PredictClean's ε (outside the sampler's -1..n-1 and the augmentation's -2).
  static constexpr int kProbeNoiseStep = -3;

 private:
  StageRunner(ModelPackage package, std::unique_ptr<TextEncoder> encoder, StageRunnerOptions options)
      : package_(std::move(package)), encoder_(std::move(encoder)), options_(options) {}
  Result<std::vector<int64_t>> SampleIndices(const StageRequest& request) const;
  Result<torch::Tensor> Conditioning(const StageRequest& request,
                                     const std::vector<int64_t>& sample_indices,
                                     const StageSettings& settings, torch::Tensor* aug_logsnr) const;
  Result<DenoiseFn> Denoiser(const StageRequest& request, const std::vector<int64_t>& sample_indices,
                             const StageSettings& settings) const;

  ModelPackage package_;
  std::unique_ptr<TextEncoder> encoder_;
  StageRunnerOptions options_;
};

// Parses "cpu", "cuda", "cuda:1"; checks CUDA is available.
Result<torch::Device> ParseDevice(const std::string& text);
// "fp32" | "bf16" | "fp16"
Result<torch::ScalarType> ParseDType(const std::string& text);

}  // namespace vidfarm::models
