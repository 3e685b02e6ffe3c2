//! Starting one container of a job through `corral-monitor` and
//! `corral shim`, and reading back how it ended.
//!
//! Per container: the bundle `DATA_DIR/bundles/ID/config.json` with the
//! monitor's log settings `logs.json` beside it, the exit record
//! `RUN_DIR/exits/ID.json` and the pid file `RUN_DIR/pids/ID.pid`. The
//! monitor runs in its own session, so a signal to supervisord's process
//! group or the end of supervisord does not reach it or the shim.

use std::fs;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use corral_config::JobSpec;
use corral_runtime::job::{self, JobContainer, JobSpecError};
use corral_runtime::state::ExitRecord;

use crate::daemon::logs::{self, LogError};
use crate::daemon::monitor_handle::MonitorHandle;
use crate::daemon::pidfd::PidFd;
use crate::daemon::ports::{self, BoundPorts, PortError};
use crate::daemon::record::read_record;
use crate::daemon::{DaemonConfig, ShimStatus};
use crate::machine::{KeptRestarts, Termination};
use crate::monitor::LogSettings;

/// Exit status of the shim, or of its monitor, when it failed before the
/// container ran.
pub const SHIM_SETUP_FAILED: i32 = 125;

/// Name of the monitor's log settings file in the bundle directory.
pub const LOG_SETTINGS_FILE: &str = "logs.json";

/// Name of the file in the bundle directory that keeps the job spec the
/// container was started from, for a restarted supervisord.
pub const JOB_SPEC_FILE: &str = "job.json";

/// An error starting a container.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Logs(#[from] LogError),
    #[error(transparent)]
    Ports(#[from] PortError),
    #[error("failed to build the bundle of container {id}")]
    Bundle {
        id: String,
        #[source]
        source: JobSpecError,
    },
    #[error("failed to write the log settings {path}")]
    LogSettings {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the launch of container {id} failed: {message}")]
    Task { id: String, message: String },
    #[error("failed to run {monitor} for container {id}")]
    Spawn {
        monitor: PathBuf,
        id: String,
        #[source]
        source: io::Error,
    },
}

/// An error reading the job spec that a container was started from.
#[derive(Debug, thiserror::Error)]
pub enum LaunchedSpecError {
    /// Containers started by supervisord versions that did not keep the
    /// spec have none, and neither have those whose launch failed to write
    /// it.
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid job spec {path}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The data a restarted supervisord needs to adopt a running container,
/// stored as `RUN_DIR/shims/ID.json` while its monitor runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShimRecord {
    pub job: String,
    pub container_id: String,
    /// PID of the container's `corral-monitor`. Records of supervisord
    /// versions without a monitor name the shim as `shim_pid`; it takes the
    /// same signals and is adopted the same way.
    #[serde(alias = "shim_pid")]
    pub monitor_pid: i32,
    /// When the shim was spawned, in seconds since the Unix epoch.
    pub started_at: f64,
    pub stderr_offset: u64,
    /// The job's restarts when the container was launched, so that the
    /// restart limit still counts them after a restart of supervisord.
    #[serde(default)]
    pub restarts: KeptRestarts,
}

/// A monitor that was just spawned.
#[derive(Debug)]
pub struct Launched {
    /// The monitor, a child of supervisord that still has to be reaped.
    pub monitor: MonitorHandle,
    pub stderr_offset: u64,
    /// Listeners of the job's published ports, bound before the shim ran.
    pub ports: BoundPorts,
}

/// Returns a new container id: the job name, a dash and 8 random hex digits.
pub fn new_container_id(job_name: &str) -> String {
    format!("{job_name}-{:08x}", fastrand::u32(..))
}

/// Builds the OCI config of one container of `job_name`.
pub fn build_spec(
    config: &DaemonConfig,
    job_name: &str,
    container_id: &str,
    spec: &JobSpec,
) -> Result<oci_spec::runtime::Spec, JobSpecError> {
    let container = JobContainer {
        job_name,
        container_id,
        data_dir: &config.data_dir,
        cgroup_parent: &config.cgroup_parent,
    };
    job::oci_spec(spec, &container)
}

/// Gives `oci`, the config of another container of job `job_name`, the
/// overlay directory and cgroup of container `container_id`.
pub fn reassign_spec(
    config: &DaemonConfig,
    job_name: &str,
    container_id: &str,
    oci: &mut oci_spec::runtime::Spec,
) {
    let container = JobContainer {
        job_name,
        container_id,
        data_dir: &config.data_dir,
        cgroup_parent: &config.cgroup_parent,
    };
    job::for_container(oci, &container);
}

/// Prepares the logs, writes the bundle and spawns the monitor, which runs
/// the shim, for container `id`.
pub fn launch(
    config: &DaemonConfig,
    job_name: &str,
    id: &str,
    spec: &JobSpec,
    (stdout_log, stderr_log): (&Path, &Path),
    restarts: KeptRestarts,
) -> Result<Launched, LaunchError> {
    let ports = ports::bind(&spec.ports)?;
    let log_dir = stdout_log.parent().unwrap_or(&config.log_dir);
    let permissions = config.log_permissions();
    let stderr_offset =
        logs::prepare_job_logs(log_dir, stdout_log, stderr_log, &spec.logs, permissions)?;

    let bundle = config.bundle_dir(id);
    let bundle_error = |source| LaunchError::Bundle {
        id: id.to_string(),
        source,
    };
    let oci = build_spec(config, job_name, id, spec).map_err(bundle_error)?;
    job::write_bundle(&oci, &bundle).map_err(bundle_error)?;
    let spec_file = bundle.join(JOB_SPEC_FILE);
    let spec_written = serde_json::to_vec(spec)
        .map_err(io::Error::other)
        .and_then(|body| fs::write(&spec_file, body));
    if let Err(error) = spec_written {
        // The container runs fine without it; a restarted supervisord then
        // cannot tell whether the job file changed meanwhile.
        tracing::warn!(job = %job_name, container_id = %id, path = %spec_file.display(), %error, "failed to keep the job spec beside the bundle");
    }
    let settings_file = bundle.join(LOG_SETTINGS_FILE);
    if let Err(source) = LogSettings::for_job(spec).write(&settings_file) {
        remove_container_files(config, id);
        return Err(LaunchError::LogSettings {
            path: settings_file,
            source,
        });
    }

    let pid_file = config.pid_file(id);
    let mut command = Command::new(&config.monitor);
    command
        .arg("--stdout")
        .arg(stdout_log)
        .arg("--stderr")
        .arg(stderr_log)
        .arg("--settings")
        .arg(&settings_file)
        .arg("--log-format")
        .arg(config.log_format.name())
        .arg("--job")
        .arg(job_name)
        .arg("--container-id")
        .arg(id);
    if let Some(group) = config.socket_group {
        command.arg("--log-group").arg(group.to_string());
    }
    if let Some(limit) = crate::daemon::limits::original_soft_limit() {
        command.arg("--open-files").arg(limit.to_string());
    }
    // The shim runs from runtime_exec, a /proc/PID/fd/N path that would
    // otherwise be its argv[0]. corral also names its process after the
    // file name of argv[0].
    if let Some(name) = config.runtime.file_name() {
        command.arg("--arg0").arg(name);
    }
    // A supervisord that dies before the monitor runs the shim takes the
    // /proc/PID/fd/N path with it. A shim started from `config.runtime`
    // executes itself once more to reach a read-only view of its own.
    if config.runtime_exec.is_some() {
        command.arg("--fallback").arg(&config.runtime);
    }
    command
        .arg("--")
        .arg(config.runtime_exec.as_ref().unwrap_or(&config.runtime))
        .arg("--root")
        .arg(config.containers_root())
        .arg("shim")
        .arg(id)
        .arg("--bundle")
        .arg(&bundle)
        .arg("--exit-file")
        .arg(config.exit_file(id))
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--stopped-file")
        .arg(config.stopped_file(id))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // Without a pre_exec step std starts the monitor with posix_spawn, which
    // does not copy supervisord's page tables as fork does. The monitor
    // starts its own session and sets the open files limit itself.

    let spawn_error = |source| LaunchError::Spawn {
        monitor: config.monitor.clone(),
        id: id.to_string(),
        source,
    };
    // A record without the monitor's PID comes first, so that a
    // supervisord killed right after the spawn leaves the next one a
    // record to find the monitor by (see find_live_monitor).
    let mut record = ShimRecord {
        job: job_name.to_string(),
        container_id: id.to_string(),
        monitor_pid: 0,
        started_at: unix_now(),
        stderr_offset,
        restarts,
    };
    if let Err(error) = write_shim_record(config, &record) {
        tracing::warn!(container_id = %id, %error, "failed to write the shim record");
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(source) => {
            remove_container_files(config, id);
            return Err(spawn_error(source));
        }
    };
    let Ok(pid) = i32::try_from(child.id()) else {
        return Err(spawn_error(io::Error::other(
            "the monitor's PID is out of range",
        )));
    };
    // Dropping a std Child neither waits nor kills. The supervisor task
    // reaps the monitor on SIGCHLD.
    drop(child);
    let monitor = MonitorHandle::Child { pid };
    record.monitor_pid = pid;
    if let Err(error) = write_shim_record(config, &record) {
        // The container runs fine without it; only adoption after a crash
        // of supervisord needs it.
        tracing::warn!(container_id = %id, %error, "failed to write the shim record");
    }
    Ok(Launched {
        monitor,
        stderr_offset,
        ports,
    })
}

/// Writes new rotation limits for the monitor of container `id` and makes
/// it read them.
pub fn update_log_settings(
    config: &DaemonConfig,
    id: &str,
    monitor: &MonitorHandle,
    settings: LogSettings,
) -> io::Result<()> {
    settings.write(&config.bundle_dir(id).join(LOG_SETTINGS_FILE))?;
    monitor.send_raw_signal(crate::monitor::reload_signal())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes the record through a temporary file and a rename, so a reader
/// never sees half of it.
fn write_shim_record(config: &DaemonConfig, record: &ShimRecord) -> io::Result<()> {
    let path = config.shim_record(&record.container_id);
    let temporary = path.with_extension("json.tmp");
    let body = serde_json::to_vec(record).map_err(io::Error::other)?;
    fs::write(&temporary, body)?;
    fs::rename(&temporary, &path)
}

/// Reads every shim record left in the run directory. Unreadable records
/// are logged and removed.
pub fn read_shim_records(config: &DaemonConfig) -> Vec<ShimRecord> {
    let dir = config.shims_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::error!(dir = %dir.display(), %error, "failed to list shim records");
            }
            return Vec::new();
        }
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|extension| extension.to_str()) != Some("json") {
            continue;
        }
        let parsed = read_record(&path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<ShimRecord>(&bytes).map_err(|error| error.to_string())
            });
        match parsed {
            Ok(record) => records.push(record),
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "removing an unreadable shim record");
                let _ = fs::remove_file(&path);
            }
        }
    }
    records.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    records
}

/// Opens a pidfd for the monitor of `record` if that process still runs
/// and is that monitor: its command line names `shim` and the container
/// id, so a reused PID is not mistaken for it.
pub fn find_live_monitor(record: &ShimRecord) -> Option<PidFd> {
    let pid = match record.monitor_pid {
        0 => find_monitor_by_id(&record.container_id)?,
        pid => pid,
    };
    let shim = PidFd::open(pid).ok()?;
    // Checked after the pidfd is open, so that the PID cannot be reused in
    // between.
    runs_monitor_of(pid, &record.container_id, false).then_some(shim)
}

/// Returns whether process `pid` runs the monitor, or with `monitor_only`
/// false also the shim or init, of container `id`: its command line has
/// the `shim` verb and the id, and the monitor's also `--settings`.
fn runs_monitor_of(pid: i32, id: &str, monitor_only: bool) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let arguments: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
    arguments.contains(&b"shim".as_slice())
        && arguments.contains(&id.as_bytes())
        && (!monitor_only || arguments.contains(&b"--settings".as_slice()))
}

/// Finds the monitor of container `id` among all processes, for a shim
/// record written before its monitor's PID was known.
fn find_monitor_by_id(id: &str) -> Option<i32> {
    fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| runs_monitor_of(pid, id, true))
}

/// Works out how a container ended from its exit record, or from the shim's
/// own exit status when there is no record.
pub fn read_termination(
    config: &DaemonConfig,
    id: &str,
    shim_status: &ShimStatus,
    stderr_log: &Path,
    stderr_offset: u64,
) -> (Termination, Option<ExitRecord>) {
    let exit_file = config.exit_file(id);
    let record = match read_record(&exit_file) {
        Ok(bytes) => match serde_json::from_slice::<ExitRecord>(&bytes) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::error!(container_id = %id, file = %exit_file.display(), %error, "invalid exit record");
                None
            }
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => {
            tracing::error!(container_id = %id, file = %exit_file.display(), %error, "failed to read exit record");
            None
        }
    };
    if let Some(record) = &record {
        let termination = match &record.signal {
            Some(signal) => Termination::Signaled {
                signal: signal.clone(),
                status: record.status,
            },
            None => Termination::Exited {
                code: record.status,
            },
        };
        return (termination, Some(record.clone()));
    }
    let termination = match shim_status {
        ShimStatus::Adopted => Termination::ShimLost {
            status: "exit status unknown: the shim was started by an earlier supervisord"
                .to_string(),
        },
        ShimStatus::Reaped(Ok(status)) if status.code() == Some(SHIM_SETUP_FAILED) => {
            Termination::SetupFailed {
                message: logs::read_setup_error(stderr_log, stderr_offset).unwrap_or_else(|| {
                    format!("corral shim exited {SHIM_SETUP_FAILED} without a message")
                }),
            }
        }
        ShimStatus::Reaped(Ok(status)) => Termination::ShimLost {
            status: describe_status(*status),
        },
        ShimStatus::Reaped(Err(error)) => Termination::ShimLost {
            status: format!("wait failed: {error}"),
        },
    };
    (termination, None)
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        _ => status.to_string(),
    }
}

/// Reads the job spec that container `id` was started from, which
/// [`launch`] keeps in the bundle as [`JOB_SPEC_FILE`].
pub fn read_launched_spec(config: &DaemonConfig, id: &str) -> Result<JobSpec, LaunchedSpecError> {
    let path = config.bundle_dir(id).join(JOB_SPEC_FILE);
    let text = match read_record(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(LaunchedSpecError::Missing { path })
        }
        Err(source) => return Err(LaunchedSpecError::Read { path, source }),
    };
    serde_json::from_slice(&text).map_err(|source| LaunchedSpecError::Invalid { path, source })
}

/// Removes the bundle, exit record and pid file of a container that ended.
/// Errors are logged, because a leftover file harms nothing but disk space.
pub fn remove_container_files(config: &DaemonConfig, id: &str) {
    let bundle = config.bundle_dir(id);
    if let Err(error) = fs::remove_dir_all(&bundle) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(container_id = %id, path = %bundle.display(), %error, "failed to remove bundle");
        }
    }
    for path in [
        config.exit_file(id),
        config.pid_file(id),
        config.stopped_file(id),
        config.shim_record(id),
    ] {
        if let Err(error) = fs::remove_file(&path) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(container_id = %id, path = %path.display(), %error, "failed to remove file");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Returns a config with every directory below `root` and binaries
    /// that do not exist, for tests that start no container.
    pub(crate) fn config(root: &Path) -> DaemonConfig {
        DaemonConfig {
            jobs_dir: root.join("jobs"),
            run_dir: root.join("run"),
            data_dir: root.join("data"),
            log_dir: root.join("log"),
            cgroup_parent: "corral-test".to_string(),
            runtime: PathBuf::from("/nonexistent/corral"),
            runtime_exec: None,
            monitor: PathBuf::from("/nonexistent/corral-monitor"),
            live_restore: false,
            socket_group: None,
            max_connections: crate::daemon::DEFAULT_MAX_CONNECTIONS,
            log_format: crate::cli::daemon::LogFormat::Text,
        }
    }

    /// A restarted supervisord compares the kept spec with the job file, so
    /// the kept spec must read back equal to what was written.
    #[test]
    fn kept_job_spec_reads_back_equal() {
        let text = r#"{
            "image": "host",
            "command": ["/bin/sh", "-c", "exec sleep 300"],
            "env": {"GREETING": "hello world"},
            "working_dir": "/tmp",
            "user": "0:0",
            "hostname": "kept",
            "resources": {"memory": "128M", "memory_swap": "256M", "cpus": 0.5,
                          "cpu_weight": 100, "pids": 64,
                          "io": {"weight": 200}},
            "network": "loopback",
            "ports": [{"host": "127.0.0.1:18080", "container": 8080}],
            "mounts": [{"type": "tmpfs", "target": "/scratch", "size": "16M"}],
            "readonly_rootfs": true,
            "init": true,
            "restart": {"policy": "on-failure", "max_restarts": 5, "window": "2m",
                        "backoff": {"initial": "250ms", "max": "30s"}},
            "start_seconds": "1500ms",
            "stop": {"signal": "SIGINT", "timeout": "20s"},
            "logs": {"max_size": "10M", "keep": 3},
            "labels": {"team": "web"},
            "cap_add": ["NET_BIND_SERVICE"],
            "cap_drop": ["CHOWN"]
        }"#;
        let job =
            corral_config::parse_job_str("kept", Path::new("kept.json"), text).expect("valid job");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let id = "kept-0123abcd";
        fs::create_dir_all(config.bundle_dir(id)).expect("bundle dir");
        let body = serde_json::to_vec(&job.spec).expect("encode");
        fs::write(config.bundle_dir(id).join(JOB_SPEC_FILE), body).expect("write");
        let kept = read_launched_spec(&config, id).expect("read back");
        assert_eq!(kept, job.spec);
        assert!(!crate::daemon::reload::needs_restart(&kept, &job.spec));
    }

    #[test]
    fn monitors_are_found_by_container_id() {
        let id = new_container_id("found");
        let mut monitor = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30; true", "--settings", "x", "shim", &id])
            .spawn()
            .expect("spawn a stand-in monitor");
        let pid = i32::try_from(monitor.id()).expect("pid");
        // The child shows its command line once it has executed the shell.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = find_monitor_by_id(&id);
        while found.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = find_monitor_by_id(&id);
        }
        let record = ShimRecord {
            job: "found".to_string(),
            container_id: id.clone(),
            monitor_pid: 0,
            started_at: 0.0,
            stderr_offset: 0,
            restarts: KeptRestarts::default(),
        };
        let live = find_live_monitor(&record).is_some();
        monitor.kill().expect("kill the stand-in");
        monitor.wait().expect("reap the stand-in");
        assert_eq!(found, Some(pid));
        assert!(live);
        assert_eq!(find_monitor_by_id(&new_container_id("missing")), None);
    }

    #[test]
    fn container_ids_are_name_and_hex() {
        let id = new_container_id("web");
        assert_eq!(id.len(), "web-".len() + 8, "{id}");
        assert!(id.starts_with("web-"));
        assert!(id[4..].bytes().all(|byte| byte.is_ascii_hexdigit()), "{id}");
        assert_ne!(new_container_id("web"), new_container_id("web"));
    }

    #[test]
    fn records_of_older_versions_name_the_shim() {
        let old = r#"{"job": "web", "container_id": "web-00000001", "shim_pid": 42,
                      "started_at": 1.5, "stderr_offset": 0}"#;
        let record: ShimRecord = serde_json::from_str(old).unwrap();
        assert_eq!(record.monitor_pid, 42);
    }

    #[test]
    fn termination_from_exit_record() {
        let root = tempfile::tempdir().unwrap();
        let config = config(root.path());
        fs::create_dir_all(config.exits_dir()).unwrap();
        let record = ExitRecord {
            id: "web-00000001".to_string(),
            status: 137,
            signal: Some("SIGKILL".to_string()),
            oom_kills: 1,
            started_at: 1.0,
            finished_at: 2.0,
        };
        fs::write(
            config.exit_file("web-00000001"),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        let shim_status = ShimStatus::Reaped(Ok(ExitStatus::from_raw(137 << 8)));
        let (termination, read) = read_termination(
            &config,
            "web-00000001",
            &shim_status,
            Path::new("/nonexistent"),
            0,
        );
        assert_eq!(
            termination,
            Termination::Signaled {
                signal: "SIGKILL".to_string(),
                status: 137
            }
        );
        assert_eq!(read.map(|record| record.oom_kills), Some(1));
    }

    #[test]
    fn setup_failure_reads_stderr() {
        let root = tempfile::tempdir().unwrap();
        let config = config(root.path());
        let stderr = root.path().join("stderr.log");
        fs::write(
            &stderr,
            "corral: image directory /srv/x is not a directory\n",
        )
        .unwrap();
        let shim_status = ShimStatus::Reaped(Ok(ExitStatus::from_raw(125 << 8)));
        let (termination, record) =
            read_termination(&config, "job-00000002", &shim_status, &stderr, 0);
        assert!(record.is_none());
        assert_eq!(
            termination,
            Termination::SetupFailed {
                message: "corral: image directory /srv/x is not a directory".to_string()
            }
        );
    }

    #[test]
    fn shim_killed_without_record() {
        let root = tempfile::tempdir().unwrap();
        let config = config(root.path());
        let shim_status = ShimStatus::Reaped(Ok(ExitStatus::from_raw(libc::SIGKILL)));
        let (termination, _) =
            read_termination(&config, "job-00000003", &shim_status, Path::new("/x"), 0);
        assert_eq!(
            termination,
            Termination::ShimLost {
                status: "killed by SIGKILL".to_string()
            }
        );
    }

    #[test]
    fn spawn_failure_names_monitor_and_cleans_bundle() {
        let root = tempfile::tempdir().unwrap();
        let config = config(root.path());
        let spec: JobSpec = serde_json::from_str(r#"{"command": ["/bin/true"]}"#).unwrap();
        let stdout = config.log_dir.join("web").join("stdout.log");
        let stderr = config.log_dir.join("web").join("stderr.log");
        let error = launch(
            &config,
            "web",
            "web-0000000a",
            &spec,
            (&stdout, &stderr),
            KeptRestarts::default(),
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("/nonexistent/corral-monitor"), "{message}");
        assert!(!config.bundle_dir("web-0000000a").exists());
        assert!(stdout.exists(), "log files are created before the spawn");
    }
}
