#include "vidfarm/stage_models/stage_runner.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "vidfarm/stage_models/diffusion.h"
#include "vidfarm/stage_models/noise.h"
#include "vidfarm/stage_models/unet.h"

namespace vidfarm::models {
namespace {

// Keyed-noise step indices outside the sampler's range: the sampler uses -1 for z_1 and 0..n-1.
constexpr int kAugNoiseStep = -2;

Result<Parameterization> ParsePrediction(const std::string& name) {
  if (name == "v") return Parameterization::kV;
  if (name == "eps") return Parameterization::kEps;
  return Status::InvalidArgument(fmt::format("unknown prediction '{}' (v|eps)", name));
}

}  // namespace

nlohmann::json StageSettings::ToJson() const {
  const GuidanceSchedule& g = guidance.schedule;
  return {
      {"sampler", SamplerKindName(sampler.kind)},
      {"steps", sampler.steps},
      {"gamma", sampler.gamma},
      {"time_power", sampler.time_power},
      {"frame_noise", sampler.frame_noise},
      {"guidance", g.high},
      {"oscillating", g.oscillating},
      {"guidance_low", g.low},
      {"oscillate_after", g.constant_steps},
      {"thresholding", ThresholdingName(guidance.thresholding)},
      {"dynamic_p", guidance.dynamic_p},
      {"prediction", guidance.param == Parameterization::kV ? "v" : "eps"},
      {"aug_logsnr", aug_logsnr},
  };
}

Result<StageSettings> ResolveStageSettings(const StageSpec& spec, const StageOverrides& o) {
  const SamplingDefaults& d = spec.sampling;
  StageSettings s;
  VF_ASSIGN_OR_RETURN(s.sampler.kind, ParseSamplerKind(o.sampler.value_or(d.sampler)));
  s.sampler.steps = o.steps.value_or(d.steps);
  if (s.sampler.steps < 1 || s.sampler.steps > 10000) {
    return Status::InvalidArgument(
        fmt::format("stage {} ({}): steps must be in 1..10000, got {}", spec.index, spec.name,
                    s.sampler.steps));
  }
  s.sampler.gamma = d.gamma;
  s.sampler.time_power = o.time_power.value_or(d.time_power);
  if (!(s.sampler.time_power >= 1.0 && s.sampler.time_power <= 4.0)) {
    return Status::InvalidArgument(fmt::format("stage {} ({}): time power must be in [1, 4], got {}",
                                               spec.index, spec.name, s.sampler.time_power));
  }
  s.sampler.frame_noise = o.frame_noise.value_or(d.frame_noise);
  if (!(s.sampler.frame_noise >= 0.0 && s.sampler.frame_noise <= 1.0)) {
    return Status::InvalidArgument(
        fmt::format("stage {} ({}): frame noise share must be in [0, 1], got {}", spec.index,
                    spec.name, s.sampler.frame_noise));
  }
  GuidanceSchedule& g = s.guidance.schedule;
  if (o.guidance) {
    if (*o.guidance < 0 || *o.guidance > 100) {
      return Status::InvalidArgument(fmt::format("guidance weight must be in 0..100, got {}", *o.guidance));
    }
    g.high = g.low = *o.guidance;
    g.oscillating = false;
  } else {
    g.high = d.guidance;
    g.low = d.guidance_low;
    g.oscillating = d.oscillating;
    g.constant_steps = d.oscillate_after;
  }
  VF_ASSIGN_OR_RETURN(s.guidance.thresholding, ParseThresholding(o.thresholding.value_or(d.thresholding)));
  s.guidance.dynamic_p = d.dynamic_p;
  VF_ASSIGN_OR_RETURN(s.guidance.param, ParsePrediction(d.prediction));
  s.aug_logsnr = o.aug_logsnr.value_or(d.aug_logsnr);
  VF_ASSIGN_OR_RETURN(s.temporal_upsample, ParseTemporalUpsample(spec.temporal_upsample));
  return s;
}

Result<std::unique_ptr<StageRunner>> StageRunner::Create(ModelPackage package,
                                                          const CascadePreset& preset,
                                                          const StageRunnerOptions& options) {
  if (!package.net) return Status::InvalidArgument("stage runner needs a loaded network");
  if (options.dtype != torch::kFloat32 && options.dtype != torch::kBFloat16 &&
      options.dtype != torch::kHalf) {
    return Status::InvalidArgument("dtype must be fp32, bf16 or fp16");
  }
  try {
    package.net->to(options.device, options.dtype);
    package.net->eval();
  } catch (const c10::Error& e) {
    return Status::Internal(fmt::format("moving stage {} to {}: {}", package.spec.index,
                                        options.device.str(), e.what_without_backtrace()));
  }
  auto encoder = MakeBuiltinTextEncoder(preset.text_dim, preset.text_tokens);
  return std::unique_ptr<StageRunner>(
      new StageRunner(std::move(package), std::move(encoder), options));
}

Result<torch::Tensor> StageRunner::Conditioning(const StageRequest& request,
                                                const std::vector<int64_t>& sample_indices,
                                                const StageSettings& settings,
                                                torch::Tensor* aug_logsnr) const {
  const StageSpec& s = spec();
  const auto batch = static_cast<int64_t>(request.prompts.size());
  if (static_cast<int64_t>(request.inputs.size()) != batch) {
    return Status::InvalidArgument(fmt::format("stage {} ({}) needs one input video per prompt: got {} for {}",
                                               s.index, s.name, request.inputs.size(), batch));
  }
  std::vector<torch::Tensor> frames;
  for (const Video& v : request.inputs) {
    VF_RETURN_NOT_OK(v.Validate());
    if (v.frames != s.in_frames() || v.height != s.in_height() || v.width != s.in_width()) {
      return Status::InvalidArgument(fmt::format(
          "stage {} ({}) expects input {}x{}x{}, got {}", s.index, s.name, s.in_frames(),
          s.in_height(), s.in_width(), v.ShapeString()));
    }
    frames.push_back(VideoToTensor(v));
  }
  torch::Tensor cond = torch::stack(frames).to(options_.device);
  if (s.temporal_factor > 1) cond = UpsampleFrames(cond, s.temporal_factor, settings.temporal_upsample);
  if (s.spatial_factor > 1 || cond.size(3) != s.height || cond.size(4) != s.width) {
    cond = ResizeVideo(cond, s.height, s.width);
  }
  *aug_logsnr = torch::full({batch}, settings.aug_logsnr, cond.options());
  torch::Tensor noise = KeyedNormalBatch(request.seed, s.index, kAugNoiseStep, sample_indices,
                                         cond.sizes().slice(1), options_.device);
  return NoiseAugment(cond, *aug_logsnr, noise);
}

Result<std::vector<int64_t>> StageRunner::SampleIndices(const StageRequest& request) const {
  const StageSpec& s = spec();
  const auto batch = static_cast<int64_t>(request.prompts.size());
  if (batch == 0) return Status::InvalidArgument("stage request has no prompts");
  if (s.kind == StageKind::kBase && !request.inputs.empty()) {
    return Status::InvalidArgument("the base stage takes no input video");
  }
  std::vector<int64_t> indices = request.sample_indices;
  if (indices.empty()) {
    for (int64_t i = 0; i < batch; ++i) indices.push_back(i);
  }
  if (static_cast<int64_t>(indices.size()) != batch) {
    return Status::InvalidArgument("sample_indices must have one entry per prompt");
  }
  return indices;
}

// The network behind the sampler, for one request: text and conditioning are computed once and
// captured; each call evaluates cond and uncond as one batch (guidance) and thresholds x̂.
Result<DenoiseFn> StageRunner::Denoiser(const StageRequest& request,
                                        const std::vector<int64_t>& sample_indices,
                                        const StageSettings& settings) const {
  const auto batch = static_cast<int64_t>(request.prompts.size());
  VF_ASSIGN_OR_RETURN(TextEmbedding text, encoder_->Encode(request.prompts, options_.device));
  torch::Tensor cond, aug;
  if (spec().kind != StageKind::kBase) {
    VF_ASSIGN_OR_RETURN(cond, Conditioning(request, sample_indices, settings, &aug));
  }
  const torch::ScalarType dtype = options_.dtype;
  auto cast = [dtype](const torch::Tensor& t) {
    return t.defined() && t.is_floating_point() ? t.to(dtype) : t;
  };
  VideoUNet net = package_.net;
  NetFn net_fn = [=](const torch::Tensor& z, const torch::Tensor& logsnr,
                     const torch::Tensor& keep) mutable {
    const int64_t reps = z.size(0) / batch;
    UNetInputs x;
    x.z = cast(z);
    x.logsnr = logsnr.to(torch::kFloat32);
    x.text_tokens = cast(text.tokens.repeat({reps, 1, 1}));
    x.text_mask = text.mask.repeat({reps, 1});
    x.text_pooled = cast(text.pooled.repeat({reps, 1}));
    x.text_keep = keep;
    if (cond.defined()) {
      x.cond_video = cast(cond.repeat({reps, 1, 1, 1, 1}));
      x.aug_logsnr = aug.repeat({reps});
    }
    return net->forward(x).to(torch::kFloat32);
  };
  return MakeGuidedDenoiser(net_fn, settings.guidance);
}

Result<std::vector<Video>> StageRunner::Run(const StageRequest& request, const StageSettings& settings,
                                            const SamplerHooks& hooks) {
  const StageSpec& s = spec();
  try {
    torch::InferenceMode inference;
    VF_ASSIGN_OR_RETURN(std::vector<int64_t> indices, SampleIndices(request));
    VF_ASSIGN_OR_RETURN(DenoiseFn denoise, Denoiser(request, indices, settings));
    const auto batch = static_cast<int64_t>(request.prompts.size());
    std::vector<int64_t> shape = {batch, s.net.channels, s.frames, s.height, s.width};
    VF_ASSIGN_OR_RETURN(torch::Tensor x, Sample(denoise, settings.sampler, shape, request.seed, s.index,
                                                indices, options_.device, request.resume, hooks));
    // Stage outputs are fp16 values (in float32): they travel and are stored at half the bytes
    // (wire::EncodeVideo), and a direct render sees exactly what a farm's next stage decodes.
    x = x.clamp(-1.0, 1.0).to(torch::kCPU, torch::kHalf).to(torch::kFloat32);
    std::vector<Video> out;
    for (int64_t b = 0; b < batch; ++b) {
      VF_ASSIGN_OR_RETURN(Video v, TensorToVideo(x[b], s.fps));
      out.push_back(std::move(v));
    }
    return out;
  } catch (const c10::Error& e) {
    return Status::Internal(fmt::format("stage {} ({}): {}", s.index, s.name, e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("stage {} ({}): {}", s.index, s.name, e.what()));
  }
}

Result<std::vector<torch::Tensor>> StageRunner::PredictClean(const StageRequest& request,
                                                             const StageSettings& settings,
                                                             const torch::Tensor& clean,
                                                             const std::vector<double>& logsnrs,
                                                             int step, bool clamp) {
  const StageSpec& s = spec();
  try {
    torch::InferenceMode inference;
    VF_ASSIGN_OR_RETURN(std::vector<int64_t> indices, SampleIndices(request));
    const auto batch = static_cast<int64_t>(request.prompts.size());
    const std::vector<int64_t> shape = {batch, s.net.channels, s.frames, s.height, s.width};
    if (clean.sizes() != torch::IntArrayRef(shape)) {
      return Status::InvalidArgument(fmt::format("stage {} ({}): the clean videos must be [{}]",
                                                 s.index, s.name, fmt::join(shape, ",")));
    }
    // Text, conditioning and noise once; one network evaluation per level.
    VF_ASSIGN_OR_RETURN(DenoiseFn denoise, Denoiser(request, indices, settings));
    const torch::Tensor eps = KeyedNormalBatch(request.seed, s.index, kProbeNoiseStep, indices,
                                               clean.sizes().slice(1), options_.device);
    const torch::Tensor x = clean.to(options_.device, torch::kFloat32);
    std::vector<torch::Tensor> out;
    for (double logsnr : logsnrs) {
      const torch::Tensor z = x * AlphaFromLogSnr(logsnr) + eps * SigmaFromLogSnr(logsnr);
      torch::Tensor xhat = denoise(z, logsnr, step);
      if (clamp) xhat = xhat.clamp(-1.0, 1.0);
      out.push_back(xhat.to(torch::kCPU, torch::kFloat32));
    }
    return out;
  } catch (const c10::Error& e) {
    return Status::Internal(fmt::format("stage {} ({}): {}", s.index, s.name, e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Status::Internal(fmt::format("stage {} ({}): {}", s.index, s.name, e.what()));
  }
}

Result<torch::Device> ParseDevice(const std::string& text) {
  try {
    torch::Device device(text);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      return Status::NotSupported(
          fmt::format("device '{}' asked for, but this LibTorch build sees no CUDA device "
                      "(build against a CUDA LibTorch with -DTorch_DIR=...)", text));
    }
    if (!device.is_cpu() && !device.is_cuda()) {
      return Status::NotSupported(fmt::format("device '{}': only cpu and cuda:N are supported", text));
    }
    return device;
  } catch (const c10::Error&) {
    return Status::InvalidArgument(fmt::format("unknown device '{}' (cpu, cuda, cuda:N)", text));
  }
}

Result<torch::ScalarType> ParseDType(const std::string& text) {
  if (text == "fp32" || text == "float32") return torch::kFloat32;
  if (text == "bf16" || text == "bfloat16") return torch::kBFloat16;
  if (text == "fp16" || text == "float16") return torch::kHalf;
  return Status::InvalidArgument(fmt::format("unknown dtype '{}' (fp32, bf16, fp16)", text));
}

}  // namespace vidfarm::models
