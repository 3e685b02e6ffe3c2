#!/usr/bin/env python3
"""Scrape cost of metrics-agent at 10 to 1000 containers.

For each size the script sets up the containers, starts the agent on a free
loopback port, warms it up and then scrapes it back to back. It reports the
scrape latency (median, 90th percentile and maximum), the response size, the
agent's CPU time per scrape, its RSS and its thread count.

Two kinds of containers are measured:

- `cgroup`: one real cgroup per container below this process's own cgroup on
  every v1 controller the agent reads, or in the unified hierarchy on v2.
  Each holds one `sleep` in a network namespace of its own, and a state file
  in a temporary run directory points at them. The agent reads the same files
  as for a real container, at sizes a small machine can hold.
- `corral`: real containers, one `sleep` job per container under a
  supervisord started for the run, up to --max-real containers.

With --node-exporter the same measurement runs once against node_exporter
for a reference figure. Every process the script starts is stopped by PID and
every cgroup it creates is removed, also when a step fails.

Run as root: `bench/agent/run` builds the release binaries and calls this.
"""

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

V1_CONTROLLERS = ["cpu", "cpuacct", "memory", "blkio", "pids"]
CGROUP_ROOT = Path("/sys/fs/cgroup")


def is_cgroup_v2():
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def own_cgroup_paths():
    """Maps each controller (or "" for the unified hierarchy) to the cgroup
    path of this process, from /proc/self/cgroup."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            paths[""] = path
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


class CgroupSet:
    """Cgroups named NAME below this process's own cgroup, one per v1
    controller the agent reads, or one in the unified hierarchy on v2."""

    def __init__(self, name):
        own = own_cgroup_paths()
        if is_cgroup_v2():
            self.dirs = {"": CGROUP_ROOT / own[""].lstrip("/") / name}
            self.id = str(Path(own[""]) / name)
        else:
            self.dirs = {
                controller: CGROUP_ROOT / controller / own[controller].lstrip("/") / name
                for controller in V1_CONTROLLERS
            }
            self.id = str(Path(own["memory"]) / name)
        self.created = []
        try:
            for directory in self.dirs.values():
                directory.mkdir()
                self.created.append(directory)
        except BaseException:
            self.remove()
            raise

    def add_process(self, pid):
        for directory in self.dirs.values():
            (directory / "cgroup.procs").write_text(str(pid))

    def state_paths(self):
        if "" in self.dirs:
            return {"version": "v2", "path": str(self.dirs[""])}
        return {
            "version": "v1",
            "controllers": {name: str(path) for name, path in self.dirs.items()},
        }

    def remove(self):
        for directory in reversed(self.created):
            for _ in range(250):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # The killed process leaves the cgroup once it is reaped.
                    time.sleep(0.02)
            else:
                print(f"failed to remove cgroup {directory}", file=sys.stderr)
        self.created = []


class CgroupContainers:
    """`count` cgroup containers with a sleeping process and a state file
    each, in `run_dir/containers`."""

    def __init__(self, count, run_dir):
        self.processes = []
        self.cgroups = []
        containers = run_dir / "containers"
        containers.mkdir(parents=True)
        prefix = f"bench-agent-{os.getpid()}"
        try:
            for index in range(count):
                container_id = f"{prefix}-{index:04d}"
                cgroup = CgroupSet(container_id)
                self.cgroups.append(cgroup)
                process = subprocess.Popen(
                    ["unshare", "--net", "sleep", "3600"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                self.processes.append(process)
                cgroup.add_process(process.pid)
                state = {
                    "ociVersion": "1.2.0",
                    "id": container_id,
                    "status": "running",
                    "pid": process.pid,
                    "bundle": str(run_dir / "bundles" / container_id),
                    "created": time.time(),
                    "cgroupId": cgroup.id,
                    "cgroupPaths": cgroup.state_paths(),
                    "job": f"job-{index:04d}",
                    "image": "host",
                    "labels": {"bench": "agent"},
                    "rootfs": "/",
                }
                directory = containers / container_id
                directory.mkdir()
                (directory / "state.json").write_text(json.dumps(state))
        except BaseException:
            self.close()
            raise

    def close(self):
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        for process in self.processes:
            process.wait()
        self.processes = []
        for cgroup in self.cgroups:
            cgroup.remove()
        self.cgroups = []


class Supervisord:
    """A supervisord with `count` sleep jobs in a scratch directory."""

    def __init__(self, count, scratch, binaries):
        self.scratch = scratch
        self.binaries = binaries
        self.run_dir = scratch / "run"
        self.cgroup_parent = f"bench-agent-supervisord-{os.getpid()}"
        jobs = scratch / "jobs.d"
        jobs.mkdir()
        job = {
            "image": "host",
            "command": ["/bin/sleep", "3600"],
            "network": "loopback",
            "resources": {"memory": "16M", "pids": 8},
            "restart": {"policy": "never"},
            "stop": {"timeout": "2s"},
            "labels": {"bench": "agent"},
        }
        for index in range(count):
            (jobs / f"sleep-{index:04d}.json").write_text(json.dumps(job))
        self.log = open(scratch / "supervisord.log", "wb")
        self.process = subprocess.Popen(
            [
                str(binaries / "supervisord"),
                "--jobs-dir", str(jobs),
                "--run-dir", str(self.run_dir),
                "--data-dir", str(scratch / "data"),
                "--log-dir", str(scratch / "log"),
                "--cgroup-parent", self.cgroup_parent,
                "--runtime", str(binaries / "corral"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        try:
            self.wait_running(count)
        except BaseException:
            self.close()
            raise

    def wait_running(self, count):
        deadline = time.monotonic() + 60 + count * 0.5
        socket_path = self.run_dir / "supervisor.sock"
        while time.monotonic() < deadline:
            if socket_path.exists():
                status = subprocess.run(
                    [str(self.binaries / "supervisorctl"), "--socket", str(socket_path), "status"],
                    capture_output=True,
                )
                running = status.stdout.decode().count(" RUNNING ")
                if status.returncode == 0 and running == count:
                    return
            time.sleep(0.5)
        raise RuntimeError(
            f"supervisord did not report {count} jobs RUNNING in time; "
            f"see {self.scratch / 'supervisord.log'}"
        )

    def close(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        remove_cgroup_trees(self.cgroup_parent)


def remove_cgroup_trees(name):
    """Removes the cgroups named `name` that supervisord created below this
    process's cgroup, with whatever is left below them."""
    own = own_cgroup_paths()
    roots = (
        [CGROUP_ROOT / own[""].lstrip("/") / name]
        if is_cgroup_v2()
        else [
            CGROUP_ROOT / controller / own[controller].lstrip("/") / name
            for controller in ["cpu", "cpuacct", "memory", "blkio", "pids", "cpuset", "freezer", "devices"]
            if controller in own
        ]
    )
    for root in roots:
        if not root.is_dir():
            continue
        for directory in sorted(root.rglob("*"), key=lambda path: -len(path.parts)):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


class Accounting:
    """A cpuacct and a memory cgroup (or one v2 cgroup) below this process's
    own, holding the measured exporter. Its CPU time is then exact and
    includes threads that have already exited. The kernel memory charged to
    it, such as the buffers of the files it keeps open, can be read too."""

    def __init__(self, name):
        own = own_cgroup_paths()
        if is_cgroup_v2():
            self.dir = CGROUP_ROOT / own[""].lstrip("/") / name
            self.memory_dir = self.dir
        else:
            self.dir = CGROUP_ROOT / "cpuacct" / own["cpuacct"].lstrip("/") / name
            self.memory_dir = CGROUP_ROOT / "memory" / own["memory"].lstrip("/") / name
        self.dir.mkdir()
        if self.memory_dir != self.dir:
            try:
                self.memory_dir.mkdir()
            except BaseException:
                self.remove()
                raise

    def add(self, pid):
        (self.dir / "cgroup.procs").write_text(str(pid))
        if self.memory_dir != self.dir:
            (self.memory_dir / "cgroup.procs").write_text(str(pid))

    def kernel_memory_mib(self):
        """Kernel memory charged to the exporter since it joined the cgroup,
        or None when the kernel does not account it here."""
        if is_cgroup_v2():
            stat = self.memory_dir / "memory.stat"
            if not stat.exists():
                return None
            for line in stat.read_text().splitlines():
                key, value = line.split()
                if key == "kernel":
                    return int(value) / 2**20
            return None
        kmem = self.memory_dir / "memory.kmem.usage_in_bytes"
        return int(kmem.read_text()) / 2**20 if kmem.exists() else None

    def cpu_seconds(self):
        if is_cgroup_v2():
            for line in (self.dir / "cpu.stat").read_text().splitlines():
                key, value = line.split()
                if key == "usage_usec":
                    return int(value) / 1e6
            raise RuntimeError(f"no usage_usec in {self.dir / 'cpu.stat'}")
        return int((self.dir / "cpuacct.usage").read_text()) / 1e9

    def remove(self):
        directories = [self.dir] if self.memory_dir == self.dir else [self.dir, self.memory_dir]
        for directory in directories:
            for _ in range(250):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                print(f"failed to remove cgroup {directory}", file=sys.stderr)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Exporter:
    """An exporter process on loopback, in its own accounting cgroup."""

    def __init__(self, label, argv_for_address, health_path, scratch):
        self.label = label
        self.address = f"127.0.0.1:{free_port()}"
        self.log = open(scratch / f"{label}.log", "wb")
        self.accounting = Accounting(f"bench-agent-{label}-{os.getpid()}")
        try:
            self.process = subprocess.Popen(
                argv_for_address(self.address),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
            )
        except BaseException:
            self.accounting.remove()
            raise
        try:
            self.accounting.add(self.process.pid)
            deadline = time.monotonic() + 20
            while not self.returns_ok(health_path):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"{label} did not return 200 for {health_path} on {self.address}")
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def returns_ok(self, path):
        try:
            status, _ = get(self.address, path)
            return status == 200
        except OSError:
            return False

    def status(self, key):
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return line.split()[1]
        raise RuntimeError(f"no {key} in /proc/{self.process.pid}/status")

    def close(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        self.accounting.remove()


def get(address, path):
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def measure(exporter, scrapes, warmup):
    """Scrapes `exporter` back to back and returns the figures."""
    for _ in range(warmup):
        status, _ = get(exporter.address, "/metrics")
        if status != 200:
            raise RuntimeError(f"{exporter.label} returned status {status} during the warm-up")

    host, port = exporter.address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    latencies = []
    sizes = []
    cpu_before = exporter.accounting.cpu_seconds()
    try:
        for _ in range(scrapes):
            started = time.perf_counter()
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            body = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"{exporter.label} returned status {response.status}")
            sizes.append(len(body))
    finally:
        connection.close()
    cpu = exporter.accounting.cpu_seconds() - cpu_before

    latencies.sort()
    samples = sum(
        1 for line in body.decode().splitlines() if line and not line.startswith("#")
    )
    return {
        "latency_min_ms": latencies[0] * 1e3,
        "latency_median_ms": statistics.median(latencies) * 1e3,
        "latency_p90_ms": latencies[int(len(latencies) * 0.9) - 1] * 1e3,
        "latency_max_ms": latencies[-1] * 1e3,
        "bytes": int(statistics.median(sizes)),
        "samples": samples,
        "cpu_ms_per_scrape": cpu / scrapes * 1e3,
        "rss_mib": int(exporter.status("VmRSS")) / 1024,
        "peak_rss_mib": int(exporter.status("VmHWM")) / 1024,
        "threads": int(exporter.status("Threads")),
        "descriptors": len(os.listdir(f"/proc/{exporter.process.pid}/fd")),
        "kernel_memory_mib": exporter.accounting.kernel_memory_mib(),
        "load": os.getloadavg()[0],
        "last_body": body.decode(),
    }


def agent_argv(binary, run_dir):
    return lambda address: [str(binary), "--listen", address, "--run-dir", str(run_dir)]


def exported_containers(text):
    for line in text.splitlines():
        if line.startswith("metrics_agent_containers "):
            return int(float(line.split()[1]))
    raise RuntimeError("no metrics_agent_containers sample in the scrape")


def run_agent(binaries, run_dir, count, arguments, scratch, kind):
    agent = Exporter(f"agent-{kind}-{count}", agent_argv(binaries / "metrics-agent", run_dir), "/healthz", scratch)
    try:
        result = measure(agent, arguments.scrapes, arguments.warmup)
    finally:
        agent.close()
    exported = exported_containers(result.pop("last_body"))
    if exported != count:
        raise RuntimeError(f"the agent exported {exported} of {count} {kind} containers")
    return {"exporter": "metrics-agent", "kind": kind, "containers": count, **result}


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "cgroup": "v2" if is_cgroup_v2() else "v1 (hybrid)",
    }


def node_exporter_version(binary):
    output = subprocess.run([binary, "--version"], capture_output=True, text=True)
    text = (output.stdout + output.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binaries", type=Path, required=True,
                        help="directory with metrics-agent, supervisord, supervisorctl and corral")
    parser.add_argument("--sizes", default="10,100,500,1000",
                        help="comma-separated container counts (default: 10,100,500,1000)")
    parser.add_argument("--max-real", type=int, default=100,
                        help="largest count measured with real corral containers too (default: 100)")
    parser.add_argument("--scrapes", type=int, default=100,
                        help="measured scrapes per size (default: 100)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="scrapes before measuring (default: 5)")
    parser.add_argument("--node-exporter", default="",
                        help="node_exporter binary to measure as a reference")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py: needs root to create cgroups and run containers")

    sizes = [int(size) for size in arguments.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-agent-") as scratch_name:
        scratch = Path(scratch_name)
        for count in sizes:
            run_dir = scratch / f"cgroup-{count}"
            containers = CgroupContainers(count, run_dir)
            try:
                results.append(run_agent(arguments.binaries, run_dir, count, arguments, scratch, "cgroup"))
            finally:
                containers.close()
            print(json.dumps(results[-1]), file=sys.stderr)

            if count <= arguments.max_real:
                directory = scratch / f"corral-{count}"
                directory.mkdir()
                supervisord = Supervisord(count, directory, arguments.binaries)
                try:
                    results.append(run_agent(arguments.binaries, supervisord.run_dir, count,
                                             arguments, scratch, "corral"))
                finally:
                    supervisord.close()
                print(json.dumps(results[-1]), file=sys.stderr)

        if arguments.node_exporter:
            exporter = Exporter(
                "node-exporter",
                lambda address: [arguments.node_exporter, f"--web.listen-address={address}"],
                "/metrics",
                scratch,
            )
            try:
                result = measure(exporter, arguments.scrapes, arguments.warmup)
            finally:
                exporter.close()
            result.pop("last_body")
            results.append({
                "exporter": node_exporter_version(arguments.node_exporter),
                "kind": "host",
                "containers": 0,
                **result,
            })
            print(json.dumps(results[-1]), file=sys.stderr)

    report = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "scrapes": arguments.scrapes,
        "results": results,
    }
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
    print_markdown(report)


def print_markdown(report):
    m = report["machine"]
    print(f"{report['date']}, {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
          f"Linux {m['kernel']}, cgroup {m['cgroup']}, {report['scrapes']} scrapes per row")
    print()
    print("| exporter | containers | kind | min ms | median ms | p90 ms | max ms | bytes | samples "
          "| CPU ms/scrape | CPU µs/container | RSS MiB | peak RSS MiB | kernel MiB | fds | threads | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in report["results"]:
        kernel = "-" if row["kernel_memory_mib"] is None else f"{row['kernel_memory_mib']:.1f}"
        per_container = (
            f"{row['cpu_ms_per_scrape'] * 1e3 / row['containers']:.0f}" if row["containers"] else "-"
        )
        print(f"| {row['exporter']} | {row['containers']} | {row['kind']} "
              f"| {row['latency_min_ms']:.1f} | {row['latency_median_ms']:.1f} "
              f"| {row['latency_p90_ms']:.1f} "
              f"| {row['latency_max_ms']:.1f} | {row['bytes']} | {row['samples']} "
              f"| {row['cpu_ms_per_scrape']:.1f} | {per_container} "
              f"| {row['rss_mib']:.1f} | {row['peak_rss_mib']:.1f} | {kernel} "
              f"| {row['descriptors']} | {row['threads']} | {row['load']:.1f} |")


if __name__ == "__main__":
    main()
