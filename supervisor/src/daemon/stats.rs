//! `GET /v1/stats`: the supervisor task names each job's container, and the
//! cgroup and `/proc` files are read on the blocking pool, so a slow read
//! never delays the state machine.

use std::path::PathBuf;
use std::sync::Arc;

use corral_runtime::state::ContainerState;

use crate::api::{JobStats, StatsList};
use crate::daemon::ports::RelayTraffic;
use crate::machine::JobState;
use crate::usage;

/// One job and where its container's counters are.
#[derive(Debug, Clone)]
pub struct StatsTarget {
    pub name: String,
    pub state: JobState,
    /// The running container, its id and the runtime's state directory.
    pub container: Option<(String, PathBuf)>,
    pub pid: Option<i32>,
    /// False for jobs on the host's network, whose counters would be the
    /// host's.
    pub own_network: bool,
    /// The byte counts of the running container's published ports.
    pub relay_traffic: Option<Arc<RelayTraffic>>,
}

/// Reads the counters of every target. Blocks on file reads.
pub fn read_stats(targets: Vec<StatsTarget>) -> StatsList {
    StatsList {
        jobs: targets.into_iter().map(read_one).collect(),
        host_memory_bytes: host_memory_bytes(),
    }
}

/// Returns `MemTotal` of `/proc/meminfo` in bytes, or `None` when the file
/// cannot be read or has no such line.
fn host_memory_bytes() -> Option<u64> {
    let meminfo = match std::fs::read_to_string("/proc/meminfo") {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(%error, "failed to read /proc/meminfo; top shows no memory share for jobs without a limit");
            return None;
        }
    };
    parse_mem_total(&meminfo)
}

/// Returns the `MemTotal:` value of a `/proc/meminfo` text in bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn read_one(target: StatsTarget) -> JobStats {
    let mut stats = JobStats {
        name: target.name,
        state: target.state,
        container_id: None,
        pid: target.pid,
        sampled_at_ns: usage::monotonic_ns(),
        cpu_usage_ns: None,
        memory_bytes: None,
        memory_limit_bytes: None,
        pids: None,
        pids_limit: None,
        io_read_bytes: None,
        io_write_bytes: None,
        net_rx_bytes: None,
        net_tx_bytes: None,
        error: None,
    };
    let Some((id, root)) = target.container else {
        return stats;
    };
    stats.container_id = Some(id.clone());
    let state = match ContainerState::load(&root, &id) {
        Ok(state) => state,
        Err(error) => {
            // A container that is still being created has no state file.
            stats.error = Some(crate::daemon::error_chain(&error));
            return stats;
        }
    };
    let cgroup = usage::read_cgroup_usage(&state.cgroup_paths);
    stats.sampled_at_ns = usage::monotonic_ns();
    stats.cpu_usage_ns = cgroup.cpu_usage_ns;
    stats.memory_bytes = cgroup.memory_bytes;
    stats.memory_limit_bytes = cgroup.memory_limit_bytes;
    stats.pids = cgroup.pids;
    stats.pids_limit = cgroup.pids_limit;
    stats.io_read_bytes = cgroup.io_read_bytes;
    stats.io_write_bytes = cgroup.io_write_bytes;
    if let (true, Some(pid)) = (target.own_network, target.pid) {
        if let Some((received, sent)) = usage::read_net_bytes(pid) {
            let (relay_received, relay_sent) = target
                .relay_traffic
                .as_ref()
                .map_or((0, 0), |traffic| traffic.bytes());
            stats.net_rx_bytes = Some(received.saturating_add(relay_received));
            stats.net_tx_bytes = Some(sent.saturating_add(relay_sent));
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use corral_runtime::state::{CgroupPaths, Status};

    use super::*;

    #[test]
    fn stopped_job_has_no_counters() {
        let list = read_stats(vec![StatsTarget {
            name: "idle".to_string(),
            state: JobState::Stopped,
            container: None,
            pid: None,
            own_network: true,
            relay_traffic: None,
        }]);
        let stats = &list.jobs[0];
        assert_eq!(stats.name, "idle");
        assert_eq!(stats.cpu_usage_ns, None);
        assert_eq!(stats.error, None);
    }

    #[test]
    fn missing_state_file_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let list = read_stats(vec![StatsTarget {
            name: "web".to_string(),
            state: JobState::Starting,
            container: Some(("web-00000001".to_string(), root.path().to_path_buf())),
            pid: None,
            own_network: true,
            relay_traffic: None,
        }]);
        let error = list.jobs[0].error.clone().unwrap();
        assert!(error.contains("web-00000001"), "{error}");
    }

    #[test]
    fn counters_come_from_the_state_files_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let cgroup = root.path().join("cgroup");
        std::fs::create_dir_all(&cgroup).unwrap();
        std::fs::write(cgroup.join("pids.current"), "2\n").unwrap();
        std::fs::write(cgroup.join("cpu.stat"), "usage_usec 7\n").unwrap();
        let state = ContainerState {
            oci_version: "1.2.0".to_string(),
            id: "web-00000002".to_string(),
            status: Status::Running,
            pid: Some(std::process::id() as i32),
            bundle: root.path().join("bundle"),
            annotations: BTreeMap::new(),
            created: 0.0,
            cgroup_id: "/web-00000002".to_string(),
            cgroup_paths: CgroupPaths::V2 { path: cgroup },
            job: Some("web".to_string()),
            image: "host".to_string(),
            labels: BTreeMap::new(),
            rootfs: root.path().join("rootfs"),
            overlay_dir: None,
            late_hooks: false,
        };
        std::fs::create_dir_all(root.path().join("web-00000002")).unwrap();
        state.save(root.path()).unwrap();

        let list = read_stats(vec![StatsTarget {
            name: "web".to_string(),
            state: JobState::Running,
            container: Some(("web-00000002".to_string(), root.path().to_path_buf())),
            pid: state.pid,
            own_network: false,
            relay_traffic: None,
        }]);
        let stats = &list.jobs[0];
        assert_eq!(stats.error, None);
        assert_eq!(stats.pids, Some(2));
        assert_eq!(stats.cpu_usage_ns, Some(7000));
        assert_eq!(
            stats.net_rx_bytes, None,
            "host network counters are not shown"
        );
    }
}
