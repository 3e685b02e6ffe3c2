//! The state supervisord keeps per job: the spec it runs, the lifecycle state,
//! the current container and how the last run ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_config::JobSpec;
use tokio::sync::oneshot;

use crate::api::{InvalidJob, JobView};
use crate::daemon::monitor_handle::MonitorHandle;
use crate::daemon::ports::{ClosingRelay, Listening, PortRelay};
use crate::daemon::record::read_record;
use crate::daemon::settled::SettledRecord;
use crate::daemon::{DaemonConfig, Reply};
use crate::describe::{self, LastRun, PendingRestart, StatusFacts, StopProgress};
use crate::machine::{JobState, KeptRestarts, RestartHistory};

/// The next step once the current container of a job has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterStop {
    /// The job stays STOPPED.
    #[default]
    Stay,
    /// The job starts again: a restart, or an update that needs one.
    Start,
    /// The job file is gone and the job is forgotten.
    Remove,
}

/// A reply sent once the job leaves STARTING and STOPPING.
pub type Waiter = oneshot::Sender<Reply>;

/// One running container of a job and its monitor.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    /// The version of the spec the container was started with; its stop
    /// settings apply even after an update replaced the job's spec.
    pub spec: Arc<JobSpec>,
    /// The container's `corral-monitor`, the parent of its shim.
    pub monitor: MonitorHandle,
    pub started_at: SystemTime,
    pub started_instant: Instant,
    /// Host PID of the container's init, once the shim wrote the pid file.
    pub pid: Option<i32>,
    /// Whether `start_seconds` passed since the start. The job becomes
    /// RUNNING when this holds and `pid` is known.
    pub start_seconds_passed: bool,
    /// Size of the stderr log before the monitor started, so a setup error
    /// can be read back from what the shim or the monitor appended.
    pub stderr_offset: u64,
    pub stop: Option<StopProgress>,
    /// Whether the container's init is stopped by a signal. The signal
    /// endpoint sets it when it sends SIGSTOP or SIGCONT, and the shim's
    /// stopped file reports stops and continues from any sender. A freeze
    /// of the cgroup is not a stop by a signal and leaves it unset.
    pub paused: bool,
    /// The relay of the job's published ports. Dropping it closes the
    /// listeners once the runtime polls their tasks, and
    /// [`PortRelay::close`] returns a handle that completes then.
    pub relay: Option<PortRelay>,
}

/// One job file and everything supervisord tracks about it.
#[derive(Debug)]
pub struct Job {
    pub name: String,
    pub file: PathBuf,
    /// The last valid spec; none when the file never was valid.
    pub spec: Option<Arc<JobSpec>>,
    /// Set while the file is invalid.
    pub invalid: Option<InvalidJob>,
    pub state: JobState,
    pub since: SystemTime,
    /// Set by every state change; cleared once the settled-state record
    /// follows it.
    pub state_changed: bool,
    /// Increases on every state change, so that a timer armed for an earlier
    /// state is recognised as stale when it fires.
    pub epoch: u64,
    pub container: Option<Container>,
    /// Id of the container whose launch waits for a permit or runs on the
    /// blocking pool. The job is STARTING, or STOPPING when a stop came
    /// during the launch.
    pub launching: Option<String>,
    /// Cancels a launch that waits for another job to release published
    /// ports; sending fails once the container is being created. A launch
    /// in the supervisor's queue has none, because a stop removes it there.
    pub cancel_launch: Option<oneshot::Sender<()>>,
    pub last_run: Option<LastRun>,
    /// Id of the last container that ended or failed to start. A running
    /// container keeps its own id in [`Container::id`].
    pub last_container_id: Option<String>,
    pub restarts: u32,
    /// OOM kills counted in the exit records of the job's ended containers.
    pub oom_kills: u64,
    pub history: RestartHistory,
    pub pending_restart: Option<PendingRestart>,
    /// Restarts and window when the job became FATAL.
    pub fatal: Option<(u32, Duration)>,
    pub after_stop: AfterStop,
    /// The relay of the container that ended last, until its listeners are
    /// closed. The next launch waits for it before it binds the ports.
    pub closing_relay: Option<ClosingRelay>,
    pub waiters: Vec<Waiter>,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
}

impl Job {
    /// Returns the state that status shows: INVALID while the file is
    /// invalid, else the lifecycle state.
    pub fn displayed_state(&self) -> JobState {
        if self.invalid.is_some() {
            JobState::Invalid
        } else {
            self.state
        }
    }

    pub fn new(
        name: &str,
        file: PathBuf,
        spec: Option<Arc<JobSpec>>,
        invalid: Option<InvalidJob>,
        log_dir: &Path,
    ) -> Self {
        let state = if spec.is_some() {
            JobState::Stopped
        } else {
            JobState::Invalid
        };
        Job {
            name: name.to_string(),
            file,
            spec,
            invalid,
            state,
            since: SystemTime::now(),
            state_changed: false,
            epoch: 0,
            container: None,
            launching: None,
            cancel_launch: None,
            last_run: None,
            last_container_id: None,
            restarts: 0,
            oom_kills: 0,
            history: RestartHistory::default(),
            pending_restart: None,
            fatal: None,
            after_stop: AfterStop::Stay,
            closing_relay: None,
            waiters: Vec::new(),
            stdout_log: log_dir.join(name).join("stdout.log"),
            stderr_log: log_dir.join(name).join("stderr.log"),
        }
    }

    /// Returns the listeners of the relay being closed, and with `with_open`
    /// also those of the running container's relay.
    pub fn listening(&self, with_open: bool) -> impl Iterator<Item = &Listening> {
        let open = self
            .container
            .as_ref()
            .and_then(|container| container.relay.as_ref())
            .filter(|_| with_open)
            .map(PortRelay::listening);
        let closing = self.closing_relay.as_ref().map(ClosingRelay::listening);
        open.into_iter().chain(closing)
    }

    /// Moves to `state` and invalidates the timers of the previous one.
    pub fn enter(&mut self, state: JobState) {
        if state != self.state {
            tracing::debug!(job = %self.name, from = %self.state, to = %state, "state change");
        }
        self.state = state;
        self.since = SystemTime::now();
        self.state_changed = true;
        self.epoch += 1;
    }

    /// Returns the description of the job file's error. A job with an
    /// invalid name cannot have another error, and the name column shows
    /// the name, so its description is the message without the file.
    fn invalid_description<'a>(&self, error: &'a InvalidJob) -> &'a str {
        if corral_config::is_valid_job_name(&self.name) {
            &error.text
        } else {
            &error.message
        }
    }

    /// Returns the record that keeps this job's state across a restart of
    /// supervisord, for the states a record keeps and for a stop or restart
    /// request in progress.
    pub fn settled_record(&self) -> Option<SettledRecord> {
        // A stop request is recorded as soon as it begins, so that a
        // supervisord that takes over finishes it. That includes the stop
        // of a job whose file was removed, whose container the next
        // supervisord still stops with the rest of the timeout.
        let stopping = self.state == JobState::Stopping;
        let restart = stopping && self.after_stop == AfterStop::Start;
        let state = match self.state {
            JobState::Stopping => JobState::Stopped,
            state => state,
        };
        // kill_at is the time of the stop signal plus the stop timeout.
        let stop = self
            .container
            .as_ref()
            .and_then(|container| container.stop.as_ref())
            .filter(|_| stopping);
        SettledRecord::keeps(state).then(|| SettledRecord {
            state,
            since: self.since,
            last_run: self.last_run.clone(),
            last_container_id: self
                .container
                .as_ref()
                .map(|container| container.id.clone())
                .or_else(|| self.last_container_id.clone()),
            fatal: self.fatal,
            restart,
            restarts: self.kept_restarts(),
            backoff: self
                .pending_restart
                .filter(|_| state == JobState::Backoff)
                .map(|pending| (pending.attempt, pending.at)),
            stop_signal_sent: stop.is_some(),
            stop_signal_sent_at: stop.and_then(|stop| stop.kill_at.checked_sub(stop.timeout)),
            removing: stopping && self.after_stop == AfterStop::Remove,
            spec: self.invalid.as_ref().and(self.spec.as_deref()).cloned(),
        })
    }

    /// Takes the state that an earlier supervisord recorded. A job in
    /// BACKOFF gets its pending restart back; the caller arms its timer.
    pub fn restore(&mut self, record: SettledRecord) {
        self.state = record.state;
        self.since = record.since;
        self.last_run = record.last_run;
        self.last_container_id = record.last_container_id;
        self.fatal = record.fatal;
        self.restore_restarts(&record.restarts);
        if let (JobState::Backoff, Some((attempt, at))) = (record.state, record.backoff) {
            self.pending_restart = Some(PendingRestart {
                attempt,
                max_restarts: self
                    .spec
                    .as_ref()
                    .map_or(attempt, |spec| spec.restart.max_restarts),
                at,
            });
        }
    }

    /// Returns the restarts that the restart limit counts, and the OOM
    /// kills, for a record that outlives this supervisord.
    pub fn kept_restarts(&self) -> KeptRestarts {
        KeptRestarts {
            count: self.restarts,
            times: self
                .history
                .to_unix_seconds(Instant::now(), SystemTime::now()),
            oom_kills: self.oom_kills,
        }
    }

    /// Takes the restarts and OOM kills that an earlier supervisord
    /// recorded.
    pub fn restore_restarts(&mut self, recorded: &KeptRestarts) {
        self.restarts = recorded.count;
        self.oom_kills = recorded.oom_kills;
        self.history =
            RestartHistory::from_unix_seconds(&recorded.times, Instant::now(), SystemTime::now());
    }

    /// True when a waiting start, stop or restart request can get its reply.
    pub fn is_settled(&self) -> bool {
        !matches!(self.state, JobState::Starting | JobState::Stopping)
            && self.after_stop == AfterStop::Stay
    }

    /// Returns the id of the job's container, of its launch in flight, or
    /// of the last container that ended or failed to start.
    pub fn latest_container_id(&self) -> Option<&str> {
        self.container
            .as_ref()
            .map(|container| container.id.as_str())
            .or(self.launching.as_deref())
            .or(self.last_container_id.as_deref())
    }

    /// Reads the container's pid file once the shim has written it.
    pub fn refresh_pid(&mut self, config: &DaemonConfig) {
        if let Some(container) = &mut self.container {
            if container.pid.is_none() {
                container.pid = read_pid_file(&config.pid_file(&container.id));
            }
        }
    }

    pub fn view(&self, now: SystemTime) -> JobView {
        let pid = self.container.as_ref().and_then(|container| container.pid);
        let paused = self
            .container
            .as_ref()
            .is_some_and(|container| container.paused);
        let facts = StatusFacts {
            state: self.state,
            pid,
            started_at: self
                .container
                .as_ref()
                .map(|container| container.started_at),
            now,
            since: self.since,
            last_run: self.last_run.as_ref(),
            pending_restart: self.pending_restart,
            stop: self
                .container
                .as_ref()
                .and_then(|container| container.stop.as_ref()),
            fatal: self.fatal,
            invalid: self
                .invalid
                .as_ref()
                .map(|error| self.invalid_description(error)),
            paused,
        };
        let displayed_state = self.displayed_state();
        let ended = self.last_run.as_ref();
        JobView {
            name: self.name.clone(),
            state: displayed_state,
            process_state: self.state,
            description: describe::describe(&facts),
            pid,
            exit_status: ended.and_then(|run| run.termination.exit_status()),
            signal: ended.and_then(|run| run.termination.signal().map(str::to_string)),
            oom_killed: ended.is_some_and(|run| run.oom_killed),
            killed_after_timeout: ended
                .and_then(|run| run.killed_after)
                .map(|timeout| timeout.as_secs_f64()),
            exited_at: ended.map(|run| unix_seconds_f64(run.finished_at)),
            restarts: self.restarts,
            oom_kills: self.oom_kills,
            since: unix_seconds(self.since),
            container_id: self.latest_container_id().map(str::to_string),
            file: self.file.clone(),
            error: self.invalid.clone(),
            removing: self.after_stop == AfterStop::Remove,
            paused,
            stdout_log: self.stdout_log.clone(),
            stderr_log: self.stderr_log.clone(),
        }
    }
}

fn read_pid_file(path: &Path) -> Option<i32> {
    let bytes = read_record(path).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    text.trim().parse().ok().filter(|&pid: &i32| pid > 0)
}

/// Returns `time` in seconds since the Unix epoch, negative before it.
fn unix_seconds_f64(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.pid");
        assert_eq!(read_pid_file(&path), None);
        std::fs::write(&path, "1234\n").unwrap();
        assert_eq!(read_pid_file(&path), Some(1234));
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_pid_file(&path), None);
        std::fs::write(&path, "0").unwrap();
        assert_eq!(read_pid_file(&path), None);
    }

    #[test]
    fn new_job_state_follows_validity() {
        let dir = Path::new("/var/log/corral");
        let valid = Job::new(
            "web",
            PathBuf::from("web.json"),
            Some(Arc::new(
                serde_json::from_str(r#"{"command": ["/bin/true"]}"#).unwrap(),
            )),
            None,
            dir,
        );
        assert_eq!(valid.state, JobState::Stopped);
        assert_eq!(valid.view(SystemTime::now()).description, "Not started");
        assert_eq!(
            valid.stdout_log,
            Path::new("/var/log/corral/web/stdout.log")
        );

        let error = InvalidJob {
            file: PathBuf::from("bad.json"),
            line: Some(1),
            column: Some(2),
            field: None,
            message: "invalid JSON: expected value".to_string(),
            text: "bad.json:1:2: invalid JSON: expected value".to_string(),
        };
        let invalid = Job::new("bad", PathBuf::from("bad.json"), None, Some(error), dir);
        let view = invalid.view(SystemTime::now());
        assert_eq!(view.state, JobState::Invalid);
        assert_eq!(
            view.description,
            "bad.json:1:2: invalid JSON: expected value"
        );
    }

    #[test]
    fn invalid_name_not_in_description() {
        let name = "x".repeat(200);
        let file = PathBuf::from(format!("/etc/corral/jobs.d/{name}.json"));
        let error = corral_config::job_name_from_path(&file).unwrap_err();
        let invalid = crate::daemon::reload::invalid_job(&error);
        assert!(invalid.text.contains(&name), "{}", invalid.text);
        let job = Job::new(&name, file, None, Some(invalid), Path::new("/tmp"));
        let description = job.view(SystemTime::now()).description;
        assert!(
            description.starts_with("invalid job name: a job name is the file name"),
            "{description}"
        );
        assert!(!description.contains("xxxx"), "{description}");
    }

    #[test]
    fn settled_only_outside_transitions() {
        let mut job = Job::new("a", PathBuf::new(), None, None, Path::new("/tmp"));
        for state in JobState::ALL {
            job.state = state;
            let expected = !matches!(state, JobState::Starting | JobState::Stopping);
            assert_eq!(job.is_settled(), expected, "{state}");
        }
        job.state = JobState::Stopped;
        job.after_stop = AfterStop::Start;
        assert!(
            !job.is_settled(),
            "a restart between stop and start is not settled"
        );
    }

    #[test]
    fn enter_bumps_epoch() {
        let mut job = Job::new("a", PathBuf::new(), None, None, Path::new("/tmp"));
        let before = job.epoch;
        job.enter(JobState::Stopped);
        assert_eq!(job.epoch, before + 1);
    }
}
