#!/usr/bin/env bash
# Starts a vidfarm coordinator and one worker per cascade stage on 127.0.0.1, to try the cluster
# on one machine. Ctrl-C (or SIGTERM) stops them all.
#
#   deploy/local-cluster.sh                    # database in ./vidfarm-cluster/db, ports 5555/5556,
#                                              # dashboard on http://127.0.0.1:8080/
#   VIDFARM_MODELS=models/tiny deploy/local-cluster.sh
#   PORT_WORKERS=6000 PORT_API=6001 PORT_HTTP=6002 DIR=/tmp/farm deploy/local-cluster.sh
# then, in another shell:
#   export VIDFARM_COORDINATOR=tcp://127.0.0.1:5556
#   build/vidfarm submit "a red circle moving right"; build/vidfarm watch JOB; build/vidfarm fetch JOB -o out.mp4
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${VIDFARM_BIN:-$root/build/vidfarm}"
dir="${DIR:-$PWD/vidfarm-cluster}"
port_workers="${PORT_WORKERS:-5555}"
port_api="${PORT_API:-5556}"
port_http="${PORT_HTTP:-8080}"
preset="${PRESET:-tiny}"
models="${VIDFARM_MODELS:-$root/models/$preset}"
stages="${STAGES:-7}"

[[ -x "$bin" ]] || { echo "local-cluster: $bin not found; run scripts/setup.sh first" >&2; exit 1; }
mkdir -p "$dir/logs"
pids=()
stopping=0
cleanup() {
  stopping=1
  trap - INT TERM EXIT
  echo "local-cluster: stopping ${#pids[@]} processes"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# (The binary itself runs on jemalloc when it was built with it: see the README's farm benchmarks.)
"$bin" coordinator --db "$dir/db" --preset "$preset" \
  --listen "tcp://127.0.0.1:$port_workers" --api "tcp://127.0.0.1:$port_api" \
  --http "127.0.0.1:$port_http" >"$dir/logs/coordinator.log" 2>&1 &
pids+=($!)
sleep 1
kill -0 "${pids[0]}" 2>/dev/null || { cat "$dir/logs/coordinator.log" >&2; exit 1; }

names=(base tsr1 ssr2 ssr3 tsr4 tsr5 ssr6)
# Each worker gets one LibTorch thread: seven of them share the machine's cores.
for ((k = 0; k < stages; k++)); do
  model_args=()
  [[ -d "$models/${names[$k]}" ]] && model_args=(--model "$models/${names[$k]}")
  "$bin" worker --stage "$k" --preset "$preset" --connect "tcp://127.0.0.1:$port_workers" \
    --threads "${WORKER_THREADS:-1}" "${model_args[@]}" >"$dir/logs/worker$k.log" 2>&1 &
  pids+=($!)
done

echo "local-cluster: coordinator + $stages workers running (logs in $dir/logs)"
echo "  dashboard: http://127.0.0.1:$port_http/"
echo "  export VIDFARM_COORDINATOR=tcp://127.0.0.1:$port_api"
echo "  $bin submit \"a red circle moving right\""
wait -n "${pids[@]}" || true
((stopping)) || echo "local-cluster: a process exited; see $dir/logs" >&2
