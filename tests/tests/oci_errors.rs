//! Invalid config.json values: `corral run` fails before the process runs,
//! exits 125, and its message names the field and the value.

use corral_tests::oci::{describe, text, Bundle, PROBE};
use corral_tests::require_root;
use serde_json::{json, Value};

/// Runs a bundle whose config has `value` at `pointer`, and checks that it
/// fails with a message that contains every one of `expected`.
fn rejects(test: &str, pointer: &str, value: Value, expected: &[&str]) {
    let mut bundle = Bundle::new(test);
    bundle.args(&[PROBE, "exit", "0"]);
    bundle.set(pointer, value);
    let output = bundle.run();
    assert_eq!(
        output.status.code(),
        Some(125),
        "{pointer}: expected the runtime's failure status\n{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "{pointer}: the message lacks {needle:?}: {stderr}"
        );
    }
    assert!(
        bundle.state().is_none(),
        "{pointer}: a failed run left state behind"
    );
}

// The cases marked "field path" check that a value that fails to parse is
// reported with its place in config.json, not only with serde's message.
#[test]
fn errors_unknown_namespace_type() {
    if !require_root("errors_unknown_namespace_type") {
        return;
    }
    // field path
    rejects(
        "err-ns",
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "bogus"}]),
        &["linux.namespaces", "bogus"],
    );
}

#[test]
fn errors_unknown_capability() {
    if !require_root("errors_unknown_capability") {
        return;
    }
    // field path
    rejects(
        "err-cap",
        "/process/capabilities/bounding",
        json!(["CAP_KILL", "CAP_BOGUS"]),
        &["process.capabilities.bounding", "CAP_BOGUS"],
    );
}

#[test]
fn errors_unknown_rlimit() {
    if !require_root("errors_unknown_rlimit") {
        return;
    }
    // field path
    rejects(
        "err-rlimit",
        "/process/rlimits",
        json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
        &["process.rlimits", "RLIMIT_BOGUS"],
    );
}

#[test]
fn errors_wrong_json_type() {
    if !require_root("errors_wrong_json_type") {
        return;
    }
    // field path
    rejects(
        "err-type",
        "/process/user/uid",
        json!("root"),
        &["process.user.uid", "root"],
    );
}

#[test]
fn errors_relative_mount_destination() {
    if !require_root("errors_relative_mount_destination") {
        return;
    }
    rejects(
        "err-mount",
        "/mounts",
        json!([{"destination": "relative/path", "type": "tmpfs", "source": "tmpfs"}]),
        &["destination", "relative/path"],
    );
}

#[test]
fn errors_missing_root_path() {
    if !require_root("errors_missing_root_path") {
        return;
    }
    rejects(
        "err-root",
        "/root/path",
        json!("/no/such/rootfs"),
        &["root.path", "/no/such/rootfs"],
    );
}

#[test]
fn errors_unknown_sysctl() {
    if !require_root("errors_unknown_sysctl") {
        return;
    }
    rejects(
        "err-sysctl",
        "/linux/sysctl",
        json!({"kernel.no_such_setting": "1"}),
        &["kernel.no_such_setting", "1"],
    );
}

#[test]
fn errors_invalid_cgroups_path() {
    if !require_root("errors_invalid_cgroups_path") {
        return;
    }
    rejects(
        "err-cgroup",
        "/linux/cgroupsPath",
        json!("corral-test-escape/../../outside"),
        &["corral-test-escape/../../outside"],
    );
}

#[test]
fn errors_empty_args() {
    if !require_root("errors_empty_args") {
        return;
    }
    rejects("err-args", "/process/args", json!([]), &["process.args"]);
}

#[test]
fn errors_missing_hook_program() {
    if !require_root("errors_missing_hook_program") {
        return;
    }
    rejects(
        "err-hook",
        "/hooks",
        json!({"createRuntime": [{"path": "/no/such/hook"}]}),
        &["createRuntime", "/no/such/hook"],
    );
}

#[test]
fn errors_unknown_seccomp_action() {
    if !require_root("errors_unknown_seccomp_action") {
        return;
    }
    // field path
    rejects(
        "err-seccomp",
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_BOGUS"}),
        &["linux.seccomp.defaultAction", "SCMP_ACT_BOGUS"],
    );
}

#[test]
fn errors_invalid_device_type() {
    if !require_root("errors_invalid_device_type") {
        return;
    }
    // field path
    rejects(
        "err-device",
        "/linux/devices",
        json!([{"path": "/dev/x", "type": "q", "major": 1, "minor": 3}]),
        &["linux.devices", "q"],
    );
}
