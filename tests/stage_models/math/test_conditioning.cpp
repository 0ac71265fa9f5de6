#include <gtest/gtest.h>
#include <torch/torch.h>

#include "vidfarm/stage_models/conditioning.h"

namespace vidfarm::models {
namespace {

TEST(ResizeVideo, ShapesFor4dAnd5dUpAndDown) {
  const auto x5 = torch::rand({2, 3, 4, 24, 40});
  EXPECT_EQ(ResizeVideo(x5, 48, 80).sizes(), torch::IntArrayRef({2, 3, 4, 48, 80}));
  EXPECT_EQ(ResizeVideo(x5, 12, 20).sizes(), torch::IntArrayRef({2, 3, 4, 12, 20}));
  EXPECT_EQ(ResizeVideo(x5, 30, 20).sizes(), torch::IntArrayRef({2, 3, 4, 30, 20}));
  const auto x4 = torch::rand({3, 4, 24, 40});
  EXPECT_EQ(ResizeVideo(x4, 96, 160).sizes(), torch::IntArrayRef({3, 4, 96, 160}));
  // Frames and channels stay apart: a frame-wise resize equals resizing that frame alone.
  EXPECT_TRUE(torch::allclose(ResizeVideo(x4, 48, 80)[1][2],
                              ResizeVideo(x4.narrow(1, 2, 1), 48, 80)[1][0]));
}

TEST(ResizeVideo, ConstantStaysConstant) {
  const auto x = torch::full({1, 3, 2, 24, 40}, 0.37f);
  for (auto hw : {std::pair<int64_t, int64_t>{48, 80}, {7, 13}, {192, 320}, {30, 20}}) {
    const auto y = ResizeVideo(x, hw.first, hw.second);
    EXPECT_NEAR((y - 0.37f).abs().max().item<float>(), 0.0f, 1e-6) << hw.first << "x" << hw.second;
  }
}

TEST(ResizeVideo, AntialiasedShrinkAveragesACheckerboard) {
  // ±1 one-pixel checkerboard shrunk 3×: plain bilinear would hit single pixels (±1);
  // the antialiased filter averages them to nearly 0.
  const auto i = torch::arange(24).reshape({24, 1});
  const auto j = torch::arange(24).reshape({1, 24});
  const auto board = (((i + j) % 2) * 2 - 1).to(torch::kFloat).expand({3, 2, 24, 24}).contiguous();
  const auto y = ResizeVideo(board, 8, 8);
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({3, 2, 8, 8}));
  EXPECT_LT(y.abs().mean().item<float>(), 0.05f);
  EXPECT_LT(y.abs().max().item<float>(), 0.2f);
  const auto plain = at::upsample_bilinear2d(board.reshape({-1, 1, 24, 24}), {8, 8}, false);
  EXPECT_GT(plain.abs().mean().item<float>(), 0.5f);  // the test can tell the two apart
}

TEST(ResizeVideo, UpsampleInterpolatesBilinearly) {
  // A horizontal ramp 0, 1 upsampled 2× with align_corners=false: 0, 0.25, 0.75, 1.
  const auto x =
      torch::tensor({0.0f, 1.0f}).reshape({1, 1, 1, 2}).expand({1, 1, 2, 2}).contiguous();
  const auto y = ResizeVideo(x, 2, 4);
  EXPECT_TRUE(torch::allclose(y[0][0][0], torch::tensor({0.0f, 0.25f, 0.75f, 1.0f})));
}

TEST(TemporalUpsample, ParseRepeatBlankAndSubsample) {
  EXPECT_EQ(*ParseTemporalUpsample("repeat"), TemporalUpsample::kRepeat);
  EXPECT_EQ(*ParseTemporalUpsample("blank"), TemporalUpsample::kBlank);
  EXPECT_TRUE(ParseTemporalUpsample("linear").status().IsInvalidArgument());
  // [B=1, C=2, T=3, H=1, W=2]; frame t of channel c holds 10c + t + 1.
  const auto x = (torch::arange(3).reshape({1, 1, 3, 1, 1}) + 1 +
                  10 * torch::arange(2).reshape({1, 2, 1, 1, 1}))
                     .to(torch::kFloat)
                     .expand({1, 2, 3, 1, 2})
                     .contiguous();
  const auto rep = UpsampleFrames(x, 2, TemporalUpsample::kRepeat);
  EXPECT_EQ(rep.sizes(), torch::IntArrayRef({1, 2, 6, 1, 2}));
  EXPECT_TRUE(torch::equal(rep[0][1].select(1, 0).select(1, 0),
                           torch::tensor({11.f, 11.f, 12.f, 12.f, 13.f, 13.f})));
  const auto blank = UpsampleFrames(x, 2, TemporalUpsample::kBlank);
  EXPECT_EQ(blank.sizes(), torch::IntArrayRef({1, 2, 6, 1, 2}));
  EXPECT_TRUE(torch::equal(blank[0][0].select(1, 0).select(1, 1),
                           torch::tensor({1.f, 0.f, 2.f, 0.f, 3.f, 0.f})));
  // 4-D input works too, and subsampling undoes either upsampling.
  const auto x4 = x[0];
  EXPECT_EQ(UpsampleFrames(x4, 4, TemporalUpsample::kRepeat).sizes(),
            torch::IntArrayRef({2, 12, 1, 2}));
  EXPECT_TRUE(torch::equal(SubsampleFrames(rep, 2), x));
  EXPECT_TRUE(torch::equal(SubsampleFrames(blank, 2), x));
  const auto t6 = torch::arange(6).to(torch::kFloat).reshape({1, 6, 1, 1});
  EXPECT_TRUE(torch::equal(SubsampleFrames(t6, 2).reshape({-1}), torch::tensor({0.f, 2.f, 4.f})));
  EXPECT_TRUE(torch::equal(SubsampleFrames(t6, 4).reshape({-1}), torch::tensor({0.f, 4.f})));
}

TEST(TemporalUpsample, BlendInterpolatesBetweenOriginalsAndHoldsTheLast) {
  EXPECT_EQ(*ParseTemporalUpsample("blend"), TemporalUpsample::kBlend);
  EXPECT_STREQ(TemporalUpsampleName(TemporalUpsample::kBlend), "blend");
  // [C=2, T=3, H=1, W=1]: channel 0 holds 0, 4, 8; channel 1 holds 1, 1, 9.
  const auto x = torch::tensor({0.f, 4.f, 8.f, 1.f, 1.f, 9.f}).reshape({2, 3, 1, 1});
  const auto b2 = UpsampleFrames(x, 2, TemporalUpsample::kBlend);
  EXPECT_EQ(b2.sizes(), torch::IntArrayRef({2, 6, 1, 1}));
  EXPECT_TRUE(torch::equal(b2[0].reshape({-1}), torch::tensor({0.f, 2.f, 4.f, 6.f, 8.f, 8.f})));
  EXPECT_TRUE(torch::equal(b2[1].reshape({-1}), torch::tensor({1.f, 1.f, 1.f, 5.f, 9.f, 9.f})));
  // Factor 4 on [B, C, T, H, W]: quarter steps; originals land on every 4th frame.
  const auto b4 = UpsampleFrames(x.unsqueeze(0), 4, TemporalUpsample::kBlend);
  EXPECT_EQ(b4.sizes(), torch::IntArrayRef({1, 2, 12, 1, 1}));
  EXPECT_TRUE(
      torch::allclose(b4[0][0].reshape({-1}),
                      torch::tensor({0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f, 8.f, 8.f, 8.f})));
  EXPECT_TRUE(torch::equal(SubsampleFrames(b4, 4), x.unsqueeze(0)));
}

TEST(NoiseAugment, EndpointsAndPerSampleLevel) {
  torch::manual_seed(8);
  const auto x = torch::rand({3, 3, 2, 4, 4}) * 2 - 1;
  const auto n = torch::randn({3, 3, 2, 4, 4});
  const auto y = NoiseAugment(x, torch::tensor({20.0f, -20.0f, 0.0f}), n);
  EXPECT_TRUE(torch::allclose(y[0], x[0], 0, 2e-4));  // λ = +20: σ ≈ 4.5e-5
  EXPECT_TRUE(torch::allclose(y[1], n[1], 0, 2e-4));  // λ = −20: pure noise
  EXPECT_TRUE(torch::allclose(y[2], (x[2] + n[2]) / std::sqrt(2.0), 1e-5, 1e-6));
}

TEST(VideoTensor, RoundTrip) {
  Video v(3, 2, 4, 5, 6.0);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = static_cast<float>(i) / 100.0f - 0.5f;
  const auto t = VideoToTensor(v);
  EXPECT_EQ(t.sizes(), torch::IntArrayRef({3, 2, 4, 5}));
  EXPECT_EQ(t.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(t[2][1][3][4].item<float>(), v.at(2, 1, 3, 4));
  EXPECT_FLOAT_EQ(t[1][0][2][3].item<float>(), v.at(1, 0, 2, 3));
  auto back = TensorToVideo(t.to(torch::kDouble), 6.0);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->channels, 3);
  EXPECT_EQ(back->frames, 2);
  EXPECT_EQ(back->height, 4);
  EXPECT_EQ(back->width, 5);
  EXPECT_DOUBLE_EQ(back->fps, 6.0);
  EXPECT_EQ(back->data, v.data);
  // Non-contiguous input is fine.
  auto tr = TensorToVideo(t.transpose(2, 3).contiguous().transpose(2, 3), 6.0);
  ASSERT_TRUE(tr.ok());
  EXPECT_EQ(tr->data, v.data);
}

TEST(VideoTensor, Errors) {
  EXPECT_TRUE(TensorToVideo(torch::zeros({3, 4, 5}), 6.0).status().IsInvalidArgument());
  EXPECT_TRUE(TensorToVideo(torch::zeros({3, 0, 4, 5}), 6.0).status().IsInvalidArgument());
  EXPECT_TRUE(TensorToVideo(torch::zeros({3, 2, 4, 5}), 0.0).status().IsInvalidArgument());
  EXPECT_TRUE(TensorToVideo(torch::Tensor(), 6.0).status().IsInvalidArgument());
  EXPECT_FALSE(TensorToVideo(torch::zeros({2, 2, 4, 5}), 6.0).ok());  // Video wants 1 or 3 channels
  Video bad(3, 2, 4, 5, 6.0);
  bad.data.pop_back();
  EXPECT_FALSE(VideoToTensorChecked(bad).ok());
  EXPECT_TRUE(VideoToTensorChecked(Video(1, 2, 2, 2, 3.0)).ok());
}

}  // namespace
}  // namespace vidfarm::models
