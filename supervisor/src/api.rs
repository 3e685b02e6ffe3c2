//! JSON bodies of the control API, shared by supervisord and supervisorctl.
//!
//! Routes, all below `/v1` on the unix socket `RUN_DIR/supervisor.sock`:
//!
//! | method | path | body returned |
//! |---|---|---|
//! | GET | `/v1/jobs` | [`JobList`] |
//! | GET | `/v1/jobs/NAME` | [`JobView`] |
//! | POST | `/v1/jobs/NAME/start`, `stop`, `restart` | [`JobView`] once the job settled |
//! | POST | `/v1/jobs/NAME/signal` with [`SignalRequest`] | [`JobView`] |
//! | POST | `/v1/batch/start`, `stop`, `restart`, `signal` with [`BatchRequest`] | [`BatchReply`] once the request for every job has returned |
//! | GET | `/v1/jobs/NAME/spec` | the OCI `config.json` |
//! | POST | `/v1/reread` | [`ReloadReport`] of what `update` would change |
//! | POST | `/v1/update` | [`ReloadReport`] of what changed |
//! | GET | `/v1/stats` | [`StatsList`] |
//! | POST | `/v1/shutdown` | [`Message`] |
//!
//! `start`, `stop` and `restart` wait until the job leaves STARTING or
//! STOPPING unless the query has `wait=false`. Every error is an
//! [`ErrorBody`] with a 4xx or 5xx status, 404 for an unknown job. A
//! `/v1/batch` request acts on many jobs over one connection and returns
//! 200 with a result per job, each with the status and body that the
//! request for that job alone would have returned.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::machine::JobState;

/// One job as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub name: String,
    /// INVALID while the job file is invalid, else the lifecycle state.
    pub state: JobState,
    /// The lifecycle state of the last valid version, which differs from
    /// `state` while the file is invalid.
    pub process_state: JobState,
    /// The status text supervisorctl prints.
    pub description: String,
    /// Host PID of the container's init while it runs.
    pub pid: Option<i32>,
    /// Exit status of the last run: the exit code, or 128 plus the signal
    /// number.
    pub exit_status: Option<i32>,
    /// Name of the signal that ended the last run.
    pub signal: Option<String>,
    /// Whether the kernel OOM-killed a process of the last run.
    pub oom_killed: bool,
    /// The stop timeout in seconds after which SIGKILL ended the last run;
    /// null when the run ended otherwise.
    #[serde(default)]
    pub killed_after_timeout: Option<f64>,
    /// When the last run ended, in seconds since the Unix epoch.
    #[serde(default)]
    pub exited_at: Option<f64>,
    /// Automatic restarts since the job was loaded, counted on by a
    /// supervisord that adopts the job.
    pub restarts: u32,
    /// OOM kills in the job's ended containers since supervisord loaded the
    /// job: the sum of the `oom_kills` of their exit records.
    #[serde(default)]
    pub oom_kills: u64,
    /// When the job entered its current state, in seconds since the Unix epoch.
    pub since: i64,
    /// The current or last container.
    pub container_id: Option<String>,
    #[serde(with = "lossy_path")]
    pub file: PathBuf,
    /// The parse or validation error of the job file.
    pub error: Option<InvalidJob>,
    /// True while the job stops because its file was removed. The job is
    /// forgotten once its container ended, and start and restart requests
    /// are rejected until then.
    #[serde(default)]
    pub removing: bool,
    /// True while the container's init (PID 1) is stopped by a signal:
    /// from `signal STOP` until `signal CONT`, and from a stop to a
    /// continue sent by anyone else, as the shim reports them. A stop or
    /// the end of the container clears it. The state stays STARTING or
    /// RUNNING meanwhile.
    #[serde(default)]
    pub paused: bool,
    #[serde(with = "lossy_path")]
    pub stdout_log: PathBuf,
    #[serde(with = "lossy_path")]
    pub stderr_log: PathBuf,
}

/// A job file that failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidJob {
    #[serde(with = "lossy_path")]
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Field path such as `resources.memory`, when one is known.
    pub field: Option<String>,
    pub message: String,
    /// The whole error as one line: `file:line:column: field: message`.
    pub text: String,
}

/// Body of `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// Body of `GET /v1/stats`: resource usage of every job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsList {
    pub jobs: Vec<JobStats>,
    /// The host's memory, `MemTotal` of `/proc/meminfo`, against which
    /// `top` shows the share of a job without a memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_memory_bytes: Option<u64>,
}

/// Resource usage of one job's running container, read from its cgroup
/// files when the request came. Every counter is `None` while no container
/// runs, and each is `None` when its cgroup file is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStats {
    pub name: String,
    pub state: JobState,
    pub container_id: Option<String>,
    pub pid: Option<i32>,
    /// CLOCK_MONOTONIC of supervisord's host when the counters were read, in
    /// nanoseconds. CPU % is the change of `cpu_usage_ns` over the change of
    /// this value between two samples.
    pub sampled_at_ns: u64,
    /// CPU time of every process of the container, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Working set: memory usage minus inactive page cache, in bytes.
    pub memory_bytes: Option<u64>,
    /// Memory limit in bytes; `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Process limit; `None` when unlimited.
    pub pids_limit: Option<u64>,
    /// Bytes read from and written to block devices.
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    /// Bytes received and sent on the interfaces other than `lo` of the
    /// job's network namespace, plus the bytes supervisord's relay carried
    /// into and out of the job through its published ports. `None` for
    /// jobs on the host's network.
    pub net_rx_bytes: Option<u64>,
    pub net_tx_bytes: Option<u64>,
    /// Why the counters of a running container could not be read.
    pub error: Option<String>,
}

/// Body of `POST /v1/jobs/NAME/signal`; other keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with a \"signal\" key")]
pub struct SignalRequest {
    /// Name with or without `SIG` (`"HUP"`, `"SIGHUP"`), or number, as a
    /// JSON string (`"1"`) or number (`1`).
    #[serde(deserialize_with = "name_or_number")]
    pub signal: String,
}

/// Largest body of a `/v1/batch` request that supervisord accepts.
pub const MAX_BATCH_BODY: usize = 1024 * 1024;

/// Body of `POST /v1/batch/ACTION`. Other keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs to act on, in the order of the results. A name given twice
    /// gets two requests and two results.
    pub names: Vec<String>,
    /// For `/v1/batch/signal` only, and required there: the signal as in
    /// [`SignalRequest`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_name_or_number"
    )]
    pub signal: Option<String>,
}

/// Body of the reply to `POST /v1/batch/ACTION`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReply {
    /// One result per name of the request, in the same order.
    pub results: Vec<BatchResult>,
}

/// The outcome of the action on one job of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    pub name: String,
    /// The HTTP status that the request for this job alone would have
    /// returned: 200, or the error's 4xx or 5xx status.
    pub status: u16,
    /// The job after the action, when `status` is 200.
    #[serde(default)]
    pub job: Option<JobView>,
    /// The error message, when `status` is not 200.
    #[serde(default)]
    pub error: Option<String>,
}

/// Reads an optional signal given as a JSON string or a non-negative
/// integer.
fn optional_name_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    name_or_number(deserializer).map(Some)
}

/// Reads a signal given as a JSON string or a non-negative integer.
fn name_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct NameOrNumber;

    impl serde::de::Visitor<'_> for NameOrNumber {
        type Value = String;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a signal name or number")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<String, E> {
            Ok(value.to_string())
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<String, E> {
            Ok(value.to_string())
        }
    }

    deserializer.deserialize_any(NameOrNumber)
}

/// Body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Body of responses that only confirm an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
}

/// The changes a re-scan of the jobs directory found or applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReloadReport {
    pub changes: Vec<JobChange>,
    /// The error that kept the jobs directory from being listed. No job is
    /// added or removed then, as the scan saw none of the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_error: Option<String>,
}

/// One job whose file differs from what supervisord runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChange {
    pub name: String,
    pub kind: ChangeKind,
    /// Whether applying the change restarts or starts the job's container.
    pub restart: bool,
    /// Whether the change needs a new container but the job is stopped,
    /// exited or FATAL, so the change applies at its next start.
    #[serde(default)]
    pub next_start: bool,
    /// Dotted paths of the changed fields of a `changed` job, such as
    /// `command` or `resources.memory`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// The validation error, for `invalid`.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A new job file.
    Added,
    /// A job file whose content changed.
    Changed,
    /// A job file that was deleted.
    Removed,
    /// A job file that is invalid, newly or still. The last valid version
    /// keeps running.
    Invalid,
}

/// Paths as JSON strings. A path that is not UTF-8, such as a job file
/// whose name is not, is written with U+FFFD in place of the invalid
/// bytes, as JSON strings cannot carry them.
mod lossy_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&path.to_string_lossy())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
        String::deserialize(deserializer).map(PathBuf::from)
    }
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Changed => "changed",
            ChangeKind::Removed => "removed",
            ChangeKind::Invalid => "invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn non_utf8_paths_serialize_lossily() {
        let file = PathBuf::from(OsStr::from_bytes(b"/jobs/twin\xff.json"));
        let error = InvalidJob {
            file: file.clone(),
            line: None,
            column: None,
            field: None,
            message: "job name is also given by another file".to_string(),
            text: String::new(),
        };
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(json["file"], "/jobs/twin\u{FFFD}.json");
        let back: InvalidJob = serde_json::from_value(json).unwrap();
        assert_eq!(back.file, PathBuf::from("/jobs/twin\u{FFFD}.json"));
    }
}
