//! End-to-end tests of many jobs at once: 200 jobs started and stopped
//! together, and a shutdown while launches are in flight. They run as root,
//! one at a time, and skip with a SKIP line otherwise.

mod harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use corral_supervisor::api::JobList;
use corral_supervisor::machine::JobState;
use harness::{serial, skip, stdout_of, Daemon};
use serde_json::json;

const JOBS: usize = 200;

fn states(daemon: &Daemon) -> Vec<(String, JobState)> {
    let list: JobList = daemon.client().get("/v1/jobs").unwrap();
    list.jobs
        .into_iter()
        .map(|job| (job.name, job.state))
        .collect()
}

fn count_in(daemon: &Daemon, state: JobState) -> usize {
    states(daemon)
        .into_iter()
        .filter(|(_, current)| *current == state)
        .count()
}

/// Names of the cgroups below the cgroup parent in any hierarchy: the ids
/// of the containers that still have a cgroup.
fn container_cgroups(daemon: &Daemon) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for parent in daemon.leftover_cgroups() {
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                names.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names
}

/// Counts the anonymous mappings of `pid` of the size of a thread stack,
/// 2 MiB, which hold the stacks of its other threads, live or exited.
fn thread_stack_mappings(pid: i32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some((start, end)) = fields[0].split_once('-') else {
                return false;
            };
            let size =
                u64::from_str_radix(end, 16).unwrap() - u64::from_str_radix(start, 16).unwrap();
            fields.len() == 5 && fields[1] == "rw-p" && size == 2 * 1024 * 1024
        })
        .count()
}

#[test]
fn two_hundred_jobs_start_and_stop_together() {
    if skip("two_hundred_jobs_start_and_stop_together") {
        return;
    }
    let _serial = serial();
    let job = json!({
        "image": "host",
        "command": ["/bin/sleep", "3600"],
        "init": true,
        "start_seconds": "500ms",
        "stop": {"timeout": "10s"},
        "resources": {"memory": "16M", "pids": 8},
    })
    .to_string();
    let names: Vec<String> = (0..JOBS).map(|index| format!("job{index:03}")).collect();
    let jobs: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), job.as_str()))
        .collect();

    let started = Instant::now();
    let mut daemon = Daemon::start(&jobs);
    daemon.wait_until(Duration::from_secs(180), "every job is RUNNING", |daemon| {
        count_in(daemon, JobState::Running) == JOBS
    });
    let start_took = started.elapsed();
    let list: JobList = daemon.client().get("/v1/jobs").unwrap();
    let pids: Vec<i32> = list.jobs.iter().map(|job| job.pid.unwrap()).collect();
    assert_eq!(container_cgroups(&daemon).len(), JOBS);
    // The launches ran on the blocking pool. Its idle threads exit, so the
    // daemon runs on one thread between bursts of work.
    let tasks = format!("/proc/{}/task", daemon.pid());
    daemon.wait_until(Duration::from_secs(5), "one thread is left", |_| {
        std::fs::read_dir(&tasks).map_or(0, |entries| entries.count()) == 1
    });
    // glibc kept none of their stacks for reuse but one: a detached thread
    // cannot unmap the stack it exits on, so glibc frees that one later.
    let stacks = thread_stack_mappings(daemon.pid());
    assert!(stacks <= 1, "{stacks} stacks of exited threads stay mapped");
    // The daemon started again with the tunable that turns the cache off,
    // which /proc shows as its initial environment, and removed it before
    // it started the monitors.
    let environ_of = |pid: &str| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        String::from_utf8_lossy(&environ).into_owned()
    };
    let daemon_environ = environ_of(&daemon.pid().to_string());
    assert!(
        daemon_environ.contains("GLIBC_TUNABLES=glibc.pthread.stack_cache_size=0\0"),
        "{daemon_environ}"
    );
    let children = format!("/proc/{}/task/{0}/children", daemon.pid());
    let children = std::fs::read_to_string(children).unwrap();
    let monitor = children.split_whitespace().next().unwrap();
    let monitor_environ = environ_of(monitor);
    assert!(
        !monitor_environ.contains("GLIBC_TUNABLES="),
        "{monitor_environ}"
    );
    assert!(
        !monitor_environ.contains("CORRAL_GLIBC_TUNED="),
        "{monitor_environ}"
    );

    let asked = Instant::now();
    let status = daemon.ctl(&["status"]);
    let status_took = asked.elapsed();
    assert_eq!(status.status.code(), Some(0));
    assert_eq!(stdout_of(&status).lines().count(), JOBS);

    let stopping = Instant::now();
    let stop = daemon.ctl(&["stop", "all"]);
    let stop_took = stopping.elapsed();
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    assert_eq!(stdout_of(&stop).matches(": stopped\n").count(), JOBS);
    assert_eq!(count_in(&daemon, JobState::Stopped), JOBS);
    let alive: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(alive.is_empty(), "processes {alive:?} outlived stop all");
    assert_eq!(container_cgroups(&daemon), BTreeSet::new());

    let restarting = Instant::now();
    let start = daemon.ctl(&["start", "all"]);
    let restart_took = restarting.elapsed();
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    assert_eq!(count_in(&daemon, JobState::Running), JOBS);

    let exiting = Instant::now();
    let exit = daemon.terminate(Duration::from_secs(120));
    let shutdown_took = exiting.elapsed();
    assert_eq!(exit.code(), Some(0), "{}", daemon.diagnostics());
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
    assert_eq!(daemon.leftover_mounts(), Vec::<String>::new());
    eprintln!(
        "{JOBS} jobs: all RUNNING {start_took:?} after the daemon started, status {status_took:?}, \
         stop all {stop_took:?}, start all {restart_took:?}, shutdown {shutdown_took:?}"
    );
}

#[test]
fn shutdown_during_launches_leaves_nothing() {
    if skip("shutdown_during_launches_leaves_nothing") {
        return;
    }
    let _serial = serial();
    let job = json!({
        "image": "host",
        "command": ["/bin/sleep", "3600"],
        "init": true,
        "start_seconds": "1s",
        "stop": {"timeout": "10s"},
    })
    .to_string();
    let names: Vec<String> = (0..40).map(|index| format!("early{index:02}")).collect();
    let jobs: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), job.as_str()))
        .collect();
    let mut daemon = Daemon::start(&jobs);
    // Most launches are still in flight when the socket first responds.
    let asked = Instant::now();
    let status = daemon.ctl(&["status"]);
    let status_took = asked.elapsed();
    assert_eq!(stdout_of(&status).lines().count(), names.len());
    assert!(
        status_took < Duration::from_secs(1),
        "status took {status_took:?} while jobs launched"
    );

    let exit = daemon.terminate(Duration::from_secs(60));
    assert_eq!(exit.code(), Some(0), "{}", daemon.diagnostics());
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
    assert_eq!(daemon.leftover_mounts(), Vec::<String>::new());
    for dir in ["shims", "containers", "pids", "exits"] {
        assert_eq!(
            daemon.entries(&daemon.run_dir().join(dir)),
            Vec::<String>::new(),
            "{dir} is not empty"
        );
    }
    // Every job started, failed to start, or had its launch cancelled
    // while it waited for a launch slot, and then counts as stopped.
    let log = daemon.daemon_log();
    let started = log.matches("started job job=").count();
    let failed = log.matches("failed to start job job=").count();
    let cancelled = log
        .matches("launch cancelled before the container was created job=")
        .count();
    let stopped = log.matches("job stopped job=").count();
    assert_eq!(started + failed + cancelled, names.len(), "{log}");
    assert_eq!(stopped, names.len(), "{log}");
}
