#!/usr/bin/env bash
# Does the base stage draw the motion the prompt asks for? Renders 24 prompts through the base
# stage alone (6 motions that come in time-reversed pairs: left/right, up/down, growing/shrinking;
# 4 colour/shape/seed choices each), reads each 8x12x20 clip back with `vidfarm analyze`, and
# counts the motions read right. A base that cannot tell a clip from its reversal scores about
# what chance among the analyzer's motions gives.
#
#   scripts/base-motion-check.sh [MODELS_DIR]     # default: models/tiny
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${VIDFARM_BIN:-$root/build/vidfarm}"
models="${1:-$root/models/tiny}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ok=0
n=0
for motion in "moving left" "moving right" "moving up" "moving down" "growing" "shrinking"; do
  for pick in "red circle:1" "blue square:2" "green circle:3" "yellow square:4"; do
    prompt="a ${pick%%:*} $motion"
    "$bin" render "$prompt" --models "$models" --direct --last-stage 0 -q -s "${pick##*:}" \
      -o "$tmp/clip.mp4" >/dev/null
    got=$("$bin" analyze "$tmp/clip.mp4" --json |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["motion"])')
    n=$((n + 1))
    [[ "$got" == "$motion" ]] && ok=$((ok + 1))
    printf '%-30s -> %s\n' "$prompt" "$got"
  done
done
echo "motion read right: $ok of $n"
