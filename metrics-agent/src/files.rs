//! Descriptors kept open from one scrape to the next.
//!
//! Opening and closing a cgroup or `/proc` file costs the kernel more than
//! generating its content: a path lookup, a `struct file`, and for cgroupfs
//! a kernfs open record. The agent therefore keeps each container's control
//! files open and reads them again with `pread` at offset 0, which makes a
//! seq_file (every cgroup control file, `/proc/PID/net/dev`) generate its
//! content anew. Two kinds of files are opened for every read instead:
//!
//! - cgroup v1 `cgroup.procs`: the kernel keeps the PID list of an open file
//!   and reuses it while the file is read again within a second, so a kept
//!   descriptor would return a stale list under frequent scrapes;
//! - files opened once the descriptor budget is spent (see [`Budget`]).
//!
//! The descriptors of a container are closed when discovery no longer lists
//! it, when a scrape finds it gone, and file by file when a read fails.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use corral_runtime::state::CgroupPaths;
use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::collect::{NamespaceId, ScrapeContext};
use crate::read::{CgroupDir, Records, Vanished};

/// Descriptors left out of the budget for everything else the agent opens:
/// HTTP connections, the inotify instance, the supervisor's socket and the
/// files one scrape opens and closes.
const RESERVED_DESCRIPTORS: u64 = 512;

/// Raises the soft limit of open files (RLIMIT_NOFILE) to the hard limit
/// and returns the new soft limit. Any process may raise its soft limit up
/// to its hard limit. The error is that of getrlimit or setrlimit, which a
/// seccomp filter or a security module can block.
pub fn raise_open_files_limit() -> Result<u64, Errno> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// Returns the default number of descriptors the agent keeps open between
/// scrapes: the soft limit of open files minus a reserve of 512.
pub fn default_kept_descriptors() -> usize {
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX)
}

/// The number of descriptors the agent may keep open between scrapes. Once
/// it is spent, further files are opened and closed on every scrape, which
/// costs more CPU time but no descriptors.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    kept: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            kept: AtomicUsize::new(0),
        })
    }

    /// Takes one descriptor's share, or returns false when none is left.
    fn take(&self) -> bool {
        self.kept
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |kept| {
                (kept < self.limit).then_some(kept + 1)
            })
            .is_ok()
    }

    /// Number of descriptors kept now.
    pub(crate) fn kept(&self) -> usize {
        self.kept.load(Ordering::Relaxed)
    }
}

/// An open descriptor, either kept between scrapes (counted in a
/// [`Budget`]) or closed at the end of the scrape that opened it.
#[derive(Debug)]
pub(crate) struct Descriptor {
    fd: OwnedFd,
    budget: Option<Arc<Budget>>,
}

impl Descriptor {
    /// Wraps `fd` for this scrape only.
    pub(crate) fn this_scrape(fd: OwnedFd) -> Self {
        Self { fd, budget: None }
    }

    /// Returns `fd` kept between scrapes if the budget allows, else for this
    /// scrape only.
    pub(crate) fn kept_if_room(fd: OwnedFd, budget: &Arc<Budget>) -> Self {
        let mut descriptor = Self::this_scrape(fd);
        descriptor.keep(budget);
        descriptor
    }

    pub(crate) fn is_kept(&self) -> bool {
        self.budget.is_some()
    }

    /// Keeps the descriptor between scrapes if the budget allows, and
    /// returns whether it is kept.
    pub(crate) fn keep(&mut self, budget: &Arc<Budget>) -> bool {
        if self.budget.is_none() && budget.take() {
            self.budget = Some(Arc::clone(budget));
        }
        self.is_kept()
    }
}

impl AsFd for Descriptor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.kept.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Descriptors and state kept for one process: its `/proc/PID/fd`
/// directory, opened with `O_PATH`, and the last view of its network
/// namespace.
pub(crate) struct ProcessDir {
    pub fd_dir: Descriptor,
    pub network: Option<Network>,
    used: bool,
}

impl ProcessDir {
    pub(crate) fn new(fd_dir: Descriptor) -> Self {
        Self {
            fd_dir,
            network: None,
            used: true,
        }
    }
}

/// The network namespace of a process as the agent last saw it.
pub(crate) enum Network {
    /// The agent's own namespace, or one the agent could not compare with
    /// its own: no counters are exported.
    Host,
    /// Another namespace, with its `net/dev` open.
    Own {
        namespace: NamespaceId,
        dev: Descriptor,
    },
}

/// The descriptors of one target: its cgroup directories with their control
/// files, and the `/proc` directories of its processes.
pub(crate) struct TargetFiles {
    /// The cgroup paths these descriptors belong to. A target whose state
    /// file names other paths starts with new descriptors.
    pub cgroup: CgroupPaths,
    dirs: Vec<CgroupDir>,
    processes: HashMap<i32, ProcessDir>,
}

impl TargetFiles {
    pub(crate) fn new(cgroup: CgroupPaths) -> Self {
        Self {
            cgroup,
            dirs: Vec::new(),
            processes: HashMap::new(),
        }
    }

    /// Returns whether nothing is kept for the target.
    pub(crate) fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.processes.is_empty()
    }

    /// Returns the cgroup directory `path`, opening it unless it is kept
    /// from an earlier scrape, and marks it used in this scrape. See
    /// [`ScrapeContext::open_dir_fd`] for the errors.
    pub(crate) fn dir(
        &mut self,
        context: &ScrapeContext,
        path: &Path,
        fresh_pid_lists: bool,
    ) -> Result<Option<&CgroupDir>, Vanished> {
        // Comparing the bytes is cheaper than comparing path components, and
        // every path of a target comes from the same state file or walk.
        let path_bytes = path.as_os_str();
        if let Some(index) = self
            .dirs
            .iter()
            .position(|dir| dir.path().as_os_str() == path_bytes)
        {
            let dir = &self.dirs[index];
            dir.mark_used();
            return Ok(Some(dir));
        }
        let Some(fd) = context.open_dir_fd(path)? else {
            return Ok(None);
        };
        self.dirs.push(CgroupDir::new(path, fd, fresh_pid_lists));
        Ok(self.dirs.last())
    }

    /// Returns what is kept of process `pid`, marking it used.
    pub(crate) fn process(&mut self, pid: i32) -> Option<&mut ProcessDir> {
        let process = self.processes.get_mut(&pid)?;
        process.used = true;
        Some(process)
    }

    pub(crate) fn add_process(&mut self, pid: i32, process: ProcessDir) -> &mut ProcessDir {
        self.processes.insert(pid, process);
        self.processes
            .get_mut(&pid)
            .expect("the process was just added")
    }

    pub(crate) fn forget_process(&mut self, pid: i32) {
        self.processes.remove(&pid);
    }

    /// Ends a scrape of the target: closes what this scrape did not use and
    /// the descriptors the budget has no room for.
    pub(crate) fn finish(&mut self, budget: &Arc<Budget>) {
        self.dirs.retain_mut(|dir| dir.finish(budget));
        self.processes.retain(|_, process| {
            if !std::mem::take(&mut process.used) || !process.fd_dir.keep(budget) {
                return false;
            }
            if let Some(Network::Own { dev, .. }) = &mut process.network {
                if !dev.keep(budget) {
                    process.network = None;
                }
            }
            true
        });
    }
}

thread_local! {
    /// Buffer of [`pread_text`], reused by every read of a scrape thread.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads the whole file behind `fd` from offset 0 as text, through a buffer
/// that the thread reuses, so that the text is allocated at its own size.
pub(crate) fn pread_text(fd: BorrowedFd<'_>, records: Records) -> io::Result<String> {
    READ_BUFFER.with_borrow_mut(|bytes| {
        pread_all(fd, records, bytes)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    })
}

/// Reads the whole file behind `fd` from offset 0 into `bytes`, replacing
/// their content. `records` states whether a short read ends the file.
pub(crate) fn pread_all(
    fd: BorrowedFd<'_>,
    records: Records,
    bytes: &mut Vec<u8>,
) -> io::Result<()> {
    const CHUNK: usize = 4096;
    bytes.clear();
    loop {
        let start = bytes.len();
        bytes.resize(start + CHUNK, 0);
        let offset = libc::off_t::try_from(start).map_err(|_| io::ErrorKind::InvalidData)?;
        match nix::sys::uio::pread(fd, &mut bytes[start..], offset) {
            Ok(count) => {
                bytes.truncate(start + count);
                if count == 0 || (records == Records::One && count < CHUNK) {
                    return Ok(());
                }
            }
            Err(Errno::EINTR) => bytes.truncate(start),
            Err(errno) => {
                bytes.truncate(start);
                return Err(io::Error::from(errno));
            }
        }
    }
}
