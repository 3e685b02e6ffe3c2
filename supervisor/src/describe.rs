//! The status text of a job: `pid 1234, uptime 0:12:03`,
//! `exited 137 (OOM killed) at 2026-12-04 10:00:01` and the other forms
//! supervisorctl prints in its description column.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_config::DurationValue;

use crate::machine::{JobState, Termination};

/// The description of a job that ended too soon after its start, in
/// supervisord's words, which operators search logs and docs for.
pub const EXITED_TOO_QUICKLY: &str = "Exited too quickly (process log may have details)";

/// The ending of a job's last run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LastRun {
    pub container_id: String,
    pub termination: Termination,
    /// The exit record counted OOM kills in the container's cgroup.
    pub oom_killed: bool,
    /// A stop needed SIGKILL to the whole cgroup after this timeout.
    pub killed_after: Option<Duration>,
    /// The run ended before `start_seconds` passed.
    pub failed_start: bool,
    /// The run ended after a stop signal went to it. Records written
    /// before this field existed read as false.
    #[serde(default)]
    pub stopped: bool,
    pub finished_at: SystemTime,
    /// For a failed start: the last line that the runtime's init or the
    /// monitor printed to the job's stderr during the run, such as
    /// `corral: init failed to fork the process: EAGAIN: Try again`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_error: Option<String>,
}

/// A scheduled restart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PendingRestart {
    /// Restart number within the window, from 1.
    pub attempt: u32,
    pub max_restarts: u32,
    pub at: SystemTime,
}

/// A stop in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct StopProgress {
    pub signal: String,
    /// When SIGKILL goes to the cgroup if the container is still running.
    pub kill_at: SystemTime,
    pub timeout: Duration,
    pub killed: bool,
}

/// Everything the description of one job depends on.
#[derive(Debug, Clone)]
pub struct StatusFacts<'a> {
    pub state: JobState,
    pub pid: Option<i32>,
    /// Start of the current container, for the uptime.
    pub started_at: Option<SystemTime>,
    pub now: SystemTime,
    /// When the job entered its state.
    pub since: SystemTime,
    pub last_run: Option<&'a LastRun>,
    pub pending_restart: Option<PendingRestart>,
    pub stop: Option<&'a StopProgress>,
    /// Restarts counted when the job became FATAL, and the window.
    pub fatal: Option<(u32, Duration)>,
    /// The job file's error while it is invalid.
    pub invalid: Option<&'a str>,
    /// Whether the container's init is stopped by a signal.
    pub paused: bool,
}

/// Builds the description column for one job.
pub fn describe(facts: &StatusFacts<'_>) -> String {
    if let Some(error) = facts.invalid {
        return describe_invalid(error, facts);
    }
    let mut text = match facts.state {
        JobState::Stopped => describe_stopped(facts),
        JobState::Starting => match facts.pid {
            Some(pid) => format!("pid {pid}, starting"),
            None => "starting".to_string(),
        },
        JobState::Running => describe_running(facts),
        JobState::Backoff => describe_backoff(facts),
        JobState::Stopping => describe_stopping(facts),
        JobState::Exited => match facts.last_run {
            Some(run) => ended_at(run),
            None => String::new(),
        },
        JobState::Fatal => describe_fatal(facts),
        // A job without a valid version has nothing else to show.
        JobState::Invalid => String::new(),
    };
    if facts.paused && matches!(facts.state, JobState::Starting | JobState::Running) {
        text.push_str(", paused (SIGSTOP)");
    }
    text
}

fn describe_invalid(error: &str, facts: &StatusFacts<'_>) -> String {
    if facts.state == JobState::Invalid {
        return error.to_string();
    }
    if facts.state.is_active() {
        return match facts.pid {
            Some(pid) => format!("{error} (previous version {}, pid {pid})", facts.state),
            None => format!("{error} (previous version {})", facts.state),
        };
    }
    // How the previous version's last run ended, in the words of the
    // line it would have with a valid file.
    if facts.last_run.is_none() {
        return format!("{error} (previous version {})", facts.state);
    }
    let previous = StatusFacts {
        invalid: None,
        ..facts.clone()
    };
    format!(
        "{error} (previous version {}, {})",
        facts.state,
        describe(&previous)
    )
}

fn describe_stopped(facts: &StatusFacts<'_>) -> String {
    let Some(run) = facts.last_run else {
        return "Not started".to_string();
    };
    match run.killed_after {
        Some(timeout) => format!(
            "stopped by SIGKILL after {} timeout at {}",
            DurationValue(timeout),
            format_local_time(run.finished_at)
        ),
        None if run.stopped => format!(
            "stopped at {}, {}",
            format_local_time(run.finished_at),
            termination_text(run)
        ),
        // A stop of a job in BACKOFF ended no run, so the time is the
        // stop's own and the exit status is the earlier run's.
        None => format!("stopped at {}", format_local_time(facts.since)),
    }
}

fn describe_running(facts: &StatusFacts<'_>) -> String {
    let uptime = facts
        .started_at
        .and_then(|started| facts.now.duration_since(started).ok())
        .unwrap_or_default();
    match facts.pid {
        Some(pid) => format!("pid {pid}, uptime {}", format_uptime(uptime)),
        None => format!("uptime {}", format_uptime(uptime)),
    }
}

/// True when the last run ended before its start time passed. A run whose
/// setup failed never started its process, so its description is the error
/// alone.
fn exited_too_quickly(run: &LastRun) -> bool {
    run.failed_start && !matches!(run.termination, Termination::SetupFailed { .. })
}

/// Returns ` (LINE)` for a run with a runtime error line, else nothing.
fn runtime_error_text(run: &LastRun) -> String {
    run.runtime_error
        .as_ref()
        .map(|line| format!(" ({line})"))
        .unwrap_or_default()
}

fn describe_backoff(facts: &StatusFacts<'_>) -> String {
    let mut text = match facts.last_run {
        Some(run) if exited_too_quickly(run) => {
            format!(
                "{EXITED_TOO_QUICKLY}: {}{}",
                termination_text(run),
                runtime_error_text(run)
            )
        }
        Some(run) => ended_at(run),
        None => String::new(),
    };
    if let Some(restart) = facts.pending_restart {
        let wait = restart.at.duration_since(facts.now).unwrap_or_default();
        if !text.is_empty() {
            text.push_str(", ");
        }
        text.push_str(&format!(
            "restart {} of {} in {}",
            restart.attempt,
            restart.max_restarts,
            format_countdown(wait)
        ));
    }
    text
}

fn describe_stopping(facts: &StatusFacts<'_>) -> String {
    let pid = facts
        .pid
        .map(|pid| format!("pid {pid}, "))
        .unwrap_or_default();
    match facts.stop {
        Some(stop) if stop.killed => format!(
            "{pid}SIGKILL sent after {} timeout",
            DurationValue(stop.timeout)
        ),
        Some(stop) => {
            let left = stop.kill_at.duration_since(facts.now).unwrap_or_default();
            format!(
                "{pid}{} sent, SIGKILL in {}",
                stop.signal,
                format_countdown(left)
            )
        }
        None => format!("{pid}stopping"),
    }
}

fn describe_fatal(facts: &StatusFacts<'_>) -> String {
    let mut text = match facts.last_run {
        Some(run) if exited_too_quickly(run) => {
            format!(
                "{EXITED_TOO_QUICKLY}: {}{}",
                ended_at(run),
                runtime_error_text(run)
            )
        }
        Some(run) => ended_at(run),
        None => String::new(),
    };
    if let Some((restarts, window)) = facts.fatal {
        if !text.is_empty() {
            text.push_str(", ");
        }
        let noun = if restarts == 1 { "restart" } else { "restarts" };
        text.push_str(&format!(
            "gave up after {restarts} {noun} within {}",
            DurationValue(window)
        ));
    }
    text
}

/// `exited 3 at 2026-12-04 10:00:01`, or the setup error.
fn ended_at(run: &LastRun) -> String {
    match run.termination {
        Termination::SetupFailed { .. } | Termination::ShimLost { .. } => termination_text(run),
        _ => format!(
            "{} at {}",
            termination_text(run),
            format_local_time(run.finished_at)
        ),
    }
}

/// Exit status of a process that SIGKILL ended. A shell, and the init of a
/// job with `"init": true`, also exit with it when SIGKILL ended their child.
const SIGKILL_STATUS: i32 = 128 + libc::SIGKILL;

/// The note for a run whose cgroup counted an OOM kill although the
/// container's init did not end by SIGKILL, so another process was killed.
const OOM_KILLED_OTHER: &str = "the OOM killer ended another process of the job";

/// `exited 3`, `exited 143 (SIGTERM)`, `exited 137 (OOM killed)`,
/// `exited 0 (the OOM killer ended another process of the job)`, or the
/// setup error.
///
/// `(OOM killed)` needs both an OOM kill in the exit record and an ending
/// by SIGKILL, because the OOM killer ends processes with SIGKILL. Another
/// ending with an OOM kill counted means that the OOM killer ended some
/// other process in the container's cgroup.
pub fn termination_text(run: &LastRun) -> String {
    let (status, reason) = match &run.termination {
        Termination::SetupFailed { message } => return format!("failed to start: {message}"),
        Termination::ShimLost { status } => {
            return format!("shim ended without an exit record ({status})")
        }
        Termination::Exited { code } if run.oom_killed && *code == SIGKILL_STATUS => {
            return format!("exited {code} (OOM killed)")
        }
        Termination::Signaled { signal, status } if run.oom_killed && signal == "SIGKILL" => {
            return format!("exited {status} (OOM killed)")
        }
        Termination::Exited { code } => (*code, None),
        Termination::Signaled { status, .. } if run.killed_after.is_some() => (
            *status,
            Some(format!(
                "SIGKILL after {} timeout",
                DurationValue(run.killed_after.unwrap_or_default())
            )),
        ),
        Termination::Signaled { signal, status } => (*status, Some(signal.clone())),
    };
    let oom_note = run.oom_killed.then(|| OOM_KILLED_OTHER.to_string());
    let notes: Vec<String> = reason.into_iter().chain(oom_note).collect();
    if notes.is_empty() {
        format!("exited {status}")
    } else {
        format!("exited {status} ({})", notes.join(", "))
    }
}

/// Formats the time until a timer fires, rounded up. Below 10 s it shows
/// tenths, so that a 100 ms backoff reads `0.1s` and not `1s`. From one
/// minute on it reads like an uptime, `0:01:30` or `3 days, 4:05:06`.
fn format_countdown(wait: Duration) -> String {
    if wait < Duration::from_secs(10) {
        let tenths = wait.as_millis().div_ceil(100);
        return if tenths % 10 == 0 {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format_uptime(Duration::from_secs(seconds))
    }
}

/// Formats an uptime as `0:12:03`, or `2 days, 3:04:05` from one day on.
pub fn format_uptime(uptime: Duration) -> String {
    let total = uptime.as_secs();
    let days = total / 86_400;
    let hours = total % 86_400 / 3600;
    let minutes = total % 3600 / 60;
    let seconds = total % 60;
    let clock = format!("{hours}:{minutes:02}:{seconds:02}");
    match days {
        0 => clock,
        1 => format!("1 day, {clock}"),
        _ => format!("{days} days, {clock}"),
    }
}

/// `2026-12-04 10:00:01` in the local time zone (the `TZ` variable or
/// /etc/localtime).
pub fn format_local_time(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(since_epoch) => since_epoch.as_secs() as libc::time_t,
        Err(before_epoch) => -(before_epoch.duration().as_secs() as libc::time_t),
    };
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid
    // value, and localtime_r writes only into the `tm` it is given.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call and localtime_r is the
    // reentrant form, so other threads calling it do not race on `tm`.
    let converted = unsafe { libc::localtime_r(&seconds, &mut tm) };
    if converted.is_null() {
        return format!("@{seconds}");
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn facts(state: JobState) -> StatusFacts<'static> {
        StatusFacts {
            state,
            pid: None,
            started_at: None,
            now: at(1_000_000),
            since: at(999_000),
            last_run: None,
            pending_restart: None,
            stop: None,
            fatal: None,
            invalid: None,
            paused: false,
        }
    }

    fn run(termination: Termination) -> LastRun {
        LastRun {
            container_id: "web-0011aabb".to_string(),
            termination,
            oom_killed: false,
            killed_after: None,
            failed_start: false,
            stopped: false,
            finished_at: at(999_000),
            runtime_error: None,
        }
    }

    #[test]
    fn uptime_formats() {
        assert_eq!(format_uptime(Duration::from_secs(0)), "0:00:00");
        assert_eq!(format_uptime(Duration::from_secs(723)), "0:12:03");
        assert_eq!(format_uptime(Duration::from_secs(36_000 + 61)), "10:01:01");
        assert_eq!(
            format_uptime(Duration::from_secs(86_400 + 5)),
            "1 day, 0:00:05"
        );
        assert_eq!(
            format_uptime(Duration::from_secs(3 * 86_400 + 3600)),
            "3 days, 1:00:00"
        );
    }

    #[test]
    fn local_time_layout() {
        let text = format_local_time(at(1_796_378_401));
        assert_eq!(text.len(), "2026-12-04 10:00:01".len(), "{text}");
        assert_eq!(&text[4..5], "-");
        assert_eq!(&text[10..11], " ");
        assert!(text.ends_with(":01"), "{text}");
    }

    #[test]
    fn running_shows_pid_and_uptime() {
        let mut running = facts(JobState::Running);
        running.pid = Some(1234);
        running.started_at = Some(at(1_000_000 - 723));
        assert_eq!(describe(&running), "pid 1234, uptime 0:12:03");
    }

    #[test]
    fn paused_job_description() {
        let mut running = facts(JobState::Running);
        running.pid = Some(1234);
        running.started_at = Some(at(1_000_000 - 723));
        running.paused = true;
        assert_eq!(
            describe(&running),
            "pid 1234, uptime 0:12:03, paused (SIGSTOP)"
        );

        let mut starting = facts(JobState::Starting);
        starting.pid = Some(1234);
        starting.paused = true;
        assert_eq!(describe(&starting), "pid 1234, starting, paused (SIGSTOP)");

        // A stop resumes the job, so STOPPING never shows a pause.
        let mut stopping = facts(JobState::Stopping);
        stopping.paused = true;
        assert!(!describe(&stopping).contains("paused"));
    }

    #[test]
    fn starting_shows_pid_once_known() {
        let mut starting = facts(JobState::Starting);
        assert_eq!(describe(&starting), "starting");
        starting.pid = Some(1234);
        assert_eq!(describe(&starting), "pid 1234, starting");
    }

    #[test]
    fn exited_with_oom_kill() {
        let mut last = run(Termination::Signaled {
            signal: "SIGKILL".to_string(),
            status: 137,
        });
        last.oom_killed = true;
        let mut exited = facts(JobState::Exited);
        exited.last_run = Some(&last);
        let expected = format!(
            "exited 137 (OOM killed) at {}",
            format_local_time(at(999_000))
        );
        assert_eq!(describe(&exited), expected);
    }

    #[test]
    fn oom_kill_of_another_process() {
        let mut clean_exit = run(Termination::Exited { code: 0 });
        clean_exit.oom_killed = true;
        assert_eq!(
            termination_text(&clean_exit),
            "exited 0 (the OOM killer ended another process of the job)"
        );
        let mut exited = facts(JobState::Exited);
        exited.last_run = Some(&clean_exit);
        let expected = format!(
            "exited 0 (the OOM killer ended another process of the job) at {}",
            format_local_time(at(999_000))
        );
        assert_eq!(describe(&exited), expected);

        let mut failure = run(Termination::Exited { code: 1 });
        failure.oom_killed = true;
        assert_eq!(
            termination_text(&failure),
            "exited 1 (the OOM killer ended another process of the job)"
        );

        let mut crashed = run(Termination::Signaled {
            signal: "SIGSEGV".to_string(),
            status: 139,
        });
        crashed.oom_killed = true;
        assert_eq!(
            termination_text(&crashed),
            "exited 139 (SIGSEGV, the OOM killer ended another process of the job)"
        );
    }

    #[test]
    fn oom_kill_of_init_child() {
        // With "init": true the init exits 137 when SIGKILL ended its child.
        let mut child_killed = run(Termination::Exited { code: 137 });
        child_killed.oom_killed = true;
        assert_eq!(termination_text(&child_killed), "exited 137 (OOM killed)");
        child_killed.oom_killed = false;
        assert_eq!(termination_text(&child_killed), "exited 137");
    }

    #[test]
    fn exited_by_signal_and_code() {
        let signaled = run(Termination::Signaled {
            signal: "SIGTERM".to_string(),
            status: 143,
        });
        assert_eq!(termination_text(&signaled), "exited 143 (SIGTERM)");
        let code = run(Termination::Exited { code: 3 });
        assert_eq!(termination_text(&code), "exited 3");
        let setup = run(Termination::SetupFailed {
            message: "corral: image \"web\" not found".to_string(),
        });
        assert_eq!(
            termination_text(&setup),
            "failed to start: corral: image \"web\" not found"
        );
    }

    #[test]
    fn stopped_after_kill_names_timeout() {
        let mut last = run(Termination::Signaled {
            signal: "SIGKILL".to_string(),
            status: 137,
        });
        last.killed_after = Some(Duration::from_secs(10));
        let mut stopped = facts(JobState::Stopped);
        stopped.last_run = Some(&last);
        let text = describe(&stopped);
        assert!(
            text.starts_with("stopped by SIGKILL after 10s timeout at "),
            "{text}"
        );
    }

    #[test]
    fn countdowns_show_tenths_then_clock() {
        for (millis, text) in [
            (0, "0s"),
            (1, "0.1s"),
            (100, "0.1s"),
            (101, "0.2s"),
            (1_800, "1.8s"),
            (2_000, "2s"),
            (9_950, "10s"),
            (10_000, "10s"),
            (17_200, "18s"),
            (59_000, "59s"),
            (59_001, "0:01:00"),
            (60_000, "0:01:00"),
            (90_000, "0:01:30"),
            (3_600_000, "1:00:00"),
            (86_400_000, "1 day, 0:00:00"),
            (27_638_365_000, "319 days, 21:19:25"),
        ] {
            assert_eq!(format_countdown(Duration::from_millis(millis)), text);
        }
    }

    #[test]
    fn stopped_shows_the_exit_status() {
        let mut last = run(Termination::Exited { code: 42 });
        last.stopped = true;
        let mut stopped = facts(JobState::Stopped);
        stopped.last_run = Some(&last);
        assert_eq!(
            describe(&stopped),
            format!(
                "stopped at {}, exited 42",
                format_local_time(last.finished_at)
            )
        );
        let mut last = run(Termination::Signaled {
            signal: "SIGTERM".to_string(),
            status: 143,
        });
        last.stopped = true;
        stopped.last_run = Some(&last);
        assert!(
            describe(&stopped).ends_with(", exited 143 (SIGTERM)"),
            "{}",
            describe(&stopped)
        );
    }

    #[test]
    fn stop_in_backoff_shows_its_own_time() {
        let last = run(Termination::Exited { code: 3 });
        let mut stopped = facts(JobState::Stopped);
        stopped.last_run = Some(&last);
        stopped.since = at(1_000_500);
        assert_eq!(
            describe(&stopped),
            format!("stopped at {}", format_local_time(at(1_000_500)))
        );
    }

    #[test]
    fn stopped_before_any_start() {
        assert_eq!(describe(&facts(JobState::Stopped)), "Not started");
    }

    #[test]
    fn backoff_after_quick_exit() {
        let mut last = run(Termination::Exited { code: 3 });
        last.failed_start = true;
        let mut backoff = facts(JobState::Backoff);
        backoff.last_run = Some(&last);
        backoff.pending_restart = Some(PendingRestart {
            attempt: 2,
            max_restarts: 5,
            at: at(1_000_000) + Duration::from_millis(1500),
        });
        assert_eq!(
            describe(&backoff),
            format!("{EXITED_TOO_QUICKLY}: exited 3, restart 2 of 5 in 1.5s")
        );
    }

    #[test]
    fn setup_failure_is_not_a_quick_exit() {
        let mut last = run(Termination::SetupFailed {
            message: "127.0.0.1:8080: Address already in use".to_string(),
        });
        last.failed_start = true;
        let mut backoff = facts(JobState::Backoff);
        backoff.last_run = Some(&last);
        assert_eq!(
            describe(&backoff),
            "failed to start: 127.0.0.1:8080: Address already in use"
        );
        let mut fatal = facts(JobState::Fatal);
        fatal.last_run = Some(&last);
        fatal.fatal = Some((5, Duration::from_secs(60)));
        assert_eq!(
            describe(&fatal),
            "failed to start: 127.0.0.1:8080: Address already in use, \
             gave up after 5 restarts within 1m"
        );
    }

    #[test]
    fn fatal_says_why_and_last_exit() {
        let mut last = run(Termination::Exited { code: 3 });
        last.failed_start = true;
        let mut fatal = facts(JobState::Fatal);
        fatal.last_run = Some(&last);
        fatal.fatal = Some((5, Duration::from_secs(60)));
        let text = describe(&fatal);
        assert!(text.starts_with(EXITED_TOO_QUICKLY), "{text}");
        assert!(text.contains("exited 3 at "), "{text}");
        assert!(
            text.ends_with("gave up after 5 restarts within 1m"),
            "{text}"
        );
    }

    #[test]
    fn stopping_counts_down_to_kill() {
        let progress = StopProgress {
            signal: "SIGTERM".to_string(),
            kill_at: at(1_000_007),
            timeout: Duration::from_secs(10),
            killed: false,
        };
        let mut stopping = facts(JobState::Stopping);
        stopping.pid = Some(42);
        stopping.stop = Some(&progress);
        assert_eq!(describe(&stopping), "pid 42, SIGTERM sent, SIGKILL in 7s");

        let killed = StopProgress {
            killed: true,
            ..progress.clone()
        };
        stopping.stop = Some(&killed);
        assert_eq!(
            describe(&stopping),
            "pid 42, SIGKILL sent after 10s timeout"
        );
    }

    #[test]
    fn invalid_keeps_previous_version_visible() {
        let error = "/etc/corral/jobs.d/web.json:3:14: resources.memory: invalid size";
        let mut invalid = facts(JobState::Running);
        invalid.invalid = Some(error);
        invalid.pid = Some(77);
        assert_eq!(
            describe(&invalid),
            format!("{error} (previous version RUNNING, pid 77)")
        );
        let mut never_valid = facts(JobState::Invalid);
        never_valid.invalid = Some(error);
        assert_eq!(describe(&never_valid), error);

        // An ended previous version keeps how it ended.
        let mut gave_up = facts(JobState::Fatal);
        gave_up.fatal = Some((3, Duration::from_secs(60)));
        let ended = run(Termination::Exited { code: 3 });
        gave_up.last_run = Some(&ended);
        let valid_line = describe(&gave_up);
        gave_up.invalid = Some(error);
        assert_eq!(
            describe(&gave_up),
            format!("{error} (previous version FATAL, {valid_line})")
        );
        assert!(valid_line.contains("exited 3"), "{valid_line}");
        let mut never_started = facts(JobState::Stopped);
        never_started.invalid = Some(error);
        assert_eq!(
            describe(&never_started),
            format!("{error} (previous version STOPPED)")
        );
    }
}
