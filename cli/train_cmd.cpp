// `vidfarm train --stage K`: trains one cascade stage into a model package, resumably.
#include <fmt/format.h>
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include "commands.h"
#include "flags.h"
#include "vidfarm/common/log.h"
#include "vidfarm/stage_models/stage_runner.h"
#include "vidfarm/stage_models/train.h"

namespace vidfarm::cli {
namespace {

std::atomic<bool> g_stop{false};

extern "C" void OnStopSignal(int) { g_stop.store(true); }

std::string Duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const auto s = static_cast<int64_t>(seconds);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace

int RunTrain(const std::vector<std::string>& args) {
  models::TrainOptions o;
  int64_t stage = 0, threads = 0;
  std::string device = "cpu", prediction = "v", frame_embedding = "preset", spacetime = "preset";
  uint64_t seed = 1;
  FlagSet flags(
      "vidfarm train --stage K --out PKG [--preset tiny] [--data synth|DIR] [--steps N] "
      "[--resume] [flags]",
      "Trains stage K of a cascade preset and writes its model package (config.json with the\n"
      "training provenance + fp16 EMA weights) to --out at every checkpoint and at the end.\n"
      "Loss: v-prediction MSE (or --prediction eps) on the cosine log-SNR schedule; 10% of\n"
      "captions dropped for classifier-free guidance; SR stages see their conditioning video\n"
      "noise-augmented at random levels; base and SSR stages can mix in image examples\n"
      "(--image-fraction) with temporal layers masked; the fully convolutional stage trains on\n"
      "random crops. Adam with an EMA of the weights.\n"
      "\n"
      "Checkpoints (weights, EMA, Adam moments, step) go to --checkpoint-dir (default\n"
      "PKG.ckpt) every --checkpoint-every steps and when the run is interrupted (Ctrl-C /\n"
      "SIGTERM). --resume continues from the latest one computing exactly the same steps (every\n"
      "random draw is keyed by seed and step); after kill -9 only the steps since the last\n"
      "checkpoint are redone. The checkpoint dir also gets loss.csv and loss.png (and, with\n"
      "--eval-every, held-out PSNR in the CSV and psnr.png).");
  flags.Int("stage", 's', &stage, "cascade stage index (0 = base ... 6)");
  flags.String("preset", 0, &o.preset, "cascade preset: tiny | paper");
  flags.String("data", 0, &o.data,
               "'synth' (the procedural synthetic world) or a directory of videos with "
               "captions.jsonl / captions.csv");
  flags.Int("steps", 'n', &o.steps, "total optimizer steps to reach");
  flags.String("out", 'o', &o.out, "model package directory to write");
  flags.String("checkpoint-dir", 0, &o.checkpoint_dir, "checkpoints (default: OUT.ckpt)");
  flags.Bool("resume", 0, &o.resume, "continue from the latest checkpoint (fresh if none)");
  flags.String("init-from", 0, &o.init_from,
               "a fresh run starts from this other run's latest checkpoint (its step, weights, "
               "EMA, Adam state, loss log); layers the network gained since (the base's frame "
               "embedding) start at zero");
  flags.Int("batch", 'b', &o.batch, "examples per step");
  flags.Double("lr", 0, &o.lr, "Adam learning rate (after linear warmup)");
  flags.Int("warmup", 0, &o.warmup, "warmup steps");
  flags.Int("lr-decay-from", 0, &o.lr_decay_from,
            "cooldown: from this step to --steps the rate falls (half cosine) to lr x --lr-final "
            "(-1 = constant rate)");
  flags.Double("lr-final", 0, &o.lr_final, "the cooldown's last rate as a fraction of --lr");
  flags.Double("ema-decay", 0, &o.ema_decay, "EMA decay of the packaged weights");
  flags.Double("grad-clip", 0, &o.grad_clip, "global gradient-norm clip (0 = off)");
  flags.Double("cond-dropout", 0, &o.cond_dropout, "share of captions dropped (for CFG)");
  flags.Double("image-fraction", 0, &o.image_fraction,
               "share of image examples (base and SSR stages)");
  flags.Double("aug-t-max", 0, &o.aug_t_max,
               "SR: conditioning augmentation time drawn from U(0, this)");
  flags.String("prediction", 0, &prediction, "v | eps");
  flags.Double("cond-prior-std", 0, &o.cond_prior_std,
               "SR stages: the std of the output's prior around the conditioning (0 = the older "
               "cond_skip offset; negative = the preset's, or the checkpoint's on --resume)");
  flags.Bool("plain-output", 0, &o.plain_output,
             "SR stages: no output skip (cond_skip / cond_prior_std): the network predicts v "
             "itself, like an eps run's network (for a like-for-like v-vs-eps comparison)");
  flags.String("frame-embedding", 0, &frame_embedding,
               "base: preset | on | off — the per-frame embedding (UNetConfig::frame_embedding); "
               "a resumed run keeps its checkpoint's");
  flags.String("spacetime-attention", 0, &spacetime,
               "preset | on | off — spatial attention over all frames at once "
               "(UNetConfig::spacetime_attention; stages with spatial attention); a resumed run "
               "keeps its checkpoint's");
  flags.Int("crop-frames", 0, &o.crop_frames, "random temporal crop length (0 = whole clip)");
  flags.Int("crop-h", 0, &o.crop_h, "random crop height (0 = the stage's default)");
  flags.Int("crop-w", 0, &o.crop_w, "random crop width (0 = the stage's default)");
  flags.Int("checkpoint-every", 0, &o.checkpoint_every, "steps between checkpoints");
  flags.Int("log-every", 0, &o.log_every, "steps between progress lines");
  flags.Int("eval-every", 0, &o.eval_every, "steps between held-out PSNR evaluations (0 = off)");
  flags.Int("eval-examples", 0, &o.eval_examples, "held-out examples per evaluation");
  flags.Uint64("seed", 0, &seed, "seed of the data stream and of every random draw");
  flags.String("device", 0, &device, "cpu | cuda | cuda:N");
  flags.Bool("bf16", 0, &o.bf16, "autocast matmuls and convolutions to bfloat16");
  flags.Int("threads", 't', &threads, "CPU threads for LibTorch (0 = all cores)");
  std::vector<std::string> positional;
  if (int rc = ParseOrExit(flags, args, "train", &positional, 0, 0); rc >= 0) return rc;
  if (o.out.empty()) return Fail("train", "--out PKG is required", 2);
  if (prediction != "v" && prediction != "eps") {
    return Fail("train", "--prediction must be v or eps", 2);
  }
  // preset | on | off -> -1 | 1 | 0; -2 = neither.
  auto tristate = [](const std::string& v) {
    return v == "preset" ? -1 : v == "on" ? 1 : v == "off" ? 0 : -2;
  };
  o.frame_embedding = tristate(frame_embedding);
  if (o.frame_embedding == -2) {
    return Fail("train", "--frame-embedding must be preset, on or off", 2);
  }
  o.spacetime_attention = tristate(spacetime);
  if (o.spacetime_attention == -2) {
    return Fail("train", "--spacetime-attention must be preset, on or off", 2);
  }
  o.prediction = prediction == "v" ? models::Parameterization::kV : models::Parameterization::kEps;
  o.stage = static_cast<int>(stage);
  o.seed = seed;
  auto dev = models::ParseDevice(device);
  if (!dev.ok()) return Fail("train", dev.status().message(), 2);
  o.device = *dev;
  if (o.bf16) WarnIfBf16Emulated("train --bf16", o.device.is_cpu());
  SetThreads(threads);
  g_stop.store(false);
  o.stop = &g_stop;
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);

  std::fprintf(stderr, "training %s stage %d to %s (%s, batch %lld, %d threads, %s)\n",
               o.preset.c_str(), o.stage, o.out.c_str(), o.data.c_str(),
               static_cast<long long>(o.batch), torch::get_num_threads(), dev->str().c_str());
  auto result = models::Train(o, [&](const models::TrainProgress& p) {
    const double eta =
        p.steps_per_s > 0 ? static_cast<double>(p.steps - p.step) / p.steps_per_s : -1;
    std::string eval;
    if (p.eval_psnr >= 0) {
      eval = fmt::format("  held-out PSNR {:.2f} dB", p.eval_psnr);
      if (p.eval_baseline_psnr >= 0) eval += fmt::format(" (naive {:.2f})", p.eval_baseline_psnr);
    }
    std::fprintf(stderr, "step %lld/%lld  loss %.5f  %.2f steps/s  elapsed %s  eta %s%s\n",
                 static_cast<long long>(p.step), static_cast<long long>(p.steps), p.loss_avg,
                 p.steps_per_s, Duration(p.elapsed_s).c_str(), Duration(eta).c_str(), eval.c_str());
  });
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (!result.ok()) return Fail("train", result.status().ToString());
  if (result->step < o.steps) {
    std::fprintf(stderr, "stopped at step %lld of %lld; checkpoint saved: rerun with --resume\n",
                 static_cast<long long>(result->step), static_cast<long long>(o.steps));
    return 130;
  }
  std::fprintf(stderr, "done: %lld steps, loss %.5f, %s in all; package %s\n",
               static_cast<long long>(result->step), result->loss_avg,
               Duration(result->elapsed_s).c_str(), o.out.c_str());
  return 0;
}

}  // namespace vidfarm::cli
