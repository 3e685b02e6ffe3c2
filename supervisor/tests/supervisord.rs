//! End-to-end tests of supervisord and supervisorctl with the real `corral`
//! shim. They run as root and skip with a SKIP line otherwise.

mod harness;

use std::time::{Duration, Instant};

use corral_supervisor::api::{JobList, JobView, ReloadReport};
use corral_supervisor::machine::JobState;
use harness::{shell_job, skip, stderr_of, stdout_of, tool_missing, Daemon};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(15);

fn sleeper() -> String {
    json!({"image": "host", "command": ["/bin/sleep", "300"], "start_seconds": "300ms",
           "stop": {"timeout": "2s"}})
    .to_string()
}

/// A job that exits at once on SIGTERM: a shell with a trap, because PID 1
/// of a namespace ignores signals it installed no handler for.
fn term_handler() -> String {
    shell_job(
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    )
}

#[test]
fn status_exit_codes() {
    if skip("status_exit_codes") {
        return;
    }
    let once = shell_job(
        "exit 0",
        json!({"start_seconds": "0s", "restart": {"policy": "never"}}),
    );
    let daemon = Daemon::start(&[("web", &sleeper()), ("once", &once)]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_for_state("once", JobState::Exited, SETTLE);
    // The shim and the init add nothing to the job's own output.
    assert_eq!(daemon.job_log("once", "stderr"), "");

    let all = daemon.ctl(&["status"]);
    assert_eq!(all.status.code(), Some(3), "{}", stdout_of(&all));
    let table = stdout_of(&all);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with(&format!("once{}EXITED    exited 0 at ", " ".repeat(28))),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&format!("web{}RUNNING   pid ", " ".repeat(29))),
        "{table}"
    );
    assert!(lines[1].contains(", uptime 0:00:"), "{table}");

    let web = daemon.ctl(&["status", "web"]);
    assert_eq!(web.status.code(), Some(0), "{}", stdout_of(&web));

    let unknown = daemon.ctl(&["status", "web", "nosuchjob"]);
    assert_eq!(unknown.status.code(), Some(4));
    assert!(
        stderr_of(&unknown).contains("nosuchjob: ERROR (no such job)"),
        "{}",
        stderr_of(&unknown)
    );

    let json = daemon.ctl(&["status", "--json", "web"]);
    let views: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(views[0]["state"], "RUNNING");
    assert!(views[0]["pid"].as_i64().unwrap() > 1);
    assert!(views[0]["container_id"]
        .as_str()
        .unwrap()
        .starts_with("web-"));

    let started = Instant::now();
    let again = daemon.ctl(&["status"]);
    assert_eq!(again.status.code(), Some(3));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "status took {:?}",
        started.elapsed()
    );
}

#[test]
fn unreachable_daemon_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("supervisor.sock");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let message = stderr_of(&output);
    assert!(message.contains(&socket.display().to_string()), "{message}");
    assert!(
        message.contains("supervisord is not running or the socket is not accessible"),
        "{message}"
    );
}

/// Sends SIGCONT to a stopped supervisord when dropped, so a failed test
/// leaves no stopped daemon behind for the harness to wait on.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

#[test]
fn stopped_daemon_times_out() {
    if skip("stopped_daemon_times_out") {
        return;
    }
    let daemon = Daemon::start(&[]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let _resume = Continue(daemon.pid());

    let started = Instant::now();
    let output = daemon.ctl(&["--timeout", "1", "status"]);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
    assert!(took >= Duration::from_secs(1), "gave up after {took:?}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
    let message = stderr_of(&output);
    assert!(
        message.contains(&daemon.socket().display().to_string()),
        "{message}"
    );
    assert!(message.contains("within 1s"), "{message}");

    let stop = daemon.ctl(&["--timeout", "500ms", "stop", "all"]);
    assert_eq!(stop.status.code(), Some(4), "{}", stderr_of(&stop));
}

#[test]
fn missing_jobs_dir_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("no-such-jobs.d");
    let run = dir.path().join("run");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_supervisord"))
        .arg("--jobs-dir")
        .arg(&jobs)
        .arg("--run-dir")
        .arg(&run)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--log-dir")
        .arg(dir.path().join("log"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("supervisord kept running without its jobs directory");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut message = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut message).unwrap();

    assert_eq!(status.code(), Some(1), "{message}");
    assert!(message.contains(&jobs.display().to_string()), "{message}");
    assert!(
        message.contains("create it or pass --jobs-dir"),
        "{message}"
    );
    assert!(!run.exists(), "the run dir was created before the check");
}

#[test]
fn start_stop_restart() {
    if skip("start_stop_restart") {
        return;
    }
    let daemon = Daemon::start(&[("web", &term_handler())]);
    let first = daemon.wait_for_state("web", JobState::Running, SETTLE);

    let stop = daemon.ctl(&["stop", "web"]);
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}{}",
        stdout_of(&stop),
        stderr_of(&stop)
    );
    assert_eq!(stdout_of(&stop), "web: stopped\n");
    let stopped = daemon.job("web").unwrap();
    assert_eq!(stopped.state, JobState::Stopped);
    assert!(
        stopped.description.starts_with("stopped at ")
            && stopped.description.ends_with(", exited 0"),
        "{}",
        stopped.description
    );
    assert_eq!(stopped.exit_status, Some(0));
    assert_eq!(stopped.pid, None);

    let stop_again = daemon.ctl(&["stop", "web"]);
    assert_eq!(stop_again.status.code(), Some(1));
    assert!(
        stdout_of(&stop_again).contains("is not running"),
        "{}",
        stdout_of(&stop_again)
    );

    let start = daemon.ctl(&["start", "web"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    assert_eq!(stdout_of(&start), "web: started\n");
    let second = daemon.job("web").unwrap();
    assert_eq!(second.state, JobState::Running);
    assert_ne!(second.container_id, first.container_id);

    let restart = daemon.ctl(&["restart", "web"]);
    assert_eq!(restart.status.code(), Some(0), "{}", stdout_of(&restart));
    let third = daemon.job("web").unwrap();
    assert_eq!(third.state, JobState::Running);
    assert_ne!(third.container_id, second.container_id);
    assert_ne!(third.pid, second.pid);

    let pid = daemon.ctl(&["pid", "web"]);
    assert_eq!(stdout_of(&pid).trim(), third.pid.unwrap().to_string());

    let start_running = daemon.ctl(&["start", "web"]);
    assert_eq!(start_running.status.code(), Some(1));
    assert!(
        stdout_of(&start_running).contains("already running"),
        "{}",
        stdout_of(&start_running)
    );

    let missing = daemon.ctl(&["stop", "nosuchjob"]);
    assert_eq!(missing.status.code(), Some(4));
    assert!(
        stdout_of(&missing).contains("nosuchjob: ERROR (no such job)"),
        "{}",
        stdout_of(&missing)
    );
}

#[test]
fn ignored_sigterm_gets_sigkill() {
    if skip("ignored_sigterm_gets_sigkill") {
        return;
    }
    // /bin/sleep is PID 1 in its namespace and has no SIGTERM handler, so
    // the kernel drops the stop signal.
    let stubborn = json!({"image": "host", "command": ["/bin/sleep", "300"],
                          "start_seconds": "300ms", "stop": {"timeout": "1s"}})
    .to_string();
    let daemon = Daemon::start(&[("stubborn", &stubborn)]);
    daemon.wait_for_state("stubborn", JobState::Running, SETTLE);

    let started = Instant::now();
    let stop = daemon.ctl(&["stop", "stubborn"]);
    let took = started.elapsed();
    assert_eq!(stop.status.code(), Some(5), "{}", stdout_of(&stop));
    assert!(
        took >= Duration::from_secs(1),
        "stop took {took:?}, before the timeout"
    );
    assert!(took < Duration::from_secs(8), "stop took {took:?}");

    assert_eq!(
        stdout_of(&stop),
        "stubborn: stopped by SIGKILL after 1s timeout\n"
    );
    let view = daemon.job("stubborn").unwrap();
    assert_eq!(view.state, JobState::Stopped);
    assert!(
        view.description
            .starts_with("stopped by SIGKILL after 1s timeout at "),
        "{}\n{}",
        view.description,
        daemon.diagnostics()
    );
    assert_eq!(view.signal.as_deref(), Some("SIGKILL"));
    assert_eq!(view.exit_status, Some(137));
    assert!(
        daemon.daemon_log().contains("stop timed out"),
        "{}",
        daemon.diagnostics()
    );

    // A start of the stopped job does not count the earlier kill.
    let start = daemon.ctl(&["start", "stubborn"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    let restart = daemon.ctl(&["restart", "stubborn"]);
    assert_eq!(restart.status.code(), Some(5), "{}", stdout_of(&restart));
    assert_eq!(
        stdout_of(&restart),
        "stubborn: restarted; the stop needed SIGKILL after 1s timeout\n"
    );

    // A start while the stop waits for its timeout makes the stop's reply
    // come once the job runs again; the reply still names the kill.
    let stopping = std::thread::scope(|scope| {
        let stop = scope.spawn(|| daemon.ctl(&["stop", "stubborn"]));
        daemon.wait_for_state("stubborn", JobState::Stopping, SETTLE);
        let start = daemon.ctl(&["start", "stubborn"]);
        assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
        stop.join().unwrap()
    });
    assert_eq!(stopping.status.code(), Some(5), "{}", stdout_of(&stopping));
    assert_eq!(
        stdout_of(&stopping),
        "stubborn: stopped by SIGKILL after 1s timeout\n"
    );
}

#[test]
fn on_failure_restarts_then_fatal() {
    if skip("on_failure_restarts_then_fatal") {
        return;
    }
    let failing = shell_job(
        "echo run; exit 3",
        json!({"start_seconds": "1s",
               "restart": {"policy": "on-failure", "max_restarts": 3, "window": "60s",
                           "backoff": {"initial": "100ms", "max": "400ms"}}}),
    );
    let daemon = Daemon::start(&[("failing", &failing)]);
    let fatal = daemon.wait_for_state("failing", JobState::Fatal, Duration::from_secs(30));
    assert_eq!(fatal.restarts, 3);
    assert_eq!(fatal.exit_status, Some(3));
    assert!(
        fatal.description.starts_with("Exited too quickly"),
        "{}",
        fatal.description
    );
    assert!(
        fatal.description.contains("exited 3 at "),
        "{}",
        fatal.description
    );
    assert!(
        fatal
            .description
            .contains("gave up after 3 restarts within 1m"),
        "{}",
        fatal.description
    );
    assert_eq!(
        daemon.job_log("failing", "stdout").matches("run\n").count(),
        4
    );

    // Each count field in the daemon log names what it counts: the
    // restarts since supervisord started or those within the window.
    let log = daemon.daemon_log();
    let line_of = |message: &str| -> String {
        log.lines()
            .rfind(|line| line.contains(message))
            .unwrap_or_else(|| panic!("no {message:?} line in the daemon log:\n{log}"))
            .to_string()
    };
    let restarting = line_of("restarting job");
    assert!(restarting.contains("total_restarts=3"), "{restarting}");
    let scheduled = line_of("restart scheduled");
    assert!(scheduled.contains("attempt_in_window=3"), "{scheduled}");
    assert!(scheduled.contains("max_restarts=3"), "{scheduled}");
    let giving_up = line_of("job keeps exiting; giving up");
    assert!(giving_up.contains("restarts_in_window=3"), "{giving_up}");
    assert!(giving_up.contains("window=60s"), "{giving_up}");

    let status = daemon.ctl(&["status", "failing"]);
    assert_eq!(status.status.code(), Some(3));
    assert!(
        stdout_of(&status).contains("FATAL"),
        "{}",
        stdout_of(&status)
    );
}

#[test]
fn on_failure_restart_recovers() {
    if skip("on_failure_restart_recovers") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // The first run leaves a marker on a bind mount and fails; the second
    // finds it and keeps running.
    let flaky = shell_job(
        "if [ -e /mnt/marker ]; then exec sleep 300; fi; touch /mnt/marker; exit 1",
        json!({"start_seconds": "500ms",
               "mounts": [{"type": "bind", "source": state.path(), "target": "/mnt"}],
               "restart": {"policy": "on-failure", "backoff": {"initial": "100ms", "max": "1s"}}}),
    );
    let daemon = Daemon::start(&[("flaky", &flaky)]);
    // On a loaded machine the first run may pass its start time before it
    // exits, so the test waits for the run after the restart.
    daemon.wait_until(SETTLE, "the restarted run is RUNNING", |daemon| {
        daemon
            .job("flaky")
            .is_ok_and(|job| job.state == JobState::Running && job.restarts >= 1)
    });
    let running = daemon.job("flaky").unwrap();
    assert_eq!(running.restarts, 1, "{running:#?}");
    assert!(state.path().join("marker").exists());
}

#[test]
fn policies_on_clean_exit() {
    if skip("policies_on_clean_exit") {
        return;
    }
    let on_failure = shell_job(
        "exit 0",
        json!({"start_seconds": "0s", "restart": {"policy": "on-failure"}}),
    );
    let always = shell_job(
        "echo run; exit 0",
        json!({"start_seconds": "0s",
               "restart": {"policy": "always", "max_restarts": 2,
                           "backoff": {"initial": "50ms", "max": "100ms"}}}),
    );
    // An exit 0 before start_seconds passed is a failed start, which
    // on-failure restarts.
    let quick = shell_job(
        "echo run; exit 0",
        json!({"start_seconds": "1s",
               "restart": {"policy": "on-failure", "max_restarts": 1,
                           "backoff": {"initial": "50ms", "max": "50ms"}}}),
    );
    let daemon = Daemon::start(&[
        ("clean", &on_failure),
        ("forever", &always),
        ("quick", &quick),
    ]);
    let clean = daemon.wait_for_state("clean", JobState::Exited, SETTLE);
    assert_eq!(clean.restarts, 0);
    assert_eq!(clean.exit_status, Some(0));
    let quick = daemon.wait_for_state("quick", JobState::Fatal, SETTLE);
    assert_eq!(quick.restarts, 1, "{quick:#?}");
    assert_eq!(quick.exit_status, Some(0));
    assert!(
        quick.description.starts_with("Exited too quickly"),
        "{}",
        quick.description
    );
    assert_eq!(
        daemon.job_log("quick", "stdout").matches("run\n").count(),
        2
    );
    let forever = daemon.wait_for_state("forever", JobState::Fatal, SETTLE);
    assert_eq!(forever.restarts, 2);
    assert_eq!(
        daemon.job_log("forever", "stdout").matches("run\n").count(),
        3
    );
}

#[test]
fn invalid_file_shows_position() {
    if skip("invalid_file_shows_position") {
        return;
    }
    let bad = "{\n  \"command\": [\"/bin/true\"],\n  \"resources\": {\"memory\": \"12X\"}\n}\n";
    let daemon = Daemon::start(&[("good", &sleeper()), ("bad", bad)]);
    daemon.wait_for_state("good", JobState::Running, SETTLE);

    let view = daemon.job("bad").unwrap();
    assert_eq!(view.state, JobState::Invalid);
    let error = view.error.clone().expect("an invalid job has an error");
    assert_eq!(error.line, Some(3));
    assert!(error.column.is_some());
    assert_eq!(error.field.as_deref(), Some("resources.memory"));
    let file = daemon.jobs_dir().join("bad.json");
    assert_eq!(error.file, file);

    let status = daemon.ctl(&["status"]);
    assert_eq!(status.status.code(), Some(3));
    let table = stdout_of(&status);
    let bad_line = table.lines().find(|line| line.starts_with("bad ")).unwrap();
    assert!(bad_line.contains("INVALID"), "{table}");
    let position = format!(
        "{}:3:{}: resources.memory: ",
        file.display(),
        error.column.unwrap()
    );
    assert!(bad_line.contains(&position), "{table}");

    let start = daemon.ctl(&["start", "bad"]);
    assert_eq!(start.status.code(), Some(1));
    assert!(
        stdout_of(&start).contains("no valid job file"),
        "{}",
        stdout_of(&start)
    );
}

#[test]
fn reserved_job_name_is_invalid() {
    if skip("reserved_job_name_is_invalid") {
        return;
    }
    let daemon = Daemon::start(&[("good", &sleeper()), ("all", &sleeper())]);
    daemon.wait_for_state("good", JobState::Running, SETTLE);

    let view = daemon.job("all").unwrap();
    assert_eq!(view.state, JobState::Invalid, "{view:#?}");
    assert_eq!(view.pid, None);
    let error = view.error.expect("an invalid job has an error");
    assert_eq!(error.file, daemon.jobs_dir().join("all.json"));
    assert!(
        error.message.contains("job name \"all\" is reserved"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("rename the file"),
        "{}",
        error.message
    );
}

#[test]
fn reload_applies_changes() {
    if skip("reload_applies_changes") {
        return;
    }
    let daemon = Daemon::start(&[
        ("keep", &term_handler()),
        ("edit", &term_handler()),
        ("drop", &sleeper()),
        ("idle", &term_handler()),
    ]);
    let keep = daemon.wait_for_state("keep", JobState::Running, SETTLE);
    let edit = daemon.wait_for_state("edit", JobState::Running, SETTLE);
    daemon.wait_for_state("drop", JobState::Running, SETTLE);
    daemon.wait_for_state("idle", JobState::Running, SETTLE);
    let stop = daemon.ctl(&["stop", "idle"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));

    // A change to the restart policy alone keeps the container; a change
    // to the command replaces it.
    let keep_hot = shell_job(
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"},
               "restart": {"policy": "always"}}),
    );
    daemon.write_job("keep", &keep_hot);
    daemon.write_job(
        "edit",
        &shell_job(
            "trap 'exit 0' TERM; while :; do sleep 0.2; done",
            json!({"start_seconds": "300ms"}),
        ),
    );
    daemon.remove_job("drop");
    daemon.write_job("fresh", &term_handler());
    // A stopped job keeps its state; the new command applies at its next
    // start.
    daemon.write_job(
        "idle",
        &shell_job(
            "trap 'exit 0' TERM; while :; do sleep 0.3; done",
            json!({"start_seconds": "300ms"}),
        ),
    );

    let report: ReloadReport = daemon.client().post("/v1/reread", None).unwrap();
    let mut summary: Vec<String> = report
        .changes
        .iter()
        .map(|change| {
            format!(
                "{} {} {}",
                change.name,
                change.kind.as_str(),
                change.restart
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            "drop removed false",
            "edit changed true",
            "fresh added false",
            "idle changed false",
            "keep changed false"
        ]
    );
    let idle_change = report
        .changes
        .iter()
        .find(|change| change.name == "idle")
        .unwrap();
    assert!(idle_change.next_start, "{idle_change:?}");
    let fields_of = |name: &str| {
        report
            .changes
            .iter()
            .find(|change| change.name == name)
            .map(|change| change.fields.clone())
            .unwrap()
    };
    assert_eq!(fields_of("keep"), ["restart.policy"]);
    assert_eq!(fields_of("edit"), ["command"]);
    let reread = daemon.ctl(&["reread"]);
    assert!(
        stdout_of(&reread).contains("keep: changed restart.policy\n"),
        "{}",
        stdout_of(&reread)
    );
    assert!(
        stdout_of(&reread).contains("edit: changed command; needs a restart\n"),
        "{}",
        stdout_of(&reread)
    );
    assert!(
        stdout_of(&reread).contains("idle: changed command; applies at the next start\n"),
        "{}",
        stdout_of(&reread)
    );

    let update = daemon.ctl(&["update"]);
    assert_eq!(update.status.code(), Some(0), "{}", stdout_of(&update));
    let printed = stdout_of(&update);
    assert!(
        printed.contains("edit: changed command; restarted"),
        "{printed}"
    );
    assert!(printed.contains("fresh: added"), "{printed}");
    assert!(printed.contains("drop: removed"), "{printed}");

    daemon.wait_until(SETTLE, "the removed job is gone", |daemon| {
        daemon.job("drop").is_err()
    });
    let fresh = daemon.wait_for_state("fresh", JobState::Running, SETTLE);
    assert!(fresh.container_id.is_some());
    daemon.wait_until(SETTLE, "the edited job runs a new container", |daemon| {
        daemon.job("edit").is_ok_and(|view| {
            view.state == JobState::Running && view.container_id != edit.container_id
        })
    });
    let kept = daemon.job("keep").unwrap();
    assert_eq!(kept.container_id, keep.container_id);
    assert_eq!(kept.pid, keep.pid);
    let idle = daemon.job("idle").unwrap();
    assert_eq!(idle.state, JobState::Stopped, "{idle:#?}");

    // An invalid version leaves the last valid one running.
    daemon.write_job("keep", "{\"command\": [\"/bin/true\"], \"nonsense\": 1}");
    let update = daemon.ctl(&["update"]);
    assert!(
        stdout_of(&update).contains("keep: invalid: "),
        "{}",
        stdout_of(&update)
    );
    let invalid = daemon.job("keep").unwrap();
    assert_eq!(invalid.state, JobState::Invalid);
    assert_eq!(invalid.process_state, JobState::Running);
    assert_eq!(invalid.pid, keep.pid);
    assert!(
        invalid.description.contains("previous version RUNNING"),
        "{}",
        invalid.description
    );

    // A re-read names the file that is still invalid, and fails.
    let again = daemon.ctl(&["reread"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stdout_of(&again).starts_with("keep: invalid: "),
        "{}",
        stdout_of(&again)
    );

    daemon.write_job("keep", &term_handler());
    let update = daemon.ctl(&["update"]);
    assert_eq!(update.status.code(), Some(0), "{}", stdout_of(&update));
    let nothing = daemon.ctl(&["reread"]);
    assert_eq!(nothing.status.code(), Some(0));
    assert_eq!(stdout_of(&nothing), "No config updates to jobs\n");
}

#[test]
fn inotify_reloads_by_itself() {
    if skip("inotify_reloads_by_itself") {
        return;
    }
    let daemon = Daemon::start(&[]);
    let written = Instant::now();
    daemon.write_job("late", &term_handler());
    daemon.wait_for_state("late", JobState::Running, Duration::from_secs(5));
    assert!(
        written.elapsed() < Duration::from_secs(3),
        "took {:?}",
        written.elapsed()
    );

    daemon.remove_job("late");
    daemon.wait_until(
        Duration::from_secs(15),
        "the deleted job is removed",
        |daemon| daemon.job("late").is_err(),
    );
}

#[test]
fn signal_pid_spec_and_tail() {
    if skip("signal_pid_spec_and_tail") {
        return;
    }
    let hup = shell_job(
        "trap 'echo got-hup' HUP; echo ready; echo oops >&2; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "3s"}, "labels": {"team": "web"}}),
    );
    let daemon = Daemon::start(&[("hup", &hup)]);
    let view = daemon.wait_for_state("hup", JobState::Running, SETTLE);

    let signal = daemon.ctl(&["signal", "HUP", "hup"]);
    assert_eq!(signal.status.code(), Some(0), "{}", stdout_of(&signal));
    daemon.wait_until(SETTLE, "the job logged the signal", |daemon| {
        daemon.job_log("hup", "stdout").contains("got-hup")
    });

    // supervisorctl rejects a bad signal as a usage error, and so does the
    // API for other clients.
    let bad_signal = daemon.ctl(&["signal", "NOPE", "hup"]);
    assert_eq!(bad_signal.status.code(), Some(2));
    assert!(
        stderr_of(&bad_signal).contains("invalid signal \"NOPE\""),
        "{}",
        stderr_of(&bad_signal)
    );
    let error = daemon
        .client()
        .post::<serde_json::Value>("/v1/jobs/hup/signal", Some(&json!({"signal": "NOPE"})))
        .unwrap_err();
    assert_eq!(error.status(), Some(400), "{error}");
    assert!(error.to_string().contains("invalid signal"), "{error}");
    // In a batch, an unknown name is reported as unknown before the signal
    // is checked, as in a request for that job alone.
    let batch: corral_supervisor::api::BatchReply = daemon
        .client()
        .post(
            "/v1/batch/signal",
            Some(&json!({"names": ["hup", "nope"], "signal": "NOPE"})),
        )
        .unwrap();
    let statuses: Vec<(&str, u16)> = batch
        .results
        .iter()
        .map(|result| (result.name.as_str(), result.status))
        .collect();
    assert_eq!(statuses, [("hup", 400), ("nope", 404)], "{batch:?}");

    let pid = daemon.ctl(&["pid", "hup"]);
    assert_eq!(stdout_of(&pid).trim(), view.pid.unwrap().to_string());
    let daemon_pid = daemon.ctl(&["pid"]);
    assert_eq!(stdout_of(&daemon_pid).trim(), daemon.pid().to_string());

    let spec = daemon.ctl(&["spec", "hup"]);
    let config: serde_json::Value = serde_json::from_slice(&spec.stdout).unwrap();
    assert_eq!(config["process"]["args"][0], "/bin/sh");
    assert_eq!(config["annotations"]["run.corral.job"], "hup");
    // The config names a new container's cgroup, so running it by hand
    // does not take over the running container's.
    let cgroups_path = config["linux"]["cgroupsPath"].as_str().unwrap();
    let running = format!(
        "{}/{}",
        daemon.cgroup_parent,
        view.container_id.clone().unwrap()
    );
    assert!(
        cgroups_path.starts_with(&format!("{}/hup-", daemon.cgroup_parent)),
        "{cgroups_path}"
    );
    assert_ne!(cgroups_path, running);

    let tail = daemon.ctl(&["tail", "-n", "1", "hup"]);
    assert_eq!(stdout_of(&tail), "got-hup\n");
    let tail_err = daemon.ctl(&["tail", "--stderr", "hup"]);
    assert_eq!(stdout_of(&tail_err), "oops\n");
    let log_dir = daemon.log_dir();
    let direct = daemon.ctl(&[
        "tail",
        "--log-dir",
        log_dir.to_str().unwrap(),
        "-n",
        "5",
        "hup",
    ]);
    assert_eq!(stdout_of(&direct), "ready\ngot-hup\n");
}

#[test]
fn unknown_job_and_missing_log() {
    if skip("unknown_job_and_missing_log") {
        return;
    }
    let idle = json!({"image": "host", "command": ["/bin/true"], "autostart": false}).to_string();
    let daemon = Daemon::start(&[("idle", &idle)]);
    daemon.wait_for_state("idle", JobState::Stopped, SETTLE);

    for args in [
        &["tail", "nosuchjob"][..],
        &["tail", "-f", "nosuchjob"],
        &["spec", "nosuchjob"],
        &["pid", "nosuchjob"],
        &["start", "nosuchjob"],
    ] {
        let output = daemon.ctl(args);
        assert_eq!(output.status.code(), Some(4), "{args:?}");
        let message = format!("{}{}", stdout_of(&output), stderr_of(&output));
        assert_eq!(message, "nosuchjob: ERROR (no such job)\n", "{args:?}");
    }

    // A job that has never started has no log files yet.
    for args in [&["tail", "idle"][..], &["tail", "--stderr", "idle"]] {
        let output = daemon.ctl(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr_of(&output)
        );
        assert_eq!(stdout_of(&output), "", "{args:?}");
        assert_eq!(stderr_of(&output), "", "{args:?}");
    }

    let log_dir = daemon.log_dir();
    let direct = daemon.ctl(&["tail", "--log-dir", log_dir.to_str().unwrap(), "nosuchjob"]);
    assert_eq!(direct.status.code(), Some(4));
    assert!(
        stderr_of(&direct).starts_with("nosuchjob: ERROR (no log directory "),
        "{}",
        stderr_of(&direct)
    );
}

#[test]
fn curl_over_unix_socket() {
    if skip("curl_over_unix_socket") {
        return;
    }
    if tool_missing("curl_over_unix_socket", "curl") {
        return;
    }
    let daemon = Daemon::start(&[("web", &term_handler())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let socket = daemon.socket();
    let curl = |args: &[&str]| {
        let output = std::process::Command::new("curl")
            .arg("-sS")
            .arg("--unix-socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "curl {args:?}: {}",
            stderr_of(&output)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };

    let list = curl(&["http://localhost/v1/jobs"]);
    assert_eq!(list["jobs"][0]["name"], "web");
    let missing = curl(&["http://localhost/v1/jobs/nope"]);
    assert_eq!(missing["error"], "no such job \"nope\"");
    let signalled = curl(&[
        "-d",
        "{\"signal\":\"USR1\"}",
        "http://localhost/v1/jobs/web/signal",
    ]);
    assert_eq!(signalled["name"], "web");
    let stopped = curl(&["-X", "POST", "http://localhost/v1/jobs/web/stop"]);
    assert_eq!(stopped["state"], "STOPPED");
}

#[test]
fn oom_kill_is_reported() {
    if skip("oom_kill_is_reported") {
        return;
    }
    // The shell builds a string far larger than the limit.
    let hog = shell_job(
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        json!({"start_seconds": "0s", "resources": {"memory": "32M", "memory_swap": "32M"},
               "restart": {"policy": "never"}}),
    );
    let mut daemon = Daemon::start(&[("hog", &hog)]);
    let view = daemon.wait_for_state("hog", JobState::Exited, Duration::from_secs(60));
    assert!(view.oom_killed, "{view:#?}\n{}", daemon.diagnostics());
    assert!(
        view.description.contains("(OOM killed) at "),
        "{}",
        view.description
    );
    assert_eq!(view.oom_kills, 1, "{view:#?}");

    // The count survives a restart of supervisord, as `restarts` does.
    daemon.crash();
    daemon.respawn();
    let restored = daemon.wait_for_state("hog", JobState::Exited, SETTLE);
    assert!(restored.oom_killed, "{restored:#?}");
    assert_eq!(restored.oom_kills, 1, "{restored:#?}");
}

#[test]
fn oom_kill_of_child_names_another_process() {
    if skip("oom_kill_of_child_names_another_process") {
        return;
    }
    // `tail` keeps a whole line in memory, and /dev/zero has no newline,
    // so the OOM killer ends `tail` and the shell exits 0 afterwards.
    let parent = shell_job(
        "head -c 200000000 /dev/zero | tail -n 1 >/dev/null; exit 0",
        json!({"start_seconds": "0s", "resources": {"memory": "32M", "memory_swap": "32M"},
               "restart": {"policy": "never"}}),
    );
    let daemon = Daemon::start(&[("parent", &parent)]);
    let view = daemon.wait_for_state("parent", JobState::Exited, Duration::from_secs(60));
    assert_eq!(view.exit_status, Some(0), "{view:#?}");
    assert!(view.oom_killed, "{view:#?}\n{}", daemon.diagnostics());
    assert!(
        view.description
            .starts_with("exited 0 (the OOM killer ended another process of the job) at "),
        "{}",
        view.description
    );
    assert!(
        !view.description.contains("(OOM killed)"),
        "{}",
        view.description
    );
}

#[test]
fn sigterm_stops_everything() {
    if skip("sigterm_stops_everything") {
        return;
    }
    let stubborn = json!({"image": "host", "command": ["/bin/sleep", "300"],
                          "start_seconds": "300ms", "stop": {"timeout": "1s"}})
    .to_string();
    let backoff = shell_job(
        "exit 1",
        json!({"start_seconds": "0s",
               "restart": {"policy": "on-failure", "backoff": {"initial": "30s", "max": "30s"}}}),
    );
    let mut daemon = Daemon::start(&[
        ("polite", &term_handler()),
        ("stubborn", &stubborn),
        ("waiting", &backoff),
    ]);
    let polite = daemon.wait_for_state("polite", JobState::Running, SETTLE);
    let stubborn = daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    daemon.wait_for_state("waiting", JobState::Backoff, SETTLE);
    let pids = [polite.pid.unwrap(), stubborn.pid.unwrap()];
    assert!(
        !daemon.leftover_cgroups().is_empty(),
        "the containers' cgroups exist while they run"
    );

    let started = Instant::now();
    let status = daemon.terminate(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "{}", daemon.diagnostics());
    // Jobs stop in parallel: the 1 s timeout of one does not add to the other.
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");

    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived supervisord\n{}",
            daemon.diagnostics()
        );
    }
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
    assert_eq!(daemon.leftover_mounts(), Vec::<String>::new());
    assert!(!daemon.socket().exists());
    let containers = daemon.run_dir().join("containers");
    assert_eq!(daemon.entries(&containers), Vec::<String>::new());
    assert_eq!(
        daemon.entries(&daemon.data_dir().join("bundles")),
        Vec::<String>::new()
    );
    assert_eq!(
        daemon.entries(&daemon.data_dir().join("containers")),
        Vec::<String>::new()
    );
    let log = daemon.daemon_log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("supervisord stopped"), "{log}");
}

#[test]
fn daemon_process_named_supervisord() {
    if skip("daemon_process_named_supervisord") {
        return;
    }
    // supervisord executes itself again through /proc/self/exe, after
    // which the kernel names the process `exe`.
    let daemon = Daemon::start(&[]);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", daemon.pid())).unwrap();
    assert_eq!(comm, "supervisord\n");
}

#[test]
fn stray_signals_keep_daemon_running() {
    if skip("stray_signals_keep_daemon_running") {
        return;
    }
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let mut daemon = Daemon::start(&[("web", &term_handler())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let pid = Pid::from_raw(daemon.pid());
    for signal in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGALRM] {
        kill(pid, signal).unwrap();
    }
    daemon.wait_until(SETTLE, "supervisord logged the signals", |daemon| {
        daemon.daemon_log().matches("ignored a signal").count() == 3
    });
    assert_eq!(daemon.try_exit(), None, "{}", daemon.daemon_log());
    let status = daemon.ctl(&["status", "web"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout_of(&status));
    let log = daemon.daemon_log();
    for name in ["SIGUSR1", "SIGUSR2", "SIGALRM"] {
        let logged = log
            .lines()
            .any(|line| line.contains("ignored a signal") && line.contains(name));
        assert!(logged, "no line about {name} in\n{log}");
    }

    // SIGQUIT stops the jobs and supervisord, as SIGTERM does.
    kill(pid, Signal::SIGQUIT).unwrap();
    let exit = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(exit.code(), Some(0), "{}", daemon.diagnostics());
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
    assert!(daemon.daemon_log().contains("supervisord stopped"));
}

#[test]
fn shutdown_request_exits() {
    if skip("shutdown_request_exits") {
        return;
    }
    let stubborn = json!({"image": "host", "command": ["/bin/sleep", "300"],
                          "start_seconds": "300ms", "stop": {"timeout": "1s"}})
    .to_string();
    let mut daemon = Daemon::start(&[("web", &term_handler()), ("stubborn", &stubborn)]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    // The output names the job whose stop needed SIGKILL, as stop does.
    let shutdown = daemon.ctl(&["shutdown"]);
    assert_eq!(shutdown.status.code(), Some(5), "{}", stderr_of(&shutdown));
    assert_eq!(
        stdout_of(&shutdown),
        "stubborn: stopped by SIGKILL after 1s timeout\nShut down\n"
    );
    // supervisorctl returns once supervisord has exited; the harness has
    // not reaped it yet.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid())).unwrap();
    let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
    assert_eq!(state, Some('Z'), "{stat}");
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
    let after = daemon.ctl(&["status"]);
    assert_eq!(after.status.code(), Some(4));
}

#[test]
fn shutdown_cut_short_is_finished() {
    if skip("shutdown_cut_short_is_finished") {
        return;
    }
    let stubborn = json!({"image": "host", "command": ["/bin/sleep", "300"],
                          "start_seconds": "300ms", "stop": {"timeout": "4s"}})
    .to_string();
    let mut daemon = Daemon::start(&[("polite", &term_handler()), ("stubborn", &stubborn)]);
    let polite = daemon.wait_for_state("polite", JobState::Running, SETTLE);
    let stubborn = daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    let shutdown = daemon.ctl(&["shutdown", "--no-wait"]);
    assert_eq!(shutdown.status.code(), Some(0), "{}", stderr_of(&shutdown));
    daemon.wait_for_state("polite", JobState::Stopped, SETTLE);
    let stopping = daemon.job("stubborn").unwrap();
    assert_eq!(stopping.state, JobState::Stopping, "{stopping:#?}");

    // A daemon killed during its shutdown leaves the stops to the next one:
    // the stopped job stays stopped and the other one gets its SIGKILL.
    daemon.crash();
    daemon.respawn();
    let still_stopped = daemon.job("polite").unwrap();
    assert_eq!(still_stopped.state, JobState::Stopped, "{still_stopped:#?}");
    assert_eq!(still_stopped.container_id, polite.container_id);
    let finishing = daemon.job("stubborn").unwrap();
    assert_eq!(finishing.state, JobState::Stopping, "{finishing:#?}");
    assert_eq!(finishing.container_id, stubborn.container_id);
    let stopped = daemon.wait_for_state("stubborn", JobState::Stopped, SETTLE);
    assert_eq!(stopped.killed_after_timeout, Some(4.0), "{stopped:#?}");

    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn actions_during_shutdown_get_503() {
    if skip("actions_during_shutdown_get_503") {
        return;
    }
    let stubborn = json!({"image": "host", "command": ["/bin/sleep", "300"],
                          "start_seconds": "300ms", "stop": {"timeout": "30s"}})
    .to_string();
    let mut daemon = Daemon::start(&[("polite", &term_handler()), ("stubborn", &stubborn)]);
    daemon.wait_for_state("polite", JobState::Running, SETTLE);
    daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    let shutdown = daemon.ctl(&["shutdown", "--no-wait"]);
    assert_eq!(shutdown.status.code(), Some(0), "{}", stderr_of(&shutdown));
    daemon.wait_for_state("polite", JobState::Stopped, SETTLE);

    let actions: [&[&str]; 5] = [
        &["start", "polite"],
        &["stop", "stubborn"],
        &["restart", "stubborn"],
        &["reread"],
        &["update"],
    ];
    for args in actions {
        let output = daemon.ctl(args);
        assert!(
            stderr_of(&output).contains("supervisord is shutting down")
                || stdout_of(&output).contains("supervisord is shutting down"),
            "{args:?}: {} {}",
            stdout_of(&output),
            stderr_of(&output)
        );
        assert_eq!(output.status.code(), Some(4), "{args:?}");
    }

    // The slow stop can still be watched and ended.
    let status = daemon.ctl(&["status", "stubborn"]);
    assert!(
        stdout_of(&status).contains("STOPPING"),
        "{}",
        stdout_of(&status)
    );
    let kill = daemon.ctl(&["signal", "KILL", "stubborn"]);
    assert_eq!(kill.status.code(), Some(0), "{}", stderr_of(&kill));
    let exit = daemon.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{}", daemon.diagnostics());
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn signal_stop_pauses_the_whole_job() {
    if skip("signal_stop_pauses_the_whole_job") {
        return;
    }
    let ticking = shell_job(
        "trap 'echo got TERM; exit 0' TERM; while :; do echo tick; sleep 0.1; done",
        json!({"init": true, "start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    let daemon = Daemon::start(&[("ticking", &ticking)]);
    let running = daemon.wait_for_state("ticking", JobState::Running, SETTLE);
    assert!(!running.paused);
    let ticks = || daemon.job_log("ticking", "stdout").matches("tick").count();

    let pause = daemon.ctl(&["signal", "STOP", "ticking"]);
    assert_eq!(pause.status.code(), Some(0), "{}", stderr_of(&pause));
    std::thread::sleep(Duration::from_millis(300));
    let paused_at = ticks();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ticks(), paused_at, "the job's command kept running");

    // A paused job stays RUNNING, so status keeps its exit code 0.
    let status = daemon.ctl(&["status", "ticking"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout_of(&status));
    let line = stdout_of(&status);
    assert!(line.contains("RUNNING"), "{line}");
    assert!(line.trim_end().ends_with(", paused (SIGSTOP)"), "{line}");
    let json = daemon.ctl(&["status", "--json", "ticking"]);
    assert_eq!(json.status.code(), Some(0), "{}", stdout_of(&json));
    let listed: serde_json::Value = serde_json::from_str(&stdout_of(&json)).unwrap();
    let text = listed.to_string();
    assert!(text.contains("\"paused\":true"), "{text}");
    assert!(text.contains("paused (SIGSTOP)"), "{text}");

    // CONT resumes the job and clears the mark.
    let resume = daemon.ctl(&["signal", "CONT", "ticking"]);
    assert_eq!(resume.status.code(), Some(0), "{}", stderr_of(&resume));
    let resumed = daemon.job("ticking").unwrap();
    assert!(!resumed.paused, "{resumed:#?}");
    assert!(
        !resumed.description.contains("paused"),
        "{}",
        resumed.description
    );
    daemon.wait_until(SETTLE, "the job ticks again", |_| ticks() > paused_at);

    // Another signal leaves the mark alone. The shell ignores SIGWINCH, so
    // the job keeps running.
    let pause = daemon.ctl(&["signal", "STOP", "ticking"]);
    assert_eq!(pause.status.code(), Some(0), "{}", stderr_of(&pause));
    let winch = daemon.ctl(&["signal", "WINCH", "ticking"]);
    assert_eq!(winch.status.code(), Some(0), "{}", stderr_of(&winch));
    assert!(daemon.job("ticking").unwrap().paused);

    // The stop signal reaches the paused command, which ends in time.
    let stop = daemon.ctl(&["stop", "ticking"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    assert_eq!(stdout_of(&stop), "ticking: stopped\n");
    assert!(daemon.job_log("ticking", "stdout").contains("got TERM"));
    let stopped = daemon.job("ticking").unwrap();
    assert!(!stopped.paused, "{stopped:#?}");

    // A new container starts unpaused.
    let start = daemon.ctl(&["start", "ticking"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    let started = daemon.job("ticking").unwrap();
    assert!(!started.paused, "{started:#?}");
    assert!(
        !started.description.contains("paused"),
        "{}",
        started.description
    );
}

#[test]
fn stop_thaws_a_frozen_job() {
    if skip("stop_thaws_a_frozen_job") {
        return;
    }
    let ticking = shell_job(
        "trap 'echo got TERM; exit 0' TERM; while :; do echo tick; sleep 0.1; done",
        json!({"init": true, "start_seconds": "300ms", "stop": {"timeout": "20s"}}),
    );
    let daemon = Daemon::start(&[("ticking", &ticking)]);
    let running = daemon.wait_for_state("ticking", JobState::Running, SETTLE);
    let id = running.container_id.expect("a running job has a container");
    let ticks = || daemon.job_log("ticking", "stdout").matches("tick").count();

    let pause = std::process::Command::new(harness::runtime_binary())
        .arg("--root")
        .arg(daemon.run_dir().join("containers"))
        .args(["pause", &id])
        .output()
        .unwrap();
    assert_eq!(pause.status.code(), Some(0), "{}", stderr_of(&pause));
    std::thread::sleep(Duration::from_millis(300));
    let frozen_at = ticks();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ticks(), frozen_at, "the frozen job kept running");

    // The job handles the stop signal at once instead of being killed
    // after the 20 s timeout.
    let requested = Instant::now();
    let stop = daemon.ctl(&["stop", "ticking"]);
    let took = requested.elapsed();
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    assert_eq!(stdout_of(&stop), "ticking: stopped\n");
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    assert!(daemon.job_log("ticking", "stdout").contains("got TERM"));
    let log = daemon.daemon_log();
    assert!(
        log.contains("thawed the frozen cgroup of the stopping job"),
        "{log}"
    );
}

/// A stop that comes right after a start, while the monitor and the shim
/// are still starting, reaches the job instead of killing one of them, so
/// the job ends by its stop signal with an exit record.
#[test]
fn stop_right_after_start_reaches_the_job() {
    if skip("stop_right_after_start_reaches_the_job") {
        return;
    }
    let job = shell_job(
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        json!({"autostart": false, "init": true, "start_seconds": "1s", "stop": {"timeout": "2s"}}),
    );
    let daemon = Daemon::start(&[("quick", &job)]);
    let client = daemon.client();
    for round in 0..20 {
        let _: JobView = client
            .post("/v1/jobs/quick/start?wait=false", None)
            .unwrap_or_else(|error| panic!("round {round}: start: {error}"));
        let stop = daemon.ctl(&["stop", "quick"]);
        let view = daemon.job("quick").unwrap();
        assert!(
            !view.description.contains("without an exit record"),
            "round {round}: {}\n{}",
            view.description,
            stdout_of(&stop)
        );
        assert_eq!(view.state, JobState::Stopped, "round {round}: {view:#?}");
    }
}

#[test]
fn restart_keeps_a_pause() {
    if skip("restart_keeps_a_pause") {
        return;
    }
    let ticking = shell_job(
        "while :; do echo tick; sleep 0.1; done",
        json!({"init": true, "start_seconds": "300ms"}),
    );
    let mut daemon = Daemon::start(&[("ticking", &ticking), ("other", &term_handler())]);
    daemon.wait_for_state("ticking", JobState::Running, SETTLE);
    daemon.wait_for_state("other", JobState::Running, SETTLE);
    let pause = daemon.ctl(&["signal", "STOP", "ticking"]);
    assert_eq!(pause.status.code(), Some(0), "{}", stderr_of(&pause));

    daemon.crash();
    daemon.respawn();
    let adopted = daemon.wait_for_state("ticking", JobState::Running, SETTLE);
    assert!(adopted.paused, "{adopted:#?}");
    assert!(
        adopted.description.ends_with(", paused (SIGSTOP)"),
        "{}",
        adopted.description
    );
    let other = daemon.wait_for_state("other", JobState::Running, SETTLE);
    assert!(!other.paused, "{other:#?}");

    let resume = daemon.ctl(&["signal", "CONT", "ticking"]);
    assert_eq!(resume.status.code(), Some(0), "{}", stderr_of(&resume));
    assert!(!daemon.job("ticking").unwrap().paused);
    let ticks = daemon.job_log("ticking", "stdout").matches("tick").count();
    daemon.wait_until(SETTLE, "the job ticks again", |daemon| {
        daemon.job_log("ticking", "stdout").matches("tick").count() > ticks
    });
    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

/// Sends `signal` from the host to process `pid`, as `kill` would.
fn host_kill(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .unwrap_or_else(|error| panic!("kill -{signal} {pid}: {error}"));
}

/// Waits until the job's paused mark is `paused`, then checks the mark
/// in the status table and in `status --json`.
fn assert_paused_everywhere(daemon: &Daemon, name: &str, paused: bool) {
    daemon.wait_until(
        SETTLE,
        &format!("job {name} has paused: {paused}"),
        |daemon| daemon.job(name).is_ok_and(|view| view.paused == paused),
    );
    let status = daemon.ctl(&["status", name]);
    let line = stdout_of(&status);
    assert_eq!(
        line.trim_end().ends_with(", paused (SIGSTOP)"),
        paused,
        "{line}"
    );
    // The exit code depends on the state, which the callers check.
    let json = daemon.ctl(&["status", "--json", name]);
    let listed: serde_json::Value = serde_json::from_str(&stdout_of(&json)).unwrap();
    let views = listed.as_array().expect("an array of jobs");
    assert_eq!(views.len(), 1, "{listed}");
    assert_eq!(views[0]["paused"], json!(paused), "{listed}");
}

/// Returns a job whose shell prints a tick every 100 ms, with `init` as
/// given.
fn ticking_job(init: bool, start_seconds: &str) -> String {
    shell_job(
        "trap 'echo got TERM; exit 0' TERM; while :; do echo tick; sleep 0.1; done",
        json!({"init": init, "start_seconds": start_seconds, "stop": {"timeout": "10s"}}),
    )
}

#[test]
fn host_stop_and_cont_follow_pid_1() {
    if skip("host_stop_and_cont_follow_pid_1") {
        return;
    }
    let daemon = Daemon::start(&[
        ("bare", &ticking_job(false, "300ms")),
        ("wrapped", &ticking_job(true, "300ms")),
    ]);
    for name in ["bare", "wrapped"] {
        let running = daemon.wait_for_state(name, JobState::Running, SETTLE);
        let pid = running.pid.expect("a RUNNING job has a pid");
        assert!(!running.paused, "{running:#?}");

        host_kill(pid, nix::sys::signal::Signal::SIGSTOP);
        assert_paused_everywhere(&daemon, name, true);
        let paused = daemon.job(name).unwrap();
        assert_eq!(paused.state, JobState::Running, "{paused:#?}");
        let stopped_file = daemon.run_dir().join("pids").join(format!(
            "{}.stopped",
            paused.container_id.as_deref().unwrap()
        ));
        assert!(stopped_file.exists(), "{}", stopped_file.display());

        host_kill(pid, nix::sys::signal::Signal::SIGCONT);
        assert_paused_everywhere(&daemon, name, false);
        assert!(!stopped_file.exists(), "{}", stopped_file.display());
        let ticks = daemon.job_log(name, "stdout").matches("tick").count();
        daemon.wait_until(SETTLE, "the job ticks again", |daemon| {
            daemon.job_log(name, "stdout").matches("tick").count() > ticks
        });
    }
}

#[test]
fn host_cont_clears_signal_stop() {
    if skip("host_cont_clears_signal_stop") {
        return;
    }
    let daemon = Daemon::start(&[("ticking", &ticking_job(true, "300ms"))]);
    let running = daemon.wait_for_state("ticking", JobState::Running, SETTLE);
    let pid = running.pid.expect("a RUNNING job has a pid");

    let pause = daemon.ctl(&["signal", "STOP", "ticking"]);
    assert_eq!(pause.status.code(), Some(0), "{}", stderr_of(&pause));
    assert_paused_everywhere(&daemon, "ticking", true);

    // Only PID 1 continues; the mark follows it.
    host_kill(pid, nix::sys::signal::Signal::SIGCONT);
    assert_paused_everywhere(&daemon, "ticking", false);
}

#[test]
fn host_stop_in_starting_shows_paused() {
    if skip("host_stop_in_starting_shows_paused") {
        return;
    }
    let daemon = Daemon::start(&[("slow", &ticking_job(false, "60s"))]);
    // The first tick comes after the shell set its SIGTERM trap, which a
    // stop before it would leave unset when the stop signal arrives.
    daemon.wait_until(SETTLE, "the job ticks", |daemon| {
        daemon.job_log("slow", "stdout").contains("tick")
    });
    let pid = daemon.job("slow").unwrap().pid.unwrap();
    host_kill(pid, nix::sys::signal::Signal::SIGSTOP);
    assert_paused_everywhere(&daemon, "slow", true);
    let starting = daemon.job("slow").unwrap();
    assert_eq!(starting.state, JobState::Starting, "{starting:#?}");
    assert_eq!(
        starting.description,
        format!("pid {pid}, starting, paused (SIGSTOP)")
    );

    // The stop resumes the job, which handles SIGTERM, and the stopped
    // file goes with the container.
    let stop = daemon.ctl(&["stop", "slow"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    assert!(daemon.job_log("slow", "stdout").contains("got TERM"));
    let stopped = daemon.job("slow").unwrap();
    assert!(!stopped.paused, "{stopped:#?}");
    let pids = daemon.entries(&daemon.run_dir().join("pids"));
    assert_eq!(pids, Vec::<String>::new());
}

#[test]
fn killed_while_stopped_leaves_no_mark() {
    if skip("killed_while_stopped_leaves_no_mark") {
        return;
    }
    let once = shell_job(
        "while :; do echo tick; sleep 0.1; done",
        json!({"start_seconds": "300ms", "restart": {"policy": "never"}}),
    );
    let daemon = Daemon::start(&[("ticking", &once)]);
    let running = daemon.wait_for_state("ticking", JobState::Running, SETTLE);
    let pid = running.pid.expect("a RUNNING job has a pid");
    host_kill(pid, nix::sys::signal::Signal::SIGSTOP);
    assert_paused_everywhere(&daemon, "ticking", true);

    // A stopped init that is killed ends without a continue.
    host_kill(pid, nix::sys::signal::Signal::SIGKILL);
    let exited = daemon.wait_for_state("ticking", JobState::Exited, SETTLE);
    assert!(!exited.paused, "{exited:#?}");
    assert_eq!(exited.signal.as_deref(), Some("SIGKILL"), "{exited:#?}");
    let pids = daemon.entries(&daemon.run_dir().join("pids"));
    assert!(
        pids.iter().all(|name| !name.ends_with(".stopped")),
        "{pids:?}"
    );
}

#[test]
fn adopted_job_follows_host_stop_and_cont() {
    if skip("adopted_job_follows_host_stop_and_cont") {
        return;
    }
    let mut daemon = Daemon::start(&[
        ("bare", &ticking_job(false, "300ms")),
        ("wrapped", &ticking_job(true, "300ms")),
    ]);
    daemon.wait_for_state("bare", JobState::Running, SETTLE);
    daemon.wait_for_state("wrapped", JobState::Running, SETTLE);
    let pause = daemon.ctl(&["signal", "STOP", "wrapped"]);
    assert_eq!(pause.status.code(), Some(0), "{}", stderr_of(&pause));

    daemon.crash();
    daemon.respawn();
    let bare = daemon.wait_for_state("bare", JobState::Running, SETTLE);
    let wrapped = daemon.wait_for_state("wrapped", JobState::Running, SETTLE);
    assert!(!bare.paused, "{bare:#?}");
    assert!(wrapped.paused, "{wrapped:#?}");

    // A host stop and continue of an adopted container.
    let bare_pid = bare.pid.expect("an adopted job has a pid");
    host_kill(bare_pid, nix::sys::signal::Signal::SIGSTOP);
    assert_paused_everywhere(&daemon, "bare", true);
    host_kill(bare_pid, nix::sys::signal::Signal::SIGCONT);
    assert_paused_everywhere(&daemon, "bare", false);

    // A host continue of a job paused through the earlier supervisord.
    let wrapped_pid = wrapped.pid.expect("an adopted job has a pid");
    host_kill(wrapped_pid, nix::sys::signal::Signal::SIGCONT);
    assert_paused_everywhere(&daemon, "wrapped", false);

    // A host stop made while no supervisord runs shows after adoption too.
    daemon.crash();
    host_kill(bare_pid, nix::sys::signal::Signal::SIGSTOP);
    let deadline = Instant::now() + SETTLE;
    while process_state(bare_pid) != Some('T') {
        assert!(Instant::now() < deadline, "PID {bare_pid} did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.respawn();
    let adopted = daemon.wait_for_state("bare", JobState::Running, SETTLE);
    assert!(adopted.paused, "{adopted:#?}");
    host_kill(bare_pid, nix::sys::signal::Signal::SIGCONT);
    assert_paused_everywhere(&daemon, "bare", false);

    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

/// Returns the state letter of process `pid` in /proc/PID/stat, if it
/// exists.
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

#[test]
fn missing_executable_named_in_status() {
    if skip("missing_executable_named_in_status") {
        return;
    }
    let missing = json!({"image": "host", "command": ["/nope"], "start_seconds": "1s",
        "restart": {"policy": "on-failure", "max_restarts": 2, "window": "60s",
                    "backoff": {"initial": "100ms", "max": "200ms"}}})
    .to_string();
    // The check applies to the main command behind the minimal init too.
    let denied = json!({"image": "host", "command": ["/etc/passwd"], "init": true,
        "restart": {"policy": "never"}})
    .to_string();
    let not_in_path = json!({"image": "host", "command": ["no-such-program-anywhere"],
        "env": {"PATH": "/usr/bin:/bin"}, "restart": {"policy": "never"}})
    .to_string();
    let daemon = Daemon::start(&[
        ("missing", &missing),
        ("denied", &denied),
        ("not-in-path", &not_in_path),
    ]);

    let fatal = daemon.wait_for_state("missing", JobState::Fatal, Duration::from_secs(30));
    assert_eq!(fatal.restarts, 2);
    assert_eq!(fatal.exit_status, None, "{fatal:#?}");
    assert!(
        fatal
            .description
            .starts_with("failed to start: corral: exec \"/nope\": no such file in the container"),
        "{}",
        fatal.description
    );
    assert!(
        fatal.description.contains("gave up after 2 restarts"),
        "{}",
        fatal.description
    );
    assert!(
        !fatal.description.contains("exited 127"),
        "{}",
        fatal.description
    );

    let status = daemon.ctl(&["status", "missing"]);
    assert_eq!(status.status.code(), Some(3));
    let line = stdout_of(&status);
    assert!(line.contains("FATAL"), "{line}");
    assert!(
        line.contains("exec \"/nope\": no such file in the container"),
        "{line}"
    );
    let json = daemon.ctl(&["status", "--json", "missing"]);
    let text = stdout_of(&json);
    assert!(
        text.contains(r#"exec \"/nope\": no such file in the container"#),
        "{text}"
    );

    let denied = daemon.wait_for_state("denied", JobState::Exited, SETTLE);
    assert!(
        denied.description.starts_with(
            "failed to start: corral: exec \"/etc/passwd\": permission denied: the process's \
             user may not execute /etc/passwd in the container"
        ),
        "{}",
        denied.description
    );

    let not_in_path = daemon.wait_for_state("not-in-path", JobState::Exited, SETTLE);
    assert!(
        not_in_path.description.contains(
            "exec \"no-such-program-anywhere\": not found in the container's PATH \
             \"/usr/bin:/bin\""
        ),
        "{}",
        not_in_path.description
    );
}

/// Requests a stop of `name` without waiting, and checks that it began.
fn stop_without_waiting(daemon: &Daemon, name: &str) -> JobView {
    let stopping: JobView = daemon
        .client()
        .post(&format!("/v1/jobs/{name}/stop?wait=false"), None)
        .unwrap();
    assert_eq!(stopping.state, JobState::Stopping);
    stopping
}

#[test]
fn adopted_stop_sends_no_second_signal() {
    if skip("adopted_stop_sends_no_second_signal") {
        return;
    }
    // The shell at PID 1 notes each SIGTERM and keeps running.
    let noting = shell_job(
        "trap 'echo got TERM' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "4s"}}),
    );
    let mut daemon = Daemon::start(&[("noting", &noting)]);
    daemon.wait_for_state("noting", JobState::Running, SETTLE);
    stop_without_waiting(&daemon, "noting");
    daemon.wait_until(SETTLE, "the job got the stop signal", |daemon| {
        daemon.job_log("noting", "stdout").contains("got TERM")
    });
    daemon.crash();
    daemon.respawn();

    let stopped = daemon.wait_for_state("noting", JobState::Stopped, SETTLE);
    assert_eq!(stopped.killed_after_timeout, Some(4.0), "{stopped:#?}");
    let log = daemon.job_log("noting", "stdout");
    assert_eq!(
        log.matches("got TERM").count(),
        1,
        "{log}\n{}",
        daemon.diagnostics()
    );
    // The adopted job goes from STARTING to STOPPING: only the first
    // daemon logged it as running.
    let daemon_log = daemon.daemon_log();
    assert_eq!(
        daemon_log.matches("job is running job=noting").count(),
        1,
        "{daemon_log}"
    );
}

#[test]
fn edit_during_stop_keeps_it_stopped() {
    if skip("edit_during_stop_keeps_it_stopped") {
        return;
    }
    // The shell at PID 1 ignores SIGTERM, so the stop waits for its timeout.
    let version = |tag: &str| {
        shell_job(
            &format!("trap '' TERM; echo {tag}; while :; do sleep 0.1; done"),
            json!({"start_seconds": "300ms", "stop": {"timeout": "3s"}}),
        )
    };
    let daemon = Daemon::start(&[("stubborn", &version("first"))]);
    let running = daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    stop_without_waiting(&daemon, "stubborn");

    // The file changes while the stop waits; the stop stays a stop.
    daemon.write_job("stubborn", &version("second"));
    let update = daemon.ctl(&["update"]);
    assert_eq!(update.status.code(), Some(0), "{}", stdout_of(&update));
    assert!(
        stdout_of(&update).contains("stubborn: changed command; applies at the next start\n"),
        "{}",
        stdout_of(&update)
    );
    let stopped = daemon.wait_for_state("stubborn", JobState::Stopped, SETTLE);
    assert_eq!(stopped.killed_after_timeout, Some(3.0), "{stopped:#?}");
    std::thread::sleep(Duration::from_secs(2));
    let later = daemon.job("stubborn").unwrap();
    assert_eq!(
        later.state,
        JobState::Stopped,
        "{later:#?}\n{}",
        daemon.diagnostics()
    );
    assert_eq!(later.pid, None, "{later:#?}");
    assert_eq!(daemon.job_log("stubborn", "stdout"), "first\n");

    // The next start runs the new spec.
    let start = daemon.ctl(&["start", "stubborn"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    let restarted = daemon.job("stubborn").unwrap();
    assert_ne!(restarted.pid, running.pid);
    daemon.wait_until(SETTLE, "the new spec ran", |daemon| {
        daemon.job_log("stubborn", "stdout") == "first\nsecond\n"
    });
}

#[test]
#[cfg(target_arch = "x86_64")]
fn init_error_named_in_failed_start() {
    if skip("init_error_named_in_failed_start") {
        return;
    }
    // A copy of /bin/true whose ELF interpreter (PT_INTERP) names a
    // missing loader passes the check before the start, which reads the ELF
    // header only. The execve in the container then fails with ENOENT, and
    // only the job's stderr names the reason.
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("broken");
    let loader = b"/lib64/ld-linux-x86-64.so.2";
    let mut binary = std::fs::read("/bin/true").unwrap();
    let at = binary
        .windows(loader.len())
        .position(|window| window == loader)
        .expect("/bin/true names the x86-64 loader");
    binary[at + loader.len() - 1] = b'9';
    std::fs::write(&script, binary).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let broken = json!({"image": "host", "command": ["/scripts/broken"], "init": true,
        "start_seconds": "1s",
        "mounts": [{"type": "bind", "source": scripts.path(), "target": "/scripts", "readonly": true}],
        "restart": {"policy": "on-failure", "max_restarts": 1, "window": "60s",
                    "backoff": {"initial": "100ms", "max": "200ms"}}})
    .to_string();
    let daemon = Daemon::start(&[("broken", &broken)]);

    let fatal = daemon.wait_for_state("broken", JobState::Fatal, Duration::from_secs(30));
    assert!(
        fatal.description.starts_with("Exited too quickly"),
        "{}",
        fatal.description
    );
    assert!(
        fatal
            .description
            .contains("(corral: failed to execute /scripts/broken: "),
        "{}\n{}",
        fatal.description,
        daemon.diagnostics()
    );
}

#[test]
fn stop_ended_while_away_keeps_its_time() {
    if skip("stop_ended_while_away_keeps_its_time") {
        return;
    }
    let slow = shell_job(
        "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    let mut daemon = Daemon::start(&[("slow", &slow)]);
    daemon.wait_for_state("slow", JobState::Running, SETTLE);
    stop_without_waiting(&daemon, "slow");
    daemon.crash();
    // The container ends about a second after the stop signal, while no
    // supervisord runs.
    std::thread::sleep(Duration::from_secs(3));
    daemon.respawn();
    let stopped = daemon.job("slow").unwrap();
    assert_eq!(stopped.state, JobState::Stopped, "{stopped:#?}");
    let exited_at = stopped.exited_at.expect("the exit record's time");
    assert_eq!(stopped.since, exited_at as i64, "{stopped:#?}");
    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn all_with_unknown_name_reports_it() {
    if skip("all_with_unknown_name_reports_it") {
        return;
    }
    let job = json!({"image": "host", "command": ["/bin/sleep", "300"], "init": true,
                     "start_seconds": "300ms"})
    .to_string();
    let daemon = Daemon::start(&[("a", &job)]);
    daemon.wait_for_state("a", JobState::Running, SETTLE);

    let status = daemon.ctl(&["status", "all", "nope"]);
    assert_eq!(status.status.code(), Some(4), "{}", stdout_of(&status));
    assert!(stdout_of(&status).contains("a "), "{}", stdout_of(&status));
    assert!(
        stderr_of(&status).contains("nope: ERROR (no such job)"),
        "{}",
        stderr_of(&status)
    );

    let stop = daemon.ctl(&["stop", "all", "nope"]);
    let output = format!("{}{}", stdout_of(&stop), stderr_of(&stop));
    assert_eq!(stop.status.code(), Some(4), "{output}");
    assert!(output.contains("a: stopped"), "{output}");
    assert!(output.contains("nope: ERROR (no such job)"), "{output}");
    daemon.wait_for_state("a", JobState::Stopped, SETTLE);
}

#[test]
fn all_names_jobs_that_cannot_start() {
    if skip("all_names_jobs_that_cannot_start") {
        return;
    }
    let daemon = Daemon::start(&[("a", &term_handler()), ("broken", "{}")]);
    daemon.wait_for_state("a", JobState::Running, SETTLE);

    for command in ["start", "restart"] {
        let output = daemon.ctl(&[command, "all"]);
        let text = stdout_of(&output);
        assert_eq!(output.status.code(), Some(1), "{command}: {text}");
        assert!(
            text.contains("broken: ERROR (job \"broken\" has no valid job file: "),
            "{command}: {text}"
        );
    }
    // Nothing of it runs, so there is nothing to stop or signal.
    for command in [&["stop", "all"][..], &["signal", "HUP", "all"]] {
        let output = daemon.ctl(command);
        let text = stdout_of(&output);
        assert!(!text.contains("broken"), "{command:?}: {text}");
    }
}

#[test]
fn invalid_file_keeps_recorded_backoff() {
    if skip("invalid_file_keeps_recorded_backoff") {
        return;
    }
    let job = shell_job(
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "restart": {"backoff": {"initial": "1m", "max": "1m"}}}),
    );
    let mut daemon = Daemon::start(&[("flaky", &job)]);
    daemon.wait_for_state("flaky", JobState::Running, SETTLE);
    // The job fails and waits a minute in BACKOFF, and then its file turns
    // invalid, so no container or bundle keeps its spec.
    let kill = daemon.ctl(&["signal", "KILL", "flaky"]);
    assert_eq!(kill.status.code(), Some(0), "{}", stdout_of(&kill));
    daemon.wait_for_state("flaky", JobState::Backoff, SETTLE);
    daemon.write_job("flaky", "{\"command\": ");
    daemon.wait_until(SETTLE, "the job shows INVALID", |daemon| {
        daemon
            .job("flaky")
            .is_ok_and(|view| view.state == JobState::Invalid)
    });

    daemon.crash();
    daemon.respawn();
    let view = daemon.job("flaky").unwrap();
    assert_eq!(view.state, JobState::Invalid, "{view:#?}");
    assert_eq!(view.process_state, JobState::Backoff, "{view:#?}");
    assert_eq!(view.signal.as_deref(), Some("SIGKILL"), "{view:#?}");
    // The recorded last valid version starts at once on request.
    let start = daemon.ctl(&["start", "flaky"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    let running = daemon.job("flaky").unwrap();
    assert_eq!(running.process_state, JobState::Running, "{running:#?}");
    let stop = daemon.ctl(&["stop", "flaky"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
}

#[test]
fn relative_directories_and_runtime() {
    if skip("relative_directories_and_runtime") {
        return;
    }
    let mut daemon = Daemon::start_with_relative_paths(&[("web", &term_handler())]);
    let running = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let id = running.container_id.clone().unwrap();
    let config = daemon
        .data_dir()
        .join("bundles")
        .join(&id)
        .join("config.json");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let root = config["root"]["path"].as_str().unwrap();
    assert!(
        root.starts_with(daemon.dir.path().to_str().unwrap()),
        "{root}"
    );

    // The next daemon, started the same way, adopts the job.
    daemon.crash();
    daemon.respawn();
    let adopted = daemon.wait_for_state("web", JobState::Running, SETTLE);
    assert_eq!(adopted.pid, running.pid);
    let stop = daemon.ctl(&["stop", "web"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
}

#[test]
fn all_stops_in_parallel() {
    if skip("all_stops_in_parallel") {
        return;
    }
    let stubborn = json!({"image": "host", "command": ["/bin/sleep", "300"],
                          "start_seconds": "300ms", "stop": {"timeout": "1s"}})
    .to_string();
    let daemon = Daemon::start(&[("a", &stubborn), ("b", &stubborn), ("c", &stubborn)]);
    for name in ["a", "b", "c"] {
        daemon.wait_for_state(name, JobState::Running, SETTLE);
    }
    let started = Instant::now();
    let stop = daemon.ctl(&["stop", "all"]);
    let took = started.elapsed();
    // The sleeps ignore SIGTERM as PID 1, so each stop needs SIGKILL.
    assert_eq!(stop.status.code(), Some(5), "{}", stdout_of(&stop));
    assert_eq!(
        stdout_of(&stop),
        "a: stopped by SIGKILL after 1s timeout\n\
         b: stopped by SIGKILL after 1s timeout\n\
         c: stopped by SIGKILL after 1s timeout\n"
    );
    assert!(took < Duration::from_secs(3), "stop all took {took:?}");
    let list: JobList = daemon.client().get("/v1/jobs").unwrap();
    assert!(
        list.jobs.iter().all(|job| job.state == JobState::Stopped),
        "{list:#?}"
    );

    let start = daemon.ctl(&["start", "all"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    let status = daemon.ctl(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout_of(&status));
}

#[test]
fn restart_removes_abandoned_overlay_dirs() {
    if skip("restart_removes_abandoned_overlay_dirs") {
        return;
    }
    let mut daemon = Daemon::start(&[("web", &term_handler())]);
    let web = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let overlays = daemon.data_dir().join("containers");
    let running = overlays.join(web.container_id.clone().unwrap());
    assert!(running.join("upper").is_dir(), "{}", running.display());

    // A reboot empties RUN_DIR, so the runtime state that an overlay
    // directory's owner names is gone while the directory stays.
    let abandoned = overlays.join("gone-0000aaaa");
    std::fs::create_dir_all(abandoned.join("upper/var/cache")).unwrap();
    std::fs::create_dir_all(abandoned.join("work/work/incompat/volatile")).unwrap();
    std::fs::write(abandoned.join("upper/var/cache/big"), "cached\n").unwrap();
    let owner = json!({"id": "gone-0000aaaa", "created": 1.0,
        "state_dir": daemon.run_dir().join("containers/gone-0000aaaa")});
    std::fs::write(abandoned.join("owner.json"), owner.to_string()).unwrap();
    // A directory without an owner file is not the runtime's.
    let unowned = overlays.join("unowned-0000bbbb");
    std::fs::create_dir_all(unowned.join("upper")).unwrap();
    // An init that still runs may still have the directory mounted, even
    // though its state is gone.
    let in_use = overlays.join("in-use-0000cccc");
    std::fs::create_dir_all(in_use.join("upper")).unwrap();
    let owner = json!({"id": "in-use-0000cccc", "created": 1.0,
        "state_dir": daemon.run_dir().join("containers/in-use-0000cccc"),
        "init_pid": std::process::id()});
    std::fs::write(in_use.join("owner.json"), owner.to_string()).unwrap();

    daemon.crash();
    daemon.respawn();
    let adopted = daemon.wait_for_state("web", JobState::Running, SETTLE);
    assert_eq!(adopted.pid, web.pid);
    daemon.wait_until(SETTLE, "the abandoned overlay directory is removed", |_| {
        !abandoned.exists()
    });
    assert!(unowned.is_dir(), "{}", unowned.display());
    assert!(in_use.is_dir(), "{}", in_use.display());
    assert!(running.join("upper").is_dir(), "{}", running.display());
    assert!(
        daemon
            .daemon_log()
            .contains("removed the overlay directory of a container that no longer exists"),
        "{}",
        daemon.diagnostics()
    );
    std::fs::remove_dir_all(&unowned).unwrap();
    std::fs::remove_dir_all(&in_use).unwrap();
}

#[test]
fn restart_adopts_running_jobs() {
    if skip("restart_adopts_running_jobs") {
        return;
    }
    let never = |script: &str| {
        shell_job(
            script,
            json!({"start_seconds": "300ms", "restart": {"policy": "never"}}),
        )
    };
    let mut daemon = Daemon::start(&[
        ("web", &term_handler()),
        ("early", &never("sleep 1; exit 7")),
        ("late", &never("sleep 5; exit 5")),
    ]);
    let web = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let early = daemon.wait_for_state("early", JobState::Running, SETTLE);
    daemon.wait_for_state("late", JobState::Running, SETTLE);

    daemon.crash();
    let web_pid = web.pid.unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{web_pid}")).exists(),
        "the container died with supervisord"
    );
    let early_exit = daemon
        .run_dir()
        .join("exits")
        .join(format!("{}.json", early.container_id.clone().unwrap()));
    daemon.wait_until(SETTLE, "the early job exits without a supervisord", |_| {
        early_exit.exists()
    });
    // Long enough for a `since` taken from the new daemon's start to
    // differ from the one the job had.
    std::thread::sleep(Duration::from_secs(2));

    daemon.respawn();
    let adopted = daemon.job("web").unwrap();
    assert_eq!(adopted.state, JobState::Running, "{}", daemon.diagnostics());
    assert_eq!(adopted.container_id, web.container_id);
    assert_eq!(adopted.pid, Some(web_pid));
    // RUNNING since the container's start plus start_seconds, which rounds
    // to the second the first daemon saw, or the one next to it.
    assert!(
        adopted.since.abs_diff(web.since) <= 1,
        "since {} after adoption, {} before",
        adopted.since,
        web.since
    );

    let ended = daemon.job("early").unwrap();
    assert_eq!(ended.state, JobState::Exited, "{ended:#?}");
    assert_eq!(ended.exit_status, Some(7));
    assert!(
        ended.description.starts_with("exited 7 at "),
        "{}",
        ended.description
    );

    let late = daemon.wait_for_state("late", JobState::Exited, SETTLE);
    assert_eq!(late.exit_status, Some(5), "{late:#?}");

    let stop = daemon.ctl(&["stop", "web"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    assert_eq!(daemon.job("web").unwrap().exit_status, Some(0));
    assert!(!std::path::Path::new(&format!("/proc/{web_pid}")).exists());

    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        daemon.entries(&daemon.run_dir().join("containers")),
        Vec::<String>::new()
    );
    assert_eq!(
        daemon.entries(&daemon.run_dir().join("shims")),
        Vec::<String>::new()
    );
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn old_cgroup_parent_removed_after_adoption() {
    if skip("old_cgroup_parent_removed_after_adoption") {
        return;
    }
    let mut daemon = Daemon::start(&[("web", &term_handler()), ("api", &term_handler())]);
    let web = daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_for_state("api", JobState::Running, SETTLE);
    let old_dirs = daemon.cgroup_dirs();
    assert!(old_dirs.iter().all(|dir| dir.is_dir()), "{old_dirs:?}");

    daemon.crash();
    daemon.cgroup_parent = format!("{}-next", daemon.cgroup_parent);
    daemon.respawn();
    let adopted = daemon.job("web").unwrap();
    assert_eq!(
        adopted.container_id,
        web.container_id,
        "{}",
        daemon.diagnostics()
    );

    // The restarted container runs below the new parent, and api keeps the
    // old one in use.
    let restart = daemon.ctl(&["restart", "web"]);
    assert_eq!(restart.status.code(), Some(0), "{}", stderr_of(&restart));
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    assert!(
        old_dirs.iter().all(|dir| dir.is_dir()),
        "the old parent was removed while api ran below it: {old_dirs:?}"
    );

    // The shutdown ends api, the last container below the old parent.
    let shutdown = daemon.ctl(&["shutdown"]);
    assert_eq!(shutdown.status.code(), Some(0), "{}", stderr_of(&shutdown));
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    let left: Vec<_> = old_dirs.iter().filter(|dir| dir.exists()).collect();
    assert_eq!(
        left,
        Vec::<&std::path::PathBuf>::new(),
        "{}",
        daemon.daemon_log()
    );
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn old_cgroup_parent_removed_on_restart() {
    if skip("old_cgroup_parent_removed_on_restart") {
        return;
    }
    let mut daemon = Daemon::start(&[("web", &term_handler())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let old_dirs = daemon.cgroup_dirs();

    daemon.crash();
    daemon.cgroup_parent = format!("{}-next", daemon.cgroup_parent);
    daemon.respawn();
    let restart = daemon.ctl(&["restart", "web"]);
    assert_eq!(restart.status.code(), Some(0), "{}", stderr_of(&restart));

    // The adopted container was the only one below the old parent, so the
    // parent goes while supervisord runs on.
    daemon.wait_until(SETTLE, "the old cgroup parent is removed", |_| {
        old_dirs.iter().all(|dir| !dir.exists())
    });
    assert!(
        !daemon.leftover_cgroups().is_empty(),
        "the new parent is missing while web runs"
    );

    let shutdown = daemon.ctl(&["shutdown"]);
    assert_eq!(shutdown.status.code(), Some(0), "{}", stderr_of(&shutdown));
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn restart_keeps_stopped_exited_and_fatal_jobs() {
    if skip("restart_keeps_stopped_exited_and_fatal_jobs") {
        return;
    }
    let done = shell_job(
        "sleep 0.5; exit 3",
        json!({"start_seconds": "200ms", "restart": {"policy": "never"}}),
    );
    let failing = shell_job(
        "exit 4",
        json!({"start_seconds": "1s",
               "restart": {"policy": "on-failure", "max_restarts": 1, "window": "60s",
                           "backoff": {"initial": "100ms", "max": "100ms"}}}),
    );
    let mut daemon = Daemon::start(&[
        ("held", &term_handler()),
        ("steady", &term_handler()),
        ("done", &done),
        ("failing", &failing),
    ]);
    daemon.wait_for_state("held", JobState::Running, SETTLE);
    let steady = daemon.wait_for_state("steady", JobState::Running, SETTLE);
    daemon.wait_for_state("done", JobState::Exited, SETTLE);
    let fatal = daemon.wait_for_state("failing", JobState::Fatal, SETTLE);
    let stop = daemon.ctl(&["stop", "held"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    let held = daemon.job("held").unwrap();
    assert_eq!(held.state, JobState::Stopped);

    daemon.crash();
    daemon.respawn();
    let kept = daemon.job("held").unwrap();
    assert_eq!(kept.state, JobState::Stopped, "{}", daemon.diagnostics());
    assert_eq!(kept.exit_status, Some(0), "{kept:#?}");
    assert_eq!(kept.container_id, held.container_id);
    assert_eq!(kept.since, held.since, "the stop time stays");
    let exited = daemon.job("done").unwrap();
    assert_eq!(exited.state, JobState::Exited, "{exited:#?}");
    assert_eq!(exited.exit_status, Some(3));
    let still_fatal = daemon.job("failing").unwrap();
    assert_eq!(still_fatal.state, JobState::Fatal, "{still_fatal:#?}");
    assert_eq!(still_fatal.description, fatal.description);
    let adopted = daemon.job("steady").unwrap();
    assert_eq!(adopted.state, JobState::Running);
    assert_eq!(adopted.pid, steady.pid);
    assert_eq!(
        daemon.job_log("failing", "stdout"),
        "",
        "the FATAL job did not run again"
    );

    // A start clears the record, so the next daemon adopts the container.
    let start = daemon.ctl(&["start", "held"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    let mut settled = daemon.entries(&daemon.run_dir().join("settled"));
    settled.sort();
    assert_eq!(settled, ["done.json", "failing.json"]);
    daemon.crash();
    daemon.respawn();
    assert_eq!(daemon.job("held").unwrap().state, JobState::Running);

    // A shutdown of the daemon removes the records: the next one starts
    // every job by its autostart, as after a reboot.
    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        daemon.entries(&daemon.run_dir().join("settled")),
        Vec::<String>::new()
    );
    daemon.respawn();
    daemon.wait_for_state("held", JobState::Running, SETTLE);
    daemon.wait_for_state("done", JobState::Exited, SETTLE);
    let restarted = daemon.wait_for_state("failing", JobState::Fatal, SETTLE);
    assert_eq!(restarted.exit_status, Some(4));
    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn restart_limit_counts_across_daemon_restarts() {
    if skip("restart_limit_counts_across_daemon_restarts") {
        return;
    }
    // Each run prints one line, so the log counts the runs.
    let looping = shell_job(
        "echo run; sleep 2; exit 5",
        json!({"start_seconds": "300ms",
               "restart": {"policy": "on-failure", "max_restarts": 3, "window": "2m",
                           "backoff": {"initial": "3s", "max": "3s"}}}),
    );
    let mut daemon = Daemon::start(&[("looping", &looping)]);
    daemon.wait_until(SETTLE, "the second run is RUNNING", |daemon| {
        daemon
            .job("looping")
            .is_ok_and(|job| job.restarts == 1 && job.state == JobState::Running)
    });

    // The second run ends while no supervisord runs. The new daemon applies
    // the backoff from the exit instead of starting the job at once.
    daemon.crash();
    std::thread::sleep(Duration::from_millis(2500));
    daemon.respawn();
    let waiting = daemon.job("looping").unwrap();
    assert_eq!(waiting.state, JobState::Backoff, "{waiting:#?}");
    assert_eq!(waiting.restarts, 1, "{waiting:#?}");
    assert_eq!(waiting.exit_status, Some(5), "{waiting:#?}");

    // A daemon that dies while the job waits in BACKOFF leaves the wait and
    // the restart count to the next one.
    daemon.wait_until(SETTLE, "the third run ended", |daemon| {
        daemon
            .job("looping")
            .is_ok_and(|job| job.restarts == 2 && job.state == JobState::Backoff)
    });
    daemon.crash();
    daemon.respawn();
    let waiting = daemon.job("looping").unwrap();
    assert_eq!(waiting.state, JobState::Backoff, "{waiting:#?}");
    assert_eq!(waiting.restarts, 2, "{waiting:#?}");

    // The fourth run is the third restart within the window: its end makes
    // the job FATAL, as in a daemon that never restarted.
    let fatal = daemon.wait_for_state("looping", JobState::Fatal, Duration::from_secs(30));
    assert_eq!(fatal.restarts, 3, "{fatal:#?}");
    let runs = daemon.job_log("looping", "stdout").lines().count();
    assert_eq!(runs, 4, "{}", daemon.diagnostics());

    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn restart_applies_edits_made_while_away() {
    if skip("restart_applies_edits_made_while_away") {
        return;
    }
    let stubborn = shell_job(
        "trap '' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "5s"}}),
    );
    let mut daemon = Daemon::start(&[
        ("broken", &term_handler()),
        ("edited", &term_handler()),
        ("stubborn", &stubborn),
        ("restarting", &stubborn),
        ("logged", &term_handler()),
    ]);
    let broken = daemon.wait_for_state("broken", JobState::Running, SETTLE);
    let logged = daemon.wait_for_state("logged", JobState::Running, SETTLE);
    let edited = daemon.wait_for_state("edited", JobState::Running, SETTLE);
    daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    let restarting = daemon.wait_for_state("restarting", JobState::Running, SETTLE);
    let stop_since = stop_without_waiting(&daemon, "stubborn").since;
    let stopping: JobView = daemon
        .client()
        .post("/v1/jobs/restarting/restart?wait=false", None)
        .unwrap();
    assert_eq!(stopping.state, JobState::Stopping);

    // Two of the five seconds of the stop timeout pass before the crash.
    std::thread::sleep(Duration::from_secs(2));
    daemon.crash();
    daemon.write_job(
        "broken",
        "{\"command\": [\"/bin/true\"], \"restart\": {\"policy\": \"alway\"}}",
    );
    let changed = shell_job(
        "trap 'exit 0' TERM; while :; do sleep 0.2; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    daemon.write_job("edited", &changed);
    let new_logs = shell_job(
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"},
               "logs": {"max_size": "64K", "keep": 7}}),
    );
    daemon.write_job("logged", &new_logs);
    daemon.respawn();

    // An invalid file keeps the running container, with the spec it was
    // started from.
    let kept = daemon.job("broken").unwrap();
    assert_eq!(kept.state, JobState::Invalid, "{kept:#?}");
    assert_eq!(kept.process_state, JobState::Running, "{kept:#?}");
    assert_eq!(kept.pid, broken.pid);

    // New log limits alone go to the running container's monitor.
    let still = daemon.job("logged").unwrap();
    assert_eq!(still.container_id, logged.container_id);
    assert_eq!(still.pid, logged.pid);
    let settings = daemon
        .data_dir()
        .join("bundles")
        .join(logged.container_id.as_deref().unwrap())
        .join("logs.json");
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(settings, json!({"max_size": 65536, "keep": 7}));

    // A changed file restarts the job with a new container.
    daemon.wait_until(SETTLE, "the edited job runs a new container", |daemon| {
        daemon.job("edited").is_ok_and(|job| {
            job.state == JobState::Running && job.container_id != edited.container_id
        })
    });

    // The stop that the killed daemon had begun ends with SIGKILL after
    // the timeout; the job does not come back.
    let stopping = daemon.job("stubborn").unwrap();
    assert_eq!(stopping.state, JobState::Stopping, "{stopping:#?}");
    assert_eq!(stopping.since, stop_since, "the stop keeps its start");
    let left: f64 = stopping
        .description
        .split("SIGKILL in ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix('s'))
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no kill time in {:?}", stopping.description));
    assert!(
        left <= 3.0,
        "the stop timeout started again: {}",
        stopping.description
    );
    let stopped = daemon.wait_for_state("stubborn", JobState::Stopped, Duration::from_secs(30));
    assert!(
        stopped.description.contains("SIGKILL"),
        "{}",
        stopped.description
    );

    // The restart that the killed daemon had begun ends with a new
    // container.
    daemon.wait_until(Duration::from_secs(30), "the restart finishes", |daemon| {
        daemon.job("restarting").is_ok_and(|job| {
            job.state == JobState::Running && job.container_id != restarting.container_id
        })
    });

    let status = daemon.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn invalid_file_exit_while_away_restarts() {
    if skip("invalid_file_exit_while_away_restarts") {
        return;
    }
    let spec = json!({"command": ["/bin/sleep", "infinity"], "init": true}).to_string();
    let mut daemon = Daemon::start(&[("inv", &spec)]);
    let first = daemon.wait_for_state("inv", JobState::Running, SETTLE);
    let init_pid = first.pid.unwrap();
    let first_id = first.container_id.clone().unwrap();

    daemon.write_job("inv", "{\"command\": ");
    daemon.wait_until(SETTLE, "the job shows INVALID", |daemon| {
        daemon
            .job("inv")
            .is_ok_and(|view| view.state == JobState::Invalid)
    });
    let invalid = daemon.job("inv").unwrap();
    assert_eq!(invalid.process_state, JobState::Running, "{invalid:#?}");
    assert_eq!(invalid.pid, Some(init_pid), "{invalid:#?}");

    // The command ends by SIGUSR1 while no supervisord runs. The new daemon
    // must find the monitor gone, or it adopts the container and handles
    // the exit itself.
    daemon.crash();
    let shim_record = daemon
        .run_dir()
        .join("shims")
        .join(format!("{first_id}.json"));
    let shim_record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shim_record).unwrap()).unwrap();
    let monitor_pid = i32::try_from(shim_record["monitor_pid"].as_i64().unwrap()).unwrap();
    let command = children_of(init_pid);
    assert_eq!(command.len(), 1, "children of the init: {command:?}");
    host_kill(command[0], nix::sys::signal::Signal::SIGUSR1);
    daemon.wait_until(SETTLE, "the monitor ends without a supervisord", |_| {
        !process_alive(monitor_pid)
    });

    // The restart policy applies to the exit, with the spec that the ended
    // container was started from.
    daemon.respawn();
    daemon.wait_until(SETTLE, "a new container runs", |daemon| {
        daemon.job("inv").is_ok_and(|view| {
            view.process_state == JobState::Running && view.container_id != first.container_id
        })
    });
    let restarted = daemon.job("inv").unwrap();
    assert_eq!(restarted.state, JobState::Invalid, "{restarted:#?}");
    assert!(restarted.error.is_some(), "{restarted:#?}");
    assert_ne!(restarted.pid, Some(init_pid), "{restarted:#?}");
    assert!(restarted.pid.is_some(), "{restarted:#?}");
    assert_eq!(restarted.restarts, 1, "{restarted:#?}");
    assert_eq!(restarted.exit_status, Some(138), "{restarted:#?}");
    assert!(
        daemon
            .daemon_log()
            .contains("container ended while supervisord was not running: exited 138"),
        "{}",
        daemon.diagnostics()
    );
    let status = daemon.ctl(&["status", "inv"]);
    let line = stdout_of(&status);
    assert!(line.contains("INVALID"), "{line}");
    assert!(line.contains("previous version RUNNING, pid "), "{line}");

    // The spec stays the job's last valid version while the file is invalid.
    let stop = daemon.ctl(&["stop", "inv"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stderr_of(&stop));
    let stopped = daemon.job("inv").unwrap();
    assert_eq!(stopped.process_state, JobState::Stopped, "{stopped:#?}");
    let start = daemon.ctl(&["start", "inv"]);
    assert_eq!(start.status.code(), Some(0), "{}", stderr_of(&start));
    let started = daemon.job("inv").unwrap();
    assert_eq!(started.process_state, JobState::Running, "{started:#?}");
    assert_eq!(started.state, JobState::Invalid, "{started:#?}");
    let restart = daemon.ctl(&["restart", "inv"]);
    assert_eq!(restart.status.code(), Some(0), "{}", stderr_of(&restart));
    let again = daemon.job("inv").unwrap();
    assert_eq!(again.process_state, JobState::Running, "{again:#?}");
    assert_ne!(again.container_id, started.container_id, "{again:#?}");

    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

/// Runs a second supervisord on the given directories and returns its
/// output once it exits.
fn run_second_daemon(
    jobs: &std::path::Path,
    run: &std::path::Path,
    data: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Output {
    // The output goes to files, so a daemon that wrongly starts can be
    // ended and its output read without a reader thread.
    let outputs = tempfile::tempdir().unwrap();
    let stdout_path = outputs.path().join("stdout");
    let stderr_path = outputs.path().join("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_supervisord"))
        .arg("--jobs-dir")
        .arg(jobs)
        .arg("--run-dir")
        .arg(run)
        .arg("--data-dir")
        .arg(data)
        .arg("--log-dir")
        .arg(log)
        .arg("--cgroup-parent")
        .arg(format!("corral-test-second-{}", std::process::id()))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            // A daemon still running has started: end it with its jobs and
            // fail with what it logged.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
            panic!(
                "the second supervisord started instead of failing:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&stdout_path).unwrap(),
        stderr: std::fs::read(&stderr_path).unwrap(),
    }
}

#[test]
fn second_daemon_refused_after_dir_swap() {
    if skip("second_daemon_refused_after_dir_swap") {
        return;
    }
    let daemon = Daemon::start(&[("web", &term_handler())]);
    let first = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let jobs = daemon.jobs_dir();
    let fresh = tempfile::tempdir().unwrap();
    let [run, data, log] = ["run", "data", "log"].map(|name| fresh.path().join(name));
    let holder = format!("another supervisord (pid {})", daemon.pid());
    let locked_count = || {
        daemon
            .daemon_log()
            .matches("locked the replaced jobs directory")
            .count()
    };

    // A deploy renames a new directory into place.
    let staged = jobs.with_file_name("jobs.new");
    std::fs::create_dir(&staged).unwrap();
    std::fs::copy(jobs.join("web.json"), staged.join("web.json")).unwrap();
    std::fs::rename(&jobs, jobs.with_file_name("jobs.old")).unwrap();
    std::fs::rename(&staged, &jobs).unwrap();
    daemon.wait_until(SETTLE, "the new directory is locked", |_| {
        locked_count() == 1
    });
    let output = run_second_daemon(&jobs, &run, &data, &log);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains(&holder),
        "{}",
        stderr_of(&output)
    );

    // Deleted and created again.
    std::fs::remove_dir_all(&jobs).unwrap();
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(jobs.join("web.json"), term_handler()).unwrap();
    daemon.wait_until(SETTLE, "the recreated directory is locked", |_| {
        locked_count() == 2
    });
    let output = run_second_daemon(&jobs, &run, &data, &log);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains(&holder),
        "{}",
        stderr_of(&output)
    );

    // A directory that another process locked first is not loaded, and
    // the job loaded before keeps running.
    let locked_elsewhere = jobs.with_file_name("jobs.locked");
    std::fs::create_dir(&locked_elsewhere).unwrap();
    std::fs::write(locked_elsewhere.join("other.json"), term_handler()).unwrap();
    let lock = nix::fcntl::Flock::lock(
        std::fs::File::open(&locked_elsewhere).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .map_err(|(_, errno)| errno)
    .unwrap();
    std::fs::remove_dir_all(&jobs).unwrap();
    std::fs::rename(&locked_elsewhere, &jobs).unwrap();
    daemon.wait_until(SETTLE, "the failed lock is logged", |daemon| {
        daemon
            .daemon_log()
            .contains("failed to lock the replaced jobs directory")
    });
    let reread = daemon.ctl(&["reread"]);
    assert_eq!(reread.status.code(), Some(1), "{}", stdout_of(&reread));
    let expected = format!(
        "is in use by another supervisord (pid {})",
        std::process::id()
    );
    let output = format!("{}{}", stdout_of(&reread), stderr_of(&reread));
    assert!(output.contains(&expected), "{output}");
    assert!(
        daemon.job("other").is_err(),
        "a job of the locked directory was loaded"
    );
    let web = daemon.job("web").unwrap();
    assert_eq!(web.state, JobState::Running);
    assert_eq!(web.pid, first.pid);

    // Once the other holder is gone, the directory is locked and loaded.
    drop(lock);
    let update = daemon.ctl(&["update"]);
    assert_eq!(update.status.code(), Some(0), "{}", stdout_of(&update));
    daemon.wait_for_state("other", JobState::Running, SETTLE);
    assert_eq!(locked_count(), 3);
}

#[test]
fn second_daemon_on_same_dirs_is_refused() {
    if skip("second_daemon_on_same_dirs_is_refused") {
        return;
    }
    let mut daemon = Daemon::start(&[("web", &term_handler())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);

    // A daemon rejected for the jobs directory creates none of its own
    // directories.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_dirs = ["run", "data", "log"].map(|name| fresh.path().join(name));
    let [run, data, log] = &fresh_dirs;
    let output = run_second_daemon(&daemon.jobs_dir(), run, data, log);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let holder = format!("another supervisord (pid {})", daemon.pid());
    assert!(stderr.contains(&holder), "{stderr}");
    for dir in &fresh_dirs {
        assert!(
            !dir.exists(),
            "the rejected daemon created {}",
            dir.display()
        );
    }

    let other_run = tempfile::tempdir().unwrap();
    // The jobs directory is locked first, so the data and log directories
    // are checked with a jobs directory of the second daemon's own.
    let other_jobs = other_run.path().join("jobs");
    std::fs::create_dir(&other_jobs).unwrap();
    for (jobs, data, log, busy) in [
        (
            other_jobs.clone(),
            daemon.data_dir(),
            other_run.path().join("log"),
            daemon.data_dir(),
        ),
        (
            other_jobs.clone(),
            other_run.path().join("data"),
            daemon.log_dir(),
            daemon.log_dir(),
        ),
        // Directories of its own but the same jobs would run every job twice.
        (
            daemon.jobs_dir(),
            other_run.path().join("data"),
            other_run.path().join("log"),
            daemon.jobs_dir(),
        ),
    ] {
        let output = run_second_daemon(&jobs, &other_run.path().join("run"), &data, &log);
        assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
        let expected = format!(
            "another supervisord (pid {}) still uses {} after 2s: stop that one first",
            daemon.pid(),
            busy.display()
        );
        assert!(
            stderr_of(&output).contains(&expected),
            "{}",
            stderr_of(&output)
        );
        // The directories it created before the rejection are gone again.
        assert_eq!(daemon.entries(other_run.path()), ["jobs"]);
    }

    // A daemon with a jobs directory of its own on the run directory of
    // the running one is rejected before it creates its data and log
    // directories.
    let fresh_parent = fresh.path().join("new");
    let (data, log) = (fresh_parent.join("data"), fresh_parent.join("log"));
    let output = run_second_daemon(&other_jobs, &daemon.run_dir(), &data, &log);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let listening = format!(
        "another supervisord is listening on {}",
        daemon.socket().display()
    );
    assert!(stderr.contains(&listening), "{stderr}");
    assert!(
        !fresh_parent.exists(),
        "the rejected daemon created {}",
        fresh_parent.display()
    );
    assert!(
        daemon.socket().exists(),
        "the rejected daemon removed the socket"
    );

    let jobs = daemon.client().get::<JobList>("/v1/jobs").unwrap().jobs;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, JobState::Running);

    // The lock goes with the process, also after SIGKILL, and a daemon
    // started right after the kill waits for it.
    daemon.crash_and_respawn_at_once();
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

/// True while process `pid` exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !state.is_some_and(|rest| rest.starts_with('Z'))
}

#[test]
fn removed_job_stop_survives_crash() {
    if skip("removed_job_stop_survives_crash") {
        return;
    }
    let timeout = Duration::from_secs(8);
    let stubborn = shell_job(
        "trap '' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "8s"}}),
    );
    let mut daemon = Daemon::start(&[("stubborn", &stubborn)]);
    let running = daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    let pid = running.pid.expect("pid of a running job");

    // The stop signal goes out after the file is removed and before the
    // job shows STOPPING.
    let removed = Instant::now();
    daemon.remove_job("stubborn");
    let stopping = daemon.wait_for_state("stubborn", JobState::Stopping, SETTLE);
    let seen_stopping = Instant::now();
    assert!(stopping.removing, "{stopping:#?}");

    daemon.crash();
    daemon.respawn();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        process_alive(pid),
        "the next supervisord killed the container before the stop timeout"
    );

    let deadline = seen_stopping + timeout + Duration::from_secs(10);
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "the container outlived its stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_after = removed.elapsed();
    assert!(
        killed_after >= timeout,
        "killed {killed_after:?} after the file was removed, before the {timeout:?} timeout"
    );
    daemon.wait_until(SETTLE, "the container's files are removed", |daemon| {
        daemon.entries(&daemon.run_dir().join("shims")).is_empty()
    });
    assert!(daemon.job("stubborn").is_err(), "the removed job came back");

    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

/// Checks that job `name` is listed as STOPPING with its removal pending,
/// through the API, `status NAME`, `status` and `status --json`.
fn assert_removing_job_listed(daemon: &Daemon, name: &str, pid: i32) {
    let view = daemon.job(name).expect("the removed job is listed");
    assert_eq!(view.state, JobState::Stopping, "{view:#?}");
    assert!(view.removing, "{view:#?}");
    assert_eq!(view.pid, Some(pid), "{view:#?}");
    assert!(
        view.description.contains("SIGTERM sent, SIGKILL in "),
        "{view:#?}"
    );

    let single = daemon.ctl(&["status", name]);
    let line = stdout_of(&single);
    assert_eq!(
        single.status.code(),
        Some(3),
        "{line}{}",
        stderr_of(&single)
    );
    assert!(line.starts_with(&format!("{name} ")), "{line}");
    assert!(line.contains("STOPPING"), "{line}");

    let all = stdout_of(&daemon.ctl(&["status"]));
    assert!(
        all.lines()
            .any(|line| line.starts_with(&format!("{name} "))),
        "{all}"
    );

    let json = daemon.ctl(&["status", "--json"]);
    let views: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(views.len(), 1, "{views:#?}");
    assert_eq!(views[0]["name"], name);
    assert_eq!(views[0]["state"], "STOPPING");
    assert_eq!(views[0]["removing"], true);
}

/// Returns a job whose sleep ignores SIGTERM as the container's PID 1,
/// with stop timeout `timeout`.
fn stubborn_job(timeout: Duration) -> String {
    json!({"image": "host", "command": ["/bin/sleep", "infinity"],
           "start_seconds": "300ms", "stop": {"timeout": timeout.as_secs_f64()}})
    .to_string()
}

/// Starts a daemon with the job of [`stubborn_job`] as `stubborn`, and
/// returns the daemon and the job's view once it runs.
fn start_stubborn(timeout: Duration) -> (Daemon, JobView) {
    let daemon = Daemon::start(&[("stubborn", &stubborn_job(timeout))]);
    let running = daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    (daemon, running)
}

#[test]
fn removed_job_stop_survives_two_crashes() {
    if skip("removed_job_stop_survives_two_crashes") {
        return;
    }
    let timeout = Duration::from_secs(10);
    let (mut daemon, running) = start_stubborn(timeout);
    let pid = running.pid.expect("pid of a running job");

    let removed = Instant::now();
    daemon.remove_job("stubborn");
    daemon.wait_for_state("stubborn", JobState::Stopping, SETTLE);
    let settled = daemon.run_dir().join("settled/stubborn.json");

    // Each supervisord lists the job as the first one did, and leaves the
    // stop's record to the next one.
    for round in 1..=2 {
        daemon.crash();
        daemon.respawn();
        assert!(
            process_alive(pid),
            "supervisord {round} after the first killed the container before the stop timeout"
        );
        assert_removing_job_listed(&daemon, "stubborn", pid);
        assert!(
            settled.exists(),
            "supervisord {round} after the first removed the stop's record"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        process_alive(pid),
        "the last supervisord killed the container before the stop timeout"
    );
    assert_removing_job_listed(&daemon, "stubborn", pid);

    let deadline = removed + timeout + Duration::from_secs(10);
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "the container outlived its stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_after = removed.elapsed();
    assert!(
        killed_after >= timeout,
        "killed {killed_after:?} after the file was removed, before the {timeout:?} timeout"
    );
    daemon.wait_until(SETTLE, "the removed job is dropped", |daemon| {
        daemon.job("stubborn").is_err()
    });
    let dropped = daemon.ctl(&["status", "stubborn"]);
    assert_eq!(dropped.status.code(), Some(4), "{}", stdout_of(&dropped));
    assert!(!settled.exists(), "the stop's record outlived the stop");
    daemon.wait_until(SETTLE, "the container's files are removed", |daemon| {
        daemon.entries(&daemon.run_dir().join("shims")).is_empty()
    });

    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn removed_job_returns_after_crash() {
    if skip("removed_job_returns_after_crash") {
        return;
    }
    let timeout = Duration::from_secs(6);
    let (mut daemon, running) = start_stubborn(timeout);
    let pid = running.pid.expect("pid of a running job");
    let first_id = running.container_id.expect("container id of a running job");

    let removed = Instant::now();
    daemon.remove_job("stubborn");
    daemon.wait_for_state("stubborn", JobState::Stopping, SETTLE);
    daemon.crash();
    daemon.respawn();
    assert_removing_job_listed(&daemon, "stubborn", pid);

    // The file that is back cancels the removal but not the stop, and the
    // job starts again by its autostart once the container ended.
    daemon.write_job("stubborn", &stubborn_job(timeout));
    daemon.wait_until(SETTLE, "the returned file cancels the removal", |daemon| {
        daemon.job("stubborn").is_ok_and(|view| !view.removing)
    });
    let view = daemon.job("stubborn").unwrap();
    assert_eq!(view.state, JobState::Stopping, "{view:#?}");
    assert!(process_alive(pid), "the returned file cut the stop short");

    let restarted = daemon.wait_for_state("stubborn", JobState::Running, timeout + SETTLE);
    let killed_after = removed.elapsed();
    assert!(!process_alive(pid), "the first container outlived its stop");
    assert!(
        killed_after >= timeout,
        "started again {killed_after:?} after the file was removed, before the {timeout:?} timeout"
    );
    assert_ne!(restarted.container_id.as_deref(), Some(first_id.as_str()));
    assert!(!restarted.removing, "{restarted:#?}");

    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
}

/// Runs supervisorctl with `args` as user and group 65534 (nobody), with
/// `groups` as its supplementary groups.
fn ctl_as_nobody(daemon: &Daemon, groups: &'static [u32], args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    // A checkout in a directory that user nobody cannot enter, such as one
    // that `mktemp -d` made, keeps nobody from running the built binary, so
    // it runs from a copy in the daemon's scratch directory.
    let binary = daemon.run_dir().parent().unwrap().join("supervisorctl");
    if !binary.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_supervisorctl"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut command = std::process::Command::new(&binary);
    command.arg("--socket").arg(daemon.socket()).args(args);
    // SAFETY: the closure runs in the forked child before exec and makes
    // only the setgroups, setgid and setuid system calls, which are
    // async-signal-safe, on values that live in static memory.
    unsafe {
        command.pre_exec(move || {
            let groups: Vec<nix::unistd::Gid> = groups
                .iter()
                .map(|&gid| nix::unistd::Gid::from_raw(gid))
                .collect();
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            Ok(())
        });
    }
    // A child that another test thread forks while the copy above has the
    // file open for writing keeps that descriptor until its own exec, and
    // an exec of the binary meanwhile fails with ETXTBSY.
    let mut attempts = 0;
    loop {
        match command.output() {
            Err(error)
                if error.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result.unwrap(),
        }
    }
}

#[test]
fn socket_group_applies_to_existing_logs() {
    if skip("socket_group_applies_to_existing_logs") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let job = shell_job(
        "echo hello; trap 'exit 0' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    let mut daemon = Daemon::start(&[("web", &job)]);
    let before = daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_until(SETTLE, "the job wrote its log", |daemon| {
        daemon.job_log("web", "stdout").contains("hello")
    });
    let stdout = daemon.log_dir().join("web").join("stdout.log");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&stdout), 0o600);

    // The adopted job keeps running; its existing logs join the group.
    daemon.crash();
    daemon.respawn_with_args(&["--socket-group", "4242"]);
    let adopted = daemon.wait_for_state("web", JobState::Running, SETTLE);
    assert_eq!(adopted.container_id, before.container_id);
    for (path, expected) in [
        (daemon.log_dir().join("web"), 0o750),
        (stdout.clone(), 0o640),
    ] {
        assert_eq!(mode(&path), expected, "{}", path.display());
        assert_eq!(
            std::fs::metadata(&path).unwrap().gid(),
            4242,
            "{}",
            path.display()
        );
    }
    let scratch = daemon.run_dir().parent().unwrap().to_path_buf();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o711)).unwrap();
    let member = ctl_as_nobody(&daemon, &[4242], &["tail", "web"]);
    assert_eq!(member.status.code(), Some(0), "{}", stderr_of(&member));
    assert!(
        stdout_of(&member).contains("hello"),
        "{}",
        stdout_of(&member)
    );
}

#[test]
fn socket_group_members_can_tail_logs() {
    if skip("socket_group_members_can_tail_logs") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let job = shell_job(
        "echo hello from stdout; echo hello from stderr >&2; \
         trap 'exit 0' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    let mut daemon = Daemon::start_with_args(&[("web", &job)], &["--socket-group", "4242"]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_until(SETTLE, "the job wrote both logs", |daemon| {
        daemon
            .job_log("web", "stderr")
            .contains("hello from stderr")
    });
    let job_dir = daemon.log_dir().join("web");
    let expected = [
        (daemon.log_dir(), 0o750),
        (job_dir.clone(), 0o750),
        (job_dir.join("stdout.log"), 0o640),
        (job_dir.join("stderr.log"), 0o640),
    ];
    for (path, mode) in &expected {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.gid(), 4242, "{}", path.display());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            *mode,
            "{}",
            path.display()
        );
    }

    // The scratch directory above the run and log directories is this
    // test's own.
    let scratch = daemon.run_dir().parent().unwrap().to_path_buf();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o711)).unwrap();
    let member = ctl_as_nobody(&daemon, &[4242], &["tail", "web"]);
    assert_eq!(member.status.code(), Some(0), "{}", stderr_of(&member));
    assert!(
        stdout_of(&member).contains("hello from stdout"),
        "{}",
        stdout_of(&member)
    );
    let member = ctl_as_nobody(&daemon, &[4242], &["tail", "--stderr", "web"]);
    assert_eq!(member.status.code(), Some(0), "{}", stderr_of(&member));
    assert!(
        stdout_of(&member).contains("hello from stderr"),
        "{}",
        stdout_of(&member)
    );

    // --log-dir reads the files without the socket, so only the log
    // permissions keep a user outside the group out.
    let log_dir = daemon.log_dir().display().to_string();
    let outsider = ctl_as_nobody(&daemon, &[], &["tail", "--log-dir", &log_dir, "web"]);
    assert_ne!(outsider.status.code(), Some(0), "{}", stdout_of(&outsider));
    assert!(
        !stdout_of(&outsider).contains("hello"),
        "{}",
        stdout_of(&outsider)
    );
    let member = ctl_as_nobody(&daemon, &[4242], &["tail", "--log-dir", &log_dir, "web"]);
    assert_eq!(member.status.code(), Some(0), "{}", stderr_of(&member));
    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn socket_group_members_can_connect() {
    if skip("socket_group_members_can_connect") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let mut daemon =
        Daemon::start_with_args(&[("web", &term_handler())], &["--socket-group", "4242"]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let socket = std::fs::metadata(daemon.socket()).unwrap();
    assert_eq!(socket.gid(), 4242);
    assert_eq!(socket.permissions().mode() & 0o777, 0o660);
    let run_dir = std::fs::metadata(daemon.run_dir()).unwrap();
    assert_eq!(run_dir.gid(), 4242);
    assert_eq!(run_dir.permissions().mode() & 0o777, 0o710);

    // The scratch directory above the run directory is this test's own.
    let scratch = daemon.run_dir().parent().unwrap().to_path_buf();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o711)).unwrap();
    let member = ctl_as_nobody(&daemon, &[4242], &["status", "web"]);
    assert_eq!(member.status.code(), Some(0), "{}", stderr_of(&member));
    assert!(
        stdout_of(&member).contains("RUNNING"),
        "{}",
        stdout_of(&member)
    );
    let outsider = ctl_as_nobody(&daemon, &[], &["status", "web"]);
    assert_eq!(outsider.status.code(), Some(4), "{}", stdout_of(&outsider));
    assert!(
        stderr_of(&outsider).contains("permission denied on "),
        "{}",
        stderr_of(&outsider)
    );
    assert!(
        stderr_of(&outsider).contains("--socket-group"),
        "{}",
        stderr_of(&outsider)
    );
    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn live_restore_leaves_jobs_on_sigterm() {
    if skip("live_restore_leaves_jobs_on_sigterm") {
        return;
    }
    let mut daemon = Daemon::start_with_args(&[("web", &term_handler())], &["--live-restore"]);
    let before = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let pid = before.pid.unwrap();

    let started = Instant::now();
    let status = daemon.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", daemon.diagnostics());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "SIGTERM with --live-restore took {:?}",
        started.elapsed()
    );
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the job did not outlive supervisord"
    );
    assert!(
        daemon.daemon_log().contains("left its jobs running"),
        "{}",
        daemon.diagnostics()
    );

    daemon.respawn();
    let adopted = daemon.job("web").unwrap();
    assert_eq!(adopted.state, JobState::Running, "{adopted:#?}");
    assert_eq!(adopted.pid, Some(pid));
    assert_eq!(adopted.container_id, before.container_id);

    // A shutdown request stops the jobs even with --live-restore, and a
    // SIGTERM during it does not cut it short.
    let shutdown = daemon.ctl(&["shutdown", "--no-wait"]);
    assert_eq!(shutdown.status.code(), Some(0), "{}", stderr_of(&shutdown));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(daemon.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        daemon.entries(&daemon.run_dir().join("shims")),
        Vec::<String>::new()
    );
}

#[test]
fn jobs_keep_the_original_open_files_limit() {
    if skip("jobs_keep_the_original_open_files_limit") {
        return;
    }
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap()
        .1;
    if hard <= 1024 {
        eprintln!("SKIP jobs_keep_the_original_open_files_limit: the hard limit {hard} leaves nothing to raise");
        return;
    }
    let job = shell_job(
        "ulimit -n; exec sleep 300",
        json!({"start_seconds": "300ms", "stop": {"timeout": "1s"}, "init": true}),
    );
    let daemon = Daemon::start_with_open_files_limit(&[("limits", &job)], 1024);
    daemon.wait_for_state("limits", JobState::Running, SETTLE);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = open_files.split_whitespace().collect();
    assert_eq!(
        fields[3],
        hard.to_string(),
        "supervisord's soft limit: {open_files}"
    );
    daemon.wait_until(SETTLE, "the job printed its limit", |daemon| {
        !daemon.job_log("limits", "stdout").is_empty()
    });
    assert_eq!(daemon.job_log("limits", "stdout").trim(), "1024");

    // The monitor leads a session of its own, so that signals to
    // supervisord's process group do not reach the job.
    let monitor = children_of(daemon.pid())[0];
    let stat = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    assert_eq!(
        fields[3],
        monitor.to_string(),
        "session of the monitor: {stat}"
    );
}

/// Returns the PIDs of the children of every thread of `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("children");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        children.extend(
            text.split_whitespace()
                .map(|pid| pid.parse::<i32>().unwrap()),
        );
    }
    children
}

#[test]
fn shim_runs_from_read_only_binary() {
    if skip("shim_runs_from_read_only_binary") {
        return;
    }
    let daemon = Daemon::start(&[("web", &term_handler())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let monitor = children_of(daemon.pid())[0];
    let shim = children_of(monitor)[0];
    let exe = format!("/proc/{shim}/exe");
    let stat = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
    assert!(
        stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the shim's binary is on a writable mount"
    );
    // The monitor copies output at a lower priority than the job's.
    let nice = |stat_path: std::path::PathBuf| -> i32 {
        let stat = std::fs::read_to_string(stat_path).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        fields[16].parse().unwrap()
    };
    let monitor_threads: Vec<i32> = std::fs::read_dir(format!("/proc/{monitor}/task"))
        .unwrap()
        .map(|task| nice(task.unwrap().path().join("stat")))
        .collect();
    assert_eq!(
        monitor_threads.len(),
        2,
        "monitor threads: {monitor_threads:?}"
    );
    assert!(
        monitor_threads.iter().all(|&value| value == 10),
        "{monitor_threads:?}"
    );
    assert_eq!(nice(format!("/proc/{shim}/stat").into()), 0);

    let monitor_command =
        String::from_utf8(std::fs::read(format!("/proc/{monitor}/cmdline")).unwrap()).unwrap();
    let monitor_arguments: Vec<&str> = monitor_command.split('\0').collect();
    let separator = monitor_arguments
        .iter()
        .position(|&argument| argument == "--");
    let program = monitor_arguments[separator.unwrap() + 1];
    assert!(
        program.starts_with(&format!("/proc/{}/fd/", daemon.pid())),
        "the shim runs from supervisord's read-only view: {monitor_arguments:?}"
    );
}

#[test]
fn monitor_logs_follow_json_format() {
    if skip("monitor_logs_follow_json_format") {
        return;
    }
    let mut daemon =
        Daemon::start_with_args(&[("web", &term_handler())], &["--log-format", "json"]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let monitor = children_of(daemon.pid())[0];
    let (_, arguments) = name_and_arguments(monitor);
    let value_of = |flag: &str| {
        let position = arguments.iter().position(|argument| argument == flag);
        arguments[position.unwrap_or_else(|| panic!("no {flag}: {arguments:?}")) + 1].clone()
    };
    assert_eq!(value_of("--log-format"), "json");
    assert_eq!(value_of("--job"), "web");
    let container_id = value_of("--container-id");

    // Invalid settings make the monitor log a warning when it rereads them.
    let settings = daemon
        .data_dir()
        .join("bundles")
        .join(&container_id)
        .join("logs.json");
    std::fs::write(&settings, "not json").unwrap();
    // SAFETY: kill only sends a signal to the monitor this test's daemon
    // started.
    let sent = unsafe { libc::kill(monitor, corral_supervisor::monitor::reload_signal()) };
    assert_eq!(sent, 0);
    daemon.wait_until(
        SETTLE,
        "the monitor logged the invalid settings",
        |daemon| daemon.daemon_log().contains("failed to read log settings"),
    );
    let status = daemon.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));

    let log = daemon.daemon_log();
    let mut warnings = Vec::new();
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        let message = event["fields"]["message"].as_str().unwrap_or_default();
        if message.contains("failed to read log settings") {
            warnings.push(event);
        }
    }
    assert_eq!(warnings.len(), 1, "{log}");
    assert_eq!(warnings[0]["fields"]["job"], "web", "{log}");
    assert_eq!(warnings[0]["fields"]["container_id"], container_id.as_str());
}

/// Returns the process name (comm) and the command line of `pid`.
fn name_and_arguments(pid: i32) -> (String, Vec<String>) {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let arguments = String::from_utf8_lossy(&cmdline)
        .split_terminator('\0')
        .map(str::to_string)
        .collect();
    (comm.trim_end().to_string(), arguments)
}

#[test]
fn shim_and_init_are_named_corral() {
    if skip("shim_and_init_are_named_corral") {
        return;
    }
    let with_init = shell_job(
        "exec sleep 300",
        json!({"start_seconds": "300ms", "stop": {"timeout": "1s"}, "init": true}),
    );
    let daemon = Daemon::start(&[("named", &with_init)]);
    daemon.wait_for_state("named", JobState::Running, SETTLE);
    let monitor = children_of(daemon.pid())[0];
    let shim = children_of(monitor)[0];
    let (shim_name, shim_arguments) = name_and_arguments(shim);
    assert_eq!(shim_name, "corral", "shim command line: {shim_arguments:?}");
    assert_eq!(shim_arguments[0], "corral");
    // Tools such as bench/supervisor/bench.py find shims by this verb.
    assert!(
        shim_arguments.iter().any(|argument| argument == "shim"),
        "{shim_arguments:?}"
    );

    // The minimal init is a fork of the shim that does not execute.
    let init = children_of(shim)[0];
    let (init_name, init_arguments) = name_and_arguments(init);
    assert_eq!(init_name, "corral", "init command line: {init_arguments:?}");
    assert_eq!(init_arguments[0], "corral");
}

#[test]
fn published_port_reaches_job() {
    if skip("published_port_reaches_job") {
        return;
    }
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = free.local_addr().unwrap().port();
    drop(free);
    // The server listens on the loopback of the job's own network
    // namespace, which only the relay can reach.
    let server = "import socket\n\
                  s = socket.socket()\n\
                  s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                  s.bind(('127.0.0.1', 8080))\n\
                  s.listen()\n\
                  while True:\n    c, _ = s.accept()\n    c.sendall(b'hello from the job')\n    c.close()\n";
    let job = json!({
        "image": "host",
        "command": ["/usr/bin/python3", "-c", server],
        "network": "loopback",
        "ports": [{"host": format!("127.0.0.1:{host_port}"), "container": 8080}],
        // Under the minimal init the server is not PID 1, so SIGTERM ends it.
        "init": true,
        "start_seconds": "300ms",
        "stop": {"timeout": "2s"},
    })
    .to_string();
    let daemon = Daemon::start(&[("web", &job)]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);

    let mut reply = String::new();
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        reply.clear();
        let read = std::net::TcpStream::connect(("127.0.0.1", host_port))
            .and_then(|mut stream| std::io::Read::read_to_string(&mut stream, &mut reply));
        if read.is_ok() && !reply.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reply, "hello from the job", "{}", daemon.diagnostics());

    let stop = daemon.ctl(&["stop", "web"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", host_port)).is_err(),
        "the host port stays open after the job stopped"
    );
}

/// Returns a job whose Python server sends a greeting on every connection
/// to port 8080 of its own loopback, published on `host_port` of the host's
/// loopback.
fn port_server(host_port: u16) -> String {
    let server = "import socket\n\
                  s = socket.socket()\n\
                  s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                  s.bind(('127.0.0.1', 8080))\n\
                  s.listen()\n\
                  while True:\n    c, _ = s.accept()\n    c.sendall(b'hello from the job')\n    c.close()\n";
    json!({
        "image": "host",
        "command": ["/usr/bin/python3", "-c", server],
        "network": "loopback",
        "ports": [{"host": format!("127.0.0.1:{host_port}"), "container": 8080}],
        // Under the minimal init the server is not PID 1, so SIGTERM ends it.
        "init": true,
        "start_seconds": "300ms",
        "stop": {"timeout": "2s"},
    })
    .to_string()
}

/// Returns a port of 127.0.0.1 that is free now, between 20000 and 60000,
/// the range the end-to-end tests keep to.
fn free_port() -> u16 {
    loop {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        if (20000..=60000).contains(&port) {
            return port;
        }
    }
}

/// Reads what the job behind `host_port` sends, retrying until it responds.
fn read_port(daemon: &Daemon, host_port: u16) -> String {
    let mut reply = String::new();
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        reply.clear();
        let read = std::net::TcpStream::connect(("127.0.0.1", host_port))
            .and_then(|mut stream| std::io::Read::read_to_string(&mut stream, &mut reply));
        if read.is_ok() && !reply.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reply, "hello from the job", "{}", daemon.diagnostics());
    reply
}

#[test]
fn restart_removes_files_of_interrupted_launches() {
    if skip("restart_removes_files_of_interrupted_launches") {
        return;
    }
    let mut daemon = Daemon::start(&[("web", &term_handler())]);
    let before = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let kept = before.container_id.clone().unwrap();
    daemon.crash();

    // What a supervisord killed between writing a bundle and the shim
    // record, or during a record's write, leaves behind.
    let ghost = "ghost-0badcafe";
    let bundle = daemon.data_dir().join("bundles").join(ghost);
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), "{}").unwrap();
    let leftovers = [
        daemon
            .run_dir()
            .join("shims")
            .join(format!("{ghost}.json.tmp")),
        daemon.run_dir().join("pids").join(format!("{ghost}.pid")),
        daemon.run_dir().join("exits").join(format!("{ghost}.json")),
    ];
    for path in &leftovers {
        std::fs::write(path, "x").unwrap();
    }

    daemon.respawn();
    let adopted = daemon.wait_for_state("web", JobState::Running, SETTLE);
    assert_eq!(adopted.container_id.as_deref(), Some(kept.as_str()));
    assert!(!bundle.exists(), "{}", daemon.diagnostics());
    for path in &leftovers {
        assert!(
            !path.exists(),
            "{} is left\n{}",
            path.display(),
            daemon.diagnostics()
        );
    }
    // The adopted container keeps its files.
    assert!(daemon.data_dir().join("bundles").join(&kept).is_dir());
    assert!(daemon
        .run_dir()
        .join("shims")
        .join(format!("{kept}.json"))
        .is_file());
}

#[test]
fn adopted_job_with_ports_restarts() {
    if skip("adopted_job_with_ports_restarts") {
        return;
    }
    let host_port = free_port();
    let mut daemon = Daemon::start(&[("web", &port_server(host_port))]);
    let before = daemon.wait_for_state("web", JobState::Running, SETTLE);
    read_port(&daemon, host_port);

    daemon.crash();
    daemon.respawn();
    let adopted = daemon.job("web").unwrap();
    assert_eq!(adopted.container_id, before.container_id);
    read_port(&daemon, host_port);

    let restart = daemon.ctl(&["restart", "web"]);
    assert_eq!(
        restart.status.code(),
        Some(0),
        "{}{}",
        stdout_of(&restart),
        daemon.diagnostics()
    );
    assert_eq!(stdout_of(&restart), "web: restarted\n");
    let after = daemon.job("web").unwrap();
    assert_eq!(after.state, JobState::Running);
    assert_eq!(after.restarts, 0, "{after:#?}");
    assert_ne!(after.container_id, before.container_id);
    assert!(
        !daemon.daemon_log().contains("Address already in use"),
        "{}",
        daemon.diagnostics()
    );
    read_port(&daemon, host_port);
}

#[test]
fn renamed_job_waits_for_its_port() {
    if skip("renamed_job_waits_for_its_port") {
        return;
    }
    let host_port = free_port();
    let daemon = Daemon::start(&[("web", &stubborn_port_server(host_port, "3s"))]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    read_port(&daemon, host_port);

    std::fs::rename(
        daemon.jobs_dir().join("web.json"),
        daemon.jobs_dir().join("web2.json"),
    )
    .unwrap();
    let renamed = daemon.wait_for_state("web2", JobState::Running, SETTLE + Duration::from_secs(3));
    assert_eq!(
        renamed.restarts,
        0,
        "{renamed:#?}\n{}",
        daemon.diagnostics()
    );
    assert!(daemon.job("web").is_err(), "{}", daemon.diagnostics());
    let log = daemon.daemon_log();
    assert!(
        !log.contains("Address already in use"),
        "{}",
        daemon.diagnostics()
    );
    assert!(
        log.contains("waiting for another job to release a published port"),
        "{}",
        daemon.diagnostics()
    );
    read_port(&daemon, host_port);
}

/// Returns a [`port_server`] job that ignores SIGTERM, so its stop keeps
/// the port bound for the whole `stop_timeout`.
fn stubborn_port_server(host_port: u16, stop_timeout: &str) -> String {
    let mut stubborn: serde_json::Value = serde_json::from_str(&port_server(host_port)).unwrap();
    let command = stubborn["command"][2].as_str().unwrap().to_string();
    stubborn["command"][2] = json!(format!(
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n{command}"
    ));
    stubborn["stop"] = json!({ "timeout": stop_timeout });
    stubborn.to_string()
}

#[test]
fn stop_cancels_start_waiting_for_port() {
    if skip("stop_cancels_start_waiting_for_port") {
        return;
    }
    let host_port = free_port();
    let daemon = Daemon::start(&[("web", &stubborn_port_server(host_port, "8s"))]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    read_port(&daemon, host_port);

    // The renamed job waits for the port until the old one's stop ends.
    std::fs::rename(
        daemon.jobs_dir().join("web.json"),
        daemon.jobs_dir().join("web2.json"),
    )
    .unwrap();
    daemon.wait_until(SETTLE, "the renamed job waits for its port", |daemon| {
        daemon
            .daemon_log()
            .contains("waiting for another job to release a published port")
    });
    let stop = daemon.ctl(&["stop", "web2"]);
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}{}",
        stdout_of(&stop),
        daemon.diagnostics()
    );
    assert_eq!(stdout_of(&stop), "web2: stopped\n");
    // The stop did not wait for the old job, which still has the port bound.
    let old = daemon.job("web").unwrap();
    assert_eq!(old.state, JobState::Stopping, "{}", daemon.diagnostics());
    assert!(
        daemon
            .daemon_log()
            .contains("launch cancelled before the container was created"),
        "{}",
        daemon.diagnostics()
    );

    // No container starts once the old job is gone.
    daemon.wait_until(
        SETTLE + Duration::from_secs(8),
        "the old job is removed",
        |daemon| daemon.job("web").is_err(),
    );
    let view = daemon.job("web2").unwrap();
    assert_eq!(view.state, JobState::Stopped, "{}", daemon.diagnostics());
    let started_web2 = daemon
        .daemon_log()
        .lines()
        .any(|line| line.contains("started job") && line.contains("web2"));
    assert!(!started_web2, "{}", daemon.diagnostics());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", host_port)).is_err(),
        "the port is still published"
    );
}

#[test]
fn port_conflict_names_the_holder() {
    if skip("port_conflict_names_the_holder") {
        return;
    }
    let host_port = free_port();
    let daemon = Daemon::start(&[("first", &port_server(host_port))]);
    daemon.wait_for_state("first", JobState::Running, SETTLE);

    daemon.write_job("second", &port_server(host_port));
    daemon.wait_until(SETTLE, "the second job failed to start", |daemon| {
        daemon
            .job("second")
            .is_ok_and(|view| view.state == JobState::Backoff)
    });
    let view = daemon.job("second").unwrap();
    assert!(
        view.description.contains("Address already in use"),
        "{}",
        view.description
    );
    assert!(
        view.description
            .contains("job \"first\" publishes that address"),
        "{}",
        view.description
    );
    read_port(&daemon, host_port);
}

/// Rounds of `restart all` in `restart_all_rebinds_published_port`. Before
/// listeners were shut down, 4 runs of 25 rounds failed in rounds 6 to 23
/// on a loaded 2-CPU machine.
const RESTART_ALL_ROUNDS: usize = 40;

/// Jobs besides the port job in `restart_all_rebinds_published_port`.
const OTHER_JOBS: usize = 12;

/// Restarts a job with a published port together with jobs that end at
/// once on SIGTERM. Their monitors are spawned while the port job's last
/// listener closes, and each spawned process keeps a copy of every
/// descriptor of supervisord until it executes the monitor.
#[test]
fn restart_all_rebinds_published_port() {
    if skip("restart_all_rebinds_published_port") {
        return;
    }
    let host_port = free_port();
    let quick_sleeper = json!({
        "image": "host",
        "command": ["/bin/sleep", "300"],
        // Under the minimal init, sleep is not PID 1 and SIGTERM ends it.
        "init": true,
        "start_seconds": "300ms",
        "stop": {"timeout": "2s"},
    })
    .to_string();
    let web = port_server(host_port);
    let mut jobs = vec![("web".to_string(), web)];
    for index in 0..OTHER_JOBS {
        jobs.push((format!("other{index}"), quick_sleeper.clone()));
    }
    let jobs: Vec<(&str, &str)> = jobs
        .iter()
        .map(|(name, body)| (name.as_str(), body.as_str()))
        .collect();
    let daemon = Daemon::start(&jobs);
    for (name, _) in &jobs {
        daemon.wait_for_state(name, JobState::Running, SETTLE);
    }

    for round in 0..RESTART_ALL_ROUNDS {
        read_port(&daemon, host_port);
        let restart = daemon.ctl(&["restart", "all"]);
        assert_eq!(
            restart.status.code(),
            Some(0),
            "round {round}: {}{}{}",
            stdout_of(&restart),
            stderr_of(&restart),
            daemon.diagnostics()
        );
    }
    assert!(
        !daemon.daemon_log().contains("Address already in use"),
        "{}",
        daemon.diagnostics()
    );
    read_port(&daemon, host_port);
}

#[test]
fn running_job_log_rotates() {
    if skip("running_job_log_rotates") {
        return;
    }
    let chatty = shell_job(
        "i=0; while [ $i -lt 300 ]; do echo \"line $i of the first burst, padded to fill the log\"; \
         i=$((i+1)); done; sleep 3; echo after-rotation; exec sleep 300",
        json!({"start_seconds": "300ms", "stop": {"timeout": "2s"},
               "logs": {"max_size": "4K", "keep": 2}}),
    );
    let daemon = Daemon::start(&[("chatty", &chatty)]);
    daemon.wait_for_state("chatty", JobState::Running, SETTLE);

    let dir = daemon.log_dir().join("chatty");
    daemon.wait_until(SETTLE, "the job writes after the rotation", |daemon| {
        daemon
            .job_log("chatty", "stdout")
            .contains("after-rotation")
    });
    assert!(
        !dir.join("stdout.log.3").exists(),
        "keep 2 left a third file"
    );
    let mut numbers = Vec::new();
    for name in ["stdout.log.2", "stdout.log.1", "stdout.log"] {
        let content = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(content.len() <= 4096, "{name} has {} bytes", content.len());
        assert!(content.ends_with('\n'), "{name} ends mid-line: {content:?}");
        for line in content.lines() {
            if let Some(rest) = line.strip_prefix("line ") {
                numbers.push(rest.split(' ').next().unwrap().parse::<u32>().unwrap());
            }
        }
    }
    assert_eq!(numbers.last(), Some(&299), "{numbers:?}");
    for pair in numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "lines lost between rotated files: {numbers:?}"
        );
    }
    assert_eq!(daemon.job("chatty").unwrap().state, JobState::Running);
}

#[test]
fn log_settings_change_without_restart() {
    if skip("log_settings_change_without_restart") {
        return;
    }
    // Each SIGUSR1 writes about 11K.
    let script = "burst() { i=0; while [ $i -lt 200 ]; do \
                  echo \"line $i of a burst, padded to fill the log quickly\"; i=$((i+1)); done; }; \
                  trap burst USR1; echo ready; while :; do sleep 0.1; done";
    let job = |logs: serde_json::Value| {
        shell_job(
            script,
            json!({"start_seconds": "300ms", "stop": {"timeout": "2s"}, "logs": logs}),
        )
    };
    let daemon = Daemon::start(&[("bursts", &job(json!({"max_size": "4K", "keep": 3})))]);
    let before = daemon.wait_for_state("bursts", JobState::Running, SETTLE);
    let dir = daemon.log_dir().join("bursts");
    daemon.wait_until(SETTLE, "the job set its trap", |daemon| {
        daemon.job_log("bursts", "stdout").contains("ready")
    });
    let signal = daemon.ctl(&["signal", "USR1", "bursts"]);
    assert_eq!(signal.status.code(), Some(0), "{}", stdout_of(&signal));
    daemon.wait_until(SETTLE, "the first burst rotated twice", |_| {
        dir.join("stdout.log.2").exists()
    });

    daemon.write_job("bursts", &job(json!({"max_size": "8K", "keep": 1})));
    daemon.wait_until(SETTLE, "the new log settings are applied", |daemon| {
        daemon.daemon_log().contains("applied new log settings")
    });
    for _ in 0..2 {
        let signal = daemon.ctl(&["signal", "USR1", "bursts"]);
        assert_eq!(signal.status.code(), Some(0), "{}", stdout_of(&signal));
        std::thread::sleep(Duration::from_millis(500));
    }
    daemon.wait_until(SETTLE, "keep 1 removed the older files", |_| {
        !dir.join("stdout.log.2").exists() && !dir.join("stdout.log.3").exists()
    });
    let sizes: Vec<u64> = ["stdout.log.1", "stdout.log"]
        .iter()
        .map(|name| std::fs::metadata(dir.join(name)).unwrap().len())
        .collect();
    assert!(sizes.iter().all(|&size| size <= 8192), "{sizes:?}");
    assert!(
        sizes.iter().any(|&size| size > 4096),
        "max_size 8K not applied: {sizes:?}"
    );
    let after = daemon.job("bursts").unwrap();
    assert_eq!(
        after.container_id, before.container_id,
        "the log change restarted the job"
    );
}

#[test]
fn stop_settings_change_without_restart() {
    if skip("stop_settings_change_without_restart") {
        return;
    }
    // /bin/sleep at PID 1 ignores SIGTERM, so each stop takes its timeout.
    let job = |timeout: &str| {
        json!({"image": "host", "command": ["/bin/sleep", "300"],
               "start_seconds": "300ms", "stop": {"timeout": timeout}})
        .to_string()
    };
    let daemon = Daemon::start(&[("stubborn", &job("30s"))]);
    let before = daemon.wait_for_state("stubborn", JobState::Running, SETTLE);

    daemon.write_job("stubborn", &job("1s"));
    daemon.wait_until(SETTLE, "the edit is loaded", |daemon| {
        daemon.daemon_log().contains("job file changed")
    });
    let started = Instant::now();
    let stop = daemon.ctl(&["stop", "stubborn"]);
    let took = started.elapsed();
    assert_eq!(stop.status.code(), Some(5), "{}", stdout_of(&stop));
    assert_eq!(
        stdout_of(&stop),
        "stubborn: stopped by SIGKILL after 1s timeout\n"
    );
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    let after = daemon.job("stubborn").unwrap();
    assert_eq!(
        after.container_id, before.container_id,
        "the stop settings change restarted the job"
    );
}

#[test]
fn tail_follow_prints_new_lines() {
    if skip("tail_follow_prints_new_lines") {
        return;
    }
    let ticker = shell_job(
        "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "2s"}}),
    );
    let daemon = Daemon::start(&[("ticker", &ticker)]);
    daemon.wait_for_state("ticker", JobState::Running, SETTLE);

    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(["tail", "-f", "-n", "1", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(4)
            .map(|line| line.unwrap())
            .collect::<Vec<String>>()
    });
    let deadline = Instant::now() + SETTLE;
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    let lines = reader.join().unwrap();

    assert_eq!(lines.len(), 4, "{lines:?}");
    let numbers: Vec<u32> = lines
        .iter()
        .map(|line| line.trim_start_matches("tick ").parse().unwrap())
        .collect();
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "lines skipped or repeated: {lines:?}");
    }
}

/// Returns a buffer that a thread fills with everything read from `source`.
fn collect_in_background(
    mut source: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let collected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&collected);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 65536];
        while let Ok(count) = source.read(&mut buffer) {
            if count == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buffer[..count]);
        }
    });
    collected
}

/// Needs no daemon and no root: with `--log-dir`, supervisorctl reads the
/// files without the socket.
#[test]
fn tail_follow_reports_rotated_away_output() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let job_dir = dir.path().join("web");
    std::fs::create_dir(&job_dir).unwrap();
    let path = job_dir.join("stdout.log");
    std::fs::write(&path, b"").unwrap();
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(dir.path().join("missing.sock"))
        .args(["tail", "-f", "-n", "0", "--log-dir"])
        .arg(dir.path())
        .arg("web")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The follower opens the file for following after its inotify watch
    // exists, and keeps it open.
    let opened = || {
        std::fs::read_dir(format!("/proc/{}/fd", follower.id()))
            .map(|entries| {
                entries
                    .flatten()
                    .any(|entry| std::fs::read_link(entry.path()).ok().as_deref() == Some(&path))
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + SETTLE;
    while !opened() {
        assert!(
            Instant::now() < deadline,
            "supervisorctl never opened the log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // More than the pipe buffer takes, so the follower blocks in its write while
    // two rotations take a whole file away unread.
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let filler = "a".repeat(99) + "\n";
    for _ in 0..2000 {
        writer.write_all(filler.as_bytes()).unwrap();
    }
    drop(writer);
    corral_supervisor::logrotate::rotate(&path, 5).unwrap();
    std::fs::write(&path, "b".repeat(999) + "\n").unwrap();
    corral_supervisor::logrotate::rotate(&path, 5).unwrap();
    std::fs::write(&path, b"last\n").unwrap();

    let printed = collect_in_background(follower.stdout.take().unwrap());
    let notices = collect_in_background(follower.stderr.take().unwrap());
    let deadline = Instant::now() + SETTLE;
    while !printed.lock().unwrap().ends_with(b"last\n") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    follower.kill().unwrap();
    follower.wait().unwrap();

    let printed = String::from_utf8(printed.lock().unwrap().clone()).unwrap();
    assert_eq!(printed.len(), 200_000 + "last\n".len());
    assert!(printed.ends_with("\nlast\n"));
    assert!(!printed.contains('b'), "printed the rotated-away file");
    let notices = String::from_utf8(notices.lock().unwrap().clone()).unwrap();
    assert_eq!(
        notices,
        "supervisorctl: web: skipped 1000 bytes of stdout.log that were rotated away \
         before they were read\n"
    );
}

#[test]
fn unforwarded_stop_signal_works() {
    if skip("unforwarded_stop_signal_works") {
        return;
    }
    // The shim forwards only TERM, INT, HUP, QUIT, USR1 and USR2, so
    // supervisord sends SIGKILL to the container's init through the runtime.
    let job = json!({"image": "host", "command": ["/bin/sleep", "300"],
                     "start_seconds": "300ms", "stop": {"signal": "KILL", "timeout": "10s"}})
    .to_string();
    let daemon = Daemon::start(&[("killed", &job)]);
    daemon.wait_for_state("killed", JobState::Running, SETTLE);

    let started = Instant::now();
    let stop = daemon.ctl(&["stop", "killed"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    let view = daemon.job("killed").unwrap();
    assert_eq!(view.signal.as_deref(), Some("SIGKILL"));
    assert!(
        view.description.starts_with("stopped at "),
        "{}",
        view.description
    );
}

#[test]
fn fixed_invalid_file_starts() {
    if skip("fixed_invalid_file_starts") {
        return;
    }
    let daemon = Daemon::start(&[(
        "late",
        "{\"command\": [\"/bin/sleep\", \"300\"], \"colour\": 1}",
    )]);
    let invalid = daemon.job("late").unwrap();
    assert_eq!(invalid.state, JobState::Invalid);
    assert_eq!(invalid.process_state, JobState::Invalid);
    assert!(invalid.error.unwrap().message.contains("colour"));

    daemon.write_job("late", &term_handler());
    let running = daemon.wait_for_state("late", JobState::Running, SETTLE);
    assert!(running.error.is_none());
    assert!(running.container_id.is_some());
}

#[test]
fn top_shows_usage_against_limits() {
    if skip("top_shows_usage_against_limits") {
        return;
    }
    let burner = shell_job(
        "while :; do :; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "1s"}, "init": true,
               "resources": {"cpus": 0.5, "pids": 64}}),
    );
    let holder = json!({
        "image": "host",
        "command": ["/usr/bin/python3", "-c",
                    "import time\nx = bytearray(24 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(3600)"],
        "init": true,
        "start_seconds": "300ms",
        "stop": {"timeout": "1s"},
        "resources": {"memory": "64M", "memory_swap": "64M"},
    })
    .to_string();
    let idle = json!({"image": "host", "command": ["/bin/true"], "autostart": false}).to_string();
    let daemon = Daemon::start(&[("burner", &burner), ("holder", &holder), ("idle", &idle)]);
    daemon.wait_for_state("burner", JobState::Running, SETTLE);
    daemon.wait_for_state("holder", JobState::Running, SETTLE);
    // python needs a moment to allocate and touch its buffer.
    std::thread::sleep(Duration::from_secs(1));

    let top = daemon.ctl(&["top", "--no-stream", "-d", "2s"]);
    assert_eq!(top.status.code(), Some(0), "{}", stderr_of(&top));
    let table = stdout_of(&top);
    let row = |name: &str| {
        table
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .to_string()
    };
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert!(table.starts_with("NAME "), "{table}");

    let burner = cells(&row("burner"));
    let cpu: f64 = burner[2].parse().unwrap_or_else(|_| panic!("{table}"));
    assert!(
        (35.0..=65.0).contains(&cpu),
        "cpus 0.5 showed {cpu}% CPU:\n{table}"
    );
    assert!(burner.last().unwrap().ends_with("/ 64"), "{table}");

    let holder = cells(&row("holder"));
    assert!(holder[3].ends_with("/ 64MiB"), "{table}");
    let used_mib: f64 = holder[3]
        .split(' ')
        .next()
        .unwrap()
        .trim_end_matches("MiB")
        .parse()
        .unwrap_or_else(|_| panic!("{table}"));
    assert!(
        (24.0..48.0).contains(&used_mib),
        "{used_mib} MiB used:\n{table}"
    );
    let share: f64 = holder[4].parse().unwrap_or_else(|_| panic!("{table}"));
    assert!(
        (37.0..75.0).contains(&share),
        "{share}% of the limit:\n{table}"
    );
    assert!(holder[5].contains(" / "), "network column: {table}");

    let idle = row("idle");
    assert!(idle.contains("STOPPED"), "{table}");
    assert!(idle.ends_with('-'), "{table}");

    let alias = daemon.ctl(&["stats", "--no-stream", "-d", "200ms", "holder"]);
    assert_eq!(alias.status.code(), Some(0), "{}", stderr_of(&alias));
    assert_eq!(
        stdout_of(&alias).lines().count(),
        2,
        "{}",
        stdout_of(&alias)
    );

    let unknown = daemon.ctl(&["top", "--no-stream", "nosuchjob"]);
    assert_eq!(unknown.status.code(), Some(4));
    assert!(stderr_of(&unknown).contains("nosuchjob: ERROR (no such job)"));

    let list: corral_supervisor::api::StatsList = daemon.client().get("/v1/stats").unwrap();
    let holder = list.jobs.iter().find(|job| job.name == "holder").unwrap();
    assert_eq!(holder.memory_limit_bytes, Some(64 * 1024 * 1024));
    assert!(holder.cpu_usage_ns.unwrap() > 0);
    assert!(holder.pids.unwrap() >= 2, "init and python: {holder:?}");
}

#[test]
fn published_port_traffic_has_direction() {
    if skip("published_port_traffic_has_direction") {
        return;
    }
    const REQUEST_BYTES: usize = 1_000_000;
    // The server reads the whole request, replies 5 bytes and keeps the
    // connection open until the client closes it.
    let server = format!(
        "import socket\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', 8080))\n\
         s.listen()\n\
         while True:\n    \
             c, _ = s.accept()\n    \
             left = {REQUEST_BYTES}\n    \
             while left > 0:\n        \
                 chunk = c.recv(65536)\n        \
                 if not chunk: break\n        \
                 left -= len(chunk)\n    \
             if left == 0: c.sendall(b'done\\n')\n    \
             c.recv(1)\n    \
             c.close()\n"
    );
    let host_port = free_port();
    let job = json!({
        "image": "host",
        "command": ["/usr/bin/python3", "-c", server],
        "network": "loopback",
        "ports": [{"host": format!("127.0.0.1:{host_port}"), "container": 8080}],
        // Under the minimal init the server is not PID 1, so SIGTERM ends it.
        "init": true,
        "start_seconds": "300ms",
        "stop": {"timeout": "2s"},
    })
    .to_string();
    let daemon = Daemon::start(&[("web", &job)]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);

    // Retries until the server listens. A connection the relay cannot
    // connect carries nothing into the job.
    let exchange = || -> std::io::Result<(std::net::TcpStream, [u8; 5])> {
        use std::io::{Read, Write};
        let mut client = std::net::TcpStream::connect(("127.0.0.1", host_port))?;
        client.set_read_timeout(Some(Duration::from_secs(10)))?;
        client.write_all(&vec![b'x'; REQUEST_BYTES])?;
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply)?;
        Ok((client, reply))
    };
    let deadline = Instant::now() + SETTLE;
    let (client, reply) = loop {
        match exchange() {
            Ok(done) => break done,
            Err(error) if Instant::now() >= deadline => {
                panic!(
                    "no reply through the published port: {error}\n{}",
                    daemon.diagnostics()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(&reply, b"done\n");

    // The connection is still open, so the counts come from the relay's
    // writes as they happen, not from connections that ended.
    let stats_of_web = || {
        let list: corral_supervisor::api::StatsList = daemon.client().get("/v1/stats").unwrap();
        list.jobs.into_iter().find(|job| job.name == "web").unwrap()
    };
    let web = stats_of_web();
    let received = web.net_rx_bytes.unwrap_or_else(|| panic!("{web:?}"));
    let sent = web.net_tx_bytes.unwrap_or_else(|| panic!("{web:?}"));
    assert!(
        received >= REQUEST_BYTES as u64,
        "received {received} bytes of a {REQUEST_BYTES}-byte request: {web:?}"
    );
    assert!(
        sent < 64 * 1024,
        "sent {sent} bytes for a 5-byte reply: {web:?}"
    );

    let top = daemon.ctl(&["top", "--no-stream", "-d", "200ms", "web"]);
    assert_eq!(top.status.code(), Some(0), "{}", stderr_of(&top));
    let table = stdout_of(&top);
    let row = table
        .lines()
        .find(|line| line.starts_with("web "))
        .unwrap_or_else(|| panic!("no row for web:\n{table}"));
    // Nothing moves on the idle connection, so top reads the same counts.
    let net_io = format!(
        "{} / {}",
        corral_supervisor::top::format_bytes(received),
        corral_supervisor::top::format_bytes(sent)
    );
    assert!(row.contains(&net_io), "no NET I/O {net_io:?} in:\n{table}");
    drop(client);

    // A new container starts from zero.
    let restart = daemon.ctl(&["restart", "web"]);
    assert_eq!(restart.status.code(), Some(0), "{}", stdout_of(&restart));
    let web = stats_of_web();
    let received = web.net_rx_bytes.unwrap_or_else(|| panic!("{web:?}"));
    assert!(
        received < REQUEST_BYTES as u64,
        "the new container shows {received} bytes received: {web:?}"
    );
}
