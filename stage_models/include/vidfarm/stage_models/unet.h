// The Video U-Net shared by every cascade stage (Imagen Video §2.1, after Ho et al. 2022b):
// space-time separable, input [B,C,T,H,W]. Spatial layers (3x3 convs, GroupNorm, spatial
// self-attention, cross-attention to the text) run per frame as 2-D ops over B*T frames in
// channels-last memory; temporal layers (attention over frames with a learned relative-distance
// bias, or a kernel-3 temporal convolution) mix frames at each pixel and are bypassed for samples
// marked as images. Parameters are created on the device given at construction (meta included:
// no memory), under the names below, which are the checkpoint keys.
//
// Checkpoint keys (k = running block index, see the .cpp for the order):
//   time_embed_lin{1,2}.{weight,bias}, aug_embed_lin{1,2}.* (SR only), text_pool.{weight,bias},
//   null_text, null_pooled, conv_in.*, down.<k>.{res,attn,cross,temporal}.*, downsample.<level>.*,
//   mid.<0|1>.*, up.<k>.*, upsample.<level>.*, norm_out.*, conv_out.*
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"

namespace vidfarm::models {

enum class TemporalMixing { kAttention, kConv, kNone };
const char* TemporalMixingName(TemporalMixing t);  // "attention" | "conv" | "none"

struct UNetConfig {
  int64_t channels = 3;                    // video channels
  bool super_resolution = false;           // concatenates a conditioning video, takes aug_logsnr
  int64_t dim = 32;                        // base width (even)
  std::vector<int64_t> mults = {1, 2, 4};  // width multiplier per level; levels-1 downsamplings
  int num_res_blocks = 1;                  // per level
  std::vector<int> level_res_blocks;       // per-level override of num_res_blocks (empty = none)
  std::vector<bool> spatial_attention;     // per level (empty = none); the middle uses the last
  bool cross_attention = true;             // cross-attention to the text tokens in every block
  TemporalMixing temporal = TemporalMixing::kConv;
  int64_t heads = 4;
  int64_t head_dim = 32;
  int64_t text_dim = 64;             // text token width
  bool fully_convolutional = false;  // no attention at all; runs at any H,W divisible by divisor()
  int64_t groups = 8;                // GroupNorm groups (divide every level's width)
  // Space-to-depth factor: the network runs at H/patch x W/patch on patch^2-times more channels
  // (pixel unshuffle in, pixel shuffle out). 1 = off; 2 quarters the cost of high-res stages.
  int64_t patch = 1;
  // SR only: the network's output is offset by −σ(λ)·cond_video, so an untrained network already
  // predicts v as if the clean video were the (upsampled) conditioning: v = α·ε − σ·x with x = cond.
  // The network then learns the residual, −σ·(x − cond), plus the noise. Meant for v-prediction
  // (for ε-prediction the conditioning carries no weight at high noise; leave it off).
  bool cond_skip = false;
  // SR only, > 0: the output is read as a residual around the best linear guess of the clean
  // video from the two noisy views the network gets: z/α (noise variance e^−λ) and the
  // conditioning c/α_aug (its error taken as variance s² = cond_prior_std² + e^−λ_aug, the
  // augmentation noise included). x̂ = (s²·z/α + e^−λ·c/α_aug)/(s² + e^−λ) + √P·net, with P the
  // posterior variance s²·e^−λ/(s² + e^−λ), and the network returns v̂ = (α·z − x̂)/σ. An untrained
  // network (net = 0) then already denoises as well as that linear guess at every noise level, not
  // only at high noise like cond_skip; `vidfarm eval`'s denoising curve showed the cond_skip
  // networks below the plain upsampling at every λ < 2. v-prediction only; replaces cond_skip.
  double cond_prior_std = 0.0;
  // TSR only, with cond_prior_std: the guess's conditioning c is blended linearly between the
  // original frames (every cond_prior_blend-th frame of the conditioning video, which the network
  // itself still sees repeated) instead of taken as repeated. `vidfarm eval --fidelity-only` on
  // tsr5's new frames: linear blending 46.0 dB, repetition 38.9 dB. 0 = off (older packages);
  // image-masked samples keep c as it is (their frames are unrelated images).
  int64_t cond_prior_blend = 0;
  // Adds a learned function of each frame's index (sinusoidal code of the index through a linear
  // layer, zero at init, times 1 + a linear function of the pooled text) to that frame's
  // conditioning embedding, so every block knows where in the clip a frame lies and the prompt
  // decides what that means. Without it the network is exactly time-reversal equivariant wherever
  // the temporal attention's relative bias is symmetric (convolutions and attentions act per frame
  // or per pixel), and it is symmetric at init (zero): the trained tiny base (19000 steps) kept it
  // symmetric to two decimals and drew the same frames for "moving left" as for "moving right"
  // with the same seed, and neither growing nor shrinking. The reversal is a saddle the loss does
  // not leave: its gradient on the bias's antisymmetric part is zero while the network ignores the
  // direction words, and it cannot use them while the bias stays symmetric. Image-masked samples
  // get no frame term. false (absent in JSON) = off (older packages).
  bool frame_embedding = false;
  // Where spatial attention is on, it attends over the pixels of all frames of a video sample at
  // once, with a learned per-head bias for each (Δframe, Δrow, Δcolumn) offset (clamped to ±8,
  // zero at init); image samples still attend within their frame. Lets one layer move content
  // along a direction over time, which per-frame spatial attention and per-pixel temporal
  // attention can do only in combination. false (absent in JSON) = off (older packages).
  bool spacetime_attention = false;

  int levels() const { return static_cast<int>(mults.size()); }
  int res_blocks(int level) const;
  bool attention_at(int level) const;
  // H and W must be multiples of this: patch * 2^(levels-1).
  int64_t divisor() const;

  nlohmann::json ToJson() const;
  static Result<UNetConfig> FromJson(const nlohmann::json& j);
  Status Validate() const;
  bool operator==(const UNetConfig& o) const { return ToJson() == o.ToJson(); }
};

struct UNetInputs {
  torch::Tensor z;            // [B,C,T,H,W]
  torch::Tensor logsnr;       // [B]
  torch::Tensor text_tokens;  // [B,L,D] (may be undefined when cross_attention is off)
  torch::Tensor text_mask;    // [B,L] bool
  torch::Tensor text_pooled;  // [B,D]
  torch::Tensor text_keep;    // [B] bool; undefined = all true. false: use the learned null text
  torch::Tensor cond_video;   // [B,C,T,H,W] (SR only; already resized/upsampled/augmented)
  torch::Tensor aug_logsnr;   // [B] (SR only)
  torch::Tensor image_mask;   // [B] bool; undefined = all false. true: frames are independent
};

namespace detail {
// Space-time attention (UNetConfig::spacetime_attention): offsets in frames, rows and columns
// beyond this share one learned bias.
constexpr int64_t kSpaceTimeReach = 8;
// For N = t·h·w tokens in (frame, row, column) order, the [N·N] row-major index into a
// (2·reach+1)^3 bias table of each (query, key) pair's clamped offset key − query:
// ((Δt + reach)·side + Δy + reach)·side + Δx + reach.
torch::Tensor SpaceTimeOffsetIndex(int64_t t, int64_t h, int64_t w);
struct Conv2dImpl;
struct LinearImpl;
struct NormImpl;
struct BlockImpl;
}  // namespace detail

class VideoUNetImpl : public torch::nn::Module {
 public:
  // Does not validate: use MakeVideoUNet for a Status. Parameters are zero until InitWeights or a
  // package load fills them (nothing is allocated on the meta device).
  explicit VideoUNetImpl(const UNetConfig& config, torch::Device device = torch::kCPU);

  // Returns [B,C,T,H,W] (v or eps; the caller decides). TORCH_CHECKs shapes: call CheckInputs
  // first, or catch c10::Error.
  torch::Tensor forward(const UNetInputs& in);
  Status CheckInputs(const UNetInputs& in) const;

  const UNetConfig& config() const { return config_; }
  // Where the parameters are now (follows Module::to), and their dtype (inputs are cast to it).
  torch::Device device() const;
  torch::ScalarType dtype() const;

 private:
  torch::Tensor Embed(const UNetInputs& in, const torch::Tensor& keep);
  UNetConfig config_;
  torch::Tensor null_text_, null_pooled_;
  std::vector<std::shared_ptr<detail::BlockImpl>> down_, mid_, up_;
  std::vector<int> down_level_, up_level_;  // level of each block
  std::vector<std::shared_ptr<detail::Conv2dImpl>> downsample_, upsample_;
  std::shared_ptr<detail::Conv2dImpl> conv_in_, conv_out_;
  std::shared_ptr<detail::NormImpl> norm_out_;
  std::shared_ptr<detail::LinearImpl> time1_, time2_, aug1_, aug2_, text_pool_, frame_embed_,
      frame_text_;
};
TORCH_MODULE(VideoUNet);

// Validates the config and builds the network (catching LibTorch errors).
Result<VideoUNet> MakeVideoUNet(const UNetConfig& config, torch::Device device = torch::kCPU);

int64_t CountParameters(const torch::nn::Module& m);

// The SR output parameterization (cond_skip, cond_prior_std, cond_prior_blend) goes with the
// weights, like the prediction: a package or checkpoint keeps its own whatever the preset says now.
void CopyOutputSkip(const UNetConfig& from, UNetConfig* to);
bool SameOutputSkip(const UNetConfig& a, const UNetConfig& b);
// Likewise the base's motion layers (frame_embedding, spacetime_attention): they add tensors, so a
// package or checkpoint has them or not whatever the preset says now.
void CopyMotionLayers(const UNetConfig& from, UNetConfig* to);
bool SameMotionLayers(const UNetConfig& a, const UNetConfig& b);

// Deterministic, thread-safe initialisation from a seed, identical in every process and platform:
// each parameter gets its own splitmix64 stream keyed by (seed, parameter name). Weights (>= 2-D):
// uniform(+-1/sqrt(fan_in)); biases and the relative-position bias: 0; 1-D "weight" (norm scales):
// 1; other vectors (learned null text): uniform with unit variance. Meta parameters are skipped.
void InitWeights(torch::nn::Module& m, uint64_t seed);

}  // namespace vidfarm::models
