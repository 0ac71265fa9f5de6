#include "vidfarm/stage_models/plan.h"

#include <fmt/format.h>

#include "vidfarm/stage_models/ops.h"
#include "vidfarm/stage_models/unet.h"

namespace vidfarm::models {

Result<StagePlan> PlanStage(const StageSpec& spec, int64_t text_tokens, int64_t batch) {
  if (batch < 1) return Status::InvalidArgument("batch must be >= 1");
  VF_RETURN_NOT_OK(spec.net.Validate().WithContext("stage " + spec.name));
  StagePlan p;
  p.index = spec.index;
  p.name = spec.name;
  p.label = spec.label;
  p.frames = spec.frames;
  p.height = spec.height;
  p.width = spec.width;
  p.fps = spec.fps;
  try {
    torch::NoGradGuard no_grad;
    const torch::Device meta(torch::kMeta);
    VideoUNet net(spec.net, meta);
    p.params = CountParameters(*net);
    p.param_bytes = 4.0 * static_cast<double>(p.params);
    auto f = torch::TensorOptions().dtype(torch::kFloat32).device(meta);
    auto bo = torch::TensorOptions().dtype(torch::kBool).device(meta);
    UNetInputs in;
    const int64_t c = spec.net.channels;
    in.z = torch::empty({batch, c, spec.frames, spec.height, spec.width}, f);
    in.logsnr = torch::empty({batch}, f);
    in.text_tokens = torch::empty({batch, std::max<int64_t>(text_tokens, 1), spec.net.text_dim}, f);
    in.text_mask = torch::empty({batch, std::max<int64_t>(text_tokens, 1)}, bo);
    in.text_pooled = torch::empty({batch, spec.net.text_dim}, f);
    in.text_keep = torch::empty({batch}, bo);
    if (spec.net.super_resolution) {
      in.cond_video = torch::empty_like(in.z);
      in.aug_logsnr = torch::empty({batch}, f);
    }
    VF_RETURN_NOT_OK(net->CheckInputs(in).WithContext("stage " + spec.name));
    ops::FlopCounterScope scope;
    auto out = net->forward(in);
    if (out.sizes() != in.z.sizes()) {
      return Status::Internal("stage " + spec.name + ": output shape differs from input");
    }
    p.forward_gflops = scope.flops() / 1e9;
    p.activation_bytes = scope.activation_bytes();
  } catch (const std::exception& e) {
    return Status::Internal("planning stage " + spec.name + " failed: " + e.what());
  }
  return p;
}

Result<std::vector<StagePlan>> PlanPreset(const CascadePreset& preset, int64_t batch) {
  std::vector<StagePlan> out;
  for (const auto& s : preset.stages) {
    VF_ASSIGN_OR_RETURN(auto p, PlanStage(s, preset.text_tokens, batch));
    out.push_back(std::move(p));
  }
  return out;
}

namespace {
std::string Human(double v, const char* unit) {
  const char* prefixes[] = {"", "K", "M", "G", "T", "P"};
  int i = 0;
  while (v >= 1000.0 && i < 5) {
    v /= 1000.0;
    ++i;
  }
  return fmt::format("{:.1f} {}{}", v, prefixes[i], unit);
}
std::string Bytes(double v) {
  const char* prefixes[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int i = 0;
  while (v >= 1024.0 && i < 5) {
    v /= 1024.0;
    ++i;
  }
  return fmt::format("{:.1f} {}", v, prefixes[i]);
}
// Left-aligned to `width` display columns (labels contain "×": count code points, not bytes).
std::string PadRight(const std::string& s, size_t width) {
  size_t cols = 0;
  for (unsigned char c : s) cols += (c & 0xC0) != 0x80;
  return s + std::string(width > cols ? width - cols : 0, ' ');
}
}  // namespace

std::string FormatPlan(const std::vector<StagePlan>& plan, const std::string& preset_name) {
  std::string s = fmt::format("preset {}: {} stages\n", preset_name, plan.size());
  s += fmt::format("{:<2} {:<5} {:<8} {:>18} {:>5} {:>10} {:>12} {:>12} {:>12}\n", "#", "name",
                   "stage", "frames x H x W", "fps", "params", "fwd GFLOP", "activations",
                   "weights");
  int64_t params = 0;
  double gflops = 0, act = 0, pbytes = 0;
  for (const auto& p : plan) {
    s += fmt::format("{:<2} {:<5} {} {:>18} {:>5g} {:>10} {:>12.1f} {:>12} {:>12}\n", p.index,
                     p.name, PadRight(p.label, 8),
                     fmt::format("{} x {} x {}", p.frames, p.height, p.width), p.fps,
                     Human(static_cast<double>(p.params), ""), p.forward_gflops,
                     Bytes(p.activation_bytes), Bytes(p.param_bytes));
    params += p.params;
    gflops += p.forward_gflops;
    act += p.activation_bytes;
    pbytes += p.param_bytes;
  }
  s += fmt::format("{:<2} {:<5} {:<8} {:>18} {:>5} {:>10} {:>12.1f} {:>12} {:>12}\n", "", "total",
                   "", "", "", Human(static_cast<double>(params), ""), gflops, Bytes(act),
                   Bytes(pbytes));
  return s;
}

}  // namespace vidfarm::models
