#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "vidfarm/stage_models/preset.h"
#include "vidfarm/stage_models/text_encoder.h"
#include "vidfarm/stage_models/unet.h"

namespace vidfarm::models {
namespace {

StageSpec TinyStage(int i) { return GetPreset("tiny")->stages.at(i); }

UNetInputs MakeInputs(const UNetConfig& c, int64_t b, int64_t t, int64_t h, int64_t w,
                      uint64_t seed = 0) {
  torch::manual_seed(seed);
  UNetInputs in;
  in.z = torch::randn({b, c.channels, t, h, w});
  in.logsnr = torch::linspace(-3, 3, b);
  auto enc = MakeBuiltinTextEncoder(c.text_dim, 16);
  std::vector<std::string> prompts;
  for (int64_t i = 0; i < b; ++i) prompts.push_back(i % 2 ? "a red fox jumps" : "waves at dusk");
  auto e = enc->Encode(prompts, torch::kCPU);
  in.text_tokens = e->tokens;
  in.text_mask = e->mask;
  in.text_pooled = e->pooled;
  if (c.super_resolution) {
    in.cond_video = torch::randn_like(in.z);
    in.aug_logsnr = torch::full({b}, 1.6);
  }
  return in;
}

VideoUNet MakeNet(const UNetConfig& c, uint64_t seed = 7) {
  auto net = MakeVideoUNet(c);
  EXPECT_TRUE(net.ok()) << net.status().ToString();
  InitWeights(**net, seed);
  return *net;
}

TEST(UNet, EveryTinyStageKeepsTheInputShapeAtBatch2) {
  torch::NoGradGuard ng;
  const auto preset = *GetPreset("tiny");
  for (const auto& s : preset.stages) {
    auto net = MakeNet(s.net);
    auto in = MakeInputs(s.net, 2, s.frames, s.height, s.width);
    ASSERT_TRUE(net->CheckInputs(in).ok()) << s.name << ": " << net->CheckInputs(in).ToString();
    auto y = net->forward(in);
    EXPECT_EQ(y.sizes(), in.z.sizes()) << s.name;
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << s.name;
  }
}

TEST(UNet, CheckInputsRejectsBadShapes) {
  const auto s = TinyStage(2);  // SSR
  auto net = MakeNet(s.net);
  auto in = MakeInputs(s.net, 2, 4, s.height, s.width);
  EXPECT_TRUE(net->CheckInputs(in).ok());
  auto bad = in;
  bad.cond_video = torch::randn({2, 3, 4, s.height / 2, s.width / 2});  // not upsampled
  EXPECT_TRUE(net->CheckInputs(bad).IsInvalidArgument());
  bad = in;
  bad.cond_video = torch::Tensor();
  EXPECT_TRUE(net->CheckInputs(bad).IsInvalidArgument());
  bad = in;
  bad.aug_logsnr = torch::Tensor();
  EXPECT_TRUE(net->CheckInputs(bad).IsInvalidArgument());
  bad = in;
  bad.z = torch::randn({2, 3, 4, s.height + 2, s.width});  // not a multiple of the divisor
  bad.cond_video = torch::randn_like(bad.z);
  EXPECT_TRUE(net->CheckInputs(bad).IsInvalidArgument());
  bad = in;
  bad.text_pooled = torch::randn({2, s.net.text_dim + 1});
  EXPECT_TRUE(net->CheckInputs(bad).IsInvalidArgument());
  bad = in;
  bad.image_mask = torch::ones({2});  // not bool
  EXPECT_TRUE(net->CheckInputs(bad).IsInvalidArgument());
  // A base net takes no conditioning video.
  const auto base = TinyStage(0);
  auto bnet = MakeNet(base.net);
  auto bin = MakeInputs(base.net, 1, 4, base.height, base.width);
  EXPECT_TRUE(bnet->CheckInputs(bin).ok());
  bin.cond_video = torch::randn_like(bin.z);
  EXPECT_TRUE(bnet->CheckInputs(bin).IsInvalidArgument());
}

// Sample 0 is an image batch (frames independent), sample 1 a video.
void CheckImageMask(const UNetConfig& c, int64_t h, int64_t w,
                    const std::function<void(VideoUNet&)>& tweak = {}) {
  torch::NoGradGuard ng;
  auto net = MakeNet(c);
  if (tweak) tweak(net);
  const int64_t t = 6, j = 2;  // a multiple of the TSR stages' cond_prior_blend
  auto in = MakeInputs(c, 2, t, h, w, 3);
  in.image_mask = torch::tensor({true, false});
  auto y0 = net->forward(in);
  auto in2 = in;
  in2.z = in.z.clone();
  in2.z.select(2, j).add_(torch::randn_like(in2.z.select(2, j)));
  auto y1 = net->forward(in2);
  for (int64_t f = 0; f < t; ++f) {
    const double d_img = (y1[0].select(1, f) - y0[0].select(1, f)).abs().max().item<double>();
    const double d_vid = (y1[1].select(1, f) - y0[1].select(1, f)).abs().max().item<double>();
    if (f == j) {
      EXPECT_GT(d_img, 1e-3) << "frame " << f;
    } else {
      EXPECT_LT(d_img, 1e-5) << "image sample, frame " << f << " saw frame " << j;
      EXPECT_GT(d_vid, 1e-4) << "video sample, frame " << f << " ignored frame " << j;
    }
  }
  // All-image batches skip the temporal layers entirely: same as masking.
  auto all = in;
  all.image_mask = torch::tensor({true, true});
  auto ya = net->forward(all);
  EXPECT_TRUE(torch::allclose(ya[0], y0[0], 1e-5, 1e-5));
}

TEST(UNet, ImageMaskBypassesTemporalAttention) {
  const auto s = TinyStage(0);
  ASSERT_EQ(s.net.temporal, TemporalMixing::kAttention);
  CheckImageMask(s.net, s.height, s.width);
}

TEST(UNet, ImageMaskBypassesTemporalConv) {
  const auto s = TinyStage(1);
  ASSERT_EQ(s.net.temporal, TemporalMixing::kConv);
  CheckImageMask(s.net, s.height, s.width);
}

// Space-time attention mixes frames inside the attention layer itself, yet an image sample's
// frames stay independent (masked per sample, with the space-time bias in use).
TEST(UNet, SpaceTimeAttentionKeepsImageSamplesPerFrame) {
  auto s = TinyStage(0);
  s.net.spacetime_attention = true;
  s.net.temporal = TemporalMixing::kNone;  // only the attention can carry one frame to another
  int64_t biases = 0;
  CheckImageMask(s.net, s.height, s.width, [&](VideoUNet& net) {
    for (auto& p : net->named_parameters()) {
      if (p.key().find("attn.rel_bias") == std::string::npos) continue;
      p.value().normal_(0, 1.0);
      ++biases;
    }
  });
  EXPECT_GT(biases, 0);
  // Without it, the same network without temporal layers keeps every frame to itself.
  torch::NoGradGuard ng;
  s.net.spacetime_attention = false;
  auto net = MakeNet(s.net);
  auto in = MakeInputs(s.net, 1, 4, s.height, s.width, 3);
  auto y0 = net->forward(in);
  in.z.select(2, 1).add_(1.0);
  auto y1 = net->forward(in);
  EXPECT_LT((y1.select(2, 0) - y0.select(2, 0)).abs().max().item<double>(), 1e-5);
}

// The bias table's entry for each pair of tokens is the one of their clamped offset.
TEST(UNet, SpaceTimeOffsetIndexDecodesToTheOffset) {
  const int64_t t = 3, h = 2, w = 12, n = t * h * w;
  const int64_t reach = detail::kSpaceTimeReach, side = 2 * reach + 1;
  const torch::Tensor idx = detail::SpaceTimeOffsetIndex(t, h, w);
  ASSERT_EQ(idx.numel(), n * n);
  auto clamp = [&](int64_t d) { return std::clamp(d, -reach, reach); };
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const int64_t k = idx[i * n + j].item<int64_t>();
      const int64_t dt = k / (side * side) - reach, dy = k / side % side - reach,
                    dx = k % side - reach;
      ASSERT_EQ(dt, j / (h * w) - i / (h * w)) << i << "," << j;
      ASSERT_EQ(dy, j / w % h - i / w % h) << i << "," << j;
      ASSERT_EQ(dx, clamp(j % w - i % w)) << i << "," << j;  // 11 columns apart clamp to 8
    }
  }
}

TEST(UNet, TextKeepFalseUsesTheNullText) {
  torch::NoGradGuard ng;
  const auto s = TinyStage(0);
  auto net = MakeNet(s.net);
  auto enc = MakeBuiltinTextEncoder(s.net.text_dim, 16);
  auto in = MakeInputs(s.net, 2, 4, s.height, s.width, 5);
  auto a = enc->Encode({"a cat on a sofa", "a cat on a sofa"}, torch::kCPU);
  auto b = enc->Encode({"fireworks over the harbour at night", "snow"}, torch::kCPU);
  auto run = [&](const TextEmbedding& e, bool keep) {
    auto x = in;
    x.text_tokens = e.tokens;
    x.text_mask = e.mask;
    x.text_pooled = e.pooled;
    x.text_keep = torch::full({2}, keep, torch::kBool);
    return net->forward(x);
  };
  EXPECT_TRUE(torch::equal(run(*a, false), run(*b, false)));
  EXPECT_GT((run(*a, true) - run(*b, true)).abs().max().item<double>(), 1e-4);
  // Mixed keep: only the kept row depends on the prompt.
  auto x = in;
  x.text_keep = torch::tensor({true, false});
  x.text_tokens = a->tokens;
  x.text_mask = a->mask;
  x.text_pooled = a->pooled;
  auto ya = net->forward(x);
  x.text_tokens = b->tokens;
  x.text_mask = b->mask;
  x.text_pooled = b->pooled;
  auto yb = net->forward(x);
  EXPECT_GT((ya[0] - yb[0]).abs().max().item<double>(), 1e-4);
  EXPECT_TRUE(torch::allclose(ya[1], yb[1], 1e-6, 1e-6));
}

TEST(UNet, InitWeightsIsDeterministic) {
  const auto c = TinyStage(1).net;
  auto a = MakeNet(c, 42), b = MakeNet(c, 42), d = MakeNet(c, 43);
  auto pa = a->named_parameters(), pb = b->named_parameters(), pd = d->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  bool any_diff = false;
  for (const auto& item : pa) {
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
    if (!torch::equal(item.value(), pd[item.key()])) any_diff = true;
  }
  EXPECT_TRUE(any_diff);
  EXPECT_EQ(CountParameters(*a), CountParameters(*d));
  // Conventions: norm scales 1, biases 0, conv weights within the fan-in bound.
  EXPECT_TRUE(torch::equal(pa["norm_out.weight"], torch::ones_like(pa["norm_out.weight"])));
  EXPECT_TRUE(torch::equal(pa["conv_in.bias"], torch::zeros_like(pa["conv_in.bias"])));
  const auto& w = pa["conv_in.weight"];
  const double bound = 1.0 / std::sqrt(static_cast<double>(w.numel() / w.size(0)));
  EXPECT_LE(w.abs().max().item<double>(), bound);
  EXPECT_GT(w.abs().max().item<double>(), 0.5 * bound);
}

TEST(UNet, FullyConvolutionalRunsOnCrops) {
  torch::NoGradGuard ng;
  const auto s = TinyStage(6);
  ASSERT_TRUE(s.net.fully_convolutional);
  auto net = MakeNet(s.net);
  for (auto [h, w] : {std::pair<int64_t, int64_t>{32, 32}, {s.crop_h, s.crop_w}, {48, 24}}) {
    auto in = MakeInputs(s.net, 1, 3, h, w);
    ASSERT_TRUE(net->CheckInputs(in).ok()) << h << "x" << w;
    EXPECT_EQ(net->forward(in).sizes(), in.z.sizes());
  }
}

TEST(UNet, FollowsModuleToForDtype) {
  torch::NoGradGuard ng;
  const auto s = TinyStage(1);
  auto net = MakeNet(s.net);
  auto in = MakeInputs(s.net, 1, 4, s.height, s.width);
  in.text_keep = torch::tensor({true});
  in.image_mask = torch::tensor({false});
  const auto y32 = net->forward(in);
  net->to(torch::kFloat64);
  EXPECT_EQ(net->dtype(), torch::kFloat64);
  EXPECT_TRUE(net->device().is_cpu());
  ASSERT_TRUE(net->CheckInputs(in).ok());
  const auto y64 = net->forward(in);  // f32 inputs are cast to the weights' dtype
  EXPECT_EQ(y64.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::allclose(y64.to(torch::kFloat32), y32, 1e-3, 1e-3));
}

TEST(UNet, MetaDeviceAllocatesNothing) {
  const auto paper = GetPreset("paper")->stages.at(0);
  auto net = MakeVideoUNet(paper.net, torch::kMeta);
  ASSERT_TRUE(net.ok());
  for (const auto& p : (*net)->parameters()) ASSERT_TRUE(p.device().is_meta());
  EXPECT_GT(CountParameters(**net), int64_t{1000} * 1000 * 1000);
}

// With the SR output skip, the network's v is its own output minus σ(λ)·cond: a network whose
// last convolution is zero predicts x̂ = α·z + σ²·cond, which at pure noise is the conditioning.
TEST(UNet, CondSkipOffsetsTheOutputBySigmaTimesCond) {
  torch::NoGradGuard ng;
  auto c = TinyStage(2).net;
  ASSERT_TRUE(c.super_resolution);
  c.cond_prior_std = 0;  // the presets' SR default since cond_prior_std; older packages have it
  c.cond_skip = true;
  auto with = MakeNet(c);
  c.cond_skip = false;
  auto without = MakeNet(c);
  const auto in = MakeInputs(c, 2, 4, TinyStage(2).height, TinyStage(2).width, 3);
  const auto sigma = torch::sqrt(torch::sigmoid(-in.logsnr)).view({2, 1, 1, 1, 1});
  const auto diff = without->forward(in) - with->forward(in);
  EXPECT_TRUE(torch::allclose(diff, sigma * in.cond_video, 1e-5, 1e-5));

  // Zero the output convolution: at λ = −20 the implied x̂ = α·z − σ·v is the conditioning.
  for (auto& p : with->named_parameters()) {
    if (p.key().rfind("conv_out.", 0) == 0) p.value().zero_();
  }
  auto x = in;
  x.logsnr = torch::full({2}, -20.0);
  const auto v = with->forward(x);
  const double a = std::sqrt(1.0 / (1.0 + std::exp(20.0))),
               s = std::sqrt(1.0 / (1.0 + std::exp(-20.0)));
  EXPECT_TRUE(torch::allclose(a * x.z - s * v, a * x.z + s * s * x.cond_video, 1e-5, 1e-5));
  EXPECT_LT((a * x.z - s * v - x.cond_video).abs().max().item<double>(), 1e-3);

  // Only SR networks can have it; the JSON carries it, and old JSON without it reads as off.
  UNetConfig base = TinyStage(0).net;
  base.cond_skip = true;
  EXPECT_TRUE(base.Validate().IsInvalidArgument());
  UNetConfig on = c;
  on.cond_skip = true;
  auto j = on.ToJson();
  EXPECT_EQ(j.at("cond_skip"), true);
  j.erase("cond_skip");
  EXPECT_FALSE(UNetConfig::FromJson(j)->cond_skip);
}

// With cond_prior_std, a network whose last convolution is zero denoises like the linear guess
// from its two noisy views: x̂ = (s²·z/α + e^−λ·c/α_a)/(s² + e^−λ), s² = std² + e^−λ_a. Checked in
// double precision from the formula, at both ends of the log-SNR range and in between.
TEST(UNet, CondPriorZeroNetworkIsTheLinearGuess) {
  torch::NoGradGuard ng;
  auto c = TinyStage(2).net;
  ASSERT_FALSE(c.cond_skip);
  ASSERT_EQ(c.cond_prior_std, 0.06);  // tiny ssr2: about bilinear upsampling's RMS error
  ASSERT_EQ(c.cond_prior_blend, 0);
  ASSERT_TRUE(c.Validate().ok());
  auto net = MakeNet(c);
  for (auto& p : net->named_parameters()) {
    if (p.key().rfind("conv_out.", 0) == 0) p.value().zero_();
  }
  auto in = MakeInputs(c, 2, 4, TinyStage(2).height, TinyStage(2).width, 3);
  for (double l : {-20.0, -4.0, 0.0, 3.0, 8.0, 20.0}) {
    for (double la : {2.9, 6.0}) {
      in.logsnr = torch::full({2}, l);
      in.aug_logsnr = torch::full({2}, la);
      const auto v = net->forward(in).to(torch::kFloat64);
      const double a = std::sqrt(1 / (1 + std::exp(-l))), sg = std::sqrt(1 / (1 + std::exp(l)));
      const double aa = std::sqrt(1 / (1 + std::exp(-la)));
      const double s2 = 0.06 * 0.06 + std::exp(-la), u = std::exp(-l);
      const auto z = in.z.to(torch::kFloat64), cond = in.cond_video.to(torch::kFloat64);
      const auto want_x = (s2 * z / a + u * cond / aa) / (s2 + u);
      const auto got_x = a * z - sg * v;
      EXPECT_LT((got_x - want_x).abs().max().item<double>(), 1e-3)
          << "logsnr " << l << " aug " << la;
      EXPECT_TRUE(torch::isfinite(v).all().item<bool>());
    }
  }
  // The config rejects it on a base network, with cond_skip, or out of [0, 1]; JSON round trip.
  auto bad = c;
  bad.cond_skip = true;
  EXPECT_TRUE(bad.Validate().IsInvalidArgument());
  bad = TinyStage(0).net;
  bad.cond_prior_std = 0.1;
  EXPECT_TRUE(bad.Validate().IsInvalidArgument());
  bad = c;
  bad.cond_prior_std = 2;
  EXPECT_TRUE(bad.Validate().IsInvalidArgument());
  EXPECT_EQ(UNetConfig::FromJson(c.ToJson())->cond_prior_std, 0.06);
  EXPECT_EQ(GetPreset("paper")->stages.at(2).net.cond_prior_std, 0.1);
  EXPECT_FALSE(TinyStage(0).net.ToJson().contains("cond_prior_std"));  // off: older JSON unchanged
}

// TSR stages blend the guess's conditioning between the original frames (every 2nd frame here):
// with a zero last convolution, x̂ at pure noise is that blend, not the conditioning as given;
// an image-masked sample keeps its frames as they are.
TEST(UNet, CondPriorBlendGuessesNewFramesBetweenOriginals) {
  torch::NoGradGuard ng;
  auto c = TinyStage(1).net;
  ASSERT_EQ(c.cond_prior_blend, 2);  // tsr1: ×2 in time
  ASSERT_EQ(c.cond_prior_std, 0.02);
  auto net = MakeNet(c);
  for (auto& p : net->named_parameters()) {
    if (p.key().rfind("conv_out.", 0) == 0) p.value().zero_();
  }
  auto in = MakeInputs(c, 2, 6, TinyStage(1).height, TinyStage(1).width, 5);
  in.logsnr = torch::full({2}, -20.0);
  in.aug_logsnr = torch::full({2}, 20.0);  // conditioning noise-free: x̂ = c / α_a ≈ c
  in.image_mask = torch::tensor({false, true});
  const auto v = net->forward(in).to(torch::kFloat64);
  const double a = std::sqrt(1 / (1 + std::exp(20.0))), sg = std::sqrt(1 / (1 + std::exp(-20.0)));
  const auto got_x = a * in.z.to(torch::kFloat64) - sg * v;
  const auto cond = in.cond_video.to(torch::kFloat64);
  auto frame = [&](int64_t b, int64_t t) { return cond[b].select(1, t); };
  for (int64_t t = 0; t < 6; ++t) {
    // Frames 0, 2, 4 are originals; 1 and 3 the mean of their neighbours; 5 holds frame 4.
    const auto want =
        t % 2 == 0 ? frame(0, t) : (t == 5 ? frame(0, 4) : (frame(0, t - 1) + frame(0, t + 1)) / 2);
    EXPECT_LT((got_x[0].select(1, t) - want).abs().max().item<double>(), 1e-3) << "frame " << t;
    EXPECT_LT((got_x[1].select(1, t) - frame(1, t)).abs().max().item<double>(), 1e-3)
        << "image-masked frame " << t;
  }
  // A frame count that is not a multiple of the blend factor is refused before the forward.
  auto odd = MakeInputs(c, 1, 5, TinyStage(1).height, TinyStage(1).width);
  EXPECT_TRUE(net->CheckInputs(odd).IsInvalidArgument());
  // The config needs cond_prior_std for it; JSON round trip; SSR and base JSON unchanged.
  auto bad = c;
  bad.cond_prior_std = 0;
  EXPECT_TRUE(bad.Validate().IsInvalidArgument());
  EXPECT_EQ(UNetConfig::FromJson(c.ToJson())->cond_prior_blend, 2);
  EXPECT_FALSE(TinyStage(2).net.ToJson().contains("cond_prior_blend"));
}

// A small base-like network with temporal attention, 4 frames.
UNetConfig SmallBase(bool frame_embedding) {
  UNetConfig c = TinyStage(0).net;
  c.dim = 16;
  c.groups = 4;
  c.frame_embedding = frame_embedding;
  return c;
}

torch::Tensor ReverseFrames(const torch::Tensor& v) { return v.flip({2}); }

// Why the base has a frame embedding: without it, and with the temporal attention's relative bias
// symmetric (it starts at zero), reversing the input frames reverses the output, whatever the
// prompt says, so "moving left" and "moving right" are the same to the network.
TEST(UNet, WithoutFrameEmbeddingASymmetricNetworkIsTimeReversalEquivariant) {
  torch::NoGradGuard ng;
  const UNetConfig c = SmallBase(false);
  auto net = MakeNet(c);
  auto in = MakeInputs(c, 2, 4, 8, 8);
  auto rev = in;
  rev.z = ReverseFrames(in.z);
  const auto y = net->forward(in), yr = net->forward(rev);
  EXPECT_LT((ReverseFrames(y) - yr).abs().max().item<double>(), 1e-4);
}

TEST(UNet, FrameEmbeddingBreaksTheReversalSymmetryAndStartsAsANoOp) {
  torch::NoGradGuard ng;
  auto with = MakeNet(SmallBase(true)), without = MakeNet(SmallBase(false));
  auto in = MakeInputs(SmallBase(true), 2, 4, 8, 8);
  // At init the frame embedding is zero: the grown network computes what the other one does (to
  // float rounding: on some CPUs the two networks' kernels sum in another order).
  EXPECT_LT((with->forward(in) - without->forward(in)).abs().max().item<double>(), 1e-5);
  // Once it has learned something, the frames' order matters.
  for (auto& p : with->named_parameters()) {
    if (p.key().rfind("frame_embed.", 0) == 0) p.value().normal_(0, 0.5);
  }
  auto rev = in;
  rev.z = ReverseFrames(in.z);
  const auto y = with->forward(in), yr = with->forward(rev);
  EXPECT_GT((ReverseFrames(y) - yr).abs().max().item<double>(), 1e-2);
  // Image samples (frames unrelated) get no frame term: their frames are the same function.
  in.image_mask = torch::tensor({true, false});
  rev.image_mask = in.image_mask;
  const auto yi = with->forward(in), yri = with->forward(rev);
  auto sample = [](const torch::Tensor& v, int64_t i) { return v.narrow(0, i, 1); };
  EXPECT_LT((ReverseFrames(sample(yi, 0)) - sample(yri, 0)).abs().max().item<double>(), 1e-4);
  EXPECT_GT((ReverseFrames(sample(yi, 1)) - sample(yri, 1)).abs().max().item<double>(), 1e-2);
}

TEST(UNet, ConfigJsonRoundTripAndValidation) {
  const auto preset = *GetPreset("paper");
  for (const auto& s : preset.stages) {
    auto c = UNetConfig::FromJson(s.net.ToJson());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_TRUE(*c == s.net);
  }
  UNetConfig c;
  c.groups = 7;
  EXPECT_TRUE(c.Validate().IsInvalidArgument());
  c = UNetConfig();
  c.fully_convolutional = true;  // cross-attention still on
  EXPECT_TRUE(c.Validate().IsInvalidArgument());
  EXPECT_TRUE(MakeVideoUNet(c).status().IsInvalidArgument());
  EXPECT_TRUE(UNetConfig::FromJson(nlohmann::json{{"dim", "x"}}).status().IsInvalidArgument());
  // The frame embedding is written only when on, so older packages read back without it.
  const UNetConfig base = TinyStage(0).net;
  EXPECT_TRUE(base.frame_embedding);
  EXPECT_EQ(base.ToJson().at("frame_embedding"), true);
  auto older = base.ToJson();
  older.erase("frame_embedding");
  auto read = UNetConfig::FromJson(older);
  ASSERT_TRUE(read.ok());
  EXPECT_FALSE(read->frame_embedding);
  EXPECT_FALSE(read->ToJson().contains("frame_embedding"));
  EXPECT_FALSE(TinyStage(1).net.frame_embedding);  // SR stages read motion off their input
  // Space-time attention likewise: absent means off.
  EXPECT_FALSE(base.ToJson().contains("spacetime_attention"));
  UNetConfig st = base;
  st.spacetime_attention = true;
  EXPECT_EQ(st.ToJson().at("spacetime_attention"), true);
  EXPECT_TRUE(UNetConfig::FromJson(st.ToJson())->spacetime_attention);
}

}  // namespace
}  // namespace vidfarm::models
