//! supervisord: one task owns every job and reacts to events (requests on
//! the control socket, shim exits, timers, signals, changes of the jobs
//! directory) sent to it over a channel. Nothing polls.

mod connections;
mod created_dirs;
mod job;
mod jobwatch;
mod launch;
pub mod limits;
mod listing;
mod logs;
mod monitor_handle;
mod pidfd;
mod pidwatch;
mod ports;
mod record;
mod reload;
mod server;
mod settled;
mod stats;
mod supervisor;
mod write_timeout;

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::stat::{umask, Mode};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use created_dirs::CreatedDirs;

pub use self::server::{
    DEFAULT_MAX_CONNECTIONS, EXIT_RESPONSE_LIMIT, KEEP_ALIVE_TIMEOUT, REQUEST_BODY_TIMEOUT,
    REQUEST_HEAD_TIMEOUT, RESPONSE_WRITE_TIMEOUT,
};
pub use self::supervisor::Supervisor;

/// The directories of supervisord and the runtime it runs containers with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonConfig {
    /// Job files, `NAME.json` with drop-ins in `NAME.json.d/`.
    pub jobs_dir: PathBuf,
    /// Control socket, runtime state, exit records and pid files.
    pub run_dir: PathBuf,
    /// Bundles and the containers' overlay directories.
    pub data_dir: PathBuf,
    /// One directory of stdout and stderr logs per job.
    pub log_dir: PathBuf,
    /// Cgroup below supervisord's own that contains every container's cgroup.
    pub cgroup_parent: String,
    /// The `corral` binary.
    pub runtime: PathBuf,
    /// The path the monitors execute the runtime from: a read-only view of
    /// `runtime` that supervisord keeps open, or `runtime` itself.
    #[serde(skip)]
    pub runtime_exec: Option<PathBuf>,
    /// The `corral-monitor` binary, the parent of each container's shim.
    pub monitor: PathBuf,
    /// SIGTERM, SIGINT and SIGQUIT end supervisord at once and leave every job
    /// running, for the next supervisord to adopt. A shutdown request still
    /// stops every job first.
    pub live_restore: bool,
    /// GID of the group that may use the control socket.
    pub socket_group: Option<u32>,
    /// Maximum number of open control connections.
    pub max_connections: usize,
    /// Format of supervisord's log lines, which each monitor follows in its
    /// own.
    #[serde(skip)]
    pub log_format: crate::cli::daemon::LogFormat,
}

impl DaemonConfig {
    /// Returns the permissions of the job logs: readable by the socket group
    /// when there is one, so its members can run `supervisorctl tail`.
    pub fn log_permissions(&self) -> crate::logrotate::LogPermissions {
        crate::logrotate::LogPermissions {
            group: self.socket_group,
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        self.run_dir.join(corral_config::paths::SOCKET_NAME)
    }

    /// Returns the runtime's `--root`: one state directory per container.
    pub fn containers_root(&self) -> PathBuf {
        self.run_dir.join(corral_config::paths::CONTAINERS_DIR_NAME)
    }

    pub fn exits_dir(&self) -> PathBuf {
        self.run_dir.join("exits")
    }

    pub fn exit_file(&self, container_id: &str) -> PathBuf {
        self.exits_dir().join(format!("{container_id}.json"))
    }

    pub fn pids_dir(&self) -> PathBuf {
        self.run_dir.join("pids")
    }

    pub fn pid_file(&self, container_id: &str) -> PathBuf {
        self.pids_dir().join(format!("{container_id}.pid"))
    }

    /// Returns the file that the shim keeps while the container's init is
    /// stopped by a signal.
    pub fn stopped_file(&self, container_id: &str) -> PathBuf {
        self.pids_dir()
            .join(format!("{container_id}{}", pidwatch::STOPPED_SUFFIX))
    }

    /// Returns the directory of shim records, one per running shim. A
    /// restarted supervisord adopts the shims of the one before from them.
    pub fn shims_dir(&self) -> PathBuf {
        self.run_dir.join("shims")
    }

    pub fn shim_record(&self, container_id: &str) -> PathBuf {
        self.shims_dir().join(format!("{container_id}.json"))
    }

    /// Returns the directory of settled-state records, one per job that
    /// was stopped by a request, exited or went FATAL, so that a restarted
    /// supervisord keeps it that way.
    pub fn settled_dir(&self) -> PathBuf {
        self.run_dir.join("settled")
    }

    pub fn bundles_dir(&self) -> PathBuf {
        self.data_dir.join("bundles")
    }

    pub fn bundle_dir(&self, container_id: &str) -> PathBuf {
        self.bundles_dir().join(container_id)
    }
}

/// An error that keeps supervisord from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("failed to prepare the cgroup parent {parent:?}")]
    CgroupParent {
        parent: String,
        #[source]
        source: corral_runtime::cgroups::CgroupError,
    },
    #[error("failed to create directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("jobs directory {path} is missing or unreadable: create it or pass --jobs-dir")]
    JobsDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("jobs directory {path} is not a directory")]
    JobsDirNotDir { path: PathBuf },
    #[error("another supervisord is listening on {path}")]
    AlreadyRunning { path: PathBuf },
    #[error(
        "another supervisord{} still uses {dir} after {}: stop that one first, \
         for example with `supervisorctl --socket RUN_DIR/supervisor.sock shutdown`, naming \
         that daemon's run directory",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        corral_config::DurationValue(LOCK_WAIT)
    )]
    DirInUse { dir: PathBuf, holder: Option<u32> },
    #[error(
        "the directory now at {dir} is in use by another supervisord{}; its job files \
         are not loaded, and the jobs loaded before keep running",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    ReplacedDirInUse { dir: PathBuf, holder: Option<u32> },
    #[error("failed to give {path} to group {gid}")]
    SocketGroup {
        path: PathBuf,
        gid: u32,
        #[source]
        source: io::Error,
    },
    #[error("failed to set the group or mode of the log directory {path}")]
    LogDirPermissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to bind the control socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to install the {signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
}

/// An API error: the HTTP status and a message that names the job and the
/// cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn not_found(name: &str) -> Self {
        ApiError {
            status: 404,
            message: format!("no such job {name:?}"),
        }
    }

    pub fn conflict(message: String) -> Self {
        ApiError {
            status: 409,
            message,
        }
    }

    pub fn bad_request(message: String) -> Self {
        ApiError {
            status: 400,
            message,
        }
    }

    pub fn unavailable() -> Self {
        ApiError {
            status: 503,
            message: "supervisord is shutting down".to_string(),
        }
    }

    pub fn internal(message: String) -> Self {
        ApiError {
            status: 500,
            message,
        }
    }
}

/// The reply to one API request: an encoded JSON body or an error.
pub type Reply = Result<JsonBody, ApiError>;

/// A JSON body, encoded where the supervisor's state is at hand, so that
/// no intermediate `serde_json::Value` tree is built for a long job list.
/// Cloning shares the bytes.
pub type JsonBody = hyper::body::Bytes;

/// A request from the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Info,
    List,
    Get {
        name: String,
    },
    Start {
        name: String,
        wait: bool,
    },
    Stop {
        name: String,
        wait: bool,
    },
    Restart {
        name: String,
        wait: bool,
    },
    Signal {
        name: String,
        signal: String,
    },
    Spec {
        name: String,
    },
    Reread,
    Update,
    /// With `wait`, the reply is the job list once every job has stopped.
    /// supervisord exits once the reply is written.
    Shutdown {
        wait: bool,
    },
}

/// The reason a timer was armed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerKind {
    /// `start_seconds` passed since the container started.
    Started,
    /// The backoff delay before a restart passed.
    Restart,
    /// The stop timeout passed without the container ending.
    StopTimeout,
    /// Time to look for a pid file again, when no inotify watch reports it.
    PidCheck,
    /// Time to check again whether a monitor that is still starting
    /// handles the stop signal, which then goes to it.
    StopSignal,
}

/// The way supervisord learned that a container's monitor ended. The
/// monitor exits with its shim's status.
#[derive(Debug)]
pub enum ShimStatus {
    /// supervisord spawned the monitor and reaped it.
    Reaped(io::Result<ExitStatus>),
    /// The monitor was adopted from an earlier supervisord, so another
    /// process reaps it and only the exit record gives the exit status.
    Adopted,
}

/// Everything the supervisor task reacts to.
#[derive(Debug)]
pub enum Event {
    Request(Request, oneshot::Sender<Reply>),
    /// The jobs and containers whose counters `GET /v1/stats` reads.
    StatsTargets(oneshot::Sender<Vec<stats::StatsTarget>>),
    ShimExited {
        name: String,
        container_id: String,
        status: ShimStatus,
    },
    Timer {
        name: String,
        epoch: u64,
        kind: TimerKind,
    },
    /// SIGCHLD: a child, most likely a monitor, has exited.
    ChildExited,
    /// The launch of a container finished, on the blocking pool.
    Launched {
        name: String,
        container_id: String,
        result: Box<Result<launch::Launched, launch::LaunchError>>,
    },
    /// A stop came while the launch still waited for published ports or
    /// in the launch queue, so no container was created.
    LaunchCancelled {
        name: String,
        container_id: String,
    },
    /// A shim wrote the pid file of a container.
    PidWritten {
        container_id: String,
    },
    /// The shim of a container created or removed its stopped file: the
    /// container's init was stopped by a signal or continued.
    StoppedChanged {
        container_id: String,
        stopped: bool,
    },
    /// The kernel dropped events of the pid file watch because its queue
    /// was full, so pid files and stopped files may have changed unseen.
    PidEventsLost,
    /// The pid file watch ended, so jobs wait for their pid files on a
    /// timer from now on.
    PidWatchFailed,
    /// Re-scan the jobs directory and apply the changes.
    Reload {
        origin: &'static str,
    },
    /// Stop every job, then exit.
    Shutdown {
        origin: &'static str,
    },
    /// Exit at once and leave every job running, for live restore.
    Detach {
        origin: &'static str,
    },
}

/// Runs supervisord until SIGTERM, SIGINT or a shutdown request, and until
/// every job's container has ended.
pub async fn run(mut config: DaemonConfig) -> Result<(), DaemonError> {
    check_jobs_dir(&config.jobs_dir)?;
    // Two daemons on one jobs directory would run every job twice, also
    // with run, data and log directories of their own. The lock is taken
    // before the cgroup and the directories are created, so a daemon
    // rejected here has created nothing.
    let jobs_lock: SharedJobsDirLock = Arc::new(std::sync::Mutex::new(JobsDirLock::acquire(
        &config.jobs_dir,
    )?));
    // A daemon with a jobs directory of its own but the run directory of
    // another one is rejected here, before it creates anything, and again
    // by the bind should the other one start listening meanwhile.
    check_socket_unused(&config.socket_path())?;
    // Dropped on every error return below, which removes the directories
    // that this start created.
    let created = prepare_dirs(&config)?;
    let _locks = [lock_dir(&config.data_dir)?, lock_dir(&config.log_dir)?];
    // On cgroup v2 the daemon moves itself into a leaf of its cgroup and
    // hands the runtime an absolute parent, because the runtime it starts
    // runs in that leaf; on v1 the parent stays relative. The directory
    // locks come first, so a daemon rejected for them moves nowhere.
    let delegated = corral_runtime::cgroups::Hierarchy::detect()
        .and_then(|mut hierarchy| hierarchy.delegate(&config.cgroup_parent))
        .map_err(|source| DaemonError::CgroupParent {
            parent: config.cgroup_parent.clone(),
            source,
        })?;
    config.cgroup_parent = delegated;
    // Each shim would otherwise execute itself a second time from a
    // read-only bind mount of its binary before it creates a container
    // (see corral_runtime::selfexe). One such mount, held open here and
    // reached through /proc, spares every shim that execve.
    let runtime_view = match corral_runtime::selfexe::read_only_tree(&config.runtime) {
        Ok(view) => {
            let path = format!("/proc/{}/fd/{}", std::process::id(), view.as_raw_fd());
            config.runtime_exec = Some(PathBuf::from(path));
            Some(view)
        }
        Err(error) => {
            tracing::warn!(runtime = %config.runtime.display(), %error, "cannot open a read-only view of the runtime; each shim makes its own");
            None
        }
    };
    let log_permissions = config.log_permissions();
    log_permissions
        .apply_to_path(&config.log_dir, true)
        .map_err(|source| DaemonError::LogDirPermissions {
            path: config.log_dir.clone(),
            source,
        })?;
    // Logs of jobs that are adopted or not started yet keep the group and
    // modes of the run that wrote them until their next start otherwise.
    logs::apply_to_existing_logs(&config.log_dir, log_permissions);
    let socket_path = config.socket_path();
    match config.socket_group {
        Some(gid) => share_with_group(&config.run_dir, gid, 0o710)?,
        // An earlier run with --socket-group left the directory open to
        // its group.
        None => std::fs::set_permissions(&config.run_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| DaemonError::CreateDir {
            path: config.run_dir.clone(),
            source,
        })?,
    }
    let listener = bind_socket(&socket_path)?;
    if let Some(gid) = config.socket_group {
        share_with_group(&socket_path, gid, 0o660)?;
    }
    let (events, receiver) = mpsc::unbounded_channel();
    spawn_signal_handlers(events.clone(), config.live_restore)?;
    created.keep();
    match jobwatch::spawn(
        config.jobs_dir.clone(),
        events.clone(),
        Some(jobs_lock.clone()),
    ) {
        Ok(_) => tracing::debug!(dir = %config.jobs_dir.display(), "watching jobs directory"),
        Err(error) => tracing::warn!(
            dir = %config.jobs_dir.display(),
            error = %error_chain(&error),
            "cannot watch the jobs directory; changes apply on SIGHUP or update only"
        ),
    }

    let watching_pids = match pidwatch::spawn(config.pids_dir(), events.clone()) {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(dir = %config.pids_dir().display(), %error, "cannot watch pid files; jobs wait for them on a timer");
            false
        }
    };

    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        events.clone(),
        config.max_connections,
        server_stopped,
    ));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        socket = %socket_path.display(),
        jobs_dir = %config.jobs_dir.display(),
        runtime = %config.runtime.display(),
        monitor = %config.monitor.display(),
        "supervisord started"
    );

    let outcome = Supervisor::new(config.clone(), events, watching_pids, jobs_lock)
        .run(receiver)
        .await;
    // Monitors started from here on would need the view; none are.
    drop(runtime_view);

    let _ = stop_server.send(());
    // Each open connection finishes its request and writes the response,
    // the reply to a shutdown request included, before supervisord exits.
    // The server's timeouts bound this wait: RESPONSE_WRITE_TIMEOUT cuts
    // a response whose client stops reading, and EXIT_RESPONSE_LIMIT one
    // whose client reads too slowly.
    if let Err(error) = server.await {
        tracing::error!(%error, "the control API server task failed");
    }
    if let Err(error) = std::fs::remove_file(&socket_path) {
        tracing::warn!(path = %socket_path.display(), %error, "failed to remove the control socket");
    }
    match outcome {
        Outcome::Stopped => {
            remove_cgroup_parent(&config.cgroup_parent);
            tracing::info!("supervisord stopped");
        }
        Outcome::Detached { running } => {
            tracing::info!(running, "supervisord stopped and left its jobs running");
        }
    }
    Ok(())
}

/// Checks that the jobs directory exists and can be listed, so that a
/// mistyped `--jobs-dir` stops the daemon before it changes anything.
fn check_jobs_dir(path: &Path) -> Result<(), DaemonError> {
    let metadata = std::fs::metadata(path).map_err(|source| DaemonError::JobsDir {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(DaemonError::JobsDirNotDir {
            path: path.to_path_buf(),
        });
    }
    std::fs::read_dir(path).map_err(|source| DaemonError::JobsDir {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// Creates the directories of `config` that are missing, with mode 0700,
/// and returns those it created.
fn prepare_dirs(config: &DaemonConfig) -> Result<CreatedDirs, DaemonError> {
    let dirs = [
        config.run_dir.clone(),
        config.containers_root(),
        config.exits_dir(),
        config.pids_dir(),
        config.shims_dir(),
        config.settled_dir(),
        config.data_dir.clone(),
        config.bundles_dir(),
        config.log_dir.clone(),
    ];
    let mut created = CreatedDirs::default();
    for dir in dirs {
        created
            .create_all(&dir, 0o700)
            .map_err(|source| DaemonError::CreateDir { path: dir, source })?;
    }
    Ok(created)
}

/// Fails with [`DaemonError::AlreadyRunning`] when a process listens on
/// the control socket `path`. A socket file without a listener is left
/// for [`bind_socket`] to replace.
fn check_socket_unused(path: &Path) -> Result<(), DaemonError> {
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(DaemonError::AlreadyRunning {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Binds the control socket with mode 0600. A socket file without a
/// listener is left from a daemon that died, and is replaced.
/// Gives `path` to group `gid` with `mode`, for `--socket-group`.
fn share_with_group(path: &Path, gid: u32, mode: u32) -> Result<(), DaemonError> {
    let share_error = |source| DaemonError::SocketGroup {
        path: path.to_path_buf(),
        gid,
        source,
    };
    nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
        .map_err(|errno| share_error(io::Error::from(errno)))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(share_error)
}

/// Name of the lock file that one supervisord holds in its data and log
/// directories.
const LOCK_FILE: &str = ".supervisord.lock";

/// How long a starting supervisord waits for the lock. A supervisord killed
/// by SIGKILL keeps the lock until the kernel has torn the process down,
/// which takes some milliseconds, so a restart right after the kill waits
/// instead of failing.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes the lock that keeps a second supervisord out of `dir`, where both
/// would start the same jobs and write the same files. The lock file
/// contains the PID of its holder. The kernel releases the lock when the
/// holder exits, also by SIGKILL, so a stale file blocks nothing.
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, DaemonError> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;

    let path = dir.join(LOCK_FILE);
    let lock_error = |source| DaemonError::Lock {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(lock_error)?;
    let mut lock = match lock_waiting(file).map_err(lock_error)? {
        Ok(lock) => lock,
        Err(mut held) => {
            let mut text = String::new();
            let _ = held.read_to_string(&mut text);
            return Err(DaemonError::DirInUse {
                dir: dir.to_path_buf(),
                holder: text.trim().parse().ok(),
            });
        }
    };
    let written = lock
        .set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| writeln!(lock, "{}", std::process::id()));
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "failed to write the PID into the lock file");
    }
    Ok(lock)
}

/// The lock that keeps a second supervisord off the jobs directory. It is
/// a flock on the directory itself, which may be read-only, so no lock
/// file is written there, and the holder's PID comes from /proc/locks.
/// The lock follows the path: when another directory takes the path's
/// place, as in a deploy that renames a new directory into place, the lock
/// moves to it, so a second supervisord is kept off the new one too.
#[derive(Debug)]
pub struct JobsDirLock {
    dir: PathBuf,
    /// The open directory with the flock on it.
    lock: nix::fcntl::Flock<std::fs::File>,
    /// Device and inode of the locked directory.
    identity: (u64, u64),
}

/// The jobs directory lock, shared by the watcher of the jobs directory
/// and the supervisor, which both move it to a replaced directory.
pub type SharedJobsDirLock = Arc<std::sync::Mutex<JobsDirLock>>;

impl JobsDirLock {
    /// Locks the directory at `dir`, waiting up to [`LOCK_WAIT`] for a
    /// holder that is exiting.
    fn acquire(dir: &Path) -> Result<Self, DaemonError> {
        let file = open_dir_for_lock(dir)?;
        let identity = file_identity(&file).map_err(|source| DaemonError::Lock {
            path: dir.to_path_buf(),
            source,
        })?;
        match lock_waiting(file).map_err(|source| DaemonError::Lock {
            path: dir.to_path_buf(),
            source,
        })? {
            Ok(lock) => Ok(JobsDirLock {
                dir: dir.to_path_buf(),
                lock,
                identity,
            }),
            Err(held) => Err(DaemonError::DirInUse {
                dir: dir.to_path_buf(),
                holder: flock_holder(&held),
            }),
        }
    }

    /// Moves the lock to the directory now at the jobs directory's path
    /// when that is another directory than the locked one. Returns whether
    /// it moved. A missing path keeps the lock where it is, and a directory
    /// that another process has locked is an error, after which the lock
    /// also stays.
    pub fn follow(&mut self) -> Result<bool, DaemonError> {
        let lock_error = |source| DaemonError::Lock {
            path: self.dir.clone(),
            source,
        };
        let file = match open_dir_for_lock(&self.dir) {
            Ok(file) => file,
            Err(_) => return Ok(false),
        };
        let identity = file_identity(&file).map_err(lock_error)?;
        if identity == self.identity {
            return Ok(false);
        }
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                self.lock = lock;
                self.identity = identity;
                Ok(true)
            }
            Err((held, nix::Error::EWOULDBLOCK)) => Err(DaemonError::ReplacedDirInUse {
                dir: self.dir.clone(),
                holder: flock_holder(&held),
            }),
            Err((_, errno)) => Err(lock_error(io::Error::from(errno))),
        }
    }
}

/// Opens the directory at `dir`, following symbolic links, for a flock.
fn open_dir_for_lock(dir: &Path) -> Result<std::fs::File, DaemonError> {
    use std::os::unix::fs::OpenOptionsExt;

    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|source| DaemonError::Lock {
            path: dir.to_path_buf(),
            source,
        })
}

/// Returns the device and inode of an open file.
fn file_identity(file: &std::fs::File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;

    let metadata = file.metadata()?;
    Ok((metadata.dev(), metadata.ino()))
}

/// Takes an exclusive flock on `file`, waiting up to [`LOCK_WAIT`] for a
/// holder that is exiting. Returns the file unlocked when another process
/// still holds the lock after that wait.
fn lock_waiting(
    file: std::fs::File,
) -> io::Result<Result<nix::fcntl::Flock<std::fs::File>, std::fs::File>> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Ok(lock)),
            Err((held, nix::Error::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = held;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((held, nix::Error::EWOULDBLOCK)) => return Ok(Err(held)),
            Err((_, errno)) => return Err(io::Error::from(errno)),
        }
    }
}

/// Returns the PID that holds a flock on `file`, from the FLOCK lines of
/// /proc/locks: `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`, with the
/// device in hexadecimal and the inode in decimal.
fn flock_holder(file: &std::fs::File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;

    let metadata = file.metadata().ok()?;
    let device = format!(
        "{:02x}:{:02x}:{}",
        libc::major(metadata.dev()),
        libc::minor(metadata.dev()),
        metadata.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, id, ..] if *id == device => pid.parse().ok(),
            _ => None,
        }
    })
}

fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    check_socket_unused(path)?;
    if path.exists() {
        let _ = std::fs::remove_file(path);
    }
    let bind_error = |source| DaemonError::Bind {
        path: path.to_path_buf(),
        source,
    };
    // The umask makes the socket 0600 from its creation on, so no other
    // user can connect in the moment before the chmod. Nothing else in this
    // process creates files yet, so the process-wide change harms nothing.
    let previous = umask(Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    umask(previous);
    let listener = listener.map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// The ending of the supervisor task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every container was stopped.
    Stopped,
    /// supervisord left `running` containers for the next supervisord.
    Detached { running: usize },
}

/// Turns SIGTERM, SIGINT and SIGQUIT into a shutdown, or with `live_restore` into a
/// detach, SIGHUP into a reload and SIGCHLD into a look for exited monitors.
/// The handlers are installed before any monitor is spawned, so no exit is
/// missed.
fn spawn_signal_handlers(
    events: mpsc::UnboundedSender<Event>,
    live_restore: bool,
) -> Result<(), DaemonError> {
    let install = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| DaemonError::Signal {
            signal: name,
            source,
        })
    };
    let mut terminate = install(SignalKind::terminate(), "SIGTERM")?;
    let mut interrupt = install(SignalKind::interrupt(), "SIGINT")?;
    let mut quit = install(SignalKind::quit(), "SIGQUIT")?;
    let mut hangup = install(SignalKind::hangup(), "SIGHUP")?;
    let mut child = install(SignalKind::child(), "SIGCHLD")?;
    // Their default action ends the process. Python's supervisord reopens
    // its log files on SIGUSR2, which a logrotate habit may send.
    let mut user1 = install(SignalKind::user_defined1(), "SIGUSR1")?;
    let mut user2 = install(SignalKind::user_defined2(), "SIGUSR2")?;
    let mut alarm = install(SignalKind::alarm(), "SIGALRM")?;
    tokio::spawn(async move {
        loop {
            let stop = |origin| match live_restore {
                true => Event::Detach { origin },
                false => Event::Shutdown { origin },
            };
            let event = tokio::select! {
                _ = terminate.recv() => stop("SIGTERM"),
                _ = interrupt.recv() => stop("SIGINT"),
                _ = quit.recv() => stop("SIGQUIT"),
                _ = hangup.recv() => Event::Reload { origin: "SIGHUP" },
                _ = child.recv() => Event::ChildExited,
                _ = user1.recv() => {
                    log_ignored_signal("SIGUSR1");
                    continue;
                }
                _ = user2.recv() => {
                    log_ignored_signal("SIGUSR2");
                    continue;
                }
                _ = alarm.recv() => {
                    log_ignored_signal("SIGALRM");
                    continue;
                }
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Logs a signal that supervisord handles only so that it does not end
/// the process.
fn log_ignored_signal(signal: &'static str) {
    tracing::warn!(
        signal,
        "ignored a signal: supervisord writes its log to standard error and has no log file to reopen"
    );
}

fn remove_cgroup_parent(parent: &str) {
    let result = corral_runtime::cgroups::Hierarchy::detect()
        .and_then(|hierarchy| hierarchy.remove_if_empty(parent));
    if let Err(error) = result {
        tracing::warn!(cgroup_parent = %parent, error = %error_chain(&error), "failed to remove the cgroup parent");
    }
}

/// Formats an error and its sources as `outer: inner: root`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Transparent wrappers repeat their source's message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to open {path}")]
    struct Outer {
        path: &'static str,
        #[source]
        source: io::Error,
    }

    #[test]
    fn error_chain_joins_sources() {
        let error = Outer {
            path: "/x",
            source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(error_chain(&error), "failed to open /x: no such file");
    }

    #[test]
    fn socket_is_private_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("supervisor.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let listener = bind_socket(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let error = bind_socket(&path).unwrap_err();
        assert!(
            matches!(error, DaemonError::AlreadyRunning { .. }),
            "{error:?}"
        );
        drop(listener);
        // A socket file without a listener is replaced.
        bind_socket(&path).unwrap();
    }
}
