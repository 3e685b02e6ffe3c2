//! Helpers shared by the agent's integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_metrics_agent::{Agent, Settings};
use corral_runtime::state::{CgroupPaths, ContainerState, Status, OCI_VERSION};
use tempfile::TempDir;

/// Creation time written into fixture state files: 2026-01-01T00:00:00Z.
pub const CREATED: f64 = 1_767_225_600.0;

/// The fixture tree copied into a temporary directory.
pub struct Fixture {
    dir: TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        copy_tree(&source, dir.path());
        fs::create_dir_all(dir.path().join("run/containers")).unwrap();
        Self { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.path("run")
    }

    /// The v1 directories of the fixture job, one per controller.
    pub fn v1_paths(&self) -> CgroupPaths {
        let controllers = ["cpu", "cpuacct", "memory", "blkio", "pids"]
            .into_iter()
            .map(|name| (name.to_string(), self.path(&format!("v1/{name}/job"))))
            .collect();
        CgroupPaths::V1 { controllers }
    }

    pub fn v2_paths(&self) -> CgroupPaths {
        CgroupPaths::V2 {
            path: self.path("v2/job"),
        }
    }

    /// Writes a running container `id` of job `job` with init PID 4242.
    pub fn add_container(&self, id: &str, job: &str, cgroup_paths: CgroupPaths) {
        self.add_state(state(
            id,
            Some(job),
            cgroup_paths,
            Status::Running,
            Some(4242),
        ));
    }

    pub fn add_state(&self, state: ContainerState) {
        let root = self.path("run/containers");
        fs::create_dir_all(root.join(&state.id)).unwrap();
        state.save(&root).expect("write the state file");
    }

    /// Replaces a file of the tree.
    pub fn write(&self, relative: &str, content: &str) {
        fs::write(self.path(relative), content).unwrap();
    }

    pub fn settings(&self) -> Settings {
        Settings {
            proc_root: self.path("proc"),
            sys_root: self.path("sys"),
            ..Settings::new(self.run_dir())
        }
    }
}

/// A state file of a container in the fixture.
pub fn state(
    id: &str,
    job: Option<&str>,
    cgroup_paths: CgroupPaths,
    status: Status,
    pid: Option<i32>,
) -> ContainerState {
    ContainerState {
        oci_version: OCI_VERSION.to_string(),
        id: id.to_string(),
        status,
        pid,
        bundle: PathBuf::from("/var/lib/corral/bundles").join(id),
        annotations: BTreeMap::new(),
        created: CREATED,
        cgroup_id: format!("/corral/{id}"),
        cgroup_paths,
        job: job.map(str::to_string),
        image: "busybox".to_string(),
        labels: BTreeMap::new(),
        rootfs: PathBuf::from("/var/lib/corral/containers")
            .join(id)
            .join("merged"),
        overlay_dir: None,
        late_hooks: false,
    }
}

fn copy_tree(source: &Path, target: &Path) {
    fs::create_dir_all(target).unwrap();
    for entry in fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        let destination = target.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &destination);
        } else {
            fs::copy(entry.path(), &destination).unwrap();
        }
    }
}

/// Runs one scrape on a fresh agent and returns the exposition text.
pub fn scrape(settings: Settings) -> String {
    let agent = Arc::new(Agent::new(settings).expect("create the agent"));
    scrape_agent(&agent)
}

pub fn scrape_agent(agent: &Arc<Agent>) -> String {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
        .block_on(agent.scrape())
        .expect("scrape")
}

/// Asserts that the exposition contains `line` exactly.
#[track_caller]
pub fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|candidate| candidate == line),
        "missing line\n  {line}\nin the exposition:\n{text}"
    );
}

/// Asserts that no sample line starts with `prefix`.
#[track_caller]
pub fn assert_no_sample(text: &str, prefix: &str) {
    let found: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#') && line.starts_with(prefix))
        .collect();
    assert!(
        found.is_empty(),
        "unexpected samples starting with {prefix}:\n{}",
        found.join("\n")
    );
}

/// Sample lines of metric `name`.
pub fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// Runs `promtool check metrics` on `text`; `None` when promtool is not
/// installed, after printing a SKIP line.
pub fn promtool_check(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            eprintln!("SKIP: promtool is not available ({error}); install the promtool package");
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), report))
}

/// A child process killed by PID and reaped on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends a plain HTTP/1.0 GET and returns the status code and body.
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The agent binary on a free port, killed by PID on drop.
pub struct AgentProcess {
    pub address: SocketAddr,
    pub log: PathBuf,
    _child: ChildGuard,
}

impl AgentProcess {
    /// Starts the agent on `run_dir` with `args` added, logging to `log`,
    /// and waits until `/healthz` returns 200.
    pub fn start(run_dir: &Path, log: PathBuf, args: &[&OsStr]) -> Self {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let child = Command::new(env!("CARGO_BIN_EXE_metrics-agent"))
            .arg("--listen")
            .arg(address.to_string())
            .arg("--run-dir")
            .arg(run_dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start metrics-agent");
        let agent = Self {
            address,
            log,
            _child: ChildGuard(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(http_get(address, "/healthz"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "metrics-agent did not answer /healthz:\n{}",
                fs::read_to_string(&agent.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    pub fn scrape(&self) -> String {
        let (status, body) = http_get(self.address, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics failed:\n{body}");
        body
    }

    /// Returns the agent's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}
