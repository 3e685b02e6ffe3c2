//! Namespaces new or joined by path, and the fields that act inside them:
//! hostname, domainname, sysctl and the cgroup namespace's view.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use corral_tests::oci::{describe, key_values, Bundle, PROBE};
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

// NOTE: fails until the runtime creates new time namespaces, which it
// rejects now with a clear message. clone(2) cannot take CLONE_NEWTIME, so the init
// must unshare it (it applies to children only) or clone with clone3.
#[test]
#[ignore = "not supported yet: the runtime rejects a new time namespace"]
fn namespaces_time() {
    if !require_root("namespaces_time") {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!("SKIP namespaces_time: the kernel has no time namespaces");
        return;
    }
    let mut bundle = Bundle::new("timens");
    bundle.push("/linux/namespaces", json!({"type": "time"}));
    bundle.args(&[PROBE, "namespaces"]);
    let inside = key_values(&bundle.run_ok());
    assert_ne!(inside.get("time"), host_namespaces().get("time"));
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
