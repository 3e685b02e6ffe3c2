#!/usr/bin/env bash
# Builds corral, starts supervisord on examples/jobs.d and the metrics agent
# in a scratch directory, and shows `supervisorctl status` and part of
# /metrics. Runs until Ctrl-C, then stops every job and removes the scratch
# directory. With --once it stops after showing the output.
set -euo pipefail

once=0
[[ "${1:-}" == "--once" ]] && once=1
if [[ $EUID -ne 0 ]]; then
  echo "run.sh: corral needs root for namespaces, cgroups and overlayfs; rerun with sudo" >&2
  exit 1
fi

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
cargo build --release --bins --quiet
bin=$top/target/release

work=$(mktemp -d /tmp/corral-example.XXXXXX)
port=${CORRAL_METRICS_PORT:-9102}
supervisor_pid=""
agent_pid=""

stop_all() {
  [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  if [[ -n "$supervisor_pid" ]]; then
    kill -TERM "$supervisor_pid" 2>/dev/null || true
    wait "$supervisor_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 0' INT TERM

"$bin/supervisord" --jobs-dir examples/jobs.d --run-dir "$work/run" --data-dir "$work/data" \
  --log-dir "$work/log" --cgroup-parent "corral-example-$$" 2>"$work/supervisord.log" &
supervisor_pid=$!
"$bin/metrics-agent" --listen "127.0.0.1:$port" --run-dir "$work/run" \
  --supervisor-socket "$work/run/supervisor.sock" 2>"$work/metrics-agent.log" &
agent_pid=$!

ctl() { "$bin/supervisorctl" --socket "$work/run/supervisor.sock" "$@"; }
for _ in $(seq 50); do
  [[ -S "$work/run/supervisor.sock" ]] && break
  sleep 0.1
done
sleep 4

echo "== supervisorctl status"
ctl status || true
echo
echo "== part of http://127.0.0.1:$port/metrics"
curl -fsS "http://127.0.0.1:$port/metrics" |
  grep -E '^container_(memory_usage_bytes|cpu_usage_seconds_total|processes|spec_memory_limit_bytes)\{' | head -n 12 || true
echo
echo "== OOM kills of memory-hog so far"
ctl status memory-hog || true

if [[ $once -eq 1 ]]; then
  exit 0
fi
echo
echo "Logs: $work/log. Try: $bin/supervisorctl --socket $work/run/supervisor.sock status"
echo "Press Ctrl-C to stop every job and clean up."
while kill -0 "$supervisor_pid" 2>/dev/null; do sleep 1; done
