// Random scenes and the continuous motion model. Every quantity is drawn from a SplitMix64 stream
// keyed by (seed, index), so a training step's data is a pure function of the two.
#include <algorithm>
#include <cmath>

#include "synth_internal.h"

namespace vidfarm::synth {
namespace internal {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kMargin = 0.02;  // kept free at every frame edge, in frame units

std::array<float, 3> Hsv(double h, double s, double v) {
  h = std::fmod(h, 1.0) * 6.0;
  const int i = static_cast<int>(h) % 6;
  const double f = h - std::floor(h);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r, g, b;
  switch (i) {
    case 0:
      r = v, g = t, b = p;
      break;
    case 1:
      r = q, g = v, b = p;
      break;
    case 2:
      r = p, g = v, b = t;
      break;
    case 3:
      r = p, g = q, b = v;
      break;
    case 4:
      r = t, g = p, b = v;
      break;
    default:
      r = v, g = p, b = q;
      break;
  }
  return {static_cast<float>(r), static_cast<float>(g), static_cast<float>(b)};
}

// Two muted tones (one dark, one mid) so gradient and painted backgrounds have clear structure
// yet stay far from every (bright, saturated) object colour.
void DrawTones(Rng& rng, Background* bg) {
  const auto dark = Hsv(rng.Uniform(), rng.Uniform(0.2, 0.6), rng.Uniform(0.08, 0.2));
  const auto mid = Hsv(rng.Uniform(), rng.Uniform(0.2, 0.6), rng.Uniform(0.4, 0.52));
  const bool swap = rng.Coin();
  for (int c = 0; c < 3; ++c) {
    bg->tone_a[c] = swap ? mid[c] : dark[c];
    bg->tone_b[c] = swap ? dark[c] : mid[c];
  }
  bg->texture_seed = rng.Next();
  bg->gradient_angle = static_cast<float>(rng.Uniform(0, 2 * kPi));
}

Object MakeObject(Rng& rng, Colour colour, const Shape& shape, Motion motion, double duration) {
  Object o;
  o.colour = colour;
  o.shape = shape;
  o.motion = motion;
  const bool glyph = shape.glyph != 0;
  const double d = duration > 0 ? duration : 8.0 / 3.0;
  double vx = 0, vy = 0, size_max;
  switch (motion) {
    case Motion::kLeft:
    case Motion::kRight: {
      o.size = static_cast<float>(glyph ? rng.Uniform(0.15, 0.22) : rng.Uniform(0.12, 0.2));
      const double travel = rng.Uniform(0.29, 0.4);  // frame widths over the clip
      o.speed = static_cast<float>(travel / d);
      vx = motion == Motion::kLeft ? -o.speed : o.speed;
      break;
    }
    case Motion::kUp:
    case Motion::kDown: {
      o.size = static_cast<float>(glyph ? rng.Uniform(0.14, 0.16) : rng.Uniform(0.11, 0.15));
      const double travel = rng.Uniform(0.28, 0.36);  // frame heights over the clip
      o.speed = static_cast<float>(travel / d);
      vy = motion == Motion::kUp ? -o.speed : o.speed;
      break;
    }
    case Motion::kDiagonal: {
      o.size = static_cast<float>(glyph ? rng.Uniform(0.14, 0.16) : rng.Uniform(0.11, 0.15));
      const double phi = rng.Uniform(kPi / 6, kPi / 3);
      o.dir_x = static_cast<float>(std::cos(phi) * (rng.Coin() ? 1 : -1));
      o.dir_y = static_cast<float>(std::sin(phi) * (rng.Coin() ? 1 : -1));
      o.speed = static_cast<float>(rng.Uniform(0.32, 0.42) / d);
      vx = o.speed * o.dir_x;
      vy = o.speed * o.dir_y;
      break;
    }
    case Motion::kRotating: {
      o.size = static_cast<float>(glyph ? rng.Uniform(0.15, 0.21) : rng.Uniform(0.12, 0.19));
      const double turns = rng.Uniform(0.27, 0.4);  // over the clip
      o.speed = static_cast<float>(turns / d * (rng.Coin() ? 1 : -1));
      break;
    }
    case Motion::kGrowing:
      o.size = static_cast<float>(glyph ? rng.Uniform(0.13, 0.15) : rng.Uniform(0.1, 0.15));
      o.speed = static_cast<float>(0.6 / d * rng.Uniform(0.92, 1.08));  // ≈ ×1.6 over the clip
      break;
    case Motion::kShrinking:
      o.size = static_cast<float>(glyph ? rng.Uniform(0.19, 0.25) : rng.Uniform(0.17, 0.24));
      o.speed = static_cast<float>(0.4 / d * rng.Uniform(0.92, 1.08));  // ≈ ×0.6 over the clip
      break;
    case Motion::kStill:
      o.size = static_cast<float>(glyph ? rng.Uniform(0.15, 0.22) : rng.Uniform(0.12, 0.2));
      break;
  }
  size_max = o.motion == Motion::kGrowing ? o.size * (1 + o.speed * d) : o.size;
  const int index = ShapeIndex(shape);
  const ShapeExtent& e = ExtentOf(index);
  double left = -e.x0, right = e.x1, top = -e.y0, bottom = e.y1;
  if (motion == Motion::kRotating) left = right = top = bottom = e.radius;
  const double a = kAspect;
  auto range = [&](double lo_ext, double hi_ext, double v, double* lo, double* hi) {
    *lo = kMargin + lo_ext - std::min(0.0, v * d);
    *hi = 1 - kMargin - hi_ext - std::max(0.0, v * d);
    if (*lo > *hi) *lo = *hi = 0.5 * (*lo + *hi);
  };
  double xlo, xhi, ylo, yhi;
  range(size_max * left * a, size_max * right * a, vx, &xlo, &xhi);
  range(size_max * top, size_max * bottom, vy, &ylo, &yhi);
  o.x0 = static_cast<float>(rng.Uniform(xlo, xhi));
  o.y0 = static_cast<float>(rng.Uniform(ylo, yhi));
  return o;
}

Scene Build(const Attributes& at, Rng& rng, double duration, int extra_objects) {
  Scene s;
  s.duration = duration;
  s.objects.push_back(MakeObject(rng, at.colour, at.shape, at.motion, duration));
  Background& bg = s.background;
  bg.kind = at.background;
  bg.black = at.background == BackgroundKind::kPlain ? at.background_black : false;
  bg.colour = at.background_colour;
  if (at.background != BackgroundKind::kPlain) DrawTones(rng, &bg);
  for (int i = 0; i < extra_objects; ++i) {
    const auto& shapes = AllShapes();
    Colour c = static_cast<Colour>(rng.Int(kNumColours));
    Motion m = static_cast<Motion>(rng.Int(kNumMotions));
    const Shape& sh = shapes[static_cast<size_t>(rng.Int(static_cast<int>(shapes.size())))];
    s.objects.push_back(MakeObject(rng, c, sh, m, duration));
  }
  return s;
}

}  // namespace

Pose PoseOf(const Object& o, double t) {
  Pose p{o.x0, o.y0, o.size, 0.0};
  switch (o.motion) {
    case Motion::kLeft:
      p.x -= o.speed * t;
      break;
    case Motion::kRight:
      p.x += o.speed * t;
      break;
    case Motion::kUp:
      p.y -= o.speed * t;
      break;
    case Motion::kDown:
      p.y += o.speed * t;
      break;
    case Motion::kDiagonal:
      p.x += o.speed * o.dir_x * t;
      p.y += o.speed * o.dir_y * t;
      break;
    case Motion::kRotating:
      p.angle = 2 * kPi * o.speed * t;
      break;
    case Motion::kGrowing:
      p.size = o.size * (1 + o.speed * t);
      break;
    case Motion::kShrinking:
      p.size = o.size * std::max(0.05, 1 - o.speed * t);
      break;
    case Motion::kStill:
      break;
  }
  return p;
}

}  // namespace internal

Scene RandomScene(uint64_t seed, uint64_t index, const SceneOptions& opts) {
  internal::Rng rng = internal::Rng::For(seed, index, 1);
  const auto& shapes = AllShapes();
  Attributes a;
  a.colour = static_cast<Colour>(rng.Int(kNumColours));
  // Half geometric shapes, half glyphs: the four shapes would otherwise be 10% of the data.
  a.shape = rng.Coin() ? shapes[static_cast<size_t>(rng.Int(4))]
                       : shapes[static_cast<size_t>(4 + rng.Int(36))];
  // A rotating circle looks still, so circles draw from the other eight motions.
  if (a.shape.kind == ShapeKind::kCircle) {
    const int m = rng.Int(kNumMotions - 1);
    a.motion = static_cast<Motion>(m >= static_cast<int>(Motion::kRotating) ? m + 1 : m);
  } else {
    a.motion = static_cast<Motion>(rng.Int(kNumMotions));
  }
  a.background = BackgroundKind::kPlain;
  a.background_black = true;
  if (opts.allow_background_clause && rng.Coin()) {
    switch (rng.Int(3)) {
      case 0: {
        a.background_black = false;
        const int c = rng.Int(kNumColours - 1);  // any colour but the object's
        a.background_colour = static_cast<Colour>(c >= static_cast<int>(a.colour) ? c + 1 : c);
        break;
      }
      case 1:
        a.background = BackgroundKind::kGradient;
        break;
      default:
        a.background = BackgroundKind::kPainted;
        break;
    }
  }
  return internal::Build(a, rng, opts.duration, std::max(0, opts.max_extra_objects));
}

Scene SceneFor(const Attributes& a, uint64_t seed, uint64_t index, double duration) {
  internal::Rng rng = internal::Rng::For(seed, index, 2);
  return internal::Build(a, rng, duration, 0);
}

Attributes AttributesOf(const Scene& scene) {
  Attributes a;
  if (!scene.objects.empty()) {
    const Object& o = scene.objects[0];
    a.colour = o.colour;
    a.shape = o.shape;
    a.motion = o.motion;
  }
  a.background = scene.background.kind;
  a.background_black = scene.background.kind == BackgroundKind::kPlain && scene.background.black;
  a.background_colour = scene.background.colour;
  return a;
}

ObjectPose PoseAt(const Object& o, double t) {
  const internal::Pose p = internal::PoseOf(o, t);
  return {p.x, p.y, p.size, p.angle};
}

}  // namespace vidfarm::synth
