// Words ↔ attributes, and the caption grammar.
#include <cctype>
#include <sstream>

#include "synth_internal.h"

namespace vidfarm::synth {
namespace {

constexpr const char* kColourWords[kNumColours] = {"red",   "green",  "blue",  "yellow",
                                                   "white", "purple", "orange"};
constexpr const char* kMotionWords[kNumMotions] = {"moving left", "moving right",      "moving up",
                                                   "moving down", "moving diagonally", "rotating",
                                                   "growing",     "shrinking",         "still"};

bool ColourFromWord(const std::string& w, Colour* c) {
  for (int i = 0; i < kNumColours; ++i) {
    if (w == kColourWords[i]) {
      *c = static_cast<Colour>(i);
      return true;
    }
  }
  return false;
}

std::string Quoted(const std::string& w) { return "'" + w + "'"; }

}  // namespace

std::string ColourName(Colour c) {
  const int i = static_cast<int>(c);
  return i >= 0 && i < kNumColours ? kColourWords[i] : "unknown";
}

std::string ShapeName(const Shape& s) {
  switch (s.kind) {
    case ShapeKind::kCircle:
      return "circle";
    case ShapeKind::kSquare:
      return "square";
    case ShapeKind::kTriangle:
      return "triangle";
    case ShapeKind::kStar:
      return "star";
    case ShapeKind::kLetter:
      return std::string("letter ") + s.glyph;
    case ShapeKind::kDigit:
      return std::string("digit ") + s.glyph;
  }
  return "unknown";
}

std::string MotionName(Motion m) {
  const int i = static_cast<int>(m);
  return i >= 0 && i < kNumMotions ? kMotionWords[i] : "unknown";
}

std::string BackgroundName(const Attributes& a) {
  switch (a.background) {
    case BackgroundKind::kPlain:
      return a.background_black ? "" : ColourName(a.background_colour) + " background";
    case BackgroundKind::kGradient:
      return "gradient";
    case BackgroundKind::kPainted:
      return "painted";
  }
  return "";
}

std::string Caption(const Attributes& a, bool with_motion) {
  // The grammar says "a" before every colour (also "orange"); ParseCaption accepts "an" too.
  std::string out = "a " + ColourName(a.colour) + " " + ShapeName(a.shape);
  if (with_motion) out += " " + MotionName(a.motion);
  switch (a.background) {
    case BackgroundKind::kPlain:
      if (!a.background_black) out += " on a " + ColourName(a.background_colour) + " background";
      break;
    case BackgroundKind::kGradient:
      out += " on a gradient background";
      break;
    case BackgroundKind::kPainted:
      out += " on a painted background";
      break;
  }
  return out;
}

std::string Caption(const Scene& scene, bool with_motion) {
  return Caption(AttributesOf(scene), with_motion);
}

Result<Attributes> ParseCaption(const std::string& caption) {
  std::vector<std::string> words;
  {
    std::string lower;
    for (char ch : caption)
      lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    // A trailing full stop is common in prompts; anything else stays an error.
    while (!lower.empty() &&
           (lower.back() == '.' || std::isspace(static_cast<unsigned char>(lower.back())))) {
      lower.pop_back();
    }
    std::istringstream in(lower);
    std::string w;
    while (in >> w) words.push_back(w);
  }
  auto fail = [&](const std::string& why) {
    return Status::InvalidArgument("caption '" + caption + "': " + why);
  };
  if (words.empty()) return fail("empty caption");
  size_t i = 0;
  auto next = [&]() -> const std::string* { return i < words.size() ? &words[i++] : nullptr; };

  Attributes a;
  const std::string* w = next();
  if (*w != "a" && *w != "an") return fail("expected 'a' at the start, got " + Quoted(*w));
  w = next();
  if (w == nullptr) return fail("missing colour after 'a'");
  if (!ColourFromWord(*w, &a.colour)) {
    return fail("unknown colour " + Quoted(*w) +
                " (expected red, green, blue, yellow, white, purple or orange)");
  }
  w = next();
  if (w == nullptr) return fail("missing shape after " + Quoted(ColourName(a.colour)));
  if (*w == "circle") {
    a.shape = {ShapeKind::kCircle, 0};
  } else if (*w == "square") {
    a.shape = {ShapeKind::kSquare, 0};
  } else if (*w == "triangle") {
    a.shape = {ShapeKind::kTriangle, 0};
  } else if (*w == "star") {
    a.shape = {ShapeKind::kStar, 0};
  } else if (*w == "letter" || *w == "digit") {
    const bool letter = *w == "letter";
    const std::string kind = *w;
    const std::string* g = next();
    if (g == nullptr) return fail("missing character after " + Quoted(kind));
    const char ch = g->size() == 1 ? (*g)[0] : 0;
    if (letter && std::isalpha(static_cast<unsigned char>(ch))) {
      a.shape = {ShapeKind::kLetter,
                 static_cast<char>(std::toupper(static_cast<unsigned char>(ch)))};
    } else if (!letter && ch >= '0' && ch <= '9') {
      a.shape = {ShapeKind::kDigit, ch};
    } else {
      return fail("unknown " + kind + " " + Quoted(*g) +
                  (letter ? " (expected one of A-Z)" : " (expected one of 0-9)"));
    }
  } else {
    return fail("unknown shape " + Quoted(*w) +
                " (expected circle, square, triangle, star, letter X or digit N)");
  }

  // Optional motion (absent for images: reads as still).
  w = next();
  if (w != nullptr && *w != "on") {
    if (*w == "moving") {
      const std::string* d = next();
      if (d == nullptr) return fail("missing direction after 'moving'");
      if (*d == "left") {
        a.motion = Motion::kLeft;
      } else if (*d == "right") {
        a.motion = Motion::kRight;
      } else if (*d == "up") {
        a.motion = Motion::kUp;
      } else if (*d == "down") {
        a.motion = Motion::kDown;
      } else if (*d == "diagonally") {
        a.motion = Motion::kDiagonal;
      } else {
        return fail("unknown direction " + Quoted(*d) +
                    " (expected left, right, up, down or diagonally)");
      }
    } else if (*w == "rotating") {
      a.motion = Motion::kRotating;
    } else if (*w == "growing") {
      a.motion = Motion::kGrowing;
    } else if (*w == "shrinking") {
      a.motion = Motion::kShrinking;
    } else if (*w == "still") {
      a.motion = Motion::kStill;
    } else {
      return fail("unknown motion " + Quoted(*w) +
                  " (expected moving left|right|up|down|diagonally, rotating, growing, shrinking, "
                  "still, or 'on a ... background')");
    }
    w = next();
  }
  if (w == nullptr) return a;

  // "on a {colour|gradient|painted} background"
  if (*w != "on")
    return fail("unexpected word " + Quoted(*w) + " (expected 'on a ... background')");
  w = next();
  if (w == nullptr || (*w != "a" && *w != "an")) {
    return fail(w == nullptr ? "missing 'a' after 'on'"
                             : "expected 'a' after 'on', got " + Quoted(*w));
  }
  w = next();
  if (w == nullptr) return fail("missing background after 'on a'");
  if (*w == "gradient") {
    a.background = BackgroundKind::kGradient;
  } else if (*w == "painted") {
    a.background = BackgroundKind::kPainted;
  } else if (*w == "black") {
    // The default background, named explicitly: same attributes as no clause.
    a.background = BackgroundKind::kPlain;
    a.background_black = true;
  } else if (ColourFromWord(*w, &a.background_colour)) {
    a.background = BackgroundKind::kPlain;
    a.background_black = false;
  } else {
    return fail("unknown background " + Quoted(*w) +
                " (expected a colour, 'gradient' or 'painted')");
  }
  const std::string* bg_word = w;
  w = next();
  if (w == nullptr) return fail("missing 'background' after " + Quoted(*bg_word));
  if (*w != "background") return fail("expected 'background', got " + Quoted(*w));
  w = next();
  if (w != nullptr) return fail("unexpected word " + Quoted(*w) + " after 'background'");
  return a;
}

}  // namespace vidfarm::synth
