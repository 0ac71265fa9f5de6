// Pieces shared by the synthetic world's renderer, scene generator and analyzer (not public).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "vidfarm/common/hash.h"
#include "vidfarm/stage_models/synth.h"

namespace vidfarm::synth::internal {

// H/W of every cascade shape (24×40 … 768×1280). Scenes keep objects inside a frame of this
// aspect; other aspects render fine but an object may then touch the border.
inline constexpr double kAspect = 0.6;

// Stroke half-width of the built-in font in object-local units (glyphs span y in [-1, 1]).
inline constexpr float kStrokeHalfWidth = 0.12f;

using Rgb = std::array<float, 3>;  // [0, 1]

// Deterministic stream: every draw is a SplitMix64 step, so results match on every platform.
class Rng {
 public:
  explicit Rng(uint64_t state) : state_(state) {}
  static Rng For(uint64_t seed, uint64_t index, uint64_t salt) {
    uint64_t s = seed ^ (0xA0761D6478BD642Full * (salt + 1));
    uint64_t a = SplitMix64(&s);
    uint64_t t = index ^ a;
    return Rng(SplitMix64(&t) ^ (salt * 0xE7037ED1A0B428DBull));
  }
  uint64_t Next() { return SplitMix64(&state_); }
  // [0, 1) from the top 53 bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  int Int(int n) { return static_cast<int>(Next() % static_cast<uint64_t>(n)); }
  bool Coin(double p = 0.5) { return Uniform() < p; }

 private:
  uint64_t state_;
};

// Object-local geometry of shape `index` (AllShapes order): a signed distance, negative inside.
// Exact outside; inside it is a lower bound on the depth, which is all the adaptive
// anti-aliasing needs (a pixel farther than its half-diagonal from the boundary is uniform).
float ShapeSdf(int index, float x, float y);

struct ShapeExtent {
  float x0, x1, y0, y1;  // tight upright box, local units
  float radius;          // max distance of any inside point from the origin (rotation bound)
};
const ShapeExtent& ExtentOf(int index);

// Pose of an object at time t: centre in normalized coordinates, half-extent as a fraction of the
// frame height, angle in radians (positive turns clockwise on screen, y pointing down).
struct Pose {
  double x, y, size, angle;
};
Pose PoseOf(const Object& o, double t);

// A pose in pixels: centre, pixels per local unit, and the angle's cosine and sine.
struct PixelPose {
  double cx, cy, scale, cos_a, sin_a;
};
PixelPose ToPixels(const Pose& p, int64_t height, int64_t width);
// Fraction of the pixel square (px, py)–(px+1, py+1) the shape covers (supersampled near edges).
float Coverage(int shape, const PixelPose& pose, int64_t px, int64_t py);

// Background as three height×width planes (R, G, B) in [0, 1].
// Pixel box [x0, x1) × [y0, y1) that contains the shape at this pose, clipped to the frame.
void PixelBox(int shape, const PixelPose& pose, int64_t height, int64_t width, int64_t* x0,
              int64_t* x1, int64_t* y0, int64_t* y1);

std::vector<float> RenderBackground(const Background& bg, int64_t height, int64_t width);

}  // namespace vidfarm::synth::internal
