#include "vidfarm/stage_models/preset.h"

#include <cmath>

namespace vidfarm::models {

nlohmann::json SamplingDefaults::ToJson() const {
  return {{"steps", steps},
          {"sampler", sampler},
          {"gamma", gamma},
          {"time_power", time_power},
          {"frame_noise", frame_noise},
          {"guidance", guidance},
          {"oscillating", oscillating},
          {"guidance_low", guidance_low},
          {"oscillate_after", oscillate_after},
          {"thresholding", thresholding},
          {"dynamic_p", dynamic_p},
          {"aug_logsnr", aug_logsnr},
          {"prediction", prediction}};
}

nlohmann::json StageSpec::ToJson() const {
  nlohmann::json j;
  j["index"] = index;
  j["name"] = name;
  j["label"] = label;
  j["kind"] = StageKindName(kind);
  j["frames"] = frames;
  j["height"] = height;
  j["width"] = width;
  j["fps"] = fps;
  j["temporal_factor"] = temporal_factor;
  j["spatial_factor"] = spatial_factor;
  j["temporal_upsample"] = temporal_upsample;
  j["spatial_attention"] = spatial_attention;
  j["oscillating_cfg"] = oscillating_cfg;
  j["trained_on_crops"] = trained_on_crops;
  j["crop_h"] = crop_h;
  j["crop_w"] = crop_w;
  j["input"] = {
      {"frames", in_frames()}, {"height", in_height()}, {"width", in_width()}, {"fps", in_fps()}};
  j["net"] = net.ToJson();
  j["sampling"] = sampling.ToJson();
  return j;
}

namespace {

const double kLog5 = std::log(5.0);  // conditioning augmentation at SNR 5 (early SR stages)
const double kLog3 = std::log(3.0);  // SNR 3 (later SR stages)

StageSpec FromRow(int index, const CascadeStageShape& r, int64_t channels, int64_t text_dim) {
  StageSpec s;
  s.index = index;
  s.name = r.name;
  s.label = r.label;
  s.kind = r.kind;
  s.frames = r.frames;
  s.height = r.height;
  s.width = r.width;
  s.fps = r.fps;
  s.temporal_factor = r.temporal_factor;
  s.spatial_factor = r.spatial_factor;
  s.spatial_attention = r.spatial_attention;
  s.oscillating_cfg = r.oscillating_cfg;
  s.net.channels = channels;
  s.net.super_resolution = r.kind != StageKind::kBase;
  // SR outputs are residuals around the linear guess from z and the conditioning (UNetConfig::
  // cond_prior_std). A/B on tiny tsr5 (24 wide, same seed and data, `vidfarm train --eval-every`):
  // held-out PSNR 30.1 dB after 250 steps with it; with cond_skip, the offset used before,
  // 18.2 dB after 500 and 24.9 dB after 1500. Packages and checkpoints keep their own.
  // TSR stages: the guess blends the original frames linearly (UNetConfig::cond_prior_blend) and
  // its std is 0.02, about the blend's own error; SSR stages 0.1 around the bilinear upsampling
  // (tiny: per stage, below). Held-out PSNR in training (`vidfarm train --eval-every 500`, all
  // frames) on tiny tsr5 after 2000 steps: 44.7 dB blended at 0.02, 36.7 dB with the repeated
  // guess at 0.1, frame repetition 38.5 dB; tsr4 (2000 steps) 37.7 dB against repetition's 33.1,
  // tsr1 (1500) 40.1 dB against 35.3.
  s.net.cond_skip = false;
  const bool tsr = r.kind == StageKind::kTemporalSR;
  s.net.cond_prior_std = s.net.super_resolution ? (tsr ? 0.02 : 0.1) : 0.0;
  s.net.cond_prior_blend = tsr ? r.temporal_factor : 0;
  s.net.temporal = r.temporal_attention ? TemporalMixing::kAttention : TemporalMixing::kConv;
  // The base draws motion from nothing but the prompt, so it needs to know where each frame lies
  // in the clip (UNetConfig::frame_embedding: without it the tiny base drew the same frames for
  // "moving left" and "moving right"). SR stages read motion off their conditioning video.
  s.net.frame_embedding = r.kind == StageKind::kBase;
  s.net.text_dim = text_dim;
  s.sampling.oscillating = r.oscillating_cfg;
  return s;
}

std::vector<bool> Attn(std::initializer_list<bool> v) { return std::vector<bool>(v); }

CascadePreset Paper() {
  CascadePreset p;
  p.name = "paper";
  p.channels = 3;
  p.text_dim = 4096;  // T5-XXL
  p.text_tokens = 128;
  const auto rows = CascadeTable("paper").value();
  for (int i = 0; i < 7; ++i) p.stages.push_back(FromRow(i, rows[i], p.channels, p.text_dim));
  // Widths are our guess (the paper gives 11.6B parameters in total, not per-stage widths):
  // a multi-billion-parameter base, SR stages narrowing as resolution grows, spatial attention
  // only at the coarse levels (<= 24x40 tokens per frame).
  auto set = [](StageSpec& s, int64_t dim, std::vector<int64_t> mults, int nrb,
                std::vector<bool> attn, int64_t heads, int64_t head_dim) {
    s.net.dim = dim;
    s.net.mults = std::move(mults);
    s.net.num_res_blocks = nrb;
    s.net.spatial_attention = std::move(attn);
    s.net.heads = heads;
    s.net.head_dim = head_dim;
    s.net.groups = 32;
  };
  auto& st = p.stages;
  set(st[0], 512, {1, 2, 4, 4}, 3, Attn({false, true, true, true}), 16, 64);
  set(st[1], 384, {1, 2, 4, 4}, 3, Attn({false, true, true, true}), 16, 64);
  set(st[2], 256, {1, 2, 4, 4}, 3, Attn({false, false, true, true}), 16, 64);
  set(st[3], 128, {1, 2, 4, 8, 8}, 2, Attn({false, false, false, true, true}), 8, 64);
  set(st[4], 128, {1, 2, 4, 8, 8}, 2, {}, 8, 64);
  set(st[5], 128, {1, 2, 4, 8, 8}, 2, {}, 8, 64);
  set(st[6], 128, {1, 2, 4, 4}, 2, {}, 8, 64);
  st[6].net.cross_attention = false;
  st[6].net.fully_convolutional = true;
  st[6].trained_on_crops = true;
  st[6].crop_h = 192;  // our guess: a quarter of the height, 1/4 of the frame area
  st[6].crop_w = 320;
  for (auto& s : st) {
    s.sampling.steps = s.kind == StageKind::kBase ? 256 : 128;
    s.sampling.aug_logsnr = s.index <= 2 ? kLog5 : kLog3;
    if (s.oscillating_cfg) {
      s.sampling.guidance = 15.0;
      s.sampling.guidance_low = 1.0;
      s.sampling.oscillate_after = s.sampling.steps / 8;
    } else {
      s.sampling.guidance = s.index <= 3 ? 5.0 : 1.0;
    }
  }
  return p;
}

CascadePreset Tiny() {
  CascadePreset p;
  p.name = "tiny";
  p.channels = 3;
  p.text_dim = 64;
  p.text_tokens = 16;
  const auto rows = CascadeTable("tiny").value();
  for (int i = 0; i < 7; ++i) p.stages.push_back(FromRow(i, rows[i], p.channels, p.text_dim));
  // Stages at 48x80 and above run at half resolution internally (patch 2: pixel unshuffle), which
  // keeps the memory-bound norms and activations affordable on a 2-core CPU.
  auto set = [](StageSpec& s, int64_t dim, std::vector<int64_t> mults, std::vector<bool> attn,
                int64_t groups, int64_t patch) {
    s.net.dim = dim;
    s.net.mults = std::move(mults);
    s.net.num_res_blocks = 1;
    s.net.spatial_attention = std::move(attn);
    s.net.heads = 4;
    s.net.head_dim = 16;
    s.net.groups = groups;
    s.net.patch = patch;
  };
  auto& st = p.stages;
  set(st[0], 32, {1, 2, 2}, Attn({false, true, true}), 8, 1);
  set(st[1], 24, {1, 2, 2}, Attn({false, true, true}), 8, 1);
  set(st[2], 24, {1, 2, 2}, Attn({false, false, true}), 8, 1);
  set(st[3], 32, {1, 2, 2}, Attn({false, false, true}), 8, 2);
  set(st[4], 32, {1, 2, 2}, {}, 8, 2);
  // ssr6 was 12 wide: its patched input (noisy video and conditioning, 2·3·2·2 = 24 channels) went
  // through a 12-channel first convolution, so it could not see the noise it had to remove (after
  // 2000 steps, held-out PSNR 16.2 dB against bilinear's 35.2). 24 wide keeps every input channel;
  // so does tsr5 (16 wide until step 3000: held-out 25.3 dB against frame repetition's 38.5, its
  // output under the same grain). The preset test checks every SR stage for this.
  set(st[5], 24, {1, 2, 2}, {}, 8, 2);
  set(st[6], 24, {1, 2, 2}, {}, 8, 2);
  st[6].net.cross_attention = false;
  st[6].net.fully_convolutional = true;
  st[6].trained_on_crops = true;
  st[6].crop_h = 32;
  st[6].crop_w = 32;
  // SSR guesses: std about the RMS error of bilinear upsampling on this world (from the naive
  // PSNR of `vidfarm eval --fidelity-only --fidelity-examples 4`, peak-to-peak 2: ssr2 30.6 dB
  // -> 0.059, ssr3 32.7 dB -> 0.046, ssr6 36.6 dB -> 0.030), as the TSR stages' 0.02 matches
  // their blend's. A/B on ssr2 (same seed, data and steps; held-out PSNR after 500 steps):
  // 28.4 dB at std 0.06 against 27.2 dB at 0.1 (bilinear 29.2).
  st[2].net.cond_prior_std = 0.06;
  st[3].net.cond_prior_std = 0.05;
  st[6].net.cond_prior_std = 0.03;
  // Steps: base 32, SR 12 (8 for the two biggest). Sampler and guidance: below. Augmentation at
  // sampling: log-SNR 10 (noise σ 0.007), far lighter than the paper's SNR 5/3. With the
  // cond_prior_std output the conditioning's noise passes into x̂ unless the network removes it:
  // `vidfarm eval --fidelity-only --fidelity-examples 4 --aug-logsnr L` on tsr5 (step 1000)
  // 32.9 dB at L = 6 (the level before), 36.5 at 10, 36.2 at 20; tsr1 (step 800) 35.1 at 6,
  // 36.1 at 10 (frame repetition: 36.0). Training draws levels from log-SNR 2.9 to 20.
  for (auto& s : st) {
    s.sampling.steps = s.kind == StageKind::kBase ? 32 : (s.index >= 5 ? 8 : 12);
    s.sampling.aug_logsnr = 10.0;
    // Dynamic thresholding divides the whole of x̂ by its 99.5th-percentile magnitude: on this
    // world's saturated colours and black backgrounds any overshoot dims every pixel (ssr2 at step
    // ~2000, `vidfarm eval --fidelity-only --stages 2 --thresholding T`: 19.8 dB dynamic, 25.9 dB
    // static; the base at step 12000 renders "a red circle moving right" on dark grey-green with
    // dynamic, on black with static). Every tiny stage clips; `eval`'s sweep compares both.
    s.sampling.thresholding = "static";
    // The base samples as in the paper (ancestral, oscillating guidance 5/1 after 4 steps). The
    // SR stages sample with DDIM and no guidance: given their input, guidance amplifies the
    // network's errors and the ancestral sampler's fresh noise outlasts what these small networks
    // remove. `eval --fidelity-only` on 4 ground-truth inputs, 12 steps: ssr2 (step 3985) 26.4 dB
    // ancestral with oscillating 5/1, 28.0 dB at w = 1, 28.4 dB at w = 0, 29.1 dB DDIM w = 0;
    // tsr1 (step 2000) 27.4 dB ancestral 5/1, 29.7 dB w = 0, 31.2 dB DDIM w = 0. w = 0 also skips
    // the unconditional pass, halving the SR stages' cost.
    if (s.kind == StageKind::kBase) {
      s.sampling.guidance = 5.0;
      s.sampling.guidance_low = 1.0;
      s.sampling.oscillate_after = 4;
    } else {
      s.sampling.sampler = "ddim";
      s.sampling.oscillating = false;  // oscillating_cfg stays: the stage's row of the table
      s.sampling.guidance = 0.0;
    }
  }
  return p;
}

}  // namespace

std::vector<std::string> PresetNames() { return CascadePresetNames(); }

Result<CascadePreset> GetPreset(const std::string& name) {
  VF_RETURN_NOT_OK(CascadeTable(name).status());  // unknown names: one message for every room
  return name == "paper" ? Paper() : Tiny();
}

}  // namespace vidfarm::models
