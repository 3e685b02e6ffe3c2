//! Limits of jobs that supervisord runs: OOM kills shown in status and in
//! the agent's metrics, and 200 jobs with limits started at once.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use corral_config::convert;
use corral_runtime::state::ContainerState;
use corral_tests::daemon::{Agent, Supervisor};
use corral_tests::host;
use corral_tests::sandbox::probe;
use corral_tests::wait_until;
use serde_json::{json, Value};

use crate::report::{log, Report};
use crate::support::{cgroup_dir, is_v2, metric_value, mib};

const MIB: u64 = 1 << 20;

/// Jobs that `many-jobs` starts at once, unless `CORRAL_LIMITS_MANY_JOBS`
/// sets another count.
const MANY_JOBS: usize = 200;

fn many_jobs_count() -> usize {
    match std::env::var("CORRAL_LIMITS_MANY_JOBS") {
        Ok(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|count| *count > 0)
            .unwrap_or_else(|| {
                panic!("CORRAL_LIMITS_MANY_JOBS must be a positive count of jobs, not {text:?}")
            }),
        Err(_) => MANY_JOBS,
    }
}

/// How long the 200 jobs may take to reach RUNNING.
const MANY_START_TIMEOUT: Duration = Duration::from_secs(180);

/// Reads every job's status from `supervisorctl status --json`, by name.
fn job_views(supervisor: &Supervisor) -> BTreeMap<String, Value> {
    let output = supervisor.ctl(&["status", "--json"]);
    let views: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
    views
        .into_iter()
        .filter_map(|view| Some((view["name"].as_str()?.to_string(), view)))
        .collect()
}

pub fn check_oom_reporting(report: &mut Report) {
    let limit = 64 * MIB;
    let mut supervisor = Supervisor::new("limits-oom");
    let alloc = format!(r#""{}", "alloc", "{}""#, probe(), 2 * limit);
    supervisor.add_job(
        "oom-main",
        &format!(
            r#"{{"command": [{alloc}], "resources": {{"memory": "{limit}"}},
                "restart": {{"policy": "never"}}}}"#
        ),
    );
    // The child is OOM-killed while the main process lives on, so the
    // container, and with it the agent's series, still exists afterwards.
    let script = format!("{} alloc {}; exec sleep 60", probe(), 2 * limit);
    supervisor.add_job(
        "oom-child",
        &json!({"command": ["/bin/sh", "-c", script], "init": true,
                "resources": {"memory": limit.to_string()},
                "restart": {"policy": "never"}, "stop": {"timeout": "2s"}})
        .to_string(),
    );
    supervisor.start();
    let agent = Agent::start(&supervisor.run_dir, Some(&supervisor.socket()));

    let status = supervisor.wait_for_status("oom-main", "EXITED", Duration::from_secs(30));
    let views = job_views(&supervisor);
    let main_view = &views["oom-main"];
    log(&format!("limits: oom-main status: {}", status.trim()));
    report.check(
        "OOM kill in supervisorctl status",
        format!(
            "memory {}, main process corral-probe alloc {}",
            mib(limit as f64),
            mib((2 * limit) as f64)
        ),
        format!(
            "{:?}; --json exit_status {}, oom_killed {}",
            status.trim(),
            main_view["exit_status"],
            main_view["oom_killed"]
        ),
        "EXITED, `exited 137 (OOM killed)`",
        status.contains("exited 137 (OOM killed)")
            && main_view["exit_status"] == json!(137)
            && main_view["oom_killed"] == json!(true),
    );

    let mut counted = None;
    wait_until(Duration::from_secs(20), || {
        counted = agent
            .get("/metrics")
            .and_then(|body| metric_value(&body, "container_oom_events_total", "oom-child"));
        counted.is_some_and(|value| value >= 1.0)
    });
    let child_status = supervisor.wait_for_status("oom-child", "RUNNING", Duration::from_secs(10));
    report.check(
        "OOM kill in the agent's metrics",
        format!(
            "memory {}, a child process allocates {}",
            mib(limit as f64),
            mib((2 * limit) as f64)
        ),
        format!(
            "container_oom_events_total {}, job {}",
            counted.map_or("missing".to_string(), |value| value.to_string()),
            child_status.split_whitespace().nth(1).unwrap_or("unknown")
        ),
        "at least 1, job RUNNING",
        counted.is_some_and(|value| value >= 1.0) && child_status.contains("RUNNING"),
    );
    drop(agent);
    supervisor.stop();
}

/// The limits of the `index`-th job, different for each job, as the job
/// file states them.
struct JobLimits {
    memory: u64,
    cpus: f64,
    cpu_weight: u64,
    pids: u64,
}

impl JobLimits {
    fn of(index: usize) -> Self {
        let index = index as u64;
        JobLimits {
            memory: (16 + index % 48) * MIB,
            cpus: 0.05 + (index % 20) as f64 / 100.0,
            cpu_weight: 1 + index * 50,
            pids: 8 + index % 32,
        }
    }

    fn job_file(&self) -> String {
        json!({
            "command": ["/bin/sleep", "300"],
            "init": true,
            "start_seconds": "1s",
            "restart": {"policy": "never"},
            "stop": {"timeout": "5s"},
            "resources": {
                "memory": self.memory.to_string(),
                "cpus": self.cpus,
                "cpu_weight": self.cpu_weight,
                "pids": self.pids,
            }
        })
        .to_string()
    }

    /// Differences between these limits and the container's cgroup files,
    /// one text per file that differs.
    fn compare(&self, state: &ContainerState) -> Vec<String> {
        let mut differences = Vec::new();
        let mut expect = |file: &Path, expected: String, actual: String| {
            if expected != actual {
                differences.push(format!(
                    "{}: {actual:?}, expected {expected:?}",
                    file.display()
                ));
            }
        };
        let memory = cgroup_dir(state, "memory");
        let cpu = cgroup_dir(state, "cpu");
        let pids = cgroup_dir(state, "pids");
        let (quota, period) = convert::cpus_to_cfs(self.cpus);
        let shares = convert::weight_to_shares(self.cpu_weight);
        if is_v2(state) {
            let file = memory.join("memory.max");
            expect(&file, self.memory.to_string(), read_text(&file));
            let file = cpu.join("cpu.max");
            expect(&file, format!("{quota} {period}"), read_text(&file));
            let file = cpu.join("cpu.weight");
            expect(&file, self.cpu_weight.to_string(), read_text(&file));
        } else {
            let file = memory.join("memory.limit_in_bytes");
            expect(&file, self.memory.to_string(), read_text(&file));
            let file = cpu.join("cpu.cfs_quota_us");
            expect(&file, quota.to_string(), read_text(&file));
            let file = cpu.join("cpu.cfs_period_us");
            expect(&file, period.to_string(), read_text(&file));
            let file = cpu.join("cpu.shares");
            expect(&file, shares.to_string(), read_text(&file));
        }
        let file = pids.join("pids.max");
        expect(&file, self.pids.to_string(), read_text(&file));
        differences
    }
}

fn read_text(path: &Path) -> String {
    fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|error| format!("unreadable: {error}"))
}

pub fn check_many_jobs(report: &mut Report) {
    let count = many_jobs_count();
    let mut supervisor = Supervisor::new("limits-many");
    let names: Vec<String> = (0..count).map(|index| format!("many-{index:03}")).collect();
    for (index, name) in names.iter().enumerate() {
        supervisor.add_job(name, &JobLimits::of(index).job_file());
    }
    let requested = format!(
        "{count} jobs, memory 16-{} MiB, cpus 0.05-{:.2}, cpu_weight 1-{}, pids 8-{}",
        (0..count)
            .map(|i| JobLimits::of(i).memory)
            .max()
            .unwrap_or(0)
            / MIB,
        (0..count)
            .map(|i| JobLimits::of(i).cpus)
            .fold(0.0, f64::max),
        JobLimits::of(count - 1).cpu_weight,
        (0..count).map(|i| JobLimits::of(i).pids).max().unwrap_or(0),
    );

    let started = Instant::now();
    supervisor.start();
    let mut views = BTreeMap::new();
    let all_running = wait_until(MANY_START_TIMEOUT, || {
        sleep(Duration::from_millis(500));
        views = job_views(&supervisor);
        views.len() == count && views.values().all(|view| view["state"] == "RUNNING")
    });
    let start_seconds = started.elapsed().as_secs_f64();
    let running = views
        .values()
        .filter(|view| view["state"] == "RUNNING")
        .count();
    log(&format!(
        "limits: many jobs: {running} RUNNING after {start_seconds:.1} s"
    ));
    report.check(
        "many jobs: all started",
        requested.clone(),
        format!("{running} of {count} RUNNING after {start_seconds:.1} s"),
        format!("all within {} s", MANY_START_TIMEOUT.as_secs()),
        all_running,
    );

    let containers = supervisor.containers_dir();
    let mut matching = 0;
    let mut differences = Vec::new();
    let mut pids = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let Some(id) = views
            .get(name)
            .and_then(|view| view["container_id"].as_str())
        else {
            differences.push(format!("{name}: no container"));
            continue;
        };
        let state = match ContainerState::load(&containers, id) {
            Ok(state) => state,
            Err(error) => {
                differences.push(format!("{name}: {error}"));
                continue;
            }
        };
        pids.extend(state.pid);
        let found = JobLimits::of(index).compare(&state);
        if found.is_empty() {
            matching += 1;
        }
        differences.extend(found);
    }
    log(&format!(
        "limits: many jobs: {matching} match; first differences: {:?}",
        differences.iter().take(5).collect::<Vec<_>>()
    ));
    report.check(
        "many jobs: limits read back from cgroup files",
        requested.clone(),
        format!(
            "{matching} of {count} match{}",
            differences
                .first()
                .map(|first| format!("; first difference: {first}"))
                .unwrap_or_default()
        ),
        "every job, every file",
        matching == count,
    );

    let stop_started = Instant::now();
    let stop = supervisor.ctl(&["stop", "all"]);
    let stop_seconds = stop_started.elapsed().as_secs_f64();
    let views = job_views(&supervisor);
    let stopped = views
        .values()
        .filter(|view| view["state"] == "STOPPED")
        .count();
    let killed = views
        .values()
        .filter(|view| {
            view["description"]
                .as_str()
                .is_some_and(|text| text.contains("SIGKILL"))
        })
        .count();
    let alive: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    let container_cgroups = remaining_container_cgroups(&supervisor.cgroup_parent);
    let states_left = fs::read_dir(&containers)
        .map(|entries| entries.count())
        .unwrap_or(0);
    log(&format!(
        "limits: many jobs: stop all {} in {stop_seconds:.1} s, {stopped} STOPPED, {killed} SIGKILL, {} alive, {container_cgroups} cgroups, {states_left} states",
        stop.status,
        alive.len()
    ));
    report.check(
        "many jobs: stopped cleanly",
        "supervisorctl stop all",
        format!(
            "{} in {stop_seconds:.1} s, {stopped} STOPPED, {killed} after SIGKILL, {} processes, \
             {container_cgroups} cgroups and {states_left} state dirs left",
            stop.status,
            alive.len()
        ),
        "all STOPPED by SIGTERM, nothing left",
        stop.status.success()
            && stopped == count
            && killed == 0
            && alive.is_empty()
            && container_cgroups == 0
            && states_left == 0,
    );
    supervisor.stop();
}

/// Container cgroups still below supervisord's cgroup parent, counted over
/// every controller hierarchy.
fn remaining_container_cgroups(parent: &str) -> usize {
    host::cgroups_named(parent)
        .iter()
        .map(|dir| {
            fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                        .count()
                })
                .unwrap_or(0)
        })
        .sum()
}
