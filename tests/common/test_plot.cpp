#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "vidfarm/common/plot.h"
#include "vidfarm/common/video_io.h"

namespace vidfarm {
namespace {

namespace fs = std::filesystem;

uint8_t ToByte(float v) {
  return static_cast<uint8_t>(std::lround(std::clamp((v + 1.0f) / 2.0f * 255.0f, 0.0f, 255.0f)));
}
Rgb PixelAt(const Video& v, int x, int y) {
  return {ToByte(v.at(0, 0, y, x)), ToByte(v.at(1, 0, y, x)), ToByte(v.at(2, 0, y, x))};
}
bool Near(Rgb a, Rgb b, int tol = 2) {
  return std::abs(a.r - b.r) <= tol && std::abs(a.g - b.g) <= tol && std::abs(a.b - b.b) <= tol;
}

struct Box {
  int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;  // Inclusive; x1 < 0 when nothing matched.
  int count = 0;
};
// Bounding box of pixels (in [x0,x1)x[y0,y1)) that match `pred`.
template <typename Pred>
Box Find(const Video& v, Pred pred, int x0 = 0, int y0 = 0, int x1 = -1, int y1 = -1) {
  if (x1 < 0) x1 = static_cast<int>(v.width);
  if (y1 < 0) y1 = static_cast<int>(v.height);
  Box b;
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) {
      if (!pred(PixelAt(v, x, y))) continue;
      b.x0 = std::min(b.x0, x), b.y0 = std::min(b.y0, y);
      b.x1 = std::max(b.x1, x), b.y1 = std::max(b.y1, y);
      ++b.count;
    }
  }
  return b;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "vf-plot-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PlotTicks, NiceTicksAreOneTwoFiveMultiplesCoveringTheRange) {
  struct Case {
    double lo, hi;
    int max_ticks;
  };
  for (const Case& c : {Case{0.0, 1.0, 8}, Case{0.13, 0.87, 6}, Case{-3.7, 12.2, 8},
                        Case{17.0, 23.0, 5}, Case{1e-7, 3e-7, 6}, Case{0.0, 123456789.0, 8},
                        Case{-1e300, 1e300, 6}, Case{5.0, 5.0, 8}}) {
    SCOPED_TRACE(testing::Message() << "[" << c.lo << ", " << c.hi << "]");
    const AxisTicks t = NiceTicks(c.lo, c.hi, c.max_ticks);
    ASSERT_GE(t.values.size(), 2u);
    EXPECT_LE(t.values.size(), static_cast<size_t>(c.max_ticks));
    EXPECT_EQ(t.labels.size(), t.values.size());
    EXPECT_LE(t.lo, c.lo);
    EXPECT_GE(t.hi, c.hi);
    EXPECT_DOUBLE_EQ(t.values.front(), t.lo);
    EXPECT_DOUBLE_EQ(t.values.back(), t.hi);
    const double step = t.values[1] - t.values[0];
    const double mant = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    EXPECT_TRUE(std::fabs(mant - 1) < 1e-6 || std::fabs(mant - 2) < 1e-6 ||
                std::fabs(mant - 5) < 1e-6)
        << "step " << step;
    for (size_t i = 1; i < t.values.size(); ++i) {
      EXPECT_NEAR(t.values[i] - t.values[i - 1], step, step * 1e-6);
    }
  }
}

TEST(PlotTicks, KnownTicksAndLabels) {
  const AxisTicks a = NiceTicks(0.13, 0.87, 6);
  EXPECT_EQ(a.labels, (std::vector<std::string>{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"}));
  const AxisTicks b = NiceTicks(-3.7, 12.2, 8);
  EXPECT_EQ(b.labels, (std::vector<std::string>{"-5", "0", "5", "10", "15"}));
  const AxisTicks c = NiceTicks(0, 3e6, 4);
  EXPECT_EQ(c.labels, (std::vector<std::string>{"0", "1e6", "2e6", "3e6"}));
  const AxisTicks d = NiceTicks(0, 0.3, 4);
  EXPECT_EQ(d.labels, (std::vector<std::string>{"0.0", "0.1", "0.2", "0.3"}));
  EXPECT_EQ(d.values[3], 0.3);  // Computed as 3 / 10, not 3 * 0.1.
}

TEST(PlotTicks, LogTicksAreDecades) {
  const AxisTicks t = LogTicks(0.003, 250.0, 8);
  EXPECT_EQ(t.labels, (std::vector<std::string>{"0.01", "0.1", "1", "10", "100"}));
  EXPECT_DOUBLE_EQ(t.lo, 0.003);  // The range is kept: no whole decades of empty axis.
  EXPECT_DOUBLE_EQ(t.hi, 250.0);
  EXPECT_DOUBLE_EQ(t.values[0], 0.01);
  // Twenty decades with at most 6 ticks: every 4th, aligned so that 10^0 is one.
  const AxisTicks wide = LogTicks(1e-10, 1e10, 6);
  EXPECT_EQ(wide.labels, (std::vector<std::string>{"1e-8", "1e-4", "1", "1e4", "1e8"}));
  // Under three decades: 1-2-5 steps.
  EXPECT_EQ(LogTicks(5, 200, 8).labels,
            (std::vector<std::string>{"5", "10", "20", "50", "100", "200"}));
  EXPECT_EQ(LogTicks(5, 200, 3).labels, (std::vector<std::string>{"10", "100"}));
  // Well under a decade: linear nice ticks.
  EXPECT_EQ(LogTicks(3, 4, 5).labels, (std::vector<std::string>{"3.0", "3.5", "4.0"}));
}

TEST(PlotText, DrawsExactlyInsideItsBox) {
  auto canvas = MakeCanvas(200, 80);
  ASSERT_TRUE(canvas.ok());
  const std::string text = "Hello, 0.5!";
  const Rgb red{200, 0, 0};
  DrawText(*canvas, 10, 20, text, red, 2);
  const int w = TextWidth(text, 2), h = TextHeight(2);
  EXPECT_EQ(w, (11 * 6 - 1) * 2);
  EXPECT_EQ(h, 18);
  const Box ink = Find(*canvas, [](Rgb p) { return !Near(p, kWhite); });
  ASSERT_GT(ink.count, 50);
  // 'H' fills the left column and the top row, the comma's tail the bottom row; '!' is at the end.
  EXPECT_EQ(ink.x0, 10);
  EXPECT_EQ(ink.y0, 20);
  EXPECT_EQ(ink.y1, 20 + h - 1);
  EXPECT_LE(ink.x1, 10 + w - 1);
  EXPECT_GE(ink.x1, 10 + w - 1 - 2 * 2);
  // Text is solid colour (no blending of partial pixels).
  EXPECT_EQ(Find(*canvas, [&](Rgb p) { return Near(p, red); }).count, ink.count);
}

TEST(PlotText, VerticalTextIsTheHorizontalRotated) {
  const std::string text = "loss";
  auto h = MakeCanvas(60, 60);
  auto v = MakeCanvas(60, 60);
  ASSERT_TRUE(h.ok() && v.ok());
  DrawText(*h, 5, 7, text, kBlack, 1);
  DrawTextVertical(*v, 5, 7, text, kBlack, 1);
  const int w = TextWidth(text), th = TextHeight();
  int lit = 0;
  for (int u = 0; u < w; ++u) {
    for (int d = 0; d < th; ++d) {
      const bool a = Near(PixelAt(*h, 5 + u, 7 + d), kBlack);
      const bool b = Near(PixelAt(*v, 5 + d, 7 + w - 1 - u), kBlack);  // Bottom-to-top.
      EXPECT_EQ(a, b) << u << "," << d;
      lit += a;
    }
  }
  EXPECT_GT(lit, 20);
  const Box ink = Find(*v, [](Rgb p) { return !Near(p, kWhite); });
  EXPECT_GE(ink.x0, 5);
  EXPECT_LE(ink.x1, 5 + th - 1);
  EXPECT_GE(ink.y0, 7);
  EXPECT_LE(ink.y1, 7 + w - 1);
}

TEST(PlotPrimitives, LinesAndShapesClipToTheCanvas) {
  auto c = MakeCanvas(50, 40, kBlack);
  ASSERT_TRUE(c.ok());
  DrawLine(*c, -100, 20, 200, 20, kWhite, 2.0);  // Crosses the whole canvas.
  FillRect(*c, 45, 35, 100, 100, Rgb{0, 255, 0});
  DrawCircle(*c, 0, 0, 5, Rgb{0, 0, 255});
  for (int x = 0; x < 50; ++x) EXPECT_TRUE(Near(PixelAt(*c, x, 20), kWhite)) << x;
  EXPECT_TRUE(Near(PixelAt(*c, 25, 17), kBlack));
  EXPECT_TRUE(Near(PixelAt(*c, 49, 39), Rgb{0, 255, 0}));
  EXPECT_TRUE(Near(PixelAt(*c, 44, 39), kBlack));
  EXPECT_TRUE(Near(PixelAt(*c, 2, 2), Rgb{0, 0, 255}));
  EXPECT_TRUE(Near(PixelAt(*c, 6, 6), kBlack));
  // A diagonal is continuous: every column between the ends has ink.
  auto d = MakeCanvas(50, 50);
  ASSERT_TRUE(d.ok());
  DrawLine(*d, 5, 45, 45, 5, kBlack, 1.5);
  for (int x = 5; x <= 45; ++x) {
    EXPECT_TRUE(Near(PixelAt(*d, x, 50 - x), kBlack, 60)) << x;
  }
  EXPECT_FALSE(MakeCanvas(0, 10).ok());
  EXPECT_FALSE(MakeCanvas(10, 20000).ok());
}

TEST(PlotLine, DiagonalSeriesRunsLowerLeftToUpperRight) {
  Series s;  // Unnamed: no legend swatch in the series colour.
  s.colour = Rgb{220, 20, 60};
  for (int i = 0; i <= 100; ++i) {
    s.x.push_back(i);
    s.y.push_back(i);
  }
  LinePlotOptions opts;
  opts.title = "Identity";
  opts.x_label = "x";
  opts.y_label = "y";
  auto plot = LinePlot({s}, opts);
  ASSERT_TRUE(plot.ok()) << plot.status().ToString();
  EXPECT_EQ(plot->width, 800);
  EXPECT_EQ(plot->height, 500);
  EXPECT_EQ(plot->channels, 3);
  EXPECT_EQ(plot->frames, 1);
  // The series colour lies along a rising diagonal: leftmost ink is lowest, rightmost highest.
  const auto is_series = [&](Rgb p) { return Near(p, *s.colour, 4); };
  const Box ink = Find(*plot, is_series);
  ASSERT_GT(ink.count, 500);
  EXPECT_LT(ink.x0, 200);
  EXPECT_GT(ink.x1, 600);
  EXPECT_LT(ink.y0, 150);
  EXPECT_GT(ink.y1, 350);
  const Box left = Find(*plot, is_series, 0, 0, ink.x0 + 20, 500);
  const Box right = Find(*plot, is_series, ink.x1 - 20, 0, 800, 500);
  EXPECT_GT(left.y0, 300);   // Lower left (y grows downwards)...
  EXPECT_LT(right.y1, 200);  // ...to upper right.
  // Along the diagonal the curve is straight: sample its column centre at a few x.
  const double slope = static_cast<double>(ink.y1 - ink.y0) / (ink.x1 - ink.x0);
  for (int x = ink.x0 + 100; x < ink.x1 - 100; x += 97) {
    const Box col = Find(*plot, is_series, x, 0, x + 1, 500);
    ASSERT_GE(col.x1, 0) << x;
    const double expected = ink.y1 - slope * (x - ink.x0);
    EXPECT_NEAR((col.y0 + col.y1) / 2.0, expected, 4.0) << x;
  }
}

TEST(PlotLine, SkipsNonFiniteAndHandlesSinglePoints) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  Series gappy;
  gappy.y = {1, 2, nan, 4, inf, 6, 7};
  Series single;
  single.name = "one point";
  single.x = {3};
  single.y = {5};
  single.colour = Rgb{0, 160, 0};
  auto plot = LinePlot({gappy, single}, {});
  ASSERT_TRUE(plot.ok()) << plot.status().ToString();
  // The single point is drawn as a marker.
  EXPECT_GT(Find(*plot, [](Rgb p) { return Near(p, Rgb{0, 160, 0}, 4); }).count, 10);

  Series all_nan;
  all_nan.y = {nan, inf};
  EXPECT_TRUE(LinePlot({all_nan}, {}).status().IsInvalidArgument());
  EXPECT_TRUE(LinePlot({}, {}).status().IsInvalidArgument());
  Series mismatched;
  mismatched.x = {1, 2, 3};
  mismatched.y = {1, 2};
  EXPECT_TRUE(LinePlot({mismatched}, {}).status().IsInvalidArgument());
  LinePlotOptions tiny;
  tiny.width = 40;
  tiny.height = 30;
  EXPECT_TRUE(LinePlot({gappy}, tiny).status().IsInvalidArgument());
  LinePlotOptions log_opts;
  log_opts.log_y = true;
  Series negative;
  negative.y = {-1, -2};
  EXPECT_TRUE(LinePlot({negative}, log_opts).status().IsInvalidArgument());
}

TEST(PlotLine, HugeRangesAndLogAxes) {
  Series s;
  for (int i = 0; i < 50; ++i) {
    s.x.push_back(std::pow(10.0, i * 0.2));
    s.y.push_back(std::pow(10.0, -i * 0.3) * 1e200);
  }
  LinePlotOptions opts;
  EXPECT_TRUE(LinePlot({s}, opts).ok());
  opts.log_x = opts.log_y = true;
  EXPECT_TRUE(LinePlot({s}, opts).ok());
  opts.y_range = std::make_pair(1.0, 1e100);
  EXPECT_TRUE(LinePlot({s}, opts).ok());
  opts.y_range = std::make_pair(5.0, 1.0);
  EXPECT_TRUE(LinePlot({s}, opts).status().IsInvalidArgument());
}

TEST(PlotBar, BarsHaveHeightsProportionalToValues) {
  BarGroup g;  // Unnamed: no legend swatch in the bar colour.
  g.values = {0.25, 0.5, 1.0};
  g.colour = Rgb{30, 90, 200};
  BarChartOptions opts;
  opts.y_range = std::make_pair(0.0, 1.0);
  opts.value_labels = false;
  auto chart = BarChart({"a", "b", "c"}, {g}, opts);
  ASSERT_TRUE(chart.ok()) << chart.status().ToString();
  const auto is_bar = [&](Rgb p) { return Near(p, *g.colour); };
  const Box all = Find(*chart, is_bar, 0, 0, 800, 500);
  ASSERT_GT(all.count, 0);
  // Three bars left to right; measure each one's height in its third of the bar area.
  std::vector<int> heights;
  const int third = (all.x1 - all.x0 + 1) / 3 + 1;
  for (int k = 0; k < 3; ++k) {
    // All bars stand on the same baseline.
    const Box b = Find(*chart, is_bar, all.x0 + k * third, 0, all.x0 + (k + 1) * third, 500);
    ASSERT_GE(b.x1, 0);
    EXPECT_EQ(b.y1, all.y1);
    heights.push_back(b.y1 - b.y0 + 1);
  }
  EXPECT_NEAR(heights[1], 2.0 * heights[0], 3.0);
  EXPECT_NEAR(heights[2], 4.0 * heights[0], 4.0);

  BarGroup bad;
  bad.values = {1, 2};
  EXPECT_TRUE(BarChart({"a", "b", "c"}, {bad}, {}).status().IsInvalidArgument());
  EXPECT_TRUE(BarChart({}, {g}, {}).status().IsInvalidArgument());
  EXPECT_TRUE(BarChart({"a", "b", "c"}, {}, {}).status().IsInvalidArgument());
}

TEST(PlotBar, TargetLineSitsAtItsValue) {
  BarGroup g;
  g.values = {50, 100};
  BarChartOptions opts;
  opts.y_range = std::make_pair(0.0, 100.0);
  opts.target = 75.0;
  opts.target_label = "target 75%";
  auto chart = BarChart({"x", "y"}, {g}, opts);
  ASSERT_TRUE(chart.ok());
  const Box bar_b = Find(
      *chart, [](Rgb p) { return Near(p, PaletteColour(0)); }, 400, 0, 800);
  const Box bar_a = Find(
      *chart, [](Rgb p) { return Near(p, PaletteColour(0)); }, 0, 0, 400);
  const Box red = Find(*chart, [](Rgb p) { return Near(p, Rgb{200, 30, 30}, 10); });
  ASSERT_GT(red.count, 100);
  // y(75) is three quarters of the way from the baseline to the top of the 100 bar.
  const double expected = bar_b.y1 - 0.75 * (bar_b.y1 - bar_b.y0);
  const Box line = Find(
      *chart,
      [](Rgb p) {
        return Near(p, Rgb{200, 30, 30}, 10);
      },
      bar_a.x0, 0, bar_a.x1 + 1, 500);
  EXPECT_NEAR((line.y0 + line.y1) / 2.0, expected, 2.0);
}

TEST(PlotHeatmap, CellsAreShadedByValue) {
  HeatmapOptions opts;
  opts.low = kWhite;
  opts.high = Rgb{0, 0, 0};
  opts.x_label = "predicted";
  opts.y_label = "true";
  auto map = Heatmap({"cat", "dog"}, {"cat", "dog"}, {{9, 1}, {3, 7}}, opts);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  // The darkest cell (9) is top-left, the lightest (1) top-right: find them by their fill.
  const Box dark = Find(*map, [](Rgb p) { return Near(p, kBlack, 0); });
  const Box light = Find(*map, [](Rgb p) { return Near(p, kWhite, 0); });
  ASSERT_GT(dark.count, 100);
  const Box mid = Find(*map, [](Rgb p) { return Near(p, Rgb{64, 64, 64}, 1); });  // 7 -> 3/4.
  ASSERT_GT(mid.count, 100);
  EXPECT_LT(dark.x1, mid.x0 + 5);  // Column 0 left of column 1.
  EXPECT_LT(dark.y1, mid.y0 + 5);  // Row 0 above row 1.
  EXPECT_GT(light.count, dark.count);

  EXPECT_TRUE(Heatmap({}, {}, {}, {}).status().IsInvalidArgument());
  EXPECT_TRUE(Heatmap({}, {}, {{1, 2}, {3}}, {}).status().IsInvalidArgument());
  EXPECT_TRUE(Heatmap({"a"}, {}, {{1, 2}, {3, 4}}, {}).status().IsInvalidArgument());
  EXPECT_TRUE(Heatmap({}, {"a", "b", "c"}, {{1, 2}, {3, 4}}, {}).status().IsInvalidArgument());
}

Video Solid(int64_t channels, int64_t frames, int64_t h, int64_t w) {
  Video v(channels, frames, h, w, 8.0);
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t t = 0; t < frames; ++t) {
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
          // Each frame t is a distinct grey level per channel so frames can be told apart.
          v.at(c, t, y, x) = static_cast<float>(-0.9 + 0.1 * t + 0.05 * c);
        }
      }
    }
  }
  return v;
}

TEST(PlotContactSheet, LayoutAndFramePixels) {
  ContactSheetOptions opts;
  opts.frames_per_clip = 4;
  opts.scale = 2;
  opts.padding = 3;
  opts.frame_indices = false;
  const Video big = Solid(3, 10, 8, 12);  // Cell height 16 (scale 2).
  const Video small = Solid(1, 2, 4, 6);  // Upscaled x4 to 16, and only 2 frames.
  auto sheet = ContactSheet({{big}, {small}}, {}, opts);
  ASSERT_TRUE(sheet.ok()) << sheet.status().ToString();
  // Width: pad + 4 * (24 + pad); height: pad + 2 * (16 + pad).
  EXPECT_EQ(sheet->width, 3 + 4 * (24 + 3));
  EXPECT_EQ(sheet->height, 3 + 2 * (16 + 3));
  // Frame samples of a 10-frame clip at 4 per clip: 0, 3, 6, 9.
  const int64_t expected_t[] = {0, 3, 6, 9};
  for (int i = 0; i < 4; ++i) {
    const int x = 3 + i * 27 + 5, y = 3 + 7;
    for (int c = 0; c < 3; ++c) {
      EXPECT_FLOAT_EQ(sheet->at(c, 0, y, x), big.at(c, expected_t[i], 0, 0)) << i;
    }
  }
  // Second row: grey frames 0 and 1, 24 px wide from the x4 upscale.
  for (int i = 0; i < 2; ++i) {
    const int x = 3 + i * 27 + 23, y = 3 + 19 + 15;
    for (int c = 0; c < 3; ++c) {
      EXPECT_FLOAT_EQ(sheet->at(c, 0, y, x), small.at(0, i, 0, 0)) << i;
    }
  }
  // Past the second row's two frames is background.
  EXPECT_FLOAT_EQ(sheet->at(0, 0, 3 + 19 + 8, 3 + 2 * 27 + 5), 1.0f);

  // Labels widen the sheet on the left.
  auto labelled = ContactSheet({{big}, {small}}, {"stage 0", "stage 1"}, opts);
  ASSERT_TRUE(labelled.ok());
  EXPECT_GT(labelled->width, sheet->width);

  EXPECT_TRUE(ContactSheet({}, {}, opts).status().IsInvalidArgument());
  EXPECT_TRUE(ContactSheet({{big}}, {"a", "b"}, opts).status().IsInvalidArgument());
  EXPECT_TRUE(ContactSheet({{big}, {}}, {}, opts).status().IsInvalidArgument());
  EXPECT_FALSE(ContactSheet({{Video()}}, {}, opts).ok());
  opts.scale = 2000;
  EXPECT_TRUE(ContactSheet({{big}}, {}, opts).status().IsInvalidArgument());
}

TEST(PlotPng, WrittenFigureReadsBackWithItsSize) {
  TempDir dir;
  Series s;
  s.y = {3, 1, 4, 1, 5, 9, 2, 6};
  LinePlotOptions opts;
  opts.width = 640;
  opts.height = 360;
  auto plot = LinePlot({s}, opts);
  ASSERT_TRUE(plot.ok());
  const std::string path = dir.path() + "/plot.png";
  ASSERT_TRUE(SavePlotPng(*plot, path).ok());
  auto back = ReadVideo(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->width, 640);
  EXPECT_EQ(back->height, 360);
  EXPECT_EQ(back->frames, 1);
  Video two_frames(3, 2, 10, 10, 1.0);
  EXPECT_TRUE(SavePlotPng(two_frames, dir.path() + "/x.png").IsInvalidArgument());
}

// Writes example figures for people to look at when VF_PLOT_DEMO_DIR is set (else a temp dir).
TEST(PlotDemo, WritesExampleFigures) {
  TempDir tmp;
  const char* env = getenv("VF_PLOT_DEMO_DIR");
  const std::string dir = env ? env : tmp.path();
  fs::create_directories(dir);

  Series train, val;
  train.name = "train loss";
  val.name = "val loss";
  val.markers = true;
  for (int step = 0; step <= 2000; step += 10) {
    train.x.push_back(step);
    train.y.push_back(0.05 + 1.2 * std::exp(-step / 300.0) + 0.02 * std::sin(step * 0.37));
    if (step % 200 == 0) {
      val.x.push_back(step);
      val.y.push_back(0.08 + 1.1 * std::exp(-step / 350.0));
    }
  }
  LinePlotOptions lo;
  lo.title = "Stage 0 training";
  lo.x_label = "step";
  lo.y_label = "loss";
  auto loss = LinePlot({train, val}, lo);
  ASSERT_TRUE(loss.ok()) << loss.status().ToString();
  ASSERT_TRUE(SavePlotPng(*loss, dir + "/loss.png").ok());
  lo.log_y = true;
  lo.title = "Stage 0 training (log)";
  auto loss_log = LinePlot({train, val}, lo);
  ASSERT_TRUE(loss_log.ok()) << loss_log.status().ToString();
  ASSERT_TRUE(SavePlotPng(*loss_log, dir + "/loss_log.png").ok());

  std::vector<Series> psnr(3);
  const char* names[] = {"stage 0", "stage 1", "stage 2"};
  for (int k = 0; k < 3; ++k) {
    psnr[k].name = names[k];
    psnr[k].markers = true;
    for (int steps : {5, 10, 20, 50, 100, 200}) {
      psnr[k].x.push_back(steps);
      psnr[k].y.push_back(22 + 3 * k + 4 * std::log10(steps) - 0.5 * k * std::log10(steps));
    }
  }
  LinePlotOptions po;
  po.title = "PSNR vs sampling steps";
  po.x_label = "sampling steps";
  po.y_label = "PSNR (dB)";
  po.log_x = true;
  auto psnr_plot = LinePlot(psnr, po);
  ASSERT_TRUE(psnr_plot.ok()) << psnr_plot.status().ToString();
  ASSERT_TRUE(SavePlotPng(*psnr_plot, dir + "/psnr.png").ok());

  BarGroup a, b, c;
  a.name = "baseline";
  a.values = {0.81, 0.74, 0.92, 0.66};
  b.name = "cascade";
  b.values = {0.93, 0.88, 0.95, std::numeric_limits<double>::quiet_NaN()};
  c.name = "cascade + refiner";
  c.values = {0.95, 0.91, 0.97, 0.79};
  BarChartOptions bo;
  bo.title = "Attribute accuracy";
  bo.y_label = "accuracy";
  bo.x_label = "attribute";
  bo.y_range = std::make_pair(0.0, 1.0);
  bo.target = 0.9;
  bo.target_label = "target 90%";
  auto bars = BarChart({"colour", "shape", "count", "motion"}, {a, b, c}, bo);
  ASSERT_TRUE(bars.ok()) << bars.status().ToString();
  ASSERT_TRUE(SavePlotPng(*bars, dir + "/bars.png").ok());

  HeatmapOptions ho;
  ho.title = "Motion direction confusion";
  ho.x_label = "predicted";
  ho.y_label = "true";
  ho.decimals = 0;
  auto conf = Heatmap(
      {"left", "right", "up", "down", "static"}, {"left", "right", "up", "down", "static"},
      {{41, 3, 2, 1, 3}, {4, 38, 1, 2, 5}, {1, 0, 45, 3, 1}, {2, 1, 6, 39, 2}, {5, 4, 2, 1, 38}},
      ho);
  ASSERT_TRUE(conf.ok()) << conf.status().ToString();
  ASSERT_TRUE(SavePlotPng(*conf, dir + "/confusion.png").ok());

  // A moving gradient at three cascade resolutions.
  auto clip = [](int64_t frames, int64_t h, int64_t w) {
    Video v(3, frames, h, w, 8.0);
    for (int64_t ch = 0; ch < 3; ++ch) {
      for (int64_t t = 0; t < frames; ++t) {
        for (int64_t y = 0; y < h; ++y) {
          for (int64_t x = 0; x < w; ++x) {
            const double p =
                static_cast<double>(x) / w + 0.5 * y / h + static_cast<double>(t) / frames;
            v.at(ch, t, y, x) = static_cast<float>(0.8 * std::sin(6.2832 * (p + ch / 3.0)));
          }
        }
      }
    }
    return v;
  };
  ContactSheetOptions co;
  co.frames_per_clip = 6;
  co.scale = 2;
  co.title = "Cascade samples";
  auto sheet = ContactSheet({{clip(8, 16, 24)}, {clip(16, 32, 48)}, {clip(32, 64, 96)}},
                            {"stage 0", "stage 1", "stage 2"}, co);
  ASSERT_TRUE(sheet.ok()) << sheet.status().ToString();
  ASSERT_TRUE(SavePlotPng(*sheet, dir + "/contact.png").ok());

  auto font = MakeCanvas(620, 80);
  ASSERT_TRUE(font.ok());
  std::string all;
  for (int ch = 32; ch < 127; ++ch) all.push_back(static_cast<char>(ch));
  DrawText(*font, 4, 4, all.substr(0, 48), kBlack, 2);
  DrawText(*font, 4, 28, all.substr(48), kBlack, 2);
  DrawText(*font, 4, 52, "The quick brown fox jumps over the lazy dog. 0123456789", kBlack, 2);
  ASSERT_TRUE(SavePlotPng(*font, dir + "/font.png").ok());
  for (const char* f : {"loss.png", "loss_log.png", "psnr.png", "bars.png", "confusion.png",
                        "contact.png", "font.png"}) {
    EXPECT_TRUE(fs::exists(fs::path(dir) / f)) << f;
  }
}

}  // namespace
}  // namespace vidfarm
