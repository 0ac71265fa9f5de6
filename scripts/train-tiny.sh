#!/usr/bin/env bash
# Trains the seven `tiny` stages that ship in models/tiny/, resumably: each stage's checkpoints
# (weights, EMA, Adam state, loss.csv/png) live in training/tiny/<stage>/ and are committed, so
# rerunning this script (any time, any machine) continues where the last run stopped.
#
#   scripts/train-tiny.sh [STAGE...]      # default: every stage, in cascade order
#   VIDFARM_TRAIN_STEPS_SCALE=0.1 ...     # shorter runs (fraction of the step counts below)
#   VIDFARM_DEVICE=cuda ...               # on a GPU
#   VIDFARM_BF16=0|1 ...                  # force bf16 autocast off or on (default: auto)
#
# Runs use bf16 autocast (weights and optimizer state stay f32) on a GPU and on a CPU with bf16
# units (avx512_bf16 or amx_bf16); on a CPU without them LibTorch emulates bf16 and the runs stay
# in fp32, which is faster there. On a shared
# 2-core machine, run two stages side by side with VIDFARM_THREADS=1 each: one OpenMP team of two
# threads stalls badly whenever another process takes a core.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${VIDFARM_BIN:-$root/build/vidfarm}"
scale="${VIDFARM_TRAIN_STEPS_SCALE:-1}"
device="${VIDFARM_DEVICE:-cpu}"
bf16="${VIDFARM_BF16:-auto}"
if [[ "$bf16" == auto ]]; then
  bf16=0
  if [[ "$device" != cpu ]] || grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then
    bf16=1
  fi
fi
bf16_flag=()
[[ "$bf16" == 1 ]] && bf16_flag=(--bf16)

# SR stages: lr 1e-3 (an A/B at 400 steps of ssr2: 18.8 dB held-out PSNR against 15.9 dB at 3e-4)
# and conditioning augmentation t <= 0.15 (log-SNR >= 2.9; the tiny preset samples at 10, see
# stage_models/src/net/preset.cpp). SR stages train with the preset's cond_prior_std output (TSR:
# a guess blended between the original frames, std 0.02; SSR: bilinear, std near its RMS error);
# a checkpoint keeps its own output when resumed (the committed ssr3 run: std 0.1).
# --lr-decay-from D: from step D to the row's steps the rate falls along a half cosine to 0.1 lr.
# ship: the models/tiny/<ship> package the row writes; '-' = not shipped (the package goes to
# training/tiny/<name>/package). base-frames is an experiment, not shipped: the base run grown by
# the frame embedding (UNetConfig::frame_embedding) at its step 19000 (--init-from) and trained
# on. The shipped base predates the embedding and draws the same frames for "moving left" as for
# "moving right"; the two tries at base-frames so far (1500 and 1167 steps on a 2-core CPU) did not
# change that (scripts/base-motion-check.sh: 6 and 7 of 24 against the shipped base's 7).
# The committed ssr2, ssr3 and ssr6 ran at a constant rate (ssr2 to 3219, ssr3 to 6452, ssr6 to
# 4258), then were resumed with the cooldown below: ssr2's held-out PSNR went 31.40 -> 31.96 dB
# over its cooldown (5000 -> 6500), ssr6's 36.72 -> 36.95 (6000 -> 8000). The base ran at a
# constant rate to 13085, then was resumed with its cooldown to 19000 (mean loss over the last
# log windows 0.036 -> 0.029).
plan=(
  # name     ship  stage steps  batch lr    extra flags
  "base      base  0  19000  16  3e-4  --image-fraction 0.2 --lr-decay-from 13085"
  "base-frames -   0  22500  16  3e-4  --image-fraction 0.2 --init-from training/tiny/base --lr-decay-from 21000"
  # base-fe: the base's run again from step 0 with the frame embedding (the question the README
  # leaves open: does a base trained with it from the start read "left" and "right"?). Score it
  # along the way with `vidfarm eval --sensitivity-only --models DIR` (DIR/base ->
  # training/tiny/base-fe/package) and scripts/base-motion-check.sh DIR.
  "base-fe   -     0  19000  16  3e-4  --image-fraction 0.2 --frame-embedding on --lr-decay-from 13085"
  # base-st: the base from step 0 with the frame embedding, space-time attention
  # (UNetConfig::spacetime_attention) and rate 1e-3, the recipe that made a base read "left" and
  # "right" in the README's A/B (left/right-only data, 2400 steps: 22 of 24 renders the named way).
  # Started 2026-12-07 on one core of the 2-core CPU (0.36-0.53 steps/s beside other work); its
  # checkpoints are committed in training/tiny/base-st/, so rerunning the row continues it.
  "base-st   -     0  19000  16  1e-3  --image-fraction 0.2 --frame-embedding on --spacetime-attention on --lr-decay-from 13085"
  "tsr1      tsr1  1  8000   16  1e-3  --aug-t-max 0.15 --eval-every 500"
  "ssr2      ssr2  2  6500   8   1e-3  --aug-t-max 0.15 --image-fraction 0.2 --crop-frames 8 --eval-every 500 --lr-decay-from 5000"
  # ssr2-st: ssr2's recipe with space-time attention at its spatial-attention level (6x10), so
  # the stage sees the object's shape in every frame at once. The README's part-7 rows lose
  # consistency where ssr2 draws a rotating triangle sharp in some frames and as a blob in others.
  # Started 2026-12-07; compare with `vidfarm eval --true-base-only --models DIR` (DIR/ssr2 ->
  # training/tiny/ssr2-st/package).
  "ssr2-st   -     2  6500   8   1e-3  --aug-t-max 0.15 --image-fraction 0.2 --crop-frames 8 --eval-every 500 --lr-decay-from 5000 --spacetime-attention on"
  "ssr3      ssr3  3  8000   8   1e-3  --aug-t-max 0.15 --image-fraction 0.2 --crop-frames 8 --eval-every 500 --lr-decay-from 6452"
  "tsr4      tsr4  4  10000  8   1e-3  --aug-t-max 0.15 --crop-frames 16 --crop-h 24 --crop-w 40 --eval-every 500"
  "tsr5      tsr5  5  10000  8   1e-3  --aug-t-max 0.15 --crop-frames 16 --crop-h 24 --crop-w 40 --eval-every 500"
  # ssr6: 1e-3 to 8000 (cooldown from 6000; held-out 36.95 dB, +1.74 over bilinear, short of +2),
  # then a warm restart at half the rate, constant to 10000 and cooled down again to 12000.
  "ssr6      ssr6  6  12000  8   5e-4  --aug-t-max 0.15 --crop-frames 16 --eval-every 500 --lr-decay-from 10000"
  # The v-vs-eps comparison of `vidfarm eval` (paper Figure 13): ssr2 again at a constant rate like
  # ssr2's first 5000 steps, once eps-prediction and once v-prediction with the same plain output
  # (no skip around the conditioning, which only the v parameterisation has).
  "ssr2-eps  -     2  3000   8   1e-3  --aug-t-max 0.15 --image-fraction 0.2 --crop-frames 8 --eval-every 500 --prediction eps"
  "ssr2-v    -     2  3000   8   1e-3  --aug-t-max 0.15 --image-fraction 0.2 --crop-frames 8 --eval-every 500 --plain-output"
)
want=("$@")
cd "$root"  # --init-from and the provenance name checkpoints relative to the repository
for row in "${plan[@]}"; do
  read -r name ship stage steps batch lr extra <<<"$row"
  if [[ ${#want[@]} -gt 0 && ! " ${want[*]} " =~ " $name " ]]; then continue; fi
  steps=$(python3 -c "print(max(1, int($steps * $scale)))")
  out="$root/models/tiny/$ship"
  [[ "$ship" == - ]] && out="$root/training/tiny/$name/package"  # not shipped
  # shellcheck disable=SC2086
  "$bin" train --stage "$stage" --preset tiny --data synth --steps "$steps" --batch "$batch" \
    --lr "$lr" --warmup 200 "${bf16_flag[@]}" --device "$device" --checkpoint-every 250 --log-every 50 \
    --out "$out" --checkpoint-dir "$root/training/tiny/$name" --resume $extra
done
