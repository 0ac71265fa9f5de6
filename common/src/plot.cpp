#include "vidfarm/common/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "vidfarm/common/video_io.h"

namespace vidfarm {
namespace {

constexpr int kMaxSide = 16384;

// 5x7 glyphs for ASCII 32..126 plus two rows for descenders (g, j, p, q, y, comma), one byte per
// row (top first), bit 4 the leftmost column.
constexpr std::array<std::array<uint8_t, 9>, 95> kFont = {{
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00},  // !
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // "
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00, 0x00},  // #
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00, 0x00},  // $
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00},  // %
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00, 0x00},  // &
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00},  // (
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00},  // )
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00, 0x00},  // *
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00, 0x00},  // +
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x04, 0x08},  // ,
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00, 0x00},  // -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00, 0x00},  // .
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00, 0x00},  // /
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00, 0x00},  // 0
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 1
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00},  // 2
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00, 0x00},  // 3
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00, 0x00},  // 4
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00, 0x00},  // 5
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 6
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00},  // 7
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 8
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00, 0x00},  // 9
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00, 0x00},  // :
    {0x00, 0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x04, 0x08},  // ;
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00},  // <
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00},  // =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00},  // >
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00},  // ?
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E, 0x00, 0x00},  // @
    {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x00, 0x00},  // A
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00, 0x00},  // B
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00},  // C
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00, 0x00},  // D
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00, 0x00},  // E
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00},  // F
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00, 0x00},  // G
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00},  // H
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00, 0x00},  // J
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00},  // K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00, 0x00},  // L
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00},  // M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00},  // N
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // O
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00},  // P
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00, 0x00},  // Q
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00, 0x00},  // R
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00, 0x00},  // S
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // T
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00},  // V
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00, 0x00},  // W
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00, 0x00},  // X
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x00, 0x00},  // Y
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00, 0x00},  // Z
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00, 0x00},  // [
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00, 0x00},  // backslash
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00, 0x00},  // ]
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ^
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00, 0x00},  // _
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // `
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00, 0x00},  // a
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00, 0x00},  // b
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00},  // c
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00, 0x00},  // d
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00, 0x00},  // e
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00, 0x00},  // f
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // g
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // h
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // i
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},  // j
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00},  // k
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // l
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11, 0x00, 0x00},  // m
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // n
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // o
    {0x00, 0x00, 0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10},  // p
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01},  // q
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00},  // r
    {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E, 0x00, 0x00},  // s
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00},  // t
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00, 0x00},  // u
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00},  // v
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00, 0x00},  // w
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00, 0x00},  // x
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // y
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00},  // z
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00, 0x00},  // {
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // |
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00, 0x00},  // }
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00},  // ~
}};
constexpr int kGlyphW = 5;
constexpr int kGlyphH = 9;  // 7 above the baseline, 2 below.
constexpr int kAdvance = kGlyphW + 1;
// Height of capitals and digits: what a label is centred on, ignoring descenders.
int CapHeight(int scale) { return 7 * std::max(scale, 1); }

constexpr Rgb kAxisColour{60, 60, 60};
constexpr Rgb kGridColour{225, 225, 225};
constexpr Rgb kTextColour{20, 20, 20};

// Pixels x0 <= x < x1, y0 <= y < y1.
struct Rect {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  int w() const { return x1 - x0; }
  int h() const { return y1 - y0; }
};

bool IsCanvas(const Video& v) {
  return v.channels == 3 && v.frames >= 1 && v.height > 0 && v.width > 0 &&
         v.data.size() == static_cast<size_t>(v.numel());
}

Rect Whole(const Video& v) { return {0, 0, static_cast<int>(v.width), static_cast<int>(v.height)}; }

float ToSample(uint8_t c) { return static_cast<float>(c) / 255.0f * 2.0f - 1.0f; }

// Mixes `colour` into one pixel of frame 0 with weight alpha in [0, 1].
void Blend(Video& v, const Rect& clip, int x, int y, Rgb colour, double alpha) {
  if (x < clip.x0 || x >= clip.x1 || y < clip.y0 || y >= clip.y1 || alpha <= 0.0) return;
  const float a = static_cast<float>(std::min(alpha, 1.0));
  const uint8_t comps[3] = {colour.r, colour.g, colour.b};
  for (int c = 0; c < 3; ++c) {
    float& p = v.at(c, 0, y, x);
    p = p + (ToSample(comps[c]) - p) * a;
  }
}

void FillRectIn(Video& v, const Rect& clip, int x0, int y0, int w, int h, Rgb colour) {
  const int xa = std::max(x0, clip.x0), xb = std::min(x0 + w, clip.x1);
  const int ya = std::max(y0, clip.y0), yb = std::min(y0 + h, clip.y1);
  const float s[3] = {ToSample(colour.r), ToSample(colour.g), ToSample(colour.b)};
  for (int c = 0; c < 3; ++c) {
    for (int y = ya; y < yb; ++y) {
      for (int x = xa; x < xb; ++x) v.at(c, 0, y, x) = s[c];
    }
  }
}

// Coverage from the distance of each pixel centre to the segment: full inside half the
// thickness, fading out over one pixel.
void LineIn(Video& v, const Rect& clip, double x0, double y0, double x1, double y1, Rgb colour,
            double thickness) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  const double half = std::max(thickness, 0.5) / 2.0;
  const double reach = half + 1.0;
  const int xa = std::max(clip.x0, static_cast<int>(std::floor(std::min(x0, x1) - reach)));
  const int xb = std::min(clip.x1 - 1, static_cast<int>(std::ceil(std::max(x0, x1) + reach)));
  const int ya = std::max(clip.y0, static_cast<int>(std::floor(std::min(y0, y1) - reach)));
  const int yb = std::min(clip.y1 - 1, static_cast<int>(std::ceil(std::max(y0, y1) + reach)));
  const double dx = x1 - x0, dy = y1 - y0;
  const double len2 = dx * dx + dy * dy;
  for (int y = ya; y <= yb; ++y) {
    for (int x = xa; x <= xb; ++x) {
      double t = len2 > 0 ? ((x - x0) * dx + (y - y0) * dy) / len2 : 0.0;
      t = std::clamp(t, 0.0, 1.0);
      const double ex = x - (x0 + t * dx), ey = y - (y0 + t * dy);
      const double d = std::sqrt(ex * ex + ey * ey);
      Blend(v, clip, x, y, colour, std::clamp(half + 0.5 - d, 0.0, 1.0));
    }
  }
}

void DiscIn(Video& v, const Rect& clip, double cx, double cy, double r, Rgb colour) {
  if (!std::isfinite(cx) || !std::isfinite(cy) || !(r > 0)) return;
  const int xa = std::max(clip.x0, static_cast<int>(std::floor(cx - r - 1)));
  const int xb = std::min(clip.x1 - 1, static_cast<int>(std::ceil(cx + r + 1)));
  const int ya = std::max(clip.y0, static_cast<int>(std::floor(cy - r - 1)));
  const int yb = std::min(clip.y1 - 1, static_cast<int>(std::ceil(cy + r + 1)));
  for (int y = ya; y <= yb; ++y) {
    for (int x = xa; x <= xb; ++x) {
      const double d = std::hypot(x - cx, y - cy);
      Blend(v, clip, x, y, colour, std::clamp(r + 0.5 - d, 0.0, 1.0));
    }
  }
}

const std::array<uint8_t, kGlyphH>& Glyph(char ch) {
  const int code = static_cast<unsigned char>(ch);
  return kFont[(code >= 32 && code <= 126) ? code - 32 : '?' - 32];
}

// Calls put(u, v) for every lit pixel of `text`, u along the text and v down from its top.
template <typename Put>
void ForEachTextPixel(const std::string& text, int scale, Put put) {
  scale = std::max(scale, 1);
  for (size_t i = 0; i < text.size(); ++i) {
    const auto& rows = Glyph(text[i]);
    for (int gy = 0; gy < kGlyphH; ++gy) {
      for (int gx = 0; gx < kGlyphW; ++gx) {
        if (!(rows[gy] & (0x10 >> gx))) continue;
        const int u0 = (static_cast<int>(i) * kAdvance + gx) * scale, v0 = gy * scale;
        for (int sy = 0; sy < scale; ++sy) {
          for (int sx = 0; sx < scale; ++sx) put(u0 + sx, v0 + sy);
        }
      }
    }
  }
}

// Shortens `text` with ".." until it is at most max_width pixels wide.
std::string FitText(const std::string& text, int scale, int max_width) {
  if (TextWidth(text, scale) <= max_width) return text;
  std::string s = text;
  while (!s.empty() && TextWidth(s + "..", scale) > max_width) s.pop_back();
  return s.empty() ? std::string() : s + "..";
}

void TextCentred(Video& v, int cx, int y, const std::string& text, Rgb colour, int scale) {
  DrawText(v, cx - TextWidth(text, scale) / 2, y, text, colour, scale);
}

double Luminance(Rgb c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; }

Rgb Mix(Rgb a, Rgb b, double t) {
  t = std::clamp(t, 0.0, 1.0);
  auto m = [t](uint8_t x, uint8_t y) {
    return static_cast<uint8_t>(std::lround(x + (static_cast<double>(y) - x) * t));
  };
  return {m(a.r, b.r), m(a.g, b.g), m(a.b, b.b)};
}

// Writes "1e+06" as "1e6" and "2.5e-05" as "2.5e-5".
std::string CompactExponent(std::string s) {
  const size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  std::string sign;
  if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) {
    if (exp[0] == '-') sign = "-";
    exp = exp.substr(1);
  }
  while (exp.size() > 1 && exp[0] == '0') exp = exp.substr(1);
  return mant + "e" + sign + exp;
}

// A tick label: decimals follow the step, so 0.1-steps print "0.3" and 1e6-steps "3e6".
std::string FormatTick(double v, double step, double max_abs) {
  if (std::fabs(v) < step * 1e-9) v = 0.0;
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  if (max_abs >= 1e6 || step_exp < -4) {
    if (v == 0.0) return "0";
    const int mag = static_cast<int>(std::floor(std::log10(std::fabs(v)) + 1e-9));
    const int digits = std::clamp(mag - step_exp + 1, 1, 15);
    return CompactExponent(fmt::format("{:.{}e}", v, digits - 1));
  }
  return fmt::format("{:.{}f}", v, std::max(0, -step_exp));
}

// Formats a value with `decimals`, trimming nothing (tables read best with fixed decimals).
std::string FormatValue(double v, int decimals) {
  if (!std::isfinite(v)) return std::isnan(v) ? "-" : (v > 0 ? "inf" : "-inf");
  if (std::fabs(v) >= 1e7) return CompactExponent(fmt::format("{:.2e}", v));
  return fmt::format("{:.{}f}", v, std::clamp(decimals, 0, 10));
}

Status CheckSize(int width, int height) {
  if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide) {
    return Status::InvalidArgument(
        fmt::format("figure size {}x{} is outside 1..{}", width, height, kMaxSide));
  }
  return Status::OK();
}

// ---- Shared axes layout for LinePlot and BarChart ----

struct AxisMap {
  double lo = 0, hi = 1;
  bool log = false;
  int p0 = 0, p1 = 1;  // Pixel positions of lo and hi.
  double T(double v) const { return log ? std::log10(v) : v; }
  double ToPixel(double v) const {
    const double tl = T(lo), th = T(hi);
    const double f = th > tl ? (T(v) - tl) / (th - tl) : 0.5;
    return p0 + f * (p1 - p0);
  }
};

struct Frame {
  Rect plot;  // The data area.
  int font = 2;
};

// Reserves space for title and axis labels and returns the margins common to both charts.
struct Margins {
  int left = 0, right = 0, top = 0, bottom = 0;
};

Margins BaseMargins(int font, const std::string& title, const std::string& x_label,
                    const std::string& y_label, int y_tick_width, bool x_ticks) {
  const int pad = 4 * font;
  const int th = TextHeight(font);
  Margins m;
  m.top = pad + (title.empty() ? 0 : TextHeight(font + 1) + pad);
  m.bottom = pad + (x_ticks ? 2 * font + th + pad : th + pad) + (x_label.empty() ? 0 : th + pad);
  m.left = pad + (y_label.empty() ? 0 : th + pad) + y_tick_width + 3 * font;
  m.right = pad * 3;
  return m;
}

AxisTicks YTicksFor(double lo, double hi, bool log, int plot_h, int font) {
  const int max_ticks = std::clamp(plot_h / (TextHeight(font) * 3), 2, 10);
  return log ? LogTicks(lo, hi, max_ticks) : NiceTicks(lo, hi, max_ticks);
}

int WidestLabel(const AxisTicks& t, int font) {
  int w = 0;
  for (const auto& s : t.labels) w = std::max(w, TextWidth(s, font));
  return w;
}

void DrawTitleAndLabels(Video& c, const Rect& plot, int font, const std::string& title,
                        const std::string& x_label, const std::string& y_label) {
  const int pad = 4 * font;
  const int th = TextHeight(font);
  const int cx = (plot.x0 + plot.x1) / 2;
  if (!title.empty()) {
    const int ts = font + 1;
    const std::string t = FitText(title, ts, static_cast<int>(c.width) - 2 * pad);
    int x = cx - TextWidth(t, ts) / 2;
    x = std::clamp(x, pad, std::max(pad, static_cast<int>(c.width) - pad - TextWidth(t, ts)));
    DrawText(c, x, pad, t, kTextColour, ts);
  }
  if (!x_label.empty()) {
    TextCentred(c, cx, static_cast<int>(c.height) - pad - th, x_label, kTextColour, font);
  }
  if (!y_label.empty()) {
    const std::string t = FitText(y_label, font, static_cast<int>(c.height) - 2 * pad);
    const int w = TextWidth(t, font);
    const int y = std::clamp((plot.y0 + plot.y1) / 2 - w / 2, 0, std::max(0, int(c.height) - w));
    DrawTextVertical(c, pad, y, t, kTextColour, font);
  }
}

void DrawYAxis(Video& c, const Rect& plot, const AxisTicks& ticks, const AxisMap& map, int font) {
  for (size_t i = 0; i < ticks.values.size(); ++i) {
    const int y = static_cast<int>(std::lround(map.ToPixel(ticks.values[i])));
    FillRectIn(c, Whole(c), plot.x0, y, plot.w(), 1, kGridColour);
    FillRectIn(c, Whole(c), plot.x0 - 2 * font, y, 2 * font, 1, kAxisColour);
    const std::string& s = ticks.labels[i];
    DrawText(c, plot.x0 - 3 * font - TextWidth(s, font), y - CapHeight(font) / 2, s, kTextColour,
             font);
  }
}

void DrawPlotBorder(Video& c, const Rect& plot) {
  const Rect all = Whole(c);
  FillRectIn(c, all, plot.x0 - 1, plot.y0 - 1, plot.w() + 2, 1, kAxisColour);
  FillRectIn(c, all, plot.x0 - 1, plot.y1, plot.w() + 2, 1, kAxisColour);
  FillRectIn(c, all, plot.x0 - 1, plot.y0 - 1, 1, plot.h() + 2, kAxisColour);
  FillRectIn(c, all, plot.x1, plot.y0 - 1, 1, plot.h() + 2, kAxisColour);
}

struct LegendEntry {
  std::string name;
  Rgb colour;
  bool line = true;  // A short line; otherwise a filled square.
  bool marker = false;
};

// A boxed legend with its top-left at (x, y); returns nothing, size from LegendSize.
std::pair<int, int> LegendSize(const std::vector<LegendEntry>& entries, int font) {
  const int pad = 3 * font, swatch = 10 * font, row = TextHeight(font) + 3 * font;
  int w = 0;
  for (const auto& e : entries) w = std::max(w, TextWidth(e.name, font));
  return {pad + swatch + 3 * font + w + pad,
          pad + static_cast<int>(entries.size()) * row - 3 * font + pad};
}

void DrawLegend(Video& c, int x, int y, const std::vector<LegendEntry>& entries, int font) {
  const auto [w, h] = LegendSize(entries, font);
  const int pad = 3 * font, swatch = 10 * font, row = TextHeight(font) + 3 * font;
  const Rect all = Whole(c);
  FillRectIn(c, all, x, y, w, h, kWhite);
  FillRectIn(c, all, x, y, w, 1, Rgb{180, 180, 180});
  FillRectIn(c, all, x, y + h - 1, w, 1, Rgb{180, 180, 180});
  FillRectIn(c, all, x, y, 1, h, Rgb{180, 180, 180});
  FillRectIn(c, all, x + w - 1, y, 1, h, Rgb{180, 180, 180});
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const int ty = y + pad + static_cast<int>(i) * row;
    const double my = ty + CapHeight(font) / 2.0 - 0.5;
    if (e.line) {
      LineIn(c, all, x + pad, my, x + pad + swatch - 1, my, e.colour, std::max(2.0, font * 1.0));
      if (e.marker) DiscIn(c, all, x + pad + (swatch - 1) / 2.0, my, 1.5 * font, e.colour);
    } else {
      FillRectIn(c, all, x + pad, ty, swatch, TextHeight(font), e.colour);
    }
    DrawText(c, x + pad + swatch + 3 * font, ty, e.name, kTextColour, font);
  }
}

}  // namespace

Rgb PaletteColour(size_t index) {
  static constexpr Rgb kPalette[] = {
      {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return kPalette[index % (sizeof(kPalette) / sizeof(kPalette[0]))];
}

Result<Video> MakeCanvas(int width, int height, Rgb background) {
  VF_RETURN_NOT_OK(CheckSize(width, height));
  Video v(3, 1, height, width, 1.0);
  FillRect(v, 0, 0, width, height, background);
  return v;
}

void FillRect(Video& canvas, int x0, int y0, int w, int h, Rgb colour) {
  if (IsCanvas(canvas)) FillRectIn(canvas, Whole(canvas), x0, y0, w, h, colour);
}

void DrawLine(Video& canvas, double x0, double y0, double x1, double y1, Rgb colour,
              double thickness) {
  if (IsCanvas(canvas)) LineIn(canvas, Whole(canvas), x0, y0, x1, y1, colour, thickness);
}

void DrawCircle(Video& canvas, double cx, double cy, double radius, Rgb colour) {
  if (IsCanvas(canvas)) DiscIn(canvas, Whole(canvas), cx, cy, radius, colour);
}

int TextWidth(const std::string& text, int scale) {
  if (text.empty()) return 0;
  return (static_cast<int>(text.size()) * kAdvance - 1) * std::max(scale, 1);
}

int TextHeight(int scale) { return kGlyphH * std::max(scale, 1); }

void DrawText(Video& canvas, int x, int y, const std::string& text, Rgb colour, int scale) {
  if (!IsCanvas(canvas)) return;
  const Rect all = Whole(canvas);
  ForEachTextPixel(text, scale,
                   [&](int u, int v) { Blend(canvas, all, x + u, y + v, colour, 1.0); });
}

void DrawTextVertical(Video& canvas, int x, int y, const std::string& text, Rgb colour, int scale) {
  if (!IsCanvas(canvas)) return;
  const Rect all = Whole(canvas);
  const int w = TextWidth(text, scale);
  // Counter-clockwise: the text's u axis runs up the canvas, its v axis (down the glyph) right.
  ForEachTextPixel(text, scale,
                   [&](int u, int v) { Blend(canvas, all, x + v, y + w - 1 - u, colour, 1.0); });
}

AxisTicks NiceTicks(double lo, double hi, int max_ticks) {
  max_ticks = std::max(max_ticks, 2);
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0.0, hi = 1.0;
  if (lo > hi) std::swap(lo, hi);
  if (hi == lo) {
    const double d = lo == 0.0 ? 1.0 : std::fabs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  // Halves first so that a span near DBL_MAX does not overflow.
  const double half_span = hi / 2 - lo / 2;
  int exp10 = static_cast<int>(std::floor(std::log10(half_span * 2 / max_ticks))) - 1;
  static constexpr int kMantissas[] = {1, 2, 5};
  AxisTicks t;
  for (int guard = 0; guard < 64; ++guard, ++exp10) {
    for (int m : kMantissas) {
      // m * 10^e as a division when e < 0 so 3 * 0.1 prints as 0.3, not 0.30000000000000004.
      const double pow10 = std::pow(10.0, std::abs(exp10));
      const double step = exp10 >= 0 ? m * pow10 : m / pow10;
      const double k0 = std::floor(lo / step), k1 = std::ceil(hi / step);
      if (k1 - k0 + 1 > max_ticks) continue;
      auto value = [&](double k) { return exp10 >= 0 ? k * m * pow10 : k * m / pow10; };
      t.lo = value(k0);
      t.hi = value(k1);
      const double max_abs = std::max(std::fabs(t.lo), std::fabs(t.hi));
      for (double k = k0; k <= k1; k += 1.0) {
        double v = value(k);
        if (std::fabs(v) < step * 1e-9) v = 0.0;
        t.values.push_back(v);
        t.labels.push_back(FormatTick(v, step, max_abs));
      }
      return t;
    }
  }
  t.lo = lo;  // Unreachable for finite input; keeps the result well formed anyway.
  t.hi = hi;
  t.values = {lo, hi};
  t.labels = {FormatTick(lo, hi - lo, hi), FormatTick(hi, hi - lo, hi)};
  return t;
}

AxisTicks LogTicks(double lo, double hi, int max_ticks) {
  max_ticks = std::max(max_ticks, 2);
  constexpr double kTiny = std::numeric_limits<double>::min();
  if (!(lo > 0) || !std::isfinite(lo)) lo = kTiny;
  if (!(hi > 0) || !std::isfinite(hi)) hi = lo * 10;
  if (lo > hi) std::swap(lo, hi);
  if (lo == hi) lo /= 2, hi *= 2;
  AxisTicks t;
  t.lo = lo;
  t.hi = hi;
  // m x 10^k ticks, all labelled in exponent form when any one needs it.
  std::vector<std::pair<int, int>> ticks;  // (m, k)
  auto finish = [&] {
    bool exp_form = false;
    for (const auto& [m, k] : ticks) exp_form |= k < -3 || k > 4;
    for (const auto& [m, k] : ticks) {
      const double v = k >= 0 ? m * std::pow(10.0, k) : m / std::pow(10.0, -k);
      t.values.push_back(v);
      t.labels.push_back(exp_form ? (m == 1 && k == 0 ? "1" : fmt::format("{}e{}", m, k))
                                  : fmt::format("{:.{}f}", v, std::max(0, -k)));
    }
    return t;
  };
  auto floor_div = [](int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  const int k0 = static_cast<int>(std::ceil(std::log10(lo) - 1e-9));
  const int k1 = static_cast<int>(std::floor(std::log10(hi) + 1e-9));
  if (k1 - k0 + 1 >= 3) {
    // Every n-th decade inside the range, at multiples of n so that 10^0 is one when in range.
    for (int every = 1;; ++every) {
      const int a0 = -floor_div(-k0, every) * every, a1 = floor_div(k1, every) * every;
      if ((a1 - a0) / every + 1 > max_ticks) continue;
      for (int k = a0; k <= a1; k += every) ticks.emplace_back(1, k);
      return finish();
    }
  }
  // Under three decades: 1, 2, 5 x 10^k inside the range, thinned to fit.
  for (const std::vector<int>& mantissas :
       {std::vector<int>{1, 2, 5}, std::vector<int>{1, 5}, std::vector<int>{1}}) {
    ticks.clear();
    for (int k = k0 - 1; k <= k1; ++k) {
      for (int m : mantissas) {
        const double v = k >= 0 ? m * std::pow(10.0, k) : m / std::pow(10.0, -k);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.emplace_back(m, k);
      }
    }
    if (ticks.size() <= static_cast<size_t>(max_ticks)) break;
  }
  if (ticks.size() >= 2) return finish();
  // Well under a decade: evenly spaced ticks read fine on a log axis too.
  const AxisTicks lin = NiceTicks(lo, hi, max_ticks);
  for (size_t i = 0; i < lin.values.size(); ++i) {
    if (lin.values[i] <= 0) continue;
    t.values.push_back(lin.values[i]);
    t.labels.push_back(lin.labels[i]);
  }
  t.lo = std::min(lo, t.values.front());
  t.hi = std::max(hi, t.values.back());
  return t;
}

Result<Video> LinePlot(const std::vector<Series>& series, const LinePlotOptions& opts) {
  VF_RETURN_NOT_OK(CheckSize(opts.width, opts.height));
  if (series.empty()) return Status::InvalidArgument("line plot of no series");
  const int font = std::clamp(opts.font_scale, 1, 8);

  // Gather the plottable points; NaN marks a break in the line.
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::vector<std::pair<double, double>>> pts(series.size());
  double xmin = HUGE_VAL, xmax = -HUGE_VAL, ymin = HUGE_VAL, ymax = -HUGE_VAL;
  for (size_t s = 0; s < series.size(); ++s) {
    const Series& ser = series[s];
    if (!ser.x.empty() && ser.x.size() != ser.y.size()) {
      return Status::InvalidArgument(fmt::format("series {} '{}' has {} x values but {} y values",
                                                 s, ser.name, ser.x.size(), ser.y.size()));
    }
    for (size_t i = 0; i < ser.y.size(); ++i) {
      const double x = ser.x.empty() ? static_cast<double>(i) : ser.x[i];
      const double y = ser.y[i];
      const bool ok =
          std::isfinite(x) && std::isfinite(y) && (!opts.log_x || x > 0) && (!opts.log_y || y > 0);
      if (!ok) {
        pts[s].emplace_back(kNaN, kNaN);
        continue;
      }
      pts[s].emplace_back(x, y);
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
      ymin = std::min(ymin, y);
      ymax = std::max(ymax, y);
    }
  }
  if (!(xmin <= xmax)) {
    return Status::InvalidArgument(
        "line plot has no finite point" +
        std::string(opts.log_x || opts.log_y ? " (> 0 on log axes)" : ""));
  }
  if (opts.y_range) {
    const auto [lo, hi] = *opts.y_range;
    if (!std::isfinite(lo) || !std::isfinite(hi) || !(lo < hi) || (opts.log_y && !(lo > 0))) {
      return Status::InvalidArgument(fmt::format("bad y range [{}, {}]", lo, hi));
    }
  }

  // Log axes span the data (plus a margin) rather than whole decades, which can waste most of
  // the plot; linear axes are widened to nice ticks by NiceTicks.
  auto log_pad = [](double& lo, double& hi) {
    const double span = std::log10(hi / lo);
    const double f = std::pow(10.0, span > 0 ? 0.04 * span : 0.1);
    lo /= f;
    hi *= f;
  };
  if (opts.log_x) log_pad(xmin, xmax);
  if (opts.log_y) log_pad(ymin, ymax);

  // Vertical layout first: it does not depend on tick label widths.
  const int th = TextHeight(font);
  Margins m = BaseMargins(font, opts.title, opts.x_label, opts.y_label, 0, true);
  const int plot_h = opts.height - m.top - m.bottom;
  AxisTicks yt;
  if (opts.y_range) {
    const auto [lo, hi] = *opts.y_range;
    yt = YTicksFor(lo, hi, opts.log_y, std::max(plot_h, 1), font);
    // A fixed range stays fixed: keep only the ticks inside it.
    AxisTicks inside;
    inside.lo = lo;
    inside.hi = hi;
    for (size_t i = 0; i < yt.values.size(); ++i) {
      const double v = yt.values[i], eps = (hi - lo) * 1e-9;
      if (v >= lo - eps && v <= hi + eps) {
        inside.values.push_back(v);
        inside.labels.push_back(yt.labels[i]);
      }
    }
    yt = inside;
  } else {
    yt = YTicksFor(ymin, ymax, opts.log_y, std::max(plot_h, 1), font);
  }
  m = BaseMargins(font, opts.title, opts.x_label, opts.y_label, WidestLabel(yt, font), true);
  const int plot_w = opts.width - m.left - m.right;
  if (plot_w < 8 * font || plot_h < 4 * th) {
    return Status::InvalidArgument(
        fmt::format("figure {}x{} is too small for its labels", opts.width, opts.height));
  }
  // The most x ticks whose labels still leave a gap between neighbours.
  AxisTicks xt;
  for (int n = std::clamp(plot_w / (th * 4), 2, 12); n >= 2; --n) {
    xt = opts.log_x ? LogTicks(xmin, xmax, n) : NiceTicks(xmin, xmax, n);
    const int gaps = std::max<int>(1, static_cast<int>(xt.values.size()) - 1);
    if (WidestLabel(xt, font) + 3 * th <= plot_w / gaps) break;
  }
  // Room for the last x label to hang over the right edge.
  if (!xt.labels.empty()) m.right = std::max(m.right, TextWidth(xt.labels.back(), font) / 2 + 4);

  Rect plot{m.left, m.top, opts.width - m.right, opts.height - m.bottom};
  VF_ASSIGN_OR_RETURN(Video c, MakeCanvas(opts.width, opts.height));
  AxisMap xm{xt.lo, xt.hi, opts.log_x, plot.x0, plot.x1 - 1};
  AxisMap ym{yt.lo, yt.hi, opts.log_y, plot.y1 - 1, plot.y0};

  for (size_t i = 0; i < xt.values.size(); ++i) {
    const int x = static_cast<int>(std::lround(xm.ToPixel(xt.values[i])));
    FillRectIn(c, Whole(c), x, plot.y0, 1, plot.h(), kGridColour);
    FillRectIn(c, Whole(c), x, plot.y1, 1, 2 * font, kAxisColour);
    TextCentred(c, x, plot.y1 + 3 * font, xt.labels[i], kTextColour, font);
  }
  DrawYAxis(c, plot, yt, ym, font);

  // Series, clipped to the data area, in pixel coordinates.
  std::vector<std::vector<std::pair<double, double>>> px(series.size());
  for (size_t s = 0; s < series.size(); ++s) {
    for (const auto& [x, y] : pts[s]) {
      px[s].emplace_back(std::isnan(x) ? kNaN : xm.ToPixel(x),
                         std::isnan(y) ? kNaN : ym.ToPixel(y));
    }
  }
  for (size_t s = 0; s < series.size(); ++s) {
    const Rgb col = series[s].colour.value_or(PaletteColour(s));
    const auto& p = px[s];
    const double r = opts.line_width + 1.5;
    for (size_t i = 0; i < p.size(); ++i) {
      if (std::isnan(p[i].first)) continue;
      const bool prev = i > 0 && !std::isnan(p[i - 1].first);
      const bool next = i + 1 < p.size() && !std::isnan(p[i + 1].first);
      if (next)
        LineIn(c, plot, p[i].first, p[i].second, p[i + 1].first, p[i + 1].second, col,
               opts.line_width);
      if (series[s].markers || (!prev && !next)) DiscIn(c, plot, p[i].first, p[i].second, r, col);
    }
  }
  DrawPlotBorder(c, plot);

  // Legend in the corner that hides the fewest samples along the curves.
  std::vector<LegendEntry> entries;
  for (size_t s = 0; s < series.size(); ++s) {
    if (series[s].name.empty()) continue;
    entries.push_back(
        {series[s].name, series[s].colour.value_or(PaletteColour(s)), true, series[s].markers});
  }
  if (!entries.empty()) {
    const auto [lw, lh] = LegendSize(entries, font);
    const int inset = 3 * font;
    const int xs[2] = {plot.x1 - inset - lw, plot.x0 + inset};
    const int ys[2] = {plot.y0 + inset, plot.y1 - inset - lh};
    long best = -1;
    int bx = xs[0], by = ys[0];
    for (int yi = 0; yi < 2; ++yi) {
      for (int xi = 0; xi < 2; ++xi) {
        long hits = 0;
        auto count = [&](double x, double y) {
          if (x >= xs[xi] && x < xs[xi] + lw && y >= ys[yi] && y < ys[yi] + lh) ++hits;
        };
        for (const auto& p : px) {
          for (size_t i = 0; i < p.size(); ++i) {
            if (std::isnan(p[i].first)) continue;
            count(p[i].first, p[i].second);
            if (i + 1 >= p.size() || std::isnan(p[i + 1].first)) continue;
            const double len =
                std::hypot(p[i + 1].first - p[i].first, p[i + 1].second - p[i].second);
            const int n = std::min(2000, static_cast<int>(len / 3));
            for (int k = 1; k < n; ++k) {
              const double f = static_cast<double>(k) / n;
              count(p[i].first + f * (p[i + 1].first - p[i].first),
                    p[i].second + f * (p[i + 1].second - p[i].second));
            }
          }
        }
        if (best < 0 || hits < best) {
          best = hits;
          bx = xs[xi];
          by = ys[yi];
        }
      }
    }
    DrawLegend(c, bx, by, entries, font);
  }
  DrawTitleAndLabels(c, plot, font, opts.title, opts.x_label, opts.y_label);
  return c;
}

Result<Video> BarChart(const std::vector<std::string>& categories,
                       const std::vector<BarGroup>& groups, const BarChartOptions& opts) {
  VF_RETURN_NOT_OK(CheckSize(opts.width, opts.height));
  if (categories.empty()) return Status::InvalidArgument("bar chart with no categories");
  if (groups.empty()) return Status::InvalidArgument("bar chart with no groups");
  const int font = std::clamp(opts.font_scale, 1, 8);
  double lo = 0.0, hi = 0.0;
  bool any = false;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].values.size() != categories.size()) {
      return Status::InvalidArgument(
          fmt::format("bar group {} '{}' has {} values for {} categories", g, groups[g].name,
                      groups[g].values.size(), categories.size()));
    }
    for (double v : groups[g].values) {
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      any = true;
    }
  }
  if (opts.target && std::isfinite(*opts.target)) {
    lo = std::min(lo, *opts.target);
    hi = std::max(hi, *opts.target);
  }
  if (!any) return Status::InvalidArgument("bar chart has no finite value");

  const int th = TextHeight(font);
  // A legend row under the title when there is more than one group (or a named one).
  std::vector<LegendEntry> entries;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (!groups[g].name.empty()) {
      entries.push_back({groups[g].name, groups[g].colour.value_or(PaletteColour(g)), false});
    }
  }
  Margins m = BaseMargins(font, opts.title, opts.x_label, opts.y_label, 0, true);
  const int legend_h = entries.empty() ? 0 : th + 4 * font;
  m.top += legend_h;
  const int plot_h = opts.height - m.top - m.bottom;
  AxisTicks yt;
  if (opts.y_range) {
    const auto [a, b] = *opts.y_range;
    if (!std::isfinite(a) || !std::isfinite(b) || !(a < b)) {
      return Status::InvalidArgument(fmt::format("bad y range [{}, {}]", a, b));
    }
    const AxisTicks all = YTicksFor(a, b, false, std::max(plot_h, 1), font);
    yt.lo = a;
    yt.hi = b;
    for (size_t i = 0; i < all.values.size(); ++i) {
      if (all.values[i] >= a - (b - a) * 1e-9 && all.values[i] <= b + (b - a) * 1e-9) {
        yt.values.push_back(all.values[i]);
        yt.labels.push_back(all.labels[i]);
      }
    }
  } else {
    // Headroom so value labels above the tallest bar stay inside the frame.
    const double span = hi > lo ? hi - lo : 1.0;
    const double extra = opts.value_labels ? span * (CapHeight(font) + 3.0 * font) /
                                                 std::max(plot_h - CapHeight(font), 1)
                                           : 0.0;
    yt = YTicksFor(lo < 0 ? lo - extra : lo, hi > 0 || lo == 0 ? hi + extra : hi, false,
                   std::max(plot_h, 1), font);
  }
  m = BaseMargins(font, opts.title, opts.x_label, opts.y_label, WidestLabel(yt, font), true);
  m.top += legend_h;
  const int plot_w = opts.width - m.left - m.right;
  if (plot_w < 8 * font || plot_h < 4 * th) {
    return Status::InvalidArgument(
        fmt::format("figure {}x{} is too small for its labels", opts.width, opts.height));
  }
  Rect plot{m.left, m.top, opts.width - m.right, opts.height - m.bottom};
  VF_ASSIGN_OR_RETURN(Video c, MakeCanvas(opts.width, opts.height));
  AxisMap ym{yt.lo, yt.hi, false, plot.y1 - 1, plot.y0};
  DrawYAxis(c, plot, yt, ym, font);

  const int ncat = static_cast<int>(categories.size());
  const int ngroups = static_cast<int>(groups.size());
  const double slot = static_cast<double>(plot.w()) / ncat;
  const double bar_w = slot * 0.86 / ngroups;
  const double base = ym.ToPixel(std::clamp(0.0, yt.lo, yt.hi));
  struct ValueLabel {
    int x, y, scale;
    Rgb ink;
    bool inside;  // Inside the bar rather than above (or below) it.
    std::string text;
  };
  std::vector<ValueLabel> value_labels;  // Drawn last, over the target line.
  // One scale for every value label: the largest at which the widest fits the narrowest bar.
  int label_scale = 0;
  const int narrowest = static_cast<int>(std::floor(bar_w)) - (bar_w > 12 ? 3 : 1);
  for (int sc = font; sc >= 1 && label_scale == 0; --sc) {
    bool fits = true;
    for (const auto& g : groups) {
      for (double v : g.values) {
        fits &= !std::isfinite(v) || TextWidth(FormatValue(v, opts.decimals), sc) <= narrowest - sc;
      }
    }
    if (fits) label_scale = sc;
  }
  for (int k = 0; k < ncat; ++k) {
    const double slot_x = plot.x0 + k * slot;
    const int cx = static_cast<int>(std::lround(slot_x + slot / 2));
    if (k > 0)
      FillRectIn(c, Whole(c), static_cast<int>(std::lround(slot_x)), plot.y1, 1, 2 * font,
                 kAxisColour);
    TextCentred(c, cx, plot.y1 + 3 * font,
                FitText(categories[k], font, static_cast<int>(slot) - 2 * font), kTextColour, font);
    for (int g = 0; g < ngroups; ++g) {
      const double v = groups[g].values[k];
      if (!std::isfinite(v)) continue;
      const Rgb col = groups[g].colour.value_or(PaletteColour(g));
      const int x0 = static_cast<int>(std::lround(slot_x + slot * 0.07 + g * bar_w));
      const int x1 =
          std::max(x0 + 1, static_cast<int>(std::lround(slot_x + slot * 0.07 + (g + 1) * bar_w)) -
                               (bar_w > 12 ? 2 : 0));
      const double top =
          std::clamp(ym.ToPixel(v), static_cast<double>(plot.y0), static_cast<double>(plot.y1 - 1));
      const int ya = static_cast<int>(std::lround(std::min(top, base)));
      const int yb = static_cast<int>(std::lround(std::max(top, base)));
      FillRectIn(c, plot, x0, ya, x1 - x0, std::max(1, yb - ya + 1), col);
      if (!opts.value_labels || label_scale == 0) continue;
      // Above the bar, or inside it if the frame is in the way.
      const int sc = label_scale;
      const std::string s = FormatValue(v, opts.decimals);
      int ty = v >= 0 ? ya - sc - CapHeight(sc) : yb + 2 * sc;
      const bool inside = ty < plot.y0 + 1 || ty + CapHeight(sc) > plot.y1 - 1;
      Rgb ink = kTextColour;
      if (inside) {
        ty = v >= 0 ? ya + 2 * sc : yb - sc - CapHeight(sc);
        ink = Luminance(col) < 128 ? kWhite : kTextColour;
      }
      value_labels.push_back({(x0 + x1) / 2 - TextWidth(s, sc) / 2, ty, sc, ink, inside, s});
    }
  }
  if (opts.target && std::isfinite(*opts.target)) {
    const Rgb red{200, 30, 30};
    const double y = ym.ToPixel(*opts.target);
    const int dash = 6 * font;
    for (int x = plot.x0; x < plot.x1; x += 2 * dash) {
      LineIn(c, plot, x, y, std::min(x + dash, plot.x1 - 1), y, red, std::max(2, font));
    }
    const std::string label =
        opts.target_label.empty() ? FormatValue(*opts.target, opts.decimals) : opts.target_label;
    const int lw = TextWidth(label, font);
    const int lx = plot.x1 - lw - 2 * font;
    const int ly = static_cast<int>(std::lround(y)) - 2 * font - CapHeight(font);
    FillRectIn(c, plot, lx - font, ly - font, lw + 2 * font, CapHeight(font) + 2 * font, kWhite);
    DrawText(c, lx, ly, label, red, font);
  }
  for (const auto& l : value_labels) {
    if (!l.inside) {  // Keep it clear of the target line.
      FillRectIn(c, plot, l.x - 2, l.y - 2, TextWidth(l.text, l.scale) + 4, CapHeight(l.scale) + 4,
                 kWhite);
    }
    DrawText(c, l.x, l.y, l.text, l.ink, l.scale);
  }
  // The zero line when bars go both ways.
  if (yt.lo < 0 && yt.hi > 0) {
    FillRectIn(c, Whole(c), plot.x0, static_cast<int>(std::lround(base)), plot.w(), 1, kAxisColour);
  }
  DrawPlotBorder(c, plot);
  if (!entries.empty()) {
    // Entries side by side, centred over the plot.
    const int gap = 10 * font, swatch = CapHeight(font), sep = 3 * font;
    int total = 0;
    for (const auto& e : entries) total += swatch + sep + TextWidth(e.name, font) + gap;
    total -= gap;
    int x = std::max(plot.x0, (plot.x0 + plot.x1) / 2 - total / 2);
    const int y = plot.y0 - legend_h + font;
    for (const auto& e : entries) {
      FillRectIn(c, Whole(c), x, y, swatch, swatch, e.colour);
      DrawText(c, x + swatch + sep, y, e.name, kTextColour, font);
      x += swatch + sep + TextWidth(e.name, font) + gap;
    }
  }
  DrawTitleAndLabels(c, plot, font, opts.title, opts.x_label, opts.y_label);
  return c;
}

Result<Video> Heatmap(const std::vector<std::string>& row_labels,
                      const std::vector<std::string>& col_labels,
                      const std::vector<std::vector<double>>& values, const HeatmapOptions& opts) {
  if (values.empty() || values[0].empty()) return Status::InvalidArgument("heatmap of no values");
  const size_t rows = values.size(), cols = values[0].size();
  for (size_t r = 0; r < rows; ++r) {
    if (values[r].size() != cols) {
      return Status::InvalidArgument(
          fmt::format("heatmap row {} has {} values, row 0 has {}", r, values[r].size(), cols));
    }
  }
  if (!row_labels.empty() && row_labels.size() != rows) {
    return Status::InvalidArgument(
        fmt::format("{} row labels for {} rows", row_labels.size(), rows));
  }
  if (!col_labels.empty() && col_labels.size() != cols) {
    return Status::InvalidArgument(
        fmt::format("{} column labels for {} columns", col_labels.size(), cols));
  }
  const int font = std::clamp(opts.font_scale, 1, 8);
  const int th = TextHeight(font), pad = 4 * font;

  double lo = HUGE_VAL, hi = -HUGE_VAL;
  for (const auto& row : values) {
    for (double v : row) {
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
  }
  if (opts.value_range) {
    lo = opts.value_range->first;
    hi = opts.value_range->second;
    if (!std::isfinite(lo) || !std::isfinite(hi) || !(lo < hi)) {
      return Status::InvalidArgument(fmt::format("bad value range [{}, {}]", lo, hi));
    }
  }

  int value_w = 0, col_label_w = 0, row_label_w = 0;
  for (const auto& row : values) {
    for (double v : row)
      value_w = std::max(value_w, TextWidth(FormatValue(v, opts.decimals), font));
  }
  for (const auto& s : col_labels) col_label_w = std::max(col_label_w, TextWidth(s, font));
  for (const auto& s : row_labels) row_label_w = std::max(row_label_w, TextWidth(s, font));
  // Long column labels are drawn vertically rather than widening every cell.
  const int min_cell = std::max(value_w + 2 * pad, 3 * th);
  const bool vertical_cols = col_label_w + pad > std::max(min_cell, 20 * font * 6);
  const int cell_w = vertical_cols ? min_cell : std::max(min_cell, col_label_w + pad);
  const int cell_h = 3 * th;
  const int col_head = col_labels.empty() ? 0 : (vertical_cols ? col_label_w : th) + pad;

  const int x_cells =
      pad + (opts.y_label.empty() ? 0 : th + pad) + (row_labels.empty() ? 0 : row_label_w + pad);
  const int title_h = opts.title.empty() ? 0 : TextHeight(font + 1) + pad;
  const int xlab_h = opts.x_label.empty() ? 0 : th + 2 * pad;
  const int y_cells = pad + title_h + xlab_h + col_head;
  const int64_t width64 = x_cells + static_cast<int64_t>(cols) * cell_w + pad;
  const int64_t height64 = y_cells + static_cast<int64_t>(rows) * cell_h + pad;
  if (width64 > kMaxSide || height64 > kMaxSide) {
    return Status::InvalidArgument(fmt::format("heatmap of {}x{} cells needs {}x{} pixels, over {}",
                                               rows, cols, width64, height64, kMaxSide));
  }
  const int width = static_cast<int>(std::max<int64_t>(
      width64, (opts.title.empty() ? 0 : TextWidth(opts.title, font + 1)) + 2 * pad));
  const int height = static_cast<int>(height64);
  VF_ASSIGN_OR_RETURN(Video c, MakeCanvas(width, height));
  const Rect grid{x_cells, y_cells, x_cells + static_cast<int>(cols) * cell_w,
                  y_cells + static_cast<int>(rows) * cell_h};

  for (size_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < cols; ++k) {
      const double v = values[r][k];
      const int x = grid.x0 + static_cast<int>(k) * cell_w;
      const int y = grid.y0 + static_cast<int>(r) * cell_h;
      Rgb fill{200, 200, 200};
      if (std::isfinite(v)) fill = Mix(opts.low, opts.high, hi > lo ? (v - lo) / (hi - lo) : 0.5);
      FillRect(c, x, y, cell_w, cell_h, fill);
      const Rgb ink = Luminance(fill) < 128 ? kWhite : kTextColour;
      TextCentred(c, x + cell_w / 2, y + (cell_h - CapHeight(font)) / 2,
                  FormatValue(v, opts.decimals), ink, font);
    }
  }
  // Thin white lines between cells, a frame around them.
  for (size_t k = 1; k < cols; ++k) {
    FillRect(c, grid.x0 + static_cast<int>(k) * cell_w, grid.y0, 1, grid.h(), kWhite);
  }
  for (size_t r = 1; r < rows; ++r) {
    FillRect(c, grid.x0, grid.y0 + static_cast<int>(r) * cell_h, grid.w(), 1, kWhite);
  }
  DrawPlotBorder(c, grid);

  for (size_t r = 0; r < row_labels.size(); ++r) {
    const int y = grid.y0 + static_cast<int>(r) * cell_h + (cell_h - CapHeight(font)) / 2;
    DrawText(c, grid.x0 - pad - TextWidth(row_labels[r], font), y, row_labels[r], kTextColour,
             font);
  }
  for (size_t k = 0; k < col_labels.size(); ++k) {
    const int cx = grid.x0 + static_cast<int>(k) * cell_w + cell_w / 2;
    if (vertical_cols) {
      const int w = TextWidth(col_labels[k], font);
      DrawTextVertical(c, cx - th / 2, grid.y0 - pad - w, col_labels[k], kTextColour, font);
    } else {
      TextCentred(c, cx, grid.y0 - pad - th, col_labels[k], kTextColour, font);
    }
  }
  if (!opts.title.empty()) {
    TextCentred(c, width / 2, pad, opts.title, kTextColour, font + 1);
  }
  if (!opts.x_label.empty()) {
    TextCentred(c, (grid.x0 + grid.x1) / 2, pad + title_h, opts.x_label, kTextColour, font);
  }
  if (!opts.y_label.empty()) {
    const int w = TextWidth(opts.y_label, font);
    DrawTextVertical(c, pad, std::max(0, (grid.y0 + grid.y1) / 2 - w / 2), opts.y_label,
                     kTextColour, font);
  }
  return c;
}

Result<Video> ContactSheet(const std::vector<std::vector<Video>>& rows,
                           const std::vector<std::string>& row_labels,
                           const ContactSheetOptions& opts) {
  if (rows.empty()) return Status::InvalidArgument("contact sheet of no rows");
  if (!row_labels.empty() && row_labels.size() != rows.size()) {
    return Status::InvalidArgument(
        fmt::format("{} row labels for {} rows", row_labels.size(), rows.size()));
  }
  if (opts.frames_per_clip < 1) {
    return Status::InvalidArgument(
        fmt::format("frames_per_clip must be >= 1, got {}", opts.frames_per_clip));
  }
  if (opts.scale < 1 || opts.scale > 64) {
    return Status::InvalidArgument(fmt::format("scale must be in 1..64, got {}", opts.scale));
  }
  if (opts.padding < 0 || opts.padding > 256) {
    return Status::InvalidArgument(fmt::format("padding must be in 0..256, got {}", opts.padding));
  }
  int64_t max_h = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].empty())
      return Status::InvalidArgument(fmt::format("contact sheet row {} is empty", r));
    for (size_t k = 0; k < rows[r].size(); ++k) {
      VF_RETURN_NOT_OK(
          rows[r][k].Validate().WithContext(fmt::format("contact sheet row {} clip {}", r, k)));
      max_h = std::max(max_h, rows[r][k].height);
    }
  }
  const int font = std::clamp(opts.font_scale, 1, 8);
  const int small = std::max(1, font - 1);
  const int pad = opts.padding;
  const int64_t cell_h = max_h * opts.scale;
  const int index_h = opts.frame_indices ? TextHeight(small) + 2 * small : 0;
  const int64_t row_h = cell_h + index_h;

  int label_w = 0;
  for (const auto& s : row_labels) label_w = std::max(label_w, TextWidth(s, font));
  const int64_t x_frames = pad + (label_w > 0 ? label_w + 3 * font : 0);
  const int title_h = opts.title.empty() ? 0 : TextHeight(font + 1) + 4 * font;
  const int64_t y_rows = pad + title_h;

  // Which frames each clip shows, at what upscale.
  auto sampled = [&](const Video& v) {
    std::vector<int64_t> idx;
    const int64_t n = std::min<int64_t>(opts.frames_per_clip, v.frames);
    for (int64_t i = 0; i < n; ++i) {
      idx.push_back(n == 1 ? 0 : (i * (v.frames - 1) * 2 + (n - 1)) / (2 * (n - 1)));
    }
    return idx;
  };
  auto factor = [&](const Video& v) { return std::max<int64_t>(1, cell_h / v.height); };
  int64_t width = 0;
  for (const auto& row : rows) {
    int64_t w = x_frames;
    for (const auto& clip : row) {
      w += static_cast<int64_t>(sampled(clip).size()) * (clip.width * factor(clip) + pad);
    }
    width = std::max(width, w);
  }
  width = std::max<int64_t>(width, TextWidth(opts.title, font + 1) + 2 * pad);
  const int64_t height = y_rows + static_cast<int64_t>(rows.size()) * (row_h + pad);
  if (width > kMaxSide || height > kMaxSide) {
    return Status::InvalidArgument(fmt::format(
        "contact sheet would be {}x{} pixels, over {}; use fewer frames or a smaller scale", width,
        height, kMaxSide));
  }
  VF_ASSIGN_OR_RETURN(Video c, MakeCanvas(static_cast<int>(width), static_cast<int>(height)));
  if (!opts.title.empty()) DrawText(c, pad, pad, opts.title, kTextColour, font + 1);

  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t y0 = y_rows + static_cast<int64_t>(r) * (row_h + pad);
    if (!row_labels.empty()) {
      DrawText(c, pad, static_cast<int>(y0 + (cell_h - CapHeight(font)) / 2), row_labels[r],
               kTextColour, font);
    }
    int64_t x0 = x_frames;
    for (const Video& clip : rows[r]) {
      const int64_t f = factor(clip);
      const int64_t w = clip.width * f, h = clip.height * f;
      const int64_t yoff = y0 + (cell_h - h) / 2;
      for (int64_t t : sampled(clip)) {
        for (int c3 = 0; c3 < 3; ++c3) {
          const int64_t src_c = clip.channels == 1 ? 0 : c3;
          for (int64_t y = 0; y < h; ++y) {
            for (int64_t x = 0; x < w; ++x) {
              c.at(c3, 0, yoff + y, x0 + x) =
                  std::clamp(clip.at(src_c, t, y / f, x / f), -1.0f, 1.0f);
            }
          }
        }
        if (opts.frame_indices) {
          const std::string s = FitText(fmt::format("t={}", t), small, static_cast<int>(w));
          DrawText(c, static_cast<int>(x0), static_cast<int>(y0 + cell_h + small), s,
                   Rgb{90, 90, 90}, small);
        }
        x0 += w + pad;
      }
    }
  }
  return c;
}

Status SavePlotPng(const Video& canvas, const std::string& path) {
  if (canvas.channels != 3 || canvas.frames != 1) {
    return Status::InvalidArgument(
        fmt::format("writing {}: a plot canvas has 3 channels and 1 frame, got {}", path,
                    canvas.ShapeString()));
  }
  return WritePng(canvas, 0, path);
}

}  // namespace vidfarm
