// Schedule and diffusion identities not covered by the reference vectors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "vidfarm/stage_models/diffusion.h"

namespace vidfarm::models {
namespace {

TEST(CosineSchedule, EndpointsAndMonotone) {
  CosineSchedule s;
  EXPECT_NEAR(s.LogSnr(0.0), 20.0, 1e-9);
  EXPECT_NEAR(s.LogSnr(1.0), -20.0, 1e-9);
  // Clipped outside [0, 1].
  EXPECT_NEAR(s.LogSnr(-0.5), 20.0, 1e-9);
  EXPECT_NEAR(s.LogSnr(1.5), -20.0, 1e-9);
  double prev = s.LogSnr(0.0);
  for (int i = 1; i <= 100; ++i) {
    const double l = s.LogSnr(i / 100.0);
    EXPECT_LT(l, prev) << "t=" << i / 100.0;
    prev = l;
  }
}

TEST(CosineSchedule, CustomRangeEndpoints) {
  CosineSchedule s;
  s.logsnr_min = -15.0;
  s.logsnr_max = 10.0;
  EXPECT_NEAR(s.LogSnr(0.0), 10.0, 1e-9);
  EXPECT_NEAR(s.LogSnr(1.0), -15.0, 1e-9);
}

TEST(CosineSchedule, TimeFromLogSnrInvertsLogSnr) {
  for (const auto& s : {CosineSchedule{}, CosineSchedule{-15.0, 10.0}}) {
    for (int i = 0; i <= 64; ++i) {
      const double t = i / 64.0;
      EXPECT_NEAR(s.TimeFromLogSnr(s.LogSnr(t)), t, 1e-9) << "t=" << t;
    }
    for (double l : {-19.5, -14.9, -7.0, -1.0, 0.0, 0.3, 4.0, 9.9, 19.5}) {
      if (l < s.logsnr_min || l > s.logsnr_max) continue;
      EXPECT_NEAR(s.LogSnr(s.TimeFromLogSnr(l)), l, 1e-8) << "logsnr=" << l;
    }
  }
  CosineSchedule s;
  EXPECT_NEAR(s.TimeFromLogSnr(0.0), 0.5, 1e-12);
  // Outside the range: clamped to the endpoints.
  EXPECT_DOUBLE_EQ(s.TimeFromLogSnr(30.0), 0.0);
  EXPECT_NEAR(s.TimeFromLogSnr(-30.0), 1.0, 1e-12);  // symmetric range: λ = 0 at the midpoint
}

TEST(AlphaSigma, VariancePreservingAndTensorMatchesScalar) {
  for (double l : {-20.0, -3.0, 0.0, 1.5, 20.0}) {
    const double a = AlphaFromLogSnr(l), s = SigmaFromLogSnr(l);
    EXPECT_NEAR(a * a + s * s, 1.0, 1e-12);
    EXPECT_NEAR(std::log(a * a / (s * s)), l, 1e-9);
    const auto lt = torch::full({1}, l, torch::kDouble);
    EXPECT_NEAR(AlphaFromLogSnr(lt).item<double>(), a, 1e-12);
    EXPECT_NEAR(SigmaFromLogSnr(lt).item<double>(), s, 1e-12);
  }
}

TEST(BroadcastTo, ShapesDtypeAndValues) {
  const auto like = torch::zeros({3, 2, 4, 5, 6});
  const auto b = BroadcastTo(torch::tensor({1.0, 2.0, 3.0}, torch::kDouble), like);
  EXPECT_EQ(b.sizes(), torch::IntArrayRef({3, 1, 1, 1, 1}));
  EXPECT_EQ(b.scalar_type(), torch::kFloat);
  EXPECT_EQ((like + b).sizes(), like.sizes());
  EXPECT_FLOAT_EQ((like + b)[2][1][3][4][5].item<float>(), 3.0f);
  EXPECT_EQ(BroadcastTo(torch::ones({4}), torch::zeros({4})).sizes(), torch::IntArrayRef({4}));
}

TEST(PredictX, PerSampleLogSnrRoundTrip) {
  torch::manual_seed(3);
  const auto x = torch::rand({3, 2, 2, 4, 4}, torch::kDouble) * 2 - 1;
  const auto eps = torch::randn({3, 2, 2, 4, 4}, torch::kDouble);
  const auto logsnr = torch::tensor({-6.0, 0.5, 7.0}, torch::kDouble);
  const auto alpha = BroadcastTo(AlphaFromLogSnr(logsnr), x);
  const auto sigma = BroadcastTo(SigmaFromLogSnr(logsnr), x);
  const auto z = Diffuse(x, eps, alpha, sigma);
  for (auto p : {Parameterization::kV, Parameterization::kEps}) {
    const auto target = TrainingTarget(p, x, eps, alpha, sigma);
    EXPECT_TRUE(torch::allclose(PredictX(p, z, target, logsnr), x, 1e-9, 1e-9));
  }
  // Each row uses its own λ: row 0 at λ = −6 must differ from using row 2's λ.
  const auto v = VTarget(x, eps, alpha, sigma);
  const auto wrong = PredictX(Parameterization::kV, z, v, torch::full({3}, 7.0, torch::kDouble));
  EXPECT_FALSE(torch::allclose(wrong[0], x[0], 1e-3, 1e-3));
  EXPECT_TRUE(torch::allclose(wrong[2], x[2], 1e-9, 1e-9));
}

TEST(DdimStep, ExactXKeepsEpsilon) {
  // With x̂ = x, DDIM keeps ε̂ = ε: z_s = α_s x + σ_s ε exactly.
  torch::manual_seed(5);
  const auto x = torch::rand({2, 8}, torch::kDouble);
  const auto eps = torch::randn({2, 8}, torch::kDouble);
  const double lt = -2.0, ls = 3.0;
  const auto z_t = x * AlphaFromLogSnr(lt) + eps * SigmaFromLogSnr(lt);
  const auto expect = x * AlphaFromLogSnr(ls) + eps * SigmaFromLogSnr(ls);
  EXPECT_TRUE(torch::allclose(DdimStep(z_t, x, lt, ls), expect, 1e-12, 1e-12));
}

TEST(AncestralStep, ZeroNoiseIsTheMeanAndTinyStepIsNearlyIdentity) {
  const auto z = torch::tensor({0.3, -0.7}, torch::kDouble);
  const auto x = torch::tensor({0.1, 0.2}, torch::kDouble);
  const auto m = AncestralPosterior(z, x, -1.0, 2.0, 0.3);
  EXPECT_TRUE(torch::equal(AncestralStep(z, x, -1.0, 2.0, 0.3, torch::zeros_like(z)), m.mean));
  // λ_s = λ_t: r = 1, mean = z_t, var = 0.
  const auto same = AncestralPosterior(z, x, 1.0, 1.0, 0.3);
  EXPECT_TRUE(torch::allclose(same.mean, z, 1e-15, 1e-15));
  EXPECT_EQ(same.var, 0.0);
}

}  // namespace
}  // namespace vidfarm::models
