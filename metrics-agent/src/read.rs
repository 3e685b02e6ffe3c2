//! Scrape-time reads and the error policy around them.
//!
//! A container can exit or be deleted while a scrape reads it. The kernel then
//! reports ENOENT (the cgroup directory or `/proc/PID` is gone), ENODEV (a
//! cgroup file of a removed cgroup) or ESRCH (a `/proc/PID` file of an exited
//! process). Such a read returns [`Vanished`] and the scrape skips the whole
//! container silently. Any other failure is counted in
//! `metrics_agent_read_errors_total{kind}`, logged at most once a minute per
//! kind, and only the affected metric is left out.

use std::collections::HashMap;
use std::fmt::Display;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts, Registry};

/// Marker error: the container went away during this scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vanished;

/// Source of a counted read error, the `kind` label of
/// `metrics_agent_read_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A state file or the containers directory could not be read, parsed
    /// or watched.
    State,
    /// A cgroup file or directory could not be read.
    Cgroup,
    /// A `/proc` file could not be read.
    Proc,
    /// A cgroup or `/proc` file did not have the kernel's format.
    Parse,
    /// The supervisor's control socket did not return the job list.
    Supervisor,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::State,
        ErrorKind::Cgroup,
        ErrorKind::Proc,
        ErrorKind::Parse,
        ErrorKind::Supervisor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::State => "state",
            ErrorKind::Cgroup => "cgroup",
            ErrorKind::Proc => "proc",
            ErrorKind::Parse => "parse",
            ErrorKind::Supervisor => "supervisor",
        }
    }
}

/// Minimum time between two log lines of the same error kind. A broken file
/// fails on every scrape, so without a limit one bad container would flood
/// the log at the scrape rate.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct LogWindow {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// Counter and rate-limited log of read errors, shared by every scrape.
pub struct ReadErrors {
    counter: IntCounterVec,
    windows: Mutex<HashMap<ErrorKind, LogWindow>>,
}

impl ReadErrors {
    /// Creates the counter with a zero series for each kind and registers it.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let counter = IntCounterVec::new(
            Opts::new(
                "metrics_agent_read_errors_total",
                "Reads of state, cgroup, /proc or supervisor data that failed, by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        for kind in ErrorKind::ALL {
            counter.with_label_values(&[kind.as_str()]);
        }
        Ok(Self {
            counter,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one error and logs it unless this kind was logged less than a
    /// minute ago.
    pub fn record(&self, kind: ErrorKind, message: impl Display) {
        self.counter.with_label_values(&[kind.as_str()]).inc();

        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(kind).or_default();
        let now = Instant::now();
        let due = window
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= LOG_INTERVAL);
        if !due {
            window.suppressed += 1;
            return;
        }
        let suppressed = window.suppressed;
        window.last_logged = Some(now);
        window.suppressed = 0;
        drop(windows);

        tracing::warn!(
            kind = kind.as_str(),
            suppressed_since_last_log = suppressed,
            "{message}"
        );
    }
}

/// Returns whether an I/O error means that the cgroup or process is gone.
fn is_gone(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENODEV) | Some(libc::ESRCH))
}

/// Reads a cgroup file of a container.
///
/// Returns `Ok(None)` when the file does not exist in a cgroup directory
/// that does (the kernel or the controller does not provide it, such as
/// `memory.swap.current` without swap accounting), and when the read failed
/// for another reason, which is counted. Returns [`Vanished`] when the
/// cgroup itself is gone.
pub(crate) fn cgroup_file(
    errors: &ReadErrors,
    dir: &Path,
    file: &str,
) -> Result<Option<String>, Vanished> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if is_gone(&error) => Err(Vanished),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if dir.is_dir() {
                Ok(None)
            } else {
                Err(Vanished)
            }
        }
        Err(error) => {
            errors.record(
                ErrorKind::Cgroup,
                format_args!("failed to read {}: {error}", path.display()),
            );
            Ok(None)
        }
    }
}

/// Outcome of reading a file of one process below `/proc`.
pub(crate) enum ProcRead<T> {
    Value(T),
    /// The process exited (ENOENT or ESRCH).
    Exited,
    /// The read failed for another reason; the error is already counted.
    Failed,
}

/// Maps a procfs result to [`ProcRead`], counting failures that are not an
/// exit of the process.
pub(crate) fn proc_result<T>(
    errors: &ReadErrors,
    file: &str,
    pid: i32,
    result: procfs::ProcResult<T>,
) -> ProcRead<T> {
    match result {
        Ok(value) => ProcRead::Value(value),
        // procfs maps both ENOENT and ESRCH to NotFound.
        Err(procfs::ProcError::NotFound(_)) => ProcRead::Exited,
        Err(procfs::ProcError::Io(error, _)) if is_gone(&error) => ProcRead::Exited,
        Err(error) => {
            errors.record(
                ErrorKind::Proc,
                format_args!("failed to read {file} of process {pid}: {error}"),
            );
            ProcRead::Failed
        }
    }
}
