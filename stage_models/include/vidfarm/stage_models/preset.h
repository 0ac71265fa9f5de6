// Cascade presets: the seven stages of Imagen Video (Ho et al. 2022, Figure 6) with their shapes,
// network architectures and default sampling settings. "paper" is the published cascade (widths
// are our guess: the paper does not publish them); "tiny" keeps the seven stages, their order and
// their mechanisms at a size that trains and renders on a 2-core CPU.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vidfarm/common/cascade_table.h"
#include "vidfarm/common/status.h"
#include "vidfarm/stage_models/unet.h"

namespace vidfarm::models {

// StageKind and StageKindName ("base" | "tsr" | "ssr") come from the common cascade table.

// Per-stage sampling defaults; strings so this library stays independent of the sampler code.
struct SamplingDefaults {
  int steps = 32;
  std::string sampler = "ancestral";  // "ancestral" | "ddim"
  double gamma = 0.3;                 // ancestral variance interpolation
  double time_power = 1.0;            // time grid t_i = (1 − i/steps)^p; 1 = uniform (paper)
  double frame_noise = 0.0;           // share of the noise common to all frames (SamplerOptions)
  double guidance = 1.0;              // w (constant), or the high weight when oscillating
  bool oscillating = false;
  double guidance_low = 1.0;             // low weight when oscillating
  int oscillate_after = 0;               // steps of constant high weight before oscillating
  std::string thresholding = "dynamic";  // "dynamic" | "static" | "none"
  double dynamic_p = 0.995;
  double aug_logsnr = 1.6;  // SR only: conditioning-augmentation log-SNR at sampling (log 5 ≈ 1.61)
  std::string prediction = "v";  // "v" | "eps"

  nlohmann::json ToJson() const;
};

struct StageSpec {
  int index = 0;
  std::string name;   // "base", "tsr1", "ssr2", ...
  std::string label;  // "TSR ×2"
  StageKind kind = StageKind::kBase;
  int64_t frames = 0, height = 0, width = 0;  // output
  double fps = 0;
  int temporal_factor = 1, spatial_factor = 1;
  std::string temporal_upsample = "repeat";  // TSR: "repeat", "blank" or "blend" frames
  bool spatial_attention = false;
  bool oscillating_cfg = false;
  bool trained_on_crops = false;
  int64_t crop_h = 0, crop_w = 0;
  UNetConfig net;
  SamplingDefaults sampling;

  // Input (previous stage's output) shape; equal to the output for the base stage.
  int64_t in_frames() const { return frames / temporal_factor; }
  int64_t in_height() const { return height / spatial_factor; }
  int64_t in_width() const { return width / spatial_factor; }
  double in_fps() const { return fps / temporal_factor; }
  nlohmann::json ToJson() const;
};

struct CascadePreset {
  std::string name;
  int64_t channels = 3;
  int64_t text_dim = 0;     // text token width (T5-XXL: 4096)
  int64_t text_tokens = 0;  // tokens per prompt
  std::vector<StageSpec> stages;
};

// "paper" | "tiny"; anything else → InvalidArgument listing the names.
Result<CascadePreset> GetPreset(const std::string& name);
std::vector<std::string> PresetNames();

}  // namespace vidfarm::models
