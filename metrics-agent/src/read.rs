//! Scrape-time reads and the error policy around them.
//!
//! A container can exit or be deleted while a scrape reads it. The kernel then
//! reports ENOENT (the cgroup directory or `/proc/PID` is gone), ENODEV (a
//! cgroup file of a removed cgroup) or ESRCH (a `/proc/PID` file of an exited
//! process). Such a read returns [`Vanished`] and the scrape skips the whole
//! container silently. Any other failure is counted in
//! `metrics_agent_read_errors_total{kind}`, logged at most once a minute per
//! kind, and only the affected metric is left out.

use std::collections::HashMap;
use std::fmt::Display;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use prometheus::{IntCounterVec, Opts, Registry};

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

/// An open cgroup directory. Its files are opened relative to the
/// directory's descriptor, which spares the kernel a walk of the whole path
/// for each of the dozen files a scrape reads from it.
pub(crate) struct CgroupDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl CgroupDir {
    /// Opens `path`. Returns [`Vanished`] when the directory is gone and
    /// `Ok(None)` when it cannot be opened for another reason, which is
    /// counted.
    pub(crate) fn open(errors: &ReadErrors, path: &Path) -> Result<Option<Self>, Vanished> {
        Self::opened(
            errors,
            path,
            nix::fcntl::open(path, DIRECTORY_FLAGS, Mode::empty()),
        )
    }

    /// Opens `path`, whose parent directory is open as `parent`; see
    /// [`CgroupDir::open`].
    pub(crate) fn open_in(
        errors: &ReadErrors,
        parent: &OwnedFd,
        path: &Path,
    ) -> Result<Option<Self>, Vanished> {
        let Some(name) = path.file_name() else {
            return Self::open(errors, path);
        };
        let opened = nix::fcntl::openat(parent, name, DIRECTORY_FLAGS, Mode::empty());
        Self::opened(errors, path, opened)
    }

    fn opened(
        errors: &ReadErrors,
        path: &Path,
        opened: nix::Result<OwnedFd>,
    ) -> Result<Option<Self>, Vanished> {
        match opened {
            Ok(fd) => Ok(Some(Self {
                path: path.to_path_buf(),
                fd,
            })),
            Err(Errno::ENOENT | Errno::ENODEV) => Err(Vanished),
            Err(errno) => {
                errors.record(
                    ErrorKind::Cgroup,
                    format_args!("failed to open {}: {errno}", path.display()),
                );
                Ok(None)
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns false when the directory has no subdirectories, which spares
    /// listing it. Cgroupfs, like most file systems, counts a directory's
    /// links as 2 plus its subdirectories. A file system that counts
    /// otherwise, or a failed `fstat`, gives true.
    pub(crate) fn may_have_children(&self) -> bool {
        nix::sys::stat::fstat(&self.fd).map_or(true, |stat| stat.st_nlink != 2)
    }

    /// Returns whether the cgroup has the control file `file`.
    pub(crate) fn exists(&self, errors: &ReadErrors, file: &str) -> Result<bool, Vanished> {
        match nix::sys::stat::fstatat(&self.fd, file, nix::fcntl::AtFlags::empty()) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) if self.path.is_dir() => Ok(false),
            Err(Errno::ENOENT | Errno::ENODEV) => Err(Vanished),
            Err(errno) => {
                errors.record(
                    ErrorKind::Cgroup,
                    format_args!("failed to stat {}: {errno}", self.path.join(file).display()),
                );
                Ok(false)
            }
        }
    }

    /// Reads a file of this cgroup.
    ///
    /// Returns `Ok(None)` when the file does not exist in a cgroup directory
    /// that does (the kernel or the controller does not provide it, such as
    /// `memory.swap.current` without swap accounting), and when the read
    /// failed for another reason, which is counted. Returns [`Vanished`]
    /// when the cgroup itself is gone.
    pub(crate) fn read(&self, errors: &ReadErrors, file: &str) -> Result<Option<String>, Vanished> {
        let records = match file {
            "cgroup.procs" => Records::Many,
            _ => Records::One,
        };
        let error = match read_at(&self.fd, file, records) {
            Ok(text) => return Ok(Some(text)),
            Err(error) => error,
        };
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
        errors.record(
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
    /// reached the end of the file.
    One,
    /// The kernel shows the file record by record (`cgroup.procs` lists a
    /// PID per record, `/proc/PID/net/dev` an interface per record). A read
    /// can stop short at a record boundary, so only a read of 0 bytes ends
    /// the file.
    Many,
}

/// Reads the whole file `name` below the directory `dir` as text.
fn read_at(dir: &OwnedFd, name: &str, records: Records) -> io::Result<String> {
    let fd = nix::fcntl::openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(io::Error::from)?;
    read_to_end(File::from(fd), records)
}

/// Reads the whole file at `path` as text.
pub(crate) fn file(path: &Path, records: Records) -> io::Result<String> {
    read_to_end(File::open(path)?, records)
}

/// Reads `file` to its end. Kernel files report a size of 0 or 4096
/// whatever their content, so the file is not sized with a `stat` call
/// first, as `std::fs::read_to_string` does, and `records` states whether
/// a short read ends it.
fn read_to_end(mut file: File, records: Records) -> io::Result<String> {
    let mut bytes = Vec::with_capacity(READ_CHUNK);
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => {
                bytes.extend_from_slice(&chunk[..count]);
                if records == Records::One && count < chunk.len() {
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    String::from_utf8(bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Size of one `read` call: every cgroup control file the agent reads,
/// except long `cgroup.procs` lists, fits in one.
const READ_CHUNK: usize = 4096;

/// Outcome of reading a file of one process below `/proc`.
pub(crate) enum ProcRead<T> {
    Value(T),
    /// The process exited (ENOENT or ESRCH).
    Exited,
    /// The read failed for another reason; the error is already counted.
    Failed,
}
