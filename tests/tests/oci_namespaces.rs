//! Namespaces new or joined by path, and the fields that act inside them:
//! hostname, domainname, sysctl and the cgroup namespace's view.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use corral_tests::oci::{describe, key_values, text, Bundle, PROBE};
use corral_tests::require_root;
use serde_json::json;

/// Namespace inodes of this test process, by the names in /proc/self/ns.
fn host_namespaces() -> BTreeMap<String, String> {
    fs::read_dir("/proc/self/ns")
        .expect("/proc/self/ns")
        .flatten()
        .filter_map(|entry| {
            let inode = fs::metadata(entry.path()).ok()?.ino();
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                inode.to_string(),
            ))
        })
        .collect()
}

#[test]
fn namespaces_new_for_each_type() {
    if !require_root("namespaces_new_for_each_type") {
        return;
    }
    let mut bundle = Bundle::new("new-ns");
    bundle.args(&[PROBE, "namespaces"]);
    let inside = key_values(&bundle.run_ok());
    let host = host_namespaces();
    for name in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        assert_ne!(inside.get(name), host.get(name), "{name} is the host's");
    }
    // Namespaces the spec does not list are shared with the runtime.
    assert_eq!(inside.get("user"), host.get("user"), "user namespace");
}

#[test]
fn namespaces_shared_when_not_listed() {
    if !require_root("namespaces_shared_when_not_listed") {
        return;
    }
    let mut bundle = Bundle::new("host-ns");
    bundle.args(&[PROBE, "namespaces"]);
    bundle.set(
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "pid"}]),
    );
    bundle.config["hostname"] = serde_json::Value::Null;
    let inside = key_values(&bundle.run_ok());
    let host = host_namespaces();
    for name in ["net", "ipc", "uts", "cgroup"] {
        assert_eq!(
            inside.get(name),
            host.get(name),
            "{name} should be the host's"
        );
    }
    assert_ne!(inside.get("mnt"), host.get("mnt"));
}

#[test]
fn namespaces_joined_by_path() {
    if !require_root("namespaces_joined_by_path") {
        return;
    }
    let mut first = Bundle::new("ns-owner");
    first.args(&[PROBE, "sleep", "600"]);
    first.set("/hostname", json!("owner"));
    first.start_ok();
    let pid = first.pid();

    let mut second = Bundle::new("ns-joiner");
    second.args(&[PROBE, "identity"]);
    second.config["hostname"] = serde_json::Value::Null;
    let join =
        |kind: &str, name: &str| json!({"type": kind, "path": format!("/proc/{pid}/ns/{name}")});
    second.set(
        "/linux/namespaces",
        json!([{"type": "pid"}, {"type": "mount"}, join("network", "net"),
               join("uts", "uts"), join("ipc", "ipc")]),
    );
    let values = key_values(&second.run_ok());
    assert_eq!(
        values["hostname"], "owner",
        "the uts namespace was not joined"
    );
    assert_eq!(
        values.get("link").map(String::as_str),
        Some("lo"),
        "{values:?}"
    );

    second.args(&[PROBE, "namespaces"]);
    let joined = key_values(&second.run_ok());
    for name in ["net", "uts", "ipc"] {
        let theirs = fs::metadata(format!("/proc/{pid}/ns/{name}"))
            .unwrap()
            .ino();
        assert_eq!(joined[name], theirs.to_string(), "{name} not joined");
    }
}

#[test]
fn namespaces_join_missing_path_names_it() {
    if !require_root("namespaces_join_missing_path_names_it") {
        return;
    }
    let mut bundle = Bundle::new("ns-missing");
    bundle.set(
        "/linux/namespaces",
        json!([{"type": "mount"}, {"type": "network", "path": "/proc/999999999/ns/net"}]),
    );
    let output = bundle.run();
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/proc/999999999/ns/net"), "{stderr}");
}

#[test]
fn namespaces_hostname_and_domainname() {
    if !require_root("namespaces_hostname_and_domainname") {
        return;
    }
    let mut bundle = Bundle::new("uts");
    bundle.set("/hostname", json!("box-one"));
    bundle.set("/domainname", json!("example.internal"));
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["hostname"], "box-one");
    assert_eq!(values["domainname"], "example.internal");
    assert_ne!(
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "box-one",
        "the host's hostname changed"
    );
}

#[test]
fn namespaces_sysctl_in_new_namespaces() {
    if !require_root("namespaces_sysctl_in_new_namespaces") {
        return;
    }
    let host_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut bundle = Bundle::new("sysctl");
    bundle.set(
        "/linux/sysctl",
        json!({"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1",
               "net.ipv4.ping_group_range": "0 2147483647"}),
    );
    bundle.args(&[
        PROBE,
        "sysctl",
        "net.ipv4.ip_forward",
        "kernel.shm_rmid_forced",
        "net.ipv4.ping_group_range",
    ]);
    let values = key_values(&bundle.run_ok());
    assert_eq!(values["net.ipv4.ip_forward"], "1");
    assert_eq!(values["kernel.shm_rmid_forced"], "1");
    assert_eq!(values["net.ipv4.ping_group_range"], "0\t2147483647");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward,
        "the host's sysctl changed"
    );
}

#[test]
fn namespaces_cgroup_namespace_root() {
    if !require_root("namespaces_cgroup_namespace_root") {
        return;
    }
    let mut bundle = Bundle::new("cgroupns");
    bundle.args(&["/bin/cat", "/proc/self/cgroup"]);
    let output = bundle.run_ok();
    for line in output.lines() {
        assert!(line.ends_with(":/"), "not the namespace root: {line}");
    }

    let mut shared = Bundle::new("no-cgroupns");
    shared.args(&["/bin/cat", "/proc/self/cgroup"]);
    shared.set(
        "/linux/namespaces",
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]),
    );
    let output = shared.run_ok();
    assert!(
        output.lines().any(|l| l.contains(&shared.cgroup_path)),
        "without a cgroup namespace the full path shows: {output}"
    );
}

/// Returns the first field of /proc/uptime: seconds on the boot-time clock
/// of this test process's time namespace.
fn host_uptime() -> f64 {
    uptime_seconds(&fs::read_to_string("/proc/uptime").expect("read /proc/uptime"))
}

fn uptime_seconds(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("no uptime in {text:?}"))
}

/// Parses /proc/self/timens_offsets into (clock, seconds, nanoseconds).
fn offsets(text: &str) -> Vec<(String, i64, i64)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [clock, seconds, nanoseconds] = fields[..] else {
                return None;
            };
            Some((
                clock.to_string(),
                seconds.parse().ok()?,
                nanoseconds.parse().ok()?,
            ))
        })
        .collect()
}

/// Runs a script in the container that prints its timens_offsets, the
/// line `---`, its /proc/uptime, `---` and the probe's namespaces, and
/// returns the three parts.
fn time_view(bundle: &mut Bundle) -> (String, f64, BTreeMap<String, String>) {
    let script = format!(
        "cat /proc/self/timens_offsets; echo ---; cat /proc/uptime; echo ---; exec {PROBE} namespaces"
    );
    bundle.args(&["/bin/sh", "-c", &script]);
    let output = bundle.run_ok();
    let parts: Vec<&str> = output.split("---\n").collect();
    let [offsets, uptime, namespaces] = parts[..] else {
        panic!("unexpected output: {output}");
    };
    (
        offsets.to_string(),
        uptime_seconds(uptime),
        key_values(namespaces),
    )
}

/// Returns whether the kernel has time namespaces, printing a SKIP line for
/// `test` when it has not.
fn has_time_namespaces(test: &str) -> bool {
    if std::path::Path::new("/proc/self/ns/time").exists() {
        return true;
    }
    eprintln!("SKIP {test}: the kernel has no time namespaces (Linux 5.6)");
    false
}

#[test]
fn namespaces_time() {
    if !require_root("namespaces_time") || !has_time_namespaces("namespaces_time") {
        return;
    }
    const MONOTONIC: i64 = 86_400;
    const BOOTTIME: i64 = 10 * 86_400;
    // The minimal init's child is the process. In a new user namespace,
    // that namespace owns the time namespace and its root sets the offsets.
    let cases = [
        ("plain", false, false),
        ("minimal init", true, false),
        ("user namespace", false, true),
    ];
    for (case, with_init, with_user_namespace) in cases {
        let mut bundle = Bundle::new("timens");
        bundle.push("/linux/namespaces", json!({"type": "time"}));
        bundle.set(
            "/linux/timeOffsets",
            json!({"monotonic": {"secs": MONOTONIC, "nanosecs": 500},
                   "boottime": {"secs": BOOTTIME}}),
        );
        if with_init {
            bundle.set("/annotations", json!({"run.corral.init": "true"}));
        }
        if with_user_namespace {
            bundle.push("/linux/namespaces", json!({"type": "user"}));
            let mapping = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            bundle.set("/linux/uidMappings", mapping.clone());
            bundle.set("/linux/gidMappings", mapping);
        }
        let before = host_uptime();
        let (offsets_text, uptime, namespaces) = time_view(&mut bundle);
        let after = host_uptime();

        assert_ne!(
            namespaces.get("time"),
            host_namespaces().get("time"),
            "{case}: the process is in the host's time namespace"
        );
        let offsets = offsets(&offsets_text);
        assert!(
            offsets.contains(&("monotonic".to_string(), MONOTONIC, 500)),
            "{case}: monotonic offset: {offsets_text}"
        );
        assert!(
            offsets.contains(&("boottime".to_string(), BOOTTIME, 0)),
            "{case}: boottime offset: {offsets_text}"
        );
        // The boot-time clock inside runs the offset ahead of the host's.
        let shifted = BOOTTIME as f64;
        assert!(
            uptime >= before + shifted && uptime <= after + shifted + 1.0,
            "{case}: uptime {uptime} inside, {before}..{after} on the host"
        );
    }
}

#[test]
fn namespaces_time_joined_by_exec() {
    let test = "namespaces_time_joined_by_exec";
    if !require_root(test) || !has_time_namespaces(test) {
        return;
    }
    const BOOTTIME: i64 = 5 * 86_400;
    // With the minimal init, PID 1 stays in the host's time namespace and
    // only its child runs in the container's.
    for with_init in [false, true] {
        let mut bundle = Bundle::new("timens-exec");
        bundle.push("/linux/namespaces", json!({"type": "time"}));
        bundle.set(
            "/linux/timeOffsets",
            json!({"boottime": {"secs": BOOTTIME}}),
        );
        if with_init {
            bundle.set("/annotations", json!({"run.corral.init": "true"}));
        }
        bundle.args(&[PROBE, "sleep", "600"]);
        bundle.start_ok();
        let before = host_uptime();
        let output = bundle.corral_output(&["exec", &bundle.id, "/bin/cat", "/proc/uptime"]);
        let after = host_uptime();
        assert!(
            output.status.success(),
            "init {with_init}: {}",
            describe(&output)
        );
        let uptime = uptime_seconds(&String::from_utf8_lossy(&output.stdout));
        let shifted = BOOTTIME as f64;
        assert!(
            uptime >= before + shifted && uptime <= after + shifted + 1.0,
            "init {with_init}: uptime {uptime} in exec, {before}..{after} on the host"
        );
    }
}

/// A process started by the test in a new time namespace, killed on drop.
struct TimeNamespaceHolder {
    child: std::process::Child,
}

impl Drop for TimeNamespaceHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn namespaces_time_joined_by_path() {
    let test = "namespaces_time_joined_by_path";
    if !require_root(test) || !has_time_namespaces(test) {
        return;
    }
    const BOOTTIME: i64 = 3 * 86_400;
    // unshare(1) execs sleep, which the kernel moves into the new namespace.
    let spawned = std::process::Command::new("unshare")
        .args(["--time", "--boottime", &BOOTTIME.to_string(), "sleep", "60"])
        .spawn();
    let holder = match spawned {
        Ok(child) => TimeNamespaceHolder { child },
        Err(error) => {
            eprintln!("SKIP {test}: failed to start unshare(1) from util-linux: {error}");
            return;
        }
    };
    let path = format!("/proc/{}/ns/time", holder.child.id());
    let host = host_namespaces();
    let joined = corral_tests::wait_until(std::time::Duration::from_secs(5), || {
        fs::metadata(&path).is_ok_and(|m| Some(&m.ino().to_string()) != host.get("time"))
    });
    assert!(joined, "unshare did not enter a new time namespace");
    let inode = fs::metadata(&path).expect("namespace of unshare").ino();

    let mut bundle = Bundle::new("timens-path");
    bundle.push("/linux/namespaces", json!({"type": "time", "path": path}));
    let before = host_uptime();
    let (_, uptime, namespaces) = time_view(&mut bundle);
    let after = host_uptime();
    assert_eq!(
        namespaces.get("time"),
        Some(&inode.to_string()),
        "the process is not in the joined time namespace"
    );
    let shifted = BOOTTIME as f64;
    assert!(
        uptime >= before + shifted && uptime <= after + shifted + 1.0,
        "uptime {uptime} inside, {before}..{after} on the host"
    );
    drop(holder);
}

#[test]
fn namespaces_time_offsets_validated() {
    let test = "namespaces_time_offsets_validated";
    if !require_root(test) || !has_time_namespaces(test) {
        return;
    }
    let cases = [
        (
            "timens-no-ns",
            json!({"monotonic": {"secs": 1}}),
            false,
            "linux.timeOffsets",
        ),
        (
            "timens-clock",
            json!({"realtime": {"secs": 1}}),
            true,
            "linux.timeOffsets.realtime",
        ),
        (
            "timens-nanos",
            json!({"boottime": {"secs": 1, "nanosecs": 1_000_000_000u32}}),
            true,
            "linux.timeOffsets.boottime.nanosecs",
        ),
        // Valid in form, but the kernel rejects an offset that would take
        // the clock below zero.
        (
            "timens-negative",
            json!({"monotonic": {"secs": -4_000_000_000i64}}),
            true,
            "linux.timeOffsets",
        ),
    ];
    for (name, offsets, new_namespace, field) in cases {
        let mut bundle = Bundle::new(name);
        if new_namespace {
            bundle.push("/linux/namespaces", json!({"type": "time"}));
        }
        bundle.set("/linux/timeOffsets", offsets);
        let output = bundle.run();
        assert!(!output.status.success(), "{name}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(field),
            "{name}: the message does not name {field}: {stderr}"
        );
        assert!(bundle.state().is_none(), "{name}: a failed run left state");
    }
}

#[test]
fn namespaces_user_with_mappings() {
    if !require_root("namespaces_user_with_mappings") {
        return;
    }
    let mut bundle = Bundle::new("userns");
    bundle.push("/linux/namespaces", json!({"type": "user"}));
    bundle.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    bundle.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    bundle.args(&["/bin/cat", "/proc/self/uid_map", "/proc/self/gid_map"]);
    let output = bundle.run_ok();
    let maps: Vec<Vec<&str>> = output
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(maps, [["0", "100000", "65536"], ["0", "100000", "65536"]]);
}

#[test]
fn namespaces_user_mappings_validated() {
    if !require_root("namespaces_user_mappings_validated") {
        return;
    }
    let mut bundle = Bundle::new("userns-overlap");
    bundle.push("/linux/namespaces", json!({"type": "user"}));
    bundle.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 1000},
               {"containerID": 500, "hostID": 200000, "size": 1000}]),
    );
    bundle.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    let output = bundle.run();
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("uidMappings"),
        "message does not name the field: {stderr}"
    );
    assert!(
        stderr.contains("overlap"),
        "message does not say why: {stderr}"
    );
}

#[test]
fn namespaces_user_joined_by_exec() {
    if !require_root("namespaces_user_joined_by_exec") {
        return;
    }
    let mut bundle = Bundle::new("userns-exec");
    bundle.push("/linux/namespaces", json!({"type": "user"}));
    let mapping = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    bundle.set("/linux/uidMappings", mapping.clone());
    bundle.set("/linux/gidMappings", mapping);
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.start_ok();

    // The process that exec starts must be confined as the container's
    // own: in its user namespace, as the host UID that its root maps to.
    let output = bundle.corral_output(&[
        "exec",
        &bundle.id,
        "/bin/sh",
        "-c",
        "cat /proc/self/uid_map; touch /tmp/exec-owned",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let map: Vec<String> = text(&output.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(map, ["0", "100000", "65536"], "uid_map seen by exec");
    let created = fs::metadata(bundle.rootfs().join("tmp/exec-owned")).expect("file made by exec");
    assert_eq!(
        created.uid(),
        100000,
        "host owner of a file that exec created"
    );
}
