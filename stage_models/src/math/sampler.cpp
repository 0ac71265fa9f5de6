#include "vidfarm/stage_models/sampler.h"

#include <cmath>
#include <exception>

#include "vidfarm/stage_models/noise.h"

namespace vidfarm::models {

Result<SamplerKind> ParseSamplerKind(const std::string& name) {
  if (name == "ancestral") return SamplerKind::kAncestral;
  if (name == "ddim") return SamplerKind::kDdim;
  return Status::InvalidArgument("unknown sampler '" + name + "' (expected ancestral or ddim)");
}

const char* SamplerKindName(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::kAncestral:
      return "ancestral";
    case SamplerKind::kDdim:
      return "ddim";
  }
  return "unknown";
}

std::vector<double> TimeGrid(int steps, double power) {
  std::vector<double> t;
  if (steps <= 0) return t;
  t.reserve(steps + 1);
  for (int i = 0; i <= steps; ++i) {
    const double u = 1.0 - static_cast<double>(i) / steps;
    t.push_back(power == 1.0 ? u : std::pow(u, power));
  }
  return t;
}

namespace {

Status ValidateSample(const SamplerOptions& opts, at::IntArrayRef shape,
                      const std::vector<int64_t>& sample_indices,
                      const std::optional<SamplerCheckpoint>& resume) {
  if (opts.steps <= 0) return Status::InvalidArgument("sampler steps must be positive");
  if (!(opts.gamma >= 0.0 && opts.gamma <= 1.0)) {
    return Status::InvalidArgument("sampler gamma must be in [0, 1]");
  }
  if (!(opts.time_power >= 1.0 && opts.time_power <= 4.0)) {
    return Status::InvalidArgument("sampler time power must be in [1, 4]");
  }
  if (!(opts.frame_noise >= 0.0 && opts.frame_noise <= 1.0)) {
    return Status::InvalidArgument("sampler frame noise share must be in [0, 1]");
  }
  if (!(opts.schedule.logsnr_min < opts.schedule.logsnr_max)) {
    return Status::InvalidArgument("schedule needs logsnr_min < logsnr_max");
  }
  if (shape.empty()) return Status::InvalidArgument("sample shape needs a batch dimension");
  for (int64_t d : shape) {
    if (d <= 0) return Status::InvalidArgument("sample shape must have positive sizes");
  }
  if (shape[0] != static_cast<int64_t>(sample_indices.size())) {
    return Status::InvalidArgument("batch size " + std::to_string(shape[0]) + " != " +
                                   std::to_string(sample_indices.size()) + " sample indices");
  }
  if (resume) {
    if (resume->next_step < 0 || resume->next_step > opts.steps) {
      return Status::InvalidArgument("checkpoint next_step " + std::to_string(resume->next_step) +
                                     " outside [0, " + std::to_string(opts.steps) + "]");
    }
    if (!resume->z.defined() || resume->z.sizes() != shape) {
      return Status::InvalidArgument("checkpoint latent does not match the sample shape");
    }
  }
  return Status::OK();
}

// The noise of sampler step `step` (-1: z_1) for every row. With a frame share ρ > 0 and a time
// axis ([C, T, H, W] per sample), a second draw of one frame, keyed at SharedFrameNoiseStep(step),
// is mixed into every frame.
torch::Tensor StepNoise(const SamplerOptions& opts, uint64_t seed, int stage, int step,
                        const std::vector<int64_t>& sample_indices, at::IntArrayRef per_sample,
                        torch::Device device) {
  torch::Tensor noise = KeyedNormalBatch(seed, stage, step, sample_indices, per_sample, device);
  if (opts.frame_noise <= 0.0 || per_sample.size() != 4 || per_sample[1] < 2) return noise;
  const std::vector<int64_t> one_frame = {per_sample[0], 1, per_sample[2], per_sample[3]};
  const torch::Tensor shared =
      KeyedNormalBatch(seed, stage, SharedFrameNoiseStep(step), sample_indices, one_frame, device);
  const double rho = opts.frame_noise;
  return noise.mul(std::sqrt(1.0 - rho)).add_(shared.mul(std::sqrt(rho)));  // broadcast over T
}

}  // namespace

int SharedFrameNoiseStep(int step) { return -1000 - step; }

Result<torch::Tensor> Sample(const DenoiseFn& denoise, const SamplerOptions& opts,
                             at::IntArrayRef shape, uint64_t seed, int stage,
                             const std::vector<int64_t>& sample_indices, torch::Device device,
                             const std::optional<SamplerCheckpoint>& resume,
                             const SamplerHooks& hooks) {
  VF_RETURN_NOT_OK(ValidateSample(opts, shape, sample_indices, resume));
  if (!denoise) return Status::InvalidArgument("sampler needs a denoise function");
  try {
    torch::NoGradGuard no_grad;
    const at::IntArrayRef per_sample = shape.slice(1);
    torch::Tensor z;
    int start = 0;
    if (resume) {
      z = resume->z.to(device, torch::kFloat).clone();
      start = resume->next_step;
    } else {
      z = StepNoise(opts, seed, stage, -1, sample_indices, per_sample, device);
    }
    const std::vector<double> t = TimeGrid(opts.steps, opts.time_power);
    for (int i = start; i < opts.steps; ++i) {
      if (hooks.should_stop && hooks.should_stop()) {
        return Status::Cancelled("sampling cancelled before step " + std::to_string(i) + " of " +
                                 std::to_string(opts.steps));
      }
      const double logsnr_t = opts.schedule.LogSnr(t[i]);
      torch::Tensor x_hat = denoise(z, logsnr_t, i);
      if (!x_hat.defined() || x_hat.sizes() != z.sizes()) {
        return Status::Internal("denoiser returned a tensor of the wrong shape at step " +
                                std::to_string(i));
      }
      x_hat = x_hat.to(device, torch::kFloat);
      if (i + 1 == opts.steps) {
        z = x_hat;
      } else {
        const double logsnr_s = opts.schedule.LogSnr(t[i + 1]);
        if (opts.kind == SamplerKind::kDdim) {
          z = DdimStep(z, x_hat, logsnr_t, logsnr_s);
        } else {
          auto noise = StepNoise(opts, seed, stage, i, sample_indices, per_sample, device);
          z = AncestralStep(z, x_hat, logsnr_t, logsnr_s, opts.gamma, noise);
        }
      }
      if (hooks.on_step) hooks.on_step(i + 1, opts.steps);
      if (hooks.checkpoint_every > 0 && hooks.on_checkpoint && i + 1 < opts.steps &&
          (i + 1) % hooks.checkpoint_every == 0) {
        hooks.on_checkpoint(SamplerCheckpoint{i + 1, z.clone()});
      }
    }
    return z;
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("sampler: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("sampler: ") + e.what());
  }
}

}  // namespace vidfarm::models
