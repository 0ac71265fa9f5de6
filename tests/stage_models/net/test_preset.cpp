#include <gtest/gtest.h>

#include "vidfarm/stage_models/preset.h"

namespace vidfarm::models {
namespace {

struct Want {
  const char* name;
  StageKind kind;
  int64_t frames, height, width;
  double fps;
  TemporalMixing temporal;
  bool spatial_attention, oscillating;
};

// ARCHITECTURE.md, the paper's Figure 6.
const Want kPaper[7] = {
    {"base", StageKind::kBase, 16, 24, 40, 3, TemporalMixing::kAttention, true, true},
    {"tsr1", StageKind::kTemporalSR, 32, 24, 40, 6, TemporalMixing::kConv, true, true},
    {"ssr2", StageKind::kSpatialSR, 32, 48, 80, 6, TemporalMixing::kConv, true, true},
    {"ssr3", StageKind::kSpatialSR, 32, 192, 320, 6, TemporalMixing::kConv, true, false},
    {"tsr4", StageKind::kTemporalSR, 64, 192, 320, 12, TemporalMixing::kConv, false, false},
    {"tsr5", StageKind::kTemporalSR, 128, 192, 320, 24, TemporalMixing::kConv, false, false},
    {"ssr6", StageKind::kSpatialSR, 128, 768, 1280, 24, TemporalMixing::kConv, false, false},
};
const Want kTiny[7] = {
    {"base", StageKind::kBase, 8, 12, 20, 3, TemporalMixing::kAttention, true, true},
    {"tsr1", StageKind::kTemporalSR, 16, 12, 20, 6, TemporalMixing::kConv, true, true},
    {"ssr2", StageKind::kSpatialSR, 16, 24, 40, 6, TemporalMixing::kConv, true, true},
    {"ssr3", StageKind::kSpatialSR, 16, 48, 80, 6, TemporalMixing::kConv, true, false},
    {"tsr4", StageKind::kTemporalSR, 32, 48, 80, 12, TemporalMixing::kConv, false, false},
    {"tsr5", StageKind::kTemporalSR, 64, 48, 80, 24, TemporalMixing::kConv, false, false},
    {"ssr6", StageKind::kSpatialSR, 64, 96, 160, 24, TemporalMixing::kConv, false, false},
};

void CheckPreset(const CascadePreset& p, const Want (&want)[7]) {
  ASSERT_EQ(p.stages.size(), 7u);
  for (int i = 0; i < 7; ++i) {
    const auto& s = p.stages[i];
    const auto& w = want[i];
    SCOPED_TRACE(p.name + " stage " + std::to_string(i));
    EXPECT_EQ(s.index, i);
    EXPECT_EQ(s.name, w.name);
    EXPECT_EQ(s.kind, w.kind);
    EXPECT_EQ(s.frames, w.frames);
    EXPECT_EQ(s.height, w.height);
    EXPECT_EQ(s.width, w.width);
    EXPECT_EQ(s.fps, w.fps);
    EXPECT_EQ(s.net.temporal, w.temporal);
    EXPECT_EQ(s.spatial_attention, w.spatial_attention);
    EXPECT_EQ(s.oscillating_cfg, w.oscillating);
    // tiny samples its SR stages with DDIM and without guidance (preset.cpp says why).
    const bool tiny_sr = p.name == "tiny" && i >= 1;
    EXPECT_EQ(s.sampling.oscillating, w.oscillating && !tiny_sr);
    if (tiny_sr) {
      EXPECT_EQ(s.sampling.guidance, 0.0);
      EXPECT_EQ(s.sampling.sampler, "ddim");
    }
    EXPECT_EQ(s.height * 5, s.width * 3) << "5:3";
    EXPECT_EQ(s.net.super_resolution, s.kind != StageKind::kBase);
    EXPECT_EQ(s.net.text_dim, p.text_dim);
    EXPECT_TRUE(s.net.Validate().ok()) << s.net.Validate().ToString();
    EXPECT_EQ(s.height % s.net.divisor(), 0);
    EXPECT_EQ(s.width % s.net.divisor(), 0);
    // Spatial attention in the stage means some level has it (and never when fully conv).
    bool any_attn = false;
    for (int l = 0; l < s.net.levels(); ++l) any_attn = any_attn || s.net.attention_at(l);
    EXPECT_EQ(any_attn, w.spatial_attention);
    EXPECT_EQ(s.net.fully_convolutional, i == 6);
    EXPECT_EQ(s.trained_on_crops, i == 6);
    if (i > 0) {
      // Each stage's input is the previous stage's output.
      const auto& prev = p.stages[i - 1];
      EXPECT_EQ(s.in_frames(), prev.frames);
      EXPECT_EQ(s.in_height(), prev.height);
      EXPECT_EQ(s.in_width(), prev.width);
      EXPECT_EQ(s.in_fps(), prev.fps);
      EXPECT_GT(s.sampling.aug_logsnr, 0.0);
    }
    EXPECT_TRUE(s.sampling.prediction == "v");
    EXPECT_GT(s.sampling.steps, 0);
  }
}

TEST(Preset, PaperMatchesTheTable) {
  auto p = GetPreset("paper");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->text_dim, 4096);
  EXPECT_EQ(p->text_tokens, 128);
  CheckPreset(*p, kPaper);
}

TEST(Preset, TinyKeepsTheStagesAndMechanisms) {
  auto p = GetPreset("tiny");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->text_dim, 64);
  EXPECT_EQ(p->text_tokens, 16);
  CheckPreset(*p, kTiny);
  const auto& last = p->stages.back();
  EXPECT_GE(last.frames, 64);
  EXPECT_EQ(last.fps, 24);
  EXPECT_GE(last.height, 96);
  EXPECT_GE(last.width, 160);
  EXPECT_EQ(last.crop_h % last.net.divisor(), 0);
  EXPECT_EQ(last.crop_w % last.net.divisor(), 0);
}

// An SR stage's first convolution must be at least as wide as its patched input (noisy video and
// conditioning, 2·C·p² channels): narrower, it cannot carry the per-pixel noise it must remove
// (the 12-wide ssr6 and the 16-wide tsr5 left their output under grain).
TEST(Preset, SrStagesKeepEveryInputChannel) {
  for (const std::string name : {"tiny", "paper"}) {
    auto p = GetPreset(name);
    ASSERT_TRUE(p.ok());
    for (const auto& s : p->stages) {
      if (s.kind == StageKind::kBase) continue;
      const int64_t in_ch = 2 * s.net.channels * s.net.patch * s.net.patch;
      EXPECT_GE(s.net.dim * s.net.mults.front(), in_ch) << name << " " << s.name;
    }
  }
}

TEST(Preset, UnknownNameListsTheKnownOnes) {
  auto p = GetPreset("huge");
  ASSERT_TRUE(p.status().IsInvalidArgument());
  EXPECT_NE(p.status().message().find("paper"), std::string::npos);
  EXPECT_NE(p.status().message().find("tiny"), std::string::npos);
  EXPECT_EQ(PresetNames(), (std::vector<std::string>{"paper", "tiny"}));
}

TEST(Preset, SpecJson) {
  auto p = GetPreset("tiny");
  const auto j = p->stages[3].ToJson();
  EXPECT_EQ(j["index"], 3);
  EXPECT_EQ(j["input"]["height"], 24);
  EXPECT_EQ(j["net"]["patch"], p->stages[3].net.patch);
  EXPECT_EQ(j["kind"], "ssr");
}

}  // namespace
}  // namespace vidfarm::models
