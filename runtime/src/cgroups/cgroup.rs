//! One container's cgroup: limits, membership, freezing, killing, removal.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::{files, unique_dirs, v1, v2, CgroupError, CgroupPaths};

/// How long `freeze` and `thaw` wait for the kernel to report the new state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `kill_all` keeps killing before it gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `remove` retries a directory that is busy while its last
/// processes exit.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A container's cgroup: one directory per controller on v1, one directory
/// on v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    paths: CgroupPaths,
    id: String,
}

impl Cgroup {
    /// Wraps existing cgroup directories, such as those in a state file.
    pub fn open(paths: CgroupPaths, id: String) -> Cgroup {
        Cgroup { paths, id }
    }

    pub fn paths(&self) -> &CgroupPaths {
        &self.paths
    }

    /// Returns the cgroup's path from its hierarchy root, which is the
    /// metrics' `id` label.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Writes the limits of an OCI spec's `linux.resources`.
    ///
    /// A limit that this host cannot enforce (a missing controller, no swap
    /// accounting, a v1-only field on v2) is an error that names the field.
    /// Kernel memory limits are ignored with a warning. On v2 the device
    /// rules become a device program that replaces the cgroup's previous one,
    /// while v1 applies them on top of the current rules.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        match &self.paths {
            CgroupPaths::V1 { controllers } => v1::apply(controllers, resources),
            CgroupPaths::V2 { path } => v2::apply(path, resources),
        }
    }

    /// Returns whether the cgroup can enforce device rules: on v2 always,
    /// through a device program, and on v1 with a devices controller.
    pub fn enforces_devices(&self) -> bool {
        match &self.paths {
            CgroupPaths::V1 { controllers } => controllers.contains_key("devices"),
            CgroupPaths::V2 { .. } => true,
        }
    }

    /// Moves process `pid` (all its threads) into the cgroup, in every
    /// controller directory on v1.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in unique_dirs(&self.paths) {
            files::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Returns the processes in the cgroup and its descendants, sorted. On v1
    /// this is the union over all controller directories.
    pub fn processes(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in unique_dirs(&self.paths) {
            for cgroup in walk(dir)? {
                pids.extend(files::read_pids(&cgroup.join("cgroup.procs"))?);
            }
        }
        Ok(pids.into_iter().collect())
    }

    /// Freezes every process in the cgroup and waits until the kernel
    /// reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    /// Returns whether the cgroup is frozen; false without a freezer.
    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Some(Freezer::V1(dir)) => files::read(&dir.join("freezer.state"))
                .map(|state| state.trim() == "FROZEN")
                .unwrap_or(false),
            Some(Freezer::V2(dir)) => files::read_keyed(&dir.join("cgroup.events"), "frozen")
                .map(|frozen| frozen == 1)
                .unwrap_or(false),
            None => false,
        }
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let operation = if frozen { "freezing" } else { "thawing" };
        let freezer = self
            .freezer()
            .ok_or_else(|| CgroupError::MissingController {
                operation: if frozen { "freeze" } else { "thaw" },
                controller: "freezer",
                path: self.main_dir().to_path_buf(),
            })?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            // Each write of FROZEN makes the v1 freezer retry the tasks that
            // have not frozen yet, so the request is repeated while the state
            // reads FREEZING.
            let (request, state) = match freezer {
                Freezer::V1(dir) => (dir.join("freezer.state"), dir.join("freezer.state")),
                Freezer::V2(dir) => (dir.join("cgroup.freeze"), dir.join("cgroup.events")),
            };
            let value = match (freezer, frozen) {
                (Freezer::V1(_), true) => "FROZEN",
                (Freezer::V1(_), false) => "THAWED",
                (Freezer::V2(_), true) => "1",
                (Freezer::V2(_), false) => "0",
            };
            files::write(&request, value)?;

            let reached = match freezer {
                Freezer::V1(_) => files::read(&state)?.trim() == value,
                Freezer::V2(_) => files::read_keyed(&state, "frozen")? == u64::from(frozen),
            };
            if reached {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if frozen {
                    // Leave no half-frozen cgroup behind on failure.
                    let _ = self.set_frozen(false);
                }
                return Err(CgroupError::Timeout {
                    operation,
                    path: state,
                    timeout: FREEZE_TIMEOUT,
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn freezer(&self) -> Option<Freezer<'_>> {
        match &self.paths {
            CgroupPaths::V1 { controllers } => {
                controllers.get("freezer").map(|dir| Freezer::V1(dir))
            }
            CgroupPaths::V2 { path } => path
                .join("cgroup.freeze")
                .exists()
                .then_some(Freezer::V2(path)),
        }
    }

    /// Sends SIGKILL to every process in the cgroup and its descendants and
    /// waits until none is left.
    ///
    /// On v2 with `cgroup.kill` (Linux 5.14) the kernel kills them all at
    /// once. Otherwise each round freezes the cgroup, so that no process can
    /// fork or exit while the PIDs are read, kills every PID, and thaws so the
    /// kills take effect. Without a freezer (v1 with no freezer mount) rounds
    /// repeat until the cgroup is empty, which a fork loop faster than the
    /// kills could outrun until the timeout.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        match self.kill_all_rounds() {
            // A controller's directory was removed meanwhile, which the kernel
            // allows only once the cgroup is empty: this happens when the
            // container's runtime cleans up right after the kill.
            Err(error) if error.is_not_found() => Ok(()),
            result => result,
        }
    }

    fn kill_all_rounds(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + KILL_TIMEOUT;
        if let CgroupPaths::V2 { path } = &self.paths {
            let kill = path.join("cgroup.kill");
            if kill.exists() {
                files::write(&kill, "1")?;
                return self.wait_until_empty(deadline, || Ok(()));
            }
        }
        let has_freezer = self.freezer().is_some();
        self.wait_until_empty(deadline, || {
            if has_freezer {
                self.freeze()?;
            }
            let result = self
                .processes()
                .and_then(|pids| self.send(&pids, Signal::SIGKILL));
            if has_freezer {
                self.thaw()?;
            }
            result
        })
    }

    /// Runs `round` until the cgroup has no processes or `deadline` passes.
    fn wait_until_empty(
        &self,
        deadline: Instant,
        mut round: impl FnMut() -> Result<(), CgroupError>,
    ) -> Result<(), CgroupError> {
        let mut pause = Duration::from_millis(1);
        loop {
            let pids = self.processes()?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::ProcessesRemain {
                    operation: "killing the processes of",
                    path: self.main_dir().to_path_buf(),
                    timeout: KILL_TIMEOUT,
                    pids,
                });
            }
            round()?;
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to every process in the cgroup and its descendants.
    pub fn signal_all(&self, signal: i32) -> Result<(), CgroupError> {
        let signal = Signal::try_from(signal)
            .map_err(|source| CgroupError::InvalidSignal { signal, source })?;
        self.send(&self.processes()?, signal)
    }

    fn send(&self, pids: &[i32], signal: Signal) -> Result<(), CgroupError> {
        for &pid in pids {
            match signal::kill(Pid::from_raw(pid), signal) {
                // The process exited after the PIDs were read.
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => {
                    return Err(CgroupError::Signal {
                        pid,
                        signal: signal as i32,
                        path: self.main_dir().to_path_buf(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Returns how many processes the OOM killer has killed in the cgroup:
    /// the `oom_kill` line of `memory.oom_control` on v1 (Linux 4.13) or of
    /// `memory.events` on v2.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let file = match &self.paths {
            CgroupPaths::V1 { controllers } => controllers
                .get("memory")
                .ok_or_else(|| CgroupError::MissingController {
                    operation: "count OOM kills",
                    controller: "memory",
                    path: self.main_dir().to_path_buf(),
                })?
                .join("memory.oom_control"),
            CgroupPaths::V2 { path } => path.join("memory.events"),
        };
        files::read_keyed(&file, "oom_kill")
    }

    /// Removes the cgroup's directories, descendants first. A directory that
    /// is already gone is fine. A busy one (`EBUSY` while the last processes
    /// exit) is retried for up to five seconds. A directory that cannot be
    /// removed does not stop the removal of the others, and the first such
    /// error is returned.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        let mut first_error = None;
        for dir in unique_dirs(&self.paths) {
            if let Err(error) = remove_tree(dir, deadline) {
                tracing::debug!(dir = %dir.display(), %error, "failed to remove a cgroup directory");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Returns the directory that errors name when no particular file failed.
    fn main_dir(&self) -> &Path {
        match &self.paths {
            CgroupPaths::V1 { controllers } => controllers
                .get("memory")
                .or_else(|| controllers.values().next())
                .map_or(Path::new(""), PathBuf::as_path),
            CgroupPaths::V2 { path } => path,
        }
    }
}

#[derive(Clone, Copy)]
enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// Returns `dir` and every directory below it, parents before children.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut found = vec![dir.to_path_buf()];
    let mut next = 0;
    while next < found.len() {
        let current = found[next].clone();
        next += 1;
        let read_error = |source| CgroupError::Read {
            path: current.clone(),
            source,
        };
        for entry in fs::read_dir(&current).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            if entry.file_type().map_err(read_error)?.is_dir() {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// Removes `dir` and the cgroups below it, descendants first.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let cgroups = match walk(dir) {
        Ok(cgroups) => cgroups,
        Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(error) => return Err(error),
    };
    // `walk` lists parents before children.
    for cgroup in cgroups.iter().rev() {
        remove_dir(cgroup, deadline)?;
    }
    Ok(())
}

fn remove_dir(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let mut pause = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error)
                if error.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}
