//! Reading one target at scrape time: the per-scrape context, the steps
//! shared by cgroup v1 and v2, and the order of the steps.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use corral_runtime::state::CgroupPaths;
use nix::errno::Errno;
use nix::sys::stat::Mode;

use crate::exposition::Samples;
use crate::families;
use crate::files::{Budget, TargetFiles};
use crate::parse::{self, DeviceNumber, ParseError};
use crate::read::{self, CgroupDir, ErrorKind, ReadErrors, Vanished};
use crate::target::Target;
use crate::{process, v1, v2};

/// Identity of a namespace: the device and inode of its nsfs file.
pub(crate) type NamespaceId = (u64, u64);

/// State of one scrape, shared by every target it reads.
pub(crate) struct ScrapeContext<'a> {
    pub errors: &'a ReadErrors,
    pub sys_root: &'a Path,
    pub per_cpu: bool,
    /// Whether `proc_root` is a procfs mount rather than a fixture tree.
    pub proc_is_procfs: bool,
    /// USER_HZ, the unit of v1 `cpuacct.stat`.
    pub ticks_per_second: f64,
    pub now_seconds: f64,
    /// The agent's own network namespace. `None` when it could not be read,
    /// and then no network counters are exported, because they might be
    /// the host's.
    pub host_network_namespace: Option<NamespaceId>,
    /// Device names looked up during this scrape. The cache lives only as long
    /// as the scrape, so it cannot grow without bound.
    device_names: Mutex<HashMap<DeviceNumber, String>>,
    /// Descriptors kept between scrapes draw on this budget.
    pub budget: Arc<Budget>,
    /// `proc_root` opened with `O_PATH`, to open `/proc/PID` directories
    /// below it. `None` when it could not be opened, and then no process
    /// metrics are exported.
    pub proc_dir: Option<OwnedFd>,
    /// Parent directories of the cgroups read in this scrape, `None` for
    /// one that could not be opened.
    parents: Mutex<HashMap<PathBuf, Option<Arc<OwnedFd>>>>,
    /// Whether v1 cgroups have `*.pressure` files in their cpuacct
    /// directory, probed on the first v1 container of the scrape. Every
    /// cgroup below the root of a v1 hierarchy has the same control files.
    v1_pressure: OnceLock<bool>,
}

impl<'a> ScrapeContext<'a> {
    pub(crate) fn new(
        errors: &'a ReadErrors,
        proc_root: &'a Path,
        sys_root: &'a Path,
        per_cpu: bool,
        now_seconds: f64,
        budget: Arc<Budget>,
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
        let proc_dir = nix::fcntl::open(proc_root, read::DIRECTORY_FLAGS, Mode::empty())
            .inspect_err(|errno| {
                errors.record(
                    ErrorKind::Proc,
                    format_args!("failed to open {}: {errno}", proc_root.display()),
                )
            })
            .ok();
        let proc_is_procfs = nix::sys::statfs::statfs(proc_root)
            .is_ok_and(|stat| stat.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
        Self {
            errors,
            sys_root,
            per_cpu,
            proc_is_procfs,
            ticks_per_second: procfs::ticks_per_second() as f64,
            now_seconds,
            host_network_namespace,
            device_names: Mutex::new(HashMap::new()),
            v1_pressure: OnceLock::new(),
            budget,
            proc_dir,
            parents: Mutex::new(HashMap::new()),
        }
    }

    /// Returns whether v1 cgroups have pressure files, probing `cpuacct`,
    /// a container's cpuacct directory, on the first call of the scrape.
    pub(crate) fn v1_has_pressure(&self, cpuacct: &CgroupDir) -> Result<bool, Vanished> {
        if let Some(&present) = self.v1_pressure.get() {
            return Ok(present);
        }
        let present = cpuacct.exists(self, "cpu.pressure")?;
        Ok(*self.v1_pressure.get_or_init(|| present))
    }

    /// Opens the cgroup directory `path` with `O_PATH`. Its parent directory
    /// is opened once per scrape, because the containers of one supervisor
    /// share it, and opening a directory below it walks one path component
    /// instead of the whole path.
    ///
    /// Returns [`Vanished`] when the directory is gone and `Ok(None)` when it
    /// cannot be opened for another reason, which is counted.
    pub(crate) fn open_dir_fd(&self, path: &Path) -> Result<Option<OwnedFd>, Vanished> {
        let parent = path.parent().and_then(|parent| self.parent_dir(parent));
        let opened = match (&parent, path.file_name()) {
            (Some(parent), Some(name)) => {
                nix::fcntl::openat(parent.as_ref(), name, read::DIRECTORY_FLAGS, Mode::empty())
            }
            _ => nix::fcntl::open(path, read::DIRECTORY_FLAGS, Mode::empty()),
        };
        match opened {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT | Errno::ENODEV) => Err(Vanished),
            Err(errno) => {
                self.errors.record(
                    ErrorKind::Cgroup,
                    format_args!("failed to open {}: {errno}", path.display()),
                );
                Ok(None)
            }
        }
    }

    /// Returns the open directory `path`, or `None` when it cannot be
    /// opened, which the caller handles by opening the full path.
    fn parent_dir(&self, path: &Path) -> Option<Arc<OwnedFd>> {
        let mut parents = self.parents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(parent) = parents.get(path) {
            return parent.clone();
        }
        let parent = nix::fcntl::open(path, read::DIRECTORY_FLAGS, Mode::empty())
            .ok()
            .map(Arc::new);
        parents.insert(path.to_path_buf(), parent.clone());
        parent
    }

    /// Reads a cgroup file, see [`CgroupDir::read`].
    pub(crate) fn read(
        &self,
        dir: &CgroupDir,
        file: &'static str,
    ) -> Result<Option<String>, Vanished> {
        dir.read(self, file)
    }

    /// Counts and logs a file whose content does not parse.
    pub(crate) fn parse_failed(&self, path: &Path, error: &ParseError) {
        self.errors.record(
            ErrorKind::Parse,
            format_args!("invalid content in {}: {error}", path.display()),
        );
    }

    /// Unwraps the parse result of `file` in `dir`, counting the error and
    /// returning `None`.
    pub(crate) fn parsed_in<T>(
        &self,
        dir: &CgroupDir,
        file: &str,
        result: Result<T, ParseError>,
    ) -> Option<T> {
        result
            .inspect_err(|error| self.parse_failed(&dir.path().join(file), error))
            .ok()
    }

    /// Reads and parses a single-value file.
    pub(crate) fn value(
        &self,
        dir: &CgroupDir,
        file: &'static str,
    ) -> Result<Option<u64>, Vanished> {
        let Some(text) = self.read(dir, file)? else {
            return Ok(None);
        };
        Ok(self.parsed_in(dir, file, parse::single_value(&text)))
    }

    /// Reads a flat-keyed file for lookups with [`KeyedFile::get`].
    pub(crate) fn keyed<'d>(
        &self,
        dir: &'d CgroupDir,
        file: &'static str,
    ) -> Result<Option<KeyedFile<'d>>, Vanished> {
        Ok(self
            .read(dir, file)?
            .map(|text| KeyedFile { dir, file, text }))
    }

    /// Returns the `device` label of a block device: `/dev/NAME` from
    /// `/sys/dev/block/MAJ:MIN/uevent`, or `MAJ:MIN` when sysfs does not
    /// name it (a removed device, or a sysfs without that entry).
    pub(crate) fn device_name(&self, device: DeviceNumber) -> String {
        let mut names = self.device_names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = names.get(&device) {
            return name.clone();
        }
        let number = format!("{}:{}", device.major, device.minor);
        let uevent = self.sys_root.join("dev/block").join(&number).join("uevent");
        let name = std::fs::read_to_string(&uevent)
            .ok()
            .and_then(|text| parse::uevent_device_name(&text).map(|name| format!("/dev/{name}")))
            .unwrap_or(number);
        names.insert(device, name.clone());
        name
    }
}

/// A flat-keyed cgroup file that was read successfully.
pub(crate) struct KeyedFile<'d> {
    dir: &'d CgroupDir,
    file: &'static str,
    text: String,
}

impl KeyedFile<'_> {
    /// Returns the value of `key`, or `None` when the file lacks the key or
    /// the value does not parse (which is counted).
    pub(crate) fn get(&self, context: &ScrapeContext, key: &str) -> Option<u64> {
        context
            .parsed_in(self.dir, self.file, parse::flat_keyed(&self.text, key))
            .flatten()
    }
}

pub(crate) fn namespace_id(path: &Path) -> std::io::Result<NamespaceId> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

/// Containers one scrape thread reads at least. Below this many per
/// thread, starting a thread costs more than it saves.
pub(crate) const TARGETS_PER_THREAD: usize = 64;

/// Reads every target, on up to `max_threads` threads, with the
/// descriptors in `files` (one entry per target, in the same order), and
/// returns the results in the order of `targets`. Each target's descriptors
/// are finished for the next scrape.
pub(crate) fn collect_targets(
    context: &ScrapeContext,
    targets: &[Target],
    files: &mut [TargetFiles],
    max_threads: usize,
) -> Vec<Result<Samples, Vanished>> {
    let threads = targets
        .len()
        .div_ceil(TARGETS_PER_THREAD)
        .clamp(1, max_threads.max(1));
    if threads == 1 {
        return targets
            .iter()
            .zip(files.iter_mut())
            .map(|(target, files)| collect_target(context, target, files))
            .collect();
    }

    // Threads take the next unread target, so that a slow container does not
    // hold up a fixed share of the others. Each target's descriptors move to
    // the thread that reads it; the mutexes are never contended.
    let work: Vec<(&Target, Mutex<&mut TargetFiles>)> = targets
        .iter()
        .zip(files.iter_mut().map(Mutex::new))
        .collect();
    let next = AtomicUsize::new(0);
    let run = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some((target, files)) = work.get(index) else {
                return done;
            };
            let mut files = files.lock().unwrap_or_else(|e| e.into_inner());
            done.push((index, collect_target(context, target, &mut files)));
        }
    };
    let mut results: Vec<Option<Result<Samples, Vanished>>> = std::iter::repeat_with(|| None)
        .take(targets.len())
        .collect();
    std::thread::scope(|scope| {
        let mut helpers = Vec::new();
        for _ in 1..threads {
            match std::thread::Builder::new()
                .name("scrape".to_string())
                .spawn_scoped(scope, run)
            {
                Ok(handle) => helpers.push(handle),
                Err(error) => {
                    // The calling thread reads whatever the others leave.
                    tracing::warn!(%error, "failed to start a scrape thread");
                    break;
                }
            }
        }
        let mut finished = vec![run()];
        for helper in helpers {
            match helper.join() {
                Ok(done) => finished.push(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        for (index, result) in finished.into_iter().flatten() {
            results[index] = Some(result);
        }
    });
    results
        .into_iter()
        .map(|result| result.expect("every index below the length is taken once"))
        .collect()
}

/// Reads every metric of one target. [`Vanished`] means the target went away
/// during the scrape and none of its samples may be exported.
///
/// Descriptors kept from an earlier scrape report a removed cgroup even when
/// a new one took its path, as a plain cgroup of `--cgroup-root` may. The
/// target is then read once more with new descriptors.
fn collect_target(
    context: &ScrapeContext,
    target: &Target,
    files: &mut TargetFiles,
) -> Result<Samples, Vanished> {
    if files.is_empty() {
        return collect_target_with(context, target, files);
    }
    collect_target_with(context, target, files).or_else(|Vanished| {
        *files = TargetFiles::new(target.cgroup.clone());
        collect_target_with(context, target, files)
    })
}

fn collect_target_with(
    context: &ScrapeContext,
    target: &Target,
    files: &mut TargetFiles,
) -> Result<Samples, Vanished> {
    let mut samples = Samples::new(target.labels());

    let (processes_dir, tasks) = match &target.cgroup {
        CgroupPaths::V1 { controllers } => {
            let tasks = v1::collect(context, files, controllers, &mut samples)?;
            (v1::processes_dir(controllers), tasks)
        }
        CgroupPaths::V2 { path } => {
            let tasks = v2::collect(context, files, path, &mut samples)?;
            (Some(path.as_path()), tasks)
        }
    };
    let fresh_pid_lists = matches!(target.cgroup, CgroupPaths::V1 { .. });
    let processes = process::Processes {
        dir: processes_dir,
        fresh_pid_lists,
        tasks,
        init_pid: target.pid,
    };
    process::collect(context, files, &processes, &mut samples)?;
    files.finish(&context.budget);

    if let Some(start_time) = target.start_time {
        samples.push(&families::START_TIME, start_time);
    }
    samples.push(&families::LAST_SEEN, context.now_seconds.floor());
    Ok(samples)
}

/// Exports `pids.max` of `dir` as `container_threads_max`, cAdvisor's name
/// for the task limit (`max`, no limit, is 0), and returns `pids.current`,
/// the number of tasks (threads) in the cgroup and its descendants.
/// Both files exist only where the pids controller is enabled.
pub(crate) fn pids(
    context: &ScrapeContext,
    dir: &CgroupDir,
    samples: &mut Samples,
) -> Result<Option<u64>, Vanished> {
    if let Some(text) = context.read(dir, "pids.max")? {
        let parsed = parse::single_value_or_max(&text);
        if let Some(limit) = context.parsed_in(dir, "pids.max", parsed) {
            samples.push(&families::THREADS_MAX, limit.unwrap_or(0) as f64);
        }
    }
    context.value(dir, "pids.current")
}

/// Exports the `*.pressure` files of `dir` when they exist.
pub(crate) fn pressure(
    context: &ScrapeContext,
    dir: &CgroupDir,
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
        let Some(totals) = context.parsed_in(dir, file, parse::pressure(&text)) else {
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
    let label = ("device", context.device_name(device));
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
