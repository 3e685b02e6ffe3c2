//! The pids limit against a fork bomb: the job stays at its limit, the host
//! keeps running commands in their usual time, and a stop leaves nothing.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use corral_tests::host;
use corral_tests::sandbox::Sandbox;

use crate::report::{log, Report};
use crate::support::{
    cgroup_dir, cgroup_pids, median, read_keyed, time_host_command, try_read_u64,
};

const PIDS_LIMIT: u64 = 64;

/// How long the bomb runs while the test samples it.
const BOMB_WINDOW: Duration = Duration::from_secs(5);

/// A host command may take this many times its usual (median) time while
/// the bomb runs. The bomb has no CPU limit, so it takes CPU time from the
/// host like any busy job. On 2 CPUs that other work kept busy, that made the
/// command up to 4 times slower. A host whose process table the bomb had
/// filled would fail to fork, or take seconds.
const HOST_SLOWDOWN_MAX: f64 = 5.0;

/// Host runs timed before and during the bomb.
const HOST_RUNS: usize = 5;

pub fn check(report: &mut Report) {
    // Every process of the bomb loops on fork. dash, Debian's /bin/sh, exits
    // a subshell whose fork fails, so at the limit the processes keep dying
    // and being replaced. corral's init reaps the orphans, so the limit counts
    // live processes rather than zombies. The main process becomes `sleep`,
    // which bounds the bomb's life to 30 s even if the test's stop fails.
    let job = format!(
        r#"{{"command": ["/bin/sh", "-c", "bomb() {{ while :; do bomb & done; }}; bomb & exec sleep 30"],
            "init": true, "resources": {{"pids": {PIDS_LIMIT}}}}}"#
    );
    let sandbox = Sandbox::new("pids-bomb", &job);

    let usual = median_host_time();
    let state = sandbox.run_detached();
    let current = cgroup_dir(&state, "pids").join("pids.current");
    let events = cgroup_dir(&state, "pids").join("pids.events");

    let mut peak = 0;
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < BOMB_WINDOW / 2 {
        sample(&current, &state, &mut peak, &mut seen);
        sleep(Duration::from_millis(50));
    }
    let mut during = Vec::new();
    for _ in 0..HOST_RUNS {
        during.push(host_command_seconds());
        sample(&current, &state, &mut peak, &mut seen);
    }
    while started.elapsed() < BOMB_WINDOW {
        sample(&current, &state, &mut peak, &mut seen);
        sleep(Duration::from_millis(50));
    }
    let rejected_forks = read_keyed(&events, "max");
    let during = median(&mut during);

    let stop_started = Instant::now();
    let deleted = sandbox.delete();
    let stop_seconds = stop_started.elapsed().as_secs_f64();
    let left: Vec<i32> = seen
        .iter()
        .copied()
        .filter(|pid| still_in_job(*pid, &sandbox.id))
        .collect();
    let cgroups_left = host::cgroups_named(&sandbox.id);
    log(&format!(
        "limits: pids: peak {peak}, {} PIDs seen, rejected forks {rejected_forks:?}, host {usual:.4} s usual, {during:.4} s during, stop {stop_seconds:.2} s",
        seen.len()
    ));

    report.check(
        "pids: fork bomb held",
        format!("pids {PIDS_LIMIT}"),
        format!(
            "peak {peak} tasks, {} forks rejected",
            rejected_forks.map_or("unknown".to_string(), |n| n.to_string())
        ),
        format!("reaches {} to {PIDS_LIMIT}, never above", PIDS_LIMIT - 4),
        (PIDS_LIMIT - 4..=PIDS_LIMIT).contains(&peak),
    );
    report.check(
        "pids: host responsive during the bomb",
        "sh starting /bin/true 20 times on the host",
        format!(
            "median {:.1} ms during, {:.1} ms before",
            during * 1000.0,
            usual * 1000.0
        ),
        format!("at most {HOST_SLOWDOWN_MAX}x the time before"),
        during <= usual * HOST_SLOWDOWN_MAX,
    );
    report.check(
        "pids: stop leaves nothing",
        "corral delete --force",
        format!(
            "{} in {stop_seconds:.2} s, {} of {} processes left, {} cgroups left",
            deleted.status,
            left.len(),
            seen.len(),
            cgroups_left.len()
        ),
        "no process, no cgroup",
        deleted.status.success() && left.is_empty() && cgroups_left.is_empty(),
    );
}

fn sample(
    current: &std::path::Path,
    state: &corral_runtime::state::ContainerState,
    peak: &mut u64,
    seen: &mut BTreeSet<i32>,
) {
    if let Some(tasks) = try_read_u64(current) {
        *peak = (*peak).max(tasks);
    }
    seen.extend(cgroup_pids(state, "pids"));
}

/// Measures the host command's usual time as the median of several runs.
fn median_host_time() -> f64 {
    let mut times: Vec<f64> = (0..HOST_RUNS).map(|_| host_command_seconds()).collect();
    median(&mut times)
}

/// Times a shell that starts `/bin/true` 20 times: process creation is
/// what a fork bomb takes from the host.
fn host_command_seconds() -> f64 {
    let script = "i=0; while [ $i -lt 20 ]; do /bin/true; i=$((i+1)); done";
    time_host_command(Command::new("/bin/sh").args(["-c", script])).as_secs_f64()
}

/// Returns whether `pid` still exists inside the job's cgroups. A PID reused by a
/// new process elsewhere on the host does not count.
fn still_in_job(pid: i32, id: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| text.contains(id))
}
