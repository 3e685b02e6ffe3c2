#!/usr/bin/env python3
"""Measure how fast corral-monitor copies a job's output into its log.

For each build directory given with --bin-dir and each round, the script
starts that build's supervisord with one job that runs
`dd if=/dev/zero bs=64k` into its stdout. Once the job has exited, it
reads the rate that dd reports on its stderr. dd blocks while the pipe
is full, so its rate is the rate at which the monitor drains the pipe into
the log. The script also checks that every byte reached the log files: a
monitor that falls behind for longer than its patience drops output, and
such a round is reported as failed.

The builds alternate within each round, so a slow phase of the machine
hits both. Run as root from the workspace:

    sudo bench/supervisor/logs.py --bin-dir target/release --bin-dir /tmp/other/release

Every daemon is stopped by its PID; the script removes its temporary
directories and cgroups, also when a measurement fails.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the sibling benchmark's helpers)

BLOCK = 64 * 1024


def log_bytes(log_dir, name, stream):
    """Total size of a job's log of `stream` and its rotated generations."""
    directory = os.path.join(log_dir, name)
    total = 0
    for entry in os.listdir(directory):
        if entry == f"{stream}.log" or entry.startswith(f"{stream}.log."):
            total += os.path.getsize(os.path.join(directory, entry))
    return total


def measure(bin_dir, mib, scratch, label, timeout):
    blocks = mib * 1024 * 1024 // BLOCK
    job = {
        "image": "host",
        "command": ["/bin/dd", "if=/dev/zero", f"bs={BLOCK}", f"count={blocks}"],
        "start_seconds": "0s",
        "restart": {"policy": "never"},
        # Rotations at 1G keep every byte written.
        "logs": {"max_size": "1G", "keep": mib // 1024 + 1},
    }
    bench.CorralDaemon.bin_dir = bin_dir
    daemon = bench.CorralDaemon({"writer": job}, scratch, label)
    load_at_start = bench.load_average()
    try:
        daemon.start()
        started = time.monotonic()
        while True:
            states = daemon.states()
            if states == ["EXITED"]:
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the job did not exit within {timeout}s: {states}")
            if daemon.process.poll() is not None:
                raise RuntimeError(f"supervisord exited with {daemon.process.returncode}")
            time.sleep(0.1)
        log_dir = os.path.join(daemon.dir, "log")
        with open(os.path.join(log_dir, "writer", "stderr.log")) as stderr:
            report = stderr.read()
        match = re.search(r"(\d+) bytes .* copied, ([0-9.]+) s", report)
        if not match:
            raise RuntimeError(f"no dd summary in the stderr log: {report[-300:]!r}")
        copied, seconds = int(match.group(1)), float(match.group(2))
        logged = log_bytes(log_dir, "writer", "stdout")
        if logged != copied:
            raise RuntimeError(f"{copied - logged} of {copied} bytes missing from the log")
        daemon.process.send_signal(signal.SIGTERM)
        if bench.wait_exit(daemon.process, timeout) != 0:
            raise RuntimeError("supervisord did not exit cleanly after SIGTERM")
        return {
            "bin_dir": bin_dir,
            "mib": mib,
            "seconds": seconds,
            "mib_per_s": copied / 2**20 / seconds,
            "load_average_at_start": load_at_start,
        }
    finally:
        daemon.clean_up()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bin-dir",
        action="append",
        help="directory of a build's binaries; repeat to compare builds (default: target/release)",
    )
    parser.add_argument("--mib", type=int, default=4096, help="MiB that the job writes")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per build")
    parser.add_argument("--timeout", type=int, default=300, help="seconds before a round fails")
    parser.add_argument("--output", help="write the results as JSON to this file")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("logs.py: containers need root: rerun with sudo")
    bin_dirs = [os.path.abspath(path) for path in options.bin_dir or [bench.CorralDaemon.bin_dir]]

    scratch = tempfile.mkdtemp(prefix="supervisor-logs-bench-")
    results = []
    report = {"machine": bench.machine(), "command": " ".join(sys.argv), "results": results}
    try:
        for round_number in range(options.rounds):
            order = bin_dirs if round_number % 2 == 0 else list(reversed(bin_dirs))
            for index, bin_dir in enumerate(order):
                label = f"logs-{round_number}-{index}"
                result = measure(bin_dir, options.mib, scratch, label, options.timeout)
                result["round"] = round_number
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", scratch])
        if options.output:
            with open(options.output, "w") as file:
                json.dump(report, file, indent=2)
    for bin_dir in bin_dirs:
        rates = [result["mib_per_s"] for result in results if result["bin_dir"] == bin_dir]
        print(f"{bin_dir}: median {statistics.median(rates):.0f} MiB/s, "
              f"range {min(rates):.0f} to {max(rates):.0f} MiB/s over {len(rates)} rounds")


if __name__ == "__main__":
    main()
