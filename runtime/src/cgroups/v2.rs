//! Limits through the unified (v2) hierarchy, and the enabling of
//! controllers for child cgroups.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs;
use std::io;
use std::path::Path;

use corral_config::convert;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::{common, devices, files, CgroupError, SELF_LEAF};

/// Controllers that containers get when the parent offers them.
pub(crate) const CONTROLLERS: [&str; 6] = ["cpu", "cpuset", "hugetlb", "io", "memory", "pids"];

/// Enables for the children of `dir` each controller of [`CONTROLLERS`] that
/// `dir` has, by writing to its `cgroup.subtree_control`.
///
/// A non-root cgroup that enables controllers for its children may contain
/// no processes. So when `may_move_self` is set and the calling process is
/// the only process in `dir`, it first moves into the leaf [`SELF_LEAF`]
/// below `dir`. With other processes there, the kernel rejects the write and
/// the error is [`CgroupError::InternalProcesses`].
pub(crate) fn enable_controllers(dir: &Path, may_move_self: bool) -> Result<(), CgroupError> {
    let available = files::read(&dir.join("cgroup.controllers"))?;
    let enabled = files::read(&dir.join("cgroup.subtree_control"))?;
    let missing: Vec<&str> = available
        .split_whitespace()
        .filter(|name| CONTROLLERS.contains(name))
        .filter(|name| !enabled.split_whitespace().any(|done| done == *name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }

    let procs = dir.join("cgroup.procs");
    // Moving out while others stay would not help, and would leave the
    // calling process in a leaf for nothing.
    if may_move_self && files::read_pids(&procs)? == [std::process::id() as i32] {
        move_self_to_leaf(dir)?;
    }

    let value: Vec<String> = missing.iter().map(|name| format!("+{name}")).collect();
    let control = dir.join("cgroup.subtree_control");
    files::write(&control, &value.join(" ")).map_err(|error| match error {
        CgroupError::Write { source, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
            CgroupError::InternalProcesses {
                path: dir.to_path_buf(),
                pids: files::read_pids(&procs).unwrap_or_default(),
                source,
            }
        }
        other => other,
    })
}

/// Creates the cgroup directory `dir`, which may exist already.
pub(crate) fn create_dir_if_missing(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Err(source) if source.kind() != io::ErrorKind::AlreadyExists => {
            Err(CgroupError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// Moves the calling process into the leaf [`SELF_LEAF`] below `dir`,
/// creating it if needed.
pub(crate) fn move_self_to_leaf(dir: &Path) -> Result<(), CgroupError> {
    let leaf = dir.join(SELF_LEAF);
    create_dir_if_missing(&leaf)?;
    let pid = std::process::id();
    files::write(&leaf.join("cgroup.procs"), &pid.to_string())?;
    tracing::info!(pid, leaf = %leaf.display(), "moved the calling process into a leaf cgroup");
    Ok(())
}

/// Writes the limits of `resources` into the container's directory `dir`.
pub(crate) fn apply(dir: &Path, resources: &LinuxResources) -> Result<(), CgroupError> {
    // Keys are checked before the first write, so a bad key changes nothing.
    let unified: BTreeMap<&String, &String> = resources.unified().iter().flatten().collect();
    for key in unified.keys() {
        check_unified_key(key)?;
    }

    if let Some(memory) = resources.memory() {
        apply_memory(dir, memory)?;
    }
    if let Some(cpu) = resources.cpu() {
        apply_cpu(dir, cpu)?;
    }
    if let Some(pids) = resources.pids() {
        if let Some(value) = common::pids_max(pids.limit()) {
            set(dir, "pids.max", value)?;
        }
    }
    if let Some(block_io) = resources.block_io() {
        apply_io(dir, block_io)?;
    }
    if let Some(limits) = resources.hugepage_limits() {
        apply_hugepage_limits(dir, limits)?;
    }
    if let Some(rules) = resources
        .devices()
        .as_deref()
        .filter(|rules| !rules.is_empty())
    {
        devices::apply_program(dir, rules)?;
    }
    if resources.network().is_some() {
        return Err(CgroupError::Unsupported {
            field: "linux.resources.network".to_string(),
            reason: "cgroup v2 has no net_cls or net_prio controller".to_string(),
        });
    }
    if let Some(rdma) = resources.rdma() {
        for (device, value) in common::rdma_lines(rdma) {
            set(dir, "rdma.max", format!("{device} {value}"))?;
        }
    }
    // Unified keys go last, so they override the values written above.
    for (key, value) in unified {
        set(dir, key, value)?;
    }
    Ok(())
}

/// Writes `hugetlb.<size>.max`, and `hugetlb.<size>.rsvd.max` where the
/// kernel has it, for each limit into the cgroup2 directory `dir`. A hybrid
/// host's cgroup2 mount uses it too.
pub(crate) fn apply_hugepage_limits(
    dir: &Path,
    limits: &[LinuxHugepageLimit],
) -> Result<(), CgroupError> {
    for limit in limits {
        let prefix = common::hugetlb_prefix(limit.page_size())?;
        let value = max_or_value(limit.limit());
        set(dir, &format!("{prefix}.max"), &value)?;
        let reserved = dir.join(format!("{prefix}.rsvd.max"));
        if reserved.exists() {
            files::write(&reserved, &value)?;
        }
    }
    Ok(())
}

/// Rejects a `unified` key that could name a file outside the cgroup's
/// directory.
pub(crate) fn check_unified_key(key: &str) -> Result<(), CgroupError> {
    let invalid = |reason| CgroupError::InvalidUnifiedKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.contains('/') {
        return Err(invalid("contains '/'"));
    }
    if key.contains("..") {
        return Err(invalid("contains \"..\""));
    }
    if key.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    Ok(())
}

fn set(dir: &Path, file: &str, value: impl Display) -> Result<(), CgroupError> {
    files::write(&dir.join(file), &value.to_string())
}

/// Formats a limit where a negative value means no limit.
fn max_or_value(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

fn unsupported(field: &str, reason: &str) -> CgroupError {
    CgroupError::Unsupported {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

fn apply_memory(dir: &Path, memory: &LinuxMemory) -> Result<(), CgroupError> {
    // Zero counts as unset here and below, as specs written from Go structs
    // carry zeros for fields the user never set.
    let limit = memory.limit().filter(|value| *value != 0);
    let swap = memory.swap().filter(|value| *value != 0);
    let reservation = memory.reservation().filter(|value| *value != 0);

    if memory.swappiness().is_some() {
        return Err(unsupported(
            "linux.resources.memory.swappiness",
            "cgroup v2 has no per-cgroup swappiness",
        ));
    }
    if memory.disable_oom_killer() == Some(true) {
        return Err(unsupported(
            "linux.resources.memory.disableOOMKiller",
            "cgroup v2 cannot disable the OOM killer",
        ));
    }
    if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
        tracing::warn!("ignoring linux.resources.memory.kernel and kernelTCP: not supported");
    }

    if let Some(limit) = limit {
        set(dir, "memory.max", max_or_value(limit))?;
    }
    if let Some(reservation) = reservation {
        set(dir, "memory.low", max_or_value(reservation))?;
    }
    let Some(swap) = swap else {
        return Ok(());
    };
    // The spec's swap limits memory plus swap, as v1's memsw does, but v2's
    // memory.swap.max limits swap alone.
    let swap_max = convert::memsw_to_swap_max(limit.unwrap_or(-1), swap);
    let file = dir.join("memory.swap.max");
    match (file.exists(), swap_max) {
        (true, _) => files::write(&file, &max_or_value(swap_max)),
        // Without swap accounting, swap is unlimited already.
        (false, swap_max) if swap_max < 0 => Ok(()),
        (false, _) => Err(CgroupError::Unsupported {
            field: "linux.resources.memory.swap".to_string(),
            reason: format!(
                "the kernel has no swap accounting ({} is missing)",
                file.display()
            ),
        }),
    }
}

fn apply_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if cpu.realtime_runtime().is_some_and(|value| value != 0)
        || cpu.realtime_period().is_some_and(|value| value != 0)
    {
        return Err(unsupported(
            "linux.resources.cpu.realtimeRuntime",
            "cgroup v2 has no real-time CPU bandwidth",
        ));
    }
    if let Some(shares) = cpu.shares().filter(|value| *value != 0) {
        set(dir, "cpu.weight", convert::shares_to_weight(shares))?;
    }

    let quota = cpu.quota().filter(|value| *value != 0);
    let period = cpu.period().filter(|value| *value != 0);
    if quota.is_some() || period.is_some() {
        let period = period.unwrap_or(convert::CFS_PERIOD_US);
        let quota = quota.map_or("max".to_string(), max_or_value);
        set(dir, "cpu.max", format!("{quota} {period}"))?;
    }
    if let Some(burst) = cpu.burst() {
        set(dir, "cpu.max.burst", burst)?;
    }
    if let Some(idle) = cpu.idle() {
        set(dir, "cpu.idle", idle)?;
    }

    if let Some(cpus) = cpu.cpus().as_deref().filter(|value| !value.is_empty()) {
        set(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|value| !value.is_empty()) {
        set(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

fn apply_io(dir: &Path, block_io: &LinuxBlockIo) -> Result<(), CgroupError> {
    if block_io.leaf_weight().is_some_and(|value| value != 0)
        || block_io
            .weight_device()
            .iter()
            .flatten()
            .any(|device| device.leaf_weight().is_some())
    {
        return Err(unsupported(
            "linux.resources.blockIO.leafWeight",
            "cgroup v2 has no leaf weights",
        ));
    }

    // io.weight (1-10000) exists with the io.cost controller; io.bfq.weight
    // (1-1000, as blkio.weight) exists with the BFQ scheduler.
    let weight = |blkio_weight: u16| -> Result<(&str, u64), CgroupError> {
        if dir.join("io.weight").exists() {
            let weight = convert::blkio_weight_to_io_weight(u64::from(blkio_weight));
            Ok(("io.weight", weight))
        } else if dir.join("io.bfq.weight").exists() {
            Ok(("io.bfq.weight", u64::from(blkio_weight)))
        } else {
            Err(CgroupError::Unsupported {
                field: "linux.resources.blockIO.weight".to_string(),
                reason: format!(
                    "neither io.weight nor io.bfq.weight exists in {}",
                    dir.display()
                ),
            })
        }
    };
    if let Some(blkio_weight) = block_io.weight().filter(|value| *value != 0) {
        let (file, value) = weight(blkio_weight)?;
        set(dir, file, value)?;
    }
    for device in block_io.weight_device().iter().flatten() {
        if let Some(blkio_weight) = device.weight() {
            let (file, value) = weight(blkio_weight)?;
            let (major, minor) = (device.major(), device.minor());
            match set(dir, file, format!("{major}:{minor} {value}")) {
                // io.weight takes a device's weight only where the io.cost
                // controller is enabled for that device.
                Err(CgroupError::Write { source, .. })
                    if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                {
                    return Err(CgroupError::Unsupported {
                        field: "linux.resources.blockIO.weightDevice".to_string(),
                        reason: format!(
                            "the kernel does not weigh I/O to device {major}:{minor} ({file} \
                             rejects it): enable io.cost for it in the root cgroup's \
                             io.cost.qos, or use the BFQ scheduler"
                        ),
                    });
                }
                result => result?,
            }
        }
    }

    for line in io_max_lines(block_io) {
        set(dir, "io.max", line)?;
    }
    Ok(())
}

/// Returns one `io.max` line per device, `MAJ:MIN rbps=.. wbps=.. riops=..
/// wiops=..` with only the limits the spec sets. A rate of 0 removes the
/// limit (`max`), as writing 0 does for the v1 throttle files.
fn io_max_lines(block_io: &LinuxBlockIo) -> Vec<String> {
    let kinds = [
        ("rbps", block_io.throttle_read_bps_device()),
        ("wbps", block_io.throttle_write_bps_device()),
        ("riops", block_io.throttle_read_iops_device()),
        ("wiops", block_io.throttle_write_iops_device()),
    ];
    let mut devices: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
    for (key, throttles) in kinds {
        for device in throttles.iter().flatten() {
            let rate = match device.rate() {
                0 => "max".to_string(),
                rate => rate.to_string(),
            };
            devices
                .entry((device.major(), device.minor()))
                .or_default()
                .push(format!("{key}={rate}"));
        }
    }
    devices
        .into_iter()
        .map(|((major, minor), limits)| format!("{major}:{minor} {}", limits.join(" ")))
        .collect()
}
