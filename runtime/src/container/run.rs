//! `run` and the supervisor's shim: create, start, wait with signals
//! forwarded, record the exit, and remove the container.

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{
    cgroup_of, create, destroy, now_seconds, start_polling, ContainerError, CreateOptions,
};
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
    /// A file that exists while the container's init is stopped by a
    /// signal. It is created when a wait reports the stop and removed when
    /// a wait reports the continue or the init ends.
    pub stopped_file: Option<PathBuf>,
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
    let stopped_file = options.stopped_file.as_deref();
    // A stop of the init before it takes the release holds up the start
    // until a continue, and shows as a stop meanwhile. NOTE: a stop during
    // `create` holds it up too, but is not reported, because `create`
    // blocks on the init's report until the init continues.
    let mut report_stops = || {
        if let Some(path) = stopped_file {
            report_stop_changes(pid, path);
        }
    };
    if let Err(error) = start_polling(root, &state.id, &mut report_stops) {
        let _ = destroy(root, &state);
        if let Some(path) = stopped_file {
            mark_stopped(path, pid, None);
        }
        return Err(error);
    }
    tracing::debug!(container = %state.id, %pid, "container started");
    crate::memory::release_free_memory();

    let (status, mut signal) = wait_forwarding(pid, &waited, stopped_file);
    if let Some(path) = stopped_file {
        // A stopped init that is killed ends without being continued.
        mark_stopped(path, pid, None);
    }
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

/// Waits for `pid` to end while passing the signals of `waited` other
/// than SIGCHLD on to it, and returns its exit status. Stops and
/// continues of `pid` create and remove `stopped_file` when one is given.
pub(crate) fn wait_forwarding(
    pid: Pid,
    waited: &SigSet,
    stopped_file: Option<&Path>,
) -> (i32, Option<Signal>) {
    loop {
        if let Some(path) = stopped_file {
            report_stop_changes(pid, path);
        }
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

/// Collects the stops and continues of child `pid` that the kernel has
/// not reported yet, and creates or removes `stopped_file` to match the
/// latest. The wait requests stops and continues only, so it never reaps
/// `pid` or takes its exit status from [`wait_forwarding`].
fn report_stop_changes(pid: Pid, stopped_file: &Path) {
    let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WCONTINUED | WaitPidFlag::WNOHANG;
    // The kernel keeps one report per child, of its latest stop or
    // continue, and clears it when a wait returns it.
    loop {
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::Stopped(_, signal)) => mark_stopped(stopped_file, pid, Some(signal)),
            Ok(WaitStatus::Continued(_)) => mark_stopped(stopped_file, pid, None),
            Ok(_) => return,
            // The init has exited and waits to be reaped: a wait for stops
            // and continues alone finds no child then.
            Err(Errno::ECHILD) => return,
            Err(error) => {
                tracing::warn!(%pid, %error, "failed to wait for stops of the container init");
                return;
            }
        }
    }
}

/// Creates `path` with the name of the signal that stopped `pid`, or
/// removes it when `stop` is None. Failures are logged, because the
/// container runs on either way.
fn mark_stopped(path: &Path, pid: Pid, stop: Option<Signal>) {
    match stop {
        Some(signal) => {
            tracing::debug!(%pid, %signal, "the container init stopped");
            if let Err(error) = fs::write(path, format!("{signal}\n")) {
                tracing::warn!(%pid, path = %path.display(), %error, "failed to write the stopped file");
            }
        }
        None => match fs::remove_file(path) {
            Ok(()) => tracing::debug!(%pid, "the container init continued or ended"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(%pid, path = %path.display(), %error, "failed to remove the stopped file")
            }
        },
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

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;

    /// Calls [`report_stop_changes`] until `stopped_file` exists or not as
    /// `expected`, because the kernel reports the change a moment after the
    /// signal.
    fn report_until(pid: Pid, stopped_file: &Path, expected: bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            report_stop_changes(pid, stopped_file);
            if stopped_file.exists() == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} exists: {}, expected {expected}",
                stopped_file.display(),
                !expected
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn stop_reports_leave_the_exit_to_waitpid() {
        let scratch = tempfile::tempdir().unwrap();
        let stopped_file = scratch.path().join("child.stopped");
        let child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        // The child is reaped below by waitpid, not through `child`.
        drop(child);

        kill(pid, Signal::SIGSTOP).unwrap();
        report_until(pid, &stopped_file, true);
        let body = fs::read_to_string(&stopped_file).unwrap();
        assert_eq!(body, "SIGSTOP\n");

        kill(pid, Signal::SIGCONT).unwrap();
        report_until(pid, &stopped_file, false);

        // A child killed while stopped ends without a continue, and the
        // stop reports never take its exit status.
        kill(pid, Signal::SIGSTOP).unwrap();
        report_until(pid, &stopped_file, true);
        kill(pid, Signal::SIGKILL).unwrap();
        report_stop_changes(pid, &stopped_file);
        let status = waitpid(pid, None).unwrap();
        assert_eq!(exit_status(status), Some((137, Some(Signal::SIGKILL))));
    }
}
