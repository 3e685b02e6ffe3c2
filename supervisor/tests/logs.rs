//! End-to-end tests of job logs under load: rotation of a job writing
//! 50 MB/s, and a job flooding its output next to a quiet one. They run as
//! root and skip with a SKIP line otherwise.

mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_supervisor::api::JobView;
use corral_supervisor::machine::JobState;
use harness::{serial, skip, stdout_of, Daemon};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(20);

/// Lines of exactly 100 bytes: a 10-digit number, a space, padding and a
/// newline, written in chunks of 10 000 lines (1 MB) paced to `rate` bytes
/// per second. `done` goes to stderr after the last chunk, then the job
/// sleeps.
fn numbered_writer(chunks: u32, rate: u64) -> String {
    let script = format!(
        "import sys, time\n\
         out = sys.stdout.buffer\n\
         pad = b'x' * 88\n\
         start = time.monotonic()\n\
         n = 0\n\
         for c in range({chunks}):\n\
         \x20   chunk = b''.join(b'%010d %s\\n' % (i, pad) for i in range(n, n + 10000))\n\
         \x20   n += 10000\n\
         \x20   out.write(chunk)\n\
         \x20   out.flush()\n\
         \x20   delay = start + (c + 1) * len(chunk) / {rate} - time.monotonic()\n\
         \x20   if delay > 0:\n\
         \x20       time.sleep(delay)\n\
         sys.stderr.write('done %.3f\\n' % (time.monotonic() - start))\n\
         sys.stderr.flush()\n\
         time.sleep(3600)\n"
    );
    json!({
        "image": "host",
        "command": ["/usr/bin/python3", "-c", script],
        "init": true,
        "start_seconds": "200ms",
        "stop": {"timeout": "2s"},
        "logs": {"max_size": "10M", "keep": 20},
    })
    .to_string()
}

/// Lists the log files of one stream, oldest first: `.N` down to `.1`,
/// then the current file.
fn log_generations(dir: &Path, stream: &str) -> Vec<PathBuf> {
    let current = dir.join(format!("{stream}.log"));
    let mut numbered: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = name.strip_prefix(&format!("{stream}.log."))?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect();
    numbered.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
    let mut files: Vec<PathBuf> = numbered.into_iter().map(|(_, path)| path).collect();
    if current.exists() {
        files.push(current);
    }
    files
}

/// CPU time (user plus system) of process `pid` so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which may contain spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn rotation_at_50_mb_per_second() {
    if skip("rotation_at_50_mb_per_second") {
        return;
    }
    let _serial = serial();
    const CHUNKS: u32 = 150;
    const LINES: u64 = CHUNKS as u64 * 10_000;
    const MAX_SIZE: u64 = 10 * 1024 * 1024;
    let daemon = Daemon::start(&[("flood", &numbered_writer(CHUNKS, 50 * 1024 * 1024))]);
    daemon.wait_for_state("flood", JobState::Running, SETTLE);
    let cpu_before = cpu_time(daemon.pid());
    let started = Instant::now();

    let mut slowest_status = Duration::ZERO;
    while !daemon.job_log("flood", "stderr").contains("done ") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the writer did not finish\n{}",
            daemon.diagnostics()
        );
        let asked = Instant::now();
        let status = daemon.ctl(&["status", "flood"]);
        slowest_status = slowest_status.max(asked.elapsed());
        assert_eq!(status.status.code(), Some(0), "{}", stdout_of(&status));
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    // The last chunk may still sit in a buffer on its way to the file.
    std::thread::sleep(Duration::from_millis(500));
    let daemon_cpu = cpu_time(daemon.pid()) - cpu_before;

    let dir = daemon.log_dir().join("flood");
    let files = log_generations(&dir, "stdout");
    let mut next = 0u64;
    let mut gaps = Vec::new();
    let mut notices = Vec::new();
    let mut oversized = Vec::new();
    for file in &files {
        let content = std::fs::read(file).unwrap();
        let size = content.len() as u64;
        if size > MAX_SIZE {
            oversized.push((file.clone(), size));
        }
        for line in content
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            let text = String::from_utf8_lossy(line);
            if text.starts_with("corral-monitor: ") {
                notices.push(text.into_owned());
                continue;
            }
            // A line cut by dropped output has no number of its own.
            let Some(number) = text.get(..10).and_then(|digits| digits.parse::<u64>().ok()) else {
                gaps.push((file.clone(), next, u64::MAX));
                continue;
            };
            if number != next {
                gaps.push((file.clone(), next, number));
            }
            next = number + 1;
        }
    }
    eprintln!(
        "wrote {LINES} lines in {took:?}: {} files, {} gaps, {} lines lost, daemon CPU {daemon_cpu:?}, \
         slowest status {slowest_status:?}",
        files.len(),
        gaps.len(),
        gaps.iter()
            .map(|(_, expected, found)| found.saturating_sub(*expected))
            .sum::<u64>()
    );
    assert!(
        oversized.is_empty(),
        "files above max_size {MAX_SIZE}: {oversized:?}"
    );
    assert!(
        notices.is_empty(),
        "the monitor dropped output: {notices:?}"
    );
    assert!(
        gaps.is_empty(),
        "lines lost or repeated (file, expected, found): {gaps:?}"
    );
    assert_eq!(next, LINES, "the last line is missing");
    assert!(files.len() <= 21, "{} files kept with keep 20", files.len());
    assert!(
        daemon_cpu < Duration::from_millis(500),
        "supervisord used {daemon_cpu:?} of CPU while the job wrote 150 MB"
    );
    assert!(
        slowest_status < Duration::from_millis(300),
        "status took {slowest_status:?} during the flood"
    );
}

/// Children of process `pid`, from every thread's `children` file.
fn children_of(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(
            list.split_whitespace()
                .map(|child| child.parse::<i32>().unwrap()),
        );
    }
    children
}

#[test]
fn flood_does_not_slow_other_jobs() {
    if skip("flood_does_not_slow_other_jobs") {
        return;
    }
    let _serial = serial();
    let flood = json!({
        "image": "host",
        "command": ["/usr/bin/yes", "a line of a job that writes without pause"],
        "init": true,
        "start_seconds": "200ms",
        "stop": {"timeout": "2s"},
        "logs": {"max_size": "1M", "keep": 1},
    })
    .to_string();
    let ticker = harness::shell_job(
        "while :; do date +%s.%N; sleep 0.1; done",
        json!({"start_seconds": "200ms", "stop": {"timeout": "2s"}, "init": true}),
    );
    let daemon = Daemon::start(&[("flood", &flood), ("ticker", &ticker)]);
    daemon.wait_for_state("flood", JobState::Running, SETTLE);
    daemon.wait_for_state("ticker", JobState::Running, SETTLE);
    let cpu_before = cpu_time(daemon.pid());
    let started = Instant::now();
    let mut slowest_status = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(4) {
        let asked = Instant::now();
        let status = daemon.ctl(&["status"]);
        slowest_status = slowest_status.max(asked.elapsed());
        assert_eq!(status.status.code(), Some(0), "{}", stdout_of(&status));
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon_cpu = cpu_time(daemon.pid()) - cpu_before;

    let dir = daemon.log_dir().join("flood");
    let files = log_generations(&dir, "stdout");
    let written: u64 = files
        .iter()
        .map(|file| std::fs::metadata(file).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    eprintln!(
        "daemon CPU {daemon_cpu:?} in 4s, slowest status {slowest_status:?}, flood files {files:?}"
    );
    assert!(files.len() <= 2, "keep 1 kept {files:?}");
    for file in &files {
        let size = std::fs::metadata(file).map(|meta| meta.len()).unwrap_or(0);
        assert!(size <= 1024 * 1024, "{} has {size} bytes", file.display());
    }
    assert!(written > 0, "the flood wrote nothing");
    assert!(
        daemon_cpu < Duration::from_millis(500),
        "supervisord used {daemon_cpu:?} of CPU while a job flooded its log"
    );
    assert!(
        slowest_status < Duration::from_millis(300),
        "status took {slowest_status:?} during the flood"
    );

    let ticks: Vec<f64> = daemon
        .job_log("ticker", "stdout")
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect();
    let longest_gap = ticks
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f64::max);
    assert!(
        ticks.len() >= 20,
        "the ticker wrote {} lines in 4s",
        ticks.len()
    );
    assert!(
        longest_gap < 1.0,
        "the ticker paused {longest_gap:.3}s while the other job flooded"
    );

    for monitor in children_of(daemon.pid()) {
        for entry in std::fs::read_dir(format!("/proc/{monitor}/fd"))
            .unwrap()
            .flatten()
        {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            assert!(
                !target.to_string_lossy().ends_with("(deleted)"),
                "monitor {monitor} holds a deleted file open: {}",
                target.display()
            );
        }
    }
}

/// Returns the PID of the monitor of the job's container, from its shim
/// record.
fn monitor_pid(daemon: &Daemon, view: &JobView) -> i32 {
    let record = daemon
        .run_dir()
        .join("shims")
        .join(format!("{}.json", view.container_id.clone().unwrap()));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    record["monitor_pid"].as_i64().unwrap() as i32
}

/// Returns the targets of the descriptors of `pid` that name a deleted file.
fn deleted_open_files(pid: i32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.ends_with(" (deleted)"))
        .collect()
}

#[test]
fn deleted_log_dir_is_created_again() {
    if skip("deleted_log_dir_is_created_again") {
        return;
    }
    // Writes a numbered line to stdout every 100 ms and nothing to stderr
    // after its first line.
    let ticker = harness::shell_job(
        "echo started >&2; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        json!({"start_seconds": "200ms", "stop": {"timeout": "2s"}}),
    );
    let daemon = Daemon::start(&[("ticker", &ticker)]);
    let view = daemon.wait_for_state("ticker", JobState::Running, SETTLE);
    let dir = daemon.log_dir().join("ticker");
    daemon.wait_until(SETTLE, "the job wrote to both logs", |daemon| {
        daemon.job_log("ticker", "stdout").contains("tick 1")
            && daemon.job_log("ticker", "stderr").contains("started")
    });
    let monitor = monitor_pid(&daemon, &view);

    std::fs::remove_dir_all(&dir).unwrap();
    daemon.wait_until(
        Duration::from_secs(5),
        "the monitor writes stdout.log again",
        |daemon| daemon.job_log("ticker", "stdout").contains("tick"),
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    // The monitor checks once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !deleted_open_files(monitor).is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(deleted_open_files(monitor), Vec::<String>::new());
    assert!(
        !daemon.daemon_log().contains("No such file or directory"),
        "{}",
        daemon.diagnostics()
    );
}

/// Returns the numbers of the `tick N` lines in `text`.
fn tick_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("tick ")?.parse().ok())
        .collect()
}

#[test]
fn tail_follow_survives_deleted_log_dir() {
    if skip("tail_follow_survives_deleted_log_dir") {
        return;
    }
    let ticker = harness::shell_job(
        "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "2s"}}),
    );
    let daemon = Daemon::start(&[("ticker", &ticker)]);
    daemon.wait_for_state("ticker", JobState::Running, SETTLE);
    daemon.wait_until(SETTLE, "the job wrote a line", |daemon| {
        daemon.job_log("ticker", "stdout").contains("tick 0")
    });

    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(["tail", "-f", "-n", "1", "ticker"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let printed = std::sync::Arc::clone(&printed);
        let stdout = follower.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut printed = printed.lock().unwrap();
                printed.push_str(&line);
                printed.push('\n');
            }
        })
    };
    let wait_for_printed = |count: usize, timeout: Duration| {
        let deadline = Instant::now() + timeout;
        while tick_numbers(&printed.lock().unwrap()).len() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for_printed(3, SETTLE);
    assert!(
        tick_numbers(&printed.lock().unwrap()).len() >= 3,
        "tail -f printed too little before the deletion: {:?}",
        printed.lock().unwrap()
    );

    let dir = daemon.log_dir().join("ticker");
    std::fs::remove_dir_all(&dir).unwrap();
    daemon.wait_until(
        Duration::from_secs(5),
        "the monitor writes stdout.log again",
        |daemon| tick_numbers(&daemon.job_log("ticker", "stdout")).len() >= 3,
    );
    let recreated = tick_numbers(&daemon.job_log("ticker", "stdout"));
    let last_recreated = *recreated.last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !tick_numbers(&printed.lock().unwrap()).contains(&last_recreated)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    follower.kill().unwrap();
    let status = follower.wait().unwrap();
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut stderr).unwrap();

    let printed = printed.lock().unwrap().clone();
    let numbers = tick_numbers(&printed);
    assert!(
        numbers.contains(&last_recreated),
        "tail -f stopped at the deletion: printed {printed:?}, the new stdout.log has up to \
         tick {last_recreated}; exit {status:?}, stderr {stderr:?}"
    );
    assert_eq!(stderr, "");
    for pair in numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "lines skipped or repeated: {printed:?}"
        );
    }
}

#[test]
fn output_copying_stays_within_cpu_limit() {
    if skip("output_copying_stays_within_cpu_limit") {
        return;
    }
    let _serial = serial();
    const CPUS: f64 = 0.2;
    let flood = json!({
        "image": "host",
        "command": ["/usr/bin/yes", "a line of a job that writes without pause"],
        "init": true,
        "start_seconds": "200ms",
        "stop": {"timeout": "2s"},
        "resources": {"cpus": CPUS},
        "logs": {"max_size": "1M", "keep": 1},
    })
    .to_string();
    let daemon = Daemon::start(&[("flood", &flood)]);
    let view = daemon.wait_for_state("flood", JobState::Running, SETTLE);
    let monitor = monitor_pid(&daemon, &view);

    let window = Duration::from_secs(4);
    let before = cpu_time(monitor);
    std::thread::sleep(window);
    let used = cpu_time(monitor) - before;
    let written: u64 = log_generations(&daemon.log_dir().join("flood"), "stdout")
        .iter()
        .map(|file| std::fs::metadata(file).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    eprintln!("the monitor used {used:?} of CPU in {window:?}; {written} bytes in the logs");
    assert!(written > 0, "the flood wrote nothing");
    // The budget allows CPUS per second plus a burst of 100 ms; the rest
    // covers the clock tick of /proc's counters.
    let allowed = window.mul_f64(CPUS * 1.25) + Duration::from_millis(150);
    assert!(
        used <= allowed,
        "the monitor used {used:?} of CPU in {window:?}, above the job's limit of {CPUS} CPUs"
    );
}

/// Returns the number of the last whole `line N` in `path`, or 0.
fn last_line_number(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("line ")?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn max_keep_rotates_and_stops() {
    if skip("max_keep_rotates_and_stops") {
        return;
    }
    let _serial = serial();
    let counter = |keep: u64| {
        harness::shell_job(
            "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.001; done",
            json!({
                "init": true,
                "start_seconds": "200ms",
                "stop": {"timeout": "2s"},
                "logs": {"max_size": "4K", "keep": keep},
            }),
        )
    };
    let job = counter(u64::from(corral_config::MAX_LOG_KEEP));
    let too_many = counter(u64::from(u32::MAX));
    let daemon = Daemon::start(&[("counter", &job), ("too-many", &too_many)]);
    let rejected = daemon.wait_for_state("too-many", JobState::Invalid, SETTLE);
    assert!(
        rejected.description.contains("above the maximum of 1000"),
        "{}",
        rejected.description
    );
    daemon.wait_for_state("counter", JobState::Running, SETTLE);
    let dir = daemon.log_dir().join("counter");

    // Output that keeps flowing into new files after five rotations shows
    // that rotations with the largest `keep` do not hold up the writer.
    daemon.wait_until(Duration::from_secs(30), "five rotations", |_| {
        dir.join("stdout.log.5").exists()
    });
    let rotated = last_line_number(&dir.join("stdout.log.1"));
    daemon.wait_until(
        Duration::from_secs(10),
        "output after five rotations",
        |_| last_line_number(&dir.join("stdout.log")) > rotated,
    );
    let files = log_generations(&dir, "stdout");
    let mut previous = 0;
    for file in &files {
        let first = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("line ")?.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            first > previous,
            "{} starts at line {first}, after line {previous}",
            file.display()
        );
        previous = last_line_number(file);
    }

    let args = ["stop", "counter"];
    let started = Instant::now();
    let mut stop = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(args)
        .spawn()
        .unwrap();
    let deadline = Duration::from_secs(10);
    let status = loop {
        if let Some(status) = stop.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = stop.kill();
            let _ = stop.wait();
            panic!(
                "supervisorctl {args:?} still ran after {deadline:?}\n{}",
                daemon.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        matches!(status.code(), Some(0 | 5)),
        "stop exited {status:?}"
    );
    assert_eq!(
        daemon.job("counter").unwrap().process_state,
        JobState::Stopped
    );
}
