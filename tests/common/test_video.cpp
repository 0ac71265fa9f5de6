#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "vidfarm/common/video.h"

namespace vidfarm {
namespace {

TEST(Video, ConstructorZeroFillsAndIndexesChannelsFirst) {
  Video v(3, 16, 24, 40, 3.0);
  EXPECT_EQ(v.numel(), 3 * 16 * 24 * 40);
  ASSERT_EQ(v.data.size(), static_cast<size_t>(v.numel()));
  for (float x : v.data) ASSERT_EQ(x, 0.0f);
  EXPECT_FALSE(v.empty());
  // C×T×H×W layout: (c=1, t=2, y=3, x=4) sits at ((1*16+2)*24+3)*40+4.
  v.at(1, 2, 3, 4) = 0.5f;
  EXPECT_EQ(v.data[((1 * 16 + 2) * 24 + 3) * 40 + 4], 0.5f);
  EXPECT_TRUE(Video().empty());
}

TEST(Video, ShapeString) {
  EXPECT_EQ(Video(3, 16, 24, 40, 3.0).ShapeString(), "3x16x24x40@3fps");
  EXPECT_EQ(Video(1, 128, 7, 1280, 24.0).ShapeString(), "1x128x7x1280@24fps");
  EXPECT_EQ(Video(3, 2, 4, 4, 29.97).ShapeString(), "3x2x4x4@29.97fps");
}

TEST(Video, ValidateAcceptsWellFormed) {
  EXPECT_TRUE(Video(3, 16, 24, 40, 3.0).Validate().ok());
  EXPECT_TRUE(Video(1, 1, 1, 1, 0.5).Validate().ok());
}

TEST(Video, ValidateRejectsBadShapes) {
  EXPECT_TRUE(Video().Validate().IsInvalidArgument());
  EXPECT_TRUE(Video(3, 0, 24, 40, 3.0).Validate().IsInvalidArgument());
  EXPECT_TRUE(Video(3, 16, -1, 40, 3.0).Validate().IsInvalidArgument());
  EXPECT_TRUE(Video(2, 16, 24, 40, 3.0).Validate().IsInvalidArgument());
  EXPECT_TRUE(Video(4, 16, 24, 40, 3.0).Validate().IsInvalidArgument());

  Video short_data(3, 2, 4, 4, 3.0);
  short_data.data.pop_back();
  Status st = short_data.Validate();
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("95"), std::string::npos) << st.message();
}

TEST(Video, ValidateRejectsBadFpsAndValues) {
  EXPECT_TRUE(Video(3, 2, 4, 4, 0.0).Validate().IsInvalidArgument());
  EXPECT_TRUE(Video(3, 2, 4, 4, -24.0).Validate().IsInvalidArgument());
  EXPECT_TRUE(Video(3, 2, 4, 4, std::nan("")).Validate().IsInvalidArgument());
  EXPECT_TRUE(
      Video(3, 2, 4, 4, std::numeric_limits<double>::infinity()).Validate().IsInvalidArgument());

  Video v(3, 2, 4, 4, 3.0);
  v.at(2, 1, 3, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(v.Validate().IsInvalidArgument());
  v.at(2, 1, 3, 3) = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(v.Validate().IsInvalidArgument());
  // Out-of-range but finite values are legal: the encoder clamps them.
  v.at(2, 1, 3, 3) = 7.0f;
  EXPECT_TRUE(v.Validate().ok());
}

}  // namespace
}  // namespace vidfarm
