//! Default locations of corral's files. Every one can be changed by a flag.

/// Job files, one `NAME.json` per job.
pub const JOBS_DIR: &str = "/etc/corral/jobs.d";
/// Control socket, runtime state and other volatile files.
pub const RUN_DIR: &str = "/run/corral";
/// Image store and per-container upper, work and merged directories.
pub const DATA_DIR: &str = "/var/lib/corral";
/// Per-job stdout and stderr logs.
pub const LOG_DIR: &str = "/var/log/corral";
/// Name of the control socket inside the run directory.
pub const SOCKET_NAME: &str = "supervisor.sock";
/// Name of the runtime state directory inside the run directory.
pub const CONTAINERS_DIR_NAME: &str = "containers";
