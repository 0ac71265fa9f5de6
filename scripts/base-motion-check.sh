#!/usr/bin/env bash
# Does the base stage draw the motion the prompt asks for? Renders 24 prompts through the base
# stage alone (6 motions that come in time-reversed pairs: left/right, up/down, growing/shrinking;
# 4 colour/shape/seed choices each), reads each 8x12x20 clip back with `vidfarm analyze`, and
# counts the motions read right. A base that cannot tell a clip from its reversal scores about
# what chance among the analyzer's motions gives.
#
#   scripts/base-motion-check.sh [MODELS_DIR [MOTION...]]   # default: models/tiny, the six above
#   VIDFARM_CHECK_SEEDS=3 scripts/base-motion-check.sh DIR "moving left" "moving right"
#                                   # 3 seeds per colour/shape: 24 prompts of left and right
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${VIDFARM_BIN:-$root/build/vidfarm}"
models="${1:-$root/models/tiny}"
motions=("moving left" "moving right" "moving up" "moving down" "growing" "shrinking")
[[ $# -gt 1 ]] && motions=("${@:2}")
seeds="${VIDFARM_CHECK_SEEDS:-1}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ok=0
n=0
declare -A read_as
for motion in "${motions[@]}"; do
  for pick in "red circle:1" "blue square:2" "green circle:3" "yellow square:4"; do
    for ((j = 0; j < seeds; j++)); do
      prompt="a ${pick%%:*} $motion"
      seed=$((${pick##*:} + 10 * j))
      "$bin" render "$prompt" --models "$models" --direct --last-stage 0 -q -s "$seed" \
        -o "$tmp/clip.mp4" >/dev/null
      got=$("$bin" analyze "$tmp/clip.mp4" --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["motion"])')
      n=$((n + 1))
      [[ "$got" == "$motion" ]] && ok=$((ok + 1))
      read_as[$got]=$((${read_as[$got]:-0} + 1))
      printf '%-30s seed %-3s -> %s\n' "$prompt" "$seed" "$got"
    done
  done
done
printf 'read as:'
for k in "${!read_as[@]}"; do printf ' %s %s;' "$k" "${read_as[$k]}"; done
echo
echo "motion read right: $ok of $n"
