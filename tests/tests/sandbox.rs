//! The sandbox of one job, checked from inside and outside: run through
//! `corral run` with the OCI config that supervisord would generate.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use corral_tests::sandbox::{cgroup_cpu_seconds, cgroup_file, probe, stdout, Sandbox};
use corral_tests::{host, require_root, serial, unique_name, wait_until};

#[test]
fn sandbox_pid1_hostname_and_loopback() {
    if !require_root("sandbox_pid1_hostname_and_loopback") {
        return;
    }
    let _serial = serial();
    let sandbox = Sandbox::new(
        "identity",
        r#"{"command": ["/bin/sh", "-c", "echo pid=$$; echo host=$(hostname); echo links=$(ls /sys/class/net | tr '\n' ' '); echo cwd=$(pwd); echo env=$(env | grep -c .)"],
            "hostname": "inside", "network": "loopback", "working_dir": "/tmp/made-by-corral"}"#,
    );
    let (output, record) = sandbox.run();
    let text = stdout(&output);
    assert_eq!(record.status, 0, "output: {text}");
    assert!(
        text.contains("pid=1\n"),
        "PID 1 is not the job's process: {text}"
    );
    assert!(text.contains("host=inside\n"), "hostname not set: {text}");
    assert!(
        text.contains("links=lo\n"),
        "interfaces other than lo: {text}"
    );
    assert!(
        text.contains("cwd=/tmp/made-by-corral\n"),
        "working dir: {text}"
    );
}

#[test]
fn sandbox_env_passed_exactly() {
    if !require_root("sandbox_env_passed_exactly") {
        return;
    }
    let _serial = serial();
    let sandbox = Sandbox::new(
        "env",
        r#"{"command": ["/usr/bin/env"], "env": {"OPTS": "a=b=c", "EMPTY": "", "GREETING": "hello world", "UNICODE": "grüße"}}"#,
    );
    let (output, record) = sandbox.run();
    assert_eq!(record.status, 0);
    let mut lines: Vec<String> = stdout(&output).lines().map(str::to_string).collect();
    lines.sort();
    // PATH and HOME are the defaults that a job without them gets: HOME
    // from root's entry in the host image's /etc/passwd.
    let home = format!("HOME={}", root_home());
    assert_eq!(
        lines,
        vec![
            "EMPTY=",
            "GREETING=hello world",
            home.as_str(),
            "OPTS=a=b=c",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "UNICODE=grüße"
        ]
    );
}

/// Returns root's home directory from the host's /etc/passwd, or `/`.
fn root_home() -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 5 && fields[2] == "0")
        .map(|fields| fields[5].to_string())
        .filter(|home| !home.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

#[test]
fn sandbox_writes_land_in_upper_dir() {
    if !require_root("sandbox_writes_land_in_upper_dir") {
        return;
    }
    let _serial = serial();
    let marker = format!("/etc/{}", unique_name("marker"));
    let job = format!(
        r#"{{"command": ["/bin/sh", "-c", "echo container > {marker}; echo changed >> /etc/hostname.corral-probe; rm -f /etc/os-release; sleep 30"]}}"#
    );
    let sandbox = Sandbox::new("upper", &job);
    let os_release_before = fs::read("/etc/os-release").expect("host /etc/os-release");
    let state = sandbox.run_detached();
    let overlay_dir = state.overlay_dir.clone().expect("overlay dir in state");
    let upper_marker = overlay_dir
        .join("upper")
        .join(marker.trim_start_matches('/'));
    // The shell creates the file before it writes the line, so the test
    // waits for the content, not for the file.
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(&upper_marker).is_ok_and(|text| !text.is_empty())
        }),
        "{} never appeared with content",
        upper_marker.display()
    );
    assert_eq!(fs::read_to_string(&upper_marker).unwrap(), "container\n");
    assert!(
        !Path::new(&marker).exists(),
        "the write reached the host's {marker}"
    );
    assert!(!Path::new("/etc/hostname.corral-probe").exists());
    assert_eq!(
        fs::read("/etc/os-release").unwrap(),
        os_release_before,
        "host file changed"
    );

    let deleted = sandbox.delete();
    assert!(
        deleted.status.success(),
        "delete failed: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(
        !overlay_dir.exists(),
        "{} survived the container",
        overlay_dir.display()
    );
    assert!(host::overlay_mounts_below(&sandbox.data_dir()).is_empty());
    assert!(!Path::new(&marker).exists());
}

#[test]
fn sandbox_exit_statuses() {
    if !require_root("sandbox_exit_statuses") {
        return;
    }
    let _serial = serial();
    let cases = [
        (r#"["/bin/sh", "-c", "exit 3"]"#, 3, None),
        (r#"["/bin/sh", "-c", "kill -TERM $$; sleep 5"]"#, 0, None),
        (
            r#"["/bin/sh", "-c", "sleep 5 & kill -KILL $!; wait $!"]"#,
            137,
            None,
        ),
    ];
    for (index, (command, expected, signal)) in cases.into_iter().enumerate() {
        let sandbox = Sandbox::new(
            &format!("exit{index}"),
            &format!(r#"{{"command": {command}}}"#),
        );
        let (output, record) = sandbox.run();
        assert_eq!(
            record.status,
            expected,
            "command {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            output.status.code(),
            Some(expected),
            "corral run passes the status through"
        );
        assert_eq!(record.signal.as_deref(), signal);
    }
    // Behind the minimal init, a signal that ends the main process is still
    // reported as 128 + its number, and named.
    let sandbox = Sandbox::new(
        "signal",
        r#"{"command": ["/bin/sh", "-c", "kill -USR1 $$"], "init": true}"#,
    );
    let (_, record) = sandbox.run();
    assert_eq!(record.status, 138);
    assert_eq!(record.signal.as_deref(), Some("SIGUSR1"));
    // An exit code above 128 is not mistaken for a signal.
    let sandbox = Sandbox::new(
        "code138",
        r#"{"command": ["/bin/sh", "-c", "exit 138"], "init": true}"#,
    );
    let (_, record) = sandbox.run();
    assert_eq!(record.status, 138);
    assert_eq!(record.signal, None);
}

#[test]
fn sandbox_unexecutable_program_fails_create() {
    if !require_root("sandbox_unexecutable_program_fails_create") {
        return;
    }
    let _serial = serial();
    // Scripts bound into the container at /scripts.
    let scripts = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let path = scripts.path().join(name);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("no-interpreter", "#!/nonexistent/interp\n");
    script("text", "echo hello\n");
    let bound = |command: &str| {
        format!(
            r#"{{"command": ["{command}"], "mounts": [{{"type": "bind", "source": "{}", "target": "/scripts", "readonly": true}}]}}"#,
            scripts.path().display()
        )
    };
    let cases = [
        (
            r#"{"command": ["no-such-program-anywhere"]}"#.to_string(),
            "exec \"no-such-program-anywhere\": not found in the container's PATH",
        ),
        (
            r#"{"command": ["/no/such/program"], "init": true}"#.to_string(),
            "exec \"/no/such/program\": no such file in the container",
        ),
        (
            r#"{"command": ["/etc/passwd"]}"#.to_string(),
            "exec \"/etc/passwd\": permission denied: the process's user may not execute \
             /etc/passwd",
        ),
        (
            bound("/scripts/no-interpreter"),
            "exec \"/scripts/no-interpreter\": interpreter \"/nonexistent/interp\" of \
             /scripts/no-interpreter: no such file in the container",
        ),
        (
            bound("/scripts/text"),
            "exec \"/scripts/text\": /scripts/text is not an executable format (no ELF header \
             or #! line)",
        ),
    ];
    for (index, (job, expected)) in cases.into_iter().enumerate() {
        let sandbox = Sandbox::new(&format!("unexecutable{index}"), &job);
        let output = sandbox
            .corral()
            .args(["run", &sandbox.id, "--bundle"])
            .arg(sandbox.bundle())
            .arg("--exit-file")
            .arg(sandbox.exit_file())
            .output()
            .expect("run corral");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "job {job}: {stderr}");
        assert!(stderr.contains(expected), "job {job}: {stderr}");
        assert!(
            !sandbox.exit_file().exists(),
            "job {job}: a process that never ran got an exit record"
        );
    }
}

#[test]
fn memory_limit_oom_kills() {
    if !require_root("memory_limit_oom_kills") {
        return;
    }
    let _serial = serial();
    let allocate = format!(r#"["{}", "alloc", "{}"]"#, probe(), 64u64 << 20);
    let sandbox = Sandbox::new(
        "oom",
        &format!(r#"{{"command": {allocate}, "resources": {{"memory": "32M"}}}}"#),
    );
    let (_, record) = sandbox.run();
    assert_eq!(
        record.status, 137,
        "a 64M allocation under a 32M limit is OOM-killed"
    );
    assert_eq!(record.signal.as_deref(), Some("SIGKILL"));
    assert!(record.oom_kills >= 1, "the OOM kill is counted: {record:?}");

    let sandbox = Sandbox::new(
        "fits",
        &format!(r#"{{"command": {allocate}, "resources": {{"memory": "128M"}}}}"#),
    );
    let (output, record) = sandbox.run();
    assert_eq!(
        record.status,
        0,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(record.oom_kills, 0);
    assert_eq!(stdout(&output).trim(), (64u64 << 20).to_string());
}

#[test]
fn cpu_quota_half_cpu() {
    if !require_root("cpu_quota_half_cpu") {
        return;
    }
    let _serial = serial();
    let sandbox = Sandbox::new(
        "cpu",
        r#"{"command": ["/bin/sh", "-c", "while :; do :; done & while :; do :; done"],
            "resources": {"cpus": 0.5}}"#,
    );
    let state = sandbox.run_detached();
    let before = cgroup_cpu_seconds(&state);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let used = cgroup_cpu_seconds(&state) - before;
    let elapsed = started.elapsed().as_secs_f64();
    sandbox.delete();
    let expected = 0.5 * elapsed;
    assert!(
        (used - expected).abs() <= 0.15 * expected,
        "CPU time {used:.3} s over {elapsed:.3} s, expected {expected:.3} s ±15%\n{}",
        host::cgroup_report()
    );
}

#[test]
fn pids_limit_holds_fork_loop() {
    if !require_root("pids_limit_holds_fork_loop") {
        return;
    }
    let _serial = serial();
    let sandbox = Sandbox::new(
        "pids",
        &format!(
            r#"{{"command": ["{}", "forkloop"], "resources": {{"pids": 16}}}}"#,
            probe()
        ),
    );
    let state = sandbox.run_detached();
    let current = cgroup_file(&state, "pids", "pids.current");
    let mut peak = 0;
    let mut host_command_max = Duration::ZERO;
    for _ in 0..20 {
        let tasks: u64 = fs::read_to_string(&current)
            .expect("pids.current")
            .trim()
            .parse()
            .expect("number");
        peak = peak.max(tasks);
        let started = Instant::now();
        let status = Command::new("/bin/true")
            .status()
            .expect("run /bin/true on the host");
        assert!(status.success());
        host_command_max = host_command_max.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        peak >= 15,
        "the fork loop never reached the limit (peak {peak})"
    );
    assert!(peak <= 16, "the job had {peak} tasks under a limit of 16");
    assert!(
        host_command_max < Duration::from_secs(1),
        "a host command took {host_command_max:?} during the fork loop"
    );
    let deleted = sandbox.delete();
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(host::processes_with(&sandbox.id).is_empty());
}
