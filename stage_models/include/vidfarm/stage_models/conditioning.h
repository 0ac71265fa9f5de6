// Super-resolution conditioning: resizing and frame up/subsampling of the previous stage's video,
// noise conditioning augmentation, and Video <-> tensor conversion.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"

namespace vidfarm::models {

// x: [B, C, T, H, W] (or [C, T, H, W]); bilinear, antialiased when shrinking either dimension,
// align_corners=false. Keeps x's rank; floating dtypes only.
torch::Tensor ResizeVideo(const torch::Tensor& x, int64_t height, int64_t width);

// Repeat each frame, insert blank (zero) frames after each original, or blend linearly between
// consecutive originals (frame i·factor + j = (1 − j/factor)·x_i + (j/factor)·x_{i+1}, the last
// original held). Original i lands on frame i·factor in every mode.
enum class TemporalUpsample { kRepeat, kBlank, kBlend };
Result<TemporalUpsample> ParseTemporalUpsample(const std::string& name);  // repeat|blank|blend
const char* TemporalUpsampleName(TemporalUpsample mode);
// Along T (dim −3 of [.., T, H, W]); output has T·factor frames.
torch::Tensor UpsampleFrames(const torch::Tensor& x, int factor, TemporalUpsample mode);
// Keep every factor-th frame, starting at frame 0 (training data).
torch::Tensor SubsampleFrames(const torch::Tensor& x, int factor);

// Noise conditioning augmentation: α(λ) x + σ(λ) noise, λ per sample [B].
torch::Tensor NoiseAugment(const torch::Tensor& x, const torch::Tensor& logsnr,
                           const torch::Tensor& noise);

// Video → float32 CPU tensor [C, T, H, W] (a copy). Throws c10::Error if v.Validate() fails; use
// VideoToTensorChecked where that can happen.
torch::Tensor VideoToTensor(const Video& v);
Result<torch::Tensor> VideoToTensorChecked(const Video& v);
// Accepts any device/dtype; x must be [C, T, H, W] with positive sizes, fps > 0.
Result<Video> TensorToVideo(const torch::Tensor& x, double fps);

}  // namespace vidfarm::models
