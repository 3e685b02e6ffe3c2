//! The runc command-line contract: create, start, state, kill, delete, run,
//! exec, ps, list, pause, resume, update, events, features, spec, the
//! hooks, and the global flags.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use corral_runtime::cgroups::Hierarchy;
use corral_runtime::state::CgroupPaths;
use corral_tests::host::is_cgroup_v2;
use corral_tests::oci::{describe, key_values, text, Bundle, PROBE};
use corral_tests::{require_root, wait_until};
use serde_json::{json, Value};

/// Starts a container whose process sleeps, for tests that act on it.
fn sleeping(test: &str) -> Bundle {
    let mut bundle = Bundle::new(test);
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.start_ok();
    bundle
}

fn process_exists(pid: i32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie has exited and waits only for its parent to reap it.
    !stat.is_empty() && !stat.contains(") Z ")
}

#[test]
fn lifecycle_create_start_stop_states() {
    if !require_root("lifecycle_create_start_stop_states") {
        return;
    }
    let mut bundle = Bundle::new("states");
    let marker = "/started";
    bundle.args(&[
        "/bin/sh",
        "-c",
        "touch /started; exec /bin/corral-probe sleep 600",
    ]);
    bundle.create_ok();

    let state = bundle.state().expect("state after create");
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["id"], bundle.id.as_str());
    assert_eq!(
        state["ociVersion"].as_str().map(|v| v.starts_with("1.")),
        Some(true)
    );
    let bundle_path = fs::canonicalize(bundle.path()).unwrap();
    assert_eq!(state["bundle"], bundle_path.display().to_string());
    let pid = state["pid"].as_i64().expect("created container has a pid") as i32;
    assert!(process_exists(pid), "init {pid} is not alive after create");
    assert!(
        !bundle
            .rootfs()
            .join(marker.trim_start_matches('/'))
            .exists(),
        "the process ran before start"
    );

    let start = bundle.corral_output(&["start", &bundle.id]);
    assert!(start.status.success(), "{}", describe(&start));
    assert_eq!(bundle.status(), "running");
    assert!(
        wait_until(Duration::from_secs(5), || bundle
            .rootfs()
            .join("started")
            .exists()),
        "the process did not run after start"
    );
    let again = bundle.corral_output(&["start", &bundle.id]);
    assert!(
        !again.status.success(),
        "a second start must fail: {}",
        describe(&again)
    );

    let kill = bundle.corral_output(&["kill", &bundle.id, "KILL"]);
    assert!(kill.status.success(), "{}", describe(&kill));
    assert!(
        bundle.wait_for_status("stopped"),
        "status after kill: {}",
        bundle.status()
    );

    let delete = bundle.corral_output(&["delete", &bundle.id]);
    assert!(delete.status.success(), "{}", describe(&delete));
    assert!(bundle.state().is_none(), "state remains after delete");
    assert!(!bundle.root().join(&bundle.id).exists());
}

#[test]
fn lifecycle_hooks_get_state_on_stdin() {
    if !require_root("lifecycle_hooks_get_state_on_stdin") {
        return;
    }
    let mut bundle = Bundle::new("hooks");
    let dir = bundle.host_dir();
    let record = |point: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("cat > {0}/{point}.json; echo {point} >> {0}/order", dir.display())]})
    };
    bundle.set(
        "/hooks",
        json!({
            "prestart": [record("prestart")],
            "createRuntime": [record("createRuntime")],
            "createContainer": [record("createContainer")],
            // startContainer runs inside the container, after pivot_root.
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /startContainer.json"]}],
            "poststart": [record("poststart")],
            "poststop": [record("poststop")],
        }),
    );
    bundle.args(&[PROBE, "exit", "0"]);
    let output = bundle.run();
    assert!(output.status.success(), "{}", describe(&output));

    let order = fs::read_to_string(dir.join("order")).unwrap_or_default();
    let order: Vec<&str> = order.lines().collect();
    assert_eq!(
        order,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ],
        "hooks ran out of order"
    );
    let read = |path: &Path| -> Value {
        let body = fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("no state from {}: {error}", path.display()));
        serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("invalid state JSON in {}: {error}", path.display()))
    };
    for (point, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let state = read(&dir.join(format!("{point}.json")));
        assert_eq!(state["id"], bundle.id.as_str(), "{point}: {state}");
        assert_eq!(state["status"], status, "{point}: {state}");
        assert!(
            state["pid"].as_i64().is_some(),
            "{point} has no pid: {state}"
        );
        assert!(
            state["bundle"].is_string(),
            "{point} has no bundle: {state}"
        );
    }
    let start_state = read(&bundle.rootfs().join("startContainer.json"));
    assert_eq!(start_state["id"], bundle.id.as_str(), "{start_state}");
}

#[test]
fn lifecycle_failing_hook_fails_create() {
    if !require_root("lifecycle_failing_hook_fails_create") {
        return;
    }
    let mut bundle = Bundle::new("hook-fails");
    bundle.set(
        "/hooks",
        json!({"createRuntime": [{"path": "/bin/false", "args": ["false"]}]}),
    );
    let output = bundle.create();
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("createRuntime") && stderr.contains("/bin/false"),
        "message does not name the hook: {stderr}"
    );
    assert!(bundle.state().is_none(), "a failed create leaves state");

    let mut bundle = Bundle::new("hook-timeout");
    bundle.set(
        "/hooks",
        json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}),
    );
    let output = bundle.create();
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("timed out"),
        "no timeout in the message: {}",
        text(&output.stderr)
    );
}

#[test]
fn lifecycle_kill_all_reaches_every_process() {
    if !require_root("lifecycle_kill_all_reaches_every_process") {
        return;
    }
    let mut bundle = Bundle::new("kill-all");
    bundle.args(&[
        "/bin/sh",
        "-c",
        "sleep 600 & sleep 600 & exec /bin/corral-probe sleep 600",
    ]);
    bundle.start_ok();
    let mut pids: Vec<i32> = Vec::new();
    let listed = wait_until(Duration::from_secs(5), || {
        let ps = bundle.corral_output(&["ps", "--format", "json", &bundle.id]);
        pids = serde_json::from_slice(&ps.stdout).unwrap_or_default();
        pids.len() == 3
    });
    assert!(listed, "ps shows {pids:?}, expected 3 processes");
    assert!(pids.contains(&bundle.pid()), "ps misses the init: {pids:?}");

    let kill = bundle.corral_output(&["kill", "--all", &bundle.id, "KILL"]);
    assert!(kill.status.success(), "{}", describe(&kill));
    assert!(
        wait_until(Duration::from_secs(5), || pids
            .iter()
            .all(|pid| !process_exists(*pid))),
        "processes survived kill --all: {pids:?}"
    );
    assert!(bundle.wait_for_status("stopped"), "{}", bundle.status());
}

#[test]
fn lifecycle_delete_needs_force_when_running() {
    if !require_root("lifecycle_delete_needs_force_when_running") {
        return;
    }
    let bundle = sleeping("delete-force");
    let pid = bundle.pid();
    let cgroup = bundle.cgroup_dir("memory");
    assert!(cgroup.is_dir(), "no cgroup at {}", cgroup.display());

    let refused = bundle.corral_output(&["delete", &bundle.id]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        text(&refused.stderr).contains("--force"),
        "message does not suggest --force: {}",
        text(&refused.stderr)
    );
    assert_eq!(bundle.status(), "running");

    let forced = bundle.corral_output(&["delete", "--force", &bundle.id]);
    assert!(forced.status.success(), "{}", describe(&forced));
    assert!(bundle.state().is_none(), "state remains");
    assert!(!process_exists(pid), "init {pid} survived delete --force");
    assert!(!cgroup.exists(), "cgroup {} remains", cgroup.display());
}

#[test]
fn lifecycle_pause_and_resume() {
    if !require_root("lifecycle_pause_and_resume") {
        return;
    }
    let bundle = sleeping("pause");
    let pause = bundle.corral_output(&["pause", &bundle.id]);
    assert!(pause.status.success(), "{}", describe(&pause));
    assert_eq!(bundle.status(), "paused");
    assert_eq!(freezer_state(&bundle), "FROZEN");
    let stat = fs::read_to_string(format!("/proc/{}/stat", bundle.pid())).unwrap();
    assert!(
        stat.contains(") D ") || stat.contains(") S "),
        "frozen init state: {stat}"
    );

    let again = bundle.corral_output(&["pause", &bundle.id]);
    assert!(
        !again.status.success(),
        "pausing a paused container must fail"
    );

    let resume = bundle.corral_output(&["resume", &bundle.id]);
    assert!(resume.status.success(), "{}", describe(&resume));
    assert_eq!(bundle.status(), "running");
    assert_eq!(freezer_state(&bundle), "THAWED");
}

/// Reads the container's freezer state and returns it as v1 names it,
/// `FROZEN` or `THAWED`. v2 reports it as 1 or 0 in `cgroup.freeze`.
fn freezer_state(bundle: &Bundle) -> String {
    if !is_cgroup_v2() {
        return bundle.cgroup_file("freezer", "freezer.state");
    }
    match bundle.cgroup_file("freezer", "cgroup.freeze").as_str() {
        "1" => "FROZEN".to_string(),
        "0" => "THAWED".to_string(),
        other => panic!("cgroup.freeze holds {other:?}"),
    }
}

/// Reads the container's memory limit: v1 `memory.limit_in_bytes`, v2
/// `memory.max`.
fn memory_limit(bundle: &Bundle) -> String {
    if is_cgroup_v2() {
        bundle.cgroup_file("memory", "memory.max")
    } else {
        bundle.cgroup_file("memory", "memory.limit_in_bytes")
    }
}

#[test]
fn lifecycle_update_read_back() {
    if !require_root("lifecycle_update_read_back") {
        return;
    }
    let mut bundle = Bundle::new("update");
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.set(
        "/linux/resources",
        json!({"memory": {"limit": 128 << 20}, "pids": {"limit": 100}}),
    );
    bundle.start_ok();
    assert_eq!(memory_limit(&bundle), (128u64 << 20).to_string());

    let update = bundle.corral_output(&[
        "update",
        &bundle.id,
        "--memory",
        "64M",
        "--memory-reservation",
        "32M",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        "--cpu-share",
        "512",
        "--pids-limit",
        "50",
        "--cpuset-cpus",
        "0",
    ]);
    assert!(update.status.success(), "{}", describe(&update));
    assert_eq!(memory_limit(&bundle), (64u64 << 20).to_string());
    if is_cgroup_v2() {
        let reservation = bundle.cgroup_file("memory", "memory.low");
        assert_eq!(reservation, (32u64 << 20).to_string());
        assert_eq!(bundle.cgroup_file("cpu", "cpu.max"), "20000 100000");
        let weight = corral_config::convert::shares_to_weight(512);
        assert_eq!(bundle.cgroup_file("cpu", "cpu.weight"), weight.to_string());
    } else {
        let reservation = bundle.cgroup_file("memory", "memory.soft_limit_in_bytes");
        assert_eq!(reservation, (32u64 << 20).to_string());
        assert_eq!(bundle.cgroup_file("cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(bundle.cgroup_file("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(bundle.cgroup_file("cpu", "cpu.shares"), "512");
    }
    assert_eq!(bundle.cgroup_file("pids", "pids.max"), "50");
    assert_eq!(bundle.cgroup_file("cpuset", "cpuset.cpus"), "0");

    let file = bundle.host_dir().join("resources.json");
    fs::write(
        &file,
        json!({"memory": {"limit": 96 << 20}, "pids": {"limit": 70}}).to_string(),
    )
    .unwrap();
    let update =
        bundle.corral_output(&["update", &bundle.id, "--resources", file.to_str().unwrap()]);
    assert!(update.status.success(), "{}", describe(&update));
    assert_eq!(memory_limit(&bundle), (96u64 << 20).to_string());
    assert_eq!(bundle.cgroup_file("pids", "pids.max"), "70");

    let invalid = bundle.corral_output(&["update", &bundle.id, "--memory", "lots"]);
    assert!(!invalid.status.success());
    assert!(
        text(&invalid.stderr).contains("lots"),
        "message does not name the value: {}",
        text(&invalid.stderr)
    );
}

#[test]
fn lifecycle_events_stats_json() {
    if !require_root("lifecycle_events_stats_json") {
        return;
    }
    let mut bundle = Bundle::new("events");
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.set(
        "/linux/resources",
        json!({"memory": {"limit": 256 << 20}, "pids": {"limit": 64}}),
    );
    bundle.start_ok();
    let output = bundle.corral_output(&["events", "--stats", &bundle.id]);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let event: Value = serde_json::from_str(stdout.lines().next().unwrap_or(""))
        .unwrap_or_else(|error| panic!("events --stats is not JSON ({error}): {stdout}"));
    assert_eq!(event["type"], "stats", "{event}");
    assert_eq!(event["id"], bundle.id.as_str(), "{event}");
    let data = &event["data"];
    assert!(data["cpu"]["usage"]["total"].as_u64() > Some(0), "{event}");
    assert!(
        data["memory"]["usage"]["usage"].as_u64() > Some(0),
        "{event}"
    );
    assert_eq!(
        data["memory"]["usage"]["limit"],
        json!(256u64 << 20),
        "{event}"
    );
    assert_eq!(data["pids"]["current"], json!(1), "{event}");
    assert_eq!(data["pids"]["limit"], json!(64), "{event}");
}

#[test]
fn lifecycle_features_json() {
    if !require_root("lifecycle_features_json") {
        return;
    }
    let bundle = Bundle::new("features");
    let output = bundle.corral_output(&["features"]);
    assert!(output.status.success(), "{}", describe(&output));
    let features: Value = serde_json::from_slice(&output.stdout).expect("features is JSON");
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(features["ociVersionMax"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.")));
    let list = |pointer: &str| -> Vec<String> {
        features
            .pointer(pointer)
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("features has no {pointer}"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let hooks = list("/hooks");
    for hook in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(
            hooks.iter().any(|h| h == hook),
            "hooks lack {hook}: {hooks:?}"
        );
    }
    let namespaces = list("/linux/namespaces");
    for namespace in ["cgroup", "ipc", "mount", "network", "pid", "uts"] {
        assert!(
            namespaces.iter().any(|n| n == namespace),
            "namespaces lack {namespace}: {namespaces:?}"
        );
    }
    let options = list("/mountOptions");
    for option in ["rbind", "ro", "nosuid", "rslave", "private"] {
        assert!(
            options.iter().any(|o| o == option),
            "mountOptions lack {option}"
        );
    }
    assert!(list("/linux/capabilities")
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));
    assert_eq!(features["linux"]["seccomp"]["enabled"], true);
    assert_eq!(features["linux"]["cgroup"]["v1"], true);
}

#[test]
fn lifecycle_exec_joins_the_container() {
    if !require_root("lifecycle_exec_joins_the_container") {
        return;
    }
    let bundle = sleeping("exec");
    let output = bundle.corral_output(&["exec", &bundle.id, PROBE, "identity"]);
    assert!(output.status.success(), "{}", describe(&output));
    let values = key_values(&text(&output.stdout));
    assert_eq!(
        values["hostname"], "oci-test",
        "exec is not in the uts namespace"
    );
    assert_ne!(values["pid"], "1", "exec must not be PID 1");
    assert!(
        values["pid"].parse::<i32>().is_ok_and(|pid| pid < 100),
        "exec is not in the container's PID namespace: {values:?}"
    );
    let links: Vec<&String> = values.keys().filter(|k| k.starts_with("link")).collect();
    assert!(
        links.len() <= 1,
        "exec is not in the network namespace: {values:?}"
    );

    let status = bundle.corral_output(&["exec", &bundle.id, PROBE, "exit", "3"]);
    assert_eq!(status.status.code(), Some(3), "{}", describe(&status));

    let missing = bundle.corral_output(&["exec", &bundle.id, "/bin/missing"]);
    assert_eq!(missing.status.code(), Some(127), "{}", describe(&missing));
    assert!(text(&missing.stderr).contains("/bin/missing"));

    let process = bundle.host_dir().join("process.json");
    fs::write(
        &process,
        json!({"args": [PROBE, "env"], "env": ["PATH=/bin", "ONE=a=b", "EMPTY="], "cwd": "/tmp",
               "user": {"uid": 0, "gid": 0}})
        .to_string(),
    )
    .unwrap();
    let output = bundle.corral_output(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--env",
        "TWO=c",
        &bundle.id,
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let env = text(&output.stdout);
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        ["EMPTY=", "ONE=a=b", "PATH=/bin", "TWO=c"],
        "exec --process environment"
    );
}

#[test]
fn lifecycle_ps_and_list() {
    if !require_root("lifecycle_ps_and_list") {
        return;
    }
    let bundle = sleeping("list");
    let pid = bundle.pid();
    let ps = bundle.corral_output(&["ps", "--format", "json", &bundle.id]);
    assert!(ps.status.success(), "{}", describe(&ps));
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).expect("ps --format json");
    assert_eq!(pids, [pid]);

    let list = bundle.corral_output(&["list", "--format", "json"]);
    assert!(list.status.success(), "{}", describe(&list));
    let states: Vec<Value> = serde_json::from_slice(&list.stdout).expect("list --format json");
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0]["id"], bundle.id.as_str());
    assert_eq!(states[0]["status"], "running");
    assert_eq!(states[0]["pid"], json!(pid));

    let quiet = bundle.corral_output(&["list", "--quiet"]);
    assert_eq!(text(&quiet.stdout).trim(), bundle.id);
    let table = text(&bundle.corral_output(&["list"]).stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(&bundle.id) && table.contains("running"),
        "{table}"
    );
}

#[test]
fn lifecycle_run_detach_returns_while_running() {
    if !require_root("lifecycle_run_detach_returns_while_running") {
        return;
    }
    let mut bundle = Bundle::new("detach");
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.write_config();
    let pid_file = bundle.host_dir().join("pid");
    let mut command = bundle.corral();
    command
        .args(["run", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args([&bundle.id, "--bundle"])
        .arg(bundle.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = command.status().expect("run --detach");
    assert!(status.success(), "run --detach exited with {status}");
    assert_eq!(bundle.status(), "running");
    let written = fs::read_to_string(&pid_file).expect("pid file");
    assert_eq!(written.trim(), bundle.pid().to_string());
}

#[test]
fn lifecycle_spec_writes_default_config() {
    if !require_root("lifecycle_spec_writes_default_config") {
        return;
    }
    let bundle = Bundle::new("spec");
    let dir = bundle.host_dir();
    let output = bundle.corral_output(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", describe(&output));
    let config: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["root"]["path"], "rootfs");
    assert!(config["process"]["args"].is_array());
    assert!(config["linux"]["namespaces"]
        .as_array()
        .is_some_and(|n| n.len() >= 5));

    let again = bundle.corral_output(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(!again.status.success(), "spec overwrote config.json");
    assert!(text(&again.stderr).contains("already exists"));

    // The default config runs as it is on a busybox root.
    let mut run = Bundle::new("spec-run");
    run.config = config;
    run.set("/linux/cgroupsPath", json!(run.cgroup_path.clone()));
    run.args(&["/bin/sh", "-c", "echo ran"]);
    assert_eq!(run.run_ok().trim(), "ran");
}

#[test]
fn lifecycle_global_flags() {
    if !require_root("lifecycle_global_flags") {
        return;
    }
    let bundle = Bundle::new("flags");
    let systemd = bundle.corral_output(&["--systemd-cgroup", "list"]);
    assert!(!systemd.status.success());
    assert!(
        text(&systemd.stderr).contains("--systemd-cgroup"),
        "{}",
        describe(&systemd)
    );

    let log = bundle.host_dir().join("log.json");
    let output = bundle.corral_output(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "no-such-container",
    ]);
    assert!(!output.status.success());
    let logged = fs::read_to_string(&log).unwrap_or_default();
    let line: Value = serde_json::from_str(logged.lines().next().unwrap_or(""))
        .unwrap_or_else(|error| panic!("log line is not JSON ({error}): {logged}"));
    assert!(
        line.to_string().contains("no-such-container"),
        "log line does not name the container: {line}"
    );
}

/// Returns the directories of the default cgroup parent `corral` below this
/// process's cgroups that exist and have no child cgroup, so that a parent
/// in use by a container of a test running at the same time is not counted.
fn empty_default_parents() -> Vec<std::path::PathBuf> {
    let hierarchy = Hierarchy::detect().expect("cgroup hierarchies");
    let (paths, _) = hierarchy.locate("corral").expect("default parent path");
    let dirs: Vec<std::path::PathBuf> = match paths {
        CgroupPaths::V1 { controllers } => controllers.into_values().collect(),
        CgroupPaths::V2 { path } => vec![path],
    };
    dirs.into_iter()
        .filter(|dir| dir.is_dir())
        .filter(|dir| {
            fs::read_dir(dir)
                .map(|entries| !entries.flatten().any(|e| e.path().is_dir()))
                .unwrap_or(false)
        })
        .collect()
}

/// Removes the default parent if a failed test left it empty.
struct DefaultParentGuard;

impl Drop for DefaultParentGuard {
    fn drop(&mut self) {
        if let Ok(hierarchy) = Hierarchy::detect() {
            let _ = hierarchy.remove_if_empty("corral");
        }
    }
}

#[test]
fn lifecycle_default_cgroup_parent_removed() {
    if !require_root("lifecycle_default_cgroup_parent_removed") {
        return;
    }
    let _guard = DefaultParentGuard;
    // Without linux.cgroupsPath the cgroup is corral/ID in every hierarchy.
    let mut bundle = Bundle::new("default-parent");
    bundle.args(&[PROBE, "exit", "0"]);
    bundle.config["linux"]
        .as_object_mut()
        .expect("linux object")
        .remove("cgroupsPath");
    bundle.cgroup_path = format!("corral/{}", bundle.id);
    bundle.start_ok();
    let own = bundle.cgroup_dir("pids");
    assert!(own.is_dir(), "{} is missing while running", own.display());
    let delete = bundle.corral_output(&["delete", "--force", &bundle.id]);
    assert!(delete.status.success(), "{}", describe(&delete));
    assert!(!own.exists(), "{} remains after delete", own.display());
    assert_eq!(
        empty_default_parents(),
        Vec::<std::path::PathBuf>::new(),
        "delete left the empty default parent"
    );

    // A create that fails after making the cgroup removes it and the parent.
    let mut failing = Bundle::new("default-parent-fails");
    failing.config["linux"]
        .as_object_mut()
        .expect("linux object")
        .remove("cgroupsPath");
    failing.cgroup_path = format!("corral/{}", failing.id);
    failing.set(
        "/hooks",
        json!({"createRuntime": [{"path": "/bin/false", "args": ["false"]}]}),
    );
    let output = failing.create();
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(!failing.cgroup_dir("pids").exists());
    assert_eq!(
        empty_default_parents(),
        Vec::<std::path::PathBuf>::new(),
        "a failed create left the empty default parent"
    );
}
