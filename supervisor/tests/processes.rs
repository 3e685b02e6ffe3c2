//! End-to-end tests of what happens to a job's processes: zombie reaping
//! and signal forwarding with `init`, stops of jobs whose children escape
//! into new sessions, and the exit reasons that status reports. They run
//! as root and skip with a SKIP line otherwise.

mod harness;

use std::time::Duration;

use corral_supervisor::machine::JobState;
use harness::{shell_job, skip, stdout_of, Daemon};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(20);

/// Fields of `/proc/PID/stat` after the command name: state, ppid, ...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    Some(after_name.split(' ').map(str::to_string).collect())
}

/// Lists every process on the host as (pid, state, ppid).
fn host_processes() -> Vec<(i32, char, i32)> {
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        let state = fields[0].chars().next().unwrap_or('?');
        let parent = fields[1].parse().unwrap_or(0);
        processes.push((pid, state, parent));
    }
    processes
}

/// Zombies whose parent is `parent`.
fn zombies_of(parent: i32) -> Vec<i32> {
    host_processes()
        .into_iter()
        .filter(|(_, state, ppid)| *state == 'Z' && *ppid == parent)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Processes on the host whose command line is exactly `sleep MARKER`.
fn sleepers(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let arguments: Vec<&[u8]> = cmdline
            .split(|&byte| byte == 0)
            .filter(|argument| !argument.is_empty())
            .collect();
        let is_sleep = arguments
            .first()
            .is_some_and(|program| program.ends_with(b"sleep"));
        if is_sleep && arguments.get(1) == Some(&marker.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// Returns a `sleep` duration no other process on the host uses, so the
/// test can find its own sleepers by command line.
fn unique_marker(index: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("3600.{}{index}{nanos:09}", std::process::id())
}

#[test]
fn init_reaps_zombies_and_forwards_signals() {
    if skip("init_reaps_zombies_and_forwards_signals") {
        return;
    }
    // Each subshell forks a sleep and exits at once, so the sleeps become
    // orphans of the container's PID 1. Without init that is `sleep 300`,
    // which never waits for children.
    let orphans = "for i in 1 2 3 4 5; do (sleep 0.5 &); done";
    let reaped = shell_job(
        &format!("{orphans}; trap 'echo got-hup' HUP; echo ready; while :; do sleep 0.2; done"),
        json!({"init": true, "start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    let unreaped = shell_job(
        &format!("{orphans}; exec sleep 300"),
        json!({"start_seconds": "300ms", "stop": {"timeout": "1s"}}),
    );
    let daemon = Daemon::start(&[("reaped", &reaped), ("unreaped", &unreaped)]);
    let with_init = daemon.wait_for_state("reaped", JobState::Running, SETTLE);
    let without_init = daemon.wait_for_state("unreaped", JobState::Running, SETTLE);
    let init_pid = with_init.pid.unwrap();
    let plain_pid = without_init.pid.unwrap();
    std::thread::sleep(Duration::from_secs(2));

    let unreaped_zombies = zombies_of(plain_pid);
    assert_eq!(
        unreaped_zombies.len(),
        5,
        "without init the orphans should stay zombies: {unreaped_zombies:?}"
    );
    let reaped_zombies = zombies_of(init_pid);
    assert!(
        reaped_zombies.is_empty(),
        "init left zombies: {reaped_zombies:?}\n{}",
        daemon.diagnostics()
    );

    daemon.wait_until(SETTLE, "the job set its trap", |daemon| {
        daemon.job_log("reaped", "stdout").contains("ready")
    });
    let signal = daemon.ctl(&["signal", "HUP", "reaped"]);
    assert_eq!(signal.status.code(), Some(0), "{}", stdout_of(&signal));
    daemon.wait_until(SETTLE, "init forwarded SIGHUP to the shell", |daemon| {
        daemon.job_log("reaped", "stdout").contains("got-hup")
    });

    // The shell has no SIGTERM trap, so the forwarded stop signal ends it
    // at once and init exits with its status.
    let started = std::time::Instant::now();
    let stop = daemon.ctl(&["stop", "reaped"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}, so SIGTERM did not reach the shell",
        started.elapsed()
    );
    let stopped = daemon.job("reaped").unwrap();
    assert_eq!(stopped.exit_status, Some(143), "{stopped:#?}");
    assert!(
        stopped.description.starts_with("stopped at "),
        "{}",
        stopped.description
    );
}

#[test]
fn stop_leaves_no_escaped_process() {
    if skip("stop_leaves_no_escaped_process") {
        return;
    }
    // Each job starts three sleepers that leave its process tree: two in a
    // new session through a shell that exits, one in a double fork.
    let escape = |marker: &str| {
        format!(
            "setsid sh -c 'sleep {marker} & sleep {marker} &'; (setsid sleep {marker} &); \
             echo ready"
        )
    };
    let markers: Vec<String> = (0..3).map(unique_marker).collect();
    let polite = shell_job(
        &format!(
            "{}; trap 'exit 0' TERM; while :; do sleep 0.1; done",
            escape(&markers[0])
        ),
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    // PID 1 without a handler ignores SIGTERM, so this stop needs SIGKILL.
    let stubborn = shell_job(
        &format!("{}; exec sleep 300", escape(&markers[1])),
        json!({"start_seconds": "300ms", "stop": {"timeout": "1s"}}),
    );
    let with_init = shell_job(
        &format!("{}; while :; do sleep 0.1; done", escape(&markers[2])),
        json!({"init": true, "start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    let names = ["polite", "stubborn", "with-init"];
    let daemon = Daemon::start(&[
        (names[0], &polite),
        (names[1], &stubborn),
        (names[2], &with_init),
    ]);
    for (name, marker) in names.iter().zip(&markers) {
        daemon.wait_for_state(name, JobState::Running, SETTLE);
        daemon.wait_until(SETTLE, "the job started its sleepers", |daemon| {
            daemon.job_log(name, "stdout").contains("ready")
        });
        let found = sleepers(marker);
        assert_eq!(found.len(), 3, "{name}: sleepers {found:?} before the stop");
    }

    for (name, marker) in names.iter().zip(&markers) {
        let stop = daemon.ctl(&["stop", name]);
        let code = if *name == "stubborn" { 5 } else { 0 };
        assert_eq!(
            stop.status.code(),
            Some(code),
            "{name}: {}",
            stdout_of(&stop)
        );
        let left = sleepers(marker);
        assert!(
            left.is_empty(),
            "{name}: processes {left:?} outlived the stop\n{}",
            daemon.diagnostics()
        );
        assert_eq!(daemon.job(name).unwrap().state, JobState::Stopped);
    }
    let stubborn = daemon.job("stubborn").unwrap();
    assert!(
        stubborn
            .description
            .starts_with("stopped by SIGKILL after 1s timeout"),
        "{}",
        stubborn.description
    );
}

#[test]
fn exit_reasons_in_status() {
    if skip("exit_reasons_in_status") {
        return;
    }
    let never = |extra: serde_json::Value| {
        let mut fields = json!({"start_seconds": "0s", "restart": {"policy": "never"}});
        if let (Some(fields), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
            fields.extend(extra.clone());
        }
        fields
    };
    let code = shell_job("exit 3", never(json!({})));
    // A real fault kills even a namespace's PID 1, which other signals from
    // inside its namespace cannot.
    let segfault = json!({"image": "host", "start_seconds": "0s", "restart": {"policy": "never"},
                          "command": ["/usr/bin/python3", "-c",
                                      "import ctypes; ctypes.string_at(0)"]})
    .to_string();
    let killed = shell_job(
        "echo ready; exec sleep 300",
        never(json!({"start_seconds": "300ms"})),
    );
    let hog = shell_job(
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        never(json!({"resources": {"memory": "32M", "memory_swap": "32M"}})),
    );
    let stubborn = json!({"image": "host", "command": ["/bin/sleep", "300"],
                          "start_seconds": "300ms", "stop": {"timeout": "1s"}})
    .to_string();
    let daemon = Daemon::start(&[
        ("code", &code),
        ("segfault", &segfault),
        ("killed", &killed),
        ("hog", &hog),
        ("stubborn", &stubborn),
    ]);

    daemon.wait_for_state("killed", JobState::Running, SETTLE);
    let kill = daemon.ctl(&["signal", "KILL", "killed"]);
    assert_eq!(kill.status.code(), Some(0), "{}", stdout_of(&kill));
    daemon.wait_for_state("stubborn", JobState::Running, SETTLE);
    let stop = daemon.ctl(&["stop", "stubborn"]);
    assert_eq!(stop.status.code(), Some(5), "{}", stdout_of(&stop));

    // (job, state, exit status, signal, OOM kill, start of the description)
    let cases = [
        ("code", JobState::Exited, 3, None, false, "exited 3 at "),
        (
            "segfault",
            JobState::Exited,
            139,
            Some("SIGSEGV"),
            false,
            "exited 139 (SIGSEGV) at ",
        ),
        (
            "killed",
            JobState::Exited,
            137,
            Some("SIGKILL"),
            false,
            "exited 137 (SIGKILL) at ",
        ),
        (
            "hog",
            JobState::Exited,
            137,
            Some("SIGKILL"),
            true,
            "exited 137 (OOM killed) at ",
        ),
        (
            "stubborn",
            JobState::Stopped,
            137,
            Some("SIGKILL"),
            false,
            "stopped by SIGKILL after 1s timeout at ",
        ),
    ];
    let status = || stdout_of(&daemon.ctl(&["status"]));
    for (name, state, exit_status, signal, oom_killed, description) in cases {
        let view = daemon.wait_for_state(name, state, Duration::from_secs(60));
        assert_eq!(view.exit_status, Some(exit_status), "{name}: {view:#?}");
        assert_eq!(view.signal.as_deref(), signal, "{name}: {view:#?}");
        assert_eq!(view.oom_killed, oom_killed, "{name}: {view:#?}");
        assert!(
            view.description.starts_with(description),
            "{name}: {:?} does not start with {description:?}",
            view.description
        );
        let table = status();
        let line = table
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no status line for {name}:\n{table}"));
        let state_and_description = format!("{:<10}{description}", state.as_str());
        assert!(line.contains(&state_and_description), "{name}: {line}");
    }
}

/// Returns the home directory of `user` in the host's /etc/passwd, which
/// the `host` image shows the job.
fn host_home(user: &str) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&user))
        .and_then(|fields| fields.get(5).map(|home| home.to_string()))
        .unwrap_or_else(|| panic!("no {user} in /etc/passwd"))
}

#[test]
fn env_has_default_path_and_home() {
    if skip("env_has_default_path_and_home") {
        return;
    }
    let job = |extra: serde_json::Value| {
        let mut job = json!({"image": "host", "command": ["/usr/bin/env"],
            "restart": {"policy": "never"}, "start_seconds": 0});
        for (key, value) in extra.as_object().unwrap() {
            job[key] = value.clone();
        }
        job.to_string()
    };
    let plain = job(json!({}));
    let nobody = job(json!({"user": "nobody"}));
    let own = job(json!({"env": {"PATH": "/opt/bin:/usr/bin", "HOME": "/data"}}));
    let daemon = Daemon::start(&[("plain", &plain), ("nobody", &nobody), ("own", &own)]);

    let default_path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let cases = [
        (
            "plain",
            default_path.to_string(),
            format!("HOME={}", host_home("root")),
        ),
        (
            "nobody",
            default_path.to_string(),
            format!("HOME={}", host_home("nobody")),
        ),
        (
            "own",
            "PATH=/opt/bin:/usr/bin".to_string(),
            "HOME=/data".to_string(),
        ),
    ];
    for (name, path, home) in cases {
        let view = daemon.wait_for_state(name, JobState::Exited, SETTLE);
        assert_eq!(view.exit_status, Some(0), "{name}: {view:#?}");
        let log = daemon.job_log(name, "stdout");
        let lines: Vec<&str> = log.lines().collect();
        assert!(lines.contains(&path.as_str()), "{name}: {log:?}");
        assert!(lines.contains(&home.as_str()), "{name}: {log:?}");
        let paths = lines
            .iter()
            .filter(|line| line.starts_with("PATH="))
            .count();
        assert_eq!(paths, 1, "{name}: {log:?}");
        let homes = lines
            .iter()
            .filter(|line| line.starts_with("HOME="))
            .count();
        assert_eq!(homes, 1, "{name}: {log:?}");
    }
}
