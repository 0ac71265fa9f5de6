#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "vidfarm/stage_models/diffusion.h"
#include "vidfarm/stage_models/guidance.h"

namespace vidfarm::models {
namespace {

TEST(GuidanceSchedule, ConstantAndOscillatingWeights) {
  GuidanceSchedule c;
  c.high = 5.0;
  for (int s = 0; s < 6; ++s) EXPECT_DOUBLE_EQ(c.WeightAt(s), 5.0);
  GuidanceSchedule o;
  o.high = 15.0;
  o.low = 1.0;
  o.oscillating = true;
  o.constant_steps = 3;
  const std::vector<double> expect{15, 15, 15, 15, 1, 15, 1, 15, 1};
  for (int s = 0; s < static_cast<int>(expect.size()); ++s) {
    EXPECT_DOUBLE_EQ(o.WeightAt(s), expect[s]) << "step " << s;
  }
  o.constant_steps = 0;
  EXPECT_DOUBLE_EQ(o.WeightAt(0), 15.0);
  EXPECT_DOUBLE_EQ(o.WeightAt(1), 1.0);
}

TEST(Thresholding, ParseAndDefaults) {
  EXPECT_EQ(*ParseThresholding("none"), Thresholding::kNone);
  EXPECT_EQ(*ParseThresholding("static"), Thresholding::kStatic);
  EXPECT_EQ(*ParseThresholding("dynamic"), Thresholding::kDynamic);
  EXPECT_TRUE(ParseThresholding("clip").status().IsInvalidArgument());
  GuidanceOptions o;
  EXPECT_EQ(o.thresholding, Thresholding::kDynamic);
  EXPECT_DOUBLE_EQ(o.dynamic_p, 0.995);
  EXPECT_EQ(o.param, Parameterization::kV);
}

TEST(Thresholding, StaticClamps) {
  const auto x = torch::tensor({-3.0, -0.5, 0.0, 0.99, 1.7});
  EXPECT_TRUE(torch::equal(StaticThreshold(x), torch::tensor({-1.0, -0.5, 0.0, 0.99, 1.0})));
}

TEST(Thresholding, DynamicIsPerSampleAndLeavesSmallValuesAlone) {
  // Row 0 within [−1, 1]: s = 1, unchanged. Row 1: |x| = 1..100, p = 0.5 → s = 50.5 (linear).
  auto x = torch::zeros({2, 1, 2, 5, 10}, torch::kDouble);
  x[0] = torch::linspace(-0.9, 0.9, 100, torch::kDouble).reshape({1, 2, 5, 10});
  x[1] = torch::arange(1, 101, torch::kDouble).reshape({1, 2, 5, 10}) *
         torch::tensor({1.0, -1.0}, torch::kDouble).repeat({50}).reshape({1, 2, 5, 10});
  const auto s = DynamicThresholdScale(x, 0.5);
  EXPECT_NEAR(s[0].item<double>(), 1.0, 1e-12);
  EXPECT_NEAR(s[1].item<double>(), 50.5, 1e-12);
  const auto out = DynamicThreshold(x, 0.5);
  EXPECT_TRUE(torch::equal(out[0], x[0]));
  EXPECT_NEAR(out[1].abs().max().item<double>(), 1.0, 1e-12);
  EXPECT_NEAR(out[1][0][0][0][0].item<double>(), 1.0 / 50.5, 1e-12);
}

TEST(Thresholding, DynamicOnLargeTensorMatchesSortedQuantile) {
  // > 16M elements per call would break torch::quantile; check the kthvalue path on a big sample.
  torch::manual_seed(2);
  const auto x = torch::randn({2, 3, 8, 128, 128}) * 2.0;  // 393k elements per sample
  const double p = 0.995;
  const auto s = DynamicThresholdScale(x, p);
  for (int b = 0; b < 2; ++b) {
    const auto sorted = std::get<0>(x[b].abs().reshape({-1}).to(torch::kDouble).sort());
    const int64_t n = sorted.numel();
    const double pos = p * (n - 1);
    const auto lo = static_cast<int64_t>(std::floor(pos));
    const double q = sorted[lo].item<double>() +
                     (pos - lo) * (sorted[lo + 1].item<double>() - sorted[lo].item<double>());
    EXPECT_NEAR(s[b].item<double>(), std::max(1.0, q), 1e-5 * q);
  }
}

// A crafted network in v-parameterization: v = 0.5 z + 0.25·keep (keep = 1 for cond rows).
struct CountingNet {
  std::vector<int64_t> rows;
  std::vector<torch::Tensor> keeps;
  std::vector<torch::Tensor> logsnrs;
  torch::Tensor operator()(const torch::Tensor& z, const torch::Tensor& logsnr,
                           const torch::Tensor& keep) {
    rows.push_back(z.size(0));
    keeps.push_back(keep.clone());
    logsnrs.push_back(logsnr.clone());
    return z * 0.5 + BroadcastTo(keep.to(z.scalar_type()), z) * 0.25;
  }
};

TEST(GuidedDenoiser, OneBatchedForwardAndHandComputedX) {
  auto net = std::make_shared<CountingNet>();
  GuidanceOptions o;
  o.schedule.high = 3.0;
  o.thresholding = Thresholding::kNone;
  auto denoise = MakeGuidedDenoiser([net](const torch::Tensor& z, const torch::Tensor& l,
                                          const torch::Tensor& k) { return (*net)(z, l, k); },
                                    o);
  torch::manual_seed(4);
  const auto z = torch::randn({3, 2, 2, 3, 3}, torch::kDouble);
  const double logsnr = 1.3, w = 3.0;
  const auto x = denoise(z, logsnr, 0);
  ASSERT_EQ(net->rows, std::vector<int64_t>{6});
  EXPECT_TRUE(torch::equal(net->keeps[0], torch::tensor({true, true, true, false, false, false})));
  EXPECT_TRUE(torch::allclose(net->logsnrs[0], torch::full({6}, logsnr, torch::kDouble)));
  // x_c = αz − σ(0.5z + 0.25), x_u = αz − σ(0.5z); guided = (1+w)x_c − w x_u.
  const double a = std::sqrt(1 / (1 + std::exp(-logsnr))),
               s = std::sqrt(1 / (1 + std::exp(logsnr)));
  const auto x_c = a * z - s * (0.5 * z + 0.25);
  const auto x_u = a * z - s * (0.5 * z);
  const auto expect = (1 + w) * x_c - w * x_u;
  EXPECT_TRUE(torch::allclose(x, expect, 1e-10, 1e-10));
  EXPECT_EQ(x.sizes(), z.sizes());
}

TEST(GuidedDenoiser, EpsParameterizationAndDynamicThresholding) {
  GuidanceOptions o;
  o.schedule.high = 2.0;
  o.param = Parameterization::kEps;
  o.thresholding = Thresholding::kDynamic;
  o.dynamic_p = 0.9;
  auto denoise = MakeGuidedDenoiser(
      [](const torch::Tensor& z, const torch::Tensor&, const torch::Tensor& keep) {
        return z * 0.5 + BroadcastTo(keep.to(z.scalar_type()), z) * 0.25;
      },
      o);
  torch::manual_seed(6);
  const auto z = torch::randn({2, 1, 2, 4, 4}, torch::kDouble) * 3;
  const double logsnr = -0.7;
  const double a = std::sqrt(1 / (1 + std::exp(-logsnr))),
               s = std::sqrt(1 / (1 + std::exp(logsnr)));
  const auto x_c = (z - s * (0.5 * z + 0.25)) / a;
  const auto x_u = (z - s * (0.5 * z)) / a;
  const auto raw = 3.0 * x_c - 2.0 * x_u;
  const auto x = denoise(z, logsnr, 0);
  EXPECT_TRUE(torch::allclose(x, DynamicThreshold(raw, 0.9), 1e-10, 1e-10));
  EXPECT_LE(x.abs().max().item<double>(), 1.0 + 1e-12);
  EXPECT_FALSE(torch::allclose(x, raw));  // thresholding did something
}

TEST(GuidedDenoiser, ZeroWeightRunsOnlyTheConditionalHalf) {
  auto net = std::make_shared<CountingNet>();
  GuidanceOptions o;
  o.schedule.high = 4.0;
  o.schedule.low = 0.0;
  o.schedule.oscillating = true;
  o.schedule.constant_steps = 1;
  o.thresholding = Thresholding::kStatic;
  auto denoise = MakeGuidedDenoiser([net](const torch::Tensor& z, const torch::Tensor& l,
                                          const torch::Tensor& k) { return (*net)(z, l, k); },
                                    o);
  const auto z = torch::linspace(-1.5, 1.5, 2 * 3 * 2 * 2 * 2).reshape({2, 3, 2, 2, 2});
  std::vector<torch::Tensor> xs;
  for (int step = 0; step < 4; ++step) xs.push_back(denoise(z, 0.4, step));
  // Weights 4, 4, 0, 4 → rows 4, 4, 2, 4.
  EXPECT_EQ(net->rows, (std::vector<int64_t>{4, 4, 2, 4}));
  EXPECT_TRUE(torch::equal(net->keeps[2], torch::tensor({true, true})));
  const double a = std::sqrt(1 / (1 + std::exp(-0.4))), s = std::sqrt(1 / (1 + std::exp(0.4)));
  const auto x_c = (a * z - s * (0.5 * z + 0.25)).clamp(-1, 1);
  EXPECT_TRUE(torch::allclose(xs[2], x_c, 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(xs[1], x_c, 1e-3, 1e-3));
}

}  // namespace
}  // namespace vidfarm::models
