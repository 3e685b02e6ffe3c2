//! `run` and the supervisor's shim: create, start, wait with signals
//! forwarded, record the exit, and remove the container.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{cgroup_of, create, destroy, now_seconds, start, ContainerError, CreateOptions};
use crate::state::ExitRecord;

/// Signals that `run` passes on to the container's init.
pub const FORWARDED_SIGNALS: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Arguments of `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub create: CreateOptions,
    /// Where to write the [`ExitRecord`] when the process ends.
    pub exit_file: Option<PathBuf>,
}

/// Exit status as a shell reports it: the code, or 128 plus the signal.
pub fn exit_status(status: WaitStatus) -> Option<(i32, Option<Signal>)> {
    match status {
        WaitStatus::Exited(_, code) => Some((code, None)),
        WaitStatus::Signaled(_, signal, _) => Some((128 + signal as i32, Some(signal))),
        _ => None,
    }
}

/// Runs the container to its end and returns its exit record. The
/// container is removed afterwards, also when waiting failed.
pub fn run(options: &RunOptions) -> Result<ExitRecord, ContainerError> {
    let mut forwarded = SigSet::empty();
    for signal in FORWARDED_SIGNALS {
        forwarded.add(signal);
    }
    let mut waited = forwarded;
    waited.add(Signal::SIGCHLD);
    // Blocked before the clone so that no signal is lost between create and
    // the wait loop; the init restores an empty mask before it executes.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None).map_err(|source| {
        ContainerError::Sys {
            operation: "block signals before run".to_string(),
            source,
        }
    })?;

    let root = &options.create.root;
    let state = create(&options.create)?;
    let started_at = now_seconds();
    let pid = Pid::from_raw(state.pid.expect("a created container has a pid"));
    if let Err(error) = start(root, &state.id) {
        let _ = destroy(root, &state);
        return Err(error);
    }
    tracing::debug!(container = %state.id, %pid, "container started");
    crate::memory::release_free_memory();

    let (status, mut signal) = wait_forwarding(pid, &waited);
    if signal.is_none() && status > 128 {
        signal = signal_of_main_process(&root.join(&state.id), status);
    }
    let oom_kills = cgroup_of(&state).oom_kills().unwrap_or_else(|error| {
        tracing::warn!(container = %state.id, %error, "failed to read the OOM kill count");
        0
    });
    let record = ExitRecord {
        id: state.id.clone(),
        status,
        signal: signal.map(|s| s.as_str().to_string()),
        oom_kills,
        started_at,
        finished_at: now_seconds(),
    };
    let removed = destroy(root, &state);
    if let Some(path) = &options.exit_file {
        write_exit_record(path, &record)?;
    }
    removed?;
    Ok(record)
}

pub(crate) fn wait_forwarding(pid: Pid, waited: &SigSet) -> (i32, Option<Signal>) {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => {
                if let Some(result) = exit_status(status) {
                    return result;
                }
            }
            Err(error) => {
                tracing::error!(%pid, %error, "failed to wait for the container init");
                return (255, None);
            }
        }
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(signal) => {
                if let Err(error) = kill(pid, signal) {
                    tracing::warn!(%pid, %signal, %error, "failed to forward a signal to the container");
                }
            }
            Err(error) => tracing::warn!(%error, "sigwait failed"),
        }
    }
}

/// Reads the signal the minimal init recorded for the main process, when it
/// matches the init's exit status of 128 plus that signal.
fn signal_of_main_process(state_dir: &Path, status: i32) -> Option<Signal> {
    let text = fs::read_to_string(state_dir.join(super::MAIN_STATUS)).ok()?;
    let number: i32 = text.trim().parse().ok()?;
    (number + 128 == status)
        .then(|| Signal::try_from(number).ok())
        .flatten()
}

/// Writes the exit record through a temporary file and a rename.
pub fn write_exit_record(path: &Path, record: &ExitRecord) -> Result<(), ContainerError> {
    let temporary = path.with_extension("tmp");
    let body = serde_json::to_vec(record).expect("exit record serializes to JSON");
    fs::write(&temporary, body).map_err(|source| ContainerError::Io {
        operation: "write exit record",
        path: temporary.clone(),
        source,
    })?;
    fs::rename(&temporary, path).map_err(|source| ContainerError::Io {
        operation: "write exit record",
        path: path.to_path_buf(),
        source,
    })
}
