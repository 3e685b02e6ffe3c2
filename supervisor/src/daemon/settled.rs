//! Records of the jobs that do not run, read by a restarted supervisord.
//!
//! A job that settles in STOPPED because of a stop request, in EXITED, in
//! FATAL, or waits in BACKOFF gets the record `RUN_DIR/settled/NAME.json`.
//! A supervisord that starts finds such a job in the recorded state, with
//! the ending of its last run and its restarts, instead of starting it by
//! `autostart`. A job in BACKOFF restarts when its restart was due. The
//! record is removed when the job starts again, or when a job whose file was
//! removed is dropped, once its container ended.
//!
//! A crash of supervisord, and its exit with `--live-restore`, keep the
//! records. A stop of the whole daemon, which stops every job, removes
//! them, so the next daemon starts every job by its `autostart`, as after
//! a reboot. `/run` is a tmpfs, so a reboot removes them too.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use corral_config::JobSpec;
use serde::{Deserialize, Serialize};

use crate::daemon::record::read_record;
use crate::daemon::DaemonConfig;
use crate::describe::LastRun;
use crate::machine::{JobState, KeptRestarts};

/// The part of a job's state that outlives a restart of supervisord.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettledRecord {
    pub state: JobState,
    pub since: SystemTime,
    pub last_run: Option<LastRun>,
    pub last_container_id: Option<String>,
    /// Restarts and window of the restart limit that made the job FATAL.
    pub fatal: Option<(u32, Duration)>,
    /// A restart was in progress: the next daemon finishes the stop and
    /// starts the job.
    #[serde(default)]
    pub restart: bool,
    /// The job's restarts, which the restart limit counts.
    #[serde(default)]
    pub restarts: KeptRestarts,
    /// In BACKOFF: the restart number within the window and when it is due.
    #[serde(default)]
    pub backoff: Option<(u32, SystemTime)>,
    /// A stop in progress has sent its stop signal, so the next daemon
    /// only waits out the rest of the timeout instead of signalling again.
    #[serde(default)]
    pub stop_signal_sent: bool,
    /// When the stop signal went out, from which the stop timeout counts.
    /// After a supervisord that finished the stop of an earlier one, this
    /// is the time of the earlier stop request. Records of versions that
    /// did not write it have none.
    #[serde(default)]
    pub stop_signal_sent_at: Option<SystemTime>,
    /// The stop in progress ends by removing the job, because its file was
    /// removed.
    #[serde(default)]
    pub removing: bool,
    /// The job's last valid spec while its file is invalid. Once the job's
    /// container has ended, no bundle keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<JobSpec>,
}

impl SettledRecord {
    /// True for the states a record keeps.
    pub fn keeps(state: JobState) -> bool {
        matches!(
            state,
            JobState::Stopped | JobState::Exited | JobState::Fatal | JobState::Backoff
        )
    }
}

fn path(config: &DaemonConfig, name: &str) -> PathBuf {
    config.settled_dir().join(format!("{name}.json"))
}

/// Writes the record of job `name`, replacing the last one in one rename.
pub fn write(config: &DaemonConfig, name: &str, record: &SettledRecord) -> io::Result<()> {
    let path = path(config, name);
    let temporary = config.settled_dir().join(format!(".{name}.json.tmp"));
    let body = serde_json::to_vec(record).map_err(io::Error::other)?;
    fs::write(&temporary, body)?;
    fs::rename(&temporary, &path).inspect_err(|_| {
        let _ = fs::remove_file(&temporary);
    })
}

/// Reads the record of job `name`. A missing record is `None`; an
/// unreadable one is logged, removed and `None`.
pub fn read(config: &DaemonConfig, name: &str) -> Option<SettledRecord> {
    let path = path(config, name);
    let text = match read_record(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(job = %name, path = %path.display(), %error, "failed to read the settled state; the job starts by its autostart");
            return None;
        }
    };
    match serde_json::from_slice::<SettledRecord>(&text) {
        Ok(record) if SettledRecord::keeps(record.state) => Some(record),
        Ok(record) => {
            tracing::warn!(job = %name, path = %path.display(), state = %record.state, "ignoring a settled state with a state that only a running job has");
            remove(config, name);
            None
        }
        Err(error) => {
            tracing::warn!(job = %name, path = %path.display(), %error, "ignoring an invalid settled state; the job starts by its autostart");
            remove(config, name);
            None
        }
    }
}

/// Removes the record of job `name`, if there is one.
pub fn remove(config: &DaemonConfig, name: &str) {
    let path = path(config, name);
    if let Err(error) = fs::remove_file(&path) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(job = %name, path = %path.display(), %error, "failed to remove the settled state");
        }
    }
}

/// Removes the records of jobs that `known` does not name, left by jobs
/// whose files were removed while no supervisord ran.
pub fn remove_unknown(config: &DaemonConfig, known: impl Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(config.settled_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let stale_temporary = file_name.starts_with('.') && file_name.ends_with(".json.tmp");
        let name = file_name.strip_suffix(".json").filter(|_| !stale_temporary);
        if name.is_some_and(&known) {
            continue;
        }
        if let Err(error) = fs::remove_file(entry.path()) {
            tracing::warn!(path = %entry.path().display(), %error, "failed to remove a stale settled state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Termination;

    fn config(dir: &std::path::Path) -> DaemonConfig {
        let config = crate::daemon::launch::tests::config(dir);
        fs::create_dir_all(config.settled_dir()).expect("settled dir");
        config
    }

    fn record(state: JobState) -> SettledRecord {
        SettledRecord {
            state,
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            last_run: Some(LastRun {
                container_id: "web-1a2b3c4d".to_string(),
                termination: Termination::Signaled {
                    signal: "SIGKILL".to_string(),
                    status: 137,
                },
                oom_killed: true,
                killed_after: Some(Duration::from_secs(10)),
                failed_start: false,
                stopped: true,
                finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
                runtime_error: None,
            }),
            last_container_id: Some("web-1a2b3c4d".to_string()),
            fatal: Some((3, Duration::from_secs(60))),
            restart: false,
            restarts: KeptRestarts {
                count: 4,
                times: vec![1_789_999_990.5, 1_789_999_995.25],
                oom_kills: 2,
            },
            backoff: None,
            stop_signal_sent: true,
            stop_signal_sent_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_789_999_999)),
            removing: true,
            spec: Some(serde_json::from_str(r#"{"command": ["/bin/true"]}"#).expect("spec")),
        }
    }

    #[test]
    fn records_survive_a_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        assert_eq!(read(&config, "web"), None);
        write(&config, "web", &record(JobState::Fatal)).expect("write");
        assert_eq!(read(&config, "web"), Some(record(JobState::Fatal)));
        write(&config, "web", &record(JobState::Stopped)).expect("overwrite");
        assert_eq!(read(&config, "web"), Some(record(JobState::Stopped)));
        remove(&config, "web");
        assert_eq!(read(&config, "web"), None);
        remove(&config, "web");
    }

    #[test]
    fn records_without_stop_time_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let mut json = serde_json::to_value(record(JobState::Stopped)).expect("to json");
        let fields = json.as_object_mut().expect("object");
        fields.remove("stop_signal_sent_at");
        fields.remove("removing");
        fs::write(path(&config, "web"), json.to_string()).expect("write");
        let read = read(&config, "web").expect("an older record is read");
        assert!(read.stop_signal_sent);
        assert_eq!(read.stop_signal_sent_at, None);
        assert!(!read.removing);
    }

    #[test]
    fn bad_records_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        fs::write(path(&config, "broken"), "{not json").expect("write");
        assert_eq!(read(&config, "broken"), None);
        assert!(!path(&config, "broken").exists());

        write(&config, "running", &record(JobState::Running)).expect("write");
        assert_eq!(read(&config, "running"), None);
        assert!(!path(&config, "running").exists());
    }

    #[test]
    fn fifo_record_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let fifo = path(&config, "web");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // A blocking open of a FIFO waits for a writer, so the read runs on
        // its own thread and a hang fails the test.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(read(&config, "web"));
        });
        let read = receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("reading a FIFO record blocked");
        assert_eq!(read, None);
    }

    #[test]
    fn records_of_unknown_jobs_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        for name in ["kept", "gone"] {
            write(&config, name, &record(JobState::Exited)).expect("write");
        }
        fs::write(config.settled_dir().join(".kept.json.tmp"), "x").expect("write");
        remove_unknown(&config, |name| name == "kept");
        let mut left: Vec<String> = fs::read_dir(config.settled_dir())
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect();
        left.sort();
        assert_eq!(left, ["kept.json"]);
    }
}
