// Dependency-free figures for people to look at: loss curves, PSNR-vs-steps, grouped bar charts,
// confusion tables and contact sheets of video frames, written as PNG.
//
// A canvas is a plain Video with 1 frame and 3 channels in [-1, 1] (so WritePng writes it). The
// drawing primitives clip to the canvas and leave anything that is not a 3-channel video untouched;
// coordinates are in pixels with (0, 0) the centre of the top-left pixel. Text uses a built-in 5x7
// bitmap font with two rows of descenders (printable ASCII; other bytes draw as '?') scaled by an
// integer factor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"

namespace vidfarm {

// 8-bit sRGB; stored on the canvas as v / 255 * 2 - 1, the inverse of WritePng's mapping.
struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

inline constexpr Rgb kWhite{255, 255, 255};
inline constexpr Rgb kBlack{0, 0, 0};

// The colour for series/group `index` when none is given (a 10-colour qualitative palette, cycled).
Rgb PaletteColour(size_t index);

// ---- Canvas and primitives ----

// A 3x1xHxW canvas filled with `background`; sizes must be in 1..16384.
Result<Video> MakeCanvas(int width, int height, Rgb background = kWhite);

// Pixels x0 <= x < x0 + w, y0 <= y < y0 + h.
void FillRect(Video& canvas, int x0, int y0, int w, int h, Rgb colour);
// An anti-aliased segment `thickness` pixels wide with round ends.
void DrawLine(Video& canvas, double x0, double y0, double x1, double y1, Rgb colour,
              double thickness = 1.0);
// An anti-aliased filled disc.
void DrawCircle(Video& canvas, double cx, double cy, double radius, Rgb colour);

// Size of one line of text, times `scale`: glyphs are 5 wide with one blank column between them,
// and 9 tall (7 above the baseline, 2 for descenders).
int TextWidth(const std::string& text, int scale = 1);
int TextHeight(int scale = 1);
// Draws `text` with its box's top-left pixel at (x, y); the box is TextWidth x TextHeight.
void DrawText(Video& canvas, int x, int y, const std::string& text, Rgb colour, int scale = 1);
// Rotated 90 degrees counter-clockwise (reads bottom to top, as a y-axis label); the box's
// top-left pixel is (x, y) and it is TextHeight wide and TextWidth tall.
void DrawTextVertical(Video& canvas, int x, int y, const std::string& text, Rgb colour,
                      int scale = 1);

// ---- Axis ticks ----

struct AxisTicks {
  double lo = 0, hi = 1;            // The axis range: covers the range asked for.
  std::vector<double> values;       // Increasing tick positions inside [lo, hi].
  std::vector<std::string> labels;  // One per value, with as many decimals as the step needs.
};

// Ticks at multiples of 1, 2 or 5 x 10^k: the finest such step that gives at most max_ticks
// (>= 2) ticks; [lo, hi] is widened outwards to the enclosing multiples. A zero-width range is
// widened first. Non-finite input is treated as [0, 1].
AxisTicks NiceTicks(double lo, double hi, int max_ticks = 8);
// For a log axis over positive [lo, hi], which is kept as it is: ticks at powers of ten inside
// it (every n-th decade, so that at most max_ticks remain) when it spans three or more; else at
// 1, 2, 5 x 10^k inside it; else (well under a decade) NiceTicks, widening [lo, hi] to them.
AxisTicks LogTicks(double lo, double hi, int max_ticks = 8);

// ---- Figures ----

struct Series {
  std::string name;           // Shown in the legend; unnamed series are left out of it.
  std::vector<double> x;      // Empty: 0, 1, 2, ... Otherwise one per y.
  std::vector<double> y;      // Non-finite points (and <= 0 ones on a log axis) are skipped.
  std::optional<Rgb> colour;  // Default: PaletteColour(index in the series list).
  bool markers = false;       // Default: false. A dot on every point (isolated points always).
};

struct LinePlotOptions {
  std::string title, x_label, y_label;
  int width = 800;     // Default: 800. Canvas size in pixels.
  int height = 500;    // Default: 500.
  bool log_x = false;  // Default: false. Decade ticks; non-positive x are skipped.
  bool log_y = false;  // Default: false.
  std::optional<std::pair<double, double>>
      y_range;              // Default: fit the data. Points beyond are clipped.
  double line_width = 2.0;  // Default: 2.0 pixels.
  int font_scale = 2;       // Default: 2. Labels are 5x7 x this; the title one step larger.
};

// Axes with nice ticks, a light grid, title, axis labels and a legend in the emptiest corner.
// Errors: no series, a series whose x and y sizes differ, no plottable point at all, a bad size.
Result<Video> LinePlot(const std::vector<Series>& series, const LinePlotOptions& opts);

struct BarGroup {
  std::string name;            // Legend entry (e.g. the method).
  std::vector<double> values;  // One per category; NaN leaves a gap.
  std::optional<Rgb> colour;   // Default: PaletteColour(group index).
};

struct BarChartOptions {
  std::string title, x_label, y_label;
  int width = 800;                                   // Default: 800.
  int height = 500;                                  // Default: 500.
  std::optional<std::pair<double, double>> y_range;  // Default: fit the values and 0.
  bool value_labels = true;      // Default: true. The value printed above each bar (if it fits).
  int decimals = 2;              // Default: 2. Decimals of the value labels.
  std::optional<double> target;  // Default: none. A dashed horizontal line at this value.
  std::string target_label;      // Default: "" (the value is printed). Text next to the line.
  int font_scale = 2;            // Default: 2.
};

// Grouped bars: for each category one bar per group, side by side.
// Errors: no categories or groups, a group whose value count differs from the categories.
Result<Video> BarChart(const std::vector<std::string>& categories,
                       const std::vector<BarGroup>& groups, const BarChartOptions& opts);

struct HeatmapOptions {
  std::string title;
  std::string x_label;  // Above the column labels (e.g. "predicted").
  std::string y_label;  // Left of the row labels, vertical (e.g. "true").
  std::optional<std::pair<double, double>> value_range;  // Default: min..max of the values.
  int decimals = 2;        // Default: 2. Decimals of the printed cell values.
  Rgb low{247, 251, 255};  // Colour at the bottom of the range.
  Rgb high{8, 48, 107};    // Colour at the top of the range.
  int font_scale = 2;      // Default: 2.
};

// A table of cells shaded by value with the value printed in each (NaN: grey, "-"). The canvas is
// sized to fit the labels and values. Errors: empty matrix, ragged rows, label counts that differ
// from the matrix's.
Result<Video> Heatmap(const std::vector<std::string>& row_labels,
                      const std::vector<std::string>& col_labels,
                      const std::vector<std::vector<double>>& values, const HeatmapOptions& opts);

struct ContactSheetOptions {
  int frames_per_clip = 8;  // Default: 8. Evenly spaced, first and last included (fewer if short).
  int scale = 1;    // Default: 1. Nearest upscale of the tallest clip; sets the cell height.
  int padding = 4;  // Default: 4. Pixels between frames and around the sheet.
  bool frame_indices = true;  // Default: true. "t=N" under each frame.
  std::string title;
  int font_scale = 2;  // Default: 2.
};

// One row per entry of `rows`, each showing its clips one after the other, frames_per_clip frames
// per clip. Every clip is upscaled (nearest, by an integer) to fit the common cell height, the
// tallest clip's height times opts.scale; clips that do not divide it evenly are centred. One-
// channel clips are shown grey. row_labels is empty or one per row. Errors: no rows, an empty row,
// an invalid clip, a label count mismatch, a sheet larger than 16384 pixels a side.
Result<Video> ContactSheet(const std::vector<std::vector<Video>>& rows,
                           const std::vector<std::string>& row_labels,
                           const ContactSheetOptions& opts);

// Writes a canvas (3 channels, 1 frame) as a PNG, atomically (WritePng).
Status SavePlotPng(const Video& canvas, const std::string& path);

}  // namespace vidfarm
