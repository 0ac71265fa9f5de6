// The analyzer: classical vision that reads a clip back into caption attributes.
//
//  1. Background: a robust linear fit to the temporal median frame. A good fit with no slope is
//     plain (black or the nearest palette colour), a good fit with a slope is a gradient, and a
//     poor fit is painted (then the background is the median itself, holes filled from around).
//  2. Colour: the robust mean of pixels far from the background, snapped to the palette.
//  3. Matte: per pixel, how far along (background → object colour) it lies. Interior pixels read
//     1 whatever the background estimate, so the matte is exact where it matters.
//  4. Shape: the matte is compared with the 40 shapes' templates (anti-aliased mip maps of our own
//     renderer's shapes), each placed by the matte's area and centroid, on the upright frames.
//  5. Motion: track the angle (rotating), then the centre (moving …) and the size (growing,
//     shrinking) through the clip; what is left is still.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "synth_internal.h"

namespace vidfarm::synth {
namespace {

using internal::Rgb;

constexpr double kPi = 3.14159265358979323846;
constexpr int kNumShapes = 40;
constexpr float kFarFromBackground = 0.3f;  // RGB distance: object pixels vs background
// Blurred-matte level that starts the object mask: a one-pixel stroke still reaches 1/3 after the
// 3×3 blur, and noise of σ = 0.1 stays well below it.
constexpr float kMaskLevel = 0.25f;

// ---------------------------------------------------------------- templates

// Upright anti-aliased coverage of one shape over local [-L, L]², as a mip pyramid. Each level is
// stored with a one-texel border of zeros so bilinear lookups need no bounds checks.
struct Template {
  static constexpr int kBase = 128;
  static constexpr float kL = 1.5f;
  std::vector<std::vector<float>> levels;  // (n+2)² for n = kBase, kBase/2, …, 4
  double area = 0;                         // local units²
  double gx = 0, gy = 0;                   // centroid, local units

  float Bilinear(int level, float x, float y) const {
    const int n = kBase >> level, stride = n + 2;
    const float scale = n / (2 * kL);
    // Padded texel coordinates; x in (-L, L) maps inside [0.5, n + 1.5).
    const float fx = (x + kL) * scale + 0.5f, fy = (y + kL) * scale + 0.5f;
    const int ix = static_cast<int>(fx), iy = static_cast<int>(fy);
    const float u = fx - ix, v = fy - iy;
    const float* p = levels[static_cast<size_t>(level)].data() + iy * stride + ix;
    return (p[0] * (1 - u) + p[1] * u) * (1 - v) + (p[stride] * (1 - u) + p[stride + 1] * u) * v;
  }
  float Sample(float x, float y, float lod) const {
    if (x <= -kL || y <= -kL || x >= kL || y >= kL) return 0.0f;
    const int l0 = static_cast<int>(lod);
    const float f = lod - l0;
    const float a = Bilinear(l0, x, y);
    return f <= 0.0f ? a : a + (Bilinear(l0 + 1, x, y) - a) * f;
  }
  // Clamps a level of detail to the pyramid.
  float ClampLod(float lod) const {
    return std::clamp(lod, 0.0f, static_cast<float>(levels.size() - 1));
  }
};

const std::vector<Template>& Templates() {
  static const std::vector<Template>* all = [] {
    auto* v = new std::vector<Template>(kNumShapes);
    constexpr int n = Template::kBase;
    constexpr float ts = 2 * Template::kL / n;
    for (int k = 0; k < kNumShapes; ++k) {
      Template& tp = (*v)[static_cast<size_t>(k)];
      // Texel (i, j) covers local [−L + j·ts, …]: that is the renderer's pixel (j, i) for a pose
      // with centre (L/ts, L/ts) pixels and scale 1/ts pixels per local unit.
      const internal::PixelPose pose{Template::kL / ts, Template::kL / ts, 1.0 / ts, 1.0, 0.0};
      std::vector<float> base(static_cast<size_t>(n * n));
      double sum = 0, sx = 0, sy = 0;
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
          const float c = internal::Coverage(k, pose, j, i);
          base[static_cast<size_t>(i * n + j)] = c;
          sum += c;
          sx += c * (-Template::kL + (j + 0.5) * ts);
          sy += c * (-Template::kL + (i + 0.5) * ts);
        }
      }
      tp.area = sum * ts * ts;
      tp.gx = sx / std::max(sum, 1e-9);
      tp.gy = sy / std::max(sum, 1e-9);
      auto pad = [](const std::vector<float>& img, int m) {
        std::vector<float> out(static_cast<size_t>((m + 2) * (m + 2)), 0.0f);
        for (int i = 0; i < m; ++i) {
          std::copy_n(img.begin() + i * m, m, out.begin() + (i + 1) * (m + 2) + 1);
        }
        return out;
      };
      std::vector<float> prev = std::move(base);
      tp.levels.push_back(pad(prev, n));
      for (int m = n / 2; m >= 4; m /= 2) {
        std::vector<float> next(static_cast<size_t>(m * m));
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < m; ++j) {
            const int p = 2 * m;
            next[static_cast<size_t>(i * m + j)] =
                0.25f * (prev[static_cast<size_t>(2 * i * p + 2 * j)] +
                         prev[static_cast<size_t>(2 * i * p + 2 * j + 1)] +
                         prev[static_cast<size_t>((2 * i + 1) * p + 2 * j)] +
                         prev[static_cast<size_t>((2 * i + 1) * p + 2 * j + 1)]);
          }
        }
        tp.levels.push_back(pad(next, m));
        prev = std::move(next);
      }
    }
    return v;
  }();
  return *all;
}

// ---------------------------------------------------------------- frames

// The clip at analysis resolution, pixels interleaved RGB in [0, 1].
struct Clip {
  int64_t t = 0, h = 0, w = 0;
  double fps = 24;
  std::vector<float> px;
  const float* At(int64_t f, int64_t y, int64_t x) const {
    return px.data() + ((f * h + y) * w + x) * 3;
  }
  float* At(int64_t f, int64_t y, int64_t x) { return px.data() + ((f * h + y) * w + x) * 3; }
};

float Dist(const float* a, const float* b) {
  const float d0 = a[0] - b[0], d1 = a[1] - b[1], d2 = a[2] - b[2];
  return std::sqrt(d0 * d0 + d1 * d1 + d2 * d2);
}

Clip ToClip(const Video& v) {
  // Big frames are box-downsampled by an integer factor to about 96 rows: shapes are judged at
  // the size the font and the thresholds were tuned for, and 768×1280 clips stay fast.
  const int64_t f = v.height >= 192 ? v.height / 96 : 1;
  Clip c;
  c.t = v.frames, c.h = v.height / f, c.w = v.width / f, c.fps = v.fps;
  c.px.resize(static_cast<size_t>(c.t * c.h * c.w * 3));
  const float norm = 1.0f / static_cast<float>(f * f);
  std::vector<float> row(static_cast<size_t>(c.w));
  for (int64_t ch = 0; ch < 3; ++ch) {
    const int64_t src_c = v.channels == 3 ? ch : 0;
    for (int64_t t = 0; t < c.t; ++t) {
      for (int64_t y = 0; y < c.h; ++y) {
        std::fill(row.begin(), row.end(), 0.0f);
        for (int64_t dy = 0; dy < f; ++dy) {
          const float* src = &v.data[static_cast<size_t>(
              ((src_c * v.frames + t) * v.height + y * f + dy) * v.width)];
          for (int64_t x = 0; x < c.w; ++x) {
            for (int64_t dx = 0; dx < f; ++dx) row[x] += src[x * f + dx];
          }
        }
        float* dst = c.At(t, y, 0) + ch;
        for (int64_t x = 0; x < c.w; ++x) {
          dst[x * 3] = std::clamp((row[x] * norm + 1.0f) * 0.5f, 0.0f, 1.0f);
        }
      }
    }
  }
  return c;
}

// 3×3 box blur (edges clamped) of the given frames, in that order.
Clip Blur3(const Clip& in, const std::vector<int64_t>& frames) {
  Clip out;
  out.t = static_cast<int64_t>(frames.size()), out.h = in.h, out.w = in.w, out.fps = in.fps;
  out.px.resize(static_cast<size_t>(out.t * in.h * in.w * 3));
  const int64_t h = in.h, w = in.w, row = w * 3;
  std::vector<float> tmp(static_cast<size_t>(h * row));
  for (int64_t t = 0; t < out.t; ++t) {
    const float* src = in.At(frames[static_cast<size_t>(t)], 0, 0);
    for (int64_t y = 0; y < h; ++y) {
      const float* r = src + y * row;
      float* o = tmp.data() + y * row;
      for (int64_t x = 0; x < w; ++x) {
        const int64_t l = (x > 0 ? x - 1 : 0) * 3, m = x * 3, rr = (x + 1 < w ? x + 1 : x) * 3;
        for (int c = 0; c < 3; ++c) o[m + c] = (r[l + c] + r[m + c] + r[rr + c]) * (1.0f / 3);
      }
    }
    float* dst = out.At(t, 0, 0);
    for (int64_t y = 0; y < h; ++y) {
      const float* u = tmp.data() + (y > 0 ? y - 1 : 0) * row;
      const float* m = tmp.data() + y * row;
      const float* d = tmp.data() + (y + 1 < h ? y + 1 : y) * row;
      float* o = dst + y * row;
      for (int64_t i = 0; i < row; ++i) o[i] = (u[i] + m[i] + d[i]) * (1.0f / 3);
    }
  }
  return out;
}

float Median(std::vector<float>* v) {
  if (v->empty()) return 0.0f;
  auto mid = v->begin() + static_cast<std::ptrdiff_t>(v->size() / 2);
  std::nth_element(v->begin(), mid, v->end());
  return *mid;
}

// ---------------------------------------------------------------- background

struct BackgroundModel {
  BackgroundKind kind = BackgroundKind::kPlain;
  bool black = true;
  Colour colour = Colour::kBlue;
  std::vector<float> rgb;  // h×w×3
};

// Least squares of value ≈ a + b·u + c·v over the selected pixels, per channel.
void FitPlane(const std::vector<float>& img, const std::vector<float>& us,
              const std::vector<float>& vs, const std::vector<char>& use, double coef[3][3]) {
  double m[3][3] = {}, r[3][3] = {};
  for (size_t i = 0; i < us.size(); ++i) {
    if (!use[i]) continue;
    const double b[3] = {1, us[i], vs[i]};
    for (int p = 0; p < 3; ++p) {
      for (int q = 0; q < 3; ++q) m[p][q] += b[p] * b[q];
      for (int c = 0; c < 3; ++c) r[c][p] += b[p] * img[i * 3 + c];
    }
  }
  for (int c = 0; c < 3; ++c) {
    // Gaussian elimination with partial pivoting on a copy (3×3, well conditioned on a grid).
    double a[3][4];
    for (int p = 0; p < 3; ++p) {
      for (int q = 0; q < 3; ++q) a[p][q] = m[p][q];
      a[p][3] = r[c][p];
    }
    for (int col = 0; col < 3; ++col) {
      int piv = col;
      for (int row = col + 1; row < 3; ++row) {
        if (std::abs(a[row][col]) > std::abs(a[piv][col])) piv = row;
      }
      for (int q = 0; q < 4; ++q) std::swap(a[col][q], a[piv][q]);
      if (std::abs(a[col][col]) < 1e-12) a[col][col] = 1e-12;
      for (int row = 0; row < 3; ++row) {
        if (row == col) continue;
        const double f = a[row][col] / a[col][col];
        for (int q = col; q < 4; ++q) a[row][q] -= f * a[col][q];
      }
    }
    for (int p = 0; p < 3; ++p) coef[c][p] = a[p][3] / a[p][p];
  }
}

float NearestPaletteDistance(const float* p) {
  float best = 1e9f;
  for (int c = 0; c < kNumColours; ++c) {
    const auto rgb = ColourRgb(static_cast<Colour>(c));
    best = std::min(best, Dist(p, rgb.data()));
  }
  return best;
}

// Keeps the pixels of `median` marked in `cand` that are not next to an unmarked one, and fills
// every other pixel from the nearest kept pixels (box averages at growing radii).
std::vector<float> FillFromBackground(const std::vector<float>& median, std::vector<char> cand,
                                      int64_t h, int64_t w) {
  std::vector<char> bg(cand.size());
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      bool ok = true;
      for (int64_t dy = -2; dy <= 2 && ok; ++dy) {
        for (int64_t dx = -2; dx <= 2 && ok; ++dx) {
          const int64_t yy = std::clamp<int64_t>(y + dy, 0, h - 1);
          const int64_t xx = std::clamp<int64_t>(x + dx, 0, w - 1);
          ok = cand[yy * w + xx] != 0;
        }
      }
      bg[y * w + x] = ok;
    }
  }
  // Integral images of mask and mask·colour for box averages at growing radii.
  const int64_t W1 = w + 1;
  std::vector<double> sum(static_cast<size_t>((h + 1) * W1 * 4), 0.0);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      const double m = bg[i] ? 1.0 : 0.0;
      for (int c = 0; c < 4; ++c) {
        const double v = c == 3 ? m : m * median[i * 3 + c];
        sum[((y + 1) * W1 + x + 1) * 4 + c] = v + sum[(y * W1 + x + 1) * 4 + c] +
                                              sum[((y + 1) * W1 + x) * 4 + c] -
                                              sum[(y * W1 + x) * 4 + c];
      }
    }
  }
  std::vector<float> out = median;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      if (bg[i]) continue;
      for (int64_t r = 2; r <= std::max(h, w); r *= 2) {
        const int64_t y0 = std::max<int64_t>(y - r, 0), y1 = std::min(y + r + 1, h);
        const int64_t x0 = std::max<int64_t>(x - r, 0), x1 = std::min(x + r + 1, w);
        double s[4];
        for (int c = 0; c < 4; ++c) {
          s[c] = sum[(y1 * W1 + x1) * 4 + c] - sum[(y0 * W1 + x1) * 4 + c] -
                 sum[(y1 * W1 + x0) * 4 + c] + sum[(y0 * W1 + x0) * 4 + c];
        }
        if (s[3] >= std::max(4.0, 0.15 * static_cast<double>((y1 - y0) * (x1 - x0))) ||
            r * 2 > std::max(h, w)) {
          if (s[3] > 0) {
            for (int c = 0; c < 3; ++c) out[i * 3 + c] = static_cast<float>(s[c] / s[3]);
          }
          break;
        }
      }
    }
  }
  return out;
}

BackgroundModel FitBackground(const std::vector<float>& median, int64_t h, int64_t w) {
  const int64_t n = h * w;
  std::vector<float> us(static_cast<size_t>(n)), vs(static_cast<size_t>(n));
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      us[y * w + x] = static_cast<float>((x + 0.5) / w - 0.5);
      vs[y * w + x] = static_cast<float>((y + 0.5) / h - 0.5);
    }
  }
  std::vector<char> use(static_cast<size_t>(n), 1);
  std::vector<float> res(static_cast<size_t>(n));
  double coef[3][3];
  for (int iter = 0; iter < 4; ++iter) {
    FitPlane(median, us, vs, use, coef);
    for (int64_t i = 0; i < n; ++i) {
      float e2 = 0;
      for (int c = 0; c < 3; ++c) {
        const double p = coef[c][0] + coef[c][1] * us[i] + coef[c][2] * vs[i];
        e2 += static_cast<float>((median[i * 3 + c] - p) * (median[i * 3 + c] - p));
      }
      res[i] = std::sqrt(e2);
    }
    std::vector<float> tmp = res;
    const float thr = std::max(0.04f, 2.5f * Median(&tmp));
    for (int64_t i = 0; i < n; ++i) use[i] = res[i] < thr;
  }
  int64_t inliers = 0;
  for (int64_t i = 0; i < n; ++i) inliers += res[i] < 0.06f ? 1 : 0;
  BackgroundModel bm;
  bm.rgb.assign(static_cast<size_t>(n * 3), 0.0f);
  if (static_cast<double>(inliers) < 0.75 * static_cast<double>(n)) {
    bm.kind = BackgroundKind::kPainted;
    bm.black = false;
    std::vector<char> cand(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) cand[i] = NearestPaletteDistance(&median[i * 3]) > 0.25f;
    bm.rgb = FillFromBackground(median, std::move(cand), h, w);
    return bm;
  }
  // Colour change across the frame: the largest distance between predicted corner colours.
  double corners[4][3];
  int k = 0;
  for (double u : {-0.5, 0.5}) {
    for (double v : {-0.5, 0.5}) {
      for (int c = 0; c < 3; ++c) corners[k][c] = coef[c][0] + coef[c][1] * u + coef[c][2] * v;
      ++k;
    }
  }
  double span = 0;
  for (int a = 0; a < 4; ++a) {
    for (int b = a + 1; b < 4; ++b) {
      double d2 = 0;
      for (int c = 0; c < 3; ++c)
        d2 += (corners[a][c] - corners[b][c]) * (corners[a][c] - corners[b][c]);
      span = std::max(span, std::sqrt(d2));
    }
  }
  if (span >= 0.1) {
    bm.kind = BackgroundKind::kGradient;
    bm.black = false;
    for (int64_t i = 0; i < n; ++i) {
      for (int c = 0; c < 3; ++c) {
        bm.rgb[i * 3 + c] =
            static_cast<float>(coef[c][0] + coef[c][1] * us[i] + coef[c][2] * vs[i]);
      }
    }
    return bm;
  }
  // Plain: the inliers' median colour, named by the nearest of black and the palette.
  float mean[3];
  for (int c = 0; c < 3; ++c) {
    std::vector<float> vals;
    for (int64_t i = 0; i < n; ++i) {
      if (use[i]) vals.push_back(median[i * 3 + c]);
    }
    mean[c] = vals.empty() ? static_cast<float>(coef[c][0]) : Median(&vals);
  }
  bm.kind = BackgroundKind::kPlain;
  const float black[3] = {0, 0, 0};
  float best = Dist(mean, black);
  bm.black = true;
  for (int c = 0; c < kNumColours; ++c) {
    const auto rgb = ColourRgb(static_cast<Colour>(c));
    const float d = Dist(mean, rgb.data());
    if (d < best) best = d, bm.black = false, bm.colour = static_cast<Colour>(c);
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) bm.rgb[i * 3 + c] = mean[c];
  }
  return bm;
}

// A painted background seen through a moving object: the temporal median is spoiled wherever the
// object stays half the time. Object pixels are near a palette colour while the muted tones are
// not, so: take the object colour from near-palette pixels, then at each pixel keep the frames
// farthest from it (pure background), and fill the pixels the object never leaves.
void RefinePainted(const Clip& blurred, const std::vector<int64_t>& frames, BackgroundModel* bm) {
  const int64_t h = blurred.h, w = blurred.w, n = h * w;
  std::vector<float> cols[3];
  for (int64_t f : frames) {
    const float* p = blurred.At(f, 0, 0);
    for (int64_t i = 0; i < n; ++i) {
      if (NearestPaletteDistance(p + i * 3) < 0.2f) {
        for (int c = 0; c < 3; ++c) cols[c].push_back(p[i * 3 + c]);
      }
    }
  }
  if (cols[0].size() < 4) return;  // off-palette content: keep the median-based estimate
  float obj[3];
  for (int c = 0; c < 3; ++c) obj[c] = Median(&cols[c]);
  std::vector<float> out(static_cast<size_t>(n * 3));
  std::vector<char> pure(static_cast<size_t>(n));
  std::vector<float> d(frames.size());
  for (int64_t i = 0; i < n; ++i) {
    float dmax = 0;
    for (size_t k = 0; k < frames.size(); ++k) {
      d[k] = Dist(blurred.At(frames[k], 0, 0) + i * 3, obj);
      dmax = std::max(dmax, d[k]);
    }
    pure[i] = dmax > 0.25f;
    for (int c = 0; c < 3; ++c) {
      std::vector<float> vals;
      for (size_t k = 0; k < frames.size(); ++k) {
        if (d[k] >= 0.9f * dmax) vals.push_back(blurred.At(frames[k], 0, 0)[i * 3 + c]);
      }
      out[i * 3 + c] = Median(&vals);
    }
  }
  bm->rgb = FillFromBackground(out, std::move(pure), h, w);
}

// ---------------------------------------------------------------- object colour

// Robust colour of the pixels far from the background in the given frames; false if none.
// Only pixels inside [x0, x1) × [y0, y1) count (default: the whole frame).
bool ObjectColour(const Clip& frames_in, const std::vector<float>& bg,
                  const std::vector<int64_t>& frames, float out[3], int64_t x0 = 0, int64_t x1 = -1,
                  int64_t y0 = 0, int64_t y1 = -1) {
  std::vector<float> dists;
  std::vector<float> cols;
  if (x1 < 0) x1 = frames_in.w;
  if (y1 < 0) y1 = frames_in.h;
  for (int64_t f : frames) {
    const float* p = frames_in.At(f, 0, 0);
    for (int64_t y = y0; y < y1; ++y) {
      for (int64_t x = x0; x < x1; ++x) {
        const int64_t i = y * frames_in.w + x;
        const float d = Dist(p + i * 3, &bg[i * 3]);
        if (d > kFarFromBackground) {
          dists.push_back(d);
          cols.insert(cols.end(), p + i * 3, p + i * 3 + 3);
        }
      }
    }
  }
  if (dists.size() < 2) return false;
  // The object's interior is the far end of the distance distribution; edges blend toward it.
  std::vector<float> tmp = dists;
  auto p90 = tmp.begin() + static_cast<std::ptrdiff_t>(tmp.size() * 9 / 10);
  std::nth_element(tmp.begin(), p90, tmp.end());
  const float thr = std::max(kFarFromBackground, 0.7f * *p90);
  for (int c = 0; c < 3; ++c) {
    std::vector<float> vals;
    for (size_t i = 0; i < dists.size(); ++i) {
      if (dists[i] >= thr) vals.push_back(cols[i * 3 + c]);
    }
    out[c] = Median(&vals);
  }
  return true;
}

Colour NearestObjectColour(const float rgb[3], const BackgroundModel& bm) {
  float best = 1e9f;
  Colour out = Colour::kRed;
  for (int c = 0; c < kNumColours; ++c) {
    const Colour col = static_cast<Colour>(c);
    // On a plain coloured background the object is never that colour.
    if (bm.kind == BackgroundKind::kPlain && !bm.black && col == bm.colour) continue;
    const auto p = ColourRgb(col);
    const float d = Dist(rgb, p.data());
    if (d < best) best = d, out = col;
  }
  return out;
}

// ---------------------------------------------------------------- per-frame object

struct FrameObject {
  bool found = false;
  int64_t x0 = 0, x1 = 0, y0 = 0, y1 = 0;  // region of interest, [x0, x1) × [y0, y1)
  double area = 0;                         // Σ matte (pixels)
  double cx = 0, cy = 0;                   // matte centroid (pixel coordinates)
  int64_t hard = 0;                        // pixels of the region with matte > 1/2
};

FrameObject MeasureFrame(const float* matte, const float* matte_blur, int64_t h, int64_t w) {
  FrameObject fo;
  const int64_t n = h * w;
  std::vector<int> label(static_cast<size_t>(n), -1);
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, 4>> boxes;
  std::vector<int64_t> stack;
  for (int64_t s = 0; s < n; ++s) {
    if (label[s] >= 0 || matte_blur[s] <= kMaskLevel) continue;
    const int id = static_cast<int>(sizes.size());
    sizes.push_back(0);
    boxes.push_back({w, -1, h, -1});
    stack.push_back(s);
    label[s] = id;
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      const int64_t py = p / w, px = p % w;
      ++sizes[id];
      auto& b = boxes[id];
      b[0] = std::min(b[0], px), b[1] = std::max(b[1], px);
      b[2] = std::min(b[2], py), b[3] = std::max(b[3], py);
      for (int64_t dy = -1; dy <= 1; ++dy) {
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t yy = py + dy, xx = px + dx;
          if (yy < 0 || xx < 0 || yy >= h || xx >= w) continue;
          const int64_t q = yy * w + xx;
          if (label[q] >= 0 || matte_blur[q] <= kMaskLevel) continue;
          label[q] = id;
          stack.push_back(q);
        }
      }
    }
  }
  if (sizes.empty()) return fo;
  const int64_t largest = *std::max_element(sizes.begin(), sizes.end());
  int64_t bx0 = w, bx1 = -1, by0 = h, by1 = -1;
  for (size_t i = 0; i < sizes.size(); ++i) {
    // Specks (noise, stray blobs) are dropped; pieces of a glyph broken by blur are kept.
    if (sizes[i] < std::max<int64_t>(2, largest / 10)) continue;
    bx0 = std::min(bx0, boxes[i][0]), bx1 = std::max(bx1, boxes[i][1]);
    by0 = std::min(by0, boxes[i][2]), by1 = std::max(by1, boxes[i][3]);
  }
  const int64_t margin = 2 + std::max(bx1 - bx0, by1 - by0) / 10;
  fo.x0 = std::max<int64_t>(0, bx0 - margin), fo.x1 = std::min(w, bx1 + 1 + margin);
  fo.y0 = std::max<int64_t>(0, by0 - margin), fo.y1 = std::min(h, by1 + 1 + margin);
  double sa = 0, sx = 0, sy = 0;
  for (int64_t y = fo.y0; y < fo.y1; ++y) {
    for (int64_t x = fo.x0; x < fo.x1; ++x) {
      const double a = matte[y * w + x];  // unclipped: noise averages out instead of biasing
      sa += a, sx += a * (x + 0.5), sy += a * (y + 0.5);
      fo.hard += a > 0.5 ? 1 : 0;
    }
  }
  if (sa < 1.0) return fo;
  fo.found = true;
  fo.area = sa, fo.cx = sx / sa, fo.cy = sy / sa;
  return fo;
}

// ---------------------------------------------------------------- shape scoring

struct Scorer {
  const std::vector<float>* matte = nullptr;  // t×h×w
  int64_t h = 0, w = 0;

  // Scale (pixels per local unit) and centre of shape k in frame fo at angle theta.
  internal::PixelPose Place(int k, const FrameObject& fo, double theta) const {
    const Template& tp = Templates()[static_cast<size_t>(k)];
    const double s = std::sqrt(fo.area / std::max(tp.area, 1e-9));
    const double c = std::cos(theta), sn = std::sin(theta);
    return {fo.cx - s * (c * tp.gx - sn * tp.gy), fo.cy - s * (sn * tp.gx + c * tp.gy), s, c, sn};
  }

  // Mean squared difference between the matte and shape k placed in frame f, per object pixel.
  double Score(int k, int64_t f, const FrameObject& fo, double theta, int stride) const {
    const Template& tp = Templates()[static_cast<size_t>(k)];
    const internal::PixelPose pose = Place(k, fo, theta);
    int64_t x0, x1, y0, y1;
    internal::PixelBox(k, pose, h, w, &x0, &x1, &y0, &y1);
    x0 = std::min(x0, fo.x0), x1 = std::max(x1, fo.x1);
    y0 = std::min(y0, fo.y0), y1 = std::max(y1, fo.y1);
    const double inv = 1.0 / pose.scale;
    // Mip level whose (box ∗ bilinear tent) filter matches a pixel's box (variance match).
    // Rounded to one level: blending two costs twice as much and made no difference at 96×160.
    const float lod = std::round(tp.ClampLod(
        static_cast<float>(std::log2(inv / (2.0 * Template::kL / Template::kBase)) - 0.79)));
    const float* m = matte->data() + f * h * w;
    double sum = 0;
    for (int64_t y = y0; y < y1; y += stride) {
      const double dy = y + 0.5 - pose.cy;
      for (int64_t x = x0; x < x1; x += stride) {
        const double dx = x + 0.5 - pose.cx;
        const float lx = static_cast<float>((pose.cos_a * dx + pose.sin_a * dy) * inv);
        const float ly = static_cast<float>((-pose.sin_a * dx + pose.cos_a * dy) * inv);
        const float e = m[y * w + x] - tp.Sample(lx, ly, lod);
        sum += e * e;
      }
    }
    return sum * stride * stride / std::max(fo.area, 1.0);
  }

  int Best(int64_t f, const FrameObject& fo, double theta, int stride) const {
    int best = 0;
    double best_score = 1e300;
    for (int k = 0; k < kNumShapes; ++k) {
      const double s = Score(k, f, fo, theta, stride);
      if (s < best_score) best_score = s, best = k;
    }
    return best;
  }
};

std::vector<int64_t> EvenlySpaced(int64_t total, int64_t count) {
  std::vector<int64_t> out;
  count = std::min(count, total);
  for (int64_t i = 0; i < count; ++i) {
    out.push_back(count == 1 ? 0 : (i * (total - 1) + (count - 1) / 2) / (count - 1));
  }
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

double Slope(const std::vector<double>& xs, const std::vector<double>& ys) {
  const double n = static_cast<double>(xs.size());
  if (xs.size() < 2) return 0;
  const double mx = std::accumulate(xs.begin(), xs.end(), 0.0) / n;
  const double my = std::accumulate(ys.begin(), ys.end(), 0.0) / n;
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) * (xs[i] - mx);
  }
  return sxx > 0 ? sxy / sxx : 0;
}

Result<Analysis> Analyze(const Video& video) {
  VF_RETURN_NOT_OK(video.Validate());
  if (video.height < 12 || video.width < 20) {
    return Status::InvalidArgument(
        fmt::format("analyze needs frames of at least 12×20, got {}", video.ShapeString()));
  }
  const Clip clip = ToClip(video);
  const int64_t T = clip.t, h = clip.h, w = clip.w, n = h * w;
  // Blurred copies of the analysed frames (the rest are blurred one at a time below).
  const std::vector<int64_t> sel = EvenlySpaced(T, 15);
  const Clip blurred = Blur3(clip, sel);
  std::vector<int64_t> blurred_frames(sel.size());
  std::iota(blurred_frames.begin(), blurred_frames.end(), 0);

  // Background from the per-pixel median of the analysed frames.
  std::vector<float> median(static_cast<size_t>(n * 3));
  {
    std::vector<float> vals(sel.size());
    for (int64_t i = 0; i < n; ++i) {
      for (int c = 0; c < 3; ++c) {
        for (size_t k = 0; k < sel.size(); ++k) vals[k] = blurred.px[(k * n + i) * 3 + c];
        median[i * 3 + c] = Median(&vals);
      }
    }
  }
  BackgroundModel bm = FitBackground(median, h, w);
  if (bm.kind == BackgroundKind::kPainted) RefinePainted(blurred, blurred_frames, &bm);

  Analysis out;
  out.attributes.background = bm.kind;
  out.attributes.background_black = bm.kind == BackgroundKind::kPlain && bm.black;
  if (bm.kind == BackgroundKind::kPlain && !bm.black) out.attributes.background_colour = bm.colour;
  out.frame_consistent.assign(static_cast<size_t>(T), false);

  float obj[3];
  if (!ObjectColour(clip, bm.rgb, sel, obj)) return out;  // nothing but background
  const Colour colour = NearestObjectColour(obj, bm);
  out.attributes.colour = colour;

  // Mattes of every frame, sharp (for shapes) and blurred (for masks).
  std::vector<float> matte(static_cast<size_t>(T * n)), matte_blur(matte.size());
  {
    // Per pixel: the direction background → object, over its squared length.
    std::vector<float> dir(static_cast<size_t>(n * 3));
    for (int64_t i = 0; i < n; ++i) {
      float d[3], d2 = 0;
      for (int c = 0; c < 3; ++c) d[c] = obj[c] - bm.rgb[i * 3 + c], d2 += d[c] * d[c];
      const float inv = d2 > 0.01f ? 1.0f / d2 : 0.0f;
      for (int c = 0; c < 3; ++c) dir[i * 3 + c] = d[c] * inv;
    }
    for (int64_t t = 0; t < T; ++t) {
      const float* p = clip.At(t, 0, 0);
      const Clip one = Blur3(clip, {t});
      const float* q = one.At(0, 0, 0);
      float* ma = &matte[t * n];
      float* mb = &matte_blur[t * n];
      for (int64_t i = 0; i < n; ++i) {
        const float* b = &bm.rgb[i * 3];
        const float* d = &dir[i * 3];
        ma[i] =
            (p[i * 3] - b[0]) * d[0] + (p[i * 3 + 1] - b[1]) * d[1] + (p[i * 3 + 2] - b[2]) * d[2];
        mb[i] =
            (q[i * 3] - b[0]) * d[0] + (q[i * 3 + 1] - b[1]) * d[1] + (q[i * 3 + 2] - b[2]) * d[2];
      }
    }
  }
  std::vector<FrameObject> objs(static_cast<size_t>(T));
  double fg = 0;
  for (int64_t t = 0; t < T; ++t) {
    objs[t] = MeasureFrame(&matte[t * n], &matte_blur[t * n], h, w);
    fg += static_cast<double>(objs[t].hard) / static_cast<double>(n);
  }
  out.foreground_fraction = fg / static_cast<double>(T);

  std::vector<int64_t> found;  // analysed frames that show an object
  for (int64_t f : sel) {
    if (objs[f].found) found.push_back(f);
  }
  if (found.empty()) return out;
  Scorer sc{&matte, h, w};
  auto stride_for = [&](const FrameObject& fo) {
    // Half-height of the object in pixels; big objects are over-resolved for this test.
    const double half_height = std::sqrt(fo.area / 2.0);
    return half_height > 16 ? 3 : half_height > 7 ? 2 : 1;
  };

  // Pass 1: the shape of the first (upright) frame.
  const int first_shape = sc.Best(found[0], objs[found[0]], 0.0, 1);

  // Angle track with that shape. A new angle must beat the previous one clearly, so symmetric
  // shapes (and noise) do not drift.
  std::vector<double> theta(found.size(), 0.0);
  if (first_shape != 0) {
    double prev = 0;
    for (size_t i = 0; i < found.size(); ++i) {
      const FrameObject& fo = objs[found[i]];
      const int st = stride_for(fo);
      const double base_score = sc.Score(first_shape, found[i], fo, prev, st);
      double best = prev, best_score = base_score;
      for (int deg = -30; deg <= 30; deg += 5) {
        if (deg == 0) continue;
        const double a = prev + deg * kPi / 180;
        const double s = sc.Score(first_shape, found[i], fo, a, st);
        if (s < best_score) best_score = s, best = a;
      }
      const double coarse = best;
      for (int deg : {-2, 2}) {
        const double a = coarse + deg * kPi / 180;
        const double s = sc.Score(first_shape, found[i], fo, a, st);
        if (s < best_score) best_score = s, best = a;
      }
      if (best_score < 0.97 * base_score) prev = best;
      theta[i] = prev;
    }
  }

  // Motion from the tracks.
  Motion motion = Motion::kStill;
  if (T >= 2 && found.size() >= 2) {
    std::vector<double> ts, xs, ys, ls;
    const Template& tp = Templates()[static_cast<size_t>(first_shape)];
    for (size_t i = 0; i < found.size(); ++i) {
      const FrameObject& fo = objs[found[i]];
      const internal::PixelPose pose = sc.Place(first_shape, fo, theta[i]);
      ts.push_back(static_cast<double>(found[i]) / clip.fps);
      xs.push_back(pose.cx / static_cast<double>(w));
      ys.push_back(pose.cy / static_cast<double>(h));
      ls.push_back(std::log(std::max(fo.area / tp.area, 1e-6)) / 2);
    }
    const double span = static_cast<double>(T - 1) / clip.fps;
    const double turn = Slope(ts, theta) * span;
    const double dx = Slope(ts, xs) * span, dy = Slope(ts, ys) * span;
    const double growth = std::exp(Slope(ts, ls) * span);
    const double ax = std::abs(dx), ay = std::abs(dy);
    if (std::abs(turn) > 25 * kPi / 180) {
      motion = Motion::kRotating;
    } else if (std::max(ax, ay) > 0.08) {
      if (std::min(ax, ay) > 0.06 && std::min(ax, ay) > 0.4 * std::max(ax, ay)) {
        motion = Motion::kDiagonal;
      } else if (ax > ay) {
        motion = dx < 0 ? Motion::kLeft : Motion::kRight;
      } else {
        motion = dy < 0 ? Motion::kUp : Motion::kDown;
      }
    } else if (growth > 1.25) {
      motion = Motion::kGrowing;
    } else if (growth < 0.8) {
      motion = Motion::kShrinking;
    }
  }
  out.attributes.motion = motion;
  const bool rotating = motion == Motion::kRotating;

  // Pass 2: the shape over several frames (noise averages out), at the tracked angles.
  int shape = first_shape;
  {
    std::vector<double> total(kNumShapes, 0.0);
    const std::vector<int64_t> pick = EvenlySpaced(static_cast<int64_t>(found.size()), 6);
    for (int64_t j : pick) {
      const FrameObject& fo = objs[found[j]];
      const double a = rotating ? theta[j] : 0.0;
      for (int k = 0; k < kNumShapes; ++k) total[k] += sc.Score(k, found[j], fo, a, 1);
    }
    shape = static_cast<int>(std::min_element(total.begin(), total.end()) - total.begin());
  }
  out.attributes.shape = AllShapes()[static_cast<size_t>(shape)];

  // Per-frame consistency: the frame's own colour and best shape at its (interpolated) angle.
  for (int64_t t = 0; t < T; ++t) {
    const FrameObject& fo = objs[t];
    if (!fo.found) continue;
    float c[3];
    if (!ObjectColour(clip, bm.rgb, {t}, c, fo.x0, fo.x1, fo.y0, fo.y1) ||
        NearestObjectColour(c, bm) != colour) {
      continue;
    }
    double a = 0;
    if (rotating) {
      size_t j = 0;
      while (j + 1 < found.size() && found[j + 1] <= t) ++j;
      if (j + 1 < found.size() && found[j] <= t) {
        const double f =
            static_cast<double>(t - found[j]) / static_cast<double>(found[j + 1] - found[j]);
        a = theta[j] + (theta[j + 1] - theta[j]) * f;
      } else {
        a = theta[j];
      }
    }
    out.frame_consistent[t] = sc.Best(t, fo, a, stride_for(fo)) == shape;
  }
  return out;
}

}  // namespace vidfarm::synth
