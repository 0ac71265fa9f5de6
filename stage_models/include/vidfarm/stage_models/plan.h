// Cost of a cascade without running it: every stage's U-Net is built on the meta device (no
// memory, so the multi-billion-parameter "paper" preset is fine on a laptop) and one forward is
// traced through the ops counter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/stage_models/preset.h"

namespace vidfarm::models {

struct StagePlan {
  int index = 0;
  std::string name, label;
  int64_t frames = 0, height = 0, width = 0;  // output
  double fps = 0;
  int64_t params = 0;
  double forward_gflops = 0;    // one forward at the planned batch
  double activation_bytes = 0;  // bytes of every op output in one forward (training without
                                // checkpointing keeps about this much)
  double param_bytes = 0;       // f32 weights
};

Result<std::vector<StagePlan>> PlanPreset(const CascadePreset& preset, int64_t batch = 1);
// Traces one stage (what PlanPreset does per stage).
Result<StagePlan> PlanStage(const StageSpec& spec, int64_t text_tokens, int64_t batch = 1);
// Fixed-width table, one row per stage and a total row.
std::string FormatPlan(const std::vector<StagePlan>& plan, const std::string& preset_name);

}  // namespace vidfarm::models
