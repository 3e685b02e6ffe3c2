//! Limits through the cgroup v1 controllers, one directory per controller.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxNetwork,
    LinuxResources,
};

use super::{common, files, v2, CgroupError, UNIFIED_KEY};

/// Copies `cpuset.cpus` and `cpuset.mems` from parent to child into every
/// empty cpuset directory from below `start` down to `dir`. A v1 cpuset
/// directory starts empty and rejects tasks until both are set, unless the
/// parent has `cgroup.clone_children` set.
pub(crate) fn init_cpuset(start: &Path, dir: &Path) -> Result<(), CgroupError> {
    let Ok(below) = dir.strip_prefix(start) else {
        return Ok(());
    };
    let mut parent = start.to_path_buf();
    for component in below.components() {
        let child = parent.join(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = files::read(&child.join(file))?;
            if current.trim().is_empty() {
                let inherited = files::read(&parent.join(file))?;
                files::write(&child.join(file), inherited.trim())?;
            }
        }
        parent = child;
    }
    Ok(())
}

/// Writes the limits of `resources` into the controller directories.
pub(crate) fn apply(
    dirs: &BTreeMap<String, PathBuf>,
    resources: &LinuxResources,
) -> Result<(), CgroupError> {
    let unified = resources.unified().as_ref();
    if unified.is_some_and(|keys| !keys.is_empty()) {
        return Err(CgroupError::Unsupported {
            field: "linux.resources.unified".to_string(),
            reason: "this host uses cgroup v1 for limits".to_string(),
        });
    }
    let controllers = Controllers { dirs };
    if let Some(blkio) = dirs.get("blkio") {
        start_io_accounting(blkio);
    }
    if let Some(memory) = resources.memory() {
        apply_memory(&controllers, memory)?;
    }
    if let Some(cpu) = resources.cpu() {
        apply_cpu(&controllers, cpu)?;
    }
    if let Some(pids) = resources.pids() {
        if let Some(value) = common::pids_max(pids.limit()) {
            set(
                controllers.get("pids", "linux.resources.pids")?,
                "pids.max",
                value,
            )?;
        }
    }
    if let Some(block_io) = resources.block_io() {
        apply_blkio(&controllers, block_io)?;
    }
    if let Some(limits) = resources.hugepage_limits() {
        apply_hugetlb(&controllers, limits)?;
    }
    if let Some(rules) = resources.devices() {
        apply_devices(&controllers, rules)?;
    }
    if let Some(network) = resources.network() {
        apply_network(&controllers, network)?;
    }
    if let Some(rdma) = resources.rdma() {
        let dir = || controllers.get("rdma", "linux.resources.rdma");
        for (device, value) in common::rdma_lines(rdma) {
            set(dir()?, "rdma.max", format!("{device} {value}"))?;
        }
    }
    Ok(())
}

/// The container's controller directories, with errors that name the OCI
/// field that needed a missing controller.
struct Controllers<'a> {
    dirs: &'a BTreeMap<String, PathBuf>,
}

impl Controllers<'_> {
    fn get(&self, controller: &str, field: &str) -> Result<&Path, CgroupError> {
        self.dirs
            .get(controller)
            .map(PathBuf::as_path)
            .ok_or_else(|| CgroupError::Unsupported {
                field: field.to_string(),
                reason: format!("the v1 {controller} controller is not mounted"),
            })
    }
}

/// Writes huge page limits through the v1 hugetlb controller or, on a
/// hybrid host without it, through the container's cgroup in the cgroup2
/// mount when that offers hugetlb.
fn apply_hugetlb(
    controllers: &Controllers,
    limits: &[LinuxHugepageLimit],
) -> Result<(), CgroupError> {
    if limits.is_empty() {
        return Ok(());
    }
    if let Some(dir) = controllers.dirs.get("hugetlb") {
        for limit in limits {
            let prefix = common::hugetlb_prefix(limit.page_size())?;
            set(dir, &format!("{prefix}.limit_in_bytes"), limit.limit())?;
            set_if_present(dir, &format!("{prefix}.rsvd.limit_in_bytes"), limit.limit())?;
        }
        return Ok(());
    }
    if let Some(dir) = controllers.dirs.get(UNIFIED_KEY) {
        let offered = files::read(&dir.join("cgroup.controllers"))?;
        if offered.split_whitespace().any(|name| name == "hugetlb") {
            return v2::apply_hugepage_limits(dir, limits);
        }
    }
    Err(CgroupError::Unsupported {
        field: "linux.resources.hugepageLimits".to_string(),
        reason: "the v1 hugetlb controller is not mounted, and no cgroup2 mount enables \
                 hugetlb for the children of the calling process's cgroup (add it to that \
                 cgroup's cgroup.subtree_control in the cgroup2 mount)"
            .to_string(),
    })
}

fn set(dir: &Path, file: &str, value: impl Display) -> Result<(), CgroupError> {
    files::write(&dir.join(file), &value.to_string())
}

fn set_if_present(dir: &Path, file: &str, value: impl Display) -> Result<(), CgroupError> {
    let path = dir.join(file);
    if path.exists() {
        files::write(&path, &value.to_string())?;
    }
    Ok(())
}

fn apply_memory(controllers: &Controllers, memory: &LinuxMemory) -> Result<(), CgroupError> {
    // Zero counts as unset here and below, as specs written from Go structs
    // carry zeros for fields the user never set.
    let limit = memory.limit().filter(|value| *value != 0);
    let swap = memory.swap().filter(|value| *value != 0);
    let reservation = memory.reservation().filter(|value| *value != 0);
    let requested = limit.is_some()
        || swap.is_some()
        || reservation.is_some()
        || memory.swappiness().is_some()
        || memory.disable_oom_killer().is_some();
    warn_ignored_memory(memory);
    if !requested {
        return Ok(());
    }
    let dir = controllers.get("memory", "linux.resources.memory")?;

    let memsw = dir.join("memory.memsw.limit_in_bytes");
    if let Some(swap) = swap {
        if swap != -1 && !memsw.exists() {
            return Err(CgroupError::Unsupported {
                field: "linux.resources.memory.swap".to_string(),
                reason: format!(
                    "the kernel has no swap accounting ({} is missing; boot with swapaccount=1)",
                    memsw.display()
                ),
            });
        }
    }
    match (limit, swap) {
        (Some(limit), Some(swap)) if memsw.exists() => {
            // The kernel keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes
            // after every write. Raising the limit therefore writes the
            // memory+swap limit first, and lowering it writes it last.
            let current = read_i64(&dir.join("memory.limit_in_bytes"))?;
            if limit == -1 || limit > current {
                set(dir, "memory.memsw.limit_in_bytes", swap)?;
                set(dir, "memory.limit_in_bytes", limit)?;
            } else {
                set(dir, "memory.limit_in_bytes", limit)?;
                set(dir, "memory.memsw.limit_in_bytes", swap)?;
            }
        }
        (Some(limit), _) => set(dir, "memory.limit_in_bytes", limit)?,
        (None, Some(swap)) if memsw.exists() => set(dir, "memory.memsw.limit_in_bytes", swap)?,
        (None, _) => {}
    }
    if let Some(reservation) = reservation {
        set(dir, "memory.soft_limit_in_bytes", reservation)?;
    }
    if let Some(swappiness) = memory.swappiness() {
        set(dir, "memory.swappiness", swappiness)?;
    }
    if let Some(disable) = memory.disable_oom_killer() {
        set(dir, "memory.oom_control", u8::from(disable))?;
    }
    Ok(())
}

fn warn_ignored_memory(memory: &LinuxMemory) {
    if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
        // Kernel memory limits are deprecated since Linux 5.4 and the files
        // were removed in 6.x, so they are not written.
        tracing::warn!("ignoring linux.resources.memory.kernel and kernelTCP: not supported");
    }
}

fn read_i64(path: &Path) -> Result<i64, CgroupError> {
    let text = files::read(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        line: text.trim().to_string(),
        reason: "expected an integer",
    })
}

fn apply_cpu(controllers: &Controllers, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let shares = cpu.shares().filter(|value| *value != 0);
    let quota = cpu.quota().filter(|value| *value != 0);
    let period = cpu.period().filter(|value| *value != 0);
    let rt_runtime = cpu.realtime_runtime().filter(|value| *value != 0);
    let rt_period = cpu.realtime_period().filter(|value| *value != 0);
    let requested = shares.is_some()
        || quota.is_some()
        || period.is_some()
        || cpu.burst().is_some()
        || cpu.idle().is_some()
        || rt_runtime.is_some()
        || rt_period.is_some();
    if requested {
        let dir = controllers.get("cpu", "linux.resources.cpu")?;
        if let Some(shares) = shares {
            set(dir, "cpu.shares", shares)?;
        }
        apply_cfs(dir, quota, period)?;
        if let Some(burst) = cpu.burst() {
            set(dir, "cpu.cfs_burst_us", burst)?;
        }
        if let Some(idle) = cpu.idle() {
            set(dir, "cpu.idle", idle)?;
        }
        // The runtime must fit in the period, so the period goes first.
        if let Some(period) = rt_period {
            set(dir, "cpu.rt_period_us", period)?;
        }
        if let Some(runtime) = rt_runtime {
            set(dir, "cpu.rt_runtime_us", runtime)?;
        }
    }

    let cpus = cpu.cpus().as_deref().filter(|value| !value.is_empty());
    let mems = cpu.mems().as_deref().filter(|value| !value.is_empty());
    if cpus.is_some() || mems.is_some() {
        let dir = controllers.get("cpuset", "linux.resources.cpu.cpus")?;
        if let Some(cpus) = cpus {
            set(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = mems {
            set(dir, "cpuset.mems", mems)?;
        }
    }
    Ok(())
}

/// Writes the CFS bandwidth limit.
///
/// The kernel checks each write against the other file's current value, and
/// rejects a quota/period ratio above the parent's. With no quota yet (-1) any
/// period is accepted, so the period goes first and the quota write is then
/// checked against the final ratio. When the period write is rejected because
/// an existing quota is in force, the quota goes first and the period follows.
fn apply_cfs(dir: &Path, quota: Option<i64>, period: Option<u64>) -> Result<(), CgroupError> {
    let Some(period) = period else {
        if let Some(quota) = quota {
            set(dir, "cpu.cfs_quota_us", quota)?;
        }
        return Ok(());
    };
    match (set(dir, "cpu.cfs_period_us", period), quota) {
        (Ok(()), Some(quota)) => set(dir, "cpu.cfs_quota_us", quota),
        (Ok(()), None) => Ok(()),
        (Err(CgroupError::Write { source, .. }), Some(quota))
            if source.raw_os_error() == Some(libc::EINVAL) =>
        {
            set(dir, "cpu.cfs_quota_us", quota)?;
            set(dir, "cpu.cfs_period_us", period)
        }
        (Err(error), _) => Err(error),
    }
}

fn apply_blkio(controllers: &Controllers, block_io: &LinuxBlockIo) -> Result<(), CgroupError> {
    let field = "linux.resources.blockIO";
    let dir = || controllers.get("blkio", field);
    // The CFQ scheduler provided blkio.weight. BFQ, its successor, provides
    // blkio.bfq.weight with the same range.
    let weight_file = |dir: &Path, base: &str| {
        let bfq = base.replacen("blkio.", "blkio.bfq.", 1);
        match (dir.join(base).exists(), dir.join(&bfq).exists()) {
            (true, _) => Ok(base.to_string()),
            (false, true) => Ok(bfq),
            (false, false) => Err(CgroupError::Unsupported {
                field: format!("{field}.weight"),
                reason: format!(
                    "neither {base} nor {bfq} exists in {} (the block device's I/O scheduler has no weights)",
                    dir.display()
                ),
            }),
        }
    };

    if let Some(weight) = block_io.weight().filter(|value| *value != 0) {
        let dir = dir()?;
        set(dir, &weight_file(dir, "blkio.weight")?, weight)?;
    }
    if let Some(weight) = block_io.leaf_weight().filter(|value| *value != 0) {
        set(dir()?, "blkio.leaf_weight", weight)?;
    }
    for device in block_io.weight_device().iter().flatten() {
        let dir = dir()?;
        let (major, minor) = (device.major(), device.minor());
        if let Some(weight) = device.weight() {
            let file = weight_file(dir, "blkio.weight_device")?;
            set(dir, &file, format!("{major}:{minor} {weight}"))?;
        }
        if let Some(weight) = device.leaf_weight() {
            set(
                dir,
                "blkio.leaf_weight_device",
                format!("{major}:{minor} {weight}"),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            block_io.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            block_io.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            block_io.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            block_io.throttle_write_iops_device(),
        ),
    ];
    for (file, devices) in throttles {
        for device in devices.iter().flatten() {
            let value = format!("{}:{} {}", device.major(), device.minor(), device.rate());
            set(dir()?, file, value)?;
        }
    }
    Ok(())
}

/// Makes the kernel count the container's block I/O in the v1 files
/// `blkio.throttle.io_service_bytes` and `blkio.throttle.io_serviced`,
/// which the metrics agent exports as `container_fs_*`.
///
/// Those counters are kept by blk-throttle, and recent kernels (seen on
/// Linux 6.18) set blk-throttle up for a disk only once some cgroup
/// configures a throttle limit on it. Until then every cgroup's counters
/// for that disk stay at zero. Writing the limit 0, which means no limit,
/// sets it up without limiting anything, and a limit of the spec, written
/// after this, replaces it.
///
/// Each write also gives the container's cgroup its own per-disk state,
/// so only disks that can carry I/O of their own are written: loop and RAM
/// disks and empty devices are skipped. I/O through a loop device reaches
/// the disk below it and is counted there.
fn start_io_accounting(dir: &Path) {
    let Ok(disks) = std::fs::read_dir("/sys/block") else {
        return;
    };
    let file = dir.join("blkio.throttle.read_bps_device");
    for disk in disks.flatten() {
        let name = disk.file_name();
        let name = name.to_string_lossy();
        if ["loop", "ram", "zram"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            continue;
        }
        let sectors = std::fs::read_to_string(disk.path().join("size"));
        if sectors.is_ok_and(|sectors| sectors.trim() == "0") {
            continue;
        }
        let Ok(number) = std::fs::read_to_string(disk.path().join("dev")) else {
            continue;
        };
        if let Err(error) = std::fs::write(&file, format!("{} 0", number.trim())) {
            tracing::debug!(disk = %name, %error, "the disk takes no blkio throttle settings");
        }
    }
}

/// Writes device access rules in order; the spec's first rule is usually
/// "deny all", and later rules allow single devices.
fn apply_devices(
    controllers: &Controllers,
    rules: &[LinuxDeviceCgroup],
) -> Result<(), CgroupError> {
    for rule in rules {
        let dir = controllers.get("devices", "linux.resources.devices")?;
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        set(dir, file, common::device_rule(rule))?;
    }
    Ok(())
}

fn apply_network(controllers: &Controllers, network: &LinuxNetwork) -> Result<(), CgroupError> {
    if let Some(class_id) = network.class_id() {
        let dir = controllers.get("net_cls", "linux.resources.network.classID")?;
        set(dir, "net_cls.classid", class_id)?;
    }
    for priority in network.priorities().iter().flatten() {
        let dir = controllers.get("net_prio", "linux.resources.network.priorities")?;
        let value = format!("{} {}", priority.name(), priority.priority());
        set(dir, "net_prio.ifpriomap", value)?;
    }
    Ok(())
}
