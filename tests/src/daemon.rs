//! supervisord and metrics-agent started by a test in scratch directories,
//! stopped by PID when the guard drops.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{binary, unique_name, wait_until};

/// A supervisord with its own jobs, run, data and log directories.
pub struct Supervisor {
    pub scratch: tempfile::TempDir,
    pub jobs_dir: PathBuf,
    pub run_dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub cgroup_parent: String,
    child: Option<Child>,
}

impl Supervisor {
    /// Prepares directories; jobs are added with [`Supervisor::add_job`]
    /// before or after [`Supervisor::start`].
    pub fn new(test: &str) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix("corral-e2e-")
            .tempdir()
            .expect("create scratch directory");
        let base = scratch.path().to_path_buf();
        let supervisor = Supervisor {
            jobs_dir: base.join("jobs.d"),
            run_dir: base.join("run"),
            data_dir: base.join("data"),
            log_dir: base.join("log"),
            cgroup_parent: unique_name(test),
            scratch,
            child: None,
        };
        fs::create_dir_all(&supervisor.jobs_dir).expect("create jobs dir");
        supervisor
    }

    /// Writes `NAME.json` into the jobs directory.
    pub fn add_job(&self, name: &str, body: &str) {
        fs::write(self.jobs_dir.join(format!("{name}.json")), body).expect("write job file");
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("supervisor.sock")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.run_dir.join("containers")
    }

    /// Starts supervisord and waits for its control socket.
    pub fn start(&mut self) {
        let stderr =
            fs::File::create(self.scratch.path().join("supervisord.log")).expect("log file");
        let child = Command::new(binary("supervisord"))
            .arg("--jobs-dir")
            .arg(&self.jobs_dir)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--log-dir")
            .arg(&self.log_dir)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--runtime")
            .arg(binary("corral"))
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start supervisord");
        self.child = Some(child);
        let socket = self.socket();
        assert!(
            wait_until(Duration::from_secs(10), || socket.exists()),
            "supervisord did not create {} within 10 s; its log:\n{}",
            socket.display(),
            self.daemon_log()
        );
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// supervisord's own log, for failure messages.
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.scratch.path().join("supervisord.log")).unwrap_or_default()
    }

    /// Runs supervisorctl against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(binary("supervisorctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run supervisorctl")
    }

    /// `supervisorctl status NAME` output as text.
    pub fn status_line(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.ctl(&["status", name]).stdout).into_owned()
    }

    /// Waits until the job's status line contains `needle`.
    pub fn wait_for_status(&self, name: &str, needle: &str, timeout: Duration) -> String {
        let mut last = String::new();
        let found = wait_until(timeout, || {
            last = self.status_line(name);
            last.contains(needle)
        });
        assert!(
            found,
            "job {name} never showed {needle:?} within {timeout:?}; last status: {last}\nsupervisord log:\n{}",
            self.daemon_log()
        );
        last
    }

    /// Contents of a job's stdout or stderr log.
    pub fn job_log(&self, name: &str, stream: &str) -> String {
        fs::read_to_string(self.log_dir.join(name).join(format!("{stream}.log")))
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits for supervisord to exit; returns its status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let exited = wait_until(Duration::from_secs(40), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = kill(pid, Signal::SIGKILL);
        }
        child.wait().ok()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
        // Containers a failed test left behind: their shims were killed with
        // supervisord's process group or are still running by themselves.
        let containers = self.containers_dir();
        if let Ok(entries) = fs::read_dir(&containers) {
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                let _ = Command::new(binary("corral"))
                    .arg("--root")
                    .arg(&containers)
                    .args(["delete", "--force", &id])
                    .output();
            }
        }
        remove_cgroup_tree(&self.cgroup_parent);
    }
}

/// Removes every cgroup directory named `name` (and its children) that a
/// test created, after killing what is left inside.
pub fn remove_cgroup_tree(name: &str) {
    for dir in crate::host::cgroups_named(name) {
        remove_cgroup_dir(&dir);
    }
}

fn remove_cgroup_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_dir(&entry.path());
            }
        }
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    for _ in 0..100 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A metrics-agent on a free loopback port.
pub struct Agent {
    pub address: String,
    child: Child,
}

impl Agent {
    pub fn start(run_dir: &Path, supervisor_socket: Option<&Path>) -> Self {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let mut command = Command::new(binary("metrics-agent"));
        command
            .arg("--listen")
            .arg(&address)
            .arg("--run-dir")
            .arg(run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(socket) = supervisor_socket {
            command.arg("--supervisor-socket").arg(socket);
        }
        let child = command.spawn().expect("start metrics-agent");
        let agent = Agent { address, child };
        assert!(
            wait_until(Duration::from_secs(10), || agent.get("/healthz").is_some()),
            "metrics-agent did not answer /healthz on {}",
            agent.address
        );
        agent
    }

    /// Body of a GET on the agent, or None when it does not answer 200.
    pub fn get(&self, path: &str) -> Option<String> {
        crate::prometheus::http_get(&self.address, path)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}
