// Training one cascade stage (Imagen Video §2.5–2.6, §3): v-prediction (or ε) regression on the
// continuous-time cosine schedule, conditioning dropout for classifier-free guidance, noise
// conditioning augmentation at random levels for the SR stages, video–image joint batches with the
// temporal layers masked for images, random crops for the fully convolutional stage, Adam with an
// EMA of the weights, and crash-safe periodic checkpoints from which `--resume` continues exactly.
//
// Every random choice of step s (which examples, image or video, t, ε, augmentation level,
// dropout, crop) is a pure function of (seed, s), so a run resumed from the checkpoint of step s
// computes the same steps s+1, s+2, ... as the run that was killed.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"
#include "vidfarm/stage_models/diffusion.h"
#include "vidfarm/stage_models/preset.h"

namespace vidfarm::models {

// One training example at a stage's shapes: the target at the stage's output shape and, for SR
// stages, the conditioning video at the stage's input shape (what the previous stage produces).
struct TrainingExample {
  std::string caption;
  Video target;
  Video cond;          // SR stages only
  bool image = false;  // frames are independent stills of the caption (temporal layers masked)
};

// A deterministic stream of examples for one stage.
class TrainingData {
 public:
  virtual ~TrainingData() = default;
  // Example `index` of the stream. With `image`, the frames are independent stills.
  virtual Result<TrainingExample> Get(uint64_t index, bool image) const = 0;
  virtual bool supports_images() const = 0;
  virtual std::string Describe() const = 0;  // for logs and the package's provenance
};

// The synthetic world (synth.h): scene `index` of `seed` rendered at the output and input shapes.
std::unique_ptr<TrainingData> MakeSynthData(const StageSpec& spec, uint64_t seed);
// A directory of FFmpeg-readable videos with captions in captions.jsonl ({"file": ..., "caption":
// ...} per line) or captions.csv (file,caption; a header line "file,caption" is optional). Each
// example takes a random window of the clip, subsampled by frame skipping to the stage's fps and
// resized (antialiased bilinear) to the stage's shape; the SR conditioning is the target shrunk
// to the input shape the same way. Videos are decoded once and kept in memory at the stage size.
Result<std::unique_ptr<TrainingData>> MakeDirData(const StageSpec& spec, const std::string& dir,
                                                  uint64_t seed);

struct TrainOptions {
  std::string preset = "tiny";
  int stage = 0;
  std::string data = "synth";  // "synth" or a directory (MakeDirData)
  int64_t steps = 1000;        // total steps to reach (a resumed run continues up to this)
  std::string out;             // model package directory written at every checkpoint and the end
  std::string checkpoint_dir;  // Default: <out>.ckpt
  bool resume = false;         // continue from checkpoint_dir's latest checkpoint
  // A fresh run (no checkpoint in checkpoint_dir yet) starts from this other run's latest
  // checkpoint instead of step 0: its step, weights, EMA, Adam moments, learning-rate history and
  // loss log. The network may have grown since (UNetConfig::frame_embedding): tensors the
  // checkpoint lacks keep their initial values, which leave the function unchanged. A checkpoint
  // tensor the network lacks, or of another shape, is an error. Recorded as provenance.init_from.
  std::string init_from;
  int64_t batch = 8;
  double lr = 5e-4;
  int64_t warmup = 100;  // linear learning-rate warmup steps
  // Cooldown: from step lr_decay_from (>= 0; -1 = never) to `steps` the rate falls along a half
  // cosine from lr to lr * lr_final. A resumed run can start its cooldown at the resume step.
  int64_t lr_decay_from = -1;
  double lr_final = 0.1;
  double ema_decay = 0.999;
  double grad_clip = 1.0;       // global gradient-norm clip (0 = off)
  double cond_dropout = 0.1;    // drop the text to the learned null embedding (CFG)
  double image_fraction = 0.0;  // share of image examples (base and SSR stages only)
  double aug_t_max = 0.5;       // SR: augmentation level t_aug ~ U(0, aug_t_max) on the schedule
  Parameterization prediction = Parameterization::kV;
  // SR stages, >= 0: UNetConfig::cond_prior_std (0: cond_skip instead). Negative: the preset's,
  // or on resume the checkpoint's.
  double cond_prior_std = -1;
  // SR stages: no output skip at all, the network's output is the v prediction itself, as an ε
  // model's output always is the ε prediction (the like-for-like twin of an ε run).
  bool plain_output = false;
  // Base stages: -1 = the preset's UNetConfig::frame_embedding, 0 = without, 1 = with (an A/B of
  // the frame embedding from step 0). A resumed run keeps its checkpoint's choice.
  int frame_embedding = -1;
  // Base stages: -1 = the preset's UNetConfig::spacetime_attention, 0 = without, 1 = with. A
  // resumed run keeps its checkpoint's choice.
  int spacetime_attention = -1;
  // Random crops (0 = the spec's: crop_h/crop_w for trained_on_crops stages, else none).
  int64_t crop_frames = 0, crop_h = 0, crop_w = 0;
  int64_t checkpoint_every = 200;
  int64_t log_every = 10;
  // Every N steps (0 = off), sample `eval_examples` held-out examples with a short DDIM sampler
  // and log their PSNR against the ground truth (and, for SR stages, bilinear/repeat's PSNR).
  int64_t eval_every = 0;
  int64_t eval_examples = 4;
  int eval_steps = 8;
  uint64_t seed = 1;
  torch::Device device = torch::kCPU;
  bool bf16 = false;         // autocast matmuls and convolutions to bfloat16 (weights stay f32)
  bool fixed_batch = false;  // the same examples and noise every step (smoke tests: overfit)
  const std::atomic<bool>* stop = nullptr;  // set → checkpoint and return early
};

struct TrainProgress {
  int64_t step = 0, steps = 0;
  double loss = 0;          // this step's loss
  double loss_avg = 0;      // mean over the last log_every steps
  double steps_per_s = 0;   // over the last log_every steps
  double elapsed_s = 0;     // training time over all sessions of this run
  double eval_psnr = -1;    // when this step evaluated
  double eval_baseline_psnr = -1;
};

struct TrainResult {
  int64_t start_step = 0;  // where this call began (0, or the resumed checkpoint's step)
  int64_t step = 0;        // where it stopped
  double loss_avg = 0;     // mean loss of the last log window
  double elapsed_s = 0;
  std::vector<double> losses;  // every step's loss of this call (for tests)
};

// Trains (or resumes) per the options. Writes, under checkpoint_dir: step-NNNNNNNN/ checkpoints
// (weights, EMA and Adam moments in f32, state.json) with LATEST naming the newest,
// loss.csv (step,loss,lr,steps_per_s,elapsed_s,eval_psnr,eval_baseline_psnr) and loss.png; and the
// EMA weights as the model package `out` (config.json says how it was trained).
Result<TrainResult> Train(const TrainOptions& options,
                          const std::function<void(const TrainProgress&)>& on_progress = {});

// The learning rate of step `step` (0-based): linear warmup over `warmup` steps, then `lr`, then
// the cosine cooldown from `lr_decay_from` to `steps`.
double ScheduledLearningRate(const TrainOptions& options, int64_t step);

}  // namespace vidfarm::models
