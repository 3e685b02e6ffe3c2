//! The spec's `process` object, checked from inside the container: args,
//! env, cwd, user, umask, capabilities, rlimits, noNewPrivileges,
//! oomScoreAdj, ioPriority, scheduler, and the errors and exit codes of a
//! process that cannot be executed.

use corral_tests::oci::{capability_mask, describe, key_values, text, Bundle, PROBE};
use corral_tests::require_root;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

#[test]
fn process_args_passed_exactly() {
    if !require_root("process_args_passed_exactly") {
        return;
    }
    let mut bundle = Bundle::new("args");
    let args = [
        PROBE,
        "args",
        "key=value=more",
        "",
        "two words",
        "grüße 🌍",
        "--flag",
        "-",
    ];
    bundle.args(&args);
    let output = bundle.run_ok();
    let printed: Vec<String> = serde_json::from_str(output.trim()).expect("probe prints JSON");
    assert_eq!(printed, args[2..], "arguments changed on the way in");
}

#[test]
fn process_env_passed_exactly() {
    if !require_root("process_env_passed_exactly") {
        return;
    }
    let mut bundle = Bundle::new("env");
    bundle.args(&[PROBE, "env"]);
    bundle.set(
        "/process/env",
        json!([
            "PATH=/bin",
            "OPTS=a=b=c",
            "EMPTY=",
            "GREETING=hello world",
            "UNICODE=grüße",
        ]),
    );
    let output = bundle.run_ok();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines,
        [
            "EMPTY=",
            "GREETING=hello world",
            "OPTS=a=b=c",
            "PATH=/bin",
            "UNICODE=grüße"
        ],
        "the environment is not exactly process.env"
    );
}

#[test]
fn process_missing_command_fails_create() {
    if !require_root("process_missing_command_fails_create") {
        return;
    }
    let mut bundle = Bundle::new("enoent");
    bundle.args(&["/bin/no-such-program", "x"]);
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    assert_eq!(
        text(&output.stderr).trim_end(),
        "corral: exec \"/bin/no-such-program\": no such file in the container"
    );

    // create fails as runc's does: an error on stderr, a non-zero status,
    // and no container left behind.
    let output = bundle.create();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        text(&output.stderr)
            .contains("exec \"/bin/no-such-program\": no such file in the container"),
        "{}",
        describe(&output)
    );
    assert_eq!(bundle.state(), None, "the failed create left a container");

    let mut bundle = Bundle::new("enoent-path");
    bundle.args(&["no-such-program-on-path"]);
    bundle.set("/process/env", json!(["PATH=/usr/bin:/bin"]));
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    assert_eq!(
        text(&output.stderr).trim_end(),
        "corral: exec \"no-such-program-on-path\": not found in the container's PATH \
         \"/usr/bin:/bin\""
    );
}

/// Writes an executable script with `body` at `path` below the rootfs.
fn write_script(bundle: &Bundle, path: &str, body: &str, mode: u32) {
    let file = bundle.rootfs().join(path.trim_start_matches('/'));
    std::fs::write(&file, body).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn process_script_interpreter_fails_create() {
    if !require_root("process_script_interpreter_fails_create") {
        return;
    }
    let cases = [
        (
            "#!/nonexistent/interp\n",
            "corral: exec \"/bin/script\": interpreter \"/nonexistent/interp\" of /bin/script: \
             no such file in the container",
        ),
        (
            "#! /etc/passwd -x\n",
            "corral: exec \"/bin/script\": interpreter \"/etc/passwd\" of /bin/script: \
             permission denied: the process's user may not execute /etc/passwd in the container",
        ),
        (
            "#!/tmp\n",
            "corral: exec \"/bin/script\": interpreter \"/tmp\" of /bin/script: /tmp is a \
             directory",
        ),
        (
            "#!/bin/text\n",
            "corral: exec \"/bin/script\": interpreter \"/bin/text\" of /bin/script: /bin/text \
             is not an executable format (no ELF header or #! line)",
        ),
    ];
    for (index, (body, expected)) in cases.into_iter().enumerate() {
        let mut bundle = Bundle::new(&format!("interpreter{index}"));
        write_script(&bundle, "/bin/script", body, 0o755);
        write_script(&bundle, "/bin/text", "echo hello\n", 0o755);
        bundle.args(&["/bin/script"]);
        let output = bundle.run();
        assert_eq!(
            output.status.code(),
            Some(125),
            "{body:?}: {}",
            describe(&output)
        );
        assert_eq!(text(&output.stderr).trim_end(), expected, "{body:?}");
        assert_eq!(
            bundle.state(),
            None,
            "{body:?}: the failed run left a container"
        );
    }

    // A script found in PATH gets the same check.
    let mut bundle = Bundle::new("interpreter-path");
    write_script(&bundle, "/bin/script", "#!/nonexistent/interp\n", 0o755);
    bundle.args(&["script"]);
    let output = bundle.create();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains(
            "exec \"script\": interpreter \"/nonexistent/interp\" of /bin/script: no such file"
        ),
        "{}",
        describe(&output)
    );

    // A script whose interpreter exists runs.
    let mut bundle = Bundle::new("interpreter-ok");
    write_script(&bundle, "/bin/script", "#!/bin/sh\necho ran\n", 0o755);
    bundle.args(&["/bin/script"]);
    assert_eq!(bundle.run_ok(), "ran\n");
}

#[test]
fn process_unknown_format_fails_create() {
    if !require_root("process_unknown_format_fails_create") {
        return;
    }
    let mut bundle = Bundle::new("enoexec");
    write_script(&bundle, "/bin/text", "echo hello\n", 0o755);
    bundle.args(&["/bin/text"]);
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    assert_eq!(
        text(&output.stderr).trim_end(),
        "corral: exec \"/bin/text\": /bin/text is not an executable format (no ELF header or \
         #! line)"
    );
    let output = bundle.create();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(bundle.state(), None, "the failed create left a container");
}

#[test]
fn process_unreadable_executable_passes_create() {
    if !require_root("process_unreadable_executable_passes_create") {
        return;
    }
    // execve runs an ELF binary that its user may not read, so create
    // must not fail on the header it cannot read.
    let mut bundle = Bundle::new("unreadable-elf");
    let copy = bundle.rootfs().join("bin/probe-0711");
    std::fs::copy(bundle.rootfs().join("bin/corral-probe"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o711)).unwrap();
    bundle.args(&["/bin/probe-0711", "exit", "0"]);
    bundle.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    // An unreadable file of an unknown format passes create too, and
    // execve fails with ENOEXEC.
    let mut bundle = Bundle::new("unreadable-text");
    write_script(&bundle, "/bin/text", "echo hello\n", 0o711);
    bundle.args(&["/bin/text"]);
    bundle.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(126), "{}", describe(&output));
}

#[test]
fn process_check_under_seccomp() {
    if !require_root("process_check_under_seccomp") {
        return;
    }
    // Without noNewPrivileges the filter goes in before the check. The
    // access check gives way to a profile that denies it, and the header
    // checks still run.
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["access", "faccessat", "faccessat2"], "action": "SCMP_ACT_ERRNO"}]});
    let mut bundle = Bundle::new("seccomp-elf");
    bundle.args(&["/bin/true"]);
    bundle.set("/process/noNewPrivileges", json!(false));
    bundle.set("/linux/seccomp", profile.clone());
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let mut bundle = Bundle::new("seccomp-script");
    write_script(&bundle, "/bin/script", "#!/nonexistent/interp\n", 0o755);
    bundle.args(&["/bin/script"]);
    bundle.set("/process/noNewPrivileges", json!(false));
    bundle.set("/linux/seccomp", profile);
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    assert_eq!(
        text(&output.stderr).trim_end(),
        "corral: exec \"/bin/script\": interpreter \"/nonexistent/interp\" of /bin/script: \
         no such file in the container"
    );
}

#[test]
fn process_not_executable_fails_create() {
    if !require_root("process_not_executable_fails_create") {
        return;
    }
    let mut bundle = Bundle::new("eacces");
    std::fs::write(bundle.rootfs().join("bin/not-executable"), "#!/bin/sh\n").unwrap();
    bundle.args(&["/bin/not-executable"]);
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    assert_eq!(
        text(&output.stderr).trim_end(),
        "corral: exec \"/bin/not-executable\": permission denied: the process's user may \
         not execute /bin/not-executable in the container"
    );

    // A name found in PATH only as a file without execute permission is
    // denied too, and the message names that file.
    let mut bundle = Bundle::new("eacces-path");
    std::fs::write(bundle.rootfs().join("bin/not-executable"), "#!/bin/sh\n").unwrap();
    bundle.args(&["not-executable"]);
    bundle.set("/process/env", json!(["PATH=/bin"]));
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains(
            "exec \"not-executable\": permission denied: the process's user may not execute \
             /bin/not-executable"
        ),
        "{}",
        describe(&output)
    );

    let mut bundle = Bundle::new("eisdir");
    bundle.args(&["/tmp"]);
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(125), "{}", describe(&output));
    assert_eq!(
        text(&output.stderr).trim_end(),
        "corral: exec \"/tmp\": /tmp is a directory"
    );
}

#[test]
fn process_exit_status_passed_through() {
    if !require_root("process_exit_status_passed_through") {
        return;
    }
    let mut bundle = Bundle::new("exit");
    bundle.args(&[PROBE, "exit", "42"]);
    let output = bundle.run();
    assert_eq!(output.status.code(), Some(42), "{}", describe(&output));

    // The container's PID 1 ignores signals it has no handler for, even
    // SIGKILL from inside its namespace, so the signal comes from `kill`.
    let mut bundle = Bundle::new("signal");
    bundle.args(&[PROBE, "sleep", "60"]);
    bundle.write_config();
    let mut run = bundle.corral();
    run.args(["run", &bundle.id, "--bundle"])
        .arg(bundle.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = run.spawn().expect("start corral run");
    assert!(
        bundle.wait_for_status("running"),
        "container never ran: {}",
        bundle.status()
    );
    let kill = bundle.corral_output(&["kill", &bundle.id, "KILL"]);
    assert!(kill.status.success(), "{}", describe(&kill));
    let status = child.wait().expect("wait for corral run");
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "a process killed by SIGKILL makes run exit 137"
    );
}

#[test]
fn process_cwd_created_when_missing() {
    if !require_root("process_cwd_created_when_missing") {
        return;
    }
    let mut bundle = Bundle::new("cwd");
    bundle.set("/process/cwd", json!("/work/made/by-runtime"));
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["cwd"], "/work/made/by-runtime");
    assert!(
        bundle.rootfs().join("work/made/by-runtime").is_dir(),
        "cwd was not created inside the root filesystem"
    );
}

#[test]
fn process_user_groups_and_umask() {
    if !require_root("process_user_groups_and_umask") {
        return;
    }
    let mut bundle = Bundle::new("user");
    bundle.args(&[PROBE, "status"]);
    bundle.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1001, "additionalGids": [1002, 1003], "umask": 0o027}),
    );
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["Uid"], "1000 1000 1000 1000");
    assert_eq!(values["Gid"], "1001 1001 1001 1001");
    assert_eq!(values["Groups"], "1001 1002 1003");
    assert_eq!(values["Umask"], "0027");
}

#[test]
fn process_umask_defaults_to_0022() {
    if !require_root("process_umask_defaults_to_0022") {
        return;
    }
    let mut bundle = Bundle::new("umask-default");
    bundle.args(&[PROBE, "status"]);
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["Umask"], "0022", "runc's default umask is 0022");
    assert_eq!(values["Uid"], "0 0 0 0");
}

#[test]
fn process_five_capability_sets() {
    if !require_root("process_five_capability_sets") {
        return;
    }
    let mut bundle = Bundle::new("caps");
    bundle.args(&[PROBE, "status"]);
    let bounding = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"];
    let permitted = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"];
    let effective = ["CAP_CHOWN", "CAP_KILL"];
    let inheritable = ["CAP_KILL", "CAP_NET_RAW"];
    let ambient = ["CAP_NET_RAW"];
    bundle.set(
        "/process/capabilities",
        json!({"bounding": bounding, "permitted": permitted, "effective": effective,
               "inheritable": inheritable, "ambient": ambient}),
    );
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["CapBnd"], capability_mask(&bounding), "bounding");
    assert_eq!(
        values["CapInh"],
        capability_mask(&inheritable),
        "inheritable"
    );
    assert_eq!(values["CapAmb"], capability_mask(&ambient), "ambient");
    // With no_new_privs, execve cannot add to the permitted set, and for
    // uid 0 it makes the effective set equal to the permitted set.
    assert_eq!(values["NoNewPrivs"], "1");
    assert_eq!(values["CapPrm"], capability_mask(&permitted), "permitted");
    assert_eq!(values["CapEff"], capability_mask(&permitted), "effective");
}

#[test]
fn process_capabilities_of_non_root_user() {
    if !require_root("process_capabilities_of_non_root_user") {
        return;
    }
    let mut bundle = Bundle::new("caps-user");
    bundle.args(&[PROBE, "status"]);
    bundle.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let granted = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"];
    bundle.set(
        "/process/capabilities",
        json!({"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
               "permitted": granted, "effective": granted, "inheritable": granted, "ambient": granted}),
    );
    let values = key_values(&bundle.run_ok());
    // A non-root process keeps across execve exactly its ambient set, in
    // permitted and effective.
    assert_eq!(values["CapPrm"], capability_mask(&granted), "permitted");
    assert_eq!(values["CapEff"], capability_mask(&granted), "effective");
    assert_eq!(values["CapAmb"], capability_mask(&granted), "ambient");
    assert_eq!(
        values["CapBnd"],
        capability_mask(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
        "bounding"
    );
}

#[test]
fn process_no_new_privileges() {
    if !require_root("process_no_new_privileges") {
        return;
    }
    for (setting, expected) in [(true, "1"), (false, "0")] {
        let mut bundle = Bundle::new("nnp");
        bundle.args(&[PROBE, "status"]);
        bundle.set("/process/noNewPrivileges", json!(setting));
        let values = key_values(&bundle.run_ok());
        assert_eq!(
            values["NoNewPrivs"], expected,
            "noNewPrivileges {setting} is not applied"
        );
    }
}

#[test]
fn process_rlimits_applied() {
    if !require_root("process_rlimits_applied") {
        return;
    }
    let mut bundle = Bundle::new("rlimits");
    bundle.args(&[PROBE, "rlimits"]);
    bundle.set(
        "/process/rlimits",
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
            {"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192},
        ]),
    );
    let output = bundle.run_ok();
    let limits: Vec<&str> = output.lines().collect();
    for expected in [
        "RLIMIT_NOFILE 100 200",
        "RLIMIT_CORE 0 0",
        "RLIMIT_NPROC 300 400",
        "RLIMIT_MSGQUEUE 4096 8192",
    ] {
        assert!(
            limits.contains(&expected),
            "{expected} missing in {limits:?}"
        );
    }
}

#[test]
fn process_rlimit_above_hard_lowered_with_warning() {
    if !require_root("process_rlimit_above_hard_lowered_with_warning") {
        return;
    }
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid `current`.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) };
    assert_eq!(result, 0, "getrlimit failed");
    let has_sys_resource = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << 24) != 0);
    let mut bundle = Bundle::new("rlimit-high");
    bundle.args(&[PROBE, "rlimits"]);
    let requested = current.rlim_max + 1000;
    bundle.set(
        "/process/rlimits",
        json!([{"type": "RLIMIT_NOFILE", "soft": requested, "hard": requested}]),
    );
    let output = bundle.run();
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = text(&output.stdout);
    if has_sys_resource {
        assert!(
            stdout.contains(&format!("RLIMIT_NOFILE {requested} {requested}")),
            "with CAP_SYS_RESOURCE the limit is raised: {stdout}"
        );
    } else {
        let lowered = format!("RLIMIT_NOFILE {0} {0}", current.rlim_max);
        assert!(stdout.contains(&lowered), "expected {lowered} in {stdout}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("RLIMIT_NOFILE") && stderr.contains("lowered"),
            "no warning about the lowered limit: {stderr}"
        );
    }
}

#[test]
fn process_oom_score_adj() {
    if !require_root("process_oom_score_adj") {
        return;
    }
    let mut bundle = Bundle::new("oom-score");
    bundle.args(&["/bin/cat", "/proc/self/oom_score_adj"]);
    bundle.set("/process/oomScoreAdj", json!(500));
    assert_eq!(bundle.run_ok().trim(), "500");
}

#[test]
fn process_io_priority() {
    if !require_root("process_io_priority") {
        return;
    }
    let mut bundle = Bundle::new("ioprio");
    bundle.args(&[PROBE, "sched"]);
    bundle.set(
        "/process/ioPriority",
        json!({"class": "IOPRIO_CLASS_BE", "priority": 6}),
    );
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["ioprio_class"], "2", "IOPRIO_CLASS_BE is class 2");
    assert_eq!(values["ioprio_level"], "6");
}

#[test]
fn process_scheduler_policy_and_nice() {
    if !require_root("process_scheduler_policy_and_nice") {
        return;
    }
    let mut bundle = Bundle::new("sched");
    bundle.args(&[PROBE, "sched"]);
    bundle.set(
        "/process/scheduler",
        json!({"policy": "SCHED_BATCH", "nice": 7}),
    );
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["policy"], libc::SCHED_BATCH.to_string());
    assert_eq!(values["nice"], "7");
}

#[test]
fn process_personality_domain() {
    if !require_root("process_personality_domain") {
        return;
    }
    let mut bundle = Bundle::new("personality");
    bundle.args(&["/bin/busybox", "uname", "-m"]);
    bundle.set("/linux/personality", json!({"domain": "LINUX32"}));
    assert_eq!(
        bundle.run_ok().trim(),
        "i686",
        "LINUX32 reports a 32-bit machine"
    );
}

/// Accepts one connection on `socket` and returns the descriptor that
/// arrives with it (SCM_RIGHTS), as a client's console socket does.
fn receive_console(listener: std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};

    let (stream, _) = listener.accept().expect("accept on the console socket");
    let mut buffer = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg on the console socket");
    for control in message.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(fds) = control {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor in this
                // process for the message, and nothing else owns it.
                return unsafe { std::os::fd::OwnedFd::from_raw_fd(*fd) };
            }
        }
    }
    panic!("no descriptor arrived on the console socket");
}

#[test]
fn process_terminal_through_console_socket() {
    if !require_root("process_terminal_through_console_socket") {
        return;
    }
    let mut bundle = Bundle::new("terminal");
    bundle.args(&["/bin/sh", "-c", "/bin/corral-probe tty; echo done"]);
    bundle.set("/process/terminal", json!(true));
    bundle.write_config();
    let socket = bundle.host_dir().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind console socket");
    let receiver = std::thread::spawn(move || receive_console(listener));

    let output = bundle.corral_output(&[
        "create",
        "--console-socket",
        socket.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &bundle.id,
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let master = receiver.join().expect("console receiver");
    let start = bundle.corral_output(&["start", &bundle.id]);
    assert!(start.status.success(), "{}", describe(&start));

    let mut terminal = std::fs::File::from(master);
    let mut seen = String::new();
    let mut buffer = [0u8; 1024];
    while !seen.contains("done") {
        use std::io::Read;
        match terminal.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => seen.push_str(&String::from_utf8_lossy(&buffer[..read])),
        }
    }
    for stream in ["stdin=true", "stdout=true", "stderr=true"] {
        assert!(
            seen.contains(stream),
            "{stream} missing in terminal output: {seen:?}"
        );
    }
}
