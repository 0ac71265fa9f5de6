// `vidfarm synth CAPTION -o out.mp4` (the ground truth of a caption), `vidfarm synth --random N
// --out-dir DIR` (captioned clips plus captions.jsonl) and `vidfarm analyze VIDEO` (a video read
// back into caption attributes).
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "flags.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/stage_models/synth.h"

namespace vidfarm::cli {
namespace fs = std::filesystem;

int RunSynth(const std::vector<std::string>& args) {
  std::string output;
  std::string out_dir;
  std::string ext = "mp4";
  int64_t frames = 64, height = 96, width = 160, random = 0, scale = 1;
  double fps = 24;
  uint64_t seed = 0;
  FlagSet flags(
      "vidfarm synth CAPTION -o out.mp4 [--frames 64 --height 96 --width 160 --fps 24] [--seed S]\n"
      "       vidfarm synth --random N --out-dir DIR [--seed S] [shape flags]",
      "Renders the synthetic world's ground truth: the clip a caption describes (positions, speed\n"
      "and background tones drawn from --seed), or N random captioned clips written as\n"
      "DIR/clip_00000.mp4 ... with DIR/captions.jsonl (one {\"file\", \"caption\", ...} per "
      "line).\n"
      "The clip spans frames/fps seconds; 64 frames at 24 fps is the tiny preset's last stage.");
  flags.String("output", 'o', &output, "output video (.mp4, .webm, .gif, or dir/ for PNG frames)");
  flags.Int("frames", 0, &frames, "frames");
  flags.Int("height", 0, &height, "frame height in pixels");
  flags.Int("width", 0, &width, "frame width in pixels");
  flags.Double("fps", 0, &fps, "frames per second");
  flags.Uint64("seed", 0, &seed, "scene seed (positions, speeds, tones; the stream for --random)");
  flags.Int("random", 0, &random, "write N random captioned clips instead of one caption");
  flags.String("out-dir", 0, &out_dir, "directory for --random");
  flags.String("ext", 0, &ext, "container of --random clips: mp4 | webm | gif");
  flags.Int("scale", 0, &scale, "integer upscale when writing (for looking at tiny clips)");
  flags.Epilog(
      "examples:\n"
      "  vidfarm synth 'a yellow letter K rotating on a blue background' -o k.mp4\n"
      "  vidfarm synth --random 100 --out-dir data/ --frames 16 --height 24 --width 40 --fps 3");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "synth", &positional, 0, 1); rc >= 0) return rc;
  if (frames < 1 || height < 1 || width < 1 || !(fps > 0)) {
    return Fail("synth", "--frames, --height, --width and --fps must be positive", 2);
  }
  if (scale < 1 || scale > 64) return Fail("synth", "--scale must be in 1..64", 2);
  WriteOptions wopts;
  wopts.scale = static_cast<int>(scale);
  // Every clip covers its whole span, so motion is never cut off or sent out of the frame.
  const double duration = frames > 1 ? static_cast<double>(frames) / fps : 8.0 / 3.0;

  if (random > 0) {
    if (!positional.empty()) return Fail("synth", "give either CAPTION or --random, not both", 2);
    if (out_dir.empty()) return Fail("synth", "--random needs --out-dir DIR", 2);
    const std::string suffix = "." + ext;
    if (!FormatFromPath("x" + suffix).ok() || ext.empty()) {
      return Fail("synth", "--ext must be mp4, webm or gif", 2);
    }
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) return Fail("synth", fmt::format("cannot create {}: {}", out_dir, ec.message()));
    std::string lines;
    synth::SceneOptions opts;
    opts.duration = duration;
    for (int64_t i = 0; i < random; ++i) {
      const synth::Scene scene = synth::RandomScene(seed, static_cast<uint64_t>(i), opts);
      auto v = synth::Render(scene, frames, height, width, fps);
      if (!v.ok()) return Fail("synth", v.status().ToString(), 2);
      const std::string name = fmt::format("clip_{:05d}{}", i, suffix);
      Status st = WriteVideo(*v, (fs::path(out_dir) / name).string(), wopts);
      if (!st.ok()) return Fail("synth", st.ToString());
      nlohmann::json line = {{"file", name},     {"caption", synth::Caption(scene)},
                             {"seed", seed},     {"index", i},
                             {"frames", frames}, {"height", height},
                             {"width", width},   {"fps", fps}};
      lines += line.dump() + "\n";
    }
    // Written last and renamed into place: a reader never sees a list naming missing clips.
    const fs::path list = fs::path(out_dir) / "captions.jsonl";
    const fs::path tmp = fs::path(out_dir) / "captions.jsonl.tmp";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f << lines;
      if (!f) return Fail("synth", "cannot write " + tmp.string());
    }
    fs::rename(tmp, list, ec);
    if (ec) return Fail("synth", fmt::format("cannot write {}: {}", list.string(), ec.message()));
    std::printf("wrote %lld clips and %s\n", static_cast<long long>(random), list.string().c_str());
    return 0;
  }

  if (positional.empty()) return Fail("synth", "missing CAPTION (or --random N)", 2);
  if (output.empty()) return Fail("synth", "missing -o OUTPUT", 2);
  auto format = FormatFromPath(output);
  if (!format.ok()) return Fail("synth", format.status().message(), 2);
  auto attrs = synth::ParseCaption(positional[0]);
  if (!attrs.ok()) return Fail("synth", attrs.status().message(), 2);
  const synth::Scene scene = synth::SceneFor(*attrs, seed, 0, duration);
  auto v = synth::Render(scene, frames, height, width, fps);
  if (!v.ok()) return Fail("synth", v.status().ToString(), 2);
  Status st = WriteVideo(*v, output, wopts);
  if (!st.ok()) return Fail("synth", st.ToString());
  std::printf("%s -> %s (%s)\n", synth::Caption(scene).c_str(), output.c_str(),
              v->ShapeString().c_str());
  return 0;
}

int RunAnalyze(const std::vector<std::string>& args) {
  bool json = false;
  int64_t max_frames = -1;
  FlagSet flags(
      "vidfarm analyze VIDEO [--json]",
      "Reads any video FFmpeg can decode and reports what the synthetic world's analyzer\n"
      "sees: background, object colour, shape and motion, the caption they form, the\n"
      "fraction of pixels on the object and which frames agree with the clip's colour\n"
      "and shape.");
  flags.Bool("json", 0, &json, "print JSON instead of text");
  flags.Int("max-frames", 0, &max_frames, "read at most this many frames (-1: all)");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "analyze", &positional, 1, 1); rc >= 0) return rc;
  ReadOptions ropts;
  ropts.max_frames = max_frames;
  auto video = ReadVideo(positional[0], ropts);
  if (!video.ok()) {
    return Fail("analyze", video.status().ToString(), video.status().IsNotFound() ? 2 : 1);
  }
  auto an = synth::Analyze(*video);
  if (!an.ok()) return Fail("analyze", an.status().ToString(), 2);
  const synth::Attributes& a = an->attributes;
  int64_t consistent = 0;
  for (bool f : an->frame_consistent) consistent += f ? 1 : 0;
  const int64_t total = static_cast<int64_t>(an->frame_consistent.size());
  std::string background = synth::BackgroundName(a);
  if (background.empty()) background = "black";
  if (json) {
    nlohmann::json out = {{"video", positional[0]},
                          {"video_shape", video->ShapeString()},
                          {"caption", synth::Caption(a)},
                          {"colour", synth::ColourName(a.colour)},
                          {"shape", synth::ShapeName(a.shape)},
                          {"motion", synth::MotionName(a.motion)},
                          {"background", background},
                          {"foreground_fraction", an->foreground_fraction},
                          {"consistent_frames", consistent},
                          {"frame_consistent", an->frame_consistent}};
    std::puts(out.dump(2).c_str());
    return 0;
  }
  std::printf("video:       %s (%s)\n", positional[0].c_str(), video->ShapeString().c_str());
  std::printf("caption:     %s\n", synth::Caption(a).c_str());
  std::printf("colour:      %s\n", synth::ColourName(a.colour).c_str());
  std::printf("shape:       %s\n", synth::ShapeName(a.shape).c_str());
  std::printf("motion:      %s\n", synth::MotionName(a.motion).c_str());
  std::printf("background:  %s\n", background.c_str());
  std::printf("foreground:  %.1f%% of pixels\n", 100 * an->foreground_fraction);
  std::printf("consistent:  %lld/%lld frames\n", static_cast<long long>(consistent),
              static_cast<long long>(total));
  return 0;
}

}  // namespace vidfarm::cli
