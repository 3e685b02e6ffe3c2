//! Device access from inside a container under `linux.resources.devices`:
//! the devices controller enforces the rules on cgroup v1 and a device
//! program on cgroup v2, at create time and after `corral update`.

use std::fs;
use std::path::Path;

use corral_tests::oci::{describe, text, Bundle, PROBE};
use corral_tests::require_root;
use serde_json::{json, Value};

/// The probe's output for an open that the device cgroup rejected.
const EPERM: &str = "errno=1";
/// The probe's output for an allowed open of a device with no driver.
const ENXIO: &str = "errno=6";

/// Char major 61 is reserved for local and experimental use, so no driver
/// is registered for it. An open that the device rules allow fails with
/// ENXIO, and one they deny fails with EPERM before a driver is looked up.
const FREE_NODE: &str = "/dev/corral-free";

/// Docker's rules: every device denied, nodes of any device may be created,
/// and the standard devices used.
fn standard_rules() -> Vec<Value> {
    let mut rules = vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ];
    for minor in [3, 5, 7, 8, 9] {
        rules
            .push(json!({"allow": true, "type": "c", "major": 1, "minor": minor, "access": "rwm"}));
    }
    rules
}

fn mknod_capable(bundle: &mut Bundle) {
    let capabilities = ["CAP_MKNOD", "CAP_KILL"];
    bundle.set(
        "/process/capabilities",
        json!({"bounding": capabilities, "effective": capabilities, "permitted": capabilities}),
    );
}

/// Runs `command` in the container with `corral exec` and returns its
/// output's first line.
fn exec_line(bundle: &Bundle, command: &str) -> String {
    let output = bundle.corral_output(&["exec", &bundle.id, "/bin/sh", "-c", command]);
    assert!(output.status.success(), "{}", describe(&output));
    text(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn update_devices(bundle: &Bundle, rules: &[Value]) {
    let file = bundle.host_dir().join("resources.json");
    fs::write(&file, json!({ "devices": rules }).to_string()).unwrap();
    let update =
        bundle.corral_output(&["update", &bundle.id, "--resources", file.to_str().unwrap()]);
    assert!(update.status.success(), "{}", describe(&update));
}

fn cgroup_version() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    }
}

#[test]
fn devices_denied_node_stays_closed() {
    if !require_root("devices_denied_node_stays_closed") {
        return;
    }
    let mut bundle = Bundle::new("device-denied");
    mknod_capable(&mut bundle);
    bundle.set("/linux/resources/devices", json!(standard_rules()));
    let script = format!(
        "mknod {FREE_NODE} c 61 0 && echo mknod=ok; {PROBE} read {FREE_NODE}; \
         {PROBE} read /dev/null; mknod /dev/corral-disk b 61 0 && {PROBE} read /dev/corral-disk"
    );
    bundle.args(&["/bin/sh", "-c", &script]);
    let output = bundle.run_ok();
    let lines: Vec<&str> = output.lines().collect();
    let version = cgroup_version();
    assert_eq!(lines.first(), Some(&"mknod=ok"), "{version}: {output}");
    assert_eq!(lines.get(1), Some(&EPERM), "{version}: {output}");
    assert_eq!(lines.get(2), Some(&"bytes=0"), "{version}: {output}");
    assert_eq!(lines.get(3), Some(&EPERM), "{version}: {output}");
}

#[test]
fn devices_update_replaces_rules() {
    if !require_root("devices_update_replaces_rules") {
        return;
    }
    let mut bundle = Bundle::new("device-update");
    mknod_capable(&mut bundle);
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.set("/linux/resources/devices", json!(standard_rules()));
    bundle.start_ok();
    let version = cgroup_version();

    let read = format!("{PROBE} read {FREE_NODE}");
    let first = exec_line(&bundle, &format!("mknod {FREE_NODE} c 61 0 && {read}"));
    assert_eq!(first, EPERM, "{version}: before the update");

    // The list starts with a rule of type a, so it means the same on v1,
    // where it applies on top of the current rules, and on v2, where it
    // replaces them.
    let mut opened = standard_rules();
    opened.push(json!({"allow": true, "type": "c", "major": 61, "minor": 0, "access": "rw"}));
    update_devices(&bundle, &opened);
    assert_eq!(
        exec_line(&bundle, &read),
        ENXIO,
        "{version}: after allowing 61:0"
    );
    assert_eq!(
        exec_line(&bundle, &format!("{PROBE} read /dev/null")),
        "bytes=0",
        "{version}: /dev/null after the update"
    );

    update_devices(&bundle, &standard_rules());
    assert_eq!(
        exec_line(&bundle, &read),
        EPERM,
        "{version}: after the second update"
    );
}

#[test]
fn devices_update_adds_to_rules() {
    if !require_root("devices_update_adds_to_rules") {
        return;
    }
    let mut bundle = Bundle::new("device-update-adds");
    mknod_capable(&mut bundle);
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.set("/linux/resources/devices", json!(standard_rules()));
    bundle.start_ok();
    let version = cgroup_version();

    // A list without a rule of type a applies on top of the rules in force
    // on both versions: 61:0 opens, and every other device stays denied.
    let allow_one = [json!({"allow": true, "type": "c", "major": 61, "minor": 0, "access": "r"})];
    update_devices(&bundle, &allow_one);
    let script = format!(
        "mknod {FREE_NODE} c 61 0 && {PROBE} read {FREE_NODE}; \
         mknod /dev/corral-other c 61 1 && {PROBE} read /dev/corral-other"
    );
    let output = bundle.corral_output(&["exec", &bundle.id, "/bin/sh", "-c", &script]);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&ENXIO), "{version}: 61:0: {stdout}");
    assert_eq!(lines.get(1), Some(&EPERM), "{version}: 61:1: {stdout}");
    assert_eq!(
        exec_line(&bundle, &format!("{PROBE} read /dev/null")),
        "bytes=0",
        "{version}: /dev/null after the update"
    );
}

#[test]
fn devices_denied_without_rules() {
    if !require_root("devices_denied_without_rules") {
        return;
    }
    // No linux.resources at all: every device but the defaults is denied,
    // as with runc, so CAP_MKNOD cannot reach a host device.
    let mut bundle = Bundle::new("device-no-rules");
    mknod_capable(&mut bundle);
    let script = format!(
        "mknod {FREE_NODE} c 61 0 && echo mknod=ok || echo mknod=denied; \
         {PROBE} read /dev/null"
    );
    bundle.args(&["/bin/sh", "-c", &script]);
    let output = bundle.run_ok();
    let lines: Vec<&str> = output.lines().collect();
    let version = cgroup_version();
    assert_eq!(lines.first(), Some(&"mknod=denied"), "{version}: {output}");
    assert_eq!(lines.last(), Some(&"bytes=0"), "{version}: {output}");
}
