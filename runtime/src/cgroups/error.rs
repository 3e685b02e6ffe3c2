use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// An error from the cgroup library. Each variant names the operation, the
/// file or directory and, for writes, the value.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("writing {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    #[error("creating cgroup directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("removing cgroup directory {path}")]
    RemoveDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid line {line:?} in {path}: {reason}")]
    Parse {
        path: PathBuf,
        line: String,
        reason: &'static str,
    },

    #[error("no cgroup hierarchy found: {path} lists no v1 controller and no cgroup2 mount")]
    NoHierarchy { path: PathBuf },

    #[error(
        "cgroup {cgroup:?} is outside the {controller} mount at {mount_point} (mounted from {mount_root:?})"
    )]
    OutsideMount {
        controller: String,
        cgroup: String,
        mount_point: PathBuf,
        mount_root: String,
    },

    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    #[error("{field} is set but {reason}")]
    Unsupported { field: String, reason: String },

    #[error("invalid key {key:?} in linux.resources.unified: {reason}")]
    InvalidUnifiedKey { key: String, reason: &'static str },

    #[error("invalid hugepage size {page_size:?} in linux.resources.hugepageLimits")]
    InvalidPageSize { page_size: String },

    #[error("invalid rule {index} ({rule:?}) in linux.resources.devices: {reason}")]
    InvalidDeviceRule {
        index: usize,
        rule: String,
        reason: &'static str,
    },

    #[error("applying linux.resources.devices to cgroup {path}")]
    DeviceProgram {
        path: PathBuf,
        #[source]
        source: super::bpf::BpfError,
    },

    #[error("cgroup {path} has no {controller} controller, needed to {operation}")]
    MissingController {
        operation: &'static str,
        controller: &'static str,
        path: PathBuf,
    },

    #[error(
        "cannot enable controllers for the children of {path} because it contains \
         processes {pids:?}; move them into a leaf cgroup, as cgroup v2 allows \
         processes only in leaves once controllers are enabled"
    )]
    InternalProcesses {
        path: PathBuf,
        pids: Vec<i32>,
        #[source]
        source: io::Error,
    },

    #[error("{file} has no {key:?} line")]
    MissingKey { file: PathBuf, key: &'static str },

    #[error("{operation} {path} timed out after {timeout:?}")]
    Timeout {
        operation: &'static str,
        path: PathBuf,
        timeout: Duration,
    },

    #[error(
        "{operation} {path} timed out after {timeout:?} with processes {pids:?} still running"
    )]
    ProcessesRemain {
        operation: &'static str,
        path: PathBuf,
        timeout: Duration,
        pids: Vec<i32>,
    },

    #[error("invalid signal number {signal}")]
    InvalidSignal {
        signal: i32,
        #[source]
        source: nix::errno::Errno,
    },

    #[error("sending signal {signal} to pid {pid} of cgroup {path}")]
    Signal {
        pid: i32,
        signal: i32,
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
}

impl CgroupError {
    /// Returns whether a file or directory the operation needed was missing,
    /// as when a cgroup is removed while it is being read or written.
    pub fn is_not_found(&self) -> bool {
        match self {
            CgroupError::Read { source, .. } | CgroupError::Write { source, .. } => {
                source.kind() == io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}
