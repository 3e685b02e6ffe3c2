//! Reading one target at scrape time: the per-scrape context, the steps
//! shared by cgroup v1 and v2, and the order of the steps.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use corral_runtime::state::CgroupPaths;

use crate::families::{self, Samples};
use crate::parse::{self, DeviceNumber, ParseError};
use crate::read::{self, ErrorKind, ReadErrors, Vanished};
use crate::target::Target;
use crate::{process, v1, v2};

/// Identity of a namespace: the device and inode of its nsfs file.
pub(crate) type NamespaceId = (u64, u64);

/// State of one scrape, shared by every target it reads.
pub(crate) struct ScrapeContext<'a> {
    pub errors: &'a ReadErrors,
    pub proc_root: &'a Path,
    pub sys_root: &'a Path,
    pub per_cpu: bool,
    /// USER_HZ, the unit of v1 `cpuacct.stat`.
    pub ticks_per_second: f64,
    pub now_seconds: f64,
    /// The agent's own network namespace. `None` when it could not be read,
    /// and then no network counters are exported, because they might be
    /// the host's.
    pub host_network_namespace: Option<NamespaceId>,
    /// Device names looked up during this scrape. The cache lives only as long
    /// as the scrape, so it cannot grow without bound.
    device_names: RefCell<HashMap<DeviceNumber, String>>,
}

impl<'a> ScrapeContext<'a> {
    pub(crate) fn new(
        errors: &'a ReadErrors,
        proc_root: &'a Path,
        sys_root: &'a Path,
        per_cpu: bool,
        now_seconds: f64,
    ) -> Self {
        let own_namespace = proc_root.join("self/ns/net");
        let host_network_namespace = match namespace_id(&own_namespace) {
            Ok(id) => Some(id),
            Err(error) => {
                errors.record(
                    ErrorKind::Proc,
                    format_args!("failed to stat {}: {error}", own_namespace.display()),
                );
                None
            }
        };
        Self {
            errors,
            proc_root,
            sys_root,
            per_cpu,
            ticks_per_second: procfs::ticks_per_second() as f64,
            now_seconds,
            host_network_namespace,
            device_names: RefCell::new(HashMap::new()),
        }
    }

    /// Reads a cgroup file, see [`read::cgroup_file`].
    pub(crate) fn read(&self, dir: &Path, file: &str) -> Result<Option<String>, Vanished> {
        read::cgroup_file(self.errors, dir, file)
    }

    /// Counts and logs a file whose content does not parse.
    pub(crate) fn parse_failed(&self, path: &Path, error: &ParseError) {
        self.errors.record(
            ErrorKind::Parse,
            format_args!("invalid content in {}: {error}", path.display()),
        );
    }

    /// Unwraps a parse result, counting the error and returning `None`.
    pub(crate) fn parsed<T>(&self, path: &Path, result: Result<T, ParseError>) -> Option<T> {
        result
            .inspect_err(|error| self.parse_failed(path, error))
            .ok()
    }

    /// Reads and parses a single-value file.
    pub(crate) fn value(&self, dir: &Path, file: &str) -> Result<Option<u64>, Vanished> {
        let Some(text) = self.read(dir, file)? else {
            return Ok(None);
        };
        Ok(self.parsed(&dir.join(file), parse::single_value(&text)))
    }

    /// Reads a flat-keyed file for lookups with [`KeyedFile::get`].
    pub(crate) fn keyed(&self, dir: &Path, file: &str) -> Result<Option<KeyedFile>, Vanished> {
        Ok(self.read(dir, file)?.map(|text| KeyedFile {
            path: dir.join(file),
            text,
        }))
    }

    /// Returns the `device` label of a block device: `/dev/NAME` from
    /// `/sys/dev/block/MAJ:MIN/uevent`, or `MAJ:MIN` when sysfs does not
    /// name it (a removed device, or a sysfs without that entry).
    pub(crate) fn device_name(&self, device: DeviceNumber) -> String {
        if let Some(name) = self.device_names.borrow().get(&device) {
            return name.clone();
        }
        let number = format!("{}:{}", device.major, device.minor);
        let uevent = self.sys_root.join("dev/block").join(&number).join("uevent");
        let name = std::fs::read_to_string(&uevent)
            .ok()
            .and_then(|text| parse::uevent_device_name(&text).map(|name| format!("/dev/{name}")))
            .unwrap_or(number);
        self.device_names.borrow_mut().insert(device, name.clone());
        name
    }
}

/// A flat-keyed cgroup file that was read successfully.
pub(crate) struct KeyedFile {
    path: PathBuf,
    text: String,
}

impl KeyedFile {
    /// Returns the value of `key`, or `None` when the file lacks the key or
    /// the value does not parse (which is counted).
    pub(crate) fn get(&self, context: &ScrapeContext, key: &str) -> Option<u64> {
        context
            .parsed(&self.path, parse::flat_keyed(&self.text, key))
            .flatten()
    }
}

pub(crate) fn namespace_id(path: &Path) -> std::io::Result<NamespaceId> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

/// Reads every metric of one target. [`Vanished`] means the target went away
/// during the scrape and none of its samples may be exported.
pub(crate) fn collect_target(
    context: &ScrapeContext,
    target: &Target,
) -> Result<Samples, Vanished> {
    let mut samples = Samples::new(target.labels());

    // The state file can still record `running` after the init has exited.
    if let Some(pid) = target.pid {
        if !context.proc_root.join(pid.to_string()).exists() {
            return Err(Vanished);
        }
    }

    let processes_dir = match &target.cgroup {
        CgroupPaths::V1 { controllers } => {
            v1::collect(context, controllers, &mut samples)?;
            v1::processes_dir(controllers)
        }
        CgroupPaths::V2 { path } => {
            v2::collect(context, path, &mut samples)?;
            Some(path.as_path())
        }
    };
    process::collect(context, processes_dir, target.pid, &mut samples)?;

    if let Some(start_time) = target.start_time {
        samples.push(&families::START_TIME, start_time);
    }
    samples.push(&families::LAST_SEEN, context.now_seconds.floor());
    Ok(samples)
}

/// Exports the `*.pressure` files of `dir` when they exist.
pub(crate) fn pressure(
    context: &ScrapeContext,
    dir: &Path,
    samples: &mut Samples,
) -> Result<(), Vanished> {
    let files = [
        (
            "cpu.pressure",
            &families::PRESSURE_CPU_WAITING,
            &families::PRESSURE_CPU_STALLED,
        ),
        (
            "memory.pressure",
            &families::PRESSURE_MEMORY_WAITING,
            &families::PRESSURE_MEMORY_STALLED,
        ),
        (
            "io.pressure",
            &families::PRESSURE_IO_WAITING,
            &families::PRESSURE_IO_STALLED,
        ),
    ];
    for (file, waiting, stalled) in files {
        let Some(text) = context.read(dir, file)? else {
            continue;
        };
        let Some(totals) = context.parsed(&dir.join(file), parse::pressure(&text)) else {
            continue;
        };
        if let Some(some) = totals.some {
            samples.push(waiting, microseconds(some));
        }
        if let Some(full) = totals.full {
            samples.push(stalled, microseconds(full));
        }
    }
    Ok(())
}

/// Block I/O counters of one device.
pub(crate) struct DeviceIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

pub(crate) fn device_io(
    context: &ScrapeContext,
    device: DeviceNumber,
    io: &DeviceIo,
    samples: &mut Samples,
) {
    let label = vec![("device", context.device_name(device))];
    samples.push_labeled(
        &families::FS_READS_BYTES,
        label.clone(),
        io.read_bytes as f64,
    );
    samples.push_labeled(
        &families::FS_WRITES_BYTES,
        label.clone(),
        io.write_bytes as f64,
    );
    samples.push_labeled(&families::FS_READS, label.clone(), io.reads as f64);
    samples.push_labeled(&families::FS_WRITES, label, io.writes as f64);
}

/// Usage minus inactive file pages, floored at 0. The two values come from
/// different kernel counters read one after the other, so the inactive file
/// pages can exceed the usage.
pub(crate) fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

pub(crate) fn microseconds(value: u64) -> f64 {
    value as f64 / 1e6
}

pub(crate) fn nanoseconds(value: u64) -> f64 {
    value as f64 / 1e9
}
