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

# Another program on the port would serve the requests meant for this agent.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "run.sh: port $port on 127.0.0.1 is already in use; set CORRAL_METRICS_PORT to a free port" >&2
  exit 1
fi
# The web job publishes this port (examples/jobs.d/web.json), and
# supervisord cannot bind it while another program listens on it. Another
# port runs the jobs from a copy of examples/jobs.d whose web job publishes
# that port.
web_port=${CORRAL_WEB_PORT:-18080}
if ! [[ "$web_port" =~ ^[0-9]+$ ]] || ((web_port < 1 || web_port > 65535)); then
  echo "run.sh: CORRAL_WEB_PORT must be a TCP port number from 1 to 65535, not \"$web_port\"" >&2
  exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$web_port") 2>/dev/null; then
  echo "run.sh: port $web_port on 127.0.0.1, which the web job publishes, is already in use; set CORRAL_WEB_PORT to a free port" >&2
  exit 1
fi
jobs_dir=examples/jobs.d
if [[ "$web_port" != 18080 ]]; then
  jobs_dir=$work/jobs.d
  cp -r examples/jobs.d "$jobs_dir"
  sed -i "s/\"127\.0\.0\.1:18080\"/\"127.0.0.1:$web_port\"/" "$jobs_dir/web.json"
fi
cgroup_parent=${CORRAL_CGROUP_PARENT:-corral-example-$$}

"$bin/supervisord" --jobs-dir "$jobs_dir" --run-dir "$work/run" --data-dir "$work/data" \
  --log-dir "$work/log" --cgroup-parent "$cgroup_parent" 2>"$work/supervisord.log" &
supervisor_pid=$!
"$bin/metrics-agent" --listen "127.0.0.1:$port" --run-dir "$work/run" \
  --supervisor-socket "$work/run/supervisor.sock" 2>"$work/metrics-agent.log" &
agent_pid=$!

# The agent is ready when it still runs and its /healthz returns 200. Its
# log is printed on failure because the scratch directory goes at exit.
agent_ready=0
for _ in $(seq 100); do
  if ! kill -0 "$agent_pid" 2>/dev/null; then
    break
  fi
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
    agent_ready=1
    break
  fi
  sleep 0.1
done
if [[ $agent_ready -eq 0 ]] || ! kill -0 "$agent_pid" 2>/dev/null; then
  echo "run.sh: metrics-agent did not start serving on 127.0.0.1:$port; its log:" >&2
  cat "$work/metrics-agent.log" >&2
  exit 1
fi

ctl() { "$bin/supervisorctl" --socket "$work/run/supervisor.sock" "$@"; }
for _ in $(seq 50); do
  [[ -S "$work/run/supervisor.sock" ]] && break
  sleep 0.1
done
if [[ ! -S "$work/run/supervisor.sock" ]]; then
  echo "run.sh: supervisord did not create its socket within 5 s; its log:" >&2
  cat "$work/supervisord.log" >&2
  exit 1
fi
# Let the jobs start and the agent take its first samples.
sleep 4

echo "== supervisorctl status"
ctl status || true
echo
echo "== http://127.0.0.1:$web_port/, relayed to port 8080 inside the web job"
curl -sS -o /dev/null -w 'HTTP %{http_code}, %{size_download} bytes\n' "http://127.0.0.1:$web_port/" || true
echo
echo "== part of http://127.0.0.1:$port/metrics"
curl -fsS "http://127.0.0.1:$port/metrics" |
  grep -E '^container_(memory_usage_bytes|cpu_usage_seconds_total|processes|spec_memory_limit_bytes)\{' | head -n 12 || true
echo
# memory-hog allocates after 3 s and is OOM-killed then. A loaded machine
# takes longer, so wait up to 30 s for the kill to show.
for _ in $(seq 60); do
  ctl status --json memory-hog 2>/dev/null | grep -Eq '"oom_kills": [1-9]' && break
  sleep 0.5
done
echo "== OOM kills of memory-hog so far"
ctl status memory-hog || true
# The table shows the last exit only until the restart, but the count stays.
ctl status --json memory-hog 2>/dev/null | sed -nE 's/.*"oom_kills": ([0-9]+).*/oom_kills: \1/p' || true

if [[ $once -eq 1 ]]; then
  exit 0
fi
echo
echo "Logs: $work/log. Try: $bin/supervisorctl --socket $work/run/supervisor.sock status"
echo "Press Ctrl-C to stop every job and clean up."
while kill -0 "$supervisor_pid" 2>/dev/null; do sleep 1; done
