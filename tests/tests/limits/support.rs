//! Running jobs under measurement: a foreground run that can be sampled while
//! it lasts, OCI config patches, cgroup file readers and a metrics agent that
//! exports a sandbox's container.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_runtime::state::{CgroupPaths, ContainerState, ExitRecord};
use corral_tests::daemon::Agent;
use corral_tests::sandbox::Sandbox;
use corral_tests::wait_until;
use serde_json::Value;

/// How long a job may take to start before a check gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A job run in the foreground by `corral run`, so that its exit record is
/// written, while the test samples its cgroup.
pub struct ForegroundRun<'a> {
    sandbox: &'a Sandbox,
    child: Child,
}

impl<'a> ForegroundRun<'a> {
    /// Starts `corral run` and waits until the container's state file names
    /// its cgroup.
    pub fn start(sandbox: &'a Sandbox) -> (Self, ContainerState) {
        let child = sandbox
            .corral()
            .args(["run", &sandbox.id, "--bundle"])
            .arg(sandbox.bundle())
            .arg("--exit-file")
            .arg(sandbox.exit_file())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start corral run");
        let mut run = ForegroundRun { sandbox, child };
        let mut state = None;
        let started = wait_until(START_TIMEOUT, || {
            state = ContainerState::load(&sandbox.root(), &sandbox.id)
                .ok()
                .filter(|state| state.pid.is_some());
            state.is_some() || matches!(run.child.try_wait(), Ok(Some(_)))
        });
        assert!(started, "container {} did not start", sandbox.id);
        // A job that ended before its state was seen still has an exit record.
        let state = state.unwrap_or_else(|| run.state_missing());
        (run, state)
    }

    fn state_missing(&mut self) -> ! {
        let record = self.wait(Duration::from_secs(5));
        panic!(
            "container {} ended before its state could be read: {record:?}",
            self.sandbox.id
        )
    }

    pub fn has_ended(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for `corral run` to exit and returns the exit record. After
    /// `timeout` the container is killed, and the record shows that.
    pub fn wait(&mut self, timeout: Duration) -> ExitRecord {
        let ended = wait_until(timeout, || self.has_ended());
        if !ended {
            let _ = self
                .sandbox
                .corral()
                .args(["kill", "--all", &self.sandbox.id, "KILL"])
                .output();
            let _ = self.child.wait();
        }
        let body = fs::read(self.sandbox.exit_file()).unwrap_or_else(|error| {
            panic!(
                "no exit record at {}: {error}",
                self.sandbox.exit_file().display()
            )
        });
        serde_json::from_slice(&body).expect("valid exit record")
    }
}

impl Drop for ForegroundRun<'_> {
    fn drop(&mut self) {
        if !self.has_ended() {
            let _ = self
                .sandbox
                .corral()
                .args(["kill", "--all", &self.sandbox.id, "KILL"])
                .output();
            let _ = self.child.wait();
        }
    }
}

/// Rewrites the sandbox's `config.json` through `edit`.
pub fn patch_config(sandbox: &Sandbox, edit: impl FnOnce(&mut Value)) {
    let path = sandbox.bundle().join("config.json");
    let text = fs::read(&path).expect("read config.json");
    let mut config: Value = serde_json::from_slice(&text).expect("config.json is JSON");
    edit(&mut config);
    fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).expect("write config.json");
}

/// Moves the sandbox's cgroup below `parent`, so that jobs compete as
/// siblings: CPU and I/O weights only divide time between siblings.
pub fn share_cgroup_parent(sandbox: &Sandbox, parent: &str) {
    patch_config(sandbox, |config| {
        config["linux"]["cgroupsPath"] = Value::from(format!("{parent}/{}", sandbox.id));
    });
}

/// Directory of the container's cgroup for `controller` (the unified
/// directory on v2).
pub fn cgroup_dir(state: &ContainerState, controller: &str) -> PathBuf {
    match &state.cgroup_paths {
        CgroupPaths::V1 { controllers } => controllers
            .get(controller)
            .unwrap_or_else(|| panic!("no v1 {controller} directory in {controllers:?}"))
            .clone(),
        CgroupPaths::V2 { path } => path.clone(),
    }
}

pub fn is_v2(state: &ContainerState) -> bool {
    matches!(state.cgroup_paths, CgroupPaths::V2 { .. })
}

/// Gives the parent cgroup of the container the maximum CPU weight, so that
/// processes outside it take CPU time from the job only when the job is idle
/// or throttled.
pub fn raise_parent_cpu_weight(state: &ContainerState) {
    let dir = cgroup_dir(state, "cpu");
    let parent = dir.parent().expect("container cgroup has a parent");
    let (file, value) = if is_v2(state) {
        ("cpu.weight", "10000")
    } else {
        ("cpu.shares", "262144")
    };
    let path = parent.join(file);
    fs::write(&path, value)
        .unwrap_or_else(|error| panic!("failed to write {value} to {}: {error}", path.display()));
}

/// Reads a file that contains one unsigned number.
pub fn read_u64(path: &Path) -> u64 {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} does not contain a number: {text:?}", path.display()))
}

/// Reads a file like [`read_u64`], but returns None when the file is gone or
/// does not contain a number.
pub fn try_read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads the value of `key` in a flat-keyed cgroup file (`KEY VALUE` lines).
pub fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// Memory charged to the container's cgroup now, in bytes.
pub fn memory_usage(state: &ContainerState) -> Option<u64> {
    let dir = cgroup_dir(state, "memory");
    if is_v2(state) {
        try_read_u64(&dir.join("memory.current"))
    } else {
        try_read_u64(&dir.join("memory.usage_in_bytes"))
    }
}

/// Reads the kernel's record of the cgroup's peak memory use, where it keeps
/// one.
pub fn memory_peak(state: &ContainerState) -> Option<u64> {
    let dir = cgroup_dir(state, "memory");
    if is_v2(state) {
        try_read_u64(&dir.join("memory.peak"))
    } else {
        try_read_u64(&dir.join("memory.max_usage_in_bytes"))
    }
}

/// Throttled CFS periods of the container's cgroup.
pub fn throttled_periods(state: &ContainerState) -> u64 {
    let path = cgroup_dir(state, "cpu").join("cpu.stat");
    read_keyed(&path, "nr_throttled")
        .unwrap_or_else(|| panic!("no nr_throttled in {}", path.display()))
}

/// PIDs of every process in the container's cgroup.
pub fn cgroup_pids(state: &ContainerState, controller: &str) -> Vec<i32> {
    let path = cgroup_dir(state, controller).join("cgroup.procs");
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// A metrics agent whose run directory shows the containers of one sandbox:
/// its `containers` entry is a symlink to the sandbox's state root.
pub struct SandboxAgent {
    pub agent: Agent,
    _run_dir: tempfile::TempDir,
}

impl SandboxAgent {
    pub fn start(sandbox: &Sandbox) -> Self {
        let run_dir = tempfile::Builder::new()
            .prefix("corral-limits-agent-")
            .tempdir()
            .expect("create agent run dir");
        std::os::unix::fs::symlink(sandbox.root(), run_dir.path().join("containers"))
            .expect("link the sandbox's state root into the agent's run dir");
        let agent = Agent::start(run_dir.path(), None);
        SandboxAgent {
            agent,
            _run_dir: run_dir,
        }
    }

    /// Scrapes the agent once and returns the value of `metric` for the job
    /// `name`.
    pub fn sample(&self, metric: &str, name: &str) -> Option<f64> {
        let body = self.agent.get("/metrics")?;
        metric_value(&body, metric, name)
    }
}

/// Finds `metric{...name="NAME"...} VALUE` in a text exposition.
pub fn metric_value(body: &str, metric: &str, name: &str) -> Option<f64> {
    let label = format!("name=\"{name}\"");
    body.lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .filter(|line| line.contains(&label))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Median of a non-empty list.
pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of no values");
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `command` on the host and returns how long it took.
pub fn time_host_command(command: &mut Command) -> Duration {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run a command on the host");
    assert!(status.success(), "host command failed with {status}");
    started.elapsed()
}

/// `value` as MiB with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

/// Relative difference of `measured` from `expected`, in percent.
pub fn deviation_percent(measured: f64, expected: f64) -> f64 {
    (measured - expected) / expected * 100.0
}
