//! The spec's `linux.seccomp`: actions, errno values, argument conditions
//! and architectures, checked by the system calls the probe makes.

use corral_tests::oci::{describe, key_values, text, Bundle, PROBE};
use corral_tests::require_root;
use serde_json::{json, Value};

/// Returns a profile that allows every system call except those in `rules`.
fn allow_except(rules: Value) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": rules})
}

/// SIGSYS as an exit status: 128 + 31.
const KILLED_BY_SIGSYS: i32 = 159;

#[test]
fn seccomp_errno_with_value() {
    if !require_root("seccomp_errno_with_value") {
        return;
    }
    let mut bundle = Bundle::new("seccomp-errno");
    bundle.set(
        "/linux/seccomp",
        allow_except(json!([
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["sync"], "action": "SCMP_ACT_ERRNO"},
        ])),
    );
    bundle.args(&[
        "/bin/sh",
        "-c",
        &format!("{PROBE} syscall mkdir /tmp/x; {PROBE} syscall sync; {PROBE} syscall getppid; {PROBE} status"),
    ]);
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["mkdir!errno"], "13", "errnoRet 13 (EACCES)");
    assert_eq!(values["sync!errno"], "1", "ERRNO without errnoRet is EPERM");
    assert!(
        values.contains_key("getppid"),
        "getppid must be allowed: {values:?}"
    );
    assert_eq!(
        values["Seccomp"], "2",
        "no filter mode in /proc/self/status"
    );
}

#[test]
fn seccomp_argument_conditions() {
    if !require_root("seccomp_argument_conditions") {
        return;
    }
    let mut bundle = Bundle::new("seccomp-args");
    // personality(0xffffffff) only queries the persona, and every other value is blocked.
    bundle.set(
        "/linux/seccomp",
        allow_except(json!([
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_NE"}]},
        ])),
    );
    bundle.args(&[
        "/bin/sh",
        "-c",
        &format!("{PROBE} syscall personality 0xffffffff; {PROBE} syscall personality 8"),
    ]);
    let output = bundle.run_ok();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 2, "{output}");
    assert!(
        lines[0].starts_with("personality="),
        "the query was blocked: {output}"
    );
    assert_eq!(lines[1], "personality!errno=22", "{output}");
}

#[test]
fn seccomp_masked_equality() {
    if !require_root("seccomp_masked_equality") {
        return;
    }
    let mut bundle = Bundle::new("seccomp-masked");
    // Blocks personality values whose low byte is 8.
    bundle.set(
        "/linux/seccomp",
        allow_except(json!([
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 0, "value": 0xff, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
        ])),
    );
    bundle.args(&[
        "/bin/sh",
        "-c",
        &format!("{PROBE} syscall personality 0x0108; {PROBE} syscall personality 0xffffffff"),
    ]);
    let output = bundle.run_ok();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.first(), Some(&"personality!errno=1"), "{output}");
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("personality=")),
        "{output}"
    );
}

#[test]
fn seccomp_kill_process_and_trap() {
    if !require_root("seccomp_kill_process_and_trap") {
        return;
    }
    for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_KILL"] {
        let mut bundle = Bundle::new("seccomp-kill");
        bundle.set(
            "/linux/seccomp",
            allow_except(json!([{"names": ["getpriority"], "action": action}])),
        );
        // The probe runs as a child of the shell, which reports how it died.
        bundle.args(&[
            "/bin/sh",
            "-c",
            &format!("{PROBE} syscall getpriority; echo status=$?"),
        ]);
        let output = bundle.run_ok();
        let values = key_values(&output);
        assert_eq!(
            values.get("status").map(String::as_str),
            Some(KILLED_BY_SIGSYS.to_string().as_str()),
            "{action}: {output}"
        );
    }
}

#[test]
fn seccomp_log_allows() {
    if !require_root("seccomp_log_allows") {
        return;
    }
    let mut bundle = Bundle::new("seccomp-log");
    bundle.set(
        "/linux/seccomp",
        allow_except(json!([{"names": ["getppid"], "action": "SCMP_ACT_LOG"}])),
    );
    bundle.args(&[PROBE, "syscall", "getppid"]);
    let output = bundle.run_ok();
    assert!(
        output.starts_with("getppid="),
        "LOG must let the call through: {output}"
    );
}

// With noNewPrivileges the runtime installs the filter right before execve,
// so the profile needs to allow only what the program itself calls.
#[test]
fn seccomp_default_errno_action() {
    if !require_root("seccomp_default_errno_action") {
        return;
    }
    let mut bundle = Bundle::new("seccomp-default");
    // Everything is blocked except what a dynamically linked program needs to
    // start, print and exit. getppid, the call under test, is left out.
    let allowed = [
        "execve",
        "brk",
        "mmap",
        "munmap",
        "mprotect",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "getrandom",
        "openat",
        "read",
        "write",
        "close",
        "fstat",
        "newfstatat",
        "pread64",
        "access",
        "sigaltstack",
        "rt_sigaction",
        "rt_sigprocmask",
        "poll",
        "exit",
        "exit_group",
        "futex",
        "sched_getaffinity",
        "readlink",
        "getcwd",
        "statx",
        "lseek",
        "ioctl",
        "clone3",
        "clone",
        "madvise",
    ];
    bundle.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
               "syscalls": [{"names": allowed.to_vec(), "action": "SCMP_ACT_ALLOW"}]}),
    );
    bundle.args(&[PROBE, "syscall", "getppid"]);
    let output = bundle.run();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(text(&output.stdout).trim(), "getppid!errno=38");
}

#[test]
fn seccomp_applies_to_exec() {
    if !require_root("seccomp_applies_to_exec") {
        return;
    }
    let mut bundle = Bundle::new("seccomp-exec");
    bundle.set(
        "/linux/seccomp",
        allow_except(json!([{"names": ["sync"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}])),
    );
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.start_ok();
    let output = bundle.corral_output(&["exec", &bundle.id, PROBE, "syscall", "sync"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(text(&output.stdout).trim(), "sync!errno=5");
}

#[test]
fn seccomp_notify_rejected_by_name() {
    if !require_root("seccomp_notify_rejected_by_name") {
        return;
    }
    let mut bundle = Bundle::new("seccomp-notify");
    bundle.set(
        "/linux/seccomp",
        allow_except(json!([{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}])),
    );
    bundle.set(
        "/linux/seccomp/listenerPath",
        json!("/run/no-such-listener.sock"),
    );
    let output = bundle.run();
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.to_ascii_lowercase().contains("notify") && stderr.contains("getppid"),
        "message does not name the action and the syscall: {stderr}"
    );
}
