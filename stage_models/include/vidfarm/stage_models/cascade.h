// The whole cascade in one process: prompt → base → six SR stages → video. The farm (coordinator +
// workers) runs the same StageRunner per task; this path is the direct, in-process one.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"
#include "vidfarm/stage_models/stage_runner.h"

namespace vidfarm::models {

struct CascadeOptions {
  std::string preset = "tiny";        // Default: tiny.
  std::string models_dir;             // Default: none. Holds one package folder per stage (<dir>/<stage name>/).
  bool allow_random_weights = true;   // Default: true. A stage without a package runs random weights (warned).
  bool force_random_weights = false;  // Default: false. Ignore packages (benchmarks, tests).
  uint64_t init_seed = 0x5eed;        // Default: 0x5eed. Seed of random weights (same in every process).
  StageRunnerOptions runner;
  int last_stage = -1;                // Default: -1 (all). Stop after this stage index.
  std::vector<StageOverrides> overrides;  // per stage (empty, or one per stage)
};

// Progress of a render, delivered on the rendering thread.
struct CascadeEvent {
  enum class Kind { kStageStart, kStep, kStageDone } kind;
  int stage = 0;
  int num_stages = 0;
  std::string label;      // "SSR ×2"
  std::string name;       // "ssr1"
  int step = 0;           // steps done in this stage
  int steps = 0;          // steps in this stage
  double stage_seconds = 0;  // elapsed in this stage
  const Video* output = nullptr;  // kStageDone: the stage's output (valid during the callback)
};
using CascadeEventFn = std::function<void(const CascadeEvent&)>;

class Cascade {
 public:
  // Loads (or randomly initialises) every stage up to last_stage.
  static Result<std::unique_ptr<Cascade>> Open(const CascadeOptions& options);

  const CascadePreset& preset() const { return preset_; }
  int num_stages() const { return static_cast<int>(runners_.size()); }
  StageRunner& stage(int k) { return *runners_[k]; }
  const StageSettings& settings(int k) const { return settings_[k]; }

  // Renders one prompt through every loaded stage; returns the last stage's video.
  Result<Video> Render(const std::string& prompt, uint64_t seed, const CascadeEventFn& on_event = {});

 private:
  Cascade() = default;
  CascadePreset preset_;
  std::vector<std::unique_ptr<StageRunner>> runners_;
  std::vector<StageSettings> settings_;
};

}  // namespace vidfarm::models
