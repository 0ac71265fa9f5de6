#!/usr/bin/env bash
# Installs vidfarm's build dependencies from Debian's packages (only what is missing) and builds.
# Idempotent: a second run installs nothing and rebuilds only what changed.
#
#   scripts/setup.sh                # install + build into ./build
#   BUILD_DIR=out scripts/setup.sh  # another build dir
#   Torch_DIR=/opt/libtorch/share/cmake/Torch scripts/setup.sh   # another LibTorch (e.g. CUDA)
#   VIDFARM_SKIP_APT=1 scripts/setup.sh                          # build only
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread
  libzmq3-dev cppzmq-dev librocksdb-dev libjemalloc-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg
  libfmt-dev libboost-dev nlohmann-json3-dev libgtest-dev
)

if [[ -z "${VIDFARM_SKIP_APT:-}" ]]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "setup: all Debian packages present"
  fi
fi

cmake_args=(-S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release)
[[ -n "${Torch_DIR:-}" ]] && cmake_args+=(-DTorch_DIR="$Torch_DIR")
cmake "${cmake_args[@]}" >/dev/null
jobs="${VIDFARM_BUILD_JOBS:-$(nproc)}"
cmake --build "$build_dir" -j "$jobs"
echo "setup: built $build_dir/vidfarm"
