// The synthetic world's scenes and renderer: determinism, the scene distribution, motion that is
// the same at every frame rate, objects that stay in frame, legible glyphs, and speed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>
#include <string>

#include "vidfarm/stage_models/synth.h"

namespace vidfarm::synth {
namespace {

Video MustRender(const Scene& s, int64_t t, int64_t h, int64_t w, double fps) {
  auto v = Render(s, t, h, w, fps);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? std::move(*v) : Video();
}

// Σ over pixels of one frame of the object's coverage, for a white object on black.
double WhiteArea(const Video& v, int64_t t) {
  double s = 0;
  for (int64_t y = 0; y < v.height; ++y) {
    for (int64_t x = 0; x < v.width; ++x) s += (v.at(0, t, y, x) + 1) / 2;
  }
  return s;
}

Scene OneObject(Shape shape, Motion motion, float size) {
  Scene s;
  Object o;
  o.colour = Colour::kWhite;
  o.shape = shape;
  o.motion = motion;
  o.size = size;
  s.objects.push_back(o);
  return s;
}

TEST(SynthScene, RandomSceneIsAPureFunctionOfSeedAndIndex) {
  for (uint64_t i = 0; i < 50; ++i) {
    const Scene a = RandomScene(11, i), b = RandomScene(11, i);
    ASSERT_EQ(a.objects.size(), 1u);
    ASSERT_EQ(b.objects.size(), 1u);
    EXPECT_EQ(Caption(a), Caption(b));
    const Object &oa = a.objects[0], &ob = b.objects[0];
    EXPECT_EQ(oa.x0, ob.x0);
    EXPECT_EQ(oa.y0, ob.y0);
    EXPECT_EQ(oa.size, ob.size);
    EXPECT_EQ(oa.speed, ob.speed);
    EXPECT_EQ(oa.dir_x, ob.dir_x);
    EXPECT_EQ(a.background.texture_seed, b.background.texture_seed);
    EXPECT_EQ(0,
              std::memcmp(a.background.tone_a, b.background.tone_a, sizeof(a.background.tone_a)));
  }
  // Other seeds and indices give other scenes.
  std::set<std::string> captions;
  for (uint64_t i = 0; i < 50; ++i) captions.insert(Caption(RandomScene(11, i)));
  EXPECT_GT(captions.size(), 45u);
  int same = 0;
  for (uint64_t i = 0; i < 50; ++i)
    same += Caption(RandomScene(11, i)) == Caption(RandomScene(12, i));
  EXPECT_LT(same, 5);
}

TEST(SynthScene, RenderIsBitIdenticalTwice) {
  for (uint64_t i = 0; i < 6; ++i) {
    const Scene s = RandomScene(3, i);
    const Video a = MustRender(s, 16, 48, 80, 6), b = MustRender(s, 16, 48, 80, 6);
    ASSERT_EQ(a.data.size(), b.data.size());
    EXPECT_EQ(0, std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)))
        << Caption(s);
  }
}

TEST(SynthScene, DistributionCoversEveryAttribute) {
  constexpr int kN = 4000;
  int colours[kNumColours] = {}, motions[kNumMotions] = {}, shapes[40] = {};
  int geometric = 0, black = 0, plain = 0, gradient = 0, painted = 0;
  for (int i = 0; i < kN; ++i) {
    const Scene s = RandomScene(5, static_cast<uint64_t>(i));
    const Attributes a = AttributesOf(s);
    ++colours[static_cast<int>(a.colour)];
    ++motions[static_cast<int>(a.motion)];
    const int k = ShapeIndex(a.shape);
    ASSERT_GE(k, 0);
    ++shapes[k];
    geometric += k < 4;
    EXPECT_FALSE(a.shape.kind == ShapeKind::kCircle && a.motion == Motion::kRotating);
    if (a.background == BackgroundKind::kPlain) {
      if (a.background_black) {
        ++black;
      } else {
        ++plain;
        EXPECT_NE(a.background_colour, a.colour) << Caption(a);
      }
    }
    gradient += a.background == BackgroundKind::kGradient;
    painted += a.background == BackgroundKind::kPainted;
    // Round trip through the caption text.
    auto parsed = ParseCaption(Caption(s));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(Caption(*parsed), Caption(a));
  }
  for (int c : colours) EXPECT_NEAR(c, kN / 7.0, 0.2 * kN / 7.0);
  for (int m : motions) EXPECT_NEAR(m, kN / 9.0, 0.25 * kN / 9.0);
  for (int k = 0; k < 40; ++k) EXPECT_GT(shapes[k], k < 4 ? 350 : 25) << ShapeName(AllShapes()[k]);
  EXPECT_NEAR(geometric, kN / 2.0, 0.05 * kN);
  EXPECT_NEAR(black, kN / 2.0, 0.05 * kN);
  for (int n : {plain, gradient, painted}) EXPECT_NEAR(n, kN / 6.0, 0.25 * kN / 6.0);

  SceneOptions no_clause;
  no_clause.allow_background_clause = false;
  for (int i = 0; i < 100; ++i) {
    const Attributes a = AttributesOf(RandomScene(5, static_cast<uint64_t>(i), no_clause));
    EXPECT_TRUE(a.background == BackgroundKind::kPlain && a.background_black);
  }
}

TEST(SynthScene, SceneForRealizesItsAttributes) {
  Attributes a;
  a.colour = Colour::kOrange;
  a.shape = {ShapeKind::kLetter, 'R'};
  a.motion = Motion::kShrinking;
  a.background = BackgroundKind::kGradient;
  a.background_black = false;
  const Scene s = SceneFor(a, 1, 2);
  EXPECT_EQ(Caption(s), "a orange letter R shrinking on a gradient background");
  EXPECT_EQ(Caption(SceneFor(a, 1, 2)), Caption(s));
  EXPECT_EQ(SceneFor(a, 1, 2).objects[0].x0, s.objects[0].x0);
  EXPECT_NE(SceneFor(a, 1, 3).objects[0].x0, s.objects[0].x0);
}

TEST(SynthRender, ShapesRangeAndErrors) {
  const Scene s = RandomScene(1, 0);
  const Video v = MustRender(s, 8, 24, 40, 3);
  EXPECT_EQ(v.ShapeString(), "3x8x24x40@3fps");
  for (float x : v.data) {
    ASSERT_GE(x, -1.0f);
    ASSERT_LE(x, 1.0f);
  }
  EXPECT_TRUE(Render(s, 1, 12, 20, 1).ok());  // a still image
  EXPECT_TRUE(Render(s, 0, 24, 40, 3).status().IsInvalidArgument());
  EXPECT_TRUE(Render(s, 8, 24, -1, 3).status().IsInvalidArgument());
  EXPECT_TRUE(Render(s, 8, 24, 40, 0).status().IsInvalidArgument());
  Scene bad = s;
  bad.objects[0].shape = {ShapeKind::kDigit, 'Q'};
  EXPECT_TRUE(Render(bad, 8, 24, 40, 3).status().IsInvalidArgument());
}

TEST(SynthRender, PlainBackgroundsAndPaletteAreExact) {
  Scene s;
  EXPECT_EQ(MustRender(s, 1, 12, 20, 1).data[0], -1.0f);  // black by default
  s.background.black = false;
  s.background.colour = Colour::kGreen;
  const Video v = MustRender(s, 1, 12, 20, 1);
  const auto g = ColourRgb(Colour::kGreen);
  for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(v.at(c, 0, 5, 7), 2 * g[c] - 1);
  // Object colours are far apart from each other.
  for (int a = 0; a < kNumColours; ++a) {
    for (int b = a + 1; b < kNumColours; ++b) {
      const auto p = ColourRgb(static_cast<Colour>(a)), q = ColourRgb(static_cast<Colour>(b));
      const double d = std::sqrt((p[0] - q[0]) * (p[0] - q[0]) + (p[1] - q[1]) * (p[1] - q[1]) +
                                 (p[2] - q[2]) * (p[2] - q[2]));
      EXPECT_GT(d, 0.34) << ColourName(static_cast<Colour>(a)) << " "
                         << ColourName(static_cast<Colour>(b));
    }
  }
}

TEST(SynthRender, GradientAndPaintedTonesStayAwayFromObjectColours) {
  int checked = 0;
  for (uint64_t i = 0; i < 400 && checked < 60; ++i) {
    const Scene s = RandomScene(9, i);
    if (s.background.kind == BackgroundKind::kPlain) continue;
    ++checked;
    Scene bg_only = s;
    bg_only.objects.clear();
    const Video v = MustRender(bg_only, 1, 24, 40, 1);
    for (int64_t y = 0; y < 24; ++y) {
      for (int64_t x = 0; x < 40; ++x) {
        for (int c = 0; c < kNumColours; ++c) {
          const auto p = ColourRgb(static_cast<Colour>(c));
          double d2 = 0;
          for (int ch = 0; ch < 3; ++ch) {
            const double e = (v.at(ch, 0, y, x) + 1) / 2 - p[ch];
            d2 += e * e;
          }
          EXPECT_GE(std::sqrt(d2), 0.3)
              << Caption(s) << " vs " << ColourName(static_cast<Colour>(c));
        }
      }
    }
  }
  EXPECT_EQ(checked, 60);
}

TEST(SynthRender, MotionIsTheSameAtEveryFrameRate) {
  for (uint64_t i = 0; i < 24; ++i) {
    const Scene s = RandomScene(21, i);
    const Video fast = MustRender(s, 64, 48, 80, 24);
    const Video slow = MustRender(s, 8, 48, 80, 3);
    float worst = 0;
    for (int64_t k = 0; k < 8; ++k) {
      for (int c = 0; c < 3; ++c) {
        for (int64_t y = 0; y < 48; ++y) {
          for (int64_t x = 0; x < 80; ++x) {
            worst = std::max(worst, std::abs(fast.at(c, 8 * k, y, x) - slow.at(c, k, y, x)));
          }
        }
      }
    }
    EXPECT_LT(worst, 1e-4f) << Caption(s);
    // And the clip really moves (or changes) unless it is still.
    if (AttributesOf(s).motion != Motion::kStill) {
      float change = 0;
      for (int64_t y = 0; y < 48; ++y) {
        for (int64_t x = 0; x < 80; ++x)
          change = std::max(change, std::abs(slow.at(0, 7, y, x) - slow.at(0, 0, y, x)) +
                                        std::abs(slow.at(2, 7, y, x) - slow.at(2, 0, y, x)));
      }
      EXPECT_GT(change, 0.5f) << Caption(s);
    }
  }
}

TEST(SynthRender, ObjectsStayInsideTheFrame) {
  // 33 frames at 12 fps cover [0, 8/3 s] including the clip's last instant. The one-pixel border
  // ring of every frame must be pure background (the scenes keep a 2% margin).
  for (uint64_t i = 0; i < 300; ++i) {
    const Scene s = RandomScene(31, i);
    Scene empty = s;
    empty.objects.clear();
    const Video v = MustRender(s, 33, 96, 160, 12);
    const Video bg = MustRender(empty, 1, 96, 160, 12);
    float worst = 0;
    for (int64_t t = 0; t < 33; ++t) {
      for (int c = 0; c < 3; ++c) {
        for (int64_t x = 0; x < 160; ++x) {
          worst = std::max(worst, std::abs(v.at(c, t, 0, x) - bg.at(c, 0, 0, x)));
          worst = std::max(worst, std::abs(v.at(c, t, 95, x) - bg.at(c, 0, 95, x)));
        }
        for (int64_t y = 0; y < 96; ++y) {
          worst = std::max(worst, std::abs(v.at(c, t, y, 0) - bg.at(c, 0, y, 0)));
          worst = std::max(worst, std::abs(v.at(c, t, y, 159) - bg.at(c, 0, y, 159)));
        }
      }
    }
    ASSERT_EQ(worst, 0.0f) << i << ": " << Caption(s);
  }
}

TEST(SynthRender, GrowShrinkAndRotateAreVisible) {
  for (uint64_t i = 0; i < 10; ++i) {
    Attributes a;
    a.colour = Colour::kWhite;
    a.shape = {ShapeKind::kSquare, 0};
    a.motion = Motion::kGrowing;
    // 9 frames at 3 fps: the last one is t = 8/3 s, the end of the clip.
    Video v = MustRender(SceneFor(a, 4, i), 9, 96, 160, 3);
    const double grow = WhiteArea(v, 8) / WhiteArea(v, 0);
    EXPECT_GT(grow, 1.5 * 1.5);  // side ×1.6 ± 8%
    EXPECT_LT(grow, 1.7 * 1.7);
    a.motion = Motion::kShrinking;
    v = MustRender(SceneFor(a, 4, i), 9, 96, 160, 3);
    const double shrink = WhiteArea(v, 8) / WhiteArea(v, 0);
    EXPECT_GT(shrink, 0.55 * 0.55);  // side ×0.6 ± 8%
    EXPECT_LT(shrink, 0.65 * 0.65);
  }
  // Rotation starts upright: the first frame equals the still object's.
  Attributes a;
  a.colour = Colour::kRed;
  a.shape = {ShapeKind::kLetter, 'F'};
  a.motion = Motion::kRotating;
  Scene rot = SceneFor(a, 8, 1);
  Scene still = rot;
  still.objects[0].motion = Motion::kStill;
  const Video r = MustRender(rot, 9, 96, 160, 3), s = MustRender(still, 9, 96, 160, 3);
  double first = 0, last = 0;
  for (int64_t y = 0; y < 96; ++y) {
    for (int64_t x = 0; x < 160; ++x) {
      first += std::abs(r.at(0, 0, y, x) - s.at(0, 0, y, x));
      last += std::abs(r.at(0, 8, y, x) - s.at(0, 8, y, x));
    }
  }
  EXPECT_EQ(first, 0.0);
  EXPECT_GT(last, 100.0);  // many pixels of a ~100°+ turn differ
}

TEST(SynthRender, GlyphsAreDistinctAtThirtyPixels) {
  // Every shape at 30 px tall (half-extent 15 px at 96 rows), centred, white on black.
  std::vector<Video> img;
  for (const Shape& sh : AllShapes())
    img.push_back(MustRender(OneObject(sh, Motion::kStill, 15.0f / 96), 1, 96, 160, 1));
  auto difference = [&](int a, int b) {
    double diff = 0, uni = 0;
    for (int64_t y = 0; y < 96; ++y) {
      for (int64_t x = 0; x < 160; ++x) {
        const double p = (img[a].at(0, 0, y, x) + 1) / 2, q = (img[b].at(0, 0, y, x) + 1) / 2;
        diff += std::abs(p - q);
        uni += std::max(p, q);
      }
    }
    return diff / uni;  // 0 identical … 1 disjoint
  };
  double min_any = 1;
  std::string min_pair;
  for (int a = 0; a < 40; ++a) {
    for (int b = a + 1; b < 40; ++b) {
      const double d = difference(a, b);
      if (d < min_any) {
        min_any = d;
        min_pair = ShapeName(AllShapes()[a]) + " / " + ShapeName(AllShapes()[b]);
      }
    }
  }
  std::printf("closest pair of shapes: %s (%.3f of the union differs)\n", min_pair.c_str(),
              min_any);
  EXPECT_GT(min_any, 0.08);  // O / Q: the tail is the whole difference
  auto idx = [](char c) { return c >= 'A' ? 4 + (c - 'A') : 30 + (c - '0'); };
  for (auto [p, q] : {std::pair{'O', '0'}, {'I', '1'}, {'S', '5'}, {'Z', '2'}, {'B', '8'}}) {
    const double d = difference(idx(p), idx(q));
    std::printf("  %c / %c: %.3f\n", p, q, d);
    EXPECT_GT(d, 0.3) << p << " vs " << q;
  }
}

TEST(SynthRender, TinyFinalStageClipsRender) {
  // 64 × 96 × 160 at 24 fps is the tiny preset's last stage; data is rendered on the fly. The
  // time is printed for the reader, not asserted (shared machines are noisy).
  constexpr int kN = 20;
  const std::clock_t start = std::clock();
  for (int i = 0; i < kN; ++i) {
    auto v = Render(RandomScene(2, static_cast<uint64_t>(i)), 64, 96, 160, 24);
    ASSERT_TRUE(v.ok());
  }
  const double ms = 1000.0 * static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC / kN;
  std::printf("render 64x96x160: %.1f ms CPU per clip (mean of %d)\n", ms, kN);
}

}  // namespace
}  // namespace vidfarm::synth
