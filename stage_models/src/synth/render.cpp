// The renderer: background planes once per clip, then each object composited per frame inside its
// bounding box with coverage from the shape's signed distance (4×4 supersampling only at edges).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "synth_internal.h"

namespace vidfarm::synth {
namespace internal {
namespace {

float Lattice(uint64_t seed, int64_t ix, int64_t iy) {
  uint64_t s = seed ^ (static_cast<uint64_t>(ix) * 0x9E3779B97F4A7C15ull) ^
               (static_cast<uint64_t>(iy) * 0xC2B2AE3D27D4EB4Full);
  return static_cast<float>(SplitMix64(&s) >> 40) * (1.0f / 16777216.0f);
}

// Smooth value noise in [0, 1]: lattice values blended with the quintic fade.
float ValueNoise(uint64_t seed, double x, double y) {
  const double fx = std::floor(x), fy = std::floor(y);
  const auto ix = static_cast<int64_t>(fx), iy = static_cast<int64_t>(fy);
  auto fade = [](double t) { return t * t * t * (t * (t * 6 - 15) + 10); };
  const double u = fade(x - fx), v = fade(y - fy);
  const double a = Lattice(seed, ix, iy), b = Lattice(seed, ix + 1, iy);
  const double c = Lattice(seed, ix, iy + 1), d = Lattice(seed, ix + 1, iy + 1);
  return static_cast<float>((a + (b - a) * u) * (1 - v) + (c + (d - c) * u) * v);
}

}  // namespace

std::vector<float> RenderBackground(const Background& bg, int64_t height, int64_t width) {
  const int64_t plane = height * width;
  std::vector<float> out(static_cast<size_t>(3 * plane), 0.0f);
  if (bg.kind == BackgroundKind::kPlain) {
    if (bg.black) return out;
    const auto rgb = ColourRgb(bg.colour);
    for (int c = 0; c < 3; ++c) std::fill_n(out.begin() + c * plane, plane, rgb[c]);
    return out;
  }
  // Coordinates in frame heights at the cascade's aspect, so every size shows the same picture.
  auto coord = [&](int64_t px, int64_t py, double* X, double* Y) {
    *X = (px + 0.5) / static_cast<double>(width) / kAspect;
    *Y = (py + 0.5) / static_cast<double>(height);
  };
  const double ca = std::cos(bg.gradient_angle), sa = std::sin(bg.gradient_angle);
  double pmin = 1e9, pmax = -1e9;
  for (double X : {0.0, 1.0 / kAspect}) {
    for (double Y : {0.0, 1.0}) {
      pmin = std::min(pmin, X * ca + Y * sa);
      pmax = std::max(pmax, X * ca + Y * sa);
    }
  }
  const uint64_t seed = bg.texture_seed;
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      double X, Y, m;
      coord(x, y, &X, &Y);
      if (bg.kind == BackgroundKind::kGradient) {
        m = (X * ca + Y * sa - pmin) / std::max(pmax - pmin, 1e-9);
      } else {
        // Brush-like: noise stretched along the stroke direction, two octaves, contrast-stretched.
        const double u = X * ca + Y * sa, v = -X * sa + Y * ca;
        const double n = 0.65 * ValueNoise(seed, u * 1.6, v * 4.5) +
                         0.35 * ValueNoise(seed ^ 0x5bd1e995ull, u * 3.2 + 17.0, v * 9.0 + 31.0);
        m = std::clamp((n - 0.5) * 2.5 + 0.5, 0.0, 1.0);
      }
      for (int c = 0; c < 3; ++c) {
        out[static_cast<size_t>(c * plane + y * width + x)] =
            static_cast<float>(bg.tone_a[c] + (bg.tone_b[c] - bg.tone_a[c]) * m);
      }
    }
  }
  return out;
}

void PixelBox(int shape, const PixelPose& pose, int64_t height, int64_t width, int64_t* x0,
              int64_t* x1, int64_t* y0, int64_t* y1) {
  const ShapeExtent& e = ExtentOf(shape);
  double bx0 = 1e18, bx1 = -1e18, by0 = 1e18, by1 = -1e18;
  for (double lx : {e.x0, e.x1}) {
    for (double ly : {e.y0, e.y1}) {
      const double px = pose.cx + pose.scale * (pose.cos_a * lx - pose.sin_a * ly);
      const double py = pose.cy + pose.scale * (pose.sin_a * lx + pose.cos_a * ly);
      bx0 = std::min(bx0, px), bx1 = std::max(bx1, px);
      by0 = std::min(by0, py), by1 = std::max(by1, py);
    }
  }
  *x0 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(bx0)) - 1, 0, width);
  *x1 = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(bx1)) + 1, 0, width);
  *y0 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(by0)) - 1, 0, height);
  *y1 = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(by1)) + 1, 0, height);
}

}  // namespace internal

Result<Video> Render(const Scene& scene, int64_t frames, int64_t height, int64_t width,
                     double fps) {
  if (frames < 1 || height < 1 || width < 1) {
    return Status::InvalidArgument(
        fmt::format("render size must be positive, got {}x{}x{}", frames, height, width));
  }
  if (!(fps > 0) || !std::isfinite(fps)) {
    return Status::InvalidArgument(fmt::format("render fps must be positive, got {}", fps));
  }
  if (frames * height * width > (int64_t{1} << 30)) {
    return Status::InvalidArgument(
        fmt::format("render size {}x{}x{} is too large", frames, height, width));
  }
  for (const Object& o : scene.objects) {
    if (ShapeIndex(o.shape) < 0) {
      return Status::InvalidArgument("scene has an object with an invalid shape");
    }
  }
  Video v(3, frames, height, width, fps);
  const std::vector<float> bg = internal::RenderBackground(scene.background, height, width);
  const int64_t plane = height * width;
  for (int64_t t = 0; t < frames; ++t) {
    float* ch[3];
    for (int c = 0; c < 3; ++c) {
      ch[c] = v.data.data() + (c * frames + t) * plane;
      std::copy_n(bg.begin() + c * plane, plane, ch[c]);
    }
    const double time = frames == 1 ? 0.0 : static_cast<double>(t) / fps;
    for (const Object& o : scene.objects) {
      const int shape = ShapeIndex(o.shape);
      const internal::PixelPose pose = internal::ToPixels(internal::PoseOf(o, time), height, width);
      const auto rgb = ColourRgb(o.colour);
      int64_t x0, x1, y0, y1;
      internal::PixelBox(shape, pose, height, width, &x0, &x1, &y0, &y1);
      for (int64_t y = y0; y < y1; ++y) {
        for (int64_t x = x0; x < x1; ++x) {
          const float a = internal::Coverage(shape, pose, x, y);
          if (a <= 0) continue;
          const int64_t i = y * width + x;
          for (int c = 0; c < 3; ++c) ch[c][i] += (rgb[c] - ch[c][i]) * a;
        }
      }
    }
  }
  for (float& x : v.data) x = 2 * x - 1;
  return v;
}

}  // namespace vidfarm::synth
