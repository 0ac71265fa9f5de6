#include <gtest/gtest.h>

#include "vidfarm/common/cascade_table.h"

namespace vidfarm {
namespace {

TEST(CascadeTable, PaperIsTheArchitectureTable) {
  auto t = CascadeTable("paper");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 7u);
  const int64_t want[7][4] = {{16, 24, 40, 3},    {32, 24, 40, 6},    {32, 48, 80, 6},
                              {32, 192, 320, 6},  {64, 192, 320, 12}, {128, 192, 320, 24},
                              {128, 768, 1280, 24}};
  for (int k = 0; k < 7; ++k) {
    const auto& s = (*t)[k];
    EXPECT_EQ(s.frames, want[k][0]);
    EXPECT_EQ(s.height, want[k][1]);
    EXPECT_EQ(s.width, want[k][2]);
    EXPECT_EQ(s.fps, want[k][3]);
    if (k > 0) {  // each stage's factors take the previous stage's output to its own
      const auto& p = (*t)[k - 1];
      EXPECT_EQ(p.frames * s.temporal_factor, s.frames) << k;
      EXPECT_EQ(p.height * s.spatial_factor, s.height) << k;
      EXPECT_EQ(p.width * s.spatial_factor, s.width) << k;
      EXPECT_DOUBLE_EQ(p.fps * s.temporal_factor, s.fps) << k;
    }
  }
  EXPECT_TRUE((*t)[0].temporal_attention);
  EXPECT_FALSE((*t)[1].temporal_attention);
  EXPECT_FALSE((*t)[6].spatial_attention);
  EXPECT_TRUE((*t)[2].oscillating_cfg);
  EXPECT_FALSE((*t)[3].oscillating_cfg);
}

TEST(CascadeTable, TinyChainsAndUnknownIsAnError) {
  auto t = CascadeTable("tiny");
  ASSERT_TRUE(t.ok());
  for (size_t k = 1; k < t->size(); ++k) {
    const auto& p = (*t)[k - 1];
    const auto& s = (*t)[k];
    EXPECT_EQ(p.frames * s.temporal_factor, s.frames);
    EXPECT_EQ(p.height * s.spatial_factor, s.height);
    EXPECT_EQ(s.width * 3, s.height * 5);
  }
  auto bad = CascadeTable("huge");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tiny"), std::string::npos);
}

}  // namespace
}  // namespace vidfarm
