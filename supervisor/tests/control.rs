//! End-to-end tests of the control channel: supervisorctl writing into a
//! pipe whose reader has gone, and the control socket's limits on slow and
//! idle clients. They run as root and skip with a SKIP line otherwise.

mod harness;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use corral_supervisor::machine::JobState;
use harness::{shell_job, skip, Daemon};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(15);

/// The exit status of supervisorctl after its reader closed standard output.
const EXIT_STDOUT_CLOSED: i32 = 141;

/// A job that logs a numbered line every 200 ms.
fn ticker() -> String {
    shell_job(
        "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done",
        json!({"init": true, "start_seconds": "300ms", "stop": {"timeout": "2s"}}),
    )
}

/// Runs supervisorctl with `args` and a standard output pipe whose read end
/// is closed before supervisorctl starts. Returns its exit status and
/// standard error.
fn ctl_with_closed_stdout(daemon: &Daemon, args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = nix::unistd::pipe().expect("create a pipe");
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run supervisorctl");
    let status = wait_with_deadline(&mut child, Duration::from_secs(10), args);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

/// Waits for `child`, and kills it and fails when it runs past `limit`.
fn wait_with_deadline(child: &mut Child, limit: Duration, args: &[&str]) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("supervisorctl {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn closed_stdout_exits_quietly() {
    if skip("closed_stdout_exits_quietly") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_until(SETTLE, "the job logged a line", |daemon| {
        daemon.job_log("web", "stdout").contains("tick 1")
    });

    let commands: [&[&str]; 11] = [
        &["spec", "web"],
        &["status"],
        &["status", "web"],
        &["status", "--json"],
        &["pid", "web"],
        &["pid"],
        &["reread"],
        &["completions", "bash"],
        &["tail", "web"],
        &["tail", "-f", "web"],
        &["top", "-d", "100ms", "-n", "1"],
    ];
    for args in commands {
        let (status, stderr) = ctl_with_closed_stdout(&daemon, args);
        assert_eq!(
            status.code(),
            Some(EXIT_STDOUT_CLOSED),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn tail_follow_ends_at_next_line() {
    if skip("tail_follow_ends_at_next_line") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);

    // With -n 0 the first write is a line the job logs while tail follows.
    let (status, stderr) = ctl_with_closed_stdout(&daemon, &["tail", "-n", "0", "-f", "web"]);
    assert_eq!(status.code(), Some(EXIT_STDOUT_CLOSED), "{stderr}");
    assert!(!stderr.contains("failed to follow"), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn stop_with_closed_stdout_still_stops() {
    if skip("stop_with_closed_stdout_still_stops") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);

    let (status, stderr) = ctl_with_closed_stdout(&daemon, &["stop", "web"]);
    assert_eq!(status.code(), Some(EXIT_STDOUT_CLOSED), "{stderr}");
    assert_eq!(stderr, "");
    daemon.wait_for_state("web", JobState::Stopped, SETTLE);
}
