#include <gtest/gtest.h>

#include <cmath>

#include "vidfarm/common/video_ops.h"

namespace vidfarm {
namespace {

TEST(VideoOps, UpscaleNearestRepeatsPixels) {
  Video v(1, 2, 2, 3, 6.0);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = static_cast<float>(i) / 12.0f;
  Result<Video> up = UpscaleNearest(v, 3);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ(up->ShapeString(), "1x2x6x9@6fps");
  for (int64_t t = 0; t < 2; ++t) {
    for (int64_t y = 0; y < 6; ++y) {
      for (int64_t x = 0; x < 9; ++x) {
        ASSERT_EQ(up->at(0, t, y, x), v.at(0, t, y / 3, x / 3)) << t << " " << y << " " << x;
      }
    }
  }
  EXPECT_EQ(up->at(0, 1, 5, 8), 11.0f / 12.0f);
  EXPECT_TRUE(UpscaleNearest(v, 0).status().IsInvalidArgument());
}

TEST(VideoOps, PsnrMatchesHandComputedValue) {
  Video a(3, 1, 2, 2, 24.0);
  Video b = a;
  // A difference of 0.2 in [-1, 1] is 0.1 in [0, 1]: MSE 0.01 -> 20 dB.
  for (float& x : b.data) x += 0.2f;
  Result<double> psnr = Psnr(a, b);
  ASSERT_TRUE(psnr.ok());
  EXPECT_NEAR(*psnr, 20.0, 1e-4);

  // Only a quarter of the samples differ: MSE 0.0025 -> 26.02 dB.
  b = a;
  for (size_t i = 0; i < b.data.size(); i += 4) b.data[i] = 0.2f;
  EXPECT_NEAR(*Psnr(a, b), 10.0 * std::log10(400.0), 1e-4);
}

TEST(VideoOps, PsnrEdgeCases) {
  Video a(3, 2, 4, 4, 24.0);
  Result<double> same = Psnr(a, a);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(std::isinf(*same) && *same > 0);
  EXPECT_TRUE(Psnr(a, Video(3, 2, 4, 5, 24.0)).status().IsInvalidArgument());
  EXPECT_TRUE(Psnr(a, Video()).status().IsInvalidArgument());
}

}  // namespace
}  // namespace vidfarm
