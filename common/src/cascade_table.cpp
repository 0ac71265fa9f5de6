#include "vidfarm/common/cascade_table.h"

#include <fmt/format.h>

namespace vidfarm {
namespace {

constexpr StageKind kB = StageKind::kBase, kT = StageKind::kTemporalSR, kS = StageKind::kSpatialSR;

// Paper, Figure 6 as we read it (ARCHITECTURE.md).
const std::vector<CascadeStageShape> kPaper = {
    {"base", "Base", kB, 16, 24, 40, 3, 1, 1, true, true, true},
    {"tsr1", "TSR ×2", kT, 32, 24, 40, 6, 2, 1, false, true, true},
    {"ssr2", "SSR ×2", kS, 32, 48, 80, 6, 1, 2, false, true, true},
    {"ssr3", "SSR ×4", kS, 32, 192, 320, 6, 1, 4, false, true, false},
    {"tsr4", "TSR ×2", kT, 64, 192, 320, 12, 2, 1, false, false, false},
    {"tsr5", "TSR ×2", kT, 128, 192, 320, 24, 2, 1, false, false, false},
    {"ssr6", "SSR ×4", kS, 128, 768, 1280, 24, 1, 4, false, false, false},
};

// Same stages, order and mechanisms at 2-core CPU size: half the frames, and ×2 instead of ×4 in
// the two big spatial stages so the 12×20 base still shows a shape while the end is 96×160 (5:3).
const std::vector<CascadeStageShape> kTiny = {
    {"base", "Base", kB, 8, 12, 20, 3, 1, 1, true, true, true},
    {"tsr1", "TSR ×2", kT, 16, 12, 20, 6, 2, 1, false, true, true},
    {"ssr2", "SSR ×2", kS, 16, 24, 40, 6, 1, 2, false, true, true},
    {"ssr3", "SSR ×2", kS, 16, 48, 80, 6, 1, 2, false, true, false},
    {"tsr4", "TSR ×2", kT, 32, 48, 80, 12, 2, 1, false, false, false},
    {"tsr5", "TSR ×2", kT, 64, 48, 80, 24, 2, 1, false, false, false},
    {"ssr6", "SSR ×2", kS, 64, 96, 160, 24, 1, 2, false, false, false},
};

}  // namespace

const char* StageKindName(StageKind kind) {
  switch (kind) {
    case StageKind::kBase: return "base";
    case StageKind::kTemporalSR: return "tsr";
    case StageKind::kSpatialSR: return "ssr";
  }
  return "?";
}

std::vector<std::string> CascadePresetNames() { return {"paper", "tiny"}; }

Result<std::vector<CascadeStageShape>> CascadeTable(const std::string& preset) {
  if (preset == "paper") return kPaper;
  if (preset == "tiny") return kTiny;
  return Status::InvalidArgument(fmt::format("unknown preset '{}' (known: paper, tiny)", preset));
}

}  // namespace vidfarm
