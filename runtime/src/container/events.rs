//! `events`: resource statistics and OOM notifications of a container, as
//! JSON lines in the shape runc prints.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::{cgroup_of, load, ContainerError};
use crate::state::{CgroupPaths, ContainerState, Status};

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Reads the container's CPU, memory and pids statistics.
pub fn stats(state: &ContainerState) -> Value {
    let (cpu_ns, memory_usage, memory_limit, pids_current, pids_limit) = match &state.cgroup_paths {
        CgroupPaths::V1 { controllers } => {
            let dir = |name: &str| controllers.get(name).cloned().unwrap_or_default();
            (
                read_number(&dir("cpuacct").join("cpuacct.usage")),
                read_number(&dir("memory").join("memory.usage_in_bytes")),
                read_number(&dir("memory").join("memory.limit_in_bytes")),
                read_number(&dir("pids").join("pids.current")),
                read_number(&dir("pids").join("pids.max")),
            )
        }
        CgroupPaths::V2 { path } => (
            read_keyed(&path.join("cpu.stat"), "usage_usec").map(|usec| usec * 1000),
            read_number(&path.join("memory.current")),
            read_number(&path.join("memory.max")),
            read_number(&path.join("pids.current")),
            read_number(&path.join("pids.max")),
        ),
    };
    json!({
        "cpu": {"usage": {"total": cpu_ns.unwrap_or(0)}},
        "memory": {"usage": {"usage": memory_usage.unwrap_or(0), "limit": memory_limit.unwrap_or(0)}},
        "pids": {"current": pids_current.unwrap_or(0), "limit": pids_limit.unwrap_or(0)},
    })
}

/// Prints one `stats` event, or with `follow` a `stats` event every
/// `interval` and an `oom` event for each new OOM kill, until the container
/// stops.
pub fn events(
    root: &Path,
    id: &str,
    follow: bool,
    interval: Duration,
    mut emit: impl FnMut(Value),
) -> Result<(), ContainerError> {
    let state = load(root, id)?;
    let cgroup = cgroup_of(&state);
    let mut oom_seen = cgroup.oom_kills().unwrap_or(0);
    loop {
        let current = load(root, id);
        let Ok(current) = current else {
            return Ok(());
        };
        if current.status == Status::Stopped {
            return Ok(());
        }
        let oom_kills = cgroup.oom_kills().unwrap_or(oom_seen);
        for _ in oom_seen..oom_kills {
            emit(json!({"type": "oom", "id": id}));
        }
        oom_seen = oom_kills;
        emit(json!({"type": "stats", "id": id, "data": stats(&current)}));
        if !follow {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// The runtime-spec `features` document: what this runtime supports.
pub fn features() -> Value {
    let options: Vec<&str> = vec![
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "slave",
        "strictatime",
        "suid",
        "sync",
        "tmpcopyup",
        "unbindable",
    ];
    let capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"],
                "operators": ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                              "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"],
                "archs": [if cfg!(target_arch = "aarch64") { "SCMP_ARCH_AARCH64" } else { "SCMP_ARCH_X86_64" }],
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
        },
        "annotations": {
            "run.corral.overlay.lowerdirs": "colon-separated lower directories of an overlay root, top first",
            "run.corral.overlay.dir": "directory for the overlay's upper/, work/ and merged/; root.path must be its merged/",
        },
    })
}
