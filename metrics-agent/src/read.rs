//! Scrape-time reads and the error policy around them.
//!
//! A container can exit or be deleted while a scrape reads it. The kernel then
//! reports ENOENT (the cgroup directory or `/proc/PID` is gone), ENODEV (a
//! cgroup file of a removed cgroup) or ESRCH (a `/proc/PID` file of an exited
//! process). Such a read returns [`Vanished`] and the scrape skips the whole
//! container silently. Any other failure is counted in
//! `metrics_agent_read_errors_total{kind}`, logged at most once a minute per
//! kind, and only the affected metric is left out.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Display;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::collect::ScrapeContext;
use crate::files::{pread_text, Budget, Descriptor};

/// Marker error: the container went away during this scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vanished;

/// Source of a counted read error, the `kind` label of
/// `metrics_agent_read_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A state file or the containers directory could not be read, parsed
    /// or watched.
    State,
    /// A cgroup file or directory could not be read.
    Cgroup,
    /// A `/proc` file could not be read.
    Proc,
    /// A cgroup or `/proc` file did not have the kernel's format.
    Parse,
    /// The supervisor's control socket did not return the job list.
    Supervisor,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::State,
        ErrorKind::Cgroup,
        ErrorKind::Proc,
        ErrorKind::Parse,
        ErrorKind::Supervisor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::State => "state",
            ErrorKind::Cgroup => "cgroup",
            ErrorKind::Proc => "proc",
            ErrorKind::Parse => "parse",
            ErrorKind::Supervisor => "supervisor",
        }
    }
}

/// Minimum time between two log lines of the same error kind. A broken file
/// fails on every scrape, so without a limit one bad container would flood
/// the log at the scrape rate.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct LogWindow {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// Counter and rate-limited log of read errors, shared by every scrape.
pub struct ReadErrors {
    counter: IntCounterVec,
    windows: Mutex<HashMap<ErrorKind, LogWindow>>,
}

impl ReadErrors {
    /// Creates the counter with a zero series for each kind and registers it.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let counter = IntCounterVec::new(
            Opts::new(
                "metrics_agent_read_errors_total",
                "Reads of state, cgroup, /proc or supervisor data that failed, by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        for kind in ErrorKind::ALL {
            counter.with_label_values(&[kind.as_str()]);
        }
        Ok(Self {
            counter,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one error and logs it unless this kind was logged less than a
    /// minute ago.
    pub fn record(&self, kind: ErrorKind, message: impl Display) {
        self.counter.with_label_values(&[kind.as_str()]).inc();

        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(kind).or_default();
        let now = Instant::now();
        let due = window
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= LOG_INTERVAL);
        if !due {
            window.suppressed += 1;
            return;
        }
        let suppressed = window.suppressed;
        window.last_logged = Some(now);
        window.suppressed = 0;
        drop(windows);

        tracing::warn!(
            kind = kind.as_str(),
            suppressed_since_last_log = suppressed,
            "{message}"
        );
    }
}

/// Returns whether an I/O error means that the cgroup or process is gone.
fn is_gone(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENODEV) | Some(libc::ESRCH))
}

/// A cgroup directory and the control files of it that stay open between
/// scrapes. Its files are opened relative to the directory's descriptor,
/// which spares the kernel a walk of the whole path for each of them.
///
/// The methods take `&self` because the directory is borrowed from its
/// target's [`TargetFiles`](crate::files::TargetFiles) while it is read; one
/// thread reads a target at a time.
pub(crate) struct CgroupDir {
    path: PathBuf,
    /// `O_PATH` descriptor of the directory. It is kept between scrapes only
    /// when a scrape needed it for more than opening files (listing PIDs
    /// on v1, counting subdirectories), and opened again when needed.
    fd: RefCell<Option<Descriptor>>,
    /// Control files kept open, by name, in the order of their first read.
    files: RefCell<Vec<(&'static str, Descriptor)>>,
    /// Index in `files` where the next lookup starts. A scrape reads the
    /// files in the same order as the scrape before, so the file looked for
    /// is usually there.
    next_file: Cell<usize>,
    /// Whether `cgroup.procs` is opened for every read (cgroup v1).
    fresh_pid_lists: bool,
    fd_needed: Cell<bool>,
    used: Cell<bool>,
}

impl CgroupDir {
    /// Wraps the directory `path`, open as `fd`. `fresh_pid_lists` is true
    /// on cgroup v1, whose `cgroup.procs` must be opened for every read.
    pub(crate) fn new(path: &Path, fd: OwnedFd, fresh_pid_lists: bool) -> Self {
        Self {
            path: path.to_path_buf(),
            fd: RefCell::new(Some(Descriptor::this_scrape(fd))),
            files: RefCell::new(Vec::new()),
            next_file: Cell::new(0),
            fresh_pid_lists,
            fd_needed: Cell::new(false),
            used: Cell::new(true),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn mark_used(&self) {
        self.used.set(true);
    }

    /// Ends a scrape: returns false when the scrape did not use the
    /// directory, which its owner then drops, and otherwise keeps the
    /// directory's descriptor only if the scrape needed it and the budget
    /// allows.
    pub(crate) fn finish(&mut self, budget: &Arc<Budget>) -> bool {
        if !self.used.replace(false) {
            return false;
        }
        let fd = self.fd.get_mut();
        if !self.fd_needed.replace(false) || fd.as_mut().is_some_and(|fd| !fd.keep(budget)) {
            *fd = None;
        }
        true
    }

    /// Calls `f` with the directory's descriptor, opening the directory
    /// again if its descriptor was closed. `Ok(None)` means that it could
    /// not be opened, which is counted.
    fn with_fd<T>(
        &self,
        context: &ScrapeContext,
        f: impl FnOnce(BorrowedFd<'_>) -> T,
    ) -> Result<Option<T>, Vanished> {
        let mut fd = self.fd.borrow_mut();
        if fd.is_none() {
            match context.open_dir_fd(&self.path)? {
                Some(opened) => *fd = Some(Descriptor::this_scrape(opened)),
                None => return Ok(None),
            }
        }
        Ok(fd.as_ref().map(|fd| f(fd.as_fd())))
    }

    /// Returns false when the directory has no subdirectories, which spares
    /// listing it. Cgroupfs, like most file systems, counts a directory's
    /// links as 2 plus its subdirectories. A file system that counts
    /// otherwise, or a failed `fstat`, gives true.
    pub(crate) fn may_have_children(&self, context: &ScrapeContext) -> bool {
        self.fd_needed.set(true);
        self.with_fd(context, |fd| {
            nix::sys::stat::fstat(fd).map_or(true, |stat| stat.st_nlink != 2)
        })
        .ok()
        .flatten()
        .unwrap_or(true)
    }

    /// Returns whether the cgroup has the control file `file`.
    pub(crate) fn exists(&self, context: &ScrapeContext, file: &str) -> Result<bool, Vanished> {
        let stat = self.with_fd(context, |fd| {
            nix::sys::stat::fstatat(fd, file, nix::fcntl::AtFlags::empty())
        })?;
        match stat {
            None | Some(Ok(_)) => Ok(stat.is_some()),
            Some(Err(Errno::ENOENT)) if self.path.is_dir() => Ok(false),
            Some(Err(Errno::ENOENT | Errno::ENODEV)) => Err(Vanished),
            Some(Err(errno)) => {
                context.errors.record(
                    ErrorKind::Cgroup,
                    format_args!("failed to stat {}: {errno}", self.path.join(file).display()),
                );
                Ok(false)
            }
        }
    }

    /// Reads a file of this cgroup, from its kept descriptor when there is
    /// one.
    ///
    /// Returns `Ok(None)` when the file does not exist in a cgroup directory
    /// that does (the kernel or the controller does not provide it, such as
    /// `memory.swap.current` without swap accounting), and when the read
    /// failed for another reason, which is counted. Returns [`Vanished`]
    /// when the cgroup itself is gone.
    pub(crate) fn read(
        &self,
        context: &ScrapeContext,
        file: &'static str,
    ) -> Result<Option<String>, Vanished> {
        let records = match file {
            "cgroup.procs" => Records::Many,
            _ => Records::One,
        };
        let kept = {
            let files = self.files.borrow();
            let start = self.next_file.get().min(files.len());
            let (before, after) = files.split_at(start);
            after
                .iter()
                .chain(before)
                .position(|(name, _)| *name == file)
                .map(|offset| {
                    let index = (start + offset) % files.len();
                    self.next_file.set(index + 1);
                    pread_text(files[index].1.as_fd(), records)
                })
        };
        match kept {
            Some(Ok(text)) => return Ok(Some(text)),
            Some(Err(error)) => {
                self.files.borrow_mut().retain(|(name, _)| *name != file);
                return self.read_failed(context, file, error);
            }
            None => {}
        }

        let opened = self.with_fd(context, |dir| {
            nix::fcntl::openat(dir, file, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        })?;
        let fd = match opened {
            None => return Ok(None),
            Some(Ok(fd)) => fd,
            Some(Err(errno)) => return self.read_failed(context, file, io::Error::from(errno)),
        };
        let text = match pread_text(fd.as_fd(), records) {
            Ok(text) => text,
            Err(error) => return self.read_failed(context, file, error),
        };
        if self.fresh_pid_lists && file == "cgroup.procs" {
            self.fd_needed.set(true);
        } else {
            let fd = Descriptor::kept_if_room(fd, &context.budget);
            if fd.is_kept() {
                self.files.borrow_mut().push((file, fd));
            }
        }
        Ok(Some(text))
    }

    fn read_failed(
        &self,
        context: &ScrapeContext,
        file: &str,
        error: io::Error,
    ) -> Result<Option<String>, Vanished> {
        if is_gone(&error) {
            return Err(Vanished);
        }
        if error.kind() == io::ErrorKind::NotFound {
            // The descriptor of a removed cgroup stays valid but finds no
            // files, so the path shows whether the cgroup is gone.
            return if self.path.is_dir() {
                Ok(None)
            } else {
                Err(Vanished)
            };
        }
        context.errors.record(
            ErrorKind::Cgroup,
            format_args!("failed to read {}: {error}", self.path.join(file).display()),
        );
        Ok(None)
    }
}

/// Flags of a directory opened only to open files below it.
pub(crate) const DIRECTORY_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);

/// How much of a kernel file one read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Records {
    /// The kernel shows the file as one record (most cgroup control files,
    /// `/proc/PID/stat`). A seq_file read returns the whole record, growing
    /// its own buffer when needed, so a read shorter than the request has
    /// reached the end of the file. Kernel files report a size of 0 or 4096
    /// whatever their content, so no file is sized with `stat` first.
    One,
    /// The kernel shows the file record by record (`cgroup.procs` lists a
    /// PID per record, `/proc/PID/net/dev` an interface per record). A read
    /// can stop short at a record boundary, so only a read of 0 bytes ends
    /// the file.
    Many,
}

/// Outcome of reading a file of one process below `/proc`.
pub(crate) enum ProcRead<T> {
    Value(T),
    /// The process exited (ENOENT or ESRCH).
    Exited,
    /// The read failed for another reason; the error is already counted.
    Failed,
}
