// Training data for one stage: the synthetic world (exact ground truth at every shape) and a
// directory of real videos with captions.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "vidfarm/common/hash.h"
#include "vidfarm/common/video_io.h"
#include "vidfarm/stage_models/conditioning.h"
#include "vidfarm/stage_models/synth.h"
#include "vidfarm/stage_models/train.h"

namespace vidfarm::models {
namespace {

uint64_t Mix(uint64_t x) { return SplitMix64(&x); }

// Salts that keep the still images of an image example apart from the video stream.
constexpr uint64_t kImageSceneSalt = 0x1a6e5ce4e5a17ULL;

// Frames of `parts` (same C, H, W) one after another.
Video ConcatFrames(const std::vector<Video>& parts, double fps) {
  const Video& first = parts.front();
  int64_t frames = 0;
  for (const Video& p : parts) frames += p.frames;
  Video out(first.channels, frames, first.height, first.width, fps);
  const int64_t plane = first.height * first.width;
  int64_t t0 = 0;
  for (const Video& p : parts) {
    for (int64_t c = 0; c < first.channels; ++c) {
      std::copy_n(p.data.data() + c * p.frames * plane, p.frames * plane,
                  out.data.data() + (c * frames + t0) * plane);
    }
    t0 += p.frames;
  }
  return out;
}

class SynthData final : public TrainingData {
 public:
  SynthData(const StageSpec& spec, uint64_t seed) : spec_(spec), seed_(seed) {
    opts_.duration = static_cast<double>(spec.frames) / spec.fps;
  }

  Result<TrainingExample> Get(uint64_t index, bool image) const override {
    TrainingExample ex;
    ex.image = image;
    const bool sr = spec_.kind != StageKind::kBase;
    const synth::Scene scene = synth::RandomScene(seed_, index, opts_);
    if (!image) {
      ex.caption = synth::Caption(scene);
      VF_ASSIGN_OR_RETURN(ex.target,
                          synth::Render(scene, spec_.frames, spec_.height, spec_.width, spec_.fps));
      if (sr) {
        VF_ASSIGN_OR_RETURN(ex.cond, synth::Render(scene, spec_.in_frames(), spec_.in_height(),
                                                   spec_.in_width(), spec_.in_fps()));
      }
      return ex;
    }
    // An image example: `frames` independent stills that all match one motionless caption.
    const synth::Attributes attrs = synth::AttributesOf(scene);
    ex.caption = synth::Caption(attrs, /*with_motion=*/false);
    std::vector<Video> targets, conds;
    for (int64_t j = 0; j < spec_.frames; ++j) {
      const synth::Scene still =
          j == 0 ? scene
                 : synth::SceneFor(attrs, seed_ ^ kImageSceneSalt,
                                   index * static_cast<uint64_t>(spec_.frames) + j,
                                   opts_.duration);
      VF_ASSIGN_OR_RETURN(Video t, synth::Render(still, 1, spec_.height, spec_.width, spec_.fps));
      targets.push_back(std::move(t));
      if (sr) {
        VF_ASSIGN_OR_RETURN(Video c, synth::Render(still, 1, spec_.in_height(), spec_.in_width(),
                                                   spec_.in_fps()));
        conds.push_back(std::move(c));
      }
    }
    ex.target = ConcatFrames(targets, spec_.fps);
    if (sr) ex.cond = ConcatFrames(conds, spec_.in_fps());
    return ex;
  }

  bool supports_images() const override { return spec_.kind != StageKind::kTemporalSR; }
  std::string Describe() const override {
    return fmt::format("synth (procedural synthetic world, seed {})", seed_);
  }

 private:
  StageSpec spec_;
  uint64_t seed_;
  synth::SceneOptions opts_;
};

struct Clip {
  std::string caption;
  torch::Tensor frames;  // [C, T, H, W] at the stage's output size and fps
};

class DirData final : public TrainingData {
 public:
  DirData(const StageSpec& spec, std::string dir, uint64_t seed, std::vector<Clip> clips)
      : spec_(spec), dir_(std::move(dir)), seed_(seed), clips_(std::move(clips)) {}

  Result<TrainingExample> Get(uint64_t index, bool image) const override {
    const uint64_t h = Mix(seed_ ^ Mix(index));
    const Clip& clip = clips_[h % clips_.size()];
    const int64_t total = clip.frames.size(1);
    torch::Tensor target;
    if (image) {
      // Stills from random moments of the clip, each an independent frame.
      std::vector<torch::Tensor> picks;
      for (int64_t j = 0; j < spec_.frames; ++j) {
        const uint64_t r = Mix(h + static_cast<uint64_t>(j) + 1);
        picks.push_back(clip.frames.narrow(1, static_cast<int64_t>(r % total), 1));
      }
      target = torch::cat(picks, 1);
    } else if (total >= spec_.frames) {
      const int64_t start = static_cast<int64_t>(Mix(h + 0x51) % (total - spec_.frames + 1));
      target = clip.frames.narrow(1, start, spec_.frames);
    } else {  // too short: hold the last frame
      const auto last = clip.frames.narrow(1, total - 1, 1);
      target = torch::cat({clip.frames, last.expand({-1, spec_.frames - total, -1, -1})}, 1);
    }
    TrainingExample ex;
    ex.caption = clip.caption;
    ex.image = image;
    VF_ASSIGN_OR_RETURN(ex.target, TensorToVideo(target, spec_.fps));
    if (spec_.kind != StageKind::kBase) {
      torch::Tensor cond = target;
      if (!image && spec_.temporal_factor > 1) cond = SubsampleFrames(cond, spec_.temporal_factor);
      if (image && spec_.temporal_factor > 1) cond = cond.narrow(1, 0, spec_.in_frames());
      cond = ResizeVideo(cond, spec_.in_height(), spec_.in_width());
      VF_ASSIGN_OR_RETURN(ex.cond, TensorToVideo(cond.clamp(-1, 1), spec_.in_fps()));
    }
    return ex;
  }

  bool supports_images() const override { return spec_.kind != StageKind::kTemporalSR; }
  std::string Describe() const override {
    return fmt::format("directory {} ({} clips, seed {})", dir_, clips_.size(), seed_);
  }

 private:
  StageSpec spec_;
  std::string dir_;
  uint64_t seed_;
  std::vector<Clip> clips_;
};

// (file, caption) pairs from captions.jsonl or captions.csv.
Result<std::vector<std::pair<std::string, std::string>>> ReadCaptions(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, std::string>> rows;
  const fs::path jsonl = fs::path(dir) / "captions.jsonl";
  const fs::path csv = fs::path(dir) / "captions.csv";
  if (fs::exists(jsonl)) {
    std::ifstream in(jsonl);
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object() || !j.contains("file") || !j["file"].is_string() ||
          !j.contains("caption") || !j["caption"].is_string()) {
        return Status::InvalidArgument(fmt::format(
            "{}:{}: expected {{\"file\": \"...\", \"caption\": \"...\"}}", jsonl.string(), n));
      }
      rows.emplace_back(j["file"].get<std::string>(), j["caption"].get<std::string>());
    }
  } else if (fs::exists(csv)) {
    std::ifstream in(csv);
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (n == 1 && line == "file,caption")) continue;
      const auto comma = line.find(',');
      if (comma == std::string::npos || comma == 0) {
        return Status::InvalidArgument(
            fmt::format("{}:{}: expected 'file,caption'", csv.string(), n));
      }
      std::string caption = line.substr(comma + 1);
      if (caption.size() >= 2 && caption.front() == '"' && caption.back() == '"') {
        caption = caption.substr(1, caption.size() - 2);
      }
      rows.emplace_back(line.substr(0, comma), caption);
    }
  } else {
    return Status::NotFound(fmt::format(
        "{}: no captions.jsonl or captions.csv (one line per video: file and caption)", dir));
  }
  if (rows.empty()) return Status::InvalidArgument(fmt::format("{}: no captioned videos", dir));
  return rows;
}

}  // namespace

std::unique_ptr<TrainingData> MakeSynthData(const StageSpec& spec, uint64_t seed) {
  return std::make_unique<SynthData>(spec, seed);
}

Result<std::unique_ptr<TrainingData>> MakeDirData(const StageSpec& spec, const std::string& dir,
                                                  uint64_t seed) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) {
    return Status::NotFound(fmt::format("training data directory {} does not exist", dir));
  }
  VF_ASSIGN_OR_RETURN(auto rows, ReadCaptions(dir));
  std::vector<Clip> clips;
  for (const auto& [file, caption] : rows) {
    const std::string path = (fs::path(dir) / file).string();
    VF_ASSIGN_OR_RETURN(Video v, ReadVideo(path));
    // Frame skipping to the stage's frame rate, then an antialiased resize to its size.
    const int64_t stride = std::max<int64_t>(1, std::llround(v.fps / spec.fps));
    VF_ASSIGN_OR_RETURN(torch::Tensor t, VideoToTensorChecked(v));
    if (stride > 1) t = SubsampleFrames(t, static_cast<int>(stride));
    t = ResizeVideo(t, spec.height, spec.width).clamp(-1, 1).contiguous();
    clips.push_back({caption, t});
  }
  return std::unique_ptr<TrainingData>(
      std::make_unique<DirData>(spec, dir, seed, std::move(clips)));
}

}  // namespace vidfarm::models
