// The synthetic world: captioned clips of coloured shapes, letters and digits that move over
// plain, gradient or "painted" backgrounds, rendered anti-aliased at any size and frame rate from
// one scene description. Every cascade stage gets exact ground truth (the same scene rendered at
// that stage's shape), the trainer gets unlimited data, and the analyzer reads a video back into
// the caption's attributes so evaluation can score text alignment. No LibTorch here.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"

namespace vidfarm::synth {

enum class Colour : uint8_t { kRed, kGreen, kBlue, kYellow, kWhite, kPurple, kOrange };
inline constexpr int kNumColours = 7;
// The palette in [0, 1] RGB (saturated, bright; background tones are darker and muted).
std::array<float, 3> ColourRgb(Colour c);

// A shape is one of four geometric kinds or a glyph (letters A–Z, digits 0–9).
enum class ShapeKind : uint8_t { kCircle, kSquare, kTriangle, kStar, kLetter, kDigit };
struct Shape {
  ShapeKind kind = ShapeKind::kCircle;
  char glyph = 0;  // 'A'..'Z' for kLetter, '0'..'9' for kDigit, 0 otherwise
  bool operator==(const Shape& o) const { return kind == o.kind && glyph == o.glyph; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
};
// All 40 shapes in a fixed order: circle, square, triangle, star, A..Z, 0..9. ShapeIndex inverts.
const std::vector<Shape>& AllShapes();
int ShapeIndex(const Shape& s);

enum class Motion : uint8_t {
  kLeft,
  kRight,
  kUp,
  kDown,
  kDiagonal,
  kRotating,
  kGrowing,
  kShrinking,
  kStill
};
inline constexpr int kNumMotions = 9;

enum class BackgroundKind : uint8_t { kPlain, kGradient, kPainted };
struct Background {
  BackgroundKind kind = BackgroundKind::kPlain;
  bool black = true;              // kPlain with no colour named in the caption: black
  Colour colour = Colour::kBlue;  // kPlain when !black
  // kGradient / kPainted: the two tones and the texture seed are part of the scene, not the
  // caption (the caption says only "gradient" / "painted").
  float tone_a[3] = {0, 0, 0};
  float tone_b[3] = {0, 0, 0};
  uint64_t texture_seed = 0;
  float gradient_angle = 0;  // radians
};

// One object. Positions are in normalized frame coordinates: x in [0,1] left→right, y in [0,1]
// top→bottom; size is the object's half-extent as a fraction of the frame height. Time runs in
// seconds over the clip; the object's pose at time t is a pure function of these fields, so any
// frame rate samples the same continuous motion.
struct Object {
  Colour colour = Colour::kRed;
  Shape shape;
  Motion motion = Motion::kStill;
  float x0 = 0.5f, y0 = 0.5f;  // centre at t = 0
  float size = 0.2f;           // half-extent / frame height at t = 0
  float speed = 0.15f;         // frame widths (x) or heights (y) per second; rad/s ×(1/2π) for
                               // rotation; relative size change per second for grow/shrink
  float dir_x = 0, dir_y = 0;  // unit direction for kDiagonal (both components non-zero)
  // Rotation starts upright (angle 0) so a glyph's first frame reads as itself.
};

// Where an object is at time t (seconds): centre (normalized), half-extent / frame height, and
// angle in radians (positive turns clockwise on screen).
struct ObjectPose {
  double x = 0.5, y = 0.5, size = 0.2, angle = 0;
};
ObjectPose PoseAt(const Object& o, double t);

struct Scene {
  std::vector<Object> objects;  // drawn in order (later on top); the caption names objects[0]
  Background background;
  double duration = 8.0 / 3.0;  // seconds; every stage covers the same span (8 frames @ 3 fps)
};

// Ground-truth attributes of a caption / analyzed video (the first object).
struct Attributes {
  Colour colour = Colour::kRed;
  Shape shape;
  Motion motion = Motion::kStill;
  BackgroundKind background = BackgroundKind::kPlain;
  bool background_black = true;              // kPlain only
  Colour background_colour = Colour::kBlue;  // kPlain && !background_black
};

// Words ↔ values: "red", "circle", "letter K", "digit 7", "moving right", "moving diagonally",
// "rotating", "growing", "shrinking", "still".
std::string ColourName(Colour c);
std::string ShapeName(const Shape& s);
std::string MotionName(Motion m);
std::string BackgroundName(const Attributes& a);  // "", "blue background", "gradient", "painted"

// The caption grammar: "a {colour} {shape} {motion}" and
// "a {colour} {shape} {motion} on a {colour|gradient|painted} background".
// Images (single frames) use "a {colour} {shape}" with an optional background clause.
std::string Caption(const Attributes& a, bool with_motion = true);
std::string Caption(const Scene& scene, bool with_motion = true);
// Parses any caption of the grammar (case-insensitive, extra spaces allowed). InvalidArgument
// naming the first word it could not place.
Result<Attributes> ParseCaption(const std::string& caption);

// Deterministic random scenes. `index` selects the scene within the stream of `seed`, so data for
// step s of a training run is a pure function of (seed, s) and resume reproduces it exactly.
struct SceneOptions {
  bool allow_background_clause = true;  // else always the default black background
  int max_extra_objects = 0;            // distractor objects beyond the captioned one (0 for now)
  double duration = 8.0 / 3.0;
};
Scene RandomScene(uint64_t seed, uint64_t index, const SceneOptions& opts = {});
// A scene that realizes the given attributes (positions, speed, tones drawn from (seed, index)).
Scene SceneFor(const Attributes& a, uint64_t seed, uint64_t index, double duration = 8.0 / 3.0);
Attributes AttributesOf(const Scene& scene);

// Renders the scene anti-aliased (supersampled) into a 3×frames×height×width Video in [-1,1] with
// the given fps; frame i shows time i/fps (frames/fps should equal scene.duration for the
// cascade's shapes, but any values work). frames == 1 renders a still image at t = 0.
Result<Video> Render(const Scene& scene, int64_t frames, int64_t height, int64_t width, double fps);

// Reads a video back into attributes. Deterministic; works on any size ≥ 12×20 and any frame count
// ≥ 2 (motion of a 1-frame video reads as kStill).
struct Analysis {
  Attributes attributes;
  // Per-frame tracking, for temporal consistency: for each frame, whether the object found in it
  // has the clip's colour and shape.
  std::vector<bool> frame_consistent;
  double foreground_fraction = 0;  // mean fraction of pixels classified as object
};
Result<Analysis> Analyze(const Video& video);

// Least-squares slope of ys over xs (0 with fewer than two points or constant xs): how the
// analyzer reads a track's motion, and `vidfarm eval` the drift of a base's guess.
double Slope(const std::vector<double>& xs, const std::vector<double>& ys);

}  // namespace vidfarm::synth
