// Captions: every word round-trips, the grammar's examples read as written, errors name the word.
#include <gtest/gtest.h>

#include <string>

#include "vidfarm/stage_models/synth.h"

namespace vidfarm::synth {
namespace {

bool SameAttributes(const Attributes& a, const Attributes& b) {
  if (a.colour != b.colour || a.shape != b.shape || a.motion != b.motion ||
      a.background != b.background) {
    return false;
  }
  if (a.background != BackgroundKind::kPlain) return true;
  if (a.background_black != b.background_black) return false;
  return a.background_black || a.background_colour == b.background_colour;
}

std::vector<Attributes> Backgrounds() {
  std::vector<Attributes> out;
  Attributes a;
  out.push_back(a);  // black (no clause)
  for (int c = 0; c < kNumColours; ++c) {
    a.background = BackgroundKind::kPlain;
    a.background_black = false;
    a.background_colour = static_cast<Colour>(c);
    out.push_back(a);
  }
  a = {};
  a.background = BackgroundKind::kGradient;
  a.background_black = false;
  out.push_back(a);
  a.background = BackgroundKind::kPainted;
  out.push_back(a);
  return out;
}

TEST(SynthCaption, ShapeListIsFixedAndInvertible) {
  const auto& shapes = AllShapes();
  ASSERT_EQ(shapes.size(), 40u);
  EXPECT_EQ(shapes[0].kind, ShapeKind::kCircle);
  EXPECT_EQ(shapes[3].kind, ShapeKind::kStar);
  EXPECT_EQ(shapes[4].glyph, 'A');
  EXPECT_EQ(shapes[29].glyph, 'Z');
  EXPECT_EQ(shapes[30].glyph, '0');
  EXPECT_EQ(shapes[39].glyph, '9');
  for (size_t i = 0; i < shapes.size(); ++i) EXPECT_EQ(ShapeIndex(shapes[i]), static_cast<int>(i));
  EXPECT_EQ(ShapeIndex({ShapeKind::kLetter, '3'}), -1);
  EXPECT_EQ(ShapeIndex({ShapeKind::kDigit, 'A'}), -1);
}

TEST(SynthCaption, GrammarExamplesReadAsWritten) {
  Attributes a;
  a.colour = Colour::kRed;
  a.shape = {ShapeKind::kCircle, 0};
  a.motion = Motion::kRight;
  EXPECT_EQ(Caption(a), "a red circle moving right");
  EXPECT_EQ(Caption(a, /*with_motion=*/false), "a red circle");

  a.colour = Colour::kYellow;
  a.shape = {ShapeKind::kLetter, 'K'};
  a.motion = Motion::kRotating;
  a.background_black = false;
  a.background_colour = Colour::kBlue;
  EXPECT_EQ(Caption(a), "a yellow letter K rotating on a blue background");
  EXPECT_EQ(BackgroundName(a), "blue background");

  a.colour = Colour::kGreen;
  a.shape = {ShapeKind::kDigit, '7'};
  a.motion = Motion::kDiagonal;
  a.background = BackgroundKind::kPainted;
  EXPECT_EQ(Caption(a), "a green digit 7 moving diagonally on a painted background");
  EXPECT_EQ(BackgroundName(a), "painted");
  a.background = BackgroundKind::kGradient;
  EXPECT_EQ(Caption(a, false), "a green digit 7 on a gradient background");
}

TEST(SynthCaption, EveryColourShapeMotionAndBackgroundRoundTrips) {
  int checked = 0;
  for (const Attributes& bg : Backgrounds()) {
    for (int c = 0; c < kNumColours; ++c) {
      for (const Shape& s : AllShapes()) {
        for (int m = 0; m < kNumMotions; ++m) {
          Attributes a = bg;
          a.colour = static_cast<Colour>(c);
          a.shape = s;
          a.motion = static_cast<Motion>(m);
          const std::string text = Caption(a);
          auto parsed = ParseCaption(text);
          ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status().ToString();
          ASSERT_TRUE(SameAttributes(a, *parsed)) << text << " -> " << Caption(*parsed);
          ++checked;
        }
        // Images: no motion words; they read back as still.
        Attributes a = bg;
        a.colour = static_cast<Colour>(c);
        a.shape = s;
        auto parsed = ParseCaption(Caption(a, false));
        ASSERT_TRUE(parsed.ok()) << Caption(a, false);
        EXPECT_EQ(parsed->motion, Motion::kStill);
        EXPECT_TRUE(SameAttributes(a, *parsed)) << Caption(a, false);
      }
    }
  }
  EXPECT_EQ(checked, 10 * 7 * 40 * 9);
}

TEST(SynthCaption, CaseAndSpacesDoNotMatter) {
  auto a = ParseCaption("  A  Green DIGIT 7 moving   DIAGONALLY on a PAINTED background. ");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->colour, Colour::kGreen);
  EXPECT_EQ(a->shape, (Shape{ShapeKind::kDigit, '7'}));
  EXPECT_EQ(a->motion, Motion::kDiagonal);
  EXPECT_EQ(a->background, BackgroundKind::kPainted);
  auto b = ParseCaption("an orange letter q shrinking");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->shape, (Shape{ShapeKind::kLetter, 'Q'}));
  EXPECT_TRUE(b->background_black);
}

TEST(SynthCaption, ErrorsNameTheOffendingWord) {
  struct Case {
    const char* caption;
    const char* word;
  };
  const Case cases[] = {
      {"a red circel moving right", "'circel'"},
      {"a pink circle", "'pink'"},
      {"the red circle", "'the'"},
      {"a red letter KK", "'kk'"},
      {"a red letter 5", "'5'"},
      {"a red digit x", "'x'"},
      {"a red circle moving sideways", "'sideways'"},
      {"a red circle dancing", "'dancing'"},
      {"a red circle on a plaid background", "'plaid'"},
      {"a red circle still on a blue wall", "'wall'"},
      {"a red circle still on the blue background", "'the'"},
      {"a red circle still on a blue background please", "'please'"},
      {"a red circle still please", "'please'"},
  };
  for (const Case& c : cases) {
    auto r = ParseCaption(c.caption);
    ASSERT_FALSE(r.ok()) << c.caption;
    EXPECT_TRUE(r.status().IsInvalidArgument()) << c.caption;
    EXPECT_NE(r.status().message().find(c.word), std::string::npos)
        << c.caption << " -> " << r.status().message();
  }
  for (const char* empty : {"", "   "}) {
    auto r = ParseCaption(empty);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("empty"), std::string::npos) << r.status().message();
  }
  for (const char* incomplete : {"a", "a red", "a red letter", "a red circle moving",
                                 "a red circle on a", "a red circle on a blue"}) {
    auto r = ParseCaption(incomplete);
    ASSERT_FALSE(r.ok()) << "'" << incomplete << "'";
    EXPECT_TRUE(r.status().IsInvalidArgument());
    EXPECT_NE(r.status().message().find("missing"), std::string::npos)
        << incomplete << " -> " << r.status().message();
  }
}

}  // namespace
}  // namespace vidfarm::synth
