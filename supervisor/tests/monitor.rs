//! Tests of the `corral-monitor` binary with plain commands in place of the
//! shim: log files, exit statuses, signal forwarding, settings reload and a
//! full log filesystem. They need no root, except the full filesystem test,
//! which mounts a tmpfs and skips with a SKIP line otherwise.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use corral_supervisor::monitor::{reload_signal, LogSettings};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A python3 program that unblocks every signal and executes `sh -c` on
/// its first argument.
const UNBLOCK_AND_RUN: &str = "import os, signal, sys; \
    signal.pthread_sigmask(signal.SIG_SETMASK, []); \
    os.execv('/bin/sh', ['sh', '-c', sys.argv[1]])";

struct Monitor {
    /// Directory of the settings file, and of the logs unless `log_dir`
    /// names another one.
    dir: tempfile::TempDir,
    log_dir: PathBuf,
    child: Option<Child>,
}

impl Monitor {
    /// Starts the monitor on `script`, run by /bin/sh, with the given limits.
    /// The monitor starts the shim with the forwarded signals blocked, and
    /// the shim takes them from there. The shell does not, so python3
    /// unblocks them before it executes the shell, in the shim's place.
    fn start(script: &str, max_size: u64, keep: u32) -> Monitor {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().to_path_buf();
        let child = monitor_command(dir.path(), max_size, keep)
            .args(["--", "/usr/bin/python3", "-c", UNBLOCK_AND_RUN, script])
            .spawn()
            .unwrap();
        Monitor {
            dir,
            log_dir,
            child: Some(child),
        }
    }

    /// Starts the monitor like [`Monitor::start`] with its logs in
    /// `log_dir`, and its own stderr in `monitor-stderr.log` of its
    /// temporary directory.
    fn start_with_log_dir(log_dir: &Path, script: &str, max_size: u64, keep: u32) -> Monitor {
        let dir = tempfile::tempdir().unwrap();
        let stderr = File::create(dir.path().join("monitor-stderr.log")).unwrap();
        let child = monitor_command_with_log_dir(dir.path(), log_dir, max_size, keep)
            .args(["--", "/bin/sh", "-c", script])
            .stderr(stderr)
            .spawn()
            .unwrap();
        Monitor {
            dir,
            log_dir: log_dir.to_path_buf(),
            child: Some(child),
        }
    }

    /// Returns the path of the log file `name`.
    fn path(&self, name: &str) -> PathBuf {
        self.log_dir.join(name)
    }

    /// Returns what the monitor wrote to its own stderr, when
    /// [`Monitor::start_with_log_dir`] started it.
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("monitor-stderr.log")).unwrap_or_default()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the monitor did not exit within 10s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for(&self, name: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.read(name).contains(text) {
            assert!(
                Instant::now() < deadline,
                "{name} never contained {text:?}: {:?}",
                self.read(name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn output_and_exit_code_pass_through() {
    let mut monitor = Monitor::start("echo out; echo err >&2; exit 3", 4096, 1);
    let status = monitor.wait();
    assert_eq!(status.code(), Some(3));
    assert_eq!(monitor.read("stdout.log"), "out\n");
    assert_eq!(monitor.read("stderr.log"), "err\n");
}

#[test]
fn shim_starts_with_forwarded_signals_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let status = monitor_command(dir.path(), 4096, 1)
        .args(["--", "/bin/grep", "SigBlk", "/proc/self/status"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
    let mask = log
        .trim()
        .strip_prefix("SigBlk:")
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no SigBlk line in {log:?}"));
    let bit = |signal: Signal| 1u64 << (signal as u32 - 1);
    for signal in corral_supervisor::monitor::FORWARDED_SIGNALS {
        assert_ne!(mask & bit(signal), 0, "{signal} is not blocked: {mask:x}");
    }
    assert_eq!(
        mask & bit(Signal::SIGCHLD),
        0,
        "SIGCHLD is blocked: {mask:x}"
    );
}

#[test]
fn signal_ending_passes_through() {
    use std::os::unix::process::ExitStatusExt;

    let mut monitor = Monitor::start("kill -USR2 $$", 4096, 1);
    let status = monitor.wait();
    assert_eq!(status.signal(), Some(libc::SIGUSR2), "{status:?}");
    assert!(!status.core_dumped());
}

#[test]
fn stop_signal_reaches_the_command() {
    let mut monitor = Monitor::start(
        "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        4096,
        1,
    );
    monitor.wait_for("stdout.log", "ready");
    kill(monitor.pid(), Signal::SIGTERM).unwrap();
    let status = monitor.wait();
    assert_eq!(status.code(), Some(7));
    assert!(monitor.read("stdout.log").contains("got-term"));
}

#[test]
fn renamed_log_is_created_again() {
    let mut monitor = Monitor::start(
        "n=0; while :; do n=$((n+1)); echo \"line $n\" >&2; sleep 0.05; done",
        0,
        1,
    );
    monitor.wait_for("stderr.log", "line 2\n");
    std::fs::rename(monitor.path("stderr.log"), monitor.path("moved.log")).unwrap();
    // The monitor compares the path with its open file once a second.
    monitor.wait_for("stderr.log", "line");
    let moved_size = std::fs::metadata(monitor.path("moved.log")).unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::metadata(monitor.path("moved.log")).unwrap().len(),
        moved_size,
        "the monitor still writes into the renamed file"
    );
    kill(monitor.pid(), Signal::SIGTERM).unwrap();
    monitor.wait();
}

#[test]
fn output_rotates_without_loss() {
    let mut monitor = Monitor::start(
        "i=0; while [ $i -lt 2000 ]; do echo \"line $i\"; i=$((i+1)); done",
        1000,
        100,
    );
    assert_eq!(monitor.wait().code(), Some(0));
    let mut numbers = Vec::new();
    let mut files: Vec<String> = (1..=100)
        .rev()
        .map(|number| format!("stdout.log.{number}"))
        .filter(|name| monitor.path(name).exists())
        .collect();
    files.push("stdout.log".to_string());
    assert!(files.len() > 10, "{files:?}");
    for name in &files {
        let content = monitor.read(name);
        assert!(content.len() <= 1000, "{name}: {} bytes", content.len());
        for line in content.lines() {
            numbers.push(line.trim_start_matches("line ").parse::<u32>().unwrap());
        }
    }
    let expected: Vec<u32> = (0..2000).collect();
    assert_eq!(numbers, expected);
}

#[test]
fn reload_signal_applies_new_limits() {
    let mut monitor = Monitor::start(
        "trap 'i=0; while [ $i -lt 100 ]; do echo \"line $i padded\"; i=$((i+1)); done' USR1; \
         echo ready; while :; do sleep 0.05; done",
        100_000,
        5,
    );
    monitor.wait_for("stdout.log", "ready");
    LogSettings {
        max_size: 300,
        keep: 2,
        cpus: None,
    }
    .write(&monitor.dir.path().join("logs.json"))
    .unwrap();
    // SAFETY: kill only sends a signal to the monitor this test started.
    let sent = unsafe { libc::kill(monitor.pid().as_raw(), reload_signal()) };
    assert_eq!(sent, 0);
    // The monitor reads the settings before the burst that the trap writes,
    // as both arrive in this order.
    std::thread::sleep(Duration::from_millis(200));
    let shell = shell_pid(monitor.pid());
    kill(shell, Signal::SIGUSR1).unwrap();
    monitor.wait_for("stdout.log", "line 99 padded");
    for name in ["stdout.log", "stdout.log.1", "stdout.log.2"] {
        let size = std::fs::metadata(monitor.path(name)).unwrap().len();
        assert!(size <= 300, "{name} has {size} bytes");
    }
    assert!(!monitor.path("stdout.log.3").exists());
    kill(monitor.pid(), Signal::SIGTERM).unwrap();
    monitor.wait();
}

#[test]
fn settings_error_is_reported_in_stderr_log() {
    let dir = tempfile::tempdir().unwrap();
    let stderr_log = dir.path().join("stderr.log");
    let output = Command::new(env!("CARGO_BIN_EXE_corral-monitor"))
        .arg("--stdout")
        .arg(dir.path().join("stdout.log"))
        .arg("--stderr")
        .arg(&stderr_log)
        .arg("--settings")
        .arg(dir.path().join("missing.json"))
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    let logged = std::fs::read_to_string(&stderr_log).unwrap();
    assert!(
        logged.starts_with("corral-monitor: failed to read log settings "),
        "{logged}"
    );
    assert!(logged.contains("missing.json"), "{logged}");
}

#[test]
fn json_log_lines_carry_job_and_container() {
    let dir = tempfile::tempdir().unwrap();
    let stderr_log = dir.path().join("stderr.log");
    let output = Command::new(env!("CARGO_BIN_EXE_corral-monitor"))
        .arg("--stdout")
        .arg(dir.path().join("stdout.log"))
        .arg("--stderr")
        .arg(&stderr_log)
        .arg("--settings")
        .arg(dir.path().join("missing.json"))
        .args(["--log-format", "json", "--job", "web"])
        .args(["--container-id", "web-0000abcd"])
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line: serde_json::Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|error| panic!("not a JSON line ({error}): {}", lines[0]));
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["fields"]["job"], "web", "{line}");
    assert_eq!(line["fields"]["container_id"], "web-0000abcd", "{line}");
    let message = line["fields"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("failed to read log settings "),
        "{line}"
    );

    // supervisord reads the reason of a failed start from the stderr log,
    // which keeps the text line.
    let logged = std::fs::read_to_string(&stderr_log).unwrap();
    assert!(
        logged.starts_with("corral-monitor: failed to read log settings "),
        "{logged}"
    );
}

#[test]
fn text_log_lines_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_corral-monitor"))
        .arg("--stdout")
        .arg(dir.path().join("stdout.log"))
        .arg("--stderr")
        .arg(dir.path().join("stderr.log"))
        .arg("--settings")
        .arg(dir.path().join("missing.json"))
        .args(["--job", "web", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("corral-monitor: failed to read log settings "),
        "{stderr}"
    );
}

/// Returns a corral-monitor command that logs to `stdout.log` and
/// `stderr.log` in `dir`, with rotation at `max_size` bytes keeping `keep`
/// files, written to `dir/logs.json`.
fn monitor_command(dir: &Path, max_size: u64, keep: u32) -> Command {
    monitor_command_with_log_dir(dir, dir, max_size, keep)
}

/// Returns a corral-monitor command like [`monitor_command`] that logs to
/// `stdout.log` and `stderr.log` in `log_dir`.
fn monitor_command_with_log_dir(dir: &Path, log_dir: &Path, max_size: u64, keep: u32) -> Command {
    let settings = dir.join("logs.json");
    LogSettings {
        max_size,
        keep,
        cpus: None,
    }
    .write(&settings)
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_corral-monitor"));
    command
        .arg("--stdout")
        .arg(log_dir.join("stdout.log"))
        .arg("--stderr")
        .arg(log_dir.join("stderr.log"))
        .arg("--settings")
        .arg(&settings);
    command
}

/// Runs the monitor with `program` after `--` and `/bin/sh` as the
/// fallback, and returns its exit status, stdout log and stderr log.
fn run_with_fallback(program: &Path) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = monitor_command(dir.path(), 4096, 1)
        .args(["--fallback", "/bin/sh", "--"])
        .arg(program)
        .args(["-c", "echo ran-fallback; exit 4"])
        .output()
        .unwrap();
    let read = |name| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    (output.status, read("stdout.log"), read("stderr.log"))
}

#[test]
fn missing_program_runs_the_fallback() {
    // The descriptor path of a process that has exited, as supervisord's
    // /proc/PID/fd/N path of the runtime is once supervisord died.
    let mut exited = Command::new("/bin/true").spawn().unwrap();
    let pid = exited.id();
    exited.wait().unwrap();
    let program = PathBuf::from(format!("/proc/{pid}/fd/0"));
    assert!(!program.exists(), "{} still exists", program.display());

    let (status, stdout, stderr) = run_with_fallback(&program);
    assert_eq!(status.code(), Some(4), "stderr log: {stderr}");
    assert_eq!(stdout, "ran-fallback\n");
    assert_eq!(stderr, "");
}

#[test]
fn fallback_is_only_for_a_missing_program() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();

    let (status, stdout, stderr) = run_with_fallback(&not_executable);
    assert_eq!(status.code(), Some(125), "stdout log: {stdout}");
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("corral-monitor: failed to run "),
        "{stderr}"
    );
    assert!(stderr.contains("not-executable"), "{stderr}");
}

/// Returns the PID of the shell the monitor started.
fn shell_pid(monitor: Pid) -> Pid {
    let children =
        std::fs::read_to_string(format!("/proc/{monitor}/task/{monitor}/children")).unwrap();
    let pid = children
        .split_whitespace()
        .next()
        .expect("the monitor has a child");
    Pid::from_raw(pid.parse().unwrap())
}

/// A tmpfs mounted on a directory that it creates, unmounted on drop, also
/// when the test panics.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Creates `path` and mounts a tmpfs of `size` bytes there, in the
    /// notation of tmpfs(5) such as `256k`.
    fn mount(path: &Path, size: &str) -> Tmpfs {
        use nix::mount::MsFlags;

        std::fs::create_dir(path).unwrap();
        let options = format!("size={size},mode=0700");
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options.as_str()),
        )
        .unwrap_or_else(|error| panic!("failed to mount a tmpfs on {}: {error}", path.display()));
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A detached mount goes away once a process that outlived the test
        // closes its last file there.
        if let Err(error) = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!(
                "cleanup: failed to unmount {}: {error}",
                self.path.display()
            );
        }
    }
}

/// Returns the byte count and the reason of a line
/// `corral-monitor: dropped N bytes of stdout: REASON`.
fn parse_drop_notice(line: &str) -> Option<(u64, &str)> {
    let rest = line.strip_prefix("corral-monitor: dropped ")?;
    let (count, reason) = rest.split_once(" bytes of stdout: ")?;
    Some((count.parse().ok()?, reason))
}

/// What [`check_numbered_log`] found in the log of a job that writes
/// `line N` with N counting up.
#[derive(Debug, Default)]
struct NumberedLog {
    /// Reasons of the drop notices, in order.
    notice_reasons: Vec<String>,
    /// Sum of the byte counts of the drop notices.
    dropped: u64,
    /// Bytes of the job's output missing from the log.
    missing: u64,
    /// Whole lines directly before a notice. The newline after such a line
    /// may be the monitor's, with the line's own newline dropped, so
    /// `missing` can be short by up to this many bytes.
    whole_before_notice: u64,
    /// Numbered lines after the last notice.
    lines_after_last_notice: u64,
    last_number: u64,
}

/// Checks that each line of `text` is a whole `line N`, one cut short
/// directly before a drop notice, or a drop notice, and that the numbers
/// count up by one except directly after a notice.
fn check_numbered_log(text: &str) -> NumberedLog {
    let lines: Vec<&str> = text.lines().collect();
    let is_notice = |index: usize| {
        lines
            .get(index)
            .is_some_and(|line| parse_drop_notice(line).is_some())
    };
    let context =
        |index: usize| lines[index.saturating_sub(3)..(index + 3).min(lines.len())].join("\n");
    let mut next = lines
        .iter()
        .find_map(|line| line.strip_prefix("line ")?.parse::<u64>().ok())
        .expect("the log has no numbered line");
    let mut found = NumberedLog::default();
    for (index, line) in lines.iter().enumerate() {
        if let Some((bytes, reason)) = parse_drop_notice(line) {
            found.notice_reasons.push(reason.to_string());
            found.dropped += bytes;
            found.lines_after_last_notice = 0;
            continue;
        }
        let expected = format!("line {next}");
        let expected_bytes = expected.len() as u64 + 1;
        if *line == expected {
            if is_notice(index + 1) {
                found.whole_before_notice += 1;
            }
        } else if is_notice(index + 1) && !line.is_empty() && expected.starts_with(line) {
            // The rest of the line was in a write that failed.
            found.missing += expected_bytes - line.len() as u64;
        } else {
            let number = line
                .strip_prefix("line ")
                .and_then(|digits| digits.parse::<u64>().ok())
                .filter(|&number| number > next && index > 0 && is_notice(index - 1));
            let Some(number) = number else {
                panic!(
                    "line {index} of the log is {line:?}, where {expected:?} or a drop notice \
                     belongs:\n{}",
                    context(index)
                );
            };
            found.missing += (next..number)
                .map(|skipped| format!("line {skipped}\n").len() as u64)
                .sum::<u64>();
            next = number;
        }
        found.last_number = next;
        found.lines_after_last_notice += 1;
        next += 1;
    }
    found
}

#[test]
fn full_filesystem_gap_is_marked() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP full_filesystem_gap_is_marked: needs root to mount a tmpfs");
        return;
    }
    // Dropped in reverse order: the monitor ends before the tmpfs is
    // unmounted, and that before the directory is removed.
    let root = tempfile::tempdir().unwrap();
    let logs = Tmpfs::mount(&root.path().join("logs"), "256k");
    let pause = root.path().join("pause");
    let resume = root.path().join("resume");
    // Numbered lines until `pause` exists, then 1000 more once `resume`
    // exists.
    let script = format!(
        "i=0; while [ ! -e '{pause}' ]; do i=$((i+1)); echo \"line $i\"; done; \
         while [ ! -e '{resume}' ]; do sleep 0.05; done; \
         end=$((i+1000)); while [ $i -lt $end ]; do i=$((i+1)); echo \"line $i\"; done",
        pause = pause.display(),
        resume = resume.display(),
    );
    let mut monitor = Monitor::start_with_log_dir(&logs.path, &script, 100 * 1024, 3);

    let deadline = Instant::now() + Duration::from_secs(20);
    while !monitor.stderr().contains("No space left on device") {
        assert!(
            Instant::now() < deadline,
            "the log filesystem did not fill up; monitor stderr: {}",
            monitor.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // More output is dropped while the filesystem stays full.
    std::thread::sleep(Duration::from_millis(300));
    File::create(&pause).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let oldest = (1..=3)
        .rev()
        .map(|number| monitor.path(&format!("stdout.log.{number}")))
        .find(|path| path.exists())
        .expect("no rotated log to delete");
    std::fs::remove_file(&oldest).unwrap();
    File::create(&resume).unwrap();
    let status = monitor.wait();
    assert_eq!(
        status.code(),
        Some(0),
        "monitor stderr: {}",
        monitor.stderr()
    );

    let mut text = String::new();
    for name in ["stdout.log.3", "stdout.log.2", "stdout.log.1", "stdout.log"] {
        let Ok(content) = std::fs::read_to_string(monitor.path(name)) else {
            continue;
        };
        let end = &content[content.len().saturating_sub(100)..];
        assert!(
            content.ends_with('\n'),
            "{name} ends in a cut line: {end:?}"
        );
        text.push_str(&content);
    }
    let found = check_numbered_log(&text);
    eprintln!("{found:?}");
    assert!(
        found
            .notice_reasons
            .iter()
            .any(|reason| reason.contains("No space left on device")),
        "no notice names the full filesystem: {:?}\nmonitor stderr: {}",
        found.notice_reasons,
        monitor.stderr()
    );
    for reason in &found.notice_reasons {
        assert!(
            reason.contains("No space left on device") || reason == "the log writer fell behind",
            "unexpected reason {reason:?}"
        );
    }
    assert!(
        found.dropped >= found.missing,
        "the notices count {} bytes, {} are missing",
        found.dropped,
        found.missing
    );
    assert!(
        found.dropped <= found.missing + found.whole_before_notice,
        "the notices count {} bytes, {} are missing",
        found.dropped,
        found.missing
    );
    assert!(
        found.lines_after_last_notice >= 1000,
        "{} lines after the last notice, expected the 1000 written after the space was freed",
        found.lines_after_last_notice
    );
    assert_eq!(monitor.read("stderr.log"), "");
}
