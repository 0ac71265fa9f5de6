// The cascade table of ARCHITECTURE.md as plain data, for every room: the coordinator checks
// worker packages and plans tasks with it (no LibTorch), stage_models builds its presets on it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"

namespace vidfarm {

enum class StageKind { kBase, kTemporalSR, kSpatialSR };
const char* StageKindName(StageKind kind);  // "base" | "tsr" | "ssr"

struct CascadeStageShape {
  const char* name;   // "base", "tsr1", "ssr2", ... (package folder names)
  const char* label;  // "Base", "TSR ×2", "SSR ×4"
  StageKind kind;
  int64_t frames, height, width;  // output
  double fps;
  int temporal_factor, spatial_factor;  // output / input
  bool temporal_attention;              // temporal attention (else temporal convolution)
  bool spatial_attention;
  bool oscillating_cfg;
};

// "paper" (exactly the table) or "tiny"; unknown → InvalidArgument listing the names.
Result<std::vector<CascadeStageShape>> CascadeTable(const std::string& preset);
std::vector<std::string> CascadePresetNames();

}  // namespace vidfarm
