//! End-to-end tests with real containers: supervisord runs jobs through the
//! `corral` runtime in scratch directories, and the agent binary scrapes
//! them. They cover OOM kills counted across restarts, a restarted
//! container's series, scrapes during fork churn, container labels and
//! promtool on a real scrape.
//!
//! They need root and the workspace's binaries: run
//! `cargo build --workspace --bins` first. Without root they print a SKIP
//! line and pass. Each test takes the binary's serial lock, because their
//! load would skew each other's timing.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{http_get, promtool_check, samples, AgentProcess};
use corral_tests::daemon::Supervisor;
use corral_tests::sandbox::probe;
use corral_tests::{require_root, serial, wait_until};
use serde_json::{json, Value};

/// Returns the value of the first sample of `metric` whose labels contain
/// `name="NAME"`.
fn job_value(text: &str, metric: &str, name: &str) -> Option<f64> {
    job_lines(text, metric, name)
        .first()
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Returns the sample lines of `metric` whose labels contain `name="NAME"`.
fn job_lines<'a>(text: &'a str, metric: &str, name: &str) -> Vec<&'a str> {
    let label = format!(r#"name="{name}""#);
    samples(text, metric)
        .into_iter()
        .filter(|line| line.contains(&label))
        .collect()
}

/// Returns the value of `label` in a sample line.
fn label_value(line: &str, label: &str) -> Option<String> {
    let start = line.find(&format!(r#"{label}=""#))? + label.len() + 2;
    let end = start + line[start..].find('"')?;
    Some(line[start..end].to_string())
}

/// Returns every `metrics_agent_read_errors_total` sample that is not 0.
fn read_errors(text: &str) -> Vec<&str> {
    samples(text, "metrics_agent_read_errors_total")
        .into_iter()
        .filter(|line| !line.ends_with(" 0"))
        .collect()
}

/// supervisord's view of every job, from `supervisorctl status --json`.
fn job_views(supervisor: &Supervisor) -> BTreeMap<String, Value> {
    let output = supervisor.ctl(&["status", "--json"]);
    let views: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "supervisorctl status --json printed invalid JSON ({error}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    views
        .into_iter()
        .filter_map(|view| Some((view["name"].as_str()?.to_string(), view)))
        .collect()
}

/// Starts the agent on `supervisor`'s run directory and control socket.
fn start_agent(supervisor: &Supervisor, log: &str, args: &[&str]) -> AgentProcess {
    let socket = supervisor.socket();
    let mut arguments = vec![OsStr::new("--supervisor-socket"), socket.as_os_str()];
    arguments.extend(args.iter().map(OsStr::new));
    AgentProcess::start(
        &supervisor.run_dir,
        supervisor.scratch.path().join(log),
        &arguments,
    )
}

/// Context for a failed assertion: the daemon's and the agent's logs.
fn logs(supervisor: &Supervisor, agent: &AgentProcess) -> String {
    format!(
        "supervisord log:\n{}\nagent log:\n{}",
        supervisor.daemon_log(),
        agent.log()
    )
}

/// Bytes each allocation of the OOM job touches: four times its limit.
const OOM_ALLOCATION: u64 = 64 << 20;

/// Allocations, and so OOM kills, in each run of the OOM job.
const KILLS_PER_RUN: u64 = 2;

/// Restarts of the OOM job before it becomes FATAL.
const OOM_RESTARTS: u64 = 3;

#[test]
fn oom_kills_counted_once_across_restarts() {
    if !require_root("oom_kills_counted_once_across_restarts") {
        return;
    }
    let _serial = serial();
    let mut supervisor = Supervisor::new("agent-oom");
    // The shell runs two allocations over the limit, each OOM-killed, and
    // exits 1, so on-failure restarts it until max_restarts is used up.
    let probe = probe();
    let script = format!("{probe} alloc {OOM_ALLOCATION}; {probe} alloc {OOM_ALLOCATION}; exit 1");
    supervisor.add_job(
        "oom",
        &json!({
            "image": "host",
            "command": ["/bin/sh", "-c", script],
            "init": true,
            "network": "none",
            "resources": {"memory": "16M", "pids": 16},
            "restart": {"policy": "on-failure", "max_restarts": OOM_RESTARTS, "window": "10m",
                        "backoff": {"initial": "500ms", "max": "500ms"}},
            "stop": {"timeout": "2s"}
        })
        .to_string(),
    );
    supervisor.start();
    let agent = start_agent(&supervisor, "agent.log", &[]);

    // Scrape until the job has been FATAL for three scrapes.
    let mut counted: Vec<f64> = Vec::new();
    let mut fatal_scrapes = 0;
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while fatal_scrapes < 3 {
        assert!(
            Instant::now() < deadline,
            "the OOM job did not become FATAL within 120 s; last scrape:\n{last}\n{}",
            logs(&supervisor, &agent)
        );
        last = agent.scrape();
        if let Some(value) = job_value(&last, "corral_job_oom_kills_total", "oom") {
            counted.push(value);
        }
        if last.contains(r#"corral_job_state{name="oom",state="FATAL"} 1"#) {
            fatal_scrapes += 1;
        }
        sleep(Duration::from_millis(100));
    }

    let views = job_views(&supervisor);
    let view = &views["oom"];
    let total = (OOM_RESTARTS + 1) * KILLS_PER_RUN;
    assert_eq!(
        view["restarts"],
        json!(OOM_RESTARTS),
        "supervisord's restarts: {view}"
    );
    // The shell reports each child that SIGKILL ended, the kernel's count.
    let killed = supervisor
        .job_log("oom", "stderr")
        .matches("Killed")
        .count() as u64;
    assert_eq!(
        killed,
        total,
        "children the shell saw killed:\n{}",
        supervisor.job_log("oom", "stderr")
    );

    assert!(
        view.get("oom_kills").is_some(),
        "supervisord's job list has no `oom_kills`, the OOM kills of the job's ended \
         containers summed from their exit records, which corral_job_oom_kills_total \
         exports: {view}"
    );
    assert_eq!(
        view["oom_kills"],
        json!(total),
        "supervisord's count: {view}"
    );

    assert_eq!(
        counted.last().copied(),
        Some(total as f64),
        "last corral_job_oom_kills_total; every value seen: {counted:?}\n{}",
        logs(&supervisor, &agent)
    );
    assert_eq!(
        job_value(&last, "corral_job_restarts_total", "oom"),
        Some(OOM_RESTARTS as f64),
        "{last}"
    );
    for pair in counted.windows(2) {
        assert!(pair[0] <= pair[1], "the counter went down: {counted:?}");
    }
    for value in &counted {
        // Runs end whole: a count between two runs' totals would mean a
        // kill counted twice or a run counted in part.
        assert_eq!(
            *value as u64 % KILLS_PER_RUN,
            0,
            "a value that is no whole number of runs: {counted:?}"
        );
    }
}

#[test]
fn restarted_container_gets_fresh_series() {
    if !require_root("restarted_container_gets_fresh_series") {
        return;
    }
    let _serial = serial();
    let mut supervisor = Supervisor::new("agent-restart");
    // Each run keeps a CPU busy for 3 s and fails, so the next one starts
    // 1 s later.
    let script = format!("{} spin 1 3; exit 1", probe());
    supervisor.add_job(
        "restarter",
        &json!({
            "image": "host",
            "command": ["/bin/sh", "-c", script],
            "network": "none",
            "restart": {"policy": "on-failure", "max_restarts": 2, "window": "10m",
                        "backoff": {"initial": "1s", "max": "1s"}},
            "stop": {"timeout": "2s"}
        })
        .to_string(),
    );
    supervisor.start();
    let agent = start_agent(&supervisor, "agent.log", &[]);
    let metric = "container_cpu_usage_seconds_total";

    // The first container, once it has used a tenth of a second of CPU. On a
    // loaded machine the busy thread gets less than a whole CPU.
    let mut first_id = None;
    let mut first_cpu = 0.0;
    let mut first_container = None;
    let found = wait_until(Duration::from_secs(30), || {
        let text = agent.scrape();
        let Some(line) = job_lines(&text, metric, "restarter").first().copied() else {
            return false;
        };
        let cpu: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        first_id = label_value(line, "id");
        first_cpu = cpu;
        first_container = job_views(&supervisor)["restarter"]["container_id"]
            .as_str()
            .map(str::to_string);
        cpu >= 0.1
    });
    assert!(
        found,
        "the first container never used 0.1 s of CPU\n{}",
        logs(&supervisor, &agent)
    );
    let first_id = first_id.expect("the id label of the first container");
    let first_container = first_container.expect("supervisord names the running container");
    let first_start = job_value(&agent.scrape(), "container_start_time_seconds", "restarter");
    let first_label = format!(r#"id="{first_id}""#);

    // Follow the first container to its end. Its series must be gone from
    // the first scrape after supervisord reports the end.
    let ended = wait_until(Duration::from_secs(30), || {
        let view = &job_views(&supervisor)["restarter"];
        let live = view["state"] == json!("STARTING") || view["state"] == json!("RUNNING");
        let running_first = live && view["container_id"].as_str() == Some(first_container.as_str());
        if running_first {
            let text = agent.scrape();
            if let Some(cpu) = job_value(&text, metric, "restarter") {
                if text.contains(&first_label) {
                    first_cpu = cpu;
                }
            }
        }
        !running_first
    });
    assert!(
        ended,
        "the first container did not end within 30 s\n{}",
        logs(&supervisor, &agent)
    );
    let after_end = agent.scrape();
    assert!(
        !after_end.contains(&first_label),
        "series of the ended container {first_id} in the next scrape:\n{after_end}"
    );

    // The second container starts from zero.
    let mut second = None;
    let appeared = wait_until(Duration::from_secs(30), || {
        let text = agent.scrape();
        assert!(
            !text.contains(&first_label),
            "series of the ended container {first_id} came back:\n{text}"
        );
        let line = job_lines(&text, metric, "restarter").first().copied();
        second = line.map(|line| {
            let cpu: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            let start = job_value(&text, "container_start_time_seconds", "restarter");
            (label_value(line, "id"), cpu, start)
        });
        second.is_some()
    });
    assert!(
        appeared,
        "no second container within 30 s\n{}",
        logs(&supervisor, &agent)
    );
    let (second_id, second_cpu, second_start) = second.unwrap();
    assert_ne!(
        second_id.as_deref(),
        Some(first_id.as_str()),
        "a new container has a new cgroup"
    );
    assert!(
        second_cpu < first_cpu,
        "the second container's CPU counter {second_cpu} s does not start fresh \
         below the first one's last value {first_cpu} s"
    );
    assert!(
        second_start > first_start,
        "start times: first {first_start:?}, second {second_start:?}"
    );
}

/// Forks per second the churn job must reach.
const FORKS_PER_SECOND: f64 = 500.0;

/// Scrapes taken while the churn job forks.
const CHURN_SCRAPES: usize = 100;

/// Returns the last fork count the churn job printed.
fn forks_so_far(supervisor: &Supervisor) -> Option<u64> {
    supervisor
        .job_log("churn", "stdout")
        .lines()
        .rev()
        .find_map(|line| line.trim().parse().ok())
}

#[test]
fn scrapes_succeed_during_fork_churn() {
    if !require_root("scrapes_succeed_during_fork_churn") {
        return;
    }
    let _serial = serial();
    let mut supervisor = Supervisor::new("agent-churn");
    // Batches of 50 short-lived processes, as fast as one CPU allows, with
    // the running total printed after each batch. A background `:` is a
    // fork of the shell without an exec, so a loaded machine still reaches
    // the rate.
    let script = "n=0; while :; do i=0; while [ $i -lt 50 ]; do : & i=$((i+1)); done; \
                  wait; n=$((n+50)); echo $n; done";
    supervisor.add_job(
        "churn",
        &json!({
            "image": "host",
            "command": ["/bin/sh", "-c", script],
            "init": true,
            "network": "none",
            "resources": {"cpus": 1.0, "pids": 128, "memory": "64M"},
            "restart": {"policy": "never"},
            "stop": {"timeout": "2s"}
        })
        .to_string(),
    );
    supervisor.start();
    supervisor.wait_for_status("churn", "RUNNING", Duration::from_secs(30));
    let agent = start_agent(&supervisor, "agent.log", &[]);
    assert!(
        wait_until(Duration::from_secs(20), || forks_so_far(&supervisor)
            .is_some()),
        "the churn job printed no fork count\n{}",
        logs(&supervisor, &agent)
    );

    let started = Instant::now();
    let forks_before = forks_so_far(&supervisor).unwrap();
    let mut saw_children = 0;
    for scrape in 0..CHURN_SCRAPES {
        let (status, text) = http_get(agent.address, "/metrics")
            .unwrap_or_else(|error| panic!("scrape {scrape} failed: {error}"));
        assert_eq!(status, 200, "scrape {scrape}: {text}\n{}", agent.log());
        let processes = job_value(&text, "container_processes", "churn");
        assert!(
            processes.is_some(),
            "scrape {scrape} lost the churning container:\n{text}"
        );
        if processes > Some(2.0) {
            saw_children += 1;
        }
        assert!(
            read_errors(&text).is_empty(),
            "scrape {scrape} counted read errors: {:?}\n{}",
            read_errors(&text),
            agent.log()
        );
        if scrape % 10 == 0 {
            if let Some((passed, report)) = promtool_check(&text) {
                assert!(passed, "scrape {scrape}: promtool: {report}\n{text}");
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let forks = forks_so_far(&supervisor).unwrap() - forks_before;

    assert!(
        saw_children > 0,
        "no scrape saw the job's short-lived children besides init and shell"
    );
    let rate = forks as f64 / elapsed;
    assert!(
        rate >= FORKS_PER_SECOND,
        "the job forked {forks} times in {elapsed:.1} s ({rate:.0}/s), below \
         {FORKS_PER_SECOND}/s, so the scrapes did not see the churn they must survive"
    );
    eprintln!(
        "churn: {CHURN_SCRAPES} scrapes in {elapsed:.1} s during {rate:.0} forks/s, \
         {saw_children} of them with children"
    );
}

#[test]
fn real_containers_export_labels() {
    if !require_root("real_containers_export_labels") {
        return;
    }
    let _serial = serial();
    let mut supervisor = Supervisor::new("agent-labels");
    let sleeper = |labels: Value| {
        json!({
            "image": "host",
            "command": ["/bin/sleep", "600"],
            "network": "loopback",
            "resources": {"memory": "16M"},
            "stop": {"timeout": "2s"},
            "labels": labels
        })
        .to_string()
    };
    supervisor.add_job(
        "labeled",
        &sleeper(json!({"team": "web", "app.kubernetes.io/name": "corral"})),
    );
    supervisor.add_job("plain", &sleeper(json!({})));
    supervisor.start();
    supervisor.wait_for_status("labeled", "RUNNING", Duration::from_secs(30));
    supervisor.wait_for_status("plain", "RUNNING", Duration::from_secs(30));

    let every = start_agent(&supervisor, "every.log", &[]);
    let only_team = start_agent(&supervisor, "team.log", &["--container-label", "team"]);
    let none = start_agent(&supervisor, "none.log", &["--no-container-labels"]);

    let (status, body) = http_get(every.address, "/healthz").expect("GET /healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let text = every.scrape();
    let memory = "container_memory_usage_bytes";
    let labeled = job_lines(&text, memory, "labeled");
    assert_eq!(labeled.len(), 1, "{text}");
    assert!(
        labeled[0].contains(r#"container_label_team="web""#),
        "{}",
        labeled[0]
    );
    assert!(
        labeled[0].contains(r#"container_label_app_kubernetes_io_name="corral""#),
        "{}",
        labeled[0]
    );
    let plain = job_lines(&text, memory, "plain");
    assert_eq!(plain.len(), 1, "{text}");
    assert!(!plain[0].contains("container_label_"), "{}", plain[0]);
    assert!(
        text.contains(r#"corral_job_up{name="labeled"} 1"#),
        "{text}"
    );
    assert_state_file_ids(&supervisor, &text);
    assert!(read_errors(&text).is_empty(), "{:?}", read_errors(&text));
    if let Some((passed, report)) = promtool_check(&text) {
        assert!(passed, "promtool check metrics: {report}\n{text}");
    }

    let team = only_team.scrape();
    let labeled = job_lines(&team, memory, "labeled");
    assert!(
        labeled[0].contains(r#"container_label_team="web""#),
        "{}",
        labeled[0]
    );
    assert!(
        !labeled[0].contains("container_label_app"),
        "{}",
        labeled[0]
    );

    let bare = none.scrape();
    assert!(!bare.contains("container_label_"), "{bare}");
    assert_eq!(job_lines(&bare, memory, "labeled").len(), 1, "{bare}");
}

/// Asserts that each running container's series carry the cgroup path of
/// its state file as `id`.
fn assert_state_file_ids(supervisor: &Supervisor, text: &str) {
    let containers = supervisor.containers_dir();
    let entries = fs::read_dir(&containers).expect("list the containers directory");
    let mut checked = 0;
    for entry in entries.flatten() {
        let path = entry.path().join("state.json");
        let Ok(body) = fs::read(&path) else {
            continue;
        };
        let state: Value = serde_json::from_slice(&body).expect("valid state file");
        let id = state["cgroupId"].as_str().expect("cgroupId");
        let job = state["job"].as_str().expect("job");
        let lines = job_lines(text, "container_memory_usage_bytes", job);
        assert_eq!(
            lines
                .first()
                .and_then(|line| label_value(line, "id"))
                .as_deref(),
            Some(id),
            "{}: {lines:?}",
            Path::new(&path).display()
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "state files in {}", containers.display());
}
