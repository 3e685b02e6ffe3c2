#!/usr/bin/env python3
"""Benchmark corral's supervisord against Python's supervisord.

For each job count (50, 500 and 1000 by default) and round, the script runs
corral's supervisord and then Python's supervisord (Debian's `supervisor`
package) on the same kind of jobs, `sleep` with a one second start time, and
measures:

- the time from starting the daemon until every job is RUNNING, polled
  every 100 ms over each daemon's own API;
- the wall time of `supervisorctl status` once every job runs (median and
  max of several calls, each a new process, as an operator runs it);
- the daemon's resident memory and open file descriptors;
- for corral, the proportional memory (PSS) of the per-job helper
  processes (corral-monitor, corral shim and the container's init), and
  for both the drop of MemAvailable while the jobs run;
- the time from SIGTERM until the daemon exited with every job stopped.

Before each measurement the script waits, up to three minutes, for the
1-minute load average to drop below `--settle-load`, and it records the
load average at the start of each measurement.

`--soak SECONDS` also runs corral's supervisord for that long with 200
sleeping jobs, 10 jobs that exit and restart every second, and a status
and a stats request every second, and samples its memory every 10 seconds:
RSS, open descriptors, and RSS split into the executable, other files and
anonymous memory.

corral's jobs use the host image, a 16M memory limit, `init: true` and the
default loopback network, each in its own container. Python's supervisord
runs the same `sleep` as plain child processes.

Run as root from the workspace after `cargo build --release`:

    sudo bench/supervisor/bench.py --output /tmp/bench.json

Every daemon is stopped by its PID, and the script removes its temporary
directories and cgroups, also when a measurement fails.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

WORKSPACE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON_SUPERVISORD = "/usr/bin/supervisord"
PYTHON_SUPERVISORCTL = "/usr/bin/supervisorctl"
POLL_INTERVAL = 0.1
STATUS_CALLS = 10


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket, for corral's control API."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def corral_get(socket_path, path):
    connection = UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        connection.close()


class UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over a unix socket, for Python supervisord's API."""

    def __init__(self, path):
        super().__init__()
        self.socket_path = path

    def make_connection(self, host):
        return UnixHTTPConnection(self.socket_path)


def process_memory(pid):
    """Returns (RSS, PSS) of a process in bytes, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            fields = dict(
                (line.split()[0].rstrip(":"), int(line.split()[1]) * 1024)
                for line in rollup
                if line.split() and line.split()[0] in ("Rss:", "Pss:")
            )
        return fields.get("Rss"), fields.get("Pss")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def anonymous_memory(pid):
    """RssAnon of a process in bytes: its heap and stacks, without the
    pages of its executable and libraries, which other processes share."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"RssAnon missing from /proc/{pid}/status")


def memory_by_mapping(pid):
    """Splits a process's RSS into its executable's pages, the pages of
    other files (shared libraries) and anonymous memory, in bytes."""
    executable = os.readlink(f"/proc/{pid}/exe")
    split = {"executable": 0, "other_files": 0, "anonymous": 0}
    kind = "anonymous"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                path = fields[5] if len(fields) > 5 else ""
                if path == executable:
                    kind = "executable"
                elif path.startswith("/"):
                    kind = "other_files"
                else:
                    kind = "anonymous"
            elif fields[0] == "Rss:":
                split[kind] += int(fields[1]) * 1024
    return split


def load_average():
    with open("/proc/loadavg") as loadavg:
        return float(loadavg.read().split()[0])


def settle(threshold, longest):
    """Waits until the 1-minute load average is below `threshold`, for at
    most `longest` seconds. Stopping hundreds of containers leaves the kernel
    work for a while (network namespaces are torn down asynchronously), which
    would otherwise slow the next daemon measured."""
    deadline = time.monotonic() + longest
    while load_average() >= threshold and time.monotonic() < deadline:
        time.sleep(5)


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def mem_available():
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable missing from /proc/meminfo")


def descendants(pid):
    """PIDs of every descendant of `pid`, through /proc/PID/task/*/children."""
    found = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as children:
                    for child in children.read().split():
                        found.append(int(child))
                        pending.append(int(child))
            except FileNotFoundError:
                continue
    return found


def command_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except FileNotFoundError:
        return None


def is_shim(pid):
    """Return whether `pid` runs `corral ... shim ...`: a shim or a minimal init."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"shim" in cmdline.read().split(b"\0")
    except FileNotFoundError:
        return False


def wait_exit(process, timeout):
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def time_command(argv, calls, expected_code):
    """Runs `argv` `calls` times and returns the wall times in seconds."""
    times = []
    for _ in range(calls):
        started = time.monotonic()
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.monotonic() - started)
        if result.returncode != expected_code:
            raise RuntimeError(
                f"{argv[0]} exited {result.returncode}: {result.stderr.decode()[:300]}"
            )
    return times


def summary(times):
    return {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


class CorralDaemon:
    """corral's supervisord on its own temporary directories."""

    name = "corral"
    # Where supervisord, supervisorctl, corral and corral-monitor are; --bin-dir.
    bin_dir = os.path.join(WORKSPACE, "target", "release")

    def __init__(self, jobs, scratch, label):
        self.dir = tempfile.mkdtemp(prefix="corral-bench-", dir=scratch)
        self.jobs_dir = os.path.join(self.dir, "jobs")
        self.run_dir = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.run_dir, "supervisor.sock")
        self.cgroup_parent = f"corral-bench-{os.getpid()}-{label}"
        self.process = None
        os.makedirs(self.jobs_dir)
        for name, job in jobs.items():
            with open(os.path.join(self.jobs_dir, f"{name}.json"), "w") as file:
                json.dump(job, file)

    def binary(self, name):
        path = os.path.join(self.bin_dir, name)
        if not os.access(path, os.X_OK):
            sys.exit(f"bench.py: {path} is missing: run `cargo build --release` first")
        return path

    def start(self):
        for name in ("corral", "corral-monitor"):
            self.binary(name)
        self.log = open(os.path.join(self.dir, "supervisord.log"), "w")
        self.process = subprocess.Popen(
            [
                self.binary("supervisord"),
                "--jobs-dir", self.jobs_dir,
                "--run-dir", self.run_dir,
                "--data-dir", os.path.join(self.dir, "data"),
                "--log-dir", os.path.join(self.dir, "log"),
                "--cgroup-parent", self.cgroup_parent,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def states(self):
        try:
            jobs = corral_get(self.socket, "/v1/jobs")["jobs"]
        except (OSError, RuntimeError, http.client.HTTPException):
            return None
        return [job["state"] for job in jobs]

    def status_argv(self):
        return [self.binary("supervisorctl"), "--socket", self.socket, "status"]

    def helper_pss(self):
        """PSS of corral-monitor, the shims and the containers' inits.

        The shims run the runtime through /proc/PID/fd/N. Under supervisord
        versions whose monitor lacks --arg0, their command name is the
        descriptor number. So a shim and the init forked from it are found
        by the `shim` verb on their command line.
        """
        total = 0
        count = 0
        for pid in descendants(self.process.pid):
            if command_name(pid) == "corral-monitor" or is_shim(pid):
                memory = process_memory(pid)
                if memory:
                    total += memory[1]
                    count += 1
        return total, count

    def stop(self, timeout):
        """Sends SIGTERM, which stops every job, and waits for the exit."""
        self.process.send_signal(signal.SIGTERM)
        return wait_exit(self.process, timeout)

    def clean_up(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        containers = os.path.join(self.run_dir, "containers")
        if os.path.isdir(containers):
            for container in os.listdir(containers):
                subprocess.run(
                    [self.binary("corral"), "--root", containers, "delete", "--force", container],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        remove_cgroups(self.cgroup_parent)
        subprocess.run(["rm", "-rf", "--one-file-system", self.dir])


def remove_cgroups(name):
    """Removes the empty cgroup `name` below this process's cgroup in every
    hierarchy."""
    with open("/proc/self/cgroup") as cgroups:
        for line in cgroups:
            _, controllers, path = line.strip().split(":", 2)
            mount = "unified" if controllers == "" else controllers.replace("name=", "")
            for directory in (f"/sys/fs/cgroup/{mount}", "/sys/fs/cgroup"):
                candidate = os.path.normpath(f"{directory}/{path}/{name}")
                if os.path.isdir(candidate):
                    try:
                        os.rmdir(candidate)
                    except OSError as error:
                        print(f"bench.py: failed to remove cgroup {candidate}: {error}", file=sys.stderr)
                    break


class PythonDaemon:
    """Python's supervisord with its own configuration and unix socket."""

    name = "supervisord (Python)"

    def __init__(self, jobs, scratch, label):
        self.dir = tempfile.mkdtemp(prefix="python-supervisord-bench-", dir=scratch)
        self.socket = os.path.join(self.dir, "supervisor.sock")
        self.config = os.path.join(self.dir, "supervisord.conf")
        self.process = None
        self.children = set()
        lines = [
            "[unix_http_server]",
            f"file={self.socket}",
            "chmod=0700",
            "[supervisord]",
            f"logfile={os.path.join(self.dir, 'supervisord.log')}",
            f"pidfile={os.path.join(self.dir, 'supervisord.pid')}",
            f"childlogdir={self.dir}",
            "nodaemon=true",
            "minfds=16384",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{self.socket}",
        ]
        for name, job in jobs.items():
            lines += [
                f"[program:{name}]",
                f"command={' '.join(job['command'])}",
                "startsecs=1",
                "stopwaitsecs=10",
                "autorestart=true",
            ]
        with open(self.config, "w") as file:
            file.write("\n".join(lines) + "\n")

    def start(self):
        self.process = subprocess.Popen(
            [PYTHON_SUPERVISORD, "-c", self.config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def states(self):
        proxy = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(self.socket))
        try:
            processes = proxy.supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return None
        self.children.update(process["pid"] for process in processes if process["pid"])
        return [process["statename"] for process in processes]

    def status_argv(self):
        return [PYTHON_SUPERVISORCTL, "-c", self.config, "status"]

    def helper_pss(self):
        return 0, 0

    def stop(self, timeout):
        self.process.send_signal(signal.SIGTERM)
        return wait_exit(self.process, timeout)

    def clean_up(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        # Children that outlived a killed supervisord, by the PIDs it reported.
        for pid in self.children:
            if command_name(pid) == "sleep":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        subprocess.run(["rm", "-rf", self.dir])


def corral_job(command, **extra):
    job = {
        "image": "host",
        "command": command,
        "init": True,
        "start_seconds": "1s",
        "stop": {"timeout": "10s"},
        "resources": {"memory": "16M"},
    }
    job.update(extra)
    return job


def measure(daemon_class, count, scratch, label, timeout):
    jobs = {f"job{index:04}": corral_job(["/bin/sleep", "100000"]) for index in range(count)}
    available_before = mem_available()
    load_at_start = load_average()
    daemon = daemon_class(jobs, scratch, label)
    try:
        started = time.monotonic()
        daemon.start()
        while True:
            states = daemon.states()
            if states is not None and len(states) == count and all(
                state == "RUNNING" for state in states
            ):
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{daemon.name}: not every job RUNNING after {timeout}s: {states and sorted(set(states))}")
            if daemon.process.poll() is not None:
                raise RuntimeError(f"{daemon.name} exited with {daemon.process.returncode}")
            time.sleep(POLL_INTERVAL)
        all_running = time.monotonic() - started
        # Let start-up work settle before sampling memory.
        time.sleep(2)
        status = time_command(daemon.status_argv(), STATUS_CALLS, 0)
        rss, pss = process_memory(daemon.process.pid)
        anonymous = anonymous_memory(daemon.process.pid)
        mappings = memory_by_mapping(daemon.process.pid)
        files = open_files(daemon.process.pid)
        helper_pss, helpers = daemon.helper_pss()
        available_drop = available_before - mem_available()
        stopping = time.monotonic()
        code = daemon.stop(timeout)
        stop_took = time.monotonic() - stopping
        if code != 0:
            raise RuntimeError(f"{daemon.name} exited with {code} after SIGTERM")
        return {
            "daemon": daemon.name,
            "jobs": count,
            "all_running_s": all_running,
            "status": summary(status),
            "daemon_rss_mib": rss / 2**20,
            "daemon_pss_mib": pss / 2**20,
            "daemon_anon_mib": anonymous / 2**20,
            "daemon_rss_split_mib": {kind: size / 2**20 for kind, size in mappings.items()},
            "daemon_fds": files,
            "helper_pss_mib_per_job": helper_pss / 2**20 / count if helpers else None,
            "mem_available_drop_mib": available_drop / 2**20,
            "stop_s": stop_took,
            "load_average_at_start": load_at_start,
        }
    finally:
        daemon.clean_up()


def soak(seconds, scratch):
    jobs = {f"steady{index:03}": corral_job(["/bin/sleep", "100000"]) for index in range(200)}
    for index in range(10):
        jobs[f"churn{index:02}"] = corral_job(
            ["/bin/sh", "-c", "sleep 1"],
            start_seconds="0s",
            restart={"policy": "always", "max_restarts": 1000000, "window": "1s",
                     "backoff": {"initial": "100ms", "max": "200ms"}},
        )
    daemon = CorralDaemon(jobs, scratch, "soak")
    samples = []
    try:
        daemon.start()
        deadline = time.monotonic() + 60
        while daemon.states() is None:
            if time.monotonic() > deadline:
                raise RuntimeError("corral's supervisord did not answer within 60 s")
            time.sleep(POLL_INTERVAL)
        started = time.monotonic()
        next_sample = started
        while time.monotonic() - started < seconds:
            corral_get(daemon.socket, "/v1/jobs")
            if int(time.monotonic() - started) % 2 == 0:
                corral_get(daemon.socket, "/v1/stats")
            if time.monotonic() >= next_sample:
                rss, _ = process_memory(daemon.process.pid)
                split = {
                    kind: round(size / 2**20, 3)
                    for kind, size in memory_by_mapping(daemon.process.pid).items()
                }
                samples.append(
                    (round(time.monotonic() - started), rss / 2**20, open_files(daemon.process.pid), split)
                )
                next_sample += 10
            time.sleep(1)
        restarts = sum(job["restarts"] for job in corral_get(daemon.socket, "/v1/jobs")["jobs"])
        code = daemon.stop(120)
        if code != 0:
            raise RuntimeError(f"corral's supervisord exited with {code} after the soak")
        return {"seconds": seconds, "restarts": restarts, "samples": samples}
    finally:
        daemon.clean_up()


def machine():
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    with open("/proc/meminfo") as meminfo:
        total = int(meminfo.readline().split()[1]) * 1024
    python_version = subprocess.run([PYTHON_SUPERVISORD, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", WORKSPACE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(total / 2**30, 1),
        "kernel": platform.release(),
        "python_supervisord": python_version,
        "corral_commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def markdown(results):
    rows = [
        "| jobs | daemon | all RUNNING | status median (max) | daemon RSS (anon) | daemon fds | helpers PSS per job | MemAvailable drop | stop all | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        helper = result["helper_pss_mib_per_job"]
        rows.append(
            f"| {result['jobs']} | {result['daemon']} | {result['all_running_s']:.2f} s "
            f"| {result['status']['median_ms']:.0f} ms ({result['status']['max_ms']:.0f} ms) "
            f"| {result['daemon_rss_mib']:.1f} MiB ({result['daemon_anon_mib']:.1f} MiB) | {result['daemon_fds']} "
            f"| {'-' if helper is None else f'{helper:.2f} MiB'} "
            f"| {result['mem_available_drop_mib']:.0f} MiB | {result['stop_s']:.2f} s "
            f"| {result['load_average_at_start']:.1f} |"
        )
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,500,1000", help="job counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds per size")
    parser.add_argument("--soak", type=int, default=0, metavar="SECONDS", help="also run the memory soak")
    parser.add_argument("--timeout", type=int, default=300, help="seconds before a start or stop fails")
    parser.add_argument("--output", help="write the results as JSON to this file")
    parser.add_argument(
        "--settle-load",
        type=float,
        default=1.5,
        help="before each measurement, wait up to 3 minutes for the 1-minute load average to drop below this",
    )
    parser.add_argument(
        "--only", choices=["corral", "python"], help="measure one daemon instead of both"
    )
    parser.add_argument(
        "--bin-dir",
        default=CorralDaemon.bin_dir,
        help="directory of corral's binaries, to measure another build (default: target/release)",
    )
    options = parser.parse_args()
    CorralDaemon.bin_dir = os.path.abspath(options.bin_dir)
    if os.geteuid() != 0:
        sys.exit("bench.py: containers need root: rerun with sudo")

    scratch = tempfile.mkdtemp(prefix="supervisor-bench-")
    results = []
    report = {"machine": machine(), "command": " ".join(sys.argv), "results": results}
    try:
        for count in [int(size) for size in options.sizes.split(",")]:
            for round_number in range(options.rounds):
                # Alternate which daemon goes first, so a slow phase of the
                # machine does not always hit the same one.
                order = [CorralDaemon, PythonDaemon]
                if round_number % 2:
                    order.reverse()
                if options.only:
                    order = [CorralDaemon if options.only == "corral" else PythonDaemon]
                for daemon_class in order:
                    settle(options.settle_load, 180)
                    label = f"{count}-{round_number}"
                    result = measure(daemon_class, count, scratch, label, options.timeout)
                    result["round"] = round_number
                    results.append(result)
                    print(json.dumps(result), flush=True)
        if options.soak:
            settle(options.settle_load, 180)
            report["soak"] = soak(options.soak, scratch)
            print(json.dumps(report["soak"]), flush=True)
    finally:
        subprocess.run(["rm", "-rf", scratch])
        if options.output:
            with open(options.output, "w") as file:
                json.dump(report, file, indent=2)
    print(json.dumps(report["machine"]))
    print(markdown(results))


if __name__ == "__main__":
    main()
