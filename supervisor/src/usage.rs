//! Resource usage of one container, read from its cgroup files and from
//! `/proc`, for `supervisorctl top`.
//!
//! | value | cgroup v1 | cgroup v2 |
//! |---|---|---|
//! | CPU time | `cpuacct.usage` | `cpu.stat` `usage_usec` |
//! | memory | `memory.usage_in_bytes` minus `total_inactive_file` | `memory.current` minus `inactive_file` |
//! | memory limit | `memory.limit_in_bytes` | `memory.max` |
//! | processes | `pids.current`, `pids.max` | the same |
//! | block I/O | `blkio.throttle.io_service_bytes_recursive` | `io.stat` `rbytes`, `wbytes` |
//!
//! Memory is the working set, as cAdvisor and `docker stats` report it:
//! usage minus the page cache the kernel can drop at once, floored at 0.
//! Network counters come from `/proc/PID/net/dev` of the container's init,
//! summed over every interface of its network namespace except `lo`.
//! Loopback traffic stays inside the namespace and shows every byte as both
//! received and sent. The bytes of published ports, which reach the job
//! over its `lo`, are counted by supervisord's relay instead
//! (`daemon::ports::RelayTraffic`).

use std::fs;
use std::path::Path;

use corral_runtime::state::CgroupPaths;

/// A v1 limit at or above this value means no limit: the kernel reports
/// unlimited as the largest page-aligned `i64`.
const V1_UNLIMITED: u64 = 1 << 62;

/// Counters of one container. A value is `None` when its file is missing,
/// such as a controller that is not mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// CPU time of every process, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Working set in bytes.
    pub memory_bytes: Option<u64>,
    /// Memory limit in bytes; `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Process limit; `None` when unlimited.
    pub pids_limit: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
}

/// Reads the usage of the cgroup at `paths`.
pub fn read_cgroup_usage(paths: &CgroupPaths) -> CgroupUsage {
    match paths {
        CgroupPaths::V1 { controllers } => {
            let dir = |controller: &str| controllers.get(controller).map(|dir| dir.as_path());
            read_v1(dir("cpuacct"), dir("memory"), dir("pids"), dir("blkio"))
        }
        CgroupPaths::V2 { path } => read_v2(path),
    }
}

fn read_v1(
    cpuacct: Option<&Path>,
    memory: Option<&Path>,
    pids: Option<&Path>,
    blkio: Option<&Path>,
) -> CgroupUsage {
    let memory_bytes = memory.and_then(|dir| {
        let usage = read_number(&dir.join("memory.usage_in_bytes"))?;
        let inactive = read_keyed(&dir.join("memory.stat"), "total_inactive_file").unwrap_or(0);
        Some(usage.saturating_sub(inactive))
    });
    let memory_limit_bytes = memory
        .and_then(|dir| read_number(&dir.join("memory.limit_in_bytes")))
        .filter(|&limit| limit < V1_UNLIMITED);
    let (io_read_bytes, io_write_bytes) = blkio
        .map(|dir| read_v1_io(&dir.join("blkio.throttle.io_service_bytes_recursive")))
        .unwrap_or_default();
    CgroupUsage {
        cpu_usage_ns: cpuacct.and_then(|dir| read_number(&dir.join("cpuacct.usage"))),
        memory_bytes,
        memory_limit_bytes,
        pids: pids.and_then(|dir| read_number(&dir.join("pids.current"))),
        pids_limit: pids.and_then(|dir| read_number(&dir.join("pids.max"))),
        io_read_bytes,
        io_write_bytes,
    }
}

fn read_v2(dir: &Path) -> CgroupUsage {
    let memory_bytes = read_number(&dir.join("memory.current")).map(|usage| {
        let inactive = read_keyed(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
        usage.saturating_sub(inactive)
    });
    let (io_read_bytes, io_write_bytes) = read_v2_io(&dir.join("io.stat"));
    CgroupUsage {
        cpu_usage_ns: read_keyed(&dir.join("cpu.stat"), "usage_usec")
            .map(|usec| usec.saturating_mul(1000)),
        memory_bytes,
        memory_limit_bytes: read_number(&dir.join("memory.max")),
        pids: read_number(&dir.join("pids.current")),
        pids_limit: read_number(&dir.join("pids.max")),
        io_read_bytes,
        io_write_bytes,
    }
}

/// Reads a file of one number. `max`, the kernel's word for no limit, and
/// a missing or malformed file give `None`.
fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Returns the number after `key` in a flat keyed file such as
/// `memory.stat` (`inactive_file 4096`).
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// Sums the `Read` and `Write` lines of every device in a v1 blkio file
/// (`8:0 Read 4096`).
fn read_v1_io(path: &Path) -> (Option<u64>, Option<u64>) {
    let Ok(text) = fs::read_to_string(path) else {
        return (None, None);
    };
    let mut read = 0u64;
    let mut written = 0u64;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_device, operation, bytes] = fields[..] else {
            continue;
        };
        let Ok(bytes) = bytes.parse::<u64>() else {
            continue;
        };
        match operation {
            "Read" => read = read.saturating_add(bytes),
            "Write" => written = written.saturating_add(bytes),
            _ => {}
        }
    }
    (Some(read), Some(written))
}

/// Sums `rbytes` and `wbytes` of every device in a v2 `io.stat`
/// (`8:0 rbytes=4096 wbytes=0 rios=1 ...`). An empty file, as for a cgroup
/// that did no I/O, gives zeros.
fn read_v2_io(path: &Path) -> (Option<u64>, Option<u64>) {
    let Ok(text) = fs::read_to_string(path) else {
        return (None, None);
    };
    let mut read = 0u64;
    let mut written = 0u64;
    for field in text.split_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "rbytes" => read = read.saturating_add(value),
            "wbytes" => written = written.saturating_add(value),
            _ => {}
        }
    }
    (Some(read), Some(written))
}

/// Returns the received and transmitted bytes over every interface except
/// `lo` of the network namespace of process `pid`, from `/proc/PID/net/dev`.
pub fn read_net_bytes(pid: i32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    parse_net_dev(&text)
}

/// Parses `/proc/net/dev`: two header lines, then `IFACE: RX_BYTES ...`
/// with the transmitted bytes in the ninth number. Sums every interface
/// but `lo`.
fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    let mut received = 0u64;
    let mut transmitted = 0u64;
    for line in text.lines().skip(2) {
        let (interface, counters) = line.split_once(':')?;
        if interface.trim() == "lo" {
            continue;
        }
        let numbers: Vec<u64> = counters
            .split_whitespace()
            .map(|number| number.parse().unwrap_or(0))
            .collect();
        received = received.saturating_add(*numbers.first()?);
        transmitted = transmitted.saturating_add(*numbers.get(8)?);
    }
    Some((received, transmitted))
}

/// Reads CLOCK_MONOTONIC in nanoseconds, the clock of the CPU counters'
/// sample times.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which lives on
    // the stack for the whole call. CLOCK_MONOTONIC exists on every Linux,
    // so the call cannot fail with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v1_tree_is_read() {
        let root = tempfile::tempdir().unwrap();
        let dir = |controller: &str| root.path().join(controller).join("corral/web-1");
        write(&dir("cpuacct"), "cpuacct.usage", "1500000000\n");
        write(&dir("memory"), "memory.usage_in_bytes", "10485760\n");
        write(
            &dir("memory"),
            "memory.stat",
            "cache 100\ninactive_file 1\ntotal_inactive_file 4194304\n",
        );
        write(&dir("memory"), "memory.limit_in_bytes", "67108864\n");
        write(&dir("pids"), "pids.current", "3\n");
        write(&dir("pids"), "pids.max", "max\n");
        write(
            &dir("blkio"),
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 4608\n8:0 Total 4608\n\
             8:16 Read 100\n8:16 Write 0\nTotal 4708\n",
        );
        let controllers: BTreeMap<String, PathBuf> = ["cpuacct", "memory", "pids", "blkio"]
            .into_iter()
            .map(|controller| (controller.to_string(), dir(controller)))
            .collect();

        let usage = read_cgroup_usage(&CgroupPaths::V1 { controllers });
        assert_eq!(usage.cpu_usage_ns, Some(1_500_000_000));
        assert_eq!(usage.memory_bytes, Some(6 * 1024 * 1024));
        assert_eq!(usage.memory_limit_bytes, Some(64 * 1024 * 1024));
        assert_eq!(usage.pids, Some(3));
        assert_eq!(usage.pids_limit, None);
        assert_eq!(usage.io_read_bytes, Some(4196));
        assert_eq!(usage.io_write_bytes, Some(512));
    }

    #[test]
    fn v1_unlimited_memory_and_missing_controllers() {
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join("memory");
        write(&memory, "memory.usage_in_bytes", "100\n");
        write(&memory, "memory.limit_in_bytes", "9223372036854771712\n");
        let controllers = BTreeMap::from([("memory".to_string(), memory)]);

        let usage = read_cgroup_usage(&CgroupPaths::V1 { controllers });
        assert_eq!(
            usage.memory_bytes,
            Some(100),
            "no memory.stat subtracts nothing"
        );
        assert_eq!(usage.memory_limit_bytes, None);
        assert_eq!(usage.cpu_usage_ns, None);
        assert_eq!(usage.pids, None);
        assert_eq!(usage.io_read_bytes, None);
    }

    #[test]
    fn v2_tree_is_read() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("corral/web-1");
        write(
            &dir,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        write(&dir, "memory.current", "8192\n");
        write(&dir, "memory.stat", "anon 4096\ninactive_file 10000\n");
        write(&dir, "memory.max", "max\n");
        write(&dir, "pids.current", "1\n");
        write(&dir, "pids.max", "64\n");
        write(
            &dir,
            "io.stat",
            "8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n\
             8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n",
        );

        let usage = read_cgroup_usage(&CgroupPaths::V2 { path: dir });
        assert_eq!(usage.cpu_usage_ns, Some(2_500_000));
        assert_eq!(
            usage.memory_bytes,
            Some(0),
            "the working set is floored at 0"
        );
        assert_eq!(usage.memory_limit_bytes, None);
        assert_eq!(usage.pids, Some(1));
        assert_eq!(usage.pids_limit, Some(64));
        assert_eq!(usage.io_read_bytes, Some(1025));
        assert_eq!(usage.io_write_bytes, Some(2050));
    }

    #[test]
    fn v2_empty_io_stat_is_zero() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "io.stat", "");
        let usage = read_cgroup_usage(&CgroupPaths::V2 {
            path: root.path().to_path_buf(),
        });
        assert_eq!(usage.io_read_bytes, Some(0));
        assert_eq!(usage.io_write_bytes, Some(0));
    }

    #[test]
    fn net_dev_sums_interfaces_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
                    eth0:     500       5    0    0    0     0          0         0      250       3    0    0    0     0       0          0\n  \
                    eth1:      20       1    0    0    0     0          0         0       10       1    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), Some((520, 260)));
    }

    #[test]
    fn net_dev_of_loopback_only_is_zero() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), Some((0, 0)));
    }

    #[test]
    fn own_net_dev_is_readable() {
        assert!(read_net_bytes(std::process::id() as i32).is_some());
        assert_eq!(read_net_bytes(-1), None);
    }

    #[test]
    fn monotonic_clock_advances() {
        let first = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(monotonic_ns() >= first + 2_000_000);
    }
}
