#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "vidfarm/stage_models/diffusion.h"
#include "vidfarm/stage_models/noise.h"
#include "vidfarm/stage_models/sampler.h"

namespace vidfarm::models {
namespace {

const std::vector<int64_t> kShape{2, 3, 2, 4, 4};
const std::vector<int64_t> kIdx{4, 1};

// A nonlinear, step-dependent stand-in for a guided network, so that any change in z or the step
// passed to it shows up in the output.
torch::Tensor ToyDenoise(const torch::Tensor& z, double logsnr, int step) {
  return torch::tanh(z * (0.5 + 0.01 * logsnr)) * 0.9 + 0.01 * step;
}

TEST(Sampler, ParseAndName) {
  EXPECT_EQ(*ParseSamplerKind("ancestral"), SamplerKind::kAncestral);
  EXPECT_EQ(*ParseSamplerKind("ddim"), SamplerKind::kDdim);
  EXPECT_TRUE(ParseSamplerKind("euler").status().IsInvalidArgument());
  EXPECT_STREQ(SamplerKindName(SamplerKind::kDdim), "ddim");
  EXPECT_STREQ(SamplerKindName(SamplerKind::kAncestral), "ancestral");
  SamplerOptions o;
  EXPECT_EQ(o.kind, SamplerKind::kAncestral);
  EXPECT_EQ(o.steps, 32);
  EXPECT_DOUBLE_EQ(o.gamma, 0.3);
}

TEST(Sampler, TimeGrid) {
  const auto t = TimeGrid(4);
  ASSERT_EQ(t.size(), 5u);
  const double expect[] = {1.0, 0.75, 0.5, 0.25, 0.0};
  for (int i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(t[i], expect[i]);
  // Power 2: (1 − i/4)², more points near t = 0.
  const auto q = TimeGrid(4, 2.0);
  ASSERT_EQ(q.size(), 5u);
  const double expect_q[] = {1.0, 0.5625, 0.25, 0.0625, 0.0};
  for (int i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(q[i], expect_q[i]);
}

TEST(Sampler, TimePowerMovesTheNoiseLevelsTheNetworkSees) {
  SamplerOptions o;
  o.kind = SamplerKind::kDdim;
  o.steps = 4;
  o.time_power = 2.0;
  std::vector<double> seen;
  auto fn = [&](const torch::Tensor& z, double logsnr, int step) {
    seen.push_back(logsnr);
    return ToyDenoise(z, logsnr, step);
  };
  ASSERT_TRUE(Sample(fn, o, kShape, 1, 0, kIdx, torch::kCPU).ok());
  const auto t = TimeGrid(4, 2.0);
  ASSERT_EQ(seen.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(seen[i], o.schedule.LogSnr(t[i]));
  o.time_power = 0.5;
  EXPECT_TRUE(Sample(fn, o, kShape, 1, 0, kIdx, torch::kCPU).status().IsInvalidArgument());
}

TEST(Sampler, CallsDenoiseOnTheGridAndStartsFromKeyedNoise) {
  SamplerOptions o;
  o.kind = SamplerKind::kDdim;
  o.steps = 5;
  std::vector<double> seen_logsnr;
  std::vector<int> seen_step;
  const auto z1 = KeyedNormalBatch(9, 2, -1, kIdx, {3, 2, 4, 4});
  auto fn = [&](const torch::Tensor& z, double logsnr, int step) {
    if (step == 0) {
      EXPECT_TRUE(torch::equal(z, z1));
    }
    seen_logsnr.push_back(logsnr);
    seen_step.push_back(step);
    return ToyDenoise(z, logsnr, step);
  };
  int last_done = -1;
  SamplerHooks hooks;
  hooks.on_step = [&](int done, int total) {
    EXPECT_EQ(done, last_done < 0 ? 1 : last_done + 1);
    EXPECT_EQ(total, 5);
    last_done = done;
  };
  auto r = Sample(fn, o, kShape, 9, 2, kIdx, torch::kCPU, std::nullopt, hooks);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sizes(), torch::IntArrayRef(kShape));
  EXPECT_EQ(last_done, 5);
  ASSERT_EQ(seen_step, (std::vector<int>{0, 1, 2, 3, 4}));
  for (int i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(seen_logsnr[i], o.schedule.LogSnr(1.0 - i / 5.0));
}

TEST(Sampler, FrameNoiseMixesOneSharedFrameIntoEveryFrame) {
  const auto own = KeyedNormalBatch(9, 2, -1, kIdx, {3, 2, 4, 4});
  const auto shared = KeyedNormalBatch(9, 2, SharedFrameNoiseStep(-1), kIdx, {3, 1, 4, 4});
  EXPECT_FALSE(torch::allclose(own.select(2, 0), own.select(2, 1)));
  for (double rho : {0.0, 0.5, 1.0}) {
    SamplerOptions o;
    o.kind = SamplerKind::kDdim;
    o.steps = 3;
    o.frame_noise = rho;
    torch::Tensor first;
    auto fn = [&](const torch::Tensor& z, double logsnr, int step) {
      if (step == 0) first = z.clone();
      return ToyDenoise(z, logsnr, step);
    };
    ASSERT_TRUE(Sample(fn, o, kShape, 9, 2, kIdx, torch::kCPU).ok());
    const auto want = own * std::sqrt(1.0 - rho) + shared * std::sqrt(rho);
    EXPECT_TRUE(torch::allclose(first, want, 1e-6, 1e-6)) << rho;
    if (rho == 0.0) EXPECT_TRUE(torch::equal(first, own));  // exactly the independent draw
  }
  // With every draw shared (ρ = 1) and a denoiser that treats frames alike, the ancestral
  // sampler's per-step noise keeps the frames identical to the end.
  SamplerOptions o;
  o.kind = SamplerKind::kAncestral;
  o.steps = 4;
  o.frame_noise = 1.0;
  auto r = Sample(ToyDenoise, o, kShape, 9, 2, kIdx, torch::kCPU);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(torch::equal(r->select(2, 0), r->select(2, 1)));
  o.frame_noise = 0.0;
  r = Sample(ToyDenoise, o, kShape, 9, 2, kIdx, torch::kCPU);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(torch::allclose(r->select(2, 0), r->select(2, 1)));
  o.frame_noise = 1.5;
  EXPECT_TRUE(Sample(ToyDenoise, o, kShape, 9, 2, kIdx, torch::kCPU).status().IsInvalidArgument());
}

TEST(Sampler, LastStepReturnsXHat) {
  for (auto kind : {SamplerKind::kAncestral, SamplerKind::kDdim}) {
    SamplerOptions o;
    o.kind = kind;
    o.steps = 4;
    const auto target = torch::linspace(-0.9, 0.9, 2 * 3 * 2 * 4 * 4).reshape(kShape);
    auto r = Sample([&](const torch::Tensor&, double, int) { return target; }, o, kShape, 1, 0,
                    kIdx, torch::kCPU);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(torch::equal(*r, target));
  }
}

TEST(Sampler, DdimWithExactOracleFollowsTheTrajectory) {
  // x̂ = x exactly: each z_i must be α_i x + σ_i ε with the ε of z_1, and the output x.
  SamplerOptions o;
  o.kind = SamplerKind::kDdim;
  o.steps = 8;
  torch::manual_seed(1);
  const auto x = torch::rand(kShape, torch::kDouble) * 1.6 - 0.8;
  const auto z1 = KeyedNormalBatch(5, 1, -1, kIdx, {3, 2, 4, 4}).to(torch::kDouble);
  const double l1 = o.schedule.LogSnr(1.0);
  const auto eps = (z1 - AlphaFromLogSnr(l1) * x) / SigmaFromLogSnr(l1);
  int calls = 0;
  auto fn = [&](const torch::Tensor& z, double logsnr, int step) {
    const auto expect = AlphaFromLogSnr(logsnr) * x + SigmaFromLogSnr(logsnr) * eps;
    EXPECT_TRUE(torch::allclose(z.to(torch::kDouble), expect, 1e-5, 1e-5)) << "step " << step;
    ++calls;
    return x.to(torch::kFloat);
  };
  auto r = Sample(fn, o, kShape, 5, 1, kIdx, torch::kCPU);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(calls, 8);
  EXPECT_TRUE(torch::allclose(r->to(torch::kDouble), x, 1e-6, 1e-6));
}

TEST(Sampler, AncestralMatchesHandWrittenLoopWithKeyedStepNoise) {
  SamplerOptions o;
  o.kind = SamplerKind::kAncestral;
  o.steps = 6;
  o.gamma = 0.3;
  std::vector<torch::Tensor> zs;
  auto fn = [&](const torch::Tensor& z, double logsnr, int step) {
    zs.push_back(z.clone());
    return ToyDenoise(z, logsnr, step);
  };
  auto r = Sample(fn, o, kShape, 77, 3, kIdx, torch::kCPU);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(zs.size(), 6u);
  // Paper eq. 3–4 written out here in double, with the noise of step i keyed by step = i.
  const std::vector<int64_t> per{3, 2, 4, 4};
  auto z = KeyedNormalBatch(77, 3, -1, kIdx, per).to(torch::kDouble);
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(torch::allclose(zs[i].to(torch::kDouble), z, 1e-4, 1e-5)) << "step " << i;
    const double lt = o.schedule.LogSnr(1.0 - i / 6.0);
    const auto x_hat = ToyDenoise(zs[i], lt, i).to(torch::kDouble);
    if (i == 5) {
      EXPECT_TRUE(torch::allclose(r->to(torch::kDouble), x_hat, 1e-6, 1e-6));
      break;
    }
    const double ls = o.schedule.LogSnr(1.0 - (i + 1) / 6.0);
    const double rr = std::exp(lt - ls);
    const double a_t = std::sqrt(1 / (1 + std::exp(-lt))), a_s = std::sqrt(1 / (1 + std::exp(-ls)));
    const double s2_t = 1 / (1 + std::exp(lt)), s2_s = 1 / (1 + std::exp(ls));
    const double var = std::pow((1 - rr) * s2_s, 0.7) * std::pow((1 - rr) * s2_t, 0.3);
    const auto noise = KeyedNormalBatch(77, 3, i, kIdx, per).to(torch::kDouble);
    z = rr * (a_s / a_t) * zs[i].to(torch::kDouble) + (1 - rr) * a_s * x_hat +
        std::sqrt(var) * noise;
  }
}

TEST(Sampler, DeterministicAndSeedSensitive) {
  for (auto kind : {SamplerKind::kAncestral, SamplerKind::kDdim}) {
    SamplerOptions o;
    o.kind = kind;
    o.steps = 6;
    auto a = Sample(ToyDenoise, o, kShape, 10, 2, kIdx, torch::kCPU);
    auto b = Sample(ToyDenoise, o, kShape, 10, 2, kIdx, torch::kCPU);
    auto c = Sample(ToyDenoise, o, kShape, 11, 2, kIdx, torch::kCPU);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    EXPECT_TRUE(torch::equal(*a, *b));
    EXPECT_FALSE(torch::equal(*a, *c));
  }
}

TEST(Sampler, BatchingDoesNotChangeASample) {
  for (auto kind : {SamplerKind::kAncestral, SamplerKind::kDdim}) {
    SamplerOptions o;
    o.kind = kind;
    o.steps = 5;
    auto both = Sample(ToyDenoise, o, kShape, 3, 1, kIdx, torch::kCPU);
    std::vector<int64_t> one_shape = kShape;
    one_shape[0] = 1;
    auto second = Sample(ToyDenoise, o, one_shape, 3, 1, {kIdx[1]}, torch::kCPU);
    ASSERT_TRUE(both.ok() && second.ok());
    // ToyDenoise is elementwise, so row 1 sees exactly what a batch of one sees.
    EXPECT_TRUE(torch::equal((*both)[1], (*second)[0]));
  }
}

TEST(Sampler, ResumeFromEveryCheckpointIsBitIdentical) {
  for (auto kind : {SamplerKind::kAncestral, SamplerKind::kDdim}) {
    SamplerOptions o;
    o.kind = kind;
    o.steps = 10;
    std::vector<SamplerCheckpoint> cps;
    SamplerHooks hooks;
    hooks.checkpoint_every = 3;
    hooks.on_checkpoint = [&](const SamplerCheckpoint& cp) { cps.push_back(cp); };
    auto full = Sample(ToyDenoise, o, kShape, 21, 4, kIdx, torch::kCPU, std::nullopt, hooks);
    ASSERT_TRUE(full.ok()) << full.status().ToString();
    ASSERT_EQ(cps.size(), 3u);
    EXPECT_EQ(cps[0].next_step, 3);
    EXPECT_EQ(cps[1].next_step, 6);
    EXPECT_EQ(cps[2].next_step, 9);
    for (const auto& cp : cps) {
      std::vector<int> steps_seen;
      auto fn = [&](const torch::Tensor& z, double l, int step) {
        steps_seen.push_back(step);
        return ToyDenoise(z, l, step);
      };
      auto resumed = Sample(fn, o, kShape, 21, 4, kIdx, torch::kCPU, cp);
      ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
      EXPECT_TRUE(torch::equal(*resumed, *full))
          << SamplerKindName(kind) << " from " << cp.next_step;
      ASSERT_FALSE(steps_seen.empty());
      EXPECT_EQ(steps_seen.front(), cp.next_step);
    }
    // A checkpoint from a different run's state must not give the same answer (the test can fail).
    SamplerCheckpoint bad = cps[0];
    bad.z = bad.z + 1e-3;
    auto off = Sample(ToyDenoise, o, kShape, 21, 4, kIdx, torch::kCPU, bad);
    ASSERT_TRUE(off.ok());
    EXPECT_FALSE(torch::equal(*off, *full));
  }
}

TEST(Sampler, ShouldStopCancels) {
  SamplerOptions o;
  o.steps = 8;
  int calls = 0;
  SamplerHooks hooks;
  hooks.should_stop = [&] { return calls >= 3; };
  auto fn = [&](const torch::Tensor& z, double l, int step) {
    ++calls;
    return ToyDenoise(z, l, step);
  };
  auto r = Sample(fn, o, kShape, 1, 0, kIdx, torch::kCPU, std::nullopt, hooks);
  EXPECT_TRUE(r.status().IsCancelled()) << r.status().ToString();
  EXPECT_EQ(calls, 3);
}

TEST(Sampler, InvalidArgumentsAndCallbackErrorsBecomeStatus) {
  SamplerOptions o;
  o.steps = 0;
  EXPECT_TRUE(Sample(ToyDenoise, o, kShape, 1, 0, kIdx, torch::kCPU).status().IsInvalidArgument());
  o.steps = 4;
  o.gamma = 1.5;
  EXPECT_TRUE(Sample(ToyDenoise, o, kShape, 1, 0, kIdx, torch::kCPU).status().IsInvalidArgument());
  o.gamma = 0.3;
  EXPECT_TRUE(
      Sample(ToyDenoise, o, kShape, 1, 0, {1, 2, 3}, torch::kCPU).status().IsInvalidArgument());
  SamplerCheckpoint cp{7, torch::zeros(kShape)};
  EXPECT_TRUE(
      Sample(ToyDenoise, o, kShape, 1, 0, kIdx, torch::kCPU, cp).status().IsInvalidArgument());
  cp = {1, torch::zeros({1, 2})};
  EXPECT_TRUE(
      Sample(ToyDenoise, o, kShape, 1, 0, kIdx, torch::kCPU, cp).status().IsInvalidArgument());
  auto wrong_shape = [](const torch::Tensor& z, double, int) { return z.sum(0); };
  EXPECT_EQ(Sample(wrong_shape, o, kShape, 1, 0, kIdx, torch::kCPU).status().code(),
            Status::Code::kInternal);
  auto torch_throws = [](const torch::Tensor& z, double, int) {
    return z.matmul(torch::ones({7}));
  };
  EXPECT_EQ(Sample(torch_throws, o, kShape, 1, 0, kIdx, torch::kCPU).status().code(),
            Status::Code::kInternal);
  auto std_throws = [](const torch::Tensor&, double, int) -> torch::Tensor {
    throw std::runtime_error("boom");
  };
  EXPECT_EQ(Sample(std_throws, o, kShape, 1, 0, kIdx, torch::kCPU).status().code(),
            Status::Code::kInternal);
}

}  // namespace
}  // namespace vidfarm::models
