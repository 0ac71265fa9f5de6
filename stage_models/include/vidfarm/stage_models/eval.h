// `vidfarm eval`: how well each stage of a cascade does its job, after Imagen Video's Table 1 and
// Figures 12–13, measured on the synthetic world where the ground truth is exact.
//  1. text alignment: the analyzer (synth.h) reads each final video back into colour, shape,
//     motion and background and compares them with the prompt; per-attribute accuracy and
//     confusion tables (our analog of CLIP R-Precision);
//  2. per-stage fidelity: each SR stage fed the ground truth of its input; SSR PSNR/SSIM against
//     bilinear upsampling, TSR PSNR on the new frames against frame repetition and linear blending;
//  3. temporal consistency: the share of frames whose tracked object keeps the clip's colour and
//     shape;
//  4. a guidance sweep (w = 0, 1, 3, 5, 8, 15 and oscillating 15/1; dynamic thresholding on and
//     off): alignment and the share of saturated pixels;
//  5. v- against ε-prediction on one SSR stage: held-out PSNR against training steps, read from the
//     two training runs' loss.csv (`vidfarm train --eval-every`);
//  6. the base's prompt sensitivity: on ground-truth clips, how often the clip's own caption
//     denoises it better than the caption with one word changed (motion reversed, colour, shape):
//     the diffusion model as a zero-shot classifier, forward passes only; and the drift of its
//     prior: how far per frame its guess of a clip from pure noise moves the object the way the
//     caption's direction says, against ground-truth renders.
// Writes report.json, report.md and PNG figures into the output directory.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/stage_models/stage_runner.h"

namespace vidfarm::models {

struct EvalOptions {
  std::string preset = "tiny";
  std::string models_dir;        // one package per stage: <dir>/<stage name>/
  bool random_weights = false;   // ignore packages, every stage random (smoke tests)
  std::string prompts_file;      // one caption per line; empty: `samples` drawn from the grammar
  int samples = 24;              // prompts rendered through the whole cascade (alignment)
  int fidelity_examples = 8;     // ground-truth inputs per SR stage
  bool guidance_sweep = true;
  int sweep_samples = 8;         // prompts per guidance setting
  int sweep_last_stage = 2;      // the sweep renders stages 0..this (the analyzer reads that size)
  // Overrides of every stage's sampling settings (quick runs: steps; diagnosis: e.g. an SR stage
  // without guidance); unset fields keep each stage's preset default.
  StageOverrides overrides;
  // Only part 2 (per-stage fidelity), on these stages (empty: every SR stage); the report then
  // holds only "fidelity" and the settings.
  bool fidelity_only = false;
  std::vector<int> fidelity_stages;
  // Part 6, prompt sensitivity of the base: ground-truth clips scored against counterfactual
  // captions (0 = skip). With sensitivity_only, the report holds only it and the settings.
  int sensitivity_examples = 48;
  bool sensitivity_only = false;
  // Part 7: stages 1..last on the ground truth at the base's shape for the first N prompts (0 =
  // skip): what the stages above the base make of a perfect base.
  int true_base_samples = 8;
  bool true_base_only = false;  // only part 7; the report holds it and the settings
  std::string out_dir = "eval";
  uint64_t seed = 1;             // prompts, scenes and sampling seeds
  // loss.csv of the v and the ε training run of one SSR stage (with eval_psnr rows). Empty or
  // missing: that part of the report says so and is skipped.
  std::string v_log, eps_log;
  // Optional third curve: a v run of the same stage with another output (the shipped model's skip
  // around the conditioning), drawn beside the like-for-like pair.
  std::string v_skip_log;
  StageRunnerOptions runner;
};

// Runs every part; progress lines go to `progress`. The returned JSON is what report.json holds.
Result<nlohmann::json> RunEval(const EvalOptions& options,
                               const std::function<void(const std::string&)>& progress = {});

// Writes report.json and report.md into out_dir (the caller may add "command" first).
Status WriteEvalReport(const nlohmann::json& report, const std::string& out_dir);

// Mean SSIM over frames of the luma (BT.601) of two [C,T,H,W] videos in [-1, 1]: 7x7 Gaussian
// window (σ 1.5), no padding, constants for a dynamic range of 2. Exposed for tests.
double VideoSsim(const torch::Tensor& a, const torch::Tensor& b);
// 10 log10(4 / MSE) over all elements (peak-to-peak 2); +inf when equal.
double TensorPsnr(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace vidfarm::models
