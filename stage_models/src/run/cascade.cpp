#include "vidfarm/stage_models/cascade.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "vidfarm/common/log.h"

namespace vidfarm::models {

Result<std::unique_ptr<Cascade>> Cascade::Open(const CascadeOptions& options) {
  std::unique_ptr<Cascade> c(new Cascade());
  VF_ASSIGN_OR_RETURN(c->preset_, GetPreset(options.preset));
  const int total = static_cast<int>(c->preset_.stages.size());
  const int last = options.last_stage < 0 ? total - 1 : options.last_stage;
  if (last >= total) {
    return Status::InvalidArgument(
        fmt::format("last stage {} is out of range: preset {} has stages 0..{}", last, options.preset,
                    total - 1));
  }
  if (!options.overrides.empty() && static_cast<int>(options.overrides.size()) != total) {
    return Status::InvalidArgument(
        fmt::format("per-stage overrides need {} entries, got {}", total, options.overrides.size()));
  }
  std::vector<std::string> random_stages;
  for (int k = 0; k <= last; ++k) {
    const StageSpec& spec = c->preset_.stages[k];
    namespace fs = std::filesystem;
    const std::string dir =
        options.models_dir.empty() ? "" : (fs::path(options.models_dir) / spec.name).string();
    ModelPackage package;
    if (!options.force_random_weights && !dir.empty() && fs::exists(dir)) {
      VF_ASSIGN_OR_RETURN(package, LoadPackage(dir, spec, torch::kCPU));
    } else {
      if (!options.allow_random_weights && !options.force_random_weights) {
        return Status::NotFound(fmt::format("no model package for stage {} ({}) at '{}'", k,
                                            spec.name, dir));
      }
      VF_ASSIGN_OR_RETURN(package, RandomPackage(spec, options.init_seed + k, torch::kCPU));
      random_stages.push_back(spec.name);
    }
    VF_ASSIGN_OR_RETURN(auto runner, StageRunner::Create(std::move(package), c->preset_, options.runner));
    c->runners_.push_back(std::move(runner));
    StageOverrides o = options.overrides.empty() ? StageOverrides{} : options.overrides[k];
    VF_ASSIGN_OR_RETURN(StageSettings s, ResolveStageSettings(spec, o));
    c->settings_.push_back(std::move(s));
  }
  if (!random_stages.empty() && !options.force_random_weights) {
    std::string names;
    for (const auto& n : random_stages) names += (names.empty() ? "" : ", ") + n;
    VF_LOG_WARN(
        "RANDOM WEIGHTS for stage(s) {}: no trained package under '{}'. The video will be noise-like; "
        "pass --models DIR with trained packages.",
        names, options.models_dir.empty() ? std::string("(none)") : options.models_dir);
  }
  return c;
}

Result<Video> Cascade::Render(const std::string& prompt, uint64_t seed,
                              const CascadeEventFn& on_event) {
  Video current;
  const int n = num_stages();
  for (int k = 0; k < n; ++k) {
    StageRunner& runner = *runners_[k];
    const StageSpec& spec = runner.spec();
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    CascadeEvent ev{CascadeEvent::Kind::kStageStart, k, n, spec.label, spec.name, 0,
                    settings_[k].sampler.steps};
    if (on_event) on_event(ev);
    SamplerHooks hooks;
    hooks.on_step = [&](int done, int total) {
      if (!on_event) return;
      CascadeEvent step_ev = ev;
      step_ev.kind = CascadeEvent::Kind::kStep;
      step_ev.step = done;
      step_ev.steps = total;
      step_ev.stage_seconds = elapsed();
      on_event(step_ev);
    };
    StageRequest request;
    request.prompts = {prompt};
    request.seed = seed;
    if (k > 0) request.inputs = {std::move(current)};
    VF_ASSIGN_OR_RETURN(std::vector<Video> out, runner.Run(request, settings_[k], hooks));
    current = std::move(out.front());
    if (on_event) {
      CascadeEvent done = ev;
      done.kind = CascadeEvent::Kind::kStageDone;
      done.step = done.steps;
      done.stage_seconds = elapsed();
      done.output = &current;
      on_event(done);
    }
  }
  return current;
}

}  // namespace vidfarm::models
