// `vidfarm plan --preset paper`: shapes, fps, parameters, GFLOPs and memory per stage.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "flags.h"
#include "vidfarm/stage_models/plan.h"
#include "vidfarm/stage_models/preset.h"

namespace vidfarm::cli {

int RunPlan(const std::vector<std::string>& args) {
  std::string preset_name = "paper";
  int64_t batch = 1;
  bool json = false;
  FlagSet flags("vidfarm plan [--preset paper|tiny] [--batch B] [--json]",
                "Instantiates every stage of a preset on the meta device (no memory is allocated)\n"
                "and prints its output shape, fps, parameter count, GFLOPs of one forward pass at\n"
                "batch B, an activation-memory estimate (every op output of one forward, as\n"
                "training keeps them without checkpointing) and the weight memory in fp32.");
  flags.String("preset", 0, &preset_name, "cascade preset: paper | tiny");
  flags.Int("batch", 'b', &batch, "batch size of the counted forward pass");
  flags.Bool("json", 0, &json, "print JSON instead of a table");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "plan", &positional); rc >= 0) return rc;
  if (!positional.empty()) return Fail("plan", "unexpected argument '" + positional[0] + "'", 2);
  if (batch < 1) return Fail("plan", "--batch must be at least 1", 2);
  auto preset = models::GetPreset(preset_name);
  if (!preset.ok()) return Fail("plan", preset.status().message(), 2);
  auto plan = models::PlanPreset(*preset, batch);
  if (!plan.ok()) return Fail("plan", plan.status().ToString());
  if (!json) {
    std::fputs(models::FormatPlan(*plan, preset_name).c_str(), stdout);
    return 0;
  }
  nlohmann::json out = {
      {"preset", preset_name}, {"batch", batch}, {"stages", nlohmann::json::array()}};
  for (const auto& s : *plan) {
    out["stages"].push_back({{"stage", s.index},
                             {"name", s.name},
                             {"label", s.label},
                             {"frames", s.frames},
                             {"height", s.height},
                             {"width", s.width},
                             {"fps", s.fps},
                             {"params", s.params},
                             {"forward_gflops", s.forward_gflops},
                             {"activation_bytes", s.activation_bytes},
                             {"param_bytes", s.param_bytes}});
  }
  std::puts(out.dump(2).c_str());
  return 0;
}

}  // namespace vidfarm::cli
