//! A supervisord on temporary directories, driven through supervisorctl and
//! the control API, and cleaned up on drop even when a test fails.
//!
//! Each daemon gets its own temporary directory and its own cgroup parent
//! (`corral-test-sv-PID-N`), so tests run in parallel. The daemon and the
//! containers it starts are the only processes a test signals.

#![allow(
    dead_code,
    reason = "every test binary includes the harness and uses a different part of it"
)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use corral_runtime::cgroups::{CgroupPaths, Hierarchy};
use corral_supervisor::api::JobView;
use corral_supervisor::client::{Client, ClientError};
use corral_supervisor::machine::JobState;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

static NEXT_DAEMON: AtomicU32 = AtomicU32::new(0);

/// Returns why the end-to-end tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root for namespaces, cgroups and overlay mounts".to_string());
    }
    None
}

/// Serializes the tests of one test binary that take the returned guard:
/// those that load the machine or measure time, so that one test's load
/// does not skew another's measurement.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Prints a loud SKIP line and returns true when the tests cannot run.
pub fn skip(test: &str) -> bool {
    match skip_reason() {
        Some(reason) => {
            eprintln!("SKIP {test}: {reason}");
            true
        }
        None => false,
    }
}

/// Reports a skip of `test` and returns true when `tool` does not run.
pub fn tool_missing(test: &str, tool: &str) -> bool {
    let missing = Command::new(tool).arg("--version").output().is_err();
    if missing {
        eprintln!("SKIP {test}: {tool} is not installed");
    }
    missing
}

/// Returns the `corral` binary of this build tree, which supervisord finds beside
/// itself.
pub fn runtime_binary() -> PathBuf {
    let supervisord = Path::new(env!("CARGO_BIN_EXE_supervisord"));
    let corral = supervisord.with_file_name("corral");
    assert!(
        corral.is_file(),
        "the corral binary is missing at {}: build it with `cargo build -p corral-runtime` \
         (cargo test --workspace builds it too)",
        corral.display()
    );
    corral
}

pub struct Daemon {
    pub dir: TempDir,
    pub cgroup_parent: String,
    child: Option<Child>,
    stderr_path: PathBuf,
    /// Flags passed to every supervisord started on these directories.
    extra_args: Vec<String>,
    /// Soft limit of open files that supervisord starts with, when set.
    open_files_soft_limit: Option<u64>,
    /// Whether supervisord starts in `dir` with its directories and the
    /// runtime given as relative paths.
    relative_paths: bool,
}

impl Daemon {
    /// Writes the jobs and starts supervisord on them, waiting until its
    /// socket responds.
    pub fn start(jobs: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_args(jobs, &[])
    }

    /// Like [`Daemon::start`], with supervisord started under a soft limit
    /// of `soft` open files.
    pub fn start_with_open_files_limit(jobs: &[(&str, &str)], soft: u64) -> Daemon {
        Daemon::start_inner(jobs, &[], Some(soft), false)
    }

    /// Like [`Daemon::start`], with extra supervisord flags.
    pub fn start_with_args(jobs: &[(&str, &str)], args: &[&str]) -> Daemon {
        Daemon::start_inner(jobs, args, None, false)
    }

    /// Like [`Daemon::start`], with supervisord started in the daemon's
    /// directory and every path flag relative to it.
    pub fn start_with_relative_paths(jobs: &[(&str, &str)]) -> Daemon {
        Daemon::start_inner(jobs, &[], None, true)
    }

    fn start_inner(
        jobs: &[(&str, &str)],
        args: &[&str],
        soft_limit: Option<u64>,
        relative_paths: bool,
    ) -> Daemon {
        let runtime = runtime_binary();
        let dir = tempfile::Builder::new()
            .prefix("corral-sv-test.")
            .tempdir()
            .expect("create temp dir");
        let number = NEXT_DAEMON.fetch_add(1, Ordering::SeqCst);
        let cgroup_parent = format!("corral-test-sv-{}-{number}", std::process::id());
        let mut daemon = Daemon {
            dir,
            cgroup_parent,
            child: None,
            stderr_path: PathBuf::new(),
            extra_args: args.iter().map(|arg| arg.to_string()).collect(),
            open_files_soft_limit: soft_limit,
            relative_paths,
        };
        fs::create_dir_all(daemon.jobs_dir()).unwrap();
        for (name, body) in jobs {
            daemon.write_job(name, body);
        }
        daemon.stderr_path = daemon.dir.path().join("supervisord.log");
        daemon.spawn(&runtime);
        daemon
    }

    /// Starts supervisord on this daemon's directories and waits until its
    /// socket responds. The log file is appended to, so it keeps the log of
    /// an earlier daemon on the same directories.
    fn spawn(&mut self, runtime: &Path) {
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_supervisord"));
        if let Some(soft) = self.open_files_soft_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and
            // only calls getrlimit and setrlimit, which are async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    use nix::sys::resource::{getrlimit, setrlimit, Resource};
                    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
                    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard)?;
                    Ok(())
                });
            }
        }
        let directories = [
            ("--jobs-dir", self.jobs_dir()),
            ("--run-dir", self.run_dir()),
            ("--data-dir", self.data_dir()),
            ("--log-dir", self.log_dir()),
        ];
        let mut runtime = runtime.to_path_buf();
        for (flag, path) in directories {
            let path = if self.relative_paths {
                path.strip_prefix(self.dir.path()).unwrap().to_path_buf()
            } else {
                path
            };
            command.arg(flag).arg(path);
        }
        if self.relative_paths {
            // A copy in the daemon's directory, named by a relative path.
            let copy = self.dir.path().join("corral");
            if !copy.exists() {
                fs::copy(&runtime, &copy).unwrap();
            }
            command.current_dir(self.dir.path());
            runtime = PathBuf::from("./corral");
        }
        let child = command
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--runtime")
            .arg(runtime)
            .args(&self.extra_args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn supervisord");
        self.child = Some(child);
        self.wait_until(
            Duration::from_secs(10),
            "the control socket answers",
            |daemon| daemon.client().get::<serde_json::Value>("/v1/info").is_ok(),
        );
    }

    /// Kills supervisord with SIGKILL, leaving its shims and containers.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Kills supervisord with SIGKILL and starts the next one at once,
    /// while the kernel may still be tearing the killed one down.
    pub fn crash_and_respawn_at_once(&mut self) {
        let mut killed = self.child.take().expect("daemon running");
        killed.kill().unwrap();
        self.spawn(&runtime_binary());
        killed.wait().unwrap();
    }

    /// Starts a new supervisord on the same directories after [`crash`].
    ///
    /// [`crash`]: Daemon::crash
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "the earlier supervisord still runs");
        self.spawn(&runtime_binary());
    }

    /// Starts a new supervisord with `args` in place of the earlier extra
    /// arguments, after [`crash`].
    ///
    /// [`crash`]: Daemon::crash
    pub fn respawn_with_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|arg| arg.to_string()).collect();
        self.respawn();
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.dir.path().join("jobs")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("supervisor.sock")
    }

    pub fn client(&self) -> Client {
        Client::new(self.socket())
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("daemon running").id() as i32
    }

    /// Writes a job file through a temporary name and a rename, as a
    /// careful operator would, so a reload never reads half of it.
    pub fn write_job(&self, name: &str, body: &str) {
        let temporary = self.jobs_dir().join(format!(".{name}.json.tmp"));
        fs::write(&temporary, body).unwrap();
        fs::rename(&temporary, self.jobs_dir().join(format!("{name}.json"))).unwrap();
    }

    pub fn remove_job(&self, name: &str) {
        fs::remove_file(self.jobs_dir().join(format!("{name}.json"))).unwrap();
    }

    /// Runs supervisorctl with `args` against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run supervisorctl")
    }

    pub fn job(&self, name: &str) -> Result<JobView, ClientError> {
        let mut path = String::from("/v1/jobs/");
        for byte in name.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                path.push(char::from(byte));
            } else {
                path.push_str(&format!("%{byte:02X}"));
            }
        }
        self.client().get(&path)
    }

    /// Waits until `name` is in `state` and returns its view.
    pub fn wait_for_state(&self, name: &str, state: JobState, timeout: Duration) -> JobView {
        let mut last = None;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(view) = self.job(name) {
                if view.state == state {
                    return view;
                }
                last = Some(view);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "job {name} did not reach {state} within {timeout:?}; last view: {last:#?}\n{}",
            self.diagnostics()
        );
    }

    /// Polls `condition` every 50 ms until it holds, or fails the test.
    pub fn wait_until(&self, timeout: Duration, what: &str, condition: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {timeout:?} waiting until {what}\n{}",
            self.diagnostics()
        );
    }

    /// Sends SIGTERM to supervisord and waits for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "supervisord did not exit within {timeout:?} of SIGTERM\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a daemon that was asked to shut down by other means.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                self.child = Some(child);
                panic!(
                    "supervisord did not exit within {timeout:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns supervisord's exit status once it has exited, without
    /// waiting, or `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("daemon running");
        let status = child.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    pub fn daemon_log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.stderr_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    pub fn job_log(&self, name: &str, stream: &str) -> String {
        fs::read_to_string(self.log_dir().join(name).join(format!("{stream}.log")))
            .unwrap_or_default()
    }

    /// Returns the cgroup directories of the cgroup parent, in every hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let hierarchy = Hierarchy::detect().expect("detect cgroup hierarchy");
        let (paths, _) = hierarchy
            .locate(&self.cgroup_parent)
            .expect("locate cgroup parent");
        match paths {
            CgroupPaths::V1 { controllers } => controllers.into_values().collect(),
            CgroupPaths::V2 { path } => vec![path],
        }
    }

    /// Cgroup directories of the cgroup parent that still exist.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .cgroup_dirs()
            .into_iter()
            .filter(|dir| dir.exists())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Mount points below this daemon's temporary directory.
    pub fn leftover_mounts(&self) -> Vec<String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.path().display().to_string();
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|mount_point| mount_point.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }

    /// Entries left in a directory of the daemon.
    pub fn entries(&self, dir: &Path) -> Vec<String> {
        match fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// What a failing test prints: the daemon's log, the status table, the
    /// cgroup version and the mounts below the test directory.
    pub fn diagnostics(&self) -> String {
        let status = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
            .arg("--socket")
            .arg(self.socket())
            .arg("status")
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default();
        let version = Hierarchy::detect()
            .map(|hierarchy| format!("{:?}", hierarchy.version()))
            .unwrap_or_else(|error| error.to_string());
        let log = self.daemon_log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        format!(
            "--- cgroup version: {version}\n--- status:\n{status}--- mounts: {:?}\n--- supervisord log (last 60 lines):\n{}",
            self.leftover_mounts(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for Daemon {
    /// Stops the daemon (SIGTERM, then SIGKILL after 30 s), then removes
    /// whatever a failed test left: containers, mounts and cgroups.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let root = self.run_dir().join("containers");
        for id in self.entries(&root) {
            if let Err(error) = corral_runtime::container::delete(&root, &id, true) {
                eprintln!("cleanup: failed to delete container {id}: {error}");
            }
        }
        let mut mounts = self.leftover_mounts();
        // Deeper mount points first.
        mounts.sort_by_key(|mount| std::cmp::Reverse(mount.len()));
        for mount in mounts {
            if let Err(error) =
                nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH)
            {
                eprintln!("cleanup: failed to unmount {mount}: {error}");
            }
        }
        if let Ok(hierarchy) = Hierarchy::detect() {
            if let Err(error) = hierarchy.remove_if_empty(&self.cgroup_parent) {
                eprintln!(
                    "cleanup: failed to remove cgroup {}: {error}",
                    self.cgroup_parent
                );
            }
        }
    }
}

/// Returns a job file body for `/bin/sh -c SCRIPT` on the host image, with extra
/// top-level fields.
pub fn shell_job(script: &str, extra: serde_json::Value) -> String {
    let mut job = serde_json::json!({
        "image": "host",
        "command": ["/bin/sh", "-c", script],
    });
    if let (Some(job), Some(extra)) = (job.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            job.insert(key.clone(), value.clone());
        }
    }
    job.to_string()
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
