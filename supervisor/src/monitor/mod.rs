//! `corral-monitor`: the parent of one container's `corral shim`. It
//! reads the shim's stdout and stderr through pipes, writes them to the
//! job's log files with size-based rotation, forwards stop signals to the
//! shim and exits with the shim's status.
//!
//! supervisord starts one monitor per container in a session of its own, so
//! the monitor, the shim and the container outlive a restart of supervisord,
//! and the new supervisord adopts the monitor. Because the monitor and not
//! supervisord reads the pipes, a job that writes without pause costs the
//! monitor's CPU and never supervisord's. Between the pipe reader and the
//! file writer sits a [`BoundedQueue`] of [`QUEUE_LIMIT`] bytes per stream:
//! when the disk falls behind for longer than [`QUEUE_PATIENCE`], output is
//! dropped rather than blocking the job, and a rate-limited notice in the
//! log states how many bytes.
//!
//! Signals: SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 go to the
//! shim, which forwards them to the container. [`reload_signal`] makes the
//! monitor read its settings file again.

mod queue;

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};
use serde::{Deserialize, Serialize};

pub use self::queue::{BoundedQueue, Item, Stream, Taken};
pub use crate::cli::daemon::LogFormat;
use crate::daemon::error_chain;
use crate::logrotate::{LogPermissions, RotateError, RotatingLog, PATH_CHECK_INTERVAL};

/// Bytes of one stream that may wait for the log writer: 20 ms of output
/// at 50 MB/s, and the most a monitor buffers per stream.
pub const QUEUE_LIMIT: usize = 1024 * 1024;

/// How long the pipe reader waits for room in a full queue before it drops
/// output. A busy machine delays the writer thread for moments, which this
/// rides out by holding the job back; a stalled disk costs the job at most
/// this delay before output is dropped.
pub const QUEUE_PATIENCE: Duration = Duration::from_millis(500);

/// Bytes read from a pipe at once.
const READ_SIZE: usize = 64 * 1024;

/// Minimum time between two notices about dropped output of one stream.
pub const DROP_NOTICE_INTERVAL: Duration = Duration::from_secs(10);

/// How long the monitor keeps reading after the shim exited. The pipes
/// close at once when the container is gone. A process that escaped with a
/// copy of them does not keep the monitor alive longer than this.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the monitor waits for the log writer thread to write what is
/// queued after the pipes were drained. A writer stuck on a hung disk
/// would otherwise keep the monitor, and so the job's stop, from ending
/// after the container ended. The queue contains at most 2 MiB then, which a
/// working disk writes well within this time.
const WRITER_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Exit status of the monitor when it failed before the shim ran, the
/// same as the shim's own setup failures.
pub const SETUP_FAILED: i32 = 125;

/// Signals the monitor passes on to the shim.
pub const FORWARDED_SIGNALS: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Returns the signal that makes a monitor read its settings file again:
/// SIGRTMIN + 1, a real-time signal that no job or tool sends by accident.
pub fn reload_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// Rotation limits of a container's logs and the CPU limit of its copying,
/// stored as JSON in the file that `--settings` names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogSettings {
    /// Rotate when a file would exceed this many bytes; 0 never rotates.
    pub max_size: u64,
    /// Rotated files kept besides the current one.
    pub keep: u32,
    /// The job's `resources.cpus`, which also bounds the CPU time that
    /// copying its output may take. None for a job without a CPU limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

impl LogSettings {
    /// Returns the settings of a container started from `spec`.
    pub fn for_job(spec: &corral_config::JobSpec) -> Self {
        LogSettings {
            max_size: spec.logs.max_size.bytes(),
            keep: spec.logs.keep,
            cpus: spec.resources.cpus,
        }
    }

    pub fn read(path: &Path) -> Result<Self, MonitorError> {
        let bytes = std::fs::read(path).map_err(|source| MonitorError::ReadSettings {
            path: path.to_path_buf(),
            source: source.into(),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| MonitorError::ReadSettings {
            path: path.to_path_buf(),
            source: source.into(),
        })
    }

    /// Writes the settings through a temporary file and a rename, so the
    /// monitor never reads half of them.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let temporary = path.with_extension("json.tmp");
        let body = serde_json::to_vec(self).map_err(io::Error::other)?;
        std::fs::write(&temporary, body)?;
        std::fs::rename(&temporary, path)
    }
}

/// The command of one monitor and its log files.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    pub settings_file: PathBuf,
    /// The shim command line: program and arguments.
    pub command: Vec<OsString>,
    /// `argv[0]` of the shim in place of the program path.
    pub arg0: Option<OsString>,
    /// Program run with the same arguments when the program of `command`
    /// is not found.
    pub fallback: Option<PathBuf>,
    /// Group and modes of the log files and directory the monitor creates.
    pub log_permissions: LogPermissions,
}

/// An error that ends the monitor before or while it runs the shim.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("failed to read log settings {path}")]
    ReadSettings {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Log(#[from] RotateError),
    #[error("no command to run")]
    NoCommand,
    #[error("failed to {operation}")]
    Sys {
        operation: &'static str,
        #[source]
        source: Errno,
    },
    #[error("failed to run {program}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
}

fn sys(operation: &'static str) -> impl FnOnce(Errno) -> MonitorError {
    move |source| MonitorError::Sys { operation, source }
}

/// The ending of the shim, passed on as the monitor's own exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimExit {
    Code(i32),
    Signal(Signal),
}

/// Returns the signals the monitor reads from its signalfd: those it
/// forwards to the shim, SIGCHLD and the reload signal.
fn handled_signals() -> SigSet {
    let mut handled = forwarded_signals();
    handled.add(Signal::SIGCHLD);
    // SAFETY: `raw` comes from a valid SigSet, and sigaddset only sets the
    // bit of a signal number that glibc accepts (SIGRTMIN + 1 is one).
    unsafe {
        let mut raw = *handled.as_ref();
        libc::sigaddset(&mut raw, reload_signal());
        SigSet::from_sigset_t_unchecked(raw)
    }
}

/// Returns the signals that the monitor forwards to the shim.
fn forwarded_signals() -> SigSet {
    let mut forwarded = SigSet::empty();
    for signal in FORWARDED_SIGNALS {
        forwarded.add(signal);
    }
    forwarded
}

/// Blocks the signals that the monitor handles and returns them. Until
/// then a stop signal ends the monitor by its default action, so its
/// `main` calls this before anything else: supervisord sends a stop
/// signal as soon as the monitor's process exists.
pub fn block_signals() -> Result<SigSet, MonitorError> {
    let handled = handled_signals();
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled), None)
        .map_err(sys("block signals"))?;
    Ok(handled)
}

/// Runs the shim to its end and returns how it ended. Errors before the
/// shim runs are returned; later ones are logged to the monitor's stderr.
pub fn run(options: &MonitorOptions) -> Result<ShimExit, MonitorError> {
    let (program, arguments) = options
        .command
        .split_first()
        .ok_or(MonitorError::NoCommand)?;
    let settings = LogSettings::read(&options.settings_file)?;
    let open_log = |path: &Path| {
        RotatingLog::open_with_permissions(
            path,
            settings.max_size,
            settings.keep,
            options.log_permissions,
        )
    };
    let stdout_log = open_log(&options.stdout_log)?;
    let stderr_log = open_log(&options.stderr_log)?;

    // Blocked before the spawn so that no signal is lost. `main` blocks
    // them first thing already; this covers callers that do not.
    let handled = block_signals()?;
    let signals = SignalFd::with_flags(&handled, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(sys("create a signalfd"))?;

    let (stdout_read, stdout_write) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("create the stdout pipe"))?;
    let (stderr_read, stderr_write) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("create the stderr pipe"))?;
    let spawned = spawn_shim(program, arguments, options, &stdout_write, &stderr_write);
    let child = match (spawned, &options.fallback) {
        (Err(MonitorError::Spawn { program, source }), Some(fallback))
            if source.kind() == io::ErrorKind::NotFound =>
        {
            warn(&format!(
                "failed to run {program}: {source}; running {} instead",
                fallback.display()
            ));
            let fallback = fallback.as_os_str();
            spawn_shim(fallback, arguments, options, &stdout_write, &stderr_write)?
        }
        (spawned, _) => spawned?,
    };
    // Each attempt passed copies of the pipes' write ends. Dropping these
    // leaves them to the shim alone, so the reads end when the shim and
    // container do.
    drop((stdout_write, stderr_write));
    let shim = Pid::from_raw(child.id() as i32);
    lower_priority();

    let queue = Arc::new(BoundedQueue::new(QUEUE_LIMIT, QUEUE_PATIENCE));
    let (writer_running, writer_ended) = mpsc::channel::<()>();
    let writer = {
        let queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("log-writer".to_string())
            .spawn(move || {
                // Dropped when the thread ends, also by a panic, which
                // wakes `wait_for_writer`.
                let _running = writer_running;
                write_logs(&queue, [stdout_log, stderr_log]);
            })
            .map_err(|source| MonitorError::Spawn {
                program: "the log writer thread".to_string(),
                source,
            })?
    };

    let pipes = (stdout_read, stderr_read);
    let exit = read_until_exit(shim, pipes, &signals, &queue, options, settings.cpus);
    queue.close();
    wait_for_writer(writer, &writer_ended, &queue, WRITER_EXIT_TIMEOUT);
    Ok(exit)
}

/// Spawns `program` with `arguments` as the shim, with copies of the
/// pipes' write ends as its stdout and stderr, and with an empty signal
/// mask.
fn spawn_shim(
    program: &std::ffi::OsStr,
    arguments: &[OsString],
    options: &MonitorOptions,
    stdout_write: &OwnedFd,
    stderr_write: &OwnedFd,
) -> Result<std::process::Child, MonitorError> {
    let spawn_error = |source| MonitorError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    };
    let mut command = Command::new(program);
    if let Some(arg0) = &options.arg0 {
        command.arg0(arg0);
    }
    command
        .args(arguments)
        .stdin(Stdio::inherit())
        .stdout(Stdio::from(stdout_write.try_clone().map_err(spawn_error)?))
        .stderr(Stdio::from(stderr_write.try_clone().map_err(spawn_error)?));
    // The shim starts with only the forwarded signals blocked. It blocks
    // them itself before it creates the container and then waits for them,
    // so one that the monitor forwards while the shim is still starting
    // stays pending until then instead of ending the shim. SIGCHLD and the
    // reload signal are the monitor's own and are unblocked.
    let shim_mask = forwarded_signals();
    // SAFETY: the closure runs in the forked child before exec and calls
    // only sigprocmask, which is async-signal-safe, on a SigSet copied into
    // the closure before the fork.
    unsafe {
        command.pre_exec(move || {
            signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&shim_mask), None)
                .map_err(io::Error::from)
        });
    }
    command.spawn().map_err(spawn_error)
}

/// Waits up to `timeout` for the log writer thread, which ends once it
/// wrote what `queue` holds, and warns when it panicked. A writer that
/// does not end in time is left running, so the monitor exits without it
/// and the output still queued is lost. Returns whether the writer ended.
fn wait_for_writer(
    writer: std::thread::JoinHandle<()>,
    ended: &mpsc::Receiver<()>,
    queue: &BoundedQueue,
    timeout: Duration,
) -> bool {
    if let Err(mpsc::RecvTimeoutError::Timeout) = ended.recv_timeout(timeout) {
        warn(&format!(
            "the log writer did not finish within {timeout:?} after the shim exited, so the \
             monitor exits without it; {} bytes of queued output are lost",
            queue.queued_bytes()
        ));
        return false;
    }
    if writer.join().is_err() {
        warn("the log writer thread panicked");
    }
    true
}

/// The nice value of the monitor's threads. Copying a job's output costs
/// CPU outside the job's cgroup, so a job that writes without pause must
/// not take that CPU from other jobs at equal weight.
const MONITOR_NICE: libc::c_int = 10;

/// Lowers the CPU priority of the calling thread and of the threads it
/// starts afterwards. The shim, spawned before, keeps the monitor's
/// original priority, and so does the job.
fn lower_priority() {
    // SAFETY: setpriority takes integers only. On Linux, PRIO_PROCESS with
    // who 0 names the calling thread, and new threads copy its nice value.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, MONITOR_NICE) } != 0 {
        warn(&format!(
            "failed to lower the log copying priority: {}",
            io::Error::last_os_error()
        ));
    }
}

/// CPU time the monitor may use at once before [`CpuBudget`] pauses it,
/// so short bursts of output are copied without delay.
const CPU_BURST: Duration = Duration::from_millis(100);

/// A token bucket that keeps the monitor's CPU time at or below the job's
/// CPU limit. It fills at `cpus` seconds of CPU per second, up to
/// [`CPU_BURST`], and the monitor's CPU time drains it. While it is empty
/// the monitor stops reading the pipes, so they fill and the job's writes
/// block, and the job pays for its output within its own limit.
#[derive(Debug)]
struct CpuBudget {
    cpus: Option<f64>,
    tokens: f64,
    checked_at: Instant,
    cpu_at_check: Duration,
}

impl CpuBudget {
    fn new(cpus: Option<f64>, now: Instant, cpu: Duration) -> Self {
        CpuBudget {
            cpus,
            tokens: CPU_BURST.as_secs_f64(),
            checked_at: now,
            cpu_at_check: cpu,
        }
    }

    /// Counts the CPU time used since the last check, and returns how long
    /// to pause before reading again when the budget is spent.
    fn pause(&mut self, now: Instant, cpu: Duration) -> Option<Duration> {
        let cpus = self.cpus.filter(|cpus| *cpus > 0.0)?;
        let elapsed = now.saturating_duration_since(self.checked_at).as_secs_f64();
        let used = cpu.saturating_sub(self.cpu_at_check).as_secs_f64();
        self.checked_at = now;
        self.cpu_at_check = cpu;
        self.tokens = (self.tokens + elapsed * cpus).min(CPU_BURST.as_secs_f64()) - used;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / cpus))
    }
}

/// Returns the CPU time of every thread of this process.
fn process_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `time`, which outlives
    // the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) } != 0 {
        // Without its CPU time the monitor copies without a limit. The loop
        // reads the time before every read, so it warns only once.
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            warn(&format!(
                "failed to read the monitor's CPU time, so its CPU limit is off: {}",
                io::Error::last_os_error()
            ));
        }
        return Duration::ZERO;
    }
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(time.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanos)
}

/// Copies the pipes into the queue and handles signals until the shim has
/// exited and both pipes are closed, or [`DRAIN_TIMEOUT`] after the exit.
/// Reading pauses while [`CpuBudget`] is spent, except while draining.
fn read_until_exit(
    shim: Pid,
    (stdout, stderr): (OwnedFd, OwnedFd),
    signals: &SignalFd,
    queue: &BoundedQueue,
    options: &MonitorOptions,
    cpus: Option<f64>,
) -> ShimExit {
    let mut pipes = [Some(File::from(stdout)), Some(File::from(stderr))];
    let mut exit = None;
    let mut drain_until: Option<Instant> = None;
    let mut buffer = vec![0u8; READ_SIZE];
    let mut budget = CpuBudget::new(cpus, Instant::now(), process_cpu_time());
    loop {
        let pipes_open = pipes.iter().any(Option::is_some);
        if let Some(exit) = exit {
            let drained = drain_until.is_some_and(|until| Instant::now() >= until);
            if !pipes_open || drained {
                return exit;
            }
        }
        let pause = match drain_until {
            None => budget.pause(Instant::now(), process_cpu_time()),
            Some(_) => None,
        };
        let timeout = match (drain_until, pause) {
            (Some(until), _) => {
                let left = until.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            }
            (None, Some(pause)) => PollTimeout::try_from(pause).unwrap_or(PollTimeout::MAX),
            (None, None) => PollTimeout::NONE,
        };

        // While the budget is spent, only signals wake the monitor.
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let mut streams = Vec::new();
        for stream in Stream::BOTH {
            if let Some(pipe) = pipes[stream.index()].as_ref().filter(|_| pause.is_none()) {
                fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                streams.push(stream);
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(error) => {
                warn(&format!("poll failed: {error}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
            .collect();
        drop(fds);

        for (position, stream) in streams.into_iter().enumerate() {
            if !ready[position + 1] {
                continue;
            }
            let Some(pipe) = pipes[stream.index()].as_mut() else {
                continue;
            };
            match pipe.read(&mut buffer) {
                Ok(0) => pipes[stream.index()] = None,
                Ok(count) => {
                    queue.push_data(stream, &buffer[..count]);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    warn(&format!(
                        "failed to read the {} pipe: {error}",
                        stream.name()
                    ));
                    pipes[stream.index()] = None;
                }
            }
        }
        if ready[0] {
            if let Some(ended) = handle_signals(shim, signals, queue, options, &mut budget) {
                exit = exit.or(Some(ended));
                drain_until = drain_until.or_else(|| Some(Instant::now() + DRAIN_TIMEOUT));
            }
        }
    }
}

/// Handles every pending signal. Returns the shim's ending once it is
/// reaped.
fn handle_signals(
    shim: Pid,
    signals: &SignalFd,
    queue: &BoundedQueue,
    options: &MonitorOptions,
    budget: &mut CpuBudget,
) -> Option<ShimExit> {
    let mut ended = None;
    loop {
        // The descriptor is non-blocking, so `None` means none is pending.
        let info = match signals.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => return ended,
            Err(Errno::EINTR) => continue,
            Err(error) => {
                warn(&format!("failed to read a signal: {error}"));
                return ended;
            }
        };
        let number = info.ssi_signo as libc::c_int;
        if number == reload_signal() {
            match LogSettings::read(&options.settings_file) {
                Ok(settings) => {
                    budget.cpus = settings.cpus;
                    queue.push_settings(settings);
                }
                Err(error) => warn(&error_chain(&error)),
            }
            continue;
        }
        match Signal::try_from(number) {
            Ok(Signal::SIGCHLD) => {
                if let Some(exit) = reap(shim) {
                    ended = Some(exit);
                }
            }
            Ok(forwarded) => {
                if let Err(error) = signal::kill(shim, forwarded) {
                    warn(&format!(
                        "failed to forward {forwarded} to the shim: {error}"
                    ));
                }
            }
            Err(_) => {}
        }
    }
}

fn reap(shim: Pid) -> Option<ShimExit> {
    match waitpid(shim, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(ShimExit::Code(code)),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(ShimExit::Signal(signal)),
        Ok(_) => None,
        Err(error) => {
            warn(&format!("failed to wait for the shim: {error}"));
            Some(ShimExit::Code(SETUP_FAILED))
        }
    }
}

/// Writes what the queue delivers until it is closed, and reports dropped
/// output at most once per [`DROP_NOTICE_INTERVAL`] per stream.
fn write_logs(queue: &BoundedQueue, mut logs: [RotatingLog; 2]) {
    let mut notices = DropNotices::default();
    let mut checked_at = Instant::now();
    loop {
        // Both files are checked here, because a stream that writes nothing
        // would otherwise keep its deleted or renamed file open until its
        // next write.
        if checked_at.elapsed() >= PATH_CHECK_INTERVAL {
            for log in &mut logs {
                log.close_if_moved();
            }
            checked_at = Instant::now();
        }
        let item = match queue.take_timeout(PATH_CHECK_INTERVAL) {
            Taken::Item(item) => item,
            Taken::Closed => break,
            // A notice whose write failed is retried also while the job
            // writes nothing.
            Taken::TimedOut => {
                notices.write_due(&mut logs, false);
                continue;
            }
        };
        match item {
            Item::Data(stream, bytes) => notices.write_data(&mut logs, stream, &bytes),
            Item::Dropped(stream, bytes) => notices.add(stream, bytes),
            Item::Settings(settings) => {
                for log in &mut logs {
                    log.set_limits(settings.max_size, settings.keep);
                }
            }
        }
        for log in &mut logs {
            if let Some(error) = log.take_permission_error() {
                warn(&error_chain(&error));
            }
        }
        notices.write_due(&mut logs, false);
    }
    notices.write_due(&mut logs, true);
}

/// Output dropped per stream and not reported in the log yet.
#[derive(Debug, Default)]
struct DropNotices {
    streams: [StreamDrops; 2],
}

impl DropNotices {
    /// Counts `bytes` of `stream` that the queue dropped.
    fn add(&mut self, stream: Stream, bytes: u64) {
        self.streams[stream.index()].add(bytes);
    }

    /// Writes `data` to the log of `stream`, preceded by a due notice.
    fn write_data(&mut self, logs: &mut [RotatingLog; 2], stream: Stream, data: &[u8]) {
        let index = stream.index();
        self.streams[index].write_data(&mut logs[index], stream, data);
    }

    /// Writes a notice for each stream with drops whose last notice is old
    /// enough, or for all of them with `force`.
    fn write_due(&mut self, logs: &mut [RotatingLog; 2], force: bool) {
        for stream in Stream::BOTH {
            let index = stream.index();
            self.streams[index].write_due(&mut logs[index], stream, force);
        }
    }
}

/// Output of one stream dropped since the last notice in its log.
#[derive(Debug, Default)]
struct StreamDrops {
    /// Bytes dropped since the last notice that reached the log.
    pending: u64,
    /// The last write error, named in the next notice.
    failure: Option<String>,
    /// Whether output was dropped after the last byte that reached the log.
    gap: bool,
    /// When the last notice reached the log.
    last_notice: Option<Instant>,
    /// When the last line about these drops went to the monitor's stderr.
    last_warning: Option<Instant>,
}

impl StreamDrops {
    fn add(&mut self, bytes: u64) {
        self.pending += bytes;
        self.gap = true;
    }

    fn add_failed(&mut self, bytes: u64, error: &RotateError) {
        self.add(bytes);
        self.failure = Some(error_chain(error));
    }

    /// Writes `data` to `log`. A due notice goes first. When it fails,
    /// `data` is dropped too, so no output lands ahead of the notice of
    /// the gap before it. After a gap without a notice, a newline ends the
    /// cut line first.
    fn write_data(&mut self, log: &mut RotatingLog, stream: Stream, data: &[u8]) {
        if !self.write_due(log, stream, false) {
            self.add(data.len() as u64);
            return;
        }
        if self.gap && !log.at_line_start() {
            if let Err(failure) = log.write(b"\n") {
                self.add_failed(data.len() as u64, &failure.error);
                return;
            }
        }
        self.gap = false;
        if let Err(failure) = log.write(data) {
            let dropped = data.len().saturating_sub(failure.written);
            self.add_failed(dropped as u64, &failure.error);
        }
    }

    /// Writes the notice of the dropped output to `log` when one is due:
    /// [`DROP_NOTICE_INTERVAL`] after the last notice, or at once with
    /// `force`. A newline goes first when the log ends in a cut line.
    /// Returns false when a due notice failed, and keeps it pending then.
    fn write_due(&mut self, log: &mut RotatingLog, stream: Stream, force: bool) -> bool {
        if self.pending == 0 {
            return true;
        }
        let due = self
            .last_notice
            .is_none_or(|last| last.elapsed() >= DROP_NOTICE_INTERVAL);
        if !(due || force) {
            return true;
        }
        let reason = self
            .failure
            .as_deref()
            .unwrap_or("the log writer fell behind");
        let notice = format!(
            "corral-monitor: dropped {} bytes of {}: {reason}\n",
            self.pending,
            stream.name()
        );
        let mut line = Vec::with_capacity(notice.len() + 1);
        if !log.at_line_start() {
            line.push(b'\n');
        }
        line.extend_from_slice(notice.as_bytes());
        // The whole line or nothing, because a cut notice would show a
        // wrong count.
        match log.write_all_or_nothing(&line) {
            Ok(()) => {
                warn(notice.trim_end().trim_start_matches("corral-monitor: "));
                self.pending = 0;
                self.failure = None;
                self.gap = false;
                self.last_notice = Some(Instant::now());
                self.last_warning = self.last_notice;
                true
            }
            Err(failure) => {
                let error = error_chain(&failure.error);
                let warning_due = self
                    .last_warning
                    .is_none_or(|last| last.elapsed() >= DROP_NOTICE_INTERVAL);
                if force {
                    warn(&format!(
                        "failed to write the notice of {} dropped bytes of {}: {error}",
                        self.pending,
                        stream.name()
                    ));
                } else if warning_due {
                    warn(&format!(
                        "failed to write the notice of {} dropped bytes of {}, so it is retried \
                         before the next output: {error}",
                        self.pending,
                        stream.name()
                    ));
                    self.last_warning = Some(Instant::now());
                }
                // Later output is dropped with this error as the reason
                // until the notice is written.
                self.failure = Some(error);
                false
            }
        }
    }
}

/// Ends the process the way the shim ended: with its exit code, or killed
/// by the same signal, so supervisord reaps the shim's status. Core dumps
/// are disabled first, as the monitor did not crash.
pub fn exit_like(exit: ShimExit) -> ! {
    let _ = std::io::stdout().flush();
    match exit {
        ShimExit::Code(code) => std::process::exit(code),
        ShimExit::Signal(signal) => {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: setrlimit reads the struct, which lives on the stack
            // for the whole call.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
            // SAFETY: SIG_DFL is a valid disposition, and nothing in this
            // process relies on a handler for `signal` any more.
            unsafe {
                let _ = signal::signal(signal, signal::SigHandler::SigDfl);
            }
            let mut only = SigSet::empty();
            only.add(signal);
            let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
            let _ = signal::raise(signal);
            // SIGSTOP and signals that do not end a process land here.
            std::process::exit(128 + signal as i32)
        }
    }
}

/// Writes a setup error where supervisord reads the shim's setup errors:
/// the end of the stderr log. The file is opened, appended to and closed
/// at once.
pub fn report_setup_error(stderr_log: &Path, permissions: LogPermissions, error: &MonitorError) {
    let message = error_chain(error);
    warn(&message);
    let line = format!("corral-monitor: {message}\n");
    let appended = crate::logrotate::open_append(stderr_log, permissions).and_then(|mut file| {
        if let Err(error) = permissions.apply_to_file(&file) {
            warn(&format!(
                "failed to set the group or mode of {}: {error}",
                stderr_log.display()
            ));
        }
        file.write_all(line.as_bytes())
    });
    if let Err(append_error) = appended {
        warn(&format!(
            "failed to write the error to {}: {append_error}",
            stderr_log.display()
        ));
    }
}

/// Format and fields of the monitor's own log lines, set once by
/// [`init_logging`].
#[derive(Debug)]
struct LogContext {
    format: LogFormat,
    job: Option<String>,
    container_id: Option<String>,
}

static LOG_CONTEXT: OnceLock<LogContext> = OnceLock::new();

/// Sets the format of the monitor's log lines on stderr. JSON lines are
/// written by tracing-subscriber, as supervisord writes its own, and carry
/// `job` and `container_id` fields when those are given. Text lines stay
/// `corral-monitor: MESSAGE`, and so do all lines before the first call.
/// Later calls change nothing.
pub fn init_logging(format: LogFormat, job: Option<String>, container_id: Option<String>) {
    if LOG_CONTEXT.get().is_some() {
        return;
    }
    let mut format = format;
    let mut installed = true;
    if let LogFormat::Json = format {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(io::stderr)
            .with_max_level(tracing::Level::INFO)
            .finish();
        installed = tracing::subscriber::set_global_default(subscriber).is_ok();
        if !installed {
            format = LogFormat::Text;
        }
    }
    let _ = LOG_CONTEXT.set(LogContext {
        format,
        job,
        container_id,
    });
    if !installed {
        warn("failed to install the JSON log writer, so log lines are text");
    }
}

/// Writes one warning line to the monitor's stderr, which is supervisord's,
/// in the format that [`init_logging`] set. A write error is ignored: that
/// stream may be gone after supervisord restarted, and the monitor has no
/// other place to report to.
pub fn warn(message: &str) {
    match LOG_CONTEXT.get() {
        Some(context) if matches!(context.format, LogFormat::Json) => {
            let job = context.job.as_deref();
            let container_id = context.container_id.as_deref();
            tracing::warn!(job, container_id, "{message}");
        }
        _ => {
            let _ = writeln!(io::stderr(), "corral-monitor: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Tmpfs;

    #[test]
    fn budget_without_limit_never_pauses() {
        let start = Instant::now();
        let mut budget = CpuBudget::new(None, start, Duration::ZERO);
        let pause = budget.pause(start + Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(pause, None);
    }

    #[test]
    fn budget_pauses_at_the_cpu_limit() {
        let start = Instant::now();
        let mut budget = CpuBudget::new(Some(0.5), start, Duration::ZERO);
        // 100 ms of CPU in 100 ms: the 100 ms burst it starts with pays
        // for it, so no pause yet.
        let at = start + Duration::from_millis(100);
        assert_eq!(budget.pause(at, Duration::from_millis(100)), None);
        // 100 ms more of CPU at once overdraws by 100 ms, which takes
        // 200 ms to earn back at half a CPU.
        let pause = budget.pause(at, Duration::from_millis(200)).unwrap();
        assert!(
            pause.abs_diff(Duration::from_millis(200)) < Duration::from_millis(1),
            "{pause:?}"
        );
        // After that pause the budget has recovered.
        let later = at + pause + Duration::from_millis(1);
        assert_eq!(budget.pause(later, Duration::from_millis(200)), None);
    }

    #[test]
    fn budget_credit_is_capped_at_the_burst() {
        let start = Instant::now();
        let mut budget = CpuBudget::new(Some(0.2), start, Duration::ZERO);
        // An hour idle earns no more than CPU_BURST.
        let later = start + Duration::from_secs(3600);
        assert_eq!(budget.pause(later, Duration::ZERO), None);
        let pause = budget.pause(later, CPU_BURST + Duration::from_millis(20));
        assert!(pause.is_some(), "idle time became credit");
    }

    fn logs(dir: &Path) -> [RotatingLog; 2] {
        [
            RotatingLog::open(&dir.join("stdout.log"), 0, 1).unwrap(),
            RotatingLog::open(&dir.join("stderr.log"), 0, 1).unwrap(),
        ]
    }

    #[test]
    fn dropped_output_leaves_a_notice_at_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let queue = BoundedQueue::new(8, Duration::ZERO);
        assert!(queue.push_data(Stream::Stdout, b"partial"));
        assert!(!queue.push_data(Stream::Stdout, b" line\n"));
        assert!(queue.push_data(Stream::Stderr, b"err\n"));
        // Taking the first chunk, as the writer thread does, frees room.
        let first = queue.take();
        assert!(queue.push_data(Stream::Stdout, b"next\n"));
        queue.close();
        let mut logs = logs(dir.path());
        if let Some(Item::Data(_, bytes)) = first {
            logs[0].write(&bytes).unwrap();
        }
        write_logs(&queue, logs);

        let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
        assert_eq!(
            stdout,
            "partial\ncorral-monitor: dropped 6 bytes of stdout: the log writer fell behind\nnext\n"
        );
        let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
        assert_eq!(stderr, "err\n");
    }

    #[test]
    fn drop_notices_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let mut logs = logs(dir.path());
        let mut notices = DropNotices::default();
        notices.add(Stream::Stdout, 10);
        notices.write_due(&mut logs, false);
        notices.add(Stream::Stdout, 20);
        notices.write_due(&mut logs, false);
        notices.add(Stream::Stdout, 30);
        notices.write_due(&mut logs, false);
        let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.contains("dropped 10 bytes"), "{stdout}");

        // The rest is reported when the monitor ends.
        notices.write_due(&mut logs, true);
        let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
        assert!(
            stdout.lines().nth(1).unwrap().contains("dropped 50 bytes"),
            "{stdout}"
        );
    }

    #[test]
    fn failed_notice_is_written_before_later_output() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mnt");
        let test = "failed_notice_is_written_before_later_output";
        let Some(_tmpfs) = Tmpfs::mount(test, &mount, "8k") else {
            return;
        };
        let mut logs = logs(&mount);
        let path = mount.join("stdout.log");
        let filler = mount.join("filler");
        let mut notices = DropNotices::default();
        notices.write_data(&mut logs, Stream::Stdout, b"line 1\n");
        // The filler takes the second of the two pages, so the log can grow
        // only to the end of its first page: 4089 more bytes.
        std::fs::write(&filler, [0u8; 4096]).unwrap();
        let mut long_line = vec![b'y'; 5000];
        long_line.push(b'\n');
        notices.write_data(&mut logs, Stream::Stdout, &long_line);
        notices.write_due(&mut logs, false);
        notices.write_data(&mut logs, Stream::Stdout, b"line 2\n");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);

        std::fs::remove_file(&filler).unwrap();
        notices.write_data(&mut logs, Stream::Stdout, b"line 3\n");
        let stdout = std::fs::read_to_string(&path).unwrap();
        // 912 bytes of the long line and the 7 of line 2.
        let expected = format!(
            "line 1\n{}\ncorral-monitor: dropped 919 bytes of stdout: failed to write log {}: \
             No space left on device (os error 28)\nline 3\n",
            "y".repeat(4089),
            path.display()
        );
        assert_eq!(stdout, expected);
    }

    #[test]
    fn gap_without_notice_ends_the_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut logs = logs(dir.path());
        let mut notices = DropNotices::default();
        notices.add(Stream::Stdout, 10);
        notices.write_due(&mut logs, false);
        notices.write_data(&mut logs, Stream::Stdout, b"cut");
        // Within DROP_NOTICE_INTERVAL of the first notice, so no notice.
        notices.add(Stream::Stdout, 20);
        notices.write_due(&mut logs, false);
        notices.write_data(&mut logs, Stream::Stdout, b"next\n");
        let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
        assert_eq!(
            stdout,
            "corral-monitor: dropped 10 bytes of stdout: the log writer fell behind\ncut\nnext\n"
        );
    }

    #[test]
    fn stuck_writer_does_not_hold_up_the_exit() {
        let queue = Arc::new(BoundedQueue::new(QUEUE_LIMIT, Duration::ZERO));
        assert!(queue.push_data(Stream::Stdout, b"queued\n"));
        let (running, ended) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        // A writer blocked like one in a rotation or a write that does not
        // return.
        let writer = std::thread::spawn(move || {
            let _running = running;
            let _ = released.recv();
        });
        let started = Instant::now();
        let finished = wait_for_writer(writer, &ended, &queue, Duration::from_millis(200));
        assert!(!finished, "reported a blocked writer as finished");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited {:?}",
            started.elapsed()
        );
        drop(release);
    }

    #[test]
    fn finished_writer_is_joined() {
        let queue = BoundedQueue::new(QUEUE_LIMIT, Duration::ZERO);
        let (running, ended) = mpsc::channel::<()>();
        let writer = std::thread::spawn(move || drop(running));
        assert!(wait_for_writer(
            writer,
            &ended,
            &queue,
            Duration::from_secs(5)
        ));
    }

    #[test]
    fn settings_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.json");
        let settings = LogSettings {
            max_size: 4096,
            keep: 7,
            cpus: Some(0.25),
        };
        settings.write(&path).unwrap();
        assert_eq!(LogSettings::read(&path).unwrap(), settings);
        assert!(!dir.path().join("logs.json.tmp").exists());

        std::fs::write(&path, "{\"max_size\": 1}").unwrap();
        let error = LogSettings::read(&path).unwrap_err();
        assert!(
            error_chain(&error).contains("keep"),
            "{}",
            error_chain(&error)
        );
    }

    #[test]
    fn reload_signal_is_a_realtime_signal() {
        assert!(reload_signal() > libc::SIGRTMIN());
        assert!(reload_signal() <= libc::SIGRTMAX());
    }
}
