// The 40 shapes as signed-distance functions in object-local coordinates (x right, y down,
// half-extent 1): circle, square, triangle and star as polygons, and a small stroke font of our
// own for A–Z and 0–9 (straight segments and circular arcs of one thickness). The font keeps the
// usual confusable pairs apart: O is a wide ring and 0 a narrow slashed one, I has two bars and 1
// a flag, S is all curves and 5 has a flat top and a stem, Z has a flat top and 2 a round one,
// B has a straight stem and 8 is two rings.
#include <algorithm>
#include <cmath>

#include "synth_internal.h"

namespace vidfarm::synth {
namespace internal {
namespace {

constexpr float kPi = 3.14159265358979f;

struct Prim {
  bool arc = false;
  // Segment: (x0, y0) → (x1, y1). Arc: centre (x0, y0), radius r, from angle a0 to a1 (degrees,
  // 0° = +x, 90° = +y, i.e. down).
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  float r = 0;
  // Arc helpers: the mid direction, cos of the half span, and both end points.
  float mx = 0, my = 0, cos_half = 0;
  float ex0 = 0, ey0 = 0, ex1 = 0, ey1 = 0;
  bool full = false;
};

Prim Seg(float x0, float y0, float x1, float y1) {
  Prim p;
  p.x0 = x0, p.y0 = y0, p.x1 = x1, p.y1 = y1;
  return p;
}

Prim Arc(float cx, float cy, float r, float deg0, float deg1) {
  Prim p;
  p.arc = true;
  p.x0 = cx, p.y0 = cy, p.r = r;
  const float a0 = deg0 * kPi / 180, a1 = deg1 * kPi / 180;
  const float mid = 0.5f * (a0 + a1), half = 0.5f * (a1 - a0);
  p.full = half >= kPi - 1e-4f;
  p.mx = std::cos(mid), p.my = std::sin(mid), p.cos_half = std::cos(half);
  p.ex0 = cx + r * std::cos(a0), p.ey0 = cy + r * std::sin(a0);
  p.ex1 = cx + r * std::cos(a1), p.ey1 = cy + r * std::sin(a1);
  return p;
}

float SegDist(float px, float py, float ax, float ay, float bx, float by) {
  const float dx = bx - ax, dy = by - ay;
  const float wx = px - ax, wy = py - ay;
  const float len2 = dx * dx + dy * dy;
  float t = len2 > 0 ? (wx * dx + wy * dy) / len2 : 0.0f;
  t = std::clamp(t, 0.0f, 1.0f);
  const float ux = wx - t * dx, uy = wy - t * dy;
  return std::sqrt(ux * ux + uy * uy);
}

float PrimDist(const Prim& p, float x, float y) {
  if (!p.arc) return SegDist(x, y, p.x0, p.y0, p.x1, p.y1);
  const float vx = x - p.x0, vy = y - p.y0;
  const float len = std::sqrt(vx * vx + vy * vy);
  // Inside the arc's angular wedge the nearest point is radial; outside it is an end point.
  if (p.full || vx * p.mx + vy * p.my >= len * p.cos_half) return std::abs(len - p.r);
  const float d0 = std::hypot(x - p.ex0, y - p.ey0);
  const float d1 = std::hypot(x - p.ex1, y - p.ey1);
  return std::min(d0, d1);
}

std::vector<Prim> Glyph(char c) {
  constexpr float T = -0.88f, B = 0.88f;
  switch (c) {
    case 'A':
      return {Seg(-0.6f, B, 0, T), Seg(0, T, 0.6f, B), Seg(-0.4f, 0.3f, 0.4f, 0.3f)};
    case 'B':
      return {Seg(-0.55f, T, -0.55f, B),          Seg(-0.55f, T, 0.12f, T),
              Arc(0.12f, -0.46f, 0.42f, -90, 90), Seg(-0.55f, -0.04f, 0.16f, -0.04f),
              Arc(0.16f, 0.42f, 0.46f, -90, 90),  Seg(0.16f, B, -0.55f, B)};
    case 'C':
      return {Arc(0.05f, -0.3f, 0.58f, 180, 330), Seg(-0.53f, -0.3f, -0.53f, 0.3f),
              Arc(0.05f, 0.3f, 0.58f, 30, 180)};
    case 'D':
      return {Seg(-0.55f, T, -0.55f, B),           Seg(-0.55f, T, -0.05f, T),
              Arc(-0.05f, -0.3f, 0.58f, 270, 360), Seg(0.53f, -0.3f, 0.53f, 0.3f),
              Arc(-0.05f, 0.3f, 0.58f, 0, 90),     Seg(-0.05f, B, -0.55f, B)};
    case 'E':
      return {Seg(-0.5f, T, -0.5f, B), Seg(-0.5f, T, 0.5f, T), Seg(-0.5f, 0, 0.35f, 0),
              Seg(-0.5f, B, 0.5f, B)};
    case 'F':
      return {Seg(-0.5f, T, -0.5f, B), Seg(-0.5f, T, 0.5f, T), Seg(-0.5f, 0, 0.35f, 0)};
    case 'G':
      return {Arc(0.05f, -0.3f, 0.58f, 180, 330), Seg(-0.53f, -0.3f, -0.53f, 0.3f),
              Arc(0.05f, 0.3f, 0.58f, 0, 180), Seg(0.63f, 0.3f, 0.63f, 0.08f),
              Seg(0.63f, 0.08f, 0.1f, 0.08f)};
    case 'H':
      return {Seg(-0.55f, T, -0.55f, B), Seg(0.55f, T, 0.55f, B), Seg(-0.55f, 0, 0.55f, 0)};
    case 'I':
      return {Seg(0, T, 0, B), Seg(-0.32f, T, 0.32f, T), Seg(-0.32f, B, 0.32f, B)};
    case 'J':
      return {Seg(-0.15f, T, 0.5f, T), Seg(0.5f, T, 0.5f, 0.42f), Arc(0.04f, 0.42f, 0.46f, 0, 180)};
    case 'K':
      return {Seg(-0.5f, T, -0.5f, B), Seg(0.55f, T, -0.5f, 0.2f), Seg(-0.12f, -0.19f, 0.58f, B)};
    case 'L':
      return {Seg(-0.5f, T, -0.5f, B), Seg(-0.5f, B, 0.5f, B)};
    case 'M':
      return {Seg(-0.72f, B, -0.72f, T), Seg(-0.72f, T, 0, 0.35f), Seg(0, 0.35f, 0.72f, T),
              Seg(0.72f, T, 0.72f, B)};
    case 'N':
      return {Seg(-0.55f, B, -0.55f, T), Seg(-0.55f, T, 0.55f, B), Seg(0.55f, B, 0.55f, T)};
    case 'O':
      return {Arc(0, -0.24f, 0.64f, 180, 360), Arc(0, 0.24f, 0.64f, 0, 180),
              Seg(-0.64f, -0.24f, -0.64f, 0.24f), Seg(0.64f, -0.24f, 0.64f, 0.24f)};
    case 'P':
      return {Seg(-0.55f, T, -0.55f, B), Seg(-0.55f, T, 0.08f, T),
              Arc(0.08f, -0.43f, 0.45f, -90, 90), Seg(0.08f, 0.02f, -0.55f, 0.02f)};
    case 'Q':
      return {Arc(0, -0.24f, 0.64f, 180, 360), Arc(0, 0.24f, 0.64f, 0, 180),
              Seg(-0.64f, -0.24f, -0.64f, 0.24f), Seg(0.64f, -0.24f, 0.64f, 0.24f),
              Seg(0.2f, 0.45f, 0.7f, B)};
    case 'R':
      return {Seg(-0.55f, T, -0.55f, B), Seg(-0.55f, T, 0.08f, T),
              Arc(0.08f, -0.43f, 0.45f, -90, 90), Seg(0.08f, 0.02f, -0.55f, 0.02f),
              Seg(0.0f, 0.02f, 0.55f, B)};
    case 'S':
      return {Arc(0, -0.44f, 0.44f, 90, 330), Arc(0, 0.44f, 0.44f, -90, 150)};
    case 'T':
      return {Seg(-0.62f, T, 0.62f, T), Seg(0, T, 0, B)};
    case 'U':
      return {Seg(-0.55f, T, -0.55f, 0.33f), Seg(0.55f, T, 0.55f, 0.33f),
              Arc(0, 0.33f, 0.55f, 0, 180)};
    case 'V':
      return {Seg(-0.62f, T, 0, B), Seg(0, B, 0.62f, T)};
    case 'W':
      return {Seg(-0.8f, T, -0.4f, B), Seg(-0.4f, B, 0, -0.3f), Seg(0, -0.3f, 0.4f, B),
              Seg(0.4f, B, 0.8f, T)};
    case 'X':
      return {Seg(-0.58f, T, 0.58f, B), Seg(0.58f, T, -0.58f, B)};
    case 'Y':
      return {Seg(-0.6f, T, 0, 0), Seg(0.6f, T, 0, 0), Seg(0, 0, 0, B)};
    case 'Z':
      return {Seg(-0.55f, T, 0.55f, T), Seg(0.55f, T, -0.55f, B), Seg(-0.55f, B, 0.55f, B)};
    case '0':
      return {Arc(0, -0.46f, 0.42f, 180, 360), Arc(0, 0.46f, 0.42f, 0, 180),
              Seg(-0.42f, -0.46f, -0.42f, 0.46f), Seg(0.42f, -0.46f, 0.42f, 0.46f),
              Seg(-0.24f, 0.42f, 0.24f, -0.42f)};
    case '1':
      return {Seg(0.08f, T, 0.08f, B), Seg(0.08f, T, -0.4f, -0.45f)};
    case '2':
      return {Arc(0, -0.42f, 0.46f, 180, 390), Seg(0.398f, -0.19f, -0.52f, B),
              Seg(-0.52f, B, 0.55f, B)};
    case '3':
      return {Arc(0, -0.44f, 0.44f, 210, 450), Arc(0, 0.44f, 0.44f, -90, 150)};
    case '4':
      return {Seg(0.28f, B, 0.28f, T), Seg(0.28f, T, -0.58f, 0.35f),
              Seg(-0.58f, 0.35f, 0.6f, 0.35f)};
    case '5':
      return {Seg(0.5f, T, -0.42f, T), Seg(-0.42f, T, -0.42f, -0.1f),
              Seg(-0.42f, -0.1f, 0.02f, -0.1f), Arc(0.02f, 0.39f, 0.49f, -90, 145)};
    case '6':
      return {Arc(0, 0.4f, 0.48f, 0, 360), Arc(0.8f, 0.4f, 1.28f, 180, 250)};
    case '7':
      return {Seg(-0.55f, T, 0.55f, T), Seg(0.55f, T, -0.15f, B)};
    case '8':
      return {Arc(0, -0.47f, 0.41f, 0, 360), Arc(0, 0.43f, 0.45f, 0, 360)};
    case '9':
      return {Arc(0, -0.4f, 0.48f, 0, 360), Arc(-0.8f, -0.4f, 1.28f, 0, 70)};
    default:
      return {};
  }
}

struct Polygon {
  std::vector<float> xs, ys;
};

float PolygonSdf(const Polygon& poly, float x, float y) {
  const size_t n = poly.xs.size();
  float d = 1e9f;
  bool inside = false;
  for (size_t i = 0, j = n - 1; i < n; j = i++) {
    const float xi = poly.xs[i], yi = poly.ys[i], xj = poly.xs[j], yj = poly.ys[j];
    d = std::min(d, SegDist(x, y, xj, yj, xi, yi));
    if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
  }
  return inside ? -d : d;
}

struct Geometry {
  std::vector<std::vector<Prim>> glyphs;  // by shape index (empty for geometric shapes)
  Polygon square, triangle, star;
  std::vector<ShapeExtent> extents;
};

ShapeExtent MeasureExtent(int index);

const Geometry& Geo() {
  static const Geometry* geo = [] {
    auto* g = new Geometry;
    const auto& shapes = AllShapes();
    g->glyphs.resize(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (shapes[i].glyph != 0) g->glyphs[i] = Glyph(shapes[i].glyph);
    }
    g->square = {{-1, 1, 1, -1}, {-1, -1, 1, 1}};
    g->triangle = {{0, 1, -1}, {-1, 1, 1}};
    for (int k = 0; k < 10; ++k) {
      const float r = k % 2 == 0 ? 1.0f : 0.4f;
      const float a = -kPi / 2 + k * kPi / 5;
      g->star.xs.push_back(r * std::cos(a));
      g->star.ys.push_back(r * std::sin(a));
    }
    return g;
  }();
  return *geo;
}

ShapeExtent MeasureExtent(int index) {
  // Sampled on a fine grid: exact enough for bounding boxes (padded by one cell).
  ShapeExtent e{1e9f, -1e9f, 1e9f, -1e9f, 0};
  constexpr int kN = 240;
  constexpr float kL = 1.2f, kStep = 2 * kL / kN;
  for (int iy = 0; iy <= kN; ++iy) {
    for (int ix = 0; ix <= kN; ++ix) {
      const float x = -kL + ix * kStep, y = -kL + iy * kStep;
      if (ShapeSdf(index, x, y) > 0) continue;
      e.x0 = std::min(e.x0, x), e.x1 = std::max(e.x1, x);
      e.y0 = std::min(e.y0, y), e.y1 = std::max(e.y1, y);
      e.radius = std::max(e.radius, std::sqrt(x * x + y * y));
    }
  }
  e.x0 -= kStep, e.y0 -= kStep, e.x1 += kStep, e.y1 += kStep, e.radius += kStep;
  return e;
}

}  // namespace

float ShapeSdf(int index, float x, float y) {
  const Geometry& g = Geo();
  switch (index) {
    case 0:
      return std::sqrt(x * x + y * y) - 1.0f;
    case 1:
      return PolygonSdf(g.square, x, y);
    case 2:
      return PolygonSdf(g.triangle, x, y);
    case 3:
      return PolygonSdf(g.star, x, y);
    default:
      break;
  }
  if (index < 0 || index >= static_cast<int>(g.glyphs.size())) return 1e9f;
  float d = 1e9f;
  for (const Prim& p : g.glyphs[index]) d = std::min(d, PrimDist(p, x, y));
  return d - kStrokeHalfWidth;
}

const ShapeExtent& ExtentOf(int index) {
  static const std::vector<ShapeExtent>* extents = [] {
    auto* v = new std::vector<ShapeExtent>;
    for (size_t i = 0; i < AllShapes().size(); ++i)
      v->push_back(MeasureExtent(static_cast<int>(i)));
    return v;
  }();
  return (*extents)[static_cast<size_t>(std::clamp(index, 0, 39))];
}

PixelPose ToPixels(const Pose& p, int64_t height, int64_t width) {
  PixelPose q;
  q.cx = p.x * static_cast<double>(width);
  q.cy = p.y * static_cast<double>(height);
  q.scale = p.size * static_cast<double>(height);
  q.cos_a = std::cos(p.angle);
  q.sin_a = std::sin(p.angle);
  return q;
}

float Coverage(int shape, const PixelPose& pose, int64_t px, int64_t py) {
  // Local coordinates of a pixel-space point: rotate back by the pose angle, then unscale.
  const double inv = 1.0 / std::max(pose.scale, 1e-6);
  auto local = [&](double sx, double sy, float* lx, float* ly) {
    const double dx = sx - pose.cx, dy = sy - pose.cy;
    *lx = static_cast<float>((pose.cos_a * dx + pose.sin_a * dy) * inv);
    *ly = static_cast<float>((-pose.sin_a * dx + pose.cos_a * dy) * inv);
  };
  float lx, ly;
  local(px + 0.5, py + 0.5, &lx, &ly);
  const float d = ShapeSdf(shape, lx, ly);
  const float half_diag = static_cast<float>(0.7072 * inv);
  if (d > half_diag) return 0.0f;
  if (d < -half_diag) return 1.0f;
  // Near an edge: 4×4 stratified samples.
  int inside = 0;
  for (int sy = 0; sy < 4; ++sy) {
    for (int sx = 0; sx < 4; ++sx) {
      local(px + (sx + 0.5) / 4.0, py + (sy + 0.5) / 4.0, &lx, &ly);
      inside += ShapeSdf(shape, lx, ly) <= 0 ? 1 : 0;
    }
  }
  return static_cast<float>(inside) / 16.0f;
}

}  // namespace internal

const std::vector<Shape>& AllShapes() {
  static const std::vector<Shape>* shapes = [] {
    auto* v = new std::vector<Shape>;
    v->push_back({ShapeKind::kCircle, 0});
    v->push_back({ShapeKind::kSquare, 0});
    v->push_back({ShapeKind::kTriangle, 0});
    v->push_back({ShapeKind::kStar, 0});
    for (char c = 'A'; c <= 'Z'; ++c) v->push_back({ShapeKind::kLetter, c});
    for (char c = '0'; c <= '9'; ++c) v->push_back({ShapeKind::kDigit, c});
    return v;
  }();
  return *shapes;
}

int ShapeIndex(const Shape& s) {
  switch (s.kind) {
    case ShapeKind::kCircle:
      return 0;
    case ShapeKind::kSquare:
      return 1;
    case ShapeKind::kTriangle:
      return 2;
    case ShapeKind::kStar:
      return 3;
    case ShapeKind::kLetter:
      return s.glyph >= 'A' && s.glyph <= 'Z' ? 4 + (s.glyph - 'A') : -1;
    case ShapeKind::kDigit:
      return s.glyph >= '0' && s.glyph <= '9' ? 30 + (s.glyph - '0') : -1;
  }
  return -1;
}

std::array<float, 3> ColourRgb(Colour c) {
  // Saturated and bright, pairwise ≥ 0.35 apart in RGB; background tones stay at or below 0.52 in
  // every channel, so an object never blends into a gradient or painted background.
  switch (c) {
    case Colour::kRed:
      return {0.92f, 0.1f, 0.1f};
    case Colour::kGreen:
      return {0.1f, 0.8f, 0.2f};
    case Colour::kBlue:
      return {0.15f, 0.3f, 1.0f};
    case Colour::kYellow:
      return {0.95f, 0.9f, 0.1f};
    case Colour::kWhite:
      return {1.0f, 1.0f, 1.0f};
    case Colour::kPurple:
      return {0.62f, 0.15f, 0.88f};
    case Colour::kOrange:
      return {1.0f, 0.55f, 0.05f};
  }
  return {1.0f, 1.0f, 1.0f};
}

}  // namespace vidfarm::synth
