//! End-to-end tests of job file reloads: supervisord notices created,
//! edited, renamed, half-written, invalid and deleted job files and a
//! replaced jobs directory by itself, applies a burst of edits once, and
//! prints specs that `corral run` runs.
//! They run as root and skip with a SKIP line otherwise, one at a time,
//! because the timing of reloads is part of what they check.

mod harness;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use corral_supervisor::api::JobView;
use corral_supervisor::machine::JobState;
use harness::{runtime_binary, serial, shell_job, skip, stderr_of, stdout_of, Daemon};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(20);

/// How soon after a change the job list must show it: the watcher waits
/// 200 ms for quiet, and supervisord promises one second.
const NOTICED: Duration = Duration::from_secs(1);

/// Returns a job whose command prints `version` and then waits for SIGTERM.
fn versioned(version: &str) -> String {
    shell_job(
        &format!("echo version {version}; trap 'exit 0' TERM; while :; do sleep 0.1; done"),
        json!({"start_seconds": "200ms", "stop": {"timeout": "5s"}}),
    )
}

/// Waits until `condition` holds for the job's view, or fails.
fn wait_for_view(
    daemon: &Daemon,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&JobView) -> bool,
) -> JobView {
    daemon.wait_until(timeout, what, |daemon| {
        daemon.job(name).is_ok_and(|view| condition(&view))
    });
    daemon.job(name).unwrap()
}

/// Counts the reloads that the jobs directory watcher started.
fn inotify_reloads(daemon: &Daemon) -> usize {
    daemon
        .daemon_log()
        .lines()
        .filter(|line| line.contains("reloading job files") && line.contains("origin=\"inotify\""))
        .count()
}

#[test]
fn reload_on_create_edit_rename_delete() {
    if skip("reload_on_create_edit_rename_delete") {
        return;
    }
    let _serial = serial();
    let daemon = Daemon::start(&[]);
    let file = daemon.jobs_dir().join("web.json");

    // Created in place, the way `cat > web.json` writes it.
    let written = Instant::now();
    std::fs::write(&file, versioned("1")).unwrap();
    wait_for_view(&daemon, "web", NOTICED, "the new file is loaded", |_| true);
    let first = daemon.wait_for_state("web", JobState::Running, SETTLE);
    eprintln!(
        "created: job RUNNING {:?} after the write",
        written.elapsed()
    );

    // Edited in place: truncated and rewritten.
    let edited = Instant::now();
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    handle.write_all(versioned("2").as_bytes()).unwrap();
    drop(handle);
    let second = wait_for_view(
        &daemon,
        "web",
        NOTICED + SETTLE,
        "the edit restarts the job",
        |view| view.state == JobState::Running && view.container_id != first.container_id,
    );
    eprintln!(
        "edited: new container RUNNING {:?} after the edit",
        edited.elapsed()
    );
    daemon.wait_until(SETTLE, "version 2 runs", |daemon| {
        daemon.job_log("web", "stdout").contains("version 2")
    });

    // Renamed into place, as careful editors and configuration tools do.
    let temporary = daemon.jobs_dir().join(".web.json.swp");
    std::fs::write(&temporary, versioned("3")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        daemon.job("web").unwrap().container_id,
        second.container_id,
        "an editor's swap file caused a reload"
    );
    std::fs::rename(&temporary, &file).unwrap();
    let third = wait_for_view(
        &daemon,
        "web",
        NOTICED + SETTLE,
        "the rename restarts the job",
        |view| view.state == JobState::Running && view.container_id != second.container_id,
    );
    daemon.wait_until(SETTLE, "version 3 runs", |daemon| {
        daemon.job_log("web", "stdout").contains("version 3")
    });

    // Half-written: nothing changes until the writer closes the file.
    let mut half = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    let body = versioned("4");
    let (head, tail) = body.split_at(body.len() / 2);
    half.write_all(head.as_bytes()).unwrap();
    half.flush().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let during = daemon.job("web").unwrap();
    assert_eq!(
        during.state,
        JobState::Running,
        "a half-written file was loaded: {during:#?}"
    );
    assert_eq!(during.container_id, third.container_id);
    half.write_all(tail.as_bytes()).unwrap();
    drop(half);
    wait_for_view(
        &daemon,
        "web",
        NOTICED + SETTLE,
        "the finished write restarts the job",
        |view| view.state == JobState::Running && view.container_id != third.container_id,
    );

    // Deleted: the job stops and disappears.
    let pid = daemon.job("web").unwrap().pid.unwrap();
    std::fs::remove_file(&file).unwrap();
    daemon.wait_until(NOTICED + SETTLE, "the deleted job is removed", |daemon| {
        daemon.job("web").is_err()
    });
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the removed job's process {pid} still runs"
    );
}

#[test]
fn edit_keeps_stopped_and_exited_jobs() {
    if skip("edit_keeps_stopped_and_exited_jobs") {
        return;
    }
    let _serial = serial();
    let once = |version: &str| {
        shell_job(
            &format!("echo version {version}"),
            json!({"start_seconds": "0s", "restart": {"policy": "never"}}),
        )
    };
    let daemon = Daemon::start(&[("stopped", &versioned("1")), ("done", &once("1"))]);
    daemon.wait_for_state("stopped", JobState::Running, SETTLE);
    daemon.wait_for_state("done", JobState::Exited, SETTLE);
    let stop = daemon.ctl(&["stop", "stopped"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));

    let reloads = inotify_reloads(&daemon);
    daemon.write_job("stopped", &versioned("2"));
    daemon.write_job("done", &once("2"));
    daemon.wait_until(NOTICED + NOTICED, "the edits are reloaded", |daemon| {
        inotify_reloads(daemon) > reloads
            && daemon
                .daemon_log()
                .matches("the new spec applies at the next start")
                .count()
                == 2
    });
    // Give a start that should not happen the time to show.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        daemon.job("stopped").unwrap().state,
        JobState::Stopped,
        "{}",
        daemon.diagnostics()
    );
    assert_eq!(
        daemon.job("done").unwrap().state,
        JobState::Exited,
        "{}",
        daemon.diagnostics()
    );

    // Turning autostart on starts a job that never ran.
    let later = |autostart: bool| {
        shell_job(
            "echo later; trap 'exit 0' TERM; while :; do sleep 0.1; done",
            json!({"start_seconds": "200ms", "autostart": autostart}),
        )
    };
    daemon.write_job("later", &later(false));
    wait_for_view(
        &daemon,
        "later",
        NOTICED + NOTICED,
        "the job is added",
        |view| view.state == JobState::Stopped,
    );
    daemon.write_job("later", &later(true));
    daemon.wait_for_state("later", JobState::Running, SETTLE);

    // The next start runs the new spec.
    let start = daemon.ctl(&["start", "stopped"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    daemon.wait_until(SETTLE, "version 2 runs", |daemon| {
        daemon.job_log("stopped", "stdout").contains("version 2")
    });
}

#[test]
fn burst_of_edits_reloads_once() {
    if skip("burst_of_edits_reloads_once") {
        return;
    }
    let _serial = serial();
    let edit = |round: u32| {
        shell_job(
            "echo round $ROUND; trap 'exit 0' TERM; while :; do sleep 0.1; done",
            json!({"env": {"ROUND": round.to_string()}, "start_seconds": "200ms",
                   "stop": {"timeout": "5s"}}),
        )
    };
    let daemon = Daemon::start(&[("web", &edit(0))]);
    let before = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let reloads_before = inotify_reloads(&daemon);

    let burst = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut last_write = burst;
    for round in 1..=100 {
        daemon.write_job("web", &edit(round));
        longest_gap = longest_gap.max(last_write.elapsed());
        last_write = Instant::now();
    }
    let burst_took = burst.elapsed();
    let after = wait_for_view(&daemon, "web", SETTLE, "the job restarts once", |view| {
        view.state == JobState::Running && view.container_id != before.container_id
    });
    // Another reload, had one been scheduled, would run well within this.
    std::thread::sleep(Duration::from_secs(1));

    // The watcher reloads after 200 ms without changes, or 800 ms after
    // the first change, so a slower burst may rightly cause two reloads.
    assert!(
        longest_gap < Duration::from_millis(150) && burst_took < Duration::from_millis(700),
        "the test wrote too slowly to expect one reload: {burst_took:?} in all, \
         {longest_gap:?} between two writes"
    );
    assert_eq!(
        inotify_reloads(&daemon) - reloads_before,
        1,
        "100 edits caused several reloads\n{}",
        daemon.diagnostics()
    );
    let starts = daemon
        .daemon_log()
        .lines()
        .filter(|line| line.contains("started job") && line.contains("job=web"))
        .count();
    assert_eq!(starts, 2, "the job was restarted more than once");
    assert_eq!(daemon.job("web").unwrap().container_id, after.container_id);
    daemon.wait_until(SETTLE, "the last edit runs", |daemon| {
        daemon.job_log("web", "stdout").contains("round 100")
    });
    let log = daemon.job_log("web", "stdout");
    assert!(
        !log.contains("round 99\n"),
        "an intermediate edit ran: {log}"
    );
    let spec: serde_json::Value =
        serde_json::from_slice(&daemon.ctl(&["spec", "web"]).stdout).unwrap();
    let env = spec["process"]["env"].as_array().unwrap();
    assert!(env.iter().any(|entry| entry == "ROUND=100"), "{env:?}");
}

#[test]
fn invalid_edit_keeps_previous_version() {
    if skip("invalid_edit_keeps_previous_version") {
        return;
    }
    let _serial = serial();
    let daemon = Daemon::start(&[("web", &versioned("1")), ("other", &versioned("other"))]);
    let valid = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let other = daemon.wait_for_state("other", JobState::Running, SETTLE);

    let broken = "{\n  \"image\": \"host\",\n  \"command\": [\"/bin/sleep\", \"1\"],\n  \"resources\": {\"cpus\": -1}\n}\n";
    daemon.write_job("web", broken);
    let invalid = wait_for_view(&daemon, "web", NOTICED, "the job shows INVALID", |view| {
        view.state == JobState::Invalid
    });
    assert_eq!(invalid.process_state, JobState::Running);
    assert_eq!(invalid.pid, valid.pid, "the previous version was restarted");
    assert_eq!(invalid.container_id, valid.container_id);
    let error = invalid.error.clone().unwrap();
    assert_eq!(error.file, daemon.jobs_dir().join("web.json"));
    assert_eq!(error.line, Some(4));
    assert_eq!(error.field.as_deref(), Some("resources.cpus"));

    let status = daemon.ctl(&["status", "web"]);
    assert_eq!(status.status.code(), Some(3));
    let line = stdout_of(&status);
    assert!(line.contains("INVALID"), "{line}");
    assert!(
        line.contains(&format!(
            "{}:4:",
            daemon.jobs_dir().join("web.json").display()
        )),
        "{line}"
    );
    assert!(line.contains("previous version RUNNING"), "{line}");
    // The usage of the running previous version shows the same state.
    let stats: serde_json::Value = daemon.client().get("/v1/stats").unwrap();
    let web = stats["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["name"] == "web")
        .unwrap();
    assert_eq!(web["state"], "INVALID", "{stats}");
    assert!(web["cpu_usage_ns"].is_u64(), "{stats}");
    // reread and update name the invalid file also after the watcher
    // showed it, and fail.
    for command in ["reread", "update"] {
        let output = daemon.ctl(&[command]);
        assert_eq!(output.status.code(), Some(1), "{}", stdout_of(&output));
        let text = stdout_of(&output);
        assert!(text.starts_with("web: invalid: "), "{command}: {text}");
        assert!(text.contains("resources.cpus"), "{command}: {text}");
    }
    assert_eq!(
        daemon.job("other").unwrap().pid,
        other.pid,
        "another job was touched"
    );

    // The last valid version can still be stopped and started.
    let stop = daemon.ctl(&["stop", "web"]);
    assert_eq!(stop.status.code(), Some(0), "{}", stdout_of(&stop));
    assert_eq!(daemon.job("web").unwrap().process_state, JobState::Stopped);
    let start = daemon.ctl(&["start", "web"]);
    assert_eq!(start.status.code(), Some(0), "{}", stdout_of(&start));
    let restarted = daemon.job("web").unwrap();
    assert_eq!(restarted.process_state, JobState::Running);
    assert_eq!(
        restarted.state,
        JobState::Invalid,
        "the file is still invalid"
    );
    // So can `all`, which covers the last valid version too.
    let stop_all = daemon.ctl(&["stop", "all"]);
    assert_eq!(stop_all.status.code(), Some(0), "{}", stdout_of(&stop_all));
    assert!(
        stdout_of(&stop_all).contains("web: stopped\n"),
        "{}",
        stdout_of(&stop_all)
    );
    assert_eq!(daemon.job("web").unwrap().process_state, JobState::Stopped);
    let start_all = daemon.ctl(&["start", "all"]);
    assert_eq!(
        start_all.status.code(),
        Some(0),
        "{}",
        stdout_of(&start_all)
    );
    assert!(
        stdout_of(&start_all).contains("web: started\n"),
        "{}",
        stdout_of(&start_all)
    );
    assert_eq!(daemon.job("web").unwrap().process_state, JobState::Running);
    let other = daemon.wait_for_state("other", JobState::Running, SETTLE);

    daemon.write_job("web", &versioned("2"));
    wait_for_view(
        &daemon,
        "web",
        NOTICED + SETTLE,
        "the fixed file runs",
        |view| view.state == JobState::Running && view.error.is_none(),
    );
    daemon.wait_until(SETTLE, "version 2 runs", |daemon| {
        daemon.job_log("web", "stdout").contains("version 2")
    });

    // A jobs directory that cannot be listed fails reread and update, and
    // no job is removed for it.
    let jobs_dir = daemon.jobs_dir();
    let moved = jobs_dir.with_extension("away");
    std::fs::rename(&jobs_dir, &moved).unwrap();
    let update = daemon.ctl(&["update"]);
    std::fs::rename(&moved, &jobs_dir).unwrap();
    assert_eq!(update.status.code(), Some(1), "{}", stdout_of(&update));
    let stderr = String::from_utf8_lossy(&update.stderr);
    assert!(
        stderr.starts_with("supervisorctl: failed to read the jobs directory: "),
        "{stderr}"
    );
    assert!(!stdout_of(&update).contains("No config updates"));
    assert_eq!(daemon.job("web").unwrap().state, JobState::Running);
    assert_eq!(daemon.job("other").unwrap().pid, other.pid);
}

#[test]
fn spec_runs_under_corral_run() {
    if skip("spec_runs_under_corral_run") {
        return;
    }
    let _serial = serial();
    let job = shell_job(
        "echo from-spec $GREETING; exit 7",
        json!({"env": {"GREETING": "hello world"}, "autostart": false,
               "resources": {"memory": "32M", "pids": 16}}),
    );
    let daemon = Daemon::start(&[("manual", &job)]);
    let spec = daemon.ctl(&["spec", "manual"]);
    assert_eq!(spec.status.code(), Some(0), "{}", stderr_of(&spec));
    let config: serde_json::Value = serde_json::from_slice(&spec.stdout).unwrap();
    assert_eq!(config["linux"]["resources"]["pids"]["limit"], 16);

    let bundle = daemon.dir.path().join("manual-bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), &spec.stdout).unwrap();
    let state_root = daemon.dir.path().join("manual-state");
    let output = std::process::Command::new(runtime_binary())
        .arg("--root")
        .arg(&state_root)
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg("manual-by-hand")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(7),
        "corral run: {}",
        stderr_of(&output)
    );
    assert_eq!(stdout_of(&output), "from-spec hello world\n");
    assert!(
        daemon.entries(&state_root).is_empty(),
        "corral run left state behind"
    );
}

/// Returns the error text of job `name` from reread's output.
fn reread_error<'a>(reread: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: invalid: ");
    reread
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("reread does not name {name}: {reread}"))
}

#[test]
fn special_and_huge_job_files_are_invalid() {
    if skip("special_and_huge_job_files_are_invalid") {
        return;
    }
    let _serial = serial();
    let mut daemon = Daemon::start(&[("good", &versioned("1"))]);
    let good = daemon.wait_for_state("good", JobState::Running, SETTLE);

    let jobs_dir = daemon.jobs_dir();
    nix::unistd::mkfifo(
        &jobs_dir.join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", jobs_dir.join("zero.json")).unwrap();
    let huge = std::fs::File::create(jobs_dir.join("huge.json")).unwrap();
    huge.set_len(corral_config::MAX_JOB_FILE_SIZE + 1).unwrap();
    drop(huge);

    // An open without O_NONBLOCK waits for a FIFO writer, so reread would
    // wait until supervisorctl's timeout.
    let started = Instant::now();
    let reread = daemon.ctl(&["--timeout", "10s", "reread"]);
    let elapsed = started.elapsed();
    let text = stdout_of(&reread);
    assert_eq!(
        reread.status.code(),
        Some(1),
        "{text}{}",
        stderr_of(&reread)
    );
    assert!(elapsed < Duration::from_secs(5), "reread took {elapsed:?}");
    let fifo = jobs_dir.join("fifo.json");
    let expected = format!("{}: not a regular file (FIFO): ", fifo.display());
    assert!(reread_error(&text, "fifo").starts_with(&expected), "{text}");
    let zero = jobs_dir.join("zero.json");
    let expected = format!(
        "{}: not a regular file (character device): ",
        zero.display()
    );
    assert!(reread_error(&text, "zero").starts_with(&expected), "{text}");
    let expected = format!(
        "{}: the file is 1048577 bytes, larger than the maximum of 1048576 bytes",
        jobs_dir.join("huge.json").display()
    );
    assert!(reread_error(&text, "huge").starts_with(&expected), "{text}");

    let update = daemon.ctl(&["--timeout", "10s", "update"]);
    assert_eq!(update.status.code(), Some(1), "{}", stdout_of(&update));
    let view = daemon.job("fifo").unwrap();
    assert_eq!(view.state, JobState::Invalid, "{view:#?}");
    let error = view.error.unwrap();
    assert_eq!(error.file, fifo);
    assert!(
        error.message.starts_with("not a regular file (FIFO): "),
        "{}",
        error.message
    );
    assert_eq!(daemon.job("good").unwrap().pid, good.pid);

    // A supervisord that starts with these files in place loads the rest.
    daemon.terminate(SETTLE);
    daemon.respawn();
    daemon.wait_for_state("good", JobState::Running, SETTLE);
    for name in ["fifo", "zero", "huge"] {
        let view = daemon.job(name).unwrap();
        assert_eq!(view.state, JobState::Invalid, "{view:#?}");
    }
}

#[test]
fn duplicate_job_names_are_invalid() {
    if skip("duplicate_job_names_are_invalid") {
        return;
    }
    let _serial = serial();
    let daemon = Daemon::start(&[("good", &versioned("1"))]);
    daemon.wait_for_state("good", JobState::Running, SETTLE);
    // File names that are not UTF-8 decode to the same text, U+FFFD in place
    // of the invalid byte, and so give the same job name.
    let first = daemon.jobs_dir().join(OsStr::from_bytes(b"twin\xff.json"));
    let second = daemon.jobs_dir().join(OsStr::from_bytes(b"twin\xfe.json"));
    std::fs::write(&first, versioned("a")).unwrap();
    std::fs::write(&second, versioned("b")).unwrap();

    let name = "twin\u{FFFD}";
    let view = wait_for_view(
        &daemon,
        name,
        NOTICED + SETTLE,
        "the twin files are loaded",
        |_| true,
    );
    assert_eq!(view.state, JobState::Invalid, "{view:#?}");
    let error = view.error.unwrap();
    assert!(error.message.contains("is also given by"), "{}", error.text);
    let shown = format!("{}", first.display());
    assert_eq!(
        error.text.matches(shown.as_str()).count(),
        2,
        "the error names both files: {}",
        error.text
    );
    let status = daemon.ctl(&["status"]);
    let table = stdout_of(&status);
    assert!(table.contains("INVALID"), "{table}");
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("good ") && line.contains("RUNNING")),
        "the valid job was affected: {table}"
    );
}

#[test]
fn removed_job_rejects_start_and_restart() {
    if skip("removed_job_rejects_start_and_restart") {
        return;
    }
    // /bin/sleep as PID 1 ignores SIGTERM, so the removal stop lasts the
    // whole 3 s timeout.
    let ghost = json!({"image": "host", "command": ["/bin/sleep", "1000"],
                       "start_seconds": "200ms", "stop": {"timeout": "3s"}})
    .to_string();
    let daemon = Daemon::start(&[("ghost", &ghost), ("other", &versioned("1"))]);
    daemon.wait_for_state("ghost", JobState::Running, SETTLE);
    daemon.wait_for_state("other", JobState::Running, SETTLE);

    daemon.remove_job("ghost");
    let stopping = wait_for_view(
        &daemon,
        "ghost",
        NOTICED + Duration::from_secs(1),
        "the removal stops the job",
        |view| view.state == JobState::Stopping,
    );
    assert!(stopping.removing, "{stopping:#?}");
    std::thread::sleep(Duration::from_secs(1));

    for action in ["restart", "start"] {
        let output = daemon.ctl(&[action, "ghost"]);
        assert_eq!(output.status.code(), Some(1), "{}", stdout_of(&output));
        assert!(
            stdout_of(&output).contains("ghost: ERROR (job \"ghost\" is being removed"),
            "{}",
            stdout_of(&output)
        );
        assert!(
            stdout_of(&output).contains("ghost.json was removed"),
            "{}",
            stdout_of(&output)
        );
    }
    let rejected = daemon
        .client()
        .post::<JobView>("/v1/jobs/ghost/restart", None)
        .unwrap_err();
    assert_eq!(rejected.status(), Some(409), "{rejected}");

    let all = daemon.ctl(&["restart", "all"]);
    assert_eq!(all.status.code(), Some(0), "{}", stdout_of(&all));
    assert_eq!(stdout_of(&all), "other: restarted\n");

    // A stop during the removal waits for it and keeps it a removal.
    let stop = daemon.ctl(&["stop", "ghost"]);
    assert_eq!(stop.status.code(), Some(5), "{}", stdout_of(&stop));
    assert_eq!(
        stdout_of(&stop),
        "ghost: stopped by SIGKILL after 3s timeout\n"
    );

    daemon.wait_until(SETTLE, "the removed job is forgotten", |daemon| {
        daemon
            .job("ghost")
            .is_err_and(|error| error.status() == Some(404))
    });
    assert!(
        !daemon.jobs_dir().join("ghost.json").exists(),
        "the job file came back"
    );
    let status = daemon.ctl(&["status"]);
    assert!(
        !stdout_of(&status).contains("ghost"),
        "{}",
        stdout_of(&status)
    );
}

#[test]
fn replaced_jobs_dir_is_watched() {
    if skip("replaced_jobs_dir_is_watched") {
        return;
    }
    let _serial = serial();
    let daemon = Daemon::start(&[("web", &versioned("1"))]);
    let first = daemon.wait_for_state("web", JobState::Running, SETTLE);
    let jobs = daemon.jobs_dir();

    // A deploy: edit a copy, rename the original away, then the copy into
    // place. The pause keeps the path missing long enough for the watcher
    // to see it, and that moment is not logged as a missing directory.
    let staged = jobs.with_file_name("jobs.new");
    let old = jobs.with_file_name("jobs.old");
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("web.json"), versioned("2")).unwrap();
    std::fs::rename(&jobs, &old).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::rename(&staged, &jobs).unwrap();
    let second = wait_for_view(
        &daemon,
        "web",
        NOTICED + SETTLE,
        "the swap restarts the job",
        |view| view.state == JobState::Running && view.container_id != first.container_id,
    );
    daemon.wait_until(SETTLE, "version 2 runs", |daemon| {
        daemon.job_log("web", "stdout").contains("version 2")
    });

    // Files written after the swap are noticed, and the old copy is not
    // watched any more.
    std::fs::write(old.join("stale.json"), versioned("stale")).unwrap();
    let written = Instant::now();
    std::fs::write(jobs.join("db.json"), versioned("db")).unwrap();
    wait_for_view(&daemon, "db", NOTICED, "the new file is loaded", |_| true);
    eprintln!(
        "swapped: new file loaded {:?} after the write",
        written.elapsed()
    );
    assert!(
        daemon.job("stale").is_err(),
        "a file written in the old directory was loaded"
    );

    // Deleted and created again: running jobs stay while it is missing.
    std::fs::remove_dir_all(&jobs).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        daemon.job("web").unwrap().container_id,
        second.container_id,
        "the job changed while the jobs directory was missing"
    );
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(jobs.join("web.json"), versioned("3")).unwrap();
    daemon.wait_until(NOTICED + SETTLE, "version 3 runs", |daemon| {
        daemon.job_log("web", "stdout").contains("version 3")
    });

    let log = daemon.daemon_log();
    assert!(
        log.contains("watching the replaced jobs directory"),
        "no log line for the replaced directory:\n{log}"
    );
    assert_eq!(
        log.matches("the jobs directory is missing").count(),
        1,
        "expected one log line, for the deletion and not for the swap:\n{log}"
    );
}
