#include "vidfarm/stage_models/unet.h"

#include <cmath>
#include <cstring>
#include <numeric>

#include "vidfarm/common/hash.h"
#include "vidfarm/stage_models/conditioning.h"
#include "vidfarm/stage_models/ops.h"

namespace vidfarm::models {

// ---------------------------------------------------------------------------------------------
// Config

const char* TemporalMixingName(TemporalMixing t) {
  switch (t) {
    case TemporalMixing::kAttention:
      return "attention";
    case TemporalMixing::kConv:
      return "conv";
    case TemporalMixing::kNone:
      return "none";
  }
  return "none";
}

int UNetConfig::res_blocks(int level) const {
  if (level >= 0 && level < static_cast<int>(level_res_blocks.size())) {
    return level_res_blocks[level];
  }
  return num_res_blocks;
}

bool UNetConfig::attention_at(int level) const {
  return !fully_convolutional && level >= 0 && level < static_cast<int>(spatial_attention.size()) &&
         spatial_attention[level];
}

int64_t UNetConfig::divisor() const {
  return std::max<int64_t>(patch, 1) * (int64_t{1} << std::max(0, levels() - 1));
}

nlohmann::json UNetConfig::ToJson() const {
  nlohmann::json j;
  j["channels"] = channels;
  j["super_resolution"] = super_resolution;
  j["dim"] = dim;
  j["mults"] = mults;
  j["num_res_blocks"] = num_res_blocks;
  j["level_res_blocks"] = level_res_blocks;
  j["spatial_attention"] = spatial_attention;
  j["cross_attention"] = cross_attention;
  j["temporal"] = TemporalMixingName(temporal);
  j["heads"] = heads;
  j["head_dim"] = head_dim;
  j["text_dim"] = text_dim;
  j["fully_convolutional"] = fully_convolutional;
  j["groups"] = groups;
  j["patch"] = patch;
  j["cond_skip"] = cond_skip;
  if (cond_prior_std > 0) j["cond_prior_std"] = cond_prior_std;  // absent: off (older packages)
  if (cond_prior_blend > 0) j["cond_prior_blend"] = cond_prior_blend;  // absent: off
  if (frame_embedding) j["frame_embedding"] = true;                    // absent: off
  if (spacetime_attention) j["spacetime_attention"] = true;            // absent: off
  return j;
}

Result<UNetConfig> UNetConfig::FromJson(const nlohmann::json& j) {
  UNetConfig c;
  try {
    if (!j.is_object()) return Status::InvalidArgument("architecture must be a JSON object");
    c.channels = j.at("channels").get<int64_t>();
    c.super_resolution = j.at("super_resolution").get<bool>();
    c.dim = j.at("dim").get<int64_t>();
    c.mults = j.at("mults").get<std::vector<int64_t>>();
    c.num_res_blocks = j.at("num_res_blocks").get<int>();
    c.level_res_blocks = j.value("level_res_blocks", std::vector<int>{});
    c.spatial_attention = j.value("spatial_attention", std::vector<bool>{});
    c.cross_attention = j.at("cross_attention").get<bool>();
    const auto t = j.at("temporal").get<std::string>();
    if (t == "attention") {
      c.temporal = TemporalMixing::kAttention;
    } else if (t == "conv") {
      c.temporal = TemporalMixing::kConv;
    } else if (t == "none") {
      c.temporal = TemporalMixing::kNone;
    } else {
      return Status::InvalidArgument("unknown temporal mixing '" + t +
                                     "' (attention | conv | none)");
    }
    c.heads = j.at("heads").get<int64_t>();
    c.head_dim = j.at("head_dim").get<int64_t>();
    c.text_dim = j.at("text_dim").get<int64_t>();
    c.fully_convolutional = j.value("fully_convolutional", false);
    c.groups = j.at("groups").get<int64_t>();
    c.patch = j.value("patch", int64_t{1});
    c.cond_skip = j.value("cond_skip", false);
    c.cond_prior_std = j.value("cond_prior_std", 0.0);
    c.cond_prior_blend = j.value("cond_prior_blend", int64_t{0});
    c.frame_embedding = j.value("frame_embedding", false);
    c.spacetime_attention = j.value("spacetime_attention", false);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("bad U-Net architecture JSON: ") + e.what());
  }
  VF_RETURN_NOT_OK(c.Validate());
  return c;
}

Status UNetConfig::Validate() const {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("U-Net config: " + m); };
  if (channels <= 0) return bad("channels must be positive");
  if (dim <= 0 || dim % 2 != 0) return bad("dim must be positive and even");
  if (mults.empty()) return bad("mults must not be empty");
  if (mults.size() > 8) return bad("at most 8 levels");
  if (num_res_blocks < 1) return bad("num_res_blocks must be >= 1");
  if (!level_res_blocks.empty() && level_res_blocks.size() != mults.size()) {
    return bad("level_res_blocks must have one entry per level");
  }
  for (int b : level_res_blocks) {
    if (b < 1) return bad("every level needs at least one res block");
  }
  if (!spatial_attention.empty() && spatial_attention.size() != mults.size()) {
    return bad("spatial_attention must be empty or have one entry per level");
  }
  if (heads <= 0 || head_dim <= 0) return bad("heads and head_dim must be positive");
  if (text_dim <= 0) return bad("text_dim must be positive");
  if (groups <= 0) return bad("groups must be positive");
  if (patch < 1 || patch > 8) return bad("patch must be in [1, 8]");
  if (cond_skip && !super_resolution) return bad("cond_skip needs a super-resolution network");
  if (!(cond_prior_std >= 0 && cond_prior_std <= 1)) return bad("cond_prior_std must be in [0, 1]");
  if (cond_prior_std > 0 && !super_resolution) {
    return bad("cond_prior_std needs a super-resolution network");
  }
  if (cond_prior_std > 0 && cond_skip) return bad("cond_prior_std replaces cond_skip: set one");
  if (cond_prior_blend < 0 || cond_prior_blend > 16)
    return bad("cond_prior_blend must be in [0, 16]");
  if (cond_prior_blend > 0 && cond_prior_std <= 0)
    return bad("cond_prior_blend needs cond_prior_std");
  for (int64_t m : mults) {
    if (m <= 0) return bad("mults must be positive");
    if ((dim * m) % groups != 0) {
      return bad("width " + std::to_string(dim * m) + " is not divisible by " +
                 std::to_string(groups) + " groups");
    }
  }
  if (fully_convolutional) {
    for (bool a : spatial_attention) {
      if (a) return bad("fully_convolutional excludes spatial attention");
    }
    if (cross_attention) return bad("fully_convolutional excludes cross-attention");
    if (temporal == TemporalMixing::kAttention) {
      return bad("fully_convolutional excludes temporal attention");
    }
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// Layers

namespace detail {

namespace {
torch::TensorOptions ParamOptions(torch::Device device) {
  return torch::TensorOptions().dtype(torch::kFloat32).device(device);
}
// Zeros on a real device, nothing allocated on meta.
torch::Tensor NewParam(at::IntArrayRef shape, torch::Device device) {
  if (device.is_meta()) return torch::empty(shape, ParamOptions(device));
  return torch::zeros(shape, ParamOptions(device));
}
// [BT,C,H,W] (channels-last memory) -> [B,T,H*W,C]; a view when the memory is channels-last.
torch::Tensor ToTokens(const torch::Tensor& x, int64_t b, int64_t t) {
  return x.permute({0, 2, 3, 1}).reshape({b, t, x.size(2) * x.size(3), x.size(1)});
}
torch::Tensor FromTokens(const torch::Tensor& tok, int64_t h, int64_t w) {
  const int64_t c = tok.size(-1);
  return tok.reshape({-1, h, w, c}).permute({0, 3, 1, 2});
}
}  // namespace

struct Conv2dImpl : torch::nn::Module {
  Conv2dImpl(int64_t in, int64_t out, int64_t k, int64_t stride, torch::Device dev)
      : stride(stride), pad(k / 2) {
    weight = register_parameter("weight", NewParam({out, in, k, k}, dev));
    bias = register_parameter("bias", NewParam({out}, dev));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return ops::conv2d(x, weight, bias, stride, pad);
  }
  int64_t stride, pad;
  torch::Tensor weight, bias;
};

struct LinearImpl : torch::nn::Module {
  LinearImpl(int64_t in, int64_t out, torch::Device dev, bool with_bias = true) {
    weight = register_parameter("weight", NewParam({out, in}, dev));
    if (with_bias) bias = register_parameter("bias", NewParam({out}, dev));
  }
  torch::Tensor forward(const torch::Tensor& x) { return ops::linear(x, weight, bias); }
  torch::Tensor weight, bias;
};

struct NormImpl : torch::nn::Module {
  NormImpl(int64_t channels, int64_t groups, torch::Device dev) : groups(groups) {
    weight = register_parameter("weight", NewParam({channels}, dev));
    bias = register_parameter("bias", NewParam({channels}, dev));
  }
  torch::Tensor forward(const torch::Tensor& x) { return ops::group_norm(x, groups, weight, bias); }
  int64_t groups;
  torch::Tensor weight, bias;
};

// What every block needs to know about the batch.
struct SampleCtx {
  int64_t b = 0, t = 0;
  torch::Tensor emb;            // [B,E], or [B*T,E] if emb_per_frame; already through SiLU
  bool emb_per_frame = false;   // a row per frame (UNetConfig::frame_embedding)
  torch::Tensor text;           // [B,L,D] effective tokens (null text where dropped)
  torch::Tensor text_mask;      // [B,L] bool effective mask
  bool temporal_off = false;    // every sample is an image: skip temporal layers
  torch::Tensor temporal_keep;  // [BT,1,1,1] float, 0 for image samples; undefined = all video
};

struct ResBlockImpl : torch::nn::Module {
  ResBlockImpl(int64_t in, int64_t out, int64_t emb_dim, int64_t groups, torch::Device dev) {
    norm1 = register_module("norm1", std::make_shared<NormImpl>(in, groups, dev));
    conv1 = register_module("conv1", std::make_shared<Conv2dImpl>(in, out, 3, 1, dev));
    emb_proj = register_module("emb_proj", std::make_shared<LinearImpl>(emb_dim, 2 * out, dev));
    norm2 = register_module("norm2", std::make_shared<NormImpl>(out, groups, dev));
    conv2 = register_module("conv2", std::make_shared<Conv2dImpl>(out, out, 3, 1, dev));
    if (in != out) skip = register_module("skip", std::make_shared<Conv2dImpl>(in, out, 1, 1, dev));
  }
  torch::Tensor forward(const torch::Tensor& x, const SampleCtx& ctx) {
    auto h = conv1->forward(ops::silu(norm1->forward(x)));
    h = norm2->forward(h);
    const int64_t c = h.size(1);
    // Per-sample scale/shift, shared by all frames of the sample (per frame with frame_embedding).
    torch::Tensor ss;  // [B,2C] or [B*T,2C]
    if (ctx.emb_per_frame) {
      // One product per sample (T rows each), so a sample's numbers do not depend on the batch
      // it came in: BLAS rounds a row differently with the row count around it.
      std::vector<torch::Tensor> rows;
      for (int64_t i = 0; i < ctx.b; ++i) {
        rows.push_back(emb_proj->forward(ctx.emb.narrow(0, i * ctx.t, ctx.t)));
      }
      ss = (ctx.b == 1 ? rows[0] : torch::cat(rows, 0)).view({ctx.b * ctx.t, 2 * c, 1, 1});
    } else {
      ss = emb_proj->forward(ctx.emb);
      ss = ss.unsqueeze(1).expand({ctx.b, ctx.t, 2 * c}).reshape({ctx.b * ctx.t, 2 * c, 1, 1});
    }
    auto scale = ss.narrow(1, 0, c);
    auto shift = ss.narrow(1, c, c);
    h = ops::scale_shift(h, scale + 1.0, shift);
    h = conv2->forward(ops::silu(h));
    return ops::add(skip ? skip->forward(x) : x, h);
  }
  std::shared_ptr<NormImpl> norm1, norm2;
  std::shared_ptr<Conv2dImpl> conv1, conv2, skip;
  std::shared_ptr<LinearImpl> emb_proj;
};

torch::Tensor SpaceTimeOffsetIndex(int64_t t, int64_t h, int64_t w) {
  const int64_t n = t * h * w, side = 2 * kSpaceTimeReach + 1;
  auto index = torch::empty({n * n}, torch::kLong);
  int64_t* idx = index.data_ptr<int64_t>();
  auto off = [](int64_t d) {
    return std::clamp(d, -kSpaceTimeReach, kSpaceTimeReach) + kSpaceTimeReach;
  };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t ti = i / (h * w), yi = i / w % h, xi = i % w;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t tj = j / (h * w), yj = j / w % h, xj = j % w;
      idx[i * n + j] = (off(tj - ti) * side + off(yj - yi)) * side + off(xj - xi);
    }
  }
  return index;
}

// Self-attention over the pixels of each frame; with UNetConfig::spacetime_attention, over the
// pixels of all the sample's frames at once, with a learned per-head bias indexed by the clamped
// (Δframe, Δrow, Δcolumn) offset. Image samples (frames unrelated) attend within their frame.
struct SpatialAttentionImpl : torch::nn::Module {
  SpatialAttentionImpl(int64_t ch, int64_t heads, int64_t head_dim, int64_t groups, bool spacetime,
                       torch::Device dev)
      : heads(heads), head_dim(head_dim) {
    norm = register_module("norm", std::make_shared<NormImpl>(ch, groups, dev));
    qkv = register_module("qkv", std::make_shared<LinearImpl>(ch, 3 * heads * head_dim, dev));
    out = register_module("out", std::make_shared<LinearImpl>(heads * head_dim, ch, dev));
    if (spacetime) {
      const int64_t side = 2 * kSpaceTimeReach + 1;
      rel_bias = register_parameter("rel_bias", NewParam({heads, side * side * side}, dev));
    }
  }
  // [1,heads,N,N] bias for N = t*h*w tokens in (frame, row, column) order.
  torch::Tensor Bias(int64_t t, int64_t h, int64_t w) {
    const int64_t n = t * h * w;
    const auto index = SpaceTimeOffsetIndex(t, h, w).to(rel_bias.device());
    return rel_bias.index_select(1, index).view({1, heads, n, n});
  }
  torch::Tensor forward(const torch::Tensor& x, const SampleCtx& ctx) {
    const int64_t h = x.size(2), w = x.size(3), c = x.size(1);
    const bool spacetime = rel_bias.defined() && !ctx.temporal_off && ctx.t > 1;
    // Sequences: one per frame, or one per sample (all its frames) in space-time.
    const int64_t n = spacetime ? ctx.b : x.size(0), len = spacetime ? ctx.t * h * w : h * w;
    auto tok = norm->forward(x).permute({0, 2, 3, 1}).reshape({n, len, c});
    auto p = qkv->forward(tok).view({n, len, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
    torch::Tensor bias, mask;
    if (rel_bias.defined()) bias = Bias(spacetime ? ctx.t : 1, h, w).to(p.scalar_type());
    if (spacetime && ctx.temporal_keep.defined()) {
      // Image samples of a mixed batch: each pixel sees only its own frame.
      auto frame = torch::arange(ctx.t, torch::kLong).repeat_interleave(h * w);
      auto same = (frame.unsqueeze(1) == frame.unsqueeze(0)).to(x.device());  // [N,N]
      auto video =
          ctx.temporal_keep.view({ctx.b, ctx.t}).select(1, 0).gt(0.5).view({ctx.b, 1, 1, 1});
      mask = same.view({1, 1, len, len}) | video;
    }
    auto a = ops::attention(p[0], p[1], p[2], bias, mask);  // [n,h,len,d]
    a = a.permute({0, 2, 1, 3}).reshape({n, len, heads * head_dim});
    return ops::add(x, FromTokens(out->forward(a), h, w));
  }
  int64_t heads, head_dim;
  std::shared_ptr<NormImpl> norm;
  std::shared_ptr<LinearImpl> qkv, out;
  torch::Tensor rel_bias;  // [heads, (2·reach+1)^3], spacetime_attention only
};

// Queries from every pixel of every frame, keys from the text tokens plus one learned null key
// that is always present (an all-masked prompt then attends to it alone).
struct CrossAttentionImpl : torch::nn::Module {
  CrossAttentionImpl(int64_t ch, int64_t text_dim, int64_t heads, int64_t head_dim, int64_t groups,
                     torch::Device dev)
      : heads(heads), head_dim(head_dim) {
    norm = register_module("norm", std::make_shared<NormImpl>(ch, groups, dev));
    q = register_module("q", std::make_shared<LinearImpl>(ch, heads * head_dim, dev));
    kv = register_module("kv", std::make_shared<LinearImpl>(text_dim, 2 * heads * head_dim, dev));
    null_kv = register_parameter("null_kv", NewParam({2, heads * head_dim}, dev));
    out = register_module("out", std::make_shared<LinearImpl>(heads * head_dim, ch, dev));
  }
  torch::Tensor forward(const torch::Tensor& x, const SampleCtx& ctx) {
    const int64_t h = x.size(2), w = x.size(3), hd = heads * head_dim;
    const int64_t b = ctx.b, t = ctx.t, l = ctx.text.size(1);
    auto tok = ToTokens(norm->forward(x), b, t).reshape({b, t * h * w, x.size(1)});
    auto qq = q->forward(tok).view({b, t * h * w, heads, head_dim}).transpose(1, 2);
    auto kvp = kv->forward(ctx.text);  // [B,L,2hd]
    auto nul = null_kv.view({1, 1, 2 * hd}).expand({b, 1, 2 * hd});
    kvp = torch::cat({nul, kvp}, 1).view({b, l + 1, 2, heads, head_dim}).permute({2, 0, 3, 1, 4});
    auto first = torch::ones({b, 1}, ctx.text_mask.options());
    auto mask = torch::cat({first, ctx.text_mask}, 1).view({b, 1, 1, l + 1});
    auto a = ops::attention(qq, kvp[0], kvp[1], {}, mask);  // [B,h,T*HW,d]
    a = a.transpose(1, 2).reshape({b * t, h * w, hd});
    return ops::add(x, FromTokens(out->forward(a), h, w));
  }
  int64_t heads, head_dim;
  std::shared_ptr<NormImpl> norm;
  std::shared_ptr<LinearImpl> q, kv, out;
  torch::Tensor null_kv;
};

constexpr int64_t kMaxRelativeDistance = 32;  // frame distances beyond share one bias

torch::Tensor ApplyTemporal(const torch::Tensor& x, const torch::Tensor& delta,
                            const SampleCtx& ctx) {
  if (ctx.temporal_keep.defined()) return ops::add(x, ops::mul(delta, ctx.temporal_keep));
  return ops::add(x, delta);
}

// Self-attention over the frames at each pixel, with a learned per-head bias indexed by the
// (clamped) frame distance.
struct TemporalAttentionImpl : torch::nn::Module {
  TemporalAttentionImpl(int64_t ch, int64_t heads, int64_t head_dim, int64_t groups,
                        torch::Device dev)
      : heads(heads), head_dim(head_dim) {
    norm = register_module("norm", std::make_shared<NormImpl>(ch, groups, dev));
    qkv = register_module("qkv", std::make_shared<LinearImpl>(ch, 3 * heads * head_dim, dev));
    out = register_module("out", std::make_shared<LinearImpl>(heads * head_dim, ch, dev));
    rel_bias = register_parameter("rel_bias", NewParam({heads, 2 * kMaxRelativeDistance + 1}, dev));
  }
  torch::Tensor forward(const torch::Tensor& x, const SampleCtx& ctx) {
    const int64_t b = ctx.b, t = ctx.t, h = x.size(2), w = x.size(3), p = h * w;
    auto tok = ToTokens(norm->forward(x), b, t);  // [B,T,P,C]
    auto qkvp = qkv->forward(tok).view({b, t, p, 3, heads, head_dim}).permute({3, 0, 2, 4, 1, 5});
    auto qq = qkvp[0].reshape({b * p, heads, t, head_dim});
    auto kk = qkvp[1].reshape({b * p, heads, t, head_dim});
    auto vv = qkvp[2].reshape({b * p, heads, t, head_dim});
    std::vector<int64_t> idx(static_cast<size_t>(t * t));
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t j = 0; j < t; ++j) {
        idx[i * t + j] =
            std::clamp(j - i, -kMaxRelativeDistance, kMaxRelativeDistance) + kMaxRelativeDistance;
      }
    }
    // clone: autograd keeps the index for the backward pass, after idx is gone.
    auto index = torch::from_blob(idx.data(), {t, t}, torch::kLong).clone().to(rel_bias.device());
    auto bias = rel_bias.index({torch::indexing::Slice(), index}).unsqueeze(0);  // [1,h,T,T]
    auto a = ops::attention(qq, kk, vv, bias);                                   // [BP,h,T,d]
    a = a.view({b, p, heads, t, head_dim}).permute({0, 3, 1, 2, 4}).reshape({b, t, p, -1});
    return ApplyTemporal(x, FromTokens(out->forward(a), h, w), ctx);
  }
  int64_t heads, head_dim;
  std::shared_ptr<NormImpl> norm;
  std::shared_ptr<LinearImpl> qkv, out;
  torch::Tensor rel_bias;
};

// GroupNorm then a kernel-3 convolution over frames at each pixel, residual.
struct TemporalConvImpl : torch::nn::Module {
  TemporalConvImpl(int64_t ch, int64_t groups, torch::Device dev) {
    norm = register_module("norm", std::make_shared<NormImpl>(ch, groups, dev));
    weight = register_parameter("weight", NewParam({ch, ch, 3}, dev));
    bias = register_parameter("bias", NewParam({ch}, dev));
  }
  torch::Tensor forward(const torch::Tensor& x, const SampleCtx& ctx) {
    const int64_t h = x.size(2), w = x.size(3);
    auto tok = ToTokens(norm->forward(x), ctx.b, ctx.t);  // [B,T,P,C]
    auto y = ops::temporal_conv(tok, weight, bias);
    return ApplyTemporal(x, FromTokens(y, h, w), ctx);
  }
  std::shared_ptr<NormImpl> norm;
  torch::Tensor weight, bias;
};

// ResBlock, then optionally spatial self-attention, cross-attention and temporal mixing.
struct BlockImpl : torch::nn::Module {
  BlockImpl(int64_t in, int64_t out, int64_t emb_dim, bool attn, bool cross, bool with_res,
            TemporalMixing temporal, const UNetConfig& c, torch::Device dev) {
    if (with_res) {
      res = register_module("res", std::make_shared<ResBlockImpl>(in, out, emb_dim, c.groups, dev));
    }
    if (attn) {
      this->attn = register_module(
          "attn", std::make_shared<SpatialAttentionImpl>(out, c.heads, c.head_dim, c.groups,
                                                         c.spacetime_attention, dev));
    }
    if (cross) {
      this->cross =
          register_module("cross", std::make_shared<CrossAttentionImpl>(out, c.text_dim, c.heads,
                                                                        c.head_dim, c.groups, dev));
    }
    if (temporal == TemporalMixing::kAttention) {
      tattn = register_module("temporal", std::make_shared<TemporalAttentionImpl>(
                                              out, c.heads, c.head_dim, c.groups, dev));
    } else if (temporal == TemporalMixing::kConv) {
      tconv = register_module("temporal", std::make_shared<TemporalConvImpl>(out, c.groups, dev));
    }
  }
  torch::Tensor forward(torch::Tensor x, const SampleCtx& ctx) {
    if (res) x = res->forward(x, ctx);
    if (attn) x = attn->forward(x, ctx);
    if (cross) x = cross->forward(x, ctx);
    if (!ctx.temporal_off) {
      if (tattn) x = tattn->forward(x, ctx);
      if (tconv) x = tconv->forward(x, ctx);
    }
    return x;
  }
  std::shared_ptr<ResBlockImpl> res;
  std::shared_ptr<SpatialAttentionImpl> attn;
  std::shared_ptr<CrossAttentionImpl> cross;
  std::shared_ptr<TemporalAttentionImpl> tattn;
  std::shared_ptr<TemporalConvImpl> tconv;
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// The U-Net

namespace {

// Sinusoidal features of a log-SNR value ([B] -> [B,dim]); log-SNR spans about [-20, 20].
torch::Tensor Sinusoidal(const torch::Tensor& x, int64_t dim) {
  const int64_t half = dim / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
  auto freqs =
      torch::exp(torch::arange(half, opts) *
                 (-std::log(1000.0) / static_cast<double>(std::max<int64_t>(half - 1, 1)))) *
      16.0;
  auto args = x.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({torch::sin(args), torch::cos(args)}, 1);
}

}  // namespace

VideoUNetImpl::VideoUNetImpl(const UNetConfig& config, torch::Device device) : config_(config) {
  using namespace detail;
  const auto& c = config_;
  const int64_t emb = 4 * c.dim;
  time1_ = register_module("time_embed_lin1", std::make_shared<LinearImpl>(c.dim, emb, device));
  time2_ = register_module("time_embed_lin2", std::make_shared<LinearImpl>(emb, emb, device));
  if (c.super_resolution) {
    aug1_ = register_module("aug_embed_lin1", std::make_shared<LinearImpl>(c.dim, emb, device));
    aug2_ = register_module("aug_embed_lin2", std::make_shared<LinearImpl>(emb, emb, device));
  }
  text_pool_ = register_module("text_pool", std::make_shared<LinearImpl>(c.text_dim, emb, device));
  if (c.frame_embedding) {
    frame_embed_ = register_module("frame_embed", std::make_shared<LinearImpl>(c.dim, emb, device));
    frame_text_ =
        register_module("frame_text", std::make_shared<LinearImpl>(c.text_dim, emb, device));
  }
  null_text_ = register_parameter("null_text", NewParam({c.text_dim}, device));
  null_pooled_ = register_parameter("null_pooled", NewParam({c.text_dim}, device));

  const int64_t in_ch = (c.super_resolution ? 2 * c.channels : c.channels) * c.patch * c.patch;
  std::vector<int64_t> width;
  for (int64_t m : c.mults) width.push_back(c.dim * m);
  conv_in_ =
      register_module("conv_in", std::make_shared<Conv2dImpl>(in_ch, width[0], 3, 1, device));

  auto down_list = register_module("down", torch::nn::ModuleList());
  auto ds_list = register_module("downsample", torch::nn::ModuleList());
  std::vector<int64_t> skip_ch;
  int64_t cur = width[0];
  const int levels = c.levels();
  for (int l = 0; l < levels; ++l) {
    for (int i = 0; i < c.res_blocks(l); ++i) {
      auto blk = std::make_shared<BlockImpl>(cur, width[l], emb, c.attention_at(l),
                                             c.cross_attention, true, c.temporal, c, device);
      down_list->push_back(blk);
      down_.push_back(blk);
      down_level_.push_back(l);
      cur = width[l];
      skip_ch.push_back(cur);
    }
    if (l + 1 < levels) {
      auto ds = std::make_shared<Conv2dImpl>(cur, cur, 3, 2, device);
      ds_list->push_back(ds);
      downsample_.push_back(ds);
    }
  }
  auto mid_list = register_module("mid", torch::nn::ModuleList());
  for (int i = 0; i < 2; ++i) {
    // mid.0: res + attention + cross + temporal; mid.1: res only.
    auto blk = std::make_shared<BlockImpl>(cur, cur, emb, i == 0 && c.attention_at(levels - 1),
                                           i == 0 && c.cross_attention, true,
                                           i == 0 ? c.temporal : TemporalMixing::kNone, c, device);
    mid_list->push_back(blk);
    mid_.push_back(blk);
  }
  auto up_list = register_module("up", torch::nn::ModuleList());
  auto us_list = register_module("upsample", torch::nn::ModuleList());
  for (int l = levels - 1; l >= 0; --l) {
    for (int i = 0; i < c.res_blocks(l); ++i) {
      const int64_t s = skip_ch.back();
      skip_ch.pop_back();
      auto blk = std::make_shared<BlockImpl>(cur + s, width[l], emb, c.attention_at(l),
                                             c.cross_attention, true, c.temporal, c, device);
      up_list->push_back(blk);
      up_.push_back(blk);
      up_level_.push_back(l);
      cur = width[l];
    }
    if (l > 0) {
      // Convolve at the low resolution, then nearest 2x: same receptive field as nearest+conv at
      // a quarter of the FLOPs, which matters at 1280x768.
      auto us = std::make_shared<Conv2dImpl>(cur, width[l - 1], 3, 1, device);
      us_list->push_back(us);
      upsample_.push_back(us);
      cur = width[l - 1];
    }
  }
  norm_out_ = register_module("norm_out", std::make_shared<NormImpl>(cur, c.groups, device));
  conv_out_ = register_module(
      "conv_out", std::make_shared<Conv2dImpl>(cur, c.channels * c.patch * c.patch, 3, 1, device));
}

torch::Device VideoUNetImpl::device() const { return conv_in_->weight.device(); }
torch::ScalarType VideoUNetImpl::dtype() const { return conv_in_->weight.scalar_type(); }

Status VideoUNetImpl::CheckInputs(const UNetInputs& in) const {
  const auto& c = config_;
  auto bad = [](const std::string& m) { return Status::InvalidArgument("U-Net input: " + m); };
  auto shape = [](const torch::Tensor& t) {
    std::string s = "[";
    for (int64_t i = 0; i < t.dim(); ++i) s += (i ? "," : "") + std::to_string(t.size(i));
    return s + "]";
  };
  const torch::Device dev = device();
  auto same_device = [&](const torch::Tensor& t) { return t.device().type() == dev.type(); };
  if (!in.z.defined() || in.z.dim() != 5) return bad("z must be [B,C,T,H,W]");
  const int64_t b = in.z.size(0), t = in.z.size(2), h = in.z.size(3), w = in.z.size(4);
  if (b < 1 || t < 1 || h < 1 || w < 1) return bad("z " + shape(in.z) + " is empty");
  if (in.z.size(1) != c.channels) {
    return bad("z has " + std::to_string(in.z.size(1)) + " channels, expected " +
               std::to_string(c.channels));
  }
  const int64_t d = c.divisor();
  if (h % d != 0 || w % d != 0) {
    return bad("height and width " + std::to_string(h) + "x" + std::to_string(w) +
               " must be multiples of " + std::to_string(d));
  }
  if (!in.z.is_floating_point()) return bad("z must be floating point");
  if (!same_device(in.z)) return bad("z is on " + in.z.device().str() + ", net on " + dev.str());
  auto check_vec = [&](const torch::Tensor& v, const char* name, bool boolean) -> Status {
    if (!v.defined()) return bad(std::string(name) + " is missing");
    if (v.dim() != 1 || v.size(0) != b) {
      return bad(std::string(name) + " must be [" + std::to_string(b) + "], got " + shape(v));
    }
    if (boolean && v.scalar_type() != torch::kBool) return bad(std::string(name) + " must be bool");
    if (!boolean && !v.is_floating_point()) {
      return bad(std::string(name) + " must be floating point");
    }
    if (!same_device(v)) return bad(std::string(name) + " is on the wrong device");
    return Status::OK();
  };
  VF_RETURN_NOT_OK(check_vec(in.logsnr, "logsnr", false));
  if (in.text_keep.defined()) VF_RETURN_NOT_OK(check_vec(in.text_keep, "text_keep", true));
  if (in.image_mask.defined()) VF_RETURN_NOT_OK(check_vec(in.image_mask, "image_mask", true));
  if (!in.text_pooled.defined() || in.text_pooled.dim() != 2 || in.text_pooled.size(0) != b ||
      in.text_pooled.size(1) != c.text_dim) {
    return bad("text_pooled must be [" + std::to_string(b) + "," + std::to_string(c.text_dim) +
               "]" + (in.text_pooled.defined() ? ", got " + shape(in.text_pooled) : ""));
  }
  if (!same_device(in.text_pooled)) return bad("text_pooled is on the wrong device");
  if (c.cross_attention || in.text_tokens.defined()) {
    if (!in.text_tokens.defined() || in.text_tokens.dim() != 3 || in.text_tokens.size(0) != b ||
        in.text_tokens.size(2) != c.text_dim || in.text_tokens.size(1) < 1) {
      return bad("text_tokens must be [" + std::to_string(b) + ",L," + std::to_string(c.text_dim) +
                 "]" + (in.text_tokens.defined() ? ", got " + shape(in.text_tokens) : ""));
    }
    if (!in.text_mask.defined() || in.text_mask.dim() != 2 || in.text_mask.size(0) != b ||
        in.text_mask.size(1) != in.text_tokens.size(1) ||
        in.text_mask.scalar_type() != torch::kBool) {
      return bad("text_mask must be bool [B,L] matching text_tokens");
    }
    if (!same_device(in.text_tokens) || !same_device(in.text_mask)) {
      return bad("text tensors are on the wrong device");
    }
  }
  if (c.super_resolution) {
    if (!in.cond_video.defined() || in.cond_video.sizes() != in.z.sizes()) {
      return bad("cond_video must have the shape of z " + shape(in.z) +
                 (in.cond_video.defined() ? ", got " + shape(in.cond_video) : " (missing)"));
    }
    if (!same_device(in.cond_video)) return bad("cond_video is on the wrong device");
    VF_RETURN_NOT_OK(check_vec(in.aug_logsnr, "aug_logsnr", false));
    if (c.cond_prior_blend > 1 && t % c.cond_prior_blend != 0) {
      return bad(std::to_string(t) + " frames are not a multiple of cond_prior_blend " +
                 std::to_string(c.cond_prior_blend));
    }
  } else if (in.cond_video.defined()) {
    return bad("cond_video given to a base (non-SR) network");
  }
  return Status::OK();
}

torch::Tensor VideoUNetImpl::Embed(const UNetInputs& in, const torch::Tensor& keep) {
  auto e =
      time2_->forward(ops::silu(time1_->forward(Sinusoidal(in.logsnr, config_.dim).to(dtype()))));
  if (config_.super_resolution) {
    e = ops::add(e, aug2_->forward(ops::silu(
                        aug1_->forward(Sinusoidal(in.aug_logsnr, config_.dim).to(dtype())))));
  }
  auto pooled = in.text_pooled.to(dtype());
  if (keep.defined()) {
    auto k = keep.unsqueeze(1);
    pooled = pooled * k + null_pooled_.unsqueeze(0) * (1.0 - k);
  }
  e = ops::add(e, text_pool_->forward(pooled));
  if (!frame_embed_ || in.z.size(2) < 2) return ops::silu(e);
  // Frame f's code: Sinusoidal of f/16 (angular rates 1 to 1/1000 per frame), through
  // frame_embed, scaled per channel by 1 + frame_text(pooled text): the product lets the prompt
  // choose what a frame's place means (which way to move) at first order, where a frame term only
  // added to the text's reaches it through the SiLU's curvature. Neither form changed the tiny
  // base's motion check when grown from its step 19000 for 1500 and 1167 steps (README).
  const int64_t b = in.z.size(0), t = in.z.size(2);
  auto idx = torch::arange(t, torch::TensorOptions().dtype(torch::kFloat32).device(e.device()));
  auto fe = frame_embed_->forward(Sinusoidal(idx / 16.0, config_.dim).to(dtype()));   // [T,E]
  auto mod = ops::add(frame_text_->forward(pooled), torch::ones({1}, fe.options()));  // [B,E]
  auto per = ops::mul(fe.unsqueeze(0), mod.unsqueeze(1));                             // [B,T,E]
  if (in.image_mask.defined()) {  // image samples: frames are unrelated images, no frame term
    per = per * (1.0 - in.image_mask.to(e.device(), dtype())).view({b, 1, 1});
  }
  return ops::silu(ops::add(e.unsqueeze(1), per).reshape({b * t, -1}));
}

torch::Tensor VideoUNetImpl::forward(const UNetInputs& in) {
  const auto& c = config_;
  TORCH_CHECK(in.z.defined() && in.z.dim() == 5 && in.z.size(1) == c.channels,
              "VideoUNet: z must be [B,", c.channels, ",T,H,W]");
  const int64_t b = in.z.size(0), t = in.z.size(2), h = in.z.size(3), w = in.z.size(4);
  TORCH_CHECK(h % c.divisor() == 0 && w % c.divisor() == 0,
              "VideoUNet: H and W must be multiples of ", c.divisor());
  if (c.super_resolution) {
    TORCH_CHECK(in.cond_video.defined() && in.cond_video.sizes() == in.z.sizes(),
                "VideoUNet: cond_video must match z");
    TORCH_CHECK(in.aug_logsnr.defined(), "VideoUNet: aug_logsnr missing");
  }
  detail::SampleCtx ctx;
  ctx.b = b;
  ctx.t = t;

  torch::Tensor keep;  // [B] float, 1 = use the prompt
  const auto dt = dtype();
  if (in.text_keep.defined()) keep = in.text_keep.to(dt);
  ctx.emb = Embed(in, keep);
  ctx.emb_per_frame = frame_embed_ && t >= 2;  // as Embed decides

  if (c.cross_attention) {
    auto tokens = in.text_tokens.to(dt);
    auto mask = in.text_mask;
    if (keep.defined()) {
      // Dropped rows see the learned null token at position 0 and nothing else.
      auto k = keep.view({b, 1, 1});
      tokens = tokens * k + null_text_.view({1, 1, -1}) * (1.0 - k);
      auto kb = in.text_keep.view({b, 1});
      auto pos0 = torch::zeros({b, mask.size(1)}, torch::kBool);
      pos0.narrow(1, 0, 1).fill_(true);
      pos0 = pos0.to(mask.device());
      mask = (mask & kb) | (pos0 & ~kb);
    }
    ctx.text = tokens;
    ctx.text_mask = mask;
  }

  if (in.image_mask.defined()) {
    const auto& im = in.image_mask;
    bool all = false, any = true;
    if (!im.device().is_meta()) {
      all = im.all().item<bool>();
      any = im.any().item<bool>();
    }
    ctx.temporal_off = all;
    if (any && !all) {
      ctx.temporal_keep = (1.0 - im.to(dt)).view({b, 1}).expand({b, t}).reshape({b * t, 1, 1, 1});
    }
  }

  auto x = in.z.to(dt);
  if (c.super_resolution) x = torch::cat({x, in.cond_video.to(dt)}, 1);
  // [B,C,T,H,W] -> [B*T, C*p*p, H/p, W/p] in channels-last memory (B,T,h,w,C*p*p); channel order
  // c*p*p + i*p + j as torch's pixel_unshuffle.
  const int64_t p = c.patch, hp = h / p, wp = w / p, cin = x.size(1);
  x = x.view({b, cin, t, hp, p, wp, p})
          .permute({0, 2, 3, 5, 1, 4, 6})
          .contiguous()
          .view({b * t, hp, wp, cin * p * p})
          .permute({0, 3, 1, 2});

  auto hcur = conv_in_->forward(x);
  std::vector<torch::Tensor> skips;
  size_t ds = 0;
  for (size_t i = 0; i < down_.size(); ++i) {
    hcur = down_[i]->forward(hcur, ctx);
    skips.push_back(hcur);
    const bool level_end = i + 1 == down_.size() || down_level_[i + 1] != down_level_[i];
    if (level_end && ds < downsample_.size()) hcur = downsample_[ds++]->forward(hcur);
  }
  for (auto& m : mid_) hcur = m->forward(hcur, ctx);
  size_t us = 0;
  for (size_t i = 0; i < up_.size(); ++i) {
    hcur = up_[i]->forward(ops::cat({hcur, skips.back()}, 1), ctx);
    skips.pop_back();
    const bool level_end = i + 1 == up_.size() || up_level_[i + 1] != up_level_[i];
    if (level_end && us < upsample_.size()) {
      hcur = ops::upsample_nearest2x(upsample_[us++]->forward(hcur));
    }
  }
  hcur = conv_out_->forward(ops::silu(norm_out_->forward(hcur)));  // [BT,C*p*p,h,w]
  auto out = hcur.permute({0, 2, 3, 1})
                 .reshape({b, t, hp, wp, c.channels, p, p})
                 .permute({0, 4, 1, 2, 5, 3, 6})
                 .reshape({b, c.channels, t, h, w})
                 .contiguous();
  if (c.cond_skip) {
    const auto sigma =
        torch::sqrt(torch::sigmoid(-in.logsnr.to(torch::kFloat32))).view({b, 1, 1, 1, 1});
    out = out - (sigma * in.cond_video.to(torch::kFloat32)).to(out.scalar_type());
  }
  if (c.cond_prior_std > 0) {
    // v̂ = (α·z − x̂)/σ with x̂ as in UNetConfig, in a form without cancellation at either end of
    // [-20, 20]: with E = α²·s² + σ², v̂ = (σ·α·(1 − s²)·z − σ·c/α_aug)/E − (s/√E)·net.
    auto col = [b](const torch::Tensor& t) { return t.to(torch::kFloat32).view({b, 1, 1, 1, 1}); };
    const auto l = col(in.logsnr), la = col(in.aug_logsnr);
    const auto a2 = torch::sigmoid(l), s2 = torch::sigmoid(-l);
    const auto alpha = a2.sqrt(), sigma = s2.sqrt();
    const auto prior = torch::exp(-la) + c.cond_prior_std * c.cond_prior_std;  // s²
    const auto e = a2 * prior + s2;
    auto cv = in.cond_video.to(torch::kFloat32);
    if (c.cond_prior_blend > 1) {
      const int f = static_cast<int>(c.cond_prior_blend);
      TORCH_CHECK(cv.size(2) % f == 0, "VideoUNet: frames not a multiple of cond_prior_blend");
      auto blended = UpsampleFrames(SubsampleFrames(cv, f), f, TemporalUpsample::kBlend);
      if (in.image_mask.defined()) {
        blended = torch::where(in.image_mask.view({b, 1, 1, 1, 1}), cv, blended);
      }
      cv = blended;
    }
    const auto cond = cv / torch::sigmoid(la).sqrt();
    const auto lin = (sigma * alpha * (1.0 - prior) * in.z.to(torch::kFloat32) - sigma * cond) / e;
    out = (lin - (prior.sqrt() / e.sqrt()) * out.to(torch::kFloat32)).to(out.scalar_type());
  }
  return out;
}

Result<VideoUNet> MakeVideoUNet(const UNetConfig& config, torch::Device device) {
  VF_RETURN_NOT_OK(config.Validate());
  try {
    return VideoUNet(config, device);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("building the U-Net failed: ") + e.what());
  }
}

void CopyOutputSkip(const UNetConfig& from, UNetConfig* to) {
  to->cond_skip = from.cond_skip;
  to->cond_prior_std = from.cond_prior_std;
  to->cond_prior_blend = from.cond_prior_blend;
}

bool SameOutputSkip(const UNetConfig& a, const UNetConfig& b) {
  return a.cond_skip == b.cond_skip && a.cond_prior_std == b.cond_prior_std &&
         a.cond_prior_blend == b.cond_prior_blend;
}

void CopyMotionLayers(const UNetConfig& from, UNetConfig* to) {
  to->frame_embedding = from.frame_embedding;
  to->spacetime_attention = from.spacetime_attention;
}

bool SameMotionLayers(const UNetConfig& a, const UNetConfig& b) {
  return a.frame_embedding == b.frame_embedding && a.spacetime_attention == b.spacetime_attention;
}

int64_t CountParameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters(/*recurse=*/true)) n += p.numel();
  return n;
}

// ---------------------------------------------------------------------------------------------
// Deterministic initialisation

namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void InitWeights(torch::nn::Module& m, uint64_t seed) {
  torch::NoGradGuard no_grad;
  for (auto& item : m.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    if (p.device().is_meta()) continue;
    const bool is_bias = EndsWith(name, "bias");  // includes rel_bias
    const bool is_scale = p.dim() == 1 && EndsWith(name, "weight");
    // The frame embedding starts at zero, so a network grown by it (vidfarm train --init-from)
    // computes what it did before.
    if (is_bias || name.rfind("frame_embed.", 0) == 0) {
      p.zero_();
      continue;
    }
    if (is_scale) {
      p.fill_(1.0);
      continue;
    }
    double bound;
    if (p.dim() >= 2) {
      const double fan_in = static_cast<double>(p.numel() / std::max<int64_t>(p.size(0), 1));
      bound = 1.0 / std::sqrt(std::max(fan_in, 1.0));
    } else {
      bound = std::sqrt(3.0);  // unit variance
    }
    uint64_t state = seed ^ 0x5851F42D4C957F2Dull;
    state = SplitMix64(&state) ^ Fnv1a64(name);
    std::vector<float> vals(static_cast<size_t>(p.numel()));
    for (auto& v : vals) {
      const double u = static_cast<double>(SplitMix64(&state) >> 11) * (1.0 / 9007199254740992.0);
      v = static_cast<float>((2.0 * u - 1.0) * bound);
    }
    auto cpu = torch::from_blob(vals.data(), p.sizes(), torch::kFloat32);
    p.copy_(cpu);
  }
}

}  // namespace vidfarm::models
